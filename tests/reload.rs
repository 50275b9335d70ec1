//! Hot reload: an invalid rule set is rejected whole and the running one
//! keeps working; a valid change is picked up from the API, from the file
//! watcher, and from SIGHUP (the real binary as a child process).

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};

use support::*;

const RULE: &str = "rules:
  - name: one
    match: {labels: ['alertname=\"One\"']}
    correlate: {group_by: [region], window: 1m, when: {count: 1}}
    scenario: one
";

const TWO_RULES: &str = "rules:
  - name: one
    match: {labels: ['alertname=\"One\"']}
    correlate: {group_by: [region], window: 1m, when: {count: 1}}
    scenario: one
  - name: two
    match: {labels: ['alertname=\"Two\"']}
    correlate: {group_by: [region], window: 1m, when: {count: 1}}
    scenario: two
";

fn config(dir: &Path, listen: &str, watch: bool) -> String {
    format!(
        "listen: {listen}\nstore:\n  url: sqlite://{db}\nrules:\n  paths: [{rules}]\n  evaluation_interval: 100ms\n  watch: {watch}\n\
         webhook:\n  auth:\n    bearer_token: {TOKEN}\napi:\n  admin_token: admin-secret\n",
        db = dir.join("db.sqlite").display(),
        rules = dir.join("rules").display(),
    )
}

fn setup(rules: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    std::fs::write(dir.path().join("rules/r.yaml"), rules).unwrap();
    dir
}

