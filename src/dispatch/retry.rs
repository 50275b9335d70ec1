//! Retrying throttled and transient failures with capped exponential
//! backoff and jitter.
//!
//! The SDK clients are built with their own retries off so that this loop
//! is the only one: [`DispatchError::is_retryable`] alone decides, every
//! attempt is logged and counted with the step's operation, and the delay
//! is a pure function that can be tested without a clock.

use std::future::Future;
use std::time::Duration;

use super::config::RetryPolicy;
use super::error::{AwsCall, DispatchError};
use crate::telemetry::Metrics;

/// The pause before retry number `retry` (1 for the first retry).
///
/// "Equal jitter": half of the capped exponential step is fixed, the other
/// half is scaled by `jitter` in [0, 1]. Callers that were throttled
/// together spread out, and none retries immediately.
pub fn backoff(policy: &RetryPolicy, retry: u32, jitter: f64) -> Duration {
    let doubling = 1u32 << retry.saturating_sub(1).min(31);
    let step = policy
        .initial_backoff
        .saturating_mul(doubling)
        .min(policy.max_backoff);
    step / 2 + step.mul_f64(jitter.clamp(0.0, 1.0)) / 2
}

/// Runs `attempt` until it succeeds, fails for good, or the policy's
/// attempts are used up; returns the last result. `call` names the call in
/// logs and errors; its `attempt` is set before each try.
pub(crate) async fn retrying<T, F, Fut>(
    policy: &RetryPolicy,
    metrics: &Metrics,
    mut call: AwsCall,
    mut attempt: F,
) -> Result<T, DispatchError>
where
    F: FnMut(AwsCall) -> Fut,
    Fut: Future<Output = Result<T, DispatchError>>,
{
    call.attempt = 1;
    loop {
        let result = attempt(call.clone()).await;
        let label = result.as_ref().map_or_else(|e| e.metric_label(), |_| "ok");
        metrics
            .aws_calls
            .with_label_values(&[call.operation.service(), call.operation.name(), label])
            .inc();
        match result {
            Err(e) if e.is_retryable() && call.attempt < policy.max_attempts.get() => {
                let delay = backoff(policy, call.attempt, fastrand::f64());
                tracing::warn!(error = %e, retry_in = ?delay, "AWS call failed; retrying");
                tokio::time::sleep(delay).await;
                call.attempt += 1;
            }
            Err(e) => {
                tracing::warn!(error = %e, "AWS call failed");
                return Err(e);
            }
            Ok(v) => return Ok(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;

    fn policy(initial_ms: u64, max_ms: u64) -> RetryPolicy {
        RetryPolicy {
            max_attempts: NonZeroU32::new(10).unwrap(),
            initial_backoff: Duration::from_millis(initial_ms),
            max_backoff: Duration::from_millis(max_ms),
        }
    }

    #[test]
    fn backoff_doubles_within_half_and_whole_step() {
        let p = policy(100, 10_000);
        for (retry, step_ms) in [(1, 100), (2, 200), (3, 400), (4, 800)] {
            let step = Duration::from_millis(step_ms);
            assert_eq!(backoff(&p, retry, 0.0), step / 2, "retry {retry}");
            assert_eq!(backoff(&p, retry, 1.0), step, "retry {retry}");
            let mid = backoff(&p, retry, 0.5);
            assert!(mid > step / 2 && mid < step, "retry {retry}: {mid:?}");
        }
    }

    #[test]
    fn backoff_never_exceeds_max_even_for_huge_retry_counts() {
        let p = policy(200, 20_000);
        for retry in [8, 20, 31, 32, 1000, u32::MAX] {
            for jitter in [0.0, 0.3, 1.0, 7.0] {
                let d = backoff(&p, retry, jitter);
                assert!(d <= p.max_backoff, "retry {retry} jitter {jitter}: {d:?}");
                assert!(
                    d >= p.max_backoff / 2,
                    "retry {retry} jitter {jitter}: {d:?}"
                );
            }
        }
    }

    #[test]
    fn out_of_range_jitter_is_clamped() {
        let p = policy(100, 1_000);
        assert_eq!(backoff(&p, 1, -1.0), Duration::from_millis(50));
        assert_eq!(backoff(&p, 1, 2.0), Duration::from_millis(100));
    }
}
