//! The host firewall, as nftables JSON built with the `nftables` crate and applied with
//! `nft -j -f -` in one transaction: the batch deletes Kumo's tables and recreates them, so the
//! kernel swaps the whole ruleset atomically (no window without rules) and nothing stale survives.
//!
//! - `bridge kumo`: anti-spoofing on every tap (source MAC, source IP, ARP sender; only IPv4 and
//!   ARP frames) and no DHCP server traffic from guests (UDP from port 67 or to port 68: a rogue
//!   DHCP server in a VPC could hand its peers another gateway). Those drops are counted.
//! - `inet kumo`: conntrack zone per VPC (overlapping addresses never share a connection entry),
//!   the VPC routing mark for floating-IP traffic, DNAT/SNAT of floating IPs, outbound NAT, no
//!   forwarding between VPC bridges, and security groups: a chain per interface that accepts
//!   established traffic, DHCP replies, members of its groups and the groups' ingress rules, and
//!   drops the rest. Egress is open unless a group of the interface has egress rules; then only
//!   those (and the group's members) are allowed out.

use super::{bridge_name, vpc_table, DesiredNet, NetError, NicNet, PeerNet, RuleNet};
use nftables::batch::Batch;
use nftables::expr::{Expression, Meta, MetaKey, NamedExpression, Payload, PayloadField, Prefix, Range, SetItem, CT};
use nftables::schema::{Chain, NfListObject, Nftables, Rule, Table};
use nftables::stmt::{JumpTarget, Mangle, Match, Operator, Statement, NAT};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};
use std::borrow::Cow;
use std::net::Ipv4Addr;

pub const TABLE: &str = "kumo";

fn s(v: impl Into<String>) -> Expression<'static> {
    Expression::String(Cow::Owned(v.into()))
}

fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

fn field(protocol: &'static str, f: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(PayloadField {
        protocol: Cow::Borrowed(protocol),
        field: Cow::Borrowed(f),
    })))
}

fn ct(key: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::CT(CT { key: Cow::Borrowed(key), family: None, dir: None }))
}

fn is(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match { left, right, op: Operator::EQ })
}

fn not(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match { left, right, op: Operator::NEQ })
}

fn set_of(items: impl IntoIterator<Item = Expression<'static>>) -> Expression<'static> {
    Expression::Named(NamedExpression::Set(items.into_iter().map(SetItem::Element).collect()))
}

fn prefix(net: &ipnet::Ipv4Net) -> Expression<'static> {
    Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(s(net.network().to_string())),
        len: net.prefix_len() as u32,
    }))
}

fn set_mangle(key: Expression<'static>, value: u32) -> Statement<'static> {
    Statement::Mangle(Mangle { key, value: Expression::Number(value) })
}

fn jump(target: String) -> Statement<'static> {
    Statement::Jump(JumpTarget { target: Cow::Owned(target) })
}

fn accept() -> Statement<'static> {
    Statement::Accept(None)
}

fn drop_() -> Statement<'static> {
    Statement::Drop(None)
}

/// An anonymous counter: `nft list ruleset` shows how many packets a drop rule caught.
fn counter() -> Statement<'static> {
    Statement::Counter(nftables::stmt::Counter::Anonymous(Some(nftables::stmt::AnonymousCounter::default())))
}

fn dnat(to: Ipv4Addr) -> Statement<'static> {
    Statement::DNAT(Some(NAT {
        addr: Some(s(to.to_string())),
        family: Some(nftables::stmt::NATFamily::IP),
        port: None,
        flags: None,
    }))
}

fn snat(to: Ipv4Addr) -> Statement<'static> {
    Statement::SNAT(Some(NAT {
        addr: Some(s(to.to_string())),
        family: Some(nftables::stmt::NATFamily::IP),
        port: None,
        flags: None,
    }))
}

struct Builder {
    batch: Batch<'static>,
}

