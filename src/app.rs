//! Builds the service from a validated `Config`, runs it, and shuts it down in order:
//! sources stop intake → feed tasks drain → the commit thread commits and acks the rest → the
//! connections flush their acks and disconnect → the API stops last.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use tokio::{net::TcpListener, sync::mpsc, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    alert,
    api::{self, ApiState},
    config::Config,
    decode::Decoder,
    devtools::{broker, simulate},
    influx::{self, ForwardStats},
    model::FeedId,
    normalise::Normaliser,
    pipeline::{self, FeedLink},
    source::{self, MqttConnection},
    stats::FeedStats,
    store::Store,
};

/// How long shutdown waits for queued messages to be committed and acked.
const DRAIN_DEADLINE: Duration = Duration::from_secs(15);

/// A built, running service.
#[derive(Debug)]
pub struct App {
    api_addr: SocketAddr,
    store: Store,
    feeds: Vec<Arc<FeedStats>>,
    /// Cancelled first at shutdown: stops MQTT intake and the simulator.
    intake: CancellationToken,
    /// Cancelled last: stops the API server.
    api_stop: CancellationToken,
    feed_tasks: Vec<JoinHandle<()>>,
    connections: Vec<(JoinHandle<()>, JoinHandle<()>)>,
    commit_thread: Option<std::thread::JoinHandle<()>>,
    /// The WAL checkpointer and its stop (after the commit thread is done).
    checkpointer: Option<(std::thread::JoinHandle<()>, CancellationToken)>,
    /// Stops alert evaluation and webhook delivery (after the commit thread is done).
    alerts_stop: CancellationToken,
    alert_tasks: Vec<JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
    api_task: JoinHandle<()>,
}

