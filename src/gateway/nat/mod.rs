//! NAT egress: sandboxes reach the outside world through ordinary host
//! sockets, as with slirp4netns and pasta.
//!
//! # Theory of operation
//!
//! A sandbox's packet to an address outside its network reaches the switch
//! as a frame to the gateway MAC (its default route). The switch core
//! returns [`Decision::Gateway`](crate::switch::core::Decision) for it like
//! for any gateway frame; the switch then asks [`NatEngine::receive`], which
//! takes every IPv4 frame whose destination is neither the gateway's address
//! nor inside the network's own subnet (nor broadcast/multicast). Everything
//! else still goes to the gateway's smoltcp interface (ARP, ping, DNS).
//!
//! The engine lives **in the switch thread**, beside the gateway, and owns:
//!
//! - a second smoltcp [`Interface`](smoltcp::iface::Interface), on
//!   `Medium::Ip` (no ARP: the engine puts the Ethernet header on itself,
//!   from the gateway MAC to the sandbox MAC the flow was opened from, which
//!   the switch's anti-spoofing has vouched for), with `any_ip` and a default
//!   route via its own address, so it accepts packets to any address. TCP
//!   and UDP sockets are created on it per flow, bound to the address the
//!   sandbox asked for, so replies carry that source address;
//! - the host sockets, non-blocking, in an epoll instance of its own, which
//!   is itself registered in the switch's epoll (epoll nests): host
//!   readiness wakes the switch thread like a TAP does.
//!
//! Why not a tokio runtime with queues to the switch thread (DESIGN "Data
//! plane" suggests one for host work)? Every byte would then cross threads
//! twice and sit in a queue between two buffers; here the host socket is
//! read straight into the smoltcp socket's send buffer and the smoltcp
//! receive buffer is written straight to the host socket, which is also the
//! whole of back-pressure: a full smoltcp send buffer takes `EPOLLIN` off
//! the host socket (the peer's window closes), a host socket that answers
//! `EAGAIN` leaves the bytes in smoltcp's receive buffer (the sandbox's
//! window closes). Nothing here blocks: connects are non-blocking and
//! complete on `EPOLLOUT`, every read and write is non-blocking, and the
//! work per wakeup is bounded. pasta is built the same way, one epoll loop
//! over tap and sockets, which is what makes it fast. Host names are never
//! resolved here (the DNS forwarder does that on its own runtime).
//!
//! # Flows
//!
//! - **TCP**: a SYN to a new (source, destination) pair starts a
//!   non-blocking `connect` and is held; the sandbox's SYN retransmissions
//!   are dropped meanwhile. When the connect succeeds, a smoltcp socket
//!   listening on exactly that destination is created and the held SYN fed
//!   to it, so the handshake completes for the sandbox only after the host
//!   connect did. `ECONNREFUSED` becomes a RST (the client sees "connection
//!   refused" at once), other failures an ICMP host-unreachable, a connect
//!   that takes longer than [`CONNECT_TIMEOUT`] a RST. Then bytes are
//!   shovelled both ways; a FIN from the sandbox becomes `shutdown(SHUT_WR)`,
//!   EOF from the host a FIN (smoltcp `close`); a RST from the host aborts the
//!   smoltcp socket (RST to the sandbox), a RST from the sandbox closes the
//!   host socket with `SO_LINGER` 0 (RST to the peer). The flow is freed
//!   when both sides are done.
//! - **UDP**: one connected host socket per (source, destination) pair, so
//!   the kernel only lets that destination's replies in; one smoltcp UDP
//!   socket per destination, shared by the sandboxes that talk to it. Flows
//!   idle for [`UDP_IDLE`] are freed. The engine fragments large replies
//!   itself, so datagrams up to 65507 bytes pass at the default MTU. A host
//!   `ECONNREFUSED` (ICMP port unreachable from the peer) becomes a port
//!   unreachable to the sandbox.
//! - **Fragments** from sandboxes (UDP, TCP and ICMP alike) are reassembled
//!   by the engine ([`reassembly`]), with bounds per sandbox and per
//!   network and a timeout of a few seconds, before anything else looks at
//!   them; the whole packet then takes the path of an unfragmented one
//!   (flow table, guards, checksum verification). smoltcp's own
//!   reassembler, one set of slots for everyone, never sees a fragment.
//! - **ICMP echo**: through unprivileged ICMP sockets (`SOCK_DGRAM`,
//!   `IPPROTO_ICMP`) when the host's `net.ipv4.ping_group_range` lets the
//!   daemon's group open them; otherwise the engine logs one warning and
//!   answers every echo request with an ICMP "communication administratively
//!   prohibited", so `ping` fails at once instead of hanging.
//!
//! # Policy and limits
//!
//! See [`policy`]: container subnets (the registry below, fed by every
//! switch as it starts and stops) and the host's loopback are refused with
//! an ICMP "administratively prohibited"; [`policy::HOST_LOOPBACK_ADDR`]
//! maps to 127.0.0.1 on networks that opted in. Flows are bounded per
//! sandbox and per daemon ([`policy::Limits`]): an excess SYN gets a RST, an
//! excess UDP datagram or echo is dropped, and both are counted as
//! `limited`. Every flow costs one host fd, so the limits bound fds. The
//! memory a flow can pin is its smoltcp buffers, which have byte budgets
//! of their own, per sandbox and per daemon ([`budget`]): a sandbox's first
//! flows get full buffers, later ones small ones, and a flow that does not
//! fit is refused the same way (counted as `buffer_limited` too).
//!
//! # Published ports (forwards)
//!
//! The same engine carries ingress: the daemon binds a host listener for
//! each published port (so a port in use is an error before the sandbox is
//! committed) and hands its fd over with [`ForwardSpec`]. The listener sits
//! in the engine's epoll like any host socket:
//!
//! - **TCP**: each accepted client gets a smoltcp socket that `connect`s
//!   *from the client's own address and port* to the sandbox's address and
//!   port, so the service sees who is really calling. The flow is indexed
//!   the way an egress flow is (sandbox endpoint → client endpoint), so the
//!   sandbox's replies, which leave through its default route to the
//!   gateway MAC, are recognised by [`NatEngine::receive`] and fed to that
//!   socket; from there on the flow is pumped, half-closed and reset exactly
//!   like an egress flow. A sandbox that resets the SYN (nothing listens)
//!   makes the client's connection close with a RST at once; one that
//!   never answers, after [`CONNECT_TIMEOUT`]. At most
//!   [`FORWARD_PENDING`] handshakes per forward are in flight; beyond that
//!   the listener is paused and clients wait in the kernel's backlog.
//! - **UDP**: one flow per client address, with a smoltcp UDP socket bound
//!   to that client endpoint (shared with egress flows to the same
//!   endpoint); the sandbox's replies go back with `sendto` on the
//!   listener, to that client only. Idle flows expire after [`UDP_IDLE`].
//! - **Host loopback clients** (127.0.0.0/8), and IPv6 clients of IPv6
//!   listeners (IPv4-mapped ones excepted), cannot be shown to
//!   the sandbox as they are (127.0.0.1 would be the sandbox's own
//!   loopback): they arrive from the **gateway's address**, with their own
//!   port where it is free. Frames from the sandbox to the gateway's
//!   address are taken by the engine only for the exact flows it opened
//!   that way; everything else for the gateway (DNS, ping) is untouched.
//!
//! Forward flows count against the same per-sandbox and daemon-wide limits
//! as egress flows (one host fd each). Removing a forward closes its
//! listener and resets every flow of it; a sandbox's port going away
//! removes its forwards too.

