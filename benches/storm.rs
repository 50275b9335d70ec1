//! An alert storm, side by side with Alertmanager 0.25 in one run on this
//! machine: the same fresh alerts (every one new, as in a zone or region
//! outage; 10% `KubePodNotReady` for 50 services, which the shipped rules
//! correlate, 90% matching no rule), 10 per request from 32 connections,
//! to Alertmanager's `POST /api/v2/alerts` and to dr-reactor's webhook
//! (release binary, shipped rules, SQLite). Prints alerts/s and request
//! latency for each and their ratio; absolute numbers on a shared 2-core
//! machine are noise, the ratio is the result. Then the quiet-day load:
//! the same 2,000 known alerts re-sent over and over (what Alertmanager's
//! `repeat_interval` makes of a long incident). Bounded: a fixed number of
//! requests, each side run twice per workload, alternating.
//!
//!   cargo bench --bench storm                        # STORM_ALERTS=100000 by default
//!   STORM_STORE=postgres cargo bench --bench storm   # dr-reactor on the local PostgreSQL
//!
//! Needs Debian's `prometheus-alertmanager` (installed by `.ci/run`).

#[path = "common/service.rs"]
mod service;
#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use service::{BIN, Service, drive, pct};
use support::TOKEN;
use tokio::process::{Child, Command};

const PER_REQUEST: usize = 10;
const CLIENTS: usize = 32;
const SERVICES: usize = 50;
/// Alerts in the re-send workload.
const KNOWN: usize = 2_000;

/// Alert `i` of a storm that started at `run` (a distinct run gets distinct
/// alerts, so every one is new to whoever receives it).
fn storm_alert(run: usize, i: usize) -> (Value, Value) {
    let id = run * 10_000_000 + i;
    let labels = if i.is_multiple_of(10) {
        json!({"alertname": "KubePodNotReady", "region": "ap-northeast-2",
               "zone": format!("ap-northeast-2{}", ["a", "b", "c"][i % 3]),
               "service": format!("svc-{}", (i / 10) % SERVICES),
               "namespace": "prod", "pod": format!("pod-{id}"), "severity": "warning"})
    } else {
        json!({"alertname": format!("StormNoise{}", i % 97), "region": "ap-northeast-2",
               "instance": format!("10.0.{}.{}:9100", (id / 250) % 250, id % 250),
               "job": "node", "severity": "warning"})
    };
    let annotations = json!({"summary": "storm"});
    let am = json!({"labels": labels, "annotations": annotations,
                    "startsAt": "2026-11-24T21:08:37Z", "generatorURL": "http://prometheus/graph"});
    let hook = json!({"status": "firing", "labels": labels, "annotations": annotations,
                      "startsAt": "2026-11-24T21:08:37Z", "endsAt": "0001-01-01T00:00:00Z",
                      "generatorURL": "http://prometheus/graph", "fingerprint": format!("{id:016x}")});
    (am, hook)
}

/// The same alerts as Alertmanager API bodies and as webhook bodies.
fn bodies(run: usize, n: usize) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let alerts: Vec<(Value, Value)> = (0..n).map(|i| storm_alert(run, i)).collect();
    let am = alerts
        .chunks(PER_REQUEST)
        .map(|c| serde_json::to_vec(&c.iter().map(|(a, _)| a).collect::<Vec<_>>()).unwrap())
        .collect();
    let hook = alerts
        .chunks(PER_REQUEST)
        .map(|c| {
            serde_json::to_vec(&support::payload(
                c.iter().map(|(_, h)| h.clone()).collect(),
            ))
            .unwrap()
        })
        .collect();
    (am, hook)
}

struct Alertmanager {
    _child: Child,
    base: String,
}

