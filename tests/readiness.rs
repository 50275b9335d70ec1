//! Runbook readiness against the fake AWS: every document and function the
//! rules and the catalogue can call, checked in every region they can be
//! called in, with the real SDK clients. Each test asserts which look-ups
//! the fake saw, so "checked in both regions" means two signed calls.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use dr_reactor::dispatch::{AwsConfig, Dispatcher};
use dr_reactor::readiness::{Report, check};
use dr_reactor::rules::RuleSet;
use dr_reactor::telemetry::Metrics;
use serde_json::Value;
use support::approval::{ADMIN, fire, wait_state};
use support::fake_aws::{Document, FakeAws, Function, Op};
use support::fake_slack::FakeSlack;
use support::*;

const SEOUL: &str = "ap-northeast-2";
const TOKYO: &str = "ap-northeast-1";

/// Seoul and Tokyo fail over to each other; the catalogue's runbook runs
/// in the DR region, so it is called in both.
const CATALOGUE: &str = r#"
regions:
  ap-northeast-2: {dr_region: ap-northeast-1}
  ap-northeast-1: {dr_region: ap-northeast-2}
runbooks:
  restore:
    ssm:
      document: DR-Restore
      region: "{{ dr_region }}"
      parameters: {Service: "{{ service.name }}"}
services:
  orders: {rto: 10m, runbooks: {region_outage: restore}}
"#;

fn rule(steps: &str) -> String {
    format!(
        "rules:\n  - name: outage\n    match: {{labels: ['alertname=\"RegionDown\"']}}\n    correlate: {{group_by: [region], window: 1h, when: {{count: 1}}}}\n    scenario: region_outage\n    approval: {{mode: one, groups: [leads], include_owners: false, timeout: 1h}}\n    plan:\n      from_catalogue: true\n      services: all\n{steps}"
    )
}

/// One step of each kind of problem, and two that are fine.
const STEPS: &str = r#"      steps:
        - {name: missing, ssm: {document: DR-Missing, region: ap-northeast-2}}
        - {name: command, ssm: {document: DR-Command, region: ap-northeast-2}}
        - {name: old, ssm: {document: DR-Versioned, document_version: "3", region: ap-northeast-2}}
        - {name: params, ssm: {document: DR-Params, region: ap-northeast-2, parameters: {Service: a, Extra: b}}}
        - {name: gone, lambda: {function: dr-gone, region: ap-northeast-2}}
        - {name: pending, lambda: {function: dr-pending, region: ap-northeast-2}}
        - {name: alias, lambda: {function: "dr-verify:canary", region: ap-northeast-2}}
        - {name: good doc, ssm: {document: DR-Good, document_version: "2", region: "{{ labels.region }}", parameters: {Service: a}}}
        - {name: good fn, lambda: {function: "dr-verify:live", region: ap-northeast-2}}
"#;

fn write_rules(dir: &Path, steps: &str) {
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    std::fs::write(dir.join("rules/r.yaml"), rule(steps)).unwrap();
    std::fs::write(dir.join("services.yaml"), CATALOGUE).unwrap();
}

fn load(dir: &Path) -> RuleSet {
    RuleSet::load(&[dir.join("rules")], Some(&dir.join("services.yaml"))).unwrap()
}

/// Everything the rules call, registered as it should be, except what
/// STEPS gets wrong on purpose.
fn register(fake: &FakeAws) {
    for region in [SEOUL, TOKYO] {
        fake.register_document(
            region,
            "DR-Good",
            Document::automation(&["Service"], &["AutomationAssumeRole"]).versions(&["1", "2"]),
        );
    }
    fake.register_document(TOKYO, "DR-Restore", Document::automation(&["Service"], &[]));
    fake.register_document(
        SEOUL,
        "DR-Command",
        Document::automation(&[], &[]).of_type("Command"),
    );
    fake.register_document(
        SEOUL,
        "DR-Versioned",
        Document::automation(&[], &[]).versions(&["1", "2"]),
    );
    fake.register_document(
        SEOUL,
        "DR-Params",
        Document::automation(&["Service", "Region"], &[]),
    );
    fake.register_function(SEOUL, "dr-pending", Function::in_state("Pending"));
    fake.register_function(SEOUL, "dr-verify", Function::active(&["live"]));
}

