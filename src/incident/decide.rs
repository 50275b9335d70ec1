//! Applying the rule engine's decisions: open (and plan), attach evidence,
//! absorb into a larger incident, close when the evidence is gone.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::{EventNote, Incident, IncidentError, Incidents, SYSTEM, State};
use crate::catalogue::Catalogue;
use crate::plan::Plan;
use crate::rules::{Decision, Rule, RuleSet};
use crate::signal::{Labels, is_drill};
use crate::store::Opened;
use crate::telemetry::drill_label;

/// An `Attach` decision: the incident's key, the new signals, the services
/// they name, and when.
pub type Attachment = (String, Vec<String>, BTreeSet<String>, DateTime<Utc>);

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
    /// An operator's declaration (who, and why) instead of a detection.
    pub declared: Option<(&'a str, &'a str)>,
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
    pub async fn apply(&self, decision: Decision, rules: &RuleSet) -> Result<(), IncidentError> {
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
                    declared: None,
                };
                self.open(new, rules).await?;
            }
            Decision::Attach {
                key,
                signals,
                services,
                at,
            } => {
                self.attach_all(&[(key, signals, services, at)], rules)
                    .await?;
            }
            Decision::Absorb { key, parent, at } => {
                if let (Some(child), Some(parent)) = (
                    self.store.open_incident_for(&key).await?,
                    self.store.open_incident_for(&parent).await?,
                ) {
                    self.absorb(child, parent, at, rules).await?;
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
            Decision::Evidence { key, holds, at } => {
                if let Some(inc) = self.store.open_incident_for(&key).await? {
                    self.note_evidence(&inc, holds, at).await?;
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
        rules: &RuleSet,
    ) -> Result<Incident, IncidentError> {
        let catalogue = &rules.catalogue;
        let rule = new.rule;
        let parent = match new.parent {
            Some(key) => self.store.open_incident_for(key).await?,
            None => None,
        };
        // A parent that ended without acting absorbs nothing more: what it
        // would have absorbed acts on its own (see `release.rs`).
        let parent = match parent {
            Some(p) if self.no_longer_acting(&p).await?.is_none() => Some(p),
            _ => None,
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
            drill: is_drill(new.labels),
            failback_of: None,
        };
        let note = match new.declared {
            None => EventNote::new("detected", SYSTEM, format!("rule {} matched", rule.name)),
            Some((actor, reason)) => EventNote::new(
                "declared",
                actor,
                format!("declared by {actor} for rule {}: {reason}", rule.name),
            ),
        }
        .with_data(json!({
            "rule": rule.name,
            "rule_origin": rule.origin,
            "group": new.labels,
            "signals": new.signals,
            "services": new.services,
            "drill": incident.drill,
        }));
        let inc = match self.store.open_incident(&incident, &note).await? {
            Opened::Created(inc) => inc,
            Opened::Existing(inc) => {
                self.attach(&inc, new.signals, new.at).await?;
                return self.resume(inc, rule, catalogue, new.at).await;
            }
        };
        self.store
            .attach_signals(&inc.id, new.signals, new.at)
            .await?;
        self.metrics
            .incidents_total
            .with_label_values(&[&inc.scenario, drill_label(inc.drill)])
            .inc();
        self.metrics
            .incidents_open
            .with_label_values(&[&inc.scenario, drill_label(inc.drill)])
            .inc();
        tracing::warn!(incident = %inc.id, rule = %inc.rule, scenario = %inc.scenario, group = %inc.group_key, signals = new.signals.len(), "incident detected");
        if let Some(parent) = parent {
            // Absorbed from the start: its evidence joins the larger incident
            // (whose plan may grow to cover it) and it never acts alone.
            let attach = (
                parent.group_key.clone(),
                new.signals.to_vec(),
                new.services.clone(),
                new.at,
            );
            self.attach_all(&[attach], rules).await?;
            let note = EventNote::new(
                "absorbed",
                SYSTEM,
                format!("absorbed by incident {} ({})", parent.id, parent.scenario),
            )
            .with_data(json!({ "parent": parent.id }));
            return self.transition(&inc, State::Suppressed, new.at, note).await;
        }
        self.plan(inc, rule, new.services, catalogue, new.at).await
    }

    /// The services the incident's evidence named when it was detected.
    pub(super) async fn detected_services(
        &self,
        id: &str,
    ) -> Result<BTreeSet<String>, IncidentError> {
        Ok(self
            .store
            .events_page(id, 0, 1)
            .await?
            .first()
            .and_then(|e| serde_json::from_value(e.data["services"].clone()).ok())
            .unwrap_or_default())
    }

    /// Carries on an incident whose opening was cut short (the store went
    /// away between two of its writes, or the leader died): one still
    /// `detected` is planned, one `planned` is put to the guard (unless it
    /// is still on hold) or, if the guard already admitted it, taken on to
    /// approval. Anything further along is left as it is. Applying the same
    /// decision twice is therefore safe, which is what lets the pipeline
    /// retry it.
    pub async fn resume(
        &self,
        inc: Incident,
        rule: &Rule,
        catalogue: &Catalogue,
        now: DateTime<Utc>,
    ) -> Result<Incident, IncidentError> {
        match inc.state {
            State::Detected if inc.parent_id.is_some() => {
                let note = EventNote::new("absorbed", SYSTEM, "absorbed by a larger incident");
                let at = inc.detected_at;
                self.transition(&inc, State::Suppressed, at, note).await
            }
            State::Detected => {
                let affected = self.detected_services(&inc.id).await?;
                tracing::warn!(incident = %inc.id, "resuming an incident left detected");
                let at = inc.detected_at;
                self.plan(inc, rule, &affected, catalogue, at).await
            }
            State::Planned => {
                let events = self.store.events(&inc.id).await?;
                let admitted = super::hold::admitted_since_planned(&events);
                let held_until = super::hold::held_until(&events);
                tracing::info!(incident = %inc.id, admitted = admitted.is_some(), "resuming an incident left planned");
                match (admitted, held_until) {
                    (Some(at), _) => self.after_admission(inc, rule, catalogue, at).await,
                    // Still waiting for a larger scenario; the tick that
                    // ends the hold admits it.
                    (None, Some(until)) if until > now => Ok(inc),
                    (None, Some(_)) => self.admit(inc, rule, catalogue, now).await,
                    (None, None) => {
                        let at = inc.detected_at;
                        self.admit(inc, rule, catalogue, at).await
                    }
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
    /// would be. Services the evidence names that the plan does not cover
    /// yet then grow the plan, if it is not approved yet (see
    /// [`Incidents::grow`]). Safe to apply twice.
    pub async fn attach_all(
        &self,
        attaches: &[Attachment],
        rules: &RuleSet,
    ) -> Result<(), IncidentError> {
        let keys: Vec<&str> = attaches.iter().map(|(key, ..)| key.as_str()).collect();
        let open = self.store.open_incidents_for(&keys).await?;
        let mut attachments = Vec::with_capacity(attaches.len());
        let mut growing = Vec::new();
        for (key, signals, services, at) in attaches {
            if let Some((id, covered)) = open.get(key) {
                if services.iter().any(|s| !covered.contains(s)) {
                    growing.push((id.clone(), services, *at));
                }
                attachments.push((id.clone(), signals.clone(), *at, attached(signals)));
            }
        }
        if !attachments.is_empty() {
            self.store.attach_with_events(&attachments).await?;
        }
        for (id, services, at) in growing {
            // Read again: an earlier one of this batch may have grown it.
            if let Some(inc) = self.store.incident(&id).await? {
                self.grow(inc, services, rules, at).await?;
            }
        }
        Ok(())
    }

    /// A larger incident opened over this one: link it, move its evidence
    /// (and the services it names) over to the parent, and stop it. One
    /// not yet approved never acts; its approval request, if any, is
    /// withdrawn (its message then points at the parent). One approved or
    /// running stops before its next step: a step already started (an SSM
    /// execution) is left to finish, since killing a failover half-way is
    /// worse than letting it end.
    pub(super) async fn absorb(
        &self,
        child: Incident,
        parent: Incident,
        at: DateTime<Utc>,
        rules: &RuleSet,
    ) -> Result<Incident, IncidentError> {
        let signals: Vec<String> = self
            .store
            .incident_signals(&child.id)
            .await?
            .iter()
            .map(|s| s.id())
            .collect();
        let services: BTreeSet<String> = child.services.iter().cloned().collect();
        let attach = (parent.group_key.clone(), signals, services, at);
        self.attach_all(&[attach], rules).await?;
        let (to, why) = match child.state {
            State::Detected | State::Planned => (State::Suppressed, String::new()),
            State::AwaitingApproval => (
                State::Suppressed,
                "; its approval request is withdrawn".to_owned(),
            ),
            State::Approved => (
                State::Suppressed,
                "; approved but not started: nothing of its plan runs".to_owned(),
            ),
            State::Running => (
                State::Suppressed,
                "; stopped before its next step (a step already running is left to finish)"
                    .to_owned(),
            ),
            // Finished already: only linked.
            other => (other, String::new()),
        };
        let note = EventNote::new(
            "absorbed",
            SYSTEM,
            format!(
                "absorbed by incident {} ({}){why}",
                parent.id, parent.scenario
            ),
        )
        .with_data(json!({ "parent": parent.id, "was": child.state }));
        let after = Incident {
            state: to,
            parent_id: Some(parent.id.clone()),
            ..child.clone()
        };
        let absorbed = self.save(&child, after, at, note).await?;
        // The parent's message lists what it absorbed.
        self.changed(&parent.id);
        Ok(absorbed)
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
            .with_label_values(&[&inc.scenario, drill_label(inc.drill)])
            .dec();
        tracing::info!(incident = %inc.id, state = %closed.state, "incident closed: {reason}");
        Ok(closed)
    }
}
