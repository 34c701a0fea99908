//! The API's gate: every request is authenticated once (a bearer token, or the anonymous reader
//! where allowed), rate-limited per token or per client address, and then checked against its
//! route's [`Policy`]. Handlers take the [`Caller`] to cut their answer to its cities.

use std::{
    collections::HashMap,
    net::SocketAddr,
    num::NonZeroU32,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    extract::{ConnectInfo, FromRequestParts, Request, State},
    http::{HeaderMap, header::AUTHORIZATION, request::Parts},
    middleware::Next,
    response::{IntoResponse, Response},
};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter, clock::Clock};
use jiff::Timestamp;
use tracing::{debug, warn};

use super::error::ApiError;
use crate::auth::{self, Caller, Policy, Refused};
use crate::store::{Store, TokenRow};

/// How often a token's `last_used_at` is written, at most.
const LAST_USED_EVERY: Duration = Duration::from_secs(60);

/// What the gate needs: the store holding the tokens, whether a request without a token reads
/// as the anonymous reader, and the rate limiter.
pub struct Gate {
    store: Store,
    anonymous_read: bool,
    limiter: DefaultKeyedRateLimiter<String>,
    /// When each token's use was last written.
    written: Mutex<HashMap<i64, Instant>>,
    /// Requests admitted so far (for the limiter's housekeeping).
    admitted: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("anonymous_read", &self.anonymous_read)
            .finish_non_exhaustive()
    }
}

impl Gate {
    /// A gate over `store`'s tokens allowing `per_second` requests per token (per client
    /// address without one), in bursts of `burst`.
    pub fn new(
        store: Store,
        anonymous_read: bool,
        per_second: NonZeroU32,
        burst: NonZeroU32,
    ) -> Gate {
        Gate {
            store,
            anonymous_read,
            limiter: RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)),
            written: Mutex::new(HashMap::new()),
            admitted: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The caller of a request with these headers, `None` for an anonymous request where
    /// anonymous read is off; a 401 for a bad token.
    async fn caller(
        &self,
        headers: &HeaderMap,
        client: Option<SocketAddr>,
    ) -> Result<Option<Caller>, ApiError> {
        let Some(value) = headers.get(AUTHORIZATION) else {
            return Ok(self.anonymous_read.then(Caller::anonymous));
        };
        let presented = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        let Some(presented) = presented else {
            return Err(ApiError::Unauthorized {
                invalid_token: true,
            });
        };
        match auth::verify(&self.store, presented, Timestamp::now()).await {
            Ok((caller, row)) => {
                self.note_use(&row);
                Ok(Some(caller))
            }
            Err(Ok(reason)) => {
                refused(reason, client);
                Err(ApiError::Unauthorized {
                    invalid_token: true,
                })
            }
            Err(Err(e)) => Err(ApiError::Internal(e)),
        }
    }

    /// Write that the token was used, at most every `LAST_USED_EVERY`, without holding up the
    /// request.
    fn note_use(&self, row: &TokenRow) {
        let now = Instant::now();
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        if written
            .get(&row.id)
            .is_some_and(|t| now.duration_since(*t) < LAST_USED_EVERY)
        {
            return;
        }
        written.insert(row.id, now);
        let (store, id) = (self.store.clone(), row.id);
        tokio::spawn(async move {
            if let Err(e) = store.token_used(id, Timestamp::now()).await {
                debug!(error = %e, "Recording a token's use failed.");
            }
        });
    }

    /// `Err` with how long to wait when `key` is over its rate. Every 10,000 requests the
    /// limiter forgets callers back at their full allowance, so its memory follows the callers
    /// of the last moments, not every address ever seen.
    fn admit(&self, key: &String) -> Result<(), Duration> {
        if self
            .admitted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            % 10_000
            == 9_999
        {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        self.limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(self.limiter.clock().now()))
    }
}

/// Log a refused token: the reason and the client, never the token.
fn refused(reason: Refused, client: Option<SocketAddr>) {
    let client = client.map(|a| a.ip().to_string()).unwrap_or_default();
    warn!(reason = reason.as_str(), client = %client, "Refused a bearer token.");
}

/// The client address of a request served with connect info (tests calling the router
/// directly have none).
pub fn client_addr(req_extensions: &axum::http::Extensions) -> Option<SocketAddr> {
    req_extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| *a)
}

/// The outer layer: authenticate, rate-limit, and leave the [`Caller`] (if any) in the
/// request's extensions for the route's policy and the handler.
pub async fn authenticate(State(gate): State<Arc<Gate>>, mut req: Request, next: Next) -> Response {
    let client = client_addr(req.extensions());
    let caller = match gate.caller(req.headers(), client).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let key = match (&caller, client) {
        (
            Some(Caller {
                token: Some(id), ..
            }),
            _,
        ) => format!("token:{id}"),
        (_, Some(addr)) => format!("addr:{}", addr.ip()),
        (_, None) => "addr:unknown".to_owned(),
    };
    if let Err(wait) = gate.admit(&key) {
        return ApiError::TooManyRequests(wait).into_response();
    }
    if let Some(caller) = caller {
        req.extensions_mut().insert(caller);
    }
    next.run(req).await
}

/// The inner layer of each route: its policy. No token (and no anonymous reader holding the
/// scope: writes are never anonymous) → 401; a token without the scope → 403.
pub async fn require(policy: Policy, req: Request, next: Next) -> Response {
    let Policy::Scope(scope) = policy else {
        return next.run(req).await;
    };
    match req.extensions().get::<Caller>() {
        Some(c) if c.may(scope) => next.run(req).await,
        Some(Caller { token: Some(_), .. }) => {
            ApiError::Forbidden(format!("this token lacks the {scope} scope")).into_response()
        }
        _ => ApiError::Unauthorized {
            invalid_token: false,
        }
        .into_response(),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    /// The caller the gate authenticated; a route without a scope policy has none (401).
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or(ApiError::Unauthorized {
                invalid_token: false,
            })
    }
}

/// A city asked for in a query parameter: a 403 when the caller may not see it.
pub fn visible_city(
    caller: &Caller,
    city: Option<crate::model::City>,
) -> Result<Option<crate::model::City>, ApiError> {
    match city {
        Some(c) if !caller.sees(c) => Err(ApiError::Forbidden(
            "this token does not see that city".into(),
        )),
        other => Ok(other),
    }
}

/// The client's address, when the server recorded it (tests calling the router directly have
/// none).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(client_addr(&parts.extensions)))
    }
}

impl<S: Send + Sync> axum::extract::OptionalFromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    /// The caller, on a public route: `None` without one.
    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Caller>().cloned())
    }
}
