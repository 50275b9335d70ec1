//! Group commit: many concurrent senders' signals recorded in one
//! transaction, then handed to the rule engine in commit order.

use tokio::sync::{mpsc, oneshot};

use super::{Handoff, IntakeError, hand_over};
use crate::primitives::supervise;
use crate::signal::{Change, Signal};
use crate::store::{Backend, EvidenceQueue, Store};

/// [`super::record`] for many concurrent senders: requests that arrive while a
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
    done: Answer,
}

/// One attempt of the writer, wherever it runs.
type Run = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Where a sender's outcome goes.
type Answer = oneshot::Sender<Result<Vec<Change>, IntakeError>>;

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
        let backend = store.backend();
        supervise::spawn("recorder", restarts, move || {
            let writer = Writer {
                store: store.clone(),
                pipeline: pipeline.clone(),
                evidence: evidence.clone(),
            };
            let rx = rx.clone();
            let run = async move { writer.run(&mut *rx.lock().await).await };
            // On SQLite, a thread of its own: each group commit is a chain
            // of hops to SQLite's thread and back, and on the shared
            // runtime every hop back waited behind request handlers. Not
            // on PostgreSQL: its hops are socket reads on the shared
            // runtime anyway, and a connection the pool opened on this
            // thread's runtime would stop working with it.
            match backend {
                Backend::Sqlite => Box::pin(supervise::on_own_thread("recorder", run)) as Run,
                Backend::Postgres => Box::pin(run),
            }
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

/// A committed group on its way to the rule engine and its senders.
struct Committed {
    signals: Vec<Signal>,
    changes: Vec<Change>,
    /// Each sender's share of `changes`, in order.
    answers: Vec<(usize, Answer)>,
}

/// Committed groups waiting for the hand-over stage, at most: the writer
/// commits the next group while one is handed over, and no further ahead.
const COMMITTED_AHEAD: usize = 1;

impl Writer {
    /// The writer and the hand-over stage, taking turns in one task: the
    /// stage's work (the rule pre-filter, the engine's queue, answering)
    /// runs while the writer waits for SQLite, instead of after it. The
    /// stage takes groups in commit order, so the engine sees changes in
    /// that order, and a sender is still answered only once its signals
    /// are committed and handed over.
    async fn run(&self, rx: &mut mpsc::Receiver<Job>) {
        let (committed, stage) = mpsc::channel(COMMITTED_AHEAD);
        tokio::join!(self.write_all(rx, committed), self.hand_over_all(stage));
    }

    async fn write_all(&self, rx: &mut mpsc::Receiver<Job>, committed: mpsc::Sender<Committed>) {
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
            self.write(group, &committed).await;
        }
    }

    async fn write(&self, group: Vec<Job>, committed: &mpsc::Sender<Committed>) {
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
                // instead of letting the queue grow.
                let answers = sizes.into_iter().zip(answers).collect();
                self.pass_on(committed, all, changes, answers).await;
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
                    match self
                        .pipeline
                        .record_in(&self.store, &signals, Vec::new())
                        .await
                    {
                        Ok(changes) => {
                            let answers = vec![(signals.len(), done)];
                            self.pass_on(committed, signals, changes, answers).await;
                        }
                        Err(e) => {
                            let _ = done.send(Err(e.into()));
                        }
                    }
                }
            }
            Err(e) => {
                if let Some(done) = answers.into_iter().next() {
                    let _ = done.send(Err(e.into()));
                }
            }
        }
    }

    /// Queues a committed group for the hand-over stage, writing evidence
    /// while the stage is behind: while the engine's queue is full, the
    /// pipeline may be waiting for its evidence to be written before it
    /// takes the next batch, and only this task writes it.
    async fn pass_on(
        &self,
        committed: &mpsc::Sender<Committed>,
        signals: Vec<Signal>,
        changes: Vec<Change>,
        answers: Vec<(usize, Answer)>,
    ) {
        let group = Committed {
            signals,
            changes,
            answers,
        };
        loop {
            tokio::select! {
                slot = committed.reserve() => {
                    match slot {
                        Ok(slot) => slot.send(group),
                        // The stage only ends with this task.
                        Err(_) => fail(group.answers),
                    }
                    return;
                }
                Some(job) = self.evidence.next() => {
                    let _ = self.pipeline.record_in(&self.store, &[], vec![job]).await;
                }
            }
        }
    }

    /// Hands each committed group to the rule engine, then answers its
    /// senders; ends when the writer does and every group is handed over.
    async fn hand_over_all(&self, mut stage: mpsc::Receiver<Committed>) {
        while let Some(group) = stage.recv().await {
            let handed =
                hand_over(&self.store, &self.pipeline, group.signals, &group.changes).await;
            if handed.is_err() {
                fail(group.answers);
                continue;
            }
            let mut rest = group.changes.as_slice();
            for (size, done) in group.answers {
                let (mine, tail) = rest.split_at(size);
                rest = tail;
                let _ = done.send(Ok(mine.to_vec()));
            }
        }
    }
}

/// Answers senders whose committed signals could not reach the engine: it
/// is shutting down.
fn fail(answers: Vec<(usize, Answer)>) {
    for (_, done) in answers {
        let _ = done.send(Err(IntakeError::ShuttingDown));
    }
}
