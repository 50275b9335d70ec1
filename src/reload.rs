//! Hot reload of rules and catalogue: on file change (debounced), SIGHUP, or
//! `POST /-/reload`. All three go through [`Reloader::reload`], one at a
//! time. An invalid set is rejected whole: the running one stays, and the
//! errors are logged, counted and shown in `/readyz`.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;

use crate::rules::{RuleErrors, RuleSet};
use crate::telemetry::Metrics;

/// What `/readyz` says about rules.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RulesStatus {
    pub loaded: bool,
    pub rules: usize,
    pub files: usize,
    pub services: usize,
    /// The last rejected reload's errors, until a reload succeeds.
    pub last_error: Option<String>,
    /// When the rules in force were loaded.
    pub loaded_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When the last reload was rejected, until a reload succeeds; its
    /// errors one by one (file:line: message), for the console.
    pub rejected_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// A new rule set for the pipeline, and who to tell when it is in force.
pub type Swap = (Arc<RuleSet>, tokio::sync::oneshot::Sender<()>);

pub struct Reloader {
    paths: Vec<PathBuf>,
    catalogue: Option<PathBuf>,
    /// `silences.file`, loaded with the rules so a bad one fails the reload.
    silences: Option<PathBuf>,
    /// `rules.default_hold`, applied to every set loaded.
    default_hold: std::time::Duration,
    /// To the pipeline, which swaps the engine's rules between two signals
    /// and acknowledges, so a reload returns only once it is in force.
    apply: mpsc::Sender<Swap>,
    status: RwLock<RulesStatus>,
    metrics: Metrics,
    one_at_a_time: tokio::sync::Mutex<()>,
}

impl Reloader {
    pub fn new(
        paths: Vec<PathBuf>,
        catalogue: Option<PathBuf>,
        silences: Option<PathBuf>,
        default_hold: std::time::Duration,
        running: &RuleSet,
        apply: mpsc::Sender<Swap>,
        metrics: Metrics,
    ) -> Reloader {
        let r = Reloader {
            paths,
            catalogue,
            silences,
            default_hold,
            apply,
            status: RwLock::new(RulesStatus::default()),
            metrics,
            one_at_a_time: tokio::sync::Mutex::new(()),
        };
        r.loaded(running);
        r
    }

    pub fn status(&self) -> RulesStatus {
        self.status.read().expect("lock not poisoned").clone()
    }

    fn loaded(&self, set: &RuleSet) {
        *self.status.write().expect("lock not poisoned") = RulesStatus {
            loaded: true,
            rules: set.rules.len(),
            files: set.files.len(),
            services: set.catalogue.services.len(),
            last_error: None,
            loaded_at: Some(chrono::Utc::now()),
            rejected_at: None,
            errors: Vec::new(),
        };
        self.metrics.rules_loaded.set(set.rules.len() as i64);
    }

    /// Loads the files again; on success the pipeline switches to the new
    /// set, on failure the running set stays.
    pub async fn reload(&self, trigger: &str) -> Result<Arc<RuleSet>, RuleErrors> {
        let _one = self.one_at_a_time.lock().await;
        let (paths, catalogue, silences, hold) = (
            self.paths.clone(),
            self.catalogue.clone(),
            self.silences.clone(),
            self.default_hold,
        );
        let loaded = tokio::task::spawn_blocking(move || {
            RuleSet::load(&paths, catalogue.as_deref())
                .map(|set| set.with_default_hold(hold))
                .and_then(|set| set.with_silences_file(silences.as_deref()))
        })
        .await
        .unwrap_or_else(|e| {
            Err(RuleErrors(vec![crate::rules::RuleError {
                file: PathBuf::new(),
                line: 0,
                column: 0,
                message: format!("rule loading panicked: {e}"),
            }]))
        });
        match loaded {
            Ok(set) => {
                let set = Arc::new(set);
                let (done, applied) = tokio::sync::oneshot::channel();
                if self.apply.send((Arc::clone(&set), done)).await.is_err()
                    || applied.await.is_err()
                {
                    tracing::warn!(trigger, "rules reloaded while shutting down; not applied");
                }
                self.loaded(&set);
                self.metrics
                    .rule_reloads
                    .with_label_values(&["success"])
                    .inc();
                tracing::info!(trigger, rules = set.rules.len(), "rules reloaded");
                Ok(set)
            }
            Err(errors) => {
                self.metrics
                    .rule_reloads
                    .with_label_values(&["error"])
                    .inc();
                tracing::error!(
                    trigger,
                    "rule reload rejected; the running rules stay:\n{errors}"
                );
                let mut status = self.status.write().expect("lock not poisoned");
                status.last_error = Some(errors.to_string());
                status.rejected_at = Some(chrono::Utc::now());
                status.errors = errors.0.iter().map(|e| e.to_string()).collect();
                drop(status);
                Err(errors)
            }
        }
    }

    /// Watches the rule files and the catalogue; a burst of changes (an
    /// editor's save, a git checkout) becomes one reload after `debounce`.
    /// The returned watcher must be kept alive.
    pub fn watch(
        self: &Arc<Self>,
        debounce: Duration,
    ) -> Result<notify::RecommendedWatcher, notify::Error> {
        use notify::Watcher as _;
        let (tx, mut rx) = mpsc::channel::<()>(1);
        let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            if ev.is_ok_and(|e| !e.kind.is_access()) {
                // Full means a reload is already pending.
                let _ = tx.try_send(());
            }
        })?;
        for p in self
            .paths
            .iter()
            .chain(self.catalogue.iter())
            .chain(self.silences.iter())
        {
            watcher.watch(p, notify::RecursiveMode::Recursive)?;
        }
        let me = Arc::clone(self);
        tokio::spawn(async move {
            while rx.recv().await.is_some() {
                tokio::time::sleep(debounce).await;
                while rx.try_recv().is_ok() {}
                let _ = me.reload("file change").await;
            }
        });
        Ok(watcher)
    }

    /// Reloads on every SIGHUP, after `also` (what else SIGHUP means to
    /// the service, such as reopening files logrotate moved).
    #[cfg(unix)]
    pub fn on_sighup(self: &Arc<Self>, also: impl Fn() + Send + 'static) -> std::io::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = signal(SignalKind::hangup())?;
        let me = Arc::clone(self);
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                also();
                let _ = me.reload("SIGHUP").await;
            }
        });
        Ok(())
    }
}
