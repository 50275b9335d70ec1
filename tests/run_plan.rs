//! Approved plans run on (fake) AWS through the real aws-sdk clients:
//! exactly once, in order, stopping at a failure, through throttling, and
//! across a restart in the middle of polling.

mod support;

use std::path::Path;

use serde_json::{Value, json};
use support::approval;
use support::fake_aws::{FakeAws, Op};
use support::*;

const RULES: &str = r#"rules:
  - name: failover
    match: {labels: ['alertname="RegionDown"']}
    correlate: {group_by: [region], window: 1h, when: {count: 1}}
    scenario: region_outage
    approval: {mode: two, groups: [leads], include_owners: false, timeout: 1h}
    plan:
      steps:
        - name: promote the replica
          ssm:
            document: DR-PromoteReplica
            region: ap-northeast-1
            parameters: {FailedRegion: "{{ labels.region }}", IncidentId: "{{ incident_id }}"}
        - name: verify
          lambda: {function: dr-verify, region: ap-northeast-1, payload: {region: "{{ labels.region }}"}}
  - name: restart
    match: {labels: ['alertname="Crash"']}
    correlate: {group_by: [region], window: 1h, when: {count: 1}}
    scenario: service_failure
    approval: {mode: auto}
    plan:
      steps:
        - {name: restart, ssm: {document: DR-Restart, region: ap-northeast-2}}
"#;

fn config(dir: &Path, fake: &FakeAws) -> String {
    format!(
        "listen: 127.0.0.1:0\nstore:\n  url: sqlite://{db}\nrules:\n  paths: [{rules}]\n  evaluation_interval: 100ms\n  watch: false\n\
         webhook:\n  auth:\n    bearer_token: {TOKEN}\napi:\n  admin_token: admin-secret\n  users:\n{users}dispatch:\n  dry_run: false\n\
         approval:\n  directory:\n    leads: [alice, bob]\n\
         aws:\n  endpoint_url: {endpoint}\n  default_region: ap-northeast-1\n  poll_interval: 50ms\n  retry: {{max_attempts: 5, initial_backoff: 10ms, max_backoff: 50ms}}\n\
         audit:\n  file: {audit}\n",
        audit = dir.join("audit/events.jsonl").display(),
        db = dir.join("db.sqlite").display(),
        rules = dir.join("rules").display(),
        endpoint = fake.endpoint(),
        users = approval::api_users(&["alice", "bob"]),
    )
}

async fn start(dir: &Path, fake: &FakeAws) -> Server {
    if !dir.join("rules").exists() {
        std::fs::create_dir(dir.join("rules")).unwrap();
        std::fs::write(dir.join("rules/r.yaml"), RULES).unwrap();
    }
    Server::start_with_aws(dir, &config(dir, fake), fake.sdk_config()).await
}

async fn incident(srv: &Server, region: &str) -> Value {
    srv.incidents()
        .await
        .into_iter()
        .find(|i| i["group_labels"]["region"] == region)
        .unwrap_or(Value::Null)
}

