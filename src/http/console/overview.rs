//! The pages about the deployment rather than one incident: the service
//! catalogue as a graph, the rules with their open groups, and health.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::session::Viewer;
use super::{frame, page, when, with};
use crate::http::{ApiError, AppState, ErrorBody};

/// How long the rules page waits for the pipeline to answer between two
/// signals before it shows the rules without their groups.
const GROUPS_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Highlight {
    /// An incident whose services are marked on the graph.
    incident: Option<String>,
}

/// `GET /catalogue[?incident=ID]`.
#[utoipa::path(get, path = "/catalogue", tag = "console", params(Highlight),
    responses(
        (status = 200, description = "The service catalogue as a graph", body = String, content_type = "text/html"),
        (status = 404, description = "No such incident", body = ErrorBody),
    ))]
pub async fn catalogue(
    State(app): State<Arc<AppState>>,
    Extension(viewer): Extension<Viewer>,
    Query(q): Query<Highlight>,
) -> Result<Response, ApiError> {
    let rules = app.rules.get();
    let cat = &rules.catalogue;
    let (highlight, incident) = match q.incident.as_deref().filter(|i| !i.is_empty()) {
        Some(id) => {
            let inc = app
                .store
                .incident(id)
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("incident {id}")))?;
            let services: BTreeSet<String> = inc.services.iter().cloned().collect();
            (
                services,
                Some(json!({ "id": inc.id, "scenario": inc.scenario, "services": inc.services })),
            )
        }
        None => (BTreeSet::new(), None),
    };
    let services: Vec<Value> = cat
        .services
        .values()
        .map(|s| {
            let runbooks: Vec<Value> = s
                .runbooks
                .iter()
                .map(|(scenario, name)| {
                    json!({
                        "scenario": scenario,
                        "runbook": name,
                        "description": cat.runbooks.get(name).map(|r| r.description.clone()),
                    })
                })
                .collect();
            json!({
                "name": s.name,
                "datastore": s.datastore,
                "depends_on": s.depends_on,
                "impact": s.impact,
                "priority": s.priority,
                "rto": humantime::format_duration(s.rto).to_string(),
                "rpo": humantime::format_duration(s.rpo).to_string(),
                "owners": s.owners,
                "runbooks": runbooks,
                "hot": highlight.contains(&s.name),
            })
        })
        .collect();
    let ctx = with(
        frame(&app, &viewer, "catalogue").await,
        json!({
            "svg": super::graph::svg(cat, &highlight),
            "services": services,
            "file": cat.file.as_ref().map(|f| f.display().to_string()),
            "incident": incident,
        }),
    );
    Ok(page(StatusCode::OK, "catalogue.html", ctx))
}

/// `GET /rules`: the rules in force with where each is defined, the last
/// reload, and the engine's open groups with how far each condition is
/// from holding.
#[utoipa::path(get, path = "/rules", tag = "console",
    responses((status = 200, description = "The rules in force and their open groups", body = String, content_type = "text/html")))]
pub async fn rules(
    State(app): State<Arc<AppState>>,
    Extension(viewer): Extension<Viewer>,
) -> Result<Response, ApiError> {
    let set = app.rules.get();
    let status = app.reloader.status();
    let groups = app.groups.get(GROUPS_WAIT).await;
    let mut by_rule: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for g in groups.iter().flatten() {
        by_rule.entry(g.rule.clone()).or_default().push(json!({
            "labels": g.labels,
            "members": g.members,
            "holding": g.holding,
            "conditions": g.conditions.iter().map(|c| json!({
                "condition": c.condition,
                "have": c.have,
                "need": c.need,
                "short": c.need.saturating_sub(c.have),
                "pct": (c.have.min(c.need) * 100).checked_div(c.need).unwrap_or(100),
            })).collect::<Vec<_>>(),
        }));
    }
    let rules: Vec<Value> = set
        .rules
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "origin": r.origin,
                "scenario": r.scenario,
                "severity": r.severity,
                "description": r.description,
                "window": humantime::format_duration(r.window).to_string(),
                "group_by": r.group_by,
                "absorbs": r.absorbs,
                "groups": by_rule.remove(&r.name).unwrap_or_default(),
            })
        })
        .collect();
    let ctx = with(
        frame(&app, &viewer, "rules").await,
        json!({
            "rules": rules,
            "files": set.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
            "status": {
                "loaded_at": status.loaded_at.map(when),
                "rejected_at": status.rejected_at.map(when),
                "errors": status.errors,
            },
            "leading": groups.is_some(),
        }),
    );
    Ok(page(StatusCode::OK, "rules.html", ctx))
}

/// `GET /health`: what the detailed `/readyz` says, as a page.
#[utoipa::path(get, path = "/health", tag = "console",
    responses((status = 200, description = "What the detailed `/readyz` says", body = String, content_type = "text/html")))]
pub async fn health(
    State(app): State<Arc<AppState>>,
    Extension(viewer): Extension<Viewer>,
) -> Result<Response, ApiError> {
    let (ready, detail) = crate::http::api::readiness(&app, true).await;
    let ctx = with(
        frame(&app, &viewer, "health").await,
        json!({ "ready": ready, "detail": detail }),
    );
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok(page(code, "health.html", ctx))
}
