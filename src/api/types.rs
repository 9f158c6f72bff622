//! Request and response bodies of the daemon's HTTP API.
//!
//! Requests are parsed strictly (`deny_unknown_fields`): a typo in a field
//! name is an error, not a silently ignored option. Responses that mirror a
//! Docker command (`network inspect`, `inspect`) use Docker's field names so
//! scripts written for Docker's JSON keep working.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Every error the API returns: what went wrong and what to do about it.
/// Both are always there (docs/api.md), `hint` empty when there is nothing
/// to add (it was left out then, until the `api_requests` fuzz target
/// held the API to its documented shape).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    #[serde(default)]
    pub hint: String,
}

/// `GET /v1/ping`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Ping {
    pub version: String,
    pub pid: u32,
}

/// `POST /v1/networks`. Addresses arrive as text and are validated by the
/// daemon, so API users get the same messages as the CLI.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkCreate {
    pub name: String,
    #[serde(default)]
    pub subnet: Option<String>,
    #[serde(default)]
    pub gateway: Option<String>,
    #[serde(default)]
    pub ip_range: Option<String>,
    #[serde(default)]
    pub aux_addresses: BTreeMap<String, String>,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub mtu: Option<u32>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Shown as `Attachable` (`--attachable`); any sandbox may join a
    /// warren network either way.
    #[serde(default)]
    pub attachable: bool,
    /// `bridge` (the default) or `overlay` (a network of the whole
    /// cluster; needs `--cluster-store`).
    #[serde(default)]
    pub driver: Option<String>,
}

/// One row of `GET /v1/networks` (`network ls`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkSummary {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub driver: String,
    pub scope: String,
    pub internal: bool,
    #[serde(rename = "IPv6")]
    pub ipv6: bool,
    pub subnet: String,
    pub gateway: String,
    pub created_at: String,
    pub labels: BTreeMap<String, String>,
    pub containers: usize,
}

/// `GET /v1/networks/{name}`: shaped like one element of
/// `docker network inspect`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkInspect {
    pub name: String,
    pub id: String,
    pub created: String,
    pub scope: String,
    pub driver: String,
    /// Always true: every warren network has IPv4 (Docker 28's field).
    #[serde(rename = "EnableIPv4", default = "yes")]
    pub enable_ipv4: bool,
    #[serde(rename = "EnableIPv6")]
    pub enable_ipv6: bool,
    #[serde(rename = "IPAM")]
    pub ipam: Ipam,
    pub internal: bool,
    pub attachable: bool,
    /// Always false: no swarm routing mesh.
    #[serde(default)]
    pub ingress: bool,
    #[serde(default)]
    pub config_from: ConfigFrom,
    /// Always false: no config-only networks.
    #[serde(default)]
    pub config_only: bool,
    pub containers: BTreeMap<String, NetworkContainer>,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

fn yes() -> bool {
    true
}

/// `ConfigFrom` of `network inspect`: the config-only network this one
/// took its configuration from (never one: `Network` is empty).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConfigFrom {
    pub network: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Ipam {
    pub driver: String,
    pub options: BTreeMap<String, String>,
    pub config: Vec<IpamConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IpamConfig {
    pub subnet: String,
    #[serde(rename = "IPRange", default, skip_serializing_if = "String::is_empty")]
    pub ip_range: String,
    pub gateway: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub auxiliary_addresses: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkContainer {
    pub name: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    pub mac_address: String,
    #[serde(rename = "IPv4Address")]
    pub ipv4_address: String,
    #[serde(rename = "IPv6Address")]
    pub ipv6_address: String,
}

/// `POST /v1/networks/prune`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Pruned {
    pub removed: Vec<String>,
}

/// One network a sandbox asks to join.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointRequest {
    pub network: String,
    /// Interface name inside the sandbox [default: the lowest free ethN].
    #[serde(default)]
    pub ifname: Option<String>,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub ip: Option<String>,
    #[serde(default)]
    pub mac: Option<String>,
}

