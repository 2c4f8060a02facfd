//! Time addressing for `--from`, `--to` (export, replay, inspect --slots):
//! an instant, a duration from the recording's start or back from its end,
//! or a card sequence / slot number. Instants and durations land on the
//! recording's time base (the card clock anchored to CLOCK_REALTIME, see
//! `formats::time`), so an instant or a card sequence names the same data
//! after a ring wrap. Parsing is jiff's (RFC 3339 instants, friendly and
//! ISO 8601 durations); only `HH:MM:SS` and bare seconds are split here.

use std::fmt;

/// The accepted forms, for error messages and help.
pub const FORMS: &str = "an RFC 3339 instant (2026-11-30T08:55:16Z, 2026-11-30T08:55:16.25+01:00), \
a duration from the recording's start (90s, 1.5s, 10m, 1h30m, 00:01:00, PT1M, 12.5 = seconds, start+90s), \
back from the end of what is recorded (end-10m, end), \
a card sequence number (card:1234) or a slot number (slot:567)";

/// One end of a selection, as given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSpec {
    /// ns since the Unix epoch.
    At(u64),
    /// ns after the recording's start (its time anchor).
    FromStart(u64),
    /// ns before the newest recorded slot's card time.
    BeforeEnd(u64),
    /// The card's buffer counter.
    CardSeq(u64),
    /// The recorder's slot number.
    Slot(u64),
}

fn bad(text: &str, why: &str) -> String {
    format!("{text:?} is not a time ({why}); accepted: {FORMS}")
}

/// A non-negative duration in ns: friendly (`1h30m`, `90s`, `1.5s`) or
/// ISO 8601 (`PT1M`) by jiff, `HH:MM:SS[.frac]` or `MM:SS`, or bare seconds.
pub fn parse_duration_ns(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err(bad(text, "empty"));
    }
    let friendly = if t.contains(':') {
        let parts: Vec<&str> = t.split(':').collect();
        let (h, m, s) = match parts.as_slice() {
            [h, m, s] => (*h, *m, *s),
            [m, s] => ("0", *m, *s),
            _ => return Err(bad(text, "use HH:MM:SS or MM:SS")),
        };
        let digits = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
        let sec_ok = s
            .split_once('.')
            .map_or(digits(s), |(a, b)| digits(a) && digits(b));
        if !digits(h) || !digits(m) || !sec_ok {
            return Err(bad(
                text,
                "HH:MM:SS takes digits, seconds may have a fraction",
            ));
        }
        format!("{h}h {m}m {s}s")
    } else if t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        format!("{t}s")
    } else {
        t.to_string()
    };
    let d: jiff::SignedDuration = friendly.parse().map_err(|e| bad(text, &format!("{e}")))?;
    if d.is_negative() {
        return Err(bad(
            text,
            "negative: to count back from the end write end-10m",
        ));
    }
    u64::try_from(d.as_nanos()).map_err(|_| bad(text, "longer than 584 years"))
}

fn parse_number(text: &str, what: &str, digits: &str) -> Result<u64, String> {
    digits
        .trim()
        .parse()
        .map_err(|_| bad(text, &format!("{what} takes a whole number")))
}

impl std::str::FromStr for TimeSpec {
    type Err = String;
    fn from_str(text: &str) -> Result<TimeSpec, String> {
        let t = text.trim();
        if let Some(n) = t.strip_prefix("card:") {
            return parse_number(text, "card:", n).map(TimeSpec::CardSeq);
        }
        if let Some(n) = t.strip_prefix("slot:") {
            return parse_number(text, "slot:", n).map(TimeSpec::Slot);
        }
        if t == "end" {
            return Ok(TimeSpec::BeforeEnd(0));
        }
        if let Some(d) = t.strip_prefix("end-") {
            return parse_duration_ns(d)
                .map(TimeSpec::BeforeEnd)
                .map_err(|_| bad(text, "end-DURATION, e.g. end-10m"));
        }
        if t == "start" {
            return Ok(TimeSpec::FromStart(0));
        }
        if let Some(d) = t.strip_prefix("start+") {
            return parse_duration_ns(d)
                .map(TimeSpec::FromStart)
                .map_err(|_| bad(text, "start+DURATION, e.g. start+90s"));
        }
        // An instant has a date: digits, then '-' (a duration never does).
        if t.len() > 4 && t.as_bytes()[4] == b'-' && t[..4].bytes().all(|b| b.is_ascii_digit()) {
            let ts: jiff::Timestamp = t.parse().map_err(|e| bad(text, &format!("{e}")))?;
            return u64::try_from(ts.as_nanosecond())
                .map(TimeSpec::At)
                .map_err(|_| bad(text, "before 1970"));
        }
        parse_duration_ns(t).map(TimeSpec::FromStart)
    }
}