impl Alertmanager {
    async fn start(dir: &Path) -> Alertmanager {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        std::fs::write(
            dir.join("alertmanager.yml"),
            "route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n",
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("alertmanager.log")).unwrap();
        let child = Command::new("prometheus-alertmanager")
            .arg(format!(
                "--config.file={}",
                dir.join("alertmanager.yml").display()
            ))
            .arg(format!("--storage.path={}", dir.join("am-data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("prometheus-alertmanager (Debian package) on PATH");
        let am = Alertmanager {
            _child: child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        support::eventually("Alertmanager ready", 20, || async {
            client
                .get(format!("{}/-/ready", am.base))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
        am
    }
}

struct Result {
    alerts_per_sec: f64,
    p50: f64,
    p99: f64,
}

async fn run(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    bodies: Vec<Vec<u8>>,
) -> Result {
    let alerts = bodies.len() * PER_REQUEST;
    let (mut lat, wall) = drive(client, url, token, bodies, CLIENTS).await;
    lat.sort();
    Result {
        alerts_per_sec: alerts as f64 / wall.as_secs_f64(),
        p50: pct(&lat, 0.5),
        p99: pct(&lat, 0.99),
    }
}

fn line(who: &str, r: &Result) {
    println!(
        "  {who:<13} {:>9.0} alerts/s   request p50 {:>7.2} ms   p99 {:>7.2} ms",
        r.alerts_per_sec, r.p50, r.p99
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("STORM_ALERTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let bin_dir = tempfile::tempdir().unwrap();
    let bin = bin_dir.path().join("dr-reactor");
    std::fs::copy(env!("CARGO_BIN_EXE_dr-reactor"), &bin).unwrap();
    BIN.set(bin).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let am = Alertmanager::start(dir.path()).await;
    let mut config = support::config_text(dir.path(), "");
    let store = std::env::var("STORM_STORE").unwrap_or_else(|_| "sqlite".into());
    if store == "postgres" {
        let url = support::postgres_database().await;
        config = config
            .lines()
            .map(|l| match l.trim_start().starts_with("url: sqlite://") {
                true => format!("  url: {url}\n"),
                false => format!("{l}\n"),
            })
            .collect();
    }
    let dr = Service::start(dir.path(), &config).await;
    let client = reqwest::Client::new();
    let am_url = format!("{}/api/v2/alerts", am.base);
    println!(
        "storm: {n} fresh alerts per run ({}% KubePodNotReady over {SERVICES} services, the rest matching no rule), \
         {PER_REQUEST} per request, {CLIENTS} connections; dr-reactor on {store}",
        10
    );
    let mut ratios = Vec::new();
    for round in 0..2 {
        let (am_bodies, dr_bodies) = bodies(round, n);
        let a = run(&client, &am_url, None, am_bodies).await;
        let d = run(&client, &dr.webhook(), Some(TOKEN), dr_bodies).await;
        println!("round {}:", round + 1);
        line("alertmanager", &a);
        line("dr-reactor", &d);
        let ratio = d.alerts_per_sec / a.alerts_per_sec;
        println!("  ratio (dr-reactor / alertmanager): {ratio:.2}x");
        ratios.push(ratio);
    }
    // Every signal the rules can use has reached the engine: acknowledged
    // is not the whole story if correlation lags far behind.
    let matching = 2 * n / 10;
    let started = std::time::Instant::now();
    dr.wait_processed(matching, Duration::from_secs(300)).await;
    println!(
        "dr-reactor's rule engine caught up {:.1} s after the last acknowledgement; \
         {} after {} alerts; ratios {:.2}x and {:.2}x",
        started.elapsed().as_secs_f64(),
        dr.rss_mib(),
        2 * n,
        ratios[0],
        ratios[1]
    );

    // Re-sends: both sides first learn the alerts once, then get them again
    // and again, n alerts per round.
    let (am_known, dr_known) = bodies(1_000, KNOWN);
    run(&client, &am_url, None, am_known.clone()).await;
    run(&client, &dr.webhook(), Some(TOKEN), dr_known.clone()).await;
    let again = |b: &[Vec<u8>]| -> Vec<Vec<u8>> {
        b.iter().cycle().take(n / PER_REQUEST).cloned().collect()
    };
    println!("re-sends: the same {KNOWN} known alerts, {n} per run");
    for round in 0..2 {
        let a = run(&client, &am_url, None, again(&am_known)).await;
        let d = run(&client, &dr.webhook(), Some(TOKEN), again(&dr_known)).await;
        println!("round {}:", round + 1);
        line("alertmanager", &a);
        line("dr-reactor", &d);
        println!(
            "  ratio (dr-reactor / alertmanager): {:.2}x",
            d.alerts_per_sec / a.alerts_per_sec
        );
    }
}
