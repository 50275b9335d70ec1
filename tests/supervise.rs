//! Supervision: a panicking pipeline is restarted from the store, counted,
//! and reported by `/readyz` while it is down; the plan runner goes on
//! through the rebuild, so a Lambda invoke in flight is not sent twice.
//! Alone in its binary, since the fault it injects is process-wide; its
//! tests take turns for the same reason.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use dr_reactor::pipeline::PANIC_AT_TICK;
use support::fake_aws::Op;
use support::*;

/// The fault is process-wide: one test at a time injects it.
static FAULT: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_pipeline_is_restarted_and_decides_afterwards() {
    let _turn = FAULT.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(dir.path()).await;
    assert_eq!(srv.get_any("/readyz").await.0, 200);

    PANIC_AT_TICK.store(true, Ordering::Relaxed);
    srv.wait_for("/readyz 503 while the pipeline is down", || async {
        let (code, body) = srv.get_any("/readyz").await;
        code == 503 && body["pipeline"]["running"] == false
    })
    .await;
    // Evidence arriving meanwhile is recorded and waits in the intake
    // channel, which outlives the panicking run.
    srv.post(&payload(vec![
        pod_alert("firing", "auth", "ap-northeast-2a"),
        pod_alert("firing", "order", "ap-northeast-2a"),
        pod_alert("firing", "payment", "ap-northeast-2a"),
    ]))
    .await;
    srv.wait_for("restarts counted", || async {
        srv.metric(r#"dr_reactor_task_restarts_total{task="pipeline"}"#)
            .await
            >= 2.0
    })
    .await;
    PANIC_AT_TICK.store(false, Ordering::Relaxed);

    srv.wait_for("/readyz 200 once it runs again", || async {
        srv.get_any("/readyz").await.0 == 200
    })
    .await;
    srv.wait_for("the AZ incident decided after the restarts", || async {
        srv.incidents()
            .await
            .iter()
            .any(|i| i["scenario"] == "az_failure")
    })
    .await;
    srv.stop().await;
}

const LAMBDA_RULE: &str = r#"rules:
  - name: verify
    match: {labels: ['alertname="ZoneDown"']}
    correlate: {group_by: [region], window: 1h, when: {count: 1}}
    scenario: zone
    approval: {mode: auto}
    plan:
      steps:
        - name: verify the failover
          lambda: {function: dr-verify, region: ap-northeast-1}
"#;

/// The pipeline panics (its term is rebuilt from the store) while a Lambda
/// step is in flight: the runner is not stopped with the term, so the
/// function is invoked once and the step ends with its answer. A runner
/// stopped and started again would find the step `dispatching` and send it
/// again, and Lambda has no idempotency token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lambda_in_flight_is_not_invoked_again_when_the_term_is_rebuilt() {
    let _turn = FAULT.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (srv, aws) = support::approval::start(dir.path(), LAMBDA_RULE, "100ms").await;
    aws.function_returns("dr-verify", serde_json::json!({"verified": true}));
    aws.delay(Op::Invoke, 1, Duration::from_secs(3));
    srv.post(&support::approval::fire("ZoneDown", "eu-west-1"))
        .await;
    let id = support::approval::wait_state(&srv, "eu-west-1", "running").await;
    srv.wait_for("the invoke in flight", || async {
        aws.calls_of(Op::Invoke).len() == 1
    })
    .await;

    PANIC_AT_TICK.store(true, Ordering::Relaxed);
    srv.wait_for("the pipeline restarted", || async {
        srv.metric(r#"dr_reactor_task_restarts_total{task="pipeline"}"#)
            .await
            >= 1.0
    })
    .await;
    PANIC_AT_TICK.store(false, Ordering::Relaxed);

    support::approval::wait_state(&srv, "eu-west-1", "succeeded").await;
    assert_eq!(
        aws.calls_of(Op::Invoke).len(),
        1,
        "invoked once: {:?}",
        aws.calls()
    );
    let log = support::approval::events(&srv, &id).await;
    let dispatching = log
        .iter()
        .filter(|e| e["kind"] == "step_dispatching")
        .count();
    assert_eq!(dispatching, 1, "{log:#?}");
    srv.stop().await;
}
