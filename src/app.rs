//! Builds the service from a validated `Config`, runs it, and shuts it down in order:
//! sources stop intake → feed tasks drain → the commit thread commits and acks the rest → the
//! connections flush their acks and disconnect → the API stops last.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use tokio::{net::TcpListener, sync::mpsc};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{info, warn};

use crate::{
    alert,
    api::{self, ApiState},
    config::Config,
    devtools::{broker, simulate},
    influx::{self, ForwardStats},
    model::FeedId,
    pipeline::{self, FeedLink},
    source,
    stats::FeedStats,
    store::Store,
};

/// How long shutdown waits for queued messages to be committed and acked.
const DRAIN_DEADLINE: Duration = Duration::from_secs(15);
/// How long alert evaluation and webhook delivery get to finish what they are doing.
const ALERTS_DEADLINE: Duration = Duration::from_secs(5);
/// How long the forwarder, the simulator and the statistics tick get to stop.
const BACKGROUND_DEADLINE: Duration = Duration::from_secs(2);

/// Tasks that stop together: a token that asks them to stop and a tracker that tells when
/// they have (tokio-util's `CancellationToken` + `TaskTracker`).
#[derive(Debug, Clone, Default)]
struct Stage {
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl Stage {
    /// A stage asked to stop whenever `parent` is, and also on its own.
    fn under(parent: &Stage) -> Stage {
        Stage {
            stop: parent.stop.child_token(),
            tasks: TaskTracker::new(),
        }
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task);
    }

    /// Ask the tasks to stop and wait until they have; `false` if `deadline` passed first
    /// (the ones left end with the runtime).
    async fn stop(&self, deadline: Duration) -> bool {
        self.stop.cancel();
        self.tasks.close();
        tokio::time::timeout(deadline, self.tasks.wait())
            .await
            .is_ok()
    }
}

/// The feeds, started: each one's statistics, its link for acks after commit, and the queue
/// from their decode tasks to the commit thread.
struct Feeds {
    stats: Vec<Arc<FeedStats>>,
    links: Vec<FeedLink>,
    queue: mpsc::Receiver<pipeline::Pending>,
}

/// The store's two threads: commits (with the acks and the alert hand-off) and checkpoints.
#[derive(Debug)]
struct StoreThreads {
    commits: std::thread::JoinHandle<()>,
    checkpoints: std::thread::JoinHandle<()>,
    /// Stops the checkpointer, after the last commit.
    stop_checkpoints: CancellationToken,
}

/// A built, running service.
#[derive(Debug)]
pub struct App {
    api_addr: SocketAddr,
    store: Store,
    feeds: Vec<Arc<FeedStats>>,
    /// MQTT connections and feed tasks. Stopped first: intake ends, then what is queued is
    /// committed and acked, then the connections disconnect.
    ingest: Stage,
    store_threads: Option<StoreThreads>,
    /// Alert evaluation and webhook delivery, stopped after the last commit.
    alerts: Stage,
    /// The InfluxDB forwarder, the simulator and the statistics tick; asked to stop with
    /// `ingest`, waited for after the alerts.
    background: Stage,
    /// The API server, stopped last.
    api: Stage,
}

impl App {
    /// Bind everything (ports are known when this returns) and start all tasks, in data-flow
    /// order: the embedded broker, the store, the API listener, the feeds, the alerts, the
    /// store's threads, the background tasks and the API.
    pub async fn build(config: Config) -> anyhow::Result<App> {
        api::metrics_handle(); // installs the recorder before anything records
        if config.broker.enabled {
            broker::start(config.broker.listen)?;
        }
        let (store, listener) = open_store_and_listener(&config).await?;
        let api_addr = listener.local_addr()?;
        let tls = api::tls(&config.api).await?;
        let base = format!(
            "{}://{api_addr}",
            if tls.is_some() { "https" } else { "http" }
        );
        warn_if_open(&config.api);

        let ingest = Stage::default();
        let feeds = start_feeds(&config, &ingest)?;
        crate::install_crypto_provider();
        let alerts = Stage::default();
        let running_alerts = start_alerts(&config, &store, &feeds.stats, &base, &alerts).await?;
        let stats = feeds.stats.clone();
        let hand_off = running_alerts.as_ref().map(|a| a.hand_off.clone());
        let store_threads = start_store_threads(&config, &store, feeds, hand_off)?;
        let background = Stage::under(&ingest);
        let forward_stats = start_background(&config, &store, &stats, &background);

        let api = Stage::default();
        let wakes = running_alerts.map(|a| a.wakes).unwrap_or_default();
        let state = api_state(&config, &store, &stats, forward_stats, wakes, &ingest);
        api.spawn(api::serve(listener, tls, state, api.stop.clone()));
        info!(api = %base, anonymous_read = config.api.anonymous_read(), feeds = config.feeds.len(), "ioc-aggregator running.");
        Ok(App {
            api_addr,
            store,
            feeds: stats,
            ingest,
            store_threads: Some(store_threads),
            alerts,
            background,
            api,
        })
    }

    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn feeds(&self) -> &[Arc<FeedStats>] {
        &self.feeds
    }

