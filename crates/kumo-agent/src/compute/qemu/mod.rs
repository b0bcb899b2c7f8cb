//! The QEMU driver: one QEMU process per instance.
//!
//! Each instance has a run directory `<data-dir>/instances/<id>/` holding everything of it on this
//! host, so "leak nothing" is "remove that directory once the process is gone":
//!
//! | file          | what                                                                  |
//! |---------------|-----------------------------------------------------------------------|
//! | `disk.qcow2`  | root disk: a qcow2 overlay backed by the image (O(1) to create)       |
//! | `config.img`  | config drive: a raw disk holding a tar of `meta-data.json`, `user-data` |
//! | `qemu.pid`    | QEMU's pidfile (QEMU locks it, so a second QEMU for the id cannot start) |
//! | `qmp.sock`    | QMP control socket                                                    |
//! | `serial.log`  | the serial console, appended across boots, trimmed to its cap (see [`crate::compute::serial_log`]) |
//! | `serial.log.discarded` | bytes trimmed from the front of `serial.log` so far           |
//! | `qemu.log`    | QEMU's own stdout/stderr of the last start                            |
//!
//! QEMU runs in its own process group, so signals aimed at `kumod` (Ctrl-C, SIGKILL of kumod)
//! do not reach guests; a restarted `kumod` finds them again through the pidfile and QMP.

use crate::compute::cgroup::{Cgroups, GuestLimits};
use crate::compute::confine::{self, Identity};
use crate::compute::{kvm_probe::Accel, proc, qmp};
use crate::storage::pool::{self as storage, DirPool, StoragePool};
use crate::storage::qemu_img;
use crate::{
    AgentError, BootSpec, GuestStatus, HostInfo, Hypervisor, InstanceSample, InstanceSpec, IoLimits, Result, VolumeDisk,
};
use async_trait::async_trait;
use std::ffi::OsString;
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

/// The QEMU command line for an instance. The benchmark starts "raw" QEMU with exactly this, so
/// the comparison is like for like.
pub fn command_line(spec: &InstanceSpec, run: &RunDir, accel: Accel) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |s: &str| a.push(OsString::from(s));
    push("-name");
    push(&format!("kumo-{},debug-threads=off", spec.id));
    push("-uuid");
    push(&spec.id.to_string());
    push("-accel");
    match accel {
        // TCG's translation cache is anonymous memory that grows up to its size (QEMU's default
        // is 1 GiB): bound it, so the guest's cgroup limit (cgroup::TCG_CACHE_MIB) holds it.
        Accel::Tcg => push(&format!("tcg,tb-size={}", crate::compute::cgroup::TCG_CACHE_MIB)),
        Accel::Kvm => push(accel.as_str()),
    }
    push("-m");
    push(&spec.memory_mib.to_string());
    push("-smp");
    push(&spec.vcpus.to_string());
    push("-nodefaults");
    push("-no-user-config");
    push("-display");
    push("none");
    push("-chardev");
    push(&format!("file,id=serial0,path={},append=on", run.serial().display()));
    push("-serial");
    push("chardev:serial0");
    push("-qmp");
    push(&format!("unix:{},server=on,wait=off", run.qmp().display()));
    push("-pidfile");
    push(&run.pidfile().display().to_string());
    push("-drive");
    push(&format!(
        "file={},id={ROOT_DRIVE},if=virtio,format=qcow2,cache=writeback,discard=unmap",
        run.disk().display()
    ));
    push("-drive");
    push(&format!("file={},if=virtio,format=raw,readonly=on", run.config_drive().display()));
    if spec.nics.is_empty() {
        push("-nic");
        push("none");
    }
    for (i, nic) in spec.nics.iter().enumerate() {
        // The tap exists already (the host data plane made it, on the VPC's bridge).
        push("-netdev");
        push(&format!("tap,id=net{i},ifname={},script=no,downscript=no", crate::network::tap_name(&nic.mac)));
        push("-device");
        push(&format!("virtio-net-pci,netdev=net{i},mac={}", nic.mac));
    }
    if let BootSpec::Kernel { kernel, initrd, cmdline } = &spec.boot {
        push("-kernel");
        push(&kernel.display().to_string());
        if let Some(initrd) = initrd {
            push("-initrd");
            push(&initrd.display().to_string());
        }
        push("-append");
        push(cmdline);
    }
    a
}

