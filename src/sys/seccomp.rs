//! seccomp allowlists: the system calls warren's long-lived processes use.
//!
//! Two profiles, built with `seccompiler` (rust-vmm's BPF compiler, the one
//! Firecracker and Cloud Hypervisor use) and installed ([`install`]) with
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
//! Anything else ends the whole process with SIGSYS. The helpers' filter
//! kills at once (`SECCOMP_RET_KILL_PROCESS`); the daemon's traps
//! (`SECCOMP_RET_TRAP`) into a handler that first writes the call's number
//! to the daemon's log (unprivileged users often cannot read `dmesg`), then
//! dies of SIGSYS the same way ([`install_sigsys_reporter`]). The
//! allowlist is installed with `SECCOMP_FILTER_FLAG_LOG`, so the kernel
//! also audits traps, not only kills (`dmesg`: `audit: type=1326 ...
//! syscall=N ... code=0x30000`). [`Mode::Log`] (`WARREN_SECCOMP=log`)
//! allows and audits instead, to find what a change needs; [`Mode::Off`]
//! installs nothing. The lists were found by running the whole
//! integration suite under `strace -f` (see `docs/security.md`), then
//! completed from reading the code paths.

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
    if profile == Profile::Daemon && mode == Mode::Kill {
        install_sigsys_reporter()?;
    }
    // The ENOSYS filter first: filters are evaluated together and the most
    // severe answer wins, so clone3 gets ENOSYS (not allowed, not killed).
    nix::sys::prctl::set_no_new_privs().context("prctl(PR_SET_NO_NEW_PRIVS)")?;
    install(&enosys, false).context("installing the ENOSYS filter")?;
    install(&allow, true).context("installing the allowlist")?;
    Ok(())
}

/// Installs `prog` on every thread (`SECCOMP_FILTER_FLAG_TSYNC`), with
/// `log`: `SECCOMP_FILTER_FLAG_LOG`, so the kernel audits a trap too, not
/// only kills (seccompiler's own installer cannot pass that flag).
fn install(prog: &BpfProgram, log: bool) -> Result<()> {
    let mut flags = libc::SECCOMP_FILTER_FLAG_TSYNC;
    if log {
        flags |= libc::SECCOMP_FILTER_FLAG_LOG;
    }
    let fprog = libc::sock_fprog {
        len: u16::try_from(prog.len()).context("filter too long")?,
        // seccompiler's `sock_filter` is the kernel's struct, as libc's is.
        filter: prog.as_ptr().cast::<libc::sock_filter>().cast_mut(),
    };
    // SAFETY: `fprog` points at `prog`'s instructions, which outlive the
    // call; the kernel copies them and writes nothing of ours. With TSYNC
    // the call returns a thread id (> 0) if another thread could not be
    // synchronised, which is an error here too.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &fprog as *const libc::sock_fprog,
        )
    };
    match rc {
        0 => Ok(()),
        r if r < 0 => Err(std::io::Error::last_os_error()).context("seccomp(SET_MODE_FILTER)"),
        tid => Err(anyhow!("seccomp: thread {tid} could not take the filter")),
    }
}

