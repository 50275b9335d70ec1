//! Drills (game days): a synthetic signal set, derived from a rule and the
//! catalogue, that makes the rule's conditions hold for the given labels.
//! It goes through the real pipeline (recorded, correlated, planned, held,
//! approved by people, dispatched), so a drill rehearses the whole path.
//!
//! Every signal carries the reserved [`DRILL_LABEL`], which the sources
//! refuse: the engine keys a drill's groups and incident apart from real
//! ones, precedence never crosses between the two, and the incident is a
//! drill end to end (its plan runs drill runbooks or is recorded).
//!
//! The set is derived, not scripted: one signal per alert the conditions
//! name (`alerts`, the `absent` heartbeat), times as many members as
//! `count` and `distinct` ask for; label values from the drill's labels,
//! the rule's matchers and, for `service`, the catalogue's services that
//! have a runbook for the scenario. Before anything is recorded, the set
//! is run through a scratch engine with the rules in force: a set that
//! would not open the incident (a CEL condition no derivation satisfies)
//! is refused rather than sent.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::catalogue::Catalogue;
use crate::incident::{Declaration, DeclareError, rule_for};
use crate::plan::DrillDispatch;
use crate::rules::engine::{Decision, Engine, SERVICE_LABEL, incident_key};
use crate::rules::matcher::Op;
use crate::rules::{Rule, RuleSet};
use crate::signal::{Change, DRILL_LABEL, Labels, Signal, SignalEvent, Status, fingerprint_labels};

/// Config `drills`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrillsConfig {
    /// `drill_runbook` (default): catalogue steps run their runbook's
    /// `drill:` variant, the rest is recorded; `record`: nothing is called.
    #[serde(default)]
    pub dispatch: DrillDispatch,
}

/// The source of a drill's signals when its rule names none.
const DEFAULT_SOURCE: &str = "alertmanager";
/// The name of a drill's signals when the rule asks for no name.
const DEFAULT_NAME: &str = "DrillSignal";

