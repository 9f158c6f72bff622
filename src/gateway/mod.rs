//! The gateway host of one network: a smoltcp interface that owns the
//! network's gateway address.
//!
//! # Theory of operation
//!
//! Every network has one address that belongs to warren itself, the gateway
//! (by default the first usable address of the subnet). Containers ARP for it,
//! ping it, and later send it their DNS queries and their traffic for the
//! outside world. Rather than writing an ARP responder, an ICMP responder and
//! a TCP stack by hand, the gateway is a smoltcp [`Interface`] on
//! `Medium::Ethernet` with the gateway's MAC and IPv4 address; smoltcp answers
//! ARP requests and ICMP echo requests by itself once the address is set.
//!
//! The gateway does no I/O and reads no clock (STYLE items 1 and 2). It sits
//! behind the switch like one more port:
//!
//! - [`Gateway::receive`] queues a frame the switch decided the gateway must
//!   see (unicast to the gateway MAC, or a broadcast/multicast);
//! - [`Gateway::poll`] runs smoltcp at the given time and hands every frame
//!   the gateway transmits to a callback, from which the switch forwards it;
//! - [`Gateway::poll_delay`] says when smoltcp's timers next need a poll.
//!
//! Frames travel between the switch and smoltcp through `QueueDevice`, an
//! in-memory `smoltcp::phy::Device` with two bounded FIFO queues (at most
//! [`QUEUE_FRAMES`] frames and [`QUEUE_BYTES`] bytes each way). A full queue
//! drops the frame and counts it: a container flooding the gateway costs it
//! bounded memory and never blocks the forwarding thread. Frame buffers are
//! recycled through small pools, so a steady stream of gateway traffic does not
//! allocate per frame.
//!
//! # Limits
//!
//! - IPv4 only for now (the crate builds smoltcp without `proto-ipv6`).
//! - The gateway never routes between networks: it answers for its own
//!   address and nothing else (`any_ip` stays off). NAT egress ([`nat`])
//!   has an interface of its own beside this one, which the switch feeds
//!   the frames to outside addresses.
//!
//! # Services
//!
//! - DNS ([`dns`]): [`Gateway::enable_dns`] adds a UDP socket and a pool of
//!   TCP sockets on port 53 to the socket set. After every smoltcp poll,
//!   [`Gateway::poll`] lets the DNS server serve what arrived and polls again
//!   if it queued answers, so an answer leaves in the same round as its
//!   query; [`Gateway::poll_delay`] includes the DNS server's timers (idle
//!   TCP connections, pending forwarded queries). Queries to forward leave
//!   through [`Gateway::take_dns_forwards`] and their answers come back
//!   through [`Gateway::dns_forwarded`]; the switch carries them to and from
//!   the forwarder.
//! - A second address ([`Gateway::set_dns_address`], the `dns-address`
//!   network option): the gateway also owns it (ARP, ping) and serves DNS
//!   there instead of at its own address, as slirp4netns's 10.0.2.3.
//! - smoltcp panics on a non-unicast hardware or IP address and on a prefix
//!   longer than 32 bits; [`Gateway::new`] rejects those configurations with a
//!   typed [`GatewayError`] instead, so no configuration can crash the
//!   forwarding thread.

pub mod dns;
pub mod nat;
#[cfg(test)]
pub(crate) mod testutil;

use std::collections::hash_map::RandomState;
use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use serde::Serialize;
use smoltcp::iface::{Config, Interface, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, HardwareAddress, Icmpv4Message, IpCidr,
    IpProtocol, Ipv4Cidr, Ipv4Packet,
};
use tracing::{error, trace};

use self::dns::{DnsCounters, DnsServer, ForwardOut, ForwardResult, NameTable};

/// Most frames queued in each direction between the switch and smoltcp.
pub const QUEUE_FRAMES: usize = 256;

/// Most bytes queued in each direction (bounds memory when frames are jumbo).
pub const QUEUE_BYTES: usize = 4 << 20;

/// Smallest IP MTU accepted (the IPv4 minimum every host must handle).
pub const MIN_MTU: usize = 576;

/// Largest IP MTU accepted (the largest IPv4 datagram).
pub const MAX_MTU: usize = 65535;

/// Spare frame buffers kept per direction for reuse.
const POOL_BUFFERS: usize = 8;

