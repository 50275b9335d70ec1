//! Hostile input at the edge, on SQLite and PostgreSQL alike: each bad
//! alert or event is refused on its own with its reason, the rest of its
//! batch is recorded, and keys built from long label values still fit the
//! store's indexes. And the group writer behind the webhook: each sender
//! answered with its own changes, the engine fed in commit order, and the
//! engine's evidence written while it is behind.

mod support;

use std::path::Path;

use serde_json::{Value, json};
use support::kafka::*;
use support::*;

/// Config text on SQLite, or on a fresh PostgreSQL database.
async fn backend_config(dir: &Path, postgres: bool, extra: &str) -> String {
    let cfg = config_text(dir, extra);
    if !postgres {
        return cfg;
    }
    cfg.replace(
        &format!("sqlite://{}", dir.join("dr-reactor.db").display()),
        &postgres_database().await,
    )
}

/// `len` printable bytes that do not compress.
fn noise(len: usize) -> String {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'!' + (x % 90) as u8)
        })
        .collect()
}

fn hostile_batch() -> Value {
    let many: Vec<(String, String)> = (0..300).map(|i| (format!("l{i}"), "v".into())).collect();
    let mut many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    many.push(("alertname", "TooManyLabels"));
    let long = "v".repeat(8192);
    payload(vec![
        pod_alert("firing", "auth", "ap-northeast-2a"),
        alert("firing", &[("alertname", "Nul\0Name"), ("service", "auth")]),
        alert("firing", &[("alertname", "LongValue"), ("service", &long)]),
        alert("firing", &many),
        alert("firing", &[("alertname", "BadName"), ("bad-name", "x")]),
        pod_alert("firing", "order", "ap-northeast-2a"),
    ])
}

async fn hostile_alerts_are_rejected_alone(postgres: bool) {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start_with(dir.path(), &backend_config(dir.path(), postgres, "").await).await;
    // On PostgreSQL signals reach the engine once this replica leads.
    srv.wait_for("leadership", || async {
        srv.metric("dr_reactor_leader").await == 1.0
    })
    .await;
    let body = srv.post(&hostile_batch()).await;
    assert_eq!(body["accepted"], 2, "{body}");
    let rejected: Vec<(u64, &str)> = body["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["index"].as_u64().unwrap(), r["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(
        rejected,
        [
            (1, "nul_byte"),
            (2, "too_long"),
            (3, "too_many_labels"),
            (4, "bad_label_name")
        ]
    );
    assert!(
        body["rejected"][1]["error"]
            .as_str()
            .unwrap()
            .contains("intake.limits.max_label_value_bytes"),
        "{body}"
    );
    // The good ones reached the engine: they were recorded.
    srv.wait_processed(2).await;
    for reason in ["nul_byte", "too_long", "too_many_labels", "bad_label_name"] {
        let sample = format!(
            r#"dr_reactor_signals_rejected_total{{reason="{reason}",source="alertmanager"}}"#
        );
        assert_eq!(srv.metric(&sample).await, 1.0, "{reason}");
    }
    // A re-send is answered the same way, never with a 5xx.
    let again = srv.post(&hostile_batch()).await;
    assert_eq!(again["deduplicated"], 2, "{again}");

    // A long label value in the group key: its incident still opens. Not
    // repetitive, or PostgreSQL would compress it under its index limit.
    let zone = noise(4000);
    let az = payload(
        ["auth", "order", "payment"]
            .iter()
            .map(|s| pod_alert("firing", s, &zone))
            .collect(),
    );
    srv.post(&az).await;
    srv.wait_for("AZ incident over a 4000-byte zone", || async {
        srv.incidents()
            .await
            .iter()
            .any(|i| i["scenario"] == "az_failure" && i["group_labels"]["zone"] == zone.as_str())
    })
    .await;
    srv.stop().await;
}

#[tokio::test]
async fn hostile_alerts_are_rejected_alone_on_sqlite() {
    hostile_alerts_are_rejected_alone(false).await;
}

#[tokio::test]
async fn hostile_alerts_are_rejected_alone_on_postgres() {
    hostile_alerts_are_rejected_alone(true).await;
}

#[tokio::test]
async fn limits_are_configurable() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_text(dir.path(), "intake:\n  limits: {max_labels: 3}\n");
    let srv = Server::start_with(dir.path(), &cfg).await;
    let body = srv
        .post(&payload(vec![pod_alert(
            "firing",
            "auth",
            "ap-northeast-2a",
        )]))
        .await;
    assert_eq!(body["accepted"], 0, "{body}");
    assert_eq!(body["rejected"][0]["reason"], "too_many_labels");
    srv.stop().await;
}

