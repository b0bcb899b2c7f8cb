//! Tenant networking: VPCs, subnets (and their IPAM arithmetic), security groups and their rules,
//! SSH keys, floating IPs, and an instance's network interfaces.
//!
//! The address arithmetic lives here, in one place, so the store (allocation), the API (validation)
//! and the agent (gateway on the bridge, DHCP answers) agree on what a subnet's reserved addresses
//! are: the network address, the gateway (first host) and the broadcast address.

use crate::Name;
use crate::{FloatingIpId, SecurityGroupId, SshKeyId, SubnetId, VpcId};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use utoipa::ToSchema;
use uuid::Uuid;

/// Smallest subnet prefix accepted: a /29 leaves 5 addresses for instances.
pub const SUBNET_MAX_PREFIX: u8 = 29;
/// Largest subnet accepted (a /16: 65,533 instances).
pub const SUBNET_MIN_PREFIX: u8 = 16;

/// Parses a private IPv4 CIDR for a VPC or subnet ("10.10.0.0/16"). The address must be the
/// network address (no host bits), so "10.10.1.5/24" is refused with the right spelling.
pub fn parse_private_cidr(what: &str, s: &str) -> Result<Ipv4Net, String> {
    let net: Ipv4Net =
        s.parse().map_err(|_| format!("{what} '{s}' is not an IPv4 CIDR (write it like 10.10.0.0/16)"))?;
    if net.network() != net.addr() {
        return Err(format!("{what} '{s}' has host bits set; did you mean {}?", net.trunc()));
    }
    if !net.addr().is_private() {
        return Err(format!("{what} '{s}' is not in a private range (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16)"));
    }
    if net.prefix_len() < 8 || net.prefix_len() > SUBNET_MAX_PREFIX {
        return Err(format!("{what} '{s}' must have a prefix between /8 and /{SUBNET_MAX_PREFIX}"));
    }
    Ok(net)
}

/// The reserved addresses and the allocatable range of a subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubnetPlan {
    pub net: Ipv4Net,
}

impl SubnetPlan {
    pub fn new(net: Ipv4Net) -> SubnetPlan {
        SubnetPlan { net }
    }
    /// The gateway: the first host address, held by the host on the VPC's bridge.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.net.network()) + 1)
    }
    pub fn broadcast(&self) -> Ipv4Addr {
        self.net.broadcast()
    }
    /// How many addresses instances can get.
    pub fn capacity(&self) -> u32 {
        (u32::from(self.broadcast()) - u32::from(self.net.network())).saturating_sub(2)
    }
    /// Whether instances may get `ip` (inside, and not network, gateway or broadcast).
    pub fn assignable(&self, ip: Ipv4Addr) -> bool {
        self.net.contains(&ip) && ip != self.net.network() && ip != self.gateway() && ip != self.broadcast()
    }
    /// The lowest assignable address not in `used` (sorted ascending), or None when exhausted.
    pub fn first_free(&self, used: &[Ipv4Addr]) -> Option<Ipv4Addr> {
        let first = u32::from(self.gateway()) + 1;
        let last = u32::from(self.broadcast()).checked_sub(1)?;
        let mut candidate = first;
        for u in used.iter().map(|u| u32::from(*u)).filter(|u| *u >= first && *u <= last) {
            if u > candidate {
                break;
            }
            if u == candidate {
                candidate += 1;
            }
        }
        (candidate <= last).then(|| Ipv4Addr::from(candidate))
    }
}

/// A MAC address for an interface, derived from its id: locally administered, unicast (02:…).
pub fn mac_for(id: Uuid) -> String {
    let b = id.as_bytes();
    // The last bytes of a UUIDv7 are random.
    format!("02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[11], b[12], b[13], b[14], b[15])
}

/// A virtual private cloud: an isolated layer-2/3 network of a project.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VpcView {
    /// Unique id (UUID).
    #[schema(value_type = Uuid)]
    pub id: VpcId,
    /// Name, unique within the project.
    pub name: String,
    /// Free-form description.
    pub description: String,
    /// When it was created.
    pub time_created: chrono::DateTime<chrono::Utc>,
    /// When it was last changed.
    pub time_modified: chrono::DateTime<chrono::Utc>,
    /// Name of the project it belongs to.
    pub project: String,
    /// Its IPv4 address range; every subnet is inside it.
    pub ipv4_cidr: String,
    /// The VXLAN network identifier that names its bridge on every host.
    pub vni: i64,
}

/// Parameters to create a VPC.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VpcCreate {
    /// Name, unique within the project.
    pub name: Name,
    /// Free-form description.
    #[serde(default)]
    #[schema(max_length = 512)]
    pub description: String,
    /// A private IPv4 range, e.g. "10.10.0.0/16".
    #[schema(
        pattern = "^(10\\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])|172\\.(1[6-9]|2[0-9]|3[01])\\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])|192\\.168\\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9]))/([89]|1[0-9]|2[0-9])$"
    )]
    pub ipv4_cidr: String,
}

