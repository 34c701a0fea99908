//! `/healthz` (the process is alive), `/readyz` (ready for traffic: store answering, every feed
//! connected, not draining) and `/metrics` (Prometheus text).

use axum::{Json, extract::State, http::StatusCode, response::IntoResponse};
use serde::Serialize;

use super::ApiState;
use crate::auth::{Caller, Scope};
use crate::model::City;

/// The answer of `/healthz`: always `{"status": "ok"}`.
#[derive(Debug, Serialize)]
pub struct Alive {
    pub status: &'static str,
}

/// The answer of `/readyz`: `status` is `ready` (with 200) or `not ready` (with 503), and
/// `problems` says why not, one line per problem (empty when ready).
#[derive(Debug, Serialize)]
pub struct Readiness {
    pub status: ReadyStatus,
    pub problems: Vec<String>,
}

/// Whether the service takes traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ReadyStatus {
    #[serde(rename = "ready")]
    Ready,
    #[serde(rename = "not ready")]
    NotReady,
}

/// `GET /healthz`: liveness. Always 200 `{"status": "ok"}` while the process serves HTTP; it
/// checks nothing else.
pub async fn healthz() -> Json<Alive> {
    Json(Alive { status: "ok" })
}

/// `GET /readyz`: readiness for traffic. 200 when the store answers a query, every feed is
/// connected to its broker and the service is not draining; otherwise 503. Public, for
/// orchestrators' probes: each problem is listed in `problems` only for a caller that reads
/// (the feeds' of its cities); others get the status alone.
pub async fn readyz(
    State(state): State<ApiState>,
    caller: Option<Caller>,
) -> (StatusCode, Json<Readiness>) {
    let all = problems(&state).await;
    let (code, status) = if all.is_empty() {
        (StatusCode::OK, ReadyStatus::Ready)
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, ReadyStatus::NotReady)
    };
    let problems = match caller.filter(|c| c.may(Scope::Read)) {
        None => Vec::new(),
        Some(c) => (all.into_iter())
            .filter(|(city, _)| city.is_none_or(|city| c.sees(city)))
            .map(|(_, p)| p)
            .collect(),
    };
    (code, Json(Readiness { status, problems }))
}

/// Why the service should not take traffic now: draining, the store not answering, feeds not
/// connected (with their last error), in that order; a feed's problem with its city.
async fn problems(state: &ApiState) -> Vec<(Option<City>, String)> {
    let mut problems = Vec::new();
    if state.draining.is_cancelled() {
        problems.push((None, "draining: shutting down".to_owned()));
    }
    if let Err(e) = state
        .store
        .read(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?))
        .await
    {
        problems.push((None, format!("store not answering: {e}")));
    }
    for (config, feed) in state.config.feeds.iter().zip(state.feeds.iter()) {
        let s = feed.snapshot();
        if !s.connected {
            let error = s.last_error.map(|e| format!(": {e}")).unwrap_or_default();
            problems.push((
                Some(config.city),
                format!("feed {} not connected{error}", s.feed),
            ));
        }
    }
    problems
}

/// `GET /metrics`: every metric of the process in the Prometheus text format (0.0.4); latency
/// histograms are cumulative since start. Service-wide, labelled by feed: hence its own scope
/// (`metrics`), not a city's `read`.
pub async fn metrics(State(state): State<ApiState>) -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
