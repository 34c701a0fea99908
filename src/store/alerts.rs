//! Alert incidents and the webhook outbox.

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter, types::Value as Sql};
use serde::Serialize;

use super::{Store, StoreError, ts};

/// An alert change to record, with the notifications it causes (receiver, webhook id, body).
#[derive(Debug, Clone)]
pub struct NewAlert {
    pub fingerprint: String,
    pub rule: String,
    pub subject: String,
    pub city: String,
    pub severity: String,
    pub firing: bool,
    pub labels: serde_json::Value,
    pub summary: String,
    pub description: String,
    pub value: Option<f64>,
    pub started_at: Timestamp,
    pub at: Timestamp,
}

/// An alert incident as stored and as the API shows it: one row from firing to resolved.
/// `state` is `firing` or `resolved`, `ends_at` is set once resolved, and the `acked_*` fields
/// once someone acknowledged it; `labels` is the incident's JSON object of labels.
#[derive(Debug, Clone, Serialize)]
pub struct AlertRow {
    pub id: i64,
    pub fingerprint: String,
    pub rule: String,
    pub subject: String,
    pub city: String,
    pub severity: String,
    pub state: String,
    pub labels: serde_json::Value,
    pub summary: String,
    pub description: String,
    pub value: Option<f64>,
    pub starts_at: Timestamp,
    pub ends_at: Option<Timestamp>,
    pub acked_by: Option<String>,
    pub acked_at: Option<Timestamp>,
    pub ack_comment: Option<String>,
}

/// Which incidents [`Store::alerts`] lists: exact matches on state, city (`thai-nguyen`, …) and
/// severity (`info`, `warning`, `critical`), `None` matching any, and at most `limit` rows. The
/// default lists nothing: its `limit` is 0.
#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    /// `firing`, `resolved`, or None for all.
    pub state: Option<String>,
    pub city: Option<String>,
    pub severity: Option<String>,
    pub limit: u32,
}

/// One webhook notification in the outbox: the receiver it goes to, its idempotency id
/// (`webhook_id`), the incident it reports and the JSON body to post. `state` is `pending`,
/// `delivered` or `dead`; `attempts`, `last_status` (HTTP) and `last_error` tell of the attempts
/// so far, and a pending one is due at `next_attempt_at`.
#[derive(Debug, Clone, Serialize)]
pub struct OutboxRow {
    pub id: i64,
    pub receiver: String,
    pub webhook_id: String,
    pub alert_id: i64,
    pub body: String,
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: Timestamp,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
}

const ALERT_COLUMNS: &str =
    "id, fingerprint, rule, subject, city, severity, state, labels, summary, description,
    value, starts_at, ends_at, acked_by, acked_at, ack_comment";

fn alert_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<AlertRow> {
    Ok(AlertRow {
        id: row.get(0)?,
        fingerprint: row.get(1)?,
        rule: row.get(2)?,
        subject: row.get(3)?,
        city: row.get(4)?,
        severity: row.get(5)?,
        state: row.get(6)?,
        labels: serde_json::from_str(&row.get::<_, String>(7)?).unwrap_or_default(),
        summary: row.get(8)?,
        description: row.get(9)?,
        value: row.get(10)?,
        starts_at: ts(row.get(11)?),
        ends_at: row.get::<_, Option<i64>>(12)?.map(ts),
        acked_by: row.get(13)?,
        acked_at: row.get::<_, Option<i64>>(14)?.map(ts),
        ack_comment: row.get(15)?,
    })
}

const OUTBOX_COLUMNS: &str = "id, receiver, webhook_id, alert_id, body, state, attempts, next_attempt_at, last_status, last_error, created_at";

fn outbox_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<OutboxRow> {
    Ok(OutboxRow {
        id: row.get(0)?,
        receiver: row.get(1)?,
        webhook_id: row.get(2)?,
        alert_id: row.get(3)?,
        body: row.get(4)?,
        state: row.get(5)?,
        attempts: row.get(6)?,
        next_attempt_at: ts(row.get(7)?),
        last_status: row.get(8)?,
        last_error: row.get(9)?,
        created_at: ts(row.get(10)?),
    })
}

