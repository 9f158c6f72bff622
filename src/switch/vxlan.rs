//! VXLAN (RFC 7348) for overlay networks: the wire format, and the peer
//! table that decides what a member may send and where a frame goes.
//!
//! # Theory of operation
//!
//! An overlay network's switch will have one more port, a UDP socket: a
//! frame for a MAC on another member is [`encapsulate`]d — an 8-byte
//! header (flags `I`, the 24-bit VNI) before the Ethernet frame — and sent
//! to that member's advertise address; a datagram that arrives is
//! [`decapsulate`]d and offered to [`PeerTable::admit`] before the switch
//! sees its frame. This module is that port's logic, without the socket
//! (the switch's loop owns the fds), so every rule is a unit test and a
//! fuzz target (`fuzz/fuzz_targets/vxlan_decap.rs`).
//!
//! The peer table is what Docker's overlay driver keeps as its peer
//! database: every remote endpoint (MAC, IPv4 address, the member it
//! lives on), filled from the cluster store, never learned from the wire.
//! So:
//!
//! - a frame for a remote MAC goes to exactly that member
//!   ([`PeerTable::route`]); unknown unicast is never flooded over the
//!   underlay;
//! - an ARP request for a remote endpoint's address is answered from the
//!   table on the sandbox's own host ([`PeerTable::arp_owner`]);
//! - a broadcast goes only to members with endpoints on the network
//!   ([`PeerTable::members`]);
//! - a datagram is accepted only from a member's address (the source of
//!   the UDP datagram, which the kernel gives, not a field the sender
//!   writes), with this network's VNI, carrying a frame whose source MAC
//!   is registered at that member and whose IPv4 or ARP sender address is
//!   that MAC's: anti-spoofing holds across hosts as it holds on a port.
//!
//! Every refusal names its reason ([`Refused`]), for the switch to count
//! and trace. The table is bounded ([`MAX_PEERS`]).

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use smoltcp::wire::{
    ArpOperation, ArpPacket, EthernetAddress, EthernetFrame, EthernetProtocol, Ipv4Packet,
};

/// The VXLAN header's length.
pub const HEADER_LEN: usize = 8;
/// IANA's VXLAN port.
pub const DEFAULT_PORT: u16 = 4789;
/// The `I` flag: the VNI field is valid (RFC 7348 §5).
const FLAG_I: u8 = 0x08;
/// The largest VNI (24 bits).
pub const MAX_VNI: u32 = (1 << 24) - 1;
/// Most remote endpoints one network's table holds.
pub const MAX_PEERS: usize = 16_384;
/// Encapsulation overhead on an IPv4 underlay: outer IPv4 (20), UDP (8),
/// VXLAN (8) and the inner Ethernet header (14).
pub const OVERHEAD_V4: u32 = 50;

/// Why a datagram or a frame was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refused {
    /// Too short, no `I` flag, or an inner frame that does not parse.
    Malformed,
    /// Not from a member's address.
    UnknownSender,
    /// A VNI this network does not have.
    WrongVni,
    /// The inner source MAC is not an endpoint of the sending member.
    UnregisteredMac,
    /// The inner IPv4 or ARP sender address is not that MAC's.
    SpoofedIp,
    /// A destination no endpoint has (never flooded).
    UnknownUnicast,
    /// The table is full.
    TableFull,
}

impl Refused {
    /// The snake_case name used in counters and traces.
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::Malformed => "vxlan_malformed",
            Refused::UnknownSender => "vxlan_unknown_sender",
            Refused::WrongVni => "vxlan_wrong_vni",
            Refused::UnregisteredMac => "vxlan_unregistered_mac",
            Refused::SpoofedIp => "vxlan_spoofed_ip",
            Refused::UnknownUnicast => "vxlan_unknown_unicast",
            Refused::TableFull => "vxlan_table_full",
        }
    }
}

/// Writes the VXLAN header for `vni` and `frame` after it into `out`;
/// returns the datagram's length, or `None` when `out` is too small or
/// the VNI does not fit in 24 bits.
pub fn encapsulate(vni: u32, frame: &[u8], out: &mut [u8]) -> Option<usize> {
    let len = HEADER_LEN + frame.len();
    if vni > MAX_VNI || out.len() < len {
        return None;
    }
    out[..HEADER_LEN].copy_from_slice(&header(vni));
    out[HEADER_LEN..len].copy_from_slice(frame);
    Some(len)
}

/// The 8 header bytes for `vni` (flags, 3 reserved, VNI, 1 reserved).
pub fn header(vni: u32) -> [u8; HEADER_LEN] {
    let v = vni.to_be_bytes();
    [FLAG_I, 0, 0, 0, v[1], v[2], v[3], 0]
}

