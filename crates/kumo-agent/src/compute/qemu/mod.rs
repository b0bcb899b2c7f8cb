//! The QEMU driver: one QEMU process per instance.
//!
//! Each instance has a run directory `<data-dir>/instances/<id>/` holding everything of it on this
//! host, so "leak nothing" is "remove that directory once the process is gone":
//!
//! | file          | what                                                                  |
//! |---------------|-----------------------------------------------------------------------|
//! | `disk.qcow2`  | root disk: a qcow2 overlay backed by the image (O(1) to create)       |
//! | `config.img`  | config drive: vfat `CONFIG-2`, OpenStack layout (see `config_drive`) |
//! | `qemu.pid`    | QEMU's pidfile (QEMU locks it, so a second QEMU for the id cannot start) |
//! | `qmp.sock`    | QMP control socket                                                    |
//! | `serial.log`  | the serial console, appended across boots, trimmed to its cap (see [`crate::compute::serial_log`]) |
//! | `serial.log.discarded` | bytes trimmed from the front of `serial.log` so far           |
//! | `qemu.log`    | QEMU's own stdout/stderr of the last start                            |
//!
//! QEMU runs in its own process group, so signals aimed at `kumod` (Ctrl-C, SIGKILL of kumod)
//! do not reach guests; a restarted `kumod` finds them again through the pidfile and QMP.
//!
//! The driver ([`QemuDriver`]: provision, start, stop, status, …) is here; its parts are
//! [`cmdline`] (the QEMU command line), [`config_drive`], [`hotplug`] (volumes of a running
//! guest over QMP: attach, detach, I/O limits, online growth and snapshots) and [`sampling`]
//! (CPU, memory, network and disk samples).

pub mod cmdline;
pub mod config_drive;
pub mod hotplug;
pub mod sampling;

use cmdline::{command_line, confinement_args, root_disk_limits, volume_args};
use config_drive::config_drive_bytes;
use hotplug::{throttle, throttle_root};

use crate::compute::cgroup::{Cgroups, GuestLimits};
use crate::compute::confine::{self, Identity};
use crate::compute::{kvm_probe::Accel, proc, qmp};
use crate::storage::pool::{DirPool, StoragePool};
use crate::storage::qemu_img;
use crate::{
    AgentError, GuestStatus, HostInfo, Hypervisor, InstanceSample, InstanceSpec, IoLimits, Result, VolumeDisk,
};
use async_trait::async_trait;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

pub const QEMU_BINARY: &str = "qemu-system-x86_64";
const START_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);
const POWERDOWN_RETRY: Duration = Duration::from_secs(3);

/// Paths of one instance's run directory.
#[derive(Debug, Clone)]
pub struct RunDir {
    pub dir: PathBuf,
}

impl RunDir {
    pub fn new(instances_dir: &Path, id: Uuid) -> RunDir {
        RunDir { dir: instances_dir.join(id.to_string()) }
    }
    pub fn disk(&self) -> PathBuf {
        self.dir.join("disk.qcow2")
    }
    pub fn config_drive(&self) -> PathBuf {
        self.dir.join("config.img")
    }
    pub fn pidfile(&self) -> PathBuf {
        self.dir.join("qemu.pid")
    }
    pub fn qmp(&self) -> PathBuf {
        self.dir.join("qmp.sock")
    }
    pub fn serial(&self) -> PathBuf {
        self.dir.join("serial.log")
    }
    pub fn qemu_log(&self) -> PathBuf {
        self.dir.join("qemu.log")
    }
}

/// Real QEMU guests.
pub struct QemuDriver {
    instances_dir: PathBuf,
    accel: Accel,
    accel_reason: String,
    info: HostInfo,
    /// Volumes: by default a [`DirPool`] in `<data-dir>/volumes` (beside `instances_dir`).
    pool: Arc<dyn StoragePool>,
    /// The network namespace guests' taps live in (`kumod --host-netns`); QEMU is started in it.
    netns: Option<String>,
    /// The unprivileged user QEMU switches to (None: it stays root).
    user: Option<Identity>,
    /// Where guests' cgroups go.
    cgroups: Cgroups,
    /// The root disk's I/O allowance per vCPU.
    root_per_vcpu: IoLimits,
}

