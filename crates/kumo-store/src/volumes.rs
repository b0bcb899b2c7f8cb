//! Volumes. Like instances, every state change is a compare-and-set on `generation` (the API and
//! the volume reconciler race); the caller records the event in the same transaction.

use crate::page::Keyed;
use crate::{lookup, map_unique, now, page, parse_ts, parse_uuid, ts, Conn, Result, StoreError};
use kumo_types::page::PageRequest;
use kumo_types::{InstanceId, NameOrId, ProjectId, ResultsPage, VolumeId, VolumeState, VolumeView};
use sqlx::any::AnyRow;
use sqlx::Row;
use uuid::Uuid;

const COLS: &str = "v.id, v.name, v.description, v.time_created, v.time_modified, p.name, v.size_gib, v.state, \
    v.state_reason, i.name, v.encrypted, v.source_kind, v.source_name, v.project_id, v.instance_id, v.source_id, \
    v.generation, v.iops_limit, v.bandwidth_mib_s";
const FROM: &str =
    "FROM volumes v JOIN projects p ON p.id = v.project_id LEFT JOIN instances i ON i.id = v.instance_id";

/// What a volume was made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Empty,
    Image,
    Snapshot,
    Backup,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Empty => "empty",
            SourceKind::Image => "image",
            SourceKind::Snapshot => "snapshot",
            SourceKind::Backup => "backup",
        }
    }
    fn parse(s: &str) -> Option<SourceKind> {
        [SourceKind::Empty, SourceKind::Image, SourceKind::Snapshot, SourceKind::Backup]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// Everything the control plane knows about a volume.
#[derive(Debug, Clone)]
pub struct VolumeRecord {
    pub view: VolumeView,
    pub project_id: ProjectId,
    pub instance_id: Option<InstanceId>,
    pub source_kind: SourceKind,
    pub source_id: Option<Uuid>,
    pub generation: i64,
}

impl VolumeRecord {
    pub fn state(&self) -> VolumeState {
        self.view.state
    }
}

impl Keyed for VolumeRecord {
    fn key_name(&self) -> &str {
        &self.view.name
    }
    fn key_id(&self) -> Uuid {
        self.view.id.get()
    }
}

fn from_row(r: &AnyRow) -> Result<VolumeRecord> {
    let state: String = r.try_get(7)?;
    let kind: String = r.try_get(11)?;
    let source_kind = SourceKind::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("volume source '{kind}'")))?;
    let source_name: Option<String> = r.try_get(12)?;
    let source = match (source_kind, source_name) {
        (SourceKind::Empty, _) | (_, None) => source_kind.as_str().to_string(),
        (k, Some(n)) => format!("{}:{n}", k.as_str()),
    };
    Ok(VolumeRecord {
        view: VolumeView {
            id: parse_uuid(&r.try_get::<String, _>(0)?)?,
            name: r.try_get(1)?,
            description: r.try_get(2)?,
            time_created: parse_ts(&r.try_get::<String, _>(3)?)?,
            time_modified: parse_ts(&r.try_get::<String, _>(4)?)?,
            project: r.try_get(5)?,
            size_gib: r.try_get(6)?,
            state: VolumeState::parse(&state).ok_or_else(|| StoreError::Corrupt(format!("volume state '{state}'")))?,
            state_reason: r.try_get(8)?,
            attached_to: r.try_get(9)?,
            encrypted: r.try_get::<i64, _>(10)? != 0,
            source,
            iops_limit: r.try_get(17)?,
            bandwidth_limit_mib_s: r.try_get(18)?,
        },
        project_id: parse_uuid(&r.try_get::<String, _>(13)?)?,
        instance_id: r.try_get::<Option<String>, _>(14)?.map(|s| parse_uuid(&s)).transpose()?,
        source_kind,
        source_id: r.try_get::<Option<String>, _>(15)?.map(|s| parse_uuid(&s)).transpose()?,
        generation: r.try_get(16)?,
    })
}

/// A volume to insert (its quota must already be charged in the same transaction).
#[derive(Debug, Clone)]
pub struct NewVolume<'a> {
    pub id: VolumeId,
    pub project_id: ProjectId,
    pub name: &'a str,
    pub description: &'a str,
    pub size_gib: i64,
    pub encrypted: bool,
    pub source_kind: SourceKind,
    pub source_id: Option<Uuid>,
    pub source_name: Option<&'a str>,
    pub iops_limit: Option<i64>,
    pub bandwidth_limit_mib_s: Option<i64>,
}

pub async fn insert(conn: &mut Conn, n: &NewVolume<'_>) -> Result<()> {
    let t = ts(now());
    sqlx::query(
        "INSERT INTO volumes (id, project_id, name, description, time_created, time_modified, size_gib, state, \
         encrypted, source_kind, source_id, source_name, iops_limit, bandwidth_mib_s, generation) \
         VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8, $9, $10, $11, $12, $13, 1)",
    )
    .bind(n.id.to_string())
    .bind(n.project_id.to_string())
    .bind(n.name)
    .bind(n.description)
    .bind(&t)
    .bind(n.size_gib)
    .bind(VolumeState::Creating.as_str())
    .bind(n.encrypted as i64)
    .bind(n.source_kind.as_str())
    .bind(n.source_id.map(|s| s.to_string()))
    .bind(n.source_name)
    .bind(n.iops_limit)
    .bind(n.bandwidth_limit_mib_s)
    .execute(&mut *conn)
    .await
    .map_err(map_unique)?;
    Ok(())
}

