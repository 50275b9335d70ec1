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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    #[serde(default)]
    format: Option<String>,
}

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
