//! `warren events` (issue 23): the daemon's lifecycle events, kept in a
//! ring for `--since` and streamed live, in Docker's shape.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::Env;

/// What the ring holds from the last minute, as JSON, after `filters`.
fn look_back(env: &Env, filters: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec![
        "events", "--since", "1m", "--until", "0s", "--format", "json",
    ];
    for f in filters {
        args.push("--filter");
        args.push(f);
    }
    let out = env.ok(&args);
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect()
}

fn actions(events: &[serde_json::Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["Type"].as_str().unwrap(),
                e["Action"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn since_shows_a_run_and_an_rm_in_order_with_name_and_exit_code() {
    let env = Env::new();
    let out = env.run(&["run", "--name", "once", "--", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3));
    env.ok(&["rm", "once"]);
    let id = {
        let all = look_back(&env, &["sandbox=once", "type=sandbox"]);
        assert_eq!(
            actions(&all),
            [
                "sandbox create",
                "sandbox start",
                "sandbox die",
                "sandbox destroy"
            ],
            "{all:#?}"
        );
        assert!(all
            .iter()
            .all(|e| e["Actor"]["Attributes"]["name"] == "once"));
        assert_eq!(
            all[2]["Actor"]["Attributes"]["exitCode"], "3",
            "{:#}",
            all[2]
        );
        let seqs: Vec<u64> = all.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
        let nanos: Vec<i64> = all
            .iter()
            .map(|e| e["timeNano"].as_i64().unwrap())
            .collect();
        assert!(nanos.windows(2).all(|w| w[0] <= w[1]), "{nanos:?}");
        assert_eq!(all[0]["time"].as_i64().unwrap(), nanos[0] / 1_000_000_000);
        all[0]["Actor"]["ID"].as_str().unwrap().to_string()
    };
    assert_eq!(id.len(), 64);
    // The endpoint came and went with it, as network events.
    let net = look_back(&env, &["sandbox=once", "type=network"]);
    assert_eq!(
        actions(&net),
        ["network connect", "network disconnect"],
        "{net:#?}"
    );
    assert_eq!(net[0]["Actor"]["Attributes"]["name"], "bridge");
    // `run --rm` is destroyed by itself, as Docker's.
    env.ok(&["run", "--rm", "--name", "brief", "--", "true"]);
    let brief = |env: &Env| actions(&look_back(env, &["sandbox=brief", "type=sandbox"]));
    let all = [
        "sandbox create",
        "sandbox start",
        "sandbox die",
        "sandbox destroy",
    ];
    assert!(
        Env::wait_until(Duration::from_secs(5), || brief(&env) == all),
        "{:?}",
        brief(&env)
    );
    // Docker's default line format.
    let text = env.ok(&[
        "events",
        "--since",
        "1m",
        "--until",
        "0s",
        "--filter",
        "event=die",
    ]);
    let line = text
        .lines()
        .find(|l| l.contains(&id))
        .unwrap_or_else(|| panic!("{text}"));
    let want = format!(" sandbox die {id} (exitCode=3, name=once)");
    assert!(line.ends_with(&want), "{line:?}");
    let stamp = line.split(' ').next().unwrap();
    assert!(
        stamp.len() == "2026-12-04T20:10:00.123456789Z".len() && stamp.ends_with('Z'),
        "{stamp:?}"
    );
    // A template.
    let text = env.ok(&[
        "events",
        "--since",
        "1m",
        "--until",
        "0s",
        "--filter",
        "sandbox=once",
        "--filter",
        "type=sandbox",
        "--format",
        "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}",
    ]);
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        [
            "sandbox create once",
            "sandbox start once",
            "sandbox die once",
            "sandbox destroy once"
        ]
    );
}

#[test]
fn a_live_stream_sees_network_changes_as_they_happen_past_the_connection_timeout() {
    let env = Env::new();
    // The daemon's whole-connection timeout made 2 s by the test hook: the
    // stream must outlive it (an event stream is exempt).
    let out = env
        .cmd(&["network", "ls"])
        .env("WARREN_API_CONNECTION_TIMEOUT", "2s")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    env.start("peer", &[], &["sleep", "120"]);
    std::thread::sleep(Duration::from_millis(20));
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let since = format!("{}.{:09}", since.as_secs(), since.subsec_nanos());
    let mut child = env
        .cmd(&[
            "events",
            "--since",
            &since,
            "--filter",
            "type=network",
            "--format",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = |what: &str| -> serde_json::Value {
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("no {what} event within 10 s ({e})"));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    };
    env.ok(&["network", "create", "live"]);
    let e = next("create");
    assert_eq!(
        (e["Type"].as_str(), e["Action"].as_str()),
        (Some("network"), Some("create")),
        "{e}"
    );
    assert_eq!(e["Actor"]["Attributes"]["name"], "live");
    let net_id = e["Actor"]["ID"].as_str().unwrap().to_string();
    // Past the connection timeout: still streaming.
    std::thread::sleep(Duration::from_millis(2500));
    // Everything from here on was seen live: the stream had shown the
    // create already.
    let started = Instant::now();
    env.ok(&["network", "connect", "live", "peer"]);
    let e = next("connect");
    assert_eq!(e["Action"], "connect", "{e}");
    assert_eq!(e["Actor"]["ID"], net_id.as_str());
    assert_eq!(e["Actor"]["Attributes"]["sandbox"], "peer");
    env.ok(&["network", "disconnect", "live", "peer"]);
    let e = next("disconnect");
    assert_eq!(e["Action"], "disconnect", "{e}");
    assert_eq!(e["Actor"]["Attributes"]["name"], "live");
    env.ok(&["network", "rm", "live"]);
    let e = next("destroy");
    assert_eq!(e["Action"], "destroy", "{e}");
    assert_eq!(e["Actor"]["ID"], net_id.as_str());
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the stream ended by itself"
    );
    let _ = child.kill();
    let _ = child.wait();
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    // Nothing but network events came (the filter), and nothing more.
    if let Ok(line) = rx.try_recv() {
        panic!("unexpected event {line} (stderr {err})");
    }
}

#[test]
fn filters_pick_ports_and_actions() {
    let env = Env::new();
    env.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        "127.0.0.1::8080",
        "--",
        "sleep",
        "120",
    ]);
    env.start("other", &[], &["sleep", "120"]);
    env.ok(&["rm", "-f", "web"]);
    let ports = look_back(&env, &["type=port"]);
    assert_eq!(
        actions(&ports),
        ["port publish", "port unpublish"],
        "{ports:#?}"
    );
    for p in &ports {
        let a = &p["Actor"]["Attributes"];
        assert_eq!(a["name"], "web");
        assert_eq!(a["port"], "8080/tcp");
        assert_eq!(a["hostIP"], "127.0.0.1");
        assert_ne!(a["hostPort"], "0");
        assert_eq!(a["network"], "bridge");
    }
    // Values of one key are alternatives; keys must all match.
    let starts = look_back(&env, &["event=start"]);
    assert_eq!(starts.len(), 2, "{starts:#?}");
    let web = look_back(&env, &["event=start", "event=die", "sandbox=web"]);
    assert_eq!(actions(&web), ["sandbox start", "sandbox die"], "{web:#?}");
    // A die after rm -f's SIGKILL says so.
    assert_eq!(
        web[1]["Actor"]["Attributes"]["exitCode"], "137",
        "{:#}",
        web[1]
    );
    let other_id = env.inspect("other")["Id"].as_str().unwrap().to_string();
    let by_id = look_back(&env, &["sandbox=", "type=sandbox"]);
    assert!(
        by_id.is_empty(),
        "an empty value matches nothing: {by_id:#?}"
    );
    let short = format!("sandbox={}", &other_id[..12]);
    let by_id = look_back(&env, &[&short, "type=sandbox"]);
    assert_eq!(
        actions(&by_id),
        ["sandbox create", "sandbox start"],
        "{by_id:#?}"
    );
    // Unknown keys are refused by name.
    let err = env.fail(&["events", "--until", "0s", "--filter", "image=alpine"]);
    assert!(err.contains("invalid filter 'image'"), "{err}");
}

