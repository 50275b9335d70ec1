//! Every runbook the rules and the catalogue can call, in every region
//! they can call it in, found from the compiled step templates.
//!
//! A step's document (or function) and region are templates. They are
//! rendered once for each region the catalogue knows, as an incident in
//! that region would render them: `labels.region` is that region and
//! `dr_region` the one it fails over to. A template that needs more than
//! that (another label, the evidence) cannot be resolved without an
//! incident; it is listed as unresolved rather than guessed.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Value, json};

use crate::catalogue::Catalogue;
use crate::rules::RuleSet;
use crate::rules::step::{ActionTemplate, StepTemplate, render};

/// Which API a runbook is called through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Ssm,
    Lambda,
}

/// One runbook in one region, and every way it is called there.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Target {
    pub kind: Kind,
    /// The document name, or the function name as invoked (with its
    /// qualifier, if any).
    pub runbook: String,
    pub region: String,
    pub calls: Vec<CallSite>,
}

/// One step template that calls the runbook.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct CallSite {
    /// `rule NAME step NAME` or `catalogue runbook NAME`.
    pub caller: String,
    /// SSM: the document version asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// SSM: the parameters the step passes.
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub parameters: BTreeSet<String>,
}

/// A step whose runbook or region could not be resolved without an
/// incident.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unresolved {
    pub caller: String,
    pub error: String,
}

#[derive(Debug, Default)]
pub struct Targets {
    pub targets: Vec<Target>,
    pub unresolved: Vec<Unresolved>,
}

/// What the checks need to know of the rule set.
pub fn enumerate(rules: &RuleSet) -> Targets {
    let catalogue = &rules.catalogue;
    let mut found: BTreeMap<(Kind, String, String), BTreeSet<CallSite>> = BTreeMap::new();
    let mut unresolved = Vec::new();
    let mut visit = |caller: String, step: &StepTemplate, scenario: &str, services: &[&str]| {
        for ctx in contexts(catalogue, scenario, services) {
            match resolve(step, &ctx) {
                Ok((kind, runbook, region, site)) => {
                    found
                        .entry((kind, runbook, region))
                        .or_default()
                        .insert(CallSite {
                            caller: caller.clone(),
                            ..site
                        });
                }
                Err(error) => {
                    let u = Unresolved {
                        caller: caller.clone(),
                        error,
                    };
                    if !unresolved.contains(&u) {
                        unresolved.push(u);
                    }
                }
            }
        }
    };
    for rule in &rules.rules {
        for step in &rule.plan.steps {
            visit(
                format!("rule {} step {}", rule.name, step.name),
                step,
                &rule.scenario,
                &[],
            );
        }
    }
    for (name, runbook) in &catalogue.runbooks {
        // A failback runbook runs for the services (and in the scenario)
        // of the runbooks it undoes.
        let calls = |r: &String| {
            r == name
                || catalogue
                    .runbooks
                    .get(r)
                    .is_some_and(|rb| rb.failback.as_ref() == Some(name))
        };
        let services: Vec<&str> = catalogue
            .services
            .values()
            .filter(|s| s.runbooks.values().any(calls))
            .map(|s| s.name.as_str())
            .collect();
        let scenario = catalogue
            .services
            .values()
            .flat_map(|s| s.runbooks.iter())
            .find(|(_, r)| calls(r))
            .map_or("", |(scenario, _)| scenario.as_str());
        visit(
            format!("catalogue runbook {name}"),
            &runbook.step,
            scenario,
            &services,
        );
        // A drill calls the variant instead: a game day that finds its
        // staging document missing rehearses nothing.
        if let Some(drill) = &runbook.drill {
            visit(
                format!("catalogue runbook {name} (drill variant)"),
                drill,
                scenario,
                &services,
            );
        }
    }
    Targets {
        targets: found
            .into_iter()
            .map(|((kind, runbook, region), calls)| Target {
                kind,
                runbook,
                region,
                calls: calls.into_iter().collect(),
            })
            .collect(),
        unresolved,
    }
}

