//! The Kumo host agent.
//!
//! The control plane talks to a host only through the [`Hypervisor`] trait: "make this instance's
//! disk exist", "run it", "stop it", "what is there?". Every operation is idempotent and keyed by
//! the instance id, so a reconciler that was killed half-way can simply call it again.
//!
//! Two drivers implement it:
//! - [`qemu::QemuDriver`]: real QEMU processes, one per instance, controlled over QMP, with a qcow2
//!   copy-on-write root disk backed by the image.
//! - [`sim::SimDriver`]: an in-process simulation for fast API tests and scale simulations. It is
//!   always reported as `sim` (simulated) on the host view, never passed off as a real hypervisor.
//!
//! In the all-in-one `kumod` the driver runs in the same process as the control plane; in the
//! scale-out deployment an HTTP client to a remote agent implements the same trait.

pub mod backup;
pub mod capacity;
pub mod cgroup;
pub mod confine;
pub mod fault;
pub mod keys;
pub mod kvm_probe;
pub mod net;
pub mod proc;
pub mod qemu;
pub mod qemu_img;
pub mod qmp;
pub mod quarantine;
pub mod serial_log;
pub mod sim;
pub mod storage;
pub mod tool;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;
use uuid::Uuid;

/// How the guest boots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BootSpec {
    /// Direct kernel boot.
    Kernel { kernel: PathBuf, initrd: Option<PathBuf>, cmdline: String },
    /// Firmware boot from the root disk.
    Disk,
}

/// Everything a host needs to run an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceSpec {
    pub id: Uuid,
    pub name: String,
    pub vcpus: i64,
    pub memory_mib: i64,
    pub disk_gib: i64,
    /// The image's disk; the instance's root disk is a qcow2 overlay backed by it.
    pub image_disk: PathBuf,
    pub boot: BootSpec,
    pub user_data: Option<String>,
    /// Volumes of the storage pool attached to the instance, in attach order: on the command line
    /// at start, after the root disk and the config drive (so the guest sees them as vdc, vdd, …).
    #[serde(default)]
    pub volumes: Vec<VolumeDisk>,
    /// Network interfaces: the host data plane has made their taps (see [`net`]).
    #[serde(default)]
    pub nics: Vec<NicSpec>,
}

/// A network interface of a guest: a tap on the host, with the MAC the guest sees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicSpec {
    pub tap: String,
    pub mac: String,
}

/// A volume as an instance has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeDisk {
    pub id: Uuid,
    #[serde(default)]
    pub limits: IoLimits,
}

/// I/O limits of one disk (QEMU throttling); None is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoLimits {
    /// Read + write requests per second.
    pub iops: Option<u64>,
    /// Read + write bytes per second.
    pub bytes_per_sec: Option<u64>,
}

impl IoLimits {
    pub fn is_unlimited(&self) -> bool {
        self.iops.is_none() && self.bytes_per_sec.is_none()
    }
}

/// What exists on the host for an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GuestStatus {
    /// Nothing: no disk, no process.
    Absent,
    /// The disk exists; no hypervisor process runs.
    Provisioned,
    /// The hypervisor process runs the guest.
    Running,
}

/// Cumulative counters of one running instance, as the host sees them. Counters only grow while
/// the guest's hypervisor process lives; a restart (new QEMU) starts them again from zero, which
/// the control plane detects as a counter going down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceSample {
    /// CPU time of the hypervisor process (every vCPU thread plus emulation), nanoseconds.
    pub cpu_ns: u64,
    /// Resident memory of the hypervisor process (what the guest really uses on the host), bytes.
    pub memory_bytes: u64,
    /// The guest's configured memory, bytes.
    pub memory_configured_bytes: u64,
    /// Bytes and requests the guest read from and wrote to its disks.
    pub disk_read_bytes: u64,
    pub disk_write_bytes: u64,
    pub disk_read_ops: u64,
    pub disk_write_ops: u64,
    /// Network traffic of the guest's NICs, from the guest's side (its taps' counters, reversed).
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
    pub net_rx_packets: u64,
    pub net_tx_packets: u64,
}

/// What a host says about itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostInfo {
    pub name: String,
    /// `qemu` or `sim`.
    pub driver: String,
    /// `kvm`, `tcg` or `simulated`.
    pub accelerator: String,
    pub accelerator_reason: String,
    pub vcpus: i64,
    pub memory_mib: i64,
    pub disk_gib: i64,
    pub gpus: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    Tool(#[from] tool::ToolError),
    #[error("QMP: {0}")]
    Qmp(String),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("the hypervisor failed: {0}")]
    Hypervisor(String),
    #[error("instance {0} is not on this host")]
    NotFound(Uuid),
}

