//! The incident list and one incident's page, and the forms on it.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};

use super::session::{self, Viewer};
use super::{encode, form, frame, page, relative, when, with};
use crate::approval::votes::Choice;
use crate::http::{ApiError, AppState, ErrorBody};
use crate::incident::{Event, Incident, State as IncidentState};
use crate::signal::Signal;
use crate::store::IncidentFilter;

/// Incidents per page of the list.
const PAGE: i64 = 50;
/// Evidence signals shown on an incident's page; the API pages the rest.
const SIGNALS_SHOWN: i64 = 200;

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only incidents in this state.
    #[serde(default)]
    state: String,
    /// Only incidents of this scenario.
    #[serde(default)]
    scenario: String,
    /// Detected within this long (`1h`, `7d`); empty for any time.
    #[serde(default)]
    since: String,
    /// Where the page starts: the API's `next_before` cursor.
    #[serde(default)]
    before: String,
}

/// `GET /`: newest first, filtered, a page at a time.
#[utoipa::path(get, path = "/", tag = "console", params(ListQuery),
    responses(
        (status = 200, description = "The incident list", body = String, content_type = "text/html"),
        (status = 400, description = "An unknown state, a bad `since` or cursor", body = ErrorBody),
    ))]
pub async fn list(
    State(app): State<Arc<AppState>>,
    Extension(viewer): Extension<Viewer>,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let now = Utc::now();
    let state = match q.state.as_str() {
        "" => None,
        s => Some(
            IncidentState::parse(s)
                .ok_or_else(|| ApiError::BadRequest(format!("unknown state {s:?}"), "bad_query"))?,
        ),
    };
    let since = match q.since.trim() {
        "" => None,
        s => {
            let d = humantime::parse_duration(s).map_err(|e| {
                ApiError::BadRequest(format!("since {s:?}: {e} (try 1h or 7d)"), "bad_query")
            })?;
            Some(crate::primitives::duration::before(now, d))
        }
    };
    let filter = IncidentFilter {
        state,
        scenario: Some(q.scenario.trim().to_owned()).filter(|s| !s.is_empty()),
        since,
    };
    let before = match q.before.as_str() {
        "" => None,
        c => Some(crate::http::incidents::parse_position(c)?),
    };
    let incidents = app.store.incidents_where(&filter, before, PAGE).await?;
    let first = format!(
        "/?state={}&scenario={}&since={}",
        encode(&q.state),
        encode(&q.scenario),
        encode(&q.since)
    );
    let next = (incidents.len() as i64 == PAGE)
        .then(|| incidents.last())
        .flatten()
        .map(|i| {
            let cursor = crate::http::incidents::position(i.detected_at, &i.id);
            format!("{first}&before={}", encode(&cursor))
        });
    let rows: Vec<Value> = incidents.iter().map(|i| row(i, now)).collect();
    let mut scenarios: Vec<String> = app
        .rules
        .get()
        .rules
        .iter()
        .map(|r| r.scenario.clone())
        .collect();
    scenarios.sort();
    scenarios.dedup();
    let ctx = with(
        frame(&app, &viewer, "incidents").await,
        json!({
            "incidents": rows,
            "states": IncidentState::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            "scenarios": scenarios,
            "q": { "state": q.state, "scenario": q.scenario, "since": q.since },
            "next": next,
            "first": first,
            "paged": !q.before.is_empty(),
            "live": true,
        }),
    );
    Ok(page(StatusCode::OK, "incidents.html", ctx))
}

/// One line of the list.
fn row(i: &Incident, now: chrono::DateTime<Utc>) -> Value {
    json!({
        "id": i.id,
        "scenario": i.scenario,
        "severity": i.severity,
        "state": i.state.as_str(),
        "labels": i.group_labels,
        "services": i.services,
        "detected": when(i.detected_at),
        "detected_ago": relative(i.detected_at, now),
        "steps": i.plan.steps.len(),
        "parent": i.parent_id,
        "failback_of": i.failback_of,
        "rto": rto(i, now),
        "drill": i.drill,
    })
}

