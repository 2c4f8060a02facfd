//! `dmaplay export`: one channel's (or every channel's) payloads to raw
//! files or SigMF recordings, over a time range found by binary search in
//! the catalog, reading only the slots of the exported channels.
//!
//! Gaps: with the round-robin channel layout, channel `c`'s buffers are the
//! card sequence numbers `≡ c (mod channels)`. Every such number missing
//! between two exported slots of the channel is a lost buffer, whatever the
//! reason (the card lost it, its slot is missing from the catalog, sits on
//! a missing member, or fails its CRC check): `--gaps mark` writes nothing
//! for it and marks it, `zero` writes `payload_bytes` of zeros per lost
//! buffer and marks it, `error` stops.
//!
//! With the interleaved layout every buffer holds every channel: the slots
//! are read once and de-interleaved ([`crate::deinterleave`]) into each
//! exported channel's output; a lost buffer is a gap of every channel.
//!
//! Writes ([`crate::outwrite`]): round-robin payloads go O_DIRECT straight
//! from the read buffers, de-interleaved samples O_DIRECT from the
//! writer's aligned stage; outputs that refuse O_DIRECT (a tmpfs) are
//! written through the page cache.

use crate::catalog::{Catalog, IndexDamage};
use crate::checkpool::{CheckSpec, Ordered};
use crate::deinterleave::Deinterleaver;
use crate::outwrite::Writer;
use crate::select::{self, Selection};
use crate::sigmf::{self, Annotation, Capture, CaptureClock, Meta, SigmfOptions};
use crate::stripe::StripeSet;
use crate::timespec::TimeSpec;
use crate::uring::{self, Reader, Request, Sink};
use anyhow::{bail, Context, Result};
use formats::{datatype_sample_bytes, ChannelLayout, IndexEntry, SLOT_HEADER_BYTES};
use serde::Serialize;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Raw,
    Sigmf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapMode {
    Mark,
    Zero,
    Error,
}

pub struct ExportOptions {
    /// One channel, or None for every channel.
    pub channel: Option<u16>,
    pub out: PathBuf,
    pub format: OutputFormat,
    pub from: Option<TimeSpec>,
    pub to: Option<TimeSpec>,
    pub gaps: GapMode,
    pub force: bool,
    pub quiet: bool,
    /// SigMF extras: --meta, --frequency, --sha512, --archive.
    pub sigmf: SigmfOptions,
}

