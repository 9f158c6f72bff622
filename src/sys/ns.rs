//! Namespace file descriptors.
//!
//! A network namespace given only by path (CNI's `CNI_NETNS`, `warren attach
//! --netns`) is entered through the user namespace that owns it. The kernel
//! tells us which one with the `NS_GET_USERNS` ioctl on the netns fd, which
//! returns a new fd for the owning user namespace; `nix` has no wrapper.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

// NS_GET_USERNS = _IO(NSIO, 0x1) with NSIO = 0xb7, from <linux/nsfs.h>.
nix::ioctl_none!(ns_get_userns, 0xb7, 0x1);

/// The user namespace owning the namespace behind `ns` (any namespace fd).
pub fn owning_userns(ns: &impl AsRawFd) -> io::Result<OwnedFd> {
    // SAFETY: NS_GET_USERNS takes no argument and returns a new fd (or -1
    // with errno); it reads and writes no memory of ours.
    let fd = unsafe { ns_get_userns(ns.as_raw_fd()) }.map_err(io::Error::from)?;
    // SAFETY: the kernel just installed `fd` in our table for us alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_netns_is_owned_by_our_userns() {
        let net = std::fs::File::open("/proc/self/ns/net").unwrap();
        let owner = owning_userns(&net).unwrap();
        let owner_ino = std::fs::metadata(format!("/proc/self/fd/{}", owner.as_raw_fd())).unwrap();
        let ours = std::fs::metadata("/proc/self/ns/user").unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(owner_ino.ino(), ours.ino());
    }
}
