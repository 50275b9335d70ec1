//! The leader lease and its fencing token, and the fenced write transaction
//! every write goes through.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{Backend, Store, StoreError, from_millis};

/// A leader's proof of leadership: the lease holder and the fencing token
/// it got when it took the lease. A later takeover raises the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub holder: String,
    pub token: i64,
}

/// The lease as stored, with the database's clock at the time of reading.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Lease {
    pub holder: String,
    pub token: i64,
    pub expires_at: DateTime<Utc>,
    pub now: DateTime<Utc>,
}

/// The lease row's name: one leader per store.
const LEASE_NAME: &str = "leader";

impl Store {
    /// This store, with every write transaction checking `fence` first: the
    /// handle a leader's pipeline and runner write through.
    pub fn fenced(&self, fence: Fence) -> Store {
        Store {
            fence: Some(Arc::new(fence)),
            ..self.clone()
        }
    }

    /// A transaction that will write. On SQLite it takes the write lock up
    /// front (`BEGIN IMMEDIATE`): a deferred transaction that reads and then
    /// writes fails with SQLITE_BUSY at once if another writer got in
    /// between, instead of waiting its turn.
    ///
    /// On a fenced handle the transaction starts by checking that the lease
    /// still carries its token. On PostgreSQL the check locks the lease row
    /// (`FOR SHARE`) until commit, so a takeover waits for this write and
    /// every write after the takeover fails: a leader that was paused past
    /// its lease cannot record anything, and so cannot dispatch.
    pub(super) async fn write_tx(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        let waiting = self.writer_waits.enter();
        let mut tx = match self.backend {
            Backend::Sqlite => self.writer.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.writer.begin().await?,
        };
        drop(waiting);
        if let Some(fence) = &self.fence {
            self.check_fence(&mut tx, fence).await?;
        }
        Ok(tx)
    }

    /// Whether a write is waiting for the writing connection: a group
    /// commit holding it ([`Store::begin_group`]) is then to commit what it
    /// has instead of waiting for more.
    pub fn writer_wanted(&self) -> bool {
        self.writer_waits.any()
    }

    /// Fails with [`StoreError::Fenced`] unless the lease is still
    /// `fence`'s (held `FOR SHARE` on PostgreSQL until commit); the caller
    /// drops `tx`, which rolls it back.
    pub(super) async fn check_fence(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        fence: &Fence,
    ) -> Result<(), StoreError> {
        let lock = match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR SHARE",
        };
        let held = sqlx::query(&format!(
            "SELECT token FROM leader_lease WHERE name = $1 AND holder = $2 AND token = $3{lock}"
        ))
        .bind(LEASE_NAME)
        .bind(&fence.holder)
        .bind(fence.token)
        .fetch_optional(&mut **tx)
        .await?;
        if held.is_none() {
            return Err(StoreError::Fenced {
                holder: fence.holder.clone(),
                token: fence.token,
            });
        }
        Ok(())
    }

    /// The database's clock in epoch milliseconds, as SQL: lease times are
    /// taken from one clock, whatever the replicas' clocks say.
    fn now_sql(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
            Backend::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
        }
    }

    /// Takes the lease for `holder` if nobody holds it or it has expired.
    /// Returns the new fencing token, one more than any before it.
    pub async fn acquire_lease(
        &self,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<Option<i64>, StoreError> {
        let now = self.now_sql();
        let row = sqlx::query(&format!(
            "INSERT INTO leader_lease (name, holder, token, expires_at, acquired_at) \
             VALUES ($1, $2, 1, {now} + $3, {now}) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
             token = leader_lease.token + 1, expires_at = excluded.expires_at, \
             acquired_at = excluded.acquired_at \
             WHERE leader_lease.expires_at < {now} RETURNING token"
        ))
        .bind(LEASE_NAME)
        .bind(holder)
        .bind(ttl.as_millis() as i64)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    /// Extends the lease if `fence` still holds it; false means it was
    /// taken over and the caller is not the leader any more.
    pub async fn renew_lease(
        &self,
        fence: &Fence,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(&format!(
            "UPDATE leader_lease SET expires_at = {} + $1 \
             WHERE name = $2 AND holder = $3 AND token = $4",
            self.now_sql()
        ))
        .bind(ttl.as_millis() as i64)
        .bind(LEASE_NAME)
        .bind(&fence.holder)
        .bind(fence.token)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives the lease up (graceful shutdown), so another replica takes
    /// over at its next try instead of waiting for the lease to run out.
    pub async fn release_lease(&self, fence: &Fence) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE leader_lease SET expires_at = 0 WHERE name = $1 AND holder = $2 AND token = $3",
        )
        .bind(LEASE_NAME)
        .bind(&fence.holder)
        .bind(fence.token)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn lease(&self) -> Result<Option<Lease>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT holder, token, expires_at, {} FROM leader_lease WHERE name = $1",
            self.now_sql()
        ))
        .bind(LEASE_NAME)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(Lease {
                holder: r.try_get(0)?,
                token: r.try_get(1)?,
                expires_at: from_millis(r.try_get(2)?),
                now: from_millis(r.try_get(3)?),
            })
        })
        .transpose()
    }
}
