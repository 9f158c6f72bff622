//! The DNS server of one gateway: smoltcp sockets on port 53 around the
//! pure [`answer`] core.
//!
//! # Theory of operation
//!
//! [`DnsServer`] lives inside the [`Gateway`](crate::gateway::Gateway), in
//! the switch thread, and owns one UDP socket and a fixed pool of
//! [`TCP_SOCKETS`] TCP sockets, all in the gateway's `SocketSet`, bound to
//! the gateway address, port 53. It does no I/O of its own and reads no
//! clock: the gateway calls [`DnsServer::process`] with the time after every
//! smoltcp poll, and asks [`DnsServer::poll_at`] when it next needs one.
//!
//! - **UDP**: every datagram is one query; at most [`UDP_PER_POLL`] are taken
//!   per call (the rest wait in the socket's bounded buffer, and `poll_at`
//!   says "now"). The asker is the datagram's source address, which the
//!   switch's anti-spoofing has already verified to be the ingress port's.
//! - **TCP**: each pool socket listens; smoltcp hands a new connection to a
//!   listening socket and answers RST when none is left, so at most
//!   [`TCP_SOCKETS`] connections exist and each is served on its own: a
//!   connection waiting for its client (or its forwarded answer) never
//!   delays another. A connection reads one length-prefixed message at a
//!   time, answers it, then reads the next (pipelined queries are answered
//!   in order). A length of 0 or over [`MAX_QUERY`](super::MAX_QUERY) is
//!   malformed and aborts the connection; the length is never used to size
//!   an allocation beyond that. A connection that makes no progress (no
//!   complete query, no completed answer) for [`TCP_IDLE`] is aborted, which
//!   covers idle clients, half-sent queries and clients that do not read
//!   their answers. After a close or reset the socket listens again.
//! - **Forwarding**: a query `answer` wants forwarded gets a token and a
//!   [`Pending`] entry, and a [`ForwardOut`] the switch takes with
//!   [`DnsServer::take_forwards`] and gives to the
//!   [`Forwarder`](super::Forwarder). Pending entries are [`Shares`] by
//!   source address: at most [`MAX_PENDING_PER_CLIENT`] per client and
//!   [`MAX_PENDING`] per network; when the network's are all taken, the
//!   client holding the most gives up its oldest (answered SERVFAIL) to a
//!   client holding at least two fewer, so one sandbox cannot shut its
//!   neighbours out. A query over a bound gets SERVFAIL at once. Each is
//!   counted as `limited`, as is a query the forwarder refuses for the
//!   same reason ([`ForwardError::Overloaded`]). The answer comes back
//!   through [`DnsServer::forwarded`]; a pending query whose answer does not
//!   come back within its deadline (the forwarder's
//!   [`bound`](super::Forwarder::bound) and a grace) gets SERVFAIL. A late
//!   answer, or one for a query given up, is dropped; a TCP connection that
//!   closed meanwhile is recognized by its generation and its answer dropped.
//!
//! Every query, answer and drop is counted in [`DnsCounters`].

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use hickory_proto::op::Message;
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::{tcp, udp};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{IpAddress, IpEndpoint, IpListenEndpoint};
use tracing::{debug, trace, warn};

use super::answer::{
    answer, Action, Reply, Request, Rng, Transport, MAX_QUERY, MAX_UDP_ANSWER, MIN_UDP_ANSWER,
};
use super::fair::{Admit, Shares, MAX_PENDING_PER_CLIENT};
use super::forward::{ForwardError, ForwardResult};
use super::table::NameTable;
use super::DnsCounters;

/// The DNS port.
pub const DNS_PORT: u16 = 53;

/// TCP connections served at once (one socket each).
pub const TCP_SOCKETS: usize = 8;

/// A TCP connection with no progress for this long is aborted.
pub const TCP_IDLE: Duration = Duration::from_secs(5);

/// Queries waiting for the upstream resolvers, per network.
pub const MAX_PENDING: usize = 256;

/// UDP queries taken per call of [`DnsServer::process`].
pub const UDP_PER_POLL: usize = 256;

/// TCP queries taken per connection per call of [`DnsServer::process`].
const TCP_PER_POLL: usize = 4;

/// Grace beyond the forwarder's own timeout before a pending query gets
/// SERVFAIL here (the forwarder normally answers first).
const PENDING_GRACE: Duration = Duration::from_millis(500);

/// smoltcp's retransmission give-up for the DNS TCP sockets.
const TCP_TIMEOUT: Duration = Duration::from_secs(10);

const UDP_RX_PACKETS: usize = 128;
const UDP_RX_BYTES: usize = 64 * 1024;
const UDP_TX_PACKETS: usize = 128;
const UDP_TX_BYTES: usize = 128 * 1024;
const TCP_RX_BYTES: usize = 8 * 1024;
const TCP_TX_BYTES: usize = 16 * 1024;

/// A query for the upstreams, for the switch to hand to the forwarder.
#[derive(Debug)]
pub struct ForwardOut {
    /// Identifies the pending query in [`DnsServer::forwarded`].
    pub token: u64,
    /// The query as the client sent it.
    pub query: Vec<u8>,
    /// Whether the client asked over TCP.
    pub tcp: bool,
    /// The client's address (the forwarder's fairness key, with the network).
    pub client: Ipv4Addr,
}

/// The DNS server of one gateway. See the module documentation.
pub struct DnsServer {
    network: String,
    listen: IpListenEndpoint,
    /// Largest UDP answer (from the MTU), at least 512.
    udp_max: u16,
    /// How long the forwarder may take from submission to answer; `None`:
    /// never forward (SERVFAIL).
    forward_timeout: Option<Duration>,
    table: Arc<NameTable>,
    udp: SocketHandle,
    tcp: Vec<TcpConn>,
    pending: HashMap<u64, Pending>,
    /// Pending queries by source address.
    shares: Shares<Ipv4Addr>,
    next_token: u64,
    forwards: Vec<ForwardOut>,
    rng: Rng,
    counters: Arc<DnsCounters>,
}

