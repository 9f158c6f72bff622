//! The NAT engine of one network: runs in the switch thread, owns the host
//! sockets of its flows and a smoltcp interface that terminates the
//! sandboxes' side of them. See the module documentation of
//! [`super`](crate::gateway::nat) for the design; this file is the I/O.
//!
//! Each host socket is registered in the engine's own epoll with a token
//! naming its flow slot and the slot's generation (a stale event for a
//! reused slot is ignored). The switch calls, in order:
//!
//! - [`NatEngine::receive`] for each gateway frame (it says whether the
//!   frame was egress and taken; fragments are reassembled first, see
//!   [`super::reassembly`]);
//! - [`NatEngine::service_host`] when the engine's epoll fd is readable;
//! - [`NatEngine::poll`] after every batch, which runs smoltcp, moves bytes
//!   between smoltcp sockets and host sockets, expires flows and hands the
//!   frames for the sandboxes to a callback;
//! - [`NatEngine::poll_delay`] to bound its epoll wait;
//! - [`NatEngine::forget_sandbox`] when a port goes away, so a dead
//!   sandbox's flows (and their fds) go with it;
//! - [`NatEngine::add_forward`] and [`NatEngine::remove_forward`] for
//!   published ports, whose listeners share the engine's epoll (their
//!   tokens have [`FORWARD_TOKEN`] set).
//!
//! Epoll interest follows back-pressure: `EPOLLIN` only while the smoltcp
//! socket has room, `EPOLLOUT` only while a host write is blocked, and a
//! host socket with no interest left is taken out of epoll altogether (a
//! level-triggered `EPOLLHUP` would otherwise wake the thread forever).

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{
    IpAddr, Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket,
};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::socket::{
    self, sockopt, AddressFamily, SockFlag, SockProtocol, SockType, SockaddrIn,
};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Checksum, Device, DeviceCapabilities, Medium};
use smoltcp::socket::{tcp, udp};
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, HardwareAddress, Icmpv4DstUnreachable,
    Icmpv4Packet, Icmpv4Repr, IpAddress, IpCidr, IpEndpoint, IpListenEndpoint, IpProtocol,
    Ipv4Packet,
};
use tracing::{debug, trace};

use super::budget::{self, Charges, Sizes, TCP_BULK, TCP_FULL, TCP_SMALL, UDP_FULL, UDP_SMALL};
use super::policy::{self, FlowCounts, FlowKey, Link};
use super::reassembly::{self, Reassembler};
use super::{
    container_subnets, ForwardId, ForwardSpec, NatCounters, NetworkNat, Transport, CONNECT_TIMEOUT,
    FORWARD_PENDING, ICMP_IDLE, UDP_IDLE,
};
use crate::gateway::GatewayConfig;
use crate::switch::vnet::{self, Offload};

/// Most packets smoltcp may emit before the switch takes them.
const TX_PACKETS: usize = 1024;
/// Most crafted frames (RST, ICMP) waiting for the switch.
const OUT_FRAMES: usize = 256;
/// Most host events handled per wakeup.
const HOST_EVENTS: usize = 256;
/// Most datagrams read from one host UDP or ICMP socket per wakeup.
const DATAGRAMS_PER_WAKEUP: usize = 64;
/// Most reads or writes per TCP flow per pump.
const IO_PER_PUMP: usize = 16;
/// Rounds of smoltcp poll + pump per [`NatEngine::poll`].
const POLL_ROUNDS: usize = 4;
/// How often flows are checked for expiry.
const EXPIRE_EVERY: Duration = Duration::from_secs(1);
/// Packets of each smoltcp UDP socket buffer (of one with small buffers:
/// see [`budget`]).
const UDP_PACKETS: usize = 64;
const UDP_SMALL_PACKETS: usize = 16;
/// smoltcp's retransmission give-up and keep-alive on the sandbox side.
const TCP_TIMEOUT: Duration = Duration::from_secs(180);
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);
/// Bit set in the epoll tokens of forward listeners (flow tokens keep
/// their generation to 31 bits, so they never have it).
const FORWARD_TOKEN: u64 = 1 << 63;
/// Most clients accepted (or datagrams read) per listener per wakeup.
const ACCEPTS_PER_WAKEUP: usize = 64;
/// Host loopback clients of published ports that must be given another
/// source port get one from here.
const REMAP_PORTS: std::ops::Range<u16> = 32768..61000;
/// Room before each packet smoltcp emits, for the virtio-net header and the
/// Ethernet header: the frame leaves in the buffer smoltcp wrote it into.
const ROOM: usize = vnet::HDR_LEN + ETH_HLEN;
const ETH_HLEN: usize = 14;
/// Bytes cleared at the start of each emitted packet (the longest IPv4
/// and TCP headers): buffers are reused without zeroing, and the option
/// padding smoltcp skips must not carry an earlier packet's bytes.
const HEADER_CLEAR: usize = 120;
/// Spare packet buffers kept for reuse.
const POOL_BUFFERS: usize = 16;
/// Closed bulk TCP sockets kept for the next flows (see
/// [`NatEngine::take_tcp_socket`]); they keep their daemon-wide charge.
const SPARE_BULK_SOCKETS: usize = 4;
/// TCP timestamps option, as it counts against a segment's size.
const TIMESTAMPS_LEN: usize = 12;

/// See the module documentation.
pub struct NatEngine {
    net: NetworkNat,
    gateway_ip: Ipv4Addr,
    own_subnet: Ipv4Net,
    gateway_mac: EthernetAddress,
    /// The network's IP MTU.
    mtu: usize,
    iface: Interface,
    device: IpDevice,
    sockets: SocketSet<'static>,
    epoll: Epoll,
    slots: Vec<Slot>,
    free: Vec<usize>,
    tcp_index: HashMap<FlowKey, usize>,
    udp_index: HashMap<FlowKey, usize>,
    ping_index: HashMap<(Ipv4Addr, u16, Ipv4Addr), usize>,
    /// smoltcp UDP socket per outside endpoint, and how many flows use it.
    udp_binds: HashMap<(Ipv4Addr, u16), UdpBind>,
    counts: FlowCounts,
    /// Bytes of buffers each sandbox address holds (see [`budget`]).
    charges: Charges,
    /// MAC of each sandbox address with live flows (anti-spoofed upstream).
    macs: HashMap<Ipv4Addr, EthernetAddress>,
    /// Crafted frames for the switch.
    out: VecDeque<Vec<u8>>,
    scratch: Vec<u8>,
    datagram: Vec<u8>,
    subnets_generation: u64,
    subnets: Vec<Ipv4Net>,
    counters: Arc<NatCounters>,
    start: Instant,
    last_expire: Instant,
    /// Published ports served by this engine.
    forwards: HashMap<ForwardId, Forward>,
    next_forward: ForwardId,
    /// UDP forward flows by (forward, real client address).
    forward_udp: HashMap<(ForwardId, SocketAddr), usize>,
    /// Closed smoltcp sockets with a [`TCP_BULK_BUFFER`], for reuse.
    spare_bulk: Vec<tcp::Socket<'static>>,
    /// Fragments from sandboxes, until their datagrams are whole.
    reassembly: Reassembler,
    /// The last datagram the reassembly completed (its buffer, reused).
    whole: Vec<u8>,
}

/// The smoltcp UDP socket of one outside endpoint, shared by its flows.
struct UdpBind {
    handle: SocketHandle,
    /// Flows using it.
    users: usize,
    /// The sandbox whose flow made it, charged for its buffers until it
    /// goes (even if that flow ends first: at most [`UDP_IDLE`] more).
    payer: Ipv4Addr,
    sizes: Sizes,
}

/// A published port: its host listener and where its clients go.
struct Forward {
    listener: Listener,
    target: SocketAddrV4,
    mac: EthernetAddress,
    /// TCP flows whose handshake with the sandbox is under way.
    pending: usize,
    /// The listener is out of epoll because `pending` hit the bound.
    paused: bool,
}

enum Listener {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

impl Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Listener::Tcp(l) => l.as_fd(),
            Listener::Udp(u) => u.as_fd(),
        }
    }
}

struct Slot {
    generation: u32,
    flow: Option<Flow>,
}

enum Flow {
    Tcp(TcpFlow),
    Udp(UdpFlow),
    Ping(PingFlow),
}

impl Flow {
    fn source(&self) -> Ipv4Addr {
        match self {
            Flow::Tcp(f) => f.key.src.0,
            Flow::Udp(f) => f.key.src.0,
            Flow::Ping(f) => f.src,
        }
    }
}

struct TcpFlow {
    key: FlowKey,
    stream: TcpStream,
    started: Instant,
    /// The held SYN (an IPv4 packet) while the host connect runs.
    syn: Option<Vec<u8>>,
    handle: Option<SocketHandle>,
    interest: EpollFlags,
    registered: bool,
    /// The interest epoll has for the socket while `registered`.
    armed: EpollFlags,
    host_eof: bool,
    host_wr_shut: bool,
    host_dead: bool,
    write_blocked: bool,
    /// The host socket may have bytes (or EOF) to read: set by epoll,
    /// cleared by a read that drained it, so the pump never reads just to
    /// hear `EAGAIN`.
    readable: bool,
    /// The smoltcp socket was aborted; free it after its RST went out.
    aborting: bool,
    /// The published port this flow came in through (`stream` is the
    /// accepted client), or `None` for egress.
    forward: Option<ForwardId>,
    /// A forward flow's handshake with the sandbox completed.
    connected: bool,
    /// The smoltcp socket has a [`super::TCP_BULK_BUFFER`] (one of the
    /// daemon's [`super::BULK_FLOWS`]).
    bulk: bool,
    /// The sizes of its smoltcp buffers, charged to its sandbox and the
    /// daemon from the SYN on (see [`budget`]).
    buffers: Sizes,
}

impl TcpFlow {
    /// A flow over `stream` started at `started`, with buffers of these
    /// sizes reserved (`bulk`: one of the large send buffers): no smoltcp
    /// socket yet, no epoll interest, nothing seen from the host.
    fn new(
        key: FlowKey,
        stream: TcpStream,
        started: Instant,
        (buffers, bulk): (Sizes, bool),
    ) -> TcpFlow {
        TcpFlow {
            key,
            stream,
            started,
            syn: None,
            handle: None,
            interest: EpollFlags::empty(),
            registered: false,
            armed: EpollFlags::empty(),
            host_eof: false,
            host_wr_shut: false,
            host_dead: false,
            write_blocked: false,
            readable: true,
            aborting: false,
            forward: None,
            connected: false,
            bulk,
            buffers,
        }
    }
}

struct UdpFlow {
    key: FlowKey,
    out: UdpOut,
    last: Instant,
}

/// Where a UDP flow's datagrams from the sandbox go.
enum UdpOut {
    /// Egress: a host socket connected to the destination.
    Host(UdpSocket),
    /// A published port's client: `sendto` on the forward's listener.
    Forward(ForwardId, SocketAddr),
}

struct PingFlow {
    src: Ipv4Addr,
    ident: u16,
    dst: Ipv4Addr,
    socket: UdpSocket,
    last: Instant,
}

impl NatEngine {
    /// The engine of the network whose gateway is `gateway`, its smoltcp
    /// seeded at random (initial sequence numbers, ephemeral ports).
    pub fn new(net: NetworkNat, gateway: &GatewayConfig) -> io::Result<NatEngine> {
        use std::hash::BuildHasher;
        let seed = std::collections::hash_map::RandomState::new().hash_one(gateway.ip);
        NatEngine::with_seed(net, gateway, seed)
    }

    /// [`NatEngine::new`] with smoltcp's random seed given: the same inputs
    /// then give the same sequence numbers, which a fuzzer needs to get
    /// past a handshake. Never for a real network (predictable sequence
    /// numbers let an off-path host forge segments).
    pub fn with_seed(net: NetworkNat, gateway: &GatewayConfig, seed: u64) -> io::Result<NatEngine> {
        let own_subnet = Ipv4Net::new(gateway.ip, gateway.prefix_len)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?
            .trunc();
        // smoltcp emits whole packets up to 65535 bytes (a 65507-byte UDP
        // reply included); `emit_tx` fragments them to the network's MTU.
        // (smoltcp's own fragmenter would need a 64 KiB buffer inline in
        // every interface.)
        let mut device = IpDevice::new(policy::MAX_PACKET);
        let mut config = Config::new(HardwareAddress::Ip);
        config.random_seed = seed;
        let mut iface = Interface::new(config, &mut device, smoltcp::time::Instant::ZERO);
        iface.set_any_ip(true);
        iface.update_ip_addrs(|addrs| {
            let _ = addrs.push(IpCidr::new(IpAddress::Ipv4(gateway.ip), gateway.prefix_len));
        });
        iface
            .routes_mut()
            .add_default_ipv4_route(gateway.ip)
            .map_err(|_| io::Error::other("nat: cannot add the default route"))?;
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        let start = Instant::now();
        Ok(NatEngine {
            net,
            gateway_ip: gateway.ip,
            own_subnet,
            gateway_mac: EthernetAddress(gateway.mac),
            mtu: gateway.mtu,
            iface,
            device,
            sockets: SocketSet::new(Vec::new()),
            epoll,
            slots: Vec::new(),
            free: Vec::new(),
            tcp_index: HashMap::new(),
            udp_index: HashMap::new(),
            ping_index: HashMap::new(),
            udp_binds: HashMap::new(),
            counts: FlowCounts::default(),
            charges: Charges::default(),
            macs: HashMap::new(),
            out: VecDeque::new(),
            scratch: Vec::new(),
            datagram: vec![0u8; 65536],
            subnets_generation: u64::MAX,
            subnets: Vec::new(),
            counters: Arc::new(NatCounters::default()),
            start,
            last_expire: start,
            forwards: HashMap::new(),
            next_forward: 0,
            forward_udp: HashMap::new(),
            spare_bulk: Vec::new(),
            reassembly: Reassembler::new(reassembly::Limits::default()),
            whole: Vec::new(),
        })
    }