/// `POST /v1/sandboxes`: register a sandbox whose namespaces already exist
/// (made by `warren run`'s init) and attach it to its networks.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxCreate {
    /// 64 hex digits; generated by the daemon when absent.
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    /// A process inside the sandbox's namespaces (0: none, give `netns`).
    #[serde(default)]
    pub pid: i32,
    /// The sandbox's network namespace by path, for namespaces attached
    /// without a process (`warren attach --netns`, CNI).
    #[serde(default)]
    pub netns: Option<String>,
    /// The user namespace owning `netns`, if not derivable from it.
    #[serde(default)]
    pub userns: Option<String>,
    /// Made by a runner and attached: warren never kills its processes.
    #[serde(default)]
    pub attached: bool,
    /// The runner's id for the sandbox (CNI's container id).
    #[serde(default)]
    pub external_id: Option<String>,
    #[serde(default)]
    pub hostname: Option<String>,
    /// `bridge` (endpoints from `networks`, default `bridge`), `none` or `host`.
    #[serde(default)]
    pub network_mode: Option<String>,
    #[serde(default)]
    pub networks: Vec<EndpointRequest>,
    #[serde(default)]
    pub command: Vec<String>,
    /// Ports to publish on the first network (`-p`), one per port.
    #[serde(default)]
    pub ports: Vec<crate::api::ports::PortMapping>,
    /// How much of the namespace's network the daemon sets up.
    #[serde(default)]
    pub configure: Configure,
    /// `run --rm`: keep nothing once the sandbox exits.
    #[serde(default)]
    pub auto_remove: bool,
    /// `--add-host`: `NAME:IP` entries for the sandbox's `/etc/hosts`
    /// (`IP` may be `host-gateway`, resolved by the daemon).
    #[serde(default)]
    pub extra_hosts: Vec<String>,
    /// `--label`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `--dns`: the sandbox's upstream resolvers (instead of the daemon's).
    #[serde(default)]
    pub dns: Vec<String>,
    /// `--dns-search`: its resolv.conf's `search` domains.
    #[serde(default)]
    pub dns_search: Vec<String>,
    /// `--dns-option`: its resolv.conf's `options`.
    #[serde(default)]
    pub dns_options: Vec<String>,
    /// `--expose` (and the ports of `-p`): `PORT/PROTO`, one per port.
    #[serde(default)]
    pub expose: Vec<String>,
    /// `--link`: `NAME[:ALIAS]`, a sandbox whose name and alias go in this
    /// sandbox's `/etc/hosts`.
    #[serde(default)]
    pub links: Vec<String>,
    /// `-P`: every `expose` port that `ports` does not publish is
    /// published on a free host port (by the daemon, so
    /// `HostConfig.PortBindings` stays what `-p` asked); shown as
    /// `HostConfig.PublishAllServers`.
    #[serde(default)]
    pub publish_all: bool,
}

/// What `run` asked of a sandbox beyond its networks, kept with it (and in
/// its exited and restart records) and shown by `inspect` and `ps`.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunOptions {
    /// `NAME:IP`, with `host-gateway` resolved.
    #[serde(default)]
    pub extra_hosts: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub dns: Vec<String>,
    #[serde(default)]
    pub dns_search: Vec<String>,
    #[serde(default)]
    pub dns_options: Vec<String>,
    /// `PORT/PROTO`.
    #[serde(default)]
    pub expose: Vec<String>,
    /// `NAME:ALIAS` (the alias is the name when none was given).
    #[serde(default)]
    pub links: Vec<String>,
    #[serde(default)]
    pub publish_all: bool,
    /// The lines `--add-host` and `--link` add to `/etc/hosts`
    /// (`IP\tNAMES`), resolved at create.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// `HostConfig.NetworkMode`: the first `--network` as given at create
    /// (`bridge`, `host`, `none` or a network's name); later connects
    /// never change it, as Docker's. Empty in records of older daemons.
    #[serde(default)]
    pub network_mode: String,
    /// `HostConfig.PortBindings`: the `-p` ports as asked, by
    /// `PORT/PROTO` (not `-P`'s, not as bound).
    #[serde(default)]
    pub port_bindings: BTreeMap<String, Vec<PortBinding>>,
}