impl Builder {
    fn chain(&mut self, family: NfFamily, name: &str, base: Option<(NfChainType, NfHook, i32)>) {
        let mut c =
            Chain { family, table: Cow::Borrowed(TABLE), name: Cow::Owned(name.to_string()), ..Chain::default() };
        if let Some((t, h, p)) = base {
            c._type = Some(t);
            c.hook = Some(h);
            c.prio = Some(p);
            c.policy = Some(NfChainPolicy::Accept);
        }
        self.batch.add(NfListObject::Chain(c));
    }
    fn rule(&mut self, family: NfFamily, chain: &str, expr: Vec<Statement<'static>>) {
        self.batch.add(NfListObject::Rule(Rule {
            family,
            table: Cow::Borrowed(TABLE),
            chain: Cow::Owned(chain.to_string()),
            expr: Cow::Owned(expr),
            ..Rule::default()
        }));
    }
}

/// The chain of an interface's ingress rules.
pub fn nic_chain(nic: &NicNet) -> String {
    format!("in-{}", nic.tap())
}

/// The whole ruleset for `want` (a transaction: delete Kumo's tables, recreate them), section by
/// section in this order (the order of the rules in a chain is the order they are added).
pub fn ruleset(want: &DesiredNet) -> Nftables<'static> {
    let mut b = Builder { batch: Batch::new() };
    let nothing = want.vpcs.is_empty() && want.nics.is_empty() && want.public_pool.is_none();
    tables(&mut b, !nothing);
    if nothing {
        return b.batch.to_nftables();
    }
    anti_spoofing(&mut b, want);
    zones(&mut b, want);
    floating_ips(&mut b, want);
    outbound_nat(&mut b, want);
    vpc_isolation(&mut b, want);
    egress_chains(&mut b, want);
    ingress_chains(&mut b, want);
    b.batch.to_nftables()
}

/// Deletes Kumo's tables (adding them first, so the delete never fails) and, with `recreate`,
/// recreates them empty.
fn tables(b: &mut Builder, recreate: bool) {
    for family in [NfFamily::Bridge, NfFamily::INet] {
        let t = Table { family, name: Cow::Borrowed(TABLE), ..Table::default() };
        b.batch.add(NfListObject::Table(t.clone()));
        b.batch.delete(NfListObject::Table(t));
    }
    if !recreate {
        return;
    }
    for family in [NfFamily::Bridge, NfFamily::INet] {
        b.batch.add(NfListObject::Table(Table { family, name: Cow::Borrowed(TABLE), ..Table::default() }));
    }
}

/// Anti-spoofing, per tap, at the bridge: source MAC, ARP sender, source IP, no DHCP server
/// traffic, nothing but IPv4 and ARP.
fn anti_spoofing(b: &mut Builder, want: &DesiredNet) {
    let br = NfFamily::Bridge;
    b.chain(br, "prerouting", Some((NfChainType::Filter, NfHook::Prerouting, -200)));
    for nic in &want.nics {
        let chain = format!("spoof-{}", nic.tap());
        let (mac, ip) = (nic.metadata.mac.clone(), nic.ip().to_string());
        b.chain(br, &chain, None);
        b.rule(br, "prerouting", vec![is(meta(MetaKey::Iifname), s(nic.tap())), jump(chain.clone())]);
        b.rule(br, &chain, vec![not(field("ether", "saddr"), s(&mac)), drop_()]);
        b.rule(br, &chain, vec![is(field("ether", "type"), s("arp")), not(field("arp", "saddr ip"), s(&ip)), drop_()]);
        b.rule(
            br,
            &chain,
            vec![is(field("ether", "type"), s("arp")), not(field("arp", "saddr ether"), s(&mac)), drop_()],
        );
        // Guests are DHCP clients only: server replies (sport 67) and anything aimed at clients'
        // port 68 come from the host's DHCP server alone, never through a tap.
        for (port_field, port) in [("sport", 67), ("dport", 68)] {
            b.rule(
                br,
                &chain,
                vec![
                    is(field("ether", "type"), s("ip")),
                    is(field("udp", port_field), Expression::Number(port)),
                    counter(),
                    drop_(),
                ],
            );
        }
        // DHCP discovery comes from 0.0.0.0.
        b.rule(
            br,
            &chain,
            vec![
                is(field("ether", "type"), s("ip")),
                is(field("ip", "saddr"), s("0.0.0.0")),
                is(field("udp", "dport"), Expression::Number(67)),
                accept(),
            ],
        );
        b.rule(br, &chain, vec![is(field("ether", "type"), s("ip")), not(field("ip", "saddr"), s(&ip)), drop_()]);
        // Nothing but IPv4 and ARP (no IPv6, and no VLAN-tagged frames that would carry IP past
        // the checks above).
        b.rule(
            br,
            &chain,
            vec![
                Statement::Match(Match {
                    left: field("ether", "type"),
                    right: set_of([s("ip"), s("arp")]),
                    op: Operator::NEQ,
                }),
                drop_(),
            ],
        );
    }
}

