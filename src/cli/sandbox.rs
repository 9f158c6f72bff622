//! `warren ps`, `inspect`, `exec` and `rm`.
//!
//! `exec` asks the daemon for the sandbox's pid and starts `warren
//! __nsenter` ([`nsenter`]), a fresh single-threaded process (as
//! `setns(CLONE_NEWUSER)` requires), which opens
//! `/proc/PID/ns/{user,net,uts,mnt}`, `setns`es into each that differs
//! from its own (user first: that is where its capabilities for the others
//! come from), starts a session of its own, returns to the caller's working
//! directory if it exists there, and execs the command. The CLI stays
//! outside and relays its streams as `run` does ([`super::stdio`]): the
//! command never holds the caller's terminal, and gets only the
//! environment a container runtime passes. The exit status is the
//! command's.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::MetadataExt;

use anyhow::{Context, Result};
use nix::sched::CloneFlags;

use super::client::Client;
use super::{print_table, stdio, Format};
use crate::api::types::{SandboxInspect, SandboxSummary};
use crate::daemon::paths::Paths;
use crate::sandbox::init;

#[derive(clap::Args, Debug)]
pub struct PsArgs {
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Only print ids
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Exited sandboxes too
    #[arg(long, short = 'a')]
    pub all: bool,
}

#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    #[arg(required = true)]
    pub sandboxes: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct ExecArgs {
    #[command(flatten)]
    pub io: stdio::IoArgs,
    pub sandbox: String,
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub cmd: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct RmArgs {
    /// Kill running sandboxes first
    #[arg(long, short = 'f')]
    pub force: bool,
    #[arg(required = true)]
    pub sandboxes: Vec<String>,
}

pub fn ps(paths: &Paths, a: PsArgs) -> Result<i32> {
    let rows: Vec<SandboxSummary> =
        Client::connect(paths)?.get(&format!("/v1/sandboxes?all={}", a.all))?;
    if a.quiet {
        for r in rows {
            println!("{}", r.id);
        }
        return Ok(0);
    }
    if a.format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                r.names.clone(),
                format!("\"{}\"", truncate(&r.command, 20)),
                r.running_for.clone(),
                r.status.clone(),
                r.ports.clone(),
                r.networks.clone(),
            ]
        })
        .collect();
    print_table(
        &[
            "SANDBOX ID",
            "NAME",
            "COMMAND",
            "CREATED",
            "STATUS",
            "PORTS",
            "NETWORKS",
        ],
        &table,
    );
    Ok(0)
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}

