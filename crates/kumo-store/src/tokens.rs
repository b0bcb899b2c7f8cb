//! API tokens. Only a SHA-256 hash of each token is stored; the secret is shown once.

use crate::{map_unique, new_id, now, parse_uuid, ts, Conn, Result};
use sqlx::Row;

/// Who a token authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: uuid::Uuid,
    pub name: String,
    /// `operator` (the bootstrap token, no user), `user` (an API token a user created) or
    /// `session` (issued by login).
    pub kind: String,
    /// The user it belongs to (None for the bootstrap operator token).
    pub user_id: Option<uuid::Uuid>,
    pub user_name: Option<String>,
    /// Whether the token acts as a cloud operator.
    pub operator: bool,
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
        "SELECT t.id, t.name, t.kind, t.user_id, u.name, u.is_operator FROM api_tokens t \
         LEFT JOIN users u ON u.id = t.user_id \
         WHERE t.token_hash = $1 AND t.time_revoked IS NULL AND (t.time_expires IS NULL OR t.time_expires > $2) \
         AND (t.user_id IS NULL OR u.time_deleted IS NULL)",
    )
    .bind(token_hash)
    .bind(ts(now()))
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        None => Ok(None),
        Some(r) => {
            let kind: String = r.try_get(2)?;
            let user_id = r.try_get::<Option<String>, _>(3)?.map(|s| parse_uuid(&s)).transpose()?;
            let user_name: Option<String> = r.try_get(4)?;
            let is_operator: Option<i64> = r.try_get(5)?;
            Ok(Some(TokenRecord {
                id: parse_uuid(&r.try_get::<String, _>(0)?)?,
                name: r.try_get(1)?,
                operator: kind == "operator" || is_operator == Some(1),
                kind,
                user_id,
                user_name,
            }))
        }
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
