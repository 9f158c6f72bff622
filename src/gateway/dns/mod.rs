//! The embedded DNS server: sandbox names, aliases, `name.network`, PTR and
//! round robin at every network's gateway address and at 127.0.0.11 in
//! every `run` sandbox, everything else forwarded to the host's resolvers.
//!
//! # Theory of operation
//!
//! Docker's user-defined networks let containers find each other by name;
//! warren does the same at the gateway address of each network, on UDP and
//! TCP port 53, and at Docker's 127.0.0.11:53 inside each `run` sandbox.
//! Six parts, each with one job:
//!
//! - [`table`]: [`NameTable`], an immutable snapshot of every name on every
//!   network, built by the control plane after each change and handed to
//!   every switch as one `Arc` (a message to the thread, no lock).
//! - [`answer`](mod@answer): the pure core. `answer(table, request, rng)`
//!   turns one query's bytes into [`Action::Reply`], [`Action::Forward`] or
//!   [`Action::Drop`]; no I/O, no clock, unit-tested against the seed's
//!   scenarios and hostile corpora.
//! - [`server`]: [`DnsServer`], the smoltcp UDP socket and TCP socket pool
//!   in the gateway's `SocketSet`, run by the switch thread: it feeds
//!   queries to the core, sends answers, keeps forwarded queries pending and
//!   times out idle TCP connections.
//! - [`forward`]: [`Forwarder`], one per daemon, a thread with its own
//!   current-thread tokio runtime relaying queries to the upstream resolvers
//!   with a bounded timeout.
//! - [`fair`]: the bookkeeping that shares forwarding out per client (the
//!   source address on its network): the server's pending queries and the
//!   forwarder's queues and slots, bounded per client, per network and per
//!   daemon, so a sandbox flooding queries its upstream never answers
//!   cannot starve a neighbour. Pure, time passed in.
//! - [`embedded`]: [`EmbeddedDns`](embedded::EmbeddedDns), one per daemon,
//!   a thread serving the UDP sockets and TCP listeners the setns helper
//!   binds at 127.0.0.11:53 inside `run` sandboxes, through the same core,
//!   table and forwarder, as the sandbox's address on its default route's
//!   network.
//!
//! The path of a forwarded query: a sandbox's frame → the switch thread
//! (anti-spoofing verifies the source address) → smoltcp → `DnsServer` →
//! `answer` says Forward → a pending entry within the asker's share and a
//! [`ForwardOut`] → the switch `try_send`s a [`ForwardJob`] naming its
//! [`ClientKey`] to the forwarder's bounded hand-off queue → the forwarder
//! queues it in that client's queue and sends it upstream at the client's
//! turn, its timeout starting then → the job's callback `try_send`s the
//! answer into the switch's bounded reply queue and writes the switch's
//! eventfd → the switch thread wakes, hands the answer to
//! `DnsServer::forwarded`, and smoltcp sends it. The switch thread never
//! blocks on the network or on a lock; every queue is bounded and a full
//! one turns into a counted SERVFAIL or a drop; a client over its share
//! gets SERVFAIL, counted as `limited`.
//!
//! # Semantics (Docker's, with its rough edges filed off)
//!
//! - A sandbox's names on a network: its name, its 12-hex short id, and its
//!   aliases on that network. Case-insensitive; a trailing dot is fine.
//! - Scope: the asker is identified by the network the query arrived on and
//!   its source address, which gives its sandbox and so its networks in
//!   connection order. A bare name is looked up in those networks in that
//!   order and the first network that has it answers; `name.network` picks
//!   the network, only among the asker's own. An address not in the table
//!   yet (attached a moment ago) sees its arrival network's names.
//! - Round robin: a name held by several sandboxes on one network returns
//!   every address, shuffled on every query.
//! - PTR: `d.c.b.a.in-addr.arpa` for an endpoint on one of the asker's
//!   networks answers `name.network.`.
//! - A local name answers A records with TTL 600 (as Docker); any other type
//!   gets an empty NOERROR (the name exists).
//! - Not local: forwarded, except for a sandbox that is only on internal
//!   networks, which gets NXDOMAIN, so an internal network cannot leak
//!   data through DNS. A sandbox also on an external network has its
//!   queries forwarded whichever gateway it asks and in whatever order its
//!   networks were given (Docker's rule: it can reach the outside through
//!   that network anyway). An address the table does not know yet is
//!   judged by the network the query arrived on.
//! - The default `bridge` network has no container names, but forwards.
//! - Until the control plane has sent a table that knows the network, every
//!   query gets SERVFAIL rather than a guess about forwarding.
//!
//! # Where it listens
//!
//! At 127.0.0.11:53 in every `run` sandbox ([`embedded`]; not in attached,
//! CNI or slirp4netns sandboxes, whose runners own their resolv.conf), and
//! on the gateway's address by default. Two network options change that
//! (see [`settings`]): `dns-address=IP` serves DNS at a second address of
//! the gateway instead (which then also answers ARP and ping), as
//! slirp4netns serves 10.0.2.3 beside its gateway 10.0.2.2; `dns=false`
//! serves no DNS at all (slirp4netns's `--disable-dns`).
//!
//! # Counters
//!
//! [`DnsCounters`], shown in the switch's stats (`warren network stats`) as
//! `dns`: `queries` (messages received), `answered_local` (answered from the
//! table, including empty NOERROR and internal NXDOMAIN), `forwarded`,
//! `servfail` and `nxdomain` (answers sent with that code, local or from
//! upstream), `malformed` (FORMERR/NOTIMP answers and unanswerable input),
//! `dropped` (no answer sent: unanswerable input, full queues, closed
//! connections), `truncated` (UDP answers cut, TC set), `tcp_connections`,
//! `tcp_idle_closed`, `limited` (forwarded queries refused or given up
//! because a share was full: the client's or the network's pending
//! queries, the forwarder's queues, or a wait for a turn over
//! [`MAX_WAIT`]; each was answered SERVFAIL and is in `servfail` too).

