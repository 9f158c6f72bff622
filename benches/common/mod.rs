//! Helpers shared by the benchmarks: running programs as the unprivileged
//! user, a work directory that user can read, a warren installation of the
//! benchmark's own, iperf3's JSON, and the switch core's micro-benchmark
//! (`micro`).
#![allow(dead_code)]

pub mod micro;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The PATH of every contender: system directories only.
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A number from the environment, or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// A fresh temp dir `warren-NAME-bench-PID` every contender may use, with
/// copies of the warren binary and of the running benchmark (the checkout
/// may be unreadable to the unprivileged user, and the benchmark's own
/// binary serves as a small client and server inside sandboxes).
pub struct BenchDir {
    pub dir: PathBuf,
    pub warren: PathBuf,
    pub helper: PathBuf,
}

impl BenchDir {
    pub fn new(name: &str) -> BenchDir {
        let dir = std::env::temp_dir().join(format!("warren-{name}-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // Sticky, as /tmp: warren refuses a runtime directory beneath a
        // directory others may change unless it is sticky (security.md).
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let copy = |from: &Path, to: &str| {
            let to = dir.join(to);
            std::fs::copy(from, &to).unwrap();
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)).unwrap();
            to
        };
        BenchDir {
            warren: copy(Path::new(env!("CARGO_BIN_EXE_warren")), "warren"),
            helper: copy(&std::env::current_exe().unwrap(), "helper"),
            dir,
        }
    }

    /// A subdirectory every contender may write to (sticky, see [`BenchDir::new`]).
    pub fn sub(&self, name: &str) -> PathBuf {
        let d = self.dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o1777)).unwrap();
        d
    }
}

/// Whether `tool` is on the PATH.
pub fn have(tool: &str) -> bool {
    std::env::split_paths(PATH).any(|d| d.join(tool).is_file())
}

/// Whether this process runs as root (then contenders run as uid 65534).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A command as the unprivileged user (uid 65534 when run as root), with
/// a clean environment whose HOME and XDG_RUNTIME_DIR are `home`.
pub fn user(program: impl AsRef<std::ffi::OsStr>, home: &Path) -> Command {
    let mut c = Command::new(program);
    c.env_clear()
        .env("PATH", PATH)
        .env("HOME", home)
        .env("XDG_RUNTIME_DIR", home)
        .stdin(Stdio::null());
    if is_root() {
        c.uid(65534).gid(65534);
    }
    c
}

/// Bits per second received, from iperf3's JSON.
pub fn parse_iperf(out: &[u8]) -> Option<f64> {
    let v: serde_json::Value = serde_json::from_slice(out).ok()?;
    v["end"]["sum_received"]["bits_per_second"].as_f64()
}

/// Polls `f` every 20 ms until it returns something or `limit` passes.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether process `pid` has exited (a zombie counts; one that is our
/// child is reaped on the way).
pub fn gone(pid: i32) -> bool {
    use nix::sys::wait::{waitpid, WaitPidFlag};
    let _ = waitpid(nix::unistd::Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// A warren installation of its own (state, runtime, daemon) in `home`.
#[derive(Clone)]
pub struct Warren {
    pub bin: PathBuf,
    pub home: PathBuf,
}

impl Warren {
    pub fn new(bench: &BenchDir, name: &str) -> Warren {
        Warren {
            bin: bench.warren.clone(),
            home: bench.sub(name),
        }
    }

    /// The environment of every warren command of this installation; DNS
    /// forwarding goes to a refusing loopback port (traffic stays home).
    pub fn env(&self) -> Vec<(String, String)> {
        let home = self.home.display();
        vec![
            ("WARREN_STATE_DIR".into(), format!("{home}/state")),
            ("WARREN_RUNTIME_DIR".into(), format!("{home}/run")),
            ("WARREN_DNS_UPSTREAM".into(), "127.0.0.1:9".into()),
        ]
    }

    /// A `warren` command as the unprivileged user, in this installation.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = user(&self.bin, &self.home);
        c.args(args).envs(self.env());
        c
    }

    /// Runs `warren ARGS`; its stdout, or an error with its stderr.
    pub fn ok(&self, args: &[&str]) -> Result<String, String> {
        let out = self
            .cmd(args)
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("warren {}: {e}", args.join(" ")))?;
        if !out.status.success() {
            return Err(format!(
                "warren {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The daemon's pid, from its pid file.
    pub fn daemon_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.home.join("run/warren.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The daemon's resident memory in KiB (`VmRSS`).
    pub fn daemon_rss_kib(&self) -> Option<u64> {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.daemon_pid()?)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// The record `inspect NAME` shows.
    pub fn inspect(&self, name: &str) -> Option<serde_json::Value> {
        let out = self.ok(&["inspect", name]).ok()?;
        let v: serde_json::Value = serde_json::from_str(&out).ok()?;
        Some(v[0].clone())
    }

    /// Removes every sandbox, then stops the daemon (SIGTERM) and waits up
    /// to 5 s for it to go.
    pub fn teardown(&self) {
        if let Ok(ids) = self.ok(&["ps", "-q"]) {
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f"];
                args.extend(ids);
                let _ = self.ok(&args);
            }
        }
        if let Some(pid) = self.daemon_pid() {
            let pid = nix::unistd::Pid::from_raw(pid);
            if nix::sys::signal::kill(pid, nix::sys::signal::SIGTERM).is_ok() {
                wait_for(Duration::from_secs(5), || gone(pid.as_raw()).then_some(()));
            }
        }
    }
}
