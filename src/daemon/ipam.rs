//! IP address management: choosing subnets and handing out addresses.
//!
//! Subnets: the default `bridge` network asks for 172.17.0.0/16; new
//! networks get the next free /16 of 172.18.0.0–172.31.0.0, then the /20s of
//! 192.168.0.0/16, skipping anything that overlaps another network or a route
//! of the host (from `/proc/net/route`, the default route excepted), so a
//! sandbox never shadows a network the host can reach.
//!
//! Addresses: each network's [`Ipam`] hands out the lowest free address of
//! its allocation range (the `--ip-range`, else the subnet), as Docker does,
//! so a freed address is reused first. The network and broadcast addresses,
//! the gateway and every aux address are reserved and never handed out,
//! not even on request.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// Why an address could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    #[error("address {ip} is not in the network's subnet {subnet}")]
    OutsideSubnet { ip: Ipv4Addr, subnet: Ipv4Net },
    #[error("address {0} is the network's gateway")]
    Gateway(Ipv4Addr),
    #[error("address {0} is the subnet's network or broadcast address")]
    NetworkOrBroadcast(Ipv4Addr),
    #[error("address {ip} is reserved as auxiliary address {name:?}")]
    Aux { ip: Ipv4Addr, name: String },
    #[error("address {0} is already in use")]
    InUse(Ipv4Addr),
    #[error("no free address left in {0}")]
    Exhausted(Ipv4Net),
}

/// The address book of one network.
#[derive(Debug, Clone)]
pub struct Ipam {
    subnet: Ipv4Net,
    range: Ipv4Net,
    gateway: Ipv4Addr,
    aux: Vec<(String, Ipv4Addr)>,
    used: BTreeSet<Ipv4Addr>,
}

impl Ipam {
    pub fn new(
        subnet: Ipv4Net,
        range: Option<Ipv4Net>,
        gateway: Ipv4Addr,
        aux: impl IntoIterator<Item = (String, Ipv4Addr)>,
    ) -> Ipam {
        Ipam {
            subnet,
            range: range.unwrap_or(subnet),
            gateway,
            aux: aux.into_iter().collect(),
            used: BTreeSet::new(),
        }
    }

    /// Why `ip` can never be handed out, if it cannot.
    fn reserved(&self, ip: Ipv4Addr) -> Option<IpamError> {
        if !self.subnet.contains(&ip) {
            return Some(IpamError::OutsideSubnet {
                ip,
                subnet: self.subnet,
            });
        }
        if ip == self.subnet.network() || ip == self.subnet.broadcast() {
            return Some(IpamError::NetworkOrBroadcast(ip));
        }
        if ip == self.gateway {
            return Some(IpamError::Gateway(ip));
        }
        if let Some((name, _)) = self.aux.iter().find(|(_, a)| *a == ip) {
            return Some(IpamError::Aux {
                ip,
                name: name.clone(),
            });
        }
        None
    }

    /// Takes `ip` if given (anywhere in the subnet, as Docker allows static
    /// addresses outside `--ip-range`), else the lowest free address of the
    /// range.
    pub fn allocate(&mut self, ip: Option<Ipv4Addr>) -> Result<Ipv4Addr, IpamError> {
        if let Some(ip) = ip {
            if let Some(e) = self.reserved(ip) {
                return Err(e);
            }
            if !self.used.insert(ip) {
                return Err(IpamError::InUse(ip));
            }
            return Ok(ip);
        }
        let start = u32::from(self.range.network());
        let end = u32::from(self.range.broadcast());
        for n in start..=end {
            let ip = Ipv4Addr::from(n);
            if self.reserved(ip).is_none() && !self.used.contains(&ip) {
                self.used.insert(ip);
                return Ok(ip);
            }
        }
        Err(IpamError::Exhausted(self.range))
    }

    pub fn release(&mut self, ip: Ipv4Addr) {
        self.used.remove(&ip);
    }

    pub fn in_use(&self) -> usize {
        self.used.len()
    }
}

/// The subnet the default `bridge` network asks for.
pub fn default_bridge_subnet() -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::new(172, 17, 0, 0), 16).unwrap_or_default()
}

/// The pools new networks are carved from, in order of preference.
fn candidates() -> impl Iterator<Item = Ipv4Net> {
    let sixteens = (17u8..=31).map(|b| Ipv4Net::new(Ipv4Addr::new(172, b, 0, 0), 16));
    let twenties = (0u8..16).map(|i| Ipv4Net::new(Ipv4Addr::new(192, 168, i * 16, 0), 20));
    sixteens.chain(twenties).filter_map(Result::ok)
}

/// The first candidate that overlaps nothing in `taken` (`skip_bridge`:
/// 172.17.0.0/16 is kept for the default network).
pub fn choose_subnet(taken: &[Ipv4Net], skip_bridge: bool) -> Option<Ipv4Net> {
    candidates()
        .filter(|c| !(skip_bridge && *c == default_bridge_subnet()))
        .find(|c| !taken.iter().any(|t| overlaps(c, t)))
}

