//! Silences for planned work: the API (who may write, who may read), the
//! effect with live dispatch against the fake AWS (a silenced incident is
//! recorded and suppressed with no AWS call; after the silence ends the
//! same alert acts), the silences file (loaded, and a bad one refused on
//! reload with file:line), and silences kept in the store across restarts
//! on SQLite and PostgreSQL.

mod support;

use std::path::Path;

use chrono::{Duration, Utc};
use dr_reactor::rules::silence::Silence;
use dr_reactor::store::Store;
use serde_json::{Value, json};
use support::approval::{ADMIN, config, events, token_of};
use support::fake_aws::{FakeAws, Op};
use support::*;

/// Zone incidents: one per zone, acting on their own (automatic approval),
/// closed a second after their alert resolves.
const ZONE_RULE: &str = "rules:
  - name: zone
    match: {labels: ['alertname=\"ZoneDown\"']}
    correlate: {group_by: [zone], window: 1s, when: {count: 1}}
    scenario: zone
    approval: {mode: auto}
    plan:
      steps:
        - {name: drain the zone, ssm: {document: DR-DrainZone, region: ap-northeast-1}}
";

async fn start(dir: &Path, extra: &str) -> (Server, FakeAws) {
    if !dir.join("rules").exists() {
        std::fs::create_dir(dir.join("rules")).unwrap();
        std::fs::write(dir.join("rules/r.yaml"), ZONE_RULE).unwrap();
    }
    let fake = FakeAws::start().await;
    let cfg = config(dir, &fake, "100ms", extra);
    let srv = Server::start_with_aws(dir, &cfg, fake.sdk_config()).await;
    (srv, fake)
}

fn zone_alert(status: &str, zone: &str) -> Value {
    payload(vec![alert(
        status,
        &[("alertname", "ZoneDown"), ("zone", zone)],
    )])
}

async fn call(
    srv: &Server,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = srv.client.request(method, format!("{}{path}", srv.base));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

async fn add(srv: &Server, token: Option<&str>, matchers: &[&str]) -> (u16, Value) {
    let body = json!({ "matchers": matchers, "duration": "1h", "comment": "zone a maintenance" });
    call(
        srv,
        reqwest::Method::POST,
        "/api/v1/silences",
        token,
        Some(body),
    )
    .await
}

async fn list(srv: &Server) -> Vec<Value> {
    srv.get("/api/v1/silences").await["silences"]
        .as_array()
        .unwrap()
        .clone()
}

/// The incidents of `zone`, newest first.
async fn zone_incidents(srv: &Server, zone: &str) -> Vec<Value> {
    srv.incidents()
        .await
        .into_iter()
        .filter(|i| i["group_labels"]["zone"] == zone)
        .collect()
}

async fn wait_zone_state(srv: &Server, zone: &str, state: &str, n: usize) -> Value {
    srv.wait_for(
        &format!("{n} incident(s) in {zone}, newest {state}"),
        || async {
            let incs = zone_incidents(srv, zone).await;
            incs.len() == n && incs.iter().any(|i| i["state"] == state)
        },
    )
    .await;
    zone_incidents(srv, zone)
        .await
        .into_iter()
        .find(|i| i["state"] == state)
        .unwrap()
}

#[tokio::test]
async fn silence_api_writes_need_an_operator_token_and_reads_a_read_token() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, _aws) = start(dir.path(), "").await;
    let zone_a = ["zone=\"ap-northeast-1a\""];

    assert_eq!(add(&srv, None, &zone_a).await.0, 401, "no token");
    assert_eq!(
        add(&srv, Some("nobody"), &zone_a).await.0,
        401,
        "unknown token"
    );
    assert_eq!(
        add(&srv, Some(TOKEN), &zone_a).await.0,
        401,
        "webhook token"
    );
    let (code, _) = add(&srv, Some(READ_TOKEN), &zone_a).await;
    assert!(
        matches!(code, 401 | 403),
        "a read token cannot write: {code}"
    );
    let (code, body) = add(&srv, Some(&token_of("bob")), &["zone~broken"]).await;
    assert_eq!(code, 400, "{body}");
    assert!(list(&srv).await.is_empty(), "nothing refused was stored");

    let (code, body) = add(&srv, Some(&token_of("bob")), &zone_a).await;
    assert_eq!(code, 201, "{body}");
    let silence = &body["silence"];
    let id = silence["id"].as_str().unwrap().to_owned();
    assert_eq!(
        (
            silence["created_by"].as_str(),
            silence["state"].as_str(),
            silence["source"].as_str()
        ),
        (Some("bob"), Some("active"), Some("api"))
    );
    let (code, body) = add(&srv, Some(ADMIN), &["zone=\"ap-northeast-1c\""]).await;
    assert_eq!(
        (code, body["silence"]["created_by"].as_str()),
        (201, Some("admin"))
    );

    let get = reqwest::Method::GET;
    assert_eq!(
        call(&srv, get.clone(), "/api/v1/silences", None, None)
            .await
            .0,
        401
    );
    let (code, _) = call(&srv, get, "/api/v1/silences", Some("nobody"), None).await;
    assert!(matches!(code, 401 | 403), "{code}");
    let listed = list(&srv).await;
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed.iter().any(|s| s["id"] == id.as_str()));

    let path = format!("/api/v1/silences/{id}");
    let delete = reqwest::Method::DELETE;
    assert_eq!(call(&srv, delete.clone(), &path, None, None).await.0, 401);
    let (code, _) = call(&srv, delete.clone(), &path, Some(READ_TOKEN), None).await;
    assert!(matches!(code, 401 | 403), "{code}");
    let (code, body) = call(&srv, delete.clone(), &path, Some(&token_of("alice")), None).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        (
            body["silence"]["state"].as_str(),
            body["silence"]["expired_by"].as_str()
        ),
        (Some("expired"), Some("alice"))
    );
    let missing = call(&srv, delete, "/api/v1/silences/nope", Some(ADMIN), None).await;
    assert_eq!(missing.0, 404);
    let listed = list(&srv).await;
    assert_eq!(listed.len(), 1, "the expired one is gone: {listed:?}");
    assert_eq!(listed[0]["created_by"], "admin");

    // Kept in the store: a restart sees the one still in force.
    srv.stop().await;
    let (srv, _aws) = start(dir.path(), "").await;
    let listed = list(&srv).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["created_by"], "admin");
}