/// Who waits for a forwarded answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    Udp(IpEndpoint),
    Tcp { slot: usize, generation: u64 },
}

/// A query waiting for the upstreams.
struct Pending {
    client: Client,
    /// Its source address (its share).
    asker: Ipv4Addr,
    query: Message,
    limit: u16,
    deadline: Instant,
}

/// One TCP socket of the pool and its connection's state.
struct TcpConn {
    handle: SocketHandle,
    /// Bumped for every connection, so late answers find the right one.
    generation: u64,
    /// A connection is in progress (the socket left LISTEN).
    active: bool,
    /// The peer, once connected.
    peer: Option<Ipv4Addr>,
    /// Abort when this passes without progress.
    deadline: Instant,
    /// The message being read: 2 length bytes, then the message.
    inbuf: Vec<u8>,
    /// The answer being written (length-prefixed), from `out_pos` on.
    out: Vec<u8>,
    out_pos: usize,
    /// Token of this connection's forwarded query.
    waiting: Option<u64>,
}

/// The outcome of reading from a TCP connection.
enum Read {
    /// A whole message.
    Message(Vec<u8>),
    /// Not yet.
    Incomplete,
    /// A length of 0 or over [`MAX_QUERY`].
    Bad,
}

impl DnsServer {
    /// Add the DNS sockets to `sockets` and listen at `gateway`:53.
    /// `forward_timeout` is the forwarder's bound from submission to answer
    /// ([`Forwarder::bound`](super::Forwarder::bound)), or `None` when there
    /// is no forwarder (non-local names then get SERVFAIL).
    pub fn new(
        sockets: &mut SocketSet<'static>,
        network: &str,
        gateway: Ipv4Addr,
        mtu: usize,
        forward_timeout: Option<Duration>,
        seed: u64,
    ) -> DnsServer {
        let listen = IpListenEndpoint {
            addr: Some(IpAddress::Ipv4(gateway)),
            port: DNS_PORT,
        };
        let mut udp = udp::Socket::new(
            udp::PacketBuffer::new(
                vec![udp::PacketMetadata::EMPTY; UDP_RX_PACKETS],
                vec![0; UDP_RX_BYTES],
            ),
            udp::PacketBuffer::new(
                vec![udp::PacketMetadata::EMPTY; UDP_TX_PACKETS],
                vec![0; UDP_TX_BYTES],
            ),
        );
        if let Err(e) = udp.bind(listen) {
            // Cannot happen: the socket is new and the port is not 0.
            warn!(network, error = %e, "dns: cannot bind the UDP socket");
        }
        let udp = sockets.add(udp);
        let tcp = (0..TCP_SOCKETS)
            .map(|_| {
                let mut socket = tcp::Socket::new(
                    tcp::SocketBuffer::new(vec![0; TCP_RX_BYTES]),
                    tcp::SocketBuffer::new(vec![0; TCP_TX_BYTES]),
                );
                socket.set_timeout(Some(TCP_TIMEOUT));
                socket.set_nagle_enabled(false);
                if let Err(e) = socket.listen(listen) {
                    warn!(network, error = %e, "dns: cannot listen on a TCP socket");
                }
                TcpConn {
                    handle: sockets.add(socket),
                    generation: 0,
                    active: false,
                    peer: None,
                    deadline: Instant::ZERO,
                    inbuf: Vec::new(),
                    out: Vec::new(),
                    out_pos: 0,
                    waiting: None,
                }
            })
            .collect();
        // IP and UDP headers: 28 bytes.
        let udp_max = u16::try_from(mtu.saturating_sub(28))
            .unwrap_or(u16::MAX)
            .clamp(MIN_UDP_ANSWER, MAX_UDP_ANSWER);
        DnsServer {
            network: network.to_string(),
            listen,
            udp_max,
            forward_timeout,
            table: Arc::new(NameTable::default()),
            udp,
            tcp,
            pending: HashMap::new(),
            shares: Shares::new(MAX_PENDING_PER_CLIENT, MAX_PENDING),
            next_token: 0,
            forwards: Vec::new(),
            rng: Rng::new(seed),
            counters: Arc::new(DnsCounters::default()),
        }
    }

    /// Answer from `table` from now on.
    pub fn set_names(&mut self, table: Arc<NameTable>) {
        self.table = table;
    }

    /// The current name table.
    pub fn names(&self) -> &Arc<NameTable> {
        &self.table
    }

    /// The server's counters.
    pub fn counters(&self) -> &Arc<DnsCounters> {
        &self.counters
    }

    /// Queries to hand to the forwarder (each exactly once).
    pub fn take_forwards(&mut self) -> Vec<ForwardOut> {
        std::mem::take(&mut self.forwards)
    }

    /// Serve whatever the sockets hold at `now`. Returns whether anything
    /// was queued for sending (the gateway then polls smoltcp again).
    pub fn process(&mut self, now: Instant, sockets: &mut SocketSet<'static>) -> bool {
        let mut queued = self.process_udp(now, sockets);
        for slot in 0..self.tcp.len() {
            queued |= self.process_tcp(now, slot, sockets);
        }
        queued |= self.expire(now, sockets);
        queued
    }

    /// When [`DnsServer::process`] must run next without new input:
    /// `Some(now)` when work is waiting, else the earliest deadline.
    pub fn poll_at(&self, now: Instant, sockets: &SocketSet<'static>) -> Option<Instant> {
        if sockets.get::<udp::Socket>(self.udp).can_recv() {
            return Some(now);
        }
        let mut at: Option<Instant> = None;
        let mut earliest = |t: Instant| at = Some(at.map_or(t, |a| a.min(t)));
        for conn in self.tcp.iter().filter(|c| c.active) {
            let socket = sockets.get::<tcp::Socket>(conn.handle);
            if conn.ready() && (socket.can_recv() || conn.has_message()) {
                return Some(now);
            }
            earliest(conn.deadline);
        }
        for pending in self.pending.values() {
            earliest(pending.deadline);
        }
        at
    }

