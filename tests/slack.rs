//! Slack approval end to end: the real slack-morphism client against a fake
//! Slack Web API, interactions signed the way Slack signs them, dispatch to
//! a fake AWS.

mod support;

use std::path::Path;

use serde_json::Value;
use support::approval::{ADMIN, fire, resolve, vote_as, wait_event, wait_state};
use support::fake_aws::{FakeAws, Op};
use support::fake_slack::{self, FakeSlack};
use support::slack_app::{BOT, INTERACTIONS, RULES, SECRET, config, post, signed, start};
use support::*;

async fn signed_click(srv: &Server, user: &str, action: &str, id: &str) -> (u16, Value) {
    signed(
        srv,
        INTERACTIONS,
        &fake_slack::interaction(user, action, id),
    )
    .await
}

async fn click(srv: &Server, body: &str, ts: i64, signature: &str) -> (u16, Value) {
    post(srv, INTERACTIONS, body, ts, signature).await
}

/// Whether the latest version of the message (its update, else the post)
/// contains `text`.
fn shows(slack: &FakeSlack, text: &str) -> bool {
    slack
        .updates()
        .last()
        .or(slack.messages().first())
        .is_some_and(|m| m.blocks.to_string().contains(text))
}

#[tokio::test]
async fn approve_in_slack_runs_the_plan_and_updates_the_message() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, aws, slack) = start(dir.path()).await;

    srv.post(&payload(vec![alert(
        "firing",
        &[("alertname", "RegionDown"), ("region", "ap-northeast-2")],
    )]))
    .await;
    srv.wait_for("the approval message", || async {
        !slack.messages().is_empty()
    })
    .await;
    let msg = slack.messages().remove(0);
    assert_eq!(msg.channel, "C123");
    let id = srv.incidents().await[0]["id"].as_str().unwrap().to_owned();
    let blocks = msg.blocks.to_string();
    assert!(
        blocks.contains("dr_approve") && blocks.contains("dr_deny"),
        "{blocks}"
    );
    assert!(blocks.contains(&id));
    assert!(
        blocks.contains("promote the replica — SSM Automation DR-Promote in ap-northeast-1"),
        "{blocks}"
    );

    // Refused before anything is read: forged, stale, replayed.
    let body = fake_slack::interaction("U_ALICE", "dr_approve", &id);
    let now = chrono::Utc::now().timestamp();
    assert_eq!(
        click(
            &srv,
            &body,
            now,
            &fake_slack::sign("wrong-secret", now, &body)
        )
        .await
        .0,
        401
    );
    assert_eq!(
        click(
            &srv,
            &body,
            now - 600,
            &fake_slack::sign(SECRET, now - 600, &body)
        )
        .await
        .0,
        401
    );
    let sig = fake_slack::sign(SECRET, now, &body);
    let (code, reply) = click(&srv, &body, now, &sig).await;
    assert_eq!(code, 200);
    assert_eq!(reply["text"], "Recorded. 1 more approval(s) needed.");
    assert_eq!(
        click(&srv, &body, now, &sig).await.0,
        401,
        "a replayed click is refused"
    );
    assert_eq!(
        srv.metric(r#"dr_reactor_requests_rejected_total{reason="slack_replayed"}"#)
            .await,
        1.0
    );
    assert_eq!(
        srv.metric(r#"dr_reactor_requests_rejected_total{reason="slack_bad_signature"}"#)
            .await,
        2.0
    );

    // Someone outside the approver group: answered, not counted.
    let (code, reply) = signed_click(&srv, "U_MALLORY", "dr_approve", &id).await;
    assert_eq!(code, 200);
    assert!(
        reply["text"]
            .as_str()
            .unwrap()
            .starts_with("Not recorded: vote refused: U_MALLORY is not in any approver group")
    );
    assert!(aws.calls().is_empty());

    let (_, reply) = signed_click(&srv, "U_BOB", "dr_approve", &id).await;
    assert_eq!(reply["text"], "Recorded: the incident is approved.");
    srv.wait_for("the message shows success", || async {
        slack
            .updates()
            .last()
            .is_some_and(|u| u.text.ends_with(": succeeded"))
    })
    .await;
    let last = slack.updates().pop().unwrap();
    assert_eq!(
        last.ts, msg.ts,
        "the same message is updated, not a new one posted"
    );
    assert!(
        !last.blocks.to_string().contains("dr_approve"),
        "no buttons once decided"
    );
    assert!(
        last.blocks
            .to_string()
            .contains("approved by U_ALICE · approved by U_BOB")
    );
    assert_eq!(slack.messages().len(), 1);
    assert_eq!(aws.calls_of(Op::StartAutomationExecution).len(), 1);
    srv.stop().await;
}

#[tokio::test]
async fn slack_shows_a_paused_approval_and_tells_the_clicker_why() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, aws, slack) = start(dir.path()).await;
    srv.post(&fire("RegionDown", "eu-central-1")).await;
    let id = wait_state(&srv, "eu-central-1", "awaiting_approval").await;
    srv.wait_for("the approval message", || async {
        !slack.messages().is_empty()
    })
    .await;

    srv.post(&resolve("RegionDown", "eu-central-1")).await;
    wait_event(&srv, &id, "approval_paused").await;
    srv.wait_for("the message shows the pause", || async {
        shows(&slack, "evidence resolved: approval paused")
    })
    .await;
    let (code, reply) = signed_click(&srv, "U_ALICE", "dr_approve", &id).await;
    assert_eq!(code, 200);
    assert_eq!(
        reply["text"],
        "Not recorded: vote refused: evidence resolved: approval paused until it returns"
    );
    assert_eq!(reply["response_type"], "ephemeral");

    let mut again = fire("RegionDown", "eu-central-1");
    again["alerts"][0]["startsAt"] = "2026-11-24T22:00:00Z".into();
    srv.post(&again).await;
    wait_event(&srv, &id, "approval_resumed").await;
    srv.wait_for("the message no longer shows the pause", || async {
        !shows(&slack, "approval paused")
    })
    .await;

    // One Slack click, then the admin token may not be the second person.
    // (The same click in the same second would be refused as a replay.)
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (_, reply) = signed_click(&srv, "U_ALICE", "dr_approve", &id).await;
    assert_eq!(reply["text"], "Recorded. 1 more approval(s) needed.");
    let (code, body) = vote_as(&srv, &id, "approve", ADMIN, Some("U_BOB")).await;
    assert_eq!(code, 403, "{body}");
    assert!(aws.calls().is_empty(), "{:?}", aws.calls());
    srv.stop().await;
}