#[tokio::test]
async fn silenced_zone_incident_is_recorded_and_suppressed_and_acts_once_the_silence_ends() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, aws) = start(dir.path(), "").await;
    let zone = "ap-northeast-1a";
    let (code, body) = add(&srv, Some(&token_of("bob")), &["zone=\"ap-northeast-1a\""]).await;
    assert_eq!(code, 201, "{body}");
    let silence = body["silence"]["id"].as_str().unwrap().to_owned();

    srv.post(&zone_alert("firing", zone)).await;
    let inc = wait_zone_state(&srv, zone, "suppressed", 1).await;
    let id = inc["id"].as_str().unwrap();
    let log = events(&srv, id).await;
    let kinds: Vec<&str> = log.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"detected"), "{kinds:?}");
    assert!(!kinds.contains(&"admitted"), "{kinds:?}");
    let silenced = log.iter().find(|e| e["kind"] == "silenced").unwrap();
    assert_eq!(silenced["data"]["silence"], silence.as_str());
    assert_eq!(silenced["data"]["created_by"], "bob");
    assert_eq!(silenced["data"]["comment"], "zone a maintenance");
    assert!(silenced["data"]["ends_at"].is_string(), "{silenced}");
    let suppressed = log.iter().find(|e| e["kind"] == "suppressed").unwrap();
    let reason = suppressed["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(&format!("silenced by {silence} until ")),
        "{reason}"
    );
    assert_eq!(
        srv.metric(r#"dr_reactor_incidents_silenced_total{scenario="zone"}"#)
            .await,
        1.0
    );
    // Another zone is not silenced: it acts while zone a is quiet.
    srv.post(&zone_alert("firing", "ap-northeast-1b")).await;
    wait_zone_state(&srv, "ap-northeast-1b", "succeeded", 1).await;
    let starts = aws.calls_of(Op::StartAutomationExecution);
    assert_eq!(starts.len(), 1, "only zone b acted: {starts:?}");

    // The silence ends; the evidence resolves and returns: that incident acts.
    let path = format!("/api/v1/silences/{silence}");
    let (code, _) = call(&srv, reqwest::Method::DELETE, &path, Some(ADMIN), None).await;
    assert_eq!(code, 200);
    srv.post(&zone_alert("resolved", zone)).await;
    srv.wait_for("the silenced incident to close", || async {
        zone_incidents(&srv, zone)
            .await
            .iter()
            .all(|i| !i["closed_at"].is_null())
    })
    .await;
    // A new outage of the zone: the same alert, started again.
    let mut again = zone_alert("firing", zone);
    again["alerts"][0]["startsAt"] = json!(Utc::now().to_rfc3339());
    srv.post(&again).await;
    let acted = wait_zone_state(&srv, zone, "succeeded", 2).await;
    assert_ne!(acted["id"], inc["id"]);
    let kinds: Vec<String> = events(&srv, acted["id"].as_str().unwrap())
        .await
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect();
    assert!(!kinds.iter().any(|k| k == "silenced"), "{kinds:?}");
    let starts = aws.calls_of(Op::StartAutomationExecution);
    assert_eq!(
        starts.len(),
        2,
        "one call for zone b, one for zone a now: {starts:?}"
    );
    assert!(starts.iter().all(|c| c.target == "DR-DrainZone"));
    assert_eq!(
        srv.metric(r#"dr_reactor_incidents_silenced_total{scenario="zone"}"#)
            .await,
        1.0
    );
}

/// The zone rule held two seconds for a region incident that would absorb it.
const HELD_RULES: &str = "rules:
  - name: region
    match: {labels: ['alertname=\"RegionDown\"']}
    correlate: {group_by: [region], window: 1m, when: {count: 1}}
    scenario: region
    absorbs: [zone]
    approval: {mode: auto}
    plan:
      steps:
        - {name: fail over, ssm: {document: DR-Region, region: ap-northeast-1}}
  - name: zone
    match: {labels: ['alertname=\"ZoneDown\"']}
    correlate: {group_by: [zone], window: 1m, when: {count: 1}}
    scenario: zone
    hold: 2s
    approval: {mode: auto}
    plan:
      steps:
        - {name: drain the zone, ssm: {document: DR-DrainZone, region: ap-northeast-1}}
";

/// A silence made while an incident is held for a larger scenario applies
/// when the hold ends: silences are checked at admission, not detection.
#[tokio::test]
async fn incident_held_while_a_silence_starts_is_silenced_when_its_hold_ends() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    std::fs::write(dir.path().join("rules/r.yaml"), HELD_RULES).unwrap();
    let (srv, aws) = start(dir.path(), "").await;
    let zone = "ap-northeast-1a";
    srv.post(&zone_alert("firing", zone)).await;
    let held = wait_zone_state(&srv, zone, "planned", 1).await;
    let id = held["id"].as_str().unwrap().to_owned();
    srv.wait_for("the hold", || async {
        events(&srv, &id).await.iter().any(|e| e["kind"] == "held")
    })
    .await;
    let (code, body) = add(
        &srv,
        Some(&token_of("carol")),
        &["zone=\"ap-northeast-1a\""],
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let silence = body["silence"]["id"].as_str().unwrap().to_owned();

    wait_zone_state(&srv, zone, "suppressed", 1).await;
    let log = events(&srv, &id).await;
    let kinds: Vec<&str> = log.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    let held_at = kinds.iter().position(|k| *k == "held").unwrap();
    let silenced_at = kinds.iter().position(|k| *k == "silenced").unwrap();
    assert!(held_at < silenced_at, "{kinds:?}");
    assert!(!kinds.contains(&"admitted"), "{kinds:?}");
    let silenced = &log[silenced_at];
    assert_eq!(silenced["data"]["silence"], silence.as_str());
    assert_eq!(silenced["data"]["created_by"], "carol");
    assert!(aws.calls_of(Op::StartAutomationExecution).is_empty());
}

fn silences_file(id: &str, matcher: &str) -> String {
    let now = Utc::now();
    format!(
        "- id: {id}\n  matchers: ['{matcher}']\n  starts_at: {}\n  ends_at: {}\n  created_by: carol\n  comment: rack move\n",
        (now - Duration::hours(1)).to_rfc3339(),
        (now + Duration::hours(1)).to_rfc3339(),
    )
}

#[tokio::test]
async fn silences_file_is_loaded_and_a_bad_one_is_refused_on_reload_with_file_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("silences.yaml");
    std::fs::write(
        &file,
        silences_file("rack-move", "zone=\"ap-northeast-1a\""),
    )
    .unwrap();
    let extra = format!("silences:\n  file: {}\n", file.display());
    let (srv, aws) = start(dir.path(), &extra).await;

    let listed = list(&srv).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (listed[0]["id"].as_str(), listed[0]["source"].as_str()),
        (Some("rack-move"), Some("file"))
    );
    let (code, body) = call(
        &srv,
        reqwest::Method::DELETE,
        "/api/v1/silences/rack-move",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(code, 409, "a file's silence ends in the file: {body}");

    srv.post(&zone_alert("firing", "ap-northeast-1a")).await;
    let inc = wait_zone_state(&srv, "ap-northeast-1a", "suppressed", 1).await;
    let log = events(&srv, inc["id"].as_str().unwrap()).await;
    let silenced = log.iter().find(|e| e["kind"] == "silenced").unwrap();
    assert_eq!(
        (
            silenced["data"]["silence"].as_str(),
            silenced["data"]["source"].as_str()
        ),
        (Some("rack-move"), Some("file"))
    );
    assert!(aws.calls_of(Op::StartAutomationExecution).is_empty());

    // A bad matcher on line 2: the reload is refused with file:line and the
    // running silences stay.
    std::fs::write(&file, silences_file("rack-move", "zone~nope")).unwrap();
    let (code, body) = call(&srv, reqwest::Method::POST, "/-/reload", Some(ADMIN), None).await;
    assert_eq!(code, 422, "{body}");
    let error = body["errors"][0].as_str().unwrap();
    assert!(error.contains("silences.yaml:2:"), "{error}");
    let listed = list(&srv).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["matchers"][0], "zone=\"ap-northeast-1a\"");

    // A good file is taken on reload.
    std::fs::write(&file, silences_file("other", "zone=\"ap-northeast-1c\"")).unwrap();
    let (code, body) = call(&srv, reqwest::Method::POST, "/-/reload", Some(ADMIN), None).await;
    assert_eq!(code, 200, "{body}");
    let listed = list(&srv).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"], "other");
}

