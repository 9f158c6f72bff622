//! The data plane of one network: a forwarding thread over TAP file
//! descriptors, with the network's gateway behind it.
//!
//! # Theory of operation
//!
//! Each network gets one thread, `warren-sw-<network>`, that owns everything
//! the frames touch: the forwarding core ([`core::Core`]: anti-spoofing, MAC
//! table, counters), the gateway ([`Gateway`]: smoltcp), one epoll instance,
//! every port's TAP fd and one frame buffer. Since nothing on the frame path
//! is shared, nothing on it is locked (DESIGN "Data plane").
//!
//! The loop:
//!
//! 1. `epoll_wait` (level-triggered) over the TAP fds and one eventfd, with a
//!    timeout from the gateway's timers, capped at [`MAX_WAIT`] (which also
//!    paces MAC aging).
//! 2. For every readable port, up to [`BATCH`] non-blocking reads into the
//!    single preallocated buffer, stopping at `EAGAIN` (STYLE item 5: bounded
//!    work per wakeup, so one busy sandbox cannot starve the others; level
//!    triggering brings the rest back next round). Each frame goes through
//!    [`core::Core::ingress_vnet`] and is written straight to the destination
//!    TAP(s) with `write`. No allocation per frame, no syscall but the read
//!    and the writes.
//! 3. Frames for the gateway are queued in it; after the port's batch the
//!    gateway runs, and whatever it sends is forwarded with
//!    [`core::Core::from_gateway`].
//! 4. The eventfd means commands are waiting in the mpsc queue (add a port,
//!    remove one, new DNS names, stop) or answers came back from the DNS
//!    forwarder. They are applied first in a wakeup, before any port's
//!    frames, and between batches: configuration reaches the loop as
//!    messages, never as a lock. Handling the eventfd first means a name
//!    table sent before a sandbox's query was written is in force when
//!    that query is answered.
//!
//! # Offloads
//!
//! TAP fds carry a virtio-net header before each frame ([`vnet`]): the
//! buffer keeps [`vnet::HDR_LEN`] bytes of room before the frame, a TAP is
//! read into the whole buffer and a plain port ([`PortSpec::vnet_hdr`]
//! false) after the room. The core checks the header with the frame and
//! says what it offloads ([`vnet::Offload`]); a frame to a TAP is written
//! with a header rebuilt from that in the room, in one `write`, so a
//! partial checksum crosses sandbox to sandbox unsummed. To the gateway's
//! own interface, and to a plain port, the checksum is completed first, in
//! the buffer. The NAT takes partial checksums as they are and emits its
//! TCP with partial ones too.
//!
//! # DNS
//!
//! The gateway serves DNS (see [`crate::gateway::dns`]). Names arrive as a
//! whole new [`NameTable`] with [`SwitchHandle::set_names`]. Queries for
//! names that are not local leave the thread as [`ForwardJob`]s `try_send`-ed
//! to the shared [`Forwarder`] (never blocking: a full queue answers
//! SERVFAIL at once), each naming its client ([`ClientKey`]: this network
//! and the asker's address), which the forwarder shares its slots out by.
//! Each job's callback `try_send`s the answer into this
//! switch's bounded reply queue ([`DNS_REPLY_QUEUE`]) and writes the
//! eventfd; the thread hands it to the gateway on its next wakeup. Without
//! a forwarder ([`NetworkSpec::dns`] `None`), non-local names get SERVFAIL.
//!
//! # NAT
//!
//! With [`NetworkSpec::nat`] set, a [`NatEngine`] sits beside the gateway:
//! every gateway frame is offered to [`NatEngine::receive`] first, which
//! takes IPv4 to outside addresses; the rest goes to the gateway as before.
//! The engine's host sockets live in an epoll of its own, registered here
//! under `NAT_TOKEN`; it is polled with the gateway and its frames are
//! forwarded the same way. Published ports reach the engine as whole
//! listeners ([`SwitchHandle::add_forward`], a command like any other), and
//! leave with [`SwitchHandle::remove_forward`], which closes the listener
//! before it answers, so the host port is free again when it returns. A
//! removed port's flows, and the forwards to its address, are dropped with
//! it. Every
//! switch, with or without NAT, registers its subnet with
//! [`nat::container_subnets`] while it runs, so no NAT forwards into it.
//!
//! Writes never block: a full destination (`EAGAIN`, `ENOBUFS`) drops the
//! frame and counts a write error, as a full NIC ring would. A read of
//! `EIO`, `EBADFD`, `ENODEV` or `ENXIO` (or a hang-up) means the TAP's
//! device went away with its namespace: the port is deregistered, its fd
//! closed, and [`NetworkSpec::on_port_gone`] told, so the control plane can
//! free the endpoint within a second (DESIGN "Process model"). Other read
//! errors are counted and warned about at most every [`WARN_EVERY`]; a port
//! failing [`MAX_READ_ERRORS`] times in a row is treated as gone, so a broken
//! fd can never spin the loop.
//!
//! The control plane talks to the thread through [`SwitchHandle`] (which is
//! `Send + Sync`); counters are relaxed atomics it reads without stopping the
//! thread. Dropping the handle stops the thread and closes every fd.

pub mod core;
pub mod vnet;
pub mod vxlan;

use std::collections::BTreeMap;
use std::io::{self, IoSlice};
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::uio::writev;
use nix::unistd::{read, write};
use serde::Serialize;
use tracing::{debug, info, trace, warn};

use self::core::{Core, CoreConfig, Counters, Decision, NetworkCounters, PortCounters};
pub use self::core::{DropReason, PortError, PortId, DEFAULT_MAC_AGE, DEFAULT_MAC_TABLE_CAP};
use self::vnet::Offload;
use crate::gateway::dns::{
    ClientKey, DnsCounters, DnsStats, ForwardError, ForwardJob, ForwardResult, Forwarder, NameTable,
};
use crate::gateway::nat::{
    self, ForwardId, ForwardSpec, NatCounters, NatEngine, NatStats, NetworkNat, SubnetGuard,
};
use crate::gateway::{Gateway, GatewayConfig, GatewayCounters, GatewayStats};

/// Size of the one frame buffer: the largest TAP frame (IP MTU 65535 plus
/// the Ethernet header), rounded up.
pub const FRAME_BUFFER: usize = 68 * 1024;

/// Most frames read from one port per wakeup.
pub const BATCH: usize = 64;

/// Longest epoll wait; also the pace of MAC aging.
pub const MAX_WAIT: Duration = Duration::from_secs(1);

/// Least time between two warnings of one kind.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// Consecutive failed reads after which a port is treated as gone.
pub const MAX_READ_ERRORS: u32 = 100;

/// Most forwarded DNS answers waiting for the switch thread (more than the
/// gateway ever has pending, so it does not fill in practice).
pub const DNS_REPLY_QUEUE: usize = 512;

/// epoll user data of the command eventfd (port ids are 32-bit).
const WAKE_TOKEN: u64 = u64::MAX;

/// epoll user data of the NAT engine's own epoll fd (see [`crate::gateway::nat`]).
const NAT_TOKEN: u64 = u64::MAX - 0x4e41;

/// Most epoll events taken per wait.
const EVENTS: usize = 64;

/// Callback told that a port's device went away (see [`NetworkSpec`]).
pub type PortGoneFn = Box<dyn Fn(PortId) + Send>;

/// The control plane's handle on one switch thread.
pub struct SwitchHandle {
    name: String,
    commands: mpsc::Sender<Command>,
    wake: Arc<EventFd>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    thread_id: ThreadId,
}

