//! Compute: what a host needs to run an instance, and what it says about its guests.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
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
    /// The image's disk; the instance's root disk is a qcow2 overlay backed by it. A file of the
    /// image store (today one directory every host of the all-in-one `kumod` reads).
    pub image_disk: PathBuf,
    pub boot: BootSpec,
    pub user_data: Option<String>,
    /// The SSH public keys given at create (the config drive's `public_keys`).
    #[serde(default)]
    pub ssh_keys: Vec<String>,
    /// Volumes of the storage pool attached to the instance, in attach order: on the command line
    /// at start, after the root disk and the config drive (so the guest sees them as vdc, vdd, …).
    #[serde(default)]
    pub volumes: Vec<VolumeDisk>,
    /// Network interfaces. The host names their taps (from the MAC) and makes them when the
    /// network's desired state is applied; a host without a data plane gives the guest no NIC.
    #[serde(default)]
    pub nics: Vec<NicSpec>,
}

/// A network interface of a guest: the MAC the guest sees (the host derives the tap from it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicSpec {
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// Serial console bytes read from a log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SerialChunk {
    pub bytes: Vec<u8>,
    /// Absolute offset of the first byte: the offset asked for, or the oldest byte still kept when
    /// the one asked for was discarded.
    pub start: u64,
    /// Absolute offset to continue from.
    pub next: u64,
}

/// An instance's root disk staged for a move to another host ([`crate::HostAgent::export_disk`]):
/// one standalone qcow2 (the overlay and its image flattened together), its size and SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskExport {
    pub size_bytes: u64,
    /// SHA-256 of the staged file, lower-case hex.
    pub sha256: String,
}

/// The largest chunk of a disk one transfer call carries (see [`crate::HostAgent::read_export`]).
pub const DISK_CHUNK_BYTES: u64 = 8 << 20;
