//! `warren run`: a command in a new sandbox.
//!
//! The order matters: the init ([`crate::sandbox::init`]) makes the
//! namespaces and waits; the CLI asks the daemon to attach that pid (the
//! daemon's helper creates `eth0`… inside); the init then bind-mounts the
//! generated files and execs the command. If the attach fails, the init is
//! killed before the command ever ran, and `run` exits 125 with the daemon's
//! reason. The exit status is otherwise the command's (128+N for a signal).

use std::process::Stdio;

use anyhow::{bail, Context, Result};

use super::client::Client;
use super::stdio::{self, IoArgs};
use crate::api::types::{EndpointRequest, SandboxCreate, SandboxCreated};
use crate::daemon::paths::Paths;
use crate::daemon::util::random_id;
use crate::sandbox::init::{self, Go, NetMode, EXIT_ABORTED};

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Name of the sandbox [default: a generated adjective_noun]
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub net: NetArgs,
    /// Hostname inside the sandbox [default: the short id]
    #[arg(long)]
    pub hostname: Option<String>,
    /// Run in the background and print the sandbox id
    #[arg(long, short = 'd')]
    pub detach: bool,
    /// Remove the sandbox when it exits (else `ps -a` keeps it until `rm`)
    #[arg(long)]
    pub rm: bool,
    #[command(flatten)]
    pub io: IoArgs,
    /// Show the host's files read-only (a private writable /tmp), for commands not trusted
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// With --read-only: a path that stays writable (repeatable)
    #[arg(long, value_name = "PATH", requires = "read_only")]
    pub writable: Vec<std::path::PathBuf>,
    /// Accepted for Docker's sake: every sandbox has a small init as PID 1
    #[arg(long)]
    pub init: bool,
    #[command(flatten)]
    pub refused: super::refused::Refused,
    /// The command and its arguments: the first word that is not an option
    /// starts it (or everything after `--`)
    #[arg(required = true, trailing_var_arg = true, value_name = "CMD")]
    pub cmd: Vec<String>,
}

/// The network options shared by `run` and `attach`.
#[derive(clap::Args, Debug, Default)]
pub struct NetArgs {
    /// Network to attach (repeatable); `none` for loopback only, `host` for the caller's network
    #[arg(long = "network", alias = "net", value_name = "NET")]
    pub network: Vec<String>,
    /// Extra DNS name on every network given (repeatable)
    #[arg(long = "network-alias", alias = "net-alias", value_name = "ALIAS")]
    pub network_alias: Vec<String>,
    /// Static IPv4 address on the first network
    #[arg(long)]
    pub ip: Option<String>,
    /// MAC address on the first network [default: 02:42 + the IPv4 address]
    #[arg(long = "mac-address")]
    pub mac_address: Option<String>,
    /// Publish a port: [HOSTIP:][HOSTPORT:]PORT[/tcp|/udp], ranges as 8000-8009:80-89 (repeatable)
    #[arg(long = "publish", short = 'p', value_name = "SPEC")]
    pub publish: Vec<String>,
}

