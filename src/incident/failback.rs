//! Failback: undoing a failover once the failed region is healthy again.
//!
//! Each catalogue runbook can name the runbook that undoes it
//! (`failback:`); a plan's steps carry that name, so approvers see it. When
//! a plan with such steps succeeds, the leader prepares the failback: an
//! incident of scenario `failback`, linked to the failover by
//! `failback_of`, whose plan runs the named runbooks in reverse recovery
//! order with the failover's labels (so `{{ labels.region }}` is still the
//! failed region and `{{ dr_region }}` the one it failed over to).
//!
//! The failback waits, `planned`, until the failed region has been healthy
//! for `failback.healthy_for`: the failover's evidence is gone (its alerts
//! resolved, or its missing heartbeat back), no zone or region incident is
//! open in that region, and the region heartbeat (`failback.heartbeat`, if
//! set) has arrived within `failback.heartbeat_timeout`. Each change of
//! that verdict is an event (`failback_waiting`, `failback_healthy`), so
//! the wait shows in Slack and the audit and survives a restart. Then it
//! asks for approval, never automatically, whatever the failover rule's
//! policy; a vote is refused while the region is unhealthy again, and the
//! dispatch-time interlocks hold it while a large incident is open in any
//! region it touches, the failed one included.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::{Event, EventNote, Incident, IncidentError, Incidents, SYSTEM, State};
use crate::approval::evidence::Heartbeat;
use crate::approval::votes::{self, Request};
use crate::plan::Plan;
use crate::rules::model::{ApprovalMode, OnTimeout};
use crate::rules::plan::{TemplateContext, latest_by_name};
use crate::rules::{Rule, RuleSet};
use crate::telemetry::drill_label;

use super::failback_config::default_healthy_for;

/// The scenario of every failback incident.
pub const SCENARIO: &str = "failback";

/// How long after its failover succeeded a failback is still prepared: a
/// leader that was down for a while catches up, a years-old failover does
/// not come back.
const PREPARE_WITHIN: Duration = Duration::from_secs(7 * 24 * 3600);

/// When the failed region was last seen turning healthy, if the latest
/// health verdict in these events is "healthy".
fn healthy_since(events: &[Event]) -> Option<DateTime<Utc>> {
    events
        .iter()
        .rfind(|e| matches!(e.kind.as_str(), "failback_healthy" | "failback_waiting"))
        .filter(|e| e.kind == "failback_healthy")
        .map(|e| e.at)
}

impl Incidents {
    /// Prepares the failback of every failover that succeeded recently and
    /// has none yet, then moves each waiting failback on: records changes
    /// of the failed region's health and asks for approval once it has
    /// been healthy long enough. Returns how many failbacks changed.
    pub async fn failbacks(
        &self,
        now: DateTime<Utc>,
        rules: &RuleSet,
    ) -> Result<usize, IncidentError> {
        let mut changed = 0;
        let since = crate::primitives::duration::before(now, PREPARE_WITHIN);
        for origin in self.store.succeeded_without_failback(since).await? {
            if origin.plan.steps.iter().any(|s| s.failback.is_some()) {
                self.prepare_failback(&origin, rules, now).await?;
                changed += 1;
            }
        }
        for failback in self
            .store
            .incidents_in(&[State::Detected, State::Planned])
            .await?
        {
            let Some(of) = &failback.failback_of else {
                continue;
            };
            if failback.state == State::Detected {
                // Its planning was cut short (the leader died in between).
                if let Some(origin) = self.store.incident(of).await? {
                    self.plan_failback(&origin, failback, rules, now).await?;
                    changed += 1;
                }
            } else if self.watch_failback(&failback, rules, now).await? {
                changed += 1;
            }
        }
        Ok(changed)
    }

