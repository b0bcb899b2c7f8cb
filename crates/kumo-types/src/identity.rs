//! Identity: users, login, API tokens, project members and the audit log.

use crate::Name;
use crate::{AuditEntryId, ProjectId, TokenId, UserId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Shortest password accepted.
pub const PASSWORD_MIN_CHARS: usize = 8;

/// A user: a cloud operator or a tenant user who works in projects as a member.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserView {
    /// Unique id (UUID).
    #[schema(value_type = Uuid)]
    pub id: UserId,
    /// Login name, unique in the cloud.
    pub name: String,
    /// Free-form description.
    pub description: String,
    /// When it was created.
    pub time_created: chrono::DateTime<chrono::Utc>,
    /// When it was last changed.
    pub time_modified: chrono::DateTime<chrono::Utc>,
    /// Cloud operator (global admin) rather than a tenant user.
    pub operator: bool,
}

/// Parameters to create a user.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserCreate {
    /// Login name, unique in the cloud.
    pub name: Name,
    /// Password, at least 8 characters (stored as an argon2id hash).
    #[schema(min_length = 8)]
    pub password: String,
    /// Free-form description.
    #[serde(default)]
    #[schema(max_length = 512)]
    pub description: String,
    /// Make the user a cloud operator (default: a tenant user).
    #[serde(default)]
    pub operator: bool,
}

/// Credentials for `POST /v1/login`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

/// A session token issued by login.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LoginResponse {
    /// The bearer token (shown once).
    pub token: String,
    /// When the session ends.
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// Parameters to create an API token for the caller.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenCreate {
    /// Name, unique among the caller's live tokens.
    pub name: Name,
    /// Days until the token expires (default: never).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 3650)]
    pub expires_in_days: Option<u32>,
}

/// A newly created API token, with its secret (shown only this once).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenCreated {
    /// Name of the token.
    pub name: String,
    /// The bearer token secret; it cannot be shown again.
    pub token: String,
    /// When it expires (null: never).
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// One of the caller's API tokens (never its secret).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenView {
    /// Name of the token.
    pub name: String,
    /// When it was created.
    pub time_created: chrono::DateTime<chrono::Utc>,
    /// When it expires (null: never).
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When it was last used (recorded at most every 30 seconds; null: never).
    pub last_used: Option<chrono::DateTime<chrono::Utc>>,
}

/// A role in a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProjectRole {
    /// Everything in the project, including managing its members.
    Owner,
    /// Create, change and delete the project's resources.
    Collaborator,
    /// Read only.
    Viewer,
}

impl ProjectRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ProjectRole::Owner => "owner",
            ProjectRole::Collaborator => "collaborator",
            ProjectRole::Viewer => "viewer",
        }
    }
}

/// Parameters to add a member to a project (or change their role).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberAdd {
    /// User name or id.
    #[schema(
        pattern = "^([a-z]([a-z0-9-]{0,61}[a-z0-9])?|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
    )]
    pub user: String,
    /// Role in the project.
    pub role: ProjectRole,
}

/// A member of a project.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MemberView {
    /// Id of the user.
    #[schema(value_type = Uuid)]
    pub user_id: UserId,
    /// Name of the user.
    pub user: String,
    /// Role in the project: owner, collaborator or viewer.
    pub role: String,
    /// When the user became a member.
    pub time_created: chrono::DateTime<chrono::Utc>,
}

/// A project the caller is a member of, with their role.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MyProjectView {
    /// Id of the project.
    #[schema(value_type = Uuid)]
    pub id: ProjectId,
    /// Name of the project.
    pub name: String,
    /// The caller's role: owner, collaborator or viewer.
    pub role: String,
}

/// The caller.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MeView {
    /// `operator` (a cloud operator) or `user` (a tenant user).
    pub kind: String,
    /// Name of the token used.
    pub token_name: String,
    /// Name of the user the token belongs to (null for the bootstrap operator token).
    pub user: Option<String>,
    /// Id of that user (null for the bootstrap operator token).
    #[schema(value_type = Option<Uuid>)]
    pub user_id: Option<UserId>,
    /// Whether the caller is a cloud operator.
    pub operator: bool,
    /// The projects a tenant user is a member of, with their roles (empty for operators, who see
    /// every project).
    pub projects: Vec<MyProjectView>,
}

/// One entry of the audit log: a mutating request and its outcome.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditEntryView {
    /// Unique id (UUID, time-ordered).
    #[schema(value_type = Uuid)]
    pub id: AuditEntryId,
    /// When the request arrived.
    pub time: chrono::DateTime<chrono::Utc>,
    /// Id of the request (as in its `x-request-id` header).
    pub request_id: String,
    /// Who called, e.g. "user 'alice' (token 'ci')", or "anonymous".
    pub actor: String,
    /// Id of the calling user (null: the operator token, or unauthenticated).
    #[schema(value_type = Option<Uuid>)]
    pub user_id: Option<UserId>,
    /// Id of the token used (null: unauthenticated).
    #[schema(value_type = Option<Uuid>)]
    pub token_id: Option<TokenId>,
    /// Address the request came from.
    pub source_address: String,
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// Operation id (e.g. `instance_create`), or "-" when no operation matched.
    pub operation: String,
    /// Id of the project the request was about, when it named one that exists.
    #[schema(value_type = Option<Uuid>)]
    pub project_id: Option<ProjectId>,
    /// HTTP status of the answer.
    pub status: u16,
    /// `ok`, or the error code of the answer.
    pub result: String,
}