    /// The answer to forwarded query `token` arrived (or failed).
    pub fn forwarded(
        &mut self,
        now: Instant,
        token: u64,
        result: ForwardResult,
        sockets: &mut SocketSet<'static>,
    ) {
        let Some(pending) = self.pending.remove(&token) else {
            trace!(network = %self.network, token, "dns: late answer from the forwarder dropped");
            return;
        };
        self.shares.remove(&pending.asker);
        if matches!(result, Err(ForwardError::Overloaded)) {
            self.counters.limited.fetch_add(1, Relaxed);
        }
        let reply = Reply::forwarded(&pending.query, result, pending.limit);
        self.count_reply(&reply);
        self.deliver(now, pending.client, reply.bytes, sockets);
    }

    fn process_udp(&mut self, now: Instant, sockets: &mut SocketSet<'static>) -> bool {
        let mut queued = false;
        for _ in 0..UDP_PER_POLL {
            let socket = sockets.get_mut::<udp::Socket>(self.udp);
            let (action, endpoint, asker) = match socket.recv() {
                Ok((bytes, meta)) => {
                    self.counters.queries.fetch_add(1, Relaxed);
                    let Some(asker) = ipv4(meta.endpoint.addr) else {
                        self.counters.dropped.fetch_add(1, Relaxed);
                        continue;
                    };
                    let request = Request {
                        network: &self.network,
                        asker,
                        bytes,
                        transport: Transport::Udp { max: self.udp_max },
                    };
                    let action = answer(&self.table, &request, &mut self.rng);
                    (action, meta.endpoint, asker)
                }
                Err(_) => break,
            };
            queued |= self.act(now, action, Client::Udp(endpoint), asker, sockets);
        }
        queued
    }

    fn process_tcp(&mut self, now: Instant, slot: usize, sockets: &mut SocketSet<'static>) -> bool {
        let Some(conn) = self.tcp.get_mut(slot) else {
            return false;
        };
        let socket = sockets.get_mut::<tcp::Socket>(conn.handle);
        match socket.state() {
            tcp::State::Listen | tcp::State::TimeWait => {
                conn.end();
                return false;
            }
            tcp::State::Closed => {
                conn.end();
                // After an abort, the RST goes out first (smoltcp forgets
                // the peer when it has sent it); then listen again.
                if socket.remote_endpoint().is_none() {
                    if let Err(e) = socket.listen(self.listen) {
                        debug!(network = %self.network, error = %e, "dns: TCP socket cannot listen again");
                    }
                }
                return false;
            }
            _ => {}
        }
        if !conn.active {
            conn.start(now, socket.remote_endpoint().and_then(|e| ipv4(e.addr)));
            self.counters.tcp_connections.fetch_add(1, Relaxed);
        }
        if now >= conn.deadline {
            trace!(network = %self.network, slot, "dns: idle TCP connection aborted");
            socket.abort();
            conn.end();
            self.counters.tcp_idle_closed.fetch_add(1, Relaxed);
            return true;
        }
        let mut queued = conn.flush(now, socket);
        for _ in 0..TCP_PER_POLL {
            let Some(conn) = self.tcp.get_mut(slot) else {
                break;
            };
            if !conn.ready() {
                break;
            }
            let socket = sockets.get_mut::<tcp::Socket>(conn.handle);
            let message = match conn.read_message(socket) {
                Read::Incomplete => break,
                Read::Bad => {
                    self.counters.queries.fetch_add(1, Relaxed);
                    self.counters.malformed.fetch_add(1, Relaxed);
                    self.counters.dropped.fetch_add(1, Relaxed);
                    socket.abort();
                    conn.end();
                    return true;
                }
                Read::Message(message) => message,
            };
            conn.deadline = now + TCP_IDLE;
            let client = Client::Tcp {
                slot,
                generation: conn.generation,
            };
            let Some(asker) = conn.peer else {
                break;
            };
            self.counters.queries.fetch_add(1, Relaxed);
            let request = Request {
                network: &self.network,
                asker,
                bytes: &message,
                transport: Transport::Tcp,
            };
            let action = answer(&self.table, &request, &mut self.rng);
            queued |= self.act(now, action, client, asker, sockets);
        }
        // The client finished sending and nothing is left to do: close.
        if let Some(conn) = self.tcp.get_mut(slot) {
            let socket = sockets.get_mut::<tcp::Socket>(conn.handle);
            if socket.state() == tcp::State::CloseWait
                && conn.waiting.is_none()
                && conn.out.is_empty()
                && !socket.can_recv()
            {
                socket.close();
                queued = true;
            }
        }
        queued
    }

