//! API tokens. Only a SHA-256 hash of each token is stored; the secret is shown once.

use crate::{map_unique, new_id, now, parse_uuid, ts, Conn, Result};
use sqlx::Row;

/// Who a token authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: uuid::Uuid,
    pub name: String,
    /// `operator` for now; tenant users and roles come with the tenancy work.
    pub kind: String,
}

pub async fn insert(conn: &mut Conn, name: &str, token_hash: &str, kind: &str) -> Result<uuid::Uuid> {
    let id = new_id();
    sqlx::query("INSERT INTO api_tokens (id, name, token_hash, kind, time_created) VALUES ($1, $2, $3, $4, $5)")
        .bind(id.to_string())
        .bind(name)
        .bind(token_hash)
        .bind(kind)
        .bind(ts(now()))
        .execute(&mut *conn)
        .await
        .map_err(map_unique)?;
    Ok(id)
}

/// Finds a live (not revoked, not expired) token by its hash.
pub async fn lookup(conn: &mut Conn, token_hash: &str) -> Result<Option<TokenRecord>> {
    let row = sqlx::query(
        "SELECT id, name, kind FROM api_tokens WHERE token_hash = $1 AND time_revoked IS NULL \
         AND (time_expires IS NULL OR time_expires > $2)",
    )
    .bind(token_hash)
    .bind(ts(now()))
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        None => Ok(None),
        Some(r) => Ok(Some(TokenRecord {
            id: parse_uuid(&r.try_get::<String, _>(0)?)?,
            name: r.try_get(1)?,
            kind: r.try_get(2)?,
        })),
    }
}

pub async fn touch(conn: &mut Conn, id: uuid::Uuid) -> Result<()> {
    sqlx::query("UPDATE api_tokens SET time_last_used = $1 WHERE id = $2")
        .bind(ts(now()))
        .bind(id.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(())
}
