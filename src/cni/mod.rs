//! The CNI plugin (`warren-cni`): warren networks for CNI runtimes.
//!
//! A runtime (podman's CNI backend, containerd, cri-o, `cnitool`) runs the
//! plugin with `CNI_COMMAND` and friends in the environment and the network
//! configuration on stdin, per the CNI specification 1.0.0 (0.4.0 and 1.1.0
//! answered too). The plugin does no network work itself: it is a client of
//! the daemon's API (starting the daemon if needed, from the `warren` binary
//! beside it), so CNI containers and `warren run` sandboxes share networks,
//! names and isolation.
//!
//! - ADD: the container (keyed by `CNI_CONTAINERID`) becomes an *attached*
//!   sandbox given by its netns path (`CNI_NETNS`), or, when it already is
//!   one (a second network), gets connected to this network. The interface is
//!   named `CNI_IFNAME`. Capabilities `ips`, `mac`, `aliases` and
//!   `portMappings` are honoured; the ports forward to the container's
//!   address on the network of this ADD, and go with its DEL.
//! - DEL: disconnects; the last DEL detaches the sandbox. Idempotent, and
//!   successful when the namespace or the container is already gone.
//! - CHECK: the container must be attached to this network with this
//!   interface. STATUS: the daemon answers. GC: detaches CNI sandboxes of
//!   this network that are not in `cni.dev/valid-attachments`.
//!
//! Errors are the specification's error object on stdout, with its codes,
//! and a non-zero exit.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::ports::{PortMapping, Proto};
use crate::api::types::{
    ConnectRequest, DisconnectRequest, EndpointRequest, NetworkInspect, PortsRequest,
    SandboxCreate, SandboxCreated, SandboxInspect, SandboxSummary,
};
use crate::cli::client::{ApiFailure, Client};
use crate::daemon::paths::{Paths, Untrusted};

/// The versions this plugin speaks.
pub const SUPPORTED: [&str; 3] = ["0.4.0", "1.0.0", "1.1.0"];
/// Largest configuration accepted on stdin.
const MAX_CONFIG: u64 = 1024 * 1024;

/// A CNI error: the specification's code, message and details.
#[derive(Debug)]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl CniError {
    fn new(code: u32, msg: impl Into<String>, details: impl Into<String>) -> CniError {
        CniError {
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }

    /// A runtime directory or daemon that is not the caller's: not worth
    /// trying again (code 50, not 11).
    fn untrusted(u: &Untrusted) -> CniError {
        CniError::new(50, u.to_string(), u.hint())
    }

    /// An error from talking to the daemon: its message becomes the details.
    fn daemon(msg: &str, e: anyhow::Error) -> CniError {
        if let Some(u) = e.downcast_ref::<Untrusted>() {
            return CniError::untrusted(u);
        }
        let details = match e.downcast_ref::<ApiFailure>() {
            Some(f) if f.body.hint.is_empty() => f.body.error.clone(),
            Some(f) => format!("{} ({})", f.body.error, f.body.hint),
            None => format!("{e:#}"),
        };
        let code = if e.downcast_ref::<ApiFailure>().is_some() {
            7
        } else {
            11
        };
        CniError::new(code, msg, details)
    }
}

/// The parts of the network configuration warren reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NetConf {
    cni_version: String,
    #[serde(default)]
    name: String,
    #[serde(rename = "type", default)]
    kind: String,
    /// The warren network [default: the configuration's `name`].
    #[serde(default)]
    network: Option<String>,
    #[serde(default)]
    runtime_config: RuntimeConfig,
    /// Overrides of warren's directories (else `WARREN_*` and XDG).
    #[serde(default)]
    state_dir: Option<PathBuf>,
    #[serde(default)]
    runtime_dir: Option<PathBuf>,
    /// The `warren` binary [default: beside this plugin, else on PATH].
    #[serde(default)]
    warren_path: Option<PathBuf>,
    #[serde(default, rename = "cni.dev/valid-attachments")]
    valid_attachments: Option<Vec<Attachment>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RuntimeConfig {
    #[serde(default)]
    port_mappings: Vec<CniPortMapping>,
    #[serde(default)]
    ips: Vec<String>,
    #[serde(default)]
    mac: Option<String>,
    /// Either a list, or a map from network name to list (podman's form).
    #[serde(default)]
    aliases: Option<Value>,
}

