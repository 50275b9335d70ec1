//! The normalised signal every source produces and every later stage reads.
//!
//! A signal is one piece of evidence: an Alertmanager alert, a Kafka event,
//! a heartbeat. Sources own the mapping into this shape; nothing downstream
//! knows where a signal came from except through [`Signal::source`] (which
//! rules may match on).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::primitives::intern::{ArcStr, Interner};

/// The label that marks a drill's synthetic signals, and through them its
/// groups and incident. Reserved (Prometheus keeps `__` names for itself):
/// sources refuse it, so only `POST /api/v1/drills` can start a drill, and
/// no real alert can be taken for one.
pub const DRILL_LABEL: &str = "__drill__";

/// Whether a label set is a drill's.
pub fn is_drill(labels: &Labels) -> bool {
    labels.get(DRILL_LABEL).is_some_and(|v| v == "true")
}

/// Label set. A `BTreeMap` so that iteration order, and therefore every key,
/// hash and JSON rendering derived from it, is deterministic.
pub type Labels = BTreeMap<String, String>;

/// A label set as the rule engine holds it while its signal is in a group:
/// its sorted label names, one copy shared by every label set with the same
/// names (a storm's alerts of one kind all have them), and its values in
/// the same order, values shared through the [`Interner`] too. About a fifth
/// of the memory of a [`Labels`] (one B-tree node and two allocations per
/// label): per signal only the array of value pointers is its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldLabels {
    names: Arc<[ArcStr]>,
    values: Box<[ArcStr]>,
}

impl HeldLabels {
    pub fn new(labels: &Labels, strings: &mut Interner) -> HeldLabels {
        // A BTreeMap iterates in key order: the names come out sorted.
        HeldLabels {
            names: strings.intern_names(labels.keys()),
            values: labels.values().map(|v| strings.intern(v)).collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.names
            .binary_search_by(|k| (**k).cmp(name))
            .ok()
            .map(|i| &*self.values[i])
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.names
            .iter()
            .zip(self.values.iter())
            .map(|(k, v)| (&**k, &**v))
    }

    pub fn to_labels(&self) -> Labels {
        self.iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }
}

/// As a map, exactly as [`Labels`] serializes (CEL reads it this way).
impl Serialize for HeldLabels {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = SignalStatus)]
pub enum Status {
    Firing,
    Resolved,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "firing" => Some(Status::Firing),
            "resolved" => Some(Status::Resolved),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Signal {
    /// Where it came from: `alertmanager`, `kafka`, `heartbeat`.
    pub source: String,
    /// Stable identity across re-sends; the dedup key within a source.
    pub fingerprint: String,
    /// The alert name or event type (`alertname` for Alertmanager).
    pub name: String,
    #[schema(inline)]
    pub labels: Labels,
    #[serde(default)]
    #[schema(inline)]
    pub annotations: Labels,
    pub status: Status,
    pub starts_at: DateTime<Utc>,
    pub ends_at: Option<DateTime<Utc>>,
    /// When dr-reactor received it; windows are measured on this clock, not
    /// on the sender's, so a sender with a skewed clock cannot stretch or
    /// shrink a correlation window.
    pub received_at: DateTime<Utc>,
}

#[cfg(test)]
impl Signal {
    /// A firing Alertmanager signal received now, for unit tests.
    pub(crate) fn firing(fingerprint: &str, name: &str, labels: &[(&str, &str)]) -> Signal {
        let now = chrono::Utc::now();
        Signal {
            source: "alertmanager".into(),
            fingerprint: fingerprint.into(),
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            annotations: Labels::new(),
            status: Status::Firing,
            starts_at: now,
            ends_at: None,
            received_at: now,
        }
    }
}

impl Signal {
    /// The store and engine key: unique per source and fingerprint.
    pub fn id(&self) -> String {
        format!("{}:{}", self.source, self.fingerprint)
    }
}

/// What an approval's evidence check reads of a heartbeat linked to an
/// incident: its name and when it was last received, nothing else (an
/// incident can hold a storm's worth of signals, and the check runs every
/// tick).
#[derive(Debug, Clone, PartialEq)]
pub struct Beat {
    pub name: String,
    pub last_seen: DateTime<Utc>,
}

/// What recording a signal changed; decided by the store against what it
/// already held, so that re-sends of a firing alert do not count twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Started firing (first time, or again after it had resolved).
    Fired,
    /// A re-send of something already firing. Only heartbeats care.
    Refreshed,
    /// Ended.
    Resolved,
    /// A resolve for something never seen firing, or already resolved.
    Ignored,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Fired => "fired",
            Change::Refreshed => "refreshed",
            Change::Resolved => "resolved",
            Change::Ignored => "ignored",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Change::Fired,
            Change::Refreshed,
            Change::Resolved,
            Change::Ignored,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }
}

/// A recorded signal together with what recording it changed: the unit the
/// rule engine consumes.
#[derive(Debug, Clone)]
pub struct SignalEvent {
    pub signal: Signal,
    pub change: Change,
}

/// Prometheus' rule for label names.
pub fn valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Fingerprint of a label set for senders that do not supply one: FNV-1a over
/// the sorted `name=value` pairs, the same inputs Alertmanager hashes.
pub fn fingerprint_labels(labels: &Labels) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (k, v) in labels {
        for b in k.bytes().chain([0xff]).chain(v.bytes()).chain([0xff]) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_labels_read_and_serialize_as_the_labels_they_hold() {
        let labels: Labels = [("zone", "a"), ("alertname", "X"), ("service", "")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let mut strings = Interner::default();
        let held = HeldLabels::new(&labels, &mut strings);
        assert_eq!(held.get("zone"), Some("a"));
        assert_eq!(held.get("service"), Some(""));
        assert_eq!(held.get("region"), None);
        assert_eq!(held.to_labels(), labels);
        assert_eq!(
            serde_json::to_value(&held).unwrap(),
            serde_json::to_value(&labels).unwrap()
        );
        let again = HeldLabels::new(&labels, &mut strings);
        assert!(
            ArcStr::ptr_eq(&held.values[0], &again.values[0]),
            "values shared"
        );
        assert!(Arc::ptr_eq(&held.names, &again.names), "name sets shared");
    }

    #[test]
    fn fingerprint_is_order_independent_and_distinguishes_boundaries() {
        let a: Labels = [("a", "bc"), ("d", "e")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let b: Labels = [("d", "e"), ("a", "bc")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let c: Labels = [("a", "b"), ("cd", "e")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(fingerprint_labels(&a), fingerprint_labels(&b));
        assert_ne!(fingerprint_labels(&a), fingerprint_labels(&c));
    }
}
