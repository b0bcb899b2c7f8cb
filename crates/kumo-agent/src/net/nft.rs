//! The host firewall, as nftables JSON built with the `nftables` crate and applied with
//! `nft -j -f -` in one transaction: the batch deletes Kumo's tables and recreates them, so the
//! kernel swaps the whole ruleset atomically (no window without rules) and nothing stale survives.
//!
//! - `bridge kumo`: anti-spoofing on every tap (source MAC, source IP, ARP sender; no IPv6).
//! - `inet kumo`: conntrack zone per VPC (overlapping addresses never share a connection entry),
//!   the VPC routing mark for floating-IP traffic, DNAT/SNAT of floating IPs, outbound NAT, no
//!   forwarding between VPC bridges, and security groups: a chain per interface that accepts
//!   established traffic, DHCP replies, members of its groups and the groups' ingress rules, and
//!   drops the rest. Egress is open.

use super::{bridge_name, vpc_table, DesiredNet, NetError, NicNet, PeerNet};
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

/// The whole ruleset for `want` (a transaction: delete Kumo's tables, recreate them).
pub fn ruleset(want: &DesiredNet) -> Nftables<'static> {
    let mut b = Builder { batch: Batch::new() };
    for family in [NfFamily::Bridge, NfFamily::INet] {
        let t = Table { family, name: Cow::Borrowed(TABLE), ..Table::default() };
        b.batch.add(NfListObject::Table(t.clone()));
        b.batch.delete(NfListObject::Table(t));
    }
    if want.vpcs.is_empty() && want.nics.is_empty() && want.public_pool.is_none() {
        return b.batch.to_nftables();
    }
    for family in [NfFamily::Bridge, NfFamily::INet] {
        b.batch.add(NfListObject::Table(Table { family, name: Cow::Borrowed(TABLE), ..Table::default() }));
    }

    // Anti-spoofing, per tap, at the bridge.
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
        b.rule(br, &chain, vec![is(field("ether", "type"), s("ip6")), drop_()]);
    }

    let inet = NfFamily::INet;
    // Conntrack zones and routing marks, before conntrack (-200) and routing.
    b.chain(inet, "zone-pre", Some((NfChainType::Filter, NfHook::Prerouting, -300)));
    b.chain(inet, "zone-out", Some((NfChainType::Route, NfHook::Output, -300)));
    for vpc in &want.vpcs {
        let zone = vpc.vni as u32;
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
            vec![is(meta(MetaKey::Iifname), s(nic.tap())), set_mangle(ct("zone"), nic.vni as u32)],
        );
    }
    b.chain(inet, "nat-pre", Some((NfChainType::NAT, NfHook::Prerouting, -100)));
    b.chain(inet, "nat-out", Some((NfChainType::NAT, NfHook::Output, -100)));
    b.chain(inet, "nat-post", Some((NfChainType::NAT, NfHook::Postrouting, 100)));
    for nic in &want.nics {
        let Some(fip) = nic.metadata.public_ipv4 else { continue };
        let (mark, zone) = (vpc_table(nic.vni), nic.vni as u32);
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
    // Outbound NAT for the rest: leaving by the uplink (or any non-VPC device).
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
    b.rule(inet, "forward", vec![established(), accept()]);
    b.rule(inet, "postrouting", vec![established(), accept()]);
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
        let members_of = |g: &uuid::Uuid| -> Vec<Expression<'static>> {
            want.nics
                .iter()
                .filter(|o| o.vni == nic.vni && o.id != nic.id && o.groups.contains(g))
                .map(|o| s(o.ip().to_string()))
                .collect()
        };
        for g in &nic.groups {
            let members = members_of(g);
            if !members.is_empty() {
                b.rule(inet, &chain, vec![is(field("ip", "saddr"), set_of(members)), accept()]);
            }
            for r in want.rules.get(g).into_iter().flatten().filter(|r| r.ingress) {
                let mut expr = Vec::new();
                match &r.peer {
                    PeerNet::Cidr(c) if c.prefix_len() == 0 => {}
                    PeerNet::Cidr(c) => expr.push(is(field("ip", "saddr"), prefix(c))),
                    PeerNet::Group(src) => {
                        let m = members_of(src);
                        if m.is_empty() {
                            continue;
                        }
                        expr.push(is(field("ip", "saddr"), set_of(m)));
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
                expr.push(accept());
                b.rule(inet, &chain, expr);
            }
        }
        b.rule(inet, &chain, vec![drop_()]);
    }
    b.batch.to_nftables()
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
