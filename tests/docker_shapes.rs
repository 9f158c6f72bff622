//! Output shapes as Docker's documentation and CLI show them (issue 18,
//! "What a side-by-side comparison with Docker's documented behaviour
//! found"): `inspect`'s fields (`Name` with its `/`, the default bridge's
//! endpoint at the top of `NetworkSettings`, `HostConfig.PortBindings`,
//! each network's `IPAMConfig`, `Links`, `DriverOpts`, `Aliases`,
//! `DNSNames`; `NetworkMode` fixed at run), `ps` PORTS and `port` sorted
//! and collapsed as Docker's CLI does, `--format json` field types, and
//! `NETWORKS` of a sandbox on no network. Real daemons and sandboxes,
//! unprivileged.

mod common;

use common::{free_port, json_lines, Env};
use serde_json::{json, Value};

/// A first port of `n` consecutive ones free on the host (TCP, any
/// address) right now, above 10000.
fn free_run(n: u16) -> u16 {
    loop {
        let base = free_port();
        if base < 10000 || base > 65535 - n {
            continue;
        }
        let held: Vec<_> = (base..base + n)
            .map_while(|p| std::net::TcpListener::bind(("0.0.0.0", p)).ok())
            .collect();
        if held.len() == n as usize {
            return base;
        }
    }
}

