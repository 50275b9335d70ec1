//! Recorded signals: what each received signal changes, written in batches.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::signal::{Change, Labels, Signal, Status};

use super::multirow::{ROWS_PER_STATEMENT, placeholder_list, placeholder_rows};
use super::signal_log::SIGNAL_LOG_CHANNEL;
use super::{Backend, Store, StoreError, from_json, from_millis, millis, to_json};

/// Serialises writers of the signal log on PostgreSQL, so that `seq` order
/// is commit order (a sequence value is taken at insert, not at commit).
const SIGNAL_LOG_LOCK: i64 = 0x6472_7273_6967;

/// How close the stored `last_seen` of a firing signal is kept to its latest
/// re-send, for signals whose `last_seen` need not be exact (see
/// [`Store::record_signals_within`]). Alertmanager in HA delivers every
/// notification once per replica, milliseconds apart, and a storm of re-sends
/// repeats each alert many times a second: rewriting (and syncing) the row
/// for each moved a timestamp nobody reads at that precision. What reads it:
/// retention (days), a restart's rebuild of the rule windows (their lengths)
/// and the failback heartbeat check (at least 1 s, and a stale time only
/// makes it wait longer), besides heartbeats, which are always exact.
pub const LAST_SEEN_RESOLUTION: std::time::Duration = std::time::Duration::from_secs(1);

/// Which signals' re-sends must always move the stored `last_seen`: the
/// heartbeats, whose silence an approval's evidence check measures from it.
pub type ExactLastSeen<'a> = &'a (dyn Fn(&Signal) -> bool + Sync);

impl Store {
    /// Records a batch of signals in one transaction and says, per signal,
    /// what it changed. Re-sends of firing alerts only refresh `last_seen`;
    /// a resolve leaves it at the last time the signal fired, which is when
    /// a heartbeat's silence began.
    /// On PostgreSQL each change is also appended to the signal log, for
    /// the leader's engine wherever it runs.
    ///
    /// One read for the whole batch and multi-row writes: per-row round
    /// trips, not SQL, were what a batch's time went to.
    pub async fn record_signals(&self, signals: &[Signal]) -> Result<Vec<Change>, StoreError> {
        self.record_signals_within(signals, &|_| true).await
    }

    /// [`Store::record_signals`], keeping the `last_seen` of the signals
    /// `exact` does not pick to within [`LAST_SEEN_RESOLUTION`]: a re-send
    /// that would change nothing else, that soon after the stored time, is
    /// not written. It is still a `Refreshed` change (and a signal log
    /// entry on PostgreSQL, for the engine's windows); the signal is in the
    /// store, firing, as before.
    pub async fn record_signals_within(
        &self,
        signals: &[Signal],
        exact: ExactLastSeen<'_>,
    ) -> Result<Vec<Change>, StoreError> {
        if signals.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.write_tx().await?;
        self.lock_signal_log(&mut tx).await?;
        let (changes, logged) = self.write_signals(&mut tx, signals, exact).await?;
        if logged {
            notify_signal_log(&mut tx).await?;
        }
        tx.commit().await?;
        if logged {
            self.log_written.notify_one();
        }
        Ok(changes)
    }

