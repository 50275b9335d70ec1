//! The append-only incident event log and the links from incidents to
//! their signals.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::incident::{Event, EventNote, State};

use super::multirow::{ROWS_PER_STATEMENT, placeholder, placeholder_list, placeholder_rows};
use super::{Backend, Store, StoreError, from_json, from_millis, millis, state_from};

impl Store {
    /// Appends an event that changes no state (a step's result, a note).
    pub async fn append_event(
        &self,
        incident_id: &str,
        at: DateTime<Utc>,
        note: &EventNote,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        let event = insert_event(&mut tx, incident_id, at, None, None, note).await?;
        tx.commit().await?;
        self.audit(std::slice::from_ref(&event)).await;
        Ok(())
    }

    /// Links signals to an incident; linking twice is a no-op.
    pub async fn attach_signals(
        &self,
        incident_id: &str,
        signal_ids: &[String],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        let links: Vec<Link> = signal_ids
            .iter()
            .map(|sid| (incident_id, sid.as_str(), at))
            .collect();
        link_signals(&mut tx, self.backend, &links).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn events(&self, incident_id: &str) -> Result<Vec<Event>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, incident_id, at, kind, from_state, to_state, actor, reason, data \
             FROM incident_events WHERE incident_id = $1 ORDER BY seq",
        )
        .bind(incident_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// The incident's events of these kinds only, in order: what a check
    /// that runs every tick reads, where the whole log of an incident in a
    /// storm holds an evidence note per batch.
    pub async fn events_of_kinds(
        &self,
        incident_id: &str,
        kinds: &[&str],
    ) -> Result<Vec<Event>, StoreError> {
        let sql = format!(
            "SELECT seq, incident_id, at, kind, from_state, to_state, actor, reason, data \
             FROM incident_events WHERE incident_id = {} AND kind IN ({}) ORDER BY seq",
            placeholder(self.backend, 1),
            placeholder_list(self.backend, 2, kinds.len())
        );
        let mut q = sqlx::query(&sql).bind(incident_id);
        for kind in kinds {
            q = q.bind(*kind);
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter().map(event_from_row).collect()
    }

    /// At most `limit` events after sequence number `after`, in order: one
    /// page of a long incident's log.
    pub async fn events_page(
        &self,
        incident_id: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<Event>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, incident_id, at, kind, from_state, to_state, actor, reason, data \
             FROM incident_events WHERE incident_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(incident_id)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// Admissions by the guard since `since` (rule, incident key, time), in
    /// time order: what re-seeds the rate limiters after a restart.
    /// How many incidents were admitted as failovers (their `admitted`
    /// event says `"failover": true`) at `since` or later.
    pub async fn failovers_admitted_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) FROM incident_events \
             WHERE kind = 'admitted' AND at >= $1 AND data LIKE '%\"failover\":true%'",
        )
        .bind(millis(since))
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get::<i64, _>(0)? as usize)
    }

    pub async fn admitted_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(String, String, DateTime<Utc>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT i.rule, i.group_key, e.at FROM incident_events e \
             JOIN incidents i ON i.id = e.incident_id \
             WHERE e.kind = 'admitted' AND e.at >= $1 AND i.drill = 0 ORDER BY e.at, e.seq",
        )
        .bind(millis(since))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, from_millis(r.try_get(2)?))))
            .collect()
    }
}

/// An incident, one of its signals, and when the signal was linked.
pub(super) type Link<'a> = (&'a str, &'a str, DateTime<Utc>);

