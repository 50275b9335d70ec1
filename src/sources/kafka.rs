//! Kafka events → signals: a consumer group on the configured topics.
//!
//! At least once, never lost: messages are collected into batches (up to
//! `batch.max_messages`, or `batch.max_wait` after the first), each batch
//! goes to [`crate::sources::record`] in consumption order as one store
//! transaction, and only then are the offsets past it stored for commit.
//! A store failure retries the same batch with backoff and commits
//! nothing. What is redelivered after a rebalance or restart carries the
//! same fingerprint and is deduplicated by the store.
//!
//! A message that cannot become a signal (see [`DecodeError`]), or whose
//! signal is over a limit of `intake.limits`, is logged,
//! counted, and produced — payload, key and headers, plus headers saying
//! why and where from — to the dead-letter topic; its offset is stored only
//! once the dead-letter broker acknowledged it. It never stops the consumer.
//!
//! librdkafka reconnects by itself; [`Health`] follows its error and
//! statistics callbacks for `/readyz`.

mod config;
mod context;
pub mod formats;

use std::time::Duration;

use chrono::Utc;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::{Message as _, Offset, TopicPartitionList};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{BatchConfig, KafkaConfig, TopicConfig};
pub use context::{Connection, Health, KafkaMetrics};

use self::context::Context;
use self::formats::{DecodeError, Format};
use super::limits::IntakeLimits;
use super::{IntakeError, record};
use crate::dispatch::RetryPolicy;
use crate::dispatch::retry::backoff;
use crate::primitives::supervise;
use crate::signal::Signal;
use crate::store::Store;

/// Header names on a dead-lettered message, besides the original headers.
pub const HEADER_ERROR: &str = "dr-reactor-error";
pub const HEADER_REASON: &str = "dr-reactor-reason";
pub const HEADER_TOPIC: &str = "dr-reactor-topic";
pub const HEADER_PARTITION: &str = "dr-reactor-partition";
pub const HEADER_OFFSET: &str = "dr-reactor-offset";

/// Pauses between attempts at a batch the store refused, or a dead-letter
/// produce that failed. Attempts never run out: skipping would lose data.
const RETRY: RetryPolicy = RetryPolicy {
    max_attempts: std::num::NonZeroU32::MAX,
    initial_backoff: Duration::from_millis(100),
    max_backoff: Duration::from_secs(5),
};

#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("kafka: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
}

/// The running consumer. [`Handle::stop`] ends it and drops its pipeline
/// sender, so the pipeline can drain.
pub struct Handle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    pub health: Health,
}

impl Handle {
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            tracing::error!("kafka consumer task failed: {e}");
        }
    }
}

/// Subscribes and spawns the consumer, supervised: after a panic it is
/// built again (a new client in the same group, which resumes from the
/// committed offsets) and `restarts` counts it. Fails only on
/// configuration the client refuses; brokers being down is not an error
/// (it reconnects).
pub fn start(
    cfg: &KafkaConfig,
    store: Store,
    pipeline: super::Handoff,
    metrics: KafkaMetrics,
    limits: IntakeLimits,
    restarts: prometheus::IntCounter,
) -> Result<Handle, KafkaError> {
    let (context, health) = Context::consumer(metrics.clone());
    let parts = Parts {
        cfg: cfg.clone(),
        store,
        pipeline,
        metrics,
        limits,
        health: health.clone(),
    };
    let mut first = Some(parts.build(context)?);
    let (stop, stopped) = watch::channel(false);
    let names: Vec<&str> = cfg.topics.iter().map(|t| t.name.as_str()).collect();
    tracing::info!(brokers = %cfg.brokers, group = %cfg.group_id, topics = ?names, "kafka consumer started");
    let (task, _) = supervise::spawn("kafka_consumer", restarts, move || {
        let (source, parts, stopped) = (first.take(), parts.clone(), stopped.clone());
        async move {
            match source {
                Some(source) => source.run(stopped).await,
                None => parts.rebuild_and_run(stopped).await,
            }
        }
    });
    Ok(Handle { stop, task, health })
}

