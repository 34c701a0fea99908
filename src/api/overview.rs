//! `/api/v1/overview` and `/api/v1/cities/{city}`: what the wall screens show per city — feed
//! health, devices online, readings in the last hour, VN_AQI per air station, river levels
//! against flood alarm levels, traffic and lighting. This file serves and caches them; one
//! city's summary is computed in `summary`.

mod summary;

use std::{
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use axum::{
    extract::{Path, State},
    http::header,
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use jiff::Timestamp;
use serde::Serialize;
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use self::summary::CityOverview;
use super::error::{ApiQuery, NoParams};
use super::{ApiState, error::ApiError};
use crate::{
    auth::{Caller, Cities},
    model::City,
    store::StoreError,
};

/// The answer of `/api/v1/overview`: when the snapshot was computed, and the summary of each
/// city the caller sees, in [`City::ALL`]'s order (`C` is a city's summary, or its JSON).
#[derive(Debug, Serialize)]
pub struct OverviewResponse<'a, C: Serialize> {
    pub generated_at: Timestamp,
    pub cities: &'a [C],
}

/// The answer of `/api/v1/cities/{city}`: the city's summary as in the overview, with the
/// snapshot's `generated_at` beside its keys.
#[derive(Debug, Serialize)]
pub struct CityResponse<'a> {
    pub generated_at: Timestamp,
    #[serde(flatten)]
    pub city: &'a CityOverview,
}

/// `GET /api/v1/overview`: what the wall screens show of the caller's cities, from the latest
/// snapshot, computed every `api.overview_refresh` (less often when computing it is slow; its
/// `generated_at` says when). It takes no parameters; it fails (500) only when there is no
/// snapshot yet and computing one fails.
pub async fn overview(
    State(state): State<ApiState>,
    caller: Caller,
    _: ApiQuery<NoParams>,
) -> Result<Response, ApiError> {
    let snapshot = state.overview.get(&state).await?;
    if caller.cities == Cities::All {
        return Ok(json_response(snapshot.overview.clone()));
    }
    let cities: Vec<&RawValue> = (snapshot.items.iter())
        .filter(|(c, _)| caller.sees(*c))
        .map(|(_, item)| item.as_ref())
        .collect();
    let body = OverviewResponse {
        generated_at: snapshot.generated_at,
        cities: &cities,
    };
    Ok(json_response(to_json(&body)))
}

/// `GET /api/v1/cities/{city}`: one city's part of the latest overview snapshot, with its
/// `generated_at`. An unknown city (not `thai-nguyen`, `song-cong` or `pho-yen`) is a 404, as it
/// is part of the path; a city the caller may not see is a 403.
pub async fn city(
    State(state): State<ApiState>,
    caller: Caller,
    _: ApiQuery<NoParams>,
    Path(city): Path<String>,
) -> Result<Response, ApiError> {
    let city: City = city.parse().map_err(ApiError::NotFound)?;
    if !caller.sees(city) {
        return Err(ApiError::Forbidden(
            "this token does not see that city".into(),
        ));
    }
    let snapshot = state.overview.get(&state).await?;
    let body = snapshot
        .cities
        .iter()
        .find(|(c, _)| *c == city)
        .map(|(_, b)| b.clone())
        .unwrap_or_default();
    Ok(json_response(body))
}

fn json_response(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The overview is what every wall screen polls, and computing it reads every device of every
/// city. So it is computed off the request path, every `api.overview_refresh`, and requests are
/// answered from the latest snapshot (its `generated_at` says when). When computing it gets
/// expensive (a very large device fleet), refreshes back off so that they never take more than
/// about a fifth of one core from ingest. A zero refresh computes it on every request.
#[derive(Debug)]
pub struct OverviewCache {
    refresh: Duration,
    latest: RwLock<Option<Arc<Snapshot>>>,
    /// One computation at a time: concurrent requests without a snapshot share it.
    computing: tokio::sync::Mutex<()>,
}

/// One computed overview: the bodies of `/api/v1/overview` and of each city's
/// `/api/v1/cities/{city}`, serialised once and served as they are until the next one, and
/// each city's item of the overview, from which the overview of some cities is put together.
#[derive(Debug)]
pub struct Snapshot {
    generated_at: Timestamp,
    overview: Bytes,
    cities: Vec<(City, Bytes)>,
    items: Vec<(City, Box<RawValue>)>,
}

impl OverviewCache {
    /// An empty cache whose snapshot is recomputed every `refresh` by [`keep_fresh`]; a zero
    /// `refresh` computes the overview on every request instead. Nothing is computed until the
    /// first request or the first round of [`keep_fresh`].
    pub fn new(refresh: Duration) -> OverviewCache {
        OverviewCache {
            refresh,
            latest: RwLock::new(None),
            computing: tokio::sync::Mutex::new(()),
        }
    }

    async fn get(&self, state: &ApiState) -> Result<Arc<Snapshot>, StoreError> {
        if !self.refresh.is_zero()
            && let Some(s) = self.latest()
        {
            return Ok(s);
        }
        let _one = self.computing.lock().await;
        if !self.refresh.is_zero()
            && let Some(s) = self.latest()
        {
            return Ok(s); // computed while this request waited
        }
        self.compute(state).await
    }

    fn latest(&self) -> Option<Arc<Snapshot>> {
        self.latest
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    async fn compute(&self, state: &ApiState) -> Result<Arc<Snapshot>, StoreError> {
        let now = Timestamp::now();
        let mut inputs = summary::Inputs::read(state, now).await?;
        let mut cities = Vec::new();
        for city in City::ALL {
            cities.push(summary::summary(state, city, &mut inputs, now).await?);
        }
        let snapshot = Arc::new(Snapshot::new(now, &cities));
        *self.latest.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&snapshot));
        Ok(snapshot)
    }
}

impl Snapshot {
    /// The bodies of the overview of `cities` computed at `generated_at`, and of each city.
    fn new(generated_at: Timestamp, cities: &[CityOverview]) -> Snapshot {
        let items = (cities.iter())
            .map(|c| {
                let json = serde_json::to_string(c).expect("overview types always serialise");
                (
                    c.city,
                    RawValue::from_string(json).expect("serde_json wrote JSON"),
                )
            })
            .collect();
        Snapshot {
            generated_at,
            items,
            overview: to_json(&OverviewResponse {
                generated_at,
                cities,
            }),
            cities: cities
                .iter()
                .map(|city| (city.city, to_json(&CityResponse { generated_at, city })))
                .collect(),
        }
    }
}

/// `body` as JSON. The overview's types have only string keys and no fallible `Serialize`, so
/// serialising them cannot fail.
fn to_json(body: &impl Serialize) -> Bytes {
    Bytes::from(serde_json::to_vec(body).expect("overview types always serialise"))
}

/// Keep the overview snapshot fresh until `stop` (nothing to do with a zero refresh).
pub async fn keep_fresh(state: ApiState, stop: CancellationToken) {
    let cache = Arc::clone(&state.overview);
    if cache.refresh.is_zero() {
        return;
    }
    loop {
        let started = Instant::now();
        {
            let _one = cache.computing.lock().await;
            if let Err(e) = cache.compute(&state).await {
                warn!(error = %e, "Computing the overview failed; serving the previous one.");
            }
        }
        let wait = cache.refresh.max(started.elapsed() * 4);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => return,
        }
    }
}
