//! `warren attach` and `warren detach`: networking namespaces a runner made.
//!
//! Rootless runners (podman, nerdctl, rootlesskit, CI tools) already create
//! their containers' user and network namespaces. `attach` hands one to the
//! daemon by process (`--pid`) or by path (`--netns`, optionally
//! `--userns`): the daemon's setns helper creates the interfaces inside, and
//! the daemon watches the process or the path and frees everything when the
//! namespace goes away. Unlike `run`, warren writes no files into the
//! sandbox (it does not own its mount namespace) and never kills its
//! processes: `detach` (or `rm`) only takes the network away.

use anyhow::{bail, Result};

use super::client::Client;
use super::run::NetArgs;
use crate::api::types::{SandboxCreate, SandboxCreated};
use crate::daemon::paths::Paths;

#[derive(clap::Args, Debug)]
pub struct AttachArgs {
    /// A process in the namespaces to attach
    #[arg(long, conflicts_with = "netns", required_unless_present = "netns")]
    pub pid: Option<i32>,
    /// The network namespace to attach, by path (e.g. /proc/PID/ns/net)
    #[arg(long)]
    pub netns: Option<String>,
    /// The user namespace owning --netns [default: found from the netns]
    #[arg(long, requires = "netns")]
    pub userns: Option<String>,
    /// Name of the sandbox
    #[arg(long)]
    pub name: String,
    #[command(flatten)]
    pub net: NetArgs,
}

#[derive(clap::Args, Debug)]
pub struct DetachArgs {
    #[arg(required = true)]
    pub sandboxes: Vec<String>,
}

pub fn attach(paths: &Paths, a: AttachArgs) -> Result<i32> {
    let (mode, _, networks) = a.net.plan()?;
    if mode == "host" {
        bail!("--network host makes no sense for attach: the namespace is already there");
    }
    let ports = a.net.ports()?;
    if !ports.is_empty() && mode == "none" {
        bail!("-p needs a network to forward to; --network none has none");
    }
    let req = SandboxCreate {
        name: Some(a.name),
        pid: a.pid.unwrap_or(0),
        netns: a.netns,
        userns: a.userns,
        attached: true,
        network_mode: Some(mode.to_string()),
        networks,
        ports,
        ..Default::default()
    };
    let created: SandboxCreated = Client::connect(paths)?.post("/v1/sandboxes", &req)?;
    println!("{}", created.id);
    Ok(0)
}

pub fn detach(paths: &Paths, a: DetachArgs) -> Result<i32> {
    let client = Client::connect(paths)?;
    let mut status = 0;
    for s in &a.sandboxes {
        match client.delete::<serde_json::Value>(&format!("/v1/sandboxes/{s}?detach=true")) {
            Ok(_) => println!("{s}"),
            Err(e) => status = super::report(&e),
        }
    }
    Ok(status)
}
