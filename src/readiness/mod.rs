//! Runbook readiness: is every runbook the rules can call there, callable,
//! and callable the way the plans call it — before an incident needs it?
//!
//! - [`targets`]: every SSM document and Lambda function the rules and the
//!   catalogue can call, in every region the catalogue can give them.
//! - [`check`]: one pass of DescribeDocument / GetFunction through the
//!   dispatcher, and what the answers mean for the callers.
//! - [`board`]: the latest report, read by `/readyz` and by incident
//!   planning (a plan that needs a runbook not ready says so).
//! - [`task`]: the leader's periodic pass, the gauge and Slack.
//!
//! Not-ready runbooks never block intake or fail `/readyz`: a DR tool
//! keeps taking alerts, and a person decides whether a plan can still run.

pub mod board;
pub mod check;
pub mod targets;
pub mod task;

use std::time::Duration;

use serde::Deserialize;

pub use board::{Board, Report, RunbookStatus};
pub use task::Checker;

/// The `readiness:` section of the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadinessConfig {
    /// How often the leader checks again, besides at start and after each
    /// reload.
    #[serde(default = "default_interval", with = "crate::primitives::duration")]
    pub interval: Duration,
}

impl Default for ReadinessConfig {
    fn default() -> Self {
        ReadinessConfig {
            interval: default_interval(),
        }
    }
}

fn default_interval() -> Duration {
    Duration::from_secs(30 * 60)
}
