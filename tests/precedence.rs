//! Precedence with live dispatch against the fake AWS: a small scenario
//! never acts while the large one it belongs to is forming, whatever order
//! and grouping the alerts arrive in; absorbing something that is already
//! acting stops it; a plan follows the evidence until it is approved, and an
//! approval is for the exact plan it saw. Every test asserts which AWS calls
//! happened.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use support::fake_aws::{FakeAws, Op};
use support::*;

const ZONE: &str = "ap-northeast-2a";

/// The shipped rules and catalogue, dispatch live, holds of `hold`.
fn shipped(dir: &Path, fake: &FakeAws, hold: &str) -> String {
    config(
        dir,
        fake,
        &repo_path("rules").display().to_string(),
        &format!(
            "  catalogue: {}\n  default_hold: {hold}\n",
            repo_path("config/services.yaml").display()
        ),
    )
}

/// The fake AWS (with the zone plan's Lambda) and a server on the shipped
/// rules with holds of `hold`.
async fn start_shipped(dir: &Path, hold: &str) -> (FakeAws, Server) {
    let fake = FakeAws::start().await;
    fake.function_returns("dr-verify-multi-az-failover", json!({"ok": true}));
    let srv = Server::start_with_aws(dir, &shipped(dir, &fake, hold), fake.sdk_config()).await;
    (fake, srv)
}

fn config(dir: &Path, fake: &FakeAws, rules: &str, rules_extra: &str) -> String {
    format!(
        "listen: 127.0.0.1:0\nstore:\n  url: sqlite://{db}\n\
         rules:\n  paths: [{rules}]\n  evaluation_interval: 100ms\n  watch: false\n{rules_extra}\
         webhook:\n  auth:\n    bearer_token: {TOKEN}\napi:\n  admin_token: admin-secret\n\
         dispatch:\n  dry_run: false\n\
         approval:\n  directory:\n    sre-oncall: [alice]\n    leads: [alice, bob]\n\
         aws:\n  endpoint_url: {endpoint}\n  default_region: ap-northeast-1\n  poll_interval: 50ms\n  \
         retry: {{max_attempts: 5, initial_backoff: 10ms, max_backoff: 50ms}}\n",
        db = dir.join("db.sqlite").display(),
        endpoint = fake.endpoint(),
    )
}

async fn of_scenario(srv: &Server, scenario: &str) -> Vec<Value> {
    let mut v: Vec<Value> = srv
        .incidents()
        .await
        .into_iter()
        .filter(|i| i["scenario"] == scenario)
        .collect();
    v.sort_by_key(|i| i["detected_at"].as_str().unwrap_or_default().to_owned());
    v
}

async fn wait_scenario(srv: &Server, scenario: &str, state: &str) -> Value {
    srv.wait_for(&format!("{scenario} {state}"), || async {
        of_scenario(srv, scenario)
            .await
            .first()
            .is_some_and(|i| i["state"] == state)
    })
    .await;
    of_scenario(srv, scenario).await.remove(0)
}

async fn events(srv: &Server, id: &str) -> Vec<Value> {
    srv.get(&format!("/api/v1/incidents/{id}")).await["events"]
        .as_array()
        .unwrap()
        .clone()
}

async fn kinds(srv: &Server, id: &str) -> Vec<String> {
    events(srv, id)
        .await
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        // The fake knows none of the shipped runbooks, so every plan also
        // says so (tests/readiness.rs covers that); precedence is the rest.
        .filter(|k| k != "signals_attached" && k != "runbook_not_ready")
        .collect()
}

