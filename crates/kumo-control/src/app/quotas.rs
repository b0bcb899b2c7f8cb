//! Project quotas: view and set limits, and charge/release them in the caller's transaction.
//!
//! Instances charge one instance, their vCPUs, memory and root-disk GiB when created (in the
//! transaction that reserves host capacity and inserts the row), the difference when resized, and
//! release everything when destroyed (in the transaction that releases the host). The charge is a
//! conditional UPDATE (`kumo_store::quotas::charge`), so concurrent creates cannot overshoot.

use super::read;
use crate::context::{Access, OpContext};
use crate::error::{ApiError, ApiResult};
use crate::App;
use kumo_store::hosts::Resources;
use kumo_store::quotas::{QuotaAmounts, QuotaRecord};
use kumo_store::Conn;
use kumo_types::billing::{QuotaLimits, QuotaList, QuotaUsage, QuotaView};
use kumo_types::ErrorCode;

const MIB_PER_GIB: i64 = 1024;

/// What an instance of these resources counts against the quota.
pub fn instance_amounts(r: Resources) -> QuotaAmounts {
    QuotaAmounts { instances: 1, vcpus: r.vcpus, memory_mib: r.memory_mib, storage_gib: r.disk_gib, floating_ips: 0 }
}

/// The change of quota use from `old` to `new` resources of one instance.
pub fn resize_delta(old: Resources, new: Resources) -> QuotaAmounts {
    QuotaAmounts {
        instances: 0,
        vcpus: new.vcpus - old.vcpus,
        memory_mib: new.memory_mib - old.memory_mib,
        storage_gib: new.disk_gib - old.disk_gib,
        floating_ips: 0,
    }
}

/// Explains which limit `want` would exceed, with the current use:
/// "quota exceeded in project 'shop': vcpus 16 of 16 used, this needs 2 more".
pub fn exceeded_message(project: &str, q: &QuotaRecord, want: QuotaAmounts) -> String {
    let checks: [(&str, i64, Option<i64>, i64, &str); 5] = [
        ("instances", q.used.instances, q.limits.instances, want.instances, ""),
        ("vcpus", q.used.vcpus, q.limits.vcpus, want.vcpus, ""),
        ("memory", q.used.memory_mib, q.limits.memory_mib, want.memory_mib, " MiB"),
        ("storage", q.used.storage_gib, q.limits.storage_gib, want.storage_gib, " GiB"),
        ("floating_ips", q.used.floating_ips, q.limits.floating_ips, want.floating_ips, ""),
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
pub async fn charge(tx: &mut Conn, project_id: uuid::Uuid, project: &str, want: QuotaAmounts) -> ApiResult<()> {
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
        },
        used: QuotaUsage {
            instances: q.used.instances,
            vcpus: q.used.vcpus,
            memory_mib: q.used.memory_mib,
            storage_gib: q.used.storage_gib,
            floating_ips: q.used.floating_ips,
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
