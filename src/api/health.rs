//! `/healthz` (the process is alive), `/readyz` (ready for traffic: store answering, every feed
//! connected, not draining) and `/metrics` (Prometheus text).

use axum::{Json, extract::State, http::StatusCode, response::IntoResponse};
use serde::Serialize;

use super::ApiState;

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
/// connected to its broker and the service is not draining; otherwise 503, with each problem
/// listed in `problems`.
pub async fn readyz(State(state): State<ApiState>) -> (StatusCode, Json<Readiness>) {
    let problems = problems(&state).await;
    let (code, status) = if problems.is_empty() {
        (StatusCode::OK, ReadyStatus::Ready)
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, ReadyStatus::NotReady)
    };
    (code, Json(Readiness { status, problems }))
}

/// Why the service should not take traffic now: draining, the store not answering, feeds not
/// connected (with their last error), in that order.
async fn problems(state: &ApiState) -> Vec<String> {
    let mut problems = Vec::new();
    if state.draining.is_cancelled() {
        problems.push("draining: shutting down".to_owned());
    }
    if let Err(e) = state
        .store
        .read(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?))
        .await
    {
        problems.push(format!("store not answering: {e}"));
    }
    for feed in state.feeds.iter() {
        let s = feed.snapshot();
        if !s.connected {
            problems.push(format!(
                "feed {} not connected{}",
                s.feed,
                s.last_error.map(|e| format!(": {e}")).unwrap_or_default()
            ));
        }
    }
    problems
}

/// `GET /metrics`: every metric of the process in the Prometheus text format (0.0.4); latency
/// histograms are cumulative since start.
pub async fn metrics(State(state): State<ApiState>) -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
