//! Interlocks: checks on the world, not on the incident, made when an
//! incident is admitted and again right before its plan starts and before
//! each step. A plan approved twenty minutes ago does not run into a world
//! that changed.
//!
//! A *failover* is a plan with a step in another region than the incident's
//! own `region` label; those regions are its *targets*.
//!
//! - At admission: the global failover cap (`limits.failovers`) and the
//!   cooldown after a failover of the same target (`limits.failover_cooldown`)
//!   hold the incident back (`suppressed`, with the reason), like the guard.
//! - Before the plan starts and before each step: nothing starts while the
//!   dispatch kill switch is on (`kill_switch.rs`); a failover waits while a
//!   target region has an open incident of a scenario that absorbs others
//!   (its own zone or region failure, or its heartbeat gone); and a plan
//!   waits while another running plan touches one of its services or
//!   contains its scope (a region plan and a zone plan of that region). A
//!   wait is a `plan_waiting` event (once per wait) and a metric; the
//!   runner looks again at its next scan.

use chrono::{DateTime, Utc};
use serde_json::json;
use std::collections::BTreeSet;

use super::{EventNote, Incident, IncidentError, Incidents, SYSTEM, State};

/// The regions a plan fails over into: its steps' regions other than the
/// incident's own.
pub fn targets(inc: &Incident) -> BTreeSet<String> {
    let Some(own) = inc.group_labels.get("region") else {
        return BTreeSet::new();
    };
    inc.plan
        .steps
        .iter()
        .map(|s| match &s.action {
            crate::plan::Action::Ssm { region, .. }
            | crate::plan::Action::Lambda { region, .. } => region.clone(),
        })
        .filter(|r| r != own)
        .collect()
}

/// What holds a plan back, with a bounded label for the metric.
pub(super) struct Block {
    pub(super) limit: &'static str,
    pub(super) reason: String,
}

/// Whether `other`'s plan and `inc`'s must not run at once: they recover a
/// service in common, or one's scope contains the other's (every group
/// label of one has the same value in the other).
fn conflicts(inc: &Incident, other: &Incident) -> bool {
    let shared = inc.services.iter().any(|s| other.services.contains(s));
    let within = |a: &Incident, b: &Incident| {
        !a.group_labels.is_empty()
            && a.group_labels
                .iter()
                .all(|(k, v)| b.group_labels.get(k) == Some(v))
    };
    shared || within(inc, other) || within(other, inc)
}

/// A drill never holds a real plan back; a real incident does hold a
/// drill (the rehearsal waits for the real thing).
fn drill_over_real(inc: &Incident, other: &Incident) -> bool {
    other.drill && !inc.drill
}

impl Incidents {
    /// The admission-time interlocks; `Some` holds the incident back.
    pub(super) async fn admission_interlock(
        &self,
        inc: &Incident,
        at: DateTime<Utc>,
    ) -> Result<Option<(&'static str, String)>, IncidentError> {
        if targets(inc).is_empty() {
            return Ok(None);
        }
        if let Some(cooldown) = self.interlocks.failover_cooldown {
            let since = crate::primitives::duration::before(at, cooldown);
            for prev in self.store.ran_since(&inc.group_key, &inc.id, since).await? {
                if !targets(&prev).is_empty() {
                    return Ok(Some((
                        "cooldown",
                        format!(
                            "cooldown: a failover of this target (incident {}, {}) ran within {}",
                            prev.id,
                            prev.state,
                            humantime::format_duration(cooldown)
                        ),
                    )));
                }
            }
        }
        if let Some(cap) = self.interlocks.failovers {
            let since = crate::primitives::duration::before(at, cap.period);
            let done = self.store.failovers_admitted_since(since).await?;
            if done >= cap.n as usize {
                return Ok(Some((
                    "failover_cap",
                    format!(
                        "failover cap: {} failover(s) per {} across all rules, {done} already",
                        cap.n,
                        humantime::format_duration(cap.period)
                    ),
                )));
            }
        }
        Ok(None)
    }

