//! Project quotas: limits (NULL = unlimited) and what is charged against them.
//!
//! Charging is a conditional `UPDATE … WHERE used + asked <= limit` in the caller's transaction
//! (the same one that allocates the resource), exactly like host capacity in [`crate::hosts`]: the
//! single writer (SQLite) or the row lock (PostgreSQL) makes concurrent charges unable to overshoot.

use crate::{now, parse_uuid, ts, Conn, Result};
use kumo_types::ProjectId;
use sqlx::any::AnyRow;
use sqlx::Row;

/// Amounts counted by quotas. A delta may be negative (a resize down, a release).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuotaAmounts {
    pub instances: i64,
    pub vcpus: i64,
    pub memory_mib: i64,
    pub storage_gib: i64,
    pub floating_ips: i64,
    pub vpcs: i64,
    pub images: i64,
    pub snapshots: i64,
    pub backups: i64,
    /// Objects stored in the project's buckets.
    pub objects: i64,
    /// Bytes of the objects stored in the project's buckets (and of their uploads' parts).
    pub object_bytes: i64,
}

/// Limits of a project (None = unlimited).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuotaLimits {
    pub instances: Option<i64>,
    pub vcpus: Option<i64>,
    pub memory_mib: Option<i64>,
    pub storage_gib: Option<i64>,
    pub floating_ips: Option<i64>,
    pub vpcs: Option<i64>,
    pub images: Option<i64>,
    pub snapshots: Option<i64>,
    pub backups: Option<i64>,
    pub objects: Option<i64>,
    pub object_bytes: Option<i64>,
}

/// Default limits of object storage (migration 0021's column defaults): a million objects and
/// 100 GiB per project until an operator says otherwise.
pub const DEFAULT_OBJECTS: i64 = 1_000_000;
pub const DEFAULT_OBJECT_BYTES: i64 = 100 << 30;

/// Default limits of the counts added in migration 0010 (the column defaults there). They bound
/// what a tenant can make by default: each VPC takes one of the 65535 conntrack zones, each image
/// up to the import limit of disk, snapshots and backups keep data alive.
pub const DEFAULT_VPCS: i64 = 10;
pub const DEFAULT_IMAGES: i64 = 20;
pub const DEFAULT_SNAPSHOTS: i64 = 100;
pub const DEFAULT_BACKUPS: i64 = 100;

/// A project's quota row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaRecord {
    pub project_id: ProjectId,
    pub project_name: String,
    pub limits: QuotaLimits,
    pub used: QuotaAmounts,
}

/// The columns, with the defaults of limits a project without a quota row would get.
fn cols() -> String {
    format!(
        "p.id, p.name, q.instances_limit, q.vcpus_limit, q.memory_mib_limit, q.storage_gib_limit, \
         q.floating_ips_limit, q.instances_used, q.vcpus_used, q.memory_mib_used, q.storage_gib_used, \
         q.floating_ips_used, \
         CASE WHEN q.project_id IS NULL THEN {DEFAULT_VPCS} ELSE q.vpcs_limit END, \
         CASE WHEN q.project_id IS NULL THEN {DEFAULT_IMAGES} ELSE q.images_limit END, \
         CASE WHEN q.project_id IS NULL THEN {DEFAULT_SNAPSHOTS} ELSE q.snapshots_limit END, \
         CASE WHEN q.project_id IS NULL THEN {DEFAULT_BACKUPS} ELSE q.backups_limit END, \
         q.vpcs_used, q.images_used, q.snapshots_used, q.backups_used, \
         CASE WHEN q.project_id IS NULL THEN {DEFAULT_OBJECTS} ELSE q.objects_limit END, \
         CASE WHEN q.project_id IS NULL THEN {DEFAULT_OBJECT_BYTES} ELSE q.object_bytes_limit END, \
         q.objects_used, q.object_bytes_used"
    )
}