fn dispatcher(fake: &FakeAws) -> Arc<Dispatcher> {
    let cfg = AwsConfig {
        endpoint_url: Some(fake.endpoint()),
        ..AwsConfig::default()
    };
    Arc::new(Dispatcher::with_sdk_config(
        fake.sdk_config(),
        &cfg,
        Metrics::new(),
    ))
}

fn problems<'a>(report: &'a Report, runbook: &str, region: &str) -> Vec<&'a str> {
    let status = report
        .runbooks
        .iter()
        .find(|r| r.runbook == runbook && r.region == region)
        .unwrap_or_else(|| panic!("{runbook} in {region} was not checked: {report:#?}"));
    assert_eq!(status.ready, status.problems.is_empty());
    status.problems.iter().map(String::as_str).collect()
}

#[tokio::test]
async fn each_problem_is_reported_and_ready_runbooks_are_not() {
    let dir = tempfile::tempdir().unwrap();
    write_rules(dir.path(), STEPS);
    let fake = FakeAws::start().await;
    register(&fake);
    let report = check::once(&dispatcher(&fake), &load(dir.path())).await;

    assert_eq!(
        problems(&report, "DR-Missing", SEOUL),
        ["document not found"]
    );
    assert_eq!(
        problems(&report, "DR-Command", SEOUL),
        ["document type is Command, not Automation"]
    );
    assert_eq!(
        problems(&report, "DR-Versioned", SEOUL),
        ["version 3 not found"]
    );
    assert_eq!(
        problems(&report, "DR-Params", SEOUL),
        [
            "parameter Extra is not declared by the document (passed by rule outage step params)",
            "required parameter Region (no default) is not passed by rule outage step params",
        ]
    );
    assert_eq!(problems(&report, "dr-gone", SEOUL), ["function not found"]);
    assert_eq!(
        problems(&report, "dr-pending", SEOUL),
        ["function state is Pending, not Active: The function is Pending"]
    );
    assert_eq!(
        problems(&report, "dr-verify:canary", SEOUL),
        ["qualifier canary not found"]
    );
    // `{{ labels.region }}` and `{{ dr_region }}` resolve to every region
    // the catalogue can give: DR-Good in both, DR-Restore in both, and only
    // Tokyo has it.
    assert!(problems(&report, "DR-Good", SEOUL).is_empty());
    assert!(problems(&report, "DR-Good", TOKYO).is_empty());
    assert!(problems(&report, "dr-verify:live", SEOUL).is_empty());
    assert!(problems(&report, "DR-Restore", TOKYO).is_empty());
    assert_eq!(
        problems(&report, "DR-Restore", SEOUL),
        ["document not found"]
    );
    assert_eq!(report.runbooks.len(), 12, "{report:#?}");
    assert_eq!(report.not_ready().count(), 8);
    assert!(report.unresolved.is_empty(), "{:?}", report.unresolved);

    // One look-up per runbook, region and version, signed for its region;
    // qualifier misses ask again for the bare function.
    let mut described: Vec<(String, String, Option<String>)> = fake
        .calls_of(Op::DescribeDocument)
        .into_iter()
        .map(|c| {
            (
                c.target,
                c.region,
                c.body["DocumentVersion"].as_str().map(str::to_owned),
            )
        })
        .collect();
    described.sort();
    let want =
        |d: &str, r: &str, v: Option<&str>| (d.to_owned(), r.to_owned(), v.map(str::to_owned));
    assert_eq!(
        described,
        [
            want("DR-Command", SEOUL, None),
            want("DR-Good", TOKYO, Some("2")),
            want("DR-Good", SEOUL, Some("2")),
            want("DR-Missing", SEOUL, None),
            want("DR-Params", SEOUL, None),
            want("DR-Restore", TOKYO, None),
            want("DR-Restore", SEOUL, None),
            want("DR-Versioned", SEOUL, Some("3")),
        ]
    );
    let mut functions: Vec<String> = fake
        .calls_of(Op::GetFunction)
        .into_iter()
        .map(|c| c.target)
        .collect();
    functions.sort();
    assert_eq!(
        functions,
        [
            "dr-gone",
            "dr-pending",
            "dr-verify",
            "dr-verify:canary",
            "dr-verify:live"
        ]
    );
    assert!(fake.calls().is_empty(), "look-ups only: {:?}", fake.calls());
}

