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
//! - [`config`]: the strict config file; secrets that never print.
//! - [`signal`]: the normalised [`signal::Signal`] every source produces.
//! - [`sources`]: senders' payloads → signals (Alertmanager webhook, Kafka
//!   consumer with dead-letter topic).
//! - [`rules`]: rule files, matchers, and the pure correlation
//!   [`rules::Engine`] (signals in, decisions out, time injected).
//! - [`approval`]: who may approve, vote counting, the approver directory.
//! - [`catalogue`]: the service catalogue (DR matrix) and recovery order.
//! - [`incident`]: the incident model, its lifecycle, and
//!   [`incident::Incidents`], which applies decisions and is the only place
//!   state changes.
//! - [`guard`]: rate limits (governor, on incident time) and concurrency.
//! - [`plan`]: recovery plans and their idempotency keys.
//! - [`dispatch`]: running plan steps on SSM Automation and Lambda, with
//!   retries and per-region clients.
//! - [`leadership`]: the leader lease and fencing token among replicas on
//!   PostgreSQL; only the leader correlates and dispatches.
//! - [`reload`]: hot reload of rules (file change, SIGHUP, `POST /-/reload`).
//! - [`simulate`]: rules on a virtual clock over an in-memory store, for
//!   `dr-reactor test` and `replay`.
//! - [`store`]: SQLite/PostgreSQL persistence and the incident event log.
//! - [`telemetry`]: logging and the metrics registry.
//! - [`http`]: routes and the error → response mapping.
//! - [`app`]: wiring and ordered shutdown; `app::run` is the whole service,
//!   which tests run in-process on port 0.

pub mod app;
pub mod approval;
pub mod catalogue;
pub mod config;
pub mod dispatch;
pub mod guard;
pub mod http;
pub mod incident;
pub mod leadership;
pub mod pipeline;
pub mod plan;
pub mod primitives;
pub mod reload;
pub mod replay;
pub mod rules;
pub mod rulestest;
pub mod signal;
pub mod simulate;
pub mod sources;
pub mod store;
pub mod telemetry;
