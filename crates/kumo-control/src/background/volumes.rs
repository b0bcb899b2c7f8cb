//! The volume reconciler.
//!
//! Same design as the instance reconciler ([`super::instances`]), under the same driver
//! ([`super`]): no input; each pass reads the recorded intent (volume states) and does the one
//! next idempotent step on the host, so a `kumod` killed at any point converges when it comes
//! back:
//!
//! - `creating`: make the disk in the pool (a no-op if it exists) → `available`, or `failed`.
//! - `attaching`: hot-plug into the instance if it runs (a no-op if the guest has it; a stopped
//!   instance gets it on its command line at the next start) → `attached`; if the hot-plug fails
//!   or the instance is gone → rolled back to `available` with the reason.
//! - `detaching`: unplug from the running guest, waiting for the guest to release the disk up to
//!   a deadline → `available`; if the guest will not release it → back to `attached` with the reason.
//! - `deleting`: remove the disk from the pool → gone (quota and host disk given back).
//!
//! Steps wait while the instance is itself in a transitional state (starting, stopping, …), so a
//! hot-plug never races a QEMU that is being started or stopped. Each pass also collects leaks:
//! disks in the pool with no live volume (e.g. made just before a crash lost the row's commit)
//! are quarantined with their key (moved aside, deleted after the grace period), never deleted
//! outright. At start and every [`BACKUP_SWEEP_PERIOD`] it sweeps the backup target ([`sweep_backups`]).

use super::{Error, Task};
use crate::app::volumes;
use crate::App;
use kumo_host_api::VolumeOrigin;
use kumo_store::volumes::{SourceKind, VolumeRecord};
use kumo_types::{BackupId, ImageId, InstanceState, SnapshotId, VolumeId, VolumeObservation, VolumeState};
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How long a detach waits for the guest to release the disk.
pub const DETACH_DEADLINE: Duration = Duration::from_secs(30);

/// How often the backup target is swept for what a crash or a busy deletion left (and at start).
pub const BACKUP_SWEEP_PERIOD: Duration = Duration::from_secs(600);

/// How old a raw export/restore file that no backup or restore of this kumod owns must be before
/// a periodic sweep removes it. Those of this process are known exactly (`backup::Scratch`); the
/// grace only protects a file that something else is writing right now.
pub const BACKUP_SWEEP_GRACE: Duration = Duration::from_secs(900);

/// The volume reconciler task (see [`super::spawn`]); remembers when it last swept the backups.
#[derive(Default)]
pub struct Volumes {
    last_sweep: Option<std::time::Instant>,
}

impl Task for Volumes {
    async fn pass(&mut self, app: &Arc<App>) -> Result<u64, Error> {
        let last_sweep = self.last_sweep;
        if last_sweep.is_none_or(|t| t.elapsed() >= BACKUP_SWEEP_PERIOD) {
            // At start no grace: kumod.lock keeps other kumods off this data directory, and
            // this one's backups and restores in flight own their files, so every other raw
            // file is a dead kumod's (and may be as big as a volume).
            let grace = if last_sweep.is_none() { Duration::ZERO } else { BACKUP_SWEEP_GRACE };
            self.last_sweep = Some(std::time::Instant::now());
            sweep_backups(app, grace).await;
        }
        pass(app).await;
        // Its steps count their changes and errors themselves, when they end.
        Ok(0)
    }
}

fn record_error(app: &App, msg: String) {
    app.volume_reconciler.record_error(&Error::Step(msg));
}

/// One pass: collect leaks, then a step for every volume in a transitional state.
pub async fn pass(app: &Arc<App>) {
    if let Err(e) = collect_leaks(app).await {
        record_error(app, format!("leak collection: {e}"));
    }
    let records = match app.store.read().await {
        Ok(mut conn) => kumo_store::volumes::all_live(&mut conn).await,
        Err(e) => Err(e),
    };
    let records = match records {
        Ok(r) => r,
        Err(e) => {
            record_error(app, format!("listing volumes: {e}"));
            return;
        }
    };
    for rec in records.into_iter().filter(|r| r.state().is_transitional()) {
        if !app.volume_reconciler.claim(rec.view.id, rec.generation) {
            continue;
        }
        let app = app.clone();
        tokio::spawn(async move {
            let id = rec.view.id;
            let changed = step(&app, rec).await;
            if app.volume_reconciler.release(id) || changed {
                app.volume_reconciler.wake();
            }
        });
    }
}

