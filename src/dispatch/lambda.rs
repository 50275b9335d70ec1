//! Lambda: a RequestResponse Invoke whose payload carries the step's
//! idempotency key, so a function can recognise a retry of a call it has
//! already handled.

use aws_sdk_lambda::Client;
use aws_sdk_lambda::operation::RequestId;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use serde_json::{Value, json};

use super::StepOutcome;
use super::error::{AwsCall, DispatchError};
use crate::plan::Step;

/// The event a runbook function receives. The step's own payload is nested
/// rather than merged so that no key a rule writes can collide with ours.
pub(super) fn envelope(step: &Step, payload: &Value) -> Value {
    json!({
        "idempotency_key": step.idempotency_key,
        "step": step.name,
        "payload": payload,
    })
}

/// One attempt of Invoke.
pub(super) async fn invoke(
    client: &Client,
    call: AwsCall,
    function: &str,
    event: Vec<u8>,
) -> Result<StepOutcome, DispatchError> {
    let out = client
        .invoke()
        .function_name(function)
        .invocation_type(InvocationType::RequestResponse)
        .payload(Blob::new(event))
        .send()
        .await
        .map_err(|e| DispatchError::from_sdk(call, e))?;
    Ok(outcome(
        out.request_id().map(str::to_owned),
        out.function_error(),
        out.payload().map(Blob::as_ref),
    ))
}

/// A 200 from Invoke: the function ran. `X-Amz-Function-Error` says whether
/// it failed; the body is its return value or its error object.
fn outcome(
    request_id: Option<String>,
    function_error: Option<&str>,
    body: Option<&[u8]>,
) -> StepOutcome {
    let outputs = match body {
        None | Some([]) => Value::Null,
        Some(bytes) => serde_json::from_slice(bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned())),
    };
    let failure = function_error.map(|kind| match &outputs {
        Value::Object(o) => o
            .get("errorMessage")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| format!("function error ({kind}) without errorMessage")),
        Value::String(s) => s.clone(),
        _ => format!("function error ({kind})"),
    });
    StepOutcome {
        success: failure.is_none(),
        execution_id: request_id,
        status: if failure.is_none() {
            "Success"
        } else {
            "Failed"
        }
        .into(),
        outputs,
        failure,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Action;

    #[test]
    fn envelope_nests_the_payload_beside_the_key() {
        let step = Step {
            name: "verify".into(),
            service: None,
            action: Action::Lambda {
                function: "f".into(),
                region: "eu-west-1".into(),
                payload: json!({"idempotency_key": "the rule's own"}),
            },
            idempotency_key: "k-1".into(),
            timeout_secs: None,
            record: false,
            failback: None,
        };
        let Action::Lambda { payload, .. } = &step.action else {
            unreachable!()
        };
        assert_eq!(
            envelope(&step, payload),
            json!({"idempotency_key": "k-1", "step": "verify",
                   "payload": {"idempotency_key": "the rule's own"}})
        );
    }

    #[test]
    fn function_error_fails_the_step_with_its_message() {
        let body = br#"{"errorMessage":"replica lag 40s","errorType":"LagError"}"#;
        let o = outcome(Some("r-1".into()), Some("Unhandled"), Some(body));
        assert!(!o.success);
        assert_eq!(o.failure.as_deref(), Some("replica lag 40s"));
        assert_eq!(o.outputs["errorType"], "LagError");
        assert_eq!(o.execution_id.as_deref(), Some("r-1"));

        let o = outcome(None, Some("Handled"), Some(b"\"boom\""));
        assert_eq!(o.failure.as_deref(), Some("boom"));
        let o = outcome(None, Some("Unhandled"), None);
        assert_eq!(o.failure.as_deref(), Some("function error (Unhandled)"));
    }

    #[test]
    fn success_keeps_any_body() {
        let o = outcome(None, None, Some(br#"{"promoted":true}"#));
        assert!(o.success && o.failure.is_none());
        assert_eq!(o.outputs, json!({"promoted": true}));
        assert_eq!(
            outcome(None, None, Some(b"plain text")).outputs,
            "plain text"
        );
        assert_eq!(outcome(None, None, Some(b"")).outputs, Value::Null);
    }
}
