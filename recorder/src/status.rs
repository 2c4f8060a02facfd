//! What the user sees: a progress bar on a terminal, a one-line status at an
//! interval otherwise, and the final summary (text or `--json`), including
//! the measurements the benchmarks read (CPU time, page faults per buffer in
//! steady state, payload bytes copied).

use crate::memory::SlotMemory;
use crate::record::StopReason;
use crate::source::CardStats;
use crate::target::Target;
use formats::{Layout, SlotHeader, Superblock};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Serialize)]
pub struct TargetSummary {
    pub path: String,
    pub size_bytes: u64,
    pub slot_count: u64,
    pub block_device: bool,
}

/// Version of the `--json` summary's schema (docs/JSON.md): raised when a
/// field changes meaning or goes away; new fields may appear in any version.
pub const SUMMARY_SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub schema_version: u32,
    pub recording_uuid: String,
    /// The scan this run recorded (docs/FORMAT.md "Scans").
    pub scan_name: String,
    pub scan_uuid: String,
    pub source: String,
    pub targets: Vec<TargetSummary>,
    pub index: String,
    pub ring_mode: bool,
    pub payload_bytes: u32,
    pub buffers: usize,
    /// Slot memory of the ring (buffers × slot bytes).
    pub ring_bytes: u64,
    /// The card's rate over the run (buffers filled or lost × payload / time).
    pub card_rate_mb_per_s: f64,
    /// Buffers a ring needs to hold the card's data through the longest
    /// slot write of this run (at the card's rate, plus the queue).
    pub ring_buffers_for_longest_write: u64,
    pub memory: crate::memory::Backing,
    pub io_uring_setup: String,
    pub stop_reason: Option<StopReason>,
    pub error: Option<String>,
    pub slots: u64,
    pub payload_bytes_recorded: u64,
    pub bytes_written: u64,
    pub capacity_slots: u64,
    pub ring_laps: u64,
    /// From the card's start to the end, final flushes included.
    pub seconds: f64,
    /// Bytes written / time from the start to the last slot's completion:
    /// the write rate, measured as fio measures its own (no final flush).
    pub rate_mb_per_s: f64,
    /// Time spent after the last slot's completion: draining, the index's
    /// last write and fdatasync, flushing the targets' caches.
    pub final_flush_s: f64,
    pub slots_with_gap: u64,
    pub buffers_lost: u64,
    pub card_filled: u64,
    pub card_overruns: u64,
    /// Card losses after the last recorded slot: no slot carries their gap
    /// count (card_overruns - buffers_lost).
    pub buffers_lost_after_last_slot: u64,
    /// Buffers the card filled that were not recorded because the recording
    /// stopped first.
    pub buffers_filled_not_recorded: u64,
    pub short_writes: u64,
    /// Slots whose writes completed just before a write error but read back
    /// damaged: left out of the index (recorder/src/readback.rs).
    pub slots_dropped_after_error: u64,
    pub index_entries_durable: u64,
    /// Sync rounds (targets flushed, then index written and fdatasync'ed).
    pub index_sync_rounds: u64,
    /// How slots become durable on the targets (--target-sync).
    pub target_sync: crate::journal::TargetSync,
    /// Target cache flushes issued (0 with --target-sync dsync).
    pub target_flushes: u64,
    /// The longest stalls of the whole run (docs/RELIABILITY.md).
    pub stalls: StallWindow,
    pub first_card_seq: Option<u64>,
    pub last_card_seq: Option<u64>,
    /// Slot writes checked, as they were submitted, to read the registered
    /// buffer the card filled, in place (recorder/src/record.rs `slot_sqe`):
    /// one per slot and one per re-submitted rest of a short write.
    pub writes_from_card_buffers: u64,
    pub cpu_user_s: f64,
    pub cpu_sys_s: f64,
    pub cpu_s_per_gib: f64,
    /// CPU the simulated card's thread used filling payloads (work a real
    /// card's DMA engine does for free).
    pub card_cpu_s: f64,
    /// The recorder's own CPU per GiB: all of this process minus the card.
    pub recorder_cpu_s_per_gib: f64,
    pub steady_state_slots: u64,
    pub steady_state_minor_faults: u64,
    pub steady_state_major_faults: u64,
    pub faults_per_1000_buffers: f64,
    #[serde(skip)]
    slots_submitted: u64,
}

