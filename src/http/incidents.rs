//! The incident read API: the list, one incident with its evidence, log
//! and steps, and the cursors that page them.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ApiError, AppState, ErrorBody};
use crate::incident::{Event, Incident, State as IncidentState};
use crate::signal::Signal;
use crate::store::IncidentFilter;

/// Page sizes: a default that answers the usual question in one request,
/// and a maximum that bounds what one request can make the store read.
const DEFAULT_PAGE: i64 = 100;
const MAX_PAGE: i64 = 1000;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only incidents in this state (`awaiting_approval`, `running`, …).
    state: Option<String>,
    /// Only incidents of this scenario.
    scenario: Option<String>,
    /// Incidents per page, 1 to 1000; 100 if not given.
    limit: Option<i64>,
    /// `next_before` of the previous page.
    before: Option<String>,
}

/// A page of incidents, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct IncidentPage {
    pub incidents: Vec<Incident>,
    /// `before` for the next page; null on the last one.
    pub next_before: Option<String>,
}

fn page_size(limit: Option<i64>) -> Result<i64, ApiError> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::BadRequest(
            format!("limit {n}: must be 1..={MAX_PAGE}"),
            "bad_query",
        )),
    }
}

/// `{millis}:{id}`: the position of the last row of a page (an incident's
/// detection, or a signal's attachment, and its id).
pub(super) fn position(at: chrono::DateTime<chrono::Utc>, id: &str) -> String {
    format!("{}:{id}", at.timestamp_millis())
}

pub(super) fn parse_position(
    cursor: &str,
) -> Result<(chrono::DateTime<chrono::Utc>, &str), ApiError> {
    let bad = || ApiError::BadRequest(format!("{cursor:?}: not a cursor"), "bad_query");
    let (at, id) = cursor.split_once(':').ok_or_else(bad)?;
    let at = at
        .parse::<i64>()
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .ok_or_else(bad)?;
    Ok((at, id))
}

/// Incidents, newest first, a page at a time.
#[utoipa::path(get, path = "/api/v1/incidents", tag = "incidents", params(ListQuery),
    responses(
        (status = 200, description = "A page of incidents, newest first", body = IncidentPage),
        (status = 400, description = "An unknown state, a limit out of range or a bad cursor", body = ErrorBody),
    ))]
pub async fn list_incidents(
    State(app): State<Arc<AppState>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<IncidentPage>, ApiError> {
    let state = match q.state.as_deref() {
        None => None,
        Some(s) => Some(
            IncidentState::parse(s)
                .ok_or_else(|| ApiError::BadRequest(format!("unknown state {s:?}"), "bad_query"))?,
        ),
    };
    let limit = page_size(q.limit)?;
    let before = q.before.as_deref().map(parse_position).transpose()?;
    let filter = IncidentFilter {
        state,
        scenario: q.scenario.filter(|s| !s.is_empty()),
        since: None,
    };
    let incidents = app.store.incidents_where(&filter, before, limit).await?;
    let next_before = (incidents.len() as i64 == limit)
        .then(|| incidents.last())
        .flatten()
        .map(|i| position(i.detected_at, &i.id));
    Ok(Json(IncidentPage {
        incidents,
        next_before,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DetailQuery {
    /// Events, and signals, per page.
    limit: Option<i64>,
    /// `next_cursor` of the previous page: the last event sequence number.
    cursor: Option<i64>,
    /// `next_signals_cursor` of the previous page.
    signals_cursor: Option<String>,
}

/// One incident: the incident, a page of its evidence and of its event
/// log, and each plan step's state (from the whole log).
#[derive(Debug, Serialize, ToSchema)]
pub struct IncidentDetail {
    pub incident: Incident,
    pub signals: Vec<Signal>,
    pub events: Vec<Event>,
    /// `cursor` for the next page of events; null on the last one.
    pub next_cursor: Option<i64>,
    /// `signals_cursor` for the next page of signals; null on the last one.
    pub next_signals_cursor: Option<String>,
    pub steps: Vec<StepView>,
}

/// Where one plan step stands, as its events tell.
#[derive(Debug, Serialize, ToSchema)]
pub struct StepView {
    /// 1-based position in the plan.
    pub n: usize,
    pub name: String,
    pub service: Option<String>,
    /// What it runs and where.
    pub what: String,
    /// The idempotency key in force (a retry's own key after a retry).
    pub key: String,
    pub state: StepState,
    pub execution_id: Option<String>,
    /// The AWS status of its last outcome.
    pub status: Option<String>,
    pub failure: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    /// Not started.
    Pending,
    /// Being started: its start is recorded, its execution id not yet.
    Dispatching,
    Running,
    Succeeded,
    Failed,
}

/// Each step of `inc`'s plan with its state, from the incident's events.
pub(super) fn step_views(inc: &Incident, events: &[Event]) -> Vec<StepView> {
    let logs = crate::dispatch::runner::step_logs(inc.plan.steps.len(), events);
    inc.plan
        .steps
        .iter()
        .zip(logs)
        .enumerate()
        .map(|(n, (step, log))| {
            let state = match (&log.outcome, &log.execution_id, log.dispatching) {
                (Some(o), _, _) if o.success => StepState::Succeeded,
                (Some(_), _, _) => StepState::Failed,
                (None, Some(_), _) => StepState::Running,
                (None, None, true) => StepState::Dispatching,
                (None, None, false) => StepState::Pending,
            };
            let finished = log.outcome.as_ref();
            StepView {
                n: n + 1,
                name: step.name.clone(),
                service: step.service.clone(),
                what: step.describe(),
                key: log
                    .retry_key
                    .clone()
                    .unwrap_or_else(|| step.idempotency_key.clone()),
                state,
                execution_id: log
                    .execution_id
                    .clone()
                    .or_else(|| finished.and_then(|o| o.execution_id.clone())),
                status: finished.map(|o| o.status.clone()),
                failure: finished.and_then(|o| o.failure.clone()),
            }
        })
        .collect()
}

#[utoipa::path(get, path = "/api/v1/incidents/{id}", tag = "incidents",
    params(("id" = String, Path, description = "The incident id"), DetailQuery),
    responses(
        (status = 200, description = "The incident, its evidence, its event log and its steps", body = IncidentDetail),
        (status = 400, description = "A limit out of range or a bad cursor", body = ErrorBody),
        (status = 404, description = "No such incident", body = ErrorBody),
    ))]
pub async fn get_incident(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Query<DetailQuery>,
) -> Result<Json<IncidentDetail>, ApiError> {
    let limit = page_size(q.limit)?;
    let incident = app
        .store
        .incident(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("incident {id}")))?;
    let after = q
        .signals_cursor
        .as_deref()
        .map(parse_position)
        .transpose()?;
    let (signals, last) = app.store.incident_signals_page(&id, after, limit).await?;
    let next_signals = last
        .filter(|_| signals.len() as i64 == limit)
        .map(|(at, sid)| position(at, &sid));
    let events = app
        .store
        .events_page(&id, q.cursor.unwrap_or(0), limit)
        .await?;
    let next_cursor = (events.len() as i64 == limit)
        .then(|| events.last().map(|e| e.seq))
        .flatten();
    let steps = step_views(&incident, &app.store.events(&id).await?);
    Ok(Json(IncidentDetail {
        incident,
        signals,
        events,
        next_cursor,
        next_signals_cursor: next_signals,
        steps,
    }))
}