pub mod budget;
pub mod engine;
pub mod policy;
pub mod reassembly;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use ipnet::Ipv4Net;
use serde::Serialize;
use tracing::warn;

pub use self::budget::Budget;
pub use self::engine::NatEngine;
pub use self::policy::{
    Limits, HOST_LOOPBACK_ADDR, HOST_LOOPBACK_GATEWAY, HOST_LOOPBACK_OPTION,
    HOST_LOOPBACK_UNREACHABLE,
};

/// The network option binding the NAT's host sockets to one of the host's
/// addresses (slirp4netns's `--outbound-addr`), e.g. to pick the uplink.
pub const OUTBOUND_ADDRESS_OPTION: &str = "outbound-address";

/// How long a host `connect` may take before the sandbox gets a RST.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a UDP flow lives without traffic either way.
pub const UDP_IDLE: Duration = Duration::from_secs(60);

/// How long an ICMP echo flow lives without traffic.
pub const ICMP_IDLE: Duration = Duration::from_secs(10);

/// Size of each of a TCP flow's two smoltcp buffers (but see
/// [`TCP_BULK_BUFFER`], and [`budget`] for the smaller ones a flow gets
/// once half of its sandbox's or the daemon's budget is spent).
pub const TCP_BUFFER: usize = 256 * 1024;

