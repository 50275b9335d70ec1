//! Leadership: which replica correlates, asks for approval and dispatches.
//!
//! Every replica takes webhooks, Kafka events, Slack interactions and API
//! calls and records them in the shared store; exactly one, the holder of
//! the lease in PostgreSQL, runs the rule engine and the plans. The lease has
//! a fencing token that grows at every takeover; the leader writes through a
//! [`Store::fenced`] handle, whose every write transaction checks the token,
//! so a leader that was paused past its lease (GC, SIGSTOP, a frozen VM) and
//! wakes up cannot record a decision, and so cannot dispatch one.
//!
//! The local side: a leader also counts its lease down on its own monotonic
//! clock from before each renewal, and [`Leadership::is_valid`] says no once
//! that runs out. The runner asks it right before every AWS call, so a
//! process that wakes from a pause does not even try.
//!
//! On SQLite there is one process and no lease: [`Leadership::single`] is
//! the leader from the start.

use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::store::{Fence, Store, StoreError};
use crate::telemetry::Metrics;

/// `ha:` in the config; used when the store is PostgreSQL.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaConfig {
    /// How long a lease lasts without renewal: a new leader takes over at
    /// most this long (plus one try interval) after the old one dies.
    #[serde(default = "default_ttl", with = "crate::primitives::duration")]
    pub lease_ttl: Duration,
    /// This replica's name in the lease and in logs; default: the host name
    /// (the pod name on Kubernetes) with a random suffix, so that a
    /// restarted process never passes for the one before it.
    #[serde(default)]
    pub replica_id: Option<String>,
}

impl Default for HaConfig {
    fn default() -> Self {
        HaConfig {
            lease_ttl: default_ttl(),
            replica_id: None,
        }
    }
}

fn default_ttl() -> Duration {
    Duration::from_secs(10)
}

/// What this replica does now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Follower,
    /// Runs the engine and the plans; writes through the fence when there is
    /// a lease (PostgreSQL), directly when there is not (SQLite).
    Leader {
        fence: Option<Fence>,
    },
}

pub struct Leadership {
    replica: String,
    ttl: Duration,
    role: watch::Sender<Role>,
    /// Until when this process may act as leader, by its own clock.
    valid_until: Mutex<Option<Instant>>,
    metrics: Metrics,
}

impl Leadership {
    /// The only process: leader from the start, for good.
    pub fn single(metrics: Metrics) -> Leadership {
        Leadership {
            replica: replica_name(None),
            ttl: Duration::MAX,
            role: watch::Sender::new(Role::Leader { fence: None }),
            valid_until: Mutex::new(None),
            metrics,
        }
    }

    /// One of several replicas: a follower until [`Leadership::run`] wins
    /// the lease.
    pub fn elected(cfg: &HaConfig, metrics: Metrics) -> Leadership {
        Leadership {
            replica: replica_name(cfg.replica_id.as_deref()),
            ttl: cfg.lease_ttl,
            role: watch::Sender::new(Role::Follower),
            valid_until: Mutex::new(None),
            metrics,
        }
    }

    pub fn replica(&self) -> &str {
        &self.replica
    }