    /// The failback of `origin`, recorded first (so that it exists once
    /// whatever happens next), then planned: its failback steps in reverse
    /// order, rendered with the failover's labels and evidence. A plan that
    /// cannot be rendered (the catalogue lost a runbook since) fails the
    /// failback at once, where people see it, rather than offering half of
    /// it.
    async fn prepare_failback(
        &self,
        origin: &Incident,
        rules: &RuleSet,
        now: DateTime<Utc>,
    ) -> Result<(), IncidentError> {
        let rule = rules.rules.iter().find(|r| r.name == origin.rule);
        let failback = Incident {
            id: uuid::Uuid::now_v7().to_string(),
            rule: origin.rule.clone(),
            scenario: SCENARIO.to_owned(),
            severity: origin.severity.clone(),
            group_key: format!("{SCENARIO}:{}", origin.id),
            group_labels: origin.group_labels.clone(),
            state: State::Detected,
            parent_id: None,
            plan: Plan::default(),
            services: Vec::new(),
            rto_deadline: None,
            approval_deadline: None,
            detected_at: now,
            updated_at: now,
            closed_at: None,
            version: 0,
            drill: origin.drill,
            failback_of: Some(origin.id.clone()),
        };
        let note = EventNote::new(
            "failback_prepared",
            SYSTEM,
            format!(
                "failback of incident {} ({}), whose plan succeeded",
                origin.id, origin.scenario
            ),
        )
        .with_data(json!({
            "failback_of": origin.id,
            "heartbeat": rule.and_then(|r| Heartbeat::of(r)),
            "drill": origin.drill,
        }));
        let failback = match self.store.open_incident(&failback, &note).await? {
            crate::store::Opened::Created(inc) => inc,
            // Prepared already (another tick or leader got there first).
            crate::store::Opened::Existing(_) => return Ok(()),
        };
        self.metrics
            .incidents_open
            .with_label_values(&[SCENARIO, drill_label(failback.drill)])
            .inc();
        self.metrics
            .failbacks
            .with_label_values(&["prepared"])
            .inc();
        let link = EventNote::new(
            "failback_prepared",
            SYSTEM,
            format!(
                "failback prepared as incident {}: offered for approval once {} has been healthy for {}",
                failback.id,
                region_of(origin),
                humantime::format_duration(self.failback.healthy_for)
            ),
        )
        .with_data(json!({ "failback": failback.id }));
        self.store.append_event(&origin.id, now, &link).await?;
        self.changed(&origin.id);
        tracing::warn!(incident = %failback.id, failover = %origin.id, "failback prepared");
        self.plan_failback(origin, failback, rules, now).await
    }

    /// Renders the failback's plan and leaves it `planned`, waiting for the
    /// region (or `failed`, if it cannot be rendered).
    async fn plan_failback(
        &self,
        origin: &Incident,
        failback: Incident,
        rules: &RuleSet,
        now: DateTime<Utc>,
    ) -> Result<(), IncidentError> {
        let plan = match self.render_failback(origin, &failback, rules).await? {
            Ok(plan) => plan,
            Err(e) => {
                let note = EventNote::new(
                    "plan_failed",
                    SYSTEM,
                    format!("failback plan could not be built: {e}"),
                );
                self.transition(&failback, State::Failed, now, note).await?;
                return Ok(());
            }
        };
        let services: Vec<String> = plan
            .steps
            .iter()
            .filter_map(|s| s.service.clone())
            .collect();
        let note = EventNote::new(
            "planned",
            SYSTEM,
            format!(
                "{} step(s), the failover's in reverse; waiting for {} to be healthy for {}",
                plan.steps.len(),
                region_of(origin),
                humantime::format_duration(self.failback.healthy_for)
            ),
        )
        .with_data(json!({
            "plan": plan,
            "plan_digest": plan.digest(),
            "services": services,
        }));
        let after = Incident {
            state: State::Planned,
            plan,
            services,
            ..failback.clone()
        };
        let planned = self.save(&failback, after, now, note).await?;
        self.note_not_ready(&planned, now).await?;
        Ok(())
    }

