//! `dr-reactor test`: unit tests for rules, like `promtool test rules`.
//!
//! A test file names the rules and catalogue under test, then lists cases:
//! input signals at times relative to the start, and the incidents expected
//! at given times. Only the fields an expectation names are compared, and a
//! failure prints, per incident, what was expected and what happened.
//!
//! ```yaml
//! rules: [../../rules]
//! catalogue: ../../config/services.yaml
//! tests:
//!   - name: three services down in one zone
//!     signals:
//!       - {at: 0s, name: KubePodNotReady, labels: {region: r1, zone: r1a, service: auth, severity: critical}}
//!     expect:
//!       - at: 1m
//!         incidents:
//!           - scenario: az_failure
//!             group: {region: r1, zone: r1a}
//!             services: [auth, order, payment]
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::rules::RuleSet;
use crate::signal::{Labels, Signal, Status, fingerprint_labels};
use crate::simulate::{IncidentSummary, Simulation};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    rules: Vec<PathBuf>,
    #[serde(default)]
    catalogue: Option<PathBuf>,
    #[serde(default = "default_interval", with = "crate::primitives::duration")]
    evaluation_interval: Duration,
    /// The deployment's `rules.default_hold`, if it is not the built-in one.
    #[serde(default, with = "crate::primitives::duration::optional")]
    default_hold: Option<Duration>,
    tests: Vec<TestCase>,
}

fn default_interval() -> Duration {
    Duration::from_secs(1)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestCase {
    name: String,
    #[serde(default)]
    signals: Vec<InputSignal>,
    expect: Vec<Expectation>,
}

/// One input signal, possibly repeated (a heartbeat re-sent every `every`
/// until `until`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSignal {
    #[serde(with = "crate::primitives::duration")]
    pub at: Duration,
    pub name: String,
    #[serde(default)]
    pub labels: Labels,
    #[serde(default = "default_status")]
    pub status: Status,
    #[serde(default = "default_source")]
    pub source: String,
    /// A point-in-time event (a deploy): it ends when it arrives.
    #[serde(default)]
    pub instant: bool,
    #[serde(default, with = "crate::primitives::duration::optional")]
    pub every: Option<Duration>,
    #[serde(default, with = "crate::primitives::duration::optional")]
    pub until: Option<Duration>,
}

