//! Slack request signatures already seen. In the store, not in memory, so
//! that a signed request replayed to another replica or after a restart is
//! refused as well as one replayed to the same process.

use chrono::{DateTime, Utc};

use super::{Store, StoreError, millis};

impl Store {
    /// Records `signature` as seen at `now` and says whether this is its
    /// first sighting within `keep`. Older sightings are pruned on the way:
    /// Slack's timestamp check already refuses requests that old.
    pub async fn first_sighting(
        &self,
        signature: &str,
        now: DateTime<Utc>,
        keep: chrono::Duration,
    ) -> Result<bool, StoreError> {
        // Not through `write_tx`: any replica takes Slack's requests, leader
        // or not, so this write is not fenced.
        let _waiting = self.writer_waits.enter();
        sqlx::query("DELETE FROM slack_signatures WHERE seen_at < $1")
            .bind(millis(now - keep))
            .execute(&self.writer)
            .await?;
        // On PostgreSQL a concurrent insert of the same signature waits for
        // the first to commit and then inserts nothing: one of two racing
        // replays wins, never both.
        let inserted = sqlx::query(
            "INSERT INTO slack_signatures (signature, seen_at) VALUES ($1, $2) \
             ON CONFLICT DO NOTHING",
        )
        .bind(signature)
        .bind(millis(now))
        .execute(&self.writer)
        .await?;
        Ok(inserted.rows_affected() == 1)
    }
}
