//! Surviving the daemon: a SIGKILLed daemon's successor takes over every
//! live sandbox (persistent TAPs re-opened, addresses, names restored) and
//! a TCP connection between two sandboxes carries on without reconnecting
//! (the daemon is killed while it runs, once the client says it is
//! connected), and disconnect and rm still take interfaces away after it.

mod common;

use std::io::{BufRead, BufReader};
use std::time::Duration;

use common::{tool, Env};

#[test]
fn a_killed_daemons_successor_takes_over_live_sandboxes() {
    let env = Env::new();
    env.ok(&["network", "create", "dev"]);
    env.start("srv", &["dev"], &["python3", &tool("tcp_echo.py"), "8080"]);
    env.start("cli", &["dev"], &["sleep", "600"]);
    env.start("doomed", &["dev"], &["sleep", "600"]);
    let srv_ip = env.ip("srv", "dev");
    let doomed_ip = env.ip("doomed", "dev");
    let doomed_pid = env.pid("doomed");
    assert!(Env::wait_until(Duration::from_secs(5), || env.ping("cli", &srv_ip)));

    // A sandbox a runner made, attached by pid: it is taken over too, and
    // `rm` after the take-over must still take its interface away (the
    // runner's namespace outlives warren's hold on it).
    let runner = common::unshared(&env, &["sleep", "600"]);
    let runner_pid = runner.id().to_string();
    let mut runner = KillOnDrop(runner);
    env.ok(&[
        "attach",
        "--pid",
        &runner_pid,
        "--name",
        "adopted",
        "--network",
        "dev",
    ]);
    let adopted_ip = env.ip("adopted", "dev");

    // A TCP conversation that spans the daemon's death and rebirth: the
    // daemon is killed only once the client reports its first round trip
    // (`warren exec` may take longer to start than any fixed sleep).
    let mut stream = env
        .cmd(&[
            "exec",
            "cli",
            "--",
            "python3",
            &tool("tcp_stream.py"),
            &srv_ip,
            "8080",
            "6",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(stream.stdout.take().unwrap()).lines();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let first = lines.next().and_then(Result::ok);
        let _ = tx.send(first);
        lines.map_while(Result::ok).collect::<Vec<String>>()
    });
    let first = rx.recv_timeout(Duration::from_secs(30)).ok().flatten();
    assert_eq!(
        first.as_deref(),
        Some("connected"),
        "the client never connected: {}",
        env.daemon_log_tail()
    );
    assert!(
        stream.try_wait().unwrap().is_none(),
        "the conversation ended before the daemon was killed"
    );
    let old = env.daemon_pid().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(old), nix::sys::signal::SIGKILL).unwrap();
    // While no daemon runs, one sandbox dies.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(doomed_pid),
        nix::sys::signal::SIGKILL,
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));

    // The next CLI call starts a new daemon, which takes over before it
    // answers: that call's duration is the recovery time.
    let t = std::time::Instant::now();
    let ps = env.ok(&["ps"]);
    println!(
        "recovery: new daemon up, 3 sandboxes taken over, in {} ms",
        t.elapsed().as_millis()
    );
    assert_ne!(env.daemon_pid().unwrap(), old);
    assert!(ps.contains(" srv ") && ps.contains(" cli "), "{ps}");
    assert!(
        !ps.contains("doomed"),
        "a sandbox that died meanwhile is cleaned up: {ps}"
    );
    assert_eq!(env.ip("srv", "dev"), srv_ip, "addresses are restored");

    let status = stream.wait().unwrap();
    let mut stderr = String::new();
    let _ = std::io::Read::read_to_string(&mut stream.stderr.take().unwrap(), &mut stderr);
    let rest = reader.join().unwrap();
    assert!(
        status.success(),
        "the TCP connection must survive the restart: {rest:?} {stderr}"
    );
    let trips: u32 = rest.last().and_then(|l| l.trim().parse().ok()).unwrap();
    // The first round trip came before the kill; the rest after it.
    assert!(trips > 20, "only {trips} round trips");

    // Names resolve again, the dead sandbox's address is free, and new
    // sandboxes work beside the old ones.
    assert!(env.ping("cli", "srv"), "names are restored");
    // At 127.0.0.11 too: the successor made the embedded DNS's sockets
    // again (the old ones died with the old daemon), and resolv.conf
    // still names it.
    let conf = env.exec_ok("cli", &["cat", "/etc/resolv.conf"]);
    assert!(conf.contains("nameserver 127.0.0.11\n"), "{conf}");
    let out = env.exec_ok("cli", &["getent", "hosts", "srv"]);
    assert!(out.starts_with(&srv_ip), "{out}");
    env.start("new", &["dev"], &["sleep", "600"]);
    assert_eq!(
        env.ip("new", "dev"),
        doomed_ip,
        "the dead sandbox's address was freed"
    );
    assert!(env.ping("new", &srv_ip));

    // After a take-over, disconnect and rm still take the interfaces
    // away: the successor re-opened the persistent TAPs and can clear
    // their persistence. disconnect, on a `run` sandbox:
    env.ok(&["network", "disconnect", "dev", "cli"]);
    let links = env.exec_ok("cli", &["ip", "-o", "link"]);
    assert!(!links.contains("eth0"), "{links}");
    // rm, on the attached one (whose namespace lives on with the runner's
    // process, so an interface left behind would show there).
    assert!(env.ok(&["ps"]).contains(" adopted "), "taken over");
    env.ok(&["rm", "adopted"]);
    assert!(!env.ok(&["ps"]).contains("adopted"));
    let links = env
        .user_cmd("nsenter")
        .args(["-U", "-n", "--preserve-credentials", "-t", &runner_pid])
        .args(["ip", "-o", "link"])
        .output()
        .unwrap();
    let links = String::from_utf8_lossy(&links.stdout);
    assert!(
        links.contains("lo"),
        "nsenter into the runner's namespace: {links}"
    );
    assert!(!links.contains("eth0"), "rm left eth0 behind: {links}");
    assert!(
        runner.0.try_wait().unwrap().is_none(),
        "rm killed the runner's process"
    );
    // And its address is free again.
    env.ok(&[
        "run",
        "-d",
        "--name",
        "newer",
        "--network",
        "dev",
        "--ip",
        &adopted_ip,
        "--",
        "sleep",
        "600",
    ]);
    assert_eq!(env.ip("newer", "dev"), adopted_ip, "rm freed the address");
}

