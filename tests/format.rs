//! Listing and formatting as Docker documents them (issue 18): `ps`,
//! `network ls`, `inspect` and `network inspect` with `-q`, `-l`, `-n`,
//! `--no-trunc`, `--filter` and `--format`; the network options users
//! set (`enable_icc`, `host_binding_ipv4`, the driver, IPAM, MTU); and
//! Docker's predefined networks. Real daemons and sandboxes, unprivileged.

mod common;

use std::net::{Ipv4Addr, TcpStream};
use std::time::Duration;

use common::{free_port, json_lines, tool, Env};

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

#[test]
fn ps_quiet_latest_last_filters_and_formats() {
    let env = Env::new();
    env.ok(&["network", "create", "dev"]);
    env.start("web1", &["dev"], &["sleep", "600"]);
    env.start("web2", &["bridge"], &["sleep", "600"]);
    env.start("db", &["dev"], &["sleep", "600"]);

    // -q: short ids, newest first; --no-trunc: whole ones.
    let ids = env.ok(&["ps", "-q"]);
    assert_eq!(ids.lines().count(), 3, "{ids}");
    assert!(ids.lines().all(|l| l.len() == 12), "{ids}");
    let full = env.ok(&["ps", "-q", "--no-trunc"]);
    assert!(full.lines().all(|l| l.len() == 64), "{full}");
    let db_id = env.inspect("db")["Id"].as_str().unwrap().to_string();
    assert_eq!(full.lines().next(), Some(db_id.as_str()), "newest first");
    assert_eq!(ids.lines().next(), Some(&db_id[..12]));

    // -l: the latest; -n N: the N last.
    assert_eq!(env.ok(&["ps", "-l", "--format", "{{.Names}}"]), "db\n");
    assert_eq!(
        env.ok(&["ps", "-n", "2", "--format", "{{.Names}}"]),
        "db\nweb2\n"
    );
    assert_eq!(env.ok(&["ps", "--last", "1", "-q"]).lines().count(), 1);

    // --filter: name (a part of it), id (a prefix), network (name or id
    // prefix), status; keys repeat as alternatives and combine as "and".
    let names = |filters: &[&str]| {
        let mut args = vec!["ps", "--format", "{{.Names}}"];
        for f in filters {
            args.push("--filter");
            args.push(f);
        }
        let mut v: Vec<String> = env.ok(&args).lines().map(str::to_string).collect();
        v.sort();
        v
    };
    assert_eq!(names(&["name=web"]), ["web1", "web2"]);
    assert_eq!(names(&["name=^web1$"]), ["web1"]);
    assert_eq!(names(&["name=web1", "name=db"]), ["db", "web1"]);
    assert_eq!(names(&[&format!("id={}", &db_id[..6])]), ["db"]);
    assert_eq!(names(&["network=dev"]), ["db", "web1"]);
    let dev_id = env.json(&["network", "inspect", "dev"])[0]["Id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        names(&[&format!("network={}", &dev_id[..12])]),
        ["db", "web1"]
    );
    assert_eq!(names(&["network=dev", "name=web"]), ["web1"]);
    assert_eq!(names(&["status=running"]), ["db", "web1", "web2"]);
    assert!(names(&["status=exited"]).is_empty());
    assert!(names(&["exited=0"]).is_empty(), "no sandbox has exited");
    assert!(names(&["label=tier"]).is_empty(), "no sandbox has labels");
    let err = env.fail(&["ps", "--filter", "status=sleeping"]);
    assert!(err.contains("invalid filter 'status=sleeping'"), "{err}");
    let err = env.fail(&["ps", "--filter", "color=red"]);
    assert!(err.contains("invalid filter 'color'"), "{err}");
    let err = env.fail(&["ps", "--filter", "name"]);
    assert!(err.contains("bad format of filter"), "{err}");

    // -a: every running one too (exited ones come with the lifecycle).
    assert_eq!(env.ok(&["ps", "-a", "-q"]).lines().count(), 3);

    // --format: a template per row, \t a tab; table adds a header and
    // aligns; json is one object per line of Docker's string fields.
    let out = env.ok(&[
        "ps",
        "--filter",
        "name=db",
        "--format",
        r"{{.Names}}\t{{.Status}}",
    ]);
    assert!(out.starts_with("db\tUp "), "{out}");
    let out = env.ok(&[
        "ps",
        "--filter",
        "name=db",
        "--format",
        r"table {{.Names}}\t{{.Networks}}",
    ]);
    assert_eq!(
        lines(&out),
        ["NAMES     NETWORKS", "db        dev"],
        "{out}"
    );
    let out = env.ok(&["ps", "--format", "json"]);
    let rows = json_lines(&out).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 3, "{out}");
    let db = &rows[0];
    assert_eq!(db["Names"], "db");
    assert_eq!(db["ID"], &db_id[..12]);
    assert_eq!(db["Command"], "\"sleep 600\"", "quoted, as Docker's");
    assert_eq!(db["State"], "running");
    assert_eq!(db["Networks"], "dev");
    assert_eq!(db["Labels"], "");
    assert!(
        db["CreatedAt"].as_str().unwrap().ends_with(" +0000 UTC"),
        "{db}"
    );
    assert!(db["RunningFor"].as_str().unwrap().ends_with(" ago"), "{db}");
    // The default table: Docker's columns (NETWORKS for IMAGE).
    let table = env.ok(&["ps"]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap()
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        header,
        [
            "SANDBOX ID",
            "NAMES",
            "COMMAND",
            "CREATED",
            "STATUS",
            "PORTS",
            "NETWORKS"
        ]
    );
    assert!(table.contains("\"sleep 600\""), "{table}");
    // -q wins over --format, and says so.
    let both = env.run(&["ps", "-q", "--format", "{{.Names}}"]);
    assert_eq!(String::from_utf8_lossy(&both.stdout).lines().count(), 3);
    assert!(String::from_utf8_lossy(&both.stderr).contains("Ignoring custom format"));
    // A template naming a field rows lack fails, as Docker's.
    let err = env.fail(&["ps", "--format", "{{.Image}}"]);
    assert!(err.contains("template"), "{err}");
}

