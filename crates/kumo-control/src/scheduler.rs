//! Scheduler v0: placement arithmetic, kept pure so it can be tested exhaustively.
//!
//! A host is a candidate when it is in the zone asked for (if any), `ready` (not cordoned, not
//! unreachable: its `state` is set by [`crate::app::hosts::state`] before it gets here) and has
//! every label the instance type asks of its host (operator labels, `disk=ssd`). A candidate fits
//! a request when, for every resource, `used + requested <= limit`, where `limit` is the physical
//! amount times the host's overcommit ratio (GPUs are never overcommitted). The hosts that fit are
//! weighed by the cloud's [`Weights`] (`kumod --scheduler-weights`): `spread` (the default) puts
//! the one with the most free memory first, `pack` the one with the least. The caller then
//! reserves on the first host whose conditional reservation succeeds, in the same transaction as
//! the insert, so concurrent creates cannot overshoot.
//!
//! An instance of a placement group is placed by the group's policy ([`rank_in_group`]), given how
//! many live members of the group each host runs: `anti-affinity` (hard) only on hosts with none,
//! `affinity` (hard) only on the hosts its members are on (anywhere for the first one), `spread`
//! (soft) on the hosts with the fewest members first, `pack` (soft) on those with the most first
//! and then the fullest. A hard policy that leaves no host is a refusal naming the group.

use kumo_store::hosts::Resources;
use kumo_types::{labels_text, HostId, HostState, HostView, Labels, PlacementPolicy};

/// How the hosts that can take an instance are ordered (`kumod --scheduler-weights`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Weights {
    /// The host with the most free memory (then vCPUs) first: load spread over every host.
    #[default]
    Spread,
    /// The host with the least free memory (then vCPUs) first: hosts filled one by one, the
    /// others kept empty (for power saving, or room for big instances).
    Pack,
}

impl Weights {
    pub fn as_str(self) -> &'static str {
        match self {
            Weights::Spread => "spread",
            Weights::Pack => "pack",
        }
    }
}

impl std::str::FromStr for Weights {
    type Err = String;
    fn from_str(s: &str) -> Result<Weights, String> {
        match s {
            "spread" => Ok(Weights::Spread),
            "pack" => Ok(Weights::Pack),
            _ => Err(format!("'{s}' is not a scheduler weighing: spread or pack")),
        }
    }
}

/// What a placement asks of its host besides capacity, and how the cloud weighs the hosts.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ask<'a> {
    /// Only hosts of this zone.
    pub zone: Option<&'a str>,
    /// Only hosts with all these labels (the instance type's `host_labels`).
    pub labels: Option<&'a Labels>,
    pub weights: Weights,
}

impl Ask<'_> {
    fn labels_wanted(&self) -> Option<&Labels> {
        self.labels.filter(|l| !l.is_empty())
    }

    fn has_labels(&self, h: &HostView) -> bool {
        self.labels_wanted().is_none_or(|want| want.iter().all(|(k, v)| h.labels.get(k) == Some(v)))
    }
}

fn free(h: &HostView) -> Resources {
    Resources {
        vcpus: h.vcpus_limit - h.vcpus_used,
        memory_mib: h.memory_mib_limit - h.memory_mib_used,
        disk_gib: h.disk_gib_limit - h.disk_gib_used,
        gpus: h.gpus_total - h.gpus_used,
    }
}

pub fn fits(h: &HostView, want: Resources) -> bool {
    let f = free(h);
    want.vcpus <= f.vcpus && want.memory_mib <= f.memory_mib && want.disk_gib <= f.disk_gib && want.gpus <= f.gpus
}

fn in_zone(h: &HostView, zone: Option<&str>) -> bool {
    zone.is_none_or(|z| h.zone == z)
}

/// Hosts of the zone asked for (any zone: None), ready, with the labels asked for, that can take
/// `want`, best first by the weights; or a message saying why none can ([`explain`]).
pub fn rank(hosts: &[HostView], ask: &Ask<'_>, want: Resources) -> Result<Vec<HostId>, String> {
    Ok(ranked(hosts, ask, want)?.into_iter().map(|h| h.id).collect())
}

