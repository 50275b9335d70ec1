//! What the Kafka client tells us outside the message stream: errors,
//! statistics, logs. They become the connection state `/readyz` shows and
//! the consumer's metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use prometheus::core::Collector;
use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, TopicPartitionList};
use serde::Serialize;

use crate::signal::Change;

/// The consumer's view of its brokers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Connection {
    /// Started; no statistics or error yet.
    Connecting,
    Connected,
    /// librdkafka reported all brokers down; it keeps reconnecting.
    Disconnected,
}

/// Shared between the client's callbacks (writer) and `/readyz` (reader).
#[derive(Debug, Clone)]
pub struct Health(Arc<AtomicU8>);

impl Health {
    fn new() -> Health {
        Health(Arc::new(AtomicU8::new(Connection::Connecting as u8)))
    }

    pub fn connection(&self) -> Connection {
        match self.0.load(Ordering::Relaxed) {
            x if x == Connection::Connected as u8 => Connection::Connected,
            x if x == Connection::Disconnected as u8 => Connection::Disconnected,
            _ => Connection::Connecting,
        }
    }

    fn set(&self, c: Connection) {
        let before = self.0.swap(c as u8, Ordering::Relaxed);
        if before != c as u8 {
            tracing::info!(state = ?c, "kafka connection");
        }
    }
}

/// The Kafka source's metrics, registered on the service registry.
/// Labels are bounded: topics and partitions come from the config and the
/// cluster, reasons and kinds are fixed sets.
#[derive(Clone)]
pub struct KafkaMetrics {
    consumed: IntCounterVec,
    recorded: IntCounterVec,
    dead_lettered: IntCounterVec,
    errors: IntCounterVec,
    lag: IntGaugeVec,
    connected: IntGauge,
    /// Messages per recorded batch: near 1 under load means the store
    /// round trip, not Kafka, sets the pace.
    batch: Histogram,
}

fn register<T: Collector + Clone + 'static>(r: &Registry, c: T) -> T {
    r.register(Box::new(c.clone()))
        .expect("kafka metric names are unique and valid");
    c
}

fn counter(r: &Registry, name: &str, help: &str, label: &str) -> IntCounterVec {
    register(
        r,
        IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric"),
    )
}

impl KafkaMetrics {
    pub fn new(r: &Registry) -> KafkaMetrics {
        KafkaMetrics {
            consumed: counter(
                r,
                "kafka_messages_total",
                "Kafka messages consumed, by topic.",
                "topic",
            ),
            recorded: counter(
                r,
                "kafka_signals_total",
                "Signals recorded from Kafka, by what recording changed (refreshed and ignored are re-deliveries).",
                "change",
            ),
            dead_lettered: counter(
                r,
                "kafka_dead_lettered_total",
                "Poison messages set aside (dead-lettered, or skipped without a dead-letter topic), by reason.",
                "reason",
            ),
            errors: counter(
                r,
                "kafka_errors_total",
                "Kafka source errors, by kind (client, consume, record, dead_letter, offset_store, commit).",
                "kind",
            ),
            lag: register(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "kafka_consumer_lag",
                        "Messages behind the partition's high watermark.",
                    ),
                    &["topic", "partition"],
                )
                .expect("valid metric"),
            ),
            connected: register(
                r,
                IntGauge::new(
                    "kafka_connected",
                    "1 while the consumer has a broker connection up.",
                )
                .expect("valid metric"),
            ),
            batch: register(
                r,
                Histogram::with_opts(
                    HistogramOpts::new("kafka_batch_messages", "Messages per recorded batch.")
                        .buckets(vec![1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 5000.0]),
                )
                .expect("valid metric"),
            ),
        }
    }

    pub(super) fn consumed(&self, topic: &str) -> IntCounter {
        self.consumed.with_label_values(&[topic])
    }

    pub(super) fn recorded(&self, changes: &[Change]) {
        self.batch.observe(changes.len() as f64);
        for c in [
            Change::Fired,
            Change::Refreshed,
            Change::Resolved,
            Change::Ignored,
        ] {
            let n = changes.iter().filter(|x| **x == c).count() as u64;
            if n > 0 {
                self.recorded
                    .with_label_values(&[change_label(c)])
                    .inc_by(n);
            }
        }
    }

    pub(super) fn dead_lettered(&self, reason: &str) {
        self.dead_lettered.with_label_values(&[reason]).inc();
    }

    pub(super) fn error(&self, kind: &str) {
        self.errors.with_label_values(&[kind]).inc();
    }

    fn lag(&self, stats: &Statistics) {
        for (topic, t) in &stats.topics {
            for p in t.partitions.values().filter(|p| p.partition >= 0) {
                let partition = p.partition.to_string();
                let labels = [topic.as_str(), partition.as_str()];
                // -1: not assigned here (any more), or not known yet.
                if p.consumer_lag >= 0 {
                    self.lag.with_label_values(&labels).set(p.consumer_lag);
                } else {
                    let _ = self.lag.remove_label_values(&labels);
                }
            }
        }
    }
}

fn change_label(c: Change) -> &'static str {
    match c {
        Change::Fired => "fired",
        Change::Refreshed => "refreshed",
        Change::Resolved => "resolved",
        Change::Ignored => "ignored",
    }
}

/// The consumer's context tracks health; the dead-letter producer's only
/// logs and counts (its view of the brokers would race the consumer's).
pub(super) struct Context {
    pub health: Option<Health>,
    pub metrics: KafkaMetrics,
}

impl Context {
    pub fn consumer(metrics: KafkaMetrics) -> (Context, Health) {
        let health = Health::new();
        let ctx = Context {
            health: Some(health.clone()),
            metrics,
        };
        (ctx, health)
    }

    fn set(&self, c: Connection) {
        if let Some(h) = &self.health {
            h.set(c);
            self.metrics
                .connected
                .set(i64::from(c == Connection::Connected));
        }
    }
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(target: "librdkafka", fac, "{message}"),
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", fac, "{message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", fac, "{message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", fac, "{message}"),
        }
    }

    fn stats(&self, stats: Statistics) {
        // Bootstrap-only ("configured" before metadata) and internal broker
        // entries do not prove a working connection; a learned one up does.
        let up = stats
            .brokers
            .values()
            .any(|b| b.state == "UP" && b.nodeid >= 0);
        self.set(if up {
            Connection::Connected
        } else {
            Connection::Disconnected
        });
        if self.health.is_some() {
            self.metrics.lag(&stats);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.set(Connection::Disconnected);
        }
        self.metrics.error("client");
        tracing::warn!(%error, reason, "kafka client error");
    }
}

impl ConsumerContext for Context {
    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        // Not fatal: the stored offsets are committed again at the next
        // interval, and anything redelivered meanwhile is deduplicated.
        if let Err(e) = result
            && e.rdkafka_error_code() != Some(RDKafkaErrorCode::NoOffset)
        {
            self.metrics.error("commit");
            tracing::warn!(error = %e, "committing kafka offsets failed");
        }
    }
}
