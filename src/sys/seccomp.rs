//! seccomp allowlists: the system calls warren's long-lived processes use.
//!
//! Two profiles, built with `seccompiler` (rust-vmm's BPF compiler, the one
//! Firecracker and Cloud Hypervisor use) and installed with
//! `SECCOMP_FILTER_FLAG_TSYNC`, so every thread of the process has them and
//! every thread or child made later inherits them:
//!
//! - [`Profile::Daemon`]: the daemon after setup. Threads only (`clone`
//!   must carry `CLONE_THREAD`; `clone3`, whose flags a filter cannot read,
//!   answers ENOSYS so glibc falls back to `clone`), no `execve`, no
//!   `setns`/`unshare`/`mount`, no `ptrace`, no `bpf`, no keyrings; sockets
//!   only of the families it uses (unix, IPv4, IPv6); `ioctl` only with the
//!   requests it makes (non-blocking and close-on-exec, terminal checks,
//!   and on TAP fds the TUN requests, including the offload ones a faster
//!   frame path will use). The whole read/write family (vectored, `mmsg`,
//!   `splice`) is allowed, so frame I/O can change without touching this.
//! - [`Profile::Helper`]: the helper spawner and the setns helpers it
//!   execs (the filter survives `execve`): what the daemon may do, plus
//!   `fork`/`execve`, `setns`, netlink sockets, `TUNSETIFF` and
//!   `NS_GET_USERNS`.
//!
//! Anything else kills the whole process (`SECCOMP_RET_KILL_PROCESS`): the
//! kernel records it in the audit log (`dmesg`: `audit: type=1326 ...
//! sig=31 ... syscall=N`) and the process ends with SIGSYS. [`Mode::Log`]
//! (`WARREN_SECCOMP=log`) allows and logs instead, to find what a change
//! needs; [`Mode::Off`] installs nothing. The lists were found by running
//! the whole integration suite under `strace -f` (see
//! `docs/security.md`), then completed from reading the code paths.

use std::collections::BTreeMap;

use anyhow::{anyhow, Context, Result};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

/// What a call outside the allowlist does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Kill the process (the default).
    Kill,
    /// Allow it and write an audit record (`dmesg`), to debug the list.
    Log,
    /// No filter at all.
    Off,
}

impl Mode {
    pub fn parse(s: &str) -> Result<Mode> {
        match s {
            "kill" | "" => Ok(Mode::Kill),
            "log" => Ok(Mode::Log),
            "off" => Ok(Mode::Off),
            _ => Err(anyhow!("unknown seccomp mode {s:?} (use kill, log or off)")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Kill => "kill",
            Mode::Log => "log",
            Mode::Off => "off",
        }
    }
}

/// Which process the filter is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Daemon,
    Helper,
}

/// Installs `profile`'s filter on every thread of this process (and sets
/// `no_new_privs`, which seccomp requires).
pub fn apply(profile: Profile, mode: Mode) -> Result<()> {
    if mode == Mode::Off {
        return Ok(());
    }
    let (allow, enosys) = programs(profile, mode)?;
    // The ENOSYS filter first: filters are evaluated together and the most
    // severe answer wins, so clone3 gets ENOSYS (not allowed, not killed).
    seccompiler::apply_filter_all_threads(&enosys).context("installing the ENOSYS filter")?;
    seccompiler::apply_filter_all_threads(&allow).context("installing the allowlist")?;
    Ok(())
}

