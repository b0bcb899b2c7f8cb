//! The host data plane of tenant networks.
//!
//! ```text
//!  guest eth0 ─ tap kt<mac> ─┐                       (one Linux bridge per VPC, named by its VNI;
//!  guest eth0 ─ tap kt<mac> ─┼─ bridge kv<vni> ─ …    a VXLAN port vx<vni> joins it for multi-host)
//!                            │   gateway of each subnet (noprefixroute), 169.254.169.254/32
//!                            │   DHCP socket + metadata listener bound to the bridge
//!  routing table 1000+vni: the VPC's subnets on kv<vni>; `ip rule fwmark 1000+vni` selects it
//!  nft: `bridge kumo` (anti-spoofing per tap), `inet kumo` (security groups, VPC isolation,
//!  conntrack zones per VPC, floating-IP DNAT/SNAT); the whole ruleset replaced atomically
//!  kumo-pub: the public uplink (a portless bridge) holding the public pool's first address
//! ```
//!
//! Everything lives in one network namespace: the machine's own (production), or the one named
//! by `kumod --host-netns NAME` (tests, simulated hosts). [`HostNet::apply`] converges the host
//! to a [`DesiredNet`] computed from the store: it creates what is missing and removes what is
//! stale (bridges, taps, addresses, routes, rules, nft tables, DHCP/metadata listeners), so it
//! serves both after an API change and after a crash. Overlapping CIDRs in two VPCs need no VRF:
//! addresses carry no prefix route, each VPC's routes sit in its own table selected by firewall
//! mark, DHCP/metadata sockets are bound to their bridge, and conntrack uses a zone per VPC (a 16-bit id
//! allocated with the VPC, reused after deletes; the VNI is a separate, 24-bit id).

pub mod dhcp;
pub mod metadata;
pub mod netns;
pub mod nft;

use ipnet::Ipv4Net;
use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, RwLock};

pub use dhcp::Lease;
pub use kumo_host_api::net::{tap_name, ApplyReport, DesiredNet, Metadata, NicNet, PeerNet, RuleNet, VpcNet};

/// The public uplink (a bridge without ports holding the pool's first address; a physical NIC
/// joins it in production).
pub const UPLINK: &str = "kumo-pub";

/// Bridge of a VPC.
pub fn bridge_name(vni: i64) -> String {
    format!("kv{vni}")
}

/// Routing table (and firewall mark) of a VPC.
pub fn vpc_table(vni: i64) -> u32 {
    1000 + vni as u32
}

/// DHCP leases and metadata of every interface, by bridge: what the in-process DHCP and metadata
/// servers answer from. Replaced as a whole by each [`HostNet::apply`].
#[derive(Debug, Default)]
pub struct Leases {
    by_bridge: RwLock<HashMap<String, Vec<(Lease, Metadata)>>>,
}

impl Leases {
    pub fn dhcp(&self, bridge: &str, mac: &str) -> Option<Lease> {
        let g = self.by_bridge.read().unwrap_or_else(|p| p.into_inner());
        g.get(bridge)?.iter().find(|(_, m)| m.mac == mac).map(|(l, _)| l.clone())
    }
    pub fn metadata(&self, bridge: &str, ip: Ipv4Addr) -> Option<Metadata> {
        let g = self.by_bridge.read().unwrap_or_else(|p| p.into_inner());
        g.get(bridge)?.iter().find(|(l, _)| l.ip == ip).map(|(_, m)| m.clone())
    }
    fn replace(&self, map: HashMap<String, Vec<(Lease, Metadata)>>) {
        *self.by_bridge.write().unwrap_or_else(|p| p.into_inner()) = map;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("{0}")]
    Tool(#[from] crate::system::tool::ToolError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("nft: {0}")]
    Nft(String),
}

struct Servers {
    dhcp: tokio::task::JoinHandle<()>,
    metadata: tokio::task::JoinHandle<()>,
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.dhcp.abort();
        self.metadata.abort();
    }
}

/// The tenant-network data plane of this host.
pub struct HostNet {
    netns: Option<String>,
    leases: Arc<Leases>,
    servers: tokio::sync::Mutex<HashMap<String, Servers>>,
    /// The last desired state applied successfully, and when the host was last fully checked:
    /// a pass whose links did not change skips the `ip` work (only nft and leases are redone),
    /// and a pass with nothing new does nothing, unless [`FULL_CHECK`] has passed.
    applied: tokio::sync::Mutex<Option<(DesiredNet, std::time::Instant)>>,
}

/// How often the host is checked in full even when the store did not change (drift, leftovers).
pub const FULL_CHECK: std::time::Duration = std::time::Duration::from_secs(30);

/// The part of the desired state that the `ip` steps depend on.
fn links_of(d: &DesiredNet) -> (Vec<VpcNet>, Vec<(String, i64)>, Option<Ipv4Net>) {
    (d.vpcs.clone(), d.nics.iter().map(|n| (n.tap(), n.vni)).collect(), d.public_pool)
}