/// One host binding of a port as `docker inspect` shows it: in
/// `HostConfig.PortBindings` as asked (`""` for "any"), in
/// `NetworkSettings.Ports` as bound.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PortBinding {
    pub host_ip: String,
    pub host_port: String,
}

impl PortBinding {
    /// The bindings `-p` asked for, by `PORT/PROTO`: the host address
    /// given or `""`, the host port given (a range as `START-END`) or
    /// `""`; ports in the order given.
    pub fn asked(ports: &[crate::api::ports::PortMapping]) -> BTreeMap<String, Vec<PortBinding>> {
        let mut out: BTreeMap<String, Vec<PortBinding>> = BTreeMap::new();
        for m in ports {
            let host_port = match (m.host_port.filter(|p| *p != 0), m.host_port_end) {
                (Some(a), Some(b)) if b != a => format!("{a}-{b}"),
                (Some(a), _) => a.to_string(),
                (None, _) => String::new(),
            };
            out.entry(format!("{}/{}", m.port, m.proto))
                .or_default()
                .push(PortBinding {
                    host_ip: m.host_ip.map(|i| i.to_string()).unwrap_or_default(),
                    host_port,
                });
        }
        out
    }
}

/// How much of a sandbox's network the daemon sets up when it attaches it
/// (`SandboxCreate::configure`); the interfaces are always made.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Configure {
    /// Everything: `lo` up, the namespace's sysctls (unprivileged low ports
    /// and ping), and each interface (MAC, MTU, address, up, default route).
    /// `warren run`, `attach` and the CNI plugin.
    #[default]
    Full,
    /// `lo` and each interface, but no sysctls: what `slirp4netns
    /// --configure` does to a runner's namespace.
    Interfaces,
    /// Only the TAP, with its MAC (the switch binds the port to it); the
    /// runner configures the rest, as rootlesskit does with slirp4netns
    /// without `--configure`.
    None,
}

/// The answer to `POST /v1/sandboxes`: what the init needs before exec.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxCreated {
    pub id: String,
    pub name: String,
    pub hostname: String,
    /// Files to bind-mount inside the sandbox, `(source, target)`.
    pub binds: Vec<(String, String)>,
    /// The published ports, as bound (a port chosen by the daemon shows
    /// here).
    #[serde(default)]
    pub ports: Vec<crate::api::ports::PortMapping>,
}

/// `POST /v1/sandboxes/{id}/ports` and `…/ports/remove`: ports to publish
/// or unpublish, as `-p` specs and/or mappings.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortsRequest {
    /// `-p` specs, e.g. `"8080:80"`, `"53/udp"`, `"8000-8009:80-89"`.
    #[serde(default)]
    pub specs: Vec<String>,
    #[serde(default)]
    pub ports: Vec<crate::api::ports::PortMapping>,
}

/// One row of `GET /v1/sandboxes` (`ps`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SandboxSummary {
    #[serde(rename = "ID")]
    pub id: String,
    pub names: String,
    pub command: String,
    pub created_at: String,
    pub running_for: String,
    pub status: String,
    pub pid: i32,
    pub networks: String,
    pub ports: String,
    /// The runner's id (CNI's container id) for attached sandboxes.
    #[serde(
        rename = "ExternalID",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub external_id: String,
    /// Whether a runner made it (attach, CNI) rather than `warren run`.
    #[serde(default)]
    pub attached: bool,
    /// `running` or `exited` (listed only with `?all=true`), as Docker's
    /// `State`.
    #[serde(default)]
    pub state: String,
    /// `k=v,k2=v2` (sorted), as Docker's `Labels` column.
    #[serde(default)]
    pub labels: String,
}