    pub fn role(&self) -> Role {
        self.role.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Role> {
        self.role.subscribe()
    }

    /// Whether this process may act as leader right now: it leads and, with
    /// a lease, the lease has not run out by this process's own clock.
    pub fn is_valid(&self) -> bool {
        match &*self.role.borrow() {
            Role::Follower => false,
            Role::Leader { fence: None } => true,
            Role::Leader { fence: Some(_) } => self
                .valid_until
                .lock()
                .expect("lock not poisoned")
                .is_some_and(|until| Instant::now() < until),
        }
    }

    /// Tries for the lease, keeps it renewed, and steps down when it is
    /// lost or cannot be renewed in time; until `stop`, then gives it up so
    /// another replica takes over at once. Renewal runs every third of the
    /// lease, so two renewals may fail (a database blip) before it lapses.
    pub async fn run(&self, store: Store, stop: impl std::future::Future<Output = ()>) {
        let every = self.ttl / 3;
        tokio::pin!(stop);
        loop {
            let started = Instant::now();
            let current = match &*self.role.borrow() {
                Role::Leader { fence } => fence.clone(),
                Role::Follower => None,
            };
            match current {
                None => match store.acquire_lease(&self.replica, self.ttl).await {
                    Ok(Some(token)) => {
                        self.lead(
                            Fence {
                                holder: self.replica.clone(),
                                token,
                            },
                            started,
                        );
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!("trying for the leader lease: {e}"),
                },
                Some(fence) => match store.renew_lease(&fence, self.ttl).await {
                    Ok(true) => self.extend(started),
                    Ok(false) => self.step_down("the lease was taken over"),
                    Err(e) => {
                        tracing::warn!("renewing the leader lease: {e}");
                        if !self.is_valid() {
                            self.step_down("the lease ran out while the store was unreachable");
                        }
                    }
                },
            }
            tokio::select! {
                _ = &mut stop => break,
                _ = tokio::time::sleep_until(started + every) => {}
            }
        }
        if let Role::Leader { fence: Some(fence) } = self.role() {
            self.step_down("shutting down");
            if let Err(e) = store.release_lease(&fence).await {
                tracing::warn!("giving up the leader lease: {e}; it runs out by itself");
            }
        }
    }

    fn lead(&self, fence: Fence, asked_at: Instant) {
        self.extend(asked_at);
        tracing::warn!(replica = %self.replica, token = fence.token, "took the leader lease; this replica now correlates and dispatches");
        self.metrics
            .leadership_changes
            .with_label_values(&["leader"])
            .inc();
        self.role.send_replace(Role::Leader { fence: Some(fence) });
    }

    /// The lease now runs until `ttl` after the request was sent: counted
    /// from before the round trip, so this process never thinks it holds
    /// the lease longer than the store does.
    fn extend(&self, asked_at: Instant) {
        *self.valid_until.lock().expect("lock not poisoned") = Some(asked_at + self.ttl);
    }

    fn step_down(&self, why: &str) {
        *self.valid_until.lock().expect("lock not poisoned") = None;
        if self.role.send_replace(Role::Follower) != Role::Follower {
            tracing::warn!(replica = %self.replica, "stepped down as leader: {why}");
            self.metrics
                .leadership_changes
                .with_label_values(&["follower"])
                .inc();
        }
    }

    /// For `/readyz`: who this is, what it does, and who leads.
    pub async fn status(&self, store: &Store) -> Result<serde_json::Value, StoreError> {
        let role = match self.role() {
            Role::Leader { .. } => "leader",
            Role::Follower => "follower",
        };
        let lease = match store.logs_signals() {
            true => store.lease().await?,
            false => None,
        };
        Ok(serde_json::json!({
            "replica": self.replica,
            "role": role,
            "lease": lease,
        }))
    }
}

fn replica_name(configured: Option<&str>) -> String {
    if let Some(name) = configured {
        return name.to_owned();
    }
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "dr-reactor".into());
    format!("{host}-{:06x}", fastrand::u32(..0x100_0000))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elected(ttl: Duration) -> Leadership {
        Leadership::elected(
            &HaConfig {
                lease_ttl: ttl,
                replica_id: Some("replica-a".into()),
            },
            Metrics::new(),
        )
    }

    fn fence(token: i64) -> Fence {
        Fence {
            holder: "replica-a".into(),
            token,
        }
    }

    #[test]
    fn alone_on_sqlite_it_leads_for_good() {
        let l = Leadership::single(Metrics::new());
        assert_eq!(l.role(), Role::Leader { fence: None });
        assert!(l.is_valid());
    }

    #[test]
    fn a_lease_counts_down_from_when_it_was_asked_for() {
        let ttl = Duration::from_secs(10);
        let l = elected(ttl);
        assert_eq!(l.role(), Role::Follower);
        assert!(!l.is_valid(), "a follower never acts");

        let mut roles = l.subscribe();
        l.lead(fence(7), Instant::now());
        assert!(roles.has_changed().unwrap());
        assert_eq!(
            *roles.borrow_and_update(),
            Role::Leader {
                fence: Some(fence(7))
            }
        );
        assert!(l.is_valid());

        // A renewal whose request left a lease ago grants nothing: the
        // store may already have let the lease go (a paused process).
        l.extend(Instant::now() - ttl);
        assert!(!l.is_valid(), "ran out by this process's clock");
        assert_eq!(
            l.role(),
            Role::Leader {
                fence: Some(fence(7))
            },
            "until the elector says otherwise"
        );
    }

    #[test]
    fn stepping_down_is_counted_once() {
        let l = elected(Duration::from_secs(10));
        l.lead(fence(1), Instant::now());
        l.step_down("the lease was taken over");
        l.step_down("the lease was taken over");
        assert_eq!(l.role(), Role::Follower);
        assert!(!l.is_valid());
        let changes = |to: &str| l.metrics.leadership_changes.with_label_values(&[to]).get();
        assert_eq!((changes("leader"), changes("follower")), (1, 1));
    }

    #[test]
    fn replica_names_differ_between_processes_of_one_host() {
        assert_ne!(replica_name(None), replica_name(None));
        assert_eq!(replica_name(Some("dr-0")), "dr-0");
    }
}
