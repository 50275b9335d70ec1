//! Who may do what, with live dispatch against the fake AWS: every row of
//! the action × role table in docs/security.md is allowed or refused as
//! documented, and a refusal calls no AWS API; a declarer cannot approve
//! alone; hostile ids are a 400 naming the parameter on both backends.

mod support;

use std::path::Path;

use serde_json::{Value, json};
use support::approval::{ADMIN, events, fire, rule, rule_file, token_of, vote};
use support::fake_aws::{FakeAws, Op};
use support::*;

/// A failover (RegionDown, steps in ap-northeast-1, so from any other
/// region it fails over; one lead approves) and an automatic restart that
/// stays in its region.
fn rules() -> String {
    let mut r = rule_file(&[rule(
        "failover",
        "RegionDown",
        "{count: 1}",
        "{mode: one, groups: [leads], include_owners: false, timeout: 1h}",
        "",
        &[("promote", "DR-Promote")],
    )]);
    r.push_str(
        "  - name: restart\n    match: {labels: ['alertname=\"Crash\"']}\n    \
         correlate: {group_by: [region, service], window: 1h, when: {count: 1}}\n    scenario: restart\n    \
         approval: {mode: auto}\n    plan:\n      steps:\n        \
         - {name: restart, ssm: {document: DR-Restart, region: \"{{ labels.region }}\"}}\n",
    );
    r
}

async fn start(dir: &Path, db: &str) -> (Server, FakeAws) {
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    std::fs::write(dir.join("rules/r.yaml"), rules()).unwrap();
    let fake = FakeAws::start().await;
    let user = |id: &str, roles: &str| {
        format!(
            "    - {{id: {id}, token: {}, roles: [{roles}]}}\n",
            token_of(id)
        )
    };
    let users = [
        user("alice", ""),
        user("bob", ""),
        user("mallory", ""),
        user("oscar", "operator"),
        user("root", "admin"),
    ]
    .concat();
    let cfg = format!(
        "listen: 127.0.0.1:0\nstore:\n  url: {db}\nrules:\n  paths: [{rules}]\n  evaluation_interval: 100ms\n  watch: false\n\
         webhook:\n  auth:\n    bearer_token: {TOKEN}\napi:\n  admin_token: {ADMIN}\n  users:\n{users}dispatch:\n  dry_run: false\n\
         approval:\n  directory:\n    leads: [alice, bob]\n\
         aws:\n  endpoint_url: {endpoint}\n  default_region: ap-northeast-1\n  poll_interval: 50ms\n",
        rules = dir.join("rules").display(),
        endpoint = fake.endpoint(),
    );
    (
        Server::start_with_aws(dir, &cfg, fake.sdk_config()).await,
        fake,
    )
}

