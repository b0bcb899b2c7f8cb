//! Hosts (operators only): the machines instances run on and their capacity; the zones they are
//! grouped in, and the one-time join tokens agent hosts join the cluster with.

use crate::{HostId, JoinTokenId, Name, ZoneId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Whether a host takes new instances.
///
/// - `ready`: it does (the scheduler may place instances on it);
/// - `cordoned`: an operator cordoned it: its instances keep running, no new one is placed on it;
/// - `unreachable`: an agent host that has not sent a heartbeat within the controller's deadline
///   (`kumod --host-unreachable-seconds`), or never has;
/// - `down`: an agent host whose agent said it was stopping (a clean shutdown, e.g. for an
///   upgrade or maintenance) and has not sent a heartbeat since: its guests keep running, but
///   nothing can be done to them until it is back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HostState {
    Ready,
    Cordoned,
    Unreachable,
    Down,
}

impl HostState {
    pub fn as_str(self) -> &'static str {
        match self {
            HostState::Ready => "ready",
            HostState::Cordoned => "cordoned",
            HostState::Unreachable => "unreachable",
            HostState::Down => "down",
        }
    }
}

/// How a host is connected to the control plane.
///
/// - `local`: the all-in-one kumod's own host, driven in process;
/// - `agent`: a `kumod agent` that joined over the network with a join token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HostRole {
    Local,
    Agent,
}

impl HostRole {
    pub fn as_str(self) -> &'static str {
        match self {
            HostRole::Local => "local",
            HostRole::Agent => "agent",
        }
    }

    pub fn parse(s: &str) -> Option<HostRole> {
        match s {
            "local" => Some(HostRole::Local),
            "agent" => Some(HostRole::Agent),
            _ => None,
        }
    }
}

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
    /// Name of the zone the host is in (empty for a host registered by a tool outside kumod that
    /// was never given one).
    pub zone: String,
    /// Whether it takes new instances (see the enum).
    pub state: HostState,
    /// How it is connected: `local` (the all-in-one's own host) or `agent` (joined over the network).
    pub role: HostRole,
    /// Whether an operator cordoned it (also shown by `state`, unless it is unreachable too).
    pub cordoned: bool,
    /// An agent host's last heartbeat (none for the local host, or an agent never heard from).
    pub last_seen: Option<chrono::DateTime<chrono::Utc>>,
    /// An agent host's API base URL (e.g. `https://10.77.0.2:7401`); none for the local host.
    pub address: Option<String>,
    /// When an agent host's agent said it was stopping (none: it did not, or has sent a heartbeat
    /// since — then it is back). See `state` `down`.
    #[serde(default)]
    pub time_left: Option<chrono::DateTime<chrono::Utc>>,
    /// Operator labels (`disk=ssd`), matched by instance types' `host_labels`.
    #[serde(default)]
    #[schema(value_type = std::collections::BTreeMap<String, String>)]
    pub labels: Labels,
    /// The last drain of the host (`kumo host drain`), with its progress; none if never drained
    /// or uncordoned since.
    #[serde(default)]
    pub drain: Option<DrainView>,
}

/// Where a drain is.
///
/// - `draining`: the host is cordoned and its instances are being moved off it, one at a time;
/// - `done`: no instance is left on it;
/// - `incomplete`: every instance that could be moved was; the ones left say why in `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DrainState {
    Draining,
    Done,
    Incomplete,
}

impl DrainState {
    pub fn as_str(self) -> &'static str {
        match self {
            DrainState::Draining => "draining",
            DrainState::Done => "done",
            DrainState::Incomplete => "incomplete",
        }
    }

    pub fn parse(s: &str) -> Option<DrainState> {
        [DrainState::Draining, DrainState::Done, DrainState::Incomplete].into_iter().find(|d| d.as_str() == s)
    }
}

/// A host's drain and its progress.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DrainView {
    /// Where the drain is.
    pub state: DrainState,
    /// When it was asked for.
    pub time_started: chrono::DateTime<chrono::Utc>,
    /// When it ended (`done` or `incomplete`).
    pub time_finished: Option<chrono::DateTime<chrono::Utc>>,
    /// Instances moved off the host by this drain.
    pub moved: i64,
    /// Moves of this drain that were refused or rolled back.
    pub failed: i64,
    /// Instances still on the host.
    pub remaining: i64,
    /// The instance being moved now, if any.
    pub moving: Option<String>,
    /// Why instances are left (an `incomplete` drain), or the last move's failure.
    pub reason: Option<String>,
}

