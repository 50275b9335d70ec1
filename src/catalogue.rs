//! The service catalogue (`config/services.yaml`): the DR matrix. For each
//! service its datastore, dependencies, business impact, recovery priority,
//! RTO/RPO, owners, and the runbook to use per scenario.
//!
//! Plans "from the catalogue" recover the affected services in dependency
//! order (a service after what it depends on, even through services that are
//! not affected), then by priority (higher first), then by name.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use crate::rules::spec::{Errs, RuleError, StepSpec};
use crate::rules::step::StepTemplate;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct CatalogueSpec {
    #[serde(default)]
    regions: BTreeMap<String, RegionSpec>,
    #[serde(default)]
    runbooks: BTreeMap<String, RunbookSpec>,
    #[schemars(with = "BTreeMap<String, ServiceSpec>")]
    services: BTreeMap<String, Spanned<ServiceSpec>>,
}

/// Where a region fails over to. Region-outage plans template their steps
/// with `{{ dr_region }}` so they talk to the DR region, never the failed one.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegionSpec {
    pub dr_region: String,
}

/// A runbook is one step, run once per affected service.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RunbookSpec {
    #[serde(default)]
    description: String,
    #[serde(default)]
    ssm: Option<crate::rules::spec::SsmSpec>,
    #[serde(default)]
    lambda: Option<crate::rules::spec::LambdaSpec>,
    /// What a drill runs in place of this runbook: a no-op or staging
    /// document or function, with the same templates.
    #[serde(default)]
    drill: Option<DrillRunbookSpec>,
    /// The runbook that undoes this one (a failover's failback): prepared
    /// after a plan that ran this runbook succeeds, and run only once
    /// someone approves it.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    failback: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct DrillRunbookSpec {
    #[serde(default)]
    ssm: Option<crate::rules::spec::SsmSpec>,
    #[serde(default)]
    lambda: Option<crate::rules::spec::LambdaSpec>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct ServiceSpec {
    #[serde(default)]
    datastore: String,
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    depends_on: Vec<Spanned<String>>,
    #[serde(default)]
    impact: String,
    #[serde(default)]
    priority: u32,
    #[schemars(with = "String")]
    rto: Spanned<String>,
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    rpo: Option<Spanned<String>>,
    #[serde(default)]
    owners: Vec<String>,
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    runbooks: BTreeMap<String, Spanned<String>>,
}

/// What templates and Slack see of a service.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Service {
    pub name: String,
    pub datastore: String,
    pub depends_on: Vec<String>,
    pub impact: String,
    pub priority: u32,
    #[serde(with = "humantime_serde_secs")]
    pub rto: Duration,
    #[serde(with = "humantime_serde_secs")]
    pub rpo: Duration,
    pub owners: Vec<String>,
    /// Scenario → runbook name.
    pub runbooks: BTreeMap<String, String>,
}

mod humantime_serde_secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
}

#[derive(Debug)]
pub struct Runbook {
    pub name: String,
    pub description: String,
    pub step: StepTemplate,
    /// The runbook's drill variant, for drills' plans.
    pub drill: Option<StepTemplate>,
    /// The runbook that undoes this one, checked to exist.
    pub failback: Option<String>,
}

#[derive(Debug, Default)]
pub struct Catalogue {
    pub regions: BTreeMap<String, RegionSpec>,
    pub services: BTreeMap<String, Service>,
    pub runbooks: BTreeMap<String, Runbook>,
    pub file: Option<PathBuf>,
}

impl Runbook {
    /// What steps made from it are called: its description, else its name.
    pub fn title(&self) -> &str {
        if self.description.is_empty() {
            &self.name
        } else {
            &self.description
        }
    }
}

impl Catalogue {
    /// Where the region in `labels` fails over to, if the catalogue says.
    pub fn dr_region(&self, labels: &crate::signal::Labels) -> Option<&str> {
        labels
            .get("region")
            .and_then(|r| self.regions.get(r))
            .map(|r| r.dr_region.as_str())
    }

