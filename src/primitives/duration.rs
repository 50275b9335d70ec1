//! Durations written the way Prometheus and Alertmanager users write them:
//! `30s`, `2m`, `1h30m`. Use as `#[serde(with = "crate::primitives::duration")]`.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse(&s).map_err(serde::de::Error::custom)
}

pub fn parse(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("invalid duration {s:?} ({e}); expected e.g. 30s, 2m, 1h30m"))
}

/// Longest window, absence, approval timeout or rate period a rule may
/// give. Beyond it a duration is a typo (`300000y` for `300s`), and chrono
/// cannot add much more than that to a date without overflowing.
pub const MAX_RULE_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

/// Shortest rate period: the rate limiter counts in nanoseconds per cell,
/// and a period under a millisecond is no limit at all.
pub const MIN_RATE_PERIOD: Duration = Duration::from_millis(1);

/// `45s`, `3m`, `2h`, `5d`: the largest whole unit, for people scanning a
/// list (the console's and the CLI's ages).
pub fn coarse(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// Parses and checks `min <= d <= max`, naming both bounds when it is not.
pub fn parse_within(s: &str, min: Duration, max: Duration) -> Result<Duration, String> {
    let d = parse(s)?;
    if d < min {
        return Err(if min == Duration::from_nanos(1) {
            format!("duration {s:?} must be greater than 0")
        } else {
            format!(
                "duration {s:?} is shorter than the minimum {}",
                humantime::format_duration(min)
            )
        });
    }
    if d > max {
        return Err(format!(
            "duration {s:?} is longer than the maximum {}",
            humantime::format_duration(max)
        ));
    }
    Ok(d)
}

/// `at + d`, saturating at chrono's largest date instead of panicking.
pub fn after(at: chrono::DateTime<chrono::Utc>, d: Duration) -> chrono::DateTime<chrono::Utc> {
    chrono::TimeDelta::from_std(d)
        .ok()
        .and_then(|d| at.checked_add_signed(d))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
}

/// `at - d`, saturating at chrono's smallest date instead of panicking.
pub fn before(at: chrono::DateTime<chrono::Utc>, d: Duration) -> chrono::DateTime<chrono::Utc> {
    chrono::TimeDelta::from_std(d)
        .ok()
        .and_then(|d| at.checked_sub_signed(d))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC)
}

/// An optional duration: `#[serde(default, with = "crate::primitives::duration::optional")]`.
pub mod optional {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| super::parse(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_named_and_arithmetic_saturates() {
        let day = Duration::from_secs(86_400);
        assert!(
            parse_within("0s", Duration::from_nanos(1), day)
                .unwrap_err()
                .contains("greater than 0")
        );
        assert!(
            parse_within("300000y", Duration::from_nanos(1), day)
                .unwrap_err()
                .contains("maximum 1day")
        );
        assert!(
            parse_within("1ns", MIN_RATE_PERIOD, day)
                .unwrap_err()
                .contains("minimum 1ms")
        );
        assert_eq!(
            parse_within("2m", MIN_RATE_PERIOD, day),
            Ok(Duration::from_secs(120))
        );
        let now = chrono::Utc::now();
        assert_eq!(
            after(now, Duration::MAX),
            chrono::DateTime::<chrono::Utc>::MAX_UTC
        );
        assert_eq!(
            before(now, Duration::MAX),
            chrono::DateTime::<chrono::Utc>::MIN_UTC
        );
        assert_eq!(after(now, day) - now, chrono::TimeDelta::days(1));
    }
}
