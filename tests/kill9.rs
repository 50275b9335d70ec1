//! Restart safety with the real binary: `kill -9` dr-reactor while an
//! incident awaits approval, while an SSM execution is being polled, and
//! while a Lambda step is in flight; start it again on the same SQLite file
//! and check that the incident ends right and every AWS action happened
//! once (a Lambda invoke interrupted mid-call may be repeated with the same
//! idempotency key, which runbook functions must treat as done).

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use support::fake_aws::{self, FakeAws, Op};
use tokio::process::{Child, Command};

const RULES: &str = r#"rules:
  - name: failover
    match: {labels: ['alertname="RegionDown"']}
    correlate: {group_by: [region], window: 1h, when: {count: 1}}
    scenario: region_outage
    approval: {mode: two, groups: [leads], include_owners: false, timeout: 1h}
    plan:
      steps:
        - {name: promote, ssm: {document: DR-Promote, region: ap-northeast-1}}
        - {name: verify, lambda: {function: dr-verify, region: ap-northeast-1}}
"#;

struct Dr {
    child: Child,
    base: String,
    client: reqwest::Client,
}

impl Dr {
    async fn start(dir: &Path, port: u16) -> Dr {
        let mut child = Command::new(env!("CARGO_BIN_EXE_dr-reactor"))
            .args(["serve", "--config"])
            .arg(dir.join("c.yaml"))
            .env_remove("DR_REACTOR_WEBHOOK_TOKEN")
            .env("AWS_ACCESS_KEY_ID", fake_aws::ACCESS_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", fake_aws::SECRET_ACCESS_KEY)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        // Bounded wait for readiness.
        let client = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = client.get(format!("{base}/readyz")).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(
                child.try_wait().unwrap().is_none(),
                "dr-reactor exited at start"
            );
            assert!(
                tokio::time::Instant::now() < deadline,
                "dr-reactor did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Dr {
            child,
            base,
            client,
        }
    }

    /// SIGKILL: no graceful anything.
    async fn kill9(mut self) {
        self.child.kill().await.unwrap();
    }

    async fn incident(&self) -> Value {
        let v: Value = self
            .client
            .get(format!("{}/api/v1/incidents", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["incidents"][0].clone()
    }

    async fn wait_state(&self, state: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let i = self.incident().await;
            if i["state"] == state {
                return i["id"].as_str().unwrap().to_owned();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {state}; incident: {i}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn approve(&self, id: &str, user: &str) {
        let r = self
            .client
            .post(format!("{}/api/v1/incidents/{id}/approve", self.base))
            .bearer_auth("admin-secret")
            .json(&json!({ "as": user }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }

    async fn fire(&self) {
        let body = support::payload(vec![support::alert(
            "firing",
            &[("alertname", "RegionDown"), ("region", "ap-northeast-2")],
        )]);
        let r = self
            .client
            .post(format!("{}/api/v1/alerts/alertmanager", self.base))
            .bearer_auth(support::TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}

fn setup(fake: &FakeAws) -> (tempfile::TempDir, u16) {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    std::fs::write(dir.path().join("rules/r.yaml"), RULES).unwrap();
    std::fs::write(
        dir.path().join("c.yaml"),
        format!(
            "listen: 127.0.0.1:{port}\nstore:\n  url: sqlite://{db}\nrules:\n  paths: [{rules}]\n  evaluation_interval: 100ms\n  watch: false\n\
             webhook:\n  auth:\n    bearer_token: {token}\napi:\n  admin_token: admin-secret\ndispatch:\n  dry_run: false\n\
             approval:\n  directory:\n    leads: [alice, bob]\n\
             aws:\n  endpoint_url: {endpoint}\n  default_region: ap-northeast-1\n  poll_interval: 50ms\n",
            db = dir.path().join("db.sqlite").display(),
            rules = dir.path().join("rules").display(),
            token = support::TOKEN,
            endpoint = fake.endpoint(),
        ),
    )
    .unwrap();
    (dir, port)
}

async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_awaiting_approval_then_mid_poll() {
    let fake = FakeAws::start().await;
    fake.function_returns("dr-verify", json!({"ok": true}));
    fake.document_runs_for("DR-Promote", 1_000_000);
    let (dir, port) = setup(&fake);

    // 1. Killed while the incident awaits approval, with one vote in.
    let dr = Dr::start(dir.path(), port).await;
    dr.fire().await;
    let id = dr.wait_state("awaiting_approval").await;
    dr.approve(&id, "alice").await;
    dr.kill9().await;

    // 2. Restarted: the second vote completes the approval; killed while
    //    the SSM execution is being polled.
    let dr = Dr::start(dir.path(), port).await;
    dr.approve(&id, "bob").await;
    dr.wait_state("running").await;
    wait_until("polling", || {
        fake.calls_of(Op::GetAutomationExecution).len() >= 3
    })
    .await;
    dr.kill9().await;

    // 3. Restarted: it polls the same execution to the end and goes on.
    fake.document_runs_for("DR-Promote", 2);
    let dr = Dr::start(dir.path(), port).await;
    dr.wait_state("succeeded").await;
    assert_eq!(
        fake.calls_of(Op::StartAutomationExecution).len(),
        1,
        "the automation was started once"
    );
    assert_eq!(fake.executions_started().len(), 1);
    assert_eq!(
        fake.calls_of(Op::Invoke).len(),
        1,
        "the verify function was invoked once"
    );
    dr.kill9().await;
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_lambda_step() {
    let fake = FakeAws::start().await;
    fake.function_returns("dr-verify", json!({"ok": true}));
    // The first invoke takes effect but its answer is held back.
    fake.delay(Op::Invoke, 1, Duration::from_secs(30));
    let (dir, port) = setup(&fake);
    let dr = Dr::start(dir.path(), port).await;
    dr.fire().await;
    let id = dr.wait_state("awaiting_approval").await;
    dr.approve(&id, "alice").await;
    dr.approve(&id, "bob").await;
    wait_until("the invoke in flight", || {
        !fake.calls_of(Op::Invoke).is_empty()
    })
    .await;
    dr.kill9().await;

    let dr = Dr::start(dir.path(), port).await;
    dr.wait_state("succeeded").await;
    assert_eq!(
        fake.executions_started().len(),
        1,
        "step 1 was not run again"
    );
    let invokes = fake.calls_of(Op::Invoke);
    assert_eq!(invokes.len(), 2, "the interrupted invoke is repeated once");
    assert_eq!(
        invokes[0].body["idempotency_key"], invokes[1].body["idempotency_key"],
        "with the same key"
    );
    dr.kill9().await;
}
