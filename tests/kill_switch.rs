//! The dispatch kill switch, with live dispatch against the fake AWS,
//! asserting exactly which AWS calls happened: none starts while it is on
//! (and it survives a restart), a running step finishes unless
//! `abort_running`, and turning it off lets the waiting plan run once.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use support::approval::{self, ADMIN, events, fire, rule, rule_file, wait_event, wait_state};
use support::fake_aws::{FakeAws, Op};
use support::*;

/// An automatic two-step plan (so a switch between its steps can be seen)
/// and an automatic Lambda step, all in ap-northeast-1.
fn rules() -> String {
    let auto = "{mode: auto}";
    let mut r = rule_file(&[rule(
        "restart",
        "Crash",
        "{count: 1}",
        auto,
        "",
        &[("drain", "DR-Slow"), ("restart", "DR-Restart")],
    )]);
    r.push_str(
        "  - name: verify\n    match: {labels: ['alertname=\"Check\"']}\n    \
         correlate: {group_by: [region], window: 1h, when: {count: 1}}\n    scenario: verify\n    \
         approval: {mode: auto}\n    plan:\n      steps:\n        \
         - {name: check, lambda: {function: dr-check, region: ap-northeast-1}}\n",
    );
    r
}

async fn switch(srv: &Server, token: &str, body: Value) -> (u16, Value) {
    let resp = srv
        .client
        .put(format!("{}/api/v1/kill-switch", srv.base))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

async fn on(srv: &Server, abort_running: bool) {
    let body = json!({"engaged": true, "reason": "suspected bad runbook", "abort_running": abort_running, "by": "carol"});
    assert_eq!(switch(srv, ADMIN, body).await.0, 200);
}

async fn off(srv: &Server) {
    let body = json!({"engaged": false, "reason": "runbook checked"});
    assert_eq!(switch(srv, ADMIN, body).await.0, 200);
}

fn started(fake: &FakeAws) -> Vec<String> {
    fake.executions_started()
        .into_iter()
        .map(|e| e.document)
        .collect()
}

async fn start(dir: &Path) -> (Server, FakeAws) {
    approval::start(dir, &rules(), "100ms").await
}

#[tokio::test]
async fn nothing_starts_while_it_is_on_across_a_restart_and_the_plan_runs_once_it_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, fake) = start(dir.path()).await;
    // Only an admin turns it: a lead without the admin role is refused
    // (403, the role named), a read token is no operator credential (401).
    let body = json!({"engaged": true, "reason": "x"});
    assert_eq!(
        switch(&srv, &approval::token_of("alice"), body.clone())
            .await
            .0,
        403
    );
    assert_eq!(switch(&srv, READ_TOKEN, body).await.0, 401);
    assert_eq!(
        switch(&srv, ADMIN, json!({"engaged": true, "reason": " "}))
            .await
            .0,
        400
    );
    on(&srv, false).await;
    let state = srv.get("/api/v1/kill-switch").await;
    assert_eq!(
        (state["engaged"].clone(), state["actor"].clone()),
        (json!(true), json!("admin for carol"))
    );
    // It is in the store: a restart keeps it.
    srv.stop().await;
    let fake2 = FakeAws::start().await;
    let cfg = approval::config(dir.path(), &fake2, "100ms", "");
    let srv = Server::start_with_aws(dir.path(), &cfg, fake2.sdk_config()).await;
    drop(fake);
    let fake = fake2;
    fake.function_returns("dr-check", json!({"checked": true}));
    let readyz = srv
        .client
        .get(format!("{}/readyz", srv.base))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(readyz["kill_switch"]["engaged"], true, "{readyz}");
    assert!(srv.page("/").await.contains("Dispatch kill switch ON"));

    srv.post(&fire("Crash", "ap-northeast-2")).await;
    srv.post(&fire("Check", "ap-northeast-3")).await;
    let id = wait_state(&srv, "ap-northeast-2", "approved").await;
    let check = wait_state(&srv, "ap-northeast-3", "approved").await;
    wait_event(&srv, &id, "plan_waiting").await;
    wait_event(&srv, &check, "plan_waiting").await;
    let waiting = events(&srv, &id).await;
    let waiting = waiting
        .iter()
        .rfind(|e| e["kind"] == "plan_waiting")
        .unwrap();
    assert_eq!(waiting["data"]["limit"], "kill_switch");
    // Several runner scans later, still nothing was called.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        fake.calls_of(Op::StartAutomationExecution).is_empty(),
        "{:?}",
        fake.calls()
    );
    assert!(fake.calls_of(Op::Invoke).is_empty(), "{:?}", fake.calls());

    off(&srv).await;
    wait_state(&srv, "ap-northeast-2", "succeeded").await;
    wait_state(&srv, "ap-northeast-3", "succeeded").await;
    assert_eq!(started(&fake), ["DR-Slow", "DR-Restart"]);
    assert_eq!(fake.calls_of(Op::Invoke).len(), 1);
    srv.stop().await;
}

#[tokio::test]
async fn a_running_step_finishes_and_the_next_waits() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, fake) = start(dir.path()).await;
    fake.document_runs_for("DR-Slow", 30);
    srv.post(&fire("Crash", "ap-northeast-2")).await;
    let id = wait_state(&srv, "ap-northeast-2", "running").await;
    srv.wait_for("the first step started", || async {
        !started(&fake).is_empty()
    })
    .await;
    on(&srv, false).await;
    wait_event(&srv, &id, "plan_waiting").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(started(&fake), ["DR-Slow"], "the second step never started");
    assert!(
        fake.calls_of(Op::StopAutomationExecution).is_empty(),
        "left to finish"
    );
    srv.wait_for("the running step ends by itself", || async {
        events(&srv, &id)
            .await
            .iter()
            .any(|e| e["kind"] == "step_succeeded")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(started(&fake), ["DR-Slow"], "still only the first step");
    let log = events(&srv, &id).await;
    assert_eq!(
        log.iter().filter(|e| e["kind"] == "step_succeeded").count(),
        1,
        "{log:?}"
    );
    off(&srv).await;
    wait_state(&srv, "ap-northeast-2", "succeeded").await;
    assert_eq!(started(&fake), ["DR-Slow", "DR-Restart"]);
    srv.stop().await;
}

#[tokio::test]
async fn abort_running_stops_the_step_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, fake) = start(dir.path()).await;
    fake.document_runs_for("DR-Slow", 1000);
    srv.post(&fire("Crash", "ap-northeast-2")).await;
    wait_state(&srv, "ap-northeast-2", "running").await;
    srv.wait_for("the first step started", || async {
        !started(&fake).is_empty()
    })
    .await;
    on(&srv, true).await;
    wait_state(&srv, "ap-northeast-2", "aborted").await;
    assert_eq!(fake.calls_of(Op::StopAutomationExecution).len(), 1);
    assert_eq!(started(&fake), ["DR-Slow"]);
    srv.stop().await;
}
