//! Retention: what the store may forget. Closed incidents (with their
//! events and signal links) after the incident retention, and signals that
//! no open incident holds after the signal retention. Deleted in small
//! batches, each its own write, so intake (which shares the one writer on
//! SQLite) waits at most one batch.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{Store, StoreError, millis};

/// The `retention:` section of the config file.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Closed incidents, their events and signal links are deleted this
    /// long after they closed: the audit trail of the store. (The audit
    /// file, if configured, is kept by whoever rotates it.)
    #[serde(default = "default_incidents", with = "crate::primitives::duration")]
    pub incidents: Duration,
    /// Signals no open incident holds are deleted this long after they
    /// were last seen.
    #[serde(default = "default_signals", with = "crate::primitives::duration")]
    pub signals: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            incidents: default_incidents(),
            signals: default_signals(),
        }
    }
}

fn default_incidents() -> Duration {
    Duration::from_secs(400 * 24 * 3600)
}

fn default_signals() -> Duration {
    Duration::from_secs(30 * 24 * 3600)
}

/// Rows per delete: small enough that a webhook waiting for the writer is
/// not held up noticeably.
pub const PRUNE_BATCH: i64 = 500;

/// What one pruning pass removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub incidents: u64,
    pub signals: u64,
}

impl Store {
    /// Up to `batch` incidents closed before `closed_before`, with their
    /// events and signal links, in one transaction. Returns how many.
    pub async fn prune_incidents(
        &self,
        closed_before: DateTime<Utc>,
        batch: i64,
    ) -> Result<u64, StoreError> {
        let mut tx = self.write_tx().await?;
        let pick = "SELECT id FROM incidents WHERE closed_at IS NOT NULL AND closed_at < $1 \
                    ORDER BY closed_at, id LIMIT $2";
        for table in ["incident_events", "incident_signals"] {
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE incident_id IN ({pick})"
            ))
            .bind(millis(closed_before))
            .bind(batch)
            .execute(&mut *tx)
            .await?;
        }
        let done = sqlx::query(&format!("DELETE FROM incidents WHERE id IN ({pick})"))
            .bind(millis(closed_before))
            .bind(batch)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    /// Up to `batch` signals last seen before `seen_before` that no open
    /// incident holds (their links to closed incidents go with them).
    pub async fn prune_signals(
        &self,
        seen_before: DateTime<Utc>,
        batch: i64,
    ) -> Result<u64, StoreError> {
        let mut tx = self.write_tx().await?;
        let pick = "SELECT s.id FROM signals s WHERE s.last_seen < $1 AND NOT EXISTS ( \
                        SELECT 1 FROM incident_signals l JOIN incidents i ON i.id = l.incident_id \
                        WHERE l.signal_id = s.id AND i.closed_at IS NULL) \
                    ORDER BY s.last_seen, s.id LIMIT $2";
        sqlx::query(&format!(
            "DELETE FROM incident_signals WHERE signal_id IN ({pick})"
        ))
        .bind(millis(seen_before))
        .bind(batch)
        .execute(&mut *tx)
        .await?;
        let done = sqlx::query(&format!("DELETE FROM signals WHERE id IN ({pick})"))
            .bind(millis(seen_before))
            .bind(batch)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }
}