async fn vote(srv: &Server, id: &str, user: &str, digest: Option<&str>) -> (u16, Value) {
    let mut body = json!({ "as": user });
    if let Some(d) = digest {
        body["plan_digest"] = json!(d);
    }
    let resp = srv
        .client
        .post(format!("{}/api/v1/incidents/{id}/approve", srv.base))
        .bearer_auth("admin-secret")
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn documents(fake: &FakeAws) -> Vec<String> {
    fake.executions_started()
        .into_iter()
        .map(|e| e.document)
        .collect()
}

/// The services the zone plan's capacity steps ran for, in order.
fn shifted(fake: &FakeAws) -> Vec<String> {
    fake.executions_started()
        .iter()
        .filter(|e| e.document == "DR-ShiftZoneCapacity")
        .map(|e| {
            e.parameters["Service"][0]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

fn restarts(fake: &FakeAws) -> usize {
    documents(fake)
        .iter()
        .filter(|d| *d == "DR-RestartDeployment")
        .count()
}

/// The README quick start with dispatch live: three services fail in one
/// zone in one delivery. The zone incident is decided first; the services'
/// incidents open already absorbed, never held, never planned to act; the
/// one zone plan covers the three services in catalogue order, and nothing
/// restarts.
#[tokio::test]
async fn zone_in_one_delivery_opens_first_and_nothing_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, srv) = start_shipped(dir.path(), "60s").await;
    let body: Value =
        serde_json::from_slice(&std::fs::read(repo_path("examples/az-failure.json")).unwrap())
            .unwrap();
    srv.post(&body).await;
    let az = wait_scenario(&srv, "az_failure", "planned").await;
    srv.wait_for("the three service incidents", || async {
        let s = of_scenario(&srv, "service_failure").await;
        s.len() == 3 && s.iter().all(|i| i["state"] == "suppressed")
    })
    .await;
    let services = of_scenario(&srv, "service_failure").await;
    assert_eq!(services.len(), 3, "{services:?}");
    for s in &services {
        assert_eq!(s["state"], "suppressed", "{s}");
        assert_eq!(s["parent_id"], az["id"], "{s}");
        let k = kinds(&srv, s["id"].as_str().unwrap()).await;
        assert_eq!(k, ["detected", "absorbed"], "opened absorbed, never held");
    }
    assert_eq!(az["services"], json!(["auth", "order", "payment"]));
    // The zone incident itself waits: a region outage could absorb it.
    assert!(
        kinds(&srv, az["id"].as_str().unwrap())
            .await
            .contains(&"held".to_owned())
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        fake.calls().is_empty(),
        "nothing called: {:?}",
        fake.calls()
    );
    srv.stop().await;
}

/// Across deliveries: one service alerts, the zone's other two follow one
/// and two seconds later. The first service's incident is held, the zone
/// incident forms within the hold and absorbs it; after every hold has run
/// out, not one restart was called, and the zone plan (approved) covers
/// every affected service in catalogue order.
#[tokio::test]
async fn zone_across_deliveries_absorbs_held_services_and_plans_for_all() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, srv) = start_shipped(dir.path(), "3s").await;
    srv.post(&payload(vec![pod_alert("firing", "payment", ZONE)]))
        .await;
    let first = wait_scenario(&srv, "service_failure", "planned").await;
    let first_id = first["id"].as_str().unwrap().to_owned();
    srv.wait_for("held", || async {
        kinds(&srv, &first_id).await.contains(&"held".to_owned())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    srv.post(&payload(vec![pod_alert("firing", "order", ZONE)]))
        .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    srv.post(&payload(vec![pod_alert("firing", "auth", ZONE)]))
        .await;
    let az = wait_scenario(&srv, "az_failure", "planned").await;
    assert_eq!(az["services"], json!(["auth", "order", "payment"]));
    // Past every service hold, and past the zone's own (3 s): the zone asks
    // for approval, the services never act.
    let az = wait_scenario(&srv, "az_failure", "awaiting_approval").await;
    for s in of_scenario(&srv, "service_failure").await {
        assert_eq!(s["state"], "suppressed", "{s}");
        assert_eq!(s["parent_id"], az["id"], "{s}");
    }
    let k = kinds(&srv, &first_id).await;
    assert_eq!(k, ["detected", "planned", "held", "absorbed"], "{k:?}");
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());

    let (status, _) = vote(&srv, az["id"].as_str().unwrap(), "alice", None).await;
    assert_eq!(status, 200);
    wait_scenario(&srv, "az_failure", "succeeded").await;
    assert_eq!(restarts(&fake), 0, "{:?}", documents(&fake));
    assert_eq!(
        documents(&fake),
        [
            "DR-ShiftZoneCapacity",
            "DR-ShiftZoneCapacity",
            "DR-ShiftZoneCapacity",
            "DR-CordonAndDrainZone"
        ]
    );
    assert_eq!(shifted(&fake), ["auth", "order", "payment"]);
    assert_eq!(fake.calls_of(Op::Invoke).len(), 1, "the Multi-AZ check");
    srv.stop().await;
}

/// A true single-service failure still acts, once, when its hold runs out.
#[tokio::test]
async fn a_lone_service_failure_acts_once_after_its_hold() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, srv) = start_shipped(dir.path(), "1s").await;
    let posted = std::time::Instant::now();
    srv.post(&payload(vec![pod_alert("firing", "order", ZONE)]))
        .await;
    wait_scenario(&srv, "service_failure", "planned").await;
    assert!(fake.calls().is_empty());
    eventually("the restart", 10, || async { !fake.calls().is_empty() }).await;
    let to_action = posted.elapsed();
    // What the hold costs a real single-service failure: the hold, plus up
    // to one evaluation interval (100 ms here) for the tick that ends it.
    eprintln!("time from the alert to the first AWS call: {to_action:?} (hold 1s)");
    assert!(to_action >= Duration::from_secs(1), "not before the hold");
    let inc = wait_scenario(&srv, "service_failure", "succeeded").await;
    assert_eq!(documents(&fake), ["DR-RestartDeployment"]);
    let k = kinds(&srv, inc["id"].as_str().unwrap()).await;
    assert_eq!(
        &k[..6],
        [
            "detected",
            "planned",
            "held",
            "hold_ended",
            "admitted",
            "approved"
        ]
    );
    srv.stop().await;
}

