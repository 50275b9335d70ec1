//! The pipeline: the one task that feeds recorded signals to the rule
//! engine and applies its decisions, while this replica leads.
//!
//! - [`term`]: what a leader holds (engine, fenced incidents, plan runner),
//!   rebuilt from the store when leadership is taken up.
//! - [`apply`]: decisions into incident changes, retried while the store is
//!   briefly away.

mod apply;
mod term;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::dispatch::Dispatcher;
use crate::incident::Incidents;
use crate::leadership::{Leadership, Role};
use crate::primitives::supervise::{self, Running};
use crate::rules::RuleSet;
use crate::rules::engine::GroupView;
use crate::rules::model::Rate;
use crate::signal::SignalEvent;
use crate::sources::RulesInForce;
use crate::store::{PRUNE_BATCH, RetentionConfig, Store};
use crate::telemetry::Metrics;
use apply::apply;
use term::Term;

/// The single consumer of recorded signals. One task, so decisions about
/// one group never race. It lives as long as the process and keeps the
/// running rules; while this replica leads it also holds a [`Term`]: the
/// rule engine, the leader's fenced incidents, and the plan runner.
pub struct Pipeline {
    rules: Arc<RuleSet>,
    /// The unfenced incidents; a term derives its fenced handle from them.
    incidents: Incidents,
    metrics: Metrics,
    global: Option<Rate>,
    dispatch: Option<(Arc<Dispatcher>, std::time::Duration)>,
    leadership: Arc<Leadership>,
    /// Told of every new rule set, so intake keeps leaving out exactly
    /// what no rule in force can match.
    in_force: RulesInForce,
    engine_limits: crate::rules::engine::EngineLimits,
    /// How long closed incidents and old signals are kept.
    retention: RetentionConfig,
    /// Runbook readiness, checked while this replica leads.
    readiness: Option<Arc<crate::readiness::Checker>>,
    term: Option<Term>,
}

/// Signal-log entries read per query, and how long consumed ones are kept
/// (for a look after the fact; the engine never reads them again).
const LOG_PAGE: i64 = 1000;
/// Signal events taken from the intake channel at once, at most.
const MAX_DRAIN: usize = 2000;
const LOG_KEEP: chrono::Duration = chrono::Duration::minutes(10);
/// Batches of each kind deleted per pass at most (a pass a minute): a
/// backlog after a long outage is worked off over several minutes instead
/// of holding the writer.
const PRUNE_BATCHES: usize = 20;

/// Deletes what retention lets go, a batch at a time, yielding between
/// batches so intake's writes interleave.
async fn prune(store: &Store, metrics: &Metrics, retention: RetentionConfig, now: DateTime<Utc>) {
    let incidents_before = crate::primitives::duration::before(now, retention.incidents);
    let signals_before = crate::primitives::duration::before(now, retention.signals);
    for what in ["incidents", "signals"] {
        for _ in 0..PRUNE_BATCHES {
            let done = match what {
                "incidents" => store.prune_incidents(incidents_before, PRUNE_BATCH).await,
                _ => store.prune_signals(signals_before, PRUNE_BATCH).await,
            };
            match done {
                Ok(n) => {
                    metrics.pruned.with_label_values(&[what]).inc_by(n);
                    if n < PRUNE_BATCH as u64 {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!("pruning old {what}: {e}; trying again later");
                    break;
                }
            }
            tokio::task::yield_now().await;
        }
    }
}

/// Fault injection for tests of supervision: while set, every tick panics.
/// Nothing outside the process can set it.
#[doc(hidden)]
pub static PANIC_AT_TICK: AtomicBool = AtomicBool::new(false);

/// What the pipeline consumes. Kept apart from one run of it so that a
/// restart after a panic reads on from the same channels.
pub struct Inputs {
    pub signals: mpsc::Receiver<Vec<SignalEvent>>,
    pub reloads: mpsc::Receiver<crate::reload::Swap>,
    pub role: watch::Receiver<Role>,
    pub groups: mpsc::Receiver<GroupsAsked>,
}

/// A request for the engine's open groups; answered with `None` when this
/// replica does not lead (the engine runs on the leader only).
pub type GroupsAsked = tokio::sync::oneshot::Sender<Option<Vec<GroupView>>>;

/// Asks the pipeline for the engine's open groups, between two signals.
#[derive(Clone)]
pub struct Groups(mpsc::Sender<GroupsAsked>);

impl Groups {
    pub fn channel() -> (Groups, mpsc::Receiver<GroupsAsked>) {
        // Page views are rare; a few waiting is plenty.
        let (tx, rx) = mpsc::channel(8);
        (Groups(tx), rx)
    }

    /// The groups, or `None` when this replica does not lead or the
    /// pipeline is busy past `wait`.
    pub async fn get(&self, wait: std::time::Duration) -> Option<Vec<GroupView>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.0.try_send(tx).ok()?;
        tokio::time::timeout(wait, rx).await.ok()?.ok()?
    }
}

