//! Event payloads (as Kafka carries them) → signals.
//!
//! Pure decoding, no I/O: the Kafka consumer hands each message here with
//! the format its topic is configured for, and gets a signal or a reason
//! to dead-letter it. Every signal gets a fingerprint that is stable across
//! re-deliveries of the same event, so a message consumed twice (after a
//! rebalance or a restart) is recorded once.
//!
//! Most events are point-in-time (a deploy, a CloudEvent): they fire with
//! `ends_at` equal to their time, which the rule engine counts once for the
//! window. AWS Health events and generic events with a status mapping have
//! a lifetime (open → closed); heartbeats are re-sent while alive.

mod aws_health;
mod cloudevents;
mod deploy;
mod generic;
mod heartbeat;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use crate::signal::{Labels, Signal, Status, fingerprint_labels};
use crate::sources::limits::{IntakeLimits, InvalidSignal};

pub use self::aws_health::name_zone;
pub use self::deploy::DEPLOY_NAME;
pub use self::generic::{GenericMapping, StatusMapping};

pub const SOURCE: &str = "kafka";

/// How a topic's messages are read.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Format {
    /// CloudEvents 1.0, structured mode, JSON.
    Cloudevents,
    /// AWS Health events as EventBridge delivers them.
    AwsHealth,
    /// `{service, version, previous_version, time, region?, id?, labels?}`.
    Deploy,
    /// `{name, labels, time?}`: a keep-alive; its absence is the evidence.
    Heartbeat,
    /// Any JSON object, mapped to a signal by JSON pointers.
    Generic(GenericMapping),
}

/// Why a message could not become a signal. `reason()` is the bounded
/// label for metrics and the dead-letter header.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    #[error("message of {size} bytes is over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("message has no payload")]
    Empty,
    #[error("invalid JSON at line {line} column {column}: {message}")]
    Json {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("not a {format} event: {message}")]
    Unmappable {
        format: &'static str,
        message: String,
    },
    /// Decoded, but over a limit of `intake.limits`.
    #[error(transparent)]
    Invalid(#[from] InvalidSignal),
}

impl DecodeError {
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::TooLarge { .. } => "too_large",
            DecodeError::Empty => "empty",
            DecodeError::Json { .. } => "invalid_json",
            DecodeError::Unmappable { .. } => "unmappable",
            DecodeError::Invalid(e) => e.reason(),
        }
    }
}

impl Format {
    pub fn name(&self) -> &'static str {
        match self {
            Format::Cloudevents => "cloudevents",
            Format::AwsHealth => "aws_health",
            Format::Deploy => "deploy",
            Format::Heartbeat => "heartbeat",
            Format::Generic(_) => "generic",
        }
    }

    /// Decodes one message payload; `now` stamps `received_at`.
    pub fn decode(
        &self,
        payload: Option<&[u8]>,
        limit: usize,
        now: DateTime<Utc>,
    ) -> Result<Signal, DecodeError> {
        let payload = payload
            .filter(|p| !p.is_empty())
            .ok_or(DecodeError::Empty)?;
        if payload.len() > limit {
            return Err(DecodeError::TooLarge {
                size: payload.len(),
                limit,
            });
        }
        let value: Value = serde_json::from_slice(payload).map_err(|e| DecodeError::Json {
            line: e.line(),
            column: e.column(),
            message: e
                .to_string()
                .split(" at line ")
                .next()
                .unwrap_or("")
                .to_owned(),
        })?;
        let unmappable = |message: String| DecodeError::Unmappable {
            format: self.name(),
            message,
        };
        let obj = value
            .as_object()
            .ok_or_else(|| unmappable("expected a JSON object".into()))?;
        let ev = Event {
            obj,
            root: &value,
            now,
        };
        match self {
            Format::Cloudevents => ev.cloudevent(),
            Format::AwsHealth => ev.aws_health(),
            Format::Deploy => ev.deploy(),
            Format::Heartbeat => ev.heartbeat(),
            Format::Generic(m) => ev.generic(m),
        }
        .map_err(unmappable)
    }

    /// What the consumer makes of one message of a topic of this format:
    /// decoded, then held to `limits`.
    pub fn admit(
        &self,
        payload: Option<&[u8]>,
        limit: usize,
        limits: &IntakeLimits,
        now: DateTime<Utc>,
    ) -> Result<Signal, DecodeError> {
        let mut signal = self.decode(payload, limit, now)?;
        limits.admit(&mut signal)?;
        Ok(signal)
    }
}