/// A subnet of a VPC: instances get their address from it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SubnetView {
    /// Unique id (UUID).
    #[schema(value_type = Uuid)]
    pub id: SubnetId,
    /// Name, unique within the VPC.
    pub name: String,
    /// Free-form description.
    pub description: String,
    /// When it was created.
    pub time_created: chrono::DateTime<chrono::Utc>,
    /// When it was last changed.
    pub time_modified: chrono::DateTime<chrono::Utc>,
    /// Name of the project it belongs to.
    pub project: String,
    /// Name of its VPC.
    pub vpc: String,
    /// Its IPv4 range, inside the VPC's.
    pub ipv4_cidr: String,
    /// The gateway address (the first host address; reserved).
    pub gateway: String,
    /// How many addresses instances can get (network, gateway and broadcast are reserved).
    pub capacity: i64,
    /// How many of them are allocated.
    pub allocated: i64,
}

/// Parameters to create a subnet.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubnetCreate {
    /// Name, unique within the VPC.
    pub name: Name,
    /// Free-form description.
    #[serde(default)]
    #[schema(max_length = 512)]
    pub description: String,
    /// A range inside the VPC's, not overlapping its other subnets, e.g. "10.10.1.0/24".
    #[schema(
        pattern = "^(10\\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])|172\\.(1[6-9]|2[0-9]|3[01])\\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])|192\\.168\\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9]))/([89]|1[0-9]|2[0-9])$"
    )]
    pub ipv4_cidr: String,
}

/// Traffic direction of a rule, seen from the instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuleDirection {
    /// Towards the instance.
    Ingress,
    /// From the instance.
    Egress,
}

/// Protocol a rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuleProtocol {
    Tcp,
    Udp,
    Icmp,
    Any,
}

impl RuleDirection {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleDirection::Ingress => "ingress",
            RuleDirection::Egress => "egress",
        }
    }
    pub fn parse(s: &str) -> Option<RuleDirection> {
        [RuleDirection::Ingress, RuleDirection::Egress].into_iter().find(|d| d.as_str() == s)
    }
}

impl RuleProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleProtocol::Tcp => "tcp",
            RuleProtocol::Udp => "udp",
            RuleProtocol::Icmp => "icmp",
            RuleProtocol::Any => "any",
        }
    }
    pub fn parse(s: &str) -> Option<RuleProtocol> {
        [RuleProtocol::Tcp, RuleProtocol::Udp, RuleProtocol::Icmp, RuleProtocol::Any]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

/// One security group rule, as on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecurityRule {
    /// `ingress` (towards the instance) or `egress`.
    pub direction: RuleDirection,
    /// `tcp`, `udp`, `icmp` or `any`.
    pub protocol: RuleProtocol,
    /// A port ("80") or an inclusive range ("8000-8080"); only for tcp and udp (null: every port).
    #[serde(default)]
    #[schema(
        pattern = "^(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})(-(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?$"
    )]
    pub port_range: Option<String>,
    /// Who may send (ingress) or be reached (egress): a CIDR ("0.0.0.0/0") or a security group
    /// name of the same project (its members' addresses).
    #[schema(
        pattern = "^(((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])/(3[0-2]|[12]?[0-9])|[a-z]([a-z0-9-]{0,61}[a-z0-9])?)$"
    )]
    pub source: String,
}

/// Where a rule's traffic may come from (or go to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleSource {
    Cidr(Ipv4Net),
    Group(Name),
}

/// A rule after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedRule {
    pub direction: RuleDirection,
    pub protocol: RuleProtocol,
    pub ports: Option<(u16, u16)>,
    pub source: RuleSource,
}

/// Most rules a group may hold.
pub const RULES_MAX: usize = 2000;

