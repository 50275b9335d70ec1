//! Applying the rule engine's decisions: open (and plan), attach evidence,
//! absorb into a larger incident, close when the evidence is gone.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::{EventNote, Incident, IncidentError, Incidents, SYSTEM, State};
use crate::catalogue::Catalogue;
use crate::plan::Plan;
use crate::rules::plan::TemplateContext;
use crate::rules::{Decision, Rule};
use crate::signal::Labels;
use crate::store::Opened;

/// What the engine knows of a new incident.
#[derive(Debug)]
pub struct NewIncident<'a> {
    pub rule: &'a Arc<Rule>,
    pub key: &'a str,
    pub labels: &'a Labels,
    pub signals: &'a [String],
    pub services: &'a BTreeSet<String>,
    pub parent: Option<&'a str>,
    pub at: DateTime<Utc>,
}

/// The event that records new evidence on an incident.
fn attached(signals: &[String]) -> EventNote {
    EventNote::new(
        "signals_attached",
        SYSTEM,
        format!("{} signal(s)", signals.len()),
    )
    .with_data(json!({ "signals": signals }))
}

impl Incidents {
    pub async fn apply(
        &self,
        decision: Decision,
        catalogue: &Catalogue,
    ) -> Result<(), IncidentError> {
        match decision {
            Decision::Open {
                rule,
                key,
                labels,
                signals,
                services,
                parent,
                at,
            } => {
                let new = NewIncident {
                    rule: &rule,
                    key: &key,
                    labels: &labels,
                    signals: &signals,
                    services: &services,
                    parent: parent.as_deref(),
                    at,
                };
                self.open(new, catalogue).await?;
            }
            Decision::Attach { key, signals, at } => {
                if let Some(inc) = self.store.open_incident_for(&key).await? {
                    self.attach(&inc, &signals, at).await?;
                }
            }
            Decision::Absorb { key, parent, at } => {
                if let (Some(child), Some(parent)) = (
                    self.store.open_incident_for(&key).await?,
                    self.store.open_incident_for(&parent).await?,
                ) {
                    self.absorb(child, &parent, at).await?;
                }
            }
            Decision::Expired { key, signals, at } => {
                if let Some(inc) = self.store.open_incident_for(&key).await? {
                    let note = EventNote::new(
                        "signals_expired",
                        SYSTEM,
                        format!(
                            "{} firing signal(s) not re-sent within signal_ttl; taken as resolved",
                            signals.len()
                        ),
                    )
                    .with_data(json!({ "signals": signals }));
                    self.store.append_event(&inc.id, at, &note).await?;
                }
            }
            Decision::Close { key, at, reason } => {
                if let Some(inc) = self.store.open_incident_for(&key).await? {
                    self.close(&inc, at, &reason).await?;
                }
            }
        }
        Ok(())
    }

