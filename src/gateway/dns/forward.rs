//! Forwarding to the upstream resolvers: a plain relay of the query bytes.
//!
//! # Theory of operation
//!
//! One [`Forwarder`] serves every network. It owns a thread with a
//! current-thread tokio runtime of its own, so it depends on nothing the
//! daemon runs and never runs on a switch thread. Switch threads hand it
//! queries with [`Forwarder::submit`], a non-blocking `try_send` into a
//! bounded hand-off queue ([`QUEUE`]); a full queue hands the job back and
//! the switch answers SERVFAIL at once. Each job names its client (its
//! network and source address, [`ClientKey`]).
//!
//! The thread takes every job off the hand-off queue at once and into a
//! [`FairQueue`] (see [`fair`](super::fair)): one queue per client, so no
//! client's queries wait behind another's. A query is sent upstream when
//! its client has fewer than [`IN_FLIGHT_PER_CLIENT`] in flight, its
//! network fewer than [`IN_FLIGHT_PER_NETWORK`] and the daemon fewer than
//! [`IN_FLIGHT`]; among the clients that may send, the one with the fewest
//! in flight goes first, round robin among equals. So a sandbox asking for
//! names its upstream never answers holds at most [`IN_FLIGHT_PER_CLIENT`]
//! of the daemon's slots, and a neighbour's query is sent as soon as it
//! arrives. A client's queue holds at most [`QUEUE_PER_CLIENT`] and all
//! queues [`QUEUE`] (a full whole gives up the oldest query of the
//! longest queue); a query that waits [`MAX_WAIT`] for its turn is given
//! up. A query refused or given up fails with [`ForwardError::Overloaded`]
//! (the switch answers SERVFAIL and counts it as `limited`).
//!
//! The overall timeout ([`FORWARD_TIMEOUT`]) starts when a query is sent
//! upstream, not when it was submitted: waiting for a turn never eats into
//! the upstream's budget. Each job's `done` callback is called exactly
//! once with the upstream's answer or an error, within
//! [`Forwarder::bound`] of its submission ([`MAX_WAIT`] plus the overall
//! timeout), and is how the answer travels back (the switch's callback
//! puts it in a bounded queue and writes the switch's eventfd).
//!
//! A relay, not a resolver: the client's query bytes go to the upstream
//! unchanged but for the id, which is replaced by a random one (the client
//! chose its id for us, not for the upstream; a fresh id and a fresh socket,
//! hence a fresh kernel-chosen source port, per attempt defeat off-path
//! spoofing). An answer is accepted only from the upstream it was sent to
//! (a connected socket), with that id, the QR bit and the same question;
//! then the client's id is put back. Everything the client asked for (EDNS
//! size, DO bit, RD) reaches the upstream as asked. We chose this over
//! hickory-resolver, which would re-create queries from a name and a type,
//! drop what it does not model, cache answers with their own TTL logic and
//! bring its own runtime setup; a relay with a timeout is all forwarding needs.
//!
//! Upstreams are tried in order, each attempt bounded by the attempt timeout
//! (1 s), twice round, all bounded by the overall timeout (2.5 s from the
//! moment the query is sent). An
//! upstream that refuses (ICMP port unreachable) fails its attempt at once,
//! so a dead upstream costs no waiting, and the bounded number of attempts
//! means no loop. SERVFAIL and REFUSED from one upstream make us try the
//! next; if none does better, that answer is passed on. NXDOMAIN and every
//! other answer pass through. When a UDP answer has TC set and the client
//! asked over TCP, the query is repeated over TCP to the same upstream.
//!
//! A sandbox run with `--dns` has upstreams of its own: the name table
//! maps its `(network, address)` to them, the switch puts them in the
//! job, and they are tried instead of the daemon's, in the same way and
//! under the same fair queue.
//!
//! The forwarder never sends to a warren gateway address (every network's
//! gateway, from the name table of the asking switch), so a host whose
//! resolver list names a gateway cannot make the daemon ask itself.
//!
//! With no upstream given, the host's `/etc/resolv.conf` is read once at
//! start (`nameserver` lines, port 53).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use hickory_proto::op::{Header, MessageType, Query, ResponseCode};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tracing::{debug, info, trace, warn};

use super::fair::{ClientKey, FairQueue, Limits, Pushed, MAX_PENDING_PER_CLIENT};
use super::table::NameTable;

