//! The network reconciler: makes the host's tenant networking (bridges, taps, nft ruleset,
//! DHCP leases, metadata) match the store. Like the instance reconciler it takes no input: each
//! pass computes the desired state of this host from the store and hands it to the host's agent
//! ([`kumo_host_api::HostAgent::apply_network`]), which creates what is missing and removes what
//! is stale.
//! It runs when woken (every network change, instance create/destroy), periodically, and — at
//! start — before any guest is started, so a restarted `kumod` converges both ways.
//! A host without a data plane (the sim driver) applies nothing and reports so.

use super::{Error, Task};
use crate::App;
use kumo_host_api::net::{DesiredNet, Metadata, NicNet, PeerNet, RuleNet, VpcNet};
use kumo_types::network::RuleProtocol;
use kumo_types::HostId;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A stored conntrack zone as the kernel takes it (16 bits, never 0: that is the host's own).
fn zone_of(z: i64) -> anyhow::Result<u16> {
    u16::try_from(z).ok().filter(|z| *z != 0).ok_or_else(|| anyhow::anyhow!("conntrack zone {z} is out of range"))
}

/// The desired network state of host `host`.
pub async fn desired(app: &App, host: HostId) -> anyhow::Result<DesiredNet> {
    let mut conn = app.store.read().await?;
    let nics = kumo_store::nics::on_host(&mut conn, host).await?;
    let subnets = kumo_store::vpcs::all_subnets(&mut conn, None).await?;
    let memberships = kumo_store::security_groups::memberships(&mut conn).await?;
    let rules = kumo_store::security_groups::rules(&mut conn, None).await?;
    let mut vpcs: BTreeMap<i64, VpcNet> = BTreeMap::new();
    // Only VPCs with an interface on this host get a bridge here.
    for n in &nics {
        let zone = zone_of(n.ct_zone)?;
        vpcs.entry(n.vni).or_insert_with(|| VpcNet { vni: n.vni, zone, subnets: Vec::new() });
    }
    for s in &subnets {
        if let Some(v) = vpcs.get_mut(&s.vni) {
            v.subnets.push(s.plan.net);
        }
    }
    let mut out = DesiredNet { public_pool: app.config.public_ip_pool, ..DesiredNet::default() };
    for n in nics {
        let keys = kumo_store::nics::instance_ssh_keys(&mut conn, n.instance_id).await?;
        let groups = memberships.iter().filter(|(i, _)| *i == n.instance_id).map(|(_, g)| g.get()).collect();
        out.nics.push(NicNet {
            id: n.id.get(),
            vni: n.vni,
            zone: zone_of(n.ct_zone)?,
            subnet: n.subnet_cidr.parse()?,
            groups,
            metadata: Metadata {
                instance_id: n.instance_id.to_string(),
                hostname: n.instance_name.clone(),
                local_ipv4: n.ipv4.parse()?,
                public_ipv4: n.public_ip.as_deref().map(str::parse).transpose()?,
                ssh_keys: keys,
                user_data: n.user_data.clone(),
                mac: n.mac.clone(),
            },
        });
    }
    for (g, r) in rules {
        let peer = match (&r.source_cidr, &r.source_group) {
            (Some(c), _) => PeerNet::Cidr(c.parse()?),
            (None, Some((id, _))) => PeerNet::Group(id.get()),
            (None, None) => continue,
        };
        let protocol = match r.protocol {
            RuleProtocol::Any => None,
            p => Some(p.as_str().to_string()),
        };
        let rule = RuleNet {
            ingress: r.direction == kumo_types::network::RuleDirection::Ingress,
            protocol,
            ports: r.ports,
            peer,
        };
        out.rules.entry(g.get()).or_default().push(rule);
    }
    out.vpcs = vpcs.into_values().collect();
    Ok(out)
}

/// One pass: compute and apply (the loop's, or one asked for directly, e.g. before a guest
/// starts; passes never overlap).
pub async fn converge(app: &App) -> Result<(), Error> {
    app.network.run_pass(converge_once(app)).await.map(|_| ())
}

/// Converges every host with an agent; a host that fails does not keep the others from
/// converging (the pass then reports the first failure).
async fn converge_once(app: &App) -> Result<u64, Error> {
    let mut changes = 0;
    let mut first_error = None;
    for host in app.hosts.reachable() {
        match converge_host(app, host).await {
            Ok(n) => changes += n,
            Err(e) => {
                tracing::warn!(%host, "network: {e:#}");
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e.into()),
        None => Ok(changes),
    }
}

/// A pass for one host alone (e.g. before one of its guests starts: its taps must exist), under
/// the same pass lock.
pub async fn converge_one(app: &App, host: HostId) -> Result<(), Error> {
    app.network.run_pass(async { Ok(converge_host(app, host).await?) }).await.map(|_| ())
}

async fn converge_host(app: &App, host: HostId) -> anyhow::Result<u64> {
    let Some(agent) = app.hosts.get(host) else { return Ok(0) };
    let want = desired(app, host).await?;
    match agent.apply_network(want).await? {
        Some(report) => {
            app.network.update(|s| s.leaks_collected += report.removed.len() as u64);
            if !report.created.is_empty() || !report.removed.is_empty() {
                tracing::info!(%host, created = ?report.created, removed = ?report.removed, "network converged");
            }
            Ok((report.created.len() + report.removed.len()) as u64)
        }
        None => Ok(0),
    }
}

/// The network reconciler task (see [`super::spawn`]).
pub struct Converge;

impl Task for Converge {
    async fn pass(&mut self, app: &Arc<App>) -> Result<u64, Error> {
        converge_once(app).await
    }
}
