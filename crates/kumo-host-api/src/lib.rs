//! The one seam between Kumo's control plane and a host.
//!
//! ```text
//!   control plane (kumo-control)
//!     App.hosts: host id → Arc<dyn HostAgent>        (today one entry: the local host)
//!        │
//!        ▼
//!   HostAgent (this crate): owned, serialisable arguments and results, HostError
//!        │
//!        ├── kumo_agent::LocalAgent    in-process: qemu/sim driver, storage pool, HostNet,
//!        │                             backup target, qemu-img, quarantine
//!        └── every wire::Transport     carries a wire::Call and brings its Reply back:
//!              ├── JsonRoundTrip<A>    through serde_json in process (tests prove the seam
//!              │                       can cross a wire)
//!              └── kumo_host_rpc::client::RemoteAgent   over HTTPS to a remote agent
//! ```
//!
//! [`wire`] holds the seam as messages: one [`wire::Call`] per method, [`wire::dispatch`] for the
//! serving side.
//!
//! Every argument and result is plain data (`Serialize + Deserialize`): ids, sizes, specs,
//! desired states, reports. Nothing crosses as a path of the host, an object of the agent or a
//! `&dyn` trait. Bulk data never crosses as bytes in a call either: backups are artifacts of the
//! host's backup target named by (project, backup id), image files artifacts of the image store
//! named by [`ImageFile`] (see [`storage`]); moving those artifacts is the transport's job. The
//! one exception is moving a root disk to another host (cold migration): its bytes go in chunks
//! ([`HostAgent::read_export`], [`HostAgent::write_import`]), which a transport carries as raw
//! bytes, never as JSON (see [`wire::Transport::read_chunk`]).
//!
//! Every operation is idempotent and keyed by ids, so a reconciler killed half-way can simply call
//! it again. Errors are a [`HostError`]: its kind keeps the distinctions the control plane acts on
//! (not found, a host tool failed, anything else, the agent could not be reached), its message is
//! what the host said.

pub mod compute;
pub mod json;
pub mod membership;
pub mod net;
pub mod storage;
pub mod wire;

pub use compute::{
    BootSpec, DiskExport, GuestStatus, HostInfo, InstanceSample, InstanceSpec, IoLimits, NicSpec, SerialChunk,
    VolumeDisk, DISK_CHUNK_BYTES,
};
pub use json::JsonRoundTrip;
/// The typed ids the seam's calls take (re-exported so a host agent needs no other crate).
pub use kumo_types::{BackupId, ImageId, InstanceId, ProjectId, SnapshotId, VolumeId};
pub use net::{ApplyReport, DesiredNet};
pub use storage::{BackupStats, ImageFile, ImageInfo, SweepStats, VolumeOrigin};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::time::Duration;

/// A failure of a host operation, as it crosses the seam. `Display` is the host's message alone,
/// so what the control plane records (e.g. a volume's failure reason) does not depend on the
/// transport.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", content = "message", rename_all = "snake_case")]
pub enum HostError {
    /// The instance, volume, snapshot, backup or file is not on this host.
    #[error("{0}")]
    NotFound(String),
    /// A host tool (qemu-img, ip, nft, …) failed; the message carries its command and stderr.
    #[error("{0}")]
    Tool(String),
    /// Anything else the host reports: the hypervisor, QMP, I/O.
    #[error("{0}")]
    Failed(String),
    /// The agent could not be reached or its answer could not be read (a transport's error).
    #[error("host agent unreachable: {0}")]
    Unreachable(String),
}

pub type Result<T, E = HostError> = std::result::Result<T, E>;

