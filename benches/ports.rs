//! Published-port throughput: one iperf3 TCP stream from a client on the
//! host's 127.0.0.1 to an iperf3 server in a sandbox, through a published
//! port, and back (`-R`): warren (`-p`; the server sees the client's
//! address, here the gateway's since the client is on loopback), pasta
//! (`-t`) and slirp4netns (`add_hostfwd` on its API socket), all with MTU
//! 65520, side by side in one run; then short connections per second
//! through each (connect, one byte each way, close). Not a timed test: it
//! prints figures and ratios. rootlesskit's builtin port driver (the
//! issue's reference) is not measured yet.
//!
//! `cargo bench --bench ports` (WARREN_BENCH_SECS=N to change the 5 s runs).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{bench_dir, bench_secs, free_port, have, parse_iperf, user, Warren, PATH};

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if !have("iperf3") || !have("python3") {
        eprintln!("ports bench skipped: iperf3 and python3 are needed");
        return;
    }
    let secs = bench_secs();
    let (dir, warren) = bench_dir("ports");
    let echo = dir.join("echo1.py");
    std::fs::write(&echo, ECHO).unwrap();
    std::fs::set_permissions(&echo, std::fs::Permissions::from_mode(0o644)).unwrap();

    let mut rows: Vec<Row> = Vec::new();
    {
        let hp = free_port();
        let ep = free_port();
        let w = Warren::new(&dir, &warren);
        let p1 = format!("127.0.0.1:{hp}:5201");
        let p2 = format!("127.0.0.1:{ep}:7000");
        let script = serve_script(&dir, "warren", &echo);
        let ok = w
            .cmd(&["run", "-d", "-p", &p1, "-p", &p2, "--", "sh", "-c", &script])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "warren run");
        rows.push(measure("warren", hp, ep, secs));
        kill_pids(&dir, "warren");
    }
    if have("pasta") {
        let hp = free_port();
        let ep = free_port();
        let script = format!("python3 {} 7000 & exec iperf3 -s", echo.display());
        let child = user("pasta", &dir)
            .args([
                "--config-net",
                "-m",
                "65520",
                "-f",
                "-t",
                &format!("{hp}:5201,{ep}:7000"),
                "-u",
                "none",
                "-T",
                "none",
                "-U",
                "none",
                "--",
                "sh",
                "-c",
                &script,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        if let Ok(mut child) = child {
            rows.push(measure("pasta", hp, ep, secs));
            // pasta's command runs in a PID namespace of its own, whose
            // pids mean nothing here: kill its init (pasta's child), which
            // takes the whole namespace with it.
            kill_children(child.id());
            kill_tree(&mut child);
        }
    }
    if have("slirp4netns") {
        if let Some(row) = slirp(&dir, &echo, secs) {
            rows.push(row);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);

    println!("\nPublished port, one TCP stream from 127.0.0.1, MTU 65520, {secs} s each");
    println!(
        "{:<12} {:>16} {:>16} {:>12}",
        "", "host→sandbox", "sandbox→host", "conn/s"
    );
    let gbit = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.2} Gbit/s", v / 1e9));
    for r in &rows {
        println!(
            "{:<12} {:>16} {:>16} {:>12}",
            r.name,
            gbit(r.up),
            gbit(r.down),
            r.cps.map_or("-".into(), |c| format!("{c:.0}"))
        );
    }
    let w = &rows[0];
    for r in rows.iter().skip(1) {
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
            _ => "-".into(),
        };
        println!(
            "warren / {}: {} up, {} down, {} conn/s",
            r.name,
            ratio(w.up, r.up),
            ratio(w.down, r.down),
            ratio(w.cps, r.cps)
        );
    }
}

/// The servers of one contender: the one-byte echo on 7000 in the
/// background and iperf3 on 5201, their pids written to `DIR/NAME.pids`.
fn serve_script(dir: &Path, name: &str, echo: &Path) -> String {
    let pids = dir.join(format!("{name}.pids"));
    format!(
        "python3 {echo} 7000 & echo $! >> {pids}; echo $$ >> {pids}; exec iperf3 -s",
        echo = echo.display(),
        pids = pids.display()
    )
}

/// SIGKILLs the children of `pid` (a process this bench started).
fn kill_children(pid: u32) {
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    for child in children
        .split_whitespace()
        .filter_map(|c| c.parse::<i32>().ok())
    {
        let _ =
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(child), nix::sys::signal::SIGKILL);
    }
}