/// Size of the send buffer (bytes from the host on their way to the
/// sandbox) of the first [`BULK_FLOWS`] TCP flows of the daemon. The
/// smoltcp send buffer is what one poll can put on the wire toward the
/// sandbox: with 256 KiB, four 64 KiB segments per round, and the switch
/// thread spends a fifth of its time waking the sandbox's reader
/// (profiled); with 2 MiB, host→sandbox throughput goes from ~14 to ~21
/// Gbit/s on the 2-core development machine. Pages are touched only as
/// data passes, so an idle flow costs nothing; it is charged to the
/// budgets (see [`budget`]) like any buffer, so a sandbox holds at most 14
/// of them.
pub const TCP_BULK_BUFFER: usize = 2 * 1024 * 1024;

/// Most TCP flows of the daemon with a [`TCP_BULK_BUFFER`] at once (the
/// rest get [`TCP_BUFFER`] or smaller).
pub const BULK_FLOWS: usize = 32;

/// Most forwarded TCP connections per published port whose handshake with
/// the sandbox is still under way; more wait in the listener's backlog.
pub const FORWARD_PENDING: usize = 128;

/// The transport of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Tcp,
    Udp,
}

/// Names one forward of one engine (see [`NatEngine::add_forward`]).
pub type ForwardId = u32;

/// A published port to serve: a bound, listening host socket (a
/// `SOCK_STREAM` listener for TCP, a bound datagram socket for UDP) and
/// the sandbox endpoint its clients are forwarded to.
#[derive(Debug)]
pub struct ForwardSpec {
    pub transport: Transport,
    /// The host socket; the engine makes it non-blocking and owns it.
    pub listener: std::os::fd::OwnedFd,
    /// The sandbox's address and port on this network.
    pub target: std::net::SocketAddrV4,
    /// The sandbox's MAC on this network.
    pub sandbox_mac: [u8; 6],
}

/// Environment variable overriding [`policy::DEFAULT_MAX_FLOWS_PER_SANDBOX`].
pub const ENV_MAX_FLOWS_PER_SANDBOX: &str = "WARREN_NAT_MAX_FLOWS_PER_SANDBOX";

/// Environment variable overriding [`policy::DEFAULT_MAX_FLOWS`].
pub const ENV_MAX_FLOWS: &str = "WARREN_NAT_MAX_FLOWS";

/// Environment variable overriding [`budget::DEFAULT_PER_SANDBOX`] (bytes).
pub const ENV_BUFFERS_PER_SANDBOX: &str = "WARREN_NAT_BUFFERS_PER_SANDBOX";

/// Environment variable overriding [`budget::DEFAULT_TOTAL`] (bytes).
pub const ENV_BUFFERS: &str = "WARREN_NAT_BUFFERS";