/// The open (firing) incident of a fingerprint, the newest should there be several.
const SELECT_FIRING: &str =
    "SELECT id FROM alerts WHERE fingerprint = ?1 AND state = 'firing' ORDER BY id DESC LIMIT 1";

/// Resolve incident `?1` at `?2`, with its last value `?3` when there is one.
const RESOLVE_INCIDENT: &str = "UPDATE alerts SET state = 'resolved', ends_at = ?2, value = COALESCE(?3, value), updated_at = ?2 WHERE id = ?1";

/// A new incident, firing or (a resolution without an open incident) already resolved.
const INSERT_INCIDENT: &str =
    "INSERT INTO alerts (fingerprint, rule, subject, city, severity, state, labels, summary,
                                             description, value, starts_at, ends_at, updated_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)";

/// A pending notification, due now; one already queued under its webhook id is left as it is.
const QUEUE_NOTIFICATION: &str = "INSERT INTO outbox (receiver, webhook_id, alert_id, body, state, next_attempt_at, created_at)
                 VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?5) ON CONFLICT (receiver, webhook_id) DO NOTHING";

/// Record the alert change in its incident: firing while one is open changes nothing,
/// resolving closes the open one, and otherwise a new incident starts. The incident's id.
fn record_incident(tx: &rusqlite::Transaction<'_>, alert: &NewAlert) -> Result<i64, StoreError> {
    let now = alert.at.as_millisecond();
    let open: Option<i64> = tx
        .query_row(SELECT_FIRING, [&alert.fingerprint], |r| r.get(0))
        .optional()?;
    Ok(match (alert.firing, open) {
        (true, Some(id)) => id, // already firing (restart race): no second incident
        (false, Some(id)) => {
            tx.execute(RESOLVE_INCIDENT, params![id, now, alert.value])?;
            id
        }
        (firing, None) => {
            tx.execute(
                INSERT_INCIDENT,
                params![
                    alert.fingerprint,
                    alert.rule,
                    alert.subject,
                    alert.city,
                    alert.severity,
                    if firing { "firing" } else { "resolved" },
                    alert.labels.to_string(),
                    alert.summary,
                    alert.description,
                    alert.value,
                    alert.started_at.as_millisecond(),
                    (!firing).then_some(now),
                    now,
                ],
            )?;
            tx.last_insert_rowid()
        }
    })
}

impl Store {
    /// Record an alert change and queue its notifications, in one transaction: a change is
    /// never recorded without its notifications, nor notified without being recorded.
    /// `notifications` gets the incident id and returns (receiver, webhook id, body) triples.
    pub async fn record_alert<F>(
        &self,
        alert: NewAlert,
        notifications: F,
    ) -> Result<i64, StoreError>
    where
        F: FnOnce(i64) -> Vec<(String, String, String)> + Send + 'static,
    {
        self.side_write(move |conn| {
            // IMMEDIATE: take the write lock before reading, so the read→write upgrade cannot
            // fail with SQLITE_BUSY (which the busy timeout does not cover).
            let tx = rusqlite::Transaction::new_unchecked(
                conn,
                rusqlite::TransactionBehavior::Immediate,
            )?;
            let id = record_incident(&tx, &alert)?;
            let mut queue = tx.prepare_cached(QUEUE_NOTIFICATION)?;
            let now = alert.at.as_millisecond();
            for (receiver, webhook_id, body) in notifications(id) {
                queue.execute(params![receiver, webhook_id, id, body, now])?;
            }
            drop(queue);
            tx.commit()?;
            Ok(id)
        })
        .await
    }

