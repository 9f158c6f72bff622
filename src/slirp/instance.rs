//! One running slirp4netns-compatible instance: a warren network with one
//! sandbox, held by the shared daemon, for as long as this process lives.
//!
//! In order: open the target's namespaces when they are given by path (and
//! keep them open: the daemon reaches them through `/proc/<this pid>/fd/N`,
//! so they are the ones this process opened, even where the daemon cannot
//! see the runner's mount namespace, and they vanish with this process
//! however it ends; a target given by PID the daemon reaches as any
//! sandbox's, through `/proc/PID/ns`); connect
//! to the daemon (starting it if needed); create the network
//! `slirp4netns-<pid>` owned by this process (`owner-pid`); attach the
//! namespace with the TAP named as asked, the guest address, and MAC;
//! bind the API socket; say "1" on the ready fd. Then wait, in one `poll`,
//! for the exit fd to hang up, a SIGTERM/SIGINT/SIGHUP, or API clients;
//! and on the way out detach the sandbox, remove the network and the API
//! socket. If this process is SIGKILLed instead, the daemon notices (the
//! owner's pidfd fires; and a netns path through our fds stops resolving)
//! and frees the same things.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use super::api::{self, Api, Backend, HostFwd};
use super::args::{Options, Target};
use super::json;
use crate::api::ports::{PortMapping, Proto};
use crate::api::types::{
    Configure, EndpointRequest, NetworkCreate, PortsRequest, SandboxCreate, SandboxCreated,
};
use crate::cli::client::{ApiFailure, Client};
use crate::daemon::paths::{Paths, Untrusted};
use crate::daemon::state::{ALLOW_OVERLAP_OPTION, OWNER_PID_OPTION};
use crate::gateway::dns::{DNS_ADDRESS_OPTION, DNS_OPTION};
use crate::gateway::nat::{
    HOST_LOOPBACK_GATEWAY, HOST_LOOPBACK_OPTION, HOST_LOOPBACK_UNREACHABLE, OUTBOUND_ADDRESS_OPTION,
};
use crate::sandbox::Mac;

/// API clients served at once; more wait in the listen backlog.
const MAX_CLIENTS: usize = 16;
/// How long an API client may take to send its request.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long writing a reply may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// The label marking the networks and sandboxes of this mode.
pub const LABEL: &str = "warren.slirp4netns";

/// Runs the instance until it is told to stop; returns the exit status.
pub fn run(opts: &Options, paths: &Paths) -> i32 {
    match Instance::start(opts, paths) {
        Ok(mut inst) => {
            let status = match inst.serve(opts) {
                Ok(()) => 0,
                Err(e) => fail(&e),
            };
            inst.stop();
            status
        }
        Err(e) => fail(&e),
    }
}

/// Prints `e` (and the hint of a refused runtime directory or daemon);
/// returns exit status 1.
fn fail(e: &anyhow::Error) -> i32 {
    eprintln!("warren slirp4netns: {e:#}");
    if let Some(hint) = Untrusted::hint_of(e) {
        eprintln!("hint: {hint}");
    }
    1
}

/// An fd the caller left open for us (`-r`, `-e`); the standard streams
/// are duplicated rather than adopted, so dropping this never closes them.
fn given_fd(raw: i32) -> Result<OwnedFd> {
    let fd = match raw {
        0 => std::io::stdin().as_fd().try_clone_to_owned(),
        1 => std::io::stdout().as_fd().try_clone_to_owned(),
        2 => std::io::stderr().as_fd().try_clone_to_owned(),
        _ => crate::sys::fd::adopt_inherited(raw),
    };
    fd.with_context(|| format!("fd {raw} is not open"))
}

struct Instance {
    client: Client,
    name: String,
    /// The namespaces, kept open: the daemon reaches them through us.
    _netns: Option<File>,
    _userns: Option<File>,
    network_made: bool,
    sandbox_made: bool,
    api_socket: Option<(PathBuf, UnixListener)>,
    api: Api,
    guest: Ipv4Addr,
}

