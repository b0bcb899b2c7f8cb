//! Volumes: block devices that outlive instances. The view, the request bodies, and the volume
//! state machine — in one place, like the instance one in [`crate::instance`].
//!
//! API actions ([`VolumeAction`]) are checked against the current state; nonsense is refused with
//! a message naming the state (→ 409). The volume reconciler reports what it did on the host as
//! [`VolumeObservation`]s.
//!
//! ```text
//! creating → available ⇄ attaching → attached → detaching → available
//! attaching → available (rolled back: the hot-plug failed)
//! detaching → attached  (the guest did not release the disk before the deadline)
//! creating → failed; failed → deleting
//! available → deleting → deleted (soft-deleted row)
//! ```

use crate::Name;
use crate::VolumeId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Largest volume, GiB.
pub const VOLUME_MAX_GIB: i64 = 16 * 1024;

/// Most volumes attached to one instance.
pub const VOLUMES_PER_INSTANCE_MAX: i64 = 8;

/// Where a volume is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VolumeState {
    /// Accepted; its disk is being made in the storage pool.
    Creating,
    /// Exists and is attached to nothing.
    Available,
    /// Being attached (hot-plugged into a running guest, or recorded for a stopped one).
    Attaching,
    /// Attached to `attached_to`.
    Attached,
    /// Being detached (the guest is asked to release the disk).
    Detaching,
    /// Its disk is being removed from the pool.
    Deleting,
    /// Something went wrong at creation; see `state_reason`. Delete it.
    Failed,
    /// Gone (only visible in history and events).
    Deleted,
}

impl VolumeState {
    pub const ALL: [VolumeState; 8] = [
        VolumeState::Creating,
        VolumeState::Available,
        VolumeState::Attaching,
        VolumeState::Attached,
        VolumeState::Detaching,
        VolumeState::Deleting,
        VolumeState::Failed,
        VolumeState::Deleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            VolumeState::Creating => "creating",
            VolumeState::Available => "available",
            VolumeState::Attaching => "attaching",
            VolumeState::Attached => "attached",
            VolumeState::Detaching => "detaching",
            VolumeState::Deleting => "deleting",
            VolumeState::Failed => "failed",
            VolumeState::Deleted => "deleted",
        }
    }

    pub fn parse(s: &str) -> Option<VolumeState> {
        VolumeState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// A transitional state is one the volume reconciler must drive to a resting state.
    pub fn is_transitional(self) -> bool {
        matches!(self, VolumeState::Creating | VolumeState::Attaching | VolumeState::Detaching | VolumeState::Deleting)
    }

    /// Whether an instance holding the volume in this state has it among its disks (on its
    /// command line at start, hot-plugged while it runs).
    pub fn is_plugged(self) -> bool {
        matches!(self, VolumeState::Attaching | VolumeState::Attached | VolumeState::Detaching)
    }

    /// Applies an API action. Returns the next state, or a message saying why it is refused.
    pub fn on_action(self, action: VolumeAction) -> Result<VolumeTransition, String> {
        use VolumeAction as A;
        use VolumeState as S;
        let next = match (action, self) {
            (A::Attach, S::Available) => S::Attaching,
            (A::Detach, S::Attached) => S::Detaching,
            // Resize and snapshot change the disk, not the state.
            (A::Resize, S::Available | S::Attached) => self,
            (A::Snapshot | A::Backup, S::Available | S::Attached) => self,
            (A::Delete, S::Available | S::Failed) => S::Deleting,
            (a, s) => {
                let hint = match (a, s) {
                    (A::Attach, S::Attached | S::Attaching) => "it is already attached; detach it first",
                    (A::Detach, S::Available) => "it is not attached",
                    (A::Delete, S::Attached | S::Attaching) => "detach it first",
                    (_, S::Creating) => "wait until it has been created",
                    (_, S::Deleting | S::Deleted) => "it is being deleted",
                    (_, S::Failed) => "it failed; delete it",
                    _ => "wait until it reaches a resting state",
                };
                return Err(format!("cannot {} a volume in state '{}': {hint}", a.as_str(), s.as_str()));
            }
        };
        Ok(VolumeTransition { from: self, to: next })
    }

    /// Applies what the reconciler observed. Observations that do not apply to the current state
    /// are stale and return `None`: the caller records nothing.
    pub fn on_observation(self, obs: &VolumeObservation) -> Option<VolumeTransition> {
        use VolumeObservation as O;
        use VolumeState as S;
        let next = match (obs, self) {
            (O::Created, S::Creating) => S::Available,
            (O::CreateFailed { .. }, S::Creating) => S::Failed,
            (O::Attached, S::Attaching) => S::Attached,
            (O::AttachFailed { .. }, S::Attaching) => S::Available,
            (O::Detached, S::Detaching | S::Attached | S::Attaching) => S::Available,
            (O::DetachFailed { .. }, S::Detaching) => S::Attached,
            (O::Deleted, S::Deleting) => S::Deleted,
            (O::DeleteFailed { .. }, S::Deleting) => S::Failed,
            _ => return None,
        };
        Some(VolumeTransition { from: self, to: next })
    }
}