    /// The failback steps of `origin`'s plan, last first, each rendered
    /// from its failback runbook for the same service.
    async fn render_failback(
        &self,
        origin: &Incident,
        failback: &Incident,
        rules: &RuleSet,
    ) -> Result<Result<Plan, String>, IncidentError> {
        let catalogue = &rules.catalogue;
        let mut signals = self.store.incident_signals(&origin.id).await?;
        signals.sort_by_key(|s| s.received_at);
        let services: Vec<String> = origin.services.iter().rev().cloned().collect();
        let dr_region = catalogue.dr_region(&origin.group_labels);
        let ctx = TemplateContext {
            incident_id: &failback.id,
            rule: &origin.rule,
            scenario: &origin.scenario,
            severity: &origin.severity,
            labels: &origin.group_labels,
            services: &services,
            service: None,
            dr_region,
            signals: &signals,
            latest: latest_by_name(&signals),
        };
        let mut steps = Vec::new();
        for undone in origin.plan.steps.iter().rev() {
            let Some(name) = &undone.failback else {
                continue;
            };
            let Some(runbook) = catalogue.runbooks.get(name) else {
                return Ok(Err(format!(
                    "step {:?} names failback runbook {name:?}, which the catalogue no longer has",
                    undone.name
                )));
            };
            let service = match &undone.service {
                Some(s) => match catalogue.services.get(s) {
                    Some(svc) => Some(svc),
                    None => {
                        return Ok(Err(format!(
                            "step {:?} is for service {s:?}, which the catalogue no longer has",
                            undone.name
                        )));
                    }
                },
                None => None,
            };
            let template = match (failback.drill, &runbook.drill) {
                (true, Some(drill)) if !undone.record => drill,
                _ => &runbook.step,
            };
            let step_ctx = TemplateContext {
                service,
                ..ctx.clone()
            };
            let mut step = match template.render(&step_ctx, &failback.id, steps.len()) {
                Ok(step) => step,
                Err(e) => return Ok(Err(e)),
            };
            step.name = match &undone.service {
                Some(s) => format!("{s}: {}", runbook.title()),
                None => runbook.title().to_owned(),
            };
            step.service = undone.service.clone();
            step.timeout_secs = undone.timeout_secs;
            // A drill's failback calls what its failover called: a drill
            // variant, or nothing.
            step.record = failback.drill && (undone.record || runbook.drill.is_none());
            steps.push(step);
        }
        Ok(Ok(Plan {
            steps,
            continue_on_failure: origin.plan.continue_on_failure,
        }))
    }