impl SwitchHandle {
    /// Start the switch thread of `spec`'s network, with no ports.
    pub fn spawn(spec: NetworkSpec) -> io::Result<SwitchHandle> {
        let start = Instant::now();
        let mut gateway = Gateway::new(&spec.gateway, smoltcp::time::Instant::ZERO)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let forward_timeout = spec.dns.as_ref().map(|f| {
            smoltcp::time::Duration::from_micros(
                u64::try_from(f.bound().as_micros()).unwrap_or(u64::MAX),
            )
        });
        if let Some(ip) = spec.dns_address {
            if let Err(e) = gateway.set_dns_address(ip) {
                warn!(network = %spec.name, error = %e, "DNS stays at the gateway's address");
            }
        }
        if spec.serve_dns {
            gateway.enable_dns(&spec.name, forward_timeout);
        }
        let dns_counters = gateway.dns_counters().unwrap_or_default();
        let core = Core::new(&CoreConfig {
            gateway_mac: spec.gateway.mac,
            mac_table_cap: spec.mac_table_cap,
            mac_age: DEFAULT_MAC_AGE,
            icc: spec.icc,
        });
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        let wake = Arc::new(EventFd::from_value_and_flags(
            0,
            EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK,
        )?);
        epoll.add(
            wake.as_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, WAKE_TOKEN),
        )?;
        let nat = match spec.nat {
            Some(net) => {
                let nat = NatEngine::new(net, &spec.gateway)?;
                epoll.add(nat.fd(), EpollEvent::new(EpollFlags::EPOLLIN, NAT_TOKEN))?;
                Some(nat)
            }
            None => None,
        };
        // Every network's subnet, so no NAT ever forwards into it.
        let subnet = ipnet::Ipv4Net::new(spec.gateway.ip, spec.gateway.prefix_len)
            .ok()
            .map(|net| nat::container_subnets().register(net));

        let shared = Arc::new(Shared {
            counters: Arc::clone(core.counters()),
            gateway: gateway.counters(),
            dns: dns_counters,
            nat: nat.as_ref().map(NatEngine::counters),
            ports: Mutex::new(BTreeMap::new()),
        });
        let (commands, receiver) = mpsc::channel();
        let (dns_reply_tx, dns_replies) = mpsc::sync_channel(DNS_REPLY_QUEUE);
        let name = spec.name.replace('\0', "");
        let engine = Engine {
            name: name.clone(),
            core,
            gateway,
            epoll,
            wake: Arc::clone(&wake),
            commands: receiver,
            ports: Vec::new(),
            shared: Arc::clone(&shared),
            on_port_gone: spec.on_port_gone,
            forwarder: spec.dns,
            dns_network: Arc::from(name.as_str()),
            dns_reply_tx,
            dns_replies,
            nat,
            _subnet: subnet,
            buf: vec![0u8; vnet::HDR_LEN + FRAME_BUFFER],
            start,
            last_expire: start,
            warn_read: RateLimit::default(),
            warn_write: RateLimit::default(),
            warn_wait: RateLimit::default(),
        };
        let thread = thread::Builder::new()
            .name(format!("warren-sw-{name}"))
            .spawn(move || engine.run())?;
        let thread_id = thread.thread().id();
        Ok(SwitchHandle {
            name,
            commands,
            wake,
            shared,
            thread: Some(thread),
            thread_id,
        })
    }

    /// Add a port; returns once the thread forwards its frames.
    ///
    /// Errors: the port's MAC or address is invalid or taken (kind
    /// `InvalidInput`, with a [`PortError`] inside), the fd cannot be made
    /// non-blocking or polled, or the switch has stopped. On error the fd is
    /// closed.
    pub fn add_port(&self, port: PortSpec) -> io::Result<PortId> {
        if thread::current().id() == self.thread_id {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "add_port called from the switch's own thread (on_port_gone callback); call it from another thread",
            ));
        }
        set_nonblocking(&port.fd)?;
        let (reply, answer) = mpsc::channel();
        self.command(Command::AddPort(port, reply))?;
        answer.recv().map_err(|_| stopped())?
    }

    /// Remove a port and close its fd; returns once done. Unknown (or already
    /// gone) ports are ignored. From the switch thread itself (the
    /// `on_port_gone` callback) it only queues the removal.
    pub fn remove_port(&self, id: PortId) {
        let (reply, answer) = mpsc::channel();
        if self.command(Command::RemovePort(id, reply)).is_err() {
            return;
        }
        if thread::current().id() != self.thread_id {
            let _ = answer.recv();
        }
    }

    /// Serve a published port on this network (see
    /// [`crate::gateway::nat`]); returns once the listener is polled.
    /// Errors: the network has no NAT (internal networks), the listener
    /// cannot be polled, or the switch has stopped. On error the listener
    /// is closed.
    pub fn add_forward(&self, spec: ForwardSpec) -> io::Result<ForwardId> {
        if thread::current().id() == self.thread_id {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "add_forward called from the switch's own thread",
            ));
        }
        let (reply, answer) = mpsc::channel();
        self.command(Command::AddForward(spec, reply))?;
        answer.recv().map_err(|_| stopped())?
    }

    /// Stop serving a published port: its listener is closed and its flows
    /// reset before this returns (so the host port can be bound again at
    /// once). Unknown ids are ignored.
    pub fn remove_forward(&self, id: ForwardId) {
        let (reply, answer) = mpsc::channel();
        if self.command(Command::RemoveForward(id, reply)).is_err() {
            return;
        }
        if thread::current().id() != self.thread_id {
            let _ = answer.recv();
        }
    }

    /// Answer DNS from `table` from now on. A message to the thread (no
    /// lock, no waiting); it takes effect before any frame that arrives
    /// after this call. The daemon passes the same `Arc` to every switch.
    pub fn set_names(&self, table: Arc<NameTable>) {
        if self.command(Command::SetNames(table)).is_err() {
            debug!(network = %self.name, "switch: names not set, thread stopped");
        }
    }

    /// The network's DNS counters, shared with whatever else answers DNS
    /// for it (the embedded DNS in its sandboxes counts there too).
    pub fn dns_counters(&self) -> Arc<DnsCounters> {
        Arc::clone(&self.shared.dns)
    }

    /// Every counter of the switch, its gateway and its ports.
    pub fn stats(&self) -> SwitchStats {
        let ports = self
            .shared
            .ports()
            .iter()
            .map(|(id, info)| info.stats(*id))
            .collect();
        SwitchStats {
            network: self.name.clone(),
            counters: self.shared.counters.snapshot(),
            gateway: self.shared.gateway.snapshot(),
            dns: self.shared.dns.snapshot(),
            nat: self.shared.nat.as_ref().map(|c| c.snapshot()),
            ports,
        }
    }

    /// The network's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Queue a command and wake the thread.
    fn command(&self, command: Command) -> io::Result<()> {
        self.commands.send(command).map_err(|_| stopped())?;
        self.wake.write(1)?;
        Ok(())
    }
}

impl Drop for SwitchHandle {
    fn drop(&mut self) {
        if self.command(Command::Stop).is_err() {
            debug!(network = %self.name, "switch: thread already stopped");
        }
        let Some(thread) = self.thread.take() else {
            return;
        };
        // Dropped from the switch's own callback: it stops after returning.
        if thread::current().id() == self.thread_id {
            return;
        }
        if thread.join().is_err() {
            warn!(network = %self.name, "switch: thread panicked");
        }
    }
}

