//! The forwarding decision of one virtual switch: pure, no I/O, time passed in.
//!
//! # Theory of operation
//!
//! A frame read from a port's TAP goes through [`Core::ingress`], which
//! returns a [`Decision`]: drop it (and why), hand it to one port, hand it to
//! the gateway, or flood it. The I/O loop in `switch/mod.rs` carries the
//! decision out; this module never touches a file descriptor or a clock, so
//! every rule below is unit-tested with plain byte slices (STYLE items 1-4).
//!
//! Every port is *bound*: it belongs to one endpoint, with one MAC and one
//! IPv4 address chosen by the control plane. Anything a sandbox sends is
//! hostile until checked:
//!
//! 1. shorter than an Ethernet header → [`DropReason::Runt`];
//! 2. source MAC multicast, or not the port's MAC → [`DropReason::SpoofedMac`];
//! 3. IPv4 that `Ipv4Packet::new_checked` refuses (lengths), with a version
//!    other than 4 or a header shorter than 20 bytes → [`DropReason::Malformed`]; source address not the
//!    port's → [`DropReason::SpoofedIp`] (addresses are static, there is no
//!    DHCP, so not even 0.0.0.0 is allowed);
//! 4. ARP that does not parse as Ethernet/IPv4 → [`DropReason::Malformed`];
//!    sender MAC not the port's, or sender IP neither the port's nor 0.0.0.0
//!    (the RFC 5227 probe) → [`DropReason::ArpSpoof`];
//! 5. any other ethertype (IPv6 included, VLAN tags included) →
//!    [`DropReason::UnsupportedEthertype`]. IPv6 comes in a later issue, with
//!    `proto-ipv6` enabled in smoltcp; router advertisements from sandboxes
//!    will then be dropped as [`DropReason::RouterAdvert`] while other IPv6
//!    passes;
//! 6. a virtio-net header ([`Core::ingress_vnet`], frames read from a TAP)
//!    that asks for segmentation, has unknown flags, or puts a partial
//!    checksum anywhere but on the TCP or UDP checksum field of an
//!    unfragmented IPv4 packet → [`DropReason::BadOffload`] (see
//!    [`super::vnet`]). A good header comes back as the frame's
//!    [`Offload`], which the I/O loop carries to the destination.
//!
//! Then the destination: the gateway MAC → [`Decision::Gateway`]; broadcast
//! or multicast → [`Decision::Flood`] (all other ports and the gateway); a
//! MAC in the table → [`Decision::Unicast`], unless that is the ingress port
//! ([`DropReason::Hairpin`]); anything else → [`DropReason::UnknownUnicast`].
//!
//! On a network with `icc` off (Docker's `enable_icc=false`,
//! [`CoreConfig::icc`]), an IPv4 frame from a port to another port is
//! dropped as [`DropReason::Icc`], and an IPv4 broadcast or multicast
//! from a port goes to the gateway only: sandboxes reach the gateway, its
//! DNS and (through NAT) the outside, never each other. ARP still passes,
//! as on Docker's bridge, where `icc=false` is an iptables rule on IP: a
//! sandbox may learn a neighbour's MAC, and not one IP packet gets there.
//!
//! Unknown unicast is *dropped*, not flooded as a learning bridge (and
//! Docker's Linux bridge) would. Every endpoint's MAC is known statically
//! when its port is added, so a miss means a stale or forged destination;
//! flooding it would show one container's traffic to all the others.
//!
//! # MAC table
//!
//! Bounded (default [`DEFAULT_MAC_TABLE_CAP`] entries). A bound port's MAC is
//! a static entry, added and removed with the port. Frames that pass the
//! source checks also *learn* their source MAC, with aging
//! ([`DEFAULT_MAC_AGE`]); a full table refuses to learn and counts
//! `mac_table_full`, it never grows. While every port is bound, learning only
//! finds the static entry; the learned path is there for ports that will not
//! be bound to one MAC (capture, VXLAN uplinks).
//!
//! # Counters
//!
//! [`Counters`] and [`PortCounters`] are relaxed atomics behind `Arc`s: the
//! forwarding thread increments them, the control plane reads them without a
//! lock. Every drop is counted by reason and traced at `trace!` level. No
//! input panics (see the fuzz-style test at the bottom).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use smoltcp::wire::{
    ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol, Ipv4Packet,
};
use tracing::trace;

use super::vnet::{self, Offload};

/// Default bound of the MAC table.
pub const DEFAULT_MAC_TABLE_CAP: usize = 4096;

/// How long a learned MAC entry lives without being seen again.
pub const DEFAULT_MAC_AGE: Duration = Duration::from_secs(300);

/// Most ports one switch can have (port slots are 16-bit).
pub const MAX_PORTS: usize = 1 << 16;

/// The forwarding decision of one switch. See the module documentation.
pub struct Core {
    gateway_mac: EthernetAddress,
    /// Whether ports may send IPv4 to each other ([`CoreConfig::icc`]).
    icc: bool,
    slots: Vec<Slot>,
    table: MacTable,
    counters: Arc<Counters>,
}

impl Core {
    /// An empty switch.
    pub fn new(cfg: &CoreConfig) -> Core {
        Core {
            gateway_mac: EthernetAddress(cfg.gateway_mac),
            icc: cfg.icc,
            slots: Vec::new(),
            table: MacTable::new(cfg.mac_table_cap, cfg.mac_age),
            counters: Arc::new(Counters::default()),
        }
    }

    /// The switch's counters.
    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    /// Bind a new port to `mac` and `ipv4`.
    pub fn add_port(&mut self, mac: [u8; 6], ipv4: Ipv4Addr) -> Result<PortId, PortError> {
        let mac = EthernetAddress(mac);
        if !mac.is_unicast() || mac == self.gateway_mac {
            return Err(PortError::BadMac(mac));
        }
        if ipv4.is_unspecified() || ipv4.is_multicast() || ipv4.is_broadcast() {
            return Err(PortError::BadIp(ipv4));
        }
        for port in self.slots.iter().filter_map(|s| s.port.as_ref()) {
            if port.mac == mac {
                return Err(PortError::DuplicateMac(mac));
            }
            if port.ipv4 == ipv4 {
                return Err(PortError::DuplicateIp(ipv4));
            }
        }
        let slot = match self.slots.iter().position(|s| s.port.is_none()) {
            Some(slot) => slot,
            None if self.slots.len() < MAX_PORTS => {
                self.slots.push(Slot::default());
                self.slots.len() - 1
            }
            None => return Err(PortError::TooManyPorts),
        };
        let id = PortId::new(slot, self.slots[slot].generation);
        self.table.insert_static(mac, id)?;
        self.slots[slot].port = Some(Port {
            id,
            mac,
            ipv4,
            counters: Arc::new(PortCounters::default()),
        });
        Ok(id)
    }