/// Default root-disk allowance per vCPU (`kumod --root-disk-iops-per-vcpu`, `--root-disk-mib-s-per-vcpu`).
pub const ROOT_IOPS_PER_VCPU: u64 = 2000;
pub const ROOT_MIB_S_PER_VCPU: u64 = 200;

impl QemuDriver {
    /// `instances_dir` is `<data-dir>/instances`. `capacity` gives the host's schedulable totals.
    pub fn new(
        instances_dir: PathBuf,
        host_name: String,
        accel: Accel,
        accel_reason: String,
        capacity: [i64; 4],
    ) -> QemuDriver {
        let info = HostInfo {
            name: host_name,
            driver: "qemu".into(),
            accelerator: accel.as_str().into(),
            accelerator_reason: accel_reason.clone(),
            vcpus: capacity[0],
            memory_mib: capacity[1],
            disk_gib: capacity[2],
            gpus: capacity[3],
        };
        let volumes_dir = instances_dir.parent().unwrap_or(&instances_dir).join("volumes");
        let pool: Arc<dyn StoragePool> = Arc::new(DirPool::new(volumes_dir));
        let cgroups = Cgroups::detect();
        if let Cgroups::Unavailable(why) = &cgroups {
            tracing::warn!("guests run without CPU and memory limits: {why}");
        }
        QemuDriver {
            instances_dir,
            accel,
            accel_reason,
            info,
            pool,
            netns: None,
            user: confine::unprivileged(),
            cgroups,
            root_per_vcpu: IoLimits { iops: Some(ROOT_IOPS_PER_VCPU), bytes_per_sec: Some(ROOT_MIB_S_PER_VCPU << 20) },
        }
    }

    /// Runs QEMU as this user after it has opened its files (None: as kumod's user).
    pub fn with_user(mut self, user: Option<Identity>) -> QemuDriver {
        self.user = user;
        self
    }

    /// Puts guests' cgroups there (detected by default).
    pub fn with_cgroups(mut self, cgroups: Cgroups) -> QemuDriver {
        self.cgroups = cgroups;
        self
    }

    /// The root disk's I/O allowance per vCPU (None or 0: unlimited).
    pub fn with_root_disk_limits(mut self, per_vcpu: IoLimits) -> QemuDriver {
        self.root_per_vcpu = per_vcpu;
        self
    }

    /// Removes a guest's cgroup once its QEMU is gone.
    fn remove_cgroup(&self, id: Uuid) {
        if let Err(e) = self.cgroups.remove(id) {
            tracing::warn!(instance = %id, "{e}");
        }
    }

