//! Applying the rule engine's decisions to stored incidents.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use serde_json::json;

use super::{EventNote, Incident, SYSTEM, State};
use crate::approval::votes::{self, Choice, Directory, Refusal, Request, Verdict, Vote};
use crate::catalogue::Catalogue;
use crate::dispatch;
use crate::guard::{Admission, Guard};
use crate::plan::Plan;
use crate::rules::model::{ApprovalMode, OnTimeout, Rate};
use crate::rules::plan::TemplateContext;
use crate::rules::{Decision, Rule, RuleSet};
use crate::signal::Labels;
use crate::store::{Opened, Store, StoreError};
use crate::telemetry::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum IncidentError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("incident {id}: cannot go from {from} to {to}")]
    InvalidTransition { id: String, from: State, to: State },
    #[error("this replica's leader lease ran out; the next leader carries on")]
    NotLeader,
}

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

#[derive(Clone)]
pub struct Incidents {
    store: Store,
    metrics: Metrics,
    /// The global dry-run switch; rules can also ask for dry-run.
    dry_run: bool,
    guard: Arc<RwLock<Guard>>,
    /// Woken when an incident becomes approved, for whoever runs plans.
    approved: Arc<tokio::sync::Notify>,
    /// Ids of incidents that changed, for the Slack messages.
    changes: Option<tokio::sync::mpsc::Sender<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    #[error("no incident {0}")]
    NotFound(String),
    #[error("incident {id} is {state}, not awaiting approval")]
    NotAwaiting { id: String, state: State },
    #[error("vote refused: {0}")]
    Refused(Refusal),
    #[error("incident {0} kept changing; try again")]
    Busy(String),
    #[error(transparent)]
    Incident(#[from] IncidentError),
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
    /// Starts with a guard that knows no limits: call [`Incidents::reset_guard`]
    /// with the rule set before applying decisions.
    pub fn new(store: Store, metrics: Metrics, dry_run: bool) -> Incidents {
        Incidents {
            store,
            metrics,
            dry_run,
            guard: Arc::new(RwLock::new(Guard::new(&RuleSet::default(), None))),
            approved: Arc::new(tokio::sync::Notify::new()),
            changes: None,
        }
    }

    /// Reports every change to `tx` (after it is persisted).
    pub fn with_change_feed(mut self, tx: tokio::sync::mpsc::Sender<String>) -> Incidents {
        self.changes = Some(tx);
        self
    }

    /// The same incidents, written through a fenced store: the leader's
    /// handle. The guard, the approval wake-up and the change feed are
    /// shared, so a vote taken by the HTTP side wakes the leader's runner.
    pub fn fenced(&self, fence: crate::store::Fence) -> Incidents {
        Incidents {
            store: self.store.fenced(fence),
            ..self.clone()
        }
    }

    /// Tells the change feed an incident changed in a way its message shows
    /// (a state change does so itself; step progress calls this).
    pub fn changed(&self, id: &str) {
        if let Some(tx) = &self.changes
            && tx.try_send(id.to_owned()).is_err()
        {
            // The Slack task is behind; the next change re-renders the
            // whole message from the store anyway.
            tracing::warn!(incident = %id, "change feed full; message update skipped");
        }
    }

    /// Notified whenever an incident becomes approved.
    pub fn approved_signal(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.approved)
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
            Decision::Close { key, at, reason } => {
                if let Some(inc) = self.store.open_incident_for(&key).await? {
                    self.close(&inc, at, &reason).await?;
                }
            }
        }
        Ok(())
    }

    /// The one way an incident changes: a state change is checked against
    /// the lifecycle, and the new incident is persisted with its event (and a
    /// version check) before the caller may act on it.
    pub async fn save(
        &self,
        before: &Incident,
        after: Incident,
        at: DateTime<Utc>,
        note: EventNote,
    ) -> Result<Incident, IncidentError> {
        if before.state != after.state && !before.state.can_become(after.state) {
            return Err(IncidentError::InvalidTransition {
                id: before.id.clone(),
                from: before.state,
                to: after.state,
            });
        }
        let saved = self
            .store
            .update_incident(before, &after, at, &note)
            .await?;
        self.changed(&saved.id);
        if before.state != saved.state {
            self.metrics
                .incident_transitions
                .with_label_values(&[saved.state.as_str()])
                .inc();
            tracing::info!(incident = %saved.id, from = %before.state, to = %saved.state, actor = %note.actor, reason = %note.reason, "incident transition");
        }
        Ok(saved)
    }

    /// A state change and nothing else.
    pub async fn transition(
        &self,
        inc: &Incident,
        to: State,
        at: DateTime<Utc>,
        note: EventNote,
    ) -> Result<Incident, IncidentError> {
        let after = Incident {
            state: to,
            ..inc.clone()
        };
        self.save(inc, after, at, note).await
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

    async fn plan(
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
            .and_then(|d| chrono::Duration::from_std(d).ok())
            .map(|d| inc.detected_at + d);
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

    /// The guard's word on a planned incident.
    async fn admit(
        &self,
        planned: Incident,
        rule: &Rule,
        catalogue: &Catalogue,
    ) -> Result<Incident, IncidentError> {
        let at = planned.detected_at;
        let active = self.store.active_count(&rule.name).await?;
        let admission = self.guard.read().expect("lock not poisoned").admit(
            rule,
            &planned.group_key,
            at,
            active,
        );
        match admission {
            Admission::Hold { reason, limit } => {
                self.metrics
                    .incidents_held
                    .with_label_values(&[limit])
                    .inc();
                tracing::warn!(incident = %planned.id, rule = %rule.name, "held by the guard: {reason}");
                let note = EventNote::new("suppressed", SYSTEM, reason)
                    .with_data(json!({ "limit": limit }));
                self.transition(&planned, State::Suppressed, at, note).await
            }
            Admission::Admit => {
                let note =
                    EventNote::new("admitted", SYSTEM, "within the rule's and global limits");
                self.store.append_event(&planned.id, at, &note).await?;
                self.after_admission(planned, rule, catalogue).await
            }
        }
    }

    /// Dry-run, automatic approval, or a request for approval.
    async fn after_admission(
        &self,
        inc: Incident,
        rule: &Rule,
        catalogue: &Catalogue,
    ) -> Result<Incident, IncidentError> {
        if self.dry_run || rule.dry_run {
            return self.dispatch_dry_run(inc, rule).await;
        }
        let at = inc.detected_at;
        let policy = &rule.approval;
        if policy.mode == ApprovalMode::Auto {
            let note = EventNote::new(
                "approved",
                SYSTEM,
                "approval policy: automatic within the rule's limits",
            );
            let approved = self.transition(&inc, State::Approved, at, note).await?;
            self.approved.notify_one();
            return Ok(approved);
        }
        let mut groups = policy.groups.clone();
        if policy.include_owners {
            for s in &inc.services {
                if let Some(svc) = catalogue.services.get(s) {
                    groups.extend(svc.owners.iter().cloned());
                }
            }
        }
        groups.sort();
        groups.dedup();
        let timeout = chrono::Duration::from_std(policy.timeout).unwrap_or_default();
        let request = Request {
            needed: votes::needed(policy.mode),
            groups,
            deadline: at + timeout,
            escalate_to: match policy.on_timeout {
                OnTimeout::Escalate => policy.escalate_to.clone(),
                OnTimeout::Expire => Vec::new(),
            },
            timeout_secs: policy.timeout.as_secs(),
        };
        self.request_approval(&inc, request, "approval_requested", at)
            .await
    }

    async fn request_approval(
        &self,
        inc: &Incident,
        request: Request,
        kind: &'static str,
        at: DateTime<Utc>,
    ) -> Result<Incident, IncidentError> {
        let note = EventNote::new(
            kind,
            SYSTEM,
            format!(
                "needs {} approver(s) from {} by {}",
                request.needed,
                request.groups.join(", "),
                request.deadline.format("%H:%M:%SZ")
            ),
        )
        .with_data(json!(request));
        let after = Incident {
            state: State::AwaitingApproval,
            approval_deadline: Some(request.deadline),
            ..inc.clone()
        };
        self.save(inc, after, at, note).await
    }

    /// Records a vote and applies its verdict, in one write with the
    /// incident's version check: two people approving at the same instant
    /// are counted one after the other, never both against the same count.
    pub async fn vote(
        &self,
        id: &str,
        vote: Vote,
        reason: &str,
        directory: &Directory,
        at: DateTime<Utc>,
    ) -> Result<(Verdict, Incident), ApprovalError> {
        for _ in 0..5 {
            let inc = self
                .store
                .incident(id)
                .await
                .map_err(IncidentError::from)?
                .ok_or_else(|| ApprovalError::NotFound(id.to_owned()))?;
            if inc.state != State::AwaitingApproval {
                return Err(ApprovalError::NotAwaiting {
                    id: id.to_owned(),
                    state: inc.state,
                });
            }
            let (request, previous) = self.approval_state(id).await?;
            let allowed = directory.members(&request.groups);
            let verdict = votes::evaluate(&request, &allowed, &previous, &vote);
            let (to, kind) = match &verdict {
                Verdict::Refused(r) => {
                    let note = EventNote::new("vote_refused", vote.user.clone(), r.to_string())
                        .with_data(json!({ "vote": vote, "reason": r.reason() }));
                    self.store
                        .append_event(id, at, &note)
                        .await
                        .map_err(IncidentError::from)?;
                    self.metrics.votes.with_label_values(&[r.reason()]).inc();
                    return Err(ApprovalError::Refused(r.clone()));
                }
                Verdict::Pending { .. } => (State::AwaitingApproval, "vote"),
                Verdict::Approved { .. } => (State::Approved, "vote"),
                Verdict::Denied { .. } => (State::Denied, "vote"),
            };
            let why = match &verdict {
                Verdict::Approved { by } => format!("approved by {}", by.join(" and ")),
                Verdict::Denied { by } => format!("denied by {by}"),
                Verdict::Pending { still_needed } => {
                    format!("approved by {}; {still_needed} more needed", vote.user)
                }
                Verdict::Refused(_) => unreachable!("returned above"),
            };
            let why = if reason.is_empty() {
                why
            } else {
                format!("{why}: {reason}")
            };
            let note =
                EventNote::new(kind, vote.user.clone(), why).with_data(json!({ "vote": vote }));
            let after = Incident {
                state: to,
                approval_deadline: (to == State::AwaitingApproval)
                    .then_some(inc.approval_deadline)
                    .flatten(),
                ..inc.clone()
            };
            match self.save(&inc, after, at, note).await {
                Ok(saved) => {
                    let label = match vote.choice {
                        Choice::Approve => "approve",
                        Choice::Deny => "deny",
                    };
                    self.metrics.votes.with_label_values(&[label]).inc();
                    if saved.state == State::Approved {
                        self.approved.notify_one();
                    }
                    return Ok((verdict, saved));
                }
                Err(IncidentError::Store(StoreError::Conflict { .. })) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApprovalError::Busy(id.to_owned()))
    }

    /// The approval request in force (the latest, escalations included) and
    /// the votes cast since it.
    async fn approval_state(&self, id: &str) -> Result<(Request, Vec<Vote>), ApprovalError> {
        let events = self.store.events(id).await.map_err(IncidentError::from)?;
        let start = events
            .iter()
            .rposition(|e| matches!(e.kind.as_str(), "approval_requested" | "escalated"))
            .ok_or_else(|| ApprovalError::NotAwaiting {
                id: id.to_owned(),
                state: State::AwaitingApproval,
            })?;
        let request: Request = serde_json::from_value(events[start].data.clone()).map_err(|e| {
            IncidentError::Store(StoreError::Corrupt {
                table: "incident_events",
                detail: e.to_string(),
            })
        })?;
        // Votes from before an escalation still count.
        let votes = events
            .iter()
            .filter(|e| e.kind == "vote")
            .filter_map(|e| serde_json::from_value::<Vote>(e.data.get("vote")?.clone()).ok())
            .collect();
        Ok((request, votes))
    }

    /// Approvals whose deadline passed: escalate once if the policy says so,
    /// else expire. Returns how many incidents changed.
    pub async fn expire_due(&self, now: DateTime<Utc>) -> Result<usize, IncidentError> {
        let mut changed = 0;
        for inc in self.store.approvals_due(now).await? {
            let (request, _) = match self.approval_state(&inc.id).await {
                Ok(s) => s,
                Err(ApprovalError::Incident(e)) => return Err(e),
                Err(_) => continue,
            };
            if request.escalate_to.is_empty() {
                let note = EventNote::new(
                    "expired",
                    SYSTEM,
                    format!(
                        "no approval from {} in time; nothing ran",
                        request.groups.join(", ")
                    ),
                );
                self.transition(&inc, State::Expired, now, note).await?;
            } else {
                let mut groups = request.groups.clone();
                groups.extend(request.escalate_to.iter().cloned());
                groups.sort();
                groups.dedup();
                let escalated = Request {
                    groups,
                    escalate_to: Vec::new(),
                    deadline: now + chrono::Duration::seconds(request.timeout_secs as i64),
                    ..request
                };
                self.request_approval(&inc, escalated, "escalated", now)
                    .await?;
            }
            changed += 1;
        }
        Ok(changed)
    }

    /// Rebuilds the guard for a (re)loaded rule set and replays the store's
    /// admissions into it, so neither a restart nor a reload frees a limit
    /// that was spent.
    pub async fn reset_guard(
        &self,
        rules: &RuleSet,
        global: Option<Rate>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let guard = Guard::new(rules, global);
        let longest = rules
            .rules
            .iter()
            .flat_map(|r| [r.limits.rate, r.limits.per_target])
            .chain([global])
            .flatten()
            .map(|r| r.period)
            .max()
            .unwrap_or_default();
        let since = now - chrono::Duration::from_std(longest).unwrap_or_default();
        let by_name: std::collections::HashMap<&str, &Arc<Rule>> =
            rules.rules.iter().map(|r| (r.name.as_str(), r)).collect();
        for (rule, key, at) in self.store.admitted_since(since).await? {
            if let Some(r) = by_name.get(rule.as_str()) {
                guard.admit(r, &key, at, 0);
            }
        }
        *self.guard.write().expect("lock not poisoned") = guard;
        Ok(())
    }

    async fn dispatch_dry_run(
        &self,
        inc: Incident,
        rule: &Rule,
    ) -> Result<Incident, IncidentError> {
        let why = if self.dry_run {
            "dry-run: global dispatch.dry_run is on"
        } else {
            debug_assert!(rule.dry_run, "only dry-run incidents come here");
            "dry-run: rule asks for dry_run"
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
    async fn absorb(
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
