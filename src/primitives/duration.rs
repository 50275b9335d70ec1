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
