//! Running approved plans: steps in order, each through the [`Dispatcher`],
//! every step's start and result persisted before the next thing happens.
//!
//! Restart safety comes from the event log, not from memory. Before a step
//! is sent, `step_dispatching` is recorded; an SSM step's execution id is
//! recorded (`step_started`) before it is polled; its end is recorded
//! (`step_succeeded` / `step_failed`). A runner that starts (after a crash,
//! or on a new leader) reads the log and carries on: a step with a result is
//! done; a step with an execution id is polled again; a step that was being
//! dispatched is sent again with the same idempotency key, which SSM answers
//! with the execution it already started. Lambda has no such token: a
//! function invoked just before a crash may be invoked again with the same
//! key, and runbook functions must treat a repeated key as done.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::{Dispatcher, Progress, Started, StepOutcome};
use crate::incident::{
    Event, EventNote, Incident, IncidentError, Incidents, SYSTEM, State, abort_request,
    retried_keys,
};
use crate::leadership::Leadership;
use crate::plan::Step;
use crate::store::{Store, StoreError};
use crate::telemetry::Metrics;

/// What the log says about one step.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct StepLog {
    pub dispatching: bool,
    pub execution_id: Option<String>,
    /// When its execution was recorded as started: the step timeout counts
    /// from here, across restarts.
    pub started_at: Option<DateTime<Utc>>,
    pub outcome: Option<StepOutcome>,
    /// The key an operator's retry gave the step, in place of the plan's:
    /// SSM would answer the plan's key with the execution that failed.
    pub retry_key: Option<String>,
    /// When it was (last) sent, and when its result was recorded: the
    /// step's time in the recovery report.
    pub dispatched_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
}

/// How running one step ended.
enum Ended {
    Step(StepOutcome),
    /// An operator's abort (the `abort_requested` event) stopped it.
    Aborted(Event),
}

/// Reads the steps' progress out of an incident's events: the runner
/// resumes from it, the Slack message shows it.
pub fn step_logs(steps: usize, events: &[Event]) -> Vec<StepLog> {
    let mut logs = vec![StepLog::default(); steps];
    for e in events {
        if e.kind == "step_retry" {
            // A retry starts its steps afresh: what the earlier attempt
            // recorded is history, and the step runs again under its new key.
            for (index, key) in retried_keys(e) {
                if let Some(log) = logs.get_mut(index) {
                    *log = StepLog {
                        retry_key: Some(key),
                        ..StepLog::default()
                    };
                }
            }
            continue;
        }
        let Some(log) = e
            .data
            .get("index")
            .and_then(|i| i.as_u64())
            .and_then(|i| logs.get_mut(i as usize))
        else {
            continue;
        };
        match e.kind.as_str() {
            "step_dispatching" => {
                log.dispatching = true;
                log.dispatched_at = Some(e.at);
            }
            "step_started" => {
                log.execution_id = e.data["execution_id"].as_str().map(String::from);
                log.started_at = Some(e.at);
            }
            "step_succeeded" | "step_failed" => {
                log.outcome = serde_json::from_value(e.data["outcome"].clone()).ok();
                log.ended_at = Some(e.at);
            }
            _ => {}
        }
    }
    logs
}

pub struct Runner {
    incidents: Incidents,
    store: Store,
    dispatcher: Arc<Dispatcher>,
    poll_interval: Duration,
    metrics: Metrics,
    leadership: Arc<Leadership>,
    /// Held from the concurrency check to the move to `running`, so that
    /// two approved plans of one rule cannot both see room for one.
    starting: tokio::sync::Mutex<()>,
}

impl Runner {
    /// `incidents` is the leader's (fenced) handle; `leadership` is asked
    /// before every AWS call.
    pub fn new(
        incidents: Incidents,
        dispatcher: Arc<Dispatcher>,
        poll_interval: Duration,
        metrics: Metrics,
        leadership: Arc<Leadership>,
    ) -> Arc<Runner> {
        Arc::new(Runner {
            store: incidents.store().clone(),
            incidents,
            dispatcher,
            poll_interval,
            metrics,
            leadership,
            starting: tokio::sync::Mutex::new(()),
        })
    }

