//! Plan templates: a rule's steps and the catalogue's runbooks for the
//! affected services, in recovery order, rendered against the incident.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

pub use super::spec::ServiceSelection;
use super::step::StepTemplate;
use crate::catalogue::{Catalogue, Service};
use crate::plan::{DrillDispatch, Plan};
use crate::signal::{Labels, Signal};

#[derive(Debug, Default)]
pub struct PlanTemplate {
    pub from_catalogue: bool,
    pub services: ServiceSelection,
    pub steps: Vec<StepTemplate>,
    pub continue_on_failure: bool,
    /// The rule's default step timeout.
    pub step_timeout: Option<std::time::Duration>,
}

/// A rendered plan and what it was built from.
#[derive(Debug, Clone, PartialEq)]
pub struct BuiltPlan {
    pub plan: Plan,
    /// Affected services in recovery order.
    pub services: Vec<String>,
    /// The smallest RTO among them.
    pub rto: Option<std::time::Duration>,
}

/// What templates can refer to.
#[derive(Debug, Clone, Serialize)]
pub struct TemplateContext<'a> {
    pub incident_id: &'a str,
    pub rule: &'a str,
    pub scenario: &'a str,
    pub severity: &'a str,
    /// The incident's group labels (the rule's `group_by`).
    pub labels: &'a Labels,
    /// Affected services, in recovery order.
    pub services: &'a [String],
    /// The service a catalogue runbook step is for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<&'a Service>,
    /// The region `labels.region` fails over to, from the catalogue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dr_region: Option<&'a str>,
    /// The incident's evidence, oldest first: each signal's `name`,
    /// `source`, `labels`, `annotations`, `status` and times.
    pub signals: &'a [Signal],
    /// The newest signal of each name, e.g. `latest.Deploy.labels.version`.
    /// (Templates may use exactly these fields: [`super::step::TEMPLATE_VARIABLES`].)
    pub latest: BTreeMap<&'a str, &'a Signal>,
}

/// The newest signal of each name among `signals` (oldest first).
pub fn latest_by_name(signals: &[Signal]) -> BTreeMap<&str, &Signal> {
    let mut latest = BTreeMap::new();
    for s in signals {
        latest.insert(s.name.as_str(), s);
    }
    latest
}

impl PlanTemplate {
    /// Renders the plan for one incident: the catalogue runbooks of the
    /// affected services in recovery order (if the rule plans from the
    /// catalogue), then the rule's explicit steps. Steps get their
    /// idempotency keys here, from the incident id and their position.
    /// A drill's plan (`drill`: how drills dispatch) takes each runbook's
    /// drill variant, and marks what has none, or every step in `record`
    /// mode, to be recorded rather than called.
    pub fn render(
        &self,
        ctx: &TemplateContext<'_>,
        catalogue: &Catalogue,
        affected: &BTreeSet<String>,
        drill: Option<DrillDispatch>,
    ) -> Result<BuiltPlan, String> {
        let selected: BTreeSet<String> = match self.services {
            ServiceSelection::Affected => affected.clone(),
            ServiceSelection::All => catalogue
                .services
                .values()
                .filter(|s| s.runbooks.contains_key(ctx.scenario))
                .map(|s| s.name.clone())
                .collect(),
        };
        let services = catalogue.recovery_order(&selected);
        let rto = catalogue.rto_budget(&services);
        let dr_region = catalogue.dr_region(ctx.labels);
        let ctx = TemplateContext {
            services: &services,
            dr_region,
            ..ctx.clone()
        };
        let mut steps = Vec::new();
        if self.from_catalogue {
            for name in &services {
                let Some(svc) = catalogue.services.get(name) else {
                    continue;
                };
                let Some(runbook) = svc
                    .runbooks
                    .get(ctx.scenario)
                    .and_then(|r| catalogue.runbooks.get(r))
                else {
                    continue;
                };
                let step_ctx = TemplateContext {
                    service: Some(svc),
                    ..ctx.clone()
                };
                let variant = match drill {
                    Some(DrillDispatch::DrillRunbook) => runbook.drill.as_ref(),
                    Some(DrillDispatch::Record) | None => None,
                };
                let mut step = variant.unwrap_or(&runbook.step).render(
                    &step_ctx,
                    ctx.incident_id,
                    steps.len(),
                )?;
                step.name = format!("{}: {}", name, runbook.title());
                step.service = Some(name.clone());
                step.record = drill.is_some() && variant.is_none();
                step.failback = runbook.failback.clone();
                steps.push(step);
            }
        }
        for template in &self.steps {
            let mut step = template.render(&ctx, ctx.incident_id, steps.len())?;
            // A rule's own steps have no drill variant.
            step.record = drill.is_some();
            steps.push(step);
        }
        // Fixed in the plan at planning time, so a reload does not change
        // the timeout of a step already running.
        for step in steps.iter_mut().filter(|s| s.timeout_secs.is_none()) {
            step.timeout_secs = self.step_timeout.map(|t| t.as_secs().max(1));
        }
        Ok(BuiltPlan {
            plan: Plan {
                steps,
                continue_on_failure: self.continue_on_failure,
            },
            services,
            rto,
        })
    }
}