fn event(id: &str, data: Value) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "/monitoring", "type": "Failure", "data": data})
}

async fn hostile_events_are_dead_lettered(postgres: bool) {
    let dir = tempfile::tempdir().unwrap();
    let c = cluster(1, &[("events", 1), ("dlq", 1)]);
    let kafka = format!(
        "kafka:\n  brokers: {}\n  group_id: g\n  topics:\n    - {{name: events, format: cloudevents}}\n\
         \x20 dead_letter_topic: dlq\n  batch: {{max_messages: 200, max_wait: 5ms}}\n\
         \x20 properties: {{auto.offset.reset: earliest}}\n",
        c.bootstrap_servers()
    );
    let cfg = backend_config(dir.path(), postgres, &kafka).await;
    let srv = Server::start_with(dir.path(), &cfg).await;
    let p = producer(&c);
    let long = "v".repeat(8192);
    let hostile = [
        event("nul", json!({"service": "a\0b"})),
        event("long", json!({"service": long})),
        event("name", json!({"bad-name": "x"})),
        json!({"specversion": "1.0", "id": "x".repeat(5000), "source": "/m", "type": "Failure",
               "data": {"service": "auth", "region": "ap-northeast-2"}}),
        event(
            "good",
            json!({"service": "auth", "region": "ap-northeast-2"}),
        ),
    ];
    for (i, v) in hostile.iter().enumerate() {
        produce_json(&p, "events", &format!("k{i}"), v).await;
    }
    srv.wait_for("both good events recorded", || async {
        srv.metric(r#"dr_reactor_kafka_signals_total{change="fired"}"#)
            .await
            == 2.0
    })
    .await;
    let dead = read_all(&c, "dlq", 3);
    let reasons: Vec<String> = dead
        .iter()
        .map(|m| header(m, "dr-reactor-reason"))
        .collect();
    assert_eq!(reasons, ["nul_byte", "too_long", "bad_label_name"]);
    assert!(
        header(&dead[2], "dr-reactor-error").contains("\"bad-name\""),
        "{}",
        header(&dead[2], "dr-reactor-error")
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_events_are_dead_lettered_on_sqlite() {
    hostile_events_are_dead_lettered(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_events_are_dead_lettered_on_postgres() {
    hostile_events_are_dead_lettered(true).await;
}

/// A recorder on SQLite whose rule engine is `engine` (nobody reads it
/// unless the test does), with rules that match alert `A`; evidence from
/// the returned sharing handle rides in its group commits, and the returned
/// metrics are the ones it reports to.
async fn recorder(
    dir: &Path,
    engine: usize,
) -> (
    dr_reactor::sources::Recorder,
    tokio::sync::mpsc::Receiver<Vec<dr_reactor::signal::SignalEvent>>,
    dr_reactor::store::Store,
    dr_reactor::telemetry::Metrics,
) {
    use dr_reactor::sources::{Handoff, Recorder, RulesInForce};
    let store =
        dr_reactor::store::Store::connect(&format!("sqlite://{}", dir.join("r.db").display()))
            .await
            .unwrap();
    let rules = dir.join("r.yaml");
    std::fs::write(
        &rules,
        "rules:\n  - name: r\n    match: {labels: ['alertname=\"A\"']}\n    correlate: {window: 1m, when: {count: 1}}\n    scenario: s\n",
    )
    .unwrap();
    let rules = dr_reactor::rules::RuleSet::load(&[rules], None).unwrap();
    let metrics = dr_reactor::telemetry::Metrics::new();
    let (tx, rx) = tokio::sync::mpsc::channel(engine);
    let handoff = Handoff::new(
        tx,
        RulesInForce::new(std::sync::Arc::new(rules)),
        metrics.clone(),
    );
    let (shared, queue) = store.share_writes();
    let restarts = prometheus::IntCounter::new("restarts", "restarts").unwrap();
    (
        Recorder::start(shared.clone(), handoff, queue, restarts),
        rx,
        shared,
        metrics,
    )
}

/// Concurrent senders are recorded in shared commits; each is answered
/// with its own changes, and the engine gets every change in commit order:
/// a resolve sent after its alert fired never overtakes it. Each group is
/// counted in the group metrics, with the signals it recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_answers_each_sender_and_keeps_commit_order() {
    use dr_reactor::signal::{Change, Status};
    use support::stores::signal;
    let dir = tempfile::tempdir().unwrap();
    let (recorder, mut engine, _store, metrics) = recorder(dir.path(), 1024).await;
    let sends: Vec<_> = (0..40)
        .map(|i| {
            let recorder = recorder.clone();
            tokio::spawn(async move {
                let fp = format!("fp{i}");
                let fired = recorder
                    .record(vec![signal(&fp, Status::Firing, 0, 0)])
                    .await
                    .unwrap();
                let resolved = recorder
                    .record(vec![
                        signal(&fp, Status::Firing, 0, 1),
                        signal(&fp, Status::Resolved, 0, 2),
                    ])
                    .await
                    .unwrap();
                (fired, resolved)
            })
        })
        .collect();
    for send in sends {
        let (fired, resolved) = send.await.unwrap();
        assert_eq!(fired, [Change::Fired]);
        assert_eq!(resolved, [Change::Refreshed, Change::Resolved]);
    }
    drop(recorder);
    let mut seen: Vec<(String, Change)> = Vec::new();
    while let Some(batch) = engine.recv().await {
        seen.extend(
            batch
                .into_iter()
                .map(|ev| (ev.signal.fingerprint, ev.change)),
        );
    }
    for i in 0..40 {
        let fp = format!("fp{i}");
        let mine: Vec<Change> = seen
            .iter()
            .filter(|(f, _)| *f == fp)
            .map(|(_, c)| *c)
            .collect();
        assert_eq!(
            mine,
            [Change::Fired, Change::Refreshed, Change::Resolved],
            "{fp}"
        );
    }
    let groups = metrics.intake_group_signals.get_sample_count();
    assert!(
        (1..=80).contains(&groups),
        "{groups} groups for 80 requests"
    );
    assert_eq!(metrics.intake_group_signals.get_sample_sum(), 120.0);
    assert_eq!(metrics.intake_group_duration.get_sample_count(), groups);
}

/// While the rule engine's queue is full, the engine may be waiting for
/// its evidence to be written before it takes the next batch: the
/// recorder, with a committed group waiting for the engine and a sender
/// behind it, still writes that evidence, and every sender is answered
/// once the engine reads again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_is_written_while_the_engine_is_behind() {
    use dr_reactor::incident::EventNote;
    use dr_reactor::signal::{Change, Status};
    use support::stores::{incident, signal, t};
    let dir = tempfile::tempdir().unwrap();
    let (recorder, mut engine, store, _metrics) = recorder(dir.path(), 1).await;
    store
        .open_incident(&incident("x", "kx"), &EventNote::new("detected", "t", ""))
        .await
        .unwrap();
    // The first fills the engine's queue, the second is committed and waits
    // in the hand-over, the third waits behind it.
    let mut sends = Vec::new();
    for i in 0..3 {
        let s = signal(&format!("behind{i}"), Status::Firing, 0, i);
        let id = s.id();
        sends.push(tokio::spawn({
            let recorder = recorder.clone();
            async move { recorder.record(vec![s]).await }
        }));
        if i < 2 {
            eventually("recorded", 10, || {
                let (store, id) = (store.clone(), id.clone());
                async move { store.signal(&id).await.unwrap().is_some() }
            })
            .await;
        }
    }
    let note = EventNote::new("signals_attached", "system", "1 signal");
    let evidence = [(
        "x".to_string(),
        vec!["alertmanager:behind0".to_string()],
        t(5),
        note,
    )];
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        store.attach_with_events(&evidence),
    )
    .await
    .expect("evidence written while the engine is behind")
    .unwrap();
    assert_eq!(store.incident_signals("x").await.unwrap().len(), 1);
    let mut handed = 0;
    while handed < 3 {
        handed += engine.recv().await.unwrap().len();
    }
    for send in sends {
        assert_eq!(send.await.unwrap().unwrap(), [Change::Fired]);
    }
}
