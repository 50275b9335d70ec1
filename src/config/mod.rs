//! The service configuration file (`config/dr-reactor.yaml`).
//!
//! Strict: unknown keys are errors, and every error names the file, line and
//! column. Secrets are never written inline in production; a secret field
//! takes `{env: NAME}` or `{file: PATH}` and is resolved at load, so a
//! missing secret fails start-up instead of the first request.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::http::config::{ServerConfig, WebhookConfig};
use crate::primitives::{Secret, TokenDigest};
use crate::rules::engine::EngineLimits;
use crate::telemetry::LogConfig;

/// Environment variables that override secrets in the file, so that a
/// container can keep the file in a ConfigMap and the secret elsewhere.
pub const ENV_WEBHOOK_TOKEN: &str = "DR_REACTOR_WEBHOOK_TOKEN";
pub const ENV_WEBHOOK_PASSWORD: &str = "DR_REACTOR_WEBHOOK_PASSWORD";
pub const ENV_ADMIN_TOKEN: &str = "DR_REACTOR_ADMIN_TOKEN";
/// Added to `api.read_tokens`.
pub const ENV_READ_TOKEN: &str = "DR_REACTOR_READ_TOKEN";
/// The store URL, which for PostgreSQL carries a password.
pub const ENV_STORE_URL: &str = "DR_REACTOR_STORE_URL";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read config file: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        path: PathBuf,
        line: u64,
        column: u64,
        message: String,
    },
    #[error("{path}: {message}")]
    Semantic { path: PathBuf, message: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The file this was loaded from (set by [`Config::load`]), re-read
    /// for the API's tokens on reload.
    #[serde(skip)]
    pub path: Option<PathBuf>,
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub rules: RulesConfig,
    pub webhook: WebhookConfig,
    /// HTTP server limits: read timeouts, connections, requests at once.
    #[serde(default)]
    pub server: ServerConfig,
    /// What one signal may carry, from the webhook and from Kafka alike.
    #[serde(default)]
    pub intake: IntakeConfig,
    /// How long closed incidents and old signals are kept in the store.
    #[serde(default)]
    pub retention: crate::store::RetentionConfig,
    #[serde(default)]
    pub dispatch: DispatchConfig,
    #[serde(default)]
    pub api: ApiConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub approval: ApprovalConfig,
    #[serde(default)]
    pub aws: crate::dispatch::AwsConfig,
    /// Runbook readiness checks (the leader's periodic pass).
    #[serde(default)]
    pub readiness: crate::readiness::ReadinessConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    /// Silences kept in git, next to the rules.
    #[serde(default)]
    pub silences: SilencesConfig,
    /// Leadership among replicas sharing a PostgreSQL store.
    #[serde(default)]
    pub ha: crate::leadership::HaConfig,
    /// Approval and status messages in Slack; without it, approvals go
    /// through the operator API and CLI only.
    #[serde(default)]
    pub slack: Option<crate::approval::slack::SlackConfig>,
    /// Events from Kafka topics; without it, no consumer runs.
    #[serde(default)]
    pub kafka: Option<crate::sources::kafka::KafkaConfig>,
    /// The operator console at `/`.
    #[serde(default)]
    pub console: crate::http::config::ConsoleConfig,
    /// Drills (game days): how their plans are dispatched.
    #[serde(default)]
    pub drills: crate::drill::DrillsConfig,
    /// Failbacks: how long the failed region must be healthy before one is
    /// offered, its heartbeat, and who approves.
    #[serde(default)]
    pub failback: crate::incident::FailbackConfig,
    /// Recovery reports of finished incidents, written to a directory.
    #[serde(default)]
    pub reports: crate::report::archive::ReportsConfig,
}

/// The `intake:` section: limits every source holds signals to.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntakeConfig {
    #[serde(default)]
    pub limits: crate::sources::limits::IntakeLimits,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Append every incident event to this file as a JSON line.
    #[serde(default)]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilencesConfig {
    /// A YAML list of silences, loaded at start and on every rule reload.
    #[serde(default)]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalConfig {
    /// Approver groups → user ids, for approvals through the operator API
    /// and CLI (and when Slack's user groups cannot be read).
    #[serde(default)]
    pub directory: crate::approval::votes::Directory,
}

