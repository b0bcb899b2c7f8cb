//! Project quotas: view and set limits, and charge/release them in the caller's transaction.
//!
//! Instances charge one instance, their vCPUs, memory and root-disk GiB when created (in the
//! transaction that reserves host capacity and inserts the row), the difference when resized, and
//! release everything when destroyed (in the transaction that releases the host). The charge is a
//! conditional UPDATE (`kumo_store::quotas::charge`), so concurrent creates cannot overshoot.
//! VPCs, project images, snapshots and backups charge one of their count (images also their
//! GiB against storage) in the transaction that inserts the row, and release it on delete.

use super::read;
use crate::context::{Access, OpContext};
use crate::error::{ApiError, ApiResult};
use crate::App;
use kumo_store::hosts::Resources;
use kumo_store::quotas::{QuotaAmounts, QuotaRecord};
use kumo_store::Conn;
use kumo_types::billing::{QuotaLimits, QuotaList, QuotaUsage, QuotaView};
use kumo_types::{ErrorCode, ProjectId};

const MIB_PER_GIB: i64 = 1024;

/// What an instance of these resources counts against the quota.
pub fn instance_amounts(r: Resources) -> QuotaAmounts {
    QuotaAmounts {
        instances: 1,
        vcpus: r.vcpus,
        memory_mib: r.memory_mib,
        storage_gib: r.disk_gib,
        ..QuotaAmounts::default()
    }
}

const BYTES_PER_GIB: i64 = 1 << 30;

/// What a project image counts: one image, and its virtual size (rounded up to GiB) of storage.
pub fn image_amounts(size_bytes: i64) -> QuotaAmounts {
    QuotaAmounts {
        images: 1,
        storage_gib: (size_bytes.max(0) + BYTES_PER_GIB - 1) / BYTES_PER_GIB,
        ..QuotaAmounts::default()
    }
}

/// One snapshot.
pub fn one_snapshot() -> QuotaAmounts {
    QuotaAmounts { snapshots: 1, ..QuotaAmounts::default() }
}

/// One backup.
pub fn one_backup() -> QuotaAmounts {
    QuotaAmounts { backups: 1, ..QuotaAmounts::default() }
}

/// Fails with 403 `QuotaExceeded` if `want` would not fit now, without charging: the cheap check
/// before expensive work (an upload, a copy). The charge in the inserting transaction decides.
pub async fn precheck(conn: &mut Conn, project_id: ProjectId, project: &str, want: QuotaAmounts) -> ApiResult<()> {
    let q = kumo_store::quotas::get(conn, project_id).await?.ok_or_else(|| ApiError::not_found("project", project))?;
    let fits = |used: i64, limit: Option<i64>, more: i64| more <= 0 || limit.is_none_or(|l| used + more <= l);
    let (u, l, w) = (&q.used, &q.limits, &want);
    let ok = fits(u.instances, l.instances, w.instances)
        && fits(u.vcpus, l.vcpus, w.vcpus)
        && fits(u.memory_mib, l.memory_mib, w.memory_mib)
        && fits(u.storage_gib, l.storage_gib, w.storage_gib)
        && fits(u.floating_ips, l.floating_ips, w.floating_ips)
        && fits(u.vpcs, l.vpcs, w.vpcs)
        && fits(u.images, l.images, w.images)
        && fits(u.snapshots, l.snapshots, w.snapshots)
        && fits(u.backups, l.backups, w.backups)
        && fits(u.objects, l.objects, w.objects)
        && fits(u.object_bytes, l.object_bytes, w.object_bytes);
    if ok {
        return Ok(());
    }
    Err(ApiError::new(ErrorCode::QuotaExceeded, exceeded_message(project, &q, want)))
}

/// The change of quota use from `old` to `new` resources of one instance.
pub fn resize_delta(old: Resources, new: Resources) -> QuotaAmounts {
    QuotaAmounts {
        instances: 0,
        vcpus: new.vcpus - old.vcpus,
        memory_mib: new.memory_mib - old.memory_mib,
        storage_gib: new.disk_gib - old.disk_gib,
        ..QuotaAmounts::default()
    }
}

/// Explains which limit `want` would exceed, with the current use:
/// "quota exceeded in project 'shop': vcpus 16 of 16 used, this needs 2 more".
pub fn exceeded_message(project: &str, q: &QuotaRecord, want: QuotaAmounts) -> String {
    let checks: [(&str, i64, Option<i64>, i64, &str); 11] = [
        ("instances", q.used.instances, q.limits.instances, want.instances, ""),
        ("vcpus", q.used.vcpus, q.limits.vcpus, want.vcpus, ""),
        ("memory", q.used.memory_mib, q.limits.memory_mib, want.memory_mib, " MiB"),
        ("storage", q.used.storage_gib, q.limits.storage_gib, want.storage_gib, " GiB"),
        ("floating_ips", q.used.floating_ips, q.limits.floating_ips, want.floating_ips, ""),
        ("vpcs", q.used.vpcs, q.limits.vpcs, want.vpcs, ""),
        ("images", q.used.images, q.limits.images, want.images, ""),
        ("snapshots", q.used.snapshots, q.limits.snapshots, want.snapshots, ""),
        ("backups", q.used.backups, q.limits.backups, want.backups, ""),
        ("objects", q.used.objects, q.limits.objects, want.objects, ""),
        ("object storage", q.used.object_bytes, q.limits.object_bytes, want.object_bytes, " bytes"),
    ];
    let short: Vec<String> = checks
        .iter()
        .filter(|(_, used, limit, more, _)| *more > 0 && limit.is_some_and(|l| used + more > l))
        .map(|(what, used, limit, more, unit)| {
            format!("{what} {used} of {}{unit} used, this needs {more}{unit} more", limit.unwrap_or_default())
        })
        .collect();
    let detail = if short.is_empty() { "a limit changed meanwhile; retry".to_string() } else { short.join("; ") };
    format!(
        "quota exceeded in project '{project}': {detail} (an operator can raise it with `kumo quota set {project}`)"
    )
}

