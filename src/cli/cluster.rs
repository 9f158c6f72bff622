//! `warren cluster ls` and `warren info`: what the daemon knows of its
//! cluster (`GET /v1/cluster`, answered from the membership's last
//! status, so these never wait for etcd) and of itself.

use anyhow::{bail, Result};
use clap::Subcommand;

use super::client::Client;
use crate::api::types::{NetworkSummary, SandboxSummary};
use crate::cluster::ClusterStatus;
use crate::daemon::paths::Paths;

#[derive(Subcommand, Debug)]
pub enum ClusterCmd {
    /// List the cluster's members (from etcd, as last read)
    #[command(alias = "list")]
    Ls {
        /// table (default) or json
        #[arg(long, value_name = "FORMAT")]
        format: Option<String>,
        /// Only the members' advertise addresses
        #[arg(short, long)]
        quiet: bool,
    },
}

/// The hint of every "not in a cluster" answer.
const JOIN_HINT: &str = "start the daemon with --cluster-store etcd://IP:2379 --cluster-advertise IP (or put cluster-store and cluster-advertise in STATE/daemon.json)";

pub fn main(paths: &Paths, cmd: ClusterCmd) -> Result<i32> {
    match cmd {
        ClusterCmd::Ls { format, quiet } => {
            let st: ClusterStatus = Client::connect(paths)?.get("/v1/cluster")?;
            if st.store.is_none() {
                bail!("this daemon is not in a cluster; {JOIN_HINT}");
            }
            match format.as_deref() {
                Some("json") => {
                    println!("{}", serde_json::to_string(&st)?);
                    return Ok(0);
                }
                None | Some("table") => {}
                Some(other) => bail!("--format {other:?}: use table or json"),
            }
            if quiet {
                for m in &st.members {
                    println!("{}", m.advertise);
                }
            } else {
                println!(
                    "{:<24} {:<20} {:<10} {:<22} SELF",
                    "ADVERTISE", "HOSTNAME", "VERSION", "JOINED"
                );
                for m in &st.members {
                    println!(
                        "{:<24} {:<20} {:<10} {:<22} {}",
                        m.advertise,
                        m.hostname,
                        m.version,
                        m.joined,
                        if m.is_self { "*" } else { "" }
                    );
                }
            }
            if st.etcd != "ok" {
                eprintln!(
                    "warning: etcd is {} ({}); the members are as last read{}",
                    st.etcd,
                    st.error,
                    st.last_contact
                        .map(|s| format!(" {s:.1} s ago"))
                        .unwrap_or_default()
                );
                return Ok(1);
            }
            Ok(0)
        }
    }
}

/// `warren info`: a few lines of Docker's `docker info` that mean
/// something here.
pub fn info(paths: &Paths) -> Result<i32> {
    let client = Client::connect(paths)?;
    let st: ClusterStatus = client.get("/v1/cluster")?;
    let nets: Vec<NetworkSummary> = client.get("/v1/networks")?;
    let boxes: Vec<SandboxSummary> = client.get("/v1/sandboxes?all=true")?;
    let running = boxes.iter().filter(|s| s.state != "exited").count();
    println!("Server Version: {}", env!("CARGO_PKG_VERSION"));
    println!(
        "Sandboxes: {} (running {running}, exited {})",
        boxes.len(),
        boxes.len() - running
    );
    println!("Networks: {}", nets.len());
    println!("State Dir: {}", paths.state.display());
    println!("Runtime Dir: {}", paths.runtime.display());
    match &st.store {
        None => println!("Cluster: none ({JOIN_HINT})"),
        Some(store) => {
            println!("Cluster Store: {store}");
            if let Some(a) = st.advertise {
                println!("Cluster Advertise: {a}");
            }
            println!("Cluster Prefix: {}", st.prefix.as_deref().unwrap_or(""));
            println!("Cluster Members: {}", st.members.len());
            if st.error.is_empty() {
                println!("Etcd: {}", st.etcd);
            } else {
                println!("Etcd: {} ({})", st.etcd, st.error);
            }
        }
    }
    Ok(0)
}
