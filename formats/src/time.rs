//! Timestamps as people and SigMF read them, and the recording's time base.
//!
//! The time base is the card's clock. The recorder anchors it once, at the
//! start, to the host's CLOCK_REALTIME ([`TimeAnchor`], stored in the
//! superblock from format 1.1): card time `t` is the instant
//! `realtime_ns + (t - card_ns)`. Slot headers keep the host's own time of
//! each buffer for drift statistics only.

/// Which clock the card's timestamps (slot header offset 48) come from, and
/// what instant of the buffer they name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardClock {
    /// The card's sample counter: a buffer's timestamp is the time of its
    /// first sample, `first_sample_index / sample_rate` (the simulated
    /// cards at a set rate: buffer `k` starts at
    /// `k × payload_bytes / rate_bytes_per_s`).
    SampleCounter,
    /// The host's CLOCK_MONOTONIC when the buffer was complete (the kernel
    /// driver's `ktime_get_ns()`, the edu PCI card, the simulated card
    /// without a rate).
    HostMonotonicEndOfFill,
}

impl CardClock {
    pub fn code(self) -> u16 {
        match self {
            CardClock::SampleCounter => 1,
            CardClock::HostMonotonicEndOfFill => 2,
        }
    }

    pub fn from_code(code: u16) -> Option<CardClock> {
        match code {
            1 => Some(CardClock::SampleCounter),
            2 => Some(CardClock::HostMonotonicEndOfFill),
            _ => None,
        }
    }

    /// The name `dmaplay inspect` shows.
    pub fn name(self) -> &'static str {
        match self {
            CardClock::SampleCounter => "sample_counter",
            CardClock::HostMonotonicEndOfFill => "host_monotonic_end_of_fill",
        }
    }
}

/// One instant read on both clocks: card time `card_ns` is host
/// CLOCK_REALTIME `realtime_ns`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeAnchor {
    pub clock: CardClock,
    pub card_ns: u64,
    pub realtime_ns: u64,
}

impl TimeAnchor {
    /// Card time `card_ns` as ns since the Unix epoch (saturating at 0 and
    /// u64::MAX: a card time before the epoch is not a recording's).
    pub fn realtime_of(&self, card_ns: u64) -> u64 {
        let offset = card_ns as i128 - self.card_ns as i128;
        (self.realtime_ns as i128 + offset).clamp(0, u64::MAX as i128) as u64
    }

    /// The card time of `realtime_ns` (ns since the Unix epoch).
    pub fn card_of(&self, realtime_ns: u64) -> u64 {
        let offset = realtime_ns as i128 - self.realtime_ns as i128;
        (self.card_ns as i128 + offset).clamp(0, u64::MAX as i128) as u64
    }

    /// Host time minus anchored card time, ns: how far the host's clock
    /// drifted from the card's since the anchor.
    pub fn drift_ns(&self, card_ns: u64, host_ns: u64) -> i64 {
        let drift = host_ns as i128 - self.realtime_of(card_ns) as i128;
        drift.clamp(i64::MIN as i128, i64::MAX as i128) as i64
    }
}

/// `ns` since the Unix epoch as RFC 3339 / ISO 8601 UTC with nanoseconds,
/// e.g. `2026-11-21T04:56:01.123456789Z`.
pub fn rfc3339_utc(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        ns % 1_000_000_000
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let doe = days.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + (m <= 2) as i64, m, d)
}

#[cfg(test)]
mod tests {
    use super::{CardClock, TimeAnchor};

    #[test]
    fn anchor_maps_both_ways_and_measures_drift() {
        let a = TimeAnchor {
            clock: CardClock::SampleCounter,
            card_ns: 1_000,
            realtime_ns: 1_800_000_000_000_000_000,
        };
        assert_eq!(a.realtime_of(1_000), 1_800_000_000_000_000_000);
        assert_eq!(a.realtime_of(2_500), 1_800_000_000_000_001_500);
        assert_eq!(a.realtime_of(400), 1_799_999_999_999_999_400);
        assert_eq!(a.card_of(1_800_000_000_000_001_500), 2_500);
        assert_eq!(a.card_of(0), 0, "before the card's zero saturates");
        assert_eq!(a.drift_ns(2_500, 1_800_000_000_000_001_600), 100);
        assert_eq!(a.drift_ns(2_500, 1_800_000_000_000_001_400), -100);
    }

    #[test]
    fn clock_codes_round_trip_and_unknown_is_none() {
        for c in [CardClock::SampleCounter, CardClock::HostMonotonicEndOfFill] {
            assert_eq!(CardClock::from_code(c.code()), Some(c));
        }
        assert_eq!(CardClock::from_code(0), None);
        assert_eq!(CardClock::from_code(3), None);
    }

    #[test]
    fn known_dates() {
        assert_eq!(super::rfc3339_utc(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            super::rfc3339_utc(951_782_400_000_000_001),
            "2000-02-29T00:00:00.000000001Z"
        );
        assert_eq!(
            super::rfc3339_utc(1_795_236_980_891_076_201),
            "2026-11-21T04:56:20.891076201Z"
        );
    }

    /// Every day from 1970 to the end of 2400 (2100 is not a leap year,
    /// 2000 and 2400 are), against a day-by-day calendar walk.
    #[test]
    fn every_day_to_2400_matches_a_calendar_walk() {
        let leap =
            |y: u32| y.is_multiple_of(4) && (!y.is_multiple_of(100) || y.is_multiple_of(400));
        let month_days = |y: u32, m: u32| match m {
            2 if leap(y) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        let (mut y, mut m, mut d) = (1970u32, 1u32, 1u32);
        let mut day_ns = 0u64;
        // Bounded: 431 years of days.
        while y <= 2400 {
            assert_eq!(
                &super::rfc3339_utc(day_ns)[..10],
                format!("{y:04}-{m:02}-{d:02}"),
                "day {}",
                day_ns / 86_400_000_000_000
            );
            day_ns += 86_400_000_000_000;
            d += 1;
            if d > month_days(y, m) {
                (d, m) = (1, m + 1);
            }
            if m > 12 {
                (m, y) = (1, y + 1);
            }
        }
    }

    #[test]
    fn time_of_day_fields() {
        let at = |h: u64, min: u64, s: u64, ns: u64| {
            super::rfc3339_utc(((h * 60 + min) * 60 + s) * 1_000_000_000 + ns)
        };
        assert_eq!(
            at(23, 59, 59, 999_999_999),
            "1970-01-01T23:59:59.999999999Z"
        );
        assert_eq!(at(13, 7, 42, 5), "1970-01-01T13:07:42.000000005Z");
        assert_eq!(at(24, 0, 0, 0), "1970-01-02T00:00:00.000000000Z");
    }
}
