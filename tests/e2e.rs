//! End to end with the real peers: a scrape target this test controls, the
//! real Prometheus (Debian's package) evaluating an alert rule every second,
//! the real Alertmanager posting to the real `dr-reactor` binary with a
//! bearer token, the fake Slack and fake AWS of the other tests.
//!
//! 1. The metric flips → Prometheus fires → Alertmanager posts → incident →
//!    Slack message → signed approval → SSM on the fake AWS → succeeded.
//! 2. The metric of another service flips and recovers before anyone
//!    approves → the incident is cancelled.
//! 3. Alertmanager stops → its Watchdog heartbeat stops → region outage.
//!
//! `.ci/run` installs Prometheus and Alertmanager; without them this test
//! fails with a message saying so.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use support::fake_aws::{self, FakeAws, Op};
use support::fake_slack::{self, FakeSlack};
use tokio::process::{Child, Command};

const SECRET: &str = "e2e-signing-secret";
const BOT: &str = "xoxb-e2e";
const REGION: &str = "ap-northeast-2";

fn port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn(cmd: &str, args: &[String], env: &[(&str, &str)], log: &Path) -> Child {
    let out = std::fs::File::create(log).unwrap();
    let mut c = Command::new(cmd);
    c.args(args)
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .kill_on_drop(true);
    for (k, v) in env {
        c.env(k, v);
    }
    c.spawn().unwrap_or_else(|e| {
        panic!("{cmd}: {e} (install Debian's prometheus and prometheus-alertmanager; .ci/run does)")
    })
}

/// The scrape target: `dr_e2e_up{service=…}` with values the test sets.
async fn target(up: Arc<Mutex<Vec<(String, u8)>>>) -> u16 {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let up = Arc::clone(&up);
            async move {
                let mut body = String::from("# TYPE dr_e2e_up gauge\n");
                for (svc, v) in up.lock().unwrap().iter() {
                    body.push_str(&format!("dr_e2e_up{{service=\"{svc}\"}} {v}\n"));
                }
                body
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let p = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    p
}

/// On a failing run, prints the tail of every peer's log: the temp dir
/// holding them is gone by the time anyone could look.
struct DumpLogsOnPanic<'a>(&'a Path);

impl Drop for DumpLogsOnPanic<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for name in ["dr.log", "am.log", "prom.log"] {
            let text = std::fs::read_to_string(self.0.join(name)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(60)..];
            eprintln!("----- {name} (last {} lines) -----", tail.len());
            for l in tail {
                eprintln!("{l}");
            }
        }
    }
}

async fn incidents(client: &reqwest::Client, base: &str) -> Vec<Value> {
    match client
        .get(format!("{base}/api/v1/incidents"))
        .bearer_auth("e2e-read")
        .send()
        .await
    {
        Ok(r) => r
            .json::<Value>()
            .await
            .map(|v| v["incidents"].as_array().cloned().unwrap_or_default())
            .unwrap_or_default(),
        Err(_) => vec![],
    }
}