pub fn main(paths: &Paths, a: RunArgs) -> Result<i32> {
    if let Err(e) = a.refused.check() {
        super::report(&e);
        return Ok(EXIT_ABORTED);
    }
    let (mode, net_mode, networks) = a.net.plan()?;
    let ports = match a.net.ports() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("warren: {e}");
            return Ok(EXIT_ABORTED);
        }
    };
    let env = stdio::sandbox_env(&a.io)?;
    let writable = a
        .writable
        .iter()
        .map(|w| {
            let path = std::fs::canonicalize(w)
                .with_context(|| format!("--writable {}: no such path", w.display()))?;
            if path.starts_with("/tmp") || path.starts_with("/dev/shm") {
                bail!(
                    "--writable {}: --read-only gives the sandbox a private /tmp and /dev/shm, \
                     so a path there cannot be shared; choose one outside them",
                    path.display()
                );
            }
            Ok(path)
        })
        .collect::<Result<Vec<_>>>()?;
    let client = Client::connect(paths)?;
    let id = random_id();
    let (stdio, relay, tty) = if a.detach {
        let log_path = crate::daemon::exited::log_file(&paths.logs_dir(), &id);
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let stdio = [
            Stdio::null(),
            Stdio::from(log.try_clone()?),
            Stdio::from(log),
        ];
        (stdio, None, false)
    } else {
        let (stdio, relay, tty) = stdio::plan(&a.io)?;
        (stdio, Some(relay), tty)
    };
    let exe = std::env::current_exe().context("locating the warren binary")?;
    let status_file = crate::daemon::exited::status_file(&paths.logs_dir(), &id);
    let handle = match init::spawn(&exe, &a.cmd, net_mode, &env, &status_file, stdio) {
        Ok(h) => h,
        Err(e) => {
            super::report(&e);
            return Ok(EXIT_ABORTED);
        }
    };
    // The sandbox's process, for forwarded signals: a pidfd, so a reused
    // pid is never signalled.
    let target = crate::sys::pidfd::open(handle.pid()).context("pidfd of the sandbox")?;
    let req = SandboxCreate {
        id: Some(id.clone()),
        name: a.name.clone(),
        pid: handle.pid(),
        hostname: a.hostname.clone(),
        network_mode: Some(mode.to_string()),
        networks,
        command: a.cmd.clone(),
        ports,
        auto_remove: a.rm,
        ..Default::default()
    };
    let created: SandboxCreated = match client.post("/v1/sandboxes", &req) {
        Ok(c) => c,
        Err(e) => {
            handle.abort();
            let _ = std::fs::remove_file(&status_file);
            let _ = std::fs::remove_file(crate::daemon::exited::log_file(&paths.logs_dir(), &id));
            super::report(&e);
            return Ok(EXIT_ABORTED);
        }
    };
    let go = Go {
        hostname: Some(created.hostname.clone()),
        binds: created
            .binds
            .iter()
            .map(|(s, d)| (s.into(), d.into()))
            .collect(),
        hide: vec![paths.runtime.clone(), paths.state.clone()],
        tty,
        tty_stdin: tty && a.io.interactive,
        workdir: a.io.workdir.clone(),
        read_only: a.read_only.then_some(writable),
    };
    drop(client);
    let (mut child, master) = handle.go(&go)?;
    let Some(mut relay) = relay else {
        println!("{}", created.id);
        return Ok(0);
    };
    if let Some(master) = master {
        relay.attach_pty(master)?;
    }
    let status = relay.run(&mut child, &target)?;
    settled(paths, &created.id);
    Ok(stdio::exit_code(status))
}

/// Waits (a moment at most) until the daemon has seen the sandbox end, so
/// `ps -a` right after `run` shows it exited, as Docker's does.
fn settled(paths: &Paths, id: &str) {
    let Ok(client) = Client::connect(paths) else {
        return;
    };
    let path = format!("/v1/sandboxes/{id}");
    let until = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while std::time::Instant::now() < until {
        match client.get::<crate::api::types::SandboxInspect>(&path) {
            Ok(i) if i.state.running => std::thread::sleep(std::time::Duration::from_millis(10)),
            _ => return,
        }
    }
}

impl NetArgs {
    /// The `-p` specs, parsed into one mapping per port.
    pub fn ports(&self) -> Result<Vec<crate::api::ports::PortMapping>> {
        let mut ports = Vec::new();
        for spec in &self.publish {
            ports.extend(crate::api::ports::parse(spec).map_err(anyhow::Error::msg)?);
        }
        Ok(ports)
    }

    /// Splits `--network` values into a mode and endpoint requests.
    pub fn plan(&self) -> Result<(&'static str, NetMode, Vec<EndpointRequest>)> {
        let a = self;
        let special: Vec<&String> = a
            .network
            .iter()
            .filter(|n| *n == "host" || *n == "none")
            .collect();
        if let Some(s) = special.first() {
            if a.network.len() > 1 {
                bail!("--network {s} cannot be combined with other networks");
            }
            if a.ip.is_some() || a.mac_address.is_some() || !a.network_alias.is_empty() {
                bail!("--ip, --mac-address and --network-alias need a network; --network {s} has none");
            }
            return Ok(if s.as_str() == "host" {
                ("host", NetMode::Host, vec![])
            } else {
                ("none", NetMode::Private, vec![])
            });
        }
        let names = if a.network.is_empty() {
            vec![crate::daemon::state::DEFAULT_NETWORK.to_string()]
        } else {
            a.network.clone()
        };
        let eps = names
            .into_iter()
            .enumerate()
            .map(|(i, network)| EndpointRequest {
                network,
                ifname: None,
                aliases: a.network_alias.clone(),
                ip: if i == 0 { a.ip.clone() } else { None },
                mac: if i == 0 { a.mac_address.clone() } else { None },
            })
            .collect();
        Ok(("bridge", NetMode::Private, eps))
    }
}
