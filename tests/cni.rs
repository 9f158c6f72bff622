//! The CNI plugin driven exactly as a runtime drives it: `CNI_*` in the
//! environment, the network configuration on stdin, the result on stdout.
//! The "container" is a user + network namespace made with `unshare` by the
//! unprivileged test user; `CNI_NETNS` is its `/proc/PID/ns/net`.

mod common;

use std::process::Child;
use std::time::Duration;

use common::{tool, Env};

const CONTAINER: &str = "0123456789abcdef0123456789abcdef";

/// Runs the plugin; returns (exit success, stdout as JSON or Null).
fn cni(
    env: &Env,
    command: &str,
    netns: &str,
    config: &serde_json::Value,
) -> (bool, serde_json::Value) {
    cni_if(env, command, netns, "eth0", config)
}

/// [`cni`] with another `CNI_IFNAME` (a second network).
fn cni_if(
    env: &Env,
    command: &str,
    netns: &str,
    ifname: &str,
    config: &serde_json::Value,
) -> (bool, serde_json::Value) {
    common::run_cni(
        env.user_cmd(env.cni_bin())
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", CONTAINER)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", ifname)
            .env("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=pod1")
            .env("CNI_PATH", "/opt/cni/bin"),
        config,
    )
}

fn container(env: &Env) -> (Child, String) {
    container_running(env, &["sleep", "600"])
}

/// A "container" running `cmd` in its own user + network namespaces.
fn container_running(env: &Env, cmd: &[&str]) -> (Child, String) {
    let child = common::unshared(env, cmd);
    let netns = format!("/proc/{}/ns/net", child.id());
    (child, netns)
}