    /// Carry out `action` for `client` (source address `asker`). Returns
    /// whether bytes were queued.
    fn act(
        &mut self,
        now: Instant,
        action: Action,
        client: Client,
        asker: Ipv4Addr,
        sockets: &mut SocketSet<'static>,
    ) -> bool {
        match action {
            Action::Reply(reply) => {
                self.count_reply(&reply);
                self.deliver(now, client, reply.bytes, sockets)
            }
            Action::Forward(forward) => {
                let Some(timeout) = self.forward_timeout else {
                    let reply = Reply::servfail(&forward.query, forward.limit);
                    self.count_reply(&reply);
                    return self.deliver(now, client, reply.bytes, sockets);
                };
                let mut queued = false;
                match self.shares.admit(&asker) {
                    Admit::Yes => {}
                    Admit::EvictFrom(hog) => queued |= self.evict_oldest(now, hog, sockets),
                    Admit::No => {
                        trace!(network = %self.network, %asker, "dns: over its share of pending queries");
                        self.counters.limited.fetch_add(1, Relaxed);
                        let reply = Reply::servfail(&forward.query, forward.limit);
                        self.count_reply(&reply);
                        return self.deliver(now, client, reply.bytes, sockets);
                    }
                }
                let token = self.next_token;
                self.next_token = self.next_token.wrapping_add(1);
                if let Client::Tcp { slot, .. } = client {
                    if let Some(conn) = self.tcp.get_mut(slot) {
                        conn.waiting = Some(token);
                    }
                }
                self.forwards.push(ForwardOut {
                    token,
                    query: forward.bytes,
                    tcp: matches!(client, Client::Tcp { .. }),
                    client: asker,
                });
                self.shares.add(asker);
                self.pending.insert(
                    token,
                    Pending {
                        client,
                        asker,
                        query: forward.query,
                        limit: forward.limit,
                        deadline: now + timeout + PENDING_GRACE,
                    },
                );
                self.counters.forwarded.fetch_add(1, Relaxed);
                queued
            }
            Action::Drop(why) => {
                trace!(network = %self.network, ?why, "dns: query dropped");
                self.counters.malformed.fetch_add(1, Relaxed);
                self.counters.dropped.fetch_add(1, Relaxed);
                if let Client::Tcp { slot, .. } = client {
                    if let Some(conn) = self.tcp.get_mut(slot) {
                        sockets.get_mut::<tcp::Socket>(conn.handle).abort();
                        conn.end();
                        return true;
                    }
                }
                false
            }
        }
    }

    /// Send `bytes` to `client`. Returns whether they were queued.
    fn deliver(
        &mut self,
        now: Instant,
        client: Client,
        bytes: Vec<u8>,
        sockets: &mut SocketSet<'static>,
    ) -> bool {
        match client {
            Client::Udp(endpoint) => {
                let socket = sockets.get_mut::<udp::Socket>(self.udp);
                match socket.send_slice(&bytes, endpoint) {
                    Ok(()) => true,
                    Err(e) => {
                        trace!(network = %self.network, error = %e, "dns: UDP answer dropped");
                        self.counters.dropped.fetch_add(1, Relaxed);
                        false
                    }
                }
            }
            Client::Tcp { slot, generation } => {
                let Some(conn) = self
                    .tcp
                    .get_mut(slot)
                    .filter(|c| c.active && c.generation == generation)
                else {
                    trace!(network = %self.network, slot, "dns: TCP answer for a closed connection dropped");
                    self.counters.dropped.fetch_add(1, Relaxed);
                    return false;
                };
                conn.waiting = None;
                let Ok(len) = u16::try_from(bytes.len()) else {
                    self.counters.dropped.fetch_add(1, Relaxed);
                    return false;
                };
                conn.out.clear();
                conn.out_pos = 0;
                conn.out.extend_from_slice(&len.to_be_bytes());
                conn.out.extend_from_slice(&bytes);
                conn.flush(now, sockets.get_mut::<tcp::Socket>(conn.handle))
            }
        }
    }

    /// `hog` gives up its oldest pending query (SERVFAIL, counted as
    /// limited) to make room for a client holding less. Returns whether
    /// bytes were queued.
    fn evict_oldest(
        &mut self,
        now: Instant,
        hog: Ipv4Addr,
        sockets: &mut SocketSet<'static>,
    ) -> bool {
        let oldest = self
            .pending
            .iter()
            .filter(|(_, p)| p.asker == hog)
            .map(|(token, _)| *token)
            .min();
        let Some(pending) = oldest.and_then(|token| self.pending.remove(&token)) else {
            return false;
        };
        trace!(network = %self.network, %hog, "dns: pending query given up for a client holding less");
        self.shares.remove(&hog);
        self.counters.limited.fetch_add(1, Relaxed);
        let reply = servfail(&pending);
        self.count_reply(&reply);
        self.deliver(now, pending.client, reply.bytes, sockets)
    }

    /// SERVFAIL for pending queries past their deadline.
    fn expire(&mut self, now: Instant, sockets: &mut SocketSet<'static>) -> bool {
        if self.pending.values().all(|p| p.deadline > now) {
            return false;
        }
        let late: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(token, _)| *token)
            .collect();
        let mut queued = false;
        for token in late {
            if let Some(pending) = self.pending.remove(&token) {
                self.shares.remove(&pending.asker);
                let reply = servfail(&pending);
                self.count_reply(&reply);
                queued |= self.deliver(now, pending.client, reply.bytes, sockets);
            }
        }
        queued
    }

    fn count_reply(&self, reply: &Reply) {
        self.counters.count_reply(reply);
    }
}

fn servfail(pending: &Pending) -> Reply {
    Reply::servfail(&pending.query, pending.limit)
}

/// The IPv4 address of `addr` (the only kind while warren is IPv4-only).
#[allow(unreachable_patterns, irrefutable_let_patterns)]
fn ipv4(addr: IpAddress) -> Option<Ipv4Addr> {
    match addr {
        IpAddress::Ipv4(a) => Some(a),
        _ => None,
    }
}

impl TcpConn {
    /// A new connection (from `peer`) was seen at `now`.
    fn start(&mut self, now: Instant, peer: Option<Ipv4Addr>) {
        self.active = true;
        self.generation = self.generation.wrapping_add(1);
        self.peer = peer;
        self.deadline = now + TCP_IDLE;
        self.inbuf.clear();
        self.out.clear();
        self.out_pos = 0;
        self.waiting = None;
    }

    /// The connection is over; forget its state (keeping the buffers).
    fn end(&mut self) {
        if self.active {
            self.active = false;
            self.peer = None;
            self.inbuf.clear();
            self.out.clear();
            self.out_pos = 0;
            self.waiting = None;
        }
    }

