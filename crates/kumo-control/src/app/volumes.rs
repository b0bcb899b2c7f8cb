//! Volumes: create (quota + host disk + insert in one transaction), attach, detach, resize,
//! delete through the state machine (`kumo_types::volume`), and applying what the volume
//! reconciler observed (`crate::background::volumes`).
//!
//! Like instances, the recorded intent is the state: `creating`, `attaching`, `detaching` and
//! `deleting` are requests the reconciler carries out on the host; `attached_to` says which
//! instance holds the volume while it is attaching, attached or detaching.
//!
//! A volume's size counts against the project's `storage` quota and reserves disk on the host
//! holding the storage pool (the local host), from create to the end of delete.

use super::{read, selector};
use crate::context::{Access, OpContext};
use crate::error::{already_exists, ApiError, ApiResult};
use crate::App;
use kumo_host_api::{IoLimits, VolumeDisk};
use kumo_store::events::NewEvent;
use kumo_store::hosts::Resources;
use kumo_store::quotas::QuotaAmounts;
use kumo_store::volumes::{NewVolume, SourceKind, VolumeRecord};
use kumo_store::Conn;
use kumo_types::page::PageRequest;
use kumo_types::volume::{BANDWIDTH_LIMIT_MAX_MIB_S, IOPS_LIMIT_MAX, VOLUMES_PER_INSTANCE_MAX, VOLUME_MAX_GIB};
use kumo_types::{
    ErrorCode, EventView, InstanceId, InstanceState, ResultsPage, VolumeAction, VolumeCreate, VolumeId,
    VolumeObservation, VolumeState, VolumeTransition, VolumeView,
};

const GIB: i64 = 1 << 30;

/// Resolves a volume of a project and checks the caller's access (the one authorisation check).
async fn get(
    conn: &mut Conn,
    ctx: &OpContext,
    project: Option<&str>,
    volume: &str,
    access: Access,
) -> ApiResult<VolumeRecord> {
    let sel = selector("volume", volume)?;
    let p = super::project(conn, ctx, project, access).await?;
    kumo_store::volumes::get(conn, p.id, &sel).await?.ok_or_else(|| ApiError::not_found("volume", volume))
}

fn storage(gib: i64) -> QuotaAmounts {
    QuotaAmounts { storage_gib: gib, ..Default::default() }
}

fn disk(gib: i64) -> Resources {
    Resources { vcpus: 0, memory_mib: 0, disk_gib: gib, gpus: 0 }
}

fn event<'a>(rec: &'a VolumeRecord, kind: &'a str, t: Option<VolumeTransition>, cause: &'a str) -> NewEvent<'a> {
    NewEvent {
        project_id: Some(rec.project_id),
        resource_type: "volume",
        resource_id: rec.view.id.get(),
        resource_name: &rec.view.name,
        kind,
        from_state: t.map(|t| t.from.as_str()),
        to_state: t.map(|t| t.to.as_str()),
        cause,
        detail: Some(serde_json::json!({"size_gib": rec.view.size_gib}).to_string()),
    }
}

async fn reread(tx: &mut Conn, id: VolumeId) -> ApiResult<VolumeRecord> {
    kumo_store::volumes::get_by_id(tx, id).await?.ok_or_else(|| ApiError::internal("volume vanished"))
}

pub async fn list(
    app: &App,
    ctx: &OpContext,
    project: Option<&str>,
    page: &PageRequest,
) -> ApiResult<ResultsPage<VolumeView>> {
    let mut conn = read(app).await?;
    let p = super::project(&mut conn, ctx, project, Access::Read).await?;
    let page = kumo_store::volumes::list(&mut conn, p.id, page).await?;
    Ok(ResultsPage { items: page.items.into_iter().map(|r| r.view).collect(), next_page: page.next_page })
}

pub async fn view(app: &App, ctx: &OpContext, project: Option<&str>, volume: &str) -> ApiResult<VolumeView> {
    Ok(get(&mut *read(app).await?, ctx, project, volume, Access::Read).await?.view)
}

