//! Operator controls with live dispatch: abort stops the SSM execution in
//! flight (StopAutomationExecution) and starts no further step; a step over
//! `aws.step_timeout` is stopped and fails the plan. Both hold across a
//! restart: the abort request and the step's start are in the store.

mod support;

use std::path::Path;

use serde_json::{Value, json};
use support::approval::{
    self, events, failover_rule, fire, rule_file, token_of, vote, wait_event, wait_state,
};
use support::fake_aws::{FakeAws, Op};
use support::*;

/// The server with `aws_extra` added to the `aws:` section, against
/// `fake` (a fresh one if not given: a restart keeps its fake).
async fn start_with(dir: &Path, aws_extra: &str, fake: Option<FakeAws>) -> (Server, FakeAws) {
    let fake = match fake {
        Some(f) => f,
        None => FakeAws::start().await,
    };
    let cfg = approval::config(dir, &fake, "100ms", aws_extra);
    let srv = Server::start_with_aws(dir, &cfg, fake.sdk_config()).await;
    (srv, fake)
}

/// The server with `aws_extra` added to the `aws:` section.
async fn start(dir: &Path, aws_extra: &str) -> (Server, FakeAws) {
    std::fs::create_dir(dir.join("rules")).unwrap();
    let rules = rule_file(&[failover_rule()]);
    std::fs::write(dir.join("rules/r.yaml"), rules).unwrap();
    start_with(dir, aws_extra, None).await
}

