//! Several "hosts" on one machine, as seed 004's two VMs: a network
//! namespace per host, joined by veths to a bridge in an "underlay"
//! namespace, each host with a member of one real etcd cluster (Debian's
//! `etcd-server`) and, when asked, a warren daemon of its own.
//!
//! ```text
//!   underlay netns: bridge ─┬─ veth ── host 0 netns  10.249.0.10  etcd h0, daemon 0
//!                           ├─ veth ── host 1 netns  10.249.0.11  etcd h1, daemon 1
//!                           └─ veth ── host 2 netns  10.249.0.12  etcd h2, daemon 2
//! ```
//!
//! Every namespace exists only for the test, and each test has its own
//! (the same addresses in two tests never meet). Making namespaces and
//! veths needs root; etcd and the daemons run as the unprivileged test
//! user, with their data in the test's directory. Everything is killed
//! and deleted on drop.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::world::root;
use super::{test_ids, Env};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Host `i`'s address on the underlay.
pub fn host_addr(i: usize) -> String {
    format!("10.249.0.{}", 10 + i)
}

/// One host: its namespace, its etcd member, its warren installation.
pub struct Host {
    pub ns: String,
    pub addr: String,
    /// The host's warren installation (its own state and runtime dirs).
    pub env: Env,
    etcd: Option<Child>,
    daemon: Option<Child>,
}

/// The hosts and the underlay between them.
pub struct Hosts {
    pub hosts: Vec<Host>,
    underlay: String,
    /// `--initial-cluster` of the etcd members.
    initial: String,
    token: String,
}

impl Hosts {
    /// `n` hosts with an etcd member each, the etcd cluster answering.
    /// `None` unless the tests run as root (see [`super::skip`]).
    pub fn start(n: usize) -> Option<Hosts> {
        test_ids()?;
        let k = COUNTER.fetch_add(1, Ordering::SeqCst);
        let id = format!("{}{k}", std::process::id() % 100_000);
        let underlay = format!("warren-ul-{id}");
        root(&["ip", "netns", "add", &underlay]);
        let in_ul = |args: &[&str]| {
            let mut c = vec!["ip", "netns", "exec", &underlay];
            c.extend_from_slice(args);
            root(&c);
        };
        in_ul(&["ip", "link", "add", "br0", "type", "bridge"]);
        in_ul(&["ip", "link", "set", "br0", "up"]);
        let mut hosts = Vec::new();
        for i in 0..n {
            let ns = format!("warren-h{i}-{id}");
            root(&["ip", "netns", "add", &ns]);
            let (a, b) = (format!("hu{i}x{id}"), format!("hh{i}x{id}"));
            root(&["ip", "link", "add", &a, "type", "veth", "peer", "name", &b]);
            root(&["ip", "link", "set", &a, "netns", &underlay]);
            root(&["ip", "link", "set", &b, "netns", &ns]);
            in_ul(&["ip", "link", "set", &a, "master", "br0", "up"]);
            let addr = host_addr(i);
            for args in [
                vec!["ip", "link", "set", "lo", "up"],
                vec!["ip", "addr", "add", &format!("{addr}/24"), "dev", &b],
                vec!["ip", "link", "set", &b, "up"],
            ] {
                let mut c = vec!["ip", "netns", "exec", &ns];
                c.extend(args.iter().copied());
                root(&c);
            }
            hosts.push(Host {
                ns,
                addr,
                env: Env::new(),
                etcd: None,
                daemon: None,
            });
        }
        let initial = (0..n)
            .map(|i| format!("h{i}=http://{}:2380", host_addr(i)))
            .collect::<Vec<_>>()
            .join(",");
        let mut all = Hosts {
            hosts,
            underlay,
            initial,
            token: format!("warren-test-{id}"),
        };
        for i in 0..n {
            all.start_etcd(i, "new");
        }
        all.wait_etcd();
        Some(all)
    }

    /// `etcd://…` of every member, for `--cluster-store`.
    pub fn store(&self) -> String {
        let eps: Vec<String> = (0..self.hosts.len())
            .map(|i| format!("{}:2379", host_addr(i)))
            .collect();
        format!("etcd://{}", eps.join(","))
    }

    /// A command as root in host `i`'s namespace, dropping to the test
    /// user for `args` (with host `i`'s warren directories).
    pub fn user_cmd_in(&self, i: usize, args: &[&str]) -> Command {
        let (uid, gid) = test_ids().expect("root");
        let h = &self.hosts[i];
        let mut c = h.env.env_cmd("ip");
        c.args(["netns", "exec", &h.ns, "setpriv"])
            .arg(format!("--reuid={uid}"))
            .arg(format!("--regid={gid}"))
            .arg("--clear-groups")
            .arg("--")
            .args(args);
        c
    }

