//! Frames from sandboxes into a network's NAT engine: TCP, UDP and ICMP to
//! outside addresses, re-originated from real host sockets, with the
//! engine's host side serviced and its smoltcp polled after every frame.
//!
//! Traffic stays home: before the first input the target moves itself into
//! a user and network namespace of its own, with nothing but `lo` (and
//! checks that it got there, or exits). A connect or send to any outside
//! address then fails at once (no route), which is the refusal path; the
//! host-loopback address (169.254.1.2, on: the network opted in) reaches
//! the namespace's own 127.0.0.1, where a TCP listener on port 80 accepts,
//! writes a little and (per the mode byte) closes, and a UDP socket on port
//! 53 echoes (up to 64 KiB, fragmented to the MTU on the way back).
//!
//! Input: one mode byte, then frames, each a big-endian `u16` length and
//! that many bytes (a short last one is taken as it is). Mode bits: 0,
//! `host-loopback=gateway` (the gateway's own address reaches 127.0.0.1
//! too); 1–2, the checksum offload the frames claim (0 none: checksums are
//! verified; 1 `DATA_VALID`; 2–3 partial, as a sandbox's kernel sends TCP,
//! kept only where the switch's own check accepts it); 3, close accepted
//! host connections after every frame; 4, published ports: before the
//! frames the engine gets a TCP forward (127.0.0.1:8080 to the sandbox's
//! port 80) and a UDP one (8053 to 53), and a host client from a fixed port
//! connects to each and sends a little, so the frames can play the
//! sandbox's server side; 5, `host-loopback=unreachable` (slirp4netns's
//! `--disable-host-loopback`: TCP to the gateway gets ICMP net
//! unreachable) instead of bit 0.
//!
//! The frames come straight in, with no switch in front checking their
//! source, so the engine has to hold on its own. smoltcp is seeded with a
//! constant, so its initial sequence numbers follow from the input and the
//! fuzzer can learn (from the comparisons it watches) the acknowledgements
//! that get a flow past its handshake and into the data path; the seeds in
//! `make_corpus.py` carry data both ways. Every frame for a sandbox that
//! comes out must be one the switch would write: an IPv4 packet within the
//! MTU from the gateway's MAC, with an offload the switch's check accepts.
#![no_main]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use smoltcp::wire::{EthernetFrame, Ipv4Packet};
use warren::gateway::nat::{ForwardSpec, Limits, Nat, NatEngine, NetworkNat, Transport};
use warren::gateway::GatewayConfig;
use warren::switch::vnet::{self, Header, Offload, F_DATA_VALID, F_NEEDS_CSUM, HDR_LEN};

const GW_MAC: [u8; 6] = [0x02, 0x42, 0xac, 0x12, 0x00, 0x01];
const SANDBOX: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 2);
const SANDBOX_MAC: [u8; 6] = [0x02, 0x42, 0xac, 0x12, 0x00, 0x02];
/// Published ports (host side) and the fixed ports of their clients, so
/// the sandbox sees the same addresses every input.
const TCP_PUBLISHED: u16 = 8080;
const UDP_PUBLISHED: u16 = 8053;
const TCP_CLIENT: u16 = 40080;
const UDP_CLIENT: u16 = 40053;
const MTU: usize = 1500;
/// Most frames taken from one input.
const MAX_FRAMES: usize = 32;
/// Most accepted host connections kept open at once.
const MAX_PEERS: usize = 8;

/// The namespace's own servers behind the host-loopback address.
struct Host {
    tcp: TcpListener,
    udp: UdpSocket,
    peers: Vec<TcpStream>,
}

static HOST: OnceLock<Mutex<Host>> = OnceLock::new();