#[tokio::test]
async fn a_break_glass_vote_is_marked_in_the_message() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, aws, slack) = start(dir.path()).await;
    srv.post(&fire("RegionDown", "eu-north-1")).await;
    let id = wait_state(&srv, "eu-north-1", "awaiting_approval").await;
    let (code, _) = vote_as(&srv, &id, "approve", ADMIN, Some("U_ALICE")).await;
    assert_eq!(code, 200);
    srv.wait_for("the message marks the break-glass vote", || async {
        shows(&slack, "approved by U_ALICE (break_glass: admin token)")
    })
    .await;
    assert!(aws.calls().is_empty());
    let (_, reply) = signed_click(&srv, "U_BOB", "dr_approve", &id).await;
    assert_eq!(reply["text"], "Recorded: the incident is approved.");
    wait_state(&srv, "eu-north-1", "succeeded").await;
    assert_eq!(aws.calls_of(Op::StartAutomationExecution).len(), 1);
    srv.stop().await;
}

/// A zone rule over two services that absorbs service failures, and a
/// service rule that asks one approver at once (no hold). The zone plan
/// names its services, so a new service changes it.
const TIERS: &str = r#"rules:
  - name: zone
    match: {labels: ['zone!=""', 'service!=""']}
    correlate: {group_by: [zone], window: 1h, when: {distinct: {service: 2}}}
    scenario: az_failure
    absorbs: [service_failure]
    approval: {mode: one, groups: [leads], include_owners: false, timeout: 1h}
    plan:
      steps:
        - name: shift capacity
          ssm: {document: DR-Shift, region: ap-northeast-2, parameters: {Services: "{{ services | join(',') }}"}}
  - name: service
    match: {labels: ['service!=""']}
    correlate: {group_by: [service], window: 1h, when: {count: 1}}
    scenario: service_failure
    hold: 0s
    approval: {mode: one, groups: [leads], include_owners: false, timeout: 1h}
    plan:
      steps:
        - {name: restart, ssm: {document: DR-Restart, region: ap-northeast-2}}
