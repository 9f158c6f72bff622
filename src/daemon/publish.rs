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

/// `0.0.0.0:8080->80/tcp, …`, as `docker ps` shows PORTS.
pub fn ps_column(ports: &[PortMapping]) -> String {
    ports
        .iter()
        .map(|m| format!("{}->{}/{}", host_part(m), m.port, m.proto))
        .collect::<Vec<_>>()
        .join(", ")
}

fn host_part(m: &PortMapping) -> String {
    let port = m.host_port.unwrap_or(0);
    match m.host_ip {
        Some(IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
        Some(ip) => format!("{ip}:{port}"),
        None => format!("0.0.0.0:{port}"),
    }
}

/// `NetworkSettings.Ports` of `docker inspect`:
/// `{"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}`.
pub fn inspect_map(
    ports: &[PortMapping],
) -> BTreeMap<String, Option<Vec<BTreeMap<String, String>>>> {
    let mut map: BTreeMap<String, Option<Vec<BTreeMap<String, String>>>> = BTreeMap::new();
    for m in ports {
        let binding = BTreeMap::from([
            (
                "HostIp".to_string(),
                m.host_ip.map_or("0.0.0.0".into(), |i| i.to_string()),
            ),
            ("HostPort".to_string(), m.host_port.unwrap_or(0).to_string()),
        ]);
        map.entry(format!("{}/{}", m.port, m.proto))
            .or_insert_with(|| Some(Vec::new()))
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
            ps_column(&[a.clone(), b.clone()]),
            "0.0.0.0:8080->80/tcp, 127.0.0.1:5353->53/udp"
        );
        let map = inspect_map(&[a.clone(), b]);
        assert_eq!(
            serde_json::to_value(&map).unwrap()["80/tcp"][0]["HostPort"],
            "8080"
        );
        assert!(selects(&one("80"), &a));
        assert!(selects(&one("8080:80"), &a));
        assert!(!selects(&one("8081:80"), &a));
        assert!(!selects(&one("80/udp"), &a));
        assert!(clash(&a, &one("127.0.0.1:8080:81")));
        assert!(!clash(&a, &one("127.0.0.1:8080:81/udp")));
    }
}
