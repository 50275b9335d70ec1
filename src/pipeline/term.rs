//! A leader's term: everything it needs, rebuilt from the store when it
//! takes up leadership, and stopped in order when it gives it up.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::Pipeline;
use super::apply::apply;
use crate::dispatch::runner::Runner;
use crate::incident::{Incidents, State};
use crate::leadership::Role;
use crate::primitives::supervise;
use crate::rules::{Decision, Engine, RuleSet};
use crate::signal::{Change, SignalEvent, Status};
use crate::store::{Fence, Store, StoreError};
use crate::telemetry::Metrics;

/// What a leader holds while it leads.
pub(super) struct Term {
    pub(super) engine: Engine,
    pub(super) incidents: Incidents,
    /// The last signal-log entry the engine has consumed (PostgreSQL).
    pub(super) cursor: i64,
    pub(super) pruned_at: std::time::Instant,
    /// A decision could not be applied: rebuild from the store at the next
    /// tick rather than go on from state the store does not have.
    pub(super) stale: bool,
    /// The supervised plan runner: set to true to stop it.
    pub(super) runner: Option<RunnerTask>,
    /// The lease the term leads under (PostgreSQL); `None` on SQLite.
    pub(super) fence: Option<Fence>,
    /// The supervised readiness checker: set the first to true to stop it;
    /// the second takes each new rule set.
    pub(super) readiness: Option<ReadinessTask>,
}

/// The runner's task and the switch that stops it.
pub(super) type RunnerTask = (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
);

/// The readiness checker's task, the switch that stops it and the channel
/// that hands it each new rule set.
pub(super) type ReadinessTask = (
    tokio::sync::watch::Sender<bool>,
    tokio::sync::watch::Sender<Arc<RuleSet>>,
    tokio::task::JoinHandle<()>,
);

impl Term {
    /// Feeds recorded signal events to the engine and applies what it
    /// decides: the one path for intake in memory and from the signal log.
    pub(super) async fn consume(
        &mut self,
        metrics: &Metrics,
        rules: &RuleSet,
        events: &[SignalEvent],
    ) {
        let decisions = self.engine.on_batch(events, Utc::now());
        self.stale |= !apply(&self.incidents, metrics, rules, decisions).await;
        metrics.signals_processed.inc_by(events.len() as u64);
        metrics.engine_bounded(self.engine.take_bounded());
        metrics
            .signals_tracked
            .set(self.engine.signals_tracked() as i64);
    }
}

impl Pipeline {
    /// Rebuilds everything a leader needs from the store: the guard's spent
    /// limits, the engine's windows, the incidents to open or close; then
    /// starts the runner, which re-polls executions in flight, unless the
    /// runner of the term being rebuilt is handed over (`runner`). Approval
    /// timeouts need nothing: they are deadlines in the store.
    pub(super) async fn start_term(
        &self,
        fence: Option<Fence>,
        runner: &mut Option<RunnerTask>,
    ) -> Result<Term, StoreError> {
        let incidents = match &fence {
            Some(fence) => self.incidents.fenced(fence.clone()),
            None => self.incidents.clone(),
        };
        let store = incidents.store().clone();
        incidents.sync_gauges().await?;
        incidents
            .reset_guard(&self.rules, self.global, Utc::now())
            .await?;
        // Read the log's head before the snapshot: what lands in between is
        // seen twice, which the engine takes as a re-send; nothing is missed.
        let cursor = if store.logs_signals() {
            store.signal_log_head().await?
        } else {
            0
        };
        let mut engine =
            Engine::new(Arc::clone(&self.rules)).with_limits(self.engine_limits.clone());
        let decisions = restore(&mut engine, &store).await?;
        let mut stale = !apply(&incidents, &self.metrics, &self.rules, decisions).await;
        // Incidents whose opening was cut short go on from where they stopped.
        for inc in store
            .incidents_in(&[State::Detected, State::Planned])
            .await?
        {
            let Some(rule) = self.rules.rules.iter().find(|r| r.name == inc.rule) else {
                continue;
            };
            if let Err(e) = incidents
                .resume(inc, rule, &self.rules.catalogue, Utc::now())
                .await
            {
                tracing::error!("resuming an incident: {e}");
                stale = true;
            }
        }
        let runner = match runner.take() {
            Some(kept) => Some(kept),
            None => self.spawn_runner(&incidents),
        };
        self.metrics.leader.set(1);
        tracing::info!(replica = %self.leadership.replica(), "leading: engine restored, runner started");
        Ok(Term {
            engine,
            incidents,
            cursor,
            pruned_at: std::time::Instant::now(),
            stale,
            runner,
            fence,
            readiness: self.spawn_readiness(),
        })
    }

