//! Published ports on the control-plane side: binding the host listeners
//! and showing the mappings (`port`, `ps`, `inspect`).
//!
//! The daemon binds every listener itself, *before* a sandbox is
//! committed, so a host port in use is a clear error and nothing is left
//! half-made; the bound fds then go to the switch of the sandbox's network
//! ([`crate::switch::SwitchHandle::add_forward`]), whose NAT engine serves
//! them (see [`crate::gateway::nat`]). A mapping is stored *resolved*: its
//! host address and port are the ones actually bound (`-p 80` binds port 0
//! and keeps the port the kernel chose), so `warren port` shows them and a
//! restarted daemon binds the same ones again.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::OwnedFd;

use crate::api::ports::{PortMapping, Proto};
use crate::gateway::nat::Transport;

/// Binds the host socket of `m` (its host address, or `default_ip`; its
/// host port, or a free one). Returns the mapping as bound and the
/// listener's fd.
pub fn bind(m: &PortMapping, default_ip: IpAddr) -> io::Result<(PortMapping, OwnedFd)> {
    // An IPv6 listener serves IPv6 clients (shown to the sandbox as its
    // gateway, which has no IPv6) and, bound to `::`, IPv4 clients too.
    let ip = m.host_ip.unwrap_or(default_ip);
    let addr = SocketAddr::new(ip, m.host_port.unwrap_or(0));
    let (fd, local): (OwnedFd, SocketAddr) = match m.proto {
        Proto::Tcp => {
            // std sets SO_REUSEADDR, so a port freed a moment ago (clients
            // in TIME_WAIT) binds again at once.
            let l = TcpListener::bind(addr)?;
            l.set_nonblocking(true)?;
            let local = l.local_addr()?;
            (l.into(), local)
        }
        Proto::Udp => {
            let u = UdpSocket::bind(addr)?;
            u.set_nonblocking(true)?;
            let local = u.local_addr()?;
            (u.into(), local)
        }
    };
    let bound = PortMapping {
        host_ip: Some(local.ip()),
        host_port: Some(local.port()),
        ..m.clone()
    };
    Ok((bound, fd))
}

