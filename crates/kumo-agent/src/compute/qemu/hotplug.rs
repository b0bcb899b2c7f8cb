//! Volumes of a running guest, over QMP: hot-plug and unplug, I/O limits (the root disk's too),
//! online growth and online snapshots. Each is a no-op, or falls back to the pool, when the guest
//! does not run; see the [`Hypervisor`](crate::Hypervisor) methods they implement.

use super::cmdline::ROOT_DRIVE;
use super::{QemuDriver, POLL};
use crate::compute::qmp;
use crate::storage::pool as storage;
use crate::storage::qemu_img;
use crate::{AgentError, IoLimits, Result, VolumeDisk};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Sets the root disk's I/O throttling through QMP (the same command as volumes').
pub(super) async fn throttle_root(qmp_path: &Path, limits: IoLimits) -> Result<()> {
    let args = serde_json::json!({
        "device": ROOT_DRIVE,
        "bps": limits.bytes_per_sec.unwrap_or(0), "bps_rd": 0, "bps_wr": 0,
        "iops": limits.iops.unwrap_or(0), "iops_rd": 0, "iops_wr": 0,
    });
    qmp::execute(qmp_path, qmp::BlockSetIoThrottle(args)).await.map(|_| ())
}

/// Sets a volume's device's I/O throttling (0 = unlimited) through QMP.
pub(super) async fn throttle(qmp_path: &Path, volume: Uuid, limits: IoLimits) -> Result<()> {
    // The throttle belongs to the device's (anonymous) block backend, named by its QOM path.
    let args = serde_json::json!({
        "id": format!("/machine/peripheral/{}/virtio-backend", storage::device_id(volume)),
        "bps": limits.bytes_per_sec.unwrap_or(0), "bps_rd": 0, "bps_wr": 0,
        "iops": limits.iops.unwrap_or(0), "iops_rd": 0, "iops_wr": 0,
    });
    qmp::execute(qmp_path, qmp::BlockSetIoThrottle(args)).await.map(|_| ())
}

impl QemuDriver {
    /// `blockdev-add` of a disk described by `options` (a qcow2 on a file). QEMU running as root
    /// opens the file (and its backing chain) itself. An unprivileged QEMU cannot: kumod opens
    /// every file of the chain, hands the descriptors over (`add-fd`, one fd set per file; the
    /// top also read-write) and names the nodes `/dev/fdset/N`, the chain spelled out so that
    /// QEMU opens no path from an image header. `with_backing` false: `options` says
    /// `"backing": null` (a new top whose backing is linked in later).
    async fn blockdev_add(&self, qmp_path: &Path, mut options: serde_json::Value, with_backing: bool) -> Result<()> {
        let top = options.get("file").and_then(|f| f.get("filename")).and_then(|f| f.as_str()).map(PathBuf::from);
        let (Some(_), Some(top)) = (&self.user, top) else {
            return qmp::execute(qmp_path, qmp::BlockdevAdd(options)).await.map(|_| ());
        };
        let chain = if with_backing {
            qemu_img::backing_chain_formats(&top).await?
        } else {
            vec![(top.display().to_string(), "qcow2".to_string())]
        };
        let open = |path: &str, write: bool| {
            std::fs::OpenOptions::new()
                .read(true)
                .write(write)
                .open(path)
                .map_err(|e| AgentError::io(format!("open {path} for QEMU"), e))
        };
        // (read-only fd, read-write fd for the top) per file of the chain, top first.
        let mut files = Vec::new();
        for (i, (path, _)) in chain.iter().enumerate() {
            files.push((open(path, false)?, if i == 0 { Some(open(path, true)?) } else { None }));
        }
        let formats: Vec<String> = chain.iter().map(|(_, f)| f.clone()).collect();
        let qmp_path = qmp_path.to_path_buf();
        tokio::task::spawn_blocking(move || -> Result<()> {
            use std::os::fd::AsFd;
            let mut session = qmp::Session::connect(&qmp_path)?;
            let mut sets = Vec::new();
            let mut writable = None;
            for (ro, rw) in &files {
                let (set, _) = session.add_fd(ro.as_fd(), None)?;
                if let Some(rw) = rw {
                    writable = Some((set, session.add_fd(rw.as_fd(), Some(set))?.1));
                }
                sets.push(set);
            }
            options["file"]["filename"] = format!("/dev/fdset/{}", sets[0]).into();
            if with_backing {
                let mut backing = serde_json::Value::Null;
                for (set, format) in sets.iter().zip(&formats).skip(1).rev() {
                    // Backing files are immutable (snapshot layers, images) and this QEMU gets only
                    // a read-only descriptor of them. Their lock would still conflict with the
                    // stale write lock a guest keeps on its old top after an online snapshot
                    // (the layer is that file, hard-linked), so it is not taken.
                    backing = serde_json::json!({
                        "driver": format, "read-only": true,
                        "file": {"driver": "file", "filename": format!("/dev/fdset/{set}"), "locking": "off"},
                        "backing": backing,
                    });
                }
                options["backing"] = backing;
            }
            session.execute("blockdev-add", options)?;
            // The block node has its own copy of the read-write descriptor now. The fd set's
            // copy goes: it would keep the open file description, and with it the node's write
            // lock, alive after the node reopens read-only (an online snapshot turns the top into
            // a layer, which other guests and qemu-img then open). The read-only one stays for
            // that reopen.
            if let Some((set, fd)) = writable {
                session.execute("remove-fd", serde_json::json!({"fdset-id": set, "fd": fd}))?;
            }
            Ok(())
        })
        .await
        .map_err(|e| AgentError::Qmp(format!("QMP task failed: {e}")))?
    }

