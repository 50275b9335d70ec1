//! Applying the rule engine's decisions to stored incidents.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::{EventNote, Incident, SYSTEM, State};
use crate::dispatch;
use crate::plan::Plan;
use crate::rules::plan::TemplateContext;
use crate::rules::{Decision, Rule};
use crate::signal::Labels;
use crate::store::{Opened, Store, StoreError};
use crate::telemetry::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum IncidentError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("incident {id}: cannot go from {from} to {to}")]
    InvalidTransition { id: String, from: State, to: State },
}

/// What the caller knows of a new incident.
#[derive(Debug)]
pub struct NewIncident<'a> {
    pub rule: &'a Arc<Rule>,
    pub group_key: &'a str,
    pub labels: &'a Labels,
    pub signals: &'a [String],
    pub at: DateTime<Utc>,
}

#[derive(Clone)]
pub struct Incidents {
    store: Store,
    metrics: Metrics,
    /// The global dry-run switch; rules can also ask for dry-run.
    dry_run: bool,
}

impl Incidents {
    pub fn new(store: Store, metrics: Metrics, dry_run: bool) -> Incidents {
        Incidents {
            store,
            metrics,
            dry_run,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Sets the open-incident gauge from the store (after a restart).
    pub async fn sync_gauges(&self) -> Result<(), StoreError> {
        self.metrics.incidents_open.reset();
        for (scenario, n) in self.store.open_counts().await? {
            self.metrics
                .incidents_open
                .with_label_values(&[&scenario])
                .set(n);
        }
        Ok(())
    }

    pub async fn apply(&self, decision: Decision) -> Result<(), IncidentError> {
        match decision {
            Decision::Open {
                rule,
                group_key,
                labels,
                signals,
                at,
            } => {
                self.open(NewIncident {
                    rule: &rule,
                    group_key: &group_key,
                    labels: &labels,
                    signals: &signals,
                    at,
                })
                .await?;
            }
            Decision::Attach {
                group_key,
                signals,
                at,
            } => {
                if let Some(inc) = self.store.open_incident_for(&group_key).await? {
                    self.attach(&inc, &signals, at).await?;
                }
            }
            Decision::Close {
                group_key,
                at,
                reason,
            } => {
                if let Some(inc) = self.store.open_incident_for(&group_key).await? {
                    self.close(&inc, at, &reason).await?;
                }
            }
        }
        Ok(())
    }

    /// The one way an incident's state changes: checked against the
    /// lifecycle, persisted with its event (and a version check) before the
    /// caller may act on it.
    pub async fn transition(
        &self,
        inc: &Incident,
        to: State,
        closed_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
        note: EventNote,
    ) -> Result<Incident, IncidentError> {
        if inc.state != to && !inc.state.can_become(to) {
            return Err(IncidentError::InvalidTransition {
                id: inc.id.clone(),
                from: inc.state,
                to,
            });
        }
        let updated = self
            .store
            .update_incident(inc, to, None, closed_at, at, &note)
            .await?;
        if inc.state != to {
            self.metrics
                .incident_transitions
                .with_label_values(&[to.as_str()])
                .inc();
            tracing::info!(incident = %inc.id, from = %inc.state, to = %to, actor = %note.actor, reason = %note.reason, "incident transition");
        }
        Ok(updated)
    }

    pub async fn open(&self, new: NewIncident<'_>) -> Result<Incident, IncidentError> {
        let rule = new.rule;
        let incident = Incident {
            id: uuid::Uuid::now_v7().to_string(),
            rule: rule.name.clone(),
            scenario: rule.scenario.clone(),
            severity: rule.severity.clone(),
            group_key: new.group_key.to_owned(),
            group_labels: new.labels.clone(),
            state: State::Detected,
            parent_id: None,
            plan: Plan::default(),
            detected_at: new.at,
            updated_at: new.at,
            closed_at: None,
            version: 0,
        };
        let note = EventNote::new("detected", SYSTEM, format!("rule {} matched", rule.name))
            .with_data(json!({
                "rule": rule.name,
                "rule_origin": rule.origin,
                "group": new.labels,
                "signals": new.signals,
            }));
        let inc = match self.store.open_incident(&incident, &note).await? {
            Opened::Created(inc) => inc,
            Opened::Existing(inc) => {
                self.attach(&inc, new.signals, new.at).await?;
                return Ok(inc);
            }
        };
        self.store
            .attach_signals(&inc.id, new.signals, new.at)
            .await?;
        self.metrics
            .incidents_total
            .with_label_values(&[&inc.scenario])
            .inc();
        self.metrics
            .incidents_open
            .with_label_values(&[&inc.scenario])
            .inc();
        tracing::warn!(incident = %inc.id, rule = %inc.rule, scenario = %inc.scenario, group = %inc.group_key, signals = new.signals.len(), "incident detected");
        self.plan(inc, rule).await
    }

    async fn plan(&self, inc: Incident, rule: &Rule) -> Result<Incident, IncidentError> {
        let ctx = TemplateContext {
            incident_id: &inc.id,
            rule: &inc.rule,
            scenario: &inc.scenario,
            severity: &inc.severity,
            labels: &inc.group_labels,
        };
        let plan = match rule.plan.render(&ctx) {
            Ok(plan) => plan,
            Err(e) => {
                let note = EventNote::new(
                    "plan_failed",
                    SYSTEM,
                    format!("plan could not be built: {e}"),
                );
                return self
                    .transition(&inc, State::Failed, None, inc.detected_at, note)
                    .await;
            }
        };
        let note = EventNote::new("planned", SYSTEM, format!("{} step(s)", plan.steps.len()))
            .with_data(json!({ "plan": plan }));
        let planned = self
            .store
            .update_incident(
                &inc,
                State::Planned,
                Some(&plan),
                None,
                inc.detected_at,
                &note,
            )
            .await?;
        self.metrics
            .incident_transitions
            .with_label_values(&[State::Planned.as_str()])
            .inc();
        self.dispatch_dry_run(planned, rule).await
    }

    async fn dispatch_dry_run(
        &self,
        inc: Incident,
        rule: &Rule,
    ) -> Result<Incident, IncidentError> {
        let why = if self.dry_run {
            "dry-run: global dispatch.dry_run is on"
        } else if rule.dry_run {
            "dry-run: rule asks for dry_run"
        } else {
            "dry-run: this build has no AWS dispatcher"
        };
        let at = inc.detected_at;
        for (i, step) in inc.plan.steps.iter().enumerate() {
            let what = dispatch::describe(step);
            tracing::info!(incident = %inc.id, step = i, idempotency_key = %step.idempotency_key, "dry-run: would run {what}");
            let note = EventNote::new("step_dry_run", SYSTEM, format!("would run {what}"))
                .with_data(json!({ "index": i, "step": step }));
            self.store.append_event(&inc.id, at, &note).await?;
            self.metrics
                .plan_steps
                .with_label_values(&["dry_run"])
                .inc();
        }
        self.transition(
            &inc,
            State::Suppressed,
            None,
            at,
            EventNote::new("suppressed", SYSTEM, why),
        )
        .await
    }

    async fn attach(
        &self,
        inc: &Incident,
        signals: &[String],
        at: DateTime<Utc>,
    ) -> Result<(), IncidentError> {
        self.store.attach_signals(&inc.id, signals, at).await?;
        let note = EventNote::new(
            "signals_attached",
            SYSTEM,
            format!("{} new signal(s)", signals.len()),
        )
        .with_data(json!({ "signals": signals }));
        self.store.append_event(&inc.id, at, &note).await?;
        Ok(())
    }

    /// The evidence is gone: close the incident, and cancel it if nothing
    /// has been approved or run yet.
    async fn close(
        &self,
        inc: &Incident,
        at: DateTime<Utc>,
        reason: &str,
    ) -> Result<Incident, IncidentError> {
        let to = match inc.state {
            State::Detected | State::Planned | State::AwaitingApproval => State::Cancelled,
            other => other,
        };
        let note = EventNote::new("evidence_resolved", SYSTEM, reason);
        let closed = self.transition(inc, to, Some(at), at, note).await?;
        self.metrics
            .incidents_open
            .with_label_values(&[&inc.scenario])
            .dec();
        tracing::info!(incident = %inc.id, state = %closed.state, "incident closed: {reason}");
        Ok(closed)
    }
}
