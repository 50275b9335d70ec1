//! Wiring: build the stages, run them, shut them down in order.
//!
//! Intake (HTTP) stops first; the pipeline then drains what was already
//! accepted (its channel closes when the last sender is gone) and the store
//! closes last.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::approval::slack::Slack;
use crate::catalogue::Catalogue;
use crate::config::Config;
use crate::dispatch::Dispatcher;
use crate::dispatch::runner::Runner;
use crate::incident::Incidents;
use crate::reload::Reloader;
use crate::rules::{Decision, Engine, RuleErrors, RuleSet};
use crate::signal::{Change, SignalEvent, Status};
use crate::store::{Store, StoreError};
use crate::telemetry::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("invalid rules:\n{0}")]
    Rules(#[from] RuleErrors),
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
    #[error("watching rule files: {0}")]
    Watch(#[from] notify::Error),
    #[error(transparent)]
    Dispatch(#[from] crate::dispatch::DispatchError),
    #[error(transparent)]
    Slack(#[from] crate::approval::slack::SlackError),
}

/// Shared by every handler.
pub struct AppState {
    pub config: Config,
    pub store: Store,
    pub metrics: Metrics,
    /// Recorded signals on their way to the rule engine. Bounded: when the
    /// engine falls behind, webhook responses slow down instead of memory
    /// growing.
    pub signals: mpsc::Sender<Vec<SignalEvent>>,
    /// Records webhook signals, concurrent requests in one transaction.
    pub intake: crate::sources::Recorder,
    pub reloader: Arc<Reloader>,
    /// For votes from the API (Slack too): the one place incidents change.
    pub incidents: Incidents,
    pub slack: Option<Arc<Slack>>,
}

/// Runs the service until `shutdown` completes.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AppError> {
    run_with(config, listener, shutdown, None).await
}

/// [`run`], with the AWS SDK configuration given instead of taken from the
/// environment's credential chain (tests point it at a fake endpoint).
pub async fn run_with(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    aws: Option<aws_config::SdkConfig>,
) -> Result<(), AppError> {
    let mut store = Store::connect(&config.store.url).await?;
    if let Some(path) = &config.audit.file {
        store = store.with_audit_file(path)?;
    }
    let rules = Arc::new(RuleSet::load(
        &config.rules.paths,
        config.rules.catalogue.as_deref(),
    )?);
    let metrics = Metrics::new();
    metrics.rules_loaded.set(rules.rules.len() as i64);
    let mut incidents = Incidents::new(store.clone(), metrics.clone(), config.dispatch.dry_run);
    let slack = match &config.slack {
        Some(cfg) => {
            let slack = Arc::new(Slack::new(cfg)?);
            let (tx, rx) = mpsc::channel(1024);
            incidents = incidents.with_change_feed(tx);
            tokio::spawn(crate::approval::messages::run(
                Arc::clone(&slack),
                store.clone(),
                metrics.clone(),
                rx,
            ));
            Some(slack)
        }
        None => None,
    };
    incidents.sync_gauges().await?;
    incidents
        .reset_guard(&rules, config.limits.global, Utc::now())
        .await?;

    let mut engine = Engine::new(Arc::clone(&rules));
    for d in restore(&mut engine, &store).await? {
        apply(&incidents, &metrics, &rules.catalogue, d).await;
    }

    let (tx, rx) = mpsc::channel(1024);
    let (reload_tx, reload_rx) = mpsc::channel(1);
    let reloader = Arc::new(Reloader::new(
        config.rules.paths.clone(),
        config.rules.catalogue.clone(),
        &rules,
        reload_tx,
        metrics.clone(),
    ));
    // Held until shutdown: dropping it stops watching.
    let _watcher = if config.rules.watch {
        Some(reloader.watch(std::time::Duration::from_millis(500))?)
    } else {
        None
    };
    #[cfg(unix)]
    reloader.on_sighup()?;
    let state = Arc::new(AppState {
        store: store.clone(),
        metrics: metrics.clone(),
        intake: crate::sources::Recorder::start(store.clone(), tx.clone()),
        signals: tx,
        reloader,
        incidents: incidents.clone(),
        slack,
        config,
    });
    let tick = state.config.rules.evaluation_interval;
    let global = state.config.limits.global;
    let pipeline = tokio::spawn(pipeline(
        engine,
        incidents,
        metrics.clone(),
        rx,
        reload_rx,
        tick,
        global,
    ));

    // Plans run only when dispatch is live; in dry-run nothing is approved.
    let (stop_runner, runner_stopped) = tokio::sync::oneshot::channel::<()>();
    let runner = if state.config.dispatch.dry_run {
        None
    } else {
        let dispatcher = match aws {
            Some(sdk) => Dispatcher::with_sdk_config(sdk, &state.config.aws, metrics.clone()),
            None => Dispatcher::from_env(&state.config.aws, metrics.clone()).await?,
        };
        let runner = Runner::new(
            state.incidents.clone(),
            Arc::new(dispatcher),
            state.config.aws.poll_interval,
            metrics.clone(),
        );
        Some(tokio::spawn(runner.run(async {
            let _ = runner_stopped.await;
        })))
    };
    tracing::info!(addr = %listener.local_addr()?, rules = rules.rules.len(), store = ?store.backend(), dry_run = state.config.dispatch.dry_run, "dr-reactor serving");
    let app = crate::http::router(Arc::clone(&state));
    drop(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    tracing::info!("intake stopped; draining pipeline");
    if let Err(e) = pipeline.await {
        tracing::error!("pipeline task failed: {e}");
    }
    // Steps in flight are abandoned, not finished: their progress is in the
    // event log and the next start (or the next leader) resumes them.
    let _ = stop_runner.send(());
    if let Some(runner) = runner {
        let _ = runner.await;
    }
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// The single consumer of recorded signals: correlates them and applies the
/// decisions in order. One task, so decisions about one group never race.
async fn pipeline(
    mut engine: Engine,
    incidents: Incidents,
    metrics: Metrics,
    mut rx: mpsc::Receiver<Vec<SignalEvent>>,
    mut reloads: mpsc::Receiver<crate::reload::Swap>,
    tick: std::time::Duration,
    global: Option<crate::rules::model::Rate>,
) {
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            batch = rx.recv() => {
                let Some(batch) = batch else { break };
                for ev in batch {
                    for d in engine.on_event(&ev, Utc::now()) {
                        apply(&incidents, &metrics, &engine.rules().catalogue, d).await;
                    }
                    metrics.signals_processed.inc();
                }
                metrics.signals_tracked.set(engine.signals_tracked() as i64);
            }
            Some((rules, done)) = reloads.recv() => {
                if let Err(e) = incidents.reset_guard(&rules, global, Utc::now()).await {
                    metrics.pipeline_errors.with_label_values(&["guard"]).inc();
                    tracing::error!("re-seeding the guard after a reload failed: {e}");
                }
                engine.replace_rules(rules);
                let _ = done.send(());
            }
            _ = interval.tick() => {
                if let Err(e) = incidents.expire_due(Utc::now()).await {
                    metrics.pipeline_errors.with_label_values(&["approval"]).inc();
                    tracing::error!("approval timeouts: {e}");
                }
                for d in engine.tick(Utc::now()) {
                    apply(&incidents, &metrics, &engine.rules().catalogue, d).await;
                }
                metrics.signals_tracked.set(engine.signals_tracked() as i64);
            }
        }
    }
}

/// A failed decision is logged and counted; the signals behind it are in
/// the store, and the next start reconciles from there.
async fn apply(incidents: &Incidents, metrics: &Metrics, catalogue: &Catalogue, d: Decision) {
    if let Err(e) = incidents.apply(d, catalogue).await {
        metrics
            .pipeline_errors
            .with_label_values(&["incident"])
            .inc();
        tracing::error!("applying decision failed: {e}");
    }
}

/// Replays recorded signals into a fresh engine and reconciles it with the
/// open incidents in the store.
async fn restore(engine: &mut Engine, store: &Store) -> Result<Vec<Decision>, StoreError> {
    let now = Utc::now();
    let horizon = engine
        .rules()
        .rules
        .iter()
        .map(|r| r.window)
        .max()
        .unwrap_or_default();
    let since = now - chrono::Duration::from_std(horizon).unwrap_or_default();
    let mut events: Vec<(SignalEvent, DateTime<Utc>)> = Vec::new();
    for signal in store.recent_signals(since).await? {
        let fired_at = signal.received_at;
        let ended = (signal.status == Status::Resolved).then(|| signal.ends_at.unwrap_or(now));
        events.push((
            SignalEvent {
                signal: signal.clone(),
                change: Change::Fired,
            },
            fired_at,
        ));
        if let Some(at) = ended {
            events.push((
                SignalEvent {
                    signal,
                    change: Change::Resolved,
                },
                at.max(fired_at),
            ));
        }
    }
    events.sort_by_key(|(_, at)| *at);
    let open: HashSet<String> = store
        .open_incidents()
        .await?
        .into_iter()
        .map(|i| i.group_key)
        .collect();
    let decisions = engine.restore(&events, &open, now);
    tracing::info!(
        signals = events.len(),
        open_incidents = open.len(),
        decisions = decisions.len(),
        "state restored from store"
    );
    Ok(decisions)
}