    /// The engine's epoll fd: readable when a host socket needs service.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.epoll.0.as_fd()
    }

    /// The counters, for the control plane.
    pub fn counters(&self) -> Arc<NatCounters> {
        Arc::clone(&self.counters)
    }

    /// [`NatEngine::receive_offload`] for a frame whose checksums are as
    /// written (nothing offloaded: a port without a virtio-net header).
    pub fn receive(&mut self, now: Instant, frame: &[u8]) -> bool {
        self.receive_offload(now, frame, Offload::None)
    }

    /// Take `frame` (from a sandbox, to the gateway MAC, source already
    /// checked by the switch) if it is egress: IPv4 to an address that is
    /// neither the gateway's nor in the network's own subnet. Returns false
    /// for frames the gateway must see; IPv4 with another version or a
    /// header shorter than 20 bytes is taken and dropped (and counted).
    /// `offload` is what the sandbox's
    /// kernel said of its transport checksum (see [`crate::switch::vnet`]):
    /// a trusted (partial or verified) one is taken as it is, any other is
    /// verified here, since the NAT's smoltcp interface does not verify TCP
    /// and UDP checksums.
    pub fn receive_offload(&mut self, now: Instant, frame: &[u8], offload: Offload) -> bool {
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            return false;
        };
        if eth.ethertype() != EthernetProtocol::Ipv4 {
            return false;
        }
        let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
            return false;
        };
        // The switch refuses these from sandboxes already; the engine does
        // not lean on that (smoltcp's length check lets a header length of
        // 0 through, and everything below reads the header).
        if ip.version() != 4 || ip.header_len() < 20 {
            self.counters.dropped.fetch_add(1, Relaxed);
            return true;
        }
        let dst = ip.dst_addr();
        let fragment = ip.more_frags() || ip.frag_offset() != 0;
        if dst == self.gateway_ip {
            // Replies to host loopback clients of published ports, which
            // appear to come from the gateway's address; and, under
            // `host-loopback=gateway`, TCP and UDP to the host's loopback.
            // A later fragment has no ports: it is ours if its first was.
            let ours = if ip.frag_offset() != 0 {
                self.reassembly.holds(&ip)
            } else {
                self.claims(&ip) || self.gateway_loopback_takes(&ip)
            };
            if !ours {
                return self.gateway_unreachable(&eth, &ip);
            }
        } else if self.own_subnet.contains(&dst) || dst.is_broadcast() || dst.is_multicast() {
            return false;
        }
        if !self.sandbox_address(ip.src_addr()) {
            // Again the switch's anti-spoofing stops these first; smoltcp
            // would answer 0.0.0.0 with an assertion.
            self.counters.dropped.fetch_add(1, Relaxed);
            trace!(src = %ip.src_addr(), "nat: source no sandbox can have, dropped");
            return true;
        }
        let mac = eth.src_addr();
        // Ethernet padding is not part of the packet.
        let len = usize::from(ip.total_len());
        let Some(packet) = eth.payload().get(..len) else {
            return false;
        };
        if fragment {
            self.fragment_in(now, mac, packet);
        } else {
            self.transport_in(now, mac, packet, offload.trusted());
        }
        true
    }

    /// A whole IPv4 packet from a sandbox, to its protocol's path.
    /// `trusted`: the sandbox's kernel vouched for its transport checksum.
    fn transport_in(&mut self, now: Instant, mac: EthernetAddress, packet: &[u8], trusted: bool) {
        let ip = Ipv4Packet::new_unchecked(packet);
        match ip.next_header() {
            IpProtocol::Tcp => self.tcp_in(now, mac, packet, trusted),
            IpProtocol::Udp => self.udp_in(now, mac, packet, trusted),
            IpProtocol::Icmp => self.icmp_in(now, mac, packet),
            _ => {
                self.counters.dropped.fetch_add(1, Relaxed);
                trace!(protocol = %ip.next_header(), "nat: unsupported protocol dropped");
            }
        }
    }

    /// A fragment from a sandbox: into the engine's own reassembly (see
    /// [`reassembly`]); a datagram it completes takes the path of any
    /// whole packet, its checksum verified (no kernel vouches for a
    /// reassembled one).
    fn fragment_in(&mut self, now: Instant, mac: EthernetAddress, packet: &[u8]) {
        let ip = Ipv4Packet::new_unchecked(packet);
        self.counters.fragments.fetch_add(1, Relaxed);
        if !matches!(
            ip.next_header(),
            IpProtocol::Tcp | IpProtocol::Udp | IpProtocol::Icmp
        ) {
            self.counters.fragments_bad.fetch_add(1, Relaxed);
            return;
        }
        let mut whole = std::mem::take(&mut self.whole);
        match self.reassembly.push(now, &ip, &mut whole) {
            reassembly::Push::Pending => {}
            reassembly::Push::Bad => {
                self.counters.fragments_bad.fetch_add(1, Relaxed);
                trace!(src = %ip.src_addr(), "nat: bad fragment, datagram dropped");
            }
            reassembly::Push::Complete => {
                self.counters.reassembled.fetch_add(1, Relaxed);
                self.transport_in(now, mac, &whole, false);
            }
        }
        self.whole = whole;
        self.count_given_up();
    }

    /// Count the datagrams the reassembly gave up since the last time.
    fn count_given_up(&mut self) {
        let n = self.reassembly.take_given_up();
        if n > 0 {
            self.counters.reassembly_dropped.fetch_add(n, Relaxed);
            trace!(n, "nat: incomplete datagrams given up");
        }
    }

    /// Handle the host sockets that epoll reports ready.
    pub fn service_host(&mut self, now: Instant) {
        let mut events = [EpollEvent::empty(); HOST_EVENTS];
        let n = match self.epoll.wait(&mut events, EpollTimeout::ZERO) {
            Ok(n) => n,
            Err(e) => {
                debug!(error = %e, "nat: epoll_wait failed");
                return;
            }
        };
        for event in &events[..n] {
            let token = event.data();
            if token & FORWARD_TOKEN != 0 {
                self.forward_ready(now, (token & 0xffff_ffff) as ForwardId);
                continue;
            }
            let slot = (token & 0xffff_ffff) as usize;
            let generation = (token >> 32) as u32;
            if self.slots.get(slot).map(|s| s.generation & GENERATION_MASK) != Some(generation) {
                continue;
            }
            self.host_ready(now, slot, event.events());
        }
    }

    /// Run smoltcp, move bytes, expire flows, and hand every frame for a
    /// sandbox to `emit`: the slice starts with [`vnet::HDR_LEN`] bytes of
    /// room for the switch's virtio-net header, then the Ethernet frame,
    /// with its transport checksum in the state the [`Offload`] says (TCP
    /// segments leave with a partial checksum; see [`crate::switch::vnet`]).
    pub fn poll(&mut self, now: Instant, emit: &mut dyn FnMut(&mut [u8], Offload)) {
        if now.saturating_duration_since(self.last_expire) >= EXPIRE_EVERY {
            self.last_expire = now;
            self.expire(now);
            self.reassembly.expire(now);
            self.count_given_up();
        }
        for _ in 0..POLL_ROUNDS {
            self.iface_poll(now);
            // Before the pump, which may free flows (and forget their
            // sandbox's MAC) whose last packets smoltcp just sent.
            self.emit_tx(emit);
            self.drain_udp(now);
            let again = self.pump();
            if !again {
                break;
            }
        }
        while let Some(frame) = self.out.pop_front() {
            self.scratch.clear();
            self.scratch.resize(vnet::HDR_LEN, 0);
            self.scratch.extend_from_slice(&frame);
            emit(&mut self.scratch, Offload::None);
        }
    }

    /// How long until [`NatEngine::poll`] must run again.
    pub fn poll_delay(&mut self, now: Instant) -> Option<Duration> {
        if !self.out.is_empty() || !self.device.tx.is_empty() {
            return Some(Duration::ZERO);
        }
        let smol = self
            .iface
            .poll_delay(self.smol_now(now), &self.sockets)
            .map(|d| Duration::from_micros(d.total_micros()));
        let expire = (self.slots.len() > self.free.len() || !self.reassembly.is_empty())
            .then(|| EXPIRE_EVERY.saturating_sub(now.saturating_duration_since(self.last_expire)));
        match (smol, expire) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Free every flow of `sandbox` (its port went away).
    pub fn forget_sandbox(&mut self, sandbox: Ipv4Addr) {
        let slots: Vec<usize> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.flow.as_ref().is_some_and(|f| f.source() == sandbox))
            .map(|(i, _)| i)
            .collect();
        for slot in slots {
            self.free_flow(slot, true);
        }
        self.reassembly.forget_source(sandbox);
        self.macs.remove(&sandbox);
        let forwards: Vec<ForwardId> = self
            .forwards
            .iter()
            .filter(|(_, f)| *f.target.ip() == sandbox)
            .map(|(&id, _)| id)
            .collect();
        for id in forwards {
            self.remove_forward(id);
        }
    }

    // ---- published ports -------------------------------------------------

    /// Serve a published port: from now on the engine accepts on
    /// `spec.listener` and forwards each client to `spec.target`.
    pub fn add_forward(&mut self, spec: ForwardSpec) -> io::Result<ForwardId> {
        let listener = match spec.transport {
            Transport::Tcp => {
                let l = TcpListener::from(spec.listener);
                l.set_nonblocking(true)?;
                Listener::Tcp(l)
            }
            Transport::Udp => {
                let u = UdpSocket::from(spec.listener);
                u.set_nonblocking(true)?;
                Listener::Udp(u)
            }
        };
        let id = self.next_forward;
        self.next_forward = self.next_forward.wrapping_add(1);
        let event = EpollEvent::new(EpollFlags::EPOLLIN, FORWARD_TOKEN | u64::from(id));
        self.epoll.add(listener.as_fd(), event)?;
        self.forwards.insert(
            id,
            Forward {
                listener,
                target: spec.target,
                mac: EthernetAddress(spec.sandbox_mac),
                pending: 0,
                paused: false,
            },
        );
        self.counters.forwards.fetch_add(1, Relaxed);
        debug!(id, target = %spec.target, transport = ?spec.transport, "nat: forward added");
        Ok(id)
    }

    /// Stop serving a published port: its listener is closed and every
    /// flow of it reset. Unknown ids are ignored; returns whether it was
    /// there.
    pub fn remove_forward(&mut self, id: ForwardId) -> bool {
        let Some(forward) = self.forwards.remove(&id) else {
            return false;
        };
        let slots: Vec<usize> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| match &s.flow {
                Some(Flow::Tcp(f)) => f.forward == Some(id),
                Some(Flow::Udp(f)) => matches!(f.out, UdpOut::Forward(fid, _) if fid == id),
                _ => false,
            })
            .map(|(i, _)| i)
            .collect();
        for slot in slots {
            self.free_flow(slot, true);
        }
        if !forward.paused {
            let _ = self.epoll.delete(forward.listener.as_fd());
        }
        self.counters.forwards.fetch_sub(1, Relaxed);
        debug!(id, "nat: forward removed");
        true
    }

    /// A forward's listener is readable: accept clients or read datagrams.
    fn forward_ready(&mut self, now: Instant, id: ForwardId) {
        let Some(forward) = self.forwards.get(&id) else {
            return;
        };
        match &forward.listener {
            Listener::Tcp(_) => self.accept_tcp(now, id),
            Listener::Udp(_) => self.forward_datagrams(now, id),
        }
    }

    fn accept_tcp(&mut self, now: Instant, id: ForwardId) {
        for _ in 0..ACCEPTS_PER_WAKEUP {
            let Some(forward) = self.forwards.get_mut(&id) else {
                return;
            };
            if forward.pending >= FORWARD_PENDING {
                // Clients wait in the kernel's backlog until handshakes
                // finish (`resume_forwards`).
                let _ = self.epoll.delete(forward.listener.as_fd());
                forward.paused = true;
                return;
            }
            let Listener::Tcp(listener) = &forward.listener else {
                return;
            };
            let (stream, peer) = match listener.accept() {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    // EMFILE and friends: the client stays queued; try
                    // again at the next wakeup.
                    debug!(error = %e, "nat: accept failed");
                    return;
                }
            };
            let (target, mac) = (forward.target, forward.mac);
            self.counters.forward_accepted.fetch_add(1, Relaxed);
            if self
                .open_forward_tcp(now, id, stream, peer, target, mac)
                .is_err()
            {
                self.counters.forward_refused.fetch_add(1, Relaxed);
            }
        }
    }

    /// A TCP flow for an accepted client: a smoltcp socket that connects
    /// from the client's address to the sandbox. On error the client is
    /// reset (the stream dropped with `SO_LINGER` 0).
    fn open_forward_tcp(
        &mut self,
        now: Instant,
        id: ForwardId,
        stream: TcpStream,
        peer: SocketAddr,
        target: SocketAddrV4,
        mac: EthernetAddress,
    ) -> Result<(), ()> {
        let reset = |stream: &TcpStream| {
            let _ = socket::setsockopt(
                stream,
                sockopt::Linger,
                &nix::libc::linger {
                    l_onoff: 1,
                    l_linger: 0,
                },
            );
        };
        let Some(client) = self.client_source(peer, *target.ip(), target.port(), Transport::Tcp)
        else {
            trace!(%peer, "nat: no source for a forwarded client");
            reset(&stream);
            return Err(());
        };
        let key = FlowKey {
            src: (*target.ip(), target.port()),
            dst: client,
        };
        if stream.set_nonblocking(true).is_err() || !self.take_flow(key.src.0) {
            self.counters.limited.fetch_add(1, Relaxed);
            reset(&stream);
            return Err(());
        }
        let Some(reserved) = self.reserve_tcp(key.src.0) else {
            self.release_flow(key.src.0);
            reset(&stream);
            return Err(());
        };
        if reserved.0 == TCP_SMALL {
            small_host_buffers(stream.as_fd());
        }
        let mut sock = self.take_tcp_socket(reserved.0);
        // Timestamps from one clock: a new connection on the 4-tuple of one
        // the sandbox still holds in TIME_WAIT (a host client port reused)
        // is accepted by its kernel, where a random ISN alone would be
        // refused half the time (and retried after a second).
        sock.set_tsval_generator(Some(forward_tsval));
        let local = IpListenEndpoint {
            addr: Some(IpAddress::Ipv4(client.0)),
            port: client.1,
        };
        let remote = IpEndpoint::new(IpAddress::Ipv4(key.src.0), key.src.1);
        if sock.connect(self.iface.context(), remote, local).is_err() {
            self.release_buffers(key.src.0, reserved, false);
            self.release_flow(key.src.0);
            reset(&stream);
            return Err(());
        }
        let _ = stream.set_nodelay(true);
        self.macs.insert(key.src.0, mac);
        let handle = self.sockets.add(sock);
        let slot = self.insert(Flow::Tcp(TcpFlow {
            handle: Some(handle),
            forward: Some(id),
            ..TcpFlow::new(key, stream, now, reserved)
        }));
        self.tcp_index.insert(key, slot);
        self.counters.tcp_flows.fetch_add(1, Relaxed);
        self.counters.forward_flows.fetch_add(1, Relaxed);
        if let Some(fw) = self.forwards.get_mut(&id) {
            fw.pending += 1;
        }
        trace!(%peer, ?key, "nat: forwarded client connecting");
        Ok(())
    }

    /// Datagrams from clients of a UDP forward: each client address gets
    /// its own flow, so the sandbox's replies go back to it alone.
    fn forward_datagrams(&mut self, now: Instant, id: ForwardId) {
        for _ in 0..DATAGRAMS_PER_WAKEUP {
            let Some(Forward {
                listener: Listener::Udp(socket),
                target,
                mac,
                ..
            }) = self.forwards.get(&id)
            else {
                return;
            };
            let (target, mac) = (*target, *mac);
            let (n, peer) = match socket.recv_from(&mut self.datagram) {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    // ICMP errors from earlier sends surface here; skip.
                    trace!(error = %e, "nat: forward recv failed");
                    continue;
                }
            };
            let slot = match self.forward_udp.get(&(id, peer)).copied() {
                Some(slot) => slot,
                None => match self.open_forward_udp(now, id, peer, target, mac) {
                    Some(slot) => slot,
                    None => {
                        self.counters.forward_refused.fetch_add(1, Relaxed);
                        self.counters.dropped.fetch_add(1, Relaxed);
                        continue;
                    }
                },
            };
            let Some(Flow::Udp(f)) = &mut self.slots[slot].flow else {
                continue;
            };
            f.last = now;
            let key = f.key;
            let Some(handle) = self.udp_binds.get(&key.dst).map(|b| b.handle) else {
                continue;
            };
            let mut meta =
                udp::UdpMetadata::from(IpEndpoint::new(IpAddress::Ipv4(key.src.0), key.src.1));
            meta.local_address = Some(IpAddress::Ipv4(key.dst.0));
            let sock = self.sockets.get_mut::<udp::Socket>(handle);
            if sock.send_slice(&self.datagram[..n], meta).is_ok() {
                self.counters.rx_bytes.fetch_add(n as u64, Relaxed);
            } else {
                self.counters.dropped.fetch_add(1, Relaxed);
            }
        }
    }

    fn open_forward_udp(
        &mut self,
        now: Instant,
        id: ForwardId,
        peer: SocketAddr,
        target: SocketAddrV4,
        mac: EthernetAddress,
    ) -> Option<usize> {
        let client = self.client_source(peer, *target.ip(), target.port(), Transport::Udp)?;
        let key = FlowKey {
            src: (*target.ip(), target.port()),
            dst: client,
        };
        if !self.take_flow(key.src.0) {
            self.counters.limited.fetch_add(1, Relaxed);
            return None;
        }
        if !self.bind_udp(key.dst, key.src.0) {
            self.release_flow(key.src.0);
            return None;
        }
        self.macs.insert(key.src.0, mac);
        let slot = self.insert(Flow::Udp(UdpFlow {
            key,
            out: UdpOut::Forward(id, peer),
            last: now,
        }));
        self.udp_index.insert(key, slot);
        self.forward_udp.insert((id, peer), slot);
        self.counters.udp_flows.fetch_add(1, Relaxed);
        self.counters.forward_flows.fetch_add(1, Relaxed);
        self.counters.forward_accepted.fetch_add(1, Relaxed);
        trace!(%peer, ?key, "nat: forwarded UDP client");
        Some(slot)
    }

    /// The address a forwarded client is shown to the sandbox as: its own,
    /// or, for the host's loopback (and IPv6, which the sandbox lacks), the
    /// gateway's address with the client's port where that is free.
    /// `None` when no free 4-tuple is found.
    fn client_source(
        &self,
        peer: SocketAddr,
        target: Ipv4Addr,
        target_port: u16,
        transport: Transport,
    ) -> Option<(Ipv4Addr, u16)> {
        let index = match transport {
            Transport::Tcp => &self.tcp_index,
            Transport::Udp => &self.udp_index,
        };
        let free = |src: (Ipv4Addr, u16)| {
            !index.contains_key(&FlowKey {
                src: (target, target_port),
                dst: src,
            })
        };
        let real = match peer.ip() {
            IpAddr::V4(ip) if !ip.is_loopback() && !ip.is_unspecified() => Some(ip),
            IpAddr::V6(ip) => ip
                .to_ipv4_mapped()
                .filter(|v4| !v4.is_loopback() && !v4.is_unspecified()),
            IpAddr::V4(_) => None,
        };
        if let Some(ip) = real {
            // The real client: never remapped (its port is part of what the
            // service sees); a clash is refused.
            return free((ip, peer.port())).then_some((ip, peer.port()));
        }
        // Never a port the gateway serves itself (DNS).
        let wanted = (self.gateway_ip, peer.port());
        if peer.port() != 53 && free(wanted) {
            return Some(wanted);
        }
        let span = REMAP_PORTS.end - REMAP_PORTS.start;
        let start = peer.port() % span;
        (0..span)
            .map(|i| REMAP_PORTS.start + (start + i) % span)
            .map(|port| (self.gateway_ip, port))
            .take(4096)
            .find(|&src| free(src))
    }

    /// Whether a packet to the gateway's own address belongs to a forward
    /// flow of a host loopback client (see [`NatEngine::client_source`]).
    fn claims(&self, ip: &Ipv4Packet<&[u8]>) -> bool {
        if ip.frag_offset() != 0 {
            return false;
        }
        let payload = ip.payload();
        if payload.len() < 4 {
            return false;
        }
        let port = |i: usize| u16::from_be_bytes([payload[i], payload[i + 1]]);
        let key = FlowKey {
            src: (ip.src_addr(), port(0)),
            dst: (ip.dst_addr(), port(2)),
        };
        match ip.next_header() {
            IpProtocol::Tcp => self.tcp_index.contains_key(&key),
            IpProtocol::Udp => self.udp_index.contains_key(&key),
            _ => false,
        }
    }

    /// Whether a packet to the gateway's own address is for the host's
    /// loopback (`host-loopback=gateway`): TCP and UDP, but not DNS when the
    /// gateway serves it there; ICMP stays with the gateway (it answers
    /// ping itself).
    fn gateway_loopback_takes(&self, ip: &Ipv4Packet<&[u8]>) -> bool {
        if !self.net.gateway_loopback {
            return false;
        }
        if !matches!(ip.next_header(), IpProtocol::Tcp | IpProtocol::Udp) {
            return false;
        }
        let payload = ip.payload();
        let dst_port = (ip.frag_offset() == 0 && payload.len() >= 4)
            .then(|| u16::from_be_bytes([payload[2], payload[3]]));
        !(self.net.dns_on_gateway && dst_port == Some(crate::gateway::dns::DNS_PORT))
    }

    /// Under `host-loopback=unreachable`: TCP to the gateway's own address
    /// is answered with ICMP network unreachable and UDP dropped (DNS on
    /// the gateway excepted), as slirp4netns with `--disable-host-loopback`
    /// answers (checked against slirp4netns 1.2: `connect` fails with
    /// ENETUNREACH, a UDP datagram gets no answer). True when it took the
    /// packet.
    fn gateway_unreachable(&mut self, eth: &EthernetFrame<&[u8]>, ip: &Ipv4Packet<&[u8]>) -> bool {
        if !self.net.gateway_unreachable || ip.frag_offset() != 0 {
            return false;
        }
        let payload = ip.payload();
        let dst_port = (payload.len() >= 4).then(|| u16::from_be_bytes([payload[2], payload[3]]));
        if self.net.dns_on_gateway && dst_port == Some(crate::gateway::dns::DNS_PORT) {
            return false;
        }
        if !self.sandbox_address(ip.src_addr()) {
            return false;
        }
        match ip.next_header() {
            IpProtocol::Tcp => {
                self.counters.prohibited.fetch_add(1, Relaxed);
                let link = self.link(eth.src_addr());
                let len = usize::from(ip.total_len()).min(eth.payload().len());
                let packet = &eth.payload()[..len];
                self.craft(|out| {
                    policy::icmp_unreachable(
                        link,
                        Icmpv4DstUnreachable::NetUnreachable,
                        packet,
                        out,
                    )
                });
                true
            }
            IpProtocol::Udp => {
                self.counters.prohibited.fetch_add(1, Relaxed);
                true
            }
            _ => false,
        }
    }

    /// Whether `src` is an address a sandbox of this network can have: in
    /// the subnet, and none of the addresses the IPAM never hands out (the
    /// gateway's, the subnet's network and broadcast addresses).
    fn sandbox_address(&self, src: Ipv4Addr) -> bool {
        let net = self.own_subnet;
        net.contains(&src)
            && src != self.gateway_ip
            && src != net.network()
            && src != net.broadcast()
    }

    /// Put paused listeners back into epoll once their handshakes drained.
    fn resume_forwards(&mut self) {
        for (&id, fw) in &mut self.forwards {
            if fw.paused && fw.pending < FORWARD_PENDING {
                let event = EpollEvent::new(EpollFlags::EPOLLIN, FORWARD_TOKEN | u64::from(id));
                if self.epoll.add(fw.listener.as_fd(), event).is_ok() {
                    fw.paused = false;
                }
            }
        }
    }

    // ---- ingress ---------------------------------------------------------

    /// A whole TCP segment (never a fragment: see
    /// [`NatEngine::fragment_in`]).
    fn tcp_in(&mut self, now: Instant, mac: EthernetAddress, packet: &[u8], trusted: bool) {
        let ip = Ipv4Packet::new_unchecked(packet);
        let Ok(tcp) = smoltcp::wire::TcpPacket::new_checked(ip.payload()) else {
            self.counters.malformed.fetch_add(1, Relaxed);
            trace!("nat: TCP header does not parse, dropped");
            return;
        };
        if !trusted && !tcp.verify_checksum(&ip.src_addr().into(), &ip.dst_addr().into()) {
            self.counters.dropped.fetch_add(1, Relaxed);
            trace!("nat: TCP checksum wrong, dropped");
            return;
        }
        if tcp.src_port() == 0 || tcp.dst_port() == 0 || (tcp.syn() && tcp.fin()) {
            // No host takes these (a connect to port 0 is refused, Linux
            // discards SYN+FIN): not worth a host socket each.
            self.counters.malformed.fetch_add(1, Relaxed);
            trace!(
                src_port = tcp.src_port(),
                dst_port = tcp.dst_port(),
                "nat: TCP to or from port 0, or SYN with FIN, dropped"
            );
            return;
        }
        let key = FlowKey {
            src: (ip.src_addr(), tcp.src_port()),
            dst: (ip.dst_addr(), tcp.dst_port()),
        };
        let link = self.link(mac);
        if let Some(&slot) = self.tcp_index.get(&key) {
            let Some(Flow::Tcp(f)) = &self.slots[slot].flow else {
                return;
            };
            // While the host connect runs, the SYN is held and
            // retransmissions are dropped.
            let Some(handle) = f.handle else {
                return;
            };
            let state = self.sockets.get::<tcp::Socket>(handle).state();
            if state == tcp::State::SynReceived {
                if tcp.rst() {
                    // smoltcp would put the socket back to LISTEN, where it
                    // could take another flow's SYN: end the flow here.
                    self.free_flow(slot, true);
                    return;
                }
                if tcp.syn() {
                    // smoltcp retransmits its SYN-ACK by itself.
                    return;
                }
            }
            self.feed(now, packet);
            return;
        }
        if tcp.rst() {
            return;
        }
        if !tcp.syn() || tcp.ack() {
            // Not part of any flow: refused as a kernel would.
            self.craft(|out| policy::tcp_rst_for_syn(link, packet, out));
            return;
        }
        let host_ip = match self.destination(key.dst.0) {
            Ok(ip) => ip,
            Err(refusal) => {
                self.prohibit(link, packet, refusal);
                return;
            }
        };
        if !self.take_flow(key.src.0) {
            self.counters.limited.fetch_add(1, Relaxed);
            trace!(src = %key.src.0, "nat: flow limit, SYN refused");
            self.craft(|out| policy::tcp_rst_for_syn(link, packet, out));
            return;
        }
        let Some(reserved) = self.reserve_tcp(key.src.0) else {
            self.release_flow(key.src.0);
            trace!(src = %key.src.0, "nat: buffer budget, SYN refused");
            self.craft(|out| policy::tcp_rst_for_syn(link, packet, out));
            return;
        };
        let small = reserved.0 == TCP_SMALL;
        let addr = SocketAddrV4::new(host_ip, key.dst.1);
        let stream = match connect_nonblocking(addr, self.net.outbound, small) {
            Ok(stream) => stream,
            Err(e) => {
                self.release_buffers(key.src.0, reserved, false);
                self.release_flow(key.src.0);
                self.connect_failed(link, packet, &e);
                return;
            }
        };
        self.macs.insert(key.src.0, mac);
        let flow = Flow::Tcp(TcpFlow {
            syn: Some(packet.to_vec()),
            interest: EpollFlags::EPOLLOUT,
            ..TcpFlow::new(key, stream, now, reserved)
        });
        let slot = self.insert(flow);
        self.tcp_index.insert(key, slot);
        self.counters.tcp_flows.fetch_add(1, Relaxed);
        self.sync_interest(slot);
        trace!(?key, "nat: connecting");
    }

    /// A whole UDP datagram (never a fragment).
    fn udp_in(&mut self, now: Instant, mac: EthernetAddress, packet: &[u8], trusted: bool) {
        let ip = Ipv4Packet::new_unchecked(packet);
        let payload = ip.payload();
        if payload.len() < 8 {
            self.counters.dropped.fetch_add(1, Relaxed);
            return;
        }
        if !trusted {
            let ok = smoltcp::wire::UdpPacket::new_checked(payload)
                .is_ok_and(|u| u.verify_checksum(&ip.src_addr().into(), &ip.dst_addr().into()));
            if !ok {
                self.counters.dropped.fetch_add(1, Relaxed);
                trace!("nat: UDP checksum wrong, dropped");
                return;
            }
        }
        let port = |i: usize| u16::from_be_bytes([payload[i], payload[i + 1]]);
        if port(0) == 0 || port(2) == 0 {
            self.counters.malformed.fetch_add(1, Relaxed);
            trace!("nat: UDP to or from port 0, dropped");
            return;
        }
        let key = FlowKey {
            src: (ip.src_addr(), port(0)),
            dst: (ip.dst_addr(), port(2)),
        };
        if let Some(&slot) = self.udp_index.get(&key) {
            if let Some(Flow::Udp(f)) = &mut self.slots[slot].flow {
                f.last = now;
            }
            self.feed(now, packet);
            return;
        }
        let link = self.link(mac);
        let host_ip = match self.destination(key.dst.0) {
            Ok(ip) => ip,
            Err(refusal) => {
                self.prohibit(link, packet, refusal);
                return;
            }
        };
        if key.src.1 == 0 || key.dst.1 == 0 {
            self.counters.dropped.fetch_add(1, Relaxed);
            return;
        }
        if !self.take_flow(key.src.0) {
            self.counters.limited.fetch_add(1, Relaxed);
            self.counters.dropped.fetch_add(1, Relaxed);
            return;
        }
        let socket = match udp_connect(SocketAddrV4::new(host_ip, key.dst.1), self.net.outbound) {
            Ok(s) => s,
            Err(e) => {
                self.release_flow(key.src.0);
                self.counters.unreachable.fetch_add(1, Relaxed);
                debug!(dst = %key.dst.0, error = %e, "nat: UDP socket failed");
                self.craft(|out| {
                    policy::icmp_unreachable(
                        link,
                        Icmpv4DstUnreachable::HostUnreachable,
                        packet,
                        out,
                    )
                });
                return;
            }
        };
        if !self.bind_udp(key.dst, key.src.0) {
            self.release_flow(key.src.0);
            self.counters.dropped.fetch_add(1, Relaxed);
            return;
        }
        self.macs.insert(key.src.0, mac);
        let slot = self.insert(Flow::Udp(UdpFlow {
            key,
            out: UdpOut::Host(socket),
            last: now,
        }));
        self.udp_index.insert(key, slot);
        self.counters.udp_flows.fetch_add(1, Relaxed);
        self.counters.udp_opened.fetch_add(1, Relaxed);
        if let Some(Flow::Udp(UdpFlow {
            out: UdpOut::Host(socket),
            ..
        })) = &self.slots[slot].flow
        {
            let event = EpollEvent::new(EpollFlags::EPOLLIN, token(slot, &self.slots));
            if let Err(e) = self.epoll.add(socket.as_fd(), event) {
                debug!(error = %e, "nat: epoll add failed");
            }
        }
        self.feed(now, packet);
    }

    /// A whole ICMP message (never a fragment).
    fn icmp_in(&mut self, now: Instant, mac: EthernetAddress, packet: &[u8]) {
        let ip = Ipv4Packet::new_unchecked(packet);
        let Ok(icmp) = Icmpv4Packet::new_checked(ip.payload()) else {
            self.counters.dropped.fetch_add(1, Relaxed);
            return;
        };
        let Ok(Icmpv4Repr::EchoRequest {
            ident,
            seq_no,
            data,
        }) = Icmpv4Repr::parse(&icmp, &Default::default())
        else {
            // Only echo is re-originated; other ICMP from sandboxes dies here.
            self.counters.dropped.fetch_add(1, Relaxed);
            return;
        };
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let link = self.link(mac);
        let host_ip = match self.destination(dst) {
            Ok(ip) => ip,
            Err(refusal) => {
                self.prohibit(link, packet, refusal);
                return;
            }
        };
        if !self.net.nat.ping_allowed() {
            self.net.nat.warn_ping_once();
            self.counters.ping_prohibited.fetch_add(1, Relaxed);
            self.craft(|out| {
                policy::icmp_unreachable(link, Icmpv4DstUnreachable::CommProhibited, packet, out)
            });
            return;
        }
        let slot = match self.ping_index.get(&(src, ident, dst)) {
            Some(&slot) => slot,
            None => {
                if !self.take_flow(src) {
                    self.counters.limited.fetch_add(1, Relaxed);
                    self.counters.dropped.fetch_add(1, Relaxed);
                    return;
                }
                let socket = match ping_connect(host_ip, self.net.outbound) {
                    Ok(s) => s,
                    Err(e) => {
                        self.release_flow(src);
                        self.counters.dropped.fetch_add(1, Relaxed);
                        debug!(error = %e, "nat: ping socket failed");
                        return;
                    }
                };
                self.macs.insert(src, mac);
                let slot = self.insert(Flow::Ping(PingFlow {
                    src,
                    ident,
                    dst,
                    socket,
                    last: now,
                }));
                self.ping_index.insert((src, ident, dst), slot);
                self.counters.icmp_flows.fetch_add(1, Relaxed);
                if let Some(Flow::Ping(f)) = &self.slots[slot].flow {
                    let event = EpollEvent::new(EpollFlags::EPOLLIN, token(slot, &self.slots));
                    if let Err(e) = self.epoll.add(f.socket.as_fd(), event) {
                        debug!(error = %e, "nat: epoll add failed");
                    }
                }
                slot
            }
        };
        let request = Icmpv4Repr::EchoRequest {
            ident,
            seq_no,
            data,
        };
        let mut bytes = vec![0u8; request.buffer_len()];
        request.emit(
            &mut Icmpv4Packet::new_unchecked(&mut bytes[..]),
            &Default::default(),
        );
        if let Some(Flow::Ping(f)) = &mut self.slots[slot].flow {
            f.last = now;
            match f.socket.send(&bytes) {
                Ok(n) => {
                    self.counters.tx_bytes.fetch_add(n as u64, Relaxed);
                }
                Err(e) => {
                    self.counters.dropped.fetch_add(1, Relaxed);
                    trace!(error = %e, "nat: ping send failed");
                }
            }
        }
    }

    // ---- host side -------------------------------------------------------

    fn host_ready(&mut self, now: Instant, slot: usize, events: EpollFlags) {
        let Some(flow) = self.slots[slot].flow.as_mut() else {
            return;
        };
        match flow {
            Flow::Tcp(f) if f.syn.is_some() => {
                let result = match f.stream.take_error() {
                    Ok(None) if events.contains(EpollFlags::EPOLLOUT) => Ok(()),
                    Ok(None) => return,
                    Ok(Some(e)) | Err(e) => Err(e),
                };
                let held = f.syn.take_if(|_| result.is_err());
                let mac = self.macs.get(&f.key.src.0).copied();
                match result {
                    Ok(()) => self.tcp_open(slot),
                    Err(e) => {
                        let syn = held;
                        self.free_flow(slot, false);
                        if let (Some(syn), Some(mac)) = (syn, mac) {
                            let link = self.link(mac);
                            self.connect_failed(link, &syn, &e);
                        }
                    }
                }
            }
            Flow::Tcp(f) => {
                if events.contains(EpollFlags::EPOLLOUT) {
                    f.write_blocked = false;
                }
                if events.intersects(
                    EpollFlags::EPOLLIN
                        | EpollFlags::EPOLLHUP
                        | EpollFlags::EPOLLRDHUP
                        | EpollFlags::EPOLLERR,
                ) {
                    f.readable = true;
                }
                // Reads happen in the pump, which runs right after.
            }
            Flow::Udp(f) => {
                let Some(handle) = self.udp_binds.get(&f.key.dst).map(|b| b.handle) else {
                    return;
                };
                let UdpOut::Host(socket) = &f.out else {
                    return;
                };
                let sock = self.sockets.get_mut::<udp::Socket>(handle);
                for _ in 0..DATAGRAMS_PER_WAKEUP {
                    match socket.recv(&mut self.datagram) {
                        Ok(n) => {
                            f.last = now;
                            let meta = udp::UdpMetadata::from(IpEndpoint::new(
                                IpAddress::Ipv4(f.key.src.0),
                                f.key.src.1,
                            ));
                            let mut meta = meta;
                            meta.local_address = Some(IpAddress::Ipv4(f.key.dst.0));
                            if sock.send_slice(&self.datagram[..n], meta).is_ok() {
                                self.counters.rx_bytes.fetch_add(n as u64, Relaxed);
                            } else {
                                self.counters.dropped.fetch_add(1, Relaxed);
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                            // The peer's ICMP port unreachable, passed on.
                            let key = f.key;
                            if let Some(&mac) = self.macs.get(&key.src.0) {
                                let link = Link {
                                    gateway: self.gateway_mac,
                                    sandbox: mac,
                                };
                                let quote = policy::udp_header_packet(key);
                                self.craft(|out| {
                                    policy::icmp_unreachable(
                                        link,
                                        Icmpv4DstUnreachable::PortUnreachable,
                                        &quote,
                                        out,
                                    )
                                });
                            }
                            break;
                        }
                        // Other ICMP errors from the peer surface here once;
                        // the sandbox retries or times out.
                        Err(_) => break,
                    }
                }
            }
            Flow::Ping(f) => {
                for _ in 0..DATAGRAMS_PER_WAKEUP {
                    match f.socket.recv(&mut self.datagram) {
                        Ok(n) => {
                            f.last = now;
                            let Ok(icmp) = Icmpv4Packet::new_checked(&self.datagram[..n]) else {
                                continue;
                            };
                            // The kernel checked the checksum and rewrote the
                            // identifier; only the type matters here.
                            let Ok(Icmpv4Repr::EchoReply { seq_no, data, .. }) = Icmpv4Repr::parse(
                                &icmp,
                                &smoltcp::phy::ChecksumCapabilities::ignored(),
                            ) else {
                                continue;
                            };
                            let Some(&mac) = self.macs.get(&f.src) else {
                                continue;
                            };
                            let reply = Icmpv4Repr::EchoReply {
                                ident: f.ident,
                                seq_no,
                                data,
                            };
                            let link = Link {
                                gateway: self.gateway_mac,
                                sandbox: mac,
                            };
                            if self.out.len() < OUT_FRAMES {
                                let mut frame = Vec::new();
                                policy::icmp_from(link, f.dst, f.src, &reply, &mut frame);
                                self.counters.rx_bytes.fetch_add(n as u64, Relaxed);
                                self.out.push_back(frame);
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(_) => break,
                    }
                }
            }
        }
    }

    /// The host connect of a TCP flow succeeded: listen on its destination
    /// and feed the held SYN, so smoltcp answers SYN-ACK.
    fn tcp_open(&mut self, slot: usize) {
        // Drain what is queued first, so no other flow's packet meets the
        // new listening socket.
        let now = Instant::now();
        self.iface_poll(now);
        if !matches!(self.slots[slot].flow, Some(Flow::Tcp(_))) {
            return;
        }
        let Some(Flow::Tcp(f)) = self.slots[slot].flow.as_ref() else {
            return;
        };
        let mut sock = self.take_tcp_socket(f.buffers);
        sock.set_tsval_generator(None);
        let Some(Flow::Tcp(f)) = self.slots[slot].flow.as_mut() else {
            return;
        };
        let endpoint = IpListenEndpoint {
            addr: Some(IpAddress::Ipv4(f.key.dst.0)),
            port: f.key.dst.1,
        };
        if sock.listen(endpoint).is_err() {
            self.free_flow(slot, true);
            return;
        }
        let _ = f.stream.set_nodelay(true);
        let handle = self.sockets.add(sock);
        f.handle = Some(handle);
        f.interest = EpollFlags::empty();
        let syn = f.syn.take();
        trace!(key = ?f.key, "nat: connected");
        if let Some(syn) = syn {
            self.feed(now, &syn);
        }
        // The listening socket takes its SYN now, so that no listening
        // socket ever outlives this call (it would accept any SYN to its
        // endpoint, another flow's included).
        self.iface_poll(now);
        if self.sockets.get::<tcp::Socket>(handle).state() != tcp::State::SynReceived {
            // smoltcp refused the SYN (bad checksum, say): the sandbox's
            // retransmission starts over.
            self.free_flow(slot, true);
            return;
        }
        self.counters.tcp_opened.fetch_add(1, Relaxed);
        self.sync_interest(slot);
    }

    fn connect_failed(&mut self, link: Link, syn: &[u8], error: &io::Error) {
        match error.raw_os_error().map(Errno::from_raw) {
            Some(Errno::ECONNREFUSED) => {
                self.counters.refused.fetch_add(1, Relaxed);
                self.craft(|out| policy::tcp_rst_for_syn(link, syn, out));
            }
            Some(Errno::ETIMEDOUT) => {
                self.counters.unreachable.fetch_add(1, Relaxed);
                self.craft(|out| policy::tcp_rst_for_syn(link, syn, out));
            }
            Some(Errno::ENETUNREACH) => {
                self.counters.unreachable.fetch_add(1, Relaxed);
                self.craft(|out| {
                    policy::icmp_unreachable(link, Icmpv4DstUnreachable::NetUnreachable, syn, out)
                });
            }
            _ => {
                self.counters.unreachable.fetch_add(1, Relaxed);
                self.craft(|out| {
                    policy::icmp_unreachable(link, Icmpv4DstUnreachable::HostUnreachable, syn, out)
                });
            }
        }
        debug!(error = %error, "nat: host connect failed");
    }

    // ---- the pump --------------------------------------------------------

    /// Move bytes between every open TCP flow's smoltcp socket and host
    /// socket, propagate FIN and RST, free finished flows. Returns whether
    /// smoltcp has new work (data queued, aborts to send).
    fn pump(&mut self) -> bool {
        let mut again = false;
        let mut finished = Vec::new();
        for slot in 0..self.slots.len() {
            let Some(Flow::Tcp(f)) = self.slots[slot].flow.as_mut() else {
                continue;
            };
            let Some(handle) = f.handle else {
                continue;
            };
            let sock = self.sockets.get_mut::<tcp::Socket>(handle);
            if f.aborting {
                finished.push(slot);
                continue;
            }
            // Sandbox → host.
            let mut n = 0;
            while sock.recv_queue() > 0 && !f.write_blocked && !f.host_dead && n < IO_PER_PUMP {
                n += 1;
                let stream = &f.stream;
                match sock.recv(|buf| match (&*stream).write(buf) {
                    Ok(n) => (n, Ok((n, buf.len()))),
                    Err(e) => (0, Err(e)),
                }) {
                    Ok(Ok((len, offered))) => {
                        self.counters.tx_bytes.fetch_add(len as u64, Relaxed);
                        // The receive window opened: let smoltcp say so.
                        again = true;
                        if len < offered {
                            // The host socket's buffer is full: wait for
                            // EPOLLOUT rather than ask for EAGAIN.
                            f.write_blocked = true;
                        }
                    }
                    Ok(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                        f.write_blocked = true;
                    }
                    Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                    Ok(Err(_)) => {
                        f.host_dead = true;
                    }
                    Err(_) => break,
                }
            }
            // FIN from the sandbox, after its data: half-close the host side.
            if !f.host_wr_shut
                && !f.host_dead
                && sock.recv_queue() == 0
                && matches!(
                    sock.state(),
                    tcp::State::CloseWait
                        | tcp::State::LastAck
                        | tcp::State::Closing
                        | tcp::State::TimeWait
                )
            {
                f.host_wr_shut = true;
                let _ = f.stream.shutdown(Shutdown::Write);
            }
            // Host → sandbox.
            let mut n = 0;
            while f.readable
                && !f.host_eof
                && !f.host_dead
                && sock.may_send()
                && sock.send_queue() < sock.send_capacity()
                && n < IO_PER_PUMP
            {
                n += 1;
                let stream = &f.stream;
                match sock.send(|buf| match (&*stream).read(buf) {
                    Ok(n) => (n, Ok((n, buf.len()))),
                    Err(e) => (0, Err(e)),
                }) {
                    Ok(Ok((0, _))) => {
                        f.host_eof = true;
                        sock.close();
                        again = true;
                    }
                    Ok(Ok((len, offered))) => {
                        self.counters.rx_bytes.fetch_add(len as u64, Relaxed);
                        again = true;
                        if len < offered {
                            // Drained for now (EPOLLIN says when there is
                            // more); no read just to hear EAGAIN.
                            f.readable = false;
                        }
                    }
                    Ok(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                        f.readable = false;
                        break;
                    }
                    Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                    Ok(Err(_)) => {
                        f.host_dead = true;
                    }
                    Err(_) => break,
                }
            }
            if f.host_dead {
                // RST from the host (or a broken socket): reset the sandbox.
                sock.abort();
                f.aborting = true;
                again = true;
                continue;
            }
            let state = sock.state();
            if let (Some(id), false) = (f.forward, f.connected) {
                if !matches!(
                    state,
                    tcp::State::SynSent | tcp::State::Closed | tcp::State::Listen
                ) {
                    f.connected = true;
                    if let Some(fw) = self.forwards.get_mut(&id) {
                        fw.pending = fw.pending.saturating_sub(1);
                    }
                }
            }
            if matches!(state, tcp::State::Closed | tcp::State::TimeWait) {
                finished.push(slot);
                continue;
            }
            if state == tcp::State::Listen {
                // Never left listening (see `tcp_open`); defensive.
                finished.push(slot);
                continue;
            }
            let mut want = EpollFlags::empty();
            if !f.host_eof && sock.may_send() && sock.send_queue() < sock.send_capacity() {
                want |= EpollFlags::EPOLLIN;
            }
            if f.write_blocked {
                want |= EpollFlags::EPOLLOUT;
            }
            f.interest = want;
            self.sync_interest(slot);
        }
        for slot in finished {
            let graceful = match &self.slots[slot].flow {
                Some(Flow::Tcp(f)) => !f.aborting && f.host_eof && f.host_wr_shut,
                _ => true,
            };
            self.free_flow(slot, !graceful);
        }
        self.resume_forwards();
        again
    }

    /// Hand datagrams the sandboxes sent (through smoltcp) to host sockets.
    fn drain_udp(&mut self, now: Instant) {
        for (&dst, &UdpBind { handle, .. }) in &self.udp_binds {
            let sock = self.sockets.get_mut::<udp::Socket>(handle);
            while let Ok((data, meta)) = sock.recv() {
                let IpAddress::Ipv4(src) = meta.endpoint.addr;
                let key = FlowKey {
                    src: (src, meta.endpoint.port),
                    dst,
                };
                let Some(Flow::Udp(f)) = self
                    .udp_index
                    .get(&key)
                    .and_then(|&slot| self.slots[slot].flow.as_mut())
                else {
                    self.counters.dropped.fetch_add(1, Relaxed);
                    continue;
                };
                f.last = now;
                let sent = match &f.out {
                    UdpOut::Host(socket) => socket.send(data),
                    UdpOut::Forward(id, client) => match self.forwards.get(id) {
                        Some(Forward {
                            listener: Listener::Udp(socket),
                            ..
                        }) => socket.send_to(data, client),
                        _ => Err(io::ErrorKind::NotConnected.into()),
                    },
                };
                match sent {
                    Ok(n) => {
                        self.counters.tx_bytes.fetch_add(n as u64, Relaxed);
                    }
                    Err(e) => {
                        self.counters.dropped.fetch_add(1, Relaxed);
                        trace!(error = %e, "nat: UDP send failed");
                    }
                }
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        let mut expired = Vec::new();
        let mut timed_out = Vec::new();
        let mut forward_timed_out = Vec::new();
        for (slot, s) in self.slots.iter().enumerate() {
            match &s.flow {
                Some(Flow::Tcp(f))
                    if f.syn.is_some()
                        && now.saturating_duration_since(f.started) > CONNECT_TIMEOUT =>
                {
                    timed_out.push(slot);
                }
                // A forwarded client whose sandbox never answers the SYN.
                Some(Flow::Tcp(f))
                    if f.forward.is_some()
                        && !f.connected
                        && now.saturating_duration_since(f.started) > CONNECT_TIMEOUT =>
                {
                    forward_timed_out.push(slot);
                }
                Some(Flow::Udp(f)) if now.saturating_duration_since(f.last) > UDP_IDLE => {
                    expired.push(slot);
                }
                Some(Flow::Ping(f)) if now.saturating_duration_since(f.last) > ICMP_IDLE => {
                    expired.push(slot);
                }
                _ => {}
            }
        }
        for slot in timed_out {
            let held = match &mut self.slots[slot].flow {
                Some(Flow::Tcp(f)) => f.syn.take().map(|syn| (syn, f.key.src.0)),
                _ => None,
            };
            // The MAC before freeing: the sandbox's last flow takes it along.
            let mac = held
                .as_ref()
                .and_then(|(_, src)| self.macs.get(src).copied());
            self.free_flow(slot, true);
            if let Some((syn, _)) = held {
                self.counters.unreachable.fetch_add(1, Relaxed);
                if let Some(mac) = mac {
                    let link = self.link(mac);
                    self.craft(|out| policy::tcp_rst_for_syn(link, &syn, out));
                }
            }
        }
        for slot in expired {
            self.free_flow(slot, false);
        }
        for slot in forward_timed_out {
            self.counters.unreachable.fetch_add(1, Relaxed);
            self.free_flow(slot, true);
        }
    }

    // ---- plumbing --------------------------------------------------------

    fn smol_now(&self, now: Instant) -> smoltcp::time::Instant {
        let micros = now.saturating_duration_since(self.start).as_micros();
        smoltcp::time::Instant::from_micros(i64::try_from(micros).unwrap_or(i64::MAX))
    }

    fn iface_poll(&mut self, now: Instant) {
        let t = self.smol_now(now);
        self.iface.poll(t, &mut self.device, &mut self.sockets);
    }

    /// Hand an IPv4 packet from a sandbox to the NAT's smoltcp interface,
    /// at once and from the caller's buffer (no queue, no copy). A SYN's
    /// MSS is clamped first (see [`clamp_mss`]).
    fn feed(&mut self, now: Instant, packet: &[u8]) {
        let t = self.smol_now(now);
        let clamped = clamp_mss(packet, self.mtu);
        let mut device = Ingress {
            packet: Some(clamped.as_deref().unwrap_or(packet)),
            device: &mut self.device,
        };
        self.iface
            .poll_ingress_single(t, &mut device, &mut self.sockets);
    }

    /// Put the headers on smoltcp's packets, in the room left before each,
    /// and hand them out: TCP with a partial checksum (the pseudo-header
    /// sum; the receiving kernel takes it as is), the rest as smoltcp
    /// summed it. A packet over the network's MTU (a large UDP reply) is
    /// summed in full and fragmented.
    fn emit_tx(&mut self, emit: &mut dyn FnMut(&mut [u8], Offload)) {
        while let Some((mut buffer, len)) = self.device.tx.pop_front() {
            let frame = &mut buffer[..len];
            let dst = Ipv4Packet::new_checked(&frame[ROOM..]).map(|p| p.dst_addr());
            let Some(&mac) = dst.ok().and_then(|d| self.macs.get(&d)) else {
                self.counters.dropped.fetch_add(1, Relaxed);
                self.device.recycle(buffer);
                continue;
            };
            let link = self.link(mac);
            let eth = policy::ethernet_header(link);
            frame[vnet::HDR_LEN..ROOM].copy_from_slice(&eth);
            let offload = partial_tcp_checksum(&mut frame[vnet::HDR_LEN..]);
            if len - ROOM <= self.mtu {
                emit(frame, offload);
            } else {
                vnet::complete(&mut frame[vnet::HDR_LEN..], offload);
                let scratch = &mut self.scratch;
                let sent = policy::fragment(&frame[ROOM..], self.mtu, &mut |piece| {
                    scratch.clear();
                    scratch.resize(vnet::HDR_LEN, 0);
                    scratch.extend_from_slice(&eth);
                    scratch.extend_from_slice(piece);
                    emit(scratch, Offload::None);
                });
                if !sent {
                    self.counters.dropped.fetch_add(1, Relaxed);
                }
            }
            self.device.recycle(buffer);
        }
    }

    fn link(&self, sandbox: EthernetAddress) -> Link {
        Link {
            gateway: self.gateway_mac,
            sandbox,
        }
    }

    /// Build a frame with `f` and queue it for the switch.
    fn craft(&mut self, f: impl FnOnce(&mut Vec<u8>) -> bool) {
        if self.out.len() >= OUT_FRAMES {
            self.counters.dropped.fetch_add(1, Relaxed);
            return;
        }
        let mut frame = Vec::new();
        if f(&mut frame) {
            self.out.push_back(frame);
        }
    }

    fn prohibit(&mut self, link: Link, packet: &[u8], refusal: policy::Refusal) {
        self.counters.prohibited.fetch_add(1, Relaxed);
        trace!(?refusal, "nat: destination refused");
        self.craft(|out| {
            policy::icmp_unreachable(link, Icmpv4DstUnreachable::CommProhibited, packet, out)
        });
    }

    /// The host address for `dst`, with the current container subnets.
    fn destination(&mut self, dst: Ipv4Addr) -> Result<Ipv4Addr, policy::Refusal> {
        if dst == self.gateway_ip && self.net.gateway_loopback {
            return Ok(Ipv4Addr::LOCALHOST);
        }
        let registry = container_subnets();
        let generation = registry.generation();
        if generation != self.subnets_generation {
            self.subnets = registry.snapshot();
            self.subnets_generation = generation;
        }
        policy::check_destination(dst, &self.subnets, self.net.host_loopback)
    }

    fn take_flow(&mut self, src: Ipv4Addr) -> bool {
        let limits = self.net.nat.limits();
        if !self.counts.try_add(src, limits.per_sandbox) {
            return false;
        }
        if !self.net.nat.try_take_flow() {
            self.counts.remove(src);
            return false;
        }
        true
    }

    fn release_flow(&mut self, src: Ipv4Addr) {
        self.net.nat.release_flow();
        if self.counts.remove(src) {
            self.macs.remove(&src);
        }
    }

    fn insert(&mut self, flow: Flow) -> usize {
        match self.free.pop() {
            Some(slot) => {
                self.slots[slot].flow = Some(flow);
                slot
            }
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    flow: Some(flow),
                });
                self.slots.len() - 1
            }
        }
    }

    /// Bring a TCP flow's epoll registration in line with its interest.
    fn sync_interest(&mut self, slot: usize) {
        let tok = token(slot, &self.slots);
        let Some(Flow::Tcp(f)) = self.slots[slot].flow.as_mut() else {
            return;
        };
        if f.registered && f.interest == f.armed {
            // Unchanged: no system call (the pump asks after every poll).
            return;
        }
        let event = EpollEvent::new(f.interest, tok);
        f.armed = f.interest;
        let result = match (f.registered, f.interest.is_empty()) {
            (false, true) => Ok(()),
            (false, false) => {
                f.registered = true;
                self.epoll.add(f.stream.as_fd(), event)
            }
            (true, true) => {
                f.registered = false;
                self.epoll.delete(f.stream.as_fd())
            }
            (true, false) => {
                let mut event = event;
                self.epoll.modify(f.stream.as_fd(), &mut event)
            }
        };
        if let Err(e) = result {
            debug!(error = %e, "nat: epoll update failed");
        }
    }

    /// Free a flow: its host socket (with a RST when `reset`), its smoltcp
    /// socket, its indexes and its limit slots.
    fn free_flow(&mut self, slot: usize, reset: bool) {
        let Some(flow) = self.slots[slot].flow.take() else {
            return;
        };
        self.slots[slot].generation = self.slots[slot].generation.wrapping_add(1);
        self.free.push(slot);
        let src = flow.source();
        match flow {
            Flow::Tcp(f) => {
                if let Some(id) = f.forward {
                    self.counters.forward_flows.fetch_sub(1, Relaxed);
                    if !f.connected {
                        self.counters.forward_refused.fetch_add(1, Relaxed);
                        if let Some(fw) = self.forwards.get_mut(&id) {
                            fw.pending = fw.pending.saturating_sub(1);
                        }
                    }
                }
                self.tcp_index.remove(&f.key);
                if f.registered {
                    let _ = self.epoll.delete(f.stream.as_fd());
                }
                let mut kept = false;
                if let Some(handle) = f.handle {
                    let socket = self.sockets.remove(handle);
                    if let (true, smoltcp::socket::Socket::Tcp(mut s)) = (f.bulk, socket) {
                        if self.spare_bulk.len() < SPARE_BULK_SOCKETS {
                            // Out of the set, it sends nothing more; the
                            // next connect or listen resets it.
                            s.abort();
                            self.spare_bulk.push(s);
                            kept = true;
                        }
                    }
                }
                self.release_buffers(src, (f.buffers, f.bulk), kept);
                if reset {
                    let _ = socket::setsockopt(
                        &f.stream,
                        sockopt::Linger,
                        &nix::libc::linger {
                            l_onoff: 1,
                            l_linger: 0,
                        },
                    );
                }
                self.counters.tcp_flows.fetch_sub(1, Relaxed);
            }
            Flow::Udp(f) => {
                self.udp_index.remove(&f.key);
                match &f.out {
                    UdpOut::Host(socket) => {
                        let _ = self.epoll.delete(socket.as_fd());
                    }
                    UdpOut::Forward(id, peer) => {
                        self.forward_udp.remove(&(*id, *peer));
                        self.counters.forward_flows.fetch_sub(1, Relaxed);
                    }
                }
                if let Some(bind) = self.udp_binds.get_mut(&f.key.dst) {
                    bind.users -= 1;
                    if bind.users == 0 {
                        let (handle, payer, sizes) = (bind.handle, bind.payer, bind.sizes);
                        self.sockets.remove(handle);
                        self.udp_binds.remove(&f.key.dst);
                        self.release_buffers(payer, (sizes, false), false);
                    }
                }
                self.counters.udp_flows.fetch_sub(1, Relaxed);
            }
            Flow::Ping(f) => {
                self.ping_index.remove(&(f.src, f.ident, f.dst));
                let _ = self.epoll.delete(f.socket.as_fd());
                self.counters.icmp_flows.fetch_sub(1, Relaxed);
            }
        }
        self.release_flow(src);
    }

    /// A closed smoltcp TCP socket for a new flow, with buffers of
    /// `sizes`. Bulk sockets of finished flows are kept (at most
    /// [`SPARE_BULK_SOCKETS`]) and handed out again: a fresh 2.25 MiB of
    /// zeroed buffers per connection cost 13% of the daemon's time in a
    /// run of short connections (glibc clears reused heap memory with
    /// `memset`). smoltcp resets a closed socket's state and buffers on
    /// `connect` and `listen`; its settings (Nagle, timeouts) stay as
    /// [`tcp_socket`] made them, and callers set the timestamp generator.
    /// A kept socket's daemon-wide charge goes with it: the new flow's
    /// reservation replaces it.
    fn take_tcp_socket(&mut self, sizes: Sizes) -> tcp::Socket<'static> {
        if sizes == TCP_BULK {
            if let Some(sock) = self.spare_bulk.pop() {
                self.net.nat.release_buffers(TCP_BULK.bytes());
                return sock;
            }
        }
        tcp_socket(sizes)
    }

    /// Drop the kept bulk sockets, and their daemon-wide charge.
    fn drop_spares(&mut self) {
        for _ in self.spare_bulk.drain(..) {
            self.net.nat.release_buffers(TCP_BULK.bytes());
        }
    }

    /// Reserve a TCP flow's buffers for sandbox `src`: one of the daemon's
    /// large send buffers while one is free and the budgets allow, else
    /// the largest sizes they allow (see [`budget`]); with whether it is a
    /// bulk one. `None` (counted): refuse the flow.
    fn reserve_tcp(&mut self, src: Ipv4Addr) -> Option<(Sizes, bool)> {
        let slot = self.net.nat.try_take_bulk();
        let wanted: &[Sizes] = if slot {
            &[TCP_BULK, TCP_FULL]
        } else {
            &[TCP_FULL]
        };
        let sizes = self.reserve(src, wanted, TCP_SMALL);
        let bulk = sizes == Some(TCP_BULK);
        if slot && !bulk {
            self.net.nat.release_bulk();
        }
        sizes.map(|s| (s, bulk))
    }

    /// Charge sandbox `src` and the daemon for a new flow's buffers: the
    /// first of `wanted` or `small` (see [`budget::choose`]). `None`
    /// (counted as `limited` and `buffer_limited`): no room.
    fn reserve(&mut self, src: Ipv4Addr, wanted: &[Sizes], small: Sizes) -> Option<Sizes> {
        let held = self.charges.get(src);
        let nat = &self.net.nat;
        let mut sizes = nat.reserve_buffers(wanted, small, held);
        // Short of the daemon's budget only (the sandbox's own would have
        // room): the sockets kept for reuse go first.
        if sizes.is_none()
            && !self.spare_bulk.is_empty()
            && budget::choose(wanted, small, held, 0, nat.budget()).is_some()
        {
            self.drop_spares();
            sizes = self.net.nat.reserve_buffers(wanted, small, held);
        }
        let Some(sizes) = sizes else {
            self.counters.limited.fetch_add(1, Relaxed);
            self.counters.buffer_limited.fetch_add(1, Relaxed);
            trace!(%src, held, "nat: buffer budget spent, flow refused");
            return None;
        };
        if sizes == small {
            self.counters.buffer_small.fetch_add(1, Relaxed);
        }
        self.charges.add(src, sizes.bytes());
        self.counters
            .buffer_bytes
            .store(self.charges.total() as u64, Relaxed);
        Some(sizes)
    }

    /// Give a flow's buffers back: its sandbox's charge, its bulk slot,
    /// and the daemon's charge unless `kept` (a spare socket holds it).
    fn release_buffers(&mut self, src: Ipv4Addr, (sizes, bulk): (Sizes, bool), kept: bool) {
        self.charges.release(src, sizes.bytes());
        self.counters
            .buffer_bytes
            .store(self.charges.total() as u64, Relaxed);
        if bulk {
            self.net.nat.release_bulk();
        }
        if !kept {
            self.net.nat.release_buffers(sizes.bytes());
        }
    }

    /// Make sure a smoltcp UDP socket listens on `dst` for one more flow;
    /// a new one is charged to sandbox `payer`. False if the budget has no
    /// room (counted) or the bind fails.
    fn bind_udp(&mut self, dst: (Ipv4Addr, u16), payer: Ipv4Addr) -> bool {
        if let Some(bind) = self.udp_binds.get_mut(&dst) {
            bind.users += 1;
            return true;
        }
        let Some(sizes) = self.reserve(payer, &[UDP_FULL], UDP_SMALL) else {
            return false;
        };
        let packets = if sizes == UDP_FULL {
            UDP_PACKETS
        } else {
            UDP_SMALL_PACKETS
        };
        let buffer = |bytes: usize| {
            udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; packets], vec![0u8; bytes])
        };
        let mut sock = udp::Socket::new(buffer(sizes.rx), buffer(sizes.tx));
        let endpoint = IpListenEndpoint {
            addr: Some(IpAddress::Ipv4(dst.0)),
            port: dst.1,
        };
        if sock.bind(endpoint).is_err() {
            self.release_buffers(payer, (sizes, false), false);
            return false;
        }
        let handle = self.sockets.add(sock);
        self.udp_binds.insert(
            dst,
            UdpBind {
                handle,
                users: 1,
                payer,
                sizes,
            },
        );
        true
    }
}

