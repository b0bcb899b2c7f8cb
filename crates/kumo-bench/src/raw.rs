//! The physical limit of a launch: `qemu-system-x86_64` started by hand, with exactly the command
//! line kumod uses ([`kumo_agent::compute::qemu::command_line`]), the same image files kumod boots, its own
//! qcow2 overlay and config drive, and the accelerator kumod chose. Timed from spawn to the
//! readiness line in its serial file.
//!
//! [`RawQemu`] is a guard: dropping it kills the QEMU and removes its run directory.

use crate::kumod::Kumod;
use crate::net::RawNet;
use crate::procs;
use anyhow::{bail, Context, Result};
use kumo_agent::compute::kvm_probe::{Accel, READY_LINE};
use kumo_agent::compute::qemu::cmdline::command_line;
use kumo_agent::compute::qemu::config_drive::config_drive_bytes;
use kumo_agent::compute::qemu::{RunDir, QEMU_BINARY};
use kumo_agent::storage::qemu_img;
use kumo_agent::{BootSpec, InstanceSpec, NicSpec};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// What a raw boot needs to be identical to a kumod boot.
#[derive(Debug, Clone)]
pub struct RawSetup {
    pub accel: Accel,
    pub image_disk: PathBuf,
    pub boot: BootSpec,
    pub vcpus: i64,
    pub memory_mib: i64,
    pub disk_gib: i64,
    /// Parent of the raw run directories.
    pub root: PathBuf,
    /// The raw guests' network, as users get one (a tap on a bridge, DHCP); None: no NIC.
    pub net: Option<Arc<RawNet>>,
}

impl RawSetup {
    /// The files of `image` as kumod registered them from `image_cache` (its own copy, in its data
    /// directory), the accelerator it reports, and the plan (vCPUs, memory, disk) kumod gives an
    /// instance of `instance_type` and that image (the disk at least the image's minimum).
    pub async fn like(
        kumod: &Kumod,
        root: &Path,
        image_cache: &Path,
        image_name: &str,
        instance_type: &str,
    ) -> Result<RawSetup> {
        let host = kumod.host().await?;
        let accel = match host["accelerator"].as_str() {
            Some("kvm") => Accel::Kvm,
            Some("tcg") => Accel::Tcg,
            other => bail!("kumod reports accelerator {other:?}; the raw baseline needs kvm or tcg"),
        };
        let image = kumod.api.get(&format!("/v1/images/{image_name}")).await?;
        let id = image["id"].as_str().context("image without id")?;
        let dir = kumod.data_dir.join("images").join(id);
        let manifest_path = image_cache.join(image_name).join("manifest.json");
        let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest_path)?)
            .with_context(|| format!("parse {}", manifest_path.display()))?;
        let field = |k: &str| manifest[k].as_str().map(|f| dir.join(f));
        let boot = match field("kernel") {
            Some(kernel) => BootSpec::Kernel {
                kernel,
                initrd: field("initrd"),
                cmdline: manifest["cmdline"].as_str().unwrap_or_default().to_string(),
            },
            None => BootSpec::Disk,
        };
        let plan = kumod.api.get(&format!("/v1/instance-types/{instance_type}")).await?;
        let num = |k: &str| plan[k].as_i64().with_context(|| format!("instance type view without {k}"));
        let min_disk_gib = image["os_facts"]["min_disk_gib"].as_i64().unwrap_or(0);
        let setup = RawSetup {
            accel,
            image_disk: field("disk").context("manifest without disk")?,
            boot,
            vcpus: num("vcpus")?,
            memory_mib: num("memory_mib")?,
            disk_gib: num("disk_gib")?.max(min_disk_gib),
            root: root.to_path_buf(),
            net: None,
        };
        for f in [Some(&setup.image_disk), setup.kernel()].into_iter().flatten() {
            if !f.exists() {
                bail!("kumod's copy of the image has no {}", f.display());
            }
        }
        Ok(setup)
    }

    fn kernel(&self) -> Option<&PathBuf> {
        match &self.boot {
            BootSpec::Kernel { kernel, .. } => Some(kernel),
            BootSpec::Disk => None,
        }
    }

    /// Makes a run directory with an overlay and a config drive, as kumod's provisioning does
    /// (not timed: the raw figure is QEMU alone). With a [`RawSetup::net`] the guest gets a NIC on
    /// a new tap of it; no SSH key.
    pub async fn prepare(&self, name: &str) -> Result<Prepared> {
        let nics = match &self.net {
            Some(net) => vec![net.add_tap()?],
            None => Vec::new(),
        };
        self.prepare_with(name, Vec::new(), nics).await
    }

    /// [`RawSetup::prepare`] with SSH keys on the config drive and the given NICs (their taps
    /// must exist in [`RawSetup::net`]'s namespace, where QEMU is started).
    pub async fn prepare_with(&self, name: &str, ssh_keys: Vec<String>, nics: Vec<NicSpec>) -> Result<Prepared> {
        let id = Uuid::new_v4();
        let spec = InstanceSpec {
            id,
            name: name.to_string(),
            vcpus: self.vcpus,
            memory_mib: self.memory_mib,
            disk_gib: self.disk_gib,
            image_disk: self.image_disk.clone(),
            boot: self.boot.clone(),
            user_data: None,
            ssh_keys,
            volumes: vec![],
            nics,
        };
        let run = RunDir::new(&self.root, id);
        std::fs::create_dir_all(&run.dir)?;
        let image = qemu_img::info(&self.image_disk, Some("qcow2")).await?;
        let size = (self.disk_gib as u64 * (1 << 30)).max(image.virtual_size);
        qemu_img::create_overlay(&self.image_disk, &run.disk(), size).await?;
        std::fs::write(run.config_drive(), config_drive_bytes(&spec)?)?;
        Ok(Prepared { spec, run, accel: self.accel, netns: self.net.as_ref().map(|n| n.ns.0.clone()) })
    }
}

