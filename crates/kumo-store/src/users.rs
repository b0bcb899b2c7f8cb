//! Users: operators and tenant users, with argon2id password hashes (hashed by the caller).

use crate::{lookup, map_unique, new_id, now, page, parse_ts, parse_uuid, ts, Conn, Result, StoreError};
use kumo_types::page::PageRequest;
use kumo_types::{NameOrId, ResultsPage, UserId, UserView};
use sqlx::any::AnyRow;
use sqlx::Row;

const COLS: &str = "u.id, u.name, u.description, u.time_created, u.time_modified, u.is_operator";

fn from_row(r: &AnyRow) -> Result<UserView> {
    Ok(UserView {
        id: parse_uuid(&r.try_get::<String, _>(0)?)?,
        name: r.try_get(1)?,
        description: r.try_get(2)?,
        time_created: parse_ts(&r.try_get::<String, _>(3)?)?,
        time_modified: parse_ts(&r.try_get::<String, _>(4)?)?,
        operator: r.try_get::<i64, _>(5)? == 1,
    })
}

pub async fn create(
    conn: &mut Conn,
    name: &str,
    description: &str,
    password_hash: &str,
    operator: bool,
) -> Result<UserView> {
    let id: UserId = new_id();
    sqlx::query(
        "INSERT INTO users (id, name, description, password_hash, is_operator, time_created, time_modified) \
         VALUES ($1, $2, $3, $4, $5, $6, $6)",
    )
    .bind(id.to_string())
    .bind(name)
    .bind(description)
    .bind(password_hash)
    .bind(i64::from(operator))
    .bind(ts(now()))
    .execute(&mut *conn)
    .await
    .map_err(map_unique)?;
    get(conn, &NameOrId::Id(id.get())).await?.ok_or_else(|| StoreError::Corrupt("user vanished".into()))
}

/// A live user by name or id.
pub async fn get(conn: &mut Conn, sel: &NameOrId) -> Result<Option<UserView>> {
    lookup::get(conn, (), sel).await
}

lookup::impl_lookup!(UserView: COLS "FROM users u" "u", Global => (), from_row);

pub async fn list(conn: &mut Conn, req: &PageRequest) -> Result<ResultsPage<UserView>> {
    let sql = format!("SELECT {COLS} FROM users u WHERE u.time_deleted IS NULL");
    page::fetch(conn, &sql, &[], "u", req, from_row).await
}

/// The id and password hash of a live user, for login.
pub async fn credentials(conn: &mut Conn, name: &str) -> Result<Option<(UserId, String)>> {
    let row = sqlx::query("SELECT id, password_hash FROM users WHERE name = $1 AND time_deleted IS NULL")
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        None => Ok(None),
        Some(r) => Ok(Some((parse_uuid(&r.try_get::<String, _>(0)?)?, r.try_get(1)?))),
    }
}

/// Soft-deletes a user and removes their project memberships.
pub async fn soft_delete(conn: &mut Conn, user_id: UserId) -> Result<bool> {
    let t = ts(now());
    let r =
        sqlx::query("UPDATE users SET time_deleted = $1, time_modified = $1 WHERE id = $2 AND time_deleted IS NULL")
            .bind(&t)
            .bind(user_id.to_string())
            .execute(&mut *conn)
            .await?;
    sqlx::query("DELETE FROM project_members WHERE user_id = $1").bind(user_id.to_string()).execute(&mut *conn).await?;
    Ok(r.rows_affected() == 1)
}

/// The live projects a user is a member of, with their role, by project name.
pub async fn memberships(conn: &mut Conn, user_id: UserId) -> Result<Vec<kumo_types::MyProjectView>> {
    let rows = sqlx::query(
        "SELECT p.id, p.name, m.role FROM project_members m JOIN projects p ON p.id = m.project_id \
         WHERE m.user_id = $1 AND p.time_deleted IS NULL ORDER BY p.name",
    )
    .bind(user_id.to_string())
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(kumo_types::MyProjectView {
                id: parse_uuid(&r.try_get::<String, _>(0)?)?,
                name: r.try_get(1)?,
                role: r.try_get(2)?,
            })
        })
        .collect()
}
