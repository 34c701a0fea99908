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
    Loadgen(cli::LoadgenArgs),
    /// Create, list or revoke the API's bearer tokens.
    #[command(subcommand)]
    Token(cli::TokenCommand),
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
        Command::Loadgen(args) => cli::loadgen(args),
        Command::Token(command) => cli::token(&config, command),
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