/// Limits across all rules (rules carry their own).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// At most N incidents act per period, whatever rule: `N/DURATION`.
    #[serde(default, deserialize_with = "rate")]
    pub global: Option<crate::rules::model::Rate>,
    /// At most N failovers (plans with a step in another region than the
    /// incident's own) per period, whatever rule: `N/DURATION`.
    #[serde(default, deserialize_with = "rate")]
    pub failovers: Option<crate::rules::model::Rate>,
    /// After a failover of a target ran, another failover of the same
    /// target waits this long.
    #[serde(default, with = "crate::primitives::duration::optional")]
    pub failover_cooldown: Option<Duration>,
}

fn rate<'de, D: Deserializer<'de>>(d: D) -> Result<Option<crate::rules::model::Rate>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|s| crate::rules::model::Rate::parse(&s).map_err(serde::de::Error::custom))
        .transpose()
}

/// The operator API (reload; approvals when Slack is down).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Bearer token for `/-/reload` and the approval API; separate from the
    /// webhook token so that a leaked Alertmanager secret cannot approve.
    /// Without it those endpoints answer 403.
    /// The token, or its digest (`sha256:…`); only the digest is kept.
    #[serde(default)]
    pub admin_token: Option<TokenDigest>,
    /// When the admin token stops working (RFC 3339), if it should.
    #[serde(default)]
    pub admin_token_expires: Option<chrono::DateTime<chrono::Utc>>,
    /// Per-person tokens: a vote with one is that person's vote. The admin
    /// token still votes, but as break-glass (once per incident, never the
    /// second person of a two-person approval).
    #[serde(default)]
    pub users: Vec<crate::http::config::ApiUser>,
    /// Bearer tokens that may read incidents (`/api/v1/incidents…`) and the
    /// detailed `/readyz`. Without any (and without an admin token) the
    /// incident API answers 403. Tokens or digests, like the others; a
    /// read token that should expire is an `api.users` entry with the
    /// `viewer` role and `expires`.
    #[serde(default)]
    pub read_tokens: Vec<TokenDigest>,
}