#[test]
fn network_ls_quiet_filters_and_formats() {
    let env = Env::new();
    env.ok(&["network", "create", "--label", "team=web", "dev"]);
    env.ok(&[
        "network",
        "create",
        "--internal",
        "--label",
        "team=db",
        "vault",
    ]);
    env.start("s", &["dev"], &["sleep", "600"]);

    // Docker's predefined rows are there: bridge, host, none.
    let all = env.json(&["network", "ls", "--format", "json"]);
    let rows = all.as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["Name"].as_str().unwrap()).collect();
    assert_eq!(names, ["bridge", "dev", "host", "none", "vault"]);
    let row = |n: &str| rows.iter().find(|r| r["Name"] == n).unwrap().clone();
    assert_eq!(row("host")["Driver"], "host");
    assert_eq!(row("none")["Driver"], "null");
    assert_eq!(row("none")["Scope"], "local");
    // Docker's types: strings, a 12-character ID.
    let vault = row("vault");
    assert_eq!(vault["Internal"], "true");
    assert_eq!(vault["IPv6"], "false");
    assert_eq!(vault["Labels"], "team=db");
    assert_eq!(vault["ID"].as_str().unwrap().len(), 12);
    assert!(
        vault["CreatedAt"].as_str().unwrap().ends_with("UTC"),
        "{vault}"
    );

    // -q and --no-trunc.
    let q = env.ok(&["network", "ls", "-q"]);
    assert_eq!(q.lines().count(), 5);
    assert!(q.lines().all(|l| l.len() == 12), "{q}");
    let q = env.ok(&["network", "ls", "-q", "--no-trunc"]);
    assert!(q.lines().all(|l| l.len() == 64), "{q}");
    let dev_id = env.json(&["network", "inspect", "dev"])[0]["Id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(q.lines().any(|l| l == dev_id));

    let names = |filters: &[&str]| {
        let mut args = vec!["network", "ls", "--format", "{{.Name}}"];
        for f in filters {
            args.push("-f");
            args.push(f);
        }
        env.ok(&args)
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&["driver=null"]), ["none"]);
    assert_eq!(names(&["driver=bridge"]), ["bridge", "dev", "vault"]);
    assert_eq!(names(&["type=builtin"]), ["bridge", "host", "none"]);
    assert_eq!(names(&["type=custom"]), ["dev", "vault"]);
    assert_eq!(names(&["name=de"]), ["dev"], "a part of the name");
    assert_eq!(names(&[&format!("id={}", &dev_id[..5])]), ["dev"]);
    assert_eq!(names(&["label=team"]), ["dev", "vault"]);
    assert_eq!(names(&["label=team=db"]), ["vault"]);
    assert_eq!(names(&["scope=local"]).len(), 5);
    assert!(names(&["scope=swarm"]).is_empty());
    assert_eq!(
        names(&["dangling=true"]),
        ["vault"],
        "no sandbox, not builtin"
    );
    assert_eq!(names(&["driver=bridge", "label=team=web"]), ["dev"]);
    let err = env.fail(&["network", "ls", "--filter", "type=mine"]);
    assert!(err.contains("invalid filter 'type=mine'"), "{err}");
    let err = env.fail(&["network", "ls", "--filter", "subnet=10.0.0.0/8"]);
    assert!(err.contains("invalid filter 'subnet'"), "{err}");

    // --format: a template, and a table.
    assert_eq!(
        env.ok(&[
            "network",
            "ls",
            "-f",
            "name=vault",
            "--format",
            "{{.Name}}: {{.Driver}} {{.Internal}}"
        ]),
        "vault: bridge true\n"
    );
    let out = env.ok(&[
        "network",
        "ls",
        "-f",
        "name=vault",
        "--format",
        r"table {{.Name}}\t{{.Labels}}",
    ]);
    assert_eq!(
        lines(&out),
        ["NAME      LABELS", "vault     team=db"],
        "{out}"
    );
}