impl AgentError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> AgentError {
        AgentError::Io { context: context.into(), source }
    }
}

pub type Result<T, E = AgentError> = std::result::Result<T, E>;

/// The host agent's API. See the crate docs.
#[async_trait]
pub trait Hypervisor: Send + Sync + 'static {
    /// Describes the host: driver, accelerator, capacity.
    fn host_info(&self) -> HostInfo;

    /// Makes the root disk and config drive exist. Idempotent.
    async fn provision(&self, spec: &InstanceSpec) -> Result<()>;

    /// Runs the guest if it is not running. Returns once the hypervisor runs it. Idempotent.
    async fn start(&self, spec: &InstanceSpec) -> Result<()>;

    /// What exists for the instance.
    async fn status(&self, id: Uuid) -> Result<GuestStatus>;

    /// Asks the guest to power off (ACPI) and waits up to `grace`; then forces it off. Returns once
    /// no hypervisor process runs. Idempotent.
    async fn stop(&self, id: Uuid, grace: Duration) -> Result<()>;

    /// Resets the running guest.
    async fn reboot(&self, id: Uuid) -> Result<()>;

    /// Removes everything of the instance: process, disks, run directory. Idempotent.
    async fn destroy(&self, id: Uuid) -> Result<()>;

    /// The serial console output from absolute byte `offset` (or from the oldest byte still kept,
    /// when older ones were trimmed away), at most `max` bytes.
    async fn serial(&self, id: Uuid, offset: u64, max: usize) -> Result<serial_log::SerialChunk>;

    /// Trims every instance's serial log that grew past `max_bytes` (see [`serial_log`]).
    /// Returns the bytes discarded.
    async fn trim_serial_logs(&self, max_bytes: u64) -> Result<u64>;

    /// Ids of every instance that has anything on this host (for leak collection).
    async fn list(&self) -> Result<Vec<Uuid>>;

    /// What leak collection does instead of [`Hypervisor::destroy`]: stops the guest if it runs
    /// (its hypervisor process is killed) and moves its disks aside into the quarantine, where
    /// they stay for the grace period. Idempotent.
    async fn quarantine(&self, id: Uuid, q: &quarantine::Quarantine) -> Result<()>;

    /// The instance's cumulative counters, or None when its guest is not running.
    async fn sample(&self, id: Uuid) -> Result<Option<InstanceSample>>;

    /// The storage pool holding this host's volumes.
    fn pool(&self) -> &dyn storage::StoragePool;

    /// Hot-plugs a volume into the instance's running guest (a new virtio disk). A no-op when
    /// the guest does not run (the volume is on its command line at the next start) or already
    /// has it. Idempotent.
    async fn attach_volume(&self, id: Uuid, volume: &VolumeDisk) -> Result<()>;

    /// Changes the I/O limits of a volume the running guest has (live). A no-op when the guest
    /// does not run or does not have it (the limits apply at the next start or attach).
    async fn set_volume_limits(&self, id: Uuid, volume: Uuid, limits: IoLimits) -> Result<()>;

    /// Unplugs a volume from the running guest: asks the guest to release it and waits up to
    /// `deadline`; fails (the guest keeps it) if it does not. A no-op when the guest does not run
    /// or does not have it. Idempotent.
    async fn detach_volume(&self, id: Uuid, volume: Uuid, deadline: Duration) -> Result<()>;

    /// Grows a volume: online (`block_resize`, the guest sees the new size) when `instance` runs
    /// with it, else in the pool.
    async fn grow_volume(&self, instance: Option<Uuid>, volume: Uuid, size_bytes: u64) -> Result<()>;

    /// Takes a crash-consistent snapshot of a volume: in the pool, then, when `instance` runs
    /// with it, switches the guest's disk to the new top layer (`blockdev-snapshot`), so later
    /// writes go there and never into the snapshot.
    async fn snapshot_volume(&self, instance: Option<Uuid>, volume: Uuid, snapshot: Uuid) -> Result<()>;

    /// Writes a stopped instance's root disk (its whole chain) as a standalone qcow2 at `dst`.
    async fn export_root_disk(&self, id: Uuid, dst: &std::path::Path) -> Result<()>;
}
