//! Interlocks with live dispatch against the fake AWS, asserting which AWS
//! calls happened: no failover into an unhealthy DR region, a global cap on
//! failovers, a cooldown after one, and no two conflicting plans at once.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use support::fake_aws::{FakeAws, Op};
use support::*;

/// A region outage in ap-northeast-2 or -3 fails over into ap-northeast-1
/// (automatic approval); a zone failure is a larger scenario of its region
/// (it absorbs service failures); a restart and a restore act on one
/// service, automatically.
const RULES: &str = r#"rules:
  - name: region
    match: {labels: ['alertname="RegionDown"']}
    correlate: {group_by: [region], window: 2s, when: {count: 1}}
    scenario: region_outage
    approval: {mode: auto}
    plan:
      steps:
        - {name: fail over, ssm: {document: DR-Failover, region: ap-northeast-1, parameters: {From: "{{ labels.region }}"}}}
  - name: zone
    match: {labels: ['alertname="ZoneDown"']}
    correlate: {group_by: [region, zone], window: 2s, when: {count: 1}}
    scenario: az_failure
    absorbs: [service_failure]
    approval: {mode: one, groups: [leads], include_owners: false}
    plan:
      steps:
        - {name: drain, ssm: {document: DR-Drain, region: "{{ labels.region }}"}}
  - name: restart
    match: {labels: ['alertname="Crash"']}
    correlate: {group_by: [service], window: 1h, when: {count: 1}}
    scenario: service_failure
    approval: {mode: auto}
    plan:
      steps:
        - {name: restart, ssm: {document: DR-Restart, region: ap-northeast-2}}
  - name: restore
    match: {labels: ['alertname="Corrupt"']}
    correlate: {group_by: [service], window: 1h, when: {count: 1}}
    scenario: data_loss
    approval: {mode: auto}
    plan:
      steps:
        - {name: restore, ssm: {document: DR-Restore, region: ap-northeast-2}}
"#;

async fn start(dir: &Path, fake: &FakeAws, limits: &str) -> Server {
    let db = format!("sqlite://{}", dir.join("db.sqlite").display());
    start_on(dir, fake, limits, &db).await
}

async fn start_on(dir: &Path, fake: &FakeAws, limits: &str, db: &str) -> Server {
    std::fs::create_dir(dir.join("rules")).unwrap();
    std::fs::write(dir.join("rules/r.yaml"), RULES).unwrap();
    let cfg = format!(
        "listen: 127.0.0.1:0\nstore:\n  url: {db}\n\
         rules:\n  paths: [{rules}]\n  evaluation_interval: 100ms\n  watch: false\n  default_hold: 0s\n\
         webhook:\n  auth:\n    bearer_token: {TOKEN}\napi:\n  admin_token: admin-secret\n  read_tokens: [{READ_TOKEN}]\n\
         dispatch:\n  dry_run: false\n\
         approval:\n  directory:\n    leads: [alice]\n\
         limits:\n{limits}\
         aws:\n  endpoint_url: {endpoint}\n  default_region: ap-northeast-1\n  poll_interval: 50ms\n  \
         retry: {{max_attempts: 5, initial_backoff: 10ms, max_backoff: 50ms}}\n",
        rules = dir.join("rules").display(),
        endpoint = fake.endpoint(),
    );
    Server::start_with_aws(dir, &cfg, fake.sdk_config()).await
}

fn signal(status: &str, name: &str, labels: &[(&str, &str)]) -> Value {
    let mut all = vec![("alertname", name)];
    all.extend_from_slice(labels);
    payload(vec![alert(status, &all)])
}

async fn find(srv: &Server, scenario: &str, label: (&str, &str)) -> Vec<Value> {
    srv.incidents()
        .await
        .into_iter()
        .filter(|i| i["scenario"] == scenario && i["group_labels"][label.0] == label.1)
        .collect()
}

