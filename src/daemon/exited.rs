//! Exited sandboxes, kept until `rm`, as Docker keeps exited containers.
//!
//! When a `warren run` sandbox's command ends, its endpoints (addresses,
//! names, published ports) are freed at once, as before; what remains is a
//! small [`Exited`] record: name, command, networks, times and exit code,
//! which `ps -a`, `inspect`, `logs` and `wait` read and `rm` removes. The
//! name stays taken until then. A sandbox run with `--rm` leaves nothing.
//! Attached sandboxes (runners' namespaces) are not kept: their lifecycle
//! is the runner's.
//!
//! The exit code comes from the sandbox's supervisor (`sandbox::init`),
//! which writes it to `RUNTIME/logs/ID.status` when the command's init
//! has exited: the daemon is not the sandbox's parent and cannot `wait`
//! for it. The file may appear a moment after the daemon saw the exit, so
//! the code is read when it is asked for ([`Exited::exit_code`]).
//!
//! Records are files (`RUNTIME/exited/ID.json`, written atomically), so a
//! daemon that restarts lists the same exited sandboxes, and a sandbox that
//! ended while no daemon ran becomes one too.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// Most exited sandboxes kept; beyond, the oldest are forgotten (`rm`'d).
pub const MAX_EXITED: usize = 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Exited {
    pub id: String,
    pub name: String,
    pub hostname: String,
    pub command: Vec<String>,
    pub mode: String,
    pub networks: Vec<String>,
    pub created: SystemTime,
    pub finished: SystemTime,
    /// Known once the supervisor wrote it.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// What `run` asked beyond networks (absent in older records).
    #[serde(default)]
    pub opts: crate::api::types::RunOptions,
    /// The aliases it had, by network (absent in older records): `inspect`
    /// keeps showing them, as Docker's does for a stopped container.
    #[serde(default)]
    pub aliases: std::collections::BTreeMap<String, Vec<String>>,
    /// The addresses asked for with `--ip`, by network (absent in older
    /// records): `IPAMConfig` in `inspect`.
    #[serde(default)]
    pub static_ips: std::collections::BTreeMap<String, String>,
}

impl Exited {
    /// The record of a sandbox that ended just now.
    pub fn now(
        id: &str,
        name: &str,
        hostname: &str,
        command: &[String],
        mode: &str,
        networks: Vec<String>,
        created: SystemTime,
    ) -> Exited {
        Exited {
            id: id.into(),
            name: name.into(),
            hostname: hostname.into(),
            command: command.to_vec(),
            mode: mode.into(),
            networks,
            created,
            finished: SystemTime::now(),
            exit_code: None,
            opts: Default::default(),
            aliases: Default::default(),
            static_ips: Default::default(),
        }
    }

    /// The exit code: as recorded, or from the supervisor's status file.
    pub fn exit_code(&mut self, logs: &Path) -> Option<i32> {
        if self.exit_code.is_none() {
            self.exit_code = read_status(&status_file(logs, &self.id));
        }
        self.exit_code
    }
}

/// Where the supervisor of sandbox `id` writes its exit code.
pub fn status_file(logs: &Path, id: &str) -> PathBuf {
    logs.join(format!("{id}.status"))
}

/// Where `run -d` keeps the output of sandbox `id`.
pub fn log_file(logs: &Path, id: &str) -> PathBuf {
    logs.join(format!("{id}.log"))
}

/// The exit code in sandbox `id`'s status file, waiting up to `max` for
/// its supervisor to write it (it does just after the process the daemon
/// watches has ended); `None` at once without a status file (a sandbox
/// not made by `run`).
pub fn wait_status(logs: &Path, id: &str, max: std::time::Duration) -> Option<i32> {
    let path = status_file(logs, id);
    let deadline = std::time::Instant::now() + max;
    loop {
        if !path.exists() {
            return None;
        }
        if let Some(code) = read_status(&path) {
            return Some(code);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

fn read_status(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Saves `e` in `dir` (temp file and rename).
pub fn save(dir: &Path, e: &Exited) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{}.tmp", e.id));
    std::fs::write(&tmp, serde_json::to_vec(e)?)?;
    std::fs::rename(&tmp, dir.join(format!("{}.json", e.id)))
}

/// Every record in `dir`; unreadable ones are removed.
pub fn load_all(dir: &Path) -> Vec<Exited> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let path = e.path();
        if path.extension().and_then(|x| x.to_str()) != Some("json") {
            continue;
        }
        match std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Exited>(&b).ok())
        {
            Some(rec) => out.push(rec),
            None => {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    out
}

/// Removes what is kept of sandbox `id`: its record, log and status.
pub fn remove_files(exited_dir: &Path, logs: &Path, id: &str) {
    let _ = std::fs::remove_file(exited_dir.join(format!("{id}.json")));
    let _ = std::fs::remove_file(log_file(logs, id));
    let _ = std::fs::remove_file(status_file(logs, id));
}

/// Docker's `ps` status of an exited sandbox: `Exited (3) 5 seconds ago`.
pub fn status_line(code: Option<i32>, since: std::time::Duration) -> String {
    let age = super::util::human_age(since);
    match code {
        Some(c) => format!("Exited ({c}) {age} ago"),
        None => format!("Exited {age} ago"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str) -> Exited {
        Exited {
            id: id.into(),
            name: "web".into(),
            hostname: "h".into(),
            command: vec!["true".into()],
            mode: "bridge".into(),
            networks: vec!["bridge".into()],
            created: SystemTime::UNIX_EPOCH,
            finished: SystemTime::now(),
            exit_code: None,
            opts: Default::default(),
            aliases: Default::default(),
            static_ips: Default::default(),
        }
    }

    #[test]
    fn records_round_trip_and_the_code_comes_from_the_status_file() {
        let dir = std::env::temp_dir().join(format!("warren-exited-{}", std::process::id()));
        let (ex, logs) = (dir.join("exited"), dir.join("logs"));
        std::fs::create_dir_all(&logs).unwrap();
        let mut r = rec("abc");
        save(&ex, &r).unwrap();
        std::fs::write(ex.join("junk.json"), b"{").unwrap();
        let loaded = load_all(&ex);
        assert_eq!(loaded.len(), 1);
        assert!(!ex.join("junk.json").exists());
        assert_eq!(r.exit_code(&logs), None);
        std::fs::write(status_file(&logs, "abc"), "3\n").unwrap();
        assert_eq!(r.exit_code(&logs), Some(3));
        remove_files(&ex, &logs, "abc");
        assert!(load_all(&ex).is_empty());
        assert!(!status_file(&logs, "abc").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn status_lines_are_dockers() {
        let s = status_line(Some(3), std::time::Duration::from_secs(5));
        assert!(s.starts_with("Exited (3) ") && s.ends_with(" ago"), "{s}");
        assert!(status_line(None, std::time::Duration::ZERO).starts_with("Exited "));
    }
}