async fn abort(srv: &Server, id: &str, token: &str) -> (u16, Value) {
    let resp = srv
        .client
        .post(format!("{}/api/v1/incidents/{id}/abort", srv.base))
        .bearer_auth(token)
        .json(&json!({ "reason": "wrong region" }))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// The recorded execution id of the plan's first step, once it started.
async fn first_execution(srv: &Server, id: &str) -> String {
    wait_event(srv, id, "step_started").await;
    events(srv, id)
        .await
        .iter()
        .find(|e| e["kind"] == "step_started")
        .and_then(|e| e["data"]["execution_id"].as_str())
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn abort_stops_the_execution_in_flight_and_starts_no_further_step() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, aws) = start(dir.path(), "").await;
    aws.document_runs_for("DR-Promote", 100_000);
    srv.post(&fire("RegionDown", "ap-northeast-2")).await;
    let id = wait_state(&srv, "ap-northeast-2", "awaiting_approval").await;
    assert_eq!(
        abort(&srv, &id, &token_of("bob")).await.0,
        409,
        "nothing approved to abort"
    );
    assert_eq!(vote(&srv, &id, "approve", "alice").await.0, 200);
    let execution = first_execution(&srv, &id).await;

    assert_eq!(
        abort(&srv, &id, TOKEN).await.0,
        401,
        "not the webhook token"
    );
    let (code, body) = abort(&srv, &id, &token_of("bob")).await;
    assert_eq!(
        (code, body["abort"].as_str(), body["state"].as_str()),
        (200, Some("requested"), Some("running"))
    );
    wait_state(&srv, "ap-northeast-2", "aborted").await;

    let stops = aws.calls_of(Op::StopAutomationExecution);
    assert_eq!(stops.len(), 1, "{stops:?}");
    assert_eq!(stops[0].target, execution);
    assert_eq!(stops[0].region, "ap-northeast-1");
    let starts = aws.calls_of(Op::StartAutomationExecution);
    assert_eq!(starts.len(), 1, "the second step never started");
    assert_eq!(starts[0].target, "DR-Promote");

    let log = events(&srv, &id).await;
    let kinds: Vec<(&str, &str)> = log
        .iter()
        .filter(|e| {
            matches!(
                e["kind"].as_str(),
                Some("abort_requested" | "step_failed" | "aborted")
            )
        })
        .map(|e| (e["kind"].as_str().unwrap(), e["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("abort_requested", "bob"),
            ("step_failed", "dr-reactor"),
            ("aborted", "bob")
        ]
    );
    let failed = log.iter().find(|e| e["kind"] == "step_failed").unwrap();
    assert_eq!(failed["data"]["outcome"]["status"], "Cancelled");
    let aborted = log.iter().find(|e| e["kind"] == "aborted").unwrap();
    assert_eq!(
        aborted["reason"],
        "aborted by bob: wrong region; 1 of 2 step(s) had started, none will follow"
    );
    assert_eq!(
        srv.metric(r#"dr_reactor_incident_transitions_total{state="aborted"}"#)
            .await,
        1.0
    );
    assert_eq!(
        abort(&srv, &id, &token_of("bob")).await.0,
        409,
        "an aborted plan is over"
    );
    srv.stop().await;
}

/// An execution that has already ended when the abort is carried out (here
/// stopped by someone else; after a `kill -9`, by the process that died
/// between its stop call and the record of it) is recorded as it ended,
/// not stopped a second time.
#[tokio::test]
async fn an_execution_already_stopped_is_not_stopped_again_by_an_abort() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, aws, id, execution) = mid_step(dir.path(), "", "ap-northeast-2").await;
    let ssm = aws_sdk_ssm::Client::from_conf(
        aws_sdk_ssm::config::Builder::from(&aws.sdk_config())
            .region(aws_sdk_ssm::config::Region::new("ap-northeast-1"))
            .http_client(dr_reactor::primitives::aws_http::https_client())
            .endpoint_url(aws.endpoint())
            .build(),
    );
    ssm.stop_automation_execution()
        .automation_execution_id(&execution)
        .send()
        .await
        .unwrap();

    assert_eq!(abort(&srv, &id, &token_of("bob")).await.0, 200);
    wait_state(&srv, "ap-northeast-2", "aborted").await;
    assert_eq!(
        aws.calls_of(Op::StopAutomationExecution).len(),
        1,
        "only the stop sent before the abort"
    );
    assert_eq!(aws.calls_of(Op::StartAutomationExecution).len(), 1);
    let log = events(&srv, &id).await;
    let failed = log.iter().find(|e| e["kind"] == "step_failed").unwrap();
    assert_eq!(failed["data"]["outcome"]["status"], "Cancelled");
    assert_eq!(
        failed["data"]["outcome"]["failure"],
        "stopped: aborted by bob: wrong region; execution already Cancelled"
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_step_over_its_timeout_is_stopped_and_fails_the_plan() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, aws, id, execution) = mid_step(dir.path(), "  step_timeout: 1s\n", "us-east-1").await;
    wait_state(&srv, "us-east-1", "failed").await;

    let stops = aws.calls_of(Op::StopAutomationExecution);
    assert_eq!(stops.len(), 1);
    assert_eq!(stops[0].target, execution);
    assert_eq!(aws.calls_of(Op::StartAutomationExecution).len(), 1);
    let log = events(&srv, &id).await;
    let failed = log.iter().find(|e| e["kind"] == "step_failed").unwrap();
    assert_eq!(failed["data"]["outcome"]["status"], "TimedOut");
    assert_eq!(
        failed["data"]["outcome"]["failure"],
        "timed out after 1s (aws.step_timeout); execution stopped"
    );
    srv.stop().await;
}

/// A server whose incident of `region` is approved and whose first step's
/// execution runs (for 100,000 polls): the server, its fake, the incident
/// and the execution.
async fn mid_step(dir: &Path, aws_extra: &str, region: &str) -> (Server, FakeAws, String, String) {
    let (srv, aws) = start(dir, aws_extra).await;
    aws.document_runs_for("DR-Promote", 100_000);
    srv.post(&fire("RegionDown", region)).await;
    let id = wait_state(&srv, region, "awaiting_approval").await;
    assert_eq!(vote(&srv, &id, "approve", "alice").await.0, 200);
    let execution = first_execution(&srv, &id).await;
    (srv, aws, id, execution)
}

/// [`mid_step`], with the server stopped there. The fake and the ids.
async fn stopped_mid_step(dir: &Path, aws_extra: &str, region: &str) -> (FakeAws, String, String) {
    let (srv, aws, id, execution) = mid_step(dir, aws_extra, region).await;
    srv.stop().await;
    (aws, id, execution)
}

