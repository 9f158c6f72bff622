//! HTTP requests into the daemon's API router, as hyper hands them over:
//! routing, path and query extraction, body parsing and the daemon's own
//! validation (`Daemon::create_network`, `create_sandbox`, `connect`, …)
//! against a real daemon state, and `-p` specs.
//!
//! The daemon is opened once per process, with its state and runtime
//! directories in a temporary directory (on `/dev/shm` where there is one:
//! network definitions are written with fsync), its DNS forwarder pointed
//! at a port where nothing listens, and `/bin/false` as its setns helper,
//! so every attach that needs one fails at once and no namespace is ever
//! entered. After each input every sandbox and every network but `bridge`
//! is removed, so an input starts from the same state as the last.
//!
//! Safety of the host: a sandbox in `host` mode needs no helper and is
//! registered for whatever `pid` the request names, and `rm -f` kills
//! that process. So every request body that is a JSON object has its
//! `pid` replaced with a child of this process's own (a shell that ends
//! with this process, started again when it has been killed); bodies that
//! are not JSON objects reach the daemon as they are (it refuses them
//! before any pid is read). A run's directory is removed by the next run.
//!
//! Input: requests, each a method byte (GET, POST, DELETE, PUT by its
//! value mod 4), a path after a u8 length and a body after a big-endian
//! u16 length (short last fields are taken as they are). The whole input
//! is also parsed as a `-p` spec.
//!
//! What must hold, besides not panicking (a panic in any thread aborts):
//! every answer is JSON (an event stream's, a JSON object per line; it
//! is read for a moment, as it need not end); every error is `{"error": "...", "hint": "..."}`
//! with a 4xx or 5xx status; and the cleanup leaves the daemon with
//! `bridge` alone.
#![no_main]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Body;
use axum::http::{Method, Request};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tower::ServiceExt;
use warren::daemon::paths::Paths;
use warren::daemon::state::Daemon;

/// Requests per input.
const MAX_REQUESTS: usize = 8;
/// Largest answer read back.
const MAX_ANSWER: usize = 4 << 20;
/// How long an answer that has not ended is read (an event stream's).
const EVENT_STREAM_WAIT: std::time::Duration = std::time::Duration::from_millis(20);

struct Harness {
    runtime: tokio::runtime::Runtime,
    daemon: Arc<Daemon>,
    router: axum::Router,
    /// The only process any sandbox may be registered for.
    lamb: Mutex<Child>,
}

static HARNESS: OnceLock<Harness> = OnceLock::new();

