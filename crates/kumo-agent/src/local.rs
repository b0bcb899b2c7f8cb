//! [`LocalAgent`]: the host agent of the all-in-one `kumod`, in the control plane's process. It
//! implements [`kumo_host_api::HostAgent`] over what this crate has: a hypervisor driver (qemu or
//! sim) and its storage pool, the tenant-network data plane ([`crate::network::HostNet`]), the backup
//! target, qemu-img and the quarantine. The control plane sees only the trait; a remote agent
//! would run this same type behind a server and need no change on the other side.
//!
//! Paths are this host's business: instance run directories and the pool are the driver's,
//! backups and their raw scratch files live in `DATA_DIR/backups`, image files in
//! `DATA_DIR/images/<image id>/<name>` (see [`kumo_host_api::ImageFile`]), leaks go to the
//! quarantine.

use crate::network::{HostNet, NetError};
use crate::storage::backup::{BackupTarget, DirTarget, Scratch};
use crate::storage::moves::{self, Moves};
use crate::storage::pool::VolumeSource;
use crate::storage::qemu_img;
use crate::storage::quarantine::Quarantine;
use crate::system::tool::ToolError;
use crate::{AgentError, Hypervisor};
use async_trait::async_trait;
use kumo_host_api::{
    ApplyReport, BackupId, BackupStats, DesiredNet, DiskExport, GuestStatus, HostAgent, HostError, HostInfo, ImageFile,
    ImageId, ImageInfo, InstanceId, InstanceSample, InstanceSpec, IoLimits, ProjectId, Result, SerialChunk, SnapshotId,
    SweepStats, VolumeDisk, VolumeId, VolumeOrigin,
};
use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

impl From<AgentError> for HostError {
    fn from(e: AgentError) -> HostError {
        let message = e.to_string();
        match e {
            AgentError::NotFound(_) => HostError::NotFound(message),
            AgentError::Tool(_) => HostError::Tool(message),
            AgentError::Qmp(_) | AgentError::Io { .. } | AgentError::Hypervisor(_) => HostError::Failed(message),
        }
    }
}

impl From<ToolError> for HostError {
    fn from(e: ToolError) -> HostError {
        HostError::Tool(e.to_string())
    }
}

impl From<NetError> for HostError {
    fn from(e: NetError) -> HostError {
        match e {
            NetError::Tool(t) => HostError::Tool(t.to_string()),
            other => HostError::Failed(other.to_string()),
        }
    }
}

/// This host, in process. See the module docs.
pub struct LocalAgent {
    driver: Arc<dyn Hypervisor>,
    /// The tenant-network data plane (None with the sim driver: no guest to connect).
    net: Option<HostNet>,
    backups: Arc<dyn BackupTarget>,
    /// Where raw export/restore scratch files of backups go (the backup target's directory, so
    /// its sweep finds those of a killed kumod).
    backups_dir: PathBuf,
    images_dir: PathBuf,
    quarantine: Arc<Quarantine>,
    /// Root disks on the move (`DATA_DIR/moves`).
    moves: Moves,
}

impl LocalAgent {
    /// The host of `data_dir`, driven by `driver`, without a network data plane. The quarantine
    /// is shared with the control plane's orphan sweep (one directory, one set of counters).
    pub fn new(driver: Arc<dyn Hypervisor>, data_dir: &Path, quarantine: Arc<Quarantine>) -> LocalAgent {
        let backups_dir = data_dir.join("backups");
        LocalAgent {
            driver,
            net: None,
            backups: Arc::new(DirTarget::new(backups_dir.clone())),
            backups_dir,
            images_dir: data_dir.join("images"),
            quarantine,
            moves: Moves::new(data_dir.join("moves")),
        }
    }

    /// Runs the tenant-network data plane in `netns` (None: the machine's own namespace).
    pub fn with_network(mut self, netns: Option<String>) -> LocalAgent {
        self.net = Some(HostNet::new(netns));
        self
    }

    /// A host without a data plane gives its guests no NIC: there are no taps to plug into.
    fn for_this_host(&self, mut spec: InstanceSpec) -> InstanceSpec {
        if self.net.is_none() {
            spec.nics.clear();
        }
        spec
    }

