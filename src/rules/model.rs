//! The compiled form of a rule (what the engine runs), built from the rule
//! file's [`super::spec`] types.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_saphyr::Spanned;

use super::matcher::Matcher;
use super::plan::PlanTemplate;
pub use super::spec::{ApprovalMode, OnTimeout, RuleError, RuleErrors, RuleMode};
use super::spec::{Errs, RuleSpec};
use super::step::StepTemplate;
use crate::primitives::duration::{self, MAX_RULE_DURATION};
use crate::signal::valid_label_name;

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

/// The hold of a rule whose scenario a larger one absorbs, unless it says:
/// long enough for the alerts of a zone or region failure to form the larger
/// incident, short against the RTOs of the services it delays. The alerts of
/// one failure reach dr-reactor over Alertmanager's `group_wait` plus a
/// `group_interval` (10s and 1m in deploy/alertmanager) plus a Prometheus
/// evaluation interval: 90s covers that with a margin; 60s was measured
/// to lose the race on a recorded zone failure (examples/traces).
pub const DEFAULT_HOLD: Duration = Duration::from_secs(90);
/// A longer hold would hide a real single-service failure for too long.
pub const MAX_HOLD: Duration = Duration::from_secs(15 * 60);

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
    /// How long an incident waits for a larger scenario before it acts;
    /// zero for a scenario nothing absorbs (see [`RuleSet::load`]).
    ///
    /// [`RuleSet::load`]: super::RuleSet::load
    pub hold: Duration,
    /// The rule file set `hold`; otherwise the deployment's default applies
    /// (see [`RuleSet::with_default_hold`]).
    ///
    /// [`RuleSet::with_default_hold`]: super::RuleSet::with_default_hold
    pub hold_explicit: bool,
    pub plan: PlanTemplate,
    pub limits: Limits,
    pub approval: Approval,
    /// Shadow (dry-run), approve (a person always), or auto (the policy).
    pub mode: RuleMode,
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
    /// Resolved members count until they leave the window (see
    /// `WhenSpec::count_resolved`); otherwise only live evidence counts.
    pub count_resolved: bool,
}

impl Conditions {
    /// Whether groups keep a count of members per name: for `alerts`, and
    /// for a CEL condition whose shape asks about names.
    pub fn tallies_names(&self) -> bool {
        !self.alerts.is_empty()
            || self
                .cel
                .as_ref()
                .and_then(|c| c.shape())
                .is_some_and(|s| s.reads_names())
    }
}

#[derive(Debug, Clone)]
pub struct Absent {
    pub after: Duration,
    pub alert: Option<String>,
}

impl Absent {
    /// Whether a signal of this name is one of the heartbeats the rule
    /// watches (every member is, without `alert`).
    pub fn is_beat(&self, name: &str) -> bool {
        is_beat(self.alert.as_deref(), name)
    }
}

/// Whether a signal named `name` is a heartbeat of a rule watching `alert`
/// (every signal is, without one). The engine and the approval check both
/// ask this, so that they never disagree about whether a heartbeat is back.
pub fn is_beat(alert: Option<&str>, name: &str) -> bool {
    alert.is_none_or(|a| a == name)
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
        if n == 0 {
            return Err(format!("invalid rate {s:?}: N must be greater than 0"));
        }
        let period =
            duration::parse_within(period.trim(), duration::MIN_RATE_PERIOD, MAX_RATE_PERIOD)
                .map_err(|e| format!("invalid rate {s:?}: {e}"))?;
        // The limiter replenishes one cell every period / N; under a
        // microsecond it would round to nothing.
        if period / n < Duration::from_micros(1) {
            return Err(format!(
                "invalid rate {s:?}: more than one per microsecond is no limit"
            ));
        }
        Ok(Rate { n, period })
    }
}

/// Longest rate period: a year, enough for "one failover per quarter".
pub const MAX_RATE_PERIOD: Duration = Duration::from_secs(366 * 24 * 3600);

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

