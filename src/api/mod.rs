//! The daemon's HTTP/1.1 + JSON API on its unix socket.
//!
//! Routes live under `/v1/`; `curl --unix-socket $RUNTIME/warren.sock
//! http://warren/v1/networks` works. Bodies are read as bytes and parsed
//! here, so malformed JSON, unknown fields and wrong types all become the
//! same JSON error shape as every other failure:
//! `{"error": "...", "hint": "..."}` with a fitting status code. Each handler
//! hands its work to a blocking thread: the state lock and the setns helper
//! never stall the runtime.

pub mod events;
pub mod metrics;
pub mod ports;
pub mod types;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::warn;

use crate::daemon::error::ApiError;
use crate::daemon::state::Daemon;
use types::{ErrorBody, Ping};

/// Largest request body accepted.
pub const MAX_BODY: usize = 1024 * 1024;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (
            status,
            Json(ErrorBody {
                error: self.error,
                hint: self.hint,
            }),
        )
            .into_response()
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

/// The router over a shared [`Daemon`].
pub fn router(daemon: Arc<Daemon>) -> Router {
    Router::new()
        .route("/v1/ping", get(ping))
        .route("/v1/cluster", get(cluster_status))
        .route("/metrics", get(metrics))
        .route("/v1/events", get(events::events))
        .route("/v1/networks", get(list_networks).post(create_network))
        .route("/v1/networks/prune", post(prune_networks))
        .route(
            "/v1/networks/{name}",
            get(inspect_network).delete(remove_network),
        )
        .route("/v1/networks/{name}/stats", get(network_stats))
        .route("/v1/networks/{name}/connect", post(connect))
        .route("/v1/networks/{name}/disconnect", post(disconnect))
        .route("/v1/sandboxes", get(list_sandboxes).post(create_sandbox))
        .route(
            "/v1/sandboxes/{id}",
            get(inspect_sandbox).delete(remove_sandbox),
        )
        .route(
            "/v1/sandboxes/{id}/ports",
            get(list_ports).post(publish_ports),
        )
        .route("/v1/sandboxes/{id}/ports/remove", post(unpublish_ports))
        .route("/v1/sandboxes/{id}/stop", post(stop_sandbox))
        .route("/v1/sandboxes/{id}/kill", post(kill_sandbox))
        .fallback(|| async {
            ApiError::not_found(
                "no such API route",
                "routes are under /v1/: networks, sandboxes, events",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::map_response(json_errors))
        .with_state(daemon)
}

/// What axum answers before a handler runs — a query or path that does not
/// parse (plain text), a method the route does not have (405, no body) —
/// in the API's JSON error shape like every other failure (found by the
/// `api_requests` fuzz target).
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let text = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let error = match String::from_utf8_lossy(&text).trim() {
        "" => status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase(),
        t => t.to_string(),
    };
    let hint = if status == StatusCode::METHOD_NOT_ALLOWED {
        "docs/api.md lists the methods of each route"
    } else {
        "send what docs/api.md documents"
    };
    ApiError::new(status.as_u16(), error, hint).into_response()
}

/// The router for a connection whose peer is inside a sandbox
/// ([`crate::daemon::peer`]): every request gets 403, and says why.
/// The router of `--metrics-addr`: `/metrics` alone, for a Prometheus
/// scraper on TCP (everything else is the unix socket's, to its owner).
pub fn metrics_router(daemon: Arc<Daemon>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(|| async {
            ApiError::not_found("only /metrics is served here", "the API is on warren.sock")
        })
        .with_state(daemon)
}

pub fn forbidden(why: String) -> Router {
    Router::new().fallback(move || {
        let why = why.clone();
        async move {
            ApiError::new(
                403,
                format!("the warren API does not serve processes inside a sandbox: the peer {why}"),
                "run warren commands from outside the sandbox (docs/security.md)",
            )
        }
    })
}

/// A request body: read (bounded by [`MAX_BODY`]) and parsed strictly, every
/// failure in the API's JSON error shape.
fn parse<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let body = body.map_err(|e| {
        let status = e.status().as_u16();
        let hint = if status == 413 {
            format!("request bodies are limited to {MAX_BODY} bytes")
        } else {
            String::new()
        };
        ApiError::new(
            status,
            format!("cannot read the request body: {}", e.body_text()),
            hint,
        )
    })?;
    serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            format!("invalid request body: {e}"),
            "send the JSON the API documents (docs/api.md)",
        )
    })
}

