//! The HTTP API (axum): summaries for the wall screens and engineers, feed health, metrics and
//! health probes. One file per resource; handlers are thin over `Store` queries.

mod aggregates;
mod alerts;
mod aqi;
mod config;
mod devices;
pub mod error;
mod feeds;
mod health;
mod overview;
pub mod params;
mod rejects;

use std::{
    net::SocketAddr,
    sync::{Arc, OnceLock},
};

use axum::{Router, http::StatusCode, routing::get};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::{cors::CorsLayer, timeout::TimeoutLayer, trace::TraceLayer};

use crate::{
    influx::ForwardStats, pipeline::IngestConfig, source::FeedConfig, stats::FeedStats,
    store::Store,
};
pub use config::ApiConfig;

/// The parts of the configuration the API reads: its own section, the ingest limits (for device
/// presence and feed silence) and the feeds.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub api: ApiConfig,
    pub ingest: IngestConfig,
    pub feeds: Vec<FeedConfig>,
}

/// What every handler can reach. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ApiState {
    pub config: Arc<ServiceConfig>,
    pub store: Store,
    pub feeds: Arc<[Arc<FeedStats>]>,
    /// The InfluxDB forwarder's state (disabled when not configured).
    pub influx: Arc<ForwardStats>,
    /// Wakes a webhook receiver's delivery task (dead-letter replay).
    pub webhook_wakes: crate::alert::Wakes,
    pub metrics: PrometheusHandle,
    /// Cancelled when the service starts draining: `/readyz` turns 503.
    pub draining: CancellationToken,
    /// The latest overview of the three cities.
    pub overview: Arc<overview::OverviewCache>,
}

impl ApiState {
    /// The state of one API over `store`, with `feeds` the feeds' statistics in the order of
    /// `config.feeds`, and an empty overview cache refreshed every `api.overview_refresh`.
    /// Nothing is read or spawned here: [`serve`] starts the overview's refresh.
    pub fn new(
        config: ServiceConfig,
        store: Store,
        feeds: Vec<Arc<FeedStats>>,
        influx: Arc<ForwardStats>,
        webhook_wakes: crate::alert::Wakes,
        metrics: PrometheusHandle,
        draining: CancellationToken,
    ) -> ApiState {
        ApiState {
            store,
            feeds: feeds.into(),
            influx,
            webhook_wakes,
            overview: Arc::new(overview::OverviewCache::new(config.api.overview_refresh)),
            config: Arc::new(config),
            metrics,
            draining,
        }
    }
}

/// Bucket bounds of every `*_seconds` histogram, 1 ms to 30 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75,
    1.0, 2.0, 5.0, 10.0, 30.0,
];

/// The process-wide Prometheus recorder (installed once, shared by every app in the process).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // Latencies as histograms with fixed buckets: cumulative since start, so any window
            // (a benchmark phase, a Prometheus rate) gets exact bucket counts, and they add up
            // across instances, which summaries do not.
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .expect("non-empty buckets")
                .build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed (e.g. a test harness); then our
            // handle renders nothing, which is visible, not silent.
            let _ = metrics::set_global_recorder(recorder);
            spawn_upkeep(handle.clone(), METRICS_UPKEEP);
            handle
        })
        .clone()
}

/// How often histogram samples are folded into their buckets when nobody scrapes `/metrics`.
const METRICS_UPKEEP: std::time::Duration = std::time::Duration::from_secs(5);

/// The recorder keeps every histogram sample until a render or an upkeep folds it into the
/// buckets. `build_recorder` (unlike `install`) runs no upkeep, so without scrapes memory grew
/// by every sample: about 0.35 MB/s at 10,000 msg/s (BENCHMARKS.md, finding 14).
fn spawn_upkeep(handle: PrometheusHandle, every: std::time::Duration) {
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(every);
                handle.run_upkeep();
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "Cannot start the metrics upkeep thread; histogram samples accumulate until /metrics is scraped.");
    }
}

/// Every route: `/` (the wall-screen page) and the JSON API under `/api/v1`, traced, where an
/// unknown path is a JSON 404; and `/metrics`, `/healthz` and `/readyz`, not traced. A request
/// not answered within `api.request_timeout` gets a 503; CORS allows any origin. The router
/// starts no task: without [`serve`], nothing refreshes the overview.
pub fn router(state: ApiState) -> Router {
    let timeout = state.config.api.request_timeout;
    let api = Router::new()
        .route("/overview", get(overview::overview))
        .route("/cities/{city}", get(overview::city))
        .route("/devices", get(devices::list))
        .route("/devices/{id}", get(devices::one))
        .route("/devices/{id}/series", get(devices::series))
        .route("/aggregates", get(aggregates::aggregates))
        .route("/aqi", get(aqi::aqi))
        .route("/rejects", get(rejects::rejects))
        .route("/feeds", get(feeds::feeds))
        .route("/alerts", get(alerts::list))
        .route("/alerts/{id}", get(alerts::one))
        .route("/alerts/{id}/ack", axum::routing::post(alerts::ack))
        .route("/webhooks/dead-letters", get(alerts::dead_letters))
        .route(
            "/webhooks/dead-letters/{id}/replay",
            axum::routing::post(alerts::replay),
        )
        .fallback(|| async {
            error::ApiError::NotFound("no such endpoint; see the README for the API".into())
        });
    let timeout = TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, timeout);
    // Probes and scrapes come every few seconds, and a 503 from `/readyz` while the service
    // starts or drains is its answer, not a failed request: traced, every probe of a starting
    // service was logged as an error.
    let probes = Router::new()
        .route("/metrics", get(health::metrics))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .layer(timeout);
    Router::new()
        .route("/", get(ops_page))
        .nest("/api/v1", api)
        .layer(timeout)
        .layer(TraceLayer::new_for_http())
        .merge(probes)
        .layer(CorsLayer::permissive())
        .with_state(state)
}

/// The operations-centre wall screen: one static page polling `/api/v1/overview`.
async fn ops_page() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("static/ops.html"))
}

/// Serve until `stop` is cancelled.
pub async fn serve(listener: TcpListener, state: ApiState, stop: CancellationToken) {
    tokio::spawn(overview::keep_fresh(state.clone(), stop.clone()));
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
    {
        tracing::error!(error = %e, "API server failed.");
    }
}
