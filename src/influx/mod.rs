//! The InfluxDB forwarder: reads the store's reading log from a persisted cursor and writes it
//! to InfluxDB 2 through the `influxdb2` crate. At-least-once from the store — the cursor moves
//! only after InfluxDB acknowledged a batch — and idempotent on the InfluxDB side (a replayed
//! point has the same measurement, tags and time, so it overwrites), so replays never duplicate.
//!
//! While InfluxDB is down or slow the forwarder retries with capped, jittered exponential
//! backoff and ingest goes on: the backlog stays in the store on disk, and memory holds one
//! batch. A 413 splits the batch; a 400/422 bisects it to find the lines InfluxDB refuses,
//! which are quarantined (with the server's message) in `/api/v1/rejects`, and the rest is
//! written. `Retry-After` cannot be honoured: `influxdb2`'s errors carry status and body but no
//! headers, so 429/503 use the same capped backoff.

mod config;
pub mod line;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use bytes::Bytes;
use influxdb2::{RequestError, api::write::TimestampPrecision};
use jiff::Timestamp;
use metrics::{counter, gauge};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::model::RejectReason;
use crate::{
    stats::FeedStats,
    store::{LogEntry, Store},
};
pub use config::InfluxConfig;

/// Name of the forwarder's cursor in the store.
pub const CURSOR: &str = "influx";
/// How often the pipeline's own health is written (measurement `ioc_pipeline`).
const HEALTH_EVERY: Duration = Duration::from_secs(10);
/// Measurement of the pipeline's own health, tagged `feed`.
pub const PIPELINE_MEASUREMENT: &str = "ioc_pipeline";
/// Its fields (floats).
pub const PIPELINE_FIELDS: &[&str] = &[
    "connected",
    "received",
    "stored",
    "rejected",
    "duplicate",
    "rate_per_s",
    "influx_backlog",
    "influx_lag_seconds",
];

/// Live state of the forwarder, for `/api/v1/feeds` and `/metrics`.
#[derive(Debug, Default)]
pub struct ForwardStats {
    enabled: std::sync::atomic::AtomicBool,
    cursor: AtomicI64,
    backlog: AtomicI64,
    lag_ms: AtomicI64,
    points: AtomicU64,
    readings: AtomicU64,
    retries: AtomicU64,
    rejected: AtomicU64,
    last_write_ms: AtomicI64,
    last_error: Mutex<Option<(Timestamp, String)>>,
}

/// The InfluxDB forwarder's state, as `/api/v1/feeds` shows it under `influx`. `enabled` is
/// false, and everything else zero or empty, when no InfluxDB is configured. Counts are since
/// start; the fields are read one by one, so they may be a moment apart.
#[derive(Debug, Clone, Serialize)]
pub struct ForwardSnapshot {
    pub enabled: bool,
    /// Log position forwarded so far.
    pub cursor: i64,
    /// Readings stored but not yet acknowledged by InfluxDB.
    pub backlog: i64,
    /// Age of the oldest reading not yet forwarded, in seconds.
    pub lag_seconds: f64,
    pub points_written: u64,
    pub readings_written: u64,
    pub retries: u64,
    /// Lines InfluxDB refused as bad data (quarantined).
    pub rejected_lines: u64,
    pub last_write_at: Option<Timestamp>,
    pub last_error: Option<String>,
    pub last_error_at: Option<Timestamp>,
}

impl ForwardStats {
    /// The forwarder's state now, from counters it updates as it goes: it never waits for a
    /// write to InfluxDB to finish.
    pub fn snapshot(&self) -> ForwardSnapshot {
        let error = self
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let last = self.last_write_ms.load(Relaxed);
        ForwardSnapshot {
            enabled: self.enabled.load(Relaxed),
            cursor: self.cursor.load(Relaxed),
            backlog: self.backlog.load(Relaxed),
            lag_seconds: self.lag_ms.load(Relaxed) as f64 / 1000.0,
            points_written: self.points.load(Relaxed),
            readings_written: self.readings.load(Relaxed),
            retries: self.retries.load(Relaxed),
            rejected_lines: self.rejected.load(Relaxed),
            last_write_at: (last != 0)
                .then(|| Timestamp::from_millisecond(last).ok())
                .flatten(),
            last_error: error.as_ref().map(|(_, m)| m.clone()),
            last_error_at: error.map(|(t, _)| t),
        }
    }

    fn error(&self, message: String) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Timestamp::now(), message));
    }
}

/// How a write attempt ended.
enum Attempt {
    Written,
    /// Worth retrying later (network, timeout, 5xx, 429, 408, auth while fixed).
    Retry(String),
    TooLarge,
    BadData(String),
}

/// How writing one chunk of lines ended.
enum Chunk<'l> {
    /// Written, or its one line refused and quarantined.
    Done,
    /// Too large or holding bad data: to be written as these two halves.
    Halves(&'l [String], &'l [String]),
    /// Cancelled while retrying.
    Cancelled,
}

struct Forwarder {
    client: influxdb2::Client,
    config: InfluxConfig,
    store: Store,
    stats: Arc<ForwardStats>,
    cancel: CancellationToken,
}

