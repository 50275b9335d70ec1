//! Keeps each incident's Slack message in step with the incident. One task
//! takes incident ids in the order they changed and renders the message
//! from the store, so a burst of changes cannot post twice or leave an old
//! state showing; where the message is, is itself an event of the incident.

use std::sync::Arc;

use chrono::Utc;
use serde_json::json;
use tokio::sync::mpsc;

use super::slack::{IncidentView, MessageRef, Slack};
use crate::incident::{EventNote, Incident, SYSTEM, State};
use crate::store::{Store, StoreError};
use crate::telemetry::Metrics;

/// Whether an incident deserves a message: it asks for or takes action, or
/// the guard held it back. Dry-run and absorbed incidents stay quiet.
fn worth_posting(inc: &Incident, held: bool) -> bool {
    matches!(
        inc.state,
        State::AwaitingApproval | State::Approved | State::Running
    ) || held
}

pub async fn run(
    slack: Arc<Slack>,
    store: Store,
    metrics: Metrics,
    mut changes: mpsc::Receiver<String>,
) {
    while let Some(id) = changes.recv().await {
        if let Err(e) = sync(&slack, &store, &id).await {
            metrics.pipeline_errors.with_label_values(&["slack"]).inc();
            tracing::warn!(incident = %id, "slack message not updated: {e}");
        }
    }
}

async fn sync(
    slack: &Slack,
    store: &Store,
    id: &str,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let Some(inc) = store.incident(id).await? else {
        return Ok(());
    };
    let events = store.events(id).await?;
    let posted: Option<MessageRef> = events
        .iter()
        .rfind(|e| e.kind == "slack_posted")
        .and_then(|e| serde_json::from_value(e.data.clone()).ok());
    let held = events
        .iter()
        .any(|e| e.kind == "suppressed" && e.data.get("limit").is_some());
    let view = view(store, &inc, &events).await?;
    match posted {
        Some(msg) => slack.update(&msg, &view).await?,
        None if worth_posting(&inc, held) => {
            let msg = slack.post(&view).await?;
            let note = EventNote::new("slack_posted", SYSTEM, format!("posted to {}", msg.channel))
                .with_data(json!(msg));
            store.append_event(id, Utc::now(), &note).await?;
        }
        None => {}
    }
    Ok(())
}

async fn view(
    store: &Store,
    inc: &Incident,
    events: &[crate::incident::Event],
) -> Result<IncidentView, StoreError> {
    let signals = store.incident_signals(&inc.id).await?;
    let logs = crate::dispatch::runner::step_logs(inc.plan.steps.len(), events);
    let plan: Vec<String> = inc
        .plan
        .steps
        .iter()
        .zip(&logs)
        .map(|(s, log)| {
            let mark = match &log.outcome {
                Some(o) if o.success => " [done]",
                Some(_) => " [FAILED]",
                None if log.dispatching || log.execution_id.is_some() => " [running]",
                None => "",
            };
            format!("{} — {}{mark}", s.name, s.describe())
        })
        .collect();
    let votes = events
        .iter()
        .filter(|e| e.kind == "vote")
        .map(|e| {
            format!(
                "{} by {}{}",
                if e.data["vote"]["choice"] == "deny" {
                    "denied"
                } else {
                    "approved"
                },
                e.actor,
                if e.data["vote"]["break_glass"] == true {
                    " (break_glass: admin token)"
                } else {
                    ""
                }
            )
        })
        .collect();
    let last_reason = |kind: &str| {
        events
            .iter()
            .rfind(|e| e.kind == kind)
            .map(|e| e.reason.clone())
    };
    let held =
        events.iter().any(|e| e.kind == "held") && !events.iter().any(|e| e.kind == "admitted");
    let status_line = match inc.state {
        State::AwaitingApproval if super::evidence::paused(events) => {
            Some(super::evidence::PAUSED.to_owned())
        }
        State::Planned if held => last_reason("held"),
        State::AwaitingApproval => {
            let request = last_reason("approval_requested").or_else(|| last_reason("escalated"));
            // After a revision the votes so far are void: say so.
            match events.iter().rposition(|e| e.kind == "plan_revised") {
                Some(i) if events[i..].iter().all(|e| e.kind != "approval_requested") => request
                    .map(|r| format!("{r}\nThe plan was revised: earlier votes no longer count.")),
                _ => request,
            }
        }
        State::Approved => last_reason("plan_waiting"),
        State::Succeeded => last_reason("succeeded").map(|r| format!("succeeded: {r}")),
        State::Failed => last_reason("failed").map(|r| format!("failed: {r}")),
        State::Cancelled => Some("cancelled: the evidence resolved before anything ran".into()),
        State::Expired => last_reason("expired").map(|r| format!("expired: {r}")),
        State::Denied => Some("denied: nothing will run".into()),
        State::Suppressed if inc.parent_id.is_some() => last_reason("absorbed").map(|r| {
            format!("{r}. Follow the larger incident's message; nothing more runs from this one.")
        }),
        State::Suppressed => last_reason("suppressed").map(|r| format!("held back: {r}")),
        State::Running => last_reason("abort_requested").map_or_else(
            || Some("running the plan".into()),
            |r| Some(format!("aborting: {r}")),
        ),
        State::Aborted => last_reason("aborted").map(|r| format!("aborted: {r}")),
        _ => None,
    };
    let absorbed = store
        .children(&inc.id)
        .await?
        .iter()
        .map(|c| {
            let was = c
                .services
                .first()
                .map(|s| format!(" ({s})"))
                .unwrap_or_default();
            format!("{}{was} `{}`: {}", c.scenario, c.id, c.state)
        })
        .collect();
    Ok(IncidentView {
        plan_digest: inc.plan.digest(),
        absorbed,
        not_covered: crate::incident::uncovered(events).into_iter().collect(),
        incident_id: inc.id.clone(),
        scenario: inc.scenario.clone(),
        severity: inc.severity.clone(),
        state: inc.state.to_string(),
        group: inc.group_key.clone(),
        evidence: signals
            .iter()
            .map(|s| {
                let mut l: Vec<String> = s
                    .labels
                    .iter()
                    .filter(|(k, _)| *k != "alertname")
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                l.sort();
                format!("{} {} ({})", s.name, l.join(" "), s.status.as_str())
            })
            .collect(),
        services: inc.services.clone(),
        plan,
        rto: inc.rto_deadline.map(|d| {
            let left = d - Utc::now();
            if left.num_seconds() > 0 {
                format!(
                    "{} min left (by {})",
                    left.num_minutes(),
                    d.format("%H:%MZ")
                )
            } else {
                format!("EXCEEDED (was {})", d.format("%H:%MZ"))
            }
        }),
        votes,
        status_line,
        actionable: inc.state == State::AwaitingApproval,
    })
}
