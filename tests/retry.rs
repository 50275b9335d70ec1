//! Retrying a failed plan with live dispatch against the fake AWS: the
//! failed step runs again under a new ClientToken, the step that succeeded
//! does not; anything not failed is refused (409, recorded) and calls
//! nothing; with the real binary, a retried step cut short by `kill -9`
//! runs exactly once.

mod support;

use std::path::Path;
use std::time::Duration;

use dr_reactor::plan::idempotency_key;
use serde_json::{Value, json};
use support::approval::{
    self, ADMIN, events, failover_rule, fire, rule_file, token_of, vote, wait_state,
};
use support::binary::{self, Dr, wait_until};
use support::fake_aws::{FakeAws, Op};
use support::*;

/// One rule, `failover`: approved by one lead, then DR-Promote and
/// DR-Flip in ap-northeast-1.
fn rules() -> String {
    rule_file(&[failover_rule()])
}

async fn retry(srv: &Server, id: &str, token: &str) -> (u16, Value) {
    let resp = srv
        .client
        .post(format!("{}/api/v1/incidents/{id}/retry", srv.base))
        .bearer_auth(token)
        .json(&json!({ "reason": "DNS API fixed" }))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// The ClientTokens DR-Flip was started with, in order.
fn flip_tokens(aws: &FakeAws) -> Vec<String> {
    aws.calls_of(Op::StartAutomationExecution)
        .into_iter()
        .filter(|c| c.target == "DR-Flip")
        .map(|c| c.client_token.unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn a_failed_step_runs_again_under_a_new_key_and_the_plan_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, aws) = approval::start(dir.path(), &rules(), "100ms").await;
    aws.document_fails("DR-Flip", "Route 53 API throttled");
    srv.post(&fire("RegionDown", "eu-west-1")).await;
    let id = wait_state(&srv, "eu-west-1", "awaiting_approval").await;
    assert_eq!(vote(&srv, &id, "approve", "alice").await.0, 200);
    wait_state(&srv, "eu-west-1", "failed").await;
    let first = flip_tokens(&aws);
    assert_eq!(first, [idempotency_key(&id, 1)]);

    aws.document_succeeds("DR-Flip");
    assert_eq!(
        retry(&srv, &id, TOKEN).await.0,
        401,
        "the webhook token is no operator"
    );
    // A failover's retry is an approver's call: carol (sre) is refused.
    let (code, body) = retry(&srv, &id, &token_of("carol")).await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(flip_tokens(&aws).len(), 1, "a refused retry starts nothing");
    let (code, body) = retry(&srv, &id, &token_of("bob")).await;
    assert_eq!((code, body["state"].as_str()), (200, Some("approved")));
    wait_state(&srv, "eu-west-1", "succeeded").await;

    let retried = idempotency_key(&format!("{id}/retry1"), 1);
    assert_ne!(retried, first[0]);
    assert_eq!(flip_tokens(&aws), [first[0].clone(), retried.clone()]);
    let promotes = aws
        .calls_of(Op::StartAutomationExecution)
        .into_iter()
        .filter(|c| c.target == "DR-Promote")
        .count();
    assert_eq!(promotes, 1, "the step that had succeeded was not run again");
    assert_eq!(aws.executions_started().len(), 3);
    assert!(aws.calls_of(Op::StopAutomationExecution).is_empty());

    let log = events(&srv, &id).await;
    let step_retry = log.iter().find(|e| e["kind"] == "step_retry").unwrap();
    assert_eq!(step_retry["actor"], "bob");
    assert_eq!(step_retry["from_state"], "failed");
    assert_eq!(step_retry["to_state"], "approved");
    assert_eq!(step_retry["data"]["retry"], 1);
    assert_eq!(
        step_retry["data"]["steps"],
        json!([{
            "index": 1,
            "step": "flip DNS",
            "idempotency_key": retried,
            "previous_key": first[0],
        }])
    );
    let dispatching: Vec<&Value> = log
        .iter()
        .filter(|e| e["kind"] == "step_dispatching" && e["data"]["index"] == 1)
        .map(|e| &e["data"]["idempotency_key"])
        .collect();
    assert_eq!(dispatching, [&json!(first[0]), &json!(retried)]);
    let ends: Vec<&str> = log
        .iter()
        .filter_map(|e| e["to_state"].as_str())
        .filter(|s| matches!(*s, "failed" | "succeeded"))
        .collect();
    assert_eq!(ends, ["failed", "succeeded"]);

    // Succeeded: refused, recorded, and nothing called.
    let calls = aws.calls().len();
    let (code, body) = retry(&srv, &id, ADMIN).await;
    assert_eq!(code, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("is succeeded; only a failed plan can be retried"),
        "{body}"
    );
    assert_eq!(aws.calls().len(), calls);
    let refused = events(&srv, &id)
        .await
        .into_iter()
        .find(|e| e["kind"] == "retry_refused")
        .unwrap();
    assert_eq!(refused["actor"], "admin");
    assert_eq!(
        srv.metric(r#"dr_reactor_requests_rejected_total{reason="conflict"}"#)
            .await,
        1.0
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_retry_of_a_plan_awaiting_approval_or_running_is_refused_and_calls_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, aws) = approval::start(dir.path(), &rules(), "100ms").await;
    aws.document_runs_for("DR-Promote", 100_000);
    srv.post(&fire("RegionDown", "us-west-2")).await;
    let id = wait_state(&srv, "us-west-2", "awaiting_approval").await;
    let (code, _) = retry(&srv, &id, &token_of("bob")).await;
    assert_eq!(code, 409);
    assert!(aws.calls().is_empty(), "nothing approved, nothing called");

    assert_eq!(vote(&srv, &id, "approve", "alice").await.0, 200);
    srv.wait_for("the first step polled", || async {
        aws.calls_of(Op::GetAutomationExecution).len() >= 2
    })
    .await;
    let (code, body) = retry(&srv, &id, &token_of("bob")).await;
    assert_eq!(code, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains("is running"));
    // Only the polls of the execution already running: nothing started or
    // stopped by the refused retry.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(aws.calls_of(Op::StartAutomationExecution).len(), 1);
    assert!(aws.calls_of(Op::StopAutomationExecution).is_empty());
    let log = events(&srv, &id).await;
    let refused: Vec<(&str, &str)> = log
        .iter()
        .filter(|e| e["kind"] == "retry_refused")
        .map(|e| {
            (
                e["actor"].as_str().unwrap(),
                e["data"]["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(refused, [("bob", "awaiting_approval"), ("bob", "running")]);
    assert!(!log.iter().any(|e| e["kind"] == "step_retry"));
    let (code, _) = retry(&srv, "no-such-incident", &token_of("bob")).await;
    assert_eq!(code, 404);
    srv.stop().await;
}

/// A retry that fails again can be retried again, under a key of its own;
/// an abort asked of an earlier run (here written to the store while the
/// server was down, as a request that came too late to stop anything)
/// does not stop the retried one.
#[tokio::test]
async fn each_retry_has_its_own_key_and_an_earlier_abort_request_does_not_stop_it() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, aws) = approval::start(dir.path(), &rules(), "100ms").await;
    aws.document_fails("DR-Flip", "Route 53 API throttled");
    srv.post(&fire("RegionDown", "eu-central-1")).await;
    let id = wait_state(&srv, "eu-central-1", "awaiting_approval").await;
    assert_eq!(vote(&srv, &id, "approve", "alice").await.0, 200);
    wait_state(&srv, "eu-central-1", "failed").await;
    assert_eq!(retry(&srv, &id, &token_of("bob")).await.0, 200);
    srv.wait_for("the retried step failed again", || async {
        events(&srv, &id)
            .await
            .iter()
            .filter(|e| e["kind"] == "step_failed")
            .count()
            == 2
    })
    .await;
    wait_state(&srv, "eu-central-1", "failed").await;
    srv.stop().await;

    support::abort_requested_offline(dir.path(), &id, "aborted by carol: too late").await;

    let cfg = approval::config(dir.path(), &aws, "100ms", "");
    let srv = Server::start_with_aws(dir.path(), &cfg, aws.sdk_config()).await;
    aws.document_succeeds("DR-Flip");
    let (code, _) = retry(&srv, &id, &token_of("bob")).await;
    assert_eq!(code, 200);
    wait_state(&srv, "eu-central-1", "succeeded").await;
    assert_eq!(
        flip_tokens(&aws),
        [
            idempotency_key(&id, 1),
            idempotency_key(&format!("{id}/retry1"), 1),
            idempotency_key(&format!("{id}/retry2"), 1),
        ]
    );
    assert!(aws.calls_of(Op::StopAutomationExecution).is_empty());
    let log = events(&srv, &id).await;
    let retries: Vec<(&Value, &Value)> = log
        .iter()
        .filter(|e| e["kind"] == "step_retry")
        .map(|e| (&e["data"]["retry"], &e["data"]["steps"][0]["previous_key"]))
        .collect();
    assert_eq!(
        retries,
        [
            (&json!(1), &json!(idempotency_key(&id, 1))),
            (
                &json!(2),
                &json!(idempotency_key(&format!("{id}/retry1"), 1))
            ),
        ]
    );
    assert!(!log.iter().any(|e| e["kind"] == "aborted"));
    srv.stop().await;
}

const BINARY_RULES: &str = r#"rules:
  - name: failover
    match: {labels: ['alertname="RegionDown"']}
    correlate: {group_by: [region], window: 1h, when: {count: 1}}
    scenario: region_outage
    approval: {mode: one, groups: [leads], include_owners: false, timeout: 1h}
    plan:
      steps:
        - {name: promote, ssm: {document: DR-Promote, region: ap-northeast-1}}
        - {name: flip DNS, ssm: {document: DR-Flip, region: ap-northeast-1}}
"#;

fn binary_setup(fake: &FakeAws) -> (tempfile::TempDir, u16) {
    let dir = tempfile::tempdir().unwrap();
    let port = binary::free_port();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    std::fs::write(dir.path().join("rules/r.yaml"), BINARY_RULES).unwrap();
    std::fs::write(
        dir.path().join("c.yaml"),
        format!(
            "listen: 127.0.0.1:{port}\nstore:\n  url: sqlite://{db}\nrules:\n  paths: [{rules}]\n  evaluation_interval: 100ms\n  watch: false\n\
             webhook:\n  auth:\n    bearer_token: {token}\napi:\n  admin_token: {admin}\n  users:\n{users}dispatch:\n  dry_run: false\n\
             approval:\n  directory:\n    leads: [alice, bob]\n\
             aws:\n  endpoint_url: {endpoint}\n  default_region: ap-northeast-1\n  poll_interval: 50ms\n",
            db = dir.path().join("db.sqlite").display(),
            rules = dir.path().join("rules").display(),
            token = TOKEN,
            endpoint = fake.endpoint(),
            admin = binary::ADMIN,
            users = approval::api_users(&["alice", "bob"]),
        ),
    )
    .unwrap();
    (dir, port)
}

async fn start_binary(dir: &Path, port: u16) -> Dr {
    Dr::start(&dir.join("c.yaml"), port, &dir.join("dr.log")).await
}

/// `dr-reactor retry` (the CLI) against the running binary, as bob.
async fn cli_retry(base: &str, id: &str) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_dr-reactor"))
        .args(["retry", id, "--url", base, "--reason", "fixed"])
        .env("DR_REACTOR_API_TOKEN", token_of("bob"))
        .env_remove("DR_REACTOR_ADMIN_TOKEN")
        .output()
        .await
        .unwrap()
}

/// The retried step's start is sent and takes effect, but its answer is
/// held back when `kill -9` comes; after the restart the step is sent
/// again with the same (new) key, which SSM answers with the execution it
/// started: the retried step ran once, the first step never again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_retried_step_runs_it_exactly_once() {
    let fake = FakeAws::start().await;
    fake.document_fails("DR-Flip", "Route 53 API throttled");
    let (dir, port) = binary_setup(&fake);
    let dr = start_binary(dir.path(), port).await;
    dr.fire().await;
    let id = dr.wait_state("awaiting_approval").await;
    dr.approve(&id, "alice").await;
    dr.wait_state("failed").await;

    fake.document_succeeds("DR-Flip");
    fake.delay(Op::StartAutomationExecution, 1, Duration::from_secs(30));
    let out = cli_retry(&dr.base, &id).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("retried (incident is approved)"));
    wait_until("the retried start in flight", 20, || {
        fake.calls_of(Op::StartAutomationExecution).len() >= 3
    })
    .await;
    dr.kill9().await;

    let dr = start_binary(dir.path(), port).await;
    dr.wait_state("succeeded").await;
    let retried = idempotency_key(&format!("{id}/retry1"), 1);
    let flips: Vec<_> = fake
        .executions_started()
        .into_iter()
        .filter(|e| e.document == "DR-Flip")
        .collect();
    assert_eq!(flips.len(), 2, "the failed run and one retried run");
    assert_eq!(flips[1].client_token.as_deref(), Some(retried.as_str()));
    let promotes = fake
        .executions_started()
        .iter()
        .filter(|e| e.document == "DR-Promote")
        .count();
    assert_eq!(promotes, 1);
    let resent: Vec<_> = fake
        .calls_of(Op::StartAutomationExecution)
        .into_iter()
        .filter(|c| c.client_token.as_deref() == Some(retried.as_str()))
        .collect();
    assert!(
        resent.len() >= 2,
        "sent, and sent again with the same key: {resent:?}"
    );
    let log = dr.events(&id).await;
    let retry = log.iter().find(|e| e["kind"] == "step_retry").unwrap();
    assert_eq!(retry["actor"], "bob");
    dr.kill9().await;
    drop(dir);
}