/// Charges `want` to the project's quota in `tx`, or fails with 403 `QuotaExceeded`.
pub async fn charge(tx: &mut Conn, project_id: ProjectId, project: &str, want: QuotaAmounts) -> ApiResult<()> {
    if kumo_store::quotas::charge(tx, project_id, want).await? {
        return Ok(());
    }
    let q = kumo_store::quotas::get(tx, project_id).await?.ok_or_else(|| ApiError::not_found("project", project))?;
    Err(ApiError::new(ErrorCode::QuotaExceeded, exceeded_message(project, &q, want)))
}

fn view(q: QuotaRecord) -> QuotaView {
    QuotaView {
        project: q.project_name,
        limits: QuotaLimits {
            instances: q.limits.instances,
            vcpus: q.limits.vcpus,
            memory_gib: q.limits.memory_mib.map(|m| m / MIB_PER_GIB),
            storage_gib: q.limits.storage_gib,
            floating_ips: q.limits.floating_ips,
            vpcs: q.limits.vpcs,
            images: q.limits.images,
            snapshots: q.limits.snapshots,
            backups: q.limits.backups,
            objects: q.limits.objects,
            object_storage_gib: q.limits.object_bytes.map(|b| b >> 30),
        },
        used: QuotaUsage {
            instances: q.used.instances,
            vcpus: q.used.vcpus,
            memory_mib: q.used.memory_mib,
            storage_gib: q.used.storage_gib,
            floating_ips: q.used.floating_ips,
            vpcs: q.used.vpcs,
            images: q.used.images,
            snapshots: q.used.snapshots,
            backups: q.used.backups,
            objects: q.used.objects,
            object_bytes: q.used.object_bytes,
        },
    }
}

async fn get(conn: &mut Conn, project: &kumo_types::ProjectView) -> ApiResult<QuotaView> {
    let q = kumo_store::quotas::get(conn, project.id)
        .await?
        .ok_or_else(|| ApiError::not_found("project", &project.name))?;
    Ok(view(q))
}

pub async fn view_of(app: &App, ctx: &OpContext, project: &str) -> ApiResult<QuotaView> {
    let mut conn = read(app).await?;
    let p = super::project(&mut conn, ctx, Some(project), Access::Read).await?;
    get(&mut conn, &p).await
}

/// Sets a project's limits (operators). Members who are not operators get 403, others 404.
pub async fn update(app: &App, ctx: &OpContext, project: &str, limits: &QuotaLimits) -> ApiResult<QuotaView> {
    let checks = [
        ("instances", limits.instances),
        ("vcpus", limits.vcpus),
        ("memory_gib", limits.memory_gib),
        ("storage_gib", limits.storage_gib),
        ("floating_ips", limits.floating_ips),
        ("vpcs", limits.vpcs),
        ("images", limits.images),
        ("snapshots", limits.snapshots),
        ("backups", limits.backups),
        ("objects", limits.objects),
        ("object_storage_gib", limits.object_storage_gib),
    ];
    for (what, v) in checks {
        if let Some(v) = v {
            if !(0..=1_000_000_000).contains(&v) {
                return Err(ApiError::invalid(format!(
                    "{what} must be between 0 and 1000000000, or null for unlimited (got {v})"
                )));
            }
        }
    }
    let mut tx = app.store.begin().await?;
    let p = super::project(&mut tx, ctx, Some(project), Access::Read).await?;
    ctx.authorize(Access::Operator)?;
    let l = kumo_store::quotas::QuotaLimits {
        instances: limits.instances,
        vcpus: limits.vcpus,
        memory_mib: limits.memory_gib.map(|g| g * MIB_PER_GIB),
        storage_gib: limits.storage_gib,
        floating_ips: limits.floating_ips,
        vpcs: limits.vpcs,
        images: limits.images,
        snapshots: limits.snapshots,
        backups: limits.backups,
        objects: limits.objects,
        object_bytes: limits.object_storage_gib.map(|g| g << 30),
    };
    kumo_store::quotas::set_limits(&mut tx, p.id, &l).await?;
    let v = get(&mut tx, &p).await?;
    tx.commit().await.map_err(ApiError::internal)?;
    Ok(v)
}

/// Every project's quota and use (operators).
pub async fn list(app: &App, ctx: &OpContext) -> ApiResult<QuotaList> {
    ctx.authorize(Access::Operator)?;
    let mut conn = read(app).await?;
    Ok(QuotaList { items: kumo_store::quotas::all(&mut conn).await?.into_iter().map(view).collect() })
}
