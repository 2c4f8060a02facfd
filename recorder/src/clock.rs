//! Clocks, in ns: CLOCK_REALTIME for host timestamps, CLOCK_MONOTONIC for
//! the simulated card's timestamps, the thread CPU clock for its cost.
//! clock_gettime is served by the vDSO for the first two: no syscall.

pub fn ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

pub fn realtime_ns() -> u64 {
    ns(libc::CLOCK_REALTIME)
}

pub fn monotonic_ns() -> u64 {
    ns(libc::CLOCK_MONOTONIC)
}

pub fn thread_cpu_ns() -> u64 {
    ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// CLOCK_MONOTONIC and CLOCK_REALTIME at one instant: the realtime reads
/// just before and after the monotonic read, averaged (the vDSO reads take
/// tens of ns, so the pair is that close).
pub fn monotonic_realtime_pair_ns() -> (u64, u64) {
    let before = realtime_ns();
    let monotonic = monotonic_ns();
    let after = realtime_ns();
    (monotonic, before + after.saturating_sub(before) / 2)
}

/// The anchor of a card stamping buffers with the host's CLOCK_MONOTONIC.
pub fn monotonic_anchor() -> formats::time::TimeAnchor {
    let (card_ns, realtime_ns) = monotonic_realtime_pair_ns();
    formats::time::TimeAnchor {
        clock: formats::time::CardClock::HostMonotonicEndOfFill,
        card_ns,
        realtime_ns,
    }
}
