//! Votes and abort (the API's and the console's), Slack's button clicks,
//! reload, health, readiness and metrics.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::response::Response;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::auth::Caller;
use super::operator::ReasonBody;
use super::slack::SlackReply;
use super::{ApiError, AppState, ErrorBody};
use crate::approval::slack::Click;
use crate::approval::votes::{Choice, Verdict, Vote};
use crate::incident::{AbortError, Aborting, ApprovalError, State as IncidentState};

/// The Prometheus exposition (on `server.metrics_listen` instead when set).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub async fn metrics(State(app): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
        app.metrics.render(),
    )
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VoteBody {
    /// Who is voting, for the admin token (break-glass): a user id in the
    /// approver directory. With a user's own token it may be left out, and
    /// if given must be that user.
    #[serde(rename = "as", default)]
    pub(super) user: Option<String>,
    #[serde(default)]
    pub(super) reason: String,
    /// `api` (the default) or `cli`: where the vote was cast, for the log.
    #[serde(default = "via_api")]
    pub(super) via: String,
    /// The plan being approved, as its digest (at least the 12 digits the
    /// message shows). Refused if the plan has changed since; without it
    /// the vote is for the plan in force when it is counted.
    #[serde(default)]
    pub(super) plan_digest: Option<String>,
}

fn via_api() -> String {
    "api".into()
}

/// What a counted vote did.
#[derive(Debug, Serialize, ToSchema)]
pub struct VoteAnswer {
    /// Always `ok`.
    pub status: &'static str,
    /// The incident's state after the vote.
    pub state: IncidentState,
    pub verdict: VoteVerdict,
    /// Approvals still needed (0 unless `pending`).
    pub still_needed: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VoteVerdict {
    Approved,
    Denied,
    /// Counted; more approvals are needed.
    Pending,
}

/// Approves an incident's plan as the caller (break-glass with the admin
/// token, which names the user in `as`).
#[utoipa::path(post, path = "/api/v1/incidents/{id}/approve", tag = "operator",
    params(("id" = String, Path, description = "The incident id")),
    request_body = VoteBody,
    responses(
        (status = 200, description = "The vote is counted", body = VoteAnswer),
        (status = 400, description = "A bad body (the admin token without `as`, an unknown `via`)", body = ErrorBody),
        (status = 403, description = "The vote is refused (not an approver, impersonation, self-approval …)", body = ErrorBody),
        (status = 404, description = "No such incident", body = ErrorBody),
        (status = 409, description = "Not awaiting approval, or the plan or evidence changed", body = ErrorBody),
    ))]
pub async fn approve(
    state: State<Arc<AppState>>,
    caller: Extension<Caller>,
    id: Path<String>,
    body: Json<VoteBody>,
) -> Result<Json<VoteAnswer>, ApiError> {
    vote(state, caller, id, body, Choice::Approve).await
}

/// Denies an incident's plan as the caller.
#[utoipa::path(post, path = "/api/v1/incidents/{id}/deny", tag = "operator",
    params(("id" = String, Path, description = "The incident id")),
    request_body = VoteBody,
    responses(
        (status = 200, description = "The vote is counted", body = VoteAnswer),
        (status = 400, description = "A bad body", body = ErrorBody),
        (status = 403, description = "The vote is refused", body = ErrorBody),
        (status = 404, description = "No such incident", body = ErrorBody),
        (status = 409, description = "Not awaiting approval", body = ErrorBody),
    ))]
pub async fn deny(
    state: State<Arc<AppState>>,
    caller: Extension<Caller>,
    id: Path<String>,
    body: Json<VoteBody>,
) -> Result<Json<VoteAnswer>, ApiError> {
    vote(state, caller, id, body, Choice::Deny).await
}

/// The fallback approval path (Slack down): same policy, same audit. Who
/// calls (a person's token, or the admin token as break-glass) was checked
/// by the route layer, before the body was read.
async fn vote(
    State(app): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Json(body): Json<VoteBody>,
    choice: Choice,
) -> Result<Json<VoteAnswer>, ApiError> {
    if !matches!(body.via.as_str(), "api" | "cli") {
        return Err(ApiError::BadRequest(
            "via must be api or cli".into(),
            "bad_body",
        ));
    }
    cast_vote(&app, caller, &id, body, choice).await.map(Json)
}

