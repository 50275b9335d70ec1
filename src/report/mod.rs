//! Recovery reports: what happened to a finished incident or drill, and
//! how fast, like Route 53 ARC's execution report. A pure function of the
//! stored incident, its events and evidence, and the catalogue, so the API,
//! the CLI and the archive show the same report.
//!
//! Every span is measured between recorded times: first evidence (the
//! earliest attached signal's start) → opened → approval requested →
//! approved → each step's dispatch and result. Spans that did not happen
//! (no approval was asked, nothing ran) are absent, never zero, and a span
//! is never negative (a sender's skewed clock can put a signal's start
//! after its receipt).
//!
//! - `markdown`: the report for people;
//! - `archive`: reports written on finish, partitioned by date, and the
//!   recovery histograms.

pub mod archive;
mod markdown;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use self::markdown::markdown;
use crate::catalogue::Catalogue;
use crate::dispatch::runner::step_logs;
use crate::incident::{Event, Incident, State};
use crate::signal::Signal;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Report {
    pub incident: String,
    pub rule: String,
    pub scenario: String,
    pub group_key: String,
    pub drill: bool,
    pub state: State,
    pub services: Vec<String>,
    pub times: Times,
    pub durations: Durations,
    pub steps: Vec<StepReport>,
    /// The recovery against the smallest RTO among the affected services.
    pub rto: Option<RtoReport>,
    /// Per affected service with a catalogue RPO.
    pub rpo: Vec<RpoReport>,
    /// Who voted, and how.
    pub votes: Vec<VoteReport>,
    pub timeline: Vec<TimelineEntry>,
}

/// The recorded moments the spans run between.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Times {
    pub first_evidence: DateTime<Utc>,
    pub opened: DateTime<Utc>,
    pub approval_requested: Option<DateTime<Utc>>,
    pub approved: Option<DateTime<Utc>>,
    /// The last step's result.
    pub recovered: Option<DateTime<Utc>>,
    /// When it reached its final state.
    pub finished: Option<DateTime<Utc>>,
}