/// What the gateway of one network is: its address, prefix, MAC and MTU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GatewayConfig {
    /// The gateway's IPv4 address (e.g. 172.17.0.1).
    pub ip: Ipv4Addr,
    /// The network's prefix length (e.g. 16 for 172.17.0.0/16).
    pub prefix_len: u8,
    /// The gateway's MAC address; must be unicast.
    pub mac: [u8; 6],
    /// The IP MTU of the network (Linux meaning: without the Ethernet header).
    pub mtu: usize,
}

/// A gateway configuration that smoltcp cannot run (it would panic on it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// The gateway MAC is a multicast or broadcast address.
    #[error("gateway MAC {0} is not a unicast address; use a locally administered unicast MAC (first byte 02)")]
    MacNotUnicast(EthernetAddress),
    /// The gateway IP is unspecified, multicast or broadcast.
    #[error(
        "gateway address {0} is not a unicast address; use an address inside the network's subnet"
    )]
    IpNotUnicast(Ipv4Addr),
    /// The prefix length is 0 or longer than 32.
    #[error("gateway prefix length /{0} is out of range; use 1 to 32")]
    BadPrefix(u8),
    /// The gateway IP is the subnet's network or broadcast address.
    #[error("gateway address {ip} is the network or broadcast address of {ip}/{prefix_len}; use a host address")]
    NotHostAddress {
        /// The rejected address.
        ip: Ipv4Addr,
        /// Its prefix length.
        prefix_len: u8,
    },
    /// The MTU is outside [`MIN_MTU`]..=[`MAX_MTU`].
    #[error("gateway MTU {0} is out of range; use {MIN_MTU} to {MAX_MTU}")]
    BadMtu(usize),
}

/// The gateway host of one network. See the module documentation.
pub struct Gateway {
    iface: Interface,
    device: QueueDevice,
    /// smoltcp sockets of the gateway's services (DNS adds its own here).
    sockets: SocketSet<'static>,
    counters: Arc<GatewayCounters>,
    /// The gateway's address and MTU (for services added later).
    ip: Ipv4Addr,
    /// Where DNS is served: the gateway's address, or a second one.
    dns_ip: Ipv4Addr,
    prefix_len: u8,
    mtu: usize,
    /// The DNS server on port 53, once enabled.
    dns: Option<DnsServer>,
}

impl Gateway {
    /// Build the gateway interface for `cfg`, with its clock starting at `now`.
    ///
    /// Fails (instead of letting smoltcp panic) when the configuration is not
    /// one a host can have.
    pub fn new(cfg: &GatewayConfig, now: Instant) -> Result<Gateway, GatewayError> {
        let (mac, cidr) = validate(cfg)?;
        let counters = Arc::new(GatewayCounters::default());
        let mut device = QueueDevice::new(cfg.mtu, Arc::clone(&counters));

        let mut config = Config::new(HardwareAddress::Ethernet(mac));
        // smoltcp seeds TCP initial sequence numbers and IP ids from this; it
        // need not be cryptographic, but must differ between runs.
        config.random_seed = RandomState::new().hash_one(cfg.ip);
        let mut iface = Interface::new(config, &mut device, now);
        iface.update_ip_addrs(|addrs| {
            if addrs.push(IpCidr::Ipv4(cidr)).is_err() {
                // Cannot happen: the list starts empty and holds at least one.
                error!(gateway = %cfg.ip, "gateway: smoltcp refused the gateway address");
            }
        });

        Ok(Gateway {
            iface,
            device,
            sockets: SocketSet::new(Vec::new()),
            counters,
            ip: cfg.ip,
            dns_ip: cfg.ip,
            prefix_len: cfg.prefix_len,
            mtu: cfg.mtu,
            dns: None,
        })
    }

    /// Own `ip` too (answer ARP and ping for it) and serve DNS there rather
    /// than at the gateway's address, once [`Gateway::enable_dns`] runs (call
    /// this first). `ip` must be a unicast address of the subnet; it is
    /// refused otherwise, and the gateway keeps serving at its own address.
    pub fn set_dns_address(&mut self, ip: Ipv4Addr) -> Result<(), GatewayError> {
        let cfg = GatewayConfig {
            ip,
            prefix_len: self.prefix_len,
            mac: [0x02, 0, 0, 0, 0, 1],
            mtu: self.mtu,
        };
        let (_, cidr) = validate(&cfg)?;
        let own = Ipv4Cidr::new(self.ip, self.prefix_len).network();
        if cidr.network() != own || ip == self.ip {
            return Err(GatewayError::IpNotUnicast(ip));
        }
        let mut pushed = false;
        self.iface.update_ip_addrs(|addrs| {
            pushed = addrs.push(IpCidr::Ipv4(cidr)).is_ok();
        });
        if !pushed {
            return Err(GatewayError::IpNotUnicast(ip));
        }
        self.dns_ip = ip;
        Ok(())
    }

