//! End-to-end tests of published ports (issue 5): `-p`, ranges, UDP, the
//! client's real address, conflicts, and release on `rm`.
//!
//! Clients are the test process itself on the host's 127.0.0.1 (which the
//! sandbox sees as its gateway's address), or, for the real-address test,
//! a process in a network namespace the test makes, joined by a veth pair
//! to a daemon started in another namespace the test makes. No other
//! address is ever contacted.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use common::world::{World, DAEMON_ADDR, WORLD_ADDR};
use common::{free_port, tool, Env};

/// `n` consecutive TCP ports free on the host right now.
fn free_range(n: u16) -> u16 {
    for base in (20000..30000).step_by(usize::from(n) + 7) {
        let ok: Vec<TcpListener> = (base..base + n)
            .filter_map(|p| TcpListener::bind(("0.0.0.0", p)).ok())
            .collect();
        if ok.len() == usize::from(n) {
            return base;
        }
    }
    panic!("no free range of {n} ports");
}

fn ask(port: u16) -> std::io::Result<String> {
    common::ask_local(port)
}

/// What a TCP client on the host's loopback meets at `port`. "Refused"
/// and "reset" both make [`ask`] fail, but mean different things: the
/// kernel refuses the connection when nothing listens on the host (the
/// port is not published), while a published port whose sandbox refuses
/// the forwarded connection is accepted on the host and then reset.
#[derive(Debug, PartialEq)]
enum Met {
    Refused,
    Reset,
    /// Accepted, then closed without a byte.
    Closed,
    Answer(String),
}

fn meet(port: u16) -> Met {
    let addr = std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port));
    let mut s = match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Met::Refused,
        // A reset this early still came after the handshake (a reset in
        // answer to the SYN is ECONNREFUSED).
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Met::Reset,
        Err(e) => panic!("connecting to 127.0.0.1:{port}: {e}"),
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut out = String::new();
    match s.read_to_string(&mut out) {
        Ok(0) => Met::Closed,
        Ok(_) => Met::Answer(out),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Met::Reset,
        Err(e) => panic!("reading from 127.0.0.1:{port}: {e}"),
    }
}

/// [`ask`] until the server in the sandbox is up (at most 15 s).
fn wait_ask(env: &Env, port: u16) -> String {
    let mut last = None;
    let up = Env::wait_until(Duration::from_secs(15), || match ask(port) {
        Ok(s) => {
            last = Some(s);
            true
        }
        Err(_) => false,
    });
    assert!(
        up,
        "nothing answered on 127.0.0.1:{port}\n{}",
        env.daemon_log_tail()
    );
    last.unwrap()
}

/// `warren run -d --name NAME [-p SPEC]... -- python3 port_server.py ARGS`.
fn serve(env: &Env, name: &str, publish: &[&str], args: &[&str]) {
    let server = tool("port_server.py");
    let mut cmd = vec!["run", "-d", "--name", name];
    for p in publish {
        cmd.push("-p");
        cmd.push(p);
    }
    cmd.extend_from_slice(&["--", "python3", &server]);
    cmd.extend_from_slice(args);
    env.ok(&cmd);
}

fn nat(env: &Env) -> serde_json::Value {
    env.stats("bridge")["nat"].clone()
}