#[test]
fn inspect_has_dockers_fields() {
    let env = Env::new();
    env.ok(&["network", "create", "--subnet", "10.58.0.0/16", "dev"]);
    let (p1, p2) = (free_port(), free_port());
    let local = format!("127.0.0.1:{p1}:80");
    env.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "dev",
        "--ip",
        "10.58.0.50",
        "--network-alias",
        "www",
        "-p",
        &local,
        "-p",
        "53/udp",
        "--",
        "sleep",
        "600",
    ]);
    let web = env.inspect("web");
    let id = web["Id"].as_str().unwrap().to_string();
    assert_eq!(web["Name"], "/web", "Docker's leading slash");
    // Not on the default bridge: the top-level fields are empty strings.
    let ns = &web["NetworkSettings"];
    for k in ["IPAddress", "Gateway", "MacAddress", "EndpointID"] {
        assert_eq!(ns[k], "", "{k}: {ns}");
    }
    assert_eq!(ns["IPPrefixLen"], 0);
    let dev = &ns["Networks"]["dev"];
    assert_eq!(dev["IPAMConfig"], json!({"IPv4Address": "10.58.0.50"}));
    assert_eq!(dev["Links"], Value::Null);
    assert_eq!(dev["DriverOpts"], Value::Null);
    assert_eq!(dev["Aliases"], json!(["www"]));
    assert_eq!(
        dev["DNSNames"],
        json!(["web", "www", &id[..12]]),
        "name, aliases, short id"
    );
    // What -p asked, as Docker's PortBindings: "" for what was not given.
    assert_eq!(
        web["HostConfig"]["PortBindings"],
        json!({
            "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": p1.to_string()}],
            "53/udp": [{"HostIp": "", "HostPort": ""}],
        })
    );
    assert_eq!(web["HostConfig"]["NetworkMode"], "dev");

    // On the default bridge: its endpoint at the top too, as
    // {{.NetworkSettings.IPAddress}} scripts read it; no names there.
    let spec = format!("{p2}:80");
    env.ok(&[
        "run", "-d", "--name", "b", "-p", &spec, "--", "sleep", "600",
    ]);
    let b = env.inspect("b");
    let ns = &b["NetworkSettings"];
    let bridge = &ns["Networks"]["bridge"];
    assert_eq!(ns["IPAddress"], bridge["IPAddress"]);
    assert!(
        ns["IPAddress"].as_str().unwrap().starts_with("172.17."),
        "{ns}"
    );
    assert_eq!(ns["Gateway"], "172.17.0.1");
    assert_eq!(ns["MacAddress"], bridge["MacAddress"]);
    assert_eq!(ns["IPPrefixLen"], 16);
    assert_eq!(ns["EndpointID"], bridge["EndpointID"]);
    assert_eq!(
        env.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "b"]),
        format!("{}\n", ns["IPAddress"].as_str().unwrap())
    );
    assert_eq!(bridge["DNSNames"], Value::Null, "no names on bridge");
    assert_eq!(bridge["Aliases"], Value::Null);
    assert_eq!(bridge["IPAMConfig"], Value::Null, "no --ip");
    assert_eq!(
        b["HostConfig"]["PortBindings"],
        json!({"80/tcp": [{"HostIp": "", "HostPort": p2.to_string()}]})
    );
    assert_eq!(b["HostConfig"]["NetworkMode"], "bridge");

    // NetworkMode is what run was given; connects never change it.
    env.ok(&["network", "connect", "--alias", "bee", "dev", "b"]);
    let b = env.inspect("b");
    assert_eq!(b["HostConfig"]["NetworkMode"], "bridge");
    assert_eq!(
        b["NetworkSettings"]["Networks"]["dev"]["Aliases"],
        json!(["bee"])
    );
    env.ok(&["network", "disconnect", "bridge", "b"]);
    let b = env.inspect("b");
    assert_eq!(b["HostConfig"]["NetworkMode"], "bridge");
    assert_eq!(b["NetworkSettings"]["IPAddress"], "", "off bridge now");
    // On no network: nothing under NETWORKS, as Docker's.
    env.ok(&["network", "disconnect", "dev", "b"]);
    assert_eq!(
        env.ok(&["ps", "--filter", "name=^b$", "--format", "[{{.Networks}}]"]),
        "[]\n"
    );
    assert_eq!(env.inspect("b")["HostConfig"]["NetworkMode"], "bridge");
    // host and none are shown as such; their exposed ports are not (no
    // endpoint to expose them on, as Docker's).
    env.ok(&[
        "run",
        "-d",
        "--name",
        "h",
        "--network",
        "host",
        "--expose",
        "80",
        "--",
        "sleep",
        "600",
    ]);
    assert_eq!(
        env.ok(&[
            "ps",
            "--filter",
            "name=^h$",
            "--format",
            "{{.Networks}} [{{.Ports}}]"
        ]),
        "host []\n"
    );
    assert_eq!(env.inspect("h")["NetworkSettings"]["Ports"], json!({}));
    let h = env.inspect("h");
    assert_eq!(h["HostConfig"]["PortBindings"], json!({}));
    assert_eq!(h["HostConfig"]["NetworkMode"], "host");

    // An exited sandbox keeps its Name, NetworkMode and networks, their
    // addresses emptied, as Docker's stopped containers.
    env.ok(&[
        "run",
        "--name",
        "gone",
        "--network",
        "dev",
        "--ip",
        "10.58.0.60",
        "--network-alias",
        "g2",
        "--",
        "true",
    ]);
    let gone = env.inspect("gone");
    let gone_id = gone["Id"].as_str().unwrap();
    assert_eq!(gone["Name"], "/gone");
    assert_eq!(gone["HostConfig"]["NetworkMode"], "dev");
    let dev = &gone["NetworkSettings"]["Networks"]["dev"];
    assert_eq!(dev["IPAddress"], "", "{gone}");
    assert_eq!(dev["EndpointID"], "");
    assert_eq!(
        dev["NetworkID"],
        web["NetworkSettings"]["Networks"]["dev"]["NetworkID"]
    );
    assert_eq!(dev["IPAMConfig"], json!({"IPv4Address": "10.58.0.60"}));
    assert_eq!(dev["Aliases"], json!(["g2"]));
    assert_eq!(dev["DNSNames"], json!(["gone", "g2", &gone_id[..12]]));
    assert_eq!(
        env.ok(&[
            "ps",
            "-a",
            "--filter",
            "name=gone",
            "--format",
            "{{.Networks}}"
        ]),
        "dev\n"
    );
}