async fn call(
    srv: &Server,
    method: reqwest::Method,
    path: &str,
    who: &str,
    body: Value,
) -> (u16, Value) {
    let resp = srv
        .client
        .request(method, format!("{}{path}", srv.base))
        .bearer_auth(token_of(who))
        .json(&body)
        .send()
        .await
        .unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

async fn post(srv: &Server, path: &str, who: &str, body: Value) -> (u16, Value) {
    call(srv, reqwest::Method::POST, path, who, body).await
}

fn declaration(scenario: &str, region: &str) -> Value {
    let mut labels = json!({ "region": region });
    if scenario == "restart" {
        labels["service"] = json!("auth");
    }
    json!({ "scenario": scenario, "labels": labels, "reason": "seen on the dashboards" })
}

fn refused(answer: &(u16, Value), needs: &str) {
    assert_eq!(answer.0, 403, "{answer:?}");
    let text = answer.1["error"].as_str().unwrap_or_default();
    assert!(
        text.contains(needs),
        "expected a refusal naming {needs:?}: {text}"
    );
}

fn starts(fake: &FakeAws) -> usize {
    fake.calls_of(Op::StartAutomationExecution).len()
}

async fn incident_id(srv: &Server, scenario: &str, state: &str) -> String {
    let find = || async {
        srv.incidents()
            .await
            .into_iter()
            .find(|i| i["scenario"] == scenario && i["state"] == state)
            .map(|i| i["id"].as_str().unwrap().to_owned())
    };
    srv.wait_for(&format!("{scenario} {state}"), || async {
        find().await.is_some()
    })
    .await;
    find().await.unwrap()
}

#[tokio::test]
async fn every_action_is_allowed_or_refused_by_role_with_the_aws_calls_that_follow() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("db.sqlite").display());
    let (srv, fake) = start(dir.path(), &db).await;

    // declare: the operator role.
    refused(
        &post(
            &srv,
            "/api/v1/incidents",
            "mallory",
            declaration("restart", "ap-northeast-2"),
        )
        .await,
        "the operator role",
    );
    assert_eq!(starts(&fake), 0, "a refused declaration runs nothing");
    assert_eq!(
        post(
            &srv,
            "/api/v1/incidents",
            "oscar",
            declaration("restart", "ap-northeast-2")
        )
        .await
        .0,
        201
    );
    srv.wait_for("the restart ran", || async { starts(&fake) == 1 })
        .await;

    // silence: a rule that fails over needs an approver of its groups; one
    // that stays in its region, an operator.
    let failover_silence = json!({"matchers": ["region=\"ap-northeast-3\""], "duration": "1h", "comment": "maintenance"});
    refused(
        &post(
            &srv,
            "/api/v1/silences",
            "mallory",
            failover_silence.clone(),
        )
        .await,
        "an approver of leads",
    );
    refused(
        &post(&srv, "/api/v1/silences", "oscar", failover_silence.clone()).await,
        "an approver of leads",
    );
    let long = json!({"matchers": ["region=\"ap-northeast-3\""], "duration": "12h", "comment": "maintenance"});
    assert_eq!(
        post(&srv, "/api/v1/silences", "alice", long).await.0,
        400,
        "at most 4h"
    );
    assert_eq!(
        post(&srv, "/api/v1/silences", "alice", failover_silence)
            .await
            .0,
        201
    );
    let restart_silence =
        json!({"matchers": ["service=\"order\""], "duration": "1h", "comment": "deploy"});
    assert_eq!(
        post(&srv, "/api/v1/silences", "oscar", restart_silence)
            .await
            .0,
        201
    );

    // retry of a failed failover: an approver of its rule's groups.
    fake.document_fails("DR-Promote", "replica lag too high");
    srv.post(&fire("RegionDown", "ap-northeast-2")).await;
    let id = incident_id(&srv, "failover", "awaiting_approval").await;
    assert_eq!(vote(&srv, &id, "approve", "alice").await.0, 200);
    incident_id(&srv, "failover", "failed").await;
    let before = starts(&fake);
    let retry = format!("/api/v1/incidents/{id}/retry");
    refused(
        &post(&srv, &retry, "mallory", json!({})).await,
        "an approver of leads",
    );
    refused(
        &post(&srv, &retry, "oscar", json!({})).await,
        "an approver of leads",
    );
    assert_eq!(starts(&fake), before, "a refused retry starts nothing");
    // alice retried it: she may not approve... nothing to approve here;
    // the retry itself is hers to make.
    fake.document_succeeds("DR-Promote");
    assert_eq!(
        post(&srv, &retry, "alice", json!({"reason": "lag is back"}))
            .await
            .0,
        200
    );
    srv.wait_for("the retried step ran", || async {
        starts(&fake) == before + 1
    })
    .await;

    // abort: the operator role; a refusal stops nothing.
    fake.document_runs_for("DR-Restart", 1000);
    srv.post(&fire("Crash", "ap-northeast-2")).await;
    let crash = {
        srv.wait_for("a running restart", || async {
            srv.incidents()
                .await
                .iter()
                .any(|i| i["scenario"] == "restart" && i["state"] == "running")
        })
        .await;
        incident_id(&srv, "restart", "running").await
    };
    let abort = format!("/api/v1/incidents/{crash}/abort");
    refused(
        &post(&srv, &abort, "mallory", json!({})).await,
        "the operator role",
    );
    assert!(fake.calls_of(Op::StopAutomationExecution).is_empty());
    assert_eq!(post(&srv, &abort, "oscar", json!({})).await.0, 200);
    srv.wait_for("the step was stopped", || async {
        fake.calls_of(Op::StopAutomationExecution).len() == 1
    })
    .await;

    // reload and the kill switch: admin.
    refused(
        &post(&srv, "/-/reload", "oscar", json!({})).await,
        "the admin role",
    );
    assert_eq!(post(&srv, "/-/reload", "root", json!({})).await.0, 200);
    let switch = json!({"engaged": true, "reason": "drill"});
    refused(
        &call(
            &srv,
            reqwest::Method::PUT,
            "/api/v1/kill-switch",
            "alice",
            switch.clone(),
        )
        .await,
        "the admin role",
    );
    assert_eq!(
        call(
            &srv,
            reqwest::Method::PUT,
            "/api/v1/kill-switch",
            "root",
            switch
        )
        .await
        .0,
        200
    );
    let refusals = srv
        .metric("dr_reactor_access_refused_total{action=\"retry\"}")
        .await;
    assert_eq!(refusals, 2.0);
    srv.stop().await;
}

