//! What the daemon does to confine itself, and what it cannot (yet).
//!
//! Before it starts any thread the daemon sets `no_new_privs`: nothing it
//! executes (its own setns helper is the only thing it executes) can gain
//! privileges through a setuid or file-capability binary.
//!
//! Landlock filesystem rules were tried and do not fit this design: a
//! Landlock domain also restricts ptrace-mode access to processes outside
//! the domain, and opening `/proc/PID/ns/{user,net}` of a sandbox — what the
//! setns helper must do — is exactly such an access. Sandboxes are started
//! by the CLI, outside the daemon's domain, so a confined daemon can no
//! longer attach anything ("Permission denied"). Confining the filesystem
//! needs the namespaces to reach the daemon another way first (the CLI
//! passing namespace fds over the socket), which is issue 9's work, as is a
//! seccomp allowlist.

use anyhow::{Context, Result};

/// Applies what confinement the daemon has: `no_new_privs`.
pub fn confine() -> Result<()> {
    nix::sys::prctl::set_no_new_privs().context("prctl(PR_SET_NO_NEW_PRIVS)")
}
