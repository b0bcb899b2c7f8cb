//! Volume backups. Taken synchronously (the manifest is in the target before the row commits).

use crate::page::Keyed;
use crate::{lookup, map_unique, now, page, parse_ts, parse_uuid, ts, Conn, Result};
use kumo_types::page::PageRequest;
use kumo_types::{BackupId, BackupView, NameOrId, ProjectId, ResultsPage, VolumeId};
use sqlx::any::AnyRow;
use sqlx::Row;
use uuid::Uuid;

const COLS: &str = "b.id, b.name, b.description, b.time_created, b.time_modified, p.name, b.volume_name, \
    b.size_gib, b.kind, b.chunks, b.bytes_stored, b.project_id, b.volume_id, b.encrypted";
const FROM: &str = "FROM volume_backups b JOIN projects p ON p.id = b.project_id";

#[derive(Debug, Clone)]
pub struct BackupRecord {
    pub view: BackupView,
    pub project_id: ProjectId,
    pub volume_id: VolumeId,
    pub encrypted: bool,
}

impl Keyed for BackupRecord {
    fn key_name(&self) -> &str {
        &self.view.name
    }
    fn key_id(&self) -> Uuid {
        self.view.id.get()
    }
}

fn from_row(r: &AnyRow) -> Result<BackupRecord> {
    Ok(BackupRecord {
        view: BackupView {
            id: parse_uuid(&r.try_get::<String, _>(0)?)?,
            name: r.try_get(1)?,
            description: r.try_get(2)?,
            time_created: parse_ts(&r.try_get::<String, _>(3)?)?,
            time_modified: parse_ts(&r.try_get::<String, _>(4)?)?,
            project: r.try_get(5)?,
            volume: r.try_get(6)?,
            size_gib: r.try_get(7)?,
            kind: r.try_get(8)?,
            chunks: r.try_get(9)?,
            bytes_stored: r.try_get(10)?,
        },
        project_id: parse_uuid(&r.try_get::<String, _>(11)?)?,
        volume_id: parse_uuid(&r.try_get::<String, _>(12)?)?,
        encrypted: r.try_get::<i64, _>(13)? != 0,
    })
}

#[derive(Debug, Clone)]
pub struct NewBackup<'a> {
    pub id: BackupId,
    pub project_id: ProjectId,
    pub name: &'a str,
    pub description: &'a str,
    pub volume_id: VolumeId,
    pub volume_name: &'a str,
    pub size_gib: i64,
    pub encrypted: bool,
    pub kind: &'a str,
    pub chunks: i64,
    pub bytes_stored: i64,
}

pub async fn insert(conn: &mut Conn, n: &NewBackup<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO volume_backups (id, project_id, name, description, time_created, time_modified, volume_id, \
         volume_name, size_gib, encrypted, kind, chunks, bytes_stored) \
         VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(n.id.to_string())
    .bind(n.project_id.to_string())
    .bind(n.name)
    .bind(n.description)
    .bind(ts(now()))
    .bind(n.volume_id.to_string())
    .bind(n.volume_name)
    .bind(n.size_gib)
    .bind(n.encrypted as i64)
    .bind(n.kind)
    .bind(n.chunks)
    .bind(n.bytes_stored)
    .execute(&mut *conn)
    .await
    .map_err(map_unique)?;
    Ok(())
}

pub async fn get(conn: &mut Conn, project_id: ProjectId, sel: &NameOrId) -> Result<Option<BackupRecord>> {
    lookup::get(conn, project_id, sel).await
}

lookup::impl_lookup!(BackupRecord: COLS FROM "b", Parent("project_id") => ProjectId, from_row);

/// By id, deleted ones included (a volume being restored from a backup deleted meanwhile).
pub async fn get_by_id(conn: &mut Conn, id: BackupId) -> Result<Option<BackupRecord>> {
    let sql = format!("SELECT {COLS} {FROM} WHERE b.id = $1");
    let row = sqlx::query(&sql).bind(id.to_string()).fetch_optional(&mut *conn).await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn list(conn: &mut Conn, project_id: ProjectId, req: &PageRequest) -> Result<ResultsPage<BackupRecord>> {
    let sql = format!("SELECT {COLS} {FROM} WHERE b.project_id = $1 AND b.time_deleted IS NULL");
    page::fetch(conn, &sql, &[project_id.to_string()], "b", req, from_row).await
}

/// Whether the volume has any backup (live or not): its next one is incremental.
pub async fn volume_has_any(conn: &mut Conn, volume_id: VolumeId) -> Result<bool> {
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM volume_backups WHERE volume_id = $1 AND time_deleted IS NULL")
            .bind(volume_id.to_string())
            .fetch_one(&mut *conn)
            .await?;
    Ok(n > 0)
}

pub async fn soft_delete(conn: &mut Conn, id: BackupId) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE volume_backups SET time_deleted = $1, time_modified = $1 WHERE id = $2 AND time_deleted IS NULL",
    )
    .bind(ts(now()))
    .bind(id.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(r.rows_affected() == 1)
}