    /// Unbind a port; false if it was not there. Its MAC entries go with it.
    pub fn remove_port(&mut self, id: PortId) -> bool {
        let Some(slot) = self.slots.get_mut(id.slot()) else {
            return false;
        };
        if !matches!(&slot.port, Some(p) if p.id == id) {
            return false;
        }
        slot.port = None;
        slot.generation = slot.generation.wrapping_add(1);
        self.table.remove_port(id);
        true
    }

    /// The counters of a port.
    pub fn port_counters(&self, id: PortId) -> Option<&Arc<PortCounters>> {
        self.port(id).map(|p| &p.counters)
    }

    /// Every registered port.
    pub fn ports(&self) -> impl Iterator<Item = PortId> + '_ {
        self.slots
            .iter()
            .filter_map(|s| s.port.as_ref().map(|p| p.id))
    }

    /// Entries in the MAC table (static and learned).
    pub fn mac_table_len(&self) -> usize {
        self.table.map.len()
    }

    /// Decide what to do with `frame`, read from `port` at `now`, with
    /// nothing offloaded (a port without a virtio-net header).
    pub fn ingress(&mut self, now: Instant, port: PortId, frame: &[u8]) -> Decision {
        self.ingress_vnet(now, port, &vnet::Header::NONE, frame).0
    }

    /// Decide what to do with `frame`, read from `port` at `now` after the
    /// virtio-net header `hdr`; also say what the header offloads (for a
    /// dropped frame, [`Offload::None`]).
    pub fn ingress_vnet(
        &mut self,
        now: Instant,
        port: PortId,
        hdr: &vnet::Header,
        frame: &[u8],
    ) -> (Decision, Offload) {
        let len = frame.len() as u64;
        self.counters.rx_frames.fetch_add(1, Relaxed);
        self.counters.rx_bytes.fetch_add(len, Relaxed);

        let Some(p) = self
            .slots
            .get(port.slot())
            .and_then(|s| s.port.as_ref())
            .filter(|p| p.id == port)
        else {
            let drop = self.dropped(port, None, DropReason::UnknownPort, frame.len());
            return (drop, Offload::None);
        };
        p.counters.rx_frames.fetch_add(1, Relaxed);
        p.counters.rx_bytes.fetch_add(len, Relaxed);

        let mut offload = Offload::None;
        let decision = match check_source(p, frame) {
            Err(reason) => Decision::Drop(reason),
            Ok(dst) => match vnet::check(hdr, frame) {
                Err(bad) => {
                    trace!(port = %port, ?bad, ?hdr, "switch: bad virtio-net header");
                    Decision::Drop(DropReason::BadOffload)
                }
                Ok(o) => {
                    offload = o;
                    if !self.table.learn(p.mac, port, now) {
                        self.counters.mac_table_full.fetch_add(1, Relaxed);
                        trace!(port = %port, mac = %p.mac, "switch: MAC table full, not learned");
                    }
                    let decision = self.destination(Some(port), dst);
                    if self.icc {
                        decision
                    } else {
                        without_icc(decision, frame)
                    }
                }
            },
        };
        let decision = match decision {
            Decision::Drop(reason) => {
                offload = Offload::None;
                self.dropped(port, Some(&p.counters), reason, frame.len())
            }
            Decision::Gateway => {
                self.counters.to_gateway.fetch_add(1, Relaxed);
                decision
            }
            Decision::Flood => {
                self.counters.flooded.fetch_add(1, Relaxed);
                self.counters.to_gateway.fetch_add(1, Relaxed);
                decision
            }
            Decision::Unicast(_) => decision,
        };
        (decision, offload)
    }

    /// Decide where a frame the gateway sent goes. The gateway is trusted:
    /// only the destination is looked at.
    pub fn from_gateway(&self, frame: &[u8]) -> Decision {
        self.counters.from_gateway.fetch_add(1, Relaxed);
        let decision = match EthernetFrame::new_checked(frame) {
            Err(_) => Decision::Drop(DropReason::Runt),
            Ok(eth) if eth.dst_addr() == self.gateway_mac => Decision::Drop(DropReason::Hairpin),
            Ok(eth) => self.destination(None, eth.dst_addr()),
        };
        match decision {
            Decision::Drop(reason) => {
                self.counters.count_drop(reason);
                trace!(
                    reason = reason.as_str(),
                    len = frame.len(),
                    "switch: drop from gateway"
                );
            }
            Decision::Flood => {
                self.counters.flooded.fetch_add(1, Relaxed);
            }
            Decision::Gateway | Decision::Unicast(_) => {}
        }
        decision
    }

    /// Forget learned entries older than the age limit; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        self.table.expire(now)
    }

    /// Count a frame written to `port`.
    pub fn note_tx(&self, port: PortId, len: usize) {
        self.counters.tx_frames.fetch_add(1, Relaxed);
        self.counters.tx_bytes.fetch_add(len as u64, Relaxed);
        if let Some(p) = self.port(port) {
            p.counters.tx_frames.fetch_add(1, Relaxed);
            p.counters.tx_bytes.fetch_add(len as u64, Relaxed);
        }
    }

    /// Count a failed write to `port`.
    pub fn note_write_error(&self, port: PortId) {
        self.counters.write_errors.fetch_add(1, Relaxed);
        if let Some(p) = self.port(port) {
            p.counters.write_errors.fetch_add(1, Relaxed);
        }
    }

    /// Where a frame that passed the source checks goes.
    fn destination(&self, ingress: Option<PortId>, dst: EthernetAddress) -> Decision {
        if dst == self.gateway_mac {
            return Decision::Gateway;
        }
        if dst.is_multicast() {
            // Broadcast is a multicast address too.
            return Decision::Flood;
        }
        match self.table.lookup(dst) {
            Some(port) if Some(port) == ingress => Decision::Drop(DropReason::Hairpin),
            Some(port) => Decision::Unicast(port),
            None => Decision::Drop(DropReason::UnknownUnicast),
        }
    }

    /// Count and trace a drop from `port`.
    fn dropped(
        &self,
        port: PortId,
        counters: Option<&PortCounters>,
        reason: DropReason,
        len: usize,
    ) -> Decision {
        self.counters.count_drop(reason);
        if let Some(c) = counters {
            c.dropped.fetch_add(1, Relaxed);
        }
        trace!(port = %port, reason = reason.as_str(), len, "switch: drop");
        Decision::Drop(reason)
    }

    fn port(&self, id: PortId) -> Option<&Port> {
        self.slots
            .get(id.slot())
            .and_then(|s| s.port.as_ref())
            .filter(|p| p.id == id)
    }
}

