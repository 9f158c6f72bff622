//! Who is at the other end of an API connection.
//!
//! The socket is mode 0600 in a 0700 directory, but that stops only other
//! users: a sandbox's root is the user's own uid outside, so a sandbox
//! that can name the socket (through a mount it undid, a path someone
//! handed it, a runner that bind-mounted it) could drive the whole API,
//! create a network with `host-loopback=true` and reach the host's
//! loopback. So every connection's peer is checked by *who it is*, from
//! what the kernel recorded at `connect`, not from what the sandbox can
//! see.
//!
//! # Theory of operation
//!
//! The kernel gives the daemon a pidfd of the peer (`SO_PEERPIDFD`), which
//! cannot come to name another process; its pid is read from the pidfd's
//! own `fdinfo`. The peer's user namespace would be the natural identity,
//! but the confined daemon may not open `/proc/PID/ns/user` of a process
//! outside its Landlock domain (a ptrace-mode check). What it may read is
//! `/proc/PID/uid_map`, which the kernel renders relative to the reader:
//!
//! - a peer in the daemon's own user namespace shows exactly the daemon's
//!   own map (`/proc/self/uid_map`): **trusted**;
//! - a peer in any other user namespace whose map covers **one id** is
//!   refused. Every sandbox `warren run` makes maps one id (the user, as
//!   root), and so does every namespace anyone makes below one without
//!   privilege (a child can only map ids its parent has), so nothing
//!   inside a sandbox can show a wider map;
//! - a peer in a user namespace that maps a range of ids (made with the
//!   setuid `newuidmap`, as rootless podman and rootlesskit do) is a
//!   runner's: trusted as the user, because `warren slirp4netns` and
//!   `warren-cni` run there. Keeping the socket out of *their* containers'
//!   mount namespaces is the runner's part, as it is for their own
//!   sockets.
//!
//! After reading the map the pidfd is polled: if the peer exited meanwhile
//! the pid may have been reused, and the connection is refused rather than
//! judged by another process's map. A kernel without `SO_PEERPIDFD` (before
//! 6.5) falls back to `SO_PEERCRED`'s pid with the same check (a pid reuse
//! in the microseconds between connect and check is the remaining gap).

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use crate::sys::pidfd;

/// The daemon's own view, read once at start.
#[derive(Debug, Clone)]
pub struct PeerCheck {
    own_uid_map: String,
}

impl PeerCheck {
    pub fn new() -> io::Result<PeerCheck> {
        Ok(PeerCheck {
            own_uid_map: std::fs::read_to_string("/proc/self/uid_map")?,
        })
    }

    /// `Ok` when the peer of `sock` may use the API, else why not (for the
    /// 403 and the log).
    pub fn check(&self, sock: &impl AsFd) -> Result<(), String> {
        let (fd, pid) = peer_pidfd(sock).map_err(|e| format!("cannot identify the peer: {e}"))?;
        let map = std::fs::read_to_string(format!("/proc/{pid}/uid_map"))
            .map_err(|e| format!("cannot read the peer's (pid {pid}) uid_map: {e}"))?;
        if pidfd::has_exited(&fd) {
            return Err(format!(
                "the peer (pid {pid}) exited before it could be checked"
            ));
        }
        judge(&self.own_uid_map, &map).map_err(|why| format!("pid {pid} {why}"))
    }
}

/// The verdict on a peer whose `/proc/PID/uid_map` reads `theirs`, for a
/// daemon whose own reads `ours`.
fn judge(ours: &str, theirs: &str) -> Result<(), String> {
    if theirs == ours {
        return Ok(());
    }
    let mut ids: u64 = 0;
    for line in theirs.lines() {
        let count = line
            .split_whitespace()
            .nth(2)
            .and_then(|c| c.parse::<u64>().ok())
            .ok_or_else(|| "has an unreadable uid_map".to_string())?;
        ids = ids.saturating_add(count);
    }
    if ids > 1 {
        Ok(())
    } else {
        Err("is inside a sandbox (a user namespace that maps a single id)".into())
    }
}

/// A pidfd of the peer and its pid (in our pid namespace).
fn peer_pidfd(sock: &impl AsFd) -> io::Result<(OwnedFd, i32)> {
    let fd = match pidfd::of_peer(&sock.as_fd()) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOPROTOOPT) => {
            let pid = peer_cred_pid(sock)?;
            pidfd::open(pid)?
        }
        Err(e) => return Err(e),
    };
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_fd().as_raw_fd()))?;
    let pid = info
        .lines()
        .find_map(|l| l.strip_prefix("Pid:"))
        .and_then(|p| p.trim().parse::<i32>().ok())
        .filter(|p| *p > 0)
        .ok_or_else(|| io::Error::other("the peer is gone or in a pid namespace we cannot see"))?;
    Ok((fd, pid))
}

fn peer_cred_pid(sock: &impl AsFd) -> io::Result<i32> {
    let cred = nix::sys::socket::getsockopt(sock, nix::sys::socket::sockopt::PeerCredentials)
        .map_err(io::Error::from)?;
    Ok(cred.pid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daemons_own_namespace_and_runners_ranges_are_trusted() {
        let host = "         0          0 4294967295\n";
        assert!(judge(host, host).is_ok());
        // rootless podman's namespace: the user and a subordinate range.
        assert!(judge(host, "0 1000 1\n1 100000 65536\n").is_ok());
    }

    #[test]
    fn single_id_namespaces_are_refused() {
        let host = "         0          0 4294967295\n";
        // What `warren run` makes, and anything made below it.
        assert!(judge(host, "         0       1000          1\n").is_err());
        assert!(judge(host, "0 0 1\n").is_err());
        // A daemon itself in a one-id namespace trusts its own peers only.
        let own = "0 1000 1\n";
        assert!(judge(own, own).is_ok());
        assert!(judge(own, "0 0 1\n").is_err());
        // Nonsense is refused, never trusted.
        assert!(judge(host, "garbage\n").is_err());
        assert!(judge(host, "").is_err());
    }

    #[test]
    fn a_peer_in_our_own_namespace_is_trusted() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let check = PeerCheck::new().unwrap();
        assert_eq!(check.check(&a), Ok(()));
    }
}
