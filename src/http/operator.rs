//! Operator controls beyond votes and abort: retrying a failed plan and
//! declaring an incident by hand. Both are for a person with their own
//! token (api.users) or the admin token, and are recorded under the caller.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Caller;
use super::{ApiError, AppState};
use crate::incident::{Declaration, DeclareError, RetryError};
use crate::signal::Labels;

/// Who the event log names for a caller.
pub(super) fn actor(caller: Caller) -> String {
    match caller {
        Caller::User(id) => id,
        Caller::Admin => "admin".to_owned(),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryBody {
    #[serde(default)]
    reason: String,
}

/// `POST /api/v1/incidents/{id}/retry`: a failed plan runs again from its
/// failed step(s), each under a new idempotency key. Anything not failed is
/// refused with 409, and the refusal is recorded on the incident.
pub async fn retry(
    State(app): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Option<Json<RetryBody>>,
) -> Result<Json<Value>, ApiError> {
    let actor = actor(caller);
    let reason = body.map(|Json(b)| b.reason).unwrap_or_default();
    match app
        .incidents
        .retry(&id, &actor, &reason, chrono::Utc::now())
        .await
    {
        Ok(inc) => Ok(Json(json!({ "status": "ok", "state": inc.state }))),
        Err(RetryError::NotFound(id)) => Err(ApiError::NotFound(format!("incident {id}"))),
        Err(e @ (RetryError::NotFailed { .. } | RetryError::NothingToRetry(_))) => {
            let refused = ApiError::Conflict(e.to_string());
            refused.record(&app.metrics, "retry");
            Err(refused)
        }
        Err(e @ RetryError::Busy(_)) => Err(ApiError::Unavailable(e.to_string())),
        Err(RetryError::Incident(e)) => Err(ApiError::Unavailable(e.to_string())),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclareBody {
    scenario: String,
    #[serde(default)]
    labels: Labels,
    #[serde(default)]
    rule: Option<String>,
    #[serde(default)]
    reason: String,
}

impl DeclareBody {
    pub(super) fn declaration(self) -> Declaration {
        Declaration {
            scenario: self.scenario,
            rule: self.rule,
            labels: self.labels,
            reason: self.reason,
        }
    }
}

/// `POST /api/v1/incidents`: an incident declared by hand, through the
/// path a detected one takes. 201 with the incident; 422 for a scenario or
/// rule the rules in force do not have (the answer lists the known ones);
/// 409 if an incident with the same key is open (the answer names it).
pub async fn declare(
    State(app): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<DeclareBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let actor = actor(caller);
    let d = body.declaration();
    let rules = app.rules.get();
    let e = match app
        .incidents
        .declare(&d, &actor, &rules, chrono::Utc::now())
        .await
    {
        Ok(inc) => {
            return Ok((
                StatusCode::CREATED,
                Json(json!({ "status": "ok", "id": inc.id, "state": inc.state, "incident": inc })),
            ));
        }
        Err(e) => e,
    };
    refuse(&app, e, "declare")
}

/// The answer to a declaration or drill that names no known scenario or
/// rule, lacks group labels, or finds its incident open: 409 naming the
/// open incident, else 422 with the known names (or missing labels) as a
/// list, for tools.
pub(super) fn refuse(
    app: &AppState,
    e: DeclareError,
    what: &str,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let msg = e.to_string();
    let (reason, field, names) = match e {
        DeclareError::AlreadyOpen(open) => {
            ApiError::Conflict(msg.clone()).record(&app.metrics, what);
            return Ok((
                StatusCode::CONFLICT,
                Json(json!({
                    "status": "error",
                    "error": msg,
                    "incident": open.id,
                    "state": open.state,
                })),
            ));
        }
        DeclareError::UnknownScenario { known, .. } => ("unknown_scenario", "known", known),
        DeclareError::UnknownRule { known, .. } => ("unknown_rule", "known", known),
        DeclareError::MissingLabels { missing, .. } => ("missing_labels", "missing", missing),
        DeclareError::Incident(e) => return Err(ApiError::Unavailable(e.to_string())),
    };
    ApiError::Unprocessable(msg.clone(), reason).record(&app.metrics, what);
    let mut body = json!({ "status": "error", "error": msg, "reason": reason });
    body[field] = json!(names);
    Ok((StatusCode::UNPROCESSABLE_ENTITY, Json(body)))
}