#[tokio::test]
async fn the_fake_refuses_what_readiness_reports() {
    // The same registrations make Start and Invoke fail the way AWS would,
    // so a runbook reported not ready is one that would fail at dispatch.
    let dir = tempfile::tempdir().unwrap();
    write_rules(dir.path(), STEPS);
    let fake = FakeAws::start().await;
    register(&fake);
    let d = dispatcher(&fake);
    let step = |name: &str, action: dr_reactor::plan::Action| dr_reactor::plan::Step {
        name: name.into(),
        service: None,
        action,
        idempotency_key: dr_reactor::plan::idempotency_key("inc-r", 0),
        timeout_secs: None,
        record: false,
        failback: None,
    };
    let ssm =
        |document: &str, version: Option<&str>, params: &[&str]| dr_reactor::plan::Action::Ssm {
            document: document.into(),
            document_version: version.map(str::to_owned),
            region: SEOUL.into(),
            parameters: params
                .iter()
                .map(|p| (p.to_string(), vec!["x".to_owned()]))
                .collect(),
        };
    let lambda = |function: &str| dr_reactor::plan::Action::Lambda {
        function: function.into(),
        region: SEOUL.into(),
        payload: Value::Null,
    };
    let code =
        |r: Result<dr_reactor::dispatch::Started, dr_reactor::dispatch::DispatchError>| match r {
            Err(dr_reactor::dispatch::DispatchError::Rejected { code, .. }) => code,
            other => panic!("expected a rejection, got {other:?}"),
        };
    assert_eq!(
        code(
            d.start(&step("s", ssm("DR-Versioned", Some("3"), &[])))
                .await
        ),
        "AutomationDefinitionVersionNotFoundException"
    );
    assert_eq!(
        code(
            d.start(&step("s", ssm("DR-Params", None, &["Service", "Extra"])))
                .await
        ),
        "InvalidAutomationExecutionParametersException"
    );
    assert_eq!(
        code(d.start(&step("s", ssm("DR-Command", None, &[]))).await),
        "InvalidAutomationExecutionParametersException"
    );
    assert_eq!(
        code(d.start(&step("l", lambda("dr-verify:canary"))).await),
        "ResourceNotFoundException"
    );
    // Pending is retried as transient, then given up on.
    let pending = d.start(&step("l", lambda("dr-pending"))).await.unwrap_err();
    assert!(
        pending.to_string().contains("ResourceConflictException"),
        "{pending}"
    );
    assert!(
        d.start(&step("s", ssm("DR-Params", None, &["Service", "Region"])))
            .await
            .is_ok()
    );
    assert!(d.start(&step("l", lambda("dr-verify:live"))).await.is_ok());
    assert_eq!(fake.executions_started().len(), 1);
}

