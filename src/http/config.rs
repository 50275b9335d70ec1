//! The `webhook:` section of the config file (how Alertmanager
//! authenticates, how large a delivery may be) and the operator API's
//! per-user tokens.

use serde::Deserialize;

use crate::primitives::Secret;

/// The `webhook:` section of the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub auth: WebhookAuth,
    /// Larger bodies get 413. Alertmanager batches are small; 1 MiB holds
    /// well over a thousand alerts.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
}

/// At least one of bearer token or basic auth is required; running without
/// authentication has to be asked for by name.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookAuth {
    #[serde(default)]
    pub bearer_token: Option<Secret>,
    #[serde(default)]
    pub basic: Option<BasicAuth>,
    #[serde(default)]
    pub insecure_no_auth: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    pub password: Secret,
}

fn default_max_body() -> usize {
    1 << 20
}

/// One person's own credential for the operator API (`api.users`). Votes
/// cast with it are recorded as `id`, which names the person in the
/// approver directory (and in Slack, so a Slack click and an API vote by
/// the same person are one person).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiUser {
    pub id: String,
    pub token: Secret,
}
