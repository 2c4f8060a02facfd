//! `dmaplay replay`: stream the payloads of a channel (or of every
//! channel, in recording order) to stdout, a file or a FIFO, paced by the
//! card timestamps: in real time, N times faster or slower, or as fast as
//! the disks go. A damaged or unavailable slot is skipped with a warning.
//! At `--speed max` slots are checked (header, CRC) on worker threads,
//! verify's ([`crate::checkpool`]), and streamed in slot order by the
//! reading thread; paced, the reading thread checks each as it is read.

use crate::aligned::BufferPool;
use crate::catalog::{Catalog, IndexDamage};
use crate::checkpool::{CheckSpec, Ordered};
use crate::select::{self, Selection};
use crate::stripe::StripeSet;
use crate::timespec::TimeSpec;
use crate::uring::{self, Reader, Request, Sink};
use anyhow::{bail, Context, Result};
use formats::{IndexEntry, SLOT_HEADER_BYTES};
use serde::Serialize;
use std::collections::VecDeque;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Speed {
    /// Card time divided by this factor (1 = real time).
    Factor(f64),
    Max,
}

impl Speed {
    /// `original`, `xN` (N > 0, e.g. x2, x0.5) or `max`.
    pub fn parse(text: &str) -> Result<Speed, String> {
        match text {
            "original" | "x1" => Ok(Speed::Factor(1.0)),
            "max" => Ok(Speed::Max),
            _ => match text.strip_prefix('x').map(str::parse::<f64>) {
                Some(Ok(f)) if f.is_finite() && f > 0.0 => Ok(Speed::Factor(f)),
                _ => Err(format!(
                    "{text:?}: use original, max, or xN with N > 0 (e.g. x2, x0.5)"
                )),
            },
        }
    }
}

pub struct ReplayOptions {
    pub channel: Option<u16>,
    pub speed: Speed,
    pub from: Option<TimeSpec>,
    pub to: Option<TimeSpec>,
    pub out: Option<PathBuf>,
    pub force: bool,
    /// `--realtime`: the thread runs SCHED_FIFO and spins through the last
    /// [`crate::pacing::SPIN_BEFORE_DUE`] before each slot is due.
    pub realtime: bool,
}

#[derive(Debug, Serialize)]
pub struct ReplayReport {
    pub schema_version: u32,
    pub slots: u64,
    pub bytes: u64,
    pub skipped: Vec<String>,
    pub seconds: f64,
    /// The reader of the stream went away (EPIPE) before the end.
    pub reader_closed: bool,
    /// Lateness against the card timestamps (None at --speed max).
    pub pacing: Option<crate::pacing::PacingReport>,
}

pub fn check_options(stripe: &StripeSet, options: &ReplayOptions) -> Result<()> {
    crate::check_channel(stripe, options.channel)?;
    if options.channel.is_some() && formats::ChannelLayout::of(&stripe.superblock).interleaved() {
        return Err(crate::UsageError(format!(
            "--channel: recording {} is interleaved (every buffer holds all {} channels) and replay streams whole buffers; replay without --channel, or de-interleave one channel with `dmaplay export --channel N`",
            stripe.recording_uuid(),
            stripe.superblock.channels.len()
        ))
        .into());
    }
    refuse_terminal(options.out.as_deref())?;
    if let Some(p) = &options.out {
        stripe.refuse_output(p, "--out")?;
        if let Ok(m) = std::fs::metadata(p) {
            if m.is_file() && !options.force {
                bail!(
                    "--out {} exists: remove it, choose another path, or give --force",
                    p.display()
                );
            }
        }
    }
    Ok(())
}

/// The stream is binary: a terminal as its destination (stdout without
/// --out, or --out naming a terminal) is a usage error.
pub fn refuse_terminal(out: Option<&std::path::Path>) -> Result<()> {
    use std::io::IsTerminal;
    let terminal = match out {
        None => std::io::stdout().is_terminal(),
        // Only a character device can be a terminal (opening a FIFO here
        // would wait for its reader).
        Some(p) => {
            std::fs::metadata(p).is_ok_and(|m| m.file_type().is_char_device())
                && std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NOCTTY)
                    .open(p)
                    .is_ok_and(|f| f.is_terminal())
        }
    };
    if terminal {
        let what = out.map_or("stdout".to_string(), |p| format!("--out {}", p.display()));
        return Err(crate::UsageError(format!(
            "{what} is a terminal: replay writes binary samples; redirect stdout to a file or program (dmaplay replay ... > x.raw, | consumer) or give --out FILE"
        ))
        .into());
    }
    Ok(())
}

