//! `dmaplay reindex`: rebuild a recording's index from its members, after a
//! crash or a lost index. The slots come from a header scan ([`crate::scan`]):
//! only this recording's slots with a valid header at the location the
//! layout gives their number, in ring mode only the newest lap. The newest
//! slots are read whole and checked ([`formats::check_slot`]) to find torn
//! ones (a write cut short by a crash: valid header, payload CRC mismatch);
//! what counts as the torn tail and what is done with it is the format's
//! rule, [`formats::TornTail`], which the recorder's read-back follows too:
//! a torn slot is left out, since the index has no flag for it. The index is written to a temporary file
//! beside the target path, synced and renamed over it.

use crate::catalog::index_image;
use crate::scan::{self, Found, ScanReport};
use crate::stripe::StripeSet;
use crate::uring::{self, FnSink, Reader, Request};
use anyhow::{bail, Context, Result};
use blockio::ReadBudget;
use formats::index::{INDEX_ENTRY_BYTES, INDEX_HEADER_BYTES};
use formats::{check::SlotProblem, IndexEntry, TornTail};
use serde::Serialize;
use std::collections::BTreeSet;
use std::collections::VecDeque;
use std::io::Write;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Newest slots whose payload is read to find torn writes
/// ([`TornTail::DEFAULT_WINDOW_SLOTS`]).
pub const DEFAULT_CHECK_NEWEST: usize = TornTail::DEFAULT_WINDOW_SLOTS as usize;

pub struct ReindexOptions {
    pub index: PathBuf,
    pub force: bool,
    pub check_newest: usize,
    pub quiet: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct TornSlot {
    pub slot_seq: u64,
    pub card_seq: u64,
    pub device: String,
    pub offset_bytes: u64,
    pub problem: String,
}

#[derive(Debug, Serialize)]
pub struct ReindexReport {
    pub schema_version: u32,
    pub recording_uuid: String,
    pub index: String,
    pub slots_indexed: u64,
    pub first_slot_seq: Option<u64>,
    pub last_slot_seq: Option<u64>,
    pub ring_wraps: u64,
    pub payloads_checked: u64,
    pub torn: Vec<TornSlot>,
    pub scan: ScanReport,
}

pub fn reindex(stripe: &StripeSet, options: &ReindexOptions) -> Result<ReindexReport> {
    stripe.require_complete("reindex")?;
    stripe.refuse_output(&options.index, "--index")?;
    if options.index.exists() && !options.force {
        bail!(
            "index {} exists: give --force to replace it (or choose another --index path)",
            options.index.display()
        );
    }
    let capacity = stripe.layout.capacity_slots();
    // The valid slots go to the file in location order as they are read;
    // in slot order that is the index itself, unless the ring wrapped.
    let spill = TempFile::beside(&options.index, "reindex")?;
    let mut tail = Tail::new(options.check_newest);
    let headers = write_scanned(stripe, options, &spill, &mut tail)?;
    let (out, live) = if headers.emitted_in_slot_order(capacity) {
        (spill, headers.valid)
    } else {
        let sorted = TempFile::beside(&options.index, "sorted")?;
        let live = sort_ring(&spill, &sorted, capacity, headers.newest, &mut tail)?;
        drop(spill);
        (sorted, live)
    };
    let torn = find_torn(stripe, tail.entries.make_contiguous())?;
    let payloads_checked = window_of(options.check_newest).window(live as usize).len() as u64;
    let first_seq = match live {
        0 => None,
        _ => Some(entry_at(&out, 0)?.slot_seq),
    };
    let (slots_indexed, report) = if torn.is_empty() {
        let seqs = EntryReader::new(&out)?;
        let (report, _) = seqs.with_seqs(|s| headers.finish(capacity, live, first_seq, s))?;
        (live, report)
    } else {
        let kept = drop_torn(&out, live, &tail, &torn)?;
        (kept, torn_report(&out, headers, kept, &torn, capacity)?)
    };
    let last_seq = match slots_indexed {
        0 => None,
        n => Some(entry_at(&out, n - 1)?.slot_seq),
    };
    out.commit(&options.index)?;
    Ok(ReindexReport {
        schema_version: crate::JSON_SCHEMA_VERSION,
        recording_uuid: stripe.recording_uuid().to_string(),
        index: options.index.display().to_string(),
        slots_indexed,
        first_slot_seq: report.oldest_slot_seq,
        last_slot_seq: last_seq,
        ring_wraps: last_seq.map(|s| s / capacity).unwrap_or(0),
        payloads_checked,
        torn,
        scan: report,
    })
}

/// Scans the headers, writing the index header and every valid slot's entry
/// (location order) to `spill`; keeps the last ones in `tail`.
fn write_scanned(
    stripe: &StripeSet,
    options: &ReindexOptions,
    spill: &TempFile,
    tail: &mut Tail,
) -> Result<scan::Headers> {
    let bar = crate::progress::count_bar(
        stripe.layout.capacity_slots(),
        "slots",
        "scan headers",
        options.quiet,
    );
    let mut w = BufWriter::with_capacity(WRITE_BUFFER_BYTES, &spill.file);
    w.write_all(&index_image(stripe, &[]))
        .with_context(|| format!("writing {}", spill.path.display()))?;
    let headers = scan::scan_headers(
        stripe,
        &mut |n| {
            if let Some(b) = &bar {
                b.set_position(n)
            }
        },
        &mut |e| {
            tail.push(e);
            w.write_all(&e.encode())
                .with_context(|| format!("writing {}", spill.path.display()))
        },
    )?;
    w.flush()
        .with_context(|| format!("writing {}", spill.path.display()))?;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    Ok(headers)
}

/// Bytes buffered per write of entries (64 B each).
const WRITE_BUFFER_BYTES: usize = 1 << 20;

/// The last `limit` entries written (the torn-tail window).
struct Tail {
    limit: usize,
    entries: VecDeque<IndexEntry>,
}

impl Tail {
    fn new(limit: usize) -> Tail {
        Tail {
            limit,
            entries: VecDeque::with_capacity(limit.min(1 << 16)),
        }
    }

