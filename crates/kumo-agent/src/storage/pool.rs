//! Storage pools: where volumes live on (or for) a host.
//!
//! The control plane and the QEMU driver know a volume only by id; a [`StoragePool`] turns the id
//! into bytes somewhere and into the QEMU `blockdev` description that opens them. So a
//! distributed backend (Ceph RBD, which QEMU opens natively with `"driver": "rbd"`) is one more
//! implementation of this trait, not a change to the driver or the control plane.
//!
//! - [`DirPool`]: a directory of qcow2 files, `<dir>/<id>.qcow2`. A volume made from an image is a
//!   qcow2 overlay backed by the image's file: O(1) whatever the image size.
//! - [`SimPool`]: an in-memory pool for the simulated driver (API tests).
//!
//! Every operation is idempotent and keyed by the volume id, like the [`crate::Hypervisor`]'s.

use crate::storage::keys::{KeyStore, SecretFile};
use crate::storage::qemu_img;
use crate::{AgentError, Result};
use async_trait::async_trait;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use uuid::Uuid;

/// What a new volume starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeSource {
    /// Zeroes.
    Empty,
    /// A copy-on-write clone of an image's disk (a standalone qcow2 file on this host).
    Image(PathBuf),
    /// A copy-on-write clone of a snapshot's layer in this pool.
    Snapshot(Uuid),
    /// The data of a raw file (a restored backup), copied.
    Raw(PathBuf),
}

/// A pool of volumes.
#[async_trait]
pub trait StoragePool: Send + Sync + 'static {
    /// `dir` or `sim` (shown to operators).
    fn kind(&self) -> &'static str;

    /// Makes the volume exist with `size_bytes` from `source`, encrypted at rest with a key of
    /// its own if asked. A no-op if it exists.
    async fn create(&self, id: Uuid, size_bytes: u64, source: &VolumeSource, encrypted: bool) -> Result<()>;

    /// For an encrypted volume, its key in a transient file for QEMU (`-object secret`); None
    /// for a plain one. The file goes when the returned value is dropped.
    async fn secret(&self, id: Uuid) -> Result<Option<SecretFile>>;

    /// Grows a volume no guest has open (online growth is the driver's `block_resize`).
    async fn grow(&self, id: Uuid, size_bytes: u64) -> Result<()>;

    /// Removes the volume. A no-op if it is gone.
    async fn delete(&self, id: Uuid) -> Result<()>;

    /// Ids of every volume in the pool (for leak collection).
    async fn list(&self) -> Result<Vec<Uuid>>;

    /// What leak collection does instead of [`StoragePool::delete`]: moves the volume (and its
    /// key) aside into the quarantine, where it stays for the grace period. Idempotent.
    async fn quarantine(&self, id: Uuid, q: &crate::storage::quarantine::Quarantine) -> Result<()>;

    /// The QEMU `blockdev-add` options opening the volume, with `node_name` as its top node.
    fn blockdev(&self, id: Uuid, node_name: &str) -> serde_json::Value;

    /// Writes the volume's data (as the guest sees it) to a sparse raw file at `dst`. The volume
    /// must not be open by a running guest.
    async fn export_raw(&self, id: Uuid, dst: &Path) -> Result<()>;

    /// Writes a snapshot's data (its whole chain) as a standalone qcow2 at `dst`.
    async fn export_snapshot(&self, snapshot: Uuid, dst: &Path) -> Result<()>;

    /// Freezes the volume's current data as the read-only layer of `snapshot` and gives the
    /// volume a new empty top layer on it. O(1). A guest that has the volume open keeps writing
    /// into the frozen layer until the driver switches it to the new top (`blockdev-snapshot`).
    async fn snapshot(&self, volume: Uuid, snapshot: Uuid) -> Result<()>;

    /// Removes snapshot layers that neither a live snapshot (`keep`) nor any volume's chain
    /// uses. Returns how many were removed.
    async fn collect_layers(&self, keep: &HashSet<Uuid>) -> Result<usize>;
}

