//! dr-reactor: disaster-recovery runbooks as code.
//!
//! ```text
//! Alertmanager webhook ─┐
//! Kafka events ─────────┼─▶ signals ─▶ rules ─▶ incident ─▶ guard ─▶ dispatch ─▶ SSM / Lambda
//! heartbeat absence ────┘  (recorded)  (correlate) (plan, lifecycle)        (audit, metrics)
//! ```
//!
//! Data flows one way. Each stage has one entry type and can be tested alone.
//!
//! # Layout
//!
//! Listed from the leaves to the root. No file imports a file that imports
//! it back. One folder spans two layers on purpose: `incident/mod.rs` (the
//! model and lifecycle) sits below [`store`], which persists it, while the
//! `Incidents` service beside it sits above.
//!
//! - [`primitives`]: leaf primitives every stage shares (secrets that never
//!   print, durations and their bounds, store keys bounded by digest, the
//!   supervisor that restarts long-lived tasks after a panic, YAML error
//!   positions); imports nothing of the crate.
//! - [`signal`]: the normalised [`signal::Signal`] every source produces.
//! - [`plan`]: recovery plans, their steps and idempotency keys.
//! - [`rules`]: the rule file format (`spec`), step templates (`step`), the
//!   compiled rules (`model`), matchers, CEL, plans from the catalogue
//!   (`plan`), silences and their file (`silence`), and the pure correlation [`rules::Engine`] (`engine/`:
//!   groups, tallies, precedence; signals in, decisions out, time injected).
//! - [`catalogue`]: the service catalogue (DR matrix) and recovery order.
//! - [`store`]: SQLite/PostgreSQL persistence, one file per aggregate
//!   (signals, incidents, events, audit file, lease and fence, signal log,
//!   Slack signatures seen, silences).
//! - [`approval`]: who may approve, vote counting, whether the evidence
//!   still holds, the approver directory, Slack messages (escaped and
//!   within Slack's limits: `mrkdwn`) and callbacks.
//! - [`guard`]: rate limits (GCRA, on incident time) and concurrency.
//! - [`access`]: who may do what: roles and the one decision every
//!   operator action goes through, whichever path asks.
//! - [`incident`]: the incident model and lifecycle, and
//!   [`incident::Incidents`], the only place state changes, split by job
//!   (decide, admission, approval, evidence, expiry, abort, retry, declare,
//!   silence, release of absorbed incidents, the dispatch kill switch).
//! - [`leadership`]: the leader lease and fencing token among replicas on
//!   PostgreSQL; only the leader correlates and dispatches.
//! - [`dispatch`]: running plan steps on SSM Automation and Lambda, with
//!   retries and per-region clients, and the plan runner.
//! - [`readiness`]: runbook readiness: every document and function the
//!   rules can call, checked per region (DescribeDocument, GetFunction)
//!   by the leader; the latest report (`board`) sits below [`incident`],
//!   which reads it when planning, the checker (`task`) above [`dispatch`].
//! - [`sources`]: senders' payloads → signals (Alertmanager webhook; Kafka
//!   consumer with one file per format under `kafka/formats/` and a
//!   dead-letter topic), each held to the intake limits (`limits`).
//! - [`reload`]: hot reload of rules (file change, SIGHUP, `POST /-/reload`).
//! - [`telemetry`]: logging (and its config) and the metrics registry.
//! - [`simulate`], [`rulestest`], [`replay`]: rules on a virtual clock over
//!   an in-memory store, for `dr-reactor test` and `replay`.
//! - [`drill`]: drills (game days): the synthetic signal set that makes a
//!   rule hold, derived from the rule and the catalogue and checked on a
//!   scratch engine; marked with the reserved drill label end to end.
//! - [`report`]: recovery reports of finished incidents and drills (a pure
//!   function of the stored incident, its events and the catalogue; JSON
//!   and Markdown), and their archive and histograms.
//! - [`scaffold`]: `dr-reactor init`, a new rules repository from the
//!   shipped rules, catalogue, rule tests, traces and schemas (embedded
//!   from this repository's own files) plus its CI workflows, cut down to
//!   some scenarios on request and checked with the real loaders.
//! - [`pipeline`]: the one task that feeds signals to the engine and applies
//!   decisions; a leader's term (engine, fenced incidents, runner).
//! - [`http`]: [`http::AppState`], the route table (`routes`: one line per
//!   route, from which both the router and the OpenAPI document are
//!   built), authentication, the error → response mapping, and the server
//!   with its timeouts and limits.
//! - [`config`]: the strict config file; composes each stage's own config.
//! - [`app`]: wiring and ordered shutdown; `app::run` is the whole service,
//!   which tests run in-process on port 0.
//!
//! Outside `src/`, beside the crate: `rules/` and `config/` (what ships and
//! what `init` scaffolds), `schema/`, `migrations/`, `tests/` (with
//! `tests/support/`: fake Slack, fake AWS, the server on port 0),
//! `benches/`, `fuzz/`, `deploy/`. `docs/architecture.md` draws the
//! stages with their files and says where a new source, scenario, runbook
//! or check goes.
//!
//! ## Being added
//!
//! Parts other branches are adding this round; each line starts with
//! "Being added" so they are easy to find and to move into the list above
//! when they land:
//!
//! - Being added: the runbook library, `runbooks/` (outside the crate): the
//!   SSM Automation documents and Python Lambda functions the catalogue
//!   calls, one file per runbook with its test beside it, tested against
//!   moto. The crate calls them only by name, through [`dispatch`], and
//!   checks them through [`readiness`].
//! - Being added: the AWS stack, `deploy/aws/` (outside the crate), and a
//!   `dr-reactor iam` command in the binary's `cli/`.
//! - Being added: a kill switch and a shadow mode for incidents, in
//!   [`incident`].

pub mod access;
pub mod app;
pub mod approval;
pub mod catalogue;
pub mod config;
pub mod dispatch;
pub mod drill;
pub mod guard;
pub mod http;
pub mod incident;
pub mod leadership;
pub mod pipeline;
pub mod plan;
pub mod primitives;
pub mod readiness;
pub mod reload;
pub mod replay;
pub mod report;
pub mod rules;
pub mod rulestest;
pub mod scaffold;
pub mod signal;
pub mod simulate;
pub mod sources;
pub mod store;
pub mod telemetry;
