//! `max_concurrent` with live dispatch: what awaits approval counts at
//! admission, and an approved plan over the limit waits (a `plan_waiting` event and
//! the held metric) instead of running, both when it is approved and right
//! before dispatch, until the plan holding the limit ends.

mod support;

use support::approval::{self, events, fire, rule, rule_file, vote, wait_state};
use support::fake_aws::{FakeAws, Op};
use support::*;

fn rules(max: u32) -> String {
    rule_file(&[rule(
        "failover",
        "RegionDown",
        "{count: 1}",
        "{mode: one, groups: [leads], include_owners: false, timeout: 1h}",
        &format!("{{max_concurrent: {max}}}"),
        &[("flip DNS", "DR-Flip")],
    )])
}

/// Two incidents awaiting approval under a limit of two, then the limit
/// lowered to one (a restart with changed rules), the first approved and
/// running (its execution answering InProgress to `polls` polls), the
/// second approved: the server, the fake, and the two ids.
async fn second_over_the_limit(
    dir: &std::path::Path,
    regions: [&str; 2],
    polls: u32,
) -> (Server, FakeAws, String, String) {
    let (srv, _aws) = approval::start(dir, &rules(2), "100ms").await;
    srv.post(&fire("RegionDown", regions[0])).await;
    let first = wait_state(&srv, regions[0], "awaiting_approval").await;
    srv.post(&fire("RegionDown", regions[1])).await;
    let second = wait_state(&srv, regions[1], "awaiting_approval").await;
    srv.stop().await;

    std::fs::write(dir.join("rules/r.yaml"), rules(1)).unwrap();
    let (srv, aws) = approval::start(dir, "", "100ms").await;
    aws.document_runs_for("DR-Flip", polls);
    assert_eq!(vote(&srv, &first, "approve", "alice").await.0, 200);
    wait_state(&srv, regions[0], "running").await;
    let (code, body) = vote(&srv, &second, "approve", "bob").await;
    assert_eq!((code, body["state"].as_str()), (200, Some("approved")));
    (srv, aws, first, second)
}

#[tokio::test]
async fn an_incident_awaiting_approval_fills_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, aws) = approval::start(dir.path(), &rules(1), "100ms").await;
    srv.post(&fire("RegionDown", "eu-west-1")).await;
    wait_state(&srv, "eu-west-1", "awaiting_approval").await;
    srv.post(&fire("RegionDown", "eu-west-2")).await;
    let held = wait_state(&srv, "eu-west-2", "suppressed").await;
    let log = events(&srv, &held).await;
    let suppressed = log.iter().find(|e| e["kind"] == "suppressed").unwrap();
    assert_eq!(suppressed["data"]["limit"], "max_concurrent");
    assert_eq!(
        suppressed["reason"],
        "rule failover allows 1 concurrent incident(s); 1 active"
    );
    assert!(aws.calls().is_empty());
    srv.stop().await;
}

/// Two incidents awaiting approval under a limit of two; the limit is then
/// lowered to one (a restart with changed rules). Both are approved: the
/// second waits while the first runs, and runs after it.
#[tokio::test]
async fn an_approved_plan_over_the_limit_waits_until_the_limit_frees() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, aws, first, second) =
        second_over_the_limit(dir.path(), ["us-east-1", "us-east-2"], 40).await;

    let log = events(&srv, &second).await;
    let held = log.iter().find(|e| e["kind"] == "plan_waiting").unwrap();
    assert_eq!(held["data"]["limit"], "max_concurrent");
    assert!(
        held["reason"]
            .as_str()
            .unwrap()
            .starts_with("max_concurrent: rule failover allows 1 at once"),
        "{held}"
    );
    assert!(
        srv.metric(r#"dr_reactor_incidents_held_total{limit="max_concurrent"}"#)
            .await
            >= 1.0
    );
    // Scans come every second: give the runner a few to (not) start it.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(
        srv.get(&format!("/api/v1/incidents/{second}")).await["incident"]["state"],
        "approved"
    );
    let starts = aws.calls_of(Op::StartAutomationExecution);
    assert_eq!(starts.len(), 1, "only the first plan was dispatched");
    let key = srv.get(&format!("/api/v1/incidents/{first}")).await["incident"]["plan"]["steps"][0]
        ["idempotency_key"]
        .as_str()
        .map(String::from);
    assert_eq!(starts[0].client_token, key, "and it was the first's");
    assert_eq!(
        events(&srv, &second)
            .await
            .iter()
            .filter(|e| e["kind"] == "plan_waiting")
            .count(),
        1,
        "one event per wait, not one per scan"
    );

    wait_state(&srv, "us-east-1", "succeeded").await;
    wait_state(&srv, "us-east-2", "succeeded").await;
    assert_eq!(aws.calls_of(Op::StartAutomationExecution).len(), 2);
    srv.stop().await;
}

/// A plan waiting for the limit is aborted with the CLI: it never runs,
/// also once the limit frees.
#[tokio::test]
async fn a_waiting_plan_aborted_from_the_cli_never_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, aws, _first, second) =
        second_over_the_limit(dir.path(), ["ap-east-1", "ap-east-2"], 20).await;
    approval::wait_event(&srv, &second, "plan_waiting").await;

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_dr-reactor"))
        .args([
            "abort",
            &second,
            "--url",
            &srv.base,
            "--reason",
            "not needed",
        ])
        .env_remove("DR_REACTOR_ADMIN_TOKEN")
        .env("DR_REACTOR_API_TOKEN", approval::token_of("carol"))
        .output()
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{second}: abort done (incident is aborted)\n"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_state(&srv, "ap-east-1", "succeeded").await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(aws.calls_of(Op::StartAutomationExecution).len(), 1);
    let aborted = events(&srv, &second)
        .await
        .into_iter()
        .find(|e| e["kind"] == "aborted")
        .unwrap();
    assert_eq!(
        (aborted["actor"].as_str(), aborted["reason"].as_str()),
        (
            Some("carol"),
            Some("aborted by carol: not needed; nothing ran")
        )
    );
    srv.stop().await;
}
