//! The name table: who is called what on which network, as one immutable
//! snapshot.
//!
//! The control plane builds a whole new [`NameTable`] after every change
//! (a sandbox attached, removed, connected or disconnected) and hands the
//! same `Arc` to every switch thread, which swaps it in between batches. A
//! query is therefore always answered from one consistent snapshot, and the
//! frame path never takes a lock (STYLE item 5).
//!
//! Everything a query needs is precomputed here, so answering is a few hash
//! lookups: per network, lower-cased names (sandbox name, 12-hex short id,
//! aliases) to addresses in connection order, and addresses to the endpoint's
//! PTR target `name.network.`; per sandbox, its networks in connection order
//! (the search order of a bare name).

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use hickory_proto::rr::Name;

/// A network as the DNS sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkInfo {
    /// The network's name (as created; matched case-insensitively in queries).
    pub name: String,
    /// Internal networks never forward: non-local names get NXDOMAIN.
    pub internal: bool,
    /// Whether sandbox names resolve on this network (false for the default
    /// `bridge` network, as in Docker).
    pub names_enabled: bool,
    /// The network's gateway address (never used as an upstream).
    pub gateway: Ipv4Addr,
}

/// One attachment of a sandbox to a network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointInfo {
    /// The network's name, as in [`NetworkInfo::name`].
    pub network: String,
    /// The endpoint's address on that network.
    pub ip: Ipv4Addr,
    /// The sandbox's aliases on that network.
    pub aliases: Vec<String>,
}

/// A sandbox as the DNS sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxInfo {
    /// The sandbox's name.
    pub name: String,
    /// The first 12 hex digits of its id.
    pub short_id: String,
    /// Its endpoints in connection order.
    pub endpoints: Vec<EndpointInfo>,
}

/// An immutable snapshot of every name on every network. See the module
/// documentation.
#[derive(Debug, Default)]
pub struct NameTable {
    /// By exact network name.
    networks: HashMap<String, NetEntry>,
    /// Networks of each sandbox, in connection order (indexes into
    /// `net_names`).
    sandboxes: Vec<Vec<usize>>,
    /// Per sandbox (as `sandboxes`): whether one of its networks is not
    /// internal, so names outside warren are forwarded for it (Docker's
    /// rule, whatever network the query arrived on).
    external: Vec<bool>,
    /// Network names by index.
    net_names: Vec<String>,
    /// Every network's gateway address: never a forwarding target.
    gateways: HashSet<Ipv4Addr>,
    /// Per network that opted in to reaching the host's loopback: the
    /// address [`HOST_NAME`] answers with there.
    host: HashMap<String, Vec<Ipv4Addr>>,
    /// Per `(network, address)` of a sandbox run with `--dns`: where its
    /// queries for names outside warren go instead of the daemon's
    /// upstreams.
    upstreams: HashMap<(String, Ipv4Addr), Arc<[SocketAddr]>>,
}

/// The name of the host's loopback, on networks that opted in
/// (`--opt host-loopback=true`).
pub const HOST_NAME: &str = "host.warren.internal";

/// One network's names.
#[derive(Debug)]
struct NetEntry {
    index: usize,
    /// Lower-cased name, for `name.network` queries.
    lower: String,
    internal: bool,
    names_enabled: bool,
    /// Lower-cased name, short id or alias → addresses, in the order the
    /// endpoints were listed, without duplicates.
    names: HashMap<String, Vec<Ipv4Addr>>,
    /// Endpoint address → its sandbox (index into `NameTable::sandboxes`)
    /// and PTR target.
    endpoints: HashMap<Ipv4Addr, Endpoint>,
}

#[derive(Debug)]
struct Endpoint {
    sandbox: usize,
    /// `name.network.`, or `None` when that is not a valid DNS name.
    ptr: Option<Name>,
}

/// What the table knows about the network a query arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NetworkFlags {
    pub internal: bool,
    pub names_enabled: bool,
}