/// `GET /v1/sandboxes/{id}`: shaped like `docker inspect` of a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SandboxInspect {
    pub id: String,
    /// The name with Docker's leading `/` (`/web`).
    pub name: String,
    pub created: String,
    pub path: String,
    pub args: Vec<String>,
    pub state: SandboxState,
    pub config: SandboxConfig,
    pub host_config: HostConfig,
    pub network_settings: NetworkSettings,
    /// The output of `run -d` (empty for a sandbox run in the foreground
    /// or attached).
    #[serde(default)]
    pub log_path: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SandboxState {
    /// `running` or `exited`.
    pub status: String,
    pub running: bool,
    #[serde(default)]
    pub paused: bool,
    #[serde(default)]
    pub restarting: bool,
    #[serde(rename = "OOMKilled", default)]
    pub oom_killed: bool,
    #[serde(default)]
    pub dead: bool,
    pub pid: i32,
    /// The command's exit status once it exited (0 while running, as
    /// Docker).
    #[serde(default)]
    pub exit_code: i32,
    #[serde(default)]
    pub error: String,
    pub started_at: String,
    /// `0001-01-01T00:00:00Z` while running, as Docker.
    #[serde(default)]
    pub finished_at: String,
}

impl SandboxState {
    /// A running sandbox's state, as Docker shows it.
    pub fn running(pid: i32, started_at: String) -> SandboxState {
        SandboxState::new("running", pid, 0, started_at, "0001-01-01T00:00:00Z".into())
    }

    /// An exited sandbox's state (`exit_code` -1 while not yet recorded).
    pub fn exited(exit_code: i32, started_at: String, finished_at: String) -> SandboxState {
        SandboxState::new("exited", 0, exit_code, started_at, finished_at)
    }