/// Where a frame from a port goes when ports may not talk to each other:
/// IPv4 to another port is dropped, IPv4 to everyone goes to the gateway
/// only; ARP and everything for the gateway as before.
fn without_icc(decision: Decision, frame: &[u8]) -> Decision {
    let ipv4 = EthernetFrame::new_checked(frame)
        .is_ok_and(|eth| eth.ethertype() == EthernetProtocol::Ipv4);
    match decision {
        Decision::Unicast(_) if ipv4 => Decision::Drop(DropReason::Icc),
        Decision::Flood if ipv4 => Decision::Gateway,
        other => other,
    }
}

/// Setup of one switch core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreConfig {
    /// The gateway's MAC: frames to it go to [`Decision::Gateway`].
    pub gateway_mac: [u8; 6],
    /// Bound of the MAC table (static and learned entries together).
    pub mac_table_cap: usize,
    /// Lifetime of a learned entry not seen again.
    pub mac_age: Duration,
    /// Whether ports may send IPv4 to each other (Docker's `enable_icc`,
    /// default true); see the module documentation.
    pub icc: bool,
}

impl CoreConfig {
    /// Defaults for everything but the gateway MAC.
    pub fn new(gateway_mac: [u8; 6]) -> CoreConfig {
        CoreConfig {
            gateway_mac,
            mac_table_cap: DEFAULT_MAC_TABLE_CAP,
            mac_age: DEFAULT_MAC_AGE,
            icc: true,
        }
    }
}

/// A port of one switch.
///
/// The low 16 bits are the port's slot, the high 16 bits a generation that
/// changes every time a slot is reused, so a stale id held by the control
/// plane never names a newer port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct PortId(u32);

impl PortId {
    fn new(slot: usize, generation: u16) -> PortId {
        PortId(u32::from(generation) << 16 | (slot as u32 & 0xffff))
    }

    /// The slot index of this port (small, dense: usable as a vector index).
    pub fn slot(self) -> usize {
        (self.0 & 0xffff) as usize
    }

    /// The raw value (slot and generation), e.g. as epoll user data.
    pub fn as_u32(self) -> u32 {
        self.0
    }

    /// The id whose raw value is `raw` (the inverse of [`PortId::as_u32`]).
    pub fn from_u32(raw: u32) -> PortId {
        PortId(raw)
    }
}

impl std::fmt::Display for PortId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.slot(), self.0 >> 16)
    }
}

/// What to do with one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Drop it; already counted.
    Drop(DropReason),
    /// Write it to this one port.
    Unicast(PortId),
    /// Hand it to the gateway only.
    Gateway,
    /// Write it to every port but the one it came from, and to the gateway
    /// (for frames from the gateway: to every port).
    Flood,
}

/// Why a frame was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Shorter than an Ethernet header.
    Runt,
    /// Source MAC multicast or not the port's MAC.
    SpoofedMac,
    /// IPv4 or ARP that does not parse.
    Malformed,
    /// IPv4 source address not the port's.
    SpoofedIp,
    /// ARP claiming another MAC or IP.
    ArpSpoof,
    /// ICMPv6 router advertisement from a sandbox (once IPv6 is supported).
    RouterAdvert,
    /// Not IPv4 or ARP.
    UnsupportedEthertype,
    /// Destination is the port the frame came from.
    Hairpin,
    /// Destination MAC not in the table (never flooded).
    UnknownUnicast,
    /// The ingress port is not (or no longer) registered.
    UnknownPort,
    /// A virtio-net header that asks for segmentation, has unknown flags,
    /// or puts a partial checksum anywhere but on the TCP or UDP checksum
    /// field (see [`super::vnet::check`]).
    BadOffload,
    /// IPv4 from one port to another on a network with `icc` off.
    Icc,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 12] = [
        DropReason::Runt,
        DropReason::SpoofedMac,
        DropReason::Malformed,
        DropReason::SpoofedIp,
        DropReason::ArpSpoof,
        DropReason::RouterAdvert,
        DropReason::UnsupportedEthertype,
        DropReason::Hairpin,
        DropReason::UnknownUnicast,
        DropReason::UnknownPort,
        DropReason::BadOffload,
        DropReason::Icc,
    ];

    /// The snake_case name used in counters and traces.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Runt => "runt",
            DropReason::SpoofedMac => "spoofed_mac",
            DropReason::Malformed => "malformed",
            DropReason::SpoofedIp => "spoofed_ip",
            DropReason::ArpSpoof => "arp_spoof",
            DropReason::RouterAdvert => "router_advert",
            DropReason::UnsupportedEthertype => "unsupported_ethertype",
            DropReason::Hairpin => "hairpin",
            DropReason::UnknownUnicast => "unknown_unicast",
            DropReason::UnknownPort => "unknown_port",
            DropReason::BadOffload => "bad_offload",
            DropReason::Icc => "icc",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A port the core cannot add.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// The MAC is multicast/broadcast, or the gateway's own.
    #[error("MAC {0} cannot be an endpoint's: it is multicast, broadcast or the gateway's")]
    BadMac(EthernetAddress),
    /// The IPv4 address is unspecified, multicast or broadcast.
    #[error("address {0} cannot be an endpoint's: it is not a unicast address")]
    BadIp(Ipv4Addr),
    /// Another port has this MAC.
    #[error("MAC {0} is already bound to another port of this network; choose another MAC")]
    DuplicateMac(EthernetAddress),
    /// Another port has this IPv4 address.
    #[error(
        "address {0} is already bound to another port of this network; choose another address"
    )]
    DuplicateIp(Ipv4Addr),
    /// The MAC table is full.
    #[error(
        "the network's MAC table is full ({0} entries); disconnect endpoints or raise the limit"
    )]
    MacTableFull(usize),
    /// All port slots are in use.
    #[error("the network has the maximum number of ports ({MAX_PORTS})")]
    TooManyPorts,
}

/// Network-wide counters of one switch (relaxed atomics, shared by `Arc`).
#[derive(Debug, Default)]
pub struct Counters {
    /// Frames read from ports (dropped or not).
    pub rx_frames: AtomicU64,
    /// Bytes read from ports.
    pub rx_bytes: AtomicU64,
    /// Frames written to ports.
    pub tx_frames: AtomicU64,
    /// Bytes written to ports.
    pub tx_bytes: AtomicU64,
    /// Frames handed to the gateway (unicast or flooded).
    pub to_gateway: AtomicU64,
    /// Frames the gateway sent.
    pub from_gateway: AtomicU64,
    /// Frames flooded (from ports or from the gateway).
    pub flooded: AtomicU64,
    /// Writes to a port that failed (full, or device gone).
    pub write_errors: AtomicU64,
    /// Reads from a port that failed for a reason other than "no more".
    pub read_errors: AtomicU64,
    /// Source MACs not learned because the table was full.
    pub mac_table_full: AtomicU64,
    drops: [AtomicU64; DropReason::ALL.len()],
}

