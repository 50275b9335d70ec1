//! Persistent state: signals, incidents, their signals, and the append-only
//! incident event log.
//!
//! One implementation serves SQLite (the embedded default) and PostgreSQL
//! through sqlx's `Any` driver. The SQL is written in the subset both speak
//! (`$n` placeholders, `ON CONFLICT`, `RETURNING`, partial unique indexes);
//! times are epoch milliseconds and structured values JSON text, so no type
//! mapping differs between the two.
//!
//! Layout, by aggregate: `connect` (pools, migrations), `signals` (recording
//! signals in batches), `signal_log` (their feed to a leader elsewhere),
//! `incidents`, `events` (the event log and signal links), `lease` (the
//! leader lease and fenced writes), `slack_seen` (Slack signatures seen, for
//! replay protection), `silences` (those made through the API),
//! `shared` (intake's group commit, and the evidence written in it), `checkpoint`
//! (SQLite's WAL, copied back off the writer) and `audit` (the JSON-lines
//! file).

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use sqlx::AnyPool;

use crate::incident::State;

mod audit;
mod checkpoint;
mod connect;
mod events;
mod incidents;
mod lease;
mod multirow;
mod retention;
mod sessions;
mod shared;
mod signal_log;
mod signals;
mod silences;
mod slack_seen;
mod switch;

pub use incidents::{IncidentFilter, Opened};
pub use lease::{Fence, Lease};
pub use retention::{PRUNE_BATCH, Pruned, RetentionConfig};
pub use sessions::ConsoleSession;
pub use shared::{Evidence, EvidenceJob, EvidenceQueue, GroupCommit};
pub use signals::{ExactLastSeen, LAST_SEEN_RESOLUTION};
pub use switch::KillSwitch;

use audit::AuditFile;
use connect::WriterWaits;
use shared::SharedWrites;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store: {0}")]
    Db(#[from] sqlx::Error),
    #[error("store migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("store: corrupt row in {table}: {detail}")]
    Corrupt { table: &'static str, detail: String },
    #[error("incident {id} changed concurrently (expected version {expected})")]
    Conflict { id: String, expected: i64 },
    #[error("not the leader any more: lease token {token} of {holder} was taken over")]
    Fenced { holder: String, token: i64 },
}

impl StoreError {
    /// Whether trying again later may succeed: the connection broke, the
    /// pool had none free, or the server is restarting, failing over or
    /// out of resources. Not a conflict, a fence or bad data.
    pub fn is_transient(&self) -> bool {
        let StoreError::Db(e) = self else {
            return false;
        };
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::WorkerCrashed => true,
            // SQLSTATE classes 08 (connection exception), 57 (operator
            // intervention: shutdown, restart), 53 (insufficient resources),
            // 40 (transaction rollback: serialization, deadlock).
            sqlx::Error::Database(db) => db
                .code()
                .is_some_and(|c| ["08", "57", "53", "40"].iter().any(|p| c.starts_with(p))),
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    /// Where write transactions run. On a SQLite file: a pool of one
    /// connection, so writers queue fairly in the pool instead of meeting on
    /// SQLite's file lock, whose busy handler sleeps 1, 2, 5 … 100 ms between
    /// retries (under concurrent webhooks that sleeping, not the work, made
    /// the latency). Otherwise the same pool.
    writer: AnyPool,
    backend: Backend,
    /// A SQLite file (not the in-memory database, not PostgreSQL): it has
    /// a WAL, checkpointed off the writer.
    wal: bool,
    audit: Option<Arc<AuditFile>>,
    /// Set on the leader's handle: every write transaction first proves the
    /// lease is still this token's.
    fence: Option<Arc<Fence>>,
    /// Woken after signals are appended to the signal log (by this process,
    /// or by another replica through PostgreSQL's NOTIFY), so a leader here
    /// reads them at once instead of at its next poll.
    log_written: Arc<tokio::sync::Notify>,
    /// PostgreSQL's URL, for the LISTEN connection (it carries the password:
    /// `Store` has no `Debug`).
    listen_url: Option<Arc<str>>,
    /// Set by [`Store::share_writes`]: evidence goes to intake's group
    /// writer, to be written in its transaction.
    shared: Option<SharedWrites>,
    /// Writes waiting for `writer` (see [`Store::writer_wanted`]).
    writer_waits: WriterWaits,
}

pub fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub fn from_millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("plain data serialises")
}

fn from_json<T: serde::de::DeserializeOwned>(
    table: &'static str,
    s: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt {
        table,
        detail: e.to_string(),
    })
}

fn state_from(table: &'static str, s: &str) -> Result<State, StoreError> {
    State::parse(s).ok_or_else(|| StoreError::Corrupt {
        table,
        detail: format!("unknown state {s:?}"),
    })
}
