//! SQLite's WAL checkpoints, off the writing connection.
//!
//! In WAL mode every commit appends the pages it changed to the WAL, and a
//! checkpoint copies them back into the database file. SQLite runs one
//! itself on the committing connection once the WAL passes 1,000 pages, in
//! that commit: in a storm of new alerts every group commit dirties about
//! 300 pages of the random-keyed signal index, so every third or fourth
//! group commit also copied and synced 4 MiB, with every sender of the
//! group waiting on it (7% of the writer's SQLite thread in a profile).
//! Here a reading connection checkpoints instead, without blocking the
//! writer (`PASSIVE`), and the writer's own checkpoint stays as the bound.
//! SQLite starts the WAL over only when a write begins with all of it
//! copied; through a sustained storm the writer commits between any two
//! checkpoints, so the WAL grows to that bound, and the writer's own
//! checkpoint there finds little left to copy (a storm run: the WAL file
//! peaked at 41.5 MB, the bound). What a commit makes durable does not
//! change: each commit still syncs the WAL before it returns.

use std::time::Duration;

use sqlx::Row;

use super::{Store, StoreError};

/// WAL pages past which the writer checkpoints in its own commit, as
/// SQLite does by default at 1,000: the bound on the WAL (40 MiB at 4 KiB
/// pages), reached in a sustained storm or if this task stops.
pub(super) const WRITER_CHECKPOINT_PAGES: u32 = 10_000;

/// Pause between checkpoints while commits are coming in: a storm's
/// commits come every few milliseconds, so each checkpoint copies a few
/// commits' worth, and a page rewritten meanwhile is copied once.
const WHILE_WRITING: Duration = Duration::from_millis(20);

/// Pause between checkpoints while the WAL has not grown: an idle server
/// does not wake SQLite fifty times a second.
const WHILE_IDLE: Duration = Duration::from_secs(1);

/// What one checkpoint found and did, in WAL pages (frames).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalCheckpoint {
    /// Pages in the WAL.
    pub wal_pages: i64,
    /// Of those, pages now in the database file.
    pub copied_pages: i64,
}

impl Store {
    /// Whether this store has a WAL to checkpoint (a SQLite file; an
    /// in-memory database and PostgreSQL have none to manage here).
    pub fn has_wal(&self) -> bool {
        self.wal
    }

    /// Copies what it can of the WAL into the database file, without
    /// waiting for the writer or readers (`PRAGMA wal_checkpoint(PASSIVE)`
    /// on a reading connection). `None` if the store has no WAL.
    pub async fn checkpoint_wal(&self) -> Result<Option<WalCheckpoint>, StoreError> {
        if !self.has_wal() {
            return Ok(None);
        }
        let row = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&self.pool)
            .await?;
        Ok(Some(WalCheckpoint {
            wal_pages: row.try_get(1)?,
            copied_pages: row.try_get(2)?,
        }))
    }

    /// Checkpoints the WAL for as long as it runs: every
    /// [`WHILE_WRITING`] while it grows, every [`WHILE_IDLE`] otherwise.
    /// A failed checkpoint is logged and tried again (the writer's own
    /// checkpoint still bounds the WAL meanwhile). `not_copied` is set to
    /// the pages each checkpoint could not copy: a read transaction that
    /// stays open holds them back, and the WAL grows until it ends.
    pub async fn checkpoint_periodically(self, not_copied: prometheus::IntGauge) {
        let mut last = None;
        loop {
            let now = match self.checkpoint_wal().await {
                Ok(Some(now)) => {
                    not_copied.set(now.wal_pages - now.copied_pages);
                    Some(now)
                }
                // Nothing to checkpoint, or the store was closed (shutdown).
                Ok(None) | Err(StoreError::Db(sqlx::Error::PoolClosed)) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "WAL checkpoint failed; trying again");
                    None
                }
            };
            tokio::time::sleep(pause_after(last, now)).await;
            last = now;
        }
    }
}

/// How long to wait before the next checkpoint, given the last two.
fn pause_after(last: Option<WalCheckpoint>, now: Option<WalCheckpoint>) -> Duration {
    match (last, now) {
        (Some(last), Some(now)) if last == now => WHILE_IDLE,
        _ => WHILE_WRITING,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wal(wal_pages: i64, copied_pages: i64) -> Option<WalCheckpoint> {
        Some(WalCheckpoint {
            wal_pages,
            copied_pages,
        })
    }

    #[test]
    fn checkpoints_come_often_only_while_the_wal_changes() {
        assert_eq!(pause_after(None, wal(10, 10)), WHILE_WRITING, "first");
        assert_eq!(pause_after(wal(10, 10), wal(10, 10)), WHILE_IDLE);
        assert_eq!(pause_after(wal(10, 10), wal(25, 25)), WHILE_WRITING);
        // The writer started the WAL over: pages were committed.
        assert_eq!(pause_after(wal(300, 300), wal(40, 40)), WHILE_WRITING);
        assert_eq!(pause_after(wal(10, 4), None), WHILE_WRITING, "failed");
    }

    #[tokio::test]
    async fn a_reader_copies_the_wal_back_and_the_writer_keeps_a_bound() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("wal.db").display());
        let store = Store::connect(&url).await.unwrap();
        let bound = sqlx::query_scalar::<_, i64>("PRAGMA wal_autocheckpoint")
            .fetch_one(&store.writer)
            .await
            .unwrap();
        assert_eq!(bound, i64::from(WRITER_CHECKPOINT_PAGES));
        let signals: Vec<_> = (0..200)
            .map(|i| crate::signal::Signal::firing(&format!("fp-{i}"), "NodeDown", &[]))
            .collect();
        store.record_signals(&signals).await.unwrap();
        let done = store.checkpoint_wal().await.unwrap().unwrap();
        assert!(done.wal_pages > 0, "{done:?}");
        assert_eq!(done.copied_pages, done.wal_pages, "nothing held it back");

        // A read that stays open holds back what was committed after it
        // began, and the gauge shows it until the read ends.
        let mut reader = store.pool.acquire().await.unwrap();
        sqlx::query("BEGIN").execute(&mut *reader).await.unwrap();
        sqlx::query("SELECT count(*) FROM signals")
            .fetch_one(&mut *reader)
            .await
            .unwrap();
        let later: Vec<_> = signals
            .iter()
            .map(|s| crate::signal::Signal {
                fingerprint: format!("{}-later", s.fingerprint),
                ..s.clone()
            })
            .collect();
        store.record_signals(&later).await.unwrap();
        let held = store.checkpoint_wal().await.unwrap().unwrap();
        assert!(held.copied_pages < held.wal_pages, "{held:?}");
        let gauge = prometheus::IntGauge::new("not_copied", "test").unwrap();
        let task = tokio::spawn(store.clone().checkpoint_periodically(gauge.clone()));
        let settles_at = |want: fn(i64) -> bool| {
            let gauge = gauge.clone();
            async move {
                for _ in 0..250 {
                    if want(gauge.get()) {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                panic!("gauge stayed at {}", gauge.get());
            }
        };
        settles_at(|pages| pages > 0).await;
        sqlx::query("ROLLBACK").execute(&mut *reader).await.unwrap();
        drop(reader);
        settles_at(|pages| pages == 0).await;

        store.close().await;
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("ends once the store is closed")
            .unwrap();

        let memory = Store::connect("sqlite::memory:").await.unwrap();
        assert!(!memory.has_wal());
        assert_eq!(memory.checkpoint_wal().await.unwrap(), None);
    }
}
