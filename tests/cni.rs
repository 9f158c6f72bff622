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
    assert!(
        Env::wait_until(Duration::from_secs(2), || !env.ok(&["ps"]).contains("pod1")),
        "the daemon notices the namespace is gone"
    );
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

    // A bad mapping is the spec's error, and nothing changes.
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
