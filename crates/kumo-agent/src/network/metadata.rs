//! The metadata service at 169.254.169.254:80, one listener per VPC bridge (bound to the bridge,
//! so the same address serves every VPC). A caller is identified by the bridge its request came
//! in on + its source address, and that address's MAC in the bridge's neighbour table must be the
//! interface's own: a guest can only ever read its own instance's data (anti-spoofing in nft
//! already stops it from using another's address).
//!
//! Layouts: EC2 (`/`, `/<version>/meta-data/…`, `/<version>/user-data`) and OpenStack
//! (`/openstack`, `/openstack/<version>/{meta_data.json,user_data,network_data.json,vendor_data.json}`):
//! see [`render`].

use super::Leases;
use axum::extract::{ConnectInfo, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;

pub const METADATA_IP: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);

pub use kumo_host_api::net::Metadata;

/// The IPv4 neighbour table of the namespace of the thread that opens it.
const ARP_TABLE: &str = "/proc/thread-self/net/arp";

/// The metadata listener of one bridge, and that namespace's IPv4 neighbour table.
pub struct Listener {
    tcp: tokio::net::TcpListener,
    arp: Arp,
}

/// Binds the metadata listener of `bridge` inside `netns`, and opens the namespace's neighbour
/// table (`/proc/thread-self/net/arp`, opened from inside the namespace: the open file keeps
/// showing that namespace's table wherever it is read).
pub fn bind(netns: Option<&str>, bridge: &str) -> std::io::Result<Listener> {
    let bridge = bridge.to_string();
    let (std_l, arp) = super::netns::run_in(netns, move || {
        use socket2::{Domain, Protocol, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
        s.set_reuse_address(true)?;
        s.bind_device(Some(bridge.as_bytes()))?;
        s.bind(&SocketAddrV4::new(METADATA_IP, 80).into())?;
        s.listen(128)?;
        s.set_nonblocking(true)?;
        let arp = std::fs::File::open(ARP_TABLE)?;
        Ok((std::net::TcpListener::from(s), arp))
    })?;
    Ok(Listener { tcp: tokio::net::TcpListener::from_std(std_l)?, arp: Arp(Arc::new(std::sync::Mutex::new(arp))) })
}

/// A namespace's IPv4 neighbour table, read again on every lookup (a read of a procfs file: no
/// process per request, unlike `ip neigh`).
#[derive(Clone)]
struct Arp(Arc<std::sync::Mutex<std::fs::File>>);

impl Arp {
    /// The MAC the neighbour table has for `ip` on `bridge` (complete entries only).
    fn mac(&self, bridge: &str, ip: Ipv4Addr) -> Option<String> {
        use std::io::{Read, Seek};
        let mut text = String::new();
        {
            let mut f = self.0.lock().unwrap_or_else(|e| e.into_inner());
            f.rewind().ok()?;
            f.read_to_string(&mut text).ok()?;
        }
        arp_mac(&text, bridge, ip)
    }
}

/// The MAC of `ip` on `device` in the text of `/proc/net/arp` (columns: IP address, HW type,
/// Flags, HW address, Mask, Device), if its entry is complete (flag `ATF_COM`, 0x2).
fn arp_mac(text: &str, device: &str, ip: Ipv4Addr) -> Option<String> {
    const ATF_COM: u32 = 0x2;
    text.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [addr, _, flags, mac, _, dev] = f[..] else { return None };
        let flags = u32::from_str_radix(flags.trim_start_matches("0x"), 16).ok()?;
        (dev == device && addr.parse::<Ipv4Addr>().ok()? == ip && flags & ATF_COM != 0).then(|| mac.to_lowercase())
    })
}

#[derive(Clone)]
struct Ctx {
    bridge: String,
    arp: Arp,
    leases: Arc<Leases>,
}

/// Serves until the task is aborted.
pub async fn serve(listener: Listener, bridge: String, leases: Arc<Leases>) {
    let ctx = Ctx { bridge: bridge.clone(), arp: listener.arp, leases };
    let app = axum::Router::new().fallback(handle).with_state(ctx);
    if let Err(e) = axum::serve(listener.tcp, app.into_make_service_with_connect_info::<SocketAddr>()).await {
        tracing::warn!(%bridge, "metadata service stopped: {e}");
    }
}