#[test]
fn inspect_and_network_inspect_take_go_templates() {
    let env = Env::new();
    env.ok(&["network", "create", "--subnet", "10.57.0.0/16", "dev"]);
    env.start("s", &["dev"], &["sleep", "600"]);
    let ip = env.ip("s", "dev");

    // Docker's documented examples.
    assert_eq!(
        env.ok(&[
            "inspect",
            "-f",
            "{{.NetworkSettings.Networks.dev.IPAddress}}",
            "s"
        ]),
        format!("{ip}\n")
    );
    assert_eq!(
        env.ok(&[
            "inspect",
            "--format",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            "s"
        ]),
        format!("{ip}\n")
    );
    let pid = env.pid("s");
    assert_eq!(
        env.ok(&["inspect", "-f", "{{.State.Pid}} {{.State.Running}}", "s"]),
        format!("{pid} true\n")
    );
    let whole = env.ok(&["inspect", "-f", "{{json .}}", "s"]);
    assert!(
        whole.starts_with("{\"Id\":"),
        "inspect's own order: {whole}"
    );
    let v: serde_json::Value = serde_json::from_str(&whole).unwrap();
    assert_eq!(v["Name"], "/s", "Docker's leading slash");
    assert_eq!(
        env.ok(&["inspect", "-f", "{{json .Config.Cmd}}", "s"]),
        "[\"sleep\",\"600\"]\n"
    );
    assert_eq!(
        env.ok(&[
            "network",
            "inspect",
            "-f",
            "{{range .IPAM.Config}}{{.Subnet}}{{end}}",
            "dev"
        ]),
        "10.57.0.0/16\n"
    );
    // One line per object, the predefined ones too.
    assert_eq!(
        env.ok(&[
            "network",
            "inspect",
            "-f",
            "{{.Name}} {{.Driver}} {{.Scope}}",
            "dev",
            "host",
            "none"
        ]),
        "dev bridge local\nhost host local\nnone null local\n"
    );
    // A missing one is an error beside the others' output.
    let out = env.run(&["network", "inspect", "-f", "{{.Name}}", "dev", "nosuch"]);
    assert!(!out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "dev\n");
    // A key JSON lacks: Go's <no value>.
    assert_eq!(
        env.ok(&["network", "inspect", "-f", "{{.Nope}}", "dev"]),
        "<no value>\n"
    );
    let err = env.fail(&["inspect", "-f", "{{.Name", "s"]);
    assert!(err.contains("template parsing error"), "{err}");
    // Without --format: the JSON array.
    assert!(env.json(&["inspect", "s"]).is_array());
}