/// Conntrack zones and routing marks, before conntrack (-200) and routing: per VPC bridge and
/// per tap.
fn zones(b: &mut Builder, want: &DesiredNet) {
    let inet = NfFamily::INet;
    // Conntrack zones and routing marks, before conntrack (-200) and routing.
    b.chain(inet, "zone-pre", Some((NfChainType::Filter, NfHook::Prerouting, -300)));
    b.chain(inet, "zone-out", Some((NfChainType::Route, NfHook::Output, -300)));
    for vpc in &want.vpcs {
        let zone = u32::from(vpc.zone);
        b.rule(
            inet,
            "zone-pre",
            vec![is(meta(MetaKey::Iifname), s(bridge_name(vpc.vni))), set_mangle(ct("zone"), zone)],
        );
        b.rule(
            inet,
            "zone-out",
            vec![is(meta(MetaKey::Oifname), s(bridge_name(vpc.vni))), set_mangle(ct("zone"), zone)],
        );
    }
    // Bridged frames reach the inet prerouting hook (br_netfilter) with their port as input device.
    for nic in &want.nics {
        b.rule(
            inet,
            "zone-pre",
            vec![is(meta(MetaKey::Iifname), s(nic.tap())), set_mangle(ct("zone"), u32::from(nic.zone))],
        );
    }
}

/// Floating IPs: their zone and VPC routing mark, DNAT to the interface, SNAT of its traffic.
fn floating_ips(b: &mut Builder, want: &DesiredNet) {
    let inet = NfFamily::INet;
    b.chain(inet, "nat-pre", Some((NfChainType::NAT, NfHook::Prerouting, -100)));
    b.chain(inet, "nat-out", Some((NfChainType::NAT, NfHook::Output, -100)));
    b.chain(inet, "nat-post", Some((NfChainType::NAT, NfHook::Postrouting, 100)));
    for nic in &want.nics {
        let Some(fip) = nic.metadata.public_ipv4 else { continue };
        let (mark, zone) = (vpc_table(nic.vni), u32::from(nic.zone));
        for chain in ["zone-pre", "zone-out"] {
            b.rule(
                inet,
                chain,
                vec![
                    is(field("ip", "daddr"), s(fip.to_string())),
                    set_mangle(ct("zone"), zone),
                    set_mangle(meta(MetaKey::Mark), mark),
                ],
            );
        }
        for chain in ["nat-pre", "nat-out"] {
            b.rule(inet, chain, vec![is(field("ip", "daddr"), s(fip.to_string())), dnat(nic.ip())]);
        }
        let br = bridge_name(nic.vni);
        b.rule(
            inet,
            "nat-post",
            vec![
                is(meta(MetaKey::Iifname), s(&br)),
                is(field("ip", "saddr"), s(nic.ip().to_string())),
                not(meta(MetaKey::Oifname), s(&br)),
                snat(fip),
            ],
        );
    }
}

/// Outbound NAT for the rest: leaving by the uplink (or any non-VPC device).
fn outbound_nat(b: &mut Builder, want: &DesiredNet) {
    let inet = NfFamily::INet;
    if let Some(pool) = &want.public_pool {
        b.rule(
            inet,
            "nat-post",
            vec![
                is(meta(MetaKey::Iifname), s("kv*")),
                not(meta(MetaKey::Oifname), s("kv*")),
                snat(super::first_host(pool)),
            ],
        );
    }
}

