//! The setns helper: the daemon's hands inside a sandbox.
//!
//! The daemon ([`run`]) makes a SOCK_SEQPACKET socketpair, has its spawner
//! (`super::spawner`) start `warren __netns-helper` with one end as its
//! stdin and stdout, sends one [`Request`] (with the sandbox process's
//! pidfd attached, when there is one) and receives one [`Reply`] with the
//! TAP fds attached (SCM_RIGHTS). The helper ([`main`]), a fresh
//! single-threaded process because `setns(CLONE_NEWUSER)` is refused to
//! threaded ones, does, in order:
//!
//! 1. join the sandbox's user and network namespaces: for a process, with
//!    one `setns` on its pidfd (no window in which the pid could be reused);
//!    for paths, open them first (while the host's view of `/proc` and of
//!    the paths applies), then `setns` into the user namespace and the
//!    network namespace;
//! 2. with `setup`: bring `lo` up and set `ip_unprivileged_port_start=0` and
//!    `ping_group_range` so unprivileged processes in the sandbox can bind low
//!    ports and ping;
//! 3. create each TAP, disable IPv6 on it (IPv4 only for now, so no router
//!    solicitations or DAD noise reach the switch), configure it over
//!    netlink, and make it persistent, so it outlives a daemon that dies;
//! 4. re-open the persistent TAPs named in `reopen` (a new daemon taking
//!    over), after checking they exist;
//! 5. with `embedded_dns`: open the embedded DNS's sockets in the sandbox,
//!    a UDP socket and a TCP listener at [`EMBEDDED_DNS`] (127.0.0.11:53,
//!    Docker's address). `lo` is up by then: bringing it up gives it
//!    127.0.0.1/8, whose local route covers 127.0.0.11, so no address is
//!    added (the kernel lets a socket bind 127.0.0.11 even while `lo` is
//!    down, but nothing reaches it then). Port 53 needs no privilege there:
//!    the helper is root of the sandbox's user namespace, which owns its
//!    network namespace. A failure here does not fail the request: the reply says
//!    why ([`Reply::dns_error`]) and the daemon falls back to the gateway's
//!    DNS;
//! 6. send the reply with the fds (new TAPs first, then re-opened ones,
//!    then the two DNS sockets), and exit.
//!
//! Any failure is sent back as text in the reply, so the daemon can put the
//! real reason in its API error; the helper never leaves a half-made TAP
//! behind because a TAP whose fd is closed disappears with it.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use nix::sched::CloneFlags;
use nix::sys::socket::{setsockopt, socketpair, sockopt, AddressFamily, SockFlag, SockType};
use nix::sys::time::TimeVal;
use serde::{Deserialize, Serialize};

use super::netlink::{self, IfaceConfig, RouteConfig};
use crate::api::types::Configure;

/// Largest request or reply message.
const MAX_MSG: usize = 64 * 1024;
/// Most interfaces one request may create.
pub const MAX_IFACES: usize = 32;
/// How long the daemon waits for a helper before giving up on it.
const HELPER_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a helper lives at most: it asks for SIGALRM after this, so one
/// stuck in the kernel cannot outlive the daemon's interest in it.
const HELPER_LIFETIME: Duration = Duration::from_secs(30);

/// What the daemon asks the helper to do.
#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    /// A process inside the sandbox; its user and network namespaces are
    /// joined. 0 when the sandbox is given by `netns` instead.
    #[serde(default)]
    pub pid: i32,
    /// The sandbox's network namespace by path (e.g. `/proc/PID/ns/net`,
    /// `/run/netns/NAME`), for sandboxes attached without a process.
    #[serde(default)]
    pub netns: Option<PathBuf>,
    /// The user namespace to join first; by default the one owning the
    /// network namespace (`NS_GET_USERNS`).
    #[serde(default)]
    pub userns: Option<PathBuf>,
    /// Bring `lo` up and set the per-namespace sysctls (first attach).
    pub setup: bool,
    /// How much to configure (see [`Configure`]): `Interfaces` skips the
    /// sysctls, `None` everything but each TAP's MAC.
    #[serde(default)]
    pub configure: Configure,
    /// TAP devices to create and configure, in order.
    pub interfaces: Vec<IfaceConfig>,
    /// Move the default route to this existing interface (after a
    /// disconnect took away the one that had it).
    #[serde(default)]
    pub route: Option<RouteConfig>,
    /// Existing (persistent) TAPs to re-open, already configured: a new
    /// daemon taking over the sandboxes of one that died.
    #[serde(default)]
    pub reopen: Vec<String>,
    /// Open the embedded DNS's UDP socket and TCP listener at
    /// [`EMBEDDED_DNS`] and send them after the TAPs (a `run` sandbox).
    #[serde(default)]
    pub embedded_dns: bool,
    /// A pidfd of `pid`, sent with the request (SCM_RIGHTS): the helper
    /// joins that very process's namespaces with `setns` on it, so a pid
    /// reused since the daemon opened it can never be entered by mistake.
    #[serde(skip)]
    pub pidfd: Option<Arc<OwnedFd>>,
}

