//! The topologies every system is measured on, set up once per run and
//! kept until its end, and where a client runs for each kind of path.
//!
//! Each system gets the same three servers, on the same ports inside its
//! namespace: iperf3 (5201), `sockperf server --tcp` (11111) and the
//! harness's one-byte echo (7000, for connections per second). The host
//! gets the same three on 127.0.0.1 (free ports) for each system with
//! egress, as its target.
//!
//! - **warren**: a release daemon of the run's own (uid 65534), one
//!   network with `host-loopback=true` (169.254.1.2 is the host's
//!   127.0.0.1) at the default MTU 65520; sandbox `srv` runs the servers
//!   and publishes them on 127.0.0.1, sandbox `cli` is where clients run
//!   (`warren exec`).
//! - **kernel bridge** (root only): two network namespaces, a bridge and
//!   two veths, all at MTU 65520; servers in one, clients in the other.
//! - **pasta**, **slirp4netns**: a user+network namespace held by
//!   `unshare -rn sleep`, the peer attached to it (MTU 65520, host
//!   loopback reachable through its gateway address: pasta's gateway,
//!   slirp4netns's 10.0.2.2), ports forwarded from 127.0.0.1 (pasta `-t`,
//!   slirp4netns `add_hostfwd`); servers and clients enter it with
//!   `nsenter`.
//! - **rootlesskit**: `rootlesskit --net=slirp4netns --port-driver=builtin
//!   --disable-host-loopback` (MTU 65520), ports added with `rootlessctl
//!   add-ports 127.0.0.1:HOST:CHILD/tcp`; published ports only (its egress
//!   is slirp4netns's).
//! - **host loopback**: no sandbox and no forwarder, the reference for the
//!   egress rows: the same client on the host, to its own set of the
//!   host's servers on 127.0.0.1. One TCP connection between two
//!   processes over `lo` is the most any path to the host's loopback can
//!   carry here; every egress path is that plus a sandbox and a forwarder.
//!
//! Every peer runs as uid 65534 when the harness is root (rootlesskit
//! needs a subuid range for it, which `scripts/install-deps` adds). All
//! traffic stays on loopback and in these namespaces.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::cleanup;
use crate::common::{free_port, have, is_root, user, wait_for, BenchDir, Warren, PATH};

/// The systems compared.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Sys {
    Warren,
    Bridge,
    Pasta,
    Slirp,
    Rootlesskit,
    /// No sandbox: the reference for egress (see the module documentation).
    Loopback,
}

impl Sys {
    pub const ALL: [Sys; 6] = [
        Sys::Warren,
        Sys::Bridge,
        Sys::Pasta,
        Sys::Slirp,
        Sys::Rootlesskit,
        Sys::Loopback,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Sys::Warren => "warren",
            Sys::Bridge => "kernel bridge",
            Sys::Pasta => "pasta",
            Sys::Slirp => "slirp4netns",
            Sys::Rootlesskit => "rootlesskit builtin",
            Sys::Loopback => "host loopback (no sandbox)",
        }
    }

    /// Why this system cannot be set up here, if it cannot.
    pub fn missing(self) -> Option<String> {
        let tools: &[&str] = match self {
            Sys::Warren | Sys::Loopback => &["sh"],
            Sys::Bridge if !is_root() => return Some("needs root".into()),
            Sys::Bridge => &["ip"],
            Sys::Pasta => &["pasta", "unshare", "nsenter"],
            Sys::Slirp => &["slirp4netns", "unshare", "nsenter"],
            Sys::Rootlesskit => &["rootlesskit", "rootlessctl", "slirp4netns", "nsenter"],
        };
        let absent: Vec<&str> = tools.iter().copied().filter(|t| !have(t)).collect();
        (!absent.is_empty()).then(|| format!("{} not installed", absent.join(", ")))
    }
}

/// The three server ports of one place.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    pub iperf: u16,
    pub rr: u16,
    pub echo: u16,
}

/// The ports inside every namespace.
pub const INNER: Ports = Ports {
    iperf: 5201,
    rr: 11111,
    echo: 7000,
};

impl Ports {
    fn free() -> Ports {
        Ports {
            iperf: free_port(),
            rr: free_port(),
            echo: free_port(),
        }
    }

    fn pairs(self) -> [(u16, u16); 3] {
        [
            (self.iperf, INNER.iperf),
            (self.rr, INNER.rr),
            (self.echo, INNER.echo),
        ]
    }
}

/// Which path a measurement takes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Route {
    /// Sandbox to sandbox on one network.
    Local,
    /// From a sandbox to the host's loopback (NAT).
    Egress,
    /// From the host's loopback through a published port.
    Ingress,
}

