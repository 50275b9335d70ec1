//! Config `failback`: when a failback is offered, and who approves it. Its
//! own file so that the incidents handle can hold it without depending on
//! the failback logic that uses the handle.

use std::time::Duration;

use serde::Deserialize;

/// Config `failback`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailbackConfig {
    /// How long the failed region must stay healthy before the failback
    /// is offered for approval.
    #[serde(default = "default_healthy_for", with = "crate::primitives::duration")]
    pub healthy_for: Duration,
    /// The region heartbeat's alert name: while set, the failed region is
    /// healthy only if a firing signal of this name with its `region`
    /// label arrived within `heartbeat_timeout`.
    #[serde(default)]
    pub heartbeat: Option<String>,
    #[serde(
        default = "default_heartbeat_timeout",
        with = "crate::primitives::duration"
    )]
    pub heartbeat_timeout: Duration,
    /// Groups that approve failbacks; empty: the failover rule's approvers
    /// (its groups, owners and escalation).
    #[serde(default)]
    pub approvers: Vec<String>,
}

impl Default for FailbackConfig {
    fn default() -> Self {
        FailbackConfig {
            healthy_for: default_healthy_for(),
            heartbeat: None,
            heartbeat_timeout: default_heartbeat_timeout(),
            approvers: Vec::new(),
        }
    }
}

pub(super) fn default_healthy_for() -> Duration {
    Duration::from_secs(30 * 60)
}

fn default_heartbeat_timeout() -> Duration {
    Duration::from_secs(120)
}