/// The daemon-wide part of NAT, shared by every network's engine: limits
/// and budgets, the live flow and buffer counts, and whether ping sockets
/// work.
#[derive(Debug)]
pub struct Nat {
    limits: Limits,
    budget: Budget,
    flows: AtomicUsize,
    /// TCP flows with a [`TCP_BULK_BUFFER`].
    bulk: AtomicUsize,
    /// Bytes of buffers charged against [`Budget::total`].
    buffers: AtomicUsize,
    ping: OnceLock<bool>,
    ping_warned: AtomicBool,
}

impl Nat {
    /// A NAT with these limits and the default buffer budgets.
    pub fn new(limits: Limits) -> Arc<Nat> {
        Nat::with_budget(limits, Budget::default())
    }

    /// A NAT with these limits and buffer budgets.
    pub fn with_budget(limits: Limits, budget: Budget) -> Arc<Nat> {
        Arc::new(Nat {
            limits,
            budget,
            flows: AtomicUsize::new(0),
            bulk: AtomicUsize::new(0),
            buffers: AtomicUsize::new(0),
            ping: OnceLock::new(),
            ping_warned: AtomicBool::new(false),
        })
    }

    /// The daemon's NAT: default limits and budgets, overridden by
    /// [`ENV_MAX_FLOWS_PER_SANDBOX`], [`ENV_MAX_FLOWS`],
    /// [`ENV_BUFFERS_PER_SANDBOX`] and [`ENV_BUFFERS`].
    pub fn daemon() -> Arc<Nat> {
        static NAT: OnceLock<Arc<Nat>> = OnceLock::new();
        Arc::clone(NAT.get_or_init(|| {
            let mut limits = Limits::default();
            let mut budget = Budget::default();
            let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok());
            if let Some(n) = env(ENV_MAX_FLOWS_PER_SANDBOX) {
                limits.per_sandbox = n;
            }
            if let Some(n) = env(ENV_MAX_FLOWS) {
                limits.total = n;
            }
            if let Some(n) = env(ENV_BUFFERS_PER_SANDBOX) {
                budget.per_sandbox = n;
            }
            if let Some(n) = env(ENV_BUFFERS) {
                budget.total = n;
            }
            Nat::with_budget(limits, budget)
        }))
    }

    /// The limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The buffer budgets.
    pub fn budget(&self) -> Budget {
        self.budget
    }

    /// Bytes of buffers the whole daemon holds (kept spare sockets
    /// included).
    pub fn buffers(&self) -> usize {
        self.buffers.load(Relaxed)
    }

    /// Charge the daemon for a new flow's buffers of a sandbox that holds
    /// `sandbox` bytes already, and say which sizes it gets (see
    /// [`budget::choose`]); `None`: the flow is refused.
    fn reserve_buffers(
        &self,
        wanted: &[budget::Sizes],
        small: budget::Sizes,
        sandbox: usize,
    ) -> Option<budget::Sizes> {
        let mut chosen = None;
        self.buffers
            .fetch_update(Relaxed, Relaxed, |used| {
                chosen = budget::choose(wanted, small, sandbox, used, self.budget);
                chosen.map(|s| used + s.bytes())
            })
            .ok()?;
        chosen
    }

    /// Give `bytes` of buffers back to the daemon's budget.
    fn release_buffers(&self, bytes: usize) {
        let _ = self
            .buffers
            .fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_sub(bytes)));
    }

    /// Live flows of the whole daemon.
    pub fn flows(&self) -> usize {
        self.flows.load(Relaxed)
    }

    /// Take one daemon-wide flow slot, unless all are taken.
    fn try_take_flow(&self) -> bool {
        self.flows
            .fetch_update(Relaxed, Relaxed, |n| {
                (n < self.limits.total).then_some(n + 1)
            })
            .is_ok()
    }

    /// Give a flow slot back.
    fn release_flow(&self) {
        let _ = self
            .flows
            .fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_sub(1)));
    }

    /// Take one of the [`BULK_FLOWS`] large send buffers, unless all are
    /// taken.
    fn try_take_bulk(&self) -> bool {
        self.bulk
            .fetch_update(Relaxed, Relaxed, |n| (n < BULK_FLOWS).then_some(n + 1))
            .is_ok()
    }

    /// Give a large send buffer back.
    fn release_bulk(&self) {
        let _ = self
            .bulk
            .fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_sub(1)));
    }

    /// Whether unprivileged ICMP sockets can be opened (probed once).
    fn ping_allowed(&self) -> bool {
        *self.ping.get_or_init(engine::probe_ping_socket)
    }

    /// Warn once that ping sockets are not allowed.
    fn warn_ping_once(&self) {
        if !self.ping_warned.swap(true, Relaxed) {
            let range =
                std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range").unwrap_or_default();
            warn!(
                ping_group_range = %range.trim(),
                gid = nix::unistd::getegid().as_raw(),
                "nat: the host does not allow unprivileged ICMP sockets for the daemon's group, \
                 so ping from sandboxes to the outside is answered with \
                 'administratively prohibited'; to allow it, run \
                 `sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"` as root"
            );
        }
    }
}

/// One network's NAT: the daemon's [`Nat`] and the network's own policy.
/// Internal networks have none (see [`NetworkNat::for_network`]).
#[derive(Debug, Clone)]
pub struct NetworkNat {
    /// The daemon-wide part.
    pub nat: Arc<Nat>,
    /// Whether [`HOST_LOOPBACK_ADDR`] maps to the host's 127.0.0.1.
    pub host_loopback: bool,
    /// Whether TCP and UDP to the gateway's own address go to the host's
    /// 127.0.0.1 (`host-loopback=gateway`, slirp4netns's 10.0.2.2).
    pub gateway_loopback: bool,
    /// Whether TCP to the gateway's own address is answered with ICMP
    /// network unreachable and UDP dropped (`host-loopback=unreachable`,
    /// slirp4netns's `--disable-host-loopback`).
    pub gateway_unreachable: bool,
    /// Whether the gateway serves DNS on its own address: port 53 there
    /// then stays with it even under `gateway_loopback`.
    pub dns_on_gateway: bool,
    /// The host address the NAT's sockets are bound to before they
    /// connect (`outbound-address`); `None`: the kernel chooses.
    pub outbound: Option<std::net::Ipv4Addr>,
}

impl NetworkNat {
    /// The NAT of a network with these settings: `None` for internal
    /// networks (they never egress), otherwise the daemon's [`Nat`] with
    /// host loopback as the `host-loopback` option says and the sockets
    /// bound as `outbound-address` says (the daemon validated both).
    pub fn for_network(
        internal: bool,
        options: &std::collections::BTreeMap<String, String>,
    ) -> Option<NetworkNat> {
        let loopback = options.get(HOST_LOOPBACK_OPTION).map(String::as_str);
        let (dns, dns_address) = crate::gateway::dns::settings(options);
        (!internal).then(|| NetworkNat {
            nat: Nat::daemon(),
            host_loopback: policy::host_loopback_enabled(loopback),
            gateway_loopback: policy::host_loopback_gateway(loopback),
            gateway_unreachable: policy::host_loopback_unreachable(loopback),
            dns_on_gateway: dns && dns_address.is_none(),
            outbound: options
                .get(OUTBOUND_ADDRESS_OPTION)
                .and_then(|a| a.parse().ok()),
        })
    }
}

/// Every container network's subnet, registered by each switch for as long
/// as it runs (internal networks included). The NAT never forwards into
/// them. One per process: one daemon per process.
pub fn container_subnets() -> &'static SubnetRegistry {
    static REGISTRY: SubnetRegistry = SubnetRegistry {
        nets: Mutex::new(Vec::new()),
        generation: AtomicU64::new(0),
    };
    &REGISTRY
}

/// See [`container_subnets`]. Readers check the generation (one relaxed
/// load) and copy the list only when it changed, so the frame path takes no
/// lock in the steady state.
#[derive(Debug)]
pub struct SubnetRegistry {
    nets: Mutex<Vec<Ipv4Net>>,
    generation: AtomicU64,
}

impl SubnetRegistry {
    /// Register `net` until the guard is dropped.
    pub fn register(&'static self, net: Ipv4Net) -> SubnetGuard {
        let net = net.trunc();
        self.lock().push(net);
        self.generation.fetch_add(1, Relaxed);
        SubnetGuard {
            registry: self,
            net,
        }
    }

    /// The current generation (changes with every register and drop).
    pub fn generation(&self) -> u64 {
        self.generation.load(Relaxed)
    }

    /// A copy of the registered subnets.
    pub fn snapshot(&self) -> Vec<Ipv4Net> {
        let mut nets = self.lock().clone();
        nets.sort();
        nets.dedup();
        nets
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Ipv4Net>> {
        self.nets.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Keeps a subnet registered; see [`SubnetRegistry::register`].
#[derive(Debug)]
pub struct SubnetGuard {
    registry: &'static SubnetRegistry,
    net: Ipv4Net,
}

impl Drop for SubnetGuard {
    fn drop(&mut self) {
        let mut nets = self.registry.lock();
        if let Some(i) = nets.iter().position(|n| *n == self.net) {
            nets.swap_remove(i);
        }
        drop(nets);
        self.registry.generation.fetch_add(1, Relaxed);
    }
}

/// Counters of one network's NAT. Relaxed atomics: the switch thread
/// writes, the control plane reads.
#[derive(Debug, Default)]
pub struct NatCounters {
    /// Live TCP flows (connecting included).
    pub tcp_flows: AtomicU64,
    /// Live UDP flows.
    pub udp_flows: AtomicU64,
    /// Live ICMP echo flows.
    pub icmp_flows: AtomicU64,
    /// TCP flows whose host connect succeeded.
    pub tcp_opened: AtomicU64,
    /// UDP flows opened.
    pub udp_opened: AtomicU64,
    /// Host connects refused (the sandbox got a RST).
    pub refused: AtomicU64,
    /// Host connects that failed otherwise or timed out.
    pub unreachable: AtomicU64,
    /// Flows refused by the per-sandbox or daemon-wide limit.
    pub limited: AtomicU64,
    /// Packets to container subnets or the host's loopback, refused.
    pub prohibited: AtomicU64,
    /// Echo requests refused because ping sockets are not allowed.
    pub ping_prohibited: AtomicU64,
    /// Frames dropped: malformed, unsupported protocol, queue full, or a
    /// host socket error.
    pub dropped: AtomicU64,
    /// TCP segments no host could take, dropped before any host socket:
    /// a header that does not parse (data offset below 5), port 0 at
    /// either end, or SYN with FIN (as Linux discards it); UDP to or from
    /// port 0 too.
    pub malformed: AtomicU64,
    /// Bytes from sandboxes written to host sockets.
    pub tx_bytes: AtomicU64,
    /// Bytes from host sockets handed to sandboxes.
    pub rx_bytes: AtomicU64,
    /// Published ports being served (host listeners).
    pub forwards: AtomicU64,
    /// Live flows through published ports (TCP and UDP).
    pub forward_flows: AtomicU64,
    /// TCP clients accepted and UDP client flows opened on published ports.
    pub forward_accepted: AtomicU64,
    /// Forwarded connections the sandbox refused (RST to the SYN, nothing
    /// listening) or that a flow limit turned away.
    pub forward_refused: AtomicU64,
    /// IPv4 fragments from sandboxes (see [`reassembly`]).
    pub fragments: AtomicU64,
    /// Datagrams reassembled from them.
    pub reassembled: AtomicU64,
    /// Incomplete datagrams given up: timed out, or evicted to make room
    /// (by their own source's bound, or the network's).
    pub reassembly_dropped: AtomicU64,
    /// Fragments refused (overlapping, oversized, inconsistent, or of a
    /// protocol the NAT does not carry); their datagram went with them.
    pub fragments_bad: AtomicU64,
    /// Bytes of socket buffers this network's flows hold, charged to
    /// their sandboxes (see [`budget`]).
    pub buffer_bytes: AtomicU64,
    /// Flows given small buffers because half of a budget was spent.
    pub buffer_small: AtomicU64,
    /// Flows refused because a sandbox's or the daemon's buffer budget
    /// was spent (counted in `limited` too).
    pub buffer_limited: AtomicU64,
}

impl NatCounters {
    /// A copy for reporting.
    pub fn snapshot(&self) -> NatStats {
        NatStats {
            tcp_flows: self.tcp_flows.load(Relaxed),
            udp_flows: self.udp_flows.load(Relaxed),
            icmp_flows: self.icmp_flows.load(Relaxed),
            tcp_opened: self.tcp_opened.load(Relaxed),
            udp_opened: self.udp_opened.load(Relaxed),
            refused: self.refused.load(Relaxed),
            unreachable: self.unreachable.load(Relaxed),
            limited: self.limited.load(Relaxed),
            prohibited: self.prohibited.load(Relaxed),
            ping_prohibited: self.ping_prohibited.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            malformed: self.malformed.load(Relaxed),
            tx_bytes: self.tx_bytes.load(Relaxed),
            rx_bytes: self.rx_bytes.load(Relaxed),
            forwards: self.forwards.load(Relaxed),
            forward_flows: self.forward_flows.load(Relaxed),
            forward_accepted: self.forward_accepted.load(Relaxed),
            forward_refused: self.forward_refused.load(Relaxed),
            fragments: self.fragments.load(Relaxed),
            reassembled: self.reassembled.load(Relaxed),
            reassembly_dropped: self.reassembly_dropped.load(Relaxed),
            fragments_bad: self.fragments_bad.load(Relaxed),
            buffer_bytes: self.buffer_bytes.load(Relaxed),
            buffer_small: self.buffer_small.load(Relaxed),
            buffer_limited: self.buffer_limited.load(Relaxed),
        }
    }
}

/// A snapshot of [`NatCounters`] (the `nat` object of `network stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub struct NatStats {
    pub tcp_flows: u64,
    pub udp_flows: u64,
    pub icmp_flows: u64,
    pub tcp_opened: u64,
    pub udp_opened: u64,
    pub refused: u64,
    pub unreachable: u64,
    pub limited: u64,
    pub prohibited: u64,
    pub ping_prohibited: u64,
    pub dropped: u64,
    pub malformed: u64,
    pub tx_bytes: u64,
    pub rx_bytes: u64,
    pub forwards: u64,
    pub forward_flows: u64,
    pub forward_accepted: u64,
    pub forward_refused: u64,
    pub fragments: u64,
    pub reassembled: u64,
    pub reassembly_dropped: u64,
    pub fragments_bad: u64,
    pub buffer_bytes: u64,
    pub buffer_small: u64,
    pub buffer_limited: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_wide_limit() {
        let nat = Nat::new(Limits {
            per_sandbox: 10,
            total: 2,
        });
        assert!(nat.try_take_flow());
        assert!(nat.try_take_flow());
        assert!(!nat.try_take_flow());
        nat.release_flow();
        assert!(nat.try_take_flow());
        assert_eq!(nat.flows(), 2);
        nat.release_flow();
        nat.release_flow();
        nat.release_flow();
        assert_eq!(nat.flows(), 0, "never below zero");
    }

    #[test]
    fn bulk_buffers_are_bounded_daemon_wide() {
        let nat = Nat::new(Limits::default());
        for _ in 0..BULK_FLOWS {
            assert!(nat.try_take_bulk());
        }
        assert!(!nat.try_take_bulk(), "the next flow gets the small buffer");
        nat.release_bulk();
        assert!(nat.try_take_bulk());
        for _ in 0..BULK_FLOWS + 3 {
            nat.release_bulk();
        }
        assert_eq!(nat.bulk.load(Relaxed), 0, "never below zero");
    }

    #[test]
    fn buffer_budget_is_daemon_wide() {
        use budget::{TCP_FULL, TCP_SMALL};
        let nat = Nat::with_budget(
            Limits::default(),
            Budget {
                per_sandbox: 64 << 20,
                total: 2 << 20,
            },
        );
        // Full buffers to half the daemon's budget, whoever asks...
        assert_eq!(
            nat.reserve_buffers(&[TCP_FULL], TCP_SMALL, 0),
            Some(TCP_FULL)
        );
        assert_eq!(
            nat.reserve_buffers(&[TCP_FULL], TCP_SMALL, 0),
            Some(TCP_FULL)
        );
        // ...then small ones to the whole of it, then none.
        let small = (1 << 20) / TCP_SMALL.bytes();
        for _ in 0..small {
            assert_eq!(
                nat.reserve_buffers(&[TCP_FULL], TCP_SMALL, 0),
                Some(TCP_SMALL)
            );
        }
        assert_eq!(nat.reserve_buffers(&[TCP_FULL], TCP_SMALL, 0), None);
        assert_eq!(nat.buffers(), 2 << 20);
        nat.release_buffers(TCP_FULL.bytes());
        assert_eq!(
            nat.reserve_buffers(&[TCP_FULL], TCP_SMALL, 0),
            Some(TCP_SMALL)
        );
        nat.release_buffers(usize::MAX);
        assert_eq!(nat.buffers(), 0, "never below zero");
    }

    #[test]
    fn subnet_registry_follows_guards() {
        let registry = container_subnets();
        let net: Ipv4Net = "10.250.3.7/24".parse().expect("net");
        let g0 = registry.generation();
        let guard = registry.register(net);
        assert!(registry.generation() > g0);
        assert!(registry
            .snapshot()
            .contains(&"10.250.3.0/24".parse().expect("net")));
        let g1 = registry.generation();
        drop(guard);
        assert!(registry.generation() > g1);
        assert!(!registry
            .snapshot()
            .contains(&"10.250.3.0/24".parse().expect("net")));
    }

    #[test]
    fn internal_networks_have_no_nat() {
        let mut options = std::collections::BTreeMap::new();
        assert!(NetworkNat::for_network(true, &options).is_none());
        let nat = NetworkNat::for_network(false, &options).expect("nat");
        assert!(!nat.host_loopback);
        options.insert(HOST_LOOPBACK_OPTION.to_string(), "true".to_string());
        assert!(
            NetworkNat::for_network(false, &options)
                .expect("nat")
                .host_loopback
        );
    }

    #[test]
    fn slirp4netns_style_options() {
        let mut options = std::collections::BTreeMap::new();
        let nat = NetworkNat::for_network(false, &options).expect("nat");
        assert!(!nat.gateway_loopback && nat.dns_on_gateway && nat.outbound.is_none());
        options.insert(HOST_LOOPBACK_OPTION.into(), HOST_LOOPBACK_GATEWAY.into());
        options.insert(OUTBOUND_ADDRESS_OPTION.into(), "192.0.2.7".into());
        options.insert(
            crate::gateway::dns::DNS_ADDRESS_OPTION.into(),
            "10.0.2.3".into(),
        );
        let nat = NetworkNat::for_network(false, &options).expect("nat");
        assert!(nat.gateway_loopback && !nat.host_loopback);
        assert!(!nat.dns_on_gateway, "DNS moved to its own address");
        assert_eq!(nat.outbound, Some(std::net::Ipv4Addr::new(192, 0, 2, 7)));
        options.remove(crate::gateway::dns::DNS_ADDRESS_OPTION);
        options.insert(crate::gateway::dns::DNS_OPTION.into(), "false".into());
        let nat = NetworkNat::for_network(false, &options).expect("nat");
        assert!(!nat.dns_on_gateway, "no DNS at all");
    }
}