"#;

fn pod(service: &str) -> Value {
    alert(
        "firing",
        &[
            ("alertname", "PodDown"),
            ("service", service),
            ("zone", "ap-northeast-2a"),
        ],
    )
}

/// The value of the message's Approve button: what a click sends back.
fn approve_value(blocks: &Value) -> String {
    approve_value_opt(blocks).expect("an Approve button")
}

async fn start_tiers(dir: &Path, aws: &FakeAws, slack: &FakeSlack) -> Server {
    std::fs::create_dir(dir.join("rules")).unwrap();
    std::fs::write(dir.join("rules/r.yaml"), TIERS).unwrap();
    Server::start_with_aws(dir, &config(dir, aws, slack), aws.sdk_config()).await
}

async fn by_scenario(srv: &Server, scenario: &str) -> Value {
    srv.incidents()
        .await
        .into_iter()
        .find(|i| i["scenario"] == scenario)
        .unwrap_or(Value::Null)
}

/// An incident awaiting approval in Slack is absorbed by a zone incident:
/// its message loses its buttons and points at the larger incident, a click
/// on the old message is refused, and the zone's message lists it.
#[tokio::test]
async fn absorbed_child_message_points_at_the_parent() {
    let aws = FakeAws::start().await;
    let slack = FakeSlack::start(BOT).await;
    let dir = tempfile::tempdir().unwrap();
    let srv = start_tiers(dir.path(), &aws, &slack).await;
    srv.post(&payload(vec![pod("order")])).await;
    srv.wait_for("the child's message", || async {
        !slack.messages().is_empty()
    })
    .await;
    let child_msg = slack.messages().remove(0);
    let child_button = approve_value(&child_msg.blocks);
    let child = by_scenario(&srv, "service_failure").await;
    let child_id = child["id"].as_str().unwrap().to_owned();

    srv.post(&payload(vec![pod("payment")])).await;
    srv.wait_for("the child's message updated", || async {
        slack
            .updates()
            .iter()
            .any(|u| u.ts == child_msg.ts && u.blocks.to_string().contains("absorbed by incident"))
    })
    .await;
    let update = slack
        .updates()
        .into_iter()
        .rfind(|u| u.ts == child_msg.ts)
        .unwrap();
    assert!(
        !update.blocks.to_string().contains("dr_approve"),
        "no buttons"
    );
    let zone = by_scenario(&srv, "az_failure").await;
    assert!(
        update
            .blocks
            .to_string()
            .contains(zone["id"].as_str().unwrap()),
        "points at the parent: {}",
        update.blocks
    );
    // A click on the old message's button.
    let (_, reply) = signed_click(&srv, "U_ALICE", "dr_approve", &child_button).await;
    assert!(
        reply["text"].as_str().unwrap().starts_with("Not recorded:"),
        "{reply}"
    );
    srv.wait_for("the zone's message lists the child", || async {
        slack
            .messages()
            .iter()
            .chain(slack.updates().iter())
            .any(|m| {
                let b = m.blocks.to_string();
                b.contains("Absorbed") && b.contains(&child_id)
            })
    })
    .await;
    assert!(aws.calls().is_empty(), "{:?}", aws.calls());
    srv.stop().await;
}