/// What a consumer is built from, kept to build it again after a panic.
#[derive(Clone)]
struct Parts {
    cfg: KafkaConfig,
    store: Store,
    pipeline: super::Handoff,
    metrics: KafkaMetrics,
    limits: IntakeLimits,
    health: Health,
}

impl Parts {
    fn build(&self, context: Context) -> Result<Source, KafkaError> {
        let cfg = &self.cfg;
        let consumer: StreamConsumer<Context> =
            consumer_config(cfg).create_with_context(context)?;
        let names: Vec<&str> = cfg.topics.iter().map(|t| t.name.as_str()).collect();
        consumer.subscribe(&names)?;
        let dlq = match &cfg.dead_letter_topic {
            Some(topic) => Some(DeadLetter {
                producer: producer_config(cfg).create_with_context(Context {
                    health: None,
                    metrics: self.metrics.clone(),
                })?,
                topic: topic.clone(),
            }),
            None => None,
        };
        let topics = cfg
            .topics
            .iter()
            .map(|t| Topic {
                consumed: self.metrics.consumed(&t.name),
                name: t.name.clone(),
                format: t.format.clone(),
                zone_ids: t.zone_ids.clone(),
            })
            .collect();
        Ok(Source {
            consumer,
            dlq,
            topics,
            limit: cfg.max_message_bytes,
            limits: self.limits.clone(),
            batch: cfg.batch.clone(),
            store: self.store.clone(),
            pipeline: self.pipeline.clone(),
            metrics: self.metrics.clone(),
        })
    }