/// What a switch is for: one network.
pub struct NetworkSpec {
    /// The network's name (thread name and logs).
    pub name: String,
    /// The network's gateway.
    pub gateway: GatewayConfig,
    /// Bound of the MAC table.
    pub mac_table_cap: usize,
    /// Called on the switch thread after a port's TAP device went away and
    /// the port was already removed (its fd closed). It must return quickly
    /// and must not wait for a lock that a thread calling or dropping the
    /// [`SwitchHandle`] may hold (dropping joins this thread): send the id to
    /// a channel and act elsewhere. It may call
    /// [`SwitchHandle::remove_port`], which then does not wait.
    pub on_port_gone: Option<PortGoneFn>,
    /// The DNS forwarder shared by every network; `None`: never forward
    /// (non-local names get SERVFAIL), e.g. in unit tests.
    pub dns: Option<Arc<Forwarder>>,
    /// NAT egress ([`crate::gateway::nat`]); `None`: nothing leaves the
    /// network (internal networks, unit tests).
    pub nat: Option<NetworkNat>,
    /// Whether the gateway serves DNS (the `dns` network option).
    pub serve_dns: bool,
    /// A second gateway address where DNS is served instead of the
    /// gateway's own (the `dns-address` network option).
    pub dns_address: Option<std::net::Ipv4Addr>,
    /// Whether sandboxes may reach each other (Docker's `enable_icc`);
    /// false: only the gateway (see [`core::CoreConfig::icc`]).
    pub icc: bool,
}

impl NetworkSpec {
    /// A spec with the default MAC table bound and no callback.
    pub fn new(name: impl Into<String>, gateway: GatewayConfig) -> NetworkSpec {
        NetworkSpec {
            name: name.into(),
            gateway,
            mac_table_cap: DEFAULT_MAC_TABLE_CAP,
            on_port_gone: None,
            dns: None,
            nat: None,
            serve_dns: true,
            dns_address: None,
            icc: true,
        }
    }
}

/// A port to add: a TAP fd and the endpoint it is bound to.
pub struct PortSpec {
    /// The TAP fd (`IFF_TAP | IFF_NO_PI`); made non-blocking by `add_port`.
    pub fd: OwnedFd,
    /// Each frame on `fd` is preceded by a virtio-net header (TAPs opened
    /// by [`crate::sys::tap::create_tap`]: `IFF_VNET_HDR`, checksum
    /// offload); false for fds that carry bare frames.
    pub vnet_hdr: bool,
    /// The endpoint's MAC: the only source MAC accepted from this port.
    pub mac: [u8; 6],
    /// The endpoint's IPv4 address: the only source address accepted.
    pub ipv4: Ipv4Addr,
    /// The endpoint id, for logs and stats.
    pub label: String,
}

/// Counters of a whole switch, for the control plane and the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub struct SwitchStats {
    /// The network's name.
    pub network: String,
    /// Network-wide counters.
    pub counters: NetworkCounters,
    /// The gateway's counters.
    pub gateway: GatewayStats,
    /// The gateway's DNS server's counters.
    pub dns: DnsStats,
    /// NAT egress counters; absent on networks without egress.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nat: Option<NatStats>,
    /// Every registered port, by id.
    pub ports: Vec<PortStats>,
}

/// Counters of one port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub struct PortStats {
    pub id: PortId,
    /// The endpoint id given in [`PortSpec::label`].
    pub label: String,
    /// `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    pub ipv4: Ipv4Addr,
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    /// Frames from this port that were dropped.
    pub dropped: u64,
    /// Frames for this port whose write failed.
    pub write_errors: u64,
}

/// `aa:bb:cc:dd:ee:ff`, as `ip link` and Docker print MACs.
fn format_mac(mac: [u8; 6]) -> String {
    let [a, b, c, d, e, f] = mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

fn stopped() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "the network's switch thread has stopped",
    )
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL)?);
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// A message from the handle to the thread.
enum Command {
    AddPort(PortSpec, mpsc::Sender<io::Result<PortId>>),
    RemovePort(PortId, mpsc::Sender<()>),
    AddForward(ForwardSpec, mpsc::Sender<io::Result<ForwardId>>),
    RemoveForward(ForwardId, mpsc::Sender<()>),
    SetNames(Arc<NameTable>),
    Stop,
}

/// What the handle reads without stopping the thread.
struct Shared {
    counters: Arc<Counters>,
    gateway: Arc<GatewayCounters>,
    dns: Arc<DnsCounters>,
    nat: Option<Arc<NatCounters>>,
    /// Port registry, written by the thread on (rare) port changes only,
    /// never on the frame path.
    ports: Mutex<BTreeMap<PortId, PortInfo>>,
}

impl Shared {
    fn ports(&self) -> MutexGuard<'_, BTreeMap<PortId, PortInfo>> {
        // The map stays consistent even if a holder panicked.
        self.ports.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct PortInfo {
    label: String,
    mac: [u8; 6],
    ipv4: Ipv4Addr,
    counters: Arc<PortCounters>,
}

impl PortInfo {
    fn stats(&self, id: PortId) -> PortStats {
        let c = &self.counters;
        PortStats {
            id,
            label: self.label.clone(),
            mac: format_mac(self.mac),
            ipv4: self.ipv4,
            rx_frames: c.rx_frames.load(Relaxed),
            rx_bytes: c.rx_bytes.load(Relaxed),
            tx_frames: c.tx_frames.load(Relaxed),
            tx_bytes: c.tx_bytes.load(Relaxed),
            dropped: c.dropped.load(Relaxed),
            write_errors: c.write_errors.load(Relaxed),
        }
    }
}

/// Everything the switch thread owns.
struct Engine {
    name: String,
    core: Core,
    gateway: Gateway,
    epoll: Epoll,
    wake: Arc<EventFd>,
    commands: mpsc::Receiver<Command>,
    /// Port fds by slot (see [`PortId::slot`]).
    ports: Vec<Option<IoPort>>,
    shared: Arc<Shared>,
    on_port_gone: Option<PortGoneFn>,
    /// Where non-local DNS queries go.
    forwarder: Option<Arc<Forwarder>>,
    /// This network's half of the forwarder's fairness key.
    dns_network: Arc<str>,
    /// Forwarded DNS answers come back through this bounded queue.
    dns_reply_tx: mpsc::SyncSender<(u64, ForwardResult)>,
    dns_replies: mpsc::Receiver<(u64, ForwardResult)>,
    /// NAT egress, beside the gateway.
    nat: Option<NatEngine>,
    /// Keeps the network's subnet registered as a container subnet.
    _subnet: Option<SubnetGuard>,
    /// The one frame buffer: [`vnet::HDR_LEN`] bytes of room for the
    /// virtio-net header, then the frame.
    buf: Vec<u8>,
    /// Origin of the gateway's clock.
    start: Instant,
    last_expire: Instant,
    warn_read: RateLimit,
    warn_write: RateLimit,
    warn_wait: RateLimit,
}

impl Engine {
    fn run(mut self) {
        info!(network = %self.name, "switch: started");
        let mut events = [EpollEvent::empty(); EVENTS];
        'wait: loop {
            let timeout = self.timeout(Instant::now());
            let n = match self.epoll.wait(&mut events, timeout) {
                Ok(n) => n,
                Err(Errno::EINTR) => 0,
                Err(e) => {
                    if let Some(suppressed) = self.warn_wait.allow(Instant::now()) {
                        warn!(network = %self.name, error = %e, suppressed, "switch: epoll_wait failed");
                    }
                    thread::sleep(Duration::from_millis(10));
                    0
                }
            };
            let now = Instant::now();
            // Commands (e.g. new names) first, then the ports' frames.
            if events[..n].iter().any(|e| e.data() == WAKE_TOKEN) && !self.apply_commands() {
                break 'wait;
            }
            for event in events[..n].iter().filter(|e| e.data() != WAKE_TOKEN) {
                if event.data() == NAT_TOKEN {
                    if let Some(nat) = &mut self.nat {
                        nat.service_host(now);
                    }
                    continue;
                }
                let id = PortId::from_u32(event.data() as u32);
                self.service_port(now, id, event.events());
            }
            self.poll_gateway(now);
            if now.saturating_duration_since(self.last_expire) >= MAX_WAIT {
                self.last_expire = now;
                let expired = self.core.expire(now);
                if expired > 0 {
                    trace!(network = %self.name, expired, "switch: MAC entries aged out");
                }
            }
        }
        self.shared.ports().clear();
        info!(network = %self.name, "switch: stopped");
    }

