//! `/healthz` (the process is alive), `/readyz` (ready for traffic: store answering, every feed
//! connected, not draining) and `/metrics` (Prometheus text).

use axum::{Json, extract::State, http::StatusCode, response::IntoResponse};
use serde_json::json;

use super::ApiState;

/// `GET /healthz`: liveness. Always 200 `{"status": "ok"}` while the process serves HTTP; it
/// checks nothing else.
pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: readiness for traffic. 200 when the store answers a query, every feed is
/// connected to its broker and the service is not draining; otherwise 503, with each problem
/// listed in `problems`.
pub async fn readyz(State(state): State<ApiState>) -> impl IntoResponse {
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
    let status = if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let label = if problems.is_empty() {
        "ready"
    } else {
        "not ready"
    };
    (
        status,
        Json(json!({ "status": label, "problems": problems })),
    )
}

/// `GET /metrics`: every metric of the process in the Prometheus text format (0.0.4); latency
/// histograms are cumulative since start.
pub async fn metrics(State(state): State<ApiState>) -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