    /// The directory of an image in the image store.
    fn image_dir(&self, image: ImageId) -> PathBuf {
        self.images_dir.join(image.to_string())
    }

    /// The path of an image file; its name must be one plain file name.
    fn image_path(&self, f: &ImageFile) -> Result<PathBuf> {
        let mut parts = Path::new(&f.name).components();
        match (parts.next(), parts.next()) {
            (Some(Component::Normal(_)), None) => Ok(self.image_dir(f.image).join(&f.name)),
            _ => Err(HostError::Failed(format!("'{}' is not a file name (image {})", f.name, f.image))),
        }
    }
}

#[async_trait]
impl HostAgent for LocalAgent {
    async fn host_info(&self) -> Result<HostInfo> {
        Ok(self.driver.host_info())
    }

    async fn provision(&self, spec: InstanceSpec) -> Result<()> {
        Ok(self.driver.provision(&self.for_this_host(spec)).await?)
    }

    async fn start(&self, spec: InstanceSpec) -> Result<()> {
        Ok(self.driver.start(&self.for_this_host(spec)).await?)
    }

    async fn status(&self, id: InstanceId) -> Result<GuestStatus> {
        Ok(self.driver.status(id.get()).await?)
    }

    async fn stop(&self, id: InstanceId, grace: Duration) -> Result<()> {
        Ok(self.driver.stop(id.get(), grace).await?)
    }

    async fn reboot(&self, id: InstanceId) -> Result<()> {
        Ok(self.driver.reboot(id.get()).await?)
    }

    async fn destroy(&self, id: InstanceId) -> Result<()> {
        Ok(self.driver.destroy(id.get()).await?)
    }

    async fn serial(&self, id: InstanceId, offset: u64, max: u64) -> Result<SerialChunk> {
        Ok(self.driver.serial(id.get(), offset, usize::try_from(max).unwrap_or(usize::MAX)).await?)
    }

    async fn trim_serial_logs(&self, max_bytes: u64) -> Result<u64> {
        Ok(self.driver.trim_serial_logs(max_bytes).await?)
    }

    async fn list_instances(&self) -> Result<Vec<InstanceId>> {
        Ok(self.driver.list().await?.into_iter().map(InstanceId::from).collect())
    }

    async fn quarantine_instance(&self, id: InstanceId) -> Result<()> {
        Ok(self.driver.quarantine(id.get(), &self.quarantine).await?)
    }

    async fn sample(&self, id: InstanceId) -> Result<Option<InstanceSample>> {
        Ok(self.driver.sample(id.get()).await?)
    }

    async fn export_disk(&self, id: InstanceId) -> Result<DiskExport> {
        if self.driver.status(id.get()).await? == GuestStatus::Running {
            return Err(HostError::Failed(format!("instance {id} is running on this host; stop it first")));
        }
        // Always afresh: an export left by an earlier move (rolled back, the guest ran since) is
        // stale. The guest is stopped, so doing it again after a crash gives the same bytes.
        self.moves.ensure_dir().await?;
        let (tmp, export) = (self.moves.export_tmp(id.get()), self.moves.export_path(id.get()));
        let _ = tokio::fs::remove_file(&tmp).await;
        self.driver.export_for_move(id.get(), &tmp).await?;
        // Renamed when complete: a staged export is never half-written.
        tokio::fs::rename(&tmp, &export).await.map_err(|e| AgentError::io("rename the staged export", e))?;
        Ok(moves::digest(&export).await?)
    }

    async fn read_export(&self, id: InstanceId, offset: u64, max: u64) -> Result<Vec<u8>> {
        Ok(self.moves.read_export(id.get(), offset, max).await?)
    }

    async fn write_import(&self, id: InstanceId, offset: u64, bytes: Vec<u8>) -> Result<()> {
        Ok(self.moves.write_import(id.get(), offset, bytes).await?)
    }

