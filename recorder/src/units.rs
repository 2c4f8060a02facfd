//! Quantities as users type them on dmarec's command line: sizes with
//! decimals and units, rates, durations. Each parser rejects NaN,
//! infinities, negative and zero values with a message that says what is
//! accepted; clap turns the error into a usage error (exit status 2) that
//! names the flag. Sizes use the `parse-size` crate and durations
//! `humantime`; only dmarec's unit convention is added here.

use std::time::Duration;

/// A size: `4096`, `512K`, `1.5G`, `2GiB`, `10GB`. A bare K/M/G/T (and
/// KiB…) is a power of 1024, KB/MB/GB/TB a power of 1000; decimals allowed
/// (the result is rounded down to whole bytes). Zero is refused.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let unit_at = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (number, unit) = t.split_at(unit_at);
    let unit = unit.trim();
    // dmarec's convention: K, M, G, T alone are binary.
    let binary_unit = matches!(
        unit.to_ascii_uppercase().as_str(),
        "K" | "M" | "G" | "T" | "P"
    );
    let spelled = if binary_unit {
        format!("{number}{unit}iB")
    } else {
        format!("{number}{unit}")
    };
    let bytes = parse_size::Config::new()
        .parse_size(spelled.trim())
        .map_err(|e| {
            format!("{text:?} is not a size ({e}; examples: 4096, 512K, 1.5G, 2GiB, 10GB)")
        })?;
    if bytes == 0 {
        return Err(format!("{text:?}: must be more than 0 bytes"));
    }
    Ok(bytes)
}

/// A size ([`parse_size`]: 512K, 1M, 65536) that is a valid payload size.
pub fn parse_payload_size(text: &str) -> Result<formats::PayloadSize, String> {
    formats::PayloadSize::new(parse_size(text)?).map_err(|e| e.to_string())
}

/// A rate in bytes per second: a plain number is MB/s (`800`, `1.5`);
/// with a unit, a size per second (`500MB/s`, `1.2GB/s`, `512M/s`, `500M`).
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let t = t.strip_suffix("/s").unwrap_or(t);
    if let Ok(mb_per_s) = t.parse::<f64>() {
        if !mb_per_s.is_finite() || mb_per_s <= 0.0 {
            return Err(format!(
                "{text:?}: a rate must be a positive, finite number of MB/s"
            ));
        }
        let bytes = mb_per_s * 1e6;
        if bytes >= u64::MAX as f64 || bytes < 1.0 {
            return Err(format!("{text:?}: out of range"));
        }
        return Ok(bytes as u64);
    }
    parse_size(t).map_err(|e| format!("{e}; a rate is MB/s or a size per second, e.g. 500MB/s"))
}

/// A duration: seconds (`10`, `2.5`) or a human duration (`90s`, `10m`,
/// `1h30m`, `250ms`). Zero and negative durations are refused.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let duration = match t.parse::<f64>() {
        Ok(s) if !s.is_finite() || s <= 0.0 => {
            return Err(format!(
                "{text:?}: must be a positive, finite number of seconds"
            ))
        }
        Ok(s) => Duration::try_from_secs_f64(s).map_err(|e| format!("{text:?}: {e}"))?,
        Err(_) => humantime::parse_duration(t).map_err(|e| {
            format!("{text:?} is not a duration ({e}; examples: 10, 2.5, 90s, 10m, 1h30m)")
        })?,
    };
    if duration.is_zero() {
        return Err(format!("{text:?}: must be longer than 0"));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_decimals_and_both_unit_families() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("10GB"), Ok(10_000_000_000));
        assert_eq!(parse_size("64m"), Ok(64 << 20));
        for bad in ["", "0", "-5", "abc", "1.5X", "nan", "inf", "99999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn rates_are_mb_per_s_or_a_size_per_second() {
        assert_eq!(parse_rate("800"), Ok(800_000_000));
        assert_eq!(parse_rate("1.5"), Ok(1_500_000));
        assert_eq!(parse_rate("500MB/s"), Ok(500_000_000));
        assert_eq!(parse_rate("512M/s"), Ok(512 << 20));
        assert_eq!(parse_rate("1.2GB/s"), Ok(1_200_000_000));
        for bad in ["0", "-5", "nan", "inf", "-inf", "", "fast", "0MB/s"] {
            assert!(parse_rate(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn durations_are_seconds_or_human() {
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2.5"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        for bad in ["-5", "nan", "inf", "0", "0s", "", "soon", "1e400"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }
}
