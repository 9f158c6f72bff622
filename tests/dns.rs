//! End-to-end tests of the embedded DNS server (issue 3): real daemons, real
//! sandboxes, `dig` inside them asking their gateway.
//!
//! Every daemon here is started with `--dns-upstream` pointing at a tiny
//! resolver this test process runs on 127.0.0.1, so no query ever leaves
//! the machine: names under `outside.test.` resolve to 198.51.100.7 (an
//! address that is only ever *named*, never contacted), names starting with
//! `nx` and every other name get NXDOMAIN (but for the flood test's
//! `slow.test.` names, which it never answers).

mod common;

use std::collections::HashSet;
use std::process::Command;
use std::str::FromStr;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use common::upstream::{Reply, Upstream};
use common::{tool, Env};
use hickory_proto::rr::RecordType;

const SLEEP: &[&str] = &["sleep", "600"];

/// The flood test measures latency, so it runs alone among this file's
/// tests (they hold this shared, it exclusively): their daemons and
/// sandboxes starting on the same cores are not what it measures.
static TIMING: RwLock<()> = RwLock::new(());

fn timing_shared() -> RwLockReadGuard<'static, ()> {
    TIMING.read().unwrap_or_else(|e| e.into_inner())
}

fn timing_alone() -> RwLockWriteGuard<'static, ()> {
    TIMING.write().unwrap_or_else(|e| e.into_inner())
}
const OUTSIDE_ADDR: &str = "198.51.100.7";

/// Docker's embedded DNS address, inside every `run` sandbox.
const EMBEDDED: &str = "127.0.0.11";

/// The test's upstream resolver's answers: `outside.test.` names (any
/// type) are OUTSIDE_ADDR unless they start with `nx`; the rest NXDOMAIN.
fn outside(name: &str, _: RecordType) -> Reply {
    if name.ends_with("outside.test.") && !name.starts_with("nx") {
        Reply::A(OUTSIDE_ADDR.parse().unwrap())
    } else {
        Reply::NxDomain
    }
}

/// What `dig` printed.
#[derive(Debug)]
struct Dig {
    status: String,
    /// The rdata of each answer record, in order.
    answers: Vec<String>,
    took: Duration,
    /// dig's whole output, shown when an assertion fails.
    #[allow(dead_code)]
    raw: String,
}

fn need_dig() {
    let ok = Command::new("sh")
        .args(["-c", "command -v dig"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "dig is needed by the DNS tests: run scripts/install-deps (bind9-dnsutils)"
    );
}

/// `dig @server ARGS` inside `sandbox`.
fn dig(env: &Env, sandbox: &str, server: &str, args: &[&str]) -> Dig {
    let at = format!("@{server}");
    let mut cmd = vec![
        "dig",
        at.as_str(),
        "+tries=1",
        "+timeout=6",
        "+noall",
        "+comments",
        "+answer",
    ];
    cmd.extend_from_slice(args);
    let start = Instant::now();
    let out = env.exec(sandbox, &cmd);
    let took = start.elapsed();
    let raw =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let status = raw
        .lines()
        .find_map(|l| l.split("status: ").nth(1))
        .and_then(|rest| rest.split(',').next())
        .unwrap_or("NO-ANSWER")
        .to_string();
    let answers = raw
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().last().map(str::to_string))
        .collect();
    Dig {
        status,
        answers,
        took,
        raw,
    }
}

/// The addresses `name` resolves to from `sandbox` (sorted), requiring
/// NOERROR.
fn resolve(env: &Env, sandbox: &str, server: &str, name: &str) -> Vec<String> {
    let d = dig(env, sandbox, server, &[name]);
    assert_eq!(d.status, "NOERROR", "{name} from {sandbox}: {d:?}");
    let mut v = d.answers;
    v.sort();
    v
}

/// An env whose daemon forwards to `up`.
fn env_with(up: &Upstream) -> Env {
    need_dig();
    let env = Env::new();
    env.start_daemon(&["--dns-upstream", &up.arg()]);
    env
}

fn run_aliased(env: &Env, name: &str, network: &str, alias: &str) {
    env.ok(&[
        "run",
        "-d",
        "--name",
        name,
        "--network",
        network,
        "--network-alias",
        alias,
        "--",
        "sleep",
        "600",
    ]);
}

