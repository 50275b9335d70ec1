//! What can go wrong talking to AWS, and whether trying again can help.
//!
//! [`DispatchError::is_retryable`] is the one decision that drives retries
//! here and whatever the caller does after the last attempt. Every error
//! carries the [`AwsCall`] it came from, so a log line or a Slack message
//! says which API, region and document or function failed.

use std::fmt;

use aws_sdk_ssm::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// The HTTP response type of every generated AWS client.
type HttpResponse = aws_sdk_ssm::config::http::HttpResponse;

/// The AWS API operations dispatch uses, named like their IAM actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    StartAutomationExecution,
    GetAutomationExecution,
    StopAutomationExecution,
    Invoke,
    /// Runbook readiness: read-only.
    DescribeDocument,
    GetFunction,
}

impl Operation {
    pub fn service(self) -> &'static str {
        match self {
            Operation::StartAutomationExecution
            | Operation::GetAutomationExecution
            | Operation::StopAutomationExecution
            | Operation::DescribeDocument => "ssm",
            Operation::Invoke | Operation::GetFunction => "lambda",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Operation::StartAutomationExecution => "StartAutomationExecution",
            Operation::GetAutomationExecution => "GetAutomationExecution",
            Operation::StopAutomationExecution => "StopAutomationExecution",
            Operation::Invoke => "Invoke",
            Operation::DescribeDocument => "DescribeDocument",
            Operation::GetFunction => "GetFunction",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.service(), self.name())
    }
}

/// One call as errors and logs name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsCall {
    pub operation: Operation,
    pub region: String,
    /// `document NAME`, `function NAME`, or `execution ID of document NAME`.
    pub target: String,
    /// 1-based, set by the retry loop; 0 when nothing was sent.
    pub attempt: u32,
}

impl fmt::Display for AwsCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} in {} for {}",
            self.operation, self.region, self.target
        )?;
        if self.attempt > 0 {
            write!(f, " (attempt {})", self.attempt)?;
        }
        Ok(())
    }
}

/// Why AWS refused a request for good: the same request would be refused
/// again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Unknown document, version, execution or function.
    NotFound,
    /// Credentials, signature or IAM policy.
    AccessDenied,
    /// The request itself is wrong (parameters, token format).
    Invalid,
    /// The idempotency key was used before with different inputs.
    IdempotencyMismatch,
    Other,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rejection::NotFound => "not found",
            Rejection::AccessDenied => "access denied",
            Rejection::Invalid => "invalid request",
            Rejection::IdempotencyMismatch => "idempotency key reused with different inputs",
            Rejection::Other => "rejected",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("{call}: throttled by AWS ({code}): {message}")]
    Throttled {
        call: AwsCall,
        code: String,
        message: String,
    },
    /// 5xx, a "try later" error code, or a response that could not be read.
    #[error("{call}: AWS unavailable (HTTP {status}, {code}): {message}")]
    Unavailable {
        call: AwsCall,
        status: u16,
        code: String,
        message: String,
    },
    #[error("{call}: timed out: {message}")]
    Timeout { call: AwsCall, message: String },
    #[error("{call}: cannot reach the endpoint: {message}")]
    Connection { call: AwsCall, message: String },
    #[error("{call}: {reason} (HTTP {status}, {code}): {message}")]
    Rejected {
        call: AwsCall,
        reason: Rejection,
        status: u16,
        code: String,
        message: String,
    },
    /// Refused before anything was sent: a malformed region, a poll of a
    /// step that has nothing to poll, a request the SDK could not build.
    #[error("{call}: {message}")]
    Invalid { call: AwsCall, message: String },
    #[error("{message}")]
    Config { message: String },
}

