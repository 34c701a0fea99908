//! `/api/v1/alerts` (active and history, acknowledge) and `/api/v1/webhooks/dead-letters`
//! (notifications that could not be delivered, and their replay).

use axum::{
    Json,
    extract::{Path, State},
};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::auth::{ClientAddr, visible_city};
use super::error::NoParams;
use super::{
    ApiState,
    error::{ApiError, ApiQuery, ApiResult},
    params,
};
use crate::{
    alert::notify,
    auth::Caller,
    model::City,
    store::{AlertFilter, AlertRow, AuditEntry, OutboxRow},
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
#[serde(deny_unknown_fields)]
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
    caller: Caller,
    ApiQuery(p): ApiQuery<ListParams>,
) -> ApiResult<AlertList> {
    let filter = list_filter(&p)?;
    let city = p.city.as_deref().map(params::parse_city).transpose()?;
    let city = visible_city(&caller, city)?;
    // Each city the caller sees, asked for separately unless it sees them all, then merged
    // newest first: the store's order.
    let cities: Vec<Option<City>> = match (city, caller.cities.filter()) {
        (Some(c), _) => vec![Some(c)],
        (None, None) => vec![None],
        (None, Some(cs)) => cs.into_iter().map(Some).collect(),
    };
    let mut alerts = Vec::new();
    for city in cities {
        let one = AlertFilter {
            city: city.map(|c| c.as_str().to_owned()),
            ..filter.clone()
        };
        alerts.extend(state.store.alerts(&one).await?);
    }
    alerts.sort_by_key(|a| std::cmp::Reverse(a.id));
    alerts.truncate(filter.limit as usize);
    Ok(Json(AlertList {
        count: alerts.len(),
        alerts,
    }))
}

/// The store filter of `p` but its city: `state`, `severity` and `limit` checked in this order
/// (before `city`).
fn list_filter(p: &ListParams) -> Result<AlertFilter, ApiError> {
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
    let limit = params::limit(p.limit, 200, 10_000)?;
    Ok(AlertFilter {
        state: wanted,
        city: None,
        severity: p.severity.clone(),
        limit,
    })
}

fn parse_id(id: &str) -> Result<i64, ApiError> {
    id.parse()
        .map_err(|_| ApiError::bad(format!("{id:?} is not an alert id (a number)")))
}

/// `GET /api/v1/alerts/{id}`: one incident. A 400 when `id` is not a number, a 404 when no
/// incident has it.
pub async fn one(
    State(state): State<ApiState>,
    caller: Caller,
    _: ApiQuery<NoParams>,
    Path(id): Path<String>,
) -> ApiResult<AlertRow> {
    let id = parse_id(&id)?;
    Ok(Json(visible_alert(&state, &caller, id).await?))
}

/// Incident `id`; a 404 when there is none or the caller may not see its city (the same
/// answer).
async fn visible_alert(state: &ApiState, caller: &Caller, id: i64) -> Result<AlertRow, ApiError> {
    (state.store.alert(id).await?)
        .filter(|a| a.city.parse::<City>().is_ok_and(|c| caller.sees(c)))
        .ok_or_else(|| ApiError::NotFound(format!("no alert {id}")))
}

/// The body of `POST /api/v1/alerts/{id}/ack`: an optional `comment`. Who acknowledges is the
/// token's name; a body that tries to say otherwise (`by`) is refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ack {
    comment: Option<String>,
}

/// `POST /api/v1/alerts/{id}/ack`: record that the caller acknowledged the incident, when, from
/// where and why (in the incident and the audit log), and answer the updated incident. A
/// second acknowledgement replaces the first; the incident's state and notifications are
/// unaffected. A 400 when `id` is not a number or the body is not such JSON (an empty body is
/// no comment); a 404 when no incident of the caller's cities has that id.
pub async fn ack(
    State(state): State<ApiState>,
    caller: Caller,
    _: ApiQuery<NoParams>,
    ClientAddr(client): ClientAddr,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<AlertRow> {
    let id = parse_id(&id)?;
    let ack: Ack = if body.iter().all(u8::is_ascii_whitespace) {
        Ack::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad(format!(
                "body must be JSON {{\"comment\": \"…\"}} (who acknowledges is the token's name): {e}"
            ))
        })?
    };
    let alert = visible_alert(&state, &caller, id).await?;
    let acked = (state
        .store
        .ack_alert(id, caller.name.clone(), ack.comment.clone())
        .await?)
        .ok_or_else(|| ApiError::NotFound(format!("no alert {id}")))?;
    let entry = audit_entry(
        &caller,
        "ack",
        format!("alert/{id}"),
        Some(alert.city),
        client,
        ack.comment,
    );
    state.store.audit(entry).await?;
    Ok(Json(acked))
}