    /// The configuration was accepted once; a refusal now is the client's
    /// passing trouble, so it is retried until stopped.
    async fn rebuild_and_run(self, mut stop: Stop) {
        let mut attempt = 0;
        loop {
            let context = Context {
                health: Some(self.health.clone()),
                metrics: self.metrics.clone(),
            };
            match self.build(context) {
                Ok(source) => return source.run(stop).await,
                Err(e) => {
                    attempt += 1;
                    self.metrics.error("restart");
                    tracing::error!(error = %e, attempt, "rebuilding the kafka consumer failed; retrying");
                    if pause(attempt, &mut stop).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

fn with_defaults(
    mut c: rdkafka::ClientConfig,
    cfg: &KafkaConfig,
    defaults: &[(&str, &str)],
) -> rdkafka::ClientConfig {
    for (k, v) in defaults {
        if !cfg.properties.contains_key(*k) {
            c.set(*k, *v);
        }
    }
    c
}

fn consumer_config(cfg: &KafkaConfig) -> rdkafka::ClientConfig {
    let mut c = with_defaults(
        cfg.client_config(),
        cfg,
        // Statistics feed the lag gauges and the connection state.
        &[("statistics.interval.ms", "1000")],
    );
    c.set("group.id", &cfg.group_id)
        // Auto-commit only commits what was explicitly stored, which is
        // done after the store write: the commit never runs ahead of it.
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false");
    c
}

fn producer_config(cfg: &KafkaConfig) -> rdkafka::ClientConfig {
    // A dead-letter broker that is down shows up as a failed attempt (and a
    // retry) within seconds rather than librdkafka's five minutes.
    with_defaults(cfg.client_config(), cfg, &[("message.timeout.ms", "30000")])
}

struct Topic {
    name: String,
    format: Format,
    zone_ids: std::collections::BTreeMap<String, String>,
    consumed: prometheus::IntCounter,
}

struct DeadLetter {
    producer: FutureProducer<Context>,
    topic: String,
}

/// A message that could not become a signal, kept whole for the
/// dead-letter topic.
struct Poison {
    message: OwnedMessage,
    error: DecodeError,
}

/// Messages taken from the consumer and not yet recorded.
struct Batch {
    /// In consumption order, so each partition's order is kept.
    signals: Vec<Signal>,
    poison: Vec<Poison>,
    /// Per partition, the offset after the last message taken: what to
    /// store once everything before it is recorded or dead-lettered.
    next: TopicPartitionList,
    taken: usize,
}

impl Batch {
    fn new(capacity: usize) -> Batch {
        Batch {
            signals: Vec::with_capacity(capacity),
            poison: Vec::new(),
            next: TopicPartitionList::new(),
            taken: 0,
        }
    }

    fn advance(&mut self, topic: &str, partition: i32, offset: i64) {
        let next = Offset::Offset(offset + 1);
        self.taken += 1;
        let set = match self.next.find_partition(topic, partition) {
            Some(mut elem) => elem.set_offset(next),
            None => self.next.add_partition_offset(topic, partition, next),
        };
        // Only an invalid offset value is refused; a broker never hands
        // one out.
        if let Err(e) = set {
            tracing::error!(topic, partition, offset, "kafka offset not tracked: {e}");
        }
    }
}

/// The consumer was told to stop while waiting.
struct Stopped;

/// True once the consumer is to stop (or its handle is gone).
type Stop = watch::Receiver<bool>;

/// Resolves when `stop` says so.
async fn stopping(stop: &mut Stop) {
    let _ = stop.wait_for(|stop| *stop).await;
}

struct Source {
    consumer: StreamConsumer<Context>,
    dlq: Option<DeadLetter>,
    topics: Vec<Topic>,
    limit: usize,
    limits: IntakeLimits,
    batch: BatchConfig,
    store: Store,
    pipeline: super::Handoff,
    metrics: KafkaMetrics,
}

impl Source {
    async fn run(self, mut stop: Stop) {
        loop {
            let mut batch = Batch::new(self.batch.max_messages);
            // A batch cut short by the stop is dropped: none of it was
            // stored, so it is redelivered to whoever consumes next.
            tokio::select! {
                () = stopping(&mut stop) => break,
                () = self.fill(&mut batch) => {}
            }
            if self.settle(batch, &mut stop).await.is_err() {
                break;
            }
        }
        tracing::info!("kafka consumer stopping");
        drop(self.pipeline);
        // Closing leaves the group and commits the stored offsets; it
        // blocks while it talks to the brokers, so not on a runtime thread.
        let consumer = self.consumer;
        let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
    }

    /// Waits for a first message, then takes more until the batch is full
    /// or `max_wait` has passed.
    async fn fill(&self, batch: &mut Batch) {
        while batch.taken == 0 {
            let received = self.consumer.recv().await;
            self.take(received, batch);
        }
        let deadline = tokio::time::Instant::now() + self.batch.max_wait;
        while batch.taken < self.batch.max_messages {
            match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                Ok(received) => self.take(received, batch),
                Err(_) => break,
            }
        }
    }

    fn take(
        &self,
        received: Result<BorrowedMessage<'_>, rdkafka::error::KafkaError>,
        batch: &mut Batch,
    ) {
        let message = match received {
            Ok(m) => m,
            Err(e) => {
                // Transport and broker errors: librdkafka retries and
                // reconnects; nothing was consumed.
                self.metrics.error("consume");
                tracing::warn!(error = %e, "kafka consume error");
                return;
            }
        };
        batch.advance(message.topic(), message.partition(), message.offset());
        let decoded = match self.topics.iter().find(|t| t.name == message.topic()) {
            Some(topic) => {
                topic.consumed.inc();
                topic
                    .format
                    .admit(message.payload(), self.limit, &self.limits, Utc::now())
                    .map(|s| formats::name_zone(s, &topic.zone_ids))
            }
            None => Err(DecodeError::Unmappable {
                format: "unconfigured",
                message: "topic is not configured".into(),
            }),
        };
        match decoded {
            Ok(signal) => batch.signals.push(signal),
            Err(error) => batch.poison.push(Poison {
                message: message.detach(),
                error,
            }),
        }
    }

    /// Dead-letters the poison, records the signals, then stores the
    /// offsets: each step only after the one before succeeded.
    async fn settle(&self, batch: Batch, stop: &mut Stop) -> Result<(), Stopped> {
        for p in &batch.poison {
            self.set_aside(p, stop).await?;
        }
        self.record(&batch.signals, stop).await?;
        if let Err(e) = self.consumer.store_offsets(&batch.next) {
            // A partition revoked meanwhile: its new owner gets the batch
            // again and the store deduplicates it.
            self.metrics.error("offset_store");
            tracing::info!(error = %e, "kafka offsets not stored (rebalanced?)");
        }
        Ok(())
    }

    async fn record(&self, signals: &[Signal], stop: &mut Stop) -> Result<(), Stopped> {
        let mut attempt = 0;
        loop {
            // `record` takes the batch; keep ours to retry it unchanged.
            match record(&self.store, &self.pipeline, signals.to_vec()).await {
                Ok(changes) => {
                    self.metrics.recorded(&changes);
                    return Ok(());
                }
                Err(IntakeError::ShuttingDown) => return Err(Stopped),
                Err(IntakeError::Store(e)) => {
                    attempt += 1;
                    self.metrics.error("record");
                    tracing::warn!(error = %e, signals = signals.len(), attempt, "recording kafka batch failed; retrying, offsets not committed");
                    pause(attempt, stop).await?;
                }
            }
        }
    }

    async fn set_aside(&self, p: &Poison, stop: &mut Stop) -> Result<(), Stopped> {
        let m = &p.message;
        let reason = p.error.reason();
        tracing::warn!(topic = m.topic(), partition = m.partition(), offset = m.offset(), reason, error = %p.error, dead_letter = self.dlq.as_ref().map(|d| d.topic.as_str()), "poison kafka message");
        if let Some(dlq) = &self.dlq {
            let mut attempt = 0;
            loop {
                let sent = tokio::select! {
                    sent = dlq.send(p) => sent,
                    () = stopping(stop) => return Err(Stopped),
                };
                match sent {
                    Ok(()) => break,
                    Err(e) => {
                        attempt += 1;
                        self.metrics.error("dead_letter");
                        tracing::warn!(error = %e, attempt, topic = %dlq.topic, "dead-lettering failed; retrying, offsets not committed");
                        pause(attempt, stop).await?;
                    }
                }
            }
        }
        self.metrics.dead_lettered(reason);
        Ok(())
    }
}

impl DeadLetter {
    /// Produces the original key, payload and headers plus the error
    /// headers, and waits for the broker's acknowledgement.
    async fn send(&self, p: &Poison) -> Result<(), rdkafka::error::KafkaError> {
        let m = &p.message;
        let (error, partition, offset) = (
            p.error.to_string(),
            m.partition().to_string(),
            m.offset().to_string(),
        );
        let ours: [(&str, &str); 5] = [
            (HEADER_ERROR, &error),
            (HEADER_REASON, p.error.reason()),
            (HEADER_TOPIC, m.topic()),
            (HEADER_PARTITION, &partition),
            (HEADER_OFFSET, &offset),
        ];
        let mut headers = m.headers().cloned().unwrap_or_else(OwnedHeaders::new);
        for (key, value) in ours {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        let mut record = FutureRecord::<[u8], [u8]>::to(&self.topic).headers(headers);
        if let Some(key) = m.key() {
            record = record.key(key);
        }
        if let Some(payload) = m.payload() {
            record = record.payload(payload);
        }
        self.producer
            .send(record, Timeout::Never)
            .await
            .map(|_| ())
            .map_err(|(e, _)| e)
    }
}

/// Sleeps before retry `attempt`, unless told to stop.
async fn pause(attempt: u32, stop: &mut Stop) -> Result<(), Stopped> {
    tokio::select! {
        () = tokio::time::sleep(backoff(&RETRY, attempt, fastrand::f64())) => Ok(()),
        () = stopping(stop) => Err(Stopped),
    }
}