impl fmt::Display for TimeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = |ns: u64| format!("{}s", ns as f64 / 1e9);
        match *self {
            TimeSpec::At(ns) => f.write_str(&formats::time::rfc3339_utc(ns)),
            TimeSpec::FromStart(ns) => write!(f, "start+{}", secs(ns)),
            TimeSpec::BeforeEnd(ns) => write!(f, "end-{}", secs(ns)),
            TimeSpec::CardSeq(n) => write!(f, "card:{n}"),
            TimeSpec::Slot(n) => write!(f, "slot:{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TimeSpec::{self, *};

    fn p(text: &str) -> Result<TimeSpec, String> {
        text.parse()
    }

    const S: u64 = 1_000_000_000;

    #[test]
    fn durations_from_the_start() {
        assert_eq!(p("90s"), Ok(FromStart(90 * S)));
        assert_eq!(p("10m"), Ok(FromStart(600 * S)));
        assert_eq!(p("1h30m"), Ok(FromStart(5400 * S)));
        assert_eq!(p("1h 30m 15s"), Ok(FromStart(5415 * S)));
        assert_eq!(p("1.5s"), Ok(FromStart(1_500_000_000)));
        assert_eq!(p("250ms"), Ok(FromStart(250_000_000)));
        assert_eq!(p("00:01:00"), Ok(FromStart(60 * S)));
        assert_eq!(p("01:02:03.5"), Ok(FromStart(3723 * S + S / 2)));
        assert_eq!(p("02:03"), Ok(FromStart(123 * S)));
        assert_eq!(p("PT1M"), Ok(FromStart(60 * S)));
        assert_eq!(p("12.5"), Ok(FromStart(12_500_000_000)));
        assert_eq!(p(" 0 "), Ok(FromStart(0)));
        assert_eq!(p("start"), Ok(FromStart(0)));
        assert_eq!(p("start+90s"), Ok(FromStart(90 * S)));
    }

    #[test]
    fn instants_end_and_numbers() {
        assert_eq!(p("1970-01-01T00:00:01Z"), Ok(At(S)));
        assert_eq!(
            p("2026-11-30T08:55:16.25Z"),
            Ok(At(1_796_028_916 * S + S / 4))
        );
        assert_eq!(
            p("2026-11-30T09:55:16+01:00"),
            Ok(At(1_796_028_916 * S)),
            "offsets are honoured"
        );
        assert_eq!(p("end"), Ok(BeforeEnd(0)));
        assert_eq!(p("end-10m"), Ok(BeforeEnd(600 * S)));
        assert_eq!(p("end-00:00:02"), Ok(BeforeEnd(2 * S)));
        assert_eq!(p("card:1234"), Ok(CardSeq(1234)));
        assert_eq!(p("slot:0"), Ok(Slot(0)));
    }

    #[test]
    fn bad_forms_are_refused_with_the_accepted_forms() {
        for text in [
            "",
            "abc",
            "-10m",
            "-5",
            "nan",
            "inf",
            "1e3",
            "10 parsecs",
            "1:2:3:4",
            "a:b:c",
            "2026-13-01T00:00:00Z",
            "2026-11-30",
            "1969-12-31T23:59:59Z",
            "card:",
            "card:-1",
            "slot:x",
            "end-",
            "end+5s",
            "start+",
            "start-5s",
            "99999999999h",
        ] {
            let err = p(text).expect_err(text);
            assert!(
                err.contains("accepted: an RFC 3339 instant"),
                "{text:?}: {err}"
            );
            assert!(err.contains(&format!("{text:?}")), "{err}");
        }
        assert!(p("-10m").unwrap_err().contains("end-10m"));
    }

    #[test]
    fn display_parses_back() {
        for spec in [
            At(1_796_028_916 * S + 7),
            FromStart(1_500_000_000),
            BeforeEnd(600 * S),
            CardSeq(9),
            Slot(3),
        ] {
            assert_eq!(p(&spec.to_string()), Ok(spec), "{spec}");
        }
    }
}
