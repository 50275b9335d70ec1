//! Releasing absorbed incidents. An incident absorbed by a larger one never
//! acts alone, on the promise that the larger one acts for it. When the
//! larger one ends without acting (denied, expired, cancelled, silenced,
//! held by a limit) or closes, that promise is void: each incident it
//! absorbed is looked at again, at once and after any restart (the pipeline
//! asks at every tick, from the store).
//!
//! - Its own evidence still holds: it is *released* (a `released` event
//!   naming the parent) and goes on as if it had never been absorbed. It is
//!   planned anew from its evidence, its hold starts again, then the guard,
//!   approval and dispatch follow.
//! - Its evidence has gone: it closes, saying so.
//!
//! An absorbed incident therefore never outlives its parent in `suppressed`.
//! A parent in shadow mode (dry-run) is not "ended without acting": live, it
//! would have acted, and shadow mode shows what live would do.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::{Event, EventNote, Incident, IncidentError, Incidents, SYSTEM, State};
use crate::approval::evidence::Heartbeat;
use crate::rules::RuleSet;

/// Whether the event that suppressed an incident records shadow mode (the
/// suppression a dry run ends in), not a refusal to act.
pub(super) fn shadow_suppressed(events: &[Event]) -> bool {
    events
        .iter()
        .rfind(|e| e.to_state == Some(State::Suppressed))
        .is_some_and(|e| e.data["shadow"] == true)
}

impl Incidents {
    /// Why `parent` no longer acts for what it absorbed, if it does not:
    /// it closed, or it ended without acting while still open.
    pub(super) async fn no_longer_acting(
        &self,
        parent: &Incident,
    ) -> Result<Option<String>, IncidentError> {
        if parent.closed_at.is_some() {
            return Ok(Some(format!(
                "incident {} ({}) closed {}",
                parent.id, parent.scenario, parent.state
            )));
        }
        let ended = match parent.state {
            State::Denied | State::Expired | State::Cancelled => true,
            // Absorbed in turn: the larger one acts for all of them. In
            // shadow mode: live, it would have acted.
            State::Suppressed => {
                parent.parent_id.is_none()
                    && !shadow_suppressed(
                        &self
                            .store
                            .events_of_kinds(&parent.id, &["suppressed"])
                            .await?,
                    )
            }
            _ => false,
        };
        Ok(ended.then(|| {
            format!(
                "incident {} ({}) ended {} without acting",
                parent.id, parent.scenario, parent.state
            )
        }))
    }

    /// Every open absorbed incident whose parent no longer acts for it is
    /// released or closed (see the module doc). Returns the keys of those
    /// released, for the engine ([`crate::rules::Engine::release`]).
    pub async fn release_stranded(
        &self,
        now: DateTime<Utc>,
        rules: &RuleSet,
    ) -> Result<Vec<String>, IncidentError> {
        let mut released = Vec::new();
        for child in self.store.open_incidents().await? {
            let Some(parent_id) = child.parent_id.clone() else {
                continue;
            };
            if child.state != State::Suppressed {
                continue;
            }
            let why = match self.store.incident(&parent_id).await? {
                Some(parent) => match self.no_longer_acting(&parent).await? {
                    Some(why) => why,
                    None => continue,
                },
                None => format!("incident {parent_id} is gone"),
            };
            let rule = rules.rules.iter().find(|r| r.name == child.rule);
            let heartbeat = rule.and_then(|r| Heartbeat::of(r));
            let holds = self.declared(&child.id).await?
                || self.evidence_of(&child.id, heartbeat.as_ref(), now).await?;
            match rule {
                Some(rule) if holds => {
                    released.push(child.group_key.clone());
                    self.release(child, rule, &why, now, rules).await?;
                }
                _ => {
                    let reason = if holds {
                        format!("{why}; its rule {} is no longer loaded", child.rule)
                    } else {
                        format!("{why}, and its own evidence no longer holds")
                    };
                    self.close(&child, now, &reason).await?;
                }
            }
        }
        Ok(released)
    }

    /// Stands `child` alone again: back to `detected` with the parent named,
    /// then planned from its evidence with its hold starting now.
    async fn release(
        &self,
        child: Incident,
        rule: &crate::rules::Rule,
        why: &str,
        now: DateTime<Utc>,
        rules: &RuleSet,
    ) -> Result<Incident, IncidentError> {
        let parent = child.parent_id.clone();
        let note = EventNote::new(
            "released",
            SYSTEM,
            format!("released: {why}; its own evidence still holds, so it acts on its own"),
        )
        .with_data(json!({ "parent": parent }));
        let after = Incident {
            state: State::Detected,
            parent_id: None,
            ..child.clone()
        };
        let detected = self.save(&child, after, now, note).await?;
        tracing::warn!(incident = %detected.id, parent = ?parent, "released from a parent that ended without acting");
        self.metrics
            .holds
            .with_label_values(&["released_by_parent"])
            .inc();
        let affected = self.detected_services(&detected.id).await?;
        self.plan(detected, rule, &affected, &rules.catalogue, now)
            .await
    }
}
