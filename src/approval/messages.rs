//! Keeps each incident's Slack message in step with the incident. One task
//! takes incident ids in the order they changed and renders the message
//! from the store, so a burst of changes cannot post twice or leave an old
//! state showing; where the message is, is itself an event of the incident.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::json;
use tokio::sync::{mpsc, watch};

use super::slack::{IncidentView, MessageRef, Slack};
use crate::incident::{EventNote, Incident, SYSTEM, State};
use crate::leadership::Role;
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

/// The first retry of a failed post or update waits this long; each
/// further failure doubles the wait, up to [`RETRY_MAX`]. An incident
/// awaiting approval needs its buttons, so retries go on while it does.
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(300);

/// Failures so far, and when to try again.
type Retries = HashMap<String, (u32, Instant)>;

/// Takes changed incident ids; a post or update that fails is tried again
/// with backoff. Whenever a leader's term starts here (at start, on
/// SQLite), every incident that should have a message and has none gets
/// one: a post that failed before a restart or on a deposed leader is not
/// lost.
pub async fn run(
    slack: Arc<Slack>,
    store: Store,
    metrics: Metrics,
    changes: &mut mpsc::Receiver<String>,
    mut role: watch::Receiver<Role>,
) {
    let mut retries = Retries::new();
    let mut leading = false;
    let mut role_open = true;
    loop {
        let leads = matches!(*role.borrow_and_update(), Role::Leader { .. });
        if leads && !leading {
            match unposted(&store).await {
                Ok(ids) => {
                    if !ids.is_empty() {
                        tracing::info!(count = ids.len(), "posting missing slack messages");
                    }
                    for id in ids {
                        retries.entry(id).or_insert((0, Instant::now()));
                    }
                    leading = true;
                }
                // Scanned again at the next wake-up.
                Err(e) => {
                    metrics.pipeline_errors.with_label_values(&["slack"]).inc();
                    tracing::warn!("looking for incidents without a slack message: {e}");
                }
            }
        } else if !leads {
            leading = false;
        }
        let due = retries.values().map(|(_, at)| *at).min();
        tokio::select! {
            id = changes.recv() => match id {
                Some(id) => attempt(&slack, &store, &metrics, &mut retries, id).await,
                None => break,
            },
            changed = role.changed(), if role_open => role_open = changed.is_ok(),
            () = sleep_until(due), if due.is_some() => {
                let now = Instant::now();
                let ready: Vec<String> = retries
                    .iter()
                    .filter(|(_, (_, at))| *at <= now)
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in ready {
                    attempt(&slack, &store, &metrics, &mut retries, id).await;
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at.into()).await;
    }
}

async fn attempt(
    slack: &Slack,
    store: &Store,
    metrics: &Metrics,
    retries: &mut Retries,
    id: String,
) {
    match sync(slack, store, &id).await {
        Ok(()) => {
            retries.remove(&id);
        }
        Err(e) => {
            metrics.pipeline_errors.with_label_values(&["slack"]).inc();
            let failures = retries.get(&id).map_or(0, |(n, _)| *n) + 1;
            let wait = backoff(failures);
            tracing::warn!(incident = %id, failures, retry_in = ?wait, "slack message not updated: {e}");
            retries.insert(id, (failures, Instant::now() + wait));
        }
    }
}

fn backoff(failures: u32) -> Duration {
    RETRY_FIRST
        .saturating_mul(1 << failures.saturating_sub(1).min(20))
        .min(RETRY_MAX)
}

/// Incidents that should have a message and have none.
async fn unposted(store: &Store) -> Result<Vec<String>, StoreError> {
    let mut ids = Vec::new();
    for inc in store
        .incidents_in(&[State::AwaitingApproval, State::Approved, State::Running])
        .await?
    {
        let events = store.events(&inc.id).await?;
        if !events.iter().any(|e| e.kind == "slack_posted") {
            ids.push(inc.id);
        }
    }
    Ok(ids)
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
    let held = events.iter().any(|e| {
        e.kind == "suppressed" && (e.data.get("limit").is_some() || e.data.get("silence").is_some())
    });
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
            last_reason("approval_paused").or_else(|| Some(super::evidence::PAUSED.to_owned()))
        }
        State::Planned if held => last_reason("held"),
        // A failback waits for its region: say for what, and since when.
        State::Planned if inc.failback_of.is_some() => events
            .iter()
            .rfind(|e| {
                matches!(
                    e.kind.as_str(),
                    "failback_waiting" | "failback_healthy" | "planned"
                )
            })
            .map(|e| {
                format!(
                    "failback of incident {}: {}",
                    inc.failback_of.as_deref().unwrap_or_default(),
                    e.reason
                )
            }),
        // An interlock or max_concurrent holds the plan: say which, until
        // it moves on.
        State::Approved | State::Running
            if events.last().is_some_and(|e| e.kind == "plan_waiting") =>
        {
            last_reason("plan_waiting").map(|r| format!("waiting: {r}"))
        }
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
        State::Succeeded => {
            last_reason("succeeded").map(|r| match last_reason("failback_prepared") {
                Some(f) => format!("succeeded: {r}\n{f}"),
                None => format!("succeeded: {r}"),
            })
        }
        State::Failed => last_reason("failed").map(|r| format!("failed: {r}")),
        State::Cancelled => Some("cancelled: the evidence resolved before anything ran".into()),
        State::Expired => last_reason("expired").map(|r| format!("expired: {r}")),
        State::Denied => Some("denied: nothing will run".into()),
        State::Suppressed if inc.parent_id.is_some() => last_reason("absorbed").map(|r| {
            format!("{r}. Follow the larger incident's message; nothing more runs from this one.")
        }),
        // Planned work: say whose silence and until when, so nobody
        // mistakes it for a limit.
        State::Suppressed if events.iter().any(|e| e.kind == "silenced") => last_reason("silenced")
            .map(|r| format!("silenced: {r}. Nothing runs from this incident.")),
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
        not_ready: crate::incident::not_ready_runbooks(events),
        incident_id: inc.id.clone(),
        scenario: inc.scenario.clone(),
        severity: inc.severity.clone(),
        state: inc.state.to_string(),
        group: inc.group_key.clone(),
        drill: inc.drill,
        failback_of: inc.failback_of.clone(),
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
        abortable: matches!(inc.state, State::Approved | State::Running),
        retryable: inc.state == State::Failed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff(1), RETRY_FIRST);
        assert_eq!(backoff(2), RETRY_FIRST * 2);
        assert_eq!(backoff(4), RETRY_FIRST * 8);
        assert_eq!(backoff(30), RETRY_MAX);
        assert_eq!(backoff(u32::MAX), RETRY_MAX);
    }
}
