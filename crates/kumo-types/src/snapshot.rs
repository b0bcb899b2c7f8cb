//! Snapshots: the data of a volume at one instant (crash-consistent), taken while it is detached
//! or attached to a running guest. A snapshot is the source of new volumes.

use crate::Name;
use crate::SnapshotId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A snapshot of a volume.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SnapshotView {
    /// Unique id (UUID).
    #[schema(value_type = Uuid)]
    pub id: SnapshotId,
    /// Name, unique within the project.
    pub name: String,
    /// Free-form description.
    pub description: String,
    /// When it was taken (RFC 3339 UTC).
    pub time_created: chrono::DateTime<chrono::Utc>,
    /// When it was last changed (RFC 3339 UTC).
    pub time_modified: chrono::DateTime<chrono::Utc>,
    /// Name of the project it belongs to.
    pub project: String,
    /// Name of the volume it was taken of (at that time).
    pub volume: String,
    /// Size of the volume when it was taken, GiB.
    pub size_gib: i64,
}

/// Parameters to take a snapshot.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotCreate {
    /// Name, unique within the project.
    pub name: Name,
    /// Free-form description.
    #[serde(default)]
    #[schema(max_length = 512)]
    pub description: String,
    /// The volume (name or id, same project) to snapshot.
    #[schema(
        pattern = "^([a-z]([a-z0-9-]{0,61}[a-z0-9])?|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
    )]
    pub volume: String,
}
