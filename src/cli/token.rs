//! `ioc-aggregator token …`: create, list and revoke the API's bearer tokens in the store. A
//! running service sees each change on its next request.

use std::process::ExitCode;

use jiff::Timestamp;

use crate::auth::{self, Cities};
use crate::config::Config;
use crate::store::{Store, TokenRow};

/// What `token` does.
#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it once (only its hash is kept).
    Create {
        /// Who holds it (unique among tokens not revoked): named in the audit log.
        #[arg(long)]
        name: String,
        /// Cities it may see: `all`, or city ids separated by commas
        /// (thai-nguyen, song-cong, pho-yen).
        #[arg(long)]
        cities: Cities,
        /// What it may do, separated by commas: read, ack, replay, metrics, admin.
        #[arg(long, value_parser = auth::parse_scopes)]
        scopes: std::vec::Vec<auth::Scope>,
        /// Lifetime, e.g. `90d` (default: until revoked).
        #[arg(long, value_parser = humantime::parse_duration)]
        expires: Option<std::time::Duration>,
    },
    /// List the tokens: name, cities, scopes, created, last used, expiry, state. Never a secret.
    List,
    /// Revoke the token with this name, at once.
    Revoke { name: String },
}

/// Run a `token` command against the configured store.
pub fn token(config: &Config, command: TokenCommand) -> anyhow::Result<ExitCode> {
    super::runtime()?.block_on(async {
        let store = Store::open(&config.store, &config.devices)?;
        match command {
            TokenCommand::Create {
                name,
                cities,
                scopes,
                expires,
            } => create(&store, &name, &cities, &scopes, expires).await,
            TokenCommand::List => list(&store).await,
            TokenCommand::Revoke { name } => {
                if store.revoke_token(&name).await? {
                    println!("revoked token {name:?}");
                    Ok(ExitCode::SUCCESS)
                } else {
                    eprintln!("no active token named {name:?}");
                    Ok(ExitCode::from(1))
                }
            }
        }
    })
}

async fn create(
    store: &Store,
    name: &str,
    cities: &Cities,
    scopes: &[auth::Scope],
    expires: Option<std::time::Duration>,
) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        !name.trim().is_empty() && name.len() <= 64,
        "--name must be 1 to 64 characters"
    );
    let (secret, row) = auth::create(store, name, cities, scopes, expires).await?;
    println!("{secret}");
    eprintln!(
        "token {:?} created: cities {}, scopes {}, expires {}. It is shown only this once; send it as `Authorization: Bearer <token>`.",
        row.name,
        row.cities,
        row.scopes,
        when(row.expires_at, "never")
    );
    Ok(ExitCode::SUCCESS)
}

async fn list(store: &Store) -> anyhow::Result<ExitCode> {
    let tokens = store.tokens().await?;
    println!(
        "{:<24} {:<30} {:<26} {:<20} {:<20} {:<20} STATE",
        "NAME", "CITIES", "SCOPES", "CREATED", "LAST USED", "EXPIRES"
    );
    let now = Timestamp::now();
    for t in &tokens {
        println!(
            "{:<24} {:<30} {:<26} {:<20} {:<20} {:<20} {}",
            t.name,
            t.cities,
            t.scopes,
            when(Some(t.created_at), "-"),
            when(t.last_used_at, "never"),
            when(t.expires_at, "never"),
            state(t, now)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `active`, `revoked` or `expired`.
fn state(t: &TokenRow, now: Timestamp) -> &'static str {
    if t.revoked_at.is_some() {
        "revoked"
    } else if t.expires_at.is_some_and(|e| e <= now) {
        "expired"
    } else {
        "active"
    }
}

/// A time to the second in UTC, or `none`.
fn when(t: Option<Timestamp>, none: &str) -> String {
    t.map(|t| t.strftime("%Y-%m-%d %H:%M:%SZ").to_string())
        .unwrap_or_else(|| none.to_owned())
}
