//! Drills with live dispatch against the fake AWS: a zone drill and a
//! region drill through the real pipeline with human approval, the exact
//! AWS calls (drill variants called, real runbooks never), `record` mode
//! calling nothing, a real failure during a drill kept apart from it, and
//! the recovery report of a finished drill.

mod support;

use std::path::Path;

use serde_json::{Value, json};
use support::approval::{start_with_catalogue, token_of, vote};
use support::fake_aws::{FakeAws, Op};
use support::*;

const SEOUL: &str = "ap-northeast-2";
const TOKYO: &str = "ap-northeast-1";
const ZONE: &str = "ap-northeast-2a";

const RULES: &str = r#"rules:
  - name: zone
    match: {source: alertmanager, labels: ['severity="critical"', 'zone!=""', 'service!=""']}
    correlate: {group_by: [region, zone], window: 1h, when: {distinct: {service: 2}}}
    scenario: az_failure
    absorbs: [service_failure]
    approval: {mode: one, groups: [leads], include_owners: false, timeout: 1h}
    plan:
      from_catalogue: true
      steps:
        - {name: drain the zone, ssm: {document: DR-DrainZone, region: "{{ labels.region }}"}}
  - name: service
    match: {source: alertmanager, labels: ['severity="critical"', 'service!=""']}
    correlate: {group_by: [region, service], window: 1h, when: {count: 1}}
    scenario: service_failure
    hold: 1s
    approval: {mode: one, groups: [leads], include_owners: false, timeout: 1h}
    plan: {from_catalogue: true}
  - name: heartbeat
    match: {labels: ['alertname="Watchdog"', 'region!=""']}
    correlate: {group_by: [region], window: 1h, when: {absent: {for: 1s, alert: Watchdog}}}
    scenario: region_outage
    absorbs: [az_failure, service_failure]
    approval: {mode: two, groups: [leads], include_owners: false, timeout: 1h}
    plan:
      from_catalogue: true
      services: all
      steps:
        - {name: flip DNS, ssm: {document: DR-Route53Failover, region: "{{ dr_region }}"}}
"#;

const CATALOGUE: &str = r#"regions:
  ap-northeast-2: {dr_region: ap-northeast-1}
runbooks:
  shift:
    ssm: {document: DR-ShiftZoneCapacity, region: "{{ labels.region }}", parameters: {Service: "{{ service.name }}"}}
    drill:
      ssm: {document: DR-Noop, region: "{{ labels.region }}", parameters: {Service: "{{ service.name }}"}}
  restart:
    ssm: {document: DR-Restart, region: "{{ labels.region }}"}
  promote:
    lambda: {function: dr-promote, region: "{{ dr_region }}"}
    drill:
      lambda: {function: dr-promote-staging, region: "{{ dr_region }}"}
services:
  api: {rto: 15m, rpo: 5m, runbooks: {az_failure: shift, service_failure: restart, region_outage: promote}}
  db: {rto: 30m, depends_on: [], runbooks: {az_failure: shift, service_failure: restart, region_outage: promote}}
"#;

async fn start(dir: &Path, drills: &str) -> (Server, FakeAws) {
    let reports = format!(
        "reports:\n  dir: {}\n{drills}",
        dir.join("reports").display()
    );
    start_with_catalogue(dir, RULES, CATALOGUE, &reports).await
}

async fn drill(srv: &Server, scenario: &str, labels: Value) -> (u16, Value) {
    let resp = srv
        .client
        .post(format!("{}/api/v1/drills", srv.base))
        .bearer_auth(token_of("alice"))
        .json(&json!({ "scenario": scenario, "labels": labels, "reason": "Q4 game day" }))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// Waits for the incident of `scenario` (drill or real) in `state`.
async fn wait_incident(srv: &Server, scenario: &str, drill: bool, state: &str) -> Value {
    let find = || async {
        srv.incidents()
            .await
            .into_iter()
            .find(|i| i["scenario"] == scenario && i["drill"] == drill && i["state"] == state)
    };
    let what = format!("{scenario} (drill: {drill}) {state}");
    for _ in 0..250 {
        if find().await.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(40)).await;
    }
    if find().await.is_none() {
        let all = srv.incidents().await;
        let mut detail = Vec::new();
        for i in &all {
            let id = i["id"].as_str().unwrap();
            detail.push(srv.get(&format!("/api/v1/incidents/{id}")).await);
        }
        panic!("timed out waiting for {what}: {detail:#?}");
    }
    find().await.unwrap()
}

fn targets(fake: &FakeAws, op: Op) -> Vec<(String, String)> {
    let mut t: Vec<(String, String)> = fake
        .calls_of(op)
        .into_iter()
        .map(|c| (c.target, c.region))
        .collect();
    t.sort();
    t
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_owned(), b.to_owned())
}