    /// [`Hypervisor::attach_volume`](crate::Hypervisor::attach_volume).
    pub(super) async fn attach_live(&self, id: Uuid, disk: &VolumeDisk) -> Result<()> {
        if self.live_pid(id).is_none() {
            return Ok(());
        }
        let volume = disk.id;
        let qmp_path = self.run_dir(id).qmp();
        let (node, dev) = (storage::node_name(volume), storage::device_id(volume));
        if !qmp::node_names(&qmp_path).await?.contains(&node) {
            if let Some(secret) = self.pool.secret(volume).await? {
                let mut object = serde_json::json!({"qom-type": "secret", "id": secret.id, "format": "raw"});
                if self.user.is_some() {
                    // An unprivileged QEMU cannot read kumod's 0600 file: the key goes over QMP.
                    let key = std::fs::read_to_string(&secret.path).map_err(|e| AgentError::io("read secret", e))?;
                    object["data"] = key.into();
                } else {
                    object["file"] = secret.path.display().to_string().into();
                }
                // Already there from an earlier, interrupted attempt: fine.
                if let Err(e) = qmp::execute(&qmp_path, qmp::ObjectAdd(object)).await {
                    tracing::debug!(instance = %id, %volume, "object-add secret: {e}");
                }
            }
            self.blockdev_add(&qmp_path, self.pool.blockdev(volume, &node), true).await?;
        }
        if !qmp::device_ids(&qmp_path).await?.contains(&dev) {
            let device = serde_json::json!({
                "driver": "virtio-blk-pci", "drive": node, "id": dev, "serial": storage::disk_serial(volume),
            });
            if let Err(e) = qmp::execute(&qmp_path, qmp::DeviceAdd(device)).await {
                // Leave nothing half-plugged: the node goes with the failed device.
                let _ = qmp::execute(&qmp_path, qmp::BlockdevDel(serde_json::json!({"node-name": node}))).await;
                return Err(e);
            }
        }
        throttle(&qmp_path, volume, disk.limits).await
    }

    /// [`Hypervisor::set_volume_limits`](crate::Hypervisor::set_volume_limits).
    pub(super) async fn set_limits_live(&self, id: Uuid, volume: Uuid, limits: IoLimits) -> Result<()> {
        if self.live_pid(id).is_none() {
            return Ok(());
        }
        let qmp_path = self.run_dir(id).qmp();
        if !qmp::device_ids(&qmp_path).await?.contains(&storage::device_id(volume)) {
            return Ok(());
        }
        throttle(&qmp_path, volume, limits).await
    }