impl Drop for NatEngine {
    fn drop(&mut self) {
        // Give the daemon-wide flow slots and buffer charges back.
        for slot in 0..self.slots.len() {
            self.free_flow(slot, true);
        }
        self.drop_spares();
    }
}

/// The bits of a slot's generation that go into its epoll token.
const GENERATION_MASK: u32 = 0x7fff_ffff;

fn token(slot: usize, slots: &[Slot]) -> u64 {
    (u64::from(slots[slot].generation & GENERATION_MASK) << 32) | slot as u64
}

/// TCP timestamp values of forwarded connections: microseconds on one
/// process-wide monotonic clock, so they only grow (modulo 2^32, which
/// PAWS comparisons allow).
fn forward_tsval() -> u32 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    // Truncation is the point: the value wraps like a TCP timestamp.
    start.elapsed().as_micros() as u32
}

/// A smoltcp TCP socket for one flow, with buffers of `sizes` (see
/// [`budget`]), no Nagle, the sandbox side's give-up and keep-alive timers
/// set.
fn tcp_socket(sizes: Sizes) -> tcp::Socket<'static> {
    let mut sock = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0u8; sizes.rx]),
        tcp::SocketBuffer::new(vec![0u8; sizes.tx]),
    );
    sock.set_nagle_enabled(false);
    sock.set_timeout(Some(smoltcp::time::Duration::from_secs(
        TCP_TIMEOUT.as_secs(),
    )));
    sock.set_keep_alive(Some(smoltcp::time::Duration::from_secs(
        TCP_KEEPALIVE.as_secs(),
    )));
    sock
}