pub fn plan(
    stripe: &StripeSet,
    catalog: &Catalog,
    options: &ReplayOptions,
) -> anyhow::Result<Result<std::ops::Range<usize>, IndexDamage>> {
    let sel = Selection {
        channel: options.channel,
        from: options.from,
        to: options.to,
        seq: None,
    };
    let channels: Vec<u16> = options.channel.into_iter().collect();
    select::resolve_nonempty(catalog, stripe, &sel, &channels)
}

/// Most skipped slots listed in the report (all are warned about).
const MAX_LISTED_SKIPS: usize = 1000;

/// The error that ends a replay whose reader went away (EPIPE).
const CLOSED: &str = "stream reader closed";

/// Where the checked slots go, in order: paced (or not) into the stream.
struct Stream {
    out: Box<dyn Write>,
    speed: Speed,
    /// Spin instead of sleeping through this much before a slot is due.
    spin: Duration,
    started: Instant,
    origin_card_ns: Option<u64>,
    pacing: crate::pacing::Pacing,
    skipped: Vec<String>,
    slots: u64,
    bytes: u64,
}

impl Stream {
    fn skip(&mut self, msg: String) {
        eprintln!("dmaplay: replay: skipping {msg}");
        if self.skipped.len() < MAX_LISTED_SKIPS {
            self.skipped.push(msg);
        }
    }

    /// Writes slot `e`'s payload when it is due, or skips it for `problem`.
    fn take(&mut self, slot: &[u8], e: &IndexEntry, problem: Option<String>) -> Result<()> {
        if let Some(why) = problem {
            self.skip(format!(
                "slot {} (card_seq {}): {why}",
                e.slot_seq, e.card_seq
            ));
            return Ok(());
        }
        let t0 = *self.origin_card_ns.get_or_insert(e.card_timestamp_ns);
        let due = match self.speed {
            Speed::Factor(f) => Some(Duration::from_secs_f64(
                e.card_timestamp_ns.saturating_sub(t0) as f64 / 1e9 / f,
            )),
            Speed::Max => None,
        };
        let wait = due.and_then(|d| d.checked_sub(self.started.elapsed()));
        if let (Some(_), Some(due)) = (wait, due) {
            self.out.flush().ok();
            crate::pacing::sleep_until(self.started + due, self.spin);
        }
        let payload = &slot[SLOT_HEADER_BYTES..SLOT_HEADER_BYTES + e.payload_bytes_used as usize];
        match self.out.write_all(payload) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => bail!(CLOSED),
            Err(err) => return Err(err).context("writing the replay stream"),
        }
        if let Some(due) = due {
            let late_ns = self.started.elapsed().as_nanos() as i128 - due.as_nanos() as i128;
            self.pacing.record(late_ns, wait.is_none());
        }
        self.slots += 1;
        self.bytes += payload.len() as u64;
        Ok(())
    }
}

/// At `--speed max`, reads go to the check workers and the checked slots
/// come back in read order ([`Ordered`]) to the stream. Paced, each slot
/// is checked in this thread when it is read (a CRC is microseconds; a
/// slot due while the reader waits for a read would be late). Every read
/// buffer is kept until its slot is through the stream.
struct ReplaySink<'a> {
    stream: Stream,
    view: formats::index::IndexView<'a>,
    ordered: Ordered,
    /// Buffers through the stream, not yet given back to the reader.
    freed: VecDeque<usize>,
}

impl ReplaySink<'_> {
    /// Streams the next slot in read order when it is checked (waiting
    /// for it with `wait`); false when there is none.
    fn stream_next(&mut self, wait: bool) -> Result<bool> {
        let Some(c) = self.ordered.next(wait)? else {
            return Ok(false);
        };
        self.stream
            .take(self.ordered.slot(c.buffer), &c.entry, c.problem)?;
        self.freed.push_back(c.buffer);
        Ok(true)
    }
}

impl Sink for ReplaySink<'_> {
    fn deliver(&mut self, _pool: &BufferPool, c: uring::Completion) -> Result<Option<usize>> {
        let entry = self.view.get(c.request.tag as usize)?;
        self.ordered.add(&c, entry)?;
        // Bounded: each turn streams one of the slots taken.
        while self.stream_next(false)? {}
        Ok(None)
    }

    fn reclaim(&mut self, wait: bool) -> Result<Option<usize>> {
        // Bounded: each turn streams one of the slots taken.
        loop {
            if let Some(b) = self.freed.pop_front() {
                return Ok(Some(b));
            }
            if !self.stream_next(wait)? {
                return Ok(None);
            }
        }
    }
}

