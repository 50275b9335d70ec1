//! Incidents: opening one per group, versioned updates, and queries.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::incident::{EventNote, Incident, State};
use crate::plan::Plan;
use crate::signal::{Beat, Signal};

use super::events::insert_event;
use super::multirow::{ROWS_PER_STATEMENT, placeholder_list};
use super::signals::signal_from_row;
use super::{Store, StoreError, from_json, from_millis, millis, state_from, to_json};

/// Result of trying to open an incident for a group.
#[derive(Debug)]
pub enum Opened {
    Created(Incident),
    /// The group already has an open incident (after a restart, or on
    /// another replica): the caller attaches instead of opening twice.
    Existing(Incident),
}

/// Which incidents a listing shows; every field left out matches all.
#[derive(Debug, Clone, Default)]
pub struct IncidentFilter {
    pub state: Option<State>,
    pub scenario: Option<String>,
    /// Detected at or after this.
    pub since: Option<DateTime<Utc>>,
}

impl Store {
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
             parent_id, plan, detected_at, updated_at, closed_at, version, services, rto_deadline, \
             drill, failback_of) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, NULL, 1, $11, \
             $12, $13, $14) ON CONFLICT DO NOTHING",
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
        .bind(i64::from(incident.drill))
        .bind(incident.failback_of.as_deref())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            tx.rollback().await?;
            let existing = match &incident.failback_of {
                Some(of) => self.failback_for(of).await?,
                None => self.open_incident_for(&incident.group_key).await?,
            };
            let existing = existing.ok_or_else(|| StoreError::Corrupt {
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
        self.audit(std::slice::from_ref(&event)).await;
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

    /// The open incidents of these group keys, by key: each one's id and
    /// the services it covers. One light read for a whole batch of
    /// evidence (the full incident, plan and all, is read only for one
    /// whose plan must grow).
    pub async fn open_incidents_for(
        &self,
        group_keys: &[&str],
    ) -> Result<HashMap<String, (String, Vec<String>)>, StoreError> {
        let mut open = HashMap::with_capacity(group_keys.len());
        for chunk in group_keys.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "SELECT group_key, id, services FROM incidents \
                 WHERE closed_at IS NULL AND group_key IN ({})",
                placeholder_list(self.backend, 1, chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for key in chunk {
                q = q.bind(*key);
            }
            for r in q.fetch_all(&self.pool).await? {
                let services = from_json("incidents", &r.try_get::<String, _>(2)?)?;
                open.insert(r.try_get(0)?, (r.try_get(1)?, services));
            }
        }
        Ok(open)
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
        self.audit(std::slice::from_ref(&event)).await;
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

    /// The incidents absorbed into `parent_id`, oldest first.
    pub async fn children(&self, parent_id: &str) -> Result<Vec<Incident>, StoreError> {
        sqlx::query(&format!(
            "{INCIDENT_COLUMNS} WHERE parent_id = $1 ORDER BY detected_at, id"
        ))
        .bind(parent_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(incident_from_row)
        .collect()
    }

    /// Newest first; with `before`, only those older than that
    /// (detected_at, id) position, so pages never overlap or skip.
    pub async fn incidents(
        &self,
        state: Option<State>,
        before: Option<(DateTime<Utc>, &str)>,
        limit: i64,
    ) -> Result<Vec<Incident>, StoreError> {
        let filter = IncidentFilter {
            state,
            ..IncidentFilter::default()
        };
        self.incidents_where(&filter, before, limit).await
    }

    /// [`Store::incidents`] narrowed by scenario and detection time too.
    pub async fn incidents_where(
        &self,
        filter: &IncidentFilter,
        before: Option<(DateTime<Utc>, &str)>,
        limit: i64,
    ) -> Result<Vec<Incident>, StoreError> {
        let IncidentFilter {
            state,
            scenario,
            since,
        } = filter;
        let mut filters = Vec::new();
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        if state.is_some() {
            filters.push(format!("state = {}", next()));
        }
        if scenario.is_some() {
            filters.push(format!("scenario = {}", next()));
        }
        if since.is_some() {
            filters.push(format!("detected_at >= {}", next()));
        }
        if before.is_some() {
            let (at, at2, id) = (next(), next(), next());
            filters.push(format!(
                "(detected_at < {at} OR (detected_at = {at2} AND id < {id}))"
            ));
        }
        let filter = if filters.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", filters.join(" AND "))
        };
        let sql = format!(
            "{INCIDENT_COLUMNS} {filter} ORDER BY detected_at DESC, id DESC LIMIT {}",
            next()
        );
        let mut q = sqlx::query(&sql);
        if let Some(st) = state {
            q = q.bind(st.as_str());
        }
        if let Some(sc) = scenario {
            q = q.bind(sc.as_str());
        }
        if let Some(t) = since {
            q = q.bind(millis(*t));
        }
        if let Some((at, id)) = before {
            q = q.bind(millis(at)).bind(millis(at)).bind(id);
        }
        let rows = q.bind(limit).fetch_all(&self.pool).await?;
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
        let (signals, _) = self
            .incident_signals_page(incident_id, None, i64::MAX)
            .await?;
        Ok(signals)
    }

    /// At most `limit` of an incident's signals in the order they were
    /// attached, after position `after` (attached_at, signal id); with the
    /// position of the last one, where the next page starts.
    pub async fn incident_signals_page(
        &self,
        incident_id: &str,
        after: Option<(DateTime<Utc>, &str)>,
        limit: i64,
    ) -> Result<(Vec<Signal>, Option<(DateTime<Utc>, String)>), StoreError> {
        let (at, id) = after.map_or((i64::MIN, ""), |(at, id)| (millis(at), id));
        let rows = sqlx::query(
            "SELECT s.source, s.fingerprint, s.name, s.labels, s.annotations, s.status, \
             s.starts_at, s.ends_at, s.received_at, i.attached_at, s.id FROM incident_signals i \
             JOIN signals s ON s.id = i.signal_id WHERE i.incident_id = $1 \
             AND (i.attached_at > $2 OR (i.attached_at = $3 AND s.id > $4)) \
             ORDER BY i.attached_at, s.id LIMIT $5",
        )
        .bind(incident_id)
        .bind(at)
        .bind(at)
        .bind(id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let last = match rows.last() {
            Some(r) => Some((from_millis(r.try_get(9)?), r.try_get::<String, _>(10)?)),
            None => None,
        };
        let signals = rows.iter().map(signal_from_row).collect::<Result<_, _>>()?;
        Ok((signals, last))
    }

    /// Whether any signal linked to the incident is firing: an alert
    /// incident's evidence. Stops at the first one (the links' primary key
    /// leads with the incident), however many signals the incident holds.
    pub async fn incident_firing(&self, incident_id: &str) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT 1 FROM incident_signals i JOIN signals s ON s.id = i.signal_id \
             WHERE i.incident_id = $1 AND s.status = 'firing' LIMIT 1",
        )
        .bind(incident_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// The name of each signal linked to the incident and when it was last
    /// received: a heartbeat incident's evidence (a heartbeat is back when it
    /// has been received again, though its status never changed). Names and
    /// times only: no labels to parse.
    pub async fn incident_beats(&self, incident_id: &str) -> Result<Vec<Beat>, StoreError> {
        let rows = sqlx::query(
            "SELECT s.name, s.last_seen FROM incident_signals i \
             JOIN signals s ON s.id = i.signal_id WHERE i.incident_id = $1",
        )
        .bind(incident_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Beat {
                    name: r.try_get(0)?,
                    last_seen: from_millis(r.try_get(1)?),
                })
            })
            .collect()
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

    /// Incidents of this group (other than `except`) that ran a plan
    /// (running, succeeded or failed) and changed at `since` or later: what
    /// a failover cooldown looks back at.
    pub async fn ran_since(
        &self,
        group_key: &str,
        except: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<Incident>, StoreError> {
        let rows = sqlx::query(&format!(
            "{INCIDENT_COLUMNS} WHERE group_key = $1 AND id <> $2 AND updated_at >= $3 \
             AND state IN ('running', 'succeeded', 'failed') ORDER BY updated_at DESC"
        ))
        .bind(group_key)
        .bind(except)
        .bind(millis(since))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(incident_from_row).collect()
    }

    /// Whether any signal is attached to the incident.
    pub async fn has_signals(&self, incident_id: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 FROM incident_signals WHERE incident_id = $1 LIMIT 1")
            .bind(incident_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// Keys of the open incidents that signals opened: what the rule
    /// engine must find groups for after a restart. An incident with no
    /// signal (declared by hand, or a failback) stands on its own and is
    /// not the engine's to close.
    pub async fn open_keys_with_evidence(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT group_key FROM incidents i WHERE closed_at IS NULL AND EXISTS \
             (SELECT 1 FROM incident_signals s WHERE s.incident_id = i.id)",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// The failback prepared for failover `of`, if there is one.
    pub async fn failback_for(&self, of: &str) -> Result<Option<Incident>, StoreError> {
        let row = sqlx::query(&format!("{INCIDENT_COLUMNS} WHERE failback_of = $1"))
            .bind(of)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(incident_from_row).transpose()
    }

    /// Incidents that succeeded at `since` or later, whose plan has a step
    /// with a failback, are no failback themselves and have none prepared
    /// yet: the failovers a failback is to be prepared for. (The plan is
    /// JSON text: the LIKE keeps the leader's tick from reading every
    /// restart of the week.)
    pub async fn succeeded_without_failback(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<Incident>, StoreError> {
        let rows = sqlx::query(&format!(
            "{INCIDENT_COLUMNS} WHERE state = 'succeeded' AND updated_at >= $1 \
             AND failback_of IS NULL AND plan LIKE '%\"failback\":%' AND id NOT IN \
             (SELECT failback_of FROM incidents WHERE failback_of IS NOT NULL) \
             ORDER BY updated_at"
        ))
        .bind(millis(since))
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

    /// Incidents of a rule in any of these states, other than `except`.
    /// Incidents of `rule` in `states` other than `except`, drills or real
    /// ones as `drill` says: a drill never takes a real incident's room.
    pub async fn count_in(
        &self,
        rule: &str,
        drill: bool,
        states: &[State],
        except: &str,
    ) -> Result<usize, StoreError> {
        let list: Vec<String> = states.iter().map(|s| format!("'{}'", s.as_str())).collect();
        let row = sqlx::query(&format!(
            "SELECT COUNT(*) FROM incidents WHERE rule = $1 AND id <> $2 AND drill = $3 \
             AND state IN ({})",
            list.join(", ")
        ))
        .bind(rule)
        .bind(except)
        .bind(i64::from(drill))
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get::<i64, _>(0)? as usize)
    }

    /// Number of open incidents per scenario and drill flag, for the gauge
    /// after restart.
    pub async fn open_counts(&self) -> Result<Vec<(String, bool, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT scenario, drill, COUNT(*) FROM incidents WHERE closed_at IS NULL \
             GROUP BY scenario, drill",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get::<i64, _>(1)? != 0, r.try_get(2)?)))
            .collect()
    }
}

const INCIDENT_COLUMNS: &str = "SELECT id, rule, scenario, severity, group_key, group_labels, \
     state, parent_id, plan, detected_at, updated_at, closed_at, version, services, rto_deadline, \
     approval_deadline, drill, failback_of FROM incidents";

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
        drill: r.try_get::<i64, _>(16)? != 0,
        failback_of: r.try_get(17)?,
    })
}