/// A vote by `caller`: who may vote as whom, then the incident's own
/// checks. The one path for the API, the CLI and the console.
pub(super) async fn cast_vote(
    app: &AppState,
    caller: Caller,
    id: &str,
    body: VoteBody,
    choice: Choice,
) -> Result<VoteAnswer, ApiError> {
    // Roles an auth proxy granted have no say in a vote: the directory does.
    let (user, break_glass) = match (caller, body.user) {
        (Caller::User(id) | Caller::Proxied(id, _), None) => (id, false),
        (Caller::User(id) | Caller::Proxied(id, _), Some(named)) if named == id => (id, false),
        (Caller::User(id) | Caller::Proxied(id, _), Some(named)) => {
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
        .vote(id, v, &body.reason, &app.directory, chrono::Utc::now())
        .await;
    match result {
        Ok((verdict, inc)) => Ok(VoteAnswer {
            status: "ok",
            state: inc.state,
            verdict: match verdict {
                Verdict::Approved { .. } => VoteVerdict::Approved,
                Verdict::Denied { .. } => VoteVerdict::Denied,
                Verdict::Pending { .. } => VoteVerdict::Pending,
                Verdict::Refused(_) => unreachable!("an error"),
            },
            still_needed: match verdict {
                Verdict::Pending { still_needed } => still_needed,
                _ => 0,
            },
        }),
        Err(ApprovalError::NotFound(id)) => Err(ApiError::NotFound(format!("incident {id}"))),
        Err(e @ ApprovalError::NotAwaiting { .. }) => Err(ApiError::Conflict(e.to_string())),
        Err(ApprovalError::Refused(r)) if r.is_conflict() => {
            Err(ApiError::Stale(format!("vote refused: {r}"), r.reason()))
        }
        Err(ApprovalError::Refused(r)) => {
            Err(ApiError::Refused(format!("vote refused: {r}"), r.reason()))
        }
        Err(e @ ApprovalError::Busy(_)) => Err(ApiError::Unavailable(e.to_string())),
        Err(ApprovalError::Incident(e)) => Err(ApiError::from(e)),
    }
}

/// What an abort did.
#[derive(Debug, Serialize, ToSchema)]
pub struct AbortAnswer {
    /// Always `ok`.
    pub status: &'static str,
    /// `done` (nothing was running) or `requested` (the step in flight is
    /// being stopped).
    pub abort: &'static str,
    pub state: IncidentState,
}

/// `POST /api/v1/incidents/{id}/abort`: an operator stops an approved or
/// running plan. Any person with their own token may (stopping is the safe
/// direction), and the admin token; the event log says who.
#[utoipa::path(post, path = "/api/v1/incidents/{id}/abort", tag = "operator",
    params(("id" = String, Path, description = "The incident id")),
    request_body(content = Option<ReasonBody>, description = "Optional: why"),
    responses(
        (status = 200, description = "Aborted, or the abort is under way", body = AbortAnswer),
        (status = 404, description = "No such incident", body = ErrorBody),
        (status = 409, description = "Neither approved nor running", body = ErrorBody),
    ))]
pub async fn abort(
    State(app): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Option<Json<ReasonBody>>,
) -> Result<Json<AbortAnswer>, ApiError> {
    let reason = body.map(|Json(b)| b.reason).unwrap_or_default();
    abort_as(&app, caller, &id, &reason).await.map(Json)
}

/// An abort by `caller`, for the API and the console alike.
pub(super) async fn abort_as(
    app: &AppState,
    caller: Caller,
    id: &str,
    reason: &str,
) -> Result<AbortAnswer, ApiError> {
    super::authz::authorize(app, &caller, crate::access::Action::Abort)?;
    let actor = caller.actor();
    let done = app
        .incidents
        .abort(id, &actor, reason, chrono::Utc::now())
        .await;
    match done {
        Ok(Aborting::Done(inc)) => Ok(AbortAnswer {
            status: "ok",
            abort: "done",
            state: inc.state,
        }),
        Ok(Aborting::Requested(inc)) => Ok(AbortAnswer {
            status: "ok",
            abort: "requested",
            state: inc.state,
        }),
        Err(AbortError::NotFound(id)) => Err(ApiError::NotFound(format!("incident {id}"))),
        Err(e @ AbortError::NotAbortable { .. }) => Err(ApiError::Conflict(e.to_string())),
        Err(e @ AbortError::Busy(_)) => Err(ApiError::Unavailable(e.to_string())),
        Err(AbortError::Incident(e)) => Err(ApiError::from(e)),
    }
}

