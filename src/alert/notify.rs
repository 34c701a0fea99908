//! Webhook delivery from the durable outbox: one task per receiver, so a slow or dead receiver
//! only delays its own queue. Bodies are Alertmanager-compatible (webhook version 4); requests
//! are signed per the Standard Webhooks scheme with an id that is stable across retries.

use std::{sync::Arc, time::Duration};

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use jiff::Timestamp;
use metrics::counter;
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{engine::Transition, rule::ReceiverConfig};
use crate::store::{OutboxRow, Store};

/// Whether a transition goes to `receiver`.
pub fn wants(receiver: &ReceiverConfig, t: &Transition) -> bool {
    (receiver.cities.is_empty() || receiver.cities.contains(&t.city))
        && (receiver.severities.is_empty() || receiver.severities.contains(&t.severity))
        && (receiver.rules.is_empty() || receiver.rules.contains(&t.rule))
}

/// Stable across retries and restarts: receivers deduplicate on it.
pub fn webhook_id(alert_id: i64, firing: bool) -> String {
    format!(
        "msg_ioc_{alert_id}_{}",
        if firing { "firing" } else { "resolved" }
    )
}

/// The Alertmanager webhook body (version 4) for one alert change.
pub fn body(receiver: &str, t: &Transition, alert_id: i64, external_url: &str) -> String {
    let status = if t.firing { "firing" } else { "resolved" };
    // Alertmanager's zero time means "not ended".
    let ends_at = if t.firing {
        "0001-01-01T00:00:00Z".to_owned()
    } else {
        t.at.to_string()
    };
    let alert = json!({
        "status": status,
        "labels": t.labels,
        "annotations": {"summary": t.summary, "description": t.description},
        "startsAt": t.started_at.to_string(),
        "endsAt": ends_at,
        "generatorURL": format!("{external_url}/api/v1/alerts/{alert_id}"),
        "fingerprint": t.fingerprint,
    });
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{alertname=\"{}\"}}", t.rule),
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": {"alertname": t.rule},
        "commonLabels": t.labels,
        "commonAnnotations": {"summary": t.summary, "description": t.description},
        "externalURL": external_url,
        "alerts": [alert],
    })
    .to_string()
}

/// Standard Webhooks signature: base64 HMAC-SHA256 of `id.timestamp.body`, key from a
/// `whsec_<base64>` secret (or the secret's bytes).
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &str) -> String {
    let key = secret
        .strip_prefix("whsec_")
        .and_then(|b| STANDARD.decode(b).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec());
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes keys of any length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body.as_bytes());
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// Deliver `receiver`'s queue until cancelled: the next notification when it is due, then its
/// outcome recorded (delivered, retried later with backoff, or dead-lettered).
pub async fn deliver(
    receiver: ReceiverConfig,
    store: Store,
    client: reqwest::Client,
    wake: Arc<Notify>,
    cancel: CancellationToken,
) {
    let label = [("receiver", receiver.name.clone())];
    while !cancel.is_cancelled() {
        let Some(n) = next_due(&receiver, &store, &wake, &cancel).await else {
            continue;
        };
        counter!("ioc_webhook_deliveries_attempted_total", &label).increment(1);
        let (state, status, error) = attempt(&receiver, &client, &n).await;
        let (state, retry_at) = settle(&receiver, &n, state);
        match state {
            "delivered" => counter!("ioc_webhook_deliveries_succeeded_total", &label).increment(1),
            "dead" => {
                counter!("ioc_webhook_deliveries_failed_total", &label).increment(1);
                counter!("ioc_webhook_dead_lettered_total", &label).increment(1);
                warn!(receiver = %receiver.name, webhook_id = %n.webhook_id, error = ?error, "Webhook dead-lettered; replay it with POST /api/v1/webhooks/dead-letters/{}/replay.", n.id);
            }
            _ => {
                counter!("ioc_webhook_deliveries_failed_total", &label).increment(1);
                debug!(receiver = %receiver.name, webhook_id = %n.webhook_id, error = ?error, retry_at = %retry_at, "Webhook delivery failed; will retry.");
            }
        }
        if let Err(e) = store
            .notification_attempted(n.id, state, status, error, retry_at)
            .await
        {
            warn!(receiver = %receiver.name, error = %e, "Recording a delivery attempt failed; it may be sent again (same webhook-id).");
        }
    }
}