/// Sends one raw request and returns (status, body).
fn http_get(env: &Env, path: &str) -> (u16, String) {
    let mut s = UnixStream::connect(env.runtime.join("warren.sock")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!("GET {path} HTTP/1.1\r\nHost: warren\r\nConnection: close\r\n\r\n");
    s.write_all(head.as_bytes()).unwrap();
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

#[test]
fn hostile_times_and_filters_get_400_json_errors() {
    let env = Env::new();
    env.ok(&["network", "ls"]);
    for q in [
        "since=abc",
        "since=-1",
        "since=99999999999999999999",
        "since=1e9",
        "since=1.",
        "until=NaN",
        "since=1.0000000001",
        "since=%00",
        "filters=%7B",
        "filters=%7B%22image%22%3A%5B%22x%22%5D%7D",
        "filters=%5B1%5D",
    ] {
        let (status, body) = http_get(&env, &format!("/v1/events?{q}"));
        assert_eq!(status, 400, "{q}: {body}");
        let e: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{q}: not JSON ({e}): {body:?}"));
        assert!(
            e["error"].as_str().is_some_and(|s| !s.is_empty()),
            "{q}: {e}"
        );
    }
    // Too many filter values.
    let many = (0..65)
        .map(|i| format!("%22v{i}%22"))
        .collect::<Vec<_>>()
        .join(",");
    let (status, body) = http_get(
        &env,
        &format!("/v1/events?filters=%7B%22event%22%3A%5B{many}%5D%7D"),
    );
    assert_eq!(status, 400, "{body}");
    // A look back that is already over answers at once and ends.
    let (status, body) = http_get(&env, "/v1/events?since=0&until=1");
    assert_eq!((status, body.as_str()), (200, "0\r\n\r\n"), "{body:?}");
    // The CLI refuses what it cannot read before asking.
    let err = env.fail(&["events", "--since", "yesterday"]);
    assert!(err.contains("--since"), "{err}");
    // And the daemon still serves.
    env.ok(&["network", "ls"]);
}

#[test]
fn attach_and_detach_of_a_runners_namespace() {
    let env = Env::new();
    env.ok(&["network", "create", "dev"]);
    let mut child = common::unshared(&env, &["sleep", "120"]);
    let pid = child.id().to_string();
    env.ok(&["attach", "--pid", &pid, "--name", "box", "--network", "dev"]);
    env.ok(&["detach", "box"]);
    let all = look_back(&env, &["sandbox=box"]);
    assert_eq!(
        actions(&all),
        [
            "sandbox attach",
            "network connect",
            "sandbox detach",
            "network disconnect"
        ],
        "{all:#?}"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_reader_that_falls_behind_is_told_what_it_lost() {
    let env = Env::new();
    env.start("many", &[], &["sleep", "120"]);
    // A stream whose client does not read: the socket's buffer fills,
    // then the daemon's live queue for it.
    let mut s = UnixStream::connect(env.runtime.join("warren.sock")).unwrap();
    s.write_all(b"GET /v1/events?filters=%7B%22type%22%3A%5B%22port%22%5D%7D HTTP/1.1\r\nHost: warren\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // 1024 ports published, unpublished and published again: 3072 events
    // of ~350 bytes, more than the socket and the queue of 256 hold.
    env.ok(&["port", "add", "many", "127.0.0.1::8000-9023"]);
    env.ok(&["port", "rm", "many", "8000-9023"]);
    env.ok(&["port", "add", "many", "127.0.0.1::8000-9023"]);
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut lines = Vec::new();
    let mut reader = BufReader::new(s);
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
        if line.starts_with('{') {
            lines.push(serde_json::from_str::<serde_json::Value>(line.trim()).unwrap());
        }
        line.clear();
    }
    let lost: Vec<&serde_json::Value> = lines.iter().filter(|e| e["Type"] == "warren").collect();
    assert!(
        !lost.is_empty(),
        "no events-lost record in {} lines",
        lines.len()
    );
    let e = lost[0];
    assert_eq!(e["Action"], "events-lost");
    assert_eq!(e["Actor"]["Attributes"]["reason"], "slow");
    let count: usize = e["Actor"]["Attributes"]["count"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let ports = lines.iter().filter(|e| e["Type"] == "port").count();
    assert!(count > 0 && ports < 3072, "lost {count}, got {ports}");
    // What came after the loss is the newest: the last publish's end.
    let last = lines.iter().rev().find(|e| e["Type"] == "port").unwrap();
    assert_eq!(last["Action"], "publish", "{last}");
    assert_eq!(last["Actor"]["Attributes"]["port"], "9023/tcp", "{last}");
}
