//! The pty of a `-t` sandbox, allocated inside it.
//!
//! The sandbox has a devpts instance of its own (`sandbox::mounts`), so a
//! pty allocated from the caller's would have no name inside (`tty` would
//! say "not a tty"). So the sandbox's PID 1 (or `exec`'s process, once in
//! the sandbox's mount namespace) allocates it itself, from the sandbox's
//! own `/dev/ptmx` ([`allocate`]): the master travels back to the CLI over
//! the set-up socket (SCM_RIGHTS), which relays it, and the slave becomes
//! the command's stdout and stderr (and stdin with `-i`) and its
//! controlling terminal ([`become_terminal`]). The master is close-on-exec:
//! the command never holds it.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use anyhow::{Context, Result};
use nix::fcntl::OFlag;

use crate::sys::process;

/// Message that carries the master.
pub const MASTER: &[u8] = b"pty";

/// Allocates a pty in the current mount namespace: the master (for the
/// CLI) and the slave (for [`become_terminal`]).
pub fn allocate() -> Result<(OwnedFd, OwnedFd)> {
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .context("opening /dev/ptmx")?;
    nix::pty::grantpt(&master).context("grantpt")?;
    nix::pty::unlockpt(&master).context("unlockpt")?;
    let master = master
        .as_fd()
        .try_clone_to_owned()
        .context("dup of the pty master")?;
    let slave = process::open_pty_peer(master.as_fd()).context("opening the pty's slave")?;
    Ok((master, slave))
}

/// Makes `slave` the caller's stdin, stdout and stderr and its
/// controlling terminal; the caller must lead a session without one.
pub fn become_terminal(slave: &OwnedFd) -> Result<()> {
    for fd in [0, 1, 2] {
        nix::unistd::dup2(slave.as_raw_fd(), fd).context("dup2 of the pty")?;
    }
    process::set_controlling_terminal(std::io::stdout().as_fd())
        .context("making the pty the controlling terminal")
}
