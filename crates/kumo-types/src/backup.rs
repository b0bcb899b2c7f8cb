//! Volume backups: copies of a volume's data in a backup target, restorable into new volumes.

use crate::BackupId;
use crate::Name;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A backup of a volume.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BackupView {
    /// Unique id (UUID).
    #[schema(value_type = Uuid)]
    pub id: BackupId,
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
    /// Size of the volume, GiB.
    pub size_gib: i64,
    /// `full` (the volume's first backup) or `incremental` (stored only what changed since).
    pub kind: String,
    /// Non-zero 1 MiB chunks it holds.
    pub chunks: i64,
    /// Bytes it added to the backup target (what changed, for an incremental one).
    pub bytes_stored: i64,
}

/// Parameters to back up a volume.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupCreate {
    /// Name, unique within the project.
    pub name: Name,
    /// Free-form description.
    #[serde(default)]
    #[schema(max_length = 512)]
    pub description: String,
    /// The volume (name or id, same project) to back up.
    #[schema(
        pattern = "^([a-z]([a-z0-9-]{0,61}[a-z0-9])?|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
    )]
    pub volume: String,
}
