//! Our DHCP server: one UDP socket per VPC bridge (bound to the bridge with SO_BINDTODEVICE, so
//! VPCs with overlapping ranges never see each other's requests), answering only the MACs the
//! control plane gave an address, with exactly that address. No pool, no lease database: the
//! store is the lease database, so there is nothing to drift or to clean up after a crash.
//! `dhcproto` does the wire format.

use super::Leases;
use dhcproto::v4::{DhcpOption, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use tokio::net::UdpSocket;

/// Lease time handed out; the address never changes while the interface lives, so this only
/// bounds how long a guest keeps using it after its instance is gone.
const LEASE_SECS: u32 = 3600;

/// One address assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub hostname: String,
}

/// Binds the DHCP socket of `bridge` inside `netns`.
pub fn bind(netns: Option<&str>, bridge: &str) -> std::io::Result<UdpSocket> {
    let bridge = bridge.to_string();
    let std_sock = super::netns::run_in(netns, move || {
        use socket2::{Domain, Protocol, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        s.set_reuse_address(true)?;
        s.set_broadcast(true)?;
        s.bind_device(Some(bridge.as_bytes()))?;
        s.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 67).into())?;
        s.set_nonblocking(true)?;
        Ok(std::net::UdpSocket::from(s))
    })?;
    UdpSocket::from_std(std_sock)
}

/// Serves DHCP on `sock` for the leases of `bridge` until the task is aborted.
pub async fn serve(sock: UdpSocket, bridge: String, leases: Arc<Leases>) {
    let mut buf = vec![0u8; 1500];
    loop {
        let n = match sock.recv_from(&mut buf).await {
            Ok((n, _)) => n,
            Err(e) => {
                tracing::warn!(%bridge, "dhcp receive: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(req) = Message::decode(&mut Decoder::new(&buf[..n])) else { continue };
        if req.opcode() != Opcode::BootRequest || req.chaddr().len() < 6 {
            continue;
        }
        let mac = mac_string(&req.chaddr()[..6]);
        let Some(lease) = leases.dhcp(&bridge, &mac) else {
            tracing::debug!(%bridge, %mac, "dhcp request from an unknown MAC; ignored");
            continue;
        };
        let Some(reply) = answer(&req, &lease) else { continue };
        let mut out = Vec::new();
        if reply.encode(&mut Encoder::new(&mut out)).is_err() {
            continue;
        }
        if let Err(e) = sock.send_to(&out, SocketAddrV4::new(Ipv4Addr::BROADCAST, 68)).await {
            tracing::warn!(%bridge, %mac, "dhcp reply: {e}");
        } else {
            tracing::debug!(%bridge, %mac, ip = %lease.ip, "dhcp answered");
        }
    }
}

pub fn mac_string(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(":")
}

/// The reply to a request: OFFER for DISCOVER, ACK (or NAK for a wrong address) for REQUEST.
pub fn answer(req: &Message, lease: &Lease) -> Option<Message> {
    let kind = match req.opts().msg_type()? {
        MessageType::Discover => MessageType::Offer,
        MessageType::Request => {
            let asked = match req.opts().get(OptionCode::RequestedIpAddress) {
                Some(DhcpOption::RequestedIpAddress(ip)) => *ip,
                _ => req.ciaddr(),
            };
            if asked == lease.ip {
                MessageType::Ack
            } else {
                MessageType::Nak
            }
        }
        _ => return None,
    };
    let yiaddr = if kind == MessageType::Nak { Ipv4Addr::UNSPECIFIED } else { lease.ip };
    let mut m =
        Message::new_with_id(req.xid(), Ipv4Addr::UNSPECIFIED, yiaddr, lease.gateway, req.giaddr(), req.chaddr());
    m.set_opcode(Opcode::BootReply);
    m.set_flags(req.flags());
    let opts = m.opts_mut();
    opts.insert(DhcpOption::MessageType(kind));
    opts.insert(DhcpOption::ServerIdentifier(lease.gateway));
    if kind != MessageType::Nak {
        let mask = Ipv4Addr::from(u32::MAX.checked_shl(32 - lease.prefix as u32).unwrap_or(0));
        opts.insert(DhcpOption::AddressLeaseTime(LEASE_SECS));
        opts.insert(DhcpOption::SubnetMask(mask));
        opts.insert(DhcpOption::Router(vec![lease.gateway]));
        opts.insert(DhcpOption::Hostname(lease.hostname.clone()));
    }
    Some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease() -> Lease {
        Lease {
            ip: Ipv4Addr::new(10, 0, 0, 5),
            prefix: 24,
            gateway: Ipv4Addr::new(10, 0, 0, 1),
            hostname: "web1".into(),
        }
    }

    fn request(kind: MessageType, asked: Option<Ipv4Addr>) -> Message {
        let mut m = Message::new_with_id(
            7,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            &[2, 0, 0, 0, 0, 1],
        );
        m.opts_mut().insert(DhcpOption::MessageType(kind));
        if let Some(ip) = asked {
            m.opts_mut().insert(DhcpOption::RequestedIpAddress(ip));
        }
        m
    }

    #[test]
    fn offers_and_acks_exactly_the_leased_address() {
        let offer = answer(&request(MessageType::Discover, None), &lease()).unwrap();
        assert_eq!(offer.opts().msg_type(), Some(MessageType::Offer));
        assert_eq!(offer.yiaddr(), Ipv4Addr::new(10, 0, 0, 5));
        assert_eq!(offer.xid(), 7);
        assert!(
            matches!(offer.opts().get(OptionCode::SubnetMask), Some(DhcpOption::SubnetMask(m)) if *m == Ipv4Addr::new(255, 255, 255, 0))
        );
        let ack = answer(&request(MessageType::Request, Some(Ipv4Addr::new(10, 0, 0, 5))), &lease()).unwrap();
        assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
        let nak = answer(&request(MessageType::Request, Some(Ipv4Addr::new(10, 0, 0, 9))), &lease()).unwrap();
        assert_eq!(nak.opts().msg_type(), Some(MessageType::Nak));
        assert!(answer(&request(MessageType::Release, None), &lease()).is_none());
    }
}