/// Run until `cancel`; returns after the batch in flight is written (or abandoned to a later
/// replay — the cursor only moves after an acknowledged write).
pub async fn run(
    config: InfluxConfig,
    store: Store,
    stats: Arc<ForwardStats>,
    feeds: Vec<Arc<FeedStats>>,
    cancel: CancellationToken,
) {
    let token = config
        .token
        .as_ref()
        .map(|t| t.expose().to_owned())
        .unwrap_or_default();
    let client = influxdb2::Client::new(config.url.clone(), config.org.clone(), token);
    stats.enabled.store(true, Relaxed);
    let f = Forwarder {
        client,
        config,
        store,
        stats,
        cancel,
    };
    info!(url = %f.config.url, bucket = %f.config.bucket, "Forwarding readings to InfluxDB.");
    f.run(feeds).await;
}

impl Forwarder {
    async fn run(&self, feeds: Vec<Arc<FeedStats>>) {
        let Some(mut cursor) = self.start().await else {
            return;
        };
        let mut last_health = std::time::Instant::now();
        while !self.cancel.is_cancelled() {
            self.observe(cursor).await;
            if last_health.elapsed() >= HEALTH_EVERY {
                last_health = std::time::Instant::now();
                self.write_health(&feeds).await;
            }
            let Some(batch) = self.next_batch(cursor).await else {
                continue;
            };
            let Some(last) = batch.last().map(|e| e.id) else {
                continue;
            };
            if !self.forward(&batch).await {
                break; // cancelled while retrying: the cursor stays, the batch is replayed later
            }
            if let Err(e) = self.store.set_cursor(CURSOR, last).await {
                warn!(error = %e, "Persisting the InfluxDB cursor failed; the batch may be replayed (harmless).");
            }
            cursor = last;
            self.stats.cursor.store(cursor, Relaxed);
            // A partial batch means we are caught up: let the next one fill for a flush interval.
            if batch.len() < self.config.batch_size {
                self.pause(self.config.flush_interval).await;
            }
        }
        self.observe(cursor).await;
    }

    /// The persisted cursor (0 before the first write); `None` (logged) when it cannot be read.
    async fn start(&self) -> Option<i64> {
        match self.store.cursor(CURSOR).await {
            Ok(c) => Some(c.unwrap_or(0)),
            Err(e) => {
                error!(error = %e, "Cannot read the InfluxDB cursor; forwarding disabled.");
                None
            }
        }
    }

    /// The next batch of the log after `cursor`; `None`, after a flush interval's pause, when
    /// there is nothing new or the read failed.
    async fn next_batch(&self, cursor: i64) -> Option<Vec<LogEntry>> {
        match self
            .store
            .read_log(cursor, self.config.batch_size as u32)
            .await
        {
            Ok(batch) if !batch.is_empty() => Some(batch),
            Ok(_) => {
                self.pause(self.config.flush_interval).await;
                None
            }
            Err(e) => {
                warn!(error = %e, "Reading the store log failed; retrying.");
                self.pause(self.config.flush_interval).await;
                None
            }
        }
    }

    /// Backlog and lag, for the API and metrics.
    async fn observe(&self, cursor: i64) {
        self.stats.cursor.store(cursor, Relaxed);
        if let Ok(backlog) = self.store.readings_after(cursor).await {
            self.stats.backlog.store(backlog, Relaxed);
            gauge!("ioc_influx_backlog_readings").set(backlog as f64);
        }
        let lag = match self.store.received_after(cursor).await {
            Ok(Some(t)) => (Timestamp::now().as_millisecond() - t.as_millisecond()).max(0),
            _ => 0,
        };
        self.stats.lag_ms.store(lag, Relaxed);
        gauge!("ioc_influx_lag_seconds").set(lag as f64 / 1000.0);
    }