/// The helper's answer. On success the message carries one fd per
/// interface, then the embedded DNS's two sockets when they were asked for
/// and could be opened.
#[derive(Debug, Serialize, Deserialize)]
pub struct Reply {
    pub error: Option<String>,
    pub ifindexes: Vec<u32>,
    /// Why the embedded DNS's sockets could not be opened (they were asked
    /// for and are not attached).
    #[serde(default)]
    pub dns_error: Option<String>,
}

/// Where the embedded DNS listens inside a `run` sandbox, as in Docker.
pub const EMBEDDED_DNS: std::net::SocketAddrV4 =
    std::net::SocketAddrV4::new(std::net::Ipv4Addr::new(127, 0, 0, 11), 53);

/// What the helper handed back.
#[derive(Debug)]
pub struct Opened {
    /// One TAP fd per interface: the new ones, then the re-opened ones.
    pub taps: Vec<OwnedFd>,
    /// The embedded DNS's UDP socket and TCP listener, or why there are none
    /// (`Ok(None)`: not asked for).
    pub dns: std::result::Result<Option<(OwnedFd, OwnedFd)>, String>,
}

/// Daemon side: runs the helper for `req` and returns one TAP fd per
/// requested interface, in order. Blocking; call it off the async runtime.
pub fn run(exe: &Path, req: &Request) -> Result<Vec<OwnedFd>> {
    Ok(run_full(exe, req)?.taps)
}

/// [`run`], with the embedded DNS's sockets when `req` asked for them.
pub fn run_full(exe: &Path, req: &Request) -> Result<Opened> {
    if req.interfaces.len() + req.reopen.len() > MAX_IFACES {
        bail!("at most {MAX_IFACES} interfaces per request");
    }
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .context("socketpair for the netns helper")?;
    let timeout = TimeVal::new(HELPER_TIMEOUT.as_secs() as i64, 0);
    setsockopt(&ours, sockopt::ReceiveTimeout, &timeout).context("SO_RCVTIMEO")?;
    // The daemon starts helpers through its spawner (it may not exec
    // itself); anything else spawns the helper directly.
    if let Some(spawner) = super::spawner::installed() {
        spawner.spawn(theirs)?;
        // A helper that hangs dies of its own alarm (HELPER_LIFETIME).
        return exchange(&ours, req);
    }
    let theirs_out = theirs.try_clone().context("dup helper socket")?;
    let mut child = Command::new(exe)
        .arg("__netns-helper")
        .stdin(Stdio::from(theirs))
        .stdout(Stdio::from(theirs_out))
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("spawning {} __netns-helper", exe.display()))?;
    let result = exchange(&ours, req);
    if result.is_err() {
        let _ = child.kill();
    }
    let _ = child.wait();
    result
}

fn exchange(sock: &OwnedFd, req: &Request) -> Result<Opened> {
    let body = serde_json::to_vec(req)?;
    let fds = match &req.pidfd {
        Some(fd) => vec![fd.try_clone().context("dup pidfd")?],
        None => vec![],
    };
    crate::sys::scm::send_with_fds(sock, &body, &fds)
        .context("sending the request to the netns helper")?;
    let mut buf = vec![0u8; MAX_MSG];
    let (len, mut fds) = crate::sys::scm::recv_with_fds(sock, &mut buf)
        .context("waiting for the netns helper (timed out or failed)")?;
    if len == 0 {
        bail!("the netns helper exited without an answer (see the daemon log)");
    }
    let reply: Reply = serde_json::from_slice(&buf[..len]).context("parsing the helper's reply")?;
    if let Some(e) = reply.error {
        bail!("{e}");
    }
    let taps = req.interfaces.len() + req.reopen.len();
    let dns_fds = if req.embedded_dns && reply.dns_error.is_none() {
        2
    } else {
        0
    };
    if fds.len() != taps + dns_fds {
        bail!(
            "the netns helper returned {} fds for {} interfaces and {} DNS sockets",
            fds.len(),
            taps,
            dns_fds
        );
    }
    let dns = match (req.embedded_dns, reply.dns_error) {
        (false, _) => Ok(None),
        (true, Some(e)) => Err(e),
        (true, None) => {
            let tcp = fds.pop();
            let udp = fds.pop();
            match (udp, tcp) {
                (Some(udp), Some(tcp)) => Ok(Some((udp, tcp))),
                _ => Err("the netns helper sent no DNS sockets".to_string()),
            }
        }
    };
    Ok(Opened { taps: fds, dns })
}

