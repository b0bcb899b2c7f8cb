//! Instances: the view, the create/resize parameters, and the instance state machine.
//!
//! The state machine lives here, in one place. Two kinds of input move it:
//! - [`InstanceAction`]s requested through the API (start, stop, reboot, resize, delete). An action
//!   that makes no sense in the current state is refused with a message naming the state (→ 409).
//! - [`InstanceObservation`]s reported by the reconciler after the host agent did (or found) something
//!   (disk provisioned, guest booted, guest powered off, …).
//!
//! ```text
//! creating → starting → running → stopping → stopped → starting …
//! running → rebooting → running
//! running | stopped → migrating → starting | stopped   (cold migration to another host, or its roll-back)
//! any → failed (with a reason; recoverable by start or delete)
//! any → deleting → destroyed (soft-deleted row: history stays)
//! ```

use crate::InstanceId;
use crate::Name;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Largest accepted user-data, in bytes.
pub const USER_DATA_MAX_BYTES: usize = 32 * 1024;

/// Where an instance is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    /// Accepted; its disk is being prepared on the host.
    Creating,
    /// The hypervisor process is being started.
    Starting,
    /// The guest is running.
    Running,
    /// The guest was asked to power off (ACPI), and is forced off after a deadline.
    Stopping,
    /// Powered off; the disk is kept and capacity stays reserved.
    Stopped,
    /// The guest is being reset.
    Rebooting,
    /// Something went wrong; see `state_reason`. Start or delete it.
    Failed,
    /// Every host resource of the instance is being removed.
    Deleting,
    /// Gone (only visible in history and events).
    Destroyed,
    /// Being moved to another host (cold migration): its guest is stopped and its root disk
    /// copied; `state_reason` says where to and how far. Ends in `starting` (it was running) or
    /// `stopped` on the new host, or back where it was when the move is rolled back.
    Migrating,
    /// Shown, never stored: the instance's host has not renewed its lease in time (unreachable),
    /// so what its guest does is not known. Its recorded state comes back with the host.
    Unknown,
}