pub fn rusage() -> libc::rusage {
    // SAFETY: getrusage fills the zeroed struct we own.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    u
}

fn secs(time: libc::timeval) -> f64 {
    time.tv_sec as f64 + time.tv_usec as f64 / 1e6
}

impl Summary {
    pub fn new(sb: &Superblock, targets: &[Target], memory: &SlotMemory) -> Summary {
        Summary {
            schema_version: SUMMARY_SCHEMA_VERSION,
            recording_uuid: sb.recording_uuid.to_string(),
            scan_name: String::new(),
            scan_uuid: String::new(),
            source: String::new(),
            targets: targets
                .iter()
                .zip(&sb.members)
                .map(|(t, m)| TargetSummary {
                    path: t.path.display().to_string(),
                    size_bytes: t.size_bytes,
                    slot_count: m.slot_count,
                    block_device: t.is_block_device,
                })
                .collect(),
            index: String::new(),
            ring_mode: sb.ring(),
            payload_bytes: sb.payload_bytes,
            buffers: memory.count(),
            ring_bytes: memory.total_bytes() as u64,
            card_rate_mb_per_s: 0.0,
            ring_buffers_for_longest_write: 0,
            memory: memory.backing(),
            io_uring_setup: String::new(),
            stop_reason: None,
            error: None,
            slots: 0,
            payload_bytes_recorded: 0,
            bytes_written: 0,
            capacity_slots: Layout::from_superblock(sb).capacity_slots(),
            ring_laps: 0,
            seconds: 0.0,
            rate_mb_per_s: 0.0,
            final_flush_s: 0.0,
            slots_with_gap: 0,
            buffers_lost: 0,
            card_filled: 0,
            card_overruns: 0,
            buffers_lost_after_last_slot: 0,
            buffers_filled_not_recorded: 0,
            short_writes: 0,
            slots_dropped_after_error: 0,
            index_entries_durable: 0,
            index_sync_rounds: 0,
            target_sync: crate::journal::TargetSync::Flush,
            target_flushes: 0,
            stalls: StallWindow::default(),
            first_card_seq: None,
            last_card_seq: None,
            writes_from_card_buffers: 0,
            cpu_user_s: 0.0,
            cpu_sys_s: 0.0,
            cpu_s_per_gib: 0.0,
            card_cpu_s: 0.0,
            recorder_cpu_s_per_gib: 0.0,
            steady_state_slots: 0,
            steady_state_minor_faults: 0,
            steady_state_major_faults: 0,
            faults_per_1000_buffers: 0.0,
            slots_submitted: 0,
        }
    }

    /// A slot was submitted (its header is final).
    pub fn note_slot(&mut self, header: &SlotHeader) {
        self.slots_submitted += 1;
        if header.gap_count > 0 {
            self.slots_with_gap += 1;
            self.buffers_lost += header.gap_count;
        }
        self.first_card_seq.get_or_insert(header.card_seq);
        self.last_card_seq = Some(header.card_seq);
    }

    /// Takes the read-back after a write error into account (before
    /// [`Summary::finish`], which derives the rates): the dropped slots are
    /// not recorded. Slots are counted whole, as `note_written` counted them.
    pub fn apply_readback(&mut self, read_back: &crate::readback::Readback, slot_bytes: u64) {
        self.slots_dropped_after_error = read_back.dropped;
        self.slots = self.slots.saturating_sub(read_back.dropped);
        self.bytes_written = self
            .bytes_written
            .saturating_sub(read_back.dropped * slot_bytes);
        self.payload_bytes_recorded = self
            .payload_bytes_recorded
            .saturating_sub(read_back.dropped * (slot_bytes - formats::SLOT_HEADER_BYTES as u64));
    }