/// The address a host socket to `dst` binds to: the network's outbound
/// address, if it has one and `dst` is not the host's loopback (reached
/// from a loopback address only); `None`: the kernel chooses.
fn outbound_for(outbound: Option<Ipv4Addr>, dst: Ipv4Addr) -> Option<Ipv4Addr> {
    outbound.filter(|_| !dst.is_loopback())
}

/// Binds `fd` as [`outbound_for`] says.
fn bind_outbound(fd: &OwnedFd, outbound: Option<Ipv4Addr>, dst: Ipv4Addr) -> io::Result<()> {
    match outbound_for(outbound, dst) {
        Some(ip) => Ok(socket::bind(
            std::os::fd::AsRawFd::as_raw_fd(fd),
            &SockaddrIn::from(SocketAddrV4::new(ip, 0)),
        )?),
        None => Ok(()),
    }
}

/// A non-blocking TCP socket with its connect to `addr` under way, from
/// `outbound` when given, with [`small_host_buffers`] when `small`.
fn connect_nonblocking(
    addr: SocketAddrV4,
    outbound: Option<Ipv4Addr>,
    small: bool,
) -> io::Result<TcpStream> {
    let fd = socket::socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    bind_outbound(&fd, outbound, *addr.ip())?;
    if small {
        small_host_buffers(fd.as_fd());
    }
    match socket::connect(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrIn::from(addr),
    ) {
        Ok(()) | Err(Errno::EINPROGRESS) => Ok(TcpStream::from(fd)),
        Err(e) => Err(e.into()),
    }
}

