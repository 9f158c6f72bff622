//! Live sandboxes on disk, so a new daemon can take over.
//!
//! Every change to a sandbox (attach, connect, disconnect, a vanished
//! interface) rewrites `RUNTIME/sandboxes/ID/sandbox.json` atomically; its
//! removal deletes the directory. The TAPs are persistent, so when the daemon
//! dies the sandboxes keep their configured interfaces, only without carrier.
//! The next daemon reads the records ([`load_all`]) and, for each sandbox
//! that is still alive ([`SandboxRecord::alive`]: same process, by pid *and*
//! start time, or the same namespace inode at its path, see
//! [`netns_identity`]), re-opens its TAPs
//! through the setns helper, re-reserves its addresses and re-publishes its
//! names. Traffic resumes where it stopped: a TCP connection between two
//! sandboxes sees a pause and retransmits, nothing more. Records of dead
//! sandboxes are deleted (their namespaces, and the TAPs in them, are gone).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::sandbox::Mac;

/// File name of a record inside the sandbox's runtime directory.
pub const RECORD_FILE: &str = "sandbox.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxRecord {
    pub id: String,
    pub name: String,
    pub hostname: String,
    pub created: String,
    pub command: Vec<String>,
    pub mode: String,
    pub attached: bool,
    pub external_id: Option<String>,
    /// `run --rm` (absent in records of older daemons).
    #[serde(default)]
    pub auto_remove: bool,
    /// `--add-host`, `--label`, `--dns*`, `--expose`, `--link` (absent in
    /// records of older daemons).
    #[serde(default)]
    pub opts: crate::api::types::RunOptions,
    pub pid: i32,
    /// The process's start time (`/proc/PID/stat` field 22), so a reused pid
    /// is never mistaken for the sandbox.
    pub pid_start: Option<u64>,
    pub netns: Option<PathBuf>,
    pub netns_dev: u64,
    pub netns_ino: u64,
    pub userns: Option<PathBuf>,
    pub endpoints: Vec<EndpointRecord>,
    /// Published ports, as bound (absent in records of older daemons).
    #[serde(default)]
    pub ports: Vec<PortRecord>,
}

/// A published port: the network whose switch serves it, and the mapping
/// as bound (host address and port resolved).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PortRecord {
    pub network: String,
    pub mapping: crate::api::ports::PortMapping,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EndpointRecord {
    pub id: String,
    pub network: String,
    pub ifname: String,
    pub mac: Mac,
    pub ip: Ipv4Addr,
    pub aliases: Vec<String>,
    pub default_route: bool,
    /// The address was asked for (`--ip`), shown as `IPAMConfig` (absent
    /// in records of older daemons).
    #[serde(default)]
    pub static_ip: bool,
}

impl SandboxRecord {
    /// Whether the sandbox this record describes still exists.
    pub fn alive(&self) -> bool {
        if self.pid > 0 {
            return self.pid_start.is_some() && start_time(self.pid) == self.pid_start;
        }
        match &self.netns {
            Some(path) => netns_alive(path, self.netns_dev, self.netns_ino),
            None => false,
        }
    }
}

/// The process behind a netns path of the form `/proc/PID/…`
/// (`/proc/PID/ns/net`, `/proc/PID/fd/N`), if it is one.
fn proc_pid(path: &Path) -> Option<i32> {
    let mut parts = path.strip_prefix("/proc").ok()?.components();
    let pid = parts.next()?.as_os_str().to_str()?.parse().ok()?;
    parts.next()?;
    Some(pid)
}

/// What identifies the namespace at `path` for [`netns_alive`]: its device
/// and inode; or, for a path into a process's `/proc` directory, `(0, start
/// time)` of that process. The confined daemon cannot `stat` those magic
/// links (Landlock treats following them as ptrace access to a process
/// outside its domain); the path names that namespace exactly as long as
/// that process lives.
pub fn netns_identity(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    if let Some(pid) = proc_pid(path) {
        return start_time(pid)
            .map(|t| (0, t))
            .ok_or_else(|| std::io::Error::from_raw_os_error(libc::ENOENT));
    }
    let m = std::fs::metadata(path)?;
    Ok((m.dev(), m.ino()))
}

/// Whether `path` still names the namespace whose [`netns_identity`] was
/// `(dev, ino)`.
pub fn netns_alive(path: &Path, dev: u64, ino: u64) -> bool {
    netns_identity(path).is_ok_and(|id| id == (dev, ino))
}

/// The start time of process `pid` in clock ticks since boot, if it exists.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: the
    // fields that follow start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    // rest starts at field 3 (state); starttime is field 22.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Writes `record` into `dir` atomically.
pub fn save(dir: &Path, record: &SandboxRecord) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let body = serde_json::to_vec_pretty(record)?;
    super::store::write_atomic(&dir.join(RECORD_FILE), &body)
}

/// Every record under `sandboxes_dir`, with the directories of unreadable
/// ones (to be removed by the caller).
pub fn load_all(sandboxes_dir: &Path) -> (Vec<SandboxRecord>, Vec<PathBuf>) {
    let mut records = Vec::new();
    let mut bad = Vec::new();
    let Ok(entries) = std::fs::read_dir(sandboxes_dir) else {
        return (records, bad);
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let parsed = std::fs::read(dir.join(RECORD_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice::<SandboxRecord>(&b).ok());
        match parsed {
            Some(r) => records.push(r),
            None => bad.push(dir),
        }
    }
    (records, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_of_ourselves_is_stable_and_others_absent() {
        let me = std::process::id() as i32;
        let a = start_time(me).unwrap();
        assert_eq!(start_time(me), Some(a));
        assert_eq!(start_time(i32::MAX), None);
    }

    #[test]
    fn proc_paths_are_identified_by_their_process() {
        assert_eq!(proc_pid(Path::new("/proc/12/ns/net")), Some(12));
        assert_eq!(proc_pid(Path::new("/proc/12/fd/5")), Some(12));
        assert_eq!(proc_pid(Path::new("/proc/self/ns/net")), None);
        assert_eq!(proc_pid(Path::new("/proc/12")), None);
        assert_eq!(proc_pid(Path::new("/run/netns/x")), None);
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let path = PathBuf::from(format!("/proc/{}/ns/net", child.id()));
        let (dev, ino) = netns_identity(&path).unwrap();
        assert_eq!(dev, 0);
        assert!(netns_alive(&path, dev, ino));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!netns_alive(&path, dev, ino));
        // Any other path: its device and inode.
        let (dev, ino) = netns_identity(Path::new("/proc/self/ns/net")).unwrap();
        assert_ne!(dev, 0);
        assert!(netns_alive(Path::new("/proc/self/ns/net"), dev, ino));
    }

    #[test]
    fn a_record_of_a_dead_process_is_not_alive() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        let start = start_time(pid);
        child.wait().unwrap();
        let r = SandboxRecord {
            id: "a".repeat(64),
            name: "x".into(),
            hostname: "x".into(),
            created: "2026-01-01T00:00:00Z".into(),
            command: vec![],
            mode: "bridge".into(),
            attached: false,
            external_id: None,
            auto_remove: false,
            opts: Default::default(),
            pid,
            pid_start: start,
            netns: None,
            netns_dev: 0,
            netns_ino: 0,
            userns: None,
            endpoints: vec![],
            ports: vec![],
        };
        assert!(!r.alive());
        let me = SandboxRecord {
            pid: std::process::id() as i32,
            pid_start: start_time(std::process::id() as i32),
            ..r
        };
        assert!(me.alive());
    }
}
