//! Slack slash commands (`/dr declare`, `/dr silence`), signed the way
//! Slack signs them, with live dispatch against the fake AWS: only people
//! of the approver directory act, as themselves; a declared incident takes
//! the detected path (nothing runs before approval); a silence made in
//! Slack keeps a matching incident from acting (no AWS call).

mod support;

use support::approval::{events, fire, wait_state};
use support::fake_slack;
use support::slack_app::{COMMANDS, command, post, signed, start};
use support::*;

async fn slash(srv: &Server, user: &str, text: &str) -> String {
    let (code, reply) = signed(srv, COMMANDS, &command(user, text)).await;
    assert_eq!(code, 200, "{reply}");
    assert_eq!(reply["response_type"], "ephemeral", "{reply}");
    reply["text"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn declare_in_slack_takes_the_detected_path_as_the_person_who_typed_it() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, aws, _slack) = start(dir.path()).await;

    let text = slash(
        &srv,
        "U_MALLORY",
        "declare region_outage region=sa-east-1 -- I say so",
    )
    .await;
    assert!(
        text.contains("may not declare: it needs the operator role"),
        "{text}"
    );
    assert!(
        srv.incidents().await.is_empty(),
        "a stranger declares nothing"
    );

    let text = slash(&srv, "U_ALICE", "declare region_outage region=sa-east-1").await;
    assert!(text.contains("needs a reason"), "{text}");
    let text = slash(
        &srv,
        "U_ALICE",
        "declare regoin_outage region=sa-east-1 -- x",
    )
    .await;
    assert!(text.contains("Not declared: unknown scenario"), "{text}");
    assert!(
        text.contains("region_outage"),
        "the answer lists what is known: {text}"
    );

    let text = slash(
        &srv,
        "U_ALICE",
        "declare region_outage region=sa-east-1 -- AWS status page: sa-east-1 down",
    )
    .await;
    assert!(text.starts_with("Declared incident"), "{text}");
    let id = wait_state(&srv, "sa-east-1", "awaiting_approval").await;
    assert!(text.contains(&id), "the answer names the incident: {text}");
    let log = events(&srv, &id).await;
    assert_eq!(log[0]["kind"], "declared");
    assert_eq!(log[0]["actor"], "U_ALICE");
    assert!(
        aws.calls().is_empty(),
        "nothing runs before two people approve: {:?}",
        aws.calls()
    );

    let text = slash(
        &srv,
        "U_BOB",
        "declare region_outage region=sa-east-1 -- again",
    )
    .await;
    assert!(
        text.contains("Not declared") && text.contains(&id),
        "{text}"
    );
}

#[tokio::test]
async fn a_silence_made_in_slack_keeps_a_matching_incident_from_acting() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, aws, slack) = start(dir.path()).await;

    // The kill switch is an admin's: a lead is refused, and it stays off.
    let text = slash(&srv, "U_ALICE", "kill-switch on -- stop everything").await;
    assert!(
        text.starts_with(
            "Not done: U_ALICE may not change the kill switch: it needs the admin role"
        ),
        "{text}"
    );
    assert_eq!(srv.get("/api/v1/kill-switch").await["engaged"], false);
    let text = slash(&srv, "U_MALLORY", "silence 2h region=\"eu-west-1\" -- mine").await;
    assert!(text.contains("may not silence"), "{text}");
    let text = slash(&srv, "U_BOB", "silence 2h region=~\".*\" -- everything").await;
    assert!(
        text.contains("Not silenced"),
        "a silence of everything: {text}"
    );
    let text = slash(&srv, "U_BOB", "silence 2h region=\"eu-west-1\"").await;
    assert!(
        text.contains("Not silenced") && text.contains("comment"),
        "{text}"
    );
    assert!(
        srv.get("/api/v1/silences").await["silences"]
            .as_array()
            .unwrap()
            .is_empty(),
        "nothing refused was stored"
    );

    let text = slash(
        &srv,
        "U_BOB",
        "silence 2h region=\u{201C}eu-west-1\u{201D} -- region evacuation drill",
    )
    .await;
    assert!(text.starts_with("Silence `"), "{text}");
    let silences = srv.get("/api/v1/silences").await["silences"].clone();
    let s = &silences[0];
    assert_eq!(
        (&s["created_by"], &s["source"], &s["state"]),
        (&"U_BOB".into(), &"slack".into(), &"active".into()),
        "{silences}"
    );
    assert_eq!(s["matchers"][0], "region=\"eu-west-1\"");
    // It reaches a rule that fails over: said in the channel, for everyone
    // on call to see (the refused ones above said nothing).
    let id = s["id"].as_str().unwrap().to_owned();
    eventually("the silence announced in Slack", 10, || async {
        slack.notices().iter().any(|m| m.text.contains(&id))
    })
    .await;
    let notices: Vec<_> = slack
        .notices()
        .into_iter()
        .filter(|m| m.text.starts_with("Silence "))
        .collect();
    assert_eq!(notices.len(), 1, "{notices:?}");
    let said = &notices[0].text;
    for want in [
        "by U_BOB (slack)",
        "reaches failover",
        "region evacuation drill",
    ] {
        assert!(said.contains(want), "{want} in {said}");
    }
    assert_eq!(notices[0].channel, "C123");

    srv.post(&fire("RegionDown", "eu-west-1")).await;
    let id = wait_state(&srv, "eu-west-1", "suppressed").await;
    let log = events(&srv, &id).await;
    let silenced = log.iter().find(|e| e["kind"] == "silenced").unwrap();
    assert_eq!(silenced["data"]["created_by"], "U_BOB");
    assert!(aws.calls().is_empty(), "{:?}", aws.calls());
}

#[tokio::test]
async fn commands_are_verified_before_they_are_read_and_help_is_for_anyone() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, _aws, _slack) = start(dir.path()).await;
    let body = command("U_ALICE", "declare region_outage region=sa-east-1 -- x");
    let now = chrono::Utc::now().timestamp();
    let (code, _) = post(
        &srv,
        COMMANDS,
        &body,
        now,
        &fake_slack::sign("wrong-secret", now, &body),
    )
    .await;
    assert_eq!(code, 401);
    assert!(srv.incidents().await.is_empty());

    let text = slash(&srv, "U_MALLORY", "help").await;
    assert!(
        text.contains("/dr declare") && text.contains("/dr silence"),
        "{text}"
    );
    let text = slash(&srv, "U_ALICE", "failover now").await;
    assert!(text.contains("unknown command \"failover\""), "{text}");
}
