//! `POST /api/v1/alerts/alertmanager`: record, then hand to the pipeline.
//!
//! The response is sent only after the batch is durably in the store, so a
//! 2xx means nothing can be lost; Alertmanager retries anything else.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use chrono::Utc;
use serde::Serialize;
use utoipa::ToSchema;

use super::{ApiError, AppState, ErrorBody};
use crate::signal::Change;
use crate::sources::IntakeError;
use crate::sources::alertmanager::{self, PayloadError, RejectedAlert};

/// A batch recorded: what was taken, and each alert that was not.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    /// Always `ok`.
    pub status: &'static str,
    /// Alerts recorded.
    pub accepted: usize,
    /// Re-sends of alerts already firing (they count once).
    pub deduplicated: u64,
    /// Alerts dropped from the batch, each with why; the rest counted.
    pub rejected: Vec<RejectedAlert>,
}

/// Alertmanager's webhook (payload version 4). 200 only once the batch is
/// in the store; anything else, Alertmanager sends again.
#[utoipa::path(post, path = "/api/v1/alerts/alertmanager", tag = "intake",
    request_body(content = serde_json::Value, content_type = "application/json",
        description = "Alertmanager's webhook payload, version 4"),
    responses(
        (status = 200, description = "Recorded", body = Accepted),
        (status = 400, description = "Not JSON, or not a webhook payload", body = ErrorBody),
        (status = 422, description = "A payload version other than 4", body = ErrorBody),
    ))]
pub async fn alertmanager(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Accepted>, ApiError> {
    let result = handle(&state, body).await;
    if let Err(e) = &result {
        e.record(&state.metrics, "webhook request");
    }
    result
}

async fn handle(
    state: &AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Accepted>, ApiError> {
    let body = body.map_err(|e| match e {
        BytesRejection::FailedToBufferBody(_)
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE =>
        {
            ApiError::TooLarge {
                limit: state.webhook.max_body_bytes,
            }
        }
        other => ApiError::BadRequest(other.body_text(), "unreadable_body"),
    })?;
    let batch = alertmanager::parse(&body, Utc::now(), &state.limits).map_err(|e| match e {
        PayloadError::Json { .. } => ApiError::BadRequest(e.to_string(), e.reason()),
        PayloadError::MissingVersion | PayloadError::UnsupportedVersion(_) => {
            ApiError::Unprocessable(e.to_string(), e.reason())
        }
    })?;
    for r in &batch.rejected {
        tracing::warn!(receiver = %batch.receiver, group_key = %batch.group_key, index = r.index, reason = r.reason, "alert dropped from batch: {}", r.error);
        state
            .metrics
            .signals_rejected
            .with_label_values(&[alertmanager::SOURCE, r.reason])
            .inc();
    }
    state
        .metrics
        .alerts_invalid
        .inc_by(batch.rejected.len() as u64);
    if batch.truncated_alerts > 0 {
        tracing::warn!(receiver = %batch.receiver, truncated = batch.truncated_alerts, "Alertmanager truncated this batch (max_alerts); raise it or expect missing evidence");
    }
    let accepted = batch.signals.len();
    let statuses: Vec<&'static str> = batch.signals.iter().map(|s| s.status.as_str()).collect();
    let changes = state
        .intake
        .record(batch.signals)
        .await
        .map_err(|e| match e {
            IntakeError::Store(e) => ApiError::from(e),
            IntakeError::ShuttingDown => ApiError::Unavailable("shutting down".into()),
        })?;
    for status in statuses {
        state
            .metrics
            .alerts_received
            .with_label_values(&[status])
            .inc();
    }
    let deduplicated = changes.iter().filter(|c| **c == Change::Refreshed).count() as u64;
    state.metrics.alerts_deduplicated.inc_by(deduplicated);
    Ok(Json(Accepted {
        status: "ok",
        accepted,
        deduplicated,
        rejected: batch.rejected,
    }))
}