impl NameTable {
    /// Build the snapshot. Endpoints on networks that are not listed are
    /// ignored; names that repeat on one network (a shared alias) collect
    /// every address once, in listing order.
    pub fn build(networks: &[NetworkInfo], sandboxes: &[SandboxInfo]) -> NameTable {
        let mut table = NameTable::default();
        for net in networks {
            if table.networks.contains_key(&net.name) {
                continue;
            }
            let index = table.net_names.len();
            table.net_names.push(net.name.clone());
            table.gateways.insert(net.gateway);
            table.networks.insert(
                net.name.clone(),
                NetEntry {
                    index,
                    lower: net.name.to_ascii_lowercase(),
                    internal: net.internal,
                    names_enabled: net.names_enabled,
                    names: HashMap::new(),
                    endpoints: HashMap::new(),
                },
            );
        }
        for sandbox in sandboxes {
            let index = table.sandboxes.len();
            let mut order = Vec::with_capacity(sandbox.endpoints.len());
            let mut external = false;
            for ep in &sandbox.endpoints {
                let Some(net) = table.networks.get_mut(&ep.network) else {
                    continue;
                };
                external |= !net.internal;
                if !order.contains(&net.index) {
                    order.push(net.index);
                }
                let ptr = Name::from_ascii(format!("{}.{}.", sandbox.name, ep.network)).ok();
                net.endpoints.entry(ep.ip).or_insert(Endpoint {
                    sandbox: index,
                    ptr,
                });
                if !net.names_enabled {
                    continue;
                }
                let names = [&sandbox.name, &sandbox.short_id]
                    .into_iter()
                    .chain(ep.aliases.iter());
                for name in names {
                    let key = name.trim_end_matches('.').to_ascii_lowercase();
                    if key.is_empty() {
                        continue;
                    }
                    let addrs = net.names.entry(key).or_default();
                    if !addrs.contains(&ep.ip) {
                        addrs.push(ep.ip);
                    }
                }
            }
            table.sandboxes.push(order);
            table.external.push(external);
        }
        table
    }

    /// Answers [`HOST_NAME`] with `addr` for queries arriving on each of
    /// `networks` (those whose NAT maps `addr` to the host's loopback).
    /// Only there: elsewhere the name is not local and is forwarded (or
    /// NXDOMAIN on internal networks), like any other.
    pub fn with_host(
        mut self,
        networks: impl IntoIterator<Item = String>,
        addr: Ipv4Addr,
    ) -> NameTable {
        for n in networks {
            if self.networks.contains_key(&n) {
                self.host.insert(n, vec![addr]);
            }
        }
        self
    }

    /// Sends the forwarded queries of the sandbox at `ip` on `network` to
    /// `upstreams` (`run --dns`) instead of the daemon's.
    pub fn with_upstreams(
        mut self,
        network: &str,
        ip: Ipv4Addr,
        upstreams: Arc<[SocketAddr]>,
    ) -> NameTable {
        self.upstreams.insert((network.to_string(), ip), upstreams);
        self
    }

    /// The upstreams of the client at `ip` on `network`, if it has its own.
    pub fn upstreams_of(&self, network: &str, ip: Ipv4Addr) -> Option<Arc<[SocketAddr]>> {
        self.upstreams.get(&(network.to_string(), ip)).cloned()
    }

    /// Whether `ip` is the gateway of any network (never forwarded to).
    pub fn is_gateway(&self, ip: Ipv4Addr) -> bool {
        self.gateways.contains(&ip)
    }

    /// The flags of `network`, or `None` when the table does not know it.
    pub(crate) fn network(&self, network: &str) -> Option<NetworkFlags> {
        self.networks.get(network).map(|n| NetworkFlags {
            internal: n.internal,
            names_enabled: n.names_enabled,
        })
    }

    /// Whether names outside warren are forwarded for `asker` (an address
    /// on `network`): when `network` is not internal, or when the asker's
    /// sandbox is also on a network that is not (Docker forwards when any
    /// of a container's networks is external). An address the table does
    /// not know yet is judged by `network` alone.
    pub(crate) fn forwards_for(&self, network: &str, asker: Ipv4Addr) -> bool {
        let Some(net) = self.networks.get(network) else {
            return false;
        };
        if !net.internal {
            return true;
        }
        net.endpoints
            .get(&asker)
            .and_then(|ep| self.external.get(ep.sandbox))
            .copied()
            .unwrap_or(false)
    }

    /// The networks whose names `asker` (an address on `network`) may
    /// resolve, in search order: its sandbox's networks in connection order,
    /// or just `network` when the table does not know the address yet.
    /// Networks without names (`bridge`) are left out.
    fn scope(&self, network: &str, asker: Ipv4Addr) -> Vec<&NetEntry> {
        let Some(net) = self.networks.get(network) else {
            return Vec::new();
        };
        let order = match net.endpoints.get(&asker) {
            Some(ep) => self.sandboxes.get(ep.sandbox).map(Vec::as_slice),
            None => None,
        };
        let entries: Vec<&NetEntry> = match order {
            Some(order) => order
                .iter()
                .filter_map(|&i| self.net_names.get(i))
                .filter_map(|name| self.networks.get(name))
                .collect(),
            None => vec![net],
        };
        entries.into_iter().filter(|n| n.names_enabled).collect()
    }

