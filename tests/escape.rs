//! The escapes a security review reproduced (issue 16), each tried again
//! as the attacker would, as the unprivileged user, and shown to fail.
//!
//! - a sandbox unmounting the covers over warren's directories and
//!   driving the API (then creating a `host-loopback` network to reach the
//!   host's 127.0.0.1);
//! - a sandbox typing into the caller's terminal with `TIOCSTI`;
//! - `exec` handing the caller's whole environment to the sandbox;
//! - a `--read-only` sandbox writing the user's files.

mod common;

use common::terminal::{on_a_terminal, typing_on_a_terminal};
use common::{test_ids, tool, Env};

/// The probe's verdict lines for one sandbox, checked: every `umount` and
/// the revealing bind fail with EINVAL (the mounts are locked), and every
/// API request through a path that reaches the socket is answered 403.
fn assert_contained(what: &str, out: &str, handed: &str) {
    let lines: Vec<&str> = out.lines().collect();
    let umounts: Vec<&&str> = lines.iter().filter(|l| l.starts_with("umount")).collect();
    assert_eq!(umounts.len(), 4, "{what}: {out}");
    for l in &umounts {
        assert!(
            l.ends_with(" 22"),
            "{what}: a cover came off or failed oddly: {l}\n{out}"
        );
    }
    let bind = lines.iter().find(|l| l.starts_with("bind ")).unwrap();
    assert!(bind.ends_with(" 22"), "{what}: {bind}\n{out}");
    let api = lines
        .iter()
        .find(|l| l.starts_with(&format!("api {handed} ")))
        .unwrap_or_else(|| panic!("{what}: no api line for {handed}\n{out}"));
    assert_eq!(
        *api,
        format!("api {handed} 403 403"),
        "{what}: the API must refuse a sandbox\n{out}"
    );
    // The covered path itself does not even connect.
    let covered = lines
        .iter()
        .find(|l| l.starts_with("api ") && l.contains("/warren.sock"))
        .unwrap();
    assert!(covered.ends_with(" 0 0"), "{what}: {covered}");
}

#[test]
fn sandboxes_cannot_undo_their_covers_nor_use_the_api_by_any_path() {
    let env = Env::new();
    env.ok(&["network", "ls"]);
    // The test hands the sandbox a path to the socket on purpose: a hard
    // link where nothing covers it (the sandbox sees the test's directory).
    let handed = env.dir.join("handed.sock");
    let ln = env
        .user_cmd("ln")
        .arg(env.runtime.join("warren.sock"))
        .arg(&handed)
        .status()
        .unwrap();
    assert!(ln.success());
    let handed = handed.to_str().unwrap().to_string();
    let probe = tool("escape_probe.py");
    let (run, state) = (
        env.runtime.to_str().unwrap().to_string(),
        env.state.to_str().unwrap().to_string(),
    );
    let args = ["python3", &probe, &run, &state, &handed];

    // The control: outside a sandbox the same probe, as the same user,
    // reaches the API through the handed path (so the probe can fail).
    let outside = env.user_cmd("python3").args(&args[1..]).output().unwrap();
    let outside = String::from_utf8_lossy(&outside.stdout).to_string();
    assert!(
        outside.contains(&format!("api {handed} 200 ")),
        "the control must reach the API: {outside}"
    );
    env.ok(&["network", "rm", "evil"]);

    for net in ["bridge", "none", "host"] {
        let mut cmd = vec!["run", "--network", net, "--"];
        cmd.extend_from_slice(&args);
        let out = env.ok(&cmd);
        assert_contained(&format!("run --network {net}"), &out, &handed);
    }
    env.start("box", &["bridge"], &["sleep", "300"]);
    let out = env.exec_ok("box", &args);
    assert_contained("exec", &out, &handed);
    // Nothing the sandboxes sent was acted on.
    let nets = env.ok(&["network", "ls"]);
    assert!(!nets.contains("evil"), "{nets}");
    let log = std::fs::read_to_string(env.runtime.join("daemon.log")).unwrap_or_default();
    assert!(
        log.contains("refusing an API connection from inside a sandbox"),
        "{log}"
    );
}

#[test]
fn a_sandbox_cannot_type_into_the_callers_terminal() {
    let env = Env::new();
    env.ok(&["network", "ls"]);
    let warren = common::warren_bin();
    let probe = tool("tiocsti.py");
    // The control: the probe run directly on the terminal does push its
    // line into the input queue, where the user's shell would run it
    // (unless this kernel has dev.tty.legacy_tiocsti=0, which stops
    // everybody).
    let legacy = std::fs::read_to_string("/proc/sys/dev/tty/legacy_tiocsti")
        .map(|v| v.trim() != "0")
        .unwrap_or(true);
    let (text, pending) = on_a_terminal(&env, &["python3", &probe]);
    if legacy {
        assert!(
            !pending.starts_with("0 ") && pending.contains("echo TYPED-BY-THE-SANDBOX"),
            "the control must be able to type: {text}"
        );
    }
    env.start("box", &["bridge"], &["sleep", "300"]);
    for args in [
        vec!["run", "--", "python3", &probe],
        vec!["run", "-i", "--", "python3", &probe],
        vec!["run", "-it", "--", "python3", &probe],
        vec!["run", "--network", "host", "--", "python3", &probe],
        vec!["exec", "box", "--", "python3", &probe],
        vec!["exec", "-it", "box", "--", "python3", &probe],
    ] {
        let mut argv = vec![warren.as_str()];
        argv.extend_from_slice(&args);
        let (text, pending) = on_a_terminal(&env, &argv);
        assert!(text.contains("TIOCSTI "), "{args:?}: the probe ran: {text}");
        assert!(text.contains("STATUS 0"), "{args:?}: {text}");
        assert_eq!(
            pending, "0 b''",
            "{args:?} typed into the caller's terminal: {text}"
        );
        if args.contains(&"-it") {
            // Its own pty: what it pushes stays its own input.
            assert!(text.contains("fd0=pushed"), "{args:?}: {text}");
        } else {
            assert!(!text.contains("=pushed"), "{args:?}: {text}");
        }
    }
    // -t gives a terminal of the sandbox's own, with the caller's size.
    let (text, _) = on_a_terminal(
        &env,
        &[
            &warren,
            "run",
            "-it",
            "--",
            "sh",
            "-c",
            "tty; test -t 0 && echo STDIN-IS-A-TTY",
        ],
    );
    assert!(
        text.contains("/dev/pts/") && text.contains("STDIN-IS-A-TTY"),
        "{text}"
    );
    // An interactive shell, as the seeds' first `run -ti … sh`: what the
    // user types reaches it, and its status is `run`'s.
    let (text, pending) = typing_on_a_terminal(
        &env,
        &[&warren, "run", "-it", "--", "sh"],
        "echo $((6*7)); echo STILL-HERE; exit 3\\n",
    );
    assert!(text.contains("42"), "{text}");
    assert!(
        text.contains("STILL-HERE") && text.contains("STATUS 768"),
        "{text}"
    );
    assert_eq!(pending, "0 b''", "{text}");
}

