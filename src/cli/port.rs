//! `warren port`: a sandbox's published ports, as `docker port` shows
//! them, and `port add` / `port rm` to change them while it runs.
//!
//! `warren port SANDBOX [PORT[/PROTO]]` lists (`80/tcp -> 0.0.0.0:8080`,
//! or only the host addresses when a port is given, as Docker does), in
//! natural order as Docker's (numbers compared as numbers);
//! `warren port add SANDBOX SPEC...` and `warren port rm SANDBOX SPEC...`
//! take `-p` specs. A sandbox literally named `add` or `rm` is still
//! listed by `warren port add`.

use anyhow::{bail, Result};

use super::client::Client;
use super::format::natural_cmp;
use crate::api::ports::{self, PortMapping};
use crate::api::types::PortsRequest;
use crate::daemon::paths::Paths;

#[derive(clap::Args, Debug)]
pub struct PortArgs {
    /// SANDBOX [PORT[/PROTO]], or add|rm SANDBOX SPEC...
    #[arg(required = true, num_args = 1.., value_name = "ARGS")]
    pub args: Vec<String>,
}

/// Prints `lines` in natural order, as `docker port` does (`90/tcp`
/// before `8000/tcp`).
fn print_sorted(mut lines: Vec<String>) {
    lines.sort_by(|a, b| natural_cmp(a, b));
    for l in lines {
        println!("{l}");
    }
}

pub fn main(paths: &Paths, a: PortArgs) -> Result<i32> {
    let args = a.args;
    match (args[0].as_str(), args.len()) {
        ("add" | "rm", n) if n >= 3 => {
            let req = PortsRequest {
                specs: args[2..].to_vec(),
                ports: Vec::new(),
            };
            for spec in &req.specs {
                ports::parse(spec).map_err(anyhow::Error::msg)?;
            }
            let path = if args[0] == "add" {
                format!("/v1/sandboxes/{}/ports", args[1])
            } else {
                format!("/v1/sandboxes/{}/ports/remove", args[1])
            };
            let done: Vec<PortMapping> = Client::connect(paths)?.post(&path, &req)?;
            for m in done {
                println!("{m}");
            }
            Ok(0)
        }
        ("add" | "rm", 2) => bail!("usage: warren port {} SANDBOX SPEC...", args[0]),
        (_, 1 | 2) => {
            let all: Vec<PortMapping> =
                Client::connect(paths)?.get(&format!("/v1/sandboxes/{}/ports", args[0]))?;
            let Some(filter) = args.get(1) else {
                print_sorted(all.iter().map(|m| m.to_string()).collect());
                return Ok(0);
            };
            let (port, proto) = match filter.split_once('/') {
                Some((p, proto)) => (p, proto),
                None => (filter.as_str(), "tcp"),
            };
            let wanted: Vec<&PortMapping> = all
                .iter()
                .filter(|m| m.port.to_string() == port && m.proto.to_string() == proto)
                .collect();
            if wanted.is_empty() {
                bail!("no public port '{port}/{proto}' published for {}", args[0]);
            }
            print_sorted(
                wanted
                    .iter()
                    .map(|m| {
                        let shown = m.to_string();
                        shown
                            .split_once(" -> ")
                            .map_or(shown.clone(), |x| x.1.to_string())
                    })
                    .collect(),
            );
            Ok(0)
        }
        _ => {
            bail!("usage: warren port SANDBOX [PORT[/PROTO]] | warren port add|rm SANDBOX SPEC...")
        }
    }
}