/// Fix a host socket's send and receive buffers at
/// [`budget::HOST_SMALL_BUFFER`] (the kernel doubles it for its own
/// bookkeeping), turning the kernel's autotuning off for it: the host
/// side of a flow with small smoltcp buffers. Best effort.
fn small_host_buffers(fd: BorrowedFd<'_>) {
    let _ = socket::setsockopt(&fd, sockopt::SndBuf, &budget::HOST_SMALL_BUFFER);
    let _ = socket::setsockopt(&fd, sockopt::RcvBuf, &budget::HOST_SMALL_BUFFER);
}

/// A non-blocking UDP socket connected to `addr`, from `outbound` when
/// given.
fn udp_connect(addr: SocketAddrV4, outbound: Option<Ipv4Addr>) -> io::Result<UdpSocket> {
    let local = outbound_for(outbound, *addr.ip()).unwrap_or(Ipv4Addr::UNSPECIFIED);
    let socket = UdpSocket::bind(SocketAddrV4::new(local, 0))?;
    socket.set_nonblocking(true)?;
    socket.connect(addr)?;
    Ok(socket)
}

/// A non-blocking unprivileged ICMP socket connected to `addr`, from
/// `outbound` when given.
fn ping_connect(addr: Ipv4Addr, outbound: Option<Ipv4Addr>) -> io::Result<UdpSocket> {
    let fd = ping_socket()?;
    bind_outbound(&fd, outbound, addr)?;
    socket::connect(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrIn::from(SocketAddrV4::new(addr, 0)),
    )?;
    Ok(UdpSocket::from(fd))
}

fn ping_socket() -> io::Result<OwnedFd> {
    Ok(socket::socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        SockProtocol::Icmp,
    )?)
}

/// Whether this process may open unprivileged ICMP sockets.
pub(super) fn probe_ping_socket() -> bool {
    ping_socket().is_ok()
}