    fn push(&mut self, e: IndexEntry) {
        if self.limit == 0 {
            return;
        }
        if self.entries.len() == self.limit {
            self.entries.pop_front();
        }
        self.entries.push_back(e);
    }
}

/// A ring that wrapped: the live slots in slot order are the locations
/// from the oldest live one's to the end, then from the start (a rotation
/// of location order), without older laps. Copies them from `spill` to
/// `sorted` in two passes; returns how many.
fn sort_ring(
    spill: &TempFile,
    sorted: &TempFile,
    capacity: u64,
    newest: Option<u64>,
    tail: &mut Tail,
) -> Result<u64> {
    let newest = newest.expect("a ring out of order has slots");
    let oldest_live = (newest + 1).saturating_sub(capacity);
    let rotation = (newest + 1) % capacity;
    *tail = Tail::new(tail.limit);
    let mut w = BufWriter::with_capacity(WRITE_BUFFER_BYTES, &sorted.file);
    let mut header = vec![0u8; INDEX_HEADER_BYTES];
    spill
        .file
        .read_exact_at(&mut header, 0)
        .with_context(|| format!("reading {}", spill.path.display()))?;
    w.write_all(&header)?;
    let mut live = 0u64;
    for second in [false, true] {
        for e in EntryReader::new(spill)? {
            let e = e?;
            let wanted = (e.slot_seq % capacity < rotation) == second;
            if wanted && e.slot_seq >= oldest_live {
                w.write_all(&e.encode())
                    .with_context(|| format!("writing {}", sorted.path.display()))?;
                tail.push(e);
                live += 1;
            }
        }
    }
    w.flush()
        .with_context(|| format!("writing {}", sorted.path.display()))?;
    Ok(live)
}

/// Takes the torn slots (all in `tail`, the last of `live` entries) out of
/// the index file; returns the entries left.
fn drop_torn(out: &TempFile, live: u64, tail: &Tail, torn: &[TornSlot]) -> Result<u64> {
    let torn_seqs: BTreeSet<u64> = torn.iter().map(|t| t.slot_seq).collect();
    let kept: Vec<u8> = tail
        .entries
        .iter()
        .filter(|e| !torn_seqs.contains(&e.slot_seq))
        .flat_map(|e| e.encode())
        .collect();
    let tail_start = live - tail.entries.len() as u64;
    let at = (INDEX_HEADER_BYTES + tail_start as usize * INDEX_ENTRY_BYTES) as u64;
    let context = || format!("rewriting the tail of {}", out.path.display());
    out.file.write_all_at(&kept, at).with_context(context)?;
    out.file
        .set_len(at + kept.len() as u64)
        .with_context(context)?;
    Ok(tail_start + (kept.len() / INDEX_ENTRY_BYTES) as u64)
}

/// The scan report after torn slots left the index (`kept` entries): the
/// live window ends at the newest intact slot; torn slots inside it are
/// missing numbers.
fn torn_report(
    out: &TempFile,
    headers: scan::Headers,
    kept: u64,
    torn: &[TornSlot],
    capacity: u64,
) -> Result<ScanReport> {
    let (first, last) = match kept {
        0 => (None, None),
        n => (
            Some(entry_at(out, 0)?.slot_seq),
            Some(entry_at(out, n - 1)?.slot_seq),
        ),
    };
    let (mut r, findings) = EntryReader::new(out)?
        .with_seqs(|s| headers.finish(capacity, kept + torn.len() as u64, first, s))?;
    let torn_positions: BTreeSet<u64> = torn.iter().map(|t| t.slot_seq % capacity).collect();
    r.live_slots = kept;
    r.newest_slot_seq = last;
    r.oldest_slot_seq = first;
    r.missing = match (first, last) {
        (Some(a), Some(b)) => {
            let oldest_window = (b + 1).saturating_sub(capacity).min(a);
            EntryReader::new(out)?.with_seqs(|seqs| {
                scan::missing_runs_of(seqs, oldest_window, b, |seq| {
                    findings.of_missing(seq, capacity, &torn_positions)
                })
            })?
        }
        _ => Vec::new(),
    };
    let counts = &mut r.counts;
    *counts.entry(Found::Live.key().into()).or_insert(0) -= torn.len() as u64;
    *counts.entry(Found::Torn.key().into()).or_insert(0) += torn.len() as u64;
    Ok(r)
}

/// Entry `position` of an index file.
fn entry_at(f: &TempFile, position: u64) -> Result<IndexEntry> {
    let mut b = [0u8; INDEX_ENTRY_BYTES];
    let at = INDEX_HEADER_BYTES as u64 + position * INDEX_ENTRY_BYTES as u64;
    f.file
        .read_exact_at(&mut b, at)
        .with_context(|| format!("reading {} at {at}", f.path.display()))?;
    IndexEntry::decode(&b).with_context(|| format!("{} entry {position}", f.path.display()))
}

/// The entries of an index file being written, read in order with a
/// bounded buffer.
struct EntryReader<'f> {
    file: &'f TempFile,
    reader: BufReader<&'f std::fs::File>,
    position: u64,
}