/// A derived drill, ready to record.
#[derive(Debug, Clone)]
pub struct Drill {
    pub id: String,
    pub rule: Arc<Rule>,
    /// The incident key the drill opens (the real key plus the drill mark).
    pub key: String,
    pub signals: Vec<Signal>,
    /// How long after recording the incident opens: the rule's absence
    /// time for a heartbeat drill, else zero.
    pub opens_after: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    #[error(transparent)]
    Rule(#[from] DeclareError),
    #[error("cannot derive a drill for rule {rule}: {why}")]
    Underivable { rule: String, why: String },
}

/// Derives the drill's signal set for `d` under `rules`, as of `now`.
pub fn derive(
    d: &Declaration,
    rules: &Arc<RuleSet>,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<Drill, DrillError> {
    let rule = Arc::clone(rule_for(d, rules)?);
    let id = uuid::Uuid::now_v7().to_string();
    let underivable = |why: String| DrillError::Underivable {
        rule: rule.name.clone(),
        why,
    };
    let mut base = d.labels.clone();
    base.insert(DRILL_LABEL.to_owned(), "true".to_owned());
    let source = rule
        .source
        .clone()
        .or_else(|| fixed(&rule, "__source__"))
        .unwrap_or_else(|| DEFAULT_SOURCE.to_owned());
    let names = names(&rule);
    let varied = variations(&rule, &base, &rules.catalogue).map_err(underivable)?;
    let mut signals = Vec::new();
    for member in &varied {
        for name in &names {
            let mut labels = base.clone();
            labels.extend(member.iter().map(|(k, v)| (k.clone(), v.clone())));
            if source == DEFAULT_SOURCE {
                labels.insert("alertname".to_owned(), name.clone());
            }
            fill_matchers(&rule, &mut labels).map_err(underivable)?;
            if !rule.matches(&source, name, &labels) {
                return Err(underivable(format!(
                    "signal {name} {labels:?} does not match the rule's matchers"
                )));
            }
            let annotations: Labels = [
                ("drill_id", id.as_str()),
                ("drill_by", actor),
                ("drill_reason", d.reason.as_str()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
            let mut keyed = labels.clone();
            keyed.insert("__name__".to_owned(), name.clone());
            signals.push(Signal {
                source: source.clone(),
                fingerprint: format!("drill-{}", fingerprint_labels(&keyed)),
                name: name.clone(),
                labels,
                annotations,
                status: Status::Firing,
                starts_at: now,
                ends_at: None,
                received_at: now,
            });
        }
    }
    let key = incident_key(&rule, &base);
    let opens_after =
        opens(rules, &signals, &key, rule.when.absent.as_ref(), now).ok_or_else(|| {
            underivable(format!(
                "the derived signals ({}) would not open {key} (a CEL condition?)",
                signals.len()
            ))
        })?;
    Ok(Drill {
        id,
        rule,
        key,
        signals,
        opens_after,
    })
}

/// The signals that end a drill: each resolved, except the heartbeats of
/// an absence rule, which beat again (a heartbeat's silence ends when it
/// comes back, not when it resolves).
pub fn ending(rule: &Rule, signals: &[Signal], now: DateTime<Utc>) -> Vec<Signal> {
    signals
        .iter()
        .map(|s| {
            let beat = rule
                .when
                .absent
                .as_ref()
                .is_some_and(|a| a.is_beat(&s.name));
            Signal {
                status: if beat {
                    Status::Firing
                } else {
                    Status::Resolved
                },
                ends_at: (!beat).then_some(now),
                received_at: now,
                ..s.clone()
            }
        })
        .collect()
}

/// When the incident opens if the signals arrive at `now`, by a scratch
/// engine over the rules in force: at once, or once the heartbeat has
/// been silent for `absent.for`; `None` if never.
fn opens(
    rules: &Arc<RuleSet>,
    signals: &[Signal],
    key: &str,
    absent: Option<&crate::rules::model::Absent>,
    now: DateTime<Utc>,
) -> Option<Duration> {
    let mut engine = Engine::new(Arc::clone(rules));
    let events: Vec<SignalEvent> = signals
        .iter()
        .map(|s| SignalEvent {
            signal: s.clone(),
            change: Change::Fired,
        })
        .collect();
    let opened = |ds: Vec<Decision>| {
        ds.iter()
            .any(|d| matches!(d, Decision::Open { key: k, .. } if k == key))
    };
    if opened(engine.on_batch(&events, now)) {
        return Some(Duration::ZERO);
    }
    let after = absent?.after;
    // A moment past the silence: the engine needs it strictly past.
    let wait = after + Duration::from_secs(1);
    let later = now + chrono::Duration::from_std(wait).ok()?;
    opened(engine.tick(later)).then_some(after)
}

/// The value an equality matcher fixes for `label`, if one does.
fn fixed(rule: &Rule, label: &str) -> Option<String> {
    rule.matchers
        .iter()
        .find(|m| m.name == label && m.op == Op::Eq)
        .map(|m| m.value.clone())
}

/// The names the conditions need: every `alerts` name and the absence
/// heartbeat; else what the matchers fix; else a generic one.
fn names(rule: &Rule) -> Vec<String> {
    let mut names = rule.when.alerts.clone();
    if let Some(beat) = rule.when.absent.as_ref().and_then(|a| a.alert.clone())
        && !names.contains(&beat)
    {
        names.push(beat);
    }
    if names.is_empty() {
        let literal = ["__name__", "alertname"].iter().find_map(|l| {
            rule.matchers
                .iter()
                .find(|m| m.name == *l && matches!(m.op, Op::Eq | Op::Re))
                .and_then(first_value)
        });
        names.push(literal.unwrap_or_else(|| DEFAULT_NAME.to_owned()));
    }
    names
}

/// A value an `=` or `=~` matcher accepts: its value, or the first
/// alternative of a regex that it accepts.
fn first_value(m: &crate::rules::matcher::Matcher) -> Option<String> {
    match m.op {
        Op::Eq => Some(m.value.clone()),
        Op::Re => m
            .value
            .split('|')
            .map(|a| a.trim_end_matches(".*").to_owned())
            .find(|a| m.matches_value(a)),
        Op::Ne | Op::NotRe => None,
    }
}

/// The members' varying labels: as many members as `count` and every
/// `distinct` ask for, each `distinct` label with a value of its own per
/// member (services from the catalogue, others numbered). A rule that
/// wants a `service` named, without counting them, gets the catalogue's.
fn variations(rule: &Rule, base: &Labels, catalogue: &Catalogue) -> Result<Vec<Labels>, String> {
    let mut members = rule.when.count.unwrap_or(1).max(1);
    let mut values: Vec<(String, Vec<String>)> = Vec::new();
    for (label, &n) in &rule.when.distinct {
        if base.contains_key(label) {
            if n > 1 {
                return Err(format!(
                    "it needs {n} distinct values of {label:?}, which the drill's labels fix"
                ));
            }
            continue;
        }
        let vals = if label == SERVICE_LABEL {
            services(rule, catalogue)
        } else {
            (1..=n).map(|i| format!("drill-{label}-{i}")).collect()
        };
        if vals.len() < n {
            return Err(format!(
                "it needs {n} distinct services; the catalogue has {}",
                vals.len()
            ));
        }
        members = members.max(n);
        values.push((label.clone(), vals));
    }
    let wants_service = !base.contains_key(SERVICE_LABEL)
        && !rule.when.distinct.contains_key(SERVICE_LABEL)
        && rule
            .matchers
            .iter()
            .any(|m| m.name == SERVICE_LABEL && !m.matches(&Labels::new()));
    if wants_service {
        let vals = services(rule, catalogue);
        if vals.is_empty() {
            return Err("it needs a service and the catalogue has none".to_owned());
        }
        values.push((SERVICE_LABEL.to_owned(), vals));
    }
    Ok((0..members)
        .map(|i| {
            values
                .iter()
                .map(|(label, vals)| (label.clone(), vals[i % vals.len()].clone()))
                .collect()
        })
        .collect())
}

/// Catalogue services for a drill: those with a runbook for the scenario
/// first (the ones the plan recovers), then the rest, each by name.
fn services(rule: &Rule, catalogue: &Catalogue) -> Vec<String> {
    let mut names: Vec<(bool, &String)> = catalogue
        .services
        .iter()
        .map(|(name, s)| (!s.runbooks.contains_key(&rule.scenario), name))
        .collect();
    names.sort();
    names.into_iter().map(|(_, n)| n.clone()).collect()
}

/// Sets what the matchers require and the labels do not yet give: an
/// equality's value, a regex's first literal alternative, a placeholder
/// for a `!=""`.
fn fill_matchers(rule: &Rule, labels: &mut Labels) -> Result<(), String> {
    for m in &rule.matchers {
        if m.name.starts_with("__") || m.matches(labels) {
            continue;
        }
        let value = match m.op {
            Op::Eq | Op::Re => first_value(m),
            Op::Ne | Op::NotRe => Some(format!("drill-{}", m.name)),
        };
        match value {
            Some(v) => {
                labels.insert(m.name.clone(), v);
            }
            None => return Err(format!("no value satisfies {m}")),
        }
        if !m.matches(labels) {
            return Err(format!("the drill's labels conflict with {m}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped rules and catalogue: drills derive from what is deployed.
    fn shipped() -> Arc<RuleSet> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let catalogue = root.join("config/services.yaml");
        Arc::new(RuleSet::load(&[root.join("rules")], Some(&catalogue)).unwrap())
    }

    fn declaration(scenario: &str, labels: &[(&str, &str)]) -> Declaration {
        Declaration {
            scenario: scenario.into(),
            rule: None,
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            reason: "game day".into(),
        }
    }

    #[test]
    fn zone_region_and_data_loss_drills_derive_from_the_shipped_rules() {
        let rules = shipped();
        let now = Utc::now();
        let zone = [("region", "ap-northeast-2"), ("zone", "ap-northeast-2a")];
        let d = derive(&declaration("az_failure", &zone), &rules, "alice", now).unwrap();
        assert_eq!(d.rule.name, "az-failure");
        assert_eq!(d.opens_after, Duration::ZERO);
        let services: std::collections::BTreeSet<&str> = d
            .signals
            .iter()
            .map(|s| s.labels[SERVICE_LABEL].as_str())
            .collect();
        assert_eq!(services.len(), 3, "distinct: {{service: 3}}");
        for s in &d.signals {
            assert_eq!(s.labels[DRILL_LABEL], "true");
            assert_eq!(s.labels["severity"], "critical");
            assert_eq!(s.annotations["drill_by"], "alice");
        }
        assert!(d.key.ends_with(r#",__drill__="true"}"#), "{}", d.key);

        let region = [("region", "ap-northeast-2")];
        let d = derive(&declaration("region_outage", &region), &rules, "bob", now).unwrap();
        assert_eq!(d.rule.name, "region-outage-heartbeat");
        assert_eq!(d.signals.len(), 1);
        assert_eq!(d.signals[0].name, "Watchdog");
        assert_eq!(
            d.opens_after,
            Duration::from_secs(120),
            "absent: {{for: 2m}}"
        );
        let ended = ending(&d.rule, &d.signals, now);
        assert_eq!(
            ended[0].status,
            Status::Firing,
            "a heartbeat ends by beating"
        );

        let svc = [("region", "ap-northeast-2"), ("service", "payment")];
        let d = derive(&declaration("data_loss", &svc), &rules, "carol", now).unwrap();
        assert_eq!(d.signals[0].name, "DataCorruptionDetected");
        assert_eq!(ending(&d.rule, &d.signals, now)[0].status, Status::Resolved);
    }

    #[test]
    fn refusals_name_the_problem() {
        let rules = shipped();
        let now = Utc::now();
        let forged = [("region", "r"), ("zone", "z"), (DRILL_LABEL, "false")];
        assert!(matches!(
            derive(&declaration("az_failure", &forged), &rules, "a", now),
            Err(DrillError::Rule(DeclareError::ReservedLabel))
        ));
        assert!(matches!(
            derive(
                &declaration("az_failure", &[("region", "r")]),
                &rules,
                "a",
                now
            ),
            Err(DrillError::Rule(DeclareError::MissingLabels { .. }))
        ));
        assert!(matches!(
            derive(&declaration("meteor", &[]), &rules, "a", now),
            Err(DrillError::Rule(DeclareError::UnknownScenario { .. }))
        ));
    }
}