#[test]
fn network_create_takes_dockers_options_and_refuses_what_it_cannot_do() {
    let env = Env::new();
    env.ok(&[
        "network",
        "create",
        "-d",
        "bridge",
        "--ipam-driver",
        "default",
        "plain",
    ]);
    env.ok(&[
        "network",
        "create",
        "--driver",
        "bridge",
        "--attachable",
        "att",
    ]);
    let plain = &env.json(&["network", "inspect", "plain"])[0];
    assert_eq!(plain["Attachable"], false);
    assert_eq!(plain["Ingress"], false);
    assert_eq!(plain["ConfigOnly"], false);
    assert_eq!(plain["ConfigFrom"]["Network"], "");
    assert_eq!(plain["Driver"], "bridge");
    assert_eq!(
        env.json(&["network", "inspect", "att"])[0]["Attachable"],
        true
    );

    // Drivers warren cannot provide: why, and what to use.
    for d in ["macvlan", "ipvlan"] {
        let err = env.fail(&["network", "create", "-d", d, "x"]);
        assert!(
            err.contains("needs root") && err.contains("bridge"),
            "{err}"
        );
    }
    let err = env.fail(&["network", "create", "-d", "overlay", "x"]);
    assert!(err.contains("needs a cluster"), "{err}");
    let err = env.fail(&["network", "create", "--ipam-driver", "dhcp", "x"]);
    assert!(err.contains("IPAM driver \"dhcp\""), "{err}");
    let err = env.fail(&[
        "network",
        "create",
        "--subnet",
        "10.60.0.0/16",
        "--subnet",
        "10.61.0.0/16",
        "x",
    ]);
    assert!(err.contains("one IPv4 subnet"), "{err}");
    // Docker's CLI: a gateway needs its subnet.
    let err = env.fail(&["network", "create", "--gateway", "10.57.0.1", "g"]);
    assert!(
        err.contains("every ip-range or gateway must have a corresponding subnet"),
        "{err}"
    );
    let err = env.fail(&["network", "create", "--ip-range", "10.57.1.0/24", "g"]);
    assert!(err.contains("corresponding subnet"), "{err}");
    let err = env.fail(&[
        "network",
        "create",
        "-o",
        "com.docker.network.bridge.enable_icc=sometimes",
        "x",
    ]);
    assert!(err.contains("enable_icc"), "{err}");
    let err = env.fail(&[
        "network",
        "create",
        "-o",
        "com.docker.network.bridge.host_binding_ipv4=localhost",
        "x",
    ]);
    assert!(err.contains("host_binding_ipv4"), "{err}");

    // Docker's predefined networks.
    for n in ["bridge", "host", "none"] {
        let err = env.fail(&["network", "create", n]);
        assert!(
            err.contains(&format!(
                "operation is not permitted on predefined {n} network"
            )),
            "{err}"
        );
        let err = env.fail(&["network", "rm", n]);
        assert!(
            err.contains("pre-defined network and cannot be removed"),
            "{err}"
        );
    }
    let host = &env.json(&["network", "inspect", "host"])[0];
    assert_eq!(
        (host["Driver"].as_str(), host["Scope"].as_str()),
        (Some("host"), Some("local"))
    );
    assert!(host["IPAM"]["Config"].as_array().unwrap().is_empty());
    assert_eq!(
        env.json(&["network", "inspect", "none"])[0]["Driver"],
        "null"
    );
    // By id too.
    let none_id = env.json(&["network", "inspect", "none"])[0]["Id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(none_id.len(), 64);
    assert_eq!(
        env.ok(&["network", "inspect", "-f", "{{.Name}}", &none_id[..12]]),
        "none\n"
    );

    // The default bridge's options, as Docker's.
    let bridge = &env.json(&["network", "inspect", "bridge"])[0];
    let opts = &bridge["Options"];
    assert_eq!(opts["com.docker.network.bridge.default_bridge"], "true");
    assert_eq!(opts["com.docker.network.bridge.enable_icc"], "true");
    assert_eq!(
        opts["com.docker.network.bridge.enable_ip_masquerade"],
        "true"
    );
    assert_eq!(
        opts["com.docker.network.bridge.host_binding_ipv4"],
        "0.0.0.0"
    );
    assert_eq!(bridge["Attachable"], false);

    // Sandboxes and the predefined modes, in Docker's words.
    env.start("b", &["plain"], &["sleep", "600"]);
    env.start("n", &["none"], &["sleep", "600"]);
    env.start("h", &["host"], &["sleep", "600"]);
    let err = env.fail(&["network", "connect", "none", "b"]);
    assert!(
        err.contains("container cannot be connected to multiple networks with one of the networks in private (none) mode"),
        "{err}"
    );
    let err = env.fail(&["network", "connect", "host", "b"]);
    assert!(
        err.contains(
            "container cannot be disconnected from host network or connected to host network"
        ),
        "{err}"
    );
    let err = env.fail(&["network", "connect", "plain", "h"]);
    assert!(
        err.contains("cannot be connected to any other network"),
        "{err}"
    );
    let err = env.fail(&["network", "disconnect", "host", "h"]);
    assert!(err.contains("disconnected from host network"), "{err}");
    // network inspect host|none list their sandboxes.
    let on = |net: &str| {
        env.ok(&[
            "network",
            "inspect",
            "-f",
            "{{range .Containers}}{{.Name}}{{end}}",
            net,
        ])
    };
    assert_eq!(on("none"), "n\n");
    assert_eq!(on("host"), "h\n");
    assert_eq!(
        env.ok(&["network", "ls", "-f", "name=none", "--format", "{{.Name}}"]),
        "none\n"
    );

    // The MTU option reaches the sandbox's interface.
    env.ok(&[
        "network",
        "create",
        "-o",
        "com.docker.network.driver.mtu=1400",
        "small",
    ]);
    assert_eq!(
        env.json(&["network", "inspect", "small"])[0]["Options"]["com.docker.network.driver.mtu"],
        "1400"
    );
    env.start("m", &["small"], &["sleep", "600"]);
    assert_eq!(
        env.exec_ok("m", &["cat", "/sys/class/net/eth0/mtu"]).trim(),
        "1400"
    );
}

/// Whether `from` reaches `to`'s echo server on port 9300.
fn tcp(env: &Env, from: &str, to_ip: &str) -> bool {
    env.exec(
        from,
        &["python3", &tool("tcp_client.py"), to_ip, "9300", "hi", "2"],
    )
    .status
    .success()
}

fn icc_drops(env: &Env, net: &str) -> u64 {
    env.stats(net)["counters"]["dropped"]["icc"]
        .as_u64()
        .unwrap()
}

#[test]
fn enable_icc_false_keeps_sandboxes_apart_but_not_from_the_gateway() {
    let env = Env::new();
    let echo = tool("tcp_echo.py");
    env.ok(&[
        "network",
        "create",
        "-o",
        "com.docker.network.bridge.enable_icc=false",
        "iso",
    ]);
    env.ok(&["network", "create", "open"]);
    for net in ["iso", "open"] {
        env.start(&format!("{net}-a"), &[net], &["python3", &echo, "9300"]);
        env.start(&format!("{net}-b"), &[net], &["python3", &echo, "9300"]);
    }
    // Control: on a normal network they reach each other.
    let open_a = env.ip("open-a", "open");
    assert!(
        Env::wait_until(Duration::from_secs(10), || tcp(&env, "open-b", &open_a)),
        "open-b reaches open-a's server"
    );
    assert!(env.ping("open-b", &open_a));
    assert_eq!(icc_drops(&env, "open"), 0);

    // On iso: the gateway answers both, they never reach each other.
    let (iso_a, iso_b) = (env.ip("iso-a", "iso"), env.ip("iso-b", "iso"));
    for s in ["iso-a", "iso-b"] {
        let gw = env.gateway(s, "iso");
        assert!(env.ping(s, &gw), "{s} pings its gateway");
    }
    // Each sandbox's own server is up (so a failure is the network's).
    assert!(Env::wait_until(Duration::from_secs(10), || tcp(
        &env,
        "iso-a",
        "127.0.0.1"
    )));
    assert!(Env::wait_until(Duration::from_secs(10), || tcp(
        &env,
        "iso-b",
        "127.0.0.1"
    )));
    assert!(!env.ping("iso-a", &iso_b), "iso-a cannot ping iso-b");
    assert!(!env.ping("iso-b", &iso_a), "iso-b cannot ping iso-a");
    assert!(!tcp(&env, "iso-a", &iso_b), "iso-a cannot TCP to iso-b");
    assert!(!tcp(&env, "iso-b", &iso_a), "iso-b cannot TCP to iso-a");
    // Names still resolve (DNS is the gateway's): only the traffic stops.
    let dns = env.exec_ok("iso-a", &["getent", "hosts", "iso-b"]);
    assert!(dns.starts_with(&iso_b), "{dns}");
    // The drops are counted, by reason.
    assert!(icc_drops(&env, "iso") >= 4, "{}", env.stats("iso"));
    assert_eq!(
        env.json(&["network", "inspect", "iso"])[0]["Options"]
            ["com.docker.network.bridge.enable_icc"],
        "false"
    );
}

/// Connects to `ip:port` and reads the server's greeting.
fn greeting(ip: Ipv4Addr, port: u16) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&(ip, port).into(), Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut out = String::new();
    std::io::Read::read_to_string(&mut s, &mut out)?;
    if out.is_empty() {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(out)
}

#[test]
fn host_binding_ipv4_is_where_published_ports_bind() {
    let env = Env::new();
    env.ok(&[
        "network",
        "create",
        "-o",
        "com.docker.network.bridge.host_binding_ipv4=127.0.0.1",
        "local",
    ]);
    env.ok(&["network", "create", "wide"]);
    let server = tool("port_server.py");
    let (lp, wp) = (free_port(), free_port());
    for (name, net, port) in [("l", "local", lp), ("w", "wide", wp)] {
        let spec = format!("{port}:8000");
        env.ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            net,
            "-p",
            &spec,
            "--",
            "python3",
            &server,
            "tcp",
            "8000",
        ]);
    }
    let lo = Ipv4Addr::LOCALHOST;
    let other = Ipv4Addr::new(127, 0, 0, 2);
    // Bound to 127.0.0.1 only: that address answers, another local one
    // does not.
    assert!(
        Env::wait_until(Duration::from_secs(15), || greeting(lo, lp).is_ok()),
        "nothing on 127.0.0.1:{lp}\n{}",
        env.daemon_log_tail()
    );
    assert!(
        greeting(other, lp).is_err(),
        "127.0.0.2:{lp} must not answer"
    );
    assert_eq!(
        env.inspect("l")["NetworkSettings"]["Ports"]["8000/tcp"][0]["HostIp"],
        "127.0.0.1"
    );
    assert!(env.ok(&["port", "l"]).contains(&format!("127.0.0.1:{lp}")));
    // Control: a network without the option binds 0.0.0.0 (the daemon's
    // default), which any local address reaches.
    assert!(Env::wait_until(Duration::from_secs(15), || greeting(
        other, wp
    )
    .is_ok()));
    assert_eq!(
        env.inspect("w")["NetworkSettings"]["Ports"]["8000/tcp"][0]["HostIp"],
        "0.0.0.0"
    );
    // A port that names its address keeps it.
    let ep = free_port();
    let spec = format!("0.0.0.0:{ep}:8000");
    env.ok(&[
        "run",
        "-d",
        "--name",
        "e",
        "--network",
        "local",
        "-p",
        &spec,
        "--",
        "python3",
        &server,
        "tcp",
        "8000",
    ]);
    assert!(Env::wait_until(Duration::from_secs(15), || greeting(
        other, ep
    )
    .is_ok()));
}