impl Counters {
    /// Frames dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()].load(Relaxed)
    }

    fn count_drop(&self, reason: DropReason) {
        self.drops[reason.index()].fetch_add(1, Relaxed);
    }

    /// A copy of every counter, for reporting.
    pub fn snapshot(&self) -> NetworkCounters {
        let d = |r| self.dropped(r);
        NetworkCounters {
            rx_frames: self.rx_frames.load(Relaxed),
            rx_bytes: self.rx_bytes.load(Relaxed),
            tx_frames: self.tx_frames.load(Relaxed),
            tx_bytes: self.tx_bytes.load(Relaxed),
            to_gateway: self.to_gateway.load(Relaxed),
            from_gateway: self.from_gateway.load(Relaxed),
            flooded: self.flooded.load(Relaxed),
            write_errors: self.write_errors.load(Relaxed),
            read_errors: self.read_errors.load(Relaxed),
            mac_table_full: self.mac_table_full.load(Relaxed),
            dropped: DropCounters {
                runt: d(DropReason::Runt),
                spoofed_mac: d(DropReason::SpoofedMac),
                malformed: d(DropReason::Malformed),
                spoofed_ip: d(DropReason::SpoofedIp),
                arp_spoof: d(DropReason::ArpSpoof),
                router_advert: d(DropReason::RouterAdvert),
                unsupported_ethertype: d(DropReason::UnsupportedEthertype),
                hairpin: d(DropReason::Hairpin),
                unknown_unicast: d(DropReason::UnknownUnicast),
                unknown_port: d(DropReason::UnknownPort),
                bad_offload: d(DropReason::BadOffload),
                icc: d(DropReason::Icc),
            },
        }
    }
}

/// A snapshot of [`Counters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub struct NetworkCounters {
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    pub to_gateway: u64,
    pub from_gateway: u64,
    pub flooded: u64,
    pub write_errors: u64,
    pub read_errors: u64,
    pub mac_table_full: u64,
    /// Drops by reason.
    pub dropped: DropCounters,
}

/// Drops by [`DropReason`], named as [`DropReason::as_str`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub struct DropCounters {
    pub runt: u64,
    pub spoofed_mac: u64,
    pub malformed: u64,
    pub spoofed_ip: u64,
    pub arp_spoof: u64,
    pub router_advert: u64,
    pub unsupported_ethertype: u64,
    pub hairpin: u64,
    pub unknown_unicast: u64,
    pub unknown_port: u64,
    pub bad_offload: u64,
    pub icc: u64,
}

impl DropCounters {
    /// All drops together.
    pub fn total(&self) -> u64 {
        self.runt
            + self.spoofed_mac
            + self.malformed
            + self.spoofed_ip
            + self.arp_spoof
            + self.router_advert
            + self.unsupported_ethertype
            + self.hairpin
            + self.unknown_unicast
            + self.unknown_port
            + self.bad_offload
            + self.icc
    }
}

/// Counters of one port (relaxed atomics, shared by `Arc`).
#[derive(Debug, Default)]
pub struct PortCounters {
    /// Frames read from this port.
    pub rx_frames: AtomicU64,
    /// Bytes read from this port.
    pub rx_bytes: AtomicU64,
    /// Frames written to this port.
    pub tx_frames: AtomicU64,
    /// Bytes written to this port.
    pub tx_bytes: AtomicU64,
    /// Frames from this port that were dropped (any reason).
    pub dropped: AtomicU64,
    /// Frames for this port whose write failed.
    pub write_errors: AtomicU64,
}

/// One port slot; the generation outlives the port.
#[derive(Default)]
struct Slot {
    generation: u16,
    port: Option<Port>,
}

/// A bound port.
struct Port {
    id: PortId,
    mac: EthernetAddress,
    ipv4: Ipv4Addr,
    counters: Arc<PortCounters>,
}

/// The anti-spoofing checks of a frame from `port`; its destination if it
/// passes.
fn check_source(port: &Port, frame: &[u8]) -> Result<EthernetAddress, DropReason> {
    let eth = EthernetFrame::new_checked(frame).map_err(|_| DropReason::Runt)?;
    let src = eth.src_addr();
    if src.is_multicast() || src != port.mac {
        return Err(DropReason::SpoofedMac);
    }
    match eth.ethertype() {
        EthernetProtocol::Ipv4 => {
            let ip = Ipv4Packet::new_checked(eth.payload()).map_err(|_| DropReason::Malformed)?;
            if ip.version() != 4 || ip.header_len() < 20 {
                return Err(DropReason::Malformed);
            }
            if ip.src_addr() != port.ipv4 {
                return Err(DropReason::SpoofedIp);
            }
        }
        EthernetProtocol::Arp => {
            let packet =
                ArpPacket::new_checked(eth.payload()).map_err(|_| DropReason::Malformed)?;
            let ArpRepr::EthernetIpv4 {
                source_hardware_addr,
                source_protocol_addr,
                ..
            } = ArpRepr::parse(&packet).map_err(|_| DropReason::Malformed)?
            else {
                return Err(DropReason::Malformed);
            };
            if source_hardware_addr != port.mac
                || (source_protocol_addr != port.ipv4 && !source_protocol_addr.is_unspecified())
            {
                return Err(DropReason::ArpSpoof);
            }
        }
        // IPv6 (and with it router advertisements, DropReason::RouterAdvert)
        // is handled once smoltcp's proto-ipv6 is enabled; until then it is
        // dropped with everything else that is neither IPv4 nor ARP.
        _ => return Err(DropReason::UnsupportedEthertype),
    }
    Ok(eth.dst_addr())
}

/// The bounded MAC table: static entries for bound ports, learned entries
/// with aging.
struct MacTable {
    map: HashMap<[u8; 6], MacEntry>,
    cap: usize,
    age: Duration,
}

#[derive(Debug, Clone, Copy)]
struct MacEntry {
    port: PortId,
    /// `None` for a static entry, else when it was last seen.
    seen: Option<Instant>,
}

impl MacTable {
    fn new(cap: usize, age: Duration) -> MacTable {
        MacTable {
            map: HashMap::new(),
            cap,
            age,
        }
    }

    fn lookup(&self, mac: EthernetAddress) -> Option<PortId> {
        self.map.get(&mac.0).map(|e| e.port)
    }

