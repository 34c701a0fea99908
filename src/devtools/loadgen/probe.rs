//! API latency at a fixed request rate.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::mpsc;

use super::check_loopback;

/// A request's path (its index), how long it took, and whether it succeeded.
type Timing = (usize, Duration, bool);

/// GET each of `paths` in turn at `rate` requests/s for `duration`; latency percentiles.
pub async fn probe_api(
    base: &str,
    paths: &[String],
    rate: u64,
    duration: Duration,
) -> anyhow::Result<serde_json::Value> {
    check_loopback(base)?;
    crate::install_crypto_provider();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let (tx, mut rx) = mpsc::unbounded_channel::<Timing>();
    let start = Instant::now();
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    while start.elapsed() < duration {
        tick.tick().await;
        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        while sent < due {
            let i = (sent % paths.len() as u64) as usize;
            let (http, tx, target) = (http.clone(), tx.clone(), format!("{base}{}", paths[i]));
            tokio::spawn(timed_get(http, target, i, tx));
            sent += 1;
        }
    }
    drop(tx);
    let mut latencies: Vec<Vec<f64>> = vec![Vec::new(); paths.len()];
    let mut errors = 0u64;
    while let Some((i, d, ok)) = rx.recv().await {
        latencies[i].push(d.as_secs_f64() * 1000.0);
        errors += u64::from(!ok);
    }
    let per_path: Vec<serde_json::Value> = paths
        .iter()
        .zip(latencies.iter_mut())
        .map(|(p, l)| path_summary(p, l))
        .collect();
    Ok(json!({"mode": "api", "rate_per_s": rate, "errors": errors, "paths": per_path}))
}

/// GET `target` and send how long it took, until the whole body has arrived: that is what a
/// client waits for.
async fn timed_get(
    http: reqwest::Client,
    target: String,
    i: usize,
    tx: mpsc::UnboundedSender<Timing>,
) {
    let t = Instant::now();
    let ok = match http.get(target).send().await {
        Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
        Err(_) => false,
    };
    let _ = tx.send((i, t.elapsed(), ok));
}

/// A path's requests and latency percentiles (ms); `latencies` gets sorted.
fn path_summary(path: &str, latencies: &mut [f64]) -> serde_json::Value {
    latencies.sort_by(f64::total_cmp);
    let l = &*latencies;
    let q = |x: f64| {
        l.get(((l.len() as f64 - 1.0) * x).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    json!({"path": path, "requests": l.len(), "p50_ms": q(0.5), "p99_ms": q(0.99), "max_ms": q(1.0)})
}
