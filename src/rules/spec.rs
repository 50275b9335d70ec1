//! The rule file format as users write it: strict serde types with spans,
//! so every error carries file:line:column, and the error collector.
//! [`super::model`] compiles these into what the engine runs.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;

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
    /// How long an incident of this rule waits, recorded and planned but
    /// not admitted, for a larger scenario to absorb it (like
    /// Alertmanager's `group_wait`). Only for scenarios some rule absorbs;
    /// those get `rules.default_hold` (90s) unless they say otherwise. `0s` acts at once.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub hold: Option<Spanned<String>>,
    #[serde(default)]
    pub plan: PlanSpec,
    #[serde(default)]
    pub limits: LimitsSpec,
    #[serde(default)]
    pub approval: ApprovalSpec,
    /// The same as `mode: shadow` (kept for rule files that say it).
    #[serde(default = "no")]
    #[schemars(with = "bool")]
    pub dry_run: Spanned<bool>,
    /// Staged rollout: `shadow` records what would happen and calls no AWS
    /// API; `approve` asks a person even where the approval policy is
    /// automatic; `auto` follows the policy (the default).
    #[serde(default)]
    #[schemars(with = "Option<RuleMode>")]
    pub mode: Option<Spanned<RuleMode>>,
}

/// How far a rule may go on its own (see `RuleSpec::mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuleMode {
    /// Everything the live path does but the AWS call, recorded.
    Shadow,
    /// Human approval even where the policy is automatic.
    Approve,
    /// As the approval policy says.
    #[default]
    Auto,
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
    #[schemars(with = "bool")]
    pub include_owners: Spanned<bool>,
    #[serde(default = "default_approval_timeout")]
    #[schemars(with = "String")]
    pub timeout: Spanned<String>,
    #[serde(default = "expire")]
    #[schemars(with = "OnTimeout")]
    pub on_timeout: Spanned<OnTimeout>,
    /// Groups asked in addition when the timeout escalates.
    #[serde(default)]
    pub escalate_to: Vec<String>,
}

impl Default for ApprovalSpec {
    fn default() -> Self {
        ApprovalSpec {
            mode: ApprovalMode::default(),
            groups: Vec::new(),
            include_owners: yes(),
            timeout: default_approval_timeout(),
            on_timeout: expire(),
            escalate_to: Vec::new(),
        }
    }
}

fn no() -> Spanned<bool> {
    unspanned(false)
}

fn yes() -> Spanned<bool> {
    unspanned(true)
}

fn expire() -> Spanned<OnTimeout> {
    unspanned(OnTimeout::Expire)
}

fn default_approval_timeout() -> Spanned<String> {
    unspanned("15m".into())
}

/// A default: it is not in the file, so it has no position.
fn unspanned<T>(value: T) -> Spanned<T> {
    Spanned {
        value,
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
    #[schemars(with = "Option<u32>")]
    pub max_concurrent: Option<Spanned<u32>>,
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
    #[schemars(with = "Vec<String>")]
    pub group_by: Vec<Spanned<String>>,
    #[schemars(with = "String")]
    pub window: Spanned<String>,
    #[schemars(with = "WhenSpec")]
    pub when: Spanned<WhenSpec>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct WhenSpec {
    /// At least this many signals in the group.
    #[serde(default)]
    #[schemars(with = "Option<usize>")]
    pub count: Option<Spanned<usize>>,
    /// At least N distinct values of a label, per label.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, usize>")]
    pub distinct: BTreeMap<String, Spanned<usize>>,
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
    /// Resolved signals go on counting for one window after they resolve,
    /// for a rule that means to count recent flaps. By default the
    /// conditions count only the evidence that still holds: signals firing
    /// now, and point-in-time events (a deploy) within the window.
    #[serde(default)]
    pub count_resolved: bool,
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

/// Which services a catalogue plan recovers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ServiceSelection {
    /// Those named by the `service` label of the incident's signals.
    #[default]
    Affected,
    /// Every catalogued service with a runbook for the scenario (a region
    /// outage takes them all down, whatever alerted).
    All,
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
    pub services: ServiceSelection,
    #[serde(default)]
    pub steps: Vec<StepSpec>,
    /// Keep going after a failed step instead of stopping the plan.
    #[serde(default)]
    pub continue_on_failure: bool,
    /// How long each SSM step of the plan may run before it is stopped and
    /// fails (a step's own `timeout` wins; `aws.step_timeout` otherwise).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub step_timeout: Option<Spanned<String>>,
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
    /// How long this SSM step may run before it is stopped and fails.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub timeout: Option<Spanned<String>>,
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
