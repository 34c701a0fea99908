//! `/api/v1/alerts` (active and history, acknowledge) and `/api/v1/webhooks/dead-letters`
//! (notifications that could not be delivered, and their replay).

use axum::{
    Json,
    extract::{Path, State},
};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    ApiState,
    error::{ApiError, ApiQuery, ApiResult},
    params,
};
use crate::{
    alert::notify,
    store::{AlertFilter, AlertRow, OutboxRow},
};

/// The answer of `GET /api/v1/alerts`.
#[derive(Debug, Serialize)]
pub struct AlertList {
    pub count: usize,
    pub alerts: Vec<AlertRow>,
}

/// The answer of `GET /api/v1/webhooks/dead-letters`.
#[derive(Debug, Serialize)]
pub struct DeadLetters {
    pub count: usize,
    pub dead_letters: Vec<DeadLetter>,
}

/// A notification given up on, with the Alertmanager alerts its body carried.
#[derive(Debug, Serialize)]
pub struct DeadLetter {
    pub id: i64,
    pub receiver: String,
    /// The Standard Webhooks `webhook-id` it was (and will be) sent with.
    pub webhook_id: String,
    pub alert_id: i64,
    pub attempts: i64,
    /// The HTTP status of the last attempt, if it got one.
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub alerts: Vec<Value>,
}

impl From<OutboxRow> for DeadLetter {
    fn from(r: OutboxRow) -> DeadLetter {
        DeadLetter {
            alerts: notify::alerts_of(&r.body),
            id: r.id,
            receiver: r.receiver,
            webhook_id: r.webhook_id,
            alert_id: r.alert_id,
            attempts: r.attempts,
            last_status: r.last_status,
            last_error: r.last_error,
            created_at: r.created_at,
        }
    }
}

/// The answer of `POST /api/v1/webhooks/dead-letters/{id}/replay`.
#[derive(Debug, Serialize)]
pub struct Replayed {
    pub id: i64,
    pub receiver: String,
    /// Always `pending`: queued again, due now.
    pub state: &'static str,
}

/// The query of `GET /api/v1/alerts`: `state` (`active` or `firing`, the default; `resolved`;
/// `all`), `city`, `severity` and `limit` (default 200).
#[derive(Debug, Deserialize)]
pub struct ListParams {
    state: Option<String>,
    city: Option<String>,
    severity: Option<String>,
    limit: Option<u32>,
}

/// `GET /api/v1/alerts`: the incidents selected, newest first, and their count. A 400 for an
/// unknown `state`, `city` or `severity`, or a `limit` that is not a number from 1 to 10,000.
pub async fn list(
    State(state): State<ApiState>,
    ApiQuery(p): ApiQuery<ListParams>,
) -> ApiResult<AlertList> {
    let wanted = match p.state.as_deref() {
        None | Some("active") | Some("firing") => Some("firing".to_owned()),
        Some("resolved") => Some("resolved".to_owned()),
        Some("all") => None,
        Some(other) => {
            return Err(ApiError::bad(format!(
                "state={other:?}: expected active (= firing), resolved or all"
            )));
        }
    };
    if let Some(s) = &p.severity
        && !["info", "warning", "critical"].contains(&s.as_str())
    {
        return Err(ApiError::bad(format!(
            "severity={s:?}: expected info, warning or critical"
        )));
    }
    let city = p.city.as_deref().map(params::parse_city).transpose()?;
    let limit = p.limit.unwrap_or(200);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::bad("limit must be between 1 and 10000"));
    }
    let filter = AlertFilter {
        state: wanted,
        city: city.map(|c| c.as_str().to_owned()),
        severity: p.severity,
        limit,
    };
    let alerts = state.store.alerts(&filter).await?;
    Ok(Json(AlertList {
        count: alerts.len(),
        alerts,
    }))
}

fn parse_id(id: &str) -> Result<i64, ApiError> {
    id.parse()
        .map_err(|_| ApiError::bad(format!("{id:?} is not an alert id (a number)")))
}

/// `GET /api/v1/alerts/{id}`: one incident. A 400 when `id` is not a number, a 404 when no
/// incident has it.
pub async fn one(State(state): State<ApiState>, Path(id): Path<String>) -> ApiResult<AlertRow> {
    let id = parse_id(&id)?;
    let alert = state
        .store
        .alert(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no alert {id}")))?;
    Ok(Json(alert))
}

/// The body of `POST /api/v1/alerts/{id}/ack`: who acknowledges (`by`, required, not blank) and
/// an optional `comment`.
#[derive(Debug, Deserialize)]
pub struct Ack {
    by: Option<String>,
    comment: Option<String>,
}

/// `POST /api/v1/alerts/{id}/ack`: record who acknowledged the incident, when and why, and
/// answer the updated incident. A second acknowledgement replaces the first; the incident's
/// state and notifications are unaffected. A 400 when `id` is not a number, the body is not
/// such JSON, or `by` is missing or blank; a 404 when no incident has that id.
pub async fn ack(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    body: Result<Json<Ack>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<AlertRow> {
    let id = parse_id(&id)?;
    let Json(ack) = body.map_err(|e| {
        ApiError::bad(format!(
            "body must be JSON {{\"by\": \"…\", \"comment\": \"…\"}}: {}",
            e.body_text()
        ))
    })?;
    let by = ack
        .by
        .filter(|b| !b.trim().is_empty())
        .ok_or_else(|| ApiError::bad("\"by\" (who acknowledges) is required"))?;
    let alert = state
        .store
        .ack_alert(id, by, ack.comment)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no alert {id}")))?;
    Ok(Json(alert))
}

/// `GET /api/v1/webhooks/dead-letters`: every notification given up on (refused by its
/// receiver with a 4xx, or out of attempts), oldest first, with the alerts it carried and its
/// last attempt's status and error. It takes no parameters.
pub async fn dead_letters(State(state): State<ApiState>) -> ApiResult<DeadLetters> {
    let dead_letters: Vec<DeadLetter> = state
        .store
        .dead_letters()
        .await?
        .into_iter()
        .map(DeadLetter::from)
        .collect();
    Ok(Json(DeadLetters {
        count: dead_letters.len(),
        dead_letters,
    }))
}

/// `POST /api/v1/webhooks/dead-letters/{id}/replay`: put a dead letter back in its receiver's
/// queue, due now with its attempts reset, and wake the receiver's delivery task. A 400 when
/// `id` is not a number; a 404 when it is not a dead letter's (a pending or delivered
/// notification's included).
pub async fn replay(State(state): State<ApiState>, Path(id): Path<String>) -> ApiResult<Replayed> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::bad(format!("{id:?} is not a dead-letter id")))?;
    let receiver = state
        .store
        .replay_dead_letter(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no dead letter {id}")))?;
    if let Some(w) = state.webhook_wakes.get(&receiver) {
        w.notify_one();
    }
    Ok(Json(Replayed {
        id,
        receiver,
        state: "pending",
    }))
}
