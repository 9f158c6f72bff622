//! The CLI's HTTP client, and auto-starting the daemon.
//!
//! Each CLI call makes one connection to the unix socket and one request on
//! a current-thread tokio runtime (no extra threads: `warren exec` must be
//! single-threaded to `setns` into a user namespace afterwards). When the
//! socket is missing or refuses connections, the CLI starts `warren daemon`
//! detached (its own session, output to `daemon.log` in the runtime
//! directory) and waits until `/v1/ping` answers, so a new user never starts
//! the daemon by hand.
//!
//! The CLI talks only to its own daemon (see [`crate::daemon::paths`],
//! "Trust"): before each connection the runtime directory and the socket
//! must be the caller's and private, and after it the peer (`SO_PEERCRED`)
//! must run as the caller; otherwise the request is never sent, no daemon
//! is started, and the error is an [`Untrusted`].

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::types::ErrorBody;
use crate::daemon::paths::{self, Paths, Untrusted};

/// How long the CLI waits for a daemon it started.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// An error the daemon answered with: printed as `error` and `hint`.
#[derive(Debug)]
pub struct ApiFailure {
    pub status: u16,
    pub body: ErrorBody,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.body.error)
    }
}

impl std::error::Error for ApiFailure {}

/// A connection-less client: one request per call.
pub struct Client {
    paths: Paths,
    rt: tokio::runtime::Runtime,
    /// The `warren` binary that can run `warren daemon`.
    exe: PathBuf,
}

impl Client {
    /// A client for the daemon of `paths`, starting it when it is not running.
    pub fn connect(paths: &Paths) -> Result<Client> {
        let exe = std::env::current_exe().context("locating the warren binary")?;
        Client::connect_with(paths, exe)
    }