/// A live volume of a project, by name or id.
pub async fn get(conn: &mut Conn, project_id: ProjectId, sel: &NameOrId) -> Result<Option<VolumeRecord>> {
    lookup::get(conn, project_id, sel).await
}

lookup::impl_lookup!(VolumeRecord: COLS FROM "v", Parent("project_id") => ProjectId, from_row);

/// A live volume by id, whatever its project.
pub async fn get_by_id(conn: &mut Conn, id: VolumeId) -> Result<Option<VolumeRecord>> {
    let sql = format!("SELECT {COLS} {FROM} WHERE v.id = $1 AND v.time_deleted IS NULL");
    let row = sqlx::query(&sql).bind(id.to_string()).fetch_optional(&mut *conn).await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn list(conn: &mut Conn, project_id: ProjectId, req: &PageRequest) -> Result<ResultsPage<VolumeRecord>> {
    let sql = format!("SELECT {COLS} {FROM} WHERE v.project_id = $1 AND v.time_deleted IS NULL");
    page::fetch(conn, &sql, &[project_id.to_string()], "v", req, from_row).await
}

/// Every live volume (what the storage pool should hold), by id.
pub async fn all_live(conn: &mut Conn) -> Result<Vec<VolumeRecord>> {
    let sql = format!("SELECT {COLS} {FROM} WHERE v.time_deleted IS NULL ORDER BY v.id");
    let rows = sqlx::query(&sql).fetch_all(&mut *conn).await?;
    rows.iter().map(from_row).collect()
}

/// Live volumes held by an instance (in any state with `instance_id` set), by id.
pub async fn of_instance(conn: &mut Conn, instance_id: InstanceId) -> Result<Vec<VolumeRecord>> {
    let sql = format!("SELECT {COLS} {FROM} WHERE v.instance_id = $1 AND v.time_deleted IS NULL ORDER BY v.id");
    let rows = sqlx::query(&sql).bind(instance_id.to_string()).fetch_all(&mut *conn).await?;
    rows.iter().map(from_row).collect()
}

/// Live volumes made from `source_id` (an image, a snapshot): they depend on its data.
pub async fn count_from_source(conn: &mut Conn, source_id: Uuid) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM volumes WHERE source_id = $1 AND time_deleted IS NULL")
        .bind(source_id.to_string())
        .fetch_one(&mut *conn)
        .await?)
}

/// Compare-and-set of the state and the instance it is attached to.
pub async fn set_state(
    conn: &mut Conn,
    id: VolumeId,
    generation: i64,
    state: VolumeState,
    instance_id: Option<InstanceId>,
    reason: Option<&str>,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE volumes SET state = $1, instance_id = $2, state_reason = $3, generation = generation + 1, \
         time_modified = $4 WHERE id = $5 AND generation = $6 AND time_deleted IS NULL",
    )
    .bind(state.as_str())
    .bind(instance_id.map(|i| i.to_string()))
    .bind(reason)
    .bind(ts(now()))
    .bind(id.to_string())
    .bind(generation)
    .execute(&mut *conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Sets the I/O limits (None: unlimited); they are not part of the state machine.
pub async fn set_limits(
    conn: &mut Conn,
    id: VolumeId,
    iops: Option<i64>,
    bandwidth_mib_s: Option<i64>,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE volumes SET iops_limit = $1, bandwidth_mib_s = $2, generation = generation + 1, time_modified = $3 \
         WHERE id = $4 AND time_deleted IS NULL",
    )
    .bind(iops)
    .bind(bandwidth_mib_s)
    .bind(ts(now()))
    .bind(id.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Compare-and-set of the size.
pub async fn set_size(conn: &mut Conn, id: VolumeId, generation: i64, size_gib: i64) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE volumes SET size_gib = $1, generation = generation + 1, time_modified = $2 \
         WHERE id = $3 AND generation = $4 AND time_deleted IS NULL",
    )
    .bind(size_gib)
    .bind(ts(now()))
    .bind(id.to_string())
    .bind(generation)
    .execute(&mut *conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Soft-deletes a deleted volume (the row stays for history; its name becomes free).
pub async fn mark_deleted(conn: &mut Conn, id: VolumeId, generation: i64) -> Result<bool> {
    let t = ts(now());
    let r = sqlx::query(
        "UPDATE volumes SET state = $1, instance_id = NULL, generation = generation + 1, time_modified = $2, \
         time_deleted = $2 WHERE id = $3 AND generation = $4 AND time_deleted IS NULL",
    )
    .bind(VolumeState::Deleted.as_str())
    .bind(t)
    .bind(id.to_string())
    .bind(generation)
    .execute(&mut *conn)
    .await?;
    Ok(r.rows_affected() == 1)
}