    /// The incidents `filter` selects, newest first (by id).
    pub async fn alerts(&self, filter: &AlertFilter) -> Result<Vec<AlertRow>, StoreError> {
        let f = filter.clone();
        self.read(move |conn| {
            let mut clauses = Vec::new();
            let mut values: Vec<Sql> = Vec::new();
            for (column, value) in [
                ("state", f.state),
                ("city", f.city),
                ("severity", f.severity),
            ] {
                if let Some(v) = value {
                    values.push(Sql::Text(v));
                    clauses.push(format!("{column} = ?{}", values.len()));
                }
            }
            let filter = if clauses.is_empty() {
                String::new()
            } else {
                format!("WHERE {}", clauses.join(" AND "))
            };
            let sql = format!(
                "SELECT {ALERT_COLUMNS} FROM alerts {filter} ORDER BY id DESC LIMIT {}",
                f.limit
            );
            let mut stmt = conn.prepare(&sql)?;
            let rows = stmt.query_map(params_from_iter(values.iter()), alert_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// One incident by id; `None` if there is none.
    pub async fn alert(&self, id: i64) -> Result<Option<AlertRow>, StoreError> {
        self.read(move |conn| alert_by_id(conn, id)).await
    }

    /// Acknowledge an incident (who, when, why). Returns the updated row, None if unknown.
    pub async fn ack_alert(
        &self,
        id: i64,
        by: String,
        comment: Option<String>,
    ) -> Result<Option<AlertRow>, StoreError> {
        self.side_write(move |conn| {
            conn.execute(
                "UPDATE alerts SET acked_by = ?2, acked_at = ?3, ack_comment = ?4, updated_at = ?3 WHERE id = ?1",
                params![id, by, Timestamp::now().as_millisecond(), comment],
            )?;
            alert_by_id(conn, id)
        })
        .await
    }

    /// The oldest notification due for `receiver` (pending, in queue order).
    pub async fn next_notification(&self, receiver: &str) -> Result<Option<OutboxRow>, StoreError> {
        let receiver = receiver.to_owned();
        self.read(move |conn| {
            Ok(conn
                .query_row(
                    &format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE receiver = ?1 AND state = 'pending' ORDER BY id LIMIT 1"),
                    [receiver],
                    outbox_row,
                )
                .optional()?)
        })
        .await
    }

    /// Record a delivery attempt: `state` becomes delivered, dead or stays pending until `retry_at`.
    pub async fn notification_attempted(
        &self,
        id: i64,
        state: &'static str,
        status: Option<u16>,
        error: Option<String>,
        retry_at: Timestamp,
    ) -> Result<(), StoreError> {
        self.side_write(move |conn| {
            let now = Timestamp::now().as_millisecond();
            conn.execute(
                "UPDATE outbox SET state = ?2, attempts = attempts + 1, last_status = ?3, last_error = ?4,
                        next_attempt_at = ?5, delivered_at = CASE WHEN ?2 = 'delivered' THEN ?6 END
                 WHERE id = ?1",
                params![id, state, status, error, retry_at.as_millisecond(), now],
            )?;
            Ok(())
        })
        .await
    }

    /// Every notification given up on (`dead`: refused by its receiver, or out of attempts),
    /// oldest first, without a limit.
    pub async fn dead_letters(&self) -> Result<Vec<OutboxRow>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE state = 'dead' ORDER BY id"
            ))?;
            let rows = stmt.query_map([], outbox_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Put a dead letter back in its receiver's queue. Returns its receiver, None if no such
    /// dead letter.
    pub async fn replay_dead_letter(&self, id: i64) -> Result<Option<String>, StoreError> {
        self.side_write(move |conn| {
            let receiver: Option<String> = conn
                .query_row("SELECT receiver FROM outbox WHERE id = ?1 AND state = 'dead'", [id], |r| r.get(0))
                .optional()?;
            if receiver.is_some() {
                conn.execute(
                    "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = ?2 WHERE id = ?1",
                    params![id, Timestamp::now().as_millisecond()],
                )?;
            }
            Ok(receiver)
        })
        .await
    }
}

fn alert_by_id(conn: &Connection, id: i64) -> Result<Option<AlertRow>, StoreError> {
    Ok(conn
        .query_row(
            &format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ?1"),
            [id],
            alert_row,
        )
        .optional()?)
}