impl Instance {
    fn start(opts: &Options, paths: &Paths) -> Result<Instance> {
        for w in &opts.warnings {
            println!("{w}");
        }
        if opts.enable_ipv6 || opts.outbound_addr6.is_some() {
            eprintln!("warren slirp4netns: IPv6 is not supported yet (warren is IPv4-only); the network has IPv4 only");
        }
        let mtu = match opts.mtu {
            65521 => 65520,
            m if m < 576 => bail!("MTU {m} is too small for warren (576 at least)"),
            m => m,
        };
        let me = std::process::id();
        let (netns, userns) = open_namespaces(opts)?;
        let proc_fd = |f: &File| format!("/proc/{me}/fd/{}", f.as_raw_fd());
        let client = Client::connect(paths).context("connecting to the warren daemon")?;
        let name = format!("slirp4netns-{me}");
        let mut inst = Instance {
            client,
            name: name.clone(),
            _netns: netns,
            _userns: userns,
            network_made: false,
            sandbox_made: false,
            api_socket: None,
            api: Api::new(opts.guest()),
            guest: opts.guest(),
        };

        let mut options = BTreeMap::from([
            (OWNER_PID_OPTION.to_string(), me.to_string()),
            (ALLOW_OVERLAP_OPTION.to_string(), "true".to_string()),
        ]);
        if opts.disable_dns {
            options.insert(DNS_OPTION.into(), "false".into());
        } else {
            options.insert(DNS_ADDRESS_OPTION.into(), opts.dns().to_string());
        }
        // slirp4netns's 10.0.2.2 is the host's loopback, or with
        // --disable-host-loopback answers TCP with "network unreachable".
        options.insert(
            HOST_LOOPBACK_OPTION.into(),
            if opts.disable_host_loopback {
                HOST_LOOPBACK_UNREACHABLE
            } else {
                HOST_LOOPBACK_GATEWAY
            }
            .into(),
        );
        if let Some(ip) = opts.outbound_addr {
            options.insert(OUTBOUND_ADDRESS_OPTION.into(), ip.to_string());
        }
        let create = NetworkCreate {
            name: name.clone(),
            subnet: Some(opts.network.to_string()),
            gateway: Some(opts.gateway().to_string()),
            mtu: Some(mtu),
            labels: BTreeMap::from([(LABEL.to_string(), opts.tapname.clone())]),
            options,
            ..Default::default()
        };
        let made: Result<serde_json::Value> = inst.client.post("/v1/networks", &create);
        if let Err(e) = made {
            // A network of a previous process with our pid whose end the
            // daemon has not seen yet: ours now.
            if e.downcast_ref::<ApiFailure>()
                .is_some_and(|f| f.status == 409)
            {
                let _ = inst
                    .client
                    .delete::<serde_json::Value>(&format!("/v1/networks/{name}"));
                inst.client
                    .post::<_, serde_json::Value>("/v1/networks", &create)
                    .context("creating the network")?;
            } else {
                return Err(e.context("creating the network"));
            }
        }
        inst.network_made = true;

        let attach = SandboxCreate {
            name: Some(name.clone()),
            pid: match opts.target {
                Target::Pid(pid) => pid,
                Target::Path(_) => 0,
            },
            netns: inst._netns.as_ref().map(proc_fd),
            userns: inst._userns.as_ref().map(proc_fd),
            attached: true,
            network_mode: Some("bridge".into()),
            networks: vec![EndpointRequest {
                network: name.clone(),
                ifname: Some(opts.tapname.clone()),
                ip: Some(opts.guest().to_string()),
                mac: Some(
                    opts.macaddress
                        .unwrap_or_else(|| Mac::from_ipv4(opts.guest()))
                        .to_string(),
                ),
                ..Default::default()
            }],
            configure: if opts.configure {
                Configure::Interfaces
            } else {
                Configure::None
            },
            ..Default::default()
        };
        let _: SandboxCreated = inst
            .client
            .post("/v1/sandboxes", &attach)
            .context("attaching the namespace")?;
        inst.sandbox_made = true;

        if let Some(path) = &opts.api_socket {
            let _ = std::fs::remove_file(path); // as slirp4netns: avoid EADDRINUSE
            let listener = UnixListener::bind(path)
                .with_context(|| format!("binding the API socket {}", path.display()))?;
            listener.set_nonblocking(true)?;
            inst.api_socket = Some((path.clone(), listener));
        }
        inst.print_summary(opts, mtu);
        Ok(inst)
    }

    fn print_summary(&self, opts: &Options, mtu: u32) {
        let mut out = format!(
            "Starting slirp (warren)\n\
             * MTU:             {mtu}\n\
             * Network:         {}\n\
             * Netmask:         {}\n\
             * Gateway:         {}\n\
             * DNS:             {}\n\
             * Recommended IP:  {}\n",
            opts.network.network(),
            opts.network.netmask(),
            opts.gateway(),
            if opts.disable_dns {
                "(disabled)".to_string()
            } else {
                opts.dns().to_string()
            },
            opts.guest(),
        );
        if let Some(p) = &opts.api_socket {
            out.push_str(&format!("* API Socket:      {}\n", p.display()));
        }
        if let Some(ip) = opts.outbound_addr {
            out.push_str(&format!("* Outbound IPv4:    {ip}\n"));
        }
        if let Some(mac) = opts.macaddress {
            out.push_str(&format!("* MAC address:     {mac}\n"));
        }
        out.push_str(&format!("* warren network:  {}\n", self.name));
        if !opts.disable_host_loopback {
            out.push_str(&format!(
                "WARNING: 127.0.0.1:* on the host is accessible as {} (set --disable-host-loopback to prohibit connecting to 127.0.0.1:*)\n",
                opts.gateway()
            ));
        }
        print!("{out}");
        let _ = std::io::stdout().flush();
    }

