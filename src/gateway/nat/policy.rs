//! The pure decisions of NAT egress: where a sandbox may go, how many flows
//! it may hold, and the refusal frames (TCP RST, ICMP unreachable) warren
//! crafts itself. No I/O, no clock (STYLE items 1 and 2): everything here is
//! unit-tested with frames built by `smoltcp::wire`.
//!
//! # Destinations
//!
//! [`check_destination`] maps the address a sandbox sent to onto the
//! address the host socket connects to, or refuses it:
//!
//! - [`HOST_LOOPBACK_ADDR`] (169.254.1.2, the address podman uses for
//!   `host.containers.internal` with pasta) becomes the host's 127.0.0.1 when
//!   the network opted in with `--opt host-loopback=true`, and is refused
//!   otherwise;
//! - 127.0.0.0/8, 0.0.0.0/8 (connecting to 0.0.0.0 reaches the host's
//!   loopback too), multicast, 240.0.0.0/4 and the broadcast address are
//!   always refused;
//! - every container network's subnet (internal ones included) is refused:
//!   the gateway never routes between networks, by NAT or any other path;
//! - anything else is re-originated as is.
//!
//! # Limits
//!
//! [`FlowCounts`] counts the live flows of each sandbox (by source address)
//! against [`Limits::per_sandbox`]; the daemon-wide bound is an atomic in
//! [`super::Nat`], shared by every network.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, Icmpv4DstUnreachable,
    Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket, TcpRepr,
    TcpSeqNumber,
};

/// The address that stands for the host's 127.0.0.1 on networks created
/// with `--opt host-loopback=true` (podman's `host.containers.internal`
/// address with pasta). Link-local, so it is never inside a container subnet
/// and a sandbox reaches it through its default route, i.e. the gateway.
pub const HOST_LOOPBACK_ADDR: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 2);

/// The network option that maps [`HOST_LOOPBACK_ADDR`] to the host's
/// loopback (`true`), or the gateway's own address (`gateway`, see
/// [`host_loopback_gateway`]).
pub const HOST_LOOPBACK_OPTION: &str = "host-loopback";

/// The [`HOST_LOOPBACK_OPTION`] value that makes the gateway's own address
/// stand for the host's 127.0.0.1, as slirp4netns's 10.0.2.2 does.
pub const HOST_LOOPBACK_GATEWAY: &str = "gateway";

/// The [`HOST_LOOPBACK_OPTION`] value of slirp4netns's
/// `--disable-host-loopback`: the host's loopback is out of reach, and a
/// TCP connection to the gateway's own address gets ICMP network
/// unreachable (the client's "Network is unreachable"), UDP to it nothing
/// (DNS there excepted), as slirp4netns answers.
pub const HOST_LOOPBACK_UNREACHABLE: &str = "unreachable";

/// Whether a network's options say [`HOST_LOOPBACK_UNREACHABLE`].
pub fn host_loopback_unreachable(value: Option<&str>) -> bool {
    value.is_some_and(|v| v.eq_ignore_ascii_case(HOST_LOOPBACK_UNREACHABLE))
}

/// Default bound of live flows (TCP, UDP and ICMP) of one sandbox address.
pub const DEFAULT_MAX_FLOWS_PER_SANDBOX: usize = 1024;

/// Default bound of live flows of the whole daemon.
pub const DEFAULT_MAX_FLOWS: usize = 16384;

/// The largest IPv4 packet.
pub const MAX_PACKET: usize = 65535;

/// TTL of the packets warren crafts.
const TTL: u8 = 64;

/// Why a destination is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The host's loopback (directly, via 0.0.0.0, or the mapped address on
    /// a network that did not opt in).
    Loopback,
    /// Another (or this) container network's subnet.
    ContainerNetwork,
    /// Multicast, broadcast or reserved: never re-originated.
    NotUnicast,
}