/// Fill the checksum field of the TCP segment in `frame` (an Ethernet
/// frame smoltcp emitted without TCP checksums) with its pseudo-header sum
/// and say so; anything else is left as it is.
fn partial_tcp_checksum(frame: &mut [u8]) -> Offload {
    let Some((start, offset)) = vnet::l4_csum_field(frame) else {
        return Offload::None;
    };
    if offset != vnet::TCP_CSUM_OFFSET {
        return Offload::None;
    }
    let Ok(ip) = Ipv4Packet::new_checked(&frame[ETH_HLEN..]) else {
        return Offload::None;
    };
    let l4_len = ip.total_len() - u16::from(ip.header_len());
    let sum = vnet::pseudo_header_sum(ip.src_addr(), ip.dst_addr(), 6, l4_len);
    let at = usize::from(start + offset);
    frame[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    Offload::Partial { start, offset }
}

/// A copy of `packet` with its MSS lowered, when it is a TCP SYN (or
/// SYN-ACK) that offers timestamps and an MSS larger than fits the
/// network's MTU with them; `None` (use the packet as it is) otherwise.
///
/// smoltcp sends segments of the peer's MSS *plus* its options (RFC 6691
/// says options come out of the MSS), so with timestamps each full segment
/// to a sandbox would be 12 bytes over the MTU and leave as two fragments.
/// Clamping the MSS the sandbox announces, as a router's MSS clamping
/// does, keeps every segment within the MTU. The checksum is not redone:
/// this interface does not verify TCP checksums (the packet was verified
/// or trusted before).
fn clamp_mss(packet: &[u8], mtu: usize) -> Option<Vec<u8>> {
    let ip = Ipv4Packet::new_checked(packet).ok()?;
    if ip.next_header() != IpProtocol::Tcp || ip.frag_offset() != 0 || ip.more_frags() {
        return None;
    }
    let ihl = usize::from(ip.header_len());
    let tcp = packet.get(ihl..usize::from(ip.total_len()))?;
    if tcp.len() < 20 || tcp[13] & 0x02 == 0 {
        return None;
    }
    let doff = usize::from(tcp[12] >> 4) * 4;
    let options = tcp.get(20..doff)?;
    let (mut mss_at, mut timestamps, mut i) = (None, false, 0);
    while i < options.len() {
        match options[i] {
            0 => break,
            1 => i += 1,
            kind => {
                let len = usize::from(*options.get(i + 1)?);
                if len < 2 || i + len > options.len() {
                    return None;
                }
                match (kind, len) {
                    (2, 4) => mss_at = Some(ihl + 20 + i + 2),
                    (8, 10) => timestamps = true,
                    _ => {}
                }
                i += len;
            }
        }
    }
    let at = mss_at?;
    let limit = u16::try_from(mtu.checked_sub(40 + TIMESTAMPS_LEN)?).ok()?;
    let mss = u16::from_be_bytes([packet[at], packet[at + 1]]);
    if !timestamps || mss <= limit {
        return None;
    }
    let mut copy = packet.to_vec();
    copy[at..at + 2].copy_from_slice(&limit.to_be_bytes());
    Some(copy)
}

/// The NAT interface's device: the bounded queue of packets smoltcp
/// emitted, each in a buffer with [`ROOM`] before it (and the length used:
/// buffers never shrink, so reusing one never zeroes it again). Packets
/// from the sandboxes come in through [`Ingress`], one at a time.
struct IpDevice {
    tx: VecDeque<(Vec<u8>, usize)>,
    pool: Vec<Vec<u8>>,
    mtu: usize,
}

impl IpDevice {
    fn new(mtu: usize) -> IpDevice {
        IpDevice {
            tx: VecDeque::new(),
            pool: Vec::new(),
            mtu,
        }
    }

    fn recycle(&mut self, buffer: Vec<u8>) {
        if self.pool.len() < POOL_BUFFERS {
            self.pool.push(buffer);
        }
    }

    fn tx_token(&mut self) -> TxToken<'_> {
        TxToken {
            tx: &mut self.tx,
            pool: &mut self.pool,
        }
    }
}

impl Device for IpDevice {
    type RxToken<'a> = SliceRx<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _now: smoltcp::time::Instant) -> Option<(SliceRx<'_>, TxToken<'_>)> {
        None
    }

    fn transmit(&mut self, _now: smoltcp::time::Instant) -> Option<TxToken<'_>> {
        (self.tx.len() < TX_PACKETS).then(|| self.tx_token())
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = self.mtu;
        // TCP: neither verified (the switch hands over only checksums the
        // sandbox's kernel vouched for, or ones `receive` verified) nor
        // computed (`emit_tx` leaves them partial for the receiving
        // kernel). UDP: computed, not verified. IPv4 headers and ICMP: both.
        caps.checksum.tcp = Checksum::None;
        caps.checksum.udp = Checksum::Tx;
        caps
    }
}

/// The NAT interface's device while one packet from a sandbox is handed in,
/// straight from the switch's buffer.
struct Ingress<'a> {
    packet: Option<&'a [u8]>,
    device: &'a mut IpDevice,
}

impl Device for Ingress<'_> {
    type RxToken<'b>
        = SliceRx<'b>
    where
        Self: 'b;
    type TxToken<'b>
        = TxToken<'b>
    where
        Self: 'b;

    fn receive(&mut self, _now: smoltcp::time::Instant) -> Option<(SliceRx<'_>, TxToken<'_>)> {
        let packet = self.packet.take()?;
        Some((SliceRx(packet), self.device.tx_token()))
    }

    fn transmit(&mut self, now: smoltcp::time::Instant) -> Option<TxToken<'_>> {
        self.device.transmit(now)
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.device.capabilities()
    }
}

struct SliceRx<'a>(&'a [u8]);

impl phy::RxToken for SliceRx<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(self.0)
    }
}

struct TxToken<'a> {
    tx: &'a mut VecDeque<(Vec<u8>, usize)>,
    pool: &'a mut Vec<Vec<u8>>,
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        // A reused buffer keeps its old bytes past the headers, which
        // smoltcp overwrites (it writes every byte of the payload).
        let mut buffer = self.pool.pop().unwrap_or_default();
        let used = ROOM + len;
        if buffer.len() < used {
            buffer.resize(used, 0);
        }
        let clear = (ROOM + HEADER_CLEAR).min(used);
        buffer[ROOM..clear].fill(0);
        let result = f(&mut buffer[ROOM..used]);
        self.tx.push_back((buffer, used));
        result
    }
}

#[cfg(test)]
mod tests {
    //! The engine with real host sockets on 127.0.0.1 (through the
    //! host-loopback mapping) and frames built with `smoltcp::wire`.

    use super::*;
    use crate::gateway::nat::{Limits, Nat, HOST_LOOPBACK_ADDR};
    use smoltcp::wire::{EthernetRepr, Ipv4Repr, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber};
    use std::net::TcpListener;

    const GW_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
    const GW_MAC: [u8; 6] = [0x02, 0x42, 10, 77, 0, 1];
    const SB_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
    const SB_MAC: [u8; 6] = [0x02, 0x42, 10, 77, 0, 2];

    /// A TCP forward from a fresh listener on 127.0.0.1 to the sandbox's
    /// port 8000: its id and the address clients connect to.
    fn tcp_forward(nat: &mut NatEngine) -> (ForwardId, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
        let addr = listener.local_addr().expect("addr");
        let id = nat
            .add_forward(ForwardSpec {
                transport: Transport::Tcp,
                listener: listener.into(),
                target: SocketAddrV4::new(SB_IP, 8000),
                sandbox_mac: SB_MAC,
            })
            .expect("forward");
        (id, addr)
    }

    fn engine(limits: Limits) -> NatEngine {
        engine_with_budget(limits, crate::gateway::nat::Budget::default())
    }

    fn engine_with_budget(limits: Limits, budget: crate::gateway::nat::Budget) -> NatEngine {
        let net = NetworkNat {
            nat: Nat::with_budget(limits, budget),
            host_loopback: true,
            gateway_loopback: false,
            gateway_unreachable: false,
            dns_on_gateway: true,
            outbound: None,
        };
        let gateway = GatewayConfig {
            ip: GW_IP,
            prefix_len: 24,
            mac: GW_MAC,
            mtu: 65520,
        };
        NatEngine::new(net, &gateway).expect("engine")
    }

    fn tcp_frame(src_port: u16, dst: (Ipv4Addr, u16), control: TcpControl, seq: i32) -> Vec<u8> {
        tcp_frame_ack(src_port, dst, control, seq, None)
    }

    fn tcp_frame_ack(
        src_port: u16,
        dst: (Ipv4Addr, u16),
        control: TcpControl,
        seq: i32,
        ack: Option<u32>,
    ) -> Vec<u8> {
        tcp_frame_from((SB_IP, SB_MAC), src_port, dst, control, seq, ack)
    }

    /// A TCP segment from the sandbox at `src` (address and MAC).
    fn tcp_frame_from(
        src: (Ipv4Addr, [u8; 6]),
        src_port: u16,
        dst: (Ipv4Addr, u16),
        control: TcpControl,
        seq: i32,
        ack: Option<u32>,
    ) -> Vec<u8> {
        let (src_ip, src_mac) = src;
        let tcp_repr = TcpRepr {
            src_port,
            dst_port: dst.1,
            control,
            seq_number: TcpSeqNumber(seq),
            ack_number: ack.map(|a| TcpSeqNumber(a as i32)),
            window_len: 64000,
            window_scale: None,
            max_seg_size: Some(1460),
            sack_permitted: false,
            sack_ranges: [None, None, None],
            timestamp: None,
            payload: &[],
        };
        let ip_repr = Ipv4Repr {
            src_addr: src_ip,
            dst_addr: dst.0,
            next_header: IpProtocol::Tcp,
            payload_len: tcp_repr.buffer_len(),
            hop_limit: 64,
        };
        let eth = EthernetRepr {
            src_addr: EthernetAddress(src_mac),
            dst_addr: EthernetAddress(GW_MAC),
            ethertype: EthernetProtocol::Ipv4,
        };
        let mut frame = vec![0u8; 14 + ip_repr.buffer_len() + tcp_repr.buffer_len()];
        let mut e = EthernetFrame::new_unchecked(&mut frame[..]);
        eth.emit(&mut e);
        let mut ip = Ipv4Packet::new_unchecked(e.payload_mut());
        ip_repr.emit(&mut ip, &Default::default());
        tcp_repr.emit(
            &mut TcpPacket::new_unchecked(ip.payload_mut()),
            &src_ip.into(),
            &dst.0.into(),
            &Default::default(),
        );
        frame
    }

    /// An Ethernet frame of IPv4 as two fragments, the first with the
    /// first `first` bytes (a multiple of 8) of its payload.
    fn fragments(frame: &[u8], first: usize, ident: u16) -> [Vec<u8>; 2] {
        let ip = Ipv4Packet::new_checked(&frame[14..]).expect("ip");
        let payload = ip.payload();
        let piece = |data: &[u8], offset: usize, more: bool| {
            let mut out = frame[..14 + 20].to_vec();
            out.extend_from_slice(data);
            let mut ip = Ipv4Packet::new_unchecked(&mut out[14..]);
            ip.set_total_len((20 + data.len()) as u16);
            ip.set_ident(ident);
            ip.set_dont_frag(false);
            ip.set_more_frags(more);
            ip.set_frag_offset(offset as u16);
            ip.fill_checksum();
            out
        };
        [
            piece(&payload[..first], 0, true),
            piece(&payload[first..], first, false),
        ]
    }

    fn syn(src_port: u16, dst: (Ipv4Addr, u16)) -> Vec<u8> {
        tcp_frame(src_port, dst, TcpControl::Syn, 1000)
    }