/// The host agent's API: everything the control plane asks of a host. See the crate docs.
#[async_trait]
pub trait HostAgent: Send + Sync + 'static {
    // ---- the host

    /// Describes the host: driver, accelerator, capacity.
    async fn host_info(&self) -> Result<HostInfo>;

    // ---- compute

    /// Makes the root disk and config drive exist. Idempotent.
    async fn provision(&self, spec: InstanceSpec) -> Result<()>;

    /// Runs the guest if it is not running (its taps exist once the network was applied). Returns
    /// once the hypervisor runs it. Idempotent.
    async fn start(&self, spec: InstanceSpec) -> Result<()>;

    /// What exists for the instance.
    async fn status(&self, id: InstanceId) -> Result<GuestStatus>;

    /// Asks the guest to power off (ACPI) and waits up to `grace`; then forces it off. Returns once
    /// no hypervisor process runs. Idempotent.
    async fn stop(&self, id: InstanceId, grace: Duration) -> Result<()>;

    /// Resets the running guest.
    async fn reboot(&self, id: InstanceId) -> Result<()>;

    /// Removes everything of the instance: process, disks, run directory. Idempotent.
    async fn destroy(&self, id: InstanceId) -> Result<()>;

    /// The serial console output from absolute byte `offset` (or from the oldest byte still kept,
    /// when older ones were trimmed away), at most `max` bytes.
    async fn serial(&self, id: InstanceId, offset: u64, max: u64) -> Result<SerialChunk>;

    /// Trims every instance's serial log that grew past `max_bytes`. Returns the bytes discarded.
    async fn trim_serial_logs(&self, max_bytes: u64) -> Result<u64>;

    /// Ids of every instance that has anything on this host (for leak collection).
    async fn list_instances(&self) -> Result<Vec<InstanceId>>;

    /// What leak collection does instead of [`HostAgent::destroy`]: stops the guest if it runs and
    /// moves its disks aside into the host's quarantine, where they stay for the grace period.
    /// Idempotent.
    async fn quarantine_instance(&self, id: InstanceId) -> Result<()>;

    /// The instance's cumulative counters, or None when its guest is not running.
    async fn sample(&self, id: InstanceId) -> Result<Option<InstanceSample>>;

    // ---- moving a root disk to another host (cold migration; see docs/architecture.md)

    /// Stages the stopped instance's root disk for a move: flattened (overlay and image) into one
    /// standalone qcow2 beside the host's other moves, and returns its size and SHA-256. Fails when
    /// the guest runs. Idempotent (staged afresh each time: the guest is stopped, the bytes the same).
    async fn export_disk(&self, id: InstanceId) -> Result<DiskExport>;

    /// Up to `max` bytes (at most [`DISK_CHUNK_BYTES`]) of the staged export from `offset`; empty
    /// past its end. `not_found` when nothing is staged.
    async fn read_export(&self, id: InstanceId, offset: u64, max: u64) -> Result<Vec<u8>>;

    /// Writes `bytes` at `offset` of the incoming copy of the instance's root disk (offset 0
    /// starts the copy afresh).
    async fn write_import(&self, id: InstanceId, offset: u64, bytes: Vec<u8>) -> Result<()>;

    /// Checks the incoming copy against `expect` (size and SHA-256) and makes it the instance's
    /// root disk on this host; a copy that does not match is removed and the call fails. A no-op
    /// when the copy was already installed.
    async fn finish_import(&self, id: InstanceId, expect: DiskExport) -> Result<()>;

    /// Removes the staged export and the incoming copy of the instance, if any (not its disk).
    async fn discard_move(&self, id: InstanceId) -> Result<()>;

    // ---- volumes

    /// Makes the volume exist with `size_bytes` from `origin`, encrypted at rest with a key of its
    /// own if asked. A no-op if it exists.
    async fn create_volume(&self, id: VolumeId, size_bytes: u64, origin: VolumeOrigin, encrypted: bool) -> Result<()>;

    /// Removes the volume. A no-op if it is gone.
    async fn delete_volume(&self, id: VolumeId) -> Result<()>;

    /// Ids of every volume in the host's pool (for leak collection).
    async fn list_volumes(&self) -> Result<Vec<VolumeId>>;

    /// What leak collection does instead of [`HostAgent::delete_volume`]: moves the volume (and
    /// its key) into the host's quarantine. Idempotent.
    async fn quarantine_volume(&self, id: VolumeId) -> Result<()>;

    /// Removes snapshot layers that neither a live snapshot (`keep`) nor any volume's chain uses.
    /// Returns how many were removed.
    async fn collect_layers(&self, keep: HashSet<SnapshotId>) -> Result<u64>;

    /// Hot-plugs a volume into the instance's running guest. A no-op when the guest does not run
    /// (the volume is on its command line at the next start) or already has it. Idempotent.
    async fn attach_volume(&self, instance: InstanceId, volume: VolumeDisk) -> Result<()>;

    /// Changes the I/O limits of a volume the running guest has (live). A no-op when the guest
    /// does not run or does not have it.
    async fn set_volume_limits(&self, instance: InstanceId, volume: VolumeId, limits: IoLimits) -> Result<()>;

    /// Unplugs a volume from the running guest, waiting up to `deadline` for the guest to release
    /// it; fails (the guest keeps it) if it does not. A no-op when the guest does not run or does
    /// not have it. Idempotent.
    async fn detach_volume(&self, instance: InstanceId, volume: VolumeId, deadline: Duration) -> Result<()>;

    /// Grows a volume: online when `instance` runs with it, else in the pool.
    async fn grow_volume(&self, instance: Option<InstanceId>, volume: VolumeId, size_bytes: u64) -> Result<()>;

    /// Takes a crash-consistent snapshot of a volume; when `instance` runs with it, the guest's
    /// later writes go to the new top layer, never into the snapshot.
    async fn snapshot_volume(&self, instance: Option<InstanceId>, volume: VolumeId, snapshot: SnapshotId)
        -> Result<()>;

    // ---- backups (artifacts of the host's backup target)

    /// Backs up a volume no running guest has open, as backup `backup` of `project` (chunks the
    /// project's store has already are not stored again).
    async fn backup_volume(&self, volume: VolumeId, project: ProjectId, backup: BackupId) -> Result<BackupStats>;

    /// Removes a backup, then every chunk of its project's store no other backup uses, unless a
    /// backup or restore holds the store. Returns whether it collected.
    async fn delete_backup(&self, project: ProjectId, backup: BackupId) -> Result<bool>;

    /// Collects what a crash or a busy deletion left in the backup target (older than `grace`).
    async fn sweep_backups(&self, grace: Duration) -> Result<SweepStats>;

    // ---- images (artifacts of the image store)

    /// `qemu-img info` of an untrusted upload, confined; the format is detected from the content.
    async fn inspect_upload(&self, file: ImageFile) -> Result<ImageInfo>;

    /// `qemu-img check` of an untrusted qcow2 upload, confined.
    async fn check_upload(&self, file: ImageFile) -> Result<()>;

    /// Converts an untrusted upload of `format` into the standalone qcow2 `dst` (a file of the
    /// same image), confined; the output may grow to `max_out_bytes`.
    async fn convert_upload(&self, src: ImageFile, format: String, dst: ImageFile, max_out_bytes: u64) -> Result<()>;

    /// `qemu-img info` of a qcow2 of the image store the cloud made itself.
    async fn image_info(&self, file: ImageFile) -> Result<ImageInfo>;

    /// Writes a snapshot's data (its whole chain) as the standalone qcow2 `dst`.
    async fn export_snapshot(&self, snapshot: SnapshotId, dst: ImageFile) -> Result<()>;

    /// Writes a stopped instance's root disk (its whole chain) as the standalone qcow2 `dst`.
    async fn export_root_disk(&self, id: InstanceId, dst: ImageFile) -> Result<()>;

    // ---- network

    /// Converges the host's tenant networking to `want`. None when the host has no network data
    /// plane (the simulated driver): nothing was applied.
    async fn apply_network(&self, want: DesiredNet) -> Result<Option<ApplyReport>>;
}
