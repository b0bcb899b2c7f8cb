//! The cloud's identity: one row holding the id the data directory also keeps
//! (`DATA_DIR/cloud-id`). kumod compares them at start (see `kumo_control::identity`).

use crate::{now, parse_uuid, ts, Conn, Result};
use sqlx::Row;
use uuid::Uuid;

/// The cloud id recorded in this database, if any.
pub async fn id(conn: &mut Conn) -> Result<Option<Uuid>> {
    let row = sqlx::query("SELECT id FROM cloud ORDER BY time_created LIMIT 1").fetch_optional(&mut *conn).await?;
    row.map(|r| parse_uuid(&r.try_get::<String, _>(0)?)).transpose()
}

/// Records the cloud id (the database must have none yet).
pub async fn set_id(conn: &mut Conn, id: Uuid) -> Result<()> {
    sqlx::query("INSERT INTO cloud (id, time_created) VALUES ($1, $2)")
        .bind(id.to_string())
        .bind(ts(now()))
        .execute(&mut *conn)
        .await
        .map_err(crate::map_unique)?;
    Ok(())
}

/// How many hosts were ever registered (live or not): zero means a database nothing ran on yet.
pub async fn hosts_ever(conn: &mut Conn) -> Result<i64> {
    let row = sqlx::query("SELECT COUNT(*) FROM hosts").fetch_one(&mut *conn).await?;
    Ok(row.try_get::<i64, _>(0)?)
}