    /// Serve DNS for `network` on UDP and TCP port 53 of the gateway
    /// address (see [`dns`]). `forward_timeout` is the forwarder's bound
    /// from submission to answer ([`dns::Forwarder::bound`]), or `None`
    /// when nothing may be forwarded (SERVFAIL instead).
    /// Until [`Gateway::set_dns_names`] is called, every query gets SERVFAIL.
    /// Calling it again does nothing.
    pub fn enable_dns(&mut self, network: &str, forward_timeout: Option<Duration>) {
        if self.dns.is_some() {
            return;
        }
        let seed = RandomState::new().hash_one((self.ip, network));
        self.dns = Some(DnsServer::new(
            &mut self.sockets,
            network,
            self.dns_ip,
            self.mtu,
            forward_timeout,
            seed,
        ));
    }

    /// Answer DNS from `table` from now on.
    pub fn set_dns_names(&mut self, table: Arc<NameTable>) {
        if let Some(dns) = &mut self.dns {
            dns.set_names(table);
        }
    }

    /// The name table DNS answers from.
    pub fn dns_names(&self) -> Option<Arc<NameTable>> {
        self.dns.as_ref().map(|d| Arc::clone(d.names()))
    }

    /// The DNS server's counters.
    pub fn dns_counters(&self) -> Option<Arc<DnsCounters>> {
        self.dns.as_ref().map(|d| Arc::clone(d.counters()))
    }

    /// Queries the DNS server wants forwarded (each returned once).
    pub fn take_dns_forwards(&mut self) -> Vec<ForwardOut> {
        match &mut self.dns {
            Some(dns) => dns.take_forwards(),
            None => Vec::new(),
        }
    }

    /// The forwarder's result for query `token`; the answer is sent at the
    /// next [`Gateway::poll`].
    pub fn dns_forwarded(&mut self, now: Instant, token: u64, result: ForwardResult) {
        if let Some(dns) = &mut self.dns {
            dns.forwarded(now, token, result, &mut self.sockets);
        }
    }

    /// Queue a frame from the switch addressed to the gateway (unicast to its
    /// MAC, or broadcast/multicast). Dropped and counted when the queue is full.
    ///
    /// First [`screen`]: what smoltcp would drop without a word (a wrong
    /// IPv4 header checksum, an ICMP error, which this interface acts on
    /// none of) is dropped here and counted; fragments are counted and go
    /// on to smoltcp's reassembler.
    pub fn receive(&mut self, frame: &[u8]) {
        self.counters.rx_frames.fetch_add(1, Relaxed);
        match screen(frame) {
            Screen::Pass => {}
            Screen::Fragment => {
                self.counters.fragments.fetch_add(1, Relaxed);
            }
            Screen::BadChecksum => {
                self.counters.bad_checksum.fetch_add(1, Relaxed);
                trace!(
                    len = frame.len(),
                    "gateway: IPv4 header checksum wrong, dropped"
                );
                return;
            }
            Screen::IcmpError => {
                self.counters.icmp_errors.fetch_add(1, Relaxed);
                trace!(len = frame.len(), "gateway: ICMP error, dropped");
                return;
            }
        }
        if !self.device.rx.push_copy(frame, &mut self.device.rx_pool) {
            self.counters.rx_queue_full.fetch_add(1, Relaxed);
            trace!(len = frame.len(), "gateway: rx queue full, frame dropped");
        }
    }