    /// Add a static entry (replacing a learned one for the same MAC).
    fn insert_static(&mut self, mac: EthernetAddress, port: PortId) -> Result<(), PortError> {
        match self.map.get(&mac.0) {
            Some(MacEntry { seen: None, .. }) => Err(PortError::DuplicateMac(mac)),
            Some(_) => {
                self.map.insert(mac.0, MacEntry { port, seen: None });
                Ok(())
            }
            None if self.map.len() >= self.cap => Err(PortError::MacTableFull(self.cap)),
            None => {
                self.map.insert(mac.0, MacEntry { port, seen: None });
                Ok(())
            }
        }
    }

    /// Drop every entry pointing at `port`.
    fn remove_port(&mut self, port: PortId) {
        self.map.retain(|_, e| e.port != port);
    }

    /// Note that `mac` was seen on `port` at `now`. False when the table was
    /// full and the MAC could not be learned.
    fn learn(&mut self, mac: EthernetAddress, port: PortId, now: Instant) -> bool {
        if let Some(entry) = self.map.get_mut(&mac.0) {
            // Static entries never move; learned ones follow the station.
            if entry.seen.is_some() {
                entry.port = port;
                entry.seen = Some(now);
            }
            return true;
        }
        if self.map.len() >= self.cap {
            return false;
        }
        self.map.insert(
            mac.0,
            MacEntry {
                port,
                seen: Some(now),
            },
        );
        true
    }