pub fn inspect(paths: &Paths, a: InspectArgs) -> Result<i32> {
    let client = Client::connect(paths)?;
    let mut out = Vec::new();
    let mut status = 0;
    for s in &a.sandboxes {
        match client.get::<SandboxInspect>(&format!("/v1/sandboxes/{s}")) {
            Ok(i) => out.push(i),
            Err(e) => status = super::report(&e),
        }
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(status)
}

pub fn rm(paths: &Paths, a: RmArgs) -> Result<i32> {
    let client = Client::connect(paths)?;
    let mut status = 0;
    for s in &a.sandboxes {
        match client.delete::<serde_json::Value>(&format!("/v1/sandboxes/{s}?force={}", a.force)) {
            Ok(_) => println!("{s}"),
            Err(e) => status = super::report(&e),
        }
    }
    Ok(status)
}

pub fn exec(paths: &Paths, a: ExecArgs) -> Result<i32> {
    let info: SandboxInspect =
        Client::connect(paths)?.get(&format!("/v1/sandboxes/{}", a.sandbox))?;
    let pid = info.state.pid;
    if pid <= 0 {
        anyhow::bail!(
            "sandbox {} was attached by its network namespace and has no process to join; \
             use its runner's exec",
            a.sandbox
        );
    }
    let env = stdio::sandbox_env(&a.io)?;
    let (streams, relay, tty) = stdio::plan(&a.io)?;
    let [stdin, stdout, stderr] = streams;
    let exe = std::env::current_exe().context("locating the warren binary")?;
    let mut command = std::process::Command::new(exe);
    command
        .env_clear()
        .arg("__nsenter")
        .arg("--pid")
        .arg(pid.to_string());
    let sync = if tty {
        let (ours, theirs) = init::sync_pair()?;
        command
            .arg("--tty")
            .env(init::SYNC_ENV, theirs.as_raw_fd().to_string());
        if a.io.interactive {
            command.arg("--tty-stdin");
        }
        Some((ours, theirs))
    } else {
        None
    };
    let mut child = command
        .arg("--")
        .args(&a.cmd)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(stdin)
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .context("starting the process that joins the sandbox")?;
    drop(command);
    let target = crate::sys::pidfd::open(child.id() as i32).context("pidfd of the exec")?;
    let mut relay = relay;
    if let Some((ours, theirs)) = sync {
        drop(theirs);
        // None: it failed before taking the pty; the relay still carries
        // its error and its status.
        if let Some(master) = init::receive_master(&ours) {
            relay.attach_pty(master)?;
        }
    }
    let status = relay.run(&mut child, &target)?;
    Ok(stdio::exit_code(status))
}

/// The body of `warren __nsenter`: joins sandbox `pid`'s namespaces and
/// execs `cmd` there, in a session of its own (with `tty`, its stdout is
/// the pty to take as controlling terminal).
pub fn nsenter(pid: i32, tty: bool, tty_stdin: bool, cmd: &[String]) -> Result<i32> {
    let sync = if tty { Some(init::adopt_sync()?) } else { None };
    // Before anything of the sandbox's is joined: no controlling terminal
    // of the caller's is ever held in there.
    nix::unistd::setsid().context("setsid")?;
    // Checked while this process still sees its own /proc.
    let single = crate::sys::process::SingleThreaded::check()?;
    let cwd = std::env::current_dir().ok();
    // Open every namespace before joining any: after joining the user
    // namespace, the host's /proc/PID may no longer be ours to read.
    let kinds = [
        ("user", CloneFlags::CLONE_NEWUSER),
        ("net", CloneFlags::CLONE_NEWNET),
        ("uts", CloneFlags::CLONE_NEWUTS),
        ("mnt", CloneFlags::CLONE_NEWNS),
        ("pid", CloneFlags::CLONE_NEWPID),
    ];
    let mut joins = Vec::new();
    for (kind, flag) in kinds {
        let path = format!("/proc/{pid}/ns/{kind}");
        let target = File::open(&path)
            .with_context(|| format!("opening {path} (has the sandbox exited?)"))?;
        let ours = std::fs::metadata(format!("/proc/self/ns/{kind}"))?;
        if target.metadata()?.ino() != ours.ino() {
            joins.push((kind, flag, target));
        }
    }
    for (kind, flag, target) in &joins {
        nix::sched::setns(target.as_fd(), *flag)
            .with_context(|| format!("joining the sandbox's {kind} namespace"))?;
    }
    if let Some(dir) = cwd {
        if std::env::set_current_dir(&dir).is_err() {
            let _ = std::env::set_current_dir("/");
        }
    }
    let terminal = match &sync {
        Some(sync) => {
            // Allocated here, from the sandbox's own devpts (sandbox::pty).
            let (master, slave) = crate::sandbox::pty::allocate()?;
            crate::sys::scm::send_with_fds(sync, crate::sandbox::pty::MASTER, &[master])
                .context("sending the pty")?;
            Some(crate::sandbox::pid1::Terminal {
                slave,
                stdin: tty_stdin,
            })
        }
        None => None,
    };
    // The PID namespace takes only children: the command is one, and this
    // process forwards signals to it and reports its status.
    crate::sandbox::pid1::run(&single, terminal, sync, || {
        crate::sandbox::init::exec_reporting(cmd)
    })
}
