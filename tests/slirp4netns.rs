//! End-to-end tests of `warren slirp4netns` (issue 8, part 3): the
//! slirp4netns-compatible mode, run as the unprivileged test user through a
//! symlink named `slirp4netns`, as podman and rootlesskit would run it.
//!
//! - The API socket is compared with the real `/usr/bin/slirp4netns`
//!   (1.2.0), side by side: the same requests to each, the replies equal
//!   byte for byte, and the forwards carry traffic in both.
//! - rootlesskit, with `--net=slirp4netns --port-driver=slirp4netns`, gives
//!   its child egress (the host's loopback at 10.0.2.2), DNS at 10.0.2.3 and
//!   a port published through the API socket.
//! - `--help`, the ready fd, the exit fd, SIGTERM and SIGKILL, `-c` and its
//!   absence, `--disable-host-loopback` and `--disable-dns`.
//! - The daemon's network options behind it, used directly.
//!
//! Every process is bounded in time and killed on drop; traffic stays on
//! loopback and in namespaces the test made.

mod common;

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::upstream::{Reply, Upstream};
use common::{free_port, tool, Env};
use hickory_proto::rr::RecordType;

const REAL: &str = "/usr/bin/slirp4netns";

/// A process in fresh user and network namespaces (`unshare -rn`, as a
/// runner makes them), as the test user. Killed on drop.
struct Target {
    child: Child,
    /// Servers started inside, killed on drop too.
    inside: Vec<Child>,
}