/// QEMU node name of a volume's block node (QEMU allows at most 31 characters). The random tail
/// of the UUIDv7 keeps it unique.
pub fn node_name(id: Uuid) -> String {
    format!("v{}", &id.simple().to_string()[8..])
}

/// QEMU device id of a volume's virtio-blk device.
pub fn device_id(id: Uuid) -> String {
    format!("d{}", &id.simple().to_string()[8..])
}

/// The virtio serial of a volume's disk as the guest sees it (at most 20 characters).
pub fn disk_serial(id: Uuid) -> String {
    id.simple().to_string()[12..].to_string()
}

/// A directory of qcow2 files.
pub struct DirPool {
    dir: PathBuf,
    /// Held while layers are made or collected: a layer linked into place is referenced by its
    /// volume's chain before the collector may look.
    layers_lock: tokio::sync::Mutex<()>,
    /// Keys of encrypted volumes, wrapped under `<dir>/../master.key`.
    keys: KeyStore,
}

impl DirPool {
    pub fn new(dir: PathBuf) -> DirPool {
        let master = dir.parent().unwrap_or(&dir).join("master.key");
        DirPool::with_master(dir, crate::storage::keys::MasterKey::File(master))
    }

    /// A pool whose volume keys are sealed under `master` (e.g. kept outside the data directory).
    pub fn with_master(dir: PathBuf, master: crate::storage::keys::MasterKey) -> DirPool {
        let keys = KeyStore::with_master(dir.join("keys"), master);
        DirPool { dir, layers_lock: tokio::sync::Mutex::new(()), keys }
    }

    async fn create_encrypted(&self, id: Uuid, size_bytes: u64, source: &VolumeSource) -> Result<()> {
        let backing = match source {
            VolumeSource::Empty => None,
            VolumeSource::Image(image) => Some(image.clone()),
            VolumeSource::Snapshot(_) => {
                return Err(AgentError::Hypervisor("encrypted volumes cannot be made from snapshots yet".into()))
            }
            VolumeSource::Raw(raw) => {
                self.keys.create(id)?;
                let secret = self.keys.secret_file(id)?;
                return self.create_from_raw(id, size_bytes, raw, Some(&secret)).await;
            }
        };
        let size = match &backing {
            Some(b) => size_bytes.max(qemu_img::info(b, Some("qcow2")).await?.virtual_size),
            None => size_bytes,
        };
        self.keys.create(id)?;
        let secret = self.keys.secret_file(id)?;
        tokio::fs::create_dir_all(&self.dir).await.map_err(|e| AgentError::io("create volumes dir", e))?;
        let tmp = self.dir.join(format!("{id}.qcow2.tmp"));
        let _ = tokio::fs::remove_file(&tmp).await;
        qemu_img::create_encrypted(&tmp, size, backing.as_deref(), &secret.id, &secret.path).await?;
        tokio::fs::rename(&tmp, self.path(id)).await.map_err(|e| AgentError::io("rename volume", e))
    }

    async fn create_from_raw(&self, id: Uuid, size_bytes: u64, raw: &Path, secret: Option<&SecretFile>) -> Result<()> {
        tokio::fs::create_dir_all(&self.dir).await.map_err(|e| AgentError::io("create volumes dir", e))?;
        let tmp = self.dir.join(format!("{id}.qcow2.tmp"));
        let _ = tokio::fs::remove_file(&tmp).await;
        qemu_img::import_raw(raw, &tmp, secret.map(|s| (s.id.as_str(), s.path.as_path()))).await?;
        tokio::fs::rename(&tmp, self.path(id)).await.map_err(|e| AgentError::io("rename volume", e))?;
        // The volume may be asked bigger than the backup was.
        self.grow(id, size_bytes).await
    }

    /// The read-only layer of a snapshot.
    pub fn layer_path(&self, snapshot: Uuid) -> PathBuf {
        self.dir.join("layers").join(format!("{snapshot}.qcow2"))
    }