    /// Share of the targets' slots written, 0..=1 (ring mode: 1 once full).
    pub fn device_fill_ratio(&self) -> f64 {
        if self.capacity_slots == 0 {
            return 0.0;
        }
        self.slots.min(self.capacity_slots) as f64 / self.capacity_slots as f64
    }

    /// Slots submitted so far.
    /// Slot numbers used: every slot submitted, 0 .. this (in slot order).
    pub fn slots_submitted(&self) -> u64 {
        self.slots_submitted
    }

    /// A slot's write completed.
    pub fn note_written(&mut self, slot_bytes: u64) {
        self.slots += 1;
        self.bytes_written += slot_bytes;
        self.payload_bytes_recorded += slot_bytes - formats::SLOT_HEADER_BYTES as u64;
    }

    pub fn finish(&mut self, end: RunEnd) {
        let RunEnd {
            reason,
            elapsed,
            writing,
            card,
            durable,
            steady,
            stalls,
        } = end;
        self.stalls = stalls.run();
        self.stop_reason = Some(reason);
        self.seconds = elapsed.as_secs_f64();
        self.rate_mb_per_s = self.bytes_written as f64 / 1e6 / writing.as_secs_f64().max(1e-9);
        self.final_flush_s = (elapsed.saturating_sub(writing)).as_secs_f64();
        self.card_filled = card.filled;
        self.card_overruns = card.overruns;
        self.size_ring_for_stalls(card, elapsed);
        self.buffers_lost_after_last_slot = card.overruns.saturating_sub(self.buffers_lost);
        self.buffers_filled_not_recorded = card.filled.saturating_sub(self.slots_submitted);
        self.index_entries_durable = durable;
        self.ring_laps = self
            .slots_submitted
            .saturating_sub(1)
            .checked_div(self.capacity_slots)
            .unwrap_or(0);
        let now = rusage();
        self.cpu_user_s = secs(now.ru_utime);
        self.cpu_sys_s = secs(now.ru_stime);
        let gib = self.bytes_written as f64 / (1u64 << 30) as f64;
        self.card_cpu_s = card.card_cpu_ns as f64 / 1e9;
        let per_gib = |cpu_s: f64| if gib > 0.0 { cpu_s / gib } else { 0.0 };
        self.cpu_s_per_gib = per_gib(self.cpu_user_s + self.cpu_sys_s);
        self.recorder_cpu_s_per_gib =
            per_gib((self.cpu_user_s + self.cpu_sys_s - self.card_cpu_s).max(0.0));
        if let Some(((from_slot, u), (to_slot, end))) = steady {
            self.steady_state_slots = to_slot - from_slot;
            self.steady_state_minor_faults = (end.ru_minflt - u.ru_minflt) as u64;
            self.steady_state_major_faults = (end.ru_majflt - u.ru_majflt) as u64;
            let faults = (self.steady_state_minor_faults + self.steady_state_major_faults) as f64;
            self.faults_per_1000_buffers = if self.steady_state_slots > 0 {
                faults * 1000.0 / self.steady_state_slots as f64
            } else {
                0.0
            };
        }
    }

    /// The card's rate, and the ring that would have held its data through
    /// the longest write of the run.
    fn size_ring_for_stalls(&mut self, card: CardStats, elapsed: Duration) {
        let slot_bytes = self.ring_bytes / self.buffers.max(1) as u64;
        let payload_bytes = (card.filled + card.overruns) * self.payload_bytes as u64;
        let rate_bytes_per_s = payload_bytes as f64 / elapsed.as_secs_f64().max(1e-9);
        self.card_rate_mb_per_s = rate_bytes_per_s / 1e6;
        let stall_bytes = rate_bytes_per_s * self.stalls.max_write_latency_ms / 1e3;
        // The card needs a buffer for every slot it fills while the stalled
        // write holds the queue up, plus the one it is filling then.
        self.ring_buffers_for_longest_write =
            (stall_bytes / slot_bytes.max(1) as f64).ceil() as u64 + 1;
    }