struct Event<'a> {
    obj: &'a serde_json::Map<String, Value>,
    root: &'a Value,
    now: DateTime<Utc>,
}

impl Event<'_> {
    fn str(&self, key: &str) -> Option<&str> {
        self.obj
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }

    fn required(&self, key: &str) -> Result<&str, String> {
        self.str(key)
            .ok_or_else(|| format!("missing or empty string field {key:?}"))
    }

    /// The event's time under `key`, or the receipt time if it has none.
    fn time(&self, key: &str) -> Result<DateTime<Utc>, String> {
        Ok(self.sent_at(key)?.unwrap_or(self.now))
    }

    /// The time the event itself gives under `key`, if any.
    fn sent_at(&self, key: &str) -> Result<Option<DateTime<Utc>>, String> {
        match self.obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => parse_time(s)
                .map(Some)
                .map_err(|e| format!("field {key:?}: {e}")),
            Some(other) => Err(format!(
                "field {key:?}: expected a time string, got {other}"
            )),
        }
    }

    fn signal(&self, fingerprint: String, name: &str, labels: Labels, at: DateTime<Utc>) -> Signal {
        Signal {
            source: SOURCE.to_owned(),
            fingerprint,
            name: name.to_owned(),
            labels,
            annotations: Labels::new(),
            status: Status::Firing,
            starts_at: at,
            ends_at: Some(at),
            received_at: self.now,
        }
    }

    fn labels_object(&self) -> Result<Labels, String> {
        match self.obj.get("labels") {
            None | Some(Value::Null) => Ok(Labels::new()),
            Some(Value::Object(m)) => {
                let mut labels = Labels::new();
                scalars_into(m, &mut labels);
                Ok(labels)
            }
            Some(_) => Err("field \"labels\" is not an object".into()),
        }
    }
}

/// The fingerprint of a point-in-time event without an id: its labels, and
/// its own time if it gives one. Never the receipt time: a redelivery is
/// received later and must refresh the same signal, not count again.
fn point_fingerprint(labels: &Labels, sent: Option<DateTime<Utc>>) -> String {
    match sent {
        Some(at) => {
            let mut l = labels.clone();
            l.insert("__time".into(), at.to_rfc3339());
            fingerprint_labels(&l)
        }
        None => fingerprint_labels(labels),
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn scalars_into(m: &serde_json::Map<String, Value>, labels: &mut Labels) {
    for (k, v) in m {
        if let Some(s) = scalar(v) {
            labels.insert(k.clone(), s);
        }
    }
}

/// RFC 3339, or RFC 2822 as AWS Health writes `startTime`
/// (`Fri, 3 Jun 2022 06:27:57 GMT`).
fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .or_else(|_| DateTime::parse_from_rfc2822(s))
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| format!("{s:?} is neither an RFC 3339 nor an RFC 2822 time"))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn now() -> DateTime<Utc> {
        "2026-11-25T03:00:00Z".parse().unwrap()
    }

    pub(super) fn decode(f: &Format, v: Value) -> Result<Signal, DecodeError> {
        f.decode(Some(&serde_json::to_vec(&v).unwrap()), 1 << 20, now())
    }

    #[test]
    fn poison_is_classified() {
        let f = Format::Deploy;
        assert_eq!(f.decode(None, 10, now()).unwrap_err(), DecodeError::Empty);
        assert_eq!(
            f.decode(Some(b"{\"a\":\"0123456789\"}"), 10, now())
                .unwrap_err()
                .reason(),
            "too_large"
        );
        let err = f.decode(Some(b"{\"service\": "), 100, now()).unwrap_err();
        assert_eq!(err.reason(), "invalid_json");
        assert!(
            err.to_string()
                .starts_with("invalid JSON at line 1 column 12"),
            "{err}"
        );
        assert_eq!(
            f.decode(Some(b"[1]"), 100, now()).unwrap_err().reason(),
            "unmappable"
        );
    }
}
