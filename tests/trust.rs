//! The CLI trusts only its own daemon (issue 16, item 2): another local
//! user who creates the runtime directory first (`/tmp/warren-$UID` is a
//! name anyone can guess) and listens on `warren.sock` must never be sent
//! a request, or it could answer `warren run` with bind mounts of its
//! choosing.
//!
//! Root plays the other user: it plants directories owned by uid
//! [`OTHER`] (or by the victim, too open, or a symlink) and runs an
//! impostor listener (`tests/tools/impostor.py`) as that uid or as itself,
//! which records every connection and request. The victim is the usual
//! unprivileged test uid. Every refusal must name the path, what is wrong
//! with it and the way out, exit non-zero, start no daemon, and leave the
//! impostor without a connection (or, for the peer-credential check, which
//! needs one, without a request). These tests need root (to be another
//! user); run unprivileged they say so and pass.

mod common;

use std::fs::File;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{test_ids, tool, Env};

/// "Another user": a uid nothing else in the tests uses.
const OTHER: u32 = 65533;

/// The victim's uid, or `None` (and a note) when the tests do not run as
/// root and so cannot play another user.
fn victim() -> Option<u32> {
    let ids = test_ids().map(|(uid, _)| uid);
    if ids.is_none() {
        common::skip("playing another user needs root");
    }
    ids
}

/// Makes `dir` owned by `uid` with `mode`, as that user would.
fn plant(dir: &Path, uid: u32, mode: u32) {
    std::fs::create_dir(dir).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).unwrap();
    nix::unistd::chown(dir, Some(uid.into()), Some(uid.into())).unwrap();
}

/// A listener on a socket path that is not the victim's daemon; killed on
/// drop.
struct Impostor {
    child: Child,
    log: PathBuf,
}