/// The filter chains, VPC isolation (never route between VPCs), the DHCP-reply fence and
/// established traffic.
fn vpc_isolation(b: &mut Builder, want: &DesiredNet) {
    let inet = NfFamily::INet;
    // Security groups and VPC isolation.
    b.chain(inet, "forward", Some((NfChainType::Filter, NfHook::Forward, 0)));
    // Host-made traffic (floating-IP DNAT from the host, DHCP and metadata replies) is filtered
    // at postrouting: in the output hook the output device is still the one before DNAT rerouted.
    b.chain(inet, "postrouting", Some((NfChainType::Filter, NfHook::Postrouting, 0)));
    for vpc in &want.vpcs {
        let br = bridge_name(vpc.vni);
        // Never route between VPCs.
        b.rule(
            inet,
            "forward",
            vec![
                is(meta(MetaKey::Iifname), s(&br)),
                is(meta(MetaKey::Oifname), s("kv*")),
                not(meta(MetaKey::Oifname), s(&br)),
                drop_(),
            ],
        );
    }
    let established = || {
        Statement::Match(Match {
            left: ct("state"),
            right: Expression::List(vec![s("established"), s("related")]),
            op: Operator::IN,
        })
    };
    // DHCP replies come from the host (postrouting), never forwarded from a guest: a second fence
    // behind the bridge's per-tap drop.
    b.rule(
        inet,
        "forward",
        vec![
            is(field("udp", "sport"), Expression::Number(67)),
            is(field("udp", "dport"), Expression::Number(68)),
            counter(),
            drop_(),
        ],
    );
    b.rule(inet, "forward", vec![established(), accept()]);
    b.rule(inet, "postrouting", vec![established(), accept()]);
}

/// Addresses in the interface's VPC of the other interfaces in group `g`.
fn members_of(want: &DesiredNet, nic: &NicNet, g: &uuid::Uuid) -> Vec<Expression<'static>> {
    want.nics
        .iter()
        .filter(|o| o.vni == nic.vni && o.id != nic.id && o.groups.contains(g))
        .map(|o| s(o.ip().to_string()))
        .collect()
}

/// Security groups, egress: a chain per interface whose groups have egress rules. Egress first: a
/// packet between two guests passes the sender's egress chain, then the receiver's ingress chain.
fn egress_chains(b: &mut Builder, want: &DesiredNet) {
    let inet = NfFamily::INet;
    for nic in &want.nics {
        let members_of = |g: &uuid::Uuid| members_of(want, nic, g);
        // Egress is open unless one of its groups has egress rules: then only those (and the
        // group's members) are allowed. The chain returns (not accepts) so that the peer's
        // ingress chain is still evaluated.
        let egress: Vec<&RuleNet> =
            nic.groups.iter().flat_map(|g| want.rules.get(g).into_iter().flatten()).filter(|r| !r.ingress).collect();
        if !egress.is_empty() {
            let out = format!("out-{}", nic.tap());
            b.chain(inet, &out, None);
            b.rule(
                inet,
                "forward",
                vec![
                    is(meta(MetaKey::Iifname), s(bridge_name(nic.vni))),
                    is(field("ip", "saddr"), s(nic.ip().to_string())),
                    jump(out.clone()),
                ],
            );
            for g in &nic.groups {
                let members = members_of(g);
                if !members.is_empty() {
                    b.rule(inet, &out, vec![is(field("ip", "daddr"), set_of(members)), Statement::Return(None)]);
                }
            }
            for r in egress {
                if let Some(mut expr) = rule_match(r, "daddr", &members_of) {
                    expr.push(Statement::Return(None));
                    b.rule(inet, &out, expr);
                }
            }
            b.rule(inet, &out, vec![drop_()]);
        }
    }
}

/// Security groups, ingress: a chain per interface accepting DHCP replies, members of its groups
/// and the groups' ingress rules, dropping the rest.
fn ingress_chains(b: &mut Builder, want: &DesiredNet) {
    let inet = NfFamily::INet;
    for nic in &want.nics {
        let chain = nic_chain(nic);
        b.chain(inet, &chain, None);
        for hook in ["forward", "postrouting"] {
            b.rule(
                inet,
                hook,
                vec![
                    is(meta(MetaKey::Oifname), s(bridge_name(nic.vni))),
                    is(field("ip", "daddr"), s(nic.ip().to_string())),
                    jump(chain.clone()),
                ],
            );
        }
        b.rule(
            inet,
            &chain,
            vec![
                is(field("udp", "sport"), Expression::Number(67)),
                is(field("udp", "dport"), Expression::Number(68)),
                accept(),
            ],
        );
        let members_of = |g: &uuid::Uuid| members_of(want, nic, g);
        for g in &nic.groups {
            let members = members_of(g);
            if !members.is_empty() {
                b.rule(inet, &chain, vec![is(field("ip", "saddr"), set_of(members)), accept()]);
            }
            for r in want.rules.get(g).into_iter().flatten().filter(|r| r.ingress) {
                if let Some(mut expr) = rule_match(r, "saddr", &members_of) {
                    expr.push(accept());
                    b.rule(inet, &chain, expr);
                }
            }
        }
        b.rule(inet, &chain, vec![drop_()]);
    }
}

