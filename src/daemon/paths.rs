//! Where warren keeps its files, and whether warren may trust them.
//!
//! Network definitions are state (they survive reboots): `$WARREN_STATE_DIR`,
//! else `$XDG_DATA_HOME/warren`, else `~/.local/share/warren`. Everything
//! live (socket, pid file, per-sandbox files, logs) is runtime:
//! `$WARREN_RUNTIME_DIR`, else `$XDG_RUNTIME_DIR/warren`, else
//! `/tmp/warren-$UID`.
//!
//! # Trust
//!
//! Whoever answers on the socket is obeyed: the CLI sends it sandboxes to
//! create, and a daemon of someone else's could answer with bind mounts of
//! its choosing. `/tmp/warren-$UID` is a name any local user can guess and
//! create first. So every warren process (the CLI on each connection, the
//! CNI plugin, `warren slirp4netns`, and the daemon before it serves) trusts
//! the runtime directory only when [`check_private_dir`] holds: a real
//! directory (`lstat`, not a symlink) owned by the caller, no group or
//! other permission bits, and every directory above it changeable only by
//! the caller or root (else another user could swap it after the check:
//! world-writable parents such as `/tmp` must have the sticky bit). The
//! socket, if present, must be a socket owned by the caller
//! ([`check_socket`]), and the process that accepted the connection must
//! run as the caller ([`check_peer`], from `SO_PEERCRED`): that last check
//! holds whatever happened to the path between the checks and the
//! `connect`. Nothing is repaired: a directory that was too open may have
//! been filled by someone else, so it is refused, not `chmod`ed.

use std::fs::{FileType, Metadata};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The two directories every warren process agrees on.
#[derive(Debug, Clone)]
pub struct Paths {
    pub state: PathBuf,
    pub runtime: PathBuf,
}

impl Paths {
    /// Resolves the directories from explicit flags (already merged with the
    /// `WARREN_*` variables by clap) and the XDG variables.
    pub fn resolve(state: Option<PathBuf>, runtime: Option<PathBuf>) -> Paths {
        let state = state.unwrap_or_else(|| {
            let base = std::env::var_os("XDG_DATA_HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    let home = std::env::var_os("HOME").unwrap_or_else(|| "/".into());
                    Path::new(&home).join(".local/share")
                });
            base.join("warren")
        });
        let runtime = runtime.unwrap_or_else(|| {
            match std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
                Some(d) => Path::new(&d).join("warren"),
                None => PathBuf::from(format!("/tmp/warren-{}", nix::unistd::getuid())),
            }
        });
        Paths { state, runtime }
    }

    pub fn socket(&self) -> PathBuf {
        self.runtime.join("warren.sock")
    }

    pub fn pid_file(&self) -> PathBuf {
        self.runtime.join("warren.pid")
    }

    pub fn daemon_log(&self) -> PathBuf {
        self.runtime.join("daemon.log")
    }

    pub fn networks_dir(&self) -> PathBuf {
        self.state.join("networks")
    }

    pub fn sandbox_dir(&self, id: &str) -> PathBuf {
        self.runtime.join("sandboxes").join(id)
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.runtime.join("logs")
    }

    /// Records of exited sandboxes (`daemon::exited`).
    pub fn exited_dir(&self) -> PathBuf {
        self.runtime.join("exited")
    }

    /// Creates the runtime directory (0700) unless it exists, and refuses
    /// it unless it is private and ours ([`check_private_dir`]); the same
    /// for its `sandboxes` and `logs`; creates the state directory.
    pub fn prepare(&self) -> Result<()> {
        let me = caller();
        for d in [
            self.runtime.clone(),
            self.runtime.join("sandboxes"),
            self.logs_dir(),
        ] {
            make_private_dir(&d, me)?;
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(self.networks_dir())
            .with_context(|| {
                format!("creating state directory {}", self.networks_dir().display())
            })?;
        Ok(())
    }

    /// Checks, creating and changing nothing, that the runtime directory
    /// and the socket may be trusted: absent (nothing to trust yet: a
    /// connect fails and the CLI starts a daemon, which makes them), or
    /// ours and private. Cheap (a few `lstat`s): the CLI calls it before
    /// every connection.
    pub fn check_runtime(&self) -> Result<(), Untrusted> {
        let me = caller();
        if check_private_dir(&self.runtime, me)? {
            check_socket(&self.socket(), me)?;
        }
        Ok(())
    }
}

