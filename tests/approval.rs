//! Approval through the operator API and CLI (the path that works when
//! Slack is down): who may vote, two distinct people, deny, timeouts with
//! escalation, cancellation when the evidence resolves, and a pending
//! approval that survives a restart.

mod support;

use std::path::Path;
use tokio::process::Command;

use serde_json::{Value, json};
use support::fake_aws::FakeAws;
use support::*;

const RULES: &str = r#"rules:
  - name: two-people
    match: {labels: ['alertname="RegionDown"']}
    correlate: {group_by: [region], window: 1s, when: {count: 1}}
    scenario: region_outage
    approval: {mode: two, groups: [leads], include_owners: false, timeout: 1h}
    plan:
      steps:
        - {name: flip DNS, ssm: {document: DR-Flip, region: ap-northeast-1}}
  - name: short-timeout
    match: {labels: ['alertname="Slow"']}
    correlate: {group_by: [region], window: 1h, when: {count: 1}}
    scenario: slow
    approval: {mode: one, groups: [sre], include_owners: false, timeout: 1s, on_timeout: escalate, escalate_to: [leads]}
    plan:
      steps:
        - {name: restart, ssm: {document: DR-Restart, region: ap-northeast-2}}
"#;

fn config(dir: &Path, fake: &FakeAws) -> String {
    format!(
        "listen: 127.0.0.1:0\nstore:\n  url: sqlite://{db}\nrules:\n  paths: [{rules}]\n  evaluation_interval: 100ms\n  watch: false\n\
         webhook:\n  auth:\n    bearer_token: {TOKEN}\napi:\n  admin_token: admin-secret\ndispatch:\n  dry_run: false\n\
         approval:\n  directory:\n    leads: [alice, bob]\n    sre: [carol]\n\
         aws:\n  endpoint_url: {endpoint}\n  default_region: ap-northeast-1\n  poll_interval: 50ms\n",
        db = dir.join("db.sqlite").display(),
        rules = dir.join("rules").display(),
        endpoint = fake.endpoint(),
    )
}

/// The server with live dispatch against a fake AWS (kept alive by the
/// caller for as long as the server runs).
async fn start(dir: &Path) -> (Server, FakeAws) {
    if !dir.join("rules").exists() {
        std::fs::create_dir(dir.join("rules")).unwrap();
        std::fs::write(dir.join("rules/r.yaml"), RULES).unwrap();
    }
    let fake = FakeAws::start().await;
    let srv = Server::start_with_aws(dir, &config(dir, &fake), fake.sdk_config()).await;
    (srv, fake)
}

async fn vote(srv: &Server, id: &str, action: &str, user: &str, token: &str) -> (u16, Value) {
    let resp = srv
        .client
        .post(format!("{}/api/v1/incidents/{id}/{action}", srv.base))
        .bearer_auth(token)
        .json(&json!({ "as": user, "reason": "checked the dashboards" }))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// Waits until the incident of `region` is in `state`; returns its id.
async fn wait_state(srv: &Server, region: &str, state: &str) -> String {
    let find = || async {
        srv.incidents()
            .await
            .into_iter()
            .find(|i| i["group_labels"]["region"] == region && i["state"] == state)
            .map(|i| i["id"].as_str().unwrap().to_owned())
    };
    srv.wait_for(&format!("incident in {region} {state}"), || async {
        find().await.is_some()
    })
    .await;
    find().await.unwrap()
}

/// Waits until the incident's log has an event of `kind`.
async fn wait_event(srv: &Server, id: &str, kind: &str) {
    srv.wait_for(kind, || async {
        srv.get(&format!("/api/v1/incidents/{id}")).await["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == kind)
    })
    .await;
}

fn fire(name: &str, region: &str) -> Value {
    payload(vec![alert(
        "firing",
        &[("alertname", name), ("region", region)],
    )])
}

#[tokio::test]
async fn two_distinct_approvers_from_the_group_and_restart_in_between() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, _aws) = start(dir.path()).await;
    srv.post(&fire("RegionDown", "ap-northeast-2")).await;
    let id = wait_state(&srv, "ap-northeast-2", "awaiting_approval").await;

    assert_eq!(vote(&srv, &id, "approve", "alice", "wrong").await.0, 401);
    assert_eq!(
        vote(&srv, &id, "approve", "alice", TOKEN).await.0,
        401,
        "webhook token cannot approve"
    );
    let (code, body) = vote(&srv, &id, "approve", "alice", "admin-secret").await;
    assert_eq!(
        (
            code,
            body["verdict"].as_str(),
            body["still_needed"].as_u64()
        ),
        (200, Some("pending"), Some(1))
    );
    let (code, body) = vote(&srv, &id, "approve", "alice", "admin-secret").await;
    assert_eq!(code, 403);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("2 different people"),
        "{body}"
    );
    let (code, body) = vote(&srv, &id, "approve", "carol", "admin-secret").await;
    assert_eq!(code, 403, "carol is in sre, not leads: {body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("not in any approver group")
    );
    assert_eq!(
        srv.metric(r#"dr_reactor_approval_votes_total{outcome="not_allowed"}"#)
            .await,
        1.0
    );
    assert_eq!(
        srv.metric(r#"dr_reactor_approval_votes_total{outcome="already_voted"}"#)
            .await,
        1.0
    );
    srv.stop().await;

    // The pending approval and alice's vote survive a restart.
    let (srv, _aws) = start(dir.path()).await;
    let (code, body) = vote(&srv, &id, "approve", "bob", "admin-secret").await;
    assert_eq!(
        (code, body["verdict"].as_str(), body["state"].as_str()),
        (200, Some("approved"), Some("approved"))
    );

    let detail = srv.get(&format!("/api/v1/incidents/{id}")).await;
    let trail: Vec<(String, String)> = detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"].as_str().unwrap().starts_with("vote"))
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_owned(),
                e["actor"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let pairs: Vec<(&str, &str)> = trail
        .iter()
        .map(|(k, a)| (k.as_str(), a.as_str()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("vote", "alice"),
            ("vote_refused", "alice"),
            ("vote_refused", "carol"),
            ("vote", "bob")
        ]
    );
    let last = detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .rfind(|e| e["kind"] == "vote")
        .unwrap();
    assert_eq!(
        (last["from_state"].as_str(), last["to_state"].as_str()),
        (Some("awaiting_approval"), Some("approved"))
    );
    assert_eq!(
        last["reason"],
        "approved by alice and bob: checked the dashboards"
    );
    srv.stop().await;
}

#[tokio::test]
async fn one_deny_denies_and_late_votes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, _aws) = start(dir.path()).await;
    srv.post(&fire("RegionDown", "us-east-1")).await;
    let id = wait_state(&srv, "us-east-1", "awaiting_approval").await;
    let (code, body) = vote(&srv, &id, "deny", "bob", "admin-secret").await;
    assert_eq!((code, body["state"].as_str()), (200, Some("denied")));
    let (code, body) = vote(&srv, &id, "approve", "alice", "admin-secret").await;
    assert_eq!(code, 409);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("is denied, not awaiting approval")
    );
    assert_eq!(
        vote(&srv, "no-such-incident", "approve", "alice", "admin-secret")
            .await
            .0,
        404
    );
    srv.stop().await;
}