/// The matches of one rule; `peer` is `saddr` (ingress) or `daddr` (egress). None when the rule
/// names a group without members here (it matches nothing).
fn rule_match(
    r: &RuleNet,
    peer: &'static str,
    members_of: &dyn Fn(&uuid::Uuid) -> Vec<Expression<'static>>,
) -> Option<Vec<Statement<'static>>> {
    let mut expr = Vec::new();
    match &r.peer {
        PeerNet::Cidr(c) if c.prefix_len() == 0 => {}
        PeerNet::Cidr(c) => expr.push(is(field("ip", peer), prefix(c))),
        PeerNet::Group(src) => {
            let m = members_of(src);
            if m.is_empty() {
                return None;
            }
            expr.push(is(field("ip", peer), set_of(m)));
        }
    }
    if let Some(p) = &r.protocol {
        expr.push(is(meta(MetaKey::L4proto), s(p.clone())));
        if let Some((a, z)) = r.ports {
            let right = if a == z {
                Expression::Number(a as u32)
            } else {
                Expression::Range(Box::new(Range {
                    range: [Expression::Number(a as u32), Expression::Number(z as u32)],
                }))
            };
            expr.push(is(field(if p == "udp" { "udp" } else { "tcp" }, "dport"), right));
        }
    }
    Some(expr)
}

