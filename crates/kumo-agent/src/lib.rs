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

pub mod capacity;
pub mod kvm_probe;
pub mod net;
pub mod proc;
pub mod qemu;
pub mod qemu_img;
pub mod qmp;
pub mod sim;
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
    /// Network traffic of the guest's NICs. Instances have no NICs yet: always 0.
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

    /// The serial console output from byte `offset`, at most `max` bytes, and the next offset.
    async fn serial(&self, id: Uuid, offset: u64, max: usize) -> Result<(Vec<u8>, u64)>;

    /// Ids of every instance that has anything on this host (for leak collection).
    async fn list(&self) -> Result<Vec<Uuid>>;

    /// The instance's cumulative counters, or None when its guest is not running.
    async fn sample(&self, id: Uuid) -> Result<Option<InstanceSample>>;
}