async fn reload(srv: &Server, auth: Option<&str>) -> (u16, serde_json::Value) {
    let mut req = srv.client.post(format!("{}/-/reload", srv.base));
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test]
async fn api_reload_rejects_invalid_sets_whole_and_applies_valid_ones() {
    let dir = setup(RULE);
    let srv = Server::start_with(dir.path(), &config(dir.path(), "127.0.0.1:0", false)).await;
    assert_eq!(reload(&srv, None).await.0, 401);
    assert_eq!(
        reload(&srv, Some("Bearer s3cret-token")).await.0,
        401,
        "the webhook token is not an admin token"
    );

    std::fs::write(
        dir.path().join("rules/r.yaml"),
        TWO_RULES.replace(
            "count: 1}}\n    scenario: two",
            "count: 0x}}\n    scenario: two",
        ),
    )
    .unwrap();
    let (code, body) = reload(&srv, Some("Bearer admin-secret")).await;
    assert_eq!(code, 422, "{body}");
    assert!(
        body["errors"][0].as_str().unwrap().contains("r.yaml:8:"),
        "{body}"
    );
    let ready = srv.get("/readyz").await;
    assert_eq!(ready["ready"], true, "the old set keeps running");
    assert_eq!(ready["rules"]["rules"], 1);
    assert!(
        ready["rules"]["last_error"]
            .as_str()
            .unwrap()
            .contains("r.yaml:8:")
    );
    assert_eq!(
        srv.metric(r#"dr_reactor_rule_reloads_total{result="error"}"#)
            .await,
        1.0
    );

    // The old rule still decides.
    srv.post(&payload(vec![alert(
        "firing",
        &[("alertname", "One"), ("region", "r")],
    )]))
    .await;
    srv.wait_for("incident from the old rule", || async {
        srv.incidents().await.len() == 1
    })
    .await;

    std::fs::write(dir.path().join("rules/r.yaml"), TWO_RULES).unwrap();
    let (code, body) = reload(&srv, Some("Bearer admin-secret")).await;
    assert_eq!((code, body["rules"].as_u64()), (200, Some(2)), "{body}");
    assert!(srv.get("/readyz").await["rules"]["last_error"].is_null());
    srv.post(&payload(vec![alert(
        "firing",
        &[("alertname", "Two"), ("region", "r")],
    )]))
    .await;
    srv.wait_for("incident from the new rule", || async {
        srv.incidents().await.iter().any(|i| i["scenario"] == "two")
    })
    .await;
    // The first incident is untouched by the reload.
    assert_eq!(
        srv.incidents()
            .await
            .iter()
            .filter(|i| i["closed_at"].is_null())
            .count(),
        2
    );
    srv.stop().await;
}

#[tokio::test]
async fn reload_without_admin_token_configured_is_forbidden() {
    let dir = setup(RULE);
    let cfg =
        config(dir.path(), "127.0.0.1:0", false).replace("api:\n  admin_token: admin-secret\n", "");
    let srv = Server::start_with(dir.path(), &cfg).await;
    let (code, body) = reload(&srv, Some("Bearer anything")).await;
    assert_eq!(code, 403);
    assert!(body["error"].as_str().unwrap().contains("api.admin_token"));
    srv.stop().await;
}

#[tokio::test]
async fn file_changes_are_picked_up() {
    let dir = setup(RULE);
    let srv = Server::start_with(dir.path(), &config(dir.path(), "127.0.0.1:0", true)).await;
    std::fs::write(dir.path().join("rules/r.yaml"), TWO_RULES).unwrap();
    srv.wait_for("watcher reload", || async {
        srv.get("/readyz").await["rules"]["rules"] == 2
    })
    .await;
    std::fs::write(dir.path().join("rules/r.yaml"), "rules: [").unwrap();
    srv.wait_for("rejected reload", || async {
        srv.get("/readyz").await["rules"]["last_error"].is_string()
    })
    .await;
    assert_eq!(srv.get("/readyz").await["rules"]["rules"], 2);
    srv.stop().await;
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// SIGHUP also reopens the audit file, as logrotate needs: after the file
/// is moved away and the signal sent, new events go to a new file.
#[tokio::test]
async fn sighup_reloads_the_running_binary_and_reopens_the_audit_file() {
    let dir = setup(RULE);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = dir.path().join("c.yaml");
    let audit = dir.path().join("audit.jsonl");
    std::fs::write(
        &cfg,
        config(dir.path(), &format!("127.0.0.1:{port}"), false)
            + &format!("audit:\n  file: {}\n", audit.display()),
    )
    .unwrap();
    let child = Proc(
        Command::new(env!("CARGO_BIN_EXE_dr-reactor"))
            .args(["serve", "--config"])
            .arg(&cfg)
            .env_remove("DR_REACTOR_WEBHOOK_TOKEN")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let rules = || async {
        match client
            .get(format!("{base}/readyz"))
            .bearer_auth("admin-secret")
            .send()
            .await
        {
            Ok(r) => r
                .json::<serde_json::Value>()
                .await
                .ok()
                .map(|v| v["rules"]["rules"].clone()),
            Err(_) => None,
        }
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while rules().await != Some(1.into()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "binary did not become ready"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let fire = |name: &'static str| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let body = payload(vec![alert(
                "firing",
                &[("alertname", name), ("region", "r1")],
            )]);
            post_alerts(&client, &base, &body).await;
        }
    };
    let lines = |path: &Path| {
        std::fs::read_to_string(path)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    fire("One").await;
    while lines(&audit) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "nothing audited");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    std::fs::rename(&audit, dir.path().join("audit.jsonl.1")).unwrap();

    std::fs::write(dir.path().join("rules/r.yaml"), TWO_RULES).unwrap();
    let status = Command::new("kill")
        .args(["-HUP", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    while rules().await != Some(2.into()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "SIGHUP did not reload"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    fire("Two").await;
    while lines(&audit) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "SIGHUP did not reopen the audit file"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// One key per line, so each hostile value below has a line of its own.
const SPREAD_RULE: &str = "rules:
  - name: one
    match: {labels: ['alertname=\"One\"']}
    correlate:
      group_by: [region]
      window: 1m
      when: {count: 1}
    scenario: one
    limits: {rate: 1/1m}
    approval: {mode: auto, timeout: 1h}
";

/// Values the runtime cannot take (they used to be accepted and then
/// panic the pipeline) are refused on reload with file:line, and the
/// running rules keep deciding.
#[tokio::test]
async fn reload_refuses_values_the_runtime_cannot_take() {
    let dir = setup(SPREAD_RULE);
    let srv = Server::start_with(dir.path(), &config(dir.path(), "127.0.0.1:0", false)).await;
    let hostile = [
        (
            "rate: 1/1m",
            "rate: 5/1ns",
            9,
            "shorter than the minimum 1ms",
        ),
        (
            "rate: 1/1m",
            "rate: 4000000000/1s",
            9,
            "one per microsecond",
        ),
        ("rate: 1/1m", "rate: 0/1m", 9, "N must be greater than 0"),
        (
            "rate: 1/1m",
            "per_target: 1/400days",
            9,
            "longer than the maximum",
        ),
        (
            "window: 1m",
            "window: 300000y",
            6,
            "longer than the maximum 30days",
        ),
        ("window: 1m", "window: 0s", 6, "greater than 0"),
        ("timeout: 1h", "timeout: 300000y", 10, "approval.timeout"),
        ("count: 1}", "absent: {for: 300000y}}", 7, "absent.for"),
        ("count: 1", "count: 0", 7, "count must be at least 1"),
        (
            "count: 1",
            "distinct: {service: 0}",
            7,
            "distinct.service must be at least 1",
        ),
        (
            "rate: 1/1m",
            "max_concurrent: 0",
            9,
            "max_concurrent must be at least 1",
        ),
        (
            "[region]",
            "[bad-name]",
            5,
            "\"bad-name\" is not a label name",
        ),
    ];
    for (from, to, line, text) in hostile {
        assert!(SPREAD_RULE.contains(from), "{from}");
        std::fs::write(
            dir.path().join("rules/r.yaml"),
            SPREAD_RULE.replace(from, to),
        )
        .unwrap();
        let (code, body) = reload(&srv, Some("Bearer admin-secret")).await;
        assert_eq!(code, 422, "{to}: {body}");
        let error = body["errors"][0].as_str().unwrap();
        assert!(
            error.contains(&format!("r.yaml:{line}:")) && error.contains(text),
            "{to}: {error}"
        );
    }
    // Each regex compiles alone; the two rules' set on `alertname` is over
    // the regex size limit.
    let regexes = TWO_RULES
        .replace(r#"alertname="One""#, r"alertname=~\w{200}")
        .replace(r#"alertname="Two""#, r"alertname=~\W{200}");
    assert!(regexes.contains("W{200}"), "{regexes}");
    std::fs::write(dir.path().join("rules/r.yaml"), regexes).unwrap();
    let (code, body) = reload(&srv, Some("Bearer admin-secret")).await;
    assert_eq!(code, 422, "{body}");
    let errors: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].contains("r.yaml:2:") && errors[1].contains("r.yaml:6:"),
        "{errors:?}"
    );
    assert!(errors[0].contains("too large together"), "{errors:?}");

    let ready = srv.get("/readyz").await;
    assert_eq!(ready["ready"], true, "{ready}");
    srv.post(&payload(vec![alert(
        "firing",
        &[("alertname", "One"), ("region", "r")],
    )]))
    .await;
    srv.wait_for("incident from the running rule", || async {
        srv.incidents().await.len() == 1
    })
    .await;
    srv.stop().await;
}