    /// Says ready, then serves until the exit fd hangs up or a signal says
    /// stop.
    fn serve(&mut self, opts: &Options) -> Result<()> {
        let mut signals = SigSet::empty();
        for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
            signals.add(s);
        }
        signals.thread_block().context("blocking signals")?;
        let sigfd = SignalFd::with_flags(&signals, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .context("signalfd")?;
        let exit_fd = opts.exit_fd.map(given_fd).transpose()?;
        if let Some(raw) = opts.ready_fd {
            let ready = given_fd(raw)?;
            loop {
                match nix::unistd::write(&ready, b"1") {
                    Err(nix::errno::Errno::EINTR) => continue,
                    r => break r.map(|_| ())?,
                }
            }
            drop(ready);
            if raw <= 2 {
                // Closed, as slirp4netns closes it: the reader sees EOF.
                let _ = nix::unistd::close(raw);
            }
        }
        let mut clients: Vec<Conn> = Vec::new();
        loop {
            let now = Instant::now();
            let timeout = clients
                .iter()
                .map(|c| c.deadline.saturating_duration_since(now))
                .min()
                .map(|d| {
                    PollTimeout::try_from(d.as_millis().min(60_000) as i32 + 1)
                        .unwrap_or(PollTimeout::MAX)
                })
                .unwrap_or(PollTimeout::NONE);
            let (sig_ev, exit_ev, accept_ev, client_ev) = {
                let mut fds = vec![PollFd::new(sigfd.as_fd(), PollFlags::POLLIN)];
                let exit_idx = exit_fd.as_ref().map(|e| {
                    // slirp4netns waits for a hang-up only.
                    fds.push(PollFd::new(e.as_fd(), PollFlags::empty()));
                    fds.len() - 1
                });
                let listen_idx = match &self.api_socket {
                    Some((_, l)) if clients.len() < MAX_CLIENTS => {
                        fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
                        Some(fds.len() - 1)
                    }
                    _ => None,
                };
                let first_client = fds.len();
                for c in &clients {
                    fds.push(PollFd::new(c.stream.as_fd(), PollFlags::POLLIN));
                }
                match poll(&mut fds, timeout) {
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => bail!("poll: {e}"),
                }
                let ev = |i: usize| fds[i].revents().unwrap_or(PollFlags::empty());
                (
                    !ev(0).is_empty(),
                    exit_idx.is_some_and(|i| !ev(i).is_empty()),
                    listen_idx.is_some_and(|i| !ev(i).is_empty()),
                    (first_client..fds.len())
                        .map(|i| !ev(i).is_empty())
                        .collect::<Vec<bool>>(),
                )
            };
            if sig_ev {
                if let Ok(Some(info)) = sigfd.read_signal() {
                    eprintln!("warren slirp4netns: signal {}, stopping", info.ssi_signo);
                }
                return Ok(());
            }
            if exit_ev {
                eprintln!("exitfd event");
                return Ok(());
            }
            if accept_ev {
                self.accept(&mut clients);
            }
            let now = Instant::now();
            let mut done = Vec::new();
            for (i, c) in clients.iter_mut().enumerate() {
                let readable = client_ev.get(i).copied().unwrap_or(false);
                if (readable && c.read()) || now >= c.deadline {
                    done.push(i);
                }
            }
            for i in done.into_iter().rev() {
                let c = clients.remove(i);
                self.answer(c);
            }
        }
    }

    fn accept(&mut self, clients: &mut Vec<Conn>) {
        let Some((_, listener)) = &self.api_socket else {
            return;
        };
        while clients.len() < MAX_CLIENTS {
            match listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_ok() {
                        clients.push(Conn {
                            stream,
                            buf: Vec::new(),
                            deadline: Instant::now() + CLIENT_TIMEOUT,
                        });
                    }
                }
                Err(_) => break,
            }
        }
    }

    fn answer(&mut self, c: Conn) {
        let Conn {
            mut stream, buf, ..
        } = c;
        eprintln!(
            "api_handler: got request: {}",
            String::from_utf8_lossy(&buf[..buf.len().min(api::MAX_REQUEST)])
        );
        let mut backend = WarrenBackend {
            client: &self.client,
            sandbox: &self.name,
            guest: self.guest,
        };
        let reply = self.api.handle(&buf, &mut backend);
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
        let _ = stream.write_all(&reply);
        let _ = stream.shutdown(std::net::Shutdown::Both);
    }

    /// Takes everything away again: the sandbox, the network, the socket.
    fn stop(&mut self) {
        if let Some((path, _)) = self.api_socket.take() {
            let _ = std::fs::remove_file(path);
        }
        if self.sandbox_made {
            let _ = self
                .client
                .delete::<serde_json::Value>(&format!("/v1/sandboxes/{}?detach=true", self.name));
        }
        if self.network_made {
            if let Err(e) = self
                .client
                .delete::<serde_json::Value>(&format!("/v1/networks/{}", self.name))
            {
                if !e
                    .downcast_ref::<ApiFailure>()
                    .is_some_and(|f| f.status == 404)
                {
                    eprintln!("warren slirp4netns: removing network {}: {e:#}", self.name);
                }
            }
        }
    }
}