    /// As [`Client::connect`], starting the daemon from the `warren` binary
    /// `exe` (the CNI plugin is another binary).
    pub fn connect_with(paths: &Paths, exe: PathBuf) -> Result<Client> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("tokio runtime")?;
        let client = Client {
            paths: paths.clone(),
            rt,
            exe,
        };
        match client.ping() {
            Ok(()) => {}
            // Someone else's directory or daemon: neither used nor replaced.
            Err(e) if e.is::<Untrusted>() => return Err(e),
            Err(_) => client.start_daemon()?,
        }
        Ok(client)
    }

    fn ping(&self) -> Result<()> {
        self.request::<(), serde_json::Value>(Method::GET, "/v1/ping", None)
            .map(|_| ())
    }

    fn start_daemon(&self) -> Result<()> {
        self.paths.prepare()?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.paths.daemon_log())
            .with_context(|| format!("opening {}", self.paths.daemon_log().display()))?;
        let mut child = Command::new(&self.exe)
            .arg("--state-dir")
            .arg(&self.paths.state)
            .arg("--runtime-dir")
            .arg(&self.paths.runtime)
            .arg("daemon")
            .arg("--setsid")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .context("starting warren daemon")?;
        let deadline = Instant::now() + START_TIMEOUT;
        let mut lost_the_race = false;
        loop {
            match self.ping() {
                Ok(()) => return Ok(()),
                Err(e) if e.is::<Untrusted>() => return Err(e),
                Err(_) => {}
            }
            if lost_the_race {
                // Waiting for the daemon another CLI started.
            } else if let Ok(Some(status)) = child.try_wait() {
                // Another CLI may have won the race to start it: its daemon
                // holds the pid file's lock (which made ours stop) and may
                // not answer yet; wait for it as for our own.
                if self.ping().is_ok() {
                    return Ok(());
                }
                if !self.daemon_holds_the_lock() {
                    bail!(
                        "warren daemon exited during start-up ({status}); its log {} says:\n{}",
                        self.paths.daemon_log().display(),
                        log_tail(&self.paths.daemon_log())
                    );
                }
                lost_the_race = true;
            }
            if Instant::now() > deadline {
                bail!(
                    "warren daemon did not answer within {START_TIMEOUT:?}; see {}",
                    self.paths.daemon_log().display()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether a daemon holds the pid file's lock: it runs, or is still
    /// starting (it takes the lock before it binds the socket).
    fn daemon_holds_the_lock(&self) -> bool {
        use nix::fcntl::{Flock, FlockArg};
        let Ok(file) = std::fs::File::open(self.paths.pid_file()) else {
            return false;
        };
        Flock::lock(file, FlockArg::LockSharedNonblock).is_err()
    }

    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.request::<(), T>(Method::GET, path, None)
    }

    pub fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        self.request(Method::POST, path, Some(body))
    }

    pub fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.request::<(), T>(Method::DELETE, path, None)
    }

    fn request<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T> {
        let body = match body {
            Some(b) => serde_json::to_vec(b)?,
            None => Vec::new(),
        };
        self.paths.check_runtime()?;
        self.rt.block_on(async move {
            let resp = self.send(method, path, body).await?;
            let status = resp.status();
            let bytes = resp.into_body().collect().await?.to_bytes();
            if !status.is_success() {
                return Err(failure(status, &bytes));
            }
            serde_json::from_slice(&bytes)
                .with_context(|| format!("parsing the daemon's answer to {path}"))
        })
    }

    /// `GET path`, whose answer is newline-delimited: `each` gets every
    /// line (without its newline) as it arrives, until the daemon ends the
    /// answer or `each` fails. Lines are bounded by [`MAX_STREAM_LINE`].
    pub fn stream(&self, path: &str, mut each: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
        self.paths.check_runtime()?;
        self.rt.block_on(async move {
            let resp = self.send(Method::GET, path, Vec::new()).await?;
            let status = resp.status();
            if !status.is_success() {
                let bytes = resp.into_body().collect().await?.to_bytes();
                return Err(failure(status, &bytes));
            }
            let mut body = resp.into_body();
            let mut buf: Vec<u8> = Vec::new();
            while let Some(frame) = body.frame().await {
                let Ok(data) = frame?.into_data() else {
                    continue;
                };
                buf.extend_from_slice(&data);
                while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=pos).collect();
                    each(&line[..pos])?;
                }
                if buf.len() > MAX_STREAM_LINE {
                    bail!("the daemon sent a line longer than {MAX_STREAM_LINE} bytes");
                }
            }
            Ok(())
        })
    }

    /// Connects (checking who answers) and sends one request.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<hyper::Response<hyper::body::Incoming>> {
        let sock = self.paths.socket();
        let stream = tokio::net::UnixStream::connect(&sock)
            .await
            .with_context(|| format!("connecting to {}", sock.display()))?;
        // Whoever accepted must be us, whatever became of the path
        // since it was checked; nothing is sent before.
        let peer = stream
            .peer_cred()
            .with_context(|| format!("reading the peer credentials on {}", sock.display()))?;
        paths::check_peer(&sock, peer.uid(), paths::caller())?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let req = Request::builder()
            .method(method)
            .uri(format!("http://warren{path}"))
            .header("content-type", "application/json")
            .header("host", "warren")
            .body(Full::new(Bytes::from(body)))?;
        Ok(sender.send_request(req).await?)
    }
}

/// Longest line [`Client::stream`] accepts.
pub const MAX_STREAM_LINE: usize = 1024 * 1024;

/// The daemon's error answer as an [`ApiFailure`].
fn failure(status: hyper::StatusCode, bytes: &[u8]) -> anyhow::Error {
    let body: ErrorBody = serde_json::from_slice(bytes).unwrap_or_else(|_| ErrorBody {
        error: format!(
            "daemon answered {status}: {}",
            String::from_utf8_lossy(bytes)
        ),
        hint: String::new(),
    });
    anyhow!(ApiFailure {
        status: status.as_u16(),
        body
    })
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}