/// Helper side: the body of `warren __netns-helper`. Returns the exit code.
pub fn main() -> i32 {
    nix::unistd::alarm::set(HELPER_LIFETIME.as_secs() as u32);
    // fd 0 and fd 1 are both our end of the daemon's socketpair.
    let stdin = std::io::stdin();
    let sock = stdin.as_fd();
    let mut buf = vec![0u8; MAX_MSG];
    let req: Request = match read_request(sock, &mut buf) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("warren __netns-helper: {e:#}");
            return 2;
        }
    };
    let (reply, fds) = match serve(&req) {
        Ok((ifindexes, mut fds)) => {
            let dns_error = if req.embedded_dns {
                match embedded_dns_sockets() {
                    Ok((udp, tcp)) => {
                        fds.push(udp);
                        fds.push(tcp);
                        None
                    }
                    Err(e) => Some(format!("{e:#}")),
                }
            } else {
                None
            };
            (
                Reply {
                    error: None,
                    ifindexes,
                    dns_error,
                },
                fds,
            )
        }
        Err(e) => (
            Reply {
                error: Some(format!("{e:#}")),
                ifindexes: vec![],
                dns_error: None,
            },
            vec![],
        ),
    };
    let body = serde_json::to_vec(&reply).unwrap_or_default();
    if let Err(e) = crate::sys::scm::send_with_fds(&std::io::stdout().as_fd(), &body, &fds) {
        eprintln!("warren __netns-helper: sending reply: {e}");
        return 1;
    }
    0
}

fn read_request(sock: BorrowedFd<'_>, buf: &mut [u8]) -> Result<Request> {
    let (n, mut fds) = crate::sys::scm::recv_with_fds(&sock, buf).context("reading request")?;
    if n == 0 {
        bail!("no request");
    }
    let mut req: Request = serde_json::from_slice(&buf[..n]).context("parsing request")?;
    if fds.len() > 1 {
        bail!("the request carries {} fds (at most a pidfd)", fds.len());
    }
    req.pidfd = fds.pop().map(Arc::new);
    Ok(req)
}

fn serve(req: &Request) -> Result<(Vec<u32>, Vec<OwnedFd>)> {
    if req.interfaces.len() > MAX_IFACES {
        bail!("at most {MAX_IFACES} interfaces per request");
    }
    match (&req.pidfd, &req.netns, &req.userns) {
        (Some(pidfd), None, None) => join_process(pidfd)?,
        _ => join_paths(req)?,
    }
    if req.setup && req.configure == Configure::Full {
        write_sysctl("net/ipv4/ip_unprivileged_port_start", "0")?;
        // The range must lie within the gids mapped in the sandbox's user
        // namespace; allow every mapped gid to use ICMP echo sockets.
        let map = std::fs::read_to_string("/proc/self/gid_map").context("reading gid_map")?;
        if let Some((low, high)) = mapped_range(&map) {
            write_sysctl("net/ipv4/ping_group_range", &format!("{low} {high}"))?;
        }
    }
    // Re-opened TAPs must exist: TUNSETIFF would otherwise make a new,
    // unconfigured one.
    netlink::require_links(&req.reopen)?;
    let mut fds = Vec::with_capacity(req.interfaces.len());
    for cfg in &req.interfaces {
        let fd = crate::sys::tap::create_tap(&cfg.ifname)?;
        // IPv4 only for now; a missing ipv6 tree (ipv6.disable=1) is fine.
        let _ = write_sysctl(&format!("net/ipv6/conf/{}/disable_ipv6", cfg.ifname), "1");
        fds.push(fd);
    }
    let indexes = match req.configure {
        Configure::None => netlink::set_macs(&req.interfaces)?,
        _ => netlink::configure(req.setup, &req.interfaces, req.route.as_ref())?,
    };
    // Persistent only once fully configured: a failure above drops the fds
    // and with them every TAP this request made.
    for fd in &fds {
        crate::sys::tap::set_persist(fd, true)?;
    }
    for name in &req.reopen {
        fds.push(crate::sys::tap::create_tap(name)?);
    }
    Ok((indexes, fds))
}

/// The embedded DNS's UDP socket and TCP listener at [`EMBEDDED_DNS`], in
/// the network namespace the helper is in (the sandbox's, with `lo` up).
/// Neither sets `SO_REUSEPORT`, so no process in the sandbox can join
/// their port group and take a share of the queries.
fn embedded_dns_sockets() -> Result<(OwnedFd, OwnedFd)> {
    let udp = std::net::UdpSocket::bind(EMBEDDED_DNS)
        .with_context(|| format!("binding UDP {EMBEDDED_DNS} in the sandbox"))?;
    let tcp = std::net::TcpListener::bind(EMBEDDED_DNS)
        .with_context(|| format!("listening on TCP {EMBEDDED_DNS} in the sandbox"))?;
    Ok((udp.into(), tcp.into()))
}

