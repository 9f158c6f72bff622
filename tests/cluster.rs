//! Cluster membership through a real etcd cluster (issue 19, its first
//! step): three "hosts" as network namespaces on an underlay bridge, an
//! etcd member on each (as seed 004 builds it), and an unprivileged warren
//! daemon on each with `--cluster-store` and `--cluster-advertise`.
//!
//! What holds: every member lists every other within seconds; a member
//! SIGKILLed leaves every list within its lease's TTL, one stopped cleanly
//! at once; one etcd member of three down changes nothing; all of etcd
//! down leaves local networks working and says so, and the members come
//! back by themselves when etcd does; bad flags are refused by name; a
//! daemon the CLI starts by itself joins from `STATE/daemon.json`.

mod common;

use std::time::{Duration, Instant};

use common::hosts::{host_addr, Hosts};
use common::Env;
use nix::sys::signal::Signal;

/// The lease TTL the tests give their daemons.
const TTL: Duration = Duration::from_secs(3);

fn all_members(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{}:4789", host_addr(i))).collect()
}

/// Waits until host `i` lists exactly `want` with etcd answering; returns
/// how long that took.
fn until_listed(h: &Hosts, i: usize, want: &[String], within: Duration) -> Duration {
    let start = Instant::now();
    let mut last = (Vec::new(), false);
    let ok = Env::wait_until(within, || {
        last = h.members(i);
        last.1 && last.0 == want
    });
    assert!(
        ok,
        "host {i} lists {:?} (etcd answering: {}) after {within:?}, wanted {want:?}\n{}",
        last.0,
        last.1,
        h.daemon_log(i)
    );
    start.elapsed()
}

/// `hosts` hosts with `members` of them running a daemon in the cluster,
/// each listing all the members; `None` when not root.
fn cluster_of(hosts: usize, members: usize) -> Option<Hosts> {
    let mut h = Hosts::start(hosts)?;
    let ttl = format!("{}s", TTL.as_secs());
    for i in 0..members {
        h.start_member(i, &ttl);
    }
    let all = all_members(members);
    for i in 0..members {
        let t = until_listed(&h, i, &all, Duration::from_secs(10));
        eprintln!("host {i} lists all {members} members after {t:?}");
    }
    Some(h)
}

#[test]
fn members_join_and_a_dead_one_leaves_within_its_ttl() {
    let Some(mut h) = cluster_of(3, 3) else {
        return common::skip("needs root to make the hosts' namespaces");
    };
    // Each marks itself.
    let table = h.hosts[1].env.ok(&["cluster", "ls"]);
    let own = table
        .lines()
        .find(|l| l.starts_with(&format!("{}:4789", host_addr(1))))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(own.trim_end().ends_with('*'), "{table}");
    let info = h.hosts[0].env.ok(&["info"]);
    assert!(info.contains("Cluster Members: 3"), "{info}");
    assert!(info.contains("Etcd: ok"), "{info}");
    assert!(
        info.contains(&format!("Cluster Advertise: {}:4789", host_addr(0))),
        "{info}"
    );

    // SIGKILL: no goodbye; the lease expires.
    let killed = Instant::now();
    h.signal_daemon(2, Signal::SIGKILL);
    let rest = all_members(2);
    until_listed(&h, 0, &rest, TTL + Duration::from_secs(5));
    let gone = killed.elapsed();
    eprintln!("a SIGKILLed member left host 0's list after {gone:?} (TTL {TTL:?})");
    // Within the TTL, plus one keep-alive period of the reader and the
    // CLI's polling.
    assert!(
        gone <= TTL + TTL / 3 + Duration::from_millis(700),
        "{gone:?}"
    );
    until_listed(&h, 1, &rest, Duration::from_secs(2));

    // A clean stop revokes the lease: gone at once (one reader period).
    let stopped = Instant::now();
    h.signal_daemon(1, Signal::SIGTERM);
    until_listed(&h, 0, &all_members(1), TTL);
    let gone = stopped.elapsed();
    eprintln!("a stopped member left after {gone:?}");
    assert!(gone <= TTL / 3 + Duration::from_millis(700), "{gone:?}");
}

