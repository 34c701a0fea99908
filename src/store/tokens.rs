//! API tokens and the audit log, as persisted. A token's secret is never stored: only its
//! public id (for lookup) and the SHA-256 of the whole token. What a token may do is kept as
//! written (`cities`, `scopes`); [`crate::auth`] gives it meaning.

use jiff::Timestamp;
use rusqlite::{OptionalExtension, Row, params};

use super::{Store, StoreError};

/// A token to create.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// Unique among tokens not revoked: who acted, in the audit log.
    pub name: String,
    /// The public part of the token that finds its row.
    pub token_id: String,
    /// SHA-256 of the whole token.
    pub secret_hash: Vec<u8>,
    /// `all`, or city ids separated by commas.
    pub cities: String,
    /// Scopes separated by commas.
    pub scopes: String,
    pub expires_at: Option<Timestamp>,
}

/// A stored token.
#[derive(Debug, Clone)]
pub struct TokenRow {
    pub id: i64,
    pub name: String,
    pub token_id: String,
    pub secret_hash: Vec<u8>,
    pub cities: String,
    pub scopes: String,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

/// One entry of the audit log: who did what to which object, when and from where.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: Timestamp,
    /// The token's name.
    pub actor: String,
    /// `ack` or `replay`.
    pub action: String,
    /// What was acted on: `alert/12`, `dead_letter/7`.
    pub object: String,
    pub city: Option<String>,
    /// The client's address as the API saw it.
    pub client: Option<String>,
    pub comment: Option<String>,
}

const TOKEN_COLUMNS: &str = "id, name, token_id, secret_hash, cities, scopes, created_at, \
    last_used_at, expires_at, revoked_at";

fn ts(ms: Option<i64>) -> Option<Timestamp> {
    ms.and_then(|ms| Timestamp::from_millisecond(ms).ok())
}

fn token_row(r: &Row<'_>) -> rusqlite::Result<TokenRow> {
    Ok(TokenRow {
        id: r.get(0)?,
        name: r.get(1)?,
        token_id: r.get(2)?,
        secret_hash: r.get(3)?,
        cities: r.get(4)?,
        scopes: r.get(5)?,
        created_at: ts(r.get(6)?).unwrap_or(Timestamp::UNIX_EPOCH),
        last_used_at: ts(r.get(7)?),
        expires_at: ts(r.get(8)?),
        revoked_at: ts(r.get(9)?),
    })
}

fn audit_row(r: &Row<'_>) -> rusqlite::Result<AuditEntry> {
    Ok(AuditEntry {
        id: r.get(0)?,
        at: ts(r.get(1)?).unwrap_or(Timestamp::UNIX_EPOCH),
        actor: r.get(2)?,
        action: r.get(3)?,
        object: r.get(4)?,
        city: r.get(5)?,
        client: r.get(6)?,
        comment: r.get(7)?,
    })
}

impl Store {
    /// Store a new token. Fails with `StoreError::Conflict` when a token not revoked has the
    /// name.
    pub async fn create_token(&self, t: NewToken) -> Result<TokenRow, StoreError> {
        self.side_write(move |conn| {
            let taken: bool = conn.query_row(
                "SELECT COUNT(*) > 0 FROM tokens WHERE name = ?1 AND revoked_at IS NULL",
                [&t.name],
                |r| r.get(0),
            )?;
            if taken {
                return Err(StoreError::Conflict(format!(
                    "a token named {:?} exists; revoke it first or choose another name",
                    t.name
                )));
            }
            conn.execute(
                "INSERT INTO tokens (name, token_id, secret_hash, cities, scopes, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    t.name,
                    t.token_id,
                    t.secret_hash,
                    t.cities,
                    t.scopes,
                    Timestamp::now().as_millisecond(),
                    t.expires_at.map(|e| e.as_millisecond()),
                ],
            )?;
            let id = conn.last_insert_rowid();
            Ok(conn.query_row(
                &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = ?1"),
                [id],
                token_row,
            )?)
        })
        .await
    }

    /// Every token, revoked ones too, oldest first.
    pub async fn tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        self.read(|conn| {
            let mut stmt =
                conn.prepare(&format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY id"))?;
            let rows = stmt.query_map([], token_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// The token with public id `token_id`, revoked or not; read fresh on every call, so a
    /// revocation by another process acts on the next request.
    pub async fn token_by_id(&self, token_id: &str) -> Result<Option<TokenRow>, StoreError> {
        let token_id = token_id.to_owned();
        self.read(move |conn| {
            Ok(conn
                .query_row(
                    &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE token_id = ?1"),
                    [token_id],
                    token_row,
                )
                .optional()?)
        })
        .await
    }

    /// Revoke the token named `name` that is not revoked yet; `false` if there is none.
    pub async fn revoke_token(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_owned();
        self.side_write(move |conn| {
            let n = conn.execute(
                "UPDATE tokens SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
                params![name, Timestamp::now().as_millisecond()],
            )?;
            Ok(n > 0)
        })
        .await
    }

    /// Record that token `id` was used at `at`.
    pub async fn token_used(&self, id: i64, at: Timestamp) -> Result<(), StoreError> {
        self.side_write(move |conn| {
            conn.execute(
                "UPDATE tokens SET last_used_at = ?2 WHERE id = ?1",
                params![id, at.as_millisecond()],
            )?;
            Ok(())
        })
        .await
    }

    /// Append to the audit log; returns the entry's id.
    pub async fn audit(&self, entry: AuditEntry) -> Result<i64, StoreError> {
        self.side_write(move |conn| {
            conn.execute(
                "INSERT INTO audit (at, actor, action, object, city, client, comment)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    entry.at.as_millisecond(),
                    entry.actor,
                    entry.action,
                    entry.object,
                    entry.city,
                    entry.client,
                    entry.comment,
                ],
            )?;
            Ok(conn.last_insert_rowid())
        })
        .await
    }

    /// The audit log, newest first, of `cities` only (`None`: all), at most `limit` entries.
    pub async fn audit_log(
        &self,
        cities: Option<Vec<String>>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT id, at, actor, action, object, city, client, comment FROM audit
                 ORDER BY id DESC",
            )?;
            let rows = stmt.query_map([], audit_row)?;
            let mut out = Vec::new();
            for row in rows {
                let row = row?;
                let visible = match (&cities, &row.city) {
                    (None, _) => true,
                    (Some(cs), Some(c)) => cs.contains(c),
                    (Some(_), None) => false,
                };
                if visible {
                    out.push(row);
                    if out.len() >= limit {
                        break;
                    }
                }
            }
            Ok(out)
        })
        .await
    }
}
