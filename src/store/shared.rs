//! Intake's group commit ([`GroupCommit`]: signals written into one
//! transaction batch by batch, as their requests arrive), and the evidence
//! written in it.
//!
//! SQLite has one writing connection. In a storm two writers took turns on
//! it: intake's group commits, and the pipeline's evidence (the signals it
//! links to open incidents, and a note per incident), each transaction
//! paying its own `BEGIN IMMEDIATE`, round trips and sync, and each waiting
//! for the other. A store handle made with [`Store::share_writes`] hands its
//! evidence to whoever drains the returned [`EvidenceQueue`] (intake's group
//! writer), which writes it in the same transaction as the signals it is
//! committing. The caller still waits for that commit: evidence is durable
//! before the incident acts on it, as before.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::incident::{Event, EventNote};
use crate::signal::{Change, Signal};

use super::events::{Link, insert_notes, link_signals};
use super::lease::Fence;
use super::signals::{ExactLastSeen, notify_signal_log};
use super::{Store, StoreError};

/// An incident, the signals to link to it, when, and its note.
pub type Evidence = (String, Vec<String>, DateTime<Utc>, EventNote);

/// One caller's evidence, waiting for the group writer.
pub struct EvidenceJob {
    evidence: Vec<Evidence>,
    /// The caller's fence: the lease is checked inside the shared
    /// transaction, as the caller's own transaction would have.
    fence: Option<Arc<Fence>>,
    done: oneshot::Sender<Result<Vec<Event>, StoreError>>,
}

/// Evidence queued by the handles of [`Store::share_writes`]. Cloned into
/// a supervised writer's restarts: the queue outlives them.
#[derive(Clone)]
pub struct EvidenceQueue(Arc<Mutex<mpsc::Receiver<EvidenceJob>>>);

/// Where a sharing handle sends its evidence.
#[derive(Clone)]
pub(super) struct SharedWrites(mpsc::Sender<EvidenceJob>);

/// Jobs waiting at once, at most. The pipeline, a single task, has one in
/// flight at a time; the bound only guards against a misuse.
const QUEUE: usize = 64;

impl EvidenceQueue {
    /// The next job; `None` only once every sharing handle is gone.
    pub async fn next(&self) -> Option<EvidenceJob> {
        self.0.lock().await.recv().await
    }

    /// What is waiting now, without waiting.
    pub fn waiting(&self) -> Vec<EvidenceJob> {
        let Ok(mut rx) = self.0.try_lock() else {
            return Vec::new();
        };
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }
}

impl Store {
    /// A handle whose evidence ([`Store::attach_with_events`]) is written by
    /// whoever drains the queue, in its own transactions, and waited for.
    /// While nobody drains it (no group writer, or it has ended), evidence
    /// is written directly, as by any other handle.
    pub fn share_writes(mut self) -> (Store, EvidenceQueue) {
        let (tx, rx) = mpsc::channel(QUEUE);
        self.shared = Some(SharedWrites(tx));
        (self, EvidenceQueue(Arc::new(Mutex::new(rx))))
    }

    /// Links signals to incidents and appends each incident's note, all in
    /// one transaction (one commit for a whole batch of evidence), or in
    /// the group writer's next one on a sharing handle. Linking twice is a
    /// no-op.
    pub async fn attach_with_events(&self, evidence: &[Evidence]) -> Result<(), StoreError> {
        let events = match self.queue_evidence(evidence).await {
            Some(written) => written?,
            None => self.write_evidence_alone(evidence).await?,
        };
        self.audit(&events).await;
        Ok(())
    }

    /// The group writer's answer, or `None` if there is no group writer to
    /// ask (or it went away before answering; evidence is safe to write
    /// twice).
    async fn queue_evidence(
        &self,
        evidence: &[Evidence],
    ) -> Option<Result<Vec<Event>, StoreError>> {
        let shared = self.shared.as_ref()?;
        let (done, answer) = oneshot::channel();
        let job = EvidenceJob {
            evidence: evidence.to_vec(),
            fence: self.fence.clone(),
            done,
        };
        shared.0.send(job).await.ok()?;
        answer.await.ok()
    }

    /// Records signals and writes the queued evidence in one transaction,
    /// answering each evidence job once it is committed (a
    /// [`GroupCommit`] of one batch). If the shared transaction fails, each
    /// job is written on its own (and answered with its own result) and the
    /// signals are recorded on their own: one caller's failure (a deposed
    /// leader's fence, say) must not become another's.
    pub async fn record_with_evidence(
        &self,
        signals: &[Signal],
        exact: ExactLastSeen<'_>,
        jobs: Vec<EvidenceJob>,
    ) -> Result<Vec<Change>, StoreError> {
        if jobs.is_empty() {
            return self.record_signals_within(signals, exact).await;
        }
        let begun = async {
            let mut group = self.begin_group().await?;
            let changes = group.signals(signals, exact).await?;
            Ok::<_, StoreError>((group, changes))
        };
        match begun.await {
            Ok((group, changes)) => match group.commit(jobs).await {
                Ok(()) => Ok(changes),
                Err(_) => self.record_signals_within(signals, exact).await,
            },
            Err(_) => {
                write_each_alone(self, jobs).await;
                self.record_signals_within(signals, exact).await
            }
        }
    }

