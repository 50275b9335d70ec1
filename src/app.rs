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
use crate::incident::{IncidentError, Incidents, State};
use crate::leadership::{Leadership, Role};
use crate::reload::Reloader;
use crate::rules::model::Rate;
use crate::rules::{Decision, Engine, RuleErrors, RuleSet};
use crate::signal::{Change, SignalEvent, Status};
use crate::store::{Fence, Store, StoreError};
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
    #[error(transparent)]
    Kafka(#[from] crate::sources::kafka::KafkaError),
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
    /// Who leads; `/readyz` shows it.
    pub leadership: Arc<Leadership>,
    /// The Kafka consumer's connection, for `/readyz`.
    pub kafka: Option<crate::sources::kafka::Health>,
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
    let leadership = Arc::new(if store.logs_signals() {
        Leadership::elected(&config.ha, metrics.clone())
    } else {
        Leadership::single(metrics.clone())
    });
    // Plans run only when dispatch is live; in dry-run nothing is approved.
    let dispatcher = if config.dispatch.dry_run {
        None
    } else {
        Some(Arc::new(match aws {
            Some(sdk) => Dispatcher::with_sdk_config(sdk, &config.aws, metrics.clone()),
            None => Dispatcher::from_env(&config.aws, metrics.clone()).await?,
        }))
    };

    let (tx, rx) = mpsc::channel(1024);
    // Kafka is intake like the webhook: it holds a sender, so it must stop
    // before the pipeline can drain.
    let kafka = match &config.kafka {
        Some(cfg) => Some(crate::sources::kafka::start(
            cfg,
            store.clone(),
            tx.clone(),
            crate::sources::kafka::KafkaMetrics::new(&metrics.registry),
        )?),
        None => None,
    };
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
    let mut pipeline = Pipeline {
        rules: Arc::clone(&rules),
        incidents: incidents.clone(),
        metrics: metrics.clone(),
        global: config.limits.global,
        dispatch: dispatcher.map(|d| (d, config.aws.poll_interval)),
        leadership: Arc::clone(&leadership),
        term: None,
    };
    // Alone on SQLite this process leads from the start: rebuild the engine
    // before serving, so the first request already meets restored state.
    pipeline.follow(leadership.role()).await;
    let tick = config.rules.evaluation_interval;
    let state = Arc::new(AppState {
        store: store.clone(),
        metrics: metrics.clone(),
        intake: crate::sources::Recorder::start(store.clone(), tx.clone()),
        signals: tx,
        reloader,
        incidents,
        slack,
        leadership: Arc::clone(&leadership),
        kafka: kafka.as_ref().map(|k| k.health.clone()),
        config,
    });
    let log_listener = store.listen_for_signal_log();
    let pipeline = tokio::spawn(pipeline.run(rx, reload_rx, leadership.subscribe(), tick));
    let (stop_elector, elector_stopped) = tokio::sync::oneshot::channel::<()>();
    let elector = store.logs_signals().then(|| {
        let (leadership, store) = (Arc::clone(&leadership), store.clone());
        tokio::spawn(async move {
            leadership
                .run(store, async {
                    let _ = elector_stopped.await;
                })
                .await
        })
    });
    tracing::info!(addr = %listener.local_addr()?, rules = rules.rules.len(), store = ?store.backend(), replica = %leadership.replica(), dry_run = state.config.dispatch.dry_run, "dr-reactor serving");
    let app = crate::http::router(Arc::clone(&state));
    drop(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
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
    let _ = stop_elector.send(());
    if let Some(elector) = elector {
        let _ = elector.await;
    }
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// The single consumer of recorded signals. One task, so decisions about
/// one group never race. It lives as long as the process and keeps the
/// running rules; while this replica leads it also holds a [`Term`]: the
/// rule engine, the leader's fenced incidents, and the plan runner.
struct Pipeline {
    rules: Arc<RuleSet>,
    /// The unfenced incidents; a term derives its fenced handle from them.
    incidents: Incidents,
    metrics: Metrics,
    global: Option<Rate>,
    dispatch: Option<(Arc<Dispatcher>, std::time::Duration)>,
    leadership: Arc<Leadership>,
    term: Option<Term>,
}

/// What a leader holds while it leads.
struct Term {
    engine: Engine,
    incidents: Incidents,
    /// The last signal-log entry the engine has consumed (PostgreSQL).
    cursor: i64,
    pruned_at: std::time::Instant,
    /// A decision could not be applied: rebuild from the store at the next
    /// tick rather than go on from state the store does not have.
    stale: bool,
    runner: Option<(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    )>,
}

/// Signal-log entries read per query, and how long consumed ones are kept
/// (for a look after the fact; the engine never reads them again).
const LOG_PAGE: i64 = 1000;
/// Signal events taken from the intake channel at once, at most.
const MAX_DRAIN: usize = 2000;
const LOG_KEEP: chrono::Duration = chrono::Duration::minutes(10);

impl Pipeline {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Vec<SignalEvent>>,
        mut reloads: mpsc::Receiver<crate::reload::Swap>,
        mut role: tokio::sync::watch::Receiver<Role>,
        tick: std::time::Duration,
    ) {
        let log = self.incidents.store().log_written();
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                Ok(()) = role.changed() => {
                    let now = role.borrow_and_update().clone();
                    self.follow(now).await;
                }
                batch = rx.recv() => {
                    let Some(mut batch) = batch else { break };
                    // What else is waiting joins it: their decisions are
                    // written together.
                    while batch.len() < MAX_DRAIN {
                        match rx.try_recv() {
                            Ok(more) => batch.extend(more),
                            Err(_) => break,
                        }
                    }
                    self.on_signals(batch).await;
                }
                Some((rules, done)) = reloads.recv() => {
                    self.replace_rules(rules).await;
                    let _ = done.send(());
                }
                _ = log.notified() => self.tail().await,
                _ = interval.tick() => self.on_tick().await,
            }
        }
        self.end_term("shutting down").await;
    }

    /// Starts or ends the term to match the role.
    async fn follow(&mut self, role: Role) {
        match role {
            Role::Follower => self.end_term("not the leader").await,
            Role::Leader { fence } if self.term.is_none() => match self.start_term(fence).await {
                Ok(term) => self.term = Some(term),
                Err(e) => {
                    // Retried at the next tick while the role stays leader.
                    self.metrics
                        .pipeline_errors
                        .with_label_values(&["leadership"])
                        .inc();
                    tracing::error!("taking up leadership failed: {e}; retrying");
                }
            },
            Role::Leader { .. } => {}
        }
    }

    /// Rebuilds everything a leader needs from the store: the guard's spent
    /// limits, the engine's windows, the incidents to open or close; then
    /// starts the runner, which re-polls executions in flight. Approval
    /// timeouts need nothing: they are deadlines in the store.
    async fn start_term(&self, fence: Option<Fence>) -> Result<Term, StoreError> {
        let incidents = match fence {
            Some(fence) => self.incidents.fenced(fence),
            None => self.incidents.clone(),
        };
        let store = incidents.store().clone();
        incidents.sync_gauges().await?;
        incidents
            .reset_guard(&self.rules, self.global, Utc::now())
            .await?;
        // Read the log's head before the snapshot: what lands in between is
        // seen twice, which the engine takes as a re-send; nothing is missed.
        let cursor = if store.logs_signals() {
            store.signal_log_head().await?
        } else {
            0
        };
        let mut engine = Engine::new(Arc::clone(&self.rules));
        let decisions = restore(&mut engine, &store).await?;
        let mut stale = !apply(&incidents, &self.metrics, &self.rules.catalogue, decisions).await;
        // Incidents whose opening was cut short go on from where they stopped.
        for inc in store
            .incidents_in(&[State::Detected, State::Planned])
            .await?
        {
            let Some(rule) = self.rules.rules.iter().find(|r| r.name == inc.rule) else {
                continue;
            };
            if let Err(e) = incidents.resume(inc, rule, &self.rules.catalogue).await {
                tracing::error!("resuming an incident: {e}");
                stale = true;
            }
        }
        let runner = self.dispatch.as_ref().map(|(dispatcher, poll)| {
            let runner = Runner::new(
                incidents.clone(),
                Arc::clone(dispatcher),
                *poll,
                self.metrics.clone(),
                Arc::clone(&self.leadership),
            );
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(runner.run(async {
                let _ = stopped.await;
            }));
            (stop, task)
        });
        self.metrics.leader.set(1);
        tracing::info!(replica = %self.leadership.replica(), "leading: engine restored, runner started");
        Ok(Term {
            engine,
            incidents,
            cursor,
            pruned_at: std::time::Instant::now(),
            stale,
            runner,
        })
    }

    async fn end_term(&mut self, why: &str) {
        let Some(term) = self.term.take() else { return };
        self.metrics.leader.set(0);
        if let Some((stop, task)) = term.runner {
            let _ = stop.send(());
            let _ = task.await;
        }
        tracing::info!(replica = %self.leadership.replica(), "no longer leading ({why}): engine and runner stopped");
    }

    async fn on_signals(&mut self, batch: Vec<SignalEvent>) {
        // Without a term the signals are in the store already, and the
        // next term's restore reads them.
        let Some(term) = &mut self.term else { return };
        consume(term, &self.metrics, &self.rules.catalogue, &batch).await;
    }

    /// Consumes the signal log up to its end (PostgreSQL).
    async fn tail(&mut self) {
        let Some(term) = &mut self.term else { return };
        let store = term.incidents.store().clone();
        if !store.logs_signals() {
            return;
        }
        loop {
            let page = match store.signal_log_after(term.cursor, LOG_PAGE).await {
                Ok(page) => page,
                Err(e) => {
                    self.metrics
                        .pipeline_errors
                        .with_label_values(&["signal_log"])
                        .inc();
                    tracing::error!("reading the signal log: {e}; retrying at the next tick");
                    return;
                }
            };
            let full = page.len() as i64 == LOG_PAGE;
            let Some(last) = page.last().map(|(seq, _)| *seq) else {
                return;
            };
            let events: Vec<SignalEvent> = page.into_iter().map(|(_, ev)| ev).collect();
            consume(term, &self.metrics, &self.rules.catalogue, &events).await;
            term.cursor = last;
            if !full {
                return;
            }
        }
    }

    async fn on_tick(&mut self) {
        if self.term.as_ref().is_some_and(|t| t.stale) {
            self.end_term("rebuilding from the store after a failed decision")
                .await;
        }
        if self.term.is_none() {
            let role = self.leadership.role();
            self.follow(role).await;
        }
        self.tail().await;
        let Some(term) = &mut self.term else { return };
        let now = Utc::now();
        if let Err(e) = term.incidents.expire_due(now).await {
            self.metrics
                .pipeline_errors
                .with_label_values(&["approval"])
                .inc();
            tracing::error!("approval timeouts: {e}");
        }
        let decisions = term.engine.tick(now);
        term.stale |= !apply(
            &term.incidents,
            &self.metrics,
            &self.rules.catalogue,
            decisions,
        )
        .await;
        self.metrics
            .signals_tracked
            .set(term.engine.signals_tracked() as i64);
        if term.pruned_at.elapsed() > std::time::Duration::from_secs(60) {
            term.pruned_at = std::time::Instant::now();
            let store = term.incidents.store();
            if store.logs_signals()
                && let Err(e) = store.prune_signal_log(term.cursor, now - LOG_KEEP).await
            {
                tracing::warn!("pruning the signal log: {e}");
            }
        }
    }

    async fn replace_rules(&mut self, rules: Arc<RuleSet>) {
        self.rules = Arc::clone(&rules);
        let Some(term) = &mut self.term else { return };
        if let Err(e) = term
            .incidents
            .reset_guard(&rules, self.global, Utc::now())
            .await
        {
            self.metrics
                .pipeline_errors
                .with_label_values(&["guard"])
                .inc();
            tracing::error!("re-seeding the guard after a reload failed: {e}");
        }
        term.engine.replace_rules(rules);
    }
}