    /// An open zone or region incident (a scenario that absorbs others) in
    /// one of `regions`, other than `inc`, the failover `inc` undoes, an
    /// absorbed one, or a drill when `inc` is real.
    pub(super) async fn large_open_in(
        &self,
        inc: &Incident,
        regions: &BTreeSet<String>,
    ) -> Result<Option<Incident>, IncidentError> {
        if regions.is_empty() {
            return Ok(None);
        }
        for other in self.store.open_incidents().await? {
            // A scenario that absorbs others, or whatever covers a whole
            // region (grouped by region alone): a region outage that
            // absorbs nothing is no less a region outage.
            let large = self
                .guard
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .is_large(&other.scenario)
                || other
                    .group_labels
                    .keys()
                    .all(|k| k == "region" || k == crate::signal::DRILL_LABEL);
            if other.id != inc.id
                && inc.failback_of.as_ref() != Some(&other.id)
                && !drill_over_real(inc, &other)
                && other.parent_id.is_none()
                && large
                && other
                    .group_labels
                    .get("region")
                    .is_some_and(|r| regions.contains(r))
            {
                return Ok(Some(other));
            }
        }
        Ok(None)
    }

    /// The dispatch-time interlocks for `inc`'s plan, `starting` it or
    /// going on to its next step.
    pub(super) async fn dispatch_interlock(
        &self,
        inc: &Incident,
        starting: bool,
    ) -> Result<Option<Block>, IncidentError> {
        if let Some(switch) = self.store.kill_switch().await?.filter(|s| s.engaged) {
            return Ok(Some(Block {
                limit: "kill_switch",
                reason: format!(
                    "the dispatch kill switch is on (by {} at {}: {}); no step starts",
                    switch.actor,
                    switch.at.format("%H:%M:%SZ"),
                    switch.reason
                ),
            }));
        }
        let mut into = targets(inc);
        // A failback returns into its own region: that must be healthy too.
        if inc.failback_of.is_some() {
            into.extend(inc.group_labels.get("region").cloned());
        }
        if let Some(other) = self.large_open_in(inc, &into).await? {
            return Ok(Some(Block {
                limit: "dr_target",
                reason: format!(
                    "DR target region {} is not healthy: incident {} ({}) is open there",
                    other
                        .group_labels
                        .get("region")
                        .map(String::as_str)
                        .unwrap_or_default(),
                    other.id,
                    other.scenario
                ),
            }));
        }
        if starting {
            for other in self.store.incidents_in(&[State::Running]).await? {
                if other.id != inc.id && !drill_over_real(inc, &other) && conflicts(inc, &other) {
                    return Ok(Some(Block {
                        limit: "conflict",
                        reason: format!(
                            "conflicting plan: incident {} ({} {}) is running on the same \
                             service or scope",
                            other.id, other.scenario, other.group_key
                        ),
                    }));
                }
            }
        }
        Ok(None)
    }

    /// Whether `inc`'s plan must wait now: recorded as `plan_waiting` (once
    /// per wait, with the interlock) and counted; the caller looks again
    /// later. `starting`: the plan has not begun (conflicts count only then:
    /// a running plan keeps what it holds).
    pub async fn hold_if_interlocked(
        &self,
        inc: &Incident,
        starting: bool,
        at: DateTime<Utc>,
    ) -> Result<bool, IncidentError> {
        let Some(block) = self.dispatch_interlock(inc, starting).await? else {
            return Ok(false);
        };
        let events = self.store.events(&inc.id).await?;
        let already = events.last().is_some_and(|e| {
            e.kind == "plan_waiting" && e.data["limit"].as_str() == Some(block.limit)
        });
        if !already {
            tracing::warn!(incident = %inc.id, "{}", block.reason);
            let note = EventNote::new("plan_waiting", SYSTEM, block.reason)
                .with_data(json!({ "limit": block.limit }));
            self.store.append_event(&inc.id, at, &note).await?;
            self.metrics
                .incidents_held
                .with_label_values(&[block.limit])
                .inc();
            self.changed(&inc.id);
        }
        Ok(true)
    }
}
