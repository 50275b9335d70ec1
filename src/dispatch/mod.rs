//! Dispatch: running plan steps.
//!
//! This build runs every plan in dry-run: each step is recorded in the
//! incident's event log with exactly what would be called (document or
//! function, region, parameters, idempotency key) and logged, and nothing
//! leaves the process.

use crate::plan::{Action, Step};

/// One line describing what a step would call, for logs and Slack.
pub fn describe(step: &Step) -> String {
    match &step.action {
        Action::Ssm {
            document, region, ..
        } => format!("SSM Automation {document} in {region}"),
        Action::Lambda {
            function, region, ..
        } => format!("Lambda {function} in {region}"),
    }
}
