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

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use nix::sched::CloneFlags;
use serde::Serialize;
use serde_json::Value as Json;

use super::client::Client;
use super::format::{ellipsis, go_time_secs, labels_column, short_id, Filters, Format};
use super::stdio;
use crate::api::types::SandboxInspect;
use crate::daemon::paths::Paths;
use crate::sandbox::init;

#[derive(clap::Args, Debug)]
pub struct PsArgs {
    /// Show every sandbox, exited ones too (default: running ones)
    #[arg(long, short = 'a')]
    pub all: bool,
    /// Only print ids
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Show the latest created sandbox (of every state)
    #[arg(long, short = 'l')]
    pub latest: bool,
    /// Show the N last created sandboxes (of every state)
    #[arg(long = "last", short = 'n', value_name = "N")]
    pub last: Option<usize>,
    /// Do not truncate ids and commands
    #[arg(long)]
    pub no_trunc: bool,
    /// KEY=VALUE: id, name, network, status, label, exited (repeatable)
    #[arg(long, short = 'f', value_name = "FILTER")]
    pub filter: Vec<String>,
    /// table [TEMPLATE], json, or a Go template such as '{{.Names}}\t{{.Status}}'
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// json, or a Go template such as '{{.NetworkSettings.Networks.dev.IPAddress}}'
    #[arg(long, short = 'f', value_name = "FORMAT")]
    pub format: Option<String>,
    #[arg(required = true)]
    pub sandboxes: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct ExecArgs {
    #[command(flatten)]
    pub io: stdio::IoArgs,
    pub sandbox: String,
    /// The command and its arguments (the first word after the sandbox
    /// starts it, or everything after `--`)
    #[arg(required = true, trailing_var_arg = true, value_name = "CMD")]
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

/// `ps`'s default table (Docker's, with NETWORKS for IMAGE and NAMES
/// before the columns that may be empty).
const PS_TABLE: &str =
    "table {{.ID}}\\t{{.Names}}\\t{{.Command}}\\t{{.RunningFor}}\\t{{.Status}}\\t{{.Ports}}\\t{{.Networks}}";

/// `ps`'s filters, as Docker's of the same names.
const PS_FILTERS: &[&str] = &["id", "name", "network", "status", "label", "exited"];

/// Docker's container states, the values `--filter status=` takes.
const STATES: &[&str] = &[
    "created",
    "restarting",
    "running",
    "removing",
    "paused",
    "exited",
    "dead",
];

/// Column titles of `ps` tables.
fn ps_headers() -> BTreeMap<&'static str, &'static str> {
    BTreeMap::from([
        ("ID", "SANDBOX ID"),
        ("Names", "NAMES"),
        ("Command", "COMMAND"),
        ("CreatedAt", "CREATED AT"),
        ("RunningFor", "CREATED"),
        ("Ports", "PORTS"),
        ("State", "STATE"),
        ("Status", "STATUS"),
        ("Labels", "LABELS"),
        ("Networks", "NETWORKS"),
        ("Pid", "PID"),
        ("ExternalID", "EXTERNAL ID"),
    ])
}

pub fn ps(paths: &Paths, a: PsArgs) -> Result<i32> {
    let filters = Filters::parse(&a.filter, PS_FILTERS)?;
    for v in filters.values("status") {
        if !STATES.contains(&v.as_str()) {
            bail!(
                "invalid filter 'status={v}' (a status is one of {})",
                STATES.join(", ")
            );
        }
    }
    let exited: Vec<i64> = filters
        .values("exited")
        .iter()
        .map(|v| {
            v.parse()
                .map_err(|_| anyhow::anyhow!("invalid filter 'exited={v}' (an exit code)"))
        })
        .collect::<Result<_>>()?;
    let limit = if a.latest {
        Some(1)
    } else {
        a.last.filter(|n| *n > 0)
    };
    // As Docker: a status filter, -l and -n look at every sandbox.
    let all = a.all || limit.is_some() || filters.has("status");
    let client = Client::connect(paths)?;
    let rows: Vec<Json> = client.get(if all {
        "/v1/sandboxes?all=true"
    } else {
        "/v1/sandboxes"
    })?;
    let networks: Vec<Json> = if filters.has("network") {
        client.get("/v1/networks")?
    } else {
        Vec::new()
    };
    let mut out: Vec<Json> = rows
        .iter()
        .map(|r| ps_row(r, !a.no_trunc))
        .filter(|r| all || r["State"] == "running")
        .filter(|r| ps_selects(&filters, &exited, &networks, r))
        .collect();
    if let Some(n) = limit {
        out.truncate(n);
    }
    if a.quiet {
        super::format::print_quiet(&out, a.format.is_some());
        return Ok(0);
    }
    let format = Format::parse(a.format.as_deref(), PS_TABLE)?;
    // Filters look at the whole row; what is shown drops the private ones.
    for r in &mut out {
        if let Some(o) = r.as_object_mut() {
            o.retain(|k, _| !k.starts_with('_'));
        }
    }
    print!("{}", format.render(&out, &ps_headers(), true)?);
    Ok(0)
}

/// Keys of a row that only the filters use (all begin with `_`).
const EXIT_CODE: &str = "_exit_code";
const LABEL_MAP: &str = "_labels";
const FULL_ID: &str = "_id";

/// One `ps` row, with the fields of Docker's container context (all
/// strings, as Docker's): `ID`, `Names`, `Command` (quoted), `CreatedAt`
/// (whole seconds),
/// `RunningFor`, `Ports`, `State`, `Status`, `Labels`, `Networks`; and
/// warren's `Pid` (a number) and `ExternalID`. `trunc`: ids of 12
/// characters and commands of 20, as Docker's without `--no-trunc`.
fn ps_row(r: &Json, trunc: bool) -> Json {
    let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
    let id = s("ID");
    let command = s("Command");
    let status = s("Status");
    // Daemons without exited sandboxes have no State: all run.
    let state = r["State"].as_str().unwrap_or("running").to_string();
    let labels: BTreeMap<String, String> = match &r["Labels"] {
        Json::Object(o) => o
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect(),
        Json::String(text) => text
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        _ => BTreeMap::new(),
    };
    let exit_code = r["ExitCode"].as_i64().or_else(|| {
        let rest = status.strip_prefix("Exited (")?;
        rest.split_once(')')?.0.parse().ok()
    });
    serde_json::json!({
        FULL_ID: id.clone(),
        "ID": if trunc { short_id(&id).to_string() } else { id },
        "Names": s("Names"),
        "Command": serde_json::to_string(&if trunc { ellipsis(&command, 20) } else { command })
            .unwrap_or_default(),
        "CreatedAt": go_time_secs(&s("CreatedAt")),
        "RunningFor": s("RunningFor"),
        "Ports": s("Ports"),
        "State": state,
        "Status": status,
        "Labels": labels_column(&labels),
        "Networks": s("Networks"),
        "Pid": r["Pid"].as_i64().unwrap_or(0),
        "ExternalID": s("ExternalID"),
        EXIT_CODE: exit_code,
        LABEL_MAP: labels,
    })
}

/// Whether row `r` passes `filters` (Docker's rules for each key).
/// `networks` is `GET /v1/networks`, for the network ids.
fn ps_selects(filters: &Filters, exited: &[i64], networks: &[Json], r: &Json) -> bool {
    let s = |k: &str| r[k].as_str().unwrap_or_default();
    let name = s("Names");
    if !filters.matches("name", name) && !filters.matches("name", &format!("/{name}")) {
        return false;
    }
    // The full id, whatever is shown.
    if !filters.matches("id", s(FULL_ID)) {
        return false;
    }
    if !filters.exact("status", s("State")) {
        return false;
    }
    let exited_with = |c: i64| s("State") == "exited" && exited.contains(&c);
    if !exited.is_empty() && !r[EXIT_CODE].as_i64().is_some_and(exited_with) {
        return false;
    }
    let labels: BTreeMap<String, String> =
        serde_json::from_value(r[LABEL_MAP].clone()).unwrap_or_default();
    if !filters.labels(&labels) {
        return false;
    }
    if filters.has("network") {
        // Docker: a network's name, or a prefix of its id.
        let on: Vec<&str> = s("Networks").split(',').filter(|n| !n.is_empty()).collect();
        let hit = filters.values("network").iter().any(|want| {
            on.contains(&want.as_str())
                || networks.iter().any(|n| {
                    n["ID"]
                        .as_str()
                        .is_some_and(|id| id.starts_with(want.as_str()))
                        && n["Name"].as_str().is_some_and(|name| on.contains(&name))
                })
        });
        if !hit {
            return false;
        }
    }
    true
}

pub fn inspect(paths: &Paths, a: InspectArgs) -> Result<i32> {
    let format = match Inspected::parse(a.format.as_deref()) {
        Ok(f) => f,
        Err(e) => return Ok(bad_template(&e)),
    };
    let client = Client::connect(paths)?;
    let mut out = Vec::new();
    let mut status = 0;
    for s in &a.sandboxes {
        match client.get::<SandboxInspect>(&format!("/v1/sandboxes/{s}")) {
            Ok(i) => out.push(i),
            Err(e) => status = super::report(&e),
        }
    }
    format.print(&out)?;
    Ok(status)
}

/// Docker's status for a `--format` of `inspect` that does not parse (its
/// CLI's `StatusError{StatusCode: 64}`), after saying why.
pub fn bad_template(e: &anyhow::Error) -> i32 {
    super::report(e);
    64
}

/// How `inspect` and `network inspect` print, as Docker's CLI's
/// inspectors: without `--format`, a JSON array indented by four spaces;
/// `json`, the same array compact on one line; any other format a
/// template per value, each followed by a newline (`{{json .}}` keeps
/// the fields in their order, as Docker's typed values do).
pub enum Inspected {
    Indented,
    Compact,
    Template(Box<Format>),
}

impl Inspected {
    /// Parses `--format`, before anything is fetched (as Docker's, which
    /// refuses a bad template with nothing printed).
    pub fn parse(format: Option<&str>) -> Result<Inspected> {
        Ok(match format {
            None | Some("") => Inspected::Indented,
            Some("json") => Inspected::Compact,
            Some(f) => Inspected::Template(Box::new(Format::parse(Some(f), "")?)),
        })
    }

    pub fn print<T: serde::Serialize>(&self, values: &[T]) -> Result<()> {
        match self {
            Inspected::Indented => {
                let mut out = Vec::new();
                let pretty = serde_json::ser::PrettyFormatter::with_indent(b"    ");
                let mut ser = serde_json::Serializer::with_formatter(&mut out, pretty);
                values.serialize(&mut ser)?;
                println!("{}", String::from_utf8_lossy(&out));
            }
            Inspected::Compact => println!("{}", serde_json::to_string(values)?),
            Inspected::Template(format) if format.is_json() => {
                for v in values {
                    println!("{}", serde_json::to_string(v)?);
                }
            }
            Inspected::Template(format) => {
                let json = values
                    .iter()
                    .map(serde_json::to_value)
                    .collect::<serde_json::Result<Vec<Json>>>()?;
                print!("{}", format.render(&json, &BTreeMap::new(), false)?);
            }
        }
        Ok(())
    }
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
    if let Some(dir) = &a.io.workdir {
        command.arg("--workdir").arg(dir);
    }
    let sync = if tty {
        let (ours, theirs) = init::sync_pair()?;
        command
            .arg("--tty")
            .env(init::SYNC_ENV, theirs.as_raw_fd().to_string());
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
pub fn nsenter(
    pid: i32,
    tty: bool,
    workdir: Option<&std::path::Path>,
    cmd: &[String],
) -> Result<i32> {
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
    match workdir {
        Some(dir) => std::env::set_current_dir(dir)
            .with_context(|| format!("-w {}: cannot enter it in the sandbox", dir.display()))?,
        None => {
            if let Some(dir) = cwd {
                if std::env::set_current_dir(&dir).is_err() {
                    let _ = std::env::set_current_dir("/");
                }
            }
        }
    }
    let terminal = match &sync {
        Some(sync) => {
            // Allocated here, from the sandbox's own devpts (sandbox::pty).
            let (master, slave) = crate::sandbox::pty::allocate()?;
            crate::sys::scm::send_with_fds(sync, crate::sandbox::pty::MASTER, &[master])
                .context("sending the pty")?;
            Some(crate::sandbox::pid1::Terminal { slave })
        }
        None => None,
    };
    // The PID namespace takes only children: the command is one, and this
    // process forwards signals to it and reports its status.
    crate::sandbox::pid1::run(&single, terminal, sync, || {
        crate::sandbox::init::exec_reporting(cmd)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A row of `GET /v1/sandboxes?all=true` from a daemon that keeps
    /// exited sandboxes (`State`, an `Exited (N) …` status, labels).
    fn api_row(name: &str, state: Option<&str>, status: &str) -> Json {
        let mut r = json!({
            "ID": format!("{name:0<64}"),
            "Names": name,
            "Command": "python3 -m http.server 8080",
            "CreatedAt": "2024-01-02T10:00:00.000000000Z",
            "RunningFor": "5 seconds ago",
            "Status": status,
            "Pid": 42,
            "Networks": "dev",
            "Ports": "",
            "Labels": {"tier": "web", "team": "a"},
        });
        if let Some(s) = state {
            r["State"] = json!(s);
        }
        r
    }

    fn select(filters: &[&str], r: &Json) -> bool {
        let items: Vec<String> = filters.iter().map(|f| f.to_string()).collect();
        let f = Filters::parse(&items, PS_FILTERS).unwrap();
        let exited: Vec<i64> = f
            .values("exited")
            .iter()
            .map(|v| v.parse().unwrap())
            .collect();
        ps_selects(&f, &exited, &[], &ps_row(r, true))
    }

    #[test]
    fn rows_have_dockers_fields_and_truncation() {
        let r = ps_row(&api_row("web", None, "Up 5 seconds"), true);
        assert_eq!(r["ID"], "web000000000");
        assert_eq!(r["Command"], "\"python3 -m http.ser…\"");
        assert_eq!(r["State"], "running", "no State from the daemon: running");
        assert_eq!(r["Labels"], "team=a,tier=web");
        assert_eq!(r["CreatedAt"], "2024-01-02 10:00:00 +0000 UTC");
        let r = ps_row(&api_row("web", None, "Up 5 seconds"), false);
        assert_eq!(r["ID"].as_str().unwrap().len(), 64);
        assert_eq!(r["Command"], "\"python3 -m http.server 8080\"");
    }

    #[test]
    fn exited_status_and_label_filters() {
        let gone = api_row("gone", Some("exited"), "Exited (3) 5 seconds ago");
        let up = api_row("up", Some("running"), "Up 5 seconds");
        assert!(select(&["status=exited"], &gone));
        assert!(!select(&["status=exited"], &up));
        assert!(select(&["status=exited", "status=running"], &up));
        assert!(select(&["exited=3"], &gone));
        assert!(select(&["exited=0", "exited=3"], &gone));
        assert!(!select(&["exited=0"], &gone));
        assert!(
            !select(&["exited=3"], &up),
            "exited only matches exited ones"
        );
        assert!(select(&["label=tier"], &up));
        assert!(select(&["label=tier=web", "label=team=a"], &up));
        assert!(!select(&["label=tier=db"], &up));
        assert!(
            !select(&["label=tier", "label=owner"], &up),
            "every label filter"
        );
        assert!(select(&["name=^/up$"], &up), "Docker's names begin with /");
        assert!(select(&["id=up00"], &up));
        // An exit code the daemon gives as a field wins over the status.
        let mut coded = gone.clone();
        coded["ExitCode"] = json!(7);
        assert!(select(&["exited=7"], &coded));
    }
}
