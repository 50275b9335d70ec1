//! Load benchmarks (not tests). Each runs the shipped `dr-reactor serve`
//! binary (release build) as its own process on loopback with SQLite in a
//! temp dir, and drives it over real HTTP from this process; the fake Slack
//! and fake AWS run here too. A separate process keeps the load generator's
//! CPU and memory out of the server's numbers (its RSS is read from
//! /proc/<pid>), though on a 2-core machine both still share the cores.
//! Every loop and wait is bounded.
//!
//!   cargo bench --bench load [ingest|decision|memory]
//!
//! Prints one summary line per benchmark:
//! - ingest: Alertmanager-shaped batches of 10 alerts, 90% re-sends of
//!   firing alerts, 10% new or resolved; alerts/s and request p50/p99;
//! - decision: from the deciding alert's HTTP request to the fake Slack
//!   receiving chat.postMessage, per incident, over 1,000 incidents;
//! - memory: the server's RSS with 100,000 active signals tracked by the
//!   rule engine (checked with its `dr_reactor_signals_tracked` gauge).

#[path = "common/service.rs"]
mod service;
#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use service::{BIN, Service, drive, pct, post};
use support::TOKEN;
use support::fake_aws::FakeAws;
use support::fake_slack::FakeSlack;

/// One KubePodNotReady alert, identified by `i` (its fingerprint).
fn alert(status: &str, i: usize) -> Value {
    json!({
        "status": status,
        "labels": {"alertname": "KubePodNotReady", "region": "ap-northeast-2",
                   "zone": format!("ap-northeast-2{}", ["a", "b", "c"][i % 3]),
                   "service": format!("svc-{}", i % 400), "pod": format!("pod-{i}"), "severity": "warning"},
        "annotations": {"summary": "pod not ready"},
        "startsAt": "2026-11-24T21:08:37Z",
        "endsAt": if status == "resolved" { "2026-11-24T21:09:37Z" } else { "0001-01-01T00:00:00Z" },
        "generatorURL": "",
        "fingerprint": format!("{i:016x}"),
    })
}

fn batch(alerts: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&support::payload(alerts)).unwrap()
}

/// Posts alerts `0..n` as firing, `per_request` at a time, from `clients`
/// concurrent connections.
async fn fire_all(svc: &Service, n: usize, per_request: usize, clients: usize) {
    let bodies: Vec<Vec<u8>> = (0..n)
        .collect::<Vec<_>>()
        .chunks(per_request)
        .map(|c| batch(c.iter().map(|&i| alert("firing", i)).collect()))
        .collect();
    drive(&svc.client, &svc.webhook(), Some(TOKEN), bodies, clients).await;
}