/// One API client: what it sent so far, and until when it may send.
struct Conn {
    stream: UnixStream,
    buf: Vec<u8>,
    deadline: Instant,
}

impl Conn {
    /// Reads what is there; true once the request is complete (the client
    /// half-closed, the buffer is full, or it parses, or cannot parse
    /// whatever follows).
    fn read(&mut self) -> bool {
        let mut chunk = [0u8; api::MAX_REQUEST];
        loop {
            let room = api::MAX_REQUEST - self.buf.len();
            match self.stream.read(&mut chunk[..room]) {
                Ok(0) => return true,
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    if self.buf.len() >= api::MAX_REQUEST {
                        return true;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return true,
            }
        }
        self.buf.contains(&0) || json::parse(&self.buf) != Err(json::Error::Incomplete)
    }
}

/// Opens what the daemon must reach through this process: the network
/// namespace given by path (the runner's mount namespace may hold the path,
/// e.g. podman's), and the user namespace given by `--userns-path`. A
/// target given by PID needs neither: the daemon's helper opens
/// `/proc/PID/ns/{net,user}` itself, as for `warren run`.
fn open_namespaces(opts: &Options) -> Result<(Option<File>, Option<File>)> {
    let open = |p: &PathBuf| File::open(p).with_context(|| format!("opening {}", p.display()));
    let user = opts.userns_path.as_ref().map(open).transpose()?;
    match &opts.target {
        Target::Pid(pid) => {
            // Fail as slirp4netns would, before anything is made.
            open(&PathBuf::from(format!("/proc/{pid}/ns/net")))?;
            Ok((None, user))
        }
        Target::Path(path) => Ok((Some(open(path)?), user)),
    }
}

/// Host forwards as warren published ports of the instance's sandbox.
struct WarrenBackend<'a> {
    client: &'a Client,
    sandbox: &'a str,
    guest: Ipv4Addr,
}

impl WarrenBackend<'_> {
    fn request(fwd: &HostFwd) -> PortsRequest {
        PortsRequest {
            specs: Vec::new(),
            ports: vec![PortMapping {
                host_ip: Some(IpAddr::V4(fwd.host_addr)),
                host_port: Some(fwd.host_port),
                port: fwd.guest_port,
                proto: if fwd.udp { Proto::Udp } else { Proto::Tcp },
                network: None,
                host_port_end: None,
            }],
        }
    }
}

impl Backend for WarrenBackend<'_> {
    fn add(&mut self, fwd: &HostFwd) -> Result<(), String> {
        if fwd.guest_addr != self.guest {
            let e = format!(
                "guest_addr {} is not the sandbox's address {}: warren forwards to the sandbox only",
                fwd.guest_addr, self.guest
            );
            eprintln!("warren slirp4netns: add_hostfwd: {e}");
            return Err(e);
        }
        self.client
            .post::<_, Vec<PortMapping>>(
                &format!("/v1/sandboxes/{}/ports", self.sandbox),
                &Self::request(fwd),
            )
            .map(|_| ())
            .map_err(|e| {
                let e = describe(&e);
                eprintln!("warren slirp4netns: add_hostfwd: {e}");
                e
            })
    }

    fn remove(&mut self, fwd: &HostFwd) -> Result<(), String> {
        match self.client.post::<_, Vec<PortMapping>>(
            &format!("/v1/sandboxes/{}/ports/remove", self.sandbox),
            &Self::request(fwd),
        ) {
            Ok(_) => Ok(()),
            // Already gone (e.g. not bound again after a daemon restart).
            Err(e)
                if e.downcast_ref::<ApiFailure>()
                    .is_some_and(|f| f.status == 404) =>
            {
                Ok(())
            }
            Err(e) => {
                let e = describe(&e);
                eprintln!("warren slirp4netns: remove_hostfwd: {e}");
                Err(e)
            }
        }
    }
}

fn describe(e: &anyhow::Error) -> String {
    match e.downcast_ref::<ApiFailure>() {
        Some(f) if !f.body.hint.is_empty() => format!("{} ({})", f.body.error, f.body.hint),
        Some(f) => f.body.error.clone(),
        None => format!("{e:#}"),
    }
}
