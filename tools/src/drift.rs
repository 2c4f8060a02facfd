//! The host clock against the recording's time base: for every slot, the
//! host's CLOCK_REALTIME when the recorder took the buffer minus the
//! anchored card time of the buffer (`formats::time::TimeAnchor`). It
//! includes the hand-over latency (card to recorder), so it is positive
//! and grows when the host's clock runs fast against the card's.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DriftStats {
    pub slots: u64,
    pub min_ns: i64,
    pub max_ns: i64,
    /// The 99th percentile of the drift (nearest rank).
    pub p99_ns: i64,
}

impl DriftStats {
    /// Statistics of `drifts_ns` (reordered); None when empty.
    pub fn of(drifts_ns: &mut [i64]) -> Option<DriftStats> {
        if drifts_ns.is_empty() {
            return None;
        }
        drifts_ns.sort_unstable();
        let n = drifts_ns.len();
        // Nearest rank: the smallest value with at least 99 % at or below.
        let rank = (n * 99).div_ceil(100).max(1);
        Some(DriftStats {
            slots: n as u64,
            min_ns: drifts_ns[0],
            max_ns: drifts_ns[n - 1],
            p99_ns: drifts_ns[rank - 1],
        })
    }

    pub fn text(&self) -> String {
        let ms = |ns: i64| ns as f64 / 1e6;
        format!(
            "host minus card time over {} slots: min {:.3} ms, max {:.3} ms, p99 {:.3} ms",
            self.slots,
            ms(self.min_ns),
            ms(self.max_ns),
            ms(self.p99_ns)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::DriftStats;

    #[test]
    fn min_max_and_nearest_rank_p99() {
        assert_eq!(DriftStats::of(&mut []), None);
        let one = DriftStats::of(&mut [-7]).unwrap();
        assert_eq!(
            (one.slots, one.min_ns, one.max_ns, one.p99_ns),
            (1, -7, -7, -7)
        );
        // 1..=200 shuffled: p99 is the 198th value.
        let mut v: Vec<i64> = (1..=200).map(|i| (i * 37) % 200 + 1).collect();
        let s = DriftStats::of(&mut v).unwrap();
        assert_eq!((s.slots, s.min_ns, s.max_ns, s.p99_ns), (200, 1, 200, 198));
        // 100 values: p99 is the 99th.
        let mut v: Vec<i64> = (0..100).rev().collect();
        assert_eq!(DriftStats::of(&mut v).unwrap().p99_ns, 98);
        assert!(s
            .text()
            .contains("min 0.000 ms, max 0.000 ms, p99 0.000 ms"));
        let big = DriftStats::of(&mut [1_500_000, -2_000_000]).unwrap();
        assert_eq!(
            big.text(),
            "host minus card time over 2 slots: min -2.000 ms, max 1.500 ms, p99 1.500 ms"
        );
    }
}
