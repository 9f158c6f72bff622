//! `warren run` as Docker users type it (issue 18): the first word that is
//! not an option starts the command, with or without `--`; Docker options
//! warren does not take are refused by name with 125; `-e`, `--env-file`,
//! `-w`, `--init`, `--rm` work as Docker documents them; exit codes are
//! Docker's (125 warren's own errors, 126 not runnable, 127 not found).

mod common;

use common::Env;

fn code(env: &Env, args: &[&str]) -> (Option<i32>, String, String) {
    let out = env.run(args);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_flag_is_never_the_command() {
    let env = Env::new();
    // Without `--`: options first, then the command with its own options.
    let (c, out, err) = code(
        &env,
        &[
            "run",
            "--rm",
            "-e",
            "FOO=bar",
            "sh",
            "-c",
            "echo $FOO; exit 4",
        ],
    );
    assert_eq!(c, Some(4), "{err}");
    assert_eq!(out, "bar\n");
    // An option after the command's first word is the command's.
    let (c, out, _) = code(&env, &["run", "--rm", "echo", "--rm", "-e"]);
    assert_eq!(c, Some(0));
    assert_eq!(out, "--rm -e\n");
    // An unknown option is an error that names it, never a command.
    let (c, _, err) = code(&env, &["run", "--bogus", "true"]);
    assert_eq!(c, Some(125), "{err}");
    assert!(err.contains("--bogus"), "{err}");
    assert!(!err.contains("cannot run"), "{err}");
    // Docker's statuses for a command that cannot run.
    assert_eq!(
        code(&env, &["run", "--rm", "no-such-command-here"]).0,
        Some(127)
    );
    assert_eq!(code(&env, &["run", "--rm", "/etc/hostname"]).0, Some(126));
    // Usage errors of other commands are 125 too, help is 0.
    assert_eq!(code(&env, &["network", "create"]).0, Some(125));
    assert_eq!(code(&env, &["run", "--help"]).0, Some(0));
}

#[test]
fn docker_options_warren_does_not_take_are_refused_by_name() {
    let env = Env::new();
    for (args, name) in [
        (vec!["-v", "/tmp:/data"], "-v/--volume"),
        (vec!["--mount", "type=bind,src=/tmp,dst=/data"], "--mount"),
        (vec!["--entrypoint", "sh"], "--entrypoint"),
        (vec!["--privileged"], "--privileged"),
        (vec!["--cap-add", "NET_ADMIN"], "--cap-add"),
        (vec!["-m", "512m"], "-m/--memory"),
        (vec!["--cpus", "2"], "--cpus"),
        (vec!["-u", "1000"], "-u/--user"),
        (vec!["--restart", "always"], "--restart"),
    ] {
        let mut argv = vec!["run"];
        argv.extend_from_slice(&args);
        argv.push("true");
        let (c, _, err) = code(&env, &argv);
        assert_eq!(c, Some(125), "{args:?}: {err}");
        assert!(
            err.contains(&format!("does not take {name}")),
            "{args:?}: {err}"
        );
    }
    // Nothing was started for any of them.
    assert!(env.ok(&["ps", "-aq"]).trim().is_empty());
}

#[test]
fn env_file_workdir_and_init_as_docker() {
    let env = Env::new();
    let file = env.dir.join("vars.env");
    std::fs::write(&file, "# a comment\nA=1\n\nB=two words\nA=3\n").unwrap();
    let file = file.to_str().unwrap();
    let out = env.ok(&[
        "run",
        "--rm",
        "--init",
        "--env-file",
        file,
        "-e",
        "C=4",
        "-w",
        "/usr",
        "sh",
        "-c",
        "echo $A/$B/$C; pwd",
    ]);
    assert_eq!(out, "3/two words/4\n/usr\n");
    let (c, _, err) = code(&env, &["run", "--rm", "-w", "/no/such/dir", "true"]);
    assert_eq!(c, Some(125), "{err}");
    assert!(err.contains("-w /no/such/dir"), "{err}");
    // exec takes the same.
    env.start("box", &["bridge"], &["sleep", "300"]);
    let out = env.ok(&[
        "exec",
        "--env-file",
        file,
        "-w",
        "/etc",
        "box",
        "sh",
        "-c",
        "echo $A; pwd",
    ]);
    assert_eq!(out, "3\n/etc\n");
}
