//! What one signal may carry, checked at the edge before anything is
//! stored: the `intake.limits` section of the config, shared by the webhook
//! and the Kafka consumer.
//!
//! A signal over a limit is refused on its own (the webhook lists it under
//! `rejected`, Kafka dead-letters it) so that it can never fail the store
//! transaction, and with it the rest of its batch. Keys that come from the
//! sender are bounded here too ([`crate::primitives::key`]).

use serde::Deserialize;

use crate::primitives::key;
use crate::signal::{DRILL_LABEL, Labels, Signal, valid_label_name};

/// The `intake.limits` section. Defaults fit anything Prometheus and
/// Alertmanager produce in practice, with room to spare.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IntakeLimits {
    /// Bytes in an alert name (the `alertname` label) or event type.
    #[serde(default = "default_max_name_bytes")]
    pub max_name_bytes: usize,
    /// Labels on one signal; annotations are counted on their own.
    #[serde(default = "default_max_labels")]
    pub max_labels: usize,
    /// Bytes in a label or annotation name.
    #[serde(default = "default_max_label_name_bytes")]
    pub max_label_name_bytes: usize,
    /// Bytes in a label value.
    #[serde(default = "default_max_label_value_bytes")]
    pub max_label_value_bytes: usize,
    /// Bytes in an annotation value (descriptions run longer than labels).
    #[serde(default = "default_max_annotation_value_bytes")]
    pub max_annotation_value_bytes: usize,
}

impl Default for IntakeLimits {
    fn default() -> Self {
        IntakeLimits {
            max_name_bytes: default_max_name_bytes(),
            max_labels: default_max_labels(),
            max_label_name_bytes: default_max_label_name_bytes(),
            max_label_value_bytes: default_max_label_value_bytes(),
            max_annotation_value_bytes: default_max_annotation_value_bytes(),
        }
    }
}

fn default_max_name_bytes() -> usize {
    256
}
fn default_max_labels() -> usize {
    64
}
fn default_max_label_name_bytes() -> usize {
    128
}
fn default_max_label_value_bytes() -> usize {
    4096
}
fn default_max_annotation_value_bytes() -> usize {
    16384
}

/// Why a signal was refused. `reason()` is the bounded label for metrics
/// and the dead-letter header.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidSignal {
    #[error("{what} contains a NUL byte")]
    Nul { what: String },
    #[error("{what} {name:?} is not a valid label name; expected [a-zA-Z_][a-zA-Z0-9_]*")]
    LabelName { what: &'static str, name: String },
    #[error("label {DRILL_LABEL:?} is reserved for drills (POST /api/v1/drills)")]
    Reserved,
    #[error("{count} {what} over the limit of {limit} (intake.limits.max_labels)")]
    TooMany {
        what: &'static str,
        count: usize,
        limit: usize,
    },
    #[error("{what} is {len} bytes, over the limit of {limit} (intake.limits.{key})")]
    TooLong {
        what: String,
        len: usize,
        limit: usize,
        key: &'static str,
    },
}

impl InvalidSignal {
    pub fn reason(&self) -> &'static str {
        match self {
            InvalidSignal::Nul { .. } => "nul_byte",
            InvalidSignal::LabelName { .. } => "bad_label_name",
            InvalidSignal::Reserved => "reserved_label",
            InvalidSignal::TooMany { .. } => "too_many_labels",
            InvalidSignal::TooLong { .. } => "too_long",
        }
    }
}

/// A name as it may be printed in an error: without what makes it hostile.
fn shown(name: &str) -> String {
    const SHOWN: usize = 64;
    let mut s: String = name
        .chars()
        .take(SHOWN)
        .map(|c| if c == '\0' { '\u{fffd}' } else { c })
        .collect();
    if name.chars().count() > SHOWN {
        s.push('…');
    }
    s
}

impl IntakeLimits {
    /// Refuses what the store or engine cannot take, then bounds the
    /// sender's fingerprint so the signal id can be indexed.
    pub fn admit(&self, signal: &mut Signal) -> Result<(), InvalidSignal> {
        if signal.name.contains('\0') {
            return Err(InvalidSignal::Nul {
                what: "name".into(),
            });
        }
        if signal.name.len() > self.max_name_bytes {
            return Err(InvalidSignal::TooLong {
                what: format!("name {:?}", shown(&signal.name)),
                len: signal.name.len(),
                limit: self.max_name_bytes,
                key: "max_name_bytes",
            });
        }
        if signal.labels.contains_key(DRILL_LABEL) {
            return Err(InvalidSignal::Reserved);
        }
        self.pairs(
            "label",
            &signal.labels,
            self.max_label_value_bytes,
            "max_label_value_bytes",
        )?;
        self.pairs(
            "annotation",
            &signal.annotations,
            self.max_annotation_value_bytes,
            "max_annotation_value_bytes",
        )?;
        if let std::borrow::Cow::Owned(k) = key::bounded(&signal.fingerprint) {
            signal.fingerprint = k;
        }
        Ok(())
    }