/// Overall bound on one forwarded query, from the moment it is sent
/// upstream to its answer.
pub const FORWARD_TIMEOUT: Duration = Duration::from_millis(2500);

/// Bound on one attempt at one upstream.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1000);

/// Longest a query waits for its turn to be sent before it is given up.
pub const MAX_WAIT: Duration = Duration::from_millis(1000);

/// Most queries waiting for the forwarder, in all (and the size of the
/// hand-off queue from the switches).
pub const QUEUE: usize = 1024;

/// Most queries of one client waiting for their turn: as many as its
/// network lets it have pending.
pub const QUEUE_PER_CLIENT: usize = MAX_PENDING_PER_CLIENT;

/// Most queries being relayed at once, in all.
pub const IN_FLIGHT: usize = 256;

/// Most queries of one network being relayed at once: a quarter of the
/// daemon's.
pub const IN_FLIGHT_PER_NETWORK: usize = 64;

/// Most queries of one client (source address on its network) being
/// relayed at once: a sixteenth of the daemon's.
pub const IN_FLIGHT_PER_CLIENT: usize = 16;

/// Where the host lists its resolvers.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// The upstream's answer (with the client's id), or why there is none.
pub type ForwardResult = Result<Vec<u8>, ForwardError>;

/// Why a forwarded query has no answer; the client gets SERVFAIL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardError {
    /// No upstream is configured (or all are warren gateways).
    #[error("no upstream resolver; pass --dns-upstream or list one in /etc/resolv.conf")]
    NoUpstream,
    /// No upstream answered in time.
    #[error("no upstream answered within the timeout")]
    Timeout,
    /// An upstream could not be reached (refused, unreachable, ...).
    #[error("upstream unreachable: {0}")]
    Unreachable(String),
    /// Refused or given up by a bound: the client's, its network's or the
    /// daemon's share of the forwarder is full, or the query waited too
    /// long for its turn.
    #[error("too many queries waiting for the upstream resolvers (from this client, its network, or in all)")]
    Overloaded,
    /// The query could not be relayed (cannot happen for a query that
    /// `answer` accepted).
    #[error("query cannot be relayed")]
    BadQuery,
}

/// The timeouts and bounds of a [`Forwarder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardConfig {
    /// Overall bound on one query once sent upstream.
    pub timeout: Duration,
    /// Bound on one attempt at one upstream.
    pub attempt: Duration,
    /// The fair queue's bounds (and the longest wait for a turn).
    pub limits: Limits,
}

impl Default for ForwardConfig {
    fn default() -> ForwardConfig {
        ForwardConfig {
            timeout: FORWARD_TIMEOUT,
            attempt: ATTEMPT_TIMEOUT,
            limits: Limits {
                in_flight: IN_FLIGHT,
                in_flight_per_network: IN_FLIGHT_PER_NETWORK,
                in_flight_per_client: IN_FLIGHT_PER_CLIENT,
                queued: QUEUE,
                queued_per_client: QUEUE_PER_CLIENT,
                max_wait: MAX_WAIT,
            },
        }
    }
}

/// Called once with the result of a forwarded query.
pub type Done = Box<dyn FnOnce(ForwardResult) + Send>;

/// One query to relay.
pub struct ForwardJob {
    /// The query as the client sent it.
    pub query: Vec<u8>,
    /// The client asked over TCP: a truncated UDP answer is retried over TCP.
    pub tcp: bool,
    /// Who asked: the fair queue's key.
    pub client: ClientKey,
    /// The asking switch's name table: its gateways are never upstreams.
    pub avoid: Arc<NameTable>,
    /// The client's own upstreams (`run --dns`), instead of the
    /// forwarder's; `None`: the forwarder's.
    pub upstreams: Option<Arc<[SocketAddr]>>,
    /// Where the answer goes; called exactly once, from the forwarder's
    /// thread (unless the job is handed back by [`Forwarder::submit`]).
    pub done: Done,
}

/// The upstream forwarder shared by every network. See the module
/// documentation.
pub struct Forwarder {
    jobs: mpsc::Sender<Job>,
    upstreams: Arc<[SocketAddr]>,
    config: ForwardConfig,
}

/// A job with the time it was submitted (its wait counts from then).
struct Job {
    job: ForwardJob,
    submitted: Instant,
}

