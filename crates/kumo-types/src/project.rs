//! Projects: the unit of tenancy; every tenant resource lives in one.

use crate::Name;
use crate::ProjectId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A project.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProjectView {
    /// Unique id (UUID).
    #[schema(value_type = Uuid)]
    pub id: ProjectId,
    /// Name, unique in the cloud.
    pub name: String,
    /// Free-form description.
    pub description: String,
    /// When it was created.
    pub time_created: chrono::DateTime<chrono::Utc>,
    /// When it was last changed.
    pub time_modified: chrono::DateTime<chrono::Utc>,
}

/// Parameters to create a project.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectCreate {
    /// Name, unique in the cloud.
    pub name: Name,
    /// Free-form description.
    #[serde(default)]
    #[schema(max_length = 512)]
    pub description: String,
}
