//! The Alertmanager webhook end to end: auth, bad input, dedup, incidents,
//! and restart safety, over real HTTP against a real SQLite file.

mod support;

use serde_json::json;
use support::*;

#[tokio::test]
async fn auth_bearer_and_basic() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_text(dir.path(), "").replace(
        "    bearer_token: s3cret-token\n",
        "    bearer_token: s3cret-token\n    basic:\n      username: am\n      password: pw\n",
    );
    let srv = Server::start_with(dir.path(), &cfg).await;
    let body = || fixture("webhook-02.json");
    assert_eq!(
        srv.post_raw(body(), Some("Bearer s3cret-token"))
            .await
            .status(),
        200
    );
    assert_eq!(
        srv.post_raw(body(), Some("Basic YW06cHc=")).await.status(),
        200
    );
    assert_eq!(
        srv.post_raw(body(), Some("Bearer wrong")).await.status(),
        401
    );
    assert_eq!(
        srv.post_raw(body(), Some("Basic YW06eHg=")).await.status(),
        401
    );
    let resp = srv.post_raw(body(), None).await;
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().contains_key("www-authenticate"));
    assert_eq!(
        srv.metric(r#"dr_reactor_requests_rejected_total{reason="bad_credentials"}"#)
            .await,
        2.0
    );
    assert_eq!(
        srv.metric(r#"dr_reactor_requests_rejected_total{reason="missing_credentials"}"#)
            .await,
        1.0
    );
    srv.stop().await;
}

#[tokio::test]
async fn bad_input_is_refused_clearly_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start_with(
        dir.path(),
        &config_text(dir.path(), "  max_body_bytes: 4096\n"),
    )
    .await;
    let auth = Some("Bearer s3cret-token");

    let resp = srv
        .post_raw(b"{\"version\": \"4\",\n \"alerts\": [".to_vec(), auth)
        .await;
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    let msg = body["error"].as_str().unwrap();
    assert!(msg.starts_with("invalid JSON at line 2 column"), "{msg}");

    let resp = srv
        .post_raw(br#"{"version":"3","alerts":[]}"#.to_vec(), auth)
        .await;
    assert_eq!(resp.status(), 422);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("\"3\""), "{body}");

    let big = serde_json::to_vec(&payload(vec![alert(
        "firing",
        &[("alertname", &"x".repeat(5000))],
    )]))
    .unwrap();
    let resp = srv.post_raw(big, auth).await;
    assert_eq!(resp.status(), 413);

    // One bad alert among good ones: the good ones are kept.
    let mixed = payload(vec![
        pod_alert("firing", "auth", "ap-northeast-2a"),
        json!({"status": "firing", "labels": {"alertname": "Broken"}, "startsAt": "not a time"}),
        pod_alert("firing", "order", "ap-northeast-2a"),
    ]);
    let body = srv.post(&mixed).await;
    assert_eq!(body["accepted"], 2);
    assert_eq!(body["rejected"][0]["index"], 1);
    assert!(
        body["rejected"][0]["error"]
            .as_str()
            .unwrap()
            .contains("not a time")
    );

    let m = srv.metrics().await;
    assert_eq!(
        metric_value(
            &m,
            r#"dr_reactor_requests_rejected_total{reason="invalid_json"}"#
        ),
        1.0
    );
    assert_eq!(
        metric_value(
            &m,
            r#"dr_reactor_requests_rejected_total{reason="bad_version"}"#
        ),
        1.0
    );
    assert_eq!(
        metric_value(
            &m,
            r#"dr_reactor_requests_rejected_total{reason="too_large"}"#
        ),
        1.0
    );
    assert_eq!(metric_value(&m, "dr_reactor_alerts_invalid_total"), 1.0);
    assert_eq!(
        metric_value(&m, r#"dr_reactor_alerts_received_total{status="firing"}"#),
        2.0
    );
    srv.stop().await;
}

#[tokio::test]
async fn resent_alerts_are_deduplicated_and_resolve_ends_them() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(dir.path()).await;
    let first: serde_json::Value = serde_json::from_slice(&fixture("webhook-01.json")).unwrap();
    let body = srv.post(&first).await;
    assert_eq!(
        (body["accepted"].as_u64(), body["deduplicated"].as_u64()),
        (Some(2), Some(0))
    );
    let body = srv.post(&first).await;
    assert_eq!(
        (body["accepted"].as_u64(), body["deduplicated"].as_u64()),
        (Some(2), Some(2))
    );
    // webhook-03: auth resolved, order still firing (a re-send).
    let third: serde_json::Value = serde_json::from_slice(&fixture("webhook-03.json")).unwrap();
    let body = srv.post(&third).await;
    assert_eq!(
        (body["accepted"].as_u64(), body["deduplicated"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(
        srv.metric("dr_reactor_alerts_deduplicated_total").await,
        3.0
    );
    srv.wait_processed(3).await;
    srv.stop().await;
}

fn of_scenario(incidents: &[serde_json::Value], scenario: &str) -> Vec<serde_json::Value> {
    incidents
        .iter()
        .filter(|i| i["scenario"] == scenario)
        .cloned()
        .collect()
}

#[tokio::test]
async fn incident_opens_at_threshold_not_before_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(dir.path()).await;

    // Two services down in zone a: below the AZ rule's three.
    srv.post(&payload(vec![
        pod_alert("firing", "auth", "ap-northeast-2a"),
        pod_alert("firing", "order", "ap-northeast-2a"),
        // A third service, but in another zone: another group.
        pod_alert("firing", "payment", "ap-northeast-2b"),
    ]))
    .await;
    srv.wait_processed(3).await;
    srv.wait_for("three service incidents settled", || async {
        let all = srv.incidents().await;
        all.len() == 3 && all.iter().all(|i| i["state"] == "suppressed")
    })
    .await;
    assert!(
        of_scenario(&srv.incidents().await, "az_failure").is_empty(),
        "no AZ incident below threshold"
    );

    srv.post(&payload(vec![pod_alert(
        "firing",
        "payment",
        "ap-northeast-2a",
    )]))
    .await;
    srv.wait_for("az incident suppressed (dry-run)", || async {
        of_scenario(&srv.incidents().await, "az_failure")
            .first()
            .is_some_and(|i| i["state"] == "suppressed")
    })
    .await;
    let inc = of_scenario(&srv.incidents().await, "az_failure").remove(0);
    assert_eq!(
        inc["group_labels"],
        json!({"region": "ap-northeast-2", "zone": "ap-northeast-2a"})
    );
    // Dependency order from the catalogue: auth before order before payment.
    assert_eq!(inc["services"], json!(["auth", "order", "payment"]));
    assert!(inc["rto_deadline"].is_string(), "{inc}");
    let id = inc["id"].as_str().unwrap().to_owned();
    let detail = srv.get(&format!("/api/v1/incidents/{id}")).await;
    assert_eq!(detail["signals"].as_array().unwrap().len(), 3);
    let kinds: Vec<&str> = detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .filter(|k| *k != "signals_attached")
        .collect();
    assert_eq!(
        kinds,
        [
            "detected",
            "planned",
            "held",
            "hold_ended",
            "admitted",
            // Shadow mode: the approval it would wait for, then each step.
            "shadow_approval",
            "step_dry_run",
            "step_dry_run",
            "step_dry_run",
            "step_dry_run",
            "step_dry_run",
            "suppressed"
        ]
    );
    let steps = &inc["plan"]["steps"];
    assert_eq!(steps[0]["service"], "auth");
    assert_eq!(steps[0]["action"]["document"], "DR-ShiftZoneCapacity");
    assert_eq!(steps[3]["action"]["document"], "DR-CordonAndDrainZone");
    assert_eq!(steps[3]["action"]["region"], "ap-northeast-2");
    assert_eq!(
        steps[3]["action"]["parameters"]["Zone"],
        json!(["ap-northeast-2a"])
    );
    assert_eq!(steps[3]["action"]["parameters"]["IncidentId"], json!([id]));
    assert_eq!(steps[3]["idempotency_key"].as_str().unwrap().len(), 36);
    assert_eq!(
        srv.metric(r#"dr_reactor_incidents_open{drill="false",scenario="az_failure"}"#)
            .await,
        1.0
    );

    // auth and order failed only in zone a: their incidents now belong to
    // the AZ incident. payment fails in zones a and b, which the zone-a
    // failure does not explain: it stays on its own.
    srv.wait_for("zone-a service incidents absorbed", || async {
        let services = of_scenario(&srv.incidents().await, "service_failure");
        let absorbed: Vec<&str> = services
            .iter()
            .filter(|i| i["parent_id"] == id.as_str())
            .map(|i| i["group_labels"]["service"].as_str().unwrap())
            .collect();
        services.len() == 3 && absorbed.len() == 2 && !absorbed.contains(&"payment")
    })
    .await;

    // A fourth service joins the open AZ incident instead of opening another.
    srv.post(&payload(vec![pod_alert(
        "firing",
        "notify",
        "ap-northeast-2a",
    )]))
    .await;
    srv.wait_processed(5).await;
    assert_eq!(of_scenario(&srv.incidents().await, "az_failure").len(), 1);
    srv.stop().await;

    // Same SQLite file, new process state: everything is still there, and
    // Alertmanager re-sending the same firing alerts opens nothing new.
    let srv = Server::start(dir.path()).await;
    let before = srv.incidents().await.len();
    let az = of_scenario(&srv.incidents().await, "az_failure");
    assert_eq!(az.len(), 1);
    assert_eq!(az[0]["id"], id.as_str());
    let detail = srv.get(&format!("/api/v1/incidents/{id}")).await;
    assert_eq!(detail["signals"].as_array().unwrap().len(), 4);
    assert_eq!(
        srv.metric(r#"dr_reactor_incidents_open{drill="false",scenario="az_failure"}"#)
            .await,
        1.0
    );
    srv.post(&payload(vec![
        pod_alert("firing", "auth", "ap-northeast-2a"),
        pod_alert("firing", "order", "ap-northeast-2a"),
        pod_alert("firing", "payment", "ap-northeast-2a"),
    ]))
    .await;
    srv.post(&payload(vec![pod_alert(
        "firing",
        "search",
        "ap-northeast-2a",
    )]))
    .await;
    // Three re-sends (refreshes) and one new signal.
    srv.wait_processed(4).await;
    srv.wait_for("search's incident settled", || async {
        srv.incidents()
            .await
            .first()
            .is_some_and(|i| i["state"] == "suppressed" && i["group_labels"]["service"] == "search")
    })
    .await;
    let after = srv.incidents().await;
    assert_eq!(
        of_scenario(&after, "az_failure").len(),
        1,
        "no second AZ incident after restart"
    );
    // Only the new service (search) may add an incident: absorbed at once.
    assert_eq!(after.len(), before + 1);
    assert_eq!(after[0]["parent_id"], id.as_str());
    srv.stop().await;
}

#[tokio::test]
async fn readyz_reports_store_and_rules() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(dir.path()).await;
    let r = srv.get("/readyz").await;
    assert_eq!(r["ready"], true);
    assert_eq!(r["store"]["ok"], true);
    assert!(r["rules"]["rules"].as_u64().unwrap() >= 1);
    srv.stop().await;
}