/// [`rank`]'s hosts themselves.
fn ranked<'a>(hosts: &'a [HostView], ask: &Ask<'_>, want: Resources) -> Result<Vec<&'a HostView>, String> {
    let mut fitting: Vec<&HostView> = hosts
        .iter()
        .filter(|h| in_zone(h, ask.zone) && h.state == HostState::Ready && ask.has_labels(h) && fits(h, want))
        .collect();
    if fitting.is_empty() {
        return Err(explain(hosts, ask, want));
    }
    match ask.weights {
        Weights::Spread => fitting.sort_by_key(|h| std::cmp::Reverse((free(h).memory_mib, free(h).vcpus))),
        Weights::Pack => fitting.sort_by_key(|h| (free(h).memory_mib, free(h).vcpus)),
    }
    Ok(fitting)
}

/// The placement group an instance to place is in: its name and policy, and how many of its live
/// instances each host runs (hosts with none may be left out).
#[derive(Debug, Clone, Copy)]
pub struct Group<'a> {
    pub name: &'a str,
    pub policy: PlacementPolicy,
    pub members_per_host: &'a [(HostId, i64)],
}

impl Group<'_> {
    fn on(&self, h: &HostView) -> i64 {
        self.members_per_host.iter().filter(|(id, _)| *id == h.id).map(|(_, n)| n).sum()
    }

    fn total(&self) -> i64 {
        self.members_per_host.iter().map(|(_, n)| n).sum()
    }

    fn instances(&self) -> String {
        let n = self.total();
        format!("{n} instance{}", if n == 1 { "" } else { "s" })
    }

    fn prefix(&self) -> String {
        format!("placement group '{}' ({})", self.name, self.policy)
    }
}

/// [`rank`] for an instance of placement group `group` (none: [`rank`] itself), by the group's
/// policy; the refusal says which filter left no host, the group's first.
pub fn rank_in_group(
    hosts: &[HostView],
    ask: &Ask<'_>,
    want: Resources,
    group: Option<Group<'_>>,
) -> Result<Vec<HostId>, String> {
    let Some(g) = group else { return rank(hosts, ask, want) };
    let zone = ask.zone;
    let ids = |v: Vec<&HostView>| v.into_iter().map(|h| h.id).collect();
    match g.policy {
        PlacementPolicy::AntiAffinity => {
            let ready: Vec<&HostView> =
                hosts.iter().filter(|h| in_zone(h, zone) && h.state == HostState::Ready).collect();
            if ready.is_empty() {
                // The group is not why: say what is.
                return rank(hosts, ask, want);
            }
            let taken: Vec<&HostView> = ready.iter().copied().filter(|h| g.on(h) > 0).collect();
            let zone_text = zone.map(|z| format!(" in zone '{z}'")).unwrap_or_default();
            if taken.len() == ready.len() {
                return Err(format!(
                    "{}: every ready host{zone_text} already runs one of its {} ({} ready host{}: {})",
                    g.prefix(),
                    g.instances(),
                    ready.len(),
                    if ready.len() == 1 { "" } else { "s" },
                    names(&ready)
                ));
            }
            let others: Vec<HostView> = hosts.iter().filter(|h| g.on(h) == 0).cloned().collect();
            rank(&others, ask, want).map_err(|m| {
                let (n, s) = (taken.len(), if taken.len() == 1 { "s" } else { "" });
                let host = if n == 1 { "host" } else { "hosts" };
                format!(
                    "{}: {n} ready {host}{zone_text} already run{s} one of its {} ({}); {m}",
                    g.prefix(),
                    g.instances(),
                    names(&taken)
                )
            })
        }
        PlacementPolicy::Affinity if g.total() > 0 => {
            let with: Vec<HostView> = hosts.iter().filter(|h| g.on(h) > 0).cloned().collect();
            let refs: Vec<&HostView> = with.iter().collect();
            rank(&with, ask, want).map_err(|m| {
                format!(
                    "{}: its {} {} on {}; {m}",
                    g.prefix(),
                    g.instances(),
                    if g.total() == 1 { "is" } else { "are" },
                    names(&refs)
                )
            })
        }
        PlacementPolicy::Affinity => rank(hosts, ask, want),
        PlacementPolicy::Spread => {
            let mut fitting = ranked(hosts, ask, want)?;
            // Stable: among hosts with as many members, the most free memory first still.
            fitting.sort_by_key(|h| g.on(h));
            Ok(ids(fitting))
        }
        PlacementPolicy::Pack => {
            let mut fitting = ranked(hosts, ask, want)?;
            fitting.sort_by_key(|h| (std::cmp::Reverse(g.on(h)), free(h).memory_mib, free(h).vcpus));
            Ok(ids(fitting))
        }
    }
}

