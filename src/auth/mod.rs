//! Who may call the API, and what they may see. A caller is a bearer token — with the cities it
//! may see and the scopes it may use — or, where the configuration allows it, an anonymous
//! reader. Every route declares one [`Policy`]; every answer is cut to the caller's cities.
//!
//! Tokens are created, listed and revoked from the command line (`ioc-aggregator token …`)
//! against the store, which keeps only a hash. The service reads a token's row on every request,
//! so a revocation or an expiry acts on the next request, in any process sharing the store.

pub mod token;

use std::{fmt, str::FromStr, time::Duration};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::model::City;
use crate::store::{NewToken, Store, StoreError, TokenRow};

/// What a token may do. Scopes are independent: `admin` does not include `read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Read its cities' data: every `GET` under `/api/v1`.
    Read,
    /// Acknowledge its cities' alerts.
    Ack,
    /// Replay its cities' dead-lettered webhooks.
    Replay,
    /// Scrape `/metrics`: service-wide counters labelled by feed, for a Prometheus; granted only
    /// with every city.
    Metrics,
    /// Administer the service: the audit log and the token list, of its cities.
    Admin,
}

impl Scope {
    /// Every scope, in order.
    pub const ALL: [Scope; 5] = [
        Scope::Read,
        Scope::Ack,
        Scope::Replay,
        Scope::Metrics,
        Scope::Admin,
    ];

    /// The lower-case name, as written on the command line and stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Ack => "ack",
            Scope::Replay => "replay",
            Scope::Metrics => "metrics",
            Scope::Admin => "admin",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown scope {s:?} (read, ack, replay, metrics, admin)"))
    }
}

/// The cities a caller may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cities {
    All,
    /// These cities only (never empty).
    Only(Vec<City>),
}

impl Cities {
    /// Whether `city`'s data may be shown.
    pub fn sees(&self, city: City) -> bool {
        match self {
            Cities::All => true,
            Cities::Only(cs) => cs.contains(&city),
        }
    }

    /// The cities that may be shown, in the order of [`City::ALL`].
    pub fn list(&self) -> Vec<City> {
        City::ALL.into_iter().filter(|c| self.sees(*c)).collect()
    }

    /// `None` for every city, else the list: the form store filters take.
    pub fn filter(&self) -> Option<Vec<City>> {
        match self {
            Cities::All => None,
            Cities::Only(_) => Some(self.list()),
        }
    }
}

impl fmt::Display for Cities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cities::All => f.write_str("all"),
            Cities::Only(cs) => {
                let names: Vec<_> = cs.iter().map(|c| c.as_str()).collect();
                f.write_str(&names.join(","))
            }
        }
    }
}

impl FromStr for Cities {
    type Err = String;

    /// `all`, or city ids separated by commas.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim() == "all" {
            return Ok(Cities::All);
        }
        let mut cities = Vec::new();
        for part in s.split(',').map(str::trim) {
            let city = part.parse::<City>().map_err(|_| {
                format!("unknown city {part:?} (thai-nguyen, song-cong, pho-yen or all)")
            })?;
            if !cities.contains(&city) {
                cities.push(city);
            }
        }
        if cities.is_empty() {
            return Err("name at least one city, or all".into());
        }
        Ok(Cities::Only(cities))
    }
}

/// Parse scopes separated by commas.
pub fn parse_scopes(s: &str) -> Result<Vec<Scope>, String> {
    let mut scopes: Vec<Scope> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let scope = part.parse()?;
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    if scopes.is_empty() {
        return Err("name at least one scope (read, ack, replay, metrics, admin)".into());
    }
    scopes.sort();
    Ok(scopes)
}

fn scopes_text(scopes: &[Scope]) -> String {
    let names: Vec<_> = scopes.iter().map(|s| s.as_str()).collect();
    names.join(",")
}

/// Who is calling: a token's name, cities and scopes, or the anonymous reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's name (`anonymous` without one): who acted, in the audit log.
    pub name: String,
    pub cities: Cities,
    pub scopes: Vec<Scope>,
    /// The token's row, `None` when anonymous.
    pub token: Option<i64>,
}

impl Caller {
    /// The anonymous reader of the zero-setup default: it reads every city and `/metrics`,
    /// and may change nothing.
    pub fn anonymous() -> Caller {
        Caller {
            name: "anonymous".into(),
            cities: Cities::All,
            scopes: vec![Scope::Read, Scope::Metrics],
            token: None,
        }
    }

