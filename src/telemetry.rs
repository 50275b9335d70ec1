//! Logs and metrics. Metrics live on one injected registry (tests get their
//! own); every label set is bounded (reasons, routes, scenarios from rules),
//! never a raw value from a request.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use serde::Deserialize;

/// The `log:` section of the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    #[serde(default)]
    pub format: LogFormat,
    /// A tracing filter directive; `RUST_LOG` overrides it.
    #[serde(default = "default_log_level")]
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::default(),
            level: default_log_level(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

fn default_log_level() -> String {
    "info".into()
}

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Alerts accepted from webhooks, by status.
    pub alerts_received: IntCounterVec,
    /// Alerts dropped from an otherwise good batch.
    pub alerts_invalid: IntCounter,
    /// Signals refused at the edge, by source and reason (malformed, or a
    /// limit of `intake.limits`).
    pub signals_rejected: IntCounterVec,
    /// Signals the rule engine turned away at a limit, by limit.
    pub engine_limited: IntCounterVec,
    /// Firing signals expired from the engine by `rules.signal_ttl`.
    pub signals_expired: IntCounter,
    /// Long-lived tasks restarted by their supervisor after a panic.
    pub task_restarts: IntCounterVec,
    /// Firing alerts that were re-sends of what was already firing.
    pub alerts_deduplicated: IntCounter,
    /// Whole requests refused, by reason.
    pub requests_rejected: IntCounterVec,
    pub incidents_open: IntGaugeVec,
    /// 1 if the runbook answered ready at the last readiness check in that
    /// region, 0 if not; only runbooks the rules in force can call.
    pub runbook_ready: IntGaugeVec,
    pub incidents_total: IntCounterVec,
    pub incident_transitions: IntCounterVec,
    pub plan_steps: IntCounterVec,
    /// Votes on approvals, by outcome (approve, deny, not_allowed, …).
    pub votes: IntCounterVec,
    /// Incidents the guard held back, and approved plans made to wait, by
    /// the limit that held them.
    pub incidents_held: IntCounterVec,
    /// Incidents recorded but suppressed because a silence matched them at
    /// admission, by scenario.
    pub incidents_silenced: IntCounterVec,
    /// Approvals paused because their evidence went, and resumed when it
    /// came back (`approval_paused`, `approval_resumed`).
    pub approvals_paused: IntCounterVec,
    /// Holds for larger scenarios: `held` when one starts, `released` when
    /// one runs out and the incident acts alone.
    pub holds: IntCounterVec,
    /// Operator actions refused for a missing role, by action.
    pub access_refused: IntCounterVec,
    /// Re-reads of the API's tokens from config, by result.
    pub credential_reloads: IntCounterVec,
    /// Failbacks by stage: `prepared` after a failover succeeded,
    /// `waiting` each time the failed region is seen unhealthy, `healthy`
    /// each time it is seen healthy again, `offered` for approval.
    pub failbacks: IntCounterVec,
    /// Recovery reports archived, by target (`dir`, `s3`) and outcome
    /// (`ok`, `error`).
    pub reports_archived: IntCounterVec,
    /// Plans re-rendered for new evidence before approval.
    pub plans_revised: IntCounter,
    /// Rows retention deleted, by what (`incidents`, `signals`).
    pub pruned: IntCounterVec,
    pub http_duration: HistogramVec,
    pub pipeline_errors: IntCounterVec,
    /// Signal events the rule engine has consumed (lets tests and operators
    /// see that the pipeline has caught up).
    pub signals_processed: IntCounter,
    /// Signal events no rule can match, left out at intake (counted in
    /// `signals_processed` too: nothing more is to be done with them).
    pub signals_unmatched: IntCounter,
    /// Distinct signals the rule engine holds in at least one group: what
    /// its memory grows with.
    pub signals_tracked: prometheus::IntGauge,
    pub rules_loaded: prometheus::IntGauge,
    /// SQLite's WAL pages that the last checkpoint could not copy back (a
    /// read transaction held them): the WAL grows while this does.
    pub store_wal_not_copied: prometheus::IntGauge,
    /// Signals per group commit of intake's writer: near the number of
    /// senders in flight times their batch size when a storm keeps the
    /// writer busy, one request's worth when it keeps up.
    pub intake_group_signals: prometheus::Histogram,
    /// From a group's first request taken by intake's writer to its senders
    /// answered: what one sender waits beyond its own parsing.
    pub intake_group_duration: prometheus::Histogram,
    pub rule_reloads: IntCounterVec,
    /// Every AWS API attempt dispatch makes, retries included, by result.
    pub aws_calls: IntCounterVec,
    /// Decisions tried again because the store was briefly unreachable.
    pub decision_retries: IntCounter,
    /// 1 while this replica acts as leader: its engine is rebuilt and it
    /// correlates and dispatches (set by the pipeline, after the lease).
    pub leader: prometheus::IntGauge,
    /// 1 while the dispatch kill switch is on (as this replica last set or
    /// read it).
    pub kill_switch: prometheus::IntGauge,
    /// Times this replica became leader or follower.
    pub leadership_changes: IntCounterVec,
    /// Audit file writes, syncs or reopens that failed (the event table
    /// still has the events).
    pub audit_write_errors: IntCounter,
    /// Syncs of the audit file; fewer than events under load (group commit).
    pub audit_syncs: IntCounter,
    /// From the first evidence to the request for approval (or to the
    /// approval, where none was asked), per finished incident.
    pub time_to_decision: HistogramVec,
    /// From the first evidence to the last step's end, per finished
    /// incident whose plan ran.
    pub recovery: HistogramVec,
}