/// Spans in seconds (fractions kept).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Durations {
    /// First evidence → opened.
    pub detect_secs: f64,
    /// Opened → approval requested (→ approved, where none was asked).
    pub decide_secs: Option<f64>,
    /// Approval requested → approved.
    pub approve_secs: Option<f64>,
    /// The steps' own time, summed.
    pub steps_secs: f64,
    /// First evidence → the last step's result.
    pub recovery_secs: Option<f64>,
    /// First evidence → approval requested (or approved): what the
    /// time-to-decision histogram observes.
    pub decision_secs: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StepReport {
    pub index: usize,
    pub name: String,
    pub what: String,
    /// A drill's step recorded, not called.
    pub recorded: bool,
    pub dispatched: Option<DateTime<Utc>>,
    pub ended: Option<DateTime<Utc>>,
    pub secs: Option<f64>,
    pub status: Option<String>,
    pub success: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RtoReport {
    pub service: String,
    pub rto_secs: u64,
    /// Whether recovery ended within it; `None` while nothing recovered.
    pub met: Option<bool>,
    /// RTO minus recovery time: the margin (positive) or by how much it
    /// was missed (negative).
    pub margin_secs: Option<f64>,
}

/// A service's data at risk: from the first evidence to the end of the
/// step that recovered it (or the plan's end), against its RPO, the data
/// loss the catalogue accepts for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RpoReport {
    pub service: String,
    pub rpo_secs: u64,
    pub exposure_secs: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VoteReport {
    pub at: DateTime<Utc>,
    pub actor: String,
    pub choice: String,
    pub break_glass: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TimelineEntry {
    pub at: DateTime<Utc>,
    pub kind: String,
    pub actor: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_state: Option<State>,
    pub reason: String,
}

/// Seconds from `a` to `b`, never negative.
fn secs(a: DateTime<Utc>, b: DateTime<Utc>) -> f64 {
    ((b - a).num_milliseconds().max(0)) as f64 / 1000.0
}

/// The report of `inc` from its events (oldest first), attached signals
/// and the catalogue.
pub fn build(
    inc: &Incident,
    events: &[Event],
    signals: &[Signal],
    catalogue: &Catalogue,
) -> Report {
    let opened = inc.detected_at;
    // A declared incident's evidence is its declaration.
    let first_evidence = signals
        .iter()
        .map(|s| s.starts_at.min(s.received_at))
        .min()
        .map_or(opened, |f| f.min(opened));
    let at_of = |kind: &str| events.iter().find(|e| e.kind == kind).map(|e| e.at);
    let approval_requested = at_of("approval_requested");
    let approved = events
        .iter()
        .find(|e| e.to_state == Some(State::Approved))
        .map(|e| e.at);
    let finished = events
        .iter()
        .rfind(|e| e.to_state.is_some_and(State::is_terminal))
        .map(|e| e.at);
    let steps = steps(inc, events);
    let recovered = steps.iter().filter_map(|s| s.ended).max();
    let decision = approval_requested.or(approved);
    let durations = Durations {
        detect_secs: secs(first_evidence, opened),
        decide_secs: decision.map(|d| secs(opened, d)),
        approve_secs: approval_requested.zip(approved).map(|(r, a)| secs(r, a)),
        steps_secs: steps.iter().filter_map(|s| s.secs).sum(),
        recovery_secs: recovered.map(|r| secs(first_evidence, r)),
        decision_secs: decision.map(|d| secs(first_evidence, d)),
    };
    let rto = inc
        .services
        .iter()
        .filter_map(|s| catalogue.services.get(s))
        .filter(|s| !s.rto.is_zero())
        .min_by_key(|s| s.rto)
        .map(|s| {
            let rto = s.rto.as_secs_f64();
            RtoReport {
                service: s.name.clone(),
                rto_secs: s.rto.as_secs(),
                met: durations.recovery_secs.map(|r| r <= rto),
                margin_secs: durations.recovery_secs.map(|r| rto - r),
            }
        });
    let rpo = inc
        .services
        .iter()
        .filter_map(|s| catalogue.services.get(s))
        .filter(|s| !s.rpo.is_zero())
        .map(|s| {
            let own = steps
                .iter()
                .filter(|st| {
                    inc.plan
                        .steps
                        .get(st.index)
                        .and_then(|p| p.service.as_ref())
                        == Some(&s.name)
                })
                .filter_map(|st| st.ended)
                .max();
            RpoReport {
                service: s.name.clone(),
                rpo_secs: s.rpo.as_secs(),
                exposure_secs: own.or(recovered).map(|e| secs(first_evidence, e)),
            }
        })
        .collect();
    let votes = events
        .iter()
        .filter(|e| e.kind == "vote")
        .map(|e| VoteReport {
            at: e.at,
            actor: e.actor.clone(),
            choice: e.data["vote"]["choice"]
                .as_str()
                .unwrap_or("approve")
                .to_owned(),
            break_glass: e.data["break_glass"] == true,
        })
        .collect();
    let timeline = events
        .iter()
        .map(|e| TimelineEntry {
            at: e.at,
            kind: e.kind.clone(),
            actor: e.actor.clone(),
            to_state: e.to_state,
            reason: e.reason.clone(),
        })
        .collect();
    Report {
        incident: inc.id.clone(),
        rule: inc.rule.clone(),
        scenario: inc.scenario.clone(),
        group_key: inc.group_key.clone(),
        drill: inc.drill,
        state: inc.state,
        services: inc.services.clone(),
        times: Times {
            first_evidence,
            opened,
            approval_requested,
            approved,
            recovered,
            finished,
        },
        durations,
        steps,
        rto,
        rpo,
        votes,
        timeline,
    }
}

/// Each planned step's last dispatch and result (a retry's, if retried),
/// read as the runner reads them.
fn steps(inc: &Incident, events: &[Event]) -> Vec<StepReport> {
    let logs = step_logs(inc.plan.steps.len(), events);
    inc.plan
        .steps
        .iter()
        .zip(logs)
        .enumerate()
        .map(|(index, (s, log))| StepReport {
            index,
            name: s.name.clone(),
            what: s.describe(),
            recorded: s.record,
            dispatched: log.dispatched_at,
            ended: log.ended_at,
            secs: log.dispatched_at.zip(log.ended_at).map(|(d, e)| secs(d, e)),
            status: log.outcome.as_ref().map(|o| o.status.clone()),
            success: log.outcome.as_ref().map(|o| o.success),
        })
        .collect()
}