/// The uid warren acts for: the effective one, which owns what it creates.
pub fn caller() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// Why warren refuses a runtime directory, a socket or a daemon: another
/// user may have made it to impersonate the caller's daemon.
#[derive(Debug, thiserror::Error)]
#[error("{what}")]
pub struct Untrusted {
    what: String,
    hint: String,
}

impl Untrusted {
    /// What to do about it (printed as the `hint:` line).
    pub fn hint(&self) -> &str {
        &self.hint
    }

    /// The hint of `e` if it is (or wraps) a refusal.
    pub fn hint_of(e: &anyhow::Error) -> Option<&str> {
        e.downcast_ref::<Untrusted>().map(Untrusted::hint)
    }
}

/// The way out that every refusal offers.
const CHOOSE_ANOTHER: &str = "choose a runtime directory of your own with --runtime-dir DIR, \
     WARREN_RUNTIME_DIR=DIR or XDG_RUNTIME_DIR (warren then uses $XDG_RUNTIME_DIR/warren)";

/// Whether `dir` may be trusted as a runtime directory of `me`: `Ok(false)`
/// if it does not exist, `Ok(true)` if it is a directory (by `lstat`: not
/// a symlink) owned by `me`, with no group or other permission bits, whose
/// ancestors only `me` or root can change ([`check_ancestors`]).
pub fn check_private_dir(dir: &Path, me: u32) -> Result<bool, Untrusted> {
    let refuse = |what: String, hint: String| Untrusted {
        what: format!("refusing the runtime directory {}: {what}", dir.display()),
        hint,
    };
    let remove_if_yours = || {
        format!(
            "remove {} if it is yours (warren makes a new one, mode 0700), or {CHOOSE_ANOTHER}",
            dir.display()
        )
    };
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
        Err(e) => {
            return Err(refuse(
                format!("cannot inspect it: {e}"),
                CHOOSE_ANOTHER.into(),
            ))
        }
    };
    let ft = meta.file_type();
    if ft.is_symlink() {
        let target = std::fs::read_link(dir)
            .map(|t| format!(" to {}", t.display()))
            .unwrap_or_default();
        return Err(refuse(
            format!(
                "it is a symbolic link{target}, made by {}, not a directory",
                owner(meta.uid())
            ),
            remove_if_yours(),
        ));
    }
    if !ft.is_dir() {
        return Err(refuse(
            format!("it is {}, not a directory", kind(ft)),
            remove_if_yours(),
        ));
    }
    if meta.uid() != me {
        return Err(refuse(
            format!(
                "it belongs to {}, not to you (uid {me}); another user may have made it \
                 to impersonate your warren daemon",
                owner(meta.uid())
            ),
            format!("{CHOOSE_ANOTHER}; or have its owner or root remove it"),
        ));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(refuse(
            format!(
                "its mode is {:04o}, so other users can reach or change what is in it \
                 (it must be 0700); it is not made private now because someone may \
                 already have put files in it",
                meta.mode() & 0o7777
            ),
            remove_if_yours(),
        ));
    }
    check_ancestors(dir, me).map_err(|(ancestor, why)| {
        refuse(
            format!(
                "{} {why}, so another user could replace it",
                ancestor.display()
            ),
            CHOOSE_ANOTHER.into(),
        )
    })?;
    Ok(true)
}