fn from_row(r: &AnyRow) -> Result<QuotaRecord> {
    let used = |i: usize| -> Result<i64> { Ok(r.try_get::<Option<i64>, _>(i)?.unwrap_or(0)) };
    Ok(QuotaRecord {
        project_id: parse_uuid(&r.try_get::<String, _>(0)?)?,
        project_name: r.try_get(1)?,
        limits: QuotaLimits {
            instances: r.try_get(2)?,
            vcpus: r.try_get(3)?,
            memory_mib: r.try_get(4)?,
            storage_gib: r.try_get(5)?,
            floating_ips: r.try_get(6)?,
            vpcs: r.try_get(12)?,
            images: r.try_get(13)?,
            snapshots: r.try_get(14)?,
            backups: r.try_get(15)?,
            objects: r.try_get(20)?,
            object_bytes: r.try_get(21)?,
        },
        used: QuotaAmounts {
            instances: used(7)?,
            vcpus: used(8)?,
            memory_mib: used(9)?,
            storage_gib: used(10)?,
            floating_ips: used(11)?,
            vpcs: used(16)?,
            images: used(17)?,
            snapshots: used(18)?,
            backups: used(19)?,
            objects: used(22)?,
            object_bytes: used(23)?,
        },
    })
}

/// The quota of a live project (unlimited and unused when it has no row yet).
pub async fn get(conn: &mut Conn, project_id: ProjectId) -> Result<Option<QuotaRecord>> {
    let cols = cols();
    let sql = format!(
        "SELECT {cols} FROM projects p LEFT JOIN project_quotas q ON q.project_id = p.id \
         WHERE p.id = $1 AND p.time_deleted IS NULL"
    );
    let row = sqlx::query(&sql).bind(project_id.to_string()).fetch_optional(&mut *conn).await?;
    row.as_ref().map(from_row).transpose()
}

/// Every live project's quota and use, by project name.
pub async fn all(conn: &mut Conn) -> Result<Vec<QuotaRecord>> {
    let cols = cols();
    let sql = format!(
        "SELECT {cols} FROM projects p LEFT JOIN project_quotas q ON q.project_id = p.id \
         WHERE p.time_deleted IS NULL ORDER BY p.name"
    );
    let rows = sqlx::query(&sql).fetch_all(&mut *conn).await?;
    rows.iter().map(from_row).collect()
}

