//! `warren run` as Docker users type it (issue 18): the first word that is
//! not an option starts the command, with or without `--`; Docker options
//! warren does not take are refused by name with 125; `-e`, `--env-file`,
//! `-w`, `--init`, `--rm` work as Docker documents them; exit codes are
//! Docker's (125 warren's own errors, 126 not runnable, 127 not found);
//! `--add-host`, `--label`, `--dns*`, `--expose`/`-P` and `--link` as
//! Docker documents them.

mod common;

use std::time::Duration;

use common::upstream::{Reply, Upstream};
use common::{tool, Env};

fn code(env: &Env, args: &[&str]) -> (Option<i32>, String, String) {
    let out = env.run(args);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_flag_is_never_the_command() {
    let env = Env::new();
    // Without `--`: options first, then the command with its own options.
    let (c, out, err) = code(
        &env,
        &[
            "run",
            "--rm",
            "-e",
            "FOO=bar",
            "sh",
            "-c",
            "echo $FOO; exit 4",
        ],
    );
    assert_eq!(c, Some(4), "{err}");
    assert_eq!(out, "bar\n");
    // An option after the command's first word is the command's.
    let (c, out, _) = code(&env, &["run", "--rm", "echo", "--rm", "-e"]);
    assert_eq!(c, Some(0));
    assert_eq!(out, "--rm -e\n");
    // An unknown option is an error that names it, never a command.
    let (c, _, err) = code(&env, &["run", "--bogus", "true"]);
    assert_eq!(c, Some(125), "{err}");
    assert!(err.contains("--bogus"), "{err}");
    assert!(!err.contains("cannot run"), "{err}");
    // Docker's statuses for a command that cannot run.
    assert_eq!(
        code(&env, &["run", "--rm", "no-such-command-here"]).0,
        Some(127)
    );
    assert_eq!(code(&env, &["run", "--rm", "/etc/hostname"]).0, Some(126));
    // Usage errors of other commands are 125 too, help is 0.
    assert_eq!(code(&env, &["network", "create"]).0, Some(125));
    assert_eq!(code(&env, &["run", "--help"]).0, Some(0));
}

#[test]
fn docker_options_warren_does_not_take_are_refused_by_name() {
    let env = Env::new();
    for (args, name) in [
        (vec!["-v", "/tmp:/data"], "-v/--volume"),
        (vec!["--mount", "type=bind,src=/tmp,dst=/data"], "--mount"),
        (vec!["--entrypoint", "sh"], "--entrypoint"),
        (vec!["--privileged"], "--privileged"),
        (vec!["--cap-add", "NET_ADMIN"], "--cap-add"),
        (vec!["-m", "512m"], "-m/--memory"),
        (vec!["--cpus", "2"], "--cpus"),
        (vec!["-u", "1000"], "-u/--user"),
        (vec!["--restart", "always"], "--restart"),
    ] {
        let mut argv = vec!["run"];
        argv.extend_from_slice(&args);
        argv.push("true");
        let (c, _, err) = code(&env, &argv);
        assert_eq!(c, Some(125), "{args:?}: {err}");
        assert!(
            err.contains(&format!("does not take {name}")),
            "{args:?}: {err}"
        );
    }
    // Nothing was started for any of them.
    assert!(env.ok(&["ps", "-aq"]).trim().is_empty());
}

#[test]
fn env_file_workdir_and_init_as_docker() {
    let env = Env::new();
    let file = env.dir.join("vars.env");
    std::fs::write(&file, "# a comment\nA=1\n\nB=two words\nA=3\n").unwrap();
    let file = file.to_str().unwrap();
    let out = env.ok(&[
        "run",
        "--rm",
        "--init",
        "--env-file",
        file,
        "-e",
        "C=4",
        "-w",
        "/usr",
        "sh",
        "-c",
        "echo $A/$B/$C; pwd",
    ]);
    assert_eq!(out, "3/two words/4\n/usr\n");
    let (c, _, err) = code(&env, &["run", "--rm", "-w", "/no/such/dir", "true"]);
    assert_eq!(c, Some(125), "{err}");
    assert!(err.contains("-w /no/such/dir"), "{err}");
    // exec takes the same.
    env.start("box", &["bridge"], &["sleep", "300"]);
    let out = env.ok(&[
        "exec",
        "--env-file",
        file,
        "-w",
        "/etc",
        "box",
        "sh",
        "-c",
        "echo $A; pwd",
    ]);
    assert_eq!(out, "3\n/etc\n");
}

#[test]
fn add_host_lines_in_etc_hosts() {
    let env = Env::new();
    let out = env.ok(&[
        "run",
        "--rm",
        "--add-host",
        "db.local:10.1.2.3",
        "--add-host",
        "other=10.9.9.9",
        "--add-host",
        "six:fd00::1",
        "sh",
        "-c",
        "getent hosts db.local; getent hosts other; getent hosts six",
    ]);
    let words: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        words,
        [
            vec!["10.1.2.3", "db.local"],
            vec!["10.9.9.9", "other"],
            vec!["fd00::1", "six"]
        ],
        "{out}"
    );
    env.ok(&[
        "run",
        "-d",
        "--name",
        "h",
        "--add-host",
        "a=10.0.0.1",
        "--",
        "sleep",
        "300",
    ]);
    assert_eq!(
        env.inspect("h")["HostConfig"]["ExtraHosts"],
        serde_json::json!(["a:10.0.0.1"])
    );
    // host-gateway: the address that reaches the host, where the network
    // has one; refused with a reason where it has none.
    let (c, _, err) = code(
        &env,
        &["run", "--rm", "--add-host", "h:host-gateway", "true"],
    );
    assert_eq!(c, Some(125), "{err}");
    assert!(err.contains("host-loopback"), "{err}");
    env.ok(&["network", "create", "--opt", "host-loopback=true", "lo"]);
    let out = env.ok(&[
        "run",
        "--rm",
        "--network",
        "lo",
        "--add-host",
        "host.docker.internal:host-gateway",
        "getent",
        "hosts",
        "host.docker.internal",
    ]);
    assert!(out.starts_with("169.254.1.2"), "{out}");
    let (c, _, err) = code(&env, &["run", "--rm", "--add-host", "noip", "true"]);
    assert_eq!(c, Some(125), "{err}");
    assert!(err.contains("NAME:IP"), "{err}");
}

