//! Alertmanager webhook payloads (version 4) → signals.
//!
//! The envelope is parsed strictly, each alert on its own: one malformed
//! alert is reported back and counted, the rest of the batch is kept
//! (Alertmanager would otherwise re-send the whole batch forever).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::limits::IntakeLimits;
use crate::signal::{Labels, Signal, Status, fingerprint_labels};

pub const SOURCE: &str = "alertmanager";

/// The only payload version Alertmanager has ever sent (0.x up to today).
pub const SUPPORTED_VERSION: &str = "4";

/// The webhook envelope. Unknown fields are allowed on purpose: Alertmanager
/// adds fields over time and a new sender must not be locked out. Each
/// alert is kept as its raw text, borrowed from the body, and parsed on its
/// own: one bad alert is rejected alone, and no JSON tree is built first.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a> {
    version: Option<String>,
    #[serde(default)]
    receiver: String,
    #[serde(default)]
    group_key: String,
    #[serde(default)]
    truncated_alerts: u64,
    #[serde(borrow)]
    alerts: Vec<&'a serde_json::value::RawValue>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Alert {
    status: String,
    labels: Labels,
    #[serde(default)]
    annotations: Labels,
    starts_at: String,
    #[serde(default)]
    ends_at: Option<String>,
    #[serde(default)]
    fingerprint: String,
}

fn parse_time(field: &str, value: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{field} {value:?} is not an RFC 3339 time: {e}"))
}

#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("invalid JSON at line {line} column {column}: {message}")]
    Json {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("missing payload version; expected \"{SUPPORTED_VERSION}\"")]
    MissingVersion,
    #[error("unsupported payload version {0:?}; expected \"{SUPPORTED_VERSION}\"")]
    UnsupportedVersion(String),
}

impl PayloadError {
    /// Bounded label for the rejection metric.
    pub fn reason(&self) -> &'static str {
        match self {
            PayloadError::Json { .. } => "invalid_json",
            PayloadError::MissingVersion | PayloadError::UnsupportedVersion(_) => "bad_version",
        }
    }
}

/// One alert of a batch that could not be used, and why.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct RejectedAlert {
    pub index: usize,
    pub error: String,
    /// Bounded label for the rejection metric (`malformed`, or one of
    /// [`super::limits::InvalidSignal::reason`]).
    #[schema(value_type = String)]
    pub reason: &'static str,
}

#[derive(Debug)]
pub struct Batch {
    pub receiver: String,
    pub group_key: String,
    pub truncated_alerts: u64,
    pub signals: Vec<Signal>,
    pub rejected: Vec<RejectedAlert>,
}

/// Parses one webhook body. `now` stamps `received_at`; each alert is
/// held to `limits` on its own.
pub fn parse(
    body: &[u8],
    now: DateTime<Utc>,
    limits: &IntakeLimits,
) -> Result<Batch, PayloadError> {
    // JSON between systems is UTF-8 (RFC 8259 §8.1); Alertmanager's encoder
    // never sends anything else. Checked up front, because serde_json skips
    // the fields it ignores unchecked: a body with a stray byte in, say,
    // `commonLabels` would otherwise be accepted while the same byte in an
    // alert fails the batch.
    let body = std::str::from_utf8(body).map_err(|e| {
        let before = &body[..e.valid_up_to()];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let column = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
        PayloadError::Json {
            line,
            column,
            message: "the body is not UTF-8".to_owned(),
        }
    })?;
    let envelope: Envelope = serde_json::from_str(body).map_err(|e| PayloadError::Json {
        line: e.line(),
        column: e.column(),
        message: strip_position(&e.to_string()),
    })?;
    match envelope.version.as_deref() {
        None => return Err(PayloadError::MissingVersion),
        Some(SUPPORTED_VERSION) => {}
        Some(other) => return Err(PayloadError::UnsupportedVersion(other.to_owned())),
    }
    let mut signals = Vec::with_capacity(envelope.alerts.len());
    let mut rejected = Vec::new();
    for (index, raw) in envelope.alerts.into_iter().enumerate() {
        let admitted = to_signal(raw, now).map_err(|e| (e, "malformed"));
        match admitted.and_then(|mut s| match limits.admit(&mut s) {
            Ok(()) => Ok(s),
            Err(e) => Err((e.to_string(), e.reason())),
        }) {
            Ok(signal) => signals.push(signal),
            Err((error, reason)) => rejected.push(RejectedAlert {
                index,
                error,
                reason,
            }),
        }
    }
    Ok(Batch {
        receiver: envelope.receiver,
        group_key: envelope.group_key,
        truncated_alerts: envelope.truncated_alerts,
        signals,
        rejected,
    })
}