    /// Run until `shutdown` resolves, then stop in order: intake, the drain of what is queued
    /// (committed and acked within `DRAIN_DEADLINE`), the alerts, the background tasks, the API.
    pub async fn run_until(mut self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        shutdown.await;
        info!("Shutting down: stopping intake, committing and acknowledging what is queued.");
        let threads = self.store_threads.take();
        let drained = tokio::time::timeout(DRAIN_DEADLINE, async {
            // The feed tasks end, so the commit thread commits the rest, acks it and ends,
            // which lets each connection send its last acks and disconnect.
            self.ingest.stop(DRAIN_DEADLINE).await;
            if let Some(t) = threads {
                let _ = tokio::task::spawn_blocking(move || t.commits.join()).await;
                t.stop_checkpoints.cancel();
                let _ = tokio::task::spawn_blocking(move || t.checkpoints.join()).await;
            }
        })
        .await;
        if drained.is_err() {
            warn!(deadline = ?DRAIN_DEADLINE, "Drain deadline passed; unacknowledged messages stay with the broker and will be redelivered.");
        }
        self.alerts.stop(ALERTS_DEADLINE).await;
        self.background.stop(BACKGROUND_DEADLINE).await;
        self.api.stop(Duration::from_secs(30)).await;
        info!("Stopped.");
        Ok(())
    }
}

/// Open the store and bind the API's listener: the two things that fail on a bad path or a
/// taken port, before anything starts.
async fn open_store_and_listener(config: &Config) -> anyhow::Result<(Store, TcpListener)> {
    let store = Store::open(&config.store, &config.devices)
        .with_context(|| format!("opening the store at {}", config.store.path.display()))?;
    let listener = TcpListener::bind(config.api.listen)
        .await
        .with_context(|| format!("binding the API listener on {}", config.api.listen))?;
    Ok((store, listener))
}

/// Anonymous read on an address other than loopback lets anyone who reaches the port read
/// every city: allowed only when configured, and said loudly.
fn warn_if_open(api: &api::ApiConfig) {
    if api.anonymous_read() && !api.listen.ip().is_loopback() {
        warn!(
            listen = %api.listen,
            "api.anonymous = \"read\" on a non-loopback address: anyone who reaches this port reads every city's data without a token."
        );
    }
}

/// What the API's handlers reach; `/readyz` turns 503 once `ingest` is asked to stop.
fn api_state(
    config: &Config,
    store: &Store,
    feeds: &[Arc<FeedStats>],
    forward_stats: Arc<ForwardStats>,
    wakes: alert::Wakes,
    ingest: &Stage,
) -> ApiState {
    let served = api::ServiceConfig {
        api: config.api.clone(),
        ingest: config.ingest.clone(),
        feeds: config.feeds.clone(),
    };
    let metrics = api::metrics_handle();
    let draining = ingest.stop.clone();
    ApiState::new(
        served,
        store.clone(),
        feeds.to_vec(),
        forward_stats,
        wakes,
        metrics,
        draining,
    )
}