    /// Empty cgroups of guests without a run directory here (a kumod killed between QEMU's end and
    /// the removal). Only old ones: a guest being started has its cgroup before QEMU is in it.
    fn sweep_cgroups(&self) {
        for id in self.cgroups.list() {
            if self.run_dir(id).dir.exists() {
                continue;
            }
            let old = self.cgroups.dirs(id).iter().all(|d| {
                std::fs::metadata(d)
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t.elapsed().unwrap_or_default() > 2 * START_TIMEOUT)
            });
            // Removing fails (EBUSY) while processes are in it: a live guest of another kumod keeps it.
            if old && self.cgroups.remove(id).is_ok() {
                tracing::info!(instance = %id, "removed a leaked cgroup");
            }
        }
    }

    /// Uses another storage pool for volumes.
    pub fn with_pool(mut self, pool: Arc<dyn StoragePool>) -> QemuDriver {
        self.pool = pool;
        self
    }

    /// Starts QEMU inside the named network namespace (where the data plane made the taps).
    pub fn with_netns(mut self, netns: Option<String>) -> QemuDriver {
        self.netns = netns;
        self
    }

    pub fn accel(&self) -> (Accel, &str) {
        (self.accel, &self.accel_reason)
    }

    fn run_dir(&self, id: Uuid) -> RunDir {
        RunDir::new(&self.instances_dir, id)
    }

    /// The pid of the instance's live QEMU, if any.
    fn live_pid(&self, id: Uuid) -> Option<i32> {
        let run = self.run_dir(id);
        let pid = proc::read_pidfile(&run.pidfile())?;
        proc::alive_with_marker(pid, &id.to_string()).then_some(pid)
    }

    async fn wait_gone(&self, id: Uuid, deadline: Duration) -> bool {
        let until = Instant::now() + deadline;
        loop {
            if self.live_pid(id).is_none() {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn tail_of(path: &Path, max: usize) -> String {
        let s = std::fs::read_to_string(path).unwrap_or_default();
        let start = s.len().saturating_sub(max);
        s.get(start..).unwrap_or("").trim().to_string()
    }
}

#[async_trait]
impl Hypervisor for QemuDriver {
    fn host_info(&self) -> HostInfo {
        self.info.clone()
    }

    async fn provision(&self, spec: &InstanceSpec) -> Result<()> {
        let run = self.run_dir(spec.id);
        tokio::fs::create_dir_all(&run.dir)
            .await
            .map_err(|e| AgentError::io(format!("create {}", run.dir.display()), e))?;
        if !run.disk().exists() {
            let image = qemu_img::info(&spec.image_disk, Some("qcow2")).await?;
            let size = (spec.disk_gib as u64 * (1 << 30)).max(image.virtual_size);
            // Create under a temporary name and rename: a crash never leaves a half-made disk in place.
            let tmp = run.dir.join("disk.qcow2.tmp");
            let _ = tokio::fs::remove_file(&tmp).await;
            qemu_img::create_overlay(&spec.image_disk, &tmp, size).await?;
            tokio::fs::rename(&tmp, run.disk()).await.map_err(|e| AgentError::io("rename disk", e))?;
        }
        let bytes = config_drive_bytes(spec).map_err(|e| AgentError::io("build config drive", e))?;
        let tmp = run.dir.join("config.img.tmp");
        tokio::fs::write(&tmp, bytes).await.map_err(|e| AgentError::io("write config drive", e))?;
        tokio::fs::rename(&tmp, run.config_drive()).await.map_err(|e| AgentError::io("rename config drive", e))?;
        Ok(())
    }

    async fn start(&self, spec: &InstanceSpec) -> Result<()> {
        let run = self.run_dir(spec.id);
        if self.live_pid(spec.id).is_some() {
            return Ok(());
        }
        if !run.disk().exists() || !run.config_drive().exists() {
            self.provision(spec).await?;
        }
        // The plan may have grown while the instance was stopped: grow the disk to match.
        let want = spec.disk_gib as u64 * (1 << 30);
        let disk = qemu_img::info(&run.disk(), Some("qcow2")).await?;
        if disk.virtual_size < want {
            qemu_img::grow(&run.disk(), want).await?;
        }
        if run.qmp().as_os_str().len() >= 108 {
            return Err(AgentError::Hypervisor(format!(
                "QMP socket path {} is too long for a unix socket; use a shorter --data-dir",
                run.qmp().display()
            )));
        }
        let _ = std::fs::remove_file(run.qmp());
        let _ = std::fs::remove_file(run.pidfile());
        let log = std::fs::File::create(run.qemu_log()).map_err(|e| AgentError::io("create qemu.log", e))?;
        let log2 = log.try_clone().map_err(|e| AgentError::io("dup qemu.log", e))?;
        let mut args = command_line(spec, &run, self.accel);
        // Keys of encrypted volumes: transient 0600 files QEMU reads at start (removed below,
        // when `secrets` is dropped once QEMU is up).
        let mut secrets = Vec::new();
        for v in &spec.volumes {
            if let Some(s) = self.pool.secret(v.id).await? {
                args.push("-object".into());
                args.push(format!("secret,id={},file={},format=raw", s.id, s.path.display()).into());
                secrets.push(s);
            }
        }
        args.extend(volume_args(self.pool.as_ref(), &spec.volumes));
        args.extend(confinement_args(self.user.as_ref().map(|u| u.name.as_str())));
        // A fresh cgroup with the limits of the guest's type; QEMU enters it before exec.
        self.remove_cgroup(spec.id);
        let placement = self
            .cgroups
            .create(spec.id, GuestLimits::for_guest(spec.vcpus, spec.memory_mib, self.accel == Accel::Tcg))
            .map_err(|e| AgentError::io("create the guest's cgroup", e))?;
        tracing::info!(instance = %spec.id, accel = self.accel.as_str(), "starting QEMU: {} {}", QEMU_BINARY,
            args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" "));
        let mut cmd = tokio::process::Command::new(QEMU_BINARY);
        // SAFETY: Placement::enter is async-signal-safe (open/write/close, no allocation).
        unsafe {
            cmd.pre_exec(move || placement.enter());
        }
        // Held open until QEMU is spawned (its child setns()es into it before exec).
        let mut _netns_fd = None;
        if let Some(ns) = &self.netns {
            let fd = crate::network::netns::open(ns).map_err(|e| AgentError::io(format!("open netns {ns}"), e))?;
            let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
            _netns_fd = Some(fd);
            // SAFETY: setns(2) is async-signal-safe; the fd stays open until spawn returns.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setns(raw, libc::CLONE_NEWNET) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0)
            .kill_on_drop(false)
            .spawn()
            .map_err(|e| {
                self.remove_cgroup(spec.id);
                AgentError::Hypervisor(format!(
                    "could not run {QEMU_BINARY}: {e} (scripts/install-deps.sh installs it)"
                ))
            })?;
        let until = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.remove_cgroup(spec.id);
                return Err(AgentError::Hypervisor(format!(
                    "QEMU exited at start ({status}): {}",
                    Self::tail_of(&run.qemu_log(), 2000)
                )));
            }
            if run.qmp().exists() && qmp::is_running(&run.qmp()).await {
                break;
            }
            if Instant::now() >= until {
                let _ = child.start_kill();
                let _ = child.wait().await;
                self.remove_cgroup(spec.id);
                return Err(AgentError::Hypervisor(format!(
                    "QEMU did not come up within {}s: {}",
                    START_TIMEOUT.as_secs(),
                    Self::tail_of(&run.qemu_log(), 2000)
                )));
            }
            tokio::time::sleep(POLL).await;
        }
        drop(secrets);
        let root = root_disk_limits(self.root_per_vcpu, spec.vcpus);
        if let Err(e) = throttle_root(&run.qmp(), root).await {
            tracing::error!(instance = %spec.id, "root disk I/O limits not applied: {e}");
        }
        for v in spec.volumes.iter().filter(|v| !v.limits.is_unlimited()) {
            // The guest is running: failing the start here would leave its QEMU behind.
            if let Err(e) = throttle(&run.qmp(), v.id, v.limits).await {
                tracing::error!(instance = %spec.id, volume = %v.id, "I/O limits not applied: {e}");
            }
        }
        // Reap the process when it ends, so it never lingers as a zombie of kumod; its cgroup goes
        // with it.
        let (cgroups, id) = (self.cgroups.clone(), spec.id);
        tokio::spawn(async move {
            let _ = child.wait().await;
            if let Err(e) = cgroups.remove(id) {
                tracing::debug!(instance = %id, "{e}");
            }
        });
        Ok(())
    }

    async fn status(&self, id: Uuid) -> Result<GuestStatus> {
        if self.live_pid(id).is_some() {
            return Ok(GuestStatus::Running);
        }
        if self.run_dir(id).disk().exists() {
            return Ok(GuestStatus::Provisioned);
        }
        Ok(GuestStatus::Absent)
    }

    async fn stop(&self, id: Uuid, grace: Duration) -> Result<()> {
        let run = self.run_dir(id);
        if self.live_pid(id).is_some() {
            if !grace.is_zero() {
                // A guest still booting has no ACPI handler yet and drops the power-button press,
                // so press it again every few seconds until the deadline.
                let until = Instant::now() + grace;
                loop {
                    if let Err(e) = qmp::execute(&run.qmp(), qapi::qmp::system_powerdown {}).await {
                        tracing::warn!(instance = %id, "ACPI powerdown failed: {e}");
                    }
                    let left = until.saturating_duration_since(Instant::now());
                    if self.wait_gone(id, left.min(POWERDOWN_RETRY)).await {
                        break;
                    }
                    if Instant::now() >= until {
                        tracing::warn!(instance = %id, "guest did not power off within {}s; forcing", grace.as_secs());
                        break;
                    }
                }
            }
            if self.live_pid(id).is_some() {
                let _ = qmp::execute(&run.qmp(), qapi::qmp::quit {}).await;
                if !self.wait_gone(id, Duration::from_secs(3)).await {
                    if let Some(pid) = self.live_pid(id) {
                        proc::kill(pid);
                    }
                    if !self.wait_gone(id, Duration::from_secs(10)).await {
                        return Err(AgentError::Hypervisor(format!("QEMU of {id} survived SIGKILL")));
                    }
                }
            }
        }
        let _ = std::fs::remove_file(run.qmp());
        let _ = std::fs::remove_file(run.pidfile());
        self.remove_cgroup(id);
        Ok(())
    }

    async fn reboot(&self, id: Uuid) -> Result<()> {
        if self.live_pid(id).is_none() {
            return Err(AgentError::Hypervisor("the guest is not running".into()));
        }
        qmp::execute(&self.run_dir(id).qmp(), qapi::qmp::system_reset {}).await?;
        Ok(())
    }

    async fn destroy(&self, id: Uuid) -> Result<()> {
        self.stop(id, Duration::ZERO).await?;
        let run = self.run_dir(id);
        match tokio::fs::remove_dir_all(&run.dir).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(AgentError::io(format!("remove {}", run.dir.display()), e)),
        }
    }

    async fn quarantine(&self, id: Uuid, q: &crate::storage::quarantine::Quarantine) -> Result<()> {
        self.stop(id, Duration::ZERO).await?;
        let run = self.run_dir(id);
        q.put("instances", &id.to_string(), &[&run.dir])
            .map_err(|e| AgentError::io(format!("quarantine {}", run.dir.display()), e))?;
        Ok(())
    }

    async fn serial(&self, id: Uuid, offset: u64, max: usize) -> Result<crate::compute::serial_log::SerialChunk> {
        let path = self.run_dir(id).serial();
        tokio::task::spawn_blocking(move || crate::compute::serial_log::read(&path, offset, max))
            .await
            .map_err(|e| AgentError::Hypervisor(e.to_string()))?
            .map_err(|e| AgentError::io("read serial log", e))
    }

    async fn trim_serial_logs(&self, max_bytes: u64) -> Result<u64> {
        let logs: Vec<PathBuf> = self.list().await?.into_iter().map(|id| self.run_dir(id).serial()).collect();
        tokio::task::spawn_blocking(move || {
            let mut total = 0;
            for log in logs {
                total += crate::compute::serial_log::trim(&log, max_bytes)
                    .map_err(|e| AgentError::io(format!("trim {}", log.display()), e))?;
            }
            Ok(total)
        })
        .await
        .map_err(|e| AgentError::Hypervisor(e.to_string()))?
    }

    async fn sample(&self, id: Uuid) -> Result<Option<InstanceSample>> {
        self.sample_live(id).await
    }

    fn pool(&self) -> &dyn StoragePool {
        self.pool.as_ref()
    }

    async fn attach_volume(&self, id: Uuid, disk: &VolumeDisk) -> Result<()> {
        self.attach_live(id, disk).await
    }

    async fn set_volume_limits(&self, id: Uuid, volume: Uuid, limits: IoLimits) -> Result<()> {
        self.set_limits_live(id, volume, limits).await
    }

    async fn detach_volume(&self, id: Uuid, volume: Uuid, deadline: Duration) -> Result<()> {
        self.detach_live(id, volume, deadline).await
    }

    async fn grow_volume(&self, instance: Option<Uuid>, volume: Uuid, size_bytes: u64) -> Result<()> {
        self.grow_live(instance, volume, size_bytes).await
    }

    async fn export_root_disk(&self, id: Uuid, dst: &Path) -> Result<()> {
        if self.live_pid(id).is_some() {
            return Err(AgentError::Hypervisor("the instance is running; stop it first".into()));
        }
        Ok(qemu_img::convert_to_qcow2(&self.run_dir(id).disk(), "qcow2", dst).await?)
    }

    async fn snapshot_volume(&self, instance: Option<Uuid>, volume: Uuid, snapshot: Uuid) -> Result<()> {
        self.snapshot_live(instance, volume, snapshot).await
    }

    async fn import_root_disk(&self, id: Uuid, src: &Path) -> Result<()> {
        if self.live_pid(id).is_some() {
            return Err(AgentError::Hypervisor("the instance runs on this host; its disk is not replaced".into()));
        }
        let run = self.run_dir(id);
        tokio::fs::create_dir_all(&run.dir)
            .await
            .map_err(|e| AgentError::io(format!("create {}", run.dir.display()), e))?;
        // One rename: the disk is either the verified copy or not there at all.
        tokio::fs::rename(src, run.disk()).await.map_err(|e| AgentError::io("move the copied disk into place", e))
    }

    async fn list(&self) -> Result<Vec<Uuid>> {
        // The leak collector lists periodically: a good time to drop leaked empty cgroups.
        self.sweep_cgroups();
        let mut ids = Vec::new();
        let mut rd = match tokio::fs::read_dir(&self.instances_dir).await {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ids),
            Err(e) => return Err(AgentError::io("list instances dir", e)),
        };
        while let Some(entry) = rd.next_entry().await.map_err(|e| AgentError::io("list instances dir", e))? {
            if let Some(id) = entry.file_name().to_str().and_then(|s| Uuid::parse_str(s).ok()) {
                ids.push(id);
            }
        }
        Ok(ids)
    }
}