/// The template contexts an incident could give a step: one per region the
/// catalogue knows (and per service that calls a catalogue runbook, which
/// a document name may use), or one without a region if it knows none.
fn contexts(catalogue: &Catalogue, scenario: &str, services: &[&str]) -> Vec<Value> {
    let regions: Vec<(Option<&str>, Option<&str>)> = if catalogue.regions.is_empty() {
        vec![(None, None)]
    } else {
        catalogue
            .regions
            .iter()
            .map(|(r, spec)| (Some(r.as_str()), Some(spec.dr_region.as_str())))
            .collect()
    };
    let services: Vec<Option<&str>> = if services.is_empty() {
        vec![None]
    } else {
        services.iter().map(|s| Some(*s)).collect()
    };
    let mut out = Vec::new();
    for (region, dr_region) in &regions {
        for service in &services {
            let mut ctx = json!({
                "incident_id": "readiness-check",
                "rule": "",
                "scenario": scenario,
                "severity": "",
                "labels": {},
                "services": services.iter().flatten().collect::<Vec<_>>(),
                "signals": [],
                "latest": {},
            });
            if let Some(r) = region {
                ctx["labels"]["region"] = json!(r);
            }
            if let Some(d) = dr_region {
                ctx["dr_region"] = json!(d);
            }
            if let Some(s) = service.and_then(|s| catalogue.services.get(s)) {
                ctx["service"] = json!(s);
            }
            out.push(ctx);
        }
    }
    out
}