/// The two BPF programs of `profile`: the allowlist, and the one that
/// answers ENOSYS to `clone3`.
pub fn programs(profile: Profile, mode: Mode) -> Result<(BpfProgram, BpfProgram)> {
    let arch = std::env::consts::ARCH
        .try_into()
        .map_err(|e| anyhow!("seccomp: {e}"))?;
    let mismatch = match mode {
        Mode::Log => SeccompAction::Log,
        _ => SeccompAction::KillProcess,
    };
    let allow = SeccompFilter::new(rules(profile)?, mismatch, SeccompAction::Allow, arch)
        .map_err(|e| anyhow!("seccomp filter: {e}"))?;
    let mut nosys = BTreeMap::new();
    nosys.insert(libc::SYS_clone3, vec![]);
    let enosys = SeccompFilter::new(
        nosys,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .map_err(|e| anyhow!("seccomp filter: {e}"))?;
    Ok((
        allow.try_into().map_err(|e| anyhow!("seccomp: {e}"))?,
        enosys.try_into().map_err(|e| anyhow!("seccomp: {e}"))?,
    ))
}

/// Calls every process may make, whatever its arguments.
const COMMON: &[libc::c_long] = &[
    // memory
    libc::SYS_brk,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_mprotect,
    libc::SYS_madvise,
    // the read/write family, on any fd
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_preadv,
    libc::SYS_pwritev,
    libc::SYS_preadv2,
    libc::SYS_pwritev2,
    libc::SYS_recvfrom,
    libc::SYS_sendto,
    libc::SYS_recvmsg,
    libc::SYS_sendmsg,
    libc::SYS_recvmmsg,
    libc::SYS_sendmmsg,
    libc::SYS_splice,
    libc::SYS_tee,
    libc::SYS_lseek,
    libc::SYS_close,
    libc::SYS_close_range,
    libc::SYS_dup,
    libc::SYS_dup3,
    libc::SYS_fcntl,
    libc::SYS_pipe2,
    // files (Landlock decides which)
    libc::SYS_openat,
    libc::SYS_newfstatat,
    libc::SYS_fstat,
    libc::SYS_statx,
    libc::SYS_statfs,
    libc::SYS_fstatfs,
    libc::SYS_getdents64,
    libc::SYS_readlinkat,
    libc::SYS_faccessat,
    libc::SYS_faccessat2,
    libc::SYS_mkdirat,
    libc::SYS_unlinkat,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_fchmod,
    libc::SYS_fchmodat,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    libc::SYS_ftruncate,
    libc::SYS_flock,
    libc::SYS_getcwd,
    // sockets (families restricted below)
    libc::SYS_socketpair,
    libc::SYS_bind,
    libc::SYS_listen,
    libc::SYS_accept,
    libc::SYS_accept4,
    libc::SYS_connect,
    libc::SYS_getsockname,
    libc::SYS_getpeername,
    libc::SYS_setsockopt,
    libc::SYS_getsockopt,
    libc::SYS_shutdown,
    // waiting
    libc::SYS_epoll_create1,
    libc::SYS_epoll_ctl,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_pwait2,
    libc::SYS_eventfd2,
    libc::SYS_ppoll,
    libc::SYS_futex,
    libc::SYS_sched_yield,
    libc::SYS_nanosleep,
    libc::SYS_clock_nanosleep,
    libc::SYS_clock_gettime,
    libc::SYS_clock_getres,
    libc::SYS_gettimeofday,
    libc::SYS_timerfd_create,
    libc::SYS_timerfd_settime,
    // signals
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    // threads and identity
    libc::SYS_set_robust_list,
    libc::SYS_rseq,
    libc::SYS_set_tid_address,
    libc::SYS_sched_getaffinity,
    libc::SYS_getrandom,
    libc::SYS_getpid,
    libc::SYS_gettid,
    libc::SYS_getppid,
    libc::SYS_getuid,
    libc::SYS_geteuid,
    libc::SYS_getgid,
    libc::SYS_getegid,
    libc::SYS_getresuid,
    libc::SYS_getresgid,
    libc::SYS_getgroups,
    libc::SYS_uname,
    libc::SYS_getrlimit,
    libc::SYS_prlimit64,
    libc::SYS_getrusage,
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_restart_syscall,
    // processes, through pidfds
    libc::SYS_pidfd_open,
    libc::SYS_pidfd_send_signal,
    libc::SYS_waitid,
    libc::SYS_wait4,
    // sandbox processes' start times and owners are read from /proc; the
    // TAP fds' memory maps are never touched
    libc::SYS_membarrier,
];

/// The x86_64 legacy forms of calls above (glibc and Rust std still use a
/// few of them).
#[cfg(target_arch = "x86_64")]
const COMMON_LEGACY: &[libc::c_long] = &[
    libc::SYS_open,
    libc::SYS_stat,
    libc::SYS_lstat,
    libc::SYS_access,
    libc::SYS_readlink,
    libc::SYS_mkdir,
    libc::SYS_rmdir,
    libc::SYS_unlink,
    libc::SYS_rename,
    libc::SYS_chmod,
    libc::SYS_dup2,
    libc::SYS_pipe,
    libc::SYS_poll,
    libc::SYS_epoll_wait,
    libc::SYS_epoll_create,
    libc::SYS_arch_prctl,
    libc::SYS_time,
];
#[cfg(not(target_arch = "x86_64"))]
const COMMON_LEGACY: &[libc::c_long] = &[];

/// Only the helper spawner and the helpers.
const HELPER_ONLY: &[libc::c_long] = &[
    libc::SYS_execve,
    libc::SYS_execveat,
    libc::SYS_setns,
    libc::SYS_setitimer,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_alarm,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_vfork,
];

const AF_UNIX: u64 = libc::AF_UNIX as u64;
const AF_INET: u64 = libc::AF_INET as u64;
const AF_INET6: u64 = libc::AF_INET6 as u64;
const AF_NETLINK: u64 = libc::AF_NETLINK as u64;

/// `ioctl` requests, from `<asm-generic/ioctls.h>`, `<linux/if_tun.h>` and
/// `<linux/nsfs.h>` (`_IOW('T', n, int)` = 0x400454nn, `_IOR` = 0x800454nn).
pub mod ioctl {
    pub const TCGETS: u64 = 0x5401;
    pub const TIOCGWINSZ: u64 = 0x5413;
    pub const FIONREAD: u64 = 0x541b;
    pub const FIONBIO: u64 = 0x5421;
    pub const FIONCLEX: u64 = 0x5450;
    pub const FIOCLEX: u64 = 0x5451;
    pub const TUNSETIFF: u64 = 0x4004_54ca;
    pub const TUNSETPERSIST: u64 = 0x4004_54cb;
    pub const TUNGETFEATURES: u64 = 0x8004_54cf;
    pub const TUNSETOFFLOAD: u64 = 0x4004_54d0;
    pub const TUNGETIFF: u64 = 0x8004_54d2;
    pub const TUNGETSNDBUF: u64 = 0x8004_54d3;
    pub const TUNSETSNDBUF: u64 = 0x4004_54d4;
    pub const TUNGETVNETHDRSZ: u64 = 0x8004_54d7;
    pub const TUNSETVNETHDRSZ: u64 = 0x4004_54d8;
    pub const NS_GET_USERNS: u64 = 0xb701;
}

/// What the daemon may ask of `ioctl`: fd flags, terminal checks (logging),
/// and the TUN requests on TAP fds it was handed (not `TUNSETIFF`: it never
/// makes a TAP itself).
const DAEMON_IOCTLS: &[u64] = &[
    ioctl::TCGETS,
    ioctl::TIOCGWINSZ,
    ioctl::FIONREAD,
    ioctl::FIONBIO,
    ioctl::FIONCLEX,
    ioctl::FIOCLEX,
    ioctl::TUNSETPERSIST,
    ioctl::TUNGETFEATURES,
    ioctl::TUNSETOFFLOAD,
    ioctl::TUNGETIFF,
    ioctl::TUNGETSNDBUF,
    ioctl::TUNSETSNDBUF,
    ioctl::TUNGETVNETHDRSZ,
    ioctl::TUNSETVNETHDRSZ,
];

/// The helper's, in addition: making TAPs and finding a netns's owner.
const HELPER_IOCTLS: &[u64] = &[ioctl::TUNSETIFF, ioctl::NS_GET_USERNS];

/// `prctl` options in use: thread names (std, tokio), the spawner's parent
/// death signal, and reading back `no_new_privs`.
const PRCTLS: &[u64] = &[
    libc::PR_SET_NAME as u64,
    libc::PR_GET_NAME as u64,
    libc::PR_SET_PDEATHSIG as u64,
    libc::PR_GET_PDEATHSIG as u64,
    libc::PR_GET_NO_NEW_PRIVS as u64,
    libc::PR_SET_NO_NEW_PRIVS as u64,
    libc::PR_GET_DUMPABLE as u64,
    libc::PR_CAPBSET_READ as u64,
];

fn eq(arg: u8, value: u64) -> Result<SeccompCondition> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, value)
        .map_err(|e| anyhow!("seccomp condition: {e}"))
}

