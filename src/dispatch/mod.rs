//! Dispatch: running plan steps on AWS.
//!
//! The [`Dispatcher`] is the primitive the incident lifecycle builds on:
//! [`Dispatcher::start`] sends a step (SSM Automation or Lambda) and
//! [`Dispatcher::poll`] follows an SSM execution ([`Dispatcher::stop`] ends
//! it early). Start and poll are safe to repeat:
//! the step's idempotency key is SSM's ClientToken, so a retry or a restart
//! never starts a second execution, and it is part of the Lambda event, so
//! a runbook function can recognise a repeat.
//! Dry-run is decided by the caller; [`Step::describe`] says what a step would
//! call.
//!
//! Each step names its region and is sent to that region's endpoint,
//! through one SSM and one Lambda client per region, created on first use.
//! A region-outage plan whose steps name the DR region therefore never
//! touches the failed one, whatever region the process was started in.
//!
//! Layout: [`config`] (the `aws:` section), [`error`] (what failed and
//! whether it is retryable), [`retry`] (the one retry loop), `ssm` and
//! `lambda` (one attempt of each API call), [`inspect`] (read-only
//! DescribeDocument and GetFunction, for runbook readiness).

pub mod config;
pub mod error;
pub mod inspect;
mod lambda;
pub mod retry;
pub mod runner;
mod ssm;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ssm::config::SharedHttpClient;
use serde::{Deserialize, Serialize};

pub use config::{AwsConfig, RetryPolicy};
pub use error::{AwsCall, DispatchError, Operation, Rejection};

use crate::plan::{Action, Step};
use crate::telemetry::Metrics;

/// What [`Dispatcher::start`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Started {
    /// SSM: an execution is running (or was already started with this key);
    /// follow it with [`Dispatcher::poll`].
    Execution { id: String },
    /// Lambda: RequestResponse returns when the function has finished.
    Finished(StepOutcome),
}

/// What [`Dispatcher::poll`] saw.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// Not finished; `status` is SSM's (Pending, InProgress, Waiting, …).
    Running {
        status: String,
    },
    Done(StepOutcome),
}

/// The end of a step, as recorded in the incident's event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepOutcome {
    pub success: bool,
    /// The SSM execution id, or the Lambda request id.
    pub execution_id: Option<String>,
    /// SSM's final status (Success, Failed, TimedOut, …); for Lambda,
    /// Success or Failed.
    pub status: String,
    /// SSM's Outputs (`{"Step.Output": ["value"]}`), or what the function
    /// returned (its error object when it failed).
    pub outputs: serde_json::Value,
    /// SSM's FailureMessage, or the function's errorMessage.
    pub failure: Option<String>,
}

/// Connecting is quick when an endpoint is up; a region in trouble should
/// fail fast and be retried rather than hold a step.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

pub struct Dispatcher {
    sdk: SdkConfig,
    cfg: AwsConfig,
    /// Set when `sdk` brings no HTTP client of its own.
    http: Option<SharedHttpClient>,
    ssm: Mutex<HashMap<String, aws_sdk_ssm::Client>>,
    lambda: Mutex<HashMap<String, aws_sdk_lambda::Client>>,
    metrics: Metrics,
}

/// Builds a client of `$krate` (aws_sdk_ssm or aws_sdk_lambda) for one
/// region: the two generated config builders are distinct types with the
/// same methods.
macro_rules! regional_client {
    ($krate:ident, $dispatcher:expr, $region:expr, $attempt_timeout:expr) => {{
        let d: &Dispatcher = $dispatcher;
        let mut b = $krate::config::Builder::from(&d.sdk)
            .region(Region::new($region.to_owned()))
            .retry_config($krate::config::retry::RetryConfig::disabled())
            .timeout_config(
                $krate::config::timeout::TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_attempt_timeout($attempt_timeout)
                    .build(),
            );
        if let Some(url) = &d.cfg.endpoint_url {
            b = b.endpoint_url(url);
        }
        if let Some(http) = &d.http {
            b = b.http_client(http.clone());
        }
        $krate::Client::from_conf(b.build())
    }};
}