async fn silence_survives_a_restart(url: &str) {
    let now = Utc::now();
    let silence = Silence {
        id: "s-1".into(),
        matchers: vec!["zone=\"ap-northeast-1a\"".into()],
        starts_at: now - Duration::minutes(1),
        ends_at: now + Duration::hours(2),
        created_by: "bob".into(),
        comment: "planned work".into(),
        source: "api".into(),
        expired_by: None,
    };
    let first = Store::connect(url).await.unwrap();
    assert!(first.insert_silence(&silence, now).await.unwrap());
    assert!(
        !first.insert_silence(&silence, now).await.unwrap(),
        "the id is taken"
    );
    drop(first);

    let second = Store::connect(url).await.unwrap();
    let seen = second.silences_ending_after(now).await.unwrap();
    // Stored at millisecond precision.
    let ms = |t: chrono::DateTime<Utc>| t.timestamp_millis();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        (&seen[0].id, &seen[0].matchers, ms(seen[0].ends_at)),
        (&silence.id, &silence.matchers, ms(silence.ends_at))
    );
    let expired = second
        .expire_silence("s-1", "alice", now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(expired.expired_by.as_deref(), Some("alice"));
    assert!(second.silences_ending_after(now).await.unwrap().is_empty());
    assert!(
        second
            .expire_silence("none", "alice", now)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn silence_created_on_one_sqlite_connection_is_seen_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    silence_survives_a_restart(&format!("sqlite://{}", dir.path().join("s.db").display())).await;
}

#[tokio::test]
async fn silence_created_on_one_postgres_connection_is_seen_after_a_restart() {
    silence_survives_a_restart(&support::postgres_database().await).await;
}

/// The real binary's `silence` commands, against the API with a person's
/// own token (and a read token to list).
#[tokio::test]
async fn cli_adds_lists_and_expires_silences_with_the_users_token() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, _aws) = start(dir.path(), "").await;
    // tokio's Command: a blocking wait would stall the runtime serving the
    // API the CLI calls.
    let cli = |args: Vec<String>, token: &str| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_dr-reactor"));
        cmd.arg("silence")
            .args(args)
            .args(["--url", &srv.base])
            .env_remove("DR_REACTOR_ADMIN_TOKEN")
            .env("DR_REACTOR_API_TOKEN", token);
        cmd.output()
    };
    let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let out = cli(
        s(&[
            "add",
            "--match",
            "zone=\"ap-northeast-1a\"",
            "--for",
            "2h",
            "--comment",
            "rack move",
        ]),
        &token_of("bob"),
    )
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("\tactive\tzone=\"ap-northeast-1a\"\t"),
        "{stdout}"
    );
    assert!(stdout.contains("by bob (api): rack move"), "{stdout}");
    let id = stdout.split('\t').next().unwrap().to_owned();

    // A person's own token reads (every person is a viewer), as a read
    // token does; a token of nobody does not.
    for token in [token_of("bob"), READ_TOKEN.to_owned()] {
        let out = cli(s(&["list"]), &token).await.unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listed = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(listed.lines().count(), 1, "{listed}");
        assert!(listed.starts_with(&id), "{listed}");
    }
    let out = cli(s(&["list"]), "nobody-has-this-token").await.unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("refused (401)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = cli(s(&["expire", &id]), &token_of("alice")).await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\texpired\t"));
    let out = cli(s(&["list"]), READ_TOKEN).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    let out = cli(s(&["expire", "nope"]), &token_of("alice"))
        .await
        .unwrap();
    assert!(!out.status.success(), "an unknown id is refused");
}
