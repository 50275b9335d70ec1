//! An operator's retry of a failed plan. The same plan (same digest, same
//! approval) runs again from its failed step(s); steps that succeeded are
//! not run again. Each retried step gets a new idempotency key, derived
//! from the incident, the step and the retry number: with the old key SSM
//! would answer with the execution that failed. The retry is one event
//! (`step_retry`) that also moves the incident `failed → approved`, so the
//! runner picks it up like any approved plan, with the concurrency and
//! interlock checks it makes before a plan and each step. Because the
//! retry is in the store before anything runs, a restart or a new leader
//! carries it out exactly as far as the log says.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::{Event, EventNote, Incident, IncidentError, Incidents, State};
use crate::plan::idempotency_key;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    #[error("no incident {0}")]
    NotFound(String),
    #[error("incident {id} is {state}; only a failed plan can be retried")]
    NotFailed { id: String, state: State },
    #[error(
        "incident {0} failed before any step ran (its plan could not be built); nothing to retry"
    )]
    NothingToRetry(String),
    #[error("incident {0} kept changing; try again")]
    Busy(String),
    #[error(transparent)]
    Incident(#[from] IncidentError),
}

impl From<StoreError> for RetryError {
    fn from(e: StoreError) -> Self {
        RetryError::Incident(e.into())
    }
}

/// The `(step index, new key)` pairs a `step_retry` event gives.
pub fn retried_keys(e: &Event) -> Vec<(usize, String)> {
    e.data["steps"]
        .as_array()
        .map(|steps| {
            steps
                .iter()
                .filter_map(|s| {
                    let index = usize::try_from(s["index"].as_u64()?).ok()?;
                    Some((index, s["idempotency_key"].as_str()?.to_owned()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Per step: whether its latest attempt succeeded (`None`: not run since
/// its last retry), and the key it ran under.
fn attempts(inc: &Incident, events: &[Event]) -> (Vec<Option<bool>>, Vec<String>) {
    let mut done = vec![None; inc.plan.steps.len()];
    let mut keys: Vec<String> = inc
        .plan
        .steps
        .iter()
        .map(|s| s.idempotency_key.clone())
        .collect();
    for e in events {
        if e.kind == "step_retry" {
            for (index, key) in retried_keys(e) {
                if let (Some(d), Some(k)) = (done.get_mut(index), keys.get_mut(index)) {
                    *d = None;
                    *k = key;
                }
            }
            continue;
        }
        let ok = match e.kind.as_str() {
            "step_succeeded" => true,
            "step_failed" => false,
            _ => continue,
        };
        if let Some(d) = e
            .data
            .get("index")
            .and_then(|i| i.as_u64())
            .and_then(|i| done.get_mut(i as usize))
        {
            *d = Some(ok);
        }
    }
    (done, keys)
}

impl Incidents {
    /// Retries the failed step(s) of a failed plan, as `actor`. A refusal
    /// (not failed, nothing to retry) is recorded on the incident as
    /// `retry_refused`, so the audit shows who asked for what.
    pub async fn retry(
        &self,
        id: &str,
        actor: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<Incident, RetryError> {
        for _ in 0..5 {
            let inc = self
                .store
                .incident(id)
                .await?
                .ok_or_else(|| RetryError::NotFound(id.to_owned()))?;
            if inc.state != State::Failed {
                let e = RetryError::NotFailed {
                    id: id.to_owned(),
                    state: inc.state,
                };
                return Err(self.refuse_retry(&inc, actor, e, at).await);
            }
            let events = self.store.events(id).await?;
            let (done, keys) = attempts(&inc, &events);
            let failed: Vec<usize> = (0..done.len())
                .filter(|&i| done[i] == Some(false))
                .collect();
            if failed.is_empty() {
                let e = RetryError::NothingToRetry(id.to_owned());
                return Err(self.refuse_retry(&inc, actor, e, at).await);
            }
            let n = events.iter().filter(|e| e.kind == "step_retry").count() + 1;
            let steps: Vec<serde_json::Value> = failed
                .iter()
                .map(|&i| {
                    json!({
                        "index": i,
                        "step": inc.plan.steps[i].name,
                        "idempotency_key": idempotency_key(&format!("{id}/retry{n}"), i),
                        "previous_key": keys[i],
                    })
                })
                .collect();
            let names: Vec<String> = failed
                .iter()
                .map(|&i| format!("{} ({})", i + 1, inc.plan.steps[i].name))
                .collect();
            let why = format!(
                "retry {n} by {actor} of step {}{}",
                names.join(", "),
                if reason.is_empty() {
                    String::new()
                } else {
                    format!(": {reason}")
                }
            );
            let note = EventNote::new("step_retry", actor, why.clone())
                .with_data(json!({ "retry": n, "reason": reason, "steps": steps }));
            match self.transition(&inc, State::Approved, at, note).await {
                Ok(approved) => {
                    tracing::warn!(incident = %id, "{why}");
                    self.approved.notify_one();
                    return Ok(approved);
                }
                Err(IncidentError::Store(StoreError::Conflict { .. })) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(RetryError::Busy(id.to_owned()))
    }

    /// Records a refused retry and hands the refusal back.
    async fn refuse_retry(
        &self,
        inc: &Incident,
        actor: &str,
        e: RetryError,
        at: DateTime<Utc>,
    ) -> RetryError {
        let note = EventNote::new("retry_refused", actor, e.to_string())
            .with_data(json!({ "state": inc.state }));
        match self.store.append_event(&inc.id, at, &note).await {
            Ok(_) => {
                self.changed(&inc.id);
                e
            }
            Err(store) => store.into(),
        }
    }
}
