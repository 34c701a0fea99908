//! The HTTP API (axum): summaries for the wall screens and engineers, feed health, metrics and
//! health probes. One file per resource; handlers are thin over `Store` queries.

mod aggregates;
mod alerts;
mod aqi;
pub mod auth;
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
    num::NonZeroU32,
    sync::{Arc, OnceLock},
};

use axum::http::header::AUTHORIZATION;
use axum::{
    Router,
    handler::Handler,
    http::{Method, StatusCode},
    middleware,
    routing::{MethodRouter, get, post},
};
use axum_server::tls_rustls::RustlsConfig;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::{
    cors::CorsLayer, sensitive_headers::SetSensitiveRequestHeadersLayer, timeout::TimeoutLayer,
    trace::TraceLayer,
};

use crate::auth::{Policy, Scope};
use crate::{
    influx::ForwardStats, pipeline::IngestConfig, source::FeedConfig, stats::FeedStats,
    store::Store,
};
pub use config::{Anonymous, ApiConfig};

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

/// One route as declared: method, path and the policy it requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    pub method: Method,
    pub path: &'static str,
    pub policy: Policy,
}

/// The routes being declared. A route can only be added with its policy, which wraps its
/// handler: this is the one place routes are added (a test checks that no other code adds one).
struct Routes {
    router: Router<ApiState>,
    table: Vec<RouteSpec>,
}

impl Routes {
    fn new() -> Routes {
        Routes {
            router: Router::new(),
            table: Vec::new(),
        }
    }

    fn get<H: Handler<T, ApiState>, T: 'static>(
        self,
        path: &'static str,
        policy: Policy,
        h: H,
    ) -> Routes {
        self.add(Method::GET, path, policy, get(h))
    }

    fn post<H: Handler<T, ApiState>, T: 'static>(
        self,
        path: &'static str,
        policy: Policy,
        h: H,
    ) -> Routes {
        self.add(Method::POST, path, policy, post(h))
    }

    fn add(
        mut self,
        method: Method,
        path: &'static str,
        policy: Policy,
        handler: MethodRouter<ApiState>,
    ) -> Routes {
        let guarded = handler.route_layer(middleware::from_fn(move |req, next| {
            auth::require(policy, req, next)
        }));
        self.router = self.router.route(path, guarded);
        self.table.push(RouteSpec {
            method,
            path,
            policy,
        });
        self
    }
}

/// The data routes: the page and the JSON API under `/api/v1`, traced.
fn data_routes() -> Routes {
    let read = Policy::Scope(Scope::Read);
    Routes::new()
        .get("/", Policy::Public, ops_page)
        .get("/api/v1/overview", read, overview::overview)
        .get("/api/v1/cities/{city}", read, overview::city)
        .get("/api/v1/devices", read, devices::list)
        .get("/api/v1/devices/{id}", read, devices::one)
        .get("/api/v1/devices/{id}/series", read, devices::series)
        .get("/api/v1/aggregates", read, aggregates::aggregates)
        .get("/api/v1/aqi", read, aqi::aqi)
        .get("/api/v1/rejects", read, rejects::rejects)
        .get("/api/v1/feeds", read, feeds::feeds)
        .get("/api/v1/alerts", read, alerts::list)
        .get("/api/v1/alerts/{id}", read, alerts::one)
        .post(
            "/api/v1/alerts/{id}/ack",
            Policy::Scope(Scope::Ack),
            alerts::ack,
        )
        .get("/api/v1/webhooks/dead-letters", read, alerts::dead_letters)
        .post(
            "/api/v1/webhooks/dead-letters/{id}/replay",
            Policy::Scope(Scope::Replay),
            alerts::replay,
        )
        .get("/api/v1/audit", Policy::Scope(Scope::Admin), alerts::audit)
}

