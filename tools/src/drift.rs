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
    /// Statistics of `drifts_ns`; None when empty.
    pub fn of(drifts_ns: &[i64]) -> Option<DriftStats> {
        DriftStats::of_passes(|| drifts_ns.iter().copied())
    }

    /// Statistics of the values each call of `values` yields (the same
    /// ones every time), in memory that does not depend on how many there
    /// are: count, min and max in one pass, then [`DriftStats::from_extremes`].
    pub fn of_passes<I: Iterator<Item = i64>>(values: impl FnMut() -> I) -> Option<DriftStats> {
        let mut values = values;
        let (mut n, mut min_ns, mut max_ns) = (0u64, i64::MAX, i64::MIN);
        for v in values() {
            n += 1;
            min_ns = min_ns.min(v);
            max_ns = max_ns.max(v);
        }
        DriftStats::from_extremes(n, min_ns, max_ns, values)
    }

    /// Statistics of `n` values between `min_ns` and `max_ns` (known from
    /// a pass the caller made anyway) that each call of `values` yields:
    /// the p99 by radix selection over the values' order-preserving u64
    /// keys, 16 bits a pass, from the first 16-bit digit where min and max
    /// differ (drifts within 4 s: two passes).
    pub fn from_extremes<I: Iterator<Item = i64>>(
        n: u64,
        min_ns: i64,
        max_ns: i64,
        values: impl FnMut() -> I,
    ) -> Option<DriftStats> {
        if n == 0 {
            return None;
        }
        assert!(min_ns <= max_ns, "min {min_ns} > max {max_ns}");
        // Nearest rank: the smallest value with at least 99 % at or below.
        let rank = (n * 99).div_ceil(100).max(1);
        Some(DriftStats {
            slots: n,
            min_ns,
            max_ns,
            p99_ns: select_rank(values, rank, (min_ns, max_ns)),
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

/// Order-preserving key of an i64 (the sign bit flipped).
fn key(v: i64) -> u64 {
    (v as u64) ^ (1 << 63)
}

/// The `rank`-th smallest (from 1) of the values `values` yields, all in
/// `extremes` (min, max), by radix selection: each pass counts the next 16
/// bits of the keys that share the digits chosen so far and picks the digit
/// holding the rank. The digits where min and max agree need no pass.
fn select_rank<I: Iterator<Item = i64>>(
    mut values: impl FnMut() -> I,
    rank: u64,
    extremes: (i64, i64),
) -> i64 {
    assert!(rank >= 1, "ranks count from 1");
    let (kmin, kmax) = (key(extremes.0), key(extremes.1));
    let mut prefix = 0u64;
    let mut rank_left = rank;
    let mut counts = vec![0u64; 1 << 16];
    for shift in [48u32, 32, 16, 0] {
        if kmin >> shift == kmax >> shift {
            // Every key has these bits: min's.
            prefix = kmin >> shift << shift;
            continue;
        }
        let chosen_bits = if shift == 48 {
            0
        } else {
            !0u64 << (shift + 16)
        };
        counts.fill(0);
        for v in values() {
            let k = key(v);
            if k & chosen_bits == prefix {
                counts[((k >> shift) & 0xffff) as usize] += 1;
            }
        }
        let mut below = 0u64;
        let digit = counts
            .iter()
            .position(|&c| {
                below += c;
                below >= rank_left
            })
            .expect("the rank is within the values that share the prefix");
        rank_left -= below - counts[digit];
        prefix |= (digit as u64) << shift;
    }
    (prefix ^ (1 << 63)) as i64
}

#[cfg(test)]
mod tests {
    use super::DriftStats;

    #[test]
    fn min_max_and_nearest_rank_p99() {
        assert_eq!(DriftStats::of(&[]), None);
        let one = DriftStats::of(&[-7]).unwrap();
        assert_eq!(
            (one.slots, one.min_ns, one.max_ns, one.p99_ns),
            (1, -7, -7, -7)
        );
        // 1..=200 shuffled: p99 is the 198th value.
        let v: Vec<i64> = (1..=200).map(|i| (i * 37) % 200 + 1).collect();
        let s = DriftStats::of(&v).unwrap();
        assert_eq!((s.slots, s.min_ns, s.max_ns, s.p99_ns), (200, 1, 200, 198));
        // 100 values: p99 is the 99th.
        let v: Vec<i64> = (0..100).rev().collect();
        assert_eq!(DriftStats::of(&v).unwrap().p99_ns, 98);
        assert!(s
            .text()
            .contains("min 0.000 ms, max 0.000 ms, p99 0.000 ms"));
        let big = DriftStats::of(&[1_500_000, -2_000_000]).unwrap();
        assert_eq!(
            big.text(),
            "host minus card time over 2 slots: min -2.000 ms, max 1.500 ms, p99 1.500 ms"
        );
    }

    /// Values within 2^32 of each other take two passes after the extremes.
    #[test]
    fn close_values_take_two_passes() {
        let v: Vec<i64> = (0..1000)
            .map(|i| 1_000_000 + (i * 7919) % 3_000_000_000)
            .collect();
        let mut passes = 0;
        let s = DriftStats::of_passes(|| {
            passes += 1;
            v.iter().copied()
        })
        .unwrap();
        let mut sorted = v.clone();
        sorted.sort_unstable();
        assert_eq!(s.p99_ns, sorted[989]);
        assert_eq!(passes, 3, "one for the extremes, two digits");
        let same = DriftStats::of_passes(|| [5i64; 10].into_iter()).unwrap();
        assert_eq!((same.min_ns, same.max_ns, same.p99_ns), (5, 5, 5));
    }

    /// The radix selection agrees with sorting, over negative and
    /// positive values, duplicates and values that differ in low bits only.
    #[test]
    fn p99_by_passes_is_the_sorted_nearest_rank() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for n in [1usize, 2, 99, 100, 101, 1000, 4099] {
            let v: Vec<i64> = (0..n)
                .map(|i| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    match i % 4 {
                        0 => x as i64,
                        1 => (x % 1000) as i64 - 500,
                        2 => 1_000_000 + (x % 3) as i64,
                        _ => -((x >> 20) as i64),
                    }
                })
                .collect();
            let mut sorted = v.clone();
            sorted.sort_unstable();
            let rank = (n * 99).div_ceil(100).max(1);
            let s = DriftStats::of(&v).unwrap();
            assert_eq!(
                (s.slots, s.min_ns, s.max_ns, s.p99_ns),
                (n as u64, sorted[0], sorted[n - 1], sorted[rank - 1]),
                "{n} values"
            );
            for r in [1, n / 2 + 1, n] {
                assert_eq!(
                    super::select_rank(|| v.iter().copied(), r as u64, (sorted[0], sorted[n - 1])),
                    sorted[r - 1]
                );
            }
        }
    }
}