/// The stand-in: a shell reading its stdin, a pipe whose other end only
/// this process holds, so it ends when the fuzzer does, however it ends.
fn lamb() -> Child {
    Command::new("sh")
        .args(["-c", "read x"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("api_requests: starting the sandbox's stand-in process")
}

/// Removes the directories of earlier runs whose process is gone.
fn prune(base: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("warren-fuzz-api-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

fn harness() -> &'static Harness {
    HARNESS.get_or_init(|| {
        let base = ["/dev/shm", "/tmp"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        prune(&base);
        let dir = base.join(format!("warren-fuzz-api-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("the fuzz directory");
        let paths = Paths::resolve(Some(dir.join("state")), Some(dir.join("run")));
        paths.prepare().expect("the daemon's directories");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        let daemon = {
            let _guard = runtime.enter();
            Daemon::open(
                paths,
                PathBuf::from("/bin/false"),
                vec!["127.0.0.1:9".parse().unwrap()],
            )
            .expect("the daemon's state")
        };
        let daemon = Arc::new(daemon);
        let router = warren::api::router(daemon.clone());
        Harness {
            runtime,
            daemon,
            router,
            lamb: Mutex::new(lamb()),
        }
    })
}

/// The requests of `data`: (method, path, body).
fn requests(mut data: &[u8]) -> Vec<(Method, &[u8], &[u8])> {
    let mut out = Vec::new();
    while out.len() < MAX_REQUESTS {
        let Some((&m, rest)) = data.split_first() else {
            break;
        };
        let method =
            [Method::GET, Method::POST, Method::DELETE, Method::PUT][usize::from(m % 4)].clone();
        let (path, rest) = match rest.split_first() {
            Some((&len, rest)) => rest.split_at(usize::from(len).min(rest.len())),
            None => (&rest[..0], rest),
        };
        let (body, rest) = match rest.split_first_chunk::<2>() {
            Some((len, rest)) => {
                rest.split_at(usize::from(u16::from_be_bytes(*len)).min(rest.len()))
            }
            None => (&rest[..0], rest),
        };
        out.push((method, path, body));
        data = rest;
    }
    out
}

/// `body` with any top-level `pid` replaced by the stand-in's (see the
/// module documentation); other bodies as they are.
fn tame(body: &[u8], lamb: u32) -> Vec<u8> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(mut map)) => {
            if map.contains_key("pid") {
                map.insert("pid".into(), Value::from(lamb));
            }
            serde_json::to_vec(&Value::Object(map)).expect("JSON")
        }
        _ => body.to_vec(),
    }
}

/// The networks every daemon has (`host` and `none` are listed as Docker's).
const PREDEFINED: [&str; 3] = ["bridge", "host", "none"];

/// Back to `bridge` alone, with no sandbox.
fn clean(d: &Daemon) {
    // Exited ones too: they are kept until rm.
    for s in d.list_sandboxes(true) {
        let _ = d.remove_sandbox(&s.id, true, false);
    }
    for n in d.list_networks() {
        if !PREDEFINED.contains(&n.name.as_str()) {
            let _ = d.remove_network(&n.name);
        }
    }
    let left: Vec<String> = d
        .list_networks()
        .into_iter()
        .map(|n| n.name)
        .filter(|n| !PREDEFINED.contains(&n.as_str()))
        .collect();
    assert!(left.is_empty(), "networks left after the cleanup: {left:?}");
    let left: Vec<String> = d
        .list_sandboxes(true)
        .into_iter()
        .map(|s| format!("{} {} {}", s.id, s.names, s.state))
        .collect();
    assert!(
        left.is_empty(),
        "sandboxes left after the cleanup: {left:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    if let Ok(spec) = std::str::from_utf8(data) {
        let _ = warren::api::ports::parse(spec);
    }
    let h = harness();
    let lamb = {
        let mut lamb = h.lamb.lock().unwrap();
        if !matches!(lamb.try_wait(), Ok(None)) {
            let _ = lamb.wait();
            *lamb = self::lamb();
        }
        lamb.id()
    };
    for (method, path, body) in requests(data) {
        let Ok(path) = std::str::from_utf8(path) else {
            continue;
        };
        // hyper refuses what is not a request target before any routing.
        let Ok(request) = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .body(Body::from(tame(body, lamb)))
        else {
            continue;
        };
        let (status, answer) = h.runtime.block_on(async {
            let response = h.router.clone().oneshot(request).await.expect("infallible");
            let status = response.status();
            // An event stream (`GET /v1/events`) without an `until` past
            // does not end by itself: what it sent within a moment.
            let bytes = tokio::time::timeout(
                EVENT_STREAM_WAIT,
                axum::body::to_bytes(response.into_body(), MAX_ANSWER),
            )
            .await
            .map(|b| b.expect("the answer's body"));
            (status, bytes)
        });
        let Ok(answer) = answer else {
            assert!(status.is_success(), "{status} to {path:?} never ended");
            continue;
        };
        // An event stream's answer is one JSON object per line.
        if status.is_success() && path.starts_with("/v1/events") {
            for line in answer.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let e: Value = serde_json::from_slice(line)
                    .unwrap_or_else(|e| panic!("an event of {path:?} is not JSON ({e}): {line:?}"));
                assert!(e["Type"].is_string() && e["Action"].is_string(), "{e}");
            }
            continue;
        }
        let json: Value = serde_json::from_slice(&answer).unwrap_or_else(|e| {
            panic!(
                "{status} to {path:?} is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&answer)
            )
        });
        if !status.is_success() {
            assert!(
                status.is_client_error() || status.is_server_error(),
                "{status} to {path:?}"
            );
            assert!(
                json["error"].is_string() && json["hint"].is_string(),
                "{status} to {path:?} is not the error shape: {json}"
            );
        }
    }
    clean(&h.daemon);
});