/// The VNI and the inner frame of a datagram. Reserved bits are ignored,
/// as RFC 7348 asks of a receiver; the `I` flag is required, and the inner
/// frame must at least hold an Ethernet header.
pub fn decapsulate(datagram: &[u8]) -> Result<(u32, &[u8]), Refused> {
    if datagram.len() < HEADER_LEN + EthernetFrame::<&[u8]>::header_len() {
        return Err(Refused::Malformed);
    }
    if datagram[0] & FLAG_I == 0 {
        return Err(Refused::Malformed);
    }
    let vni = u32::from_be_bytes([0, datagram[4], datagram[5], datagram[6]]);
    Ok((vni, &datagram[HEADER_LEN..]))
}

/// One remote endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// The member it lives on (its advertise address: where VXLAN goes).
    pub vtep: SocketAddr,
    pub mac: [u8; 6],
    pub ipv4: Ipv4Addr,
}

/// The remote endpoints of one overlay network.
#[derive(Debug, Default)]
pub struct PeerTable {
    vni: u32,
    by_mac: HashMap<[u8; 6], Peer>,
    by_ip: HashMap<Ipv4Addr, [u8; 6]>,
    /// Members with endpoints here, by the address datagrams come from.
    members: HashMap<IpAddr, usize>,
}

impl PeerTable {
    pub fn new(vni: u32) -> PeerTable {
        PeerTable {
            vni,
            ..PeerTable::default()
        }
    }

    pub fn vni(&self) -> u32 {
        self.vni
    }

    pub fn len(&self) -> usize {
        self.by_mac.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_mac.is_empty()
    }

    /// Adds (or moves) a remote endpoint. A MAC or an address another
    /// peer holds is taken from it: the cluster store is the truth, and
    /// its latest word wins.
    pub fn insert(&mut self, peer: Peer) -> Result<(), Refused> {
        if !self.by_mac.contains_key(&peer.mac) && self.by_mac.len() >= MAX_PEERS {
            return Err(Refused::TableFull);
        }
        if EthernetAddress(peer.mac).is_multicast() || !EthernetAddress(peer.mac).is_unicast() {
            return Err(Refused::UnregisteredMac);
        }
        self.remove(&peer.mac);
        if let Some(other) = self.by_ip.get(&peer.ipv4).copied() {
            self.remove(&other);
        }
        self.by_mac.insert(peer.mac, peer);
        self.by_ip.insert(peer.ipv4, peer.mac);
        *self.members.entry(peer.vtep.ip()).or_default() += 1;
        Ok(())
    }

    /// Removes the endpoint with `mac`; returns it.
    pub fn remove(&mut self, mac: &[u8; 6]) -> Option<Peer> {
        let peer = self.by_mac.remove(mac)?;
        self.by_ip.remove(&peer.ipv4);
        if let Some(n) = self.members.get_mut(&peer.vtep.ip()) {
            *n -= 1;
            if *n == 0 {
                self.members.remove(&peer.vtep.ip());
            }
        }
        Some(peer)
    }

    /// Replaces the whole table (the cluster store's new view).
    pub fn replace(&mut self, peers: impl IntoIterator<Item = Peer>) -> usize {
        self.by_mac.clear();
        self.by_ip.clear();
        self.members.clear();
        let mut refused = 0;
        for p in peers {
            if self.insert(p).is_err() {
                refused += 1;
            }
        }
        refused
    }

    /// Where a frame for `dst` goes: the member holding that MAC.
    pub fn route(&self, dst: &[u8; 6]) -> Result<SocketAddr, Refused> {
        self.by_mac
            .get(dst)
            .map(|p| p.vtep)
            .ok_or(Refused::UnknownUnicast)
    }

    /// The MAC of the remote endpoint with `ip`, to answer an ARP request
    /// locally.
    pub fn arp_owner(&self, ip: Ipv4Addr) -> Option<[u8; 6]> {
        self.by_ip.get(&ip).copied()
    }

    /// The members a broadcast goes to: those with endpoints here, each
    /// once, at the advertise address of one of its endpoints.
    pub fn members(&self) -> Vec<SocketAddr> {
        let mut seen = BTreeSet::new();
        self.by_mac
            .values()
            .filter(|p| seen.insert(p.vtep.ip()))
            .map(|p| p.vtep)
            .collect()
    }