/// A duration of a rule: over 0 and at most [`MAX_RULE_DURATION`]; on an
/// error (recorded against `span`) zero, which the rule is then dropped for.
fn rule_duration(span: &Spanned<String>, key: &str, errs: &mut Errs<'_>) -> Duration {
    duration::parse_within(&span.value, Duration::from_nanos(1), MAX_RULE_DURATION).unwrap_or_else(
        |e| {
            errs.at(span, format!("{key}: {e}"));
            Duration::ZERO
        },
    )
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
    let window = rule_duration(&spec.correlate.window, "correlate.window", errs);
    for l in &spec.correlate.group_by {
        if !valid_label_name(&l.value) {
            errs.at(
                l,
                format!(
                    "correlate.group_by: {:?} is not a label name; expected [a-zA-Z_][a-zA-Z0-9_]*",
                    l.value
                ),
            );
        }
    }
    let when_span = spec.correlate.when;
    let when = &when_span.value;
    if let Some(count) = when.count.as_ref().filter(|c| c.value == 0) {
        errs.at(count, "correlate.when.count must be at least 1");
    }
    for (label, n) in &when.distinct {
        if n.value == 0 {
            errs.at(
                n,
                format!("correlate.when.distinct.{label} must be at least 1"),
            );
        }
        if !valid_label_name(label) {
            errs.at(
                n,
                format!("correlate.when.distinct: {label:?} is not a label name; expected [a-zA-Z_][a-zA-Z0-9_]*"),
            );
        }
    }
    if let Some(max) = spec.limits.max_concurrent.as_ref().filter(|m| m.value == 0) {
        errs.at(
            max,
            "limits.max_concurrent must be at least 1 (to keep a rule from acting, use mode: shadow)",
        );
    }
    if when.count.is_none()
        && when.distinct.is_empty()
        && when.alerts.is_empty()
        && when.absent.is_none()
        && when.cel.is_none()
    {
        errs.at(
            &when_span,
            "correlate.when has no condition; expected at least one of count, distinct, alerts, absent, cel",
        );
    }
    let absent = when.absent.as_ref().map(|a| Absent {
        after: rule_duration(&a.for_, "absent.for", errs),
        alert: a.alert.clone(),
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
        max_concurrent: spec.limits.max_concurrent.map(|m| m.value),
    };
    let a = &spec.approval;
    let timeout = rule_duration(&a.timeout, "approval.timeout", errs);
    if a.mode != ApprovalMode::Auto && a.groups.is_empty() && !a.include_owners.value {
        errs.at(
            &a.include_owners,
            "approval: nobody may approve; give approval.groups or include_owners: true (or mode: auto)",
        );
    }
    if a.on_timeout.value == OnTimeout::Escalate && a.escalate_to.is_empty() {
        errs.at(
            &a.on_timeout,
            "approval.on_timeout is escalate but approval.escalate_to is empty",
        );
    }
    let mode = match (&spec.mode, spec.dry_run.value) {
        (None, dry_run) => {
            if dry_run {
                RuleMode::Shadow
            } else {
                RuleMode::Auto
            }
        }
        (Some(m), false) => m.value,
        (Some(m), true) => {
            if m.value != RuleMode::Shadow {
                errs.at(
                    &spec.dry_run,
                    "dry_run: true contradicts the rule's mode; say mode: shadow alone",
                );
            }
            RuleMode::Shadow
        }
    };
    if mode == RuleMode::Approve && a.groups.is_empty() && !a.include_owners.value {
        errs.at(
            &a.include_owners,
            "mode: approve needs someone to ask; give approval.groups or include_owners: true",
        );
    }
    let approval = Approval {
        mode: a.mode,
        groups: a.groups.clone(),
        include_owners: a.include_owners.value,
        timeout,
        on_timeout: a.on_timeout.value,
        escalate_to: a.escalate_to.clone(),
    };
    if spec.scenario.value.trim().is_empty() {
        errs.at(&spec.scenario, "scenario must not be empty");
    }
    let step_timeout =
        super::step::timeout(spec.plan.step_timeout.as_ref(), "plan.step_timeout", errs);
    let hold = match &spec.hold {
        None => DEFAULT_HOLD,
        Some(h) => match crate::primitives::duration::parse(&h.value) {
            Ok(d) if d <= MAX_HOLD => d,
            Ok(_) => {
                errs.at(
                    h,
                    format!(
                        "hold must be at most {}: every second of it delays recovery",
                        humantime::format_duration(MAX_HOLD)
                    ),
                );
                Duration::ZERO
            }
            Err(e) => {
                errs.at(h, e);
                Duration::ZERO
            }
        },
    };
    let steps: Vec<StepTemplate> = spec
        .plan
        .steps
        .into_iter()
        .filter_map(|s| StepTemplate::compile(s, errs))
        .collect();
    if errs.out.len() > before {
        return None;
    }
    let when = when_span.value;
    Some(Arc::new(Rule {
        origin: format!("{}:{}", errs.file.display(), spec.name.referenced.line()),
        name: spec.name.value,
        description: spec.description,
        source: spec.matches.source,
        matchers,
        group_by: spec
            .correlate
            .group_by
            .into_iter()
            .map(|l| l.value)
            .collect(),
        window,
        when: Conditions {
            count: when.count.map(|c| c.value),
            distinct: when
                .distinct
                .into_iter()
                .map(|(label, n)| (label, n.value))
                .collect(),
            alerts: when.alerts,
            absent,
            cel,
            count_resolved: when.count_resolved,
        },
        scenario: spec.scenario.value,
        severity: spec.severity,
        absorbs: spec.absorbs.into_iter().map(|a| a.value).collect(),
        hold,
        hold_explicit: spec.hold.is_some(),
        plan: PlanTemplate {
            from_catalogue: spec.plan.from_catalogue,
            services: spec.plan.services,
            steps,
            continue_on_failure: spec.plan.continue_on_failure,
            step_timeout,
        },
        limits,
        approval,
        mode,
    }))
}

impl Rule {
    /// Whether a plan of this rule may run in another region than the
    /// incident's own: a step (its own, or a catalogue runbook for its
    /// scenario when it plans from the catalogue) whose region is anything
    /// but `{{ labels.region }}`. Silencing or retrying such a rule is an
    /// approver's call (see `access`).
    pub fn fails_over(&self, catalogue: &crate::catalogue::Catalogue) -> bool {
        fn elsewhere(step: &StepTemplate) -> bool {
            let region = match &step.action {
                super::step::ActionTemplate::Ssm { region, .. }
                | super::step::ActionTemplate::Lambda { region, .. } => region,
            };
            let compact: String = region.chars().filter(|c| !c.is_whitespace()).collect();
            compact != "{{labels.region}}"
        }
        let own = self.plan.steps.iter().any(elsewhere);
        let catalogued = self.plan.from_catalogue
            && catalogue.services.values().any(|s| {
                s.runbooks
                    .get(&self.scenario)
                    .and_then(|name| catalogue.runbooks.get(name))
                    .is_some_and(|r| elsewhere(&r.step))
            });
        own || catalogued
    }
}