    /// The file of a volume.
    pub fn path(&self, id: Uuid) -> PathBuf {
        self.dir.join(format!("{id}.qcow2"))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[async_trait]
impl StoragePool for DirPool {
    fn kind(&self) -> &'static str {
        "dir"
    }

    async fn create(&self, id: Uuid, size_bytes: u64, source: &VolumeSource, encrypted: bool) -> Result<()> {
        let path = self.path(id);
        if path.exists() {
            return Ok(());
        }
        if encrypted {
            return self.create_encrypted(id, size_bytes, source).await;
        }
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|e| AgentError::io(format!("create {}", self.dir.display()), e))?;
        // Made under a temporary name and renamed: a crash never leaves a half-made volume.
        let tmp = self.dir.join(format!("{id}.qcow2.tmp"));
        let _ = tokio::fs::remove_file(&tmp).await;
        match source {
            VolumeSource::Empty => qemu_img::create(&tmp, size_bytes).await?,
            VolumeSource::Image(image) => {
                let info = qemu_img::info(image, Some("qcow2")).await?;
                qemu_img::create_overlay(image, &tmp, size_bytes.max(info.virtual_size)).await?
            }
            VolumeSource::Snapshot(snapshot) => {
                let layer = self.layer_path(*snapshot);
                let size = qemu_img::virtual_size_shared(&layer).await?;
                qemu_img::create_overlay_unsafe(&layer, &tmp, size_bytes.max(size)).await?
            }
            VolumeSource::Raw(raw) => return self.create_from_raw(id, size_bytes, raw, None).await,
        }
        tokio::fs::rename(&tmp, &path).await.map_err(|e| AgentError::io("rename volume", e))?;
        Ok(())
    }

    async fn secret(&self, id: Uuid) -> Result<Option<SecretFile>> {
        if !self.keys.has(id) {
            return Ok(None);
        }
        self.keys.secret_file(id).map(Some)
    }

    async fn grow(&self, id: Uuid, size_bytes: u64) -> Result<()> {
        let path = self.path(id);
        let info = qemu_img::info(&path, Some("qcow2")).await?;
        if info.virtual_size < size_bytes {
            match self.secret(id).await? {
                Some(s) => qemu_img::grow_encrypted(&path, size_bytes, &s.id, &s.path).await?,
                None => qemu_img::grow(&path, size_bytes).await?,
            }
        }
        Ok(())
    }