async fn wait_state(srv: &Server, region: &str, state: &str) -> String {
    srv.wait_for(&format!("incident in {region} {state}"), || async {
        incident(srv, region).await["state"] == state
    })
    .await;
    incident(srv, region).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn approve(srv: &Server, id: &str, user: &str) -> u16 {
    approval::vote(srv, id, "approve", user).await.0
}

async fn kinds(srv: &Server, id: &str) -> Vec<String> {
    srv.get(&format!("/api/v1/incidents/{id}")).await["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        // The fake knows none of these runbooks, which each plan says;
        // tests/readiness.rs covers that.
        .filter(|k| !matches!(k.as_str(), "signals_attached" | "runbook_not_ready"))
        .collect()
}

fn fire(name: &str, region: &str) -> Value {
    payload(vec![alert(
        "firing",
        &[("alertname", name), ("region", region)],
    )])
}

#[tokio::test]
async fn approved_plan_runs_each_step_once_in_the_dr_region() {
    let fake = FakeAws::start().await;
    fake.function_returns("dr-verify", json!({"replica_lag_seconds": 0}));
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path(), &fake).await;
    srv.post(&fire("RegionDown", "ap-northeast-2")).await;
    let id = wait_state(&srv, "ap-northeast-2", "awaiting_approval").await;
    assert!(fake.calls().is_empty(), "nothing runs before approval");
    assert_eq!(approve(&srv, &id, "alice").await, 200);
    assert_eq!(approve(&srv, &id, "bob").await, 200);
    wait_state(&srv, "ap-northeast-2", "succeeded").await;

    let execs = fake.executions_started();
    assert_eq!(execs.len(), 1, "{execs:?}");
    let starts = fake.calls_of(Op::StartAutomationExecution);
    assert_eq!(starts.len(), 1);
    assert_eq!(
        starts[0].region, "ap-northeast-1",
        "the DR region, never the failed one"
    );
    let plan = &incident(&srv, "ap-northeast-2").await["plan"]["steps"];
    assert_eq!(
        starts[0].client_token.as_deref(),
        plan[0]["idempotency_key"].as_str()
    );
    assert_eq!(
        starts[0].body["Parameters"]["FailedRegion"],
        json!(["ap-northeast-2"])
    );
    let invokes = fake.calls_of(Op::Invoke);
    assert_eq!(invokes.len(), 1);
    assert_eq!(
        invokes[0].body["idempotency_key"],
        plan[1]["idempotency_key"]
    );
    assert!(fake.calls().iter().all(|c| c.region != "ap-northeast-2"));
    assert_eq!(
        kinds(&srv, &id).await,
        [
            "detected",
            "planned",
            "admitted",
            "approval_requested",
            "vote",
            "vote",
            "running",
            "step_dispatching",
            "step_started",
            "step_succeeded",
            "step_dispatching",
            "step_succeeded",
            "succeeded"
        ]
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_failed_automation_fails_the_incident_and_stops_the_plan() {
    let fake = FakeAws::start().await;
    fake.function_returns("dr-verify", json!({}));
    fake.document_fails("DR-PromoteReplica", "replica lag too high to promote");
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path(), &fake).await;
    srv.post(&fire("RegionDown", "ap-northeast-2")).await;
    let id = wait_state(&srv, "ap-northeast-2", "awaiting_approval").await;
    approve(&srv, &id, "alice").await;
    approve(&srv, &id, "bob").await;
    wait_state(&srv, "ap-northeast-2", "failed").await;
    assert!(
        fake.calls_of(Op::Invoke).is_empty(),
        "the plan stopped at the failed step"
    );
    let detail = srv.get(&format!("/api/v1/incidents/{id}")).await;
    let last = detail["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["kind"], "failed");
    assert!(
        last["reason"]
            .as_str()
            .unwrap()
            .contains("step 1 (promote the replica) failed: replica lag too high to promote"),
        "{last}"
    );
    srv.stop().await;
}

#[tokio::test]
async fn throttling_is_retried_and_still_one_execution() {
    let fake = FakeAws::start().await;
    fake.throttle(Op::StartAutomationExecution, 2);
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path(), &fake).await;
    // Automatic approval: runs as soon as the guard admits it.
    srv.post(&fire("Crash", "ap-northeast-2")).await;
    wait_state(&srv, "ap-northeast-2", "succeeded").await;
    assert_eq!(fake.calls_of(Op::StartAutomationExecution).len(), 3);
    assert_eq!(fake.executions_started().len(), 1);
    srv.stop().await;
}

#[tokio::test]
async fn a_restart_while_polling_resumes_the_same_execution() {
    let fake = FakeAws::start().await;
    fake.document_runs_for("DR-Restart", 1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path(), &fake).await;
    srv.post(&fire("Crash", "ap-northeast-2")).await;
    let id = wait_state(&srv, "ap-northeast-2", "running").await;
    srv.wait_for("a few polls", || async {
        fake.calls_of(Op::GetAutomationExecution).len() >= 3
    })
    .await;
    srv.stop().await;

    fake.document_runs_for("DR-Restart", 2);
    let srv = start(dir.path(), &fake).await;
    wait_state(&srv, "ap-northeast-2", "succeeded").await;
    assert_eq!(
        fake.calls_of(Op::StartAutomationExecution).len(),
        1,
        "resumed by polling, not re-started"
    );
    assert_eq!(fake.executions_started().len(), 1);
    let k = kinds(&srv, &id).await;
    assert_eq!(k.iter().filter(|k| *k == "step_started").count(), 1);
    assert_eq!(k.last().unwrap(), "succeeded");
    srv.stop().await;
}
