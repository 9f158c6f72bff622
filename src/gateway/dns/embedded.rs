//! Docker's embedded DNS address: 127.0.0.11:53 inside every `run` sandbox.
//!
//! # Theory of operation
//!
//! Docker writes `nameserver 127.0.0.11` into a container's resolv.conf and
//! answers there, so configurations that name that address (nginx's
//! `resolver 127.0.0.11;`, common in Compose setups) work as they are.
//! warren's DNS lives at each network's gateway, in the switch thread; this
//! module puts the same answers at 127.0.0.11 without adding anything to the
//! frame path:
//!
//! - **Sockets made inside, served outside.** The setns helper, when it
//!   first attaches a `run` sandbox (or when a successor daemon takes it
//!   over), binds a UDP socket and a TCP listener at 127.0.0.11:53 in the
//!   sandbox's network namespace and hands them to the daemon over
//!   SCM_RIGHTS, like the TAP ([`crate::sandbox::helper`]). A socket stays
//!   in the namespace it was made in, wherever its fd goes: the daemon,
//!   in the host's namespace, receives and answers the sandbox's loopback
//!   queries on them.
//! - **One thread.** [`EmbeddedDns`] owns a thread with a current-thread
//!   tokio runtime, like the [`Forwarder`]; [`EmbeddedDns::serve`] starts
//!   a sandbox's two tasks there and returns a [`Listener`] whose drop
//!   ends them, closing the sockets (the sandbox's end, `rm`, or the daemon's
//!   exit). Nothing here runs on a switch thread or takes the daemon's
//!   state lock.
//! - **The same answers.** A query is answered by the pure core
//!   ([`answer`]) from the same [`NameTable`] the switches have, as if the
//!   sandbox had asked at its gateway from its address on its *view
//!   network*: the network carrying its default route (the first that is
//!   not internal), else its first. So its scope is its networks in
//!   connection order, `name.network` picks among them, its `--dns`
//!   upstreams apply, `host.warren.internal` answers where its default
//!   route's network has it, and names outside warren are forwarded unless
//!   every network of the sandbox is internal. The control plane sends a
//!   whole new [`View`] (the table and each sandbox's [`Asker`]) after every
//!   change, as it does to the switches; a sandbox with no network left
//!   gets SERVFAIL.
//! - **The same bounds.** Forwarded queries go to the one [`Forwarder`]
//!   under the view network's [`ClientKey`] of the sandbox, so its fair
//!   share there is the one its gateway queries use: 127.0.0.11 is not a
//!   second share. Here, at most [`MAX_PENDING_PER_CLIENT`] queries per
//!   sandbox wait for an answer (more get SERVFAIL, counted `limited`), at
//!   most [`TCP_SOCKETS`] TCP connections are served at once (more are
//!   closed at once), each on a task of its own, one message at a time; a
//!   connection whose next query is not complete within [`TCP_IDLE`], or
//!   that does not take its answer within it, is closed; a length prefix
//!   of 0 or over [`MAX_QUERY`] closes it at once and never sizes an
//!   allocation. A datagram over [`MAX_QUERY`] gets FORMERR.
//! - **Counted where the gateway's are.** Every query, answer and drop is
//!   counted in the view network's [`DnsCounters`] (`warren network stats`),
//!   and in `embedded` besides.
//!
//! A sandbox process can see the sockets (`ss -lnu` shows 127.0.0.11:53) and
//! cannot take them over: they are bound without `SO_REUSEPORT`. What it
//! cannot do either is bind port 53 on every address (`0.0.0.0:53`): the
//! port is taken on 127.0.0.11 (Docker redirects 127.0.0.11:53 to a random
//! port with iptables rules in the container instead; see docs/).

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{oneshot, Semaphore};
use tokio::task::{AbortHandle, JoinSet};
use tracing::{debug, trace, warn};

use super::answer::{
    answer, Action, Forward, Reply, Request, Rng, Transport, MAX_QUERY, MAX_UDP_ANSWER,
};
use super::fair::{ClientKey, MAX_PENDING_PER_CLIENT};
use super::forward::{ForwardError, ForwardJob, Forwarder};
use super::server::TCP_SOCKETS;
use super::table::NameTable;
use super::DnsCounters;

