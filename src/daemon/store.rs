//! Durable network definitions: one JSON file per network.
//!
//! Each write goes to a temporary file in the same directory, is fsynced,
//! renamed over the old file, and the directory is fsynced, so a crash at any
//! point leaves either the old or the new definition, never a torn one.
//! Unreadable files are reported and skipped at load time (never deleted:
//! they may be a newer version's format or worth a human's look).

use std::collections::BTreeMap;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// A network as it is stored on disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkDef {
    pub name: String,
    pub id: String,
    pub created: String,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    #[serde(default)]
    pub ip_range: Option<Ipv4Net>,
    #[serde(default)]
    pub aux_addresses: BTreeMap<String, Ipv4Addr>,
    #[serde(default)]
    pub internal: bool,
    pub mtu: u32,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Start time of the `owner-pid` option's process (`/proc/PID/stat`
    /// field 22), so a restarted daemon never mistakes a reused pid for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_start: Option<u64>,
    /// Created with `--attachable` (shown in `network inspect`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub attachable: bool,
    /// An overlay network's VXLAN network identifier: the network is
    /// defined in the cluster store (driver `overlay`, scope `global`),
    /// never in this directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
}

impl NetworkDef {
    /// Defined cluster-wide (`-d overlay`).
    pub fn is_overlay(&self) -> bool {
        self.vni.is_some()
    }

    /// `network ls`'s DRIVER and SCOPE.
    pub fn driver_scope(&self) -> (&'static str, &'static str) {
        if self.is_overlay() {
            ("overlay", "global")
        } else {
            ("bridge", "local")
        }
    }
}

/// The directory of network files.
pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn new(dir: PathBuf) -> Store {
        Store { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    /// Loads every readable definition; the errors of the others are
    /// returned beside them for the caller to log.
    pub fn load(&self) -> Result<(Vec<NetworkDef>, Vec<String>)> {
        let mut defs = Vec::new();
        let mut errors = Vec::new();
        let entries = std::fs::read_dir(&self.dir)
            .with_context(|| format!("reading {}", self.dir.display()))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            match read_def(&path) {
                Ok(def) => defs.push(def),
                Err(e) => errors.push(format!("{}: {e:#}", path.display())),
            }
        }
        defs.sort_by(|a, b| a.created.cmp(&b.created).then(a.name.cmp(&b.name)));
        Ok((defs, errors))
    }

    /// Writes `def` atomically.
    pub fn save(&self, def: &NetworkDef) -> Result<()> {
        let body = serde_json::to_vec_pretty(def)?;
        write_atomic(&self.path(&def.name), &body)
    }

    pub fn remove(&self, name: &str) -> Result<()> {
        let path = self.path(name);
        match std::fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
        }
    }
}

fn read_def(path: &Path) -> Result<NetworkDef> {
    let body = std::fs::read(path)?;
    Ok(serde_json::from_slice(&body)?)
}

/// Writes `body` to `path` through a temporary file, fsync and rename.
pub fn write_atomic(path: &Path, body: &[u8]) -> Result<()> {
    let dir = path.parent().context("path has no parent")?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let result = (|| -> Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(body)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing {}", path.display()))
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(name: &str) -> NetworkDef {
        NetworkDef {
            name: name.into(),
            id: "ab".repeat(32),
            created: "2026-01-01T00:00:00Z".into(),
            subnet: "172.18.0.0/16".parse().unwrap(),
            gateway: "172.18.0.1".parse().unwrap(),
            ip_range: None,
            aux_addresses: BTreeMap::new(),
            internal: false,
            mtu: 65520,
            labels: BTreeMap::new(),
            options: BTreeMap::new(),
            owner_start: None,
            attachable: false,
            vni: None,
        }
    }

    #[test]
    fn save_load_remove_and_skip_garbage() {
        let dir = std::env::temp_dir().join(format!("warren-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::new(dir.clone());
        store.save(&def("dev")).unwrap();
        std::fs::write(dir.join("broken.json"), b"{not json").unwrap();
        let (defs, errors) = store.load().unwrap();
        assert_eq!(defs, vec![def("dev")]);
        assert_eq!(errors.len(), 1);
        store.remove("dev").unwrap();
        store.remove("dev").unwrap();
        assert!(store.load().unwrap().0.is_empty());
        // No temporary file is left behind.
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left.len(), 1, "{left:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
