//! HTTP: the router, request metrics, and the one mapping from errors to
//! responses.

mod api;
mod auth;
pub mod config;
mod state;
mod webhook;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

pub use state::AppState;

pub fn router(state: Arc<AppState>) -> Router {
    let webhook = Router::new()
        .route("/api/v1/alerts/alertmanager", post(webhook::alertmanager))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::webhook_auth,
        ))
        .layer(DefaultBodyLimit::max(state.webhook.max_body_bytes));
    Router::new()
        .merge(webhook)
        .route("/-/reload", post(api::reload))
        .route("/api/v1/slack/interactions", post(api::slack_interaction))
        .route("/api/v1/incidents", get(api::list_incidents))
        .route("/api/v1/incidents/{id}", get(api::get_incident))
        .route("/api/v1/incidents/{id}/approve", post(api::approve))
        .route("/api/v1/incidents/{id}/deny", post(api::deny))
        .route("/api/v1/incidents/{id}/abort", post(api::abort))
        .route("/metrics", get(api::metrics))
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Request latency by matched route (bounded), never by raw path.
async fn observe(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().as_str().to_owned();
    let start = Instant::now();
    let resp = next.run(req).await;
    state
        .metrics
        .http_duration
        .with_label_values(&[&route, &method, resp.status().as_str()])
        .observe(start.elapsed().as_secs_f64());
    resp
}

/// Every error a handler returns. Each carries a bounded reason for the
/// rejection metric and a message for the sender.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String, &'static str),
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0}")]
    Refused(String, &'static str),
    #[error("{0}")]
    Conflict(String),
    /// What the request acts on has moved on (evidence gone, deadline
    /// passed): 409, with a bounded reason.
    #[error("{0}")]
    Stale(String, &'static str),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("request body larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("{0}")]
    Unprocessable(String, &'static str),
    #[error("temporarily unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(..) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::Refused(..) => StatusCode::FORBIDDEN,
            ApiError::Conflict(_) | ApiError::Stale(..) => StatusCode::CONFLICT,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unprocessable(..) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_, r) | ApiError::Unprocessable(_, r) => r,
            ApiError::Unauthorized(r) => r,
            ApiError::Forbidden(_) => "forbidden",
            ApiError::Refused(_, r) | ApiError::Stale(_, r) => r,
            ApiError::Conflict(_) => "conflict",
            ApiError::NotFound(_) => "not_found",
            ApiError::TooLarge { .. } => "too_large",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl ApiError {
    /// Counts a refused request by reason and logs why: every refusal is
    /// visible, whichever route refused it.
    pub fn record(&self, metrics: &crate::telemetry::Metrics, what: &str) {
        metrics
            .requests_rejected
            .with_label_values(&[self.reason()])
            .inc();
        tracing::warn!(reason = self.reason(), "{what} rejected: {self}");
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::Unavailable(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut resp = (
            status,
            axum::Json(json!({ "status": "error", "error": self.to_string() })),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"dr-reactor\""),
            );
        }
        resp
    }
}
