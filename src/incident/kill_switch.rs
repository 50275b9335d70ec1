//! The global dispatch kill switch. While it is on no step starts, on any
//! replica or leader: it is a dispatch-time interlock (see `interlock.rs`),
//! read from the store before a plan starts and before each step, so it
//! takes hold within the runner's next scan (one second) and survives
//! restarts and leader changes. Steps already running are left to finish
//! (killing a failover half-way is worse than letting it end) unless the
//! operator asks for running plans to be aborted too. Everything else goes
//! on: detection, plans, approvals; approved plans wait, each with a
//! `plan_waiting` event, and start when the switch is off again.

use chrono::{DateTime, Utc};

use super::{IncidentError, Incidents, State};
use crate::store::KillSwitch;

/// What changing the switch did.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct SwitchChange {
    pub switch: KillSwitch,
    /// Running or approved plans asked to stop (`abort_running`).
    pub aborted: Vec<String>,
}

impl Incidents {
    /// The switch in force (off if it never changed).
    pub async fn kill_switch(&self) -> Result<KillSwitch, IncidentError> {
        Ok(self.store.kill_switch().await?.unwrap_or(KillSwitch {
            engaged: false,
            actor: String::new(),
            reason: String::new(),
            abort_running: false,
            at: DateTime::<Utc>::UNIX_EPOCH,
        }))
    }

    /// Turns the switch on or off, recorded with who and why; on with
    /// `abort_running`, every approved or running plan is aborted as an
    /// operator's abort would (the runner stops steps in flight).
    pub async fn set_kill_switch(
        &self,
        engaged: bool,
        actor: &str,
        reason: &str,
        abort_running: bool,
        at: DateTime<Utc>,
    ) -> Result<SwitchChange, IncidentError> {
        let switch = KillSwitch {
            engaged,
            actor: actor.to_owned(),
            reason: reason.to_owned(),
            abort_running: engaged && abort_running,
            at,
        };
        self.store.set_kill_switch(&switch).await?;
        self.metrics.kill_switch.set(i64::from(engaged));
        tracing::warn!(
            engaged,
            actor,
            reason,
            abort_running = switch.abort_running,
            "dispatch kill switch changed"
        );
        let mut aborted = Vec::new();
        if switch.abort_running {
            let why = format!("dispatch kill switch: {reason}");
            for inc in self
                .store
                .incidents_in(&[State::Approved, State::Running])
                .await?
            {
                match self.abort(&inc.id, actor, &why, at).await {
                    Ok(_) => aborted.push(inc.id),
                    // Finished meanwhile: nothing left to stop.
                    Err(super::AbortError::NotAbortable { .. }) => {}
                    Err(super::AbortError::Incident(e)) => return Err(e),
                    Err(e) => tracing::error!(incident = %inc.id, "kill switch abort: {e}"),
                }
            }
        }
        Ok(SwitchChange { switch, aborted })
    }
}
