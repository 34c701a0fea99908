//! `[api]`: where the HTTP API listens and how long a request may take.

use std::{net::SocketAddr, time::Duration};

use serde::Deserialize;

/// HTTP API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Address the API listens on. Port 0 picks a free port (tests).
    pub listen: SocketAddr,
    /// Requests taking longer than this get 503 (SSE streams are exempt).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How often the overview (`/api/v1/overview`, `/api/v1/cities/{city}`) is recomputed in
    /// the background; requests get the latest one. Zero: computed on every request.
    #[serde(with = "humantime_serde")]
    pub overview_refresh: Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            request_timeout: Duration::from_secs(10),
            overview_refresh: Duration::from_secs(1),
        }
    }
}
