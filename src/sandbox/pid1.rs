//! PID 1 of a sandbox: starts the command, forwards signals, reaps.
//!
//! Every `warren run` sandbox has a PID namespace of its own, and its
//! first process is this small init, as `docker run --init` (tini) gives:
//!
//! - it forks the command (PID 2 inside) in a session of its own, on the
//!   sandbox's pty with `-t`;
//! - it forwards the signals a supervisor sends (HUP, INT, QUIT, USR1,
//!   USR2, TERM, WINCH, ALRM, CONT, TSTP) to the command: PID 1 gets no
//!   default action for a signal, so a command that runs as PID 1 would
//!   ignore `warren stop`'s SIGTERM;
//! - it reaps every orphan that the namespace reparents to it;
//! - when the command exits it exits with the command's status (128+N
//!   for a signal), and the kernel then kills every other process of the
//!   namespace: background jobs, daemons the command left behind, all.
//!
//! The signals are blocked and read from a signalfd, so none is lost
//! between two `waitpid`s and nothing runs in a signal handler.

use std::os::fd::OwnedFd;

use anyhow::{Context, Result};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::sys::process::{fork, Forked, SingleThreaded};

/// What PID 1 passes on to the command.
const FORWARDED: [Signal; 10] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGTERM,
    Signal::SIGWINCH,
    Signal::SIGALRM,
    Signal::SIGCONT,
    Signal::SIGTSTP,
];

/// The command's terminal, for `-t`: the pty slave, its stdin, stdout
/// and stderr (as Docker's `-t`: without `-i` nothing is typed into it).
pub struct Terminal {
    pub slave: OwnedFd,
}

/// Runs `exec` (which must not return on success) in a child and serves
/// as its init until it exits; returns its exit status. `warren exec`
/// uses the same loop from outside the namespace's PID 1 (the child is in
/// the sandbox's PID namespace, its orphans go to the sandbox's init). `close` is what
/// the child must not keep and the parent drops once the child exists
/// (the set-up socket: its last copy closes when the command execs).
pub fn run(
    single: &SingleThreaded,
    terminal: Option<Terminal>,
    close: Option<OwnedFd>,
    exec: impl FnOnce() -> i32,
) -> Result<i32> {
    let mut mask = SigSet::empty();
    for s in FORWARDED {
        mask.add(s);
    }
    mask.add(Signal::SIGCHLD);
    mask.thread_block().context("blocking signals")?;
    let sigfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC).context("signalfd")?;
    let child = match fork(single).context("fork of the command")? {
        Forked::Child => {
            drop(sigfd);
            let code = match become_command(terminal) {
                Ok(()) => exec(),
                Err(e) => {
                    eprintln!("warren: {e:#}");
                    super::init::EXIT_ABORTED
                }
            };
            std::process::exit(code);
        }
        Forked::Parent(child) => child,
    };
    drop(terminal);
    drop(close);
    loop {
        let Some(info) = sigfd.read_signal().context("reading signals")? else {
            continue;
        };
        let signo = info.ssi_signo as i32;
        if signo == Signal::SIGCHLD as i32 {
            if let Some(code) = reap(child) {
                return Ok(code);
            }
        } else if let Ok(sig) = Signal::try_from(signo) {
            let _ = kill(child, sig);
        }
    }
}

/// The child's side before exec: the default signal mask, a session of
/// its own, the pty as its terminal.
fn become_command(terminal: Option<Terminal>) -> Result<()> {
    SigSet::empty()
        .thread_set_mask()
        .context("restoring the signal mask")?;
    nix::unistd::setsid().context("setsid")?;
    if let Some(t) = terminal {
        super::pty::become_terminal(&t.slave)?;
    }
    Ok(())
}

/// Reaps every child that has exited; the command's status once it has.
fn reap(command: Pid) -> Option<i32> {
    let mut status = None;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == command => status = Some(code),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == command => {
                status = Some(128 + sig as i32)
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return status,
            Ok(_) => {}
        }
    }
}