    pub fn text(&self) -> String {
        let mut s = String::new();
        let reason = match self.stop_reason {
            Some(StopReason::SizeReached) => "requested size recorded",
            Some(StopReason::DurationReached) => "requested duration elapsed",
            Some(StopReason::Signal) => "stopped by signal",
            Some(StopReason::TargetFull) => "target full",
            Some(StopReason::IoError) => "I/O error",
            None => "not stopped",
        };
        s += &format!("recording {}  ({reason})\n", self.recording_uuid);
        s += &format!("  scan        {:?}  {}\n", self.scan_name, self.scan_uuid);
        s += &format!("  source      {}\n", self.source);
        for (i, t) in self.targets.iter().enumerate() {
            s += &format!(
                "  target {i}    {}  ({} bytes, {} slots)\n",
                t.path, t.size_bytes, t.slot_count
            );
        }
        s += &format!(
            "  index       {}  ({} entries durable)\n",
            self.index, self.index_entries_durable
        );
        s += &format!(
            "  recorded    {} slots, {:.1} MiB payload in {:.2} s, written at {:.1} MB/s{}\n",
            self.slots,
            self.payload_bytes_recorded as f64 / (1 << 20) as f64,
            self.seconds,
            self.rate_mb_per_s,
            if self.ring_mode {
                format!(", ring laps {}", self.ring_laps)
            } else {
                String::new()
            }
        );
        s += &format!(
            "  gaps        {} slots after a gap, {} buffers lost (card overruns {}, of them {} after the last slot)\n",
            self.slots_with_gap, self.buffers_lost, self.card_overruns, self.buffers_lost_after_last_slot
        );
        s += &format!(
            "  cost        {:.2} CPU s/GiB ({:.2} recorder + simulated card {:.2} s), {:.3} page faults per 1000 buffers in steady state\n",
            self.cpu_s_per_gib, self.recorder_cpu_s_per_gib, self.card_cpu_s, self.faults_per_1000_buffers
        );
        s += &format!(
            "  durability  {} sync rounds, {} target flushes; longest {}\n",
            self.index_sync_rounds,
            self.target_flushes,
            self.stalls.text(self.buffers)
        );
        if self.buffers_lost > 0 {
            s += &format!(
                "  ring        {} buffers lost: the longest write took {:.0} ms; at the card's {:.0} MB/s \
                 a ring of {} buffers ({} MiB, now {}) would have held it: --buffers {}\n",
                self.buffers_lost,
                self.stalls.max_write_latency_ms,
                self.card_rate_mb_per_s,
                self.ring_buffers_for_longest_write,
                (self.ring_buffers_for_longest_write * self.ring_bytes / self.buffers.max(1) as u64) >> 20,
                self.buffers,
                self.ring_buffers_for_longest_write
            );
        }
        if let Some(e) = &self.error {
            s += &format!("  ERROR       {e}\n");
        }
        s
    }
}

/// How a recording ended, for [`Summary::finish`].
pub struct RunEnd<'a> {
    pub reason: StopReason,
    /// From the card's start to the end of the final flushes.
    pub elapsed: Duration,
    /// From the card's start to the last slot's completion.
    pub writing: Duration,
    pub card: CardStats,
    /// Index entries covered by a completed fdatasync.
    pub durable: u64,
    /// Resource usage at the start and end of the steady state: (slot, usage).
    pub steady: Option<((u64, libc::rusage), (u64, libc::rusage))>,
    pub stalls: &'a Stalls,
}