fn default_status() -> Status {
    Status::Firing
}
fn default_source() -> String {
    crate::sources::alertmanager::SOURCE.to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expectation {
    #[serde(with = "crate::primitives::duration")]
    at: Duration,
    incidents: Vec<Spanned<ExpectedIncident>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedIncident {
    scenario: String,
    #[serde(default)]
    group: Labels,
    #[serde(default)]
    rule: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    open: Option<bool>,
    #[serde(default)]
    services: Option<Vec<String>>,
    /// Step names in order.
    #[serde(default)]
    plan: Option<Vec<String>>,
    /// Regions the steps run in, in order.
    #[serde(default)]
    regions: Option<Vec<String>>,
    /// Rendered parameters of named steps: step name → parameter → value
    /// (an SSM parameter's values joined with `,`; a Lambda payload's
    /// top-level field as text). Only the parameters named are compared.
    #[serde(default)]
    parameters: Option<std::collections::BTreeMap<String, Labels>>,
    #[serde(default)]
    absorbed: Option<Vec<String>>,
    #[serde(default)]
    parent: Option<String>,
    /// The approval the live path would ask for (from shadow mode's
    /// `shadow_approval`): how many people, and from which groups.
    #[serde(default)]
    approval: Option<ExpectedApproval>,
    /// The limits that would hold it back (`dr_target`, `kill_switch`,
    /// `conflict`, `max_concurrent`, `cooldown`, `failover_cap`, `rate`,
    /// `per_target`…), at admission or right before the plan would start,
    /// in order; `[]` for none.
    #[serde(default)]
    would_hold: Option<Vec<String>>,
    /// Whether it was released by a parent that ended without acting.
    #[serde(default)]
    released: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedApproval {
    /// Distinct approvers; 0 where it would be approved automatically.
    needed: usize,
    /// The groups asked, in any order (owners included).
    #[serde(default)]
    groups: Option<Vec<String>>,
}

impl InputSignal {
    /// The signal as a source would deliver it. Alertmanager signals carry
    /// their name as `alertname`; the fingerprint is the labels', so a
    /// resolve with the same labels ends the same signal.
    pub fn to_signal(&self, now: DateTime<Utc>) -> Signal {
        let mut labels = self.labels.clone();
        if self.source == crate::sources::alertmanager::SOURCE {
            labels.insert("alertname".into(), self.name.clone());
        }
        let mut fp_labels = labels.clone();
        fp_labels.insert("__name__".into(), self.name.clone());
        Signal {
            source: self.source.clone(),
            fingerprint: fingerprint_labels(&fp_labels),
            name: self.name.clone(),
            labels,
            annotations: Labels::new(),
            status: self.status,
            starts_at: now,
            ends_at: (self.instant || self.status == Status::Resolved).then_some(now),
            received_at: now,
        }
    }

    /// Every time this input is delivered, relative to the start.
    fn times(&self) -> Vec<Duration> {
        match (self.every, self.until) {
            (Some(every), Some(until)) if !every.is_zero() => {
                let mut t = self.at;
                let mut out = Vec::new();
                while t <= until {
                    out.push(t);
                    t += every;
                }
                out
            }
            _ => vec![self.at],
        }
    }
}

/// The outcome of one test file.
#[derive(Debug, Default)]
pub struct Report {
    pub passed: usize,
    pub failed: usize,
    /// Human-readable output: one line per case, diffs for failures.
    pub text: String,
    /// The same, one per case, for `--output json`.
    pub cases: Vec<CaseResult>,
}

/// One test case's outcome.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CaseResult {
    pub file: String,
    pub name: String,
    pub passed: bool,
    /// What differed, one line each (empty when it passed).
    pub failures: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TestError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Rules(#[from] crate::rules::RuleErrors),
    #[error(transparent)]
    Sim(#[from] crate::simulate::SimError),
}

/// Runs one test file.
pub async fn run_file(path: &Path) -> Result<Report, TestError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| TestError::Invalid(format!("{}: cannot read: {e}", path.display())))?;
    let file: TestFile = crate::primitives::yaml::from_str(&text).map_err(|e| {
        TestError::Invalid(format!(
            "{}:{}:{}: {}",
            path.display(),
            e.line,
            e.column,
            e.message
        ))
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let rule_paths: Vec<PathBuf> = file.rules.iter().map(|p| base.join(p)).collect();
    let catalogue = file.catalogue.as_ref().map(|c| base.join(c));
    let rules = RuleSet::load(&rule_paths, catalogue.as_deref())?;
    let rules = Arc::new(match file.default_hold {
        Some(hold) => rules.with_default_hold(hold),
        None => rules,
    });
    let mut report = Report::default();
    for case in &file.tests {
        let failures = run_case(&rules, case, file.evaluation_interval).await?;
        report.cases.push(CaseResult {
            file: path.display().to_string(),
            name: case.name.clone(),
            passed: failures.is_empty(),
            failures: failures.clone(),
        });
        if failures.is_empty() {
            report.passed += 1;
            let _ = writeln!(report.text, "ok   {}: {}", path.display(), case.name);
        } else {
            report.failed += 1;
            let _ = writeln!(report.text, "FAIL {}: {}", path.display(), case.name);
            for f in failures {
                let _ = writeln!(report.text, "{f}");
            }
        }
    }
    Ok(report)
}

/// A fixed origin, so test output is the same on every run.
fn origin() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .expect("valid constant")
        .with_timezone(&Utc)
}

async fn run_case(
    rules: &Arc<RuleSet>,
    case: &TestCase,
    tick: Duration,
) -> Result<Vec<String>, TestError> {
    let start = origin();
    let at = |d: Duration| crate::primitives::duration::after(start, d);
    let mut deliveries: Vec<(Duration, usize)> = case
        .signals
        .iter()
        .enumerate()
        .flat_map(|(i, s)| s.times().into_iter().map(move |t| (t, i)))
        .collect();
    deliveries.sort();
    let mut expectations: Vec<&Expectation> = case.expect.iter().collect();
    expectations.sort_by_key(|e| e.at);
    let mut sim = Simulation::new(Arc::clone(rules), start, tick).await?;
    let mut failures = Vec::new();
    let mut next = deliveries.iter().peekable();
    for exp in expectations {
        while let Some((t, i)) = next.next_if(|(t, _)| *t <= exp.at) {
            sim.advance_to(at(*t)).await?;
            let signal = case.signals[*i].to_signal(at(*t));
            sim.receive(vec![signal]).await?;
        }
        sim.advance_to(at(exp.at)).await?;
        let got = sim.incidents().await?;
        let events = sim.events().await?;
        failures.extend(compare(exp, &got, &events));
    }
    Ok(failures)
}

fn key_of(scenario: &str, group: &Labels) -> String {
    let inner: Vec<String> = group.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{scenario}{{{}}}", inner.join(","))
}

/// Group keys list labels in the rule's `group_by` order; compare them as
/// sets so a test need not know that order.
fn normalise_key(key: &str) -> String {
    let Some((name, rest)) = key.split_once('{') else {
        return key.to_owned();
    };
    // Quotes are optional in tests: `zone=a` and `zone="a"` are the same.
    let mut parts: Vec<String> = rest
        .trim_end_matches('}')
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| p.replace('"', ""))
        .collect();
    parts.sort();
    format!("{name}{{{}}}", parts.join(","))
}

fn compare(
    exp: &Expectation,
    got: &[IncidentSummary],
    events: &[(crate::incident::Event, String)],
) -> Vec<String> {
    let mut out = Vec::new();
    let when = humantime::format_duration(exp.at);
    let mut unmatched: Vec<&IncidentSummary> = got.iter().collect();
    for e in &exp.incidents {
        let want = &e.value;
        let key = key_of(&want.scenario, &want.group);
        let Some(pos) = unmatched.iter().position(|g| normalise_key(&g.key) == key) else {
            out.push(format!(
                "  at {when}: missing incident {key} (expected at line {})",
                e.referenced.line()
            ));
            continue;
        };
        let g = unmatched.remove(pos);
        let inc = &g.incident;
        let mut diffs = Vec::new();
        let mut check = |field: &str, want: String, got: String| {
            if want != got {
                diffs.push(format!("      {field}: expected {want}, got {got}"));
            }
        };
        if let Some(r) = &want.rule {
            check("rule", r.clone(), inc.rule.clone());
        }
        if let Some(s) = &want.state {
            check("state", s.clone(), inc.state.to_string());
        }
        if let Some(o) = want.open {
            check("open", o.to_string(), inc.closed_at.is_none().to_string());
        }
        if let Some(s) = &want.services {
            check("services", format!("{s:?}"), format!("{:?}", inc.services));
        }
        if let Some(p) = &want.plan {
            let names: Vec<&str> = inc.plan.steps.iter().map(|s| s.name.as_str()).collect();
            check("plan", format!("{p:?}"), format!("{names:?}"));
        }
        if let Some(r) = &want.regions {
            let regions: Vec<&str> = inc
                .plan
                .steps
                .iter()
                .map(|s| match &s.action {
                    crate::plan::Action::Ssm { region, .. }
                    | crate::plan::Action::Lambda { region, .. } => region.as_str(),
                })
                .collect();
            check("regions", format!("{r:?}"), format!("{regions:?}"));
        }
        if let Some(steps) = &want.parameters {
            for (name, params) in steps {
                let step = inc.plan.steps.iter().find(|s| &s.name == name);
                for (param, want) in params {
                    let got = step.and_then(|s| match &s.action {
                        crate::plan::Action::Ssm { parameters, .. } => {
                            parameters.get(param).map(|v| v.join(","))
                        }
                        crate::plan::Action::Lambda { payload, .. } => {
                            payload.get(param).map(|v| match v {
                                serde_json::Value::String(s) => s.clone(),
                                other => other.to_string(),
                            })
                        }
                    });
                    check(
                        &format!("parameters of {name:?}: {param}"),
                        format!("{want:?}"),
                        match got {
                            Some(g) => format!("{g:?}"),
                            None => "nothing".into(),
                        },
                    );
                }
            }
        }
        if let Some(a) = &want.absorbed {
            let mut want: Vec<String> = a.iter().map(|k| normalise_key(k)).collect();
            want.sort();
            let mut got: Vec<String> = g.absorbed.iter().map(|k| normalise_key(k)).collect();
            got.sort();
            check("absorbed", format!("{want:?}"), format!("{got:?}"));
        }
        if let Some(p) = &want.parent {
            check(
                "parent",
                normalise_key(p),
                g.parent
                    .as_deref()
                    .map(normalise_key)
                    .unwrap_or_else(|| "none".into()),
            );
        }
        let own: Vec<&crate::incident::Event> = events
            .iter()
            .filter(|(e, _)| e.incident_id == inc.id)
            .map(|(e, _)| e)
            .collect();
        if let Some(a) = &want.approval {
            let asked = own.iter().rfind(|e| e.kind == "shadow_approval");
            let needed = asked.and_then(|e| e.data["needed"].as_u64());
            check(
                "approval.needed",
                a.needed.to_string(),
                needed.map_or("no approval step reached".into(), |n| n.to_string()),
            );
            if let Some(groups) = &a.groups {
                let mut want = groups.clone();
                want.sort();
                let got: Vec<String> = asked
                    .and_then(|e| serde_json::from_value(e.data["groups"].clone()).ok())
                    .unwrap_or_default();
                check("approval.groups", format!("{want:?}"), format!("{got:?}"));
            }
        }
        if let Some(want_holds) = &want.would_hold {
            let holds: Vec<&str> = own
                .iter()
                .filter(|e| e.kind == "shadow_held" || e.kind == "suppressed")
                .filter_map(|e| e.data["limit"].as_str())
                .collect();
            check(
                "would_hold",
                format!("{want_holds:?}"),
                format!("{holds:?}"),
            );
        }
        if let Some(r) = want.released {
            let released = own.iter().any(|e| e.kind == "released");
            check("released", r.to_string(), released.to_string());
        }
        if !diffs.is_empty() {
            out.push(format!(
                "  at {when}: incident {key} (line {}):",
                e.referenced.line()
            ));
            out.extend(diffs);
        }
    }
    for g in unmatched {
        out.push(format!(
            "  at {when}: unexpected incident {} (rule {}, state {}{})",
            normalise_key(&g.key),
            g.incident.rule,
            g.incident.state,
            if g.incident.closed_at.is_some() {
                ", closed"
            } else {
                ""
            }
        ));
    }
    out
}