/// An abort requested while no runner ran (written to the store as the API
/// would) is carried out by the runner after the restart: the execution
/// recorded before it is stopped, nothing is started again.
#[tokio::test]
async fn an_abort_requested_across_a_restart_is_carried_out() {
    let dir = tempfile::tempdir().unwrap();
    let (aws, id, execution) = stopped_mid_step(dir.path(), "", "eu-west-3").await;
    support::abort_requested_offline(dir.path(), &id, "aborted by carol: drill over").await;

    let (srv, aws) = start_with(dir.path(), "", Some(aws)).await;
    wait_state(&srv, "eu-west-3", "aborted").await;
    let stops = aws.calls_of(Op::StopAutomationExecution);
    assert_eq!(stops.len(), 1);
    assert_eq!(stops[0].target, execution);
    assert_eq!(aws.executions_started().len(), 1, "nothing started twice");
    assert_eq!(aws.calls_of(Op::StartAutomationExecution).len(), 1);
    let log = events(&srv, &id).await;
    let aborted = log.iter().find(|e| e["kind"] == "aborted").unwrap();
    assert_eq!(aborted["actor"], "carol");
    srv.stop().await;
}

/// The step timeout counts from the step's recorded start, not from the
/// restart: down for 2 s with a 3 s timeout, the step fails about 1 s after
/// the restart, not 3 s.
#[tokio::test]
async fn the_step_timeout_counts_from_the_recorded_start_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (aws, id, execution) =
        stopped_mid_step(dir.path(), "  step_timeout: 3s\n", "eu-south-1").await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let (srv, aws) = start_with(dir.path(), "  step_timeout: 3s\n", Some(aws)).await;
    wait_state(&srv, "eu-south-1", "failed").await;
    let log = events(&srv, &id).await;
    let at = |kind: &str| {
        let e = log.iter().find(|e| e["kind"] == kind).unwrap();
        e["at"]
            .as_str()
            .unwrap()
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap()
    };
    let ran = at("step_failed") - at("step_started");
    assert!(
        ran >= chrono::Duration::seconds(3) && ran < chrono::Duration::milliseconds(4500),
        "stopped {ran} after its start"
    );
    let stops = aws.calls_of(Op::StopAutomationExecution);
    assert_eq!(stops.len(), 1);
    assert_eq!(stops[0].target, execution);
    srv.stop().await;
}

/// A step's own `timeout` wins over its rule's `plan.step_timeout`, which
/// wins over `aws.step_timeout`; each is fixed in the plan when it is built.
#[tokio::test]
async fn a_rule_sets_step_timeouts_per_plan_and_per_step() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    std::fs::write(
        dir.path().join("rules/r.yaml"),
        r#"rules:
  - name: failover
    match: {labels: ['alertname="RegionDown"']}
    correlate: {group_by: [region], window: 1h, when: {count: 1}}
    scenario: region_outage
    approval: {mode: one, groups: [leads], include_owners: false, timeout: 1h}
    plan:
      step_timeout: 1h
      steps:
        - {name: promote, timeout: 1s, ssm: {document: DR-Promote, region: ap-northeast-1}}
        - {name: flip DNS, ssm: {document: DR-Flip, region: ap-northeast-1}}
"#,
    )
    .unwrap();
    let (srv, aws) = start_with(dir.path(), "  step_timeout: 2h\n", None).await;
    aws.document_runs_for("DR-Promote", 100_000);
    srv.post(&fire("RegionDown", "ca-west-1")).await;
    let id = wait_state(&srv, "ca-west-1", "awaiting_approval").await;
    let plan = srv.get(&format!("/api/v1/incidents/{id}")).await["incident"]["plan"].clone();
    let timeouts: Vec<Option<u64>> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["timeout_secs"].as_u64())
        .collect();
    assert_eq!(timeouts, [Some(1), Some(3600)]);
    assert_eq!(vote(&srv, &id, "approve", "alice").await.0, 200);
    wait_state(&srv, "ca-west-1", "failed").await;
    let failed = events(&srv, &id)
        .await
        .into_iter()
        .find(|e| e["kind"] == "step_failed")
        .unwrap();
    assert_eq!(
        failed["data"]["outcome"]["failure"],
        "timed out after 1s (the rule's step timeout); execution stopped"
    );
    assert_eq!(aws.calls_of(Op::StopAutomationExecution).len(), 1);
    assert_eq!(aws.calls_of(Op::StartAutomationExecution).len(), 1);
    srv.stop().await;
}