/// `POST /api/v1/slack/interactions`: an Approve or Deny click. Verified
/// (signature, timestamp, no replay) before anything is read from it.
#[utoipa::path(post, path = "/api/v1/slack/interactions", tag = "slack",
    request_body(content = String, content_type = "application/x-www-form-urlencoded",
        description = "Slack's form: `payload` holds the interaction as JSON"),
    responses(
        (status = 200, description = "The answer only the clicker sees", body = SlackReply),
        (status = 400, description = "Not a button click dr-reactor sent", body = ErrorBody),
        (status = 404, description = "Slack is not configured", body = ErrorBody),
    ))]
pub async fn slack_interaction(
    State(app): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<SlackReply>, ApiError> {
    super::slack::verified(&app, &headers, &body).await?;
    let click = crate::approval::slack::parse_interaction(&body)
        .map_err(|e| ApiError::BadRequest(format!("slack interaction: {e}"), "bad_interaction"))?;
    let choice = match click.click {
        Click::Approve => Choice::Approve,
        Click::Deny => Choice::Deny,
        Click::Abort | Click::Retry => {
            let text = slack_control(&app, click.click, &click.user_id, &click.incident_id).await;
            return Ok(super::slack::ephemeral(text));
        }
    };
    let v = Vote {
        user: click.user_id.clone(),
        choice,
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
    Ok(super::slack::ephemeral(text))
}

/// An Abort or Retry click: taken from anyone the approver directory names
/// (the people trusted to start a plan may stop it or run it again), as
/// that person, and refused for anyone else. The answer is for the clicker
/// only.
async fn slack_control(app: &AppState, click: Click, user: &str, id: &str) -> String {
    let caller = Caller::User(user.to_owned());
    let allowed = match click {
        Click::Retry => match super::authz::retry_approvers(app, id).await {
            Ok(approvers) => super::authz::authorize(
                app,
                &caller,
                crate::access::Action::Retry {
                    approvers: approvers.as_deref(),
                },
            ),
            Err(e) => Err(e),
        },
        _ => super::authz::authorize(app, &caller, crate::access::Action::Abort),
    };
    if let Err(e) = allowed {
        return format!("Not done: {e}");
    }
    let now = chrono::Utc::now();
    match click {
        Click::Retry => match app.incidents.retry(id, user, "from Slack", now).await {
            Ok(_) => "Retry recorded: the failed step runs again under a new key.".into(),
            Err(e) => format!("Not done: {e}"),
        },
        _ => match app.incidents.abort(id, user, "from Slack", now).await {
            Ok(crate::incident::Aborting::Done(_)) => {
                "Aborted: nothing of the plan will run.".into()
            }
            Ok(crate::incident::Aborting::Requested(_)) => {
                "Abort requested: the step in flight is being stopped and no further step runs."
                    .into()
            }
            Err(e) => format!("Not done: {e}"),
        },
    }
}

/// A reload that took.
#[derive(Debug, Serialize, ToSchema)]
pub struct Reloaded {
    /// Always `ok`.
    pub status: &'static str,
    pub rules: usize,
    pub services: usize,
}

/// A rule set that was refused: the running rules stay.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReloadRefused {
    /// Always `error`.
    pub status: &'static str,
    pub error: &'static str,
    /// Every error, with file:line:column.
    pub errors: Vec<String>,
}

/// `POST /-/reload`: reload rules and catalogue now (admin token checked
/// by the route layer).
#[utoipa::path(post, path = "/-/reload", tag = "operations",
    responses(
        (status = 200, description = "The new rules are in force", body = Reloaded),
        (status = 422, description = "The rule set was refused; the running rules stay", body = ReloadRefused),
    ))]