/// Rules for the acting-child cases: a zone rule over two services that
/// absorbs service failures, and a service rule that acts at once (no hold)
/// with a two-step plan whose first step runs for a while.
fn acting_rules(child_approval: &str) -> String {
    format!(
        r#"rules:
  - name: zone
    match: {{labels: ['zone!=""', 'service!=""']}}
    correlate: {{group_by: [zone], window: 10m, when: {{distinct: {{service: 2}}}}}}
    scenario: az_failure
    absorbs: [service_failure]
    approval: {{mode: one, groups: [sre-oncall], include_owners: false}}
    plan:
      steps:
        - {{name: drain the zone, ssm: {{document: DR-DrainZone, region: ap-northeast-2}}}}
  - name: service
    match: {{labels: ['service!=""']}}
    correlate: {{group_by: [service], window: 10m, when: {{count: 1}}}}
    scenario: service_failure
    hold: 0s
    approval: {child_approval}
    plan:
      steps:
        - {{name: scale out, ssm: {{document: DR-ScaleOut, region: ap-northeast-2}}}}
        - {{name: restart, ssm: {{document: DR-Restart, region: ap-northeast-2}}}}
"#
    )
}

async fn start_acting(dir: &Path, fake: &FakeAws, child_approval: &str) -> Server {
    std::fs::create_dir(dir.join("rules")).unwrap();
    std::fs::write(dir.join("rules/r.yaml"), acting_rules(child_approval)).unwrap();
    let cfg = config(dir, fake, &dir.join("rules").display().to_string(), "");
    Server::start_with_aws(dir, &cfg, fake.sdk_config()).await
}