    /// The addresses of `name` (lower-case, no trailing dot) for `asker`:
    /// a bare name is searched in its networks in connection order, first
    /// match wins; `name.network` picks one of its networks.
    pub(crate) fn lookup(&self, network: &str, asker: Ipv4Addr, name: &str) -> Option<&[Ipv4Addr]> {
        if name == HOST_NAME {
            if let Some(addrs) = self.host.get(network) {
                return Some(addrs);
            }
        }
        let scope = self.scope(network, asker);
        if let Some(addrs) = scope.iter().find_map(|n| n.names.get(name)) {
            return Some(addrs);
        }
        scope.iter().find_map(|n| {
            let prefix = name.strip_suffix(n.lower.as_str())?.strip_suffix('.')?;
            if prefix.is_empty() {
                return None;
            }
            n.names.get(prefix).map(Vec::as_slice)
        })
    }

    /// The PTR target of `ip` for `asker`: `name.network.` of the endpoint
    /// with that address on the first of the asker's networks that has one.
    pub(crate) fn reverse(&self, network: &str, asker: Ipv4Addr, ip: Ipv4Addr) -> Option<&Name> {
        self.scope(network, asker)
            .iter()
            .find_map(|n| n.endpoints.get(&ip))
            .and_then(|ep| ep.ptr.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_name_only_where_opted_in() {
        let nets = [net("dev", 18), net("prod", 19)];
        let addr = Ipv4Addr::new(169, 254, 1, 2);
        let t =
            NameTable::build(&nets, &[]).with_host(["dev".to_string(), "nosuch".to_string()], addr);
        let asker = Ipv4Addr::new(172, 18, 0, 2);
        assert_eq!(t.lookup("dev", asker, HOST_NAME), Some(&[addr][..]));
        assert_eq!(
            t.lookup("prod", Ipv4Addr::new(172, 19, 0, 2), HOST_NAME),
            None
        );
    }

    fn net(name: &str, third: u8) -> NetworkInfo {
        NetworkInfo {
            name: name.into(),
            internal: false,
            names_enabled: name != "bridge",
            gateway: Ipv4Addr::new(172, 18, third, 1),
        }
    }

    fn ep(network: &str, ip: [u8; 4], aliases: &[&str]) -> EndpointInfo {
        EndpointInfo {
            network: network.into(),
            ip: Ipv4Addr::from(ip),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
        }
    }

    #[test]
    fn shared_alias_collects_every_address_once() {
        let table = NameTable::build(
            &[net("prod", 1)],
            &[
                SandboxInfo {
                    name: "a".into(),
                    short_id: "aaaaaaaaaaaa".into(),
                    endpoints: vec![ep("prod", [172, 18, 1, 2], &["es", "ES"])],
                },
                SandboxInfo {
                    name: "b".into(),
                    short_id: "bbbbbbbbbbbb".into(),
                    endpoints: vec![ep("prod", [172, 18, 1, 3], &["es"])],
                },
            ],
        );
        let asker = Ipv4Addr::new(172, 18, 1, 2);
        assert_eq!(
            table.lookup("prod", asker, "es"),
            Some(&[Ipv4Addr::new(172, 18, 1, 2), Ipv4Addr::new(172, 18, 1, 3)][..])
        );
        assert!(table.is_gateway(Ipv4Addr::new(172, 18, 1, 1)));
        assert_eq!(table.lookup("nope", asker, "es"), None);
    }

    #[test]
    fn unknown_endpoint_network_is_ignored() {
        let table = NameTable::build(
            &[net("dev", 1)],
            &[SandboxInfo {
                name: "a".into(),
                short_id: "aaaaaaaaaaaa".into(),
                endpoints: vec![
                    ep("gone", [10, 0, 0, 2], &[]),
                    ep("dev", [172, 18, 1, 2], &[]),
                ],
            }],
        );
        assert_eq!(
            table.lookup("dev", Ipv4Addr::new(172, 18, 1, 2), "a"),
            Some(&[Ipv4Addr::new(172, 18, 1, 2)][..])
        );
    }
}
