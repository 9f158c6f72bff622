//! Taking ownership of an fd inherited across exec.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use nix::fcntl::{fcntl, FcntlArg};

/// Adopts `raw`, an fd our parent left open for us across exec (its number
/// passed in the environment). Fails unless it is open and not one of the
/// standard streams.
pub fn adopt_inherited(raw: RawFd) -> std::io::Result<OwnedFd> {
    if raw <= 2 {
        return Err(std::io::Error::from_raw_os_error(libc::EBADF));
    }
    fcntl(raw, FcntlArg::F_GETFD)?;
    // SAFETY: the fd is open (F_GETFD succeeded), it was inherited for this
    // process's exclusive use, and nothing else in this process has wrapped
    // it: the only caller adopts it once, at start, from the environment.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}
