//! Kafka consume-and-record throughput (a benchmark, not a test): 200,000
//! CloudEvents in a 16-partition topic of librdkafka's mock cluster (real
//! protocol over loopback), consumed by the real consumer into the real
//! store (SQLite file in a temp dir), in batches. The rule engine is left
//! out (its cost is `cargo bench --bench engine`): a receiver drops what
//! the consumer hands on. Bounded: it gives up after two minutes.
//!
//!   cargo bench --bench kafka

use std::sync::Arc;
use std::time::{Duration, Instant};

use dr_reactor::rules::RuleSet;
use dr_reactor::sources::kafka::{self, KafkaConfig, KafkaMetrics};
use dr_reactor::sources::{Handoff, RulesInForce};
use dr_reactor::store::Store;
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::mpsc;

const EVENTS: usize = 200_000;
/// The mock broker keeps at most 5 MiB per partition (older messages are
/// deleted): 16 partitions hold the whole backlog of ~250-byte events.
const PARTITIONS: i32 = 16;

fn event(i: usize) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "specversion": "1.0", "id": format!("e-{i}"), "source": "/bench", "type": "HighErrorRate",
        "time": "2026-11-25T03:00:00Z",
        "data": {"service": format!("svc-{}", i % 400), "region": "ap-northeast-2", "zone": format!("ap-northeast-2{}", ["a", "b", "c"][i % 3])}
    }))
    .unwrap()
}

async fn produce_all(bootstrap: &str) {
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap();
    let mut pending = Vec::with_capacity(EVENTS);
    for i in 0..EVENTS {
        let payload = event(i);
        let key = i.to_string();
        loop {
            let record = FutureRecord::to("events").key(&key).payload(&payload);
            match p.send_result(record) {
                Ok(f) => {
                    pending.push(f);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    tokio::time::sleep(Duration::from_millis(1)).await
                }
                Err((e, _)) => panic!("produce: {e}"),
            }
        }
    }
    for f in pending {
        f.await.unwrap().unwrap();
    }
}

/// Mean messages per recorded batch.
fn mean_batch(registry: &prometheus::Registry) -> f64 {
    let h = registry
        .gather()
        .into_iter()
        .find(|f| f.name() == "kafka_batch_messages")
        .and_then(|f| f.get_metric().first().map(|m| m.get_histogram().clone()))
        .unwrap_or_default();
    h.get_sample_sum() / (h.get_sample_count().max(1) as f64)
}

fn fired(registry: &prometheus::Registry) -> u64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == "kafka_signals_total")
        .flat_map(|f| f.get_metric())
        .filter(|m| m.get_label().iter().any(|l| l.value() == "fired"))
        .map(|m| m.get_counter().get_value() as u64)
        .sum()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("events", PARTITIONS, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let t = Instant::now();
    produce_all(&bootstrap).await;
    let produced = t.elapsed();

    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!(
        "sqlite://{}",
        dir.path().join("bench.db").display()
    ))
    .await
    .unwrap();
    let cfg: KafkaConfig = serde_saphyr::from_str(&format!(
        "brokers: {bootstrap}\ngroup_id: bench\ntopics: [{{name: events, format: cloudevents}}]\n\
         properties: {{auto.offset.reset: earliest}}\n"
    ))
    .unwrap();
    let (tx, mut rx) = mpsc::channel(1024);
    let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let registry = prometheus::Registry::new();
    // A rule set that matches every event, so each one is handed to the
    // engine's channel as well as recorded (the costlier path).
    let dir_rules = tempfile::tempdir().unwrap();
    std::fs::write(
        dir_rules.path().join("all.yaml"),
        "rules:\n  - name: all\n    match: {labels: []}\n    correlate: {window: 1m, when: {count: 1000000000}}\n    scenario: bench\n",
    )
    .unwrap();
    let rules = Arc::new(RuleSet::load(&[dir_rules.path().to_owned()], None).unwrap());
    let handoff = Handoff::new(
        tx,
        RulesInForce::new(rules),
        dr_reactor::telemetry::Metrics::new(),
    );
    let consumer = kafka::start(
        &cfg,
        store.clone(),
        handoff,
        KafkaMetrics::new(&registry),
        dr_reactor::sources::limits::IntakeLimits::default(),
        prometheus::IntCounter::new("restarts", "restarts").unwrap(),
    )
    .unwrap();

    let deadline = Instant::now() + Duration::from_secs(120);
    let mut first = None;
    while fired(&registry) < EVENTS as u64 {
        assert!(
            Instant::now() < deadline,
            "gave up: {} of {EVENTS} recorded, {:.1} per batch",
            fired(&registry),
            mean_batch(&registry)
        );
        if first.is_none() && fired(&registry) > 0 {
            first = Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
    let batch = mean_batch(&registry);
    consumer.stop().await;
    drain.await.unwrap();
    store.close().await;
    println!(
        "kafka: {EVENTS} events consumed and recorded in {secs:.2}s = {:.0} events/s \
         ({PARTITIONS} partitions, batches of up to {} within {:?}, {batch:.0} on average, SQLite; timed from the first recorded batch; produced in {:.1}s)",
        EVENTS as f64 / secs,
        cfg.batch.max_messages,
        cfg.batch.max_wait,
        produced.as_secs_f64()
    );
}