impl Forwarder {
    /// Start the forwarder with the default timeouts. `upstreams` empty
    /// means the host's `/etc/resolv.conf` nameservers (port 53), read now.
    pub fn spawn(upstreams: Vec<SocketAddr>) -> io::Result<Arc<Forwarder>> {
        Forwarder::spawn_with(upstreams, ForwardConfig::default())
    }

    /// Start the forwarder with the given timeouts.
    pub fn spawn_with(
        upstreams: Vec<SocketAddr>,
        config: ForwardConfig,
    ) -> io::Result<Arc<Forwarder>> {
        let upstreams = if upstreams.is_empty() {
            match std::fs::read_to_string(RESOLV_CONF) {
                Ok(text) => parse_resolv_conf(&text),
                Err(e) => {
                    warn!(error = %e, "dns: cannot read {RESOLV_CONF}; names outside warren will not resolve");
                    Vec::new()
                }
            }
        } else {
            upstreams
        };
        let upstreams: Arc<[SocketAddr]> = upstreams
            .into_iter()
            .filter(|u| !u.ip().is_unspecified() && u.port() != 0)
            .collect();
        if upstreams.is_empty() {
            warn!("dns: no upstream resolver; names outside warren get SERVFAIL");
        } else {
            info!(upstreams = ?upstreams, "dns: forwarding to upstream resolvers");
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let (jobs, receiver) = mpsc::channel(QUEUE);
        let targets = Arc::clone(&upstreams);
        thread::Builder::new()
            .name("warren-dns-fwd".into())
            .spawn(move || runtime.block_on(serve(receiver, targets, config)))?;
        Ok(Arc::new(Forwarder {
            jobs,
            upstreams,
            config,
        }))
    }

    /// Queue a query without blocking; hands the job back when the queue
    /// is full or the forwarder has stopped.
    #[allow(clippy::result_large_err)]
    pub fn submit(&self, job: ForwardJob) -> Result<(), ForwardJob> {
        let job = Job {
            job,
            submitted: Instant::now(),
        };
        self.jobs.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(j) | mpsc::error::TrySendError::Closed(j) => j.job,
        })
    }

    /// The upstream resolvers, in the order they are tried.
    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }

    /// The overall timeout of one query once sent upstream.
    pub fn timeout(&self) -> Duration {
        self.config.timeout
    }

    /// The longest from [`Forwarder::submit`] to the job's `done`: the
    /// longest wait for a turn plus the overall timeout.
    pub fn bound(&self) -> Duration {
        self.config.limits.max_wait + self.config.timeout
    }
}

/// The `nameserver` addresses of a resolv.conf, port 53. IPv6 addresses
/// with a zone (`fe80::1%eth0`) are skipped.
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            let ip: IpAddr = words.next()?.parse().ok()?;
            Some(SocketAddr::new(ip, 53))
        })
        .collect()
}

/// The forwarder thread: take jobs into the fair queue, send each on its
/// own task when its turn comes, give up those that waited too long. Ends
/// when every [`Forwarder`] is dropped.
async fn serve(mut jobs: mpsc::Receiver<Job>, upstreams: Arc<[SocketAddr]>, config: ForwardConfig) {
    let mut queue: FairQueue<ForwardJob> = FairQueue::new(config.limits);
    // Every task in flight sends its client back exactly once, so this
    // never fills.
    let (finished_tx, mut finished) = mpsc::channel::<ClientKey>(config.limits.in_flight.max(1));
    loop {
        let now = Instant::now();
        for job in queue.expire(now) {
            trace!(client = ?job.client, "dns: query waited too long for its turn");
            (job.done)(Err(ForwardError::Overloaded));
        }
        while let Some((client, job)) = queue.pop() {
            let slot = Slot {
                client: Some(client),
                finished: finished_tx.clone(),
            };
            let upstreams = job
                .upstreams
                .clone()
                .unwrap_or_else(|| Arc::clone(&upstreams));
            tokio::spawn(async move {
                let ForwardJob {
                    query,
                    tcp,
                    avoid,
                    done,
                    ..
                } = job;
                // The timeout starts now, when the query is sent.
                let deadline = tokio::time::Instant::now() + config.timeout;
                let result = relay(&query, tcp, &avoid, &upstreams, deadline, config.attempt).await;
                drop(slot);
                if let Err(e) = &result {
                    debug!(error = %e, "dns: forwarding failed");
                }
                done(result);
            });
        }
        let expiry = queue.next_expiry();
        let wake =
            tokio::time::Instant::from_std(expiry.unwrap_or(now + Duration::from_secs(3600)));
        tokio::select! {
            job = jobs.recv() => {
                let Some(job) = job else {
                    break;
                };
                admit(&mut queue, job);
                while let Ok(job) = jobs.try_recv() {
                    admit(&mut queue, job);
                }
            }
            Some(client) = finished.recv() => {
                queue.finish(&client);
                while let Ok(client) = finished.try_recv() {
                    queue.finish(&client);
                }
            }
            () = tokio::time::sleep_until(wake), if expiry.is_some() => {}
        }
    }
    debug!("dns: forwarder stopped");
}

