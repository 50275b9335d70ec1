//! The rule file format (what users write) and its compiled form (what the
//! engine runs). Parsing is strict: unknown keys are errors; every error
//! carries file:line:column.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::matcher::Matcher;
use super::plan::{PlanTemplate, StepTemplate};

/// One problem in a rule file, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub file: PathBuf,
    pub line: u64,
    pub column: u64,
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

/// All errors of a rule set, reported together so one CI run shows them all.
#[derive(Debug, Clone, thiserror::Error)]
pub struct RuleErrors(pub Vec<RuleError>);

impl fmt::Display for RuleErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RuleFileSpec {
    pub rules: Vec<RuleSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RuleSpec {
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: String,
    #[serde(rename = "match")]
    pub matches: MatchSpec,
    pub correlate: CorrelateSpec,
    pub scenario: Spanned<String>,
    #[serde(default = "default_severity")]
    pub severity: String,
    #[serde(default)]
    pub plan: PlanSpec,
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MatchSpec {
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub labels: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CorrelateSpec {
    #[serde(default)]
    pub group_by: Vec<String>,
    pub window: Spanned<String>,
    pub when: WhenSpec,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WhenSpec {
    /// At least this many signals in the group.
    #[serde(default)]
    pub count: Option<usize>,
    /// At least N distinct values of a label, per label.
    #[serde(default)]
    pub distinct: BTreeMap<String, usize>,
    /// Every one of these alert names is present in the group.
    #[serde(default)]
    pub alerts: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PlanSpec {
    #[serde(default)]
    pub steps: Vec<StepSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StepSpec {
    pub name: Spanned<String>,
    #[serde(default)]
    pub ssm: Option<SsmSpec>,
    #[serde(default)]
    pub lambda: Option<LambdaSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SsmSpec {
    pub document: Spanned<String>,
    #[serde(default)]
    pub document_version: Option<String>,
    pub region: Spanned<String>,
    #[serde(default)]
    pub parameters: BTreeMap<String, Spanned<OneOrMany>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LambdaSpec {
    pub function: Spanned<String>,
    pub region: Spanned<String>,
    #[serde(default)]
    pub payload: Option<Spanned<serde_json::Value>>,
}

fn default_severity() -> String {
    "critical".into()
}

/// A compiled rule, ready to evaluate.
#[derive(Debug)]
pub struct Rule {
    pub name: String,
    pub description: String,
    pub source: Option<String>,
    pub matchers: Vec<Matcher>,
    pub group_by: Vec<String>,
    pub window: Duration,
    pub when: Conditions,
    pub scenario: String,
    pub severity: String,
    pub plan: PlanTemplate,
    pub dry_run: bool,
    /// Where the rule is defined, for explanations.
    pub origin: String,
}

#[derive(Debug, Default)]
pub struct Conditions {
    pub count: Option<usize>,
    pub distinct: BTreeMap<String, usize>,
    pub alerts: Vec<String>,
}

impl Rule {
    /// Whether a signal is evidence for this rule.
    pub fn matches(&self, source: &str, labels: &crate::signal::Labels) -> bool {
        self.source.as_deref().is_none_or(|s| s == source)
            && self.matchers.iter().all(|m| m.matches(labels))
    }
}

/// Error collector for one file.
pub(super) struct Errs<'a> {
    pub file: &'a Path,
    pub out: &'a mut Vec<RuleError>,
}

impl Errs<'_> {
    pub fn at<T>(&mut self, span: &Spanned<T>, message: impl Into<String>) {
        self.out.push(RuleError {
            file: self.file.to_owned(),
            line: span.referenced.line(),
            column: span.referenced.column(),
            message: message.into(),
        });
    }
}

pub(super) fn compile(spec: RuleSpec, errs: &mut Errs<'_>) -> Option<Arc<Rule>> {
    let before = errs.out.len();
    let mut matchers = Vec::new();
    for m in &spec.matches.labels {
        match Matcher::parse(&m.value) {
            Ok(matcher) => matchers.push(matcher),
            Err(e) => errs.at(m, e),
        }
    }
    let window = match crate::config::duration::parse(&spec.correlate.window.value) {
        Ok(d) if !d.is_zero() => d,
        Ok(_) => {
            errs.at(&spec.correlate.window, "window must be greater than 0");
            Duration::ZERO
        }
        Err(e) => {
            errs.at(&spec.correlate.window, e);
            Duration::ZERO
        }
    };
    let when = spec.correlate.when;
    if when.count.is_none() && when.distinct.is_empty() && when.alerts.is_empty() {
        errs.at(
            &spec.name,
            "correlate.when has no condition; expected at least one of count, distinct, alerts",
        );
    }
    if spec.scenario.value.trim().is_empty() {
        errs.at(&spec.scenario, "scenario must not be empty");
    }
    let steps: Vec<StepTemplate> = spec
        .plan
        .steps
        .into_iter()
        .filter_map(|s| StepTemplate::compile(s, errs))
        .collect();
    if errs.out.len() > before {
        return None;
    }
    Some(Arc::new(Rule {
        origin: format!("{}:{}", errs.file.display(), spec.name.referenced.line()),
        name: spec.name.value,
        description: spec.description,
        source: spec.matches.source,
        matchers,
        group_by: spec.correlate.group_by,
        window,
        when: Conditions {
            count: when.count,
            distinct: when.distinct,
            alerts: when.alerts,
        },
        scenario: spec.scenario.value,
        severity: spec.severity,
        plan: PlanTemplate { steps },
        dry_run: spec.dry_run,
    }))
}
