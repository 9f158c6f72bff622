//! The first processes of a sandbox made by `warren run`.
//!
//! The CLI ([`spawn`]) starts `warren __init` with one end of a
//! SOCK_SEQPACKET socketpair left open across exec (its number in
//! `WARREN_SYNC_FD`). Three processes come out of it:
//!
//! - the **supervisor** (the init itself): `setsid()` (no sandbox process
//!   ever has the caller's terminal as its controlling terminal), then a
//!   new *outer* user namespace (the caller mapped to root, as
//!   `unshare -r` does) and mount namespace. It forks
//! - the **second stage**: a new *inner* user namespace (outer root mapped
//!   to root) with network, uts and PID namespaces of its own (no network
//!   or uts for `--network host`). It forks the sandbox's PID 1, tells the
//!   supervisor its pid (`ready PID`) and waits for it, passing on its
//!   status;
//! - the sandbox's **PID 1**: its pid is the sandbox's pid, the one the
//!   supervisor passes on to the CLI, which asks the daemon to attach it
//!   and forwards what the daemon generated ([`Go`]).
//!
//! Then the supervisor, root of the outer namespaces, makes the mounts in
//! the outer mount namespace, which the sandbox still shares
//! ([`super::mounts`]): the generated `/etc/hosts` and `/etc/hostname`;
//! for `--read-only` every mount made read-only, a private `/tmp` and
//! `/dev/shm`, `--writable` paths bound writable; a `devpts` of the
//! sandbox's own over `/dev/pts` (the user's terminals are not the
//! sandbox's to open); an empty read-only tmpfs over warren's state and
//! runtime directories (the daemon's socket lives there); and last a
//! `/proc` of the sandbox's PID namespace. It releases PID 1, which sets
//! the hostname and *only then* unshares a mount namespace of its own: a
//! copy made into a namespace owned by a less privileged user namespace,
//! so the kernel **locks** every mount in it. Root in the sandbox can
//! stack new mounts, but `umount` of a cover (or of `/proc`) fails
//! (`EINVAL`), a non-recursive bind that would show what a cover hides is
//! refused, and a read-only mount stays read-only. A `-t` sandbox
//! allocates a pty from its own devpts and sends the master back
//! ([`super::pty`]); a `--read-only` one puts itself under Landlock
//! (writes only under `/tmp`, `/dev` and the `--writable` paths). PID 1
//! then starts the command and serves as its init ([`super::pid1`]).
//!
//! The PID namespace is also what keeps the sandbox's hands off the
//! user's other processes: they run as the same uid, which is all `kill`,
//! `ptrace` and `/proc/PID/mem` ask of a process of the same user, but
//! from inside they have no pid to name them by.
//!
//! The supervisor waits for the second stage and exits with its status
//! (128+N for a signal). Each stage dies with its parent (a parent-death
//! signal; PID 1's end ends the namespace), and if the CLI goes away
//! before sending `Go` (the attach failed), the sandbox is killed before
//! running anything and the init exits 125.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::socket::{setsockopt, socketpair, sockopt, AddressFamily, SockFlag, SockType};
use nix::sys::time::TimeVal;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::{mounts, pid1, pty};
use crate::sys::process::{fork_single_threaded, Forked, SingleThreaded};
use crate::sys::scm;

pub const SYNC_ENV: &str = "WARREN_SYNC_FD";
/// Exit status when the sandbox was torn down before the command ran
/// (Docker uses 125 for "the daemon failed").
pub const EXIT_ABORTED: i32 = 125;

/// What the init needs from the daemon before it execs the command.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Go {
    pub hostname: Option<String>,
    /// `(source, target)` pairs to bind-mount, e.g. the generated hosts file
    /// over `/etc/hosts`.
    pub binds: Vec<(PathBuf, PathBuf)>,
    /// Directories to cover with an empty read-only tmpfs (warren's state
    /// and runtime directories: the daemon's socket lives there).
    #[serde(default)]
    pub hide: Vec<PathBuf>,
    /// `-t`: the sandbox allocates a pty of its own (`sandbox::pty`),
    /// the command's stdin, stdout and stderr, and sends its master back.
    #[serde(default)]
    pub tty: bool,
    /// `-w`: the command's working directory.
    #[serde(default)]
    pub workdir: Option<PathBuf>,
    /// `--read-only`: the paths that stay writable (`--writable`).
    #[serde(default)]
    pub read_only: Option<Vec<PathBuf>>,
}

