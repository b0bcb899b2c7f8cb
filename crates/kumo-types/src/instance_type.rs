//! Instance types (plans): the sizes an instance can have. The operator extends the catalogue.

use crate::InstanceTypeId;
use crate::Name;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An instance type (plan).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InstanceTypeView {
    /// Unique id (UUID).
    #[schema(value_type = Uuid)]
    pub id: InstanceTypeId,
    /// Name, unique in the catalogue.
    pub name: String,
    /// Free-form description.
    pub description: String,
    /// When it was created.
    pub time_created: chrono::DateTime<chrono::Utc>,
    /// When it was last changed.
    pub time_modified: chrono::DateTime<chrono::Utc>,
    /// Virtual CPUs.
    pub vcpus: i64,
    /// Memory in MiB.
    pub memory_mib: i64,
    /// Root disk size in GiB.
    pub disk_gib: i64,
    /// GPUs passed through (placed only on hosts that report free GPUs).
    pub gpus: i64,
    /// Labels a host must have to run an instance of this type (operator labels, e.g. `disk=ssd`).
    #[serde(default)]
    #[schema(value_type = std::collections::BTreeMap<String, String>)]
    pub host_labels: crate::Labels,
}

/// Parameters to add an instance type to the catalogue (operators).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstanceTypeCreate {
    /// Name, unique in the catalogue.
    pub name: Name,
    /// Free-form description.
    #[serde(default)]
    #[schema(max_length = 512)]
    pub description: String,
    /// Virtual CPUs (1-64).
    #[schema(minimum = 1, maximum = 64)]
    pub vcpus: i64,
    /// Memory in MiB (64-262144).
    #[schema(minimum = 64, maximum = 262144)]
    pub memory_mib: i64,
    /// Root disk size in GiB (1-16384).
    #[schema(minimum = 1, maximum = 16384)]
    pub disk_gib: i64,
    /// GPUs (0-16).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 16)]
    pub gpus: i64,
    /// Only hosts with all these labels run instances of this type (see `PUT /v1/hosts/{host}/labels`).
    #[serde(default)]
    #[schema(value_type = std::collections::BTreeMap<String, String>)]
    pub host_labels: crate::Labels,
}

impl InstanceTypeCreate {
    /// Range checks; the message says which field is out of range and what is allowed.
    pub fn validate(&self) -> Result<(), String> {
        let checks: [(&str, i64, i64, i64); 4] = [
            ("vcpus", self.vcpus, 1, 64),
            ("memory_mib", self.memory_mib, 64, 262_144),
            ("disk_gib", self.disk_gib, 1, 16_384),
            ("gpus", self.gpus, 0, 16),
        ];
        for (field, v, lo, hi) in checks {
            if v < lo || v > hi {
                return Err(format!("{field} must be between {lo} and {hi} (got {v})"));
            }
        }
        crate::check_labels(&self.host_labels).map_err(|e| format!("host_labels: {e}"))
    }
}