/// A successor daemon that cannot bind 127.0.0.11:53 in a sandbox again
/// (a process there took the port while no daemon ran) degrades cleanly:
/// the sandbox is taken over, its resolv.conf names its gateway instead,
/// names resolve there, and the daemon says why.
#[test]
fn a_successor_that_cannot_bind_127_0_0_11_names_the_gateway() {
    let env = Env::new();
    env.ok(&["network", "create", "dev"]);
    env.start("srv", &["dev"], &["sleep", "600"]);
    env.start("cli", &["dev"], &["sleep", "600"]);
    let (srv_ip, gw) = (env.ip("srv", "dev"), env.gateway("cli", "dev"));
    let cli_pid = env.pid("cli").to_string();
    let old = env.daemon_pid().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(old), nix::sys::signal::SIGKILL).unwrap();
    // The old daemon's sockets died with it; a squatter takes the port.
    let squat = "import socket, time\n\
                 s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
                 s.bind(('127.0.0.11', 53))\n\
                 print('bound', flush=True)\n\
                 time.sleep(120)\n";
    let mut squatter = env
        .user_cmd("nsenter")
        .args(["-U", "-n", "--preserve-credentials", "-t", &cli_pid])
        .args(["python3", "-c", squat])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let bound = BufReader::new(squatter.stdout.take().unwrap()).read_line(&mut line);
    let mut squatter = KillOnDrop(squatter);
    assert!(
        bound.is_ok() && line.trim() == "bound",
        "the squatter did not bind: {line:?}"
    );

    let ps = env.ok(&["ps"]);
    assert!(ps.contains(" cli "), "taken over: {ps}");
    let conf = env.exec_ok("cli", &["cat", "/etc/resolv.conf"]);
    assert!(conf.contains(&format!("nameserver {gw}\n")), "{conf}");
    assert!(!conf.contains("127.0.0.11"), "{conf}");
    let out = env.exec_ok("cli", &["getent", "hosts", "srv"]);
    assert!(
        out.starts_with(&srv_ip),
        "names resolve at the gateway: {out}"
    );
    let log = std::fs::read_to_string(env.runtime.join("daemon.log")).unwrap_or_default();
    assert!(
        log.contains("no DNS at 127.0.0.11"),
        "{}",
        env.daemon_log_tail()
    );
    assert!(
        squatter.0.try_wait().unwrap().is_none(),
        "the squatter is left alone"
    );
}

/// A child killed (and reaped) on drop.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
