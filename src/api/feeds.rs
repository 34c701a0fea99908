//! `/api/v1/feeds`: per-feed health and the "did we lose anything?" counters.

use axum::{Json, extract::State};
use jiff::Timestamp;
use serde::Serialize;

use super::error::{ApiQuery, NoParams};
use super::{ApiState, error::ApiResult};
use crate::auth::Caller;
use crate::{
    health::{FeedHealth, feed_health, silence_threshold},
    influx::ForwardSnapshot,
    model::City,
    source::FeedConfig,
    stats::FeedSnapshot,
    store::FeedCounters,
};

/// The answer of `/api/v1/feeds`.
#[derive(Debug, Serialize)]
pub struct FeedsResponse {
    pub generated_at: Timestamp,
    pub feeds: Vec<FeedView>,
    pub influx: ForwardSnapshot,
}

/// One feed: its configuration, health, and counters since start and of all time.
#[derive(Debug, Serialize)]
pub struct FeedView {
    pub feed: String,
    pub city: City,
    pub format: String,
    pub broker: String,
    pub topics: Vec<String>,
    pub client_id: String,
    pub health: FeedHealth,
    pub connected: bool,
    pub rate_per_s: f64,
    pub last_message_at: Option<Timestamp>,
    pub lag_ms: i64,
    pub since_start: FeedSnapshot,
    /// `null` until the feed's first commit.
    pub all_time: Option<FeedCounters>,
}

impl FeedView {
    fn new(
        cfg: &FeedConfig,
        live: FeedSnapshot,
        total: Option<FeedCounters>,
        health: FeedHealth,
    ) -> FeedView {
        FeedView {
            feed: cfg.name.clone(),
            city: cfg.city,
            format: format!("{:?}", cfg.format),
            broker: cfg.broker.clone(),
            topics: cfg.topics.clone(),
            client_id: cfg.client_id(),
            health,
            connected: live.connected,
            rate_per_s: live.rate_per_s,
            last_message_at: live.last_message_at,
            lag_ms: live.commit_lag_ms,
            since_start: live,
            all_time: total,
        }
    }
}

/// `GET /api/v1/feeds`: each configured feed of the caller's cities: its configuration, health (`healthy`, `silent` or
/// `disconnected`), rate, commit lag and counters since start and of all time, and the InfluxDB
/// forwarder's state. It takes no parameters; only a store failure makes it fail (500).
pub async fn feeds(
    State(state): State<ApiState>,
    caller: Caller,
    _: ApiQuery<NoParams>,
) -> ApiResult<FeedsResponse> {
    let totals = state.store.feed_counters().await?;
    let now = Timestamp::now();
    let silence = silence_threshold(&state.config.ingest);
    let feeds = state
        .config
        .feeds
        .iter()
        .zip(state.feeds.iter())
        .filter(|(cfg, _)| caller.sees(cfg.city))
        .map(|(cfg, stats)| {
            let live = stats.snapshot();
            let total = totals.iter().find(|t| t.feed == cfg.name).cloned();
            let health = feed_health(&live, now, silence);
            FeedView::new(cfg, live, total, health)
        })
        .collect();
    Ok(Json(FeedsResponse {
        generated_at: now,
        feeds,
        influx: state.influx.snapshot(),
    }))
}