fn check_limits(iops: Option<i64>, bandwidth_mib_s: Option<i64>) -> ApiResult<()> {
    if let Some(i) = iops.filter(|i| !(1..=IOPS_LIMIT_MAX).contains(i)) {
        return Err(ApiError::invalid(format!("iops_limit must be between 1 and {IOPS_LIMIT_MAX}, or null (got {i})")));
    }
    if let Some(b) = bandwidth_mib_s.filter(|b| !(1..=BANDWIDTH_LIMIT_MAX_MIB_S).contains(b)) {
        return Err(ApiError::invalid(format!(
            "bandwidth_limit_mib_s must be between 1 and {BANDWIDTH_LIMIT_MAX_MIB_S}, or null (got {b})"
        )));
    }
    Ok(())
}

/// The agent's form of a volume's limits.
pub fn io_limits(v: &VolumeView) -> IoLimits {
    IoLimits { iops: v.iops_limit.map(|i| i as u64), bytes_per_sec: v.bandwidth_limit_mib_s.map(|b| (b as u64) << 20) }
}

fn check_size(size_gib: i64) -> ApiResult<()> {
    if !(1..=VOLUME_MAX_GIB).contains(&size_gib) {
        return Err(ApiError::invalid(format!("size_gib must be between 1 and {VOLUME_MAX_GIB} (got {size_gib})")));
    }
    Ok(())
}

/// Reserves `gib` of disk on the host holding the storage pool, or fails with 507.
async fn reserve_disk(tx: &mut Conn, app: &App, gib: i64) -> ApiResult<()> {
    let host_id = app.storage_host()?;
    if !kumo_store::hosts::reserve(tx, host_id, disk(gib)).await? {
        let host = kumo_store::hosts::get(tx, &kumo_types::NameOrId::Id(host_id.get())).await?;
        let msg = crate::scheduler::shortage(&host.into_iter().collect::<Vec<_>>(), disk(gib));
        return Err(ApiError::new(ErrorCode::InsufficientCapacity, format!("no room for {gib} GiB: {msg}")));
    }
    Ok(())
}

pub async fn create(app: &App, ctx: &OpContext, project: Option<&str>, p: &VolumeCreate) -> ApiResult<VolumeView> {
    super::check_description(&p.description)?;
    check_size(p.size_gib)?;
    check_limits(p.iops_limit, p.bandwidth_limit_mib_s)?;
    let sources = [&p.source_image, &p.source_snapshot, &p.source_backup].iter().filter(|s| s.is_some()).count();
    if sources > 1 {
        return Err(ApiError::invalid("give at most one of source_image, source_snapshot and source_backup"));
    }
    if p.encrypted && p.source_snapshot.is_some() {
        return Err(ApiError::invalid(
            "encrypted volumes cannot be made from snapshots yet; make a plain one or start from an image",
        ));
    }

    let mut tx = app.store.begin().await?;
    let proj = super::project(&mut tx, ctx, project, Access::Write).await?;
    let (source_kind, source_id, source_name) = match (&p.source_image, &p.source_snapshot) {
        (None, None) if p.source_backup.is_some() => {
            let backup = p.source_backup.as_deref().unwrap_or_default();
            let b = super::backups::source(&mut tx, proj.id, backup).await?;
            if p.size_gib < b.view.size_gib {
                return Err(ApiError::invalid(format!(
                    "size_gib {} is smaller than backup '{backup}' ({} GiB); ask for at least {}",
                    p.size_gib, b.view.size_gib, b.view.size_gib
                )));
            }
            (SourceKind::Backup, Some(b.view.id.get()), Some(b.view.name))
        }
        (None, Some(snapshot)) => {
            let snap = super::snapshots::source(&mut tx, proj.id, snapshot).await?;
            if p.size_gib < snap.view.size_gib {
                return Err(ApiError::invalid(format!(
                    "size_gib {} is smaller than snapshot '{snapshot}' ({} GiB); ask for at least {}",
                    p.size_gib, snap.view.size_gib, snap.view.size_gib
                )));
            }
            (SourceKind::Snapshot, Some(snap.view.id.get()), Some(snap.view.name))
        }
        (None, None) => (SourceKind::Empty, None, None),
        (Some(image), _) => {
            let sel = selector("source_image", image)?;
            let img = kumo_store::images::get(&mut tx, Some(proj.id), &sel)
                .await?
                .ok_or_else(|| ApiError::invalid(format!("image '{image}' does not exist (see `kumo image list`)")))?;
            let image_gib = (img.view.size_bytes + GIB - 1) / GIB;
            if p.size_gib < image_gib {
                return Err(ApiError::invalid(format!(
                    "size_gib {} is smaller than image '{image}' ({image_gib} GiB); ask for at least {image_gib}",
                    p.size_gib
                )));
            }
            (SourceKind::Image, Some(img.view.id.get()), Some(img.view.name))
        }
    };
    // Quota before capacity: a tenant over its quota is told so (403), not that the cloud is full.
    super::quotas::charge(&mut tx, proj.id, &proj.name, storage(p.size_gib)).await?;
    reserve_disk(&mut tx, app, p.size_gib).await?;
    let id = kumo_store::new_id();
    let new = NewVolume {
        id,
        project_id: proj.id,
        name: p.name.as_str(),
        description: &p.description,
        size_gib: p.size_gib,
        encrypted: p.encrypted,
        source_kind,
        source_id,
        source_name: source_name.as_deref(),
        iops_limit: p.iops_limit,
        bandwidth_limit_mib_s: p.bandwidth_limit_mib_s,
    };
    kumo_store::volumes::insert(&mut tx, &new).await.map_err(already_exists("volume", p.name.as_str()))?;
    let rec = reread(&mut tx, id).await?;
    let cause = ctx.cause("volume_create");
    let created = NewEvent { to_state: Some(VolumeState::Creating.as_str()), ..event(&rec, "created", None, &cause) };
    let ev = kumo_store::events::record(&mut tx, &created).await?;
    tx.commit().await.map_err(ApiError::internal)?;
    app.events.publish(Some(rec.project_id), Some(&rec.view.project), ev);
    app.volume_reconciler.wake();
    Ok(rec.view)
}