    fn poll(engine: &mut NatEngine) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        // As a plain port would get them: no header, checksums complete.
        engine.poll(Instant::now(), &mut |buf, offload| {
            let mut frame = buf[vnet::HDR_LEN..].to_vec();
            vnet::complete(&mut frame, offload);
            out.push(frame);
        });
        out
    }

    /// Service host sockets and poll until some frame comes out.
    fn wait_frames(engine: &mut NatEngine) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            engine.service_host(Instant::now());
            let out = poll(engine);
            if !out.is_empty() {
                return out;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("no frame within 5 s");
    }

    /// (src, dst, TCP flags as (syn, ack, rst), ack number) of a TCP frame.
    fn tcp_of(frame: &[u8]) -> (Ipv4Addr, Ipv4Addr, (bool, bool, bool), u32) {
        let eth = EthernetFrame::new_checked(frame).expect("eth");
        assert_eq!(eth.dst_addr(), EthernetAddress(SB_MAC));
        assert_eq!(eth.src_addr(), EthernetAddress(GW_MAC));
        let ip = Ipv4Packet::new_checked(eth.payload()).expect("ip");
        let tcp = TcpPacket::new_checked(ip.payload()).expect("tcp");
        (
            ip.src_addr(),
            ip.dst_addr(),
            (tcp.syn(), tcp.ack(), tcp.rst()),
            tcp.ack_number().0 as u32,
        )
    }

    /// An IPv4 TCP packet from the sandbox with the given options.
    fn tcp_packet(control: TcpControl, mss: Option<u16>, timestamps: bool) -> Vec<u8> {
        let tcp_repr = TcpRepr {
            src_port: 8000,
            dst_port: 40000,
            control,
            seq_number: TcpSeqNumber(1),
            ack_number: Some(TcpSeqNumber(2)),
            window_len: 64000,
            window_scale: Some(7),
            max_seg_size: mss,
            sack_permitted: true,
            sack_ranges: [None, None, None],
            timestamp: timestamps.then(|| smoltcp::wire::TcpTimestampRepr::new(5, 6)),
            payload: &[],
        };
        policy::tests::tcp_ip_packet(SB_IP, GW_IP, &tcp_repr)
    }

    fn mss_of(packet: &[u8]) -> Option<u16> {
        let ip = Ipv4Packet::new_checked(packet).expect("ip");
        let tcp = TcpPacket::new_checked(ip.payload()).expect("tcp");
        TcpRepr::parse(
            &tcp,
            &SB_IP.into(),
            &GW_IP.into(),
            &smoltcp::phy::ChecksumCapabilities::ignored(),
        )
        .expect("repr")
        .max_seg_size
    }

    #[test]
    fn syn_mss_leaves_room_for_timestamps() {
        // A SYN-ACK at MTU 65520 with timestamps: 65480 would make smoltcp
        // send 65532-byte packets; clamped to 65468 they fit.
        let synack = tcp_packet(TcpControl::Syn, Some(65480), true);
        let clamped = clamp_mss(&synack, 65520).expect("clamped");
        assert_eq!(mss_of(&clamped), Some(65468));
        assert_eq!(clamped.len(), synack.len());
        // Small MSS, no timestamps, no MSS, not a SYN: left alone.
        assert_eq!(
            clamp_mss(&tcp_packet(TcpControl::Syn, Some(1460), true), 65520),
            None
        );
        assert_eq!(
            clamp_mss(&tcp_packet(TcpControl::Syn, Some(65480), false), 65520),
            None
        );
        assert_eq!(
            clamp_mss(&tcp_packet(TcpControl::Syn, None, true), 65520),
            None
        );
        assert_eq!(
            clamp_mss(&tcp_packet(TcpControl::None, Some(65480), true), 65520),
            None
        );
        // Option lengths that lie are left to smoltcp, never read past.
        let mut lying = synack.clone();
        lying[20 + 21] = 40;
        assert_eq!(clamp_mss(&lying, 65520), None);
        for cut in 0..synack.len() {
            let _ = clamp_mss(&synack[..cut], 65520);
        }
    }

    #[test]
    fn leaves_gateway_and_local_traffic_alone() {
        let mut nat = engine(Limits::default());
        let now = Instant::now();
        assert!(!nat.receive(now, &syn(40000, (GW_IP, 53))));
        assert!(!nat.receive(now, &syn(40000, (Ipv4Addr::new(10, 77, 0, 9), 80))));
        assert!(!nat.receive(now, &[0u8; 10]));
        assert!(poll(&mut nat).is_empty());
    }

    #[test]
    fn malformed_or_impossible_ipv4_is_dropped() {
        // Found by the nat_frames fuzz target: smoltcp's length check lets
        // a header length of 0 through, with a total length of 1.
        let mut nat = engine(Limits::default());
        let now = Instant::now();
        let good = syn(40000, (HOST_LOOPBACK_ADDR, 9));
        for (version_ihl, total) in [(0x40, 1u16), (0x44, 40), (0x65, 40)] {
            let mut frame = good.clone();
            frame[14] = version_ihl;
            frame[16..18].copy_from_slice(&total.to_be_bytes());
            assert!(nat.receive(now, &frame), "taken: {version_ihl:#x}");
        }
        // Sources no sandbox of 10.77.0.0/24 can have (smoltcp asserts on
        // answering 0.0.0.0): taken and dropped too, even with a checksum
        // the sandbox's kernel vouched for.
        let sources = [
            [0, 0, 0, 0],
            [10, 77, 0, 0],
            [10, 77, 0, 1],
            [10, 77, 0, 255],
            [10, 78, 0, 2],
        ];
        for src in sources {
            let mut frame = good.clone();
            frame[26..30].copy_from_slice(&src);
            assert!(
                nat.receive_offload(now, &frame, Offload::Valid),
                "taken: {src:?}"
            );
        }
        assert_eq!(nat.counters().snapshot().dropped, 8);
        assert_eq!(nat.counters().snapshot().tcp_flows, 0);
        assert!(poll(&mut nat).is_empty());
    }

    #[test]
    fn segments_no_host_could_take_get_no_host_socket() {
        let mut nat = engine(Limits::default());
        let now = Instant::now();
        let fix = |frame: &mut Vec<u8>| {
            let mut tcp = smoltcp::wire::TcpPacket::new_unchecked(&mut frame[34..]);
            tcp.fill_checksum(&SB_IP.into(), &HOST_LOOPBACK_ADDR.into());
        };
        let mut syn_fin = syn(40001, (HOST_LOOPBACK_ADDR, 80));
        syn_fin[34 + 13] |= 0x01;
        fix(&mut syn_fin);
        let mut short = syn(40002, (HOST_LOOPBACK_ADDR, 80));
        short[34 + 12] = 2 << 4;
        fix(&mut short);
        let frames = [
            syn(40000, (HOST_LOOPBACK_ADDR, 0)),
            syn(0, (HOST_LOOPBACK_ADDR, 80)),
            syn_fin,
            short,
            udp_frame(5353, (HOST_LOOPBACK_ADDR, 0), b"x"),
            udp_frame(0, (HOST_LOOPBACK_ADDR, 53), b"x"),
        ];
        for f in &frames {
            assert!(nat.receive(now, f), "taken");
        }
        nat.service_host(now);
        assert!(poll(&mut nat).is_empty(), "nothing answered");
        let stats = nat.counters().snapshot();
        assert_eq!(stats.malformed, 6, "{stats:?}");
        assert_eq!(
            (
                stats.tcp_flows,
                stats.udp_flows,
                stats.refused,
                stats.dropped
            ),
            (0, 0, 0, 0),
            "no host socket: {stats:?}"
        );
    }

    #[test]
    fn syn_ack_only_after_the_host_connect() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
        let port = listener.local_addr().expect("addr").port();
        let mut nat = engine(Limits::default());
        assert!(nat.receive(Instant::now(), &syn(40000, (HOST_LOOPBACK_ADDR, port))));
        // Before the connect is seen to complete, the sandbox hears nothing.
        assert!(poll(&mut nat).is_empty());
        assert_eq!(nat.counters().snapshot().tcp_flows, 1);
        let out = wait_frames(&mut nat);
        let (src, dst, flags, ack) = tcp_of(&out[0]);
        assert_eq!((src, dst), (HOST_LOOPBACK_ADDR, SB_IP));
        assert_eq!(flags, (true, true, false), "SYN-ACK");
        assert_eq!(ack, 1001);
        assert!(listener.accept().is_ok(), "the host side connected");
        assert_eq!(nat.counters().snapshot().tcp_opened, 1);

        // A RST from the sandbox ends the flow and its host socket.
        let rst = tcp_frame(40000, (HOST_LOOPBACK_ADDR, port), TcpControl::Rst, 1001);
        assert!(nat.receive(Instant::now(), &rst));
        poll(&mut nat);
        assert_eq!(nat.counters().snapshot().tcp_flows, 0);
        assert_eq!(nat.net.nat.flows(), 0);
    }

    #[test]
    fn a_fragmented_rst_in_syn_received_ends_its_flow_and_takes_no_other_syn() {
        // Issue 16, item 7. smoltcp answers a RST in SYN-RECEIVED by
        // listening again on the flow's destination, for any source; the
        // engine's guard against that was skipped for fragmented TCP, so
        // the next SYN fed for that destination (a neighbour's, whose host
        // connect just completed) went to the attacker's socket.
        use std::io::Read as _;
        const NB_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 3);
        const NB_MAC: [u8; 6] = [0x02, 0x42, 10, 77, 0, 3];
        let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
        let port = listener.local_addr().expect("addr").port();
        let dst = (HOST_LOOPBACK_ADDR, port);
        let mut nat = engine(Limits::default());
        assert!(nat.receive(Instant::now(), &syn(40000, dst)));
        let (_, _, flags, _) = tcp_of(&wait_frames(&mut nat)[0]);
        assert_eq!(flags, (true, true, false), "SYN-ACK: A is in SYN-RECEIVED");
        let (mut a_host, _) = listener.accept().expect("A's host side");
        // The neighbour's SYN to the same destination: held, its connect
        // under way.
        let b_syn = tcp_frame_from((NB_IP, NB_MAC), 40001, dst, TcpControl::Syn, 2000, None);
        assert!(nat.receive(Instant::now(), &b_syn));
        // A resets its own flow, in fragments.
        let rst = tcp_frame(40000, dst, TcpControl::Rst, 1001);
        for piece in fragments(&rst, 8, 7) {
            assert!(nat.receive(Instant::now(), &piece));
        }
        // The neighbour's connect completes: its SYN meets its own socket.
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(2);
        while out.is_empty() && Instant::now() < deadline {
            nat.service_host(Instant::now());
            out = poll(&mut nat);
            std::thread::sleep(Duration::from_millis(5));
        }
        let to_b: Vec<_> = out
            .iter()
            .filter(|f| EthernetFrame::new_unchecked(&f[..]).dst_addr() == EthernetAddress(NB_MAC))
            .collect();
        let stats = nat.counters().snapshot();
        assert_eq!(
            (stats.tcp_opened, stats.tcp_flows),
            (2, 1),
            "A's flow ended, B's opened on a socket of its own"
        );
        assert_eq!(to_b.len(), 1, "one frame for the neighbour");
        let (_b_host, _) = listener.accept().expect("B's host side");
        a_host
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let err = a_host
            .read(&mut [0u8; 16])
            .expect_err("A's host side reset");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
        // B's handshake completes on its own flow.
        let eth = EthernetFrame::new_checked(&to_b[0][..]).expect("eth");
        let ip = Ipv4Packet::new_checked(eth.payload()).expect("ip");
        let tcp = TcpPacket::new_checked(ip.payload()).expect("tcp");
        assert!(tcp.syn() && tcp.ack() && tcp.ack_number().0 == 2001);
        let ack = tcp_frame_from(
            (NB_IP, NB_MAC),
            40001,
            dst,
            TcpControl::None,
            2001,
            Some(tcp.seq_number().0 as u32 + 1),
        );
        assert!(nat.receive(Instant::now(), &ack));
        poll(&mut nat);
        assert_eq!(nat.counters().snapshot().tcp_flows, 1, "B's flow lives");
    }

    #[test]
    fn forwarded_client_connects_from_its_address_and_a_refusal_resets_it() {
        use std::io::Read as _;
        let mut nat = engine(Limits::default());
        let (id, addr) = tcp_forward(&mut nat);
        let mut client = TcpStream::connect(addr).expect("connect");
        let client_port = client.local_addr().expect("local").port();
        // A loopback client is shown as the gateway, with its own port.
        let out = wait_frames(&mut nat);
        let eth = EthernetFrame::new_checked(&out[0][..]).expect("eth");
        let ip = Ipv4Packet::new_checked(eth.payload()).expect("ip");
        let tcp = TcpPacket::new_checked(ip.payload()).expect("tcp");
        assert_eq!((tcp.src_port(), tcp.dst_port()), (client_port, 8000));
        let (src, dst, flags, _) = tcp_of(&out[0]);
        assert_eq!((src, dst, flags), (GW_IP, SB_IP, (true, false, false)));
        let stats = nat.counters().snapshot();
        assert_eq!((stats.forward_accepted, stats.forward_flows), (1, 1));

        // Nothing listens in the sandbox: its RST|ACK, to the gateway's
        // address, is the engine's (not the gateway's) and resets the client.
        let syn_seq = tcp.seq_number().0 as u32;
        let rst = tcp_frame_ack(
            8000,
            (GW_IP, client_port),
            TcpControl::Rst,
            0,
            Some(syn_seq.wrapping_add(1)),
        );
        assert!(nat.receive(Instant::now(), &rst), "claimed for the forward");
        poll(&mut nat);
        let stats = nat.counters().snapshot();
        assert_eq!((stats.forward_flows, stats.forward_refused), (0, 1));
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let err = client.read(&mut [0u8; 16]).expect_err("reset");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
        // That port is not claimed any more.
        assert!(!nat.receive(Instant::now(), &rst));

        assert!(nat.remove_forward(id));
        assert_eq!(nat.counters().snapshot().forwards, 0);
        assert!(TcpStream::connect(addr).is_err(), "listener closed");
    }

    #[test]
    fn a_finished_flows_bulk_socket_serves_the_next_one_afresh() {
        let mut nat = engine(Limits::default());
        let (_id, addr) = tcp_forward(&mut nat);
        // First client: its SYN to the sandbox, refused by the sandbox.
        let first = TcpStream::connect(addr).expect("connect");
        let out = wait_frames(&mut nat);
        let eth = EthernetFrame::new_checked(&out[0][..]).expect("eth");
        let ip = Ipv4Packet::new_checked(eth.payload()).expect("ip");
        let syn1 = TcpPacket::new_checked(ip.payload()).expect("tcp");
        let port1 = first.local_addr().expect("local").port();
        let seq1 = syn1.seq_number().0 as u32;
        let rst = tcp_frame_ack(8000, (GW_IP, port1), TcpControl::Rst, 0, Some(seq1 + 1));
        assert!(nat.receive(Instant::now(), &rst));
        poll(&mut nat);
        assert_eq!(nat.counters().snapshot().forward_flows, 0);
        assert_eq!(nat.spare_bulk.len(), 1, "the bulk socket was kept");
        // No sandbox's any more, but the daemon's until it is reused.
        assert_eq!(nat.counters().snapshot().buffer_bytes, 0);
        assert_eq!(nat.net.nat.buffers(), TCP_BULK.bytes());

        // Second client: the kept socket connects anew, a clean SYN.
        let second = TcpStream::connect(addr).expect("connect");
        let port2 = second.local_addr().expect("local").port();
        let out = wait_frames(&mut nat);
        assert!(nat.spare_bulk.is_empty(), "and handed out again");
        // Charged once, to the flow's sandbox.
        assert_eq!(
            nat.counters().snapshot().buffer_bytes,
            TCP_BULK.bytes() as u64
        );
        assert_eq!(nat.net.nat.buffers(), TCP_BULK.bytes());
        let eth = EthernetFrame::new_checked(&out[0][..]).expect("eth");
        let ip = Ipv4Packet::new_checked(eth.payload()).expect("ip");
        let tcp = TcpPacket::new_checked(ip.payload()).expect("tcp");
        assert!(tcp.verify_checksum(&GW_IP.into(), &SB_IP.into()));
        let repr = TcpRepr::parse(
            &tcp,
            &GW_IP.into(),
            &SB_IP.into(),
            &smoltcp::phy::ChecksumCapabilities::default(),
        )
        .expect("repr");
        assert_eq!(repr.control, TcpControl::Syn);
        assert_eq!(repr.ack_number, None);
        assert_eq!((repr.src_port, repr.dst_port), (port2, 8000));
        assert!(repr.timestamp.is_some(), "forwards keep their timestamps");
        assert!(repr.payload.is_empty());
        assert_eq!(nat.counters().snapshot().forward_flows, 1);
    }

    #[test]
    fn pending_handshakes_are_bounded_per_forward() {
        let mut nat = engine(Limits::default());
        let (id, addr) = tcp_forward(&mut nat);
        // The sandbox never answers: handshakes pile up to the bound, then
        // the listener is paused (clients wait in the backlog).
        let clients: Vec<TcpStream> = (0..FORWARD_PENDING + 8)
            .map(|_| {
                let client = TcpStream::connect(addr).expect("connect");
                nat.service_host(Instant::now());
                poll(&mut nat);
                client
            })
            .collect();
        for _ in 0..3 {
            nat.service_host(Instant::now());
            poll(&mut nat);
        }
        let stats = nat.counters().snapshot();
        assert_eq!(stats.forward_accepted, FORWARD_PENDING as u64);
        assert_eq!(stats.forward_flows, FORWARD_PENDING as u64);
        assert!(nat.forwards.get(&id).is_some_and(|f| f.paused));
        // Removing the forward frees every flow and every limit slot.
        assert!(nat.remove_forward(id));
        let stats = nat.counters().snapshot();
        assert_eq!((stats.forward_flows, stats.tcp_flows), (0, 0));
        assert_eq!(nat.net.nat.flows(), 0);
        drop(clients);
    }

    #[test]
    fn refused_connect_is_a_rst() {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("listen")
            .local_addr()
            .expect("addr")
            .port();
        let mut nat = engine(Limits::default());
        assert!(nat.receive(Instant::now(), &syn(40001, (HOST_LOOPBACK_ADDR, port))));
        let out = wait_frames(&mut nat);
        let (_, _, flags, ack) = tcp_of(&out[0]);
        assert_eq!(flags, (false, true, true), "RST|ACK");
        assert_eq!(ack, 1001);
        let stats = nat.counters().snapshot();
        assert_eq!((stats.refused, stats.tcp_flows), (1, 0));
    }

    #[test]
    fn container_subnets_are_prohibited() {
        let _other = container_subnets().register("10.78.0.0/16".parse().expect("net"));
        let mut nat = engine(Limits::default());
        assert!(nat.receive(
            Instant::now(),
            &syn(40002, (Ipv4Addr::new(10, 78, 0, 5), 80))
        ));
        let out = poll(&mut nat);
        let eth = EthernetFrame::new_checked(&out[0][..]).expect("eth");
        let ip = Ipv4Packet::new_checked(eth.payload()).expect("ip");
        let icmp = Icmpv4Packet::new_checked(ip.payload()).expect("icmp");
        assert_eq!((u8::from(icmp.msg_type()), icmp.msg_code()), (3, 13));
        assert_eq!(nat.counters().snapshot().prohibited, 1);
        assert_eq!(nat.counters().snapshot().tcp_flows, 0);
    }

    fn udp_frame(src_port: u16, dst: (Ipv4Addr, u16), payload: &[u8]) -> Vec<u8> {
        use smoltcp::wire::{UdpPacket, UdpRepr};
        let udp = UdpRepr {
            src_port,
            dst_port: dst.1,
        };
        let ip_repr = Ipv4Repr {
            src_addr: SB_IP,
            dst_addr: dst.0,
            next_header: IpProtocol::Udp,
            payload_len: udp.header_len() + payload.len(),
            hop_limit: 64,
        };
        let eth = EthernetRepr {
            src_addr: EthernetAddress(SB_MAC),
            dst_addr: EthernetAddress(GW_MAC),
            ethertype: EthernetProtocol::Ipv4,
        };
        let mut frame = vec![0u8; 14 + ip_repr.buffer_len() + ip_repr.payload_len];
        let mut e = EthernetFrame::new_unchecked(&mut frame[..]);
        eth.emit(&mut e);
        let mut ip = Ipv4Packet::new_unchecked(e.payload_mut());
        ip_repr.emit(&mut ip, &Default::default());
        udp.emit(
            &mut UdpPacket::new_unchecked(ip.payload_mut()),
            &SB_IP.into(),
            &dst.0.into(),
            payload.len(),
            |buf| buf.copy_from_slice(payload),
            &Default::default(),
        );
        frame
    }

    #[test]
    fn udp_round_trip_and_idle_expiry() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let port = server.local_addr().expect("addr").port();
        let mut nat = engine(Limits::default());
        let t0 = Instant::now();
        assert!(nat.receive(t0, &udp_frame(5353, (HOST_LOOPBACK_ADDR, port), b"ping")));
        poll(&mut nat);
        let mut buf = [0u8; 16];
        let (n, peer) = server.recv_from(&mut buf).expect("datagram at the host");
        assert_eq!(&buf[..n], b"ping");
        server.send_to(b"pong", peer).expect("reply");
        let out = wait_frames(&mut nat);
        let eth = EthernetFrame::new_checked(&out[0][..]).expect("eth");
        let ip = Ipv4Packet::new_checked(eth.payload()).expect("ip");
        assert_eq!((ip.src_addr(), ip.dst_addr()), (HOST_LOOPBACK_ADDR, SB_IP));
        let udp = smoltcp::wire::UdpPacket::new_checked(ip.payload()).expect("udp");
        assert_eq!((udp.src_port(), udp.dst_port()), (port, 5353));
        assert_eq!(udp.payload(), b"pong");
        assert_eq!(nat.counters().snapshot().udp_flows, 1);

        // Idle past UDP_IDLE: the flow and its socket go.
        let later = Instant::now() + UDP_IDLE + Duration::from_secs(2);
        nat.poll(later, &mut |_, _| {});
        assert_eq!(nat.counters().snapshot().udp_flows, 0);
        assert_eq!(nat.net.nat.flows(), 0);
        assert!(nat.udp_binds.is_empty());
    }

    #[test]
    fn fragmented_udp_is_reassembled_verified_and_sent_whole() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let port = server.local_addr().expect("addr").port();
        let mut nat = engine(Limits::default());
        let data: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        let frame = udp_frame(5353, (HOST_LOOPBACK_ADDR, port), &data);
        let [first, rest] = fragments(&frame, 1480, 77);
        assert!(nat.receive(Instant::now(), &first));
        assert!(nat.receive(Instant::now(), &rest));
        poll(&mut nat);
        let mut buf = [0u8; 4096];
        let (n, _) = server.recv_from(&mut buf).expect("the whole datagram");
        assert_eq!(&buf[..n], &data[..]);
        // The same with a wrong UDP checksum: reassembled, then dropped.
        let mut wrong = frame.clone();
        wrong[14 + 20 + 6] ^= 0xff;
        for piece in fragments(&wrong, 1480, 78) {
            assert!(nat.receive(Instant::now(), &piece));
        }
        poll(&mut nat);
        let stats = nat.counters().snapshot();
        assert_eq!((stats.fragments, stats.reassembled), (4, 2));
        assert_eq!((stats.udp_opened, stats.dropped), (1, 1));
        // A fragment of a protocol the NAT does not carry is refused.
        let mut other = first.clone();
        other[14 + 9] = 47;
        Ipv4Packet::new_unchecked(&mut other[14..]).fill_checksum();
        assert!(nat.receive(Instant::now(), &other));
        assert_eq!(nat.counters().snapshot().fragments_bad, 1);
        // An incomplete one is given up after the timeout, and counted.
        assert!(nat.receive(Instant::now(), &fragments(&frame, 1480, 79)[0]));
        nat.poll(Instant::now() + Duration::from_secs(5), &mut |_, _| {});
        assert_eq!(nat.counters().snapshot().reassembly_dropped, 1);
    }

    #[test]
    fn later_fragments_to_the_gateway_follow_their_first() {
        // A sandbox's large reply to a published UDP port's loopback client
        // (shown as the gateway's address): the first fragment is claimed by
        // its ports, the later ones because their first was.
        let listener = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut nat = engine(Limits::default());
        nat.add_forward(ForwardSpec {
            transport: Transport::Udp,
            listener: listener.into(),
            target: SocketAddrV4::new(SB_IP, 8000),
            sandbox_mac: SB_MAC,
        })
        .expect("forward");
        let client = std::net::UdpSocket::bind("127.0.0.1:0").expect("client");
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        client.send_to(b"hi", addr).expect("send");
        let out = wait_frames(&mut nat);
        let eth = EthernetFrame::new_checked(&out[0][..]).expect("eth");
        let ip = Ipv4Packet::new_checked(eth.payload()).expect("ip");
        let udp = smoltcp::wire::UdpPacket::new_checked(ip.payload()).expect("udp");
        assert_eq!(ip.src_addr(), GW_IP);
        let shown = udp.src_port();
        let data: Vec<u8> = (0..3000u32).map(|i| (i * 3) as u8).collect();
        let reply = udp_frame(8000, (GW_IP, shown), &data);
        let [first, rest] = fragments(&reply, 1480, 5);
        // A later fragment whose first never came stays with the gateway.
        assert!(!nat.receive(Instant::now(), &fragments(&reply, 1480, 6)[1]));
        assert!(nat.receive(Instant::now(), &first));
        assert!(nat.receive(Instant::now(), &rest));
        poll(&mut nat);
        let mut buf = [0u8; 4096];
        let (n, _) = client.recv_from(&mut buf).expect("the reply");
        assert_eq!(&buf[..n], &data[..]);
    }

    /// An engine whose gateway address stands for the host's loopback
    /// (`host-loopback=gateway`), with DNS served on the gateway or not.
    fn gateway_loopback_engine(dns_on_gateway: bool) -> NatEngine {
        let mut nat = engine(Limits::default());
        nat.net.host_loopback = false;
        nat.net.gateway_loopback = true;
        nat.net.dns_on_gateway = dns_on_gateway;
        nat
    }

    #[test]
    fn gateway_address_reaches_host_loopback_when_asked() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
        let port = listener.local_addr().expect("addr").port();
        // Off by default: the gateway keeps its address.
        let mut plain = engine(Limits::default());
        assert!(!plain.receive(Instant::now(), &syn(40000, (GW_IP, port))));

        let mut nat = gateway_loopback_engine(true);
        assert!(nat.receive(Instant::now(), &syn(40000, (GW_IP, port))));
        let out = wait_frames(&mut nat);
        let (src, dst, flags, _) = tcp_of(&out[0]);
        assert_eq!(
            (src, dst),
            (GW_IP, SB_IP),
            "the reply comes from the gateway"
        );
        assert_eq!(flags, (true, true, false), "SYN-ACK");
        assert!(
            listener.accept().is_ok(),
            "connected to the host's loopback"
        );
        // DNS served on the gateway stays with it; ping too.
        assert!(!nat.receive(Instant::now(), &syn(40001, (GW_IP, 53))));
        assert!(!nat.receive(Instant::now(), &udp_frame(5353, (GW_IP, 53), b"q")));
        // 169.254.1.2 is not mapped under this setting.
        assert!(nat.receive(Instant::now(), &syn(40002, (HOST_LOOPBACK_ADDR, port))));
        assert_eq!(nat.counters().snapshot().prohibited, 1);
    }

    #[test]
    fn gateway_loopback_takes_port_53_when_dns_lives_elsewhere() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let port = server.local_addr().expect("addr").port();
        let mut nat = gateway_loopback_engine(false);
        assert!(nat.receive(Instant::now(), &syn(40001, (GW_IP, 53))));
        assert!(nat.receive(Instant::now(), &udp_frame(5353, (GW_IP, port), b"hi")));
        poll(&mut nat);
        let mut buf = [0u8; 8];
        let (n, _) = server.recv_from(&mut buf).expect("datagram at the host");
        assert_eq!(&buf[..n], b"hi");
    }

    #[test]
    fn outbound_address_binds_host_sockets() {
        // What the host is given does not matter: the choice is tested on
        // inputs, the bind on a socket that never connects (nothing is
        // sent to the documentation address 192.0.2.1). The bind and
        // connect together, to a server that sees the address, is
        // tests/nat.rs::routed_egress_reaches_the_world_from_the_daemons_own_address.
        let outbound = Ipv4Addr::new(127, 0, 0, 2);
        let outside = Ipv4Addr::new(192, 0, 2, 1);
        assert_eq!(outbound_for(Some(outbound), outside), Some(outbound));
        assert_eq!(outbound_for(None, outside), None);
        // The host's loopback is reached from loopback: never bound.
        assert_eq!(outbound_for(Some(outside), Ipv4Addr::LOCALHOST), None);
        assert_eq!(
            outbound_for(Some(outbound), Ipv4Addr::new(127, 9, 9, 9)),
            None
        );

        let local = |fd: &OwnedFd| {
            let addr: SockaddrIn =
                socket::getsockname(std::os::fd::AsRawFd::as_raw_fd(fd)).expect("getsockname");
            addr.ip()
        };
        let tcp = || {
            socket::socket(
                AddressFamily::Inet,
                SockType::Stream,
                SockFlag::SOCK_CLOEXEC,
                None,
            )
            .expect("socket")
        };
        let fd = tcp();
        bind_outbound(&fd, Some(outbound), outside).expect("bind");
        assert_eq!(local(&fd), outbound);
        let fd = tcp();
        bind_outbound(&fd, Some(outbound), Ipv4Addr::LOCALHOST).expect("no bind");
        assert_eq!(local(&fd), Ipv4Addr::UNSPECIFIED);

        // UDP makes the same choice, then connects (here to loopback).
        let server = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let port = server.local_addr().expect("addr").port();
        let sock = udp_connect(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port), Some(outside))
            .expect("udp to loopback");
        assert_eq!(
            sock.local_addr().expect("local").ip(),
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        );
    }

    #[test]
    fn a_connect_that_never_finishes_is_reset() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
        let port = listener.local_addr().expect("addr").port();
        let mut nat = engine(Limits::default());
        assert!(nat.receive(Instant::now(), &syn(40006, (HOST_LOOPBACK_ADDR, port))));
        // The host side is never serviced; time passes.
        let mut out = Vec::new();
        let later = Instant::now() + CONNECT_TIMEOUT + Duration::from_secs(2);
        nat.poll(later, &mut |f, _| out.push(f[vnet::HDR_LEN..].to_vec()));
        let (_, _, flags, ack) = tcp_of(&out[0]);
        assert_eq!(flags, (false, true, true), "RST|ACK");
        assert_eq!(ack, 1001);
        let stats = nat.counters().snapshot();
        assert_eq!((stats.unreachable, stats.tcp_flows), (1, 0));
    }

    #[test]
    fn buffer_budget_shrinks_then_refuses_and_comes_back() {
        use crate::gateway::nat::Budget;
        const NB_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 3);
        const NB_MAC: [u8; 6] = [0x02, 0x42, 10, 77, 0, 3];
        let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
        let port = listener.local_addr().expect("addr").port();
        let dst = (HOST_LOOPBACK_ADDR, port);
        // 1 MiB per sandbox: one full flow (512 KiB, half), then 16 small
        // ones of 32 KiB, then nothing.
        let budget = Budget {
            per_sandbox: 1 << 20,
            total: 64 << 20,
        };
        let mut nat = engine_with_budget(Limits::default(), budget);
        for i in 0..18u16 {
            assert!(nat.receive(Instant::now(), &syn(41000 + i, dst)));
        }
        let out = poll(&mut nat);
        assert_eq!(out.len(), 1, "one SYN refused");
        let (_, _, flags, _) = tcp_of(&out[0]);
        assert_eq!(flags, (false, true, true), "with a RST");
        let stats = nat.counters().snapshot();
        assert_eq!((stats.tcp_flows, stats.buffer_small), (17, 16));
        assert_eq!((stats.buffer_limited, stats.limited), (1, 1));
        assert_eq!(stats.buffer_bytes, (1 << 20) as u64, "the whole budget");
        assert_eq!(nat.net.nat.buffers(), 1 << 20);
        // A neighbour's first flow still gets full buffers (its own
        // budget is too small for a bulk one).
        let b_syn = tcp_frame_from((NB_IP, NB_MAC), 42000, dst, TcpControl::Syn, 1, None);
        assert!(nat.receive(Instant::now(), &b_syn));
        assert_eq!(nat.counters().snapshot().buffer_small, 16);
        // The flows complete their handshakes on buffers of those sizes.
        let deadline = Instant::now() + Duration::from_secs(5);
        while nat.counters().snapshot().tcp_opened < 18 && Instant::now() < deadline {
            nat.service_host(Instant::now());
            poll(&mut nat);
        }
        assert_eq!(nat.counters().snapshot().tcp_opened, 18);
        let small = nat
            .slots
            .iter()
            .filter_map(|s| match &s.flow {
                Some(Flow::Tcp(f)) => f.handle,
                _ => None,
            })
            .filter(|&h| nat.sockets.get::<tcp::Socket>(h).recv_capacity() == 16 << 10)
            .count();
        assert_eq!(small, 16);
        // Their host sockets' buffers are small too (the kernel reports
        // twice what was set).
        let host_small = nat
            .slots
            .iter()
            .filter_map(|s| match &s.flow {
                Some(Flow::Tcp(f)) => socket::getsockopt(&f.stream, sockopt::SndBuf).ok(),
                _ => None,
            })
            .filter(|&n| n == 2 * budget::HOST_SMALL_BUFFER)
            .count();
        assert_eq!(host_small, 16);
        // Gone with the sandbox: the budgets come back.
        nat.forget_sandbox(SB_IP);
        let stats = nat.counters().snapshot();
        assert_eq!(stats.buffer_bytes, TCP_FULL.bytes() as u64, "B's alone");
        nat.forget_sandbox(NB_IP);
        assert_eq!(nat.counters().snapshot().buffer_bytes, 0);
        assert_eq!(nat.net.nat.buffers(), 0);
    }

    #[test]
    fn kept_sockets_go_before_a_flow_is_refused_for_the_daemons_budget() {
        use crate::gateway::nat::Budget;
        let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
        let dst = (
            HOST_LOOPBACK_ADDR,
            listener.local_addr().expect("addr").port(),
        );
        let keep = |nat: &mut NatEngine| {
            for _ in 0..SPARE_BULK_SOCKETS {
                nat.spare_bulk.push(tcp_socket(TCP_BULK));
                nat.net.nat.buffers.fetch_add(TCP_BULK.bytes(), Relaxed);
            }
        };
        // Four kept bulk sockets fill the daemon's budget: the next flow
        // would be refused, so they go, and it gets a bulk buffer itself.
        let budget = Budget {
            per_sandbox: 64 << 20,
            total: SPARE_BULK_SOCKETS * TCP_BULK.bytes() + (16 << 10),
        };
        let mut nat = engine_with_budget(Limits::default(), budget);
        keep(&mut nat);
        assert!(nat.receive(Instant::now(), &syn(40000, dst)));
        assert!(poll(&mut nat).is_empty(), "not refused");
        assert!(nat.spare_bulk.is_empty());
        assert_eq!(nat.net.nat.buffers(), TCP_BULK.bytes());
        assert_eq!(nat.counters().snapshot().buffer_limited, 0);
        // Refused by the sandbox's own budget: they stay.
        let budget = Budget {
            per_sandbox: 1000,
            total: 1 << 30,
        };
        let mut nat = engine_with_budget(Limits::default(), budget);
        keep(&mut nat);
        assert!(nat.receive(Instant::now(), &syn(40001, dst)));
        let (_, _, flags, _) = tcp_of(&poll(&mut nat)[0]);
        assert_eq!(flags, (false, true, true), "refused");
        assert_eq!(nat.spare_bulk.len(), SPARE_BULK_SOCKETS);
        let stats = nat.counters().snapshot();
        assert_eq!((stats.buffer_limited, stats.tcp_flows), (1, 0));
    }

    #[test]
    fn udp_endpoints_are_charged_to_the_sandbox_that_made_them() {
        use crate::gateway::nat::Budget;
        let server = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let port = server.local_addr().expect("addr").port();
        // 1 MiB: one endpoint with full buffers, then 4 small ones.
        let budget = Budget {
            per_sandbox: 1 << 20,
            total: 64 << 20,
        };
        let mut nat = engine_with_budget(Limits::default(), budget);
        for i in 0..6u16 {
            // Distinct endpoints: ports of the host's loopback (only the
            // first has a server; the rest are never answered).
            let frame = udp_frame(6000, (HOST_LOOPBACK_ADDR, port.wrapping_add(i)), b"x");
            assert!(nat.receive(Instant::now(), &frame));
        }
        let stats = nat.counters().snapshot();
        assert_eq!((stats.udp_flows, stats.buffer_small), (5, 4));
        assert_eq!(stats.buffer_limited, 1);
        assert_eq!(stats.buffer_bytes, (1 << 20) as u64);
        // The small ones still carry the largest datagram.
        let big = vec![7u8; 65507];
        let last = (HOST_LOOPBACK_ADDR, port.wrapping_add(4));
        assert!(nat.receive(Instant::now(), &udp_frame(6000, last, &big)));
        let later = Instant::now() + UDP_IDLE + Duration::from_secs(2);
        nat.poll(later, &mut |_, _| {});
        let stats = nat.counters().snapshot();
        assert_eq!((stats.udp_flows, stats.buffer_bytes), (0, 0));
        assert_eq!(nat.net.nat.buffers(), 0);
    }

    #[test]
    fn per_sandbox_limit_resets_the_excess() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
        let port = listener.local_addr().expect("addr").port();
        let mut nat = engine(Limits {
            per_sandbox: 1,
            total: 10,
        });
        assert!(nat.receive(Instant::now(), &syn(40003, (HOST_LOOPBACK_ADDR, port))));
        assert!(nat.receive(Instant::now(), &syn(40004, (HOST_LOOPBACK_ADDR, port))));
        let out = poll(&mut nat);
        let (_, _, flags, _) = tcp_of(&out[0]);
        assert_eq!(flags, (false, true, true), "the second SYN is reset");
        let stats = nat.counters().snapshot();
        assert_eq!((stats.limited, stats.tcp_flows), (1, 1));
        // A stray segment of no flow is reset too.
        let stray = tcp_frame(40005, (HOST_LOOPBACK_ADDR, port), TcpControl::None, 5);
        assert!(nat.receive(Instant::now(), &stray));
        assert_eq!(poll(&mut nat).len(), 1);
        // Forgetting the sandbox frees its flows and the daemon-wide slots.
        nat.forget_sandbox(SB_IP);
        assert_eq!(nat.counters().snapshot().tcp_flows, 0);
        assert_eq!(nat.net.nat.flows(), 0);
    }
}