#[test]
fn seed_walkthrough_names_aliases_round_robin_scope_ptr() {
    let _timing = timing_shared();
    let up = Upstream::start(outside);
    let env = env_with(&up);
    env.ok(&["network", "create", "dev"]);
    env.ok(&["network", "create", "prod"]);
    env.start("es", &["dev"], SLEEP);
    env.start("dev-client", &["dev"], SLEEP);
    run_aliased(&env, "prod-es-1", "prod", "es");
    run_aliased(&env, "prod-es-2", "prod", "es");
    env.start("hello", &["prod"], SLEEP);
    env.start("both", &["dev", "prod"], SLEEP);
    env.start("plain", &[], SLEEP);
    let dev_gw = env.gateway("dev-client", "dev");
    let prod_gw = env.gateway("hello", "prod");
    let bridge_gw = env.gateway("plain", "bridge");
    let es = env.ip("es", "dev");
    let mut prod_es = vec![env.ip("prod-es-1", "prod"), env.ip("prod-es-2", "prod")];
    prod_es.sort();

    // On dev, `es` is the sandbox named es; by name, short id, any case,
    // absolute or not, over UDP and TCP.
    assert_eq!(resolve(&env, "dev-client", &dev_gw, "es"), vec![es.clone()]);
    assert_eq!(
        resolve(&env, "dev-client", &dev_gw, "ES."),
        vec![es.clone()]
    );
    let short_id = env.inspect("es")["Id"].as_str().unwrap()[..12].to_string();
    assert_eq!(
        resolve(&env, "dev-client", &dev_gw, &short_id),
        vec![es.clone()]
    );
    let tcp = dig(&env, "dev-client", &dev_gw, &["+tcp", "es"]);
    assert_eq!(
        (tcp.status.as_str(), tcp.answers.clone()),
        ("NOERROR", vec![es.clone()]),
        "{tcp:?}"
    );
    let aaaa = dig(&env, "dev-client", &dev_gw, &["es", "AAAA"]);
    assert_eq!(
        (aaaa.status.as_str(), aaaa.answers.len()),
        ("NOERROR", 0),
        "{aaaa:?}"
    );

    // On prod, the alias `es` is both prod-es sandboxes, in varying order.
    let script = format!(
        "for i in $(seq 24); do dig @{prod_gw} +tries=1 +timeout=3 +short es | tr '\\n' ' '; echo; done"
    );
    let out = env.exec_ok("hello", &["sh", "-c", &script]);
    let mut orders = HashSet::new();
    for line in out.lines() {
        let addrs: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        let mut sorted = addrs.clone();
        sorted.sort();
        assert_eq!(sorted, prod_es, "every answer has both: {out}");
        orders.insert(addrs);
    }
    assert_eq!(orders.len(), 2, "both orders show up across queries: {out}");

    // From the default bridge, `es` is no container name: it goes upstream.
    let d = dig(&env, "plain", &bridge_gw, &["es"]);
    assert_eq!(d.status, "NXDOMAIN", "{d:?}");
    assert!(d.answers.is_empty());
    assert!(up.asked("es."), "the bridge forwards: {:?}", up.seen());
    assert_eq!(
        dig(&env, "plain", &bridge_gw, &["es-unused.outside.test"]).answers,
        vec![OUTSIDE_ADDR.to_string()]
    );

    // A sandbox on dev and prod: bare names search dev first, qualified
    // names pick the network.
    assert_eq!(resolve(&env, "both", &dev_gw, "es"), vec![es.clone()]);
    assert_eq!(resolve(&env, "both", &prod_gw, "es"), vec![es.clone()]);
    assert_eq!(resolve(&env, "both", &dev_gw, "es.prod"), prod_es);
    assert_eq!(resolve(&env, "both", &prod_gw, "es.dev"), vec![es.clone()]);
    assert_eq!(
        resolve(&env, "both", &dev_gw, "hello.prod"),
        vec![env.ip("hello", "prod")]
    );
    // A dev-only sandbox cannot see prod's names, qualified or not.
    let before = up.seen().len();
    assert_eq!(
        dig(&env, "dev-client", &dev_gw, &["es.prod"]).status,
        "NXDOMAIN"
    );
    assert_eq!(
        dig(&env, "dev-client", &dev_gw, &["hello"]).status,
        "NXDOMAIN"
    );
    assert_eq!(up.seen().len(), before + 2, "not local, so forwarded");

    // Reverse: the PTR of hello on prod is hello.prod.
    let hello = env.ip("hello", "prod");
    let d = dig(&env, "prod-es-1", &prod_gw, &["-x", &hello]);
    assert_eq!(
        (d.status.as_str(), d.answers.clone()),
        ("NOERROR", vec!["hello.prod.".to_string()]),
        "{d:?}"
    );
    let both_prod = env.ip("both", "prod");
    let d = dig(&env, "hello", &prod_gw, &["-x", &both_prod]);
    assert_eq!(d.answers, vec!["both.prod.".to_string()], "{d:?}");

    let stats = env.stats("dev");
    assert!(
        stats["dns"]["answered_local"].as_u64().unwrap() >= 5,
        "{stats}"
    );
    assert!(
        stats["dns"]["tcp_connections"].as_u64().unwrap() >= 1,
        "{stats}"
    );
}

