//! The hosts' agents, by host id: the only way the control plane reaches a host.
//!
//! Each entry is a [`HostAgent`] (see `kumo-host-api`): plain data in, plain data out, so an entry
//! may be the agent in this process (`kumo_agent::LocalAgent`, the all-in-one `kumod`), the same
//! wrapped in a JSON round trip (`kumod --agent-adapter json`, the seam's test), or — with the
//! cluster work — a client of a remote agent, with no change here or in the callers. Today the map
//! has one entry: the local host, under the id it registered with.

use kumo_host_api::HostAgent;
use kumo_types::HostId;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Host id → agent handle.
pub struct HostAgents {
    local: HostId,
    by_host: BTreeMap<HostId, Arc<dyn HostAgent>>,
}

impl HostAgents {
    /// The agents of a control plane whose local host is `local`.
    pub fn new(local: HostId, agent: Arc<dyn HostAgent>) -> HostAgents {
        HostAgents { local, by_host: BTreeMap::from([(local, agent)]) }
    }

    /// The agent of a host, if the control plane has one for it.
    pub fn get(&self, host: HostId) -> Option<&dyn HostAgent> {
        self.by_host.get(&host).map(|a| a.as_ref())
    }

    /// The local host's agent (always present: it is added at construction and never removed).
    pub fn local(&self) -> &dyn HostAgent {
        match self.by_host.get(&self.local) {
            Some(a) => a.as_ref(),
            None => unreachable!("the local host's agent is in the map from construction"),
        }
    }

    /// Ids of every host with an agent.
    pub fn hosts(&self) -> impl Iterator<Item = HostId> + '_ {
        self.by_host.keys().copied()
    }
}