/// Put `job` in the fair queue; the job refused (it, or the one it
/// evicted) fails at once.
fn admit(queue: &mut FairQueue<ForwardJob>, job: Job) {
    let Job { job, submitted } = job;
    let client = job.client.clone();
    match queue.push(submitted, client, job) {
        Pushed::Queued => {}
        Pushed::Evicted(refused) | Pushed::Refused(refused) => {
            trace!(client = ?refused.client, "dns: query over its share refused");
            (refused.done)(Err(ForwardError::Overloaded));
        }
    }
}

/// A query's place in flight: handed back to the fair queue when the task
/// ends, however it ends.
struct Slot {
    client: Option<ClientKey>,
    finished: mpsc::Sender<ClientKey>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = self.finished.try_send(client);
        }
    }
}

/// Relay one query. See the module documentation for the order of attempts.
async fn relay(
    query: &[u8],
    tcp: bool,
    avoid: &NameTable,
    upstreams: &[SocketAddr],
    deadline: tokio::time::Instant,
    attempt: Duration,
) -> ForwardResult {
    let targets: Vec<SocketAddr> = upstreams
        .iter()
        .copied()
        .filter(|u| match u.ip() {
            IpAddr::V4(ip) => !avoid.is_gateway(ip),
            IpAddr::V6(_) => true,
        })
        .collect();
    if targets.is_empty() {
        return Err(ForwardError::NoUpstream);
    }
    let mut decoder = BinDecoder::new(query);
    let header = Header::read(&mut decoder).map_err(|_| ForwardError::BadQuery)?;
    let question = Query::read(&mut decoder).map_err(|_| ForwardError::BadQuery)?;
    let client_id = header.id();

    let mut fallback: Option<Vec<u8>> = None;
    let mut error = ForwardError::Timeout;
    'rounds: for _round in 0..2 {
        for &upstream in &targets {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                break 'rounds;
            }
            let id = random_id();
            let bytes = with_id(query, id)?;
            let budget = (deadline - now).min(attempt);
            let answer =
                match tokio::time::timeout(budget, udp_exchange(upstream, &bytes, id, &question))
                    .await
                {
                    Ok(Ok(answer)) => answer,
                    Ok(Err(e)) => {
                        trace!(%upstream, error = %e, "dns: upstream attempt failed");
                        error = ForwardError::Unreachable(e.to_string());
                        continue;
                    }
                    Err(_) => {
                        trace!(%upstream, "dns: upstream attempt timed out");
                        error = ForwardError::Timeout;
                        continue;
                    }
                };
            let Some(head) = read_header(&answer) else {
                continue;
            };
            let answer = if tcp && head.truncated() {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                match tokio::time::timeout(left, tcp_exchange(upstream, &bytes, id, &question))
                    .await
                {
                    Ok(Ok(full)) => full,
                    _ => answer,
                }
            } else {
                answer
            };
            let rcode = read_header(&answer).map(|h| h.response_code());
            if matches!(rcode, Some(ResponseCode::ServFail | ResponseCode::Refused)) {
                fallback = Some(answer);
                continue;
            }
            return with_id(&answer, client_id);
        }
    }
    match fallback {
        Some(answer) => with_id(&answer, client_id),
        None => Err(error),
    }
}

/// One UDP exchange with `upstream` on a fresh socket; waits for an answer
/// that [`matches`] (others are ignored). Bounded by the caller's timeout.
async fn udp_exchange(
    upstream: SocketAddr,
    query: &[u8],
    id: u16,
    question: &Query,
) -> io::Result<Vec<u8>> {
    let local: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(upstream).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; usize::from(u16::MAX)];
    loop {
        let len = socket.recv(&mut buf).await?;
        let answer = &buf[..len];
        if matches(answer, id, question) {
            return Ok(answer.to_vec());
        }
        trace!(%upstream, len, "dns: ignored an answer that does not match");
    }
}