/// A click carries the digest of the plan its message showed. After the
/// plan grows (a third service), the old button is refused with the reason,
/// the updated message's button approves, and the plan that runs is the
/// grown one.
#[tokio::test]
async fn a_click_approves_the_plan_its_message_showed() {
    let aws = FakeAws::start().await;
    let slack = FakeSlack::start(BOT).await;
    let dir = tempfile::tempdir().unwrap();
    let srv = start_tiers(dir.path(), &aws, &slack).await;
    srv.post(&payload(vec![pod("order"), pod("payment")])).await;
    srv.wait_for("the zone's message", || async {
        slack
            .messages()
            .iter()
            .any(|m| m.blocks.to_string().contains("shift capacity"))
    })
    .await;
    let zone_msg = slack
        .messages()
        .into_iter()
        .find(|m| m.blocks.to_string().contains("shift capacity"))
        .unwrap();
    let old_button = approve_value(&zone_msg.blocks);
    let zone = by_scenario(&srv, "az_failure").await;
    let zone_id = zone["id"].as_str().unwrap().to_owned();
    assert!(
        old_button.starts_with(&format!("{zone_id} ")),
        "{old_button}"
    );

    srv.post(&payload(vec![pod("notify")])).await;
    srv.wait_for("the zone's message shows the grown plan", || async {
        slack.updates().iter().any(|u| {
            u.ts == zone_msg.ts && approve_value_opt(&u.blocks).is_some_and(|v| v != old_button)
        })
    })
    .await;
    let (_, reply) = signed_click(&srv, "U_ALICE", "dr_approve", &old_button).await;
    assert!(
        reply["text"]
            .as_str()
            .unwrap()
            .contains("the plan changed since it was shown"),
        "{reply}"
    );
    assert!(aws.calls().is_empty());
    let new_button = slack
        .updates()
        .into_iter()
        .rfind(|u| u.ts == zone_msg.ts)
        .and_then(|u| approve_value_opt(&u.blocks))
        .unwrap();
    let (_, reply) = signed_click(&srv, "U_ALICE", "dr_approve", &new_button).await;
    assert_eq!(
        reply["text"], "Recorded: the incident is approved.",
        "{reply}"
    );
    srv.wait_for("the plan ran", || async {
        !aws.calls_of(Op::StartAutomationExecution).is_empty()
    })
    .await;
    let started = aws.executions_started();
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].document, "DR-Shift");
    assert_eq!(
        started[0].parameters["Services"][0], "notify,order,payment",
        "the grown plan"
    );
    srv.stop().await;
}

fn approve_value_opt(blocks: &Value) -> Option<String> {
    blocks
        .as_array()?
        .iter()
        .filter_map(|b| b["elements"].as_array())
        .flatten()
        .find(|e| e["action_id"] == "dr_approve")
        .and_then(|e| e["value"].as_str())
        .map(String::from)
}

async fn serve_on(dir: &Path, aws: &FakeAws, slack: &FakeSlack) -> Server {
    Server::start_with_aws(dir, &config(dir, aws, slack), aws.sdk_config()).await
}

fn with_rules(dir: &Path) {
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    std::fs::write(dir.join("rules/r.yaml"), RULES).unwrap();
}

fn region_down(region: &str, note: &str) -> Value {
    payload(vec![alert(
        "firing",
        &[
            ("alertname", "RegionDown"),
            ("region", region),
            ("note", note),
        ],
    )])
}

