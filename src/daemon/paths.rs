//! Where warren keeps its files.
//!
//! Network definitions are state (they survive reboots): `$WARREN_STATE_DIR`,
//! else `$XDG_DATA_HOME/warren`, else `~/.local/share/warren`. Everything
//! live (socket, pid file, per-sandbox files, logs) is runtime:
//! `$WARREN_RUNTIME_DIR`, else `$XDG_RUNTIME_DIR/warren`, else
//! `/tmp/warren-$UID`. The runtime directory is mode 0700 and must be owned
//! by the user: anyone who can reach the socket controls the daemon.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

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

    /// Creates the runtime directory (0700) and checks that it is ours and
    /// private; creates the state directory.
    pub fn prepare(&self) -> Result<()> {
        ensure_private_dir(&self.runtime)?;
        for d in [self.runtime.join("sandboxes"), self.logs_dir()] {
            ensure_private_dir(&d)?;
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
}

fn ensure_private_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating runtime directory {}", dir.display()))?;
    let meta = std::fs::metadata(dir).with_context(|| format!("stat {}", dir.display()))?;
    let uid = nix::unistd::getuid().as_raw();
    if meta.uid() != uid {
        bail!(
            "runtime directory {} belongs to uid {}, not to you (uid {uid}); \
             choose another with --runtime-dir or WARREN_RUNTIME_DIR",
            dir.display(),
            meta.uid()
        );
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("chmod 0700 {}", dir.display()))?;
    }
    Ok(())
}
