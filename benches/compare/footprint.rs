//! warren alone: start-up time and the daemon's memory, on an
//! installation of its own (a fresh daemon, so "idle" means idle).
//!
//! 1. Idle: the daemon's `VmRSS` with one network (host loopback opted in)
//!    and no sandbox, a second after it started.
//! 2. Run to ready, 50 times after 3 warm-ups: `warren run --network N --
//!    helper __ready`; the helper prints the wall clock once a non-loopback
//!    interface has its IPv4 address; ready = that minus the clock just
//!    before `warren run` was spawned. p50 (the median: with 50 runs, the
//!    mean of the 25th and 26th) and p99 (nearest rank: with 50 runs, the
//!    slowest), and the whole command's p50 beside it
//!    (namespaces, attach, exec, exit, and the CLI's own start).
//! 3. Per idle sandbox: RSS with 100 `sleep` sandboxes attached, minus idle,
//!    over 100.
//! 4. Per NAT flow: one sandbox opens N idle TCP connections to a listener
//!    of the harness on the host's loopback (through 169.254.1.2); RSS
//!    delta over N.

use std::io::BufRead;
use std::net::TcpListener;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::cleanup;
use crate::common::{BenchDir, Warren};
use crate::report::{self, single, verdict};
use crate::stats::{median, nearest_rank};

const RUNS: usize = 50;
const SANDBOXES: usize = 100;
const FLOWS: usize = 500;

pub fn run(bench: &BenchDir) -> Result<(), String> {
    let w = Warren::new(bench, "footprint-home");
    let teardown = w.clone();
    cleanup::on_exit("warren (footprint): sandboxes and daemon", move || {
        teardown.teardown()
    });
    w.ok(&["network", "create", "--opt", "host-loopback=true", "mem"])?;
    std::thread::sleep(Duration::from_secs(1));
    let idle = w.daemon_rss_kib().ok_or("no daemon RSS")?;
    single(
        "daemon RSS, idle, one network (MB)",
        format!("{:.1}", idle as f64 / 1024.0),
        "< 30 MB",
        verdict(idle as f64 / 1024.0 < 30.0),
    );

    eprintln!("compare: run to ready, {RUNS} runs");
    let helper = bench.helper.display().to_string();
    let (mut ready, mut whole) = (Vec::new(), Vec::new());
    for i in 0..RUNS + 3 {
        let t0 = wall_ns();
        let out = w
            .cmd(&["run", "--network", "mem", "--", &helper, "__ready"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| e.to_string())?;
        let t1 = wall_ns();
        let at: u128 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|_| {
                format!(
                    "run to ready: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )
            })?;
        if i >= 3 {
            ready.push(at.saturating_sub(t0) as f64 / 1e6);
            whole.push((t1 - t0) as f64 / 1e6);
        }
    }
    let p50 = median(&ready).ok_or("no run to ready")?;
    let p99 = nearest_rank(&ready, 99).ok_or("no run to ready")?;
    single(
        "run to ready, p50 / p99 (ms)",
        format!("{p50:.1} / {p99:.1}"),
        "p50 < 30 ms",
        verdict(p50 < 30.0),
    );
    report::note(format!(
        "run to ready: the whole `warren run -- helper` (through its exit) took p50 {:.1} ms, max {:.1} ms",
        median(&whole).unwrap_or(0.0),
        nearest_rank(&whole, 100).unwrap_or(0.0)
    ));

    eprintln!("compare: {SANDBOXES} idle sandboxes");
    for _ in 0..SANDBOXES {
        w.ok(&["run", "-d", "--network", "mem", "--", "sleep", "3600"])?;
    }
    std::thread::sleep(Duration::from_secs(1));
    let loaded = w.daemon_rss_kib().ok_or("no daemon RSS")?;
    let per = (loaded as f64 - idle as f64) / SANDBOXES as f64;
    single(
        &format!("daemon RSS per idle sandbox, {SANDBOXES} attached (KB)"),
        format!("{per:.0}"),
        "< 100 KB",
        verdict(per < 100.0),
    );

    eprintln!("compare: {FLOWS} idle NAT flows");
    let per_flow = nat_flows(&w, bench)?;
    single(
        &format!("daemon RSS per idle NAT flow, {FLOWS} open (KB)"),
        format!("{per_flow:.1}"),
        "",
        "",
    );
    w.teardown();
    Ok(())
}

/// The daemon's RSS growth per idle TCP flow, in KiB.
fn nat_flows(w: &Warren, bench: &BenchDir) -> Result<f64, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    let acceptor = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => held.push(s),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            held.len()
        })
    };
    let before = w.daemon_rss_kib().ok_or("no daemon RSS")?;
    let stopfile = bench.dir.join("hold.stop");
    let mut child = w
        .cmd(&[
            "run",
            "--network",
            "mem",
            "--",
            &bench.helper.display().to_string(),
            "__hold",
            "169.254.1.2",
            &port.to_string(),
            &FLOWS.to_string(),
            &stopfile.display().to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let _ = std::io::BufReader::new(stdout).read_line(&mut line);
    let result = if line.trim() == format!("held {FLOWS}") {
        std::thread::sleep(Duration::from_secs(1));
        let after = w.daemon_rss_kib().ok_or("no daemon RSS")?;
        Ok((after as f64 - before as f64) / FLOWS as f64)
    } else {
        Err(format!("the flows did not open ({})", line.trim()))
    };
    let _ = std::fs::write(&stopfile, b"");
    let _ = child.wait();
    stop.store(true, Ordering::Relaxed);
    let accepted = acceptor.join().unwrap_or(0);
    report::note(format!(
        "NAT flows: {accepted} connections reached the host listener"
    ));
    result
}

fn wall_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}
