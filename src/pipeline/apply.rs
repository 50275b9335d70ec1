//! Decisions into incident changes, in order, retried while the store is
//! briefly away.

use std::future::Future;

use crate::incident::{IncidentError, Incidents};
use crate::rules::{Decision, RuleSet};
use crate::telemetry::Metrics;

/// Applies decisions in order, retrying while the store is briefly away (a
/// restart, a failover): every decision is safe to apply twice (see
/// [`Incidents::resume`]). A run of `Attach` decisions (most of a busy
/// stream: new evidence for open incidents) is written in one transaction;
/// any other decision first writes the run before it, so the order holds.
/// False if something could not be applied: the engine then no longer
/// matches the store, and the caller rebuilds from the store.
pub(super) async fn apply(
    incidents: &Incidents,
    metrics: &Metrics,
    rules: &RuleSet,
    decisions: Vec<Decision>,
) -> bool {
    let mut ok = true;
    let mut run = Vec::new();
    for d in decisions {
        match d {
            Decision::Attach {
                key,
                signals,
                services,
                at,
            } => run.push((key, signals, services, at)),
            other => {
                if !run.is_empty() {
                    ok &= retrying(metrics, || incidents.attach_all(&run, rules)).await;
                    run.clear();
                }
                ok &= retrying(metrics, || incidents.apply(other.clone(), rules)).await;
            }
        }
    }
    if !run.is_empty() {
        ok &= retrying(metrics, || incidents.attach_all(&run, rules)).await;
    }
    ok
}

/// Runs `write` until it succeeds, retrying transient store errors with
/// backoff for up to 15 s. False if it failed for good.
async fn retrying<F, Fut>(metrics: &Metrics, write: F) -> bool
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), IncidentError>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    let mut delay = std::time::Duration::from_millis(100);
    loop {
        match write().await {
            Ok(()) => return true,
            Err(IncidentError::Store(e))
                if e.is_transient() && tokio::time::Instant::now() + delay < deadline =>
            {
                metrics.decision_retries.inc();
                tracing::warn!("applying a decision: {e}; retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(2));
            }
            Err(e) => {
                metrics
                    .pipeline_errors
                    .with_label_values(&["incident"])
                    .inc();
                tracing::error!("applying a decision failed: {e}; rebuilding from the store");
                return false;
            }
        }
    }
}
