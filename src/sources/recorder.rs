//! Group commit: many concurrent senders' signals recorded in one
//! transaction, then handed to the rule engine in commit order.

use tokio::sync::{mpsc, oneshot};

use super::{Handoff, IntakeError, hand_over, record};
use crate::primitives::supervise;
use crate::signal::{Change, Signal};
use crate::store::{EvidenceQueue, Store};

/// [`super::record`] for many concurrent senders: their requests are
/// recorded together in one transaction (group commit), written into it as
/// they arrive. Each caller is still answered only after its signals are
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

/// Times the writer lets other tasks run, when no request is queued,
/// before committing a group that is not full. Measured in the storm bench
/// (stop 27): three took the groups of a single request from 22% of all
/// groups to 3%; eight against three, alternating, gave 0.90x against
/// 0.81x of Alertmanager's rate over ten rounds each. A quiet server pays
/// eight trips through an idle scheduler, microseconds.
const GATHER_YIELDS: usize = 8;

/// The jobs queued now or, if there are none, those queued at the first of
/// [`GATHER_YIELDS`] yields that finds any, up to [`MAX_GROUP_SIGNALS`] in
/// all (`total` counts the group's signals). Requests whose handlers are running right
/// now (parsing, on the other worker) join the group instead of starting
/// the next one alone: each yield lets them run first. Without it, a
/// storm's group commits alternated between full groups and groups of one
/// request, each with its own sync. Empty: the group is complete.
async fn more(rx: &mut mpsc::Receiver<Job>, total: &mut usize) -> Vec<Job> {
    let mut jobs = Vec::new();
    gather(rx, &mut jobs, total);
    for _ in 0..GATHER_YIELDS {
        if !jobs.is_empty() || *total >= MAX_GROUP_SIGNALS {
            break;
        }
        tokio::task::yield_now().await;
        gather(rx, &mut jobs, total);
    }
    jobs
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

/// A group's requests, taken off the queue: their signals end to end, how
/// many each sent, where to answer each, and the changes recorded so far.
#[derive(Default)]
struct Taken {
    signals: Vec<Signal>,
    sizes: Vec<usize>,
    answers: Vec<oneshot::Sender<Result<Vec<Change>, IntakeError>>>,
    changes: Vec<Change>,
}

impl Taken {
    fn take(&mut self, jobs: Vec<Job>) {
        for job in jobs {
            self.sizes.push(job.signals.len());
            self.answers.push(job.done);
            self.signals.extend(job.signals);
        }
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
            let signals = self.group(rx, first).await;
            let metrics = &self.pipeline.metrics;
            metrics.intake_group_signals.observe(signals as f64);
            metrics
                .intake_group_duration
                .observe(taken.elapsed().as_secs_f64());
        }
    }

    /// One group commit, begun with `first` and what is queued behind it,
    /// and written as its requests arrive: the jobs that came in while one
    /// batch was being written are the next batch, so SQLite works while
    /// the senders' requests are still being received and parsed, instead
    /// of after. It commits once a batch is written with nothing more
    /// arriving (see [`more`]), or another write is waiting for it, or it
    /// is full. Returns the signals it held.
    ///
    /// Measured in the storm bench (stop 30, alternating with the build
    /// that gathered the whole group before writing any of it, eight runs
    /// each): 1.01x and 1.02x of Alertmanager's rate against 0.96x and
    /// 0.97x, with groups of 316 signals (of the 320 the bench keeps in
    /// flight) written in 2.1 to 2.5 batches.
    async fn group(&self, rx: &mut mpsc::Receiver<Job>, first: Job) -> usize {
        let mut total = first.signals.len();
        let mut jobs = vec![first];
        gather(rx, &mut jobs, &mut total);
        let mut group = match self.store.begin_group().await {
            Ok(group) => group,
            Err(_) => {
                self.alone(jobs).await;
                return total;
            }
        };
        let mut taken = Taken::default();
        while !jobs.is_empty() {
            let from = taken.signals.len();
            taken.take(jobs);
            let written = self
                .pipeline
                .record_in_group(&mut group, &taken.signals[from..])
                .await;
            match written {
                Ok(changes) => taken.changes.extend(changes),
                Err(_) => {
                    drop(group);
                    self.alone_taken(taken).await;
                    return total;
                }
            }
            // Another write waiting for the writing connection (an
            // incident the pipeline opens) ends the gathering: it waits
            // for this group, not for every request still to come.
            // Evidence need not: it rides in this commit whenever it ends
            // (ending groups for it halved them in a storm, where every
            // engine batch attaches signals to the open incidents).
            jobs = match total < MAX_GROUP_SIGNALS && !self.store.writer_wanted() {
                true => more(rx, &mut total).await,
                false => Vec::new(),
            };
        }
        match group.commit(self.evidence.waiting()).await {
            Ok(()) => self.answer(taken).await,
            Err(_) => self.alone_taken(taken).await,
        }
        total
    }

    /// Hands a committed group to the engine, then answers its senders.
    /// The whole group goes to the engine as one batch (one wake of the
    /// pipeline, not one per request); the channel's bound still holds (a
    /// group is at most [`MAX_GROUP_SIGNALS`]), so a rule engine that falls
    /// behind slows senders down instead of letting the queue grow.
    async fn answer(&self, taken: Taken) {
        let Taken {
            signals,
            sizes,
            answers,
            changes,
            ..
        } = taken;
        let handed = self.hand_over(signals, &changes).await;
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

    /// After a group failed: each request's signals recorded on their own,
    /// so one sender's bad signal does not fail the others.
    async fn alone_taken(&self, taken: Taken) {
        let Taken {
            mut signals,
            sizes,
            answers,
            ..
        } = taken;
        let mut jobs = Vec::with_capacity(sizes.len());
        for (size, done) in sizes.iter().rev().zip(answers.into_iter().rev()) {
            jobs.push(Job {
                signals: signals.split_off(signals.len() - size),
                done,
            });
        }
        jobs.reverse();
        self.alone(jobs).await;
    }

    /// Each job recorded in a transaction of its own (evidence that failed
    /// a group, a deposed leader's say, must not fail its signals).
    async fn alone(&self, jobs: Vec<Job>) {
        for job in jobs {
            let _ = job
                .done
                .send(record(&self.store, &self.pipeline, job.signals).await);
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
    use std::sync::Arc;

    use super::*;
    use crate::rules::RuleSet;
    use crate::sources::RulesInForce;
    use crate::telemetry::Metrics;

    fn job(signals: usize) -> Job {
        let signal = Signal::firing("fp", "NodeDown", &[]);
        Job {
            signals: vec![signal; signals],
            done: oneshot::channel().0,
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn more_takes_in_the_requests_being_handled_meanwhile() {
        let (tx, mut rx) = mpsc::channel(16);
        // Handlers that are ready to run, and will send once they do: on
        // this one thread, only when the writer yields.
        for _ in 0..3 {
            let tx = tx.clone();
            tokio::spawn(async move { tx.send(job(10)).await });
        }
        let mut total = 10;
        let jobs = more(&mut rx, &mut total).await;
        assert_eq!(jobs.len(), 3);
        assert_eq!(total, 40);
        assert!(more(&mut rx, &mut total).await.is_empty(), "none left");
        assert_eq!(total, 40);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn more_stops_at_the_bound_and_leaves_the_rest_queued() {
        let (tx, mut rx) = mpsc::channel(64);
        for _ in 0..60 {
            tx.send(job(10)).await.unwrap();
        }
        let mut total = 10;
        let jobs = more(&mut rx, &mut total).await;
        assert_eq!(total, MAX_GROUP_SIGNALS);
        assert_eq!(jobs.len(), 49);
        assert_eq!(rx.len(), 11);
    }

    /// A write waiting for the writing connection (here, signals recorded
    /// directly, as the pipeline writes an incident) ends the group's
    /// gathering: the group commits what it has, the request that arrived
    /// meanwhile waits for the next one, and the write goes first.
    #[tokio::test(flavor = "current_thread")]
    async fn a_write_waiting_for_the_connection_ends_the_gathering() {
        let (store, writer) = writer().await;
        let (tx, mut rx) = mpsc::channel(16);
        let (late, _answer) = request(1);
        let direct = tokio::spawn({
            let store = store.clone();
            async move {
                let signal = Signal::firing("direct", "NodeDown", &[]);
                store.record_signals(&[signal]).await
            }
        });
        tokio::spawn(async move { tx.send(late).await });
        let (first, answer) = request(0);
        assert_eq!(writer.group(&mut rx, first).await, 10, "the first alone");
        assert_eq!(answer.await.unwrap().unwrap(), [Change::Fired; 10]);
        assert_eq!(rx.len(), 1, "the late request waits for the next group");
        assert_eq!(direct.await.unwrap().unwrap(), [Change::Fired]);
    }

    async fn writer() -> (Store, Writer) {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let (shared, evidence) = store.clone().share_writes();
        // No rule: nothing is handed to the engine.
        let (engine, _) = mpsc::channel(16);
        let rules = RulesInForce::new(Arc::new(RuleSet::default()));
        let writer = Writer {
            store: shared,
            pipeline: Handoff::new(engine, rules, Metrics::new()),
            evidence,
        };
        (store, writer)
    }

    /// Ten new signals, and where their sender is answered.
    fn request(i: usize) -> (Job, oneshot::Receiver<Result<Vec<Change>, IntakeError>>) {
        let signals = (0..10)
            .map(|k| Signal::firing(&format!("fp{i}-{k}"), "NodeDown", &[]))
            .collect();
        let (done, answer) = oneshot::channel();
        (Job { signals, done }, answer)
    }

    /// Requests that arrive after a group has begun (here, while its
    /// transaction is being opened on SQLite's thread) are written into the
    /// same transaction, in a later batch, and every sender is answered with
    /// its own changes once it commits.
    #[tokio::test(flavor = "current_thread")]
    async fn requests_that_arrive_while_a_group_is_open_join_it() {
        let (store, writer) = writer().await;
        let (tx, mut rx) = mpsc::channel(16);
        let mut answers = Vec::new();
        // Senders that run only once the writer waits for SQLite's thread
        // (or yields): after the group's first batch was taken.
        for i in 1..4 {
            let (job, answer) = request(i);
            answers.push(answer);
            let tx = tx.clone();
            tokio::spawn(async move { tx.send(job).await });
        }
        let (first, answer) = request(0);
        answers.insert(0, answer);
        assert_eq!(writer.group(&mut rx, first).await, 40, "one group");
        for answer in answers {
            assert_eq!(answer.await.unwrap().unwrap(), [Change::Fired; 10]);
        }
        for i in 0..4 {
            for k in 0..10 {
                let id = format!("alertmanager:fp{i}-{k}");
                assert!(store.signal(&id).await.unwrap().is_some(), "{id}");
            }
        }
    }
}