impl std::fmt::Display for VolumeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state change of a volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VolumeTransition {
    pub from: VolumeState,
    pub to: VolumeState,
}

/// What a user asks of a volume through the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeAction {
    Attach,
    Detach,
    Resize,
    Snapshot,
    Backup,
    Delete,
}

impl VolumeAction {
    pub const ALL: [VolumeAction; 6] = [
        VolumeAction::Attach,
        VolumeAction::Detach,
        VolumeAction::Resize,
        VolumeAction::Snapshot,
        VolumeAction::Backup,
        VolumeAction::Delete,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            VolumeAction::Attach => "attach",
            VolumeAction::Detach => "detach",
            VolumeAction::Resize => "resize",
            VolumeAction::Snapshot => "snapshot",
            VolumeAction::Backup => "back up",
            VolumeAction::Delete => "delete",
        }
    }
}

/// What the volume reconciler saw happen on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeObservation {
    /// The disk exists in the pool.
    Created,
    CreateFailed {
        reason: String,
    },
    /// The instance has the disk (hot-plugged, or on its command line at its next start).
    Attached,
    /// The hot-plug failed; the volume is rolled back to `available`.
    AttachFailed {
        reason: String,
    },
    /// The instance no longer has the disk (or the instance is gone).
    Detached,
    /// The guest did not release the disk; the volume stays attached.
    DetachFailed {
        reason: String,
    },
    /// The disk is gone from the pool.
    Deleted,
    DeleteFailed {
        reason: String,
    },
}

impl VolumeObservation {
    /// The failure reason, if this observation is a failure.
    pub fn reason(&self) -> Option<&str> {
        match self {
            VolumeObservation::CreateFailed { reason }
            | VolumeObservation::AttachFailed { reason }
            | VolumeObservation::DetachFailed { reason }
            | VolumeObservation::DeleteFailed { reason } => Some(reason),
            _ => None,
        }
    }
}

/// A block storage volume.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VolumeView {
    /// Unique id (UUID).
    #[schema(value_type = Uuid)]
    pub id: VolumeId,
    /// Name, unique within the project.
    pub name: String,
    /// Free-form description.
    pub description: String,
    /// When it was created (RFC 3339 UTC).
    pub time_created: chrono::DateTime<chrono::Utc>,
    /// When it was last changed (RFC 3339 UTC).
    pub time_modified: chrono::DateTime<chrono::Utc>,
    /// Name of the project it belongs to.
    pub project: String,
    /// Size in GiB (what the guest sees).
    pub size_gib: i64,
    /// Lifecycle state.
    pub state: VolumeState,
    /// Why it is in this state, when that needs explaining (a failure, a rolled-back attach).
    pub state_reason: Option<String>,
    /// Name of the instance it is attached to (or being attached to / detached from).
    pub attached_to: Option<String>,
    /// Whether its data is encrypted at rest.
    pub encrypted: bool,
    /// What it was made from: `empty`, `image:<name>`, `snapshot:<name>` or `backup:<name>`.
    pub source: String,
    /// Most read + write requests per second the guest gets from it (null: unlimited).
    pub iops_limit: Option<i64>,
    /// Most read + write MiB per second the guest gets from it (null: unlimited).
    pub bandwidth_limit_mib_s: Option<i64>,
}

