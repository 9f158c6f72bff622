//! The full network model (issue 6): connect/disconnect at runtime, several
//! networks per sandbox, static addressing, host and none modes, and the
//! Docker-shaped listings. Real daemons and sandboxes, unprivileged.

mod common;

use common::{tool, Env};

fn links(env: &Env, sandbox: &str) -> Vec<String> {
    env.exec_ok(sandbox, &["ip", "-o", "link"])
        .lines()
        .filter_map(|l| {
            l.split(':')
                .nth(1)
                .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
        })
        .collect()
}

fn endpoint(env: &Env, sandbox: &str, network: &str) -> serde_json::Value {
    env.inspect(sandbox)["NetworkSettings"]["Networks"][network].clone()
}

/// The address `name` resolves to inside `sandbox` (through its
/// resolv.conf, so through warren's DNS), if any.
fn resolve(env: &Env, sandbox: &str, name: &str) -> Option<String> {
    let out = env.exec(sandbox, &["getent", "hosts", name]);
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace().next().map(str::to_string)
}

/// The sandbox's default route goes via `network`'s gateway on `dev`.
fn assert_default_route(env: &Env, sandbox: &str, network: &str, dev: &str) {
    let routes = env.exec_ok(sandbox, &["ip", "route", "show", "default"]);
    let gw = env.gateway(sandbox, network);
    assert!(
        routes.contains(&format!("via {gw} dev {dev}")),
        "{sandbox}: {routes}"
    );
}

#[test]
fn connect_and_disconnect_at_runtime() {
    let env = Env::new();
    env.ok(&["network", "create", "dev"]);
    let echo = tool("tcp_echo.py");
    env.start("es", &["dev"], &["python3", &echo, "9200"]);
    env.start("web", &["bridge"], &["sleep", "600"]);
    let es = env.ip("es", "dev");

    assert!(!env.ping("web", &es), "bridge cannot reach dev");
    assert_eq!(
        resolve(&env, "web", "es"),
        None,
        "bridge cannot resolve es on dev"
    );
    assert_eq!(links(&env, "web"), ["lo", "eth0"]);

    env.ok(&["network", "connect", "dev", "web"]);
    assert_eq!(
        links(&env, "web"),
        ["lo", "eth0", "eth1"],
        "the new interface appears inside"
    );
    assert!(env.ping("web", &es), "after connect, web reaches es");
    assert_eq!(
        resolve(&env, "web", "es").as_deref(),
        Some(es.as_str()),
        "after connect, es resolves"
    );
    assert!(env.ping("web", "es"), "and answers by name");
    let web_dev = env.ip("web", "dev");
    let inspect = env.json(&["network", "inspect", "dev"])[0].clone();
    let containers = inspect["Containers"].as_object().unwrap();
    assert_eq!(containers.len(), 2);
    let web_entry = containers
        .values()
        .find(|c| c["Name"] == "web")
        .expect("web listed on dev");
    assert_eq!(web_entry["IPv4Address"], format!("{web_dev}/16"));
    assert_eq!(
        web_entry["MacAddress"],
        endpoint(&env, "web", "dev")["MacAddress"]
    );
    for key in [
        "Name",
        "EndpointID",
        "MacAddress",
        "IPv4Address",
        "IPv6Address",
    ] {
        assert!(
            web_entry.get(key).is_some(),
            "Docker key {key} missing: {web_entry}"
        );
    }

    // Errors name the problem.
    let err = env.fail(&["network", "connect", "dev", "web"]);
    assert!(err.contains("already connected to network dev"), "{err}");

    env.ok(&["network", "disconnect", "dev", "web"]);
    assert_eq!(
        links(&env, "web"),
        ["lo", "eth0"],
        "the interface disappears inside"
    );
    assert!(!env.ping("web", &es), "after disconnect, es is unreachable");
    assert_eq!(
        resolve(&env, "web", "es"),
        None,
        "after disconnect, es no longer resolves"
    );
    assert!(
        !env.ping("es", &web_dev),
        "and the former address answers nothing"
    );
    let err = env.fail(&["network", "disconnect", "dev", "web"]);
    assert!(err.contains("not connected to network dev"), "{err}");
    assert_eq!(
        env.json(&["network", "inspect", "dev"])[0]["Containers"]
            .as_object()
            .unwrap()
            .len(),
        1
    );

    // The freed address is handed out again to the next endpoint.
    env.start("next", &["dev"], &["sleep", "600"]);
    assert_eq!(env.ip("next", "dev"), web_dev);

    // host/none sandboxes cannot be connected.
    env.start("alone", &["none"], &["sleep", "600"]);
    let err = env.fail(&["network", "connect", "dev", "alone"]);
    assert!(err.contains("--network none"), "{err}");
}

