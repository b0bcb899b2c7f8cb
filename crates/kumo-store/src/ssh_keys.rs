//! SSH public keys of a project.

use crate::{lookup, map_unique, new_id, now, page, parse_ts, parse_uuid, ts, Conn, Result, StoreError};
use kumo_types::page::PageRequest;
use kumo_types::{NameOrId, ProjectId, ResultsPage, SshKeyId, SshKeyView};
use sqlx::any::AnyRow;
use sqlx::Row;

const COLS: &str = "k.id, k.name, k.description, k.time_created, k.time_modified, p.name, k.public_key";
const FROM: &str = "FROM ssh_keys k JOIN projects p ON p.id = k.project_id";

fn from_row(r: &AnyRow) -> Result<SshKeyView> {
    Ok(SshKeyView {
        id: parse_uuid(&r.try_get::<String, _>(0)?)?,
        name: r.try_get(1)?,
        description: r.try_get(2)?,
        time_created: parse_ts(&r.try_get::<String, _>(3)?)?,
        time_modified: parse_ts(&r.try_get::<String, _>(4)?)?,
        project: r.try_get(5)?,
        public_key: r.try_get(6)?,
    })
}

pub async fn insert(
    conn: &mut Conn,
    project_id: ProjectId,
    name: &str,
    description: &str,
    public_key: &str,
) -> Result<SshKeyView> {
    let id: SshKeyId = new_id();
    sqlx::query(
        "INSERT INTO ssh_keys (id, project_id, name, description, time_created, time_modified, public_key) \
         VALUES ($1, $2, $3, $4, $5, $5, $6)",
    )
    .bind(id.to_string())
    .bind(project_id.to_string())
    .bind(name)
    .bind(description)
    .bind(ts(now()))
    .bind(public_key)
    .execute(&mut *conn)
    .await
    .map_err(map_unique)?;
    get(conn, project_id, &NameOrId::Id(id.get())).await?.ok_or_else(|| StoreError::Corrupt("key vanished".into()))
}

pub async fn get(conn: &mut Conn, project_id: ProjectId, s: &NameOrId) -> Result<Option<SshKeyView>> {
    lookup::get(conn, project_id, s).await
}

lookup::impl_lookup!(SshKeyView: COLS FROM "k", Parent("project_id") => ProjectId, from_row);

pub async fn list(conn: &mut Conn, project_id: ProjectId, req: &PageRequest) -> Result<ResultsPage<SshKeyView>> {
    let sql = format!("SELECT {COLS} {FROM} WHERE k.project_id = $1 AND k.time_deleted IS NULL");
    page::fetch(conn, &sql, &[project_id.to_string()], "k", req, from_row).await
}

pub async fn soft_delete(conn: &mut Conn, id: SshKeyId) -> Result<bool> {
    let r =
        sqlx::query("UPDATE ssh_keys SET time_deleted = $1, time_modified = $1 WHERE id = $2 AND time_deleted IS NULL")
            .bind(ts(now()))
            .bind(id.to_string())
            .execute(&mut *conn)
            .await?;
    Ok(r.rows_affected() == 1)
}