/// A TCP connection with no progress for this long is closed (as at the
/// gateway).
pub const TCP_IDLE: Duration = Duration::from_secs(5);

/// Grace beyond the forwarder's own bound before a forwarded query gets
/// SERVFAIL here (the forwarder normally answers first).
const FORWARD_GRACE: Duration = Duration::from_millis(500);

/// How long an `accept` error (out of fds) pauses the listener.
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);

/// Who a sandbox's loopback queries are asked as: its address on its view
/// network (see the module documentation), and that network's counters.
#[derive(Debug, Clone)]
pub struct Asker {
    /// The view network's name.
    pub network: Arc<str>,
    /// The sandbox's address on it.
    pub ip: Ipv4Addr,
    /// The view network's DNS counters.
    pub counters: Arc<DnsCounters>,
}

/// What the listeners answer from: one snapshot, replaced whole.
#[derive(Debug, Default)]
pub struct View {
    /// The name table the switches have.
    pub table: Arc<NameTable>,
    /// Each sandbox (by id) with a network: who it asks as.
    pub askers: HashMap<String, Asker>,
}

/// The embedded DNS of every sandbox: one thread, two tasks per sandbox.
/// See the module documentation.
pub struct EmbeddedDns {
    runtime: tokio::runtime::Handle,
    forwarder: Arc<Forwarder>,
    view: Arc<Mutex<Arc<View>>>,
    /// Counters of queries from sandboxes with no network (nobody's).
    orphan: Arc<DnsCounters>,
    /// Ends the thread when the daemon drops this.
    _stop: oneshot::Sender<()>,
}

/// A sandbox's listeners; dropping it ends their tasks and closes the
/// sockets.
#[derive(Debug)]
pub struct Listener {
    tasks: Vec<AbortHandle>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// What a sandbox's tasks share.
struct Ctx {
    sandbox: String,
    forwarder: Arc<Forwarder>,
    view: Arc<Mutex<Arc<View>>>,
    orphan: Arc<DnsCounters>,
    /// Forwarded queries waiting for an answer.
    pending: Arc<Semaphore>,
    /// TCP connections being served.
    conns: Arc<Semaphore>,
    rng: Mutex<Rng>,
}

impl EmbeddedDns {
    /// Start the thread. Forwarded queries go to `forwarder`.
    pub fn spawn(forwarder: Arc<Forwarder>) -> io::Result<Arc<EmbeddedDns>> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        thread::Builder::new()
            .name("warren-dns-lo".into())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                })
            })?;
        Ok(Arc::new(EmbeddedDns {
            runtime: handle,
            forwarder,
            view: Arc::new(Mutex::new(Arc::new(View::default()))),
            orphan: Arc::new(DnsCounters::default()),
            _stop: stop,
        }))
    }

    /// Answer from `view` from now on.
    pub fn set_view(&self, view: View) {
        *self.view.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(view);
    }

    /// Serve sandbox `sandbox`'s loopback queries on `udp` (a bound UDP
    /// socket) and `tcp` (a listening TCP socket), until the returned
    /// [`Listener`] is dropped.
    pub fn serve(&self, sandbox: &str, udp: OwnedFd, tcp: OwnedFd) -> io::Result<Listener> {
        let udp = std::net::UdpSocket::from(udp);
        let tcp = std::net::TcpListener::from(tcp);
        udp.set_nonblocking(true)?;
        tcp.set_nonblocking(true)?;
        let _entered = self.runtime.enter();
        let udp = Arc::new(UdpSocket::from_std(udp)?);
        let tcp = TcpListener::from_std(tcp)?;
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            ^ (Arc::as_ptr(&udp) as usize as u64);
        let ctx = Arc::new(Ctx {
            sandbox: sandbox.to_string(),
            forwarder: Arc::clone(&self.forwarder),
            view: Arc::clone(&self.view),
            orphan: Arc::clone(&self.orphan),
            pending: Arc::new(Semaphore::new(MAX_PENDING_PER_CLIENT)),
            conns: Arc::new(Semaphore::new(TCP_SOCKETS)),
            rng: Mutex::new(Rng::new(seed)),
        });
        let u = self.runtime.spawn(serve_udp(Arc::clone(&ctx), udp));
        let t = self.runtime.spawn(serve_tcp(ctx, tcp));
        Ok(Listener {
            tasks: vec![u.abort_handle(), t.abort_handle()],
        })
    }
}