/// The longest stalls in a window of time: what makes a ring run out.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct StallWindow {
    /// Longest slot write, submission to completion.
    pub max_write_latency_ms: f64,
    /// Slot write latency quantiles over the whole run (upper bounds of
    /// quarter-octave buckets; 0 in the per-interval figures).
    pub write_latency_p50_ms: f64,
    pub write_latency_p99_ms: f64,
    pub write_latency_p999_ms: f64,
    /// Longest target cache flush.
    pub max_target_flush_ms: f64,
    /// Longest fdatasync of the index.
    pub max_index_sync_ms: f64,
    /// Longest sync round (flushes, index write, fdatasync).
    pub max_sync_round_ms: f64,
    /// Fewest buffers the card held (empty, ready to fill) when the
    /// recorder had taken all it had filled; 0 means the card ran out.
    pub min_ring_headroom_buffers: Option<usize>,
}

impl StallWindow {
    fn merge(&mut self, other: &StallWindow) {
        let max = |a: &mut f64, b: f64| *a = a.max(b);
        max(&mut self.max_write_latency_ms, other.max_write_latency_ms);
        max(&mut self.max_target_flush_ms, other.max_target_flush_ms);
        max(&mut self.max_index_sync_ms, other.max_index_sync_ms);
        max(&mut self.max_sync_round_ms, other.max_sync_round_ms);
        if let Some(h) = other.min_ring_headroom_buffers {
            self.min_ring_headroom_buffers =
                Some(self.min_ring_headroom_buffers.map_or(h, |m| m.min(h)));
        }
    }

    fn text(&self, buffers: usize) -> String {
        let headroom = self
            .min_ring_headroom_buffers
            .map_or("-".to_string(), |h| format!("{h}/{buffers}"));
        format!(
            "write {:.1} ms, flush {:.1} ms, index sync {:.1} ms, round {:.1} ms; ring headroom {headroom}",
            self.max_write_latency_ms,
            self.max_target_flush_ms,
            self.max_index_sync_ms,
            self.max_sync_round_ms
        )
    }
}

/// Latencies in buckets of a quarter octave (within 19 % of the true value),
/// from 1 µs up: a fixed array, so recording into it never allocates.
pub struct LatencyHistogram {
    counts: [u64; Self::BUCKETS],
    total: u64,
}

impl LatencyHistogram {
    const SUB_BITS: u32 = 2;
    const BUCKETS: usize = 64 << Self::SUB_BITS;

    pub fn new() -> LatencyHistogram {
        LatencyHistogram {
            counts: [0; Self::BUCKETS],
            total: 0,
        }
    }

    fn bucket(us: u64) -> usize {
        let us = us.max(1);
        let octave = 63 - us.leading_zeros();
        let sub = if octave >= Self::SUB_BITS {
            (us >> (octave - Self::SUB_BITS)) & ((1 << Self::SUB_BITS) - 1)
        } else {
            (us << (Self::SUB_BITS - octave)) & ((1 << Self::SUB_BITS) - 1)
        };
        ((octave << Self::SUB_BITS) as u64 | sub) as usize
    }

    /// The upper bound of bucket `b`, µs.
    fn upper_us(bucket: usize) -> f64 {
        let octave = (bucket >> Self::SUB_BITS) as i32;
        let sub = (bucket & ((1 << Self::SUB_BITS) - 1)) as f64;
        2f64.powi(octave) * (1.0 + (sub + 1.0) / (1 << Self::SUB_BITS) as f64)
    }

    pub fn record_ns(&mut self, ns: u64) {
        self.counts[Self::bucket(ns / 1000)] += 1;
        self.total += 1;
    }

