//! Votes that come too late or from the wrong credential are refused (409
//! or 403, a `vote_refused` event with a reason code, the votes metric)
//! with live dispatch on, and nothing reaches AWS: the evidence resolved,
//! the deadline passed before the tick noticed, the admin token voting
//! twice or as the second person. Once a plan runs, resolving evidence does
//! not stop it.

mod support;

use std::path::Path;

use support::approval::{
    self, ADMIN, events, fire, resolve, rule, rule_file, vote, vote_as, wait_event, wait_state,
};
use support::fake_aws::{FakeAws, Op};
use support::*;

/// The rules: a long window keeps an incident open after its alert
/// resolves, so a flap does not open a second one.
fn rules() -> String {
    let leads = |mode: &str, timeout: &str| {
        format!("{{mode: {mode}, groups: [leads], include_owners: false, timeout: {timeout}}}")
    };
    rule_file(&[
        rule(
            "one-person",
            "ZoneDown",
            "{count: 1}",
            &leads("one", "1h"),
            "",
            &[("drain the zone", "DR-Drain")],
        ),
        rule(
            "two-people",
            "RegionDown",
            "{count: 1}",
            &leads("two", "1h"),
            "",
            &[("flip DNS", "DR-Flip")],
        ),
        rule(
            "heartbeat",
            "Watchdog",
            "{absent: {for: 1s, alert: Watchdog}}",
            &leads("one", "1h"),
            "",
            &[("fail over", "DR-Failover")],
        ),
        rule(
            "two-services",
            "Down",
            "{distinct: {service: 2}}",
            &leads("one", "1h"),
            "",
            &[("shift capacity", "DR-Shift")],
        ),
        rule(
            "quick-deadline",
            "Slow",
            "{count: 1}",
            &leads("one", "1s"),
            "",
            &[("restart", "DR-Restart")],
        ),
    ])
}

async fn start(dir: &Path, evaluation_interval: &str) -> (Server, FakeAws) {
    approval::start(dir, &rules(), evaluation_interval).await
}

/// The refused votes' reason codes, in order.
async fn refusals(srv: &Server, id: &str) -> Vec<String> {
    events(srv, id)
        .await
        .iter()
        .filter(|e| e["kind"] == "vote_refused")
        .map(|e| e["data"]["reason"].as_str().unwrap().to_owned())
        .collect()
}

/// `Down` of `service` in ap-northeast-3, firing or resolved.
fn down(status: &str, service: &str) -> serde_json::Value {
    payload(vec![alert(
        status,
        &[
            ("alertname", "Down"),
            ("region", "ap-northeast-3"),
            ("service", service),
        ],
    )])
}

/// The rule needs two services down. One recovers: something still fires,
/// but the rule's condition no longer holds over what fires, and that is
/// the evidence an approval is for (the same the rule opened on).
#[tokio::test]
async fn approval_is_refused_once_what_still_fires_no_longer_meets_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, aws) = start(dir.path(), "100ms").await;
    srv.post(&down("firing", "auth")).await;
    srv.post(&down("firing", "order")).await;
    let id = wait_state(&srv, "ap-northeast-3", "awaiting_approval").await;

    srv.post(&down("resolved", "auth")).await;
    wait_event(&srv, &id, "evidence_lapsed").await;
    wait_event(&srv, &id, "approval_paused").await;
    let (code, body) = vote(&srv, &id, "approve", "alice").await;
    assert_eq!(code, 409, "{body}");
    assert_eq!(refusals(&srv, &id).await, ["evidence_resolved"]);
    assert!(aws.calls().is_empty(), "{:?}", aws.calls());

    // auth fails again: two services, the evidence holds, votes are taken.
    let mut again = down("firing", "auth");
    again["alerts"][0]["startsAt"] = "2026-11-24T21:30:00Z".into();
    srv.post(&again).await;
    wait_event(&srv, &id, "evidence_returned").await;
    wait_event(&srv, &id, "approval_resumed").await;
    assert_eq!(vote(&srv, &id, "approve", "alice").await.0, 200);
    wait_state(&srv, "ap-northeast-3", "succeeded").await;
    let started: Vec<String> = aws
        .executions_started()
        .into_iter()
        .map(|e| e.document)
        .collect();
    assert_eq!(started, ["DR-Shift"]);
    srv.stop().await;
}

