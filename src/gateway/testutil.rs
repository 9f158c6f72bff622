//! Frame builders for tests of the gateway and the switch.
//!
//! Every frame is built with `smoltcp::wire` emitters, so tests exercise the
//! same encodings real hosts send, and no test hand-writes header bytes.

use std::net::Ipv4Addr;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr,
};

/// The broadcast MAC.
pub const BROADCAST: [u8; 6] = [0xff; 6];

/// An Ethernet frame around a payload written by `fill`.
pub fn ethernet(
    src: [u8; 6],
    dst: [u8; 6],
    ethertype: EthernetProtocol,
    payload_len: usize,
    fill: impl FnOnce(&mut [u8]),
) -> Vec<u8> {
    let repr = EthernetRepr {
        src_addr: EthernetAddress(src),
        dst_addr: EthernetAddress(dst),
        ethertype,
    };
    let mut buf = vec![0u8; repr.buffer_len() + payload_len];
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
    repr.emit(&mut frame);
    fill(frame.payload_mut());
    buf
}

/// An ARP packet in an Ethernet frame, with every field chosen by the caller.
#[allow(clippy::too_many_arguments)]
pub fn arp(
    eth_src: [u8; 6],
    eth_dst: [u8; 6],
    operation: ArpOperation,
    sender_mac: [u8; 6],
    sender_ip: Ipv4Addr,
    target_mac: [u8; 6],
    target_ip: Ipv4Addr,
) -> Vec<u8> {
    let repr = ArpRepr::EthernetIpv4 {
        operation,
        source_hardware_addr: EthernetAddress(sender_mac),
        source_protocol_addr: sender_ip,
        target_hardware_addr: EthernetAddress(target_mac),
        target_protocol_addr: target_ip,
    };
    ethernet(
        eth_src,
        eth_dst,
        EthernetProtocol::Arp,
        repr.buffer_len(),
        |p| repr.emit(&mut ArpPacket::new_unchecked(p)),
    )
}

/// A broadcast ARP request from `mac`/`ip` asking for `target`.
pub fn arp_request(mac: [u8; 6], ip: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    arp(
        mac,
        BROADCAST,
        ArpOperation::Request,
        mac,
        ip,
        [0; 6],
        target,
    )
}

/// An IPv4 packet in an Ethernet frame, payload written by `fill`.
pub fn ipv4(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src_ip: Ipv4Addr,
    dst_ip: Ipv4Addr,
    protocol: IpProtocol,
    payload_len: usize,
    fill: impl FnOnce(&mut [u8]),
) -> Vec<u8> {
    let repr = Ipv4Repr {
        src_addr: src_ip,
        dst_addr: dst_ip,
        next_header: protocol,
        payload_len,
        hop_limit: 64,
    };
    ethernet(
        src_mac,
        dst_mac,
        EthernetProtocol::Ipv4,
        repr.buffer_len() + payload_len,
        |p| {
            let mut packet = Ipv4Packet::new_unchecked(p);
            repr.emit(&mut packet, &ChecksumCapabilities::default());
            fill(packet.payload_mut());
        },
    )
}

/// An IPv4 frame of exactly `frame_len` bytes (at least 34) carrying zeros
/// as an experimental protocol: what the switch sees of bulk traffic.
pub fn ipv4_sized(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src_ip: Ipv4Addr,
    dst_ip: Ipv4Addr,
    frame_len: usize,
) -> Vec<u8> {
    let payload_len = frame_len.saturating_sub(14 + 20);
    ipv4(
        src_mac,
        dst_mac,
        src_ip,
        dst_ip,
        IpProtocol::Unknown(253),
        payload_len,
        |_| {},
    )
}

/// An ICMP echo request in an IPv4 Ethernet frame.
#[allow(clippy::too_many_arguments)]
pub fn icmp_echo_request(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src_ip: Ipv4Addr,
    dst_ip: Ipv4Addr,
    ident: u16,
    seq_no: u16,
    data: &[u8],
) -> Vec<u8> {
    let icmp = Icmpv4Repr::EchoRequest {
        ident,
        seq_no,
        data,
    };
    ipv4(
        src_mac,
        dst_mac,
        src_ip,
        dst_ip,
        IpProtocol::Icmp,
        icmp.buffer_len(),
        |p| {
            let mut packet = Icmpv4Packet::new_unchecked(p);
            icmp.emit(&mut packet, &ChecksumCapabilities::default());
        },
    )
}

/// A UDP datagram in an IPv4 Ethernet frame.
#[allow(clippy::too_many_arguments)]
pub fn udp(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src_ip: Ipv4Addr,
    dst_ip: Ipv4Addr,
    src_port: u16,
    dst_port: u16,
    payload: &[u8],
) -> Vec<u8> {
    let repr = UdpRepr { src_port, dst_port };
    ipv4(
        src_mac,
        dst_mac,
        src_ip,
        dst_ip,
        IpProtocol::Udp,
        repr.header_len() + payload.len(),
        |p| {
            repr.emit(
                &mut UdpPacket::new_unchecked(p),
                &src_ip.into(),
                &dst_ip.into(),
                payload.len(),
                |b| b.copy_from_slice(payload),
                &ChecksumCapabilities::default(),
            );
        },
    )
}

/// The destination port and payload of a UDP frame, if it is one.
pub fn parse_udp(frame: &[u8]) -> Option<(u16, Vec<u8>)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if ip.next_header() != IpProtocol::Udp {
        return None;
    }
    let udp = UdpPacket::new_checked(ip.payload()).ok()?;
    Some((udp.dst_port(), udp.payload().to_vec()))
}

/// A tiny deterministic PRNG (xorshift64) for fuzz-style loops.
pub struct XorShift(pub u64);

impl XorShift {
    /// The next pseudo-random value; never returns the same state twice
    /// before the period (2^64 - 1) when seeded non-zero.
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}