impl DispatchError {
    /// True when the same call may succeed later: throttling, 5xx,
    /// timeouts, connection errors. Every call dispatch makes is safe to
    /// repeat (ClientToken, read-only poll, idempotency key in the Lambda
    /// payload), so retryable errors are retried without further thought.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            DispatchError::Throttled { .. }
                | DispatchError::Unavailable { .. }
                | DispatchError::Timeout { .. }
                | DispatchError::Connection { .. }
        )
    }

    /// The `result` label of `aws_calls_total`.
    pub(crate) fn metric_label(&self) -> &'static str {
        match self {
            DispatchError::Throttled { .. } => "throttled",
            DispatchError::Unavailable { .. } => "unavailable",
            DispatchError::Timeout { .. } => "timeout",
            DispatchError::Connection { .. } => "connection",
            DispatchError::Rejected { .. } => "rejected",
            DispatchError::Invalid { .. } | DispatchError::Config { .. } => "invalid",
        }
    }

    /// Turns an SDK error into one of ours, classified.
    pub(crate) fn from_sdk<E>(call: AwsCall, err: SdkError<E, HttpResponse>) -> DispatchError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let message = DisplayErrorContext(&err).to_string();
        match err {
            SdkError::ServiceError(ctx) => {
                let status = ctx.raw().status().as_u16();
                let e = ctx.err();
                let code = e.code().unwrap_or("Unknown").to_owned();
                let message = e.message().unwrap_or("(no message)").to_owned();
                match classify(status, &code) {
                    Class::Throttled => DispatchError::Throttled {
                        call,
                        code,
                        message,
                    },
                    Class::Unavailable => DispatchError::Unavailable {
                        call,
                        status,
                        code,
                        message,
                    },
                    Class::Rejected(reason) => DispatchError::Rejected {
                        call,
                        reason,
                        status,
                        code,
                        message,
                    },
                }
            }
            SdkError::TimeoutError(_) => DispatchError::Timeout { call, message },
            SdkError::DispatchFailure(f) if f.is_timeout() => {
                DispatchError::Timeout { call, message }
            }
            SdkError::DispatchFailure(f) if f.is_user() => DispatchError::Invalid { call, message },
            SdkError::DispatchFailure(_) => DispatchError::Connection { call, message },
            SdkError::ResponseError(r) => DispatchError::Unavailable {
                call,
                status: r.raw().status().as_u16(),
                code: "UnreadableResponse".into(),
                message,
            },
            SdkError::ConstructionFailure(_) => DispatchError::Invalid { call, message },
            _ => DispatchError::Unavailable {
                call,
                status: 0,
                code: "Unknown".into(),
                message,
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Throttled,
    Unavailable,
    Rejected(Rejection),
}

/// The codes AWS uses for "slow down", across services (the same list the
/// SDKs' own retry classifiers use), plus SSM's cap on concurrent
/// automations, which clears as running ones finish.
const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
    "AutomationExecutionLimitExceededException",
];

/// Errors that clear by themselves: server faults, and Lambda's answers
/// while a function is still being created or updated.
const TRANSIENT_CODES: &[&str] = &[
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalServerError",
    "InternalFailure",
    "ServiceUnavailable",
    "ServiceException",
    "ResourceNotReadyException",
    "ResourceConflictException",
    "SnapStartNotReadyException",
];

const AUTH_CODES: &[&str] = &[
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "MissingAuthenticationTokenException",
    "InvalidClientTokenId",
    "ExpiredTokenException",
    "AuthFailure",
];