/// Move into a user and network namespace of our own and start the
/// servers; exit if the process cannot be isolated.
fn isolate() {
    if let Err(e) = warren::sandbox::init::unshare_as_root(nix::sched::CloneFlags::CLONE_NEWNET) {
        eprintln!("nat_frames: cannot make a network namespace of its own ({e:#}); it never runs on the host's network");
        std::process::exit(1);
    }
    let path = "/proc/sys/net/ipv4/ping_group_range";
    if let Err(e) = std::fs::write(path, "0 0\n") {
        eprintln!("nat_frames: writing {path}: {e}");
        std::process::exit(1);
    }
    if let Err(e) = warren::sandbox::netlink::configure(true, &[], None) {
        eprintln!("nat_frames: bringing lo up: {e:#}");
        std::process::exit(1);
    }
    let links = std::fs::read_to_string("/proc/self/net/dev").unwrap_or_default();
    let names: Vec<&str> = links
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .collect();
    if names.iter().any(|n| n.trim() != "lo") {
        eprintln!("nat_frames: the namespace has links besides lo: {names:?}");
        std::process::exit(1);
    }
    let tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, 80)).expect("listen on 127.0.0.1:80");
    let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 53)).expect("bind 127.0.0.1:53");
    tcp.set_nonblocking(true).expect("non-blocking listener");
    udp.set_nonblocking(true).expect("non-blocking UDP socket");
    let host = Host {
        tcp,
        udp,
        peers: Vec::new(),
    };
    assert!(HOST.set(Mutex::new(host)).is_ok(), "isolate runs once");
}

impl Host {
    /// Accept, read and answer whatever the engine's sockets sent.
    fn serve(&mut self, close: bool) {
        while let Ok((peer, _)) = self.tcp.accept() {
            if self.peers.len() < MAX_PEERS && peer.set_nonblocking(true).is_ok() {
                self.peers.push(peer);
            }
        }
        let mut buf = vec![0u8; 65536];
        for peer in &mut self.peers {
            while matches!(peer.read(&mut buf), Ok(n) if n > 0) {}
            let _ = peer.write(b"HTTP/1.0 200 OK\r\n\r\nwarren");
        }
        if close {
            self.peers.clear();
        }
        while let Ok((n, from)) = self.udp.recv_from(&mut buf) {
            let _ = self.udp.send_to(&buf[..n], from);
        }
    }

    /// Forget the input's connections, and anything still queued.
    fn reset(&mut self) {
        self.peers.clear();
        self.serve(true);
    }
}

/// Host clients of the published ports, for one input (none unless the
/// mode publishes them).
#[derive(Default)]
struct Clients {
    tcp: Option<TcpStream>,
    udp: Option<UdpSocket>,
}

impl Clients {
    /// Publish the sandbox's ports 80 and 53 and connect to them.
    fn publish(engine: &mut NatEngine) -> Clients {
        let forward = |engine: &mut NatEngine, transport, listener: OwnedFd, port| {
            let spec = ForwardSpec {
                transport,
                listener,
                target: SocketAddrV4::new(SANDBOX, port),
                sandbox_mac: SANDBOX_MAC,
            };
            engine.add_forward(spec).is_ok()
        };
        let tcp_listener = TcpListener::bind((Ipv4Addr::LOCALHOST, TCP_PUBLISHED));
        let tcp = tcp_listener
            .ok()
            .filter(|l| forward(engine, Transport::Tcp, dup(l), 80))
            .and_then(|_| client_stream());
        let udp_listener = UdpSocket::bind((Ipv4Addr::LOCALHOST, UDP_PUBLISHED));
        let udp = udp_listener
            .ok()
            .filter(|u| forward(engine, Transport::Udp, dup(u), 53))
            .and_then(|_| UdpSocket::bind((Ipv4Addr::LOCALHOST, UDP_CLIENT)).ok());
        if let Some(udp) = &udp {
            let _ = udp.set_nonblocking(true);
            let _ = udp.send_to(b"published?", (Ipv4Addr::LOCALHOST, UDP_PUBLISHED));
        }
        Clients { tcp, udp }
    }

    /// Send a little more and read what came back.
    fn talk(&mut self) {
        let mut buf = [0u8; 4096];
        if let Some(tcp) = &mut self.tcp {
            while matches!(tcp.read(&mut buf), Ok(n) if n > 0) {}
            let _ = tcp.write(b"GET / HTTP/1.0\r\n\r\n");
        }
        if let Some(udp) = &self.udp {
            while udp.recv(&mut buf).is_ok() {}
        }
    }
}

/// A duplicate of a socket's fd for the engine to own (ours closes at the
/// end of [`Clients::publish`]).
fn dup(socket: &impl AsFd) -> OwnedFd {
    socket.as_fd().try_clone_to_owned().expect("dup a socket")
}

