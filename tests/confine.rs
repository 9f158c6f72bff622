//! The daemon's confinement: seccomp kills what the allowlist lacks, Landlock
//! refuses paths outside the daemon's directories, and the real daemon (and
//! its helper spawner) run with both.
//!
//! The probes apply *the daemon's own* confinement function
//! (`warren::daemon::confine::confine`, with the filesystem the daemon
//! computes for its directories) in a child process: this test binary
//! re-executed with `--exact probe_child` and the case in the environment.
//! Each forbidden case prints `confined` first, so a death before that
//! cannot pass for a refusal, and `survived` if the call returned: the
//! parent wants SIGSYS and no `survived`. The calls are harmless if a filter
//! ever let them through (bad arguments, the child's own namespaces).
//!
//! The whole integration suite runs against the confined daemon too: that
//! is the proof that the allowlist is complete.

mod common;

use std::os::fd::AsFd;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::Env;
use warren::daemon::confine::{self, Filesystem};
use warren::sys::seccomp::{self, Mode, Profile};

const PROBE_ENV: &str = "WARREN_CONFINE_PROBE";
const DIR_ENV: &str = "WARREN_CONFINE_DIR";

/// The probe's entry point in the re-executed child; does nothing (and is
/// not a test) in a normal run, where the variable is unset.
#[test]
fn probe_child() {
    let Ok(case) = std::env::var(PROBE_ENV) else {
        return;
    };
    let dir = PathBuf::from(std::env::var(DIR_ENV).expect(DIR_ENV));
    run_probe(&case, &dir);
}

fn daemon_fs(dir: &Path) -> Filesystem {
    Filesystem::daemon(&dir.join("state"), &dir.join("run"))
}

fn run_probe(case: &str, dir: &Path) {
    let (profile, call) = case.split_once(':').expect("PROFILE:CALL");
    let mut landlock_enforced = false;
    match profile {
        "daemon" | "daemon-log" => {
            let opts = confine::Options {
                seccomp: if profile == "daemon" {
                    Mode::Kill
                } else {
                    Mode::Log
                },
                landlock: true,
            };
            let summary = confine::confine(&daemon_fs(dir), &opts).expect("confine");
            landlock_enforced = summary.contains("landlock=enforced");
            println!("confined {summary}");
        }
        "helper" => {
            seccomp::apply(Profile::Helper, Mode::Kill).expect("seccomp");
            println!("confined helper");
        }
        _ => panic!("unknown profile {profile}"),
    }
    let errno = |r: std::io::Result<()>| match r {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("errno {}", e.raw_os_error().unwrap_or(0)),
    };
    match call {
        "files" => {
            // Allowed: the runtime and state directories, /proc, /etc.
            let w = std::fs::write(dir.join("run/written"), b"x");
            println!("write runtime: {}", errno(w));
            let w = std::fs::write(dir.join("state/written"), b"x");
            println!("write state: {}", errno(w));
            let r = std::fs::read_to_string("/proc/self/status").map(|_| ());
            println!("read proc: {}", errno(r));
            let r = std::fs::read("/etc/resolv.conf").map(|_| ());
            println!("read resolv.conf: {}", errno(r));
            // Refused: anything else, even the user's own files.
            let r = std::fs::read(dir.join("secret")).map(|_| ());
            println!("read secret: {}", errno(r));
            let w = std::fs::write(dir.join("planted"), b"x");
            println!("create outside: {}", errno(w));
            // Only with Landlock on: the probe may run as root.
            if landlock_enforced {
                let probe = Path::new("/etc/warren-confine-probe");
                let w = std::fs::write(probe, b"x");
                if w.is_ok() {
                    let _ = std::fs::remove_file(probe);
                }
                println!("write etc: {}", errno(w));
            }
            // Allowed calls still work: threads, sockets of the daemon's families.
            let t = std::thread::spawn(|| 7)
                .join()
                .map(|_| ())
                .map_err(|_| std::io::Error::other("thread"));
            println!("thread: {}", errno(t));
            let s = std::net::UdpSocket::bind("127.0.0.1:0").map(|_| ());
            println!("udp socket: {}", errno(s));
        }
        "mount" => {
            let r = nix::mount::mount(
                None::<&str>,
                "/nonexistent-warren-probe",
                None::<&str>,
                nix::mount::MsFlags::MS_REMOUNT,
                None::<&str>,
            );
            println!("survived mount: {r:?}");
        }
        "execve" => {
            let r = nix::unistd::execv(c"/nonexistent-warren-probe", &[c"probe"]);
            println!("survived execve: {r:?}");
        }
        "setns" => {
            let stdin = std::io::stdin();
            let r = nix::sched::setns(stdin.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET);
            println!("survived setns: {r:?}");
        }
        "unshare" => {
            let r = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER);
            println!("survived unshare: {r:?}");
        }
        "fork" => {
            let r = Command::new("/nonexistent-warren-probe").status();
            println!("survived fork: {r:?}");
        }
        "netlink" => {
            let r = nix::sys::socket::socket(
                nix::sys::socket::AddressFamily::Netlink,
                nix::sys::socket::SockType::Raw,
                nix::sys::socket::SockFlag::empty(),
                nix::sys::socket::SockProtocol::NetlinkRoute,
            );
            println!("survived netlink: {:?}", r.map(|_| ()));
        }
        "packet" => {
            let r = nix::sys::socket::socket(
                nix::sys::socket::AddressFamily::Packet,
                nix::sys::socket::SockType::Raw,
                nix::sys::socket::SockFlag::empty(),
                None,
            );
            println!("survived packet: {:?}", r.map(|_| ()));
        }
        _ => panic!("unknown call {call}"),
    }
}