    /// [`Hypervisor::detach_volume`](crate::Hypervisor::detach_volume).
    pub(super) async fn detach_live(&self, id: Uuid, volume: Uuid, deadline: Duration) -> Result<()> {
        if self.live_pid(id).is_none() {
            return Ok(());
        }
        let qmp_path = self.run_dir(id).qmp();
        let (node, dev) = (storage::node_name(volume), storage::device_id(volume));
        if qmp::device_ids(&qmp_path).await?.contains(&dev) {
            // The guest is asked to eject the device (ACPI); QEMU removes it once the guest agrees.
            if let Err(e) = qmp::execute(&qmp_path, qmp::DeviceDel(serde_json::json!({"id": dev}))).await {
                tracing::warn!(instance = %id, %volume, "device_del: {e} (waiting for the removal anyway)");
            }
            let until = Instant::now() + deadline;
            while qmp::device_ids(&qmp_path).await?.contains(&dev) {
                if Instant::now() >= until {
                    return Err(AgentError::Hypervisor(format!(
                        "the guest did not release the disk within {}s (is it mounted or in use?);                          it stays attached",
                        deadline.as_secs()
                    )));
                }
                tokio::time::sleep(POLL).await;
            }
        }
        // The volume's nodes: the one it was opened as, and a new top per online snapshot since.
        // Tops go first (a node with an overlay on it cannot be deleted).
        for _ in 0..16 {
            let mut left: Vec<String> =
                qmp::node_names(&qmp_path).await?.into_iter().filter(|n| n.starts_with(&node)).collect();
            if left.is_empty() {
                return Ok(());
            }
            left.sort_by_key(|n| std::cmp::Reverse(n.len()));
            for n in left {
                let _ = qmp::execute(&qmp_path, qmp::BlockdevDel(serde_json::json!({"node-name": n}))).await;
            }
            if qmp::node_names(&qmp_path).await?.iter().all(|n| !n.starts_with(&node)) {
                // The key of an encrypted volume (absent for a plain one: the error is expected).
                let secret = serde_json::json!({"id": crate::storage::keys::secret_id(volume)});
                let _ = qmp::execute(&qmp_path, qmp::ObjectDel(secret)).await;
                return Ok(());
            }
        }
        Err(AgentError::Hypervisor(format!("block nodes of volume {volume} could not be removed from QEMU")))
    }

    /// [`Hypervisor::grow_volume`](crate::Hypervisor::grow_volume).
    pub(super) async fn grow_live(&self, instance: Option<Uuid>, volume: Uuid, size_bytes: u64) -> Result<()> {
        if let Some(id) = instance.filter(|id| self.live_pid(*id).is_some()) {
            let qmp_path = self.run_dir(id).qmp();
            if let Some(node) = qmp::device_node(&qmp_path, &storage::device_id(volume)).await? {
                let args = serde_json::json!({"node-name": node, "size": size_bytes});
                qmp::execute(&qmp_path, qmp::BlockResize(args)).await?;
                return Ok(());
            }
        }
        self.pool.grow(volume, size_bytes).await
    }

    /// [`Hypervisor::snapshot_volume`](crate::Hypervisor::snapshot_volume).
    pub(super) async fn snapshot_live(&self, instance: Option<Uuid>, volume: Uuid, snapshot: Uuid) -> Result<()> {
        let running = instance.filter(|id| self.live_pid(*id).is_some());
        let Some(id) = running else { return self.pool.snapshot(volume, snapshot).await };
        let qmp_path = self.run_dir(id).qmp();
        let Some(top) = qmp::device_node(&qmp_path, &storage::device_id(volume)).await? else {
            // Attached but not plugged (yet): the guest does not have it open.
            return self.pool.snapshot(volume, snapshot).await;
        };
        self.pool.snapshot(volume, snapshot).await?;
        // The guest still writes into the frozen layer; open the new top and switch to it.
        let node = format!("{}-{}", storage::node_name(volume), &snapshot.simple().to_string()[28..]);
        let mut options = self.pool.blockdev(volume, &node);
        options["backing"] = serde_json::Value::Null;
        self.blockdev_add(&qmp_path, options, false).await?;
        qmp::execute(&qmp_path, qmp::BlockdevSnapshot(serde_json::json!({"node": top, "overlay": node}))).await?;
        Ok(())
    }
}
