//! The path of one message from its feed's connection to the store, and of its ack back.
//!
//! ```text
//!  poll task ─Delivery─▶ feed task (decode + normalise) ─Pending─▶ commit thread ─AckToken─▶ ack task
//!            (bounded, per feed)                        (bounded, shared)        (unbounded, per feed)
//! ```
//! Each feed has its own decode task, so one feed's flood of bad payloads costs only its own
//! CPU; the shared store queue is fair (FIFO across senders), so no feed can starve another.
//! The commit thread sends an ack only after the transaction holding the message committed, and
//! in the order messages arrived, which is each feed's receive order.

mod config;

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use jiff::Timestamp;
use metrics::{Histogram, histogram};
use tokio::sync::mpsc;
use tracing::{error, trace, warn};

use crate::alert::AlertHandOff;
use crate::decode::Decoder;
use crate::model::{Normalised, RawMessage, RejectReason, Rejection};
use crate::normalise::Normaliser;
use crate::source::{AckToken, Delivery};
use crate::stats::{FeedStats, names};
use crate::store::{Content, Envelope, Outcome, Partial, StoreWriter};
pub use config::IngestConfig;

/// A decoded (or rejected) message waiting for its commit.
#[derive(Debug)]
pub struct Pending {
    pub envelope: Envelope,
    /// Index of the feed in the commit thread's `FeedLink`s.
    pub feed_index: usize,
    pub ack: AckToken,
}

/// What the commit thread needs of each feed: where its acks go, its live stats and its
/// latency histograms (registered once, not looked up per message).
pub struct FeedLink {
    acks: mpsc::UnboundedSender<AckToken>,
    stats: Arc<FeedStats>,
    /// Received → committed.
    ingest_latency: Histogram,
    /// Observed (the device's time) → committed: publish → queryable when devices publish
    /// at once.
    observed_to_commit: Histogram,
}

impl FeedLink {
    pub fn new(acks: mpsc::UnboundedSender<AckToken>, stats: Arc<FeedStats>) -> FeedLink {
        let feed = stats.feed.to_string();
        FeedLink {
            ingest_latency: histogram!(names::INGEST_LATENCY, "feed" => feed.clone()),
            observed_to_commit: histogram!(names::OBSERVED_TO_COMMIT, "feed" => feed),
            acks,
            stats,
        }
    }
}

impl std::fmt::Debug for FeedLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedLink")
            .field("feed", &self.stats.feed)
            .finish_non_exhaustive()
    }
}

/// Turn one raw message into what the store keeps: its readings (and what of it was rejected
/// or ignored), or, when nothing of it can be stored, the reason.
pub fn process(
    decoder: &Decoder,
    normaliser: &Normaliser,
    limits: &IngestConfig,
    topic: &str,
    payload: &Bytes,
    received_at: Timestamp,
    now: Timestamp,
) -> Result<Normalised, Rejection> {
    if payload.len() > limits.max_payload_bytes {
        return Err(Rejection::new(
            RejectReason::PayloadTooLarge,
            format!(
                "payload is {} bytes, the limit is {} (ingest.max_payload_bytes)",
                payload.len(),
                limits.max_payload_bytes
            ),
        ));
    }
    let decoded = decoder.decode(topic, payload, received_at)?;
    normaliser.normalise(decoded, decoder.vocabulary(), received_at, now)
}

/// What a feed's decode task works with.
#[derive(Debug)]
pub struct FeedStage {
    pub decoder: Decoder,
    pub normaliser: Normaliser,
    pub limits: IngestConfig,
    pub stats: Arc<FeedStats>,
}

/// The decode task of one feed. Ends when its input closes (the connection stopped intake) or
/// the store queue is gone.
pub async fn run_feed(
    feed_index: usize,
    stage: FeedStage,
    mut input: mpsc::Receiver<Delivery>,
    store: mpsc::Sender<Pending>,
    cancel: tokio_util::sync::CancellationToken,
) {
    let mut ignored = IgnoredCounters::new(&stage.stats);
    while let Some(Delivery { message, ack }) = next_delivery(&mut input, &cancel).await {
        let pending = Pending {
            envelope: stage.envelope(message, &mut ignored, Timestamp::now()),
            feed_index,
            ack,
        };
        if store.send(pending).await.is_err() {
            break;
        }
    }
}

