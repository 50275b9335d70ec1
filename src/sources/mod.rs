//! Sources: turn what senders deliver into [`crate::signal::Signal`]s.
//!
//! Each source only parses and normalises; recording, dedup and correlation
//! happen downstream ([`record`]) so every source gets them the same way.

pub mod alertmanager;
pub mod events;
pub mod kafka;

use tokio::sync::mpsc;

use crate::signal::{Change, Signal, SignalEvent};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("shutting down")]
    ShuttingDown,
}

/// Records signals durably, then hands what they changed to the rule
/// engine (in memory on SQLite; through the store's signal log on
/// PostgreSQL, where the engine runs on whichever replica leads). Returns one change per signal, in order. A sender is answered
/// (or an offset committed) only after this returns, so an acknowledged
/// signal is never lost; re-sends and re-deliveries come back `Refreshed`
/// or `Ignored` and count once.
pub async fn record(
    store: &Store,
    pipeline: &mpsc::Sender<Vec<SignalEvent>>,
    signals: Vec<Signal>,
) -> Result<Vec<Change>, IntakeError> {
    if signals.is_empty() {
        return Ok(Vec::new());
    }
    let changes = store.record_signals(&signals).await?;
    if store.logs_signals() {
        // The leader, in this process or another, reads them from the log.
        return Ok(changes);
    }
    let events: Vec<SignalEvent> = signals
        .into_iter()
        .zip(changes.iter().copied())
        .filter(|(_, change)| *change != Change::Ignored)
        .map(|(signal, change)| SignalEvent { signal, change })
        .collect();
    if !events.is_empty() {
        pipeline
            .send(events)
            .await
            .map_err(|_| IntakeError::ShuttingDown)?;
    }
    Ok(changes)
}