impl InstanceState {
    pub const ALL: [InstanceState; 10] = [
        InstanceState::Creating,
        InstanceState::Starting,
        InstanceState::Running,
        InstanceState::Stopping,
        InstanceState::Stopped,
        InstanceState::Rebooting,
        InstanceState::Failed,
        InstanceState::Deleting,
        InstanceState::Destroyed,
        InstanceState::Migrating,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Creating => "creating",
            InstanceState::Starting => "starting",
            InstanceState::Running => "running",
            InstanceState::Stopping => "stopping",
            InstanceState::Stopped => "stopped",
            InstanceState::Rebooting => "rebooting",
            InstanceState::Failed => "failed",
            InstanceState::Deleting => "deleting",
            InstanceState::Destroyed => "destroyed",
            InstanceState::Migrating => "migrating",
            InstanceState::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<InstanceState> {
        InstanceState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// A transitional state is one the reconciler must drive to a resting state.
    pub fn is_transitional(self) -> bool {
        matches!(
            self,
            InstanceState::Creating
                | InstanceState::Starting
                | InstanceState::Stopping
                | InstanceState::Rebooting
                | InstanceState::Deleting
                | InstanceState::Migrating
        )
    }

    /// Applies an API action. Returns the next state, or a message saying why it is refused.
    pub fn on_action(self, action: InstanceAction) -> Result<Transition, String> {
        use InstanceAction as A;
        use InstanceState as S;
        let next = match (action, self) {
            (A::Start, S::Stopped | S::Failed) => S::Starting,
            (A::Stop, S::Running | S::Starting | S::Rebooting) => S::Stopping,
            (A::Reboot, S::Running) => S::Rebooting,
            // Resize changes the plan, not the state; only a stopped instance can be resized.
            (A::Resize, S::Stopped) => S::Stopped,
            (A::Migrate, S::Running | S::Stopped) => S::Migrating,
            // A move finishes or rolls back first: deleting half-way would leave a copy behind.
            (A::Delete, s) if s != S::Deleting && s != S::Destroyed && s != S::Unknown && s != S::Migrating => {
                S::Deleting
            }
            (a, s) => {
                let hint = match (a, s) {
                    (A::Start, S::Running | S::Starting) => "it is already running or starting",
                    (A::Stop, S::Stopped | S::Stopping) => "it is already stopped or stopping",
                    (A::Resize, S::Running | S::Starting | S::Rebooting) => "stop it first",
                    (_, S::Creating) => "wait until it has been created",
                    (_, S::Deleting | S::Destroyed) => "it is being deleted",
                    (_, S::Unknown) => "its host is unreachable",
                    (_, S::Migrating) => "it is being moved to another host; wait until the move finishes",
                    (A::Migrate, S::Failed) => "start or delete it first",
                    (A::Reboot, S::Stopped) => "start it instead",
                    _ => "wait until it reaches a resting state",
                };
                return Err(format!("cannot {} an instance in state '{}': {hint}", a.as_str(), s.as_str()));
            }
        };
        Ok(Transition { from: self, to: next })
    }

    /// Applies what the reconciler observed. Observations that do not apply to the current state
    /// are stale (a newer action overtook them) and return `None`: the caller records nothing.
    pub fn on_observation(self, obs: &InstanceObservation) -> Option<Transition> {
        use InstanceObservation as O;
        use InstanceState as S;
        let next = match (obs, self) {
            (O::Provisioned, S::Creating) => S::Starting,
            (O::Booted, S::Starting) => S::Running,
            (O::Rebooted, S::Rebooting) => S::Running,
            (O::PoweredOff, S::Stopping | S::Running | S::Rebooting | S::Starting) => S::Stopped,
            // A move never fails its instance: it finishes or rolls back (see `MoveRolledBack`).
            (O::Failed { .. }, s)
                if s != S::Deleting && s != S::Destroyed && s != S::Failed && s != S::Unknown && s != S::Migrating =>
            {
                S::Failed
            }
            (O::Destroyed, S::Deleting) => S::Destroyed,
            (O::Moved { was_running: true }, S::Migrating) => S::Starting,
            (O::Moved { was_running: false }, S::Migrating) => S::Stopped,
            (O::MoveRolledBack { was_running: true, .. }, S::Migrating) => S::Starting,
            (O::MoveRolledBack { was_running: false, .. }, S::Migrating) => S::Stopped,
            _ => return None,
        };
        Some(Transition { from: self, to: next })
    }
}

impl std::fmt::Display for InstanceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state change produced by the state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: InstanceState,
    pub to: InstanceState,
}

/// What a user asks for through the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceAction {
    Start,
    Stop,
    Reboot,
    Resize,
    Delete,
    /// Move to another host (cold: stop, copy the root disk, start there if it ran).
    Migrate,
}

impl InstanceAction {
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceAction::Start => "start",
            InstanceAction::Stop => "stop",
            InstanceAction::Reboot => "reboot",
            InstanceAction::Resize => "resize",
            InstanceAction::Delete => "delete",
            InstanceAction::Migrate => "migrate",
        }
    }
}

/// What the reconciler saw happen on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceObservation {
    /// The root disk and config drive exist.
    Provisioned,
    /// The hypervisor process runs the guest.
    Booted,
    /// The guest was reset and runs again.
    Rebooted,
    /// The hypervisor process is gone (asked to stop, or the guest powered itself off).
    PoweredOff,
    /// The host could not do what was asked.
    Failed { reason: String },
    /// Every host resource of the instance is gone.
    Destroyed,
    /// The move committed: the instance is on its new host, with its disk; it starts there if it
    /// was running.
    Moved { was_running: bool },
    /// The move was given up before it committed: the instance stays on its host, as it was.
    MoveRolledBack { was_running: bool, reason: String },
}