    /// The latency `q` (0..=1) of the values are at or below, in ms (the
    /// bucket's upper bound); 0 with no values.
    pub fn quantile_ms(&self, quantile: f64) -> f64 {
        assert!((0.0..=1.0).contains(&quantile));
        let rank = ((quantile * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (b, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Self::upper_us(b) / 1e3;
            }
        }
        0.0
    }
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

/// Stalls per status interval and for the whole run.
pub struct Stalls {
    buffers: usize,
    interval: StallWindow,
    run: StallWindow,
    write_latency: LatencyHistogram,
}

impl Stalls {
    pub fn new(buffers: usize) -> Stalls {
        Stalls {
            buffers,
            interval: StallWindow::default(),
            run: StallWindow::default(),
            write_latency: LatencyHistogram::new(),
        }
    }

    pub fn write_latency(&mut self, ns: u64) {
        self.write_latency.record_ns(ns);
        let ms = ns as f64 / 1e6;
        let w = &mut self.interval;
        w.max_write_latency_ms = w.max_write_latency_ms.max(ms);
    }

    pub fn headroom(&mut self, buffers: usize) {
        assert!(buffers <= self.buffers);
        let w = &mut self.interval;
        w.min_ring_headroom_buffers = Some(
            w.min_ring_headroom_buffers
                .map_or(buffers, |m| m.min(buffers)),
        );
    }

    pub fn journal(&mut self, journal_stalls: crate::journal::JournalStalls) {
        let ms = |ns: u64| ns as f64 / 1e6;
        let w = &mut self.interval;
        w.max_target_flush_ms = w
            .max_target_flush_ms
            .max(ms(journal_stalls.target_flush_ns));
        w.max_index_sync_ms = w.max_index_sync_ms.max(ms(journal_stalls.index_sync_ns));
        w.max_sync_round_ms = w.max_sync_round_ms.max(ms(journal_stalls.round_ns));
    }

    /// The interval's figures so far.
    pub fn interval(&self) -> &StallWindow {
        &self.interval
    }

    /// Starts a new status interval (the run keeps the worst of all).
    pub fn next_interval(&mut self) {
        let ended = std::mem::take(&mut self.interval);
        self.run.merge(&ended);
    }

    /// The whole run, the current interval included.
    pub fn run(&self) -> StallWindow {
        let mut all = self.run;
        all.merge(&self.interval);
        all.write_latency_p50_ms = self.write_latency.quantile_ms(0.5);
        all.write_latency_p99_ms = self.write_latency.quantile_ms(0.99);
        all.write_latency_p999_ms = self.write_latency.quantile_ms(0.999);
        all
    }
}

/// The running recording's figures, as each status tick counted them from
/// the [`Summary`] (the service's `status` and metrics read them). Plain
/// numbers: publishing one allocates nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Live {
    pub elapsed_s: f64,
    pub slots: u64,
    pub bytes_written: u64,
    pub payload_bytes_recorded: u64,
    /// Write rate since the previous tick.
    pub rate_mb_per_s: f64,
    pub buffers_lost: u64,
    pub slots_with_gap: u64,
    pub capacity_slots: u64,
    /// Slots written / capacity (0..=1; ring mode: capped at 1).
    pub device_fill_ratio: f64,
}

/// Where [`Progress`] publishes [`Live`] at every status interval: the
/// service reads it from other threads. A lock per interval, never per slot.
pub type LiveSink = std::sync::Arc<std::sync::Mutex<Option<Live>>>;

/// Progress bar on a terminal, periodic status line otherwise.
pub struct Progress {
    bar: Option<ProgressBar>,
    /// Published at every tick when set (the service), even when quiet.
    live: Option<LiveSink>,
    interval: Duration,
    next: Instant,
    started: Instant,
    ends: RunLimits,
    quiet: bool,
    /// Bytes written and time at the previous status: the current rate.
    last_bytes: u64,
    last_at: Instant,
}

/// What ends a run (whichever comes first), for percentages and the ETA.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RunLimits {
    /// Slots until the size limit or, not in ring mode, full targets.
    pub slots: Option<u64>,
    pub duration: Option<Duration>,
}