    fn pairs(
        &self,
        what: &'static str,
        pairs: &Labels,
        max_value: usize,
        value_key: &'static str,
    ) -> Result<(), InvalidSignal> {
        if pairs.len() > self.max_labels {
            return Err(InvalidSignal::TooMany {
                what: if what == "label" {
                    "labels"
                } else {
                    "annotations"
                },
                count: pairs.len(),
                limit: self.max_labels,
            });
        }
        for (name, value) in pairs {
            if name.contains('\0') {
                return Err(InvalidSignal::Nul {
                    what: format!("{what} name {:?}", shown(name)),
                });
            }
            if name.len() > self.max_label_name_bytes {
                return Err(InvalidSignal::TooLong {
                    what: format!("{what} name {:?}", shown(name)),
                    len: name.len(),
                    limit: self.max_label_name_bytes,
                    key: "max_label_name_bytes",
                });
            }
            if !valid_label_name(name) {
                return Err(InvalidSignal::LabelName {
                    what,
                    name: shown(name),
                });
            }
            if value.contains('\0') {
                return Err(InvalidSignal::Nul {
                    what: format!("{what} {name:?} value"),
                });
            }
            if value.len() > max_value {
                return Err(InvalidSignal::TooLong {
                    what: format!("{what} {name:?} value"),
                    len: value.len(),
                    limit: max_value,
                    key: value_key,
                });
            }
        }
        Ok(())
    }

    /// Every limit must leave room for a real signal.
    pub fn check(&self) -> Result<(), String> {
        for (key, v) in [
            ("max_name_bytes", self.max_name_bytes),
            ("max_labels", self.max_labels),
            ("max_label_name_bytes", self.max_label_name_bytes),
            ("max_label_value_bytes", self.max_label_value_bytes),
            (
                "max_annotation_value_bytes",
                self.max_annotation_value_bytes,
            ),
        ] {
            if v == 0 {
                return Err(format!("intake.limits.{key}: must be greater than 0"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signal(name: &str, labels: &[(&str, &str)]) -> Signal {
        Signal::firing("f", name, labels)
    }

    fn reason(s: Signal) -> &'static str {
        let mut s = s;
        IntakeLimits::default().admit(&mut s).unwrap_err().reason()
    }

    #[test]
    fn hostile_signals_are_refused_with_a_reason() {
        assert_eq!(reason(signal("A\0", &[])), "nul_byte");
        assert_eq!(reason(signal("A", &[("zone", "a\0b")])), "nul_byte");
        assert_eq!(reason(signal("A", &[("zo\0ne", "a")])), "nul_byte");
        assert_eq!(reason(signal("A", &[("1zone", "a")])), "bad_label_name");
        assert_eq!(reason(signal("A", &[("zo-ne", "a")])), "bad_label_name");
        assert_eq!(reason(signal("A", &[("", "a")])), "bad_label_name");
        assert_eq!(
            reason(signal("A", &[("__drill__", "true")])),
            "reserved_label"
        );
        let long = "v".repeat(8192);
        assert_eq!(reason(signal("A", &[("zone", &long)])), "too_long");
        assert_eq!(reason(signal(&"A".repeat(300), &[])), "too_long");
        let many: Vec<(String, String)> = (0..300).map(|i| (format!("l{i}"), "v".into())).collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(reason(signal("A", &many)), "too_many_labels");
    }

    #[test]
    fn errors_say_what_and_which_limit() {
        let mut s = signal("A", &[("zone", &"v".repeat(8192))]);
        let e = IntakeLimits::default()
            .admit(&mut s)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "label \"zone\" value is 8192 bytes, over the limit of 4096 (intake.limits.max_label_value_bytes)"
        );
    }

    #[test]
    fn good_signal_passes_and_long_fingerprint_is_bounded() {
        let mut s = signal("A", &[("zone", "a"), ("__name__", "x"), ("_b9", "")]);
        s.fingerprint = "f".repeat(5000);
        IntakeLimits::default().admit(&mut s).unwrap();
        assert!(s.fingerprint.starts_with(key::DIGEST_PREFIX));
        assert!(s.id().len() < key::MAX_KEY_BYTES);
    }
}
