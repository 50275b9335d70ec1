//! Load benchmarks (not tests): the whole service in-process, release
//! build, real HTTP on loopback, SQLite in a temp dir. Every loop is bounded.
//!
//!   cargo bench --bench load
//!
//! Prints one summary line per benchmark:
//! - ingest: Alertmanager-shaped batches of 10 alerts, 90% re-sends of
//!   firing alerts, 10% new or resolved; alerts/s and request p50/p99;
//! - decision: from the deciding alert's HTTP request to the fake Slack
//!   receiving chat.postMessage, over 1,000 incidents; p50/p99;
//! - memory: RSS with 100,000 active signals tracked.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::fake_aws::FakeAws;
use support::fake_slack::FakeSlack;
use support::{Server, TOKEN};

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn alert(status: &str, i: usize) -> Value {
    json!({
        "status": status,
        "labels": {"alertname": "KubePodNotReady", "region": "ap-northeast-2", "zone": format!("ap-northeast-2{}", ["a","b","c"][i % 3]),
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

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

async fn post(client: &reqwest::Client, url: &str, body: Vec<u8>) -> Duration {
    let t = Instant::now();
    let r = client
        .post(url)
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    t.elapsed()
}

async fn ingest() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(dir.path()).await;
    let url = format!("{}/api/v1/alerts/alertmanager", srv.base);
    const FIRING: usize = 20_000;
    // Warm: the firing alerts Alertmanager will keep re-sending.
    for chunk in (0..FIRING).collect::<Vec<_>>().chunks(100) {
        post(
            &srv.client,
            &url,
            batch(chunk.iter().map(|&i| alert("firing", i)).collect()),
        )
        .await;
    }
    const REQUESTS: usize = 20_000;
    const CLIENTS: usize = 32;
    let srv = Arc::new(srv);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (srv, url) = (Arc::clone(&srv), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(REQUESTS / CLIENTS);
            for r in 0..REQUESTS / CLIENTS {
                let n = c * 1_000_003 + r * 10;
                let alerts = (0..10)
                    .map(|k| match (n + k) % 10 {
                        // 10%: new alerts, or a firing one resolving
                        0 if (n + k) % 20 == 0 => alert("firing", FIRING + n + k),
                        0 => alert("resolved", (n + k) % FIRING),
                        // 90%: re-sends of what is firing
                        _ => alert("firing", (n * 7 + k) % FIRING),
                    })
                    .collect();
                lat.push(post(&srv.client, &url, batch(alerts)).await);
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort();
    println!(
        "ingest: {} alerts in {:.1}s = {:.0} alerts/s ({} requests of 10, {CLIENTS} clients); request p50 {:.2} ms, p99 {:.2} ms",
        REQUESTS * 10,
        secs,
        (REQUESTS * 10) as f64 / secs,
        REQUESTS,
        pct(&lat, 0.5).as_secs_f64() * 1e3,
        pct(&lat, 0.99).as_secs_f64() * 1e3
    );
    Arc::try_unwrap(srv).ok().unwrap().stop().await;
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
    let srv = Server::start_with_aws(d, &cfg, aws.sdk_config()).await;
    let url = format!("{}/api/v1/alerts/alertmanager", srv.base);
    const INCIDENTS: usize = 1_000;
    let mut lat = Vec::with_capacity(INCIDENTS);
    for i in 0..INCIDENTS {
        let body = batch(vec![
            json!({"status": "firing", "labels": {"alertname": "Down", "service": format!("s{i}")},
            "startsAt": "2026-11-24T21:08:37Z", "fingerprint": format!("d{i}")}),
        ]);
        let t = Instant::now();
        post(&srv.client, &url, body).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while slack.messages().len() <= i {
            assert!(
                Instant::now() < deadline,
                "no Slack message for incident {i}"
            );
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        lat.push(t.elapsed());
    }
    lat.sort();
    println!(
        "decision: {INCIDENTS} incidents, alert request → chat.postMessage received: p50 {:.2} ms, p99 {:.2} ms (polled every 0.2 ms)",
        pct(&lat, 0.5).as_secs_f64() * 1e3,
        pct(&lat, 0.99).as_secs_f64() * 1e3
    );
    srv.stop().await;
}

async fn memory() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(dir.path()).await;
    let url = format!("{}/api/v1/alerts/alertmanager", srv.base);
    let before = rss_mib();
    const SIGNALS: usize = 100_000;
    for chunk in (0..SIGNALS).collect::<Vec<_>>().chunks(500) {
        post(
            &srv.client,
            &url,
            batch(chunk.iter().map(|&i| alert("firing", i)).collect()),
        )
        .await;
    }
    srv.wait_processed(SIGNALS as u64).await;
    println!(
        "memory: RSS {:.0} MiB with {SIGNALS} active signals tracked (process, incl. server and client; {:.0} MiB before)",
        rss_mib(),
        before
    );
    srv.stop().await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
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