impl Ctx {
    /// The current view and who this sandbox asks as in it.
    fn asker(&self) -> (Arc<View>, Option<Asker>) {
        let view = Arc::clone(&self.view.lock().unwrap_or_else(|p| p.into_inner()));
        let asker = view.askers.get(&self.sandbox).cloned();
        (view, asker)
    }

    /// Decide about one query: the core's action, the view it was made
    /// from, and who asked.
    fn decide(&self, bytes: &[u8], transport: Transport) -> (Action, Arc<View>, Asker) {
        let (view, asker) = self.asker();
        // A sandbox with no network is asked as nobody: the core answers
        // SERVFAIL for a network it does not know.
        let asker = asker.unwrap_or_else(|| Asker {
            network: Arc::from(""),
            ip: Ipv4Addr::UNSPECIFIED,
            counters: Arc::clone(&self.orphan),
        });
        asker.counters.queries.fetch_add(1, Relaxed);
        asker.counters.embedded.fetch_add(1, Relaxed);
        let request = Request {
            network: &asker.network,
            asker: asker.ip,
            bytes,
            transport,
        };
        let action = {
            let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
            answer(&view.table, &request, &mut rng)
        };
        (action, view, asker)
    }

    /// Relay `forward` through the forwarder (the caller holds a pending
    /// permit) and make the client's answer of the result.
    async fn forward(&self, view: &View, asker: &Asker, forward: Forward, tcp: bool) -> Reply {
        let Forward {
            query,
            bytes,
            limit,
        } = forward;
        let (tx, rx) = oneshot::channel();
        let job = ForwardJob {
            query: bytes,
            tcp,
            client: ClientKey::new(Arc::clone(&asker.network), asker.ip),
            upstreams: view.table.upstreams_of(&asker.network, asker.ip),
            avoid: Arc::clone(&view.table),
            done: Box::new(move |result| {
                let _ = tx.send(result);
            }),
        };
        asker.counters.forwarded.fetch_add(1, Relaxed);
        let result = if self.forwarder.submit(job).is_err() {
            Err(ForwardError::Overloaded)
        } else {
            match tokio::time::timeout(self.forwarder.bound() + FORWARD_GRACE, rx).await {
                Ok(Ok(result)) => result,
                _ => Err(ForwardError::Timeout),
            }
        };
        if matches!(result, Err(ForwardError::Overloaded)) {
            asker.counters.limited.fetch_add(1, Relaxed);
        }
        Reply::forwarded(&query, result, limit)
    }
}

/// SERVFAIL for a query that was to be forwarded.
fn servfail(forward: &Forward) -> Reply {
    Reply::servfail(&forward.query, forward.limit)
}

/// The UDP task: one query per datagram; forwarded ones wait on tasks of
/// their own (at most [`MAX_PENDING_PER_CLIENT`]), so a slow upstream never
/// holds up a local name.
async fn serve_udp(ctx: Arc<Ctx>, socket: Arc<UdpSocket>) {
    let mut waiting = JoinSet::new();
    // One byte more than a query may have, to tell an oversized one.
    let mut buf = vec![0u8; MAX_QUERY + 1];
    loop {
        while waiting.try_join_next().is_some() {}
        let (len, peer) = match socket.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                debug!(sandbox = %ctx.sandbox, error = %e, "embedded dns: UDP receive failed");
                tokio::time::sleep(ACCEPT_PAUSE).await;
                continue;
            }
        };
        let transport = Transport::Udp {
            max: MAX_UDP_ANSWER,
        };
        let (action, view, asker) = ctx.decide(&buf[..len], transport);
        match action {
            Action::Reply(reply) => send_udp(&socket, peer, &reply, &asker.counters),
            Action::Forward(forward) => {
                let Ok(permit) = Arc::clone(&ctx.pending).try_acquire_owned() else {
                    trace!(sandbox = %ctx.sandbox, "embedded dns: over its share of pending queries");
                    asker.counters.limited.fetch_add(1, Relaxed);
                    send_udp(&socket, peer, &servfail(&forward), &asker.counters);
                    continue;
                };
                let (ctx, socket) = (Arc::clone(&ctx), Arc::clone(&socket));
                waiting.spawn(async move {
                    let reply = ctx.forward(&view, &asker, forward, false).await;
                    send_udp(&socket, peer, &reply, &asker.counters);
                    drop(permit);
                });
            }
            Action::Drop(why) => {
                trace!(sandbox = %ctx.sandbox, ?why, "embedded dns: query dropped");
                asker.counters.malformed.fetch_add(1, Relaxed);
                asker.counters.dropped.fetch_add(1, Relaxed);
            }
        }
    }
}

