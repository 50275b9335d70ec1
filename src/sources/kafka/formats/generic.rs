use std::collections::BTreeMap;

use serde::Deserialize;

use super::{Event, parse_time, point_fingerprint, scalar};
use crate::signal::{Labels, Signal, Status, fingerprint_labels};

/// Where a generic event's parts are. A value that starts with `/` is a
/// JSON pointer (RFC 6901) into the message; anything else is a literal.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenericMapping {
    /// The signal name (what `__name__` matches).
    pub name: String,
    /// Label name → pointer or literal. A pointer that finds nothing leaves
    /// the label out; list it in `required` to dead-letter such events.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Labels that must be present and non-empty.
    #[serde(default)]
    pub required: Vec<String>,
    /// Pointer to a stable event id. Without it the fingerprint is the
    /// labels plus the event time.
    #[serde(default)]
    pub id: Option<String>,
    /// Pointer to the event time (RFC 3339 or RFC 2822); else receipt time.
    #[serde(default)]
    pub time: Option<String>,
    /// With it the event has a lifetime (firing until a resolving value
    /// arrives for the same id); without it the event is point-in-time.
    #[serde(default)]
    pub status: Option<StatusMapping>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusMapping {
    pub pointer: String,
    /// Values meaning the condition has ended; any other value is firing.
    pub resolved: Vec<String>,
}

impl Event<'_> {
    pub(super) fn generic(&self, m: &GenericMapping) -> Result<Signal, String> {
        let name = self
            .resolve(&m.name)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| format!("name: nothing at {}", m.name))?;
        let labels: Labels = m
            .labels
            .iter()
            .filter_map(|(k, spec)| Some((k.clone(), self.resolve(spec)?)))
            .filter(|(_, v)| !v.is_empty())
            .collect();
        if let Some(missing) = m.required.iter().find(|r| !labels.contains_key(*r)) {
            return Err(format!(
                "required label {missing:?}: nothing at {}",
                m.labels.get(missing).map_or("(unmapped)", String::as_str)
            ));
        }
        let sent = match m.time.as_ref().and_then(|p| Some((p, self.resolve(p)?))) {
            Some((p, t)) => Some(parse_time(&t).map_err(|e| format!("time at {p}: {e}"))?),
            None => None,
        };
        let at = sent.unwrap_or(self.now);
        // An empty id is no id: it would make every such event one signal
        // (an empty fingerprint) and identify nothing.
        let id = match &m.id {
            Some(p) => Some(
                self.resolve(p)
                    .filter(|id| !id.is_empty())
                    .ok_or_else(|| format!("id: nothing (or an empty string) at {p}"))?,
            ),
            None => None,
        };
        let Some(status) = &m.status else {
            let fingerprint = id.unwrap_or_else(|| point_fingerprint(&labels, sent));
            return Ok(self.signal(fingerprint, &name, labels, at));
        };
        let value = self
            .resolve(&status.pointer)
            .ok_or_else(|| format!("status: nothing at {}", status.pointer))?;
        let resolved = status.resolved.contains(&value);
        let fingerprint = id.unwrap_or_else(|| fingerprint_labels(&labels));
        Ok(Signal {
            status: if resolved {
                Status::Resolved
            } else {
                Status::Firing
            },
            ends_at: resolved.then_some(at),
            ..self.signal(fingerprint, &name, labels, at)
        })
    }

    fn resolve(&self, spec: &str) -> Option<String> {
        if spec.starts_with('/') {
            self.root.pointer(spec).and_then(scalar)
        } else {
            Some(spec.to_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::GenericMapping;
    use crate::signal::Status;
    use crate::sources::kafka::formats::Format;
    use crate::sources::kafka::formats::tests::{decode, now};

    #[test]
    fn generic_mapping_by_pointer_with_required_labels_and_status() {
        let m: GenericMapping = serde_json::from_value(json!({
            "name": "/kind", "id": "/eventId", "time": "/ts",
            "labels": {"service": "/svc/name", "region": "/meta/region", "system": "legacy"},
            "required": ["service"],
            "status": {"pointer": "/state", "resolved": ["OK"]}
        }))
        .unwrap();
        let f = Format::Generic(m);
        let s = decode(&f, json!({"kind": "OrderAlarm", "eventId": 42, "ts": "2026-11-25T02:00:00Z",
                                  "svc": {"name": "order"}, "meta": {"region": "ap-northeast-2"}, "state": "ALARM"}))
        .unwrap();
        assert_eq!(
            (s.name.as_str(), s.fingerprint.as_str()),
            ("OrderAlarm", "42")
        );
        assert_eq!(s.labels["system"], "legacy");
        assert_eq!(s.status, Status::Firing);
        assert_eq!(s.ends_at, None);
        let ok = decode(
            &f,
            json!({"kind": "OrderAlarm", "eventId": 42, "svc": {"name": "order"}, "state": "OK"}),
        )
        .unwrap();
        assert_eq!(ok.status, Status::Resolved);
        let err = decode(
            &f,
            json!({"kind": "OrderAlarm", "eventId": 43, "state": "ALARM"}),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "not a generic event: required label \"service\": nothing at /svc/name"
        );
        // Found by the kafka_generic fuzz target: an empty id was admitted
        // with an empty fingerprint, so all such events were one signal.
        let err = decode(
            &f,
            json!({"kind": "OrderAlarm", "eventId": "", "svc": {"name": "order"}, "state": "ALARM"}),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "not a generic event: id: nothing (or an empty string) at /eventId"
        );
    }

    /// The kafka fuzz targets check this (redelivery): an
    /// event with no id and no time got its receipt time in its
    /// fingerprint.
    #[test]
    fn redelivery_without_id_or_time_is_the_same_signal() {
        let m: GenericMapping =
            serde_json::from_value(json!({"name": "/kind", "labels": {"service": "/svc"}}))
                .unwrap();
        let f = Format::Generic(m);
        let payload = br#"{"kind": "OrderAlarm", "svc": "order"}"#;
        let at = |h: i64| now() + chrono::Duration::hours(h);
        let first = f.decode(Some(payload), 1 << 20, at(0)).unwrap();
        let again = f.decode(Some(payload), 1 << 20, at(1)).unwrap();
        assert_eq!(first.fingerprint, again.fingerprint);
    }

    /// The fuzz target's input itself, under its mapping: refused, where it
    /// was admitted with an empty fingerprint.
    #[test]
    fn the_fuzzers_empty_id_is_refused() {
        let m: GenericMapping = serde_json::from_value(json!({
            "name": "/kind", "id": "/eventId", "time": "/ts",
            "labels": {"service": "/svc", "region": "/where/region", "system": "legacy"},
            "required": ["service"],
            "status": {"pointer": "/state", "resolved": ["OK"]}
        }))
        .unwrap();
        let input = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fuzz/crashes/kafka_generic-empty-id"
        ))
        .unwrap();
        let err = Format::Generic(m)
            .decode(Some(&input), 1 << 20, now())
            .unwrap_err();
        assert!(
            err.to_string().contains("id: nothing (or an empty string)"),
            "{err}"
        );
    }
}