impl HostNet {
    pub fn new(netns: Option<String>) -> HostNet {
        HostNet { netns, leases: Arc::default(), servers: Default::default(), applied: Default::default() }
    }

    pub fn netns(&self) -> Option<&str> {
        self.netns.as_deref()
    }

    async fn ip<S: AsRef<str>>(&self, args: &[S]) -> Result<std::process::Output, NetError> {
        let mut a: Vec<String> = Vec::new();
        if let Some(ns) = &self.netns {
            a.extend(["-n".to_string(), ns.clone()]);
        }
        a.extend(args.iter().map(|s| s.as_ref().to_string()));
        Ok(crate::system::tool::run("ip", &a).await?)
    }

    async fn ip_json<S: AsRef<str>>(&self, args: &[S]) -> Result<Vec<serde_json::Value>, NetError> {
        let mut a = vec!["-j".to_string()];
        a.extend(args.iter().map(|s| s.as_ref().to_string()));
        let out = self.ip(&a).await?;
        Ok(serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).unwrap_or_default())
    }

    /// Writes a sysctl inside the namespace.
    async fn sysctl(&self, key: &str, value: &str) -> Result<(), NetError> {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let value = value.to_string();
        netns::run_in(self.netns.as_deref(), move || std::fs::write(&path, value))?;
        Ok(())
    }

    /// Creates the namespace if it is missing, and sets what the data plane relies on.
    async fn prepare(&self) -> Result<(), NetError> {
        if let Some(ns) = &self.netns {
            if !netns::exists(ns) {
                crate::system::tool::run("ip", ["netns", "add", ns.as_str()]).await?;
                self.ip(&["link", "set", "lo", "up"]).await?;
            }
        }
        self.sysctl("net.ipv4.ip_forward", "1").await?;
        // Bridged traffic passes the inet hooks (security groups with conntrack).
        self.sysctl("net.bridge.bridge-nf-call-iptables", "1").await?;
        Ok(())
    }

    /// Names of links whose name starts with `prefix`.
    async fn links(&self, prefix: &str) -> Result<HashSet<String>, NetError> {
        Ok(self
            .ip_json(&["link", "show"])
            .await?
            .iter()
            .filter_map(|l| l["ifname"].as_str())
            .filter(|n| n.starts_with(prefix))
            .map(String::from)
            .collect())
    }

    /// Converges the host to `want`. Idempotent; safe to call after a crash.
    pub async fn apply(&self, want: &DesiredNet) -> Result<ApplyReport, NetError> {
        let mut applied = self.applied.lock().await;
        let mut report = ApplyReport::default();
        let fresh = applied.as_ref().filter(|(_, at)| at.elapsed() < FULL_CHECK);
        if fresh.is_some_and(|(d, _)| d == want) {
            return Ok(report);
        }
        if fresh.is_some_and(|(d, _)| links_of(d) == links_of(want)) {
            // Only rules, addresses' metadata or leases changed.
            let checked = applied.as_ref().map(|(_, at)| *at).unwrap_or_else(std::time::Instant::now);
            nft::apply(self.netns.as_deref(), &nft::ruleset(want)).await?;
            self.serve(want).await?;
            *applied = Some((want.clone(), checked));
            return Ok(report);
        }
        self.prepare().await?;
        let bridges = self.links("kv").await?;
        let taps = self.links("kt").await?;

        // Bridges, their addresses and routing tables.
        for vpc in &want.vpcs {
            let br = bridge_name(vpc.vni);
            if !bridges.contains(&br) {
                self.ip(&["link", "add", &br, "type", "bridge"]).await?;
                report.created.push(format!("bridge {br}"));
            }
            self.ip(&["link", "set", &br, "up"]).await?;
            self.sysctl(&format!("net.ipv4.conf.{br}.rp_filter"), "0").await?;
            let mut addrs: Vec<String> =
                vpc.subnets.iter().map(|s| format!("{}/{}", first_host(s), s.prefix_len())).collect();
            addrs.push(format!("{}/32", metadata::METADATA_IP));
            let have: HashSet<String> = self
                .ip_json(&["addr", "show", "dev", &br])
                .await?
                .iter()
                .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
                .filter(|a| a["family"] == "inet")
                .filter_map(|a| Some(format!("{}/{}", a["local"].as_str()?, a["prefixlen"].as_u64()?)))
                .collect();
            for a in &addrs {
                if !have.contains(a) {
                    self.ip(&["addr", "add", a, "dev", &br, "noprefixroute"]).await?;
                }
            }
            for a in have.iter().filter(|a| !addrs.contains(a)) {
                self.ip(&["addr", "del", a, "dev", &br]).await?;
            }
            let table = vpc_table(vpc.vni).to_string();
            if self.ip_json(&["route", "show", "table", &table]).await.is_ok() {
                self.ip(&["route", "flush", "table", &table]).await.ok();
            }
            for s in &vpc.subnets {
                let (net, src) = (s.to_string(), first_host(s).to_string());
                self.ip(&["route", "replace", &net, "dev", &br, "src", &src, "table", &table]).await?;
            }
        }
        // Policy rules: one per VPC, `fwmark T lookup T`.
        let want_tables: HashSet<u32> = want.vpcs.iter().map(|v| vpc_table(v.vni)).collect();
        let rules = self.ip_json(&["rule", "show"]).await?;
        let have_tables: HashSet<u32> = rules
            .iter()
            .filter(|r| r["fwmark"].is_string())
            .filter_map(|r| r["table"].as_str().and_then(|t| t.parse().ok()))
            .filter(|t| *t > 1000 && *t < 1_000_000)
            .collect();
        for t in want_tables.difference(&have_tables) {
            let t = t.to_string();
            self.ip(&["rule", "add", "fwmark", &t, "lookup", &t, "priority", "100"]).await?;
        }
        for t in have_tables.difference(&want_tables) {
            let t = t.to_string();
            self.ip(&["rule", "del", "fwmark", &t, "lookup", &t]).await.ok();
            self.ip(&["route", "flush", "table", &t]).await.ok();
        }

        // Taps on their bridges.
        let want_taps: HashSet<String> = want.nics.iter().map(NicNet::tap).collect();
        for nic in &want.nics {
            let tap = nic.tap();
            if !taps.contains(&tap) {
                self.ip(&["tuntap", "add", "dev", &tap, "mode", "tap"]).await?;
                report.created.push(format!("tap {tap}"));
            }
            self.ip(&["link", "set", &tap, "master", &bridge_name(nic.vni), "up"]).await?;
        }
        for tap in taps.difference(&want_taps) {
            self.ip(&["link", "del", tap]).await?;
            report.removed.push(format!("tap {tap}"));
        }
        let want_bridges: HashSet<String> = want.vpcs.iter().map(|v| bridge_name(v.vni)).collect();
        for br in bridges.difference(&want_bridges) {
            self.ip(&["link", "del", br]).await?;
            report.removed.push(format!("bridge {br}"));
        }

        // The public uplink.
        let uplinks = self.links(UPLINK).await?;
        match &want.public_pool {
            Some(pool) => {
                if uplinks.is_empty() {
                    // A bridge with no ports: it holds the address and routes (no dummy devices everywhere).
                    self.ip(&["link", "add", UPLINK, "type", "bridge"]).await?;
                    report.created.push(format!("uplink {UPLINK}"));
                }
                let a = format!("{}/{}", first_host(pool), pool.prefix_len());
                self.ip(&["addr", "replace", &a, "dev", UPLINK]).await?;
                self.ip(&["link", "set", UPLINK, "up"]).await?;
            }
            None if !uplinks.is_empty() => {
                self.ip(&["link", "del", UPLINK]).await?;
                report.removed.push(format!("uplink {UPLINK}"));
            }
            None => {}
        }

        // Firewall: one atomic transaction.
        nft::apply(self.netns.as_deref(), &nft::ruleset(want)).await?;

        self.serve(want).await?;
        *applied = Some((want.clone(), std::time::Instant::now()));
        Ok(report)
    }

    /// Updates the DHCP leases and metadata, and runs a DHCP and metadata server per bridge.
    async fn serve(&self, want: &DesiredNet) -> Result<(), NetError> {
        let want_bridges: HashSet<String> = want.vpcs.iter().map(|v| bridge_name(v.vni)).collect();
        let mut by_bridge: HashMap<String, Vec<(Lease, Metadata)>> = HashMap::new();
        for nic in &want.nics {
            let lease = Lease {
                ip: nic.ip(),
                prefix: nic.subnet.prefix_len(),
                gateway: first_host(&nic.subnet),
                hostname: nic.metadata.hostname.clone(),
            };
            by_bridge.entry(bridge_name(nic.vni)).or_default().push((lease, nic.metadata.clone()));
        }
        self.leases.replace(by_bridge);
        let mut servers = self.servers.lock().await;
        servers.retain(|br, _| want_bridges.contains(br));
        for br in &want_bridges {
            if servers.contains_key(br) {
                continue;
            }
            let sock = dhcp::bind(self.netns.as_deref(), br)?;
            let listener = metadata::bind(self.netns.as_deref(), br)?;
            servers.insert(
                br.clone(),
                Servers {
                    dhcp: tokio::spawn(dhcp::serve(sock, br.clone(), self.leases.clone())),
                    metadata: tokio::spawn(metadata::serve(listener, br.clone(), self.leases.clone())),
                },
            );
        }
        Ok(())
    }

    /// Removes everything of the data plane (bridges, taps, rules, tables, uplink, servers).
    pub async fn teardown(&self) -> Result<ApplyReport, NetError> {
        self.apply(&DesiredNet::default()).await
    }
}

/// The first host address of a network (the gateway; the pool's uplink address).
pub fn first_host(net: &Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()) + 1)
}