fn to_signal(raw: &serde_json::value::RawValue, now: DateTime<Utc>) -> Result<Signal, String> {
    // The position inside one alert's text would only mislead: the index
    // of the alert is reported.
    let alert: Alert =
        serde_json::from_str(raw.get()).map_err(|e| strip_position(&e.to_string()))?;
    let status = Status::parse(&alert.status).ok_or_else(|| {
        format!(
            "unknown alert status {:?}; expected \"firing\" or \"resolved\"",
            alert.status
        )
    })?;
    let name = alert
        .labels
        .get("alertname")
        .filter(|n| !n.is_empty())
        .cloned()
        .ok_or_else(|| "alert has no alertname label".to_owned())?;
    let fingerprint = if alert.fingerprint.is_empty() {
        fingerprint_labels(&alert.labels)
    } else {
        alert.fingerprint
    };
    Ok(Signal {
        source: SOURCE.to_owned(),
        fingerprint,
        name,
        labels: alert.labels,
        annotations: alert.annotations,
        status,
        starts_at: parse_time("startsAt", &alert.starts_at)?,
        // Alertmanager sends the zero time for "no end" on firing alerts.
        ends_at: match alert.ends_at.as_deref() {
            None | Some("") => None,
            Some(t) => Some(parse_time("endsAt", t)?).filter(|t| t.timestamp() > 0),
        },
        received_at: now,
    })
}

