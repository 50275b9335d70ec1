//! The Kafka source end to end: librdkafka's mock cluster (the real Kafka
//! protocol over TCP on 127.0.0.1), the whole service in-process, a real
//! SQLite file. Waits are polls with a bound, never guessed sleeps.

mod support;

use std::path::Path;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::mocking::MockCoordinator;
use rdkafka::producer::FutureProducer;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::{Value, json};
use support::kafka::*;
use support::*;

/// Config for a server in `dir` consuming `topics` (YAML list items) from
/// the mock cluster, with extra rule files from `dir/rules` if present.
fn config(dir: &Path, c: &Cluster, group: &str, topics: &str, extra: &str) -> String {
    let kafka = format!(
        "kafka:\n  brokers: {brokers}\n  group_id: {group}\n  topics:\n{topics}  batch: {{max_messages: 200, max_wait: 5ms}}\n\
         \x20 properties: {{auto.offset.reset: earliest, statistics.interval.ms: '200', session.timeout.ms: '6000', heartbeat.interval.ms: '500'}}\n{extra}",
        brokers = c.bootstrap_servers(),
    );
    let text = config_text(dir, &kafka);
    let rules = dir.join("rules");
    if rules.exists() {
        text.replace("  paths: [", &format!("  paths: [{}, ", rules.display()))
    } else {
        text
    }
}

fn write_rules(dir: &Path, yaml: &str) {
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    std::fs::write(dir.join("rules/kafka-test.yaml"), yaml).unwrap();
}