impl Impostor {
    /// Listens on `sock` as `run_as` (root if `None`), the socket chowned
    /// to `chown` if given; its record goes to a file in `env.dir`.
    fn start(env: &Env, sock: &Path, run_as: Option<u32>, chown: Option<u32>) -> Impostor {
        static N: AtomicUsize = AtomicUsize::new(0);
        let log = env
            .dir
            .join(format!("impostor-{}.log", N.fetch_add(1, Ordering::SeqCst)));
        let out = File::create(&log).unwrap();
        let mut cmd = Command::new("python3");
        cmd.arg(tool("impostor.py")).arg(sock);
        if let Some(uid) = chown {
            cmd.arg(uid.to_string());
        }
        if let Some(uid) = run_as {
            cmd.uid(uid).gid(uid);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("python3");
        let imp = Impostor { child, log };
        let up = Env::wait_until(Duration::from_secs(10), || {
            imp.record().contains("listening")
        });
        assert!(up, "the impostor did not listen: {}", imp.record());
        imp
    }

    fn record(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn assert_never_connected(&self) {
        let r = self.record();
        assert!(
            !r.contains("connect"),
            "the impostor was connected to:\n{r}"
        );
    }

    fn assert_never_asked(&self) {
        let r = self.record();
        assert!(!r.contains("request"), "the impostor got a request:\n{r}");
    }
}

impl Drop for Impostor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `cmd` for at most 15 s (a `warren daemon` that wrongly accepts
/// the directory would serve forever).
fn bounded(cmd: &mut Command) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// `out` failed with `want` in its message and the hint naming every way
/// to choose another directory; returns stderr.
fn refused(what: &str, out: &Output, want: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "{what} should have failed:\nstdout: {}\nstderr: {stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(stderr.contains(want), "{what}: no {want:?} in:\n{stderr}");
    for way in ["--runtime-dir", "WARREN_RUNTIME_DIR", "XDG_RUNTIME_DIR"] {
        assert!(
            stderr.contains(way),
            "{what}: the hint lacks {way}:\n{stderr}"
        );
    }
    stderr
}

/// What the CLI tries first and what the attack is about (`run` posts
/// `/v1/sandboxes`, whose answer the sandbox init would follow).
const COMMANDS: [&[&str]; 3] = [
    &["network", "ls"],
    &["ps"],
    &["run", "--name", "victim", "--", "true"],
];

/// No daemon was started there and nothing was written for one.
fn assert_nothing_started(dir: &Path) {
    for f in ["warren.pid", "daemon.log"] {
        assert!(
            !dir.join(f).exists(),
            "{} was written",
            dir.join(f).display()
        );
    }
}

#[test]
fn another_users_runtime_directory_is_refused_and_never_connected() {
    let Some(me) = victim() else { return };
    let env = Env::new();
    plant(&env.runtime, OTHER, 0o755);
    let imp = Impostor::start(&env, &env.runtime.join("warren.sock"), Some(OTHER), None);
    let want = format!(
        "refusing the runtime directory {}: it belongs to uid {OTHER}, not to you (uid {me}); \
         another user may have made it to impersonate your warren daemon",
        env.runtime.display()
    );
    for args in COMMANDS {
        let stderr = refused(&format!("warren {args:?}"), &env.run(args), &want);
        assert!(stderr.contains("\nhint: "), "{stderr}");
    }
    // The daemon will not serve from it either.
    refused("warren daemon", &bounded(&mut env.cmd(&["daemon"])), &want);
    imp.assert_never_connected();
    assert_nothing_started(&env.runtime);
}

#[test]
fn a_symlinked_runtime_directory_is_refused_and_never_connected() {
    let Some(me) = victim() else { return };
    let env = Env::new();
    // To a private directory of the victim's, with root's listener in it
    // (its socket chowned to the victim), and to the other user's.
    let mine = env.dir.join("mine");
    plant(&mine, me, 0o700);
    let theirs = env.dir.join("theirs");
    plant(&theirs, OTHER, 0o755);
    let imps = [
        Impostor::start(&env, &mine.join("warren.sock"), None, Some(me)),
        Impostor::start(&env, &theirs.join("warren.sock"), Some(OTHER), None),
    ];
    for (target, link) in [
        (&mine, env.dir.join("to-mine")),
        (&theirs, env.dir.join("to-theirs")),
    ] {
        std::os::unix::fs::symlink(target, &link).unwrap();
        std::os::unix::fs::lchown(&link, Some(OTHER), Some(OTHER)).unwrap();
        let want = format!(
            "refusing the runtime directory {}: it is a symbolic link to {}, made by uid {OTHER}, \
             not a directory",
            link.display(),
            target.display()
        );
        let dir = link.to_str().unwrap();
        for args in COMMANDS {
            let mut a = vec!["--runtime-dir", dir];
            a.extend_from_slice(args);
            refused(&format!("warren {a:?}"), &env.run(&a), &want);
        }
        refused(
            "warren daemon",
            &bounded(&mut env.cmd(&["--runtime-dir", dir, "daemon"])),
            &want,
        );
        assert_nothing_started(target);
    }
    for imp in &imps {
        imp.assert_never_connected();
    }
}

#[test]
fn a_runtime_directory_open_to_others_is_refused_and_left_alone() {
    let Some(me) = victim() else { return };
    let env = Env::new();
    // The victim's own, but 0777: the other user has put a listener in it.
    plant(&env.runtime, me, 0o777);
    let imp = Impostor::start(&env, &env.runtime.join("warren.sock"), Some(OTHER), None);
    let want = format!(
        "refusing the runtime directory {}: its mode is 0777, so other users can reach or \
         change what is in it (it must be 0700)",
        env.runtime.display()
    );
    for args in COMMANDS {
        let stderr = refused(&format!("warren {args:?}"), &env.run(args), &want);
        assert!(
            stderr.contains(&format!("remove {} if it is yours", env.runtime.display())),
            "{stderr}"
        );
    }
    refused("warren daemon", &bounded(&mut env.cmd(&["daemon"])), &want);
    imp.assert_never_connected();
    assert_nothing_started(&env.runtime);
    let mode = std::fs::metadata(&env.runtime).unwrap().mode() & 0o7777;
    assert_eq!(mode, 0o777, "refused, not silently chmodded");
}

#[test]
fn a_socket_of_another_user_is_refused_and_never_connected() {
    let Some(me) = victim() else { return };
    let env = Env::new();
    // A good directory of the victim's; only root can put the other
    // user's socket in it.
    plant(&env.runtime, me, 0o700);
    let sock = env.runtime.join("warren.sock");
    let imp = Impostor::start(&env, &sock, None, Some(OTHER));
    let want = format!(
        "refusing the daemon socket {}: it belongs to uid {OTHER}, not to you (uid {me}); \
         another user may be impersonating your warren daemon",
        sock.display()
    );
    for args in COMMANDS {
        refused(&format!("warren {args:?}"), &env.run(args), &want);
    }
    imp.assert_never_connected();
    assert_nothing_started(&env.runtime);
}

#[test]
fn a_daemon_of_another_uid_is_refused_before_any_request() {
    let Some(me) = victim() else { return };
    let env = Env::new();
    // Directory and socket are the victim's (root chowned the socket):
    // only the peer's credentials show that root is listening.
    plant(&env.runtime, me, 0o700);
    let sock = env.runtime.join("warren.sock");
    let imp = Impostor::start(&env, &sock, None, Some(me));
    let meta = std::fs::symlink_metadata(&sock).unwrap();
    assert!(meta.file_type().is_socket() && meta.uid() == me);
    let want = format!(
        "refusing the daemon at {}: it runs as uid 0 (root), not as you (uid {me}); another \
         user may be impersonating your warren daemon (nothing was sent to it)",
        sock.display()
    );
    for args in COMMANDS {
        refused(&format!("warren {args:?}"), &env.run(args), &want);
    }
    assert!(imp.record().contains("connect"), "{}", imp.record());
    imp.assert_never_asked();
    assert_nothing_started(&env.runtime);
}

/// Runs `warren-cni ADD` through `cmd` with `config`; it must fail.
/// Returns its JSON answer.
fn cni_add(cmd: &mut Command, config: &serde_json::Value) -> serde_json::Value {
    let (ok, answer) = common::run_cni(
        cmd.env("CNI_COMMAND", "ADD")
            .env("CNI_CONTAINERID", "0123456789abcdef")
            .env("CNI_NETNS", "/proc/1/ns/net")
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", "/opt/cni/bin"),
        config,
    );
    assert!(!ok, "warren-cni ADD should have failed: {answer}");
    answer
}

/// The CNI plugin's error names the refusal in `msg` and the way out in
/// `details`, with a code that does not mean "try again later".
fn assert_cni_refused(answer: &serde_json::Value, want: &str) {
    assert_eq!(answer["code"], 50, "{answer}");
    let msg = answer["msg"].as_str().unwrap_or_default();
    assert!(msg.contains(want), "no {want:?} in {answer}");
    let details = answer["details"].as_str().unwrap_or_default();
    assert!(details.contains("--runtime-dir"), "{answer}");
}

/// A process for slirp4netns to be given (it opens its namespaces before
/// it connects); killed on drop.
struct Target(Child);

impl Target {
    fn start(sleep: &mut Command) -> Target {
        Target(sleep.arg("60").spawn().expect("sleep"))
    }

    fn pid(&self) -> String {
        self.0.id().to_string()
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn cni_and_slirp4netns_refuse_a_planted_directory() {
    let Some(me) = victim() else { return };
    let env = Env::new();
    plant(&env.runtime, OTHER, 0o755);
    let imp = Impostor::start(&env, &env.runtime.join("warren.sock"), Some(OTHER), None);
    let want = format!(
        "refusing the runtime directory {}: it belongs to uid {OTHER}, not to you (uid {me})",
        env.runtime.display()
    );
    let config = |runtime_dir: Option<&Path>| {
        let mut c = serde_json::json!({
            "cniVersion": "1.0.0", "name": "dev", "type": "warren",
            "warrenPath": tool("warren"),
        });
        if let Some(d) = runtime_dir {
            c["runtimeDir"] = d.to_str().unwrap().into();
        }
        c
    };
    // Through WARREN_RUNTIME_DIR, and through the configuration's runtimeDir.
    let answer = cni_add(&mut env.user_cmd(env.cni_bin()), &config(None));
    assert_cni_refused(&answer, &want);
    let answer = cni_add(
        env.user_cmd(env.cni_bin()).env_remove("WARREN_RUNTIME_DIR"),
        &config(Some(&env.runtime)),
    );
    assert_cni_refused(&answer, &want);

    // `warren slirp4netns` and a `slirp4netns` symlink: refused before
    // anything is asked of the daemon.
    let target = Target::start(&mut env.user_cmd("sleep"));
    let out = bounded(&mut env.cmd(&["slirp4netns", "--configure", &target.pid(), "tap0"]));
    let stderr = refused("warren slirp4netns", &out, &want);
    assert!(stderr.starts_with("warren slirp4netns: "), "{stderr}");
    let out = bounded(env.user_cmd(env.slirp_link()).args([&target.pid(), "tap0"]));
    refused("slirp4netns", &out, &want);

    imp.assert_never_connected();
    assert_nothing_started(&env.runtime);
}

/// A uid no other test uses, for the real default `/tmp/warren-$UID`.
fn spare_uid() -> u32 {
    std::env::var("WARREN_TEST_SPARE_UID")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(65500)
}

/// `/tmp/warren-UID` of the spare uid: cleared before and after (its
/// daemon killed), even when the test fails.
struct DefaultDir(PathBuf);

impl DefaultDir {
    fn clear(&self) {
        if let Some(pid) = std::fs::read_to_string(self.0.join("warren.pid"))
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
        {
            let pid = nix::unistd::Pid::from_raw(pid);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::SIGKILL);
            Env::wait_until(Duration::from_secs(5), || {
                nix::sys::signal::kill(pid, None).is_err()
            });
        }
        let _ = std::fs::remove_dir_all(&self.0);
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Drop for DefaultDir {
    fn drop(&mut self) {
        self.clear();
    }
}

#[test]
fn the_default_runtime_directory_in_tmp_is_checked_then_made_private() {
    if victim().is_none() {
        return;
    }
    let spare = spare_uid();
    let env = Env::new();
    let default = DefaultDir(PathBuf::from(format!("/tmp/warren-{spare}")));
    default.clear();
    let home = env.dir.join("spare");
    plant(&home, spare, 0o700);
    // As the spare uid, with neither WARREN_RUNTIME_DIR nor XDG_RUNTIME_DIR.
    let as_spare = |program: &Path| {
        let mut c = env.env_cmd(program);
        c.env_remove("WARREN_RUNTIME_DIR")
            .env("HOME", &home)
            .env("WARREN_STATE_DIR", home.join("state"))
            .uid(spare)
            .gid(spare);
        c
    };
    let warren = PathBuf::from(tool("warren"));

    // Planted first by the other user, as anyone can.
    plant(&default.0, OTHER, 0o755);
    let imp = Impostor::start(&env, &default.0.join("warren.sock"), Some(OTHER), None);
    let want = format!(
        "refusing the runtime directory /tmp/warren-{spare}: it belongs to uid {OTHER}, not \
         to you (uid {spare})"
    );
    for args in COMMANDS {
        let out = bounded(as_spare(&warren).args(args));
        refused(&format!("warren {args:?}"), &out, &want);
    }
    // A CNI runtime and slirp4netns without the variables land there too.
    let config = serde_json::json!({
        "cniVersion": "1.0.0", "name": "dev", "type": "warren", "warrenPath": tool("warren"),
    });
    assert_cni_refused(&cni_add(&mut as_spare(&env.cni_bin()), &config), &want);
    let target = Target::start(&mut as_spare(Path::new("sleep")));
    let out = bounded(as_spare(&env.slirp_link()).args([&target.pid(), "tap0"]));
    refused("slirp4netns", &out, &want);
    drop(target);
    imp.assert_never_connected();
    drop(imp);

    // The positive control: gone, the directory is made afresh, private,
    // and used (twice: the second command finds the daemon and trusts it).
    default.clear();
    for _ in 0..2 {
        let out = bounded(as_spare(&warren).args(["network", "ls"]));
        assert!(
            out.status.success(),
            "warren network ls failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("bridge"));
    }
    let dir = std::fs::symlink_metadata(&default.0).unwrap();
    assert!(dir.is_dir());
    assert_eq!((dir.uid(), dir.mode() & 0o7777), (spare, 0o700));
    let sock = std::fs::symlink_metadata(default.0.join("warren.sock")).unwrap();
    assert!(sock.file_type().is_socket());
    assert_eq!((sock.uid(), sock.mode() & 0o777), (spare, 0o600));
}