/// Feeds recorded signal events to a term's engine and applies what it
/// decides: the one path for intake in memory and from the signal log.
async fn consume(
    term: &mut Term,
    metrics: &Metrics,
    catalogue: &Catalogue,
    events: &[SignalEvent],
) {
    let mut decisions = Vec::new();
    for ev in events {
        decisions.extend(term.engine.on_event(ev, Utc::now()));
    }
    term.stale |= !apply(&term.incidents, metrics, catalogue, decisions).await;
    metrics.signals_processed.inc_by(events.len() as u64);
    metrics
        .signals_tracked
        .set(term.engine.signals_tracked() as i64);
}

/// Applies decisions in order, retrying while the store is briefly away (a
/// restart, a failover): every decision is safe to apply twice (see
/// [`Incidents::resume`]). A run of `Attach` decisions (most of a busy
/// stream: new evidence for open incidents) is written in one transaction;
/// any other decision first writes the run before it, so the order holds.
/// False if something could not be applied: the engine then no longer
/// matches the store, and the caller rebuilds from the store.
async fn apply(
    incidents: &Incidents,
    metrics: &Metrics,
    catalogue: &Catalogue,
    decisions: Vec<Decision>,
) -> bool {
    let mut ok = true;
    let mut run = Vec::new();
    for d in decisions {
        match d {
            Decision::Attach { key, signals, at } => run.push((key, signals, at)),
            other => {
                if !run.is_empty() {
                    ok &= retrying(metrics, || incidents.attach_all(&run)).await;
                    run.clear();
                }
                ok &= retrying(metrics, || incidents.apply(other.clone(), catalogue)).await;
            }
        }
    }
    if !run.is_empty() {
        ok &= retrying(metrics, || incidents.attach_all(&run)).await;
    }
    ok
}

