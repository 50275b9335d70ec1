//! Kafka on librdkafka's mock cluster (the real protocol over TCP on
//! 127.0.0.1): topics, producing, reading a topic back.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, OwnedMessage};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::Value;

pub type Cluster = MockCluster<'static, DefaultProducerContext>;

pub fn cluster(brokers: i32, topics: &[(&str, i32)]) -> Cluster {
    let c = MockCluster::new(brokers).unwrap();
    for (name, partitions) in topics {
        c.create_topic(name, *partitions, brokers).unwrap();
    }
    c
}

pub fn producer(c: &Cluster) -> FutureProducer {
    producer_with(c, &[])
}

/// A producer with settings of its own on top of the usual ones.
pub fn producer_with(c: &Cluster, settings: &[(&str, &str)]) -> FutureProducer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", c.bootstrap_servers())
        .set("message.timeout.ms", "30000");
    for (k, v) in settings {
        config.set(*k, *v);
    }
    config.create().unwrap()
}

/// Produces one message and waits for the broker's acknowledgement.
pub async fn produce(p: &FutureProducer, topic: &str, key: Option<&str>, payload: Option<&[u8]>) {
    let mut r = FutureRecord::<str, [u8]>::to(topic);
    if let Some(k) = key {
        r = r.key(k);
    }
    if let Some(b) = payload {
        r = r.payload(b);
    }
    p.send(r, Duration::from_secs(30)).await.unwrap();
}

pub async fn produce_json(p: &FutureProducer, topic: &str, key: &str, v: &Value) {
    produce(p, topic, Some(key), Some(&serde_json::to_vec(v).unwrap())).await;
}

/// Reads every message of `topic` from the start, outside any group.
pub fn read_all(c: &Cluster, topic: &str, want: usize) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", c.bootstrap_servers())
        .set("group.id", "reader")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while out.len() < want && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            out.push(m.detach());
        }
    }
    out
}

pub fn header(m: &OwnedMessage, key: &str) -> String {
    let h = m.headers().expect("headers");
    h.iter()
        .find(|h| h.key == key)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_else(|| panic!("no header {key}"))
}