pub mod answer;
pub mod embedded;
pub mod fair;
pub mod forward;
pub mod server;
pub mod table;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

pub use self::answer::{
    answer, Action, DropReason, Forward, Reply, Request, Rng, Transport, LOCAL_TTL, MAX_QUERY,
};
pub use self::fair::{ClientKey, MAX_PENDING_PER_CLIENT};
pub use self::forward::{
    parse_resolv_conf, Done, ForwardConfig, ForwardError, ForwardJob, ForwardResult, Forwarder,
    FORWARD_TIMEOUT, IN_FLIGHT, IN_FLIGHT_PER_CLIENT, IN_FLIGHT_PER_NETWORK, MAX_WAIT,
};
pub use self::server::{DnsServer, ForwardOut, DNS_PORT, MAX_PENDING, TCP_IDLE, TCP_SOCKETS};
pub use self::table::{EndpointInfo, NameTable, NetworkInfo, SandboxInfo, HOST_NAME};

/// The network option naming the address DNS is served at, instead of the
/// gateway's own (an address of the subnet the IPAM never hands out).
pub const DNS_ADDRESS_OPTION: &str = "dns-address";

/// The network option that turns the DNS server off (`dns=false`).
pub const DNS_OPTION: &str = "dns";

/// A network's DNS settings from its options: whether DNS is served, and at
/// which address when not at the gateway's. Lenient (the daemon validates
/// the values when the network is created): an unparsable address is the
/// gateway's, anything but `false`/`0`/`no`/`off` leaves DNS on.
pub fn settings(
    options: &std::collections::BTreeMap<String, String>,
) -> (bool, Option<std::net::Ipv4Addr>) {
    let enabled = !options.get(DNS_OPTION).is_some_and(|v| {
        matches!(
            v.to_ascii_lowercase().as_str(),
            "false" | "0" | "no" | "off"
        )
    });
    let address = options.get(DNS_ADDRESS_OPTION).and_then(|a| a.parse().ok());
    (enabled, address)
}