/// Links signals to incidents inside `tx` (a link that exists is kept), in
/// multi-row statements: in a storm each batch of evidence links thousands
/// of signals, and a round trip per link, on the one connection that
/// writes, was what held intake up.
pub(super) async fn link_signals(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    backend: Backend,
    links: &[Link<'_>],
) -> Result<(), StoreError> {
    for chunk in links.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO incident_signals (incident_id, signal_id, attached_at) VALUES {} \
             ON CONFLICT DO NOTHING",
            placeholder_rows(backend, chunk.len(), 3, "")
        );
        let mut q = sqlx::query(&sql);
        for (incident, signal, at) in chunk {
            q = q.bind(*incident).bind(*signal).bind(millis(*at));
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Appends notes that change no state, many per statement: a storm's batch
/// of evidence notes dozens of incidents at once. A statement holds each
/// incident at most once, so the sequence numbers it returns are told apart
/// by incident, and each incident's events keep the order of `notes`.
pub(super) async fn insert_notes(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    backend: Backend,
    notes: &[(&str, DateTime<Utc>, &EventNote)],
) -> Result<Vec<Event>, StoreError> {
    let mut events = Vec::with_capacity(notes.len());
    let mut rest = notes;
    while !rest.is_empty() {
        let mut seen = std::collections::HashSet::new();
        let len = rest
            .iter()
            .take(ROWS_PER_STATEMENT)
            .take_while(|(incident, ..)| seen.insert(*incident))
            .count();
        let (chunk, tail) = rest.split_at(len);
        rest = tail;
        let sql = format!(
            "INSERT INTO incident_events (incident_id, at, kind, actor, reason, data) \
             VALUES {} RETURNING seq, incident_id",
            placeholder_rows(backend, chunk.len(), 6, "")
        );
        let mut q = sqlx::query(&sql);
        for (incident, at, note) in chunk {
            q = q
                .bind(*incident)
                .bind(millis(*at))
                .bind(note.kind)
                .bind(&note.actor)
                .bind(&note.reason)
                .bind(note.data.to_string());
        }
        let mut seqs = std::collections::HashMap::with_capacity(chunk.len());
        for row in q.fetch_all(&mut **tx).await? {
            seqs.insert(row.try_get::<String, _>(1)?, row.try_get::<i64, _>(0)?);
        }
        for (incident, at, note) in chunk {
            let seq = seqs
                .get(*incident)
                .copied()
                .ok_or_else(|| StoreError::Corrupt {
                    table: "incident_events",
                    detail: format!("no sequence number returned for {incident}"),
                })?;
            events.push(Event {
                seq,
                incident_id: (*incident).to_owned(),
                at: *at,
                kind: note.kind.to_owned(),
                from_state: None,
                to_state: None,
                actor: note.actor.clone(),
                reason: note.reason.clone(),
                data: note.data.clone(),
            });
        }
    }
    events.sort_by_key(|e| e.seq);
    Ok(events)
}

pub(super) async fn insert_event(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    incident_id: &str,
    at: DateTime<Utc>,
    from: Option<State>,
    to: Option<State>,
    note: &EventNote,
) -> Result<Event, StoreError> {
    let row = sqlx::query(
        "INSERT INTO incident_events (incident_id, at, kind, from_state, to_state, actor, reason, data) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING seq",
    )
    .bind(incident_id)
    .bind(millis(at))
    .bind(note.kind)
    .bind(from.map(State::as_str))
    .bind(to.map(State::as_str))
    .bind(&note.actor)
    .bind(&note.reason)
    .bind(note.data.to_string())
    .fetch_one(&mut **tx)
    .await?;
    Ok(Event {
        seq: row.try_get(0)?,
        incident_id: incident_id.to_owned(),
        at,
        kind: note.kind.to_owned(),
        from_state: from,
        to_state: to,
        actor: note.actor.clone(),
        reason: note.reason.clone(),
        data: note.data.clone(),
    })
}

fn event_from_row(r: &AnyRow) -> Result<Event, StoreError> {
    let state = |i: usize| -> Result<Option<State>, StoreError> {
        r.try_get::<Option<String>, _>(i)?
            .map(|s| state_from("incident_events", &s))
            .transpose()
    };
    Ok(Event {
        seq: r.try_get(0)?,
        incident_id: r.try_get(1)?,
        at: from_millis(r.try_get(2)?),
        kind: r.try_get(3)?,
        from_state: state(4)?,
        to_state: state(5)?,
        actor: r.try_get(6)?,
        reason: r.try_get(7)?,
        data: from_json("incident_events", &r.try_get::<String, _>(8)?)?,
    })
}