/// One TCP exchange with `upstream`: a length-prefixed query, one
/// length-prefixed answer (at most 65535 bytes, as the prefix allows).
async fn tcp_exchange(
    upstream: SocketAddr,
    query: &[u8],
    id: u16,
    question: &Query,
) -> io::Result<Vec<u8>> {
    let len = u16::try_from(query.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "query too long"))?;
    let mut stream = TcpStream::connect(upstream).await?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await?;
    let mut prefix = [0u8; 2];
    stream.read_exact(&mut prefix).await?;
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
    stream.read_exact(&mut answer).await?;
    if matches(&answer, id, question) {
        Ok(answer)
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "answer does not match the query",
        ))
    }
}

/// Whether `answer` answers our query: our id, QR set, and the same
/// question (an error answer may carry no question).
fn matches(answer: &[u8], id: u16, question: &Query) -> bool {
    let mut decoder = BinDecoder::new(answer);
    let Ok(header) = Header::read(&mut decoder) else {
        return false;
    };
    if header.id() != id || header.message_type() != MessageType::Response {
        return false;
    }
    if header.query_count() == 0 {
        return header.response_code() != ResponseCode::NoError;
    }
    match Query::read(&mut decoder) {
        Ok(q) => {
            q.name() == question.name()
                && q.query_type() == question.query_type()
                && q.query_class() == question.query_class()
        }
        Err(_) => false,
    }
}

fn read_header(message: &[u8]) -> Option<Header> {
    Header::read(&mut BinDecoder::new(message)).ok()
}

/// `message` with its id replaced (the header re-encoded by hickory, the
/// rest copied).
fn with_id(message: &[u8], id: u16) -> ForwardResult {
    let mut header = read_header(message).ok_or(ForwardError::BadQuery)?;
    header.set_id(id);
    let mut out = Vec::with_capacity(message.len());
    header
        .emit(&mut BinEncoder::new(&mut out))
        .map_err(|_| ForwardError::BadQuery)?;
    out.extend_from_slice(message.get(Header::len()..).unwrap_or_default());
    Ok(out)
}

/// A random query id (for the upstream; never the client's).
fn random_id() -> u16 {
    let mut bytes = [0u8; 2];
    if getrandom::getrandom(&mut bytes).is_err() {
        // Extremely unlikely; fall back to the clock's low bits.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        return nanos as u16;
    }
    u16::from_be_bytes(bytes)
}

#[cfg(test)]
mod tests {
    //! Upstreams here are tiny servers on 127.0.0.1 (loopback only).

    use super::super::table::NetworkInfo;
    use super::*;
    use hickory_proto::op::Message;
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{Name, RData, Record, RecordType};
    use std::net::{TcpListener, UdpSocket as StdUdp};
    use std::str::FromStr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc as std_mpsc;

    fn query(name: &str, id: u16) -> Vec<u8> {
        let mut msg = Message::new();
        msg.set_id(id).set_recursion_desired(true);
        msg.add_query(Query::query(
            Name::from_str(name).expect("name"),
            RecordType::A,
        ));
        msg.to_vec().expect("encode")
    }

    /// An answer to `q`: NXDOMAIN for names starting with `nx`, otherwise
    /// `count` A records, TC set over UDP when `tc`.
    fn answer_for(q: &[u8], count: u8, tc: bool) -> Vec<u8> {
        let q = Message::from_vec(q).expect("query");
        let mut a = Message::new();
        a.set_id(q.id()).set_message_type(MessageType::Response);
        a.add_queries(q.queries().iter().cloned());
        let name = q.queries()[0].name().clone();
        if name.to_ascii().starts_with("nx") {
            a.set_response_code(ResponseCode::NXDomain);
        } else if tc {
            a.set_truncated(true);
        } else {
            for i in 0..count {
                a.add_answer(Record::from_rdata(
                    name.clone(),
                    60,
                    RData::A(A(Ipv4Addr::new(192, 0, 2, i))),
                ));
            }
        }
        a.to_vec().expect("encode")
    }

