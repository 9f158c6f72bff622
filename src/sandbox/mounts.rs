//! The mounts a `warren run` sandbox gets, and cannot undo.
//!
//! [`prepare`] runs in the init's supervisor, root of the *outer* user and
//! mount namespaces, while the sandbox (in its inner user namespace) still
//! shares that mount namespace. When the sandbox then unshares a mount
//! namespace of its own, the kernel copies these mounts into a namespace
//! owned by a less privileged user namespace and locks them (see
//! `sandbox::init`): that is what makes them hold against root in the
//! sandbox. In order:
//!
//! 1. the daemon's generated files bound over `/etc/hosts`,
//!    `/etc/hostname`, … (not with `--network host`);
//! 2. with `--read-only`: every mount remounted read-only (keeping the
//!    flags the kernel locked: nosuid, nodev, noexec, atime), a private
//!    tmpfs on `/tmp` and `/dev/shm`, and each `--writable` path bound onto
//!    itself and remounted writable;
//! 3. a `devpts` instance of the sandbox's own over `/dev/pts` (and its
//!    `ptmx` over `/dev/ptmx`), so the user's terminals are not there to
//!    be opened (an empty read-only tmpfs if devpts cannot be mounted);
//! 4. an empty read-only tmpfs over warren's state and runtime
//!    directories, so nothing above can show them again;
//! 5. last ([`proc_of`]), a `/proc` of the sandbox's PID namespace.
//!
//! [`restrict_command`] is the second layer of `--read-only`: Landlock on
//! the sandbox's command (writes only beneath `/tmp`, `/dev` and the
//! `--writable` paths; reads and execution anywhere), which also forbids it
//! every mount.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use nix::mount::{mount, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::statvfs::{statvfs, FsFlags};

use super::init::Go;
use crate::sys::process::{fork_single_threaded, Forked};

/// Makes the sandbox's mounts (see the module doc), in the outer mount
/// namespace.
pub fn prepare(go: &Go, net_host: bool) -> Result<()> {
    if !net_host {
        for (src, dst) in &go.binds {
            mount(Some(src), dst, None::<&str>, MsFlags::MS_BIND, None::<&str>).with_context(
                || format!("bind-mounting {} over {}", src.display(), dst.display()),
            )?;
        }
    }
    if let Some(writable) = &go.read_only {
        read_only_view(writable)?;
    }
    own_devpts();
    for dir in go.hide.iter().filter(|d| d.is_dir()) {
        cover(dir).with_context(|| format!("hiding {} from the sandbox", dir.display()))?;
    }
    Ok(())
}

/// Mounts a `/proc` of the sandbox's PID namespace (the one `pid1`, a
/// host pid, leads) over `/proc`, here in the outer mount namespace, so the
/// sandbox's copy locks it too: `ps` inside sees only the sandbox, and
/// unmounting it to see the host's is refused. procfs shows the PID
/// namespace of the process that mounts it, so a child made after joining
/// that namespace does the mount. Call it last: the supervisor's own
/// `/proc/self` means nothing afterwards.
pub fn proc_of(pid1: i32) -> Result<()> {
    let pidfd = crate::sys::pidfd::open(pid1).context("pidfd of the sandbox's init")?;
    nix::sched::setns(&pidfd, CloneFlags::CLONE_NEWPID)
        .context("joining the sandbox's PID namespace")?;
    match fork_single_threaded().context("fork")? {
        Forked::Child => {
            let mounted = mount(
                Some("proc"),
                "/proc",
                Some("proc"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                None::<&str>,
            );
            std::process::exit(match mounted {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("warren: mounting the sandbox's /proc: {e}");
                    1
                }
            });
        }
        Forked::Parent(child) => match nix::sys::wait::waitpid(child, None) {
            Ok(nix::sys::wait::WaitStatus::Exited(_, 0)) => Ok(()),
            other => bail!("the sandbox's /proc could not be mounted ({other:?})"),
        },
    }
}