impl SecurityRule {
    /// Validates the rule; the message names the rule's position (`index`, from 0).
    pub fn parse(&self, index: usize) -> Result<ParsedRule, String> {
        let at = |m: String| format!("rules[{index}]: {m}");
        let ports = match &self.port_range {
            None => None,
            Some(p) => {
                if !matches!(self.protocol, RuleProtocol::Tcp | RuleProtocol::Udp) {
                    return Err(at(format!("port_range is only for tcp and udp, not {}", self.protocol.as_str())));
                }
                let bad =
                    || at(format!("port_range '{p}' must be a port (\"80\") or a range (\"8000-8080\") in 1-65535"));
                let (a, b) = match p.split_once('-') {
                    Some((a, b)) => (a.trim(), b.trim()),
                    None => (p.trim(), p.trim()),
                };
                let a: u16 = a.parse().map_err(|_| bad())?;
                let b: u16 = b.parse().map_err(|_| bad())?;
                if a == 0 || b < a {
                    return Err(bad());
                }
                Some((a, b))
            }
        };
        let source = if self.source.contains('/') {
            let net: Ipv4Net = self
                .source
                .parse()
                .map_err(|_| at(format!("source '{}' is neither an IPv4 CIDR nor a group name", self.source)))?;
            RuleSource::Cidr(net.trunc())
        } else {
            RuleSource::Group(Name::parse(&self.source).map_err(|e| {
                at(format!("source '{}' is neither an IPv4 CIDR (a.b.c.d/n) nor a group name: {e}", self.source))
            })?)
        };
        Ok(ParsedRule { direction: self.direction, protocol: self.protocol, ports, source })
    }
}

impl ParsedRule {
    /// The wire form of the port range.
    pub fn port_range(&self) -> Option<String> {
        self.ports.map(|(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") })
    }
}

/// The rule list of a group (the body of `PUT …/rules` and the answer of `GET …/rules`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecurityRules {
    /// Every rule of the group, in order; a PUT replaces them all atomically.
    #[schema(max_items = 2000)]
    pub rules: Vec<SecurityRule>,
}

/// A security group: a stateful firewall attached to instances.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SecurityGroupView {
    /// Unique id (UUID).
    #[schema(value_type = Uuid)]
    pub id: SecurityGroupId,
    /// Name, unique within the project.
    pub name: String,
    /// Free-form description.
    pub description: String,
    /// When it was created.
    pub time_created: chrono::DateTime<chrono::Utc>,
    /// When it was last changed.
    pub time_modified: chrono::DateTime<chrono::Utc>,
    /// Name of the project it belongs to.
    pub project: String,
    /// How many rules it holds.
    pub rule_count: i64,
}

/// Parameters to create a security group.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecurityGroupCreate {
    /// Name, unique within the project.
    pub name: Name,
    /// Free-form description.
    #[serde(default)]
    #[schema(max_length = 512)]
    pub description: String,
}

/// An SSH public key instances can be given at creation.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SshKeyView {
    /// Unique id (UUID).
    #[schema(value_type = Uuid)]
    pub id: SshKeyId,
    /// Name, unique within the project.
    pub name: String,
    /// Free-form description.
    pub description: String,
    /// When it was created.
    pub time_created: chrono::DateTime<chrono::Utc>,
    /// When it was last changed.
    pub time_modified: chrono::DateTime<chrono::Utc>,
    /// Name of the project it belongs to.
    pub project: String,
    /// The public key, in OpenSSH format ("ssh-ed25519 AAAA… comment").
    pub public_key: String,
}

/// Parameters to import an SSH key.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SshKeyCreate {
    /// Name, unique within the project.
    pub name: Name,
    /// Free-form description.
    #[serde(default)]
    #[schema(max_length = 512)]
    pub description: String,
    /// The public key, in OpenSSH format ("ssh-ed25519 AAAA… comment").
    #[schema(
        max_length = 8192,
        pattern = "^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp256|ecdsa-sha2-nistp384|ecdsa-sha2-nistp521|sk-ssh-ed25519@openssh\\.com) +[A-Za-z0-9+/]+={0,2}( +[^\\n]*)?$"
    )]
    pub public_key: String,
}

/// Checks the shape of an OpenSSH public key line: `<type> <base64> [comment]`.
pub fn check_public_key(key: &str) -> Result<(), String> {
    const TYPES: [&str; 6] = [
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
    ];
    let key = key.trim();
    if key.contains('\n') || key.len() > 8192 {
        return Err("public_key must be one line of at most 8 KiB".into());
    }
    let mut parts = key.split_whitespace();
    let (Some(kind), Some(body)) = (parts.next(), parts.next()) else {
        return Err("public_key must look like 'ssh-ed25519 AAAA… comment' (OpenSSH format)".into());
    };
    if !TYPES.contains(&kind) {
        return Err(format!("public_key type '{kind}' is not supported (use one of {})", TYPES.join(", ")));
    }
    use base64::Engine;
    let blob = base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|_| "public_key's second field is not base64 (is it the private key?)".to_string())?;
    // The blob starts with the key type as an SSH string.
    if blob.len() < 4 + kind.len() || &blob[4..4 + kind.len()] != kind.as_bytes() {
        return Err(format!("public_key's base64 body is not a {kind} key"));
    }
    Ok(())
}