#[test]
fn exec_and_run_pass_only_the_documented_environment() {
    let env = Env::new();
    env.start("box", &["bridge"], &["sleep", "300"]);
    let with_secrets = |args: &[&str]| {
        let out = env
            .cmd(args)
            .env("SECRET_TOKEN", "hunter2")
            .env("SSH_AUTH_SOCK", "/tmp/agent.sock")
            .env("FOO", "from-the-caller")
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        let mut vars: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split('=').next().unwrap().to_string())
            .collect();
        vars.sort();
        (vars, String::from_utf8_lossy(&out.stdout).to_string())
    };
    for args in [
        vec!["exec", "-e", "FOO", "-e", "BAR=2", "box", "--", "env"],
        vec!["run", "-e", "FOO", "-e", "BAR=2", "--", "env"],
    ] {
        let (vars, text) = with_secrets(&args);
        assert_eq!(vars, ["BAR", "FOO", "HOME", "PATH"], "{args:?}: {text}");
        assert!(
            text.contains("FOO=from-the-caller") && text.contains("BAR=2"),
            "{text}"
        );
    }
    // -t adds TERM (xterm when the caller has none).
    let (vars, _) = with_secrets(&["exec", "-t", "box", "--", "env"]);
    assert_eq!(vars, ["HOME", "PATH", "TERM"]);
    let bad = env.fail(&["exec", "-e", "=x", "box", "--", "true"]);
    assert!(bad.contains("invalid --env"), "{bad}");
}

#[test]
fn read_only_sandboxes_write_only_tmp_and_writable_paths() {
    let env = Env::new();
    // Outside /tmp, which --read-only replaces with a private one.
    let base = std::path::PathBuf::from(format!("/var/tmp/warren-ro-{}", std::process::id()));
    let (kept, open) = (base.join("kept"), base.join("open"));
    for d in [&base, &kept, &open] {
        std::fs::create_dir_all(d).unwrap();
        if let Some((uid, gid)) = test_ids() {
            nix::unistd::chown(d.as_path(), Some(uid.into()), Some(gid.into())).unwrap();
        }
    }
    let script = format!(
        "for f in {kept}/f {open}/f /tmp/f /etc/warren-ro-probe; do \
           if echo x 2>/dev/null > $f; then echo \"$f=written\"; else echo \"$f=refused\"; fi; \
         done; \
         python3 -c 'import os\ntry:\n  open(\"{kept}/g\", \"w\")\nexcept OSError as e: print(\"errno\", e.errno)'; \
         mount -o remount,rw / 2>/dev/null && echo REMOUNTED; \
         umount /tmp 2>/dev/null && echo UNMOUNTED; true",
        kept = kept.display(),
        open = open.display()
    );
    // The control: without --read-only the user's files are the sandbox's.
    let out = env.ok(&["run", "--", "sh", "-c", &script]);
    assert!(
        out.contains(&format!("{}/f=written", kept.display())),
        "{out}"
    );
    std::fs::remove_file(kept.join("f")).unwrap();
    let _ = std::fs::remove_file(kept.join("g"));

    let open_s = open.to_str().unwrap();
    let out = env.ok(&[
        "run",
        "--read-only",
        "--writable",
        open_s,
        "--",
        "sh",
        "-c",
        &script,
    ]);
    assert!(
        out.contains(&format!("{}/f=refused", kept.display())),
        "{out}"
    );
    assert!(
        out.contains(&format!("{}/f=written", open.display())),
        "{out}"
    );
    assert!(out.contains("/tmp/f=written"), "{out}");
    assert!(out.contains("/etc/warren-ro-probe=refused"), "{out}");
    // EROFS (30) from the locked read-only mount.
    assert!(
        out.contains("errno 30") || out.contains("errno 13"),
        "{out}"
    );
    assert!(
        !out.contains("REMOUNTED") && !out.contains("UNMOUNTED"),
        "{out}"
    );
    assert!(!kept.join("f").exists() && !kept.join("g").exists());
    assert!(open.join("f").exists());
    // The private /tmp was the sandbox's: nothing reached the host's.
    let err = env.fail(&["run", "--writable", open_s, "--", "true"]);
    assert!(err.contains("--read-only"), "{err}");
    let err = env.fail(&["run", "--read-only", "--writable", "/tmp", "--", "true"]);
    assert!(err.contains("private /tmp"), "{err}");
    std::fs::remove_dir_all(&base).unwrap();
}
