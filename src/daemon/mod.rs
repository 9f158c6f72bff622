//! The control plane: `warren daemon`.
//!
//! One unprivileged process in the host's network namespace. Start-up:
//! prepare the runtime directory (0700), take the pid file's lock (one
//! daemon per runtime directory), raise the fd limit, load the stored
//! networks and start a switch thread for each ([`state::Daemon::open`]),
//! then serve the HTTP API ([`crate::api`]) on `warren.sock` (0600) on a
//! tokio runtime, to peers outside every sandbox ([`peer`]: the others get
//! 403 to every request). The API is bounded: at most [`MAX_API_CONNECTIONS`]
//! connections (more are refused), [`API_HEADER_TIMEOUT`] to send headers
//! and [`API_CONNECTION_TIMEOUT`] for a whole connection (an event stream,
//! `GET /v1/events`, excepted: see [`crate::api::events`]), so slow or
//! half-open clients cannot pile up. SIGTERM and SIGINT stop it cleanly; the socket and pid file
//! are removed on the way out. Before its first thread it confines itself
//! ([`confine`]: no_new_privs, Landlock, seccomp), after starting the helper
//! spawner ([`crate::sandbox::spawner`]) that runs the setns helpers outside
//! that confinement.

pub mod confine;
pub mod error;
pub mod events;
pub mod exited;
pub mod ipam;
pub mod paths;
pub mod peer;
pub mod publish;
pub mod record;
pub mod state;
pub mod store;
pub mod util;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use std::time::Duration;

use anyhow::{bail, Context, Result};
use nix::fcntl::{Flock, FlockArg};
use tracing::{debug, info, warn};

use paths::Paths;

/// Most API connections served at once; more are refused.
pub const MAX_API_CONNECTIONS: usize = 256;
/// How long a client may take to send its request headers.
pub const API_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one API connection may last in all (the slowest request, an
/// attach, waits at most 15 s for its helper). An event stream
/// (`GET /v1/events`) is exempt: see [`crate::api::events`].
pub const API_CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);
/// Test hooks, not for users: `WARREN_API_HEADER_TIMEOUT` and
/// `WARREN_API_CONNECTION_TIMEOUT` (humantime durations, e.g. `3s`)
/// replace the two timeouts above, so `tests/api.rs` can show them cut
/// clients off without waiting a minute.
const API_TIMEOUT_VARS: [&str; 2] = ["WARREN_API_HEADER_TIMEOUT", "WARREN_API_CONNECTION_TIMEOUT"];

/// Options of `warren daemon`.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Start a new session first (the CLI's auto-start uses this).
    pub setsid: bool,
    /// DNS servers to forward to; empty means the host's `/etc/resolv.conf`.
    pub dns_upstreams: Vec<std::net::SocketAddr>,
    /// Host address of published ports that name none (default 0.0.0.0).
    pub publish_address: Option<std::net::IpAddr>,
    /// What confinement to apply (see [`confine`]).
    pub confine: confine::Options,
    /// The cluster to join (`--cluster-store`); `None` reads
    /// `STATE/daemon.json`, and without one there the daemon is alone.
    pub cluster: Option<crate::cluster::ClusterConfig>,
    /// Where `/metrics` is served on TCP too (`--metrics-addr`).
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// Most scrapers served at once on `--metrics-addr`; each connection may
/// last [`METRICS_CONNECTION_TIMEOUT`].
const METRICS_CONNECTIONS: usize = 16;
const METRICS_CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `/metrics` on `listener`, bounded like the API socket.
async fn serve_metrics(listener: tokio::net::TcpListener, daemon: Arc<state::Daemon>) {
    let app = crate::api::metrics_router(daemon);
    let slots = Arc::new(tokio::sync::Semaphore::new(METRICS_CONNECTIONS));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue; // dropped: a full house refuses the newcomer
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(API_HEADER_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let _ = tokio::time::timeout(METRICS_CONNECTION_TIMEOUT, conn).await;
            drop(slot);
        });
    }
}

