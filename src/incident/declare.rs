//! An operator declaring an incident by hand (a known outage nothing
//! alerted on, a drill). It takes the path a detected incident takes: the
//! rule's plan over the catalogue with the given labels as group labels,
//! its hold, the guard and interlocks, and its approval policy. Only the
//! first event differs: `declared`, by the operator, in place of
//! `detected`. The declaration is the incident's evidence, so votes are not
//! refused for want of firing alerts.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use super::{Incident, IncidentError, Incidents, NewIncident};
use crate::rules::engine::{SERVICE_LABEL, incident_key};
use crate::rules::{Rule, RuleSet};
use crate::signal::{DRILL_LABEL, Labels};

/// What an operator declares.
#[derive(Debug, Clone, Default)]
pub struct Declaration {
    pub scenario: String,
    /// The rule whose plan and policy apply; else the first of the
    /// scenario, in rule-file order.
    pub rule: Option<String>,
    pub labels: Labels,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DeclareError {
    #[error("unknown scenario {scenario:?}; known: {}", known.join(", "))]
    UnknownScenario {
        scenario: String,
        known: Vec<String>,
    },
    #[error("no rule {rule:?} for scenario {scenario:?}; its rules: {}", known.join(", "))]
    UnknownRule {
        rule: String,
        scenario: String,
        known: Vec<String>,
    },
    #[error("rule {rule} groups by {}; missing label(s): {}", group_by.join(", "), missing.join(", "))]
    MissingLabels {
        rule: String,
        group_by: Vec<String>,
        missing: Vec<String>,
    },
    /// Only a drill's own signals carry the drill label: a declaration
    /// with it would be a real incident dressed as a drill (or the other
    /// way round), outside the drill's own checks.
    #[error("label {DRILL_LABEL:?} is set only by a drill (POST /api/v1/drills)")]
    ReservedLabel,
    #[error("incident {} ({}) is already open for {}", .0.id, .0.state, .0.group_key)]
    AlreadyOpen(Box<Incident>),
    #[error(transparent)]
    Incident(#[from] IncidentError),
}

/// The rule a declaration names, or the first of its scenario.
fn pick<'a>(d: &Declaration, rules: &'a RuleSet) -> Result<&'a std::sync::Arc<Rule>, DeclareError> {
    let of_scenario: Vec<&std::sync::Arc<Rule>> = rules
        .rules
        .iter()
        .filter(|r| r.scenario == d.scenario)
        .collect();
    if of_scenario.is_empty() {
        let mut known: Vec<String> = rules.rules.iter().map(|r| r.scenario.clone()).collect();
        known.sort();
        known.dedup();
        return Err(DeclareError::UnknownScenario {
            scenario: d.scenario.clone(),
            known,
        });
    }
    match &d.rule {
        None => Ok(of_scenario[0]),
        Some(name) => of_scenario
            .iter()
            .find(|r| &r.name == name)
            .copied()
            .ok_or_else(|| DeclareError::UnknownRule {
                rule: name.clone(),
                scenario: d.scenario.clone(),
                known: of_scenario.iter().map(|r| r.name.clone()).collect(),
            }),
    }
}

/// The rule a declaration (or a drill) names, or the first of its
/// scenario, once its labels give every `group_by` label a value.
pub fn rule_for<'a>(
    d: &Declaration,
    rules: &'a RuleSet,
) -> Result<&'a std::sync::Arc<Rule>, DeclareError> {
    if d.labels.contains_key(DRILL_LABEL) {
        return Err(DeclareError::ReservedLabel);
    }
    let rule = pick(d, rules)?;
    let missing: Vec<String> = rule
        .group_by
        .iter()
        .filter(|l| d.labels.get(*l).is_none_or(|v| v.is_empty()))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Err(DeclareError::MissingLabels {
            rule: rule.name.clone(),
            group_by: rule.group_by.clone(),
            missing,
        });
    }
    Ok(rule)
}

impl Incidents {
    /// Opens the declared incident and takes it as far as a detected one
    /// would go now (planned and held, awaiting approval, approved, or
    /// suppressed by the guard). Refused if an incident with its key is
    /// already open: that one is the incident, and approving it is the way.
    pub async fn declare(
        &self,
        d: &Declaration,
        actor: &str,
        rules: &RuleSet,
        at: DateTime<Utc>,
    ) -> Result<Incident, DeclareError> {
        let rule = rule_for(d, rules)?;
        let key = incident_key(rule, &d.labels);
        if let Some(open) = self
            .store
            .open_incident_for(&key)
            .await
            .map_err(IncidentError::from)?
        {
            return Err(DeclareError::AlreadyOpen(Box::new(open)));
        }
        // As the engine does for alerts: the `service` label names the
        // affected service, for plans over affected services.
        let services: BTreeSet<String> = d.labels.get(SERVICE_LABEL).cloned().into_iter().collect();
        let new = NewIncident {
            rule,
            key: &key,
            labels: &d.labels,
            signals: &[],
            services: &services,
            parent: None,
            at,
            declared: Some((actor, &d.reason)),
        };
        let inc = self.open(new, rules).await?;
        tracing::warn!(incident = %inc.id, rule = %rule.name, actor, "incident declared by hand");
        Ok(inc)
    }
}