/// An empty read-only tmpfs over `dir`.
fn cover(dir: &Path) -> nix::Result<()> {
    mount(
        Some("warren-hidden"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("size=4k,mode=0555"),
    )
}

/// A devpts of the sandbox's own: the host's `/dev/pts/N` (the user's
/// terminals, the user's own files) are no longer there to open. Best
/// effort; when devpts cannot be mounted the directory is covered instead.
fn own_devpts() {
    let pts = Path::new("/dev/pts");
    if !pts.is_dir() {
        return;
    }
    let mounted = mount(
        Some("devpts"),
        pts,
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    );
    if mounted.is_ok() {
        let _ = mount(
            Some("/dev/pts/ptmx"),
            "/dev/ptmx",
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        );
    } else {
        let _ = cover(pts);
    }
}

/// The flags a remount must keep: in a user namespace the kernel refuses
/// to clear the ones it locked (nosuid, nodev, noexec, the atime flags).
fn kept_flags(path: &Path) -> nix::Result<MsFlags> {
    let st = statvfs(path)?;
    let f = st.flags();
    let mut ms = MsFlags::empty();
    for (fs, m) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
    ] {
        if f.contains(fs) {
            ms |= m;
        }
    }
    Ok(ms)
}

fn remount(path: &Path, read_only: bool) -> nix::Result<()> {
    let mut flags = kept_flags(path)? | MsFlags::MS_REMOUNT | MsFlags::MS_BIND;
    flags.set(MsFlags::MS_RDONLY, read_only);
    mount(None::<&str>, path, None::<&str>, flags, None::<&str>)
}

/// Under these the kernel's own pseudo-filesystems live; they are left as
/// they are (Landlock still keeps the command from writing there).
const LEFT_AS_IS: [&str; 3] = ["/proc", "/sys", "/dev"];

/// `--read-only`: everything read-only, private `/tmp` and `/dev/shm`,
/// `writable` bound writable.
fn read_only_view(writable: &[PathBuf]) -> Result<()> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").context("reading mountinfo")?;
    for point in mount_points(&info) {
        if LEFT_AS_IS
            .iter()
            .any(|p| point.starts_with(p) && point != Path::new("/"))
        {
            continue;
        }
        match remount(&point, true) {
            Ok(()) => {}
            // A mount point shadowed by a later mount, or one we may not
            // even look at, is not reachable by the sandbox either.
            Err(nix::errno::Errno::ENOENT | nix::errno::Errno::EACCES)
                if point != Path::new("/") => {}
            Err(e) => bail!(
                "cannot make {} read-only for --read-only: {e}",
                point.display()
            ),
        }
    }
    for (dir, opts) in [("/tmp", "mode=1777"), ("/dev/shm", "mode=1777")] {
        if Path::new(dir).is_dir() {
            mount(
                Some("warren-tmp"),
                dir,
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                Some(opts),
            )
            .with_context(|| format!("mounting a private {dir}"))?;
        }
    }
    for w in writable {
        mount(
            Some(w.as_path()),
            w.as_path(),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .with_context(|| format!("binding --writable {}", w.display()))?;
        remount(w, false).with_context(|| {
            format!(
                "cannot make --writable {} writable (is it read-only on the host?)",
                w.display()
            )
        })?;
    }
    Ok(())
}

/// The mount points of a `/proc/PID/mountinfo`, in order, with the octal
/// escapes (`\040` for a space…) decoded.
fn mount_points(info: &str) -> Vec<PathBuf> {
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .collect()
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Landlock on the sandbox's command for `--read-only` (module doc).
pub fn restrict_command(writable: &[PathBuf]) -> Result<()> {
    let mut read_write = vec![PathBuf::from("/tmp"), PathBuf::from("/dev")];
    read_write.extend(writable.iter().cloned());
    let fs = crate::daemon::confine::Filesystem {
        read_write,
        read_only: vec![PathBuf::from("/")],
    };
    let status = crate::daemon::confine::restrict_filesystem(&fs)?;
    if status != "enforced" {
        eprintln!("warren: --read-only: Landlock is {status}; the read-only mounts still hold");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_read_and_unescaped() {
        let info = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda rw\n\
                    23 22 0:5 / /dev rw,nosuid shared:2 - devtmpfs udev rw\n\
                    40 22 0:40 / /mnt/my\\040disk rw - ext4 /dev/vdb rw\n";
        assert_eq!(
            mount_points(info),
            vec![
                PathBuf::from("/"),
                PathBuf::from("/dev"),
                PathBuf::from("/mnt/my disk")
            ]
        );
        assert_eq!(unescape("a\\134b"), "a\\b");
        assert_eq!(unescape("trailing\\04"), "trailing\\04");
    }
}
