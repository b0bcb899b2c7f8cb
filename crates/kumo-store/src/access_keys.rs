//! S3 access keys of a project (see migration 0020). The secret is stored sealed by the caller
//! (the control plane holds the master key); this module never sees it in clear.

use crate::{lookup, map_unique, new_id, now, page, parse_ts, parse_uuid, ts, Conn, Result, StoreError};
use kumo_types::page::PageRequest;
use kumo_types::{AccessKeyId, AccessKeyView, NameOrId, ProjectId, ResultsPage, UserId};
use sqlx::any::AnyRow;
use sqlx::Row;

const COLS: &str = "k.id, k.name, k.description, k.time_created, k.time_modified, p.name, u.name, \
                    k.access_key_id, k.time_last_used, k.user_id";
const FROM: &str = "FROM access_keys k JOIN projects p ON p.id = k.project_id JOIN users u ON u.id = k.user_id";

/// A key as the control plane sees it: its view and the user it belongs to.
#[derive(Debug, Clone)]
pub struct AccessKeyRecord {
    pub view: AccessKeyView,
    pub user_id: UserId,
}

fn from_row(r: &AnyRow) -> Result<AccessKeyRecord> {
    let last_used: Option<String> = r.try_get(8)?;
    Ok(AccessKeyRecord {
        view: AccessKeyView {
            id: parse_uuid(&r.try_get::<String, _>(0)?)?,
            name: r.try_get(1)?,
            description: r.try_get(2)?,
            time_created: parse_ts(&r.try_get::<String, _>(3)?)?,
            time_modified: parse_ts(&r.try_get::<String, _>(4)?)?,
            project: r.try_get(5)?,
            user: r.try_get(6)?,
            access_key_id: r.try_get(7)?,
            last_used: last_used.map(|s| parse_ts(&s)).transpose()?,
        },
        user_id: parse_uuid(&r.try_get::<String, _>(9)?)?,
    })
}

fn view_from_row(r: &AnyRow) -> Result<AccessKeyView> {
    Ok(from_row(r)?.view)
}

/// A new key: ids and the sealed secret are made by the caller.
pub struct NewAccessKey<'a> {
    pub project_id: ProjectId,
    pub user_id: UserId,
    pub name: &'a str,
    pub description: &'a str,
    pub access_key_id: &'a str,
    pub secret_sealed: &'a str,
}

pub async fn insert(conn: &mut Conn, k: &NewAccessKey<'_>) -> Result<AccessKeyRecord> {
    let id: AccessKeyId = new_id();
    sqlx::query(
        "INSERT INTO access_keys (id, access_key_id, project_id, user_id, name, description, secret_sealed, \
         time_created, time_modified) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
    )
    .bind(id.to_string())
    .bind(k.access_key_id)
    .bind(k.project_id.to_string())
    .bind(k.user_id.to_string())
    .bind(k.name)
    .bind(k.description)
    .bind(k.secret_sealed)
    .bind(ts(now()))
    .execute(&mut *conn)
    .await
    .map_err(map_unique)?;
    get(conn, k.project_id, &NameOrId::Id(id.get())).await?.ok_or_else(|| StoreError::Corrupt("key vanished".into()))
}

pub async fn get(conn: &mut Conn, project_id: ProjectId, s: &NameOrId) -> Result<Option<AccessKeyRecord>> {
    lookup::get(conn, project_id, s).await
}

lookup::impl_lookup!(AccessKeyRecord: COLS FROM "k", Parent("project_id") => ProjectId, from_row);

/// A project's live keys (every member's), by name.
pub async fn list(conn: &mut Conn, project_id: ProjectId, req: &PageRequest) -> Result<ResultsPage<AccessKeyView>> {
    let sql = format!("SELECT {COLS} {FROM} WHERE k.project_id = $1 AND k.time_deleted IS NULL");
    page::fetch(conn, &sql, &[project_id.to_string()], "k", req, view_from_row).await
}

/// What a request signed with a key acts as: the key, its sealed secret, the project (live) and
/// the user (live), with the user's current role in the project (None: no longer a member) and
/// whether they are a cloud operator.
#[derive(Debug, Clone)]
pub struct KeyIdentity {
    pub id: AccessKeyId,
    pub secret_sealed: String,
    pub project_id: ProjectId,
    pub project_name: String,
    pub user_id: UserId,
    pub user_name: String,
    pub user_operator: bool,
    pub role: Option<String>,
    pub last_used: Option<chrono::DateTime<chrono::Utc>>,
}

/// The live key with this access key id, if its project and user are live too.
pub async fn identity(conn: &mut Conn, access_key_id: &str) -> Result<Option<KeyIdentity>> {
    let row = sqlx::query(
        "SELECT k.id, k.secret_sealed, p.id, p.name, u.id, u.name, u.is_operator, m.role, k.time_last_used \
         FROM access_keys k JOIN projects p ON p.id = k.project_id JOIN users u ON u.id = k.user_id \
         LEFT JOIN project_members m ON m.project_id = k.project_id AND m.user_id = k.user_id \
         WHERE k.access_key_id = $1 AND k.time_deleted IS NULL AND p.time_deleted IS NULL AND u.time_deleted IS NULL",
    )
    .bind(access_key_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(r) = row else { return Ok(None) };
    let last_used: Option<String> = r.try_get(8)?;
    Ok(Some(KeyIdentity {
        id: parse_uuid(&r.try_get::<String, _>(0)?)?,
        secret_sealed: r.try_get(1)?,
        project_id: parse_uuid(&r.try_get::<String, _>(2)?)?,
        project_name: r.try_get(3)?,
        user_id: parse_uuid(&r.try_get::<String, _>(4)?)?,
        user_name: r.try_get(5)?,
        user_operator: r.try_get::<i64, _>(6)? == 1,
        role: r.try_get(7)?,
        last_used: last_used.map(|s| parse_ts(&s)).transpose()?,
    }))
}

/// Records that a key was used (the caller limits how often).
pub async fn touch(conn: &mut Conn, id: AccessKeyId) -> Result<()> {
    sqlx::query("UPDATE access_keys SET time_last_used = $1 WHERE id = $2")
        .bind(ts(now()))
        .bind(id.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub async fn soft_delete(conn: &mut Conn, id: AccessKeyId) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE access_keys SET time_deleted = $1, time_modified = $1 WHERE id = $2 AND time_deleted IS NULL",
    )
    .bind(ts(now()))
    .bind(id.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Deletes every live key of a user (the user was deleted) or of a user in one project (they
/// left it). Returns the access key ids deleted, for the control plane's cache.
pub async fn delete_for_user(conn: &mut Conn, user_id: UserId, project_id: Option<ProjectId>) -> Result<Vec<String>> {
    let (cond, binds) = match project_id {
        Some(p) => ("user_id = $1 AND project_id = $2", vec![user_id.to_string(), p.to_string()]),
        None => ("user_id = $1", vec![user_id.to_string()]),
    };
    let sel = format!("SELECT access_key_id FROM access_keys WHERE {cond} AND time_deleted IS NULL");
    let mut q = sqlx::query_scalar::<_, String>(&sel);
    for b in &binds {
        q = q.bind(b);
    }
    let ids = q.fetch_all(&mut *conn).await?;
    let n = binds.len() + 1;
    let upd = format!(
        "UPDATE access_keys SET time_deleted = ${n}, time_modified = ${n} WHERE {cond} AND time_deleted IS NULL"
    );
    let mut q = sqlx::query(&upd);
    for b in &binds {
        q = q.bind(b);
    }
    q.bind(ts(now())).execute(&mut *conn).await?;
    Ok(ids)
}
