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

use std::collections::BTreeMap;

use super::client::Client;
use super::stdio::{self, IoArgs};
use crate::api::ports::{PortMapping, Proto};
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
    pub extra: RunExtras,
    #[command(flatten)]
    pub refused: super::refused::Refused,
    /// The command and its arguments: the first word that is not an option
    /// starts it (or everything after `--`)
    #[arg(required = true, trailing_var_arg = true, value_name = "CMD")]
    pub cmd: Vec<String>,
}

/// `run`'s options about names, labels and ports beyond the network's own.
#[derive(clap::Args, Debug, Default)]
pub struct RunExtras {
    /// A line in /etc/hosts: NAME:IP or NAME=IP; IP `host-gateway` is the
    /// address that reaches the host (repeatable)
    #[arg(long = "add-host", value_name = "NAME:IP")]
    pub add_host: Vec<String>,
    /// Set a label KEY=VALUE (repeatable)
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE")]
    pub label: Vec<String>,
    /// Read labels from a file of KEY=VALUE lines (repeatable)
    #[arg(long = "label-file", value_name = "FILE")]
    pub label_file: Vec<std::path::PathBuf>,
    /// Resolver for this sandbox's names outside warren (repeatable)
    #[arg(long, value_name = "IP")]
    pub dns: Vec<String>,
    /// Search domain in the sandbox's resolv.conf (repeatable; `.` for none)
    #[arg(long = "dns-search", value_name = "DOMAIN")]
    pub dns_search: Vec<String>,
    /// Option in the sandbox's resolv.conf, e.g. ndots:2 (repeatable)
    #[arg(long = "dns-option", alias = "dns-opt", value_name = "OPT")]
    pub dns_option: Vec<String>,
    /// Expose a port or range: PORT[/tcp|/udp] (repeatable; see -P)
    #[arg(long, value_name = "PORT[/PROTO]")]
    pub expose: Vec<String>,
    /// Publish every exposed port on a free host port
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Legacy link to a running sandbox: its name and ALIAS in /etc/hosts,
    /// ALIAS_PORT_… variables for its exposed ports (repeatable)
    #[arg(long, value_name = "NAME[:ALIAS]")]
    pub link: Vec<String>,
}

