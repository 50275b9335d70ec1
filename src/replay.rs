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

/// How the timeline is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// For people: one line per delivery and event, a step's parameters
    /// under it, then the incidents.
    Text,
    /// For scripts: one JSON object per line, `type` first: `signal`,
    /// `event` (an incident event, with its data), then `incident` (each
    /// incident at the end, with its plan). Documented in docs/rules.md.
    Json,
}

/// Where the timeline goes, in either format.
struct Sink {
    format: Format,
    start: DateTime<Utc>,
    out: String,
}

impl Sink {
    fn rel(&self, t: DateTime<Utc>) -> String {
        let d = (t - self.start).to_std().unwrap_or_default();
        format!(
            "+{}",
            humantime::format_duration(Duration::from_secs(d.as_secs()))
        )
    }

    fn offset(&self, t: DateTime<Utc>) -> i64 {
        (t - self.start).num_seconds()
    }

    fn json(&mut self, v: serde_json::Value) {
        let _ = writeln!(self.out, "{v}");
    }

    fn signal(&mut self, at: DateTime<Utc>, s: &Signal) {
        match self.format {
            Format::Json => self.json(serde_json::json!({
                "type": "signal", "at": at, "offset_secs": self.offset(at),
                "status": s.status.as_str(), "name": s.name, "source": s.source,
                "labels": s.labels,
            })),
            Format::Text => {
                let line = format!(
                    "{:>8}  signal   {} {} {}",
                    self.rel(at),
                    s.status.as_str(),
                    s.name,
                    fmt_labels(&s.labels)
                );
                let _ = writeln!(self.out, "{line}");
            }
        }
    }

    fn event(&mut self, e: &crate::incident::Event, key: &str) {
        match self.format {
            Format::Json => self.json(serde_json::json!({
                "type": "event", "at": e.at, "offset_secs": self.offset(e.at),
                "incident": key, "incident_id": e.incident_id, "kind": e.kind,
                "from": e.from_state, "to": e.to_state, "actor": e.actor,
                "reason": e.reason, "data": e.data,
            })),
            Format::Text => {
                let state = match (e.from_state, e.to_state) {
                    (Some(f), Some(t)) => format!(" ({f} → {t})"),
                    (None, Some(t)) => format!(" ({t})"),
                    _ => String::new(),
                };
                let line = format!(
                    "{:>8}  incident {key} {}{state}: {}",
                    self.rel(e.at),
                    e.kind,
                    e.reason
                );
                let _ = writeln!(self.out, "{line}");
                // What the step would be called with, as rendered.
                if let Some(step) = e.data.get("step")
                    && let Ok(step) = serde_json::from_value::<crate::plan::Step>(step.clone())
                {
                    let _ = writeln!(self.out, "{:>8}           {}", "", parameters(&step));
                }
            }
        }
    }
}

/// A step's rendered parameters (SSM) or payload (Lambda), on one line.
fn parameters(step: &crate::plan::Step) -> String {
    match &step.action {
        crate::plan::Action::Ssm { parameters, .. } => {
            format!("parameters: {}", serde_json::json!(parameters))
        }
        crate::plan::Action::Lambda { payload, .. } => format!("payload: {payload}"),
    }
}

/// Parses the recording, replays it, and returns the timeline in `format`.
/// `progress` hears (deliveries replayed, deliveries in all) after each
/// one, for a long recording's progress bar.
pub async fn replay(
    text: &str,
    rules: Arc<RuleSet>,
    tick: Duration,
    extend: Duration,
    format: Format,
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
        return Ok(match format {
            Format::Text => "no input\n".into(),
            Format::Json => String::new(),
        });
    };
    let mut sim = Simulation::new(rules, start, tick).await?;
    let mut sink = Sink {
        format,
        start,
        out: String::new(),
    };
    let mut shown_events = 0;
    let mut last = start;
    let total = deliveries.len();
    for (done, (at, _, signals)) in deliveries.into_iter().enumerate() {
        sim.advance_to(at).await?;
        shown_events = print_events(&sim, &mut sink, shown_events).await?;
        for s in &signals {
            sink.signal(at, s);
        }
        sim.receive(signals).await?;
        shown_events = print_events(&sim, &mut sink, shown_events).await?;
        last = at;
        progress(done + 1, total);
    }
    sim.advance_to(crate::primitives::duration::after(last, extend))
        .await?;
    print_events(&sim, &mut sink, shown_events).await?;
    let incidents = sim.incidents().await?;
    let events = sim.events().await?;
    let rel = |t: DateTime<Utc>| sink.rel(t);
    let mut out = String::new();
    if format == Format::Text {
        let _ = writeln!(out, "\n{} incident(s):", incidents.len());
    }
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
        if format == Format::Json {
            let _ = writeln!(
                out,
                "{}",
                serde_json::json!({
                    "type": "incident", "incident": i.key, "incident_id": inc.id,
                    "state": inc.state, "open": inc.closed_at.is_none(), "rule": inc.rule,
                    "scenario": inc.scenario, "parent": i.parent, "services": inc.services,
                    "plan": inc.plan.steps,
                })
            );
            continue;
        }
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
            let _ = writeln!(out, "       {}", parameters(step));
        }
    }
    Ok(sink.out + &out)
}

async fn print_events(sim: &Simulation, sink: &mut Sink, shown: usize) -> Result<usize, SimError> {
    let events = sim.events().await?;
    // Events are only appended, and sorted by time, so new ones follow.
    for (e, key) in events.iter().skip(shown) {
        sink.event(e, key);
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