#[tokio::test]
async fn label_text_is_escaped_in_the_posted_message() {
    let aws = FakeAws::start().await;
    let slack = FakeSlack::start(BOT).await;
    let dir = tempfile::tempdir().unwrap();
    with_rules(dir.path());
    let srv = serve_on(dir.path(), &aws, &slack).await;
    srv.post(&region_down(
        "ap-northeast-2",
        "<!channel> <https://x|Approve here> & co",
    ))
    .await;
    srv.wait_for("the approval message", || async {
        !slack.messages().is_empty()
    })
    .await;
    let blocks = slack.messages()[0].blocks.to_string();
    for raw in ["<!channel>", "<https://x"] {
        assert!(!blocks.contains(raw), "{raw} reached Slack: {blocks}");
    }
    assert!(
        blocks.contains("&lt;!channel&gt; &lt;https://x|Approve here&gt; &amp; co"),
        "{blocks}"
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_failed_post_is_retried_and_a_missing_one_posted_after_restart() {
    retried_and_reposted(None).await;
}

/// The same on PostgreSQL, where the re-post waits for this replica to win
/// the lease (the previous process gave it up on stopping).
#[tokio::test]
async fn a_failed_post_is_retried_and_a_missing_one_posted_after_restart_on_postgres() {
    retried_and_reposted(Some(postgres_database().await)).await;
}

async fn retried_and_reposted(postgres: Option<String>) {
    let aws = FakeAws::start().await;
    let slack = FakeSlack::start(BOT).await;
    let dir = tempfile::tempdir().unwrap();
    with_rules(dir.path());
    let mut cfg = config(dir.path(), &aws, &slack);
    if let Some(url) = &postgres {
        cfg = cfg.replace(
            &format!("sqlite://{}", dir.path().join("db.sqlite").display()),
            url,
        );
    }
    let start = || Server::start_with_aws(dir.path(), &cfg, aws.sdk_config());
    let srv = start().await;

    // Slack fails twice: the post is tried again, with backoff, and lands.
    slack.fail_next(2);
    srv.post(&region_down("ap-northeast-2", "a")).await;
    srv.wait_for("the message after two failures", || async {
        slack.messages().len() == 1
    })
    .await;
    assert_eq!(slack.failed(), 2);
    assert!(
        srv.metric(r#"dr_reactor_pipeline_errors_total{stage="slack"}"#)
            .await
            >= 2.0
    );

    // Slack down while a second incident waits, and the process restarts:
    // the message nobody could post is posted at the next start.
    slack.fail_next(1_000_000);
    srv.post(&region_down("ap-southeast-1", "b")).await;
    srv.wait_for("a failed post of the second message", || async {
        slack.failed() > 2
    })
    .await;
    srv.stop().await;
    slack.fail_next(0);
    let srv = start().await;
    srv.wait_for("the second message, posted at start", || async {
        slack.messages().len() == 2
    })
    .await;
    let second = slack.messages().remove(1).blocks.to_string();
    assert!(
        second.contains("ap-southeast-1") && second.contains("dr_approve"),
        "{second}"
    );
    srv.stop().await;
}

/// A signed request replayed within Slack's five minutes is refused by a
/// process that did not see the original: after a restart (SQLite), and
/// by another replica sharing the store (PostgreSQL).
#[tokio::test]
async fn a_replayed_click_is_refused_after_a_restart_and_by_another_replica() {
    let aws = FakeAws::start().await;
    let slack = FakeSlack::start(BOT).await;
    let dir = tempfile::tempdir().unwrap();
    with_rules(dir.path());
    // Replay protection runs before the vote: no incident is needed.
    let body = fake_slack::interaction("U_ALICE", "dr_approve", "no-such-incident");
    let now = chrono::Utc::now().timestamp();
    let sig = fake_slack::sign(SECRET, now, &body);

    let srv = serve_on(dir.path(), &aws, &slack).await;
    assert_eq!(click(&srv, &body, now, &sig).await.0, 200);
    srv.stop().await;
    let srv = serve_on(dir.path(), &aws, &slack).await;
    assert_eq!(click(&srv, &body, now, &sig).await.0, 401);
    assert_eq!(
        srv.metric(r#"dr_reactor_requests_rejected_total{reason="slack_replayed"}"#)
            .await,
        1.0
    );
    srv.stop().await;

    let pg = postgres_database().await;
    let cfg = |d: &Path| {
        config(d, &aws, &slack).replace(&format!("sqlite://{}", d.join("db.sqlite").display()), &pg)
    };
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    with_rules(d1.path());
    with_rules(d2.path());
    let a = Server::start_with_aws(d1.path(), &cfg(d1.path()), aws.sdk_config()).await;
    let b = Server::start_with_aws(d2.path(), &cfg(d2.path()), aws.sdk_config()).await;
    let body = fake_slack::interaction("U_BOB", "dr_approve", "no-such-incident");
    let sig = fake_slack::sign(SECRET, now, &body);
    assert_eq!(click(&a, &body, now, &sig).await.0, 200);
    assert_eq!(
        click(&b, &body, now, &sig).await.0,
        401,
        "replayed to the other replica"
    );
    a.stop().await;
    b.stop().await;
}

/// An incident a silence suppresses still gets its message, which says
/// whose silence and until when, and nothing runs.
#[tokio::test]
async fn a_silenced_incident_says_so_in_its_message() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, aws, slack) = start(dir.path()).await;
    let resp = srv
        .client
        .post(format!("{}/api/v1/silences", srv.base))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({
            "matchers": ["region=\"eu-west-1\""],
            "duration": "1h",
            "comment": "planned failover drill",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let body: Value = resp.json().await.unwrap();
    let silence = body["silence"]["id"].as_str().unwrap().to_owned();

    srv.post(&fire("RegionDown", "eu-west-1")).await;
    wait_state(&srv, "eu-west-1", "suppressed").await;
    let line = format!("silenced: silence {silence} by admin until ");
    srv.wait_for("the message naming the silence", || async {
        shows(&slack, &line)
    })
    .await;
    assert!(shows(&slack, "planned failover drill"));
    assert!(aws.calls_of(Op::StartAutomationExecution).is_empty());
}

/// A region failover approved in Slack by both leads; the fake Slack, the
/// server, the incident id and the temp dir (kept alive by the caller).
async fn approved_region_failover(aws: &FakeAws) -> (FakeSlack, Server, String, tempfile::TempDir) {
    let slack = FakeSlack::start(BOT).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    std::fs::write(dir.path().join("rules/r.yaml"), RULES).unwrap();
    let srv = Server::start_with_aws(
        dir.path(),
        &config(dir.path(), aws, &slack),
        aws.sdk_config(),
    )
    .await;
    srv.post(&payload(vec![alert(
        "firing",
        &[("alertname", "RegionDown"), ("region", "ap-northeast-2")],
    )]))
    .await;
    srv.wait_for("the approval message", || async {
        !slack.messages().is_empty()
    })
    .await;
    let id = srv.incidents().await[0]["id"].as_str().unwrap().to_owned();
    signed_click(&srv, "U_ALICE", "dr_approve", &id).await;
    signed_click(&srv, "U_BOB", "dr_approve", &id).await;
    (slack, srv, id, dir)
}

/// An approved plan's message has an Abort button: someone outside the
/// approver directory is refused (nothing stopped); an approver's click
/// stops the SSM execution in flight and the incident ends `aborted`.
#[tokio::test]
async fn abort_from_slack_stops_the_running_plan() {
    let aws = FakeAws::start().await;
    aws.document_runs_for("DR-Promote", 400);
    let (slack, srv, id, _dir) = approved_region_failover(&aws).await;
    srv.wait_for("the step running and the Abort button shown", || async {
        !aws.executions_started().is_empty()
            && slack
                .updates()
                .iter()
                .any(|u| u.blocks.to_string().contains("dr_abort"))
    })
    .await;

    let (code, reply) = signed_click(&srv, "U_MALLORY", "dr_abort", &id).await;
    assert_eq!(code, 200);
    assert!(
        reply["text"].as_str().unwrap().starts_with("Not done:"),
        "{reply}"
    );
    assert!(aws.calls_of(Op::StopAutomationExecution).is_empty());

    let (_, reply) = signed_click(&srv, "U_ALICE", "dr_abort", &id).await;
    assert!(
        reply["text"]
            .as_str()
            .unwrap()
            .starts_with("Abort requested"),
        "{reply}"
    );
    srv.wait_for("the incident aborted", || async {
        srv.incidents().await[0]["state"] == "aborted"
    })
    .await;
    assert_eq!(aws.calls_of(Op::StopAutomationExecution).len(), 1);
    assert_eq!(aws.executions_started().len(), 1, "no further step");
    srv.stop().await;
}

/// A failed plan's message has a Retry button: an approver's click runs the
/// failed step again under a new key, and the plan succeeds.
#[tokio::test]
async fn retry_from_slack_runs_the_failed_step_again() {
    let aws = FakeAws::start().await;
    aws.document_fails("DR-Promote", "replica lag too high");
    let (slack, srv, id, _dir) = approved_region_failover(&aws).await;
    srv.wait_for("failed, with a Retry button", || async {
        srv.incidents().await[0]["state"] == "failed"
            && slack
                .updates()
                .iter()
                .any(|u| u.blocks.to_string().contains("dr_retry"))
    })
    .await;
    aws.document_succeeds("DR-Promote");
    // A failover's retry needs an approver of its groups: a stranger's
    // click is refused, the role named, and starts nothing.
    let (_, reply) = signed_click(&srv, "U_MALLORY", "dr_retry", &id).await;
    let text = reply["text"].as_str().unwrap();
    assert!(
        text.starts_with("Not done: U_MALLORY may not retry: it needs an approver of"),
        "{text}"
    );
    assert_eq!(aws.calls_of(Op::StartAutomationExecution).len(), 1);
    let (_, reply) = signed_click(&srv, "U_BOB", "dr_retry", &id).await;
    assert!(
        reply["text"]
            .as_str()
            .unwrap()
            .starts_with("Retry recorded"),
        "{reply}"
    );
    srv.wait_for("succeeded after the retry", || async {
        srv.incidents().await[0]["state"] == "succeeded"
    })
    .await;
    let starts = aws.calls_of(Op::StartAutomationExecution);
    assert_eq!(starts.len(), 2, "the failed step, then its retry");
    assert_ne!(
        starts[0].client_token, starts[1].client_token,
        "under a new key"
    );
    srv.stop().await;
}
