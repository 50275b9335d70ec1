//! Admission: the guard's word on a planned incident, then dry-run,
//! automatic approval, or a request for approval.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::{EventNote, Incident, IncidentError, Incidents, SYSTEM, State};
use crate::approval::evidence::Heartbeat;
use crate::approval::votes::{self, Request};
use crate::catalogue::Catalogue;
use crate::guard::{Admission, Guard};
use crate::rules::model::{ApprovalMode, OnTimeout, Rate, RuleMode};
use crate::rules::{Rule, RuleSet};
use crate::store::StoreError;

/// The states that count against a rule's `max_concurrent` at admission.
const CONCURRENT: [State; 3] = [State::AwaitingApproval, State::Approved, State::Running];

impl Incidents {
    /// The guard's word on a planned incident, at `at` (its detection, or
    /// the end of its hold).
    pub(super) async fn admit(
        &self,
        planned: Incident,
        rule: &Rule,
        catalogue: &Catalogue,
        at: DateTime<Utc>,
    ) -> Result<Incident, IncidentError> {
        // Before the guard and interlocks: a silenced incident spends no
        // limit and acts on nothing.
        if let Some(silenced) = self.suppress_if_silenced(&planned, at).await? {
            return Ok(silenced);
        }
        // A drill spends none of the real limits (rate, failover cap,
        // cooldown), so a rehearsal cannot hold a real failure back.
        if planned.drill {
            let note = EventNote::new("admitted", SYSTEM, "drill: outside the real limits")
                .with_data(json!({ "drill": true }));
            self.store.append_event(&planned.id, at, &note).await?;
            return self.after_admission(planned, rule, catalogue, at).await;
        }
        if let Some((limit, reason)) = self.admission_interlock(&planned, at).await? {
            self.metrics
                .incidents_held
                .with_label_values(&[limit])
                .inc();
            tracing::warn!(incident = %planned.id, rule = %rule.name, "held by an interlock: {reason}");
            let note =
                EventNote::new("suppressed", SYSTEM, reason).with_data(json!({ "limit": limit }));
            return self.transition(&planned, State::Suppressed, at, note).await;
        }
        // What waits for approval counts too: otherwise two incidents held
        // back by nothing could both be approved into a limit of one.
        let active = self
            .store
            .count_in(&rule.name, false, &CONCURRENT, &planned.id)
            .await?;
        let admission = self.guard.read().unwrap_or_else(|p| p.into_inner()).admit(
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
                let targets = super::targets(&planned);
                let note =
                    EventNote::new("admitted", SYSTEM, "within the rule's and global limits")
                        .with_data(if targets.is_empty() {
                            serde_json::Value::Null
                        } else {
                            json!({ "failover": true, "targets": targets })
                        });
                self.store.append_event(&planned.id, at, &note).await?;
                self.after_admission(planned, rule, catalogue, at).await
            }
        }
    }

    /// `max_concurrent` re-checked for an approved incident: if other
    /// incidents of its rule in `states` already fill the limit, the plan
    /// waits, with one `plan_waiting` event (and metric) per wait. Returns whether
    /// it must wait.
    pub async fn hold_if_over_limit(
        &self,
        inc: &Incident,
        states: &[State],
        at: DateTime<Utc>,
    ) -> Result<bool, IncidentError> {
        let Some((max, active, why)) = self.over_limit(inc, states).await? else {
            return Ok(false);
        };
        let events = self.store.events(&inc.id).await?;
        let waiting = events
            .iter()
            .rfind(|e| matches!(e.kind.as_str(), "plan_waiting" | "running"))
            .is_some_and(|e| e.kind == "plan_waiting");
        if !waiting {
            let reason = format!("{why}; the plan waits");
            tracing::warn!(incident = %inc.id, "{reason}");
            let note = EventNote::new("plan_waiting", SYSTEM, reason)
                .with_data(json!({ "limit": "max_concurrent", "max": max, "active": active }));
            self.store.append_event(&inc.id, at, &note).await?;
            self.metrics
                .incidents_held
                .with_label_values(&["max_concurrent"])
                .inc();
            self.changed(&inc.id);
        }
        Ok(true)
    }

    /// `max_concurrent`, how many other incidents of `inc`'s rule are in
    /// `states`, and why that holds it, if they fill it.
    async fn over_limit(
        &self,
        inc: &Incident,
        states: &[State],
    ) -> Result<Option<(u32, usize, String)>, IncidentError> {
        let max = self
            .guard
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .max_concurrent(&inc.rule);
        let Some(max) = max else { return Ok(None) };
        let active = self
            .store
            .count_in(&inc.rule, inc.drill, states, &inc.id)
            .await?;
        Ok((active >= max as usize).then(|| {
            let why = format!(
                "max_concurrent: rule {} allows {max} at once and {active} other(s) are {}",
                inc.rule,
                states
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" or ")
            );
            (max, active, why)
        }))
    }

    /// What would hold `inc`'s plan back if it were approved now: the
    /// dispatch-time interlocks and `max_concurrent`, exactly as the runner
    /// asks them right before a plan starts (a limit label and the reason).
    async fn shadow_blocks(
        &self,
        inc: &Incident,
    ) -> Result<Vec<(&'static str, String)>, IncidentError> {
        let mut blocks = Vec::new();
        if let Some((_, _, why)) = self.over_limit(inc, &[State::Running]).await? {
            blocks.push(("max_concurrent", why));
        }
        blocks.extend(
            self.dispatch_interlock(inc, true)
                .await?
                .map(|b| (b.limit, b.reason)),
        );
        Ok(blocks)
    }

    /// Shadow mode, automatic approval, or a request for approval.
    pub(super) async fn after_admission(
        &self,
        inc: Incident,
        rule: &Rule,
        catalogue: &Catalogue,
        at: DateTime<Utc>,
    ) -> Result<Incident, IncidentError> {
        let request = approval_request(&inc, rule, catalogue, at);
        if self.dry_run || rule.mode == RuleMode::Shadow {
            return self.shadow(inc, request, at).await;
        }
        let Some(request) = request else {
            let note = EventNote::new(
                "approved",
                SYSTEM,
                "approval policy: automatic within the rule's limits",
            );
            let approved = self.transition(&inc, State::Approved, at, note).await?;
            self.approved.notify_one();
            return Ok(approved);
        };
        self.request_approval(&inc, request, "approval_requested", at)
            .await
    }

    /// Rebuilds the guard for a (re)loaded rule set and replays the store's
    /// admissions into it, so neither a restart nor a reload frees a limit
    /// that was spent. Takes the set's file silences too.
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
        let since = crate::primitives::duration::before(now, longest);
        let by_name: std::collections::HashMap<&str, &Arc<Rule>> =
            rules.rules.iter().map(|r| (r.name.as_str(), r)).collect();
        for (rule, key, at) in self.store.admitted_since(since).await? {
            if let Some(r) = by_name.get(rule.as_str()) {
                guard.admit(r, &key, at, 0);
            }
        }
        *self.guard.write().unwrap_or_else(|p| p.into_inner()) = guard;
        self.set_file_silences(Arc::clone(&rules.silences));
        Ok(())
    }

    /// Shadow mode: what the live path would do after admission, recorded
    /// step by step through the same code, with no AWS call. The approval
    /// the live run would ask for (who, how many, by when, the escalation),
    /// the dispatch-time interlocks it would meet (the kill switch, the DR
    /// target's health, a conflicting running plan, `max_concurrent`) as if
    /// approved now, then each step it would run. Each is an event of its
    /// own (`shadow_approval`, `shadow_held`, `step_dry_run`), so `replay`,
    /// `test` and the console show them; the incident ends `suppressed`,
    /// marked as shadow, and a parent in shadow keeps what it absorbed (live,
    /// it would have acted for them).
    pub(super) async fn shadow(
        &self,
        inc: Incident,
        request: Option<Request>,
        at: DateTime<Utc>,
    ) -> Result<Incident, IncidentError> {
        let why = if self.dry_run {
            "shadow: global dispatch.dry_run is on"
        } else {
            "shadow: the rule's mode is shadow"
        };
        let approval = match &request {
            None => EventNote::new(
                "shadow_approval",
                SYSTEM,
                "would be approved automatically (approval policy: automatic within the rule's limits)",
            )
            .with_data(json!({ "needed": 0 })),
            Some(r) => EventNote::new("shadow_approval", SYSTEM, would_wait(r))
                .with_data(json!(r)),
        };
        self.store.append_event(&inc.id, at, &approval).await?;
        for block in self.shadow_blocks(&inc).await? {
            self.metrics
                .incidents_held
                .with_label_values(&[block.0])
                .inc();
            let note = EventNote::new("shadow_held", SYSTEM, format!("would be held: {}", block.1))
                .with_data(json!({ "limit": block.0 }));
            self.store.append_event(&inc.id, at, &note).await?;
        }
        for (i, step) in inc.plan.steps.iter().enumerate() {
            let what = step.describe();
            tracing::info!(incident = %inc.id, step = i, idempotency_key = %step.idempotency_key, "shadow: would run {what}");
            let note = EventNote::new("step_dry_run", SYSTEM, format!("would run {what}"))
                .with_data(json!({ "index": i, "step": step }));
            self.store.append_event(&inc.id, at, &note).await?;
            self.metrics
                .plan_steps
                .with_label_values(&["dry_run"])
                .inc();
        }
        let note = EventNote::new("suppressed", SYSTEM, why).with_data(json!({ "shadow": true }));
        self.transition(&inc, State::Suppressed, at, note).await
    }
}

