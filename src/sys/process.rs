//! `fork` for the sandbox init, and the terminal ioctls of `-t`.
//!
//! The init of `warren run` (a fresh single-threaded process) forks once:
//! the parent stays in the outer user and mount namespaces, where it makes
//! the mounts the sandbox must not undo, while the child becomes the
//! sandbox (see `sandbox::init`), and the sandbox's PID 1 forks the
//! command. `nix` marks `fork` unsafe because a child of a multi-threaded
//! process may only call async-signal-safe functions; [`fork`] takes a
//! proof that the caller has one thread, so its child may do anything.
//!
//! `TIOCGPTPEER` opens a pty's slave from its master; `TIOCSCTTY` makes it
//! the controlling terminal of a new session;
//! `TIOCGWINSZ`/`TIOCSWINSZ` copy the user's window size onto it. `nix`
//! generates the ioctl wrappers, which are unsafe because they take raw
//! pointers.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

pub use nix::pty::Winsize;
use nix::unistd::{ForkResult, Pid};

/// Which side of a fork we are on.
pub enum Forked {
    Parent(Pid),
    Child,
}

/// Proof that the process had a single thread when it was made
/// ([`SingleThreaded::check`], from `/proc/self/stat`). It is neither
/// `Send` nor `Sync`, and whoever holds it promises to start no thread
/// before [`fork`]: a process that is about to leave `/proc` behind (join
/// a mount namespace whose `/proc` is another PID namespace's) checks
/// first and forks later.
pub struct SingleThreaded(std::marker::PhantomData<*const ()>);

impl SingleThreaded {
    pub fn check() -> io::Result<SingleThreaded> {
        let threads = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| {
                // Field 20 (num_threads), counted after the ")" that ends comm.
                let rest = s.rsplit_once(')')?.1;
                rest.split_whitespace().nth(17)?.parse::<u32>().ok()
            })
            .unwrap_or(0);
        if threads != 1 {
            return Err(io::Error::other(format!(
                "fork needs a single-threaded process (this one has {threads} threads)"
            )));
        }
        Ok(SingleThreaded(std::marker::PhantomData))
    }
}

/// Forks a process that has a single thread (see [`SingleThreaded`]), so
/// the child inherits no lock another thread held.
pub fn fork(_proof: &SingleThreaded) -> io::Result<Forked> {
    // SAFETY: the process has exactly one thread (checked when the proof
    // was made, and its holder starts none), so no lock can be held by a
    // thread that does not exist in the child, and the child may call
    // anything, as after any fork of a single-threaded program.
    match unsafe { nix::unistd::fork() }.map_err(io::Error::from)? {
        ForkResult::Parent { child } => Ok(Forked::Parent(child)),
        ForkResult::Child => Ok(Forked::Child),
    }
}

/// [`fork`], checking first.
pub fn fork_single_threaded() -> io::Result<Forked> {
    fork(&SingleThreaded::check()?)
}

nix::ioctl_write_int_bad!(tiocsctty, libc::TIOCSCTTY);
nix::ioctl_write_int_bad!(tiocgptpeer, libc::TIOCGPTPEER);
nix::ioctl_read_bad!(tiocgwinsz, libc::TIOCGWINSZ, Winsize);
nix::ioctl_write_ptr_bad!(tiocswinsz, libc::TIOCSWINSZ, Winsize);

/// Makes the terminal `fd` the controlling terminal of the caller's session
/// (the caller must lead a session without one).
pub fn set_controlling_terminal(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: TIOCSCTTY takes an int argument (0: do not steal a terminal
    // another session holds) and touches no memory of ours.
    unsafe { tiocsctty(fd.as_raw_fd(), 0) }.map_err(io::Error::from)?;
    Ok(())
}

/// Opens the slave of the pty master `master` from the master itself
/// (`TIOCGPTPEER`, Linux 4.13), so no path under `/dev/pts` is looked up.
pub fn open_pty_peer(master: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: TIOCGPTPEER takes open(2) flags as its int argument and
    // returns a new fd (or -1); it touches no memory of ours.
    let fd = unsafe { tiocgptpeer(master.as_raw_fd(), flags) }.map_err(io::Error::from)?;
    // SAFETY: the kernel just installed `fd` in our table for us alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The window size of the terminal `fd`, if it is one.
pub fn window_size(fd: BorrowedFd<'_>) -> Option<Winsize> {
    let mut ws = Winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: `ws` is a live, writable `struct winsize`, the size the
    // request writes.
    unsafe { tiocgwinsz(fd.as_raw_fd(), &mut ws) }.ok()?;
    Some(ws)
}

/// Sets the window size of the terminal `fd` (a pty master: the slave's
/// foreground process group gets SIGWINCH).
pub fn set_window_size(fd: BorrowedFd<'_>, ws: &Winsize) -> io::Result<()> {
    // SAFETY: `ws` is a live `struct winsize` that the request only reads.
    unsafe { tiocswinsz(fd.as_raw_fd(), ws) }.map_err(io::Error::from)?;
    Ok(())
}