#[test]
fn forwarding_servfail_and_internal_networks() {
    let _timing = timing_shared();
    let mut up = Upstream::start(outside);
    let env = env_with(&up);
    env.ok(&["network", "create", "pub"]);
    env.ok(&["network", "create", "--internal", "priv"]);
    env.start("web", &["pub"], SLEEP);
    env.start("vault", &["priv"], SLEEP);
    env.start("spy", &["priv"], SLEEP);
    let pub_gw = env.gateway("web", "pub");
    let priv_gw = env.gateway("spy", "priv");

    // Outside names resolve through the upstream; NXDOMAIN passes through;
    // over TCP too.
    assert_eq!(
        resolve(&env, "web", &pub_gw, "www.outside.test"),
        vec![OUTSIDE_ADDR]
    );
    assert!(up.asked("www.outside.test."));
    let d = dig(&env, "web", &pub_gw, &["nx.outside.test"]);
    assert_eq!(d.status, "NXDOMAIN", "{d:?}");
    let d = dig(&env, "web", &pub_gw, &["+tcp", "tcp.outside.test"]);
    assert_eq!(
        (d.status.as_str(), d.answers.clone()),
        ("NOERROR", vec![OUTSIDE_ADDR.to_string()]),
        "{d:?}"
    );

    // Internal: local names resolve, nothing else, and nothing is asked upstream.
    assert_eq!(
        resolve(&env, "spy", &priv_gw, "vault"),
        vec![env.ip("vault", "priv")]
    );
    let d = dig(&env, "spy", &priv_gw, &["leak.outside.test"]);
    assert_eq!(d.status, "NXDOMAIN", "{d:?}");
    let d = dig(&env, "spy", &priv_gw, &["+tcp", "leak2.outside.test"]);
    assert_eq!(d.status, "NXDOMAIN", "{d:?}");
    std::thread::sleep(Duration::from_millis(200));
    let seen = up.seen();
    assert!(
        !seen.iter().any(|n| n.starts_with("leak")),
        "an internal network asked upstream: {seen:?}"
    );

    // An upstream that never answers: SERVFAIL within the timeout (2.5 s).
    up.go_silent();
    let d = dig(&env, "web", &pub_gw, &["silent.outside.test"]);
    assert_eq!(d.status, "SERVFAIL", "{d:?}");
    assert!(d.took < Duration::from_secs(5), "{d:?}");
    assert!(up.asked("silent.outside.test."));

    // An upstream that is gone: SERVFAIL, at once.
    up.shut();
    let d = dig(&env, "web", &pub_gw, &["gone.outside.test"]);
    assert_eq!(d.status, "SERVFAIL", "{d:?}");
    assert!(d.took < Duration::from_secs(4), "{d:?}");
    // Local names do not need the upstream.
    assert_eq!(
        resolve(&env, "web", &pub_gw, "web"),
        vec![env.ip("web", "pub")]
    );

    let stats = env.stats("pub")["dns"].clone();
    assert!(stats["forwarded"].as_u64().unwrap() >= 5, "{stats}");
    assert!(stats["servfail"].as_u64().unwrap() >= 2, "{stats}");
    assert!(stats["nxdomain"].as_u64().unwrap() >= 1, "{stats}");
    let stats = env.stats("priv")["dns"].clone();
    assert_eq!(stats["forwarded"].as_u64(), Some(0), "{stats}");
    env.assert_daemon_idle();
}

#[test]
fn names_follow_rm_connect_and_disconnect_at_once() {
    let _timing = timing_shared();
    let up = Upstream::start(outside);
    let env = env_with(&up);
    env.ok(&["network", "create", "dev"]);
    env.start("alpha", &["dev"], SLEEP);
    env.start("bravo", &["dev"], SLEEP);
    env.start("charlie", &[], SLEEP);
    let gw = env.gateway("alpha", "dev");
    assert_eq!(
        resolve(&env, "alpha", &gw, "bravo"),
        vec![env.ip("bravo", "dev")]
    );

    env.ok(&["rm", "-f", "bravo"]);
    let d = dig(&env, "alpha", &gw, &["bravo"]);
    assert_eq!(
        d.status, "NXDOMAIN",
        "a removed sandbox still resolves: {d:?}"
    );

    env.ok(&["network", "connect", "--alias", "late", "dev", "charlie"]);
    let charlie = env.ip("charlie", "dev");
    assert_eq!(resolve(&env, "alpha", &gw, "late"), vec![charlie.clone()]);
    assert_eq!(resolve(&env, "alpha", &gw, "charlie"), vec![charlie]);
    env.ok(&["network", "disconnect", "dev", "charlie"]);
    let d = dig(&env, "alpha", &gw, &["late"]);
    assert_eq!(
        d.status, "NXDOMAIN",
        "a disconnected sandbox still resolves: {d:?}"
    );
}