#[tokio::test]
async fn approval_is_refused_while_the_evidence_is_resolved_and_taken_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, aws) = start(dir.path(), "100ms").await;
    srv.post(&fire("ZoneDown", "ap-northeast-2")).await;
    let id = wait_state(&srv, "ap-northeast-2", "awaiting_approval").await;

    srv.post(&resolve("ZoneDown", "ap-northeast-2")).await;
    wait_event(&srv, &id, "approval_paused").await;
    let (code, body) = vote(&srv, &id, "approve", "alice").await;
    assert_eq!(code, 409, "{body}");
    assert_eq!(
        body["error"],
        "vote refused: evidence resolved: approval paused until it returns"
    );
    assert_eq!(refusals(&srv, &id).await, ["evidence_resolved"]);
    assert_eq!(
        srv.metric(r#"dr_reactor_approval_votes_total{outcome="evidence_resolved"}"#)
            .await,
        1.0
    );
    let incident = srv.get(&format!("/api/v1/incidents/{id}")).await["incident"].clone();
    assert_eq!(
        (incident["state"].as_str(), incident["closed_at"].is_null()),
        (Some("awaiting_approval"), true),
        "still open for its window"
    );
    assert!(aws.calls().is_empty(), "{:?}", aws.calls());

    // The alert fires again (a new episode: a later start): the same
    // incident takes votes again.
    let mut again = fire("ZoneDown", "ap-northeast-2");
    again["alerts"][0]["startsAt"] = "2026-11-24T21:30:00Z".into();
    srv.post(&again).await;
    wait_event(&srv, &id, "approval_resumed").await;
    let (code, body) = vote(&srv, &id, "approve", "alice").await;
    assert_eq!((code, body["state"].as_str()), (200, Some("approved")));
    wait_state(&srv, "ap-northeast-2", "succeeded").await;
    assert_eq!(
        srv.incidents().await.len(),
        1,
        "a flap opens no second incident"
    );
    assert_eq!(aws.calls_of(Op::StartAutomationExecution).len(), 1);
    srv.stop().await;
}

/// For a heartbeat-absence incident the evidence is the silence. The rule
/// engine cancels such an incident as soon as the heartbeat is back; a vote
/// that arrives before the engine has applied that (the heartbeat is
/// recorded first) is refused by its own check of the evidence. Either way:
/// 409 and nothing runs.
#[tokio::test]
async fn approval_is_refused_once_the_missing_heartbeat_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, aws) = start(dir.path(), "100ms").await;
    srv.post(&fire("Watchdog", "ap-northeast-2")).await;
    let id = wait_state(&srv, "ap-northeast-2", "awaiting_approval").await;

    // Back: votes are refused, and the incident stays open for its window.
    srv.post(&fire("Watchdog", "ap-northeast-2")).await;
    let (code, body) = vote(&srv, &id, "approve", "alice").await;
    assert_eq!(code, 409, "the heartbeat is back: {body}");
    assert_eq!(
        body["error"],
        "vote refused: evidence resolved: approval paused until it returns"
    );
    wait_event(&srv, &id, "approval_paused").await;
    let incident = srv.get(&format!("/api/v1/incidents/{id}")).await["incident"].clone();
    assert_eq!(
        (incident["state"].as_str(), incident["closed_at"].is_null()),
        (Some("awaiting_approval"), true),
        "still open for its window"
    );

    // Silent again (1 s here): the same incident takes votes again.
    wait_event(&srv, &id, "approval_resumed").await;
    let (code, body) = vote(&srv, &id, "approve", "alice").await;
    assert_eq!(
        (code, body["state"].as_str()),
        (200, Some("approved")),
        "{body}"
    );
    wait_state(&srv, "ap-northeast-2", "succeeded").await;
    assert_eq!(
        srv.incidents().await.len(),
        1,
        "a flap opens no second incident"
    );
    assert_eq!(
        aws.calls_of(Op::StartAutomationExecution).len(),
        1,
        "{:?}",
        aws.calls()
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_running_plan_is_not_stopped_by_its_evidence_resolving() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, aws) = start(dir.path(), "100ms").await;
    aws.document_runs_for("DR-Drain", 10);
    srv.post(&fire("ZoneDown", "eu-west-1")).await;
    let id = wait_state(&srv, "eu-west-1", "awaiting_approval").await;
    assert_eq!(vote(&srv, &id, "approve", "alice").await.0, 200);
    wait_state(&srv, "eu-west-1", "running").await;
    // The failover is what makes the alert resolve.
    srv.post(&resolve("ZoneDown", "eu-west-1")).await;
    wait_state(&srv, "eu-west-1", "succeeded").await;
    assert_eq!(aws.calls_of(Op::StartAutomationExecution).len(), 1);
    assert!(
        !events(&srv, &id)
            .await
            .iter()
            .any(|e| e["kind"] == "approval_paused")
    );
    srv.stop().await;
}