impl RunExtras {
    /// `--label` and `--label-file` as a map (`--label` last, so it wins;
    /// `KEY` alone is an empty value, as Docker's).
    pub fn labels(&self) -> Result<BTreeMap<String, String>> {
        let mut given = Vec::new();
        for file in &self.label_file {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("--label-file {}", file.display()))?;
            given.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(String::from),
            );
        }
        given.extend(self.label.iter().cloned());
        let mut labels = BTreeMap::new();
        for l in given {
            let (k, v) = l.split_once('=').unwrap_or((&l, ""));
            if k.is_empty() {
                bail!("invalid label {l:?}: the key is empty (use KEY=VALUE)");
            }
            labels.insert(k.to_string(), v.to_string());
        }
        Ok(labels)
    }

    /// The exposed ports, `PORT/PROTO` sorted by port (tcp first): the
    /// `--expose` ports and those of `-p`.
    pub fn exposed(&self, published: &[PortMapping]) -> Result<Vec<(u16, Proto)>> {
        let mut out: Vec<(u16, Proto)> = published.iter().map(|m| (m.port, m.proto)).collect();
        for spec in &self.expose {
            out.extend(parse_expose(spec)?);
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

/// One `--expose` value: `PORT` or `START-END`, optionally `/tcp` or `/udp`.
pub fn parse_expose(spec: &str) -> Result<Vec<(u16, Proto)>> {
    if spec.contains(':') {
        bail!("invalid --expose {spec:?}: a host port is -p's (expected PORT[-END][/tcp|/udp])");
    }
    Ok(crate::api::ports::parse(spec)
        .map_err(|e| anyhow::anyhow!("--expose: {e}"))?
        .into_iter()
        .map(|m| (m.port, m.proto))
        .collect())
}

/// Docker's link variables for target `t` under `alias`, in sandbox
/// `linker`: `ALIAS_NAME=/linker/alias`, and for each exposed port
/// `ALIAS_PORT_80_TCP=tcp://IP:80` with its `_ADDR`, `_PORT` and `_PROTO`,
/// and `ALIAS_PORT` for the lowest.
pub fn link_env(linker: &str, alias: &str, ip: &str, exposed: &[String]) -> Vec<(String, String)> {
    let prefix: String = alias
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    let mut ports: Vec<(u16, &str)> = exposed
        .iter()
        .filter_map(|p| {
            let (n, proto) = p.split_once('/').unwrap_or((p, "tcp"));
            Some((n.parse().ok()?, proto))
        })
        .collect();
    ports.sort();
    let mut env = vec![(format!("{prefix}_NAME"), format!("/{linker}/{alias}"))];
    if let Some((n, proto)) = ports.first() {
        env.push((format!("{prefix}_PORT"), format!("{proto}://{ip}:{n}")));
    }
    for (n, proto) in ports {
        let key = format!("{prefix}_PORT_{n}_{}", proto.to_ascii_uppercase());
        env.push((key.clone(), format!("{proto}://{ip}:{n}")));
        env.push((format!("{key}_ADDR"), ip.to_string()));
        env.push((format!("{key}_PORT"), n.to_string()));
        env.push((format!("{key}_PROTO"), proto.to_string()));
    }
    env
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
    let is_default = |e: &EndpointRequest| e.network == crate::daemon::state::DEFAULT_NETWORK;
    let refused = if a.net.ip.is_some() && networks.first().is_some_and(is_default) {
        Some("user specified IP address is supported on user defined networks only")
    } else if !a.net.network_alias.is_empty() && networks.iter().any(is_default) {
        Some("network-scoped aliases are only supported for user-defined networks")
    } else {
        None
    };
    if let Some(why) = refused {
        // Docker's own words and status.
        eprintln!(
            "warren: {why} (the default bridge has no names of its own); \
             create one with `warren network create NAME` and use --network NAME"
        );
        return Ok(EXIT_ABORTED);
    }
    let (mut ports, labels, exposed) = match a
        .net
        .ports()
        .and_then(|p| Ok((a.extra.labels()?, a.extra.exposed(&p)?, p)))
    {
        Ok((labels, exposed, p)) => (p, labels, exposed),
        Err(e) => {
            eprintln!("warren: {e}");
            return Ok(EXIT_ABORTED);
        }
    };
    if mode == "host" && (!ports.is_empty() || a.extra.publish_all) {
        // Docker: the ports are the host's own already.
        eprintln!("WARNING: Published ports are discarded when using host network mode");
        ports.clear();
    }
    let mut env = stdio::sandbox_env(&a.io)?;
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
    // A link's variables name this sandbox: give it its name now.
    let name = match (&a.name, a.extra.link.is_empty()) {
        (None, false) => Some(crate::daemon::util::random_name()),
        (n, _) => n.clone(),
    };
    for spec in &a.extra.link {
        let (target, alias) = spec.split_once(':').unwrap_or((spec, spec));
        let t: crate::api::types::SandboxInspect =
            match client.get(&format!("/v1/sandboxes/{target}")) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("warren: --link {spec}: {e:#}");
                    return Ok(EXIT_ABORTED);
                }
            };
        let ip = networks
            .iter()
            .find_map(|n| t.network_settings.networks.get(&n.network))
            .map(|e| e.ip_address.clone())
            .unwrap_or_default();
        let exposed: Vec<String> = t.config.exposed_ports.keys().cloned().collect();
        // Variables given with -e win, as Docker's.
        for (k, v) in link_env(name.as_deref().unwrap_or_default(), alias, &ip, &exposed) {
            if !env.iter().any(|(have, _)| *have == k) {
                env.push((k, v));
            }
        }
    }
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
        name,
        pid: handle.pid(),
        hostname: a.hostname.clone(),
        network_mode: Some(mode.to_string()),
        networks,
        command: a.cmd.clone(),
        ports,
        auto_remove: a.rm,
        extra_hosts: a.extra.add_host.clone(),
        labels,
        dns: a.extra.dns.clone(),
        dns_search: a.extra.dns_search.clone(),
        dns_options: a.extra.dns_option.clone(),
        expose: exposed
            .iter()
            .map(|(p, proto)| format!("{p}/{proto}"))
            .collect(),
        links: a.extra.link.clone(),
        publish_all: a.extra.publish_all,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expose_takes_ports_and_ranges_never_host_ports() {
        assert_eq!(parse_expose("80").unwrap(), [(80, Proto::Tcp)]);
        assert_eq!(
            parse_expose("53-54/udp").unwrap(),
            [(53, Proto::Udp), (54, Proto::Udp)]
        );
        assert!(parse_expose("8080:80").is_err());
        assert!(parse_expose("80/sctp").is_err());
        let extra = RunExtras {
            expose: vec!["90".into(), "80".into()],
            ..Default::default()
        };
        let p = crate::api::ports::parse("8080:80").unwrap();
        assert_eq!(
            extra.exposed(&p).unwrap(),
            [(80, Proto::Tcp), (90, Proto::Tcp)]
        );
    }

    #[test]
    fn labels_as_docker_reads_them() {
        let extra = RunExtras {
            label: vec!["a=1".into(), "flag".into(), "a=2".into(), "u=x=y".into()],
            ..Default::default()
        };
        let l = extra.labels().unwrap();
        assert_eq!(l["a"], "2");
        assert_eq!(l["flag"], "");
        assert_eq!(l["u"], "x=y");
        let bad = RunExtras {
            label: vec!["=v".into()],
            ..Default::default()
        };
        assert!(bad.labels().is_err());
    }

    #[test]
    fn link_variables_are_dockers() {
        let env = link_env(
            "app",
            "web-db",
            "10.0.0.2",
            &["5432/tcp".into(), "53/udp".into()],
        );
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("WEB_DB_NAME"), Some("/app/web-db"));
        assert_eq!(get("WEB_DB_PORT"), Some("udp://10.0.0.2:53"));
        assert_eq!(get("WEB_DB_PORT_5432_TCP"), Some("tcp://10.0.0.2:5432"));
        assert_eq!(get("WEB_DB_PORT_5432_TCP_ADDR"), Some("10.0.0.2"));
        assert_eq!(get("WEB_DB_PORT_5432_TCP_PORT"), Some("5432"));
        assert_eq!(get("WEB_DB_PORT_53_UDP_PROTO"), Some("udp"));
        assert_eq!(link_env("a", "x", "1.2.3.4", &[]).len(), 1);
    }
}