#[test]
fn ps_and_port_sort_and_collapse_ports_as_docker() {
    let env = Env::new();
    let base = free_run(3);
    let remapped = free_port();
    let same = format!("{base}-{}:{base}-{}", base + 2, base + 2);
    let other = format!("127.0.0.1:{remapped}:90");
    env.ok(&[
        "run",
        "-d",
        "--name",
        "p",
        "-p",
        &same,
        "-p",
        &other,
        "--expose",
        "7000-7002",
        "--",
        "sleep",
        "600",
    ]);
    // Sorted by the sandbox's port; the exposed-only run and the run
    // published on its own numbers collapse; the remapped one last.
    assert_eq!(
        env.ok(&["ps", "--format", "{{.Ports}}"]),
        format!(
            "7000-7002/tcp, 0.0.0.0:{base}-{}->{base}-{}/tcp, 127.0.0.1:{remapped}->90/tcp\n",
            base + 2,
            base + 2
        )
    );
    // `port`: one line per mapping, in natural order (90 before 1xxxx).
    assert_eq!(
        env.ok(&["port", "p"]),
        format!(
            "90/tcp -> 127.0.0.1:{remapped}\n\
             {base}/tcp -> 0.0.0.0:{base}\n\
             {}/tcp -> 0.0.0.0:{}\n\
             {}/tcp -> 0.0.0.0:{}\n",
            base + 1,
            base + 1,
            base + 2,
            base + 2
        )
    );
    // inspect: the exposed-only ports are null in NetworkSettings.Ports.
    let ports = &env.inspect("p")["NetworkSettings"]["Ports"];
    assert_eq!(ports["7001/tcp"], Value::Null);
    assert!(
        ports.as_object().unwrap().contains_key("7001/tcp"),
        "{ports}"
    );
    assert_eq!(ports["90/tcp"][0]["HostPort"], remapped.to_string());

    // -P publishes the exposed ones, but PortBindings keeps what -p asked.
    env.ok(&[
        "run", "-d", "--name", "all", "-P", "--expose", "81", "--", "sleep", "600",
    ]);
    let all = env.inspect("all");
    assert_eq!(all["HostConfig"]["PortBindings"], json!({}));
    assert_eq!(all["HostConfig"]["PublishAllServers"], true);
    let host_port = all["NetworkSettings"]["Ports"]["81/tcp"][0]["HostPort"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(host_port, "0");
    assert_eq!(
        env.ok(&["ps", "--filter", "name=all", "--format", "{{.Ports}}"]),
        format!("0.0.0.0:{host_port}->81/tcp\n")
    );
}

#[test]
fn format_json_has_dockers_fields_and_types() {
    let env = Env::new();
    env.ok(&[
        "network", "create", "--label", "a=1", "--label", "b=2", "dev",
    ]);
    env.start("s", &["dev"], &["sleep", "600"]);

    // ps: one object per line, Docker's string fields; CreatedAt as Go's
    // time.Unix(created, 0).String(): whole seconds.
    let rows = json_lines(&env.ok(&["ps", "--format", "json"])).unwrap();
    let row = &rows[0];
    let created = row["CreatedAt"].as_str().unwrap();
    assert!(created.ends_with(" +0000 UTC"), "{created}");
    assert!(
        !created.contains('.'),
        "whole seconds, as Docker's: {created}"
    );
    for k in [
        "Command",
        "CreatedAt",
        "ID",
        "Labels",
        "Names",
        "Networks",
        "Ports",
        "RunningFor",
        "State",
        "Status",
    ] {
        assert!(row[k].is_string(), "{k}: {row}");
    }
    // network ls: Docker's fields, booleans as strings.
    let nets = json_lines(&env.ok(&["network", "ls", "--format", "json"])).unwrap();
    let dev = nets
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["Name"] == "dev")
        .unwrap();
    let keys: Vec<&str> = dev
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "CreatedAt",
            "Driver",
            "ID",
            "IPv4",
            "IPv6",
            "Internal",
            "Labels",
            "Name",
            "Scope"
        ],
        "Docker's network context, keys sorted as Go's encoder does"
    );
    assert_eq!(dev["IPv4"], "true");
    assert_eq!(dev["Labels"], "a=1,b=2");
    assert_eq!(
        env.json(&["network", "inspect", "dev"])[0]["EnableIPv4"],
        true
    );
}

