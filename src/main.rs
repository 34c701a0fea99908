use std::path::PathBuf;

use clap::{Parser, Subcommand};
use ioc_aggregator::{cli, config::Config};

/// Telemetry backbone of Thái Nguyên's smart-city operations centres.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file (default: the embedded config/default.toml). IOC__SECTION__KEY
    /// environment variables override it.
    #[arg(long, short, global = true, env = "IOC_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service (the default).
    Run,
    /// Validate the configuration and list every problem.
    CheckConfig,
    /// Print the default configuration (every key, documented).
    PrintDefaultConfig,
    /// Show the readings a payload would produce on a feed, or why it would be rejected.
    TryMapping {
        /// Feed name from the configuration.
        feed: String,
        /// File holding one payload.
        payload: PathBuf,
        /// Topic the payload arrives on (default: derived from the feed's first filter).
        #[arg(long)]
        topic: Option<String>,
    },
    /// Load generator for the benchmarks (loopback only): publish the three formats, or count
    /// as a null QoS 1 subscriber, or probe API latency.
    Loadgen {
        #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
        broker: String,
        /// Messages (or API requests) per second; 0 publishes as fast as the broker takes them.
        #[arg(long, default_value_t = 0)]
        rate: u64,
        #[arg(long, default_value = "60s")]
        duration: humantime::Duration,
        /// Devices per city.
        #[arg(long, default_value_t = 20)]
        devices: usize,
        /// Readings per message.
        #[arg(long, default_value_t = 6)]
        readings: usize,
        /// Pace publishing by a consumer and report its rate: `null` runs a QoS 1 subscriber
        /// that only counts (the broker's limit); an API base URL follows that aggregator's
        /// committed count.
        #[arg(long)]
        consumer: Option<ioc_aggregator::devtools::loadgen::Consumer>,
        /// With --consumer: at most this many messages published but not yet consumed. It
        /// must exceed what the consumer itself holds unconsumed, or the broker runs dry:
        /// the aggregator holds up to ~19,000 (its store queue, a batch, the feed queues).
        #[arg(long, default_value_t = 100_000)]
        window: u64,
        /// With --consumer: how long after the start the measurement begins.
        #[arg(long, default_value = "5s")]
        warmup: humantime::Duration,
        /// Probe this API base URL instead (e.g. http://127.0.0.1:8080).
        #[arg(long)]
        api: Option<String>,
        /// API paths to probe, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "/api/v1/overview")]
        paths: Vec<String>,
    },
    /// Run only the simulator of the three IOCs, publishing to `--broker`.
    Simulate {
        /// Broker URL (default: simulator.broker from the configuration).
        #[arg(long)]
        broker: Option<String>,
    },
}

/// jemalloc with few arenas and a short decay: glibc malloc's per-thread arenas fragmented
/// under the multi-threaded ingest (RSS 165-190 MB at 10,000 msg/s, where this holds about
/// 110 MB; see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Run);
    if let Command::PrintDefaultConfig = command {
        print!("{}", ioc_aggregator::config::DEFAULT_TOML);
        return std::process::ExitCode::SUCCESS;
    }
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprint!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    let result = match command {
        Command::CheckConfig => cli::check_config(&config),
        Command::TryMapping {
            feed,
            payload,
            topic,
        } => cli::try_mapping(&config, &feed, &payload, topic.as_deref()),
        Command::Simulate { broker } => cli::simulate(config, broker),
        Command::Loadgen {
            broker,
            rate,
            duration,
            devices,
            readings,
            consumer,
            window,
            warmup,
            api,
            paths,
        } => cli::loadgen(cli::LoadgenArgs {
            broker,
            rate,
            duration: duration.into(),
            devices,
            readings,
            consumer,
            window,
            warmup: warmup.into(),
            api,
            paths,
        }),
        Command::Run | Command::PrintDefaultConfig => cli::run(config),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