/// Applies an action's transition (compare-and-set) and records its event; returns the new view.
async fn transition(
    app: &App,
    mut tx: kumo_store::Tx,
    ctx: &OpContext,
    rec: &VolumeRecord,
    t: VolumeTransition,
    instance_id: Option<InstanceId>,
    operation: &str,
) -> ApiResult<VolumeView> {
    if !kumo_store::volumes::set_state(&mut tx, rec.view.id, rec.generation, t.to, instance_id, None).await? {
        return Err(ApiError::conflict("the volume changed while the request was handled; retry"));
    }
    let cause = ctx.cause(operation);
    let ev = kumo_store::events::record(&mut tx, &event(rec, "state_changed", Some(t), &cause)).await?;
    let view = reread(&mut tx, rec.view.id).await?.view;
    tx.commit().await.map_err(ApiError::internal)?;
    app.events.publish(Some(rec.project_id), Some(&rec.view.project), ev);
    app.volume_reconciler.wake();
    Ok(view)
}

pub async fn attach(
    app: &App,
    ctx: &OpContext,
    project: Option<&str>,
    volume: &str,
    instance: &str,
) -> ApiResult<VolumeView> {
    let mut tx = app.store.begin().await?;
    let rec = get(&mut tx, ctx, project, volume, Access::Write).await?;
    let inst_sel = selector("instance", instance)?;
    let inst = kumo_store::instances::get(&mut tx, rec.project_id, &inst_sel).await?.ok_or_else(|| {
        ApiError::invalid(format!("instance '{instance}' does not exist in project '{}'", rec.view.project))
    })?;
    let t = rec.state().on_action(VolumeAction::Attach).map_err(ApiError::conflict)?;
    if !matches!(inst.state(), InstanceState::Running | InstanceState::Stopped) {
        return Err(ApiError::conflict(format!(
            "cannot attach a volume to an instance in state '{}': wait until it is running or stopped",
            inst.state()
        )));
    }
    let held = kumo_store::volumes::of_instance(&mut tx, inst.view.id).await?.len() as i64;
    if held >= VOLUMES_PER_INSTANCE_MAX {
        return Err(ApiError::conflict(format!(
            "instance '{instance}' already has {held} volumes (at most {VOLUMES_PER_INSTANCE_MAX}); detach one first"
        )));
    }
    transition(app, tx, ctx, &rec, t, Some(inst.view.id), "volume_attach").await
}