    /// Free to read the next query: nothing forwarded, nothing unsent.
    fn ready(&self) -> bool {
        self.active && self.waiting.is_none() && self.out.is_empty()
    }

    /// `inbuf` holds a whole message already.
    fn has_message(&self) -> bool {
        match self.inbuf.get(..2) {
            Some(&[hi, lo]) => self.inbuf.len() >= 2 + usize::from(u16::from_be_bytes([hi, lo])),
            _ => false,
        }
    }

    /// Read towards the next length-prefixed message.
    fn read_message(&mut self, socket: &mut tcp::Socket<'_>) -> Read {
        loop {
            let need = match self.inbuf.get(..2) {
                Some(&[hi, lo]) => {
                    let len = usize::from(u16::from_be_bytes([hi, lo]));
                    if len == 0 || len > MAX_QUERY {
                        return Read::Bad;
                    }
                    2 + len
                }
                _ => 2,
            };
            if self.inbuf.len() >= need {
                let message = self.inbuf[2..need].to_vec();
                self.inbuf.clear();
                return Read::Message(message);
            }
            if !socket.can_recv() {
                return Read::Incomplete;
            }
            let start = self.inbuf.len();
            self.inbuf.resize(need, 0);
            match socket.recv_slice(&mut self.inbuf[start..]) {
                Ok(n) => self.inbuf.truncate(start + n),
                Err(_) => {
                    self.inbuf.truncate(start);
                    return Read::Incomplete;
                }
            }
        }
    }

    /// Write as much of the answer as the socket takes. Returns whether
    /// anything was written; a finished answer counts as progress.
    fn flush(&mut self, now: Instant, socket: &mut tcp::Socket<'_>) -> bool {
        if self.out.is_empty() {
            return false;
        }
        let written = match socket.send_slice(&self.out[self.out_pos..]) {
            Ok(n) => n,
            Err(_) => return false,
        };
        self.out_pos += written;
        if self.out_pos >= self.out.len() {
            self.out.clear();
            self.out_pos = 0;
            self.deadline = now + TCP_IDLE;
        }
        written > 0
    }
}

#[cfg(test)]
mod tests {
    //! The server over a real smoltcp interface: queries go in as frames,
    //! answers come out as frames (no namespace, no thread).

    use super::super::table::{EndpointInfo, NetworkInfo, SandboxInfo};
    use super::*;
    use crate::gateway::testutil::{arp_request, parse_udp, udp};
    use crate::gateway::{Gateway, GatewayConfig};
    use hickory_proto::op::Query;
    use hickory_proto::op::ResponseCode;
    use hickory_proto::rr::{Name, RData, RecordType};
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{
        EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpProtocol, Ipv4Packet,
        Ipv4Repr, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber,
    };
    use std::str::FromStr;