/// The runbook and region a step calls in `ctx`, and what it passes.
fn resolve(step: &StepTemplate, ctx: &Value) -> Result<(Kind, String, String, CallSite), String> {
    let r = |text: &str| render(text, ctx).map_err(|e| format!("{text:?}: {e}"));
    Ok(match &step.action {
        ActionTemplate::Ssm {
            document,
            document_version,
            region,
            parameters,
        } => (
            Kind::Ssm,
            r(document)?,
            r(region)?,
            CallSite {
                caller: String::new(),
                version: document_version.clone(),
                parameters: parameters.keys().cloned().collect(),
            },
        ),
        ActionTemplate::Lambda {
            function, region, ..
        } => (
            Kind::Lambda,
            r(function)?,
            r(region)?,
            CallSite {
                caller: String::new(),
                version: None,
                parameters: BTreeSet::new(),
            },
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(steps: &str, catalogue: &str) -> RuleSet {
        let dir = tempfile::tempdir().unwrap();
        let (r, c) = (dir.path().join("r.yaml"), dir.path().join("s.yaml"));
        std::fs::write(
            &r,
            format!(
                "rules:\n  - name: r\n    match: {{labels: ['a=\"b\"']}}\n    correlate: {{group_by: [region, zone], window: 1m, when: {{count: 1}}}}\n    scenario: s\n    plan:\n      steps:\n{steps}"
            ),
        )
        .unwrap();
        std::fs::write(&c, catalogue).unwrap();
        RuleSet::load(&[r], Some(&c)).unwrap()
    }

    const REGIONS: &str = "regions:\n  eu-west-1: {dr_region: eu-central-1}\n  eu-central-1: {dr_region: eu-west-1}\nservices: {}\n";

    #[test]
    fn templated_regions_resolve_for_every_catalogue_region() {
        let set = rules(
            "        - {name: a, ssm: {document: D, region: \"{{ dr_region }}\", parameters: {P: \"{{ labels.zone }}\"}}}\n        - {name: b, lambda: {function: f, region: us-east-1}}\n",
            REGIONS,
        );
        let t = enumerate(&set);
        let found: Vec<(&str, &str)> = t
            .targets
            .iter()
            .map(|t| (t.runbook.as_str(), t.region.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                ("D", "eu-central-1"),
                ("D", "eu-west-1"),
                ("f", "us-east-1")
            ]
        );
        // A parameter's value may need the incident; only its name counts.
        assert_eq!(
            t.targets[0].calls[0].parameters,
            BTreeSet::from(["P".to_owned()])
        );
        assert_eq!(t.targets[0].calls[0].caller, "rule r step a");
        assert!(t.unresolved.is_empty());
    }

    #[test]
    fn a_catalogue_runbooks_drill_variant_is_checked_too() {
        let catalogue = format!(
            "{}runbooks:\n  promote:\n    ssm: {{document: DR-Promote, region: \"{{{{ dr_region }}}}\"}}\n    drill:\n      lambda: {{function: dr-promote-staging, region: \"{{{{ dr_region }}}}\"}}\n",
            REGIONS.replace(
                "services: {}\n",
                "services:\n  db: {rto: 15m, runbooks: {s: promote}}\n"
            )
        );
        let steps = "        - {name: own, lambda: {function: f, region: us-east-1}}\n";
        let t = enumerate(&rules(steps, &catalogue));
        let found: Vec<(Kind, &str, &str, &str)> = t
            .targets
            .iter()
            .filter(|t| t.runbook != "f")
            .map(|t| {
                let caller = t.calls[0].caller.as_str();
                (t.kind, t.runbook.as_str(), t.region.as_str(), caller)
            })
            .collect();
        assert_eq!(
            found,
            [
                (
                    Kind::Ssm,
                    "DR-Promote",
                    "eu-central-1",
                    "catalogue runbook promote"
                ),
                (
                    Kind::Ssm,
                    "DR-Promote",
                    "eu-west-1",
                    "catalogue runbook promote"
                ),
                (
                    Kind::Lambda,
                    "dr-promote-staging",
                    "eu-central-1",
                    "catalogue runbook promote (drill variant)"
                ),
                (
                    Kind::Lambda,
                    "dr-promote-staging",
                    "eu-west-1",
                    "catalogue runbook promote (drill variant)"
                ),
            ]
        );
    }

    /// A failback runbook is called by no service directly: it runs for
    /// the services of the runbook it undoes, so `service.name` resolves.
    #[test]
    fn a_failback_runbook_is_checked_for_the_services_it_undoes() {
        let catalogue = format!(
            "{}runbooks:\n  promote:\n    ssm: {{document: DR-Promote, region: \"{{{{ dr_region }}}}\"}}\n    failback: back\n  back:\n    ssm: {{document: \"DR-Back-{{{{ service.name }}}}\", region: \"{{{{ labels.region }}}}\"}}\n",
            REGIONS.replace(
                "services: {}\n",
                "services:\n  db: {rto: 15m, runbooks: {s: promote}}\n"
            )
        );
        let steps = "        - {name: own, lambda: {function: f, region: us-east-1}}\n";
        let t = enumerate(&rules(steps, &catalogue));
        assert!(t.unresolved.is_empty(), "{:?}", t.unresolved);
        let back: Vec<(&str, &str, &str)> = t
            .targets
            .iter()
            .filter(|t| t.runbook.starts_with("DR-Back"))
            .map(|t| {
                (
                    t.runbook.as_str(),
                    t.region.as_str(),
                    t.calls[0].caller.as_str(),
                )
            })
            .collect();
        assert_eq!(
            back,
            [
                ("DR-Back-db", "eu-central-1", "catalogue runbook back"),
                ("DR-Back-db", "eu-west-1", "catalogue runbook back"),
            ]
        );
    }

    #[test]
    fn what_only_an_incident_can_resolve_is_listed_not_guessed() {
        let set = rules(
            "        - {name: z, ssm: {document: \"D-{{ labels.zone }}\", region: eu-west-1}}\n        - {name: r, ssm: {document: D, region: \"{{ labels.region }}\"}}\n",
            "services: {}\n",
        );
        let t = enumerate(&set);
        assert!(t.targets.is_empty(), "{:?}", t.targets);
        let callers: Vec<&str> = t.unresolved.iter().map(|u| u.caller.as_str()).collect();
        assert_eq!(callers, ["rule r step z", "rule r step r"]);
        assert!(
            t.unresolved[1].error.contains("{{ labels.region }}"),
            "{}",
            t.unresolved[1].error
        );
    }
}