/// A run directory ready to boot.
pub struct Prepared {
    spec: InstanceSpec,
    run: RunDir,
    accel: Accel,
    netns: Option<String>,
}

impl Prepared {
    /// Starts QEMU with kumod's command line, in the raw network's namespace if there is one
    /// (through `ip netns exec`, which enters it and execs QEMU: the pid is QEMU's).
    pub fn spawn(self) -> Result<RawQemu> {
        let log = std::fs::File::create(self.run.qemu_log())?;
        let log2 = log.try_clone()?;
        let args = command_line(&self.spec, &self.run, self.accel);
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, QEMU_BINARY]);
                c
            }
            None => Command::new(QEMU_BINARY),
        };
        let spawned = Instant::now();
        let child = cmd
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0)
            .spawn()
            .with_context(|| format!("run {QEMU_BINARY}"))?;
        Ok(RawQemu { child, spawned, run: self.run, memory_mib: self.spec.memory_mib, serial_seen: 0, ready: None })
    }
}

/// A raw QEMU (see the module docs).
pub struct RawQemu {
    child: Child,
    spawned: Instant,
    run: RunDir,
    pub memory_mib: i64,
    serial_seen: u64,
    /// Spawn → readiness line, once seen.
    pub ready: Option<Duration>,
}

impl RawQemu {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// When QEMU was spawned.
    pub fn spawned(&self) -> Instant {
        self.spawned
    }

    /// Why QEMU is no longer running (its exit status and log), or None while it runs.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!("{status}: {}", procs::tail(&self.run.qemu_log(), 2000))),
            Ok(None) => None,
            Err(e) => Some(format!("cannot wait for it: {e}")),
        }
    }

    /// The last `bytes` of the guest's serial console.
    pub fn serial_tail(&self, bytes: usize) -> String {
        procs::tail(&self.run.serial(), bytes)
    }

    /// Looks at the serial file once; records and returns the boot time when the line is there.
    pub fn poll_ready(&mut self) -> Result<Option<Duration>> {
        if self.ready.is_some() {
            return Ok(self.ready);
        }
        // Only what is new since the last look, plus enough overlap for a line split across reads.
        let from = self.serial_seen.saturating_sub(READY_LINE.len() as u64);
        let (bytes, next) = kumo_agent::compute::qemu::read_from(&self.run.serial(), from, 1 << 20)?;
        self.serial_seen = next;
        if String::from_utf8_lossy(&bytes).contains(READY_LINE) {
            self.ready = Some(self.spawned.elapsed());
            return Ok(self.ready);
        }
        if let Some(status) = self.child.try_wait()? {
            bail!("raw QEMU exited before the guest was ready ({status}): {}", procs::tail(&self.run.qemu_log(), 2000));
        }
        Ok(None)
    }

    /// Polls every `every` until the guest is ready.
    pub async fn wait_ready(&mut self, every: Duration, timeout: Duration) -> Result<Duration> {
        let mut tick = crate::ticker(every);
        loop {
            tick.tick().await;
            if let Some(d) = self.poll_ready()? {
                return Ok(d);
            }
            if self.spawned.elapsed() > timeout {
                bail!(
                    "raw guest not ready within {timeout:?}; serial tail:\n{}",
                    procs::tail(&self.run.serial(), 2000)
                );
            }
        }
    }
}

impl Drop for RawQemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.run.dir);
    }
}