#[derive(Debug, Clone, Serialize)]
pub struct GapReport {
    /// The exported slot the gap precedes (None: at the end of the range).
    pub before_slot_seq: Option<u64>,
    pub before_card_seq: Option<u64>,
    pub buffers_lost: u64,
    /// Position in the output, in samples.
    pub sample_start: u64,
    /// Zero samples written for it (0 with --gaps mark).
    pub filler_samples: u64,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChannelReport {
    pub channel: u16,
    pub data_path: String,
    pub meta_path: Option<String>,
    /// With --archive: the `.sigmf` holding both (the pair is removed).
    pub archive_path: Option<String>,
    /// SHA-512 of the `.sigmf-meta` (a collection's stream hash).
    pub meta_sha512: Option<String>,
    pub slots: u64,
    pub payload_bytes: u64,
    pub samples: u64,
    pub gaps: Vec<GapReport>,
}

#[derive(Debug, Serialize)]
pub struct ExportReport {
    pub schema_version: u32,
    pub recording_uuid: String,
    pub catalog: String,
    pub first_slot_seq: Option<u64>,
    pub last_slot_seq: Option<u64>,
    pub channels: Vec<ChannelReport>,
    /// SigMF with --all: the `.sigmf-collection` naming every channel's.
    pub collection_path: Option<String>,
}

/// Where channel `channel`'s output goes: (data file, meta file).
pub fn output_paths(
    out: &Path,
    format: OutputFormat,
    channel: Option<u16>,
) -> (PathBuf, Option<PathBuf>) {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = out.parent().map(Path::to_path_buf).unwrap_or_default();
    match format {
        OutputFormat::Raw => {
            let name = match channel {
                None => name,
                Some(c) => match name.rfind('.') {
                    Some(dot) if dot > 0 => format!("{}-ch{c}{}", &name[..dot], &name[dot..]),
                    _ => format!("{name}-ch{c}"),
                },
            };
            (dir.join(name), None)
        }
        OutputFormat::Sigmf => {
            let mut base = name.as_str();
            for suffix in [".sigmf-data", ".sigmf-meta", ".sigmf"] {
                if let Some(b) = base.strip_suffix(suffix) {
                    base = b;
                    break;
                }
            }
            let base = match channel {
                None => base.to_string(),
                Some(c) => format!("{base}-ch{c}"),
            };
            (
                dir.join(format!("{base}.sigmf-data")),
                Some(dir.join(format!("{base}.sigmf-meta"))),
            )
        }
    }
}

fn exported_channels(stripe: &StripeSet, options: &ExportOptions) -> Vec<u16> {
    match options.channel {
        Some(c) => vec![c],
        None => (0..stripe.superblock.channels.len() as u16).collect(),
    }
}

fn paths_for(options: &ExportOptions, channel: u16) -> (PathBuf, Option<PathBuf>) {
    output_paths(
        &options.out,
        options.format,
        if options.channel.is_some() {
            None
        } else {
            Some(channel)
        },
    )
}

/// Export writes regular files only: it writes them at offsets, allocates
/// them ahead, syncs them and, when it fails, removes what it wrote. An
/// existing `path` of another kind (`/dev/null`, a FIFO) is refused before
/// anything is touched: removing a device node as root would be damage.
fn refuse_non_regular(path: &Path) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(()); // does not exist yet: a new file
    };
    let t = meta.file_type();
    let kind = match () {
        _ if t.is_file() => return Ok(()),
        _ if t.is_dir() => "a directory",
        _ if t.is_char_device() => "a character device",
        _ if t.is_block_device() => "a block device",
        _ if t.is_fifo() => "a FIFO",
        // metadata() follows symlinks: the one kind left is a socket.
        _ => "a socket",
    };
    bail!(
        "--out {}: is {kind}; export writes regular files (at offsets, allocated ahead, synced): give a file path (replay streams to devices and FIFOs)",
        path.display()
    )
}

/// Checks the channel and the output paths before anything is read.
pub fn check_options(stripe: &StripeSet, options: &ExportOptions) -> Result<()> {
    crate::check_channel(stripe, options.channel)?;
    for c in exported_channels(stripe, options) {
        let (data, meta) = paths_for(options, c);
        let extra = sigmf_extra_paths(options, meta.as_deref());
        for p in std::iter::once(data).chain(meta).chain(extra) {
            refuse_non_regular(&p)?;
            stripe.refuse_output(&p, "--out")?;
            if !options.force && p.exists() {
                bail!(
                    "output {} exists: remove it, choose another --out, or give --force",
                    p.display()
                );
            }
        }
    }
    Ok(())
}

/// The `.sigmf` archive of a channel and the `.sigmf-collection` (SigMF
/// with --archive or --all).
fn sigmf_extra_paths(options: &ExportOptions, meta: Option<&Path>) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    if let (Some(m), true) = (meta, options.sigmf.archive) {
        paths.push(m.with_extension("sigmf"));
    }
    if let Some(c) = collection_path(options) {
        paths.push(c);
    }
    paths
}

/// `BASE.sigmf-collection` for a SigMF export of every channel.
pub fn collection_path(options: &ExportOptions) -> Option<PathBuf> {
    if options.format != OutputFormat::Sigmf || options.channel.is_some() {
        return None;
    }
    let (_, meta) = output_paths(&options.out, options.format, None);
    meta.map(|m| m.with_extension("sigmf-collection"))
}

/// The catalog positions of the time range, by binary search; a range
/// with no slot of an exported channel is a usage error (never an empty
/// file).
pub fn plan(
    stripe: &StripeSet,
    catalog: &Catalog,
    options: &ExportOptions,
) -> Result<Result<std::ops::Range<usize>, IndexDamage>> {
    let sel = Selection {
        channel: options.channel,
        from: options.from,
        to: options.to,
        seq: None,
    };
    let channels = exported_channels(stripe, options);
    select::resolve_nonempty(catalog, stripe, &sel, &channels)
}