#[tokio::test]
async fn zone_drill_runs_drill_runbooks_after_approval_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, fake) = start(dir.path(), "").await;
    let (code, body) = drill(&srv, "az_failure", json!({"region": SEOUL, "zone": ZONE})).await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["signals"], 2, "one alert per service, two services");
    assert_eq!(body["rule"], "zone");
    let inc = wait_incident(&srv, "az_failure", true, "awaiting_approval").await;
    let id = inc["id"].as_str().unwrap().to_owned();
    assert!(
        inc["group_key"].as_str().unwrap().contains("__drill__"),
        "{inc}"
    );
    let plan: Vec<(&str, bool)> = inc["plan"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["action"]["document"].as_str().unwrap(),
                s["record"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    assert_eq!(
        plan,
        [
            ("DR-Noop", false),
            ("DR-Noop", false),
            ("DR-DrainZone", true)
        ],
        "catalogue steps take the drill variant; the rule's own step is recorded"
    );
    // The drill's signals also open drill service incidents, absorbed by
    // the drill zone incident.
    let services: Vec<Value> = srv
        .incidents()
        .await
        .into_iter()
        .filter(|i| i["scenario"] == "service_failure")
        .collect();
    assert_eq!(services.len(), 2);
    for s in &services {
        assert_eq!((&s["drill"], &s["parent_id"]), (&json!(true), &json!(id)));
    }
    assert!(fake.calls().is_empty(), "nothing runs before approval");

    // Alice started the drill: someone else approves it.
    let (code, body) = vote(&srv, &id, "approve", "alice").await;
    assert_eq!(code, 403, "{body}");
    let (code, body) = vote(&srv, &id, "approve", "bob").await;
    assert_eq!((code, body["state"].as_str()), (200, Some("approved")));
    wait_incident(&srv, "az_failure", true, "succeeded").await;
    assert_eq!(
        targets(&fake, Op::StartAutomationExecution),
        [pair("DR-Noop", SEOUL), pair("DR-Noop", SEOUL)]
    );
    assert!(fake.calls_of(Op::Invoke).is_empty());
    let events = support::approval::events(&srv, &id).await;
    assert!(
        events.iter().any(|e| e["kind"] == "step_succeeded"
            && e["reason"]
                .as_str()
                .unwrap()
                .contains("Recorded (drill: SSM Automation DR-DrainZone")),
        "the recorded step says what it did not call"
    );
    assert_eq!(
        srv.metric(r#"dr_reactor_incidents_total{drill="true",scenario="az_failure"}"#)
            .await,
        1.0
    );

    // The report: spans that add up, the timeline, and who approved.
    srv.wait_for("recovery histogram", || async {
        srv.metric(r#"dr_reactor_recovery_seconds_count{drill="true",scenario="az_failure"}"#)
            .await
            == 1.0
    })
    .await;
    let r = srv.get(&format!("/api/v1/incidents/{id}/report")).await;
    let d = &r["durations"];
    let f = |k: &str| d[k].as_f64().unwrap_or_else(|| panic!("{k}: {d}"));
    for k in [
        "detect_secs",
        "decide_secs",
        "approve_secs",
        "steps_secs",
        "recovery_secs",
    ] {
        assert!(f(k) >= 0.0, "{k}: {d}");
    }
    assert!(
        f("detect_secs") + f("decide_secs") + f("approve_secs") + f("steps_secs")
            <= f("recovery_secs") + 1e-9,
        "{d}"
    );
    assert_eq!(r["drill"], true);
    assert_eq!(r["rto"]["service"], "api");
    assert_eq!(r["rto"]["met"], true);
    assert_eq!(r["rpo"][0]["service"], "api");
    assert_eq!(r["votes"][0]["actor"], "bob");
    let md = srv
        .client
        .get(format!("{}/api/v1/incidents/{id}/report", srv.base))
        .bearer_auth(READ_TOKEN)
        .header("accept", "text/markdown")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        md.starts_with("# DRILL recovery report: az_failure"),
        "{md}"
    );
    assert!(
        md.contains("## Timeline") && md.contains("approved"),
        "{md}"
    );
    assert!(md.contains("- approve by bob"), "{md}");
    // Archived under the day it finished.
    let day = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let file = dir.path().join(format!("reports/dt={day}/{id}.json"));
    let archived: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(archived["incident"], id.as_str());
    srv.stop().await;
}

#[tokio::test]
async fn region_drill_stops_the_heartbeat_and_needs_two_approvers() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, fake) = start(dir.path(), "").await;
    fake.function_returns("dr-promote-staging", json!({"promoted": true}));
    let (code, body) = drill(&srv, "region_outage", json!({"region": SEOUL})).await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(
        (body["signals"].as_u64(), body["opens_after_secs"].as_u64()),
        (Some(1), Some(1)),
        "one heartbeat, absent after 1s"
    );
    let inc = wait_incident(&srv, "region_outage", true, "awaiting_approval").await;
    let id = inc["id"].as_str().unwrap().to_owned();
    assert_eq!(vote(&srv, &id, "approve", "carol").await.0, 200);
    assert!(fake.calls().is_empty(), "one approval of two runs nothing");
    assert_eq!(vote(&srv, &id, "approve", "bob").await.0, 200);
    wait_incident(&srv, "region_outage", true, "succeeded").await;
    assert_eq!(
        targets(&fake, Op::Invoke),
        [
            pair("dr-promote-staging", TOKYO),
            pair("dr-promote-staging", TOKYO)
        ],
        "the drill variant, in the DR region"
    );
    assert!(
        fake.calls_of(Op::StartAutomationExecution).is_empty(),
        "DNS flip has no drill variant: recorded, never called"
    );
    srv.stop().await;
}

