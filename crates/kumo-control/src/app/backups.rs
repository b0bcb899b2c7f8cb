//! Volume backups: taken in the request by the volume's host into its backup target
//! ([`kumo_host_api::HostAgent::backup_volume`]; a backup is an artifact of the host named by
//! project and id), listed, deleted; restored by creating a volume with `source_backup` (the volume
//! reconciler has the host write the verified chunks into the new volume).
//!
//! A backup reads the volume's data, so the volume must not be open by a running guest
//! (available, or attached to a stopped instance): the copy is then exactly the volume's data.
//! Backups of encrypted volumes are refused: the target would hold their plaintext.

use super::{read, selector};
use crate::context::{Access, OpContext};
use crate::error::{already_exists, ApiError, ApiResult};
use crate::App;
use kumo_store::backups::{BackupRecord, NewBackup};
use kumo_store::events::NewEvent;
use kumo_store::Conn;
use kumo_types::page::PageRequest;
use kumo_types::{BackupCreate, BackupView, InstanceState, NameOrId, ProjectId, ResultsPage, VolumeAction};

async fn get(
    conn: &mut Conn,
    ctx: &OpContext,
    project: Option<&str>,
    backup: &str,
    access: Access,
) -> ApiResult<BackupRecord> {
    let sel = selector("backup", backup)?;
    let p = super::project(conn, ctx, project, access).await?;
    kumo_store::backups::get(conn, p.id, &sel).await?.ok_or_else(|| ApiError::not_found("backup", backup))
}

/// A live backup of a project, for volume creation (400 when missing: it is a reference).
pub async fn source(conn: &mut Conn, project_id: ProjectId, backup: &str) -> ApiResult<BackupRecord> {
    let sel = selector("source_backup", backup)?;
    kumo_store::backups::get(conn, project_id, &sel)
        .await?
        .ok_or_else(|| ApiError::invalid(format!("backup '{backup}' does not exist (see `kumo backup list`)")))
}

pub async fn list(
    app: &App,
    ctx: &OpContext,
    project: Option<&str>,
    page: &PageRequest,
) -> ApiResult<ResultsPage<BackupView>> {
    let mut conn = read(app).await?;
    let p = super::project(&mut conn, ctx, project, Access::Read).await?;
    let page = kumo_store::backups::list(&mut conn, p.id, page).await?;
    Ok(ResultsPage { items: page.items.into_iter().map(|r| r.view).collect(), next_page: page.next_page })
}

pub async fn view(app: &App, ctx: &OpContext, project: Option<&str>, backup: &str) -> ApiResult<BackupView> {
    Ok(get(&mut *read(app).await?, ctx, project, backup, Access::Read).await?.view)
}

fn event<'a>(rec: &'a BackupRecord, kind: &'a str, cause: &'a str) -> NewEvent<'a> {
    NewEvent {
        project_id: Some(rec.project_id),
        resource_type: "volume_backup",
        resource_id: rec.view.id.get(),
        resource_name: &rec.view.name,
        kind,
        from_state: None,
        to_state: None,
        cause,
        detail: Some(
            serde_json::json!({"size_gib": rec.view.size_gib, "bytes_stored": rec.view.bytes_stored}).to_string(),
        ),
    }
}