/// Most skip reasons quoted in one gap's comment.
const MAX_REASONS: usize = 4;

struct ChannelOut {
    channel: u16,
    /// The data file's number in the [`Writer`].
    file: usize,
    /// Bytes written to (or submitted for) the data file so far.
    out_bytes: u64,
    data_path: PathBuf,
    meta_path: Option<PathBuf>,
    sample_bytes: u64,
    samples_per_buffer: u64,
    sample_rate_hz: f64,
    /// The next card sequence number of this channel not yet accounted for.
    next_card_seq: u64,
    samples: u64,
    slots: u64,
    payload_bytes: u64,
    need_capture: bool,
    captures: Vec<Capture>,
    annotations: Vec<Annotation>,
    skipped: Vec<String>,
    skipped_more: u64,
    gaps: Vec<GapReport>,
}

struct Ctx {
    mode: GapMode,
    layout: ChannelLayout,
    /// Card time to capture datetimes.
    clock: Option<CaptureClock>,
    /// Pack each SigMF pair into a `.sigmf` archive.
    archive: bool,
}

impl ChannelOut {
    fn skip(&mut self, entry: &IndexEntry, why: &str) {
        if self.skipped.len() < MAX_REASONS {
            self.skipped.push(format!("slot {} {why}", entry.slot_seq));
        } else {
            self.skipped_more += 1;
        }
    }

    /// Accounts for `lost` buffers before `before` (None: range end).
    fn gap(
        &mut self,
        ctx: &Ctx,
        writer: &mut Writer,
        lost: u64,
        before: Option<&IndexEntry>,
    ) -> Result<()> {
        assert!(lost > 0);
        let reasons = if self.skipped.is_empty() {
            "lost by the card or in slots missing from the recording".to_string()
        } else {
            let more = if self.skipped_more > 0 {
                format!(" and {} more", self.skipped_more)
            } else {
                String::new()
            };
            format!("{}{more}", self.skipped.join(", "))
        };
        self.skipped.clear();
        self.skipped_more = 0;
        let place = match before {
            Some(e) => format!("before slot {} (card_seq {})", e.slot_seq, e.card_seq),
            None => "at the end of the exported range".to_string(),
        };
        let lost_samples = lost * self.samples_per_buffer;
        let comment = format!("gap: {lost} buffer(s) ({lost_samples} samples) of channel {} missing {place}: {reasons}", self.channel);
        if ctx.mode == GapMode::Error {
            bail!(
                "channel {}: {comment}; export across gaps with --gaps mark or --gaps zero",
                self.channel
            );
        }
        let filler_samples = if ctx.mode == GapMode::Zero {
            lost_samples
        } else {
            0
        };
        if filler_samples > 0 && self.captures.is_empty() {
            // The filler stands for samples before `before`'s first.
            let datetime = match (ctx.clock, before, self.sample_rate_hz > 0.0) {
                (Some(clock), Some(e), true) => {
                    let filler_ns = (filler_samples as f64 / self.sample_rate_hz * 1e9).round();
                    let at = clock.first_sample_ns(e).saturating_sub(filler_ns as u64);
                    Some(formats::time::rfc3339_utc(at))
                }
                _ => None,
            };
            self.captures.push(Capture {
                sample_start: 0,
                datetime,
            });
        }
        self.annotations.push(Annotation {
            sample_start: self.samples,
            sample_count: filler_samples,
            lost_buffers: lost,
            lost_samples,
            comment: comment.clone(),
        });
        self.gaps.push(GapReport {
            before_slot_seq: before.map(|e| e.slot_seq),
            before_card_seq: before.map(|e| e.card_seq),
            buffers_lost: lost,
            sample_start: self.samples,
            filler_samples,
            reason: comment,
        });
        if ctx.mode == GapMode::Zero {
            // One lost buffer of this channel: its samples of a full buffer.
            let filler_bytes = lost * self.samples_per_buffer * self.sample_bytes;
            writer.write_zeros(self.file, self.out_bytes, filler_bytes)?;
            self.out_bytes += filler_bytes;
            self.samples += filler_samples;
        }
        self.need_capture = true;
        Ok(())
    }

