//! Sources: turn what senders deliver into [`crate::signal::Signal`]s.
//!
//! Each source only parses and normalises; recording, dedup and correlation
//! happen downstream ([`record`]) so every source gets them the same way.

pub mod alertmanager;
pub mod kafka;
pub mod limits;

use std::sync::{Arc, RwLock};

use tokio::sync::{mpsc, oneshot};

use crate::primitives::supervise;
use crate::rules::RuleSet;
use crate::signal::{Change, Signal, SignalEvent};
use crate::store::{EvidenceQueue, Store, StoreError};
use crate::telemetry::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("shutting down")]
    ShuttingDown,
}

/// Where recorded signals go next: the rule engine's channel, with the rule
/// set in force to leave out what no rule can match. In a storm most alerts
/// are of that kind; they are recorded and acknowledged without queueing
/// behind the engine, which would only look them up and drop them.
#[derive(Clone)]
pub struct Handoff {
    tx: mpsc::Sender<Vec<SignalEvent>>,
    rules: RulesInForce,
    metrics: Metrics,
    /// The failback region heartbeat's alert name, if set: its `last_seen`
    /// is kept exact, like every heartbeat a rule watches.
    heartbeat: Option<Arc<str>>,
}

/// The rule set the engine runs, as intake sees it. The pipeline sets it on
/// a reload (it must not hold a [`Handoff`]: the engine's channel closes,
/// and the pipeline drains and ends, when the last sender is gone).
#[derive(Clone)]
pub struct RulesInForce(Arc<RwLock<Arc<RuleSet>>>);

impl RulesInForce {
    pub fn new(rules: Arc<RuleSet>) -> Self {
        RulesInForce(Arc::new(RwLock::new(rules)))
    }

    /// A reload: from now on, what the new rules can match goes on. Set
    /// before the engine takes the new rules, so nothing they match is
    /// left out while it switches.
    pub fn set(&self, rules: Arc<RuleSet>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = rules;
    }