async fn handle(State(ctx): State<Ctx>, ConnectInfo(peer): ConnectInfo<SocketAddr>, uri: Uri) -> Response {
    let SocketAddr::V4(peer) = peer else { return (StatusCode::FORBIDDEN, "IPv4 only\n").into_response() };
    let Some(md) = ctx.leases.metadata(&ctx.bridge, *peer.ip()) else {
        return (StatusCode::NOT_FOUND, "no instance has this address on this network\n").into_response();
    };
    match ctx.arp.mac(&ctx.bridge, *peer.ip()) {
        Some(mac) if mac == md.mac => {}
        other => {
            tracing::warn!(bridge = %ctx.bridge, ip = %peer.ip(), seen = ?other, want = %md.mac, "metadata caller MAC mismatch");
            return (StatusCode::FORBIDDEN, "the caller's MAC does not own this address\n").into_response();
        }
    }
    match render(&md, uri.path()) {
        Some((ct, body)) => ([("content-type", ct)], body).into_response(),
        None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

/// EC2 metadata versions served (cloud-init 22's Ec2 and OpenStack readers ask for `2009-04-04`
/// and `latest`); every one serves the same tree.
pub const EC2_VERSIONS: &[&str] = &["1.0", "2007-01-19", "2009-04-04", "latest"];
/// OpenStack metadata versions served (cloud-init picks the newest it knows from this list,
/// else `latest`); every one serves the same documents.
pub const OPENSTACK_VERSIONS: &[&str] = &[
    "2012-08-10",
    "2013-04-04",
    "2013-10-17",
    "2015-10-15",
    "2016-06-30",
    "2016-10-06",
    "2017-02-22",
    "2018-08-27",
    "latest",
];

/// The document at `path` for the instance, with its content type: the EC2 layout (`/`,
/// `/<version>/meta-data/…`, `/<version>/user-data`) and the OpenStack one (`/openstack`,
/// `/openstack/<version>/{meta_data.json,user_data,network_data.json,vendor_data.json}`), as
/// cloud-init's Ec2 and OpenStack datasources crawl them. A listing names subtrees with a
/// trailing `/`.
pub fn render(md: &Metadata, path: &str) -> Option<(&'static str, String)> {
    const TEXT: &str = "text/plain";
    const JSON: &str = "application/json";
    let path = path.trim_end_matches('/');
    if path.is_empty() {
        return Some((TEXT, EC2_VERSIONS.join("\n")));
    }
    if path == "/openstack" {
        return Some((TEXT, OPENSTACK_VERSIONS.join("\n")));
    }
    if let Some(rest) = path.strip_prefix("/openstack/") {
        let (version, doc) = rest.split_once('/').unwrap_or((rest, ""));
        if !OPENSTACK_VERSIONS.contains(&version) {
            return None;
        }
        return match doc {
            "" => {
                let mut docs = vec!["meta_data.json", "network_data.json", "vendor_data.json"];
                if md.user_data.is_some() {
                    docs.push("user_data");
                }
                Some((TEXT, docs.join("\n")))
            }
            "meta_data.json" => {
                Some((JSON, crate::openstack::meta_data(&md.instance_id, &md.hostname, &md.ssh_keys).to_string()))
            }
            "network_data.json" => Some((JSON, crate::openstack::network_data([md.mac.as_str()]).to_string())),
            "vendor_data.json" => Some((JSON, "{}".into())),
            "user_data" => Some((TEXT, md.user_data.clone()?)),
            _ => None,
        };
    }
    let rest = path.strip_prefix('/')?;
    let (version, rest) = rest.split_once('/').unwrap_or((rest, ""));
    if !EC2_VERSIONS.contains(&version) {
        return None;
    }
    let body = match rest {
        "" => {
            if md.user_data.is_some() {
                "meta-data/\nuser-data".into()
            } else {
                "meta-data/".into()
            }
        }
        "user-data" => md.user_data.clone()?,
        "meta-data" => {
            let mut keys =
                vec!["ami-id", "hostname", "instance-id", "local-hostname", "local-ipv4", "placement/", "public-keys/"];
            if md.public_ipv4.is_some() {
                keys.push("public-ipv4");
            }
            keys.join("\n")
        }
        "meta-data/instance-id" => md.instance_id.clone(),
        // Kumo has no AMIs; readers that want the key get a stable value.
        "meta-data/ami-id" => "ami-00000000".into(),
        "meta-data/hostname" | "meta-data/local-hostname" => md.hostname.clone(),
        "meta-data/local-ipv4" => md.local_ipv4.to_string(),
        "meta-data/public-ipv4" => md.public_ipv4?.to_string(),
        "meta-data/placement" => "availability-zone".into(),
        "meta-data/placement/availability-zone" => "nova".into(),
        "meta-data/public-keys" => {
            md.ssh_keys.iter().enumerate().map(|(i, _)| format!("{i}=key{i}")).collect::<Vec<_>>().join("\n")
        }
        p => {
            let rest = p.strip_prefix("meta-data/public-keys/")?;
            let (i, what) = rest.split_once('/').unwrap_or((rest, ""));
            let key = md.ssh_keys.get(i.parse::<usize>().ok()?)?;
            match what {
                "" => "openssh-key".into(),
                "openssh-key" => key.clone(),
                _ => return None,
            }
        }
    };
    Some((TEXT, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_neighbour_table_gives_complete_entries_on_the_bridge_only() {
        let text = "IP address       HW type     Flags       HW address            Mask     Device\n\
                    10.30.0.5        0x1         0x2         52:54:00:AA:00:05     *        kbr-1\n\
                    10.30.0.6        0x1         0x0         00:00:00:00:00:00     *        kbr-1\n\
                    10.30.0.7        0x1         0x2         52:54:00:aa:00:07     *        kbr-2\n";
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert_eq!(arp_mac(text, "kbr-1", ip("10.30.0.5")).as_deref(), Some("52:54:00:aa:00:05"));
        assert_eq!(arp_mac(text, "kbr-1", ip("10.30.0.6")), None, "incomplete entry");
        assert_eq!(arp_mac(text, "kbr-1", ip("10.30.0.7")), None, "another bridge");
        assert_eq!(arp_mac(text, "kbr-2", ip("10.30.0.7")).as_deref(), Some("52:54:00:aa:00:07"));
        assert_eq!(arp_mac("", "kbr-1", ip("10.30.0.5")), None);
    }

    /// The table opened inside a namespace is that namespace's, read again on every lookup.
    #[test]
    fn the_table_is_read_from_the_namespace_it_was_opened_in() {
        // SAFETY: geteuid has no preconditions.
        assert_eq!(unsafe { libc::geteuid() }, 0, "needs root (a network namespace of its own)");
        let ns = format!("kumo-arp-{}", std::process::id());
        let ip = |args: &[&str]| assert!(std::process::Command::new("ip").args(args).status().unwrap().success());
        ip(&["netns", "add", &ns]);
        let _del = super::super::netns::TestNamespaces(vec![ns.clone()]);
        ip(&["-n", &ns, "link", "add", "kbr-t", "type", "bridge"]);
        ip(&["-n", &ns, "link", "set", "kbr-t", "up"]);
        // Opened as `bind` opens it: on a thread inside the namespace, which then ends.
        let file = super::super::netns::run_in(Some(&ns), || std::fs::File::open(ARP_TABLE)).unwrap();
        let arp = Arp(Arc::new(std::sync::Mutex::new(file)));
        assert_eq!(arp.mac("kbr-t", "10.99.0.2".parse().unwrap()), None);
        ip(&[
            "-n",
            &ns,
            "neigh",
            "add",
            "10.99.0.2",
            "lladdr",
            "52:54:00:12:34:56",
            "dev",
            "kbr-t",
            "nud",
            "permanent",
        ]);
        assert_eq!(arp.mac("kbr-t", "10.99.0.2".parse().unwrap()).as_deref(), Some("52:54:00:12:34:56"));
    }

    #[test]
    fn both_layouts() {
        let md = Metadata {
            instance_id: "i-1".into(),
            hostname: "web1".into(),
            local_ipv4: Ipv4Addr::new(10, 0, 0, 2),
            public_ipv4: None,
            ssh_keys: vec!["ssh-ed25519 AAAA k".into()],
            user_data: Some("echo hi".into()),
            mac: "02:00:00:00:00:01".into(),
        };
        assert_eq!(render(&md, "/latest/meta-data/instance-id").unwrap().1, "i-1");
        assert_eq!(render(&md, "/latest/meta-data/local-ipv4").unwrap().1, "10.0.0.2");
        assert!(render(&md, "/latest/meta-data/public-ipv4").is_none());
        assert_eq!(render(&md, "/latest/meta-data/public-keys/0/openssh-key").unwrap().1, "ssh-ed25519 AAAA k");
        assert!(render(&md, "/latest/meta-data/public-keys/1/openssh-key").is_none());
        assert_eq!(render(&md, "/latest/user-data").unwrap().1, "echo hi");
        let (ct, json) = render(&md, "/openstack/latest/meta_data.json").unwrap();
        assert_eq!(ct, "application/json");
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["uuid"], "i-1");
        assert_eq!(v["public_keys"]["key0"], "ssh-ed25519 AAAA k");
    }

    fn md(user_data: Option<&str>) -> Metadata {
        Metadata {
            instance_id: "i-1".into(),
            hostname: "web1".into(),
            local_ipv4: Ipv4Addr::new(10, 0, 0, 2),
            public_ipv4: Some(Ipv4Addr::new(203, 0, 113, 5)),
            ssh_keys: vec!["ssh-ed25519 AAAA k".into()],
            user_data: user_data.map(String::from),
            mac: "02:00:00:00:00:01".into(),
        }
    }

    /// What cloud-init 22's OpenStack reader asks first: the version list, then the newest
    /// version it knows; and its Ec2 reader: a dated version's tree, crawled through listings.
    #[test]
    fn version_lists_and_dated_versions_as_cloud_init_crawls_them() {
        let md = md(None);
        let (_, os) = render(&md, "/openstack").unwrap();
        assert!(os.lines().any(|v| v == "2018-08-27") && os.lines().any(|v| v == "latest"), "{os}");
        let (_, os) = render(&md, "/openstack/").unwrap();
        assert!(os.contains("latest"));
        for v in OPENSTACK_VERSIONS {
            let (ct, doc) = render(&md, &format!("/openstack/{v}/meta_data.json")).unwrap();
            assert_eq!(ct, "application/json");
            let doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
            assert_eq!(doc["uuid"], "i-1");
            assert_eq!(doc["hostname"], "web1");
        }
        assert!(render(&md, "/openstack/1999-01-01/meta_data.json").is_none());
        // No user data: not listed, and 404.
        let (_, docs) = render(&md, "/openstack/latest").unwrap();
        assert!(!docs.contains("user_data"), "{docs}");
        assert!(render(&md, "/openstack/latest/user_data").is_none());
        assert!(render(&md, "/latest/user-data").is_none());
        assert_eq!(render(&md, "/openstack/latest/vendor_data.json").unwrap().1, "{}");
        let (_, net) = render(&md, "/openstack/latest/network_data.json").unwrap();
        let net: serde_json::Value = serde_json::from_str(&net).unwrap();
        assert_eq!(net["links"][0]["ethernet_mac_address"], "02:00:00:00:00:01");
        assert_eq!(net["networks"][0]["type"], "ipv4_dhcp");
        assert_eq!(net["networks"][0]["link"], net["links"][0]["id"]);

        let (_, ec2) = render(&md, "/").unwrap();
        assert!(ec2.lines().any(|v| v == "2009-04-04"), "{ec2}");
        assert_eq!(render(&md, "/2009-04-04").unwrap().1, "meta-data/");
        // Crawl the dated tree through its listings: every listed key answers.
        let mut todo = vec!["/2009-04-04/meta-data/".to_string()];
        let mut leaves = std::collections::BTreeMap::new();
        while let Some(dir) = todo.pop() {
            let (_, listing) = render(&md, &dir).unwrap_or_else(|| panic!("{dir} listed but 404"));
            for entry in listing.lines() {
                let entry = entry.split_once('=').map_or(entry, |(i, _)| i);
                if entry.ends_with('/') || dir.ends_with("public-keys/") {
                    let sub = format!("{dir}{}/", entry.trim_end_matches('/'));
                    todo.push(sub);
                } else {
                    let p = format!("{dir}{entry}");
                    let (_, v) = render(&md, &p).unwrap_or_else(|| panic!("{p} listed but 404"));
                    leaves.insert(p, v);
                }
            }
        }
        assert_eq!(leaves["/2009-04-04/meta-data/instance-id"], "i-1");
        assert_eq!(leaves["/2009-04-04/meta-data/local-hostname"], "web1");
        assert_eq!(leaves["/2009-04-04/meta-data/public-ipv4"], "203.0.113.5");
        assert_eq!(leaves["/2009-04-04/meta-data/placement/availability-zone"], "nova");
        assert_eq!(leaves["/2009-04-04/meta-data/public-keys/0/openssh-key"], "ssh-ed25519 AAAA k");
        assert!(render(&md, "/2030-01-01/meta-data/instance-id").is_none());

        let md = self::md(Some("#cloud-config\n"));
        assert_eq!(render(&md, "/latest").unwrap().1, "meta-data/\nuser-data");
        assert_eq!(render(&md, "/openstack/2018-08-27/user_data").unwrap().1, "#cloud-config\n");
        assert!(render(&md, "/openstack/latest").unwrap().1.contains("user_data"));
    }
}
