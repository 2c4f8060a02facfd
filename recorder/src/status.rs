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

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub recording_uuid: String,
    pub source: String,
    pub targets: Vec<TargetSummary>,
    pub index: String,
    pub ring_mode: bool,
    pub payload_bytes: u32,
    pub buffers: usize,
    pub memory: String,
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

fn secs(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

impl Summary {
    pub fn new(sb: &Superblock, targets: &[Target], memory: &SlotMemory) -> Summary {
        Summary {
            recording_uuid: sb.recording_uuid.to_string(),
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
            memory: format!("{:?}", memory.backing()),
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
    pub fn note_slot(&mut self, h: &SlotHeader) {
        self.slots_submitted += 1;
        if h.gap_count > 0 {
            self.slots_with_gap += 1;
            self.buffers_lost += h.gap_count;
        }
        self.first_card_seq.get_or_insert(h.card_seq);
        self.last_card_seq = Some(h.card_seq);
    }

    /// Takes the read-back after a write error into account (before
    /// [`Summary::finish`], which derives the rates): the dropped slots are
    /// not recorded. Slots are counted whole, as `note_written` counted them.
    pub fn apply_readback(&mut self, r: &crate::readback::Readback, slot_bytes: u64) {
        self.slots_dropped_after_error = r.dropped;
        self.slots = self.slots.saturating_sub(r.dropped);
        self.bytes_written = self.bytes_written.saturating_sub(r.dropped * slot_bytes);
        self.payload_bytes_recorded = self
            .payload_bytes_recorded
            .saturating_sub(r.dropped * (slot_bytes - formats::SLOT_HEADER_BYTES as u64));
    }

    /// Slots submitted so far.
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

/// Stalls per status interval and for the whole run.
pub struct Stalls {
    buffers: usize,
    interval: StallWindow,
    run: StallWindow,
}

impl Stalls {
    pub fn new(buffers: usize) -> Stalls {
        Stalls {
            buffers,
            interval: StallWindow::default(),
            run: StallWindow::default(),
        }
    }

    pub fn write_latency(&mut self, ns: u64) {
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

    pub fn journal(&mut self, j: crate::journal::JournalStalls) {
        let ms = |ns: u64| ns as f64 / 1e6;
        let w = &mut self.interval;
        w.max_target_flush_ms = w.max_target_flush_ms.max(ms(j.target_flush_ns));
        w.max_index_sync_ms = w.max_index_sync_ms.max(ms(j.index_sync_ns));
        w.max_sync_round_ms = w.max_sync_round_ms.max(ms(j.round_ns));
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
        all
    }
}

/// Progress bar on a terminal, periodic status line otherwise.
pub struct Progress {
    bar: Option<ProgressBar>,
    interval: Duration,
    next: Instant,
    started: Instant,
    total_slots: u64,
    quiet: bool,
}

impl Progress {
    /// `total_slots`: how many slots the run will take if it runs to its
    /// size limit or fills the target (for percentages and ETA).
    pub fn new(total_slots: u64, interval: Duration, quiet: bool) -> Progress {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::new(total_slots);
            b.set_style(
                ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {percent:>3}% {msg}")
                    .unwrap()
                    .progress_chars("=> "),
            );
            b
        });
        let now = Instant::now();
        Progress {
            bar,
            interval,
            next: now + interval,
            started: now,
            total_slots,
            quiet,
        }
    }

    /// Whether a status update is due (always for the last one, never when
    /// quiet without a bar: then no clock is read and nothing formatted).
    pub fn due(&self, last: bool) -> bool {
        if self.quiet && self.bar.is_none() {
            return false;
        }
        last || Instant::now() >= self.next
    }

    /// Shows the status; call when [`Progress::due`].
    pub fn tick(&mut self, s: &Summary, stalls: &Stalls, last: bool) {
        let now = Instant::now();
        let tick_every = if self.bar.is_some() {
            Duration::from_millis(200)
        } else {
            self.interval
        };
        self.next = now + tick_every;
        let secs = now.duration_since(self.started).as_secs_f64().max(1e-9);
        let rate = s.bytes_written as f64 / 1e6 / secs;
        let fill = if s.capacity_slots > 0 {
            100.0 * s.slots.min(s.capacity_slots) as f64 / s.capacity_slots as f64
        } else {
            0.0
        };
        let left = self.total_slots.saturating_sub(s.slots);
        let eta = if s.slots > 0 {
            left as f64 * secs / s.slots as f64
        } else {
            0.0
        };
        let msg = format!(
            "{:.1} MB/s  {} slots  {:.2} GiB  gaps {} (lost {})  device {fill:.1}% full  {}  longest {}",
            rate,
            s.slots,
            s.bytes_written as f64 / (1u64 << 30) as f64,
            s.slots_with_gap,
            s.buffers_lost,
            if s.ring_mode {
                "ring".to_string()
            } else {
                format!("ETA {eta:.0} s")
            },
            stalls.interval().text(stalls.buffers)
        );
        match &self.bar {
            Some(b) => {
                b.set_position(s.slots.min(self.total_slots));
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
