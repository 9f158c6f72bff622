//! A sandbox's processes (issue 18, "Processes"): every `warren run`
//! sandbox has a PID namespace of its own with a small init as PID 1, so
//! `ps` inside sees only the sandbox, signals reach the command, and when
//! the command ends or the sandbox is removed every process in it ends.

mod common;

use std::time::Duration;

use common::Env;

/// Host pids of every process (any user) whose command line is exactly
/// `sleep MARK`.
fn sleepers(mark: &str) -> Vec<i32> {
    let want = format!("sleep\0{mark}\0");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| c == want.as_bytes())
                .unwrap_or(false)
        })
        .collect()
}

/// A `sleep` argument no other test or run uses.
fn mark(n: u32) -> String {
    format!("{}.{n}", 10_000 + std::process::id() % 50_000)
}

/// A command that leaves three children behind in three ways: a plain
/// background job, one in a session of its own, one ignoring SIGHUP.
fn leaves_children(mark: &str) -> String {
    format!(
        "sleep {mark} & setsid sleep {mark} & nohup sleep {mark} >/dev/null 2>&1 & echo spawned"
    )
}

#[test]
fn the_commands_exit_ends_every_process_it_left_behind() {
    let env = Env::new();
    let m = mark(1);
    let out = env.ok(&["run", "--", "sh", "-c", &leaves_children(&m)]);
    assert!(out.contains("spawned"), "{out}");
    assert!(
        Env::wait_until(Duration::from_secs(1), || sleepers(&m).is_empty()),
        "left behind: {:?}",
        sleepers(&m)
    );
    // The same with --network host, which shares the caller's network only.
    let m = mark(2);
    env.ok(&[
        "run",
        "--network",
        "host",
        "--",
        "sh",
        "-c",
        &leaves_children(&m),
    ]);
    assert!(
        Env::wait_until(Duration::from_secs(1), || sleepers(&m).is_empty()),
        "--network host left behind: {:?}",
        sleepers(&m)
    );
}

#[test]
fn rm_f_ends_every_process_of_the_sandbox_within_a_second() {
    let env = Env::new();
    let m = mark(3);
    let script = format!("{}; wait", leaves_children(&m));
    env.start("busy", &["bridge"], &["sh", "-c", &script]);
    // The positive control: they are running, as the unprivileged user.
    assert!(
        Env::wait_until(Duration::from_secs(5), || sleepers(&m).len() == 3),
        "{:?}",
        sleepers(&m)
    );
    let start = std::time::Instant::now();
    env.ok(&["rm", "-f", "busy"]);
    assert!(
        Env::wait_until(Duration::from_secs(1), || sleepers(&m).is_empty()),
        "rm -f left behind: {:?}",
        sleepers(&m)
    );
    eprintln!("rm -f to no process left: {:?}", start.elapsed());
}

#[test]
fn ps_inside_run_and_exec_lists_only_the_sandbox() {
    let env = Env::new();
    let out = env.ok(&["run", "--", "ps", "-e", "-o", "pid=,comm="]);
    let rows: Vec<(i32, String)> = out
        .lines()
        .filter_map(|l| {
            let (pid, comm) = l.trim().split_once(' ')?;
            Some((pid.parse().ok()?, comm.trim().to_string()))
        })
        .collect();
    // PID 1 (the init) and ps itself: nothing of the host's.
    assert_eq!(rows.len(), 2, "{out}");
    assert_eq!(rows[0], (1, "warren".to_string()), "{out}");
    assert!(rows[1].1 == "ps", "{out}");

    let m = mark(4);
    env.start("box", &["bridge"], &["sleep", &m]);
    let out = env.exec_ok("box", &["ps", "-e", "-o", "pid=,args="]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "the init, the command and ps: {out}");
    assert!(
        lines[0].trim().starts_with("1 ") && lines[0].contains("warren __init"),
        "{out}"
    );
    assert!(out.contains(&format!("sleep {m}")), "{out}");
    assert!(!out.contains("daemon"), "{out}");
}

#[test]
fn signals_reach_the_command_through_its_init() {
    let env = Env::new();
    // SIGTERM to the sandbox (its init, as `stop` and the CLI send it):
    // the command's trap runs and its status is the sandbox's.
    env.start(
        "trapper",
        &["bridge"],
        &[
            "sh",
            "-c",
            "trap 'echo got-TERM; exit 7' TERM; echo ready; while :; do sleep 0.1; done",
        ],
    );
    let id = env.inspect("trapper")["Id"].as_str().unwrap().to_string();
    let path = env.runtime.join("logs").join(format!("{id}.log"));
    let log = || std::fs::read_to_string(&path).unwrap_or_default();
    assert!(Env::wait_until(Duration::from_secs(5), || log().contains("ready")));
    let text_before = log();
    let pid = env.pid("trapper");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(
        Env::wait_until(Duration::from_secs(3), || log().contains("got-TERM")),
        "{text_before}\n---\n{}",
        log()
    );
    assert!(Env::wait_until(Duration::from_secs(2), || {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
    }));
}