impl Target {
    fn start(env: &Env) -> Target {
        let child = common::unshared(env, &["sleep", "300"]);
        Target {
            child,
            inside: Vec::new(),
        }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// A command run inside the target's namespaces, in a process group
    /// of its own (see [`common::kill_group`]).
    fn cmd(&self, env: &Env, script: &str) -> Command {
        let mut c = env.user_cmd("nsenter");
        c.args(["-t", &self.pid(), "-U", "-n", "--preserve-credentials"])
            .args(["timeout", "20", "sh", "-c", script])
            .process_group(0);
        c
    }

    fn sh(&self, env: &Env, script: &str) -> (bool, String) {
        let out = self.cmd(env, script).output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// Starts `script` inside, in the background, until the target goes.
    fn spawn(&mut self, env: &Env, script: &str) {
        let child = self
            .cmd(env, script)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.inside.push(child);
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        for c in &mut self.inside {
            common::kill_group(c);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running slirp4netns (the real one or warren's), started the way
/// podman does: `-r 3 -e 4`, fd 3 a file that receives "1", fd 4 the read
/// end of a FIFO whose write end the test holds. Killed on drop.
struct Instance {
    child: Child,
    exit: Option<File>,
    log: PathBuf,
}

impl Instance {
    fn start(env: &Env, bin: &Path, args: &[&str], target: &Target) -> Instance {
        Instance::start_at(env, bin, args, &[&target.pid(), "tap0"])
    }

    /// As [`Instance::start`], with the positional arguments given.
    fn start_at(env: &Env, bin: &Path, args: &[&str], positional: &[&str]) -> Instance {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let ready = env.dir.join(format!("ready-{n}"));
        let fifo = env.dir.join(format!("exit-{n}"));
        let log = env.dir.join(format!("slirp-{n}.log"));
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o666)).unwrap();
        std::fs::set_permissions(&fifo, std::fs::Permissions::from_mode(0o666)).unwrap();
        // Read and write: opening does not wait for the reader, and this is
        // the only writer, so dropping it hangs the reader up.
        let exit = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&fifo)
            .unwrap();
        let logf = File::create(&log).unwrap();
        let script = r#"exec 3>"$1" 4<"$2"; bin="$3"; shift 3; exec "$bin" -r 3 -e 4 "$@""#;
        let child = env
            .user_cmd("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .arg(&ready)
            .arg(&fifo)
            .arg(bin)
            .args(args)
            .args(positional)
            .stdout(logf.try_clone().unwrap())
            .stderr(logf)
            .spawn()
            .unwrap();
        let mut inst = Instance {
            child,
            exit: Some(exit),
            log,
        };
        let up = Env::wait_until(Duration::from_secs(20), || {
            std::fs::read_to_string(&ready).is_ok_and(|r| r == "1")
                || inst.child.try_wait().ok().flatten().is_some()
        });
        assert!(
            up && std::fs::read_to_string(&ready).unwrap() == "1",
            "{} did not say ready:\n{}\ndaemon:\n{}",
            bin.display(),
            inst.log_text(),
            env.daemon_log_tail()
        );
        inst
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the process to end; its exit status code.
    /// The instance exits with status 0 within 10 s (its log if not).
    fn assert_exits_cleanly(&mut self) {
        let code = self.wait_exit(Duration::from_secs(10));
        assert_eq!(code, Some(0), "{}", self.log_text());
    }

    fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One API request on a fresh connection (written, then half-closed, as
/// rootlesskit does); the whole reply.
fn ask(sock: &Path, request: &[u8]) -> Vec<u8> {
    let mut s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(request);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// Sends "ping" to 127.0.0.1:PORT and returns what comes back.
fn echo(port: u16) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(
        &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        Duration::from_secs(3),
    )?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"ping")?;
    s.shutdown(std::net::Shutdown::Write)?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn networks(env: &Env) -> Vec<String> {
    env.json(&["network", "ls", "--format", "json"])
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["Name"].as_str().unwrap().to_string())
        .collect()
}

fn sandboxes(env: &Env) -> Vec<String> {
    env.json(&["ps", "--format", "json"])
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["Names"].as_str().unwrap().to_string())
        .collect()
}

/// Whether warren holds nothing for the instance with pid `pid`.
fn all_gone(env: &Env, pid: u32) -> bool {
    let name = format!("slirp4netns-{pid}");
    !networks(env).contains(&name) && !sandboxes(env).contains(&name)
}

/// Kills an instance (SIGKILL) and waits until the daemon freed its
/// network and sandbox, so the next one can make its TAP.
fn kill_and_wait(env: &Env, inst: Instance) {
    let pid = inst.pid();
    drop(inst);
    Env::assert_freed_within_a_second("a killed instance's network and sandbox", || {
        all_gone(env, pid)
    });
}

#[test]
fn api_replies_match_real_slirp4netns_byte_for_byte() {
    let env = Env::new();
    let link = env.slirp_link();
    let (tcp_port, udp_port) = (free_port(), free_port());
    let add = |args: &str| format!(r#"{{"execute":"add_hostfwd","arguments":{{{args}}}}}"#);
    let requests: Vec<Vec<u8>> = [
        r#"{"execute":"list_hostfwd"}"#.to_string(),
        add(&format!(
            r#""proto":"tcp","host_addr":"127.0.0.1","host_port":{tcp_port},"guest_addr":"10.0.2.100","guest_port":80"#
        )),
        add(&format!(r#""proto":"udp","host_port":{udp_port},"guest_port":53"#)),
        r#"{"execute":"list_hostfwd"}"#.to_string(),
        // The same host port again, and the wildcard over it.
        add(&format!(
            r#""proto":"tcp","host_addr":"127.0.0.1","host_port":{tcp_port},"guest_port":81"#
        )),
        add(&format!(r#""proto":"tcp","host_port":{tcp_port},"guest_port":81"#)),
        // Missing and wrong fields.
        add(r#""proto":"tcp","guest_port":80"#),
        add(&format!(r#""proto":"tcp","host_port":{tcp_port}"#)),
        add(r#""proto":"sctp","host_port":1,"guest_port":1"#),
        add(r#""proto":"tcp","host_addr":"localhost","host_port":1,"guest_port":1"#),
        add(r#""proto":"tcp","host_port":"8080","guest_port":1"#),
        r#"{"execute":"remove_hostfwd","arguments":{"id":1}}"#.to_string(),
        r#"{"execute":"remove_hostfwd","arguments":{"id":1}}"#.to_string(),
        r#"{"execute":"remove_hostfwd","arguments":{"id":42}}"#.to_string(),
        r#"{"execute":"remove_hostfwd"}"#.to_string(),
        r#"{"execute":"list_hostfwd"}"#.to_string(),
        // Bad requests and unknown commands.
        "{bad".to_string(),
        String::new(),
        "[1]".to_string(),
        "null".to_string(),
        r#"{"execute":5}"#.to_string(),
        r#"{"arguments":{}}"#.to_string(),
        r#"{"execute":"foo"}"#.to_string(),
        r#"{"execute":"LIST_HOSTFWD"}"#.to_string(),
        // parson's grammar: trailing bytes ignored, duplicates refused, a
        // BOM skipped, `1.` a number, 01 not.
        r#"{"execute":"list_hostfwd"} trailing"#.to_string(),
        r#"{"execute":"list_hostfwd","execute":"x"}"#.to_string(),
        "\u{feff}{\"execute\":\"list_hostfwd\"}".to_string(),
        r#"{"execute":"list_hostfwd","n":1.}"#.to_string(),
        r#"{"execute":"list_hostfwd","n":01}"#.to_string(),
        r#"{"execute":"list_hostfwd",}"#.to_string(),
        format!(r#"{{"execute":"list_hostfwd","x":"{}"}}"#, "a".repeat(5000)),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect();
    // The request after which the forwards must carry traffic.
    const AFTER_ADDS: usize = 3;

    let mut replies: Vec<Vec<Vec<u8>>> = Vec::new();
    for bin in [Path::new(REAL), link.as_path()] {
        let mut target = Target::start(&env);
        let sock = env.dir.join(format!("api-{}.sock", target.pid()));
        let sock_arg = sock.display().to_string();
        let mut inst = Instance::start(&env, bin, &["-c", "--api-socket", &sock_arg], &target);
        target.spawn(&env, &format!("exec python3 {} 80", tool("tcp_echo.py")));
        let mut got = Vec::new();
        for (i, req) in requests.iter().enumerate() {
            got.push(ask(&sock, req));
            if i == AFTER_ADDS {
                let ok = Env::wait_until(Duration::from_secs(10), || {
                    echo(tcp_port).is_ok_and(|r| r == "PING")
                });
                assert!(
                    ok,
                    "{}: the forward carries no traffic:\n{}",
                    bin.display(),
                    inst.log_text()
                );
            }
        }
        // Both stop on the exit fd, and take their socket with them.
        inst.exit.take();
        inst.assert_exits_cleanly();
        assert!(!sock.exists(), "{} left its API socket", bin.display());
        replies.push(got);
    }
    let (real, ours) = (&replies[0], &replies[1]);
    for (i, req) in requests.iter().enumerate() {
        assert_eq!(
            String::from_utf8_lossy(&ours[i]),
            String::from_utf8_lossy(&real[i]),
            "request {i} {:?}",
            String::from_utf8_lossy(&req[..req.len().min(120)])
        );
    }
    // The shapes the brief names are among them, answered for real.
    assert_eq!(real[1], br#"{"return":{"id":1}}"#);
    assert!(real[3].starts_with(br#"{"entries":[{"id":1,"#));
    assert_eq!(real[11], br#"{"return":{}}"#);
    assert_eq!(
        real[16],
        br#"{"error":{"desc":"bad request: cannot parse JSON"}}"#
    );
    assert_eq!(
        real[22],
        br#"{"error":{"desc":"bad request: unknown execute"}}"#
    );
}

/// The upstream's answers: 198.51.100.9 for `*.slirp.test` (no data for
/// other types there), NXDOMAIN otherwise.
fn slirp_test(name: &str, qtype: RecordType) -> Reply {
    match (name.ends_with("slirp.test."), qtype) {
        (true, RecordType::A) => Reply::A("198.51.100.9".parse().unwrap()),
        (true, _) => Reply::NoData,
        (false, _) => Reply::NxDomain,
    }
}

/// Kills a process, and its process group if it was spawned in one of its
/// own, on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        common::kill_group(&mut self.0);
    }
}

#[test]
fn rootlesskit_egress_dns_and_port_driver() {
    if !Path::new("/usr/bin/rootlesskit").exists() {
        panic!("rootlesskit is needed: run scripts/install-deps");
    }
    let up = Upstream::start(slirp_test);
    let env = Env::new();
    env.start_daemon(&["--dns-upstream", &up.addr.to_string()]);
    let link = env.slirp_link();

    // A service on the host's loopback, for the child to reach at 10.0.2.2.
    let host = TcpListener::bind("127.0.0.1:0").unwrap();
    let egress_port = host.local_addr().unwrap().port();
    std::thread::spawn(move || {
        host.set_nonblocking(false).unwrap();
        if let Ok((mut c, _)) = host.accept() {
            let _ = c.write_all(b"hello-host");
        }
    });

    let state = env.dir.join("rootlesskit");
    let child_log = File::create(env.dir.join("rootlesskit.log")).unwrap();
    let mut rk = Killed(
        env.user_cmd("timeout")
            .process_group(0)
            .arg("60")
            .arg("rootlesskit")
            .arg("--state-dir")
            .arg(&state)
            .arg("--net=slirp4netns")
            .arg("--slirp4netns-binary")
            .arg(&link)
            .args(["--port-driver=slirp4netns", "--copy-up=/etc"])
            .args(["python3", &tool("slirp_child.py")])
            .arg(egress_port.to_string())
            .args(["name.slirp.test", "8080"])
            .stdout(Stdio::piped())
            .stderr(child_log)
            .spawn()
            .unwrap(),
    );
    let (tx, rx) = mpsc::channel();
    let stdout = rk.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let log = || std::fs::read_to_string(env.dir.join("rootlesskit.log")).unwrap_or_default();
    let next = |what: &str| -> String {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line,
            Err(_) => panic!(
                "the child said nothing while waiting for {what}; rootlesskit log:\n{}\ndaemon:\n{}",
                log(),
                env.daemon_log_tail()
            ),
        }
    };
    assert_eq!(next("egress"), "egress: hello-host", "{}", log());
    assert_eq!(next("dns"), "dns: 198.51.100.9", "{}", log());
    assert_eq!(next("listening"), "listening");

    // While it runs: one network and one sandbox named after the instance.
    let ours: Vec<String> = networks(&env)
        .into_iter()
        .filter(|n| n.starts_with("slirp4netns-"))
        .collect();
    assert_eq!(ours.len(), 1, "{:?}", networks(&env));
    assert!(sandboxes(&env).contains(&ours[0]));
    let inspect = env.json(&["network", "inspect", &ours[0]]);
    assert_eq!(inspect[0]["IPAM"]["Config"][0]["Subnet"], "10.0.2.0/24");
    assert_eq!(inspect[0]["IPAM"]["Config"][0]["Gateway"], "10.0.2.2");

    // rootlesskit's slirp4netns port driver publishes through the API socket.
    let host_port = free_port();
    let out = env
        .user_cmd("rootlessctl")
        .arg("--socket")
        .arg(state.join("api.sock"))
        .args(["add-ports", &format!("127.0.0.1:{host_port}:8080/tcp")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "rootlessctl add-ports: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let ports = env.ok(&["port", &ours[0]]);
    assert!(
        ports.contains(&format!("8080/tcp -> 127.0.0.1:{host_port}")),
        "{ports}"
    );
    let mut c = TcpStream::connect(("127.0.0.1", host_port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = String::new();
    let _ = c.read_to_string(&mut got);
    assert_eq!(got, "from-child");
    assert_eq!(next("served"), "served");

    // The child is done, rootlesskit ends its slirp4netns (SIGKILL): the
    // network and the sandbox go with it.
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end && rk.0.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        rk.0.try_wait().unwrap().is_some(),
        "rootlesskit did not end"
    );
    assert!(
        Env::wait_until(Duration::from_secs(10), || !networks(&env)
            .contains(&ours[0])
            && !sandboxes(&env).contains(&ours[0])),
        "{} outlived rootlesskit",
        ours[0]
    );
}

#[test]
fn help_ready_fd_exit_fd_signals_and_configuration() {
    let env = Env::new();
    let link = env.slirp_link();

    // --help, byte for byte the real one's but for the program name.
    let real = env.user_cmd(REAL).arg("--help").output().unwrap();
    let ours = env.user_cmd(&link).arg("--help").output().unwrap();
    assert!(real.status.success() && ours.status.success());
    let real_text =
        String::from_utf8(real.stdout)
            .unwrap()
            .replacen(REAL, &link.display().to_string(), 1);
    assert_eq!(String::from_utf8(ours.stdout).unwrap(), real_text);
    assert!(env
        .ok(&["slirp4netns", "--help"])
        .starts_with("Usage: warren slirp4netns [OPTION]... PID|PATH [TAPNAME]\n"));
    let v = env.user_cmd(&link).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("slirp4netns version 1.2.0\n"));
    // Usage errors: status 1 and the usage, as the real one.
    for bad in [&["-e", "x", "1", "tap0"][..], &["--mtu", "0", "1"], &[]] {
        let r = env.user_cmd(REAL).args(bad).output().unwrap();
        let o = env.user_cmd(&link).args(bad).output().unwrap();
        assert_eq!(o.status.code(), r.status.code(), "{bad:?}");
        assert_eq!(o.status.code(), Some(1), "{bad:?}");
        assert!(String::from_utf8_lossy(&o.stdout).starts_with("Usage: "));
    }

    // -c: the TAP configured as asked, the gateway and DNS answer; ready
    // was said only then; the exit fd ends it and everything goes.
    let target = Target::start(&env);
    let mut inst = Instance::start(
        &env,
        &link,
        &["-c", "-m", "1400", "--macaddress", "02:aa:bb:cc:dd:ee"],
        &target,
    );
    let name = format!("slirp4netns-{}", inst.pid());
    assert!(networks(&env).contains(&name));
    assert!(sandboxes(&env).contains(&name));
    let (ok, text) = target.sh(
        &env,
        "ip -o -4 addr show tap0; ip route; ip -o link show tap0",
    );
    assert!(ok, "{text}");
    assert!(text.contains("inet 10.0.2.100/24"), "{text}");
    assert!(text.contains("default via 10.0.2.2 dev tap0"), "{text}");
    assert!(text.contains("mtu 1400"), "{text}");
    assert!(text.contains("link/ether 02:aa:bb:cc:dd:ee"), "{text}");
    for ip in ["10.0.2.2", "10.0.2.3"] {
        let (ok, text) = target.sh(&env, &format!("ping -c 1 -W 2 {ip}"));
        assert!(ok, "ping {ip}: {text}");
    }
    inst.exit.take();
    inst.assert_exits_cleanly();
    assert!(
        all_gone(&env, inst.pid()),
        "{:?} {:?}",
        networks(&env),
        sandboxes(&env)
    );
    let (_, text) = target.sh(&env, "ip -o link show");
    assert!(
        !text.contains("tap0"),
        "the TAP outlived the instance: {text}"
    );

    // SIGTERM: the same clean end.
    let mut inst = Instance::start(&env, &link, &["-c"], &target);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(inst.pid() as i32),
        nix::sys::signal::SIGTERM,
    )
    .unwrap();
    inst.assert_exits_cleanly();
    assert!(all_gone(&env, inst.pid()));

    // SIGKILL: nothing cleans up in the instance; the daemon does (the
    // network is owned by the instance's pid).
    let mut inst = Instance::start(&env, &link, &["-c"], &target);
    assert!(sandboxes(&env).contains(&format!("slirp4netns-{}", inst.pid())));
    let _ = inst.child.kill();
    let _ = inst.child.wait();
    let pid = inst.pid();
    Env::assert_freed_within_a_second("a SIGKILLed instance's network and sandbox", || {
        all_gone(&env, pid)
    });
    assert!(Env::wait_until(Duration::from_secs(5), || !target
        .sh(&env, "ip -o link show")
        .1
        .contains("tap0")));

    // Without -c the TAP is made (with the MAC the switch expects) and
    // left to the runner: no address, not up.
    let inst = Instance::start(&env, &link, &[], &target);
    let (ok, text) = target.sh(&env, "ip -o -4 addr show tap0; ip -o link show tap0");
    assert!(ok, "{text}");
    assert!(!text.contains("inet "), "{text}");
    assert!(!text.contains(",UP"), "{text}");
    assert!(text.contains("link/ether 02:42:0a:00:02:64"), "{text}");
    kill_and_wait(&env, inst);

    // Host loopback at 10.0.2.2 by default, refused with
    // --disable-host-loopback; DNS at 10.0.2.3 unless --disable-dns.
    let host = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = host.local_addr().unwrap().port();
    std::thread::spawn(move || {
        while let Ok((mut c, _)) = host.accept() {
            let _ = c.write_all(b"host");
        }
    });
    let connect = format!(
        "python3 -c 'import socket; s=socket.create_connection((\"10.0.2.2\",{port}),timeout=3); print(s.recv(9).decode())'"
    );
    // A query for ward.test; any answer will do (the harness's upstream
    // refuses, so it is a SERVFAIL).
    let dns = "python3 -c 'import socket, struct; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(2); \
               q=struct.pack(\">HHHHHH\",0x1234,256,1,0,0,0)+bytes([4])+b\"ward\"+bytes([4])+b\"test\"+bytes([0])+struct.pack(\">HH\",1,1); \
               s.sendto(q,(\"10.0.2.3\",53)); print(len(s.recv(512)))'";
    let inst = Instance::start(&env, &link, &["-c"], &target);
    let (ok, text) = target.sh(&env, &connect);
    assert!(
        ok && text.trim() == "host",
        "host loopback at 10.0.2.2: {text}"
    );
    let (ok, text) = target.sh(&env, dns);
    assert!(ok, "DNS at 10.0.2.3: {text}");
    kill_and_wait(&env, inst);
    // With --disable-host-loopback, TCP to 10.0.2.2 fails at once with
    // "Network is unreachable" (ICMP net unreachable) and a UDP datagram
    // gets no answer: the real slirp4netns's answers, asked the same way
    // of both.
    let probe = format!(
        "python3 -c '\nimport socket\ntry:\n    socket.create_connection((\"10.0.2.2\",{port}),timeout=3); print(\"tcp connected\")\n\
         except OSError as e: print(\"tcp\", e.errno)\nu=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); u.settimeout(1); u.connect((\"10.0.2.2\",{port}))\n\
         u.send(b\"x\")\ntry:\n    u.recv(9); print(\"udp answered\")\nexcept OSError as e: print(\"udp\", type(e).__name__)\n'"
    );
    let mut seen = Vec::new();
    for bin in [Path::new(REAL), link.as_path()] {
        let target = Target::start(&env);
        let inst = Instance::start(
            &env,
            bin,
            &["-c", "--disable-host-loopback", "--disable-dns"],
            &target,
        );
        let started = Instant::now();
        let (_, text) = target.sh(&env, &probe);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{}: not at once: {text}",
            bin.display()
        );
        if bin == link.as_path() {
            let (ok, text) = target.sh(&env, dns);
            assert!(!ok, "no DNS with --disable-dns: {text}");
        }
        kill_and_wait(&env, inst);
        seen.push(text.trim().to_string());
    }
    assert_eq!(seen[0], "tcp 101\nudp TimeoutError", "the real slirp4netns");
    assert_eq!(seen[1], seen[0], "warren slirp4netns");
}

#[test]
fn a_netns_path_as_podman_gives_it() {
    // podman: `--netns-type=path PATH tap0` with -c, -e and -r; the path
    // may live in podman's own mount namespace, so the instance opens it
    // and the daemon reaches it through the instance's fd.
    let env = Env::new();
    let link = env.slirp_link();
    let target = Target::start(&env);
    let netns = format!("/proc/{}/ns/net", target.pid());
    let mut inst = Instance::start_at(
        &env,
        &link,
        &[
            "--disable-host-loopback",
            "--mtu=65520",
            "--enable-sandbox",
            "--enable-seccomp",
            "-c",
        ],
        &["--netns-type=path", &netns, "tap0"],
    );
    let name = format!("slirp4netns-{}", inst.pid());
    assert!(sandboxes(&env).contains(&name), "{}", inst.log_text());
    let (ok, text) = target.sh(&env, "ip -o -4 addr show tap0; ping -c 1 -W 2 10.0.2.3");
    assert!(ok && text.contains("inet 10.0.2.100/24"), "{text}");
    inst.exit.take();
    inst.assert_exits_cleanly();
    assert!(all_gone(&env, inst.pid()));
    // And a SIGKILLed one: the path through its fd dies with it.
    let inst = Instance::start_at(&env, &link, &["-c"], &["--netns-type=path", &netns, "tap0"]);
    kill_and_wait(&env, inst);
}

/// A network `name` on `subnet` owned (`owner-pid`) by a new process of
/// the test's unprivileged user; killing the process is the test's to do.
fn owned_network(env: &Env, subnet: &str, name: &str) -> Killed {
    let owner = Killed(
        env.user_cmd("sleep")
            .arg("120")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let owner_pid = format!("owner-pid={}", owner.0.id());
    env.ok(&[
        "network", "create", "--subnet", subnet, "--opt", &owner_pid, name,
    ]);
    owner
}

#[test]
fn network_options_behind_the_mode() {
    let env = Env::new();
    // dns-address: a second gateway address, never handed out, where DNS
    // is served (a `run` sandbox's resolv.conf names 127.0.0.11, as
    // Docker's; an attached one is pointed at the dns-address).
    env.ok(&[
        "network",
        "create",
        "--subnet",
        "10.77.0.0/24",
        "--opt",
        "dns-address=10.77.0.3",
        "dns3",
    ]);
    let inspect = env.json(&["network", "inspect", "dns3"]);
    assert_eq!(
        inspect[0]["IPAM"]["Config"][0]["AuxiliaryAddresses"]["dns-address"],
        "10.77.0.3"
    );
    env.start("d1", &["dns3"], &["sleep", "120"]);
    let resolv = env.exec_ok("d1", &["cat", "/etc/resolv.conf"]);
    assert!(resolv.contains("nameserver 127.0.0.11"), "{resolv}");
    env.start("d2", &["dns3"], &["sleep", "120"]);
    let out = env.exec_ok(
        "d1",
        &[
            "dig",
            "@10.77.0.3",
            "+short",
            "+tries=1",
            "+timeout=5",
            "d2",
        ],
    );
    assert_eq!(
        out.trim(),
        env.ip("d2", "dns3"),
        "a local name resolved at .3"
    );
    assert!(env.ping("d1", "10.77.0.3"));
    for e in ["d1", "d2"] {
        assert_ne!(env.ip(e, "dns3"), "10.77.0.3");
    }

    // Refusals name the problem.
    for (opt, why) in [
        ("dns-address=10.78.0.3", "not in subnet"),
        ("dns-address=10.79.0.1", "gateway"),
        ("dns=maybe", "invalid --opt dns"),
        ("host-loopback=sometimes", "invalid --opt host-loopback"),
        ("outbound-address=203.0.113.9", "outbound-address"),
        ("owner-pid=999999999", "no process"),
        ("allow-overlap=perhaps", "invalid --opt allow-overlap"),
    ] {
        let subnet = if opt.contains("10.79.") {
            "10.79.0.0/24"
        } else {
            "10.78.1.0/24"
        };
        let err = env.fail(&["network", "create", "--subnet", subnet, "--opt", opt, "bad"]);
        assert!(err.contains(why), "{opt}: {err}");
    }
    env.ok(&[
        "network",
        "create",
        "--opt",
        "outbound-address=127.0.0.1",
        "--opt",
        "host-loopback=gateway",
        "ok1",
    ]);

    // allow-overlap: a subnet taken is refused, unless either side allows it;
    // a sandbox is never on two overlapping networks.
    let err = env.fail(&["network", "create", "--subnet", "10.77.0.0/24", "twin"]);
    assert!(err.contains("overlaps"), "{err}");
    env.ok(&[
        "network",
        "create",
        "--subnet",
        "10.77.0.0/24",
        "--opt",
        "allow-overlap=true",
        "twin",
    ]);
    let err = env.fail(&["network", "connect", "twin", "d1"]);
    assert!(err.contains("overlaps"), "{err}");

    // owner-pid: the network goes when its owner does; a sandbox of
    // `warren run` on it is only disconnected.
    let mut owner = owned_network(&env, "10.76.0.0/24", "owned");
    env.ok(&["network", "connect", "owned", "d2"]);
    let _ = owner.0.kill();
    let _ = owner.0.wait();
    Env::assert_freed_within_a_second("a network whose owner-pid died", || {
        !networks(&env).contains(&"owned".to_string())
    });
    assert!(sandboxes(&env).contains(&"d2".to_string()));
    let nets = env.inspect("d2")["NetworkSettings"]["Networks"].clone();
    assert!(
        nets.get("owned").is_none() && nets.get("dns3").is_some(),
        "{nets}"
    );

    // An owner that dies while no daemon runs: the next daemon removes the
    // network at start.
    let mut owner = owned_network(&env, "10.75.0.0/24", "owned2");
    let daemon = env.daemon_pid().expect("daemon pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon),
        nix::sys::signal::SIGKILL,
    )
    .unwrap();
    let gone = Env::wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(format!("/proc/{daemon}/stat")).map_or(true, |s| s.contains(") Z"))
    });
    assert!(gone, "the daemon did not die");
    let _ = owner.0.kill();
    let _ = owner.0.wait();
    assert!(
        !networks(&env).contains(&"owned2".to_string()),
        "the next daemon kept a network whose owner died meanwhile"
    );
    assert!(networks(&env).contains(&"dns3".to_string()));
}

#[test]
fn several_instances_at_once_on_the_same_subnet() {
    // podman runs one slirp4netns per rootless container, every one on
    // 10.0.2.0/24 with the address 10.0.2.100: each instance gets a
    // network of its own, they work side by side, traffic never crosses,
    // and one's end leaves the others alone.
    const N: usize = 3;
    let env = Env::new();
    let link = env.slirp_link();
    let host = TcpListener::bind("127.0.0.1:0").unwrap();
    let host_port = host.local_addr().unwrap().port();
    std::thread::spawn(move || {
        while let Ok((mut c, _)) = host.accept() {
            let _ = c.write_all(b"host");
        }
    });
    let mut targets: Vec<Target> = (0..N).map(|_| Target::start(&env)).collect();
    let socks: Vec<PathBuf> = (0..N)
        .map(|i| env.dir.join(format!("several-{i}.sock")))
        .collect();
    let mut instances: Vec<Option<Instance>> = targets
        .iter()
        .zip(&socks)
        .map(|(t, sock)| {
            let sock = sock.display().to_string();
            Some(Instance::start(
                &env,
                &link,
                &["-c", "--api-socket", &sock],
                t,
            ))
        })
        .collect();
    let pids: Vec<u32> = instances.iter().flatten().map(Instance::pid).collect();
    let nets = networks(&env);
    for pid in &pids {
        assert!(nets.contains(&format!("slirp4netns-{pid}")), "{nets:?}");
    }
    // Each: a server of its own on port 80 saying which it is, and a
    // forward from a host port of its own.
    let forwards: Vec<u16> = (0..N).map(|_| free_port()).collect();
    for (i, t) in targets.iter_mut().enumerate() {
        let server = format!(
            "exec python3 -c 'import socket\n\
             s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
             s.bind((\"0.0.0.0\", 80)); s.listen(16)\n\
             while True:\n\
             \x20   c, _ = s.accept(); c.sendall(b\"target-{i}\"); c.close()'"
        );
        t.spawn(&env, &server);
    }
    for (i, sock) in socks.iter().enumerate() {
        let add = format!(
            r#"{{"execute":"add_hostfwd","arguments":{{"proto":"tcp","host_addr":"127.0.0.1","host_port":{},"guest_port":80}}}}"#,
            forwards[i]
        );
        let reply = ask(sock, add.as_bytes());
        assert!(
            reply.starts_with(br#"{"return":{"id":"#),
            "instance {i}: {}",
            String::from_utf8_lossy(&reply)
        );
    }
    let fetch = |port: u16| -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        (!out.is_empty()).then_some(out)
    };
    let reach_host = format!(
        "python3 -c 'import socket; s=socket.create_connection((\"10.0.2.2\",{host_port}),timeout=3); print(s.recv(9).decode())'"
    );
    let check = |i: usize, t: &Target| {
        let (ok, text) = t.sh(
            &env,
            "ip -o -4 addr show tap0; ping -c 1 -W 2 10.0.2.2 && ping -c 1 -W 2 10.0.2.3",
        );
        assert!(
            ok && text.contains("inet 10.0.2.100/24"),
            "instance {i}: {text}"
        );
        let (ok, text) = t.sh(&env, &reach_host);
        assert!(
            ok && text.trim() == "host",
            "instance {i}, the host: {text}"
        );
        let mut got = None;
        let up = Env::wait_until(Duration::from_secs(10), || {
            got = fetch(forwards[i]);
            got.is_some()
        });
        assert!(up, "instance {i}: its forward carries nothing");
        assert_eq!(
            got.as_deref(),
            Some(format!("target-{i}").as_str()),
            "instance {i}'s forward reached another target"
        );
    };
    for (i, t) in targets.iter().enumerate() {
        check(i, t);
    }
    // The first goes (SIGKILL): its network and sandbox with it, its
    // forward closes, the others carry on.
    kill_and_wait(&env, instances[0].take().unwrap());
    assert!(
        Env::wait_until(Duration::from_secs(5), || TcpListener::bind((
            "127.0.0.1",
            forwards[0]
        ))
        .is_ok()),
        "the killed instance's host port is still bound"
    );
    for (i, t) in targets.iter().enumerate().skip(1) {
        check(i, t);
    }
    // And a new instance for the first target takes the same subnet again.
    let again = Instance::start(&env, &link, &["-c"], &targets[0]);
    let (ok, text) = targets[0].sh(&env, "ping -c 1 -W 2 10.0.2.2");
    assert!(ok, "a new instance beside the others: {text}");
    for inst in instances.iter_mut().skip(1) {
        let mut inst = inst.take().unwrap();
        inst.exit.take();
        inst.assert_exits_cleanly();
        assert!(all_gone(&env, inst.pid()));
    }
    kill_and_wait(&env, again);
}
