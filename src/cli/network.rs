//! `warren network …`: create, ls, inspect, rm, prune, stats.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use clap::Subcommand;

use super::client::Client;
use super::format::{go_time, labels_column, short_id, Filters, Format};
use super::sandbox::Inspected;
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
    Ls(LsArgs),
    /// Show networks as JSON (Docker's shape)
    Inspect {
        /// json, or a Go template such as '{{range .IPAM.Config}}{{.Subnet}}{{end}}'
        #[arg(long, short = 'f', value_name = "FORMAT")]
        format: Option<String>,
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
pub struct LsArgs {
    /// Only print ids
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Do not truncate ids
    #[arg(long)]
    pub no_trunc: bool,
    /// KEY=VALUE: name, id, driver, label, scope, type=custom|builtin, dangling=true|false (repeatable)
    #[arg(long, short = 'f', value_name = "FILTER")]
    pub filter: Vec<String>,
    /// table [TEMPLATE], json, or a Go template such as '{{.ID}}: {{.Driver}}'
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    pub name: String,
    /// Subnet in CIDR form, e.g. 10.66.0.0/16 [default: next free pool]
    #[arg(long)]
    pub subnet: Vec<String>,
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
    /// Network driver: only `bridge` (a userspace switch)
    #[arg(long, short = 'd', default_value = "bridge")]
    pub driver: String,
    /// Accepted as Docker does (any sandbox may join a warren network)
    #[arg(long)]
    pub attachable: bool,
    /// IPAM driver: only `default` (warren's own)
    #[arg(long, default_value = "default")]
    pub ipam_driver: String,
}

pub fn main(paths: &Paths, cmd: NetworkCmd) -> Result<i32> {
    match cmd {
        NetworkCmd::Create(a) => create(paths, a),
        NetworkCmd::Ls(a) => ls(paths, a),
        NetworkCmd::Inspect { format, names } => inspect(paths, format.as_deref(), &names),
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
    check_driver(&a.driver)?;
    if a.ipam_driver != "default" {
        bail!(
            "IPAM driver {:?} is not available: warren allocates addresses itself \
             (use --ipam-driver default or omit it)",
            a.ipam_driver
        );
    }
    if a.subnet.len() > 1 {
        bail!(
            "a warren network has one IPv4 subnet, {} were given: give --subnet once \
             (or create one network per subnet)",
            a.subnet.len()
        );
    }
    let req = NetworkCreate {
        name: a.name,
        subnet: a.subnet.into_iter().next(),
        gateway: a.gateway,
        ip_range: a.ip_range,
        aux_addresses: key_values("--aux-address", &a.aux_address)?,
        internal: a.internal,
        mtu: a.mtu,
        labels: key_values("--label", &a.label)?,
        options: key_values("--opt", &a.opt)?,
        attachable: a.attachable,
        driver: Some(a.driver.clone()),
    };
    let net: NetworkInspect = Client::connect(paths)?.post("/v1/networks", &req)?;
    println!("{}", net.id);
    Ok(0)
}

/// Refuses the drivers warren cannot provide, saying why and what to use.
fn check_driver(driver: &str) -> Result<()> {
    match driver {
        "bridge" => Ok(()),
        "macvlan" | "ipvlan" => bail!(
            "driver {driver:?} needs root: it puts sandboxes on a host interface, which an \
             unprivileged daemon cannot do; use a bridge network (the default) and publish \
             ports with -p to reach sandboxes from outside"
        ),
        // A network of the whole cluster; the daemon says if it is in none.
        "overlay" => Ok(()),
        "host" | "null" => bail!(
            "only one instance of {:?} network is allowed: use --network {} with run",
            driver,
            if driver == "null" { "none" } else { "host" }
        ),
        _ => bail!(
            "driver {driver:?} is not supported: warren networks are userspace bridges \
             (use --driver bridge or omit it)"
        ),
    }
}

/// `network ls`'s default table.
const LS_TABLE: &str = "table {{.ID}}\\t{{.Name}}\\t{{.Driver}}\\t{{.Scope}}";

/// `network ls`'s filters, as Docker's of the same names.
const LS_FILTERS: &[&str] = &["name", "id", "driver", "label", "scope", "type", "dangling"];

/// The networks every daemon has, as Docker's `type=builtin`.
const PREDEFINED: &[&str] = &["bridge", "host", "none"];

fn ls_headers() -> BTreeMap<&'static str, &'static str> {
    BTreeMap::from([
        ("ID", "NETWORK ID"),
        ("Name", "NAME"),
        ("Driver", "DRIVER"),
        ("Scope", "SCOPE"),
        ("IPv4", "IPV4"),
        ("IPv6", "IPV6"),
        ("Internal", "INTERNAL"),
        ("Labels", "LABELS"),
        ("CreatedAt", "CREATED AT"),
    ])
}

fn ls(paths: &Paths, a: LsArgs) -> Result<i32> {
    let filters = Filters::parse(&a.filter, LS_FILTERS)?;
    for v in filters.values("type") {
        if v != "custom" && v != "builtin" {
            bail!("invalid filter 'type={v}' (custom or builtin)");
        }
    }
    for v in filters.values("dangling") {
        if !matches!(v.as_str(), "true" | "false" | "1" | "0") {
            bail!("invalid filter 'dangling={v}' (true or false)");
        }
    }
    let nets: Vec<NetworkSummary> = Client::connect(paths)?.get("/v1/networks")?;
    let rows: Vec<serde_json::Value> = nets
        .iter()
        .filter(|n| ls_selects(&filters, n))
        .map(|n| ls_row(n, !a.no_trunc))
        .collect();
    if a.quiet {
        super::format::print_quiet(&rows, a.format.is_some());
        return Ok(0);
    }
    let format = Format::parse(a.format.as_deref(), LS_TABLE)?;
    print!("{}", format.render(&rows, &ls_headers(), true)?);
    Ok(0)
}

/// One `network ls` row with the fields of Docker's network context, of
/// Docker's types: `ID` (12 characters with `trunc`), `Name`, `Driver`,
/// `Scope`, `IPv4`, `IPv6` and `Internal` (`"true"`/`"false"`; every
/// warren network has IPv4), `Labels` (`k=v,…`), `CreatedAt`.
fn ls_row(n: &NetworkSummary, trunc: bool) -> serde_json::Value {
    serde_json::json!({
        "ID": if trunc { short_id(&n.id) } else { n.id.as_str() },
        "Name": n.name,
        "Driver": n.driver,
        "Scope": n.scope,
        "IPv4": "true",
        "IPv6": n.ipv6.to_string(),
        "Internal": n.internal.to_string(),
        "Labels": labels_column(&n.labels),
        "CreatedAt": go_time(&n.created_at),
    })
}

/// Whether network `n` passes `filters` (Docker's rules for each key).
fn ls_selects(filters: &Filters, n: &NetworkSummary) -> bool {
    let builtin = PREDEFINED.contains(&n.name.as_str());
    filters.exact("driver", &n.driver)
        && filters.matches("name", &n.name)
        && filters.matches("id", &n.id)
        && filters.labels(&n.labels)
        && filters.exact("scope", &n.scope)
        && any_or_none(filters.values("type"), |t| (t == "builtin") == builtin)
        && any_or_none(filters.values("dangling"), |d| {
            // Docker: networks without containers, the predefined never.
            let dangling = !builtin && n.containers == 0;
            matches!(d, "true" | "1") == dangling
        })
}

/// True without `values`; else whether one passes `f` (a filter's values
/// are alternatives).
fn any_or_none(values: &[String], f: impl Fn(&str) -> bool) -> bool {
    values.is_empty() || values.iter().any(|v| f(v))
}

fn inspect(paths: &Paths, format: Option<&str>, names: &[String]) -> Result<i32> {
    let format = match Inspected::parse(format) {
        Ok(f) => f,
        Err(e) => return Ok(super::sandbox::bad_template(&e)),
    };
    let client = Client::connect(paths)?;
    let mut out = Vec::new();
    let mut status = 0;
    for n in names {
        match client.get::<NetworkInspect>(&format!("/v1/networks/{n}")) {
            Ok(net) => out.push(net),
            Err(e) => status = super::report(&e),
        }
    }
    format.print(&out)?;
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
