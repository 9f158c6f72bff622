//! The virtio-net header before every TAP frame, and checksum offload: pure,
//! no I/O.
//!
//! # Theory of operation
//!
//! Every TAP is opened with `IFF_VNET_HDR` and `TUN_F_CSUM` (see
//! [`crate::sys::tap`]), so each frame read from or written to its fd is
//! preceded by a [`HDR_LEN`]-byte `struct virtio_net_hdr` (native byte
//! order, as the kernel uses for a legacy header), and the sandbox's kernel
//! leaves TCP and UDP checksums to "the device": a frame it sends carries
//! `VIRTIO_NET_HDR_F_NEEDS_CSUM`, `csum_start` (where the L4 header starts)
//! and `csum_offset` (where its checksum field is, counted from there), and
//! that field holds only the pseudo-header sum. Nobody has summed the 64 KiB
//! payload.
//!
//! The switch never sums it either when it need not ([`Offload`]):
//!
//! - to another sandbox, the header goes along (rebuilt from the checked
//!   fields, [`encode`]) and the receiving kernel takes the frame as
//!   `CHECKSUM_PARTIAL`, which its TCP accepts without verifying, as a veth
//!   pair does. Sandbox to sandbox, no payload checksum is ever computed;
//! - to the NAT's smoltcp interface (bulk egress), the partial checksum is
//!   trusted as it is (that interface does not verify TCP and UDP
//!   checksums; it verifies itself the frames that came without offload);
//! - to the gateway's own interface (ARP, ping, DNS: small frames) and to a
//!   port without the header (unit tests' socket pairs), the switch
//!   completes the checksum first ([`complete`]), as a NIC would.
//!
//! Frames from smoltcp to a sandbox go the other way: the NAT leaves TCP
//! checksums out, writes the pseudo-header sum ([`pseudo_header_sum`]) and
//! marks the frame [`Offload::Partial`], so the receiving kernel neither
//! needs nor checks the payload's sum.
//!
//! `VIRTIO_NET_HDR_F_DATA_VALID` (the kernel verified a complete checksum,
//! e.g. a frame the sandbox forwards) is [`Offload::Valid`]; the tun write
//! path ignores the flag, so such frames are written with a zero header and
//! verified by their receiver as usual.
//!
//! # Hostile headers
//!
//! The header is made by the sandbox's kernel, but a root process in the
//! sandbox can shape it (an `AF_PACKET` socket with `PACKET_VNET_HDR`
//! injects any `csum_start`/`csum_offset` within the packet, or GSO
//! fields). [`check`] accepts exactly what a kernel sends for IPv4 without
//! segmentation offload: no GSO, known flags only, and `NEEDS_CSUM` only on
//! an unfragmented IPv4 TCP or UDP packet whose `csum_start` is the end of
//! its IP header and whose `csum_offset` is that protocol's checksum field,
//! inside the packet. Anything else is a [`DropReason::BadOffload`]
//! (counted by the core), so a forwarded header never makes another kernel
//! write a checksum where there is none.
//!
//! [`DropReason::BadOffload`]: super::core::DropReason::BadOffload

use std::net::Ipv4Addr;

use smoltcp::wire::{EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet};

/// Bytes of the header before each frame on a TAP fd.
pub const HDR_LEN: usize = crate::sys::tap::VNET_HDR_LEN;

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`.
pub const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`.
pub const F_DATA_VALID: u8 = 2;
/// `VIRTIO_NET_HDR_GSO_NONE`.
pub const GSO_NONE: u8 = 0;

/// Offset of the TCP checksum field in its header.
pub const TCP_CSUM_OFFSET: u16 = 16;
/// Offset of the UDP checksum field in its header.
pub const UDP_CSUM_OFFSET: u16 = 6;

const ETH_HLEN: usize = 14;

