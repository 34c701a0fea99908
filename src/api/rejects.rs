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
    auth::Caller,
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
#[serde(deny_unknown_fields)]
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
    caller: Caller,
    ApiQuery(p): ApiQuery<RejectParams>,
) -> ApiResult<RejectsResponse> {
    let feeds: Vec<&str> = (state.config.feeds.iter())
        .filter(|f| caller.sees(f.city))
        .map(|f| f.name.as_str())
        .collect();
    let filter = filter(&feeds, p)?;
    // Each feed the caller sees, asked for separately unless it sees every feed, then merged
    // newest first: the store's order.
    let asked: Vec<Option<String>> = match (&filter.feed, feeds.len() == state.config.feeds.len()) {
        (Some(f), _) => vec![Some(f.clone())],
        (None, true) => vec![None],
        (None, false) => feeds.iter().map(|f| Some((*f).to_owned())).collect(),
    };
    let mut rows = Vec::new();
    for feed in asked {
        let one = RejectFilter {
            feed,
            ..filter.clone()
        };
        rows.extend(state.store.rejects(&one).await?);
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.id));
    rows.truncate(filter.limit as usize);
    let counts = (state.store.reject_counts().await?.into_iter())
        .filter(|c| feeds.contains(&c.feed.as_str()))
        .collect();
    Ok(Json(RejectsResponse {
        counts,
        rejects: rows,
    }))
}

/// The store filter of `p`, checked in this order: `feed` (one of `feeds`, those the caller
/// sees), `reason`, `limit` (default 100), `from`, `to`. The first bad one is the 400.
fn filter(feeds: &[&str], p: RejectParams) -> Result<RejectFilter, ApiError> {
    if let Some(feed) = &p.feed
        && !feeds.contains(&feed.as_str())
    {
        return Err(ApiError::bad(format!(
            "unknown feed {feed:?}; feeds: {}",
            feeds.join(", ")
        )));
    }
    if let Some(reason) = &p.reason
        && let Err(e) = reason.parse::<RejectReason>()
    {
        return Err(ApiError::bad(e));
    }
    let limit = params::limit(p.limit, 100, 1000)?;
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