pub async fn detach(app: &App, ctx: &OpContext, project: Option<&str>, volume: &str) -> ApiResult<VolumeView> {
    let mut tx = app.store.begin().await?;
    let rec = get(&mut tx, ctx, project, volume, Access::Write).await?;
    let t = rec.state().on_action(VolumeAction::Detach).map_err(ApiError::conflict)?;
    transition(app, tx, ctx, &rec, t, rec.instance_id, "volume_detach").await
}

pub async fn delete(app: &App, ctx: &OpContext, project: Option<&str>, volume: &str) -> ApiResult<VolumeView> {
    let mut tx = app.store.begin().await?;
    let rec = get(&mut tx, ctx, project, volume, Access::Write).await?;
    let t = rec.state().on_action(VolumeAction::Delete).map_err(ApiError::conflict)?;
    transition(app, tx, ctx, &rec, t, None, "volume_delete").await
}

/// Grows a volume: online when it is attached to a running instance (the guest sees the new
/// size), else in the pool. The disk is grown before the transaction commits: a failure changes
/// nothing in the record.
pub async fn resize(
    app: &App,
    ctx: &OpContext,
    project: Option<&str>,
    volume: &str,
    size_gib: i64,
) -> ApiResult<VolumeView> {
    check_size(size_gib)?;
    let mut tx = app.store.begin().await?;
    let rec = get(&mut tx, ctx, project, volume, Access::Write).await?;
    rec.state().on_action(VolumeAction::Resize).map_err(ApiError::conflict)?;
    if size_gib <= rec.view.size_gib {
        return Err(ApiError::invalid(format!(
            "volumes only grow: '{}' is {} GiB, ask for more than that (got {size_gib})",
            rec.view.name, rec.view.size_gib
        )));
    }
    let more = size_gib - rec.view.size_gib;
    super::quotas::charge(&mut tx, rec.project_id, &rec.view.project, storage(more)).await?;
    reserve_disk(&mut tx, app, more).await?;
    if !kumo_store::volumes::set_size(&mut tx, rec.view.id, rec.generation, size_gib).await? {
        return Err(ApiError::conflict("the volume changed while the request was handled; retry"));
    }
    let instance = rec.instance_id.filter(|_| rec.state() == VolumeState::Attached);
    app.agent()
        .grow_volume(instance, rec.view.id, size_gib as u64 * GIB as u64)
        .await
        .map_err(|e| ApiError::internal(format!("growing volume {}: {e}", rec.view.id)))?;
    let cause = format!("{} (from {} to {size_gib} GiB)", ctx.cause("volume_resize"), rec.view.size_gib);
    let after = reread(&mut tx, rec.view.id).await?;
    let ev = kumo_store::events::record(&mut tx, &event(&after, "resized", None, &cause)).await?;
    tx.commit().await.map_err(ApiError::internal)?;
    app.events.publish(Some(rec.project_id), Some(&rec.view.project), ev);
    Ok(after.view)
}

/// Applies an observation of the volume reconciler. Stale observations change nothing.
/// `Deleted` also gives back the quota and the host disk and soft-deletes the row, atomically.
pub async fn observe(
    app: &App,
    id: VolumeId,
    obs: VolumeObservation,
    cause: &str,
) -> ApiResult<Option<VolumeTransition>> {
    let mut tx = app.store.begin().await?;
    let Some(rec) = kumo_store::volumes::get_by_id(&mut tx, id).await? else { return Ok(None) };
    let Some(t) = rec.state().on_observation(&obs) else { return Ok(None) };
    let reason = obs.reason();
    let ok = match t.to {
        VolumeState::Deleted => {
            app.layers_dirty.store(true, std::sync::atomic::Ordering::SeqCst);
            kumo_store::quotas::release(&mut tx, rec.project_id, storage(rec.view.size_gib)).await?;
            if let Some(host_id) = app.local_host() {
                kumo_store::hosts::release(&mut tx, host_id, disk(rec.view.size_gib)).await?;
            }
            kumo_store::volumes::mark_deleted(&mut tx, id, rec.generation).await?
        }
        to => {
            let instance = if to.is_plugged() { rec.instance_id } else { None };
            kumo_store::volumes::set_state(&mut tx, id, rec.generation, to, instance, reason).await?
        }
    };
    if !ok {
        return Ok(None);
    }
    let cause = match reason {
        Some(r) => format!("{cause}: {r}"),
        None => cause.to_string(),
    };
    let ev = kumo_store::events::record(&mut tx, &event(&rec, "state_changed", Some(t), &cause)).await?;
    tx.commit().await.map_err(ApiError::internal)?;
    app.events.publish(Some(rec.project_id), Some(&rec.view.project), ev);
    Ok(Some(t))
}

