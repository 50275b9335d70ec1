//! Plans that follow the evidence until approval: the first plan when an
//! incident opens, and a revised one each time new evidence names services
//! the plan does not cover. An approval is for one exact plan (its digest),
//! so a revision voids the votes cast on the plan before it. After approval
//! the plan is frozen; services that turn up later are listed as not
//! covered, for a follow-up that needs its own approval.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::{EventNote, Incident, IncidentError, Incidents, SYSTEM, State};
use crate::catalogue::Catalogue;
use crate::rules::plan::{BuiltPlan, ServiceSelection, TemplateContext, latest_by_name};
use crate::rules::{Rule, RuleSet};
use crate::store::StoreError;

impl Incidents {
    /// Renders `rule`'s plan for the incident over `affected`, with its
    /// evidence (the signals attached so far) in the templates' reach.
    async fn render(
        &self,
        inc: &Incident,
        rule: &Rule,
        affected: &BTreeSet<String>,
        catalogue: &Catalogue,
    ) -> Result<Result<BuiltPlan, String>, StoreError> {
        let mut signals = self.store.incident_signals(&inc.id).await?;
        signals.sort_by_key(|s| s.received_at);
        let ctx = TemplateContext {
            incident_id: &inc.id,
            rule: &inc.rule,
            scenario: &inc.scenario,
            severity: &inc.severity,
            labels: &inc.group_labels,
            services: &[],
            service: None,
            dr_region: None,
            signals: &signals,
            latest: latest_by_name(&signals),
        };
        let drill = inc.drill.then_some(self.drill_dispatch);
        Ok(rule.plan.render(&ctx, catalogue, affected, drill))
    }

