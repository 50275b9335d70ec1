//! The leader's readiness task: a pass when the term starts, after every
//! reload and every `readiness.interval`; each pass publishes the report
//! (board, gauge) and tells Slack of each runbook that turned not ready.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::board::{Board, Report, RunbookStatus};
use crate::approval::slack::Slack;
use crate::dispatch::Dispatcher;
use crate::rules::RuleSet;
use crate::telemetry::Metrics;

/// Lives as long as the process, across leader terms, so a new term does
/// not announce again what this process already told Slack.
pub struct Checker {
    dispatcher: Arc<Dispatcher>,
    board: Board,
    metrics: Metrics,
    slack: Option<Arc<Slack>>,
    interval: Duration,
    /// Not-ready runbooks Slack has been told of: (runbook, region). One
    /// leaves when it is ready again, so the next turn is told again; a
    /// failed post stays out, so the next pass tries it again.
    announced: Mutex<BTreeSet<(String, String)>>,
}

impl Checker {
    pub fn new(
        dispatcher: Arc<Dispatcher>,
        board: Board,
        metrics: Metrics,
        slack: Option<Arc<Slack>>,
        interval: Duration,
    ) -> Checker {
        Checker {
            dispatcher,
            board,
            metrics,
            slack,
            interval,
            announced: Mutex::default(),
        }
    }

    /// One pass over every runbook `rules` can call.
    pub async fn pass(&self, rules: &RuleSet) -> Arc<Report> {
        let report = super::check::once(&self.dispatcher, rules).await;
        // Runbooks no rule calls any more leave the gauge.
        self.metrics.runbook_ready.reset();
        for r in &report.runbooks {
            self.metrics
                .runbook_ready
                .with_label_values(&[&r.runbook, &r.region])
                .set(i64::from(r.ready));
        }
        for r in report.not_ready() {
            tracing::warn!(runbook = %r.runbook, region = %r.region, "runbook not ready: {}", r.problems.join("; "));
        }
        for u in &report.unresolved {
            tracing::info!(caller = %u.caller, "runbook not checked: {}", u.error);
        }
        tracing::info!(
            runbooks = report.runbooks.len(),
            not_ready = report.not_ready().count(),
            unresolved = report.unresolved.len(),
            "runbook readiness checked"
        );
        let report = self.board.publish(report);
        self.announce(&report).await;
        report
    }

    async fn announce(&self, report: &Report) {
        let fresh: Vec<&RunbookStatus> = {
            let mut announced = self.announced.lock().unwrap_or_else(|p| p.into_inner());
            announced.retain(|(runbook, region)| {
                report
                    .not_ready()
                    .any(|r| &r.runbook == runbook && &r.region == region)
            });
            report
                .not_ready()
                .filter(|r| !announced.contains(&(r.runbook.clone(), r.region.clone())))
                .collect()
        };
        let Some(slack) = &self.slack else { return };
        for r in fresh {
            let callers: Vec<&str> = r.calls.iter().map(|c| c.caller.as_str()).collect();
            let text = format!(
                "Runbook not ready: {}. Plans that call it: {}. Incidents that need it say so before approval; `dr-reactor readiness` checks again.",
                r.summary(),
                callers.join(", ")
            );
            match slack.post_text(&text).await {
                Ok(_) => {
                    self.announced
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert((r.runbook.clone(), r.region.clone()));
                }
                Err(e) => {
                    self.metrics
                        .pipeline_errors
                        .with_label_values(&["slack"])
                        .inc();
                    tracing::warn!(runbook = %r.runbook, region = %r.region, "telling slack a runbook is not ready: {e}; trying at the next check");
                }
            }
        }
    }

    /// Passes until `stop` completes: one now, one per new rule set, one
    /// per interval.
    pub async fn run(
        self: Arc<Self>,
        mut rules: watch::Receiver<Arc<RuleSet>>,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        loop {
            let current = Arc::clone(&rules.borrow_and_update());
            tokio::select! {
                () = &mut stop => return,
                _ = self.pass(&current) => {}
            }
            tokio::select! {
                () = &mut stop => return,
                changed = rules.changed() => if changed.is_err() { return },
                () = tokio::time::sleep(self.interval) => {}
            }
        }
    }
}
