//! SSM Automation: StartAutomationExecution with the step's idempotency key
//! as ClientToken, GetAutomationExecution to follow it, and
//! StopAutomationExecution for an abort or a step timeout.

use std::collections::BTreeMap;

use aws_sdk_ssm::Client;
use aws_sdk_ssm::types::AutomationExecutionStatus as Status;

use super::error::{AwsCall, DispatchError};
use super::{Progress, StepOutcome};

/// One attempt of StartAutomationExecution; returns the execution id.
///
/// SSM keeps the ClientToken: the same token with the same inputs returns
/// the execution it started the first time, so a retry after a lost
/// response, or a restart, cannot start a second one.
pub(super) async fn start(
    client: &Client,
    call: AwsCall,
    document: &str,
    version: Option<&str>,
    parameters: &BTreeMap<String, Vec<String>>,
    client_token: &str,
) -> Result<String, DispatchError> {
    let out = client
        .start_automation_execution()
        .document_name(document)
        .set_document_version(version.map(str::to_owned))
        .set_parameters((!parameters.is_empty()).then(|| parameters.clone().into_iter().collect()))
        .client_token(client_token)
        .send()
        .await
        .map_err(|e| DispatchError::from_sdk(call.clone(), e))?;
    out.automation_execution_id
        .ok_or_else(|| unreadable(call, "the response has no AutomationExecutionId"))
}

/// One attempt of GetAutomationExecution.
pub(super) async fn poll(
    client: &Client,
    call: AwsCall,
    execution_id: &str,
) -> Result<Progress, DispatchError> {
    let out = client
        .get_automation_execution()
        .automation_execution_id(execution_id)
        .send()
        .await
        .map_err(|e| DispatchError::from_sdk(call.clone(), e))?;
    let Some(execution) = out.automation_execution else {
        return Err(unreadable(call, "the response has no AutomationExecution"));
    };
    let Some(status) = execution.automation_execution_status else {
        return Err(unreadable(call, "the execution has no status"));
    };
    let Some(success) = finished(&status) else {
        return Ok(Progress::Running {
            status: status.as_str().to_owned(),
        });
    };
    let outputs: BTreeMap<String, Vec<String>> =
        execution.outputs.unwrap_or_default().into_iter().collect();
    Ok(Progress::Done(StepOutcome {
        success,
        execution_id: Some(execution_id.to_owned()),
        status: status.as_str().to_owned(),
        outputs: serde_json::to_value(outputs).expect("string maps serialize"),
        failure: execution.failure_message,
    }))
}

/// One attempt of StopAutomationExecution (type Cancel). Stopping an
/// execution that has already ended is not an error to the caller: the
/// point, that it runs no further, holds either way.
pub(super) async fn stop(
    client: &Client,
    call: AwsCall,
    execution_id: &str,
) -> Result<(), DispatchError> {
    client
        .stop_automation_execution()
        .automation_execution_id(execution_id)
        .r#type(aws_sdk_ssm::types::StopType::Cancel)
        .send()
        .await
        .map_err(|e| DispatchError::from_sdk(call, e))?;
    Ok(())
}

/// `Some(success)` once the execution can no longer change; `None` while
/// it can, including statuses newer than this build (polling on is the
/// safe reading of a status nobody here knows).
fn finished(status: &Status) -> Option<bool> {
    match status {
        Status::Success | Status::CompletedWithSuccess => Some(true),
        // Exited: stopped before its last step; for a recovery that is a
        // failure a person must look at.
        Status::Failed
        | Status::Timedout
        | Status::Cancelled
        | Status::Rejected
        | Status::CompletedWithFailure
        | Status::ChangeCalendarOverrideRejected
        | Status::Exited => Some(false),
        _ => None,
    }
}

pub(super) fn unreadable(call: AwsCall, message: &str) -> DispatchError {
    DispatchError::Unavailable {
        call,
        status: 200,
        code: "UnreadableResponse".into(),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_running_or_finished() {
        let cases = [
            ("Pending", None),
            ("InProgress", None),
            ("Waiting", None),
            ("Cancelling", None),
            ("PendingApproval", None),
            ("RunbookInProgress", None),
            ("SomeFutureStatus", None),
            ("Success", Some(true)),
            ("CompletedWithSuccess", Some(true)),
            ("Failed", Some(false)),
            ("TimedOut", Some(false)),
            ("Cancelled", Some(false)),
            ("Rejected", Some(false)),
            ("CompletedWithFailure", Some(false)),
            ("Exited", Some(false)),
        ];
        for (s, want) in cases {
            assert_eq!(finished(&Status::from(s)), want, "{s}");
        }
    }
}