/// The feed's next delivery; once cancelled, only what is already queued, then `None`.
async fn next_delivery(
    input: &mut mpsc::Receiver<Delivery>,
    cancel: &tokio_util::sync::CancellationToken,
) -> Option<Delivery> {
    tokio::select! {
        biased;
        d = input.recv() => d,
        _ = cancel.cancelled() => {
            // Stop accepting; what is already queued is still processed.
            input.close();
            input.recv().await
        }
    }
}

impl FeedStage {
    /// What the store keeps of `message`: its readings, with the parts of it that were
    /// rejected, or, when nothing of it can be stored, its rejection and payload.
    fn envelope(
        &self,
        message: RawMessage,
        ignored: &mut IgnoredCounters,
        now: Timestamp,
    ) -> Envelope {
        let mut partial = None;
        let content = match process(
            &self.decoder,
            &self.normaliser,
            &self.limits,
            &message.topic,
            &message.payload,
            message.received_at,
            now,
        ) {
            Ok(n) => {
                ignored.count(&n.ignored);
                partial = self.partial(&message, n.rejected);
                Content::Readings(n.readings)
            }
            Err(rejection) => self.rejected(&message, rejection),
        };
        Envelope {
            feed: message.feed,
            topic: message.topic,
            received_at: message.received_at,
            content,
            partial,
        }
    }

    /// The parts of a stored message that were rejected, with the start of its payload for
    /// the quarantine; `None` when every part was stored.
    fn partial(&self, message: &RawMessage, rejected: Vec<Rejection>) -> Option<Box<Partial>> {
        if rejected.is_empty() {
            return None;
        }
        trace!(feed = %message.feed, topic = message.topic, rejected = rejected.len(), "Parts of a message rejected.");
        let keep = message.payload.len().min(self.limits.quarantine_max_bytes);
        Some(Box::new(Partial {
            rejected,
            payload: message.payload.slice(..keep),
            payload_size: message.payload.len(),
        }))
    }

    /// A message none of which can be stored: its rejection and the start of its payload.
    fn rejected(&self, message: &RawMessage, rejection: Rejection) -> Content {
        trace!(feed = %message.feed, topic = message.topic, %rejection, "Message rejected.");
        let keep = message.payload.len().min(self.limits.quarantine_max_bytes);
        Content::Rejected {
            rejection,
            payload: message.payload.slice(..keep),
            payload_size: message.payload.len(),
            dup: message.dup,
        }
    }
}

/// The counters of ignored fields of one feed (Prometheus and the feed's snapshot), registered
/// on first use: a field name comes from the formats' catalogues, so there are few.
struct IgnoredCounters {
    stats: Arc<FeedStats>,
    counters: Vec<(
        &'static str,
        metrics::Counter,
        Arc<std::sync::atomic::AtomicU64>,
    )>,
}

impl IgnoredCounters {
    fn new(stats: &Arc<FeedStats>) -> IgnoredCounters {
        IgnoredCounters {
            stats: Arc::clone(stats),
            counters: Vec::new(),
        }
    }