    /// Run smoltcp at `now`: process every queued frame and the timers, then
    /// call `emit` for every frame the gateway sends, in order.
    pub fn poll(&mut self, now: Instant, emit: &mut dyn FnMut(&[u8])) {
        self.iface.poll(now, &mut self.device, &mut self.sockets);
        if let Some(dns) = &mut self.dns {
            // Answers are queued in the sockets; a second poll sends them
            // in this same round.
            if dns.process(now, &mut self.sockets) {
                self.iface.poll(now, &mut self.device, &mut self.sockets);
            }
        }
        while let Some(frame) = self.device.tx.pop() {
            self.counters.tx_frames.fetch_add(1, Relaxed);
            emit(&frame);
            self.device.tx_pool.put(frame);
        }
    }

    /// How long until [`Gateway::poll`] must run again; `None` means only when
    /// new input arrives.
    pub fn poll_delay(&mut self, now: Instant) -> Option<Duration> {
        if !self.device.rx.is_empty() || !self.device.tx.is_empty() {
            return Some(Duration::ZERO);
        }
        let iface = self.iface.poll_delay(now, &self.sockets);
        let dns = self
            .dns
            .as_ref()
            .and_then(|d| d.poll_at(now, &self.sockets))
            .map(|at| if at > now { at - now } else { Duration::ZERO });
        match (iface, dns) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The gateway's counters, shared so the control plane can read them
    /// without stopping the forwarding thread.
    pub fn counters(&self) -> Arc<GatewayCounters> {
        Arc::clone(&self.counters)
    }
}

/// Check `cfg` against everything smoltcp would panic on, and then some.
fn validate(cfg: &GatewayConfig) -> Result<(EthernetAddress, Ipv4Cidr), GatewayError> {
    let mac = EthernetAddress(cfg.mac);
    if !mac.is_unicast() {
        return Err(GatewayError::MacNotUnicast(mac));
    }
    if cfg.ip.is_unspecified() || cfg.ip.is_multicast() || cfg.ip.is_broadcast() {
        return Err(GatewayError::IpNotUnicast(cfg.ip));
    }
    if cfg.prefix_len == 0 || cfg.prefix_len > 32 {
        return Err(GatewayError::BadPrefix(cfg.prefix_len));
    }
    if !(MIN_MTU..=MAX_MTU).contains(&cfg.mtu) {
        return Err(GatewayError::BadMtu(cfg.mtu));
    }
    let cidr = Ipv4Cidr::new(cfg.ip, cfg.prefix_len);
    if cfg.prefix_len <= 30 {
        let host_bits = u32::MAX >> cfg.prefix_len;
        let host = u32::from(cfg.ip) & host_bits;
        if host == 0 || host == host_bits {
            return Err(GatewayError::NotHostAddress {
                ip: cfg.ip,
                prefix_len: cfg.prefix_len,
            });
        }
    }
    Ok((mac, cidr))
}

/// What [`Gateway::receive`] makes of a frame before smoltcp sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Screen {
    /// Anything else: smoltcp's to answer or drop.
    Pass,
    /// An IPv4 fragment: counted, then smoltcp's reassembler's.
    Fragment,
    /// An IPv4 header whose checksum is wrong (smoltcp would drop it).
    BadChecksum,
    /// An ICMP error (destination unreachable, time exceeded, …). The
    /// gateway has no ICMP socket and smoltcp acts on none of them.
    IcmpError,
}

/// Sorts a frame for [`Gateway::receive`]. The switch has already
/// dropped what does not parse; whatever this cannot parse passes, for
/// smoltcp's own checks.
fn screen(frame: &[u8]) -> Screen {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return Screen::Pass;
    };
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return Screen::Pass;
    }
    let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
        return Screen::Pass;
    };
    if !ip.verify_checksum() {
        return Screen::BadChecksum;
    }
    if ip.more_frags() || ip.frag_offset() != 0 {
        return Screen::Fragment;
    }
    if ip.next_header() == IpProtocol::Icmp {
        // Source quench (4) is an error smoltcp has no name for.
        let error = ip.payload().first().is_some_and(|&t| {
            matches!(
                Icmpv4Message::from(t),
                Icmpv4Message::DstUnreachable
                    | Icmpv4Message::Redirect
                    | Icmpv4Message::TimeExceeded
                    | Icmpv4Message::ParamProblem
                    | Icmpv4Message::Unknown(4)
            )
        });
        if error {
            return Screen::IcmpError;
        }
    }
    Screen::Pass
}