/// Every directory above `dir`, as written and as resolved, must be
/// changeable by `me` or root only: owned by one of them, and not writable
/// by group or others unless sticky (as `/tmp`, where others cannot rename
/// or remove what is ours); a symlink on the way must be owned by one of
/// them too. Returns the first that is not, and why.
fn check_ancestors(dir: &Path, me: u32) -> Result<(), (PathBuf, String)> {
    let trusted = |uid: u32| uid == me || uid == 0;
    let abs = std::path::absolute(dir).map_err(|e| (dir.to_path_buf(), e.to_string()))?;
    let Some(parent) = abs.parent() else {
        return Ok(());
    };
    let resolved =
        std::fs::canonicalize(parent).map_err(|e| (parent.to_path_buf(), e.to_string()))?;
    for p in parent.ancestors().chain(resolved.ancestors()) {
        let link = std::fs::symlink_metadata(p).map_err(|e| (p.to_path_buf(), e.to_string()))?;
        if link.file_type().is_symlink() && !trusted(link.uid()) {
            return Err((
                p.to_path_buf(),
                format!("is a symbolic link of {}", owner(link.uid())),
            ));
        }
        let meta = std::fs::metadata(p).map_err(|e| (p.to_path_buf(), e.to_string()))?;
        if !trusted(meta.uid()) {
            return Err((p.to_path_buf(), format!("belongs to {}", owner(meta.uid()))));
        }
        if meta.mode() & 0o022 != 0 && meta.mode() & 0o1000 == 0 {
            return Err((
                p.to_path_buf(),
                format!(
                    "is writable by other users (mode {:04o}) without the sticky bit",
                    meta.mode() & 0o7777
                ),
            ));
        }
    }
    Ok(())
}

/// The daemon's socket `sock`, if present, must be a socket (by `lstat`)
/// owned by `me`.
pub fn check_socket(sock: &Path, me: u32) -> Result<(), Untrusted> {
    let refuse = |what: String| {
        Untrusted {
        what: format!("refusing the daemon socket {}: {what}", sock.display()),
        hint: format!(
            "remove {} if it is yours (the next warren command starts the daemon), or {CHOOSE_ANOTHER}",
            sock.display()
        ),
    }
    };
    let meta: Metadata = match std::fs::symlink_metadata(sock) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(refuse(format!("cannot inspect it: {e}"))),
    };
    if !meta.file_type().is_socket() {
        return Err(refuse(format!(
            "it is {}, not a socket",
            kind(meta.file_type())
        )));
    }
    if meta.uid() != me {
        return Err(refuse(format!(
            "it belongs to {}, not to you (uid {me}); another user may be impersonating \
             your warren daemon",
            owner(meta.uid())
        )));
    }
    Ok(())
}

/// The process that accepted our connection on `sock` (its uid `peer`,
/// from `SO_PEERCRED`) must run as `me`.
pub fn check_peer(sock: &Path, peer: u32, me: u32) -> Result<(), Untrusted> {
    if peer == me {
        return Ok(());
    }
    Err(Untrusted {
        what: format!(
            "refusing the daemon at {}: it runs as {}, not as you (uid {me}); another user \
             may be impersonating your warren daemon (nothing was sent to it)",
            sock.display(),
            owner(peer)
        ),
        hint: format!(
            "have root find and stop that process and remove {}, or {CHOOSE_ANOTHER}",
            sock.display()
        ),
    })
}

/// Creates `dir` (0700; its missing parents too) unless it exists, then
/// refuses it unless [`check_private_dir`] holds. An existing directory is
/// never changed.
fn make_private_dir(dir: &Path, me: u32) -> Result<()> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    // Not recursive: mkdir fails on anything already there, a symlink too,
    // instead of following it.
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(e).with_context(|| format!("creating runtime directory {}", dir.display()))
        }
    }
    if !check_private_dir(dir, me)? {
        anyhow::bail!(
            "runtime directory {} vanished while being made",
            dir.display()
        );
    }
    Ok(())
}

/// "uid N (name)", the name when the user database has one.
fn owner(uid: u32) -> String {
    match nix::unistd::User::from_uid(uid.into()) {
        Ok(Some(u)) => format!("uid {uid} ({})", u.name),
        _ => format!("uid {uid}"),
    }
}

