//! `dr-reactor replay`: what would have happened, as a timeline.
//!
//! Input is JSON lines, each one delivery with its time:
//! `{"at": "2026-11-24T21:08:37Z", "alertmanager": {…webhook payload…}}` or
//! `{"at": "…", "signal": {"name": "Deploy", "source": "kafka", "labels": {…}, "status": "firing", "instant": true}}`.
//! Lines are fed in time order through a [`Simulation`]; the output lists the
//! deliveries and every incident event, relative to the first line.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::rules::RuleSet;
use crate::rulestest::InputSignal;
use crate::signal::Signal;
use crate::simulate::{SimError, Simulation};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    at: DateTime<Utc>,
    #[serde(default)]
    alertmanager: Option<serde_json::Value>,
    #[serde(default)]
    signal: Option<RecordedSignal>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordedSignal {
    name: String,
    #[serde(default)]
    labels: crate::signal::Labels,
    #[serde(default = "firing")]
    status: crate::signal::Status,
    #[serde(default = "alertmanager")]
    source: String,
    #[serde(default)]
    instant: bool,
}

fn firing() -> crate::signal::Status {
    crate::signal::Status::Firing
}
fn alertmanager() -> String {
    crate::sources::alertmanager::SOURCE.into()
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("line {line}: {message}")]
    Input { line: usize, message: String },
    #[error(transparent)]
    Sim(#[from] SimError),
}

/// Parses the recording, replays it, and returns the timeline text.
/// `progress` hears (deliveries replayed, deliveries in all) after each
/// one, for a long recording's progress bar.
pub async fn replay(
    text: &str,
    rules: Arc<RuleSet>,
    tick: Duration,
    extend: Duration,
    progress: &dyn Fn(usize, usize),
) -> Result<String, ReplayError> {
    let mut deliveries: Vec<(DateTime<Utc>, usize, Vec<Signal>)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let err = |message: String| ReplayError::Input { line, message };
        let l: Line = serde_json::from_str(raw).map_err(|e| err(e.to_string()))?;
        let signals = match (l.alertmanager, l.signal) {
            (Some(payload), None) => {
                let body = serde_json::to_vec(&payload).map_err(|e| err(e.to_string()))?;
                let batch = crate::sources::alertmanager::parse(
                    &body,
                    l.at,
                    &crate::sources::limits::IntakeLimits::default(),
                )
                .map_err(|e| err(e.to_string()))?;
                if let Some(r) = batch.rejected.first() {
                    return Err(err(format!("alert {}: {}", r.index, r.error)));
                }
                batch.signals
            }
            (None, Some(s)) => vec![
                InputSignal {
                    at: Duration::ZERO,
                    name: s.name,
                    labels: s.labels,
                    status: s.status,
                    source: s.source,
                    instant: s.instant,
                    every: None,
                    until: None,
                }
                .to_signal(l.at),
            ],
            _ => {
                return Err(err(
                    "expected exactly one of \"alertmanager\" or \"signal\"".into(),
                ));
            }
        };
        deliveries.push((l.at, line, signals));
    }
    deliveries.sort_by_key(|(at, line, _)| (*at, *line));
    let Some(start) = deliveries.first().map(|d| d.0) else {
        return Ok("no input\n".into());
    };
    let mut sim = Simulation::new(rules, start, tick).await?;
    let mut out = String::new();
    let rel = |t: DateTime<Utc>| {
        let d = (t - start).to_std().unwrap_or_default();
        format!(
            "+{}",
            humantime::format_duration(Duration::from_secs(d.as_secs()))
        )
    };
    let mut shown_events = 0;
    let mut last = start;
    let total = deliveries.len();
    for (done, (at, _, signals)) in deliveries.into_iter().enumerate() {
        sim.advance_to(at).await?;
        shown_events = print_events(&sim, &mut out, shown_events, &rel).await?;
        for s in &signals {
            let _ = writeln!(
                out,
                "{:>8}  signal   {} {} {}",
                rel(at),
                s.status.as_str(),
                s.name,
                fmt_labels(&s.labels)
            );
        }
        sim.receive(signals).await?;
        shown_events = print_events(&sim, &mut out, shown_events, &rel).await?;
        last = at;
        progress(done + 1, total);
    }
    sim.advance_to(crate::primitives::duration::after(last, extend))
        .await?;
    print_events(&sim, &mut out, shown_events, &rel).await?;
    let incidents = sim.incidents().await?;
    let events = sim.events().await?;
    let _ = writeln!(out, "\n{} incident(s):", incidents.len());
    for i in incidents {
        let inc = &i.incident;
        // Still waiting when the recording ends: say when it would act.
        let of = |kind: &str| {
            events
                .iter()
                .rfind(|(e, _)| e.incident_id == inc.id && e.kind == kind)
                .map(|(e, _)| e)
        };
        let held = match (of("held"), of("admitted")) {
            (Some(h), None) if inc.state == crate::incident::State::Planned => {
                format!(
                    ", held: would act at {} unless a larger incident absorbs it (--extend to see)",
                    h.data["until"]
                        .as_str()
                        .and_then(|u| u.parse::<DateTime<Utc>>().ok())
                        .map(rel)
                        .unwrap_or_default()
                        .trim()
                )
            }
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "  {} [{}{}] rule {}{}",
            i.key,
            inc.state,
            if inc.closed_at.is_some() {
                ", closed"
            } else {
                ", open"
            },
            inc.rule,
            i.parent
                .as_ref()
                .map(|p| format!(", absorbed by {p}"))
                .unwrap_or_default()
                + &held
        );
        for (n, step) in inc.plan.steps.iter().enumerate() {
            let _ = writeln!(out, "    {}. {} — {}", n + 1, step.name, step.describe());
        }
    }
    Ok(out)
}

async fn print_events(
    sim: &Simulation,
    out: &mut String,
    shown: usize,
    rel: &dyn Fn(DateTime<Utc>) -> String,
) -> Result<usize, SimError> {
    let events = sim.events().await?;
    // Events are only appended, and sorted by time, so new ones follow.
    for (e, key) in events.iter().skip(shown) {
        let state = match (e.from_state, e.to_state) {
            (Some(f), Some(t)) => format!(" ({f} → {t})"),
            (None, Some(t)) => format!(" ({t})"),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "{:>8}  incident {key} {}{state}: {}",
            rel(e.at),
            e.kind,
            e.reason
        );
    }
    Ok(events.len())
}

fn fmt_labels(l: &crate::signal::Labels) -> String {
    let inner: Vec<String> = l
        .iter()
        .filter(|(k, _)| *k != "alertname")
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    format!("{{{}}}", inner.join(","))
}
