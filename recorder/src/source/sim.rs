//! The simulated card: a thread acting as a DMA engine. It takes queued
//! buffers in order, fills each payload in place with the deterministic
//! pattern (formats::pattern) for (channel, card_seq), stamps it, and hands
//! it over. With a rate limit, a buffer that is due while none is queued is
//! lost (an overrun: card_seq still advances and the next buffer carries the
//! gap count), like a real card whose FIFO overflows. Without a rate limit it
//! waits for buffers. `drop_every` injects losses for tests.
//!
//! Timestamps: with a rate the card's clock is its sample counter, started
//! at the epoch SimSource::new() anchors: buffer `k` (counting lost ones)
//! starts at `k × payload_bytes / rate_bytes_per_s` and is due complete one
//! buffer later. Without a rate, the host's CLOCK_MONOTONIC at the fill's end.

use super::handoff::Handoff;
use super::{CardStats, ChannelDescription, Filled, Source};
use crate::memory::SlotMemory;
use anyhow::{anyhow, Result};
use formats::time::{CardClock, TimeAnchor};
use formats::ChannelLayout;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const SIM_DATATYPE: &str = "ci16_le";
const SIM_SAMPLE_BYTES: u64 = 4;

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub channels: u16,
    /// Aggregate fill rate over all channels; 0 = as fast as buffers come back.
    pub rate_bytes_per_s: u64,
    /// Lose every Nth card buffer (card_seq % N == N-1); 0 = never.
    pub drop_every: u64,
    /// Fill each buffer only the first time it is used (benchmarks: a real
    /// card's DMA costs the host CPU nothing, and fio reuses one prefilled
    /// buffer). Such recordings verify by CRC, not by the pattern.
    pub fill_once: bool,
    /// Interleaved channel layout: every buffer holds whole frames of all
    /// channels (formats::ChannelLayout); else round-robin.
    pub interleaved: bool,
}

impl SimConfig {
    /// The channel layout this card delivers.
    pub fn layout(&self) -> ChannelLayout {
        if self.interleaved {
            ChannelLayout::Interleaved {
                channels: self.channels,
                sample_bytes: SIM_SAMPLE_BYTES as u32,
            }
        } else {
            ChannelLayout::RoundRobin {
                channels: self.channels,
            }
        }
    }
}

pub struct SimSource {
    cfg: SimConfig,
    /// Card time 0 (with a rate) and the anchor read at that instant.
    epoch: Instant,
    anchor: TimeAnchor,
    memory: Arc<SlotMemory>,
    /// Buffers given to the card (recorder -> card) and buffers it filled
    /// (card -> recorder); made by start().
    queues: Option<Queues>,
    stop: Arc<AtomicBool>,
    overruns: Arc<AtomicU64>,
    filled_count: Arc<AtomicU64>,
    card_cpu_ns: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl SimSource {
    pub fn new(cfg: SimConfig, memory: Arc<SlotMemory>) -> SimSource {
        assert!(cfg.channels >= 1);
        let before = crate::clock::realtime_ns();
        let epoch = Instant::now();
        let after = crate::clock::realtime_ns();
        let anchor = match cfg.rate_bytes_per_s {
            0 => crate::clock::monotonic_anchor(),
            _ => TimeAnchor {
                clock: CardClock::SampleCounter,
                card_ns: 0,
                realtime_ns: before + after.saturating_sub(before) / 2,
            },
        };
        SimSource {
            cfg,
            epoch,
            anchor,
            memory,
            queues: None,
            stop: Arc::new(AtomicBool::new(false)),
            overruns: Arc::new(AtomicU64::new(0)),
            filled_count: Arc::new(AtomicU64::new(0)),
            card_cpu_ns: Arc::new(AtomicU64::new(0)),
            thread: None,
        }
    }
}

#[derive(Clone)]
struct Queues {
    queued: Arc<Handoff<usize>>,
    filled: Arc<Handoff<Filled>>,
}

impl Queues {
    fn close(&self) {
        self.queued.close();
        self.filled.close();
    }
}

/// The card's DMA engine loop.
struct Engine {
    cfg: SimConfig,
    epoch: Instant,
    memory: Arc<SlotMemory>,
    queues: Queues,
    stop: Arc<AtomicBool>,
    overruns: Arc<AtomicU64>,
    filled_count: Arc<AtomicU64>,
    card_cpu_ns: Arc<AtomicU64>,
}

/// The card's thread ends by dropping its Engine (also when it panics):
/// closing the queues tells the recorder the card stopped.
impl Drop for Engine {
    fn drop(&mut self) {
        self.queues.close();
    }
}

impl Engine {
    fn run(self) {
        let cpu = self.card_cpu_ns.clone();
        self.fill_loop();
        cpu.store(crate::clock::thread_cpu_ns(), Ordering::Relaxed);
    }