async fn find(
    client: &reqwest::Client,
    base: &str,
    scenario: &str,
    service: Option<&str>,
) -> Option<Value> {
    incidents(client, base).await.into_iter().find(|i| {
        i["scenario"] == scenario && service.is_none_or(|s| i["group_labels"]["service"] == s)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_to_recovery_with_real_prometheus_and_alertmanager() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let _logs = DumpLogsOnPanic(d);
    let aws = FakeAws::start().await;
    let slack = FakeSlack::start(BOT).await;
    let up = Arc::new(Mutex::new(vec![
        ("checkout".to_owned(), 1u8),
        ("search".to_owned(), 1u8),
    ]));
    let target_port = target(Arc::clone(&up)).await;
    let (dr_port, prom_port, am_port) = (port(), port(), port());
    let dr_base = format!("http://127.0.0.1:{dr_port}");

    // dr-reactor: a service rule with one approver, and the region heartbeat.
    std::fs::create_dir(d.join("rules")).unwrap();
    std::fs::write(
        d.join("rules/r.yaml"),
        r#"rules:
  - name: service-down
    match: {labels: ['alertname="E2EServiceDown"']}
    correlate: {group_by: [region, service], window: 2s, when: {count: 1}}
    scenario: service_failure
    approval: {mode: one, groups: [oncall], include_owners: false, timeout: 1h}
    plan:
      steps:
        - {name: restart, ssm: {document: DR-Restart, region: "{{ labels.region }}", parameters: {Service: "{{ labels.service }}"}}}
  - name: heartbeat
    match: {labels: ['alertname="Watchdog"']}
    correlate: {group_by: [region], window: 1m, when: {absent: {for: 5s, alert: Watchdog}}}
    scenario: region_outage
    approval: {mode: two, groups: [oncall], include_owners: false, timeout: 1h}
"#,
    )
    .unwrap();
    std::fs::write(
        d.join("dr.yaml"),
        format!(
            "listen: 127.0.0.1:{dr_port}\nstore:\n  url: sqlite://{db}\nrules:\n  paths: [{rules}]\n  evaluation_interval: 200ms\n  watch: false\n\
             webhook:\n  auth:\n    bearer_token: e2e-token\napi:\n  read_tokens: [e2e-read]\ndispatch:\n  dry_run: false\n\
             approval:\n  directory:\n    oncall: [U_ONCALL, U_SECOND]\n\
             aws:\n  endpoint_url: {aws}\n  default_region: {REGION}\n  poll_interval: 100ms\n\
             slack:\n  bot_token: {BOT}\n  signing_secret: {SECRET}\n  channel: C_DR\n  api_url: {slack}\n",
            db = d.join("dr.db").display(),
            rules = d.join("rules").display(),
            aws = aws.endpoint(),
            slack = slack.api_url(),
        ),
    )
    .unwrap();
    let _dr = spawn(
        env!("CARGO_BIN_EXE_dr-reactor"),
        &[
            "serve".into(),
            "--config".into(),
            d.join("dr.yaml").display().to_string(),
        ],
        &[
            ("AWS_ACCESS_KEY_ID", fake_aws::ACCESS_KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", fake_aws::SECRET_ACCESS_KEY),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            // Plain text in dr.log, which a failing run prints.
            ("NO_COLOR", "1"),
        ],
        &d.join("dr.log"),
    );

    // Alertmanager: webhook with bearer auth, short timings, no clustering.
    std::fs::write(d.join("token"), "e2e-token").unwrap();
    std::fs::write(
        d.join("am.yml"),
        format!(
            r#"route:
  receiver: dr
  group_by: ['alertname', 'service']
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 2s
receivers:
  - name: dr
    webhook_configs:
      - url: http://127.0.0.1:{dr_port}/api/v1/alerts/alertmanager
        send_resolved: true
        http_config:
          authorization:
            type: Bearer
            credentials_file: {token}
"#,
            token = d.join("token").display()
        ),
    )
    .unwrap();
    let am = spawn(
        "prometheus-alertmanager",
        &[
            format!("--config.file={}", d.join("am.yml").display()),
            format!("--storage.path={}", d.join("am-data").display()),
            format!("--web.listen-address=127.0.0.1:{am_port}"),
            // A single Alertmanager: no gossip to wait for.
            "--cluster.listen-address=".into(),
        ],
        &[],
        &d.join("am.log"),
    );

    // Prometheus: the alert rule, and the Watchdog, every second.
    std::fs::write(
        d.join("rules.yml"),
        r#"groups:
  - name: e2e
    interval: 1s
    rules:
      - alert: E2EServiceDown
        expr: dr_e2e_up == 0
        labels: {severity: critical}
      - alert: Watchdog
        expr: vector(1)
        labels: {severity: none}
"#,
    )
    .unwrap();
    std::fs::write(
        d.join("prom.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n  external_labels: {{region: {REGION}}}\n\
             rule_files: [{rules}]\n\
             alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:{am_port}']\n\
             scrape_configs:\n  - job_name: e2e\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n",
            rules = d.join("rules.yml").display()
        ),
    )
    .unwrap();
    let _prom = spawn(
        "prometheus",
        &[
            format!("--config.file={}", d.join("prom.yml").display()),
            format!("--storage.tsdb.path={}", d.join("prom-data").display()),
            format!("--web.listen-address=127.0.0.1:{prom_port}"),
            // Prometheus finds its Alertmanager a few seconds after start and
            // drops what it fired before; resend every second, not minute.
            "--rules.alert.resend-delay=1s".into(),
        ],
        &[],
        &d.join("prom.log"),
    );

    let client = reqwest::Client::new();

    // The Watchdog flows end to end first: the heartbeat is alive.
    support::eventually("the Watchdog to reach dr-reactor", 40, || async {
        reqwest_text(&client, &format!("{dr_base}/metrics"))
            .await
            .contains("dr_reactor_alerts_received_total{status=\"firing\"}")
    })
    .await;
    assert!(
        incidents(&client, &dr_base).await.is_empty(),
        "a live heartbeat opens nothing"
    );

    // 1. checkout goes down: incident, Slack message, approval, SSM.
    up.lock().unwrap()[0].1 = 0;
    support::eventually("the checkout incident to await approval", 30, || async {
        find(&client, &dr_base, "service_failure", Some("checkout"))
            .await
            .is_some_and(|i| i["state"] == "awaiting_approval")
    })
    .await;
    let inc = find(&client, &dr_base, "service_failure", Some("checkout"))
        .await
        .unwrap();
    assert_eq!(
        inc["group_labels"]["region"], REGION,
        "the region came from Prometheus' external labels"
    );
    let id = inc["id"].as_str().unwrap().to_owned();
    support::eventually("the Slack message", 10, || async {
        !slack.messages().is_empty()
    })
    .await;
    assert!(slack.messages()[0].blocks.to_string().contains(&id));
    let body = fake_slack::interaction("U_ONCALL", "dr_approve", &id);
    let ts = chrono::Utc::now().timestamp();
    let r = client
        .post(format!("{dr_base}/api/v1/slack/interactions"))
        .header("x-slack-request-timestamp", ts.to_string())
        .header("x-slack-signature", fake_slack::sign(SECRET, ts, &body))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    support::eventually("the restart to succeed", 20, || async {
        find(&client, &dr_base, "service_failure", Some("checkout"))
            .await
            .is_some_and(|i| i["state"] == "succeeded")
    })
    .await;
    let starts = aws.calls_of(Op::StartAutomationExecution);
    assert_eq!(starts.len(), 1);
    assert_eq!(
        starts[0].body["Parameters"]["Service"],
        serde_json::json!(["checkout"])
    );
    assert_eq!(starts[0].region, REGION);

    // 2. search goes down and recovers before anyone approves: cancelled.
    up.lock().unwrap()[1].1 = 0;
    support::eventually("the search incident", 30, || async {
        find(&client, &dr_base, "service_failure", Some("search"))
            .await
            .is_some_and(|i| i["state"] == "awaiting_approval")
    })
    .await;
    up.lock().unwrap()[1].1 = 1;
    support::eventually("the search incident to be cancelled", 40, || async {
        find(&client, &dr_base, "service_failure", Some("search"))
            .await
            .is_some_and(|i| i["state"] == "cancelled")
    })
    .await;
    assert_eq!(
        aws.calls_of(Op::StartAutomationExecution).len(),
        1,
        "nothing ran for search"
    );

    // 3. Alertmanager dies: its Watchdog stops; absence is the evidence.
    drop(am);
    support::eventually("the region outage", 40, || async {
        find(&client, &dr_base, "region_outage", None)
            .await
            .is_some_and(|i| i["group_labels"]["region"] == REGION)
    })
    .await;
}

async fn reqwest_text(client: &reqwest::Client, url: &str) -> String {
    match client.get(url).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}
