//! `[api]`: where the HTTP API listens, over TLS or not, who may read without a token, and how
//! fast a caller may go.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use serde::Deserialize;

use crate::settings::Problems;

/// Who may read without a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Anonymous {
    /// Every request needs a token.
    None,
    /// A request without a token reads every city (scope `read` only).
    Read,
}

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
    /// Who may read without a token: `none` or `read`. Unset: `read` when `listen` is a
    /// loopback address (the zero-setup run on one machine), `none` otherwise. Writes always
    /// need a token.
    pub anonymous: Option<Anonymous>,
    /// PEM certificate chain and private key: with both, the API speaks HTTPS only.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Requests per second allowed per token (per client address without one) …
    pub rate_limit_per_second: u32,
    /// … in bursts of up to this many.
    pub rate_limit_burst: u32,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            request_timeout: Duration::from_secs(10),
            overview_refresh: Duration::from_secs(1),
            anonymous: None,
            tls_cert: None,
            tls_key: None,
            rate_limit_per_second: 50,
            rate_limit_burst: 200,
        }
    }
}

impl ApiConfig {
    /// Whether a request without a token reads (see `anonymous`).
    pub fn anonymous_read(&self) -> bool {
        match self.anonymous {
            Some(a) => a == Anonymous::Read,
            None => self.listen.ip().is_loopback(),
        }
    }

    /// Record every value that cannot work.
    pub fn validate(&self, problems: &mut Problems) {
        problems.at_least_one(
            self.rate_limit_per_second as usize,
            "api.rate_limit_per_second",
        );
        problems.at_least_one(self.rate_limit_burst as usize, "api.rate_limit_burst");
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => problems.add("api.tls_key", "required with api.tls_cert"),
            (None, Some(_)) => problems.add("api.tls_cert", "required with api.tls_key"),
            _ => {}
        }
        for (key, path) in [
            ("api.tls_cert", &self.tls_cert),
            ("api.tls_key", &self.tls_key),
        ] {
            if let Some(p) = path {
                problems.check(
                    p.is_file(),
                    key,
                    format!("{} is not a readable file", p.display()),
                );
            }
        }
    }
}
