//! `warren network …`: create, ls, inspect, rm, prune, stats.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use clap::Subcommand;

use super::client::Client;
use super::{print_table, Format};
use crate::api::types::{
    ConnectRequest, DisconnectRequest, NetworkCreate, NetworkInspect, NetworkSummary, Pruned,
};
use crate::daemon::paths::Paths;

#[derive(Subcommand, Debug)]
pub enum NetworkCmd {
    /// Create a network
    Create(CreateArgs),
    /// List networks
    #[command(alias = "list")]
    Ls {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Show networks as JSON (Docker's shape)
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove networks
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove every network without endpoints (except the default)
    Prune {
        /// Accepted for Docker compatibility; prune never asks
        #[arg(short, long)]
        force: bool,
    },
    /// Connect a running sandbox to a network (a new interface inside)
    Connect {
        /// Static IPv4 address on the network
        #[arg(long)]
        ip: Option<String>,
        /// Extra DNS name on the network (repeatable)
        #[arg(long = "alias")]
        alias: Vec<String>,
        network: String,
        sandbox: String,
    },
    /// Disconnect a sandbox from a network (its interface there disappears)
    Disconnect {
        /// Accepted for Docker compatibility
        #[arg(short, long)]
        force: bool,
        network: String,
        sandbox: String,
    },
    /// Show the switch's frame and drop counters of a network
    Stats { name: String },
}

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    pub name: String,
    /// Subnet in CIDR form, e.g. 10.66.0.0/16 [default: next free pool]
    #[arg(long)]
    pub subnet: Option<String>,
    /// Gateway address [default: first address of the subnet]
    #[arg(long)]
    pub gateway: Option<String>,
    /// Allocate addresses automatically from this sub-range only
    #[arg(long)]
    pub ip_range: Option<String>,
    /// Reserve an address: NAME=IP
    #[arg(long = "aux-address", value_name = "NAME=IP")]
    pub aux_address: Vec<String>,
    /// No egress to the outside world
    #[arg(long)]
    pub internal: bool,
    /// MTU of the network's interfaces [default: 65520]
    #[arg(long)]
    pub mtu: Option<u32>,
    /// Metadata: K=V
    #[arg(long = "label", value_name = "K=V")]
    pub label: Vec<String>,
    /// Driver options: K=V
    #[arg(long = "opt", short = 'o', value_name = "K=V")]
    pub opt: Vec<String>,
    /// Only `bridge` is supported; accepted for Docker compatibility
    #[arg(long, short = 'd', default_value = "bridge")]
    pub driver: String,
}

pub fn main(paths: &Paths, cmd: NetworkCmd) -> Result<i32> {
    match cmd {
        NetworkCmd::Create(a) => create(paths, a),
        NetworkCmd::Ls { format } => ls(paths, format),
        NetworkCmd::Inspect { names } => inspect(paths, &names),
        NetworkCmd::Rm { names } => rm(paths, &names),
        NetworkCmd::Prune { .. } => {
            let pruned: Pruned = Client::connect(paths)?.post("/v1/networks/prune", &())?;
            if !pruned.removed.is_empty() {
                println!("Deleted Networks:");
                for n in pruned.removed {
                    println!("{n}");
                }
            }
            Ok(0)
        }
        NetworkCmd::Connect {
            ip,
            alias,
            network,
            sandbox,
        } => {
            let req = ConnectRequest {
                sandbox,
                ifname: None,
                ip,
                aliases: alias,
                mac: None,
            };
            let _: serde_json::Value =
                Client::connect(paths)?.post(&format!("/v1/networks/{network}/connect"), &req)?;
            Ok(0)
        }
        NetworkCmd::Disconnect {
            force,
            network,
            sandbox,
        } => {
            let req = DisconnectRequest { sandbox, force };
            let _: serde_json::Value = Client::connect(paths)?
                .post(&format!("/v1/networks/{network}/disconnect"), &req)?;
            Ok(0)
        }
        NetworkCmd::Stats { name } => {
            let v: serde_json::Value =
                Client::connect(paths)?.get(&format!("/v1/networks/{name}/stats"))?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(0)
        }
    }
}

/// Splits `K=V` pairs; the value may be empty, the key may not.
pub fn key_values(what: &str, items: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for item in items {
        match item.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                out.insert(k.to_string(), v.to_string());
            }
            _ => bail!("invalid {what} {item:?}: expected KEY=VALUE"),
        }
    }
    Ok(out)
}

fn create(paths: &Paths, a: CreateArgs) -> Result<i32> {
    if a.driver != "bridge" {
        bail!("driver {:?} is not supported: warren networks are userspace bridges (use --driver bridge or omit it)", a.driver);
    }
    let req = NetworkCreate {
        name: a.name,
        subnet: a.subnet,
        gateway: a.gateway,
        ip_range: a.ip_range,
        aux_addresses: key_values("--aux-address", &a.aux_address)?,
        internal: a.internal,
        mtu: a.mtu,
        labels: key_values("--label", &a.label)?,
        options: key_values("--opt", &a.opt)?,
    };
    let net: NetworkInspect = Client::connect(paths)?.post("/v1/networks", &req)?;
    println!("{}", net.id);
    Ok(0)
}

fn ls(paths: &Paths, format: Format) -> Result<i32> {
    let nets: Vec<NetworkSummary> = Client::connect(paths)?.get("/v1/networks")?;
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&nets)?);
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = nets
        .iter()
        .map(|n| {
            vec![
                n.id[..12].to_string(),
                n.name.clone(),
                n.driver.clone(),
                n.scope.clone(),
            ]
        })
        .collect();
    print_table(&["NETWORK ID", "NAME", "DRIVER", "SCOPE"], &rows);
    Ok(0)
}

fn inspect(paths: &Paths, names: &[String]) -> Result<i32> {
    let client = Client::connect(paths)?;
    let mut out = Vec::new();
    let mut status = 0;
    for n in names {
        match client.get::<NetworkInspect>(&format!("/v1/networks/{n}")) {
            Ok(net) => out.push(net),
            Err(e) => status = super::report(&e),
        }
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(status)
}

fn rm(paths: &Paths, names: &[String]) -> Result<i32> {
    let client = Client::connect(paths)?;
    let mut status = 0;
    for n in names {
        match client.delete::<serde_json::Value>(&format!("/v1/networks/{n}")) {
            Ok(_) => println!("{n}"),
            Err(e) => status = super::report(&e),
        }
    }
    Ok(status)
}