/// Send `reply` to `peer` without waiting (a full socket buffer drops it).
fn send_udp(socket: &UdpSocket, peer: SocketAddr, reply: &Reply, counters: &DnsCounters) {
    counters.count_reply(reply);
    if let Err(e) = socket.try_send_to(&reply.bytes, peer) {
        trace!(error = %e, "embedded dns: UDP answer dropped");
        counters.dropped.fetch_add(1, Relaxed);
    }
}

/// The TCP task: accept, and serve each connection on a task of its own
/// while fewer than [`TCP_SOCKETS`] are; close the others at once.
async fn serve_tcp(ctx: Arc<Ctx>, listener: TcpListener) {
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of fds, most likely: pause rather than spin.
                warn!(sandbox = %ctx.sandbox, error = %e, "embedded dns: accept failed");
                tokio::time::sleep(ACCEPT_PAUSE).await;
                continue;
            }
        };
        let (_, asker) = ctx.asker();
        let counters = asker.map_or_else(|| Arc::clone(&ctx.orphan), |a| a.counters);
        counters.tcp_connections.fetch_add(1, Relaxed);
        let Ok(permit) = Arc::clone(&ctx.conns).try_acquire_owned() else {
            trace!(sandbox = %ctx.sandbox, "embedded dns: too many TCP connections; closing one");
            counters.dropped.fetch_add(1, Relaxed);
            continue;
        };
        let ctx = Arc::clone(&ctx);
        conns.spawn(async move {
            serve_conn(&ctx, stream, &counters).await;
            drop(permit);
        });
    }
}

/// How a connection's turn ended.
enum Step {
    /// Answered; read the next.
    Again,
    /// Close the connection.
    Close,
}

/// One TCP connection: a length-prefixed query at a time, answered before
/// the next is read.
async fn serve_conn(ctx: &Ctx, mut stream: TcpStream, counters: &DnsCounters) {
    let _ = stream.set_nodelay(true);
    loop {
        let message = match tokio::time::timeout(TCP_IDLE, read_message(&mut stream)).await {
            Err(_) => {
                trace!(sandbox = %ctx.sandbox, "embedded dns: idle TCP connection closed");
                counters.tcp_idle_closed.fetch_add(1, Relaxed);
                return;
            }
            Ok(Ok(Some(message))) => message,
            // The client closed, or reset.
            Ok(Ok(None)) => return,
            Ok(Err(())) => {
                counters.queries.fetch_add(1, Relaxed);
                counters.embedded.fetch_add(1, Relaxed);
                counters.malformed.fetch_add(1, Relaxed);
                counters.dropped.fetch_add(1, Relaxed);
                return;
            }
        };
        if let Step::Close = answer_tcp(ctx, &mut stream, &message).await {
            return;
        }
    }
}