    pub async fn open(
        &self,
        new: NewIncident<'_>,
        catalogue: &Catalogue,
    ) -> Result<Incident, IncidentError> {
        let rule = new.rule;
        let parent = match new.parent {
            Some(key) => self.store.open_incident_for(key).await?,
            None => None,
        };
        let incident = Incident {
            id: uuid::Uuid::now_v7().to_string(),
            rule: rule.name.clone(),
            scenario: rule.scenario.clone(),
            severity: rule.severity.clone(),
            group_key: new.key.to_owned(),
            group_labels: new.labels.clone(),
            state: State::Detected,
            parent_id: parent.as_ref().map(|p| p.id.clone()),
            plan: Plan::default(),
            services: Vec::new(),
            rto_deadline: None,
            approval_deadline: None,
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
                "services": new.services,
            }));
        let inc = match self.store.open_incident(&incident, &note).await? {
            Opened::Created(inc) => inc,
            Opened::Existing(inc) => {
                self.attach(&inc, new.signals, new.at).await?;
                return self.resume(inc, rule, catalogue).await;
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
        if let Some(parent) = parent {
            // Absorbed from the start: its evidence joins the larger incident
            // and it never acts alone.
            self.attach(&parent, new.signals, new.at).await?;
            let note = EventNote::new(
                "absorbed",
                SYSTEM,
                format!("absorbed by incident {} ({})", parent.id, parent.scenario),
            )
            .with_data(json!({ "parent": parent.id }));
            return self.transition(&inc, State::Suppressed, new.at, note).await;
        }
        self.plan(inc, rule, new.services, catalogue).await
    }

    pub(super) async fn plan(
        &self,
        inc: Incident,
        rule: &Rule,
        affected: &BTreeSet<String>,
        catalogue: &Catalogue,
    ) -> Result<Incident, IncidentError> {
        let ctx = TemplateContext {
            incident_id: &inc.id,
            rule: &inc.rule,
            scenario: &inc.scenario,
            severity: &inc.severity,
            labels: &inc.group_labels,
            services: &[],
            service: None,
            dr_region: None,
        };
        let at = inc.detected_at;
        let built = match rule.plan.render(&ctx, catalogue, affected) {
            Ok(b) => b,
            Err(e) => {
                let note = EventNote::new(
                    "plan_failed",
                    SYSTEM,
                    format!("plan could not be built: {e}"),
                );
                return self.transition(&inc, State::Failed, at, note).await;
            }
        };
        let rto_deadline = built
            .rto
            .map(|d| crate::primitives::duration::after(inc.detected_at, d));
        let note = EventNote::new(
            "planned",
            SYSTEM,
            format!("{} step(s)", built.plan.steps.len()),
        )
        .with_data(json!({
            "plan": built.plan,
            "services": built.services,
            "rto_deadline": rto_deadline,
        }));
        let after = Incident {
            state: State::Planned,
            plan: built.plan,
            services: built.services,
            rto_deadline,
            ..inc.clone()
        };
        let planned = self.save(&inc, after, at, note).await?;
        self.admit(planned, rule, catalogue).await
    }

    /// Carries on an incident whose opening was cut short (the store went
    /// away between two of its writes, or the leader died): one still
    /// `detected` is planned, one `planned` is put to the guard or, if the
    /// guard already admitted it, taken on to approval. Anything further
    /// along is left as it is. Applying the same decision twice is
    /// therefore safe, which is what lets the pipeline retry it.
    pub async fn resume(
        &self,
        inc: Incident,
        rule: &Rule,
        catalogue: &Catalogue,
    ) -> Result<Incident, IncidentError> {
        match inc.state {
            State::Detected if inc.parent_id.is_some() => {
                let note = EventNote::new("absorbed", SYSTEM, "absorbed by a larger incident");
                let at = inc.detected_at;
                self.transition(&inc, State::Suppressed, at, note).await
            }
            State::Detected => {
                let affected: BTreeSet<String> = self
                    .store
                    .events(&inc.id)
                    .await?
                    .first()
                    .and_then(|e| serde_json::from_value(e.data["services"].clone()).ok())
                    .unwrap_or_default();
                tracing::warn!(incident = %inc.id, "resuming an incident left detected");
                self.plan(inc, rule, &affected, catalogue).await
            }
            State::Planned => {
                let admitted = self
                    .store
                    .events(&inc.id)
                    .await?
                    .iter()
                    .any(|e| e.kind == "admitted");
                tracing::warn!(incident = %inc.id, admitted, "resuming an incident left planned");
                if admitted {
                    self.after_admission(inc, rule, catalogue).await
                } else {
                    self.admit(inc, rule, catalogue).await
                }
            }
            _ => Ok(inc),
        }
    }

    pub(super) async fn attach(
        &self,
        inc: &Incident,
        signals: &[String],
        at: DateTime<Utc>,
    ) -> Result<(), IncidentError> {
        let attachment = (inc.id.clone(), signals.to_vec(), at, attached(signals));
        Ok(self.store.attach_with_events(&[attachment]).await?)
    }

    /// New evidence for the open incidents of these keys (the engine's
    /// `Attach` decisions of one batch), written in one transaction. A key
    /// whose incident has closed meanwhile is skipped, as a lone `Attach`
    /// would be. Safe to apply twice.
    pub async fn attach_all(
        &self,
        attaches: &[(String, Vec<String>, DateTime<Utc>)],
    ) -> Result<(), IncidentError> {
        let mut attachments = Vec::with_capacity(attaches.len());
        for (key, signals, at) in attaches {
            if let Some(inc) = self.store.open_incident_for(key).await? {
                attachments.push((inc.id, signals.clone(), *at, attached(signals)));
            }
        }
        if !attachments.is_empty() {
            self.store.attach_with_events(&attachments).await?;
        }
        Ok(())
    }

    /// A larger incident opened over this one: link it, move its evidence
    /// over, and stop it from acting if it has not started.
    pub(super) async fn absorb(
        &self,
        child: Incident,
        parent: &Incident,
        at: DateTime<Utc>,
    ) -> Result<Incident, IncidentError> {
        let signals: Vec<String> = self
            .store
            .incident_signals(&child.id)
            .await?
            .iter()
            .map(|s| s.id())
            .collect();
        self.attach(parent, &signals, at).await?;
        let to = match child.state {
            State::Detected | State::Planned | State::AwaitingApproval => State::Suppressed,
            // Already approved or running: it cannot be taken back, only linked.
            other => other,
        };
        let note = EventNote::new(
            "absorbed",
            SYSTEM,
            format!("absorbed by incident {} ({})", parent.id, parent.scenario),
        )
        .with_data(json!({ "parent": parent.id }));
        let after = Incident {
            state: to,
            parent_id: Some(parent.id.clone()),
            ..child.clone()
        };
        self.save(&child, after, at, note).await
    }

    /// The evidence is gone: close the incident, and cancel it if nothing
    /// has been approved or run yet.
    pub(super) async fn close(
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
        let after = Incident {
            state: to,
            closed_at: Some(at),
            ..inc.clone()
        };
        let closed = self.save(inc, after, at, note).await?;
        self.metrics
            .incidents_open
            .with_label_values(&[&inc.scenario])
            .dec();
        tracing::info!(incident = %inc.id, state = %closed.state, "incident closed: {reason}");
        Ok(closed)
    }
}
