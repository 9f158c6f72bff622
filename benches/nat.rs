//! NAT egress throughput: one iperf3 TCP stream from a sandbox to a server
//! on the host's 127.0.0.1 and back (`-R`), through warren (host loopback
//! opted in, 169.254.1.2), pasta (`--config-net`, gateway mapped to the
//! host) and slirp4netns (`--configure`, 10.0.2.2), all with MTU 65520, side
//! by side in one run. Not a timed test: it prints figures and ratios.
//!
//! Needs iperf3, pasta (Debian `passt`) and slirp4netns
//! (`scripts/install-deps --bench`); skips what is missing. As root, every
//! contender runs as uid 65534 (rootless, like the tests).
//!
//! `cargo bench --bench nat` (WARREN_BENCH_SECS=N to change the 5 s runs).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{bench_dir, bench_secs, free_port, have, parse_iperf, user, Warren};

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    for tool in ["iperf3"] {
        if !have(tool) {
            eprintln!("nat bench skipped: {tool} is not installed (scripts/install-deps --bench)");
            return;
        }
    }
    let secs = bench_secs();
    let (dir, warren) = bench_dir("nat");

    let port = free_port();
    let mut server = Command::new("iperf3")
        .args(["-s", "-B", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("iperf3 server");
    std::thread::sleep(Duration::from_millis(300));

    let mut rows: Vec<(&str, Option<f64>, Option<f64>)> = Vec::new();
    let w = start_warren(&dir, &warren);
    rows.push((
        "warren",
        warren_iperf(&w, port, secs, false),
        warren_iperf(&w, port, secs, true),
    ));
    drop(w);
    if have("pasta") {
        rows.push((
            "pasta",
            pasta(&dir, port, secs, false),
            pasta(&dir, port, secs, true),
        ));
    }
    if have("slirp4netns") {
        rows.push((
            "slirp4netns",
            slirp(&dir, port, secs, false),
            slirp(&dir, port, secs, true),
        ));
    }
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);

    println!("\nNAT egress, one TCP stream, MTU 65520, {secs} s each (Gbit/s)");
    println!("{:<12} {:>14} {:>14}", "", "sandbox→host", "host→sandbox");
    let fmt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.2}", v / 1e9));
    for (name, up, down) in &rows {
        println!("{name:<12} {:>14} {:>14}", fmt(*up), fmt(*down));
    }
    let (_, wu, wd) = rows[0];
    for (name, up, down) in rows.iter().skip(1) {
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.1}x", a / b),
            _ => "-".into(),
        };
        println!(
            "warren / {name}: {} up, {} down",
            ratio(wu, *up),
            ratio(wd, *down)
        );
    }
}

/// A warren installation with a network `bench` that reaches the host's
/// loopback (169.254.1.2).
fn start_warren(dir: &Path, bin: &Path) -> Warren {
    let w = Warren::new(dir, bin);
    let ok = w
        .cmd(&["network", "create", "--opt", "host-loopback=true", "bench"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "warren network create");
    w
}

/// One iperf3 run from a sandbox on `bench` to the host.
fn warren_iperf(w: &Warren, port: u16, secs: u32, reverse: bool) -> Option<f64> {
    let mut args = vec!["run", "--network", "bench", "--", "iperf3"];
    let iperf = iperf_args("169.254.1.2", port, secs, reverse);
    args.extend(iperf.iter().map(String::as_str));
    let out = w.cmd(&args).output().ok()?;
    parse_iperf(&out.stdout)
}

fn iperf_args(server: &str, port: u16, secs: u32, reverse: bool) -> Vec<String> {
    let mut args = vec![
        "-c".to_string(),
        server.to_string(),
        "-p".into(),
        port.to_string(),
        "-t".into(),
        secs.to_string(),
        "-J".into(),
    ];
    if reverse {
        args.push("-R".into());
    }
    args
}

fn pasta(dir: &Path, port: u16, secs: u32, reverse: bool) -> Option<f64> {
    let script = format!(
        "iperf3 {} ",
        iperf_args(
            "$(ip route show default | awk '{print $3}')",
            port,
            secs,
            reverse
        )
        .join(" ")
    );
    let out = user("pasta", dir)
        .args(["--config-net", "-m", "65520", "--", "sh", "-c", &script])
        .stdin(Stdio::null())
        .output()
        .ok()?;
    parse_iperf(&out.stdout)
}

fn slirp(dir: &Path, port: u16, secs: u32, reverse: bool) -> Option<f64> {
    let pid_file = dir.join(format!("slirp-{reverse}.pid"));
    let script = format!(
        "echo $$ > {pid}; i=0; until ip -4 addr show tap0 2>/dev/null | grep -q inet; do \
         i=$((i+1)); [ $i -gt 200 ] && exit 1; sleep 0.05; done; iperf3 {args}",
        pid = pid_file.display(),
        args = iperf_args("10.0.2.2", port, secs, reverse).join(" ")
    );
    let client = user("unshare", dir)
        .args(["-rn", "sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(5);
    let pid = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        {
            break pid;
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut slirp: Child = user("slirp4netns", dir)
        .args(["--configure", "--mtu=65520", &pid.to_string(), "tap0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let out = client.wait_with_output().ok();
    let _ = slirp.kill();
    let _ = slirp.wait();
    parse_iperf(&out?.stdout)
}
