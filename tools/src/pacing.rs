//! How closely `dmaplay replay` keeps the card's timing: for every slot
//! written, the time it was handed to the stream minus the time the card
//! timestamps say it is due (scaled by the speed factor). Late is
//! positive; a slot is never written early (replay sleeps until due).

use serde::Serialize;
use std::time::{Duration, Instant};

/// Lateness of every paced slot, in microseconds (allocated once).
pub struct Pacing {
    late_us: Vec<i64>,
    capacity: usize,
    /// Slots over 1 ms late that reached the stream after they were due.
    arrived_late_over_1ms: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PacingReport {
    /// Slots measured (every slot written at a paced speed).
    pub slots: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Slots handed over more than 1 ms after they were due.
    pub slots_late_over_1ms: u64,
    /// Of those, the slots that reached the stream (read and checked)
    /// only after they were due: held up by their read, or by the stream's
    /// previous write. The others were there in time and woke up late.
    pub slots_late_over_1ms_arrived_late: u64,
}

impl Pacing {
    /// Room for `slots` measurements; more are not recorded.
    pub fn with_capacity(slots: usize) -> Pacing {
        Pacing {
            late_us: Vec::with_capacity(slots),
            capacity: slots,
            arrived_late_over_1ms: 0,
        }
    }

    /// One slot, handed over `late_ns` after it was due (negative: early);
    /// `arrived_late`: it reached the stream after it was due (no sleep).
    pub fn record(&mut self, late_ns: i128, arrived_late: bool) {
        if self.late_us.len() < self.capacity {
            let us = (late_ns / 1000).clamp(i64::MIN as i128, i64::MAX as i128) as i64;
            self.late_us.push(us);
            if us > 1000 && arrived_late {
                self.arrived_late_over_1ms += 1;
            }
        }
    }

    /// Percentiles (nearest rank) of the lateness; None without a slot.
    pub fn report(mut self) -> Option<PacingReport> {
        if self.late_us.is_empty() {
            return None;
        }
        self.late_us.sort_unstable();
        let n = self.late_us.len();
        let at = |q: f64| {
            let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
            self.late_us[rank - 1] as f64 / 1000.0
        };
        Some(PacingReport {
            slots: n as u64,
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            max_ms: self.late_us[n - 1] as f64 / 1000.0,
            slots_late_over_1ms: self.late_us.iter().filter(|&&us| us > 1000).count() as u64,
            slots_late_over_1ms_arrived_late: self.arrived_late_over_1ms,
        })
    }
}

/// With `--realtime`, the replay thread sleeps until this long before a
/// slot is due and spins (on the CPU, as a SCHED_FIFO thread nothing else
/// takes it from) the rest: this kernel is built without preemption
/// (PREEMPT_NONE), so a real-time thread woken from sleep waits until the
/// kernel work on its CPU reaches a preemption point, 1-25 ms under load
/// (readout-20261130-175913: of the slots over 1 ms late, all but 1-2 per
/// replay had been there in time). Costs at most this much CPU per slot.
pub const SPIN_BEFORE_DUE: Duration = Duration::from_millis(2);

/// Waits until `deadline`: sleeps until `spin` before it, then spins.
pub fn sleep_until(deadline: Instant, spin: Duration) {
    let now = Instant::now();
    if let Some(sleep) = deadline.checked_duration_since(now + spin) {
        std::thread::sleep(sleep);
    }
    // Bounded by the deadline (at most `spin` after the sleep).
    while Instant::now() < deadline {
        std::hint::spin_loop();
    }
}

/// Real-time priority of the replay thread with `--realtime`.
pub const REALTIME_PRIORITY: i32 = 10;

/// Puts the calling thread in SCHED_FIFO at [`REALTIME_PRIORITY`], so its
/// wake-ups at the slots' due times do not wait behind other processes.
pub fn set_realtime() -> anyhow::Result<()> {
    let param = libc::sched_param {
        sched_priority: REALTIME_PRIORITY,
    };
    // SAFETY: pid 0 is the calling thread; param is a valid struct we own.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    if rc != 0 {
        anyhow::bail!(
            "--realtime: SCHED_FIFO priority {REALTIME_PRIORITY} refused ({}): run as root, grant CAP_SYS_NICE, or raise `ulimit -r`",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn realtime_puts_the_calling_thread_in_sched_fifo_or_says_how_to_allow_it() {
        // In a thread of its own: the test harness' other threads keep theirs.
        let (result, policy) = std::thread::spawn(|| {
            let r = set_realtime().map_err(|e| e.to_string());
            // SAFETY: reads the calling thread's policy; no pointer involved.
            (r, unsafe { libc::sched_getscheduler(0) })
        })
        .join()
        .unwrap();
        match result {
            Ok(()) => assert_eq!(policy, libc::SCHED_FIFO),
            Err(e) => {
                assert!(e.contains("CAP_SYS_NICE"), "{e}");
                assert_ne!(policy, libc::SCHED_FIFO);
            }
        }
    }

    #[test]
    fn sleep_until_returns_at_the_deadline_not_before_with_or_without_spin() {
        for spin_ms in [0, 2, 50] {
            let deadline = Instant::now() + Duration::from_millis(10);
            sleep_until(deadline, Duration::from_millis(spin_ms));
            assert!(Instant::now() >= deadline, "spin {spin_ms} ms: woke early");
        }
        // A deadline already past returns at once.
        sleep_until(Instant::now(), SPIN_BEFORE_DUE);
    }

    #[test]
    fn percentiles_are_nearest_rank_over_every_slot() {
        let mut p = Pacing::with_capacity(200);
        // 100 slots late 1..=100 ms, in reverse order.
        for ms in (1..=100).rev() {
            p.record(ms as i128 * 1_000_000, ms % 10 == 0);
        }
        let r = p.report().unwrap();
        assert_eq!(r.slots, 100);
        assert_eq!(r.p50_ms, 50.0);
        assert_eq!(r.p99_ms, 99.0);
        assert_eq!(r.max_ms, 100.0);
        assert_eq!(r.slots_late_over_1ms, 99);
        assert_eq!(r.slots_late_over_1ms_arrived_late, 10, "10, 20, .. 100 ms");
    }

    #[test]
    fn sub_millisecond_lateness_is_kept_to_the_microsecond_and_capacity_bounds_it() {
        let mut p = Pacing::with_capacity(3);
        for ns in [250_000i128, 1_500, 999_999, 5_000_000] {
            p.record(ns, true);
        }
        let r = p.report().unwrap();
        assert_eq!(r.slots, 3, "the fourth does not fit");
        assert_eq!(r.max_ms, 0.999);
        assert_eq!(r.p50_ms, 0.25);
        assert_eq!(r.slots_late_over_1ms, 0);
        assert_eq!(r.slots_late_over_1ms_arrived_late, 0, "not over 1 ms");
        assert!(Pacing::with_capacity(4).report().is_none());
    }

    #[test]
    fn exactly_1_ms_late_is_not_over_1_ms() {
        let mut p = Pacing::with_capacity(2);
        p.record(1_000_000, true);
        p.record(1_001_000, true);
        let r = p.report().unwrap();
        assert_eq!(r.slots_late_over_1ms, 1, "1.001 ms only");
        assert_eq!(r.slots_late_over_1ms_arrived_late, 1, "1.001 ms only");
    }
}