impl ApiConfig {
    /// The tokens, as the HTTP layer holds them.
    pub fn tokens(&self) -> crate::http::credentials::Tokens {
        crate::http::credentials::Tokens {
            admin: self.admin_token,
            admin_expires: self.admin_token_expires,
            users: self.users.clone(),
            read: self.read_tokens.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://PATH` (created if missing) or `postgres://…`.
    #[serde(default = "default_store_url")]
    pub url: String,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: default_store_url(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    /// Rule files or directories of `*.yaml` / `*.yml` files.
    #[serde(default = "default_rule_paths")]
    pub paths: Vec<PathBuf>,
    /// The service catalogue (DR matrix) that plans and rules refer to.
    #[serde(default)]
    pub catalogue: Option<PathBuf>,
    /// How often time-driven conditions (windows closing, heartbeats going
    /// silent) are evaluated.
    #[serde(default = "default_tick", with = "crate::primitives::duration")]
    pub evaluation_interval: Duration,
    /// How long an incident of a scenario that a larger one could absorb
    /// waits before it acts, unless its rule sets `hold` (see docs/rules.md,
    /// "Precedence and holds": the trade-off of time-to-action against a
    /// small incident acting inside a large one).
    #[serde(default = "default_hold", with = "crate::primitives::duration")]
    pub default_hold: Duration,
    /// Reload when a rule file or the catalogue changes.
    #[serde(default = "default_true")]
    pub watch: bool,
    /// A firing signal not re-sent for this long expires from the engine.
    #[serde(default = "default_signal_ttl", with = "crate::primitives::duration")]
    pub signal_ttl: Duration,
    #[serde(default = "default_max_groups")]
    pub max_groups_per_rule: usize,
    #[serde(default = "default_max_members")]
    pub max_members_per_group: usize,
}

impl RulesConfig {
    pub fn engine_limits(&self) -> EngineLimits {
        EngineLimits {
            signal_ttl: self.signal_ttl,
            max_groups_per_rule: self.max_groups_per_rule,
            max_members_per_group: self.max_members_per_group,
        }
    }
}

fn default_signal_ttl() -> Duration {
    EngineLimits::default().signal_ttl
}
fn default_max_groups() -> usize {
    EngineLimits::default().max_groups_per_rule
}
fn default_max_members() -> usize {
    EngineLimits::default().max_members_per_group
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            paths: default_rule_paths(),
            catalogue: None,
            evaluation_interval: default_tick(),
            default_hold: default_hold(),
            watch: true,
            signal_ttl: default_signal_ttl(),
            max_groups_per_rule: default_max_groups(),
            max_members_per_group: default_max_members(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatchConfig {
    /// Global dry-run: everything but the AWS call. On by default so that a
    /// fresh install cannot fail anything over.
    #[serde(default = "default_true")]
    pub dry_run: bool,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig { dry_run: true }
    }
}

impl Config {
    /// Reads, parses and checks a config file, then applies environment
    /// overrides. Relative paths in it are taken relative to the file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut cfg = Config::parse(&text, path)?;
        cfg.path = Some(path.to_owned());
        let base = path.parent().unwrap_or(Path::new("."));
        for p in cfg
            .rules
            .paths
            .iter_mut()
            .chain(cfg.rules.catalogue.as_mut())
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        cfg.store.url = resolve_sqlite_path(&cfg.store.url, base);
        if let Some(f) = cfg.audit.file.as_mut().filter(|f| f.is_relative()) {
            *f = base.join(&*f);
        }
        if let Some(f) = cfg.silences.file.as_mut().filter(|f| f.is_relative()) {
            *f = base.join(&*f);
        }
        Ok(cfg)
    }

    /// Parses config text; `path` only names the source in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut cfg: Config =
            crate::primitives::yaml::from_str(text).map_err(|e| yaml_error(path, e))?;
        if let Ok(token) = std::env::var(ENV_WEBHOOK_TOKEN) {
            cfg.webhook.auth.bearer_token = Some(Secret::new(token));
        }
        if let Ok(url) = std::env::var(ENV_STORE_URL) {
            cfg.store.url = url;
        }
        if let Ok(token) = std::env::var(ENV_ADMIN_TOKEN) {
            cfg.api.admin_token = Some(TokenDigest::from(&Secret::new(token)));
        }
        if let Ok(token) = std::env::var(ENV_READ_TOKEN) {
            cfg.api
                .read_tokens
                .push(TokenDigest::from(&Secret::new(token)));
        }
        if let (Ok(password), Some(basic)) = (
            std::env::var(ENV_WEBHOOK_PASSWORD),
            cfg.webhook.auth.basic.as_mut(),
        ) {
            basic.password = Secret::new(password);
        }
        cfg.check().map_err(|message| ConfigError::Semantic {
            path: path.to_owned(),
            message,
        })?;
        Ok(cfg)
    }

    fn check(&self) -> Result<(), String> {
        let auth = &self.webhook.auth;
        if auth.bearer_token.is_none() && auth.basic.is_none() && !auth.insecure_no_auth {
            return Err(format!(
                "webhook.auth: set bearer_token (or {ENV_WEBHOOK_TOKEN}) or basic; \
                 to accept unauthenticated webhooks say insecure_no_auth: true"
            ));
        }
        if let (Some(admin), Some(hook)) = (&self.api.admin_token, &self.webhook.auth.bearer_token)
            && *admin == TokenDigest::from(hook)
        {
            return Err("api.admin_token: must differ from webhook.auth.bearer_token".into());
        }
        self.check_api_users()?;
        if let Some(hook) = &self.webhook.auth.bearer_token
            && self.api.read_tokens.contains(&TokenDigest::from(hook))
        {
            return Err("api.read_tokens: must differ from webhook.auth.bearer_token".into());
        }
        self.server.check()?;
        self.console.check()?;
        if self.webhook.max_body_bytes == 0 {
            return Err("webhook.max_body_bytes: must be greater than 0".into());
        }
        self.intake.limits.check()?;
        if !(self.store.url.starts_with("sqlite:") || self.store.url.starts_with("postgres")) {
            return Err(format!(
                "store.url: {:?} is neither sqlite://PATH nor postgres://…",
                self.store.url
            ));
        }
        if self.ha.lease_ttl < Duration::from_secs(1) {
            return Err(
                "ha.lease_ttl: must be at least 1s (it is renewed every third of it)".into(),
            );
        }
        for (key, keep) in [
            ("retention.incidents", self.retention.incidents),
            ("retention.signals", self.retention.signals),
        ] {
            if keep < Duration::from_secs(24 * 3600) {
                return Err(format!(
                    "{key}: must be at least 1d (it deletes the store's own record)"
                ));
            }
        }
        if self.rules.default_hold > crate::rules::model::MAX_HOLD {
            return Err(format!(
                "rules.default_hold: must be at most {}: every second of it delays recovery",
                humantime::format_duration(crate::rules::model::MAX_HOLD)
            ));
        }
        if self.readiness.interval.is_zero() {
            return Err("readiness.interval: must be greater than 0".into());
        }
        if self.rules.evaluation_interval.is_zero() {
            return Err("rules.evaluation_interval: must be greater than 0".into());
        }
        // Timers add these to the clock; a typo like 300000y would
        // overflow it and panic.
        if self.rules.evaluation_interval > Duration::from_secs(3600) {
            return Err("rules.evaluation_interval: must be at most 1h".into());
        }
        // Shorter than Alertmanager's repeat_interval, live alerts would
        // expire between re-sends.
        if !(Duration::from_secs(60)..=crate::primitives::duration::MAX_RULE_DURATION)
            .contains(&self.rules.signal_ttl)
        {
            return Err("rules.signal_ttl: must be from 1m to 30d (and longer than Alertmanager's repeat_interval)".into());
        }
        if self.rules.max_groups_per_rule == 0 || self.rules.max_members_per_group == 0 {
            return Err(
                "rules.max_groups_per_rule, rules.max_members_per_group: must be greater than 0"
                    .into(),
            );
        }
        if self.ha.lease_ttl > Duration::from_secs(600) {
            return Err(
                "ha.lease_ttl: must be at most 10m (a dead leader holds on that long)".into(),
            );
        }
        if self.failback.healthy_for > crate::primitives::duration::MAX_RULE_DURATION {
            return Err("failback.healthy_for: must be at most 30d".into());
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(24 * 3600))
            .contains(&self.failback.heartbeat_timeout)
        {
            return Err("failback.heartbeat_timeout: must be from 1s to 24h".into());
        }
        if let Some(s3) = &self.reports.s3 {
            s3.check()?;
        }
        if let Some(kafka) = &self.kafka {
            kafka.check()?;
        }
        Ok(())
    }
}

impl Config {
    /// Every credential names one identity: a token shared by two users, or
    /// by a user and the admin or webhook, would make one secret two people.
    fn check_api_users(&self) -> Result<(), String> {
        let mut ids = std::collections::HashSet::new();
        let mut tokens: Vec<(&str, TokenDigest)> = Vec::new();
        if let Some(t) = self.api.admin_token {
            tokens.push(("api.admin_token", t));
        }
        if let Some(t) = &self.webhook.auth.bearer_token {
            tokens.push(("webhook.auth.bearer_token", TokenDigest::from(t)));
        }
        for t in &self.api.read_tokens {
            tokens.push(("one of api.read_tokens", *t));
        }
        for u in &self.api.users {
            if u.id.trim().is_empty() {
                return Err("api.users: id must not be empty".into());
            }
            if !ids.insert(u.id.as_str()) {
                return Err(format!("api.users: {} is listed twice", u.id));
            }
            if let Some((other, _)) = tokens.iter().find(|(_, t)| *t == u.token) {
                return Err(format!(
                    "api.users: the token of {} is also {other}; each needs its own",
                    u.id
                ));
            }
            tokens.push(("another user's token", u.token));
        }
        Ok(())
    }
}

/// Turns a YAML error into `file:line:column: message`.
fn yaml_error(path: &Path, e: crate::primitives::yaml::YamlError) -> ConfigError {
    ConfigError::Invalid {
        path: path.to_owned(),
        line: e.line,
        column: e.column,
        message: e.message,
    }
}

fn resolve_sqlite_path(url: &str, base: &Path) -> String {
    match url.strip_prefix("sqlite://") {
        Some(rest) if !rest.starts_with('/') && !rest.starts_with(':') => {
            format!("sqlite://{}", base.join(rest).display())
        }
        _ => url.to_owned(),
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9099))
}
fn default_store_url() -> String {
    "sqlite://dr-reactor.db".into()
}
fn default_rule_paths() -> Vec<PathBuf> {
    vec![PathBuf::from("rules")]
}
fn default_hold() -> Duration {
    crate::rules::model::DEFAULT_HOLD
}
fn default_tick() -> Duration {
    Duration::from_secs(1)
}
fn default_true() -> bool {
    true
}

#[cfg(test)]
mod kafka_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("cfg.yaml")).map_err(|e| e.to_string())
    }

    #[test]
    fn minimal_config_takes_defaults() {
        let cfg = parse("webhook:\n  auth:\n    bearer_token: t0ken\n").unwrap();
        assert_eq!(cfg.listen.port(), 9099);
        assert!(cfg.dispatch.dry_run);
        assert_eq!(cfg.webhook.auth.bearer_token.unwrap().expose(), "t0ken");
    }

    #[test]
    fn unknown_key_is_named_with_position() {
        let err = parse("webhook:\n  auth:\n    bearer_token: x\n  max_body: 10\n").unwrap_err();
        assert!(err.starts_with("cfg.yaml:4:3: "), "{err}");
        assert!(err.contains("max_body"), "{err}");
    }

    #[test]
    fn missing_auth_is_refused() {
        let err = parse("webhook:\n  auth: {}\n").unwrap_err();
        assert!(err.contains("webhook.auth"), "{err}");
    }

    #[test]
    fn secret_from_missing_env_names_variable() {
        let err = parse("webhook:\n  auth:\n    bearer_token: {env: DR_REACTOR_TEST_UNSET_VAR}\n")
            .unwrap_err();
        assert!(err.contains("DR_REACTOR_TEST_UNSET_VAR"), "{err}");
        assert!(err.starts_with("cfg.yaml:3:"), "{err}");
    }

    #[test]
    fn api_users_need_their_own_tokens() {
        let base =
            "webhook:\n  auth:\n    bearer_token: hook\napi:\n  admin_token: adm\n  users:\n";
        let cfg = parse(&format!(
            "{base}    - {{id: U1ALICE, token: a}}\n    - {{id: U2BOB, token: b}}\n"
        ))
        .unwrap();
        assert_eq!(cfg.api.users.len(), 2);
        assert_eq!(cfg.api.users[1].id, "U2BOB");
        for (users, want) in [
            (
                "    - {id: A, token: a}\n    - {id: B, token: a}\n",
                "also another user's token",
            ),
            ("    - {id: A, token: adm}\n", "also api.admin_token"),
            (
                "    - {id: A, token: hook}\n",
                "also webhook.auth.bearer_token",
            ),
            (
                "    - {id: A, token: a}\n    - {id: A, token: b}\n",
                "A is listed twice",
            ),
        ] {
            let err = parse(&format!("{base}{users}")).unwrap_err();
            assert!(err.contains(want), "{err}");
        }
    }

    #[test]
    fn lease_shorter_than_a_second_is_refused() {
        let err = parse("webhook:\n  auth:\n    insecure_no_auth: true\nha:\n  lease_ttl: 500ms\n")
            .unwrap_err();
        assert!(err.contains("ha.lease_ttl: must be at least 1s"), "{err}");
        let cfg = parse("webhook:\n  auth:\n    insecure_no_auth: true\n").unwrap();
        assert_eq!(cfg.ha.lease_ttl, Duration::from_secs(10));
    }

    #[test]
    fn readiness_interval_defaults_to_30m_and_must_be_positive() {
        let cfg = parse("webhook:\n  auth:\n    insecure_no_auth: true\n").unwrap();
        assert_eq!(cfg.readiness.interval, Duration::from_secs(30 * 60));
        let cfg =
            parse("webhook:\n  auth:\n    insecure_no_auth: true\nreadiness:\n  interval: 5m\n")
                .unwrap();
        assert_eq!(cfg.readiness.interval, Duration::from_secs(300));
        let err =
            parse("webhook:\n  auth:\n    insecure_no_auth: true\nreadiness:\n  interval: 0s\n")
                .unwrap_err();
        assert!(
            err.contains("readiness.interval: must be greater than 0"),
            "{err}"
        );
        let err = parse("webhook:\n  auth:\n    insecure_no_auth: true\nreadiness:\n  every: 5m\n")
            .unwrap_err();
        assert!(err.contains("every"), "{err}");
    }

    #[test]
    fn bad_duration_is_explained() {
        let err = parse(
            "webhook:\n  auth:\n    insecure_no_auth: true\nrules:\n  evaluation_interval: soon\n",
        )
        .unwrap_err();
        assert!(err.contains("invalid duration \"soon\""), "{err}");
        assert!(err.starts_with("cfg.yaml:5:"), "{err}");
    }

    #[test]
    fn retention_defaults_and_minimum() {
        let base = "webhook:\n  auth:\n    insecure_no_auth: true\n";
        let cfg = parse(base).unwrap();
        assert_eq!(cfg.retention.signals, Duration::from_secs(30 * 24 * 3600));
        let err = parse(&format!("{base}retention:\n  signals: 1h\n")).unwrap_err();
        assert!(
            err.contains("retention.signals: must be at least 1d"),
            "{err}"
        );
    }
}