fn daemon_fds(env: &Env) -> usize {
    let pid = env.daemon_pid().expect("daemon pid");
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

#[test]
fn tcp_from_the_host_ports_listing_conflicts_and_reuse_after_rm() {
    let env = Env::new();
    let hp = free_port();
    let spec = format!("{hp}:8000");
    serve(&env, "web", &[&spec, "8001"], &["tcp", "8000"]);
    let gw = env.gateway("web", "bridge");

    // A client on the host's loopback arrives from the gateway's address,
    // with its own port.
    let reply = wait_ask(&env, hp);
    assert!(reply.starts_with(&format!("you are {gw}:")), "{reply}");

    // HTTP from the host to a server in another sandbox.
    let hh = free_port();
    let http_spec = format!("127.0.0.1:{hh}:8080");
    env.ok(&[
        "run",
        "-d",
        "--name",
        "http",
        "-p",
        &http_spec,
        "--",
        "python3",
        "-m",
        "http.server",
        "8080",
    ]);
    let got = Env::wait_until(Duration::from_secs(15), || {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", hh)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.starts_with("HTTP/1.0 200")
    });
    assert!(
        got,
        "HTTP through 127.0.0.1:{hh}\n{}",
        env.daemon_log_tail()
    );

    // `warren port`: the chosen port of `-p 8001` is shown.
    let ports = env.ok(&["port", "web"]);
    assert!(
        ports.contains(&format!("8000/tcp -> 0.0.0.0:{hp}")),
        "{ports}"
    );
    let random: u16 = ports
        .lines()
        .find_map(|l| l.strip_prefix("8001/tcp -> 0.0.0.0:"))
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("8001 is listed with its port: {ports}"));
    assert_ne!(random, 0);
    assert_eq!(
        env.ok(&["port", "web", "8000"]).trim(),
        format!("0.0.0.0:{hp}")
    );
    // Nothing listens on 8001 in the sandbox: the client is accepted on
    // the host (the port is published) and reset at once, not refused
    // (what a port nobody publishes does).
    let t = Instant::now();
    assert_eq!(meet(random), Met::Reset, "a closed sandbox port");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert_eq!(meet(free_port()), Met::Refused, "a port nobody publishes");

    let ps = env.ok(&["ps"]);
    assert!(ps.contains(&format!("0.0.0.0:{hp}->8000/tcp")), "{ps}");
    assert!(ps.contains(&format!("127.0.0.1:{hh}->8080/tcp")), "{ps}");
    let inspect = env.inspect("web");
    assert_eq!(
        inspect["NetworkSettings"]["Ports"]["8000/tcp"][0],
        serde_json::json!({"HostIp": "0.0.0.0", "HostPort": hp.to_string()})
    );
    let stats = nat(&env);
    assert_eq!(stats["forwards"], 3, "{stats}");
    assert!(stats["forward_accepted"].as_u64().unwrap() >= 3, "{stats}");
    assert!(stats["forward_refused"].as_u64().unwrap() >= 1, "{stats}");

    // A port another sandbox holds: exit 125, the holder named, nothing
    // half-made (the first, free port of the same run is not left bound).
    let free = free_port();
    let free_spec = format!("{free}:80");
    let out = env.run(&[
        "run", "--name", "web2", "-p", &free_spec, "-p", &spec, "--", "true",
    ]);
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&hp.to_string()) && err.contains("web"),
        "{err}"
    );
    assert!(
        TcpListener::bind(("0.0.0.0", free)).is_ok(),
        "{free} left bound"
    );
    assert!(!env.ok(&["ps"]).contains("web2"));
    // A port another program holds.
    let other = TcpListener::bind("0.0.0.0:0").unwrap();
    let taken = format!("{}:80", other.local_addr().unwrap().port());
    let out = env.run(&["run", "-p", &taken, "--", "true"]);
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use"), "{err}");

    // rm releases every host port at once: the same -p works again.
    env.ok(&["rm", "-f", "web"]);
    serve(&env, "web", &[&spec], &["tcp", "8000"]);
    let reply = wait_ask(&env, hp);
    assert!(reply.starts_with("you are "), "{reply}");
}

