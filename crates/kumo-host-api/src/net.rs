//! Tenant networking: the desired state of one host's data plane, and what applying it changed.
//! The control plane computes a [`DesiredNet`] from the store; the host converges to it (bridges,
//! taps, nft ruleset, DHCP leases, metadata) and answers with an [`ApplyReport`].

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use uuid::Uuid;

/// Tap of an interface, from its MAC (unique among live interfaces): `kt` + its last 4 bytes.
/// The host's naming: the control plane never needs it (it sends MACs, see
/// [`crate::NicSpec`]).
pub fn tap_name(mac: &str) -> String {
    let hex: String = mac.split(':').skip(2).collect();
    format!("kt{hex}")
}

/// A VPC on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpcNet {
    pub vni: i64,
    /// Conntrack zone of the VPC's traffic (16-bit, allocated apart from the VNI).
    pub zone: u16,
    pub subnets: Vec<Ipv4Net>,
}

/// What one instance may read about itself (the metadata service).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    pub instance_id: String,
    pub hostname: String,
    pub local_ipv4: Ipv4Addr,
    pub public_ipv4: Option<Ipv4Addr>,
    pub ssh_keys: Vec<String>,
    pub user_data: Option<String>,
    pub mac: String,
}

/// A guest interface on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicNet {
    pub id: Uuid,
    pub vni: i64,
    /// Its VPC's conntrack zone.
    pub zone: u16,
    pub subnet: Ipv4Net,
    pub groups: Vec<Uuid>,
    pub metadata: Metadata,
}

impl NicNet {
    pub fn tap(&self) -> String {
        tap_name(&self.metadata.mac)
    }
    pub fn ip(&self) -> Ipv4Addr {
        self.metadata.local_ipv4
    }
}

/// Where a rule's peers are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerNet {
    Cidr(Ipv4Net),
    /// Members of a security group (their addresses in the same VPC).
    Group(Uuid),
}

/// One security group rule, as the host applies it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleNet {
    pub ingress: bool,
    /// `tcp`, `udp`, `icmp`, or None for any.
    pub protocol: Option<String>,
    pub ports: Option<(u16, u16)>,
    pub peer: PeerNet,
}

/// What the host's tenant networking should look like.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredNet {
    pub vpcs: Vec<VpcNet>,
    pub nics: Vec<NicNet>,
    pub rules: BTreeMap<Uuid, Vec<RuleNet>>,
    pub public_pool: Option<Ipv4Net>,
}

/// What applying a [`DesiredNet`] changed.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyReport {
    pub created: Vec<String>,
    pub removed: Vec<String>,
}
