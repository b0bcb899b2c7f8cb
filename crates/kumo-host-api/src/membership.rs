//! How a host joins a cluster and stays in it: what `kumod agent` sends a controller, and what it
//! gets back. (The other direction, the controller calling the agent, is [`crate::HostAgent`].)
//!
//! - **Join** (`POST /agent/v1/join` on any controller, once): the operator's one-time join
//!   token, what the host is, where its API listens, its certificate's fingerprint and the secret
//!   controllers must present to it. The answer is the host's id and its own credential, which
//!   the agent keeps in its data directory and presents from then on; the join token is spent.
//! - **Heartbeat** (`POST /agent/v1/heartbeat`, every few seconds, with the credential): renews
//!   the host's lease and refreshes what it reports. An agent that cannot renew its lease stops
//!   its guests by itself before the lease ends (self-fencing; see docs/architecture.md).

use crate::HostInfo;
use kumo_types::HostId;
use serde::{Deserialize, Serialize};

/// What an agent presents to join.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    /// The operator's one-time join token.
    pub token: String,
    /// The zone the agent was told to join (`--zone`); must be the token's when given.
    pub zone: Option<String>,
    /// What the host is (its name, driver, capacity).
    pub info: HostInfo,
    /// Base URL of the agent's API, as controllers reach it (`https://ADDR:PORT`).
    pub address: String,
    /// SHA-256 of the agent's TLS certificate (`AB:CD:…`), pinned by controllers.
    pub fingerprint: String,
    /// The bearer secret controllers present to the agent.
    pub agent_secret: String,
}

/// What a controller answers to a join.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinResponse {
    /// The host's stable id: its identity from now on (never its name).
    pub host_id: HostId,
    /// The zone it joined.
    pub zone: String,
    /// The bearer credential the agent presents to controllers from now on.
    pub credential: String,
    /// How long a lease lasts, seconds: the agent must renew it (heartbeat) well within this.
    pub lease_seconds: u64,
}

/// A heartbeat: the host renews its lease and says what it is now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// The host the agent is (must be the credential's host).
    pub host_id: HostId,
    pub info: HostInfo,
    pub address: String,
    pub fingerprint: String,
}

/// An agent saying it is stopping (a clean shutdown): its host is `down` until its next
/// heartbeat. `POST /agent/v1/leave`, the host's credential as the bearer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Leave {
    /// The host the agent is (must be the credential's host).
    pub host_id: HostId,
}

/// A controller's answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatAck {
    /// How long the renewed lease lasts from now, seconds.
    pub lease_seconds: u64,
}
