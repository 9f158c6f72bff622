//! Receiving file descriptors over a unix socket (SCM_RIGHTS).
//!
//! The fds arrive as raw numbers in a control message; turning them into
//! `OwnedFd` is the one unsafe step, done here right where the kernel
//! installed them in our table so no other code can own them first.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

/// Most fds accepted in one message; more are closed and reported as an error.
pub const MAX_FDS: usize = 32;

/// Receives one message into `buf`, returning its length and the fds it carried
/// (close-on-exec). A message with more than [`MAX_FDS`] fds, or whose control
/// data was truncated, is an error and every fd it carried is closed.
pub fn recv_with_fds(
    sock: &impl AsRawFd,
    buf: &mut [u8],
) -> std::io::Result<(usize, Vec<OwnedFd>)> {
    let mut cmsg = nix::cmsg_space!([RawFd; MAX_FDS]);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(raw) = c {
            for fd in raw {
                // SAFETY: the kernel installed `fd` in our fd table as part of
                // this recvmsg; no other owner exists yet, so taking ownership
                // here is the only way it will be closed.
                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    if msg.flags.contains(MsgFlags::MSG_CTRUNC) {
        return Err(std::io::Error::other("SCM_RIGHTS control data truncated"));
    }
    Ok((msg.bytes, fds))
}

/// Sends `body` with `fds` attached.
pub fn send_with_fds(sock: &impl AsRawFd, body: &[u8], fds: &[OwnedFd]) -> std::io::Result<()> {
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let cmsgs = if raw.is_empty() {
        vec![]
    } else {
        vec![ControlMessage::ScmRights(&raw)]
    };
    sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(body)],
        &cmsgs,
        MsgFlags::empty(),
        None,
    )?;
    Ok(())
}