/// The `NAME: RESULT` lines of the hostile tool.
fn probe(env: &Env, sandbox: &str, gw: &str, mode: &str) -> Vec<(String, String)> {
    let script = tool("dns_hostile.py");
    let out = env.exec_ok(sandbox, &["python3", &script, gw, mode]);
    out.lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn result<'a>(results: &'a [(String, String)], name: &str) -> &'a str {
    results
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no result for {name}: {results:?}"))
}

/// Seconds in "closed after 5.0s".
fn closed_after(text: &str) -> f64 {
    text.strip_prefix("closed after ")
        .and_then(|t| t.strip_suffix('s'))
        .and_then(|t| f64::from_str(t).ok())
        .unwrap_or_else(|| panic!("not closed: {text}"))
}

fn hostile_env() -> (Upstream, Env, String) {
    let up = Upstream::start(outside);
    let env = env_with(&up);
    env.ok(&["network", "create", "dev"]);
    env.start("es", &["dev"], SLEEP);
    env.start("x", &["dev"], SLEEP);
    let gw = env.gateway("x", "dev");
    (up, env, gw)
}

#[test]
fn hostile_udp_queries_are_answered_or_dropped() {
    let _timing = timing_shared();
    let (_up, env, gw) = hostile_env();
    // At the gateway and at 127.0.0.11 alike.
    for server in [gw.as_str(), EMBEDDED] {
        let r = probe(&env, "x", server, "udp");
        let formerr = [
            "pointer-to-itself",
            "pointer-loop",
            "pointer-forward",
            "truncated-question",
            "truncated-type",
            "label-64",
            "name-over-255",
            "qdcount-0",
            "qdcount-2",
            "qdcount-65535",
            "arcount-65535",
            "oversize",
            "reserved-label-type",
        ];
        for name in formerr {
            assert_eq!(result(&r, name), "rcode=1", "{server} {name}: {r:?}");
        }
        assert_eq!(result(&r, "opcode-update"), "rcode=4", "NOTIMP: {r:?}");
        for name in ["truncated-header", "response-bit", "empty"] {
            assert_eq!(result(&r, name), "no-answer", "{server} {name}: {r:?}");
        }
        // Still serving.
        assert_eq!(resolve(&env, "x", server, "es"), vec![env.ip("es", "dev")]);
    }
    let stats = env.stats("dev")["dns"].clone();
    assert!(stats["malformed"].as_u64().unwrap() >= 34, "{stats}");
    assert!(stats["dropped"].as_u64().unwrap() >= 6, "{stats}");
    env.assert_daemon_idle();
}

#[test]
fn hostile_tcp_messages_are_answered_or_closed() {
    let _timing = timing_shared();
    let (_up, env, gw) = hostile_env();
    for server in [gw.as_str(), EMBEDDED] {
        let r = probe(&env, "x", server, "tcp");
        for name in [
            "pointer-loop",
            "label-64",
            "qdcount-0",
            "qdcount-65535",
            "truncated-question",
        ] {
            assert_eq!(result(&r, name), "rcode=1", "{server} {name}: {r:?}");
        }
        for name in ["truncated-header", "response-bit", "empty", "oversize"] {
            assert_eq!(result(&r, name), "closed", "{server} {name}: {r:?}");
        }
        assert_eq!(resolve(&env, "x", server, "es"), vec![env.ip("es", "dev")]);
    }
    env.assert_daemon_idle();
}

