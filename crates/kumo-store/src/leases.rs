//! Leases: which controller does a kind of work, until when. Taken and renewed with one
//! conditional write (held by the caller already, or expired), so two controllers never hold one
//! lease at once as long as their clocks agree within the margin the caller leaves (see
//! docs/architecture.md, "Several controllers").

use crate::{now, ts, Conn, Result};
use chrono::Duration;

/// Takes or renews lease `name` for `holder` for `ttl` from now. Returns whether `holder` holds
/// it now.
pub async fn acquire(conn: &mut Conn, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
    let t = now();
    let until = ts(t + ttl);
    let renewed = sqlx::query(
        "UPDATE leases SET holder = $1, time_expires = $2 WHERE name = $3 AND (holder = $1 OR time_expires < $4)",
    )
    .bind(holder)
    .bind(&until)
    .bind(name)
    .bind(ts(t))
    .execute(&mut *conn)
    .await?;
    if renewed.rows_affected() == 1 {
        return Ok(true);
    }
    let taken = sqlx::query(
        "INSERT INTO leases (name, holder, time_expires) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(holder)
    .bind(&until)
    .execute(&mut *conn)
    .await?;
    Ok(taken.rows_affected() == 1)
}

/// Gives lease `name` up if `holder` holds it (a controller stopping cleanly).
pub async fn release(conn: &mut Conn, name: &str, holder: &str) -> Result<()> {
    sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
        .bind(name)
        .bind(holder)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Who holds lease `name` and until when (None: nobody, or it expired).
pub async fn holder(conn: &mut Conn, name: &str) -> Result<Option<(String, String)>> {
    use sqlx::Row;
    let row = sqlx::query("SELECT holder, time_expires FROM leases WHERE name = $1 AND time_expires >= $2")
        .bind(name)
        .bind(ts(now()))
        .fetch_optional(&mut *conn)
        .await?;
    Ok(match row {
        Some(r) => Some((r.try_get(0)?, r.try_get(1)?)),
        None => None,
    })
}