    /// Accounts for `payload` and writes it. From read buffer `Some(buffer)`
    /// the write is submitted straight from it; returns whether the writer
    /// took the buffer (it gives it back through [`Writer::reclaim`]), not
    /// for an empty payload. `None`: bytes of the caller's (de-interleaved
    /// samples), appended ([`Writer::append`]): reusable once this returns.
    ///
    /// # Safety
    /// With `Some(buffer)`, `payload` lies in read buffer `buffer` of the
    /// writer's read pool, and the caller gives the buffer up until the
    /// writer returns it.
    unsafe fn deliver(
        &mut self,
        ctx: &Ctx,
        writer: &mut Writer,
        entry: &IndexEntry,
        payload: &[u8],
        buffer: Option<usize>,
    ) -> Result<bool> {
        if !ctx.layout.buffer_has_channel(entry.card_seq, self.channel) {
            bail!(
                "slot {}: channel {} but card_seq {} ({} layout puts it on channel {}): the recording is inconsistent; run dmaplay verify",
                entry.slot_seq, entry.channel, entry.card_seq, ctx.layout.describe(), ctx.layout.slot_channel(entry.card_seq)
            );
        }
        if entry.card_seq < self.next_card_seq {
            bail!(
                "slot {}: card_seq {} goes backwards (expected {} or later); run dmaplay verify",
                entry.slot_seq,
                entry.card_seq,
                self.next_card_seq
            );
        }
        let lost = (entry.card_seq - self.next_card_seq) / ctx.layout.card_seq_stride();
        if lost > 0 {
            self.gap(ctx, writer, lost, Some(entry))?;
        }
        if self.need_capture || self.captures.is_empty() {
            self.captures.push(Capture {
                sample_start: self.samples,
                datetime: ctx.clock.map(|c| c.datetime(entry)),
            });
            self.need_capture = false;
        }
        let mut kept = false;
        if !payload.is_empty() {
            match buffer {
                // SAFETY: the caller's contract: payload is in `buffer`, given up.
                Some(buffer) => unsafe {
                    writer.write(
                        self.file,
                        self.out_bytes,
                        payload.as_ptr(),
                        payload.len(),
                        buffer,
                    )?;
                    kept = true;
                },
                None => writer.append(self.file, self.out_bytes, payload)?,
            }
            self.out_bytes += payload.len() as u64;
        }
        self.samples += payload.len() as u64 / self.sample_bytes;
        self.payload_bytes += payload.len() as u64;
        self.slots += 1;
        self.next_card_seq = entry.card_seq + ctx.layout.card_seq_stride();
        Ok(kept)
    }

    /// Lost buffers of this channel after its last slot, up to `last_card_seq`.
    fn close(&mut self, ctx: &Ctx, writer: &mut Writer, last_card_seq: Option<u64>) -> Result<()> {
        if let Some(last) = last_card_seq {
            if last >= self.next_card_seq {
                let lost = (last - self.next_card_seq) / ctx.layout.card_seq_stride() + 1;
                self.gap(ctx, writer, lost, None)?;
            }
        }
        Ok(())
    }

    /// The SigMF metadata (after the writer's finish) and the report.
    fn finish(mut self, ctx: &Ctx, meta: Option<Meta>) -> Result<ChannelReport> {
        let (mut archive_path, mut meta_sha512) = (None, None);
        if let (Some(path), Some(mut meta)) = (&self.meta_path, meta) {
            meta.captures = std::mem::take(&mut self.captures);
            meta.annotations = std::mem::take(&mut self.annotations);
            if meta.sha512.is_some() {
                meta.sha512 = Some(sigmf::sha512_of_file(&self.data_path)?);
            }
            let text = serde_json::to_string_pretty(&meta.to_json())?;
            std::fs::write(path, text + "\n")
                .with_context(|| format!("writing {}", path.display()))?;
            meta_sha512 = Some(sigmf::sha512_of_file(path)?);
            if ctx.archive {
                archive_path = Some(sigmf::archive(path, &self.data_path)?);
            }
        }
        Ok(ChannelReport {
            channel: self.channel,
            data_path: self.data_path.display().to_string(),
            meta_path: self.meta_path.as_ref().map(|p| p.display().to_string()),
            archive_path: archive_path.map(|p| p.display().to_string()),
            meta_sha512,
            slots: self.slots,
            payload_bytes: self.payload_bytes,
            samples: self.samples,
            gaps: self.gaps,
        })
    }
}