    async fn pause(&self, d: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = self.cancel.cancelled() => {}
        }
    }

    /// Write every entry of `batch` (or quarantine what InfluxDB refuses). False if cancelled.
    async fn forward(&self, batch: &[LogEntry]) -> bool {
        let lines: Vec<String> = line::encode(batch).into_iter().map(|(l, _)| l).collect();
        let mut stack: Vec<&[String]> = vec![&lines];
        while let Some(chunk) = stack.pop() {
            match self.write_chunk(chunk, batch).await {
                Chunk::Done => {}
                Chunk::Halves(a, b) => {
                    stack.push(b);
                    stack.push(a);
                }
                Chunk::Cancelled => return false,
            }
        }
        self.stats.readings.fetch_add(batch.len() as u64, Relaxed);
        self.stats
            .last_write_ms
            .store(Timestamp::now().as_millisecond(), Relaxed);
        true
    }

    /// Write one chunk of `batch`'s lines, retrying with capped, jittered backoff. A chunk of
    /// several lines that is too large or holds bad data comes back in halves; a single line
    /// InfluxDB refuses is quarantined.
    async fn write_chunk<'l>(&self, chunk: &'l [String], batch: &[LogEntry]) -> Chunk<'l> {
        let mut delay = Duration::from_millis(200);
        loop {
            match self.attempt(chunk).await {
                Attempt::Written => {
                    self.stats.points.fetch_add(chunk.len() as u64, Relaxed);
                    counter!("ioc_influx_points_written_total").increment(chunk.len() as u64);
                    return Chunk::Done;
                }
                Attempt::TooLarge | Attempt::BadData(_) if chunk.len() > 1 => {
                    let (a, b) = chunk.split_at(chunk.len() / 2);
                    return Chunk::Halves(a, b);
                }
                Attempt::BadData(message) => {
                    self.reject(&chunk[0], batch, message).await;
                    return Chunk::Done;
                }
                Attempt::TooLarge => {
                    let message = "413: a single line is larger than the server accepts";
                    self.reject(&chunk[0], batch, message.into()).await;
                    return Chunk::Done;
                }
                Attempt::Retry(message) => {
                    if !self.back_off(message, delay).await {
                        return Chunk::Cancelled;
                    }
                    delay = (delay * 2).min(self.config.retry_max);
                }
            }
        }
    }

    /// Count and log a failed write, then wait about `delay` before the next attempt. False if
    /// cancelled meanwhile.
    async fn back_off(&self, message: String, delay: Duration) -> bool {
        self.stats.retries.fetch_add(1, Relaxed);
        counter!("ioc_influx_retries_total").increment(1);
        warn!(error = %message, retry_in = ?delay, "InfluxDB write failed; the backlog stays in the store.");
        self.stats.error(message);
        // Keep backlog and lag current while InfluxDB is away.
        self.observe(self.stats.cursor.load(Relaxed)).await;
        if self.cancel.is_cancelled() {
            return false;
        }
        let jittered = delay.mul_f64(0.5 + rand::random::<f64>());
        self.pause(jittered).await;
        !self.cancel.is_cancelled()
    }

    async fn attempt(&self, lines: &[String]) -> Attempt {
        let body = Bytes::from(lines.join("\n"));
        let write = self.client.write_line_protocol_with_precision(
            &self.config.org,
            &self.config.bucket,
            body,
            TimestampPrecision::Milliseconds,
        );
        match tokio::time::timeout(self.config.request_timeout, write).await {
            Err(_) => Attempt::Retry(format!(
                "write timed out after {:?}",
                self.config.request_timeout
            )),
            Ok(Ok(())) => Attempt::Written,
            Ok(Err(RequestError::Http { status, text })) => match status.as_u16() {
                413 => Attempt::TooLarge,
                400 | 422 => Attempt::BadData(format!("{status}: {text}")),
                401 | 403 | 404 => {
                    // Not the data's fault: the token, org or bucket is wrong. Keep the backlog
                    // and retry until an operator fixes it.
                    error!(%status, body = %text, "InfluxDB refuses our credentials or bucket; check [influx].");
                    Attempt::Retry(format!("{status}: {text}"))
                }
                _ => Attempt::Retry(format!("{status}: {text}")),
            },
            Ok(Err(e)) => Attempt::Retry(e.to_string()),
        }
    }

    /// Quarantine a line InfluxDB refused, naming the readings it carried.
    async fn reject(&self, line: &str, batch: &[LogEntry], message: String) {
        self.stats.rejected.fetch_add(1, Relaxed);
        counter!("ioc_influx_rejected_lines_total").increment(1);
        let feed = batch.first().map(|e| e.feed.as_str()).unwrap_or("influx");
        warn!(%message, line, "InfluxDB refused a line; quarantined.");
        if let Err(e) = self
            .store
            .quarantine(
                feed,
                "influx:/api/v2/write",
                RejectReason::InfluxRejected,
                message,
                line.as_bytes().to_vec(),
            )
            .await
        {
            error!(error = %e, "Could not quarantine a refused line.");
        }
    }

    /// The pipeline's own health as a point per feed (measurement `ioc_pipeline`), so Grafana
    /// shows it beside the data.
    async fn write_health(&self, feeds: &[Arc<FeedStats>]) {
        let Ok(totals) = self.store.feed_counters().await else {
            return;
        };
        let now = Timestamp::now().as_millisecond();
        let f = self.stats.snapshot();
        let mut lines = Vec::new();
        for feed in feeds {
            let live = feed.snapshot();
            let t = totals.iter().find(|t| t.feed == live.feed);
            let values = [
                f64::from(u8::from(live.connected)),
                t.map_or(0, |t| t.received) as f64,
                t.map_or(0, |t| t.stored) as f64,
                t.map_or(0, |t| t.rejected) as f64,
                t.map_or(0, |t| t.duplicate) as f64,
                live.rate_per_s,
                f.backlog as f64,
                f.lag_seconds,
            ];
            let fields: Vec<String> = PIPELINE_FIELDS
                .iter()
                .zip(values)
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let mut l = format!("{PIPELINE_MEASUREMENT},feed=");
            line::escape_key(&live.feed, &mut l);
            l.push_str(&format!(" {} {now}", fields.join(",")));
            lines.push(l);
        }
        if let Attempt::Retry(e) | Attempt::BadData(e) = self.attempt(&lines).await {
            debug!(error = %e, "Writing pipeline health failed (will retry next time).");
        }
    }
}