pub async fn create(app: &App, ctx: &OpContext, project: Option<&str>, p: &BackupCreate) -> ApiResult<BackupView> {
    super::check_description(&p.description)?;
    // Checks first (read-only), then the copy outside any transaction, then the row.
    let (proj, vol, incremental) = {
        let mut conn = read(app).await?;
        let proj = super::project(&mut conn, ctx, project, Access::Write).await?;
        let vol =
            kumo_store::volumes::get(&mut conn, proj.id, &selector("volume", &p.volume)?).await?.ok_or_else(|| {
                ApiError::invalid(format!("volume '{}' does not exist in project '{}'", p.volume, proj.name))
            })?;
        vol.state().on_action(VolumeAction::Backup).map_err(ApiError::conflict)?;
        if vol.view.encrypted {
            return Err(ApiError::invalid(format!(
                "volume '{}' is encrypted: backups of encrypted volumes are not available yet",
                vol.view.name
            )));
        }
        if let Some(iid) = vol.instance_id {
            let inst = kumo_store::instances::get_by_id(&mut conn, iid).await?;
            if let Some(inst) = inst.filter(|i| !matches!(i.state(), InstanceState::Stopped | InstanceState::Failed)) {
                return Err(ApiError::conflict(format!(
                    "cannot back up volume '{}' while instance '{}' is {}: stop the instance or detach the volume \
                     first (backups of volumes in use are not available yet)",
                    vol.view.name,
                    inst.view.name,
                    inst.state()
                )));
            }
        }
        if kumo_store::backups::get(&mut conn, proj.id, &NameOrId::Name(p.name.clone())).await?.is_some() {
            return Err(already_exists("backup", p.name.as_str())(kumo_store::StoreError::Conflict(String::new())));
        }
        // Refused before the copy when the quota is full; the charge below decides.
        super::quotas::precheck(&mut conn, proj.id, &proj.name, super::quotas::one_backup()).await?;
        let incremental = kumo_store::backups::volume_has_any(&mut conn, vol.view.id).await?;
        (proj, vol, incremental)
    };

    let id = kumo_store::new_id();
    // The host exports the volume and stores the backup in its backup target.
    let stats = app
        .agent()
        .backup_volume(vol.view.id, proj.id, id)
        .await
        .map_err(|e| ApiError::internal(format!("backup of volume {}: {e}", vol.view.id)))?;

    let mut tx = app.store.begin().await?;
    let new = NewBackup {
        id,
        project_id: proj.id,
        name: p.name.as_str(),
        description: &p.description,
        volume_id: vol.view.id,
        volume_name: &vol.view.name,
        size_gib: vol.view.size_gib,
        encrypted: false,
        kind: if incremental { "incremental" } else { "full" },
        chunks: stats.chunks as i64,
        bytes_stored: stats.bytes_stored as i64,
    };
    let inserted = match kumo_store::backups::insert(&mut tx, &new).await {
        Ok(()) => super::quotas::charge(&mut tx, proj.id, &proj.name, super::quotas::one_backup()).await,
        Err(e) => Err(already_exists("backup", p.name.as_str())(e)),
    };
    if let Err(e) = inserted {
        let _ = app.agent().delete_backup(proj.id, id).await;
        return Err(e);
    }
    let rec =
        kumo_store::backups::get_by_id(&mut tx, id).await?.ok_or_else(|| ApiError::internal("backup vanished"))?;
    let cause = format!("{} (of volume '{}')", ctx.cause("volume_backup_create"), vol.view.name);
    let ev = kumo_store::events::record(&mut tx, &event(&rec, "created", &cause)).await?;
    tx.commit().await.map_err(ApiError::internal)?;
    app.events.publish(Some(rec.project_id), Some(&rec.view.project), ev);
    Ok(rec.view)
}

pub async fn delete(app: &App, ctx: &OpContext, project: Option<&str>, backup: &str) -> ApiResult<()> {
    let mut tx = app.store.begin().await?;
    let rec = get(&mut tx, ctx, project, backup, Access::Write).await?;
    if kumo_store::backups::soft_delete(&mut tx, rec.view.id).await? {
        kumo_store::quotas::release(&mut tx, rec.project_id, super::quotas::one_backup()).await?;
    }
    let cause = ctx.cause("volume_backup_delete");
    let ev = kumo_store::events::record(&mut tx, &event(&rec, "deleted", &cause)).await?;
    tx.commit().await.map_err(ApiError::internal)?;
    app.events.publish(Some(rec.project_id), Some(&rec.view.project), ev);
    // The manifest goes, and the chunks no other backup of the project uses (unless a backup or
    // restore of the project is running: then the volume reconciler's sweep collects them). A
    // failure leaves only unused data.
    match app.agent().delete_backup(rec.project_id, rec.view.id).await {
        Ok(true) => {}
        Ok(false) => tracing::info!(backup = %rec.view.id, "chunk store busy: its unused chunks go at the next sweep"),
        Err(e) => tracing::warn!(backup = %rec.view.id, "removing the backup's data: {e}"),
    }
    Ok(())
}