/// Where a sandbox's packet to `dst` goes on the host side, or why not.
pub fn check_destination(
    dst: Ipv4Addr,
    container_subnets: &[Ipv4Net],
    host_loopback: bool,
) -> Result<Ipv4Addr, Refusal> {
    if dst == HOST_LOOPBACK_ADDR {
        return if host_loopback {
            Ok(Ipv4Addr::LOCALHOST)
        } else {
            Err(Refusal::Loopback)
        };
    }
    let first = dst.octets()[0];
    if dst.is_loopback() || first == 0 {
        return Err(Refusal::Loopback);
    }
    if dst.is_multicast() || dst.is_broadcast() || first >= 240 {
        return Err(Refusal::NotUnicast);
    }
    if container_subnets.iter().any(|net| net.contains(&dst)) {
        return Err(Refusal::ContainerNetwork);
    }
    Ok(dst)
}

/// Whether a network's options turn host loopback on (`true`, `1`, `yes`).
pub fn host_loopback_enabled(value: Option<&str>) -> bool {
    matches!(
        value.map(str::to_ascii_lowercase).as_deref(),
        Some("true" | "1" | "yes" | "on")
    )
}

/// Whether a network's options map TCP and UDP to the gateway's own address
/// onto the host's loopback (`host-loopback=gateway`).
pub fn host_loopback_gateway(value: Option<&str>) -> bool {
    value.is_some_and(|v| v.eq_ignore_ascii_case(HOST_LOOPBACK_GATEWAY))
}

/// The flow bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Live flows per sandbox address.
    pub per_sandbox: usize,
    /// Live flows of the whole daemon.
    pub total: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            per_sandbox: DEFAULT_MAX_FLOWS_PER_SANDBOX,
            total: DEFAULT_MAX_FLOWS,
        }
    }
}

/// Live flows per sandbox address, bounded by a per-sandbox limit.
#[derive(Debug, Default)]
pub struct FlowCounts {
    counts: HashMap<Ipv4Addr, usize>,
}

impl FlowCounts {
    /// Count one more flow of `src`, unless it already has `limit`.
    pub fn try_add(&mut self, src: Ipv4Addr, limit: usize) -> bool {
        let n = self.counts.entry(src).or_insert(0);
        if *n >= limit {
            if *n == 0 {
                self.counts.remove(&src);
            }
            return false;
        }
        *n += 1;
        true
    }

    /// One flow of `src` ended. Returns whether it was its last.
    pub fn remove(&mut self, src: Ipv4Addr) -> bool {
        match self.counts.get_mut(&src) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                self.counts.remove(&src);
                true
            }
            None => true,
        }
    }

    /// Live flows of `src`.
    pub fn get(&self, src: Ipv4Addr) -> usize {
        self.counts.get(&src).copied().unwrap_or(0)
    }
}

/// The four addresses of a TCP or UDP flow, as the sandbox sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// The sandbox's address and port.
    pub src: (Ipv4Addr, u16),
    /// The outside address and port the sandbox sent to (before mapping).
    pub dst: (Ipv4Addr, u16),
}

/// The Ethernet addresses of a reply: from the gateway to the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// The gateway's MAC (source of every reply).
    pub gateway: EthernetAddress,
    /// The sandbox's MAC.
    pub sandbox: EthernetAddress,
}

/// The Ethernet header of a frame from the gateway to the sandbox.
pub fn ethernet_header(link: Link) -> [u8; 14] {
    let mut header = [0u8; 14];
    header[..6].copy_from_slice(link.sandbox.as_bytes());
    header[6..12].copy_from_slice(link.gateway.as_bytes());
    header[12..].copy_from_slice(&[0x08, 0x00]);
    header
}

/// Put `ip_packet` in an Ethernet frame from the gateway to the sandbox,
/// into `out` (cleared first).
pub fn wrap_ethernet(link: Link, ip_packet: &[u8], out: &mut Vec<u8>) {
    let repr = EthernetRepr {
        src_addr: link.gateway,
        dst_addr: link.sandbox,
        ethertype: EthernetProtocol::Ipv4,
    };
    out.clear();
    out.resize(repr.buffer_len() + ip_packet.len(), 0);
    let mut frame = EthernetFrame::new_unchecked(&mut out[..]);
    repr.emit(&mut frame);
    frame.payload_mut().copy_from_slice(ip_packet);
}

