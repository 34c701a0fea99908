//! The binary's commands. `main.rs` only parses arguments and loads the configuration.

mod token;

use std::{io::IsTerminal, path::Path, process::ExitCode};

use anyhow::Context;
use jiff::Timestamp;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

pub use token::{TokenCommand, token};

use crate::{
    app::{App, shutdown_signal},
    config::{Config, LogFormat},
    devtools::simulate,
    model::{Normalised, Rejection},
    pipeline,
};

/// Install the log subscriber: `RUST_LOG` if set, else `log.filter`.
pub fn init_logging(config: &Config) {
    let filter = log_filter(
        std::env::var(EnvFilter::DEFAULT_ENV).ok(),
        &config.log.filter,
    );
    let registry = tracing_subscriber::registry().with(filter);
    // Colour only for a person at a terminal, not in files, `docker logs` or journald.
    let layer = fmt::layer().with_ansi(std::io::stdout().is_terminal());
    let _ = match config.log.format {
        LogFormat::Text => registry.with(layer).try_init(),
        LogFormat::Json => registry.with(layer.json()).try_init(),
    };
}

/// `RUST_LOG` when it parses and is not empty, else the configured filter. (An empty
/// `RUST_LOG` parses as a filter that keeps only errors: it silenced the configured one.)
fn log_filter(env: Option<String>, configured: &str) -> EnvFilter {
    env.filter(|v| !v.trim().is_empty())
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(configured))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

pub fn run(config: Config) -> anyhow::Result<ExitCode> {
    init_logging(&config);
    runtime()?.block_on(async {
        let app = App::build(config).await?;
        app.run_until(shutdown_signal()).await
    })?;
    Ok(ExitCode::SUCCESS)
}

pub fn check_config(config: &Config) -> anyhow::Result<ExitCode> {
    println!(
        "configuration is valid: {} feed(s), {} catalogued device(s), API on {}",
        config.feeds.len(),
        config.devices.len(),
        config.api.listen
    );
    for f in &config.feeds {
        println!(
            "  feed {:<14} {:<11} {:<17?} {} {:?}",
            f.name, f.city, f.format, f.broker, f.topics
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `try-mapping`: run a payload file through feed `feed_name`'s decoder and normaliser and
/// print what would be stored, rejected and ignored; exit code 1 when the message is rejected.
pub fn try_mapping(
    config: &Config,
    feed_name: &str,
    payload_path: &Path,
    topic: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let Some(feed) = config.feeds.iter().find(|f| f.name == feed_name) else {
        let names: Vec<_> = config.feeds.iter().map(|f| f.name.as_str()).collect();
        anyhow::bail!(
            "no feed named {feed_name:?}; configured feeds: {}",
            names.join(", ")
        );
    };
    let payload = std::fs::read(payload_path)
        .with_context(|| format!("reading {}", payload_path.display()))?;
    let topic = topic.map_or_else(|| sample_topic(&feed.topics[0]), str::to_owned);
    let now = Timestamp::now();
    let result = pipeline::process(
        &feed.decoder(),
        &config.normaliser(feed),
        &config.ingest,
        &topic,
        &payload.into(),
        now,
        now,
    );
    print_outcome(result, &topic)
}

/// A topic matching `filter`: each wildcard level becomes `sample`.
fn sample_topic(filter: &str) -> String {
    (filter.split('/'))
        .map(|l| if l == "+" || l == "#" { "sample" } else { l })
        .collect::<Vec<_>>()
        .join("/")
}

/// Print what `try-mapping` found: the readings (stdout, JSON) and a summary (stderr).
fn print_outcome(result: Result<Normalised, Rejection>, topic: &str) -> anyhow::Result<ExitCode> {
    match result {
        Ok(normalised) => {
            println!("{}", serde_json::to_string_pretty(&normalised)?);
            eprintln!(
                "{} reading(s), {} part(s) rejected, {} field(s) ignored, from topic {topic}",
                normalised.readings.len(),
                normalised.rejected.len(),
                normalised.ignored.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(rejection) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({ "rejected": rejection }))?
            );
            eprintln!("rejected ({}): {}", rejection.reason, rejection.detail);
            Ok(ExitCode::from(1))
        }
    }
}

pub fn simulate(mut config: Config, broker: Option<String>) -> anyhow::Result<ExitCode> {
    init_logging(&config);
    if let Some(b) = broker {
        crate::source::parse_broker_url(&b).map_err(anyhow::Error::msg)?;
        config.simulator.broker = b;
    }
    runtime()?.block_on(async {
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            stop.cancel();
        });
        simulate::run(config.simulator, config.devices, cancel).await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `loadgen`.
#[derive(Debug, clap::Args)]
pub struct LoadgenArgs {
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    pub broker: String,
    /// Messages (or API requests) per second; 0 publishes as fast as the broker takes them.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub duration: std::time::Duration,
    /// Devices per city.
    #[arg(long, default_value_t = 20)]
    pub devices: usize,
    /// Readings per message.
    #[arg(long, default_value_t = 6)]
    pub readings: usize,
    /// Pace publishing by a consumer and report its rate: `null` runs a QoS 1 subscriber
    /// that only counts (the broker's limit); an API base URL follows that aggregator's
    /// committed count.
    #[arg(long)]
    pub consumer: Option<crate::devtools::loadgen::Consumer>,
    /// With --consumer: at most this many messages published but not yet consumed. It
    /// must exceed what the consumer itself holds unconsumed, or the broker runs dry:
    /// the aggregator holds up to ~19,000 (its store queue, a batch, the feed queues).
    #[arg(long, default_value_t = 100_000)]
    pub window: u64,
    /// With --consumer: how long after the start the measurement begins.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub warmup: std::time::Duration,
    /// Probe this API base URL instead (e.g. http://127.0.0.1:8080).
    #[arg(long)]
    pub api: Option<String>,
    /// API paths to probe, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "/api/v1/overview")]
    pub paths: Vec<String>,
}

pub fn loadgen(a: LoadgenArgs) -> anyhow::Result<ExitCode> {
    let summary = runtime()?.block_on(async {
        match &a.api {
            Some(base) => {
                crate::devtools::loadgen::probe_api(base, &a.paths, a.rate.max(1), a.duration).await
            }
            None => {
                let plan = crate::devtools::loadgen::PublishPlan {
                    rate: a.rate,
                    duration: a.duration,
                    devices: a.devices,
                    readings: a.readings,
                    consumer: a.consumer,
                    window: a.window,
                    warmup: a.warmup,
                };
                crate::devtools::loadgen::publish(&a.broker, plan).await
            }
        }
    })?;
    println!("{summary}");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::log_filter;

    #[test]
    fn rust_log_wins_unless_empty_or_invalid() {
        let filter = |env: Option<&str>| log_filter(env.map(str::to_owned), "info").to_string();
        assert_eq!(filter(Some("ioc_aggregator=debug")), "ioc_aggregator=debug");
        assert_eq!(filter(None), "info");
        assert_eq!(filter(Some("")), "info");
        assert_eq!(filter(Some("  ")), "info");
        assert_eq!(filter(Some("=[")), "info");
    }
}