/// A server with live dispatch to `fake`, Slack to `slack`, one rule whose
/// plan is DR-Restore from the catalogue, checked every `interval`.
async fn serve(dir: &Path, fake: &FakeAws, slack: &FakeSlack, interval: &str) -> Server {
    write_rules(dir, "");
    let users = support::approval::api_users(&["alice"]);
    let cfg = format!(
        "listen: 127.0.0.1:0\nstore:\n  url: sqlite://{db}\nrules:\n  paths: [{rules}]\n  catalogue: {cat}\n  evaluation_interval: 100ms\n  watch: false\n\
         webhook:\n  auth:\n    bearer_token: {TOKEN}\napi:\n  admin_token: {ADMIN}\n  users:\n{users}dispatch:\n  dry_run: false\n\
         approval:\n  directory:\n    leads: [alice]\n\
         aws:\n  endpoint_url: {aws}\n  default_region: {TOKYO}\n  poll_interval: 50ms\n\
         readiness:\n  interval: {interval}\n\
         slack:\n  bot_token: xoxb-r\n  signing_secret: s3\n  channel: C1\n  api_url: {slack}\n",
        db = dir.join("db.sqlite").display(),
        rules = dir.join("rules").display(),
        cat = dir.join("services.yaml").display(),
        aws = fake.endpoint(),
        slack = slack.api_url(),
    );
    Server::start_with_aws(dir, &cfg, fake.sdk_config()).await
}

async fn readiness_detail(srv: &Server) -> Value {
    let (code, body) = srv.get_any("/readyz").await;
    assert_eq!(code, 200, "a runbook not ready never fails /readyz: {body}");
    body["readiness"].clone()
}

const GAUGE_SEOUL: &str =
    r#"dr_reactor_runbook_ready{region="ap-northeast-2",runbook="DR-Restore"}"#;
const GAUGE_TOKYO: &str =
    r#"dr_reactor_runbook_ready{region="ap-northeast-1",runbook="DR-Restore"}"#;

#[tokio::test]
async fn the_leader_reports_gauge_readyz_and_slack_once_per_transition() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeAws::start().await;
    fake.register_document(TOKYO, "DR-Restore", Document::automation(&["Service"], &[]));
    let slack = FakeSlack::start("xoxb-r").await;
    let srv = serve(dir.path(), &fake, &slack, "200ms").await;

    srv.wait_for("the first check", || async {
        readiness_detail(&srv).await["checked"] == true
    })
    .await;
    let detail = readiness_detail(&srv).await;
    assert_eq!(detail["all_ready"], false);
    assert_eq!(
        detail["not_ready"],
        serde_json::json!(["DR-Restore in ap-northeast-2 (document not found)"])
    );
    // The probe without credentials gets the status only.
    let bare: Value = srv
        .client
        .get(format!("{}/readyz", srv.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bare, serde_json::json!({"status": "ready"}));
    assert_eq!(srv.metric(GAUGE_SEOUL).await, 0.0);
    assert_eq!(srv.metric(GAUGE_TOKYO).await, 1.0);

    srv.wait_for("the notice", || async { !slack.notices().is_empty() })
        .await;
    let first = slack.notices()[0].text.clone();
    assert!(
        first.starts_with("Runbook not ready: DR-Restore in ap-northeast-2 (document not found). Plans that call it: catalogue runbook restore."),
        "{first}"
    );
    // Several more checks while it stays not ready: no second notice.
    let checked = readiness_detail(&srv).await["report"]["checked_at"].clone();
    srv.wait_for("two more checks", || async {
        let now = readiness_detail(&srv).await["report"]["checked_at"].clone();
        now != checked && {
            tokio::time::sleep(Duration::from_millis(450)).await;
            true
        }
    })
    .await;
    assert_eq!(slack.notices().len(), 1, "{:?}", slack.notices());

    // Ready again, then gone again: a second transition, a second notice.
    fake.register_document(SEOUL, "DR-Restore", Document::automation(&["Service"], &[]));
    srv.wait_for("ready in Seoul", || async {
        srv.metric(GAUGE_SEOUL).await == 1.0
    })
    .await;
    assert_eq!(readiness_detail(&srv).await["all_ready"], true);
    assert_eq!(slack.notices().len(), 1);
    fake.register_document(
        SEOUL,
        "DR-Restore",
        Document::automation(&["Service"], &[]).of_type("Command"),
    );
    srv.wait_for("the second notice", || async { slack.notices().len() == 2 })
        .await;
    assert!(
        slack.notices()[1]
            .text
            .contains("DR-Restore in ap-northeast-2 (document type is Command, not Automation)")
    );
    assert_eq!(srv.metric(GAUGE_SEOUL).await, 0.0);
    assert!(fake.calls().is_empty(), "nothing acted: {:?}", fake.calls());
    srv.stop().await;
}

