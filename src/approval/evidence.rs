//! Whether an incident's evidence still holds. An approval is for a failure
//! that is happening: once every alert behind it has resolved (or the
//! missing heartbeat is back), nobody may approve acting on it, though the
//! incident stays open for its window so that a flap does not open a
//! second one.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::signal::Beat;

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

/// Whether a heartbeat incident's evidence still holds at `now`: some
/// heartbeat is linked to it and every one has been silent for the rule's
/// `after`. The same test as the rule engine's (`Group::holds`). (An alert
/// incident's evidence holds while any of its signals fires: the store
/// answers that, [`crate::store::Store::incident_firing`].)
pub fn heartbeat_absent(hb: &Heartbeat, signals: &[Beat], now: DateTime<Utc>) -> bool {
    let after = chrono::Duration::seconds(i64::try_from(hb.after_secs).unwrap_or(i64::MAX));
    let mut beats = signals
        .iter()
        .filter(|s| crate::rules::model::is_beat(hb.alert.as_deref(), &s.name))
        .peekable();
    beats.peek().is_some() && beats.all(|s| now - s.last_seen >= after)
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

    fn seen(name: &str, at: i64) -> Beat {
        Beat {
            name: name.into(),
            last_seen: t(at),
        }
    }

    #[test]
    fn heartbeat_holds_while_silent() {
        let hb = Heartbeat {
            alert: Some("Watchdog".into()),
            after_secs: 120,
        };
        let other = seen("Other", 299);
        assert!(heartbeat_absent(
            &hb,
            &[seen("Watchdog", 0), other.clone()],
            t(300)
        ));
        assert!(
            !heartbeat_absent(&hb, &[seen("Watchdog", 250), other.clone()], t(300)),
            "the heartbeat is back"
        );
        assert!(
            heartbeat_absent(&hb, &[seen("Watchdog", 250)], t(370)),
            "and gone again"
        );
        assert!(
            !heartbeat_absent(&hb, &[other], t(300)),
            "no heartbeat at all"
        );
    }
}