impl Dispatcher {
    /// Credentials from the default chain: environment, profile, web
    /// identity (IRSA), ECS, EC2 instance metadata.
    pub async fn from_env(cfg: &AwsConfig, metrics: Metrics) -> Result<Dispatcher, DispatchError> {
        let http = crate::primitives::aws_http::https_client();
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http);
        if let Some(region) = &cfg.default_region {
            if !is_region(region) {
                return Err(DispatchError::Config {
                    message: format!("aws.default_region {region:?} is not a region name"),
                });
            }
            loader = loader.region(Region::new(region.clone()));
        }
        let sdk = loader.load().await;
        if sdk.region().is_none() {
            return Err(DispatchError::Config {
                message: "no region for the credential chain: set aws.default_region or AWS_REGION"
                    .into(),
            });
        }
        Ok(Dispatcher::with_sdk_config(sdk, cfg, metrics))
    }

    /// Uses `sdk` for credentials (and its HTTP client, if it has one);
    /// tests pass static credentials. `cfg.endpoint_url`, when set, wins
    /// over the endpoint in `sdk`.
    pub fn with_sdk_config(sdk: SdkConfig, cfg: &AwsConfig, metrics: Metrics) -> Dispatcher {
        let http = sdk
            .http_client()
            .is_none()
            .then(crate::primitives::aws_http::https_client);
        Dispatcher {
            sdk,
            cfg: cfg.clone(),
            http,
            ssm: Mutex::default(),
            lambda: Mutex::default(),
            metrics,
        }
    }

    /// Starts a step. SSM: StartAutomationExecution with ClientToken = the
    /// step's idempotency key. Lambda: Invoke (RequestResponse) with
    /// `{"idempotency_key", "step", "payload"}` as the event. Throttling and transient errors are
    /// retried per `aws.retry`; the error returned is the last one.
    pub async fn start(&self, step: &Step) -> Result<Started, DispatchError> {
        match &step.action {
            Action::Ssm {
                document,
                document_version,
                region,
                parameters,
            } => {
                let call = checked_call(
                    Operation::StartAutomationExecution,
                    region,
                    format!("document {document}"),
                )?;
                let client = self.ssm_client(region);
                let id = retry::retrying(&self.cfg.retry, &self.metrics, call, |call| {
                    ssm::start(
                        &client,
                        call,
                        document,
                        document_version.as_deref(),
                        parameters,
                        &step.idempotency_key,
                    )
                })
                .await?;
                tracing::info!(step = %step.name, idempotency_key = %step.idempotency_key, execution_id = %id, "started {}", step.describe());
                Ok(Started::Execution { id })
            }
            Action::Lambda {
                function,
                region,
                payload,
            } => {
                let call = checked_call(Operation::Invoke, region, format!("function {function}"))?;
                let client = self.lambda_client(region);
                let event = serde_json::to_vec(&lambda::envelope(step, payload))
                    .expect("a JSON value serializes");
                let outcome = retry::retrying(&self.cfg.retry, &self.metrics, call, |call| {
                    lambda::invoke(&client, call, function, event.clone())
                })
                .await?;
                tracing::info!(step = %step.name, idempotency_key = %step.idempotency_key, success = outcome.success, "invoked {}", step.describe());
                Ok(Started::Finished(outcome))
            }
        }
    }

    /// GetAutomationExecution for an SSM step started earlier (also after a
    /// restart: the id is all it needs). Lambda steps have nothing to poll.
    pub async fn poll(&self, step: &Step, execution_id: &str) -> Result<Progress, DispatchError> {
        match &step.action {
            Action::Ssm {
                document, region, ..
            } => {
                let call = checked_call(
                    Operation::GetAutomationExecution,
                    region,
                    format!("execution {execution_id} of document {document}"),
                )?;
                let client = self.ssm_client(region);
                retry::retrying(&self.cfg.retry, &self.metrics, call, |call| {
                    ssm::poll(&client, call, execution_id)
                })
                .await
            }
            Action::Lambda {
                function, region, ..
            } => Err(DispatchError::Invalid {
                call: AwsCall {
                    operation: Operation::Invoke,
                    region: region.clone(),
                    target: format!("function {function}"),
                    attempt: 0,
                },
                message: "a Lambda step finishes in start(); there is no execution to poll".into(),
            }),
        }
    }

    /// `aws.step_timeout`: how long an SSM step may run.
    pub fn step_timeout(&self) -> Option<Duration> {
        self.cfg.step_timeout
    }

    /// StopAutomationExecution for an SSM step's execution (abort, step
    /// timeout), retried like the other calls. A Lambda invocation cannot
    /// be stopped; it has finished by the time `start` returns.
    pub async fn stop(&self, step: &Step, execution_id: &str) -> Result<(), DispatchError> {
        let Action::Ssm {
            document, region, ..
        } = &step.action
        else {
            return Ok(());
        };
        let call = checked_call(
            Operation::StopAutomationExecution,
            region,
            format!("execution {execution_id} of document {document}"),
        )?;
        let client = self.ssm_client(region);
        retry::retrying(&self.cfg.retry, &self.metrics, call, |call| {
            ssm::stop(&client, call, execution_id)
        })
        .await?;
        tracing::warn!(step = %step.name, execution_id, "stopped {}", step.describe());
        Ok(())
    }

    /// DescribeDocument of `document` (at `version`, else its default) in
    /// `region`, retried like the calls that act.
    pub async fn describe_document(
        &self,
        region: &str,
        document: &str,
        version: Option<&str>,
    ) -> Result<inspect::DocumentInfo, DispatchError> {
        let call = checked_call(
            Operation::DescribeDocument,
            region,
            format!("document {document}"),
        )?;
        let client = self.ssm_client(region);
        retry::retrying(&self.cfg.retry, &self.metrics, call, |call| {
            inspect::describe_document(&client, call, document, version)
        })
        .await
    }

    /// GetFunction of `function` (`name`, `name:qualifier` or an ARN) in
    /// `region`, retried like the calls that act.
    pub async fn get_function(
        &self,
        region: &str,
        function: &str,
    ) -> Result<inspect::FunctionInfo, DispatchError> {
        let call = checked_call(
            Operation::GetFunction,
            region,
            format!("function {function}"),
        )?;
        let (name, qualifier) = inspect::split_qualifier(function);
        let client = self.lambda_client(region);
        retry::retrying(&self.cfg.retry, &self.metrics, call, |call| {
            inspect::get_function(&client, call, name, qualifier)
        })
        .await
    }

    fn ssm_client(&self, region: &str) -> aws_sdk_ssm::Client {
        cached(&self.ssm, region, || {
            regional_client!(aws_sdk_ssm, self, region, self.cfg.call_timeout)
        })
    }

    fn lambda_client(&self, region: &str) -> aws_sdk_lambda::Client {
        cached(&self.lambda, region, || {
            regional_client!(aws_sdk_lambda, self, region, self.cfg.lambda_timeout)
        })
    }
}