/// One entry of the `portMappings` capability (the shape of the
/// reference `portmap` plugin's).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CniPortMapping {
    host_port: u16,
    container_port: u16,
    #[serde(default)]
    protocol: Option<String>,
    #[serde(default, rename = "hostIP")]
    host_ip: Option<String>,
}

/// The published ports `portMappings` asks for, forwarding to the
/// container's address on `network`.
fn port_mappings(conf: &NetConf, network: &str) -> Result<Vec<PortMapping>, CniError> {
    let invalid = |what: String| CniError::new(7, "invalid portMappings", what);
    conf.runtime_config
        .port_mappings
        .iter()
        .map(|m| {
            let proto = match m
                .protocol
                .as_deref()
                .unwrap_or("tcp")
                .to_ascii_lowercase()
                .as_str()
            {
                "tcp" | "" => Proto::Tcp,
                "udp" => Proto::Udp,
                other => {
                    return Err(invalid(format!(
                        "protocol {other:?}: warren publishes tcp and udp"
                    )))
                }
            };
            if m.host_port == 0 || m.container_port == 0 {
                return Err(invalid(format!(
                    "hostPort {} and containerPort {} must both be 1-65535",
                    m.host_port, m.container_port
                )));
            }
            let host_ip = match m.host_ip.as_deref().filter(|s| !s.is_empty()) {
                None => None,
                Some(s) => Some(
                    s.parse()
                        .map_err(|_| invalid(format!("hostIP {s:?} is not an address")))?,
                ),
            };
            Ok(PortMapping {
                host_ip,
                host_port: Some(m.host_port),
                port: m.container_port,
                proto,
                network: Some(network.to_string()),
                host_port_end: None,
            })
        })
        .collect()
}

/// One entry of `cni.dev/valid-attachments` (its `ifname` is not needed:
/// a container's attachments on one network are kept or dropped together).
#[derive(Debug, Deserialize)]
struct Attachment {
    #[serde(rename = "containerID")]
    container_id: String,
}

/// What the runtime says in the environment.
struct Env {
    command: String,
    container_id: String,
    netns: String,
    ifname: String,
    args: BTreeMap<String, String>,
}

impl Env {
    fn read() -> Env {
        let var = |k: &str| std::env::var(k).unwrap_or_default();
        let args = var("CNI_ARGS")
            .split(';')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Env {
            command: var("CNI_COMMAND"),
            container_id: var("CNI_CONTAINERID"),
            netns: var("CNI_NETNS"),
            ifname: var("CNI_IFNAME"),
            args,
        }
    }

    fn require(&self, what: &[(&str, &str)]) -> Result<(), CniError> {
        for (name, value) in what {
            if value.is_empty() {
                return Err(CniError::new(
                    4,
                    format!("{name} is not set"),
                    "the runtime must set it for this command",
                ));
            }
        }
        Ok(())
    }
}

