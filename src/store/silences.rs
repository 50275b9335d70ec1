//! Silences created through the API, CLI or Slack. Written by whichever replica
//! took the request (not fenced: any replica takes operator requests) and
//! read by the leader at each admission, so all replicas and a restart see
//! the same ones.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError, from_json, from_millis, millis, to_json};
use crate::rules::silence::Silence;

const COLUMNS: &str = "id, matchers, starts_at, ends_at, created_by, comment, expired_by, source";

fn silence_from(row: &AnyRow) -> Result<Silence, StoreError> {
    let matchers: String = row.try_get(1)?;
    Ok(Silence {
        id: row.try_get(0)?,
        matchers: from_json("silences", &matchers)?,
        starts_at: from_millis(row.try_get(2)?),
        ends_at: from_millis(row.try_get(3)?),
        created_by: row.try_get(4)?,
        comment: row.try_get(5)?,
        source: row.try_get(7)?,
        expired_by: row.try_get(6)?,
    })
}

impl Store {
    /// Records a new silence; `false` if one with its id exists already.
    pub async fn insert_silence(
        &self,
        s: &Silence,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let _waiting = self.writer_waits.enter();
        let inserted = sqlx::query(
            "INSERT INTO silences (id, matchers, starts_at, ends_at, created_by, comment, \
             created_at, source) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        )
        .bind(&s.id)
        .bind(to_json(&s.matchers))
        .bind(millis(s.starts_at))
        .bind(millis(s.ends_at))
        .bind(&s.created_by)
        .bind(&s.comment)
        .bind(millis(now))
        .bind(&s.source)
        .execute(&self.writer)
        .await?;
        Ok(inserted.rows_affected() == 1)
    }

    /// Silences that end after `since` (those still of use), by start.
    pub async fn silences_ending_after(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<Silence>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM silences WHERE ends_at > $1 ORDER BY starts_at, id"
        ))
        .bind(millis(since))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(silence_from).collect()
    }

    pub async fn silence(&self, id: &str) -> Result<Option<Silence>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM silences WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(silence_from).transpose()
    }

    /// Ends a silence at `at` if it would end later, recording `by`; the
    /// row stays, for the events that name it. Returns the silence as it
    /// now is.
    pub async fn expire_silence(
        &self,
        id: &str,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<Silence>, StoreError> {
        let waiting = self.writer_waits.enter();
        sqlx::query(
            "UPDATE silences SET ends_at = $2, expired_by = $3 WHERE id = $1 AND ends_at > $2",
        )
        .bind(id)
        .bind(millis(at))
        .bind(by)
        .execute(&self.writer)
        .await?;
        drop(waiting);
        self.silence(id).await
    }
}
