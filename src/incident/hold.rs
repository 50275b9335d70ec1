//! Holds: an incident of a scenario that a larger one could absorb (a
//! service failure inside a zone failure) waits a short while before it
//! acts, like Alertmanager's `group_wait`. Alerts of a large failure arrive
//! over tens of seconds; without the wait, the first service's restart would
//! start before the zone incident has formed.
//!
//! While it waits the incident is recorded, planned and shown (`held`
//! event, state `planned`), but the guard is not asked, nobody is asked to
//! approve and nothing is dispatched. A larger incident that opens meanwhile
//! absorbs it, and it never acts. The hold's end is an incident time in the
//! event log, so it runs on the virtual clock of `test` and `replay` and
//! survives a restart.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::{Event, EventNote, Incident, IncidentError, Incidents, SYSTEM, State};
use crate::catalogue::Catalogue;
use crate::rules::{Rule, RuleSet};

/// When the hold recorded in these events ends, if there is one. The
/// `planned` event carries it, written with the plan, so a crash right
/// after planning cannot lose the hold.
pub(super) fn held_until(events: &[Event]) -> Option<DateTime<Utc>> {
    events
        .iter()
        .rfind(|e| e.kind == "planned")
        .and_then(|e| serde_json::from_value(e.data["hold_until"].clone()).ok())
}

/// When the incident was admitted since it was last planned (a released
/// incident is planned anew, and its earlier admission no longer counts).
pub(super) fn admitted_since_planned(events: &[Event]) -> Option<DateTime<Utc>> {
    let start = events
        .iter()
        .rposition(|e| e.kind == "planned")
        .unwrap_or(0);
    events[start..]
        .iter()
        .rfind(|e| e.kind == "admitted")
        .map(|e| e.at)
}

/// When an incident of `rule` detected at `at` stops waiting for a larger
/// one, if its rule waits at all.
pub(super) fn hold_deadline(rule: &Rule, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    chrono::Duration::from_std(rule.hold)
        .ok()
        .filter(|d| !d.is_zero())
        .and_then(|d| at.checked_add_signed(d))
}

impl Incidents {
    /// Right after planning: hold the incident until `until` if its rule
    /// waits for larger scenarios, else put it to the guard at once.
    pub(super) async fn hold_or_admit(
        &self,
        planned: Incident,
        rule: &Rule,
        catalogue: &Catalogue,
        at: DateTime<Utc>,
        until: Option<DateTime<Utc>>,
    ) -> Result<Incident, IncidentError> {
        let Some(until) = until else {
            return self.admit(planned, rule, catalogue, at).await;
        };
        let note = EventNote::new(
            "held",
            SYSTEM,
            format!(
                "held: waiting for larger scenarios until {} ({} hold)",
                until.format("%H:%M:%SZ"),
                humantime::format_duration(rule.hold)
            ),
        )
        .with_data(json!({ "until": until, "hold_secs": rule.hold.as_secs() }));
        self.store.append_event(&planned.id, at, &note).await?;
        self.metrics.holds.with_label_values(&["held"]).inc();
        self.changed(&planned.id);
        tracing::info!(incident = %planned.id, rule = %rule.name, %until, "held: waiting for larger scenarios");
        Ok(planned)
    }

    /// Holds that have run out by `now` without a larger incident taking
    /// the incident over: they go on exactly as if they had never waited,
    /// with `now` as their admission time. Returns how many went on.
    pub async fn release_holds(
        &self,
        now: DateTime<Utc>,
        rules: &RuleSet,
    ) -> Result<usize, IncidentError> {
        let mut released = 0;
        for inc in self.store.incidents_in(&[State::Planned]).await? {
            if inc.parent_id.is_some() || inc.closed_at.is_some() {
                continue;
            }
            let events = self
                .store
                .events_of_kinds(&inc.id, &["planned", "admitted"])
                .await?;
            let due = held_until(&events).is_some_and(|until| until <= now);
            if !due || admitted_since_planned(&events).is_some() {
                continue;
            }
            let Some(rule) = rules.rules.iter().find(|r| r.name == inc.rule) else {
                continue;
            };
            let note = EventNote::new(
                "hold_ended",
                SYSTEM,
                "no larger incident formed during the hold; acting alone",
            );
            self.store.append_event(&inc.id, now, &note).await?;
            self.metrics.holds.with_label_values(&["released"]).inc();
            self.admit(inc, rule, &rules.catalogue, now).await?;
            released += 1;
        }
        Ok(released)
    }
}