/// The `drill` label of incident metrics.
pub fn drill_label(drill: bool) -> &'static str {
    if drill { "true" } else { "false" }
}

/// Seconds, from a minute to a day: the range of recovery times.
const RECOVERY_BUCKETS: [f64; 10] = [
    60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 86400.0,
];

fn register<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: T) -> T {
    r.register(Box::new(c.clone()))
        .expect("metric names are unique and valid");
    c
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new_custom(Some("dr_reactor".into()), None).expect("valid prefix");
        let counter = |name: &str, help: &str, labels: &[&str]| {
            register(
                &r,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        Metrics {
            alerts_received: counter(
                "alerts_received_total",
                "Alerts accepted from webhooks.",
                &["status"],
            ),
            alerts_invalid: register(
                &r,
                IntCounter::new(
                    "alerts_invalid_total",
                    "Alerts dropped from a batch as malformed.",
                )
                .expect("valid metric"),
            ),
            signals_rejected: counter(
                "signals_rejected_total",
                "Signals refused at intake, by source and reason.",
                &["source", "reason"],
            ),
            engine_limited: counter(
                "engine_limited_total",
                "Signals not tracked by the rule engine because a limit was hit, by limit.",
                &["limit"],
            ),
            signals_expired: register(
                &r,
                IntCounter::new(
                    "signals_expired_total",
                    "Firing signals not re-sent within rules.signal_ttl, expired from the engine.",
                )
                .expect("valid metric"),
            ),
            task_restarts: counter(
                "task_restarts_total",
                "Long-lived tasks restarted after a panic, by task.",
                &["task"],
            ),
            alerts_deduplicated: register(
                &r,
                IntCounter::new(
                    "alerts_deduplicated_total",
                    "Firing alerts re-sent while already firing.",
                )
                .expect("valid metric"),
            ),
            requests_rejected: counter(
                "requests_rejected_total",
                "Requests refused, by reason.",
                &["reason"],
            ),
            runbook_ready: register(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "runbook_ready",
                        "1 if the runbook (SSM document or Lambda function) was ready in the region at the last readiness check, else 0.",
                    ),
                    &["runbook", "region"],
                )
                .expect("valid metric"),
            ),
            incidents_open: register(
                &r,
                IntGaugeVec::new(
                    Opts::new("incidents_open", "Open incidents."),
                    &["scenario", "drill"],
                )
                .expect("valid metric"),
            ),
            incidents_total: counter(
                "incidents_total",
                "Incidents opened.",
                &["scenario", "drill"],
            ),
            incident_transitions: counter(
                "incident_transitions_total",
                "Incident state changes, by target state.",
                &["state"],
            ),
            votes: counter(
                "approval_votes_total",
                "Approval votes, by outcome.",
                &["outcome"],
            ),
            incidents_held: counter(
                "incidents_held_total",
                "Incidents held back by the guard, and approved plans waiting for max_concurrent, by limit.",
                &["limit"],
            ),
            incidents_silenced: counter(
                "incidents_silenced_total",
                "Incidents recorded but suppressed by a silence at admission, by scenario.",
                &["scenario"],
            ),
            approvals_paused: counter(
                "approval_pauses_total",
                "Approvals paused (evidence gone) and resumed (evidence back).",
                &["event"],
            ),
            access_refused: counter(
                "access_refused_total",
                "Operator actions refused because the caller lacks the role, by action.",
                &["action"],
            ),
            credential_reloads: counter(
                "credential_reloads_total",
                "Re-reads of the API's tokens from config (reload, SIGHUP), by result.",
                &["result"],
            ),
            holds: counter(
                "holds_total",
                "Holds of smaller scenarios waiting for larger ones, by outcome.",
                &["outcome"],
            ),
            reports_archived: counter(
                "reports_archived_total",
                "Recovery reports written to reports.dir or uploaded to reports.s3, by outcome.",
                &["target", "outcome"],
            ),
            failbacks: counter(
                "failbacks_total",
                "Failbacks prepared, waiting for the failed region, seen healthy, and offered for approval.",
                &["stage"],
            ),
            pruned: counter(
                "pruned_total",
                "Closed incidents and old signals deleted by retention.",
                &["what"],
            ),
            plans_revised: register(
                &r,
                IntCounter::new(
                    "plans_revised_total",
                    "Plans re-rendered for new evidence before approval.",
                )
                .expect("valid metric"),
            ),
            plan_steps: counter(
                "plan_steps_total",
                "Plan steps handled, by outcome.",
                &["outcome"],
            ),
            http_duration: register(
                &r,
                HistogramVec::new(
                    HistogramOpts::new("http_request_duration_seconds", "HTTP request latency.")
                        .buckets(vec![
                            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                            2.5,
                        ]),
                    &["route", "method", "status"],
                )
                .expect("valid metric"),
            ),
            pipeline_errors: counter(
                "pipeline_errors_total",
                "Errors applying decisions, by stage.",
                &["stage"],
            ),
            signals_processed: register(
                &r,
                IntCounter::new(
                    "signals_processed_total",
                    "Signal events consumed by the rule engine.",
                )
                .expect("valid metric"),
            ),
            signals_tracked: register(
                &r,
                prometheus::IntGauge::new(
                    "signals_tracked",
                    "Distinct signals held by the rule engine in at least one group.",
                )
                .expect("valid metric"),
            ),
            store_wal_not_copied: register(
                &r,
                prometheus::IntGauge::new(
                    "store_wal_pages_not_copied",
                    "SQLite WAL pages the last checkpoint could not copy into the database file.",
                )
                .expect("valid metric"),
            ),
            intake_group_signals: register(
                &r,
                prometheus::Histogram::with_opts(
                    HistogramOpts::new(
                        "intake_group_signals",
                        "Signals recorded per group commit of intake's writer.",
                    )
                    .buckets(vec![
                        1.0, 10.0, 25.0, 50.0, 100.0, 200.0, 300.0, 400.0, 500.0,
                    ]),
                )
                .expect("valid metric"),
            ),
            intake_group_duration: register(
                &r,
                prometheus::Histogram::with_opts(
                    HistogramOpts::new(
                        "intake_group_duration_seconds",
                        "From a group's first request taken by intake's writer to its senders answered.",
                    )
                    .buckets(vec![
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
                    ]),
                )
                .expect("valid metric"),
            ),
            rules_loaded: register(
                &r,
                prometheus::IntGauge::new("rules_loaded", "Rules in the running rule set.")
                    .expect("valid metric"),
            ),
            rule_reloads: counter(
                "rule_reloads_total",
                "Rule reloads, by result.",
                &["result"],
            ),
            aws_calls: counter(
                "aws_calls_total",
                "AWS API attempts by dispatch, retries included.",
                &["service", "operation", "result"],
            ),
            signals_unmatched: register(
                &r,
                IntCounter::new(
                    "signals_unmatched_total",
                    "Signal events no rule can match, recorded and left out of the rule engine.",
                )
                .expect("valid metric"),
            ),
            decision_retries: register(
                &r,
                IntCounter::new(
                    "decision_retries_total",
                    "Decisions applied again after a transient store error.",
                )
                .expect("valid metric"),
            ),
            leader: register(
                &r,
                prometheus::IntGauge::new(
                    "leader",
                    "1 while this replica acts as leader: engine rebuilt, correlating and dispatching.",
                )
                .expect("valid metric"),
            ),
            kill_switch: register(
                &r,
                prometheus::IntGauge::new(
                    "kill_switch",
                    "1 while the dispatch kill switch is on: no plan step starts.",
                )
                .expect("valid metric"),
            ),
            leadership_changes: counter(
                "leadership_changes_total",
                "Times this replica became leader or follower.",
                &["to"],
            ),
            audit_write_errors: register(
                &r,
                IntCounter::new(
                    "audit_write_errors_total",
                    "Audit file writes, syncs or reopens that failed.",
                )
                .expect("valid metric"),
            ),
            audit_syncs: register(
                &r,
                IntCounter::new("audit_syncs_total", "Syncs of the audit file to disk.")
                    .expect("valid metric"),
            ),
            time_to_decision: register(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "time_to_decision_seconds",
                        "First evidence to the approval request, per finished incident.",
                    )
                    .buckets(RECOVERY_BUCKETS.to_vec()),
                    &["scenario", "drill"],
                )
                .expect("valid metric"),
            ),
            recovery: register(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "recovery_seconds",
                        "First evidence to the last step's end, per finished incident.",
                    )
                    .buckets(RECOVERY_BUCKETS.to_vec()),
                    &["scenario", "drill"],
                )
                .expect("valid metric"),
            ),
            registry: r,
        }
    }

    /// Adds what the engine's bounds turned away or expired.
    pub fn engine_bounded(&self, b: crate::rules::engine::Bounded) {
        self.engine_limited
            .with_label_values(&["max_groups_per_rule"])
            .inc_by(b.groups);
        self.engine_limited
            .with_label_values(&["max_members_per_group"])
            .inc_by(b.members);
        self.signals_expired.inc_by(b.expired);
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding to memory cannot fail");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Installs the global tracing subscriber. `RUST_LOG` overrides the level.
pub fn init_logging(cfg: &LogConfig) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match cfg.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    // A second init (tests running several servers) keeps the first one.
    let _ = result;
}