    /// Starts intake's group commit: one write transaction that signals
    /// are added to as their requests arrive, and queued evidence before
    /// it commits.
    pub async fn begin_group(&self) -> Result<GroupCommit<'_>, StoreError> {
        Ok(GroupCommit {
            store: self,
            tx: self.write_tx().await?,
            locked: false,
            logged: false,
        })
    }
}

/// One group commit in progress (see [`Store::begin_group`]). Dropped
/// without [`GroupCommit::commit`], it rolls back.
pub struct GroupCommit<'s> {
    store: &'s Store,
    tx: sqlx::Transaction<'static, sqlx::Any>,
    /// Whether the signal log's lock is held.
    locked: bool,
    /// Whether the signal log was appended to: its listeners are woken
    /// when the group commits.
    logged: bool,
}

impl GroupCommit<'_> {
    /// Records `signals` in the group's transaction, as
    /// [`Store::record_signals_within`] would; a signal already recorded in
    /// this group counts as stored. After an error, the group is only to
    /// be dropped (which rolls it back).
    pub async fn signals(
        &mut self,
        signals: &[Signal],
        exact: ExactLastSeen<'_>,
    ) -> Result<Vec<Change>, StoreError> {
        if signals.is_empty() {
            return Ok(Vec::new());
        }
        if !self.locked {
            self.store.lock_signal_log(&mut self.tx).await?;
            self.locked = true;
        }
        let (changes, logged) = self
            .store
            .write_signals(&mut self.tx, signals, exact)
            .await?;
        self.logged |= logged;
        Ok(changes)
    }

    /// Writes `jobs`' evidence, each checked against its caller's fence,
    /// and commits; then answers each job. If that fails, nothing of the
    /// group is kept: each job is written on its own (and answered with its
    /// own result), and the error returned, for the signals' senders.
    pub async fn commit(self, jobs: Vec<EvidenceJob>) -> Result<(), StoreError> {
        let GroupCommit {
            store, tx, logged, ..
        } = self;
        match write_and_commit(store, tx, logged, &jobs).await {
            Ok(written) => {
                if logged {
                    store.log_written.notify_one();
                }
                for (job, events) in jobs.into_iter().zip(written) {
                    let _ = job.done.send(Ok(events));
                }
                Ok(())
            }
            Err(e) => {
                write_each_alone(store, jobs).await;
                Err(e)
            }
        }
    }
}

/// Writes and answers each of `jobs` in a transaction of its own, under its
/// own fence.
async fn write_each_alone(store: &Store, jobs: Vec<EvidenceJob>) {
    for job in jobs {
        let alone = Store {
            fence: job.fence.clone(),
            shared: None,
            ..store.clone()
        };
        let _ = job
            .done
            .send(alone.write_evidence_alone(&job.evidence).await);
    }
}

/// Writes `jobs`' evidence in `tx`, each checked against its caller's
/// fence, and commits (waking the signal log's listeners if `logged`).
async fn write_and_commit(
    store: &Store,
    mut tx: sqlx::Transaction<'static, sqlx::Any>,
    logged: bool,
    jobs: &[EvidenceJob],
) -> Result<Vec<Vec<Event>>, StoreError> {
    let mut fences: Vec<&Arc<Fence>> = Vec::new();
    for fence in jobs.iter().filter_map(|j| j.fence.as_ref()) {
        if !fences.iter().any(|f| Arc::ptr_eq(f, fence)) {
            fences.push(fence);
            store.check_fence(&mut tx, fence).await?;
        }
    }
    let mut written = Vec::with_capacity(jobs.len());
    for job in jobs {
        written.push(write_evidence(&mut tx, store, &job.evidence).await?);
    }
    if logged {
        notify_signal_log(&mut tx).await?;
    }
    tx.commit().await?;
    Ok(written)
}

impl Store {
    /// `evidence` in a transaction of its own.
    async fn write_evidence_alone(&self, evidence: &[Evidence]) -> Result<Vec<Event>, StoreError> {
        let mut tx = self.write_tx().await?;
        let events = write_evidence(&mut tx, self, evidence).await?;
        tx.commit().await?;
        Ok(events)
    }
}

/// Links and notes of `evidence`, inside `tx`.
async fn write_evidence(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    store: &Store,
    evidence: &[Evidence],
) -> Result<Vec<Event>, StoreError> {
    let links: Vec<Link> = evidence
        .iter()
        .flat_map(|(incident, signals, at, _)| {
            signals
                .iter()
                .map(move |sid| (incident.as_str(), sid.as_str(), *at))
        })
        .collect();
    link_signals(tx, store.backend, &links).await?;
    let notes: Vec<(&str, DateTime<Utc>, &EventNote)> = evidence
        .iter()
        .map(|(incident, _, at, note)| (incident.as_str(), *at, note))
        .collect();
    insert_notes(tx, store.backend, &notes).await
}
