//! What a commit quarantines besides whole messages: the rejected parts of a stored message,
//! and the value a conflict did not keep.

use super::*;

/// Record the value a conflict did not keep as a `conflict` reject: the message's place, what
/// was kept and why, and as payload the discarded reading as JSON.
pub(super) fn conflict(
    tx: &rusqlite::Transaction<'_>,
    env: &Envelope,
    r: &Reading,
    discarded: f64,
    discarded_status: i64,
    kept: f64,
    policy: OnConflict,
) -> Result<(), StoreError> {
    let (which, rule) = whose(discarded.to_bits() == r.value.to_bits(), policy);
    let detail = format!(
        "device {}: {} at {}: kept {kept} {}, discarded {which} {discarded} ({rule})",
        r.device_id, r.metric, r.observed_at, r.unit
    );
    let status = crate::store::status_name(discarded_status);
    let payload = serde_json::json!({
        "device_id": r.device_id,
        "metric": r.metric,
        "observed_at": r.observed_at,
        "value": discarded,
        "unit": r.unit,
        "status": status,
        "kept": kept,
    })
    .to_string();
    crate::store::insert_reject(
        tx,
        &part_of(env, RejectReason::Conflict, &detail, payload.as_bytes()),
    )
}

/// Whose value a conflict discarded (this message's, when `own`, else the stored one), and by
/// which rule.
fn whose(own: bool, policy: OnConflict) -> (&'static str, &'static str) {
    match (own, policy) {
        (true, OnConflict::KeepFirst) => ("this message's", "keep_first: the stored value stays"),
        (true, OnConflict::KeepLatest) => (
            "this message's",
            "keep_latest: a later value in the same batch won",
        ),
        (false, _) => (
            "the stored",
            "keep_latest: this message's value replaced it",
        ),
    }
}

/// A reject row for a part of `env`'s message.
pub(super) fn part_of<'a>(
    env: &'a Envelope,
    reason: RejectReason,
    detail: &'a str,
    payload: &'a [u8],
) -> crate::store::Quarantined<'a> {
    crate::store::Quarantined {
        feed: env.feed.as_str(),
        topic: &env.topic,
        received_at: env.received_at.as_millisecond(),
        reason,
        detail,
        payload,
        payload_size: payload.len(),
        sha256: None,
        partial: true,
    }
}

/// Quarantine the rejected parts of a stored message: one reject with the first part's
/// reason, every part's reason and detail, and the raw payload.
pub(super) fn quarantine_parts(
    tx: &rusqlite::Transaction<'_>,
    env: &Envelope,
    p: &Partial,
) -> Result<(), StoreError> {
    let stored = match &env.content {
        Content::Readings(r) => r.len(),
        Content::Rejected { .. } => 0,
    };
    let detail = format!(
        "{} part(s) rejected, {stored} reading(s) stored: {}",
        p.rejected.len(),
        Rejection::joined(&p.rejected)
    );
    let reason = p
        .rejected
        .first()
        .map_or(RejectReason::InvalidSchema, |r| r.reason);
    crate::store::insert_reject(
        tx,
        &crate::store::Quarantined {
            // Truncated to `ingest.quarantine_max_bytes`: the size is the original's.
            payload_size: p.payload_size,
            ..part_of(env, reason, &detail, &p.payload)
        },
    )
}
