//! The Kumo host agent.
//!
//! The control plane talks to a host only through [`kumo_host_api::HostAgent`] (the seam: plain
//! data in, plain data out). [`local::LocalAgent`] implements it in process over what this crate
//! has, in four folders:
//!
//! | module        | what                                                                          |
//! |---------------|-------------------------------------------------------------------------------|
//! | [`compute`]   | hypervisor drivers ([`compute::qemu`], [`compute::sim`]), QMP, serial logs, cgroups, confinement, the KVM probe, processes, host capacity |
//! | [`storage`]   | the storage pool of volumes ([`storage::pool`]), backups, qemu-img, volume keys, the quarantine |
//! | [`network`]   | the tenant-network data plane: bridges/taps, nftables, DHCP, metadata, network namespaces |
//! | [`system`]    | host-wide plumbing: running system tools, fault injection for crash tests     |
//!
//! Inside the agent, a driver implements [`Hypervisor`]: "make this instance's disk exist", "run
//! it", "stop it", "what is there?". Every operation is idempotent and keyed by the instance id,
//! so a reconciler that was killed half-way can simply call it again. This trait is the agent's
//! own (it hands out its pool and takes paths of this host); it never crosses the seam.
//!
//! Two drivers implement it:
//! - [`compute::qemu::QemuDriver`]: real QEMU processes, one per instance, controlled over QMP,
//!   with a qcow2 copy-on-write root disk backed by the image.
//! - [`compute::sim::SimDriver`]: an in-process simulation for fast API tests and scale
//!   simulations. It is always reported as `sim` (simulated) on the host view, never passed off as
//!   a real hypervisor.
//!
//! The types that cross the seam ([`InstanceSpec`], [`network::DesiredNet`], …) are defined in
//! `kumo-host-api` and re-exported here under their old paths.
//!
//! See `docs/adding-a-resource.md` for where a new resource touches the agent.

pub mod compute;
pub mod local;
pub mod network;
pub mod openstack;
pub mod storage;
pub mod system;

pub use local::LocalAgent;

use async_trait::async_trait;
use std::time::Duration;
use uuid::Uuid;

pub use kumo_host_api::{BootSpec, GuestStatus, HostInfo, InstanceSample, InstanceSpec, IoLimits, NicSpec, VolumeDisk};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    Tool(#[from] system::tool::ToolError),
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

/// A hypervisor driver: the agent's own interface to QEMU or the simulation. See the crate docs.
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
    async fn serial(&self, id: Uuid, offset: u64, max: usize) -> Result<compute::serial_log::SerialChunk>;

    /// Trims every instance's serial log that grew past `max_bytes` (see [`compute::serial_log`]).
    /// Returns the bytes discarded.
    async fn trim_serial_logs(&self, max_bytes: u64) -> Result<u64>;

    /// Ids of every instance that has anything on this host (for leak collection).
    async fn list(&self) -> Result<Vec<Uuid>>;

    /// What leak collection does instead of [`Hypervisor::destroy`]: stops the guest if it runs
    /// (its hypervisor process is killed) and moves its disks aside into the quarantine, where
    /// they stay for the grace period. Idempotent.
    async fn quarantine(&self, id: Uuid, q: &storage::quarantine::Quarantine) -> Result<()>;

    /// The instance's cumulative counters, or None when its guest is not running.
    async fn sample(&self, id: Uuid) -> Result<Option<InstanceSample>>;

    /// The storage pool holding this host's volumes.
    fn pool(&self) -> &dyn storage::pool::StoragePool;

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

    /// Writes a stopped instance's root disk at `dst` for a move to another host, standalone
    /// (nothing of this host's image cache needed to read it). By default
    /// [`Hypervisor::export_root_disk`].
    async fn export_for_move(&self, id: Uuid, dst: &std::path::Path) -> Result<()> {
        self.export_root_disk(id, dst).await
    }

    /// Makes `src` — a verified copy of what [`Hypervisor::export_for_move`] wrote on another
    /// host — the instance's root disk here (moved into place; its config drive is made at start).
    async fn import_root_disk(&self, id: Uuid, src: &std::path::Path) -> Result<()>;
}