fn cached<C: Clone>(map: &Mutex<HashMap<String, C>>, region: &str, build: impl FnOnce() -> C) -> C {
    // A poisoned lock only means another task panicked while inserting a
    // client; the map is still a valid cache.
    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
    map.entry(region.to_owned()).or_insert_with(build).clone()
}

/// The call about to be made, or an error if the region cannot be one: the
/// region becomes part of a hostname, and a rule template rendering a bad
/// label into it must not send a signed request anywhere.
fn checked_call(
    operation: Operation,
    region: &str,
    target: String,
) -> Result<AwsCall, DispatchError> {
    let call = AwsCall {
        operation,
        region: region.to_owned(),
        target,
        attempt: 0,
    };
    if is_region(region) {
        Ok(call)
    } else {
        Err(DispatchError::Invalid {
            call,
            message: format!("{region:?} is not an AWS region name (like ap-northeast-2)"),
        })
    }
}

/// `ap-northeast-2`, `us-gov-west-1`, `cn-north-1`: two letters, words,
/// a number.
fn is_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let [first, middle @ .., last] = parts.as_slice() else {
        return false;
    };
    first.len() == 2
        && first.bytes().all(|b| b.is_ascii_lowercase())
        && !middle.is_empty()
        && middle
            .iter()
            .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
        && (1..=2).contains(&last.len())
        && last.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_names_are_checked() {
        for ok in [
            "ap-northeast-2",
            "us-east-1",
            "us-gov-west-1",
            "cn-north-1",
            "il-central-1",
        ] {
            assert!(is_region(ok), "{ok}");
        }
        for bad in [
            "",
            "ap",
            "ap-northeast",
            "AP-NORTHEAST-2",
            "ap-northeast-2.evil.example",
            "ap--2",
            "ap-northeast-123",
            "{{ labels.region }}",
        ] {
            assert!(!is_region(bad), "{bad}");
        }
    }

    #[test]
    fn a_bad_region_fails_before_any_call() {
        let err = checked_call(Operation::Invoke, "x/../y", "function f".into()).unwrap_err();
        assert!(!err.is_retryable());
        assert_eq!(
            err.to_string(),
            "lambda:Invoke in x/../y for function f: \"x/../y\" is not an AWS region name (like ap-northeast-2)"
        );
    }
}
