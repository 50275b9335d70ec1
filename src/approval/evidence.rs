//! Whether an incident's evidence still holds. An approval is for a failure
//! that is happening: once every alert behind it has resolved (or the
//! missing heartbeat is back), nobody may approve acting on it, though the
//! incident stays open for its window so that a flap does not open a
//! second one.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::signal::{Signal, Status};

/// A heartbeat-absence rule's condition, snapshot with the approval request:
/// for such an incident the evidence is a silence, not a firing alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Only signals of this name are heartbeats (all of them without it).
    #[serde(default)]
    pub alert: Option<String>,
    /// Silent this long is absent.
    pub after_secs: u64,
}

impl Heartbeat {
    pub fn of(rule: &crate::rules::Rule) -> Option<Heartbeat> {
        rule.when.absent.as_ref().map(|a| Heartbeat {
            alert: a.alert.clone(),
            after_secs: a.after.as_secs(),
        })
    }
}

/// Whether the evidence still holds at `now`, given the incident's signals
/// and when each was last received. A point event (firing, already ended
/// when received) cannot resolve, so it holds until the incident closes.
pub fn holds(
    heartbeat: Option<&Heartbeat>,
    signals: &[(Signal, DateTime<Utc>)],
    now: DateTime<Utc>,
) -> bool {
    match heartbeat {
        // The same test as the rule engine's (`Group::holds`).
        Some(hb) => {
            let after = chrono::Duration::seconds(i64::try_from(hb.after_secs).unwrap_or(i64::MAX));
            let mut beats = signals
                .iter()
                .filter(|(s, _)| crate::rules::model::is_beat(hb.alert.as_deref(), &s.name))
                .peekable();
            beats.peek().is_some() && beats.all(|(_, seen)| now - *seen >= after)
        }
        None => signals.iter().any(|(s, _)| s.status == Status::Firing),
    }
}

/// Whether the incident's log says its approval is paused: the latest of
/// `approval_paused` and `approval_resumed` is a pause.
pub fn paused(events: &[crate::incident::Event]) -> bool {
    events
        .iter()
        .rfind(|e| matches!(e.kind.as_str(), "approval_paused" | "approval_resumed"))
        .is_some_and(|e| e.kind == "approval_paused")
}

/// What the Slack message and the pause event say.
pub const PAUSED: &str = "evidence resolved: approval paused";

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn signal(name: &str, status: Status) -> Signal {
        Signal {
            source: "alertmanager".into(),
            fingerprint: name.into(),
            name: name.into(),
            labels: Default::default(),
            annotations: Default::default(),
            status,
            starts_at: t(0),
            ends_at: None,
            received_at: t(0),
        }
    }

    #[test]
    fn alerts_hold_while_any_fires() {
        let a = (signal("A", Status::Firing), t(0));
        let b = (signal("B", Status::Resolved), t(5));
        assert!(holds(None, &[a.clone(), b.clone()], t(10)));
        let a = (signal("A", Status::Resolved), t(6));
        assert!(!holds(None, &[a, b], t(10)));
        assert!(!holds(None, &[], t(10)), "no evidence is none");
    }

    #[test]
    fn heartbeat_holds_while_silent() {
        let hb = Heartbeat {
            alert: Some("Watchdog".into()),
            after_secs: 120,
        };
        let beat = |seen| (signal("Watchdog", Status::Firing), t(seen));
        let other = (signal("Other", Status::Firing), t(299));
        assert!(holds(Some(&hb), &[beat(0), other.clone()], t(300)));
        assert!(
            !holds(Some(&hb), &[beat(250), other.clone()], t(300)),
            "the heartbeat is back"
        );
        assert!(holds(Some(&hb), &[beat(250)], t(370)), "and gone again");
        assert!(!holds(Some(&hb), &[other], t(300)), "no heartbeat at all");
    }
}