    async fn finish_import(&self, id: InstanceId, expect: DiskExport) -> Result<()> {
        let incoming = self.moves.import_path(id.get());
        if !incoming.exists() {
            // Installed by an earlier call whose answer was lost: the disk is there.
            if self.driver.status(id.get()).await? != GuestStatus::Absent {
                return Ok(());
            }
            return Err(HostError::NotFound(format!("no incoming copy of instance {id}'s root disk on this host")));
        }
        let got = moves::digest(&incoming).await?;
        if got != expect {
            let _ = tokio::fs::remove_file(&incoming).await;
            return Err(HostError::Failed(format!(
                "the copy of instance {id}'s root disk does not match the source's: {} bytes with SHA-256 {}, \
                 expected {} bytes with SHA-256 {}",
                got.size_bytes, got.sha256, expect.size_bytes, expect.sha256
            )));
        }
        Ok(self.driver.import_root_disk(id.get(), &incoming).await?)
    }

    async fn discard_move(&self, id: InstanceId) -> Result<()> {
        Ok(self.moves.discard(id.get()).await?)
    }

    async fn create_volume(&self, id: VolumeId, size_bytes: u64, origin: VolumeOrigin, encrypted: bool) -> Result<()> {
        let pool = self.driver.pool();
        let source = match origin {
            VolumeOrigin::Empty => VolumeSource::Empty,
            VolumeOrigin::Image(disk) => VolumeSource::Image(disk),
            VolumeOrigin::Snapshot(snapshot) => VolumeSource::Snapshot(snapshot.get()),
            VolumeOrigin::Backup { project, backup } => {
                // The verified chunks into a raw file, then into the pool. The file is removed
                // when done (or by the backup sweep, if kumod dies meanwhile).
                let raw = Scratch::new(&self.backups_dir, "restore", id.get());
                let outcome = async {
                    tokio::fs::create_dir_all(&self.backups_dir)
                        .await
                        .map_err(|e| AgentError::io("create backups dir", e))?;
                    crate::storage::backup::restore_raw(self.backups.as_ref(), project.get(), backup.get(), raw.path())
                        .await?;
                    let source = VolumeSource::Raw(raw.path().to_path_buf());
                    pool.create(id.get(), size_bytes, &source, encrypted).await
                }
                .await;
                drop(raw);
                return Ok(outcome?);
            }
        };
        Ok(pool.create(id.get(), size_bytes, &source, encrypted).await?)
    }

    async fn delete_volume(&self, id: VolumeId) -> Result<()> {
        Ok(self.driver.pool().delete(id.get()).await?)
    }

    async fn list_volumes(&self) -> Result<Vec<VolumeId>> {
        Ok(self.driver.pool().list().await?.into_iter().map(VolumeId::from).collect())
    }

    async fn quarantine_volume(&self, id: VolumeId) -> Result<()> {
        Ok(self.driver.pool().quarantine(id.get(), &self.quarantine).await?)
    }

    async fn collect_layers(&self, keep: HashSet<SnapshotId>) -> Result<u64> {
        let keep: HashSet<Uuid> = keep.into_iter().map(SnapshotId::get).collect();
        Ok(self.driver.pool().collect_layers(&keep).await? as u64)
    }

    async fn attach_volume(&self, instance: InstanceId, volume: VolumeDisk) -> Result<()> {
        Ok(self.driver.attach_volume(instance.get(), &volume).await?)
    }

    async fn set_volume_limits(&self, instance: InstanceId, volume: VolumeId, limits: IoLimits) -> Result<()> {
        Ok(self.driver.set_volume_limits(instance.get(), volume.get(), limits).await?)
    }

    async fn detach_volume(&self, instance: InstanceId, volume: VolumeId, deadline: Duration) -> Result<()> {
        Ok(self.driver.detach_volume(instance.get(), volume.get(), deadline).await?)
    }

    async fn grow_volume(&self, instance: Option<InstanceId>, volume: VolumeId, size_bytes: u64) -> Result<()> {
        Ok(self.driver.grow_volume(instance.map(InstanceId::get), volume.get(), size_bytes).await?)
    }

    async fn snapshot_volume(
        &self,
        instance: Option<InstanceId>,
        volume: VolumeId,
        snapshot: SnapshotId,
    ) -> Result<()> {
        Ok(self.driver.snapshot_volume(instance.map(InstanceId::get), volume.get(), snapshot.get()).await?)
    }