/// The approval request the live path makes for `inc`, or `None` where it
/// approves automatically (the policy is automatic and the rule's mode does
/// not ask for a person). Shadow mode and the live path both ask this.
fn approval_request(
    inc: &Incident,
    rule: &Rule,
    catalogue: &Catalogue,
    at: DateTime<Utc>,
) -> Option<Request> {
    let policy = &rule.approval;
    let mode = match (policy.mode, rule.mode) {
        // A person is asked, even though the policy would not.
        (ApprovalMode::Auto, RuleMode::Approve) => ApprovalMode::One,
        (ApprovalMode::Auto, _) => return None,
        (mode, _) => mode,
    };
    Some(Request {
        needed: votes::needed(mode),
        groups: approver_groups(rule, &inc.services, catalogue),
        deadline: crate::primitives::duration::after(at, policy.timeout),
        escalate_to: match policy.on_timeout {
            OnTimeout::Escalate => policy.escalate_to.clone(),
            OnTimeout::Expire => Vec::new(),
        },
        timeout_secs: policy.timeout.as_secs(),
        heartbeat: Heartbeat::of(rule),
    })
}

/// Who approves for `rule` when it acts on `services`: its groups and,
/// where the policy includes them, the services' owners. Approving, and
/// the operator actions that need an approver (`access`), ask this.
pub fn approver_groups(rule: &Rule, services: &[String], catalogue: &Catalogue) -> Vec<String> {
    let policy = &rule.approval;
    let mut groups = policy.groups.clone();
    if policy.include_owners {
        for s in services {
            if let Some(svc) = catalogue.services.get(s) {
                groups.extend(svc.owners.iter().cloned());
            }
        }
    }
    groups.sort();
    groups.dedup();
    groups
}

/// "would wait for 2 approvals from sre-leads, platform-leads until 03:18Z,
/// then escalate to cto-office".
fn would_wait(r: &Request) -> String {
    let then = if r.escalate_to.is_empty() {
        "then expire".to_owned()
    } else {
        format!("then escalate to {}", r.escalate_to.join(", "))
    };
    format!(
        "would wait for {} approval(s) from {} until {}, {then}",
        r.needed,
        if r.groups.is_empty() {
            "nobody (no approver group resolves)".to_owned()
        } else {
            r.groups.join(", ")
        },
        r.deadline.format("%H:%M:%SZ")
    )
}
