//! Supervision: a panicking pipeline is restarted from the store, counted,
//! and reported by `/readyz` while it is down. Alone in its binary, since
//! the fault it injects is process-wide.

mod support;

use std::sync::atomic::Ordering;

use dr_reactor::pipeline::PANIC_AT_TICK;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_pipeline_is_restarted_and_decides_afterwards() {
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