    async fn backup_volume(&self, volume: VolumeId, project: ProjectId, backup: BackupId) -> Result<BackupStats> {
        tokio::fs::create_dir_all(&self.backups_dir).await.map_err(|e| AgentError::io("create backups dir", e))?;
        // Removed when done (or by the backup sweep, if kumod dies meanwhile).
        let raw = Scratch::new(&self.backups_dir, "export", backup.get());
        let stats = async {
            self.driver.pool().export_raw(volume.get(), raw.path()).await?;
            crate::storage::backup::backup_raw(self.backups.as_ref(), project.get(), raw.path(), backup.get()).await
        }
        .await;
        drop(raw);
        Ok(stats?)
    }

    async fn delete_backup(&self, project: ProjectId, backup: BackupId) -> Result<bool> {
        Ok(self.backups.delete(project.get(), backup.get()).await?)
    }

    async fn sweep_backups(&self, grace: Duration) -> Result<SweepStats> {
        Ok(self.backups.sweep(grace).await?)
    }

    async fn inspect_upload(&self, file: ImageFile) -> Result<ImageInfo> {
        self.image_path(&file)?;
        Ok(qemu_img::untrusted::info(&self.image_dir(file.image), &file.name).await?)
    }

    async fn check_upload(&self, file: ImageFile) -> Result<()> {
        self.image_path(&file)?;
        Ok(qemu_img::untrusted::check(&self.image_dir(file.image), &file.name).await?)
    }

    async fn convert_upload(&self, src: ImageFile, format: String, dst: ImageFile, max_out_bytes: u64) -> Result<()> {
        self.image_path(&src)?;
        self.image_path(&dst)?;
        if src.image != dst.image {
            return Err(HostError::Failed(format!(
                "an upload converts within its image ({} into {})",
                src.image, dst.image
            )));
        }
        let dir = self.image_dir(src.image);
        Ok(qemu_img::untrusted::convert_to_qcow2(&dir, &src.name, &format, &dst.name, max_out_bytes).await?)
    }

    async fn image_info(&self, file: ImageFile) -> Result<ImageInfo> {
        Ok(qemu_img::info(&self.image_path(&file)?, Some("qcow2")).await?)
    }

    async fn export_snapshot(&self, snapshot: SnapshotId, dst: ImageFile) -> Result<()> {
        Ok(self.driver.pool().export_snapshot(snapshot.get(), &self.image_path(&dst)?).await?)
    }

    async fn export_root_disk(&self, id: InstanceId, dst: ImageFile) -> Result<()> {
        Ok(self.driver.export_root_disk(id.get(), &self.image_path(&dst)?).await?)
    }

    async fn apply_network(&self, want: DesiredNet) -> Result<Option<ApplyReport>> {
        match &self.net {
            Some(net) => Ok(Some(net.apply(&want).await?)),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(dir: &Path) -> LocalAgent {
        let driver = Arc::new(crate::compute::sim::SimDriver::new("h".into(), [4, 4096, 100, 0], Duration::ZERO));
        LocalAgent::new(driver, dir, Arc::new(Quarantine::new(dir.join("quarantine"))))
    }

    #[tokio::test]
    async fn image_files_are_plain_names_inside_their_image() {
        let dir = tempfile::tempdir().unwrap();
        let a = agent(dir.path());
        let image = ImageId::new_v7();
        for bad in ["../../etc/shadow", "/etc/shadow", "a/b", "", "."] {
            let err = a.image_info(ImageFile::new(image, bad)).await.unwrap_err();
            assert!(matches!(err, HostError::Failed(_)), "{bad}: {err:?}");
        }
        let ok = a.image_path(&ImageFile::new(image, "disk.qcow2")).unwrap();
        assert_eq!(ok, dir.path().join("images").join(image.to_string()).join("disk.qcow2"));
    }

    #[tokio::test]
    async fn without_a_data_plane_nothing_is_applied() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(agent(dir.path()).apply_network(DesiredNet::default()).await, Ok(None));
    }

    #[test]
    fn errors_keep_their_kind() {
        let id = Uuid::new_v4();
        assert_eq!(
            HostError::from(AgentError::NotFound(id)),
            HostError::NotFound(format!("instance {id} is not on this host"))
        );
        assert!(matches!(HostError::from(AgentError::Hypervisor("x".into())), HostError::Failed(_)));
    }
}
