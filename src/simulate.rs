//! Running rules on a virtual clock, touching nothing outside the process:
//! the engine and the real incident service over an in-memory SQLite store,
//! with dispatch forced to dry-run. `dr-reactor test` and `dr-reactor
//! replay` are built on it, so what they show is what `serve` would do.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::incident::{Event, Incident, Incidents};
use crate::rules::{Engine, RuleSet};
use crate::signal::{Signal, SignalEvent};
use crate::store::{Store, StoreError};
use crate::telemetry::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Incident(#[from] crate::incident::IncidentError),
}

pub struct Simulation {
    engine: Engine,
    incidents: Incidents,
    store: Store,
    now: DateTime<Utc>,
    tick: Duration,
    next_tick: DateTime<Utc>,
}

/// What a test or a timeline shows of one incident.
#[derive(Debug, Clone, Serialize)]
pub struct IncidentSummary {
    pub key: String,
    pub incident: Incident,
    /// Keys of the incidents it absorbed.
    pub absorbed: Vec<String>,
    /// Key of the incident that absorbed it.
    pub parent: Option<String>,
}

impl Simulation {
    pub async fn new(
        rules: Arc<RuleSet>,
        start: DateTime<Utc>,
        tick: Duration,
    ) -> Result<Simulation, SimError> {
        let store = Store::connect("sqlite::memory:").await?;
        let incidents = Incidents::new(store.clone(), Metrics::new(), true);
        incidents.reset_guard(&rules, None, start).await?;
        Ok(Simulation {
            engine: Engine::new(rules),
            incidents,
            store,
            now: start,
            tick,
            next_tick: start,
        })
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.now
    }

    /// Moves the clock to `t`, evaluating time-driven conditions at every
    /// tick on the way.
    pub async fn advance_to(&mut self, t: DateTime<Utc>) -> Result<(), SimError> {
        let step = chrono::Duration::from_std(self.tick).unwrap_or(chrono::Duration::seconds(1));
        while self.next_tick <= t {
            self.now = self.next_tick;
            let rules = Arc::clone(self.engine.rules());
            for d in self.engine.tick(self.now) {
                self.incidents.apply(d, &rules).await?;
            }
            self.release_stranded(&rules).await?;
            self.incidents.release_holds(self.now, &rules).await?;
            self.next_tick += step;
        }
        self.now = self.now.max(t);
        Ok(())
    }

    /// Receives signals at the current time, exactly as the webhook does:
    /// recorded (dedup by fingerprint) then correlated.
    pub async fn receive(&mut self, mut signals: Vec<Signal>) -> Result<(), SimError> {
        for s in &mut signals {
            s.received_at = self.now;
        }
        let changes = self.store.record_signals(&signals).await?;
        let events: Vec<SignalEvent> = signals
            .into_iter()
            .zip(changes)
            .map(|(signal, change)| SignalEvent { signal, change })
            .collect();
        // One delivery is one batch, as in `serve`.
        let rules = Arc::clone(self.engine.rules());
        for d in self.engine.on_batch(&events, self.now) {
            self.incidents.apply(d, &rules).await?;
        }
        self.release_stranded(&rules).await
    }

    /// Absorbed incidents whose parent ended without acting, released or
    /// closed as `serve` does at every tick.
    async fn release_stranded(&mut self, rules: &RuleSet) -> Result<(), SimError> {
        for key in self.incidents.release_stranded(self.now, rules).await? {
            self.engine.release(&key);
        }
        Ok(())
    }

    /// Every incident so far (open or closed), ordered by key.
    pub async fn incidents(&self) -> Result<Vec<IncidentSummary>, SimError> {
        let all = self.store.incidents(None, None, i64::MAX).await?;
        let key_of = |id: &str| all.iter().find(|i| i.id == id).map(|i| i.group_key.clone());
        let mut out: Vec<IncidentSummary> = all
            .iter()
            .map(|i| IncidentSummary {
                key: i.group_key.clone(),
                absorbed: {
                    let mut a: Vec<String> = all
                        .iter()
                        .filter(|c| c.parent_id.as_deref() == Some(&i.id))
                        .map(|c| c.group_key.clone())
                        .collect();
                    a.sort();
                    a
                },
                parent: i.parent_id.as_deref().and_then(key_of),
                incident: i.clone(),
            })
            .collect();
        out.sort_by(|a, b| (&a.key, a.incident.detected_at).cmp(&(&b.key, b.incident.detected_at)));
        Ok(out)
    }

    /// Every event of every incident, in the order they happened.
    pub async fn events(&self) -> Result<Vec<(Event, String)>, SimError> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for i in self.store.incidents(None, None, i64::MAX).await? {
            if seen.insert(i.id.clone()) {
                for e in self.store.events(&i.id).await? {
                    out.push((e, i.group_key.clone()));
                }
            }
        }
        out.sort_by_key(|(e, _)| (e.at, e.seq));
        Ok(out)
    }
}
