//! TAP devices.
//!
//! A TAP device is created by opening `/dev/net/tun` and issuing `TUNSETIFF`.
//! The kernel creates the device in the network namespace of the process
//! that *opened* the file, and checks `CAP_NET_ADMIN` against the user
//! namespace owning that network namespace. This is why the setns helper
//! opens the file only after joining the sandbox's user and network
//! namespaces: it then holds `CAP_NET_ADMIN` there without any privilege on
//! the host. The returned fd keeps working after it is passed to the daemon,
//! which lives in the host namespace.
//!
//! TAPs are made persistent ([`set_persist`]): if the daemon dies, the
//! sandbox keeps its configured interface (without carrier), and the next
//! daemon re-opens it by name with the same `TUNSETIFF`, which attaches to
//! an existing TAP instead of creating one.
//!
//! Every TAP is opened with `IFF_VNET_HDR`: each frame read or written
//! through the fd is preceded by a [`VNET_HDR_LEN`]-byte `virtio_net_hdr`
//! (the kernel's default size, so no `TUNSETVNETHDRSZ`), and
//! `TUNSETOFFLOAD(TUN_F_CSUM)` tells the sandbox's kernel that the device
//! completes TCP and UDP checksums: it hands over frames with a partial
//! checksum (`VIRTIO_NET_HDR_F_NEEDS_CSUM`) instead of summing 64 KiB
//! itself, and accepts such frames written to it without verifying them.
//! The switch (`crate::switch::vnet`) checks and forwards these headers.
//! No segmentation offload (TSO) is offered: at the default MTU of 65520 a
//! segment is already as large as a GSO packet may be, and the gateway's
//! smoltcp could not take one. Offloads are a property of the device, the
//! header a property of the fd: a re-open ([`create_tap`] of an existing TAP)
//! sets both again, so a TAP never delivers partial checksums to a reader
//! that does not expect the header.
//!
//! We use direct ioctls rather than the `tun-tap` crate because we need the
//! fd itself (to pass it over SCM_RIGHTS), `TUNSETPERSIST`, `TUNSETOFFLOAD`
//! and `IFF_VNET_HDR`, which that crate does not expose.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

/// `IFNAMSIZ` from `<linux/if.h>`.
pub const IFNAMSIZ: usize = 16;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;
/// `TUN_F_CSUM`: the reader completes TCP/UDP checksums.
const TUN_F_CSUM: u64 = 0x01;

/// Bytes of the `virtio_net_hdr` before every frame read from or written to
/// a TAP fd (`sizeof(struct virtio_net_hdr)`, the kernel's default).
pub const VNET_HDR_LEN: usize = 10;

/// `struct ifreq` as `TUNSETIFF` reads it: a name and the flags, padded to
/// the full size of the kernel's union.
#[repr(C)]
struct IfReqFlags {
    name: [libc::c_char; IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

nix::ioctl_write_int!(tunsetiff, b'T', 202);
nix::ioctl_write_int!(tunsetpersist, b'T', 203);
nix::ioctl_write_int!(tunsetoffload, b'T', 208);

/// Creates a TAP device named `name` in the caller's current network
/// namespace, or attaches to the existing one of that name, and returns its
/// fd (close-on-exec, blocking): no packet-info header, a [`VNET_HDR_LEN`]
/// virtio header before each frame, and checksum offload on.
pub fn create_tap(name: &str) -> io::Result<OwnedFd> {
    if name.is_empty() || name.len() >= IFNAMSIZ || name.contains(['/', ' ', '\0']) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid interface name {name:?}"),
        ));
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/net/tun")
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot open /dev/net/tun: {e} (it must exist and be mode 0666, \
                     as on ordinary distributions: chmod 0666 /dev/net/tun)"
                ),
            )
        })?;
    let mut req = IfReqFlags {
        name: [0; IFNAMSIZ],
        flags: IFF_TAP | IFF_NO_PI | IFF_VNET_HDR,
        _pad: [0; 22],
    };
    for (dst, src) in req.name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    // SAFETY: `file` is an open /dev/net/tun fd and `req` is a properly
    // initialised, NUL-terminated `struct ifreq` that outlives the call. The
    // kernel reads at most `sizeof(struct ifreq)` (40 bytes) from it, which is
    // exactly the size of `IfReqFlags`.
    let rc = unsafe { tunsetiff(file.as_raw_fd(), &mut req as *mut IfReqFlags as u64) };
    rc.map_err(|e| io::Error::other(format!("TUNSETIFF {name}: {e}")))?;
    // SAFETY: TUNSETOFFLOAD takes its argument by value and reads no memory
    // of ours; `file` is the TAP fd just attached.
    unsafe { tunsetoffload(file.as_raw_fd(), TUN_F_CSUM) }
        .map_err(|e| io::Error::other(format!("TUNSETOFFLOAD {name}: {e}")))?;
    Ok(file.into())
}

/// Makes the TAP behind `fd` persistent (it outlives its fds, so a daemon
/// restart does not take the sandbox's interface away) or not (it goes away
/// when the last fd closes).
pub fn set_persist(fd: &impl AsRawFd, persist: bool) -> io::Result<()> {
    // SAFETY: TUNSETPERSIST takes its argument by value and reads no memory
    // of ours; an fd that is not a TAP is reported as an error.
    unsafe { tunsetpersist(fd.as_raw_fd(), u64::from(persist)) }
        .map(drop)
        .map_err(|e| io::Error::other(format!("TUNSETPERSIST: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifreq_has_kernel_size() {
        assert_eq!(std::mem::size_of::<IfReqFlags>(), 40);
    }

    #[test]
    fn rejects_bad_names() {
        assert!(create_tap("").is_err());
        assert!(create_tap("a-name-far-too-long").is_err());
        assert!(create_tap("a/b").is_err());
    }
}