async fn ensure_row(conn: &mut Conn, project_id: ProjectId) -> Result<()> {
    sqlx::query(
        "INSERT INTO project_quotas (project_id, time_modified) VALUES ($1, $2) ON CONFLICT (project_id) DO NOTHING",
    )
    .bind(project_id.to_string())
    .bind(ts(now()))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Sets the limits (use is kept). Limits below the current use are allowed: nothing more can be
/// charged until use falls under them.
pub async fn set_limits(conn: &mut Conn, project_id: ProjectId, l: &QuotaLimits) -> Result<()> {
    ensure_row(conn, project_id).await?;
    sqlx::query(
        "UPDATE project_quotas SET instances_limit = $1, vcpus_limit = $2, memory_mib_limit = $3, \
         storage_gib_limit = $4, floating_ips_limit = $5, time_modified = $6, vpcs_limit = $8, images_limit = $9, \
         snapshots_limit = $10, backups_limit = $11, objects_limit = $12, object_bytes_limit = $13 \
         WHERE project_id = $7",
    )
    .bind(l.instances)
    .bind(l.vcpus)
    .bind(l.memory_mib)
    .bind(l.storage_gib)
    .bind(l.floating_ips)
    .bind(ts(now()))
    .bind(project_id.to_string())
    .bind(l.vpcs)
    .bind(l.images)
    .bind(l.snapshots)
    .bind(l.backups)
    .bind(l.objects)
    .bind(l.object_bytes)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Charges `d` if every amount that grows stays within its limit. Returns false (and changes
/// nothing) when it does not fit. Amounts that shrink or stay are always allowed.
pub async fn charge(conn: &mut Conn, project_id: ProjectId, d: QuotaAmounts) -> Result<bool> {
    ensure_row(conn, project_id).await?;
    let res = sqlx::query(
        "UPDATE project_quotas SET instances_used = instances_used + $1, vcpus_used = vcpus_used + $2, \
         memory_mib_used = memory_mib_used + $3, storage_gib_used = storage_gib_used + $4, \
         floating_ips_used = floating_ips_used + $5, time_modified = $6, vpcs_used = vpcs_used + $8, \
         images_used = images_used + $9, snapshots_used = snapshots_used + $10, backups_used = backups_used + $11, \
         objects_used = objects_used + $12, object_bytes_used = object_bytes_used + $13 \
         WHERE project_id = $7 \
         AND ($1 <= 0 OR instances_limit IS NULL OR instances_used + $1 <= instances_limit) \
         AND ($2 <= 0 OR vcpus_limit IS NULL OR vcpus_used + $2 <= vcpus_limit) \
         AND ($3 <= 0 OR memory_mib_limit IS NULL OR memory_mib_used + $3 <= memory_mib_limit) \
         AND ($4 <= 0 OR storage_gib_limit IS NULL OR storage_gib_used + $4 <= storage_gib_limit) \
         AND ($5 <= 0 OR floating_ips_limit IS NULL OR floating_ips_used + $5 <= floating_ips_limit) \
         AND ($8 <= 0 OR vpcs_limit IS NULL OR vpcs_used + $8 <= vpcs_limit) \
         AND ($9 <= 0 OR images_limit IS NULL OR images_used + $9 <= images_limit) \
         AND ($10 <= 0 OR snapshots_limit IS NULL OR snapshots_used + $10 <= snapshots_limit) \
         AND ($11 <= 0 OR backups_limit IS NULL OR backups_used + $11 <= backups_limit) \
         AND ($12 <= 0 OR objects_limit IS NULL OR objects_used + $12 <= objects_limit) \
         AND ($13 <= 0 OR object_bytes_limit IS NULL OR object_bytes_used + $13 <= object_bytes_limit)",
    )
    .bind(d.instances)
    .bind(d.vcpus)
    .bind(d.memory_mib)
    .bind(d.storage_gib)
    .bind(d.floating_ips)
    .bind(ts(now()))
    .bind(project_id.to_string())
    .bind(d.vpcs)
    .bind(d.images)
    .bind(d.snapshots)
    .bind(d.backups)
    .bind(d.objects)
    .bind(d.object_bytes)
    .execute(&mut *conn)
    .await?;
    Ok(res.rows_affected() == 1)
}

/// Gives back what was charged (a destroyed resource).
pub async fn release(conn: &mut Conn, project_id: ProjectId, d: QuotaAmounts) -> Result<()> {
    ensure_row(conn, project_id).await?;
    sqlx::query(
        "UPDATE project_quotas SET instances_used = instances_used - $1, vcpus_used = vcpus_used - $2, \
         memory_mib_used = memory_mib_used - $3, storage_gib_used = storage_gib_used - $4, \
         floating_ips_used = floating_ips_used - $5, time_modified = $6, vpcs_used = vpcs_used - $8, \
         images_used = images_used - $9, snapshots_used = snapshots_used - $10, backups_used = backups_used - $11, \
         objects_used = objects_used - $12, object_bytes_used = object_bytes_used - $13 \
         WHERE project_id = $7",
    )
    .bind(d.instances)
    .bind(d.vcpus)
    .bind(d.memory_mib)
    .bind(d.storage_gib)
    .bind(d.floating_ips)
    .bind(ts(now()))
    .bind(project_id.to_string())
    .bind(d.vpcs)
    .bind(d.images)
    .bind(d.snapshots)
    .bind(d.backups)
    .bind(d.objects)
    .bind(d.object_bytes)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
