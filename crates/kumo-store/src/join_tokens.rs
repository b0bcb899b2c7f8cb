//! One-time tokens a `kumod agent` joins the cluster with. Only the SHA-256 hex of each token is
//! stored; a token works once, before it expires.

use crate::{map_unique, new_id, now, parse_uuid, ts, Conn, Result};
use chrono::{DateTime, Utc};
use kumo_types::{HostId, JoinTokenId, ZoneId};
use sqlx::Row;

/// Stores a new token (by its hash) that puts the host joining with it in `zone`.
pub async fn create(conn: &mut Conn, zone: ZoneId, token_hash: &str, expires: DateTime<Utc>) -> Result<JoinTokenId> {
    let id: JoinTokenId = new_id();
    sqlx::query(
        "INSERT INTO join_tokens (id, token_hash, zone_id, time_created, time_expires) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id.to_string())
    .bind(token_hash)
    .bind(zone.to_string())
    .bind(ts(now()))
    .bind(ts(expires))
    .execute(&mut *conn)
    .await
    .map_err(map_unique)?;
    Ok(id)
}

/// What [`consume`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consumed {
    /// The token was valid and is now used up by the host; the host goes in this zone.
    Zone(ZoneId),
    /// No token has that hash.
    Unknown,
    /// The token was used before.
    AlreadyUsed,
    /// The token expired unused.
    Expired,
}

/// Uses up the token whose hash is `token_hash` for `host`, if it is unused and not expired: one
/// conditional `UPDATE`, so of concurrent joins with the same token exactly one gets the zone.
pub async fn consume(conn: &mut Conn, token_hash: &str, host: HostId) -> Result<Consumed> {
    let t = ts(now());
    let used = sqlx::query(
        "UPDATE join_tokens SET time_used = $1, host_id = $2 \
         WHERE token_hash = $3 AND time_used IS NULL AND time_expires > $1",
    )
    .bind(&t)
    .bind(host.to_string())
    .bind(token_hash)
    .execute(&mut *conn)
    .await?;
    let row = sqlx::query("SELECT zone_id, time_used, host_id FROM join_tokens WHERE token_hash = $1")
        .bind(token_hash)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else { return Ok(Consumed::Unknown) };
    if used.rows_affected() == 1 {
        return Ok(Consumed::Zone(parse_uuid(&row.try_get::<String, _>(0)?)?));
    }
    Ok(if row.try_get::<Option<String>, _>(1)?.is_some() { Consumed::AlreadyUsed } else { Consumed::Expired })
}
