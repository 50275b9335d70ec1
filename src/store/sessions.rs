//! Console sessions (migration 0011): created by whichever replica took
//! the sign-in and read by whichever takes the next page, so a sign-out
//! anywhere holds everywhere. Not fenced: sessions are not incident state.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{Store, StoreError, from_millis, millis};

/// One console session, as stored (its id only as a digest).
#[derive(Debug, Clone, PartialEq)]
pub struct ConsoleSession {
    /// SHA-256 of the cookie's id, in hex.
    pub id: String,
    /// `admin`, `reader` or `user:ID`.
    pub principal: String,
    /// The fingerprint of the token that opened it.
    pub credential: String,
    pub created_at: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    /// The absolute end, whatever the activity.
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl Store {
    pub async fn create_console_session(&self, s: &ConsoleSession) -> Result<(), StoreError> {
        let _waiting = self.writer_waits.enter();
        sqlx::query(
            "INSERT INTO console_sessions \
             (id, principal, credential, created_at, last_seen, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&s.id)
        .bind(&s.principal)
        .bind(&s.credential)
        .bind(millis(s.created_at))
        .bind(millis(s.last_seen))
        .bind(millis(s.expires_at))
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    pub async fn console_session(&self, id: &str) -> Result<Option<ConsoleSession>, StoreError> {
        let row = sqlx::query(
            "SELECT id, principal, credential, created_at, last_seen, expires_at, revoked_at \
             FROM console_sessions WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(ConsoleSession {
                id: r.try_get(0)?,
                principal: r.try_get(1)?,
                credential: r.try_get(2)?,
                created_at: from_millis(r.try_get(3)?),
                last_seen: from_millis(r.try_get(4)?),
                expires_at: from_millis(r.try_get(5)?),
                revoked_at: r.try_get::<Option<i64>, _>(6)?.map(from_millis),
            })
        })
        .transpose()
    }

    /// Moves `last_seen` forward (never back: two replicas may race).
    pub async fn touch_console_session(
        &self,
        id: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let _waiting = self.writer_waits.enter();
        sqlx::query("UPDATE console_sessions SET last_seen = $2 WHERE id = $1 AND last_seen < $2")
            .bind(id)
            .bind(millis(at))
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Ends a session, once (the first reason stays).
    pub async fn revoke_console_session(
        &self,
        id: &str,
        at: DateTime<Utc>,
        why: &str,
    ) -> Result<(), StoreError> {
        let _waiting = self.writer_waits.enter();
        sqlx::query(
            "UPDATE console_sessions SET revoked_at = $2, revoked_why = $3 \
             WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(id)
        .bind(millis(at))
        .bind(why)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Forgets sessions that ended before `before`: nothing reads them.
    pub async fn prune_console_sessions(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let _waiting = self.writer_waits.enter();
        let done =
            sqlx::query("DELETE FROM console_sessions WHERE expires_at < $1 OR revoked_at < $1")
                .bind(millis(before))
                .execute(&self.writer)
                .await?;
        Ok(done.rows_affected())
    }
}