/// Where a client runs (a command prefix that enters the sandbox, as the
/// unprivileged user or as root) and what it talks to.
pub struct Place {
    prefix: Vec<String>,
    env: Vec<(String, String)>,
    as_root: bool,
    pub addr: String,
    pub ports: Ports,
}

impl Place {
    /// `argv` run there, bounded by `limit` (`timeout`, then SIGKILL).
    pub fn command(&self, home: &Path, limit: Duration, argv: &[String]) -> Command {
        let mut c = if self.as_root {
            let mut c = Command::new("timeout");
            c.env_clear().env("PATH", PATH).stdin(Stdio::null());
            c
        } else {
            user("timeout", home)
        };
        c.args(["-k", "2", &limit.as_secs().to_string()])
            .args(&self.prefix)
            .args(argv)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }
}

/// Every system's topology, as far as it could be set up.
pub struct Lab {
    pub bench: BenchDir,
    /// The host's servers on 127.0.0.1, one set per system with egress
    /// (so that one system's connections in TIME_WAIT, which hold
    /// ephemeral ports for a minute, never exhaust another's).
    host: HashMap<Sys, Ports>,
    warren: Option<WarrenNet>,
    bridge: Option<Bridge>,
    pasta: Option<UserNs>,
    slirp: Option<UserNs>,
    rootlesskit: Option<UserNs>,
    /// Systems that could not be set up, and why.
    pub failed: Vec<(Sys, String)>,
}

struct WarrenNet {
    w: Warren,
    srv_ip: String,
    published: Ports,
}

struct Bridge {
    client_ns: String,
}

/// A namespace of a user-mode peer: held by `pid`, reaching the host's
/// loopback at `gateway`, with the servers published on `published`.
struct UserNs {
    pid: i32,
    gateway: String,
    published: Ports,
}

/// The shell line that starts the three servers on `addr` and stays as
/// the echo server.
fn servers(helper: &Path, addr: &str, p: Ports) -> String {
    format!(
        "iperf3 -s -B {addr} -p {iperf} >/dev/null 2>&1 & \
         sockperf server --tcp -i {addr} -p {rr} >/dev/null 2>&1 & \
         exec {helper} __echo {addr} {echo}",
        helper = helper.display(),
        iperf = p.iperf,
        rr = p.rr,
        echo = p.echo,
    )
}

/// `nsenter` into the user and network namespaces of `pid`.
fn nsenter(pid: i32) -> Vec<String> {
    [
        "nsenter",
        "-U",
        "-n",
        "-t",
        &pid.to_string(),
        "--preserve-credentials",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Whether the network namespace of `pid` has TCP listeners on all
/// `ports` (from `/proc/PID/net/tcp`, state 0A).
fn listening(pid: i32, ports: &[u16]) -> bool {
    let Ok(table) = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")) else {
        return false;
    };
    let open: Vec<u16> = table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let local = f.nth(1)?;
            let state = f.nth(1)?;
            let port = u16::from_str_radix(local.rsplit_once(':')?.1, 16).ok()?;
            (state == "0A").then_some(port)
        })
        .collect();
    ports.iter().all(|p| open.contains(p))
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

impl Lab {
    /// Sets up the host's servers and each system of `systems` that is
    /// installed, in `bench`; a system that fails is reported, not fatal.
    pub fn new(bench: BenchDir, systems: &[Sys]) -> Lab {
        let mut lab = Lab {
            host: HashMap::new(),
            bench,
            warren: None,
            bridge: None,
            pasta: None,
            slirp: None,
            rootlesskit: None,
            failed: Vec::new(),
        };
        for &sys in systems {
            if [Sys::Warren, Sys::Pasta, Sys::Slirp, Sys::Loopback].contains(&sys) {
                let host = Ports::free();
                let spawned = user("sh", &lab.bench.dir)
                    .args(["-c", &servers(&lab.bench.helper, "127.0.0.1", host)])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn();
                let me = std::process::id() as i32;
                if spawned.is_err()
                    || wait_for(Duration::from_secs(10), || {
                        listening(me, &[host.iperf, host.rr, host.echo]).then_some(())
                    })
                    .is_none()
                {
                    panic!("the host's servers did not start (iperf3, sockperf)");
                }
                lab.host.insert(sys, host);
            }
        }
        for &sys in systems {
            if let Some(why) = sys.missing() {
                lab.failed.push((sys, why));
                continue;
            }
            eprintln!("compare: setting up {}", sys.name());
            let r = match sys {
                Sys::Warren => lab.setup_warren().map(|w| lab.warren = Some(w)),
                Sys::Bridge => lab.setup_bridge().map(|b| lab.bridge = Some(b)),
                Sys::Pasta => lab.setup_pasta().map(|n| lab.pasta = Some(n)),
                Sys::Slirp => lab.setup_slirp().map(|n| lab.slirp = Some(n)),
                Sys::Rootlesskit => lab.setup_rootlesskit().map(|n| lab.rootlesskit = Some(n)),
                // Its servers are the host's, started above.
                Sys::Loopback => Ok(()),
            };
            match r.and_then(|()| lab.probe(sys)) {
                Ok(()) => {}
                Err(e) => {
                    eprintln!("compare: {} not measured: {e}", sys.name());
                    lab.forget(sys);
                    lab.failed.push((sys, e));
                }
            }
        }
        lab
    }