    /// Starts (or restarts, on its data) host `i`'s etcd member.
    pub fn start_etcd(&mut self, i: usize, state: &str) {
        let h = &self.hosts[i];
        let data = h.env.dir.join("etcd");
        let log = std::fs::File::create(h.env.dir.join("etcd.log")).unwrap();
        let addr = &h.addr;
        let child = self
            .user_cmd_in(
                i,
                &[
                    "etcd",
                    "--name",
                    &format!("h{i}"),
                    "--data-dir",
                    &data.display().to_string(),
                    "--listen-client-urls",
                    &format!("http://{addr}:2379"),
                    "--advertise-client-urls",
                    &format!("http://{addr}:2379"),
                    "--listen-peer-urls",
                    &format!("http://{addr}:2380"),
                    "--initial-advertise-peer-urls",
                    &format!("http://{addr}:2380"),
                    "--initial-cluster",
                    &self.initial,
                    "--initial-cluster-state",
                    state,
                    "--initial-cluster-token",
                    &self.token,
                    // Quick elections: the test's hosts share one machine.
                    "--heartbeat-interval",
                    "100",
                    "--election-timeout",
                    "1000",
                ],
            )
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("etcd (Debian's etcd-server; .ci/run installs it)");
        self.hosts[i].etcd = Some(child);
    }

    /// SIGKILLs host `i`'s etcd member.
    pub fn stop_etcd(&mut self, i: usize) {
        if let Some(mut c) = self.hosts[i].etcd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits until every member answers a health check with a leader.
    fn wait_etcd(&self) {
        let start = Instant::now();
        for i in 0..self.hosts.len() {
            let ok = Env::wait_until(Duration::from_secs(20), || {
                self.user_cmd_in(
                    i,
                    &[
                        "python3",
                        "-c",
                        &format!(
                            "import urllib.request,sys; r=urllib.request.urlopen('http://{}:2379/health',timeout=1).read(); sys.exit(0 if b'true' in r else 1)",
                            host_addr(i)
                        ),
                    ],
                )
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
            });
            let log =
                std::fs::read_to_string(self.hosts[i].env.dir.join("etcd.log")).unwrap_or_default();
            assert!(ok, "etcd member h{i} never became healthy:\n{log}");
        }
        eprintln!(
            "etcd cluster of {} healthy in {:?}",
            self.hosts.len(),
            start.elapsed()
        );
    }

    /// Starts host `i`'s daemon in its namespace with `extra` flags, and
    /// waits until it answers.
    pub fn start_daemon(&mut self, i: usize, extra: &[&str]) {
        let h = &self.hosts[i];
        let log = std::fs::File::create(h.env.dir.join("daemon-host.log")).unwrap();
        let mut args = vec![super::warren_bin(), "daemon".to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let child = self
            .user_cmd_in(i, &args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.hosts[i].daemon = Some(child);
        let sock = self.hosts[i].env.runtime.join("warren.sock");
        let up = Env::wait_until(Duration::from_secs(20), || {
            sock.exists() && self.hosts[i].env.run(&["network", "ls"]).status.success()
        });
        assert!(
            up,
            "host {i}'s daemon did not come up:\n{}",
            self.daemon_log(i)
        );
    }

    /// Host `i`'s daemon joined to the cluster (TTL `ttl`).
    pub fn start_member(&mut self, i: usize, ttl: &str) {
        let store = self.store();
        let addr = self.hosts[i].addr.clone();
        self.start_daemon(
            i,
            &[
                "--cluster-store",
                &store,
                "--cluster-advertise",
                &addr,
                "--cluster-ttl",
                ttl,
            ],
        );
    }

    /// Sends `sig` to host `i`'s daemon and reaps it.
    pub fn signal_daemon(&mut self, i: usize, sig: nix::sys::signal::Signal) {
        if let Some(mut c) = self.hosts[i].daemon.take() {
            // `ip netns exec` execs setpriv, which execs warren: the child
            // is the daemon itself.
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), sig);
            let _ = c.wait();
        }
    }

    pub fn daemon_log(&self, i: usize) -> String {
        std::fs::read_to_string(self.hosts[i].env.dir.join("daemon-host.log")).unwrap_or_default()
    }

    /// `cluster ls -q` on host `i`: the members it lists, and whether it
    /// exited 0 (etcd answering).
    pub fn members(&self, i: usize) -> (Vec<String>, bool) {
        let out = self.hosts[i].env.run(&["cluster", "ls", "-q"]);
        let list = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        (list, out.status.success())
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for h in &mut self.hosts {
            for c in [h.daemon.take(), h.etcd.take()].into_iter().flatten() {
                let mut c = c;
                let _ = c.kill();
                let _ = c.wait();
            }
            let _ = Command::new("ip").args(["netns", "del", &h.ns]).status();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.underlay])
            .status();
    }
}
