//! The command line: clap definitions and dispatch.
//!
//! The CLI is a thin client of the daemon's API ([`client`]); one file per
//! command group mirrors the commands (`network`, `run`, `sandbox` for
//! ps/inspect/rm/exec). Four hidden subcommands are not for users: `__init`
//! (the first process of a sandbox), `__nsenter` (what `exec` runs in the
//! sandbox), `__netns-helper` (the daemon's setns
//! helper) and `__helper-spawner` (which starts helpers for the confined
//! daemon); see [`crate::sandbox`].
//!
//! Errors print as `warren: <what went wrong>` and, where there is one, a
//! `hint:` line saying what to do, with a non-zero exit: 1 for a failed
//! command, 125 when `run` could not start the sandbox (as Docker), and the
//! command's own status otherwise.

pub mod attach;
pub mod client;
pub mod cluster;
pub mod events;
pub mod format;
pub mod lifecycle;
pub mod network;
pub mod port;
pub mod refused;
pub mod run;
pub mod sandbox;
pub mod stdio;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::daemon::paths::Paths;

#[derive(Parser, Debug)]
#[command(
    name = "warren",
    version,
    about = "Docker's container network model, without root"
)]
pub struct Cli {
    /// Where network definitions are kept [default: $XDG_DATA_HOME/warren]
    #[arg(long, global = true, env = "WARREN_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Where the socket, pid file and logs live [default: $XDG_RUNTIME_DIR/warren or /tmp/warren-$UID]
    #[arg(long, global = true, env = "WARREN_RUNTIME_DIR", value_name = "DIR")]
    pub runtime_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon in the foreground (the CLI starts it when needed)
    Daemon(DaemonArgs),
    /// Manage networks
    #[command(subcommand)]
    Network(network::NetworkCmd),
    /// The multi-host cluster this daemon is a member of
    #[command(subcommand)]
    Cluster(cluster::ClusterCmd),
    /// The daemon's version, counts, directories and cluster
    Info,
    /// Run a command in a new sandbox
    Run(Box<run::RunArgs>),
    /// List running sandboxes
    Ps(sandbox::PsArgs),
    /// Show sandboxes as JSON
    Inspect(sandbox::InspectArgs),
    /// Run a command inside a running sandbox
    Exec(sandbox::ExecArgs),
    /// Remove sandboxes
    Rm(sandbox::RmArgs),
    /// Print the output of a sandbox run with -d
    Logs(lifecycle::LogsArgs),
    /// Stop sandboxes: SIGTERM, then SIGKILL after a grace period
    Stop(lifecycle::StopArgs),
    /// Send a signal to sandboxes (default SIGKILL)
    Kill(lifecycle::KillArgs),
    /// Wait for sandboxes to exit and print their exit codes
    Wait(lifecycle::WaitArgs),
    /// List a sandbox's published ports, or add/rm them: port SANDBOX | port add|rm SANDBOX SPEC...
    Port(port::PortArgs),
    /// Stream the daemon's lifecycle events (sandboxes, networks, ports)
    Events(events::EventsArgs),
    /// Attach namespaces a runner made (by process or netns path) to networks
    Attach(attach::AttachArgs),
    /// Take the networks away from attached sandboxes (their processes keep running)
    Detach(attach::DetachArgs),
    /// Be slirp4netns (same command line and API socket) on a warren network; see `warren slirp4netns --help`
    #[command(name = "slirp4netns", disable_help_flag = true)]
    Slirp4netns(Slirp4netnsArgs),
    #[command(name = "__init", hide = true)]
    Init(InitArgs),
    #[command(name = "__nsenter", hide = true)]
    Nsenter(NsenterArgs),
    #[command(name = "__netns-helper", hide = true)]
    NetnsHelper,
    #[command(name = "__helper-spawner", hide = true)]
    HelperSpawner(SpawnerArgs),
}

#[derive(clap::Args, Debug)]
pub struct SpawnerArgs {
    /// The daemon's pid (the spawner stops serving if it is not its parent)
    #[arg(long)]
    pub parent: i32,
    #[arg(long, default_value = "kill")]
    pub seccomp: String,
}

#[derive(clap::Args, Debug)]
pub struct Slirp4netnsArgs {
    /// slirp4netns's options and PID|PATH [TAPNAME], parsed as it does
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    pub args: Vec<std::ffi::OsString>,
}