pub fn export(
    stripe: &StripeSet,
    catalog: &Catalog,
    range: std::ops::Range<usize>,
    options: &ExportOptions,
) -> Result<ExportReport> {
    let sb = &stripe.superblock;
    let n = sb.channels.len() as u64;
    let layout = ChannelLayout::of(sb);
    let view = catalog.view();
    let (first, last) = if range.is_empty() {
        (None, None)
    } else {
        (Some(view.get(range.start)?), Some(view.get(range.end - 1)?))
    };
    let wanted = exported_channels(stripe, options);
    let mut outs: Vec<Option<ChannelOut>> = (0..n).map(|_| None).collect();
    let mut created: Vec<PathBuf> = Vec::new();
    for (file, &c) in wanted.iter().enumerate() {
        let ch = &sb.channels[c as usize];
        let sample_bytes = datatype_sample_bytes(&ch.datatype)
            .expect("superblock datatypes were validated") as u64;
        let (data_path, meta_path) = paths_for(options, c);
        created.push(data_path.clone());
        let start = first
            .map(|f| first_card_seq_of(&layout, f.card_seq, c))
            .unwrap_or(0);
        outs[c as usize] = Some(ChannelOut {
            channel: c,
            file,
            out_bytes: 0,
            data_path,
            meta_path,
            sample_bytes,
            samples_per_buffer: layout.samples_per_channel(
                layout.full_used_bytes(sb.payload_bytes),
                sample_bytes as u32,
            ),
            sample_rate_hz: ch.sample_rate_hz,
            next_card_seq: start,
            samples: 0,
            slots: 0,
            payload_bytes: 0,
            need_capture: false,
            captures: Vec::new(),
            annotations: Vec::new(),
            skipped: Vec::new(),
            skipped_more: 0,
            gaps: Vec::new(),
        });
    }
    let ctx = Ctx {
        mode: options.gaps,
        layout,
        clock: select::time_base(catalog, stripe)
            .map_err(|IndexDamage(why)| anyhow::anyhow!("index: {why}"))?
            .map(|b| CaptureClock::new(sb, b.anchor)),
        archive: options.sigmf.archive,
    };
    let data_paths = created.clone();
    let mut result = (|| -> Result<()> {
        let mut writer = read_and_write(
            stripe,
            catalog,
            range,
            options,
            &ctx,
            &mut outs,
            &data_paths,
        )?;
        for out in outs.iter_mut().flatten() {
            out.close(&ctx, &mut writer, last.map(|e| e.card_seq))?;
        }
        writer.finish()
    })();
    let mut reports = Vec::with_capacity(wanted.len());
    if result.is_ok() {
        for out in outs.into_iter().flatten() {
            let ch = &sb.channels[out.channel as usize];
            let meta = (options.format == OutputFormat::Sigmf).then(|| Meta {
                datatype: ch.datatype.clone(),
                sample_rate_hz: ch.sample_rate_hz,
                description: format!(
                    "dmarec recording {}, channel {} ({})",
                    sb.recording_uuid, out.channel, ch.name
                ),
                extra: options.sigmf.meta.clone(),
                frequency_hz: options.sigmf.frequency_of(out.channel),
                sha512: options.sigmf.sha512.then(String::new),
                captures: Vec::new(),
                annotations: Vec::new(),
            });
            if let Some(p) = &out.meta_path {
                created.push(p.clone());
                if options.sigmf.archive {
                    created.push(p.with_extension("sigmf"));
                }
            }
            match out.finish(&ctx, meta) {
                Ok(r) => reports.push(r),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
    }
    let collection = collection_path(options);
    if let (Ok(()), Some(path)) = (&result, &collection) {
        created.push(path.clone());
        result = write_collection(path, &reports, &sb.recording_uuid.to_string());
    }
    if let Err(e) = result {
        // Leave no half-written output behind.
        for p in &created {
            let _ = std::fs::remove_file(p);
        }
        return Err(e);
    }
    Ok(ExportReport {
        schema_version: crate::JSON_SCHEMA_VERSION,
        recording_uuid: sb.recording_uuid.to_string(),
        catalog: catalog.describe(),
        first_slot_seq: first.map(|e| e.slot_seq),
        last_slot_seq: last.map(|e| e.slot_seq),
        channels: reports,
        collection_path: collection.map(|p| p.display().to_string()),
    })
}

/// What export does with a checked slot, in read order: (writer, slot
/// bytes, catalog position, problem, read buffer) -> whether the writer
/// kept the buffer.
type Pass<'f> = dyn FnMut(&mut Writer, &[u8], usize, Option<String>, usize) -> Result<bool> + 'f;

/// A [`Sink`] that has each slot checked on the workers ([`Ordered`])
/// and passes the checked slots, in read order, to `pass` (whose writes
/// keep a read buffer until they are done).
struct ExportSink<'a, 'f> {
    writer: &'a mut Writer,
    pass: &'a mut Pass<'f>,
    view: formats::index::IndexView<'a>,
    ordered: Ordered,
    /// Catalog positions of the slots taken and not yet passed, in order.
    positions: VecDeque<usize>,
    /// Buffers passed and not kept by the writer.
    freed: VecDeque<usize>,
}

impl ExportSink<'_, '_> {
    /// Passes the next checked slot (waiting for it with `wait`); false
    /// when there is none.
    fn pass_next(&mut self, wait: bool) -> Result<bool> {
        let Some(c) = self.ordered.next(wait)? else {
            return Ok(false);
        };
        let position = self
            .positions
            .pop_front()
            .expect("a position per slot taken");
        let slot = self.ordered.slot(c.buffer);
        if !(self.pass)(self.writer, slot, position, c.problem, c.buffer)? {
            self.freed.push_back(c.buffer);
        }
        Ok(true)
    }
}

impl Sink for ExportSink<'_, '_> {
    fn deliver(
        &mut self,
        _pool: &crate::aligned::BufferPool,
        completion: uring::Completion,
    ) -> Result<Option<usize>> {
        let position = completion.request.tag as usize;
        self.positions.push_back(position);
        let entry = self.view.get(position)?;
        self.ordered.add(&completion, entry)?;
        // Bounded: each turn passes one of the slots taken.
        while self.pass_next(false)? {}
        Ok(None)
    }

    fn reclaim(&mut self, wait: bool) -> Result<Option<usize>> {
        // Bounded: each turn returns, or passes one of the slots taken.
        loop {
            if let Some(b) = self.freed.pop_front() {
                return Ok(Some(b));
            }
            if let Some(b) = self.writer.reclaim(false)? {
                return Ok(Some(b));
            }
            if self.pass_next(false)? {
                continue;
            }
            if !wait {
                return Ok(None);
            }
            if self.ordered.outstanding() == 0 {
                return self.writer.reclaim(true);
            }
            self.pass_next(true)?;
        }
    }
}

/// Reads the range's slots of the exported channels, checks them and
/// submits their payloads' writes; returns the writer (writes may still
/// be in flight: zero fillers).
fn read_and_write(
    stripe: &StripeSet,
    catalog: &Catalog,
    range: std::ops::Range<usize>,
    options: &ExportOptions,
    ctx: &Ctx,
    outs: &mut [Option<ChannelOut>],
    data_paths: &[PathBuf],
) -> Result<Writer> {
    let layout = ctx.layout;
    let n = stripe.superblock.channels.len();
    let payload_bytes = stripe.superblock.payload_bytes as usize;
    let slot_bytes = stripe.superblock.slot_bytes() as usize;
    let view = catalog.view();
    let wanted = exported_channels(stripe, options);
    // Interleaved: every slot holds every channel.
    let exported = |e: &IndexEntry| {
        layout.interleaved() || ((e.channel as usize) < n && outs_has(&wanted, e.channel as u16))
    };
    let readable = |e: &IndexEntry| stripe.member(e.device_index as usize).is_some();
    let files: Vec<Option<&std::fs::File>> = stripe
        .members
        .iter()
        .map(|m| m.as_ref().map(|t| &t.file))
        .collect();
    let count = blockio::ReadBudget::EXPORT.buffer_count(slot_bytes, files.len());
    let mut reader = Reader::new(&files, slot_bytes, count)?;
    // Outputs are allocated ahead to their payloads' size: round-robin
    // ones are written O_DIRECT from the read buffers, interleaved ones
    // staged (Writer::append) and written O_DIRECT from the stage.
    // One pass over the selection's index entries gives both the outputs'
    // sizes and the progress bar's total (the bytes read).
    let (per_channel, total) = selection_bytes(&view, range.clone(), n, |e| readable(e))?;
    let (expected, total_bytes): (Vec<u64>, u64) = match layout.interleaved() {
        true => (vec![total / n as u64; wanted.len()], total),
        false => {
            let expected: Vec<u64> = wanted.iter().map(|&c| per_channel[c as usize]).collect();
            let exported_bytes = expected.iter().sum();
            (expected, exported_bytes)
        }
    };
    // Room for a write from every read buffer, and a few zero fillers.
    let mut writer = Writer::create(
        data_paths,
        &expected,
        reader.pool().clone(),
        count + 4,
        payload_bytes,
        layout.interleaved(),
    )?;
    let mut splitter = layout
        .frame_bytes()
        .map(|frame| Deinterleaver::new(n, frame as usize / n, payload_bytes));
    let bar = crate::progress::bytes_bar(total_bytes, "export", options.quiet);
    let mut requests = range.clone().filter_map(|i| {
        let e = view.get(i).ok()?; // checked by plan()
        (exported(&e) && readable(&e)).then_some(Request {
            device_index: e.device_index as usize,
            offset_bytes: e.device_offset_bytes,
            len_bytes: slot_bytes,
            tag: i as u64,
        })
    });
    let mut cursor = range.start;
    // Entries before `upto` that were not read: skipped (missing member).
    let skip_unread =
        |outs: &mut [Option<ChannelOut>], upto: usize, cursor: &mut usize| -> Result<()> {
            while *cursor < upto {
                let e = view.get(*cursor)?;
                if exported(&e) && !readable(&e) {
                    for out in outs_of(outs, &layout, &e) {
                        out.skip(
                            &e,
                            &format!("unavailable (member {} was not given)", e.device_index),
                        );
                    }
                }
                *cursor += 1;
            }
            Ok(())
        };
    let mut pass = |writer: &mut Writer,
                    slot: &[u8],
                    i: usize,
                    mut problem: Option<String>,
                    buffer: usize|
     -> Result<bool> {
        skip_unread(outs, i, &mut cursor)?;
        cursor = i + 1;
        let e = view.get(i)?;
        let used = e.payload_bytes_used as usize;
        if let Some(bar) = &bar {
            bar.inc(used as u64);
        }
        if problem.is_none() {
            problem = layout.used_bytes_problem(e.payload_bytes_used);
        }
        if let Some(why) = problem {
            for out in outs_of(outs, &layout, &e) {
                out.skip(&e, &format!("damaged ({why})"));
            }
            return Ok(false);
        }
        let payload = &slot[SLOT_HEADER_BYTES..SLOT_HEADER_BYTES + used];
        match splitter.as_mut() {
            None => {
                let out = outs[e.channel as usize]
                    .as_mut()
                    .expect("only exported channels are read");
                // SAFETY: `slot` is read buffer `buffer` of the reader's pool
                // (the writer's read pool); the sink gives the buffer up when
                // this returns true and gets it back from the writer's reclaim.
                unsafe { out.deliver(ctx, writer, &e, payload, Some(buffer)) }
            }
            Some(splitter) => {
                splitter.split(payload);
                for out in outs.iter_mut().flatten() {
                    let samples = splitter.channel(out.channel as usize);
                    // SAFETY: no read buffer: the samples are the splitter's,
                    // copied into the writer's stage (or written) by deliver.
                    unsafe { out.deliver(ctx, writer, &e, samples, None)? };
                }
                Ok(false)
            }
        }
    };
    let spec = CheckSpec {
        uuid: stripe.recording_uuid(),
        payload_bytes,
        with_pattern: false,
    };
    // Where this thread copies every payload (a tmpfs, a de-interleaved
    // layout) it checks the slot too, while the slot is in its cache:
    // export to a tmpfs ran at 0.81-0.85 x fio with the checks on the
    // workers against 1.44 x with them here (readout-20261130-175510).
    let checks_on_workers = !layout.interleaved() && writer.all_direct();
    reader.run(
        &mut requests,
        &mut ExportSink {
            writer: &mut writer,
            pass: &mut pass,
            view: catalog.view(),
            ordered: Ordered::new(reader.pool().clone(), slot_bytes, spec, checks_on_workers),
            positions: VecDeque::new(),
            freed: VecDeque::new(),
        },
    )?;
    skip_unread(outs, range.end, &mut cursor)?;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    Ok(writer)
}

/// The `.sigmf-collection` of an `--all` export: every channel's
/// recording by base name and the SHA-512 of its metadata.
fn write_collection(path: &Path, reports: &[ChannelReport], recording_uuid: &str) -> Result<()> {
    let streams: Vec<(PathBuf, String)> = reports
        .iter()
        .filter_map(|r| Some((PathBuf::from(r.meta_path.as_ref()?), r.meta_sha512.clone()?)))
        .collect();
    assert_eq!(
        streams.len(),
        reports.len(),
        "every SigMF channel has metadata"
    );
    let description = format!("dmarec recording {recording_uuid}, every channel");
    sigmf::write_collection(path, &streams, &description)
}

fn outs_has(wanted: &[u16], channel: u16) -> bool {
    wanted.contains(&channel)
}

/// The first card sequence number at or after `card_seq` whose buffer holds
/// `channel`'s samples.
fn first_card_seq_of(layout: &ChannelLayout, card_seq: u64, channel: u16) -> u64 {
    let stride = layout.card_seq_stride();
    match layout {
        ChannelLayout::RoundRobin { .. } => {
            card_seq + (u64::from(channel) + stride - card_seq % stride) % stride
        }
        ChannelLayout::Interleaved { .. } => card_seq,
    }
}

/// The outputs entry `e`'s payload goes to: its channel's (round-robin) or
/// every exported channel's (interleaved).
fn outs_of<'o>(
    outs: &'o mut [Option<ChannelOut>],
    layout: &ChannelLayout,
    e: &IndexEntry,
) -> impl Iterator<Item = &'o mut ChannelOut> {
    let interleaved = layout.interleaved();
    let channel = e.channel as usize;
    outs.iter_mut()
        .enumerate()
        .filter(move |(c, _)| interleaved || *c == channel)
        .filter_map(|(_, out)| out.as_mut())
}

