//! Incidents: the model, the lifecycle, and the one function through which
//! every state change goes ([`Incidents::save`]), which persists the
//! change and its audit event in one transaction before anyone acts on it.
//!
//! - [`incidents`]: the handle and `save`/`transition`;
//! - [`decide`]: the rule engine's decisions applied (open and plan, attach,
//!   absorb, close);
//! - [`planning`]: the plan, rendered with the evidence, revised while new
//!   evidence arrives before approval, frozen after;
//! - [`hold`]: smaller scenarios wait for larger ones before acting;
//! - [`admission`]: the guard, dry-run, automatic approval or a request;
//! - [`approval`]: votes against the request in force;
//! - [`evidence`]: approval paused while its evidence is gone;
//! - [`expiry`]: approval deadlines (escalate or expire);
//! - [`abort`]: an operator stopping an approved or running plan;
//! - [`retry`]: an operator running a failed plan again from its failed
//!   step(s);
//! - [`declare`]: an operator opening an incident by hand;
//! - [`silence`]: silences for planned work, applied at admission;
//! - [`failback`]: after a failover succeeds, its failback, offered for
//!   approval once the failed region has been healthy long enough;
//! - [`kill_switch`]: the global dispatch kill switch;
//! - [`release`]: absorbed incidents stand alone again when their parent
//!   ends without acting.

mod abort;
mod admission;
mod approval;
mod decide;
mod declare;
mod evidence;
mod expiry;
mod failback;
mod failback_config;
mod hold;
mod incidents;
mod interlock;
mod kill_switch;
mod planning;
mod release;
mod retry;
mod silence;

pub use abort::{AbortError, Aborting, abort_request};
pub use admission::approver_groups;
pub use approval::ApprovalError;
pub use decide::{Attachment, NewIncident};
pub use declare::{Declaration, DeclareError, rule_for};
pub use failback_config::FailbackConfig;
pub use incidents::{IncidentError, Incidents, Interlocks};
pub use interlock::targets;
pub use kill_switch::SwitchChange;
pub use planning::{not_ready_runbooks, uncovered};
pub use retry::{RetryError, retried_keys};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::plan::Plan;
use crate::signal::Labels;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = IncidentState)]
pub enum State {
    Detected,
    Planned,
    AwaitingApproval,
    Approved,
    Running,
    Succeeded,
    Failed,
    Denied,
    Expired,
    Cancelled,
    Suppressed,
    /// Stopped by an operator after approval: no further step ran.
    Aborted,
}