/// Split an IPv4 packet (without options, as smoltcp emits them) into
/// fragments of at most `mtu` bytes and hand each to `emit`; a packet that
/// fits is handed over whole. The NAT's smoltcp interface runs with a 65535
/// MTU so that a 65507-byte UDP reply leaves it whole; this cuts it to the
/// network's MTU. `DF` is ignored (smoltcp sets it on everything; the packet
/// is ours to split). Returns false (and emits nothing) for a packet that
/// cannot be split: malformed or already a fragment.
pub fn fragment(packet: &[u8], mtu: usize, emit: &mut dyn FnMut(&[u8])) -> bool {
    if packet.len() <= mtu {
        emit(packet);
        return true;
    }
    let Ok(ip) = Ipv4Packet::new_checked(packet) else {
        return false;
    };
    let header_len = usize::from(ip.header_len());
    if ip.more_frags() || ip.frag_offset() != 0 || mtu < header_len + 8 {
        return false;
    }
    let payload = ip.payload();
    // Every fragment but the last carries a multiple of 8 bytes.
    let step = (mtu - header_len) & !7;
    let mut buffer = vec![0u8; mtu];
    let mut offset = 0;
    while offset < payload.len() {
        let len = step.min(payload.len() - offset);
        let last = offset + len == payload.len();
        let total = header_len + len;
        buffer[..header_len].copy_from_slice(&packet[..header_len]);
        buffer[header_len..total].copy_from_slice(&payload[offset..offset + len]);
        let mut frag = Ipv4Packet::new_unchecked(&mut buffer[..total]);
        frag.set_total_len(total as u16);
        frag.set_dont_frag(false);
        frag.set_more_frags(!last);
        frag.set_frag_offset(offset as u16);
        frag.fill_checksum();
        emit(&buffer[..total]);
        offset += len;
    }
    true
}

/// The RST|ACK that refuses a sandbox's SYN, as a kernel answers a SYN to a
/// closed port. `syn` is the SYN's IPv4 packet (already checked).
pub fn tcp_rst_for_syn(link: Link, syn: &[u8], out: &mut Vec<u8>) -> bool {
    let Ok(ip) = Ipv4Packet::new_checked(syn) else {
        return false;
    };
    let Ok(tcp) = TcpPacket::new_checked(ip.payload()) else {
        return false;
    };
    let seg_len = tcp.payload().len() + usize::from(tcp.syn()) + usize::from(tcp.fin());
    let ack = tcp.seq_number() + seg_len;
    let tcp_repr = TcpRepr {
        src_port: tcp.dst_port(),
        dst_port: tcp.src_port(),
        control: TcpControl::Rst,
        seq_number: if tcp.ack() {
            tcp.ack_number()
        } else {
            TcpSeqNumber(0)
        },
        ack_number: Some(ack),
        window_len: 0,
        window_scale: None,
        max_seg_size: None,
        sack_permitted: false,
        sack_ranges: [None, None, None],
        timestamp: None,
        payload: &[],
    };
    let ip_repr = Ipv4Repr {
        src_addr: ip.dst_addr(),
        dst_addr: ip.src_addr(),
        next_header: IpProtocol::Tcp,
        payload_len: tcp_repr.buffer_len(),
        hop_limit: TTL,
    };
    let mut packet = vec![0u8; ip_repr.buffer_len() + tcp_repr.buffer_len()];
    let mut ip_out = Ipv4Packet::new_unchecked(&mut packet[..]);
    ip_repr.emit(&mut ip_out, &Default::default());
    let mut tcp_out = TcpPacket::new_unchecked(ip_out.payload_mut());
    tcp_repr.emit(
        &mut tcp_out,
        &ip_repr.src_addr.into(),
        &ip_repr.dst_addr.into(),
        &Default::default(),
    );
    wrap_ethernet(link, &packet, out);
    true
}