#[test]
fn labels_in_inspect_and_ps() {
    let env = Env::new();
    let file = env.dir.join("labels");
    std::fs::write(&file, "# team\nteam=a\ntier=db\n").unwrap();
    env.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-l",
        "tier=web",
        "--label",
        "flag",
        "--label-file",
        file.to_str().unwrap(),
        "--",
        "sleep",
        "300",
    ]);
    env.start("plain", &["bridge"], &["sleep", "300"]);
    assert_eq!(
        env.inspect("web")["Config"]["Labels"],
        serde_json::json!({"flag": "", "team": "a", "tier": "web"})
    );
    assert_eq!(
        env.ok(&[
            "ps",
            "--filter",
            "label=tier=web",
            "--format",
            "{{.Names}} {{.Labels}}"
        ]),
        "web flag=,team=a,tier=web\n"
    );
    assert_eq!(env.ok(&["ps", "--filter", "label=tier=db", "-q"]), "");
    // Kept once it exited.
    env.ok(&["kill", "web"]);
    env.ok(&["wait", "web"]);
    assert_eq!(
        env.ok(&[
            "ps",
            "-a",
            "--filter",
            "label=team=a",
            "--format",
            "{{.Names}}"
        ]),
        "web\n"
    );
    assert_eq!(env.inspect("web")["Config"]["Labels"]["team"], "a");
}

