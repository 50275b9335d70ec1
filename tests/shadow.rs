//! Shadow mode tells the truth: over the same input, the events a shadow
//! run records name exactly the approval and the holds a live run (dry-run
//! off, against the fake AWS) meets, and shadow calls no AWS API.

mod support;

use std::path::Path;

use serde_json::Value;
use support::approval::{self, api_users, events, fire, vote};
use support::fake_aws::{FakeAws, Op};
use support::*;

/// A region failover into ap-northeast-1 that two leads approve; a zone
/// failure (a larger scenario: it absorbs service failures, and a region
/// outage absorbs it) that one lead approves.
const RULES: &str = r#"rules:
  - name: region
    match: {labels: ['alertname="RegionDown"']}
    correlate: {group_by: [region], window: 1h, when: {count: 1}}
    scenario: region_outage
    absorbs: [az_failure]
    approval: {mode: two, groups: [leads], include_owners: false, timeout: 1h, on_timeout: escalate, escalate_to: [cto]}
    plan:
      steps:
        - {name: fail over, ssm: {document: DR-Failover, region: ap-northeast-1}}
  - name: zone
    match: {labels: ['alertname="ZoneDown"']}
    correlate: {group_by: [region, zone], window: 1h, when: {count: 1}}
    scenario: az_failure
    absorbs: [service_failure]
    hold: 0s
    approval: {mode: one, groups: [leads], include_owners: false}
    plan:
      steps:
        - {name: drain, ssm: {document: DR-Drain, region: "{{ labels.region }}"}}
  - name: service
    match: {labels: ['alertname="Crash"']}
    correlate: {group_by: [region, service], window: 1h, when: {count: 1}}
    scenario: service_failure
    approval: {mode: auto}
    plan:
      steps:
        - {name: restart, ssm: {document: DR-Restart, region: "{{ labels.region }}"}}
"#;

async fn start(dir: &Path, fake: &FakeAws, dry_run: bool) -> Server {
    std::fs::create_dir(dir.join("rules")).unwrap();
    std::fs::write(dir.join("rules/r.yaml"), RULES).unwrap();
    let cfg = format!(
        "listen: 127.0.0.1:0\nstore:\n  url: sqlite://{db}\nrules:\n  paths: [{rules}]\n  evaluation_interval: 100ms\n  watch: false\n\
         webhook:\n  auth:\n    bearer_token: {TOKEN}\napi:\n  admin_token: {admin}\n  users:\n{users}dispatch:\n  dry_run: {dry_run}\n\
         approval:\n  directory:\n    leads: [alice, bob]\n    cto: [dana]\n\
         aws:\n  endpoint_url: {endpoint}\n  default_region: ap-northeast-1\n  poll_interval: 50ms\n",
        db = dir.join("db.sqlite").display(),
        rules = dir.join("rules").display(),
        admin = approval::ADMIN,
        users = api_users(&["alice", "bob"]),
        endpoint = fake.endpoint(),
    );
    Server::start_with_aws(dir, &cfg, fake.sdk_config()).await
}

async fn region_incident(srv: &Server) -> Option<Value> {
    srv.incidents()
        .await
        .into_iter()
        .find(|i| i["scenario"] == "region_outage")
}

/// What one run met: the approval asked (needed, groups, escalation) and
/// the limits that held the plan, in order.
#[derive(Debug, PartialEq)]
struct Met {
    needed: Value,
    groups: Value,
    escalate_to: Value,
    holds: Vec<String>,
}

fn met(log: &[Value], asked: &str, held: &str) -> Met {
    let request = log.iter().find(|e| e["kind"] == asked).expect(asked);
    Met {
        needed: request["data"]["needed"].clone(),
        groups: request["data"]["groups"].clone(),
        escalate_to: request["data"]["escalate_to"].clone(),
        holds: log
            .iter()
            .filter(|e| e["kind"] == held)
            .map(|e| e["data"]["limit"].as_str().unwrap().to_owned())
            .collect(),
    }
}

/// The DR region has its own zone failure open; then the primary region
/// fails. Returns the region incident's log once it is in `settled` (live:
/// awaiting approval, so the votes find it there; shadow: suppressed).
async fn scenario(srv: &Server, settled: &str) -> Vec<Value> {
    srv.post(&payload(vec![alert(
        "firing",
        &[
            ("alertname", "ZoneDown"),
            ("region", "ap-northeast-1"),
            ("zone", "ap-northeast-1a"),
        ],
    )]))
    .await;
    srv.wait_for("the DR region's zone incident", || async {
        srv.incidents()
            .await
            .iter()
            .any(|i| i["scenario"] == "az_failure")
    })
    .await;
    srv.post(&fire("RegionDown", "ap-northeast-2")).await;
    srv.wait_for(&format!("the region incident {settled}"), || async {
        region_incident(srv)
            .await
            .is_some_and(|i| i["state"] == settled)
    })
    .await;
    let id = region_incident(srv).await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    events(srv, &id).await
}

#[tokio::test]
async fn shadow_events_name_the_approval_and_holds_the_live_run_meets() {
    // Live: two leads approve, then the DR target check holds the plan.
    let live_dir = tempfile::tempdir().unwrap();
    let live_fake = FakeAws::start().await;
    let live = start(live_dir.path(), &live_fake, false).await;
    let log = scenario(&live, "awaiting_approval").await;
    let id = log[0]["incident_id"].as_str().unwrap().to_owned();
    assert_eq!(vote(&live, &id, "approve", "alice").await.0, 200);
    assert_eq!(vote(&live, &id, "approve", "bob").await.0, 200);
    live.wait_for("the live plan waits", || async {
        events(&live, &id)
            .await
            .iter()
            .any(|e| e["kind"] == "plan_waiting")
    })
    .await;
    let live_met = met(
        &events(&live, &id).await,
        "approval_requested",
        "plan_waiting",
    );
    assert!(live_fake.calls_of(Op::StartAutomationExecution).is_empty());
    live.stop().await;

    // Shadow, the same input: nobody votes, and it says what live met.
    let shadow_dir = tempfile::tempdir().unwrap();
    let shadow_fake = FakeAws::start().await;
    let shadow = start(shadow_dir.path(), &shadow_fake, true).await;
    let log = scenario(&shadow, "suppressed").await;
    let shadow_met = met(&log, "shadow_approval", "shadow_held");

    assert_eq!(shadow_met, live_met);
    assert_eq!(live_met.holds, ["dr_target"]);
    assert_eq!(live_met.needed, 2);
    let held = log.iter().find(|e| e["kind"] == "shadow_held").unwrap();
    assert!(
        held["reason"]
            .as_str()
            .unwrap()
            .starts_with("would be held: DR target region ap-northeast-1 is not healthy"),
        "{held}"
    );
    let asked = log.iter().find(|e| e["kind"] == "shadow_approval").unwrap();
    assert!(
        asked["reason"]
            .as_str()
            .unwrap()
            .starts_with("would wait for 2 approval(s) from leads until"),
        "{asked}"
    );
    assert!(
        asked["reason"]
            .as_str()
            .unwrap()
            .ends_with("then escalate to cto")
    );
    assert!(
        shadow_fake
            .calls()
            .iter()
            .all(|c| !matches!(c.op, Op::StartAutomationExecution | Op::Invoke)),
        "shadow calls no runbook: {:?}",
        shadow_fake.calls()
    );
    shadow.stop().await;
}