    /// How long epoll may wait: until the gateway's next timer or the next
    /// MAC aging pass, at most [`MAX_WAIT`].
    fn timeout(&mut self, now: Instant) -> EpollTimeout {
        let until_expire = MAX_WAIT.saturating_sub(now.saturating_duration_since(self.last_expire));
        let wait = match self.gateway.poll_delay(self.gateway_now(now)) {
            Some(d) => Duration::from_micros(d.total_micros()).min(until_expire),
            None => until_expire,
        };
        let wait = match self.nat.as_mut().and_then(|nat| nat.poll_delay(now)) {
            Some(d) => wait.min(d),
            None => wait,
        };
        // Round up, so a sub-millisecond timer does not spin at 0 ms.
        let ms = wait.as_micros().div_ceil(1000).min(MAX_WAIT.as_millis());
        EpollTimeout::from(u16::try_from(ms).unwrap_or(u16::MAX))
    }

    fn gateway_now(&self, now: Instant) -> smoltcp::time::Instant {
        let micros = now.saturating_duration_since(self.start).as_micros();
        smoltcp::time::Instant::from_micros(i64::try_from(micros).unwrap_or(i64::MAX))
    }

    /// Apply queued commands; false when the thread must stop.
    fn apply_commands(&mut self) -> bool {
        // Reset the eventfd; EAGAIN just means another wakeup consumed it.
        let _ = self.wake.read();
        loop {
            match self.commands.try_recv() {
                Ok(Command::AddPort(spec, reply)) => {
                    let result = self.add_port(spec);
                    let _ = reply.send(result);
                }
                Ok(Command::RemovePort(id, reply)) => {
                    if self.remove_port(id) {
                        debug!(network = %self.name, port = %id, "switch: port removed");
                    }
                    let _ = reply.send(());
                }
                Ok(Command::AddForward(spec, reply)) => {
                    let result = match self.nat.as_mut() {
                        Some(nat) => nat.add_forward(spec),
                        None => Err(io::Error::new(
                            io::ErrorKind::Unsupported,
                            "the network has no NAT (internal networks publish no ports)",
                        )),
                    };
                    let _ = reply.send(result);
                }
                Ok(Command::RemoveForward(id, reply)) => {
                    if let Some(nat) = self.nat.as_mut() {
                        nat.remove_forward(id);
                    }
                    let _ = reply.send(());
                }
                Ok(Command::SetNames(table)) => self.gateway.set_dns_names(table),
                Ok(Command::Stop) | Err(mpsc::TryRecvError::Disconnected) => return false,
                Err(mpsc::TryRecvError::Empty) => break,
            }
        }
        let gateway_now = self.gateway_now(Instant::now());
        while let Ok((token, result)) = self.dns_replies.try_recv() {
            self.gateway.dns_forwarded(gateway_now, token, result);
        }
        true
    }

    fn add_port(&mut self, spec: PortSpec) -> io::Result<PortId> {
        let id = self
            .core
            .add_port(spec.mac, spec.ipv4)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let event = EpollEvent::new(EpollFlags::EPOLLIN, u64::from(id.as_u32()));
        if let Err(e) = self.epoll.add(spec.fd.as_fd(), event) {
            self.core.remove_port(id);
            return Err(e.into());
        }
        if let Some(counters) = self.core.port_counters(id) {
            let info = PortInfo {
                label: spec.label.clone(),
                mac: spec.mac,
                ipv4: spec.ipv4,
                counters: Arc::clone(counters),
            };
            self.shared.ports().insert(id, info);
        }
        let slot = id.slot();
        if self.ports.len() <= slot {
            self.ports.resize_with(slot + 1, || None);
        }
        debug!(network = %self.name, port = %id, label = %spec.label, ip = %spec.ipv4, "switch: port added");
        self.ports[slot] = Some(IoPort {
            id,
            fd: spec.fd,
            vnet: spec.vnet_hdr,
            label: spec.label,
            read_errors: 0,
        });
        Ok(id)
    }

    /// Deregister a port and close its fd; false if it was not there.
    fn remove_port(&mut self, id: PortId) -> bool {
        let Some(entry) = self.ports.get_mut(id.slot()) else {
            return false;
        };
        if !matches!(entry, Some(p) if p.id == id) {
            return false;
        }
        let Some(port) = entry.take() else {
            return false;
        };
        // Explicitly: the fd may have duplicates elsewhere, which would keep
        // the registration alive after close.
        if let Err(e) = self.epoll.delete(port.fd.as_fd()) {
            debug!(network = %self.name, port = %id, error = %e, "switch: epoll delete failed");
        }
        self.core.remove_port(id);
        let info = self.shared.ports().remove(&id);
        if let (Some(nat), Some(info)) = (self.nat.as_mut(), info) {
            nat.forget_sandbox(info.ipv4);
        }
        drop(port);
        true
    }

    /// Read and forward up to [`BATCH`] frames from a readable port.
    fn service_port(&mut self, now: Instant, id: PortId, flags: EpollFlags) {
        let (fed_gateway, outcome) = self.read_batch(now, id, flags);
        if fed_gateway {
            self.poll_gateway(now);
        }
        if let Batch::Gone(why) = outcome {
            self.port_gone(id, why);
        }
    }

    /// The read loop of one port. Returns whether the gateway got frames.
    fn read_batch(&mut self, now: Instant, id: PortId, flags: EpollFlags) -> (bool, Batch) {
        let Some(port) = self.port(id) else {
            return (false, Batch::Done); // removed earlier in this wakeup
        };
        // The fd stays open for the whole batch: only commands and
        // `port_gone`, which run outside this loop, close fds.
        let fd = port.fd.as_raw_fd();
        // A TAP's header lands in the room before the frame; a plain
        // port's frame after it, with nothing offloaded.
        let (vnet, at) = if port.vnet {
            (true, 0)
        } else {
            (false, vnet::HDR_LEN)
        };
        let mut errors = port.read_errors;
        let hangup = flags.intersects(EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR);
        let mut fed_gateway = false;
        let mut outcome = Batch::Done;
        for _ in 0..BATCH {
            match read(fd, &mut self.buf[at..]) {
                Ok(0) if hangup => {
                    outcome = Batch::Gone("hang-up");
                    break;
                }
                Ok(len) => {
                    errors = 0;
                    let hdr = match self.buf.first_chunk::<{ vnet::HDR_LEN }>() {
                        Some(bytes) if vnet => vnet::Header::parse(bytes),
                        _ => vnet::Header::NONE,
                    };
                    // A TAP read shorter than the header is an empty
                    // frame: a runt.
                    let end = (at + len).max(vnet::HDR_LEN);
                    fed_gateway |= forward(
                        &mut self.core,
                        &mut self.gateway,
                        &mut self.nat,
                        &self.ports,
                        (now, id, &hdr, &mut self.buf[..end]),
                        &mut self.warn_write,
                    );
                }
                Err(Errno::EAGAIN) => {
                    if hangup {
                        outcome = Batch::Gone("hang-up");
                    }
                    break;
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::EIO | Errno::EBADFD | Errno::ENODEV | Errno::ENXIO | Errno::EBADF) => {
                    outcome = Batch::Gone("device gone");
                    break;
                }
                Err(e) => {
                    self.core.counters().read_errors.fetch_add(1, Relaxed);
                    errors += 1;
                    if errors >= MAX_READ_ERRORS {
                        outcome = Batch::Gone("persistent read errors");
                    } else if let Some(suppressed) = self.warn_read.allow(now) {
                        warn!(network = %self.name, port = %id, error = %e, suppressed, "switch: read failed");
                    }
                    break;
                }
            }
        }
        if let Some(port) = self
            .ports
            .get_mut(id.slot())
            .and_then(Option::as_mut)
            .filter(|p| p.id == id)
        {
            port.read_errors = errors;
        }
        (fed_gateway, outcome)
    }