impl Pipeline {
    pub fn new(
        rules: Arc<RuleSet>,
        incidents: Incidents,
        metrics: Metrics,
        global: Option<Rate>,
        dispatch: Option<(Arc<Dispatcher>, std::time::Duration)>,
        leadership: Arc<Leadership>,
        in_force: RulesInForce,
    ) -> Pipeline {
        Pipeline {
            rules,
            incidents,
            metrics,
            global,
            dispatch,
            leadership,
            in_force,
            engine_limits: Default::default(),
            retention: RetentionConfig::default(),
            readiness: None,
            term: None,
        }
    }

    pub fn with_engine_limits(mut self, limits: crate::rules::engine::EngineLimits) -> Pipeline {
        self.engine_limits = limits;
        self
    }

    pub fn with_retention(mut self, retention: RetentionConfig) -> Pipeline {
        self.retention = retention;
        self
    }

    /// Checks runbook readiness while leading: at each term's start, after
    /// each reload, and periodically.
    pub fn with_readiness(mut self, checker: Arc<crate::readiness::Checker>) -> Pipeline {
        self.readiness = Some(checker);
        self
    }

    /// Runs the pipeline under a supervisor: a panic is logged and counted,
    /// the term it was in is ended, and the next run rebuilds one from the
    /// store. The handle ends once the intake channel has closed and
    /// drained; [`Running`] is false between a panic and the restart.
    pub fn spawn(self, inputs: Inputs, tick: std::time::Duration) -> (JoinHandle<()>, Running) {
        let restarts = self.metrics.task_restarts.with_label_values(&["pipeline"]);
        let shared = Arc::new(tokio::sync::Mutex::new((self, inputs)));
        let mut first = true;
        supervise::spawn("pipeline", restarts, move || {
            let shared = Arc::clone(&shared);
            let restart = !std::mem::replace(&mut first, false);
            async move {
                // A panic unwinds through the guard, which unlocks it.
                let mut guard = shared.lock().await;
                let (pipeline, inputs) = &mut *guard;
                if restart {
                    // Whatever the panic interrupted is not trusted: the
                    // term is rebuilt from the store.
                    pipeline.rebuild_term("restarting after a panic").await;
                }
                pipeline.run(inputs, tick).await;
            }
        })
    }