/// Classifies a service error by code first and HTTP status second.
/// Access errors come first because Lambda reports some of them (KMS, EC2
/// access denied) with a 502, and retrying those only delays the failure.
pub(crate) fn classify(status: u16, code: &str) -> Class {
    if code == "IdempotentParameterMismatch" {
        Class::Rejected(Rejection::IdempotencyMismatch)
    } else if code.contains("AccessDenied") || AUTH_CODES.contains(&code) || status == 403 {
        Class::Rejected(Rejection::AccessDenied)
    } else if THROTTLING_CODES.contains(&code) || status == 429 {
        Class::Throttled
    } else if TRANSIENT_CODES.contains(&code) || status >= 500 {
        Class::Unavailable
    } else if code.ends_with("NotFoundException") || code.ends_with("NotFound") || status == 404 {
        Class::Rejected(Rejection::NotFound)
    } else if code.contains("Validation") || code.starts_with("Invalid") {
        Class::Rejected(Rejection::Invalid)
    } else {
        Class::Rejected(Rejection::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_errors_are_classified_by_code_then_status() {
        use Class::*;
        use Rejection::*;
        let cases = [
            (400, "ThrottlingException", Throttled),
            (429, "TooManyRequestsException", Throttled),
            (400, "AutomationExecutionLimitExceededException", Throttled),
            (429, "SomethingNew", Throttled),
            (500, "InternalServerError", Unavailable),
            (503, "ServiceUnavailable", Unavailable),
            (502, "ResourceNotReadyException", Unavailable),
            (409, "ResourceConflictException", Unavailable),
            (504, "Whatever", Unavailable),
            (
                400,
                "IdempotentParameterMismatch",
                Rejected(IdempotencyMismatch),
            ),
            (400, "AccessDeniedException", Rejected(AccessDenied)),
            (502, "KMSAccessDeniedException", Rejected(AccessDenied)),
            (403, "UnrecognizedClientException", Rejected(AccessDenied)),
            (400, "ExpiredTokenException", Rejected(AccessDenied)),
            (
                400,
                "AutomationDefinitionNotFoundException",
                Rejected(NotFound),
            ),
            (
                400,
                "AutomationExecutionNotFoundException",
                Rejected(NotFound),
            ),
            (404, "ResourceNotFoundException", Rejected(NotFound)),
            (400, "ValidationException", Rejected(Invalid)),
            (
                400,
                "InvalidAutomationExecutionParametersException",
                Rejected(Invalid),
            ),
            (400, "InvalidParameterValueException", Rejected(Invalid)),
            (413, "RequestTooLargeException", Rejected(Other)),
        ];
        for (status, code, want) in cases {
            assert_eq!(classify(status, code), want, "{status} {code}");
        }
    }

    fn call() -> AwsCall {
        AwsCall {
            operation: Operation::StartAutomationExecution,
            region: "ap-northeast-1".into(),
            target: "document DR-Promote".into(),
            attempt: 2,
        }
    }

    #[test]
    fn only_transient_errors_are_retryable() {
        let m = || "m".to_owned();
        let retryable = [
            DispatchError::Throttled {
                call: call(),
                code: "ThrottlingException".into(),
                message: m(),
            },
            DispatchError::Unavailable {
                call: call(),
                status: 500,
                code: "InternalServerError".into(),
                message: m(),
            },
            DispatchError::Timeout {
                call: call(),
                message: m(),
            },
            DispatchError::Connection {
                call: call(),
                message: m(),
            },
        ];
        assert!(retryable.iter().all(DispatchError::is_retryable));
        let permanent = [
            DispatchError::Rejected {
                call: call(),
                reason: Rejection::IdempotencyMismatch,
                status: 400,
                code: "IdempotentParameterMismatch".into(),
                message: m(),
            },
            DispatchError::Invalid {
                call: call(),
                message: m(),
            },
            DispatchError::Config { message: m() },
        ];
        assert!(!permanent.iter().any(DispatchError::is_retryable));
    }

    #[test]
    fn errors_name_operation_region_and_target() {
        let e = DispatchError::Rejected {
            call: call(),
            reason: Rejection::NotFound,
            status: 400,
            code: "AutomationDefinitionNotFoundException".into(),
            message: "no such document".into(),
        };
        assert_eq!(
            e.to_string(),
            "ssm:StartAutomationExecution in ap-northeast-1 for document DR-Promote (attempt 2): \
             not found (HTTP 400, AutomationDefinitionNotFoundException): no such document"
        );
    }
}