/// Kafka signals in the store: (rows, most fire episodes of any row).
async fn stored(dir: &Path) -> (i64, i64) {
    let url = format!("sqlite://{}", dir.join("dr-reactor.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let row: (i64, i64) = sqlx::query_as(
        "SELECT count(*), coalesce(max(episodes), 0) FROM signals WHERE source = 'kafka'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    row
}

/// One stored Kafka signal's name, labels and status.
async fn stored_signal(dir: &Path, fingerprint: &str) -> Option<(String, Value, String)> {
    let url = format!("sqlite://{}", dir.join("dr-reactor.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let row: Option<(String, String, String)> =
        sqlx::query_as("SELECT name, labels, status FROM signals WHERE id = $1")
            .bind(format!("kafka:{fingerprint}"))
            .fetch_optional(&pool)
            .await
            .unwrap();
    pool.close().await;
    row.map(|(n, l, s)| (n, serde_json::from_str(&l).unwrap(), s))
}

async fn kafka_signals(srv: &Server, change: &str) -> f64 {
    srv.metric(&format!(
        r#"dr_reactor_kafka_signals_total{{change="{change}"}}"#
    ))
    .await
}

async fn wait_incident(srv: &Server, rule: &str, secs: u64) -> Value {
    eventually(&format!("an incident of rule {rule}"), secs, || async {
        srv.incidents().await.iter().any(|i| i["rule"] == rule)
    })
    .await;
    srv.incidents()
        .await
        .into_iter()
        .find(|i| i["rule"] == rule)
        .unwrap()
}

fn cloudevent(id: &str, kind: &str, service: &str, region: &str) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "/monitoring", "type": kind,
           "data": {"service": service, "region": region}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudevent_and_generic_events_open_service_failures() {
    let dir = tempfile::tempdir().unwrap();
    let c = cluster(1, &[("events", 2), ("legacy-alarms", 1)]);
    let topics = "    - {name: events, format: cloudevents}\n    - name: legacy-alarms\n      format: {generic: {name: /kind, id: /eventId, labels: {service: /svc, region: /where/region}, required: [service], status: {pointer: /state, resolved: [OK]}}}\n";
    let srv = Server::start_with(dir.path(), &config(dir.path(), &c, "g", topics, "")).await;
    let p = producer(&c);

    produce_json(
        &p,
        "events",
        "payment",
        &cloudevent("ce-1", "HighErrorRate", "payment", "ap-northeast-2"),
    )
    .await;
    let inc = wait_incident(&srv, "service-failure", 20).await;
    assert_eq!(inc["group_labels"]["service"], "payment");
    let (name, labels, status) = stored_signal(dir.path(), "/monitoring/ce-1").await.unwrap();
    assert_eq!(
        (name.as_str(), status.as_str()),
        ("HighErrorRate", "firing")
    );
    assert_eq!(labels["ce_source"], "/monitoring");
    assert_eq!(labels["region"], "ap-northeast-2");

    let alarm = |state: &str| json!({"kind": "KubePodCrashLooping", "eventId": "alarm-7", "svc": "notify", "where": {"region": "ap-northeast-2"}, "state": state});
    produce_json(&p, "legacy-alarms", "a", &alarm("ALARM")).await;
    eventually("the notify incident", 20, || async {
        srv.incidents()
            .await
            .iter()
            .any(|i| i["group_labels"]["service"] == "notify")
    })
    .await;
    produce_json(&p, "legacy-alarms", "a", &alarm("OK")).await;
    eventually("the generic alarm to resolve", 20, || async {
        stored_signal(dir.path(), "alarm-7")
            .await
            .is_some_and(|(_, _, s)| s == "resolved")
    })
    .await;
    assert_eq!(
        srv.metric(r#"dr_reactor_kafka_messages_total{topic="legacy-alarms"}"#)
            .await,
        2.0
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_then_failure_alert_rolls_back() {
    let dir = tempfile::tempdir().unwrap();
    let c = cluster(1, &[("deploys", 1)]);
    let srv = Server::start_with(
        dir.path(),
        &config(
            dir.path(),
            &c,
            "g",
            "    - {name: deploys, format: deploy}\n",
            "",
        ),
    )
    .await;
    let p = producer(&c);
    let deploy = json!({"service": "order", "version": "1.4.2", "previous_version": "1.4.1",
                        "region": "ap-northeast-2", "id": "deploy-42"});
    produce_json(&p, "deploys", "order", &deploy).await;
    eventually("the deploy signal", 20, || async {
        stored_signal(dir.path(), "deploy-42").await.is_some()
    })
    .await;
    let (name, labels, _) = stored_signal(dir.path(), "deploy-42").await.unwrap();
    assert_eq!(name, "Deploy");
    assert_eq!(labels["previous_version"], "1.4.1");
    srv.post(&payload(vec![alert(
        "firing",
        &[
            ("alertname", "KubePodCrashLooping"),
            ("service", "order"),
            ("region", "ap-northeast-2"),
        ],
    )]))
    .await;
    let inc = wait_incident(&srv, "service-failure-after-deploy", 10).await;
    assert_eq!(inc["scenario"], "service_failure");
    assert_eq!(inc["group_labels"]["service"], "order");
    srv.stop().await;
}

fn health_event(status: &str) -> Value {
    json!({
        "version": "0", "id": format!("delivery-{status}"), "detail-type": "AWS Health Event", "source": "aws.health",
        "account": "123456789012", "time": "2026-11-25T02:58:00Z", "region": "eu-west-1", "resources": [],
        "detail": {
            "eventArn": "arn:aws:health:eu-west-1::event/EC2/AWS_EC2_OPERATIONAL_ISSUE/abc",
            "service": "EC2", "eventTypeCode": "AWS_EC2_OPERATIONAL_ISSUE", "eventTypeCategory": "issue",
            "startTime": "Wed, 25 Nov 2026 02:50:00 GMT", "statusCode": status,
            "eventRegion": "eu-west-1", "availabilityZone": "eu-west-1a"
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_health_event_opens_an_az_incident_and_its_close_resolves_it() {
    let dir = tempfile::tempdir().unwrap();
    write_rules(
        dir.path(),
        "rules:\n  - name: aws-health-zone\n    match: {source: kafka, labels: ['event_type_category=\"issue\"', 'zone!=\"\"']}\n\
         \x20   correlate: {group_by: [region, zone], window: 1h, when: {count: 1}}\n    scenario: az_failure\n    approval: {mode: auto}\n\
         \x20   plan: {steps: [{name: drain, ssm: {document: DR-CordonAndDrainZone, region: '{{ labels.region }}'}}]}\n",
    );
    let c = cluster(1, &[("aws-health", 1)]);
    let srv = Server::start_with(
        dir.path(),
        &config(
            dir.path(),
            &c,
            "g",
            "    - {name: aws-health, format: aws_health}\n",
            "",
        ),
    )
    .await;
    let p = producer(&c);
    produce_json(&p, "aws-health", "e", &health_event("open")).await;
    let inc = wait_incident(&srv, "aws-health-zone", 20).await;
    assert_eq!(inc["group_labels"]["zone"], "eu-west-1a");
    produce_json(&p, "aws-health", "e", &health_event("closed")).await;
    let arn = "arn:aws:health:eu-west-1::event/EC2/AWS_EC2_OPERATIONAL_ISSUE/abc";
    eventually("the health event to resolve", 20, || async {
        stored_signal(dir.path(), arn)
            .await
            .is_some_and(|(_, _, s)| s == "resolved")
    })
    .await;
    assert_eq!(kafka_signals(&srv, "resolved").await, 1.0);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_stopping_open_a_region_outage() {
    let dir = tempfile::tempdir().unwrap();
    write_rules(
        dir.path(),
        "rules:\n  - name: kafka-heartbeat-lost\n    match: {labels: ['alertname=\"BusHeartbeat\"', 'region!=\"\"']}\n\
         \x20   correlate: {group_by: [region], window: 10m, when: {absent: {for: 2s, alert: BusHeartbeat}}}\n\
         \x20   scenario: region_outage\n    approval: {mode: auto}\n\
         \x20   plan: {steps: [{name: failover, ssm: {document: DR-Route53Failover, region: ap-northeast-1}}]}\n",
    );
    let c = cluster(1, &[("heartbeats", 1)]);
    let srv = Server::start_with(
        dir.path(),
        &config(
            dir.path(),
            &c,
            "g",
            "    - {name: heartbeats, format: heartbeat}\n",
            "",
        ),
    )
    .await;
    let p = producer(&c);
    let beat = json!({"name": "BusHeartbeat", "labels": {"region": "ap-northeast-3"}});
    // Alive: each beat is consumed before the next is sent.
    for n in 1..=3 {
        produce_json(&p, "heartbeats", "hb", &beat).await;
        eventually("the beat to be recorded", 20, || async {
            kafka_signals(&srv, "fired").await + kafka_signals(&srv, "refreshed").await
                >= f64::from(n)
        })
        .await;
        assert!(srv.incidents().await.is_empty(), "no outage while beating");
    }
    assert_eq!(kafka_signals(&srv, "fired").await, 1.0, "one live signal");
    // Silence: the absence is the evidence.
    let inc = wait_incident(&srv, "kafka-heartbeat-lost", 10).await;
    assert_eq!(inc["scenario"], "region_outage");
    assert_eq!(inc["group_labels"]["region"], "ap-northeast-3");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_goes_to_the_dead_letter_topic_and_the_next_message_is_consumed() {
    let dir = tempfile::tempdir().unwrap();
    let c = cluster(1, &[("deploys", 1), ("dlq", 1)]);
    let cfg = config(
        dir.path(),
        &c,
        "g",
        "    - {name: deploys, format: deploy}\n",
        "  dead_letter_topic: dlq\n  max_message_bytes: 200\n",
    );
    let srv = Server::start_with(dir.path(), &cfg).await;
    let p = producer(&c);
    // All on partition 0, poison first: the good one must still get through.
    produce(&p, "deploys", Some("k-json"), Some(b"{\"service\": ")).await;
    produce(&p, "deploys", Some("k-empty"), None).await;
    produce(&p, "deploys", Some("k-big"), Some(&[b' '; 300])).await;
    produce(
        &p,
        "deploys",
        Some("k-unmappable"),
        Some(b"{\"version\": \"1\"}"),
    )
    .await;
    produce_json(
        &p,
        "deploys",
        "k-good",
        &json!({"service": "auth", "version": "2", "id": "d-1"}),
    )
    .await;
    eventually("the good deploy after the poison", 20, || async {
        stored_signal(dir.path(), "d-1").await.is_some()
    })
    .await;
    for reason in ["invalid_json", "empty", "too_large", "unmappable"] {
        assert_eq!(
            srv.metric(&format!(
                r#"dr_reactor_kafka_dead_lettered_total{{reason="{reason}"}}"#
            ))
            .await,
            1.0,
            "{reason}"
        );
    }
    let dead = read_all(&c, "dlq", 4);
    assert_eq!(dead.len(), 4);
    let reasons: Vec<String> = dead
        .iter()
        .map(|m| header(m, "dr-reactor-reason"))
        .collect();
    assert_eq!(
        reasons,
        ["invalid_json", "empty", "too_large", "unmappable"]
    );
    let first = &dead[0];
    assert_eq!(first.key(), Some(&b"k-json"[..]));
    assert_eq!(first.payload(), Some(&b"{\"service\": "[..]));
    assert_eq!(header(first, "dr-reactor-topic"), "deploys");
    assert_eq!(header(first, "dr-reactor-partition"), "0");
    assert_eq!(header(first, "dr-reactor-offset"), "0");
    assert!(
        header(first, "dr-reactor-error").starts_with("invalid JSON at line 1 column 12"),
        "{}",
        header(first, "dr-reactor-error")
    );
    assert_eq!(dead[1].payload(), None, "an empty message stays empty");
    assert_eq!(header(&dead[3], "dr-reactor-offset"), "3");
    srv.stop().await;

    // The poison's offsets were committed with the good one's: a restart
    // on the same group dead-letters nothing again.
    let srv = Server::start_with(dir.path(), &cfg).await;
    produce_json(
        &p,
        "deploys",
        "k-next",
        &json!({"service": "auth", "version": "3", "id": "d-2"}),
    )
    .await;
    eventually("the next deploy", 20, || async {
        stored_signal(dir.path(), "d-2").await.is_some()
    })
    .await;
    assert_eq!(
        srv.metric(r#"dr_reactor_kafka_messages_total{topic="deploys"}"#)
            .await,
        1.0
    );
    assert_eq!(read_all(&c, "dlq", 5).len(), 4);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_without_a_dead_letter_topic_is_counted_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let c = cluster(1, &[("events", 1)]);
    let srv = Server::start_with(
        dir.path(),
        &config(
            dir.path(),
            &c,
            "g",
            "    - {name: events, format: cloudevents}\n",
            "",
        ),
    )
    .await;
    let p = producer(&c);
    produce(&p, "events", None, Some(b"not json")).await;
    produce_json(
        &p,
        "events",
        "k",
        &cloudevent("ok-1", "Note", "auth", "ap-northeast-2"),
    )
    .await;
    eventually("the good event", 20, || async {
        stored_signal(dir.path(), "/monitoring/ok-1")
            .await
            .is_some()
    })
    .await;
    assert_eq!(
        srv.metric(r#"dr_reactor_kafka_dead_lettered_total{reason="invalid_json"}"#)
            .await,
        1.0
    );
    srv.stop().await;
}

/// Produces events `ids` concurrently (a partition whose leader is down
/// holds its messages until it is back) and waits for every ack.
async fn produce_events(p: &FutureProducer, ids: std::ops::Range<usize>) {
    let mut sends = tokio::task::JoinSet::new();
    for i in ids {
        let p = p.clone();
        sends.spawn(async move {
            let service = format!("svc-{}", i % 10);
            let ev = cloudevent(
                &format!("e-{i}"),
                "HighErrorRate",
                &service,
                "ap-northeast-2",
            );
            produce_json(&p, "events", &format!("k-{i}"), &ev).await;
        });
    }
    while let Some(r) = sends.join_next().await {
        r.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_outage_mid_stream_loses_nothing_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let c = cluster(3, &[("events", 3)]);
    // The mock cluster picks each partition's leader at random and hashes
    // the group to its coordinator, which for "g" is broker 2: one run in
    // 27 put every leader on the broker this test takes down, and every run
    // lost the coordinator too, after which the consumer gives up its
    // assignment at the session timeout. Pinned, broker 2 leads exactly one
    // partition and the coordinator (which a real cluster would move
    // elsewhere) stays up.
    for partition in 0..3 {
        c.partition_leader("events", partition, Some(partition + 1))
            .unwrap();
    }
    c.coordinator(MockCoordinator::Group("g".into()), 1)
        .unwrap();
    let srv = Server::start_with(
        dir.path(),
        &config(
            dir.path(),
            &c,
            "g",
            "    - {name: events, format: cloudevents}\n",
            "",
        ),
    )
    .await;
    // Every partition has a replica on each broker, and the default
    // `acks=all` waits for all of them: with one broker down the mock
    // cluster then stalls every partition until it shrinks the in-sync set,
    // which a loaded box made take longer than the messages' timeout. The
    // leader's acknowledgement is what this test needs from its producer;
    // what it checks is the consumer.
    let p = producer_with(&c, &[("acks", "1"), ("message.timeout.ms", "120000")]);
    produce_events(&p, 0..200).await;
    eventually("the first 200", 20, || async {
        kafka_signals(&srv, "fired").await >= 200.0
    })
    .await;

    // The leader of one of three partitions goes away with messages for
    // its partition in flight; the other two keep flowing.
    c.broker_down(2).unwrap();
    let during = tokio::spawn({
        let p = p.clone();
        async move { produce_events(&p, 200..400).await }
    });
    // Generous: librdkafka learns of the lost leader from its own metadata
    // refresh and retry backoff, which a loaded CI box stretches well past
    // the few seconds an idle one takes (20 s timed out once under a full
    // suite). It returns as soon as the condition holds.
    eventually("some of the next batch despite the outage", 90, || async {
        kafka_signals(&srv, "fired").await > 200.0
    })
    .await;
    c.broker_up(2).unwrap();
    during.await.unwrap();
    produce_events(&p, 400..600).await;

    eventually("all 600 recorded", 90, || async {
        kafka_signals(&srv, "fired").await >= 600.0
    })
    .await;
    srv.wait_processed(600).await;
    assert_eq!(
        stored(dir.path()).await,
        (600, 1),
        "each event once, in one episode"
    );
    assert_eq!(kafka_signals(&srv, "fired").await, 600.0);
    let incidents: Vec<Value> = srv
        .incidents()
        .await
        .into_iter()
        .filter(|i| i["rule"] == "service-failure")
        .collect();
    assert_eq!(
        incidents.len(),
        10,
        "one incident per failing service: {incidents:#?}"
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_broker_connection() {
    let dir = tempfile::tempdir().unwrap();
    let c = cluster(1, &[("events", 1)]);
    let srv = Server::start_with(
        dir.path(),
        &config(
            dir.path(),
            &c,
            "g",
            "    - {name: events, format: cloudevents}\n",
            "",
        ),
    )
    .await;
    let state = || async {
        let (code, body) = srv.get_any("/readyz").await;
        (
            code,
            body["kafka"].as_str().unwrap_or("").to_owned(),
            body["degraded"].clone(),
        )
    };
    eventually("connected", 20, || async { state().await.1 == "connected" }).await;
    assert_eq!(state().await, (200, "connected".into(), json!(false)));
    assert_eq!(srv.metric("dr_reactor_kafka_connected").await, 1.0);

    c.broker_down(1).unwrap();
    eventually("disconnected", 20, || async {
        state().await.1 == "disconnected"
    })
    .await;
    // Degraded, still ready: the webhook must keep taking alerts.
    assert_eq!(state().await, (200, "disconnected".into(), json!(true)));
    assert_eq!(srv.metric("dr_reactor_kafka_connected").await, 0.0);

    c.broker_up(1).unwrap();
    eventually("connected again", 30, || async {
        state().await.1 == "connected"
    })
    .await;
    let p = producer(&c);
    produce_json(
        &p,
        "events",
        "k",
        &cloudevent("after", "Note", "auth", "ap-northeast-2"),
    )
    .await;
    eventually("an event after the outage", 20, || async {
        stored_signal(dir.path(), "/monitoring/after")
            .await
            .is_some()
    })
    .await;
    srv.stop().await;
}

/// Sets the group's committed offsets for `topic` back to the start, as if
/// the consumer had died after recording but before committing. (The mock
/// cluster takes commits from group members only, so this one joins.)
async fn rewind_group(c: &Cluster, group: &str, topic: &str, partitions: i32) {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", c.bootstrap_servers())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Offset(0))
            .unwrap();
    }
    eventually("the rewinding member to be assigned", 30, || async {
        // Polling drives the join; a message may or may not arrive.
        let _ = tokio::time::timeout(Duration::from_millis(100), consumer.recv()).await;
        consumer
            .assignment()
            .is_ok_and(|a| a.count() == partitions as usize)
    })
    .await;
    consumer.commit(&tpl, CommitMode::Sync).unwrap();
    tokio::task::spawn_blocking(move || drop(consumer))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_mid_stream_records_every_message_once() {
    let dir = tempfile::tempdir().unwrap();
    let c = cluster(1, &[("events", 4)]);
    let cfg = config(
        dir.path(),
        &c,
        "dr",
        "    - {name: events, format: cloudevents}\n",
        "",
    );
    let p = producer(&c);
    const N: usize = 1_000;
    // The first half is produced before the first server, the second
    // while the second one starts: the stream goes on across the restart.
    produce_events(&p, 0..N / 2).await;
    let first = Server::start_with(dir.path(), &cfg).await;
    eventually("the first server to record some", 30, || async {
        kafka_signals(&first, "fired").await >= (N / 4) as f64
    })
    .await;
    first.stop().await;
    let (recorded_before, _) = stored(dir.path()).await;
    assert!(recorded_before >= (N / 4) as i64);

    // Crash-like: the second server gets everything again from offset 0.
    rewind_group(&c, "dr", "events", 4).await;
    let rest = tokio::spawn({
        let p = p.clone();
        async move { produce_events(&p, N / 2..N).await }
    });
    let second = Server::start_with(dir.path(), &cfg).await;
    rest.await.unwrap();
    eventually("every message recorded", 30, || async {
        stored(dir.path()).await.0 == N as i64
    })
    .await;
    eventually("the redelivered ones consumed", 30, || async {
        kafka_signals(&second, "fired").await + kafka_signals(&second, "refreshed").await
            >= N as f64
    })
    .await;
    assert_eq!(
        stored(dir.path()).await,
        (N as i64, 1),
        "each once, one episode"
    );
    assert_eq!(
        kafka_signals(&second, "refreshed").await,
        recorded_before as f64,
        "what the first recorded came again and was deduplicated"
    );
    assert_eq!(
        kafka_signals(&second, "fired").await,
        (N as i64 - recorded_before) as f64
    );
    second.stop().await;
}
