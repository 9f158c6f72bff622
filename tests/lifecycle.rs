//! Docker's lifecycle (issue 18): exited sandboxes stay in `ps -a` with
//! their exit code until `rm` (unless `--rm`), their name stays taken, and
//! `logs`, `stop`, `kill` and `wait` work as Docker's.

mod common;

use std::time::{Duration, Instant};

use common::Env;

fn ps_all(env: &Env) -> Vec<serde_json::Value> {
    let out = env.ok(&["ps", "-a", "--format", "json"]);
    serde_json::from_str::<Vec<serde_json::Value>>(&out).unwrap_or_else(|_| {
        out.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    })
}

fn row<'a>(rows: &'a [serde_json::Value], name: &str) -> Option<&'a serde_json::Value> {
    rows.iter().find(|r| r["Names"] == name)
}

#[test]
fn an_exited_sandbox_stays_until_rm_and_keeps_its_name() {
    let env = Env::new();
    let out = env.run(&["run", "--name", "done", "--", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3));
    // Not in `ps`, in `ps -a` with Docker's status.
    assert!(!env.ok(&["ps"]).contains("done"));
    let rows = ps_all(&env);
    let r = row(&rows, "done").unwrap_or_else(|| panic!("{rows:?}"));
    assert!(
        r["Status"].as_str().unwrap().starts_with("Exited (3) "),
        "{r}"
    );
    let info = env.inspect("done");
    assert_eq!(info["State"]["Status"], "exited");
    assert_eq!(info["State"]["Running"], false);
    assert_eq!(info["State"]["ExitCode"], 3);
    assert_ne!(info["State"]["FinishedAt"], "0001-01-01T00:00:00Z");
    // Its endpoints went with it: no address is held on bridge.
    let bridge = env.json(&["network", "inspect", "bridge"]);
    assert_eq!(
        bridge[0]["Containers"].as_object().map_or(0, |c| c.len()),
        0,
        "{bridge}"
    );
    // The name is taken until rm, as in Docker.
    let err = env.fail(&["run", "--name", "done", "--", "true"]);
    assert!(err.contains("already in use by exited sandbox"), "{err}");
    assert_eq!(env.ok(&["wait", "done"]).trim(), "3");
    // The filters and -l see it, as Docker's (seed 000: `ps -lq`).
    let names = |args: &[&str]| env.ok(args).trim().to_string();
    assert_eq!(
        names(&["ps", "-a", "--filter", "exited=3", "--format", "{{.Names}}"]),
        "done"
    );
    assert_eq!(
        names(&["ps", "-a", "--filter", "exited=0", "--format", "{{.Names}}"]),
        ""
    );
    assert_eq!(
        names(&["ps", "--filter", "status=exited", "--format", "{{.Names}}"]),
        "done"
    );
    assert_eq!(names(&["ps", "-lq"]), info["Id"].as_str().unwrap()[..12]);
    env.ok(&["rm", "done"]);
    assert!(row(&ps_all(&env), "done").is_none());
    env.ok(&["run", "--name", "done", "--", "true"]);
    // --rm keeps nothing.
    env.ok(&["run", "--rm", "--name", "gone", "--", "true"]);
    assert!(Env::wait_until(Duration::from_secs(2), || row(
        &ps_all(&env),
        "gone"
    )
    .is_none()));
    env.ok(&["run", "--name", "gone", "--", "true"]);
}

#[test]
fn logs_of_a_detached_sandbox_with_tail_and_follow() {
    let env = Env::new();
    env.ok(&[
        "run",
        "-d",
        "--name",
        "talker",
        "--",
        "sh",
        "-c",
        "echo one; echo two; sleep 0.5; echo three; exit 4",
    ]);
    let follow = env.ok(&["logs", "-f", "talker"]);
    assert_eq!(follow, "one\ntwo\nthree\n");
    assert_eq!(env.ok(&["logs", "--tail", "1", "talker"]), "three\n");
    assert_eq!(env.ok(&["wait", "talker"]).trim(), "4");
    let err = env.fail(&["logs", "nosuch"]);
    assert!(err.contains("no such sandbox"), "{err}");
    env.ok(&["run", "--name", "fg", "--", "true"]);
    let err = env.fail(&["logs", "fg"]);
    assert!(
        err.contains("only `warren run -d` keeps its output"),
        "{err}"
    );
}

#[test]
fn stop_terms_then_kills_and_kill_sends_the_signal() {
    let env = Env::new();
    // A command that exits on SIGTERM: stop returns at once, with its code.
    env.ok(&[
        "run",
        "-d",
        "--name",
        "polite",
        "--",
        "sh",
        "-c",
        "trap 'exit 0' TERM; while :; do sleep 0.1; done",
    ]);
    let t = Instant::now();
    assert_eq!(env.ok(&["stop", "polite"]).trim(), "polite");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert_eq!(env.ok(&["wait", "polite"]).trim(), "0");
    // One that ignores it is killed after -t seconds (137 = 128 + SIGKILL).
    env.ok(&[
        "run",
        "-d",
        "--name",
        "stubborn",
        "--",
        "sh",
        "-c",
        "trap '' TERM; while :; do sleep 0.1; done",
    ]);
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    env.ok(&["stop", "-t", "1", "stubborn"]);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(4),
        "{took:?}"
    );
    assert_eq!(env.ok(&["wait", "stubborn"]).trim(), "137");
    // Stopping an exited sandbox is a no-op, as in Docker.
    env.ok(&["stop", "stubborn"]);
    // kill -s passes the signal to the command; kill alone is SIGKILL.
    env.ok(&[
        "run",
        "-d",
        "--name",
        "target",
        "--",
        "sh",
        "-c",
        "trap 'echo got-USR1' USR1; echo ready; while :; do sleep 0.1; done",
    ]);
    assert!(Env::wait_until(Duration::from_secs(5), || env
        .ok(&["logs", "target"])
        .contains("ready")));
    env.ok(&["kill", "-s", "USR1", "target"]);
    assert!(Env::wait_until(Duration::from_secs(5), || env
        .ok(&["logs", "target"])
        .contains("got-USR1")));
    env.ok(&["kill", "target"]);
    assert_eq!(env.ok(&["wait", "target"]).trim(), "137");
    let err = env.fail(&["kill", "target"]);
    assert!(err.contains("is not running"), "{err}");
    let err = env.fail(&["kill", "-s", "NOPE", "polite"]);
    assert!(err.contains("invalid signal"), "{err}");
}

#[test]
fn exited_sandboxes_survive_a_daemon_restart() {
    let env = Env::new();
    let out = env.run(&["run", "--name", "before", "--", "sh", "-c", "exit 5"]);
    assert_eq!(out.status.code(), Some(5));
    let pid = env.daemon_pid().expect("daemon pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(Env::wait_until(
        Duration::from_secs(5),
        || !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| s.contains(") Z"))
                .unwrap_or(true)
    ));
    let rows = ps_all(&env);
    let r = row(&rows, "before").unwrap_or_else(|| panic!("{rows:?}"));
    assert!(
        r["Status"].as_str().unwrap().starts_with("Exited (5) "),
        "{r}"
    );
    env.ok(&["rm", "before"]);
}