/// Labels: key → value. Keys are 1–63 characters of `a-z 0-9 . _ -` starting with a letter or
/// digit; values 0–63 characters of `A-Z a-z 0-9 . _ -`; at most [`MAX_LABELS`].
pub type Labels = std::collections::BTreeMap<String, String>;

/// The most labels a host (or an instance type's `host_labels`) may have.
pub const MAX_LABELS: usize = 32;

/// Checks labels against [`Labels`]' rules; the message names the offending one.
pub fn check_labels(labels: &Labels) -> Result<(), String> {
    if labels.len() > MAX_LABELS {
        return Err(format!("at most {MAX_LABELS} labels, not {}", labels.len()));
    }
    for (k, v) in labels {
        let key_ok = (1..=63).contains(&k.len())
            && k.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && k.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
        if !key_ok {
            return Err(format!(
                "label key '{k}': 1-63 characters of a-z, 0-9, '.', '_', '-', starting with a letter or digit"
            ));
        }
        if v.len() > 63 || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
            return Err(format!("label '{k}': the value '{v}' is not 0-63 characters of A-Z, a-z, 0-9, '.', '_', '-'"));
        }
    }
    Ok(())
}

/// Labels as `k=v,k2=v2` (for messages and tables).
pub fn labels_text(labels: &Labels) -> String {
    labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// Sets a host's labels (replacing all of them).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HostLabelsSet {
    /// The host's labels from now on (an empty object removes them all).
    #[schema(value_type = std::collections::BTreeMap<String, String>)]
    pub labels: Labels,
}

/// A zone: a named group of hosts (a rack, a room, a site) instances can be placed in.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ZoneView {
    /// Unique id (UUID).
    #[schema(value_type = Uuid)]
    pub id: ZoneId,
    /// Name, unique in the cloud.
    pub name: String,
    /// Free-form description.
    pub description: String,
    /// When it was created.
    pub time_created: chrono::DateTime<chrono::Utc>,
    /// When it was last changed.
    pub time_modified: chrono::DateTime<chrono::Utc>,
    /// Live hosts in the zone (operators only: absent for tenants, as every capacity figure
    /// below — a provider's capacity is its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<i64>,
    /// vCPUs that may be reserved on its hosts (sum of their limits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcpus_limit: Option<i64>,
    /// vCPUs reserved on its hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcpus_used: Option<i64>,
    /// Memory that may be reserved on its hosts, MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib_limit: Option<i64>,
    /// Memory reserved on its hosts, MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib_used: Option<i64>,
    /// Disk that may be reserved on its hosts, GiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_gib_limit: Option<i64>,
    /// Disk reserved on its hosts, GiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_gib_used: Option<i64>,
}

impl ZoneView {
    /// The view without its capacity figures (what a tenant sees).
    pub fn without_capacity(self) -> ZoneView {
        ZoneView {
            hosts: None,
            vcpus_limit: None,
            vcpus_used: None,
            memory_mib_limit: None,
            memory_mib_used: None,
            disk_gib_limit: None,
            disk_gib_used: None,
            ..self
        }
    }
}

/// Parameters to create a zone.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ZoneCreate {
    /// Name, unique in the cloud.
    pub name: Name,
    /// Free-form description.
    #[serde(default)]
    #[schema(max_length = 512)]
    pub description: String,
}

/// Default lifetime of a join token, seconds.
pub const JOIN_TOKEN_DEFAULT_SECONDS: u64 = 3600;
/// Shortest lifetime of a join token, seconds.
pub const JOIN_TOKEN_MIN_SECONDS: u64 = 60;
/// Longest lifetime of a join token, seconds (7 days).
pub const JOIN_TOKEN_MAX_SECONDS: u64 = 7 * 86_400;

/// Parameters to create a one-time join token, with which one `kumod agent` joins the cluster as
/// a host of `zone`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinTokenCreate {
    /// The zone the joining host is put in (it must exist).
    #[schema(pattern = "^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")]
    pub zone: String,
    /// How long the token may be used, seconds (default 3600; 60 to 604800, 7 days).
    #[serde(default)]
    #[schema(minimum = 60, maximum = 604800)]
    pub expires_in_seconds: Option<u64>,
}

/// A join token just created. The token is shown this once; only its SHA-256 hash is kept.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JoinTokenCreated {
    /// Unique id (UUID).
    #[schema(value_type = Uuid)]
    pub id: JoinTokenId,
    /// The secret to give `kumod agent --join-token` (works once).
    pub token: String,
    /// The zone the joining host is put in.
    pub zone: String,
    /// When the token stops working if unused.
    pub time_expires: chrono::DateTime<chrono::Utc>,
}