/// An ICMP destination-unreachable for `original` (an IPv4 packet from the
/// sandbox), from `from`: the header and the first 8 bytes of its payload,
/// as RFC 792 asks. `from` is the packet's destination, so the sandbox's
/// kernel matches the error to its socket.
pub fn icmp_unreachable(
    link: Link,
    reason: Icmpv4DstUnreachable,
    original: &[u8],
    out: &mut Vec<u8>,
) -> bool {
    let Ok(ip) = Ipv4Packet::new_checked(original) else {
        return false;
    };
    let Ok(header) = Ipv4Repr::parse(&ip, &Default::default()) else {
        return false;
    };
    let data = &ip.payload()[..ip.payload().len().min(8)];
    let icmp_repr = Icmpv4Repr::DstUnreachable {
        reason,
        header,
        data,
    };
    icmp_from(link, ip.dst_addr(), ip.src_addr(), &icmp_repr, out);
    true
}

/// The IPv4 and UDP headers of a datagram of `key` with no payload: what an
/// ICMP error about that flow quotes.
pub fn udp_header_packet(key: FlowKey) -> Vec<u8> {
    let ip_repr = Ipv4Repr {
        src_addr: key.src.0,
        dst_addr: key.dst.0,
        next_header: IpProtocol::Udp,
        payload_len: 8,
        hop_limit: TTL,
    };
    let mut packet = vec![0u8; ip_repr.buffer_len() + 8];
    let mut ip = Ipv4Packet::new_unchecked(&mut packet[..]);
    ip_repr.emit(&mut ip, &Default::default());
    let udp = ip.payload_mut();
    udp[0..2].copy_from_slice(&key.src.1.to_be_bytes());
    udp[2..4].copy_from_slice(&key.dst.1.to_be_bytes());
    udp[4..6].copy_from_slice(&8u16.to_be_bytes());
    packet
}