async fn ingest() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), &support::config_text(dir.path(), "")).await;
    // The firing alerts Alertmanager keeps re-sending.
    const FIRING: usize = 20_000;
    fire_all(&svc, FIRING, 100, 4).await;
    svc.wait_processed(FIRING, Duration::from_secs(60)).await;

    const REQUESTS: usize = 20_000;
    const CLIENTS: usize = 32;
    const PER_CLIENT: usize = REQUESTS / CLIENTS;
    // Built before the clock starts: the load generator shares the two
    // cores with the server, so it should spend them on HTTP only. Nine of
    // every ten alerts re-send a firing one; the tenth fires a new alert of
    // this client on even requests and resolves it on the next one, so no
    // alert is ever re-sent after it resolved (Alertmanager does not) and
    // every alert reaches the rule engine.
    let work: Vec<Vec<Vec<u8>>> = (0..CLIENTS)
        .map(|c| {
            (0..PER_CLIENT)
                .map(|r| {
                    let mut alerts: Vec<Value> = (0..9)
                        .map(|k| alert("firing", ((c * PER_CLIENT + r) * 9 + k) % FIRING))
                        .collect();
                    let new = FIRING + c * PER_CLIENT + r - r % 2;
                    alerts.push(alert(if r % 2 == 0 { "firing" } else { "resolved" }, new));
                    batch(alerts)
                })
                .collect()
        })
        .collect();
    let before = svc.metric("dr_reactor_signals_processed_total").await as usize;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for bodies in work {
        let (client, url) = (svc.client.clone(), svc.webhook());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(bodies.len());
            for body in bodies {
                lat.push(post(&client, &url, Some(TOKEN), body).await);
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let acked = start.elapsed().as_secs_f64();
    let alerts = CLIENTS * PER_CLIENT * 10;
    svc.wait_processed(before + alerts, Duration::from_secs(120))
        .await;
    let processed = start.elapsed().as_secs_f64();
    lat.sort();
    println!(
        "ingest: {alerts} alerts ({} requests of 10, {CLIENTS} connections): {:.0} alerts/s acknowledged (durable), \
         {:.0} alerts/s through the rule engine; request p50 {:.2} ms, p99 {:.2} ms",
        lat.len(),
        alerts as f64 / acked,
        alerts as f64 / processed,
        pct(&lat, 0.5),
        pct(&lat, 0.99),
    );
}

async fn decision() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let aws = FakeAws::start().await;
    let slack = FakeSlack::start("xoxb-bench").await;
    std::fs::create_dir(d.join("rules")).unwrap();
    std::fs::write(
        d.join("rules/r.yaml"),
        "rules:\n  - name: down\n    match: {labels: ['alertname=\"Down\"']}\n    correlate: {group_by: [service], window: 1m, when: {count: 1}}\n    scenario: service_failure\n    approval: {mode: one, groups: [oncall], include_owners: false}\n    plan: {steps: [{name: restart, ssm: {document: DR-Restart, region: ap-northeast-2}}]}\n",
    )
    .unwrap();
    let cfg = format!(
        "listen: 127.0.0.1:0\nstore:\n  url: sqlite://{db}\nrules:\n  paths: [{rules}]\n  watch: false\n\
         webhook:\n  auth:\n    bearer_token: {TOKEN}\ndispatch:\n  dry_run: false\napproval:\n  directory:\n    oncall: [U1]\n\
         aws:\n  endpoint_url: {aws}\n  default_region: ap-northeast-2\n\
         slack:\n  bot_token: xoxb-bench\n  signing_secret: s\n  channel: C1\n  api_url: {slack}\n",
        db = d.join("db.sqlite").display(),
        rules = d.join("rules").display(),
        aws = aws.endpoint(),
        slack = slack.api_url(),
    );
    let svc = Service::start(d, &cfg).await;
    const INCIDENTS: usize = 1_000;
    let bodies: Vec<Vec<u8>> = (0..INCIDENTS)
        .map(|i| {
            batch(vec![json!({
                "status": "firing", "labels": {"alertname": "Down", "service": format!("s{i}")},
                "startsAt": "2026-11-24T21:08:37Z", "fingerprint": format!("d{i}"),
            })])
        })
        .collect();
    let mut lat = Vec::with_capacity(INCIDENTS);
    for (i, body) in bodies.into_iter().enumerate() {
        let sent = Instant::now();
        post(&svc.client, &svc.webhook(), Some(TOKEN), body).await;
        let received = slack
            .wait_message(i, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("no Slack message for incident {i}"));
        lat.push(received - sent);
    }
    lat.sort();
    println!(
        "decision: {INCIDENTS} incidents, one at a time, deciding alert's request sent → chat.postMessage received: \
         p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        pct(&lat, 1.0),
    );
}

/// How long the memory bench lets the service stay quiet before its
/// second reading.
const QUIET: Duration = Duration::from_secs(15);

async fn memory() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), &support::config_text(dir.path(), "")).await;
    let idle = svc.rss_mib().now;
    const SIGNALS: usize = 100_000;
    fire_all(&svc, SIGNALS, 100, 4).await;
    // Each new signal here joins an open incident (one attach transaction
    // pair each), which is what takes the time; see docs/performance.md.
    svc.wait_processed(SIGNALS, Duration::from_secs(900)).await;
    let tracked = svc.metric("dr_reactor_signals_tracked").await as usize;
    assert_eq!(tracked, SIGNALS, "every signal is held by the rule engine");
    let caught_up = svc.rss_mib();
    // What a quiet service keeps: the heap's free pages go back to the
    // system every few seconds (primitives/heap.rs), so the two readings
    // differ by what the storm of requests left free.
    let timeline = std::env::var_os("MEMORY_TIMELINE").is_some();
    for s in 1..=QUIET.as_secs() {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if timeline {
            println!("  +{s}s: {}", svc.rss_mib());
        }
    }
    println!(
        "memory: server {caught_up} when the engine has caught up with {tracked} active signals; \
         {} after {}s quiet; {idle:.0} MiB idle after start (dr-reactor process only)",
        svc.rss_mib(),
        QUIET.as_secs()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let bin_dir = tempfile::tempdir().unwrap();
    let bin = bin_dir.path().join("dr-reactor");
    std::fs::copy(env!("CARGO_BIN_EXE_dr-reactor"), &bin).unwrap();
    BIN.set(bin).unwrap();
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let run = |name: &str| only.as_deref().is_none_or(|o| name.contains(o));
    if run("ingest") {
        ingest().await;
    }
    if run("decision") {
        decision().await;
    }
    if run("memory") {
        memory().await;
    }
}