    fn spawn_runner(&self, incidents: &Incidents) -> Option<RunnerTask> {
        self.dispatch.as_ref().map(|(dispatcher, poll)| {
            let runner = Runner::new(
                incidents.clone(),
                Arc::clone(dispatcher),
                *poll,
                self.metrics.clone(),
                Arc::clone(&self.leadership),
            );
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let restarts = self.metrics.task_restarts.with_label_values(&["runner"]);
            // A restarted runner re-reads approved and running incidents
            // from the store, as a new term's does.
            let (task, _) = supervise::spawn("runner", restarts, move || {
                let (runner, mut stopped) = (Arc::clone(&runner), stopped.clone());
                runner.run(async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                })
            });
            (stop, task)
        })
    }

    fn spawn_readiness(&self) -> Option<ReadinessTask> {
        self.readiness.as_ref().map(|checker| {
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let (rules, rules_rx) = tokio::sync::watch::channel(Arc::clone(&self.rules));
            let restarts = self.metrics.task_restarts.with_label_values(&["readiness"]);
            let checker = Arc::clone(checker);
            let (task, _) = supervise::spawn("readiness", restarts, move || {
                let (checker, rules_rx, mut stopped) =
                    (Arc::clone(&checker), rules_rx.clone(), stopped.clone());
                checker.run(rules_rx, async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                })
            });
            (stop, rules, task)
        })
    }

    pub(super) async fn end_term(&mut self, why: &str) {
        let Some(term) = self.term.take() else { return };
        self.metrics.leader.set(0);
        stop_runner(term.runner).await;
        stop_readiness(term.readiness).await;
        tracing::info!(replica = %self.leadership.replica(), "no longer leading ({why}): engine and runner stopped");
    }

    /// Rebuilds the term from the store (after a decision that could not be
    /// applied, or a panic) while still leading under the same lease. The
    /// runner goes on: it works from the store, not from the engine, and
    /// stopping it would cut off a Lambda invoke in flight, which the next
    /// runner would send again (Lambda has no idempotency token). Under
    /// another lease, or not leading, the term ends as usual.
    pub(super) async fn rebuild_term(&mut self, why: &str) {
        let role = self.leadership.role();
        let same_lease = match (&role, &self.term) {
            (Role::Leader { fence }, Some(term)) => *fence == term.fence,
            _ => false,
        };
        if !same_lease {
            self.end_term(why).await;
            self.follow(role).await;
            return;
        }
        let Some(mut old) = self.term.take() else {
            return;
        };
        let mut runner = old.runner.take();
        tracing::warn!(replica = %self.leadership.replica(), "rebuilding the term from the store ({why}); the plan runner goes on");
        match self.start_term(old.fence.clone(), &mut runner).await {
            Ok(term) => self.term = Some(term),
            Err(e) => {
                stop_runner(runner).await;
                self.metrics.leader.set(0);
                self.metrics
                    .pipeline_errors
                    .with_label_values(&["leadership"])
                    .inc();
                tracing::error!("rebuilding the term failed: {e}; runner stopped, retrying");
            }
        }
    }
}

async fn stop_runner(runner: Option<RunnerTask>) {
    if let Some((stop, task)) = runner {
        let _ = stop.send(true);
        let _ = task.await;
    }
}

async fn stop_readiness(readiness: Option<ReadinessTask>) {
    if let Some((stop, _, task)) = readiness {
        let _ = stop.send(true);
        let _ = task.await;
    }
}

/// Replays recorded signals into a fresh engine and reconciles it with the
/// open incidents in the store.
async fn restore(engine: &mut Engine, store: &Store) -> Result<Vec<Decision>, StoreError> {
    let now = Utc::now();
    let horizon = engine
        .rules()
        .rules
        .iter()
        .map(|r| r.window)
        .max()
        .unwrap_or_default();
    let since = crate::primitives::duration::before(now, horizon);
    let mut events: Vec<(SignalEvent, DateTime<Utc>)> = Vec::new();
    for (signal, last_seen) in store.recent_signals(since).await? {
        let fired_at = signal.received_at;
        let ended = (signal.status == Status::Resolved).then(|| signal.ends_at.unwrap_or(now));
        events.push((
            SignalEvent {
                signal: signal.clone(),
                change: Change::Fired,
            },
            fired_at,
        ));
        // The last re-send: a heartbeat is silent since then, not since it
        // first arrived (nor since Alertmanager resolved it).
        if last_seen > fired_at {
            events.push((
                SignalEvent {
                    signal: signal.clone(),
                    change: Change::Refreshed,
                },
                last_seen,
            ));
        }
        if let Some(at) = ended {
            events.push((
                SignalEvent {
                    signal,
                    change: Change::Resolved,
                },
                at.max(fired_at),
            ));
        }
    }
    events.sort_by_key(|(_, at)| *at);
    // Only incidents that signals opened: one declared by hand, or a
    // failback, has no group in the engine and must not look stale.
    let open: HashSet<String> = store.open_keys_with_evidence().await?.into_iter().collect();
    let decisions = engine.restore(&events, &open, now);
    tracing::info!(
        signals = events.len(),
        open_incidents = open.len(),
        decisions = decisions.len(),
        "state restored from store"
    );
    Ok(decisions)
}