    /// Loads and checks a catalogue: unknown dependencies, unknown runbooks
    /// and dependency cycles (named) are errors, all reported together.
    pub fn load(path: &Path) -> Result<Catalogue, Vec<RuleError>> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            vec![RuleError {
                file: path.to_owned(),
                line: 0,
                column: 0,
                message: format!("cannot read catalogue: {e}"),
            }]
        })?;
        Catalogue::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Catalogue, Vec<RuleError>> {
        let spec: CatalogueSpec = crate::primitives::yaml::from_str(text).map_err(|e| {
            vec![RuleError {
                file: path.to_owned(),
                line: e.line,
                column: e.column,
                message: e.message,
            }]
        })?;
        let mut out = Vec::new();
        for (region, r) in &spec.regions {
            if &r.dr_region == region {
                out.push(RuleError {
                    file: path.to_owned(),
                    line: 0,
                    column: 0,
                    message: format!(
                        "regions.{region}.dr_region: a region cannot fail over to itself"
                    ),
                });
            }
        }
        let mut errs = Errs {
            file: path,
            out: &mut out,
        };
        let mut runbooks = BTreeMap::new();
        let failbacks: Vec<(String, Spanned<String>)> = spec
            .runbooks
            .iter()
            .filter_map(|(name, rb)| Some((name.clone(), rb.failback.clone()?)))
            .collect();
        for (name, rb) in spec.runbooks {
            let step = |name: String, ssm, lambda| StepSpec {
                name: Spanned {
                    value: name,
                    referenced: serde_saphyr::Location::UNKNOWN,
                    defined: serde_saphyr::Location::UNKNOWN,
                },
                ssm,
                lambda,
                // A runbook's time is the rule's call (plan.step_timeout).
                timeout: None,
            };
            let drill = match rb.drill {
                Some(d) => match StepTemplate::compile(
                    step(format!("{name}.drill"), d.ssm, d.lambda),
                    &mut errs,
                ) {
                    Some(t) => Some(t),
                    None => continue,
                },
                None => None,
            };
            if let Some(step) =
                StepTemplate::compile(step(name.clone(), rb.ssm, rb.lambda), &mut errs)
            {
                runbooks.insert(
                    name.clone(),
                    Runbook {
                        name,
                        description: rb.description,
                        step,
                        drill,
                        failback: rb.failback.map(|f| f.value),
                    },
                );
            }
        }
        for (name, failback) in &failbacks {
            if failback.value == *name {
                errs.at(
                    failback,
                    format!("runbook {name:?} names itself as its failback"),
                );
            } else if !runbooks.contains_key(&failback.value) {
                errs.at(
                    failback,
                    format!(
                        "runbook {name:?} names unknown runbook {:?} as its failback; defined runbooks: {}",
                        failback.value,
                        runbooks.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                );
            }
        }
        let names: BTreeSet<&String> = spec.services.keys().collect();
        let mut services = BTreeMap::new();
        for (name, svc) in &spec.services {
            for dep in &svc.value.depends_on {
                if !names.contains(&dep.value) {
                    errs.at(
                        dep,
                        format!(
                            "service {name:?} depends on unknown service {:?}",
                            dep.value
                        ),
                    );
                }
            }
            for (scenario, rb) in &svc.value.runbooks {
                if !runbooks.contains_key(&rb.value) {
                    errs.at(
                        rb,
                        format!(
                            "service {name:?} names unknown runbook {:?} for scenario {scenario:?}; defined runbooks: {}",
                            rb.value,
                            runbooks.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    );
                }
            }
            let dur = |s: &Spanned<String>, errs: &mut Errs<'_>| {
                match crate::primitives::duration::parse(&s.value) {
                    Ok(d) => d,
                    Err(e) => {
                        errs.at(s, e);
                        Duration::ZERO
                    }
                }
            };
            let rto = dur(&svc.value.rto, &mut errs);
            let rpo = svc
                .value
                .rpo
                .as_ref()
                .map(|r| dur(r, &mut errs))
                .unwrap_or_default();
            services.insert(
                name.clone(),
                Service {
                    name: name.clone(),
                    datastore: svc.value.datastore.clone(),
                    depends_on: svc
                        .value
                        .depends_on
                        .iter()
                        .map(|d| d.value.clone())
                        .collect(),
                    impact: svc.value.impact.clone(),
                    priority: svc.value.priority,
                    rto,
                    rpo,
                    owners: svc.value.owners.clone(),
                    runbooks: svc
                        .value
                        .runbooks
                        .iter()
                        .map(|(k, v)| (k.clone(), v.value.clone()))
                        .collect(),
                },
            );
        }
        let cat = Catalogue {
            regions: spec.regions,
            services,
            runbooks,
            file: Some(path.to_owned()),
        };
        if let Some(cycle) = cat.find_cycle() {
            errs.at(
                &spec.services[&cycle[0]],
                format!("dependency cycle: {}", cycle.join(" → ")),
            );
        }
        if out.is_empty() { Ok(cat) } else { Err(out) }
    }

    /// A dependency cycle, as the path that closes it (`a → b → a`).
    fn find_cycle(&self) -> Option<Vec<String>> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            Visiting,
            Done,
        }
        fn visit<'a>(
            cat: &'a Catalogue,
            name: &'a str,
            marks: &mut HashMap<&'a str, Mark>,
            path: &mut Vec<&'a str>,
        ) -> Option<Vec<String>> {
            match marks.get(name) {
                Some(Mark::Done) => return None,
                Some(Mark::Visiting) => {
                    let start = path.iter().position(|p| *p == name).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        path[start..].iter().map(|s| s.to_string()).collect();
                    cycle.push(name.to_owned());
                    return Some(cycle);
                }
                None => {}
            }
            marks.insert(name, Mark::Visiting);
            path.push(name);
            for dep in cat
                .services
                .get(name)
                .map(|s| s.depends_on.as_slice())
                .unwrap_or_default()
            {
                if let Some(c) = visit(cat, dep, marks, path) {
                    return Some(c);
                }
            }
            path.pop();
            marks.insert(name, Mark::Done);
            None
        }
        let mut marks = HashMap::new();
        for name in self.services.keys() {
            if let Some(c) = visit(self, name, &mut marks, &mut Vec::new()) {
                return Some(c);
            }
        }
        None
    }

    /// `services` in recovery order: each after everything it depends on
    /// (directly or through services not in the list), then higher priority
    /// first, then by name. Unknown names are kept, last, in name order.
    pub fn recovery_order(&self, services: &BTreeSet<String>) -> Vec<String> {
        let known: Vec<&String> = services
            .iter()
            .filter(|s| self.services.contains_key(*s))
            .collect();
        // Edges between selected services through the dependency closure.
        let mut before: HashMap<&str, BTreeSet<&str>> = HashMap::new();
        for s in &known {
            let mut stack: Vec<&str> = self.services[*s]
                .depends_on
                .iter()
                .map(String::as_str)
                .collect();
            let mut seen = BTreeSet::new();
            while let Some(d) = stack.pop() {
                if !seen.insert(d) {
                    continue;
                }
                if services.contains(d) {
                    before.entry(s.as_str()).or_default().insert(d);
                }
                if let Some(svc) = self.services.get(d) {
                    stack.extend(svc.depends_on.iter().map(String::as_str));
                }
            }
        }
        let mut waiting: HashMap<&str, usize> = known
            .iter()
            .map(|s| (s.as_str(), before.get(s.as_str()).map_or(0, BTreeSet::len)))
            .collect();
        let mut ready: BinaryHeap<(u32, Reverse<&str>)> = waiting
            .iter()
            .filter(|(_, n)| **n == 0)
            .map(|(s, _)| (self.services[*s].priority, Reverse(*s)))
            .collect();
        let mut order = Vec::with_capacity(services.len());
        while let Some((_, Reverse(s))) = ready.pop() {
            order.push(s.to_owned());
            for (other, deps) in &before {
                if deps.contains(s)
                    && let Some(n) = waiting.get_mut(other)
                {
                    *n -= 1;
                    if *n == 0 {
                        ready.push((self.services[*other].priority, Reverse(*other)));
                    }
                }
            }
        }
        order.extend(
            services
                .iter()
                .filter(|s| !self.services.contains_key(*s))
                .cloned(),
        );
        order
    }

    /// The smallest RTO among these services: the incident's budget.
    pub fn rto_budget<'a>(
        &self,
        services: impl IntoIterator<Item = &'a String>,
    ) -> Option<Duration> {
        services
            .into_iter()
            .filter_map(|s| self.services.get(s))
            .map(|s| s.rto)
            .filter(|d| !d.is_zero())
            .min()
    }
}

