//! Approval through the operator API and CLI (the path that works when
//! Slack is down): who may vote, two distinct people, deny, timeouts with
//! escalation, cancellation when the evidence resolves, and a pending
//! approval that survives a restart.

mod support;

use std::path::Path;
use tokio::process::Command;

use serde_json::json;
use support::approval::{self, ADMIN, fire, token_of, vote, vote_as, wait_event, wait_state};
use support::fake_aws::Op;
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

async fn start(dir: &Path) -> (Server, support::fake_aws::FakeAws) {
    approval::start(dir, RULES, "100ms").await
}

#[tokio::test]
async fn two_distinct_approvers_from_the_group_and_restart_in_between() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, aws) = start(dir.path()).await;
    srv.post(&fire("RegionDown", "ap-northeast-2")).await;
    let id = wait_state(&srv, "ap-northeast-2", "awaiting_approval").await;

    assert_eq!(vote_as(&srv, &id, "approve", "wrong", None).await.0, 401);
    assert_eq!(
        vote_as(&srv, &id, "approve", TOKEN, Some("alice")).await.0,
        401,
        "webhook token cannot approve"
    );
    let (code, body) = vote(&srv, &id, "approve", "alice").await;
    assert_eq!(
        (
            code,
            body["verdict"].as_str(),
            body["still_needed"].as_u64()
        ),
        (200, Some("pending"), Some(1))
    );
    let (code, body) = vote(&srv, &id, "approve", "alice").await;
    assert_eq!(code, 403);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("2 different people"),
        "{body}"
    );
    let (code, body) = vote_as(&srv, &id, "approve", &token_of("alice"), Some("bob")).await;
    assert_eq!(code, 403, "one's own token cannot vote as another: {body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("this token is alice's; it cannot vote as bob")
    );
    let (code, body) = vote(&srv, &id, "approve", "carol").await;
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
    assert!(aws.calls().is_empty(), "nothing ran on one approval");
    srv.stop().await;

    // The pending approval and alice's vote survive a restart.
    let (srv, aws) = start(dir.path()).await;
    let (code, body) = vote(&srv, &id, "approve", "bob").await;
    assert_eq!(
        (code, body["verdict"].as_str(), body["state"].as_str()),
        (200, Some("approved"), Some("approved"))
    );
    wait_state(&srv, "ap-northeast-2", "succeeded").await;
    assert_eq!(aws.calls_of(Op::StartAutomationExecution).len(), 1);

    let events = approval::events(&srv, &id).await;
    let pairs: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e["kind"].as_str().unwrap().starts_with("vote"))
        .map(|e| (e["kind"].as_str().unwrap(), e["actor"].as_str().unwrap()))
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
    let last = events.iter().rfind(|e| e["kind"] == "vote").unwrap();
    assert_eq!(
        (last["from_state"].as_str(), last["to_state"].as_str()),
        (Some("awaiting_approval"), Some("approved"))
    );
    assert_eq!(
        last["reason"],
        "approved by alice and bob: checked the dashboards"
    );
    assert_eq!(last["data"]["break_glass"], false);
    srv.stop().await;
}

#[tokio::test]
async fn one_deny_denies_and_late_votes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, aws) = start(dir.path()).await;
    srv.post(&fire("RegionDown", "us-east-1")).await;
    let id = wait_state(&srv, "us-east-1", "awaiting_approval").await;
    let (code, body) = vote(&srv, &id, "deny", "bob").await;
    assert_eq!((code, body["state"].as_str()), (200, Some("denied")));
    let (code, body) = vote(&srv, &id, "approve", "alice").await;
    assert_eq!(code, 409);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("is denied, not awaiting approval")
    );
    assert_eq!(
        vote(&srv, "no-such-incident", "approve", "alice").await.0,
        404
    );
    assert!(aws.calls().is_empty());
    srv.stop().await;
}

#[tokio::test]
async fn timeout_escalates_once_then_expires() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, _aws) = start(dir.path()).await;
    srv.post(&fire("Slow", "eu-west-1")).await;
    let id = wait_state(&srv, "eu-west-1", "awaiting_approval").await;
    wait_event(&srv, &id, "escalated").await;
    let events = approval::events(&srv, &id).await;
    let esc = events.iter().find(|e| e["kind"] == "escalated").unwrap();
    assert_eq!(esc["data"]["groups"], json!(["leads", "sre"]));
    wait_state(&srv, "eu-west-1", "expired").await;

    // Another one: after the escalation a lead may approve.
    srv.post(&fire("Slow", "eu-west-2")).await;
    let id = wait_state(&srv, "eu-west-2", "awaiting_approval").await;
    assert_eq!(
        vote(&srv, &id, "approve", "alice").await.0,
        403,
        "not yet: leads are not asked before the timeout"
    );
    wait_event(&srv, &id, "escalated").await;
    let (code, body) = vote(&srv, &id, "approve", "alice").await;
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
    let (srv, aws) = start(dir.path()).await;
    srv.post(&fire("RegionDown", "sa-east-1")).await;
    let id = wait_state(&srv, "sa-east-1", "awaiting_approval").await;
    srv.post(&approval::resolve("RegionDown", "sa-east-1"))
        .await;
    wait_state(&srv, "sa-east-1", "cancelled").await;
    let detail = srv.get(&format!("/api/v1/incidents/{id}")).await;
    assert!(!detail["incident"]["closed_at"].is_null());
    assert_eq!(vote(&srv, &id, "approve", "alice").await.0, 409);
    assert!(aws.calls().is_empty());
    srv.stop().await;
}

#[tokio::test]
async fn cli_votes_with_the_users_own_token() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, aws) = start(dir.path()).await;
    srv.post(&fire("RegionDown", "ca-central-1")).await;
    let id = wait_state(&srv, "ca-central-1", "awaiting_approval").await;
    // tokio's Command: a blocking wait would stall the runtime that serves
    // the very API the CLI is calling.
    let cli = |env: &'static str, token: String, user: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dr-reactor"));
        cmd.args(["approve", &id, "--url", &srv.base, "--reason", "ok"])
            .env_remove("DR_REACTOR_API_TOKEN")
            .env_remove("DR_REACTOR_ADMIN_TOKEN")
            .env(env, token);
        if let Some(u) = user {
            cmd.args(["--as", u]);
        }
        cmd.output()
    };
    let out = cli("DR_REACTOR_API_TOKEN", token_of("alice"), None)
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{id}: pending (incident is awaiting_approval; 1 more approval(s) needed)\n")
    );
    let out = cli("DR_REACTOR_ADMIN_TOKEN", ADMIN.into(), Some("mallory"))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("approve refused (403): vote refused: mallory is not in any approver group")
    );
    let out = cli("DR_REACTOR_ADMIN_TOKEN", ADMIN.into(), Some("bob"))
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "approve refused (403): vote refused: the admin token cannot be the second person"
        ),
        "break-glass never completes a two-person approval"
    );
    assert!(aws.calls().is_empty());
    let out = cli("DR_REACTOR_API_TOKEN", token_of("bob"), None)
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(": approved (incident is approved)"));
    let events = approval::events(&srv, &id).await;
    let bob = events.iter().rfind(|e| e["kind"] == "vote").unwrap();
    assert_eq!(
        (bob["actor"].as_str(), bob["data"]["vote"]["via"].as_str()),
        (Some("bob"), Some("cli"))
    );
    srv.stop().await;
}