/// Answer one message read from a connection.
async fn answer_tcp(ctx: &Ctx, stream: &mut TcpStream, message: &[u8]) -> Step {
    let (action, view, asker) = ctx.decide(message, Transport::Tcp);
    let reply = match action {
        Action::Reply(reply) => reply,
        Action::Forward(forward) => match Arc::clone(&ctx.pending).try_acquire_owned() {
            Ok(_permit) => ctx.forward(&view, &asker, forward, true).await,
            Err(_) => {
                asker.counters.limited.fetch_add(1, Relaxed);
                servfail(&forward)
            }
        },
        Action::Drop(why) => {
            trace!(sandbox = %ctx.sandbox, ?why, "embedded dns: TCP query dropped");
            asker.counters.malformed.fetch_add(1, Relaxed);
            asker.counters.dropped.fetch_add(1, Relaxed);
            return Step::Close;
        }
    };
    asker.counters.count_reply(&reply);
    let Ok(len) = u16::try_from(reply.bytes.len()) else {
        asker.counters.dropped.fetch_add(1, Relaxed);
        return Step::Close;
    };
    let mut out = Vec::with_capacity(reply.bytes.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&reply.bytes);
    match tokio::time::timeout(TCP_IDLE, stream.write_all(&out)).await {
        Ok(Ok(())) => Step::Again,
        _ => {
            asker.counters.dropped.fetch_add(1, Relaxed);
            Step::Close
        }
    }
}

