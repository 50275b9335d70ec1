//! What every handler shares. `app` builds it from the config and the
//! running stages and hands it to [`super::router`].

use std::sync::Arc;

use tokio::sync::mpsc;

use super::config::{ServerConfig, WebhookConfig};
use crate::approval::slack::Slack;
use crate::approval::votes::Directory;
use crate::incident::Incidents;
use crate::leadership::Leadership;
use crate::reload::Reloader;
use crate::signal::SignalEvent;
use crate::store::Store;
use crate::telemetry::Metrics;

/// Shared by every handler.
pub struct AppState {
    /// Webhook authentication and body limit.
    pub webhook: WebhookConfig,
    /// Read timeouts and request limits.
    pub server: ServerConfig,
    /// What one alert may carry; an alert over a limit is rejected alone.
    pub limits: crate::sources::limits::IntakeLimits,
    /// The admin token, people's own tokens and read tokens, as digests;
    /// re-read on reload.
    pub credentials: Arc<super::credentials::Credentials>,
    /// Who may approve through the API.
    pub directory: Directory,
    pub store: Store,
    pub metrics: Metrics,
    /// Recorded signals on their way to the rule engine. Bounded: when the
    /// engine falls behind, webhook responses slow down instead of memory
    /// growing.
    pub signals: mpsc::Sender<Vec<SignalEvent>>,
    /// Records webhook signals, concurrent requests in one transaction.
    pub intake: crate::sources::Recorder,
    pub reloader: Arc<Reloader>,
    /// For votes from the API (Slack too): the one place incidents change.
    pub incidents: Incidents,
    pub slack: Option<Arc<Slack>>,
    /// Whether the pipeline task runs (false between a panic and its
    /// restart): `/readyz` is 503 without it.
    pub pipeline: crate::primitives::supervise::Running,
    /// Who leads; `/readyz` shows it.
    pub leadership: Arc<Leadership>,
    /// The Kafka consumer's connection, for `/readyz`.
    pub kafka: Option<crate::sources::kafka::Health>,
    /// The rules in force, for incidents declared by hand (and the
    /// console's rules and catalogue pages).
    pub rules: crate::sources::RulesInForce,
    /// The latest runbook readiness report, for the detailed `/readyz`
    /// (empty on a follower and with dry-run: only a live leader checks).
    pub readiness: crate::readiness::Board,
    /// The console's settings.
    pub console: super::config::ConsoleConfig,
    /// The engine's open groups, asked of the pipeline for the console.
    pub groups: crate::pipeline::Groups,
}