impl App {
    /// Bind everything (ports are known when this returns) and start all tasks.
    pub async fn build(config: Config) -> anyhow::Result<App> {
        let config = Arc::new(config);
        let metrics = api::metrics_handle();
        if config.broker.enabled {
            broker::start(config.broker.listen)?;
        }
        let store = Store::open(&config.store, &config.devices)
            .with_context(|| format!("opening the store at {}", config.store.path.display()))?;
        let listener = TcpListener::bind(config.api.listen)
            .await
            .with_context(|| format!("binding the API listener on {}", config.api.listen))?;
        let api_addr = listener.local_addr()?;

        let intake = CancellationToken::new();
        let (store_tx, store_rx) = mpsc::channel(config.store.queue_capacity);
        let mut links = Vec::new();
        let mut feeds = Vec::new();
        let mut feed_tasks = Vec::new();
        let mut connections = Vec::new();
        for (index, feed) in config.feeds.iter().enumerate() {
            let stats = FeedStats::new(FeedId::new(&feed.name));
            let (tx, rx) = mpsc::channel(config.ingest.feed_queue_capacity);
            let MqttConnection {
                acks,
                poll_task,
                ack_task,
            } = source::connect(feed, tx, Arc::clone(&stats), intake.clone())?;
            let stage = pipeline::FeedStage {
                decoder: Decoder::for_feed(feed),
                normaliser: Normaliser::new(feed, &config),
                limits: config.ingest.clone(),
                stats: Arc::clone(&stats),
            };
            feed_tasks.push(tokio::spawn(pipeline::run_feed(
                index,
                stage,
                rx,
                store_tx.clone(),
                intake.clone(),
            )));
            connections.push((poll_task, ack_task));
            links.push(FeedLink::new(acks, Arc::clone(&stats)));
            feeds.push(stats);
        }
        drop(store_tx);

        crate::install_crypto_provider();
        let alerts_stop = CancellationToken::new();
        let alerts = if config.alerts.enabled {
            Some(
                alert::start(
                    Arc::clone(&config),
                    store.clone(),
                    feeds.clone(),
                    format!("http://{api_addr}"),
                    alerts_stop.clone(),
                )
                .await?,
            )
        } else {
            None
        };
        let alert_input = alerts
            .as_ref()
            .map(|a| (a.readings.clone(), Arc::clone(&a.metrics)));
        let wakes = alerts
            .as_ref()
            .map(|a| Arc::clone(&a.wakes))
            .unwrap_or_default();

        let writer = store.writer().context("opening the store writer")?;
        let checkpoint_stop = CancellationToken::new();
        let checkpointer = store.checkpointer(Duration::from_secs(1), checkpoint_stop.clone())?;
        let batch = pipeline::Batching {
            max_messages: config.store.batch_max_messages,
            linger: config.store.commit_linger,
        };
        let commit_thread = std::thread::Builder::new()
            .name("store-commit".into())
            .spawn(move || {
                pipeline::run_commits(writer, store_rx, links, batch, |envelopes, outcomes| {
                    let Some((alerts, metrics)) = &alert_input else {
                        return;
                    };
                    let readings = pipeline::stored_readings(envelopes, outcomes, metrics);
                    if !readings.is_empty() {
                        // Bounded: a slow evaluator slows commits rather than dropping input.
                        let _ = alerts.blocking_send(readings);
                    }
                })
            })?;

        let mut background = vec![tokio::spawn(tick_stats(feeds.clone(), intake.clone()))];
        let forward_stats = Arc::new(ForwardStats::default());
        if config.influx.enabled {
            background.push(tokio::spawn(influx::run(
                config.influx.clone(),
                store.clone(),
                Arc::clone(&forward_stats),
                feeds.clone(),
                intake.clone(),
            )));
        }
        if config.simulator.enabled {
            let sim = config.simulator.clone();
            let devices = config.devices.clone();
            let cancel = intake.clone();
            background.push(tokio::spawn(async move {
                if let Err(e) = simulate::run(sim, devices, cancel).await {
                    warn!(error = %e, "Simulator stopped.");
                }
            }));
        }

        let api_stop = CancellationToken::new();
        let state = ApiState::new(
            Arc::clone(&config),
            store.clone(),
            feeds.clone(),
            forward_stats,
            wakes,
            metrics,
            intake.clone(),
        );
        let api_task = tokio::spawn(api::serve(listener, state, api_stop.clone()));
        info!(
            api = %format!("http://{api_addr}"),
            overview = %format!("http://{api_addr}/api/v1/overview"),
            feeds = config.feeds.len(),
            "ioc-aggregator running."
        );
        Ok(App {
            api_addr,
            store,
            feeds,
            intake,
            api_stop,
            feed_tasks,
            connections,
            commit_thread: Some(commit_thread),
            checkpointer: Some((checkpointer, checkpoint_stop)),
            alerts_stop,
            alert_tasks: alerts.map(|a| a.tasks).unwrap_or_default(),
            background,
            api_task,
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

    /// Run until `shutdown` resolves, then stop in order.
    pub async fn run_until(mut self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        shutdown.await;
        info!("Shutting down: stopping intake, committing and acknowledging what is queued.");
        self.intake.cancel();
        let drained = tokio::time::timeout(DRAIN_DEADLINE, async {
            for task in self.feed_tasks.drain(..) {
                let _ = task.await;
            }
            if let Some(thread) = self.commit_thread.take() {
                let _ = tokio::task::spawn_blocking(move || thread.join()).await;
            }
            if let Some((thread, stop)) = self.checkpointer.take() {
                stop.cancel();
                let _ = tokio::task::spawn_blocking(move || thread.join()).await;
            }
            for (poll, ack) in self.connections.drain(..) {
                let _ = ack.await;
                let _ = poll.await;
            }
        })
        .await;
        if drained.is_err() {
            warn!(deadline = ?DRAIN_DEADLINE, "Drain deadline passed; unacknowledged messages stay with the broker and will be redelivered.");
        }
        self.alerts_stop.cancel();
        for task in self.alert_tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        // The forwarder and simulator stop on the intake token; give them a moment, then go.
        for mut task in self.background.drain(..) {
            if tokio::time::timeout(Duration::from_secs(2), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
        self.api_stop.cancel();
        let _ = self.api_task.await;
        info!("Stopped.");
        Ok(())
    }
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