    pub(super) async fn plan(
        &self,
        inc: Incident,
        rule: &Rule,
        affected: &BTreeSet<String>,
        catalogue: &Catalogue,
        at: DateTime<Utc>,
    ) -> Result<Incident, IncidentError> {
        let built = match self.render(&inc, rule, affected, catalogue).await? {
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
            .and_then(|d| inc.detected_at.checked_add_signed(d));
        let hold_until = super::hold::hold_deadline(rule, at);
        let note = EventNote::new(
            "planned",
            SYSTEM,
            format!("{} step(s)", built.plan.steps.len()),
        )
        .with_data(json!({
            "plan": built.plan,
            "plan_digest": built.plan.digest(),
            "services": built.services,
            "rto_deadline": rto_deadline,
            "hold_until": hold_until,
        }));
        let after = Incident {
            state: State::Planned,
            plan: built.plan,
            services: built.services,
            rto_deadline,
            ..inc.clone()
        };
        let planned = self.save(&inc, after, at, note).await?;
        self.note_not_ready(&planned, at).await?;
        self.hold_or_admit(planned, rule, catalogue, at, hold_until)
            .await
    }

    /// Records the runbooks the plan calls that the latest readiness check
    /// found not ready, not recorded for this incident yet: the message
    /// and the API show them before anyone approves. Nothing is held back:
    /// whether the plan can still help is a person's call.
    pub(super) async fn note_not_ready(
        &self,
        inc: &Incident,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let events = self.store.events(&inc.id).await?;
        let known = not_ready_runbooks(&events);
        let fresh: Vec<String> = self
            .readiness
            .not_ready_in(&inc.plan)
            .iter()
            .map(|r| r.summary())
            .filter(|s| !known.contains(s))
            .collect();
        if fresh.is_empty() {
            return Ok(());
        }
        let note = EventNote::new(
            "runbook_not_ready",
            SYSTEM,
            fresh
                .iter()
                .map(|s| format!("runbook not ready: {s}"))
                .collect::<Vec<_>>()
                .join("; "),
        )
        .with_data(json!({ "runbooks": fresh }));
        self.store.append_event(&inc.id, at, &note).await?;
        self.changed(&inc.id);
        Ok(())
    }

    /// New evidence named `services`, some of which the plan does not
    /// cover. Before approval the plan is rendered again over every service
    /// so far, in recovery order, and the change recorded with its diff;
    /// votes on the old plan no longer count (see the approval module).
    /// After approval nothing changes but a `not_covered` record.
    pub(super) async fn grow(
        &self,
        inc: Incident,
        services: &BTreeSet<String>,
        rules: &RuleSet,
        at: DateTime<Utc>,
    ) -> Result<Incident, IncidentError> {
        let new: BTreeSet<String> = services
            .iter()
            .filter(|s| !inc.services.contains(*s))
            .cloned()
            .collect();
        let Some(rule) = rules.rules.iter().find(|r| r.name == inc.rule) else {
            return Ok(inc);
        };
        // A plan over every catalogued service does not depend on which
        // of them alerted.
        if new.is_empty() || rule.plan.services == ServiceSelection::All {
            return Ok(inc);
        }
        match inc.state {
            State::Planned | State::AwaitingApproval => {}
            State::Approved | State::Running => return self.not_covered(inc, new, at).await,
            _ => return Ok(inc),
        }
        let affected: BTreeSet<String> = inc.services.iter().chain(&new).cloned().collect();
        let built = match self.render(&inc, rule, &affected, &rules.catalogue).await? {
            Ok(b) => b,
            Err(e) => {
                // The plan in force stays; the services it misses are
                // listed so that nobody takes it for complete.
                tracing::warn!(incident = %inc.id, "revising the plan failed: {e}");
                return self.not_covered(inc, new, at).await;
            }
        };
        let step_names = |p: &crate::plan::Plan| -> Vec<String> {
            p.steps.iter().map(|s| s.name.clone()).collect()
        };
        let before = step_names(&inc.plan);
        let after_steps = step_names(&built.plan);
        let note = EventNote::new(
            "plan_revised",
            SYSTEM,
            format!(
                "new evidence for {}: {} step(s), was {}{}",
                new.iter().cloned().collect::<Vec<_>>().join(", "),
                built.plan.steps.len(),
                inc.plan.steps.len(),
                if inc.state == State::AwaitingApproval {
                    "; votes on the previous plan no longer count"
                } else {
                    ""
                }
            ),
        )
        .with_data(json!({
            "added_services": new,
            "services": built.services,
            "steps_added": after_steps.iter().filter(|s| !before.contains(s)).collect::<Vec<_>>(),
            "steps_removed": before.iter().filter(|s| !after_steps.contains(s)).collect::<Vec<_>>(),
            "previous_digest": inc.plan.digest(),
            "plan_digest": built.plan.digest(),
            "plan": built.plan,
        }));
        let rto_deadline = built
            .rto
            .and_then(|d| chrono::Duration::from_std(d).ok())
            .and_then(|d| inc.detected_at.checked_add_signed(d))
            .or(inc.rto_deadline);
        let after = Incident {
            plan: built.plan,
            services: built.services,
            rto_deadline,
            ..inc.clone()
        };
        self.metrics.plans_revised.inc();
        let revised = self.save(&inc, after, at, note).await?;
        self.note_not_ready(&revised, at).await?;
        Ok(revised)
    }

    /// Services the approved plan does not cover, recorded once each: the
    /// message lists them, and covering them takes a plan of its own.
    async fn not_covered(
        &self,
        inc: Incident,
        new: BTreeSet<String>,
        at: DateTime<Utc>,
    ) -> Result<Incident, IncidentError> {
        let events = self.store.events(&inc.id).await?;
        let known = uncovered(&events);
        let fresh: Vec<String> = new.into_iter().filter(|s| !known.contains(s)).collect();
        if fresh.is_empty() {
            return Ok(inc);
        }
        let note = EventNote::new(
            "not_covered",
            SYSTEM,
            format!(
                "not covered by the approved plan: {}; a follow-up plan needs its own approval",
                fresh.join(", ")
            ),
        )
        .with_data(json!({ "services": fresh }));
        self.store.append_event(&inc.id, at, &note).await?;
        self.changed(&inc.id);
        Ok(inc)
    }
}

/// The runbooks an incident's events list as not ready, as summaries
/// (`DR-Restore in ap-northeast-1 (document not found)`), oldest first.
pub fn not_ready_runbooks(events: &[super::Event]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in events
        .iter()
        .filter(|e| e.kind == "runbook_not_ready")
        .filter_map(|e| serde_json::from_value::<Vec<String>>(e.data["runbooks"].clone()).ok())
        .flatten()
    {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// The services an incident's events list as not covered by its plan.
pub fn uncovered(events: &[super::Event]) -> BTreeSet<String> {
    events
        .iter()
        .filter(|e| e.kind == "not_covered")
        .filter_map(|e| serde_json::from_value::<Vec<String>>(e.data["services"].clone()).ok())
        .flatten()
        .collect()
}