/// A running child absorbed by a zone incident stops before its next step:
/// the SSM execution already running is left to finish, the second step is
/// never started, and the parent's event log and message show why.
#[tokio::test]
async fn absorbing_a_running_child_stops_it_before_its_next_step() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeAws::start().await;
    fake.document_runs_for("DR-ScaleOut", 20);
    let srv = start_acting(dir.path(), &fake, "{mode: auto}").await;
    srv.post(&payload(vec![pod_alert("firing", "order", ZONE)]))
        .await;
    let child = wait_scenario(&srv, "service_failure", "running").await;
    let child_id = child["id"].as_str().unwrap().to_owned();
    eventually("step 1 started", 10, || async {
        documents(&fake).len() == 1
    })
    .await;

    srv.post(&payload(vec![pod_alert("firing", "payment", ZONE)]))
        .await;
    let zone = wait_scenario(&srv, "az_failure", "awaiting_approval").await;
    srv.wait_for("step 1 finished and the plan stopped", || async {
        kinds(&srv, &child_id)
            .await
            .contains(&"plan_stopped".to_owned())
    })
    .await;
    let child = srv.get(&format!("/api/v1/incidents/{child_id}")).await;
    assert_eq!(child["incident"]["state"], "suppressed", "{child}");
    assert_eq!(child["incident"]["parent_id"], zone["id"]);
    let k = kinds(&srv, &child_id).await;
    let absorbed = k.iter().position(|k| k == "absorbed").unwrap();
    let stopped = k.iter().position(|k| k == "plan_stopped").unwrap();
    assert!(
        k[absorbed..stopped].contains(&"step_succeeded".to_owned()),
        "{k:?}"
    );
    let why = events(&srv, &child_id)
        .await
        .into_iter()
        .find(|e| e["kind"] == "absorbed")
        .unwrap();
    assert!(
        why["reason"]
            .as_str()
            .unwrap()
            .contains("stopped before its next step"),
        "{why}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(documents(&fake), ["DR-ScaleOut"], "step 2 never started");
    assert_eq!(fake.calls_of(Op::StartAutomationExecution).len(), 1);
    srv.stop().await;
}

/// A child awaiting approval, absorbed: its approval is withdrawn, a vote
/// for it is refused, and nothing is called.
#[tokio::test]
async fn absorbing_a_child_awaiting_approval_withdraws_it() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeAws::start().await;
    let srv = start_acting(
        dir.path(),
        &fake,
        "{mode: one, groups: [sre-oncall], include_owners: false}",
    )
    .await;
    srv.post(&payload(vec![pod_alert("firing", "order", ZONE)]))
        .await;
    let child = wait_scenario(&srv, "service_failure", "awaiting_approval").await;
    let child_id = child["id"].as_str().unwrap().to_owned();
    srv.post(&payload(vec![pod_alert("firing", "payment", ZONE)]))
        .await;
    wait_scenario(&srv, "az_failure", "awaiting_approval").await;
    srv.wait_for("child suppressed", || async {
        srv.get(&format!("/api/v1/incidents/{child_id}")).await["incident"]["state"] == "suppressed"
    })
    .await;
    let (status, _) = vote(&srv, &child_id, "alice", None).await;
    assert_eq!(status, 409, "no approval for an absorbed incident");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
    srv.stop().await;
}

/// A fourth service of the zone alerts while the zone plan awaits approval:
/// the plan grows to cover it (plan_revised), a vote for the plan as it was
/// is refused, and the approved plan runs a step for the fourth service.
#[tokio::test]
async fn plan_grows_until_approval_and_votes_are_for_one_plan() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, srv) = start_shipped(dir.path(), "500ms").await;
    let body: Value =
        serde_json::from_slice(&std::fs::read(repo_path("examples/az-failure.json")).unwrap())
            .unwrap();
    srv.post(&body).await;
    let az = wait_scenario(&srv, "az_failure", "awaiting_approval").await;
    let id = az["id"].as_str().unwrap().to_owned();
    let shown = srv.get(&format!("/api/v1/incidents/{id}")).await;
    let old = shown["incident"]["plan"].clone();
    let old_digest = events(&srv, &id)
        .await
        .into_iter()
        .find(|e| e["kind"] == "planned")
        .unwrap()["data"]["plan_digest"]
        .as_str()
        .unwrap()
        .to_owned();

    srv.post(&payload(vec![pod_alert("firing", "notify", ZONE)]))
        .await;
    srv.wait_for("plan revised", || async {
        kinds(&srv, &id).await.contains(&"plan_revised".to_owned())
    })
    .await;
    let revised = events(&srv, &id)
        .await
        .into_iter()
        .find(|e| e["kind"] == "plan_revised")
        .unwrap();
    assert_eq!(revised["data"]["added_services"], json!(["notify"]));
    assert_eq!(revised["data"]["previous_digest"], json!(old_digest));
    let now = srv.get(&format!("/api/v1/incidents/{id}")).await["incident"].clone();
    assert_ne!(now["plan"], old);
    assert_eq!(
        now["services"],
        json!(["auth", "order", "payment", "notify"])
    );

    let (status, body) = vote(&srv, &id, "alice", Some(&old_digest[..12])).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.to_string().contains("plan changed"), "{body}");
    assert!(fake.calls().is_empty());

    let new_digest = revised["data"]["plan_digest"].as_str().unwrap();
    let (status, body) = vote(&srv, &id, "alice", Some(&new_digest[..12])).await;
    assert_eq!(status, 200, "{body}");
    wait_scenario(&srv, "az_failure", "succeeded").await;
    assert_eq!(shifted(&fake), ["auth", "order", "payment", "notify"]);
    assert_eq!(restarts(&fake), 0);
    srv.stop().await;
}