/// Reads at most `max` bytes of a file from `offset`; a missing file reads as empty.
pub fn read_from(path: &Path, offset: u64, max: usize) -> Result<(Vec<u8>, u64)> {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), offset)),
        Err(e) => return Err(AgentError::io("open serial log", e)),
    };
    f.seek(SeekFrom::Start(offset)).map_err(|e| AgentError::io("seek serial log", e))?;
    let mut buf = Vec::new();
    f.take(max as u64).read_to_end(&mut buf).map_err(|e| AgentError::io("read serial log", e))?;
    let next = offset + buf.len() as u64;
    Ok((buf, next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BootSpec;

    /// An instance spec for the tests of the driver and its parts.
    pub(super) fn spec(user_data: Option<&str>) -> InstanceSpec {
        InstanceSpec {
            id: Uuid::nil(),
            name: "web1".into(),
            vcpus: 2,
            memory_mib: 256,
            disk_gib: 1,
            image_disk: "/images/tiny/disk.qcow2".into(),
            boot: BootSpec::Kernel { kernel: "/k".into(), initrd: Some("/i".into()), cmdline: "console=ttyS0".into() },
            user_data: user_data.map(String::from),
            ssh_keys: vec!["ssh-ed25519 AAAA me@laptop".into()],
            volumes: vec![],
            nics: Vec::new(),
        }
    }

    #[test]
    fn read_from_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.log");
        std::fs::write(&p, b"hello world").unwrap();
        assert_eq!(read_from(&p, 6, 100).unwrap(), (b"world".to_vec(), 11));
        assert_eq!(read_from(&p, 0, 5).unwrap(), (b"hello".to_vec(), 5));
        assert_eq!(read_from(&dir.path().join("none"), 3, 5).unwrap(), (vec![], 3));
    }
}