    /// Whether the caller holds `scope`.
    pub fn may(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }

    /// Whether the caller may see `city`'s data.
    pub fn sees(&self, city: City) -> bool {
        self.cities.sees(city)
    }
}

/// What a route requires of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Anyone: the probes and the static page, which carry no city's data.
    Public,
    /// A caller holding this scope.
    Scope(Scope),
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Policy::Public => f.write_str("public"),
            Policy::Scope(s) => write!(f, "scope {s}"),
        }
    }
}

/// Why a presented token is refused. The reason is logged (never the token) and the answer to
/// the client is the same 401 for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Malformed,
    Unknown,
    Revoked,
    Expired,
}

impl Refused {
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::Malformed => "malformed",
            Refused::Unknown => "unknown",
            Refused::Revoked => "revoked",
            Refused::Expired => "expired",
        }
    }
}

/// Check a presented token against the store: well formed, known, its hash equal (in constant
/// time), not revoked, not expired at `now`. `Err(Ok(..))` is a refusal, `Err(Err(..))` a store
/// failure.
pub async fn verify(
    store: &Store,
    presented: &str,
    now: Timestamp,
) -> Result<(Caller, TokenRow), Result<Refused, StoreError>> {
    let id = token::parse(presented).ok_or(Ok(Refused::Malformed))?;
    let row = store
        .token_by_id(id)
        .await
        .map_err(Err)?
        .ok_or(Ok(Refused::Unknown))?;
    let equal: bool = token::hash(presented)
        .ct_eq(row.secret_hash.as_slice())
        .into();
    if !equal {
        return Err(Ok(Refused::Unknown));
    }
    if row.revoked_at.is_some() {
        return Err(Ok(Refused::Revoked));
    }
    if row.expires_at.is_some_and(|e| e <= now) {
        return Err(Ok(Refused::Expired));
    }
    Ok((caller_of(&row), row))
}

/// The caller a stored token stands for. A row whose cities or scopes no longer parse (edited by
/// hand) sees nothing and may do nothing.
fn caller_of(row: &TokenRow) -> Caller {
    Caller {
        name: row.name.clone(),
        cities: row.cities.parse().unwrap_or(Cities::Only(Vec::new())),
        scopes: parse_scopes(&row.scopes).unwrap_or_default(),
        token: Some(row.id),
    }
}

/// Create a token named `name`; returns the token, to be shown once. `metrics` is granted
/// only with every city: the metrics are service-wide, labelled by every city's feeds.
pub async fn create(
    store: &Store,
    name: &str,
    cities: &Cities,
    scopes: &[Scope],
    expires_in: Option<Duration>,
) -> anyhow::Result<(String, TokenRow)> {
    anyhow::ensure!(
        !scopes.contains(&Scope::Metrics) || *cities == Cities::All,
        "the metrics scope covers every city's feeds: grant it with --cities all"
    );
    anyhow::ensure!(!scopes.is_empty(), "name at least one scope");
    let generated = token::generate();
    let expires_at = expires_in
        .map(|d| Timestamp::now() + jiff::SignedDuration::try_from(d).unwrap_or_default());
    let row = store
        .create_token(NewToken {
            name: name.to_owned(),
            token_id: generated.id,
            secret_hash: generated.hash.to_vec(),
            cities: cities.to_string(),
            scopes: scopes_text(scopes),
            expires_at,
        })
        .await?;
    Ok((generated.token, row))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cities_and_scopes_parse_strictly() {
        assert_eq!("all".parse::<Cities>(), Ok(Cities::All));
        assert_eq!(
            "song-cong, pho-yen".parse::<Cities>(),
            Ok(Cities::Only(vec![City::SongCong, City::PhoYen]))
        );
        assert!("ha-noi".parse::<Cities>().is_err());
        assert!("".parse::<Cities>().is_err());
        assert_eq!(
            parse_scopes("ack,read,ack"),
            Ok(vec![Scope::Read, Scope::Ack])
        );
        assert!(parse_scopes("write").is_err());
        assert!(parse_scopes("").is_err());
        let one = Cities::Only(vec![City::SongCong]);
        assert!(one.sees(City::SongCong) && !one.sees(City::ThaiNguyen));
        assert_eq!(one.to_string(), "song-cong");
    }
}