pub async fn reload(
    State(app): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> Response {
    if let Err(e) = super::authz::authorize(&app, &caller, crate::access::Action::Reload) {
        return e.into_response();
    }
    app.credentials.reload_counted(&app.metrics, "api");
    match app.reloader.reload("api").await {
        Ok(set) => Json(Reloaded {
            status: "ok",
            rules: set.rules.len(),
            services: set.catalogue.services.len(),
        })
        .into_response(),
        Err(errors) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(ReloadRefused {
                status: "error",
                error: "rule set rejected; the running rules stay",
                errors: errors.0.iter().map(|e| e.to_string()).collect(),
            }),
        )
            .into_response(),
    }
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "`ok`", body = String, content_type = "text/plain")))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Ready when the store answers and a rule set is loaded. Kafka being
/// unreachable only degrades readiness: failing it would also take the
/// webhook out of service, and a DR tool must keep taking alerts while the
/// event bus is part of the outage.
///
/// Probes send no credentials and get only the status; the detail (store
/// errors, who leads) is for read tokens, as it helps an attacker too. A
/// wrong token is refused rather than silently downgraded, so a
/// misconfigured dashboard notices.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    security((), ("read_token" = [])),
    responses(
        (status = 200, description = "Ready: `{\"status\": \"ready\"}`; with a read token also the store, rules, pipeline, leadership, Kafka and runbook readiness", body = serde_json::Value),
        (status = 401, description = "A token was sent and is not a read token", body = ErrorBody),
        (status = 503, description = "Not ready: the same body, `not_ready`", body = serde_json::Value),
    ))]
pub async fn readyz(
    State(app): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let detailed = match header {
        None => false,
        Some(h) => {
            super::auth::reader(&app.credentials, Some(h))
                .inspect_err(|e| e.record(&app.metrics, "readiness request"))?;
            true
        }
    };
    let (ready, body) = readiness(&app, detailed).await;
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((code, Json(body)))
}

/// Whether this replica is ready, and what `/readyz` answers: only the
/// status, or (`detailed`) store, rules, pipeline, leadership and Kafka.
pub(super) async fn readiness(app: &AppState, detailed: bool) -> (bool, Value) {
    use crate::sources::kafka::Connection;
    let store = app.store.ping().await;
    let rules = app.reloader.status();
    // Without the pipeline nothing is decided, whatever else answers.
    let pipeline = app.pipeline.get();
    let ready = store.is_ok() && rules.loaded && pipeline;
    let status = if ready { "ready" } else { "not_ready" };
    if !detailed {
        return (ready, json!({ "status": status }));
    }
    // A follower is ready: it takes webhooks, events, votes and API calls.
    let leadership = app.leadership.status(&app.store).await;
    let kafka = app.kafka.as_ref().map(|h| h.connection());
    let degraded = kafka.is_some_and(|c| c != Connection::Connected);
    let mut body = json!({
        "status": status,
        "ready": ready,
        "degraded": degraded,
        "store": match &store { Ok(()) => json!({"ok": true}), Err(e) => json!({"ok": false, "error": e.to_string()}) },
        "rules": rules,
        "pipeline": {"running": pipeline},
        "leadership": leadership.unwrap_or_else(|e| json!({"error": e.to_string()})),
    });
    if let Some(c) = kafka {
        body["kafka"] = json!(c);
    }
    // Informational: the switch stops dispatch, not intake; a replica with
    // it on still takes alerts and must stay in service.
    body["kill_switch"] = match app.incidents.kill_switch().await {
        Ok(s) => json!(s),
        Err(e) => json!({"error": e.to_string()}),
    };
    // Informational only: a runbook not ready never makes /readyz fail.
    body["readiness"] = match app.readiness.latest() {
        Some(report) => json!({
            "checked": true,
            "all_ready": report.all_ready(),
            "not_ready": report.not_ready().map(|r| r.summary()).collect::<Vec<_>>(),
            "report": *report,
        }),
        None => json!({"checked": false}),
    };
    (ready, body)
}
