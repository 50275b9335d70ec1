//! Group commit: many concurrent senders' signals recorded in one
//! transaction, then handed to the rule engine in commit order.

use tokio::sync::{mpsc, oneshot};

use super::{Handoff, IntakeError, hand_over, record};
use crate::primitives::supervise;
use crate::signal::{Change, Signal};
use crate::store::{EvidenceQueue, Store};

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
    done: oneshot::Sender<Result<Vec<Change>, IntakeError>>,
}

/// Signals per transaction at most: bounds how long one commit holds the
/// writer (and the latency of everyone in it).
const MAX_GROUP_SIGNALS: usize = 500;

/// Times the writer lets other tasks run before committing a group that is
/// not full. Measured in the storm bench: three took the groups of a single
/// request from 22% of all groups to 3%; eight against three, alternating,
/// gave 0.90x against 0.81x of Alertmanager's rate over ten rounds each
/// (stopping at the first yield that brought nothing was no better than
/// three). A quiet server pays eight trips through an idle scheduler,
/// microseconds.
const GATHER_YIELDS: usize = 8;

/// `first` and the jobs queued behind it, up to [`MAX_GROUP_SIGNALS`], with
/// their signal count.
/// Requests whose handlers are running right now (parsing, on the other
/// worker) join this group instead of starting the next one alone: each
/// yield lets them run first. Without it, a storm's group commits
/// alternated between full groups and groups of one request, each with
/// its own sync.
async fn next_group(rx: &mut mpsc::Receiver<Job>, first: Job) -> (Vec<Job>, usize) {
    let mut total = first.signals.len();
    let mut group = vec![first];
    gather(rx, &mut group, &mut total);
    for _ in 0..GATHER_YIELDS {
        if total >= MAX_GROUP_SIGNALS {
            break;
        }
        tokio::task::yield_now().await;
        gather(rx, &mut group, &mut total);
    }
    (group, total)
}

/// Adds the jobs already queued to `group`, whose signals `total` counts,
/// up to [`MAX_GROUP_SIGNALS`].
fn gather(rx: &mut mpsc::Receiver<Job>, group: &mut Vec<Job>, total: &mut usize) {
    while *total < MAX_GROUP_SIGNALS {
        let Ok(job) = rx.try_recv() else { break };
        *total += job.signals.len();
        group.push(job);
    }
}

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
            let taken = std::time::Instant::now();
            let (group, signals) = next_group(rx, first).await;
            self.write(group).await;
            let metrics = &self.pipeline.metrics;
            metrics.intake_group_signals.observe(signals as f64);
            metrics
                .intake_group_duration
                .observe(taken.elapsed().as_secs_f64());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn job(signals: usize) -> Job {
        let signal = Signal::firing("fp", "NodeDown", &[]);
        Job {
            signals: vec![signal; signals],
            done: oneshot::channel().0,
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_group_takes_in_the_requests_being_handled_meanwhile() {
        let (tx, mut rx) = mpsc::channel(16);
        // Handlers that are ready to run, and will send once they do: on
        // this one thread, only when the writer yields.
        for _ in 0..3 {
            let tx = tx.clone();
            tokio::spawn(async move { tx.send(job(10)).await });
        }
        let (group, signals) = next_group(&mut rx, job(10)).await;
        assert_eq!(group.len(), 4);
        assert_eq!(signals, 40);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_group_stops_at_its_bound_and_leaves_the_rest_queued() {
        let (tx, mut rx) = mpsc::channel(64);
        for _ in 0..60 {
            tx.send(job(10)).await.unwrap();
        }
        let (group, signals) = next_group(&mut rx, job(10)).await;
        assert_eq!(signals, MAX_GROUP_SIGNALS);
        assert_eq!(
            group.iter().map(|j| j.signals.len()).sum::<usize>(),
            signals
        );
        assert_eq!(rx.len(), 11);
    }
}