/// JSON Schema of the catalogue file, generated from the loader's types.
pub fn schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(CatalogueSpec)).expect("a schema is plain JSON")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MATRIX: &str = r#"
runbooks:
  restart:
    ssm:
      document: DR-Restart
      region: "{{ labels.region }}"
      parameters: {Service: "{{ service.name }}"}
services:
  auth:    {datastore: postgresql, priority: 4, rto: 15m, runbooks: {service_failure: restart}}
  product: {datastore: mysql, priority: 3, rto: 30m}
  order:   {datastore: mysql, depends_on: [auth, product], priority: 5, rto: 10m}
  payment: {datastore: redis, depends_on: [order], priority: 4, rto: 5m}
  notify:  {datastore: kafka, depends_on: [order], priority: 2, rto: 1h}
"#;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn order_is_topological_then_priority() {
        let cat = Catalogue::parse(MATRIX, Path::new("services.yaml")).unwrap();
        assert_eq!(
            cat.recovery_order(&set(&["notify", "payment", "order", "auth", "product"])),
            ["auth", "product", "order", "payment", "notify"]
        );
        // Through a service that is not affected: payment still after auth.
        assert_eq!(
            cat.recovery_order(&set(&["payment", "auth"])),
            ["auth", "payment"]
        );
        assert_eq!(
            cat.rto_budget(&set(&["auth", "notify"])),
            Some(Duration::from_secs(900))
        );
    }

    #[test]
    fn cycles_unknown_deps_and_runbooks_are_named() {
        let text = r#"
services:
  a: {rto: 1m, depends_on: [b]}
  b: {rto: 1m, depends_on: [c, ghost]}
  c: {rto: 1m, depends_on: [a], runbooks: {service_failure: nope}}
"#;
        let errs = Catalogue::parse(text, Path::new("s.yaml")).unwrap_err();
        let msgs: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert!(
            msgs.iter()
                .any(|m| m.starts_with("s.yaml:4:") && m.contains("unknown service \"ghost\"")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter().any(|m| m.contains("unknown runbook \"nope\"")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m.contains("dependency cycle: a → b → c → a")),
            "{msgs:?}"
        );
    }

    #[test]
    fn failbacks_must_name_another_defined_runbook() {
        let text = r#"runbooks:
  promote:
    ssm: {document: DR-Promote, region: eu-west-1}
    failback: fail-back
  fail-back:
    ssm: {document: DR-FailBack, region: eu-west-1}
  loop:
    ssm: {document: DR-Loop, region: eu-west-1}
    failback: loop
  typo:
    ssm: {document: DR-Typo, region: eu-west-1}
    failback: fail-bak
services:
  a: {rto: 1m, runbooks: {region_outage: promote}}
"#;
        let errs = Catalogue::parse(text, Path::new("s.yaml")).unwrap_err();
        let msgs: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert!(
            msgs.iter()
                .any(|m| m.starts_with("s.yaml:9:") && m.contains("names itself")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter().any(|m| m.starts_with("s.yaml:12:")
                && m.contains("unknown runbook \"fail-bak\" as its failback")),
            "{msgs:?}"
        );
        let ok = text
            .replace("failback: loop", "")
            .replace("failback: fail-bak", "");
        let cat = Catalogue::parse(&ok, Path::new("s.yaml")).unwrap();
        assert_eq!(
            cat.runbooks["promote"].failback.as_deref(),
            Some("fail-back")
        );
        assert_eq!(cat.runbooks["fail-back"].failback, None);
    }
}
