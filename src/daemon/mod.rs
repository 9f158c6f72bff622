//! The control plane: `warren daemon`.
//!
//! One unprivileged process in the host's network namespace. Start-up:
//! prepare the runtime directory (0700), take the pid file's lock (one
//! daemon per runtime directory), raise the fd limit, load the stored
//! networks and start a switch thread for each ([`state::Daemon::open`]),
//! then serve the HTTP API ([`crate::api`]) on `warren.sock` (0600) on a
//! tokio runtime. SIGTERM and SIGINT stop it cleanly; the socket and pid file
//! are removed on the way out.

pub mod error;
pub mod ipam;
pub mod paths;
pub mod state;
pub mod store;
pub mod util;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use nix::fcntl::{Flock, FlockArg};
use tracing::{info, warn};

use paths::Paths;

/// Options of `warren daemon`.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Start a new session first (the CLI's auto-start uses this).
    pub setsid: bool,
}

/// Runs the daemon until SIGTERM/SIGINT.
pub fn run(paths: Paths, opts: Options) -> Result<()> {
    if opts.setsid {
        let _ = nix::unistd::setsid();
    }
    paths.prepare()?;
    let pid_path = paths.pid_file();
    let pid_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&pid_path)
        .with_context(|| format!("opening {}", pid_path.display()))?;
    let mut lock = match Flock::lock(pid_file, FlockArg::LockExclusiveNonblock) {
        Ok(l) => l,
        Err((_, _)) => {
            let other = std::fs::read_to_string(&pid_path).unwrap_or_default();
            bail!(
                "another warren daemon is running for {} (pid {}); stop it first or use another --runtime-dir",
                paths.runtime.display(),
                other.trim()
            );
        }
    };
    lock.set_len(0)?;
    writeln!(&mut *lock, "{}", std::process::id())?;
    raise_fd_limit();

    let exe = std::env::current_exe().context("locating the warren binary")?;
    let daemon = Arc::new(state::Daemon::open(paths.clone(), exe)?);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("warren-api")
        .build()?;
    let result = rt.block_on(serve(daemon, &paths));
    let _ = std::fs::remove_file(paths.socket());
    let _ = std::fs::remove_file(&pid_path);
    drop(lock);
    result
}

async fn serve(daemon: Arc<state::Daemon>, paths: &Paths) -> Result<()> {
    let sock = paths.socket();
    let _ = std::fs::remove_file(&sock);
    let listener = tokio::net::UnixListener::bind(&sock)
        .with_context(|| format!("binding {}", sock.display()))?;
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600))?;
    if let Some(mut gone) = daemon.take_port_gone() {
        let d = daemon.clone();
        tokio::spawn(async move {
            while let Some((network, port)) = gone.recv().await {
                let d = d.clone();
                let _ = tokio::task::spawn_blocking(move || d.port_gone(&network, port)).await;
            }
        });
    }
    info!(socket = %sock.display(), pid = std::process::id(), "warren daemon ready");
    let app = crate::api::router(daemon);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving the API")?;
    info!("warren daemon stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}

/// Raises the soft fd limit to the hard limit: every endpoint and flow holds
/// fds, and the default soft limit (1024) is far below what a busy daemon needs.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                warn!(error = %e, "cannot raise the fd limit");
            }
        }
        _ => {}
    }
}