    /// On PostgreSQL, takes the lock that serialises writers of the signal
    /// log until `tx` ends: taken before a transaction's first
    /// [`Store::write_signals`].
    pub(super) async fn lock_signal_log(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    ) -> Result<(), StoreError> {
        if self.logs_signals() {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(SIGNAL_LOG_LOCK)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// [`Store::record_signals`] inside `tx`, which holds the signal log's
    /// lock ([`Store::lock_signal_log`]); true if the signal log was
    /// appended to: [`notify_signal_log`] is then due before the commit,
    /// and [`Store::log_written`] after it.
    pub(super) async fn write_signals(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        signals: &[Signal],
        exact: ExactLastSeen<'_>,
    ) -> Result<(Vec<Change>, bool), StoreError> {
        if signals.is_empty() {
            return Ok((Vec::new(), false));
        }
        let ids: Vec<String> = signals.iter().map(Signal::id).collect();
        let mut stored = stored_states(tx, self.backend, &ids).await?;
        let mut writes = SignalWrites::new(self.backend);
        let mut changes = Vec::with_capacity(signals.len());
        let resolution = i64::try_from(LAST_SEEN_RESOLUTION.as_millis()).unwrap_or(i64::MAX);
        for (s, id) in signals.iter().zip(&ids) {
            let prev = stored.get_mut(id);
            let change = classify(prev.as_ref().map(|p| (p.status.as_str(), p.starts_at)), s);
            let now = millis(s.received_at);
            let row = match (change, prev) {
                (Change::Ignored, _) => None,
                (Change::Refreshed, Some(p)) => {
                    let covered = (0..resolution).contains(&(now - p.last_seen))
                        && !exact(s)
                        && p.annotations.same(&s.annotations);
                    if !covered {
                        p.last_seen = now;
                        p.annotations = Annotations::Batch(&s.annotations);
                    }
                    Some(!covered)
                }
                (Change::Fired, Some(p)) => {
                    *p = Stored::fired(s);
                    Some(true)
                }
                // A resolve leaves `last_seen` at the last time it fired.
                (Change::Resolved, Some(p)) => {
                    p.status = s.status.as_str().to_owned();
                    p.starts_at = millis(s.starts_at);
                    Some(true)
                }
                (_, None) => {
                    stored.insert(id.clone(), Stored::fired(s));
                    Some(true)
                }
            };
            if let Some(row) = row {
                writes.add(tx, id, s, change, row).await?;
            }
            changes.push(change);
        }
        writes.flush(tx).await?;
        Ok((changes, writes.logged))
    }

    /// Signals still firing, resolved since `since`, or held by an open
    /// incident, each with when it last fired: what the rule engine needs to
    /// rebuild its windows after a restart, heartbeats' last beats included
    /// (a heartbeat resolved long ago is the evidence of the open incident
    /// it is in).
    pub async fn recent_signals(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(Signal, DateTime<Utc>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT source, fingerprint, name, labels, annotations, status, starts_at, ends_at, \
             received_at, last_seen FROM signals WHERE status = 'firing' OR last_seen >= $1 \
             OR ends_at >= $2 OR id IN (SELECT s.signal_id FROM incident_signals s \
             JOIN incidents i ON i.id = s.incident_id WHERE i.closed_at IS NULL) \
             ORDER BY received_at",
        )
        .bind(millis(since))
        .bind(millis(since))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((signal_from_row(r)?, from_millis(r.try_get(9)?))))
            .collect()
    }

    /// Whether a firing signal named `name` with label `label` = `value`
    /// was received at `since` or later: a heartbeat that is beating. Reads
    /// only recent firing rows (the `(status, last_seen)` index).
    pub async fn beating(
        &self,
        name: &str,
        label: &str,
        value: &str,
        since: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let rows = sqlx::query(
            "SELECT labels FROM signals WHERE status = 'firing' AND last_seen >= $1 AND name = $2",
        )
        .bind(millis(since))
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        for r in &rows {
            let labels: Labels = from_json("signals", &r.try_get::<String, _>(0)?)?;
            if labels.get(label).is_some_and(|v| v == value) {
                return Ok(true);
            }
        }
        Ok(false)
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
}

/// Wakes every listener to the signal log when (and only if) `tx` commits.
pub(super) async fn notify_signal_log(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(SIGNAL_LOG_CHANNEL)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// What a batch's writes are decided by, of a signal already stored (as the
/// batch's earlier writes leave it).
struct Stored<'a> {
    status: String,
    starts_at: i64,
    last_seen: i64,
    annotations: Annotations<'a>,
}

impl<'a> Stored<'a> {
    fn fired(s: &'a Signal) -> Stored<'a> {
        Stored {
            status: s.status.as_str().to_owned(),
            starts_at: millis(s.starts_at),
            last_seen: millis(s.received_at),
            annotations: Annotations::Batch(&s.annotations),
        }
    }
}

/// A stored signal's annotations: as read, or as a signal earlier in the
/// batch wrote them (nothing serialised for the comparison that, in a storm
/// of new alerts, is never made).
enum Annotations<'a> {
    Read(String),
    Batch(&'a Labels),
}

impl Annotations<'_> {
    fn same(&self, new: &Labels) -> bool {
        match self {
            Annotations::Read(json) => *json == to_json(new),
            Annotations::Batch(labels) => *labels == new,
        }
    }
}

/// Every signal of `ids` that exists, as stored.
async fn stored_states(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    backend: Backend,
    ids: &[String],
) -> Result<std::collections::HashMap<String, Stored<'static>>, StoreError> {
    let mut unique: Vec<&str> = ids.iter().map(String::as_str).collect();
    unique.sort_unstable();
    unique.dedup();
    let mut stored = std::collections::HashMap::with_capacity(unique.len());
    for chunk in unique.chunks(ROWS_PER_STATEMENT * 5) {
        let sql = format!(
            "SELECT id, status, starts_at, last_seen, annotations FROM signals WHERE id IN ({})",
            placeholder_list(backend, 1, chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(*id);
        }
        for row in q.fetch_all(&mut **tx).await? {
            let state = Stored {
                status: row.try_get(1)?,
                starts_at: row.try_get(2)?,
                last_seen: row.try_get(3)?,
                annotations: Annotations::Read(row.try_get(4)?),
            };
            stored.insert(row.try_get(0)?, state);
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

    /// `row`: whether the signal's row is written; a re-send within
    /// [`LAST_SEEN_RESOLUTION`] goes to the signal log only.
    async fn add(
        &mut self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        id: &'a str,
        s: &'a Signal,
        change: Change,
        row: bool,
    ) -> Result<(), StoreError> {
        if row {
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
                 last_seen = CASE WHEN excluded.status = 'firing' \
                 THEN excluded.last_seen ELSE signals.last_seen END, \
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

pub(super) fn signal_from_row(r: &AnyRow) -> Result<Signal, StoreError> {
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
