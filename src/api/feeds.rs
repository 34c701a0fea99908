//! `/api/v1/feeds` (per-feed health and the "did we lose anything?" counters) and
//! `/api/v1/rejects` (quarantined messages and why).

use axum::{Json, extract::State};
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    ApiState,
    error::{ApiError, ApiQuery, ApiResult},
    params,
};
use crate::{
    health::{feed_health, silence_threshold},
    model::RejectReason,
    store::RejectFilter,
};

pub async fn feeds(State(state): State<ApiState>) -> ApiResult<Value> {
    let totals = state.store.feed_counters().await?;
    let now = Timestamp::now();
    let silence = silence_threshold(&state.config.ingest);
    let feeds: Vec<Value> = state
        .config
        .feeds
        .iter()
        .zip(state.feeds.iter())
        .map(|(cfg, stats)| {
            let live = stats.snapshot();
            let total = totals.iter().find(|t| t.feed == cfg.name);
            json!({
                "feed": cfg.name,
                "city": cfg.city,
                "format": format!("{:?}", cfg.format),
                "broker": cfg.broker,
                "topics": cfg.topics,
                "client_id": cfg.client_id(),
                "health": feed_health(&live, now, silence),
                "connected": live.connected,
                "rate_per_s": live.rate_per_s,
                "last_message_at": live.last_message_at,
                "lag_ms": live.commit_lag_ms,
                "since_start": live,
                "all_time": total,
            })
        })
        .collect();
    Ok(Json(json!({
        "generated_at": now,
        "feeds": feeds,
        "influx": state.influx.snapshot(),
    })))
}

#[derive(Debug, Deserialize)]
pub struct RejectParams {
    feed: Option<String>,
    reason: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<u32>,
    before_id: Option<i64>,
}

pub async fn rejects(
    State(state): State<ApiState>,
    ApiQuery(p): ApiQuery<RejectParams>,
) -> ApiResult<Value> {
    if let Some(feed) = &p.feed
        && !state.config.feeds.iter().any(|f| &f.name == feed)
    {
        let names: Vec<_> = state.config.feeds.iter().map(|f| f.name.as_str()).collect();
        return Err(ApiError::bad(format!(
            "unknown feed {feed:?}; feeds: {}",
            names.join(", ")
        )));
    }
    if let Some(reason) = &p.reason
        && let Err(e) = reason.parse::<RejectReason>()
    {
        return Err(ApiError::bad(e));
    }
    let limit = p.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad("limit must be between 1 and 1000"));
    }
    let from = p
        .from
        .as_deref()
        .map(|s| params::parse_time("from", s))
        .transpose()?;
    let to =
        p.to.as_deref()
            .map(|s| params::parse_time("to", s))
            .transpose()?;
    let filter = RejectFilter {
        feed: p.feed,
        reason: p.reason,
        from,
        to,
        limit,
        before_id: p.before_id,
    };
    let rows = state.store.rejects(&filter).await?;
    let counts = state.store.reject_counts().await?;
    Ok(Json(json!({ "counts": counts, "rejects": rows })))
}
