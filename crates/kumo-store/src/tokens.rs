//! API tokens. Only a SHA-256 hash of each token is stored; the secret is shown once.

use crate::{map_unique, new_id, now, parse_ts, parse_uuid, ts, Conn, Result};
use kumo_types::{TokenId, UserId};
use sqlx::Row;

/// Who a token authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: TokenId,
    pub name: String,
    /// `operator` (the bootstrap token, no user), `user` (an API token a user created) or
    /// `session` (issued by login).
    pub kind: String,
    /// The user it belongs to (None for the bootstrap operator token).
    pub user_id: Option<UserId>,
    pub user_name: Option<String>,
    /// Whether the token acts as a cloud operator.
    pub operator: bool,
}

pub async fn insert(conn: &mut Conn, name: &str, token_hash: &str, kind: &str) -> Result<TokenId> {
    let id: TokenId = new_id();
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

pub async fn touch(conn: &mut Conn, id: TokenId) -> Result<()> {
    sqlx::query("UPDATE api_tokens SET time_last_used = $1 WHERE id = $2")
        .bind(ts(now()))
        .bind(id.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Inserts a token of a user (`kind` `user` or `session`), expiring at `expires` (None: never).
pub async fn insert_for_user(
    conn: &mut Conn,
    user_id: UserId,
    name: &str,
    token_hash: &str,
    kind: &str,
    expires: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<TokenId> {
    let id: TokenId = new_id();
    sqlx::query(
        "INSERT INTO api_tokens (id, name, token_hash, kind, time_created, time_expires, user_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id.to_string())
    .bind(name)
    .bind(token_hash)
    .bind(kind)
    .bind(ts(now()))
    .bind(expires.map(ts))
    .bind(user_id.to_string())
    .execute(&mut *conn)
    .await
    .map_err(map_unique)?;
    Ok(id)
}

/// Revokes a user's expired API tokens named `name`, so that the name may be used again.
pub async fn retire_expired(conn: &mut Conn, user_id: UserId, name: &str) -> Result<()> {
    let t = ts(now());
    sqlx::query(
        "UPDATE api_tokens SET time_revoked = $1 WHERE user_id = $2 AND name = $3 AND kind = 'user' \
         AND time_revoked IS NULL AND time_expires IS NOT NULL AND time_expires <= $1",
    )
    .bind(&t)
    .bind(user_id.to_string())
    .bind(name)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A user's live API tokens (not sessions), by name: name, created, expires, last used.
pub async fn list_for_user(conn: &mut Conn, user_id: UserId) -> Result<Vec<kumo_types::TokenView>> {
    let rows = sqlx::query(
        "SELECT name, time_created, time_expires, time_last_used FROM api_tokens WHERE user_id = $1 \
         AND kind = 'user' AND time_revoked IS NULL AND (time_expires IS NULL OR time_expires > $2) ORDER BY name",
    )
    .bind(user_id.to_string())
    .bind(ts(now()))
    .fetch_all(&mut *conn)
    .await?;
    let opt_ts = |s: Option<String>| s.map(|s| parse_ts(&s)).transpose();
    rows.iter()
        .map(|r| {
            Ok(kumo_types::TokenView {
                name: r.try_get(0)?,
                time_created: parse_ts(&r.try_get::<String, _>(1)?)?,
                expires_at: opt_ts(r.try_get(2)?)?,
                last_used: opt_ts(r.try_get(3)?)?,
            })
        })
        .collect()
}

/// Revokes a user's live API token by name. Returns the hashes revoked (for the auth cache).
pub async fn revoke_by_name(conn: &mut Conn, user_id: UserId, name: &str) -> Result<Vec<String>> {
    let hashes: Vec<String> = sqlx::query_scalar(
        "SELECT token_hash FROM api_tokens WHERE user_id = $1 AND name = $2 AND kind = 'user' AND time_revoked IS NULL",
    )
    .bind(user_id.to_string())
    .bind(name)
    .fetch_all(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE api_tokens SET time_revoked = $1 WHERE user_id = $2 AND name = $3 AND kind = 'user' AND time_revoked IS NULL",
    )
    .bind(ts(now()))
    .bind(user_id.to_string())
    .bind(name)
    .execute(&mut *conn)
    .await?;
    Ok(hashes)
}

/// Revokes every token (API tokens and sessions) of a user. Returns the hashes revoked.
pub async fn revoke_all_for_user(conn: &mut Conn, user_id: UserId) -> Result<Vec<String>> {
    let hashes: Vec<String> =
        sqlx::query_scalar("SELECT token_hash FROM api_tokens WHERE user_id = $1 AND time_revoked IS NULL")
            .bind(user_id.to_string())
            .fetch_all(&mut *conn)
            .await?;
    sqlx::query("UPDATE api_tokens SET time_revoked = $1 WHERE user_id = $2 AND time_revoked IS NULL")
        .bind(ts(now()))
        .bind(user_id.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(hashes)
}

/// Revokes one session token (kind `session`, issued by login) by its hash: logging out of the
/// dashboard. Returns whether a live session was revoked.
pub async fn revoke_session(conn: &mut Conn, token_hash: &str) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE api_tokens SET time_revoked = $1 WHERE token_hash = $2 AND kind = 'session' AND time_revoked IS NULL",
    )
    .bind(ts(now()))
    .bind(token_hash)
    .execute(&mut *conn)
    .await?;
    Ok(r.rows_affected() > 0)
}