    fn port(&self, id: PortId) -> Option<&IoPort> {
        self.ports
            .get(id.slot())
            .and_then(Option::as_ref)
            .filter(|p| p.id == id)
    }

    /// A port's device went away: remove it and tell the control plane.
    fn port_gone(&mut self, id: PortId, why: &str) {
        let label = self.port(id).map(|p| p.label.clone()).unwrap_or_default();
        if !self.remove_port(id) {
            return;
        }
        info!(network = %self.name, port = %id, label = %label, why, "switch: port gone, removed");
        if let Some(callback) = &self.on_port_gone {
            if catch_unwind(AssertUnwindSafe(|| callback(id))).is_err() {
                warn!(network = %self.name, port = %id, "switch: on_port_gone callback panicked");
            }
        }
    }

    /// Run the gateway and forward what it sends.
    fn poll_gateway(&mut self, now: Instant) {
        let gateway_now = self.gateway_now(now);
        let Engine {
            gateway,
            core,
            ports,
            warn_write,
            nat,
            ..
        } = self;
        // The gateway's frames are small and summed by smoltcp.
        let mut out = |frame: &[u8]| match core.from_gateway(frame) {
            Decision::Unicast(to) => send_slice(core, ports, to, frame, warn_write),
            Decision::Flood => {
                for port in ports.iter().flatten() {
                    send_slice(core, ports, port.id, frame, warn_write);
                }
            }
            Decision::Gateway | Decision::Drop(_) => {}
        };
        gateway.poll(gateway_now, &mut out);
        // The NAT's come with room for the header, TCP partially summed.
        let mut out =
            |buf: &mut [u8], mut offload: Offload| match core.from_gateway(&buf[vnet::HDR_LEN..]) {
                Decision::Unicast(to) => send(core, ports, to, buf, &mut offload, warn_write),
                Decision::Flood => {
                    for port in ports.iter().flatten() {
                        send(core, ports, port.id, buf, &mut offload, warn_write);
                    }
                }
                Decision::Gateway | Decision::Drop(_) => {}
            };
        if let Some(nat) = nat {
            nat.poll(now, &mut out);
        }
        self.submit_dns_forwards(gateway_now);
    }

    /// Hand the gateway's non-local DNS queries to the forwarder without
    /// blocking; a refused one is answered SERVFAIL at the next poll.
    fn submit_dns_forwards(&mut self, gateway_now: smoltcp::time::Instant) {
        let forwards = self.gateway.take_dns_forwards();
        if forwards.is_empty() {
            return;
        }
        let avoid = self.gateway.dns_names().unwrap_or_default();
        for out in forwards {
            let token = out.token;
            let Some(forwarder) = &self.forwarder else {
                self.gateway
                    .dns_forwarded(gateway_now, token, Err(ForwardError::NoUpstream));
                continue;
            };
            let replies = self.dns_reply_tx.clone();
            let wake = Arc::clone(&self.wake);
            let counters = Arc::clone(&self.shared.dns);
            let job = ForwardJob {
                query: out.query,
                tcp: out.tcp,
                client: ClientKey::new(Arc::clone(&self.dns_network), out.client),
                upstreams: avoid.upstreams_of(&self.dns_network, out.client),
                avoid: Arc::clone(&avoid),
                done: Box::new(move |result| {
                    if replies.try_send((token, result)).is_ok() {
                        let _ = wake.write(1);
                    } else {
                        counters.dropped.fetch_add(1, Relaxed);
                    }
                }),
            };
            if forwarder.submit(job).is_err() {
                self.gateway
                    .dns_forwarded(gateway_now, token, Err(ForwardError::Overloaded));
            }
        }
    }
}

/// A registered port's fd.
struct IoPort {
    id: PortId,
    fd: OwnedFd,
    /// Frames on `fd` carry a virtio-net header.
    vnet: bool,
    label: String,
    /// Failed reads in a row.
    read_errors: u32,
}

/// How one port's batch ended.
enum Batch {
    /// Drained, or the batch limit reached.
    Done,
    /// The device is gone.
    Gone(&'static str),
}

/// Carry out the decision for one frame read from a port (`buf`: the
/// header's room, then the frame). Returns whether the gateway got the
/// frame.
fn forward(
    core: &mut Core,
    gateway: &mut Gateway,
    nat: &mut Option<NatEngine>,
    ports: &[Option<IoPort>],
    (now, from, hdr, buf): (Instant, PortId, &vnet::Header, &mut [u8]),
    warn_write: &mut RateLimit,
) -> bool {
    let (decision, mut offload) = core.ingress_vnet(now, from, hdr, &buf[vnet::HDR_LEN..]);
    match decision {
        Decision::Drop(_) => false,
        Decision::Unicast(to) => {
            send(core, ports, to, buf, &mut offload, warn_write);
            false
        }
        Decision::Gateway => {
            // Egress (to an outside address) goes to the NAT, the rest to
            // the gateway's own interface, which wants whole checksums.
            let frame = &mut buf[vnet::HDR_LEN..];
            if !nat
                .as_mut()
                .is_some_and(|nat| nat.receive_offload(now, frame, offload))
            {
                vnet::complete(frame, offload);
                gateway.receive(frame);
            }
            true
        }
        Decision::Flood => {
            for port in ports.iter().flatten().filter(|p| p.id != from) {
                send(core, ports, port.id, buf, &mut offload, warn_write);
            }
            let frame = &mut buf[vnet::HDR_LEN..];
            vnet::complete(frame, offload);
            gateway.receive(frame);
            true
        }
    }
}

/// Write one frame (`buf`: [`vnet::HDR_LEN`] bytes of room, then the
/// frame) to one port, without blocking; failures are counted. A TAP gets
/// the header for `offload` in the room; a plain port gets the frame with
/// its checksum completed (in `buf`, after which `offload` says so).
fn send(
    core: &Core,
    ports: &[Option<IoPort>],
    to: PortId,
    buf: &mut [u8],
    offload: &mut Offload,
    warn_write: &mut RateLimit,
) {
    let Some(port) = port_of(ports, to) else {
        return;
    };
    let result = if port.vnet {
        let (room, frame) = buf.split_at_mut(vnet::HDR_LEN);
        room.copy_from_slice(&vnet::encode(*offload, frame));
        write(&port.fd, buf).map(|n| n.saturating_sub(vnet::HDR_LEN))
    } else {
        let frame = &mut buf[vnet::HDR_LEN..];
        *offload = vnet::complete(frame, *offload);
        write(&port.fd, frame)
    };
    sent(core, port, result, warn_write);
}

/// Write one whole frame (complete checksums, no room before it: the
/// gateway's) to one port; a TAP gets an empty header before it.
fn send_slice(
    core: &Core,
    ports: &[Option<IoPort>],
    to: PortId,
    frame: &[u8],
    warn_write: &mut RateLimit,
) {
    let Some(port) = port_of(ports, to) else {
        return;
    };
    let result = if port.vnet {
        let hdr = vnet::Header::NONE.to_bytes();
        writev(&port.fd, &[IoSlice::new(&hdr), IoSlice::new(frame)])
            .map(|n| n.saturating_sub(vnet::HDR_LEN))
    } else {
        write(&port.fd, frame)
    };
    sent(core, port, result, warn_write);
}

fn port_of(ports: &[Option<IoPort>], to: PortId) -> Option<&IoPort> {
    ports
        .get(to.slot())
        .and_then(Option::as_ref)
        .filter(|p| p.id == to)
}

/// Count the outcome of a write to `port`.
fn sent(core: &Core, port: &IoPort, result: nix::Result<usize>, warn_write: &mut RateLimit) {
    let to = port.id;
    match result {
        Ok(len) => core.note_tx(to, len),
        Err(e @ (Errno::EAGAIN | Errno::ENOBUFS)) => {
            core.note_write_error(to);
            trace!(port = %to, error = %e, "switch: destination full, frame dropped");
        }
        Err(e) => {
            core.note_write_error(to);
            if let Some(suppressed) = warn_write.allow(Instant::now()) {
                warn!(port = %to, label = %port.label, error = %e, suppressed, "switch: write failed");
            }
        }
    }
}

/// Lets one warning through per [`WARN_EVERY`] and counts the rest.
#[derive(Debug, Default)]
struct RateLimit {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimit {
    /// `Some(suppressed since the last one)` when a warning may be logged.
    fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < WARN_EVERY => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The real loop, end to end, with `SOCK_SEQPACKET` socket pairs standing
    //! in for TAP fds (both keep message boundaries; no privileges needed).

