//! The signal log: recorded signal changes, in commit order, for a leader
//! on another replica (PostgreSQL), and the NOTIFY that wakes it.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::signal::{Change, Signal};

use super::{Backend, Store, StoreError, from_json, millis};

/// The NOTIFY channel of signal log appends.
pub(super) const SIGNAL_LOG_CHANNEL: &str = "dr_reactor_signal_log";

async fn listen(url: &str, woken: &tokio::sync::Notify) -> Result<(), sqlx::Error> {
    let mut listener = sqlx::postgres::PgListener::connect(url).await?;
    listener.listen(SIGNAL_LOG_CHANNEL).await?;
    loop {
        listener.recv().await?;
        woken.notify_one();
    }
}

impl Store {
    /// Whether recorded signals reach the rule engine through the signal
    /// log (PostgreSQL: the leader may be another replica) rather than in
    /// memory (SQLite: one process does everything).
    pub fn logs_signals(&self) -> bool {
        self.backend == Backend::Postgres
    }

    /// Woken whenever the signal log grows.
    pub fn log_written(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.log_written)
    }

    /// On PostgreSQL: listens for other replicas' appends to the signal log
    /// and wakes [`Store::log_written`], so intake on a follower reaches the
    /// leader's engine in milliseconds. Polling stays the fallback while the
    /// listening connection is down; it reconnects by itself.
    pub fn listen_for_signal_log(&self) -> Option<tokio::task::JoinHandle<()>> {
        let url = self.listen_url.clone()?;
        let woken = Arc::clone(&self.log_written);
        Some(tokio::spawn(async move {
            loop {
                if let Err(e) = listen(&url, &woken).await {
                    tracing::warn!("listening for signal log appends: {e}; polling meanwhile");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        }))
    }

    /// The last sequence number in the signal log (0 when empty).
    pub async fn signal_log_head(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COALESCE(MAX(seq), 0) FROM signal_log")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
    }

    /// Up to `limit` signal changes after `seq`, in commit order.
    pub async fn signal_log_after(
        &self,
        seq: i64,
        limit: i64,
    ) -> Result<Vec<(i64, crate::signal::SignalEvent)>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, change, signal FROM signal_log WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(seq)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let change: String = r.try_get(1)?;
                let change = Change::parse(&change).ok_or_else(|| StoreError::Corrupt {
                    table: "signal_log",
                    detail: format!("unknown change {change:?}"),
                })?;
                let signal: Signal = from_json("signal_log", &r.try_get::<String, _>(2)?)?;
                Ok((r.try_get(0)?, crate::signal::SignalEvent { signal, change }))
            })
            .collect()
    }

    /// Drops consumed log entries older than `before`; the engine rebuilds
    /// from the signals table, never from the log.
    pub async fn prune_signal_log(
        &self,
        consumed: i64,
        before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM signal_log WHERE seq <= $1 AND at < $2")
            .bind(consumed)
            .bind(millis(before))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