fn in_container(netns: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net={netns}"))
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn add_check_del_cycle_as_a_runtime_does_it() {
    let env = Env::new();
    env.ok(&["network", "create", "dev"]);
    env.start("peer", &["dev"], &["sleep", "600"]);
    let (mut child, netns) = container(&env);
    let config = serde_json::json!({
        "cniVersion": "1.0.0", "name": "dev", "type": "warren",
        "runtimeConfig": { "aliases": { "dev": ["api"] } }
    });

    let (ok, res) = cni(&env, "ADD", &netns, &config);
    assert!(ok, "ADD failed: {res}");
    assert_eq!(res["cniVersion"], "1.0.0");
    assert_eq!(res["interfaces"][0]["name"], "eth0");
    assert_eq!(res["interfaces"][0]["sandbox"], netns.as_str());
    let mac = res["interfaces"][0]["mac"].as_str().unwrap();
    let address = res["ips"][0]["address"].as_str().unwrap().to_string();
    let gateway = res["ips"][0]["gateway"].as_str().unwrap();
    assert_eq!(res["ips"][0]["interface"], 0);
    assert!(
        res["ips"][0].get("version").is_none(),
        "1.0.0 results carry no version"
    );
    assert_eq!(res["routes"][0]["dst"], "0.0.0.0/0");
    assert_eq!(res["routes"][0]["gw"], gateway);
    assert_eq!(res["dns"]["nameservers"][0], gateway);
    let ip = address.split('/').next().unwrap().to_string();
    assert!(address.ends_with("/16"), "{address}");

    // The interface really exists inside, with that address and MAC.
    let inside = in_container(&netns, &["ip", "-o", "addr", "show", "eth0"]);
    assert!(inside.contains(&address), "{inside}");
    assert!(in_container(&netns, &["ip", "-o", "link", "show", "eth0"]).contains(mac));
    assert!(
        env.exec("peer", &["ping", "-c", "1", "-W", "2", &ip])
            .status
            .success(),
        "a warren sandbox reaches the CNI container"
    );
    let ps = env.json(&["ps", "--format", "json"]);
    assert!(
        ps.as_array()
            .unwrap()
            .iter()
            .any(|r| r["Names"] == "pod1" && r["ExternalID"] == CONTAINER),
        "{ps}"
    );

    let (ok, res) = cni(&env, "CHECK", &netns, &config);
    assert!(ok && res.is_null(), "CHECK: {res}");
    let (ok, res) = cni(
        &env,
        "STATUS",
        "",
        &serde_json::json!({"cniVersion": "1.1.0", "name": "dev", "type": "warren"}),
    );
    assert!(ok, "STATUS: {res}");

    // DEL, twice: both succeed and the interface is gone.
    for round in 0..2 {
        let (ok, res) = cni(&env, "DEL", &netns, &config);
        assert!(ok, "DEL #{round}: {res}");
    }
    assert!(!in_container(&netns, &["ip", "-o", "link"]).contains("eth0"));
    assert!(!env.ok(&["ps"]).contains("pod1"));
    let (ok, res) = cni(&env, "CHECK", &netns, &config);
    assert!(!ok && res["code"] == 3, "CHECK after DEL: {res}");

    // ADD again, then the namespace goes away: the daemon frees it, and DEL still succeeds.
    let (ok, res) = cni(&env, "ADD", &netns, &config);
    assert!(ok, "{res}");
    child.kill().unwrap();
    child.wait().unwrap();
    // The daemon notices the namespace is gone.
    Env::assert_freed_within_a_second("a CNI namespace gone", || !env.ok(&["ps"]).contains("pod1"));
    let (ok, res) = cni(&env, "DEL", &netns, &config);
    assert!(ok, "DEL after the namespace is gone: {res}");
    assert!(
        env.json(&["network", "inspect", "dev"])[0]["Containers"]
            .as_object()
            .unwrap()
            .len()
            == 1
    );
}

#[test]
fn versions_and_errors_follow_the_spec() {
    let env = Env::new();
    env.ok(&["network", "create", "dev"]);
    let (ok, res) = cni(
        &env,
        "VERSION",
        "",
        &serde_json::json!({"cniVersion": "1.0.0"}),
    );
    assert!(ok);
    let supported: Vec<&str> = res["supportedVersions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for v in ["0.4.0", "1.0.0", "1.1.0"] {
        assert!(supported.contains(&v), "{res}");
    }

    let (ok, res) = cni(
        &env,
        "ADD",
        "/proc/self/ns/net",
        &serde_json::json!({"cniVersion": "0.1.0", "name": "dev", "type": "warren"}),
    );
    assert!(!ok && res["code"] == 1, "old version: {res}");
    assert!(res["msg"].as_str().unwrap().contains("not supported"));
    let (ok, res) = cni(
        &env,
        "ADD",
        "",
        &serde_json::json!({"cniVersion": "1.0.0", "name": "dev", "type": "warren"}),
    );
    assert!(!ok && res["code"] == 4, "missing CNI_NETNS: {res}");
    let (ok, res) = cni(
        &env,
        "ADD",
        "/proc/self/ns/net",
        &serde_json::json!("not an object"),
    );
    assert!(!ok && res["code"] == 6, "garbage config: {res}");
    let (mut child, netns) = container(&env);
    let (ok, res) = cni(
        &env,
        "ADD",
        &netns,
        &serde_json::json!({"cniVersion": "1.0.0", "name": "x", "network": "nosuch", "type": "warren"}),
    );
    assert!(!ok && res["code"] == 7, "unknown network: {res}");
    assert!(res["details"].as_str().unwrap().contains("nosuch"), "{res}");

    // A 0.4.0 result carries "version": "4" in its ips.
    let (ok, res) = cni(
        &env,
        "ADD",
        &netns,
        &serde_json::json!({"cniVersion": "0.4.0", "name": "dev", "type": "warren"}),
    );
    assert!(ok, "{res}");
    assert_eq!(res["ips"][0]["version"], "4");
    assert_eq!(res["dns"]["nameservers"][0], res["ips"][0]["gateway"]);
    // On a network that serves DNS at a second address, that is the
    // nameserver; with dns=false there is none.
    env.ok(&[
        "network",
        "create",
        "--subnet",
        "10.77.0.0/24",
        "--opt",
        "dns-address=10.77.0.3",
        "dns3",
    ]);
    env.ok(&["network", "create", "--opt", "dns=false", "nodns"]);
    for (net, want) in [
        ("dns3", serde_json::json!(["10.77.0.3"])),
        ("nodns", serde_json::json!([])),
    ] {
        let conf = serde_json::json!({"cniVersion": "1.0.0", "name": net, "type": "warren"});
        let (ok, res) = cni_if(&env, "ADD", &netns, &format!("eth-{net}"), &conf);
        assert!(ok, "{res}");
        assert_eq!(res["dns"]["nameservers"], want, "{net}: {res}");
        let (ok, res) = cni_if(&env, "DEL", &netns, &format!("eth-{net}"), &conf);
        assert!(ok, "{res}");
    }
    // GC with an empty valid list detaches it.
    let gc = serde_json::json!({"cniVersion": "1.1.0", "name": "dev", "type": "warren", "cni.dev/valid-attachments": []});
    let (ok, res) = cni(&env, "GC", "", &gc);
    assert!(ok, "GC: {res}");
    assert!(!env.ok(&["ps"]).contains("pod1"));
    child.kill().unwrap();
    let _ = child.wait();
}

#[test]
fn port_mappings_publish_on_the_network_of_the_add() {
    let env = Env::new();
    env.ok(&["network", "create", "dev"]);
    env.ok(&["network", "create", "web"]);
    let server = tool("port_server.py");
    let (mut child, netns) = container_running(&env, &["python3", &server, "tcp", "8000"]);
    let host_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dev = serde_json::json!({"cniVersion": "1.0.0", "name": "dev", "type": "warren"});
    let web = serde_json::json!({
        "cniVersion": "1.0.0", "name": "web", "type": "warren",
        "capabilities": {"portMappings": true},
        "runtimeConfig": {"portMappings": [
            {"hostPort": host_port, "containerPort": 8000, "protocol": "tcp", "hostIP": "127.0.0.1"}
        ]}
    });
    let (ok, res) = cni(&env, "ADD", &netns, &dev);
    assert!(ok, "ADD dev: {res}");
    let (ok, res) = cni_if(&env, "ADD", &netns, "eth1", &web);
    assert!(ok, "ADD web with portMappings: {res}");
    let web_gw = res["ips"][0]["gateway"].as_str().unwrap().to_string();
    assert!(env
        .ok(&["port", "pod1"])
        .contains(&format!("8000/tcp -> 127.0.0.1:{host_port}")));

    // The forward goes to the container's address on web: a client on the
    // host's loopback arrives from web's gateway.
    let ask = || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", host_port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut out = String::new();
        std::io::Read::read_to_string(&mut s, &mut out).ok()?;
        (!out.is_empty()).then_some(out)
    };
    let mut reply = None;
    assert!(Env::wait_until(Duration::from_secs(10), || {
        reply = ask();
        reply.is_some()
    }));
    let reply = reply.unwrap();
    assert!(reply.starts_with(&format!("you are {web_gw}:")), "{reply}");

    // A bad mapping is the spec's error (that it changes nothing:
    // a_bad_mapping_changes_nothing).
    let bad = serde_json::json!({
        "cniVersion": "1.0.0", "name": "dev", "type": "warren",
        "runtimeConfig": {"portMappings": [{"hostPort": 0, "containerPort": 80, "protocol": "sctp"}]}
    });
    let (ok, res) = cni(&env, "ADD", &netns, &bad);
    assert!(!ok && res["code"] == 7, "bad portMappings: {res}");

    // DEL of web takes its ports with it: the host port is free at once.
    let (ok, res) = cni_if(&env, "DEL", &netns, "eth1", &web);
    assert!(ok, "DEL web: {res}");
    assert!(std::net::TcpListener::bind(("127.0.0.1", host_port)).is_ok());
    assert!(env.ok(&["ps"]).contains("pod1"), "still on dev");
    child.kill().unwrap();
    let _ = child.wait();
}