/// Counters of one network's DNS server. Relaxed atomics: the switch thread
/// (and the forwarder's reply path) write, anyone reads.
#[derive(Debug, Default)]
pub struct DnsCounters {
    /// DNS messages received (UDP datagrams and complete TCP messages).
    pub queries: AtomicU64,
    /// Answered from the name table.
    pub answered_local: AtomicU64,
    /// Handed to the forwarder.
    pub forwarded: AtomicU64,
    /// SERVFAIL answers sent.
    pub servfail: AtomicU64,
    /// NXDOMAIN answers sent.
    pub nxdomain: AtomicU64,
    /// Malformed queries (answered FORMERR/NOTIMP, or dropped).
    pub malformed: AtomicU64,
    /// Queries or answers dropped without an answer.
    pub dropped: AtomicU64,
    /// UDP answers truncated (TC set).
    pub truncated: AtomicU64,
    /// TCP connections accepted.
    pub tcp_connections: AtomicU64,
    /// TCP connections aborted for making no progress.
    pub tcp_idle_closed: AtomicU64,
    /// Queries not forwarded, or given up, because a share was full (the
    /// client's, the network's or the daemon's); answered SERVFAIL.
    pub limited: AtomicU64,
    /// Of `queries`, those asked at 127.0.0.11 inside a sandbox (the
    /// [`embedded`] listeners count for their sandbox's network).
    pub embedded: AtomicU64,
}

impl DnsCounters {
    /// A copy for reporting.
    pub fn snapshot(&self) -> DnsStats {
        DnsStats {
            queries: self.queries.load(Relaxed),
            answered_local: self.answered_local.load(Relaxed),
            forwarded: self.forwarded.load(Relaxed),
            servfail: self.servfail.load(Relaxed),
            nxdomain: self.nxdomain.load(Relaxed),
            malformed: self.malformed.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            truncated: self.truncated.load(Relaxed),
            tcp_connections: self.tcp_connections.load(Relaxed),
            tcp_idle_closed: self.tcp_idle_closed.load(Relaxed),
            limited: self.limited.load(Relaxed),
            embedded: self.embedded.load(Relaxed),
        }
    }

    /// Count an answer about to be sent: answered locally, malformed,
    /// truncated, and its response code.
    pub fn count_reply(&self, reply: &Reply) {
        if reply.local {
            self.answered_local.fetch_add(1, Relaxed);
        }
        if reply.malformed {
            self.malformed.fetch_add(1, Relaxed);
        }
        if reply.truncated {
            self.truncated.fetch_add(1, Relaxed);
        }
        match reply.rcode {
            hickory_proto::op::ResponseCode::ServFail => self.servfail.fetch_add(1, Relaxed),
            hickory_proto::op::ResponseCode::NXDomain => self.nxdomain.fetch_add(1, Relaxed),
            _ => 0,
        };
    }
}

/// A snapshot of [`DnsCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub struct DnsStats {
    /// DNS messages received.
    pub queries: u64,
    /// Answered from the name table.
    pub answered_local: u64,
    /// Handed to the forwarder.
    pub forwarded: u64,
    /// SERVFAIL answers sent.
    pub servfail: u64,
    /// NXDOMAIN answers sent.
    pub nxdomain: u64,
    /// Malformed queries.
    pub malformed: u64,
    /// Dropped without an answer.
    pub dropped: u64,
    /// UDP answers truncated.
    pub truncated: u64,
    /// TCP connections accepted.
    pub tcp_connections: u64,
    /// TCP connections aborted for making no progress.
    pub tcp_idle_closed: u64,
    /// Queries refused or given up by a forwarding share.
    pub limited: u64,
    /// Queries asked at 127.0.0.11 inside a sandbox.
    pub embedded: u64,
}
