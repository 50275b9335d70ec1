//! The `aws:` section of the config file: where dispatch sends its calls,
//! how long it waits, and how it retries.

use std::num::NonZeroU32;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    /// Sends every SSM and Lambda call to this URL instead of the regional
    /// endpoints (tests, LocalStack, a proxy). Calls are still signed for
    /// the step's region. Not needed for VPC interface endpoints with
    /// private DNS, which answer on the regional hostnames.
    #[serde(default, deserialize_with = "endpoint_url")]
    pub endpoint_url: Option<String>,
    /// Region of the credential chain's own calls (STS for IRSA and web
    /// identity). Falls back to `AWS_REGION` / the profile. Steps never use
    /// it: each step names its region.
    #[serde(default)]
    pub default_region: Option<String>,
    #[serde(default)]
    pub retry: RetryPolicy,
    /// How often the lifecycle runner polls a running SSM execution.
    #[serde(
        default = "default_poll_interval",
        with = "crate::primitives::duration"
    )]
    pub poll_interval: Duration,
    /// Per-attempt timeout of an SSM API call.
    #[serde(default = "default_call_timeout", with = "crate::primitives::duration")]
    pub call_timeout: Duration,
    /// Per-attempt timeout of a Lambda RequestResponse invoke: the response
    /// arrives when the function returns, and a function may run for up to
    /// 15 minutes.
    #[serde(
        default = "default_lambda_timeout",
        with = "crate::primitives::duration"
    )]
    pub lambda_timeout: Duration,
    /// How long an SSM step may run before it is stopped
    /// (StopAutomationExecution) and failed, counted from its start as
    /// recorded, so a restart does not reset it. Without it a step runs as
    /// long as its document does.
    #[serde(default, deserialize_with = "optional_duration")]
    pub step_timeout: Option<Duration>,
}

impl Default for AwsConfig {
    fn default() -> Self {
        AwsConfig {
            endpoint_url: None,
            default_region: None,
            retry: RetryPolicy::default(),
            poll_interval: default_poll_interval(),
            call_timeout: default_call_timeout(),
            lambda_timeout: default_lambda_timeout(),
            step_timeout: None,
        }
    }
}

/// Retries of throttled and transient failures inside one `start` or `poll`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts per call, the first included.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: NonZeroU32,
    #[serde(
        default = "default_initial_backoff",
        with = "crate::primitives::duration"
    )]
    pub initial_backoff: Duration,
    #[serde(default = "default_max_backoff", with = "crate::primitives::duration")]
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: default_max_attempts(),
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
        }
    }
}

/// Refused at load rather than at the first call, so a typo cannot wait
/// for an outage to show up.
fn endpoint_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let url = String::deserialize(d)?;
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(Some(url))
    } else {
        Err(serde::de::Error::custom(format!(
            "endpoint_url {url:?} must start with http:// or https://"
        )))
    }
}

fn optional_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    match crate::primitives::duration::parse(&text).map_err(serde::de::Error::custom)? {
        t if t.is_zero() => Err(serde::de::Error::custom(
            "step_timeout must be greater than 0; leave it out for no timeout",
        )),
        t => Ok(Some(t)),
    }
}

fn default_poll_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_call_timeout() -> Duration {
    Duration::from_secs(20)
}
fn default_lambda_timeout() -> Duration {
    Duration::from_secs(15 * 60 + 30)
}
fn default_max_attempts() -> NonZeroU32 {
    NonZeroU32::new(5).expect("5 is not zero")
}
fn default_initial_backoff() -> Duration {
    Duration::from_millis(200)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(20)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<AwsConfig, String> {
        crate::primitives::yaml::from_str(yaml).map_err(|e| e.message)
    }

    #[test]
    fn empty_section_takes_defaults() {
        let cfg = parse("{}").unwrap();
        assert_eq!(cfg.retry, RetryPolicy::default());
        assert_eq!(cfg.retry.max_attempts.get(), 5);
        assert_eq!(cfg.poll_interval, Duration::from_secs(10));
        assert_eq!(cfg.lambda_timeout, Duration::from_secs(930));
        assert!(cfg.endpoint_url.is_none());
        assert_eq!(cfg.step_timeout, None);
    }

    #[test]
    fn step_timeout_is_a_positive_duration() {
        let cfg = parse("step_timeout: 45m\n").unwrap();
        assert_eq!(cfg.step_timeout, Some(Duration::from_secs(45 * 60)));
        let err = parse("step_timeout: 0s\n").unwrap_err();
        assert!(err.contains("step_timeout must be greater than 0"), "{err}");
    }

    #[test]
    fn full_section_parses() {
        let cfg = parse(
            "endpoint_url: http://127.0.0.1:4566\n\
             default_region: ap-northeast-1\n\
             retry: {max_attempts: 3, initial_backoff: 50ms, max_backoff: 2s}\n\
             poll_interval: 5s\ncall_timeout: 3s\nlambda_timeout: 1m\n",
        )
        .unwrap();
        assert_eq!(cfg.endpoint_url.as_deref(), Some("http://127.0.0.1:4566"));
        assert_eq!(cfg.default_region.as_deref(), Some("ap-northeast-1"));
        assert_eq!(cfg.retry.max_attempts.get(), 3);
        assert_eq!(cfg.retry.initial_backoff, Duration::from_millis(50));
        assert_eq!(cfg.call_timeout, Duration::from_secs(3));
        assert_eq!(cfg.lambda_timeout, Duration::from_secs(60));
    }

    #[test]
    fn bad_values_are_refused_with_the_reason() {
        let err = parse("endpoint_url: 127.0.0.1:4566\n").unwrap_err();
        assert!(err.contains("must start with http:// or https://"), "{err}");
        let err = parse("retry: {max_attempts: 0}\n").unwrap_err();
        assert!(err.contains("nonzero"), "{err}");
        let err = parse("region: eu-west-1\n").unwrap_err();
        assert!(err.contains("region"), "{err}");
    }
}