/// One rule per value: the call is allowed when argument `arg` is any of them.
fn any_of(arg: u8, values: &[u64]) -> Result<Vec<SeccompRule>> {
    values
        .iter()
        .map(|&v| SeccompRule::new(vec![eq(arg, v)?]).map_err(|e| anyhow!("seccomp rule: {e}")))
        .collect()
}

fn rules(profile: Profile) -> Result<BTreeMap<i64, Vec<SeccompRule>>> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for &nr in COMMON.iter().chain(COMMON_LEGACY) {
        rules.insert(nr, vec![]);
    }
    let me = std::process::id() as u64;
    // abort() signals the calling thread; nothing else is signalled that way.
    rules.insert(libc::SYS_tgkill, any_of(0, &[me])?);
    rules.insert(libc::SYS_prctl, any_of(0, PRCTLS)?);
    match profile {
        Profile::Daemon => {
            rules.insert(libc::SYS_socket, any_of(0, &[AF_UNIX, AF_INET, AF_INET6])?);
            rules.insert(libc::SYS_ioctl, any_of(1, DAEMON_IOCTLS)?);
            let thread = libc::CLONE_THREAD as u64;
            rules.insert(
                libc::SYS_clone,
                vec![SeccompRule::new(vec![SeccompCondition::new(
                    0,
                    SeccompCmpArgLen::Qword,
                    SeccompCmpOp::MaskedEq(thread),
                    thread,
                )
                .map_err(|e| anyhow!("seccomp condition: {e}"))?])
                .map_err(|e| anyhow!("seccomp rule: {e}"))?],
            );
            // Answered ENOSYS by the second filter; allowed here so that
            // answer wins.
            rules.insert(libc::SYS_clone3, vec![]);
        }
        Profile::Helper => {
            rules.insert(
                libc::SYS_socket,
                any_of(0, &[AF_UNIX, AF_INET, AF_INET6, AF_NETLINK])?,
            );
            let ioctls: Vec<u64> = DAEMON_IOCTLS.iter().chain(HELPER_IOCTLS).copied().collect();
            rules.insert(libc::SYS_ioctl, any_of(1, &ioctls)?);
            rules.insert(libc::SYS_clone, vec![]);
            rules.insert(libc::SYS_clone3, vec![]);
            for &nr in HELPER_ONLY {
                rules.insert(nr, vec![]);
            }
        }
    }
    Ok(rules)
}