#[test]
fn dns_search_options_and_servers() {
    let env = Env::new();
    env.ok(&["network", "create", "app"]);
    let out = env.ok(&[
        "run",
        "--rm",
        "--network",
        "app",
        "--dns-search",
        "example.test",
        "--dns-search",
        "corp.test",
        "--dns-option",
        "ndots:2",
        "--dns-option",
        "timeout:3",
        "cat",
        "/etc/resolv.conf",
    ]);
    assert!(out.contains("search example.test corp.test\n"), "{out}");
    assert!(out.contains("options ndots:0 ndots:2 timeout:3\n"), "{out}");
    let servers: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("nameserver"))
        .collect();
    assert_eq!(servers.len(), 1, "{out}");
    env.start("peer", &["app"], &["sleep", "300"]);
    env.ok(&[
        "run",
        "-d",
        "--name",
        "d",
        "--network",
        "app",
        "--dns",
        "192.0.2.53",
        "--dns-search",
        "example.test",
        "--dns-option",
        "ndots:1",
        "--",
        "sleep",
        "300",
    ]);
    let hc = &env.inspect("d")["HostConfig"];
    assert_eq!(hc["Dns"], serde_json::json!(["192.0.2.53"]));
    assert_eq!(hc["DnsSearch"], serde_json::json!(["example.test"]));
    assert_eq!(hc["DnsOptions"], serde_json::json!(["ndots:1"]));
    let (c, _, err) = code(&env, &["run", "--rm", "--dns", "nonsense", "true"]);
    assert_eq!(c, Some(125), "{err}");
    assert!(err.contains("--dns nonsense"), "{err}");
}

#[test]
fn expose_and_publish_all() {
    let env = Env::new();
    let server = tool("port_server.py");
    env.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--expose",
        "8000",
        "--expose",
        "9000-9001/udp",
        "-p",
        "8001",
        "-P",
        "--",
        "python3",
        &server,
        "tcp",
        "8000",
    ]);
    let listed = env.ok(&["port", "web"]);
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 4, "{listed}");
    for want in [
        "8000/tcp -> ",
        "8001/tcp -> ",
        "9000/udp -> ",
        "9001/udp -> ",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(want)),
            "{want}: {listed}"
        );
    }
    let host_port: u16 = env
        .ok(&["port", "web", "8000"])
        .trim()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(host_port, 8000);
    let mut answer = None;
    assert!(
        Env::wait_until(Duration::from_secs(15), || {
            answer = common::ask_local(host_port).ok();
            answer.is_some()
        }),
        "nothing answered on {host_port}"
    );
    assert!(answer.unwrap().starts_with("you are"));
    let ps = env.ok(&["ps", "--format", "{{.Ports}}"]);
    assert!(ps.contains(&format!(":{host_port}->8000/tcp")), "{ps}");
    let i = env.inspect("web");
    assert_eq!(
        i["Config"]["ExposedPorts"],
        serde_json::json!({"8000/tcp": {}, "8001/tcp": {}, "9000/udp": {}, "9001/udp": {}})
    );
    assert_eq!(i["HostConfig"]["PublishAllServers"], true);
    // Without -P, --expose publishes nothing.
    env.ok(&[
        "run", "-d", "--name", "quiet", "--expose", "80", "--", "sleep", "300",
    ]);
    assert_eq!(env.ok(&["port", "quiet"]), "");
    let (c, _, err) = code(&env, &["run", "--rm", "--expose", "8080:80", "true"]);
    assert_eq!(c, Some(125), "{err}");
}