    use super::*;
    use crate::gateway::testutil::*;
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    use smoltcp::wire::{
        ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
        Icmpv4Packet, Icmpv4Repr, Ipv4Packet,
    };

    const GW_MAC: [u8; 6] = [0x02, 0x42, 0x0a, 0x58, 0x00, 0x01];
    const GW_IP: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 1);
    const A_MAC: [u8; 6] = [0x02, 0x42, 0x0a, 0x58, 0x00, 0x02];
    const A_IP: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 2);
    const B_MAC: [u8; 6] = [0x02, 0x42, 0x0a, 0x58, 0x00, 0x03];
    const B_IP: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 3);
    const C_MAC: [u8; 6] = [0x02, 0x42, 0x0a, 0x58, 0x00, 0x04];
    const C_IP: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 4);

    /// How long a test waits for a frame that must arrive.
    const ARRIVE_MS: u16 = 5000;

    #[test]
    fn handle_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<SwitchHandle>();
    }

    fn spec(on_gone: Option<PortGoneFn>) -> NetworkSpec {
        let mut spec = NetworkSpec::new(
            "test",
            GatewayConfig {
                ip: GW_IP,
                prefix_len: 24,
                mac: GW_MAC,
                mtu: 65520,
            },
        );
        spec.on_port_gone = on_gone;
        spec
    }

    /// A port on `switch`, and the test's end of its "TAP".
    fn port(switch: &SwitchHandle, mac: [u8; 6], ip: Ipv4Addr, label: &str) -> (PortId, OwnedFd) {
        add_port(switch, mac, ip, label, false)
    }

    /// A port on `switch` over a socket pair, with or without a virtio-net
    /// header before each frame; the test's end of the pair.
    fn add_port(
        switch: &SwitchHandle,
        mac: [u8; 6],
        ip: Ipv4Addr,
        label: &str,
        vnet_hdr: bool,
    ) -> (PortId, OwnedFd) {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .expect("socketpair");
        let spec = PortSpec {
            fd: theirs,
            vnet_hdr,
            mac,
            ipv4: ip,
            label: label.to_string(),
        };
        (switch.add_port(spec).expect("add_port"), ours)
    }

    fn send_frame(fd: &OwnedFd, frame: &[u8]) {
        assert_eq!(write(fd, frame).expect("write"), frame.len());
    }

    /// The next frame on `fd`, or `None` after `ms` (or at EOF: empty vec).
    fn recv_frame(fd: &OwnedFd, ms: u16) -> Option<Vec<u8>> {
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, PollTimeout::from(ms)).expect("poll") == 0 {
            return None;
        }
        let mut buf = vec![0u8; FRAME_BUFFER];
        let n = read(fd.as_raw_fd(), &mut buf).expect("read");
        buf.truncate(n);
        Some(buf)
    }

    fn expect_frame(fd: &OwnedFd, what: &str) -> Vec<u8> {
        match recv_frame(fd, ARRIVE_MS) {
            Some(frame) if !frame.is_empty() => frame,
            Some(_) => panic!("{what}: EOF instead of a frame"),
            None => panic!("{what}: no frame within {ARRIVE_MS} ms"),
        }
    }

    fn parse_arp(frame: &[u8]) -> ArpRepr {
        let eth = EthernetFrame::new_checked(frame).expect("ethernet");
        assert_eq!(eth.ethertype(), EthernetProtocol::Arp);
        ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).expect("arp")).expect("arp repr")
    }

    #[test]
    fn forwards_end_to_end() {
        let switch = SwitchHandle::spawn(spec(None)).expect("spawn");
        let (a, a_fd) = port(&switch, A_MAC, A_IP, "endpoint-a");
        let (b, b_fd) = port(&switch, B_MAC, B_IP, "endpoint-b");
        let (c, c_fd) = port(&switch, C_MAC, C_IP, "endpoint-c");
        assert_ne!(a, b);

        // ARP from A for B floods: B and C get it verbatim.
        let who_has_b = arp_request(A_MAC, A_IP, B_IP);
        send_frame(&a_fd, &who_has_b);
        assert_eq!(expect_frame(&b_fd, "flooded ARP at B"), who_has_b);
        assert_eq!(expect_frame(&c_fd, "flooded ARP at C"), who_has_b);

        // B's unicast reply reaches A.
        let b_is_at = arp(B_MAC, A_MAC, ArpOperation::Reply, B_MAC, B_IP, A_MAC, A_IP);
        send_frame(&b_fd, &b_is_at);
        assert_eq!(expect_frame(&a_fd, "ARP reply at A"), b_is_at);

        // ARP for the gateway: flooded to B and C, answered by the gateway.
        let who_has_gw = arp_request(A_MAC, A_IP, GW_IP);
        send_frame(&a_fd, &who_has_gw);
        let reply = parse_arp(&expect_frame(&a_fd, "gateway ARP reply"));
        assert_eq!(
            reply,
            ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Reply,
                source_hardware_addr: EthernetAddress(GW_MAC),
                source_protocol_addr: GW_IP,
                target_hardware_addr: EthernetAddress(A_MAC),
                target_protocol_addr: A_IP,
            }
        );
        assert_eq!(expect_frame(&b_fd, "gateway ARP at B"), who_has_gw);
        assert_eq!(expect_frame(&c_fd, "gateway ARP at C"), who_has_gw);

        // ICMP echo to the gateway is answered.
        let ping = icmp_echo_request(A_MAC, GW_MAC, A_IP, GW_IP, 0x77, 1, b"warren");
        send_frame(&a_fd, &ping);
        let pong = expect_frame(&a_fd, "echo reply");
        let eth = EthernetFrame::new_checked(&pong[..]).expect("ethernet");
        assert_eq!(eth.dst_addr(), EthernetAddress(A_MAC));
        let ip = Ipv4Packet::new_checked(eth.payload()).expect("ipv4");
        assert_eq!((ip.src_addr(), ip.dst_addr()), (GW_IP, A_IP));
        let icmp = Icmpv4Packet::new_checked(ip.payload()).expect("icmp");
        assert!(matches!(
            Icmpv4Repr::parse(&icmp, &Default::default()),
            Ok(Icmpv4Repr::EchoReply {
                ident: 0x77,
                seq_no: 1,
                data: b"warren"
            })
        ));

        // Unicast A→B (a jumbo frame) reaches B only: C's next frame is the
        // broadcast sent after it.
        let bulk = ipv4_sized(A_MAC, B_MAC, A_IP, B_IP, 65_000);
        send_frame(&a_fd, &bulk);
        assert_eq!(expect_frame(&b_fd, "unicast at B"), bulk);
        let marker = arp_request(A_MAC, A_IP, Ipv4Addr::new(10, 88, 0, 200));
        send_frame(&a_fd, &marker);
        assert_eq!(expect_frame(&c_fd, "marker at C"), marker);
        assert_eq!(expect_frame(&b_fd, "marker at B"), marker);

        // A spoofed source address is dropped and counted; the next good
        // frame from A is the first B sees.
        let spoofed = ipv4_sized(A_MAC, B_MAC, C_IP, B_IP, 100);
        send_frame(&a_fd, &spoofed);
        let good = ipv4_sized(A_MAC, B_MAC, A_IP, B_IP, 100);
        send_frame(&a_fd, &good);
        assert_eq!(expect_frame(&b_fd, "good frame after spoofed"), good);

        let stats = switch.stats();
        assert_eq!(stats.network, "test");
        assert_eq!(stats.counters.dropped.spoofed_ip, 1);
        assert_eq!(stats.counters.dropped.total(), 1);
        assert_eq!(stats.ports.len(), 3);
        let a_stats = stats.ports.iter().find(|p| p.id == a).expect("a stats");
        assert_eq!(a_stats.label, "endpoint-a");
        assert_eq!(a_stats.mac, "02:42:0a:58:00:02");
        assert_eq!(a_stats.ipv4, A_IP);
        assert_eq!(a_stats.rx_frames, 7);
        assert_eq!(a_stats.dropped, 1);
        assert_eq!(a_stats.tx_frames, 3); // ARP reply from B, gateway ARP reply, echo reply
        assert!(stats.gateway.tx_frames >= 2);
        assert_eq!(stats.counters.write_errors, 0);
        let json = serde_json::to_value(&stats).expect("json");
        assert!(json["counters"]["dropped"]["spoofed_ip"].is_u64());
        assert!(json["ports"][0]["rx_frames"].is_u64());

        // remove_port closes the switch's end: the peer reads EOF.
        switch.remove_port(c);
        assert_eq!(recv_frame(&c_fd, ARRIVE_MS), Some(Vec::new()));
        assert_eq!(switch.stats().ports.len(), 2);
        switch.remove_port(c); // twice is harmless

        // Dropping the handle stops the thread and closes every fd.
        drop(switch);
        assert_eq!(recv_frame(&a_fd, ARRIVE_MS), Some(Vec::new()));
        assert_eq!(recv_frame(&b_fd, ARRIVE_MS), Some(Vec::new()));
    }

    /// A port whose fd carries a virtio-net header before each frame, as
    /// a TAP opened by `sys::tap` does.
    fn vnet_port(switch: &SwitchHandle, mac: [u8; 6], ip: Ipv4Addr) -> OwnedFd {
        add_port(switch, mac, ip, "vnet", true).1
    }

    /// What a kernel with `TUN_F_CSUM` sends: the UDP checksum field holds
    /// the pseudo-header sum only, and the header says where it is.
    fn partial_udp(good: &[u8], src: Ipv4Addr, dst: Ipv4Addr) -> (vnet::Header, Vec<u8>) {
        let mut frame = good.to_vec();
        let len = (frame.len() - 34) as u16;
        let pseudo = vnet::pseudo_header_sum(src, dst, 17, len);
        frame[40..42].copy_from_slice(&pseudo.to_be_bytes());
        let hdr = vnet::Header {
            flags: vnet::F_NEEDS_CSUM,
            csum_start: 34,
            csum_offset: 6,
            ..vnet::Header::NONE
        };
        (hdr, frame)
    }

    fn with_header(hdr: vnet::Header, frame: &[u8]) -> Vec<u8> {
        let mut out = hdr.to_bytes().to_vec();
        out.extend_from_slice(frame);
        out
    }

    #[test]
    fn partial_checksums_cross_between_taps_and_are_completed_elsewhere() {
        let switch = SwitchHandle::spawn(spec(None)).expect("spawn");
        let a = vnet_port(&switch, A_MAC, A_IP);
        let b = vnet_port(&switch, B_MAC, B_IP);
        let (_c, c) = port(&switch, C_MAC, C_IP, "plain");

        // TAP to TAP: header and frame arrive as sent, nobody summed.
        let good = udp(A_MAC, B_MAC, A_IP, B_IP, 4000, 5000, &[7u8; 3000]);
        let (hdr, partial) = partial_udp(&good, A_IP, B_IP);
        send_frame(&a, &with_header(hdr, &partial));
        let got = expect_frame(&b, "partial UDP at B");
        let (got_hdr, got_frame) = got.split_at(vnet::HDR_LEN);
        assert_eq!(got_frame, &partial[..]);
        assert_eq!(
            vnet::Header::parse(got_hdr.try_into().expect("10 bytes")),
            vnet::Header { hdr_len: 42, ..hdr }
        );

        // TAP to a plain port: the checksum is completed on the way.
        let good_c = udp(A_MAC, C_MAC, A_IP, C_IP, 4000, 5000, &[9u8; 999]);
        let (hdr, partial) = partial_udp(&good_c, A_IP, C_IP);
        send_frame(&a, &with_header(hdr, &partial));
        assert_eq!(expect_frame(&c, "completed UDP at C"), good_c);

        // Plain port to a TAP: an empty header.
        let from_c = udp(C_MAC, A_MAC, C_IP, A_IP, 5000, 4000, b"back");
        send_frame(&c, &from_c);
        assert_eq!(
            expect_frame(&a, "frame from C at A"),
            with_header(vnet::Header::NONE, &from_c)
        );

        // To the gateway: completed before smoltcp checks it, so a DNS
        // query with a partial checksum is answered (SERVFAIL: no names).
        send_frame(
            &a,
            &with_header(vnet::Header::NONE, &arp_request(A_MAC, A_IP, GW_IP)),
        );
        let reply = expect_frame(&a, "gateway ARP reply");
        parse_arp(&reply[vnet::HDR_LEN..]);
        // (The request was flooded, too.)
        parse_arp(&expect_frame(&b, "flooded ARP at B")[vnet::HDR_LEN..]);
        parse_arp(&expect_frame(&c, "flooded ARP at C"));
        let query = {
            use hickory_proto::op::{Message, Query};
            use hickory_proto::rr::{Name, RecordType};
            use std::str::FromStr;
            let mut q = Message::new();
            q.set_id(7);
            q.add_query(Query::query(
                Name::from_str("svc").expect("name"),
                RecordType::A,
            ));
            q.to_vec().expect("query")
        };
        let good_q = udp(A_MAC, GW_MAC, A_IP, GW_IP, 33333, 53, &query);
        let (hdr, partial) = partial_udp(&good_q, A_IP, GW_IP);
        send_frame(&a, &with_header(hdr, &partial));
        let answer = expect_frame(&a, "DNS answer");
        assert_eq!(&answer[..vnet::HDR_LEN], &[0u8; vnet::HDR_LEN]);
        let (port, _) = parse_udp(&answer[vnet::HDR_LEN..]).expect("a UDP answer");
        assert_eq!(port, 33333);

        // A header that lies is dropped and counted; the next good frame
        // is the first B sees.
        let lie = vnet::Header {
            csum_offset: 16,
            ..hdr
        };
        send_frame(&a, &with_header(lie, &partial_udp(&good, A_IP, B_IP).1));
        let marker = udp(A_MAC, B_MAC, A_IP, B_IP, 4000, 5000, b"marker");
        send_frame(&a, &with_header(vnet::Header::NONE, &marker));
        let got = expect_frame(&b, "marker at B");
        assert_eq!(&got[vnet::HDR_LEN..], &marker[..]);
        let stats = switch.stats();
        assert_eq!(stats.counters.dropped.bad_offload, 1);
        assert_eq!(stats.counters.dropped.total(), 1);
        assert_eq!(stats.counters.write_errors, 0);
    }

    #[test]
    fn vanished_device_is_reported_and_removed() {
        let (gone_tx, gone_rx) = mpsc::channel();
        let on_gone: PortGoneFn = Box::new(move |id| {
            let _ = gone_tx.send(id);
        });
        let switch = SwitchHandle::spawn(spec(Some(on_gone))).expect("spawn");
        let (a, a_fd) = port(&switch, A_MAC, A_IP, "a");
        let (_b, b_fd) = port(&switch, B_MAC, B_IP, "b");

        // The sandbox end goes away (for a TAP: its namespace died).
        drop(a_fd);
        let id = gone_rx
            .recv_timeout(Duration::from_millis(u64::from(ARRIVE_MS)))
            .expect("on_port_gone called");
        assert_eq!(id, a);
        assert_eq!(switch.stats().ports.len(), 1);

        // The other port still works, and traffic to A's MAC is now unknown.
        let to_a = ipv4_sized(B_MAC, A_MAC, B_IP, A_IP, 100);
        send_frame(&b_fd, &to_a);
        let ping = icmp_echo_request(B_MAC, GW_MAC, B_IP, GW_IP, 1, 1, b"x");
        send_frame(&b_fd, &arp_request(B_MAC, B_IP, GW_IP));
        parse_arp(&expect_frame(&b_fd, "gateway ARP reply"));
        send_frame(&b_fd, &ping);
        expect_frame(&b_fd, "echo reply");
        assert_eq!(switch.stats().counters.dropped.unknown_unicast, 1);

        // The port's id is stale now; removing it again is harmless.
        switch.remove_port(a);
    }

    #[test]
    fn dns_answers_local_names_and_relays_the_rest() {
        use crate::gateway::dns::{EndpointInfo, NetworkInfo, SandboxInfo};
        use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
        use hickory_proto::rr::{Name, RData, RecordType};
        use std::str::FromStr;

        // An upstream on loopback that answers NXDOMAIN to everything.
        let upstream = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        upstream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let upstream_addr = upstream.local_addr().expect("addr");
        let server = thread::spawn(move || {
            let mut buf = [0u8; 1500];
            let (len, from) = upstream.recv_from(&mut buf).expect("a forwarded query");
            let mut answer = Message::from_vec(&buf[..len]).expect("query");
            answer
                .set_message_type(MessageType::Response)
                .set_response_code(ResponseCode::NXDomain);
            upstream
                .send_to(&answer.to_vec().expect("encode"), from)
                .expect("send");
        });

        let mut spec = spec(None);
        spec.dns =
            Some(crate::gateway::dns::Forwarder::spawn(vec![upstream_addr]).expect("forwarder"));
        let switch = SwitchHandle::spawn(spec).expect("spawn");
        let (_a, a_fd) = port(&switch, A_MAC, A_IP, "a");
        switch.set_names(Arc::new(NameTable::build(
            &[NetworkInfo {
                name: "test".into(),
                internal: false,
                names_enabled: true,
                gateway: GW_IP,
            }],
            &[SandboxInfo {
                name: "alpha".into(),
                short_id: "a1a1a1a1a1a1".into(),
                endpoints: vec![EndpointInfo {
                    network: "test".into(),
                    ip: A_IP,
                    aliases: vec!["svc".into()],
                }],
            }],
        )));
        send_frame(&a_fd, &arp_request(A_MAC, A_IP, GW_IP));
        parse_arp(&expect_frame(&a_fd, "gateway ARP reply"));

        let ask = |name: &str, id: u16| {
            let mut q = Message::new();
            q.set_id(id).set_recursion_desired(true);
            q.add_query(Query::query(
                Name::from_str(name).expect("name"),
                RecordType::A,
            ));
            send_frame(
                &a_fd,
                &udp(
                    A_MAC,
                    GW_MAC,
                    A_IP,
                    GW_IP,
                    33333,
                    53,
                    &q.to_vec().expect("q"),
                ),
            );
            let frame = expect_frame(&a_fd, name);
            let (port, payload) = parse_udp(&frame).expect("a UDP answer");
            assert_eq!(port, 33333);
            let answer = Message::from_vec(&payload).expect("answer");
            assert_eq!(answer.id(), id);
            answer
        };
        let local = ask("svc", 1);
        assert!(matches!(local.answers()[0].data(), RData::A(a) if a.0 == A_IP));
        let relayed = ask("example.com", 2);
        assert_eq!(relayed.response_code(), ResponseCode::NXDomain);
        server.join().expect("upstream");

        let dns = switch.stats().dns;
        assert_eq!(
            (dns.queries, dns.answered_local, dns.forwarded, dns.nxdomain),
            (2, 1, 1, 1)
        );
        let json = serde_json::to_value(switch.stats()).expect("json");
        assert!(json["dns"]["forwarded"].is_u64());
    }

    #[test]
    fn rejects_bad_ports_and_closes_their_fd() {
        let switch = SwitchHandle::spawn(spec(None)).expect("spawn");
        let (_a, _a_fd) = port(&switch, A_MAC, A_IP, "a");
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .expect("socketpair");
        let err = switch
            .add_port(PortSpec {
                fd: theirs,
                vnet_hdr: false,
                mac: A_MAC,
                ipv4: B_IP,
                label: "dup".into(),
            })
            .expect_err("duplicate MAC");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let inner = err.get_ref().and_then(|e| e.downcast_ref::<PortError>());
        assert_eq!(
            inner,
            Some(&PortError::DuplicateMac(EthernetAddress(A_MAC)))
        );
        assert_eq!(recv_frame(&ours, ARRIVE_MS), Some(Vec::new()));
        assert_eq!(switch.stats().ports.len(), 1);
    }

    #[test]
    fn bad_gateway_config_is_an_error() {
        let mut spec = spec(None);
        spec.gateway.mac = [0xff; 6];
        let err = SwitchHandle::spawn(spec).err().expect("rejected");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn rate_limit_lets_one_through_per_period() {
        let mut limit = RateLimit::default();
        let t = Instant::now();
        assert_eq!(limit.allow(t), Some(0));
        assert_eq!(limit.allow(t + Duration::from_secs(1)), None);
        assert_eq!(limit.allow(t + Duration::from_secs(2)), None);
        assert_eq!(
            limit.allow(t + WARN_EVERY + Duration::from_secs(1)),
            Some(2)
        );
    }
}