#[test]
fn udp_clients_each_get_their_own_replies() {
    let env = Env::new();
    let hp = free_port();
    let spec = format!("{hp}:5353/udp");
    serve(&env, "dns", &[&spec], &["udp", "5353"]);
    let gw = env.gateway("dns", "bridge");
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    for s in [&a, &b] {
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        s.connect(("127.0.0.1", hp)).unwrap();
    }
    let mut buf = [0u8; 2048];
    let mut got = (None, None);
    let deadline = Instant::now() + Duration::from_secs(15);
    while (got.0.is_none() || got.1.is_none()) && Instant::now() < deadline {
        // Both send before either reads: two flows at once.
        let _ = a.send(b"from-a");
        let _ = b.send(b"from-b");
        if let Ok(n) = a.recv(&mut buf) {
            got.0 = Some(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        if let Ok(n) = b.recv(&mut buf) {
            got.1 = Some(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    let pa = a.local_addr().unwrap().port();
    let pb = b.local_addr().unwrap().port();
    assert_eq!(
        got.0,
        Some(format!("{gw}:{pa} from-a")),
        "{}",
        env.daemon_log_tail()
    );
    assert_eq!(got.1, Some(format!("{gw}:{pb} from-b")));
    let stats = nat(&env);
    assert_eq!(stats["forward_flows"], 2, "{stats}");
    // rm frees the UDP port too.
    env.ok(&["rm", "-f", "dns"]);
    assert!(UdpSocket::bind(("0.0.0.0", hp)).is_ok());
}

#[test]
fn ranges_and_port_add_and_rm_while_running() {
    let env = Env::new();
    let base = free_range(3);
    let spec = format!("{base}-{}:8000-8002", base + 2);
    // One process serves the three ports (nothing is left behind when
    // the sandbox is killed).
    serve(&env, "r", &[&spec], &["tcp", "8000,8001,8002"]);
    for p in base..base + 3 {
        assert!(wait_ask(&env, p).starts_with("you are "));
    }
    let listed = env.ok(&["port", "r"]);
    assert_eq!(listed.lines().count(), 3, "{listed}");

    let extra = free_port();
    let add = format!("{extra}:8001");
    let out = env.ok(&["port", "add", "r", &add]);
    assert!(
        out.contains(&format!("8001/tcp -> 0.0.0.0:{extra}")),
        "{out}"
    );
    assert!(wait_ask(&env, extra).starts_with("you are "));
    env.ok(&["port", "rm", "r", &add]);
    // Closed at once: nothing listens on the host any more.
    let err = TcpStream::connect(("127.0.0.1", extra)).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    assert_eq!(env.ok(&["port", "r"]).lines().count(), 3);
    let err = env.fail(&["port", "rm", "r", "9999"]);
    assert!(err.contains("no port matching"), "{err}");
}

#[test]
fn a_service_on_the_sandboxes_loopback_is_not_reachable() {
    let env = Env::new();
    let hp = free_port();
    let spec = format!("{hp}:8000");
    // The positive control: the same sandbox, the same server program on
    // its eth0 address (every address), published the same way.
    let control = free_port();
    let control_spec = format!("{control}:8001");
    serve(
        &env,
        "lo",
        &[&spec, &control_spec],
        &["tcp", "127.0.0.1:8000,8001"],
    );
    let gw = env.gateway("lo", "bridge");
    let reply = wait_ask(&env, control);
    assert!(
        reply.starts_with(&format!("you are {gw}:")),
        "the control answers through its published port: {reply}"
    );
    // The loopback-only one is up (inside)...
    let probe = "import socket,sys\n\
                 for _ in range(100):\n\
                 \x20   try:\n\
                 \x20       socket.create_connection(('127.0.0.1', 8000), 1).close(); sys.exit(0)\n\
                 \x20   except OSError:\n\
                 \x20       import time; time.sleep(0.1)\n\
                 sys.exit(1)\n";
    env.exec_ok("lo", &["python3", "-c", probe]);
    // ...yet never answers through its published port: the host accepts
    // (it is published) and the client is reset, because the sandbox
    // refused the forwarded connection on eth0, as the counter says.
    let refused = |env: &Env| nat(env)["forward_refused"].as_u64().unwrap();
    let before = refused(&env);
    for _ in 0..3 {
        assert_eq!(
            meet(hp),
            Met::Reset,
            "a published port whose server listens on the sandbox's loopback only"
        );
    }
    assert!(
        Env::wait_until(Duration::from_secs(3), || refused(&env) >= before + 3),
        "the sandbox's refusals are counted: {}",
        nat(&env)
    );
    // And the control still answers: nothing broke in between.
    assert!(matches!(meet(control), Met::Answer(a) if a.starts_with("you are ")));
    // The sandbox's end (its process killed) releases both host ports:
    // from then on the kernel refuses, which is what "not published" is.
    let pid = env.pid("lo");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL).unwrap();
    let freed = Env::wait_until(Duration::from_secs(3), || {
        TcpListener::bind(("0.0.0.0", hp)).is_ok()
            && TcpListener::bind(("0.0.0.0", control)).is_ok()
    });
    assert!(
        freed,
        "host ports {hp}, {control} still bound after the sandbox ended"
    );
    assert_eq!(meet(hp), Met::Refused);
}

#[test]
fn a_thousand_short_connections_and_fds_back_to_baseline() {
    let env = Env::new();
    let hp = free_port();
    let spec = format!("{hp}:8000");
    serve(&env, "many", &[&spec], &["tcp", "8000"]);
    wait_ask(&env, hp);
    let settled = |env: &Env| nat(env)["forward_flows"] == 0;
    assert!(Env::wait_until(Duration::from_secs(10), || settled(&env)));
    let baseline = daemon_fds(&env);
    for i in 0..1000 {
        let reply = ask(hp).unwrap_or_else(|e| panic!("connection {i}: {e}"));
        assert!(reply.starts_with("you are "), "connection {i}: {reply}");
    }
    let back = Env::wait_until(Duration::from_secs(10), || {
        settled(&env) && daemon_fds(&env) <= baseline
    });
    assert!(
        back,
        "fds {} (baseline {baseline}), nat {}",
        daemon_fds(&env),
        nat(&env)
    );
}

#[test]
fn the_sandbox_sees_the_real_client_address() {
    // The daemon runs in a network namespace this test makes; a client in
    // a second one reaches it over a veth pair (10.250.0.1 → 10.250.0.2,
    // addresses that exist only in those two namespaces).
    let env = Env::new();
    let Some(world) = World::start(&env, "") else {
        return common::skip("needs root to make network namespaces");
    };
    let hp = 18080;
    let spec = format!("{hp}:8000");
    serve(&env, "web", &[&spec], &["tcp", "8000"]);
    let client = tool("port_client.py");
    let hp_s = hp.to_string();
    let mut last = String::new();
    let ok = Env::wait_until(Duration::from_secs(15), || {
        let out = world
            .world_cmd(&["python3", &client, "tcp", DAEMON_ADDR, &hp_s])
            .output()
            .unwrap();
        last = String::from_utf8_lossy(&out.stdout).into_owned();
        out.status.success() && last.starts_with("GOT you are")
    });
    let logs = std::fs::read_dir(env.runtime.join("logs"))
        .map(|d| {
            d.flatten()
                .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                .collect::<String>()
        })
        .unwrap_or_default();
    drop(world);
    assert!(ok, "client in its namespace: {last}");
    // "GOT you are 10.250.0.1:P | ME 10.250.0.1:P": the server saw the
    // client's own address and port.
    let (got, me) = last.trim().split_once(" | ME ").expect("reply");
    assert_eq!(got.trim_start_matches("GOT you are "), me, "{last}");
    assert!(me.starts_with(&format!("{WORLD_ADDR}:")), "{last}");
    assert!(logs.contains(&format!("peer {me}")), "server log: {logs}");
}

#[test]
fn half_close_crosses_and_ports_survive_a_daemon_restart() {
    let env = Env::new();
    let hp = free_port();
    let spec = format!("{hp}:8000");
    env.ok(&[
        "run",
        "-d",
        "--name",
        "echo",
        "-p",
        &spec,
        "--",
        "python3",
        &tool("tcp_echo.py"),
        "8000",
    ]);
    // The client's FIN reaches the server after its data; the server's
    // answer still comes back, then its FIN.
    let echo = |env: &Env| {
        let mut out = String::new();
        let ok = Env::wait_until(Duration::from_secs(15), || {
            let Ok(mut s) = TcpStream::connect(("127.0.0.1", hp)) else {
                return false;
            };
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            if s.write_all(b"half-closed").is_err()
                || s.shutdown(std::net::Shutdown::Write).is_err()
            {
                return false;
            }
            out.clear();
            s.read_to_string(&mut out).is_ok() && out == "HALF-CLOSED"
        });
        assert!(ok, "echo through {hp}: {out:?}\n{}", env.daemon_log_tail());
    };
    echo(&env);

    let old = env.daemon_pid().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(old), nix::sys::signal::SIGKILL).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // The next CLI call starts a daemon that takes the sandbox over and
    // binds its host port again.
    let ports = env.ok(&["port", "echo"]);
    assert_ne!(env.daemon_pid().unwrap(), old);
    assert!(
        ports.contains(&format!("8000/tcp -> 0.0.0.0:{hp}")),
        "{ports}"
    );
    echo(&env);
}

#[test]
fn ipv6_listeners_default_address_and_disconnect_releases() {
    let env = Env::new();
    env.start_daemon(&["--publish-address", "127.0.0.1"]);
    env.ok(&["network", "create", "dev"]);
    env.ok(&[
        "run",
        "-d",
        "--name",
        "v",
        "--network",
        "dev",
        "-p",
        "8000",
        "-p",
        "[::1]::8000",
        "--",
        "python3",
        &tool("port_server.py"),
        "tcp",
        "8000",
    ]);
    let gw = env.gateway("v", "dev");
    let ports = env.ok(&["port", "v"]);
    let port_of = |prefix: &str| -> u16 {
        ports
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("{prefix}… in {ports}"))
    };
    // The daemon's --publish-address is the default host address.
    let v4 = port_of("8000/tcp -> 127.0.0.1:");
    let v6 = port_of("8000/tcp -> [::1]:");
    assert!(wait_ask(&env, v4).starts_with(&format!("you are {gw}:")));
    // An IPv6 client arrives from the gateway's address too.
    let mut s = TcpStream::connect(("::1", v6)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with(&format!("you are {gw}:")), "{reply}");

    // Disconnecting the network that serves them releases the host ports.
    env.ok(&["network", "disconnect", "dev", "v"]);
    assert!(TcpListener::bind(("127.0.0.1", v4)).is_ok());
    assert!(TcpListener::bind(("::1", v6)).is_ok());
    assert_eq!(env.ok(&["port", "v"]).trim(), "");
    assert_eq!(env.stats("dev")["nat"]["forwards"], 0);
}
