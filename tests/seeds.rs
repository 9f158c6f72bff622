//! The tutorials warren was made from (`../shared/seeds/`), walked through
//! as a Docker user types them, with `docker` replaced by `warren` and the
//! image names left out (warren has no images: the command runs on the
//! host's filesystem, so a tutorial's `elasticsearch:2` becomes a small
//! HTTP server that says which one it is, and `-P` needs an `--expose`
//! where the image would have declared the port). The commands, their
//! flags and what the tutorials show coming back are the tutorials'.
//!
//! Each step is commented with the line it stands for. Left out on
//! purpose: seed 003's `network inspect bridge | grep bridge.name` (there is
//! no kernel bridge to name: README, "Differences from Docker's output").

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::terminal::typing_on_a_terminal;
use common::{tool, Env};

/// `warren ARGS` on a terminal of the test's, typing `input` (see
/// [`typing_on_a_terminal`]); its output and what was left in the input.
fn warren_typing(env: &Env, args: &[&str], input: &str) -> (String, String) {
    let warren = common::warren_bin();
    let mut argv = vec![warren.as_str()];
    argv.extend_from_slice(args);
    typing_on_a_terminal(env, &argv, input)
}

/// `curl -s 127.0.0.1:PORT` from the host.
fn http_get(port: u16) -> String {
    let mut s = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port)),
        Duration::from_secs(5),
    )
    .unwrap_or_else(|e| panic!("connecting to the published port {port}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.rsplit("\r\n\r\n")
        .next()
        .unwrap_or("")
        .trim()
        .to_string()
}

/// The host port `ps` shows in front of `->PORT/tcp`.
fn published(ps_row: &str, port: u16) -> u16 {
    let tail = format!("->{port}/tcp");
    let at = ps_row
        .find(&tail)
        .unwrap_or_else(|| panic!("no {tail} in {ps_row}"));
    let head = &ps_row[..at];
    head.rsplit(':').next().unwrap().parse().unwrap()
}

/// Waits until `path` exists (the sandbox's shell got that far).
fn reached(path: &std::path::Path) {
    assert!(
        Env::wait_until(Duration::from_secs(20), || path.exists()),
        "the interactive shell never reached {}",
        path.display()
    );
}

/// Seed 000, "Docker networking basics": networks, names, aliases, round
/// robin, names local to a network, static addresses, connect and
/// disconnect at runtime, and reverse lookups.
#[test]
fn seed_000_the_container_network_model() {
    let env = Env::new();
    let http = tool("seed_http.py");

    // $ docker network create dev
    let id = env.ok(&["network", "create", "dev"]);
    assert_eq!(id.trim().len(), 64, "a full network id: {id}");
    // $ docker network ls
    let ls = env.ok(&["network", "ls"]);
    for (name, driver) in [
        ("bridge", "bridge"),
        ("none", "null"),
        ("host", "host"),
        ("dev", "bridge"),
    ] {
        assert!(
            ls.lines().any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                cols.get(1) == Some(&name) && cols.get(2) == Some(&driver)
            }),
            "network ls has no {name} ({driver}) row:\n{ls}"
        );
    }

    // $ docker run -d --name es --net dev elasticsearch:2
    env.ok(&[
        "run", "-d", "--name", "es", "--net", "dev", "python3", &http, "9200", "dev-es",
    ]);
    let es = env.ip("es", "dev");
    // (the address, as scripts read it)
    let f = env.ok(&[
        "inspect",
        "-f",
        "{{.NetworkSettings.Networks.dev.IPAddress}}",
        "es",
    ]);
    assert_eq!(f.trim(), es);

    // $ docker run -ti --net dev alpine sh
    // / # ping es
    let (out, _) = warren_typing(
        &env,
        &["run", "-ti", "--net", "dev", "sh"],
        "ping -c 1 es\\nexit\\n",
    );
    assert!(out.contains(&format!("PING es ({es})")), "{out}");
    assert!(out.contains("1 received"), "{out}");
    assert!(out.contains("STATUS 0"), "{out}");

    // $ docker run --net dev -d -P jpetazzo/trainingwheels
    // (the image exposes 8000; here --expose says so)
    env.ok(&[
        "run",
        "--net",
        "dev",
        "-d",
        "-P",
        "--expose",
        "8000",
        "python3",
        &http,
        "8000",
        "trainingwheels",
    ]);
    // $ docker ps -l
    let ps = env.ok(&["ps", "-l"]);
    let row = ps.lines().nth(1).unwrap_or_else(|| panic!("{ps}"));
    assert!(row.contains("0.0.0.0:"), "{ps}");
    let port = published(row, 8000);
    assert!(
        Env::wait_until(Duration::from_secs(10), || {
            std::panic::catch_unwind(|| http_get(port)).is_ok()
        }),
        "nothing answers on the published port {port}"
    );
    assert_eq!(http_get(port), "trainingwheels");

    // $ docker run --net dev --name redis -d redis
    env.ok(&[
        "run", "--net", "dev", "--name", "redis", "-d", "sleep", "600",
    ]);
    // $ docker rm -f redis
    env.ok(&["rm", "-f", "redis"]);
    // $ docker run --net dev --net-alias redis -d redis
    env.ok(&[
        "run",
        "--net",
        "dev",
        "--net-alias",
        "redis",
        "-d",
        "sleep",
        "600",
    ]);
    let resolved = env.ok(&["run", "--rm", "--net", "dev", "getent", "hosts", "redis"]);
    assert!(resolved.contains("redis"), "{resolved}");

    // Names are local to each network:
    // $ docker run --rm alpine ping es
    // ping: bad address 'es'
    let out = env.run(&["run", "--rm", "ping", "-c", "1", "-W", "1", "es"]);
    assert!(
        !out.status.success(),
        "es resolved off its network: {out:?}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("PING es"),
        "{out:?}"
    );
    let all = env.ok(&["ps", "-a"]);
    assert!(
        !all.contains("\"ping -c"),
        "--rm left the sandbox behind:\n{all}"
    );

    // $ docker network create prod
    env.ok(&["network", "create", "prod"]);
    // $ docker run -d --name prod-es-1 --net-alias es --net prod elasticsearch:2
    // $ docker run -d --name prod-es-2 --net-alias es --net prod elasticsearch:2
    for n in ["prod-es-1", "prod-es-2"] {
        env.ok(&[
            "run",
            "-d",
            "--name",
            n,
            "--net-alias",
            "es",
            "--net",
            "prod",
            "python3",
            &http,
            "9200",
            n,
        ]);
    }
    let prod = [env.ip("prod-es-1", "prod"), env.ip("prod-es-2", "prod")];
    // $ docker run --net prod --rm alpine nslookup es
    let out = env.ok(&["run", "--net", "prod", "--rm", "nslookup", "es"]);
    for ip in &prod {
        assert!(
            out.contains(&format!("Address: {ip}")),
            "round robin lacks {ip}:\n{out}"
        );
    }
    assert!(!out.contains(&es), "dev's es answered on prod:\n{out}");

    // $ docker run --rm --net dev centos curl -s es:9200
    let wait_http = |net: &str| {
        let mut last = String::new();
        Env::wait_until(Duration::from_secs(10), || {
            let out = env.run(&["run", "--rm", "--net", net, "curl", "-s", "es:9200"]);
            last = String::from_utf8_lossy(&out.stdout).trim().to_string();
            out.status.success()
        });
        last
    };
    assert_eq!(wait_http("dev"), "dev-es");
    // $ docker run --rm --net prod centos curl -s es:9200
    let answer = wait_http("prod");
    assert!(
        answer == "prod-es-1" || answer == "prod-es-2",
        "prod's es answered {answer:?}"
    );

    // $ docker network create --subnet 10.66.0.0/16 pubnet
    env.ok(&["network", "create", "--subnet", "10.66.0.0/16", "pubnet"]);
    // $ docker run --net pubnet --ip 10.66.66.66 -d nginx
    let id = env.ok(&[
        "run",
        "--net",
        "pubnet",
        "--ip",
        "10.66.66.66",
        "-d",
        "sleep",
        "600",
    ]);
    assert_eq!(env.ip(id.trim(), "pubnet"), "10.66.66.66");

    // $ docker run -ti alpine sh              (on the default bridge)
    // / # ping es                             (bad address)
    // $ docker ps -lq; docker network connect dev <container_id>
    // / # ping es                             (answers)
    // / # ip a                                (eth0 and eth1)
    // $ docker network disconnect dev <container_id>
    // / # ping es                             (bad address again)
    let d = env.dir.display().to_string();
    let script = format!(
        "ping -c 1 -W 1 es >{d}/s1 2>&1; echo rc=$? >>{d}/s1; mv {d}/s1 {d}/step1; \
         while [ ! -e {d}/go1 ]; do sleep 0.1; done; \
         ping -c 1 es >{d}/s2 2>&1; echo rc=$? >>{d}/s2; ip -o -4 addr show >>{d}/s2; \
         mv {d}/s2 {d}/step2; \
         while [ ! -e {d}/go2 ]; do sleep 0.1; done; \
         ping -c 1 -W 1 es >{d}/s3 2>&1; echo rc=$? >>{d}/s3; mv {d}/s3 {d}/step3; exit\\n"
    );
    let shell = std::thread::scope(|scope| {
        let shell = scope.spawn(|| warren_typing(&env, &["run", "-ti", "sh"], &script));
        let gate = |name: &str| {
            let f = env.dir.join(name);
            std::fs::write(&f, "").unwrap();
            // The sandbox's root is the test user: let it see the file.
            std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o644))
                .unwrap();
        };
        reached(&env.dir.join("step1"));
        let short = env.ok(&["ps", "-lq"]).trim().to_string();
        assert_eq!(short.len(), 12, "ps -lq: {short:?}");
        env.ok(&["network", "connect", "dev", &short]);
        gate("go1");
        reached(&env.dir.join("step2"));
        env.ok(&["network", "disconnect", "dev", &short]);
        gate("go2");
        reached(&env.dir.join("step3"));
        shell.join().unwrap()
    });
    let step = |n: u32| std::fs::read_to_string(env.dir.join(format!("step{n}"))).unwrap();
    let (one, two, three) = (step(1), step(2), step(3));
    assert!(
        one.contains("rc=2") || one.contains("rc=1"),
        "before connect: {one}"
    );
    assert!(!one.contains("PING es"), "before connect: {one}");
    assert!(
        two.contains(&format!("PING es ({es})")),
        "after connect: {two}"
    );
    assert!(two.contains("rc=0"), "after connect: {two}");
    assert!(
        two.contains("eth0") && two.contains("eth1"),
        "connect gave no second interface: {two}"
    );
    assert!(!three.contains("rc=0"), "after disconnect: {three}");
    assert!(shell.0.contains("STATUS 0"), "{}", shell.0);

    // $ docker run -ti --net prod --net-alias hello alpine
    // / # drill -t ptr 3.0.21.172.in-addr.arpa   →   PTR hello.prod.
    let (out, _) = warren_typing(
        &env,
        &["run", "-ti", "--net", "prod", "--net-alias", "hello", "sh"],
        "ip=$(ip -o -4 addr show eth0 | sed 's/.*inet \\\\([0-9.]*\\\\).*/\\\\1/'); \
         echo PTR=$(dig +short -x $ip); exit\\n",
    );
    let ptr = out
        .lines()
        .filter_map(|l| l.trim().strip_prefix("PTR="))
        .next_back()
        .unwrap_or_else(|| panic!("{out}"));
    // The seed's Docker named an unnamed container by its first alias;
    // today's names it by its (generated) name, first in its DNSNames, as
    // warren does (README, "Differences from Docker").
    let name = env.ok(&["ps", "-a", "-l", "--format", "{{.Names}}"]);
    assert_eq!(
        ptr,
        format!("{}.prod.", name.trim()),
        "reverse lookup:\n{out}"
    );
}

