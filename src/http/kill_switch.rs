//! The global dispatch kill switch over HTTP: anyone who may read sees it;
//! only an admin turns it (the admin token, or a person `api.users` makes
//! admin). See
//! `incident::kill_switch` for what it stops and what it leaves running.

use std::sync::Arc;

use axum::extract::State;
use axum::{Extension, Json};
use serde::Deserialize;
use utoipa::ToSchema;

use super::auth::Caller;
use super::{ApiError, AppState, ErrorBody};
use crate::incident::SwitchChange;
use crate::store::KillSwitch;

/// How long a reason may be: it goes into the store and every page.
const MAX_REASON: usize = 1024;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SwitchBody {
    /// On: no plan step starts anywhere until it is off again.
    engaged: bool,
    /// Why: shown on every console page and in `/readyz`.
    reason: String,
    /// With `engaged`: also abort every approved or running plan (steps in
    /// flight are stopped). Without it, running steps finish.
    #[serde(default)]
    abort_running: bool,
    /// Who asks, recorded with the admin token's change (`admin for NAME`).
    #[serde(default)]
    by: Option<String>,
}

/// `GET /api/v1/kill-switch`: the switch in force.
#[utoipa::path(get, path = "/api/v1/kill-switch", tag = "operator",
    responses((status = 200, description = "The switch in force", body = KillSwitch)))]
pub async fn get(State(app): State<Arc<AppState>>) -> Result<Json<KillSwitch>, ApiError> {
    app.incidents
        .kill_switch()
        .await
        .map(Json)
        .map_err(ApiError::from)
}

/// `PUT /api/v1/kill-switch`: turn the switch on or off (admin token).
#[utoipa::path(put, path = "/api/v1/kill-switch", tag = "operator",
    request_body = SwitchBody,
    responses(
        (status = 200, description = "Recorded; in force within one second on the leader", body = SwitchChange),
        (status = 400, description = "No reason, or one too long", body = ErrorBody),
    ))]
pub async fn put(
    State(app): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<SwitchBody>,
) -> Result<Json<SwitchChange>, ApiError> {
    super::authz::authorize(&app, &caller, crate::access::Action::KillSwitch)?;
    let reason = body.reason.trim();
    if reason.is_empty() || reason.len() > MAX_REASON || reason.contains('\0') {
        return Err(ApiError::BadRequest(
            format!("reason: required, at most {MAX_REASON} bytes, no NUL"),
            "kill_switch_reason",
        ));
    }
    let who = caller.actor();
    let actor = match body.by.as_deref().map(str::trim).filter(|b| !b.is_empty()) {
        Some(by) if by.len() <= 128 && !by.contains('\0') => format!("{who} for {by}"),
        Some(_) => {
            return Err(ApiError::BadRequest(
                "by: at most 128 bytes, no NUL".into(),
                "kill_switch_by",
            ));
        }
        None => who,
    };
    app.incidents
        .set_kill_switch(
            body.engaged,
            &actor,
            reason,
            body.abort_running,
            chrono::Utc::now(),
        )
        .await
        .map(Json)
        .map_err(ApiError::from)
}