/// The RTO budget: when it runs out, whether it has (while the incident
/// is not yet recovered), and the deadline for the countdown script.
fn rto(i: &Incident, now: chrono::DateTime<Utc>) -> Value {
    let Some(deadline) = i.rto_deadline else {
        return Value::Null;
    };
    let settled = i.state.is_terminal();
    json!({
        "deadline": when(deadline),
        "deadline_ms": deadline.timestamp_millis(),
        "left": relative(deadline, now),
        "at_risk": !settled && now >= deadline,
        "settled": settled,
    })
}

/// `GET /incidents/{id}`.
#[utoipa::path(get, path = "/incidents/{id}", tag = "console",
    params(("id" = String, Path, description = "The incident id"), Notice),
    responses(
        (status = 200, description = "The incident: timeline, plan, evidence, and the forms to act", body = String, content_type = "text/html"),
        (status = 404, description = "No such incident", body = ErrorBody),
    ))]
pub async fn show(
    State(app): State<Arc<AppState>>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
    Query(notice): Query<Notice>,
) -> Result<Response, ApiError> {
    let now = Utc::now();
    let inc = app
        .store
        .incident(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("incident {id}")))?;
    let events = app.store.events(&id).await?;
    let (signals, _) = app
        .store
        .incident_signals_page(&id, None, SIGNALS_SHOWN)
        .await?;
    let children = app.store.children(&id).await?;
    let steps = crate::http::incidents::step_views(&inc, &events);
    let person = viewer.person.as_deref();
    let approver = person.is_some_and(|p| app.directory.0.values().flatten().any(|u| u == p));
    let can_vote = person.is_some() && inc.state == IncidentState::AwaitingApproval;
    let can_abort =
        person.is_some() && matches!(inc.state, IncidentState::Approved | IncidentState::Running);
    let votes: Vec<Value> = events
        .iter()
        .filter(|e| e.kind == "vote" || e.kind.starts_with("vote_"))
        .map(|e| json!({ "actor": e.actor, "kind": e.kind, "data": e.data, "at": when(e.at) }))
        .collect();
    let ctx = with(
        frame(&app, &viewer, "incidents").await,
        json!({
            "incident": row(&inc, now),
            "version": inc.version,
            "plan_digest": inc.plan.digest(),
            "plan_short": if inc.plan.steps.is_empty() { String::new() } else { inc.plan.short_digest() },
            "approval_deadline": inc.approval_deadline.map(when),
            "closed": inc.closed_at.map(when),
            "timeline": events.iter().map(event).collect::<Vec<_>>(),
            "votes": votes,
            "signals": signals.iter().map(|s| evidence(&app, s, now)).collect::<Vec<_>>(),
            "signals_capped": signals.len() as i64 == SIGNALS_SHOWN,
            "children": children.iter().map(|c| row(c, now)).collect::<Vec<_>>(),
            // The failover's link to the failback prepared for it.
            "failback": events
                .iter()
                .rfind(|e| e.kind == "failback_prepared")
                .and_then(|e| e.data["failback"].as_str()),
            "steps": steps,
            "can_vote": can_vote,
            "can_abort": can_abort,
            "approver": approver,
            "notice": notice.done,
            "live": true,
        }),
    );
    Ok(page(StatusCode::OK, "incident.html", ctx))
}

/// One line of the timeline.
fn event(e: &Event) -> Value {
    let change = match (e.from_state, e.to_state) {
        (Some(f), Some(t)) => format!("{f} → {t}"),
        (None, Some(t)) => format!("→ {t}"),
        _ => String::new(),
    };
    let execution = e
        .data
        .get("execution_id")
        .or_else(|| e.data.get("outcome").and_then(|o| o.get("execution_id")))
        .and_then(Value::as_str);
    json!({
        "seq": e.seq,
        "at": when(e.at),
        "kind": e.kind,
        "actor": e.actor,
        "reason": e.reason,
        "change": change,
        "execution_id": execution,
        "class": if e.kind.ends_with("failed") || e.kind.contains("refused") { "bad" }
            else if e.kind.ends_with("succeeded") || e.to_state == Some(IncidentState::Approved) { "good" }
            else { "" },
    })
}