/// A virtual machine.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InstanceView {
    /// Unique id (UUID).
    #[schema(value_type = Uuid)]
    pub id: InstanceId,
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
    /// Lifecycle state.
    pub state: InstanceState,
    /// Why it is in this state, when that needs explaining (always set for `failed`).
    pub state_reason: Option<String>,
    /// Name of the image it was created from.
    pub image: String,
    /// Name of its instance type (plan).
    pub instance_type: String,
    /// Number of virtual CPUs (from the instance type).
    pub vcpus: i64,
    /// Memory in MiB (from the instance type).
    pub memory_mib: i64,
    /// Root disk size in GiB (from the instance type).
    pub disk_gib: i64,
    /// Name of the host it is placed on (operators only; null for tenants).
    pub host: Option<String>,
    /// Its network interfaces (one today), with the private address IPAM gave it.
    #[serde(default)]
    pub network_interfaces: Vec<crate::NetworkInterfaceView>,
    /// The floating IP attached to it (null when none).
    #[serde(default)]
    pub public_ip: Option<String>,
    /// The placement group it is in (null when none).
    #[serde(default)]
    pub placement_group: Option<String>,
}

/// Parameters to create an instance.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstanceCreate {
    /// Name, unique within the project.
    pub name: Name,
    /// Free-form description.
    #[serde(default)]
    #[schema(max_length = 512)]
    pub description: String,
    /// Image to boot from (name or id).
    #[schema(
        pattern = "^([a-z]([a-z0-9-]{0,61}[a-z0-9])?|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
    )]
    pub image: String,
    /// Instance type (plan) name.
    #[schema(pattern = "^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")]
    pub instance_type: String,
    /// Shell script the guest runs once at boot (at most 32 KiB).
    #[serde(default)]
    #[schema(max_length = 32768)]
    pub user_data: Option<String>,
    /// Root disk size in GiB, to make it larger than the instance type's (at most 16384).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 16384)]
    pub root_size_gib: Option<i64>,
    /// VPC (name or id) to put it in; default: the project's `default` VPC.
    #[serde(default)]
    #[schema(
        pattern = "^([a-z]([a-z0-9-]{0,61}[a-z0-9])?|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
    )]
    pub vpc: Option<String>,
    /// Subnet (name) of that VPC; default: `default` in the default VPC, or the VPC's only subnet.
    #[serde(default)]
    #[schema(pattern = "^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")]
    pub subnet: Option<String>,
    /// Security groups (names) of the interface; default: the project's `default` group.
    #[serde(default)]
    pub security_groups: Option<Vec<String>>,
    /// SSH keys (names) the guest gets through the metadata service.
    #[serde(default)]
    pub ssh_keys: Vec<String>,
    /// The zone to place the instance in (it must exist); default: any zone.
    #[serde(default)]
    #[schema(pattern = "^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")]
    pub zone: Option<String>,
    /// The placement group (name, of the same project) to place it by; default: none.
    #[serde(default)]
    #[schema(pattern = "^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")]
    pub placement_group: Option<String>,
}

/// Parameters to change the instance type of a stopped instance.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstanceResize {
    /// The new instance type (plan) name.
    #[schema(pattern = "^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")]
    pub instance_type: String,
}