/// Connect every feed and start its decode task, all on `ingest`.
fn start_feeds(config: &Config, ingest: &Stage) -> anyhow::Result<Feeds> {
    let (store_tx, queue) = mpsc::channel(config.store.queue_capacity);
    let (mut stats, mut links) = (Vec::new(), Vec::new());
    for (index, feed) in config.feeds.iter().enumerate() {
        let feed_stats = FeedStats::new(FeedId::new(&feed.name));
        let (tx, rx) = mpsc::channel(config.ingest.feed_queue_capacity);
        let acks = source::connect(
            feed,
            tx,
            Arc::clone(&feed_stats),
            &ingest.tasks,
            ingest.stop.clone(),
        )?;
        let stage = pipeline::FeedStage {
            decoder: feed.decoder(),
            normaliser: config.normaliser(feed),
            limits: config.ingest.clone(),
            stats: Arc::clone(&feed_stats),
        };
        let store_tx = store_tx.clone();
        ingest.spawn(pipeline::run_feed(
            index,
            stage,
            rx,
            store_tx,
            ingest.stop.clone(),
        ));
        links.push(FeedLink::new(acks, Arc::clone(&feed_stats)));
        stats.push(feed_stats);
    }
    Ok(Feeds {
        stats,
        links,
        queue,
    })
}

/// Start the alert system on `stage` when alerts are enabled.
async fn start_alerts(
    config: &Config,
    store: &Store,
    feeds: &[Arc<FeedStats>],
    api_base: &str,
    stage: &Stage,
) -> anyhow::Result<Option<alert::Alerts>> {
    if !config.alerts.enabled {
        return Ok(None);
    }
    let watched = alert::Watched {
        feeds: config
            .feeds
            .iter()
            .map(|f| f.city)
            .zip(feeds.iter().cloned())
            .collect(),
        flood_levels: (config.devices.iter())
            .filter(|d| !d.flood_levels.is_empty())
            .map(|d| (d.id.clone(), d.flood_levels.clone()))
            .collect(),
    };
    let alerts = alert::start(
        &config.alerts,
        watched,
        store.clone(),
        api_base.to_owned(),
        &stage.tasks,
        stage.stop.clone(),
    )
    .await?;
    Ok(Some(alerts))
}

/// The commit thread (batches from the feeds' queue, acks, the alert hand-off) and the WAL
/// checkpointer.
fn start_store_threads(
    config: &Config,
    store: &Store,
    feeds: Feeds,
    alerts: Option<alert::AlertHandOff>,
) -> anyhow::Result<StoreThreads> {
    let writer = store.writer().context("opening the store writer")?;
    let stop_checkpoints = CancellationToken::new();
    let checkpoints = store.checkpointer(Duration::from_secs(1), stop_checkpoints.clone())?;
    let batching = pipeline::Batching {
        max_messages: config.store.batch_max_messages,
        linger: config.store.commit_linger,
    };
    let Feeds { links, queue, .. } = feeds;
    let commits = std::thread::Builder::new()
        .name("store-commit".into())
        .spawn(move || pipeline::run_commits(writer, queue, links, batching, alerts))?;
    Ok(StoreThreads {
        commits,
        checkpoints,
        stop_checkpoints,
    })
}

/// The statistics tick, the InfluxDB forwarder and the simulator, when enabled, on `stage`.
fn start_background(
    config: &Config,
    store: &Store,
    feeds: &[Arc<FeedStats>],
    stage: &Stage,
) -> Arc<ForwardStats> {
    stage.spawn(tick_stats(feeds.to_vec(), stage.stop.clone()));
    let forward_stats = Arc::new(ForwardStats::default());
    if config.influx.enabled {
        stage.spawn(influx::run(
            config.influx.clone(),
            store.clone(),
            Arc::clone(&forward_stats),
            feeds.to_vec(),
            stage.stop.clone(),
        ));
    }
    if config.simulator.enabled {
        let (sim, devices, stop) = (
            config.simulator.clone(),
            config.devices.clone(),
            stage.stop.clone(),
        );
        stage.spawn(async move {
            if let Err(e) = simulate::run(sim, devices, stop).await {
                warn!(error = %e, "Simulator stopped.");
            }
        });
    }
    forward_stats
}

async fn tick_stats(feeds: Vec<Arc<FeedStats>>, cancel: CancellationToken) {
    const PERIOD: Duration = Duration::from_secs(5);
    let mut interval = tokio::time::interval(PERIOD);
    loop {
        tokio::select! {
            _ = interval.tick() => feeds.iter().for_each(|f| f.tick(PERIOD.as_secs_f64())),
            _ = cancel.cancelled() => break,
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler cannot fail on unix");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