/// Counters of one gateway. Relaxed atomics: the forwarding thread writes,
/// anyone reads.
#[derive(Debug, Default)]
pub struct GatewayCounters {
    /// Frames the switch handed to the gateway.
    pub rx_frames: AtomicU64,
    /// Frames the gateway sent.
    pub tx_frames: AtomicU64,
    /// Frames dropped because the switch-to-gateway queue was full.
    pub rx_queue_full: AtomicU64,
    /// Frames dropped because the gateway-to-switch queue was full.
    pub tx_queue_full: AtomicU64,
    /// IPv4 fragments handed to smoltcp's reassembler.
    pub fragments: AtomicU64,
    /// Frames dropped for a wrong IPv4 header checksum.
    pub bad_checksum: AtomicU64,
    /// ICMP errors to the gateway, dropped (it acts on none).
    pub icmp_errors: AtomicU64,
}

impl GatewayCounters {
    /// A consistent-enough copy for reporting.
    pub fn snapshot(&self) -> GatewayStats {
        GatewayStats {
            rx_frames: self.rx_frames.load(Relaxed),
            tx_frames: self.tx_frames.load(Relaxed),
            rx_queue_full: self.rx_queue_full.load(Relaxed),
            tx_queue_full: self.tx_queue_full.load(Relaxed),
            fragments: self.fragments.load(Relaxed),
            bad_checksum: self.bad_checksum.load(Relaxed),
            icmp_errors: self.icmp_errors.load(Relaxed),
        }
    }
}

/// A snapshot of [`GatewayCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub struct GatewayStats {
    /// Frames the switch handed to the gateway.
    pub rx_frames: u64,
    /// Frames the gateway sent.
    pub tx_frames: u64,
    /// Frames dropped because the switch-to-gateway queue was full.
    pub rx_queue_full: u64,
    /// Frames dropped because the gateway-to-switch queue was full.
    pub tx_queue_full: u64,
    /// IPv4 fragments handed to smoltcp's reassembler.
    pub fragments: u64,
    /// Frames dropped for a wrong IPv4 header checksum.
    pub bad_checksum: u64,
    /// ICMP errors to the gateway, dropped (it acts on none).
    pub icmp_errors: u64,
}

/// The in-memory smoltcp device between the switch and the gateway interface.
struct QueueDevice {
    /// Frames from the switch, waiting for smoltcp.
    rx: FrameQueue,
    /// Frames from smoltcp, waiting for the switch.
    tx: FrameQueue,
    rx_pool: BufferPool,
    tx_pool: BufferPool,
    /// Ethernet MTU as smoltcp means it (IP MTU + 14).
    frame_mtu: usize,
    counters: Arc<GatewayCounters>,
}

impl QueueDevice {
    fn new(ip_mtu: usize, counters: Arc<GatewayCounters>) -> QueueDevice {
        QueueDevice {
            rx: FrameQueue::default(),
            tx: FrameQueue::default(),
            rx_pool: BufferPool::default(),
            tx_pool: BufferPool::default(),
            frame_mtu: ip_mtu + EthernetFrame::<&[u8]>::header_len(),
            counters,
        }
    }
}

impl Device for QueueDevice {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        let buffer = self.rx.pop()?;
        let rx = RxToken {
            buffer,
            pool: &mut self.rx_pool,
        };
        let tx = TxToken {
            queue: &mut self.tx,
            pool: &mut self.tx_pool,
            counters: &self.counters,
        };
        Some((rx, tx))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_>> {
        if self.tx.is_full() {
            self.counters.tx_queue_full.fetch_add(1, Relaxed);
            return None;
        }
        Some(TxToken {
            queue: &mut self.tx,
            pool: &mut self.tx_pool,
            counters: &self.counters,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.frame_mtu;
        // Checksums are verified on receive and computed on send (the
        // default): frames come from untrusted sandboxes.
        caps
    }
}

/// One received frame, lent to smoltcp; its buffer goes back to the pool.
struct RxToken<'a> {
    buffer: Vec<u8>,
    pool: &'a mut BufferPool,
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        let result = f(&self.buffer);
        self.pool.put(self.buffer);
        result
    }
}