/// How the init should isolate the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetMode {
    /// A new network namespace (endpoints, or `--network none`).
    Private,
    /// The caller's own network namespace (`--network host`).
    Host,
}

/// CLI side: a started init, waiting for [`InitHandle::go`].
pub struct InitHandle {
    /// The supervisor (`warren __init`): its exit status is the command's.
    pub child: Child,
    sock: OwnedFd,
    /// The sandbox's first process (soon the user's command).
    pid: i32,
}

/// Spawns `exe __init` for `cmd`, with exactly the environment `env` (see
/// `cli::stdio::sandbox_env`). `stdio` gives the child's stdin, stdout and
/// stderr. Returns once the namespaces exist (the init said `ready`).
pub fn spawn(
    exe: &std::path::Path,
    cmd: &[String],
    mode: NetMode,
    env: &[(String, String)],
    status_file: &std::path::Path,
    stdio: [Stdio; 3],
) -> Result<InitHandle> {
    let (ours, theirs) = sync_pair()?;
    let [stdin, stdout, stderr] = stdio;
    let mut command = Command::new(exe);
    command.arg("__init").arg("--status-file").arg(status_file);
    if mode == NetMode::Host {
        command.arg("--net-host");
    }
    command
        .arg("--")
        .args(cmd)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env(SYNC_ENV, theirs.as_raw_fd().to_string())
        .stdin(stdin)
        .stdout(stdout)
        .stderr(stderr);
    let child = command.spawn().context("starting the sandbox init")?;
    drop(theirs);
    let timeout = TimeVal::new(10, 0);
    setsockopt(&ours, sockopt::ReceiveTimeout, &timeout).context("SO_RCVTIMEO")?;
    let mut handle = InitHandle {
        child,
        sock: ours,
        pid: 0,
    };
    let mut buf = [0u8; 64];
    let n = nix::unistd::read(handle.sock.as_raw_fd(), &mut buf).unwrap_or(0);
    let pid = std::str::from_utf8(&buf[..n])
        .ok()
        .and_then(|m| m.strip_prefix("ready "))
        .and_then(|p| p.parse::<i32>().ok());
    if let Some(pid) = pid {
        handle.pid = pid;
    } else {
        let _ = handle.child.kill();
        let status = handle.child.wait().ok();
        bail!(
            "the sandbox init failed to create its namespaces ({}); unprivileged user \
             namespaces must be enabled (sysctl user.max_user_namespaces > 0)",
            status.map(|s| s.to_string()).unwrap_or_default()
        );
    }
    Ok(handle)
}

impl InitHandle {
    /// The sandbox's pid (soon the user's command).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Lets the init finish its set-up and exec the command. Waits until the
    /// exec happened (the supervisor closes the sync socket then). Returns
    /// the supervisor and, for `-t`, the master of the sandbox's pty.
    pub fn go(self, go: &Go) -> Result<(Child, Option<OwnedFd>)> {
        let body = serde_json::to_vec(go)?;
        nix::unistd::write(&self.sock, &body).context("releasing the sandbox init")?;
        Ok((self.child, receive_master(&self.sock)))
    }

    /// Kills the init before it ran anything.
    pub fn abort(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The set-up socket between the CLI and a process it starts: ours, and
/// theirs to leave open across exec (its number goes in `WARREN_SYNC_FD`).
pub fn sync_pair() -> Result<(OwnedFd, OwnedFd)> {
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .context("socketpair for the sandbox's set-up")?;
    // The CLI is single-threaded, so no other spawn can inherit this fd while
    // its close-on-exec flag is off.
    fcntl(theirs.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::empty())).context("F_SETFD")?;
    Ok((ours, theirs))
}

/// The child's end of [`sync_pair`], taken over (and made close-on-exec).
pub fn adopt_sync() -> Result<OwnedFd> {
    let raw: i32 = std::env::var(SYNC_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .context("this subcommand is internal to warren (WARREN_SYNC_FD is missing)")?;
    std::env::remove_var(SYNC_ENV);
    // The fd number comes from our parent, which left it open for us;
    // owning it makes sure it is closed on every path.
    let sync = crate::sys::fd::adopt_inherited(raw).context("WARREN_SYNC_FD is not an open fd")?;
    fcntl(sync.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).context("F_SETFD")?;
    Ok(sync)
}

/// Reads `sock` until it closes, keeping the pty master a sandbox sent.
pub fn receive_master(sock: &OwnedFd) -> Option<OwnedFd> {
    let mut master = None;
    let mut buf = [0u8; 16];
    while let Ok((n, mut fds)) = scm::recv_with_fds(sock, &mut buf) {
        if n == 0 {
            break;
        }
        if &buf[..n] == pty::MASTER && !fds.is_empty() {
            master = Some(fds.swap_remove(0));
        }
    }
    master
}

/// Init side: the body of `warren __init`. Returns only on failure.
pub fn main(net_host: bool, status_file: Option<&std::path::Path>, cmd: &[String]) -> i32 {
    match run(net_host, status_file, cmd) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("warren: {e:#}");
            EXIT_ABORTED
        }
    }
}