/// One length-prefixed message: `Ok(None)` at a clean end (or a reset),
/// `Err(())` for a length of 0 or over [`MAX_QUERY`], which is never used
/// to size more than that.
async fn read_message(stream: &mut TcpStream) -> Result<Option<Vec<u8>>, ()> {
    let mut prefix = [0u8; 2];
    if stream.read_exact(&mut prefix).await.is_err() {
        return Ok(None);
    }
    let len = usize::from(u16::from_be_bytes(prefix));
    if len == 0 || len > MAX_QUERY {
        return Err(());
    }
    let mut message = vec![0u8; len];
    if stream.read_exact(&mut message).await.is_err() {
        return Ok(None);
    }
    Ok(Some(message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::dns::{EndpointInfo, NetworkInfo, SandboxInfo};
    use hickory_proto::op::ResponseCode;
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RData, RecordType};
    use std::str::FromStr;

    fn query(name: &str) -> Vec<u8> {
        let mut msg = Message::new();
        msg.set_id(7);
        msg.set_recursion_desired(true);
        msg.add_query(Query::query(Name::from_str(name).unwrap(), RecordType::A));
        msg.to_vec().unwrap()
    }

    /// Loopback sockets in the test's own namespace stand for a sandbox's:
    /// names answer as from the view network, TCP too, and dropping the
    /// listener closes the sockets.
    #[test]
    fn answers_as_the_view_network_and_closes_on_drop() {
        let forwarder = Forwarder::spawn(vec!["127.0.0.1:9".parse().unwrap()]).unwrap();
        let dns = EmbeddedDns::spawn(forwarder).unwrap();
        let nets = [
            NetworkInfo {
                name: "secret".into(),
                internal: true,
                names_enabled: true,
                gateway: Ipv4Addr::new(10, 9, 0, 1),
            },
            NetworkInfo {
                name: "dev".into(),
                internal: false,
                names_enabled: true,
                gateway: Ipv4Addr::new(10, 8, 0, 1),
            },
        ];
        let sandboxes = [SandboxInfo {
            name: "web".into(),
            short_id: "0123456789ab".into(),
            endpoints: vec![
                EndpointInfo {
                    network: "secret".into(),
                    ip: Ipv4Addr::new(10, 9, 0, 2),
                    aliases: vec![],
                },
                EndpointInfo {
                    network: "dev".into(),
                    ip: Ipv4Addr::new(10, 8, 0, 2),
                    aliases: vec!["www".into()],
                },
            ],
        }];
        let counters = Arc::new(DnsCounters::default());
        let mut askers = HashMap::new();
        askers.insert(
            "sb".to_string(),
            Asker {
                network: Arc::from("dev"),
                ip: Ipv4Addr::new(10, 8, 0, 2),
                counters: Arc::clone(&counters),
            },
        );
        dns.set_view(View {
            table: Arc::new(NameTable::build(&nets, &sandboxes)),
            askers,
        });
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (uaddr, taddr) = (udp.local_addr().unwrap(), tcp.local_addr().unwrap());
        let listener = dns.serve("sb", udp.into(), tcp.into()).unwrap();

        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        client.send_to(&query("www.dev"), uaddr).unwrap();
        let mut buf = [0u8; 4096];
        let n = client.recv(&mut buf).unwrap();
        let msg = Message::from_vec(&buf[..n]).unwrap();
        assert_eq!(msg.id(), 7);
        let ips: Vec<_> = msg
            .answers()
            .iter()
            .filter_map(|r| match r.data() {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect();
        assert_eq!(ips, vec![Ipv4Addr::new(10, 8, 0, 2)]);

        // Over TCP, and a bare name of the internal network resolves too.
        let mut s = std::net::TcpStream::connect(taddr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let q = query("web.secret");
        let mut framed = (q.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&q);
        std::io::Write::write_all(&mut s, &framed).unwrap();
        let mut len = [0u8; 2];
        std::io::Read::read_exact(&mut s, &mut len).unwrap();
        let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
        std::io::Read::read_exact(&mut s, &mut body).unwrap();
        let msg = Message::from_vec(&body).unwrap();
        assert_eq!(msg.answers().len(), 1, "{msg:?}");
        // A zero length prefix closes the connection.
        std::io::Write::write_all(&mut s, &[0, 0]).unwrap();
        assert_eq!(std::io::Read::read(&mut s, &mut buf).unwrap_or(0), 0);
        assert!(counters.embedded.load(Relaxed) >= 3);
        assert_eq!(counters.malformed.load(Relaxed), 1);

        // At most TCP_SOCKETS connections at once: the next is closed at
        // once, and served again when one ends.
        let idle: Vec<_> = (0..TCP_SOCKETS)
            .map(|_| std::net::TcpStream::connect(taddr).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        let mut extra = std::net::TcpStream::connect(taddr).unwrap();
        extra
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        assert_eq!(std::io::Read::read(&mut extra, &mut buf).unwrap_or(1), 0);
        drop(idle);

        drop(listener);
        let gone = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            std::net::TcpStream::connect(taddr).is_err()
        });
        assert!(gone, "the listener still accepts after its drop");
    }

    /// An upstream that never answers: a sandbox has at most
    /// MAX_PENDING_PER_CLIENT queries waiting; the next get SERVFAIL at
    /// once, counted as limited.
    #[test]
    fn pending_queries_are_bounded_per_sandbox() {
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let forwarder = Forwarder::spawn(vec![silent.local_addr().unwrap()]).unwrap();
        let dns = EmbeddedDns::spawn(forwarder).unwrap();
        let nets = [NetworkInfo {
            name: "dev".into(),
            internal: false,
            names_enabled: true,
            gateway: Ipv4Addr::new(10, 8, 0, 1),
        }];
        let counters = Arc::new(DnsCounters::default());
        let mut askers = HashMap::new();
        askers.insert(
            "sb".to_string(),
            Asker {
                network: Arc::from("dev"),
                ip: Ipv4Addr::new(10, 8, 0, 2),
                counters: Arc::clone(&counters),
            },
        );
        dns.set_view(View {
            table: Arc::new(NameTable::build(&nets, &[])),
            askers,
        });
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let uaddr = udp.local_addr().unwrap();
        let _listener = dns.serve("sb", udp.into(), tcp.into()).unwrap();
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let extra = 6;
        for i in 0..MAX_PENDING_PER_CLIENT + extra {
            client
                .send_to(&query(&format!("q{i}.example")), uaddr)
                .unwrap();
        }
        let mut buf = [0u8; 512];
        let mut servfail = 0;
        while let Ok(n) = client.recv(&mut buf) {
            let msg = Message::from_vec(&buf[..n]).unwrap();
            assert_eq!(msg.response_code(), ResponseCode::ServFail);
            servfail += 1;
        }
        assert_eq!(servfail, extra, "only the excess is refused at once");
        assert_eq!(counters.limited.load(Relaxed), extra as u64);
        assert_eq!(
            counters.embedded.load(Relaxed),
            (MAX_PENDING_PER_CLIENT + extra) as u64
        );
    }
}
