//! The hosts' agents, by host id: the only way the control plane reaches a host.
//!
//! Each entry is a [`HostAgent`] (see `kumo-host-api`): plain data in, plain data out, so an entry
//! may be the agent in this process (`kumo_agent::LocalAgent`, the all-in-one `kumod`), the same
//! wrapped in a JSON round trip or served over HTTPS and called back (`kumod --agent-adapter
//! json|http`, the seam's tests), or a client of a remote agent (`kumod controller`: one entry per
//! joined host, kept in step with the store by [`HostAgents::sync`]). Callers do not know which.
//!
//! The all-in-one `kumod` has a **local** host: its own machine, where volumes, backups and image
//! files live ([`HostAgents::local`]). A controller has none; what needs the local host's storage
//! answers that it is not available there (see [`crate::App::agent`]).

use chrono::{DateTime, Utc};
use kumo_host_api::{HostAgent, HostError};
use kumo_types::HostId;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Where and how a joined host's agent is reached (what the store holds about it).
pub use kumo_store::hosts::AgentEndpoint;

/// Makes the client of a joined host's agent.
pub type Connect = dyn Fn(&AgentEndpoint) -> anyhow::Result<Arc<dyn HostAgent>> + Send + Sync;

struct Remote {
    /// What the client was made from: a change (new address, certificate, secret) makes a new one.
    endpoint: AgentEndpoint,
    agent: Arc<dyn HostAgent>,
}

/// Host id → agent handle.
pub struct HostAgents {
    local: Option<(HostId, Arc<dyn HostAgent>)>,
    remote: RwLock<BTreeMap<HostId, Remote>>,
    connect: Option<Box<Connect>>,
    /// When each joined host's agent last renewed its lease (None: never), as the store said at
    /// the hosts task's last pass (at most its period ago; at once on this controller's own
    /// heartbeats, which wake it). A host whose lease ran out (`unreachable`) is lost: background
    /// work leaves it alone and its instances show `unknown` — judged at the moment asked, so an
    /// instance view never lags behind the host's (it may say `unknown` up to one period early).
    seen: RwLock<HashMap<HostId, Option<DateTime<Utc>>>>,
    /// `--host-unreachable-seconds`.
    unreachable_after: Duration,
    /// The lost hosts as of the last [`HostAgents::set_seen`] (to log changes).
    lost: RwLock<HashSet<HostId>>,
}

impl HostAgents {
    /// The agents of the all-in-one control plane: its local host `local` alone.
    pub fn new(local: HostId, agent: Arc<dyn HostAgent>) -> HostAgents {
        HostAgents {
            local: Some((local, agent)),
            remote: RwLock::default(),
            connect: None,
            seen: RwLock::default(),
            unreachable_after: Duration::MAX,
            lost: RwLock::default(),
        }
    }

    /// The agents of a controller: no local host; joined hosts are reached through clients made by
    /// `connect` (see [`HostAgents::sync`]); a host is lost `unreachable_after` after its last
    /// heartbeat.
    pub fn remote(connect: Box<Connect>, unreachable_after: Duration) -> HostAgents {
        HostAgents {
            local: None,
            remote: RwLock::default(),
            connect: Some(connect),
            seen: RwLock::default(),
            unreachable_after,
            lost: RwLock::default(),
        }
    }

    /// The agent of a host, if the control plane has one for it.
    pub fn get(&self, host: HostId) -> Option<Arc<dyn HostAgent>> {
        if let Some((id, agent)) = &self.local {
            if *id == host {
                return Some(agent.clone());
            }
        }
        self.remote.read().unwrap_or_else(|p| p.into_inner()).get(&host).map(|r| r.agent.clone())
    }

    /// The agent of a host, or the error a caller reports when it has none (the host is not
    /// joined, or this controller has not seen it yet).
    pub fn require(&self, host: HostId) -> Result<Arc<dyn HostAgent>, HostError> {
        self.get(host).ok_or_else(|| HostError::Unreachable(format!("no agent is known for host {host}")))
    }

    /// The local host: its id and agent (the all-in-one `kumod`), None on a controller.
    pub fn local(&self) -> Option<(HostId, &Arc<dyn HostAgent>)> {
        self.local.as_ref().map(|(id, a)| (*id, a))
    }