#[test]
fn exec_and_run_take_i_and_t_as_docker() {
    use std::io::Write;
    let env = Env::new();
    env.start("s", &["bridge"], &["sleep", "600"]);
    // -t: a pty of the sandbox's own is the command's stdin, stdout and
    // stderr (Docker's `exec -t c tty` prints /dev/pts/N), with or
    // without -i.
    for args in [
        vec![
            "exec",
            "-t",
            "s",
            "--",
            "sh",
            "-c",
            "tty; test -t 0 && echo IN; test -t 2 && echo ERR",
        ],
        vec![
            "run",
            "--rm",
            "-t",
            "--",
            "sh",
            "-c",
            "tty; test -t 0 && echo IN; test -t 2 && echo ERR",
        ],
    ] {
        let out = env.ok(&args);
        assert!(out.starts_with("/dev/pts/"), "{args:?}: {out}");
        assert!(out.contains("IN") && out.contains("ERR"), "{args:?}: {out}");
    }
    // Without -t: no terminal.
    let out = env.run(&["exec", "s", "--", "tty"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "not a tty\n");
    // -i: the caller's stdin reaches the command; -ti: through the pty.
    for args in [
        vec!["exec", "-i", "s", "--", "sh", "-c", "read x; echo got $x"],
        vec![
            "exec",
            "-ti",
            "s",
            "--",
            "sh",
            "-c",
            "read x; echo got $x; tty",
        ],
        vec![
            "exec",
            "-it",
            "s",
            "--",
            "sh",
            "-c",
            "read x; echo got $x; tty",
        ],
    ] {
        let mut child = env
            .cmd(&args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{args:?}: {text}");
        assert!(text.contains("got hello"), "{args:?}: {text}");
        if args[1] != "-i" {
            assert!(text.contains("/dev/pts/"), "{args:?}: {text}");
        }
    }
    // Without -i, nothing of the caller's stdin is read.
    let mut child = env
        .cmd(&["exec", "s", "--", "sh", "-c", "read x; echo got [$x]"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "got []\n");
}

#[test]
fn inspect_prints_as_dockers_inspectors() {
    let env = Env::new();
    env.ok(&["network", "create", "dev"]);
    env.start("a", &["dev"], &["sleep", "600"]);
    env.start("b", &["dev"], &["sleep", "600"]);
    // No --format: the array, indented by four spaces (Docker's
    // json.Indent(…, "", "    ")).
    let out = env.ok(&["inspect", "a"]);
    assert!(out.starts_with("[\n    {\n        \"Id\": "), "{out}");
    // json: the same array, compact, on one line.
    for args in [
        vec!["inspect", "--format", "json", "a", "b"],
        vec!["network", "inspect", "--format", "json", "dev", "bridge"],
    ] {
        let out = env.ok(&args);
        assert_eq!(out.lines().count(), 1, "{args:?}: {out}");
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v.as_array().map(Vec::len), Some(2), "{args:?}: {out}");
    }
    // {{json .}} is a template: one line per value.
    let out = env.ok(&["inspect", "-f", "{{json .}}", "a", "b"]);
    let names: Vec<String> = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["Name"].to_string())
        .collect();
    assert_eq!(names, ["\"/a\"", "\"/b\""]);
    // A template that does not parse: Docker's status 64, nothing printed.
    for args in [
        vec!["inspect", "-f", "{{.Name", "a"],
        vec!["network", "inspect", "-f", "{{.Name", "dev"],
    ] {
        let out = env.run(&args);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("template parsing error"),
            "{out:?}"
        );
    }
    // network create errors exit 1, as the Docker CLI's plain errors.
    let out = env.run(&["network", "create", "--gateway", "10.57.0.1", "g"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("every ip-range or gateway must have a corresponding subnet"));
}
