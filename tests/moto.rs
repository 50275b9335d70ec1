//! Readiness and dispatch against moto's server (PyPI `moto[server]`), a
//! second AWS stand-in that nobody here wrote: it keeps the in-house fake
//! honest. The runbooks are created in moto through AWS's own API (boto3,
//! tests/support/moto_setup.py) and registered the same way in the fake;
//! both must give the same readiness report. Where moto lacks an operation
//! (SSM Automation executions), a test says so, and docs/dispatch.md lists
//! it.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use dr_reactor::dispatch::{AwsConfig, DispatchError, Dispatcher, RetryPolicy, Started};
use dr_reactor::plan::{Action, Step, idempotency_key};
use dr_reactor::readiness::check;
use dr_reactor::rules::RuleSet;
use dr_reactor::telemetry::Metrics;
use support::fake_aws::{Document, FakeAws, Function};
use support::{eventually, repo_path};

const SEOUL: &str = "ap-northeast-2";

/// moto's server on a loopback port, set up by moto_setup.py; killed when
/// dropped.
struct Moto {
    _child: tokio::process::Child,
    endpoint: String,
}

async fn moto() -> Moto {
    let port = support::binary::free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let child = tokio::process::Command::new("python3")
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs moto's server (pip install 'moto[server]'; .ci/run does)");
    let client = reqwest::Client::new();
    eventually("moto's server to answer", 30, || async {
        client
            .get(format!("{endpoint}/moto-api/"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    let setup = tokio::process::Command::new("python3")
        .arg(repo_path("tests/support/moto_setup.py"))
        .arg(&endpoint)
        .output()
        .await
        .unwrap();
    assert!(
        setup.status.success(),
        "moto_setup.py: {}",
        String::from_utf8_lossy(&setup.stderr)
    );
    Moto {
        _child: child,
        endpoint,
    }
}

/// What moto_setup.py creates in moto, registered in the in-house fake.
fn register_like_moto(fake: &FakeAws) {
    let automation = || Document::automation(&["Service"], &["AutomationAssumeRole"]);
    fake.register_document(SEOUL, "DR-Restore", automation().versions(&["1", "2"]));
    fake.register_document(SEOUL, "DR-Old", automation());
    fake.register_document(SEOUL, "DR-Params", automation());
    fake.register_document(
        SEOUL,
        "DR-Shell",
        Document::automation(&[], &[]).of_type("Command"),
    );
    fake.register_function(SEOUL, "dr-verify", Function::active(&["1", "live"]));
}

const CATALOGUE: &str = "regions:\n  ap-northeast-2: {dr_region: ap-northeast-1}\n  ap-northeast-1: {dr_region: ap-northeast-2}\nservices: {}\n";

const RULES: &str = r#"rules:
  - name: r
    match: {labels: ['alertname="RegionDown"']}
    correlate: {group_by: [region], window: 1h, when: {count: 1}}
    scenario: region_outage
    plan:
      steps:
        - {name: restore, ssm: {document: DR-Restore, document_version: "2", region: "{{ labels.region }}", parameters: {Service: x}}}
        - {name: old, ssm: {document: DR-Old, document_version: "3", region: ap-northeast-2, parameters: {Service: x}}}
        - {name: params, ssm: {document: DR-Params, region: ap-northeast-2, parameters: {Extra: x}}}
        - {name: shell, ssm: {document: DR-Shell, region: ap-northeast-2}}
        - {name: verify, lambda: {function: "dr-verify:live", region: ap-northeast-2}}
        - {name: canary, lambda: {function: "dr-verify:canary", region: ap-northeast-2}}
        - {name: missing, lambda: {function: dr-missing, region: ap-northeast-2}}
"#;

fn rules(dir: &Path) -> RuleSet {
    std::fs::write(dir.join("r.yaml"), RULES).unwrap();
    std::fs::write(dir.join("services.yaml"), CATALOGUE).unwrap();
    RuleSet::load(&[dir.join("r.yaml")], Some(&dir.join("services.yaml"))).unwrap()
}

/// A dispatcher for `endpoint` with `sdk`'s credentials, one attempt per
/// call: moto answers what it lacks with a 500, which is not worth retrying
/// here.
fn dispatcher(endpoint: String, sdk: aws_config::SdkConfig) -> Arc<Dispatcher> {
    let cfg = AwsConfig {
        endpoint_url: Some(endpoint),
        retry: RetryPolicy {
            max_attempts: std::num::NonZeroU32::new(1).unwrap(),
            ..RetryPolicy::default()
        },
        ..AwsConfig::default()
    };
    Arc::new(Dispatcher::with_sdk_config(sdk, &cfg, Metrics::new()))
}

#[tokio::test]
async fn readiness_reports_the_same_against_moto_and_the_fake() {
    let dir = tempfile::tempdir().unwrap();
    let rules = rules(dir.path());
    let moto = moto().await;
    let fake = FakeAws::start().await;
    register_like_moto(&fake);

    let against_moto = check::once(
        &dispatcher(moto.endpoint.clone(), fake.sdk_config()),
        &rules,
    )
    .await;
    let against_fake = check::once(&dispatcher(fake.endpoint(), fake.sdk_config()), &rules).await;

    let summary = |r: &dr_reactor::readiness::Report| -> Vec<(String, String, Vec<String>)> {
        r.runbooks
            .iter()
            .map(|s| (s.runbook.clone(), s.region.clone(), s.problems.clone()))
            .collect()
    };
    let s = |x: &str| x.to_owned();
    assert_eq!(
        summary(&against_moto),
        [
            (s("DR-Old"), s(SEOUL), vec![s("version 3 not found")]),
            (
                s("DR-Params"),
                s(SEOUL),
                vec![
                    s(
                        "parameter Extra is not declared by the document (passed by rule r step params)"
                    ),
                    s(
                        "required parameter Service (no default) is not passed by rule r step params"
                    ),
                ]
            ),
            (
                s("DR-Restore"),
                s("ap-northeast-1"),
                vec![s("document not found")]
            ),
            (s("DR-Restore"), s(SEOUL), vec![]),
            (
                s("DR-Shell"),
                s(SEOUL),
                vec![s("document type is Command, not Automation")]
            ),
            (s("dr-missing"), s(SEOUL), vec![s("function not found")]),
            (
                s("dr-verify:canary"),
                s(SEOUL),
                vec![s("qualifier canary not found")]
            ),
            (s("dr-verify:live"), s(SEOUL), vec![]),
        ]
    );
    assert_eq!(against_moto.runbooks, against_fake.runbooks);
}

fn step(action: Action) -> Step {
    Step {
        name: "s".into(),
        service: None,
        action,
        idempotency_key: idempotency_key("inc-moto", 0),
        timeout_secs: None,
        record: false,
        failback: None,
    }
}

#[tokio::test]
async fn lambda_invoke_runs_against_moto() {
    let moto = moto().await;
    let d = dispatcher(moto.endpoint.clone(), FakeAws::sdk_config_static());
    let started = d
        .start(&step(Action::Lambda {
            function: "dr-verify:live".into(),
            region: SEOUL.into(),
            payload: serde_json::json!({"service": "orders"}),
        }))
        .await
        .unwrap();
    let Started::Finished(outcome) = started else {
        panic!("a Lambda step finishes in start: {started:?}")
    };
    assert!(outcome.success, "{outcome:?}");
    // moto (without Docker) returns the event: what the SDK sent.
    assert_eq!(
        outcome.outputs,
        serde_json::json!({"idempotency_key": idempotency_key("inc-moto", 0), "step": "s",
                           "payload": {"service": "orders"}})
    );
    // moto's Docker-less Lambda runs a function that does not exist, where
    // AWS (and the fake) answer ResourceNotFoundException; readiness
    // (GetFunction) still reports it missing, as the test above shows.
    let missing = d
        .start(&step(Action::Lambda {
            function: "dr-missing".into(),
            region: SEOUL.into(),
            payload: serde_json::Value::Null,
        }))
        .await;
    assert!(
        matches!(&missing, Ok(Started::Finished(o)) if o.success),
        "moto now refuses a missing function: update docs/dispatch.md: {missing:?}"
    );
}

/// moto has no SSM Automation executions: Start, Get and Stop all answer
/// 500. When a moto release adds them, this fails: move the SSM dispatch
/// tests onto moto too and drop the gap from docs/dispatch.md.
#[tokio::test]
async fn moto_lacks_automation_executions() {
    let moto = moto().await;
    let d = dispatcher(moto.endpoint.clone(), FakeAws::sdk_config_static());
    let ssm = step(Action::Ssm {
        document: "DR-Restore".into(),
        document_version: None,
        region: SEOUL.into(),
        parameters: [("Service".to_owned(), vec!["orders".to_owned()])].into(),
    });
    let unimplemented =
        |e: DispatchError| matches!(e, DispatchError::Unavailable { status: 500, .. });
    assert!(unimplemented(d.start(&ssm).await.unwrap_err()));
    let id = "8a1f3c9e-0000-4000-8000-000000000000";
    assert!(unimplemented(d.poll(&ssm, id).await.unwrap_err()));
    assert!(unimplemented(d.stop(&ssm, id).await.unwrap_err()));
    // And the wait above is not a slow server: DescribeDocument answers.
    tokio::time::timeout(
        Duration::from_secs(5),
        d.describe_document(SEOUL, "DR-Restore", None),
    )
    .await
    .unwrap()
    .unwrap();
}

/// Finished incidents' recovery reports are uploaded to an S3-compatible
/// bucket (moto's S3) under the day partition, as the JSON the API serves.
#[tokio::test]
async fn finished_reports_are_uploaded_to_an_s3_bucket() {
    let moto = moto().await;
    let sdk = FakeAws::sdk_config_static();
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .endpoint_url(&moto.endpoint)
            .force_path_style(true)
            .http_client(dr_reactor::primitives::aws_http::https_client())
            .build(),
    );
    s3.create_bucket().bucket("dr-audit").send().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = support::config_text(
        dir.path(),
        &format!(
            "reports:\n  s3:\n    bucket: dr-audit\n    prefix: /dr-reactor/reports/\n    \
             endpoint_url: {}\n    force_path_style: true\n",
            moto.endpoint
        ),
    );
    let srv = support::Server::start_with_aws(dir.path(), &cfg, sdk).await;
    let alerts: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo_path("examples/az-failure.json")).unwrap())
            .unwrap();
    srv.post(&alerts).await;
    // Dry-run: the zone incident records its plan and ends `suppressed`.
    let mut id = String::new();
    for _ in 0..250 {
        if let Some(i) = srv
            .incidents()
            .await
            .into_iter()
            .find(|i| i["scenario"] == "az_failure" && i["state"] == "suppressed")
        {
            id = i["id"].as_str().unwrap().to_owned();
            break;
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    assert!(!id.is_empty(), "{:#?}", srv.incidents().await);
    let listed = || async {
        s3.list_objects_v2()
            .bucket("dr-audit")
            .send()
            .await
            .unwrap()
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect::<Vec<String>>()
    };
    eventually("the report in the bucket", 10, || async {
        listed().await.iter().any(|k| k.contains(&id))
    })
    .await;
    let day = chrono::Utc::now().format("%Y-%m-%d");
    let key = format!("dr-reactor/reports/dt={day}/{id}.json");
    assert!(listed().await.contains(&key), "{:?}", listed().await);
    let body = s3
        .get_object()
        .bucket("dr-audit")
        .key(&key)
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    let report: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(report["incident"], id.as_str());
    assert_eq!(
        report,
        srv.get(&format!("/api/v1/incidents/{id}/report")).await,
        "the archived report is the one the API serves"
    );
    // The service incidents the zone absorbed finished too: one object each.
    let keys = listed().await;
    assert!(keys.len() > 1, "{keys:?}");
    assert_eq!(
        srv.metric(r#"dr_reactor_reports_archived_total{outcome="ok",target="s3"}"#)
            .await,
        keys.len() as f64
    );
    srv.stop().await;
}
