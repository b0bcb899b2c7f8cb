//! The metadata service at 169.254.169.254:80, one listener per VPC bridge (bound to the bridge,
//! so the same address serves every VPC). A caller is identified by the bridge its request came
//! in on + its source address, and that address's MAC in the bridge's neighbour table must be the
//! interface's own: a guest can only ever read its own instance's data (anti-spoofing in nft
//! already stops it from using another's address).
//!
//! Layouts: EC2 (`/latest/meta-data/…`, `/latest/user-data`) and OpenStack
//! (`/openstack/latest/meta_data.json`, `/openstack/latest/user_data`).

use super::Leases;
use axum::extract::{ConnectInfo, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;

pub const METADATA_IP: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);

pub use kumo_host_api::net::Metadata;

/// Binds the metadata listener of `bridge` inside `netns`.
pub fn bind(netns: Option<&str>, bridge: &str) -> std::io::Result<tokio::net::TcpListener> {
    let bridge = bridge.to_string();
    let std_l = super::netns::run_in(netns, move || {
        use socket2::{Domain, Protocol, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
        s.set_reuse_address(true)?;
        s.bind_device(Some(bridge.as_bytes()))?;
        s.bind(&SocketAddrV4::new(METADATA_IP, 80).into())?;
        s.listen(128)?;
        s.set_nonblocking(true)?;
        Ok(std::net::TcpListener::from(s))
    })?;
    tokio::net::TcpListener::from_std(std_l)
}

#[derive(Clone)]
struct Ctx {
    bridge: String,
    netns: Option<String>,
    leases: Arc<Leases>,
}

/// Serves until the task is aborted.
pub async fn serve(listener: tokio::net::TcpListener, netns: Option<String>, bridge: String, leases: Arc<Leases>) {
    let ctx = Ctx { bridge: bridge.clone(), netns, leases };
    let app = axum::Router::new().fallback(handle).with_state(ctx);
    if let Err(e) = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await {
        tracing::warn!(%bridge, "metadata service stopped: {e}");
    }
}

/// The MAC the bridge's neighbour table has for `ip`.
async fn neighbour_mac(netns: Option<&str>, bridge: &str, ip: Ipv4Addr) -> Option<String> {
    let mut args: Vec<String> = Vec::new();
    if let Some(ns) = netns {
        args.extend(["-n".into(), ns.into()]);
    }
    args.extend(["-j", "neigh", "show", "dev", bridge, "to", &ip.to_string()].map(String::from));
    let out = crate::system::tool::run("ip", &args).await.ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v.as_array()?.iter().find_map(|n| n["lladdr"].as_str().map(|s| s.to_lowercase()))
}

async fn handle(State(ctx): State<Ctx>, ConnectInfo(peer): ConnectInfo<SocketAddr>, uri: Uri) -> Response {
    let SocketAddr::V4(peer) = peer else { return (StatusCode::FORBIDDEN, "IPv4 only\n").into_response() };
    let Some(md) = ctx.leases.metadata(&ctx.bridge, *peer.ip()) else {
        return (StatusCode::NOT_FOUND, "no instance has this address on this network\n").into_response();
    };
    match neighbour_mac(ctx.netns.as_deref(), &ctx.bridge, *peer.ip()).await {
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

/// The document at `path` for the instance, with its content type.
pub fn render(md: &Metadata, path: &str) -> Option<(&'static str, String)> {
    const TEXT: &str = "text/plain";
    let path = path.trim_end_matches('/');
    let body = match path {
        "/latest/meta-data" => {
            let mut keys = vec!["hostname", "instance-id", "local-ipv4", "public-keys/"];
            if md.public_ipv4.is_some() {
                keys.push("public-ipv4");
            }
            keys.join("\n")
        }
        "/latest/meta-data/instance-id" => md.instance_id.clone(),
        "/latest/meta-data/hostname" | "/latest/meta-data/local-hostname" => md.hostname.clone(),
        "/latest/meta-data/local-ipv4" => md.local_ipv4.to_string(),
        "/latest/meta-data/public-ipv4" => md.public_ipv4?.to_string(),
        "/latest/meta-data/public-keys" => {
            md.ssh_keys.iter().enumerate().map(|(i, _)| format!("{i}=key{i}")).collect::<Vec<_>>().join("\n")
        }
        "/latest/user-data" | "/openstack/latest/user_data" => md.user_data.clone()?,
        "/openstack/latest/meta_data.json" => {
            let keys: serde_json::Map<String, serde_json::Value> =
                md.ssh_keys.iter().enumerate().map(|(i, k)| (format!("key{i}"), k.clone().into())).collect();
            let doc = serde_json::json!({
                "uuid": md.instance_id,
                "name": md.hostname,
                "hostname": md.hostname,
                "public_keys": keys,
            });
            return Some(("application/json", doc.to_string()));
        }
        p => {
            let rest = p.strip_prefix("/latest/meta-data/public-keys/")?;
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
}