    /// Why the region `failback` returns to is not healthy at `now`, if it
    /// is not: the failover's evidence still holds, a zone or region
    /// incident is open there, or its heartbeat is silent.
    pub(super) async fn failback_unhealthy(
        &self,
        failback: &Incident,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, IncidentError> {
        let Some(of) = &failback.failback_of else {
            return Ok(None);
        };
        let region = failback.group_labels.get("region");
        // A drill's failure was synthetic: only the real world below counts.
        if !failback.drill {
            let events = self.store.events(&failback.id).await?;
            let heartbeat: Option<Heartbeat> = events
                .first()
                .and_then(|e| serde_json::from_value(e.data["heartbeat"].clone()).ok());
            let declared = self.declared(of).await?;
            if !declared && self.evidence_of(of, heartbeat.as_ref(), now).await? {
                return Ok(Some(match heartbeat {
                    Some(_) => format!("the heartbeat of failover {of} is still missing"),
                    None => format!("alerts of failover {of} are still firing"),
                }));
            }
        }
        let regions = region.cloned().into_iter().collect();
        if let Some(other) = self.large_open_in(failback, &regions).await? {
            return Ok(Some(format!(
                "incident {} ({}) is open in {}",
                other.id,
                other.scenario,
                region.map(String::as_str).unwrap_or_default()
            )));
        }
        if let (Some(name), Some(region)) = (&self.failback.heartbeat, region) {
            let since = crate::primitives::duration::before(now, self.failback.heartbeat_timeout);
            if !self.store.beating(name, "region", region, since).await? {
                return Ok(Some(format!(
                    "no {name} heartbeat from {region} in the last {}",
                    humantime::format_duration(self.failback.heartbeat_timeout)
                )));
            }
        }
        Ok(None)
    }

    /// One waiting failback at `now`: records a change of the region's
    /// health, and asks for approval once it has been healthy for
    /// `healthy_for`. Returns whether anything changed.
    async fn watch_failback(
        &self,
        failback: &Incident,
        rules: &RuleSet,
        now: DateTime<Utc>,
    ) -> Result<bool, IncidentError> {
        let events = self.store.events(&failback.id).await?;
        let since = healthy_since(&events);
        match (self.failback_unhealthy(failback, now).await?, since) {
            (Some(why), _) => {
                // Recorded at the first look and when it was healthy
                // before; otherwise nothing changed.
                let waiting = events.iter().any(|e| e.kind == "failback_waiting");
                if since.is_none() && waiting {
                    return Ok(false);
                }
                let note = EventNote::new("failback_waiting", SYSTEM, format!("waiting: {why}"));
                self.store.append_event(&failback.id, now, &note).await?;
                self.metrics.failbacks.with_label_values(&["waiting"]).inc();
                self.changed(&failback.id);
                Ok(true)
            }
            (None, None) => {
                let note = EventNote::new(
                    "failback_healthy",
                    SYSTEM,
                    format!(
                        "{} is healthy; the failback is offered for approval if it stays so for {}",
                        region_of(failback),
                        humantime::format_duration(self.failback.healthy_for)
                    ),
                );
                self.store.append_event(&failback.id, now, &note).await?;
                self.metrics.failbacks.with_label_values(&["healthy"]).inc();
                self.changed(&failback.id);
                Ok(true)
            }
            (None, Some(since)) => {
                let due = crate::primitives::duration::after(since, self.failback.healthy_for);
                if due > now {
                    return Ok(false);
                }
                self.offer_failback(failback, rules, now).await?;
                Ok(true)
            }
        }
    }

    /// Asks for approval of a failback whose region has been healthy long
    /// enough: `failback.approvers`, else the failover rule's approvers, at
    /// least one person whatever the rule's mode.
    async fn offer_failback(
        &self,
        failback: &Incident,
        rules: &RuleSet,
        now: DateTime<Utc>,
    ) -> Result<Incident, IncidentError> {
        let rule = rules.rules.iter().find(|r| r.name == failback.rule);
        let policy = self.failback_policy(failback, rule.map(|r| &**r)).await?;
        let request = Request {
            needed: votes::needed(policy.mode).max(1),
            groups: policy.groups,
            deadline: crate::primitives::duration::after(now, policy.timeout),
            escalate_to: policy.escalate_to,
            timeout_secs: policy.timeout.as_secs(),
            heartbeat: None,
        };
        self.metrics.failbacks.with_label_values(&["offered"]).inc();
        tracing::warn!(incident = %failback.id, "failback offered for approval");
        self.request_approval(failback, request, "approval_requested", now)
            .await
    }

    /// Who approves a failback, and how: the failover's approval request
    /// as recorded (the rule may have changed since); for a failover that
    /// was approved automatically, its rule's groups and timeout. Either
    /// way `failback.approvers`, when set, are the groups.
    async fn failback_policy(
        &self,
        failback: &Incident,
        rule: Option<&Rule>,
    ) -> Result<FailbackPolicy, IncidentError> {
        let of = failback.failback_of.as_deref().unwrap_or_default();
        let recorded = self
            .store
            .events(of)
            .await?
            .into_iter()
            .find(|e| e.kind == "approval_requested")
            .and_then(|e| serde_json::from_value::<Request>(e.data).ok());
        let mut policy = match recorded {
            Some(r) => FailbackPolicy {
                mode: if r.needed >= 2 {
                    ApprovalMode::Two
                } else {
                    ApprovalMode::One
                },
                groups: r.groups,
                timeout: Duration::from_secs(r.timeout_secs.max(1)),
                escalate_to: r.escalate_to,
            },
            None => FailbackPolicy {
                mode: ApprovalMode::One,
                groups: rule.map(|r| r.approval.groups.clone()).unwrap_or_default(),
                timeout: rule.map_or(default_healthy_for(), |r| r.approval.timeout),
                escalate_to: rule
                    .filter(|r| r.approval.on_timeout == OnTimeout::Escalate)
                    .map(|r| r.approval.escalate_to.clone())
                    .unwrap_or_default(),
            },
        };
        if !self.failback.approvers.is_empty() {
            policy.groups = self.failback.approvers.clone();
        }
        Ok(policy)
    }
}

struct FailbackPolicy {
    mode: ApprovalMode,
    groups: Vec<String>,
    timeout: Duration,
    escalate_to: Vec<String>,
}

/// The failed region (and zone), for messages.
fn region_of(inc: &Incident) -> String {
    match (inc.group_labels.get("region"), inc.group_labels.get("zone")) {
        (Some(r), Some(z)) => format!("{r}/{z}"),
        (Some(r), None) => r.clone(),
        _ => "the failed scope".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::Catalogue;
    use crate::plan::{Action, Step};
    use crate::store::Store;
    use crate::telemetry::Metrics;

    const CATALOGUE: &str = r#"regions:
  eu-west-1: {dr_region: eu-central-1}
runbooks:
  promote:
    ssm: {document: DR-Promote, region: "{{ dr_region }}"}
    failback: back
  back:
    ssm: {document: "DR-Back-{{ service.name }}", region: "{{ labels.region }}"}
services:
  db: {rto: 1m, runbooks: {region_outage: promote}}
  api: {rto: 1m, depends_on: [db], runbooks: {region_outage: promote}}
"#;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap_or_default()
    }

    fn step(service: &str) -> Step {
        Step {
            name: format!("{service}: promote"),
            service: Some(service.into()),
            action: Action::Ssm {
                document: "DR-Promote".into(),
                document_version: None,
                region: "eu-central-1".into(),
                parameters: Default::default(),
            },
            idempotency_key: service.into(),
            timeout_secs: Some(60),
            record: false,
            failback: Some("back".into()),
        }
    }

    /// A failback left `detected` (the leader died between recording and
    /// planning it) is planned at the next tick, the failover's steps in
    /// reverse, and then waits: nothing prepares a second one.
    #[tokio::test]
    async fn a_failback_cut_short_is_planned_at_the_next_tick_and_only_once() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let catalogue = Catalogue::parse(CATALOGUE, std::path::Path::new("services.yaml")).unwrap();
        let rules = RuleSet::new(Vec::new(), Vec::new(), std::sync::Arc::new(catalogue)).unwrap();
        let incidents = Incidents::new(store.clone(), Metrics::new(), false);
        let labels: crate::signal::Labels = [("region".to_owned(), "eu-west-1".to_owned())].into();
        let origin = Incident {
            id: "over".into(),
            rule: "r".into(),
            scenario: "region_outage".into(),
            severity: "critical".into(),
            group_key: "r{region=\"eu-west-1\"}".into(),
            group_labels: labels.clone(),
            state: State::Succeeded,
            parent_id: None,
            plan: Plan {
                steps: vec![step("db"), step("api")],
                continue_on_failure: false,
            },
            services: vec!["db".into(), "api".into()],
            rto_deadline: None,
            approval_deadline: None,
            detected_at: t(0),
            updated_at: t(0),
            closed_at: None,
            version: 0,
            drill: false,
            failback_of: None,
        };
        let note = EventNote::new("detected", SYSTEM, "");
        store.open_incident(&origin, &note).await.unwrap();
        let cut_short = Incident {
            id: "back".into(),
            scenario: SCENARIO.into(),
            group_key: "failback:over".into(),
            state: State::Detected,
            plan: Plan::default(),
            services: Vec::new(),
            failback_of: Some("over".into()),
            ..origin.clone()
        };
        store.open_incident(&cut_short, &note).await.unwrap();

        assert_eq!(incidents.failbacks(t(10), &rules).await.unwrap(), 1);
        let planned = store.incident("back").await.unwrap().unwrap();
        assert_eq!(planned.state, State::Planned);
        let documents: Vec<(&str, &str)> = planned
            .plan
            .steps
            .iter()
            .map(|s| match &s.action {
                Action::Ssm {
                    document, region, ..
                } => (document.as_str(), region.as_str()),
                Action::Lambda { .. } => ("", ""),
            })
            .collect();
        assert_eq!(
            documents,
            [("DR-Back-api", "eu-west-1"), ("DR-Back-db", "eu-west-1")]
        );
        assert_eq!(planned.services, ["api", "db"]);
        assert!(planned.plan.steps.iter().all(|s| s.failback.is_none()));
        assert_eq!(planned.plan.steps[0].timeout_secs, Some(60));

        // The next tick only looks at the region (nothing is known to be
        // wrong there, so it turns healthy); no second failback.
        incidents.failbacks(t(11), &rules).await.unwrap();
        let events = store.events("back").await.unwrap();
        assert_eq!(
            events.iter().filter(|e| e.kind == "planned").count(),
            1,
            "{events:?}"
        );
        assert!(events.iter().any(|e| e.kind == "failback_healthy"));
        assert!(
            store
                .succeeded_without_failback(t(0))
                .await
                .unwrap()
                .is_empty()
        );
    }
}