/// The cluster settings of `STATE/daemon.json`, if it has any (Docker's
/// `daemon.json` keys: `cluster-store`, `cluster-advertise`, and warren's
/// `cluster-prefix`, `cluster-ttl` in seconds).
fn cluster_from_file(paths: &Paths) -> Result<Option<crate::cluster::ClusterConfig>> {
    let path = paths.state.join("daemon.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let file: crate::cluster::FileConfig = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a daemon.json warren understands", path.display()))?;
    let Some(store) = file.store else {
        return Ok(None);
    };
    crate::cluster::ClusterConfig::parse(
        &store,
        file.advertise.as_deref(),
        file.prefix.as_deref(),
        file.ttl.map(Duration::from_secs),
    )
    .map(Some)
    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Runs the daemon until SIGTERM/SIGINT.
pub fn run(paths: Paths, opts: Options) -> Result<()> {
    if opts.setsid {
        let _ = nix::unistd::setsid();
    }
    paths.prepare()?;
    let cluster = match opts.cluster.clone() {
        Some(c) => Some(c),
        None => cluster_from_file(&paths)?,
    };
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
    // Per-flow buffers are returned to the kernel when a flow ends (see
    // sys::alloc): without this, bursts of flows leave RSS high for good.
    if !crate::sys::alloc::fix_mmap_threshold(128 * 1024) {
        warn!("could not fix the allocator's mmap threshold");
    }

    let exe = std::env::current_exe().context("locating the warren binary")?;
    // Still single-threaded: the confinement covers every thread. The
    // spawner is started in between, inheriting no_new_privs but not the
    // Landlock domain (see confine.rs for why).
    confine::no_new_privs()?;
    let spawner = crate::sandbox::spawner::start(&exe, opts.confine.seccomp)?;
    let fs = confine::Filesystem::daemon(&paths.state, &paths.runtime);
    let summary = confine::confine(&fs, &opts.confine)?;
    info!(
        %summary,
        spawner = spawner.pid(),
        "confined"
    );
    let mut daemon = state::Daemon::open(paths.clone(), exe, opts.dns_upstreams.clone())?;
    if let Some(ip) = opts.publish_address {
        daemon.set_publish_address(ip);
    }
    let daemon = Arc::new(daemon);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("warren-api")
        .build()?;
    let metrics = opts.metrics_addr;
    let result = rt.block_on(async {
        if let Some(addr) = metrics {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("--metrics-addr {addr}: cannot listen there"))?;
            info!(%addr, "serving /metrics");
            tokio::spawn(serve_metrics(listener, daemon.clone()));
        }
        serve(daemon, &paths, cluster).await
    });
    let _ = std::fs::remove_file(paths.socket());
    let _ = std::fs::remove_file(&pid_path);
    drop(lock);
    result
}

