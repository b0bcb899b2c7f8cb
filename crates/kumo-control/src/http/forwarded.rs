//! The client's address behind reverse proxies.
//!
//! Behind a TLS-terminating proxy every connection comes from the proxy, so the login limiter
//! and the audit log would see one address for everyone. A proxy says whom it forwards in a
//! header (`X-Forwarded-For: client, proxy1` or RFC 7239 `Forwarded: for=client, for=proxy1`),
//! each hop appending the address it received the request from. Anyone can send such a header,
//! so it is believed only when the peer is a configured trusted proxy (`--trusted-proxy CIDR`),
//! and only as far as the chain of trusted proxies goes: walking the list from the right, the
//! first address that is not a trusted proxy is the client (the right-most untrusted address).
//! Entries left of it were written by the client itself and are ignored.
//!
//! Only one header is read, the one the operator's proxy writes (`--forwarded-header`): a proxy
//! appends to its own header but passes the other one on untouched, so reading the other would
//! believe whatever the client put there.

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Which header the trusted proxies write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, …` (nginx, HAProxy, Caddy, Traefik by default).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client;proto=https, for=proxy1`.
    Forwarded,
}

impl std::str::FromStr for ForwardedHeader {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Ok(ForwardedHeader::XForwardedFor),
            "forwarded" => Ok(ForwardedHeader::Forwarded),
            other => Err(format!("unknown forwarded header '{other}': use x-forwarded-for or forwarded")),
        }
    }
}

/// The reverse proxies whose forwarded headers are believed (`--trusted-proxy`), and which header.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    pub networks: Vec<IpNet>,
    pub header: ForwardedHeader,
}

impl TrustedProxies {
    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = unmap(ip);
        self.networks.iter().any(|n| n.contains(&ip))
    }

    /// The client's address: the peer's, unless the peer is a trusted proxy, then the right-most
    /// address of the forwarded chain that is not a trusted proxy. An entry that is not an
    /// address (`unknown`, an obfuscated identifier) ends the walk at the hop that wrote it.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = unmap(peer);
        if !self.trusts(peer) {
            return peer;
        }
        let mut client = peer;
        for entry in self.chain(headers).iter().rev() {
            let Some(ip) = entry.map(unmap) else { return client };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        client
    }

    /// The forwarded chain, left (first hop) to right (last hop), over all header lines in order.
    fn chain(&self, headers: &HeaderMap) -> Vec<Option<IpAddr>> {
        let name = match self.header {
            ForwardedHeader::XForwardedFor => "x-forwarded-for",
            ForwardedHeader::Forwarded => "forwarded",
        };
        let mut out = Vec::new();
        for value in headers.get_all(name) {
            // A header that is not text cannot be trusted for any of its entries.
            let Ok(text) = value.to_str() else {
                out.push(None);
                continue;
            };
            for element in text.split(',') {
                out.push(match self.header {
                    ForwardedHeader::XForwardedFor => parse_node(element),
                    ForwardedHeader::Forwarded => element
                        .split(';')
                        .filter_map(|pair| pair.split_once('='))
                        .find(|(k, _)| k.trim().eq_ignore_ascii_case("for"))
                        .and_then(|(_, v)| parse_node(v)),
                });
            }
        }
        out
    }
}

/// An address from a forwarded entry: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`,
/// `[2001:db8::1]:4711`, optionally quoted.
fn parse_node(s: &str) -> Option<IpAddr> {
    let s = s.trim().trim_matches('"');
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    // `[2001:db8::1]` without a port.
    s.strip_prefix('[').and_then(|r| r.strip_suffix(']')).and_then(|r| r.parse().ok())
}

/// `::ffff:192.0.2.1` (a dual-stack socket's view of an IPv4 peer) as `192.0.2.1`.
fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// The resolved client address, left in the request's extensions by [`resolve`].
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub IpAddr);

/// Middleware: resolves the client's address once per request (see the module documentation).
pub async fn resolve(State(app): State<Arc<crate::App>>, mut req: Request, next: Next) -> Response {
    if let Some(peer) = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()) {
        let client = app.config.trusted_proxies.client(peer, req.headers());
        req.extensions_mut().insert(ClientAddr(client));
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(nets: &[&str], header: ForwardedHeader) -> TrustedProxies {
        TrustedProxies { networks: nets.iter().map(|n| n.parse().expect("cidr")).collect(), header }
    }

    fn headers(name: &'static str, values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(name, v.parse().expect("header value"));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_says() {
        let t = proxies(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor);
        let h = headers("x-forwarded-for", &["203.0.113.1"]);
        assert_eq!(t.client(ip("192.0.2.9"), &h), ip("192.0.2.9"));
        assert_eq!(TrustedProxies::default().client(ip("10.0.0.1"), &h), ip("10.0.0.1"));
    }

    #[test]
    fn the_right_most_untrusted_address_is_the_client() {
        let t = proxies(&["10.0.0.0/8", "2001:db8:ff::/48"], ForwardedHeader::XForwardedFor);
        // The client forged the first entry; the proxy appended the real one.
        let h = headers("x-forwarded-for", &["198.51.100.66, 203.0.113.1"]);
        assert_eq!(t.client(ip("10.0.0.1"), &h), ip("203.0.113.1"));
        // Two trusted hops, and several header lines.
        let h = headers("x-forwarded-for", &["198.51.100.66", "203.0.113.1, 10.1.1.1"]);
        assert_eq!(t.client(ip("10.0.0.1"), &h), ip("203.0.113.1"));
        // A dual-stack socket reports IPv4 peers mapped.
        assert_eq!(t.client(ip("::ffff:10.0.0.1"), &h), ip("203.0.113.1"));
        // Only trusted hops: the left-most one is as far as we can see.
        let h = headers("x-forwarded-for", &["10.9.9.9, 10.1.1.1"]);
        assert_eq!(t.client(ip("10.0.0.1"), &h), ip("10.9.9.9"));
        // No header: the proxy itself (e.g. its health checks).
        assert_eq!(t.client(ip("10.0.0.1"), &HeaderMap::new()), ip("10.0.0.1"));
        // Garbage where the client should be: stop at the hop that wrote it.
        let h = headers("x-forwarded-for", &["unknown, 10.1.1.1"]);
        assert_eq!(t.client(ip("10.0.0.1"), &h), ip("10.1.1.1"));
        let h = headers("x-forwarded-for", &["[2001:db8::5]:4711"]);
        assert_eq!(t.client(ip("2001:db8:ff::1"), &h), ip("2001:db8::5"));
    }

    #[test]
    fn forwarded_is_parsed_and_only_the_configured_header_is_read() {
        let t = proxies(&["10.0.0.0/8"], ForwardedHeader::Forwarded);
        let mut h = headers(
            "forwarded",
            &[r#"for=198.51.100.66;proto=https, for="[2001:db8::5]:4711";proto=https;by=10.0.0.1"#],
        );
        h.append("x-forwarded-for", "192.0.2.200".parse().expect("value"));
        assert_eq!(t.client(ip("10.0.0.1"), &h), ip("2001:db8::5"));
        let xff = proxies(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor);
        assert_eq!(xff.client(ip("10.0.0.1"), &h), ip("192.0.2.200"));
        assert_eq!("Forwarded".parse::<ForwardedHeader>(), Ok(ForwardedHeader::Forwarded));
        assert!("x-real-ip".parse::<ForwardedHeader>().is_err());
    }
}