/// Emit an ICMP message from `src` to `dst` as an Ethernet frame in `out`.
pub fn icmp_from(
    link: Link,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    icmp_repr: &Icmpv4Repr<'_>,
    out: &mut Vec<u8>,
) {
    let ip_repr = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::Icmp,
        payload_len: icmp_repr.buffer_len(),
        hop_limit: TTL,
    };
    let mut packet = vec![0u8; ip_repr.buffer_len() + icmp_repr.buffer_len()];
    let mut ip_out = Ipv4Packet::new_unchecked(&mut packet[..]);
    ip_repr.emit(&mut ip_out, &Default::default());
    let mut icmp_out = Icmpv4Packet::new_unchecked(ip_out.payload_mut());
    icmp_repr.emit(&mut icmp_out, &Default::default());
    wrap_ethernet(link, &packet, out);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use smoltcp::wire::{TcpPacket, TcpSeqNumber};

    const SANDBOX: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 2);
    const OUTSIDE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);

    fn link() -> Link {
        Link {
            gateway: EthernetAddress([0x02, 0x42, 0xac, 0x12, 0, 1]),
            sandbox: EthernetAddress([0x02, 0x42, 0xac, 0x12, 0, 2]),
        }
    }

    fn subnets() -> Vec<Ipv4Net> {
        vec![
            "172.18.0.0/16".parse().expect("net"),
            "172.19.0.0/16".parse().expect("net"),
        ]
    }

    /// A SYN from the sandbox to OUTSIDE:80, as an IPv4 packet.
    pub(crate) fn syn_packet(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), seq: i32) -> Vec<u8> {
        let tcp_repr = TcpRepr {
            src_port: src.1,
            dst_port: dst.1,
            control: TcpControl::Syn,
            seq_number: TcpSeqNumber(seq),
            ack_number: None,
            window_len: 64240,
            window_scale: Some(7),
            max_seg_size: Some(1460),
            sack_permitted: true,
            sack_ranges: [None, None, None],
            timestamp: None,
            payload: &[],
        };
        tcp_ip_packet(src.0, dst.0, &tcp_repr)
    }

    /// `tcp_repr` from `src` to `dst` as an IPv4 packet, checksums filled.
    pub(crate) fn tcp_ip_packet(src: Ipv4Addr, dst: Ipv4Addr, tcp_repr: &TcpRepr) -> Vec<u8> {
        let ip_repr = Ipv4Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: IpProtocol::Tcp,
            payload_len: tcp_repr.buffer_len(),
            hop_limit: 64,
        };
        let mut packet = vec![0u8; ip_repr.buffer_len() + tcp_repr.buffer_len()];
        let mut ip = Ipv4Packet::new_unchecked(&mut packet[..]);
        ip_repr.emit(&mut ip, &Default::default());
        let mut tcp = TcpPacket::new_unchecked(ip.payload_mut());
        tcp_repr.emit(&mut tcp, &src.into(), &dst.into(), &Default::default());
        packet
    }

    #[test]
    fn destinations() {
        let nets = subnets();
        assert_eq!(check_destination(OUTSIDE, &nets, false), Ok(OUTSIDE));
        assert_eq!(
            check_destination(Ipv4Addr::new(172, 19, 3, 4), &nets, true),
            Err(Refusal::ContainerNetwork)
        );
        assert_eq!(
            check_destination(SANDBOX, &nets, true),
            Err(Refusal::ContainerNetwork)
        );
        for lo in [
            Ipv4Addr::LOCALHOST,
            Ipv4Addr::new(127, 1, 2, 3),
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::new(0, 1, 2, 3),
        ] {
            assert_eq!(
                check_destination(lo, &nets, true),
                Err(Refusal::Loopback),
                "{lo}"
            );
        }
        assert_eq!(
            check_destination(HOST_LOOPBACK_ADDR, &nets, false),
            Err(Refusal::Loopback)
        );
        assert_eq!(
            check_destination(HOST_LOOPBACK_ADDR, &nets, true),
            Ok(Ipv4Addr::LOCALHOST)
        );
        for bad in [
            Ipv4Addr::BROADCAST,
            Ipv4Addr::new(224, 0, 0, 1),
            Ipv4Addr::new(240, 0, 0, 1),
        ] {
            assert_eq!(
                check_destination(bad, &nets, false),
                Err(Refusal::NotUnicast)
            );
        }
    }

    #[test]
    fn host_loopback_option_values() {
        assert!(host_loopback_enabled(Some("true")));
        assert!(host_loopback_enabled(Some("TRUE")));
        assert!(host_loopback_enabled(Some("1")));
        assert!(!host_loopback_enabled(Some("false")));
        assert!(!host_loopback_enabled(Some("")));
        assert!(!host_loopback_enabled(None));
        // The gateway mapping is a different setting, not a truthy one.
        assert!(!host_loopback_enabled(Some("gateway")));
        assert!(host_loopback_gateway(Some("gateway")));
        assert!(host_loopback_gateway(Some("Gateway")));
        assert!(!host_loopback_gateway(Some("true")));
        assert!(!host_loopback_gateway(None));
    }

    #[test]
    fn flow_counts_are_bounded_per_source() {
        let mut counts = FlowCounts::default();
        let other = Ipv4Addr::new(172, 18, 0, 3);
        assert!(counts.try_add(SANDBOX, 2));
        assert!(counts.try_add(SANDBOX, 2));
        assert!(!counts.try_add(SANDBOX, 2), "third flow refused");
        assert!(counts.try_add(other, 2), "other sandboxes unaffected");
        assert_eq!(counts.get(SANDBOX), 2);
        assert!(!counts.remove(SANDBOX));
        assert!(counts.try_add(SANDBOX, 2), "room again after a close");
        assert!(!counts.remove(SANDBOX));
        assert!(counts.remove(SANDBOX), "last one");
        assert_eq!(counts.get(SANDBOX), 0);
        assert!(!counts.try_add(SANDBOX, 0), "a zero limit refuses all");
        assert_eq!(counts.get(SANDBOX), 0);
    }

    #[test]
    fn rst_answers_a_syn() {
        let syn = syn_packet((SANDBOX, 40000), (OUTSIDE, 80), 1000);
        let mut out = Vec::new();
        assert!(tcp_rst_for_syn(link(), &syn, &mut out));
        let eth = EthernetFrame::new_checked(&out[..]).expect("eth");
        assert_eq!(eth.dst_addr(), link().sandbox);
        assert_eq!(eth.src_addr(), link().gateway);
        let ip = Ipv4Packet::new_checked(eth.payload()).expect("ip");
        assert!(ip.verify_checksum());
        assert_eq!((ip.src_addr(), ip.dst_addr()), (OUTSIDE, SANDBOX));
        let tcp = TcpPacket::new_checked(ip.payload()).expect("tcp");
        assert!(tcp.verify_checksum(&OUTSIDE.into(), &SANDBOX.into()));
        assert!(tcp.rst() && tcp.ack() && !tcp.syn());
        assert_eq!((tcp.src_port(), tcp.dst_port()), (80, 40000));
        assert_eq!(tcp.ack_number(), TcpSeqNumber(1001));
        assert!(!tcp_rst_for_syn(link(), &syn[..10], &mut out));
    }

    #[test]
    fn fragments_large_packets() {
        use smoltcp::wire::{UdpPacket, UdpRepr};
        let payload: Vec<u8> = (0..65507u32).map(|i| i as u8).collect();
        let udp = UdpRepr {
            src_port: 53,
            dst_port: 40000,
        };
        let ip_repr = Ipv4Repr {
            src_addr: OUTSIDE,
            dst_addr: SANDBOX,
            next_header: IpProtocol::Udp,
            payload_len: udp.header_len() + payload.len(),
            hop_limit: 64,
        };
        let mut packet = vec![0u8; ip_repr.buffer_len() + ip_repr.payload_len];
        let mut ip = Ipv4Packet::new_unchecked(&mut packet[..]);
        ip_repr.emit(&mut ip, &Default::default());
        udp.emit(
            &mut UdpPacket::new_unchecked(ip.payload_mut()),
            &OUTSIDE.into(),
            &SANDBOX.into(),
            payload.len(),
            |buf| buf.copy_from_slice(&payload),
            &Default::default(),
        );
        assert_eq!(packet.len(), 65535);

        let mut frags = Vec::new();
        assert!(fragment(&packet, 65520, &mut |f| frags.push(f.to_vec())));
        assert_eq!(frags.len(), 2);
        let mut joined = Vec::new();
        for (i, f) in frags.iter().enumerate() {
            assert!(f.len() <= 65520);
            let ip = Ipv4Packet::new_checked(&f[..]).expect("fragment");
            assert!(ip.verify_checksum());
            assert_eq!(ip.more_frags(), i == 0);
            assert_eq!(usize::from(ip.frag_offset()), joined.len());
            assert_eq!(ip.frag_offset() % 8, 0);
            joined.extend_from_slice(ip.payload());
        }
        assert_eq!(joined, packet[20..]);

        // Small packets pass whole; fragments are not split again.
        let mut whole = Vec::new();
        assert!(fragment(&packet[..100], 65520, &mut |f| whole.push(f.len())));
        assert_eq!(whole, [100]);
        assert!(!fragment(&frags[0], 1500, &mut |_| panic!("split twice")));
    }

    #[test]
    fn unreachable_quotes_the_original() {
        let syn = syn_packet((SANDBOX, 40000), (OUTSIDE, 80), 1000);
        let mut out = Vec::new();
        assert!(icmp_unreachable(
            link(),
            Icmpv4DstUnreachable::CommProhibited,
            &syn,
            &mut out
        ));
        let eth = EthernetFrame::new_checked(&out[..]).expect("eth");
        let ip = Ipv4Packet::new_checked(eth.payload()).expect("ip");
        assert_eq!((ip.src_addr(), ip.dst_addr()), (OUTSIDE, SANDBOX));
        let icmp = Icmpv4Packet::new_checked(ip.payload()).expect("icmp");
        assert!(icmp.verify_checksum());
        assert_eq!(u8::from(icmp.msg_type()), 3);
        assert_eq!(
            icmp.msg_code(),
            13,
            "communication administratively prohibited"
        );
        // The quote: the SYN's IPv4 header and its first 8 bytes (the ports).
        let quoted = &icmp.data()[..28];
        assert_eq!(&quoted[20..24], &syn[20..24]);
    }
}
