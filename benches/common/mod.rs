//! Helpers shared by the benchmarks that run warren beside its peers:
//! running programs as the unprivileged user, a warren installation in a
//! temp dir, and iperf3's JSON.
#![allow(dead_code)]

pub mod micro;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The PATH of every contender: system directories only.
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Seconds per measurement: `WARREN_BENCH_SECS`, 5 by default.
pub fn bench_secs() -> u32 {
    std::env::var("WARREN_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
}

/// A fresh temp dir `warren-NAME-bench-PID` every contender may use, with a
/// copy of the warren binary in it (the checkout may be unreadable to the
/// unprivileged user); returns (dir, binary).
pub fn bench_dir(name: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("warren-{name}-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let warren = dir.join("warren");
    std::fs::copy(env!("CARGO_BIN_EXE_warren"), &warren).unwrap();
    std::fs::set_permissions(&warren, std::fs::Permissions::from_mode(0o755)).unwrap();
    (dir, warren)
}

/// Whether `tool` is on the PATH.
pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A command as the unprivileged user (uid 65534 when run as root).
pub fn user(program: impl AsRef<std::ffi::OsStr>, home: &Path) -> Command {
    let mut c = Command::new(program);
    c.env_clear().env("PATH", PATH).env("HOME", home);
    if nix::unistd::geteuid().is_root() {
        c.uid(65534).gid(65534);
    }
    c
}

/// Bits per second received, from iperf3's JSON.
pub fn parse_iperf(out: &[u8]) -> Option<f64> {
    let v: serde_json::Value = serde_json::from_slice(out).ok()?;
    v["end"]["sum_received"]["bits_per_second"].as_f64()
}

/// A warren installation of its own under `dir` (state, runtime, daemon);
/// its sandboxes and daemon are killed on drop.
pub struct Warren {
    pub bin: PathBuf,
    pub dir: PathBuf,
}

impl Warren {
    pub fn new(dir: &Path, bin: &Path) -> Warren {
        let w = Warren {
            bin: bin.to_path_buf(),
            dir: dir.join("warren-home"),
        };
        std::fs::create_dir_all(&w.dir).unwrap();
        std::fs::set_permissions(&w.dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        w
    }

    /// A `warren` command as the unprivileged user, in this installation;
    /// DNS forwarding goes to a refusing loopback port (traffic stays home).
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = user(&self.bin, &self.dir);
        c.args(args)
            .env("WARREN_STATE_DIR", self.dir.join("state"))
            .env("WARREN_RUNTIME_DIR", self.dir.join("run"))
            .env("WARREN_DNS_UPSTREAM", "127.0.0.1:9")
            .stdin(Stdio::null());
        c
    }
}

impl Drop for Warren {
    fn drop(&mut self) {
        // Sandboxes first (by pid, from `ps`), then the daemon.
        if let Ok(out) = self.cmd(&["ps", "--format", "json"]).output() {
            if let Ok(rows) = serde_json::from_slice::<serde_json::Value>(&out.stdout) {
                for r in rows.as_array().into_iter().flatten() {
                    if let Some(pid) = r["Pid"].as_i64() {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid as i32),
                            nix::sys::signal::SIGKILL,
                        );
                    }
                }
            }
        }
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("run/warren.pid")) {
            if let Ok(pid) = pid.trim().parse() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::SIGTERM,
                );
            }
        }
    }
}
