//! Hosts (operators only): the machines instances run on and their capacity.

use crate::HostId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A host and its capacity. `*_limit` is the physical amount times the overcommit ratio; the
/// scheduler places an instance only when `used + requested <= limit` for every resource.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HostView {
    /// Unique id (UUID).
    #[schema(value_type = Uuid)]
    pub id: HostId,
    /// Host name.
    pub name: String,
    /// Free-form description.
    pub description: String,
    /// When it was registered.
    pub time_created: chrono::DateTime<chrono::Utc>,
    /// When it last reported.
    pub time_modified: chrono::DateTime<chrono::Utc>,
    /// Hypervisor driver: `qemu`, or `sim` (simulated, for tests and scale simulations).
    pub driver: String,
    /// Accelerator in use: `kvm`, `tcg` (software emulation) or `simulated`.
    pub accelerator: String,
    /// Why that accelerator was chosen (result of the timed KVM probe).
    pub accelerator_reason: String,
    /// Physical CPUs.
    pub vcpus_total: i64,
    /// vCPUs reserved by instances placed here.
    pub vcpus_used: i64,
    /// vCPUs that may be reserved (total × cpu overcommit).
    pub vcpus_limit: i64,
    /// Physical memory in MiB available to guests.
    pub memory_mib_total: i64,
    /// Memory reserved by instances, MiB.
    pub memory_mib_used: i64,
    /// Memory that may be reserved, MiB.
    pub memory_mib_limit: i64,
    /// Disk for instance volumes, GiB.
    pub disk_gib_total: i64,
    /// Disk reserved by instances, GiB.
    pub disk_gib_used: i64,
    /// Disk that may be reserved, GiB.
    pub disk_gib_limit: i64,
    /// GPUs present.
    pub gpus_total: i64,
    /// GPUs reserved.
    pub gpus_used: i64,
    /// CPU overcommit ratio.
    pub cpu_overcommit: f64,
    /// Memory overcommit ratio.
    pub memory_overcommit: f64,
    /// Disk overcommit ratio.
    pub disk_overcommit: f64,
}