/// The probes and the scrape, not traced: they come every few seconds, and a 503 from
/// `/readyz` while the service starts or drains is its answer, not a failed request (traced,
/// every probe of a starting service was logged as an error).
fn probe_routes() -> Routes {
    Routes::new()
        .get("/metrics", Policy::Scope(Scope::Metrics), health::metrics)
        .get("/healthz", Policy::Public, health::healthz)
        .get("/readyz", Policy::Public, health::readyz)
}

/// Every route with its policy, in declaration order.
pub fn route_table() -> Vec<RouteSpec> {
    let mut table = data_routes().table;
    table.extend(probe_routes().table);
    table
}

/// Every route behind the gate (a bearer token or the anonymous reader, rate-limited; see
/// [`auth`]), each with its policy; an unknown path is a JSON 404. A request not answered
/// within `api.request_timeout` gets a 503; CORS allows any origin (tokens are bearer tokens,
/// never cookies, so a foreign page cannot borrow one). The router starts no task: without
/// [`serve`], nothing refreshes the overview.
pub fn router(state: ApiState) -> Router {
    let api = &state.config.api;
    let timeout =
        TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, api.request_timeout);
    let gate = Arc::new(auth::Gate::new(
        state.store.clone(),
        api.anonymous_read(),
        NonZeroU32::new(api.rate_limit_per_second).unwrap_or(NonZeroU32::MIN),
        NonZeroU32::new(api.rate_limit_burst).unwrap_or(NonZeroU32::MIN),
    ));
    let data = data_routes().router.layer(TraceLayer::new_for_http());
    data.merge(probe_routes().router)
        .fallback(|| async {
            error::ApiError::NotFound("no such endpoint; see the README for the API".into())
        })
        .layer(timeout)
        .layer(middleware::from_fn_with_state(gate, auth::authenticate))
        // Tokens never reach a log: the header is marked sensitive before anything traces it.
        .layer(SetSensitiveRequestHeadersLayer::new([AUTHORIZATION]))
        .layer(middleware::from_fn(error::json_errors))
        .layer(CorsLayer::permissive())
        .with_state(state)
}

/// The operations-centre wall screen: one static page polling `/api/v1/overview`.
async fn ops_page() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("static/ops.html"))
}

/// The TLS configuration of `api.tls_cert` and `api.tls_key` (PEM), `None` without them: the
/// API then speaks plain HTTP. Fails on an unreadable file or a key that does not fit.
pub async fn tls(config: &ApiConfig) -> anyhow::Result<Option<RustlsConfig>> {
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
        return Ok(None);
    };
    crate::install_crypto_provider();
    let tls = RustlsConfig::from_pem_file(cert, key).await.map_err(|e| {
        anyhow::anyhow!(
            "api.tls_cert / api.tls_key ({}, {}): {e}",
            cert.display(),
            key.display()
        )
    })?;
    Ok(Some(tls))
}

/// Serve until `stop` is cancelled: HTTPS with `tls`, else HTTP.
pub async fn serve(
    listener: TcpListener,
    tls: Option<RustlsConfig>,
    state: ApiState,
    stop: CancellationToken,
) {
    tokio::spawn(overview::keep_fresh(state.clone(), stop.clone()));
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let served = match tls {
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
        }
        Some(tls) => serve_tls(listener, tls, app, stop).await,
    };
    if let Err(e) = served {
        tracing::error!(error = %e, "API server failed.");
    }
}

/// HTTPS on `listener`; open connections get 10 s to finish once `stop` is cancelled.
async fn serve_tls(
    listener: TcpListener,
    tls: RustlsConfig,
    app: axum::extract::connect_info::IntoMakeServiceWithConnectInfo<Router, SocketAddr>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let handle = axum_server::Handle::new();
    let shutdown = handle.clone();
    tokio::spawn(async move {
        stop.cancelled().await;
        shutdown.graceful_shutdown(Some(std::time::Duration::from_secs(10)));
    });
    axum_server::from_tcp_rustls(listener.into_std()?, tls)
        .handle(handle)
        .serve(app)
        .await
}