/// Entry point of `warren-cni`; returns the exit status.
pub fn main() -> i32 {
    let env = Env::read();
    let mut input = String::new();
    let read = std::io::stdin().take(MAX_CONFIG).read_to_string(&mut input);
    let version = serde_json::from_str::<Value>(&input)
        .ok()
        .and_then(|v| {
            v.get("cniVersion")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| "1.0.0".to_string());
    let result = match read {
        Ok(_) => run(&env, &input),
        Err(e) => Err(CniError::new(
            5,
            "cannot read the configuration from stdin",
            e.to_string(),
        )),
    };
    match result {
        Ok(Some(out)) => {
            println!("{out}");
            0
        }
        Ok(None) => 0,
        Err(e) => {
            let body = json!({ "cniVersion": version, "code": e.code, "msg": e.msg, "details": e.details });
            println!("{body}");
            1
        }
    }
}

fn run(env: &Env, input: &str) -> Result<Option<Value>, CniError> {
    if env.command == "VERSION" {
        return Ok(Some(
            json!({ "cniVersion": "1.1.0", "supportedVersions": SUPPORTED }),
        ));
    }
    let conf: NetConf = serde_json::from_str(input)
        .map_err(|e| CniError::new(6, "cannot decode the network configuration", e.to_string()))?;
    if !SUPPORTED.contains(&conf.cni_version.as_str()) {
        return Err(CniError::new(
            1,
            format!("CNI version {} is not supported", conf.cni_version),
            format!("supported: {}", SUPPORTED.join(", ")),
        ));
    }
    if !conf.kind.is_empty() && conf.kind != "warren" {
        return Err(CniError::new(
            7,
            format!("plugin type {:?} is not warren", conf.kind),
            "",
        ));
    }
    let network = conf.network.clone().unwrap_or_else(|| conf.name.clone());
    if network.is_empty() {
        return Err(CniError::new(
            7,
            "the configuration names no network",
            "set \"network\" (or \"name\") to a warren network",
        ));
    }
    let client = connect(&conf)?;
    match env.command.as_str() {
        "ADD" => add(env, &conf, &network, &client).map(Some),
        "DEL" => del(env, &network, &client).map(|()| None),
        "CHECK" => check(env, &network, &client).map(|()| None),
        "STATUS" => Ok(None),
        "GC" => gc(&conf, &network, &client).map(|()| None),
        other => Err(CniError::new(
            4,
            format!("unknown CNI_COMMAND {other:?}"),
            "expected ADD, DEL, CHECK, VERSION, STATUS or GC",
        )),
    }
}

fn connect(conf: &NetConf) -> Result<Client, CniError> {
    let paths = Paths::resolve(
        conf.state_dir
            .clone()
            .or_else(|| std::env::var_os("WARREN_STATE_DIR").map(PathBuf::from)),
        conf.runtime_dir
            .clone()
            .or_else(|| std::env::var_os("WARREN_RUNTIME_DIR").map(PathBuf::from)),
    );
    let exe = conf.warren_path.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("warren")))
            .filter(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from("warren"))
    });
    Client::connect_with(&paths, exe).map_err(|e| match e.downcast_ref::<Untrusted>() {
        Some(u) => CniError::untrusted(u),
        None => CniError::new(50, "the warren daemon is not available", format!("{e:#}")),
    })
}

/// The attached sandbox of this container, if any.
fn find(client: &Client, container_id: &str) -> Result<Option<SandboxSummary>, CniError> {
    let all: Vec<SandboxSummary> = client
        .get("/v1/sandboxes")
        .map_err(|e| CniError::daemon("cannot list sandboxes", e))?;
    Ok(all.into_iter().find(|s| s.external_id == container_id))
}

/// A sandbox name for a container: the pod/container name the runtime gives
/// in CNI_ARGS when it is a valid warren name, else `cni-` + 12 id digits.
fn sandbox_name(env: &Env) -> String {
    let short: String = env
        .container_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(12)
        .collect();
    env.args
        .get("K8S_POD_NAME")
        .filter(|n| crate::daemon::util::valid_name(n))
        .cloned()
        .unwrap_or_else(|| format!("cni-{short}"))
}

