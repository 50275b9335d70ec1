//! Failback with live dispatch against the fake AWS: after a region
//! failover succeeds its failback is prepared (the failover's failback
//! runbooks, in reverse order), waits while the failed region is unhealthy,
//! is offered for approval once the region has been healthy for
//! `failback.healthy_for`, and runs only when approved: never by itself,
//! not even after a failover the rule approved automatically. The exact AWS
//! calls are asserted at each stage.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;
use support::approval::{events, start_with_catalogue, vote, wait_event};
use support::fake_aws::{FakeAws, Op};
use support::*;

const SEOUL: &str = "ap-northeast-2";
const TOKYO: &str = "ap-northeast-1";
const ZONE: &str = "ap-northeast-2a";

const RULES: &str = r#"rules:
  - name: heartbeat
    match: {labels: ['alertname="Watchdog"', 'region!=""']}
    correlate: {group_by: [region], window: 1h, when: {absent: {for: 1s, alert: Watchdog}}}
    scenario: region_outage
    absorbs: [az_failure]
    approval: {mode: two, groups: [leads], include_owners: false, timeout: 1h}
    plan:
      from_catalogue: true
      services: all
      steps:
        - {name: flip DNS, ssm: {document: DR-Route53Failover, region: "{{ dr_region }}"}}
  - name: zone
    match: {labels: ['alertname="ZoneServiceDown"', 'zone!=""', 'service!=""']}
    correlate: {group_by: [region, zone], window: 1h, when: {distinct: {service: 2}}}
    scenario: az_failure
    approval: {mode: auto}
    plan: {from_catalogue: true}
"#;

/// `db` first, then `api` (which depends on it); each runbook names the
/// one that undoes it.
const CATALOGUE: &str = r#"regions:
  ap-northeast-2: {dr_region: ap-northeast-1}
runbooks:
  promote:
    lambda: {function: dr-promote, region: "{{ dr_region }}", payload: {service: "{{ service.name }}"}}
    failback: fail-back-db
  fail-back-db:
    ssm: {document: DR-FailbackDatastore, region: "{{ labels.region }}", parameters: {Service: "{{ service.name }}", FromRegion: "{{ dr_region }}"}}
  scale-standby:
    ssm: {document: DR-ScaleStandby, region: "{{ dr_region }}", parameters: {Service: "{{ service.name }}"}}
    failback: scale-primary
  scale-primary:
    ssm: {document: DR-ScalePrimary, region: "{{ labels.region }}", parameters: {Service: "{{ service.name }}"}}
  shift:
    ssm: {document: DR-ShiftZoneCapacity, region: "{{ labels.region }}", parameters: {Service: "{{ service.name }}", Zone: "{{ labels.zone }}"}}
    failback: rebalance
  rebalance:
    ssm: {document: DR-RebalanceZone, region: "{{ labels.region }}", parameters: {Service: "{{ service.name }}", Zone: "{{ labels.zone }}"}}
services:
  db: {rto: 30m, runbooks: {region_outage: promote, az_failure: shift}}
  api: {rto: 15m, depends_on: [db], runbooks: {region_outage: scale-standby, az_failure: shift}}
"#;

async fn start(dir: &Path, failback: &str) -> (Server, FakeAws) {
    start_with_catalogue(dir, RULES, CATALOGUE, failback).await
}

