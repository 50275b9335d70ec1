//! Incidents declared by hand, with live dispatch against the fake AWS:
//! the same plan, approval and SSM calls as a detected incident; unknown
//! scenarios and rules refused with what is known; one open incident per
//! key.

mod support;

use serde_json::{Value, json};
use support::approval::{
    self, ADMIN, events, failover_rule, fire, rule, rule_file, token_of, vote, wait_state,
};
use support::fake_aws::Op;
use support::*;

fn rules() -> String {
    rule_file(&[
        failover_rule(),
        rule(
            "drain",
            "ZoneDown",
            "{count: 1}",
            "{mode: one, groups: [leads], include_owners: false, timeout: 1h}",
            "",
            &[("drain the zone", "DR-Drain")],
        ),
    ])
}

async fn declare(srv: &Server, token: &str, body: &Value) -> (u16, Value) {
    let resp = srv
        .client
        .post(format!("{}/api/v1/incidents", srv.base))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test]
async fn a_declared_incident_is_planned_approved_and_run_like_a_detected_one() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, aws) = approval::start(dir.path(), &rules(), "100ms").await;

    // Through the CLI, as carol (her own token).
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_dr-reactor"))
        .args([
            "declare",
            "failover",
            "--label",
            "region=sa-east-1",
            "--reason",
            "AWS status page: sa-east-1 down",
            "--url",
            &srv.base,
        ])
        .env("DR_REACTOR_API_TOKEN", token_of("carol"))
        .env_remove("DR_REACTOR_ADMIN_TOKEN")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("declared (incident is awaiting_approval)"),
        "{stdout}"
    );
    let id = wait_state(&srv, "sa-east-1", "awaiting_approval").await;
    assert!(stdout.starts_with(&id), "{stdout}");
    let detail = srv.get(&format!("/api/v1/incidents/{id}")).await;
    let inc = &detail["incident"];
    assert_eq!(inc["rule"], "failover");
    assert_eq!(inc["group_key"], r#"failover{region="sa-east-1"}"#);
    let steps: Vec<&str> = inc["plan"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["promote the replica", "flip DNS"]);
    let log = events(&srv, &id).await;
    let first = &log[0];
    assert_eq!(
        (first["kind"].as_str(), first["actor"].as_str()),
        (Some("declared"), Some("carol"))
    );
    assert_eq!(
        first["reason"],
        "declared by carol for rule failover: AWS status page: sa-east-1 down"
    );
    // The fake knows none of these runbooks, which the plan says
    // (`runbook_not_ready`, covered by tests/readiness.rs).
    let kinds: Vec<&str> = log
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .filter(|k| *k != "runbook_not_ready")
        .collect();
    assert_eq!(
        kinds,
        ["declared", "planned", "admitted", "approval_requested"]
    );
    assert!(aws.calls().is_empty(), "nothing runs before approval");

    // Declared twice: 409 naming the open one.
    let body =
        json!({"scenario": "failover", "labels": {"region": "sa-east-1"}, "reason": "again"});
    let (code, answer) = declare(&srv, &token_of("bob"), &body).await;
    assert_eq!(code, 409, "{answer}");
    assert_eq!(answer["incident"], id.as_str());
    assert_eq!(answer["state"], "awaiting_approval");

    // An alert for the same region joins the declared incident.
    srv.post(&fire("RegionDown", "sa-east-1")).await;
    srv.wait_for("the alert attached", || async {
        events(&srv, &id)
            .await
            .iter()
            .any(|e| e["kind"] == "signals_attached")
    })
    .await;
    let open: Vec<Value> = srv
        .incidents()
        .await
        .into_iter()
        .filter(|i| i["group_labels"]["region"] == "sa-east-1")
        .collect();
    assert_eq!(open.len(), 1, "{open:?}");

    // Approved with a person's own token: the plan's SSM calls, once each.
    assert_eq!(vote(&srv, &id, "approve", "alice").await.0, 200);
    wait_state(&srv, "sa-east-1", "succeeded").await;
    let starts: Vec<(String, String, Option<String>)> = aws
        .calls_of(Op::StartAutomationExecution)
        .into_iter()
        .map(|c| (c.target, c.region, c.client_token))
        .collect();
    assert_eq!(
        starts,
        [
            (
                "DR-Promote".to_owned(),
                "ap-northeast-1".to_owned(),
                Some(dr_reactor::plan::idempotency_key(&id, 0))
            ),
            (
                "DR-Flip".to_owned(),
                "ap-northeast-1".to_owned(),
                Some(dr_reactor::plan::idempotency_key(&id, 1))
            ),
        ]
    );
    assert!(aws.calls_of(Op::StopAutomationExecution).is_empty());
    srv.stop().await;
}