/// Docker's overlay pool: the first /24 of 10.0.0.0/8 that overlaps none
/// of `taken`.
pub fn choose_overlay_subnet(taken: &[Ipv4Net]) -> Option<Ipv4Net> {
    (0u32..1 << 16)
        .map(|i| {
            let net = Ipv4Addr::from(0x0a00_0000 | (i << 8));
            Ipv4Net::new(net, 24).expect("a /24")
        })
        .find(|c| !taken.iter().any(|t| overlaps(c, t)))
}

pub fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The host's IPv4 routes other than the default route, from
/// `/proc/net/route` (little-endian hex fields, as the kernel prints them).
pub fn host_routes() -> Vec<Ipv4Net> {
    let Ok(text) = std::fs::read_to_string("/proc/net/route") else {
        return Vec::new();
    };
    parse_proc_route(&text)
}

fn parse_proc_route(text: &str) -> Vec<Ipv4Net> {
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            continue;
        }
        let (Ok(dst), Ok(mask)) = (u32::from_str_radix(f[1], 16), u32::from_str_radix(f[7], 16))
        else {
            continue;
        };
        // The kernel prints the in-memory (network order) word as a native
        // integer, so its native-endian bytes are the address bytes.
        let dst = Ipv4Addr::from(dst.to_ne_bytes());
        let mask = u32::from(Ipv4Addr::from(mask.to_ne_bytes()));
        if mask == 0 {
            continue;
        }
        let prefix = mask.leading_ones() as u8;
        if let Ok(net) = Ipv4Net::new(dst, prefix) {
            out.push(net.trunc());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn lowest_free_first_and_reserved_never() {
        let mut ipam = Ipam::new(
            net("10.0.0.0/29"),
            None,
            "10.0.0.1".parse().unwrap(),
            [("printer".to_string(), "10.0.0.3".parse().unwrap())],
        );
        let a = ipam.allocate(None).unwrap();
        let b = ipam.allocate(None).unwrap();
        assert_eq!(
            (a.to_string().as_str(), b.to_string().as_str()),
            ("10.0.0.2", "10.0.0.4")
        );
        ipam.release(a);
        assert_eq!(
            ipam.allocate(None).unwrap(),
            a,
            "a freed address is reused first"
        );
        for _ in 0..2 {
            ipam.allocate(None).unwrap();
        }
        assert_eq!(
            ipam.allocate(None),
            Err(IpamError::Exhausted(net("10.0.0.0/29")))
        );
        assert!(matches!(
            ipam.allocate(Some("10.0.0.1".parse().unwrap())),
            Err(IpamError::Gateway(_))
        ));
        assert!(matches!(
            ipam.allocate(Some("10.0.0.3".parse().unwrap())),
            Err(IpamError::Aux { .. })
        ));
        assert!(matches!(
            ipam.allocate(Some("10.0.0.7".parse().unwrap())),
            Err(IpamError::NetworkOrBroadcast(_))
        ));
        assert!(matches!(
            ipam.allocate(Some("10.0.1.2".parse().unwrap())),
            Err(IpamError::OutsideSubnet { .. })
        ));
        assert!(matches!(
            ipam.allocate(Some("10.0.0.2".parse().unwrap())),
            Err(IpamError::InUse(_))
        ));
    }

    #[test]
    fn ip_range_restricts_automatic_allocation() {
        let mut ipam = Ipam::new(
            net("10.1.0.0/16"),
            Some(net("10.1.5.0/24")),
            "10.1.0.1".parse().unwrap(),
            [],
        );
        assert_eq!(ipam.allocate(None).unwrap().to_string(), "10.1.5.0");
        assert_eq!(
            ipam.allocate(Some("10.1.9.9".parse().unwrap()))
                .unwrap()
                .to_string(),
            "10.1.9.9"
        );
    }

    #[test]
    fn subnet_choice_skips_taken_and_routes() {
        let taken = [
            net("172.17.0.0/16"),
            net("172.18.0.0/16"),
            net("172.19.3.0/24"),
        ];
        assert_eq!(choose_subnet(&taken, true), Some(net("172.20.0.0/16")));
        let all: Vec<Ipv4Net> = (17..=31).map(|b| net(&format!("172.{b}.0.0/16"))).collect();
        assert_eq!(choose_subnet(&all, true), Some(net("192.168.0.0/20")));
        assert_eq!(choose_subnet(&[], false), Some(net("172.17.0.0/16")));
    }

    #[test]
    fn parses_proc_net_route() {
        let text =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                    eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                    eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                    docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";
        assert_eq!(
            parse_proc_route(text),
            vec![net("192.0.2.0/24"), net("172.17.0.0/16")]
        );
    }
}