/// Parameters to create a volume. At most one source.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeCreate {
    /// Name, unique within the project.
    pub name: Name,
    /// Free-form description.
    #[serde(default)]
    #[schema(max_length = 512)]
    pub description: String,
    /// Size in GiB (1 to 16384). With a source, at least the source's size.
    #[schema(minimum = 1, maximum = 16384)]
    pub size_gib: i64,
    /// Encrypt the data at rest.
    #[serde(default)]
    pub encrypted: bool,
    /// Make it a copy-on-write clone of this image (name or id).
    #[serde(default)]
    #[schema(
        pattern = "^([a-z]([a-z0-9-]{0,61}[a-z0-9])?|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
    )]
    pub source_image: Option<String>,
    /// Make it from this snapshot (name or id).
    #[serde(default)]
    #[schema(
        pattern = "^([a-z]([a-z0-9-]{0,61}[a-z0-9])?|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
    )]
    pub source_snapshot: Option<String>,
    /// Restore it from this backup (name or id).
    #[serde(default)]
    #[schema(
        pattern = "^([a-z]([a-z0-9-]{0,61}[a-z0-9])?|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
    )]
    pub source_backup: Option<String>,
    /// Most read + write requests per second (1 to 1000000; omit for unlimited).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1000000)]
    pub iops_limit: Option<i64>,
    /// Most read + write MiB per second (1 to 100000; omit for unlimited).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 100000)]
    pub bandwidth_limit_mib_s: Option<i64>,
}

/// New I/O limits of a volume; they apply at once to a running guest that has it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeIoLimits {
    /// Most read + write requests per second (1 to 1000000; null for unlimited).
    #[schema(minimum = 1, maximum = 1000000)]
    pub iops_limit: Option<i64>,
    /// Most read + write MiB per second (1 to 100000; null for unlimited).
    #[schema(minimum = 1, maximum = 100000)]
    pub bandwidth_limit_mib_s: Option<i64>,
}

/// Largest IOPS limit.
pub const IOPS_LIMIT_MAX: i64 = 1_000_000;
/// Largest bandwidth limit, MiB/s.
pub const BANDWIDTH_LIMIT_MAX_MIB_S: i64 = 100_000;

/// Parameters to attach a volume.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeAttach {
    /// The instance (name or id, same project) to attach it to.
    #[schema(
        pattern = "^([a-z]([a-z0-9-]{0,61}[a-z0-9])?|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
    )]
    pub instance: String,
}

/// Parameters to grow a volume.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeResize {
    /// The new size in GiB; volumes only grow.
    #[schema(minimum = 1, maximum = 16384)]
    pub size_gib: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use VolumeAction as A;
    use VolumeObservation as O;
    use VolumeState as S;

    #[test]
    fn attach_detach_cycle() {
        let mut s = S::Creating.on_observation(&O::Created).unwrap().to;
        assert_eq!(s, S::Available);
        s = s.on_action(A::Attach).unwrap().to;
        assert_eq!(s, S::Attaching);
        s = s.on_observation(&O::Attached).unwrap().to;
        assert_eq!(s, S::Attached);
        assert_eq!(s.on_action(A::Resize).unwrap().to, S::Attached);
        s = s.on_action(A::Detach).unwrap().to;
        assert_eq!(s, S::Detaching);
        s = s.on_observation(&O::Detached).unwrap().to;
        assert_eq!(s, S::Available);
        s = s.on_action(A::Delete).unwrap().to;
        assert_eq!(s.on_observation(&O::Deleted).unwrap().to, S::Deleted);
    }

    #[test]
    fn failures_roll_back_to_a_resting_state() {
        let r = || "x".to_string();
        assert_eq!(S::Attaching.on_observation(&O::AttachFailed { reason: r() }).unwrap().to, S::Available);
        assert_eq!(S::Detaching.on_observation(&O::DetachFailed { reason: r() }).unwrap().to, S::Attached);
        assert_eq!(S::Creating.on_observation(&O::CreateFailed { reason: r() }).unwrap().to, S::Failed);
        assert_eq!(S::Failed.on_action(A::Delete).unwrap().to, S::Deleting);
        // Stale: a late "attached" after the volume was detached changes nothing.
        assert!(S::Available.on_observation(&O::Attached).is_none());
        assert!(S::Deleting.on_observation(&O::Created).is_none());
    }

    #[test]
    fn nonsense_actions_name_the_state() {
        let e = S::Attached.on_action(A::Delete).unwrap_err();
        assert!(e.contains("'attached'") && e.contains("detach it first"), "{e}");
        assert!(S::Attached.on_action(A::Attach).unwrap_err().contains("already attached"));
        assert!(S::Available.on_action(A::Detach).unwrap_err().contains("not attached"));
    }

    #[test]
    fn every_action_from_every_state_is_decided() {
        for s in S::ALL {
            for a in A::ALL {
                match s.on_action(a) {
                    Ok(t) => assert_eq!(t.from, s),
                    Err(msg) => assert!(msg.contains(s.as_str()) && msg.contains(a.as_str()), "{msg}"),
                }
            }
            assert_eq!(S::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{}\"", s.as_str()));
        }
    }
}