/// A public IPv4 address from the operator's pool, attachable to one instance.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FloatingIpView {
    /// Unique id (UUID).
    #[schema(value_type = Uuid)]
    pub id: FloatingIpId,
    /// Name, unique within the project.
    pub name: String,
    /// Free-form description.
    pub description: String,
    /// When it was created.
    pub time_created: chrono::DateTime<chrono::Utc>,
    /// When it was last changed.
    pub time_modified: chrono::DateTime<chrono::Utc>,
    /// Name of the project it belongs to.
    pub project: String,
    /// The public address.
    pub ip: String,
    /// Name of the instance it is attached to (null when detached).
    pub instance: Option<String>,
}

/// Parameters to allocate a floating IP.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FloatingIpCreate {
    /// Name, unique within the project.
    pub name: Name,
    /// Free-form description.
    #[serde(default)]
    #[schema(max_length = 512)]
    pub description: String,
}

/// Parameters to attach a floating IP.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FloatingIpAttach {
    /// The instance (name or id) of the same project.
    #[schema(
        pattern = "^([a-z]([a-z0-9-]{0,61}[a-z0-9])?|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
    )]
    pub instance: String,
}

/// A network interface of an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NetworkInterfaceView {
    /// Its MAC address.
    pub mac: String,
    /// Its private IPv4 address (allocated by IPAM, delivered by DHCP).
    pub ipv4: String,
    /// Name of its VPC.
    pub vpc: String,
    /// Name of its subnet.
    pub subnet: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(s: &str) -> SubnetPlan {
        SubnetPlan::new(s.parse().unwrap())
    }

    #[test]
    fn reserved_addresses() {
        let p = plan("10.10.1.0/24");
        assert_eq!(p.gateway(), Ipv4Addr::new(10, 10, 1, 1));
        assert_eq!(p.broadcast(), Ipv4Addr::new(10, 10, 1, 255));
        assert_eq!(p.capacity(), 253);
        assert!(!p.assignable(Ipv4Addr::new(10, 10, 1, 0)));
        assert!(!p.assignable(Ipv4Addr::new(10, 10, 1, 1)));
        assert!(!p.assignable(Ipv4Addr::new(10, 10, 1, 255)));
        assert!(p.assignable(Ipv4Addr::new(10, 10, 1, 2)));
        assert!(!p.assignable(Ipv4Addr::new(10, 10, 2, 2)));
    }

    #[test]
    fn first_free_fills_holes_and_exhausts() {
        let p = plan("10.0.0.0/29"); // .2 .. .6 assignable
        assert_eq!(p.capacity(), 5);
        let mut used = vec![];
        for want in 2..=6u8 {
            let ip = p.first_free(&used).unwrap();
            assert_eq!(ip, Ipv4Addr::new(10, 0, 0, want));
            used.push(ip);
        }
        assert_eq!(p.first_free(&used), None);
        used.remove(1); // .3 freed
        assert_eq!(p.first_free(&used), Some(Ipv4Addr::new(10, 0, 0, 3)));
    }

    #[test]
    fn cidrs_are_checked() {
        assert!(parse_private_cidr("ipv4_cidr", "10.10.0.0/16").is_ok());
        assert!(parse_private_cidr("ipv4_cidr", "10.10.1.5/24").unwrap_err().contains("10.10.1.0/24"));
        assert!(parse_private_cidr("ipv4_cidr", "8.8.8.0/24").unwrap_err().contains("private"));
        assert!(parse_private_cidr("ipv4_cidr", "nonsense").is_err());
        assert!(parse_private_cidr("ipv4_cidr", "10.0.0.0/30").is_err());
    }

    #[test]
    fn rules_parse() {
        let r = SecurityRule {
            direction: RuleDirection::Ingress,
            protocol: RuleProtocol::Tcp,
            port_range: Some("8000-8080".into()),
            source: "0.0.0.0/0".into(),
        };
        let p = r.parse(0).unwrap();
        assert_eq!(p.ports, Some((8000, 8080)));
        assert_eq!(p.port_range().as_deref(), Some("8000-8080"));
        let g = SecurityRule { source: "web".into(), port_range: Some("80".into()), ..r.clone() };
        assert_eq!(g.parse(0).unwrap().source, RuleSource::Group(Name::parse("web").unwrap()));
        let bad = SecurityRule { port_range: Some("90-80".into()), ..r.clone() };
        assert!(bad.parse(3).unwrap_err().starts_with("rules[3]"));
        let icmp = SecurityRule { protocol: RuleProtocol::Icmp, ..r };
        assert!(icmp.parse(0).is_err());
    }

    #[test]
    fn ssh_keys_are_checked() {
        let good = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f user@laptop";
        assert!(check_public_key(good).is_ok(), "{:?}", check_public_key(good));
        assert!(check_public_key("ssh-ed25519").is_err());
        assert!(check_public_key("ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIFake").is_err());
        assert!(check_public_key("-----BEGIN OPENSSH PRIVATE KEY-----").is_err());
    }
}