/// Parameters to move an instance to another host (operators; cold: a running instance is
/// stopped, its root disk copied, and it starts again on the new host).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstanceMigrate {
    /// The host (name or id) to move it to; default: the one the scheduler picks among the other
    /// ready hosts of its host's zone.
    #[serde(default)]
    #[schema(
        pattern = "^([a-z]([a-z0-9-]{0,61}[a-z0-9])?|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
    )]
    pub host: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use InstanceAction as A;
    use InstanceState as S;

    #[test]
    fn normal_lifecycle() {
        let mut s = S::Creating;
        for obs in [InstanceObservation::Provisioned, InstanceObservation::Booted] {
            s = s.on_observation(&obs).unwrap().to;
        }
        assert_eq!(s, S::Running);
        s = s.on_action(A::Stop).unwrap().to;
        assert_eq!(s, S::Stopping);
        s = s.on_observation(&InstanceObservation::PoweredOff).unwrap().to;
        assert_eq!(s, S::Stopped);
        assert_eq!(s.on_action(A::Resize).unwrap().to, S::Stopped);
        s = s.on_action(A::Start).unwrap().to;
        assert_eq!(s, S::Starting);
        s = s.on_observation(&InstanceObservation::Booted).unwrap().to;
        s = s.on_action(A::Reboot).unwrap().to;
        assert_eq!(s, S::Rebooting);
        s = s.on_observation(&InstanceObservation::Rebooted).unwrap().to;
        assert_eq!(s, S::Running);
        s = s.on_action(A::Delete).unwrap().to;
        assert_eq!(s, S::Deleting);
        assert_eq!(s.on_observation(&InstanceObservation::Destroyed).unwrap().to, S::Destroyed);
    }

    #[test]
    fn nonsense_actions_name_the_state() {
        let e = S::Stopped.on_action(A::Stop).unwrap_err();
        assert!(e.contains("'stopped'"), "{e}");
        assert!(S::Running.on_action(A::Resize).unwrap_err().contains("stop it first"));
        assert!(S::Creating.on_action(A::Start).is_err());
        assert!(S::Deleting.on_action(A::Delete).is_err());
        assert!(S::Stopped.on_action(A::Reboot).is_err());
    }

    #[test]
    fn every_action_from_every_state_is_decided() {
        // Total function: every (state, action) pair either moves or explains itself.
        for s in S::ALL {
            for a in [A::Start, A::Stop, A::Reboot, A::Resize, A::Delete, A::Migrate] {
                match s.on_action(a) {
                    Ok(t) => assert_eq!(t.from, s),
                    Err(msg) => assert!(msg.contains(s.as_str()) && msg.contains(a.as_str())),
                }
            }
        }
    }

    #[test]
    fn failure_is_recoverable_and_stale_observations_are_ignored() {
        let t = S::Starting.on_observation(&InstanceObservation::Failed { reason: "qemu exited".into() }).unwrap();
        assert_eq!(t.to, S::Failed);
        assert_eq!(S::Failed.on_action(A::Start).unwrap().to, S::Starting);
        assert_eq!(S::Failed.on_action(A::Delete).unwrap().to, S::Deleting);
        // A late "booted" after the user already asked to delete changes nothing.
        assert!(S::Deleting.on_observation(&InstanceObservation::Booted).is_none());
        assert!(S::Deleting.on_observation(&InstanceObservation::Failed { reason: "x".into() }).is_none());
    }

    #[test]
    fn a_move_finishes_or_rolls_back_and_nothing_else_gets_in() {
        assert_eq!(S::Running.on_action(A::Migrate).unwrap().to, S::Migrating);
        assert_eq!(S::Stopped.on_action(A::Migrate).unwrap().to, S::Migrating);
        for s in [S::Creating, S::Starting, S::Stopping, S::Rebooting, S::Failed, S::Deleting, S::Migrating] {
            assert!(s.on_action(A::Migrate).is_err(), "{s}");
        }
        for a in [A::Start, A::Stop, A::Reboot, A::Resize, A::Delete] {
            let e = S::Migrating.on_action(a).unwrap_err();
            assert!(e.contains("being moved"), "{e}");
        }
        let moved = |was_running| InstanceObservation::Moved { was_running };
        assert_eq!(S::Migrating.on_observation(&moved(true)).unwrap().to, S::Starting);
        assert_eq!(S::Migrating.on_observation(&moved(false)).unwrap().to, S::Stopped);
        let back = InstanceObservation::MoveRolledBack { was_running: true, reason: "x".into() };
        assert_eq!(S::Migrating.on_observation(&back).unwrap().to, S::Starting);
        assert!(S::Running.on_observation(&moved(true)).is_none(), "only a migrating instance moves");
        let failed = InstanceObservation::Failed { reason: "x".into() };
        assert!(S::Migrating.on_observation(&failed).is_none(), "a move never fails its instance");
        assert!(S::Migrating.on_observation(&InstanceObservation::PoweredOff).is_none());
    }

    #[test]
    fn state_names_roundtrip() {
        for s in S::ALL {
            assert_eq!(S::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{}\"", s.as_str()));
        }
    }
}
