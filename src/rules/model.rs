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

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleFileSpec {
    pub rules: Vec<RuleSpec>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleSpec {
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: String,
    #[serde(rename = "match")]
    pub matches: MatchSpec,
    pub correlate: CorrelateSpec,
    #[schemars(with = "String")]
    pub scenario: Spanned<String>,
    #[serde(default = "default_severity")]
    pub severity: String,
    /// Scenarios this one absorbs: while an incident of this rule is open,
    /// incidents of these scenarios inside its group are attached to it and
    /// never act alone (like Alertmanager inhibition).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub absorbs: Vec<Spanned<String>>,
    #[serde(default)]
    pub plan: PlanSpec,
    #[serde(default)]
    pub limits: LimitsSpec,
    #[serde(default)]
    pub approval: ApprovalSpec,
    #[serde(default)]
    pub dry_run: bool,
}

/// Who must approve before the plan runs.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalSpec {
    #[serde(default)]
    pub mode: ApprovalMode,
    /// Slack user groups (handles or ids) whose members may approve.
    #[serde(default)]
    pub groups: Vec<String>,
    /// The owners of the affected services (from the catalogue) may
    /// approve too: the data owner for a restore.
    #[serde(default = "yes")]
    pub include_owners: bool,
    #[serde(default = "default_approval_timeout")]
    #[schemars(with = "String")]
    pub timeout: Spanned<String>,
    #[serde(default)]
    pub on_timeout: OnTimeout,
    /// Groups asked in addition when the timeout escalates.
    #[serde(default)]
    pub escalate_to: Vec<String>,
}

impl Default for ApprovalSpec {
    fn default() -> Self {
        ApprovalSpec {
            mode: ApprovalMode::default(),
            groups: Vec::new(),
            include_owners: true,
            timeout: default_approval_timeout(),
            on_timeout: OnTimeout::default(),
            escalate_to: Vec::new(),
        }
    }
}

fn yes() -> bool {
    true
}