/// A `struct virtio_net_hdr` as read from a TAP fd.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Header {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl Header {
    /// The header of a frame read from a port without one: nothing
    /// offloaded, checksums as written.
    pub const NONE: Header = Header {
        flags: 0,
        gso_type: GSO_NONE,
        hdr_len: 0,
        gso_size: 0,
        csum_start: 0,
        csum_offset: 0,
    };

    /// Decode the first [`HDR_LEN`] bytes read from a TAP fd.
    pub fn parse(bytes: &[u8; HDR_LEN]) -> Header {
        let u16_at = |i: usize| u16::from_ne_bytes([bytes[i], bytes[i + 1]]);
        Header {
            flags: bytes[0],
            gso_type: bytes[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        }
    }

    /// The bytes to write before a frame.
    pub fn to_bytes(self) -> [u8; HDR_LEN] {
        let mut out = [0u8; HDR_LEN];
        out[0] = self.flags;
        out[1] = self.gso_type;
        out[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        out[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        out[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        out[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        out
    }
}

/// The state of a frame's transport checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offload {
    /// As written in the frame: complete (or wrong; nobody vouched for it).
    None,
    /// Complete, and verified by the sender's kernel (`DATA_VALID`).
    Valid,
    /// Partial: the field at `start + offset` holds the pseudo-header sum,
    /// and the sum of every byte from `start` to the end of the IP packet
    /// still has to be folded in ([`complete`]). Checked by [`check`] (or
    /// made by warren): `start` is the end of an IPv4 header and `offset`
    /// the TCP or UDP checksum field.
    Partial { start: u16, offset: u16 },
}

impl Offload {
    /// Whether the transport checksum needs no verification: the sender's
    /// own kernel made the frame in memory (or verified it).
    pub fn trusted(self) -> bool {
        !matches!(self, Offload::None)
    }
}

/// Why a header is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadHeader {
    /// A GSO type other than none (segmentation offload is never offered).
    Gso,
    /// Flags other than `NEEDS_CSUM` or `DATA_VALID`, or both at once.
    Flags,
    /// `NEEDS_CSUM` on a frame that is not unfragmented IPv4 TCP or UDP,
    /// or with a start or offset other than that packet's checksum field.
    Csum,
}

/// Check `hdr` against the frame it came with and say what it offloads.
pub fn check(hdr: &Header, frame: &[u8]) -> Result<Offload, BadHeader> {
    if hdr.gso_type != GSO_NONE {
        return Err(BadHeader::Gso);
    }
    match hdr.flags {
        0 => Ok(Offload::None),
        F_DATA_VALID => Ok(Offload::Valid),
        F_NEEDS_CSUM => {
            let (start, offset) = l4_csum_field(frame).ok_or(BadHeader::Csum)?;
            if hdr.csum_start != start || hdr.csum_offset != offset {
                return Err(BadHeader::Csum);
            }
            Ok(Offload::Partial { start, offset })
        }
        _ => Err(BadHeader::Flags),
    }
}

/// Where the checksum field of an unfragmented IPv4 TCP or UDP packet in
/// `frame` is: (start of the L4 header in the frame, offset of the field in
/// it). `None` for anything else, or when the L4 header does not fit in the
/// packet.
pub fn l4_csum_field(frame: &[u8]) -> Option<(u16, u16)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if ip.version() != 4 || ip.more_frags() || ip.frag_offset() != 0 {
        return None;
    }
    let ihl = usize::from(ip.header_len());
    let total = usize::from(ip.total_len());
    let (offset, min_len) = match ip.next_header() {
        IpProtocol::Tcp => (TCP_CSUM_OFFSET, 20),
        IpProtocol::Udp => (UDP_CSUM_OFFSET, 8),
        _ => return None,
    };
    if ihl < 20 || total < ihl + min_len {
        return None;
    }
    let start = u16::try_from(ETH_HLEN + ihl).ok()?;
    Some((start, offset))
}

/// The header to write before `frame` for `offload` (`hdr_len`, a hint of
/// how much of the frame is headers, covers the L4 header).
pub fn encode(offload: Offload, frame: &[u8]) -> [u8; HDR_LEN] {
    let Offload::Partial { start, offset } = offload else {
        return Header::NONE.to_bytes();
    };
    let s = usize::from(start);
    let l4_len = if offset == TCP_CSUM_OFFSET {
        frame.get(s + 12).map_or(20, |b| usize::from(b >> 4) * 4)
    } else {
        8
    };
    Header {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_NONE,
        hdr_len: u16::try_from((s + l4_len).min(frame.len())).unwrap_or(u16::MAX),
        gso_size: 0,
        csum_start: start,
        csum_offset: offset,
    }
    .to_bytes()
}

/// Finish a partial checksum in place, as the device would: sum every byte
/// from `start` to the end of the IP packet (the field holds the
/// pseudo-header sum already) and store its complement. Returns the frame's
/// new state, [`Offload::None`]. A frame that does not hold what
/// [`Offload::Partial`] promises is left alone.
pub fn complete(frame: &mut [u8], offload: Offload) -> Offload {
    let Offload::Partial { start, offset } = offload else {
        return offload;
    };
    let (s, o) = (usize::from(start), usize::from(offset));
    let end = match Ipv4Packet::new_checked(frame.get(ETH_HLEN..).unwrap_or_default()) {
        Ok(ip) => ETH_HLEN + usize::from(ip.total_len()),
        Err(_) => return Offload::None,
    };
    if s + o + 2 > end || end > frame.len() {
        return Offload::None;
    }
    let mut sum = !fold(sum_bytes(&frame[s..end]));
    if sum == 0 && offset == UDP_CSUM_OFFSET {
        // 0 means "no checksum" in UDP; its complement says the same sum.
        sum = 0xffff;
    }
    frame[s + o..s + o + 2].copy_from_slice(&sum.to_be_bytes());
    Offload::None
}

/// The pseudo-header sum of an IPv4 TCP or UDP packet, folded but not
/// complemented: what a partial checksum field holds.
pub fn pseudo_header_sum(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, l4_len: u16) -> u16 {
    let mut b = [0u8; 12];
    b[0..4].copy_from_slice(&src.octets());
    b[4..8].copy_from_slice(&dst.octets());
    b[9] = protocol;
    b[10..12].copy_from_slice(&l4_len.to_be_bytes());
    fold(sum_bytes(&b))
}

/// The one's complement sum of `data` as big-endian 16-bit words (an odd
/// last byte padded with zero), folded to 16 bits (so sums of several
/// pieces add up before [`fold`]).
pub fn sum_bytes(data: &[u8]) -> u64 {
    // Summed as native 32-bit words into 64 bits: no carry is lost for any
    // frame size, the loop vectorises, and the sum of byte-swapped words is
    // the byte-swapped sum (RFC 1071, 2.(B)), undone once at the end.
    let mut chunks = data.chunks_exact(4);
    let mut acc: u64 = 0;
    for c in &mut chunks {
        acc += u64::from(u32::from_ne_bytes([c[0], c[1], c[2], c[3]]));
    }
    let rest = chunks.remainder();
    let mut tail = [0u8; 4];
    tail[..rest.len()].copy_from_slice(rest);
    acc += u64::from(u32::from_ne_bytes(tail));
    u64::from(u16::from_be(fold(acc)))
}

/// Fold a sum from [`sum_bytes`] into 16 bits.
pub fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{
        EthernetAddress, EthernetRepr, IpAddress, Ipv4Repr, TcpControl, TcpPacket, TcpRepr,
        TcpSeqNumber, UdpPacket, UdpRepr,
    };

    const A: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 2);
    const B: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 3);

    /// A TCP frame A→B with a complete checksum.
    fn tcp_frame(payload: &[u8]) -> Vec<u8> {
        let tcp = TcpRepr {
            src_port: 40000,
            dst_port: 5201,
            control: TcpControl::Psh,
            seq_number: TcpSeqNumber(7),
            ack_number: Some(TcpSeqNumber(9)),
            window_len: 1000,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload,
        };
        let ip = Ipv4Repr {
            src_addr: A,
            dst_addr: B,
            next_header: IpProtocol::Tcp,
            payload_len: tcp.buffer_len(),
            hop_limit: 64,
        };
        let eth = EthernetRepr {
            src_addr: EthernetAddress([2, 0, 0, 0, 0, 2]),
            dst_addr: EthernetAddress([2, 0, 0, 0, 0, 3]),
            ethertype: EthernetProtocol::Ipv4,
        };
        let mut buf = vec![0u8; 14 + ip.buffer_len() + tcp.buffer_len()];
        let caps = ChecksumCapabilities::default();
        let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
        eth.emit(&mut frame);
        let mut packet = Ipv4Packet::new_unchecked(frame.payload_mut());
        ip.emit(&mut packet, &caps);
        let mut seg = TcpPacket::new_unchecked(packet.payload_mut());
        tcp.emit(&mut seg, &IpAddress::Ipv4(A), &IpAddress::Ipv4(B), &caps);
        buf
    }

    fn udp_frame(payload: &[u8]) -> Vec<u8> {
        let udp = UdpRepr {
            src_port: 40000,
            dst_port: 53,
        };
        let ip = Ipv4Repr {
            src_addr: A,
            dst_addr: B,
            next_header: IpProtocol::Udp,
            payload_len: udp.header_len() + payload.len(),
            hop_limit: 64,
        };
        let mut buf = vec![0u8; 14 + ip.buffer_len() + ip.payload_len];
        buf[12..14].copy_from_slice(&[0x08, 0x00]);
        let caps = ChecksumCapabilities::default();
        let mut packet = Ipv4Packet::new_unchecked(&mut buf[14..]);
        ip.emit(&mut packet, &caps);
        let mut dgram = UdpPacket::new_unchecked(packet.payload_mut());
        udp.emit(
            &mut dgram,
            &IpAddress::Ipv4(A),
            &IpAddress::Ipv4(B),
            payload.len(),
            |p| p.copy_from_slice(payload),
            &caps,
        );
        buf
    }

    /// What the sandbox's kernel does with TUN_F_CSUM: the field holds the
    /// pseudo-header sum only.
    fn make_partial(frame: &mut [u8], offset: u16) -> Offload {
        let (start, off) = l4_csum_field(frame).expect("tcp or udp");
        assert_eq!(off, offset);
        let l4_len = (frame.len() - usize::from(start)) as u16;
        let proto = frame[14 + 9];
        let field = usize::from(start + off);
        let pseudo = pseudo_header_sum(A, B, proto, l4_len);
        frame[field..field + 2].copy_from_slice(&pseudo.to_be_bytes());
        Offload::Partial { start, offset }
    }

    fn needs_csum(start: u16, offset: u16) -> Header {
        Header {
            flags: F_NEEDS_CSUM,
            csum_start: start,
            csum_offset: offset,
            ..Header::NONE
        }
    }

    #[test]
    fn header_round_trips() {
        let h = Header {
            flags: 1,
            gso_type: 0,
            hdr_len: 66,
            gso_size: 0,
            csum_start: 34,
            csum_offset: 16,
        };
        assert_eq!(Header::parse(&h.to_bytes()), h);
        assert_eq!(Header::parse(&[0; HDR_LEN]), Header::NONE);
    }

    #[test]
    fn kernel_headers_are_accepted() {
        let frame = tcp_frame(b"hello");
        assert_eq!(check(&Header::NONE, &frame), Ok(Offload::None));
        let valid = Header {
            flags: F_DATA_VALID,
            ..Header::NONE
        };
        assert_eq!(check(&valid, &frame), Ok(Offload::Valid));
        assert_eq!(
            check(&needs_csum(34, 16), &frame),
            Ok(Offload::Partial {
                start: 34,
                offset: 16
            })
        );
        let udp = udp_frame(b"q");
        assert_eq!(
            check(&needs_csum(34, 6), &udp),
            Ok(Offload::Partial {
                start: 34,
                offset: 6
            })
        );
    }

    #[test]
    fn hostile_headers_are_refused() {
        let tcp = tcp_frame(b"hello");
        let udp = udp_frame(b"q");
        // Segmentation offload is never offered.
        for gso_type in [1, 3, 4, 5, 0x81] {
            let h = Header {
                gso_type,
                gso_size: 1000,
                ..Header::NONE
            };
            assert_eq!(check(&h, &tcp), Err(BadHeader::Gso));
        }
        // Unknown flags, or both.
        for flags in [3, 4, 0x80, 0xff] {
            let h = Header {
                flags,
                ..needs_csum(34, 16)
            };
            assert_eq!(check(&h, &tcp), Err(BadHeader::Flags));
        }
        // The checksum field anywhere but where it is.
        for (start, offset) in [(0, 16), (14, 10), (34, 6), (35, 16), (34, 17), (34, 0xfffe)] {
            assert_eq!(
                check(&needs_csum(start, offset), &tcp),
                Err(BadHeader::Csum),
                "{start}/{offset}"
            );
        }
        assert_eq!(check(&needs_csum(34, 16), &udp), Err(BadHeader::Csum));
        // Not TCP or UDP over IPv4: ICMP, ARP, a fragment, a runt.
        let mut icmp = tcp.clone();
        icmp[14 + 9] = 1;
        assert_eq!(check(&needs_csum(34, 16), &icmp), Err(BadHeader::Csum));
        let mut arp = tcp.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(check(&needs_csum(34, 16), &arp), Err(BadHeader::Csum));
        let mut frag = tcp.clone();
        frag[14 + 6] = 0x20; // more fragments
        assert_eq!(check(&needs_csum(34, 16), &frag), Err(BadHeader::Csum));
        assert_eq!(check(&needs_csum(34, 16), &tcp[..40]), Err(BadHeader::Csum));
        assert_eq!(check(&needs_csum(34, 16), &[]), Err(BadHeader::Csum));
    }

    #[test]
    fn completing_a_partial_checksum_gives_the_real_one() {
        for len in [0, 1, 2, 3, 5, 1000, 65_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let good = tcp_frame(&payload);
            let mut frame = good.clone();
            let offload = make_partial(&mut frame, TCP_CSUM_OFFSET);
            assert_ne!(frame, good, "len {len}: the field differs while partial");
            assert_eq!(complete(&mut frame, offload), Offload::None);
            assert_eq!(frame, good, "len {len}");

            let good = udp_frame(&payload[..len.min(60_000)]);
            let mut frame = good.clone();
            let offload = make_partial(&mut frame, UDP_CSUM_OFFSET);
            assert_eq!(complete(&mut frame, offload), Offload::None);
            assert_eq!(frame, good, "udp len {len}");
        }
    }

    #[test]
    fn complete_ignores_what_it_cannot_do() {
        let good = tcp_frame(b"x");
        let mut frame = good.clone();
        assert_eq!(complete(&mut frame, Offload::None), Offload::None);
        assert_eq!(complete(&mut frame, Offload::Valid), Offload::Valid);
        assert_eq!(frame, good);
        // A lying Partial (past the packet) changes nothing and panics not.
        let lie = Offload::Partial {
            start: 60_000,
            offset: 16,
        };
        assert_eq!(complete(&mut frame, lie), Offload::None);
        assert_eq!(frame, good);
        let mut short = vec![0u8; 20];
        assert_eq!(complete(&mut short, lie), Offload::None);
    }

    #[test]
    fn encode_describes_the_partial_checksum() {
        let frame = tcp_frame(b"abc");
        assert_eq!(encode(Offload::None, &frame), [0; HDR_LEN]);
        assert_eq!(encode(Offload::Valid, &frame), [0; HDR_LEN]);
        let h = Header::parse(&encode(
            Offload::Partial {
                start: 34,
                offset: 16,
            },
            &frame,
        ));
        assert_eq!(
            h,
            Header {
                hdr_len: 54,
                ..needs_csum(34, 16)
            }
        );
        // And it passes its own check.
        assert!(check(&h, &frame).is_ok());
    }

    #[test]
    fn sums_match_smoltcp() {
        let frame = tcp_frame(&[0xab; 777]);
        let tcp = TcpPacket::new_checked(&frame[34..]).unwrap();
        assert!(tcp.verify_checksum(&IpAddress::Ipv4(A), &IpAddress::Ipv4(B)));
        // The complete checksum sums (with the pseudo-header) to 0xffff.
        let total = sum_bytes(&frame[34..])
            + u64::from(pseudo_header_sum(A, B, 6, (frame.len() - 34) as u16));
        assert_eq!(fold(total), 0xffff);
    }

    #[test]
    fn random_headers_never_panic() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let base = tcp_frame(&[1; 100]);
        for _ in 0..20_000 {
            let mut h = [0u8; HDR_LEN];
            h.iter_mut().for_each(|b| *b = next() as u8);
            if next() % 2 == 0 {
                h[0] = F_NEEDS_CSUM;
                h[1] = 0;
            }
            let mut frame = base.clone();
            let cut = (next() as usize) % (frame.len() + 1);
            frame.truncate(cut);
            if let Some(b) = frame.get_mut((next() as usize) % base.len()) {
                *b = next() as u8;
            }
            if let Ok(offload) = check(&Header::parse(&h), &frame) {
                let _ = encode(offload, &frame);
                let _ = complete(&mut frame, offload);
            }
        }
    }
}