    async fn run(&mut self, inputs: &mut Inputs, tick: std::time::Duration) {
        let Inputs {
            signals: rx,
            reloads,
            role,
            groups,
        } = inputs;
        let log = self.incidents.store().log_written();
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                Ok(()) = role.changed() => {
                    let now = role.borrow_and_update().clone();
                    self.follow(now).await;
                }
                batch = rx.recv() => {
                    let Some(mut batch) = batch else { break };
                    // What else is waiting joins it: their decisions are
                    // written together.
                    while batch.len() < MAX_DRAIN {
                        match rx.try_recv() {
                            Ok(more) => batch.extend(more),
                            Err(_) => break,
                        }
                    }
                    self.on_signals(batch).await;
                }
                Some((rules, done)) = reloads.recv() => {
                    self.replace_rules(rules).await;
                    let _ = done.send(());
                }
                Some(asked) = groups.recv() => {
                    let now = Utc::now();
                    let _ = asked.send(self.term.as_ref().map(|t| t.engine.snapshot(now)));
                }
                _ = log.notified() => self.tail().await,
                _ = interval.tick() => self.on_tick().await,
            }
        }
        self.end_term("shutting down").await;
    }

    /// Starts or ends the term to match the role.
    pub async fn follow(&mut self, role: Role) {
        match role {
            Role::Follower => self.end_term("not the leader").await,
            Role::Leader { fence } if self.term.is_none() => {
                match self.start_term(fence, &mut None).await {
                    Ok(term) => self.term = Some(term),
                    Err(e) => {
                        // Retried at the next tick while the role stays leader.
                        self.metrics
                            .pipeline_errors
                            .with_label_values(&["leadership"])
                            .inc();
                        tracing::error!("taking up leadership failed: {e}; retrying");
                    }
                }
            }
            Role::Leader { .. } => {}
        }
    }

    async fn on_signals(&mut self, batch: Vec<SignalEvent>) {
        // Without a term the signals are in the store already, and the
        // next term's restore reads them.
        let Some(term) = &mut self.term else { return };
        term.consume(&self.metrics, &self.rules, &batch).await;
    }

    /// Consumes the signal log up to its end (PostgreSQL).
    async fn tail(&mut self) {
        let Some(term) = &mut self.term else { return };
        let store = term.incidents.store().clone();
        if !store.logs_signals() {
            return;
        }
        loop {
            let page = match store.signal_log_after(term.cursor, LOG_PAGE).await {
                Ok(page) => page,
                Err(e) => {
                    self.metrics
                        .pipeline_errors
                        .with_label_values(&["signal_log"])
                        .inc();
                    tracing::error!("reading the signal log: {e}; retrying at the next tick");
                    return;
                }
            };
            let full = page.len() as i64 == LOG_PAGE;
            let Some(last) = page.last().map(|(seq, _)| *seq) else {
                return;
            };
            let events: Vec<SignalEvent> = page.into_iter().map(|(_, ev)| ev).collect();
            term.consume(&self.metrics, &self.rules, &events).await;
            term.cursor = last;
            if !full {
                return;
            }
        }
    }

    async fn on_tick(&mut self) {
        if PANIC_AT_TICK.load(Ordering::Relaxed) {
            panic!("fault injected: PANIC_AT_TICK");
        }
        if self.term.as_ref().is_some_and(|t| t.stale) {
            self.rebuild_term("a decision could not be applied").await;
        }
        if self.term.is_none() {
            let role = self.leadership.role();
            self.follow(role).await;
        }
        self.tail().await;
        let Some(term) = &mut self.term else { return };
        let now = Utc::now();
        if let Err(e) = term.incidents.expire_due(now).await {
            self.metrics
                .pipeline_errors
                .with_label_values(&["approval"])
                .inc();
            tracing::error!("approval timeouts: {e}");
        }
        if let Err(e) = term.incidents.watch_evidence(now).await {
            self.metrics
                .pipeline_errors
                .with_label_values(&["approval"])
                .inc();
            tracing::error!("approval evidence: {e}");
        }
        let decisions = term.engine.tick(now);
        term.stale |= !apply(&term.incidents, &self.metrics, &self.rules, decisions).await;
        // Before the holds: a released incident's hold starts now.
        match term.incidents.release_stranded(now, &self.rules).await {
            Ok(keys) => keys.iter().for_each(|k| term.engine.release(k)),
            Err(e) => {
                self.metrics
                    .pipeline_errors
                    .with_label_values(&["release"])
                    .inc();
                tracing::error!("releasing absorbed incidents: {e}");
                term.stale = true;
            }
        }
        // After the tick's decisions, so a larger incident that formed in
        // this tick has absorbed what it covers before any hold runs out.
        if let Err(e) = term.incidents.release_holds(now, &self.rules).await {
            self.metrics
                .pipeline_errors
                .with_label_values(&["hold"])
                .inc();
            tracing::error!("ending holds: {e}");
            term.stale = true;
        }
        if let Err(e) = term.incidents.failbacks(now, &self.rules).await {
            self.metrics
                .pipeline_errors
                .with_label_values(&["failback"])
                .inc();
            tracing::error!("failbacks: {e}");
        }
        self.metrics
            .signals_tracked
            .set(term.engine.signals_tracked() as i64);
        self.metrics.engine_bounded(term.engine.take_bounded());
        if term.pruned_at.elapsed() > std::time::Duration::from_secs(60) {
            term.pruned_at = std::time::Instant::now();
            let store = term.incidents.store();
            if store.logs_signals()
                && let Err(e) = store.prune_signal_log(term.cursor, now - LOG_KEEP).await
            {
                tracing::warn!("pruning the signal log: {e}");
            }
            prune(store, &self.metrics, self.retention, now).await;
        }
    }

    async fn replace_rules(&mut self, rules: Arc<RuleSet>) {
        self.in_force.set(Arc::clone(&rules));
        self.rules = Arc::clone(&rules);
        let Some(term) = &mut self.term else { return };
        if let Some((_, readiness, _)) = &term.readiness {
            let _ = readiness.send(Arc::clone(&rules));
        }
        if let Err(e) = term
            .incidents
            .reset_guard(&rules, self.global, Utc::now())
            .await
        {
            self.metrics
                .pipeline_errors
                .with_label_values(&["guard"])
                .inc();
            tracing::error!("re-seeding the guard after a reload failed: {e}");
        }
        term.engine.replace_rules(rules);
    }
}
