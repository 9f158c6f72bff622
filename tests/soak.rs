//! Soak (issue 9): 500 sandboxes created and removed and 20,000 connections
//! through NAT and a published port, all at once, then the daemon's memory
//! and fd count must come back to their baseline.
//!
//! Bounded in count and time, and home-only: the NAT traffic goes from a
//! sandbox to a server on the host's 127.0.0.1 (the network opts in with
//! `host-loopback=true`, reached at 169.254.1.2), the published-port
//! traffic from the host's loopback to a server in a sandbox. The baseline
//! is taken after a warm-up round of everything, so buffers and pools that
//! grow once on first use are part of it. Figures are printed (run with
//! `--nocapture`) and recorded in `docs/reliability.md`.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{free_port, tool, Env};

/// Sandboxes created and removed during the soak.
const SANDBOXES: usize = 500;
/// Connections each way (NAT egress, published port).
const CONNECTIONS: usize = 10_000;
/// Concurrent sandbox creations.
const CREATORS: usize = 4;
/// The host's loopback as sandboxes on a host-loopback network see it.
const HOST: &str = "169.254.1.2";

/// A server on the host's 127.0.0.1 that answers "pong" and closes.
struct PongServer {
    port: u16,
    stop: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PongServer {
    fn start() -> PongServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        let (s, n) = (stop.clone(), served.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(mut c) = conn {
                    let _ = c.write_all(b"pong\n");
                    n.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        PongServer {
            port,
            stop,
            served,
            thread: Some(thread),
        }
    }
}

impl Drop for PongServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One connection to the published port; the reply must be the server's.
fn ask(port: u16) -> std::io::Result<()> {
    let mut s = TcpStream::connect_timeout(
        &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        Duration::from_secs(10),
    )?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    if !out.starts_with("you are ") {
        return Err(std::io::Error::other(format!("reply {out:?}")));
    }
    Ok(())
}

/// `n` connections to the published port from `threads` threads.
fn ask_many(port: u16, n: usize, threads: usize) -> usize {
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (next, failed) = (next.clone(), failed.clone());
            std::thread::spawn(move || {
                while next.fetch_add(1, Ordering::SeqCst) < n {
                    if let Err(e) = ask(port) {
                        if failed.fetch_add(1, Ordering::SeqCst) < 5 {
                            eprintln!("published port: {e}");
                        }
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    failed.load(Ordering::SeqCst)
}

/// `n` connections from the `client` sandbox to the host's pong server.
fn nat_many(env: &Env, port: u16, n: usize) -> String {
    env.exec_ok(
        "client",
        &[
            "python3",
            &tool("soak_client.py"),
            HOST,
            &port.to_string(),
            &n.to_string(),
            "8",
        ],
    )
}

/// Creates and removes `n` sandboxes on `soak` from [`CREATORS`] threads:
/// half run a command that exits (freed by the exit watcher), half are
/// detached and removed with `rm -f`.
fn churn(env: &Env, prefix: &str, n: usize) {
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..CREATORS {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n {
                    return;
                }
                let name = format!("{prefix}{i}");
                if i % 2 == 0 {
                    env.ok(&["run", "--name", &name, "--network", "soak", "--", "true"]);
                } else {
                    env.start(&name, &["soak"], &["sleep", "600"]);
                    env.ok(&["rm", "-f", &name]);
                }
            });
        }
    });
}

fn daemon_rss_kib(env: &Env) -> u64 {
    let pid = env.daemon_pid().expect("daemon pid");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

fn daemon_fds(env: &Env) -> usize {
    fd_count(env.daemon_pid().expect("daemon pid"))
}

/// The daemon's helper spawner (its one `__helper-spawner` child).
fn spawner_pid(env: &Env) -> i32 {
    let pid = env.daemon_pid().expect("daemon pid");
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .find(|p: &i32| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("__helper-spawner"))
        })
        .expect("the helper spawner")
}

/// Only the two long-lived sandboxes left, and no NAT or forwarded flow.
fn settled(env: &Env) -> bool {
    let ps = env.ok(&["ps", "-q"]);
    let nat = &env.stats("soak")["nat"];
    ps.lines().count() == 2
        && nat["tcp_flows"] == 0
        && nat["udp_flows"] == 0
        && nat["forward_flows"] == 0
}

#[test]
fn soak_500_sandboxes_and_20000_connections_return_to_baseline() {
    let t0 = Instant::now();
    let env = Env::new();
    env.ok(&["network", "create", "--opt", "host-loopback=true", "soak"]);
    let pong = PongServer::start();
    env.start("client", &["soak"], &["sleep", "3600"]);
    let hp = free_port();
    env.ok(&[
        "run",
        "-d",
        "--name",
        "server",
        "--network",
        "soak",
        "-p",
        &format!("127.0.0.1:{hp}:8000"),
        "--",
        "python3",
        &tool("port_server.py"),
        "tcp",
        "8000",
    ]);
    assert!(
        Env::wait_until(Duration::from_secs(15), || ask(hp).is_ok()),
        "the published server did not come up"
    );

    // Warm-up: a little of everything, then the baseline.
    churn(&env, "warm", 20);
    let out = nat_many(&env, pong.port, 500);
    assert!(out.starts_with("ok 500 failed 0"), "{out}");
    assert_eq!(ask_many(hp, 500, 4), 0);
    assert!(Env::wait_until(Duration::from_secs(30), || settled(&env)));
    std::thread::sleep(Duration::from_secs(1));
    let (rss0, fds0) = (daemon_rss_kib(&env), daemon_fds(&env));
    let spawner_fds0 = fd_count(spawner_pid(&env));
    let warm = t0.elapsed();

    // The soak: everything at once.
    let t1 = Instant::now();
    let (nat_out, port_failed) = std::thread::scope(|s| {
        let nat = s.spawn(|| nat_many(&env, pong.port, CONNECTIONS));
        let port = s.spawn(|| ask_many(hp, CONNECTIONS, 4));
        churn(&env, "s", SANDBOXES);
        (nat.join().unwrap(), port.join().unwrap())
    });
    let soak = t1.elapsed();
    assert!(
        nat_out.starts_with(&format!("ok {CONNECTIONS} failed 0")),
        "NAT: {nat_out}"
    );
    assert_eq!(port_failed, 0, "published-port connections failed");
    assert!(pong.served.load(Ordering::SeqCst) >= 500 + CONNECTIONS);

    // Back to the baseline.
    let t2 = Instant::now();
    let back = Env::wait_until(Duration::from_secs(60), || {
        settled(&env) && daemon_fds(&env) == fds0
    });
    let settle = t2.elapsed();
    let (rss1, fds1) = (daemon_rss_kib(&env), daemon_fds(&env));
    eprintln!(
        "soak figures: warm-up {warm:.1?}, soak {soak:.1?} ({SANDBOXES} sandboxes, \
         {CONNECTIONS} NAT + {CONNECTIONS} published-port connections), settled in {settle:.1?}; \
         RSS {rss0} KiB -> {rss1} KiB, fds {fds0} -> {fds1}; NAT client: {}",
        nat_out.trim()
    );
    assert!(
        back,
        "not back to the baseline: fds {fds1} (baseline {fds0}), ps {:?}, nat {}",
        env.ok(&["ps", "-q"]),
        env.stats("soak")["nat"]
    );
    // Memory: freed memory may stay with the allocator, but nothing may
    // grow with the work done (a leak of even 1 KiB per sandbox or 100
    // bytes per connection would exceed this).
    assert!(
        rss1 <= rss0 + rss0 / 5 + 2048,
        "RSS grew from {rss0} KiB to {rss1} KiB"
    );
    // The helper spawner reaped every helper and holds no extra fd.
    let spawner = spawner_pid(&env);
    assert!(
        Env::wait_until(Duration::from_secs(5), || {
            std::fs::read_to_string(format!("/proc/{spawner}/task/{spawner}/children"))
                .is_ok_and(|c| c.trim().is_empty())
        }),
        "the spawner keeps children (zombies?)"
    );
    assert_eq!(fd_count(spawner), spawner_fds0, "the spawner's fds");
    // Every sandbox really was attached (the log says so once each: the
    // two long-lived ones, the warm-up's and the soak's).
    let log = std::fs::read_to_string(env.runtime.join("daemon.log")).unwrap();
    let attached = log.matches("sandbox attached").count();
    assert_eq!(attached, 2 + 20 + SANDBOXES, "attaches in the daemon log");
    // The addresses came back too: the network holds the two endpoints.
    let inspect = env.json(&["network", "inspect", "soak"]);
    let containers = inspect[0]["Containers"].as_object().map_or(0, |m| m.len());
    assert_eq!(containers, 2, "{inspect}");
    env.assert_daemon_idle();
}
