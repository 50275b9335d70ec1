//! Persistent state: signals, incidents, their signals, and the append-only
//! incident event log.
//!
//! One implementation serves SQLite (the embedded default) and PostgreSQL
//! through sqlx's `Any` driver. The SQL is written in the subset both speak
//! (`$n` placeholders, `ON CONFLICT`, `RETURNING`, partial unique indexes);
//! times are epoch milliseconds and structured values JSON text, so no type
//! mapping differs between the two.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use crate::incident::{EventNote, Incident, State};
use crate::plan::Plan;
use crate::signal::{Change, Labels, Signal, Status};

mod audit;
mod connect;
mod events;
mod lease;
mod signal_log;

pub use lease::{Fence, Lease};

use audit::AuditFile;
use events::insert_event;
use signal_log::SIGNAL_LOG_CHANNEL;

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
}

/// Serialises writers of the signal log on PostgreSQL, so that `seq` order
/// is commit order (a sequence value is taken at insert, not at commit).
const SIGNAL_LOG_LOCK: i64 = 0x6472_7273_6967;

/// Result of trying to open an incident for a group.
#[derive(Debug)]
pub enum Opened {
    Created(Incident),
    /// The group already has an open incident (after a restart, or on
    /// another replica): the caller attaches instead of opening twice.
    Existing(Incident),
}

pub fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub fn from_millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

impl Store {
    /// Records a batch of signals in one transaction and says, per signal,
    /// what it changed. Re-sends of firing alerts only refresh `last_seen`.
    /// On PostgreSQL each change is also appended to the signal log, for
    /// the leader's engine wherever it runs.
    ///
    /// One read for the whole batch and multi-row writes: per-row round
    /// trips, not SQL, were what a batch's time went to.
    pub async fn record_signals(&self, signals: &[Signal]) -> Result<Vec<Change>, StoreError> {
        let mut tx = self.write_tx().await?;
        if self.logs_signals() {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(SIGNAL_LOG_LOCK)
                .execute(&mut *tx)
                .await?;
        }
        let ids: Vec<String> = signals.iter().map(Signal::id).collect();
        let mut stored = stored_states(&mut tx, self.backend, &ids).await?;
        let mut writes = SignalWrites::new(self.backend);
        let mut changes = Vec::with_capacity(signals.len());
        for (s, id) in signals.iter().zip(&ids) {
            let change = classify(stored.get(id).map(|(st, at)| (st.as_str(), *at)), s);
            if change != Change::Ignored {
                writes.add(&mut tx, id, s, change).await?;
            }
            if matches!(change, Change::Fired | Change::Resolved) {
                stored.insert(
                    id.clone(),
                    (s.status.as_str().to_owned(), millis(s.starts_at)),
                );
            }
            changes.push(change);
        }
        writes.flush(&mut tx).await?;
        if writes.logged {
            // Delivered to every listener when (and only if) this commits.
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(SIGNAL_LOG_CHANNEL)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        if writes.logged {
            self.log_written.notify_one();
        }
        Ok(changes)
    }

    /// Signals still firing, or resolved since `since`, each with when it
    /// was last received: what the rule engine needs to rebuild its windows
    /// after a restart, heartbeats' last re-sends included.
    pub async fn recent_signals(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(Signal, DateTime<Utc>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT source, fingerprint, name, labels, annotations, status, starts_at, ends_at, \
             received_at, last_seen FROM signals WHERE status = 'firing' OR last_seen >= $1 \
             ORDER BY received_at",
        )
        .bind(millis(since))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((signal_from_row(r)?, from_millis(r.try_get(9)?))))
            .collect()
    }

