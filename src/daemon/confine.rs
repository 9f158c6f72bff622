//! How the daemon confines itself, in three layers, before its first thread.
//!
//! 1. **`no_new_privs`** ([`no_new_privs`]), first: nothing the daemon's
//!    processes execute can gain privileges through a setuid or
//!    file-capability binary; seccomp and Landlock require it too.
//! 2. **The helper spawner** (`crate::sandbox::spawner`) is started next,
//!    *outside* the confinement below: a Landlock domain blocks opening
//!    `/proc/PID/ns/*` of, and `setns` through a pidfd into, processes
//!    outside it (ptrace-mode access), and sandboxes are made outside it.
//!    The spawner execs only `warren __netns-helper`, under its own seccomp
//!    filter.
//! 3. **[`confine`]**: Landlock, then seccomp.
//!    - Landlock (best effort: whatever the kernel supports, up to ABI 7;
//!      nothing on kernels without it) limits the filesystem to read-write
//!      in the state and runtime directories and read-only in `/proc`
//!      (sandboxes' start times, the route table, sysctls) and `/etc` (and
//!      the real directory of `/etc/resolv.conf`, for the DNS forwarder).
//!      With ABI 6 it also scopes abstract unix sockets: the daemon cannot
//!      connect to one made outside it (a desktop session's buses). Signals
//!      are not scoped: `rm -f` kills a sandbox's init.
//!    - seccomp ([`crate::sys::seccomp::Profile::Daemon`]): an allowlist of
//!      the system calls the daemon makes, on every thread (TSYNC); anything
//!      else kills the process. No `execve`, `setns`, `fork`, `ptrace`,
//!      `mount`, `bpf`, `keyctl`.
//!
//! Escape hatches, for debugging only: `warren daemon --seccomp log` (or
//! `WARREN_SECCOMP=log`) logs unexpected calls to the audit log instead of
//! killing, `--seccomp off` installs no filter, `--landlock off`
//! (`WARREN_LANDLOCK=off`) skips Landlock. The daemon logs what it applied
//! at start (`confined`).

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use landlock::{
    path_beneath_rules, Access, AccessFs, CompatLevel, Compatible, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};

use crate::sys::seccomp;

/// The newest Landlock ABI this policy was written and tested for.
const LANDLOCK_ABI: ABI = ABI::V7;

/// What to apply.
#[derive(Debug, Clone)]
pub struct Options {
    pub seccomp: seccomp::Mode,
    pub landlock: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            seccomp: seccomp::Mode::Kill,
            landlock: true,
        }
    }
}

/// Sets `no_new_privs` for this process and everything it starts.
pub fn no_new_privs() -> Result<()> {
    nix::sys::prctl::set_no_new_privs().context("prctl(PR_SET_NO_NEW_PRIVS)")
}

/// Where the daemon may write (everything under them) and read.
#[derive(Debug, Clone)]
pub struct Filesystem {
    pub read_write: Vec<PathBuf>,
    pub read_only: Vec<PathBuf>,
}

impl Filesystem {
    /// The daemon's: its two directories, `/proc`, `/etc`, and where
    /// `/etc/resolv.conf` really lives when it is a symlink.
    pub fn daemon(state: &Path, runtime: &Path) -> Filesystem {
        let mut read_only = vec![PathBuf::from("/proc"), PathBuf::from("/etc")];
        if let Some(dir) = std::fs::canonicalize("/etc/resolv.conf")
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
        {
            if !read_only.iter().any(|r| dir.starts_with(r)) {
                read_only.push(dir);
            }
        }
        Filesystem {
            read_write: vec![state.to_path_buf(), runtime.to_path_buf()],
            read_only,
        }
    }
}

/// Applies Landlock (unless `opts.landlock` is false) and the daemon's
/// seccomp filter. Returns a one-line summary for the log.
pub fn confine(fs: &Filesystem, opts: &Options) -> Result<String> {
    no_new_privs()?;
    let landlock = if opts.landlock {
        restrict_filesystem(fs)
            .context("Landlock (`--landlock off` runs without it, for debugging)")?
    } else {
        "off".to_string()
    };
    seccomp::apply(seccomp::Profile::Daemon, opts.seccomp)
        .context("seccomp (`--seccomp off` runs without it, for debugging)")?;
    Ok(format!(
        "seccomp={} landlock={landlock}",
        opts.seccomp.as_str()
    ))
}

/// Restricts the calling thread (and the threads and children it makes
/// later) to `fs`. Call it while single-threaded: Landlock applies to the
/// calling thread only. Returns how much the kernel enforced.
pub fn restrict_filesystem(fs: &Filesystem) -> Result<String> {
    let abi = LANDLOCK_ABI;
    let status = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(abi))
        .map_err(|e| anyhow!("landlock: {e}"))?
        .scope(Scope::AbstractUnixSocket)
        .map_err(|e| anyhow!("landlock: {e}"))?
        .create()
        .map_err(|e| anyhow!("landlock: {e}"))?
        .add_rules(path_beneath_rules(&fs.read_write, AccessFs::from_all(abi)))
        .map_err(|e| anyhow!("landlock: {e}"))?
        .add_rules(path_beneath_rules(&fs.read_only, AccessFs::from_read(abi)))
        .map_err(|e| anyhow!("landlock: {e}"))?
        .restrict_self()
        .map_err(|e| anyhow!("landlock: {e}"))?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => "enforced".to_string(),
        RulesetStatus::PartiallyEnforced => "partial (older kernel)".to_string(),
        RulesetStatus::NotEnforced => "unavailable (kernel without Landlock)".to_string(),
    })
}
