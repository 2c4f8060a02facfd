//! Timestamps as people and SigMF read them.

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