    /// Forget learned entries not seen for `age`; returns how many.
    fn expire(&mut self, now: Instant) -> usize {
        let before = self.map.len();
        let age = self.age;
        self.map.retain(|_, e| match e.seen {
            None => true,
            Some(seen) => now.saturating_duration_since(seen) < age,
        });
        before - self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::testutil::*;
    use smoltcp::wire::{ArpOperation, IpProtocol};

    const GW_MAC: [u8; 6] = [0x02, 0x42, 0xac, 0x11, 0x00, 0x01];
    const GW_IP: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 1);
    const A_MAC: [u8; 6] = [0x02, 0x42, 0xac, 0x11, 0x00, 0x02];
    const A_IP: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 2);
    const B_MAC: [u8; 6] = [0x02, 0x42, 0xac, 0x11, 0x00, 0x03];
    const B_IP: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 3);
    const X_MAC: [u8; 6] = [0x02, 0x42, 0xac, 0x11, 0x00, 0x63];
    const X_IP: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 99);

    struct Fixture {
        core: Core,
        a: PortId,
        b: PortId,
        now: Instant,
    }

    fn fixture() -> Fixture {
        let mut core = Core::new(&CoreConfig::new(GW_MAC));
        let a = core.add_port(A_MAC, A_IP).expect("port a");
        let b = core.add_port(B_MAC, B_IP).expect("port b");
        Fixture {
            core,
            a,
            b,
            now: Instant::now(),
        }
    }

    fn udp_like(src_mac: [u8; 6], dst_mac: [u8; 6], src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
        ipv4(src_mac, dst_mac, src, dst, IpProtocol::Udp, 8, |p| {
            p.copy_from_slice(&[0, 1, 0, 2, 0, 8, 0, 0])
        })
    }

    fn expect_drop(f: &mut Fixture, port: PortId, frame: &[u8], reason: DropReason) {
        let before = f.core.counters().dropped(reason);
        assert_eq!(f.core.ingress(f.now, port, frame), Decision::Drop(reason));
        assert_eq!(f.core.counters().dropped(reason), before + 1);
    }

    #[test]
    fn arp_request_is_flooded() {
        let mut f = fixture();
        let d = f.core.ingress(f.now, f.a, &arp_request(A_MAC, A_IP, B_IP));
        assert_eq!(d, Decision::Flood);
        let c = f.core.counters().snapshot();
        assert_eq!((c.flooded, c.to_gateway, c.rx_frames), (1, 1, 1));
    }

    #[test]
    fn arp_probe_from_unspecified_is_allowed() {
        let mut f = fixture();
        let probe = arp(
            A_MAC,
            BROADCAST,
            ArpOperation::Request,
            A_MAC,
            Ipv4Addr::UNSPECIFIED,
            [0; 6],
            A_IP,
        );
        assert_eq!(f.core.ingress(f.now, f.a, &probe), Decision::Flood);
    }

    #[test]
    fn arp_reply_is_unicast() {
        let mut f = fixture();
        let reply = arp(B_MAC, A_MAC, ArpOperation::Reply, B_MAC, B_IP, A_MAC, A_IP);
        assert_eq!(f.core.ingress(f.now, f.b, &reply), Decision::Unicast(f.a));
    }

    #[test]
    fn unicast_to_known_mac() {
        let mut f = fixture();
        let frame = udp_like(A_MAC, B_MAC, A_IP, B_IP);
        assert_eq!(f.core.ingress(f.now, f.a, &frame), Decision::Unicast(f.b));
        let frame = udp_like(B_MAC, A_MAC, B_IP, A_IP);
        assert_eq!(f.core.ingress(f.now, f.b, &frame), Decision::Unicast(f.a));
        assert_eq!(f.core.counters().snapshot().dropped.total(), 0);
    }

    #[test]
    fn to_gateway_mac_goes_to_gateway() {
        let mut f = fixture();
        let ping = icmp_echo_request(A_MAC, GW_MAC, A_IP, GW_IP, 1, 1, b"hi");
        assert_eq!(f.core.ingress(f.now, f.a, &ping), Decision::Gateway);
        // Also for addresses beyond the gateway (future NAT egress).
        let out = udp_like(A_MAC, GW_MAC, A_IP, Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(f.core.ingress(f.now, f.a, &out), Decision::Gateway);
        assert_eq!(f.core.counters().snapshot().to_gateway, 2);
    }

    #[test]
    fn ipv4_multicast_is_flooded() {
        let mut f = fixture();
        let frame = udp_like(
            A_MAC,
            [0x01, 0x00, 0x5e, 0, 0, 0xfb],
            A_IP,
            Ipv4Addr::new(224, 0, 0, 251),
        );
        assert_eq!(f.core.ingress(f.now, f.a, &frame), Decision::Flood);
    }

    #[test]
    fn without_icc_ports_reach_only_the_gateway() {
        let mut core = Core::new(&CoreConfig {
            icc: false,
            ..CoreConfig::new(GW_MAC)
        });
        let a = core.add_port(A_MAC, A_IP).unwrap();
        let b = core.add_port(B_MAC, B_IP).unwrap();
        let mut f = Fixture {
            core,
            a,
            b,
            now: Instant::now(),
        };
        // IPv4 to the other port: dropped and counted as icc, both ways.
        let ping = icmp_echo_request(A_MAC, B_MAC, A_IP, B_IP, 1, 1, b"hi");
        expect_drop(&mut f, a, &ping, DropReason::Icc);
        let back = udp_like(B_MAC, A_MAC, B_IP, A_IP);
        expect_drop(&mut f, b, &back, DropReason::Icc);
        // IPv4 broadcast and multicast reach the gateway only.
        let bcast = udp_like(A_MAC, BROADCAST, A_IP, Ipv4Addr::new(172, 17, 255, 255));
        assert_eq!(f.core.ingress(f.now, a, &bcast), Decision::Gateway);
        let mcast = udp_like(
            A_MAC,
            [0x01, 0x00, 0x5e, 0, 0, 0xfb],
            A_IP,
            Ipv4Addr::new(224, 0, 0, 251),
        );
        assert_eq!(f.core.ingress(f.now, a, &mcast), Decision::Gateway);
        // The gateway as before; ARP as on Docker's bridge.
        let gw = icmp_echo_request(A_MAC, GW_MAC, A_IP, GW_IP, 1, 1, b"hi");
        assert_eq!(f.core.ingress(f.now, a, &gw), Decision::Gateway);
        assert_eq!(
            f.core.ingress(f.now, a, &arp_request(A_MAC, A_IP, B_IP)),
            Decision::Flood
        );
        let reply = arp(B_MAC, A_MAC, ArpOperation::Reply, B_MAC, B_IP, A_MAC, A_IP);
        assert_eq!(f.core.ingress(f.now, b, &reply), Decision::Unicast(a));
        let c = f.core.counters().snapshot();
        assert_eq!((c.dropped.icc, c.dropped.total()), (2, 2));
        // The gateway still reaches every port.
        let from_gw = icmp_echo_request(GW_MAC, B_MAC, GW_IP, B_IP, 1, 1, b"hi");
        assert_eq!(f.core.from_gateway(&from_gw), Decision::Unicast(b));
    }

    #[test]
    fn drop_runt() {
        let mut f = fixture();
        let a = f.a;
        expect_drop(&mut f, a, &[], DropReason::Runt);
        expect_drop(&mut f, a, &[0u8; 13], DropReason::Runt);
    }

    #[test]
    fn drop_spoofed_mac() {
        let mut f = fixture();
        let a = f.a;
        // Another port's MAC.
        let frame = udp_like(B_MAC, GW_MAC, A_IP, GW_IP);
        expect_drop(&mut f, a, &frame, DropReason::SpoofedMac);
        // A multicast source.
        let frame = udp_like([0x03, 0, 0, 0, 0, 1], GW_MAC, A_IP, GW_IP);
        expect_drop(&mut f, a, &frame, DropReason::SpoofedMac);
        let frame = udp_like(BROADCAST, GW_MAC, A_IP, GW_IP);
        expect_drop(&mut f, a, &frame, DropReason::SpoofedMac);
        assert_eq!(
            f.core.port_counters(a).map(|c| c.dropped.load(Relaxed)),
            Some(3)
        );
    }

    #[test]
    fn drop_malformed_ipv4() {
        let mut f = fixture();
        let a = f.a;
        let good = udp_like(A_MAC, B_MAC, A_IP, B_IP);
        // Truncated inside the IPv4 header.
        expect_drop(&mut f, a, &good[..14 + 10], DropReason::Malformed);
        // Total length larger than what was received.
        expect_drop(&mut f, a, &good[..good.len() - 1], DropReason::Malformed);
        // Header length shorter than 20 bytes.
        let mut bad = good.clone();
        bad[14] = 0x44;
        expect_drop(&mut f, a, &bad, DropReason::Malformed);
        // Version 6 in an IPv4 ethertype.
        let mut bad = good.clone();
        bad[14] = 0x65;
        expect_drop(&mut f, a, &bad, DropReason::Malformed);
        // Trailing padding (minimum Ethernet size) is fine.
        let mut padded = good.clone();
        padded.resize(60, 0);
        assert_eq!(f.core.ingress(f.now, a, &padded), Decision::Unicast(f.b));
    }

    #[test]
    fn drop_spoofed_ip() {
        let mut f = fixture();
        let a = f.a;
        expect_drop(
            &mut f,
            a,
            &udp_like(A_MAC, B_MAC, B_IP, B_IP),
            DropReason::SpoofedIp,
        );
        expect_drop(
            &mut f,
            a,
            &udp_like(A_MAC, GW_MAC, Ipv4Addr::UNSPECIFIED, GW_IP),
            DropReason::SpoofedIp,
        );
    }

    #[test]
    fn drop_malformed_arp() {
        let mut f = fixture();
        let a = f.a;
        let good = arp_request(A_MAC, A_IP, B_IP);
        // Truncated.
        expect_drop(&mut f, a, &good[..14 + 20], DropReason::Malformed);
        // Not Ethernet/IPv4: protocol type IPv6.
        let mut bad = good.clone();
        bad[14 + 2..14 + 4].copy_from_slice(&[0x86, 0xdd]);
        expect_drop(&mut f, a, &bad, DropReason::Malformed);
        // Hardware length 8 claimed (longer than the frame holds).
        let mut bad = good.clone();
        bad[14 + 4] = 200;
        expect_drop(&mut f, a, &bad, DropReason::Malformed);
    }

    #[test]
    fn drop_arp_spoof() {
        let mut f = fixture();
        let a = f.a;
        // Claims B's IP (ARP cache poisoning).
        let frame = arp(
            A_MAC,
            BROADCAST,
            ArpOperation::Reply,
            A_MAC,
            B_IP,
            [0; 6],
            B_IP,
        );
        expect_drop(&mut f, a, &frame, DropReason::ArpSpoof);
        // Claims the gateway's IP.
        let frame = arp(
            A_MAC,
            BROADCAST,
            ArpOperation::Reply,
            A_MAC,
            GW_IP,
            [0; 6],
            GW_IP,
        );
        expect_drop(&mut f, a, &frame, DropReason::ArpSpoof);
        // Sender hardware address not the port's.
        let frame = arp(
            A_MAC,
            BROADCAST,
            ArpOperation::Request,
            X_MAC,
            A_IP,
            [0; 6],
            B_IP,
        );
        expect_drop(&mut f, a, &frame, DropReason::ArpSpoof);
    }

    #[test]
    fn drop_unsupported_ethertypes() {
        let mut f = fixture();
        let a = f.a;
        for ethertype in [0x86dd_u16, 0x8100, 0x88cc, 0x0000, 0xffff] {
            let frame = ethernet(A_MAC, B_MAC, EthernetProtocol::from(ethertype), 46, |_| {});
            expect_drop(&mut f, a, &frame, DropReason::UnsupportedEthertype);
        }
    }

    #[test]
    fn drop_unknown_unicast_instead_of_flooding() {
        let mut f = fixture();
        let a = f.a;
        let frame = udp_like(A_MAC, X_MAC, A_IP, X_IP);
        expect_drop(&mut f, a, &frame, DropReason::UnknownUnicast);
        assert_eq!(f.core.counters().snapshot().flooded, 0);
    }

    #[test]
    fn drop_hairpin() {
        let mut f = fixture();
        let a = f.a;
        let frame = udp_like(A_MAC, A_MAC, A_IP, A_IP);
        expect_drop(&mut f, a, &frame, DropReason::Hairpin);
    }

    #[test]
    fn drop_unknown_port() {
        let mut f = fixture();
        let a = f.a;
        assert!(f.core.remove_port(a));
        assert!(!f.core.remove_port(a));
        let frame = udp_like(A_MAC, B_MAC, A_IP, B_IP);
        expect_drop(&mut f, a, &frame, DropReason::UnknownPort);
        // Frames to the removed port's MAC are unknown unicast now.
        let b = f.b;
        let frame = udp_like(B_MAC, A_MAC, B_IP, A_IP);
        expect_drop(&mut f, b, &frame, DropReason::UnknownUnicast);
    }

    #[test]
    fn stale_port_ids_do_not_name_new_ports() {
        let mut f = fixture();
        let old = f.a;
        assert!(f.core.remove_port(old));
        let new = f.core.add_port(X_MAC, X_IP).expect("port x");
        assert_eq!(new.slot(), old.slot());
        assert_ne!(new, old);
        let frame = udp_like(X_MAC, B_MAC, X_IP, B_IP);
        assert_eq!(
            f.core.ingress(f.now, old, &frame),
            Decision::Drop(DropReason::UnknownPort)
        );
        assert_eq!(f.core.ingress(f.now, new, &frame), Decision::Unicast(f.b));
        assert!(!f.core.remove_port(old));
        assert_eq!(f.core.ports().count(), 2);
    }

    #[test]
    fn from_gateway_uses_destination_only() {
        let f = fixture();
        let reply = arp(
            GW_MAC,
            A_MAC,
            ArpOperation::Reply,
            GW_MAC,
            GW_IP,
            A_MAC,
            A_IP,
        );
        assert_eq!(f.core.from_gateway(&reply), Decision::Unicast(f.a));
        let request = arp_request(GW_MAC, GW_IP, B_IP);
        assert_eq!(f.core.from_gateway(&request), Decision::Flood);
        let lost = udp_like(GW_MAC, X_MAC, GW_IP, X_IP);
        assert_eq!(
            f.core.from_gateway(&lost),
            Decision::Drop(DropReason::UnknownUnicast)
        );
        assert_eq!(
            f.core.from_gateway(&[1, 2, 3]),
            Decision::Drop(DropReason::Runt)
        );
        let c = f.core.counters().snapshot();
        assert_eq!((c.from_gateway, c.flooded), (4, 1));
    }

    #[test]
    fn rejects_bad_ports() {
        let mut f = fixture();
        assert_eq!(
            f.core.add_port(A_MAC, X_IP),
            Err(PortError::DuplicateMac(EthernetAddress(A_MAC)))
        );
        assert_eq!(
            f.core.add_port(X_MAC, A_IP),
            Err(PortError::DuplicateIp(A_IP))
        );
        assert!(matches!(
            f.core.add_port(GW_MAC, X_IP),
            Err(PortError::BadMac(_))
        ));
        assert!(matches!(
            f.core.add_port(BROADCAST, X_IP),
            Err(PortError::BadMac(_))
        ));
        assert!(matches!(
            f.core.add_port(X_MAC, Ipv4Addr::UNSPECIFIED),
            Err(PortError::BadIp(_))
        ));
    }

    #[test]
    fn mac_table_is_bounded() {
        let mut cfg = CoreConfig::new(GW_MAC);
        cfg.mac_table_cap = 2;
        let mut core = Core::new(&cfg);
        core.add_port(A_MAC, A_IP).expect("a");
        core.add_port(B_MAC, B_IP).expect("b");
        assert_eq!(core.add_port(X_MAC, X_IP), Err(PortError::MacTableFull(2)));
        assert_eq!(core.mac_table_len(), 2);

        // Learning refuses (and counts) when full.
        let mut table = MacTable::new(2, DEFAULT_MAC_AGE);
        let now = Instant::now();
        let p = PortId::new(0, 0);
        for i in 0..10u8 {
            table.learn(EthernetAddress([2, 0, 0, 0, 0, i]), p, now);
        }
        assert_eq!(table.map.len(), 2);
        assert!(!table.learn(EthernetAddress(X_MAC), p, now));
        // Known MACs still refresh when full.
        assert!(table.learn(EthernetAddress([2, 0, 0, 0, 0, 1]), p, now));
    }

    #[test]
    fn learned_entries_age_out_static_ones_do_not() {
        let now = Instant::now();
        let age = Duration::from_secs(300);
        let mut table = MacTable::new(16, age);
        let p = PortId::new(0, 0);
        let q = PortId::new(1, 0);
        table
            .insert_static(EthernetAddress(A_MAC), p)
            .expect("static");
        assert!(table.learn(EthernetAddress(X_MAC), q, now));
        assert_eq!(table.lookup(EthernetAddress(X_MAC)), Some(q));

        // Refreshed at +200 s, so still there at +400 s.
        assert!(table.learn(EthernetAddress(X_MAC), q, now + Duration::from_secs(200)));
        assert_eq!(table.expire(now + Duration::from_secs(400)), 0);
        assert_eq!(table.expire(now + Duration::from_secs(500)), 1);
        assert_eq!(table.lookup(EthernetAddress(X_MAC)), None);
        assert_eq!(table.lookup(EthernetAddress(A_MAC)), Some(p));

        // A static entry never moves by learning.
        assert!(table.learn(EthernetAddress(A_MAC), q, now));
        assert_eq!(table.lookup(EthernetAddress(A_MAC)), Some(p));
        // A learned entry follows its station.
        assert!(table.learn(EthernetAddress(X_MAC), q, now));
        assert!(table.learn(EthernetAddress(X_MAC), p, now));
        assert_eq!(table.lookup(EthernetAddress(X_MAC)), Some(p));
        // Removing a port removes its entries of both kinds.
        table.remove_port(p);
        assert_eq!(table.map.len(), 0);
    }

    #[test]
    fn core_expire_keeps_port_entries() {
        let mut f = fixture();
        let frame = udp_like(A_MAC, B_MAC, A_IP, B_IP);
        f.core.ingress(f.now, f.a, &frame);
        assert_eq!(f.core.expire(f.now + Duration::from_secs(3600)), 0);
        assert_eq!(f.core.mac_table_len(), 2);
        assert_eq!(
            f.core
                .ingress(f.now + Duration::from_secs(3600), f.a, &frame),
            Decision::Unicast(f.b)
        );
    }

    #[test]
    fn counters_add_up() {
        let mut f = fixture();
        let frame = udp_like(A_MAC, B_MAC, A_IP, B_IP);
        f.core.ingress(f.now, f.a, &frame);
        f.core.note_tx(f.b, frame.len());
        f.core.note_write_error(f.b);
        let c = f.core.counters().snapshot();
        assert_eq!(c.rx_frames, 1);
        assert_eq!(c.rx_bytes, frame.len() as u64);
        assert_eq!(c.tx_frames, 1);
        assert_eq!(c.tx_bytes, frame.len() as u64);
        assert_eq!(c.write_errors, 1);
        let b = f.core.port_counters(f.b).expect("b counters");
        assert_eq!(b.tx_frames.load(Relaxed), 1);
        assert_eq!(b.write_errors.load(Relaxed), 1);
        let a = f.core.port_counters(f.a).expect("a counters");
        assert_eq!(a.rx_frames.load(Relaxed), 1);
        assert_eq!(a.rx_bytes.load(Relaxed), frame.len() as u64);
    }

    #[test]
    fn offloaded_checksums_are_carried_and_bad_headers_dropped() {
        use crate::switch::vnet::{Header, F_DATA_VALID, F_NEEDS_CSUM};
        let mut f = fixture();
        // A UDP frame A→B: the L4 header starts at 14 + 20 = 34.
        let frame = udp_like(A_MAC, B_MAC, A_IP, B_IP);
        let partial = Header {
            flags: F_NEEDS_CSUM,
            csum_start: 34,
            csum_offset: 6,
            ..Header::NONE
        };
        assert_eq!(
            f.core.ingress_vnet(f.now, f.a, &partial, &frame),
            (
                Decision::Unicast(f.b),
                Offload::Partial {
                    start: 34,
                    offset: 6
                }
            )
        );
        let valid = Header {
            flags: F_DATA_VALID,
            ..Header::NONE
        };
        assert_eq!(
            f.core.ingress_vnet(f.now, f.a, &valid, &frame),
            (Decision::Unicast(f.b), Offload::Valid)
        );
        assert_eq!(
            f.core.ingress_vnet(f.now, f.a, &Header::NONE, &frame),
            (Decision::Unicast(f.b), Offload::None)
        );

        // Lies: the TCP offset on UDP, a start inside the IP header, GSO,
        // unknown flags, a partial checksum on ARP.
        let lies = [
            Header {
                csum_offset: 16,
                ..partial
            },
            Header {
                csum_start: 20,
                ..partial
            },
            Header {
                gso_type: 1,
                gso_size: 1400,
                ..partial
            },
            Header {
                flags: 0x84,
                ..Header::NONE
            },
        ];
        for (i, hdr) in lies.iter().enumerate() {
            let before = f.core.counters().dropped(DropReason::BadOffload);
            assert_eq!(
                f.core.ingress_vnet(f.now, f.a, hdr, &frame),
                (Decision::Drop(DropReason::BadOffload), Offload::None),
                "lie {i}"
            );
            assert_eq!(
                f.core.counters().dropped(DropReason::BadOffload),
                before + 1
            );
        }
        let arp = arp_request(A_MAC, A_IP, B_IP);
        assert_eq!(
            f.core.ingress_vnet(f.now, f.a, &partial, &arp).0,
            Decision::Drop(DropReason::BadOffload)
        );
        // Source checks come first: a spoofed frame is counted as spoofed,
        // whatever its header says.
        let spoofed = udp_like(A_MAC, B_MAC, X_IP, B_IP);
        assert_eq!(
            f.core.ingress_vnet(f.now, f.a, &lies[2], &spoofed).0,
            Decision::Drop(DropReason::SpoofedIp)
        );
        let a = f.core.port_counters(f.a).expect("a counters");
        assert_eq!(a.dropped.load(Relaxed), 6);
        assert_eq!(f.core.counters().snapshot().dropped.bad_offload, 5);
    }

    #[test]
    fn drop_reasons_index_their_counters() {
        for (i, reason) in DropReason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i, "{}", reason.as_str());
        }
        let counters = Counters::default();
        counters.count_drop(DropReason::UnknownPort);
        assert_eq!(counters.snapshot().dropped.unknown_port, 1);
        assert_eq!(counters.snapshot().dropped.total(), 1);
    }

    #[test]
    fn random_garbage_never_panics() {
        let mut f = fixture();
        let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
        let templates = [
            udp_like(A_MAC, B_MAC, A_IP, B_IP),
            arp_request(A_MAC, A_IP, B_IP),
            icmp_echo_request(A_MAC, GW_MAC, A_IP, GW_IP, 1, 1, b"ping"),
        ];
        let mut buf = vec![0u8; 2000];
        let mut decisions = 0u64;
        for i in 0..100_000u32 {
            let len = (rng.next() % 2000) as usize;
            for b in buf[..len].iter_mut() {
                *b = rng.next() as u8;
            }
            // A third of the frames start from a valid header, so the
            // deeper parsers see hostile input too.
            if i % 3 == 0 {
                let t = &templates[(rng.next() % 3) as usize];
                let n = t.len().min(len);
                buf[..n].copy_from_slice(&t[..n]);
                if n > 14 && rng.next() % 2 == 0 {
                    let at = 14 + (rng.next() as usize % (n - 14));
                    buf[at] = rng.next() as u8;
                }
            }
            let port = if i % 2 == 0 { f.a } else { f.b };
            let now = f.now + Duration::from_millis(u64::from(i));
            let _ = f.core.ingress(now, port, &buf[..len]);
            let _ = f.core.from_gateway(&buf[..len]);
            // The same bytes after a random virtio-net header.
            if len > crate::switch::vnet::HDR_LEN {
                let (h, rest) = buf[..len].split_at(crate::switch::vnet::HDR_LEN);
                let hdr = crate::switch::vnet::Header::parse(h.try_into().expect("10 bytes"));
                let _ = f.core.ingress_vnet(now, port, &hdr, rest);
                decisions += 1;
            }
            decisions += 1;
        }
        let c = f.core.counters().snapshot();
        assert_eq!(c.rx_frames, decisions);
        assert!(c.dropped.total() > 0);
        assert!(f.core.mac_table_len() <= DEFAULT_MAC_TABLE_CAP);
    }
}