impl RunLimits {
    /// How far the run is (0..=1) and the time left, after `elapsed` with
    /// `slots` written; None when no limit ends the run (ring mode without
    /// size or duration). The slot limit's ETA assumes the average rate.
    pub fn forecast(&self, elapsed: Duration, slots: u64) -> Option<(f64, Duration)> {
        let by_slots = self.slots.map(|total| {
            let done = slots.min(total) as f64 / total.max(1) as f64;
            let left_s = if slots == 0 {
                f64::INFINITY
            } else {
                (total.saturating_sub(slots)) as f64 * elapsed.as_secs_f64() / slots as f64
            };
            (done, left_s)
        });
        let by_time = self.duration.map(|d| {
            let done = (elapsed.as_secs_f64() / d.as_secs_f64().max(1e-9)).min(1.0);
            (done, d.saturating_sub(elapsed).as_secs_f64())
        });
        let (done, left_s) = match (by_slots, by_time) {
            (Some(a), Some(b)) => (a.0.max(b.0), a.1.min(b.1)),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => return None,
        };
        let left = Duration::try_from_secs_f64(left_s).unwrap_or(Duration::MAX);
        Some((done, left))
    }
}

/// `1:02:03`, `2:03` (whole seconds, rounded up), or `-` for an unknown time.
pub fn hms(duration: Duration) -> String {
    if duration == Duration::MAX {
        return "-".to_string();
    }
    let s = duration.as_secs() + (duration.subsec_nanos() > 0) as u64; // rounded up
    match s / 3600 {
        0 => format!("{}:{:02}", s / 60, s % 60),
        h => format!("{h}:{:02}:{:02}", s / 60 % 60, s % 60),
    }
}