    /// A UDP upstream on loopback that answers (or stays silent), counting
    /// queries; names starting with `slow` are never answered. It stops
    /// when the returned sender is dropped.
    fn udp_upstream(
        silent: bool,
        tc: bool,
    ) -> (SocketAddr, Arc<AtomicUsize>, std_mpsc::Sender<()>) {
        let socket = StdUdp::bind("127.0.0.1:0").expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let addr = socket.local_addr().expect("addr");
        let seen = Arc::new(AtomicUsize::new(0));
        let (stop, stopped) = std_mpsc::channel::<()>();
        let count = Arc::clone(&seen);
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while matches!(stopped.try_recv(), Err(std_mpsc::TryRecvError::Empty)) {
                let Ok((len, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let slow = Message::from_vec(&buf[..len]).is_ok_and(|q| {
                    q.queries()
                        .first()
                        .is_some_and(|q| q.name().to_ascii().starts_with("slow"))
                });
                if !silent && !slow {
                    let _ = socket.send_to(&answer_for(&buf[..len], 2, tc), from);
                }
            }
        });
        (addr, seen, stop)
    }

    fn client(network: &str, last: u8) -> ClientKey {
        ClientKey::new(Arc::from(network), Ipv4Addr::new(10, 0, 0, last))
    }

    /// Submit `query` for `client`; the result arrives on the receiver.
    fn submit(
        forwarder: &Forwarder,
        client: ClientKey,
        query: Vec<u8>,
    ) -> std_mpsc::Receiver<ForwardResult> {
        let (tx, rx) = std_mpsc::channel();
        let job = ForwardJob {
            query,
            tcp: false,
            client,
            avoid: no_table(),
            upstreams: None,
            done: Box::new(move |r| {
                let _ = tx.send(r);
            }),
        };
        assert!(forwarder.submit(job).is_ok());
        rx
    }

    fn run(
        forwarder: &Forwarder,
        query: Vec<u8>,
        tcp: bool,
        avoid: Arc<NameTable>,
    ) -> ForwardResult {
        let (tx, rx) = std_mpsc::channel();
        let job = ForwardJob {
            query,
            tcp,
            client: client("test", 2),
            avoid,
            upstreams: None,
            done: Box::new(move |r| {
                let _ = tx.send(r);
            }),
        };
        assert!(forwarder.submit(job).is_ok());
        rx.recv_timeout(Duration::from_secs(10))
            .expect("done called")
    }

    fn no_table() -> Arc<NameTable> {
        Arc::new(NameTable::default())
    }

    fn fast() -> ForwardConfig {
        ForwardConfig {
            timeout: Duration::from_millis(600),
            attempt: Duration::from_millis(250),
            ..ForwardConfig::default()
        }
    }

    #[test]
    fn a_flooding_client_delays_no_other() {
        let (addr, _seen, _stop) = udp_upstream(false, false);
        let fwd = Forwarder::spawn_with(vec![addr], fast()).expect("spawn");
        let hog = client("a", 1);
        // 200 names that are never answered, at once: 16 are sent, 64 wait,
        // the rest are refused at once.
        let floods: Vec<_> = (0..200)
            .map(|i| submit(&fwd, hog.clone(), query(&format!("slow{i}.test"), i)))
            .collect();
        // A neighbour on the same network and a client of another network
        // are answered at once, one query after another.
        for (i, who) in [client("a", 2), client("b", 1)].into_iter().enumerate() {
            for j in 0..20u16 {
                let start = Instant::now();
                let rx = submit(&fwd, who.clone(), query("example.test", j));
                let answer = rx
                    .recv_timeout(Duration::from_secs(5))
                    .expect("done")
                    .expect("answered");
                let took = start.elapsed();
                assert_eq!(Message::from_vec(&answer).expect("parse").id(), j);
                assert!(took < Duration::from_millis(100), "client {i}: {took:?}");
            }
        }
        let results: Vec<ForwardResult> = floods
            .iter()
            .map(|rx| rx.recv_timeout(Duration::from_secs(5)).expect("done"))
            .collect();
        let overloaded = results
            .iter()
            .filter(|r| **r == Err(ForwardError::Overloaded))
            .count();
        let timeouts = results
            .iter()
            .filter(|r| **r == Err(ForwardError::Timeout))
            .count();
        // 16 in flight, and each of the 64 waiting is either sent when a
        // slot frees (600 ms later) or given up when it has waited 1 s.
        assert_eq!(overloaded + timeouts, 200, "{results:?}");
        assert!((16..=80).contains(&timeouts), "{timeouts} timed out");
        assert!(overloaded >= 120, "{overloaded} refused");
    }