    /// Drives every approved or running incident, now, whenever one is
    /// approved here, and at each scan (approvals taken by another replica
    /// show up there), until `stop` resolves. Incidents left running by a
    /// previous process or leader are picked up on the first scan. On stop
    /// the drivers are aborted where they are: their progress is in the
    /// event log, and whoever runs plans next resumes from it.
    pub async fn run(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        let approved = self.incidents.approved_signal();
        let mut scan = tokio::time::interval(Duration::from_secs(1));
        scan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Incidents being driven, so a scan does not start a second driver
        // for one already under way.
        let mut drivers = tokio::task::JoinSet::new();
        let mut driving = std::collections::HashMap::new();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                Some(done) = drivers.join_next_with_id() => {
                    let task = match done {
                        Ok((task, ())) => task,
                        Err(e) => e.id(),
                    };
                    driving.retain(|_, t| *t != task);
                    continue;
                }
                _ = approved.notified() => {}
                _ = scan.tick() => {}
            }
            let list = match self
                .store
                .incidents_in(&[State::Approved, State::Running])
                .await
            {
                Ok(list) => list,
                Err(e) => {
                    tracing::error!("listing incidents to run: {e}");
                    continue;
                }
            };
            for inc in list {
                if driving.contains_key(&inc.id) {
                    continue;
                }
                let me = Arc::clone(&self);
                let id = inc.id.clone();
                let task = drivers.spawn(async move {
                    let id = inc.id.clone();
                    if let Err(e) = me.drive(inc).await {
                        me.metrics
                            .pipeline_errors
                            .with_label_values(&["dispatch"])
                            .inc();
                        tracing::error!(incident = %id, "running the plan stopped: {e}; it will be resumed");
                    }
                });
                driving.insert(id, task.id());
            }
        }
        drivers.abort_all();
    }

    async fn drive(&self, mut inc: Incident) -> Result<(), IncidentError> {
        if inc.state == State::Approved {
            // max_concurrent again, right before anything is dispatched: the
            // limit may have filled since approval. A plan over it waits, and
            // the next scan looks again.
            let _starting = self.starting.lock().await;
            if self
                .incidents
                .hold_if_over_limit(&inc, &[State::Running], Utc::now())
                .await?
                || self
                    .incidents
                    .hold_if_interlocked(&inc, true, Utc::now())
                    .await?
            {
                return Ok(());
            }
            let note = EventNote::new(
                "running",
                SYSTEM,
                format!("running {} step(s)", inc.plan.steps.len()),
            );
            inc = match self
                .incidents
                .transition(&inc, State::Running, Utc::now(), note)
                .await
            {
                Ok(running) => running,
                // Changed under us: an operator aborted it, say. The next
                // scan sees what it is now.
                Err(IncidentError::Store(StoreError::Conflict { .. })) => return Ok(()),
                Err(e) => return Err(e),
            };
        }
        let logs = self.step_logs(&inc).await?;
        let continue_on_failure = inc.plan.continue_on_failure;
        let mut failed: Option<String> = None;
        for (index, planned) in inc.plan.steps.iter().enumerate() {
            let log = logs.get(index).cloned().unwrap_or_default();
            let retried;
            let step = match &log.retry_key {
                Some(key) => {
                    retried = Step {
                        idempotency_key: key.clone(),
                        ..planned.clone()
                    };
                    &retried
                }
                None => planned,
            };
            let outcome = match log.outcome {
                Some(o) => o,
                None => {
                    // Checked before every step, not once: a larger incident
                    // may have absorbed this one while the last step ran.
                    if let Some(now) = self.stopped(&inc).await? {
                        return self.note_stopped(&now, index).await;
                    }
                    // The world may have changed since the plan started
                    // (its DR region went down): wait, and look again at
                    // the next scan.
                    if self
                        .incidents
                        .hold_if_interlocked(&inc, false, Utc::now())
                        .await?
                    {
                        return Ok(());
                    }
                    // No step starts after an abort, whenever it came; one
                    // already running (a restart mid-step) is stopped.
                    if let Some(request) = abort_request(&self.store.events(&inc.id).await?) {
                        let reached = match &log.execution_id {
                            Some(execution_id) => {
                                let why = format!("stopped: {}", request.reason);
                                self.stop(&inc, index, step, execution_id, "Cancelled", why)
                                    .await?;
                                index + 1
                            }
                            None if log.dispatching => {
                                // Sent, but whether SSM started it is not
                                // recorded; sending it again to learn would
                                // start it. A person has to look.
                                tracing::error!(incident = %inc.id, step = index, idempotency_key = %step.idempotency_key, "aborted while step {} was being sent: check SSM for an execution with this ClientToken", index + 1);
                                index + 1
                            }
                            None => index,
                        };
                        return self.end_aborted(&inc, &request, reached).await;
                    }
                    match self.run_step(&inc, index, step, log).await? {
                        Ended::Step(outcome) => outcome,
                        Ended::Aborted(request) => {
                            return self.end_aborted(&inc, &request, index + 1).await;
                        }
                    }
                }
            };
            if !outcome.success {
                let why = format!(
                    "step {} ({}) failed: {}",
                    index + 1,
                    step.name,
                    outcome.failure.as_deref().unwrap_or(&outcome.status)
                );
                failed.get_or_insert(why);
                if !continue_on_failure {
                    break;
                }
            }
        }
        let (to, note) = match failed {
            Some(why) => (State::Failed, EventNote::new("failed", SYSTEM, why)),
            None => (
                State::Succeeded,
                EventNote::new(
                    "succeeded",
                    SYSTEM,
                    format!("all {} step(s) succeeded", inc.plan.steps.len()),
                ),
            ),
        };
        if let Some(now) = self.stopped(&inc).await? {
            return self.note_stopped(&now, inc.plan.steps.len()).await;
        }
        self.incidents
            .transition(&inc, to, Utc::now(), note)
            .await?;
        Ok(())
    }

    /// The operator's abort, carried out: the incident ends `aborted`, by
    /// whoever asked.
    async fn end_aborted(
        &self,
        inc: &Incident,
        request: &Event,
        reached: usize,
    ) -> Result<(), IncidentError> {
        let note = EventNote::new(
            "aborted",
            request.actor.clone(),
            format!(
                "{}; {reached} of {} step(s) had started, none will follow",
                request.reason,
                inc.plan.steps.len()
            ),
        );
        self.incidents
            .transition(inc, State::Aborted, Utc::now(), note)
            .await?;
        Ok(())
    }

    /// Stops a running execution (abort or timeout) and records the step as
    /// failed with `status`. If the stop call fails, the step is failed all
    /// the same, and says that the execution may still be running.
    ///
    /// An execution that has already ended is recorded as it ended, not
    /// stopped again: a process killed between its stop call and the
    /// record of it finds the execution Cancelled after the restart.
    async fn stop(
        &self,
        inc: &Incident,
        index: usize,
        step: &Step,
        execution_id: &str,
        status: &str,
        why: String,
    ) -> Result<StepOutcome, IncidentError> {
        if let Ok(Progress::Done(mut outcome)) = self.dispatcher.poll(step, execution_id).await {
            if !outcome.success {
                outcome.failure = Some(format!("{why}; execution already {}", outcome.status));
            }
            return self.finish(inc, index, outcome).await;
        }
        let failure = match self.dispatcher.stop(step, execution_id).await {
            Ok(()) => format!("{why}; execution stopped"),
            Err(e) => {
                format!("{why}; stopping the execution failed ({e}): it may still be running")
            }
        };
        let outcome = StepOutcome {
            success: false,
            execution_id: Some(execution_id.to_owned()),
            status: status.to_owned(),
            outputs: serde_json::Value::Null,
            failure: Some(failure),
        };
        self.finish(inc, index, outcome).await
    }

    /// The incident as the store has it, if it is no longer running (a
    /// larger incident absorbed it): the plan goes no further.
    async fn stopped(&self, inc: &Incident) -> Result<Option<Incident>, StoreError> {
        Ok(self
            .store
            .incident(&inc.id)
            .await?
            .filter(|now| now.state != State::Running))
    }

    /// Records where a stopped plan stopped.
    async fn note_stopped(&self, inc: &Incident, next: usize) -> Result<(), IncidentError> {
        let reason = if next < inc.plan.steps.len() {
            format!(
                "plan stopped before step {} of {}: the incident is {}",
                next + 1,
                inc.plan.steps.len(),
                inc.state
            )
        } else {
            format!("plan ended while the incident is {}", inc.state)
        };
        self.note(
            inc,
            "plan_stopped",
            reason,
            json!({ "next_step": next, "state": inc.state }),
        )
        .await?;
        Ok(())
    }

    /// Runs one step to its end, recording each stage first.
    async fn run_step(
        &self,
        inc: &Incident,
        index: usize,
        step: &Step,
        log: StepLog,
    ) -> Result<Ended, IncidentError> {
        let what = step.describe();
        if step.record {
            return Ok(Ended::Step(self.record(inc, index, &what, &log).await?));
        }
        let started_at = log.started_at.unwrap_or_else(Utc::now);
        let execution_id = match log.execution_id {
            Some(id) => id,
            None => {
                if !log.dispatching {
                    self.note(
                        inc,
                        "step_dispatching",
                        format!("step {}: {what}", index + 1),
                        json!({ "index": index, "idempotency_key": step.idempotency_key }),
                    )
                    .await?;
                }
                // The fenced write above proved the lease a moment ago; this
                // proves it has not run out since by this process's clock
                // (a pause between the two, say).
                if !self.leadership.is_valid() {
                    return Err(IncidentError::NotLeader);
                }
                match self.dispatcher.start(step).await {
                    Ok(Started::Execution { id }) => {
                        self.note(
                            inc,
                            "step_started",
                            format!("step {}: execution {id}", index + 1),
                            json!({ "index": index, "execution_id": id }),
                        )
                        .await?;
                        id
                    }
                    Ok(Started::Finished(outcome)) => {
                        return Ok(Ended::Step(self.finish(inc, index, outcome).await?));
                    }
                    Err(e) => {
                        // The dispatcher already retried what can be retried.
                        let outcome = StepOutcome {
                            success: false,
                            execution_id: None,
                            status: "NotStarted".into(),
                            outputs: serde_json::Value::Null,
                            failure: Some(e.to_string()),
                        };
                        return Ok(Ended::Step(self.finish(inc, index, outcome).await?));
                    }
                }
            }
        };
        let (timeout, source) = match step.timeout_secs {
            Some(secs) => (Some(Duration::from_secs(secs)), "the rule's step timeout"),
            None => (self.dispatcher.step_timeout(), "aws.step_timeout"),
        };
        let deadline = timeout
            .and_then(|t| chrono::Duration::from_std(t).ok())
            .map(|t| started_at + t);
        loop {
            if let Some(request) = abort_request(&self.store.events(&inc.id).await?) {
                let why = format!("stopped: {}", request.reason);
                self.stop(inc, index, step, &execution_id, "Cancelled", why)
                    .await?;
                return Ok(Ended::Aborted(request));
            }
            if let (Some(deadline), Some(timeout)) = (deadline, timeout)
                && Utc::now() >= deadline
            {
                let why = format!(
                    "timed out after {} ({source})",
                    humantime::format_duration(timeout)
                );
                let outcome = self
                    .stop(inc, index, step, &execution_id, "TimedOut", why)
                    .await?;
                return Ok(Ended::Step(outcome));
            }
            match self.dispatcher.poll(step, &execution_id).await {
                Ok(Progress::Done(outcome)) => {
                    return Ok(Ended::Step(self.finish(inc, index, outcome).await?));
                }
                Ok(Progress::Running { .. }) => {}
                Err(e) if e.is_retryable() => {
                    // The execution runs on whether or not we can see it:
                    // keep looking rather than call a running failover failed.
                    tracing::warn!(incident = %inc.id, step = index, "polling {execution_id}: {e}; will poll again");
                }
                Err(e) => {
                    let outcome = StepOutcome {
                        success: false,
                        execution_id: Some(execution_id.clone()),
                        status: "Unknown".into(),
                        outputs: serde_json::Value::Null,
                        failure: Some(e.to_string()),
                    };
                    return Ok(Ended::Step(self.finish(inc, index, outcome).await?));
                }
            }
            tokio::time::sleep(self.poll_interval).await;
        }
    }

    /// A drill's step with nothing to call: recorded as sent and done, so
    /// the drill's timeline and report read as a real run's.
    async fn record(
        &self,
        inc: &Incident,
        index: usize,
        what: &str,
        log: &StepLog,
    ) -> Result<StepOutcome, IncidentError> {
        if !log.dispatching {
            self.note(
                inc,
                "step_dispatching",
                format!("step {}: drill, recorded: {what}", index + 1),
                json!({ "index": index, "record": true }),
            )
            .await?;
        }
        let outcome = StepOutcome {
            success: true,
            execution_id: None,
            status: format!("Recorded (drill: {what} not called)"),
            outputs: serde_json::Value::Null,
            failure: None,
        };
        self.finish(inc, index, outcome).await
    }

    async fn finish(
        &self,
        inc: &Incident,
        index: usize,
        outcome: StepOutcome,
    ) -> Result<StepOutcome, IncidentError> {
        let (kind, label) = if outcome.success {
            ("step_succeeded", "succeeded")
        } else {
            ("step_failed", "failed")
        };
        let reason = match (&outcome.execution_id, &outcome.failure) {
            (Some(id), None) => format!("step {}: {} ({id})", index + 1, outcome.status),
            (Some(id), Some(f)) => format!("step {}: {} ({id}): {f}", index + 1, outcome.status),
            (None, Some(f)) => format!("step {}: {f}", index + 1),
            (None, None) => format!("step {}: {}", index + 1, outcome.status),
        };
        self.note(
            inc,
            kind,
            reason,
            json!({ "index": index, "outcome": outcome }),
        )
        .await?;
        self.metrics.plan_steps.with_label_values(&[label]).inc();
        Ok(outcome)
    }

    async fn note(
        &self,
        inc: &Incident,
        kind: &'static str,
        reason: String,
        data: serde_json::Value,
    ) -> Result<(), StoreError> {
        tracing::info!(incident = %inc.id, kind, "{reason}");
        self.store
            .append_event(
                &inc.id,
                Utc::now(),
                &EventNote::new(kind, SYSTEM, reason).with_data(data),
            )
            .await?;
        self.incidents.changed(&inc.id);
        Ok(())
    }

    async fn step_logs(&self, inc: &Incident) -> Result<Vec<StepLog>, StoreError> {
        Ok(step_logs(
            inc.plan.steps.len(),
            &self.store.events(&inc.id).await?,
        ))
    }
}