#[derive(clap::Args, Debug)]
pub struct DaemonArgs {
    /// DNS servers to forward to instead of the host's resolvers
    #[arg(
        long = "dns-upstream",
        value_name = "IP[:PORT]",
        env = "WARREN_DNS_UPSTREAM",
        value_delimiter = ','
    )]
    pub dns_upstream: Vec<String>,
    /// Host address of published ports that name none, e.g. 127.0.0.1 on a laptop
    #[arg(
        long = "publish-address",
        value_name = "IP",
        env = "WARREN_PUBLISH_ADDRESS",
        default_value = "0.0.0.0"
    )]
    pub publish_address: std::net::IpAddr,
    /// Start a new session (used when the CLI starts the daemon)
    #[arg(long, hide = true)]
    pub setsid: bool,
    /// seccomp filter: kill on a system call outside the allowlist, or (for
    /// debugging) log it to the audit log, or off
    #[arg(
        long,
        value_name = "kill|log|off",
        env = "WARREN_SECCOMP",
        default_value = "kill"
    )]
    pub seccomp: String,
    /// Landlock filesystem rules (off for debugging only)
    #[arg(
        long,
        value_name = "on|off",
        env = "WARREN_LANDLOCK",
        default_value = "on",
        value_parser = ["on", "off"]
    )]
    pub landlock: String,
    /// Join a cluster: etcd's client addresses (IPs), as seed 004's dockerd
    #[arg(
        long = "cluster-store",
        value_name = "etcd://IP:PORT[,IP:PORT...]",
        env = "WARREN_CLUSTER_STORE"
    )]
    pub cluster_store: Option<String>,
    /// This host's address for the other members (VXLAN, port 4789 unless given)
    #[arg(
        long = "cluster-advertise",
        value_name = "IP[:PORT]",
        env = "WARREN_CLUSTER_ADVERTISE"
    )]
    pub cluster_advertise: Option<String>,
    /// The cluster's key prefix in etcd (several clusters may share one etcd)
    #[arg(
        long = "cluster-prefix",
        value_name = "PREFIX",
        env = "WARREN_CLUSTER_PREFIX"
    )]
    pub cluster_prefix: Option<String>,
    /// How long a dead member's records outlive it (its etcd lease)
    #[arg(
        long = "cluster-ttl",
        value_name = "DURATION",
        env = "WARREN_CLUSTER_TTL",
        value_parser = humantime::parse_duration
    )]
    pub cluster_ttl: Option<std::time::Duration>,
    /// Also serve GET /metrics (Prometheus) on this TCP address, e.g. 127.0.0.1:9323
    #[arg(
        long = "metrics-addr",
        value_name = "IP:PORT",
        env = "WARREN_METRICS_ADDR"
    )]
    pub metrics_addr: Option<std::net::SocketAddr>,
}