async fn kinds(srv: &Server, id: &str) -> Vec<String> {
    srv.get(&format!("/api/v1/incidents/{id}")).await["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect()
}

fn documents(fake: &FakeAws) -> Vec<String> {
    fake.executions_started()
        .into_iter()
        .map(|e| e.document)
        .collect()
}

/// A failover waits while its DR region has its own zone failure open, with
/// no AWS call, and runs once that incident closes.
#[tokio::test]
async fn no_failover_into_an_unhealthy_dr_region() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeAws::start().await;
    let srv = start(dir.path(), &fake, "  {}\n").await;
    let zone = [("region", "ap-northeast-1"), ("zone", "ap-northeast-1a")];
    srv.post(&signal("firing", "ZoneDown", &zone)).await;
    srv.wait_for("the DR region's zone incident", || async {
        find(&srv, "az_failure", ("region", "ap-northeast-1"))
            .await
            .first()
            .is_some_and(|i| i["state"] == "awaiting_approval")
    })
    .await;
    srv.post(&signal(
        "firing",
        "RegionDown",
        &[("region", "ap-northeast-2")],
    ))
    .await;
    srv.wait_for("the failover waits", || async {
        match find(&srv, "region_outage", ("region", "ap-northeast-2"))
            .await
            .first()
        {
            Some(i) => kinds(&srv, i["id"].as_str().unwrap())
                .await
                .contains(&"plan_waiting".to_owned()),
            None => false,
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        fake.calls_of(Op::StartAutomationExecution).is_empty(),
        "{:?}",
        fake.calls()
    );
    let region = find(&srv, "region_outage", ("region", "ap-northeast-2")).await;
    let id = region[0]["id"].as_str().unwrap().to_owned();
    let waiting = srv.get(&format!("/api/v1/incidents/{id}")).await["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "plan_waiting")
        .cloned()
        .unwrap();
    assert_eq!(waiting["data"]["limit"], "dr_target");
    assert!(
        waiting["reason"]
            .as_str()
            .unwrap()
            .contains("DR target region ap-northeast-1 is not healthy"),
        "{waiting}"
    );

    // The DR region recovers: its incident closes (window 2s), and the
    // failover runs, once.
    srv.post(&signal("resolved", "ZoneDown", &zone)).await;
    srv.wait_for("the failover ran", || async {
        find(&srv, "region_outage", ("region", "ap-northeast-2"))
            .await
            .first()
            .is_some_and(|i| i["state"] == "succeeded")
    })
    .await;
    assert_eq!(documents(&fake), ["DR-Failover"]);
    srv.stop().await;
}

/// With `limits.failovers: 1/1h`, a second region's failover is held back
/// with the reason: one failover called in all.
#[tokio::test]
async fn failovers_are_capped_across_rules() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeAws::start().await;
    let srv = start(dir.path(), &fake, "  failovers: 1/1h\n").await;
    capped(&srv, &fake).await;
    srv.stop().await;
}

/// The same on PostgreSQL, where the cap is counted from the event log.
#[tokio::test]
async fn failovers_are_capped_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeAws::start().await;
    let db = postgres_database().await;
    let srv = start_on(dir.path(), &fake, "  failovers: 1/1h\n", &db).await;
    capped(&srv, &fake).await;
    srv.stop().await;
}

async fn capped(srv: &Server, fake: &FakeAws) {
    srv.post(&signal(
        "firing",
        "RegionDown",
        &[("region", "ap-northeast-2")],
    ))
    .await;
    srv.wait_for("the first failover ran", || async {
        find(srv, "region_outage", ("region", "ap-northeast-2"))
            .await
            .first()
            .is_some_and(|i| i["state"] == "succeeded")
    })
    .await;
    srv.post(&signal(
        "firing",
        "RegionDown",
        &[("region", "ap-northeast-3")],
    ))
    .await;
    srv.wait_for("the second is held back", || async {
        find(srv, "region_outage", ("region", "ap-northeast-3"))
            .await
            .first()
            .is_some_and(|i| i["state"] == "suppressed")
    })
    .await;
    let second = find(srv, "region_outage", ("region", "ap-northeast-3")).await;
    let detail = srv
        .get(&format!(
            "/api/v1/incidents/{}",
            second[0]["id"].as_str().unwrap()
        ))
        .await;
    let held = detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "suppressed")
        .cloned()
        .unwrap();
    assert_eq!(held["data"]["limit"], "failover_cap", "{held}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(documents(fake), ["DR-Failover"]);
    assert!(
        srv.metric(r#"dr_reactor_incidents_held_total{limit="failover_cap"}"#)
            .await
            >= 1.0
    );
}

/// After a failover of a region ran, another failover of the same region
/// within `limits.failover_cooldown` is held back: one call in all.
#[tokio::test]
async fn a_cooldown_follows_a_failover() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeAws::start().await;
    let srv = start(dir.path(), &fake, "  failover_cooldown: 1h\n").await;
    let region = [("region", "ap-northeast-2")];
    srv.post(&signal("firing", "RegionDown", &region)).await;
    srv.wait_for("the failover ran", || async {
        find(&srv, "region_outage", region[0])
            .await
            .first()
            .is_some_and(|i| i["state"] == "succeeded")
    })
    .await;
    srv.post(&signal("resolved", "RegionDown", &region)).await;
    srv.wait_for("the incident closed", || async {
        find(&srv, "region_outage", region[0])
            .await
            .iter()
            .all(|i| !i["closed_at"].is_null())
    })
    .await;
    // The region fails again ten minutes later, say: a new incident.
    let mut again = signal("firing", "RegionDown", &region);
    again["alerts"][0]["startsAt"] = Value::from("2026-11-24T21:20:00Z");
    srv.post(&again).await;
    srv.wait_for("the second failover held by the cooldown", || async {
        find(&srv, "region_outage", region[0])
            .await
            .iter()
            .any(|i| i["state"] == "suppressed")
    })
    .await;
    let held = find(&srv, "region_outage", region[0])
        .await
        .into_iter()
        .find(|i| i["state"] == "suppressed")
        .unwrap();
    let k = kinds(&srv, held["id"].as_str().unwrap()).await;
    assert!(k.contains(&"suppressed".to_owned()), "{k:?}");
    let detail = srv
        .get(&format!(
            "/api/v1/incidents/{}",
            held["id"].as_str().unwrap()
        ))
        .await;
    let reason = detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "suppressed")
        .unwrap()["reason"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(reason.starts_with("cooldown:"), "{reason}");
    assert_eq!(documents(&fake), ["DR-Failover"]);
    srv.stop().await;
}

/// Two plans on one service do not run at once: the restore waits while
/// the restart runs (its execution is the only one started meanwhile), then
/// runs after it.
#[tokio::test]
async fn conflicting_plans_run_one_after_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeAws::start().await;
    fake.document_runs_for("DR-Restart", 20);
    let srv = start(dir.path(), &fake, "  {}\n").await;
    srv.post(&signal("firing", "Crash", &[("service", "order")]))
        .await;
    eventually("the restart started", 10, || async {
        documents(&fake) == ["DR-Restart"]
    })
    .await;
    srv.post(&signal("firing", "Corrupt", &[("service", "order")]))
        .await;
    srv.wait_for("the restore waits", || async {
        match find(&srv, "data_loss", ("service", "order")).await.first() {
            Some(i) => kinds(&srv, i["id"].as_str().unwrap())
                .await
                .contains(&"plan_waiting".to_owned()),
            None => false,
        }
    })
    .await;
    assert_eq!(documents(&fake), ["DR-Restart"], "nothing else meanwhile");
    srv.wait_for("both ran", || async {
        find(&srv, "data_loss", ("service", "order"))
            .await
            .first()
            .is_some_and(|i| i["state"] == "succeeded")
    })
    .await;
    assert_eq!(documents(&fake), ["DR-Restart", "DR-Restore"]);
    srv.stop().await;
}