#[tokio::test]
async fn timeout_escalates_once_then_expires() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, _aws) = start(dir.path()).await;
    srv.post(&fire("Slow", "eu-west-1")).await;
    let id = wait_state(&srv, "eu-west-1", "awaiting_approval").await;
    wait_event(&srv, &id, "escalated").await;
    let detail = srv.get(&format!("/api/v1/incidents/{id}")).await;
    let esc = detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "escalated")
        .unwrap();
    assert_eq!(esc["data"]["groups"], json!(["leads", "sre"]));
    wait_state(&srv, "eu-west-1", "expired").await;

    // Another one: after the escalation a lead may approve.
    srv.post(&fire("Slow", "eu-west-2")).await;
    let id = wait_state(&srv, "eu-west-2", "awaiting_approval").await;
    assert_eq!(
        vote(&srv, &id, "approve", "alice", "admin-secret").await.0,
        403,
        "not yet: leads are not asked before the timeout"
    );
    wait_event(&srv, &id, "escalated").await;
    let (code, body) = vote(&srv, &id, "approve", "alice", "admin-secret").await;
    assert_eq!(
        (code, body["state"].as_str()),
        (200, Some("approved")),
        "{body}"
    );
    srv.stop().await;
}

#[tokio::test]
async fn evidence_resolving_before_approval_cancels() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, _aws) = start(dir.path()).await;
    srv.post(&fire("RegionDown", "sa-east-1")).await;
    let id = wait_state(&srv, "sa-east-1", "awaiting_approval").await;
    srv.post(&payload(vec![alert(
        "resolved",
        &[("alertname", "RegionDown"), ("region", "sa-east-1")],
    )]))
    .await;
    wait_state(&srv, "sa-east-1", "cancelled").await;
    let detail = srv.get(&format!("/api/v1/incidents/{id}")).await;
    assert!(!detail["incident"]["closed_at"].is_null());
    assert_eq!(
        vote(&srv, &id, "approve", "alice", "admin-secret").await.0,
        409
    );
    srv.stop().await;
}

#[tokio::test]
async fn cli_votes_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, _aws) = start(dir.path()).await;
    srv.post(&fire("RegionDown", "ca-central-1")).await;
    let id = wait_state(&srv, "ca-central-1", "awaiting_approval").await;
    // tokio's Command: a blocking wait would stall the runtime that serves
    // the very API the CLI is calling.
    let cli = |user: &str, token: &str| {
        Command::new(env!("CARGO_BIN_EXE_dr-reactor"))
            .args([
                "approve", &id, "--as", user, "--url", &srv.base, "--reason", "ok",
            ])
            .env("DR_REACTOR_ADMIN_TOKEN", token)
            .output()
    };
    let out = cli("alice", "admin-secret").await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{id}: pending (incident is awaiting_approval; 1 more approval(s) needed)\n")
    );
    let out = cli("mallory", "admin-secret").await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("approve refused (403): vote refused: mallory is not in any approver group")
    );
    let out = cli("bob", "admin-secret").await.unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(": approved (incident is approved)"));
    srv.stop().await;
}
