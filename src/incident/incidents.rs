//! The incidents handle and the one way an incident changes
//! ([`Incidents::save`]): checked against the lifecycle, persisted with its
//! event before anyone acts on it.

use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};

use super::{EventNote, Incident, State};
use crate::guard::Guard;
use crate::rules::RuleSet;
use crate::rules::silence::Silence;
use crate::store::{Store, StoreError};
use crate::telemetry::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum IncidentError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("incident {id}: cannot go from {from} to {to}")]
    InvalidTransition { id: String, from: State, to: State },
    #[error("this replica's leader lease ran out; the next leader carries on")]
    NotLeader,
}

/// The interlocks' settings (config `limits`); see the `interlock` module.
#[derive(Debug, Clone, Copy, Default)]
pub struct Interlocks {
    pub failovers: Option<crate::rules::model::Rate>,
    pub failover_cooldown: Option<std::time::Duration>,
}

#[derive(Clone)]
pub struct Incidents {
    pub(super) store: Store,
    pub(super) metrics: Metrics,
    /// The global dry-run switch; rules can also ask for dry-run.
    pub(super) dry_run: bool,
    pub(super) guard: Arc<RwLock<Guard>>,
    /// Woken when an incident becomes approved, for whoever runs plans.
    pub(super) approved: Arc<tokio::sync::Notify>,
    /// Ids of incidents that changed, for the Slack messages.
    pub(super) changes: Option<tokio::sync::mpsc::Sender<String>>,
    /// Failover cap and cooldown (config `limits`).
    pub(super) interlocks: Interlocks,
    /// The silences file's silences, from the rule set in force (the API's
    /// are read from the store at each admission).
    pub(super) file_silences: Arc<RwLock<Arc<Vec<Silence>>>>,
    /// The latest runbook readiness report: a plan that needs a runbook
    /// found not ready says so before anyone approves it.
    pub(super) readiness: crate::readiness::Board,
    /// How drills' plans are dispatched (config `drills.dispatch`).
    pub(super) drill_dispatch: crate::plan::DrillDispatch,
    /// Ids of incidents that just reached a final state, for their
    /// recovery reports.
    pub(super) finished: Option<tokio::sync::mpsc::Sender<String>>,
    /// When failbacks are offered (config `failback`).
    pub(super) failback: super::failback_config::FailbackConfig,
}

impl Incidents {
    /// Starts with a guard that knows no limits: call [`Incidents::reset_guard`]
    /// with the rule set before applying decisions.
    pub fn new(store: Store, metrics: Metrics, dry_run: bool) -> Incidents {
        Incidents {
            store,
            metrics,
            dry_run,
            guard: Arc::new(RwLock::new(Guard::new(&RuleSet::default(), None))),
            approved: Arc::new(tokio::sync::Notify::new()),
            changes: None,
            interlocks: Interlocks::default(),
            file_silences: Arc::default(),
            readiness: Default::default(),
            drill_dispatch: Default::default(),
            finished: None,
            failback: Default::default(),
        }
    }

    /// When failbacks are offered, and who approves them.
    pub fn with_failback(mut self, config: super::failback_config::FailbackConfig) -> Incidents {
        self.failback = config;
        self
    }

    /// Where the ids of incidents that reach a final state are sent.
    pub fn with_finish_feed(mut self, tx: tokio::sync::mpsc::Sender<String>) -> Incidents {
        self.finished = Some(tx);
        self
    }

    /// How drills' plans are dispatched.
    pub fn with_drill_dispatch(mut self, mode: crate::plan::DrillDispatch) -> Incidents {
        self.drill_dispatch = mode;
        self
    }

    /// Where planning reads runbook readiness from.
    pub fn with_readiness(mut self, board: crate::readiness::Board) -> Incidents {
        self.readiness = board;
        self
    }

    /// The failover cap and cooldown to hold admissions to.
    pub fn with_interlocks(mut self, interlocks: Interlocks) -> Incidents {
        self.interlocks = interlocks;
        self
    }