/// The tick that expires approvals runs once a minute here: the vote at
/// 1.5 s must be refused by its own check of the deadline.
#[tokio::test]
async fn approval_after_the_deadline_is_refused_before_the_tick_expires_it() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, aws) = start(dir.path(), "60s").await;
    srv.post(&fire("Slow", "us-west-2")).await;
    let id = wait_state(&srv, "us-west-2", "awaiting_approval").await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let (code, body) = vote(&srv, &id, "approve", "alice").await;
    assert_eq!(code, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("vote refused: the approval deadline passed at "),
        "{body}"
    );
    assert_eq!(refusals(&srv, &id).await, ["deadline_passed"]);
    assert_eq!(
        srv.metric(r#"dr_reactor_approval_votes_total{outcome="deadline_passed"}"#)
            .await,
        1.0
    );
    assert_eq!(
        srv.get(&format!("/api/v1/incidents/{id}")).await["incident"]["state"],
        "awaiting_approval",
        "the tick has not run: the vote itself saw the deadline"
    );
    assert!(aws.calls().is_empty(), "{:?}", aws.calls());
    srv.stop().await;
}

#[tokio::test]
async fn the_admin_token_is_one_vote_and_never_the_second_person() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, aws) = start(dir.path(), "100ms").await;

    // Break-glass first, then it may not vote again, even naming another.
    srv.post(&fire("RegionDown", "ap-south-1")).await;
    let first = wait_state(&srv, "ap-south-1", "awaiting_approval").await;
    let (code, body) = vote_as(&srv, &first, "approve", ADMIN, Some("alice")).await;
    assert_eq!((code, body["verdict"].as_str()), (200, Some("pending")));
    let (code, body) = vote_as(&srv, &first, "approve", ADMIN, Some("bob")).await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        vote_as(&srv, &first, "approve", ADMIN, None).await.0,
        400,
        "the admin token must say whom it votes for"
    );

    // Someone with their own token first: break-glass cannot complete it.
    srv.post(&fire("RegionDown", "ap-south-2")).await;
    let second = wait_state(&srv, "ap-south-2", "awaiting_approval").await;
    assert_eq!(vote(&srv, &second, "approve", "alice").await.0, 200);
    let (code, body) = vote_as(&srv, &second, "approve", ADMIN, Some("bob")).await;
    assert_eq!(code, 403, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("cannot be the second person of a two-person approval")
    );
    assert!(aws.calls().is_empty(), "{:?}", aws.calls());
    assert_eq!(refusals(&srv, &first).await, ["break_glass_used"]);
    assert_eq!(refusals(&srv, &second).await, ["break_glass_second"]);
    assert_eq!(
        srv.metric(r#"dr_reactor_approval_votes_total{outcome="break_glass_second"}"#)
            .await,
        1.0
    );

    // A person completes what break-glass began, and the log says which
    // vote was break-glass.
    let (code, body) = vote(&srv, &first, "approve", "bob").await;
    assert_eq!((code, body["state"].as_str()), (200, Some("approved")));
    wait_state(&srv, "ap-south-1", "succeeded").await;
    assert_eq!(aws.calls_of(Op::StartAutomationExecution).len(), 1);
    let log = events(&srv, &first).await;
    let votes: Vec<(&str, bool)> = log
        .iter()
        .filter(|e| e["kind"] == "vote")
        .map(|e| {
            (
                e["actor"].as_str().unwrap(),
                e["data"]["break_glass"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(votes, [("alice", true), ("bob", false)]);
    assert!(
        log.iter().find(|e| e["kind"] == "vote").unwrap()["reason"]
            .as_str()
            .unwrap()
            .starts_with("break-glass (admin token): ")
    );
    assert_eq!(
        srv.get(&format!("/api/v1/incidents/{second}")).await["incident"]["state"],
        "awaiting_approval"
    );
    srv.stop().await;
}