#[test]
fn two_networks_reach_a_peer_on_each_and_route_by_the_first_non_internal() {
    let env = Env::new();
    env.ok(&["network", "create", "front"]);
    env.ok(&["network", "create", "back"]);
    env.ok(&["network", "create", "--internal", "vault"]);
    env.start("f", &["front"], &["sleep", "600"]);
    env.start("b", &["back"], &["sleep", "600"]);
    env.start("both", &["front", "back"], &["sleep", "600"]);
    assert!(env.ping("both", &env.ip("f", "front")));
    assert!(env.ping("both", &env.ip("b", "back")));
    assert!(
        !env.ping("f", &env.ip("b", "back")),
        "front and back stay apart"
    );
    assert_default_route(&env, "both", "front", "eth0");
    // An internal first network gives no default route; the next one does.
    env.start("v", &["vault", "back"], &["sleep", "600"]);
    assert_default_route(&env, "v", "back", "eth1");
    // Disconnecting the routing network moves the default route on.
    env.ok(&["network", "disconnect", "front", "both"]);
    assert_default_route(&env, "both", "back", "eth1");
}

#[test]
fn static_addresses_and_their_errors() {
    let env = Env::new();
    env.ok(&[
        "network",
        "create",
        "--subnet",
        "10.66.0.0/16",
        "--aux-address",
        "nas=10.66.0.5",
        "pubnet",
    ]);
    env.ok(&[
        "run",
        "-d",
        "--name",
        "es",
        "--network",
        "pubnet",
        "--ip",
        "10.66.66.66",
        "--",
        "sleep",
        "600",
    ]);
    assert_eq!(env.ip("es", "pubnet"), "10.66.66.66");
    let addr = env.exec_ok("es", &["ip", "-o", "-4", "addr", "show", "eth0"]);
    assert!(addr.contains("10.66.66.66/16"), "{addr}");
    let mac = endpoint(&env, "es", "pubnet")["MacAddress"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        mac, "02:42:0a:42:42:42",
        "the MAC is derived from the address"
    );

    let cases: &[(&str, &str)] = &[
        ("10.67.0.1", "not in the network's subnet"),
        ("10.66.0.1", "is the network's gateway"),
        ("10.66.0.5", "auxiliary address \"nas\""),
        ("10.66.66.66", "already in use"),
        ("10.66.255.255", "network or broadcast"),
        ("10.66.1", "invalid IP address"),
    ];
    for (ip, msg) in cases {
        let err = env.fail(&["run", "--network", "pubnet", "--ip", ip, "--", "true"]);
        assert!(err.contains(msg), "--ip {ip}: expected {msg:?} in {err}");
    }
    let err = env.fail(&[
        "run",
        "--network",
        "pubnet",
        "--mac-address",
        "01:00:5e:00:00:01",
        "--",
        "true",
    ]);
    assert!(err.contains("not a unicast"), "{err}");
    assert_eq!(
        env.ok(&["ps", "-q"]).lines().count(),
        1,
        "no failed run left anything"
    );

    // A static address and its MAC survive disconnect/connect.
    env.start("app", &["bridge"], &["sleep", "600"]);
    env.ok(&["network", "connect", "--ip", "10.66.7.7", "pubnet", "app"]);
    let before = endpoint(&env, "app", "pubnet");
    env.ok(&["network", "disconnect", "pubnet", "app"]);
    env.ok(&["network", "connect", "--ip", "10.66.7.7", "pubnet", "app"]);
    let after = endpoint(&env, "app", "pubnet");
    assert_eq!(before["IPAddress"], after["IPAddress"]);
    assert_eq!(before["MacAddress"], after["MacAddress"]);
    assert!(env.ping("es", "10.66.7.7"));
}

#[test]
fn host_and_none_modes_show_in_ps_and_inspect() {
    let env = Env::new();
    let host_links = std::process::Command::new("ip")
        .args(["-o", "link"])
        .output()
        .unwrap();
    let host_count = String::from_utf8_lossy(&host_links.stdout).lines().count();
    let inside = env.ok(&["run", "--network", "host", "--", "ip", "-o", "link"]);
    assert_eq!(
        inside.lines().count(),
        host_count,
        "host mode sees the host's interfaces: {inside}"
    );
    env.start("h", &["host"], &["sleep", "600"]);
    env.start("n", &["none"], &["sleep", "600"]);
    let ps = env.json(&["ps", "--format", "json"]);
    let mode = |name: &str| {
        ps.as_array()
            .unwrap()
            .iter()
            .find(|r| r["Names"] == name)
            .unwrap()["Networks"]
            .clone()
    };
    assert_eq!(mode("h"), "host");
    assert_eq!(mode("n"), "none");
    assert_eq!(env.inspect("h")["HostConfig"]["NetworkMode"], "host");
    assert_eq!(env.inspect("n")["HostConfig"]["NetworkMode"], "none");
    assert!(env.inspect("n")["NetworkSettings"]["Networks"]
        .as_object()
        .unwrap()
        .is_empty());

    // network ls: Docker's columns; JSON form.
    let ls = env.ok(&["network", "ls"]);
    let header: Vec<&str> = ls
        .lines()
        .next()
        .unwrap()
        .split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(header, ["NETWORK ID", "NAME", "DRIVER", "SCOPE"]);
    let json = env.json(&["network", "ls", "--format", "json"]);
    assert_eq!(json[0]["Name"], "bridge");
    assert_eq!(json[0]["Driver"], "bridge");
}