#[test]
fn etcd_members_down_and_back() {
    let Some(mut h) = cluster_of(3, 2) else {
        return common::skip("needs root to make the hosts' namespaces");
    };
    let two = all_members(2);

    // One etcd member of three down: nothing visible happens, for longer
    // than a lease lives.
    h.stop_etcd(2);
    let until = Instant::now() + TTL * 2;
    while Instant::now() < until {
        for i in 0..2 {
            let (list, ok) = h.members(i);
            assert!(
                ok && list == two,
                "host {i}: {list:?} ok={ok}\n{}",
                h.daemon_log(i)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    // All of etcd down: `cluster ls` says so and exits 1, local networks
    // are not affected.
    h.stop_etcd(0);
    h.stop_etcd(1);
    let env = &h.hosts[0].env;
    let ok = Env::wait_until(Duration::from_secs(10), || {
        !env.run(&["cluster", "ls"]).status.success()
    });
    assert!(ok, "cluster ls still succeeds with etcd down");
    let out = env.run(&["cluster", "ls"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("etcd is unreachable"), "{err}");
    assert!(err.contains("as last read"), "{err}");
    let info = env.ok(&["info"]);
    assert!(info.contains("Etcd: unreachable"), "{info}");
    let t = Instant::now();
    env.ok(&["network", "create", "local-only"]);
    let ls = env.ok(&["network", "ls"]);
    assert!(ls.contains("local-only"), "{ls}");
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "local networks waited for etcd: {:?}",
        t.elapsed()
    );

    // etcd back (on its data): the daemons rejoin by themselves.
    for i in 0..3 {
        h.start_etcd(i, "existing");
    }
    for i in 0..2 {
        let t = until_listed(&h, i, &two, Duration::from_secs(20));
        eprintln!("host {i} is a member again {t:?} after etcd came back");
    }
}

#[test]
fn flags_are_checked_and_daemon_json_joins_an_auto_started_daemon() {
    let env = Env::new();
    for (args, says) in [
        (
            vec![
                "daemon",
                "--cluster-store",
                "etcd://node1:2379",
                "--cluster-advertise",
                "10.0.0.1",
            ],
            "by IP",
        ),
        (
            vec!["daemon", "--cluster-store", "etcd://10.0.0.1:2379"],
            "--cluster-advertise",
        ),
        (
            vec!["daemon", "--cluster-advertise", "10.0.0.1"],
            "needs --cluster-store",
        ),
        (
            vec![
                "daemon",
                "--cluster-store",
                "etcd://10.0.0.1:2379",
                "--cluster-advertise",
                "0.0.0.0",
            ],
            "cannot be reached",
        ),
    ] {
        let out = env.run(&args);
        assert!(!out.status.success(), "{args:?} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    // Not in a cluster: said, with the way in.
    let err = env.fail(&["cluster", "ls"]);
    assert!(err.contains("not in a cluster"), "{err}");
    assert!(err.contains("--cluster-store"), "{err}");

    let Some(h) = Hosts::start(1) else {
        return common::skip("needs root to make the hosts' namespaces");
    };
    // The CLI, run in host 0's namespace, starts the daemon there by
    // itself; it reads the cluster from daemon.json.
    let host = &h.hosts[0];
    std::fs::create_dir_all(&host.env.state).unwrap();
    let (uid, gid) = common::test_ids().unwrap();
    nix::unistd::chown(&host.env.state, Some(uid.into()), Some(gid.into())).unwrap();
    let conf = host.env.state.join("daemon.json");
    std::fs::write(
        &conf,
        format!(
            r#"{{"cluster-store": "{}", "cluster-advertise": "{}:4800", "cluster-prefix": "/ci-one", "cluster-ttl": 3}}"#,
            h.store(),
            host.addr
        ),
    )
    .unwrap();
    nix::unistd::chown(&conf, Some(uid.into()), Some(gid.into())).unwrap();
    let want = vec![format!("{}:4800", host.addr)];
    let ok = Env::wait_until(Duration::from_secs(15), || {
        let out = h
            .user_cmd_in(0, &[&common::warren_bin(), "cluster", "ls", "-q"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
            == want
    });
    let log = std::fs::read_to_string(host.env.runtime.join("daemon.log")).unwrap_or_default();
    assert!(ok, "the auto-started daemon did not join:\n{log}");
    let info = host.env.ok(&["info"]);
    assert!(info.contains("Cluster Prefix: /ci-one"), "{info}");
    // A daemon.json that is not one is an error naming the file.
    std::fs::write(&conf, r#"{"cluster-stor": "x"}"#).unwrap();
    let out = host.env.run(&["daemon"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("daemon.json"), "{err}");
    // Stop the auto-started daemon before the namespaces go.
    if let Ok(pid) = std::fs::read_to_string(host.env.runtime.join("warren.pid")) {
        if let Ok(pid) = pid.trim().parse::<i32>() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM);
        }
    }
}

/// `network inspect NAME` on host `i`, the one network's object.
fn inspect(h: &Hosts, i: usize, name: &str) -> serde_json::Value {
    h.hosts[i].env.json(&["network", "inspect", name])[0].clone()
}

#[test]
fn overlay_networks_are_the_clusters() {
    let Some(mut h) = cluster_of(3, 3) else {
        return common::skip("needs root to make the hosts' namespaces");
    };
    // A local network on host 0 that the overlay pool must avoid.
    h.hosts[0]
        .env
        .ok(&["network", "create", "--subnet", "10.0.0.0/24", "local-ten"]);

    // $ docker network create -d overlay demo      (seed 004, on host 0)
    let made = Instant::now();
    let id = h.hosts[0]
        .env
        .ok(&["network", "create", "-d", "overlay", "demo"]);
    let id = id.trim().to_string();
    assert_eq!(id.len(), 64, "{id}");
    // ... and it is there on the other hosts, scope global.
    for i in 1..3 {
        let env = &h.hosts[i].env;
        let ok = Env::wait_until(Duration::from_secs(5), || {
            env.ok(&[
                "network",
                "ls",
                "--format",
                "{{.Name}} {{.Driver}} {{.Scope}}",
            ])
            .lines()
            .any(|l| l == "demo overlay global")
        });
        assert!(ok, "host {i} never listed demo:\n{}", h.daemon_log(i));
    }
    eprintln!(
        "an overlay network reached every member {:?} after create",
        made.elapsed()
    );
    let first = inspect(&h, 0, "demo");
    assert_eq!(first["Id"], id.as_str());
    assert_eq!(first["Driver"], "overlay");
    assert_eq!(first["Scope"], "global");
    // Docker's pool, past the creating host's local 10.0.0.0/24.
    assert_eq!(
        first["IPAM"]["Config"][0]["Subnet"], "10.0.1.0/24",
        "{first}"
    );
    assert_eq!(first["IPAM"]["Config"][0]["Gateway"], "10.0.1.1", "{first}");
    for i in 1..3 {
        let other = inspect(&h, i, "demo");
        assert_eq!(other["Id"], first["Id"], "host {i}: {other}");
        assert_eq!(other["IPAM"], first["IPAM"], "host {i}: {other}");
        assert_eq!(
            other["Options"]["com.docker.network.driver.mtu"], "1450",
            "{other}"
        );
    }

    // The same name from another host: refused, as a local duplicate is.
    let err = h.hosts[2]
        .env
        .fail(&["network", "create", "-d", "overlay", "demo"]);
    assert!(err.contains("already exists"), "{err}");

    // Host 0's local 10.0.0.0/24 is in its record, so overlay networks
    // made on the other hosts avoid it too.
    assert!(Env::wait_until(Duration::from_secs(5), || {
        let st = h.hosts[2].env.json(&["cluster", "ls", "--format", "json"]);
        st[0]["Members"].as_array().unwrap().iter().any(|m| {
            m["LocalSubnets"]
                .as_array()
                .is_some_and(|l| l.iter().any(|s| s == "10.0.0.0/24"))
        })
    }));
    let err = h.hosts[2].env.fail(&[
        "network",
        "create",
        "-d",
        "overlay",
        "--subnet",
        "10.0.0.0/24",
        "clash",
    ]);
    assert!(err.contains("overlaps a local network of member"), "{err}");

    // Created at the same moment on three hosts: distinct subnets (and
    // VNIs), none lost.
    std::thread::scope(|s| {
        for i in 0..3 {
            let h = &h;
            s.spawn(move || {
                for k in 0..3 {
                    h.hosts[i]
                        .env
                        .ok(&["network", "create", "-d", "overlay", &format!("o{i}{k}")]);
                }
            });
        }
    });
    let ok = Env::wait_until(Duration::from_secs(5), || {
        h.hosts[0]
            .env
            .ok(&["network", "ls", "-q", "--filter", "driver=overlay"])
            .lines()
            .count()
            == 10
    });
    assert!(ok, "host 0 does not list the ten overlay networks");
    let mut subnets = std::collections::BTreeSet::new();
    for line in h.hosts[0]
        .env
        .ok(&[
            "network",
            "ls",
            "--filter",
            "driver=overlay",
            "--format",
            "{{.Name}}",
        ])
        .lines()
    {
        let n = inspect(&h, 0, line);
        let subnet = n["IPAM"]["Config"][0]["Subnet"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(subnet.starts_with("10.0."), "{n}");
        assert_ne!(subnet, "10.0.0.0/24", "host 0's local subnet: {n}");
        assert!(subnets.insert(subnet.clone()), "{subnet} given twice");
    }

    // Sandboxes cannot join one yet, and say why.
    let out = h.hosts[1]
        .env
        .run(&["run", "--rm", "--network", "demo", "true"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("carries no sandboxes yet"), "{err}");

    // rm from another host: gone from every member.
    h.hosts[2].env.ok(&["network", "rm", "demo"]);
    for i in 0..3 {
        let env = &h.hosts[i].env;
        let ok = Env::wait_until(Duration::from_secs(5), || {
            !env.ok(&["network", "ls"]).contains("demo")
        });
        assert!(ok, "host {i} still lists demo");
    }
    // Its name is free again.
    h.hosts[1]
        .env
        .ok(&["network", "create", "-d", "overlay", "demo"]);
    assert!(Env::wait_until(Duration::from_secs(5), || {
        h.hosts[0].env.ok(&["network", "ls"]).contains("demo")
    }));

    // etcd down: the overlay networks stay listed, a new one is refused
    // at once, naming the cause.
    for i in 0..3 {
        h.stop_etcd(i);
    }
    let env = &h.hosts[0].env;
    assert!(Env::wait_until(Duration::from_secs(10), || {
        !env.run(&["cluster", "ls"]).status.success()
    }));
    assert!(env.ok(&["network", "ls"]).contains("demo"));
    let t = Instant::now();
    let err = env.fail(&["network", "create", "-d", "overlay", "late"]);
    assert!(err.contains("etcd"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

#[test]
fn overlay_needs_a_cluster() {
    let env = Env::new();
    let err = env.fail(&["network", "create", "-d", "overlay", "demo"]);
    assert!(err.contains("needs a cluster"), "{err}");
    assert!(err.contains("--cluster-store"), "{err}");
    assert!(!env.ok(&["network", "ls"]).contains("demo"));
}