impl<'f> EntryReader<'f> {
    fn new(file: &'f TempFile) -> Result<EntryReader<'f>> {
        let mut f = &file.file;
        f.seek(SeekFrom::Start(INDEX_HEADER_BYTES as u64))
            .with_context(|| format!("reading {}", file.path.display()))?;
        Ok(EntryReader {
            file,
            reader: BufReader::with_capacity(WRITE_BUFFER_BYTES, f),
            position: 0,
        })
    }

    /// Runs `f` over the slot numbers; fails if a read fails.
    fn with_seqs<T>(self, f: impl FnOnce(&mut dyn Iterator<Item = u64>) -> T) -> Result<T> {
        let mut failed = None;
        let mut seqs = self.map_while(|e| match e {
            Ok(e) => Some(e.slot_seq),
            Err(err) => {
                failed = Some(err);
                None
            }
        });
        let t = f(&mut seqs);
        drop(seqs);
        match failed {
            Some(err) => Err(err),
            None => Ok(t),
        }
    }
}

impl Iterator for EntryReader<'_> {
    type Item = Result<IndexEntry>;

    fn next(&mut self) -> Option<Result<IndexEntry>> {
        let mut b = [0u8; INDEX_ENTRY_BYTES];
        match self.reader.read_exact(&mut b) {
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => None,
            Err(e) => Some(Err(e).with_context(|| format!("reading {}", self.file.path.display()))),
            Ok(()) => {
                self.position += 1;
                Some(IndexEntry::decode(&b).with_context(|| {
                    format!("{} entry {}", self.file.path.display(), self.position - 1)
                }))
            }
        }
    }
}

fn window_of(check_newest: usize) -> TornTail {
    TornTail {
        window_slots: check_newest as u64,
    }
}