/// At most this many host names in a message; then "and N more".
const NAMES_SHOWN: usize = 5;

fn names(hosts: &[&HostView]) -> String {
    let mut s: Vec<&str> = hosts.iter().take(NAMES_SHOWN).map(|h| h.name.as_str()).collect();
    let more = hosts.len().saturating_sub(NAMES_SHOWN);
    let more = (more > 0).then(|| format!("and {more} more"));
    s.extend(more.as_deref());
    s.join(", ")
}

/// Explains why no host can take `want`, per filter: the hosts considered (those of the zone
/// asked for), how many are cordoned and unreachable (named), of the ready ones how many lack the
/// labels asked for (named), and of the rest how many are short of each resource, e.g. "no host
/// can take it: 3 hosts: 1 cordoned (node-a), 2 short of memory (2048 MiB of memory requested, at
/// most 1024 free)".
pub fn explain(hosts: &[HostView], ask: &Ask<'_>, want: Resources) -> String {
    let zone = ask.zone;
    if hosts.is_empty() {
        return "no host is registered".into();
    }
    let pool: Vec<&HostView> = hosts.iter().filter(|h| in_zone(h, zone)).collect();
    if pool.is_empty() {
        return format!("zone '{}' has no hosts", zone.unwrap_or_default());
    }
    let of = |s: HostState| pool.iter().copied().filter(|h| h.state == s).collect::<Vec<_>>();
    let (cordoned, unreachable, ready) = (of(HostState::Cordoned), of(HostState::Unreachable), of(HostState::Ready));
    let down = of(HostState::Down);
    let mut parts = Vec::new();
    if !cordoned.is_empty() {
        parts.push(format!("{} cordoned ({})", cordoned.len(), names(&cordoned)));
    }
    if !unreachable.is_empty() {
        parts.push(format!("{} unreachable ({})", unreachable.len(), names(&unreachable)));
    }
    if !down.is_empty() {
        parts.push(format!("{} down ({})", down.len(), names(&down)));
    }
    let (ready, unlabelled): (Vec<&HostView>, Vec<&HostView>) = ready.into_iter().partition(|h| ask.has_labels(h));
    if let (false, Some(labels)) = (unlabelled.is_empty(), ask.labels_wanted()) {
        let label = if labels.len() == 1 { "label" } else { "labels" };
        parts.push(format!(
            "{} without the {label} {} ({})",
            unlabelled.len(),
            labels_text(labels),
            names(&unlabelled)
        ));
    }
    /// (what a host is short of, the unit, the amount asked, the amount of a `Resources`)
    type Check = (&'static str, &'static str, i64, fn(&Resources) -> i64);
    let checks: [Check; 4] = [
        ("vCPUs", "vCPUs", want.vcpus, |r| r.vcpus),
        ("memory", "MiB of memory", want.memory_mib, |r| r.memory_mib),
        ("disk", "GiB of disk", want.disk_gib, |r| r.disk_gib),
        ("GPUs", "GPUs", want.gpus, |r| r.gpus),
    ];
    for (short_of, unit, need, get) in checks {
        let short: Vec<i64> = ready.iter().map(|h| get(&free(h)).max(0)).filter(|have| need > *have).collect();
        if let Some(most) = short.iter().max() {
            parts.push(format!("{} short of {short_of} ({need} {unit} requested, at most {most} free)", short.len()));
        }
    }
    let n = pool.len();
    let zone = zone.map(|z| format!(" in zone '{z}'")).unwrap_or_default();
    format!("no host can take it: {n} host{}{zone}: {}", if n == 1 { "" } else { "s" }, parts.join(", "))
}

