//! The only home of `unsafe` in warren.
//!
//! Everything that needs a raw system call without a safe wrapper in `nix`
//! lives here, behind a small safe API, each block with a `// SAFETY:`
//! comment saying why it is sound:
//!
//! - [`tap`]: opening `/dev/net/tun` and the `TUNSETIFF` ioctl that makes
//!   a TAP device in the caller's *current* network namespace.
//! - [`pidfd`]: `pidfd_open` and `pidfd_send_signal`, so the daemon can watch a
//!   sandbox's process without racing pid reuse, and `SO_PEERPIDFD`, so the
//!   API knows which process is at the other end of a connection.
//! - [`process`]: `fork` for the sandbox init (checked single-threaded),
//!   and the terminal ioctls of `-t` (`TIOCSCTTY`, window sizes).
//! - [`ns`]: `NS_GET_USERNS`, to find the user namespace owning a netns.
//! - [`scm`], [`fd`]: taking ownership of fds received over SCM_RIGHTS or
//!   inherited across exec.
//! - [`seccomp`]: the daemon's and the helpers' system-call allowlists
//!   (compiled by `seccompiler`; installed here with the flags it cannot
//!   pass) and the daemon's SIGSYS reporter.
//!
//! - [`alloc`]: fixing glibc's mmap threshold so large per-flow buffers go
//!   back to the kernel when freed.
//!
//! Safe wrappers that `nix` already provides (setns, unshare, mount,
//! SCM_RIGHTS) are used directly by their callers.
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod alloc;
pub mod fd;
pub mod ns;
pub mod pidfd;
pub mod process;
pub mod scm;
pub mod seccomp;
pub mod tap;