/// Sweeps the backup target: chunks no manifest names (a backup killed before its manifest, or a
/// deletion that found its project's store busy), half-written files, and raw export/restore
/// files of a killed kumod. Stores held by a running backup or restore are skipped until the next.
pub async fn sweep_backups(app: &App, grace: Duration) {
    match app.agent().sweep_backups(grace).await {
        Ok(st) => {
            if st.chunks + st.temp_files > 0 {
                tracing::info!(
                    chunks = st.chunks,
                    chunk_bytes = st.chunk_bytes,
                    temp_files = st.temp_files,
                    busy_stores = st.busy,
                    "backup sweep collected what nothing uses"
                );
            }
            app.volume_reconciler.update(|s| s.leaks_collected += st.chunks + st.temp_files);
        }
        Err(e) => record_error(app, format!("backup sweep: {e}")),
    }
}

/// Quarantines disks of the pool that no live volume owns. The pool is listed before the store is
/// read: a volume's row is committed before its disk is made, so nothing made in between is
/// mistaken for a leak.
async fn collect_leaks(app: &App) -> anyhow::Result<()> {
    let host = app.agent();
    // Snapshot layers no live snapshot and no volume's chain uses.
    let keep: HashSet<SnapshotId> = {
        let mut conn = app.store.read().await?;
        kumo_store::snapshots::live_ids(&mut conn).await?.into_iter().collect()
    };
    if app.layers_dirty.swap(false, Ordering::SeqCst) {
        match host.collect_layers(keep).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!("removed {removed} snapshot layer(s) nothing uses any more"),
            Err(e) => {
                app.layers_dirty.store(true, Ordering::SeqCst);
                return Err(e.into());
            }
        }
    }
    let in_pool = host.list_volumes().await?;
    if in_pool.is_empty() {
        return Ok(());
    }
    let live: HashSet<VolumeId> = {
        let mut conn = app.store.read().await?;
        kumo_store::volumes::all_live(&mut conn).await?.into_iter().map(|r| r.view.id).collect()
    };
    for id in in_pool.into_iter().filter(|id| !live.contains(id)) {
        tracing::warn!(volume = %id, "quarantining a leaked disk of a volume that is not live");
        host.quarantine_volume(id).await?;
        app.volume_reconciler.update(|s| {
            s.leaks_collected += 1;
            s.quarantined += 1;
        });
    }
    Ok(())
}

/// The instance holding a volume, if it is live.
async fn holder(app: &App, rec: &VolumeRecord) -> Result<Option<kumo_store::instances::InstanceRecord>, String> {
    let Some(iid) = rec.instance_id else { return Ok(None) };
    let mut conn = app.store.read().await.map_err(|e| e.to_string())?;
    kumo_store::instances::get_by_id(&mut conn, iid).await.map_err(|e| e.to_string())
}

/// Creates a volume from a backup: the verified chunks into a raw file, then into the pool.
async fn restore(app: &App, rec: &VolumeRecord, backup_id: BackupId, size: u64) -> (VolumeObservation, &'static str) {
    let origin = VolumeOrigin::Backup { project: rec.project_id, backup: backup_id };
    match app.agent().create_volume(rec.view.id, size, origin, rec.view.encrypted).await {
        Ok(()) => (VolumeObservation::Created, "volume reconciler: restored from the backup (checksums verified)"),
        Err(e) => (VolumeObservation::CreateFailed { reason: e.to_string() }, "volume reconciler: restore"),
    }
}