#[test]
fn links_name_the_target_in_etc_hosts_with_docker_variables() {
    let env = Env::new();
    env.ok(&[
        "run", "-d", "--name", "db", "--expose", "5432", "--expose", "53/udp", "--", "sleep", "300",
    ]);
    let ip = env.ip("db", "bridge");
    let out = env.ok(&[
        "run", "--rm", "--name", "app", "--link", "db:webdb", "sh", "-c",
        "getent hosts webdb; getent hosts db; echo $WEBDB_NAME $WEBDB_PORT; \
         echo $WEBDB_PORT_5432_TCP $WEBDB_PORT_5432_TCP_ADDR $WEBDB_PORT_5432_TCP_PORT $WEBDB_PORT_5432_TCP_PROTO; \
         echo $WEBDB_PORT_53_UDP",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with(&format!("{ip} ")) || lines[0].starts_with(&format!("{ip}\t")),
        "{out}"
    );
    assert!(lines[1].starts_with(&ip), "{out}");
    assert_eq!(lines[2], format!("/app/webdb udp://{ip}:53"), "{out}");
    assert_eq!(lines[3], format!("tcp://{ip}:5432 {ip} 5432 tcp"), "{out}");
    assert_eq!(lines[4], format!("udp://{ip}:53"), "{out}");
    // One way: the target does not learn the linker's names.
    assert!(!env.exec_ok("db", &["cat", "/etc/hosts"]).contains("app"));
    // Without an alias the name is the alias; inspect shows Docker's form.
    env.ok(&[
        "run", "-d", "--name", "l", "--link", "db", "--", "sleep", "300",
    ]);
    assert_eq!(
        env.inspect("l")["HostConfig"]["Links"],
        serde_json::json!(["/db:/l/db"])
    );
    let out = env.ok(&[
        "run",
        "--rm",
        "--link",
        "db",
        "sh",
        "-c",
        "echo $DB_PORT_5432_TCP_ADDR",
    ]);
    assert_eq!(out.trim(), ip);
    // On a user-defined network: the alias resolves in the linking sandbox.
    env.ok(&["network", "create", "app"]);
    env.start("cache", &["app"], &["sleep", "300"]);
    let cip = env.ip("cache", "app");
    let out = env.ok(&[
        "run",
        "--rm",
        "--network",
        "app",
        "--link",
        "cache:kv",
        "getent",
        "hosts",
        "kv",
    ]);
    assert!(out.starts_with(&cip), "{out}");
    // A target that is not running, or on no shared network, is refused.
    let (c, _, err) = code(&env, &["run", "--rm", "--link", "nosuch:x", "true"]);
    assert_eq!(c, Some(125), "{err}");
    assert!(err.contains("nosuch"), "{err}");
    let (c, _, err) = code(&env, &["run", "--rm", "--link", "cache", "true"]);
    assert_eq!(c, Some(125), "{err}");
    assert!(err.contains("no network"), "{err}");
}

fn only_mine(name: &str, _: hickory_proto::rr::RecordType) -> Reply {
    if name == "mine.dns.test." {
        Reply::A("198.51.100.9".parse().unwrap())
    } else {
        Reply::NxDomain
    }
}

fn only_daemons(name: &str, _: hickory_proto::rr::RecordType) -> Reply {
    if name == "daemons.dns.test." {
        Reply::A("198.51.100.8".parse().unwrap())
    } else {
        Reply::NxDomain
    }
}

/// `--dns IP` on a user-defined network: the sandbox keeps warren's DNS
/// at 127.0.0.11 (its peers' names resolve) and its names outside warren
/// are asked of IP, not of the daemon's upstreams; its neighbours' are not.
#[test]
fn dns_server_of_one_sandbox() {
    // A resolver at port 53 of a loopback address of its own, as --dns
    // takes an address only.
    let mine = (2..250).find_map(|n| {
        let ip = format!("127.53.{}.{n}", std::process::id() % 250);
        Upstream::start_at(&format!("{ip}:53"), only_mine).map(|u| (ip, u))
    });
    let Some((ip, mine)) = mine else {
        // Unprivileged, port 53 may be out of reach; as root it must not be.
        return common::skip("cannot bind a loopback address's port 53");
    };
    let daemons = Upstream::start(only_daemons);
    let env = Env::new();
    env.start_daemon(&["--dns-upstream", &daemons.arg()]);
    env.ok(&["network", "create", "app"]);
    env.start("peer", &["app"], &["sleep", "300"]);
    let peer = env.ip("peer", "app");
    let out = env.ok(&[
        "run",
        "--rm",
        "--network",
        "app",
        "--dns",
        &ip,
        "sh",
        "-c",
        "getent hosts peer; getent hosts mine.dns.test; getent hosts daemons.dns.test; \
         grep nameserver /etc/resolv.conf",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with(&peer), "{out}");
    assert!(lines[1].starts_with("198.51.100.9"), "{out}");
    assert!(!out.contains("198.51.100.8"), "{out}");
    // Docker's resolv.conf on a user-defined network: 127.0.0.11, which
    // forwards to the --dns server.
    assert_eq!(lines.last(), Some(&"nameserver 127.0.0.11"), "{out}");
    assert!(mine.asked("mine.dns.test.") && mine.asked("daemons.dns.test."));
    assert!(!daemons.asked("mine.dns.test.") && !daemons.asked("daemons.dns.test."));
    // A neighbour without --dns still uses the daemon's upstreams.
    let out = env.exec_ok("peer", &["getent", "hosts", "daemons.dns.test"]);
    assert!(out.starts_with("198.51.100.8"), "{out}");
    assert!(daemons.asked("daemons.dns.test."));
    // On the default bridge, Docker lists the --dns servers themselves.
    let out = env.ok(&["run", "--rm", "--dns", &ip, "cat", "/etc/resolv.conf"]);
    assert!(out.contains(&format!("nameserver {ip}\n")), "{out}");
}

/// Docker's rules for the default bridge and host mode: no static address
/// or alias on `bridge`; `-p` with `--network host` warned about and
/// dropped; `-p 0:80` a free host port.
#[test]
fn default_bridge_and_host_mode_rules() {
    let env = Env::new();
    let (c, _, err) = code(&env, &["run", "--rm", "--ip", "172.17.0.50", "true"]);
    assert_eq!(c, Some(125), "{err}");
    assert!(
        err.contains("user specified IP address is supported on user defined networks only"),
        "{err}"
    );
    let (c, _, err) = code(&env, &["run", "--rm", "--network-alias", "x", "true"]);
    assert_eq!(c, Some(125), "{err}");
    assert!(
        err.contains("only supported for user-defined networks"),
        "{err}"
    );
    let (c, out, err) = code(
        &env,
        &[
            "run",
            "--rm",
            "--network",
            "host",
            "-p",
            "8080:80",
            "-P",
            "echo",
            "ran",
        ],
    );
    assert_eq!(c, Some(0), "{err}");
    assert_eq!(out, "ran\n");
    assert!(
        err.contains("Published ports are discarded when using host network mode"),
        "{err}"
    );
    env.ok(&[
        "run", "-d", "--name", "z", "-p", "0:80", "--", "sleep", "300",
    ]);
    let p = env.ok(&["port", "z"]);
    assert!(
        p.starts_with("80/tcp -> 0.0.0.0:") && !p.trim().ends_with(":0"),
        "{p}"
    );
    // A host range for one sandbox port: a free port from it (the first
    // is taken here).
    let (base, _held) = (20000..30000u16)
        .step_by(13)
        .find_map(|b| {
            let held = std::net::TcpListener::bind(("0.0.0.0", b)).ok()?;
            let rest: Vec<_> = (b + 1..=b + 5)
                .filter_map(|p| std::net::TcpListener::bind(("0.0.0.0", p)).ok())
                .collect();
            (rest.len() == 5).then_some((b, held))
        })
        .expect("a free range");
    let spec = format!("{base}-{}:80", base + 5);
    let spec2 = spec.replace(":80", ":81");
    env.ok(&[
        "run", "-d", "--name", "r", "-p", &spec, "-p", &spec2, "--", "sleep", "300",
    ]);
    let listed = env.ok(&["port", "r"]);
    let got: Vec<u16> = listed
        .lines()
        .map(|l| l.rsplit(':').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(got.len(), 2, "{listed}");
    assert!(
        got.iter().all(|p| (base + 1..=base + 5).contains(p)),
        "{listed}"
    );
    assert_ne!(got[0], got[1], "{listed}");
}