    /// Reports every change to `tx` (after it is persisted).
    pub fn with_change_feed(mut self, tx: tokio::sync::mpsc::Sender<String>) -> Incidents {
        self.changes = Some(tx);
        self
    }

    /// The same incidents, written through a fenced store: the leader's
    /// handle. The guard, the approval wake-up and the change feed are
    /// shared, so a vote taken by the HTTP side wakes the leader's runner.
    pub fn fenced(&self, fence: crate::store::Fence) -> Incidents {
        Incidents {
            store: self.store.fenced(fence),
            ..self.clone()
        }
    }

    /// Tells the change feed an incident changed in a way its message shows
    /// (a state change does so itself; step progress calls this).
    pub fn changed(&self, id: &str) {
        if let Some(tx) = &self.changes
            && tx.try_send(id.to_owned()).is_err()
        {
            // The Slack task is behind; the next change re-renders the
            // whole message from the store anyway.
            tracing::warn!(incident = %id, "change feed full; message update skipped");
        }
    }

    /// Notified whenever an incident becomes approved.
    pub fn approved_signal(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.approved)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Sets the open-incident gauge from the store (after a restart).
    pub async fn sync_gauges(&self) -> Result<(), StoreError> {
        self.metrics.incidents_open.reset();
        for (scenario, drill, n) in self.store.open_counts().await? {
            self.metrics
                .incidents_open
                .with_label_values(&[&scenario, crate::telemetry::drill_label(drill)])
                .set(n);
        }
        Ok(())
    }

    /// The one way an incident changes: a state change is checked against
    /// the lifecycle, and the new incident is persisted with its event (and a
    /// version check) before the caller may act on it.
    pub async fn save(
        &self,
        before: &Incident,
        after: Incident,
        at: DateTime<Utc>,
        note: EventNote,
    ) -> Result<Incident, IncidentError> {
        // Reviving a failed plan is an operator's retry and nothing else;
        // reviving a suppressed one is a release from its parent.
        let revived = match (before.state, after.state) {
            (State::Failed, State::Approved) => Some("step_retry"),
            (State::Suppressed, State::Detected) => Some("released"),
            _ => None,
        };
        if before.state != after.state
            && (!before.state.can_become(after.state)
                || revived.is_some_and(|kind| note.kind != kind))
        {
            return Err(IncidentError::InvalidTransition {
                id: before.id.clone(),
                from: before.state,
                to: after.state,
            });
        }
        // An incident no signal is attached to (declared by hand, or a
        // failback) has no evidence group whose end would close it: it is
        // closed when it ends, so that its key is free again and the
        // open-incident views do not keep it forever.
        let closes = after.state.is_terminal()
            && after.closed_at.is_none()
            && !self.store.has_signals(&after.id).await?;
        let after = Incident {
            closed_at: if closes { Some(at) } else { after.closed_at },
            ..after
        };
        let saved = self
            .store
            .update_incident(before, &after, at, &note)
            .await?;
        if closes {
            self.metrics
                .incidents_open
                .with_label_values(&[&saved.scenario, crate::telemetry::drill_label(saved.drill)])
                .dec();
        }
        self.changed(&saved.id);
        if before.state != saved.state {
            self.metrics
                .incident_transitions
                .with_label_values(&[saved.state.as_str()])
                .inc();
            tracing::info!(incident = %saved.id, from = %before.state, to = %saved.state, actor = %note.actor, reason = %note.reason, "incident transition");
            if saved.state.is_terminal()
                && let Some(tx) = &self.finished
                && tx.try_send(saved.id.clone()).is_err()
            {
                tracing::warn!(incident = %saved.id, "report queue full: this incident's report is not archived");
            }
        }
        Ok(saved)
    }

    /// A state change and nothing else.
    pub async fn transition(
        &self,
        inc: &Incident,
        to: State,
        at: DateTime<Utc>,
        note: EventNote,
    ) -> Result<Incident, IncidentError> {
        let after = Incident {
            state: to,
            ..inc.clone()
        };
        self.save(inc, after, at, note).await
    }
}
