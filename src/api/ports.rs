//! Published-port specifications: `-p [HOSTIP:][HOSTPORT:]PORT[/tcp|/udp]`.
//!
//! Parsed into one [`PortMapping`] per port (ranges such as
//! `8000-8009:80-89` expand to ten), so the daemon, the CLI and `warren
//! port` all deal with single ports. A missing host port means "pick a free
//! one" (`-p 80`); a missing host address means the daemon's default
//! (0.0.0.0, as Docker). IPv6 host addresses are written in brackets:
//! `[::1]:8080:80`.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Most ports one spec may expand to.
pub const MAX_RANGE: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// One published port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortMapping {
    /// Host address to listen on; `None` = the daemon's default.
    #[serde(default)]
    pub host_ip: Option<IpAddr>,
    /// Host port; `None` (or 0) = a free one chosen at publish time.
    #[serde(default)]
    pub host_port: Option<u16>,
    /// The sandbox's port.
    pub port: u16,
    pub proto: Proto,
    /// The network whose address of the sandbox the port forwards to;
    /// `None` = its first network (what `-p` means). CNI names the
    /// network of each ADD here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// With `host_port`, a range of host ports to take a free one from
    /// (`-p 9200-9205:80`); never set in a mapping as bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port_end: Option<u16>,
}

impl fmt::Display for PortMapping {
    /// `8080/tcp -> 0.0.0.0:8080`, as `docker port` prints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ip = self
            .host_ip
            .map(|i| i.to_string())
            .unwrap_or_else(|| "0.0.0.0".into());
        let host = match self.host_ip {
            Some(IpAddr::V6(_)) => format!("[{ip}]"),
            _ => ip,
        };
        write!(
            f,
            "{}/{} -> {host}:{}",
            self.port,
            self.proto,
            self.host_port.unwrap_or(0)
        )
    }
}

/// Parses one `-p` value into its mappings.
pub fn parse(spec: &str) -> Result<Vec<PortMapping>, String> {
    let bad = |why: &str| {
        format!("invalid port spec {spec:?}: {why} (expected [HOSTIP:][HOSTPORT:]PORT[/tcp|/udp])")
    };
    let (body, proto) = match spec.rsplit_once('/') {
        Some((b, "tcp")) => (b, Proto::Tcp),
        Some((b, "udp")) => (b, Proto::Udp),
        Some((_, p)) => return Err(bad(&format!("unknown protocol {p:?}"))),
        None => (spec, Proto::Tcp),
    };
    // An IPv6 host address is bracketed and contains colons of its own.
    let (host_ip, rest) = if let Some(stripped) = body.strip_prefix('[') {
        let (ip, rest) = stripped
            .split_once(']')
            .ok_or_else(|| bad("unclosed '['"))?;
        let ip: IpAddr = ip.parse().map_err(|_| bad("invalid IPv6 address"))?;
        let rest = rest
            .strip_prefix(':')
            .ok_or_else(|| bad("expected ':' after the address"))?;
        (Some(ip), rest)
    } else {
        let parts: Vec<&str> = body.split(':').collect();
        match parts.len() {
            1 | 2 => (None, body),
            3 => {
                let ip = if parts[0].is_empty() {
                    None
                } else {
                    Some(
                        parts[0]
                            .parse::<IpAddr>()
                            .map_err(|_| bad("invalid host address"))?,
                    )
                };
                (ip, &body[parts[0].len() + 1..])
            }
            _ => return Err(bad("too many ':'")),
        }
    };
    let (host, container) = match rest.split_once(':') {
        Some((h, c)) => (Some(h), c),
        None => (None, rest),
    };
    let container = range(container).map_err(|e| bad(&e))?;
    // Docker: host port 0 is a free one, as none is.
    let host = match host {
        None | Some("") | Some("0") => None,
        Some(h) => Some(range(h).map_err(|e| bad(&e))?),
    };
    if let Some((h0, h1)) = host {
        if container.0 == container.1 && h1 > h0 {
            // Docker: one sandbox port, a free host port from the range.
            return Ok(vec![PortMapping {
                host_ip,
                host_port: Some(h0),
                port: container.0,
                proto,
                network: None,
                host_port_end: Some(h1),
            }]);
        }
        if h1 - h0 != container.1 - container.0 {
            return Err(bad("the host and sandbox ranges differ in length"));
        }
    }
    let count = usize::from(container.1 - container.0) + 1;
    if count > MAX_RANGE {
        return Err(bad(&format!("at most {MAX_RANGE} ports per spec")));
    }
    Ok((0..count as u16)
        .map(|i| PortMapping {
            host_ip,
            host_port: host.map(|(h0, _)| h0 + i),
            port: container.0 + i,
            proto,
            network: None,
            host_port_end: None,
        })
        .collect())
}

/// `N` or `N-M`, ports 1..=65535.
fn range(s: &str) -> Result<(u16, u16), String> {
    let port = |p: &str| match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("{p:?} is not a port (1-65535)")),
        Ok(n) => Ok(n),
    };
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (port(a)?, port(b)?);
            if a > b {
                return Err(format!("range {s} runs backwards"));
            }
            Ok((a, b))
        }
        None => {
            let p = port(s)?;
            Ok((p, p))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(spec: &str) -> PortMapping {
        let v = parse(spec).unwrap();
        assert_eq!(v.len(), 1, "{spec}");
        v[0].clone()
    }

    #[test]
    fn docker_forms() {
        assert_eq!(
            one("80"),
            PortMapping {
                host_ip: None,
                host_port: None,
                port: 80,
                proto: Proto::Tcp,
                network: None,
                host_port_end: None,
            }
        );
        assert_eq!(one("8080:80").host_port, Some(8080));
        assert_eq!(one("53:53/udp").proto, Proto::Udp);
        let m = one("127.0.0.1:8080:80");
        assert_eq!(m.host_ip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(m.host_port, Some(8080));
        let m = one("127.0.0.1::80");
        assert_eq!((m.host_port, m.port), (None, 80));
        let m = one("[::1]:8080:80/tcp");
        assert_eq!(m.host_ip, Some("::1".parse().unwrap()));
        assert_eq!(m.to_string(), "80/tcp -> [::1]:8080");
        let r = parse("8000-8009:80-89").unwrap();
        assert_eq!(r.len(), 10);
        assert_eq!((r[9].host_port, r[9].port), (Some(8009), 89));
        assert_eq!(parse("80-81").unwrap().len(), 2);
        assert_eq!(one("0:80").host_port, None);
        let m = one("9200-9205:80");
        assert_eq!(
            (m.host_port, m.host_port_end, m.port),
            (Some(9200), Some(9205), 80)
        );
        assert_eq!(one("127.0.0.1:0:80/udp").host_port, None);
    }

    #[test]
    fn errors_name_the_problem() {
        for (spec, why) in [
            ("", "not a port"),
            ("0", "not a port"),
            ("70000", "not a port"),
            ("80/sctp", "unknown protocol"),
            ("8000-8009:80-85", "differ in length"),
            ("90-80", "backwards"),
            ("1.2.3:80:80", "invalid host address"),
            ("[::1:80:80", "unclosed"),
            ("a:b:c:d", "too many"),
            ("1-2000", "at most"),
        ] {
            let e = parse(spec).unwrap_err();
            assert!(e.contains(why), "{spec}: {e}");
        }
    }
}