#[test]
fn tcp_abuse_idle_reset_and_fairness() {
    let _timing = timing_shared();
    let (_up, env, gw) = hostile_env();
    for server in [gw.as_str(), EMBEDDED] {
        let r = probe(&env, "x", server, "tcp-abuse");
        assert!(closed_after(result(&r, "length-0")) < 1.0, "{server} {r:?}");
        assert!(
            closed_after(result(&r, "length-65535")) < 1.0,
            "{server} {r:?}"
        );
        assert_eq!(result(&r, "prefix-then-reset"), "sent");
        for name in ["half-query", "idle"] {
            let t = closed_after(result(&r, name));
            assert!(
                (3.0..9.0).contains(&t),
                "{server} {name} closed after {t}s: {r:?}"
            );
        }
        // Idle connections never hold up another client.
        let r = probe(&env, "x", server, "tcp-fair");
        let line = result(&r, "second-connection");
        let secs: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|t| t.strip_suffix('s'))
            .and_then(|t| t.parse().ok())
            .unwrap_or(99.0);
        assert!(line.starts_with("rcode=0") && secs < 1.0, "{server} {line}");
        // Every TCP socket is free again: eight queries in a row over TCP.
        for _ in 0..8 {
            let d = dig(&env, "x", server, &["+tcp", "es"]);
            assert_eq!(d.status, "NOERROR", "{server} {d:?}");
        }
    }
    let stats = env.stats("dev")["dns"].clone();
    assert!(stats["tcp_idle_closed"].as_u64().unwrap() >= 4, "{stats}");
    env.assert_daemon_idle();
}

#[test]
fn host_warren_internal_resolves_only_where_host_loopback_is_on() {
    let _timing = timing_shared();
    let env = Env::new();
    env.ok(&[
        "network",
        "create",
        "--opt",
        "host-loopback=true",
        "withhost",
    ]);
    env.ok(&["network", "create", "plain"]);
    env.start("a", &["withhost"], &["sleep", "600"]);
    env.start("b", &["plain"], &["sleep", "600"]);
    let got = env.exec("a", &["getent", "hosts", "host.warren.internal"]);
    let text = String::from_utf8_lossy(&got.stdout);
    assert_eq!(
        text.split_whitespace().next(),
        Some("169.254.1.2"),
        "{text}"
    );
    let got = env.exec("b", &["getent", "hosts", "host.warren.internal"]);
    assert!(
        !got.status.success(),
        "not on a network without host loopback: {}",
        String::from_utf8_lossy(&got.stdout)
    );
}

/// The upstream of the flood test: `slow.test.` names are never answered,
/// `outside.test.` names at once.
fn slow_or_outside(name: &str, kind: RecordType) -> Reply {
    if name.ends_with("slow.test.") {
        Reply::Silent
    } else {
        outside(name, kind)
    }
}

/// One probe's answers: (result, milliseconds) per query, from the `probe`
/// mode of dns_load.py.
fn dns_probe(env: &Env, sandbox: &str, gw: &str, count: usize, suffix: &str) -> Vec<(String, f64)> {
    let script = tool("dns_load.py");
    let count = count.to_string();
    let out = env.exec_ok(sandbox, &["python3", &script, "probe", gw, &count, suffix]);
    out.lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(_, rest)| {
            let (result, ms) = rest.rsplit_once(' ').unwrap_or((rest, "inf"));
            (result.to_string(), ms.parse().unwrap_or(f64::INFINITY))
        })
        .collect()
}