fn open_out(options: &ReplayOptions) -> Result<Box<dyn Write>> {
    Ok(match &options.out {
        None => Box::new(std::io::stdout().lock()),
        Some(p) => {
            let is_special = std::fs::metadata(p)
                .map(|m| m.file_type().is_fifo() || m.file_type().is_char_device())
                .unwrap_or(false);
            let f = if is_special {
                std::fs::OpenOptions::new().write(true).open(p)
            } else {
                std::fs::File::create(p)
            }
            .with_context(|| format!("opening --out {}", p.display()))?;
            Box::new(std::io::BufWriter::with_capacity(
                formats::MIN_PAYLOAD_BYTES as usize,
                f,
            )) // payloads bypass the buffer
        }
    })
}

pub fn replay(
    stripe: &StripeSet,
    catalog: &Catalog,
    range: std::ops::Range<usize>,
    options: &ReplayOptions,
) -> Result<ReplayReport> {
    let sb = &stripe.superblock;
    let slot_bytes = sb.slot_bytes() as usize;
    let view = catalog.view();
    let sel = Selection {
        channel: options.channel,
        ..Default::default()
    };
    let mut requests = Vec::new();
    let mut unavailable = Vec::new();
    for i in range {
        let e = view.get(i)?;
        if !sel.wants(&e) {
            continue;
        }
        if stripe.member(e.device_index as usize).is_none() {
            let member = e.device_index;
            unavailable.push(format!(
                "slot {}: member {member} was not given",
                e.slot_seq
            ));
            continue;
        }
        requests.push(Request {
            device_index: e.device_index as usize,
            offset_bytes: e.device_offset_bytes,
            len_bytes: slot_bytes,
            tag: i as u64,
        });
    }
    let files: Vec<Option<&std::fs::File>> = stripe
        .members
        .iter()
        .map(|m| m.as_ref().map(|t| &t.file))
        .collect();
    let count = blockio::ReadBudget::REPLAY.buffer_count(slot_bytes, files.len());
    let mut reader = Reader::new(&files, slot_bytes, count)?;
    let spec = CheckSpec {
        uuid: stripe.recording_uuid(),
        payload_bytes: sb.payload_bytes as usize,
        with_pattern: false,
    };
    let ordered = Ordered::new(
        reader.pool().clone(),
        slot_bytes,
        spec,
        options.speed == Speed::Max,
    );
    let mut sink = ReplaySink {
        stream: Stream {
            out: open_out(options)?,
            speed: options.speed,
            spin: match options.realtime {
                true => crate::pacing::SPIN_BEFORE_DUE,
                false => Duration::ZERO,
            },
            started: Instant::now(),
            origin_card_ns: None,
            pacing: crate::pacing::Pacing::with_capacity(match options.speed {
                Speed::Max => 0,
                Speed::Factor(_) => requests.len(),
            }),
            skipped: Vec::new(),
            slots: 0,
            bytes: 0,
        },
        view,
        ordered,
        freed: VecDeque::new(),
    };
    for msg in unavailable {
        sink.stream.skip(msg);
    }
    let run = reader.run(&mut requests.into_iter(), &mut sink);
    let mut stream = sink.stream;
    let reader_closed = match run {
        Ok(()) => match stream.out.flush() {
            Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => true,
            r => r.context("writing the replay stream").map(|()| false)?,
        },
        Err(e) if e.to_string() == CLOSED => true,
        Err(e) => return Err(e),
    };
    Ok(ReplayReport {
        schema_version: crate::JSON_SCHEMA_VERSION,
        slots: stream.slots,
        bytes: stream.bytes,
        skipped: stream.skipped,
        seconds: stream.started.elapsed().as_secs_f64(),
        reader_closed,
        pacing: stream.pacing.report(),
    })
}

impl ReplayReport {
    pub fn text(&self) -> String {
        let pacing = match &self.pacing {
            Some(p) => format!(
                "\npacing: late p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms; {} of {} slots over 1 ms ({} of them reached the stream after they were due)",
                p.p50_ms, p.p99_ms, p.max_ms, p.slots_late_over_1ms, p.slots, p.slots_late_over_1ms_arrived_late
            ),
            None => String::new(),
        };
        format!(
            "replayed {} slots, {} bytes in {:.3} s{}{}{pacing}\n",
            self.slots,
            self.bytes,
            self.seconds,
            if self.skipped.is_empty() {
                String::new()
            } else {
                format!(", {} skipped", self.skipped.len())
            },
            if self.reader_closed {
                " (reader closed the stream)"
            } else {
                ""
            }
        )
    }
}