/// Runs one probe case in a child process.
fn probe(case: &str, dir: &Path) -> Output {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "probe_child", "--nocapture", "--test-threads=1"])
        .env(PROBE_ENV, case)
        .env(DIR_ENV, dir)
        .output()
        .unwrap()
}

fn probe_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("warren-confine-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for d in ["state", "run"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::write(dir.join("secret"), b"the user's own file").unwrap();
    dir
}

fn assert_killed(case: &str, dir: &Path) -> Output {
    let out = probe(case, dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("confined"),
        "{case}: the probe did not get confined: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !stdout.contains("survived"),
        "{case}: not refused: {stdout}"
    );
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGSYS),
        "{case}: expected death by SIGSYS, got {}: {stdout}",
        out.status
    );
    out
}

#[test]
fn forbidden_syscalls_kill_and_forbidden_paths_are_refused() {
    let dir = probe_dir();

    let out = probe("daemon:files", &dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("confined seccomp=kill landlock=enforced"),
        "Landlock is expected on this kernel (ABI 7): {stdout}"
    );
    for allowed in [
        "write runtime: ok",
        "write state: ok",
        "read proc: ok",
        "read resolv.conf: ok",
        "thread: ok",
        "udp socket: ok",
    ] {
        assert!(stdout.contains(allowed), "wanted {allowed:?}: {stdout}");
    }
    let eacces = format!("errno {}", libc::EACCES);
    for refused in ["read secret", "create outside", "write etc"] {
        assert!(
            stdout.contains(&format!("{refused}: {eacces}")),
            "wanted {refused} refused with EACCES: {stdout}"
        );
    }
    assert!(!dir.join("planted").exists());

    // Everything the daemon never does kills it.
    for call in [
        "mount", "execve", "setns", "unshare", "fork", "netlink", "packet",
    ] {
        assert_killed(&format!("daemon:{call}"), &dir);
    }
    // The daemon's death leaves a trace in its own log (stderr), naming
    // the call: mount is 165 on x86_64.
    let out = assert_killed("daemon:mount", &dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "seccomp: system call {} is not in the allowlist",
            libc::SYS_mount
        )),
        "{stderr}"
    );

    // The helpers' profile allows setns and netlink, not mount.
    assert_killed("helper:mount", &dir);
    for call in ["setns", "netlink"] {
        let out = probe(&format!("helper:{call}"), &dir);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains(&format!("survived {call}")),
            "helper:{call}: {out:?}"
        );
    }

    // The escape hatch: in log mode the same call returns (and is audited).
    let out = probe("daemon-log:mount", &dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("survived mount"),
        "{out:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn status_field(pid: i32, field: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_string())
}

/// The daemon's child that is the helper spawner.
fn spawner_pid(daemon: i32) -> i32 {
    let children = std::fs::read_to_string(format!("/proc/{daemon}/task/{daemon}/children"))
        .unwrap_or_default();
    let pids: Vec<i32> = children
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("__helper-spawner"))
        })
        .collect();
    assert_eq!(pids.len(), 1, "one spawner under the daemon: {children}");
    pids[0]
}

fn gone(pid: i32) -> bool {
    status_field(pid, "State").map_or(true, |s| s.starts_with('Z'))
}

#[test]
fn the_daemon_and_its_spawner_run_confined_and_die_together() {
    let env = Env::new();
    // An attach goes through the spawner and its helper.
    env.start("c1", &[], &["sleep", "300"]);
    let gw = env.gateway("c1", "bridge");
    assert!(env.ping("c1", &gw));

    let daemon = env.daemon_pid().unwrap();
    assert_eq!(status_field(daemon, "NoNewPrivs").as_deref(), Some("1"));
    assert_eq!(status_field(daemon, "Seccomp").as_deref(), Some("2"));
    let filters: u32 = status_field(daemon, "Seccomp_filters")
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        filters >= 2,
        "the allowlist and the clone3 filter: {filters}"
    );
    let log = std::fs::read_to_string(env.runtime.join("daemon.log")).unwrap();
    // kill, unless the suite runs in log mode (WARREN_TEST_SECCOMP=log).
    let mode = std::env::var("WARREN_TEST_SECCOMP").unwrap_or_else(|_| "kill".into());
    assert!(
        log.contains("confined") && log.contains(&format!("seccomp={mode} landlock=enforced")),
        "{log}"
    );
    let spawner = spawner_pid(daemon);
    assert_eq!(status_field(spawner, "Seccomp").as_deref(), Some("2"));
    assert_eq!(status_field(spawner, "NoNewPrivs").as_deref(), Some("1"));

    // The spawner goes with the daemon, however the daemon dies...
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon),
        nix::sys::signal::SIGKILL,
    )
    .unwrap();
    assert!(
        Env::wait_until(Duration::from_secs(5), || gone(spawner)),
        "the spawner outlived the daemon"
    );
    // ...and the daemon stops when its spawner dies; the next one takes
    // the sandbox over.
    assert_eq!(env.ok(&["ps", "-q"]).lines().count(), 1);
    let daemon = env.daemon_pid().unwrap();
    let spawner = spawner_pid(daemon);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(spawner),
        nix::sys::signal::SIGKILL,
    )
    .unwrap();
    assert!(
        Env::wait_until(Duration::from_secs(5), || gone(daemon)),
        "the daemon kept running without its spawner"
    );
    assert_eq!(env.ok(&["ps", "-q"]).lines().count(), 1);
    assert!(env.ping("c1", &gw));
}
