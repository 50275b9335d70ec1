//! The dispatch kill switch's history (migration 0010): written by whichever
//! replica took the request, not fenced (any replica takes operator
//! requests, and stopping must work while leadership changes hands), and
//! read by the leader before every step it would start.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::{Store, StoreError, from_millis, millis};

/// One change of the kill switch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KillSwitch {
    /// On: no new step starts anywhere.
    pub engaged: bool,
    pub actor: String,
    pub reason: String,
    /// Running plans were asked to stop too, when it was engaged.
    pub abort_running: bool,
    pub at: DateTime<Utc>,
}

impl Store {
    /// The switch in force: the latest change, or off if it never changed.
    pub async fn kill_switch(&self) -> Result<Option<KillSwitch>, StoreError> {
        let row = sqlx::query(
            "SELECT engaged, actor, reason, abort_running, at FROM dispatch_switch \
             ORDER BY seq DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(KillSwitch {
                engaged: r.try_get::<i64, _>(0)? != 0,
                actor: r.try_get(1)?,
                reason: r.try_get(2)?,
                abort_running: r.try_get::<i64, _>(3)? != 0,
                at: from_millis(r.try_get(4)?),
            })
        })
        .transpose()
    }

    /// Records a change of the switch. Two replicas writing at once both
    /// land, one after the other (the sequence is the database's own).
    pub async fn set_kill_switch(&self, change: &KillSwitch) -> Result<(), StoreError> {
        let _waiting = self.writer_waits.enter();
        sqlx::query(
            "INSERT INTO dispatch_switch (engaged, actor, reason, abort_running, at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(i64::from(change.engaged))
        .bind(&change.actor)
        .bind(&change.reason)
        .bind(i64::from(change.abort_running))
        .bind(millis(change.at))
        .execute(&self.writer)
        .await?;
        Ok(())
    }
}