#[test]
fn ips_mac_and_aliases_are_honoured() {
    let env = Env::new();
    env.ok(&["network", "create", "--subnet", "10.88.0.0/16", "dev"]);
    env.start("peer", &["dev"], &["sleep", "600"]);
    let (mut child, netns) = container(&env);
    let config = serde_json::json!({
        "cniVersion": "1.0.0", "name": "dev", "type": "warren",
        "capabilities": {"ips": true, "mac": true, "aliases": true},
        "runtimeConfig": {
            "ips": ["fd00::9/64", "10.88.7.9/16"],
            "mac": "02:11:22:33:44:55",
            "aliases": {"dev": ["api", "api-v2"], "other": ["elsewhere"]}
        }
    });
    let (ok, res) = cni(&env, "ADD", &netns, &config);
    assert!(ok, "ADD: {res}");
    // The first IPv4 address asked for, and the MAC, in the result...
    assert_eq!(res["ips"][0]["address"], "10.88.7.9/16", "{res}");
    assert_eq!(res["interfaces"][0]["mac"], "02:11:22:33:44:55", "{res}");
    // ...on the interface inside...
    let inside = in_container(&netns, &["ip", "-o", "addr", "show", "eth0"]);
    assert!(inside.contains("inet 10.88.7.9/16"), "{inside}");
    let link = in_container(&netns, &["ip", "-o", "link", "show", "eth0"]);
    assert!(link.contains("link/ether 02:11:22:33:44:55"), "{link}");
    // ...and in warren's view.
    let dev = &env.inspect("pod1")["NetworkSettings"]["Networks"]["dev"];
    assert_eq!(dev["IPAddress"], "10.88.7.9", "{dev}");
    assert_eq!(dev["MacAddress"], "02:11:22:33:44:55", "{dev}");
    // The aliases of this network resolve for its other sandboxes, the
    // other network's do not.
    for name in ["api", "api-v2", "api.dev", "pod1"] {
        let hosts = env.exec("peer", &["getent", "hosts", name]);
        let text = String::from_utf8_lossy(&hosts.stdout);
        assert!(text.starts_with("10.88.7.9 "), "{name}: {text:?}");
    }
    assert!(
        !env.exec("peer", &["getent", "hosts", "elsewhere"])
            .status
            .success(),
        "an alias for another network resolved on dev"
    );
    assert!(env.ping("peer", "api"));
    let (ok, res) = cni(&env, "DEL", &netns, &config);
    assert!(ok, "DEL: {res}");
    child.kill().unwrap();
    let _ = child.wait();
}