/// A hold survives a restart: the deadline is in the store, the restarted
/// service neither forgets it (acting at once) nor drops the incident, and
/// the restart runs once when it ends.
#[tokio::test]
async fn a_hold_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeAws::start().await;
    let cfg = shipped(dir.path(), &fake, "3s");
    let srv = Server::start_with_aws(dir.path(), &cfg, fake.sdk_config()).await;
    let posted = std::time::Instant::now();
    srv.post(&payload(vec![pod_alert("firing", "order", ZONE)]))
        .await;
    let inc = wait_scenario(&srv, "service_failure", "planned").await;
    let id = inc["id"].as_str().unwrap().to_owned();
    srv.wait_for("held", || async {
        kinds(&srv, &id).await.contains(&"held".to_owned())
    })
    .await;
    srv.stop().await;

    let srv = Server::start_with_aws(dir.path(), &cfg, fake.sdk_config()).await;
    let now = srv.get(&format!("/api/v1/incidents/{id}")).await["incident"]["state"].clone();
    if posted.elapsed() < Duration::from_millis(2500) {
        assert_eq!(now, "planned", "still held after the restart");
        assert!(fake.calls().is_empty());
    }
    wait_scenario(&srv, "service_failure", "succeeded").await;
    assert!(
        posted.elapsed() >= Duration::from_secs(3),
        "not before the hold"
    );
    assert_eq!(documents(&fake), ["DR-RestartDeployment"]);
    let k = kinds(&srv, &id).await;
    assert_eq!(k.iter().filter(|k| *k == "hold_ended").count(), 1, "{k:?}");
    srv.stop().await;
}

/// A zone incident that is denied ends without acting: the service
/// incidents it absorbed, whose alerts still fire, are released and act on
/// their own (the restart runs for each), and nothing of the zone plan is
/// called.
#[tokio::test]
async fn a_denied_parent_releases_what_it_absorbed() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, srv) = start_shipped(dir.path(), "500ms").await;
    let services = ["auth", "order", "payment"];
    srv.post(&payload(
        services
            .iter()
            .map(|s| pod_alert("firing", s, ZONE))
            .collect(),
    ))
    .await;
    let zone = wait_scenario(&srv, "az_failure", "awaiting_approval").await;
    assert_eq!(of_scenario(&srv, "service_failure").await.len(), 3);
    let resp = srv
        .client
        .post(format!(
            "{}/api/v1/incidents/{}/deny",
            srv.base,
            zone["id"].as_str().unwrap()
        ))
        .bearer_auth("admin-secret")
        .json(&json!({"as": "alice", "reason": "not a zone failure"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    srv.wait_for("every service restarted", || async {
        documents(&fake).len() == 3
    })
    .await;
    let mut restarted: Vec<String> = fake
        .executions_started()
        .iter()
        .map(|e| {
            assert_eq!(e.document, "DR-RestartDeployment");
            e.parameters["Service"][0].as_str().unwrap().to_owned()
        })
        .collect();
    restarted.sort();
    assert_eq!(restarted, services);
    for s in of_scenario(&srv, "service_failure").await {
        let log = kinds(&srv, s["id"].as_str().unwrap()).await;
        assert!(log.contains(&"released".to_owned()), "{log:?}");
        assert!(s["parent_id"].is_null(), "{s}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(documents(&fake).len(), 3, "nothing of the zone plan ran");
    srv.stop().await;
}