fn default_approval_timeout() -> Spanned<String> {
    Spanned {
        value: "15m".into(),
        referenced: serde_saphyr::Location::UNKNOWN,
        defined: serde_saphyr::Location::UNKNOWN,
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalMode {
    /// Runs as soon as the guard admits it.
    Auto,
    /// One approver from the groups.
    #[default]
    One,
    /// Two different approvers from the groups.
    Two,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnTimeout {
    /// The incident expires; nothing runs.
    #[default]
    Expire,
    /// Ask `escalate_to` as well and wait one more timeout, then expire.
    Escalate,
}

/// A compiled approval policy.
#[derive(Debug, Clone)]
pub struct Approval {
    pub mode: ApprovalMode,
    pub groups: Vec<String>,
    pub include_owners: bool,
    pub timeout: Duration,
    pub on_timeout: OnTimeout,
    pub escalate_to: Vec<String>,
}

/// Rate and concurrency limits, enforced by the guard before dispatch.
#[derive(Debug, Default, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    /// At most this many incidents of this rule act per period, e.g. "1/10m".
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub rate: Option<Spanned<String>>,
    /// At most this many per scenario and target (group), e.g. "1/1h".
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub per_target: Option<Spanned<String>>,
    /// At most this many incidents of this rule running at once.
    #[serde(default)]
    pub max_concurrent: Option<u32>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MatchSpec {
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub labels: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CorrelateSpec {
    #[serde(default)]
    pub group_by: Vec<String>,
    #[schemars(with = "String")]
    pub window: Spanned<String>,
    pub when: WhenSpec,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct WhenSpec {
    /// At least this many signals in the group.
    #[serde(default)]
    pub count: Option<usize>,
    /// At least N distinct values of a label, per label.
    #[serde(default)]
    pub distinct: BTreeMap<String, usize>,
    /// Every one of these alert names is present in the group.
    #[serde(default)]
    pub alerts: Vec<String>,
    /// Heartbeat absence: the group's signals (or those named `alert`) have
    /// not been seen for `for`.
    #[serde(default)]
    pub absent: Option<AbsentSpec>,
    /// A CEL expression over `signals`, `group` and `count` that must be
    /// true, for what the conditions above cannot say.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub cel: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AbsentSpec {
    #[serde(rename = "for")]
    #[schemars(with = "String")]
    pub for_: Spanned<String>,
    #[serde(default)]
    pub alert: Option<String>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PlanSpec {
    /// Build the plan from the service catalogue: each affected service's
    /// runbook for this scenario, in dependency order. Explicit steps run
    /// after those.
    #[serde(default)]
    pub from_catalogue: bool,
    #[serde(default)]
    pub services: super::plan::ServiceSelection,
    #[serde(default)]
    pub steps: Vec<StepSpec>,
    /// Keep going after a failed step instead of stopping the plan.
    #[serde(default)]
    pub continue_on_failure: bool,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StepSpec {
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    #[serde(default)]
    pub ssm: Option<SsmSpec>,
    #[serde(default)]
    pub lambda: Option<LambdaSpec>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SsmSpec {
    #[schemars(with = "String")]
    pub document: Spanned<String>,
    #[serde(default)]
    pub document_version: Option<String>,
    #[schemars(with = "String")]
    pub region: Spanned<String>,
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, OneOrMany>")]
    pub parameters: BTreeMap<String, Spanned<OneOrMany>>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LambdaSpec {
    #[schemars(with = "String")]
    pub function: Spanned<String>,
    #[schemars(with = "String")]
    pub region: Spanned<String>,
    #[serde(default)]
    #[schemars(with = "Option<serde_json::Value>")]
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
    pub absorbs: Vec<String>,
    pub plan: PlanTemplate,
    pub limits: Limits,
    pub approval: Approval,
    pub dry_run: bool,
    /// Where the rule is defined, for explanations.
    pub origin: String,
}

#[derive(Debug, Default)]
pub struct Conditions {
    pub count: Option<usize>,
    pub distinct: BTreeMap<String, usize>,
    pub alerts: Vec<String>,
    pub absent: Option<Absent>,
    pub cel: Option<super::cel::Condition>,
}

#[derive(Debug, Clone)]
pub struct Absent {
    pub after: Duration,
    pub alert: Option<String>,
}

/// `n` events per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub n: u32,
    pub period: Duration,
}

impl Rate {
    pub fn parse(s: &str) -> Result<Rate, String> {
        let err = || format!("invalid rate {s:?}; expected N/DURATION, e.g. 1/10m");
        let (n, period) = s.split_once('/').ok_or_else(err)?;
        let n: u32 = n.trim().parse().map_err(|_| err())?;
        let period = crate::config::duration::parse(period.trim())?;
        if n == 0 || period.is_zero() {
            return Err(err());
        }
        Ok(Rate { n, period })
    }
}

#[derive(Debug, Clone, Default)]
pub struct Limits {
    pub rate: Option<Rate>,
    pub per_target: Option<Rate>,
    pub max_concurrent: Option<u32>,
}

impl Rule {
    /// Whether a signal is evidence for this rule. Matchers may name the
    /// virtual labels `__name__` (the signal's name, e.g. its alertname or
    /// event type) and `__source__`, as in Prometheus.
    pub fn matches(&self, source: &str, name: &str, labels: &crate::signal::Labels) -> bool {
        self.source.as_deref().is_none_or(|s| s == source)
            && self.matchers.iter().all(|m| match m.name.as_str() {
                "__name__" => m.matches_value(name),
                "__source__" => m.matches_value(source),
                _ => m.matches(labels),
            })
    }
}

/// Error collector for one file.
pub(crate) struct Errs<'a> {
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
    if when.count.is_none()
        && when.distinct.is_empty()
        && when.alerts.is_empty()
        && when.absent.is_none()
        && when.cel.is_none()
    {
        errs.at(
            &spec.name,
            "correlate.when has no condition; expected at least one of count, distinct, alerts, absent, cel",
        );
    }
    let absent =
        when.absent
            .as_ref()
            .and_then(|a| match crate::config::duration::parse(&a.for_.value) {
                Ok(d) if !d.is_zero() => Some(Absent {
                    after: d,
                    alert: a.alert.clone(),
                }),
                Ok(_) => {
                    errs.at(&a.for_, "absent.for must be greater than 0");
                    None
                }
                Err(e) => {
                    errs.at(&a.for_, e);
                    None
                }
            });
    let cel = when
        .cel
        .as_ref()
        .and_then(|c| match super::cel::Condition::compile(&c.value) {
            Ok(cond) => Some(cond),
            Err(e) => {
                errs.at(c, e);
                None
            }
        });
    let mut rate = |r: &Option<Spanned<String>>| {
        r.as_ref().and_then(|r| match Rate::parse(&r.value) {
            Ok(rate) => Some(rate),
            Err(e) => {
                errs.at(r, e);
                None
            }
        })
    };
    let limits = Limits {
        rate: rate(&spec.limits.rate),
        per_target: rate(&spec.limits.per_target),
        max_concurrent: spec.limits.max_concurrent,
    };
    let a = &spec.approval;
    let timeout = match crate::config::duration::parse(&a.timeout.value) {
        Ok(d) if !d.is_zero() => d,
        Ok(_) => {
            errs.at(&a.timeout, "approval.timeout must be greater than 0");
            Duration::ZERO
        }
        Err(e) => {
            errs.at(&a.timeout, e);
            Duration::ZERO
        }
    };
    if a.mode != ApprovalMode::Auto && a.groups.is_empty() && !a.include_owners {
        errs.at(
            &spec.name,
            "approval: nobody may approve; give approval.groups or include_owners: true (or mode: auto)",
        );
    }
    if a.on_timeout == OnTimeout::Escalate && a.escalate_to.is_empty() {
        errs.at(
            &spec.name,
            "approval.on_timeout is escalate but approval.escalate_to is empty",
        );
    }
    let approval = Approval {
        mode: a.mode,
        groups: a.groups.clone(),
        include_owners: a.include_owners,
        timeout,
        on_timeout: a.on_timeout,
        escalate_to: a.escalate_to.clone(),
    };
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
            absent,
            cel,
        },
        scenario: spec.scenario.value,
        severity: spec.severity,
        absorbs: spec.absorbs.into_iter().map(|a| a.value).collect(),
        plan: PlanTemplate {
            from_catalogue: spec.plan.from_catalogue,
            services: spec.plan.services,
            steps,
            continue_on_failure: spec.plan.continue_on_failure,
        },
        limits,
        approval,
        dry_run: spec.dry_run,
    }))
}