/// What warren holds for the CNI container `pod1`: its networks as inspect
/// shows them (Null when it is not attached), and the links inside.
fn state_of(env: &Env, netns: &str) -> (serde_json::Value, String) {
    let ps = env.json(&["ps", "--format", "json"]);
    let attached = ps.as_array().unwrap().iter().any(|r| r["Names"] == "pod1");
    let networks = if attached {
        env.inspect("pod1")["NetworkSettings"]["Networks"].clone()
    } else {
        serde_json::Value::Null
    };
    let mut links: Vec<String> = in_container(netns, &["ip", "-o", "link"])
        .lines()
        .filter_map(|l| l.split(':').nth(1).map(|n| n.trim().to_string()))
        .collect();
    links.sort();
    (networks, links.join(","))
}

#[test]
fn a_bad_mapping_changes_nothing() {
    let env = Env::new();
    env.ok(&["network", "create", "dev"]);
    env.ok(&["network", "create", "web"]);
    let (mut child, netns) = container(&env);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    let free_port = common::free_port();
    let mapping = |network: &str, ports: serde_json::Value| {
        serde_json::json!({
            "cniVersion": "1.0.0", "name": network, "type": "warren",
            "capabilities": {"portMappings": true},
            "runtimeConfig": {"portMappings": ports}
        })
    };
    // One good mapping and one whose host port another program holds.
    let half_bad = |network: &str| {
        mapping(
            network,
            serde_json::json!([
                {"hostPort": free_port, "containerPort": 80, "hostIP": "127.0.0.1"},
                {"hostPort": taken_port, "containerPort": 81, "hostIP": "127.0.0.1"}
            ]),
        )
    };
    let unparsable = |network: &str| {
        mapping(
            network,
            serde_json::json!([{"hostPort": 0, "containerPort": 80, "protocol": "sctp"}]),
        )
    };

    // A first ADD: neither kind attaches anything.
    let nothing = state_of(&env, &netns);
    assert_eq!(nothing, (serde_json::Value::Null, "lo".to_string()));
    for (what, conf) in [
        ("unparsable", unparsable("dev")),
        ("taken", half_bad("dev")),
    ] {
        let (ok, res) = cni(&env, "ADD", &netns, &conf);
        assert!(!ok && res["code"] == 7, "{what}: {res}");
        assert_eq!(state_of(&env, &netns), nothing, "{what}");
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", free_port)).is_ok(),
            "{what}: the good mapping's port was left bound"
        );
    }

    // A second network's ADD for a container already on dev: it stays on
    // dev alone, with nothing published.
    let (ok, res) = cni(
        &env,
        "ADD",
        &netns,
        &serde_json::json!({"cniVersion": "1.0.0", "name": "dev", "type": "warren"}),
    );
    assert!(ok, "{res}");
    let on_dev = state_of(&env, &netns);
    assert!(
        on_dev.0.get("dev").is_some() && on_dev.1 == "eth0,lo",
        "{on_dev:?}"
    );
    for (what, conf) in [
        ("unparsable", unparsable("web")),
        ("taken", half_bad("web")),
    ] {
        let (ok, res) = cni_if(&env, "ADD", &netns, "eth1", &conf);
        assert!(!ok && res["code"] == 7, "{what}: {res}");
        assert_eq!(state_of(&env, &netns), on_dev, "{what}");
        assert_eq!(env.ok(&["port", "pod1"]).trim(), "", "{what}");
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", free_port)).is_ok(),
            "{what}: the good mapping's port was left bound"
        );
    }
    // The positive control: the same ADD with a free port works.
    let good = mapping(
        "web",
        serde_json::json!([{"hostPort": free_port, "containerPort": 80, "hostIP": "127.0.0.1"}]),
    );
    let (ok, res) = cni_if(&env, "ADD", &netns, "eth1", &good);
    assert!(ok, "{res}");
    assert_eq!(state_of(&env, &netns).1, "eth0,eth1,lo");
    assert!(env
        .ok(&["port", "pod1"])
        .contains(&format!("127.0.0.1:{free_port}")));
    drop(taken);
    child.kill().unwrap();
    let _ = child.wait();
}