#[tokio::test]
async fn a_declarer_cannot_approve_alone() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("db.sqlite").display());
    let (srv, fake) = start(dir.path(), &db).await;
    assert_eq!(
        post(
            &srv,
            "/api/v1/incidents",
            "alice",
            declaration("failover", "ap-northeast-2")
        )
        .await
        .0,
        201
    );
    let id = incident_id(&srv, "failover", "awaiting_approval").await;
    let (code, body) = vote(&srv, &id, "approve", "alice").await;
    assert_ne!(code, 200, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("declared this incident"),
        "{body}"
    );
    // Break-glass naming the declarer is the declarer all the same.
    let resp = srv
        .client
        .post(format!("{}/api/v1/incidents/{id}/approve", srv.base))
        .bearer_auth(ADMIN)
        .json(&json!({"as": "alice"}))
        .send()
        .await
        .unwrap();
    assert_ne!(resp.status(), 200);
    assert_eq!(starts(&fake), 0);
    assert!(
        events(&srv, &id)
            .await
            .iter()
            .any(|e| e["kind"] == "vote_refused")
    );
    assert_eq!(vote(&srv, &id, "approve", "bob").await.0, 200);
    srv.wait_for("someone else's approval runs it", || async {
        starts(&fake) == 1
    })
    .await;
    srv.stop().await;
}

/// The same hostile values on SQLite and PostgreSQL: a 400 naming the
/// parameter, never the store's error, never a 503.
#[tokio::test]
async fn hostile_ids_are_refused_at_the_edge_on_both_backends() {
    for backend in ["sqlite", "postgres"] {
        let dir = tempfile::tempdir().unwrap();
        let db = match backend {
            "sqlite" => format!("sqlite://{}", dir.path().join("db.sqlite").display()),
            _ => postgres_database().await,
        };
        let (srv, _fake) = start(dir.path(), &db).await;
        for (path, param) in [
            ("/api/v1/incidents/ab%00cd", "id"),
            ("/api/v1/incidents/ab%00cd/report", "id"),
            ("/api/v1/incidents?scenario=zone%00", "scenario"),
            ("/api/v1/incidents?cursor=%00", "cursor"),
        ] {
            let (code, body) = srv.get_any(path).await;
            assert_eq!(code, 400, "{backend} GET {path}: {body}");
            assert!(
                body["error"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("parameter {param}:")),
                "{body}"
            );
        }
        let (code, body) = post(&srv, "/api/v1/incidents/x%00y/abort", "oscar", json!({})).await;
        assert_eq!(code, 400, "{backend}: {body}");
        let (code, body) = call(
            &srv,
            reqwest::Method::DELETE,
            "/api/v1/silences/x%00y",
            "oscar",
            json!({}),
        )
        .await;
        assert_eq!(code, 400, "{backend}: {body}");
        srv.stop().await;
    }
}