/// A non-blocking connect from 127.0.0.1:[`TCP_CLIENT`] to the TCP
/// published port, closed with a RST when dropped (so no TIME_WAIT keeps
/// the next input's connect from the same port).
fn client_stream() -> Option<TcpStream> {
    use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn};
    let fd = socket::socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .ok()?;
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true).ok()?;
    let linger = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    socket::setsockopt(&fd, sockopt::Linger, &linger).ok()?;
    let at = |port| SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
    socket::bind(fd.as_raw_fd(), &at(TCP_CLIENT)).ok()?;
    match socket::connect(fd.as_raw_fd(), &at(TCP_PUBLISHED)) {
        Ok(()) | Err(nix::errno::Errno::EINPROGRESS) => Some(TcpStream::from(fd)),
        Err(_) => None,
    }
}

/// The offload a frame claims under `mode`, as the switch would let it in.
fn offload(mode: u8, frame: &[u8]) -> Offload {
    let hdr = match (mode >> 1) & 3 {
        0 => return Offload::None,
        1 => Header {
            flags: F_DATA_VALID,
            ..Header::NONE
        },
        _ => match vnet::l4_csum_field(frame) {
            Some((csum_start, csum_offset)) => Header {
                flags: F_NEEDS_CSUM,
                csum_start,
                csum_offset,
                ..Header::NONE
            },
            None => Header::NONE,
        },
    };
    vnet::check(&hdr, frame).unwrap_or(Offload::None)
}

/// What the engine hands the switch must be a frame the switch can write.
fn check_out(buf: &mut [u8], offload: Offload) {
    let frame = &buf[HDR_LEN..];
    let eth = EthernetFrame::new_checked(frame).expect("an Ethernet frame");
    assert_eq!(eth.src_addr().0, GW_MAC, "from the gateway's MAC");
    let ip = Ipv4Packet::new_checked(eth.payload()).expect("an IPv4 packet");
    assert!(usize::from(ip.total_len()) <= MTU, "within the MTU");
    assert!(ip.verify_checksum(), "a whole IPv4 header checksum");
    let hdr = Header::parse(&vnet::encode(offload, frame));
    assert_eq!(
        vnet::check(&hdr, frame),
        Ok(offload),
        "an offload the switch accepts"
    );
}

/// Let both sides of the host sockets and the engine act on what came.
fn settle(
    engine: &mut NatEngine,
    host: &mut Host,
    clients: &mut Clients,
    now: Instant,
    close: bool,
) {
    for _ in 0..2 {
        host.serve(close);
        clients.talk();
        engine.service_host(now);
        engine.poll(now, &mut check_out);
    }
}

fuzz_target!(init: isolate(), |data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let gateway = GatewayConfig {
        ip: Ipv4Addr::new(172, 18, 0, 1),
        prefix_len: 16,
        mac: GW_MAC,
        mtu: MTU,
    };
    let net = NetworkNat {
        nat: Nat::new(Limits {
            per_sandbox: 16,
            total: 32,
        }),
        host_loopback: true,
        gateway_loopback: mode & 1 != 0 && mode & 32 == 0,
        // slirp4netns's --disable-host-loopback answers (bit 5).
        gateway_unreachable: mode & 32 != 0,
        dns_on_gateway: true,
        outbound: None,
    };
    // A fixed seed: smoltcp's sequence numbers then follow from the input,
    // so the fuzzer can learn the ones that get past a handshake.
    let Ok(mut engine) = NatEngine::with_seed(net, &gateway, 1) else {
        return;
    };
    let mut host = HOST.get().expect("initialised").lock().unwrap_or_else(|e| e.into_inner());
    let mut clients = if mode & 16 != 0 {
        Clients::publish(&mut engine)
    } else {
        Clients::default()
    };
    let start = Instant::now();
    let mut now = start;
    // The published ports' clients connect before the first frame.
    settle(&mut engine, &mut host, &mut clients, now, false);
    for _ in 0..MAX_FRAMES {
        let Some((len, tail)) = rest.split_first_chunk::<2>() else {
            break;
        };
        let len = usize::from(u16::from_be_bytes(*len)).min(tail.len());
        let (frame, tail) = tail.split_at(len);
        rest = tail;
        engine.receive_offload(now, frame, offload(mode, frame));
        settle(&mut engine, &mut host, &mut clients, now, mode & 8 != 0);
        now += Duration::from_millis(50);
    }
    // Long enough later for every flow to time out: expiry runs too.
    let later = start + Duration::from_secs(600);
    engine.service_host(later);
    engine.poll(later, &mut check_out);
    drop(clients);
    drop(engine);
    host.reset();
});