    /// Waits until `due`, the moment the next buffer is full; false when
    /// the card is stopped first. A slow card's buffer can take minutes
    /// (512 KiB at 4 KiB/s: 128 s): [`SimSource::stop`] wakes the wait
    /// (unpark) instead of joining a thread asleep until then.
    fn wait_until(&self, due: Instant) -> bool {
        // Bounded: each turn ends at `due` at the latest, or at an unpark
        // (stop), or at one of park's rare spurious wake-ups.
        loop {
            if self.stop.load(Ordering::Acquire) {
                return false;
            }
            match due.checked_duration_since(Instant::now()) {
                Some(wait) if !wait.is_zero() => std::thread::park_timeout(wait),
                _ => return true,
            }
        }
    }

    fn fill_loop(self) {
        let payload_bytes = self.memory.payload_bytes();
        let buffer_interval = (self.cfg.rate_bytes_per_s > 0).then(|| {
            Duration::from_secs_f64(payload_bytes as f64 / self.cfg.rate_bytes_per_s as f64)
        });
        let start = self.epoch;
        let mut card_seq = 0u64;
        let mut gap_count = 0u64;
        let mut filled_once = vec![false; self.memory.count()];
        let layout = self.cfg.layout();
        let used_bytes = layout.full_used_bytes(payload_bytes as u32);
        while !self.stop.load(Ordering::Relaxed) {
            if self.cfg.drop_every > 0 && card_seq % self.cfg.drop_every == self.cfg.drop_every - 1
            {
                card_seq += 1;
                gap_count += 1;
                self.overruns.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let buffer = match buffer_interval {
                Some(interval) => {
                    // Buffer card_seq is due at start + card_seq * interval.
                    let due = start + interval.mul_f64(card_seq as f64 + 1.0);
                    if !self.wait_until(due) {
                        return;
                    }
                    match self.queues.queued.try_pop() {
                        Ok(Some(b)) => b,
                        Ok(None) => {
                            card_seq += 1;
                            gap_count += 1;
                            self.overruns.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        Err(_closed) => return,
                    }
                }
                None => match self.queues.queued.pop_timeout(Duration::from_millis(100)) {
                    Ok(Some(b)) => b,
                    Ok(None) => continue,
                    Err(_closed) => return,
                },
            };
            // Interleaved: the whole buffer carries channel 0's pattern
            // (docs/FORMAT.md), its first used_bytes are whole frames.
            let channel = layout.slot_channel(card_seq);
            if !(self.cfg.fill_once && filled_once[buffer]) {
                // SAFETY: the recorder queued `buffer` to us, so until we send
                // it back no one else reads or writes its payload; the memory
                // lives in an Arc we hold.
                let payload = unsafe {
                    std::slice::from_raw_parts_mut(self.memory.payload_ptr(buffer), payload_bytes)
                };
                formats::pattern::fill(payload, channel, card_seq);
                filled_once[buffer] = true;
            }
            let filled = Filled {
                buffer,
                card_seq,
                card_timestamp_ns: match buffer_interval {
                    Some(_) => {
                        sample_counter_ns(card_seq, payload_bytes, self.cfg.rate_bytes_per_s)
                    }
                    None => crate::clock::monotonic_ns(),
                },
                channel,
                gap_count,
                bytes_used: used_bytes,
            };
            if self.queues.filled.push(filled).is_err() {
                return;
            }
            self.filled_count.fetch_add(1, Ordering::Relaxed);
            card_seq += 1;
            gap_count = 0;
        }
    }
}

/// Card time of buffer `card_seq`'s first sample at `rate_bytes_per_s`
/// (> 0): `card_seq × payload_bytes / rate` seconds, in ns, rounded down.
pub fn sample_counter_ns(card_seq: u64, payload_bytes: usize, rate_bytes_per_s: u64) -> u64 {
    assert!(rate_bytes_per_s > 0, "the sample counter needs a rate");
    let ns = card_seq as u128 * payload_bytes as u128 * 1_000_000_000 / rate_bytes_per_s as u128;
    ns.min(u64::MAX as u128) as u64
}

impl Source for SimSource {
    fn start(&mut self) -> Result<()> {
        let count = self.memory.count();
        // Bounded queues sized to the ring: every buffer fits, pushes never
        // block on capacity, and nothing allocates after this point.
        let queues = Queues {
            queued: Arc::new(Handoff::with_capacity(count)),
            filled: Arc::new(Handoff::with_capacity(count)),
        };
        for i in 0..count {
            queues.queued.push(i).expect("fresh queue");
        }
        let engine = Engine {
            cfg: self.cfg.clone(),
            epoch: self.epoch,
            memory: self.memory.clone(),
            queues: queues.clone(),
            stop: self.stop.clone(),
            overruns: self.overruns.clone(),
            filled_count: self.filled_count.clone(),
            card_cpu_ns: self.card_cpu_ns.clone(),
        };
        self.thread = Some(
            std::thread::Builder::new()
                .name("sim-card".into())
                .spawn(move || engine.run())?,
        );
        self.queues = Some(queues);
        Ok(())
    }

    fn try_take(&mut self) -> Result<Option<Filled>> {
        let queues = self.queues.as_ref().expect("started");
        queues
            .filled
            .try_pop()
            .map_err(|_closed| anyhow!("simulated card stopped unexpectedly"))
    }

    fn wait_take(&mut self, timeout_ms: u32) -> Result<Option<Filled>> {
        let queues = self.queues.as_ref().expect("started");
        queues
            .filled
            .pop_timeout(Duration::from_millis(timeout_ms as u64))
            .map_err(|_closed| anyhow!("simulated card stopped unexpectedly"))
    }

    fn give(&mut self, buffer: usize) -> Result<()> {
        let queues = self.queues.as_ref().expect("started");
        queues
            .queued
            .push(buffer)
            .map_err(|_closed| anyhow!("simulated card stopped unexpectedly"))
    }

    fn stop(&mut self) -> Result<CardStats> {
        self.stop.store(true, Ordering::Release);
        if let Some(queues) = self.queues.take() {
            queues.close();
        }
        if let Some(t) = self.thread.take() {
            // Wakes a card waiting for its next buffer to be due.
            t.thread().unpark();
            t.join()
                .map_err(|_| anyhow!("simulated card thread panicked"))?;
        }
        Ok(CardStats {
            filled: self.filled_count.load(Ordering::Relaxed),
            overruns: self.overruns.load(Ordering::Relaxed),
            card_cpu_ns: self.card_cpu_ns.load(Ordering::Relaxed),
        })
    }

    fn channels(&self) -> ChannelDescription {
        // Buffers per second times each channel's samples per buffer.
        let layout = self.cfg.layout();
        let payload_bytes = self.memory.payload_bytes() as u32;
        let buffers_per_s = self.cfg.rate_bytes_per_s as f64 / f64::from(payload_bytes);
        let per_buffer = match layout {
            ChannelLayout::RoundRobin { channels } => {
                layout.samples_per_channel(payload_bytes, SIM_SAMPLE_BYTES as u32) as f64
                    / f64::from(channels)
            }
            ChannelLayout::Interleaved { .. } => layout.samples_per_channel(
                layout.full_used_bytes(payload_bytes),
                SIM_SAMPLE_BYTES as u32,
            ) as f64,
        };
        ChannelDescription {
            count: self.cfg.channels,
            layout: layout.code(),
            datatype: SIM_DATATYPE,
            sample_rate_hz: buffers_per_s * per_buffer,
        }
    }

    fn time_anchor(&self) -> TimeAnchor {
        self.anchor
    }

    fn describe(&self) -> String {
        let rate = match self.cfg.rate_bytes_per_s {
            0 => "unlimited rate".to_string(),
            r => format!("{:.1} MB/s", r as f64 / 1e6),
        };
        let fill = if self.cfg.fill_once {
            ", each buffer filled once (benchmark mode)"
        } else {
            ""
        };
        format!(
            "simulated card, {} channel(s) {}, {rate}{fill}",
            self.cfg.channels,
            self.cfg.layout().name()
        )
    }
}

impl Drop for SimSource {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_counter_time_is_sequence_times_buffer_duration() {
        // 4096-byte buffers at 4096 * 1000 B/s: 1 ms each.
        assert_eq!(sample_counter_ns(0, 4096, 4_096_000), 0);
        assert_eq!(sample_counter_ns(7, 4096, 4_096_000), 7_000_000);
        // 3 B/s: 4096 / 3 s per buffer, rounded down to the ns.
        assert_eq!(sample_counter_ns(1, 4096, 3), 1_365_333_333_333);
        assert_eq!(sample_counter_ns(u64::MAX, 1 << 26, 1), u64::MAX);
    }

    /// A card whose next buffer is due in over an hour stops when asked: before
    /// the stop woke its wait, stop() joined a thread asleep for the hour
    /// (`dmarec record --rate 4K --duration 0.3` ran for 128 s).
    #[test]
    fn a_slow_card_stops_without_waiting_for_its_next_buffer() {
        let memory = Arc::new(SlotMemory::allocate(2, 4096).unwrap());
        let cfg = SimConfig {
            channels: 1,
            rate_bytes_per_s: 1, // 4096 s per 4096-byte buffer
            drop_every: 0,
            fill_once: false,
            interleaved: false,
        };
        let mut sim = SimSource::new(cfg, memory);
        // Buffer 0 due now, buffer 1 4096 s later: once buffer 0
        // is taken, the card's thread has gone on to wait for buffer 1.
        let interval = Duration::from_secs(4096);
        sim.epoch = Instant::now().checked_sub(interval).expect("uptime");
        sim.start().unwrap();
        let first = sim.wait_take(60_000).unwrap().expect("buffer 0, due now");
        assert_eq!(first.card_seq, 0);
        // A card that did not wait would hand buffer 1 over at once.
        assert_eq!(sim.wait_take(100).unwrap(), None, "buffer 1 is not due");
        let stats = sim.stop().unwrap();
        assert_eq!((stats.filled, stats.overruns), (1, 0));
    }

    /// Buffers at a rate carry card_seq × buffer duration, lost ones
    /// included; the anchor says the clock is the sample counter.
    #[test]
    fn paced_sim_stamps_buffers_from_its_sample_counter() {
        let memory = Arc::new(SlotMemory::allocate(4, 4096).unwrap());
        let cfg = SimConfig {
            channels: 2,
            rate_bytes_per_s: 4096 * 2000, // 0.5 ms per buffer
            drop_every: 3,
            fill_once: false,
            interleaved: false,
        };
        let mut sim = SimSource::new(cfg, memory);
        let anchor = sim.time_anchor();
        assert_eq!(anchor.clock, CardClock::SampleCounter);
        assert_eq!(anchor.card_ns, 0);
        sim.start().unwrap();
        let mut seen = 0;
        // Bounded: 20 buffers of 0.5 ms, each waited for at most 1 s.
        for _ in 0..20 {
            let Some(f) = sim.wait_take(1000).unwrap() else {
                continue;
            };
            assert_eq!(f.card_timestamp_ns, f.card_seq * 500_000, "{f:?}");
            assert_ne!(f.card_seq % 3, 2, "every third buffer is lost");
            sim.give(f.buffer).unwrap();
            seen += 1;
        }
        sim.stop().unwrap();
        assert!(seen > 0);
    }

    #[test]
    fn unpaced_sim_anchors_the_monotonic_clock() {
        let memory = Arc::new(SlotMemory::allocate(2, 4096).unwrap());
        let cfg = SimConfig {
            channels: 1,
            rate_bytes_per_s: 0,
            drop_every: 0,
            fill_once: false,
            interleaved: false,
        };
        let before = crate::clock::monotonic_ns();
        let sim = SimSource::new(cfg, memory);
        let anchor = sim.time_anchor();
        assert_eq!(anchor.clock, CardClock::HostMonotonicEndOfFill);
        assert!(anchor.card_ns >= before && anchor.card_ns <= crate::clock::monotonic_ns());
    }
}