    pub fn get(&self) -> Arc<RuleSet> {
        Arc::clone(&self.0.read().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Handoff {
    pub fn new(tx: mpsc::Sender<Vec<SignalEvent>>, rules: RulesInForce, metrics: Metrics) -> Self {
        Handoff {
            tx,
            rules,
            metrics,
            heartbeat: None,
        }
    }

    /// The failback heartbeat's alert name (`failback.heartbeat`).
    pub fn with_heartbeat(mut self, name: Option<&str>) -> Self {
        self.heartbeat = name.map(Arc::from);
        self
    }

    /// Records `signals` keeping exact only the `last_seen` of heartbeats
    /// (see [`Store::record_signals_within`]), with `evidence` if any.
    async fn record_in(
        &self,
        store: &Store,
        signals: &[Signal],
        evidence: Vec<crate::store::EvidenceJob>,
    ) -> Result<Vec<Change>, StoreError> {
        let rules = self.rules.get();
        let exact = |s: &Signal| {
            self.heartbeat.as_deref() == Some(s.name.as_str())
                || rules.watches_beat(&s.source, &s.name, &s.labels)
        };
        store.record_with_evidence(signals, &exact, evidence).await
    }

    /// Keeps the events some rule can match; counts the rest as dealt with.
    fn relevant(&self, events: Vec<SignalEvent>) -> Vec<SignalEvent> {
        let rules = self.rules.get();
        let before = events.len();
        let kept: Vec<SignalEvent> = events
            .into_iter()
            .filter(|ev| {
                let s = &ev.signal;
                rules.can_match(&s.source, &s.name, &s.labels)
            })
            .collect();
        let skipped = (before - kept.len()) as u64;
        self.metrics.signals_unmatched.inc_by(skipped);
        self.metrics.signals_processed.inc_by(skipped);
        kept
    }
}

/// Records signals durably, then hands what they changed to the rule
/// engine (in memory on SQLite; through the store's signal log on
/// PostgreSQL, where the engine runs on whichever replica leads). Returns one change per signal, in order. A sender is answered
/// (or an offset committed) only after this returns, so an acknowledged
/// signal is never lost; re-sends and re-deliveries come back `Refreshed`
/// or `Ignored` and count once.
pub async fn record(
    store: &Store,
    pipeline: &Handoff,
    signals: Vec<Signal>,
) -> Result<Vec<Change>, IntakeError> {
    if signals.is_empty() {
        return Ok(Vec::new());
    }
    let changes = pipeline.record_in(store, &signals, Vec::new()).await?;
    hand_over(store, pipeline, signals, &changes).await?;
    Ok(changes)
}

/// Sends what recorded signals changed to the rule engine: in memory on
/// SQLite; on PostgreSQL the leader, in this process or another, reads them
/// from the store's signal log instead.
async fn hand_over(
    store: &Store,
    pipeline: &Handoff,
    signals: Vec<Signal>,
    changes: &[Change],
) -> Result<(), IntakeError> {
    if store.logs_signals() {
        return Ok(());
    }
    let events: Vec<SignalEvent> = signals
        .into_iter()
        .zip(changes.iter().copied())
        .filter(|(_, change)| *change != Change::Ignored)
        .map(|(signal, change)| SignalEvent { signal, change })
        .collect();
    let events = pipeline.relevant(events);
    if !events.is_empty() {
        pipeline
            .tx
            .send(events)
            .await
            .map_err(|_| IntakeError::ShuttingDown)?;
    }
    Ok(())
}

/// [`record`] for many concurrent senders: requests that arrive while a
/// transaction is committing are recorded together in the next one (group
/// commit). Each caller is still answered only after its signals are
/// committed and handed to the rule engine, in arrival order, so nothing
/// changes for a sender except that one fsync serves many of them. The
/// pipeline's evidence ([`EvidenceQueue`]) rides in the same transactions:
/// one writer, not two taking turns on SQLite's one writing connection.
#[derive(Clone)]
pub struct Recorder {
    jobs: mpsc::Sender<Job>,
}

struct Job {
    signals: Vec<Signal>,
    done: oneshot::Sender<Result<Vec<Change>, IntakeError>>,
}

/// Signals per transaction at most: bounds how long one commit holds the
/// writer (and the latency of everyone in it).
const MAX_GROUP_SIGNALS: usize = 500;

impl Recorder {
    /// Starts the writer task, supervised (`restarts` counts its panics;
    /// the queues outlive them, and a caller whose job was in the panicking
    /// group gets an error and is answered 503). It ends, releasing
    /// `pipeline`, when the last `Recorder` clone is dropped and the queued
    /// jobs are done; evidence is then written by its callers directly.
    pub fn start(
        store: Store,
        pipeline: Handoff,
        evidence: EvidenceQueue,
        restarts: prometheus::IntCounter,
    ) -> Recorder {
        let (jobs, rx) = mpsc::channel(256);
        let rx = std::sync::Arc::new(tokio::sync::Mutex::new(rx));
        supervise::spawn("recorder", restarts, move || {
            let writer = Writer {
                store: store.clone(),
                pipeline: pipeline.clone(),
                evidence: evidence.clone(),
            };
            let rx = rx.clone();
            async move { writer.run(&mut *rx.lock().await).await }
        });
        Recorder { jobs }
    }

    pub async fn record(&self, signals: Vec<Signal>) -> Result<Vec<Change>, IntakeError> {
        if signals.is_empty() {
            return Ok(Vec::new());
        }
        let (done, answer) = oneshot::channel();
        self.jobs
            .send(Job { signals, done })
            .await
            .map_err(|_| IntakeError::ShuttingDown)?;
        answer.await.map_err(|_| IntakeError::ShuttingDown)?
    }
}

struct Writer {
    store: Store,
    pipeline: Handoff,
    evidence: EvidenceQueue,
}

impl Writer {
    async fn run(&self, rx: &mut mpsc::Receiver<Job>) {
        loop {
            let first = tokio::select! {
                job = rx.recv() => match job {
                    Some(job) => job,
                    None => return,
                },
                Some(job) = self.evidence.next() => {
                    // Evidence while no signal is waiting: alone.
                    let mut jobs = vec![job];
                    jobs.extend(self.evidence.waiting());
                    let _ = self.pipeline.record_in(&self.store, &[], jobs).await;
                    continue;
                }
            };
            let mut total = first.signals.len();
            let mut group = vec![first];
            while total < MAX_GROUP_SIGNALS {
                let Ok(job) = rx.try_recv() else { break };
                total += job.signals.len();
                group.push(job);
            }
            self.write(group).await;
        }
    }

    async fn write(&self, group: Vec<Job>) {
        let sizes: Vec<usize> = group.iter().map(|j| j.signals.len()).collect();
        let (signals, answers): (Vec<Vec<Signal>>, Vec<_>) =
            group.into_iter().map(|j| (j.signals, j.done)).unzip();
        let mut all: Vec<Signal> = signals.into_iter().flatten().collect();
        let evidence = self.evidence.waiting();
        match self.pipeline.record_in(&self.store, &all, evidence).await {
            Ok(changes) => {
                // The whole group goes to the engine as one batch (one wake
                // of the pipeline, not one per request); the channel's
                // bound still holds (a group is at most MAX_GROUP_SIGNALS),
                // so a rule engine that falls behind slows senders down
                // instead of letting the queue grow. Everyone is answered
                // after the hand-over, as before.
                let handed = self.hand_over(all, &changes).await;
                let mut rest = changes.as_slice();
                for (size, done) in sizes.into_iter().zip(answers) {
                    let (mine, tail) = rest.split_at(size);
                    rest = tail;
                    let answer = match &handed {
                        Ok(()) => Ok(mine.to_vec()),
                        Err(_) => Err(IntakeError::ShuttingDown),
                    };
                    let _ = done.send(answer);
                }
            }
            // One sender's bad signal must not fail the others: each is
            // tried on its own, and gets its own answer.
            Err(_) if answers.len() > 1 => {
                let mut own = Vec::with_capacity(sizes.len());
                for size in sizes.iter().rev() {
                    own.push(all.split_off(all.len() - size));
                }
                own.reverse();
                for (signals, done) in own.into_iter().zip(answers) {
                    let _ = done.send(record(&self.store, &self.pipeline, signals).await);
                }
            }
            Err(e) => {
                if let Some(done) = answers.into_iter().next() {
                    let _ = done.send(Err(e.into()));
                }
            }
        }
    }

    /// [`hand_over`], writing evidence meanwhile: while the engine's queue
    /// is full, the pipeline may be waiting for its evidence to be written
    /// before it takes the next batch, and only this task writes it.
    async fn hand_over(&self, signals: Vec<Signal>, changes: &[Change]) -> Result<(), IntakeError> {
        let send = hand_over(&self.store, &self.pipeline, signals, changes);
        tokio::pin!(send);
        loop {
            tokio::select! {
                sent = &mut send => return sent,
                Some(job) = self.evidence.next() => {
                    let _ = self.pipeline.record_in(&self.store, &[], vec![job]).await;
                }
            }
        }
    }
}
