//! Snapshots. Taken synchronously (the row and the pool's layer in one request), so they have no
//! state machine: a row exists once its layer does.

use crate::page::Keyed;
use crate::{lookup, map_unique, now, page, parse_ts, parse_uuid, ts, Conn, Result};
use kumo_types::page::PageRequest;
use kumo_types::{NameOrId, ProjectId, ResultsPage, SnapshotId, SnapshotView, VolumeId};
use sqlx::any::AnyRow;
use sqlx::Row;
use uuid::Uuid;

const COLS: &str = "s.id, s.name, s.description, s.time_created, s.time_modified, p.name, s.volume_name, \
    s.size_gib, s.project_id, s.volume_id";
const FROM: &str = "FROM snapshots s JOIN projects p ON p.id = s.project_id";

#[derive(Debug, Clone)]
pub struct SnapshotRecord {
    pub view: SnapshotView,
    pub project_id: ProjectId,
    pub volume_id: VolumeId,
}

impl Keyed for SnapshotRecord {
    fn key_name(&self) -> &str {
        &self.view.name
    }
    fn key_id(&self) -> Uuid {
        self.view.id.get()
    }
}

fn from_row(r: &AnyRow) -> Result<SnapshotRecord> {
    Ok(SnapshotRecord {
        view: SnapshotView {
            id: parse_uuid(&r.try_get::<String, _>(0)?)?,
            name: r.try_get(1)?,
            description: r.try_get(2)?,
            time_created: parse_ts(&r.try_get::<String, _>(3)?)?,
            time_modified: parse_ts(&r.try_get::<String, _>(4)?)?,
            project: r.try_get(5)?,
            volume: r.try_get(6)?,
            size_gib: r.try_get(7)?,
        },
        project_id: parse_uuid(&r.try_get::<String, _>(8)?)?,
        volume_id: parse_uuid(&r.try_get::<String, _>(9)?)?,
    })
}

#[derive(Debug, Clone)]
pub struct NewSnapshot<'a> {
    pub id: SnapshotId,
    pub project_id: ProjectId,
    pub name: &'a str,
    pub description: &'a str,
    pub volume_id: VolumeId,
    pub volume_name: &'a str,
    pub size_gib: i64,
}

pub async fn insert(conn: &mut Conn, n: &NewSnapshot<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO snapshots (id, project_id, name, description, time_created, time_modified, volume_id, \
         volume_name, size_gib) VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8)",
    )
    .bind(n.id.to_string())
    .bind(n.project_id.to_string())
    .bind(n.name)
    .bind(n.description)
    .bind(ts(now()))
    .bind(n.volume_id.to_string())
    .bind(n.volume_name)
    .bind(n.size_gib)
    .execute(&mut *conn)
    .await
    .map_err(map_unique)?;
    Ok(())
}

pub async fn get(conn: &mut Conn, project_id: ProjectId, sel: &NameOrId) -> Result<Option<SnapshotRecord>> {
    lookup::get(conn, project_id, sel).await
}

lookup::impl_lookup!(SnapshotRecord: COLS FROM "s", Parent("project_id") => ProjectId, from_row);

pub async fn list(conn: &mut Conn, project_id: ProjectId, req: &PageRequest) -> Result<ResultsPage<SnapshotRecord>> {
    let sql = format!("SELECT {COLS} {FROM} WHERE s.project_id = $1 AND s.time_deleted IS NULL");
    page::fetch(conn, &sql, &[project_id.to_string()], "s", req, from_row).await
}

/// Ids of every live snapshot (whose layers the pool must keep).
pub async fn live_ids(conn: &mut Conn) -> Result<Vec<SnapshotId>> {
    let rows: Vec<String> =
        sqlx::query_scalar("SELECT id FROM snapshots WHERE time_deleted IS NULL").fetch_all(&mut *conn).await?;
    rows.iter().map(|s| parse_uuid(s)).collect()
}

pub async fn soft_delete(conn: &mut Conn, id: SnapshotId) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE snapshots SET time_deleted = $1, time_modified = $1 WHERE id = $2 AND time_deleted IS NULL",
    )
    .bind(ts(now()))
    .bind(id.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(r.rows_affected() == 1)
}