    /// Ids of every host with an agent.
    pub fn hosts(&self) -> Vec<HostId> {
        let mut out: Vec<HostId> = self.local.iter().map(|(id, _)| *id).collect();
        out.extend(self.remote.read().unwrap_or_else(|p| p.into_inner()).keys().copied());
        out
    }

    /// Ids of every host with an agent that is not lost: the hosts background work acts on.
    pub fn reachable(&self) -> Vec<HostId> {
        let now = Utc::now();
        self.hosts().into_iter().filter(|h| !self.lost_at(*h, now)).collect()
    }

    /// Whether the host's agent has not renewed its lease in time (now).
    pub fn is_lost(&self, host: HostId) -> bool {
        self.lost_at(host, Utc::now())
    }

    fn lost_at(&self, host: HostId, now: DateTime<Utc>) -> bool {
        match self.seen.read().unwrap_or_else(|p| p.into_inner()).get(&host) {
            // The all-in-one's own host, or one joined since the last pass (it has no client yet).
            None => false,
            Some(last) => crate::app::hosts::lease_expired(*last, now, self.unreachable_after),
        }
    }

    /// Sets when each joined host last renewed its lease (see [`HostAgents::is_lost`]); returns
    /// whether the set of lost hosts changed since the last call.
    pub fn set_seen(&self, seen: HashMap<HostId, Option<DateTime<Utc>>>) -> bool {
        *self.seen.write().unwrap_or_else(|p| p.into_inner()) = seen;
        let now = Utc::now();
        let lost: HashSet<HostId> = self.hosts().into_iter().filter(|h| self.lost_at(*h, now)).collect();
        let mut cur = self.lost.write().unwrap_or_else(|p| p.into_inner());
        if *cur == lost {
            return false;
        }
        for h in lost.difference(&cur) {
            tracing::warn!(host = %h, "host unreachable: its agent did not renew its lease in time");
        }
        for h in cur.difference(&lost) {
            tracing::info!(host = %h, "host reachable again");
        }
        *cur = lost;
        true
    }

    /// Brings the remote entries in step with the joined hosts of the store: a client for every
    /// new host or changed endpoint, none for a host that left. Returns how many entries changed.
    /// A host whose client cannot be made is left out (and logged); the next sync tries again.
    pub fn sync(&self, endpoints: Vec<AgentEndpoint>) -> usize {
        let Some(connect) = &self.connect else { return 0 };
        let mut map = self.remote.write().unwrap_or_else(|p| p.into_inner());
        let mut changed = 0;
        let live: std::collections::HashSet<HostId> = endpoints.iter().map(|e| e.id).collect();
        let before = map.len();
        map.retain(|id, _| live.contains(id));
        changed += before - map.len();
        for e in endpoints {
            if map.get(&e.id).is_some_and(|r| r.endpoint == e) {
                continue;
            }
            match connect(&e) {
                Ok(agent) => {
                    tracing::info!(host = %e.id, name = %e.name, address = %e.address, "host agent connected");
                    map.insert(e.id, Remote { endpoint: e, agent });
                    changed += 1;
                }
                Err(err) => {
                    tracing::warn!(host = %e.id, name = %e.name, "cannot make a client for the host's agent: {err:#}")
                }
            }
        }
        changed
    }
}

/// What [`crate::App::agent`] answers with on a controller: volumes, backups and image files live
/// on the all-in-one `kumod`'s own host, and a cluster has no such host (they need storage every
/// host reaches, which comes with Ceph). Every call fails saying so; none touches anything.
pub struct NoLocalHost;

pub const NO_LOCAL_HOST: &str = "this needs the host's own storage (volumes, backups, image files), which a cluster \
     controller does not have yet: run it on the all-in-one kumod (shared storage for clusters comes with Ceph)";

#[async_trait::async_trait]
impl kumo_host_api::wire::Transport for NoLocalHost {
    async fn send(&self, _call: &kumo_host_api::wire::Call) -> kumo_host_api::Result<Vec<u8>> {
        let reply = kumo_host_api::wire::Reply::<()>::Err(HostError::Failed(NO_LOCAL_HOST.into()));
        serde_json::to_vec(&reply).map_err(|e| HostError::Failed(e.to_string()))
    }
}
