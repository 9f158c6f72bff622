//! The first process of a sandbox made by `warren run`.
//!
//! The CLI ([`spawn`]) starts `warren __init` with one end of a
//! SOCK_SEQPACKET socketpair left open across exec (its number in
//! `WARREN_SYNC_FD`). The init ([`main`]):
//!
//! 1. `setsid()` when detached (`-d`), so it outlives the CLI's terminal;
//! 2. unshares user, network, mount and uts namespaces (user and mount only
//!    for `--network host`) and maps the caller's uid and gid to root
//!    inside, as `unshare -r` and podman do;
//! 3. sends `ready`, and waits for one [`Go`] message: the CLI has meanwhile
//!    asked the daemon to attach the sandbox's pid, and forwards what the
//!    daemon generated (hostname, files to bind-mount);
//! 4. makes its mounts private, bind-mounts `/etc/hosts` and `/etc/hostname`,
//!    sets the hostname, covers warren's own state and runtime directories
//!    with an empty read-only tmpfs, and execs the command. The pid stays
//!    the same, so the daemon's pidfd on it follows the user's command.
//!
//! The cover matters: the sandbox's root is the user's own uid outside, so
//! without it the daemon's socket (mode 0600, the user's) would be open to
//! the sandbox, and with it the whole API, as would the network
//! definitions on disk. The bind mounts are made first, so the generated
//! files inside the runtime directory stay visible at their targets.
//!
//! If the CLI goes away before sending `Go` (the attach failed), the init
//! exits quietly with status 125 before running anything.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::socket::{setsockopt, socketpair, sockopt, AddressFamily, SockFlag, SockType};
use nix::sys::time::TimeVal;
use serde::{Deserialize, Serialize};

const READY: &[u8] = b"ready";
const SYNC_ENV: &str = "WARREN_SYNC_FD";
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
    pub child: Child,
    sock: OwnedFd,
}

/// Spawns `exe __init` for `cmd`. `stdio` gives the child's stdin, stdout
/// and stderr. Returns once the namespaces exist (the init said `ready`).
pub fn spawn(
    exe: &std::path::Path,
    cmd: &[String],
    mode: NetMode,
    detach: bool,
    stdio: [Stdio; 3],
) -> Result<InitHandle> {
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .context("socketpair for the sandbox init")?;
    // The CLI is single-threaded, so no other spawn can inherit this fd while
    // its close-on-exec flag is off.
    fcntl(theirs.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::empty())).context("F_SETFD")?;
    let [stdin, stdout, stderr] = stdio;
    let mut command = Command::new(exe);
    command.arg("__init");
    if detach {
        command.arg("--detach");
    }
    if mode == NetMode::Host {
        command.arg("--net-host");
    }
    command
        .arg("--")
        .args(cmd)
        .env(SYNC_ENV, theirs.as_raw_fd().to_string())
        .stdin(stdin)
        .stdout(stdout)
        .stderr(stderr);
    let child = command.spawn().context("starting the sandbox init")?;
    drop(theirs);
    let timeout = TimeVal::new(10, 0);
    setsockopt(&ours, sockopt::ReceiveTimeout, &timeout).context("SO_RCVTIMEO")?;
    let mut handle = InitHandle { child, sock: ours };
    let mut buf = [0u8; 64];
    let n = nix::unistd::read(handle.sock.as_raw_fd(), &mut buf).unwrap_or(0);
    if &buf[..n] != READY {
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
    /// The sandbox's pid (the init, soon the user's command).
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Lets the init finish its set-up and exec the command. Waits until the
    /// exec happened (the sync socket closes on exec).
    pub fn go(self, go: &Go) -> Result<Child> {
        let body = serde_json::to_vec(go)?;
        nix::unistd::write(&self.sock, &body).context("releasing the sandbox init")?;
        let mut buf = [0u8; 16];
        let _ = nix::unistd::read(self.sock.as_raw_fd(), &mut buf);
        Ok(self.child)
    }

    /// Kills the init before it ran anything.
    pub fn abort(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Init side: the body of `warren __init`. Returns only on failure.
pub fn main(detach: bool, net_host: bool, cmd: &[String]) -> i32 {
    match run(detach, net_host, cmd) {
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

fn run(detach: bool, net_host: bool, cmd: &[String]) -> Result<i32> {
    if cmd.is_empty() {
        bail!("no command given");
    }
    let raw: i32 = std::env::var(SYNC_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .context("__init is internal to warren run (WARREN_SYNC_FD is missing)")?;
    std::env::remove_var(SYNC_ENV);
    // The fd number comes from our parent, which left it open for us;
    // owning it makes sure it is closed on every path.
    let sync = crate::sys::fd::adopt_inherited(raw).context("WARREN_SYNC_FD is not an open fd")?;
    fcntl(sync.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).context("F_SETFD")?;
    if detach {
        nix::unistd::setsid().context("setsid")?;
    }
    let mut flags = CloneFlags::CLONE_NEWNS;
    if !net_host {
        flags |= CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWUTS;
    }
    unshare_as_root(flags)?;
    nix::unistd::write(&sync, READY).context("signalling ready")?;
    let mut buf = vec![0u8; 64 * 1024];
    let n = nix::unistd::read(sync.as_raw_fd(), &mut buf).unwrap_or(0);
    if n == 0 {
        // The CLI gave up (the attach failed and it reported why).
        return Ok(EXIT_ABORTED);
    }
    let go: Go = serde_json::from_slice(&buf[..n]).context("parsing the go message")?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .context("making mounts private")?;
    if !net_host {
        for (src, dst) in &go.binds {
            mount(Some(src), dst, None::<&str>, MsFlags::MS_BIND, None::<&str>).with_context(
                || format!("bind-mounting {} over {}", src.display(), dst.display()),
            )?;
        }
        if let Some(h) = &go.hostname {
            nix::unistd::sethostname(h).context("sethostname")?;
        }
    }
    for dir in go.hide.iter().filter(|d| d.is_dir()) {
        mount(
            Some("warren-hidden"),
            dir,
            Some("tmpfs"),
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("size=4k,mode=0555"),
        )
        .with_context(|| format!("hiding {} from the sandbox", dir.display()))?;
    }
    exec(cmd)
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