    async fn delete(&self, id: Uuid) -> Result<()> {
        for p in [self.path(id), self.dir.join(format!("{id}.qcow2.tmp"))] {
            match tokio::fs::remove_file(&p).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(AgentError::io(format!("remove {}", p.display()), e)),
            }
        }
        // The key goes last: a volume file never outlives the key that opens it.
        self.keys.delete(id)
    }

    async fn list(&self) -> Result<Vec<Uuid>> {
        let mut ids = Vec::new();
        let mut rd = match tokio::fs::read_dir(&self.dir).await {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ids),
            Err(e) => return Err(AgentError::io("list volumes dir", e)),
        };
        while let Some(entry) = rd.next_entry().await.map_err(|e| AgentError::io("list volumes dir", e))? {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let stem = name.strip_suffix(".qcow2.tmp").or_else(|| name.strip_suffix(".qcow2"));
            if let Some(id) = stem.and_then(|s| Uuid::parse_str(s).ok()) {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
        Ok(ids)
    }

    async fn quarantine(&self, id: Uuid, q: &crate::storage::quarantine::Quarantine) -> Result<()> {
        let (file, tmp, key) = (self.path(id), self.dir.join(format!("{id}.qcow2.tmp")), self.keys.wrapped_path(id));
        // The key goes along: a quarantined encrypted volume must stay openable.
        q.put("volumes", &id.to_string(), &[&file, &tmp, &key])
            .map_err(|e| AgentError::io(format!("quarantine volume {id}"), e))?;
        Ok(())
    }

    fn blockdev(&self, id: Uuid, node_name: &str) -> serde_json::Value {
        let mut b = serde_json::json!({
            "driver": "qcow2",
            "node-name": node_name,
            "discard": "unmap",
            "file": {"driver": "file", "filename": self.path(id).display().to_string()},
        });
        if self.keys.has(id) {
            b["encrypt"] = serde_json::json!({"format": "luks", "key-secret": crate::storage::keys::secret_id(id)});
        }
        b
    }

    async fn export_raw(&self, id: Uuid, dst: &Path) -> Result<()> {
        let secret = self.secret(id).await?;
        let secret = secret.as_ref().map(|s| (s.id.as_str(), s.path.as_path()));
        Ok(qemu_img::export_raw(&self.path(id), dst, secret).await?)
    }

    async fn export_snapshot(&self, snapshot: Uuid, dst: &Path) -> Result<()> {
        Ok(qemu_img::convert_to_qcow2(&self.layer_path(snapshot), "qcow2", dst).await?)
    }

    async fn snapshot(&self, volume: Uuid, snapshot: Uuid) -> Result<()> {
        if self.keys.has(volume) {
            return Err(AgentError::Hypervisor("snapshots of encrypted volumes are not supported yet".into()));
        }
        let _guard = self.layers_lock.lock().await;
        let top = self.path(volume);
        let layer = self.layer_path(snapshot);
        let layers = self.dir.join("layers");
        tokio::fs::create_dir_all(&layers).await.map_err(|e| AgentError::io("create layers dir", e))?;
        let size = qemu_img::virtual_size_shared(&top).await?;
        // 1. the new top, on the layer-to-be; 2. the current top becomes the layer (a hard link:
        // the volume's file never goes missing); 3. the new top replaces the volume's file
        // atomically. A crash anywhere leaves a volume whose chain holds all its data.
        let new_top = self.dir.join(format!("{volume}.qcow2.new"));
        let _ = tokio::fs::remove_file(&new_top).await;
        qemu_img::create_overlay_unsafe(&layer, &new_top, size).await?;
        match tokio::fs::hard_link(&top, &layer).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(AgentError::io("link snapshot layer", e)),
        }
        tokio::fs::rename(&new_top, &top).await.map_err(|e| AgentError::io("rename new top", e))?;
        Ok(())
    }

    async fn collect_layers(&self, keep: &HashSet<Uuid>) -> Result<usize> {
        let _guard = self.layers_lock.lock().await;
        let layers = self.dir.join("layers");
        let mut rd = match tokio::fs::read_dir(&layers).await {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(AgentError::io("list layers dir", e)),
        };
        let mut all = Vec::new();
        while let Some(entry) = rd.next_entry().await.map_err(|e| AgentError::io("list layers dir", e))? {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.strip_suffix(".qcow2").and_then(|s| Uuid::parse_str(s).ok()) {
                all.push(id);
            }
        }
        // Everything a volume or a kept snapshot reads from.
        let mut used: HashSet<String> = HashSet::new();
        let tops = self.list().await?.into_iter().map(|v| self.path(v)).filter(|p| p.exists());
        let kept = keep.iter().map(|s| self.layer_path(*s)).filter(|p| p.exists());
        for file in tops.chain(kept).collect::<Vec<_>>() {
            used.extend(qemu_img::backing_chain(&file).await?);
        }
        let mut removed = 0;
        for id in all {
            let path = self.layer_path(id);
            if keep.contains(&id) || used.contains(&path.display().to_string()) {
                continue;
            }
            tokio::fs::remove_file(&path).await.map_err(|e| AgentError::io("remove layer", e))?;
            removed += 1;
        }
        Ok(removed)
    }
}

/// The simulated driver's pool: sizes in a map.
#[derive(Default)]
pub struct SimPool {
    volumes: Mutex<HashMap<Uuid, u64>>,
}

impl SimPool {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<Uuid, u64>) -> T) -> T {
        f(&mut self.volumes.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The simulated size of a volume (tests).
    pub fn size(&self, id: Uuid) -> Option<u64> {
        self.with(|v| v.get(&id).copied())
    }
}

#[async_trait]
impl StoragePool for SimPool {
    fn kind(&self) -> &'static str {
        "sim"
    }

    async fn secret(&self, _id: Uuid) -> Result<Option<SecretFile>> {
        Ok(None)
    }

