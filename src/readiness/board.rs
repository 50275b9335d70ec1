//! The latest readiness report, shared: the checker writes it, `/readyz`
//! and incident planning read it. Kept apart from the checker so that
//! incident planning can read it without depending on dispatch.

use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::targets::{CallSite, Kind, Unresolved};
use crate::plan::{Action, Plan};

/// One runbook in one region, checked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunbookStatus {
    pub kind: Kind,
    pub runbook: String,
    pub region: String,
    pub ready: bool,
    /// Why it is not ready; empty when it is.
    pub problems: Vec<String>,
    pub calls: Vec<CallSite>,
}

impl RunbookStatus {
    /// `DR-Restore in ap-northeast-1 (document not found)`.
    pub fn summary(&self) -> String {
        format!(
            "{} in {} ({})",
            self.runbook,
            self.region,
            self.problems.join("; ")
        )
    }
}

/// One pass over every runbook.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub checked_at: DateTime<Utc>,
    pub runbooks: Vec<RunbookStatus>,
    /// Steps whose runbook or region only an incident can resolve.
    pub unresolved: Vec<Unresolved>,
}

impl Report {
    pub fn not_ready(&self) -> impl Iterator<Item = &RunbookStatus> {
        self.runbooks.iter().filter(|r| !r.ready)
    }

    pub fn all_ready(&self) -> bool {
        self.runbooks.iter().all(|r| r.ready)
    }

    /// One line per runbook, the unresolved steps, and a count: what
    /// `dr-reactor readiness` prints.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for r in &self.runbooks {
            let kind = match r.kind {
                Kind::Ssm => "ssm",
                Kind::Lambda => "lambda",
            };
            if r.ready {
                out.push_str(&format!(
                    "ready      {kind} {} in {}\n",
                    r.runbook, r.region
                ));
            } else {
                out.push_str(&format!("NOT READY  {kind} {}\n", r.summary()));
            }
        }
        for u in &self.unresolved {
            out.push_str(&format!("unchecked  {}: {}\n", u.caller, u.error));
        }
        out.push_str(&format!(
            "{} runbook(s) checked, {} not ready, {} step(s) unchecked\n",
            self.runbooks.len(),
            self.not_ready().count(),
            self.unresolved.len()
        ));
        out
    }

    fn status(&self, runbook: &str, region: &str) -> Option<&RunbookStatus> {
        self.runbooks
            .iter()
            .find(|r| r.runbook == runbook && r.region == region)
    }
}

/// The latest report, if a check has run in this process.
#[derive(Debug, Clone, Default)]
pub struct Board(Arc<RwLock<Option<Arc<Report>>>>);

impl Board {
    pub fn latest(&self) -> Option<Arc<Report>> {
        // A poisoned lock only means a writer panicked between two whole
        // reports; the one inside is still whole.
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Makes `report` the latest.
    pub fn publish(&self, report: Report) -> Arc<Report> {
        let report = Arc::new(report);
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::clone(&report));
        report
    }

    /// The runbooks `plan` calls that the latest check found not ready, one
    /// each, in plan order.
    pub fn not_ready_in(&self, plan: &Plan) -> Vec<RunbookStatus> {
        let Some(report) = self.latest() else {
            return Vec::new();
        };
        let mut out: Vec<RunbookStatus> = Vec::new();
        // A drill's recorded step calls nothing: its runbook's readiness
        // does not concern the rehearsal.
        for step in plan.steps.iter().filter(|s| !s.record) {
            let (runbook, region) = match &step.action {
                Action::Ssm {
                    document, region, ..
                } => (document, region),
                Action::Lambda {
                    function, region, ..
                } => (function, region),
            };
            if let Some(s) = report.status(runbook, region)
                && !s.ready
                && !out.contains(s)
            {
                out.push(s.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Step;

    fn step(document: &str, record: bool) -> Step {
        Step {
            name: document.into(),
            service: None,
            action: Action::Ssm {
                document: document.into(),
                document_version: None,
                region: "eu-west-1".into(),
                parameters: Default::default(),
            },
            idempotency_key: document.into(),
            timeout_secs: None,
            record,
            failback: None,
        }
    }

    #[test]
    fn a_plan_names_its_runbooks_not_ready_except_what_a_drill_only_records() {
        let board = Board::default();
        let missing = |runbook: &str| RunbookStatus {
            kind: Kind::Ssm,
            runbook: runbook.into(),
            region: "eu-west-1".into(),
            ready: false,
            problems: vec!["document not found".into()],
            calls: Vec::new(),
        };
        board.publish(Report {
            checked_at: DateTime::from_timestamp(0, 0).unwrap_or_default(),
            runbooks: vec![missing("DR-Gone"), missing("DR-Real")],
            unresolved: Vec::new(),
        });
        let plan = Plan {
            steps: vec![step("DR-Gone", false), step("DR-Real", true)],
            continue_on_failure: false,
        };
        let named: Vec<String> = board
            .not_ready_in(&plan)
            .iter()
            .map(RunbookStatus::summary)
            .collect();
        assert_eq!(named, ["DR-Gone in eu-west-1 (document not found)"]);
    }
}
