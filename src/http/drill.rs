//! `POST /api/v1/drills`: a drill's synthetic signals, derived from the
//! rule and the catalogue ([`crate::drill`]), recorded like a webhook's and
//! handed to the pipeline. For a person with their own token or the admin
//! token; the signals carry who started it and why.
//!
//! The drill ends on its own: once its incident has finished (any terminal
//! state), its signals are resolved (heartbeats beat again) through the
//! same intake, so the incident closes a window later as a real one does.
//! That watch lives in this process; after a restart the signals end by
//! `rules.signal_ttl` instead.

use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::Caller;
use super::operator::{DeclareBody, refuse};
use super::{ApiError, AppState};
use crate::drill::{self, Drill, DrillError};
use crate::incident::DeclareError;
use crate::sources::IntakeError;

/// How often the watch looks at the drill's incident.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);
/// How long the watch waits for the drill to finish before it leaves the
/// signals to `rules.signal_ttl`.
const WATCH_FOR: Duration = Duration::from_secs(24 * 3600);

/// A drill started.
#[derive(Debug, Serialize, ToSchema)]
pub struct DrillStarted {
    /// Always `ok`.
    pub status: &'static str,
    /// The drill's id, in its signals' annotations.
    pub drill: String,
    /// The rule whose conditions its signals satisfy.
    pub rule: String,
    /// The key its incident opens under (the drill label included).
    pub key: String,
    /// Synthetic signals recorded.
    pub signals: usize,
    /// When its incident opens, from now (a heartbeat's silence for
    /// absence rules).
    pub opens_after_secs: u64,
}

/// 201 with the drill's id, incident key, signal count and how long until
/// its incident opens; 409 if a drill of that key is open; 422 for what a
/// declaration is refused for, or a rule no signal set can satisfy.
#[utoipa::path(post, path = "/api/v1/drills", tag = "operator",
    request_body = DeclareBody,
    responses(
        (status = 201, description = "Started: its synthetic signals are recorded and go through the pipeline", body = DrillStarted),
        (status = 409, description = "A drill incident with the same key is open", body = super::operator::DeclareRefused),
        (status = 422, description = "An unknown scenario or rule, missing group labels, or a rule no signal set satisfies", body = super::operator::DeclareRefused),
    ))]
pub async fn start(
    State(app): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<DeclareBody>,
) -> Result<Response, ApiError> {
    super::authz::authorize(&app, &caller, crate::access::Action::Drill)?;
    let actor = caller.actor();
    let d = body.declaration();
    let rules = app.rules.get();
    let drill = match drill::derive(&d, &rules, &actor, chrono::Utc::now()) {
        Ok(drill) => drill,
        Err(DrillError::Rule(e)) => return refuse(&app, e, "drill"),
        Err(e @ DrillError::Underivable { .. }) => {
            let refused = ApiError::Unprocessable(e.to_string(), "underivable");
            refused.record(&app.metrics, "drill");
            return Err(refused);
        }
    };
    if let Some(open) = app.store.open_incident_for(&drill.key).await? {
        return refuse(&app, DeclareError::AlreadyOpen(Box::new(open)), "drill");
    }
    app.intake
        .record(drill.signals.clone())
        .await
        .map_err(|e| match e {
            IntakeError::Store(e) => ApiError::from(e),
            IntakeError::ShuttingDown => ApiError::Unavailable("shutting down".into()),
        })?;
    tracing::warn!(drill = %drill.id, rule = %drill.rule.name, key = %drill.key, actor, reason = %d.reason, signals = drill.signals.len(), "drill started");
    let answer = DrillStarted {
        status: "ok",
        drill: drill.id.clone(),
        rule: drill.rule.name.clone(),
        key: drill.key.clone(),
        signals: drill.signals.len(),
        opens_after_secs: drill.opens_after.as_secs(),
    };
    tokio::spawn(end_when_finished(Arc::downgrade(&app), drill));
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// Waits for the drill's incident to open and finish, then ends its
/// signals. It holds the server's state only while it looks, so it never
/// keeps intake (and with it the pipeline) alive past shutdown.
async fn end_when_finished(app: Weak<AppState>, drill: Drill) {
    let deadline = tokio::time::Instant::now() + WATCH_FOR;
    let mut seen = false;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(WATCH_INTERVAL).await;
        let Some(app) = app.upgrade() else { return };
        match app.store.open_incident_for(&drill.key).await {
            Ok(Some(inc)) if inc.state.is_terminal() => break,
            Ok(Some(_)) => seen = true,
            Ok(None) if seen => break,
            Ok(None) => {}
            Err(e) => tracing::warn!(drill = %drill.id, "watching the drill: {e}"),
        }
    }
    let Some(app) = app.upgrade() else { return };
    let ending = drill::ending(&drill.rule, &drill.signals, chrono::Utc::now());
    match app.intake.record(ending).await {
        Ok(_) => tracing::info!(drill = %drill.id, "drill finished: its signals ended"),
        Err(e) => {
            tracing::warn!(drill = %drill.id, "ending the drill's signals: {e}; rules.signal_ttl ends them")
        }
    }
}