    #[test]
    fn the_timeout_starts_when_the_query_is_sent() {
        let (addr, _seen, _stop) = udp_upstream(false, false);
        let mut config = fast();
        config.limits.in_flight_per_client = 1;
        config.limits.max_wait = Duration::from_secs(2);
        let fwd = Forwarder::spawn_with(vec![addr], config).expect("spawn");
        assert_eq!(fwd.bound(), Duration::from_millis(2600));
        let start = Instant::now();
        let first = submit(&fwd, client("a", 1), query("slow1.test", 1));
        let second = submit(&fwd, client("a", 1), query("slow2.test", 2));
        assert_eq!(
            first.recv_timeout(Duration::from_secs(5)),
            Ok(Err(ForwardError::Timeout))
        );
        let first_took = start.elapsed();
        // The second waited for the first's slot, then had its own 600 ms.
        assert_eq!(
            second.recv_timeout(Duration::from_secs(5)),
            Ok(Err(ForwardError::Timeout))
        );
        let second_took = start.elapsed();
        assert!(first_took < Duration::from_millis(1000), "{first_took:?}");
        assert!(
            second_took >= first_took + Duration::from_millis(450),
            "{first_took:?} then {second_took:?}"
        );
    }

    #[test]
    fn a_query_that_waits_too_long_for_its_turn_is_given_up() {
        let (addr, _seen, _stop) = udp_upstream(false, false);
        let mut config = fast();
        config.limits.in_flight_per_client = 1;
        config.limits.max_wait = Duration::from_millis(200);
        let fwd = Forwarder::spawn_with(vec![addr], config).expect("spawn");
        let start = Instant::now();
        let first = submit(&fwd, client("a", 1), query("slow1.test", 1));
        let second = submit(&fwd, client("a", 1), query("slow2.test", 2));
        assert_eq!(
            second.recv_timeout(Duration::from_secs(5)),
            Ok(Err(ForwardError::Overloaded))
        );
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(200) && took < Duration::from_millis(500),
            "{took:?}"
        );
        assert_eq!(
            first.recv_timeout(Duration::from_secs(5)),
            Ok(Err(ForwardError::Timeout))
        );
    }

    #[test]
    fn relays_and_restores_the_clients_id() {
        let (addr, seen, _stop) = udp_upstream(false, false);
        let fwd = Forwarder::spawn_with(vec![addr], fast()).expect("spawn");
        let answer = run(&fwd, query("example.test", 0x1111), false, no_table()).expect("answer");
        let msg = Message::from_vec(&answer).expect("parse");
        assert_eq!(msg.id(), 0x1111);
        assert_eq!(msg.answers().len(), 2);
        assert_eq!(seen.load(Ordering::SeqCst), 1);

        let answer =
            run(&fwd, query("nx.example.test", 0x2222), false, no_table()).expect("answer");
        let msg = Message::from_vec(&answer).expect("parse");
        assert_eq!(
            (msg.id(), msg.response_code()),
            (0x2222, ResponseCode::NXDomain)
        );
    }

    #[test]
    fn silent_upstream_times_out_within_the_bound() {
        let (addr, seen, _stop) = udp_upstream(true, false);
        let fwd = Forwarder::spawn_with(vec![addr], fast()).expect("spawn");
        let start = Instant::now();
        let result = run(&fwd, query("example.test", 1), false, no_table());
        assert_eq!(result, Err(ForwardError::Timeout));
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(500) && took < Duration::from_millis(1500),
            "{took:?}"
        );
        assert!(seen.load(Ordering::SeqCst) >= 2, "retried");
    }

    #[test]
    fn dead_upstream_fails_fast() {
        // Bind and drop: nothing listens there, the kernel refuses.
        let addr = StdUdp::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr");
        let fwd = Forwarder::spawn_with(vec![addr], ForwardConfig::default()).expect("spawn");
        let start = Instant::now();
        let result = run(&fwd, query("example.test", 1), false, no_table());
        assert!(
            matches!(result, Err(ForwardError::Unreachable(_))),
            "{result:?}"
        );
        assert!(start.elapsed() < Duration::from_millis(500));
    }

    #[test]
    fn falls_over_to_the_next_upstream() {
        let dead = StdUdp::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr");
        let (addr, seen, _stop) = udp_upstream(false, false);
        let fwd = Forwarder::spawn_with(vec![dead, addr], fast()).expect("spawn");
        let answer = run(&fwd, query("example.test", 7), false, no_table()).expect("answer");
        assert_eq!(
            Message::from_vec(&answer).expect("parse").answers().len(),
            2
        );
        assert_eq!(seen.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn never_forwards_to_a_gateway() {
        let (addr, seen, _stop) = udp_upstream(false, false);
        let fwd = Forwarder::spawn_with(vec![addr], fast()).expect("spawn");
        let table = Arc::new(NameTable::build(
            &[NetworkInfo {
                name: "loop".into(),
                internal: false,
                names_enabled: true,
                gateway: Ipv4Addr::LOCALHOST,
            }],
            &[],
        ));
        let result = run(&fwd, query("example.test", 1), false, table);
        assert_eq!(result, Err(ForwardError::NoUpstream));
        assert_eq!(seen.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn truncated_answer_is_retried_over_tcp_for_tcp_clients() {
        let (addr, _seen, _stop) = udp_upstream(false, true);
        // A TCP upstream on the same port.
        let listener = TcpListener::bind(addr).expect("tcp bind");
        thread::spawn(move || {
            use std::io::{Read, Write};
            if let Ok((mut conn, _)) = listener.accept() {
                let mut prefix = [0u8; 2];
                conn.read_exact(&mut prefix).expect("prefix");
                let mut q = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
                conn.read_exact(&mut q).expect("query");
                let a = answer_for(&q, 200, false);
                let mut framed = (a.len() as u16).to_be_bytes().to_vec();
                framed.extend_from_slice(&a);
                conn.write_all(&framed).expect("write");
            }
        });
        let fwd = Forwarder::spawn_with(vec![addr], ForwardConfig::default()).expect("spawn");
        // A UDP client gets the truncated answer as is.
        let answer = run(&fwd, query("big.test", 3), false, no_table()).expect("answer");
        assert!(Message::from_vec(&answer).expect("parse").truncated());
        // A TCP client gets all 200 records.
        let answer = run(&fwd, query("big.test", 4), true, no_table()).expect("answer");
        let msg = Message::from_vec(&answer).expect("parse");
        assert_eq!((msg.id(), msg.answers().len()), (4, 200));
    }

    #[test]
    fn no_upstream_is_an_error_at_once() {
        let fwd =
            Forwarder::spawn_with(vec![SocketAddr::from((Ipv4Addr::UNSPECIFIED, 53))], fast())
                .expect("spawn");
        assert!(fwd.upstreams().is_empty());
        assert_eq!(
            run(&fwd, query("x.test", 1), false, no_table()),
            Err(ForwardError::NoUpstream)
        );
    }

    #[test]
    fn answers_that_do_not_match_are_ignored() {
        let q = query("example.test", 5);
        let question = Query::query(
            Name::from_str("example.test.").expect("name"),
            RecordType::A,
        );
        assert!(matches(&answer_for(&q, 1, false), 5, &question));
        assert!(!matches(&answer_for(&q, 1, false), 6, &question));
        assert!(!matches(&q, 5, &question), "a query is not an answer");
        let other = answer_for(&query("other.test", 5), 1, false);
        assert!(!matches(&other, 5, &question));
        assert!(!matches(&[1, 2, 3], 5, &question));
    }

    #[test]
    fn resolv_conf_nameservers() {
        let text = "# comment\nsearch example.org\nnameserver 10.0.0.53\nnameserver ::1\nnameserver fe80::1%eth0\noptions ndots:0\nnameserver bogus\n";
        assert_eq!(
            parse_resolv_conf(text),
            vec![
                SocketAddr::from((Ipv4Addr::new(10, 0, 0, 53), 53)),
                SocketAddr::from((Ipv6Addr::LOCALHOST, 53)),
            ]
        );
    }

    #[test]
    fn with_id_changes_only_the_id() {
        let q = query("example.test", 0xabcd);
        let out = with_id(&q, 0x0102).expect("id");
        assert_eq!(out.len(), q.len());
        assert_eq!(&out[..2], &[1, 2]);
        assert_eq!(&out[2..], &q[2..]);
    }
}
