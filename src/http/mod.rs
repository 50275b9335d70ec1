//! HTTP: the routes (one table, [`routes`], for the router and the OpenAPI
//! document), request metrics, and the one mapping from errors to
//! responses.

mod api;
mod auth;
mod authz;
pub mod config;
mod console;
pub mod credentials;
mod drill;
mod incidents;
mod kill_switch;
mod operator;
mod params;
mod report;
pub mod routes;
mod serve;
mod silences;
mod slack;
mod state;
mod webhook;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

pub use routes::{OPENAPI_JSON, metrics_router, openapi, router};
pub use serve::serve;
pub use state::AppState;

/// Request latency by matched route and known method (both closed sets),
/// never by raw path or method: anyone can send `FOO /x` and must not be
/// able to create series.
async fn observe(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = method_label(req.method());
    let start = Instant::now();
    let resp = next.run(req).await;
    state
        .metrics
        .http_duration
        .with_label_values(&[&route, method, resp.status().as_str()])
        .observe(start.elapsed().as_secs_f64());
    resp
}

/// The method as a metric label: one of the standard methods, else `other`.
fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
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
    /// A token that was valid and no longer is (expired, or removed from
    /// config): 401, saying which.
    #[error("{0}")]
    CredentialEnded(String, &'static str),
    #[error("{0}")]
    Refused(String, &'static str),
    #[error("{0}")]
    Conflict(String),
    /// What the request acts on has moved on (evidence gone, deadline
    /// passed, plan revised): 409, with a bounded reason.
    #[error("{0}")]
    Stale(String, &'static str),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("request body larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("request body not received within {0:?}")]
    Timeout(std::time::Duration),
    #[error("overloaded: too many requests at once; try again shortly")]
    Overloaded,
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
            ApiError::Unauthorized(_) | ApiError::CredentialEnded(..) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::Refused(..) => StatusCode::FORBIDDEN,
            ApiError::Conflict(_) | ApiError::Stale(..) => StatusCode::CONFLICT,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
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
            ApiError::Refused(_, r) | ApiError::Stale(_, r) | ApiError::CredentialEnded(_, r) => r,
            ApiError::Conflict(_) => "conflict",
            ApiError::NotFound(_) => "not_found",
            ApiError::TooLarge { .. } => "too_large",
            ApiError::Timeout(_) => "body_timeout",
            ApiError::Overloaded => "overloaded",
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

/// A store error answers 503 with a request id, never with its text (which
/// may quote the request or the schema); the log has the error under the
/// same id.
impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        let id = uuid::Uuid::now_v7();
        tracing::error!(request = %id, "the store failed a request: {e}");
        ApiError::Unavailable(format!("the store did not answer; request {id}"))
    }
}

/// An incident change that failed: the store's error stays in the log, as
/// above; a lost race or a deposed leader says so.
impl From<crate::incident::IncidentError> for ApiError {
    fn from(e: crate::incident::IncidentError) -> Self {
        use crate::incident::IncidentError;
        match e {
            IncidentError::Store(e) => e.into(),
            e @ IncidentError::InvalidTransition { .. } => ApiError::Conflict(e.to_string()),
            e @ IncidentError::NotLeader => ApiError::Unavailable(e.to_string()),
        }
    }
}

/// The body of every refusal.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Always `error`.
    pub status: &'static str,
    /// What was wrong, for the sender.
    pub error: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ErrorBody {
            status: "error",
            error: self.to_string(),
        };
        let mut resp = (status, axum::Json(body)).into_response();
        if matches!(self, ApiError::Overloaded) {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"dr-reactor\""),
            );
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use axum::http::Method;

    #[test]
    fn method_labels_are_a_closed_set() {
        assert_eq!(super::method_label(&Method::GET), "GET");
        assert_eq!(super::method_label(&Method::PATCH), "PATCH");
        assert_eq!(super::method_label(&Method::TRACE), "other");
        let made_up = Method::from_bytes(b"FROBNICATE").unwrap();
        assert_eq!(super::method_label(&made_up), "other");
    }
}