/// [`bind`], or for a mapping with a host port range (`-p 9200-9205:80`)
/// the first port of the range that binds (the last error if none does).
/// The mapping as bound has no range.
pub fn bind_any(m: &PortMapping, default_ip: IpAddr) -> io::Result<(PortMapping, OwnedFd)> {
    let (Some(start), Some(end)) = (m.host_port, m.host_port_end) else {
        return bind(m, default_ip);
    };
    let mut last = io::Error::from(io::ErrorKind::AddrInUse);
    for port in start..=end {
        let one = PortMapping {
            host_port: Some(port),
            host_port_end: None,
            ..m.clone()
        };
        match bind(&one, default_ip) {
            Ok(b) => return Ok(b),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The NAT's name for a protocol.
pub fn transport(p: Proto) -> Transport {
    match p {
        Proto::Tcp => Transport::Tcp,
        Proto::Udp => Transport::Udp,
    }
}

/// Whether two bound mappings would clash on the host (same protocol and
/// port, and the same address or either one the wildcard).
pub fn clash(a: &PortMapping, b: &PortMapping) -> bool {
    let wild = |m: &PortMapping| m.host_ip.map_or(true, |i| i.is_unspecified());
    a.proto == b.proto
        && a.host_port.is_some()
        && a.host_port == b.host_port
        && (wild(a) || wild(b) || a.host_ip == b.host_ip)
}

/// Whether `spec` (from `port rm`) names the published mapping `m`: same
/// sandbox port and protocol, and the host address and port where given.
pub fn selects(spec: &PortMapping, m: &PortMapping) -> bool {
    spec.proto == m.proto
        && spec.port == m.port
        && spec.host_port.map_or(true, |p| Some(p) == m.host_port)
        && spec.host_ip.map_or(true, |i| Some(i) == m.host_ip)
}

/// One port as `ps` lists it (Docker's port summary): a published one
/// with its host address and port, an exposed one without. The derived
/// order is Docker's: by the sandbox's port, then the host address (none
/// first), the host port, the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Listed {
    pub port: u16,
    pub host: Option<(IpAddr, u16)>,
    pub proto: Proto,
}

/// The ports of a sandbox as `ps` lists them: every published mapping,
/// and every exposed port (`PORT/PROTO`) that none publishes.
pub fn listed(published: &[PortMapping], exposed: &[String]) -> Vec<Listed> {
    let mut out: Vec<Listed> = published
        .iter()
        .map(|m| Listed {
            port: m.port,
            host: Some((
                m.host_ip
                    .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
                m.host_port.unwrap_or(0),
            )),
            proto: m.proto,
        })
        .collect();
    for e in exposed {
        let (port, proto) = e.split_once('/').unwrap_or((e.as_str(), "tcp"));
        let (Ok(port), Some(proto)) = (port.parse::<u16>(), parse_proto(proto)) else {
            continue;
        };
        if !out.iter().any(|l| l.port == port && l.proto == proto) {
            out.push(Listed {
                port,
                host: None,
                proto,
            });
        }
    }
    out
}

fn parse_proto(p: &str) -> Option<Proto> {
    match p {
        "tcp" => Some(Proto::Tcp),
        "udp" => Some(Proto::Udp),
        _ => None,
    }
}

/// PORTS of `docker ps`, by the rules of the Docker CLI's
/// `DisplayablePorts`: the ports sorted ([`Listed`]'s order); a port
/// published on the same host port as its own, or only exposed, joins a
/// run of consecutive ports of the same host address and protocol
/// (`0.0.0.0:8000-8002->8000-8002/tcp`, `7000-7001/tcp`); a port
/// published on another host port stands alone
/// (`0.0.0.0:9090->90/tcp`). The runs come first, in the order their
/// address and protocol first appeared (a run that a gap ends is written
/// when the gap is met), then the lone ones, in sorted order.
pub fn ps_column(ports: &[Listed]) -> String {
    let mut ports = ports.to_vec();
    ports.sort();
    /// An open run: host address (none: exposed only), protocol, first
    /// and last port.
    struct Run(Option<IpAddr>, Proto, u16, u16);
    fn text(r: &Run) -> String {
        let span = if r.2 == r.3 {
            r.2.to_string()
        } else {
            format!("{}-{}", r.2, r.3)
        };
        match r.0 {
            Some(ip) => format!("{}->{span}/{}", host_port(ip, &span), r.1),
            None => format!("{span}/{}", r.1),
        }
    }
    let mut runs: Vec<Run> = Vec::new();
    let mut out = Vec::new();
    let mut lone = Vec::new();
    for p in ports {
        let ip = match p.host {
            Some((ip, public)) if public != p.port => {
                lone.push(format!(
                    "{}->{}/{}",
                    host_port(ip, &public.to_string()),
                    p.port,
                    p.proto
                ));
                continue;
            }
            Some((ip, _)) => Some(ip),
            None => None,
        };
        match runs.iter_mut().find(|r| r.0 == ip && r.1 == p.proto) {
            None => runs.push(Run(ip, p.proto, p.port, p.port)),
            Some(r) if r.3.checked_add(1) == Some(p.port) => r.3 = p.port,
            Some(r) => {
                out.push(text(r));
                (r.2, r.3) = (p.port, p.port);
            }
        }
    }
    out.extend(runs.iter().map(text));
    out.extend(lone);
    out.join(", ")
}

/// `ip:port` (`[ip]:port` for IPv6), as Go's `net.JoinHostPort`.
fn host_port(ip: IpAddr, port: &str) -> String {
    match ip {
        IpAddr::V6(ip) => format!("[{ip}]:{port}"),
        IpAddr::V4(ip) => format!("{ip}:{port}"),
    }
}

/// `NetworkSettings.Ports` of `docker inspect`:
/// `{"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}`, and each
/// exposed port (`PORT/PROTO`) that none publishes as `"7000/tcp": null`.
pub fn inspect_map(
    ports: &[PortMapping],
    exposed: &[String],
) -> BTreeMap<String, Option<Vec<BTreeMap<String, String>>>> {
    let mut map: BTreeMap<String, Option<Vec<BTreeMap<String, String>>>> =
        exposed.iter().map(|e| (e.clone(), None)).collect();
    for m in ports {
        let binding = BTreeMap::from([
            (
                "HostIp".to_string(),
                m.host_ip.map_or("0.0.0.0".into(), |i| i.to_string()),
            ),
            ("HostPort".to_string(), m.host_port.unwrap_or(0).to_string()),
        ]);
        map.entry(format!("{}/{}", m.port, m.proto))
            .or_insert(None)
            .get_or_insert_with(Vec::new)
            .push(binding);
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ports::parse;

    fn one(spec: &str) -> PortMapping {
        parse(spec).unwrap().remove(0)
    }

    #[test]
    fn binds_a_free_port_and_reports_it() {
        let (m, _fd) = bind(&one("127.0.0.1::80"), "0.0.0.0".parse().unwrap()).unwrap();
        assert_eq!(m.host_ip, Some("127.0.0.1".parse().unwrap()));
        assert_ne!(m.host_port, Some(0));
        // The same port again: in use, named by the error kind.
        let again = PortMapping {
            host_port: m.host_port,
            ..one("127.0.0.1::80")
        };
        let e = bind(&again, "0.0.0.0".parse().unwrap()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        let (u, _fd) = bind(&one("127.0.0.1::53/udp"), "0.0.0.0".parse().unwrap()).unwrap();
        assert_eq!(u.proto, Proto::Udp);
        let (v6, _fd) = bind(&one("[::1]::80"), "0.0.0.0".parse().unwrap()).unwrap();
        assert_eq!(v6.host_ip, Some("::1".parse().unwrap()));
    }

    #[test]
    fn shows_docker_shapes() {
        let a = one("0.0.0.0:8080:80");
        let b = one("127.0.0.1:5353:53/udp");
        assert_eq!(
            ps_column(&listed(&[a.clone(), b.clone()], &[])),
            "127.0.0.1:5353->53/udp, 0.0.0.0:8080->80/tcp"
        );
        let map = inspect_map(&[a.clone(), b], &["80/tcp".into(), "7000/tcp".into()]);
        let map = serde_json::to_value(&map).unwrap();
        assert_eq!(map["80/tcp"][0]["HostPort"], "8080");
        assert_eq!(map["7000/tcp"], serde_json::Value::Null, "exposed only");
        assert!(selects(&one("80"), &a));
        assert!(selects(&one("8080:80"), &a));
        assert!(!selects(&one("8081:80"), &a));
        assert!(!selects(&one("80/udp"), &a));
        assert!(clash(&a, &one("127.0.0.1:8080:81")));
        assert!(!clash(&a, &one("127.0.0.1:8080:81/udp")));
    }

    fn column(specs: &[&str], exposed: &[&str]) -> String {
        let published: Vec<PortMapping> = specs.iter().flat_map(|s| parse(s).unwrap()).collect();
        let exposed: Vec<String> = exposed.iter().map(|e| e.to_string()).collect();
        ps_column(&listed(&published, &exposed))
    }

    /// The cases of the Docker CLI's own `TestDisplayablePorts`, in
    /// warren's terms, and what `-p`/`--expose` combinations give.
    #[test]
    fn ps_column_sorts_and_collapses_as_docker() {
        // Published on the same port: a run, as Docker collapses them.
        assert_eq!(
            column(&["8000-8002:8000-8002"], &[]),
            "0.0.0.0:8000-8002->8000-8002/tcp"
        );
        // On other host ports: one entry each, never a range.
        assert_eq!(
            column(&["8000-8002:90-92"], &[]),
            "0.0.0.0:8000->90/tcp, 0.0.0.0:8001->91/tcp, 0.0.0.0:8002->92/tcp"
        );
        // Exposed only: the port alone, runs of them collapsed; runs first,
        // then the remapped ones; sorted by the sandbox's port.
        assert_eq!(
            column(&["9090:90"], &["7001/tcp", "7000/tcp", "53/udp"]),
            "53/udp, 7000-7001/tcp, 0.0.0.0:9090->90/tcp"
        );
        assert_eq!(column(&[], &["80/tcp"]), "80/tcp");
        // A gap ends a run: the ended run is written at once, the new one
        // with the other runs at the end.
        assert_eq!(
            column(&[], &["1/tcp", "2/tcp", "4/tcp", "9/udp"]),
            "1-2/tcp, 4/tcp, 9/udp"
        );
        assert_eq!(
            column(&[], &["1/tcp", "3/tcp", "5/udp", "6/tcp"]),
            "1/tcp, 3/tcp, 6/tcp, 5/udp"
        );
        // Addresses and protocols keep runs apart.
        assert_eq!(
            column(
                &[
                    "127.0.0.1:80:80",
                    "127.0.0.1:81:81",
                    "0.0.0.0:82:82",
                    "83:83/udp"
                ],
                &[]
            ),
            "127.0.0.1:80-81->80-81/tcp, 0.0.0.0:82->82/tcp, 0.0.0.0:83->83/udp"
        );
        assert_eq!(column(&["[::1]:8080:8080"], &[]), "[::1]:8080->8080/tcp");
        // A published port is not listed again as exposed.
        assert_eq!(column(&["8080:80"], &["80/tcp"]), "0.0.0.0:8080->80/tcp");
        assert_eq!(column(&[], &[]), "");
    }

    /// The Docker CLI's largest `TestDisplayablePorts` case (without its
    /// sctp port): exposed and remapped ports on two addresses.
    #[test]
    fn ps_column_matches_dockers_mixed_case() {
        let l = |port, host: Option<(&str, u16)>, proto| Listed {
            port,
            host: host.map(|(ip, p)| (ip.parse().unwrap(), p)),
            proto,
        };
        let (t, u) = (Proto::Tcp, Proto::Udp);
        let mut ports = vec![
            l(80, None, t),
            l(1024, None, t),
            l(80, None, u),
            l(1024, None, u),
        ];
        for ip in ["1.1.1.1", "2.1.1.1"] {
            for proto in [t, u] {
                ports.push(l(1024, Some((ip, 80)), proto));
                ports.push(l(80, Some((ip, 1024)), proto));
            }
        }
        assert_eq!(
            ps_column(&ports),
            "80/tcp, 80/udp, 1024/tcp, 1024/udp, \
             1.1.1.1:1024->80/tcp, 1.1.1.1:1024->80/udp, 2.1.1.1:1024->80/tcp, 2.1.1.1:1024->80/udp, \
             1.1.1.1:80->1024/tcp, 1.1.1.1:80->1024/udp, 2.1.1.1:80->1024/tcp, 2.1.1.1:80->1024/udp"
        );
    }
}