#[tokio::test]
async fn record_mode_calls_nothing_and_still_needs_approval() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, fake) = start(dir.path(), "drills:\n  dispatch: record\n").await;
    // Through the CLI, as bob (his own token).
    let cli = |args: Vec<String>, token: String| async move {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_dr-reactor"))
            .args(args)
            .env("DR_REACTOR_API_TOKEN", token)
            .env_remove("DR_REACTOR_ADMIN_TOKEN")
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let args = [
        "drill",
        "az_failure",
        "--label",
        "region=ap-northeast-2",
        "--label",
        "zone=ap-northeast-2a",
        "--url",
        &srv.base,
        "--",
        "Q4",
        "game",
        "day",
    ];
    let stdout = cli(args.map(String::from).to_vec(), token_of("bob")).await;
    assert!(stdout.contains("2 signal(s)"), "{stdout}");
    let inc = wait_incident(&srv, "az_failure", true, "awaiting_approval").await;
    let id = inc["id"].as_str().unwrap().to_owned();
    let evidence = srv.get(&format!("/api/v1/incidents/{id}")).await["signals"].to_string();
    assert!(
        evidence.contains("Q4 game day") && evidence.contains("bob"),
        "{evidence}"
    );
    assert_eq!(vote(&srv, &id, "approve", "alice").await.0, 200);
    wait_incident(&srv, "az_failure", true, "succeeded").await;
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
    let args = ["report", &id, "--url", &srv.base, "--format", "markdown"];
    let md = cli(args.map(String::from).to_vec(), READ_TOKEN.to_owned()).await;
    assert!(
        md.contains("(recorded, not called)") && md.contains("- approve by alice"),
        "{md}"
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_real_failure_during_a_drill_is_its_own_incident() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, _fake) = start(dir.path(), "").await;
    assert_eq!(
        drill(&srv, "az_failure", json!({"region": SEOUL, "zone": ZONE}))
            .await
            .0,
        201
    );
    let drill_zone = wait_incident(&srv, "az_failure", true, "awaiting_approval").await;
    // A real alert in the drill's zone: its service incident is held, then
    // asks for approval on its own; the drill absorbs nothing real.
    let real = |service: &str| {
        alert(
            "firing",
            &[
                ("alertname", "PodsNotReady"),
                ("severity", "critical"),
                ("region", SEOUL),
                ("zone", ZONE),
                ("service", service),
            ],
        )
    };
    srv.post(&payload(vec![real("api")])).await;
    let svc = wait_incident(&srv, "service_failure", false, "awaiting_approval").await;
    assert_eq!(svc["parent_id"], Value::Null);
    // A real zone failure of the same zone opens as a real incident beside
    // the drill, and takes the real service incident over.
    srv.post(&payload(vec![real("db")])).await;
    let zone = wait_incident(&srv, "az_failure", false, "awaiting_approval").await;
    assert_ne!(zone["id"], drill_zone["id"]);
    assert!(!zone["group_key"].as_str().unwrap().contains("__drill__"));
    let drill_now = srv
        .get(&format!(
            "/api/v1/incidents/{}",
            drill_zone["id"].as_str().unwrap()
        ))
        .await;
    let signals = drill_now["signals"].to_string();
    assert!(!signals.contains("PodsNotReady"), "{signals}");
    // The console tells the two apart at a glance.
    let page = |id: String| {
        let req = srv
            .client
            .get(format!("{}/incidents/{id}", srv.base))
            .bearer_auth(READ_TOKEN);
        async move { req.send().await.unwrap().text().await.unwrap() }
    };
    let drill_page = page(drill_zone["id"].as_str().unwrap().to_owned()).await;
    assert!(drill_page.contains("id=\"drill\""), "{drill_page}");
    let real_page = page(zone["id"].as_str().unwrap().to_owned()).await;
    assert!(
        !real_page.contains("id=\"drill\""),
        "the real zone is no drill"
    );
    // A sender cannot pass a real alert off as a drill.
    let forged = payload(vec![alert(
        "firing",
        &[
            ("alertname", "X"),
            ("__drill__", "true"),
            ("service", "api"),
        ],
    )]);
    let body = srv.post(&forged).await;
    assert_eq!(body["rejected"][0]["reason"], "reserved_label", "{body}");
    srv.stop().await;
}
