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
//! | `serial.log`  | the serial console, appended across boots                             |
//! | `qemu.log`    | QEMU's own stdout/stderr of the last start                            |
//!
//! QEMU runs in its own process group, so signals aimed at `kumod` (Ctrl-C, SIGKILL of kumod)
//! do not reach guests; a restarted `kumod` finds them again through the pidfile and QMP.

use crate::{
    kvm_probe::Accel, proc, qemu_img, qmp, AgentError, BootSpec, GuestStatus, HostInfo, Hypervisor, InstanceSample,
    InstanceSpec, Result,
};
use async_trait::async_trait;
use std::ffi::OsString;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Stdio;
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
    push(accel.as_str());
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
    push(&format!("file={},if=virtio,format=qcow2,cache=writeback,discard=unmap", run.disk().display()));
    push("-drive");
    push(&format!("file={},if=virtio,format=raw,readonly=on", run.config_drive().display()));
    if spec.nics.is_empty() {
        push("-nic");
        push("none");
    }
    for (i, nic) in spec.nics.iter().enumerate() {
        // The tap exists already (the host data plane made it, on the VPC's bridge).
        push("-netdev");
        push(&format!("tap,id=net{i},ifname={},script=no,downscript=no", nic.tap));
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
    /// The network namespace guests' taps live in (`kumod --host-netns`); QEMU is started in it.
    netns: Option<String>,
}

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
        QemuDriver { instances_dir, accel, accel_reason, info, netns: None }
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
        let args = command_line(spec, &run, self.accel);
        tracing::info!(instance = %spec.id, accel = self.accel.as_str(), "starting QEMU: {} {}", QEMU_BINARY,
            args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" "));
        let mut cmd = tokio::process::Command::new(QEMU_BINARY);
        // Held open until QEMU is spawned (its child setns()es into it before exec).
        let mut _netns_fd = None;
        if let Some(ns) = &self.netns {
            let fd = crate::net::netns::open(ns).map_err(|e| AgentError::io(format!("open netns {ns}"), e))?;
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
                AgentError::Hypervisor(format!(
                    "could not run {QEMU_BINARY}: {e} (scripts/install-deps.sh installs it)"
                ))
            })?;
        let until = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
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
                return Err(AgentError::Hypervisor(format!(
                    "QEMU did not come up within {}s: {}",
                    START_TIMEOUT.as_secs(),
                    Self::tail_of(&run.qemu_log(), 2000)
                )));
            }
            tokio::time::sleep(POLL).await;
        }
        // Reap the process when it ends, so it never lingers as a zombie of kumod.
        tokio::spawn(async move {
            let _ = child.wait().await;
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

    async fn serial(&self, id: Uuid, offset: u64, max: usize) -> Result<(Vec<u8>, u64)> {
        let path = self.run_dir(id).serial();
        tokio::task::spawn_blocking(move || read_from(&path, offset, max))
            .await
            .map_err(|e| AgentError::Hypervisor(e.to_string()))?
    }

    async fn sample(&self, id: Uuid) -> Result<Option<InstanceSample>> {
        let Some(pid) = self.live_pid(id) else { return Ok(None) };
        let Some((cpu_ns, memory_bytes)) = proc::cpu_and_rss(pid) else { return Ok(None) };
        let memory_configured_bytes =
            std::fs::read(format!("/proc/{pid}/cmdline")).ok().and_then(|c| configured_memory_bytes(&c)).unwrap_or(0);
        let mut sample = InstanceSample { cpu_ns, memory_bytes, memory_configured_bytes, ..Default::default() };
        // Every disk of the guest (root disk and config drive). No NICs yet: network stays 0.
        for dev in qmp::execute(&self.run_dir(id).qmp(), qmp::QueryBlockstats {}).await? {
            sample.disk_read_bytes += dev.stats.rd_bytes;
            sample.disk_write_bytes += dev.stats.wr_bytes;
            sample.disk_read_ops += dev.stats.rd_operations;
            sample.disk_write_ops += dev.stats.wr_operations;
        }
        Ok(Some(sample))
    }

    async fn list(&self) -> Result<Vec<Uuid>> {
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
    fn configured_memory_from_the_command_line() {
        assert_eq!(configured_memory_bytes(b"qemu\0-name\0x\0-m\x00256\0-smp\x001\0"), Some(256 << 20));
        assert_eq!(configured_memory_bytes(b"qemu\0-m\0size=512M\0"), Some(512 << 20));
        assert_eq!(configured_memory_bytes(b"qemu\0-smp\x001\0"), None);
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
