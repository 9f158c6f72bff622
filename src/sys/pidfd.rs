//! Process file descriptors.
//!
//! The daemon watches each sandbox's process through a pidfd: it becomes
//! readable when the process exits (however it exits, SIGKILL included), and
//! unlike a bare pid it cannot silently start naming another process after
//! the pid is reused. `nix` 0.29 has no wrapper, so the two syscalls are made
//! here.

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

/// Opens a pidfd for `pid` (close-on-exec is implied by the kernel).
pub fn open(pid: i32) -> io::Result<OwnedFd> {
    if pid <= 0 {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    // SAFETY: pidfd_open takes a pid and a flags word and returns a new fd or
    // -1; it touches no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Sends `signal` to the process behind `pidfd`.
pub fn send_signal(pidfd: &impl AsRawFd, signal: i32) -> io::Result<()> {
    // SAFETY: pidfd_send_signal with a null siginfo and zero flags reads no
    // memory of ours; an invalid fd is reported as an error.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A pidfd for the process at the other end of a connected unix socket, as
/// the kernel recorded it at `connect` (`SO_PEERPIDFD`, Linux 6.5): unlike
/// the pid in `SO_PEERCRED` it cannot come to name another process later.
pub fn of_peer(sock: &impl AsRawFd) -> io::Result<OwnedFd> {
    // libc names SO_PEERPIDFD only for some targets; 77 on every
    // architecture warren builds for (asm-generic/socket.h).
    const SO_PEERPIDFD: libc::c_int = 77;
    let mut fd: libc::c_int = -1;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `fd` and `len` are live locals of the sizes we pass; the
    // kernel writes at most `len` bytes into `fd` and the new length into
    // `len`.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_PEERPIDFD,
            (&mut fd as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    // SAFETY: the kernel installed this new fd for us alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether the process behind `pidfd` has exited (the fd polls readable).
pub fn has_exited(pidfd: &impl AsFd) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
}

/// Waits (async) until the process behind `pidfd` exits. Errors registering
/// with the reactor are returned at once; the caller treats them as an exit.
pub async fn wait_exit(pidfd: std::sync::Arc<OwnedFd>) -> io::Result<()> {
    use tokio::io::unix::AsyncFd;
    use tokio::io::Interest;
    // SAFETY: the `Arc<OwnedFd>` keeps the fd open for as long as the
    // `AsyncFd` holds it (it is moved in and only dropped with it), and
    // `as_raw_fd` on it always returns that same fd.
    let afd = unsafe { AsyncFd::register_with_interest(pidfd, Interest::READABLE) }
        .map_err(|e| e.into_parts().1)?;
    let _ = afd.readable().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watches_a_child_exit() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let fd = open(child.id() as i32).unwrap();
        assert!(!has_exited(&fd));
        send_signal(&fd, libc::SIGKILL).unwrap();
        child.wait().unwrap();
        assert!(has_exited(&fd));
    }
}