/// The root disk's drive id: its block backend's name, which QMP's `block_set_io_throttle` takes.
pub const ROOT_DRIVE: &str = "kumo-root";

/// QEMU's own confinement: its seccomp sandbox, and the unprivileged user it switches to once it
/// has opened its files (disks, taps, sockets, serial log), so those stay owned by root and
/// closed to that user. The sandbox denies obsolete system calls, spawning processes and
/// changing scheduling/resource limits. With `-runas` it must allow set*uid: QEMU 7.2 installs
/// the filter before it drops privileges, so `elevateprivileges=deny` kills it with SIGSYS at the
/// drop; once dropped, the user has no capabilities and `no_new_privs` is set (by the sandbox),
/// so it cannot regain any. Without a user (kumod not root) set*uid is denied as well.
pub fn confinement_args(user: Option<&str>) -> Vec<OsString> {
    let elevate = if user.is_some() { "allow" } else { "deny" };
    let mut a: Vec<OsString> = vec![
        "-sandbox".into(),
        format!("on,obsolete=deny,elevateprivileges={elevate},spawn=deny,resourcecontrol=deny").into(),
    ];
    if let Some(u) = user {
        a.push("-runas".into());
        a.push(u.into());
    }
    a
}

/// The root disk's I/O limits for a guest of `vcpus`, from the per-vCPU allowance (0 or None:
/// unlimited).
pub fn root_disk_limits(per_vcpu: IoLimits, vcpus: i64) -> IoLimits {
    let scale = |v: Option<u64>| v.filter(|v| *v > 0).map(|v| v.saturating_mul(vcpus.max(1) as u64));
    IoLimits { iops: scale(per_vcpu.iops), bytes_per_sec: scale(per_vcpu.bytes_per_sec) }
}

/// Sets the root disk's I/O throttling through QMP (the same command as volumes').
async fn throttle_root(qmp_path: &Path, limits: IoLimits) -> Result<()> {
    let args = serde_json::json!({
        "device": ROOT_DRIVE,
        "bps": limits.bytes_per_sec.unwrap_or(0), "bps_rd": 0, "bps_wr": 0,
        "iops": limits.iops.unwrap_or(0), "iops_rd": 0, "iops_wr": 0,
    });
    qmp::execute(qmp_path, qmp::BlockSetIoThrottle(args)).await.map(|_| ())
}

/// First PCI slot of cold-attached volumes. `-device`s are realised before `-drive if=virtio`
/// disks, so without fixed slots a volume would take a lower slot than the root disk and the guest
/// would name it vda. Slots from 0x10 leave the low ones to the root disk, the config drive and
/// NICs (auto-assigned, lowest free first), so the guest sees volumes as vdc, vdd, … in order.
const VOLUME_FIRST_SLOT: usize = 0x10;

/// The command-line arguments that give the guest its volumes, in order: a `-blockdev` opening
/// each (described by the pool) and a virtio-blk device on it, with the ids hot-plug uses, so a
/// cold-attached volume can be hot-unplugged like a hot-plugged one.
pub fn volume_args(pool: &dyn StoragePool, volumes: &[VolumeDisk]) -> Vec<OsString> {
    let mut a = Vec::new();
    for (i, v) in volumes.iter().map(|d| &d.id).enumerate() {
        let node = storage::node_name(*v);
        a.push(OsString::from("-blockdev"));
        a.push(OsString::from(pool.blockdev(*v, &node).to_string()));
        a.push(OsString::from("-device"));
        a.push(OsString::from(format!(
            "virtio-blk-pci,drive={node},id={},serial={},addr={:#x}",
            storage::device_id(*v),
            storage::disk_serial(*v),
            VOLUME_FIRST_SLOT + i
        )));
    }
    a
}