impl State {
    pub const ALL: [State; 12] = [
        State::Detected,
        State::Planned,
        State::AwaitingApproval,
        State::Approved,
        State::Running,
        State::Succeeded,
        State::Failed,
        State::Denied,
        State::Expired,
        State::Cancelled,
        State::Suppressed,
        State::Aborted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Detected => "detected",
            State::Planned => "planned",
            State::AwaitingApproval => "awaiting_approval",
            State::Approved => "approved",
            State::Running => "running",
            State::Succeeded => "succeeded",
            State::Failed => "failed",
            State::Denied => "denied",
            State::Expired => "expired",
            State::Cancelled => "cancelled",
            State::Suppressed => "suppressed",
            State::Aborted => "aborted",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|st| st.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            State::Succeeded
                | State::Failed
                | State::Denied
                | State::Expired
                | State::Cancelled
                | State::Suppressed
                | State::Aborted
        )
    }

    /// The lifecycle of DESIGN.md §5. Anything not listed is refused, so a
    /// bug or a replayed request cannot, say, run a denied incident.
    pub fn can_become(self, to: State) -> bool {
        use State::*;
        match (self, to) {
            (Detected, Planned) => true,
            (Planned, AwaitingApproval | Approved | Suppressed) => true,
            (AwaitingApproval, Approved | Denied | Expired | Cancelled) => true,
            // Absorbed by a larger incident before anyone approved it.
            (AwaitingApproval, Suppressed) => true,
            (Approved, Running | Cancelled) => true,
            // Absorbed by a larger incident after approval: it stops before
            // its next step.
            (Approved | Running, Suppressed) => true,
            (Running, Succeeded | Failed) => true,
            // An operator's abort: before the first step, or between steps.
            (Approved | Running, Aborted) => true,
            // Released by a parent that ended without acting (`release.rs`):
            // it is planned again from its own evidence. `Incidents::save`
            // lets only a `released` event make this change.
            (Suppressed, Detected) => true,
            // Evidence gone, inhibited by a larger incident, or rate limited
            // before anything ran.
            (Detected | Planned, Cancelled | Suppressed) => true,
            // The plan could not be built (a template named a missing label).
            (Detected, Failed) => true,
            // An operator's retry of a failed step (`retry.rs`): the same
            // plan is approved again and the runner carries on from the
            // failed step. `Incidents::save` lets only a `step_retry` event
            // make this change, so no other path revives a failed plan.
            (Failed, Approved) => true,
            _ => false,
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Incident {
    pub id: String,
    pub rule: String,
    pub scenario: String,
    pub severity: String,
    /// Rule name plus the group-by label values: at most one open incident
    /// per key.
    pub group_key: String,
    #[schema(inline)]
    pub group_labels: Labels,
    pub state: State,
    /// The larger incident this one was absorbed into, if any.
    pub parent_id: Option<String>,
    pub plan: Plan,
    /// Affected services, in recovery order.
    pub services: Vec<String>,
    /// Detection time plus the smallest RTO of the affected services.
    pub rto_deadline: Option<DateTime<Utc>>,
    /// When a pending approval times out.
    pub approval_deadline: Option<DateTime<Utc>>,
    pub detected_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Set when the evidence is gone; an incident with no `closed_at` is
    /// open and absorbs new signals of its group.
    pub closed_at: Option<DateTime<Utc>>,
    /// Bumped by every change; a write with a stale version is refused.
    pub version: i64,
    /// Opened by a drill's synthetic signals (`POST /api/v1/drills`): its
    /// plan runs drill runbooks or is recorded, never the real ones.
    #[serde(default)]
    pub drill: bool,
    /// For a failback: the failover incident it undoes. A failback is
    /// prepared when its failover succeeds and never runs without its own
    /// approval (see the `failback` module).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failback_of: Option<String>,
}

/// One line of the append-only incident log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    pub seq: i64,
    pub incident_id: String,
    pub at: DateTime<Utc>,
    pub kind: String,
    pub from_state: Option<State>,
    pub to_state: Option<State>,
    pub actor: String,
    pub reason: String,
    pub data: serde_json::Value,
}

/// What a caller wants logged with a change.
#[derive(Debug, Clone)]
pub struct EventNote {
    pub kind: &'static str,
    pub actor: String,
    pub reason: String,
    pub data: serde_json::Value,
}

impl EventNote {
    pub fn new(kind: &'static str, actor: impl Into<String>, reason: impl Into<String>) -> Self {
        EventNote {
            kind,
            actor: actor.into(),
            reason: reason.into(),
            data: serde_json::Value::Null,
        }
    }

    pub fn with_data(mut self, data: serde_json::Value) -> Self {
        self.data = data;
        self
    }
}

/// The actor name for what dr-reactor decides by itself.
pub const SYSTEM: &str = "dr-reactor";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_names_round_trip() {
        for s in State::ALL {
            assert_eq!(State::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn terminal_states_go_nowhere_but_a_retry_or_a_release() {
        for from in State::ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in State::ALL {
                let retry = (from, to) == (State::Failed, State::Approved);
                let release = (from, to) == (State::Suppressed, State::Detected);
                assert_eq!(from.can_become(to), retry || release, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn denied_incident_cannot_run() {
        assert!(!State::Denied.can_become(State::Running));
        assert!(!State::AwaitingApproval.can_become(State::Running));
        assert!(State::AwaitingApproval.can_become(State::Approved));
    }
}