/// serde_json appends " at line L column C" to its message; the position is
/// reported in its own fields, so drop the duplicate.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/../shared/fixtures/alertmanager-0.25/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// Found by the `alertmanager` fuzz target: a stray byte in a field the
    /// parser ignores was accepted, the same byte in an alert failed the
    /// batch. Both are now the same clear refusal, with where it is.
    #[test]
    fn a_body_that_is_not_utf8_is_refused_wherever_the_byte_is() {
        let alert =
            r#"{"status":"firing","labels":{"alertname":"A"},"startsAt":"2026-01-01T00:00:00Z"}"#;
        for (field, line) in [("commonLabels", 3), ("alerts", 2)] {
            let mut body = format!(
                "{{\"version\":\"4\",\n\"alerts\":[{alert}],\n\"commonLabels\":{{\"al@ertname\":\"A\"}}}}"
            )
            .into_bytes();
            let at = if field == "alerts" {
                body.windows(9).position(|w| w == b"alertname").unwrap() + 2
            } else {
                body.iter().position(|&b| b == b'@').unwrap()
            };
            body[at] = 0x89;
            match parse(&body, Utc::now(), &IntakeLimits::default()) {
                Err(e @ PayloadError::Json { line: l, .. }) => {
                    assert_eq!(l, line, "{field}: {e}");
                    assert!(e.to_string().contains("not UTF-8"), "{e}");
                    assert_eq!(e.reason(), "invalid_json");
                }
                other => panic!("{field}: {other:?}"),
            }
        }
        let crash = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fuzz/crashes/alertmanager-55e3909317d6"
        ))
        .unwrap();
        assert!(parse(&crash, Utc::now(), &IntakeLimits::default()).is_err());
    }

    #[test]
    fn real_alertmanager_delivery_becomes_signals() {
        let batch = parse(
            &fixture("webhook-01.json"),
            Utc::now(),
            &IntakeLimits::default(),
        )
        .unwrap();
        assert!(batch.rejected.is_empty());
        assert_eq!(batch.signals.len(), 2);
        let auth = &batch.signals[0];
        assert_eq!(auth.name, "KubePodNotReady");
        assert_eq!(auth.fingerprint, "1714addda8c401b6");
        assert_eq!(auth.labels["zone"], "ap-northeast-2a");
        assert_eq!(auth.status, Status::Firing);
        assert_eq!(auth.ends_at, None, "zero endsAt means no end");
        assert_eq!(auth.annotations["summary"], "auth pod not ready");
    }

    #[test]
    fn resolved_alert_in_firing_group_keeps_its_own_status() {
        let batch = parse(
            &fixture("webhook-03.json"),
            Utc::now(),
            &IntakeLimits::default(),
        )
        .unwrap();
        let statuses: Vec<_> = batch.signals.iter().map(|s| s.status).collect();
        assert_eq!(statuses, [Status::Resolved, Status::Firing]);
        assert!(batch.signals[0].ends_at.is_some());
    }

    #[test]
    fn bad_json_reports_position() {
        let err = parse(
            b"{\n  \"version\": \"4\",\n  \"alerts\": [}",
            Utc::now(),
            &IntakeLimits::default(),
        )
        .unwrap_err();
        let PayloadError::Json { line, column, .. } = err else {
            panic!("{err:?}")
        };
        assert_eq!((line, column), (3, 14));
    }

    #[test]
    fn version_is_checked() {
        let err = parse(
            br#"{"version":"5","alerts":[]}"#,
            Utc::now(),
            &IntakeLimits::default(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported payload version \"5\"; expected \"4\""
        );
        let err = parse(br#"{"alerts":[]}"#, Utc::now(), &IntakeLimits::default()).unwrap_err();
        assert!(matches!(err, PayloadError::MissingVersion));
    }

    #[test]
    fn one_malformed_alert_does_not_sink_the_batch() {
        let body = br#"{"version":"4","alerts":[
            {"status":"firing","labels":{"alertname":"A"},"startsAt":"2026-01-01T00:00:00Z"},
            {"status":"burning","labels":{"alertname":"B"},"startsAt":"2026-01-01T00:00:00Z"},
            {"status":"firing","labels":{"x":"y"},"startsAt":"2026-01-01T00:00:00Z"},
            {"status":"firing","labels":{"alertname":"C"},"startsAt":"yesterday"}
        ]}"#;
        let batch = parse(body, Utc::now(), &IntakeLimits::default()).unwrap();
        assert_eq!(batch.signals.len(), 1);
        assert_eq!(batch.signals[0].name, "A");
        assert!(!batch.signals[0].fingerprint.is_empty());
        let idx: Vec<_> = batch.rejected.iter().map(|r| r.index).collect();
        assert_eq!(idx, [1, 2, 3]);
        assert!(batch.rejected[0].error.contains("burning"));
        assert!(batch.rejected[1].error.contains("alertname"));
        assert_eq!(batch.rejected[1].reason, "malformed");
    }

    #[test]
    fn alert_over_a_limit_is_rejected_alone() {
        let body = br#"{"version":"4","alerts":[
            {"status":"firing","labels":{"alertname":"A\u0000"},"startsAt":"2026-01-01T00:00:00Z"},
            {"status":"firing","labels":{"alertname":"B","bad-name":"x"},"startsAt":"2026-01-01T00:00:00Z"},
            {"status":"firing","labels":{"alertname":"C"},"startsAt":"2026-01-01T00:00:00Z","fingerprint":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}
        ]}"#;
        let batch = parse(body, Utc::now(), &IntakeLimits::default()).unwrap();
        let reasons: Vec<_> = batch.rejected.iter().map(|r| (r.index, r.reason)).collect();
        assert_eq!(reasons, [(0, "nul_byte"), (1, "bad_label_name")]);
        assert_eq!(batch.signals.len(), 1);
        assert!(batch.signals[0].fingerprint.starts_with("digest:"));
    }
}