    async fn create(&self, id: Uuid, size_bytes: u64, _source: &VolumeSource, _encrypted: bool) -> Result<()> {
        self.with(|v| {
            v.entry(id).or_insert(size_bytes);
        });
        Ok(())
    }

    async fn grow(&self, id: Uuid, size_bytes: u64) -> Result<()> {
        self.with(|v| match v.get_mut(&id) {
            Some(s) => {
                *s = (*s).max(size_bytes);
                Ok(())
            }
            None => Err(AgentError::Hypervisor(format!("volume {id} is not in the pool"))),
        })
    }

    async fn delete(&self, id: Uuid) -> Result<()> {
        self.with(|v| v.remove(&id));
        Ok(())
    }

    async fn list(&self) -> Result<Vec<Uuid>> {
        Ok(self.with(|v| v.keys().copied().collect()))
    }

    async fn quarantine(&self, id: Uuid, _q: &crate::storage::quarantine::Quarantine) -> Result<()> {
        // Simulated data: nothing on disk to keep.
        self.with(|v| v.remove(&id));
        Ok(())
    }

    fn blockdev(&self, id: Uuid, node_name: &str) -> serde_json::Value {
        serde_json::json!({"driver": "null-co", "node-name": node_name, "size": self.size(id).unwrap_or(0)})
    }

    async fn export_raw(&self, id: Uuid, dst: &Path) -> Result<()> {
        let size = self.size(id).ok_or_else(|| AgentError::Hypervisor(format!("volume {id} is not in the pool")))?;
        let f = std::fs::File::create(dst).map_err(|e| AgentError::io("create raw export", e))?;
        f.set_len(size).map_err(|e| AgentError::io("size raw export", e))
    }

    async fn export_snapshot(&self, _snapshot: Uuid, dst: &Path) -> Result<()> {
        // Simulated data: an empty disk (qemu-img makes it, so the image is a real qcow2).
        Ok(qemu_img::create(dst, 1 << 30).await?)
    }

    async fn snapshot(&self, volume: Uuid, _snapshot: Uuid) -> Result<()> {
        match self.size(volume) {
            Some(_) => Ok(()),
            None => Err(AgentError::Hypervisor(format!("volume {volume} is not in the pool"))),
        }
    }

    async fn collect_layers(&self, _keep: &HashSet<Uuid>) -> Result<usize> {
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_names_fit_qemu_limits_and_differ() {
        let a = Uuid::now_v7();
        let b = Uuid::now_v7();
        assert!(node_name(a).len() < 32 && device_id(a).len() < 32);
        assert_eq!(disk_serial(a).len(), 20);
        assert_ne!(node_name(a), node_name(b));
    }

    #[tokio::test]
    async fn dir_pool_create_is_idempotent_and_cow_from_an_image() {
        if std::process::Command::new("qemu-img").arg("--version").output().is_err() {
            panic!("qemu-img is needed (scripts/install-deps.sh installs it)");
        }
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("image.qcow2");
        qemu_img::create(&image, 1 << 30).await.unwrap();
        let pool = DirPool::new(dir.path().join("volumes"));
        let id = Uuid::now_v7();
        pool.create(id, 2 << 30, &VolumeSource::Image(image.clone()), false).await.unwrap();
        pool.create(id, 2 << 30, &VolumeSource::Image(image.clone()), false).await.unwrap();
        let info = qemu_img::info(&pool.path(id), Some("qcow2")).await.unwrap();
        assert_eq!(info.virtual_size, 2 << 30);
        assert_eq!(info.backing_filename.as_deref(), Some(image.to_str().unwrap()));
        pool.grow(id, 3 << 30).await.unwrap();
        assert_eq!(qemu_img::info(&pool.path(id), Some("qcow2")).await.unwrap().virtual_size, 3 << 30);
        assert_eq!(pool.list().await.unwrap(), vec![id]);
        pool.delete(id).await.unwrap();
        pool.delete(id).await.unwrap();
        assert!(pool.list().await.unwrap().is_empty());
    }
}