/// Unshares a new user namespace and the namespaces in `more`, and maps
/// our uid and gid to root in it, as `unshare -r` does: root inside, the
/// caller outside, no privilege needed.
pub fn unshare_as_root(more: CloneFlags) -> Result<()> {
    let uid = nix::unistd::getuid();
    let gid = nix::unistd::getgid();
    unshare(CloneFlags::CLONE_NEWUSER | more)
        .context("unshare (user namespaces must be enabled for unprivileged users)")?;
    std::fs::write("/proc/self/setgroups", "deny").context("writing /proc/self/setgroups")?;
    std::fs::write("/proc/self/uid_map", format!("0 {uid} 1\n")).context("writing uid_map")?;
    std::fs::write("/proc/self/gid_map", format!("0 {gid} 1\n")).context("writing gid_map")?;
    Ok(())
}

fn run(net_host: bool, status_file: Option<&std::path::Path>, cmd: &[String]) -> Result<i32> {
    if cmd.is_empty() {
        bail!("no command given");
    }
    let sync = adopt_sync()?;
    // Opened now: the runtime directory is covered once the mounts are made.
    let status = match status_file {
        Some(p) => {
            Some(std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?)
        }
        None => None,
    };
    nix::unistd::setsid().context("setsid")?;
    unshare_as_root(CloneFlags::CLONE_NEWNS)?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .context("making mounts private")?;
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .context("socketpair for the sandbox")?;
    match fork_single_threaded().context("fork")? {
        Forked::Child => {
            drop(ours);
            drop(sync);
            std::process::exit(report(namespaces(net_host, theirs, cmd)));
        }
        Forked::Parent(child) => {
            drop(theirs);
            let code = supervise(sync, ours, child, net_host)?;
            // For `ps -a`, `inspect` and `wait` (daemon::exited).
            if let Some(mut f) = status {
                use std::io::Write;
                let _ = writeln!(f, "{code}");
            }
            Ok(code)
        }
    }
}

/// An init stage's result as its exit status, the error printed.
fn report(result: Result<i32>) -> i32 {
    result.unwrap_or_else(|e| {
        eprintln!("warren: {e:#}");
        EXIT_ABORTED
    })
}

/// Waits for `child` and returns its status (128+N for a signal).
fn wait_status(child: Pid) -> Result<i32> {
    loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => bail!("waiting for the sandbox: {e}"),
        }
    }
}

