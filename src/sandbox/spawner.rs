//! The helper spawner: the one process that may start setns helpers.
//!
//! The daemon confines itself (see `crate::daemon::confine`): its seccomp
//! filter has no `execve`, no `setns` and no `fork`, and its Landlock domain
//! keeps it out of the user's files. A process inside a Landlock domain
//! cannot open `/proc/PID/ns/*` of a process outside it, nor `setns` through
//! a pidfd (the kernel treats both as ptrace-mode access, EACCES / EPERM), and
//! sandboxes are made by the CLI, outside any domain. So the setns helper
//! must not be started by the confined daemon itself.
//!
//! Instead, before it confines itself, the daemon starts this small process
//! (`warren __helper-spawner`, single-threaded) with one end of a
//! SOCK_SEQPACKET socketpair as its stdin. For each attach, the daemon makes
//! the helper's socketpair as before and sends *one end* here over
//! SCM_RIGHTS ([`Spawner::spawn`]); the spawner starts
//! `warren __netns-helper` with that end as its stdin and stdout, and the
//! daemon talks to the helper directly. The spawner takes no arguments from
//! the daemon: a compromised daemon can make it run the helper, nothing else.
//!
//! The spawner is outside the daemon's Landlock domain but has a seccomp
//! filter of its own ([`crate::sys::seccomp::Profile::Helper`]), which the
//! helpers inherit across exec. It dies with the daemon: it reads EOF when
//! the daemon's end closes (however the daemon died), and it asked the
//! kernel for SIGKILL when its parent goes. The daemon watches it through a
//! pidfd and stops if it dies (the next daemon takes every sandbox over).

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};

use anyhow::{bail, Context, Result};
use nix::sys::socket::{setsockopt, socketpair, sockopt, AddressFamily, SockFlag, SockType};
use nix::sys::time::TimeVal;

use crate::sys::seccomp;

/// The one byte each spawn request carries (with one fd attached).
const SPAWN: &[u8] = b"h";

/// The daemon's handle on its spawner.
pub struct Spawner {
    sock: OwnedFd,
    pidfd: Arc<OwnedFd>,
    pid: u32,
}

static SPAWNER: OnceLock<Spawner> = OnceLock::new();

/// Starts the spawner from `exe` and installs it for [`installed`]. Call it
/// while the daemon is still single-threaded and unconfined.
pub fn start(exe: &Path, seccomp_mode: seccomp::Mode) -> Result<&'static Spawner> {
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .context("socketpair for the helper spawner")?;
    let child = Command::new(exe)
        .arg("__helper-spawner")
        .arg("--parent")
        .arg(std::process::id().to_string())
        .arg("--seccomp")
        .arg(seccomp_mode.as_str())
        .stdin(Stdio::from(theirs))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("spawning {} __helper-spawner", exe.display()))?;
    let pidfd = crate::sys::pidfd::open(child.id() as i32).context("pidfd of the spawner")?;
    let spawner = Spawner {
        sock: ours,
        pidfd: Arc::new(pidfd),
        pid: child.id(),
    };
    // The child is reaped when the daemon exits; it must outlive this handle.
    std::mem::forget(child);
    if SPAWNER.set(spawner).is_err() {
        bail!("the helper spawner was started twice");
    }
    Ok(SPAWNER.get().expect("just set"))
}

/// The daemon's spawner, once [`start`] ran.
pub fn installed() -> Option<&'static Spawner> {
    SPAWNER.get()
}

impl Spawner {
    /// Has the spawner start one `warren __netns-helper` whose stdin and
    /// stdout are `helper_end`. The caller talks to the helper over the
    /// other end; if the helper never starts, that end reads EOF.
    pub fn spawn(&self, helper_end: OwnedFd) -> Result<()> {
        crate::sys::scm::send_with_fds(&self.sock, SPAWN, &[helper_end])
            .context("handing the helper to the spawner (is it gone? see the daemon log)")
    }

    /// A pidfd of the spawner process, readable once it exited.
    pub fn pidfd(&self) -> Arc<OwnedFd> {
        self.pidfd.clone()
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }
}

/// Spawner side: the body of `warren __helper-spawner`. Returns the exit code.
pub fn main(parent: i32, mode: seccomp::Mode) -> i32 {
    match serve(parent, mode) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("warren __helper-spawner: {e:#}");
            1
        }
    }
}

fn serve(parent: i32, mode: seccomp::Mode) -> Result<()> {
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .context("prctl(PR_SET_PDEATHSIG)")?;
    // The daemon may have died before the line above: then we were
    // re-parented and must not serve anyone.
    if nix::unistd::getppid().as_raw() != parent {
        bail!("the daemon (pid {parent}) is gone");
    }
    cloexec_inherited();
    let exe = std::env::current_exe().context("locating the warren binary")?;
    let stdin = std::io::stdin();
    let sock = stdin.as_fd().try_clone_to_owned().context("dup stdin")?;
    // Wake up now and then to reap helpers that exited.
    setsockopt(&sock, sockopt::ReceiveTimeout, &TimeVal::new(1, 0)).context("SO_RCVTIMEO")?;
    seccomp::apply(seccomp::Profile::Helper, mode).context("seccomp (helper profile)")?;
    let mut children: Vec<Child> = Vec::new();
    let mut buf = [0u8; 16];
    loop {
        children.retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_)) | Err(_)));
        let (len, mut fds) = match crate::sys::scm::recv_with_fds(&sock, &mut buf) {
            Ok(x) => x,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("reading from the daemon"),
        };
        if len == 0 && fds.is_empty() {
            // The daemon is gone.
            return Ok(());
        }
        if &buf[..len] != SPAWN || fds.len() != 1 {
            eprintln!(
                "warren __helper-spawner: ignoring a malformed request ({len} bytes, {} fds)",
                fds.len()
            );
            continue;
        }
        let end = fds.pop().expect("one fd");
        match spawn_helper(&exe, end) {
            Ok(child) => children.push(child),
            // The helper's end is closed: the daemon reads EOF and reports it.
            Err(e) => eprintln!("warren __helper-spawner: {e:#}"),
        }
    }
}

/// Marks every fd above stderr close-on-exec: a helper must not inherit
/// what the daemon's own parent left open to it (a shell's pipes).
fn cloexec_inherited() {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    for fd in fds {
        // The directory's own fd is gone by now: EBADF, ignored.
        let _ = fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    }
}

fn spawn_helper(exe: &Path, end: OwnedFd) -> Result<Child> {
    let out = end.try_clone().context("dup helper socket")?;
    Command::new(exe)
        .arg("__netns-helper")
        .stdin(Stdio::from(end))
        .stdout(Stdio::from(out))
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("spawning {} __netns-helper", exe.display()))
}
