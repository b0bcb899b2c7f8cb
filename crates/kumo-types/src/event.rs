//! Events: every state change of every resource, with time and cause.

use crate::EventId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// Something that happened to a resource.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventView {
    /// Unique id (UUIDv7: ordered by time).
    #[schema(value_type = Uuid)]
    pub id: EventId,
    /// When it happened.
    pub time_created: chrono::DateTime<chrono::Utc>,
    /// Project of the resource (null for cloud-wide resources such as hosts).
    pub project: Option<String>,
    /// Kind of resource: `instance`, `project`, `image`, `host`, …
    pub resource_type: String,
    /// Id of the resource.
    pub resource_id: Uuid,
    /// Name of the resource at the time.
    pub resource_name: String,
    /// What happened: `created`, `state_changed`, `resized`, `deleted`, …
    pub kind: String,
    /// State before (for state changes).
    pub from_state: Option<String>,
    /// State after (for state changes).
    pub to_state: Option<String>,
    /// Why: the API call that asked for it, or what the reconciler observed.
    pub cause: String,
    /// Structured attributes: for instances the type and size at that moment (`instance_type`,
    /// `vcpus`, `memory_mib`, `disk_gib`), which metering bills from; for budget alerts the period,
    /// cost and budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}
