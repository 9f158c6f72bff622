//! "The outside world" as a network namespace the test makes, and a daemon
//! in a namespace of its own joined to it by a veth pair.
//!
//! ```text
//!  world netns (ip netns)            daemon netns (unshare -n)
//!  10.250.0.1/24 ── veth ─────────── 10.250.0.2/24 (+ [`World::add_daemon_address`])
//!  (+ addresses on lo: [`World::add_world_address`])   default route via 10.250.0.1
//! ```
//!
//! The daemon's host sockets then reach the world over the daemon
//! namespace's own routing, as on a real host reaching the Internet, and a
//! server in the world sees the daemon namespace's address as the source.
//! Both namespaces exist only for the test: no packet reaches the machine's
//! own network. Needs root (to make namespaces and veths); the daemon
//! itself still runs as the unprivileged test user.

use std::process::{Child, Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::Env;

/// The PATH of the commands run as root here.
const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The world namespace's address on the veth.
pub const WORLD_ADDR: &str = "10.250.0.1";
/// The daemon namespace's address on the veth: the source a world server
/// sees for the daemon's host sockets.
pub const DAEMON_ADDR: &str = "10.250.0.2";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A daemon in its own network namespace and a world namespace beside it;
/// both go on drop (the daemon killed, the world namespace deleted).
pub struct World {
    daemon: Child,
    /// The world namespace's name (for `ip netns exec`).
    pub ns: String,
    /// The pid of the daemon namespace's first process (for `nsenter`).
    pub pid: String,
    /// The daemon namespace's end of the veth.
    daemon_dev: String,
}

impl World {
    /// Starts `env`'s daemon in a namespace of its own (`prelude` runs there
    /// first, as [`Env::start_daemon_in_netns`]), makes the world namespace
    /// and the veth between them, and gives the daemon namespace a default
    /// route into the world. `None` unless the tests run as root.
    pub fn start(env: &Env, prelude: &str) -> Option<World> {
        let daemon = env.start_daemon_in_netns(prelude)?;
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let id = format!("{}{n}", std::process::id() % 100_000);
        let (a, b) = (format!("wwa{id}"), format!("wwb{id}"));
        let world = World {
            pid: daemon.id().to_string(),
            daemon,
            ns: format!("warren-world-{id}"),
            daemon_dev: b.clone(),
        };
        root(&["ip", "netns", "add", &world.ns]);
        root(&["ip", "link", "add", &a, "type", "veth", "peer", "name", &b]);
        root(&["ip", "link", "set", &a, "netns", &world.ns]);
        root(&["ip", "link", "set", &b, "netns", &world.pid]);
        world.in_world(&["ip", "addr", "add", &format!("{WORLD_ADDR}/24"), "dev", &a]);
        world.in_world(&["ip", "link", "set", &a, "up"]);
        world.in_world(&["ip", "link", "set", "lo", "up"]);
        world.in_daemon_ns(&["ip", "addr", "add", &format!("{DAEMON_ADDR}/24"), "dev", &b]);
        world.in_daemon_ns(&["ip", "link", "set", &b, "up"]);
        world.in_daemon_ns(&["ip", "route", "add", "default", "via", WORLD_ADDR]);
        Some(world)
    }

    /// `args` as root in the world namespace; must succeed.
    pub fn in_world(&self, args: &[&str]) -> String {
        let mut cmd = vec!["ip", "netns", "exec", &self.ns];
        cmd.extend_from_slice(args);
        root(&cmd)
    }

    /// A command (not yet run) as root in the world namespace.
    pub fn world_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns])
            .args(args)
            .env_clear()
            .env("PATH", SYSTEM_PATH);
        c
    }

    /// `args` as root in the daemon's namespace; must succeed.
    pub fn in_daemon_ns(&self, args: &[&str]) -> String {
        let mut cmd = vec!["nsenter", "-t", &self.pid, "-n"];
        cmd.extend_from_slice(args);
        root(&cmd)
    }

    /// An address (`/32`) on the world's loopback, reached from the daemon
    /// namespace only through its default route.
    pub fn add_world_address(&self, ip: &str) {
        self.in_world(&["ip", "addr", "add", &format!("{ip}/32"), "dev", "lo"]);
    }

    /// A second address of the daemon namespace on the veth (same /24).
    pub fn add_daemon_address(&self, ip: &str) {
        let dev = self.daemon_dev.clone();
        self.in_daemon_ns(&["ip", "addr", "add", &format!("{ip}/24"), "dev", &dev]);
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.ns])
            .env("PATH", SYSTEM_PATH)
            .status();
    }
}

/// Runs `args` as whoever runs the tests (root), with the system PATH;
/// must succeed; returns stdout.
pub fn root(args: &[&str]) -> String {
    let out: Output = Command::new(args[0])
        .args(&args[1..])
        .env("PATH", SYSTEM_PATH)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