    pub async fn signal(&self, id: &str) -> Result<Option<Signal>, StoreError> {
        let row = sqlx::query(
            "SELECT source, fingerprint, name, labels, annotations, status, starts_at, ends_at, \
             received_at FROM signals WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(signal_from_row).transpose()
    }

    /// Inserts a new incident with its first event, unless the group already
    /// has an open one (checked by a unique index, not by a racy read).
    pub async fn open_incident(
        &self,
        incident: &Incident,
        note: &EventNote,
    ) -> Result<Opened, StoreError> {
        let mut tx = self.write_tx().await?;
        let inserted = sqlx::query(
            "INSERT INTO incidents (id, rule, scenario, severity, group_key, group_labels, state, \
             parent_id, plan, detected_at, updated_at, closed_at, version, services, rto_deadline) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, NULL, 1, $11, $12) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&incident.id)
        .bind(&incident.rule)
        .bind(&incident.scenario)
        .bind(&incident.severity)
        .bind(&incident.group_key)
        .bind(to_json(&incident.group_labels))
        .bind(incident.state.as_str())
        .bind(incident.parent_id.as_deref())
        .bind(to_json(&incident.plan))
        .bind(millis(incident.detected_at))
        .bind(to_json(&incident.services))
        .bind(incident.rto_deadline.map(millis))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            tx.rollback().await?;
            let existing = self
                .open_incident_for(&incident.group_key)
                .await?
                .ok_or_else(|| StoreError::Corrupt {
                    table: "incidents",
                    detail: format!("insert of {} refused but no open incident", incident.id),
                })?;
            return Ok(Opened::Existing(existing));
        }
        let event = insert_event(
            &mut tx,
            &incident.id,
            incident.detected_at,
            None,
            Some(incident.state),
            note,
        )
        .await?;
        tx.commit().await?;
        self.audit(&event);
        let mut created = incident.clone();
        created.version = 1;
        created.updated_at = incident.detected_at;
        Ok(Opened::Created(created))
    }

    pub async fn open_incident_for(&self, group_key: &str) -> Result<Option<Incident>, StoreError> {
        let row = sqlx::query(&format!(
            "{INCIDENT_COLUMNS} WHERE group_key = $1 AND closed_at IS NULL"
        ))
        .bind(group_key)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(incident_from_row).transpose()
    }

    /// Writes `after` over `before` if nobody changed the incident since
    /// `before.version`, appending `note` (with the state change, if any) in
    /// the same transaction. Returns the incident as stored.
    pub async fn update_incident(
        &self,
        before: &Incident,
        after: &Incident,
        at: DateTime<Utc>,
        note: &EventNote,
    ) -> Result<Incident, StoreError> {
        let mut tx = self.write_tx().await?;
        let updated = sqlx::query(
            "UPDATE incidents SET state = $1, closed_at = $2, updated_at = $3, plan = $4, \
             parent_id = $5, services = $6, rto_deadline = $7, approval_deadline = $10, \
             version = version + 1 WHERE id = $8 AND version = $9",
        )
        .bind(after.state.as_str())
        .bind(after.closed_at.map(millis))
        .bind(millis(at))
        .bind(to_json(&after.plan))
        .bind(after.parent_id.as_deref())
        .bind(to_json(&after.services))
        .bind(after.rto_deadline.map(millis))
        .bind(&before.id)
        .bind(before.version)
        .bind(after.approval_deadline.map(millis))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated != 1 {
            tx.rollback().await?;
            return Err(StoreError::Conflict {
                id: before.id.clone(),
                expected: before.version,
            });
        }
        let from = (before.state != after.state).then_some(before.state);
        let event = insert_event(
            &mut tx,
            &before.id,
            at,
            from,
            from.map(|_| after.state),
            note,
        )
        .await?;
        tx.commit().await?;
        self.audit(&event);
        Ok(Incident {
            id: before.id.clone(),
            updated_at: at,
            version: before.version + 1,
            ..after.clone()
        })
    }

    pub async fn incident(&self, id: &str) -> Result<Option<Incident>, StoreError> {
        let row = sqlx::query(&format!("{INCIDENT_COLUMNS} WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(incident_from_row).transpose()
    }

    /// Newest first.
    pub async fn incidents(
        &self,
        state: Option<State>,
        limit: i64,
    ) -> Result<Vec<Incident>, StoreError> {
        let rows = match state {
            Some(st) => sqlx::query(&format!(
                "{INCIDENT_COLUMNS} WHERE state = $1 ORDER BY detected_at DESC, id DESC LIMIT $2"
            ))
            .bind(st.as_str())
            .bind(limit)
            .fetch_all(&self.pool)
            .await?,
            None => {
                sqlx::query(&format!(
                    "{INCIDENT_COLUMNS} ORDER BY detected_at DESC, id DESC LIMIT $1"
                ))
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(incident_from_row).collect()
    }

    pub async fn open_incidents(&self) -> Result<Vec<Incident>, StoreError> {
        let rows = sqlx::query(&format!(
            "{INCIDENT_COLUMNS} WHERE closed_at IS NULL ORDER BY detected_at"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(incident_from_row).collect()
    }

    pub async fn incident_signals(&self, incident_id: &str) -> Result<Vec<Signal>, StoreError> {
        let rows = sqlx::query(
            "SELECT s.source, s.fingerprint, s.name, s.labels, s.annotations, s.status, \
             s.starts_at, s.ends_at, s.received_at FROM incident_signals i \
             JOIN signals s ON s.id = i.signal_id WHERE i.incident_id = $1 \
             ORDER BY i.attached_at, s.id",
        )
        .bind(incident_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(signal_from_row).collect()
    }

    /// Incidents in any of these states, oldest first.
    pub async fn incidents_in(&self, states: &[State]) -> Result<Vec<Incident>, StoreError> {
        let list: Vec<String> = states.iter().map(|s| format!("'{}'", s.as_str())).collect();
        let rows = sqlx::query(&format!(
            "{INCIDENT_COLUMNS} WHERE state IN ({}) ORDER BY detected_at",
            list.join(", ")
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(incident_from_row).collect()
    }

    /// Incidents awaiting approval whose deadline has passed.
    pub async fn approvals_due(&self, now: DateTime<Utc>) -> Result<Vec<Incident>, StoreError> {
        let rows = sqlx::query(&format!(
            "{INCIDENT_COLUMNS} WHERE state = 'awaiting_approval' AND approval_deadline <= $1 \
             ORDER BY approval_deadline"
        ))
        .bind(millis(now))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(incident_from_row).collect()
    }

    /// Incidents of a rule that are approved or running.
    pub async fn active_count(&self, rule: &str) -> Result<usize, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) FROM incidents WHERE rule = $1 AND state IN ('approved', 'running')",
        )
        .bind(rule)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get::<i64, _>(0)? as usize)
    }

    /// Number of open incidents per scenario, for the gauge after restart.
    pub async fn open_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT scenario, COUNT(*) FROM incidents WHERE closed_at IS NULL GROUP BY scenario",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }
}

/// Rows per multi-row statement: far below both backends' limits on bound
/// parameters (11 per row), large enough that round trips stop mattering.
const ROWS_PER_STATEMENT: usize = 100;

/// The `n`-th (from 1) of a statement's bound parameters. SQLite gets
/// anonymous `?`: it finds a numbered parameter's name by a linear scan, and
/// sqlx asks for every parameter's name, which made a statement of a
/// thousand parameters cost a million steps.
fn placeholder(backend: Backend, n: usize) -> String {
    match backend {
        Backend::Sqlite => "?".to_owned(),
        Backend::Postgres => format!("${n}"),
    }
}

/// `(…)` groups of `width` placeholders, one per row, each followed by
/// `fixed` (literal columns).
fn placeholder_rows(backend: Backend, rows: usize, width: usize, fixed: &str) -> String {
    (0..rows)
        .map(|r| {
            let cols: Vec<String> = (1..=width)
                .map(|c| placeholder(backend, r * width + c))
                .collect();
            format!("({}{fixed})", cols.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The stored status and start of every signal of `ids` that exists.
async fn stored_states(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    backend: Backend,
    ids: &[String],
) -> Result<std::collections::HashMap<String, (String, i64)>, StoreError> {
    let mut unique: Vec<&str> = ids.iter().map(String::as_str).collect();
    unique.sort_unstable();
    unique.dedup();
    let mut stored = std::collections::HashMap::with_capacity(unique.len());
    for chunk in unique.chunks(ROWS_PER_STATEMENT * 5) {
        let list: Vec<String> = (1..=chunk.len()).map(|i| placeholder(backend, i)).collect();
        let sql = format!(
            "SELECT id, status, starts_at FROM signals WHERE id IN ({})",
            list.join(", ")
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(*id);
        }
        for row in q.fetch_all(&mut **tx).await? {
            stored.insert(row.try_get(0)?, (row.try_get(1)?, row.try_get(2)?));
        }
    }
    Ok(stored)
}

/// Signal writes of one batch, gathered into multi-row statements. A signal
/// met twice in a batch flushes what is pending first, so every statement
/// touches a row at most once and the writes land in batch order.
struct SignalWrites<'a> {
    backend: Backend,
    log: bool,
    logged: bool,
    pending: std::collections::HashSet<&'a str>,
    refreshed: Vec<(&'a str, &'a Signal)>,
    changed: Vec<(&'a str, &'a Signal)>,
    log_rows: Vec<(Change, &'a Signal)>,
}

impl<'a> SignalWrites<'a> {
    fn new(backend: Backend) -> Self {
        SignalWrites {
            backend,
            // The signal log feeds a leader on another replica: PostgreSQL.
            log: backend == Backend::Postgres,
            logged: false,
            pending: Default::default(),
            refreshed: Vec::new(),
            changed: Vec::new(),
            log_rows: Vec::new(),
        }
    }

    async fn add(
        &mut self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        id: &'a str,
        s: &'a Signal,
        change: Change,
    ) -> Result<(), StoreError> {
        if self.pending.contains(id)
            || self.refreshed.len().max(self.changed.len()) >= ROWS_PER_STATEMENT
        {
            self.flush(tx).await?;
        }
        self.pending.insert(id);
        match change {
            Change::Refreshed => self.refreshed.push((id, s)),
            _ => self.changed.push((id, s)),
        }
        if self.log {
            self.log_rows.push((change, s));
        }
        Ok(())
    }

    async fn flush(
        &mut self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    ) -> Result<(), StoreError> {
        self.pending.clear();
        if !self.refreshed.is_empty() {
            let sql = format!(
                "UPDATE signals SET last_seen = v.column2, annotations = v.column3 \
                 FROM (VALUES {}) AS v WHERE signals.id = v.column1",
                placeholder_rows(self.backend, self.refreshed.len(), 3, "")
            );
            let mut q = sqlx::query(&sql);
            for (id, s) in self.refreshed.drain(..) {
                q = q
                    .bind(id)
                    .bind(millis(s.received_at))
                    .bind(to_json(&s.annotations));
            }
            q.execute(&mut **tx).await?;
        }
        if !self.changed.is_empty() {
            let sql = format!(
                "INSERT INTO signals (id, source, fingerprint, name, labels, annotations, \
                 status, starts_at, ends_at, received_at, last_seen, episodes) VALUES {} \
                 ON CONFLICT (id) DO UPDATE SET labels = excluded.labels, \
                 annotations = excluded.annotations, status = excluded.status, \
                 starts_at = excluded.starts_at, ends_at = excluded.ends_at, \
                 received_at = CASE WHEN excluded.status = 'firing' \
                 THEN excluded.received_at ELSE signals.received_at END, \
                 last_seen = excluded.last_seen, \
                 episodes = signals.episodes + \
                 CASE WHEN excluded.status = 'firing' THEN 1 ELSE 0 END",
                placeholder_rows(self.backend, self.changed.len(), 11, ", 1")
            );
            let mut q = sqlx::query(&sql);
            for (id, s) in self.changed.drain(..) {
                let now = millis(s.received_at);
                let ends = s
                    .ends_at
                    .map(millis)
                    .or((s.status == Status::Resolved).then_some(now));
                q = q
                    .bind(id)
                    .bind(&s.source)
                    .bind(&s.fingerprint)
                    .bind(&s.name)
                    .bind(to_json(&s.labels))
                    .bind(to_json(&s.annotations))
                    .bind(s.status.as_str())
                    .bind(millis(s.starts_at))
                    .bind(ends)
                    .bind(now)
                    .bind(now);
            }
            q.execute(&mut **tx).await?;
        }
        if !self.log_rows.is_empty() {
            let sql = format!(
                "INSERT INTO signal_log (change, signal, at) VALUES {}",
                placeholder_rows(self.backend, self.log_rows.len(), 3, "")
            );
            let mut q = sqlx::query(&sql);
            for (change, s) in self.log_rows.drain(..) {
                q = q
                    .bind(change.as_str())
                    .bind(to_json(s))
                    .bind(millis(s.received_at));
            }
            q.execute(&mut **tx).await?;
            self.logged = true;
        }
        Ok(())
    }
}

/// Decides what a received signal changes, given the stored status and
/// start of the same signal.
fn classify(prev: Option<(&str, i64)>, s: &Signal) -> Change {
    match (prev, s.status) {
        (None, Status::Firing) => Change::Fired,
        (None, Status::Resolved) => Change::Ignored,
        (Some(("firing", _)), Status::Firing) => Change::Refreshed,
        (Some(("firing", _)), Status::Resolved) => Change::Resolved,
        // A firing re-send of the episode that already resolved arrived late:
        // the same start time means the same episode.
        (Some((_, starts)), Status::Firing) if starts == millis(s.starts_at) => Change::Ignored,
        (Some(_), Status::Firing) => Change::Fired,
        (Some(_), Status::Resolved) => Change::Ignored,
    }
}

const INCIDENT_COLUMNS: &str = "SELECT id, rule, scenario, severity, group_key, group_labels, \
     state, parent_id, plan, detected_at, updated_at, closed_at, version, services, rto_deadline, \
     approval_deadline FROM incidents";

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

fn signal_from_row(r: &AnyRow) -> Result<Signal, StoreError> {
    let status: String = r.try_get(5)?;
    Ok(Signal {
        source: r.try_get(0)?,
        fingerprint: r.try_get(1)?,
        name: r.try_get(2)?,
        labels: from_json::<Labels>("signals", &r.try_get::<String, _>(3)?)?,
        annotations: from_json::<Labels>("signals", &r.try_get::<String, _>(4)?)?,
        status: Status::parse(&status).ok_or_else(|| StoreError::Corrupt {
            table: "signals",
            detail: format!("unknown status {status:?}"),
        })?,
        starts_at: from_millis(r.try_get(6)?),
        ends_at: r.try_get::<Option<i64>, _>(7)?.map(from_millis),
        received_at: from_millis(r.try_get(8)?),
    })
}

fn incident_from_row(r: &AnyRow) -> Result<Incident, StoreError> {
    Ok(Incident {
        id: r.try_get(0)?,
        rule: r.try_get(1)?,
        scenario: r.try_get(2)?,
        severity: r.try_get(3)?,
        group_key: r.try_get(4)?,
        group_labels: from_json("incidents", &r.try_get::<String, _>(5)?)?,
        state: state_from("incidents", &r.try_get::<String, _>(6)?)?,
        parent_id: r.try_get(7)?,
        plan: from_json::<Plan>("incidents", &r.try_get::<String, _>(8)?)?,
        detected_at: from_millis(r.try_get(9)?),
        updated_at: from_millis(r.try_get(10)?),
        closed_at: r.try_get::<Option<i64>, _>(11)?.map(from_millis),
        version: r.try_get(12)?,
        services: from_json("incidents", &r.try_get::<String, _>(13)?)?,
        rto_deadline: r.try_get::<Option<i64>, _>(14)?.map(from_millis),
        approval_deadline: r.try_get::<Option<i64>, _>(15)?.map(from_millis),
    })
}