/// Payload bytes of the entries in `range` that `wanted` keeps: per
/// channel (of `channels`: the size of each round-robin output) and in
/// all (an interleaved export's outputs; its progress bar's total).
pub(crate) fn selection_bytes(
    view: &formats::index::IndexView<'_>,
    range: std::ops::Range<usize>,
    channels: usize,
    wanted: impl Fn(&IndexEntry) -> bool,
) -> Result<(Vec<u64>, u64)> {
    let mut per_channel = vec![0u64; channels];
    let mut total = 0u64;
    for i in range {
        let e = view.get(i)?;
        if !wanted(&e) {
            continue;
        }
        let bytes = u64::from(e.payload_bytes_used);
        total += bytes;
        if let Some(b) = per_channel.get_mut(e.channel as usize) {
            *b += bytes;
        }
    }
    Ok((per_channel, total))
}

impl ExportReport {
    pub fn text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        for c in &self.channels {
            let _ = writeln!(
                s,
                "channel {}: {} slots, {} bytes, {} samples -> {}{}",
                c.channel,
                c.slots,
                c.payload_bytes,
                c.samples,
                c.data_path,
                c.meta_path
                    .as_ref()
                    .map(|m| format!(" + {m}"))
                    .unwrap_or_default()
            );
            for g in &c.gaps {
                let _ = writeln!(s, "  at sample {}: {}", g.sample_start, g.reason);
            }
        }
        s
    }
}