/// Runs `write` until it succeeds, retrying transient store errors with
/// backoff for up to 15 s. False if it failed for good.
async fn retrying<F, Fut>(metrics: &Metrics, write: F) -> bool
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), IncidentError>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    let mut delay = std::time::Duration::from_millis(100);
    loop {
        match write().await {
            Ok(()) => return true,
            Err(IncidentError::Store(e))
                if e.is_transient() && tokio::time::Instant::now() + delay < deadline =>
            {
                metrics.decision_retries.inc();
                tracing::warn!("applying a decision: {e}; retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(2));
            }
            Err(e) => {
                metrics
                    .pipeline_errors
                    .with_label_values(&["incident"])
                    .inc();
                tracing::error!("applying a decision failed: {e}; rebuilding from the store");
                return false;
            }
        }
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
    for (signal, last_seen) in store.recent_signals(since).await? {
        let fired_at = signal.received_at;
        let ended = (signal.status == Status::Resolved).then(|| signal.ends_at.unwrap_or(now));
        events.push((
            SignalEvent {
                signal: signal.clone(),
                change: Change::Fired,
            },
            fired_at,
        ));
        // The last re-send: a heartbeat is silent since then, not since it
        // first arrived.
        if ended.is_none() && last_seen > fired_at {
            events.push((
                SignalEvent {
                    signal: signal.clone(),
                    change: Change::Refreshed,
                },
                last_seen,
            ));
        }
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