#[derive(clap::Args, Debug)]
pub struct NsenterArgs {
    #[arg(long)]
    pub pid: i32,
    #[arg(long)]
    pub workdir: Option<PathBuf>,
    #[arg(long)]
    pub tty: bool,
    #[arg(last = true, required = true)]
    pub cmd: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct InitArgs {
    /// Where the supervisor writes the command's exit status
    #[arg(long)]
    pub status_file: Option<PathBuf>,
    #[arg(long)]
    pub net_host: bool,
    #[arg(last = true, required = true)]
    pub cmd: Vec<String>,
}

/// Entry point; returns the process's exit status.
pub fn main() -> i32 {
    if crate::slirp::invoked_as_slirp4netns() {
        return crate::slirp::main_as_slirp4netns();
    }
    // Usage errors exit 125, as Docker's do; help and version exit 0.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                crate::sandbox::init::EXIT_ABORTED
            } else {
                0
            };
        }
    };
    let paths = Paths::resolve(cli.state_dir.clone(), cli.runtime_dir.clone());
    let result = match cli.command {
        Command::Daemon(args) => {
            init_tracing();
            parse_upstreams(&args.dns_upstream).and_then(|dns_upstreams| {
                let cluster = match &args.cluster_store {
                    Some(store) => Some(
                        crate::cluster::ClusterConfig::parse(
                            store,
                            args.cluster_advertise.as_deref(),
                            args.cluster_prefix.as_deref(),
                            args.cluster_ttl,
                        )
                        .map_err(|e| anyhow::anyhow!(e))?,
                    ),
                    None if args.cluster_advertise.is_some() => {
                        anyhow::bail!("--cluster-advertise needs --cluster-store etcd://IP:PORT")
                    }
                    None => None,
                };
                let opts = crate::daemon::Options {
                    cluster,
                    metrics_addr: args.metrics_addr,
                    setsid: args.setsid,
                    dns_upstreams,
                    publish_address: Some(args.publish_address),
                    confine: crate::daemon::confine::Options {
                        seccomp: crate::sys::seccomp::Mode::parse(&args.seccomp)?,
                        landlock: args.landlock == "on",
                    },
                };
                crate::daemon::run(paths, opts).map(|()| 0)
            })
        }
        Command::Network(cmd) => network::main(&paths, cmd),
        Command::Cluster(cmd) => cluster::main(&paths, cmd),
        Command::Info => cluster::info(&paths),
        Command::Run(args) => run::main(&paths, *args),
        Command::Ps(args) => sandbox::ps(&paths, args),
        Command::Inspect(args) => sandbox::inspect(&paths, args),
        Command::Exec(args) => sandbox::exec(&paths, args),
        Command::Rm(args) => sandbox::rm(&paths, args),
        Command::Logs(args) => lifecycle::logs(&paths, args),
        Command::Stop(args) => lifecycle::stop(&paths, args),
        Command::Kill(args) => lifecycle::kill(&paths, args),
        Command::Wait(args) => lifecycle::wait(&paths, args),
        Command::Port(args) => port::main(&paths, args),
        Command::Events(args) => events::main(&paths, args),
        Command::Attach(args) => attach::attach(&paths, args),
        Command::Detach(args) => attach::detach(&paths, args),
        Command::Slirp4netns(args) => {
            return crate::slirp::main("warren slirp4netns", &args.args, &paths)
        }
        Command::Init(args) => {
            return crate::sandbox::init::main(
                args.net_host,
                args.status_file.as_deref(),
                &args.cmd,
            )
        }
        Command::Nsenter(args) => {
            sandbox::nsenter(args.pid, args.tty, args.workdir.as_deref(), &args.cmd)
        }
        Command::NetnsHelper => return crate::sandbox::helper::main(),
        Command::HelperSpawner(args) => {
            return match crate::sys::seccomp::Mode::parse(&args.seccomp) {
                Ok(mode) => crate::sandbox::spawner::main(args.parent, mode),
                Err(e) => report(&e),
            }
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => report(&e),
    }
}

/// `--dns-upstream IP[:PORT]` values (port 53 by default).
fn parse_upstreams(values: &[String]) -> anyhow::Result<Vec<std::net::SocketAddr>> {
    values
        .iter()
        .map(|v| {
            v.parse::<std::net::SocketAddr>()
                .or_else(|_| {
                    v.parse::<std::net::IpAddr>()
                        .map(|ip| std::net::SocketAddr::new(ip, 53))
                })
                .map_err(|_| {
                    anyhow::anyhow!(
                        "invalid --dns-upstream {v:?}: expected IP or IP:PORT, e.g. 127.0.0.1:5353"
                    )
                })
        })
        .collect()
}

/// Prints an error (and the daemon's hint) and returns exit status 1.
pub fn report(e: &anyhow::Error) -> i32 {
    if let Some(f) = e.downcast_ref::<client::ApiFailure>() {
        eprintln!("warren: {}", f.body.error);
        if !f.body.hint.is_empty() {
            eprintln!("hint: {}", f.body.hint);
        }
    } else {
        eprintln!("warren: {e:#}");
        if let Some(hint) = crate::daemon::paths::Untrusted::hint_of(e) {
            eprintln!("hint: {hint}");
        }
    }
    1
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WARREN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_takes_the_command_after_its_options() {
        let cli = Cli::try_parse_from([
            "warren", "run", "--net", "dev", "-d", "--", "sh", "-c", "exit 3",
        ])
        .unwrap();
        let Command::Run(a) = cli.command else {
            panic!("not run")
        };
        assert_eq!(a.net.network, ["dev"]);
        assert!(a.detach);
        assert_eq!(a.cmd, ["sh", "-c", "exit 3"]);
    }
}
