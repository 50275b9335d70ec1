//! The `kafka:` section as it reads in a whole config file: positions are
//! the file's, and semantic errors name the key path from the top.

use std::path::Path;

use super::Config;
use crate::sources::kafka::formats::Format;

const BASE: &str = "webhook:\n  auth:\n    insecure_no_auth: true\n";

fn parse(kafka: &str) -> Result<Config, String> {
    Config::parse(&format!("{BASE}kafka:\n{kafka}"), Path::new("cfg.yaml"))
        .map_err(|e| e.to_string())
}

#[test]
fn full_section_parses_with_every_format() {
    // SAFETY: no other test reads or writes this variable.
    unsafe { std::env::set_var("DR_REACTOR_TEST_KAFKA_PASSWORD", "pw") };
    let cfg = parse(
        "  brokers: 127.0.0.1:9092\n  group_id: dr-reactor\n  topics:\n\
         \x20   - {name: aws-health, format: aws_health}\n\
         \x20   - {name: deploys, format: deploy}\n\
         \x20   - {name: events, format: cloudevents}\n\
         \x20   - {name: heartbeats, format: heartbeat}\n\
         \x20   - name: legacy-alarms\n\
         \x20     format: {generic: {name: /kind, id: /eventId, labels: {service: /svc}, required: [service], status: {pointer: /state, resolved: [OK]}}}\n\
         \x20 dead_letter_topic: dr-reactor-dlq\n  max_message_bytes: 65536\n\
         \x20 batch: {max_messages: 100, max_wait: 5ms}\n\
         \x20 properties: {security.protocol: SASL_SSL, sasl.mechanism: SCRAM-SHA-512, sasl.username: dr, session.timeout.ms: 6000}\n\
         \x20 secret_properties: {sasl.password: {env: DR_REACTOR_TEST_KAFKA_PASSWORD}}\n",
    )
    .unwrap();
    let k = cfg.kafka.unwrap();
    let formats: Vec<&str> = k.topics.iter().map(|t| t.format.name()).collect();
    assert_eq!(
        formats,
        [
            "aws_health",
            "deploy",
            "cloudevents",
            "heartbeat",
            "generic"
        ]
    );
    assert!(matches!(&k.topics[4].format, Format::Generic(m) if m.required == ["service"]));
    assert_eq!(k.batch.max_messages, 100);
    assert_eq!(k.batch.max_wait, std::time::Duration::from_millis(5));
    assert_eq!(k.properties["session.timeout.ms"], "6000");
    assert_eq!(k.secret_properties["sasl.password"].expose(), "pw");
    assert!(!format!("{k:?}").contains("pw\""), "secrets never print");
}

#[test]
fn defaults() {
    let k = parse("  brokers: b:9092\n  group_id: g\n  topics: [{name: t, format: deploy}]\n")
        .unwrap()
        .kafka
        .unwrap();
    assert_eq!(k.max_message_bytes, 1 << 20);
    assert_eq!(k.batch.max_messages, 500);
    assert_eq!(k.batch.max_wait, std::time::Duration::from_millis(20));
    assert!(k.dead_letter_topic.is_none());
}

#[test]
fn unknown_keys_and_formats_are_named_with_position() {
    let err = parse("  brokers: b\n  group_id: g\n  topic: []\n").unwrap_err();
    assert!(err.starts_with("cfg.yaml:7:3: "), "{err}");
    assert!(err.contains("topic"), "{err}");
    let err =
        parse("  brokers: b\n  group_id: g\n  topics: [{name: t, format: avro}]\n").unwrap_err();
    assert!(
        err.starts_with("cfg.yaml:7:30: unknown variant `avro`"),
        "{err}"
    );
    assert!(err.contains("avro"), "{err}");
}

#[test]
fn semantic_errors_name_the_key() {
    let t = "  brokers: b\n  group_id: g\n  topics: [{name: t, format: deploy}]\n";
    for (kafka, want) in [
        (
            "  brokers: ''\n  group_id: g\n  topics: [{name: t, format: deploy}]\n",
            "kafka.brokers: must not be empty",
        ),
        (
            "  brokers: b\n  group_id: ' '\n  topics: [{name: t, format: deploy}]\n",
            "kafka.group_id: must not be empty",
        ),
        (
            "  brokers: b\n  group_id: g\n  topics: []\n",
            "kafka.topics: list at least one topic to consume",
        ),
        (
            "  brokers: b\n  group_id: g\n  topics: [{name: '', format: deploy}]\n",
            "kafka.topics[0].name: must not be empty",
        ),
        (
            "  brokers: b\n  group_id: g\n  topics: [{name: t, format: deploy}, {name: t, format: heartbeat}]\n",
            "kafka.topics[1]: topic \"t\" is listed twice",
        ),
        (
            "  brokers: b\n  group_id: g\n  topics: [{name: t, format: {generic: {name: x, required: [service]}}}]\n",
            "kafka.topics[0].format.generic.required: label \"service\" is not mapped in labels",
        ),
        (
            "  brokers: b\n  group_id: g\n  topics: [{name: t, format: {generic: {name: ''}}}]\n",
            "kafka.topics[0].format.generic.name: must not be empty",
        ),
        (
            &format!("{t}  dead_letter_topic: t\n"),
            "kafka.dead_letter_topic: \"t\" is also consumed; a poison message would come back forever",
        ),
        (
            &format!("{t}  dead_letter_topic: ''\n"),
            "kafka.dead_letter_topic: must not be empty",
        ),
        (
            &format!("{t}  max_message_bytes: 0\n"),
            "kafka.max_message_bytes: must be greater than 0",
        ),
        (
            &format!("{t}  batch: {{max_messages: 0}}\n"),
            "kafka.batch.max_messages: must be greater than 0",
        ),
        (
            &format!("{t}  properties: {{enable.auto.commit: 'false'}}\n"),
            "kafka.properties.enable.auto.commit: set by dr-reactor (dr-reactor commits offsets itself)",
        ),
        (
            &format!("{t}  secret_properties: {{group.id: x}}\n"),
            "kafka.secret_properties.group.id: set by dr-reactor (use kafka.group_id)",
        ),
        (
            &format!("{t}  properties: {{sasl.password: x}}\n"),
            "kafka.properties.sasl.password: a credential; move it to kafka.secret_properties",
        ),
        (
            &format!(
                "{t}  properties: {{sasl.username: x}}\n  secret_properties: {{sasl.username: yy}}\n"
            ),
            "kafka.properties.sasl.username: also in kafka.secret_properties; keep one",
        ),
    ] {
        assert_eq!(
            parse(kafka).unwrap_err(),
            format!("cfg.yaml: {want}"),
            "{kafka}"
        );
    }
}

#[test]
fn librdkafka_refuses_unknown_properties_at_load() {
    let err = parse(
        "  brokers: b\n  group_id: g\n  topics: [{name: t, format: deploy}]\n  properties: {no.such.property: x}\n",
    )
    .unwrap_err();
    assert!(err.starts_with("cfg.yaml: kafka.properties: "), "{err}");
    assert!(err.contains("no.such.property"), "{err}");
    let err = parse(
        "  brokers: b\n  group_id: g\n  topics: [{name: t, format: deploy}]\n  properties: {session.timeout.ms: soon}\n",
    )
    .unwrap_err();
    assert!(err.contains("session.timeout.ms"), "{err}");
}
