//! `/api/v1/rejects`: quarantined messages (whole, or parts of stored ones) and why, newest
//! first, with their counts per feed and reason.

use axum::{Json, extract::State};
use serde::{Deserialize, Serialize};

use super::{
    ApiState,
    error::{ApiError, ApiQuery, ApiResult},
    params,
};
use crate::{
    model::RejectReason,
    store::{RejectCount, RejectFilter, RejectRow},
};

/// The answer of `/api/v1/rejects`.
#[derive(Debug, Serialize)]
pub struct RejectsResponse {
    /// Per feed and reason, of everything in quarantine (not only this page).
    pub counts: Vec<RejectCount>,
    pub rejects: Vec<RejectRow>,
}

/// The query of `GET /api/v1/rejects`: `feed`, `reason`, `from` and `to` (times of receipt),
/// `limit` (default 100) and `before_id`, to page back past the last id seen.
#[derive(Debug, Deserialize)]
pub struct RejectParams {
    feed: Option<String>,
    reason: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<u32>,
    before_id: Option<i64>,
}

/// `GET /api/v1/rejects`: the quarantine rows selected, newest first, with their payloads, and
/// the count per feed and reason of everything in quarantine. A 400 for a feed that is not
/// configured, an unknown `reason`, an unparsable `from` or `to`, a `limit` that is not a number
/// from 1 to 1,000, or a `before_id` that is not a number.
pub async fn rejects(
    State(state): State<ApiState>,
    ApiQuery(p): ApiQuery<RejectParams>,
) -> ApiResult<RejectsResponse> {
    let filter = filter(&state, p)?;
    let rows = state.store.rejects(&filter).await?;
    let counts = state.store.reject_counts().await?;
    Ok(Json(RejectsResponse {
        counts,
        rejects: rows,
    }))
}

/// The store filter of `p`, checked in this order: `feed` (one of `state`'s configured feeds),
/// `reason`, `limit` (default 100), `from`, `to`. The first bad one is the 400.
fn filter(state: &ApiState, p: RejectParams) -> Result<RejectFilter, ApiError> {
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
    let time = |name, s: Option<&str>| s.map(|s| params::parse_time(name, s)).transpose();
    Ok(RejectFilter {
        from: time("from", p.from.as_deref())?,
        to: time("to", p.to.as_deref())?,
        feed: p.feed,
        reason: p.reason,
        limit,
        before_id: p.before_id,
    })
}