/// Seed 002, "Docker network": published ports on the default bridge
/// with `-P`, a user network with its own subnet and gateway, `network
/// connect`, `exec -it … ping`, and names that only resolve on the
/// network that has them.
#[test]
fn seed_002_custom_networks_and_connect() {
    let env = Env::new();
    let http = tool("seed_http.py");
    // # docker network create --driver bridge --subnet 192.168.0.0/16 --gateway 192.168.0.1 mynet
    env.ok(&[
        "network",
        "create",
        "--driver",
        "bridge",
        "--subnet",
        "192.168.0.0/16",
        "--gateway",
        "192.168.0.1",
        "mynet",
    ]);
    let info = env.json(&["network", "inspect", "mynet"]);
    assert_eq!(info[0]["IPAM"]["Config"][0]["Subnet"], "192.168.0.0/16");
    assert_eq!(info[0]["IPAM"]["Config"][0]["Gateway"], "192.168.0.1");
    // # docker run -d -P --name tomcat-net-01 --net mynet tomcat
    // # docker run -d -P --name tomcat01 tomcat
    // # docker run -d -P --name tomcat02 tomcat      (tomcat exposes 8080)
    for (name, net) in [
        ("tomcat-net-01", "mynet"),
        ("tomcat01", "bridge"),
        ("tomcat02", "bridge"),
    ] {
        env.ok(&[
            "run", "-d", "-P", "--expose", "8080", "--name", name, "--net", net, "python3", &http,
            "8080", name,
        ]);
    }
    assert_eq!(env.ip("tomcat-net-01", "mynet"), "192.168.0.2");
    // # docker ps         →   0.0.0.0:32778->8080/tcp   tomcat01
    let ps = env.ok(&["ps"]);
    for name in ["tomcat-net-01", "tomcat01", "tomcat02"] {
        let row = ps
            .lines()
            .find(|l| l.split_whitespace().any(|w| w == name))
            .unwrap_or_else(|| panic!("{ps}"));
        let port = published(row, 8080);
        assert!(
            Env::wait_until(Duration::from_secs(10), || {
                std::panic::catch_unwind(|| http_get(port)).is_ok()
            }),
            "{name}: nothing answers on {port}"
        );
        assert_eq!(http_get(port), name);
    }
    // # docker network connect mynet tomcat01
    env.ok(&["network", "connect", "mynet", "tomcat01"]);
    let info = env.json(&["network", "inspect", "mynet"]);
    let names: Vec<&str> = info[0]["Containers"]
        .as_object()
        .unwrap()
        .values()
        .map(|c| c["Name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"tomcat01"), "{info}");
    // # docker exec -it tomcat01 ping tomcat-net-01
    // PING tomcat-net-01 (192.168.0.2) … from tomcat-net-01.mynet (192.168.0.2)
    let (out, _) = warren_typing(
        &env,
        &[
            "exec",
            "-it",
            "tomcat01",
            "ping",
            "-c",
            "1",
            "tomcat-net-01",
        ],
        "",
    );
    assert!(out.contains("PING tomcat-net-01 (192.168.0.2)"), "{out}");
    assert!(
        out.contains("from tomcat-net-01.mynet (192.168.0.2)"),
        "{out}"
    );
    // # docker exec -it tomcat02 ping tomcat-net-01
    // ping: tomcat-net-01: Name or service not known
    let (out, _) = warren_typing(
        &env,
        &[
            "exec",
            "-it",
            "tomcat02",
            "ping",
            "-c",
            "1",
            "-W",
            "1",
            "tomcat-net-01",
        ],
        "",
    );
    assert!(!out.contains("PING tomcat-net-01"), "{out}");
    assert!(!out.contains("STATUS 0"), "{out}");
}

/// Seed 004, "Docker networking": `--link` on the default bridge is one
/// way; `--network none` has only loopback; `exec -it … ping` by name
/// after `network connect`.
#[test]
fn seed_004_links_none_and_connect() {
    let env = Env::new();
    // $ docker run -d --name test1 busybox /bin/sh -c "while true; do sleep 3600; done"
    env.ok(&[
        "run",
        "-d",
        "--name",
        "test1",
        "/bin/sh",
        "-c",
        "while true; do sleep 3600; done",
    ]);
    // $ docker run -d --name test2 --link test1 busybox /bin/sh -c "…"
    env.ok(&[
        "run",
        "-d",
        "--name",
        "test2",
        "--link",
        "test1",
        "/bin/sh",
        "-c",
        "while true; do sleep 3600; done",
    ]);
    let test1 = env.ip("test1", "bridge");
    // $ docker exec -it test2 /bin/sh;  / # ping test1
    let (out, _) = warren_typing(
        &env,
        &["exec", "-it", "test2", "/bin/sh"],
        "ping -c 1 test1; exit\\n",
    );
    assert!(out.contains(&format!("PING test1 ({test1})")), "{out}");
    // The link is one way: test1 cannot name test2.
    let back = env.exec("test1", &["ping", "-c", "1", "-W", "1", "test2"]);
    assert!(!back.status.success(), "{back:?}");

    // $ docker network inspect f3e37efd5e71      (the bridge, by its short id)
    let id = env.ok(&["network", "ls", "-q", "--filter", "name=bridge"]);
    let by_id = env.json(&["network", "inspect", id.trim()]);
    assert_eq!(by_id[0]["Name"], "bridge", "{by_id}");
    let names: Vec<&str> = by_id[0]["Containers"]
        .as_object()
        .unwrap()
        .values()
        .map(|c| c["Name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"test1") && names.contains(&"test2"),
        "{by_id}"
    );

    // $ docker network create -d bridge my-bridge
    env.ok(&["network", "create", "-d", "bridge", "my-bridge"]);
    // $ docker run -d --name test3 --network my-bridge busybox …
    env.ok(&[
        "run",
        "-d",
        "--name",
        "test3",
        "--network",
        "my-bridge",
        "sleep",
        "600",
    ]);
    // $ docker network connect my-bridge test2
    env.ok(&["network", "connect", "my-bridge", "test2"]);
    // $ docker exec -it test2 ping test3
    let test3 = env.ip("test3", "my-bridge");
    let (out, _) = warren_typing(
        &env,
        &["exec", "-it", "test2", "ping", "-c", "1", "test3"],
        "",
    );
    assert!(out.contains(&format!("PING test3 ({test3})")), "{out}");
    assert!(out.contains("STATUS 0"), "{out}");

    // $ docker run -d --name test4 --network none busybox …; docker exec -it test4 /bin/sh; / # ip a
    env.ok(&[
        "run",
        "-d",
        "--name",
        "test4",
        "--network",
        "none",
        "sleep",
        "600",
    ]);
    let (out, _) = warren_typing(
        &env,
        &["exec", "-it", "test4", "/bin/sh"],
        "ip -o link show | cut -d: -f2; exit\\n",
    );
    let links: Vec<&str> = out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.contains(' ') && !l.contains('#'))
        .collect();
    assert!(links.contains(&"lo"), "{out}");
    assert!(!out.contains("eth0"), "--network none has an eth0: {out}");
}

/// Seed 003, "Docker networking 101": `--net host` shares the host's
/// interfaces; a bridge network with its own /24, where sandboxes ping
/// each other by address.
#[test]
fn seed_003_host_mode_and_a_bridge_of_ones_own() {
    let env = Env::new();
    // # docker run -it --net host --name C1 alpine sh;  / # ip a
    let host_links = common::world::root(&["ip", "-o", "link", "show"]);
    let (out, _) = warren_typing(
        &env,
        &["run", "-it", "--net", "host", "--name", "C1", "sh"],
        "ip -o link show | wc -l; exit\\n",
    );
    let count = host_links.lines().count().to_string();
    assert!(
        out.lines().any(|l| l.trim() == count),
        "host mode sees other interfaces than the host's {count}:\n{out}"
    );
    // # docker network create --driver bridge --subnet 10.20.30.0/24 my_bridge
    env.ok(&[
        "network",
        "create",
        "--driver",
        "bridge",
        "--subnet",
        "10.20.30.0/24",
        "my_bridge",
    ]);
    let ls = env.ok(&["network", "ls"]);
    assert!(ls.contains("my_bridge"), "{ls}");
    // two busyboxes on it; / # ping 10.20.30.3
    for n in ["c2", "c3"] {
        env.ok(&[
            "run",
            "-d",
            "--name",
            n,
            "--net",
            "my_bridge",
            "sleep",
            "600",
        ]);
    }
    assert_eq!(env.ip("c2", "my_bridge"), "10.20.30.2");
    assert_eq!(env.ip("c3", "my_bridge"), "10.20.30.3");
    assert!(env.ping("c2", "10.20.30.3"), "c2 cannot ping c3");
}
