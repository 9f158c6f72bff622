//! Surviving the daemon: a SIGKILLed daemon's successor takes over every
//! live sandbox (persistent TAPs re-opened, addresses, names restored) and
//! a TCP connection between two sandboxes carries on without reconnecting.

mod common;

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

    // A TCP conversation that spans the daemon's death and rebirth.
    let stream = env
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
    std::thread::sleep(Duration::from_millis(1500));
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
        "recovery: new daemon up, 2 sandboxes taken over, in {} ms",
        t.elapsed().as_millis()
    );
    assert_ne!(env.daemon_pid().unwrap(), old);
    assert!(ps.contains(" srv ") && ps.contains(" cli "), "{ps}");
    assert!(
        !ps.contains("doomed"),
        "a sandbox that died meanwhile is cleaned up: {ps}"
    );
    assert_eq!(env.ip("srv", "dev"), srv_ip, "addresses are restored");

    let out = stream.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the TCP connection must survive the restart: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let trips: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(trips > 20, "only {trips} round trips");

    // Names resolve again, the dead sandbox's address is free, and new
    // sandboxes work beside the old ones.
    assert!(env.ping("cli", "srv"), "names are restored");
    env.start("new", &["dev"], &["sleep", "600"]);
    assert_eq!(
        env.ip("new", "dev"),
        doomed_ip,
        "the dead sandbox's address was freed"
    );
    assert!(env.ping("new", &srv_ip));

    // rm after a take-over removes the interface (its persistence cleared).
    env.ok(&["network", "disconnect", "dev", "cli"]);
    let links = env.exec_ok("cli", &["ip", "-o", "link"]);
    assert!(!links.contains("eth0"), "{links}");
}
