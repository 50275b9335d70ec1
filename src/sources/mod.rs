//! Sources: turn what senders deliver into [`crate::signal::Signal`]s.
//!
//! Each source only parses and normalises; recording, dedup and correlation
//! happen downstream ([`record`]) so every source gets them the same way.

pub mod alertmanager;
pub mod kafka;
pub mod limits;
mod recorder;

pub use recorder::Recorder;

use std::sync::{Arc, RwLock};

use tokio::sync::mpsc;

use crate::rules::RuleSet;
use crate::signal::{Change, Signal, SignalEvent};
use crate::store::{GroupCommit, Store, StoreError};
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
        let exact = self.exact_last_seen();
        store.record_with_evidence(signals, &exact, evidence).await
    }

    /// [`Handoff::record_in`], inside a group commit.
    async fn record_in_group(
        &self,
        group: &mut GroupCommit<'_>,
        signals: &[Signal],
    ) -> Result<Vec<Change>, StoreError> {
        let exact = self.exact_last_seen();
        group.signals(signals, &exact).await
    }

    /// Which signals' `last_seen` is kept exact: heartbeats, the failback
    /// one and those a rule in force watches.
    fn exact_last_seen(&self) -> impl Fn(&Signal) -> bool + Sync + '_ {
        let rules = self.rules.get();
        move |s: &Signal| {
            self.heartbeat.as_deref() == Some(s.name.as_str())
                || rules.watches_beat(&s.source, &s.name, &s.labels)
        }
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