fn aliases(conf: &NetConf) -> Vec<String> {
    match &conf.runtime_config.aliases {
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        Some(Value::Object(map)) => map
            .get(&conf.name)
            .and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// The endpoint an ADD asks for: the interface `CNI_IFNAME`, the first
/// IPv4 address of the `ips` capability (its prefix length is the
/// network's), the `mac` and `aliases` capabilities. Checking them is the
/// daemon's (a bad one fails the ADD with its error).
fn endpoint_request(env: &Env, conf: &NetConf, network: &str) -> EndpointRequest {
    let ip = conf
        .runtime_config
        .ips
        .iter()
        .find_map(|a| {
            a.split('/')
                .next()
                .filter(|s| s.parse::<std::net::Ipv4Addr>().is_ok())
        })
        .map(str::to_string);
    EndpointRequest {
        network: network.to_string(),
        ifname: Some(env.ifname.clone()),
        aliases: aliases(conf),
        ip,
        mac: conf.runtime_config.mac.clone(),
    }
}

fn add(env: &Env, conf: &NetConf, network: &str, client: &Client) -> Result<Value, CniError> {
    env.require(&[
        ("CNI_CONTAINERID", &env.container_id),
        ("CNI_NETNS", &env.netns),
        ("CNI_IFNAME", &env.ifname),
    ])?;
    let ports = port_mappings(conf, network)?;
    let endpoint = endpoint_request(env, conf, network);
    let name = match find(client, &env.container_id)? {
        Some(existing) => {
            let req = ConnectRequest {
                sandbox: existing.names.clone(),
                ifname: endpoint.ifname,
                ip: endpoint.ip,
                aliases: endpoint.aliases,
                mac: endpoint.mac,
            };
            client
                .post::<_, Value>(&format!("/v1/networks/{network}/connect"), &req)
                .map_err(|e| CniError::daemon("cannot connect the container", e))?;
            if !ports.is_empty() {
                let req = PortsRequest {
                    specs: Vec::new(),
                    ports,
                };
                if let Err(e) = client
                    .post::<_, Value>(&format!("/v1/sandboxes/{}/ports", existing.names), &req)
                {
                    // A failed ADD changes nothing: the ports are all or
                    // none (the daemon's doing), and the connection made
                    // above is undone. Should that fail too, the runtime's
                    // DEL after a failed ADD undoes it.
                    let undo = DisconnectRequest {
                        sandbox: existing.names.clone(),
                        force: false,
                    };
                    let _ = client
                        .post::<_, Value>(&format!("/v1/networks/{network}/disconnect"), &undo);
                    return Err(CniError::daemon("cannot publish the container's ports", e));
                }
            }
            existing.names
        }
        None => {
            let req = SandboxCreate {
                name: Some(sandbox_name(env)),
                netns: Some(env.netns.clone()),
                attached: true,
                external_id: Some(env.container_id.clone()),
                network_mode: Some("bridge".into()),
                networks: vec![endpoint],
                ports,
                ..Default::default()
            };
            let created: SandboxCreated = client
                .post("/v1/sandboxes", &req)
                .map_err(|e| CniError::daemon("cannot attach the container", e))?;
            created.name
        }
    };
    let sandbox: SandboxInspect = client
        .get(&format!("/v1/sandboxes/{name}"))
        .map_err(|e| CniError::daemon("cannot inspect the container", e))?;
    let net: NetworkInspect = client
        .get(&format!("/v1/networks/{network}"))
        .map_err(|e| CniError::daemon("cannot inspect the network", e))?;
    let ep = sandbox
        .network_settings
        .networks
        .get(&net.name)
        .ok_or_else(|| CniError::new(5, "the daemon lost the new endpoint", ""))?;
    Ok(result(&conf.cni_version, &env.netns, ep, &net))
}

/// The ADD result in the shape of `version`.
fn result(
    version: &str,
    netns: &str,
    ep: &crate::api::types::EndpointSettings,
    net: &NetworkInspect,
) -> Value {
    let mut ip = json!({
        "address": format!("{}/{}", ep.ip_address, ep.ip_prefix_len),
        "gateway": ep.gateway,
        "interface": 0,
    });
    if version == "0.4.0" {
        ip["version"] = json!("4");
    }
    let routes = if net.internal {
        json!([])
    } else {
        json!([{ "dst": "0.0.0.0/0", "gw": ep.gateway }])
    };
    json!({
        "cniVersion": version,
        "interfaces": [{ "name": ep.interface, "mac": ep.mac_address, "sandbox": netns }],
        "ips": [ip],
        "routes": routes,
        "dns": { "nameservers": nameservers(ep, net) },
    })
}

/// Where the network serves DNS: its `dns-address`, else the gateway;
/// nowhere with `dns=false`.
fn nameservers(ep: &crate::api::types::EndpointSettings, net: &NetworkInspect) -> Vec<String> {
    match crate::gateway::dns::settings(&net.options) {
        (false, _) => Vec::new(),
        (true, Some(addr)) => vec![addr.to_string()],
        (true, None) => vec![ep.gateway.clone()],
    }
}

fn del(env: &Env, network: &str, client: &Client) -> Result<(), CniError> {
    env.require(&[("CNI_CONTAINERID", &env.container_id)])?;
    let Some(existing) = find(client, &env.container_id)? else {
        return Ok(()); // already gone: DEL is idempotent
    };
    let req = DisconnectRequest {
        sandbox: existing.names.clone(),
        force: false,
    };
    if let Err(e) = client.post::<_, Value>(&format!("/v1/networks/{network}/disconnect"), &req) {
        // Not connected (a repeated DEL) or the network is gone: nothing to undo.
        if e.downcast_ref::<ApiFailure>().is_none() {
            return Err(CniError::daemon("cannot disconnect the container", e));
        }
    }
    let still: Option<SandboxInspect> = client
        .get(&format!("/v1/sandboxes/{}", existing.names))
        .ok();
    if still.is_some_and(|s| s.network_settings.networks.is_empty()) {
        let _ = client.delete::<Value>(&format!("/v1/sandboxes/{}?detach=true", existing.names));
    }
    Ok(())
}

fn check(env: &Env, network: &str, client: &Client) -> Result<(), CniError> {
    env.require(&[
        ("CNI_CONTAINERID", &env.container_id),
        ("CNI_IFNAME", &env.ifname),
    ])?;
    let existing = find(client, &env.container_id)?.ok_or_else(|| {
        CniError::new(
            3,
            format!("container {} is not attached", env.container_id),
            "",
        )
    })?;
    let sandbox: SandboxInspect = client
        .get(&format!("/v1/sandboxes/{}", existing.names))
        .map_err(|e| CniError::daemon("cannot inspect the container", e))?;
    match sandbox.network_settings.networks.get(network) {
        Some(ep) if ep.interface == env.ifname => Ok(()),
        Some(ep) => Err(CniError::new(
            7,
            format!(
                "the container's interface on {network} is {}, not {}",
                ep.interface, env.ifname
            ),
            "",
        )),
        None => Err(CniError::new(
            3,
            format!(
                "container {} is not connected to {network}",
                env.container_id
            ),
            "",
        )),
    }
}

fn gc(conf: &NetConf, network: &str, client: &Client) -> Result<(), CniError> {
    let valid: Vec<&str> = conf
        .valid_attachments
        .iter()
        .flatten()
        .map(|a| a.container_id.as_str())
        .collect();
    let all: Vec<SandboxSummary> = client
        .get("/v1/sandboxes")
        .map_err(|e| CniError::daemon("cannot list sandboxes", e))?;
    for s in all
        .iter()
        .filter(|s| s.attached && !s.external_id.is_empty())
    {
        let on_network = s.networks.split(',').any(|n| n == network);
        if on_network && !valid.contains(&s.external_id.as_str()) {
            let env = Env {
                command: "DEL".into(),
                container_id: s.external_id.clone(),
                netns: String::new(),
                ifname: String::new(),
                args: BTreeMap::new(),
            };
            del(&env, network, client)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(json: Value) -> NetConf {
        serde_json::from_value(json).expect("a configuration")
    }

    fn env(ifname: &str, args: &[(&str, &str)]) -> Env {
        Env {
            command: "ADD".into(),
            container_id: "0123456789abcdef0123456789abcdef".into(),
            netns: "/proc/1/ns/net".into(),
            ifname: ifname.into(),
            args: args
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn with_runtime(runtime: Value) -> NetConf {
        conf(
            json!({"cniVersion": "1.0.0", "name": "dev", "type": "warren", "runtimeConfig": runtime}),
        )
    }

    #[test]
    fn ips_mac_and_aliases_make_the_endpoint() {
        let c = with_runtime(json!({
            "ips": ["fd00::9/64", "10.88.7.9/16", "10.88.7.10/16"],
            "mac": "02:11:22:33:44:55",
            "aliases": {"dev": ["api", "api-v2"], "other": ["elsewhere"]}
        }));
        let ep = endpoint_request(&env("eth3", &[]), &c, "dev");
        // The first IPv4 address (an IPv6 one is skipped), without its
        // prefix: the network's is used.
        assert_eq!(ep.ip.as_deref(), Some("10.88.7.9"));
        assert_eq!(ep.mac.as_deref(), Some("02:11:22:33:44:55"));
        assert_eq!(ep.aliases, ["api", "api-v2"]);
        assert_eq!(ep.ifname.as_deref(), Some("eth3"));
        assert_eq!(ep.network, "dev");
        // None of them: the daemon picks.
        let ep = endpoint_request(&env("eth0", &[]), &with_runtime(json!({})), "dev");
        assert_eq!((ep.ip, ep.mac, ep.aliases.len()), (None, None, 0));
        // Only IPv6 (or garbage): no address asked for.
        let c = with_runtime(json!({"ips": ["fd00::9/64", "not-an-ip/8", ""]}));
        assert_eq!(endpoint_request(&env("eth0", &[]), &c, "dev").ip, None);
    }

    #[test]
    fn aliases_as_a_list_or_a_map_keyed_by_the_configurations_name() {
        let list = with_runtime(json!({"aliases": ["a", 7, "b"]}));
        assert_eq!(aliases(&list), ["a", "b"], "non-strings are left out");
        let map = with_runtime(json!({"aliases": {"dev": ["x"], "web": ["y"]}}));
        assert_eq!(aliases(&map), ["x"]);
        // Keyed by the configuration's name even when "network" names
        // another warren network (podman knows the former).
        let renamed = conf(json!({
            "cniVersion": "1.0.0", "name": "podnet", "network": "dev",
            "runtimeConfig": {"aliases": {"podnet": ["p"], "dev": ["d"]}}
        }));
        assert_eq!(aliases(&renamed), ["p"]);
        let none = with_runtime(json!({"aliases": {"web": ["y"]}}));
        assert!(aliases(&none).is_empty());
        assert!(aliases(&with_runtime(json!({"aliases": "api"}))).is_empty());
        assert!(aliases(&with_runtime(json!({}))).is_empty());
    }

    #[test]
    fn port_mappings_parse_or_fail_whole() {
        let c = with_runtime(json!({"portMappings": [
            {"hostPort": 8080, "containerPort": 80},
            {"hostPort": 5353, "containerPort": 53, "protocol": "UDP", "hostIP": "127.0.0.1"},
            {"hostPort": 8443, "containerPort": 443, "protocol": "tcp", "hostIP": ""}
        ]}));
        let maps = port_mappings(&c, "web").expect("valid");
        assert_eq!(maps.len(), 3);
        assert_eq!(
            (
                maps[0].host_port,
                maps[0].port,
                maps[0].proto,
                maps[0].host_ip
            ),
            (Some(8080), 80, Proto::Tcp, None)
        );
        assert_eq!(maps[1].proto, Proto::Udp);
        assert_eq!(maps[1].host_ip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(maps[2].host_ip, None, "an empty hostIP is no hostIP");
        assert!(maps.iter().all(|m| m.network.as_deref() == Some("web")));
        // One bad entry fails them all, with code 7.
        for bad in [
            json!({"hostPort": 1, "containerPort": 1, "protocol": "sctp"}),
            json!({"hostPort": 0, "containerPort": 80}),
            json!({"hostPort": 80, "containerPort": 0}),
            json!({"hostPort": 80, "containerPort": 80, "hostIP": "localhost"}),
        ] {
            let c = with_runtime(json!({"portMappings": [
                {"hostPort": 8080, "containerPort": 80}, bad
            ]}));
            let e = port_mappings(&c, "web").expect_err("invalid");
            assert_eq!(
                (e.code, e.msg.as_str()),
                (7, "invalid portMappings"),
                "{bad}"
            );
        }
        // Out of range and missing fields are decoding errors already.
        assert!(serde_json::from_value::<NetConf>(json!({
            "cniVersion": "1.0.0",
            "runtimeConfig": {"portMappings": [{"hostPort": 70000, "containerPort": 80}]}
        }))
        .is_err());
    }

    #[test]
    fn the_sandbox_is_named_after_the_pod_when_it_can_be() {
        assert_eq!(
            sandbox_name(&env("eth0", &[("K8S_POD_NAME", "web-1")])),
            "web-1"
        );
        assert_eq!(
            sandbox_name(&env("eth0", &[("K8S_POD_NAME", "not a name!")])),
            "cni-0123456789ab"
        );
        assert_eq!(sandbox_name(&env("eth0", &[])), "cni-0123456789ab");
    }

    fn network(internal: bool, options: Value) -> NetworkInspect {
        serde_json::from_value(json!({
            "Name": "dev", "Id": "x", "Created": "", "Scope": "local", "Driver": "bridge",
            "EnableIPv6": false,
            "IPAM": {"Driver": "default", "Options": {}, "Config": [
                {"Subnet": "10.88.0.0/16", "Gateway": "10.88.0.1"}
            ]},
            "Internal": internal, "Attachable": true, "Containers": {},
            "Options": options, "Labels": {}
        }))
        .expect("a network")
    }

    fn endpoint() -> crate::api::types::EndpointSettings {
        serde_json::from_value(json!({
            "NetworkID": "x", "EndpointID": "y", "Gateway": "10.88.0.1",
            "IPAddress": "10.88.7.9", "IPPrefixLen": 16, "MacAddress": "02:11:22:33:44:55",
            "Aliases": [], "DNSNames": [], "Interface": "eth0"
        }))
        .expect("an endpoint")
    }

    #[test]
    fn results_in_the_shape_of_each_version() {
        let r = result(
            "1.0.0",
            "/proc/9/ns/net",
            &endpoint(),
            &network(false, json!({})),
        );
        assert_eq!(
            r,
            json!({
                "cniVersion": "1.0.0",
                "interfaces": [{"name": "eth0", "mac": "02:11:22:33:44:55", "sandbox": "/proc/9/ns/net"}],
                "ips": [{"address": "10.88.7.9/16", "gateway": "10.88.0.1", "interface": 0}],
                "routes": [{"dst": "0.0.0.0/0", "gw": "10.88.0.1"}],
                "dns": {"nameservers": ["10.88.0.1"]},
            })
        );
        let old = result("0.4.0", "/n", &endpoint(), &network(false, json!({})));
        assert_eq!(old["ips"][0]["version"], "4");
        // Internal networks have no default route.
        let internal = result("1.0.0", "/n", &endpoint(), &network(true, json!({})));
        assert_eq!(internal["routes"], json!([]));
        // DNS where the network serves it, or nowhere.
        let dns3 = network(false, json!({"dns-address": "10.88.0.3"}));
        assert_eq!(nameservers(&endpoint(), &dns3), ["10.88.0.3"]);
        let off = network(false, json!({"dns": "false"}));
        assert!(nameservers(&endpoint(), &off).is_empty());
    }

    #[test]
    fn configurations_are_refused_before_the_daemon_is_asked() {
        let e = env("eth0", &[]);
        let refuse = |input: &str| run(&e, input).expect_err(input);
        assert_eq!(refuse("{not json").code, 6);
        assert_eq!(
            refuse(r#"{"name": "dev"}"#).code,
            6,
            "cniVersion is required"
        );
        assert_eq!(refuse(r#"{"cniVersion": "0.3.1", "name": "dev"}"#).code, 1);
        assert_eq!(
            refuse(r#"{"cniVersion": "1.0.0", "name": "dev", "type": "bridge"}"#).code,
            7
        );
        assert_eq!(
            refuse(r#"{"cniVersion": "1.0.0", "type": "warren"}"#).code,
            7
        );
        let version = Env {
            command: "VERSION".into(),
            ..env("", &[])
        };
        let v = run(&version, "").expect("VERSION").expect("an answer");
        assert_eq!(v["supportedVersions"], json!(SUPPORTED));
    }
}