/// The receiver's next notification if it is due now; otherwise wait until it is due, the
/// queue is woken or 5 s pass (or `cancel`), and return `None` to look again.
async fn next_due(
    receiver: &ReceiverConfig,
    store: &Store,
    wake: &Notify,
    cancel: &CancellationToken,
) -> Option<OutboxRow> {
    let next = match store.next_notification(&receiver.name).await {
        Ok(n) => n,
        Err(e) => {
            warn!(receiver = %receiver.name, error = %e, "Reading the outbox failed.");
            None
        }
    };
    let wait = match &next {
        None => Duration::from_secs(5),
        Some(n) => {
            let due_in = n.next_attempt_at.as_millisecond() - Timestamp::now().as_millisecond();
            Duration::from_millis(due_in.max(0) as u64)
        }
    };
    if next.is_some() && wait.is_zero() {
        return next;
    }
    tokio::select! {
        _ = wake.notified() => {}
        _ = tokio::time::sleep(wait) => {}
        _ = cancel.cancelled() => {}
    }
    None
}

/// The state to record after an attempt that ended in `state`, and when to try next: a failed
/// attempt is retried after an exponential backoff from 1 s (capped at `backoff_max`, with
/// jitter) until `max_attempts`, then the notification is dead.
fn settle(
    receiver: &ReceiverConfig,
    n: &OutboxRow,
    state: &'static str,
) -> (&'static str, Timestamp) {
    if state != "pending" {
        return (state, Timestamp::now());
    }
    if n.attempts + 1 >= i64::from(receiver.max_attempts) {
        return ("dead", Timestamp::now());
    }
    let exp = Duration::from_secs(1).saturating_mul(1 << n.attempts.min(20) as u32);
    let backoff = (exp.min(receiver.backoff_max)).mul_f64(0.5 + rand::random::<f64>() * 0.5);
    let retry_at = Timestamp::now() + jiff::SignedDuration::try_from(backoff).unwrap_or_default();
    (state, retry_at)
}

async fn attempt(
    receiver: &ReceiverConfig,
    client: &reqwest::Client,
    n: &OutboxRow,
) -> (&'static str, Option<u16>, Option<String>) {
    let timestamp = Timestamp::now().as_second();
    let signature = sign(receiver.secret.expose(), &n.webhook_id, timestamp, &n.body);
    let request = client
        .post(&receiver.url)
        .timeout(receiver.timeout)
        .header("content-type", "application/json")
        .header("webhook-id", &n.webhook_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(n.body.clone());
    match request.send().await {
        Ok(resp) if resp.status().is_success() => ("delivered", Some(resp.status().as_u16()), None),
        Ok(resp) => {
            let status = resp.status().as_u16();
            let text: String = resp
                .text()
                .await
                .unwrap_or_default()
                .chars()
                .take(500)
                .collect();
            let error = Some(format!("HTTP {status}: {text}"));
            // A 4xx says the request itself is wrong: retrying sends the same thing. Except
            // 408 (timeout) and 429 (slow down), which are worth another try.
            if (400..500).contains(&status) && status != 408 && status != 429 {
                ("dead", Some(status), error)
            } else {
                ("pending", Some(status), error)
            }
        }
        Err(e) => ("pending", None, Some(e.to_string())),
    }
}

/// The `alerts` array of a body (for tests and the API).
pub fn alerts_of(body: &str) -> Vec<Value> {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["alerts"].as_array().cloned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_webhooks_signature_matches_the_spec_example() {
        // Example from the Standard Webhooks specification.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            sign(secret, id, 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}