/// An audit-log entry of `caller` doing `action` to `object` now.
fn audit_entry(
    caller: &Caller,
    action: &str,
    object: String,
    city: Option<String>,
    client: Option<std::net::SocketAddr>,
    comment: Option<String>,
) -> AuditEntry {
    AuditEntry {
        id: 0,
        at: Timestamp::now(),
        actor: caller.name.clone(),
        action: action.to_owned(),
        object,
        city,
        client: client.map(|a| a.ip().to_string()),
        comment,
    }
}

/// `GET /api/v1/webhooks/dead-letters`: every notification given up on (refused by its
/// receiver with a 4xx, or out of attempts), oldest first, with the alerts it carried and its
/// last attempt's status and error. It takes no parameters.
pub async fn dead_letters(
    State(state): State<ApiState>,
    caller: Caller,
    _: ApiQuery<NoParams>,
) -> ApiResult<DeadLetters> {
    let mut dead_letters = Vec::new();
    for row in state.store.dead_letters().await? {
        if visible_alert(&state, &caller, row.alert_id).await.is_ok() {
            dead_letters.push(DeadLetter::from(row));
        }
    }
    Ok(Json(DeadLetters {
        count: dead_letters.len(),
        dead_letters,
    }))
}

/// `POST /api/v1/webhooks/dead-letters/{id}/replay`: put a dead letter back in its receiver's
/// queue, due now with its attempts reset, and wake the receiver's delivery task. A 400 when
/// `id` is not a number; a 404 when it is not a dead letter's (a pending or delivered
/// notification's included).
pub async fn replay(
    State(state): State<ApiState>,
    caller: Caller,
    _: ApiQuery<NoParams>,
    ClientAddr(client): ClientAddr,
    Path(id): Path<String>,
) -> ApiResult<Replayed> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::bad(format!("{id:?} is not a dead-letter id")))?;
    let not_found = || ApiError::NotFound(format!("no dead letter {id}"));
    let dead = (state.store.dead_letters().await?.into_iter())
        .find(|d| d.id == id)
        .ok_or_else(not_found)?;
    let alert = (visible_alert(&state, &caller, dead.alert_id).await).map_err(|_| not_found())?;
    let receiver = state
        .store
        .replay_dead_letter(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no dead letter {id}")))?;
    if let Some(w) = state.webhook_wakes.get(&receiver) {
        w.notify_one();
    }
    let entry = audit_entry(
        &caller,
        "replay",
        format!("dead_letter/{id}"),
        Some(alert.city),
        client,
        None,
    );
    state.store.audit(entry).await?;
    Ok(Json(Replayed {
        id,
        receiver,
        state: "pending",
    }))
}

/// The answer of `GET /api/v1/audit`.
#[derive(Debug, Serialize)]
pub struct AuditLog {
    pub count: usize,
    pub entries: Vec<AuditEntry>,
}

/// The query of `GET /api/v1/audit`: `limit` (default 200).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    limit: Option<u32>,
}

/// `GET /api/v1/audit`: who acknowledged and replayed what, when and from where, newest first,
/// of the caller's cities. A 400 for a `limit` that is not a number from 1 to 10,000.
pub async fn audit(
    State(state): State<ApiState>,
    caller: Caller,
    ApiQuery(p): ApiQuery<AuditParams>,
) -> ApiResult<AuditLog> {
    let limit = params::limit(p.limit, 200, 10_000)?;
    let cities =
        (caller.cities.filter()).map(|cs| cs.iter().map(|c| c.as_str().to_owned()).collect());
    let entries = state.store.audit_log(cities, limit as usize).await?;
    Ok(Json(AuditLog {
        count: entries.len(),
        entries,
    }))
}
