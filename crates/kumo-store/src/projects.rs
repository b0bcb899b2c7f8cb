//! Projects.

use crate::fast::Cols;
use crate::{lookup, map_unique, new_id, now, page, parse_ts, parse_uuid, ts, Conn, Result, Store};
use kumo_types::page::PageRequest;
use kumo_types::{NameOrId, ProjectId, ProjectView, ResultsPage, UserId};
use sqlx::any::AnyRow;

const COLS: &str = "p.id, p.name, p.description, p.time_created, p.time_modified";

fn decode(r: &dyn Cols) -> Result<ProjectView> {
    Ok(ProjectView {
        id: parse_uuid(&r.text(0)?)?,
        name: r.text(1)?,
        description: r.text(2)?,
        time_created: parse_ts(&r.text(3)?)?,
        time_modified: parse_ts(&r.text(4)?)?,
    })
}

fn from_row(r: &AnyRow) -> Result<ProjectView> {
    decode(r)
}

/// [`get`] on the typed read path (see `crate::fast`).
pub async fn fast_get(store: &Store, sel: &NameOrId) -> Result<Option<ProjectView>> {
    let (sql, binds) = lookup::get_sql::<ProjectView>(&(), sel);
    store.fast.one(&sql, &binds, decode).await
}

pub async fn create(conn: &mut Conn, name: &str, description: &str) -> Result<ProjectView> {
    let id: ProjectId = new_id();
    let t = ts(now());
    sqlx::query(
        "INSERT INTO projects (id, name, description, time_created, time_modified) VALUES ($1, $2, $3, $4, $4)",
    )
    .bind(id.to_string())
    .bind(name)
    .bind(description)
    .bind(&t)
    .execute(&mut *conn)
    .await
    .map_err(map_unique)?;
    get(conn, &NameOrId::Id(id.get())).await?.ok_or_else(|| crate::StoreError::Corrupt("project vanished".into()))
}

pub async fn get(conn: &mut Conn, sel: &NameOrId) -> Result<Option<ProjectView>> {
    lookup::get(conn, (), sel).await
}

lookup::impl_lookup!(ProjectView: COLS "FROM projects p" "p", Global => (), from_row);

pub async fn list(conn: &mut Conn, req: &PageRequest) -> Result<ResultsPage<ProjectView>> {
    let sql = format!("SELECT {COLS} FROM projects p WHERE p.time_deleted IS NULL");
    page::fetch(conn, &sql, &[], "p", req, from_row).await
}

/// The projects `user_id` is a member of.
pub async fn list_for_user(conn: &mut Conn, user_id: UserId, req: &PageRequest) -> Result<ResultsPage<ProjectView>> {
    let sql = format!(
        "SELECT {COLS} FROM projects p JOIN project_members m ON m.project_id = p.id \
         WHERE m.user_id = $1 AND p.time_deleted IS NULL"
    );
    page::fetch(conn, &sql, &[user_id.to_string()], "p", req, from_row).await
}

/// Number of live resources that keep a project from being deleted.
pub async fn count_children(conn: &mut Conn, project_id: ProjectId) -> Result<i64> {
    let n: i64 = sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM instances WHERE project_id = $1 AND time_deleted IS NULL) \
         + (SELECT COUNT(*) FROM images WHERE project_id = $1 AND time_deleted IS NULL) \
         + (SELECT COUNT(*) FROM floating_ips WHERE project_id = $1 AND time_deleted IS NULL)",
    )
    .bind(project_id.to_string())
    .fetch_one(&mut *conn)
    .await?;
    Ok(n)
}

pub async fn soft_delete(conn: &mut Conn, project_id: ProjectId) -> Result<bool> {
    let t = ts(now());
    let r =
        sqlx::query("UPDATE projects SET time_deleted = $1, time_modified = $1 WHERE id = $2 AND time_deleted IS NULL")
            .bind(t)
            .bind(project_id.to_string())
            .execute(&mut *conn)
            .await?;
    Ok(r.rows_affected() == 1)
}

/// Every live project, by name (background tasks such as billing).
pub async fn all_live(conn: &mut Conn) -> Result<Vec<ProjectView>> {
    let sql = format!("SELECT {COLS} FROM projects p WHERE p.time_deleted IS NULL ORDER BY p.name");
    let rows = sqlx::query(&sql).fetch_all(&mut *conn).await?;
    rows.iter().map(from_row).collect()
}