/// Runs `f` on a blocking thread and wraps its answer as JSON.
async fn blocking<T, F>(daemon: &Arc<Daemon>, f: F) -> ApiResult<T>
where
    T: Serialize + Send + 'static,
    F: FnOnce(&Daemon) -> Result<T, ApiError> + Send + 'static,
{
    let d = daemon.clone();
    tokio::task::spawn_blocking(move || f(&d))
        .await
        .map_err(ApiError::internal)?
        .map(Json)
}

async fn ping() -> Json<Ping> {
    Json(Ping {
        version: env!("CARGO_PKG_VERSION").into(),
        pid: std::process::id(),
    })
}

/// `GET /metrics`: Prometheus's text format ([`metrics`]).
async fn metrics(State(d): State<Arc<Daemon>>) -> Response {
    let text = tokio::task::spawn_blocking(move || metrics::render(&d))
        .await
        .unwrap_or_default();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn cluster_status(State(d): State<Arc<Daemon>>) -> Json<crate::cluster::ClusterStatus> {
    Json(d.cluster_status())
}

async fn list_networks(State(d): State<Arc<Daemon>>) -> ApiResult<Vec<types::NetworkSummary>> {
    blocking(&d, |d| Ok(d.list_networks())).await
}

async fn create_network(
    State(d): State<Arc<Daemon>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: types::NetworkCreate = parse(body)?;
    let net = blocking(&d, move |d| d.create_network(req)).await?;
    if let Some((name, id, fd)) = d
        .owned_networks()
        .into_iter()
        .find(|(_, id, _)| *id == net.0.id)
    {
        watch_owner(d.clone(), name, id, fd);
    }
    Ok((StatusCode::CREATED, net).into_response())
}

/// How often, and how many times, the removal of an owned network whose
/// owner exited is retried while an attach to it is still in flight.
const OWNER_RETRY: std::time::Duration = std::time::Duration::from_millis(250);
const OWNER_RETRIES: usize = 40;

/// Removes network `name` (id `id`, so a later network of the same name is
/// safe) when its `owner-pid` process exits, however it dies.
pub fn watch_owner(d: Arc<Daemon>, name: String, id: String, pidfd: Arc<std::os::fd::OwnedFd>) {
    tokio::spawn(async move {
        if let Err(e) = crate::sys::pidfd::wait_exit(pidfd).await {
            warn!(network = %name, error = %e, "cannot watch the network's owner; removing it now");
        }
        for _ in 0..OWNER_RETRIES {
            let (d2, n, i) = (d.clone(), name.clone(), id.clone());
            match tokio::task::spawn_blocking(move || d2.owner_gone(&n, &i)).await {
                Ok(false) => tokio::time::sleep(OWNER_RETRY).await,
                _ => return,
            }
        }
    });
}

async fn prune_networks(State(d): State<Arc<Daemon>>) -> ApiResult<types::Pruned> {
    blocking(&d, |d| Ok(d.prune_networks())).await
}

async fn inspect_network(
    State(d): State<Arc<Daemon>>,
    Path(name): Path<String>,
) -> ApiResult<types::NetworkInspect> {
    blocking(&d, move |d| d.inspect_network(&name)).await
}

async fn network_stats(
    State(d): State<Arc<Daemon>>,
    Path(name): Path<String>,
) -> ApiResult<serde_json::Value> {
    blocking(&d, move |d| d.network_stats(&name)).await
}

async fn remove_network(
    State(d): State<Arc<Daemon>>,
    Path(name): Path<String>,
) -> ApiResult<serde_json::Value> {
    blocking(&d, move |d| {
        d.remove_network(&name)
            .map(|n| serde_json::json!({ "removed": n }))
    })
    .await
}

async fn connect(
    State(d): State<Arc<Daemon>>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<serde_json::Value> {
    let req: types::ConnectRequest = parse(body)?;
    blocking(&d, move |d| {
        d.connect(&name, req)
            .map(|ifname| serde_json::json!({ "interface": ifname }))
    })
    .await
}

async fn disconnect(
    State(d): State<Arc<Daemon>>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<serde_json::Value> {
    let req: types::DisconnectRequest = parse(body)?;
    blocking(&d, move |d| {
        d.disconnect(&name, &req.sandbox)
            .map(|()| serde_json::json!({}))
    })
    .await
}

#[derive(serde::Deserialize)]
struct ListQuery {
    /// Exited sandboxes too (`ps -a`).
    #[serde(default)]
    all: bool,
}

async fn list_sandboxes(
    State(d): State<Arc<Daemon>>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Vec<types::SandboxSummary>> {
    blocking(&d, move |d| Ok(d.list_sandboxes(q.all))).await
}

#[derive(serde::Deserialize)]
struct StopQuery {
    /// Seconds between SIGTERM and SIGKILL (Docker's default, 10).
    #[serde(default = "default_stop_secs")]
    t: u64,
}

fn default_stop_secs() -> u64 {
    10
}

/// Longest grace `stop` accepts.
const MAX_STOP_SECS: u64 = 3600;

async fn stop_sandbox(
    State(d): State<Arc<Daemon>>,
    Path(id): Path<String>,
    Query(q): Query<StopQuery>,
) -> ApiResult<serde_json::Value> {
    if q.t > MAX_STOP_SECS {
        return Err(ApiError::bad_request(
            format!("stop timeout {} s is too long", q.t),
            format!("give at most {MAX_STOP_SECS} seconds"),
        ));
    }
    let grace = std::time::Duration::from_secs(q.t);
    blocking(&d, move |d| {
        d.stop_sandbox(&id, grace)
            .map(|n| serde_json::json!({ "stopped": n }))
    })
    .await
}

#[derive(serde::Deserialize)]
struct KillQuery {
    #[serde(default = "default_kill_signal")]
    signal: String,
}

fn default_kill_signal() -> String {
    "KILL".into()
}

/// A signal by name (`TERM`, `SIGTERM`, any case) or number.
pub fn parse_signal(s: &str) -> Result<i32, ApiError> {
    use std::str::FromStr;
    let bad = || {
        ApiError::bad_request(
            format!("invalid signal {s:?}"),
            "give a name such as TERM, SIGHUP or KILL, or a number",
        )
    };
    if let Ok(n) = s.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n)
            .map(|sig| sig as i32)
            .map_err(|_| bad());
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    nix::sys::signal::Signal::from_str(&name)
        .map(|sig| sig as i32)
        .map_err(|_| bad())
}

async fn kill_sandbox(
    State(d): State<Arc<Daemon>>,
    Path(id): Path<String>,
    Query(q): Query<KillQuery>,
) -> ApiResult<serde_json::Value> {
    let signal = parse_signal(&q.signal)?;
    blocking(&d, move |d| {
        d.kill_sandbox(&id, signal)
            .map(|n| serde_json::json!({ "killed": n }))
    })
    .await
}

async fn create_sandbox(
    State(d): State<Arc<Daemon>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: types::SandboxCreate = parse(body)?;
    let dd = d.clone();
    let created = tokio::task::spawn_blocking(move || dd.create_sandbox(req))
        .await
        .map_err(ApiError::internal)??;
    watch_exit(
        d,
        created.answer.id.clone(),
        created.pidfd,
        created.netns_watch,
    );
    Ok((StatusCode::CREATED, Json(created.answer)).into_response())
}

/// How often a netns path is checked for removal.
const NETNS_POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// Frees a sandbox's endpoints as soon as it is gone: its process exits (the
/// pidfd polls readable on exit, however the process died), or, for a
/// sandbox given by netns path, the path stops naming that namespace (the
/// daemon's TAP fds keep the namespace itself alive, so its disappearance
/// cannot be seen any other way). Whichever happens first.
pub fn watch_exit(
    d: Arc<Daemon>,
    id: String,
    pidfd: Option<Arc<std::os::fd::OwnedFd>>,
    netns: Option<crate::daemon::state::NetnsWatch>,
) {
    tokio::spawn(async move {
        let process = async {
            match pidfd {
                Some(fd) => {
                    if let Err(e) = crate::sys::pidfd::wait_exit(fd).await {
                        warn!(id = %id, error = %e, "cannot watch sandbox pidfd; freeing it now");
                    }
                }
                None => std::future::pending().await,
            }
        };
        let path = async {
            match netns {
                Some(w) => {
                    while w.alive() {
                        tokio::time::sleep(NETNS_POLL).await;
                    }
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = process => {},
            () = path => {},
        }
        let _ = tokio::task::spawn_blocking(move || d.sandbox_exited(&id)).await;
    });
}

async fn inspect_sandbox(
    State(d): State<Arc<Daemon>>,
    Path(id): Path<String>,
) -> ApiResult<types::SandboxInspect> {
    blocking(&d, move |d| d.inspect_sandbox(&id)).await
}

#[derive(serde::Deserialize)]
struct RmQuery {
    #[serde(default)]
    force: bool,
    #[serde(default)]
    detach: bool,
}

async fn remove_sandbox(
    State(d): State<Arc<Daemon>>,
    Path(id): Path<String>,
    Query(q): Query<RmQuery>,
) -> ApiResult<serde_json::Value> {
    blocking(&d, move |d| {
        d.remove_sandbox(&id, q.force, q.detach)
            .map(|n| serde_json::json!({ "removed": n }))
    })
    .await
}

async fn list_ports(
    State(d): State<Arc<Daemon>>,
    Path(id): Path<String>,
) -> ApiResult<Vec<ports::PortMapping>> {
    blocking(&d, move |d| d.list_ports(&id)).await
}

/// The mappings of a [`types::PortsRequest`]: its specs parsed, then its
/// mappings.
fn port_mappings(req: types::PortsRequest) -> Result<Vec<ports::PortMapping>, ApiError> {
    let mut out = Vec::new();
    for spec in &req.specs {
        out.extend(ports::parse(spec).map_err(|e| {
            ApiError::bad_request(e, "e.g. 8080:80, 127.0.0.1::80, 53/udp, 8000-8009:80-89")
        })?);
    }
    out.extend(req.ports);
    if out.is_empty() {
        return Err(ApiError::bad_request(
            "no ports given",
            "send {\"specs\": [\"8080:80\"]}",
        ));
    }
    if out.len() > ports::MAX_RANGE {
        return Err(ApiError::bad_request(
            format!("too many ports ({})", out.len()),
            format!("at most {} per request", ports::MAX_RANGE),
        ));
    }
    Ok(out)
}

async fn publish_ports(
    State(d): State<Arc<Daemon>>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let maps = port_mappings(parse(body)?)?;
    let added = blocking(&d, move |d| d.publish_ports(&id, maps)).await?;
    Ok((StatusCode::CREATED, added).into_response())
}

async fn unpublish_ports(
    State(d): State<Arc<Daemon>>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Vec<ports::PortMapping>> {
    let specs = port_mappings(parse(body)?)?;
    blocking(&d, move |d| d.unpublish_ports(&id, specs)).await
}

#[cfg(test)]
mod signal_tests {
    use super::parse_signal;

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(parse_signal("TERM").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("sigkill").unwrap(), libc::SIGKILL);
        assert_eq!(parse_signal("SIGHUP").unwrap(), libc::SIGHUP);
        assert_eq!(parse_signal("9").unwrap(), libc::SIGKILL);
        for bad in ["", "NOPE", "0", "99", "-1", "SIG"] {
            assert!(parse_signal(bad).is_err(), "{bad}");
        }
    }
}