async fn serve(
    daemon: Arc<state::Daemon>,
    paths: &Paths,
    cluster: Option<crate::cluster::ClusterConfig>,
) -> Result<()> {
    let sock = paths.socket();
    let _ = std::fs::remove_file(&sock);
    let listener = tokio::net::UnixListener::bind(&sock)
        .with_context(|| format!("binding {}", sock.display()))?;
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600))?;
    for (id, pidfd, netns) in daemon.take_recovered() {
        crate::api::watch_exit(daemon.clone(), id, pidfd, netns);
    }
    for (name, id, pidfd) in daemon.owned_networks() {
        crate::api::watch_owner(daemon.clone(), name, id, pidfd);
    }
    if let Some(mut gone) = daemon.take_port_gone() {
        let d = daemon.clone();
        tokio::spawn(async move {
            while let Some((network, port)) = gone.recv().await {
                let d = d.clone();
                let _ = tokio::task::spawn_blocking(move || d.port_gone(&network, port)).await;
            }
        });
    }
    if let Some(cfg) = cluster {
        info!(store = %cfg.store, advertise = %cfg.advertise, prefix = %cfg.prefix, "joining a cluster");
        // The overlay networks reach the daemon's state through a weak
        // reference: the membership task must not keep the daemon alive.
        let weak = Arc::downgrade(&daemon);
        let hook: crate::cluster::NetworksHook = Arc::new(move |records| {
            if let Some(d) = weak.upgrade() {
                d.reconcile_overlays(records);
            }
        });
        daemon.set_cluster(crate::cluster::Cluster::start(cfg, hook));
    }
    info!(socket = %sock.display(), pid = std::process::id(), "warren daemon ready");
    let app = crate::api::router(daemon.clone());
    let peers = peer::PeerCheck::new().context("reading /proc/self/uid_map")?;
    let [header_timeout, connection_timeout] = api_timeouts();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_API_CONNECTIONS));
    let shutdown = shutdown_signal(crate::sandbox::spawner::installed().map(|s| s.pidfd()));
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // A full house refuses the newcomer rather than queueing without bound.
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            warn!(
                limit = MAX_API_CONNECTIONS,
                "too many API connections; refusing one"
            );
            continue;
        };
        // A sandbox's process is refused by who it is (docs/security.md).
        let router = match peers.check(&stream) {
            Ok(()) => app.clone(),
            Err(why) => {
                warn!(peer = %why, "refusing an API connection from inside a sandbox");
                crate::api::forbidden(why)
            }
        };
        let lease = crate::api::events::StreamLease::default();
        let router = router.layer(axum::Extension(lease.clone()));
        let service = hyper_util::service::TowerToHyperService::new(router);
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::pin!(conn);
            // The whole exchange is bounded too: a client that sends its
            // headers and then trickles (or never sends) its body is cut
            // off. An event stream is not (api::events says why).
            tokio::select! {
                _ = &mut conn => {}
                () = tokio::time::sleep(connection_timeout) => {
                    if lease.streaming() {
                        let _ = conn.await;
                    } else {
                        debug!("API connection timed out");
                    }
                }
            }
            drop(slot);
        });
    }
    if let Some(c) = daemon.cluster() {
        c.leave().await;
    }
    info!("warren daemon stopped");
    Ok(())
}

/// The API's header and connection timeouts: the constants, unless the
/// test hooks ([`API_TIMEOUT_VARS`]) say otherwise.
fn api_timeouts() -> [Duration; 2] {
    let defaults = [API_HEADER_TIMEOUT, API_CONNECTION_TIMEOUT];
    std::array::from_fn(|i| {
        let Ok(v) = std::env::var(API_TIMEOUT_VARS[i]) else {
            return defaults[i];
        };
        match humantime::parse_duration(&v) {
            Ok(d) => {
                warn!(variable = API_TIMEOUT_VARS[i], timeout = ?d, "API timeout set by a test hook");
                d
            }
            Err(e) => {
                warn!(variable = API_TIMEOUT_VARS[i], error = %e, "ignoring an unreadable API timeout");
                defaults[i]
            }
        }
    })
}

/// SIGTERM, SIGINT, or the end of the helper spawner (`spawner`, a pidfd):
/// without it no sandbox can be attached, and a confined daemon cannot start
/// another, so it stops and the next CLI call starts a daemon that takes
/// every sandbox over.
async fn shutdown_signal(spawner: Option<Arc<std::os::fd::OwnedFd>>) {
    use tokio::signal::unix::{signal, SignalKind};
    let spawner_gone = async move {
        match spawner {
            Some(fd) => {
                let _ = crate::sys::pidfd::wait_exit(fd).await;
                warn!("the helper spawner exited; stopping so the next daemon can take over");
            }
            None => std::future::pending::<()>().await,
        }
    };
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        spawner_gone.await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
        () = spawner_gone => {},
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