/// Applies a ruleset in the namespace (`nft -j -f -`, through `ip netns exec` when named).
pub async fn apply(netns: Option<&str>, rules: &Nftables<'static>) -> Result<(), NetError> {
    let netns = netns.map(String::from);
    let rules = rules.clone();
    tokio::task::spawn_blocking(move || {
        let res = match &netns {
            Some(ns) => {
                nftables::helper::apply_ruleset_with_args(&rules, Some("ip"), ["netns", "exec", ns.as_str(), "nft"])
            }
            None => nftables::helper::apply_ruleset(&rules),
        };
        res.map_err(|e| NetError::Nft(format!("{e}")))
    })
    .await
    .map_err(|e| NetError::Nft(format!("nft task: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::super::netns::TestNamespaces;
    use super::*;
    use crate::network::{Metadata, NicNet, RuleNet, VpcNet};

    fn nic(n: u8, groups: Vec<uuid::Uuid>, fip: Option<Ipv4Addr>) -> NicNet {
        NicNet {
            id: uuid::Uuid::from_u128(n as u128),
            vni: 7,
            zone: 3,
            subnet: "10.0.0.0/24".parse().unwrap(),
            groups,
            metadata: Metadata {
                instance_id: format!("i-{n}"),
                hostname: format!("vm{n}"),
                local_ipv4: Ipv4Addr::new(10, 0, 0, n),
                public_ipv4: fip,
                ssh_keys: vec![],
                user_data: None,
                mac: format!("02:00:00:00:00:0{n}"),
            },
        }
    }

    fn desired() -> DesiredNet {
        let g = uuid::Uuid::from_u128(100);
        let mut rules = std::collections::BTreeMap::new();
        rules.insert(
            g,
            vec![
                RuleNet {
                    ingress: true,
                    protocol: Some("tcp".into()),
                    ports: Some((80, 80)),
                    peer: PeerNet::Cidr("0.0.0.0/0".parse().unwrap()),
                },
                RuleNet {
                    ingress: false,
                    protocol: Some("udp".into()),
                    ports: Some((53, 53)),
                    peer: PeerNet::Cidr("192.0.2.0/24".parse().unwrap()),
                },
            ],
        );
        DesiredNet {
            vpcs: vec![VpcNet { vni: 7, zone: 3, subnets: vec!["10.0.0.0/24".parse().unwrap()] }],
            nics: vec![nic(2, vec![g], Some(Ipv4Addr::new(203, 0, 113, 2))), nic(3, vec![g], None)],
            rules,
            public_pool: Some("203.0.113.0/28".parse().unwrap()),
        }
    }

    #[test]
    fn the_ruleset_has_every_part_and_an_empty_state_deletes_the_tables() {
        let json = serde_json::to_string(&ruleset(&desired())).unwrap();
        for needle in [
            "\"spoof-kt00000002\"",
            "\"in-kt00000003\"",
            "\"out-kt00000002\"",
            "\"dnat\"",
            "\"10.0.0.3\"",
            "\"203.0.113.2\"",
            "\"zone\"",
        ] {
            assert!(json.contains(needle), "{needle} missing from {json}");
        }
        let empty = serde_json::to_string(&ruleset(&DesiredNet::default())).unwrap();
        assert!(empty.contains("\"delete\"") && !empty.contains("\"chain\""), "{empty}");
    }

    /// A state with every section of the ruleset: two VPCs (one with overlapping addresses), three
    /// security groups (CIDR and group peers, port ranges, ingress and egress), floating IPs and
    /// the outbound pool.
    fn representative() -> DesiredNet {
        let (web, db, admin) = (uuid::Uuid::from_u128(100), uuid::Uuid::from_u128(101), uuid::Uuid::from_u128(102));
        let in_nic = |n: u8, vni: i64, zone: u16, groups: Vec<uuid::Uuid>, fip: Option<Ipv4Addr>| {
            let mut nic = nic(n, groups, fip);
            nic.id = uuid::Uuid::from_u128(vni as u128 * 1000 + n as u128);
            (nic.vni, nic.zone) = (vni, zone);
            nic.metadata.mac = format!("02:00:00:00:{:02x}:{n:02x}", vni);
            nic
        };
        let rule = |ingress: bool, protocol: Option<&str>, ports: Option<(u16, u16)>, peer: PeerNet| RuleNet {
            ingress,
            protocol: protocol.map(String::from),
            ports,
            peer,
        };
        let cidr = |c: &str| PeerNet::Cidr(c.parse().unwrap());
        let mut rules = std::collections::BTreeMap::new();
        rules.insert(
            web,
            vec![
                rule(true, Some("tcp"), Some((80, 80)), cidr("0.0.0.0/0")),
                rule(true, Some("tcp"), Some((8000, 8100)), cidr("198.51.100.0/24")),
                rule(true, Some("icmp"), None, cidr("0.0.0.0/0")),
            ],
        );
        rules.insert(
            db,
            vec![
                rule(true, Some("tcp"), Some((5432, 5432)), PeerNet::Group(web)),
                rule(true, None, None, PeerNet::Group(admin)),
                rule(false, Some("udp"), Some((53, 53)), cidr("192.0.2.0/24")),
                rule(false, Some("tcp"), Some((443, 443)), PeerNet::Group(web)),
            ],
        );
        rules.insert(admin, vec![rule(false, None, None, cidr("0.0.0.0/0"))]);
        DesiredNet {
            vpcs: vec![
                VpcNet { vni: 7, zone: 3, subnets: vec!["10.0.0.0/24".parse().unwrap()] },
                VpcNet {
                    vni: 9,
                    zone: 5,
                    subnets: vec!["10.0.0.0/24".parse().unwrap(), "10.1.0.0/24".parse().unwrap()],
                },
            ],
            nics: vec![
                in_nic(2, 7, 3, vec![web], Some(Ipv4Addr::new(203, 0, 113, 2))),
                in_nic(3, 7, 3, vec![web, db], None),
                in_nic(4, 7, 3, vec![db], Some(Ipv4Addr::new(203, 0, 113, 4))),
                in_nic(5, 7, 3, vec![], None),
                in_nic(2, 9, 5, vec![admin], Some(Ipv4Addr::new(203, 0, 113, 9))),
                in_nic(6, 9, 5, vec![db, admin], None),
            ],
            rules,
            public_pool: Some("203.0.113.0/28".parse().unwrap()),
        }
    }

    /// The whole ruleset of [`representative`], pinned: refactoring the builder must not change a
    /// byte of it. `KUMO_BLESS=1` rewrites the pinned file (review the diff: it is the firewall).
    #[test]
    fn the_ruleset_of_a_representative_state_is_pinned() {
        let got = serde_json::to_string_pretty(&ruleset(&representative())).unwrap() + "\n";
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/network/testdata/ruleset.json");
        if std::env::var_os("KUMO_BLESS").is_some() {
            std::fs::write(path, &got).unwrap();
        }
        let want = std::fs::read_to_string(path).unwrap();
        assert!(got == want, "the ruleset changed; diff it against {path}:\n{got}");
    }

    /// The rules of `chain` (bridge or inet) as JSON text, one per rule.
    fn rules_of(family: NfFamily, chain: &str) -> Vec<String> {
        let rs = ruleset(&desired());
        rs.objects
            .iter()
            .filter_map(|o| match o {
                nftables::schema::NfObject::CmdObject(nftables::schema::NfCmd::Add(NfListObject::Rule(r)))
                    if r.family == family && r.chain == chain =>
                {
                    Some(serde_json::to_string(&r.expr).unwrap())
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn guests_cannot_send_dhcp_server_traffic() {
        let spoof = rules_of(NfFamily::Bridge, "spoof-kt00000002");
        let drops = |needle: &str| {
            spoof.iter().position(|r| r.contains(needle) && r.contains("\"drop\"") && r.contains("\"counter\""))
        };
        let sport = drops(r#""field":"sport"}},"right":67"#).expect("a counted drop of udp sport 67");
        let dport = drops(r#""field":"dport"}},"right":68"#).expect("a counted drop of udp dport 68");
        // Before anything is accepted in the chain (the DHCP discovery accept).
        let first_accept = spoof.iter().position(|r| r.contains("\"accept\"")).expect("the discovery accept");
        assert!(sport < first_accept && dport < first_accept, "{spoof:#?}");
        // And forwarded replies are dropped before the established/related accept.
        let fwd = rules_of(NfFamily::INet, "forward");
        let drop = fwd.iter().position(|r| r.contains("\"right\":67") && r.contains("\"drop\"")).expect("{fwd:#?}");
        let est = fwd.iter().position(|r| r.contains("established")).expect("established");
        assert!(drop < est, "{fwd:#?}");
    }

    /// Applies the ruleset for real, in a namespace made for the test (needs root and nft).
    #[tokio::test]
    async fn the_kernel_accepts_the_ruleset() {
        let ns = format!("kumo-nft-{}", std::process::id());
        if std::process::Command::new("ip").args(["netns", "add", &ns]).status().map(|s| !s.success()).unwrap_or(true) {
            assert!(
                std::env::var_os("CI").is_none() && std::env::var_os("KUMO_TEST_STRICT").is_none(),
                "needs root and iproute2"
            );
            eprintln!("skipped: cannot create a network namespace (not root?)");
            return;
        }
        let _del = TestNamespaces(vec![ns.clone()]);
        apply(Some(&ns), &ruleset(&desired())).await.expect("nft accepts the ruleset");
        let out =
            std::process::Command::new("ip").args(["netns", "exec", &ns, "nft", "list", "ruleset"]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("tcp dport 80 accept"), "{text}");
        assert!(text.contains("udp dport 53 return"), "{text}");
        assert!(text.contains("dnat ip to 10.0.0.2"), "{text}");
        // Applying twice is the same ruleset (the transaction replaces, never appends).
        apply(Some(&ns), &ruleset(&desired())).await.expect("again");
        let again =
            std::process::Command::new("ip").args(["netns", "exec", &ns, "nft", "list", "ruleset"]).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&again.stdout), text);
        apply(Some(&ns), &ruleset(&DesiredNet::default())).await.expect("teardown");
        let gone =
            std::process::Command::new("ip").args(["netns", "exec", &ns, "nft", "list", "tables"]).output().unwrap();
        assert!(!String::from_utf8_lossy(&gone.stdout).contains("kumo"));
    }

    fn run_in(ns: &str, args: &[&str]) {
        let out =
            std::process::Command::new("ip").args(["netns", "exec", ns]).args(args).output().expect("ip netns exec");
        assert!(out.status.success(), "{ns}: {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn wait_child(child: &mut std::process::Child, deadline: std::time::Instant) -> bool {
        while std::time::Instant::now() < deadline {
            if child.try_wait().expect("wait").is_some() {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        false
    }

    /// Sends one UDP datagram from guest 2 (with its own MAC and address: anti-spoofing passes it)
    /// to guest 3 from port 67 to port 68, then a harmless one to port 9999. Returns whether the
    /// first reached guest 3, once the second has (same path, so the first had its chance).
    fn dhcp_spoof_reaches_peer(g2: &str, g3: &str) -> bool {
        use std::process::{Command, Stdio};
        let recv = |port: &str| {
            Command::new("ip")
                .args(["netns", "exec", g3, "socat", "-u", &format!("UDP4-RECVFROM:{port},reuseaddr"), "STDOUT"])
                .stdout(Stdio::piped())
                .spawn()
                .expect("socat (install-deps.sh installs it)")
        };
        struct Kill(std::process::Child);
        impl Drop for Kill {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let mut spoof_rx = Kill(recv("68"));
        let mut control_rx = Kill(recv("9999"));
        // Both receivers bound before anything is sent.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let ss = Command::new("ip").args(["netns", "exec", g3, "ss", "-Hlun"]).output().expect("ss");
            let text = String::from_utf8_lossy(&ss.stdout).to_string();
            if text.contains(":68 ") && text.contains(":9999 ") {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "receivers never bound: {text}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let send = |target: &str, sport: Option<&str>| {
            let addr = match sport {
                Some(p) => format!("UDP4-SENDTO:{target},sourceport={p},reuseaddr"),
                None => format!("UDP4-SENDTO:{target}"),
            };
            let mut c = Command::new("ip")
                .args(["netns", "exec", g2, "socat", "-u", "STDIN", &addr])
                .stdin(Stdio::piped())
                .spawn()
                .expect("socat");
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(b"offer").expect("write");
            assert!(c.wait().expect("socat").success());
        };
        send("10.0.0.3:68", Some("67"));
        send("10.0.0.3:9999", None);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        assert!(wait_child(&mut control_rx.0, deadline), "the control datagram never arrived");
        spoof_rx.0.try_wait().expect("wait").is_some()
    }

    /// Two guests (veths named like taps) on a VPC bridge in a namespace: a DHCP reply from one
    /// reaches the other without Kumo's rules, and is dropped (and counted) with them.
    #[tokio::test]
    async fn a_guests_dhcp_reply_never_reaches_its_peer() {
        let tag = std::process::id();
        let (host, g2, g3) = (format!("kumo-dh-{tag}"), format!("kumo-dh2-{tag}"), format!("kumo-dh3-{tag}"));
        if std::process::Command::new("ip").args(["netns", "add", &host]).status().map(|s| !s.success()).unwrap_or(true)
        {
            assert!(std::env::var("CI").is_err(), "needs root and iproute2");
            eprintln!("skipped: cannot create a network namespace (not root?)");
            return;
        }
        let mut guard = TestNamespaces(vec![host.clone()]);
        for g in [&g2, &g3] {
            assert!(std::process::Command::new("ip").args(["netns", "add", g]).status().expect("ip").success());
            guard.0.push(g.clone());
        }
        run_in(&host, &["ip", "link", "add", "kv7", "type", "bridge"]);
        run_in(&host, &["ip", "link", "set", "kv7", "up"]);
        for (n, g) in [(2, &g2), (3, &g3)] {
            let tap = format!("kt0000000{n}");
            run_in(&host, &["ip", "link", "add", &tap, "type", "veth", "peer", "name", "eth0", "netns", g]);
            run_in(&host, &["ip", "link", "set", &tap, "master", "kv7", "up"]);
            run_in(g, &["ip", "link", "set", "eth0", "address", &format!("02:00:00:00:00:0{n}")]);
            run_in(g, &["ip", "addr", "add", &format!("10.0.0.{n}/24"), "dev", "eth0"]);
            run_in(g, &["ip", "link", "set", "eth0", "up"]);
            run_in(g, &["ip", "link", "set", "lo", "up"]);
        }
        // Without the ruleset the bridge forwards the rogue reply: the harness sees it.
        assert!(dhcp_spoof_reaches_peer(&g2, &g3), "without rules the reply should arrive (harness check)");
        apply(Some(&host), &ruleset(&desired())).await.expect("nft accepts the ruleset");
        assert!(!dhcp_spoof_reaches_peer(&g2, &g3), "a guest's DHCP reply reached its peer");
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", &host, "nft", "list", "chain", "bridge", "kumo", "spoof-kt00000002"])
            .output()
            .expect("nft");
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().find(|l| l.contains("udp sport 67")).unwrap_or_else(|| panic!("{text}"));
        assert!(line.contains("counter packets 1 ") && line.contains("drop"), "{text}");
    }
}