/// Sets a volume's device's I/O throttling (0 = unlimited) through QMP.
async fn throttle(qmp_path: &Path, volume: Uuid, limits: IoLimits) -> Result<()> {
    // The throttle belongs to the device's (anonymous) block backend, named by its QOM path.
    let args = serde_json::json!({
        "id": format!("/machine/peripheral/{}/virtio-backend", storage::device_id(volume)),
        "bps": limits.bytes_per_sec.unwrap_or(0), "bps_rd": 0, "bps_wr": 0,
        "iops": limits.iops.unwrap_or(0), "iops_rd": 0, "iops_wr": 0,
    });
    qmp::execute(qmp_path, qmp::BlockSetIoThrottle(args)).await.map(|_| ())
}

/// The config drive: a raw disk whose content is a tar archive of `meta-data.json` and, when
/// given, `user-data`. The tiny image's init extracts it with `tar -xf /dev/vdb`.
pub fn config_drive_bytes(spec: &InstanceSpec) -> std::io::Result<Vec<u8>> {
    let meta = serde_json::json!({
        "instance_id": spec.id.to_string(),
        "name": spec.name,
        "hostname": spec.name,
    });
    let mut builder = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| -> std::io::Result<()> {
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, data)
    };
    add("meta-data.json", meta.to_string().as_bytes())?;
    if let Some(ud) = &spec.user_data {
        add("user-data", ud.as_bytes())?;
    }
    let mut bytes = builder.into_inner()?;
    // Whole sectors, and some zero padding so the guest sees a sane small disk.
    let len = bytes.len().div_ceil(64 * 1024) * 64 * 1024;
    bytes.resize(len, 0);
    Ok(bytes)
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
        let Some(pid) = self.live_pid(id) else { return Ok(None) };
        let Some((cpu_ns, memory_bytes)) = proc::cpu_and_rss(pid) else { return Ok(None) };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let memory_configured_bytes = configured_memory_bytes(&cmdline).unwrap_or(0);
        let mut sample = InstanceSample { cpu_ns, memory_bytes, memory_configured_bytes, ..Default::default() };
        // The guest's taps, as the namespace QEMU runs in sees them (QEMU was started inside the
        // data plane's namespace, so /proc/<pid>/net/dev lists its taps). What the tap receives
        // the guest sent, and the other way round.
        let taps = tap_names(&cmdline);
        if !taps.is_empty() {
            let dev = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap_or_default();
            for (name, c) in parse_net_dev(&dev) {
                if taps.contains(&name) {
                    sample.net_tx_bytes += c.rx_bytes;
                    sample.net_tx_packets += c.rx_packets;
                    sample.net_rx_bytes += c.tx_bytes;
                    sample.net_rx_packets += c.tx_packets;
                }
            }
        }
        // Every disk of the guest (root disk, config drive, volumes).
        for dev in qmp::execute(&self.run_dir(id).qmp(), qmp::QueryBlockstats {}).await? {
            sample.disk_read_bytes += dev.stats.rd_bytes;
            sample.disk_write_bytes += dev.stats.wr_bytes;
            sample.disk_read_ops += dev.stats.rd_operations;
            sample.disk_write_ops += dev.stats.wr_operations;
        }
        Ok(Some(sample))
    }

    fn pool(&self) -> &dyn StoragePool {
        self.pool.as_ref()
    }

    async fn attach_volume(&self, id: Uuid, disk: &VolumeDisk) -> Result<()> {
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

    async fn set_volume_limits(&self, id: Uuid, volume: Uuid, limits: IoLimits) -> Result<()> {
        if self.live_pid(id).is_none() {
            return Ok(());
        }
        let qmp_path = self.run_dir(id).qmp();
        if !qmp::device_ids(&qmp_path).await?.contains(&storage::device_id(volume)) {
            return Ok(());
        }
        throttle(&qmp_path, volume, limits).await
    }

    async fn detach_volume(&self, id: Uuid, volume: Uuid, deadline: Duration) -> Result<()> {
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

    async fn grow_volume(&self, instance: Option<Uuid>, volume: Uuid, size_bytes: u64) -> Result<()> {
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

    async fn export_root_disk(&self, id: Uuid, dst: &Path) -> Result<()> {
        if self.live_pid(id).is_some() {
            return Err(AgentError::Hypervisor("the instance is running; stop it first".into()));
        }
        Ok(qemu_img::convert_to_qcow2(&self.run_dir(id).disk(), "qcow2", dst).await?)
    }

    async fn snapshot_volume(&self, instance: Option<Uuid>, volume: Uuid, snapshot: Uuid) -> Result<()> {
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

/// The guest memory (`-m <MiB>`) of a QEMU command line (NUL-separated, as in /proc/<pid>/cmdline).
pub fn configured_memory_bytes(cmdline: &[u8]) -> Option<u64> {
    let mut args = cmdline.split(|b| *b == 0);
    while let Some(a) = args.next() {
        if a == b"-m" {
            let v = std::str::from_utf8(args.next()?).ok()?;
            // `-m 256`, `-m 256M` or `-m size=256M`
            let v = v.trim_start_matches("size=").trim_end_matches(['M', 'm']);
            return v.parse::<u64>().ok().map(|mib| mib << 20);
        }
    }
    None
}

/// The taps of a QEMU command line (`-netdev tap,…,ifname=<tap>,…`; NUL-separated, as in
/// /proc/<pid>/cmdline).
pub fn tap_names(cmdline: &[u8]) -> Vec<String> {
    let mut args = cmdline.split(|b| *b == 0);
    let mut out = Vec::new();
    while let Some(a) = args.next() {
        if a == b"-netdev" {
            let Some(v) = args.next().and_then(|v| std::str::from_utf8(v).ok()) else { break };
            if v.starts_with("tap,") {
                out.extend(v.split(',').filter_map(|kv| kv.strip_prefix("ifname=")).map(String::from));
            }
        }
    }
    out
}

/// Counters of one network device, as the host sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetDevCounters {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
}

/// Parses /proc/net/dev: `name: rx_bytes rx_packets errs drop fifo frame compressed multicast
/// tx_bytes tx_packets …` after two header lines.
pub fn parse_net_dev(text: &str) -> Vec<(String, NetDevCounters)> {
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let n: Vec<u64> = rest.split_whitespace().map(|f| f.parse().unwrap_or(0)).collect();
            (n.len() >= 10).then(|| {
                let c = NetDevCounters { rx_bytes: n[0], rx_packets: n[1], tx_bytes: n[8], tx_packets: n[9] };
                (name.trim().to_string(), c)
            })
        })
        .collect()
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

    fn spec(user_data: Option<&str>) -> InstanceSpec {
        InstanceSpec {
            id: Uuid::nil(),
            name: "web1".into(),
            vcpus: 2,
            memory_mib: 256,
            disk_gib: 1,
            image_disk: "/images/tiny/disk.qcow2".into(),
            boot: BootSpec::Kernel { kernel: "/k".into(), initrd: Some("/i".into()), cmdline: "console=ttyS0".into() },
            user_data: user_data.map(String::from),
            volumes: vec![],
            nics: Vec::new(),
        }
    }

    #[test]
    fn config_drive_is_a_tar_with_user_data() {
        let bytes = config_drive_bytes(&spec(Some("echo hi"))).unwrap();
        assert_eq!(bytes.len() % 512, 0);
        let mut ar = tar::Archive::new(&bytes[..]);
        let mut names = Vec::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut body = String::new();
            e.read_to_string(&mut body).unwrap();
            if name == "user-data" {
                assert_eq!(body, "echo hi");
            }
            names.push(name);
        }
        assert_eq!(names, ["meta-data.json", "user-data"]);
    }

    #[test]
    fn command_line_has_the_essentials() {
        let run = RunDir::new(Path::new("/d/instances"), Uuid::nil());
        let args: Vec<String> =
            command_line(&spec(None), &run, Accel::Tcg).iter().map(|a| a.to_string_lossy().into_owned()).collect();
        let joined = args.join(" ");
        for needle in
            ["-accel tcg", "-m 256", "-smp 2", "-pidfile /d/instances/", "-kernel /k", "-initrd /i", "append=on"]
        {
            assert!(joined.contains(needle), "missing {needle} in {joined}");
        }
    }

    #[test]
    fn guests_are_sandboxed_and_drop_to_the_unprivileged_user() {
        let strs = |v: Vec<OsString>| v.into_iter().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>();
        assert_eq!(
            strs(confinement_args(Some("kumo-qemu"))),
            [
                "-sandbox",
                "on,obsolete=deny,elevateprivileges=allow,spawn=deny,resourcecontrol=deny",
                "-runas",
                "kumo-qemu"
            ]
        );
        // Staying root: nothing needs set*uid, so it is denied too.
        assert_eq!(
            strs(confinement_args(None)),
            ["-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"]
        );
    }

    #[test]
    fn the_root_disk_is_named_and_limited_by_the_type() {
        let run = RunDir::new(Path::new("/d/instances"), Uuid::nil());
        let joined: String = command_line(&spec(None), &run, Accel::Tcg)
            .iter()
            .map(|a| a.to_string_lossy().into_owned() + " ")
            .collect();
        assert!(joined.contains(&format!("disk.qcow2,id={ROOT_DRIVE},if=virtio")), "{joined}");
        let per_vcpu = IoLimits { iops: Some(2000), bytes_per_sec: Some(100 << 20) };
        assert_eq!(root_disk_limits(per_vcpu, 4), IoLimits { iops: Some(8000), bytes_per_sec: Some(400 << 20) });
        assert_eq!(root_disk_limits(IoLimits { iops: Some(0), bytes_per_sec: None }, 4), IoLimits::default());
    }

    #[test]
    fn volumes_come_after_the_root_disk_in_fixed_slots() {
        let pool = DirPool::new("/d/volumes".into());
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let disks = [a, b].map(|id| VolumeDisk { id, limits: IoLimits::default() });
        let args: Vec<String> = volume_args(&pool, &disks).iter().map(|s| s.to_string_lossy().into_owned()).collect();
        assert_eq!(args.len(), 8);
        assert_eq!(args[0], "-blockdev");
        let blockdev: serde_json::Value = serde_json::from_str(&args[1]).unwrap();
        assert_eq!(blockdev["file"]["filename"], format!("/d/volumes/{a}.qcow2"));
        assert_eq!(blockdev["node-name"], storage::node_name(a));
        assert!(args[3].contains(&format!("id={}", storage::device_id(a))) && args[3].ends_with("addr=0x10"));
        assert!(args[7].ends_with("addr=0x11"), "{}", args[7]);
    }

    #[test]
    fn configured_memory_from_the_command_line() {
        assert_eq!(configured_memory_bytes(b"qemu\0-name\0x\0-m\x00256\0-smp\x001\0"), Some(256 << 20));
        assert_eq!(configured_memory_bytes(b"qemu\0-m\0size=512M\0"), Some(512 << 20));
        assert_eq!(configured_memory_bytes(b"qemu\0-smp\x001\0"), None);
    }

    #[test]
    fn taps_of_the_command_line_and_their_counters() {
        let mut spec = spec(None);
        spec.nics = vec![crate::NicSpec { mac: "52:54:0a:1b:2c:3d".into() }];
        let run = RunDir::new(Path::new("/d"), spec.id);
        let cmdline: Vec<u8> = command_line(&spec, &run, Accel::Tcg)
            .iter()
            .flat_map(|a| a.as_encoded_bytes().iter().copied().chain([0]))
            .collect();
        assert_eq!(tap_names(&cmdline), ["kt0a1b2c3d"]);
        assert!(tap_names(b"qemu\0-netdev\0user,id=n0\0").is_empty());

        let dev = "Inter-|   Receive                                                |  Transmit\n \
             face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n\
                lo:     100       2    0    0    0     0          0         0      100       2    0    0    0     0       0          0\n\
            kt0a1b2c3d: 5000      40    0    0    0     0          0         0    70000      55    0    0    0     0       0          0\n";
        let parsed = parse_net_dev(dev);
        assert_eq!(parsed.len(), 2);
        assert_eq!(
            parsed[1],
            (
                "kt0a1b2c3d".to_string(),
                NetDevCounters { rx_bytes: 5000, rx_packets: 40, tx_bytes: 70000, tx_packets: 55 }
            )
        );
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
