//! Step templates: one SSM or Lambda step with minijinja templates in its
//! fields, checked when the rule (or catalogue runbook) loads and rendered
//! when an incident is planned.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;
use serde_saphyr::Spanned;

use super::spec::{Errs, OneOrMany, StepSpec};
use crate::plan::{Action, Step, idempotency_key};

#[derive(Debug)]
pub struct StepTemplate {
    pub name: String,
    pub action: ActionTemplate,
    /// The step's own timeout, if it has one.
    pub timeout: Option<std::time::Duration>,
}

/// A step or plan timeout: a duration greater than zero.
pub(crate) fn timeout(
    spec: Option<&Spanned<String>>,
    what: &str,
    errs: &mut Errs<'_>,
) -> Option<std::time::Duration> {
    let spec = spec?;
    match crate::primitives::duration::parse(&spec.value) {
        Ok(d) if !d.is_zero() => Some(d),
        Ok(_) => {
            errs.at(spec, format!("{what} must be greater than 0"));
            None
        }
        Err(e) => {
            errs.at(spec, e);
            None
        }
    }
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

/// The names a step template may use (see [`super::plan::TemplateContext`]);
/// anything else is an error at load: with strict undefined behaviour it
/// would otherwise fail the plan when the incident opens.
pub const TEMPLATE_VARIABLES: [&str; 10] = [
    "incident_id",
    "rule",
    "scenario",
    "severity",
    "labels",
    "services",
    "service",
    "dr_region",
    "signals",
    "latest",
];

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
    let template = env()
        .template_from_str(text)
        .map_err(|e| format!("invalid template {text:?}: {e}"))?;
    let mut unknown: Vec<String> = template
        .undeclared_variables(false)
        .into_iter()
        .filter(|v| !TEMPLATE_VARIABLES.contains(&v.as_str()))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    unknown.sort();
    Err(format!(
        "template {text:?} uses unknown variable(s) {}; templates can use {}",
        unknown.join(", "),
        TEMPLATE_VARIABLES.join(", ")
    ))
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
        let step_timeout = timeout(spec.timeout.as_ref(), "timeout", errs);
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
            timeout: step_timeout,
        })
    }
}

impl StepTemplate {
    /// Renders the step for one incident; `index` is its place in the
    /// plan, which with the incident id makes its idempotency key.
    pub(crate) fn render<C: Serialize>(
        &self,
        ctx: &C,
        incident_id: &str,
        index: usize,
    ) -> Result<Step, String> {
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
            idempotency_key: idempotency_key(incident_id, index),
            timeout_secs: self.timeout.map(|t| t.as_secs().max(1)),
            record: false,
            failback: None,
        })
    }
}

pub(crate) fn render<C: Serialize>(text: &str, ctx: &C) -> Result<String, String> {
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

#[cfg(test)]
mod timeout_tests {
    use crate::rules::RuleSet;

    fn load(plan: &str) -> Result<RuleSet, String> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.yaml");
        std::fs::write(
            &p,
            format!(
                "rules:\n  - name: r\n    match: {{labels: ['a=\"b\"']}}\n    correlate: {{window: 1m, when: {{count: 1}}}}\n    scenario: s\n    plan:\n{plan}"
            ),
        )
        .unwrap();
        RuleSet::load(&[p], None).map_err(|e| e.to_string())
    }

    #[test]
    fn timeouts_must_be_positive_durations() {
        let ok = load(
            "      step_timeout: 30m\n      steps:\n        - {name: x, timeout: 90s, ssm: {document: D, region: eu-west-1}}\n",
        )
        .unwrap();
        let plan = &ok.rules[0].plan;
        assert_eq!(
            plan.step_timeout,
            Some(std::time::Duration::from_secs(1800))
        );
        assert_eq!(
            plan.steps[0].timeout,
            Some(std::time::Duration::from_secs(90))
        );
        let err = load("      step_timeout: 0s\n      steps: []\n").unwrap_err();
        assert!(
            err.contains("plan.step_timeout must be greater than 0"),
            "{err}"
        );
        let err = load(
            "      steps:\n        - {name: x, timeout: soon, ssm: {document: D, region: eu-west-1}}\n",
        )
        .unwrap_err();
        assert!(err.contains("invalid duration \"soon\""), "{err}");
    }
}
