//! `GET /metrics` (issue 23): the Prometheus text format, parsed by
//! Prometheus's own Python parser, agreeing with `network stats`.

mod common;

use std::io::Write;
use std::process::Stdio;

use common::{tool, Env};

/// The scrape's samples, parsed: `(name, labels, value)`.
fn scrape(env: &Env) -> Vec<serde_json::Value> {
    let sock = env.runtime.join("warren.sock");
    let out = env
        .user_cmd("curl")
        .args(["-sf", "--unix-socket"])
        .arg(&sock)
        .arg("http://warren/metrics")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let mut parse = env
        .user_cmd("python3")
        .arg(tool("parse_metrics.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    parse.stdin.take().unwrap().write_all(&out.stdout).unwrap();
    let parsed = parse.wait_with_output().unwrap();
    assert!(
        parsed.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&parsed.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&parsed.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn sample<'a>(
    samples: &'a [serde_json::Value],
    name: &str,
    labels: &[(&str, &str)],
) -> Option<&'a serde_json::Value> {
    samples
        .iter()
        .find(|s| s["name"] == name && labels.iter().all(|(k, v)| s["labels"][*k] == *v))
}

#[test]
fn metrics_parse_and_agree_with_network_stats() {
    let env = Env::new();
    env.ok(&["network", "create", "dev"]);
    env.start("a", &["dev"], &["sleep", "300"]);
    env.start("b", &["dev"], &["sleep", "300"]);
    let b = env.ip("b", "dev");
    assert!(env.ping("a", &b));
    // Quiet now: both views of the same counters.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let before = env.stats("dev");
    let samples = scrape(&env);
    let after = env.stats("dev");
    let value = |name: &str, labels: &[(&str, &str)]| -> u64 {
        sample(&samples, name, labels)
            .unwrap_or_else(|| panic!("no {name} {labels:?} in the scrape"))["value"]
            .as_f64()
            .unwrap() as u64
    };
    let dev = [("network", "dev")];
    for (metric, path) in [
        ("warren_switch_rx_frames_total", ["counters", "rx_frames"]),
        ("warren_switch_tx_bytes_total", ["counters", "tx_bytes"]),
        ("warren_gateway_rx_frames_total", ["gateway", "rx_frames"]),
        ("warren_dns_queries_total", ["dns", "queries"]),
    ] {
        let v = value(metric, &dev);
        let (lo, hi) = (
            before[path[0]][path[1]].as_u64().unwrap(),
            after[path[0]][path[1]].as_u64().unwrap(),
        );
        assert!(lo <= v && v <= hi, "{metric} {v}, stats {lo}..{hi}");
    }
    assert!(value("warren_switch_rx_frames_total", &dev) > 0);
    // Every drop reason, labelled.
    for reason in before["counters"]["dropped"].as_object().unwrap().keys() {
        value(
            "warren_switch_dropped_frames_total",
            &[("network", "dev"), ("reason", reason)],
        );
    }
    // Per port: both sandboxes' interfaces, with traffic.
    let ports: Vec<&serde_json::Value> = samples
        .iter()
        .filter(|s| s["name"] == "warren_port_rx_frames_total" && s["labels"]["network"] == "dev")
        .collect();
    assert_eq!(ports.len(), 2, "{ports:?}");
    assert!(ports.iter().all(|p| p["value"].as_f64().unwrap() > 0.0));
    assert!(sample(
        &samples,
        "warren_port_rx_frames_total",
        &[("ipv4", b.as_str())]
    )
    .is_some());
    // Levels are gauges.
    let s = sample(&samples, "warren_network_endpoints", &dev).unwrap();
    assert_eq!(s["type"], "gauge");
    assert_eq!(s["value"], 2.0);
    assert!(value("warren_process_open_fds", &[]) > 0);
    assert!(value("warren_process_resident_memory_bytes", &[]) > 1 << 20);
    let nat = sample(&samples, "warren_nat_tcp_flows", &dev).unwrap();
    assert_eq!(nat["type"], "gauge");
}

#[test]
fn metrics_addr_serves_only_metrics_on_tcp() {
    let env = Env::new();
    let port = common::free_port();
    let addr = format!("127.0.0.1:{port}");
    env.start_daemon(&["--metrics-addr", &addr]);
    let get = |path: &str| {
        env.user_cmd("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("http://{addr}{path}"))
            .output()
            .unwrap()
    };
    let out = get("/metrics");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    let body = env
        .user_cmd("curl")
        .args(["-sf", &format!("http://{addr}/metrics")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&body.stdout);
    assert!(
        text.contains("warren_switch_rx_frames_total{network=\"bridge\"}"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
    // The API is not: nothing but /metrics on TCP.
    let out = get("/v1/networks");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "404");
    // An address it cannot have is an error at start.
    let other = Env::new();
    let out = other.run(&["daemon", "--metrics-addr", "203.0.113.9:9323"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--metrics-addr"));
}