/// Waits for the incident of `scenario` in `state`; returns it. On a
/// timeout, fails with every incident and its events.
async fn wait_incident(srv: &Server, scenario: &str, state: &str) -> Value {
    let find = || async {
        srv.incidents()
            .await
            .into_iter()
            .find(|i| i["scenario"] == scenario && i["state"] == state)
    };
    for _ in 0..250 {
        if let Some(found) = find().await {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let mut detail = Vec::new();
    for i in srv.incidents().await {
        let id = i["id"].as_str().unwrap();
        detail.push(srv.get(&format!("/api/v1/incidents/{id}")).await);
    }
    panic!("timed out waiting for {scenario} {state}: {detail:#?}");
}

/// The started SSM documents and invoked functions, with their regions, in
/// the order they were called.
fn started(fake: &FakeAws) -> Vec<(String, String)> {
    fake.calls()
        .into_iter()
        .filter(|c| matches!(c.op, Op::StartAutomationExecution | Op::Invoke))
        .map(|c| (c.target, c.region))
        .collect()
}

fn call(target: &str, region: &str) -> (String, String) {
    (target.to_owned(), region.to_owned())
}

/// Sends the region's Watchdog every 200 ms while `beating` is set.
fn heartbeat(srv: &Server, beating: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    let base = srv.base.clone();
    let client = srv.client.clone();
    tokio::spawn(async move {
        loop {
            if beating.load(Ordering::Relaxed) {
                let body = payload(vec![alert(
                    "firing",
                    &[("alertname", "Watchdog"), ("region", SEOUL)],
                )]);
                post_alerts(&client, &base, &body).await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

fn kinds(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["kind"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn the_failback_is_offered_after_a_region_failover_and_runs_only_when_approved() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, fake) = start(
        dir.path(),
        "failback:\n  healthy_for: 2s\n  heartbeat: Watchdog\n  heartbeat_timeout: 1s\n",
    )
    .await;
    fake.function_returns("dr-promote", serde_json::json!({"promoted": true}));
    let beating = Arc::new(AtomicBool::new(false));
    let beats = heartbeat(&srv, Arc::clone(&beating));

    // One beat, then silence: the region is gone.
    srv.post(&payload(vec![alert(
        "firing",
        &[("alertname", "Watchdog"), ("region", SEOUL)],
    )]))
    .await;
    let failover = wait_incident(&srv, "region_outage", "awaiting_approval").await;
    let id = failover["id"].as_str().unwrap().to_owned();
    let failbacks: Vec<Option<&str>> = failover["plan"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["failback"].as_str())
        .collect();
    assert_eq!(
        failbacks,
        [Some("fail-back-db"), Some("scale-primary"), None],
        "the approver sees what undoes each step"
    );
    assert_eq!(vote(&srv, &id, "approve", "alice").await.0, 200);
    assert_eq!(vote(&srv, &id, "approve", "bob").await.0, 200);
    wait_incident(&srv, "region_outage", "succeeded").await;
    let failover_calls = vec![
        call("dr-promote", TOKYO),
        call("DR-ScaleStandby", TOKYO),
        call("DR-Route53Failover", TOKYO),
    ];
    assert_eq!(started(&fake), failover_calls);

    // Prepared at once, the failover's steps undone last first; waiting
    // while the heartbeat is silent.
    let failback = wait_incident(&srv, "failback", "planned").await;
    let fid = failback["id"].as_str().unwrap().to_owned();
    assert_eq!(failback["failback_of"], id.as_str());
    assert_eq!(failback["group_labels"]["region"], SEOUL);
    let steps: Vec<(&str, &str, &str)> = failback["plan"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["service"].as_str().unwrap(),
                s["action"]["document"].as_str().unwrap(),
                s["action"]["region"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("api", "DR-ScalePrimary", SEOUL),
            ("db", "DR-FailbackDatastore", SEOUL)
        ]
    );
    assert_eq!(
        failback["plan"]["steps"][1]["action"]["parameters"]["FromRegion"][0], TOKYO,
        "templates see the failover's labels and DR region"
    );
    wait_event(&srv, &fid, "failback_waiting").await;
    assert!(
        kinds(&events(&srv, &id).await).contains(&"failback_prepared"),
        "the failover's timeline links its failback"
    );
    let (code, body) = vote(&srv, &fid, "approve", "alice").await;
    assert_eq!(code, 409, "not offered yet: {body}");
    // The console links the two both ways.
    for (page, link) in [(&id, &fid), (&fid, &id)] {
        let html = srv.page(&format!("/incidents/{page}")).await;
        assert!(
            html.contains(&format!("href=\"/incidents/{link}\"")),
            "{html}"
        );
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        srv.get(&format!("/api/v1/incidents/{fid}")).await["incident"]["state"],
        "planned",
        "the region is still silent"
    );
    assert_eq!(started(&fake), failover_calls, "nothing ran");

    // The region is back: healthy for 2 s, then offered (not run).
    beating.store(true, Ordering::Relaxed);
    wait_event(&srv, &fid, "failback_healthy").await;
    let offered = wait_incident(&srv, "failback", "awaiting_approval").await;
    assert_eq!(offered["id"], fid.as_str());
    let fevents = events(&srv, &fid).await;
    let request = fevents
        .iter()
        .find(|e| e["kind"] == "approval_requested")
        .unwrap();
    assert_eq!(
        request["data"]["needed"], 2,
        "as the failover's approval: two people"
    );
    let healthy = fevents
        .iter()
        .rfind(|e| e["kind"] == "failback_healthy")
        .unwrap();
    let gap = chrono::DateTime::parse_from_rfc3339(request["at"].as_str().unwrap()).unwrap()
        - chrono::DateTime::parse_from_rfc3339(healthy["at"].as_str().unwrap()).unwrap();
    assert!(gap >= chrono::Duration::seconds(2), "offered after {gap}");
    assert_eq!(started(&fake), failover_calls, "offered is not run");

    // Silent again: votes are refused until it is back.
    beating.store(false, Ordering::Relaxed);
    wait_event(&srv, &fid, "approval_paused").await;
    let (code, body) = vote(&srv, &fid, "approve", "alice").await;
    assert_eq!(code, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("the failed region is not healthy"),
        "{body}"
    );
    beating.store(true, Ordering::Relaxed);
    wait_event(&srv, &fid, "approval_resumed").await;
    assert_eq!(vote(&srv, &fid, "approve", "alice").await.0, 200);
    assert_eq!(started(&fake), failover_calls, "one of two approvals");
    assert_eq!(vote(&srv, &fid, "approve", "bob").await.0, 200);
    wait_incident(&srv, "failback", "succeeded").await;
    let mut all = failover_calls.clone();
    all.extend([
        call("DR-ScalePrimary", SEOUL),
        call("DR-FailbackDatastore", SEOUL),
    ]);
    assert_eq!(
        started(&fake),
        all,
        "the failback's steps, once each, in order"
    );

    // A failback has no failback of its own, and the failover no second one.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let failbacks: Vec<Value> = srv
        .incidents()
        .await
        .into_iter()
        .filter(|i| i["scenario"] == "failback")
        .collect();
    assert_eq!(failbacks.len(), 1);
    assert!(!failbacks[0]["closed_at"].is_null(), "closed when it ended");
    assert_eq!(
        srv.metric(r#"dr_reactor_failbacks_total{stage="offered"}"#)
            .await,
        1.0
    );
    beats.abort();
    srv.stop().await;
}

/// The zone rule approves automatically; its failback still waits for a
/// person (`failback.approvers`), after the zone's alerts have resolved.
#[tokio::test]
async fn a_failback_is_never_approved_automatically() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, fake) = start(
        dir.path(),
        "failback:\n  healthy_for: 1s\n  approvers: [leads]\n",
    )
    .await;
    let down = |status: &str, service: &str| {
        alert(
            status,
            &[
                ("alertname", "ZoneServiceDown"),
                ("region", SEOUL),
                ("zone", ZONE),
                ("service", service),
            ],
        )
    };
    srv.post(&payload(vec![down("firing", "api"), down("firing", "db")]))
        .await;
    let zone = wait_incident(&srv, "az_failure", "succeeded").await;
    let zid = zone["id"].as_str().unwrap().to_owned();
    let failover_calls = vec![
        call("DR-ShiftZoneCapacity", SEOUL),
        call("DR-ShiftZoneCapacity", SEOUL),
    ];
    assert_eq!(started(&fake), failover_calls);

    let failback = wait_incident(&srv, "failback", "planned").await;
    let fid = failback["id"].as_str().unwrap().to_owned();
    assert_eq!(failback["failback_of"], zid.as_str());
    wait_event(&srv, &fid, "failback_waiting").await;
    let waiting = events(&srv, &fid).await;
    let reason = waiting
        .iter()
        .find(|e| e["kind"] == "failback_waiting")
        .unwrap()["reason"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(reason.contains("still firing"), "{reason}");

    srv.post(&payload(vec![
        down("resolved", "api"),
        down("resolved", "db"),
    ]))
    .await;
    let offered = wait_incident(&srv, "failback", "awaiting_approval").await;
    assert_eq!(offered["id"], fid.as_str());
    let request = events(&srv, &fid)
        .await
        .into_iter()
        .find(|e| e["kind"] == "approval_requested")
        .unwrap();
    assert_eq!(request["data"]["needed"], 1);
    assert_eq!(request["data"]["groups"], serde_json::json!(["leads"]));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        srv.get(&format!("/api/v1/incidents/{fid}")).await["incident"]["state"],
        "awaiting_approval",
        "nobody approved: it waits"
    );
    assert_eq!(started(&fake), failover_calls);

    assert_eq!(vote(&srv, &fid, "approve", "alice").await.0, 200);
    wait_incident(&srv, "failback", "succeeded").await;
    let mut all = failover_calls.clone();
    all.extend([
        call("DR-RebalanceZone", SEOUL),
        call("DR-RebalanceZone", SEOUL),
    ]);
    assert_eq!(started(&fake), all);
    srv.stop().await;
}
