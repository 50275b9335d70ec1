//! Read API, health and metrics.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Caller;
use super::{ApiError, AppState};
use crate::approval::votes::{Choice, Verdict, Vote};
use crate::incident::{AbortError, Aborting, ApprovalError, State as IncidentState};

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    state: Option<String>,
    limit: Option<i64>,
}

pub async fn list_incidents(
    State(app): State<Arc<AppState>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let state = match q.state.as_deref() {
        None => None,
        Some(s) => Some(
            IncidentState::parse(s)
                .ok_or_else(|| ApiError::BadRequest(format!("unknown state {s:?}"), "bad_query"))?,
        ),
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let incidents = app.store.incidents(state, limit).await?;
    Ok(Json(json!({ "incidents": incidents })))
}

pub async fn get_incident(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let incident = app
        .store
        .incident(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("incident {id}")))?;
    let signals = app.store.incident_signals(&id).await?;
    let events = app.store.events(&id).await?;
    Ok(Json(
        json!({ "incident": incident, "signals": signals, "events": events }),
    ))
}

pub async fn metrics(State(app): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
        app.metrics.render(),
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoteBody {
    /// Who is voting, for the admin token (break-glass): a user id in the
    /// approver directory. With a user's own token it may be left out, and
    /// if given must be that user.
    #[serde(rename = "as", default)]
    user: Option<String>,
    #[serde(default)]
    reason: String,
    #[serde(default = "via_api")]
    via: String,
    /// The plan being approved, as its digest (at least the 12 digits the
    /// message shows). Refused if the plan has changed since; without it
    /// the vote is for the plan in force when it is counted.
    #[serde(default)]
    plan_digest: Option<String>,
}

fn via_api() -> String {
    "api".into()
}

pub async fn approve(
    state: State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    id: Path<String>,
    body: Json<VoteBody>,
) -> Result<Json<Value>, ApiError> {
    vote(state, headers, id, body, Choice::Approve).await
}

pub async fn deny(
    state: State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    id: Path<String>,
    body: Json<VoteBody>,
) -> Result<Json<Value>, ApiError> {
    vote(state, headers, id, body, Choice::Deny).await
}

/// The fallback approval path (Slack down): same policy, same audit.
async fn vote(
    State(app): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
    Json(body): Json<VoteBody>,
    choice: Choice,
) -> Result<Json<Value>, ApiError> {
    let caller = operator(&app, &headers)?;
    if !matches!(body.via.as_str(), "api" | "cli") {
        return Err(ApiError::BadRequest(
            "via must be api or cli".into(),
            "bad_body",
        ));
    }
    let (user, break_glass) = match (caller, body.user) {
        (Caller::User(id), None) => (id, false),
        (Caller::User(id), Some(named)) if named == id => (id, false),
        (Caller::User(id), Some(named)) => {
            let refused = ApiError::Refused(
                format!("this token is {id}'s; it cannot vote as {named}"),
                "impersonation",
            );
            refused.record(&app.metrics, "vote");
            return Err(refused);
        }
        (Caller::Admin, Some(named)) => (named, true),
        (Caller::Admin, None) => {
            return Err(ApiError::BadRequest(
                "the admin token votes break-glass and must name the user (\"as\"); \
                 use your own token from api.users to vote as yourself"
                    .into(),
                "bad_body",
            ));
        }
    };
    let v = Vote {
        user,
        choice,
        via: body.via,
        break_glass,
        plan_digest: body.plan_digest,
    };
    let result = app
        .incidents
        .vote(&id, v, &body.reason, &app.directory, chrono::Utc::now())
        .await;
    match result {
        Ok((verdict, inc)) => Ok(Json(json!({
            "status": "ok",
            "state": inc.state,
            "verdict": match verdict {
                Verdict::Approved { .. } => "approved",
                Verdict::Denied { .. } => "denied",
                Verdict::Pending { .. } => "pending",
                Verdict::Refused(_) => unreachable!("an error"),
            },
            "still_needed": match verdict { Verdict::Pending { still_needed } => still_needed, _ => 0 },
        }))),
        Err(ApprovalError::NotFound(id)) => Err(ApiError::NotFound(format!("incident {id}"))),
        Err(e @ ApprovalError::NotAwaiting { .. }) => Err(ApiError::Conflict(e.to_string())),
        Err(ApprovalError::Refused(r)) if r.is_conflict() => {
            Err(ApiError::Stale(format!("vote refused: {r}"), r.reason()))
        }
        Err(ApprovalError::Refused(r)) => {
            Err(ApiError::Refused(format!("vote refused: {r}"), r.reason()))
        }
        Err(e @ ApprovalError::Busy(_)) => Err(ApiError::Unavailable(e.to_string())),
        Err(ApprovalError::Incident(e)) => Err(ApiError::Unavailable(e.to_string())),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbortBody {
    #[serde(default)]
    reason: String,
}

/// `POST /api/v1/incidents/{id}/abort`: an operator stops an approved or
/// running plan. Any person with their own token may (stopping is the safe
/// direction), and the admin token; the event log says who.
pub async fn abort(
    State(app): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
    body: Option<Json<AbortBody>>,
) -> Result<Json<Value>, ApiError> {
    let actor = match operator(&app, &headers)? {
        Caller::User(id) => id,
        Caller::Admin => "admin".to_owned(),
    };
    let reason = body.map(|Json(b)| b.reason).unwrap_or_default();
    let done = app
        .incidents
        .abort(&id, &actor, &reason, chrono::Utc::now())
        .await;
    match done {
        Ok(Aborting::Done(inc)) => Ok(Json(
            json!({ "status": "ok", "abort": "done", "state": inc.state }),
        )),
        Ok(Aborting::Requested(inc)) => Ok(Json(
            json!({ "status": "ok", "abort": "requested", "state": inc.state }),
        )),
        Err(AbortError::NotFound(id)) => Err(ApiError::NotFound(format!("incident {id}"))),
        Err(e @ AbortError::NotAbortable { .. }) => Err(ApiError::Conflict(e.to_string())),
        Err(e @ AbortError::Busy(_)) => Err(ApiError::Unavailable(e.to_string())),
        Err(AbortError::Incident(e)) => Err(ApiError::Unavailable(e.to_string())),
    }
}

fn admin(app: &AppState, headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    super::auth::admin(app.admin_token.as_ref(), authorization(headers))
        .inspect_err(|e| e.record(&app.metrics, "operator API request"))
}

/// The admin or a person with their own token.
fn operator(app: &AppState, headers: &axum::http::HeaderMap) -> Result<Caller, ApiError> {
    super::auth::operator(
        app.admin_token.as_ref(),
        &app.api_users,
        authorization(headers),
    )
    .inspect_err(|e| e.record(&app.metrics, "operator API request"))
}

fn authorization(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

/// `POST /api/v1/slack/interactions`: an Approve or Deny click. Verified
/// (signature, timestamp, no replay) before anything is read from it.
pub async fn slack_interaction(
    State(app): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let slack = app
        .slack
        .as_ref()
        .ok_or_else(|| ApiError::NotFound("slack is not configured".into()))?;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Err(e) = slack.verify(
        header("x-slack-signature"),
        header("x-slack-request-timestamp"),
        &body,
        chrono::Utc::now(),
    ) {
        let refused = ApiError::Unauthorized(e.reason());
        refused.record(&app.metrics, &format!("slack request ({e})"));
        return Err(refused);
    }
    let click = crate::approval::slack::parse_interaction(&body)
        .map_err(|e| ApiError::BadRequest(format!("slack interaction: {e}"), "bad_interaction"))?;
    let v = Vote {
        user: click.user_id.clone(),
        choice: if click.approve {
            Choice::Approve
        } else {
            Choice::Deny
        },
        via: "slack".into(),
        break_glass: false,
        plan_digest: click.plan_digest.clone(),
    };
    let text = match app
        .incidents
        .vote(
            &click.incident_id,
            v,
            "",
            &app.directory,
            chrono::Utc::now(),
        )
        .await
    {
        Ok((Verdict::Pending { still_needed }, _)) => {
            format!("Recorded. {still_needed} more approval(s) needed.")
        }
        Ok((_, inc)) => format!("Recorded: the incident is {}.", inc.state),
        Err(e) => format!("Not recorded: {e}"),
    };
    // Shown only to the clicker; the shared message is updated separately.
    Ok(Json(
        json!({ "response_type": "ephemeral", "replace_original": false, "text": text }),
    ))
}

/// `POST /-/reload`: reload rules and catalogue now.
pub async fn reload(
    State(app): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    admin(&app, &headers)?;
    Ok(match app.reloader.reload("api").await {
        Ok(set) => (
            StatusCode::OK,
            Json(
                json!({ "status": "ok", "rules": set.rules.len(), "services": set.catalogue.services.len() }),
            ),
        ),
        Err(errors) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({
                "status": "error",
                "error": "rule set rejected; the running rules stay",
                "errors": errors.0.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
            })),
        ),
    })
}

pub async fn healthz() -> &'static str {
    "ok"
}

/// Ready when the store answers and a rule set is loaded. Kafka being
/// unreachable only degrades readiness: failing it would also take the
/// webhook out of service, and a DR tool must keep taking alerts while the
/// event bus is part of the outage.
pub async fn readyz(State(app): State<Arc<AppState>>) -> impl IntoResponse {
    use crate::sources::kafka::Connection;
    let store = app.store.ping().await;
    let rules = app.reloader.status();
    // A follower is ready: it takes webhooks, events, votes and API calls.
    let leadership = app.leadership.status(&app.store).await;
    let ready = store.is_ok() && rules.loaded;
    let kafka = app.kafka.as_ref().map(|h| h.connection());
    let degraded = kafka.is_some_and(|c| c != Connection::Connected);
    let mut body = json!({
        "ready": ready,
        "degraded": degraded,
        "store": match &store { Ok(()) => json!({"ok": true}), Err(e) => json!({"ok": false, "error": e.to_string()}) },
        "rules": rules,
        "leadership": leadership.unwrap_or_else(|e| json!({"error": e.to_string()})),
    });
    if let Some(c) = kafka {
        body["kafka"] = json!(c);
    }
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}