/// Reads the newest slots (`tail`, the torn-tail window) whole; returns the
/// torn ones (those the torn-tail rule leaves out).
fn find_torn(stripe: &StripeSet, tail: &[IndexEntry]) -> Result<Vec<TornSlot>> {
    let rule = window_of(tail.len());
    if tail.is_empty() {
        return Ok(Vec::new());
    }
    let slot_bytes = stripe.superblock.slot_bytes() as usize;
    let payload_bytes = stripe.superblock.payload_bytes as usize;
    let files: Vec<Option<&std::fs::File>> = stripe
        .members
        .iter()
        .map(|m| m.as_ref().map(|t| &t.file))
        .collect();
    let count = ReadBudget::TORN_TAIL.buffer_count(slot_bytes, files.len());
    let mut reader = Reader::new(&files, slot_bytes, count)?;
    let mut torn = Vec::new();
    let mut requests = tail.iter().enumerate().map(|(i, e)| Request {
        device_index: e.device_index as usize,
        offset_bytes: e.device_offset_bytes,
        len_bytes: slot_bytes,
        tag: i as u64,
    });
    reader.run(
        &mut requests,
        &mut FnSink(|slot: &[u8], c: uring::Completion| {
            let e = &tail[c.request.tag as usize];
            let check = match c.result {
                Err(why) if why == uring::END_OF_DEVICE => Err(SlotProblem::EndOfDevice),
                Err(why) => Err(SlotProblem::ReadFailed(why)),
                Ok(()) => formats::check_slot(slot, e, stripe.recording_uuid(), payload_bytes),
            };
            if let (false, Err(problem)) = (rule.keeps(&check), check) {
                torn.push(TornSlot {
                    slot_seq: e.slot_seq,
                    card_seq: e.card_seq,
                    device: stripe.describe(e.device_index as usize),
                    offset_bytes: e.device_offset_bytes,
                    problem: problem.to_string(),
                });
            }
            Ok(())
        }),
    )?;
    Ok(torn)
}

/// The directory `path` is in ("." for a bare file name).
fn dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A file beside a target path, removed on drop unless committed (renamed
/// over the target).
struct TempFile {
    path: PathBuf,
    dir: PathBuf,
    file: std::fs::File,
    committed: bool,
}

impl TempFile {
    fn beside(path: &Path, what: &str) -> Result<TempFile> {
        let dir = dir_of(path);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "index".into());
        let tmp = dir.join(format!(".{name}.{what}-{}", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        Ok(TempFile {
            path: tmp,
            dir,
            file,
            committed: false,
        })
    }

    /// Syncs the file, renames it over `path` and syncs the directory.
    fn commit(mut self, path: &Path) -> Result<()> {
        self.file
            .sync_all()
            .with_context(|| format!("syncing {}", self.path.display()))?;
        std::fs::rename(&self.path, path)
            .with_context(|| format!("renaming {} to {}", self.path.display(), path.display()))?;
        self.committed = true;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("syncing directory {}", self.dir.display()))?;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl ReindexReport {
    pub fn text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "wrote {}: {} slots of recording {} (slot {} .. {}), ring wraps {}",
            self.index,
            self.slots_indexed,
            self.recording_uuid,
            self.first_slot_seq
                .map(|v| v.to_string())
                .unwrap_or_else(|| "-".into()),
            self.last_slot_seq
                .map(|v| v.to_string())
                .unwrap_or_else(|| "-".into()),
            self.ring_wraps
        );
        let _ = writeln!(
            s,
            "scanned {} slot locations: {}",
            self.scan.locations_read,
            self.scan.counts_text()
        );
        let _ = writeln!(
            s,
            "payloads of the newest {} slots checked, {} torn (not indexed)",
            self.payloads_checked,
            self.torn.len()
        );
        for t in &self.torn {
            let _ = writeln!(
                s,
                "  torn slot {} (card_seq {}) on {} offset {}: {}",
                t.slot_seq, t.card_seq, t.device, t.offset_bytes, t.problem
            );
        }
        for (uuid, n) in &self.scan.other_recordings {
            let _ = writeln!(s, "{n} stale slot(s) of another recording {uuid} (ignored)");
        }
        for d in &self.scan.damaged_headers {
            let _ = writeln!(
                s,
                "damaged slot header on member {} offset {}: {}",
                d.device_index, d.offset_bytes, d.error
            );
        }
        for m in &self.scan.missing {
            let _ = writeln!(
                s,
                "slots {}..{} missing (unwritten or destroyed): {}",
                m.first_slot_seq,
                m.last_slot_seq,
                m.found.describe()
            );
        }
        s
    }
}

#[cfg(test)]
mod dir_tests {
    use super::dir_of;
    use std::path::{Path, PathBuf};

    #[test]
    fn the_temporary_files_go_beside_the_index() {
        assert_eq!(dir_of(Path::new("r.idx")), PathBuf::from("."));
        assert_eq!(dir_of(Path::new("a/r.idx")), PathBuf::from("a"));
        assert_eq!(dir_of(Path::new("/r.idx")), PathBuf::from("/"));
    }
}