/// Explains why nothing fits on these hosts, whatever their state: which resources no host has
/// enough of (for a resize or a volume, which stay on their host).
pub fn shortage(hosts: &[HostView], want: Resources) -> String {
    if hosts.is_empty() {
        return "no host is registered".into();
    }
    let most = |f: fn(&Resources) -> i64| hosts.iter().map(|h| f(&free(h))).max().unwrap_or(0).max(0);
    let checks: [(&str, i64, i64); 4] = [
        ("vCPUs", want.vcpus, most(|r| r.vcpus)),
        ("MiB of memory", want.memory_mib, most(|r| r.memory_mib)),
        ("GiB of disk", want.disk_gib, most(|r| r.disk_gib)),
        ("GPUs", want.gpus, most(|r| r.gpus)),
    ];
    let short: Vec<String> = checks
        .iter()
        .filter(|(_, need, have)| need > have)
        .map(|(what, need, have)| format!("{need} {what} requested, at most {have} free on any host"))
        .collect();
    if short.is_empty() {
        format!(
            "no single host has {} vCPUs, {} MiB of memory, {} GiB of disk and {} GPUs free at once",
            want.vcpus, want.memory_mib, want.disk_gib, want.gpus
        )
    } else {
        format!("not enough capacity: {}", short.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, limit: [i64; 3], used: [i64; 3], gpus: (i64, i64)) -> HostView {
        let t = chrono::Utc::now();
        HostView {
            id: kumo_types::HostId::new_v7(),
            name: name.into(),
            description: String::new(),
            time_created: t,
            time_modified: t,
            driver: "sim".into(),
            accelerator: "simulated".into(),
            accelerator_reason: String::new(),
            vcpus_total: limit[0],
            vcpus_used: used[0],
            vcpus_limit: limit[0],
            memory_mib_total: limit[1],
            memory_mib_used: used[1],
            memory_mib_limit: limit[1],
            disk_gib_total: limit[2],
            disk_gib_used: used[2],
            disk_gib_limit: limit[2],
            gpus_total: gpus.0,
            gpus_used: gpus.1,
            cpu_overcommit: 1.0,
            memory_overcommit: 1.0,
            disk_overcommit: 1.0,
            drain: None,
            zone: "default".into(),
            state: HostState::Ready,
            role: kumo_types::HostRole::Local,
            cordoned: false,
            last_seen: None,
            address: None,
            labels: Default::default(),
            time_left: None,
        }
    }

    fn zone(z: &str) -> Ask<'_> {
        Ask { zone: Some(z), ..Ask::default() }
    }

    fn in_state(mut h: HostView, state: HostState) -> HostView {
        h.state = state;
        h
    }

    fn in_zone(mut h: HostView, zone: &str) -> HostView {
        h.zone = zone.into();
        h
    }

    fn want(v: i64, m: i64, d: i64, g: i64) -> Resources {
        Resources { vcpus: v, memory_mib: m, disk_gib: d, gpus: g }
    }

    #[test]
    fn exact_fit_is_a_fit_and_one_more_is_not() {
        let h = host("a", [4, 1024, 10], [2, 512, 5], (0, 0));
        assert!(fits(&h, want(2, 512, 5, 0)));
        assert!(!fits(&h, want(3, 512, 5, 0)));
        assert!(!fits(&h, want(2, 513, 5, 0)));
        assert!(!fits(&h, want(2, 512, 6, 0)));
    }

    #[test]
    fn gpu_types_only_go_where_gpus_are_free() {
        let plain = host("plain", [8, 8192, 100], [0, 0, 0], (0, 0));
        let gpu = host("gpu", [8, 4096, 100], [0, 0, 0], (1, 0));
        let busy_gpu = host("busy", [8, 8192, 100], [0, 0, 0], (1, 1));
        let ranked =
            rank(&[plain.clone(), gpu.clone(), busy_gpu.clone()], &Ask::default(), want(1, 512, 1, 1)).unwrap();
        assert_eq!(ranked, vec![gpu.id]);
        let err = rank(&[plain, busy_gpu], &Ask::default(), want(1, 512, 1, 1)).unwrap_err();
        assert!(err.contains("2 short of GPUs (1 GPUs requested, at most 0 free)"), "{err}");
    }

    #[test]
    fn prefers_the_host_with_most_free_memory() {
        let a = host("a", [8, 2048, 100], [0, 1024, 0], (0, 0));
        let b = host("b", [8, 4096, 100], [0, 0, 0], (0, 0));
        assert_eq!(rank(&[a.clone(), b.clone()], &Ask::default(), want(1, 256, 1, 0)).unwrap(), vec![b.id, a.id]);
    }

    #[test]
    fn only_ready_hosts_of_the_zone_are_candidates() {
        let a = host("a", [8, 4096, 100], [0, 0, 0], (0, 0));
        let b = in_zone(host("b", [8, 2048, 100], [0, 0, 0], (0, 0)), "east");
        let cordoned = in_state(host("c", [8, 8192, 100], [0, 0, 0], (0, 0)), HostState::Cordoned);
        let gone = in_state(in_zone(host("d", [8, 8192, 100], [0, 0, 0], (0, 0)), "east"), HostState::Unreachable);
        let all = [a.clone(), b.clone(), cordoned.clone(), gone.clone()];
        let w = want(1, 256, 1, 0);
        assert_eq!(rank(&all, &Ask::default(), w).unwrap(), vec![a.id, b.id]);
        assert_eq!(rank(&all, &zone("east"), w).unwrap(), vec![b.id]);
        assert_eq!(rank(&all, &zone("default"), w).unwrap(), vec![a.id]);
        assert_eq!(rank(&all, &zone("west"), w).unwrap_err(), "zone 'west' has no hosts");
        // Nothing ready in the zone: each filter is named.
        let msg = rank(&[a.clone(), gone.clone()], &zone("east"), w).unwrap_err();
        assert_eq!(msg, "no host can take it: 1 host in zone 'east': 1 unreachable (d)");
        let msg = rank(std::slice::from_ref(&cordoned), &Ask::default(), w).unwrap_err();
        assert_eq!(msg, "no host can take it: 1 host: 1 cordoned (c)");
    }

    #[test]
    fn the_reason_counts_hosts_per_filter() {
        let cordoned = in_state(host("node-a", [8, 8192, 100], [0, 0, 0], (0, 0)), HostState::Cordoned);
        let b = host("node-b", [8, 1024, 100], [0, 0, 0], (0, 0));
        let c = host("node-c", [8, 2048, 100], [0, 1536, 0], (0, 0));
        let msg = rank(&[cordoned, b, c], &Ask::default(), want(1, 2048, 1, 0)).unwrap_err();
        assert_eq!(
            msg,
            "no host can take it: 3 hosts: 1 cordoned (node-a), 2 short of memory (2048 MiB of memory requested, at most 1024 free)"
        );
        // Many cordoned hosts: the first few are named.
        let many: Vec<HostView> = (0..7)
            .map(|i| in_state(host(&format!("h{i}"), [8, 8192, 100], [0, 0, 0], (0, 0)), HostState::Cordoned))
            .collect();
        let msg = rank(&many, &Ask::default(), want(1, 1, 1, 0)).unwrap_err();
        assert!(msg.ends_with("7 cordoned (h0, h1, h2, h3, h4, and 2 more)"), "{msg}");
    }

    fn group<'a>(policy: PlacementPolicy, members: &'a [(HostId, i64)]) -> Option<Group<'a>> {
        Some(Group { name: "web", policy, members_per_host: members })
    }

    #[test]
    fn anti_affinity_takes_only_hosts_without_a_member() {
        let a = host("a", [8, 4096, 100], [0, 0, 0], (0, 0));
        let b = host("b", [8, 2048, 100], [0, 0, 0], (0, 0));
        let c = host("c", [8, 1024, 100], [0, 0, 0], (0, 0));
        let all = [a.clone(), b.clone(), c.clone()];
        let w = want(1, 256, 1, 0);
        use PlacementPolicy::AntiAffinity as AA;
        assert_eq!(rank_in_group(&all, &Ask::default(), w, group(AA, &[])).unwrap(), vec![a.id, b.id, c.id]);
        assert_eq!(rank_in_group(&all, &Ask::default(), w, group(AA, &[(a.id, 1)])).unwrap(), vec![b.id, c.id]);
        assert_eq!(rank_in_group(&all, &Ask::default(), w, group(AA, &[(a.id, 1), (c.id, 1)])).unwrap(), vec![b.id]);
        let msg = rank_in_group(&all, &Ask::default(), w, group(AA, &[(a.id, 1), (b.id, 1), (c.id, 1)])).unwrap_err();
        assert_eq!(
            msg,
            "placement group 'web' (anti-affinity): every ready host already runs one of its 3 instances (3 ready hosts: a, b, c)"
        );
        // A cordoned host without a member does not count; the one left is too small: both said.
        let d = in_state(host("d", [8, 8192, 100], [0, 0, 0], (0, 0)), HostState::Cordoned);
        let msg =
            rank_in_group(&[a.clone(), c.clone(), d], &Ask::default(), want(1, 2048, 1, 0), group(AA, &[(a.id, 2)]))
                .unwrap_err();
        assert_eq!(
            msg,
            "placement group 'web' (anti-affinity): 1 ready host already runs one of its 2 instances (a); \
             no host can take it: 2 hosts: 1 cordoned (d), 1 short of memory (2048 MiB of memory requested, at most 1024 free)"
        );
        // Nothing ready at all: the group is not the reason.
        let gone = in_state(a.clone(), HostState::Unreachable);
        let msg = rank_in_group(&[gone], &Ask::default(), w, group(AA, &[(a.id, 1)])).unwrap_err();
        assert_eq!(msg, "no host can take it: 1 host: 1 unreachable (a)");
    }

    #[test]
    fn affinity_follows_the_first_member() {
        let a = host("a", [8, 4096, 100], [0, 0, 0], (0, 0));
        let b = host("b", [8, 2048, 100], [0, 1536, 0], (0, 0));
        let all = [a.clone(), b.clone()];
        let w = want(1, 256, 1, 0);
        use PlacementPolicy::Affinity as AF;
        assert_eq!(rank_in_group(&all, &Ask::default(), w, group(AF, &[])).unwrap(), vec![a.id, b.id]);
        assert_eq!(rank_in_group(&all, &Ask::default(), w, group(AF, &[(b.id, 2)])).unwrap(), vec![b.id]);
        let msg = rank_in_group(&all, &Ask::default(), want(1, 1024, 1, 0), group(AF, &[(b.id, 2)])).unwrap_err();
        assert_eq!(
            msg,
            "placement group 'web' (affinity): its 2 instances are on b; \
             no host can take it: 1 host: 1 short of memory (1024 MiB of memory requested, at most 512 free)"
        );
        let cordoned = [a.clone(), in_state(b.clone(), HostState::Cordoned)];
        let msg = rank_in_group(&cordoned, &Ask::default(), w, group(AF, &[(b.id, 1)])).unwrap_err();
        assert_eq!(
            msg,
            "placement group 'web' (affinity): its 1 instance is on b; no host can take it: 1 host: 1 cordoned (b)"
        );
    }

    #[test]
    fn spread_prefers_fewest_members_and_pack_most() {
        let a = host("a", [8, 4096, 100], [0, 0, 0], (0, 0));
        let b = host("b", [8, 2048, 100], [0, 0, 0], (0, 0));
        let c = host("c", [8, 3072, 100], [0, 0, 0], (0, 0));
        let full = host("full", [8, 8192, 100], [8, 0, 0], (0, 0));
        let all = [a.clone(), b.clone(), c.clone(), full.clone()];
        let w = want(1, 256, 1, 0);
        use PlacementPolicy::{Pack, Spread};
        // No members: the usual order (most free memory first) for spread, the fullest for pack.
        assert_eq!(rank_in_group(&all, &Ask::default(), w, group(Spread, &[])).unwrap(), vec![a.id, c.id, b.id]);
        assert_eq!(rank_in_group(&all, &Ask::default(), w, group(Pack, &[])).unwrap(), vec![b.id, c.id, a.id]);
        let m = [(a.id, 2), (c.id, 1), (full.id, 5)];
        assert_eq!(rank_in_group(&all, &Ask::default(), w, group(Spread, &m)).unwrap(), vec![b.id, c.id, a.id]);
        assert_eq!(rank_in_group(&all, &Ask::default(), w, group(Pack, &m)).unwrap(), vec![a.id, c.id, b.id]);
        // Soft: a full host is never chosen, and nothing fitting is the usual refusal.
        let msg = rank_in_group(std::slice::from_ref(&full), &Ask::default(), w, group(Pack, &m)).unwrap_err();
        assert!(msg.starts_with("no host can take it: 1 host: 1 short of vCPUs"), "{msg}");
        // Without a group: exactly rank.
        assert_eq!(rank_in_group(&all, &Ask::default(), w, None).unwrap(), rank(&all, &Ask::default(), w).unwrap());
    }

    #[test]
    fn shortage_names_what_is_short() {
        let h = host("a", [2, 1024, 10], [2, 0, 0], (0, 0));
        let msg = rank(std::slice::from_ref(&h), &Ask::default(), want(1, 2048, 1, 0)).unwrap_err();
        assert!(msg.contains("1 short of vCPUs (1 vCPUs requested, at most 0 free)"), "{msg}");
        assert!(msg.contains("1 short of memory (2048 MiB of memory requested, at most 1024 free)"), "{msg}");
        assert!(!msg.contains("disk"), "{msg}");
        let msg = shortage(std::slice::from_ref(&h), want(1, 2048, 1, 0));
        assert!(msg.contains("1 vCPUs requested, at most 0 free on any host"), "{msg}");
        // Enough of each somewhere, but never all on one host: each host is short of one thing.
        let cpu_rich = host("c", [8, 256, 10], [0, 0, 0], (0, 0));
        let mem_rich = host("m", [1, 8192, 10], [0, 0, 0], (0, 0));
        let msg = rank(&[cpu_rich.clone(), mem_rich.clone()], &Ask::default(), want(4, 4096, 1, 0)).unwrap_err();
        assert!(msg.contains("1 short of vCPUs (4 vCPUs requested, at most 1 free)"), "{msg}");
        assert!(msg.contains("1 short of memory (4096 MiB of memory requested, at most 256 free)"), "{msg}");
        assert!(shortage(&[cpu_rich, mem_rich], want(4, 4096, 1, 0)).starts_with("no single host"));
        assert_eq!(rank(&[], &Ask::default(), want(1, 1, 1, 0)).unwrap_err(), "no host is registered");
    }

    #[test]
    fn labels_are_a_filter_and_the_refusal_names_the_hosts_without_them() {
        let mut ssd = host("ssd", [8, 2048, 100], [0, 0, 0], (0, 0));
        ssd.labels.insert("disk".into(), "ssd".into());
        let hdd = host("hdd", [8, 8192, 100], [0, 0, 0], (0, 0));
        let mut other = host("nvme", [8, 8192, 100], [0, 0, 0], (0, 0));
        other.labels.insert("disk".into(), "nvme".into());
        let all = [ssd.clone(), hdd.clone(), other.clone()];
        let labels: Labels = [("disk".to_string(), "ssd".to_string())].into();
        let ask = Ask { labels: Some(&labels), ..Ask::default() };
        assert_eq!(rank(&all, &ask, want(1, 512, 1, 0)).unwrap(), vec![ssd.id]);
        let msg = rank(&all, &ask, want(1, 4096, 1, 0)).unwrap_err();
        assert_eq!(
            msg,
            "no host can take it: 3 hosts: 2 without the label disk=ssd (hdd, nvme), \
             1 short of memory (4096 MiB of memory requested, at most 2048 free)"
        );
        // No labels asked: every host.
        let none = Labels::new();
        assert_eq!(rank(&all, &Ask { labels: Some(&none), ..Ask::default() }, want(1, 512, 1, 0)).unwrap().len(), 3);
    }

    #[test]
    fn pack_weights_fill_the_fullest_host_first() {
        let a = host("a", [8, 4096, 100], [0, 1024, 0], (0, 0));
        let b = host("b", [8, 4096, 100], [0, 3072, 0], (0, 0));
        let c = host("c", [8, 4096, 100], [0, 0, 0], (0, 0));
        let all = [a.clone(), b.clone(), c.clone()];
        let w = want(1, 512, 1, 0);
        assert_eq!(rank(&all, &Ask::default(), w).unwrap(), vec![c.id, a.id, b.id], "spread by default");
        let pack = Ask { weights: Weights::Pack, ..Ask::default() };
        assert_eq!(rank(&all, &pack, w).unwrap(), vec![b.id, a.id, c.id]);
        // A host too full for it is not first, whatever the weights.
        assert_eq!(rank(&all, &pack, want(1, 2048, 1, 0)).unwrap(), vec![a.id, c.id]);
        assert_eq!("pack".parse::<Weights>(), Ok(Weights::Pack));
        assert!("fill".parse::<Weights>().unwrap_err().contains("spread or pack"));
    }
}
