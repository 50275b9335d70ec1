//! Operator controls beyond votes and abort: retrying a failed plan and
//! declaring an incident by hand. Both are for a person with their own
//! token (api.users) or the admin token, and are recorded under the caller.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::{ApiError, AppState, ErrorBody};
use crate::incident::{Declaration, DeclareError, Incident, RetryError, State as IncidentState};
use crate::signal::Labels;

/// Why an operator aborts or retries, for the event log.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    #[serde(default)]
    pub(super) reason: String,
}

/// A retry that took: the incident is approved again and runs on.
#[derive(Debug, Serialize, ToSchema)]
pub struct Retried {
    /// Always `ok`.
    pub status: &'static str,
    pub state: IncidentState,
}

/// `POST /api/v1/incidents/{id}/retry`: a failed plan runs again from its
/// failed step(s), each under a new idempotency key. Anything not failed is
/// refused with 409, and the refusal is recorded on the incident.
#[utoipa::path(post, path = "/api/v1/incidents/{id}/retry", tag = "operator",
    params(("id" = String, Path, description = "The incident id")),
    request_body(content = Option<ReasonBody>, description = "Optional: why"),
    responses(
        (status = 200, description = "The failed step(s) run again", body = Retried),
        (status = 404, description = "No such incident", body = ErrorBody),
        (status = 409, description = "Not failed, or nothing to retry", body = ErrorBody),
    ))]
pub async fn retry(
    State(app): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Option<Json<ReasonBody>>,
) -> Result<Json<Retried>, ApiError> {
    let approvers = super::authz::retry_approvers(&app, &id).await?;
    super::authz::authorize(
        &app,
        &caller,
        crate::access::Action::Retry {
            approvers: approvers.as_deref(),
        },
    )?;
    let actor = caller.actor();
    let reason = body.map(|Json(b)| b.reason).unwrap_or_default();
    match app
        .incidents
        .retry(&id, &actor, &reason, chrono::Utc::now())
        .await
    {
        Ok(inc) => Ok(Json(Retried {
            status: "ok",
            state: inc.state,
        })),
        Err(RetryError::NotFound(id)) => Err(ApiError::NotFound(format!("incident {id}"))),
        Err(e @ (RetryError::NotFailed { .. } | RetryError::NothingToRetry(_))) => {
            let refused = ApiError::Conflict(e.to_string());
            refused.record(&app.metrics, "retry");
            Err(refused)
        }
        Err(e @ RetryError::Busy(_)) => Err(ApiError::Unavailable(e.to_string())),
        Err(RetryError::Incident(e)) => Err(ApiError::from(e)),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeclareBody {
    /// A scenario of the rules in force (`region_outage`).
    scenario: String,
    /// The group labels the rule groups by.
    #[serde(default)]
    #[schema(inline)]
    labels: Labels,
    /// The rule whose plan and approval apply; else the scenario's first.
    #[serde(default)]
    rule: Option<String>,
    #[serde(default)]
    reason: String,
}

/// A declared incident.
#[derive(Debug, Serialize, ToSchema)]
pub struct Declared {
    /// Always `ok`.
    pub status: &'static str,
    pub id: String,
    pub state: IncidentState,
    pub incident: Incident,
}

/// Why a declaration was refused, with what a tool needs to fix it.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeclareRefused {
    /// Always `error`.
    pub status: &'static str,
    pub error: String,
    /// `unknown_scenario`, `unknown_rule`, `missing_labels` or
    /// `reserved_label` (422).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// The open incident with the same key (409).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incident: Option<String>,
    /// Its state (409).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<IncidentState>,
    /// The scenarios or rules the rules in force have (422).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub known: Option<Vec<String>>,
    /// The group labels the declaration lacks (422).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing: Option<Vec<String>>,
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
#[utoipa::path(post, path = "/api/v1/incidents", tag = "operator",
    request_body = DeclareBody,
    responses(
        (status = 201, description = "Declared: planned, guarded and approved like a detected one", body = Declared),
        (status = 409, description = "An incident with the same key is open", body = DeclareRefused),
        (status = 422, description = "An unknown scenario or rule, or missing group labels", body = DeclareRefused),
    ))]
pub async fn declare(
    State(app): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<DeclareBody>,
) -> Result<Response, ApiError> {
    super::authz::authorize(&app, &caller, crate::access::Action::Declare)?;
    let actor = caller.actor();
    let d = body.declaration();
    let rules = app.rules.get();
    let e = match app
        .incidents
        .declare(&d, &actor, &rules, chrono::Utc::now())
        .await
    {
        Ok(inc) => {
            let done = Declared {
                status: "ok",
                id: inc.id.clone(),
                state: inc.state,
                incident: inc,
            };
            return Ok((StatusCode::CREATED, Json(done)).into_response());
        }
        Err(e) => e,
    };
    refuse(&app, e, "declare")
}

/// The answer to a declaration or drill that names no known scenario or
/// rule, lacks group labels, or finds its incident open: 409 naming the
/// open incident, else 422 with the known names (or missing labels) as a
/// list, for tools.
pub(super) fn refuse(app: &AppState, e: DeclareError, what: &str) -> Result<Response, ApiError> {
    let mut refused = DeclareRefused {
        status: "error",
        error: e.to_string(),
        reason: None,
        incident: None,
        state: None,
        known: None,
        missing: None,
    };
    // The known names (or the missing labels) as a list too, for tools.
    let reason = match e {
        DeclareError::AlreadyOpen(open) => {
            ApiError::Conflict(refused.error.clone()).record(&app.metrics, what);
            refused.incident = Some(open.id);
            refused.state = Some(open.state);
            return Ok((StatusCode::CONFLICT, Json(refused)).into_response());
        }
        DeclareError::UnknownScenario { known, .. } => {
            refused.known = Some(known);
            "unknown_scenario"
        }
        DeclareError::UnknownRule { known, .. } => {
            refused.known = Some(known);
            "unknown_rule"
        }
        DeclareError::MissingLabels { missing, .. } => {
            refused.missing = Some(missing);
            "missing_labels"
        }
        DeclareError::ReservedLabel => "reserved_label",
        DeclareError::Incident(e) => return Err(ApiError::from(e)),
    };
    ApiError::Unprocessable(refused.error.clone(), reason).record(&app.metrics, what);
    refused.reason = Some(reason);
    Ok((StatusCode::UNPROCESSABLE_ENTITY, Json(refused)).into_response())
}