#[tokio::test]
async fn unknown_scenarios_rules_missing_and_reserved_labels_are_refused_with_what_is_known() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, aws) = approval::start(dir.path(), &rules(), "100ms").await;

    let (code, body) = declare(
        &srv,
        ADMIN,
        &json!({"scenario": "meteor_strike", "labels": {"region": "x"}}),
    )
    .await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(body["reason"], "unknown_scenario");
    assert_eq!(body["known"], json!(["drain", "failover"]));
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("unknown scenario \"meteor_strike\"; known: drain, failover")
    );

    let (code, body) = declare(
        &srv,
        &token_of("bob"),
        &json!({"scenario": "failover", "rule": "drain", "labels": {"region": "x"}}),
    )
    .await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(body["reason"], "unknown_rule");
    assert_eq!(body["known"], json!(["failover"]));

    let (code, body) = declare(
        &srv,
        &token_of("bob"),
        &json!({"scenario": "failover", "labels": {"zone": "a"}}),
    )
    .await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(body["reason"], "missing_labels");
    assert_eq!(body["missing"], json!(["region"]));

    // The drill label is a drill's alone: a declaration with it would be a
    // real incident passed off as a drill, outside the drill's checks.
    let (code, body) = declare(
        &srv,
        &token_of("bob"),
        &json!({"scenario": "failover", "labels": {"region": "x", "__drill__": "true"}}),
    )
    .await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(body["reason"], "reserved_label");

    assert_eq!(
        declare(&srv, TOKEN, &json!({"scenario": "failover"}))
            .await
            .0,
        401,
        "not the webhook token"
    );
    assert_eq!(
        declare(&srv, "nobody", &json!({"scenario": "failover"}))
            .await
            .0,
        401
    );
    assert!(srv.incidents().await.is_empty(), "nothing was opened");
    assert!(aws.calls().is_empty());
    srv.stop().await;
}

/// A declared incident has no alert behind it: a restart (or a rebuilt
/// leader term) must not take it for evidence that resolved while
/// dr-reactor was down. It is still awaiting approval afterwards, and runs
/// when approved.
#[tokio::test]
async fn a_declared_incident_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, _aws) = approval::start(dir.path(), &rules(), "100ms").await;
    let body =
        json!({"scenario": "failover", "labels": {"region": "sa-east-1"}, "reason": "status page"});
    let (code, answer) = declare(&srv, &token_of("alice"), &body).await;
    assert_eq!(code, 201, "{answer}");
    let id = wait_state(&srv, "sa-east-1", "awaiting_approval").await;
    srv.stop().await;

    let (srv, aws) = approval::start(dir.path(), &rules(), "100ms").await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let inc = srv.get(&format!("/api/v1/incidents/{id}")).await["incident"].clone();
    assert_eq!(
        (inc["state"].as_str(), inc["closed_at"].is_null()),
        (Some("awaiting_approval"), true),
        "{inc}"
    );
    assert_eq!(vote(&srv, &id, "approve", "bob").await.0, 200);
    wait_state(&srv, "sa-east-1", "succeeded").await;
    assert_eq!(aws.calls_of(Op::StartAutomationExecution).len(), 2);
    // Ended, it is closed (no evidence group would ever close it), so the
    // same key can be declared again.
    let inc = srv.get(&format!("/api/v1/incidents/{id}")).await["incident"].clone();
    assert!(!inc["closed_at"].is_null(), "{inc}");
    let (code, answer) = declare(&srv, &token_of("alice"), &body).await;
    assert_eq!(code, 201, "{answer}");
    assert!(
        answer["id"].is_string() && answer["id"] != id.as_str(),
        "{answer}"
    );
    srv.stop().await;
}