impl Progress {
    /// `ends`: what ends the run, for the percentage and the ETA.
    /// `live`: where to publish each tick's figures (the service).
    pub fn new(
        ends: RunLimits,
        interval: Duration,
        quiet: bool,
        live: Option<LiveSink>,
    ) -> Progress {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::new(1000);
            b.set_style(
                ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {msg}")
                    .unwrap()
                    .progress_chars("=> "),
            );
            b
        });
        if let Some(sink) = &live {
            // Set-up is done: the service answers `start` once it sees this.
            *sink.lock().unwrap_or_else(|e| e.into_inner()) = Some(Live::default());
        }
        let now = Instant::now();
        Progress {
            bar,
            live,
            interval,
            next: now + interval,
            started: now,
            ends,
            quiet,
            last_bytes: 0,
            last_at: now,
        }
    }

    /// Whether a status update is due (always for the last one, never when
    /// quiet without a bar or live sink: then no clock is read and nothing
    /// formatted).
    pub fn due(&self, last: bool) -> bool {
        if self.quiet && self.bar.is_none() && self.live.is_none() {
            return false;
        }
        last || Instant::now() >= self.next
    }

    /// Shows the status; call when [`Progress::due`].
    pub fn tick(&mut self, summary: &Summary, stalls: &Stalls, last: bool) {
        let now = Instant::now();
        let tick_every = if self.bar.is_some() {
            Duration::from_millis(200)
        } else {
            self.interval
        };
        self.next = now + tick_every;
        let elapsed = now.duration_since(self.started);
        let secs = elapsed.as_secs_f64().max(1e-9);
        let average = summary.bytes_written as f64 / 1e6 / secs;
        let since_s = now.duration_since(self.last_at).as_secs_f64().max(1e-9);
        let current = (summary.bytes_written - self.last_bytes) as f64 / 1e6 / since_s;
        (self.last_bytes, self.last_at) = (summary.bytes_written, now);
        let fill = 100.0 * summary.device_fill_ratio();
        if let Some(sink) = &self.live {
            let live = Live {
                elapsed_s: elapsed.as_secs_f64(),
                slots: summary.slots,
                bytes_written: summary.bytes_written,
                payload_bytes_recorded: summary.payload_bytes_recorded,
                rate_mb_per_s: current,
                buffers_lost: summary.buffers_lost,
                slots_with_gap: summary.slots_with_gap,
                capacity_slots: summary.capacity_slots,
                device_fill_ratio: fill / 100.0,
            };
            // A poisoned lock (a reader panicked) still holds a Live.
            *sink.lock().unwrap_or_else(|e| e.into_inner()) = Some(live);
        }
        if self.quiet && self.bar.is_none() {
            return; // nothing shown: nothing formatted
        }
        let forecast = self.ends.forecast(elapsed, summary.slots);
        let progress = match forecast {
            Some((done, left)) => format!("{:.0}%  ETA {}", done * 100.0, hms(left)),
            None => "ring, until stopped".to_string(),
        };
        let msg = format!(
            "{progress}  {current:.1} MB/s now, {average:.1} average  {} slots  {:.2} GiB  gaps {} (lost {})  device {fill:.1}% full  longest {}",
            summary.slots,
            summary.bytes_written as f64 / (1u64 << 30) as f64,
            summary.slots_with_gap,
            summary.buffers_lost,
            stalls.interval().text(stalls.buffers)
        );
        match &self.bar {
            Some(b) => {
                b.set_position(forecast.map_or(0, |(done, _)| (done * 1000.0) as u64));
                b.set_message(msg);
                if last {
                    b.finish_and_clear();
                }
            }
            None if !self.quiet && !last => eprintln!("dmarec: {:.0} s  {msg}", secs),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{hms, LatencyHistogram, RunLimits};
    use std::time::Duration;

    #[test]
    fn the_forecast_follows_whichever_limit_ends_the_run() {
        let s = Duration::from_secs;
        let by_size = RunLimits {
            slots: Some(1000),
            duration: None,
        };
        assert_eq!(by_size.forecast(s(10), 250), Some((0.25, s(30))));
        let by_time = RunLimits {
            slots: None,
            duration: Some(s(60)),
        };
        assert_eq!(by_time.forecast(s(15), 99), Some((0.25, s(45))));
        // Both: the duration ends this run first (30 s left vs 90 s).
        let both = RunLimits {
            slots: Some(1000),
            duration: Some(s(40)),
        };
        assert_eq!(both.forecast(s(10), 100), Some((0.25, s(30))));
        // ... and here the size does (10 s left vs 30 s).
        let both = RunLimits {
            slots: Some(1000),
            duration: Some(s(40)),
        };
        assert_eq!(both.forecast(s(10), 500), Some((0.5, s(10))));
        assert_eq!(
            RunLimits::default().forecast(s(10), 5),
            None,
            "ring until stopped"
        );
        let (_, left) = by_size.forecast(s(1), 0).unwrap();
        assert_eq!(left, Duration::MAX, "no slot yet: no ETA");
    }

    #[test]
    fn eta_reads_as_hours_minutes_seconds() {
        assert_eq!(hms(Duration::from_secs(59)), "0:59");
        assert_eq!(hms(Duration::from_secs(3723)), "1:02:03");
        assert_eq!(hms(Duration::from_millis(3999)), "0:04", "rounded up");
        assert_eq!(hms(Duration::MAX), "-");
    }

    #[test]
    fn latency_quantiles_are_within_a_quarter_octave() {
        let mut h = LatencyHistogram::new();
        assert_eq!(h.quantile_ms(0.99), 0.0);
        for us in 1..=1000u64 {
            h.record_ns(us * 1000);
        }
        for (q, exact_ms) in [(0.5, 0.5), (0.99, 0.99), (0.999, 0.999), (1.0, 1.0)] {
            let got = h.quantile_ms(q);
            assert!(
                got >= exact_ms && got <= exact_ms * 1.25,
                "p{q}: {got} ms for {exact_ms} ms"
            );
        }
        h.record_ns(250_000_000);
        assert!((250.0..=312.5).contains(&h.quantile_ms(1.0)));
        assert!(h.quantile_ms(0.5) < 1.0);
    }

    #[test]
    fn buckets_are_monotonic() {
        let mut last = 0;
        for us in 1..100_000u64 {
            let b = LatencyHistogram::bucket(us);
            assert!(b >= last, "{us} µs in bucket {b} after {last}");
            assert!(
                LatencyHistogram::upper_us(b) >= us as f64,
                "{us} µs above its bucket's bound"
            );
            last = b;
        }
    }
}
