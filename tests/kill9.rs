//! Restart safety with the real binary: `kill -9` dr-reactor while an
//! incident awaits approval, while an SSM execution is being polled, while
//! a Lambda step is in flight, right after an abort request, and while a
//! step's timeout runs out; start it again on the same SQLite file
//! and check that the incident ends right and every AWS action happened
//! once (a Lambda invoke interrupted mid-call may be repeated with the same
//! idempotency key, which runbook functions must treat as done).

mod support;

use std::time::Duration;

use serde_json::json;
use support::binary::{self, Dr, wait_until};
use support::fake_aws::{FakeAws, Op};

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

fn setup(fake: &FakeAws) -> (tempfile::TempDir, u16) {
    setup_with(fake, "")
}

/// `aws_extra`: more keys of the `aws:` section, e.g. a step timeout.
fn setup_with(fake: &FakeAws, aws_extra: &str) -> (tempfile::TempDir, u16) {
    let dir = tempfile::tempdir().unwrap();
    let port = binary::free_port();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    std::fs::write(dir.path().join("rules/r.yaml"), RULES).unwrap();
    std::fs::write(
        dir.path().join("c.yaml"),
        format!(
            "listen: 127.0.0.1:{port}\nstore:\n  url: sqlite://{db}\nrules:\n  paths: [{rules}]\n  evaluation_interval: 100ms\n  watch: false\n\
             webhook:\n  auth:\n    bearer_token: {token}\napi:\n  admin_token: {admin}\n  users:\n{users}dispatch:\n  dry_run: false\n\
             approval:\n  directory:\n    leads: [alice, bob]\n\
             aws:\n  endpoint_url: {endpoint}\n  default_region: ap-northeast-1\n  poll_interval: 50ms\n{aws_extra}",
            db = dir.path().join("db.sqlite").display(),
            rules = dir.path().join("rules").display(),
            token = support::TOKEN,
            endpoint = fake.endpoint(),
            admin = binary::ADMIN,
        users = support::approval::api_users(&["alice", "bob"]),
        ),
    )
    .unwrap();
    (dir, port)
}

/// The region alert fired and approved by both leads; the incident id.
async fn fire_and_approve(dr: &Dr) -> String {
    dr.fire().await;
    let id = dr.wait_state("awaiting_approval").await;
    dr.approve(&id, "alice").await;
    dr.approve(&id, "bob").await;
    id
}

async fn start(dir: &std::path::Path, port: u16) -> Dr {
    Dr::start(&dir.join("c.yaml"), port, &dir.join("dr.log")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_awaiting_approval_then_mid_poll() {
    let fake = FakeAws::start().await;
    fake.function_returns("dr-verify", json!({"ok": true}));
    fake.document_runs_for("DR-Promote", 1_000_000);
    let (dir, port) = setup(&fake);

    // 1. Killed while the incident awaits approval, with one vote in.
    let dr = start(dir.path(), port).await;
    dr.fire().await;
    let id = dr.wait_state("awaiting_approval").await;
    dr.approve(&id, "alice").await;
    dr.kill9().await;

    // 2. Restarted: the second vote completes the approval; killed while
    //    the SSM execution is being polled.
    let dr = start(dir.path(), port).await;
    dr.approve(&id, "bob").await;
    dr.wait_state("running").await;
    wait_until("polling", 20, || {
        fake.calls_of(Op::GetAutomationExecution).len() >= 3
    })
    .await;
    dr.kill9().await;

    // 3. Restarted: it polls the same execution to the end and goes on.
    fake.document_runs_for("DR-Promote", 2);
    let dr = start(dir.path(), port).await;
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
    let dr = start(dir.path(), port).await;
    fire_and_approve(&dr).await;
    wait_until("the invoke in flight", 20, || {
        !fake.calls_of(Op::Invoke).is_empty()
    })
    .await;
    dr.kill9().await;

    let dr = start(dir.path(), port).await;
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

/// An abort asked while a step runs, then `kill -9` at once: after the
/// restart the abort is carried out, the execution in flight stopped
/// exactly once, nothing further started, and the incident `aborted`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_right_after_an_abort_request() {
    let fake = FakeAws::start().await;
    fake.function_returns("dr-verify", json!({"ok": true}));
    fake.document_runs_for("DR-Promote", 1_000_000);
    let (dir, port) = setup(&fake);
    let dr = start(dir.path(), port).await;
    let id = fire_and_approve(&dr).await;
    dr.wait_state("running").await;
    wait_until("the step started", 20, || {
        !fake.executions_started().is_empty()
    })
    .await;
    let r = reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{port}/api/v1/incidents/{id}/abort"
        ))
        .bearer_auth(support::approval::token_of("alice"))
        .json(&json!({"reason": "wrong region"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    dr.kill9().await;

    let dr = start(dir.path(), port).await;
    dr.wait_state("aborted").await;
    assert_eq!(
        fake.calls_of(Op::StopAutomationExecution).len(),
        1,
        "the execution in flight was stopped once"
    );
    assert_eq!(
        fake.executions_started().len(),
        1,
        "nothing further started"
    );
    assert!(fake.calls_of(Op::Invoke).is_empty(), "step 2 never ran");
    dr.kill9().await;
    drop(dir);
}

/// A step over its timeout while the process is down: the timeout counts
/// from the step's recorded start, so after the restart the execution is
/// stopped once and the plan fails, with no second start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_step_then_its_timeout_runs_out() {
    let fake = FakeAws::start().await;
    fake.function_returns("dr-verify", json!({"ok": true}));
    fake.document_runs_for("DR-Promote", 1_000_000);
    let (dir, port) = setup_with(&fake, "  step_timeout: 2s\n");
    let dr = start(dir.path(), port).await;
    fire_and_approve(&dr).await;
    wait_until("the step started", 20, || {
        !fake.executions_started().is_empty()
    })
    .await;
    dr.kill9().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let dr = start(dir.path(), port).await;
    dr.wait_state("failed").await;
    assert_eq!(fake.calls_of(Op::StopAutomationExecution).len(), 1);
    assert_eq!(fake.executions_started().len(), 1, "not started again");
    assert!(fake.calls_of(Op::Invoke).is_empty(), "step 2 never ran");
    dr.kill9().await;
    drop(dir);
}