/// Kills the servers [`serve_script`] started for `name` (host pids: only
/// for contenders without a PID namespace of their own).
fn kill_pids(dir: &Path, name: &str) {
    let pids = std::fs::read_to_string(dir.join(format!("{name}.pids"))).unwrap_or_default();
    for pid in pids.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
    }
}

/// A server that answers each connection's byte with one byte and closes.
const ECHO: &str = r#"import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(128)
while True:
    c, _ = s.accept()
    try:
        c.recv(1)
        c.sendall(b"y")
    except OSError:
        pass
    c.close()
"#;

struct Row {
    name: &'static str,
    up: Option<f64>,
    down: Option<f64>,
    cps: Option<f64>,
}

fn measure(name: &'static str, iperf_port: u16, echo_port: u16, secs: u32) -> Row {
    wait_port(iperf_port);
    let up = iperf(iperf_port, secs, false);
    let down = iperf(iperf_port, secs, true);
    let cps = conns_per_sec(echo_port, secs);
    Row {
        name,
        up,
        down,
        cps,
    }
}

/// Until the server behind `port` answers (a forwarder may accept first
/// and reset when nothing listens behind it yet).
fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let out = Command::new("iperf3")
            .args(["-c", "127.0.0.1", "-p", &port.to_string(), "-t", "1", "-J"])
            .env("PATH", PATH)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .output();
        if out.is_ok_and(|o| parse_iperf(&o.stdout).is_some()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn iperf(port: u16, secs: u32, reverse: bool) -> Option<f64> {
    let mut c = Command::new("iperf3");
    c.args([
        "-c",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-t",
        &secs.to_string(),
        "-J",
    ])
    .env("PATH", PATH);
    if reverse {
        c.arg("-R");
    }
    let out = c.stderr(Stdio::null()).output().ok()?;
    parse_iperf(&out.stdout)
}

/// Short connections per second for `secs`: connect, send a byte, read
/// the answer, close.
fn conns_per_sec(port: u16, secs: u32) -> Option<f64> {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(u64::from(secs)) {
        let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        s.write_all(b"x").ok()?;
        let mut b = [0u8; 1];
        if s.read(&mut b).ok()? != 1 {
            return None;
        }
        n += 1;
    }
    Some(n as f64 / start.elapsed().as_secs_f64())
}

/// Kills a contender started with its own process group.
fn kill_tree(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn slirp(dir: &Path, echo: &Path, secs: u32) -> Option<Row> {
    let pid_file = dir.join("slirp.pid");
    let api = dir.join("slirp.sock");
    let script = format!(
        "echo $$ > {pid}; i=0; until ip -4 addr show tap0 2>/dev/null | grep -q inet; do \
         i=$((i+1)); [ $i -gt 200 ] && exit 1; sleep 0.05; done; {serve}",
        pid = pid_file.display(),
        serve = serve_script(dir, "slirp", echo),
    );
    let mut ns = user("unshare", dir)
        .args(["-rn", "sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
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
            kill_tree(&mut ns);
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut slirp: Child = user("slirp4netns", dir)
        .args([
            "--configure",
            "--mtu=65520",
            "--api-socket",
            &api.display().to_string(),
            &pid.to_string(),
            "tap0",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let (hp, ep) = (free_port(), free_port());
    let mut forwarded = 0;
    for (host, guest) in [(hp, 5201), (ep, 7000)] {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(mut s) = UnixStream::connect(&api) {
                let req = format!(
                    "{{\"execute\": \"add_hostfwd\", \"arguments\": {{\"proto\": \"tcp\", \
                     \"host_addr\": \"127.0.0.1\", \"host_port\": {host}, \"guest_port\": {guest}}}}}"
                );
                let mut answer = String::new();
                if s.write_all(req.as_bytes()).is_ok()
                    && s.shutdown(std::net::Shutdown::Write).is_ok()
                    && s.read_to_string(&mut answer).is_ok()
                    && answer.contains("return")
                {
                    forwarded += 1;
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let row = (forwarded == 2).then(|| measure("slirp4netns", hp, ep, secs));
    kill_pids(dir, "slirp");
    kill_tree(&mut slirp);
    kill_tree(&mut ns);
    row
}