/// Joins the user and network namespaces of the process behind `pidfd`, in
/// one `setns` (Linux 5.8): no `/proc` path, so no window in which its pid
/// could name another process.
fn join_process(pidfd: &OwnedFd) -> Result<()> {
    use nix::errno::Errno;
    let both = CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNET;
    match nix::sched::setns(pidfd.as_fd(), both) {
        Ok(()) => Ok(()),
        // Joining the user namespace we are already in is refused (EINVAL):
        // the sandbox shares ours, join only its network namespace.
        Err(Errno::EINVAL) => nix::sched::setns(pidfd.as_fd(), CloneFlags::CLONE_NEWNET)
            .context("joining the sandbox's network namespace"),
        Err(Errno::ESRCH) => bail!("the sandbox's process is gone"),
        Err(e) => Err(e).context(
            "joining the sandbox's user and network namespaces (they must be owned by the daemon's user)",
        ),
    }
}

/// Joins the namespaces named by path (or by pid without a pidfd).
fn join_paths(req: &Request) -> Result<()> {
    let (user, net) = open_namespaces(req)?;
    // Joining the user namespace we are already in is refused (EINVAL); a
    // sandbox in our own user namespace needs no join.
    let own_user = std::fs::metadata("/proc/self/ns/user")
        .map(|m| m.ino())
        .ok();
    let target_user = std::fs::metadata(format!("/proc/self/fd/{}", user.as_raw_fd()))
        .map(|m| m.ino())
        .ok();
    if own_user != target_user {
        nix::sched::setns(user.as_fd(), CloneFlags::CLONE_NEWUSER).context(
            "joining the sandbox's user namespace (it must be owned by the daemon's user)",
        )?;
    }
    nix::sched::setns(net.as_fd(), CloneFlags::CLONE_NEWNET)
        .context("joining the sandbox's network namespace")
}

/// Opens the sandbox's user and network namespaces, before joining either
/// (while the host's view of `/proc` and of the paths applies).
fn open_namespaces(req: &Request) -> Result<(OwnedFd, File)> {
    let net_path = match &req.netns {
        Some(p) => p.clone(),
        None if req.pid > 0 => PathBuf::from(format!("/proc/{}/ns/net", req.pid)),
        None => bail!("the request names neither a pid nor a network namespace"),
    };
    let net = File::open(&net_path).with_context(|| {
        format!(
            "opening the network namespace {} (is the sandbox gone?)",
            net_path.display()
        )
    })?;
    let user: OwnedFd = match (&req.userns, &req.netns) {
        (Some(p), _) => File::open(p)
            .with_context(|| format!("opening the user namespace {}", p.display()))?
            .into(),
        (None, Some(_)) => crate::sys::ns::owning_userns(&net)
            .context("finding the user namespace owning the network namespace")?,
        (None, None) => File::open(format!("/proc/{}/ns/user", req.pid))
            .with_context(|| format!("opening the user namespace of pid {}", req.pid))?
            .into(),
    };
    Ok((user, net))
}

/// The lowest and highest ids inside a namespace, from its `uid_map` or
/// `gid_map` (lines of `inside outside count`).
fn mapped_range(map: &str) -> Option<(u64, u64)> {
    let mut range: Option<(u64, u64)> = None;
    for line in map.lines() {
        let f: Vec<u64> = line
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        let [inside, _, count] = f[..] else { continue };
        if count == 0 {
            continue;
        }
        let hi = inside + count - 1;
        range = Some(match range {
            None => (inside, hi),
            Some((l, h)) => (l.min(inside), h.max(hi)),
        });
    }
    range
}

fn write_sysctl(key: &str, value: &str) -> Result<()> {
    let path = format!("/proc/sys/{key}");
    std::fs::write(&path, value).map_err(|e| anyhow!("setting {path} to {value:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_process_is_never_joined_through_its_pidfd() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let fd = crate::sys::pidfd::open(child.id() as i32).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        // Whatever process gets that pid next, the pidfd still names the
        // dead one: the join fails before touching our namespaces.
        let err = join_process(&fd).unwrap_err();
        assert!(format!("{err:#}").contains("gone"), "{err:#}");
    }

    #[test]
    fn mapped_range_covers_every_line() {
        assert_eq!(
            mapped_range("         0      65534          1\n"),
            Some((0, 0))
        );
        assert_eq!(mapped_range("0 1000 1\n1 100000 65536\n"), Some((0, 65536)));
        assert_eq!(mapped_range(""), None);
    }
}