/// What a file is, for messages.
fn kind(ft: FileType) -> &'static str {
    if ft.is_symlink() {
        "a symbolic link"
    } else if ft.is_dir() {
        "a directory"
    } else if ft.is_file() {
        "a regular file"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_fifo() {
        "a fifo"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_char_device() {
        "a character device"
    } else {
        "an unknown kind of file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh path directly in /tmp (root's, sticky: a trusted parent
    /// for any uid), removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new() -> Scratch {
            static N: AtomicUsize = AtomicUsize::new(0);
            let n = N.fetch_add(1, Ordering::SeqCst);
            let p = std::env::temp_dir().join(format!("warren-paths-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            let _ = std::fs::remove_file(&p);
            Scratch(p)
        }

        fn dir(mode: u32) -> Scratch {
            let s = Scratch::new();
            std::fs::create_dir(&s.0).unwrap();
            std::fs::set_permissions(&s.0, std::fs::Permissions::from_mode(mode)).unwrap();
            s
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn refusal(r: Result<bool, Untrusted>) -> Untrusted {
        r.expect_err("refused")
    }

    #[test]
    fn an_absent_directory_is_nothing_to_trust_yet() {
        let s = Scratch::new();
        assert!(!check_private_dir(&s.0, caller()).unwrap());
        assert!(!check_private_dir(&s.0.join("below"), caller()).unwrap());
    }

    #[test]
    fn a_private_directory_of_ours_is_trusted() {
        let s = Scratch::dir(0o700);
        assert!(check_private_dir(&s.0, caller()).unwrap());
    }

    #[test]
    fn a_directory_of_another_uid_is_refused_with_its_owner() {
        let s = Scratch::dir(0o700);
        let me = caller() + 1;
        let u = refusal(check_private_dir(&s.0, me));
        let msg = u.to_string();
        assert!(msg.contains(&s.0.display().to_string()), "{msg}");
        assert!(
            msg.contains(&format!("belongs to uid {}", caller())),
            "{msg}"
        );
        assert!(msg.contains(&format!("not to you (uid {me})")), "{msg}");
        for way in ["--runtime-dir", "WARREN_RUNTIME_DIR", "XDG_RUNTIME_DIR"] {
            assert!(u.hint().contains(way), "{}", u.hint());
        }
    }

    #[test]
    fn group_or_other_bits_are_refused_and_left_alone() {
        for mode in [0o777, 0o755, 0o710, 0o701, 0o1777] {
            let s = Scratch::dir(mode);
            let u = refusal(check_private_dir(&s.0, caller()));
            assert!(
                u.to_string().contains(&format!("its mode is {mode:04o}")),
                "{u}"
            );
            assert!(u.hint().contains("remove"), "{}", u.hint());
            let now = std::fs::metadata(&s.0).unwrap().mode() & 0o7777;
            assert_eq!(now, mode, "not chmodded");
        }
    }

    #[test]
    fn symlinks_are_refused_wherever_they_point() {
        let target = Scratch::dir(0o700);
        let link = Scratch::new();
        std::os::unix::fs::symlink(&target.0, &link.0).unwrap();
        let u = refusal(check_private_dir(&link.0, caller()));
        assert!(u.to_string().contains("is a symbolic link to"), "{u}");
        assert!(
            u.to_string().contains(&target.0.display().to_string()),
            "{u}"
        );
        // Dangling too.
        drop(target);
        refusal(check_private_dir(&link.0, caller()));
    }

    #[test]
    fn other_kinds_of_file_are_refused() {
        let s = Scratch::new();
        std::fs::write(&s.0, b"").unwrap();
        let u = refusal(check_private_dir(&s.0, caller()));
        assert!(
            u.to_string()
                .contains("it is a regular file, not a directory"),
            "{u}"
        );
    }

    #[test]
    fn parents_others_can_change_are_refused_sticky_ones_are_not() {
        let parent = Scratch::dir(0o777);
        let dir = parent.0.join("run");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let u = refusal(check_private_dir(&dir, caller()));
        let msg = u.to_string();
        assert!(
            msg.contains(&format!(
                "{} is writable by other users (mode 0777) without the sticky bit",
                parent.0.display()
            )),
            "{msg}"
        );
        // As /tmp: others cannot rename or remove what is ours.
        std::fs::set_permissions(&parent.0, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(check_private_dir(&dir, caller()).unwrap());
        // Through a symlink to such a parent: the resolved path is checked too.
        let open = Scratch::dir(0o777);
        let inner = open.0.join("p");
        std::fs::create_dir(&inner).unwrap();
        std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir(inner.join("run")).unwrap();
        std::fs::set_permissions(inner.join("run"), std::fs::Permissions::from_mode(0o700))
            .unwrap();
        let link = Scratch::new();
        std::os::unix::fs::symlink(&inner, &link.0).unwrap();
        let u = refusal(check_private_dir(&link.0.join("run"), caller()));
        assert!(u.to_string().contains("without the sticky bit"), "{u}");
        if nix::unistd::geteuid().is_root() {
            // A parent of another user's, even private, could be swapped by them.
            let theirs = Scratch::dir(0o755);
            std::fs::create_dir(theirs.0.join("run")).unwrap();
            std::fs::set_permissions(theirs.0.join("run"), std::fs::Permissions::from_mode(0o700))
                .unwrap();
            nix::unistd::chown(&theirs.0, Some(65533.into()), None).unwrap();
            let u = refusal(check_private_dir(&theirs.0.join("run"), 0));
            assert!(u.to_string().contains("belongs to uid 65533"), "{u}");
        }
    }

    #[test]
    fn the_socket_must_be_a_socket_of_ours() {
        let s = Scratch::dir(0o700);
        let sock = s.0.join("warren.sock");
        check_socket(&sock, caller()).expect("absent is fine");
        std::fs::write(&sock, b"").unwrap();
        let u = check_socket(&sock, caller()).unwrap_err();
        assert!(
            u.to_string().contains("it is a regular file, not a socket"),
            "{u}"
        );
        std::fs::remove_file(&sock).unwrap();
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        check_socket(&sock, caller()).expect("ours");
        let u = check_socket(&sock, caller() + 1).unwrap_err();
        let msg = u.to_string();
        assert!(msg.contains(&sock.display().to_string()), "{msg}");
        assert!(
            msg.contains(&format!("belongs to uid {}", caller())),
            "{msg}"
        );
        assert!(u.hint().contains("--runtime-dir"), "{}", u.hint());
    }

    #[test]
    fn the_peer_must_run_as_us() {
        let sock = Path::new("/tmp/x/warren.sock");
        check_peer(sock, 1000, 1000).expect("same uid");
        let u = check_peer(sock, 0, 1000).unwrap_err();
        assert_eq!(
            u.to_string(),
            "refusing the daemon at /tmp/x/warren.sock: it runs as uid 0 (root), not as you \
             (uid 1000); another user may be impersonating your warren daemon (nothing was \
             sent to it)"
        );
    }

    #[test]
    fn prepare_makes_a_private_directory_and_refuses_an_open_one() {
        let s = Scratch::new();
        let paths = Paths {
            state: s.0.join("state"),
            runtime: s.0.join("run"),
        };
        std::fs::create_dir(&s.0).unwrap();
        std::fs::set_permissions(&s.0, std::fs::Permissions::from_mode(0o755)).unwrap();
        paths.prepare().unwrap();
        for d in [
            paths.runtime.clone(),
            paths.logs_dir(),
            paths.runtime.join("sandboxes"),
        ] {
            let m = std::fs::symlink_metadata(&d).unwrap();
            assert!(m.is_dir());
            assert_eq!(m.mode() & 0o777, 0o700, "{}", d.display());
            assert_eq!(m.uid(), caller());
        }
        paths.check_runtime().expect("trusted");
        paths.prepare().expect("again");
        std::fs::set_permissions(&paths.runtime, std::fs::Permissions::from_mode(0o733)).unwrap();
        let e = paths.prepare().unwrap_err();
        assert!(e.is::<Untrusted>(), "{e:#}");
        assert!(paths.check_runtime().is_err());
        let m = std::fs::metadata(&paths.runtime).unwrap();
        assert_eq!(m.mode() & 0o777, 0o733, "left alone");
        // A symlink where the directory should be is not followed by mkdir.
        std::fs::set_permissions(&paths.runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
        let elsewhere = s.0.join("elsewhere");
        std::fs::rename(&paths.runtime, &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &paths.runtime).unwrap();
        let e = paths.prepare().unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e:#}");
    }
}
