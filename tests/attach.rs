//! End-to-end tests of `warren attach` and `warren detach` (issue 8, part 1):
//! namespaces a runner made with `unshare`, as the unprivileged test user,
//! handed to the daemon by pid or by path, reached by name from another
//! sandbox and through a published port from the host, and freed when their
//! process dies.

mod common;

use std::net::TcpListener;
use std::process::Child;
use std::time::Duration;

use common::{ask_local, free_port, tool, Env};

/// A process in fresh user + network namespaces the test made itself
/// (`unshare -Urn`, as a runner would), serving `port_server.py tcp PORT`.
/// Killed on drop.
struct Unshared(Child);

impl Unshared {
    fn serve(env: &Env, port: u16) -> Unshared {
        let server = tool("port_server.py");
        Unshared(common::unshared(
            env,
            &["python3", &server, "tcp", &port.to_string()],
        ))
    }

    fn pid(&self) -> String {
        self.0.id().to_string()
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Unshared {
    fn drop(&mut self) {
        self.kill();
    }
}

fn names(env: &Env) -> String {
    env.ok(&["ps", "--format", "json"])
}

#[test]
fn attach_by_pid_reach_by_name_and_published_port_then_freed_on_exit() {
    let env = Env::new();
    env.ok(&["network", "create", "dev"]);
    let mut box1 = Unshared::serve(&env, 8000);
    let hp = free_port();
    let spec = format!("127.0.0.1:{hp}:8000");
    let pid = box1.pid();
    env.ok(&[
        "attach",
        "--pid",
        &pid,
        "--name",
        "box",
        "--network",
        "dev",
        "--network-alias",
        "shelf",
        "-p",
        &spec,
    ]);
    let ip = env.ip("box", "dev");
    assert!(env
        .ok(&["port", "box"])
        .contains(&format!("8000/tcp -> 127.0.0.1:{hp}")));

    // By name and alias from another sandbox on the network: the server
    // answers with the client's own address.
    env.start("client", &["dev"], &["sleep", "300"]);
    let client_ip = env.ip("client", "dev");
    let hosts = env.exec_ok("client", &["getent", "hosts", "box"]);
    assert!(hosts.starts_with(&ip), "{hosts}");
    assert!(env
        .exec_ok("client", &["getent", "hosts", "shelf.dev"])
        .starts_with(&ip));
    let fetch = "import socket,sys; s=socket.create_connection((sys.argv[1],8000),5); print(s.recv(100).decode())";
    let reply = env.exec_ok("client", &["python3", "-c", fetch, "box"]);
    assert!(
        reply.starts_with(&format!("you are {client_ip}:")),
        "{reply}"
    );

    // Through the published port from the host (loopback clients arrive
    // from the gateway's address).
    let gw = env.gateway("box", "dev");
    let mut got = None;
    assert!(Env::wait_until(Duration::from_secs(10), || {
        got = ask_local(hp).ok();
        got.is_some()
    }));
    assert!(got.unwrap().starts_with(&format!("you are {gw}:")));

    // The process exits: sandbox, name, address and host port go at once.
    box1.kill();
    Env::assert_freed_within_a_second("attached by pid: its name and host port", || {
        !names(&env).contains("\"box\"") && TcpListener::bind(("127.0.0.1", hp)).is_ok()
    });
    let gone = env.exec(
        "client",
        &[
            "python3",
            "-c",
            "import socket; socket.gethostbyname('box')",
        ],
    );
    assert!(!gone.status.success(), "the name box still resolves");
    // The address is free again: the next attach with it as --ip succeeds.
    let box2 = Unshared::serve(&env, 8000);
    env.ok(&[
        "attach",
        "--pid",
        &box2.pid(),
        "--name",
        "box",
        "--network",
        "dev",
        "--ip",
        &ip,
    ]);
    assert_eq!(env.ip("box", "dev"), ip);
}

#[test]
fn attach_by_netns_path_and_detach_leaves_the_process_running() {
    let env = Env::new();
    env.ok(&["network", "create", "dev"]);
    let mut runner = Unshared::serve(&env, 8000);
    let pid = runner.pid();
    let netns = format!("/proc/{pid}/ns/net");
    let userns = format!("/proc/{pid}/ns/user");
    let attach_by_path = || {
        env.ok(&[
            "attach",
            "--netns",
            &netns,
            "--userns",
            &userns,
            "--name",
            "byns",
            "--network",
            "dev",
        ])
    };
    attach_by_path();
    let ip = env.ip("byns", "dev");
    env.start("client", &["dev"], &["sleep", "300"]);
    assert!(env.ping("client", &ip));

    // detach takes the network away and nothing else.
    env.ok(&["detach", "byns"]);
    assert!(!names(&env).contains("\"byns\""));
    assert!(
        runner.0.try_wait().unwrap().is_none(),
        "detach killed the runner's process"
    );
    let links = env
        .user_cmd("nsenter")
        .args([
            "-U",
            "-n",
            "--preserve-credentials",
            "-t",
            &pid,
            "ip",
            "-o",
            "link",
        ])
        .output()
        .unwrap();
    let links = String::from_utf8_lossy(&links.stdout);
    assert!(!links.contains("eth0"), "eth0 left behind: {links}");
    assert!(!env.ping("client", &ip));

    // Attached again by path, then the namespace goes away with its last
    // process: the daemon notices without being told.
    attach_by_path();
    assert!(env.ping("client", &env.ip("byns", "dev")));
    runner.kill();
    Env::assert_freed_within_a_second("attached by netns path", || {
        !names(&env).contains("\"byns\"")
    });
}

#[test]
fn attach_refuses_what_it_cannot_do() {
    let env = Env::new();
    let runner = Unshared::serve(&env, 8000);
    let err = env.fail(&[
        "attach",
        "--pid",
        &runner.pid(),
        "--name",
        "h",
        "--network",
        "host",
    ]);
    assert!(err.contains("--network host"), "{err}");
    let err = env.fail(&[
        "attach",
        "--pid",
        &runner.pid(),
        "--name",
        "n",
        "--network",
        "none",
        "-p",
        "8080:80",
    ]);
    assert!(err.contains("-p needs a network"), "{err}");
    let err = env.fail(&["attach", "--pid", "999999999", "--name", "ghost"]);
    assert!(err.contains("999999999"), "{err}");
    assert!(!names(&env).contains("ghost"));
}
