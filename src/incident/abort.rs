//! An operator's abort. An approved plan that has not started is aborted at
//! once. A running one is asked to stop (`abort_requested`): only the
//! leader's runner talks to AWS, so it is the runner that stops the step in
//! flight (StopAutomationExecution), dispatches nothing further and records
//! the end (`aborted`). The request is in the store, so a restart or a new
//! leader carries it out too.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::{EventNote, Incident, IncidentError, Incidents, State};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AbortError {
    #[error("no incident {0}")]
    NotFound(String),
    #[error("incident {id} is {state}; only an approved or running plan can be aborted")]
    NotAbortable { id: String, state: State },
    #[error("incident {0} kept changing; try again")]
    Busy(String),
    #[error(transparent)]
    Incident(#[from] IncidentError),
}

impl From<StoreError> for AbortError {
    fn from(e: StoreError) -> Self {
        AbortError::Incident(e.into())
    }
}

/// The operator's abort request in force, if there is one: the latest
/// since the last retry, since a retry is the newer decision and an abort
/// asked of the earlier run must not stop the retried one at once.
pub fn abort_request(events: &[super::Event]) -> Option<super::Event> {
    events
        .iter()
        .rev()
        .take_while(|e| e.kind != "step_retry")
        .find(|e| e.kind == "abort_requested")
        .cloned()
}

/// Where an abort stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Aborting {
    /// Nothing had run: the incident is `aborted`.
    Done(Incident),
    /// A step may be in flight: the runner stops it and ends the incident.
    Requested(Incident),
}

impl Incidents {
    pub async fn abort(
        &self,
        id: &str,
        actor: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<Aborting, AbortError> {
        let why = if reason.is_empty() {
            format!("aborted by {actor}")
        } else {
            format!("aborted by {actor}: {reason}")
        };
        for _ in 0..5 {
            let inc = self
                .store
                .incident(id)
                .await?
                .ok_or_else(|| AbortError::NotFound(id.to_owned()))?;
            match inc.state {
                State::Approved => {
                    let note = EventNote::new("aborted", actor, format!("{why}; nothing ran"));
                    match self.transition(&inc, State::Aborted, at, note).await {
                        Ok(done) => return Ok(Aborting::Done(done)),
                        // The runner started it meanwhile: ask it to stop.
                        Err(IncidentError::Store(StoreError::Conflict { .. })) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
                State::Running => {
                    let asked = abort_request(&self.store.events(id).await?).is_some();
                    if !asked {
                        let note = EventNote::new("abort_requested", actor, why.clone())
                            .with_data(json!({ "reason": reason }));
                        self.store.append_event(id, at, &note).await?;
                        self.changed(id);
                        tracing::warn!(incident = %id, "{why}");
                    }
                    return Ok(Aborting::Requested(inc));
                }
                state => {
                    return Err(AbortError::NotAbortable {
                        id: id.to_owned(),
                        state,
                    });
                }
            }
        }
        Err(AbortError::Busy(id.to_owned()))
    }
}
