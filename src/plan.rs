//! A recovery plan: the ordered steps an incident will run. Built by the
//! rule engine, persisted with the incident, executed by dispatch.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// Run the remaining steps after one fails (the rule's choice).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub continue_on_failure: bool,
}

impl Plan {
    /// SHA-256 of the plan's canonical JSON, hex: what an approval is for.
    /// A vote counts only for the plan it was cast on, so a plan that grew
    /// after someone approved it needs approving again.
    pub fn digest(&self) -> String {
        use sha2::Digest as _;
        // Serialising plain data (strings, maps, numbers) cannot fail.
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The first 12 hex digits, for people to compare at a glance.
    pub fn short_digest(&self) -> String {
        self.digest()[..12].to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Step {
    /// Human name shown in Slack and the audit log.
    pub name: String,
    /// The service the step recovers, when it came from the catalogue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub action: Action,
    /// Deterministic per incident and step: the same on every retry and
    /// restart, so the executor can refuse to start a second execution.
    pub idempotency_key: String,
    /// How long an SSM step may run before it is stopped and fails (the
    /// step's or its rule's; else `aws.step_timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
    /// A drill's step with nothing to call (`drills.dispatch: record`, or
    /// no drill variant of its runbook): recorded as done, never sent.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub record: bool,
    /// The catalogue runbook that undoes this step (its runbook's
    /// `failback:`): after the plan succeeds, these make the failback plan,
    /// in reverse order. Part of what an approver approves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failback: Option<String>,
}

impl Step {
    /// What the step runs and where, for logs, Slack and dry-run events.
    pub fn describe(&self) -> String {
        match &self.action {
            Action::Ssm {
                document, region, ..
            } => format!("SSM Automation {document} in {region}"),
            Action::Lambda {
                function, region, ..
            } => format!("Lambda {function} in {region}"),
        }
    }
}

/// How a drill's plan is dispatched (config `drills.dispatch`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrillDispatch {
    /// Each catalogue step runs its runbook's `drill:` variant (a no-op or
    /// a staging document); a step with none is recorded.
    #[default]
    DrillRunbook,
    /// Every step is recorded, none called: the rehearsal is of the
    /// people and the timings.
    Record,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[schema(as = StepAction)]
pub enum Action {
    /// SSM Automation: StartAutomationExecution.
    Ssm {
        document: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        document_version: Option<String>,
        region: String,
        parameters: std::collections::BTreeMap<String, Vec<String>>,
    },
    /// Lambda Invoke (RequestResponse).
    Lambda {
        function: String,
        region: String,
        payload: serde_json::Value,
    },
}

/// The idempotency key of step `index` of `incident_id`: a UUIDv5, because
/// SSM's ClientToken must be at most 36 characters and the key must come out
/// the same from the same inputs on any replica.
pub fn idempotency_key(incident_id: &str, index: usize) -> String {
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6472_2d72_6561_6374_6f72_2d73_7465_7073);
    uuid::Uuid::new_v5(&NAMESPACE, format!("{incident_id}/{index}").as_bytes()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_key_is_deterministic_and_fits_client_token() {
        let a = idempotency_key("inc-1", 0);
        assert_eq!(a, idempotency_key("inc-1", 0));
        assert_ne!(a, idempotency_key("inc-1", 1));
        assert_ne!(a, idempotency_key("inc-2", 0));
        assert_eq!(a.len(), 36);
    }
}
