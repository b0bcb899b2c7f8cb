//! S3 access keys: credentials for the object storage endpoint. A key belongs to a user and is
//! scoped to one project; requests signed with it act with the user's current role there.

use crate::{AccessKeyId, Name};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Parameters to create an access key.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessKeyCreate {
    /// Name, unique within the project.
    pub name: Name,
    /// Free-form description.
    #[serde(default)]
    #[schema(max_length = 512)]
    pub description: String,
}

/// An access key (never its secret).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AccessKeyView {
    /// Unique id (UUID).
    #[schema(value_type = Uuid)]
    pub id: AccessKeyId,
    /// Name, unique within the project.
    pub name: String,
    /// Free-form description.
    pub description: String,
    /// When it was created.
    pub time_created: chrono::DateTime<chrono::Utc>,
    /// When it was last changed.
    pub time_modified: chrono::DateTime<chrono::Utc>,
    /// Name of the project it is scoped to.
    pub project: String,
    /// Name of the user it belongs to (requests signed with it act as this user).
    pub user: String,
    /// The S3 access key id (`KUMO…`, 20 characters): what clients send; not a secret.
    pub access_key_id: String,
    /// When a request last used it (at most one minute stale; null: never).
    pub last_used: Option<chrono::DateTime<chrono::Utc>>,
}

/// A newly created access key, with its secret (shown only this once).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AccessKeyCreated {
    #[serde(flatten)]
    pub key: AccessKeyView,
    /// The secret access key (40 characters); it cannot be shown again.
    pub secret_access_key: String,
}

/// Length of an access key id (as AWS's).
pub const ACCESS_KEY_ID_LEN: usize = 20;
/// Length of a secret access key (as AWS's).
pub const SECRET_ACCESS_KEY_LEN: usize = 40;
