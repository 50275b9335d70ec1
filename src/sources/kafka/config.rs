//! The `kafka:` section of the service config: strict, checked once at load.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use rdkafka::ClientConfig;
use serde::Deserialize;

use crate::primitives::Secret;
use crate::sources::kafka::formats::Format;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port[,host:port…]`, librdkafka's `bootstrap.servers`.
    pub brokers: String,
    /// The consumer group: replicas of dr-reactor share one, so each
    /// partition is read by one of them and offsets survive restarts.
    pub group_id: String,
    pub topics: Vec<TopicConfig>,
    /// Where poison messages go; without it they are logged, counted and
    /// skipped.
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
    /// Larger messages are dead-lettered as `too_large` without parsing.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    #[serde(default)]
    pub batch: BatchConfig,
    /// Passed through to librdkafka (consumer and dead-letter producer):
    /// security, timeouts, tuning.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// Like `properties`, for values that must never be printed.
    #[serde(default)]
    pub secret_properties: BTreeMap<String, Secret>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicConfig {
    pub name: String,
    pub format: Format,
    /// For `aws_health` topics: availability-zone IDs (`apne2-az1`, the same
    /// zone in every account) to this account's zone names
    /// (`ap-northeast-2a`, what the alerts say), so that AWS Health's zone
    /// evidence joins the alerts' zone incident. The ID is kept as `zone_id`.
    #[serde(default)]
    pub zone_ids: BTreeMap<String, String>,
}

/// Messages are recorded in batches, one store transaction each: the store
/// write, not Kafka, is what limits throughput.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    #[serde(default = "default_max_messages")]
    pub max_messages: usize,
    /// How long a batch waits to fill after its first message: the latency
    /// a lone event pays.
    #[serde(default = "default_max_wait", with = "crate::primitives::duration")]
    pub max_wait: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_messages: default_max_messages(),
            max_wait: default_max_wait(),
        }
    }
}

fn default_max_message_bytes() -> usize {
    1 << 20
}
fn default_max_messages() -> usize {
    500
}
fn default_max_wait() -> Duration {
    Duration::from_millis(20)
}

/// Properties dr-reactor sets itself; letting a user override them would
/// break the delivery guarantee (offsets stored only after recording).
const RESERVED: [(&str, &str); 4] = [
    ("bootstrap.servers", "use kafka.brokers"),
    ("group.id", "use kafka.group_id"),
    ("enable.auto.commit", "dr-reactor commits offsets itself"),
    (
        "enable.auto.offset.store",
        "dr-reactor stores offsets only after recording",
    ),
];

/// Properties that hold credentials: refused in `properties` so that they
/// cannot end up in a ConfigMap or a debug print by mistake.
const SECRET_NAMES: [&str; 5] = [
    "sasl.password",
    "ssl.key.password",
    "ssl.keystore.password",
    "ssl.key.pem",
    "sasl.oauthbearer.client.secret",
];

impl KafkaConfig {
    /// Semantic checks the types cannot express; errors name the key.
    pub fn check(&self) -> Result<(), String> {
        if self.brokers.trim().is_empty() {
            return Err("kafka.brokers: must not be empty".into());
        }
        if self.group_id.trim().is_empty() {
            return Err("kafka.group_id: must not be empty".into());
        }
        if self.topics.is_empty() {
            return Err("kafka.topics: list at least one topic to consume".into());
        }
        let mut seen = HashSet::new();
        for (i, t) in self.topics.iter().enumerate() {
            check_topic(i, t)?;
            if !seen.insert(t.name.as_str()) {
                return Err(format!(
                    "kafka.topics[{i}]: topic {:?} is listed twice",
                    t.name
                ));
            }
        }
        if let Some(dlq) = &self.dead_letter_topic {
            if dlq.trim().is_empty() {
                return Err("kafka.dead_letter_topic: must not be empty".into());
            }
            if seen.contains(dlq.as_str()) {
                return Err(format!(
                    "kafka.dead_letter_topic: {dlq:?} is also consumed; a poison message would come back forever"
                ));
            }
        }
        if self.max_message_bytes == 0 {
            return Err("kafka.max_message_bytes: must be greater than 0".into());
        }
        if self.batch.max_messages == 0 {
            return Err("kafka.batch.max_messages: must be greater than 0".into());
        }
        // Every message of a batch waits this long at most; beyond a minute
        // it is a typo, and far beyond it overflows the clock.
        if self.batch.max_wait > Duration::from_secs(60) {
            return Err("kafka.batch.max_wait: must be at most 1m".into());
        }
        self.check_properties()
    }

    fn check_properties(&self) -> Result<(), String> {
        let keys = self.properties.keys().map(|k| ("properties", k));
        let secret_keys = self
            .secret_properties
            .keys()
            .map(|k| ("secret_properties", k));
        for (section, key) in keys.chain(secret_keys) {
            if let Some((_, why)) = RESERVED.iter().find(|(k, _)| k == key) {
                return Err(format!("kafka.{section}.{key}: set by dr-reactor ({why})"));
            }
        }
        for key in self.properties.keys() {
            if SECRET_NAMES.contains(&key.as_str()) {
                return Err(format!(
                    "kafka.properties.{key}: a credential; move it to kafka.secret_properties"
                ));
            }
            if self.secret_properties.contains_key(key) {
                return Err(format!(
                    "kafka.properties.{key}: also in kafka.secret_properties; keep one"
                ));
            }
        }
        // librdkafka knows its property names and values: ask it now rather
        // than failing at start-up with a less precise message.
        self.client_config()
            .create_native_config()
            .map(|_| ())
            .map_err(|e| format!("kafka.properties: {e}"))
    }

    /// The librdkafka settings shared by the consumer and the dead-letter
    /// producer: brokers, the user's properties and secrets.
    pub(super) fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        for (k, v) in &self.secret_properties {
            c.set(k, v.expose());
        }
        c
    }
}

fn check_topic(i: usize, t: &TopicConfig) -> Result<(), String> {
    if t.name.trim().is_empty() {
        return Err(format!("kafka.topics[{i}].name: must not be empty"));
    }
    if let Format::Generic(m) = &t.format {
        if m.name.is_empty() {
            return Err(format!(
                "kafka.topics[{i}].format.generic.name: must not be empty"
            ));
        }
        if let Some(r) = m.required.iter().find(|r| !m.labels.contains_key(*r)) {
            return Err(format!(
                "kafka.topics[{i}].format.generic.required: label {r:?} is not mapped in labels"
            ));
        }
    }
    Ok(())
}