/// The two BPF programs of `profile`: the allowlist, and the one that
/// answers ENOSYS to `clone3`.
pub fn programs(profile: Profile, mode: Mode) -> Result<(BpfProgram, BpfProgram)> {
    let arch = std::env::consts::ARCH
        .try_into()
        .map_err(|e| anyhow!("seccomp: {e}"))?;
    let mismatch = match (mode, profile) {
        (Mode::Log, _) => SeccompAction::Log,
        // The daemon's reporter says which call it was, then dies.
        (_, Profile::Daemon) => SeccompAction::Trap,
        (_, Profile::Helper) => SeccompAction::KillProcess,
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

/// Calls both profiles make, whatever their arguments. Found with `strace
/// -f` over the whole integration suite (`docs/security.md` says how),
/// plus what the code paths need that the suite does not reach (a graceful
/// stop's `flock` and `exit_group`, `restart_syscall` after a signal) and
/// the read/write family a faster frame path may use.
const COMMON: &[libc::c_long] = &[
    // memory
    libc::SYS_brk,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_mprotect,
    libc::SYS_madvise,
    // the read/write family, on fds it holds
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
    libc::SYS_fcntl,
    // files (Landlock decides which): records, definitions, hosts files,
    // /proc reads
    libc::SYS_openat,
    libc::SYS_newfstatat,
    libc::SYS_fstat,
    libc::SYS_statx,
    libc::SYS_getdents64,
    libc::SYS_mkdirat,
    libc::SYS_unlinkat,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_fchmodat,
    libc::SYS_fsync,
    libc::SYS_flock,
    // sockets (families restricted below): API, NAT, listeners, DNS
    libc::SYS_socketpair,
    libc::SYS_bind,
    libc::SYS_listen,
    libc::SYS_accept4,
    libc::SYS_connect,
    libc::SYS_getsockname,
    libc::SYS_setsockopt,
    libc::SYS_getsockopt,
    libc::SYS_shutdown,
    // waiting: epoll (tokio, switch threads), eventfd, futexes, sleeps
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
    libc::SYS_gettimeofday,
    // signals (SIGTERM/SIGINT through tokio)
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    libc::SYS_restart_syscall,
    // threads and identity
    libc::SYS_set_robust_list,
    libc::SYS_rseq,
    libc::SYS_sched_getaffinity,
    libc::SYS_getrandom,
    libc::SYS_getpid,
    libc::SYS_gettid,
    libc::SYS_getuid,
    libc::SYS_geteuid,
    libc::SYS_getgid,
    libc::SYS_getegid,
    libc::SYS_exit,
    libc::SYS_exit_group,
    // sandbox processes, through pidfds (watch, `rm -f`)
    libc::SYS_pidfd_open,
    libc::SYS_pidfd_send_signal,
];

/// The x86_64 forms of calls above that glibc and Rust std still make.
#[cfg(target_arch = "x86_64")]
const COMMON_LEGACY: &[libc::c_long] = &[
    libc::SYS_mkdir,
    libc::SYS_unlink,
    libc::SYS_rename,
    libc::SYS_chmod,
    libc::SYS_poll,
    libc::SYS_epoll_wait,
];
#[cfg(not(target_arch = "x86_64"))]
const COMMON_LEGACY: &[libc::c_long] = &[];

/// Only the helper spawner and the helpers: starting a process (and what
/// the dynamic loader and Rust's start-up do in it), waiting for it, and
/// entering namespaces.
const HELPER_ONLY: &[libc::c_long] = &[
    libc::SYS_execve,
    libc::SYS_execveat,
    libc::SYS_wait4,
    libc::SYS_waitid,
    libc::SYS_dup,
    libc::SYS_dup3,
    libc::SYS_pipe2,
    libc::SYS_set_tid_address,
    libc::SYS_prlimit64,
    libc::SYS_getppid,
    libc::SYS_readlinkat,
    libc::SYS_faccessat,
    libc::SYS_faccessat2,
    libc::SYS_setitimer,
    libc::SYS_setns,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_access,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_readlink,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_dup2,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_pipe,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_arch_prctl,
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

/// `prctl` options in use: thread names (std, tokio) and `no_new_privs`
/// (which only restricts).
const PRCTLS: &[u64] = &[
    libc::PR_SET_NAME as u64,
    libc::PR_GET_NAME as u64,
    libc::PR_GET_NO_NEW_PRIVS as u64,
    libc::PR_SET_NO_NEW_PRIVS as u64,
];
/// The spawner's, in addition: its parent-death signal.
const HELPER_PRCTLS: &[u64] = &[libc::PR_SET_PDEATHSIG as u64];

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
    match profile {
        Profile::Daemon => {
            rules.insert(libc::SYS_prctl, any_of(0, PRCTLS)?);
            // Any signal's disposition may change but SIGSYS's: nobody may
            // take the reporter away (or catch SIGSYS to survive a refused
            // call). The spawner may: posix_spawn resets every signal.
            rules.insert(
                libc::SYS_rt_sigaction,
                vec![SeccompRule::new(vec![SeccompCondition::new(
                    0,
                    SeccompCmpArgLen::Dword,
                    SeccompCmpOp::Ne,
                    libc::SIGSYS as u64,
                )
                .map_err(|e| anyhow!("seccomp condition: {e}"))?])
                .map_err(|e| anyhow!("seccomp rule: {e}"))?],
            );
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
            rules.insert(libc::SYS_rt_sigaction, vec![]);
            let prctls: Vec<u64> = PRCTLS.iter().chain(HELPER_PRCTLS).copied().collect();
            rules.insert(libc::SYS_prctl, any_of(0, &prctls)?);
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

/// Installs the daemon's SIGSYS handler: a call outside the allowlist traps
/// (`SECCOMP_RET_TRAP`) into [`on_sigsys`], which writes the call's number to
/// stderr (the daemon's log: unprivileged users often cannot read `dmesg`)
/// and then makes the same call again. SIGSYS is blocked inside its own
/// handler, so the kernel delivers that second trap with the default
/// action: the process dies of SIGSYS, as with `SECCOMP_RET_KILL_PROCESS`,
/// and the refused call never runs.
fn install_sigsys_reporter() -> Result<()> {
    // SAFETY: an all-zero `sigaction` is a valid value (empty mask, no
    // flags); the fields that matter are set below.
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = on_sigsys as *const () as usize;
    sa.sa_flags = libc::SA_SIGINFO;
    // SAFETY: `sa` is fully initialised and outlives the call; the handler
    // only calls async-signal-safe functions (write, syscall, abort).
    let rc = unsafe { libc::sigaction(libc::SIGSYS, &sa, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("sigaction(SIGSYS)");
    }
    Ok(())
}

/// Offset of `si_syscall` in a SIGSYS `siginfo_t` on 64-bit Linux: after
/// `si_signo`, `si_errno`, `si_code` and padding (16 bytes) comes
/// `_sigsys { void *_call_addr; int _syscall; unsigned _arch; }`.
const SI_SYSCALL_OFFSET: usize = 24;

extern "C" fn on_sigsys(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for a SA_SIGINFO handler,
    // and for SIGSYS from seccomp the `_sigsys` member is the live one.
    let nr =
        unsafe { std::ptr::read_unaligned(info.cast::<u8>().add(SI_SYSCALL_OFFSET).cast::<i32>()) };
    let mut buf = [0u8; 160];
    let mut len = 0;
    let mut put = |bytes: &[u8]| {
        let n = bytes.len().min(buf.len() - len);
        buf[len..len + n].copy_from_slice(&bytes[..n]);
        len += n;
    };
    put(b"warren daemon: seccomp: system call ");
    let mut digits = [0u8; 12];
    let mut i = digits.len();
    let mut v = nr.unsigned_abs();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    put(&digits[i..]);
    put(b" is not in the allowlist; stopping (docs/security.md)\n");
    // SAFETY: writes `len` initialised bytes of `buf` to stderr.
    unsafe { libc::write(2, buf.as_ptr().cast(), len) };
    // SAFETY: the call that trapped, with every argument zero: refused
    // again (zero matches none of the argument rules but `rt_sigaction`'s,
    // whose call then fails harmlessly), and with SIGSYS blocked in its own
    // handler the kernel now kills the process with the default action.
    unsafe { libc::syscall(libc::c_long::from(nr), 0, 0, 0, 0, 0, 0) };
    // Only reached if that call was allowed after all.
    std::process::abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_profiles_compile_in_every_mode() {
        for profile in [Profile::Daemon, Profile::Helper] {
            for mode in [Mode::Kill, Mode::Log] {
                let (allow, enosys) = programs(profile, mode).unwrap();
                assert!(allow.len() > 100 && allow.len() < 4096, "{}", allow.len());
                assert!(!enosys.is_empty());
            }
        }
    }

    #[test]
    fn what_only_helpers_may_do_is_not_in_the_daemon_list() {
        let daemon = rules(Profile::Daemon).unwrap();
        let helper = rules(Profile::Helper).unwrap();
        for nr in [libc::SYS_execve, libc::SYS_setns, libc::SYS_wait4] {
            assert!(
                !daemon.contains_key(&nr) && helper.contains_key(&nr),
                "{nr}"
            );
        }
        for nr in [
            libc::SYS_mount,
            libc::SYS_ptrace,
            libc::SYS_bpf,
            libc::SYS_keyctl,
            libc::SYS_unshare,
            libc::SYS_kill,
        ] {
            assert!(
                !daemon.contains_key(&nr) && !helper.contains_key(&nr),
                "{nr}"
            );
        }
        assert_eq!(Mode::parse("log").unwrap(), Mode::Log);
        assert!(Mode::parse("allow").is_err());
    }
}