/// The supervisor: relays `ready` and [`Go`], makes the mounts, waits.
fn supervise(sync: OwnedFd, link: OwnedFd, child: Pid, net_host: bool) -> Result<i32> {
    let abandon = |why: &str| -> Result<i32> {
        let _ = kill(child, Signal::SIGKILL);
        let _ = waitpid(child, None);
        bail!("{why}")
    };
    let mut buf = vec![0u8; 64 * 1024];
    let n = nix::unistd::read(link.as_raw_fd(), &mut buf).unwrap_or(0);
    let Some(pid1) = std::str::from_utf8(&buf[..n])
        .ok()
        .and_then(|m| m.strip_prefix("ready "))
        .and_then(|p| p.parse::<i32>().ok())
    else {
        return abandon("the sandbox could not create its namespaces");
    };
    nix::unistd::write(&sync, format!("ready {pid1}").as_bytes()).context("signalling ready")?;
    let n = nix::unistd::read(sync.as_raw_fd(), &mut buf).unwrap_or(0);
    if n == 0 {
        // The CLI gave up (the attach failed and it reported why).
        let _ = kill(child, Signal::SIGKILL);
        let _ = waitpid(child, None);
        return Ok(EXIT_ABORTED);
    }
    let go: Go = match serde_json::from_slice(&buf[..n]) {
        Ok(go) => go,
        Err(e) => return abandon(&format!("parsing the go message: {e}")),
    };
    if let Err(e) = mounts::prepare(&go, net_host).and_then(|()| mounts::proc_of(pid1)) {
        return abandon(&format!("{e:#}"));
    }
    nix::unistd::write(&link, &buf[..n]).context("releasing the sandbox")?;
    // The link closes when the sandbox execs its command (or fails to); a
    // `-t` sandbox sends its pty's master first, for the CLI.
    while let Ok((n, fds)) = scm::recv_with_fds(&link, &mut buf) {
        if n == 0 {
            break;
        }
        if &buf[..n] == pty::MASTER && !fds.is_empty() {
            scm::send_with_fds(&sync, pty::MASTER, &fds).context("passing the pty on")?;
        }
    }
    drop(link);
    drop(sync);
    wait_status(child)
}

/// The second stage: the inner user namespace with network, uts and pid
/// namespaces of its own; forks the sandbox's PID 1, tells the supervisor
/// its pid, and passes on its status.
fn namespaces(net_host: bool, link: OwnedFd, cmd: &[String]) -> Result<i32> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).context("PR_SET_PDEATHSIG")?;
    let mut flags = CloneFlags::CLONE_NEWPID;
    if !net_host {
        flags |= CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWUTS;
    }
    unshare_as_root(flags)?;
    match fork_single_threaded().context("fork of the sandbox's init")? {
        Forked::Child => std::process::exit(report(sandbox(net_host, link, cmd))),
        Forked::Parent(pid1) => {
            nix::unistd::write(&link, format!("ready {pid1}").as_bytes())
                .context("signalling ready")?;
            drop(link);
            wait_status(pid1)
        }
    }
}

/// The sandbox's PID 1: once released, its own locked copy of the mounts,
/// its hostname, its pty, then the command under [`pid1`].
fn sandbox(net_host: bool, link: OwnedFd, cmd: &[String]) -> Result<i32> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).context("PR_SET_PDEATHSIG")?;
    nix::unistd::setsid().context("setsid")?;
    let mut buf = vec![0u8; 64 * 1024];
    let n = nix::unistd::read(link.as_raw_fd(), &mut buf).unwrap_or(0);
    if n == 0 {
        return Ok(EXIT_ABORTED);
    }
    let go: Go = serde_json::from_slice(&buf[..n]).context("parsing the go message")?;
    if !net_host {
        if let Some(h) = &go.hostname {
            nix::unistd::sethostname(h).context("sethostname")?;
        }
    }
    // The copy that locks the supervisor's mounts (see the module doc).
    unshare(CloneFlags::CLONE_NEWNS).context("unshare(CLONE_NEWNS)")?;
    let terminal = if go.tty {
        let (master, slave) = pty::allocate()?;
        scm::send_with_fds(&link, pty::MASTER, &[master]).context("sending the pty")?;
        Some(pid1::Terminal { slave })
    } else {
        None
    };
    if let Some(dir) = &go.workdir {
        std::env::set_current_dir(dir)
            .with_context(|| format!("-w {}: cannot enter it in the sandbox", dir.display()))?;
    }
    if let Some(writable) = &go.read_only {
        mounts::restrict_command(writable)?;
    }
    let single = SingleThreaded::check()?;
    pid1::run(&single, terminal, Some(link), || exec_reporting(cmd))
}

/// Execs `cmd`; returns only on failure, with Docker's status for it (127
/// not found, 126 not runnable), the error printed.
pub fn exec_reporting(cmd: &[String]) -> i32 {
    report(exec(cmd))
}

fn exec(cmd: &[String]) -> Result<i32> {
    let args: Vec<CString> = cmd
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .context("command contains a NUL byte")?;
    let err = match nix::unistd::execvp(&args[0], &args) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    eprintln!("warren: cannot run {:?}: {err}", cmd[0]);
    Ok(if err == nix::errno::Errno::ENOENT {
        127
    } else {
        126
    })
}