    /// Whether a datagram from `from` with `vni` carrying `inner` may
    /// enter the switch (see the module documentation).
    pub fn admit(&self, from: SocketAddr, vni: u32, inner: &[u8]) -> Result<(), Refused> {
        if !self.members.contains_key(&from.ip()) {
            return Err(Refused::UnknownSender);
        }
        if vni != self.vni {
            return Err(Refused::WrongVni);
        }
        let eth = EthernetFrame::new_checked(inner).map_err(|_| Refused::Malformed)?;
        let src = eth.src_addr().0;
        let peer = self
            .by_mac
            .get(&src)
            .filter(|p| p.vtep.ip() == from.ip())
            .ok_or(Refused::UnregisteredMac)?;
        match eth.ethertype() {
            EthernetProtocol::Ipv4 => {
                let ip = Ipv4Packet::new_checked(eth.payload()).map_err(|_| Refused::Malformed)?;
                if ip.src_addr() != peer.ipv4 {
                    return Err(Refused::SpoofedIp);
                }
            }
            EthernetProtocol::Arp => {
                let arp = ArpPacket::new_checked(eth.payload()).map_err(|_| Refused::Malformed)?;
                let (Ok(sha), Ok(spa)) = (
                    <[u8; 6]>::try_from(arp.source_hardware_addr()),
                    <[u8; 4]>::try_from(arp.source_protocol_addr()),
                ) else {
                    return Err(Refused::Malformed);
                };
                if !matches!(arp.operation(), ArpOperation::Request | ArpOperation::Reply) {
                    return Err(Refused::Malformed);
                }
                if sha != src || Ipv4Addr::from(spa) != peer.ipv4 {
                    return Err(Refused::SpoofedIp);
                }
            }
            // The switch refuses other ethertypes from its ports too.
            _ => return Err(Refused::Malformed),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 6] = [0x02, 0x42, 0x0a, 0x00, 0x01, 0x02];
    const B: [u8; 6] = [0x02, 0x42, 0x0a, 0x00, 0x01, 0x03];
    const LOCAL: [u8; 6] = [0x02, 0x42, 0x0a, 0x00, 0x01, 0x09];

    fn host(i: u8) -> SocketAddr {
        SocketAddr::from(([10, 249, 0, 10 + i], DEFAULT_PORT))
    }

    fn table() -> PeerTable {
        let mut t = PeerTable::new(4097);
        t.insert(Peer {
            vtep: host(1),
            mac: A,
            ipv4: Ipv4Addr::new(10, 0, 1, 2),
        })
        .unwrap();
        t.insert(Peer {
            vtep: host(2),
            mac: B,
            ipv4: Ipv4Addr::new(10, 0, 1, 3),
        })
        .unwrap();
        t
    }

    /// An Ethernet frame from `src` (MAC) carrying IPv4 from `ip`.
    fn ipv4_frame(src: [u8; 6], dst: [u8; 6], ip: [u8; 4]) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20];
        f[..6].copy_from_slice(&dst);
        f[6..12].copy_from_slice(&src);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let p = &mut f[14..];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&20u16.to_be_bytes());
        p[8] = 64;
        p[9] = 17;
        p[12..16].copy_from_slice(&ip);
        p[16..20].copy_from_slice(&[10, 0, 1, 9]);
        f
    }

    fn arp_frame(src: [u8; 6], sha: [u8; 6], spa: [u8; 4]) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 28];
        f[..6].copy_from_slice(&[0xff; 6]);
        f[6..12].copy_from_slice(&src);
        f[12..14].copy_from_slice(&[0x08, 0x06]);
        let a = &mut f[14..];
        a[..8].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
        a[8..14].copy_from_slice(&sha);
        a[14..18].copy_from_slice(&spa);
        a[24..28].copy_from_slice(&[10, 0, 1, 9]);
        f
    }

    #[test]
    fn the_header_is_rfc_7348s() {
        let frame = ipv4_frame(A, LOCAL, [10, 0, 1, 2]);
        let mut buf = [0u8; 128];
        let n = encapsulate(0x12_3456, &frame, &mut buf).unwrap();
        assert_eq!(&buf[..8], &[0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0]);
        let (vni, inner) = decapsulate(&buf[..n]).unwrap();
        assert_eq!(vni, 0x12_3456);
        assert_eq!(inner, &frame[..]);
        assert_eq!(encapsulate(MAX_VNI + 1, &frame, &mut buf), None);
        assert_eq!(encapsulate(1, &frame, &mut buf[..20]), None);
        // Reserved bits set: ignored on receipt. No I flag: refused.
        let mut odd = buf[..n].to_vec();
        odd[1] = 0xff;
        odd[7] = 0xff;
        assert_eq!(decapsulate(&odd).unwrap().0, 0x12_3456);
        odd[0] = 0;
        assert_eq!(decapsulate(&odd), Err(Refused::Malformed));
        assert_eq!(decapsulate(&buf[..8 + 13]), Err(Refused::Malformed));
    }

    #[test]
    fn only_registered_endpoints_of_the_sending_member_get_in() {
        let t = table();
        let ok = ipv4_frame(A, LOCAL, [10, 0, 1, 2]);
        assert_eq!(t.admit(host(1), 4097, &ok), Ok(()));
        // From an address that is no member's.
        assert_eq!(t.admit(host(7), 4097, &ok), Err(Refused::UnknownSender));
        // Another network's VNI.
        assert_eq!(t.admit(host(1), 4098, &ok), Err(Refused::WrongVni));
        // B's MAC, but sent by A's member.
        let b = ipv4_frame(B, LOCAL, [10, 0, 1, 3]);
        assert_eq!(t.admit(host(1), 4097, &b), Err(Refused::UnregisteredMac));
        assert_eq!(t.admit(host(2), 4097, &b), Ok(()));
        // A's MAC with B's address.
        let forged = ipv4_frame(A, LOCAL, [10, 0, 1, 3]);
        assert_eq!(t.admit(host(1), 4097, &forged), Err(Refused::SpoofedIp));
        // ARP must name its own MAC and address.
        assert_eq!(
            t.admit(host(1), 4097, &arp_frame(A, A, [10, 0, 1, 2])),
            Ok(())
        );
        assert_eq!(
            t.admit(host(1), 4097, &arp_frame(A, A, [10, 0, 1, 3])),
            Err(Refused::SpoofedIp)
        );
        assert_eq!(
            t.admit(host(1), 4097, &arp_frame(A, B, [10, 0, 1, 2])),
            Err(Refused::SpoofedIp)
        );
        // Truncated IPv4, other ethertypes.
        let mut short = ok.clone();
        short.truncate(20);
        assert_eq!(t.admit(host(1), 4097, &short), Err(Refused::Malformed));
        let mut v6 = ok.clone();
        v6[12..14].copy_from_slice(&[0x86, 0xdd]);
        assert_eq!(t.admit(host(1), 4097, &v6), Err(Refused::Malformed));
    }

    #[test]
    fn routes_arp_and_broadcast_come_from_the_table() {
        let mut t = table();
        assert_eq!(t.route(&A), Ok(host(1)));
        assert_eq!(t.route(&LOCAL), Err(Refused::UnknownUnicast));
        assert_eq!(t.arp_owner(Ipv4Addr::new(10, 0, 1, 3)), Some(B));
        assert_eq!(t.arp_owner(Ipv4Addr::new(10, 0, 1, 9)), None);
        let mut m = t.members();
        m.sort();
        assert_eq!(m, [host(1), host(2)]);
        // A moves to member 3 (the store says so): the old member's
        // datagrams for it are no longer admitted.
        t.insert(Peer {
            vtep: host(3),
            mac: A,
            ipv4: Ipv4Addr::new(10, 0, 1, 2),
        })
        .unwrap();
        let ok = ipv4_frame(A, LOCAL, [10, 0, 1, 2]);
        assert_eq!(t.admit(host(1), 4097, &ok), Err(Refused::UnknownSender));
        assert_eq!(t.admit(host(3), 4097, &ok), Ok(()));
        // An address taken over by another MAC leaves the old one.
        t.insert(Peer {
            vtep: host(2),
            mac: LOCAL,
            ipv4: Ipv4Addr::new(10, 0, 1, 3),
        })
        .unwrap();
        assert_eq!(t.route(&B), Err(Refused::UnknownUnicast));
        assert_eq!(t.len(), 2);
        assert_eq!(
            t.remove(&LOCAL).map(|p| p.ipv4),
            Some(Ipv4Addr::new(10, 0, 1, 3))
        );
        assert_eq!(t.members(), [host(3)]);
        // Multicast MACs are never peers.
        assert!(t
            .insert(Peer {
                vtep: host(1),
                mac: [0x01, 0, 0x5e, 0, 0, 1],
                ipv4: Ipv4Addr::new(10, 0, 1, 7),
            })
            .is_err());
    }

    #[test]
    fn the_table_is_bounded() {
        let mut t = PeerTable::new(1);
        let peers = (0..MAX_PEERS as u32 + 5).map(|i| {
            let b = i.to_be_bytes();
            Peer {
                vtep: host(1),
                mac: [0x02, 0x42, b[0], b[1], b[2], b[3]],
                ipv4: Ipv4Addr::from(0x0a00_0000 | i),
            }
        });
        assert_eq!(t.replace(peers), 5);
        assert_eq!(t.len(), MAX_PEERS);
    }
}