    const GW_MAC: [u8; 6] = [0x02, 0x42, 0xac, 0x12, 0x00, 0x01];
    const GW_IP: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 1);
    const MAC: [u8; 6] = [0x02, 0x42, 0xac, 0x12, 0x00, 0x02];
    const IP: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 2);

    fn table() -> Arc<NameTable> {
        Arc::new(NameTable::build(
            &[NetworkInfo {
                name: "dev".into(),
                internal: false,
                names_enabled: true,
                gateway: GW_IP,
            }],
            &[SandboxInfo {
                name: "es".into(),
                short_id: "e5e5e5e5e5e5".into(),
                endpoints: vec![EndpointInfo {
                    network: "dev".into(),
                    ip: IP,
                    aliases: vec!["search".into()],
                }],
            }],
        ))
    }

    struct Harness {
        gw: Gateway,
        now: i64,
    }

    impl Harness {
        fn new(forward: bool) -> Harness {
            let cfg = GatewayConfig {
                ip: GW_IP,
                prefix_len: 16,
                mac: GW_MAC,
                mtu: 65520,
            };
            let mut gw = Gateway::new(&cfg, Instant::from_millis(0)).expect("gateway");
            gw.enable_dns("dev", forward.then_some(Duration::from_millis(2500)));
            gw.set_dns_names(table());
            let mut h = Harness { gw, now: 0 };
            // The sandbox ARPs for the gateway first, as a kernel would.
            h.gw.receive(&arp_request(MAC, IP, GW_IP));
            assert_eq!(h.poll().len(), 1);
            h
        }

        fn poll(&mut self) -> Vec<Vec<u8>> {
            self.now += 1;
            let mut out = Vec::new();
            self.gw.poll(Instant::from_millis(self.now), &mut |f| {
                out.push(f.to_vec())
            });
            out
        }

        fn advance(&mut self, ms: i64) -> Vec<Vec<u8>> {
            self.now += ms;
            self.poll()
        }

        fn counters(&self) -> super::super::DnsStats {
            self.gw.dns_counters().expect("dns").snapshot()
        }
    }

    fn ipv4_frame(proto: IpProtocol, payload_len: usize, fill: impl FnOnce(&mut [u8])) -> Vec<u8> {
        let ip = Ipv4Repr {
            src_addr: IP,
            dst_addr: GW_IP,
            next_header: proto,
            payload_len,
            hop_limit: 64,
        };
        let eth = EthernetRepr {
            src_addr: EthernetAddress(MAC),
            dst_addr: EthernetAddress(GW_MAC),
            ethertype: EthernetProtocol::Ipv4,
        };
        let mut frame = vec![0u8; 14 + 20 + payload_len];
        let mut e = EthernetFrame::new_unchecked(&mut frame[..]);
        eth.emit(&mut e);
        let mut p = Ipv4Packet::new_unchecked(e.payload_mut());
        ip.emit(&mut p, &ChecksumCapabilities::default());
        fill(p.payload_mut());
        frame
    }

    fn udp_frame(src_port: u16, payload: &[u8]) -> Vec<u8> {
        udp(MAC, GW_MAC, IP, GW_IP, src_port, DNS_PORT, payload)
    }

    fn tcp_frame(repr: &TcpRepr<'_>) -> Vec<u8> {
        ipv4_frame(IpProtocol::Tcp, repr.buffer_len(), |buf| {
            let mut t = TcpPacket::new_unchecked(buf);
            repr.emit(
                &mut t,
                &IP.into(),
                &GW_IP.into(),
                &ChecksumCapabilities::default(),
            );
        })
    }

    fn udp_payload(frame: &[u8]) -> Option<(u16, Vec<u8>)> {
        parse_udp(frame)
    }

    struct Seg {
        control: TcpControl,
        seq: TcpSeqNumber,
        payload: Vec<u8>,
    }

    fn tcp_seg(frame: &[u8]) -> Option<Seg> {
        let eth = EthernetFrame::new_checked(frame).ok()?;
        let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
        if ip.next_header() != IpProtocol::Tcp {
            return None;
        }
        let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
        let repr = TcpRepr::parse(
            &tcp,
            &GW_IP.into(),
            &IP.into(),
            &ChecksumCapabilities::default(),
        )
        .ok()?;
        Some(Seg {
            control: repr.control,
            seq: repr.seq_number,
            payload: repr.payload.to_vec(),
        })
    }

    fn query(name: &str, id: u16) -> Vec<u8> {
        let mut msg = Message::new();
        msg.set_id(id).set_recursion_desired(true);
        msg.add_query(Query::query(
            Name::from_str(name).expect("name"),
            RecordType::A,
        ));
        msg.to_vec().expect("encode")
    }

    fn a_answers(bytes: &[u8]) -> Vec<Ipv4Addr> {
        Message::from_vec(bytes)
            .expect("answer")
            .answers()
            .iter()
            .filter_map(|r| match r.data() {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn answers_over_udp() {
        let mut h = Harness::new(true);
        h.gw.receive(&udp_frame(40000, &query("es", 9)));
        let out = h.poll();
        assert_eq!(out.len(), 1);
        let (port, payload) = udp_payload(&out[0]).expect("udp");
        assert_eq!(port, 40000);
        assert_eq!(a_answers(&payload), vec![IP]);
        let c = h.counters();
        assert_eq!((c.queries, c.answered_local, c.forwarded), (1, 1, 0));
    }

    #[test]
    fn forwards_and_answers_when_the_forwarder_does() {
        let mut h = Harness::new(true);
        h.gw.receive(&udp_frame(40001, &query("example.com", 10)));
        assert!(h.poll().is_empty());
        let forwards = h.gw.take_dns_forwards();
        assert_eq!(forwards.len(), 1);
        assert!(!forwards[0].tcp);
        assert_eq!(forwards[0].query, query("example.com", 10));
        // The forwarder's answer (with the client's id) goes back out.
        let mut upstream = Message::from_vec(&query("example.com", 10)).expect("q");
        upstream.set_message_type(hickory_proto::op::MessageType::Response);
        upstream.set_response_code(ResponseCode::NXDomain);
        h.gw.dns_forwarded(
            Instant::from_millis(h.now),
            forwards[0].token,
            Ok(upstream.to_vec().expect("enc")),
        );
        let out = h.poll();
        let (_, payload) = udp_payload(&out[0]).expect("udp");
        assert_eq!(
            Message::from_vec(&payload).expect("a").response_code(),
            ResponseCode::NXDomain
        );
        // Twice is harmless.
        h.gw.dns_forwarded(
            Instant::from_millis(h.now),
            forwards[0].token,
            Err(super::super::ForwardError::Timeout),
        );
        assert!(h.poll().is_empty());
        let c = h.counters();
        assert_eq!((c.forwarded, c.nxdomain, c.servfail), (1, 1, 0));
    }

    #[test]
    fn forward_failure_and_expiry_are_servfail() {
        let mut h = Harness::new(true);
        h.gw.receive(&udp_frame(40002, &query("a.example", 1)));
        h.gw.receive(&udp_frame(40003, &query("b.example", 2)));
        h.poll();
        let forwards = h.gw.take_dns_forwards();
        assert_eq!(forwards.len(), 2);
        h.gw.dns_forwarded(
            Instant::from_millis(h.now),
            forwards[0].token,
            Err(super::super::ForwardError::Timeout),
        );
        let out = h.poll();
        let (_, payload) = udp_payload(&out[0]).expect("udp");
        assert_eq!(
            Message::from_vec(&payload).expect("a").response_code(),
            ResponseCode::ServFail
        );
        // The second never comes back: SERVFAIL once its deadline passed,
        // and poll_delay said when.
        let delay =
            h.gw.poll_delay(Instant::from_millis(h.now))
                .expect("a timer");
        assert!(delay <= Duration::from_millis(3000), "{delay}");
        let out = h.advance(3100);
        let (port, payload) = udp_payload(&out[0]).expect("udp");
        assert_eq!(port, 40003);
        assert_eq!(
            Message::from_vec(&payload).expect("a").response_code(),
            ResponseCode::ServFail
        );
        assert_eq!(h.counters().servfail, 2);
        assert_eq!(h.gw.poll_delay(Instant::from_millis(h.now)), None);
    }

    /// Client `n` of the harness's network (not in the name table: it sees
    /// the network's names), ARPed in.
    fn other_client(h: &mut Harness, n: u8) -> ([u8; 6], Ipv4Addr) {
        let mac = [0x02, 0x42, 0xac, 0x12, 0x01, n];
        let ip = Ipv4Addr::new(172, 18, 1, n);
        h.gw.receive(&arp_request(mac, ip, GW_IP));
        h.poll();
        (mac, ip)
    }

    /// `count` forwardable queries from `(mac, ip)`, from ports `base`
    /// on; returns the SERVFAIL answers that came out at once (by port).
    fn flood(h: &mut Harness, (mac, ip): ([u8; 6], Ipv4Addr), base: u16, count: u16) -> Vec<u16> {
        let mut servfail = Vec::new();
        for chunk in (0..count).collect::<Vec<_>>().chunks(32) {
            for i in chunk {
                let q = query(&format!("n{i}.example"), *i);
                h.gw.receive(&udp(mac, GW_MAC, ip, GW_IP, base + i, DNS_PORT, &q));
            }
            // smoltcp sends one datagram of a socket per poll.
            let mut out = Vec::new();
            loop {
                let more = h.poll();
                if more.is_empty() {
                    break;
                }
                out.extend(more);
            }
            for frame in out {
                if let Some((port, payload)) = udp_payload(&frame) {
                    let msg = Message::from_vec(&payload).expect("answer");
                    assert_eq!(msg.response_code(), ResponseCode::ServFail);
                    servfail.push(port);
                }
            }
        }
        servfail
    }

    #[test]
    fn pending_queries_are_shared_per_client_and_the_biggest_gives_way() {
        let mut h = Harness::new(true);
        let hog = (MAC, IP);
        // One client: its share, then SERVFAIL at once, counted as limited.
        let refused = flood(&mut h, hog, 10000, MAX_PENDING_PER_CLIENT as u16 + 3);
        assert_eq!(refused.len(), 3);
        let forwards = h.gw.take_dns_forwards();
        assert_eq!(forwards.len(), MAX_PENDING_PER_CLIENT);
        assert!(forwards.iter().all(|f| f.client == IP));
        assert_eq!(h.counters().limited, 3);
        // An answer frees a place of that client's.
        h.gw.dns_forwarded(
            Instant::from_millis(h.now),
            forwards[0].token,
            Err(super::super::ForwardError::Timeout),
        );
        h.poll();
        assert!(flood(&mut h, hog, 20000, 1).is_empty());
        assert_eq!(h.gw.take_dns_forwards().len(), 1);
        // Three more clients fill the network's pending queries.
        let mut others = Vec::new();
        for n in 1..=3 {
            let c = other_client(&mut h, n);
            assert!(flood(&mut h, c, 30000, MAX_PENDING_PER_CLIENT as u16).is_empty());
            others.push(c);
        }
        assert_eq!(h.gw.take_dns_forwards().len(), 3 * MAX_PENDING_PER_CLIENT);
        assert_eq!(MAX_PENDING, 4 * MAX_PENDING_PER_CLIENT);
        // Full. A client holding two fewer than nobody is refused ...
        assert_eq!(flood(&mut h, others[0], 40000, 1), vec![40000]);
        // ... but a newcomer is not: the oldest query of a biggest holder
        // gets SERVFAIL (one of each client's first ports) and the
        // newcomer's is forwarded.
        let newcomer = other_client(&mut h, 9);
        let evicted = flood(&mut h, newcomer, 50000, 1);
        assert_eq!(evicted.len(), 1);
        assert!([10001, 30000].contains(&evicted[0]), "{evicted:?}");
        let forwards = h.gw.take_dns_forwards();
        assert_eq!(forwards.len(), 1);
        assert_eq!(forwards[0].client, newcomer.1);
        assert_eq!(h.counters().limited, 3 + 1 + 1);
        assert_eq!(h.counters().servfail, 1 + 3 + 1 + 1);
    }

    #[test]
    fn without_a_forwarder_non_local_names_are_servfail() {
        let mut h = Harness::new(false);
        h.gw.receive(&udp_frame(40004, &query("example.com", 3)));
        let out = h.poll();
        let (_, payload) = udp_payload(&out[0]).expect("udp");
        assert_eq!(
            Message::from_vec(&payload).expect("a").response_code(),
            ResponseCode::ServFail
        );
        assert!(h.gw.take_dns_forwards().is_empty());
    }

    #[test]
    fn garbage_udp_is_answered_or_dropped() {
        let mut h = Harness::new(true);
        h.gw.receive(&udp_frame(40005, &[1, 2, 3]));
        assert!(h.poll().is_empty());
        let mut q = query("es", 4);
        q[5] = 0; // QDCOUNT 0
        h.gw.receive(&udp_frame(40006, &q));
        let out = h.poll();
        let (_, payload) = udp_payload(&out[0]).expect("udp");
        assert_eq!(
            Message::from_vec(&payload).expect("a").response_code(),
            ResponseCode::FormErr
        );
        let c = h.counters();
        assert_eq!((c.queries, c.malformed, c.dropped), (2, 2, 1));
    }

    /// A TCP client of the harness: handshake, then segments.
    struct Client {
        port: u16,
        seq: TcpSeqNumber,
        ack: TcpSeqNumber,
    }

    impl Client {
        fn connect(h: &mut Harness, port: u16) -> Option<Client> {
            let seq = TcpSeqNumber(1000);
            let syn = TcpRepr {
                src_port: port,
                dst_port: DNS_PORT,
                control: TcpControl::Syn,
                seq_number: seq,
                ack_number: None,
                window_len: 65535,
                window_scale: None,
                max_seg_size: Some(1460),
                sack_permitted: false,
                sack_ranges: [None, None, None],
                timestamp: None,
                payload: &[],
            };
            h.gw.receive(&tcp_frame(&syn));
            let out = h.poll();
            let synack = out.iter().find_map(|f| tcp_seg(f))?;
            if synack.control != TcpControl::Syn {
                return None;
            }
            let client = Client {
                port,
                seq: seq + 1,
                ack: synack.seq + 1,
            };
            client.send(h, TcpControl::None, &[]);
            h.poll();
            Some(client)
        }

        fn send(&self, h: &mut Harness, control: TcpControl, payload: &[u8]) {
            let repr = TcpRepr {
                src_port: self.port,
                dst_port: DNS_PORT,
                control,
                seq_number: self.seq,
                ack_number: Some(self.ack),
                window_len: 65535,
                window_scale: None,
                max_seg_size: None,
                sack_permitted: false,
                sack_ranges: [None, None, None],
                timestamp: None,
                payload,
            };
            h.gw.receive(&tcp_frame(&repr));
        }

        fn send_data(&mut self, h: &mut Harness, payload: &[u8]) {
            self.send(h, TcpControl::Psh, payload);
            self.seq += payload.len();
        }

        /// Collect data segments (acking them) until `want` bytes arrived.
        fn recv(&mut self, h: &mut Harness, want: usize) -> Vec<u8> {
            let mut got = Vec::new();
            for _ in 0..20 {
                for seg in h.poll().iter().filter_map(|f| tcp_seg(f)) {
                    if !seg.payload.is_empty() && seg.seq == self.ack {
                        self.ack += seg.payload.len();
                        got.extend_from_slice(&seg.payload);
                    }
                }
                self.send(h, TcpControl::None, &[]);
                if got.len() >= want {
                    break;
                }
            }
            got
        }
    }

    fn framed(message: &[u8]) -> Vec<u8> {
        let mut v = (message.len() as u16).to_be_bytes().to_vec();
        v.extend_from_slice(message);
        v
    }

    #[test]
    fn answers_over_tcp_pipelined_and_split() {
        let mut h = Harness::new(true);
        let mut c = Client::connect(&mut h, 50000).expect("connected");
        // Two queries in one segment.
        let mut both = framed(&query("es", 1));
        both.extend_from_slice(&framed(&query("search", 2)));
        c.send_data(&mut h, &both);
        let got = c.recv(&mut h, 4);
        let len = usize::from(u16::from_be_bytes([got[0], got[1]]));
        assert_eq!(a_answers(&got[2..2 + len]), vec![IP]);
        let rest = if got.len() > 2 + len {
            got[2 + len..].to_vec()
        } else {
            c.recv(&mut h, 4)
        };
        let len2 = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let second = Message::from_vec(&rest[2..2 + len2]).expect("second");
        assert_eq!(second.id(), 2);
        // A query split across segments, byte by byte for the prefix.
        let q = framed(&query("es", 3));
        c.send_data(&mut h, &q[..1]);
        h.poll();
        c.send_data(&mut h, &q[1..5]);
        h.poll();
        c.send_data(&mut h, &q[5..]);
        let got = c.recv(&mut h, 4);
        assert_eq!(Message::from_vec(&got[2..]).expect("third").id(), 3);
        assert_eq!(h.counters().tcp_connections, 1);
    }

    #[test]
    fn tcp_length_zero_or_oversize_aborts() {
        for prefix in [[0u8, 0], [0xff, 0xff]] {
            let mut h = Harness::new(true);
            let mut c = Client::connect(&mut h, 50001).expect("connected");
            c.send_data(&mut h, &prefix);
            let out = h.poll();
            assert!(out
                .iter()
                .filter_map(|f| tcp_seg(f))
                .any(|s| s.control == TcpControl::Rst));
            assert_eq!(h.counters().malformed, 1);
        }
    }

    #[test]
    fn idle_tcp_is_aborted_and_the_socket_reused() {
        let mut h = Harness::new(true);
        let mut c = Client::connect(&mut h, 50002).expect("connected");
        c.send_data(&mut h, &[0]); // half a length prefix, then silence
        h.poll();
        let delay =
            h.gw.poll_delay(Instant::from_millis(h.now))
                .expect("idle timer");
        assert!(delay <= TCP_IDLE, "{delay}");
        let out = h.advance(5100);
        assert!(out
            .iter()
            .filter_map(|f| tcp_seg(f))
            .any(|s| s.control == TcpControl::Rst));
        assert_eq!(h.counters().tcp_idle_closed, 1);
        // Every socket listens again: eight fresh connections succeed.
        h.poll();
        for i in 0..TCP_SOCKETS as u16 {
            assert!(
                Client::connect(&mut h, 51000 + i).is_some(),
                "connection {i}"
            );
        }
        // The ninth is refused while all eight are busy.
        assert!(Client::connect(&mut h, 52000).is_none());
    }

    #[test]
    fn reset_after_length_prefix_frees_the_socket() {
        let mut h = Harness::new(true);
        let mut c = Client::connect(&mut h, 50003).expect("connected");
        c.send_data(&mut h, &[0, 40]);
        h.poll();
        c.send(&mut h, TcpControl::Rst, &[]);
        h.poll();
        h.poll();
        // No timer left behind, no spinning.
        assert_eq!(h.gw.poll_delay(Instant::from_millis(h.now)), None);
        for i in 0..TCP_SOCKETS as u16 {
            assert!(
                Client::connect(&mut h, 53000 + i).is_some(),
                "connection {i}"
            );
        }
    }

    #[test]
    fn tcp_forward_answer_for_a_closed_connection_is_dropped() {
        let mut h = Harness::new(true);
        let mut c = Client::connect(&mut h, 50004).expect("connected");
        c.send_data(&mut h, &framed(&query("example.com", 5)));
        h.poll();
        let forwards = h.gw.take_dns_forwards();
        assert_eq!(forwards.len(), 1);
        assert!(forwards[0].tcp);
        c.send(&mut h, TcpControl::Rst, &[]);
        h.poll();
        h.gw.dns_forwarded(
            Instant::from_millis(h.now),
            forwards[0].token,
            Err(super::super::ForwardError::Timeout),
        );
        assert!(h.poll().is_empty());
        assert_eq!(h.counters().dropped, 1);
    }
}