#[tokio::test]
async fn an_incident_needing_a_runbook_not_ready_says_so_before_approval() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeAws::start().await;
    // Seoul fails over to Tokyo, where DR-Restore is missing.
    fake.register_document(SEOUL, "DR-Restore", Document::automation(&["Service"], &[]));
    let slack = FakeSlack::start("xoxb-r").await;
    let srv = serve(dir.path(), &fake, &slack, "30m").await;
    srv.wait_for("the first check", || async {
        readiness_detail(&srv).await["checked"] == true
    })
    .await;

    srv.post(&fire("RegionDown", SEOUL)).await;
    let id = wait_state(&srv, SEOUL, "awaiting_approval").await;
    let line = "runbook not ready: DR-Restore in ap-northeast-1 (document not found)";
    let events = support::approval::events(&srv, &id).await;
    let note = events
        .iter()
        .find(|e| e["kind"] == "runbook_not_ready")
        .expect("recorded");
    assert_eq!(note["reason"], line);
    srv.wait_for("the incident message", || async {
        !slack.messages().is_empty()
    })
    .await;
    let blocks = slack.messages()[0].blocks.to_string();
    assert!(blocks.contains(line), "{blocks}");
    // Said, not held: it waits for a person like any other plan.
    assert!(fake.calls().is_empty());
    srv.stop().await;
}

#[tokio::test]
async fn the_cli_exits_non_zero_when_a_runbook_is_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    write_rules(dir.path(), "");
    let fake = FakeAws::start().await;
    fake.register_document(TOKYO, "DR-Restore", Document::automation(&["Service"], &[]));
    let config = dir.path().join("c.yaml");
    std::fs::write(
        &config,
        format!(
            "rules:\n  paths: [rules]\n  catalogue: services.yaml\nwebhook:\n  auth:\n    bearer_token: t\naws:\n  endpoint_url: {}\n  default_region: {TOKYO}\n  retry: {{max_attempts: 1}}\n",
            fake.endpoint()
        ),
    )
    .unwrap();
    let run = |output: &'static str| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_dr-reactor"))
            .args(["readiness", "--output", output, "--config"])
            .arg(&config)
            .env("AWS_ACCESS_KEY_ID", support::fake_aws::ACCESS_KEY_ID)
            .env(
                "AWS_SECRET_ACCESS_KEY",
                support::fake_aws::SECRET_ACCESS_KEY,
            )
            .env_remove("AWS_PROFILE")
            .output()
    };
    let out = run("json").await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let not_ready: Vec<&Value> = report["runbooks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["ready"] == false)
        .collect();
    assert_eq!(not_ready.len(), 1, "{report:#}");
    assert_eq!(not_ready[0]["region"], SEOUL);
    assert_eq!(not_ready[0]["problems"][0], "document not found");

    fake.register_document(SEOUL, "DR-Restore", Document::automation(&["Service"], &[]));
    let out = run("text").await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("ready      ssm DR-Restore in ap-northeast-2"),
        "{text}"
    );
    assert!(
        text.ends_with("2 runbook(s) checked, 0 not ready, 0 step(s) unchecked\n"),
        "{text}"
    );
    assert_eq!(fake.lookups().len(), 4, "two per run: one per region");
}