/// The nearest-rank percentile `p` (0–100) of `values`.
fn percentile(values: &[f64], p: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// Issue 16, item 4: one sandbox flooding queries its upstream never
/// answers (400/s, the security review's figure) must not starve the DNS
/// forwarding of a neighbour on its network or of another network: their
/// answers all arrive, quickly, and the flood is counted as limited.
#[test]
fn one_sandbox_flooding_the_forwarder_starves_no_one() {
    flood_starves_no_one(false);
}

/// The same flood and probes at 127.0.0.11: the embedded DNS shares the
/// gateway's bounds (its queries are the sandbox's, under one fair share).
#[test]
fn one_sandbox_flooding_127_0_0_11_starves_no_one() {
    flood_starves_no_one(true);
}

/// The flood test, every query asked at the gateway or, with `embedded`,
/// at 127.0.0.11.
fn flood_starves_no_one(embedded: bool) {
    let _timing = timing_alone();
    let up = Upstream::start(slow_or_outside);
    let env = env_with(&up);
    env.ok(&["network", "create", "shared"]);
    env.ok(&["network", "create", "other"]);
    env.start("hostile", &["shared"], SLEEP);
    env.start("neighbour", &["shared"], SLEEP);
    env.start("elsewhere", &["other"], SLEEP);
    let at = |gw: String| if embedded { EMBEDDED.to_string() } else { gw };
    let shared_gw = at(env.gateway("hostile", "shared"));
    let other_gw = at(env.gateway("elsewhere", "other"));
    // Everything warm (names, python) before the flood starts.
    dns_probe(&env, "neighbour", &shared_gw, 1, "warm.outside.test");
    dns_probe(&env, "elsewhere", &other_gw, 1, "warm.outside.test");

    let flood_secs = 7;
    let script = tool("dns_load.py");
    let flood = env
        .cmd(&[
            "exec",
            "hostile",
            "--",
            "python3",
            &script,
            "flood",
            &shared_gw,
            "400",
            &flood_secs.to_string(),
            "slow.test",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("flood");
    let flood_start = Instant::now();
    // Past the first 2 s every slot the flood can take is taken, and stays
    // so: each of its queries holds one until the forwarder gives up.
    std::thread::sleep(Duration::from_millis(2500));
    let (near, far) = std::thread::scope(|s| {
        let near = s.spawn(|| dns_probe(&env, "neighbour", &shared_gw, 50, "near.outside.test"));
        let far = s.spawn(|| dns_probe(&env, "elsewhere", &other_gw, 50, "far.outside.test"));
        (near.join().unwrap(), far.join().unwrap())
    });
    let probes_took = flood_start.elapsed();
    let flood = flood.wait_with_output().expect("flood ends");
    let flood_out = String::from_utf8_lossy(&flood.stdout).into_owned();
    assert!(
        flood.status.success(),
        "flood: {flood_out}{}",
        String::from_utf8_lossy(&flood.stderr)
    );
    assert!(
        probes_took < Duration::from_secs(flood_secs),
        "the probes ran during the flood: {probes_took:?}"
    );

    // Both figures first (they are what the issue is about), then the checks.
    let mut failures = Vec::new();
    for (who, results) in [("neighbour", &near), ("elsewhere", &far)] {
        let wrong: Vec<_> = results
            .iter()
            .filter(|(r, _)| *r != format!("rcode=0 {OUTSIDE_ADDR}"))
            .collect();
        let ms: Vec<f64> = results.iter().map(|(_, ms)| *ms).collect();
        let (p50, p99) = (percentile(&ms, 50.0), percentile(&ms, 99.0));
        let mut slowest = ms.clone();
        slowest.sort_by(|a, b| b.total_cmp(a));
        slowest.truncate(3);
        eprintln!(
            "{who}: {} queries, p50 {p50:.2} ms, p99 {p99:.2} ms (slowest {slowest:.2?}), {} not answered",
            results.len(),
            wrong.len()
        );
        if results.len() != 50 || !wrong.is_empty() || p99 >= 50.0 {
            failures.push(format!("{who}: p99 {p99:.2} ms, {wrong:?}"));
        }
    }
    assert!(failures.is_empty(), "starved: {failures:?}\n{flood_out}");

    // The flood was refused in part, and counted so.
    let sent: u64 = flood_out
        .split_whitespace()
        .find_map(|w| w.strip_prefix("sent="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no flood summary: {flood_out}"));
    assert!(sent >= 2000, "{flood_out}");
    let stats = env.stats("shared")["dns"].clone();
    eprintln!("{}stats of shared: {stats}", flood_out);
    let limited = stats["limited"].as_u64().unwrap_or(0);
    assert!(limited >= sent / 2, "{flood_out} {stats}");
    assert_eq!(env.stats("other")["dns"]["limited"].as_u64(), Some(0));
    env.assert_daemon_idle();
}

/// The inodes of the sockets bound to 127.0.0.11:53 in the network
/// namespace of process `pid`, from its `/proc/PID/net/{udp,tcp}` (TCP:
/// listening ones only).
fn embedded_sockets(pid: i32) -> Vec<String> {
    let mut out = Vec::new();
    for (file, state) in [("udp", None), ("tcp", Some("0A"))] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{file}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 && f[1] == "0B00007F:0035" && state.map_or(true, |s| f[3] == s) {
                out.push(f[9].to_string());
            }
        }
    }
    out
}

/// The inodes of the daemon's sockets.
fn daemon_socket_inodes(env: &Env) -> HashSet<String> {
    let pid = env.daemon_pid().expect("daemon pid");
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect()
}

fn daemon_fds(env: &Env) -> usize {
    let pid = env.daemon_pid().expect("daemon pid");
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Docker's embedded DNS address: every `run` sandbox has `nameserver
/// 127.0.0.11` in its resolv.conf and is answered there, over UDP and TCP,
/// with the names of every network it is on, `name.network` and outside
/// names; `exec` sees the same; the sockets are the daemon's and go with
/// the sandbox.
#[test]
fn embedded_dns_at_127_0_0_11_over_udp_and_tcp() {
    let _timing = timing_shared();
    let up = Upstream::start(outside);
    let env = env_with(&up);
    env.ok(&["network", "create", "dev"]);
    env.ok(&["network", "create", "prod"]);
    env.start("es", &["dev"], SLEEP);
    env.start("hello", &["prod"], SLEEP);
    env.start("both", &["dev", "prod"], SLEEP);
    let es = env.ip("es", "dev");
    let hello = env.ip("hello", "prod");

    // Docker's resolv.conf: 127.0.0.11 alone, ndots:0 first.
    let conf = env.exec_ok("both", &["cat", "/etc/resolv.conf"]);
    let servers: Vec<&str> = conf
        .lines()
        .filter(|l| l.starts_with("nameserver"))
        .collect();
    assert_eq!(servers, ["nameserver 127.0.0.11"], "{conf}");
    assert!(conf.contains("\noptions ndots:0"), "{conf}");
    // The host's search domains and options are kept (whatever this
    // host's resolv.conf has; the parsing is unit-tested in the daemon).
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let line_of = |text: &str, key: &str| {
        text.lines()
            .filter(|l| l.split_whitespace().next() == Some(key))
            .flat_map(|l| l.split_whitespace().skip(1).map(str::to_string))
            .collect::<Vec<String>>()
    };
    let options = line_of(&conf, "options");
    for o in line_of(&host, "options") {
        assert!(options.contains(&o), "host option {o} lost: {conf}");
    }
    if let Some(search) = host
        .lines()
        .rfind(|l| l.starts_with("search ") || l.starts_with("domain "))
    {
        let want: Vec<&str> = search.split_whitespace().skip(1).take(6).collect();
        assert!(
            conf.contains(&format!("search {}\n", want.join(" "))),
            "{conf}"
        );
    }

    // Names of both networks, qualified names, outside names; UDP and TCP.
    let lo = EMBEDDED;
    for transport in [&[][..], &["+tcp"][..]] {
        let ask = |name: &str| {
            let mut args = transport.to_vec();
            args.push(name);
            let d = dig(&env, "both", lo, &args);
            assert_eq!(d.status, "NOERROR", "{name} {transport:?}: {d:?}");
            d.answers
        };
        assert_eq!(ask("es"), vec![es.clone()]);
        assert_eq!(ask("hello"), vec![hello.clone()]);
        assert_eq!(ask("hello.prod"), vec![hello.clone()]);
        assert_eq!(ask("es.dev"), vec![es.clone()]);
        assert_eq!(ask("www.outside.test"), vec![OUTSIDE_ADDR.to_string()]);
    }
    assert!(up.asked("www.outside.test."));
    // A dev-only sandbox sees dev's names only; NXDOMAIN passes through.
    let d = dig(&env, "es", lo, &["hello"]);
    assert_eq!(d.status, "NXDOMAIN", "{d:?}");
    assert_eq!(resolve(&env, "es", lo, "both"), vec![env.ip("both", "dev")]);
    // PTR too.
    let d = dig(&env, "es", lo, &["-x", &env.ip("both", "dev")]);
    assert_eq!(d.answers, vec!["both.dev.".to_string()], "{d:?}");

    // The command of `run` itself, through its resolv.conf.
    let out = env.ok(&[
        "run",
        "--rm",
        "--network",
        "dev",
        "sh",
        "-c",
        "grep nameserver /etc/resolv.conf; getent hosts es; getent hosts www.outside.test",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "nameserver 127.0.0.11", "{out}");
    assert!(lines[1].starts_with(&es), "{out}");
    assert!(lines[2].starts_with(OUTSIDE_ADDR), "{out}");
    let stats = env.stats("dev")["dns"].clone();
    assert!(stats["embedded"].as_u64().unwrap() >= 10, "{stats}");

    // The sockets live in the sandbox and are the daemon's; after rm they
    // are closed and the daemon holds as many fds as before the sandbox.
    let before = daemon_fds(&env);
    env.start("tmp", &["dev", "prod"], SLEEP);
    let inodes = embedded_sockets(env.pid("tmp"));
    assert_eq!(
        inodes.len(),
        2,
        "a UDP socket and a TCP listener: {inodes:?}"
    );
    let held = daemon_socket_inodes(&env);
    assert!(
        inodes.iter().all(|i| held.contains(i)),
        "the daemon holds {inodes:?}"
    );
    assert_eq!(
        resolve(&env, "tmp", lo, "hello"),
        vec![hello.clone()],
        "exec sees them"
    );
    env.ok(&["rm", "-f", "tmp"]);
    let closed = Env::wait_until(Duration::from_secs(5), || {
        let held = daemon_socket_inodes(&env);
        !inodes.iter().any(|i| held.contains(i)) && daemon_fds(&env) <= before
    });
    assert!(
        closed,
        "after rm the daemon still holds {inodes:?} or more fds than {before} ({})",
        daemon_fds(&env)
    );
    env.assert_daemon_idle();
}

/// A sandbox on an internal network listed *before* an external one:
/// Docker forwards outside names and publishes ports through the external
/// network whatever the order; a sandbox only on the internal network still
/// gets NXDOMAIN and nothing is asked upstream for it.
#[test]
fn internal_network_first_still_forwards_and_publishes() {
    let _timing = timing_shared();
    let up = Upstream::start(outside);
    let env = env_with(&up);
    env.ok(&["network", "create", "--internal", "priv"]);
    env.ok(&["network", "create", "pub"]);
    let hp = common::free_port();
    let spec = format!("{hp}:8000");
    env.ok(&[
        "run",
        "-d",
        "--name",
        "app",
        "--network",
        "priv",
        "--network",
        "pub",
        "-p",
        &spec,
        "--",
        "python3",
        &tool("port_server.py"),
        "tcp",
        "8000",
    ]);
    env.start("vault", &["priv"], SLEEP);
    let priv_gw = env.gateway("app", "priv");

    // Published through pub: a client on the host's loopback gets through.
    let mut reply = None;
    let up_now = Env::wait_until(Duration::from_secs(15), || {
        reply = common::ask_local(hp).ok();
        reply.is_some()
    });
    assert!(
        up_now,
        "-p {spec} answers nothing: {}",
        env.daemon_log_tail()
    );
    let port = env.json(&["inspect", "app"]);
    assert!(
        port.to_string().contains(&hp.to_string()),
        "the port is shown: {port}"
    );

    // Outside names: forwarded at 127.0.0.11 and at the internal gateway.
    for server in [EMBEDDED, priv_gw.as_str()] {
        for args in [
            &["app1.outside.test"][..],
            &["+tcp", "app2.outside.test"][..],
        ] {
            let d = dig(&env, "app", server, args);
            assert_eq!(
                (d.status.as_str(), d.answers.clone()),
                ("NOERROR", vec![OUTSIDE_ADDR.to_string()]),
                "{server} {args:?}: {d:?}"
            );
        }
        assert_eq!(
            resolve(&env, "app", server, "vault"),
            vec![env.ip("vault", "priv")]
        );
    }
    // Only on the internal network: NXDOMAIN everywhere, nothing asked.
    for server in [EMBEDDED, priv_gw.as_str()] {
        let d = dig(&env, "vault", server, &["leak.outside.test"]);
        assert_eq!(d.status, "NXDOMAIN", "{server}: {d:?}");
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(!up.asked("leak.outside.test."), "{:?}", up.seen());
}

/// One thread serves 127.0.0.11 for every sandbox: a sandbox flooding it
/// as fast as it can with queries answered locally (an internal network's
/// NXDOMAIN) leaves a neighbour's queries there answered, and quickly
/// (tokio's cooperative budget makes the flooder's task yield its turn).
#[test]
fn a_local_flood_at_127_0_0_11_leaves_a_neighbour_answered() {
    let _timing = timing_alone();
    let up = Upstream::start(outside);
    let env = env_with(&up);
    env.ok(&["network", "create", "--internal", "priv"]);
    env.ok(&["network", "create", "other"]);
    env.start("hostile", &["priv"], SLEEP);
    env.start("elsewhere", &["other"], SLEEP);
    dns_probe(&env, "elsewhere", EMBEDDED, 1, "warm.outside.test");
    let script = tool("dns_load.py");
    let flood = env
        .cmd(&[
            "exec", "hostile", "--", "python3", &script, "flood", EMBEDDED, "0", "6", "x.test",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("flood");
    std::thread::sleep(Duration::from_millis(1500));
    let during = dns_probe(&env, "elsewhere", EMBEDDED, 50, "during.outside.test");
    let flood = flood.wait_with_output().expect("flood ends");
    let flood_out = String::from_utf8_lossy(&flood.stdout).into_owned();
    let ms: Vec<f64> = during.iter().map(|(_, ms)| *ms).collect();
    let (p50, p99) = (percentile(&ms, 50.0), percentile(&ms, 99.0));
    let stats = env.stats("priv")["dns"].clone();
    eprintln!("neighbour during the flood: p50 {p50:.2} ms, p99 {p99:.2} ms; {flood_out}{stats}");
    let wrong: Vec<_> = during
        .iter()
        .filter(|(r, _)| *r != format!("rcode=0 {OUTSIDE_ADDR}"))
        .collect();
    assert!(wrong.is_empty() && p99 < 50.0, "p99 {p99:.2} ms, {wrong:?}");
    assert!(
        stats["embedded"].as_u64().unwrap() > 10_000,
        "the flood was served: {stats}"
    );
    env.assert_daemon_idle();
}