    fn count(&mut self, fields: &[&'static str]) {
        if fields.is_empty() {
            return;
        }
        self.stats.ignored(fields.len());
        for &field in fields {
            let i = match self.counters.iter().position(|(f, ..)| *f == field) {
                Some(i) => i,
                None => {
                    let feed = self.stats.feed.to_string();
                    let c = metrics::counter!(names::IGNORED, "feed" => feed, "field" => field);
                    self.counters
                        .push((field, c, self.stats.ignored_field(field)));
                    self.counters.len() - 1
                }
            };
            let (_, prometheus, snapshot) = &self.counters[i];
            prometheus.increment(1);
            snapshot.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Remove the readings at these positions (messages, then readings; ascending) from `batch`:
/// values a conflict did not keep, which consumers after the commit must not act on.
fn drop_readings(batch: &mut [Envelope], positions: &[usize]) {
    if positions.is_empty() {
        return;
    }
    let (mut flat, mut next) = (0, positions.iter().peekable());
    for env in batch {
        if let Content::Readings(readings) = &mut env.content {
            let start = flat;
            flat += readings.len();
            let mut i = start;
            readings.retain(|_| {
                let drop = next.next_if(|&&p| p == i).is_some();
                i += 1;
                !drop
            });
        }
    }
}

/// How the commit loop groups messages into transactions.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    pub max_messages: usize,
    /// How long to wait after the first message for more (group commit).
    pub linger: Duration,
}

/// The commit loop, on its own OS thread (SQLite is blocking). Commits what arrives within
/// `linger` of the first queued message, up to `max_messages` per transaction, then acks and
/// hands what was stored to `alerts`. Ends when every feed task has ended.
///
/// Why linger: a commit's cost is mostly fixed (it rewrites each index page it touched, one per
/// active series, and syncs). Committing the moment anything is queued gives tiny, expensive
/// commits under load that burn the CPU the decoders need, which keeps batches tiny.
pub fn run_commits(
    mut writer: StoreWriter,
    mut queue: mpsc::Receiver<Pending>,
    feeds: Vec<FeedLink>,
    batching: Batching,
    alerts: Option<AlertHandOff>,
) {
    let mut batch: Vec<Pending> = Vec::with_capacity(batching.max_messages);
    let mut last_prune = std::time::Instant::now();
    while let Some(first) = queue.blocking_recv() {
        linger(&mut queue, first, &mut batch, batching);
        let mut acks = Vec::with_capacity(batch.len());
        let mut envelopes = Vec::with_capacity(batch.len());
        for p in batch.drain(..) {
            acks.push((p.feed_index, p.ack));
            envelopes.push(p.envelope);
        }
        let outcomes = commit_with_retry(&mut writer, &envelopes);
        let now = Timestamp::now();
        for ((envelope, outcome), (feed_index, ack)) in envelopes.iter().zip(&outcomes).zip(acks) {
            let link = &feeds[feed_index];
            link.committed(envelope, outcome, now);
            // The ack task may be gone at shutdown; the broker then redelivers, and the store
            // recognises the duplicate.
            let _ = link.acks.send(ack);
        }
        if let Some(alerts) = &alerts {
            let mut envelopes = envelopes;
            drop_readings(&mut envelopes, writer.discarded());
            alerts.committed(envelopes, &outcomes);
        }
        upkeep(&mut writer, &mut last_prune, now);
    }
    // Otherwise the next start replays the readings since the last flush: slower, not lossy.
    if let Err(e) = writer.flush() {
        warn!(error = %e, "Writing the latest values at shutdown failed; the next start rebuilds them.");
    }
}

/// Fill `batch` with `first` and what else arrives within `linger` of it, up to
/// `max_messages`.
fn linger(
    queue: &mut mpsc::Receiver<Pending>,
    first: Pending,
    batch: &mut Vec<Pending>,
    batching: Batching,
) {
    let deadline = std::time::Instant::now() + batching.linger;
    batch.push(first);
    while batch.len() < batching.max_messages {
        match queue.try_recv() {
            Ok(p) => batch.push(p),
            Err(mpsc::error::TryRecvError::Empty) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(_) => break,
        }
    }
}

/// The store's upkeep between commits: move the recent log rows when due, start the WAL over
/// when asked, and prune expired data once a minute. Failures are retried next time.
fn upkeep(writer: &mut StoreWriter, last_prune: &mut std::time::Instant, now: Timestamp) {
    let moving = std::time::Instant::now();
    match writer.merge_recent_if_due() {
        Ok(0) => {}
        Ok(rows) => trace!(rows, took = ?moving.elapsed(), "Moved the recent log rows."),
        Err(e) => warn!(error = %e, "Moving the recent log rows failed; will retry."),
    }
    if let Err(e) = writer.restart_wal_if_asked() {
        warn!(error = %e, "Starting the WAL over failed; will retry.");
    }
    if last_prune.elapsed() > Duration::from_secs(60) {
        *last_prune = std::time::Instant::now();
        match writer.prune(now) {
            Ok(stats) => trace!(?stats, "Pruned expired data."),
            Err(e) => warn!(error = %e, "Pruning expired data failed; will retry."),
        }
    }
}

impl FeedLink {
    /// Count a committed message in the feed's stats and latency histograms.
    fn committed(&self, envelope: &Envelope, outcome: &Outcome, now: Timestamp) {
        self.count(outcome, &envelope.content);
        if let Some(p) = &envelope.partial
            && matches!(outcome, Outcome::Stored { .. })
        {
            self.stats.partial(&p.rejected);
        }
        self.stats.committed(now, envelope.received_at);
        let latency = (now.as_millisecond() - envelope.received_at.as_millisecond()) as f64;
        self.ingest_latency.record(latency / 1000.0);
        if let Content::Readings(r) = &envelope.content
            && let Some(first) = r.first()
        {
            let age = (now.as_millisecond() - first.observed_at.as_millisecond()) as f64;
            self.observed_to_commit.record(age / 1000.0);
        }
    }

    /// Count what the commit did with a message: stored, duplicate, conflicted or rejected.
    fn count(&self, outcome: &Outcome, content: &Content) {
        match outcome {
            Outcome::Stored {
                inserted,
                conflicts,
            } => {
                self.stats.stored(*inserted);
                self.stats.conflicts(*conflicts);
            }
            Outcome::Duplicate => self.stats.duplicate(),
            Outcome::Conflicted { conflicts } => {
                self.stats.rejected(RejectReason::Conflict);
                self.stats.conflicts(*conflicts);
            }
            Outcome::Rejected => self.stats.rejected(match content {
                Content::Rejected { rejection, .. } => rejection.reason,
                // Not produced by the writer: a message with readings is never Rejected.
                Content::Readings(_) => RejectReason::InvalidSchema,
            }),
        }
    }
}

/// A commit that fails (disk full, I/O error) is retried with backoff, never skipped: nothing is
/// acked until it succeeds, and meanwhile the queues fill and the feeds stop reading.
fn commit_with_retry(writer: &mut StoreWriter, envelopes: &[Envelope]) -> Vec<Outcome> {
    let mut delay = Duration::from_millis(100);
    loop {
        let started = std::time::Instant::now();
        match writer.commit(envelopes) {
            Ok(outcomes) => {
                histogram!(names::COMMIT_SECONDS).record(started.elapsed().as_secs_f64());
                histogram!(names::COMMIT_BATCH).record(envelopes.len() as f64);
                return outcomes;
            }
            Err(e) => {
                metrics::counter!(names::COMMIT_ERRORS).increment(1);
                error!(error = %e, messages = envelopes.len(), retry_in = ?delay, "Store commit failed; nothing acked, retrying.");
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FeedId, Reading};

    fn envelope(values: &[f64]) -> Envelope {
        let at = Timestamp::from_second(1_795_000_000).unwrap();
        let readings = values
            .iter()
            .map(|&value| Reading::sample("A", "pm25", at, value))
            .collect();
        Envelope {
            feed: FeedId::new("thai-nguyen"),
            topic: "t".into(),
            received_at: at,
            content: Content::Readings(readings),
            partial: None,
        }
    }

    fn values(batch: &[Envelope]) -> Vec<Vec<f64>> {
        batch
            .iter()
            .map(|e| match &e.content {
                Content::Readings(r) => r.iter().map(|r| r.value).collect(),
                Content::Rejected { .. } => vec![],
            })
            .collect()
    }

    #[test]
    fn readings_a_conflict_discarded_are_not_passed_on() {
        let mut batch = vec![
            envelope(&[1.0, 2.0]),
            envelope(&[3.0]),
            envelope(&[4.0, 5.0]),
        ];
        drop_readings(&mut batch, &[1, 2, 4]);
        assert_eq!(values(&batch), vec![vec![1.0], vec![], vec![4.0]]);
        drop_readings(&mut batch, &[]);
        assert_eq!(values(&batch), vec![vec![1.0], vec![], vec![4.0]]);
    }
}
