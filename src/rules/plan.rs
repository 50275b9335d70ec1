//! Plan templates: the steps a rule declares, with minijinja templates in
//! their fields, rendered against the incident when it opens.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;
use serde_saphyr::Spanned;

use super::model::{Errs, OneOrMany, StepSpec};
use crate::catalogue::{Catalogue, Service};
use crate::plan::{Action, Plan, Step, idempotency_key};
use crate::signal::Labels;

#[derive(Debug, Default)]
pub struct PlanTemplate {
    pub from_catalogue: bool,
    pub services: ServiceSelection,
    pub steps: Vec<StepTemplate>,
    pub continue_on_failure: bool,
}

/// Which services a catalogue plan recovers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ServiceSelection {
    /// Those named by the `service` label of the incident's signals.
    #[default]
    Affected,
    /// Every catalogued service with a runbook for the scenario (a region
    /// outage takes them all down, whatever alerted).
    All,
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

#[derive(Debug)]
pub struct StepTemplate {
    pub name: String,
    pub action: ActionTemplate,
}

#[derive(Debug)]
pub enum ActionTemplate {
    Ssm {
        document: String,
        document_version: Option<String>,
        region: String,
        parameters: BTreeMap<String, Vec<String>>,
    },
    Lambda {
        function: String,
        region: String,
        payload: serde_json::Value,
    },
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
}

/// Strict: a template naming a label the incident does not have fails the
/// plan instead of silently passing an empty string to a runbook.
fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env
    })
}

fn check_template(text: &str) -> Result<(), String> {
    env()
        .template_from_str(text)
        .map(|_| ())
        .map_err(|e| format!("invalid template {text:?}: {e}"))
}

fn check_spanned(s: &Spanned<String>, errs: &mut Errs<'_>) {
    if let Err(e) = check_template(&s.value) {
        errs.at(s, e);
    }
}

fn check_json(v: &serde_json::Value) -> Result<(), String> {
    match v {
        serde_json::Value::String(s) => check_template(s),
        serde_json::Value::Array(a) => a.iter().try_for_each(check_json),
        serde_json::Value::Object(o) => o.values().try_for_each(check_json),
        _ => Ok(()),
    }
}

impl StepTemplate {
    pub(crate) fn compile(spec: StepSpec, errs: &mut Errs<'_>) -> Option<StepTemplate> {
        let action = match (spec.ssm, spec.lambda) {
            (Some(ssm), None) => {
                check_spanned(&ssm.document, errs);
                check_spanned(&ssm.region, errs);
                let mut parameters = BTreeMap::new();
                for (k, v) in ssm.parameters {
                    let values = match &v.value {
                        OneOrMany::One(s) => vec![s.clone()],
                        OneOrMany::Many(list) => list.clone(),
                    };
                    for s in &values {
                        if let Err(e) = check_template(s) {
                            errs.at(&v, e);
                        }
                    }
                    parameters.insert(k, values);
                }
                ActionTemplate::Ssm {
                    document: ssm.document.value,
                    document_version: ssm.document_version,
                    region: ssm.region.value,
                    parameters,
                }
            }
            (None, Some(lambda)) => {
                check_spanned(&lambda.function, errs);
                check_spanned(&lambda.region, errs);
                let payload = match lambda.payload {
                    Some(p) => {
                        if let Err(e) = check_json(&p.value) {
                            errs.at(&p, e);
                        }
                        p.value
                    }
                    None => serde_json::Value::Object(Default::default()),
                };
                ActionTemplate::Lambda {
                    function: lambda.function.value,
                    region: lambda.region.value,
                    payload,
                }
            }
            (Some(_), Some(_)) => {
                errs.at(&spec.name, "a step has either ssm or lambda, not both");
                return None;
            }
            (None, None) => {
                errs.at(&spec.name, "a step needs an action; expected ssm or lambda");
                return None;
            }
        };
        Some(StepTemplate {
            name: spec.name.value,
            action,
        })
    }
}

impl PlanTemplate {
    /// Renders the plan for one incident: the catalogue runbooks of the
    /// affected services in recovery order (if the rule plans from the
    /// catalogue), then the rule's explicit steps. Steps get their
    /// idempotency keys here, from the incident id and their position.
    pub fn render(
        &self,
        ctx: &TemplateContext<'_>,
        catalogue: &Catalogue,
        affected: &BTreeSet<String>,
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
        let dr_region = ctx
            .labels
            .get("region")
            .and_then(|r| catalogue.regions.get(r))
            .map(|r| r.dr_region.as_str());
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
                let mut step = runbook.step.render(&step_ctx, steps.len())?;
                step.name = format!("{}: {}", name, runbook_title(runbook));
                step.service = Some(name.clone());
                steps.push(step);
            }
        }
        for template in &self.steps {
            steps.push(template.render(&ctx, steps.len())?);
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

fn runbook_title(r: &crate::catalogue::Runbook) -> &str {
    if r.description.is_empty() {
        &r.name
    } else {
        &r.description
    }
}

impl StepTemplate {
    fn render(&self, ctx: &TemplateContext<'_>, index: usize) -> Result<Step, String> {
        let r = |s: &str| render(s, ctx).map_err(|e| format!("step {:?}: {e}", self.name));
        let action = match &self.action {
            ActionTemplate::Ssm {
                document,
                document_version,
                region,
                parameters,
            } => Action::Ssm {
                document: r(document)?,
                document_version: document_version.clone(),
                region: r(region)?,
                parameters: parameters
                    .iter()
                    .map(|(k, vs)| {
                        Ok((
                            k.clone(),
                            vs.iter().map(|v| r(v)).collect::<Result<_, _>>()?,
                        ))
                    })
                    .collect::<Result<_, String>>()?,
            },
            ActionTemplate::Lambda {
                function,
                region,
                payload,
            } => Action::Lambda {
                function: r(function)?,
                region: r(region)?,
                payload: render_json(payload, &r)?,
            },
        };
        Ok(Step {
            name: self.name.clone(),
            service: None,
            action,
            idempotency_key: idempotency_key(ctx.incident_id, index),
        })
    }
}

fn render(text: &str, ctx: &TemplateContext<'_>) -> Result<String, String> {
    if !text.contains("{{") && !text.contains("{%") {
        return Ok(text.to_owned());
    }
    env().render_str(text, ctx).map_err(|e| e.to_string())
}

fn render_json(
    v: &serde_json::Value,
    r: &dyn Fn(&str) -> Result<String, String>,
) -> Result<serde_json::Value, String> {
    use serde_json::Value;
    Ok(match v {
        Value::String(s) => Value::String(r(s)?),
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| render_json(x, r))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| Ok((k.clone(), render_json(x, r)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}