    fn forget(&mut self, sys: Sys) {
        match sys {
            Sys::Warren => self.warren = None,
            Sys::Bridge => self.bridge = None,
            Sys::Pasta => self.pasta = None,
            Sys::Slirp => self.slirp = None,
            Sys::Rootlesskit => self.rootlesskit = None,
            Sys::Loopback => {
                self.host.remove(&sys);
            }
        }
    }

    /// Where a client of `sys` runs for `path`, if `sys` is set up and
    /// has that path.
    pub fn place(&self, sys: Sys, path: Route) -> Option<Place> {
        let as_user = |prefix: Vec<String>, addr: &str, ports: Ports| Place {
            prefix,
            env: Vec::new(),
            as_root: false,
            addr: addr.to_string(),
            ports,
        };
        let ingress = |published: Ports| as_user(Vec::new(), "127.0.0.1", published);
        match (sys, path) {
            (Sys::Warren, _) => {
                let w = self.warren.as_ref()?;
                let mut exec = vec![w.w.bin.display().to_string()];
                exec.extend(strings(&["exec", "cli", "--"]));
                let mut p = match path {
                    Route::Local => as_user(exec, &w.srv_ip, INNER),
                    Route::Egress => as_user(exec, "169.254.1.2", *self.host.get(&sys)?),
                    Route::Ingress => return Some(ingress(w.published)),
                };
                p.env = w.w.env();
                Some(p)
            }
            (Sys::Loopback, Route::Egress) => {
                Some(as_user(Vec::new(), "127.0.0.1", *self.host.get(&sys)?))
            }
            (Sys::Bridge, Route::Local) => {
                let b = self.bridge.as_ref()?;
                Some(Place {
                    prefix: strings(&["ip", "netns", "exec", &b.client_ns]),
                    env: Vec::new(),
                    as_root: true,
                    addr: "10.202.0.1".into(),
                    ports: INNER,
                })
            }
            (Sys::Pasta | Sys::Slirp | Sys::Rootlesskit, _) => {
                let ns = match sys {
                    Sys::Pasta => self.pasta.as_ref(),
                    Sys::Slirp => self.slirp.as_ref(),
                    _ => self.rootlesskit.as_ref(),
                }?;
                match path {
                    Route::Egress if sys != Sys::Rootlesskit => {
                        Some(as_user(nsenter(ns.pid), &ns.gateway, *self.host.get(&sys)?))
                    }
                    Route::Ingress => Some(ingress(ns.published)),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// Checks every path of `sys` end to end with the echo server, for up
    /// to 15 s each (forwarders may accept before the server behind them
    /// listens).
    fn probe(&self, sys: Sys) -> Result<(), String> {
        for path in [Route::Local, Route::Egress, Route::Ingress] {
            let Some(place) = self.place(sys, path) else {
                continue;
            };
            let argv = vec![
                self.bench.helper.display().to_string(),
                "__probe".into(),
                place.addr.clone(),
                place.ports.echo.to_string(),
            ];
            let ok = place
                .command(&self.bench.dir, Duration::from_secs(20), &argv)
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                return Err(format!("{path:?} path does not answer"));
            }
        }
        Ok(())
    }

    fn setup_warren(&self) -> Result<WarrenNet, String> {
        let w = Warren::new(&self.bench, "warren-home");
        let teardown = w.clone();
        cleanup::on_exit("warren: sandboxes and daemon", move || teardown.teardown());
        w.ok(&["network", "create", "--opt", "host-loopback=true", "bench"])?;
        let published = Ports::free();
        let specs: Vec<String> = published
            .pairs()
            .iter()
            .map(|(h, c)| format!("127.0.0.1:{h}:{c}"))
            .collect();
        let script = servers(&self.bench.helper, "0.0.0.0", INNER);
        let mut args = vec!["run", "-d", "--name", "srv", "--network", "bench"];
        for s in &specs {
            args.extend(["-p", s]);
        }
        args.extend(["--", "sh", "-c", &script]);
        w.ok(&args)?;
        w.ok(&[
            "run",
            "-d",
            "--name",
            "cli",
            "--network",
            "bench",
            "--",
            "sleep",
            "3600",
        ])?;
        let srv = w.inspect("srv").ok_or("inspect srv")?;
        let srv_ip = srv["NetworkSettings"]["Networks"]["bench"]["IPAddress"]
            .as_str()
            .ok_or("no address for srv")?
            .to_string();
        let pid = srv["State"]["Pid"].as_i64().ok_or("no pid for srv")? as i32;
        wait_listening(pid)?;
        Ok(WarrenNet {
            w,
            srv_ip,
            published,
        })
    }

    fn setup_bridge(&self) -> Result<Bridge, String> {
        let id = std::process::id() % 100_000;
        let (srv_ns, cli_ns, br) = (
            format!("wcmp{id}s"),
            format!("wcmp{id}c"),
            format!("wcb{id}"),
        );
        let veths = [format!("wcv{id}s"), format!("wcv{id}c")];
        {
            let (srv_ns, cli_ns, br, veths) =
                (srv_ns.clone(), cli_ns.clone(), br.clone(), veths.clone());
            cleanup::on_exit("kernel bridge: namespaces and links", move || {
                for ns in [&srv_ns, &cli_ns] {
                    let _ = ip(&["netns", "del", ns]);
                }
                for link in veths.iter().chain([&br]) {
                    let _ = ip(&["link", "del", link]);
                }
                let netns = ip(&["netns", "list"]).unwrap_or_default();
                let links = ip(&["-o", "link", "show"]).unwrap_or_default();
                if netns.contains(&srv_ns) || netns.contains(&cli_ns) || links.contains(&br) {
                    eprintln!(
                        "compare: cleanup: kernel bridge left behind: {br}, {srv_ns}, {cli_ns}"
                    );
                }
            });
        }
        let mtu = "65520";
        ip(&["link", "add", &br, "type", "bridge"])?;
        ip(&["link", "set", &br, "mtu", mtu, "up"])?;
        for (n, (ns, veth)) in [&srv_ns, &cli_ns].iter().zip(&veths).enumerate() {
            ip(&["netns", "add", ns])?;
            ip(&[
                "link", "add", veth, "mtu", mtu, "type", "veth", "peer", "name", "eth0", "mtu",
                mtu, "netns", ns,
            ])?;
            ip(&["link", "set", veth, "master", &br, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["-n", ns, "link", "set", "eth0", "up"])?;
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("10.202.0.{}/24", n + 1),
                "dev",
                "eth0",
            ])?;
        }
        let mut server = Command::new("ip");
        server
            .env_clear()
            .env("PATH", PATH)
            .args(["netns", "exec", &srv_ns, "sh", "-c"])
            .arg(servers(&self.bench.helper, "0.0.0.0", INNER))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = server.spawn().map_err(|e| format!("servers: {e}"))?;
        wait_listening(child.id() as i32)?;
        Ok(Bridge { client_ns: cli_ns })
    }

    /// A user+network namespace held by `unshare -rn sleep` as the user.
    fn holder(&self) -> Result<i32, String> {
        let child = user("unshare", &self.bench.dir)
            .args(["-rn", "sleep", "3600"])
            .spawn()
            .map_err(|e| format!("unshare: {e}"))?;
        let pid = child.id() as i32;
        let mine = std::fs::read_link("/proc/self/ns/net").ok();
        wait_for(Duration::from_secs(5), || {
            let theirs = std::fs::read_link(format!("/proc/{pid}/ns/net")).ok()?;
            (Some(&theirs) != mine.as_ref()).then_some(())
        })
        .ok_or("unshare -rn did not make a namespace")?;
        Ok(pid)
    }

    /// Starts the servers in the namespace of `pid` and waits for them.
    fn serve_in(&self, pid: i32) -> Result<(), String> {
        let mut argv = nsenter(pid);
        argv.extend([
            "sh".into(),
            "-c".into(),
            servers(&self.bench.helper, "0.0.0.0", INNER),
        ]);
        user(&argv[0], &self.bench.dir)
            .args(&argv[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("servers: {e}"))?;
        wait_listening(pid)
    }

    /// The default gateway inside the namespace of `pid`, once there is one.
    fn gateway(&self, pid: i32) -> Result<String, String> {
        wait_for(Duration::from_secs(10), || {
            let mut argv = nsenter(pid);
            argv.extend(strings(&["ip", "-4", "route", "show", "default"]));
            let out = user(&argv[0], &self.bench.dir)
                .args(&argv[1..])
                .output()
                .ok()?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let mut words = text.split_whitespace().skip_while(|w| *w != "via");
            words.next()?;
            words.next().map(str::to_string)
        })
        .ok_or_else(|| "the namespace got no default route".to_string())
    }

    fn setup_pasta(&self) -> Result<UserNs, String> {
        let pid = self.holder()?;
        self.serve_in(pid)?;
        let published = Ports::free();
        let mut pasta = user("pasta", &self.bench.dir);
        pasta.args([
            "--config-net",
            "-m",
            "65520",
            "-f",
            "-u",
            "none",
            "-T",
            "none",
            "-U",
            "none",
        ]);
        for (h, c) in published.pairs() {
            pasta.args(["-t", &format!("127.0.0.1/{h}:{c}")]);
        }
        pasta
            .arg(pid.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("pasta: {e}"))?;
        let gateway = self.gateway(pid)?;
        Ok(UserNs {
            pid,
            gateway,
            published,
        })
    }

    fn setup_slirp(&self) -> Result<UserNs, String> {
        let pid = self.holder()?;
        self.serve_in(pid)?;
        let api = self.bench.dir.join("slirp4netns.sock");
        user("slirp4netns", &self.bench.dir)
            .args(["--configure", "--mtu=65520", "--api-socket"])
            .arg(&api)
            .args([&pid.to_string(), "tap0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("slirp4netns: {e}"))?;
        self.gateway(pid)?;
        let published = Ports::free();
        for (host, guest) in published.pairs() {
            add_hostfwd(&api, host, guest)?;
        }
        Ok(UserNs {
            pid,
            gateway: "10.0.2.2".into(),
            published,
        })
    }

    fn setup_rootlesskit(&self) -> Result<UserNs, String> {
        let state = self.bench.dir.join("rootlesskit");
        user("rootlesskit", &self.bench.dir)
            .args([
                "--net=slirp4netns",
                "--mtu=65520",
                "--port-driver=builtin",
                "--disable-host-loopback",
                "--state-dir",
            ])
            .arg(&state)
            .args(["--", "sleep", "3600"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("rootlesskit: {e}"))?;
        let api = state.join("api.sock");
        let pid: i32 = wait_for(Duration::from_secs(10), || {
            let pid = std::fs::read_to_string(state.join("child_pid")).ok()?;
            api.exists().then_some(())?;
            pid.trim().parse().ok()
        })
        .ok_or("rootlesskit did not start (is there a subuid range for the user?)")?;
        self.gateway(pid)?;
        self.serve_in(pid)?;
        let published = Ports::free();
        for (h, c) in published.pairs() {
            let out = user("rootlessctl", &self.bench.dir)
                .arg("--socket")
                .arg(&api)
                .args(["add-ports", &format!("127.0.0.1:{h}:{c}/tcp")])
                .stderr(Stdio::piped())
                .output()
                .map_err(|e| format!("rootlessctl: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "rootlessctl add-ports: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        Ok(UserNs {
            pid,
            gateway: String::new(),
            published,
        })
    }
}

/// Waits until the servers listen in the namespace of `pid`.
fn wait_listening(pid: i32) -> Result<(), String> {
    wait_for(Duration::from_secs(10), || {
        listening(pid, &[INNER.iperf, INNER.rr, INNER.echo]).then_some(())
    })
    .ok_or_else(|| "the servers did not start (iperf3, sockperf)".to_string())
}

/// Runs `ip ARGS` (as root); its stdout.
fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .env("PATH", PATH)
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Forwards 127.0.0.1:`host` to `guest` through slirp4netns's API socket.
fn add_hostfwd(api: &PathBuf, host: u16, guest: u16) -> Result<(), String> {
    let req = format!(
        "{{\"execute\": \"add_hostfwd\", \"arguments\": {{\"proto\": \"tcp\", \
         \"host_addr\": \"127.0.0.1\", \"host_port\": {host}, \"guest_port\": {guest}}}}}"
    );
    wait_for(Duration::from_secs(5), || {
        let mut s = UnixStream::connect(api).ok()?;
        let mut answer = String::new();
        s.write_all(req.as_bytes()).ok()?;
        s.shutdown(std::net::Shutdown::Write).ok()?;
        s.read_to_string(&mut answer).ok()?;
        answer.contains("return").then_some(())
    })
    .ok_or_else(|| format!("slirp4netns add_hostfwd {host}:{guest} failed"))
}