#[test]
fn chosen_gateway_mac_and_aliases_on_every_network() {
    let env = Env::new();
    env.ok(&[
        "network",
        "create",
        "--subnet",
        "10.77.0.0/24",
        "--gateway",
        "10.77.0.254",
        "lab",
    ]);
    env.ok(&["network", "create", "office"]);
    env.ok(&[
        "run",
        "-d",
        "--name",
        "db",
        "--network",
        "lab",
        "--network",
        "office",
        "--network-alias",
        "store",
        "--mac-address",
        "02:11:22:33:44:55",
        "--",
        "sleep",
        "600",
    ]);
    // The gateway is the one asked for, answers, and carries the default route.
    assert_eq!(env.gateway("db", "lab"), "10.77.0.254");
    assert!(env.ping("db", "10.77.0.254"));
    assert_default_route(&env, "db", "lab", "eth0");
    // The MAC is the one asked for, inside and in inspect.
    assert_eq!(
        endpoint(&env, "db", "lab")["MacAddress"],
        "02:11:22:33:44:55"
    );
    let link = env.exec_ok("db", &["ip", "-o", "link", "show", "eth0"]);
    assert!(link.contains("02:11:22:33:44:55"), "{link}");
    // --network-alias applies on every network given to run.
    env.start("client-lab", &["lab"], &["sleep", "600"]);
    env.start("client-office", &["office"], &["sleep", "600"]);
    assert_eq!(
        resolve(&env, "client-lab", "store"),
        Some(env.ip("db", "lab"))
    );
    assert_eq!(
        resolve(&env, "client-office", "store"),
        Some(env.ip("db", "office"))
    );
}

/// The lines `run` writes into every sandbox's `/etc/hosts` before its
/// own addresses.
const HOSTS_HEAD: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
                          fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\n\
                          ff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n";

#[test]
fn what_run_writes_into_etc_hosts_and_hostname() {
    let env = Env::new();
    env.ok(&["network", "create", "a"]);
    env.ok(&["network", "create", "b"]);
    env.ok(&["network", "create", "c"]);
    // Two networks: one line per address, the hostname (the id's first
    // 12 digits, as Docker's) and then the name.
    env.start("web", &["a", "b"], &["sleep", "600"]);
    let id = env.inspect("web")["Id"].as_str().unwrap()[..12].to_string();
    let (ip_a, ip_b) = (env.ip("web", "a"), env.ip("web", "b"));
    let hosts = env.exec_ok("web", &["cat", "/etc/hosts"]);
    assert_eq!(
        hosts,
        format!("{HOSTS_HEAD}{ip_a}\t{id} web\n{ip_b}\t{id} web\n")
    );
    assert_eq!(
        env.exec_ok("web", &["cat", "/etc/hostname"]),
        format!("{id}\n")
    );
    assert_eq!(env.exec_ok("web", &["hostname"]).trim(), id);
    // The file is rewritten in place: a running sandbox sees connect and
    // disconnect.
    env.ok(&["network", "connect", "c", "web"]);
    let ip_c = env.ip("web", "c");
    let hosts = env.exec_ok("web", &["cat", "/etc/hosts"]);
    assert_eq!(
        hosts,
        format!("{HOSTS_HEAD}{ip_a}\t{id} web\n{ip_b}\t{id} web\n{ip_c}\t{id} web\n")
    );
    env.ok(&["network", "disconnect", "a", "web"]);
    let hosts = env.exec_ok("web", &["cat", "/etc/hosts"]);
    assert_eq!(
        hosts,
        format!("{HOSTS_HEAD}{ip_b}\t{id} web\n{ip_c}\t{id} web\n")
    );
    // --hostname: that name first, then the sandbox's, on /etc/hostname
    // and uname too.
    let out = env.ok(&[
        "run",
        "--name",
        "h",
        "--hostname",
        "box.example",
        "--network",
        "a",
        "--",
        "sh",
        "-c",
        "cat /etc/hosts; echo ---; cat /etc/hostname; hostname",
    ]);
    let (hosts, names) = out.split_once("---\n").unwrap();
    let ip = hosts
        .lines()
        .last()
        .and_then(|l| l.split('\t').next())
        .unwrap();
    assert!(ip.starts_with("172."), "{hosts}");
    assert_eq!(hosts, format!("{HOSTS_HEAD}{ip}\tbox.example h\n"));
    assert_eq!(names, "box.example\nbox.example\n");
    // A hostname equal to the name is written once.
    let out = env.ok(&[
        "run",
        "--name",
        "same",
        "--hostname",
        "same",
        "--network",
        "a",
        "--",
        "tail",
        "-n",
        "1",
        "/etc/hosts",
    ]);
    assert!(out.ends_with("\tsame\n"), "{out:?}");
    // --network none: only the fixed lines.
    let out = env.ok(&["run", "--network", "none", "--", "cat", "/etc/hosts"]);
    assert_eq!(out, HOSTS_HEAD);
    // --network host: the host's own file, untouched.
    let out = env.ok(&["run", "--network", "host", "--", "cat", "/etc/hosts"]);
    assert_eq!(out, std::fs::read_to_string("/etc/hosts").unwrap());
}