/// Does the next step for one volume. Returns whether its state changed.
async fn step(app: &App, rec: VolumeRecord) -> bool {
    let id = rec.view.id;
    let hv = app.agent();
    let size = rec.view.size_gib as u64 * (1 << 30);
    let outcome: Result<Option<(VolumeObservation, &str)>, String> = async {
        match rec.state() {
            VolumeState::Creating => {
                let source = match (rec.source_kind, rec.source_id) {
                    (SourceKind::Image, Some(image_id)) => {
                        let mut conn = app.store.read().await.map_err(|e| e.to_string())?;
                        let image = kumo_store::images::get_by_id(&mut conn, ImageId::from(image_id))
                            .await
                            .map_err(|e| e.to_string())?
                            .ok_or_else(|| format!("image {image_id} is gone"))?;
                        VolumeOrigin::Image(image.disk_path.into())
                    }
                    (SourceKind::Snapshot, Some(snapshot_id)) => VolumeOrigin::Snapshot(SnapshotId::from(snapshot_id)),
                    (SourceKind::Backup, Some(backup_id)) => {
                        return Ok(Some(restore(app, &rec, BackupId::from(backup_id), size).await));
                    }
                    _ => VolumeOrigin::Empty,
                };
                Ok(match hv.create_volume(id, size, source, rec.view.encrypted).await {
                    Ok(()) => Some((VolumeObservation::Created, "volume reconciler: disk ready")),
                    Err(e) => Some((VolumeObservation::CreateFailed { reason: e.to_string() }, "volume reconciler")),
                })
            }
            VolumeState::Attaching => {
                let inst = holder(app, &rec).await?;
                let Some(inst) = inst.filter(|i| !matches!(i.state(), InstanceState::Deleting)) else {
                    let reason = "the instance is being deleted or gone".to_string();
                    return Ok(Some((VolumeObservation::AttachFailed { reason }, "volume reconciler: attach")));
                };
                if inst.state().is_transitional() {
                    return Ok(None);
                }
                let disk = kumo_host_api::VolumeDisk { id: id.get(), limits: volumes::io_limits(&rec.view) };
                Ok(match hv.attach_volume(inst.view.id, disk).await {
                    Ok(()) => Some((VolumeObservation::Attached, "volume reconciler: the instance has the disk")),
                    Err(e) => Some((
                        VolumeObservation::AttachFailed { reason: format!("hot-plug failed: {e}") },
                        "volume reconciler: attach rolled back",
                    )),
                })
            }
            VolumeState::Detaching => {
                let Some(inst) = holder(app, &rec).await? else {
                    return Ok(Some((VolumeObservation::Detached, "volume reconciler: the instance is gone")));
                };
                if inst.state().is_transitional() && inst.state() != InstanceState::Deleting {
                    return Ok(None);
                }
                Ok(match hv.detach_volume(inst.view.id, id, DETACH_DEADLINE).await {
                    Ok(()) => Some((VolumeObservation::Detached, "volume reconciler: the guest released the disk")),
                    Err(e) => Some((
                        VolumeObservation::DetachFailed { reason: format!("detach failed: {e}") },
                        "volume reconciler",
                    )),
                })
            }
            VolumeState::Deleting => Ok(match hv.delete_volume(id).await {
                Ok(()) => Some((VolumeObservation::Deleted, "volume reconciler: disk removed")),
                Err(e) => Some((VolumeObservation::DeleteFailed { reason: e.to_string() }, "volume reconciler")),
            }),
            _ => Ok(None),
        }
    }
    .await;
    let (obs, cause) = match outcome {
        Ok(Some((obs, cause))) => (obs, cause.to_string()),
        Ok(None) => return false,
        Err(e) => {
            record_error(app, format!("volume {id} ({}): {e}", rec.state()));
            return false;
        }
    };
    if let Some(reason) = obs.reason() {
        record_error(app, format!("volume {id} ({}): {reason}", rec.state()));
    }
    match volumes::observe(app, id, obs, &cause).await {
        Ok(Some(t)) => {
            tracing::info!(volume = %id, from = %t.from, to = %t.to, "{cause}");
            app.volume_reconciler.update(|s| s.changes += 1);
            true
        }
        Ok(None) => false,
        Err(e) => {
            record_error(app, format!("volume {id}: recording the observation: {}", e.internal.unwrap_or(e.message)));
            false
        }
    }
}