/// Frees the volumes of an instance being destroyed (in the caller's transaction): they become
/// `available` again. Returns the events to publish after the commit.
pub async fn release_from_instance(
    tx: &mut Conn,
    instance_id: InstanceId,
    instance_name: &str,
) -> ApiResult<Vec<EventView>> {
    let mut events = Vec::new();
    for rec in kumo_store::volumes::of_instance(tx, instance_id).await? {
        let Some(t) = rec.state().on_observation(&VolumeObservation::Detached) else { continue };
        let reason = format!("detached: instance '{instance_name}' was deleted");
        if kumo_store::volumes::set_state(tx, rec.view.id, rec.generation, t.to, None, Some(&reason)).await? {
            let cause = format!("instance_delete: {reason}");
            events.push(kumo_store::events::record(tx, &event(&rec, "state_changed", Some(t), &cause)).await?);
        }
    }
    Ok(events)
}

/// The volumes an instance's guest should have (its spec's disks), in attach order.
pub async fn plugged_into(conn: &mut Conn, instance_id: InstanceId) -> ApiResult<Vec<VolumeDisk>> {
    let vols = kumo_store::volumes::of_instance(conn, instance_id).await?;
    Ok(vols
        .into_iter()
        .filter(|v| v.state().is_plugged())
        .map(|v| VolumeDisk { id: v.view.id.get(), limits: io_limits(&v.view) })
        .collect())
}

/// Changes a volume's I/O limits; live when it is attached to a running instance (applied before
/// the change commits, so a failure changes nothing).
pub async fn set_io_limits(
    app: &App,
    ctx: &OpContext,
    project: Option<&str>,
    volume: &str,
    limits: &kumo_types::VolumeIoLimits,
) -> ApiResult<VolumeView> {
    check_limits(limits.iops_limit, limits.bandwidth_limit_mib_s)?;
    let mut tx = app.store.begin().await?;
    let rec = get(&mut tx, ctx, project, volume, Access::Write).await?;
    if matches!(rec.state(), VolumeState::Deleting | VolumeState::Deleted) {
        return Err(ApiError::conflict(format!(
            "cannot change the limits of a volume in state '{}': it is being deleted",
            rec.state()
        )));
    }
    kumo_store::volumes::set_limits(&mut tx, rec.view.id, limits.iops_limit, limits.bandwidth_limit_mib_s).await?;
    let after = reread(&mut tx, rec.view.id).await?;
    if let Some(instance) = rec.instance_id.filter(|_| rec.state() == VolumeState::Attached) {
        app.agent()
            .set_volume_limits(instance, rec.view.id, io_limits(&after.view))
            .await
            .map_err(|e| ApiError::internal(format!("throttling volume {}: {e}", rec.view.id)))?;
    }
    let cause = format!(
        "{} (iops {:?}, MiB/s {:?})",
        ctx.cause("volume_io_limits_update"),
        limits.iops_limit,
        limits.bandwidth_limit_mib_s
    );
    let ev = kumo_store::events::record(&mut tx, &event(&after, "limits_changed", None, &cause)).await?;
    tx.commit().await.map_err(ApiError::internal)?;
    app.events.publish(Some(rec.project_id), Some(&rec.view.project), ev);
    Ok(after.view)
}
