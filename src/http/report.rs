//! `GET /api/v1/incidents/{id}/report`: the recovery report, as JSON, or
//! as Markdown for `Accept: text/markdown` or `?format=markdown`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{ApiError, AppState};
use crate::report;

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    /// `json` or `markdown`; without it, `Accept: text/markdown` asks for
    /// Markdown.
    #[serde(default)]
    format: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/incidents/{id}/report", tag = "incidents",
    params(("id" = String, Path, description = "The incident id"), ReportQuery),
    responses(
        (status = 200, description = "The recovery report: time to detect, decide, approve, each step, recovery against the smallest RTO, RPO exposure, votes and the timeline", body = crate::report::Report),
        (status = 200, description = "The same, as Markdown", body = String, content_type = "text/markdown"),
        (status = 400, description = "An unknown format", body = super::ErrorBody),
        (status = 404, description = "No such incident", body = super::ErrorBody),
    ))]
pub async fn get(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Query<ReportQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let markdown = match q.format.as_deref() {
        Some("markdown") => true,
        Some("json") => false,
        Some(other) => {
            return Err(ApiError::BadRequest(
                format!("format {other:?}: expected json or markdown"),
                "bad_format",
            ));
        }
        None => headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/markdown")),
    };
    let rules = app.rules.get();
    let r = report::archive::load(&app.store, &id, &rules.catalogue)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("incident {id}")))?;
    Ok(if markdown {
        (
            [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
            report::markdown(&r),
        )
            .into_response()
    } else {
        Json(r).into_response()
    })
}
