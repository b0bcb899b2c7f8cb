//! Snapshots: taken synchronously in the request (O(1) in the pool; the row commits only once
//! the layer exists and, for a running guest, its disk has switched to the new top), listed,
//! deleted. Deleting a snapshot removes the row; its layer stays in the pool while a volume's
//! chain still reads from it (the volume reconciler collects unreferenced layers).

use super::{read, selector};
use crate::context::{Access, OpContext};
use crate::error::{already_exists, ApiError, ApiResult};
use crate::App;
use kumo_store::events::NewEvent;
use kumo_store::snapshots::{NewSnapshot, SnapshotRecord};
use kumo_store::Conn;
use kumo_types::page::PageRequest;
use kumo_types::{ProjectId, ResultsPage, SnapshotCreate, SnapshotView, VolumeAction};

async fn get(
    conn: &mut Conn,
    ctx: &OpContext,
    project: Option<&str>,
    snapshot: &str,
    access: Access,
) -> ApiResult<SnapshotRecord> {
    let sel = selector("snapshot", snapshot)?;
    let p = super::project(conn, ctx, project, access).await?;
    kumo_store::snapshots::get(conn, p.id, &sel).await?.ok_or_else(|| ApiError::not_found("snapshot", snapshot))
}

/// A live snapshot of a project, for volume creation (400 when missing: it is a reference).
pub async fn source(conn: &mut Conn, project_id: ProjectId, snapshot: &str) -> ApiResult<SnapshotRecord> {
    let sel = selector("source_snapshot", snapshot)?;
    kumo_store::snapshots::get(conn, project_id, &sel)
        .await?
        .ok_or_else(|| ApiError::invalid(format!("snapshot '{snapshot}' does not exist (see `kumo snapshot list`)")))
}

pub async fn list(
    app: &App,
    ctx: &OpContext,
    project: Option<&str>,
    page: &PageRequest,
) -> ApiResult<ResultsPage<SnapshotView>> {
    let mut conn = read(app).await?;
    let p = super::project(&mut conn, ctx, project, Access::Read).await?;
    let page = kumo_store::snapshots::list(&mut conn, p.id, page).await?;
    Ok(ResultsPage { items: page.items.into_iter().map(|r| r.view).collect(), next_page: page.next_page })
}

pub async fn view(app: &App, ctx: &OpContext, project: Option<&str>, snapshot: &str) -> ApiResult<SnapshotView> {
    Ok(get(&mut *read(app).await?, ctx, project, snapshot, Access::Read).await?.view)
}

fn event<'a>(rec: &'a SnapshotRecord, kind: &'a str, cause: &'a str) -> NewEvent<'a> {
    NewEvent {
        project_id: Some(rec.project_id),
        resource_type: "snapshot",
        resource_id: rec.view.id.get(),
        resource_name: &rec.view.name,
        kind,
        from_state: None,
        to_state: None,
        cause,
        detail: Some(serde_json::json!({"size_gib": rec.view.size_gib, "volume": rec.volume_id}).to_string()),
    }
}

pub async fn create(app: &App, ctx: &OpContext, project: Option<&str>, p: &SnapshotCreate) -> ApiResult<SnapshotView> {
    super::check_description(&p.description)?;
    let mut tx = app.store.begin().await?;
    let proj = super::project(&mut tx, ctx, project, Access::Write).await?;
    let vol_sel = selector("volume", &p.volume)?;
    let vol = kumo_store::volumes::get(&mut tx, proj.id, &vol_sel)
        .await?
        .ok_or_else(|| ApiError::invalid(format!("volume '{}' does not exist in project '{}'", p.volume, proj.name)))?;
    vol.state().on_action(VolumeAction::Snapshot).map_err(ApiError::conflict)?;
    if vol.view.encrypted {
        return Err(ApiError::invalid(format!(
            "volume '{}' is encrypted: snapshots of encrypted volumes are not available yet",
            vol.view.name
        )));
    }
    let id = kumo_store::new_id();
    let new = NewSnapshot {
        id,
        project_id: proj.id,
        name: p.name.as_str(),
        description: &p.description,
        volume_id: vol.view.id,
        volume_name: &vol.view.name,
        size_gib: vol.view.size_gib,
    };
    kumo_store::snapshots::insert(&mut tx, &new).await.map_err(already_exists("snapshot", p.name.as_str()))?;
    super::quotas::charge(&mut tx, proj.id, &proj.name, super::quotas::one_snapshot()).await?;
    // The row commits only if the snapshot was taken; a failure leaves the volume whole (its
    // chain holds all its data) and no snapshot.
    app.agent()
        .snapshot_volume(vol.instance_id, vol.view.id, id)
        .await
        .map_err(|e| ApiError::internal(format!("snapshot of volume {}: {e}", vol.view.id)))?;
    let rec = kumo_store::snapshots::get(&mut tx, proj.id, &kumo_types::NameOrId::Id(id.get()))
        .await?
        .ok_or_else(|| ApiError::internal("snapshot vanished"))?;
    let cause = format!("{} (of volume '{}')", ctx.cause("snapshot_create"), vol.view.name);
    let ev = kumo_store::events::record(&mut tx, &event(&rec, "created", &cause)).await?;
    tx.commit().await.map_err(ApiError::internal)?;
    app.events.publish(Some(rec.project_id), Some(&rec.view.project), ev);
    Ok(rec.view)
}

pub async fn delete(app: &App, ctx: &OpContext, project: Option<&str>, snapshot: &str) -> ApiResult<()> {
    let mut tx = app.store.begin().await?;
    let rec = get(&mut tx, ctx, project, snapshot, Access::Write).await?;
    if kumo_store::snapshots::soft_delete(&mut tx, rec.view.id).await? {
        kumo_store::quotas::release(&mut tx, rec.project_id, super::quotas::one_snapshot()).await?;
    }
    let cause = ctx.cause("snapshot_delete");
    let ev = kumo_store::events::record(&mut tx, &event(&rec, "deleted", &cause)).await?;
    tx.commit().await.map_err(ApiError::internal)?;
    app.events.publish(Some(rec.project_id), Some(&rec.view.project), ev);
    app.layers_dirty.store(true, std::sync::atomic::Ordering::SeqCst);
    app.volume_reconciler.wake();
    Ok(())
}