/// Permission for smoltcp to send one frame into the tx queue.
struct TxToken<'a> {
    queue: &'a mut FrameQueue,
    pool: &'a mut BufferPool,
    counters: &'a GatewayCounters,
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let mut buffer = self.pool.take();
        buffer.resize(len, 0);
        let result = f(&mut buffer);
        // A reply token handed out with a received frame may find the queue
        // full: smoltcp still builds the frame, and it is dropped here.
        if let Err(buffer) = self.queue.push(buffer) {
            self.counters.tx_queue_full.fetch_add(1, Relaxed);
            trace!(len, "gateway: tx queue full, frame dropped");
            self.pool.put(buffer);
        }
        result
    }
}

/// A FIFO of frames bounded in count and bytes.
#[derive(Default)]
struct FrameQueue {
    frames: VecDeque<Vec<u8>>,
    bytes: usize,
}

impl FrameQueue {
    fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    fn is_full(&self) -> bool {
        self.frames.len() >= QUEUE_FRAMES || self.bytes >= QUEUE_BYTES
    }

    fn fits(&self, len: usize) -> bool {
        self.frames.len() < QUEUE_FRAMES && self.bytes.saturating_add(len) <= QUEUE_BYTES
    }

    /// Queue `buffer`, or give it back when the queue is full.
    fn push(&mut self, buffer: Vec<u8>) -> Result<(), Vec<u8>> {
        if !self.fits(buffer.len()) {
            return Err(buffer);
        }
        self.bytes += buffer.len();
        self.frames.push_back(buffer);
        Ok(())
    }

    /// Queue a copy of `frame` in a pooled buffer; false when full.
    fn push_copy(&mut self, frame: &[u8], pool: &mut BufferPool) -> bool {
        if !self.fits(frame.len()) {
            return false;
        }
        let mut buffer = pool.take();
        buffer.extend_from_slice(frame);
        self.bytes += buffer.len();
        self.frames.push_back(buffer);
        true
    }

    fn pop(&mut self) -> Option<Vec<u8>> {
        let buffer = self.frames.pop_front()?;
        self.bytes -= buffer.len();
        Some(buffer)
    }
}

/// A few spare buffers, so queued frames do not allocate each time.
#[derive(Default)]
struct BufferPool {
    spare: Vec<Vec<u8>>,
}

impl BufferPool {
    /// An empty buffer, reused when one is spare.
    fn take(&mut self) -> Vec<u8> {
        self.spare.pop().unwrap_or_default()
    }

    /// Keep `buffer` for reuse, unless enough are kept already.
    fn put(&mut self, mut buffer: Vec<u8>) {
        if self.spare.len() < POOL_BUFFERS {
            buffer.clear();
            self.spare.push(buffer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;
    use smoltcp::wire::{
        ArpOperation, ArpPacket, ArpRepr, EthernetProtocol, Icmpv4Packet, Icmpv4Repr, IpProtocol,
        Ipv4Packet,
    };

    const GW_MAC: [u8; 6] = [0x02, 0x42, 0xac, 0x11, 0x00, 0x01];
    const GW_IP: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 1);
    const HOST_MAC: [u8; 6] = [0x02, 0x42, 0xac, 0x11, 0x00, 0x02];
    const HOST_IP: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 2);

    fn config() -> GatewayConfig {
        GatewayConfig {
            ip: GW_IP,
            prefix_len: 16,
            mac: GW_MAC,
            mtu: 65520,
        }
    }

    fn gateway() -> Gateway {
        match Gateway::new(&config(), Instant::from_millis(0)) {
            Ok(gw) => gw,
            Err(e) => panic!("gateway config rejected: {e}"),
        }
    }

    fn poll_all(gw: &mut Gateway, at_ms: i64) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        gw.poll(Instant::from_millis(at_ms), &mut |f| out.push(f.to_vec()));
        out
    }

