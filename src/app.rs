//! Wiring: build the stages, run them, shut them down in order.
//!
//! Intake (HTTP) stops first; the pipeline then drains what was already
//! accepted (its channel closes when the last sender is gone) and the store
//! closes last.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::approval::slack::Slack;
use crate::config::Config;
use crate::dispatch::Dispatcher;
use crate::http::AppState;
use crate::incident::Incidents;
use crate::leadership::Leadership;
use crate::pipeline::Pipeline;
use crate::primitives::supervise;
use crate::reload::Reloader;
use crate::rules::{RuleErrors, RuleSet};
use crate::store::{Store, StoreError};
use crate::telemetry::Metrics;

/// Recorded batches waiting for the rule engine, at most. A batch is one
/// group commit (at most 500 signals) or one Kafka poll, so this bounds the
/// parsed signals held in memory. When the engine falls behind, intake
/// waits (webhook answers come later, Kafka polls less) instead of growing
/// a queue: with 1,024 batches, 100,000 new signals joining open incidents
/// left half of them parsed and waiting, and the server's memory doubled.
const ENGINE_QUEUE_BATCHES: usize = 16;

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
    #[error(transparent)]
    Kafka(#[from] crate::sources::kafka::KafkaError),
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
    let metrics = Metrics::new();
    // Bound before anything starts, so a taken port fails the start.
    let metrics_listener = match config.server.metrics_listen {
        Some(addr) => Some(TcpListener::bind(addr).await?),
        None => None,
    };
    let mut store = Store::connect(&config.store.url).await?;
    if let Some(path) = &config.audit.file {
        store = store.with_audit_file(path, &metrics)?;
    }
    // The pipeline's evidence is written in intake's group commits (see
    // `Recorder`): one writer on SQLite's one writing connection.
    let (store, evidence) = store.share_writes();
    let rules = Arc::new(
        RuleSet::load(&config.rules.paths, config.rules.catalogue.as_deref())?
            .with_default_hold(config.rules.default_hold)
            .with_silences_file(config.silences.file.as_deref())?,
    );
    metrics.rules_loaded.set(rules.rules.len() as i64);
    // The latest runbook readiness report: written by the leader's
    // checker, read by planning and /readyz.
    let readiness = crate::readiness::Board::default();
    let mut incidents = Incidents::new(store.clone(), metrics.clone(), config.dispatch.dry_run)
        .with_interlocks(crate::incident::Interlocks {
            failovers: config.limits.failovers,
            failover_cooldown: config.limits.failover_cooldown,
        })
        .with_readiness(readiness.clone())
        .with_drill_dispatch(config.drills.dispatch)
        .with_failback(config.failback.clone());
    incidents.sync_gauges().await?;
    let leadership = Arc::new(if store.logs_signals() {
        Leadership::elected(&config.ha, metrics.clone())
    } else {
        Leadership::single(metrics.clone())
    });
    let slack = match &config.slack {
        Some(cfg) => {
            let slack = Arc::new(Slack::new(cfg)?);
            let (tx, rx) = mpsc::channel(1024);
            incidents = incidents.with_change_feed(tx);
            let (slack2, store2, metrics2) = (Arc::clone(&slack), store.clone(), metrics.clone());
            let leadership2 = Arc::clone(&leadership);
            // The feed outlives a panic of the task that reads it.
            let rx = Arc::new(tokio::sync::Mutex::new(rx));
            supervise::spawn(
                "slack_messages",
                metrics.task_restarts.with_label_values(&["slack_messages"]),
                move || {
                    let (slack, store, metrics, rx) = (
                        Arc::clone(&slack2),
                        store2.clone(),
                        metrics2.clone(),
                        Arc::clone(&rx),
                    );
                    let role = leadership2.subscribe();
                    async move {
                        let mut rx = rx.lock().await;
                        crate::approval::messages::run(slack, store, metrics, &mut rx, role).await;
                    }
                },
            );
            Some(slack)
        }
        None => None,
    };
    // Plans run only when dispatch is live; in dry-run nothing is approved.
    let dispatcher = if config.dispatch.dry_run {
        None
    } else {
        Some(Arc::new(match aws.clone() {
            Some(sdk) => Dispatcher::with_sdk_config(sdk, &config.aws, metrics.clone()),
            None => Dispatcher::from_env(&config.aws, metrics.clone()).await?,
        }))
    };

    let (tx, rx) = mpsc::channel(ENGINE_QUEUE_BATCHES);
    let in_force = crate::sources::RulesInForce::new(Arc::clone(&rules));
    let handoff = crate::sources::Handoff::new(tx.clone(), in_force.clone(), metrics.clone())
        .with_heartbeat(config.failback.heartbeat.as_deref());
    // Declaring an incident by hand takes the rules the engine runs.
    let rules_in_force = in_force.clone();
    // Each incident that finishes gets its recovery report: timed into the
    // histograms, and written to reports.dir if set.
    let (finished_tx, finished_rx) = mpsc::channel(1024);
    incidents = incidents.with_finish_feed(finished_tx);
    let report_rules = in_force.clone();
    let report_bucket = match &config.reports.s3 {
        Some(cfg) => Some(crate::report::archive::S3Archive::new(cfg, aws.clone()).await),
        None => None,
    };
    tokio::spawn(crate::report::archive::run(
        finished_rx,
        store.clone(),
        move || report_rules.get(),
        metrics.clone(),
        config.reports.dir.clone(),
        report_bucket,
    ));
    // Kafka is intake like the webhook: it holds a sender, so it must stop
    // before the pipeline can drain.
    let kafka = match &config.kafka {
        Some(cfg) => Some(crate::sources::kafka::start(
            cfg,
            store.clone(),
            handoff.clone(),
            crate::sources::kafka::KafkaMetrics::new(&metrics.registry),
            config.intake.limits.clone(),
            metrics.task_restarts.with_label_values(&["kafka_consumer"]),
        )?),
        None => None,
    };
    let (reload_tx, reload_rx) = mpsc::channel(1);
    let reloader = Arc::new(Reloader::new(
        config.rules.paths.clone(),
        config.rules.catalogue.clone(),
        config.silences.file.clone(),
        config.rules.default_hold,
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
    // The API's tokens, as digests; re-read from the config file (and the
    // environment) on SIGHUP and on `POST /-/reload`, so rotating one
    // needs no restart.
    let credentials = {
        let source: Option<crate::http::credentials::Source> =
            config
                .path
                .clone()
                .map(|path| -> crate::http::credentials::Source {
                    Arc::new(move || {
                        Config::load(&path)
                            .map(|c| c.api.tokens())
                            .map_err(|e| e.to_string())
                    })
                });
        Arc::new(crate::http::credentials::Credentials::new(
            config.api.tokens(),
            source,
        ))
    };
    #[cfg(unix)]
    {
        // logrotate moves the audit file away and sends SIGHUP.
        let store = store.clone();
        let (credentials, metrics) = (Arc::clone(&credentials), metrics.clone());
        reloader.on_sighup(move || {
            store.reopen_audit_file();
            credentials.reload_counted(&metrics, "SIGHUP");
        })?;
    }
    // Runbooks are checked where plans would run them: with live dispatch.
    let checker = dispatcher.as_ref().map(|d| {
        Arc::new(crate::readiness::Checker::new(
            Arc::clone(d),
            readiness.clone(),
            metrics.clone(),
            slack.clone(),
            config.readiness.interval,
        ))
    });
    let mut pipeline = Pipeline::new(
        Arc::clone(&rules),
        incidents.clone(),
        metrics.clone(),
        config.limits.global,
        dispatcher.map(|d| (d, config.aws.poll_interval)),
        Arc::clone(&leadership),
        in_force,
    )
    .with_engine_limits(config.rules.engine_limits())
    .with_retention(config.retention);
    if let Some(checker) = checker {
        pipeline = pipeline.with_readiness(checker);
    }
    supervise::spawn(
        "heap_trim",
        metrics.task_restarts.with_label_values(&["heap_trim"]),
        crate::primitives::heap::trim_periodically,
    );
    if store.has_wal() {
        let store = store.clone();
        let not_copied = metrics.store_wal_not_copied.clone();
        supervise::spawn(
            "wal_checkpoint",
            metrics.task_restarts.with_label_values(&["wal_checkpoint"]),
            move || store.clone().checkpoint_periodically(not_copied.clone()),
        );
    }
    // Started before the pipeline follows its role: a term's restore may
    // write evidence, which this writer writes.
    let intake = crate::sources::Recorder::start(
        store.clone(),
        handoff,
        evidence,
        metrics.task_restarts.with_label_values(&["recorder"]),
    );
    // Alone on SQLite this process leads from the start: rebuild the engine
    // before serving, so the first request already meets restored state.
    pipeline.follow(leadership.role()).await;
    let tick = config.rules.evaluation_interval;
    let (groups, groups_asked) = crate::pipeline::Groups::channel();
    let (pipeline, pipeline_running) = pipeline.spawn(
        crate::pipeline::Inputs {
            signals: rx,
            reloads: reload_rx,
            role: leadership.subscribe(),
            groups: groups_asked,
        },
        tick,
    );
    let state = Arc::new(AppState {
        store: store.clone(),
        metrics: metrics.clone(),
        intake,
        signals: tx,
        pipeline: pipeline_running,
        reloader,
        incidents,
        slack,
        leadership: Arc::clone(&leadership),
        kafka: kafka.as_ref().map(|k| k.health.clone()),
        webhook: config.webhook,
        server: config.server.clone(),
        limits: config.intake.limits,
        credentials,
        directory: config.approval.directory,
        rules: rules_in_force,
        readiness,
        console: config.console,
        groups,
    });
    let log_listener = store.listen_for_signal_log();
    let (stop_elector, elector_stopped) = tokio::sync::watch::channel(false);
    let elector = store.logs_signals().then(|| {
        let (leadership, store) = (Arc::clone(&leadership), store.clone());
        let restarts = metrics.task_restarts.with_label_values(&["lease_elector"]);
        supervise::spawn("lease_elector", restarts, move || {
            let (leadership, store) = (Arc::clone(&leadership), store.clone());
            let mut stopped = elector_stopped.clone();
            async move {
                leadership
                    .run(store, async {
                        let _ = stopped.wait_for(|stop| *stop).await;
                    })
                    .await
            }
        })
        .0
    });
    tracing::info!(addr = %listener.local_addr()?, metrics = ?metrics_listener.as_ref().and_then(|l| l.local_addr().ok()), rules = rules.rules.len(), store = ?store.backend(), replica = %leadership.replica(), dry_run = config.dispatch.dry_run, "dr-reactor serving");
    let app = crate::http::router(Arc::clone(&state));
    let metrics_app = crate::http::metrics_router(Arc::clone(&state));
    drop(state);
    // One shutdown for both listeners.
    let (stop, stopping) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        // A dropped sender means the shutdown task is gone: stop too.
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let metrics_server = metrics_listener.map(|l| {
        let (limits, metrics) = (config.server.clone(), metrics.clone());
        let stopped = stopped(stopping.clone());
        tokio::spawn(
            async move { crate::http::serve(l, metrics_app, &limits, metrics, stopped).await },
        )
    });
    crate::http::serve(
        listener,
        app,
        &config.server,
        metrics.clone(),
        stopped(stopping),
    )
    .await?;
    if let Some(server) = metrics_server
        && let Ok(Err(e)) = server.await
    {
        tracing::warn!("metrics listener: {e}");
    }
    if let Some(kafka) = kafka {
        kafka.stop().await;
    }
    tracing::info!("intake stopped; draining pipeline");
    // The pipeline ends its term on the way out: plans in flight are
    // abandoned, not finished; their progress is in the event log and the
    // next start (or the next leader) resumes them.
    if let Err(e) = pipeline.await {
        tracing::error!("pipeline task failed: {e}");
    }
    if let Some(log_listener) = log_listener {
        log_listener.abort();
    }
    // Only then give the lease up, so the next leader starts after this one
    // has stopped acting.
    let _ = stop_elector.send(true);
    if let Some(elector) = elector {
        let _ = elector.await;
    }
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}