/// One evidence signal, with a link to its alert in Alertmanager when the
/// console knows where Alertmanager is.
fn evidence(app: &AppState, s: &Signal, now: chrono::DateTime<Utc>) -> Value {
    let link = app
        .console
        .alertmanager_url
        .as_deref()
        .filter(|_| s.source == crate::sources::alertmanager::SOURCE)
        .map(|base| {
            let matchers: Vec<String> = s
                .labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
                .collect();
            format!(
                "{}/#/alerts?silenced=true&inhibited=true&filter={}",
                base.trim_end_matches('/'),
                encode(&format!("{{{}}}", matchers.join(",")))
            )
        });
    json!({
        "name": s.name,
        "source": s.source,
        "status": s.status.as_str(),
        "labels": s.labels,
        "annotations": s.annotations,
        "starts": when(s.starts_at),
        "received_ago": relative(s.received_at, now),
        "link": link,
    })
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Notice {
    /// What the last form did, shown on the page.
    done: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ActForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
    /// The plan the page showed: a vote on a plan that changed since is
    /// refused, as through the API.
    #[serde(default)]
    plan_digest: Option<String>,
}

/// `POST /incidents/{id}/{approve|deny|abort}`: through the API's own code
/// (who may vote, the incident's checks, the audit), as the signed-in
/// person. The answer comes back as a notice on the incident's page.
#[utoipa::path(post, path = "/incidents/{id}/{action}", tag = "console",
    params(
        ("id" = String, Path, description = "The incident id"),
        ("action" = String, Path, description = "`approve`, `deny` or `abort`"),
    ),
    request_body(content = String, content_type = "application/x-www-form-urlencoded",
        description = "`csrf`, `reason`, and for votes the `plan_digest` the page showed"),
    responses(
        (status = 303, description = "Back to the incident's page, with what was done as a notice"),
        (status = 400, description = "An unreadable form", body = ErrorBody),
        (status = 403, description = "A bad form token, or a viewer who is not a person", body = ErrorBody),
    ))]
pub async fn act(
    State(app): State<Arc<AppState>>,
    Extension(viewer): Extension<Viewer>,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Some(f) = form::<ActForm>(&body) else {
        return super::bad_form();
    };
    if let Err(why) = session::form_ok(&headers, Some(&f.csrf)) {
        return session::refused(&app, "console form", why);
    }
    let Some(caller) = viewer.caller() else {
        let e = ApiError::Forbidden(
            "sign in with your own token (api.users) or through the auth proxy to act",
        );
        e.record(&app.metrics, "console form");
        return e.into_response();
    };
    let reason = f.reason.trim().to_owned();
    let done = match action.as_str() {
        "approve" | "deny" => {
            let choice = if action == "approve" {
                Choice::Approve
            } else {
                Choice::Deny
            };
            let ballot = crate::http::api::VoteBody {
                user: None,
                reason,
                via: "console".into(),
                plan_digest: f.plan_digest.filter(|d| !d.is_empty()),
            };
            crate::http::api::cast_vote(&app, caller, &id, ballot, choice)
                .await
                .map(|v| match v.verdict {
                    crate::http::api::VoteVerdict::Pending => format!(
                        "Your {action} is recorded; {} more approval(s) needed.",
                        v.still_needed
                    ),
                    _ => format!("Your {action} is recorded: the incident is {}.", v.state),
                })
        }
        "abort" => crate::http::api::abort_as(&app, caller, &id, &reason)
            .await
            .map(|v| match v.abort {
                "done" => "Aborted: nothing more of the plan will run.".to_owned(),
                _ => "Abort requested: the step in flight is being stopped.".to_owned(),
            }),
        other => Err(ApiError::NotFound(format!("console action {other:?}"))),
    };
    let notice = match done {
        Ok(text) => text,
        Err(e) => {
            e.record(&app.metrics, "console action");
            format!("Not done: {e}")
        }
    };
    Redirect::to(&format!(
        "/incidents/{}?done={}",
        encode(&id),
        encode(&notice)
    ))
    .into_response()
}