    #[test]
    fn answers_arp_for_its_address() {
        let mut gw = gateway();
        gw.receive(&arp_request(HOST_MAC, HOST_IP, GW_IP));
        let out = poll_all(&mut gw, 1);
        assert_eq!(out.len(), 1, "one ARP reply");

        let eth = EthernetFrame::new_checked(&out[0][..]).expect("ethernet");
        assert_eq!(eth.dst_addr(), EthernetAddress(HOST_MAC));
        assert_eq!(eth.src_addr(), EthernetAddress(GW_MAC));
        assert_eq!(eth.ethertype(), EthernetProtocol::Arp);
        let arp =
            ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).expect("arp")).expect("arp repr");
        assert_eq!(
            arp,
            ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Reply,
                source_hardware_addr: EthernetAddress(GW_MAC),
                source_protocol_addr: GW_IP,
                target_hardware_addr: EthernetAddress(HOST_MAC),
                target_protocol_addr: HOST_IP,
            }
        );
        assert_eq!(gw.counters().snapshot().tx_frames, 1);
    }

    #[test]
    fn ignores_arp_for_other_addresses() {
        let mut gw = gateway();
        gw.receive(&arp_request(
            HOST_MAC,
            HOST_IP,
            Ipv4Addr::new(172, 17, 0, 9),
        ));
        assert!(poll_all(&mut gw, 1).is_empty());
    }

    #[test]
    fn answers_icmp_echo() {
        let mut gw = gateway();
        // The container ARPs first, which fills the gateway's neighbour cache.
        gw.receive(&arp_request(HOST_MAC, HOST_IP, GW_IP));
        assert_eq!(poll_all(&mut gw, 1).len(), 1);

        let payload = b"warren ping payload";
        gw.receive(&icmp_echo_request(
            HOST_MAC, GW_MAC, HOST_IP, GW_IP, 0x1234, 7, payload,
        ));
        let out = poll_all(&mut gw, 2);
        assert_eq!(out.len(), 1, "one echo reply");

        let eth = EthernetFrame::new_checked(&out[0][..]).expect("ethernet");
        assert_eq!(eth.dst_addr(), EthernetAddress(HOST_MAC));
        assert_eq!(eth.src_addr(), EthernetAddress(GW_MAC));
        let ip = Ipv4Packet::new_checked(eth.payload()).expect("ipv4");
        assert!(ip.verify_checksum());
        assert_eq!(ip.src_addr(), GW_IP);
        assert_eq!(ip.dst_addr(), HOST_IP);
        assert_eq!(ip.next_header(), IpProtocol::Icmp);
        let icmp = Icmpv4Packet::new_checked(ip.payload()).expect("icmp");
        let repr = Icmpv4Repr::parse(&icmp, &Default::default()).expect("icmp repr");
        assert_eq!(
            repr,
            Icmpv4Repr::EchoReply {
                ident: 0x1234,
                seq_no: 7,
                data: payload,
            }
        );
    }

    #[test]
    fn bad_checksums_and_icmp_errors_are_dropped_and_counted_fragments_counted() {
        let mut gw = gateway();
        gw.receive(&arp_request(HOST_MAC, HOST_IP, GW_IP));
        assert_eq!(poll_all(&mut gw, 1).len(), 1);
        let echo = icmp_echo_request(HOST_MAC, GW_MAC, HOST_IP, GW_IP, 1, 1, b"x");
        // The same echo request with its header checksum broken, as a
        // fragment, and an ICMP port unreachable quoting anything.
        let mut bad = echo.clone();
        bad[14 + 10] ^= 0xff;
        let mut fragment = echo.clone();
        fragment[14 + 6] = 0x20; // more fragments
        let mut ip = Ipv4Packet::new_unchecked(&mut fragment[14..]);
        ip.fill_checksum();
        let error = ipv4(
            HOST_MAC,
            GW_MAC,
            HOST_IP,
            GW_IP,
            IpProtocol::Icmp,
            36,
            |p| {
                p[0] = 3;
                p[1] = 3;
            },
        );
        assert_eq!(screen(&echo), Screen::Pass);
        assert_eq!(screen(&bad), Screen::BadChecksum);
        assert_eq!(screen(&fragment), Screen::Fragment);
        assert_eq!(screen(&error), Screen::IcmpError);
        assert_eq!(screen(&arp_request(HOST_MAC, HOST_IP, GW_IP)), Screen::Pass);
        for f in [&bad, &error, &fragment] {
            gw.receive(f);
        }
        assert!(poll_all(&mut gw, 2).is_empty(), "none is answered");
        gw.receive(&echo);
        assert_eq!(poll_all(&mut gw, 3).len(), 1, "the honest one is");
        let stats = gw.counters().snapshot();
        assert_eq!(
            (stats.bad_checksum, stats.icmp_errors, stats.fragments),
            (1, 1, 1)
        );
    }

    #[test]
    fn echo_without_neighbour_asks_arp_first() {
        let mut gw = gateway();
        gw.receive(&icmp_echo_request(
            HOST_MAC, GW_MAC, HOST_IP, GW_IP, 1, 1, b"x",
        ));
        let out = poll_all(&mut gw, 1);
        assert_eq!(out.len(), 1);
        let eth = EthernetFrame::new_checked(&out[0][..]).expect("ethernet");
        assert_eq!(eth.ethertype(), EthernetProtocol::Arp);
        assert!(eth.dst_addr().is_broadcast());
    }

    #[test]
    fn a_dns_address_is_owned_beside_the_gateway() {
        let dns_ip = Ipv4Addr::new(172, 17, 0, 3);
        let mut gw = gateway();
        assert!(
            gw.set_dns_address(Ipv4Addr::new(10, 0, 0, 3)).is_err(),
            "outside the subnet"
        );
        assert!(gw.set_dns_address(GW_IP).is_err(), "the gateway's own");
        assert!(gw.set_dns_address(dns_ip).is_ok());
        // ARP and ping for the second address, from it.
        gw.receive(&arp_request(HOST_MAC, HOST_IP, dns_ip));
        let out = poll_all(&mut gw, 1);
        assert_eq!(out.len(), 1, "one ARP reply");
        gw.receive(&icmp_echo_request(
            HOST_MAC, GW_MAC, HOST_IP, dns_ip, 1, 1, b"x",
        ));
        let out = poll_all(&mut gw, 2);
        assert_eq!(out.len(), 1, "one echo reply");
        let eth = EthernetFrame::new_checked(&out[0][..]).expect("ethernet");
        let ip = Ipv4Packet::new_checked(eth.payload()).expect("ipv4");
        assert_eq!(ip.src_addr(), dns_ip);
        // The gateway's own address still answers.
        gw.receive(&arp_request(HOST_MAC, HOST_IP, GW_IP));
        assert_eq!(poll_all(&mut gw, 3).len(), 1);
    }

    #[test]
    fn rx_queue_is_bounded() {
        let mut gw = gateway();
        let frame = arp_request(HOST_MAC, HOST_IP, Ipv4Addr::new(172, 17, 0, 9));
        for _ in 0..QUEUE_FRAMES + 10 {
            gw.receive(&frame);
        }
        let stats = gw.counters().snapshot();
        assert_eq!(stats.rx_frames, (QUEUE_FRAMES + 10) as u64);
        assert_eq!(stats.rx_queue_full, 10);
        assert_eq!(gw.poll_delay(Instant::from_millis(0)), Some(Duration::ZERO));
        poll_all(&mut gw, 1);
        assert_eq!(gw.poll_delay(Instant::from_millis(1)), None);
    }

    #[test]
    fn garbage_does_not_panic() {
        let mut gw = gateway();
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for round in 0..2000 {
            let len = (rng.next() % 200) as usize;
            let mut frame: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            // Half of them aimed at the gateway MAC so smoltcp parses further.
            if round % 2 == 0 && frame.len() >= 14 {
                frame[..6].copy_from_slice(&GW_MAC);
                frame[12..14].copy_from_slice(&[0x08, 0x00]);
            }
            gw.receive(&frame);
            poll_all(&mut gw, round);
        }
    }

    #[test]
    fn rejects_configs_smoltcp_would_panic_on() {
        let now = Instant::from_millis(0);
        let bad = |f: fn(&mut GatewayConfig)| {
            let mut cfg = config();
            f(&mut cfg);
            Gateway::new(&cfg, now).err()
        };
        assert!(matches!(
            bad(|c| c.mac = [0x03, 0, 0, 0, 0, 1]),
            Some(GatewayError::MacNotUnicast(_))
        ));
        assert!(matches!(
            bad(|c| c.ip = Ipv4Addr::UNSPECIFIED),
            Some(GatewayError::IpNotUnicast(_))
        ));
        assert!(matches!(
            bad(|c| c.ip = Ipv4Addr::new(224, 0, 0, 1)),
            Some(GatewayError::IpNotUnicast(_))
        ));
        assert!(matches!(
            bad(|c| c.prefix_len = 33),
            Some(GatewayError::BadPrefix(33))
        ));
        assert!(matches!(
            bad(|c| c.ip = Ipv4Addr::new(172, 17, 255, 255)),
            Some(GatewayError::NotHostAddress { .. })
        ));
        assert!(matches!(
            bad(|c| c.mtu = 10),
            Some(GatewayError::BadMtu(10))
        ));
    }
}
