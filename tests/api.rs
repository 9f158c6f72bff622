//! The daemon's HTTP API under bad requests: every failure is the JSON error
//! shape with a fitting status, and the daemon keeps serving.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::Env;

/// Sends one raw HTTP/1.1 request and returns (status, body).
fn http(env: &Env, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut s = UnixStream::connect(env.runtime.join("warren.sock")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: warren\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    // A daemon that refuses the connection may have closed it already
    // (EPIPE): that is an unanswered request, status 0.
    if s.write_all(head.as_bytes()).is_err() {
        return (0, String::new());
    }
    // The daemon may answer (413) before reading the whole body.
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn error_of(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not a JSON error ({e}): {body:?}"))
}

#[test]
fn bad_requests_get_json_errors_and_the_daemon_keeps_serving() {
    let env = Env::new();
    env.ok(&["network", "ls"]); // starts the daemon
    let cases: &[(&str, &str, &[u8], u16, &str)] = &[
        (
            "POST",
            "/v1/networks",
            b"{not json",
            400,
            "invalid request body",
        ),
        (
            "POST",
            "/v1/networks",
            br#"{"name":"x","colour":"red"}"#,
            400,
            "unknown field",
        ),
        (
            "POST",
            "/v1/networks",
            br#"{"name":42}"#,
            400,
            "invalid type",
        ),
        (
            "POST",
            "/v1/networks",
            br#"{"name":"x","subnet":"300.1.0.0/16"}"#,
            400,
            "invalid subnet",
        ),
        ("POST", "/v1/sandboxes", br#"{"pid":0}"#, 400, "invalid pid"),
        (
            "POST",
            "/v1/sandboxes",
            br#"{"pid":1}"#,
            403,
            "not to the daemon\'s user",
        ),
        ("GET", "/v1/networks/nosuch", b"", 404, "not found"),
        ("GET", "/v1/nothing-here", b"", 404, "no such API route"),
        // An error with nothing to add still has its hint (empty).
        (
            "DELETE",
            "/v1/networks/bridge",
            b"",
            403,
            "pre-defined network",
        ),
        // Refused before any handler runs, still in the JSON shape.
        (
            "DELETE",
            "/v1/sandboxes/x?force=maybe",
            b"",
            400,
            "query string",
        ),
        ("PUT", "/v1/ping", b"", 405, "method not allowed"),
        ("GET", "/v1/networks/%ff", b"", 400, "Invalid URL"),
    ];
    for (method, path, body, status, msg) in cases {
        let (got, text) = http(&env, method, path, body);
        assert_eq!(
            got,
            *status,
            "{method} {path} {}: {text}",
            String::from_utf8_lossy(body)
        );
        let err = error_of(&text);
        assert!(
            err["error"].as_str().unwrap().contains(msg),
            "{method} {path}: {err}"
        );
        assert!(err["hint"].is_string(), "{method} {path}: {err}");
    }
    let zeros = vec![0u8; 2 * 1024 * 1024];
    let (got, text) = http(&env, "POST", "/v1/networks", &zeros);
    assert_eq!(got, 413, "{text}");
    assert!(error_of(&text)["hint"]
        .as_str()
        .unwrap()
        .contains("limited"));

    // Nothing was created, and the daemon still answers.
    let nets = env.json(&["network", "ls", "--format", "json"]);
    // bridge, and Docker's host and none.
    assert_eq!(nets.as_array().unwrap().len(), 3, "{nets}");
    assert_eq!(env.ok(&["ps", "-q"]), "");
}

#[test]
fn idle_and_half_sent_clients_neither_block_others_nor_stay_forever() {
    let env = Env::new();
    env.ok(&["network", "ls"]);
    let sock = env.runtime.join("warren.sock");
    // Ten clients that connect and say nothing, one that sends half a header.
    let mut idle: Vec<UnixStream> = (0..10)
        .map(|_| UnixStream::connect(&sock).unwrap())
        .collect();
    let mut half = UnixStream::connect(&sock).unwrap();
    half.write_all(b"POST /v1/networks HTTP/1.1\r\nHost: warren\r\nContent-Le")
        .unwrap();
    idle.push(half);
    // Everyone else is served meanwhile.
    for _ in 0..5 {
        env.ok(&["network", "ls"]);
    }
    // The daemon hangs up on them after its header timeout (10 s).
    let started = std::time::Instant::now();
    for s in &mut idle {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut buf = [0u8; 512];
        let n = s
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("the daemon kept an idle client open: {e}"));
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(
            n == 0 || text.starts_with("HTTP/1.1 408"),
            "expected a hang-up or 408, got {text:?}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "closed after {:?}",
        started.elapsed()
    );
    env.ok(&["network", "ls"]);
}

/// The daemon's fd count.
fn daemon_fds(env: &Env) -> usize {
    let pid = env.daemon_pid().expect("daemon pid");
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Starts the daemon (through a CLI call, as a user does) with the API
/// timeouts' test hooks set (src/daemon/mod.rs).
fn start_with_timeouts(env: &Env, header: &str, connection: &str) {
    let out = env
        .cmd(&["network", "ls"])
        .env("WARREN_API_HEADER_TIMEOUT", header)
        .env("WARREN_API_CONNECTION_TIMEOUT", connection)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// The daemon's fd count once it has stayed the same for 200 ms (at most
/// 4 s of looking).
fn quiet_fds(env: &Env) -> usize {
    let mut last = daemon_fds(env);
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(200));
        let now = daemon_fds(env);
        if now == last {
            return now;
        }
        last = now;
    }
    last
}

#[test]
fn at_most_256_connections_are_served_and_a_freed_slot_serves_the_next() {
    let env = Env::new();
    // Idle clients are cut off at the header timeout: long enough here
    // that all 256 stay while the test looks.
    start_with_timeouts(&env, "120s", "120s");
    let sock = env.runtime.join("warren.sock");
    // Counted once the daemon is quiet: the start-up's own CLI connection
    // may still be closing, and would be counted as one of the 256.
    let before = quiet_fds(&env);
    let mut idle: Vec<UnixStream> = (0..256)
        .map(|_| UnixStream::connect(&sock).unwrap())
        .collect();
    // The daemon has accepted them all (one fd each) before the next comes.
    assert!(
        Env::wait_until(Duration::from_secs(10), || daemon_fds(&env) >= before + 256),
        "the daemon accepted {} of 256",
        daemon_fds(&env) - before
    );
    // The 257th: the kernel accepts it, the daemon closes it unanswered.
    let (status, body) = http(&env, "GET", "/v1/ping", b"");
    assert_eq!(
        (status, body.as_str()),
        (0, ""),
        "a 257th connection was served"
    );
    assert!(
        !env.run(&["network", "ls"]).status.success(),
        "the CLI was served past the limit"
    );
    // The positive control: one client leaves, and its slot serves the
    // next request.
    drop(idle.pop());
    let served = Env::wait_until(Duration::from_secs(5), || {
        http(&env, "GET", "/v1/ping", b"").0 == 200
    });
    assert!(served, "a freed slot did not serve the next client");
    let log = std::fs::read_to_string(env.runtime.join("daemon.log")).unwrap();
    assert!(log.contains("too many API connections"), "{log}");
    drop(idle);
    env.ok(&["network", "ls"]);
}

#[test]
fn a_connection_that_outlasts_the_connection_timeout_is_cut_off() {
    // The default is 60 s; a test hook makes it 3 s so the test need not
    // wait a minute (the mechanism is the same). The header timeout
    // (10 s) does not apply: the headers are complete at once.
    let env = Env::new();
    start_with_timeouts(&env, "10s", "3s");
    let sock = env.runtime.join("warren.sock");
    let head = |len: usize| {
        format!(
            "POST /v1/networks HTTP/1.1\r\nHost: warren\r\nContent-Type: application/json\r\n\
             Content-Length: {len}\r\nConnection: close\r\n\r\n"
        )
    };
    // Sends `body` one byte every 250 ms after the headers; returns the
    // reply (empty if cut off) and how long the connection lasted.
    let trickle = |body: &[u8]| {
        let started = std::time::Instant::now();
        let mut s = UnixStream::connect(&sock).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(head(body.len()).as_bytes()).unwrap();
        for b in body {
            std::thread::sleep(Duration::from_millis(250));
            if s.write_all(&[*b]).is_err() {
                break;
            }
        }
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        (
            String::from_utf8_lossy(&out).into_owned(),
            started.elapsed(),
        )
    };
    // The positive control: a trickle that ends within the timeout is
    // answered (its body is not a network, so 400).
    let (reply, took) = trickle(b"{}");
    assert!(
        reply.starts_with("HTTP/1.1 400"),
        "{reply:?} after {took:?}"
    );
    // A body that would take 25 s: cut off at 3 s, unanswered.
    let (reply, took) = trickle(&[b' '; 100]);
    assert_eq!(reply, "", "answered after {took:?}");
    assert!(
        took >= Duration::from_millis(2900) && took < Duration::from_secs(10),
        "cut off after {took:?}, not at 3 s"
    );
    // Without the hook the limit is the 60 s constant: a trickle of 5 s
    // is answered.
    let env = Env::new();
    env.ok(&["network", "ls"]);
    let sock = env.runtime.join("warren.sock");
    let started = std::time::Instant::now();
    let mut s = UnixStream::connect(&sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(head(20).as_bytes()).unwrap();
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(250));
        s.write_all(b" ").unwrap();
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let reply = String::from_utf8_lossy(&out);
    assert!(
        reply.starts_with("HTTP/1.1 400"),
        "{reply:?} after {:?}",
        started.elapsed()
    );
}