    fn new(
        status: &str,
        pid: i32,
        exit_code: i32,
        started_at: String,
        finished_at: String,
    ) -> SandboxState {
        SandboxState {
            status: status.into(),
            running: status == "running",
            paused: false,
            restarting: false,
            oom_killed: false,
            dead: false,
            pid,
            exit_code,
            error: String::new(),
            started_at,
            finished_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SandboxConfig {
    pub hostname: String,
    pub cmd: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `{"80/tcp": {}}`, as Docker's (`--expose`, `-p`).
    #[serde(default)]
    pub exposed_ports: BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
}

/// Docker's `HostConfig`; the lists are `null` when empty, as Docker's.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostConfig {
    pub network_mode: String,
    /// `{"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}`: what `-p`
    /// asked, as Docker's (`{}` without `-p`).
    #[serde(default)]
    pub port_bindings: BTreeMap<String, Vec<PortBinding>>,
    #[serde(default)]
    pub extra_hosts: Option<Vec<String>>,
    #[serde(default)]
    pub dns: Vec<String>,
    #[serde(default)]
    pub dns_search: Vec<String>,
    #[serde(default)]
    pub dns_options: Vec<String>,
    /// `/TARGET:/SANDBOX/ALIAS`, as Docker's.
    #[serde(default)]
    pub links: Option<Vec<String>>,
    #[serde(default)]
    pub publish_all_servers: bool,
}

impl HostConfig {
    /// The `HostConfig` of a sandbox in `mode` (the network mode shown)
    /// named `name`, with its run options.
    pub fn new(network_mode: String, name: &str, o: &RunOptions) -> HostConfig {
        let some = |v: Vec<String>| (!v.is_empty()).then_some(v);
        HostConfig {
            network_mode,
            port_bindings: o.port_bindings.clone(),
            extra_hosts: some(o.extra_hosts.clone()),
            dns: o.dns.clone(),
            dns_search: o.dns_search.clone(),
            dns_options: o.dns_options.clone(),
            links: some(
                o.links
                    .iter()
                    .map(|l| {
                        let (target, alias) = l.split_once(':').unwrap_or((l, l));
                        format!("/{target}:/{name}/{alias}")
                    })
                    .collect(),
            ),
            publish_all_servers: o.publish_all,
        }
    }
}

impl SandboxConfig {
    pub fn new(hostname: String, cmd: Vec<String>, o: &RunOptions) -> SandboxConfig {
        SandboxConfig {
            hostname,
            cmd,
            labels: o.labels.clone(),
            exposed_ports: o
                .expose
                .iter()
                .map(|p| (p.clone(), serde_json::Map::new()))
                .collect(),
        }
    }
}

/// Docker's `NetworkSettings`: the published ports, the endpoint on the
/// default `bridge` at the top level (Docker's deprecated fields that
/// `{{.NetworkSettings.IPAddress}}` scripts read; empty strings when the
/// sandbox is not on `bridge`, as Docker's), and every endpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkSettings {
    pub ports: BTreeMap<String, Option<Vec<BTreeMap<String, String>>>>,
    #[serde(rename = "EndpointID", default)]
    pub endpoint_id: String,
    #[serde(default)]
    pub gateway: String,
    #[serde(rename = "GlobalIPv6Address", default)]
    pub global_ipv6_address: String,
    #[serde(rename = "GlobalIPv6PrefixLen", default)]
    pub global_ipv6_prefix_len: u8,
    #[serde(rename = "IPAddress", default)]
    pub ip_address: String,
    #[serde(rename = "IPPrefixLen", default)]
    pub ip_prefix_len: u8,
    #[serde(rename = "IPv6Gateway", default)]
    pub ipv6_gateway: String,
    #[serde(default)]
    pub mac_address: String,
    pub networks: BTreeMap<String, EndpointSettings>,
}

impl NetworkSettings {
    /// The settings of `networks` and `ports`, the top-level fields from
    /// the endpoint on `default_network` if there is one.
    pub fn new(
        networks: BTreeMap<String, EndpointSettings>,
        ports: BTreeMap<String, Option<Vec<BTreeMap<String, String>>>>,
        default_network: &str,
    ) -> NetworkSettings {
        let mut s = NetworkSettings {
            ports,
            ..NetworkSettings::default()
        };
        if let Some(ep) = networks.get(default_network) {
            s.endpoint_id = ep.endpoint_id.clone();
            s.gateway = ep.gateway.clone();
            s.ip_address = ep.ip_address.clone();
            s.ip_prefix_len = ep.ip_prefix_len;
            s.mac_address = ep.mac_address.clone();
        }
        s.networks = networks;
        s
    }
}

/// One network of `NetworkSettings.Networks`, in Docker's field order
/// (null where Docker has null), and warren's `Interface`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointSettings {
    /// `{"IPv4Address": IP}` when the address was asked for (`--ip`),
    /// else null.
    #[serde(rename = "IPAMConfig", default)]
    pub ipam_config: Option<EndpointIpamConfig>,
    /// Always null: `--link` is shown in `HostConfig.Links`.
    #[serde(default)]
    pub links: Option<Vec<String>>,
    /// The aliases given (`--network-alias`, `--alias`), null when none.
    #[serde(default)]
    pub aliases: Option<Vec<String>>,
    pub mac_address: String,
    /// Always null: no per-endpoint driver options.
    #[serde(default)]
    pub driver_opts: Option<BTreeMap<String, String>>,
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    pub gateway: String,
    #[serde(rename = "IPAddress")]
    pub ip_address: String,
    #[serde(rename = "IPPrefixLen")]
    pub ip_prefix_len: u8,
    #[serde(rename = "IPv6Gateway", default)]
    pub ipv6_gateway: String,
    #[serde(rename = "GlobalIPv6Address", default)]
    pub global_ipv6_address: String,
    #[serde(rename = "GlobalIPv6PrefixLen", default)]
    pub global_ipv6_prefix_len: u8,
    /// The names the sandbox has on this network, as Docker's: its name,
    /// its aliases, its short id; null on the default `bridge` (no names
    /// there).
    #[serde(rename = "DNSNames", default)]
    pub dns_names: Option<Vec<String>>,
    /// The interface inside the sandbox (warren's addition).
    pub interface: String,
}

/// `IPAMConfig` of an endpoint: the address asked for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EndpointIpamConfig {
    #[serde(rename = "IPv4Address")]
    pub ipv4_address: String,
}

/// `POST /v1/networks/{name}/connect`.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectRequest {
    pub sandbox: String,
    #[serde(default)]
    pub ifname: Option<String>,
    #[serde(default)]
    pub ip: Option<String>,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub mac: Option<String>,
}

/// `POST /v1/networks/{name}/disconnect`.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisconnectRequest {
    pub sandbox: String,
    /// Accepted for Docker compatibility; a disconnect never needs forcing.
    #[serde(default)]
    pub force: bool,
}
