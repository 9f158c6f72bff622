//! The control plane's state: networks, sandboxes, endpoints.
//!
//! One [`Daemon`] holds everything behind a single mutex. Every operation
//! runs on a blocking thread (the API hands it over with `spawn_blocking`),
//! takes the lock for its bookkeeping only, and never holds it across the
//! slow part of an attach (spawning the setns helper): a create first
//! *reserves* its name and addresses (and binds the host listeners of its
//! published ports, see [`publish`]) under the lock, runs the helper
//! without it, then commits or releases. So a failed attach leaves nothing
//! behind, and `ps` never waits for another sandbox's start-up.
//!
//! The data plane is reached only through each network's
//! [`SwitchHandle`]: ports are added and removed as whole commands, so the
//! forwarding thread never shares a lock with this module.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use anyhow::Context;
use ipnet::Ipv4Net;
use tracing::{info, warn};

use super::error::ApiError;
use super::events::{Events, Kind};
use super::exited::{self, Exited};
use super::ipam::{self, Ipam};
use super::paths::Paths;
use super::publish;
use super::record::{self, EndpointRecord, PortRecord, SandboxRecord};
use super::store::{NetworkDef, Store};
use super::util;
use crate::api::ports::PortMapping;
use crate::api::types::*;
use crate::gateway::dns::embedded::{self, EmbeddedDns};
use crate::gateway::dns::{EndpointInfo, Forwarder, NameTable, NetworkInfo, SandboxInfo};
use crate::gateway::nat::{ForwardId, ForwardSpec};
use crate::gateway::{dns, nat, GatewayConfig};
use crate::sandbox::helper;
use crate::sandbox::netlink::{IfaceConfig, RouteConfig};
use crate::sandbox::Mac;
use crate::switch::{NetworkSpec, PortId, PortSpec, SwitchHandle};

/// The default network's name; it always exists and has no DNS names.
pub const DEFAULT_NETWORK: &str = "bridge";
/// MTU of new networks: large frames make a userspace path fast.
pub const DEFAULT_MTU: u32 = 65520;
/// An overlay network's MTU unless given: a 1500-byte underlay minus the 50
/// bytes of VXLAN over IPv4 (Docker's overlay default).
pub const OVERLAY_MTU: u32 = 1450;
/// The first VXLAN network identifier handed out (Docker's overlay driver
/// starts its pool at 4096).
pub const FIRST_VNI: u32 = 4097;
/// Docker's option key for the MTU, shown in `network inspect`.
const MTU_OPTION: &str = "com.docker.network.driver.mtu";
/// Docker's option: `false` keeps the network's sandboxes from reaching
/// each other (only the gateway, DNS and the outside); enforced by the
/// switch ([`crate::switch::core`], drop reason `icc`).
pub const ICC_OPTION: &str = "com.docker.network.bridge.enable_icc";
/// Docker's option: the host address of the network's published ports
/// that name none (instead of the daemon's `--publish-address`).
pub const HOST_BINDING_OPTION: &str = "com.docker.network.bridge.host_binding_ipv4";
/// Docker's networks of sandboxes without endpoints of their own, beside
/// `bridge`: `(name, driver)`. They are not switches; `network ls` and
/// `inspect` show them as Docker does.
const MODE_NETWORKS: [(&str, &str); 2] = [("host", "host"), ("none", "null")];
/// Bound on sandboxes per daemon.
pub const MAX_SANDBOXES: usize = 4096;
/// Bound on networks per daemon.
pub const MAX_NETWORKS: usize = 512;
/// How long the `die` event waits for the sandbox's exit code.
const EXIT_CODE_WAIT: std::time::Duration = std::time::Duration::from_millis(250);
/// Bound on aliases per endpoint.
const MAX_ALIASES: usize = 64;
/// The network option naming the process that owns the network: when it
/// exits, the network goes, and the sandboxes on it are detached from it
/// (a slirp4netns-compatible instance owns its network this way, so even a
/// SIGKILLed one leaks nothing).
pub const OWNER_PID_OPTION: &str = "owner-pid";
/// The network option that lets the subnet overlap other networks' (for
/// networks of one sandbox each; a sandbox is never on two overlapping ones).
pub const ALLOW_OVERLAP_OPTION: &str = "allow-overlap";

/// The whole control plane.
pub struct Daemon {
    pub paths: Paths,
    /// The `warren` binary, spawned as the setns helper.
    pub exe: PathBuf,
    store: Store,
    inner: Mutex<State>,
    /// Ports whose TAP went away, reported by the switch threads. The
    /// callbacks only send here: they run on a switch thread, which must
    /// never wait for the state lock.
    gone_tx: tokio::sync::mpsc::UnboundedSender<(String, PortId)>,
    /// Forwards non-local DNS names to the upstream resolvers, for every
    /// network (internal networks never use it).
    forwarder: Arc<Forwarder>,
    /// Serves 127.0.0.11:53 inside `run` sandboxes (see [`embedded`]).
    embedded: Arc<EmbeddedDns>,
    /// Sandboxes taken over from a previous daemon, whose exit watchers the
    /// API layer starts once its runtime runs.
    recovered: Mutex<Vec<Watch>>,
    /// Host address of published ports that name none.
    publish_address: IpAddr,
    gone_rx: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<(String, PortId)>>>,
    /// The cluster membership, when the daemon is in one.
    cluster: std::sync::OnceLock<crate::cluster::Cluster>,
    /// Lifecycle events, for `warren events` (see [`events`]).
    pub events: Events,
}

#[derive(Default)]
struct State {
    networks: BTreeMap<String, Network>,
    sandboxes: BTreeMap<String, Sandbox>,
    /// Names of sandboxes being created (reserved, not yet registered).
    pending_names: BTreeSet<String>,
    /// Sandboxes with a connect or disconnect in flight.
    busy: BTreeSet<String>,
    /// Exited `run` sandboxes, until `rm` (see [`exited`]).
    exited: BTreeMap<String, Exited>,
}

struct Network {
    def: NetworkDef,
    ipam: Ipam,
    switch: SwitchHandle,
    /// The `owner-pid` process, watched by the API layer.
    owner: Option<Arc<OwnedFd>>,
}

struct Sandbox {
    id: String,
    name: String,
    target: NsTarget,
    /// Watches the sandbox's process, when it has one.
    pidfd: Option<Arc<OwnedFd>>,
    /// Made by a runner and attached (`warren attach`, CNI), not by `run`:
    /// warren never kills its processes.
    attached: bool,
    /// The runner's id for it (CNI's container id).
    external_id: Option<String>,
    /// Start time of `target.pid`, to tell it from a reused pid later.
    pid_start: Option<u64>,
    /// The netns path's identity, for sandboxes given by path.
    netns_watch: Option<NetnsWatch>,
    hostname: String,
    created: SystemTime,
    command: Vec<String>,
    mode: String,
    endpoints: Vec<Endpoint>,
    /// Published ports (see [`publish`]).
    ports: Vec<Published>,
    /// `run --rm`: nothing is kept when it exits.
    auto_remove: bool,
    /// `--add-host`, `--label`, `--dns*`, `--expose`, `--link`.
    opts: RunOptions,
    /// Its embedded DNS at 127.0.0.11:53 (a `run` sandbox whose sockets
    /// could be made); dropping it closes them.
    embedded: Option<embedded::Listener>,
}

/// A published port of a sandbox.
struct Published {
    /// As bound: host address and port resolved.
    mapping: PortMapping,
    /// The network whose switch serves it.
    network: String,
    /// The switch's forward.
    forward: ForwardId,
}

#[derive(Clone)]
struct Endpoint {
    id: String,
    network: String,
    ifname: String,
    mac: Mac,
    ip: Ipv4Addr,
    port: Option<PortId>,
    aliases: Vec<String>,
    /// Whether the sandbox's default route goes through this endpoint.
    default_route: bool,
    /// The address was asked for (`--ip`): `IPAMConfig` in `inspect`.
    static_ip: bool,
    /// A second fd of the endpoint's (persistent) TAP, kept to clear its
    /// persistence when the endpoint goes, so the interface goes with it.
    tap: Option<Arc<OwnedFd>>,
}

/// What the API layer needs after a create: the answer, and the pidfd to
/// watch for the sandbox's exit.
/// What to watch to notice a sandbox's end: `(id, pidfd, netns path)`.
pub type Watch = (String, Option<Arc<OwnedFd>>, Option<NetnsWatch>);

pub struct Created {
    pub answer: SandboxCreated,
    pub pidfd: Option<Arc<OwnedFd>>,
    /// For a sandbox given by netns path: watch that the path still names the
    /// same namespace.
    pub netns_watch: Option<NetnsWatch>,
}

/// A network namespace by path, and the identity it had at attach time.
#[derive(Debug, Clone)]
pub struct NetnsWatch {
    pub path: PathBuf,
    pub dev: u64,
    pub ino: u64,
}

impl NetnsWatch {
    /// Whether the path still names the namespace it named at attach time
    /// (a removed bind mount, or an exited `/proc/PID/ns/net`, does not).
    pub fn alive(&self) -> bool {
        record::netns_alive(&self.path, self.dev, self.ino)
    }
}

/// How the setns helper reaches a sandbox: through a process, or through a
/// network namespace path (and optionally a user namespace path).
#[derive(Debug, Clone, Default)]
struct NsTarget {
    pid: i32,
    netns: Option<PathBuf>,
    userns: Option<PathBuf>,
    /// A pidfd of `pid`: the helper joins that very process's namespaces
    /// through it, whatever has become of the pid number.
    pidfd: Option<Arc<OwnedFd>>,
}

impl NsTarget {
    fn request(
        &self,
        setup: bool,
        interfaces: Vec<IfaceConfig>,
        route: Option<RouteConfig>,
    ) -> helper::Request {
        helper::Request {
            pid: self.pid,
            netns: self.netns.clone(),
            userns: self.userns.clone(),
            setup,
            interfaces,
            route,
            reopen: Vec::new(),
            embedded_dns: false,
            configure: Default::default(),
            pidfd: self.pidfd.clone(),
        }
    }
}

impl Daemon {
    /// Loads the stored networks, makes sure `bridge` exists, and starts a
    /// switch for each. `dns_upstreams` empty means the host's resolvers.
    pub fn open(
        paths: Paths,
        exe: PathBuf,
        dns_upstreams: Vec<SocketAddr>,
    ) -> anyhow::Result<Daemon> {
        let forwarder = Forwarder::spawn(dns_upstreams).context("starting the DNS forwarder")?;
        let embedded =
            EmbeddedDns::spawn(forwarder.clone()).context("starting the embedded DNS")?;
        let store = Store::new(paths.networks_dir());
        let (defs, errors) = store.load()?;
        for e in errors {
            warn!(error = %e, "skipping unreadable network definition");
        }
        let (gone_tx, gone_rx) = tokio::sync::mpsc::unbounded_channel();
        let daemon = Daemon {
            paths,
            exe,
            store,
            inner: Mutex::new(State::default()),
            gone_tx,
            gone_rx: Mutex::new(Some(gone_rx)),
            cluster: std::sync::OnceLock::new(),
            forwarder,
            embedded,
            recovered: Mutex::new(Vec::new()),
            publish_address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            events: Events::new(),
        };
        {
            let mut st = daemon.lock();
            for def in defs {
                let name = def.name.clone();
                match start_network(def, daemon.gone_tx.clone(), daemon.forwarder.clone()) {
                    Ok(net) => {
                        st.networks.insert(name, net);
                    }
                    Err(e) => warn!(network = %name, error = %e, "cannot start network"),
                }
            }
        }
        if !daemon.lock().networks.contains_key(DEFAULT_NETWORK) {
            let req = NetworkCreate {
                name: DEFAULT_NETWORK.into(),
                ..Default::default()
            };
            daemon
                .create_network(req)
                .map_err(|e| anyhow::anyhow!("creating the default network: {e}"))?;
        }
        // Owned networks: watch live owners; those whose owner died while
        // no daemon ran go once their sandboxes were taken over (below).
        let mut orphans = Vec::new();
        for net in daemon.lock().networks.values_mut() {
            if net.def.options.contains_key(OWNER_PID_OPTION) {
                match owner_pidfd(&net.def) {
                    Ok(fd) => net.owner = fd.map(Arc::new),
                    Err(_) => orphans.push((net.def.name.clone(), net.def.id.clone())),
                }
            }
        }
        {
            let mut st = daemon.lock();
            for e in exited::load_all(&daemon.paths.exited_dir()) {
                st.exited.insert(e.id.clone(), e);
            }
        }
        daemon.recover();
        for (name, id) in orphans {
            info!(network = %name, "the network's owner exited while no daemon ran");
            daemon.owner_gone(&name, &id);
        }
        // Restored networks answer DNS only once they have names (an
        // unknown network never forwards): publish every network and every
        // sandbox taken over, once.
        daemon.publish_names(&daemon.lock());
        Ok(daemon)
    }

    /// Makes the daemon a cluster member (once).
    pub fn set_cluster(&self, c: crate::cluster::Cluster) {
        let _ = self.cluster.set(c);
        self.publish_local_subnets(&self.lock());
    }

    /// Tells the cluster (if any) the subnets of the local networks, which
    /// overlay networks made anywhere avoid.
    fn publish_local_subnets(&self, st: &State) {
        if let Some(c) = self.cluster.get() {
            c.set_local_subnets(
                st.networks
                    .values()
                    .filter(|n| !n.def.is_overlay())
                    .map(|n| n.def.subnet)
                    .collect(),
            );
        }
    }

    /// The cluster membership, if the daemon is in a cluster.
    pub fn cluster(&self) -> Option<&crate::cluster::Cluster> {
        self.cluster.get()
    }

    /// `GET /v1/cluster`: the membership as last seen, or `disabled`.
    pub fn cluster_status(&self) -> crate::cluster::ClusterStatus {
        match self.cluster.get() {
            Some(c) => c.status(),
            None => crate::cluster::ClusterStatus {
                etcd: "disabled".into(),
                ..Default::default()
            },
        }
    }

    /// The host address of published ports that name none (default
    /// 0.0.0.0, as Docker).
    pub fn set_publish_address(&mut self, ip: IpAddr) {
        self.publish_address = ip;
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    // ---- networks -------------------------------------------------------

    pub fn create_network(&self, req: NetworkCreate) -> Result<NetworkInspect, ApiError> {
        match req.driver.as_deref() {
            None | Some("bridge") => {}
            Some("overlay") => return self.create_overlay(req),
            Some(other) => {
                return Err(ApiError::bad_request(
                    format!("driver {other:?} is not supported"),
                    "use bridge (the default) or overlay",
                ))
            }
        }
        let mut st = self.lock();
        if st.networks.len() >= MAX_NETWORKS {
            return Err(ApiError::conflict(
                format!("too many networks ({MAX_NETWORKS})"),
                "remove unused ones with `warren network prune`",
            ));
        }
        let def = validate_network(&req, &st)?;
        let owner = owner_pidfd(&def)
            .map_err(|e| {
                ApiError::bad_request(
                    format!("--opt {OWNER_PID_OPTION}: {e}"),
                    "the owner must be running when the network is created",
                )
            })?
            .map(Arc::new);
        self.store.save(&def)?;
        let name = def.name.clone();
        let mut net = match start_network(def, self.gone_tx.clone(), self.forwarder.clone()) {
            Ok(n) => n,
            Err(e) => {
                let _ = self.store.remove(&name);
                return Err(ApiError::internal(e));
            }
        };
        net.owner = owner;
        info!(network = %name, subnet = %net.def.subnet, "network created");
        self.events.emit(
            Kind::Network,
            "create",
            &net.def.id,
            &[("name", &name), ("type", "bridge")],
        );
        st.networks.insert(name.clone(), net);
        self.publish_names(&st);
        self.publish_local_subnets(&st);
        Ok(inspect_network(&st, &name, self.publish_address))
    }

    /// `network create -d overlay`: a network of the whole cluster. Its
    /// definition, and the claims on its name, subnet (a /24 of 10.0.0.0/8
    /// unless given) and VNI, go into etcd in one transaction
    /// ([`crate::cluster::networks::create`]); a claim another member won
    /// meanwhile makes it choose again (a few times) or, for the name,
    /// report it. Every member then gets it from its watch; this one
    /// starts its copy at once.
    fn create_overlay(&self, mut req: NetworkCreate) -> Result<NetworkInspect, ApiError> {
        use crate::cluster::networks::{self, Claims, Conflict, CreateError};
        let Some(cluster) = self.cluster.get() else {
            return Err(ApiError::bad_request(
                "driver \"overlay\" needs a cluster: this daemon is in none",
                "start the daemon with --cluster-store etcd://IP:2379 --cluster-advertise IP (seed 004), or use a bridge network",
            ));
        };
        if req.options.contains_key(OWNER_PID_OPTION) {
            return Err(ApiError::bad_request(
                format!("--opt {OWNER_PID_OPTION} is for local networks"),
                "an overlay network belongs to the cluster, not to a process",
            ));
        }
        let rt = tokio::runtime::Handle::try_current().map_err(ApiError::internal)?;
        let mut client = cluster.client().map_err(|e| {
            ApiError::new(503, e, "overlay networks are made while etcd answers; try again when `warren cluster ls` succeeds")
        })?;
        // The latest definitions and members first, so the choice starts
        // from them: no overlay's subnet, and no member's local one.
        let _ = rt.block_on(cluster.refresh_networks());
        let members = rt
            .block_on(cluster.refresh_members())
            .unwrap_or_else(|_| cluster.status().members);
        let others: Vec<Ipv4Net> = members
            .iter()
            .flat_map(|m| m.local_subnets.iter().copied())
            .collect();
        if let Some(s) = req
            .subnet
            .as_deref()
            .and_then(|s| s.parse::<Ipv4Net>().ok())
        {
            if let Some(m) = members
                .iter()
                .find(|m| m.local_subnets.iter().any(|l| ipam::overlaps(&s, l)))
            {
                return Err(ApiError::conflict(
                    format!(
                        "subnet {s} overlaps a local network of member {}",
                        m.advertise
                    ),
                    "choose a subnet that no network of any member uses",
                ));
            }
        }
        let given_subnet = req.subnet.is_some();
        req.mtu = req.mtu.or(Some(OVERLAY_MTU));
        for _attempt in 0..8 {
            let def = {
                let st = self.lock();
                let mut r = req.clone();
                if !given_subnet {
                    let mut avoid: Vec<Ipv4Net> =
                        st.networks.values().map(|n| n.def.subnet).collect();
                    avoid.extend(ipam::host_routes());
                    avoid.extend(others.iter().copied());
                    let s = ipam::choose_overlay_subnet(&avoid).ok_or_else(|| {
                        ApiError::conflict(
                            "no free /24 left in 10.0.0.0/8",
                            "give one with --subnet",
                        )
                    })?;
                    r.subnet = Some(s.to_string());
                }
                let mut def = validate_network(&r, &st)?;
                let used: BTreeSet<u32> = st.networks.values().filter_map(|n| n.def.vni).collect();
                def.vni = (FIRST_VNI..).find(|v| !used.contains(v));
                def
            };
            let subnet = def.subnet.to_string();
            let claims = Claims {
                id: &def.id,
                name: &def.name,
                subnet: &subnet,
                vni: def.vni.expect("chosen"),
            };
            let record = serde_json::to_vec(&def).map_err(ApiError::internal)?;
            match rt.block_on(networks::create(
                &mut client,
                cluster.prefix(),
                &claims,
                record,
            )) {
                Ok(()) => {
                    info!(network = %def.name, subnet = %def.subnet, vni = ?def.vni, "overlay network created in the cluster store");
                    self.events.emit(
                        Kind::Network,
                        "create",
                        &def.id,
                        &[("name", &def.name), ("type", "overlay")],
                    );
                    let name = def.name.clone();
                    self.adopt_overlay(def);
                    let st = self.lock();
                    return Ok(inspect_network(&st, &name, self.publish_address));
                }
                Err(CreateError::Taken(Conflict::Name)) => {
                    return Err(ApiError::conflict(
                        format!("network with name {} already exists", def.name),
                        "choose another name, or remove it first",
                    ))
                }
                Err(CreateError::Taken(Conflict::Subnet)) if given_subnet => {
                    return Err(ApiError::conflict(
                        format!("subnet {subnet} is used by another overlay network"),
                        "choose a subnet that no other network uses",
                    ))
                }
                // Another member took that subnet or VNI a moment ago: learn
                // it and choose again.
                Err(CreateError::Taken(_)) => {
                    let _ = rt.block_on(cluster.refresh_networks());
                }
                Err(CreateError::Store(e)) => {
                    return Err(ApiError::new(
                        503,
                        format!("etcd: {e}"),
                        "try again when `warren cluster ls` succeeds",
                    ))
                }
            }
        }
        Err(ApiError::conflict(
            "other members kept taking the subnets and VNIs chosen",
            "try again, or give --subnet",
        ))
    }

    /// Starts this daemon's copy of an overlay network (no-op when it has one).
    fn adopt_overlay(&self, def: NetworkDef) {
        let mut st = self.lock();
        if let Some(n) = st.networks.get(&def.name) {
            if n.def.id != def.id {
                warn!(network = %def.name, "a local network has the name of a cluster one; the cluster's is not shown here");
            }
            return;
        }
        let name = def.name.clone();
        match start_network(def, self.gone_tx.clone(), self.forwarder.clone()) {
            Ok(net) => {
                info!(network = %name, "overlay network known from the cluster store");
                st.networks.insert(name, net);
                self.publish_names(&st);
            }
            Err(e) => {
                warn!(network = %name, error = %e, "cannot start an overlay network's switch")
            }
        }
    }

    /// The cluster's overlay records, whole: adopts the new ones, drops the
    /// copies of those gone (they have no endpoints: sandboxes cannot join
    /// an overlay network yet). Records that do not parse, or are not
    /// overlay definitions, are skipped.
    pub fn reconcile_overlays(&self, records: Vec<Vec<u8>>) {
        let defs: Vec<NetworkDef> = records
            .iter()
            .filter_map(|r| serde_json::from_slice::<NetworkDef>(r).ok())
            .filter(|d| d.is_overlay() && util::valid_name(&d.name) && d.name != DEFAULT_NETWORK)
            .collect();
        if defs.len() < records.len() {
            warn!(
                skipped = records.len() - defs.len(),
                "cluster store: overlay records that are not definitions"
            );
        }
        let ids: BTreeSet<&str> = defs.iter().map(|d| d.id.as_str()).collect();
        {
            let mut st = self.lock();
            let gone: Vec<String> = st
                .networks
                .values()
                .filter(|n| n.def.is_overlay() && !ids.contains(n.def.id.as_str()))
                .map(|n| n.def.name.clone())
                .collect();
            for name in gone {
                st.networks.remove(&name);
                info!(network = %name, "overlay network removed from the cluster store");
            }
        }
        for d in defs {
            self.adopt_overlay(d);
        }
    }

    /// Networks with a live owner: `(name, id, pidfd)`, for the API layer
    /// to watch (see [`OWNER_PID_OPTION`]).
    pub fn owned_networks(&self) -> Vec<(String, String, Arc<OwnedFd>)> {
        self.lock()
            .networks
            .values()
            .filter_map(|n| {
                let fd = n.owner.clone()?;
                Some((n.def.name.clone(), n.def.id.clone(), fd))
            })
            .collect()
    }

    /// The owner of network `name` (id `id`) exited: detach the attached
    /// sandboxes that are only on it, disconnect the others from it, and
    /// remove it. Returns false when something still holds it (an attach
    /// in flight); the caller tries again.
    pub fn owner_gone(&self, name: &str, id: &str) -> bool {
        let (detach, disconnect) = {
            let st = self.lock();
            match st.networks.get(name) {
                Some(n) if n.def.id == id => {}
                _ => return true,
            }
            let mut detach = Vec::new();
            let mut disconnect = Vec::new();
            for s in st.sandboxes.values() {
                if !s.endpoints.iter().any(|e| e.network == name) {
                    continue;
                }
                if s.attached && s.endpoints.iter().all(|e| e.network == name) {
                    detach.push(s.id.clone());
                } else {
                    disconnect.push(s.id.clone());
                }
            }
            (detach, disconnect)
        };
        for sid in detach {
            self.forget_sandbox(&sid, "the network's owner exited");
        }
        for sid in disconnect {
            if let Err(e) = self.disconnect(name, &sid) {
                warn!(network = name, sandbox = %sid, error = %e.error, "cannot disconnect");
            }
        }
        match self.remove_network(name) {
            Ok(_) => {
                info!(
                    network = name,
                    "the network's owner exited; network removed"
                );
                true
            }
            Err(e) if e.status == 404 => true,
            Err(e) => {
                warn!(network = name, error = %e.error, "the network's owner exited; cannot remove it yet");
                false
            }
        }
    }

    pub fn list_networks(&self) -> Vec<NetworkSummary> {
        let st = self.lock();
        let mut out: Vec<NetworkSummary> = st
            .networks
            .values()
            .map(|n| NetworkSummary {
                id: n.def.id.clone(),
                name: n.def.name.clone(),
                driver: n.def.driver_scope().0.into(),
                scope: n.def.driver_scope().1.into(),
                internal: n.def.internal,
                ipv6: false,
                subnet: n.def.subnet.to_string(),
                gateway: n.def.gateway.to_string(),
                created_at: n.def.created.clone(),
                labels: n.def.labels.clone(),
                containers: endpoints_on(&st, &n.def.name).count(),
            })
            .collect();
        out.extend(MODE_NETWORKS.iter().map(|(name, _)| {
            let n = inspect_mode_network(&st, name);
            NetworkSummary {
                id: n.id,
                name: n.name,
                driver: n.driver,
                scope: n.scope,
                internal: false,
                ipv6: false,
                subnet: String::new(),
                gateway: String::new(),
                created_at: n.created,
                labels: n.labels,
                containers: n.containers.len(),
            }
        }));
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    pub fn inspect_network(&self, key: &str) -> Result<NetworkInspect, ApiError> {
        let st = self.lock();
        if let Some(mode) = find_mode_network(&st, key) {
            return Ok(inspect_mode_network(&st, mode));
        }
        let name = find_network(&st, key)?;
        Ok(inspect_network(&st, &name, self.publish_address))
    }

    pub fn network_stats(&self, key: &str) -> Result<serde_json::Value, ApiError> {
        let st = self.lock();
        let name = find_network(&st, key)?;
        let stats = st.networks[&name].switch.stats();
        serde_json::to_value(stats).map_err(ApiError::internal)
    }

    pub fn remove_network(&self, key: &str) -> Result<String, ApiError> {
        let mut st = self.lock();
        if let Some(mode) = find_mode_network(&st, key) {
            return Err(ApiError::new(
                403,
                format!("{mode} is a pre-defined network and cannot be removed"),
                "",
            ));
        }
        let name = find_network(&st, key)?;
        if name == DEFAULT_NETWORK {
            return Err(ApiError::new(
                403,
                format!("{DEFAULT_NETWORK} is a pre-defined network and cannot be removed"),
                "",
            ));
        }
        let users: Vec<String> = endpoints_on(&st, &name)
            .map(|(s, _)| s.name.clone())
            .collect();
        if !users.is_empty() || st.networks[&name].ipam.in_use() > 0 {
            return Err(ApiError::conflict(
                format!(
                    "network {name} has active endpoints ({})",
                    if users.is_empty() {
                        "being attached".into()
                    } else {
                        users.join(", ")
                    }
                ),
                "remove those sandboxes first (warren rm -f NAME)",
            ));
        }
        if st.networks[&name].def.is_overlay() {
            let def = st.networks[&name].def.clone();
            drop(st);
            return self.remove_overlay(def);
        }
        self.store.remove(&name)?;
        if let Some(n) = st.networks.remove(&name) {
            self.events.emit(
                Kind::Network,
                "destroy",
                &n.def.id,
                &[("name", &name), ("type", "bridge")],
            );
        }
        self.publish_local_subnets(&st);
        info!(network = %name, "network removed");
        Ok(name)
    }

    /// `network rm` of an overlay network, from any member: out of etcd in
    /// one transaction, then every member's copy goes with its watch.
    fn remove_overlay(&self, def: NetworkDef) -> Result<String, ApiError> {
        use crate::cluster::networks::{self, Claims};
        let cluster = self
            .cluster
            .get()
            .ok_or_else(|| ApiError::internal("an overlay network without a cluster"))?;
        let rt = tokio::runtime::Handle::try_current().map_err(ApiError::internal)?;
        let mut client = cluster.client().map_err(|e| {
            ApiError::new(503, e, "overlay networks are removed while etcd answers; try again when `warren cluster ls` succeeds")
        })?;
        let subnet = def.subnet.to_string();
        let claims = Claims {
            id: &def.id,
            name: &def.name,
            subnet: &subnet,
            vni: def.vni.unwrap_or_default(),
        };
        rt.block_on(networks::remove(&mut client, cluster.prefix(), &claims))
            .map_err(|e| {
                ApiError::new(
                    503,
                    format!("etcd: {e}"),
                    "try again when `warren cluster ls` succeeds",
                )
            })?;
        let mut st = self.lock();
        if st
            .networks
            .get(&def.name)
            .is_some_and(|n| n.def.id == def.id)
        {
            st.networks.remove(&def.name);
        }
        info!(network = %def.name, "overlay network removed");
        self.events.emit(
            Kind::Network,
            "destroy",
            &def.id,
            &[("name", &def.name), ("type", "overlay")],
        );
        Ok(def.name)
    }

    pub fn prune_networks(&self) -> Pruned {
        let names: Vec<String> = {
            let st = self.lock();
            st.networks
                .keys()
                .filter(|n| {
                    *n != DEFAULT_NETWORK
                        && !st.networks[*n].def.is_overlay()
                        && endpoints_on(&st, n).next().is_none()
                })
                .cloned()
                .collect()
        };
        let mut pruned = Pruned::default();
        for n in names {
            if let Ok(name) = self.remove_network(&n) {
                pruned.removed.push(name);
            }
        }
        pruned
    }

    // ---- sandboxes ------------------------------------------------------

    /// Registers the sandbox around `req.pid` and attaches it to its
    /// networks. Blocking (spawns the setns helper).
    pub fn create_sandbox(&self, req: SandboxCreate) -> Result<Created, ApiError> {
        let mut target = NsTarget {
            pid: req.pid,
            netns: req.netns.as_ref().map(PathBuf::from),
            userns: req.userns.as_ref().map(PathBuf::from),
            pidfd: None,
        };
        if req.pid < 0 || (req.pid == 0 && target.netns.is_none()) {
            return Err(ApiError::bad_request(
                format!("invalid pid {}", req.pid),
                "give the pid of a process in the sandbox, or its network namespace path",
            ));
        }
        let pidfd = if req.pid > 0 {
            let fd = crate::sys::pidfd::open(req.pid).map_err(|e| {
                ApiError::bad_request(
                    format!("no process {}: {e}", req.pid),
                    "the sandbox's process must be running",
                )
            })?;
            check_owner(req.pid)?;
            Some(Arc::new(fd))
        } else {
            None
        };
        target.pidfd = pidfd.clone();
        let netns_watch = match &target.netns {
            Some(path) => {
                let (dev, ino) = record::netns_identity(path).map_err(|e| {
                    ApiError::bad_request(
                        format!("network namespace {}: {e}", path.display()),
                        "give an existing netns path",
                    )
                })?;
                Some(NetnsWatch {
                    path: path.clone(),
                    dev,
                    ino,
                })
            }
            None => None,
        };
        let mode = req.network_mode.clone().unwrap_or_else(|| "bridge".into());
        if !matches!(mode.as_str(), "bridge" | "none" | "host") {
            return Err(ApiError::bad_request(
                format!("unknown network mode {mode:?}"),
                "use bridge, none or host",
            ));
        }
        if mode != "bridge" && !req.ports.is_empty() {
            return Err(ApiError::bad_request(
                format!("--network {mode} has no network to publish ports on"),
                "run it on a network (the default bridge, or --network NAME) to use -p",
            ));
        }
        if mode != "bridge" && !req.networks.is_empty() {
            return Err(ApiError::bad_request(
                format!("--network {mode} cannot be combined with other networks"),
                "give either one of host/none, or only named networks",
            ));
        }
        let id = match &req.id {
            Some(id) if util::is_full_id(id) => id.clone(),
            Some(id) => {
                return Err(ApiError::bad_request(
                    format!("invalid sandbox id {id:?}"),
                    "ids are 64 lowercase hex digits",
                ))
            }
            None => util::random_id(),
        };
        let hostname = req.hostname.clone().unwrap_or_else(|| id[..12].to_string());
        if !util::valid_hostname(&hostname) {
            return Err(ApiError::bad_request(
                format!("invalid hostname {hostname:?}"),
                "use letters, digits, '-' and '.', at most 63 characters",
            ));
        }

        // Reserve the name and addresses.
        let (name, endpoints, ifaces, bound, dns, opts) = {
            let mut st = self.lock();
            if st.sandboxes.len() + st.pending_names.len() >= MAX_SANDBOXES {
                return Err(ApiError::conflict(
                    format!("too many sandboxes ({MAX_SANDBOXES})"),
                    "remove some with warren rm",
                ));
            }
            if st.sandboxes.contains_key(&id) {
                return Err(ApiError::conflict(
                    format!("sandbox id {id} is already in use"),
                    "",
                ));
            }
            if let Some(ext) = &req.external_id {
                if st
                    .sandboxes
                    .values()
                    .any(|s| s.external_id.as_deref() == Some(ext))
                {
                    return Err(ApiError::conflict(
                        format!("a sandbox for {ext} is already attached"),
                        "connect it to more networks instead",
                    ));
                }
            }
            let name = self.reserve_name(&mut st, req.name.as_deref())?;
            let mut requests = req.networks.clone();
            if mode == "bridge" && requests.is_empty() {
                requests.push(EndpointRequest {
                    network: DEFAULT_NETWORK.into(),
                    ..Default::default()
                });
            }
            let (eps, ifaces) = match reserve_endpoints(&mut st, &requests, &[], false) {
                Ok(x) => x,
                Err(e) => {
                    st.pending_names.remove(&name);
                    return Err(e);
                }
            };
            let opts = match run_options(&st, &req, &mode, &eps) {
                Ok(o) => o,
                Err(e) => {
                    release_endpoints(&mut st, &eps);
                    st.pending_names.remove(&name);
                    return Err(e);
                }
            };
            // The host ports, before anything is committed: a port in use
            // fails the create with nothing left bound.
            let ports = with_publish_all(&req, &mode);
            let bound = if ports.is_empty() {
                Ok(Vec::new())
            } else {
                self.bind_ports(&st, &name, &eps, &ports)
            };
            match bound {
                Ok(bound) => {
                    let dns = eps
                        .first()
                        .and_then(|e| st.networks.get(&e.network))
                        .and_then(|n| dns_server(&n.def));
                    (name, eps, ifaces, bound, dns, opts)
                }
                Err(e) => {
                    release_endpoints(&mut st, &eps);
                    st.pending_names.remove(&name);
                    return Err(e);
                }
            }
        };

        // Attach without the lock. A `run` sandbox gets the embedded DNS
        // at 127.0.0.11 (when its first network serves DNS at all), others
        // the first network's gateway (or its dns-address); so does a `run`
        // sandbox whose 127.0.0.11 sockets could not be made.
        let wants_embedded = !req.attached && mode == "bridge" && dns.is_some();
        let attach = if mode == "host" {
            Ok(helper::Opened {
                taps: Vec::new(),
                dns: Ok(None),
            })
        } else {
            let mut r = target.request(true, ifaces, None);
            r.configure = req.configure;
            r.embedded_dns = wants_embedded;
            helper::run_full(&self.exe, &r)
        };
        let files = attach.and_then(|opened| {
            let listener = self.serve_embedded(&id, &name, opened.dns);
            let dns = nameserver(listener.is_some(), dns);
            let files = self.write_files(&id, &hostname, &name, &endpoints, dns, &opts)?;
            Ok(((opened.taps, listener), files))
        });

        let mut st = self.lock();
        st.pending_names.remove(&name);
        let ((fds, listener), binds) = match files {
            Ok(x) => x,
            Err(e) => {
                release_endpoints(&mut st, &endpoints);
                let _ = std::fs::remove_dir_all(self.paths.sandbox_dir(&id));
                return Err(ApiError::new(
                    500,
                    format!("cannot attach sandbox {name}: {e:#}"),
                    "check that /dev/net/tun is mode 0666 and user namespaces are enabled; the daemon log has details",
                ));
            }
        };
        let mut endpoints = endpoints;
        self.add_ports(&st, &name, &mut endpoints, fds);
        let ports = self.start_forwards(&st, &name, &endpoints, bound);
        let published: Vec<PortMapping> = ports.iter().map(|p| p.mapping.clone()).collect();
        info!(sandbox = %name, id = %&id[..12], pid = req.pid, netns = ?target.netns, networks = endpoints.len(), ports = published.len(), "sandbox attached");
        st.sandboxes.insert(
            id.clone(),
            Sandbox {
                id: id.clone(),
                name: name.clone(),
                target,
                pidfd: pidfd.clone(),
                attached: req.attached,
                external_id: req.external_id,
                pid_start: (req.pid > 0).then(|| record::start_time(req.pid)).flatten(),
                netns_watch: netns_watch.clone(),
                hostname: hostname.clone(),
                created: SystemTime::now(),
                command: req.command,
                mode,
                endpoints,
                ports,
                auto_remove: req.auto_remove,
                opts,
                embedded: listener,
            },
        );
        self.publish_names(&st);
        self.save_record(&st, &id);
        self.emit_created(&st, &id);
        Ok(Created {
            answer: SandboxCreated {
                id,
                name,
                hostname,
                binds,
                ports: published,
            },
            pidfd,
            netns_watch,
        })
    }

    fn reserve_name(&self, st: &mut State, wanted: Option<&str>) -> Result<String, ApiError> {
        let taken = |st: &State, n: &str| {
            st.pending_names.contains(n)
                || st.sandboxes.values().any(|s| s.name == n)
                || st.exited.values().any(|e| e.name == n)
        };
        let name = match wanted {
            Some(n) => {
                if !util::valid_name(n) {
                    return Err(ApiError::bad_request(
                        format!("invalid sandbox name {n:?}"),
                        "names match [a-zA-Z0-9][a-zA-Z0-9_.-]*",
                    ));
                }
                if let Some(e) = st.exited.values().find(|e| e.name == n) {
                    return Err(ApiError::conflict(
                        format!(
                            "the name {n:?} is already in use by exited sandbox {}",
                            &e.id[..12]
                        ),
                        format!("remove it first (`warren rm {n}`), or choose another --name"),
                    ));
                }
                if taken(st, n) {
                    return Err(ApiError::conflict(
                        format!("the name {n:?} is already in use by another sandbox"),
                        "choose another --name, or remove that sandbox first (warren rm -f)",
                    ));
                }
                n.to_string()
            }
            None => {
                let mut n = util::random_name();
                let mut tries = 0;
                while taken(st, &n) {
                    tries += 1;
                    n = format!("{}_{}", util::random_name(), tries);
                }
                n
            }
        };
        st.pending_names.insert(name.clone());
        Ok(name)
    }

    /// Writes the sandbox's `/etc/hosts`, `/etc/hostname` and (when it has
    /// a nameserver `dns`: 127.0.0.11, or its first network's gateway)
    /// `/etc/resolv.conf`;
    /// returns the bind list for the init. Files are rewritten in place, so
    /// the bind mounts of a running sandbox see later updates.
    fn write_files(
        &self,
        id: &str,
        hostname: &str,
        name: &str,
        eps: &[Endpoint],
        dns: Option<Ipv4Addr>,
        opts: &RunOptions,
    ) -> anyhow::Result<Vec<(String, String)>> {
        let dir = self.paths.sandbox_dir(id);
        std::fs::create_dir_all(&dir)?;
        let mut hosts = String::from(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
             fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
        );
        for ep in eps {
            if hostname == name {
                hosts.push_str(&format!("{}\t{hostname}\n", ep.ip));
            } else {
                hosts.push_str(&format!("{}\t{hostname} {name}\n", ep.ip));
            }
        }
        for line in &opts.hosts {
            hosts.push_str(line);
            hosts.push('\n');
        }
        let mut binds = Vec::new();
        for (file, body, target) in [
            ("hosts", hosts, "/etc/hosts"),
            ("hostname", format!("{hostname}\n"), "/etc/hostname"),
        ] {
            let path = dir.join(file);
            std::fs::write(&path, body)?;
            binds.push((path.display().to_string(), target.to_string()));
        }
        // Docker: on user-defined networks the sandbox keeps the embedded
        // DNS (which forwards to its --dns servers); on the default bridge
        // its resolv.conf lists them.
        let names = eps.first().is_some_and(|e| e.network != DEFAULT_NETWORK);
        if let Some(body) = sandbox_resolv_conf(dns, names, opts) {
            let path = dir.join("resolv.conf");
            std::fs::write(&path, body)?;
            binds.push((path.display().to_string(), "/etc/resolv.conf".to_string()));
        }
        Ok(binds)
    }

    /// Rewrites a running sandbox's files and its record after its
    /// endpoints changed.
    fn refresh_files(&self, st: &State, id: &str) {
        let Some(s) = st.sandboxes.get(id) else {
            return;
        };
        let dns = s
            .endpoints
            .first()
            .and_then(|e| st.networks.get(&e.network))
            .and_then(|n| dns_server(&n.def));
        let dns = nameserver(s.embedded.is_some(), dns);
        if let Err(e) = self.write_files(id, &s.hostname, &s.name, &s.endpoints, dns, &s.opts) {
            warn!(sandbox = %s.name, error = %e, "cannot update the sandbox's files");
        }
        self.save_record(st, id);
    }

    /// `network connect`: hot-plugs a new interface into a running sandbox.
    /// Returns the interface name.
    pub fn connect(&self, network: &str, req: ConnectRequest) -> Result<String, ApiError> {
        let (id, target, name, ifaces) = {
            let mut st = self.lock();
            let mode = find_mode_network(&st, network);
            let net = match mode {
                Some(m) => m.to_string(),
                None => find_network(&st, network)?,
            };
            let id = find_sandbox(&st, &req.sandbox)?;
            let s = &st.sandboxes[&id];
            if let Some(e) = mode_conflict(&s.name, &s.mode, mode) {
                return Err(e);
            }
            check_not_busy(&st, &id)?;
            let (target, name) = (s.target.clone(), s.name.clone());
            let existing = s.endpoints.clone();
            let has_default = existing.iter().any(|e| e.default_route);
            let request = EndpointRequest {
                network: net,
                ifname: req.ifname,
                aliases: req.aliases,
                ip: req.ip,
                mac: req.mac,
            };
            let (eps, ifaces) = reserve_endpoints(&mut st, &[request], &existing, has_default)?;
            st.busy.insert(id.clone());
            (id, target, name, (eps, ifaces))
        };
        let (eps, ifaces) = ifaces;
        let attached = helper::run(&self.exe, &target.request(false, ifaces, None));
        let mut st = self.lock();
        st.busy.remove(&id);
        let fds = match attached {
            Ok(fds) if st.sandboxes.contains_key(&id) => fds,
            Ok(_) => {
                release_endpoints(&mut st, &eps);
                return Err(ApiError::not_found(
                    format!("sandbox {name} exited while connecting"),
                    "",
                ));
            }
            Err(e) => {
                release_endpoints(&mut st, &eps);
                return Err(ApiError::new(
                    500,
                    format!("cannot connect sandbox {name}: {e:#}"),
                    "the daemon log has details",
                ));
            }
        };
        let mut eps = eps;
        self.add_ports(&st, &name, &mut eps, fds);
        let ifname = eps.first().map(|e| e.ifname.clone()).unwrap_or_default();
        let net = eps.first().map(|e| e.network.clone()).unwrap_or_default();
        if let Some(s) = st.sandboxes.get_mut(&id) {
            s.endpoints.extend(eps);
        }
        self.refresh_files(&st, &id);
        self.publish_names(&st);
        info!(sandbox = %name, network, ifname = %ifname, "connected");
        self.emit_endpoint(&st, "connect", (&id, &name), &net);
        Ok(ifname)
    }

    /// `network disconnect`: removes the sandbox's interface on `network`;
    /// its address is freed and its names stop resolving at once. If it
    /// carried the default route, the route moves to the next non-internal
    /// network.
    pub fn disconnect(&self, network: &str, sandbox: &str) -> Result<(), ApiError> {
        let (name, target, reroute) = {
            let mut st = self.lock();
            match find_mode_network(&st, network) {
                Some("host") => {
                    return Err(ApiError::bad_request(
                        "container cannot be disconnected from host network or connected to host network",
                        "a sandbox run with --network host keeps the host's network until it ends",
                    ))
                }
                Some(_) => {
                    return Err(ApiError::bad_request(
                        "container cannot be disconnected from none network",
                        "a sandbox run with --network none keeps only loopback until it ends",
                    ))
                }
                None => {}
            }
            let net = find_network(&st, network)?;
            let id = find_sandbox(&st, sandbox)?;
            check_not_busy(&st, &id)?;
            let internal: BTreeMap<String, (bool, Ipv4Addr)> = st
                .networks
                .iter()
                .map(|(k, n)| (k.clone(), (n.def.internal, n.def.gateway)))
                .collect();
            let Some(s) = st.sandboxes.get_mut(&id) else {
                return Err(ApiError::internal("sandbox vanished"));
            };
            let Some(pos) = s.endpoints.iter().position(|e| e.network == net) else {
                return Err(ApiError::conflict(
                    format!("sandbox {} is not connected to network {net}", s.name),
                    "see its networks with `warren inspect`",
                ));
            };
            let ep = s.endpoints.remove(pos);
            // Its published ports go with it.
            let (unpublished, kept): (Vec<Published>, Vec<Published>) =
                std::mem::take(&mut s.ports)
                    .into_iter()
                    .partition(|p| p.network == net);
            s.ports = kept;
            let mut reroute = None;
            if ep.default_route {
                if let Some(next) = s
                    .endpoints
                    .iter_mut()
                    .find(|e| internal.get(&e.network).is_some_and(|n| !n.0))
                {
                    next.default_route = true;
                    reroute = internal.get(&next.network).map(|n| RouteConfig {
                        ifname: next.ifname.clone(),
                        gateway: n.1,
                    });
                }
            }
            let (name, target) = (s.name.clone(), s.target.clone());
            stop_forwards(&st, &unpublished);
            emit_ports(&self.events, "unpublish", &id, &name, &unpublished);
            release_endpoints(&mut st, std::slice::from_ref(&ep));
            self.refresh_files(&st, &id);
            self.publish_names(&st);
            info!(sandbox = %name, network = %net, ifname = %ep.ifname, "disconnected");
            self.emit_endpoint(&st, "disconnect", (&id, &name), &net);
            (name, target, reroute)
        };
        if let Some(route) = reroute {
            if let Err(e) = helper::run(&self.exe, &target.request(false, vec![], Some(route))) {
                warn!(sandbox = %name, error = %format!("{e:#}"), "cannot move the default route");
            }
        }
        Ok(())
    }

    /// Hands each endpoint's TAP fd to its network's switch.
    fn add_ports(&self, st: &State, name: &str, eps: &mut [Endpoint], fds: Vec<OwnedFd>) {
        for (ep, fd) in eps.iter_mut().zip(fds) {
            let Some(net) = st.networks.get(&ep.network) else {
                continue;
            };
            ep.tap = fd.try_clone().ok().map(Arc::new);
            let spec = PortSpec {
                fd,
                vnet_hdr: true,
                mac: ep.mac.0,
                ipv4: ep.ip,
                label: format!("{name}/{}", ep.ifname),
            };
            match net.switch.add_port(spec) {
                Ok(port) => ep.port = Some(port),
                Err(e) => {
                    warn!(sandbox = %name, network = %ep.network, error = %e, "cannot add port")
                }
            }
        }
    }

    /// Sends the current names to every switch (DNS answers from them): one
    /// new snapshot, shared by all, after every change.
    fn publish_names(&self, st: &State) {
        let networks: Vec<NetworkInfo> = st
            .networks
            .values()
            .map(|n| NetworkInfo {
                name: n.def.name.clone(),
                internal: n.def.internal,
                names_enabled: n.def.name != DEFAULT_NETWORK,
                gateway: n.def.gateway,
            })
            .collect();
        let sandboxes: Vec<SandboxInfo> = st
            .sandboxes
            .values()
            .map(|s| SandboxInfo {
                name: s.name.clone(),
                short_id: s.id[..12].to_string(),
                endpoints: s
                    .endpoints
                    .iter()
                    .map(|e| EndpointInfo {
                        network: e.network.clone(),
                        ip: e.ip,
                        aliases: e.aliases.clone(),
                    })
                    .collect(),
            })
            .collect();
        // host.warren.internal where the NAT maps it to the host's loopback
        // (never on internal networks, which have no NAT).
        let host_loopback = st
            .networks
            .values()
            .filter(|n| {
                !n.def.internal
                    && nat::policy::host_loopback_enabled(
                        n.def
                            .options
                            .get(nat::HOST_LOOPBACK_OPTION)
                            .map(String::as_str),
                    )
            })
            .map(|n| n.def.name.clone());
        let mut table = NameTable::build(&networks, &sandboxes)
            .with_host(host_loopback, nat::HOST_LOOPBACK_ADDR);
        // `run --dns`: that sandbox's forwarded queries go to its servers.
        for s in st.sandboxes.values() {
            let servers: Arc<[SocketAddr]> = s
                .opts
                .dns
                .iter()
                .filter_map(|ip| ip.parse::<IpAddr>().ok())
                .map(|ip| SocketAddr::new(ip, 53))
                .collect();
            if servers.is_empty() {
                continue;
            }
            for e in &s.endpoints {
                table = table.with_upstreams(&e.network, e.ip, servers.clone());
            }
        }
        let table = Arc::new(table);
        for n in st.networks.values() {
            n.switch.set_names(table.clone());
        }
        // 127.0.0.11 asks as the sandbox's address on its default route's
        // network (the first that is not internal), else its first.
        let askers = st
            .sandboxes
            .values()
            .filter(|s| s.embedded.is_some())
            .filter_map(|s| {
                let ep = s
                    .endpoints
                    .iter()
                    .find(|e| e.default_route)
                    .or(s.endpoints.first())?;
                let net = st.networks.get(&ep.network)?;
                let asker = embedded::Asker {
                    network: Arc::from(ep.network.as_str()),
                    ip: ep.ip,
                    counters: net.switch.dns_counters(),
                };
                Some((s.id.clone(), asker))
            })
            .collect();
        self.embedded.set_view(embedded::View { table, askers });
    }

    /// Starts serving a new sandbox's embedded DNS on the sockets the
    /// helper made, if it made them; logs why not otherwise (the sandbox
    /// then names its gateway in resolv.conf).
    fn serve_embedded(
        &self,
        id: &str,
        name: &str,
        sockets: Result<Option<(OwnedFd, OwnedFd)>, String>,
    ) -> Option<embedded::Listener> {
        let why = match sockets {
            Ok(None) => return None,
            Ok(Some((udp, tcp))) => match self.embedded.serve(id, udp, tcp) {
                Ok(listener) => return Some(listener),
                Err(e) => e.to_string(),
            },
            Err(e) => e,
        };
        warn!(sandbox = %name, error = %why, "no DNS at 127.0.0.11 in the sandbox; its resolv.conf names the gateway");
        None
    }

    /// `ps`: the live sandboxes, and with `all` the exited ones too.
    pub fn list_sandboxes(&self, all: bool) -> Vec<SandboxSummary> {
        let mut st = self.lock();
        let now = SystemTime::now();
        let logs = self.paths.logs_dir();
        let exited: Vec<(SystemTime, SandboxSummary)> = if all {
            st.exited
                .values_mut()
                .map(|e| {
                    let code = e.exit_code(&logs);
                    let age = util::human_age(now.duration_since(e.created).unwrap_or_default());
                    (
                        e.created,
                        SandboxSummary {
                            id: e.id.clone(),
                            names: e.name.clone(),
                            command: e.command.join(" "),
                            created_at: util::rfc3339(e.created),
                            running_for: format!("{age} ago"),
                            status: exited::status_line(
                                code,
                                now.duration_since(e.finished).unwrap_or_default(),
                            ),
                            pid: 0,
                            networks: if e.mode != "bridge" {
                                e.mode.clone()
                            } else {
                                e.networks.join(",")
                            },
                            ports: String::new(),
                            external_id: String::new(),
                            attached: false,
                            state: "exited".into(),
                            labels: labels_column(&e.opts.labels),
                        },
                    )
                })
                .collect()
        } else {
            Vec::new()
        };
        let mut rows: Vec<(SystemTime, SandboxSummary)> = st
            .sandboxes
            .values()
            .map(|s| {
                let age = util::human_age(now.duration_since(s.created).unwrap_or_default());
                // Docker: host and none are shown; a sandbox disconnected
                // from every network shows none.
                let networks = if s.mode != "bridge" {
                    s.mode.clone()
                } else {
                    s.endpoints
                        .iter()
                        .map(|e| e.network.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                };
                (
                    s.created,
                    SandboxSummary {
                        id: s.id.clone(),
                        names: s.name.clone(),
                        command: s.command.join(" "),
                        created_at: util::rfc3339(s.created),
                        running_for: format!("{age} ago"),
                        status: format!("Up {age}"),
                        pid: s.target.pid,
                        networks,
                        ports: publish::ps_column(&publish::listed(
                            &mappings(&s.ports),
                            exposed_ports(s),
                        )),
                        external_id: s.external_id.clone().unwrap_or_default(),
                        attached: s.attached,
                        state: "running".into(),
                        labels: labels_column(&s.opts.labels),
                    },
                )
            })
            .collect();
        rows.extend(exited);
        rows.sort_by_key(|r| std::cmp::Reverse(r.0));
        rows.into_iter().map(|(_, r)| r).collect()
    }

    pub fn inspect_sandbox(&self, key: &str) -> Result<SandboxInspect, ApiError> {
        let mut st = self.lock();
        let logs = self.paths.logs_dir();
        if let Some(id) = find_exited(&st, key) {
            let network_ids: BTreeMap<String, String> = st
                .networks
                .iter()
                .map(|(name, n)| (name.clone(), n.def.id.clone()))
                .collect();
            let e = st.exited.get_mut(&id).expect("found");
            let code = e.exit_code(&logs);
            let log = exited::log_file(&logs, &e.id);
            return Ok(SandboxInspect {
                id: e.id.clone(),
                name: format!("/{}", e.name),
                created: util::rfc3339(e.created),
                path: e.command.first().cloned().unwrap_or_default(),
                args: e.command.iter().skip(1).cloned().collect(),
                state: SandboxState::exited(
                    code.unwrap_or(-1),
                    util::rfc3339(e.created),
                    util::rfc3339(e.finished),
                ),
                config: SandboxConfig::new(e.hostname.clone(), e.command.clone(), &e.opts),
                host_config: HostConfig::new(
                    network_mode(&e.opts, &e.mode, e.networks.first().map(String::as_str)),
                    &e.name,
                    &e.opts,
                ),
                // Docker keeps a stopped container's networks, their
                // addresses emptied.
                network_settings: NetworkSettings::new(
                    exited_networks(e, &network_ids),
                    BTreeMap::new(),
                    DEFAULT_NETWORK,
                ),
                log_path: if log.exists() {
                    log.display().to_string()
                } else {
                    String::new()
                },
            });
        }
        let id = find_sandbox(&st, key)?;
        let s = &st.sandboxes[&id];
        let mut networks = BTreeMap::new();
        for ep in &s.endpoints {
            let Some(net) = st.networks.get(&ep.network) else {
                continue;
            };
            networks.insert(
                ep.network.clone(),
                EndpointSettings {
                    ipam_config: ep.static_ip.then(|| EndpointIpamConfig {
                        ipv4_address: ep.ip.to_string(),
                    }),
                    links: None,
                    aliases: (!ep.aliases.is_empty()).then(|| ep.aliases.clone()),
                    mac_address: ep.mac.to_string(),
                    driver_opts: None,
                    network_id: net.def.id.clone(),
                    endpoint_id: ep.id.clone(),
                    gateway: net.def.gateway.to_string(),
                    ip_address: ep.ip.to_string(),
                    ip_prefix_len: net.def.subnet.prefix_len(),
                    ipv6_gateway: String::new(),
                    global_ipv6_address: String::new(),
                    global_ipv6_prefix_len: 0,
                    dns_names: (ep.network != DEFAULT_NETWORK)
                        .then(|| dns_names(&s.name, &ep.aliases, &s.id)),
                    interface: ep.ifname.clone(),
                },
            );
        }
        Ok(SandboxInspect {
            id: s.id.clone(),
            name: format!("/{}", s.name),
            created: util::rfc3339(s.created),
            path: s.command.first().cloned().unwrap_or_default(),
            args: s.command.iter().skip(1).cloned().collect(),
            state: SandboxState::running(s.target.pid, util::rfc3339(s.created)),
            config: SandboxConfig::new(s.hostname.clone(), s.command.clone(), &s.opts),
            host_config: HostConfig::new(
                network_mode(
                    &s.opts,
                    &s.mode,
                    s.endpoints.first().map(|e| e.network.as_str()),
                ),
                &s.name,
                &s.opts,
            ),
            network_settings: NetworkSettings::new(
                networks,
                publish::inspect_map(&mappings(&s.ports), exposed_ports(s)),
                DEFAULT_NETWORK,
            ),
            log_path: {
                let log = exited::log_file(&logs, &s.id);
                if log.exists() {
                    log.display().to_string()
                } else {
                    String::new()
                }
            },
        })
    }

    /// `rm`: refuses a running sandbox unless `force`, which kills it first.
    /// An attached sandbox (made by a runner) is only detached: warren never
    /// kills a runner's processes. `detach` insists on an attached one.
    pub fn remove_sandbox(&self, key: &str, force: bool, detach: bool) -> Result<String, ApiError> {
        let (id, name, pidfd, attached) = {
            // One lock for both lookups: the exit watcher moves a sandbox
            // from one list to the other under it.
            let mut st = self.lock();
            if !detach {
                if let Some(id) = find_exited(&st, key) {
                    let e = st.exited.remove(&id).expect("found");
                    exited::remove_files(&self.paths.exited_dir(), &self.paths.logs_dir(), &id);
                    info!(sandbox = %e.name, id = %&id[..12], "exited sandbox removed");
                    self.events
                        .emit(Kind::Sandbox, "destroy", &id, &[("name", &e.name)]);
                    return Ok(e.name);
                }
            }
            let id = find_sandbox(&st, key)?;
            let s = &st.sandboxes[&id];
            (id, s.name.clone(), s.pidfd.clone(), s.attached)
        };
        if detach && !attached {
            return Err(ApiError::conflict(
                format!("sandbox {name} was started by warren run, not attached"),
                "remove it with `warren rm -f`",
            ));
        }
        if let (Some(pidfd), false) = (&pidfd, attached) {
            if !crate::sys::pidfd::has_exited(&**pidfd) {
                if !force {
                    return Err(ApiError::conflict(
                        format!("sandbox {name} is running"),
                        "stop its command first, or use `warren rm -f` to kill it",
                    ));
                }
                if let Err(e) = crate::sys::pidfd::send_signal(&**pidfd, libc::SIGKILL) {
                    warn!(sandbox = %name, error = %e, "kill failed");
                }
            }
        }
        let code = match attached {
            false => exited::wait_status(&self.paths.logs_dir(), &id, EXIT_CODE_WAIT),
            true => None,
        };
        {
            let mut st = self.lock();
            if let Some(s) = self.forget_locked(&mut st, &id) {
                match attached {
                    true => self.emit_gone(&st, &s, None, "detach"),
                    false => self.emit_gone(&st, &s, code, "die"),
                }
            }
            if !attached {
                self.events
                    .emit(Kind::Sandbox, "destroy", &id, &[("name", &name)]);
            }
            if !attached {
                // Its exit may have been recorded since the lookup above (the
                // kill, or an exit of its own, raced the watcher): rm removes
                // that record too, in the same step.
                st.exited.remove(&id);
                exited::remove_files(&self.paths.exited_dir(), &self.paths.logs_dir(), &id);
            }
        }
        let why = if attached { "detached" } else { "removed" };
        info!(sandbox = %name, id = %&id[..12], why, "sandbox gone, endpoints freed");
        Ok(name)
    }

    /// The pidfd of a running sandbox made by `run`, for `stop` and
    /// `kill`; `Ok(None)` when it has exited (kept for `ps -a`).
    fn signal_target(&self, key: &str) -> Result<Option<(String, Arc<OwnedFd>)>, ApiError> {
        let st = self.lock();
        if find_exited(&st, key).is_some() {
            return Ok(None);
        }
        let id = find_sandbox(&st, key)?;
        let s = &st.sandboxes[&id];
        match (&s.pidfd, s.attached) {
            (Some(fd), false) => Ok(Some((s.name.clone(), fd.clone()))),
            _ => Err(ApiError::conflict(
                format!("sandbox {} belongs to the runner that attached it", s.name),
                "stop it with that runner; `warren detach` takes its networks away",
            )),
        }
    }

    /// `kill`: sends `signal` to the sandbox's init, which passes it to the
    /// command (SIGKILL ends every process of the sandbox at once).
    pub fn kill_sandbox(&self, key: &str, signal: i32) -> Result<String, ApiError> {
        let Some((name, fd)) = self.signal_target(key)? else {
            return Err(ApiError::conflict(
                format!("sandbox {key} is not running"),
                "start a new one with `warren run`",
            ));
        };
        crate::sys::pidfd::send_signal(&*fd, signal)
            .map_err(|e| ApiError::internal(format!("signalling {name}: {e}")))?;
        Ok(name)
    }

    /// `stop`: SIGTERM, then SIGKILL after `grace`; returns once the
    /// sandbox's processes are gone. A sandbox that already exited is
    /// stopped already, as in Docker.
    pub fn stop_sandbox(&self, key: &str, grace: std::time::Duration) -> Result<String, ApiError> {
        let Some((name, fd)) = self.signal_target(key)? else {
            return Ok(key.to_string());
        };
        let gone = |limit: std::time::Duration| {
            let until = std::time::Instant::now() + limit;
            loop {
                if crate::sys::pidfd::has_exited(&*fd) {
                    return true;
                }
                if std::time::Instant::now() >= until {
                    return false;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        };
        let _ = crate::sys::pidfd::send_signal(&*fd, libc::SIGTERM);
        if !gone(grace) {
            info!(sandbox = %name, "did not stop after SIGTERM; killing it");
            let _ = crate::sys::pidfd::send_signal(&*fd, libc::SIGKILL);
            gone(std::time::Duration::from_secs(5));
        }
        Ok(name)
    }

    // ---- published ports -----------------------------------------------

    /// Binds the host listeners of `maps`, all or none. Each forwards to
    /// the endpoint among `eps` that [`port_target`] picks (its network
    /// must have NAT); `who` names the sandbox in errors.
    fn bind_ports(
        &self,
        st: &State,
        who: &str,
        eps: &[Endpoint],
        maps: &[PortMapping],
    ) -> Result<Vec<(PortMapping, OwnedFd)>, ApiError> {
        let mut bound: Vec<(PortMapping, OwnedFd)> = Vec::new();
        for m in maps {
            let Some(ep) = port_target(eps, m) else {
                return Err(match &m.network {
                    Some(n) => ApiError::bad_request(
                        format!("sandbox {who} is not on network {n}: cannot publish {m} there"),
                        format!("connect it first: `warren network connect {n} {who}`"),
                    ),
                    None => ApiError::bad_request(
                        format!("sandbox {who} has no network to publish ports on"),
                        "connect it to a network first",
                    ),
                });
            };
            if st.networks.get(&ep.network).is_some_and(|n| n.def.internal) {
                return Err(ApiError::bad_request(
                    format!("network {} is internal: it publishes no ports", ep.network),
                    "connect the sandbox to a network that is not internal too, or drop -p",
                ));
            }
            // The network's host_binding_ipv4, else the daemon's.
            let default_ip = st
                .networks
                .get(&ep.network)
                .and_then(|n| host_binding(&n.def))
                .unwrap_or(self.publish_address);
            let ip = m.host_ip.unwrap_or(default_ip);
            let wanted = PortMapping {
                host_ip: Some(ip),
                ..m.clone()
            };
            let what = format!(
                "{}/{}",
                SocketAddr::new(ip, m.host_port.unwrap_or(0)),
                m.proto
            );
            // A range takes whichever of its ports is free.
            if m.host_port_end.is_none() && bound.iter().any(|(b, _)| publish::clash(b, &wanted)) {
                return Err(ApiError::bad_request(
                    format!("host port {what} is given twice"),
                    "give each host port once",
                ));
            }
            let e = match publish::bind_any(m, default_ip) {
                Ok(b) => {
                    bound.push(b);
                    continue;
                }
                Err(e) => e,
            };
            let holder = st
                .sandboxes
                .values()
                .find(|s| s.ports.iter().any(|p| publish::clash(&p.mapping, &wanted)))
                .map(|s| s.name.clone());
            return Err(match (e.kind(), holder) {
                (std::io::ErrorKind::AddrInUse, Some(h)) => ApiError::conflict(
                    format!("host port {what} is already published by sandbox {h}"),
                    format!("choose another host port (or -p {} for a free one), or free it with `warren port rm {h} {}` or `warren rm -f {h}`", m.port, m.port),
                ),
                (std::io::ErrorKind::AddrInUse, None) => ApiError::conflict(
                    format!("host port {what} is already in use by another program"),
                    format!("choose another host port, or -p {} for a free one", m.port),
                ),
                (std::io::ErrorKind::PermissionDenied, _) => ApiError::new(
                    403,
                    format!("cannot bind host port {what}: permission denied"),
                    "ports below net.ipv4.ip_unprivileged_port_start (usually 1024) need privileges; choose a higher host port",
                ),
                (std::io::ErrorKind::Unsupported, _) => ApiError::bad_request(
                    format!("cannot publish {what}: {e}"),
                    "use an IPv4 host address",
                ),
                _ => ApiError::bad_request(
                    format!("cannot bind host port {what}: {e}"),
                    "the host address must be one of this host's (or 0.0.0.0)",
                ),
            });
        }
        Ok(bound)
    }

    /// Hands bound listeners to the switch of their endpoint's network
    /// ([`port_target`] among `eps`), forwarding to its address. A listener
    /// that has no endpoint or that the switch refuses is closed and
    /// logged (only an unexpected failure: both are refused before
    /// binding).
    fn start_forwards(
        &self,
        st: &State,
        who: &str,
        eps: &[Endpoint],
        bound: Vec<(PortMapping, OwnedFd)>,
    ) -> Vec<Published> {
        let mut out = Vec::new();
        for (mapping, fd) in bound {
            let Some((ep, net)) =
                port_target(eps, &mapping).and_then(|ep| Some((ep, st.networks.get(&ep.network)?)))
            else {
                warn!(sandbox = %who, port = %mapping, "no endpoint to forward the port to");
                continue;
            };
            let spec = ForwardSpec {
                transport: publish::transport(mapping.proto),
                listener: fd,
                target: SocketAddrV4::new(ep.ip, mapping.port),
                sandbox_mac: ep.mac.0,
            };
            match net.switch.add_forward(spec) {
                Ok(forward) => out.push(Published {
                    mapping,
                    network: ep.network.clone(),
                    forward,
                }),
                Err(e) => {
                    warn!(sandbox = %who, port = %mapping, error = %e, "cannot publish the port")
                }
            }
        }
        out
    }

    /// `port SANDBOX`: the published ports, as bound.
    pub fn list_ports(&self, key: &str) -> Result<Vec<PortMapping>, ApiError> {
        let st = self.lock();
        let id = find_sandbox(&st, key)?;
        Ok(mappings(&st.sandboxes[&id].ports))
    }

    /// `port add`: publishes more ports of a running sandbox, on its first
    /// network (or the one each mapping names); all or none. Returns them
    /// as bound.
    pub fn publish_ports(
        &self,
        key: &str,
        maps: Vec<PortMapping>,
    ) -> Result<Vec<PortMapping>, ApiError> {
        let mut st = self.lock();
        let id = find_sandbox(&st, key)?;
        check_not_busy(&st, &id)?;
        let s = &st.sandboxes[&id];
        let (name, eps) = (s.name.clone(), s.endpoints.clone());
        let bound = self.bind_ports(&st, &name, &eps, &maps)?;
        let ports = self.start_forwards(&st, &name, &eps, bound);
        let added = mappings(&ports);
        emit_ports(&self.events, "publish", &id, &name, &ports);
        if let Some(s) = st.sandboxes.get_mut(&id) {
            s.ports.extend(ports);
        }
        self.save_record(&st, &id);
        info!(sandbox = %name, ports = added.len(), "ports published");
        Ok(added)
    }

    /// `port rm`: stops publishing the ports `specs` select (see
    /// [`publish::selects`]); their host ports are free when this returns.
    pub fn unpublish_ports(
        &self,
        key: &str,
        specs: Vec<PortMapping>,
    ) -> Result<Vec<PortMapping>, ApiError> {
        let mut st = self.lock();
        let id = find_sandbox(&st, key)?;
        let Some(s) = st.sandboxes.get_mut(&id) else {
            return Err(ApiError::internal("sandbox vanished"));
        };
        let (gone, kept): (Vec<Published>, Vec<Published>) = std::mem::take(&mut s.ports)
            .into_iter()
            .partition(|p| specs.iter().any(|spec| publish::selects(spec, &p.mapping)));
        s.ports = kept;
        let name = s.name.clone();
        if gone.is_empty() {
            let asked: Vec<String> = specs
                .iter()
                .map(|m| format!("{}/{}", m.port, m.proto))
                .collect();
            return Err(ApiError::not_found(
                format!(
                    "sandbox {name} publishes no port matching {}",
                    asked.join(", ")
                ),
                format!("see its ports with `warren port {name}`"),
            ));
        }
        stop_forwards(&st, &gone);
        self.save_record(&st, &id);
        info!(sandbox = %name, ports = gone.len(), "ports unpublished");
        emit_ports(&self.events, "unpublish", &id, &name, &gone);
        Ok(mappings(&gone))
    }

    /// Writes the sandbox's record (see [`record`]); failures are logged:
    /// the sandbox works, only a daemon restart could not take it over.
    fn save_record(&self, st: &State, id: &str) {
        let Some(s) = st.sandboxes.get(id) else {
            return;
        };
        let rec = SandboxRecord {
            id: s.id.clone(),
            name: s.name.clone(),
            hostname: s.hostname.clone(),
            created: util::rfc3339(s.created),
            command: s.command.clone(),
            mode: s.mode.clone(),
            attached: s.attached,
            external_id: s.external_id.clone(),
            auto_remove: s.auto_remove,
            opts: s.opts.clone(),
            pid: s.target.pid,
            pid_start: s.pid_start,
            netns: s.target.netns.clone(),
            netns_dev: s.netns_watch.as_ref().map_or(0, |w| w.dev),
            netns_ino: s.netns_watch.as_ref().map_or(0, |w| w.ino),
            userns: s.target.userns.clone(),
            endpoints: s
                .endpoints
                .iter()
                .map(|e| EndpointRecord {
                    id: e.id.clone(),
                    network: e.network.clone(),
                    ifname: e.ifname.clone(),
                    mac: e.mac,
                    ip: e.ip,
                    aliases: e.aliases.clone(),
                    default_route: e.default_route,
                    static_ip: e.static_ip,
                })
                .collect(),
            ports: s
                .ports
                .iter()
                .map(|p| PortRecord {
                    network: p.network.clone(),
                    mapping: p.mapping.clone(),
                })
                .collect(),
        };
        if let Err(e) = record::save(&self.paths.sandbox_dir(id), &rec) {
            warn!(sandbox = %s.name, error = %format!("{e:#}"), "cannot record the sandbox");
        }
    }

    /// Takes over the sandboxes a previous daemon left: live ones get their
    /// TAPs re-opened, addresses re-reserved and names re-published; the
    /// records of dead ones are removed.
    fn recover(&self) {
        let (records, bad) = record::load_all(&self.paths.runtime.join("sandboxes"));
        for dir in bad {
            warn!(dir = %dir.display(), "removing an unreadable sandbox record");
            let _ = std::fs::remove_dir_all(dir);
        }
        for rec in records {
            if !rec.alive() {
                info!(sandbox = %rec.name, "sandbox ended while no daemon ran; cleaning up");
                let _ = std::fs::remove_dir_all(self.paths.sandbox_dir(&rec.id));
                if !rec.attached {
                    let created =
                        humantime::parse_rfc3339(&rec.created).unwrap_or(SystemTime::UNIX_EPOCH);
                    let mut st = self.lock();
                    let networks = rec.endpoints.iter().map(|e| e.network.clone()).collect();
                    let mut e = Exited::now(
                        &rec.id,
                        &rec.name,
                        &rec.hostname,
                        &rec.command,
                        &rec.mode,
                        networks,
                        created,
                    );
                    e.opts = rec.opts.clone();
                    for ep in &rec.endpoints {
                        e.aliases.insert(ep.network.clone(), ep.aliases.clone());
                        if ep.static_ip {
                            e.static_ips.insert(ep.network.clone(), ep.ip.to_string());
                        }
                    }
                    self.keep_exited(&mut st, e, rec.auto_remove);
                }
                continue;
            }
            match self.take_over(&rec) {
                Ok(watch) => self
                    .recovered
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(watch),
                Err(e) => {
                    warn!(sandbox = %rec.name, error = %format!("{e:#}"), "cannot take over the sandbox; forgetting it");
                    let _ = std::fs::remove_dir_all(self.paths.sandbox_dir(&rec.id));
                }
            }
        }
    }

    fn take_over(&self, rec: &SandboxRecord) -> anyhow::Result<Watch> {
        let pidfd = match rec.pid {
            p if p > 0 => Some(Arc::new(crate::sys::pidfd::open(p)?)),
            _ => None,
        };
        let target = NsTarget {
            pid: rec.pid,
            netns: rec.netns.clone(),
            userns: rec.userns.clone(),
            pidfd: pidfd.clone(),
        };
        let netns_watch = rec.netns.as_ref().map(|path| NetnsWatch {
            path: path.clone(),
            dev: rec.netns_dev,
            ino: rec.netns_ino,
        });
        // Re-reserve the addresses first: they are the sandbox's.
        let mut endpoints = Vec::new();
        {
            let mut st = self.lock();
            for e in &rec.endpoints {
                let Some(net) = st.networks.get_mut(&e.network) else {
                    warn!(sandbox = %rec.name, network = %e.network, "network gone; dropping the endpoint");
                    continue;
                };
                if let Err(err) = net.ipam.allocate(Some(e.ip)) {
                    warn!(sandbox = %rec.name, network = %e.network, error = %err, "address taken; dropping the endpoint");
                    continue;
                }
                endpoints.push(Endpoint {
                    id: e.id.clone(),
                    network: e.network.clone(),
                    ifname: e.ifname.clone(),
                    mac: e.mac,
                    ip: e.ip,
                    port: None,
                    aliases: e.aliases.clone(),
                    default_route: e.default_route,
                    static_ip: e.static_ip,
                    tap: None,
                });
            }
        }
        let mut req = target.request(false, vec![], None);
        req.reopen = endpoints.iter().map(|e| e.ifname.clone()).collect();
        // The previous daemon's 127.0.0.11 sockets died with it: make new
        // ones, as at the first attach.
        let first_dns = {
            let st = self.lock();
            endpoints
                .first()
                .and_then(|e| st.networks.get(&e.network))
                .and_then(|n| dns_server(&n.def))
        };
        req.embedded_dns = !rec.attached && rec.mode == "bridge" && first_dns.is_some();
        let opened = match helper::run_full(&self.exe, &req) {
            Ok(opened) => opened,
            Err(e) => {
                release_endpoints(&mut self.lock(), &endpoints);
                return Err(e);
            }
        };
        let listener = self.serve_embedded(&rec.id, &rec.name, opened.dns);
        let fds = opened.taps;
        let mut st = self.lock();
        self.add_ports(&st, &rec.name, &mut endpoints, fds);
        // The previous daemon's listeners died with it: bind the same
        // host ports again.
        let mut ports = Vec::new();
        for p in &rec.ports {
            let Some(ep) = endpoints.iter().find(|e| e.network == p.network) else {
                continue;
            };
            match publish::bind(&p.mapping, self.publish_address) {
                Ok(bound) => ports.extend(self.start_forwards(
                    &st,
                    &rec.name,
                    std::slice::from_ref(ep),
                    vec![bound],
                )),
                Err(e) => {
                    warn!(sandbox = %rec.name, port = %p.mapping, error = %e, "cannot publish the port again; dropping it")
                }
            }
        }
        let created = humantime::parse_rfc3339(&rec.created).unwrap_or_else(|_| SystemTime::now());
        st.sandboxes.insert(
            rec.id.clone(),
            Sandbox {
                id: rec.id.clone(),
                name: rec.name.clone(),
                target,
                pidfd: pidfd.clone(),
                attached: rec.attached,
                external_id: rec.external_id.clone(),
                pid_start: rec.pid_start,
                netns_watch: netns_watch.clone(),
                hostname: rec.hostname.clone(),
                created,
                command: rec.command.clone(),
                mode: rec.mode.clone(),
                endpoints,
                ports,
                auto_remove: rec.auto_remove,
                opts: rec.opts.clone(),
                embedded: listener,
            },
        );
        // Its resolv.conf follows: 127.0.0.11 again, or the gateway when
        // the sockets could not be made again.
        if !rec.attached {
            self.refresh_files(&st, &rec.id);
        }
        info!(sandbox = %rec.name, "sandbox taken over from the previous daemon");
        Ok((rec.id.clone(), pidfd, netns_watch))
    }

    /// The sandboxes taken over at start, for the API layer to watch.
    pub fn take_recovered(&self) -> Vec<Watch> {
        std::mem::take(&mut *self.recovered.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The receiver of vanished ports, taken once by the API layer.
    pub fn take_port_gone(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<(String, PortId)>> {
        self.gone_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// A port's TAP went away (deleted inside the sandbox, or its namespace
    /// vanished): free the endpoint as a disconnect would. The sandbox
    /// itself stays while its process lives.
    pub fn port_gone(&self, network: &str, port: PortId) {
        let mut st = self.lock();
        let found = st.sandboxes.iter_mut().find_map(|(id, s)| {
            let pos = s
                .endpoints
                .iter()
                .position(|e| e.network == network && e.port == Some(port))?;
            let (unpublished, kept): (Vec<Published>, Vec<Published>) =
                std::mem::take(&mut s.ports)
                    .into_iter()
                    .partition(|p| p.network == network);
            s.ports = kept;
            Some((
                id.clone(),
                s.name.clone(),
                s.endpoints.remove(pos),
                unpublished,
            ))
        });
        let Some((id, name, mut ep, unpublished)) = found else {
            return;
        };
        ep.port = None; // the switch already dropped it
        stop_forwards(&st, &unpublished);
        release_endpoints(&mut st, std::slice::from_ref(&ep));
        self.refresh_files(&st, &id);
        self.publish_names(&st);
        info!(sandbox = %name, network, ifname = %ep.ifname, "interface vanished; endpoint freed");
        emit_ports(&self.events, "unpublish", &id, &name, &unpublished);
        self.emit_endpoint(&st, "disconnect", (&id, &name), network);
    }

    /// The sandbox's process ended: its endpoints are freed, and a `run`
    /// sandbox (not `--rm`) is kept as exited until `rm`, in one step
    /// under the lock, so it is never missing from both lists.
    pub fn sandbox_exited(&self, id: &str) {
        // The supervisor writes the code just after the process the
        // watcher saw end: wait for it a moment, for the `die` event.
        let code = exited::wait_status(&self.paths.logs_dir(), id, EXIT_CODE_WAIT);
        let mut st = self.lock();
        let Some(s) = self.forget_locked(&mut st, id) else {
            return;
        };
        self.emit_gone(&st, &s, code, "die");
        if !s.attached {
            let networks = s.endpoints.iter().map(|e| e.network.clone()).collect();
            let mut e = Exited::now(
                &s.id,
                &s.name,
                &s.hostname,
                &s.command,
                &s.mode,
                networks,
                s.created,
            );
            e.opts = s.opts.clone();
            for ep in &s.endpoints {
                e.aliases.insert(ep.network.clone(), ep.aliases.clone());
                if ep.static_ip {
                    e.static_ips.insert(ep.network.clone(), ep.ip.to_string());
                }
            }
            self.keep_exited(&mut st, e, s.auto_remove);
            if s.auto_remove {
                self.events
                    .emit(Kind::Sandbox, "destroy", &s.id, &[("name", &s.name)]);
            }
        }
        drop(st);
        info!(sandbox = %s.name, id = %&s.id[..12], "sandbox exited, endpoints freed");
    }

    /// Keeps `e` (or, for `--rm`, removes what is left of it).
    fn keep_exited(&self, st: &mut State, e: Exited, auto_remove: bool) {
        let logs = self.paths.logs_dir();
        if auto_remove {
            exited::remove_files(&self.paths.exited_dir(), &logs, &e.id);
            return;
        }
        if let Err(err) = exited::save(&self.paths.exited_dir(), &e) {
            warn!(sandbox = %e.name, error = %err, "cannot record the exited sandbox");
        }
        st.exited.insert(e.id.clone(), e);
        while st.exited.len() > exited::MAX_EXITED {
            let Some(oldest) = st
                .exited
                .values()
                .min_by_key(|e| e.finished)
                .map(|e| e.id.clone())
            else {
                break;
            };
            st.exited.remove(&oldest);
            exited::remove_files(&self.paths.exited_dir(), &logs, &oldest);
        }
    }

    /// Frees everything a sandbox held: ports, addresses, names, files.
    /// Idempotent; called on exit and on `rm`.
    pub fn forget_sandbox(&self, id: &str, why: &str) {
        let mut st = self.lock();
        let Some(s) = self.forget_locked(&mut st, id) else {
            return;
        };
        self.emit_gone(&st, &s, None, "detach");
        drop(st);
        info!(sandbox = %s.name, id = %&s.id[..12], why, "sandbox gone, endpoints freed");
    }

    /// The events of a sandbox's creation: `create`, a `connect` per
    /// endpoint and `start` for `run`; `attach` and the `connect`s for a
    /// runner's sandbox.
    fn emit_created(&self, st: &State, id: &str) {
        let Some(s) = st.sandboxes.get(id) else {
            return;
        };
        let name = [("name", s.name.as_str())];
        if !s.attached {
            self.events.emit(Kind::Sandbox, "create", id, &name);
        } else {
            self.events.emit(Kind::Sandbox, "attach", id, &name);
        }
        for ep in &s.endpoints {
            self.emit_endpoint(st, "connect", (id, &s.name), &ep.network);
        }
        emit_ports(&self.events, "publish", id, &s.name, &s.ports);
        if !s.attached {
            self.events.emit(Kind::Sandbox, "start", id, &name);
        }
    }

    /// The events of a sandbox's end: `action` (`die`, with the exit code
    /// when known, or `detach`), then a `disconnect` per endpoint freed.
    fn emit_gone(&self, st: &State, s: &Sandbox, code: Option<i32>, action: &str) {
        let code = code.map(|c| c.to_string());
        let mut attrs = vec![("name", s.name.as_str())];
        if let Some(c) = &code {
            attrs.push(("exitCode", c));
        }
        self.events.emit(Kind::Sandbox, action, &s.id, &attrs);
        emit_ports(&self.events, "unpublish", &s.id, &s.name, &s.ports);
        for ep in &s.endpoints {
            self.emit_endpoint(st, "disconnect", (&s.id, &s.name), &ep.network);
        }
    }

    /// A network `connect` or `disconnect` of `sandbox` (id, name).
    fn emit_endpoint(&self, st: &State, action: &str, sandbox: (&str, &str), network: &str) {
        let net_id = st.networks.get(network).map_or("", |n| n.def.id.as_str());
        self.events.emit(
            Kind::Network,
            action,
            net_id,
            &[
                ("name", network),
                ("container", sandbox.0),
                ("sandbox", sandbox.1),
            ],
        );
    }

    /// [`Daemon::forget_sandbox`]'s work, under the caller's lock.
    fn forget_locked(&self, st: &mut State, id: &str) -> Option<Sandbox> {
        let s = st.sandboxes.remove(id)?;
        stop_forwards(st, &s.ports);
        release_endpoints(st, &s.endpoints);
        self.publish_names(st);
        let _ = std::fs::remove_dir_all(self.paths.sandbox_dir(id));
        Some(s)
    }
}

/// A `publish` or `unpublish` event per port mapping of sandbox `(id, name)`.
fn emit_ports(events: &Events, action: &str, id: &str, name: &str, ports: &[Published]) {
    for p in ports {
        let m = &p.mapping;
        let host = m.host_ip.map(|ip| ip.to_string()).unwrap_or_default();
        let host_port = m.host_port.unwrap_or(0).to_string();
        let port = format!("{}/{}", m.port, m.proto);
        events.emit(
            Kind::Port,
            action,
            id,
            &[
                ("name", name),
                ("network", &p.network),
                ("port", &port),
                ("hostIP", &host),
                ("hostPort", &host_port),
            ],
        );
    }
}

/// `NetworkSettings.Networks` of an exited sandbox, as Docker's of a
/// stopped container: each network it was on when it ended, with its
/// network id (from `network_ids`, by name), `IPAMConfig`, aliases and
/// names, no addresses.
fn exited_networks(
    e: &Exited,
    network_ids: &BTreeMap<String, String>,
) -> BTreeMap<String, EndpointSettings> {
    e.networks
        .iter()
        .map(|n| {
            let aliases = e.aliases.get(n).cloned().unwrap_or_default();
            let settings = EndpointSettings {
                ipam_config: e.static_ips.get(n).map(|ip| EndpointIpamConfig {
                    ipv4_address: ip.clone(),
                }),
                links: None,
                dns_names: (n != DEFAULT_NETWORK).then(|| dns_names(&e.name, &aliases, &e.id)),
                aliases: (!aliases.is_empty()).then_some(aliases),
                mac_address: String::new(),
                driver_opts: None,
                network_id: network_ids.get(n).cloned().unwrap_or_default(),
                endpoint_id: String::new(),
                gateway: String::new(),
                ip_address: String::new(),
                ip_prefix_len: 0,
                ipv6_gateway: String::new(),
                global_ipv6_address: String::new(),
                global_ipv6_prefix_len: 0,
                interface: String::new(),
            };
            (n.clone(), settings)
        })
        .collect()
}

/// `HostConfig.NetworkMode`: what was given at create (`opts`), or for
/// records of older daemons, the mode and then the first network.
fn network_mode(opts: &RunOptions, mode: &str, first: Option<&str>) -> String {
    if !opts.network_mode.is_empty() {
        return opts.network_mode.clone();
    }
    match mode {
        "bridge" => first.unwrap_or(DEFAULT_NETWORK).to_string(),
        m => m.to_string(),
    }
}

/// `DNSNames` of an endpoint on a user-defined network, in Docker's
/// order: the name, the aliases, the short id, each once.
fn dns_names(name: &str, aliases: &[String], id: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let short = id.get(..12).unwrap_or(id);
    for n in std::iter::once(name)
        .chain(aliases.iter().map(String::as_str))
        .chain(std::iter::once(short))
    {
        if !out.iter().any(|o| o == n) {
            out.push(n.to_string());
        }
    }
    out
}

/// The endpoint a published port forwards to: the one on the network the
/// mapping names, else the one carrying the default route (the first
/// network that is not internal, whatever order the networks were given
/// in, as Docker publishes through an external network), else the first
/// (an internal one, which [`Daemon::bind_ports`] refuses by name).
fn port_target<'a>(eps: &'a [Endpoint], m: &PortMapping) -> Option<&'a Endpoint> {
    match &m.network {
        Some(n) => eps.iter().find(|e| &e.network == n),
        None => eps.iter().find(|e| e.default_route).or(eps.first()),
    }
}

/// The exposed ports `ps` and `inspect` list for `s`: none in `host` and
/// `none` mode, whose sandboxes have no endpoint to expose them on (as
/// Docker's, which shows no ports for those).
fn exposed_ports(s: &Sandbox) -> &[String] {
    if s.mode == "bridge" {
        &s.opts.expose
    } else {
        &[]
    }
}

/// The mappings of published ports.
fn mappings(ports: &[Published]) -> Vec<PortMapping> {
    ports.iter().map(|p| p.mapping.clone()).collect()
}

/// Closes published ports' listeners (and their flows); the host ports are
/// free when this returns.
fn stop_forwards(st: &State, ports: &[Published]) {
    for p in ports {
        if let Some(net) = st.networks.get(&p.network) {
            net.switch.remove_forward(p.forward);
        }
    }
}

/// A sandbox must belong to the daemon's user: its namespaces are then
/// owned by that user, and joining them needs no privilege.
fn check_owner(pid: i32) -> Result<(), ApiError> {
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(format!("/proc/{pid}"))
        .map_err(|e| {
            ApiError::bad_request(
                format!("no process {pid}: {e}"),
                "the sandbox's process must be running",
            )
        })?
        .uid();
    let me = nix::unistd::getuid().as_raw();
    if owner != me {
        return Err(ApiError::new(
            403,
            format!("process {pid} belongs to uid {owner}, not to the daemon's user (uid {me})"),
            "sandboxes must be created by the user who runs the daemon",
        ));
    }
    Ok(())
}

fn start_network(
    def: NetworkDef,
    gone: tokio::sync::mpsc::UnboundedSender<(String, PortId)>,
    dns: Arc<Forwarder>,
) -> anyhow::Result<Network> {
    let ipam = Ipam::new(
        def.subnet,
        def.ip_range,
        def.gateway,
        def.aux_addresses.iter().map(|(k, v)| (k.clone(), *v)),
    );
    let name = def.name.clone();
    let spec = NetworkSpec {
        name: def.name.clone(),
        gateway: GatewayConfig {
            ip: def.gateway,
            prefix_len: def.subnet.prefix_len(),
            mac: Mac::from_ipv4(def.gateway).0,
            mtu: def.mtu as usize,
        },
        mac_table_cap: 4096,
        on_port_gone: Some(Box::new(move |port| {
            warn!(network = %name, ?port, "TAP device went away");
            let _ = gone.send((name.clone(), port));
        })),
        dns: Some(dns),
        nat: crate::gateway::nat::NetworkNat::for_network(def.internal, &def.options),
        serve_dns: dns::settings(&def.options).0,
        dns_address: dns::settings(&def.options).1,
        icc: bool_option(&def.options, ICC_OPTION)
            .ok()
            .flatten()
            .unwrap_or(true),
    };
    let switch = SwitchHandle::spawn(spec)?;
    Ok(Network {
        def,
        ipam,
        switch,
        owner: None,
    })
}

/// A pidfd on the `owner-pid` process of `def`, if it names one: an error
/// when that process is gone (or its pid now names another process, told by
/// its start time).
fn owner_pidfd(def: &NetworkDef) -> std::io::Result<Option<OwnedFd>> {
    let Some(pid) = def.options.get(OWNER_PID_OPTION) else {
        return Ok(None);
    };
    let pid: i32 = pid
        .parse()
        .map_err(|_| std::io::Error::from_raw_os_error(libc::ESRCH))?;
    let fd = crate::sys::pidfd::open(pid)?;
    // Opened first, checked second: the pidfd cannot follow a reused pid.
    if def.owner_start.is_none() || record::start_time(pid) != def.owner_start {
        return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
    }
    Ok(Some(fd))
}

fn find_network(st: &State, key: &str) -> Result<String, ApiError> {
    if st.networks.contains_key(key) {
        return Ok(key.to_string());
    }
    let by_id: Vec<&Network> = if key.len() >= 3 {
        st.networks
            .values()
            .filter(|n| n.def.id.starts_with(key))
            .collect()
    } else {
        Vec::new()
    };
    match by_id.as_slice() {
        [one] => Ok(one.def.name.clone()),
        [] => Err(ApiError::not_found(
            format!("network {key} not found"),
            "list networks with `warren network ls`",
        )),
        _ => Err(ApiError::bad_request(
            format!("network id prefix {key} is ambiguous"),
            "give more of the id, or the name",
        )),
    }
}

/// Refuses a second connect/disconnect while one is in flight for `id`
/// (both would plan interface names and routes from the same old state).
fn check_not_busy(st: &State, id: &str) -> Result<(), ApiError> {
    if st.busy.contains(id) {
        let name = st.sandboxes.get(id).map(|s| s.name.as_str()).unwrap_or(id);
        return Err(ApiError::conflict(
            format!("sandbox {name} is being changed by another request"),
            "try again in a moment",
        ));
    }
    Ok(())
}

/// The exited sandbox `key` names (name, or id prefix of 3 or more), when
/// no live one does.
fn find_exited(st: &State, key: &str) -> Option<String> {
    if st.sandboxes.values().any(|s| s.name == key) {
        return None;
    }
    if let Some(e) = st.exited.values().find(|e| e.name == key) {
        return Some(e.id.clone());
    }
    if key.len() < 3 || st.sandboxes.values().any(|s| s.id.starts_with(key)) {
        return None;
    }
    let mut by_id = st.exited.values().filter(|e| e.id.starts_with(key));
    match (by_id.next(), by_id.next()) {
        (Some(one), None) => Some(one.id.clone()),
        _ => None,
    }
}

fn find_sandbox(st: &State, key: &str) -> Result<String, ApiError> {
    if let Some(s) = st.sandboxes.values().find(|s| s.name == key) {
        return Ok(s.id.clone());
    }
    let by_id: Vec<&Sandbox> = if key.len() >= 3 {
        st.sandboxes
            .values()
            .filter(|s| s.id.starts_with(key))
            .collect()
    } else {
        Vec::new()
    };
    match by_id.as_slice() {
        [one] => Ok(one.id.clone()),
        [] => Err(ApiError::not_found(
            format!("no such sandbox: {key}"),
            "list sandboxes with `warren ps`",
        )),
        _ => Err(ApiError::bad_request(
            format!("sandbox id prefix {key} is ambiguous"),
            "give more of the id, or the name",
        )),
    }
}

fn endpoints_on<'a>(
    st: &'a State,
    network: &'a str,
) -> impl Iterator<Item = (&'a Sandbox, &'a Endpoint)> + 'a {
    st.sandboxes.values().flat_map(move |s| {
        s.endpoints
            .iter()
            .filter(move |e| e.network == network)
            .map(move |e| (s, e))
    })
}

/// `network inspect` of network `name`; `publish_address` is the daemon's
/// default host address of published ports (the default network shows it
/// as Docker's `host_binding_ipv4`).
fn inspect_network(st: &State, name: &str, publish_address: IpAddr) -> NetworkInspect {
    let n = &st.networks[name];
    let containers = endpoints_on(st, name)
        .map(|(s, e)| {
            (
                s.id.clone(),
                NetworkContainer {
                    name: s.name.clone(),
                    endpoint_id: e.id.clone(),
                    mac_address: e.mac.to_string(),
                    ipv4_address: format!("{}/{}", e.ip, n.def.subnet.prefix_len()),
                    ipv6_address: String::new(),
                },
            )
        })
        .collect();
    let mut options = n.def.options.clone();
    options.insert(MTU_OPTION.into(), n.def.mtu.to_string());
    if name == DEFAULT_NETWORK {
        // Docker's default bridge shows these (not its kernel bridge's
        // name: warren has none).
        let docker = [
            (
                "com.docker.network.bridge.default_bridge",
                "true".to_string(),
            ),
            (ICC_OPTION, "true".into()),
            (
                "com.docker.network.bridge.enable_ip_masquerade",
                "true".into(),
            ),
            (HOST_BINDING_OPTION, publish_address.to_string()),
        ];
        for (k, v) in docker {
            options.entry(k.to_string()).or_insert(v);
        }
    }
    NetworkInspect {
        name: n.def.name.clone(),
        id: n.def.id.clone(),
        created: n.def.created.clone(),
        scope: n.def.driver_scope().1.into(),
        driver: n.def.driver_scope().0.into(),
        enable_ipv4: true,
        enable_ipv6: false,
        ipam: crate::api::types::Ipam {
            driver: "default".into(),
            options: BTreeMap::new(),
            config: vec![IpamConfig {
                subnet: n.def.subnet.to_string(),
                ip_range: n.def.ip_range.map(|r| r.to_string()).unwrap_or_default(),
                gateway: n.def.gateway.to_string(),
                auxiliary_addresses: n
                    .def
                    .aux_addresses
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_string()))
                    .collect(),
            }],
        },
        internal: n.def.internal,
        attachable: n.def.attachable,
        ingress: false,
        config_from: ConfigFrom::default(),
        config_only: false,
        containers,
        options,
        labels: n.def.labels.clone(),
    }
}

/// `host` or `none` when `key` names one of [`MODE_NETWORKS`] (by name or
/// a prefix of three or more characters of its id).
fn find_mode_network(st: &State, key: &str) -> Option<&'static str> {
    MODE_NETWORKS.iter().map(|(n, _)| *n).find(|n| {
        *n == key
            || (key.len() >= 3
                && !st.networks.contains_key(key)
                && mode_network_id(st, n).starts_with(key))
    })
}

/// The id of `host` or `none`: stable for the installation, made from the
/// default network's (each hex digit rotated by a fixed amount).
fn mode_network_id(st: &State, name: &str) -> String {
    let base = st
        .networks
        .get(DEFAULT_NETWORK)
        .map(|n| n.def.id.clone())
        .unwrap_or_else(|| "0".repeat(64));
    let shift = if name == "host" { 5 } else { 10 };
    base.chars()
        .map(|c| {
            let d = c.to_digit(16).unwrap_or(0);
            char::from_digit((d + shift) % 16, 16).unwrap_or('0')
        })
        .collect()
}

/// `network inspect host|none`: Docker's shape, with the sandboxes run
/// in that mode (no addresses).
fn inspect_mode_network(st: &State, name: &str) -> NetworkInspect {
    let driver = MODE_NETWORKS
        .iter()
        .find(|(n, _)| *n == name)
        .map_or("null", |(_, d)| *d);
    let containers = st
        .sandboxes
        .values()
        .filter(|s| s.mode == name)
        .map(|s| {
            (
                s.id.clone(),
                NetworkContainer {
                    name: s.name.clone(),
                    endpoint_id: String::new(),
                    mac_address: String::new(),
                    ipv4_address: String::new(),
                    ipv6_address: String::new(),
                },
            )
        })
        .collect();
    NetworkInspect {
        name: name.to_string(),
        id: mode_network_id(st, name),
        created: st
            .networks
            .get(DEFAULT_NETWORK)
            .map(|n| n.def.created.clone())
            .unwrap_or_default(),
        scope: "local".into(),
        driver: driver.into(),
        enable_ipv4: true,
        enable_ipv6: false,
        ipam: crate::api::types::Ipam {
            driver: "default".into(),
            options: BTreeMap::new(),
            config: Vec::new(),
        },
        internal: false,
        attachable: false,
        ingress: false,
        config_from: ConfigFrom::default(),
        config_only: false,
        containers,
        options: BTreeMap::new(),
        labels: BTreeMap::new(),
    }
}

/// Why a sandbox in network mode `mode` cannot be connected to network
/// `host`/`none` (`target`) or, with `None`, to a network of its own: in
/// Docker's words.
fn mode_conflict(sandbox: &str, mode: &str, target: Option<&str>) -> Option<ApiError> {
    match (mode, target) {
        (_, Some("host")) => Some(ApiError::bad_request(
            "container cannot be disconnected from host network or connected to host network",
            "run the sandbox with --network host from the start",
        )),
        ("none", _) | (_, Some("none")) => Some(ApiError::bad_request(
            "container cannot be connected to multiple networks with one of the networks in private (none) mode",
            if mode == "none" {
                format!("sandbox {sandbox} runs with --network none; run it on a named network instead")
            } else {
                "run the sandbox with --network none from the start for loopback only".to_string()
            },
        )),
        ("host", _) => Some(ApiError::bad_request(
            "container sharing network namespace with another container or host cannot be connected to any other network",
            format!("sandbox {sandbox} runs with --network host; run it on a named network instead"),
        )),
        _ => None,
    }
}

/// The `host_binding_ipv4` option of a network, if set.
fn host_binding(def: &NetworkDef) -> Option<IpAddr> {
    def.options
        .get(HOST_BINDING_OPTION)
        .and_then(|v| v.parse::<Ipv4Addr>().ok())
        .map(IpAddr::V4)
}

/// `resolv.conf` of a sandbox: warren's DNS at `server`, the host's search
/// domains, and `ndots:0` so single-label names go to warren as they are;
/// then `options` (`--dns-option`; a later `ndots:N` wins, as in glibc).
fn resolv_conf(servers: &[String], search: &[String], options: &[String]) -> String {
    let mut out = String::from("# generated by warren\n");
    for s in servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    out.push_str("options ndots:0");
    for o in options {
        out.push(' ');
        out.push_str(o);
    }
    out.push('\n');
    out
}

/// The sandbox's `resolv.conf`, if it gets one, as Docker writes it:
/// warren's DNS at `dns` (127.0.0.11, or its first network's gateway)
/// where that serves names (`names`: a user-defined network) or no `--dns`
/// was given, else the `--dns` servers; the `--dns-search` domains instead
/// of the host's (`.` alone: none); the `--dns-option`s instead of the
/// host's `options`; `ndots:0` first, so a later `ndots` wins.
fn sandbox_resolv_conf(dns: Option<Ipv4Addr>, names: bool, o: &RunOptions) -> Option<String> {
    let servers: Vec<String> = match dns {
        Some(gw) if names || o.dns.is_empty() => vec![gw.to_string()],
        None if o.dns.is_empty() => return None,
        _ => o.dns.clone(),
    };
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let search: Vec<String> = if o.dns_search.is_empty() {
        host_search_domains(&host)
    } else {
        o.dns_search.iter().filter(|d| *d != ".").cloned().collect()
    };
    let options = if o.dns_options.is_empty() {
        host_options(&host)
    } else {
        o.dns_options.clone()
    };
    Some(resolv_conf(&servers, &search, &options))
}

/// Labels as Docker's listings show them: `k=v,k2=v2` (sorted).
fn labels_column(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Checks what `run` asked beyond networks and resolves it against the
/// state: `host-gateway` to the address that reaches the host from the
/// first network, each `--link` target to its address on a network the
/// new sandbox joins. Changes nothing.
fn run_options(
    st: &State,
    req: &SandboxCreate,
    mode: &str,
    eps: &[Endpoint],
) -> Result<RunOptions, ApiError> {
    let mut hosts = Vec::new();
    let mut extra_hosts = Vec::new();
    for spec in &req.extra_hosts {
        let (name, given) = parse_extra_host(spec)?;
        let ip = if given == "host-gateway" {
            host_gateway(st, mode, eps).map_err(|why| {
                ApiError::bad_request(
                    format!("--add-host {spec}: {why}"),
                    "create the network with --opt host-loopback=true (or =gateway), \
                     or give the host's address itself",
                )
            })?
        } else {
            given.parse::<IpAddr>().map_err(|_| {
                ApiError::bad_request(
                    format!("--add-host {spec}: {given:?} is not an IP address"),
                    "use NAME:IP (or NAME=IP), IP an IPv4 or IPv6 address or host-gateway",
                )
            })?
        };
        hosts.push(format!("{ip}\t{name}"));
        extra_hosts.push(format!("{name}:{given}"));
    }
    for k in req.labels.keys() {
        if k.is_empty() {
            return Err(ApiError::bad_request(
                "a label has an empty key",
                "use --label KEY=VALUE",
            ));
        }
    }
    for ip in &req.dns {
        if ip.parse::<IpAddr>().is_err() {
            return Err(ApiError::bad_request(
                format!("--dns {ip}: not an IP address"),
                "give a resolver's IPv4 or IPv6 address",
            ));
        }
    }
    for (flag, words) in [
        ("--dns-search", &req.dns_search),
        ("--dns-option", &req.dns_options),
    ] {
        if let Some(w) = words
            .iter()
            .find(|w| w.is_empty() || w.contains(char::is_whitespace))
        {
            return Err(ApiError::bad_request(
                format!("{flag} {w:?}: one word expected"),
                format!("give {flag} once per value"),
            ));
        }
    }
    for p in &req.expose {
        let ok = p.split_once('/').is_some_and(|(n, proto)| {
            n.parse::<u16>().is_ok_and(|n| n > 0) && matches!(proto, "tcp" | "udp")
        });
        if !ok {
            return Err(ApiError::bad_request(
                format!("invalid exposed port {p:?}"),
                "expose ports as PORT/tcp or PORT/udp",
            ));
        }
    }
    let mut links = Vec::new();
    for spec in &req.links {
        let (target, alias) = spec.split_once(':').unwrap_or((spec, spec));
        if !util::valid_name(alias) {
            return Err(ApiError::bad_request(
                format!("--link {spec}: invalid alias {alias:?}"),
                "aliases match [a-zA-Z0-9][a-zA-Z0-9_.-]*",
            ));
        }
        let id = find_sandbox(st, target).map_err(|e| {
            ApiError::not_found(
                format!("--link {spec}: cannot link to {target}: {}", e.error),
                "the sandbox linked to must be running (see `warren ps`)",
            )
        })?;
        let t = &st.sandboxes[&id];
        let Some(ep) = t
            .endpoints
            .iter()
            .find(|te| eps.iter().any(|e| e.network == te.network))
        else {
            return Err(ApiError::bad_request(
                format!(
                    "--link {spec}: cannot link to {}, as it is on no network this sandbox joins",
                    t.name
                ),
                "run both on one network",
            ));
        };
        let mut names = vec![alias.to_string()];
        for n in [t.id[..12].to_string(), t.name.clone()] {
            if !names.contains(&n) {
                names.push(n);
            }
        }
        hosts.push(format!("{}\t{}", ep.ip, names.join(" ")));
        links.push(format!("{}:{alias}", t.name));
    }
    let network_mode = match mode {
        "bridge" => req
            .networks
            .first()
            .map_or(DEFAULT_NETWORK.to_string(), |n| n.network.clone()),
        m => m.to_string(),
    };
    Ok(RunOptions {
        network_mode,
        port_bindings: PortBinding::asked(&req.ports),
        extra_hosts,
        labels: req.labels.clone(),
        dns: req.dns.clone(),
        dns_search: req.dns_search.clone(),
        dns_options: req.dns_options.clone(),
        expose: req.expose.clone(),
        links,
        publish_all: req.publish_all,
        hosts,
    })
}

/// The ports to publish for `req`: its `ports`, and with `publish_all`
/// (Docker's `-P`, in mode `bridge`) every exposed port none of them
/// publishes, on a free host port.
fn with_publish_all(req: &SandboxCreate, mode: &str) -> Vec<PortMapping> {
    let mut ports = req.ports.clone();
    if !req.publish_all || mode != "bridge" {
        return ports;
    }
    for e in &req.expose {
        let Ok(parsed) = crate::api::ports::parse(e) else {
            continue;
        };
        for m in parsed {
            if !ports.iter().any(|p| p.port == m.port && p.proto == m.proto) {
                ports.push(PortMapping {
                    host_ip: None,
                    host_port: None,
                    host_port_end: None,
                    network: None,
                    ..m
                });
            }
        }
    }
    ports
}

/// `NAME:IP` or `NAME=IP` (Docker's `--add-host`), split at the first `=`,
/// else the first `:` (a name has no colon; an IPv6 address has several).
fn parse_extra_host(spec: &str) -> Result<(&str, &str), ApiError> {
    let split = spec.split_once('=').or_else(|| spec.split_once(':'));
    match split {
        Some((name, ip)) if util::valid_hostname(name) && !ip.is_empty() => Ok((name, ip)),
        _ => Err(ApiError::bad_request(
            format!("invalid --add-host {spec:?}"),
            "use NAME:IP or NAME=IP, NAME a hostname",
        )),
    }
}

/// The address `host-gateway` means from a sandbox whose first endpoint is
/// `eps[0]`: where its network's NAT reaches the host (`host-loopback=true`:
/// 169.254.1.2; `host-loopback=gateway`: the gateway); with `--network
/// host`, the host's own loopback.
fn host_gateway(st: &State, mode: &str, eps: &[Endpoint]) -> Result<IpAddr, String> {
    if mode == "host" {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    let Some(net) = eps.first().and_then(|e| st.networks.get(&e.network)) else {
        return Err(format!("--network {mode} has no way to the host"));
    };
    let opt = net
        .def
        .options
        .get(nat::HOST_LOOPBACK_OPTION)
        .map(String::as_str);
    if net.def.internal {
        Err(format!("network {} is internal", net.def.name))
    } else if nat::policy::host_loopback_enabled(opt) {
        Ok(IpAddr::V4(nat::HOST_LOOPBACK_ADDR))
    } else if nat::policy::host_loopback_gateway(opt) {
        Ok(IpAddr::V4(net.def.gateway))
    } else {
        Err(format!(
            "network {} does not reach the host (its host-loopback option is off)",
            net.def.name
        ))
    }
}

/// The `options` of the host's resolv.conf `text` (every such line, as
/// glibc reads them; at most 16).
fn host_options(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("options"))
        .filter(|rest| rest.starts_with(char::is_whitespace))
        .flat_map(str::split_whitespace)
        .take(16)
        .map(str::to_string)
        .collect()
}

/// The search domains of the host's resolv.conf `text` (`search` or
/// `domain`; the last such line wins, as in glibc).
fn host_search_domains(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if let Some("search" | "domain") = words.next() {
            out = words.take(6).map(str::to_string).collect();
        }
    }
    out
}

/// Checks a create request against the existing networks and the host, and
/// turns it into a definition. Changes nothing.
fn validate_network(req: &NetworkCreate, st: &State) -> Result<NetworkDef, ApiError> {
    let name = req.name.trim();
    if !util::valid_name(name) {
        return Err(ApiError::bad_request(
            format!("invalid network name {name:?}"),
            "names match [a-zA-Z0-9][a-zA-Z0-9_.-]*",
        ));
    }
    // Docker's predefined names (the default network is made once, by
    // the daemon itself).
    if matches!(name, "host" | "none" | "default")
        || (name == DEFAULT_NETWORK && st.networks.contains_key(name))
    {
        return Err(ApiError::new(
            403,
            format!("operation is not permitted on predefined {name} network"),
            "choose another name",
        ));
    }
    // Docker's CLI: a gateway, range or aux address belongs to a subnet.
    if req.subnet.is_none() && (req.gateway.is_some() || req.ip_range.is_some()) {
        return Err(ApiError::bad_request(
            "every ip-range or gateway must have a corresponding subnet",
            "give --subnet too, e.g. --subnet 10.57.0.0/16 --gateway 10.57.0.1",
        ));
    }
    if req.subnet.is_none() && !req.aux_addresses.is_empty() {
        return Err(ApiError::bad_request(
            "no matching subnet for aux-address",
            "give --subnet too",
        ));
    }
    if st.networks.contains_key(name) {
        return Err(ApiError::conflict(
            format!("network with name {name} already exists"),
            "choose another name, or remove it first",
        ));
    }
    // Networks of one sandbox each (slirp4netns instances all use
    // 10.0.2.0/24) may share a subnet with others when either side says so.
    let allow_overlap = bool_option(&req.options, ALLOW_OVERLAP_OPTION)?.unwrap_or(false);
    let taken: Vec<(String, Ipv4Net)> = st
        .networks
        .values()
        .filter(|n| !allow_overlap && !allows_overlap(&n.def))
        .map(|n| (n.def.name.clone(), n.def.subnet))
        .collect();
    let subnet = match &req.subnet {
        Some(s) => {
            let net: Ipv4Net = s.parse().map_err(|e| {
                ApiError::bad_request(
                    format!("invalid subnet {s:?}: {e}"),
                    "give an IPv4 CIDR such as 10.66.0.0/16",
                )
            })?;
            if net.trunc() != net {
                return Err(ApiError::bad_request(
                    format!("invalid subnet {s}: host bits are set"),
                    format!("did you mean {}?", net.trunc()),
                ));
            }
            if net.prefix_len() > 30 {
                return Err(ApiError::bad_request(
                    format!("subnet {s} is too small"),
                    "use a prefix of /30 or shorter: it needs a gateway and at least one address",
                ));
            }
            if let Some((other, o)) = taken.iter().find(|(_, o)| ipam::overlaps(&net, o)) {
                return Err(ApiError::conflict(
                    format!("subnet {net} overlaps with network {other} ({o})"),
                    "choose a subnet that no other network uses",
                ));
            }
            net
        }
        None => {
            let mut avoid: Vec<Ipv4Net> = st.networks.values().map(|n| n.def.subnet).collect();
            avoid.extend(ipam::host_routes());
            let is_bridge = name == DEFAULT_NETWORK;
            ipam::choose_subnet(&avoid, !is_bridge).ok_or_else(|| {
                ApiError::conflict(
                    "no free subnet left in the default pools",
                    "give one with --subnet",
                )
            })?
        }
    };
    let in_subnet = |what: &str, s: &str| -> Result<Ipv4Addr, ApiError> {
        let ip: Ipv4Addr = s.parse().map_err(|_| {
            ApiError::bad_request(format!("invalid {what} {s:?}"), "give an IPv4 address")
        })?;
        if !subnet.contains(&ip) {
            return Err(ApiError::bad_request(
                format!("{what} {ip} is not in subnet {subnet}"),
                "choose an address inside the subnet",
            ));
        }
        if ip == subnet.network() || ip == subnet.broadcast() {
            return Err(ApiError::bad_request(
                format!("{what} {ip} is the subnet's network or broadcast address"),
                "choose a host address",
            ));
        }
        Ok(ip)
    };
    let gateway = match &req.gateway {
        Some(g) => in_subnet("gateway", g)?,
        None => subnet.hosts().next().unwrap_or(subnet.network()),
    };
    let ip_range = match &req.ip_range {
        Some(r) => {
            let range: Ipv4Net = r.parse().map_err(|e| {
                ApiError::bad_request(
                    format!("invalid ip-range {r:?}: {e}"),
                    "give an IPv4 CIDR inside the subnet",
                )
            })?;
            let range = range.trunc();
            if !subnet.contains(&range) {
                return Err(ApiError::bad_request(
                    format!("ip-range {range} is not inside subnet {subnet}"),
                    "choose a range inside the subnet",
                ));
            }
            Some(range)
        }
        None => None,
    };
    let mut aux = BTreeMap::new();
    for (k, v) in &req.aux_addresses {
        let ip = in_subnet(&format!("aux-address {k}"), v)?;
        if ip == gateway {
            return Err(ApiError::bad_request(
                format!("aux-address {k}={ip} is the gateway"),
                "choose another address",
            ));
        }
        aux.insert(k.clone(), ip);
    }
    let mut options = req.options.clone();
    if let Some(v) = options.get(nat::HOST_LOOPBACK_OPTION) {
        let known = [
            "true",
            "1",
            "yes",
            "on",
            "false",
            "0",
            "no",
            "off",
            nat::HOST_LOOPBACK_GATEWAY,
            nat::HOST_LOOPBACK_UNREACHABLE,
        ];
        if !known.contains(&v.to_ascii_lowercase().as_str()) {
            return Err(ApiError::bad_request(
                format!("invalid --opt {}={v:?}", nat::HOST_LOOPBACK_OPTION),
                "use true (169.254.1.2 is the host's 127.0.0.1), gateway (the gateway's address is) or false",
            ));
        }
    }
    bool_option(&options, dns::DNS_OPTION)?;
    bool_option(&options, ICC_OPTION)?;
    if let Some(v) = options.get(HOST_BINDING_OPTION) {
        let ip: Ipv4Addr = v.parse().map_err(|_| {
            ApiError::bad_request(
                format!("invalid --opt {HOST_BINDING_OPTION}={v:?}"),
                "give an IPv4 address of this host, e.g. 127.0.0.1",
            )
        })?;
        // Published ports bind to it: it must be one of the host's.
        if let Err(e) = std::net::TcpListener::bind(SocketAddrV4::new(ip, 0)) {
            return Err(ApiError::bad_request(
                format!("--opt {HOST_BINDING_OPTION}={ip}: {e}"),
                "give an address of one of this host's interfaces (or 0.0.0.0)",
            ));
        }
    }
    if let Some(v) = options.get(dns::DNS_ADDRESS_OPTION).cloned() {
        let ip = in_subnet(&format!("--opt {}", dns::DNS_ADDRESS_OPTION), &v)?;
        if ip == gateway || aux.values().any(|a| *a == ip) {
            return Err(ApiError::bad_request(
                format!(
                    "--opt {}={ip} is the gateway or an aux-address",
                    dns::DNS_ADDRESS_OPTION
                ),
                "choose another address of the subnet",
            ));
        }
        // Never handed out: the gateway owns it.
        aux.insert(dns::DNS_ADDRESS_OPTION.to_string(), ip);
        options.insert(dns::DNS_ADDRESS_OPTION.to_string(), ip.to_string());
    }
    if let Some(v) = options.get(nat::OUTBOUND_ADDRESS_OPTION) {
        let ip: Ipv4Addr = v.parse().map_err(|_| {
            ApiError::bad_request(
                format!("invalid --opt {}={v:?}", nat::OUTBOUND_ADDRESS_OPTION),
                "give an IPv4 address of this host",
            )
        })?;
        // One of the host's addresses: binding to it must work.
        if let Err(e) = std::net::UdpSocket::bind(SocketAddrV4::new(ip, 0)) {
            return Err(ApiError::bad_request(
                format!("--opt {}={ip}: {e}", nat::OUTBOUND_ADDRESS_OPTION),
                "give an address of one of this host's interfaces",
            ));
        }
    }
    let owner_start = match options.get(OWNER_PID_OPTION) {
        Some(v) => {
            let pid: i32 = v.parse().ok().filter(|p| *p > 0).ok_or_else(|| {
                ApiError::bad_request(
                    format!("invalid --opt {OWNER_PID_OPTION}={v:?}"),
                    "give the pid of a running process of yours",
                )
            })?;
            check_owner(pid)?;
            Some(record::start_time(pid).ok_or_else(|| {
                ApiError::bad_request(
                    format!("no process {pid}"),
                    "the owner must be running when the network is created",
                )
            })?)
        }
        None => None,
    };
    let mut mtu = req.mtu;
    if let Some(m) = options.remove(MTU_OPTION) {
        let parsed = m.parse().map_err(|_| {
            ApiError::bad_request(format!("invalid {MTU_OPTION} {m:?}"), "give a number")
        })?;
        mtu = Some(mtu.unwrap_or(parsed));
    }
    let mtu = mtu.unwrap_or(DEFAULT_MTU);
    if !(576..=DEFAULT_MTU).contains(&mtu) {
        return Err(ApiError::bad_request(
            format!("invalid MTU {mtu}"),
            format!("give a value from 576 to {DEFAULT_MTU}"),
        ));
    }
    Ok(NetworkDef {
        name: name.to_string(),
        id: util::random_id(),
        created: util::rfc3339(SystemTime::now()),
        subnet,
        gateway,
        ip_range,
        aux_addresses: aux,
        internal: req.internal,
        mtu,
        labels: req.labels.clone(),
        options,
        owner_start,
        attachable: req.attachable,
        vni: None,
    })
}

/// The nameserver of a sandbox's resolv.conf: 127.0.0.11 when it has the
/// embedded DNS there, else `network`'s (its first network's DNS address).
fn nameserver(embedded: bool, network: Option<Ipv4Addr>) -> Option<Ipv4Addr> {
    if embedded {
        Some(*helper::EMBEDDED_DNS.ip())
    } else {
        network
    }
}

/// Where a network serves DNS: its `dns-address`, else its gateway; `None`
/// with `dns=false`.
fn dns_server(def: &NetworkDef) -> Option<Ipv4Addr> {
    let (enabled, address) = dns::settings(&def.options);
    enabled.then(|| address.unwrap_or(def.gateway))
}

/// A boolean network option (`true`/`false`, `1`/`0`, `yes`/`no`,
/// `on`/`off`), `None` when absent.
fn bool_option(options: &BTreeMap<String, String>, key: &str) -> Result<Option<bool>, ApiError> {
    let Some(v) = options.get(key) else {
        return Ok(None);
    };
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(Some(true)),
        "false" | "0" | "no" | "off" => Ok(Some(false)),
        _ => Err(ApiError::bad_request(
            format!("invalid --opt {key}={v:?}"),
            "use true or false",
        )),
    }
}

/// Whether a network was created with `allow-overlap=true`.
fn allows_overlap(def: &NetworkDef) -> bool {
    matches!(
        def.options
            .get(ALLOW_OVERLAP_OPTION)
            .map(|v| v.to_ascii_lowercase())
            .as_deref(),
        Some("true" | "1" | "yes" | "on")
    )
}

/// Reserves an address on each requested network and plans its interface.
/// `existing` are the sandbox's current endpoints (their networks and
/// interface names are taken); `has_default` says whether one of them already
/// carries the default route, which otherwise goes to the first
/// non-internal network.
fn reserve_endpoints(
    st: &mut State,
    reqs: &[EndpointRequest],
    existing: &[Endpoint],
    has_default: bool,
) -> Result<(Vec<Endpoint>, Vec<IfaceConfig>), ApiError> {
    let mut eps: Vec<Endpoint> = Vec::new();
    let mut ifaces = Vec::new();
    let mut seen: BTreeSet<String> = existing.iter().map(|e| e.network.clone()).collect();
    let mut ifnames: BTreeSet<String> = existing.iter().map(|e| e.ifname.clone()).collect();
    let mut default_route_given = has_default;
    let result = (|| {
        if reqs.len() > helper::MAX_IFACES {
            return Err(ApiError::bad_request(
                format!("too many networks ({})", reqs.len()),
                format!("at most {}", helper::MAX_IFACES),
            ));
        }
        for r in reqs {
            let name = find_network(st, &r.network).map_err(|e| {
                ApiError::not_found(e.error, "create it with `warren network create NAME`, or list networks with `warren network ls`")
            })?;
            if st.networks[&name].def.is_overlay() {
                return Err(ApiError::new(
                    501,
                    format!("overlay network {name} carries no sandboxes yet"),
                    "overlay networks are defined across the cluster; their VXLAN data plane is the next step of multi-host (issue 19). Use a bridge network for now",
                ));
            }
            if !seen.insert(name.clone()) {
                return Err(if existing.iter().any(|e| e.network == name) {
                    ApiError::conflict(
                        format!("the sandbox is already connected to network {name}"),
                        "disconnect it first to change its address or aliases",
                    )
                } else {
                    ApiError::bad_request(
                        format!("network {name} given twice"),
                        "give each network once",
                    )
                });
            }
            // Overlapping subnets exist only by `allow-overlap`; one sandbox
            // on two of them would not know where to send.
            let subnet = st.networks.get(&name).map(|n| n.def.subnet);
            let overlapping = existing
                .iter()
                .map(|e| &e.network)
                .chain(eps.iter().map(|e| &e.network))
                .find(|other| {
                    let theirs = st.networks.get(*other).map(|n| n.def.subnet);
                    matches!((subnet, theirs), (Some(a), Some(b)) if ipam::overlaps(&a, &b))
                });
            if let Some(other) = overlapping {
                return Err(ApiError::conflict(
                    format!("network {name} overlaps network {other}, which the sandbox is on"),
                    "a sandbox can be on only one of two networks that share addresses",
                ));
            }
            if r.aliases.len() > MAX_ALIASES {
                return Err(ApiError::bad_request(
                    "too many aliases",
                    format!("at most {MAX_ALIASES} per network"),
                ));
            }
            for a in &r.aliases {
                if !util::valid_hostname(a) {
                    return Err(ApiError::bad_request(
                        format!("invalid alias {a:?}"),
                        "aliases are DNS names: letters, digits, '-' and '.'",
                    ));
                }
            }
            let wanted_ip = match &r.ip {
                Some(s) => Some(s.parse::<Ipv4Addr>().map_err(|_| {
                    ApiError::bad_request(
                        format!("invalid IP address {s:?}"),
                        "give an IPv4 address such as 10.66.66.66",
                    )
                })?),
                None => None,
            };
            let wanted_mac = match &r.mac {
                Some(s) => {
                    let m: Mac = s
                        .parse()
                        .map_err(|e: String| ApiError::bad_request(e, ""))?;
                    if !m.is_valid_unicast() {
                        return Err(ApiError::bad_request(
                            format!("MAC address {m} is not a unicast address"),
                            "the first octet must be even, e.g. 02:...",
                        ));
                    }
                    Some(m)
                }
                None => None,
            };
            let net = st
                .networks
                .get_mut(&name)
                .ok_or_else(|| ApiError::internal("network vanished"))?;
            let ip = net.ipam.allocate(wanted_ip).map_err(|e| {
                ApiError::bad_request(
                    format!("cannot use that address on network {name}: {e}"),
                    "choose another --ip, or omit it",
                )
            })?;
            let mac = wanted_mac.unwrap_or_else(|| Mac::from_ipv4(ip));
            // The name asked for (CNI's CNI_IFNAME), else the lowest free
            // ethN, so a reconnect reuses a freed name.
            let ifname = match &r.ifname {
                Some(n) => {
                    let ok = !n.is_empty()
                        && n.len() < crate::sys::tap::IFNAMSIZ
                        && n.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
                    if !ok {
                        return Err(ApiError::bad_request(
                            format!("invalid interface name {n:?}"),
                            "use up to 15 letters, digits, '_', '.' or '-'",
                        ));
                    }
                    if ifnames.contains(n) {
                        return Err(ApiError::conflict(
                            format!("interface {n} already exists in the sandbox"),
                            "choose another interface name",
                        ));
                    }
                    n.clone()
                }
                None => (0..)
                    .map(|i| format!("eth{i}"))
                    .find(|n| !ifnames.contains(n))
                    .unwrap_or_default(),
            };
            ifnames.insert(ifname.clone());
            let default_route = !net.def.internal && !default_route_given;
            default_route_given |= default_route;
            ifaces.push(IfaceConfig {
                ifname: ifname.clone(),
                mac,
                ip,
                prefix_len: net.def.subnet.prefix_len(),
                gateway: net.def.gateway,
                mtu: net.def.mtu,
                default_route,
            });
            eps.push(Endpoint {
                id: util::random_id(),
                network: name,
                ifname,
                mac,
                ip,
                port: None,
                aliases: r.aliases.clone(),
                default_route,
                static_ip: r.ip.is_some(),
                tap: None,
            });
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok((eps, ifaces)),
        Err(e) => {
            release_endpoints(st, &eps);
            Err(e)
        }
    }
}

fn release_endpoints(st: &mut State, eps: &[Endpoint]) {
    for ep in eps {
        // Not persistent any more: the TAP goes when its last fd closes.
        if let Some(tap) = &ep.tap {
            if let Err(e) = crate::sys::tap::set_persist(&**tap, false) {
                warn!(network = %ep.network, ifname = %ep.ifname, error = %e, "cannot clear TAP persistence");
            }
        }
        if let Some(net) = st.networks.get_mut(&ep.network) {
            if let Some(port) = ep.port {
                net.switch.remove_port(port);
            }
            net.ipam.release(ep.ip);
        }
    }
}

#[cfg(test)]
mod run_option_tests {
    use super::*;

    #[test]
    fn extra_hosts_split_as_docker() {
        assert_eq!(parse_extra_host("db:10.0.0.1").unwrap(), ("db", "10.0.0.1"));
        assert_eq!(parse_extra_host("db=10.0.0.1").unwrap(), ("db", "10.0.0.1"));
        assert_eq!(parse_extra_host("six:fd00::1").unwrap(), ("six", "fd00::1"));
        assert_eq!(parse_extra_host("six=fd00::1").unwrap(), ("six", "fd00::1"));
        assert_eq!(
            parse_extra_host("h:host-gateway").unwrap(),
            ("h", "host-gateway")
        );
        for bad in ["noip", "db:", ":10.0.0.1", "bad name:10.0.0.1"] {
            assert!(parse_extra_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn resolv_conf_of_dns_options() {
        let o = RunOptions {
            dns_search: vec!["a.test".into(), "b.test".into()],
            dns_options: vec!["ndots:2".into()],
            ..Default::default()
        };
        let text = sandbox_resolv_conf(Some(Ipv4Addr::new(10, 0, 0, 1)), true, &o).unwrap();
        assert_eq!(
            text,
            "# generated by warren\nnameserver 10.0.0.1\nsearch a.test b.test\noptions ndots:0 ndots:2\n"
        );
        let none = RunOptions {
            dns_search: vec![".".into()],
            ..Default::default()
        };
        let text = sandbox_resolv_conf(Some(Ipv4Addr::new(10, 0, 0, 1)), true, &none).unwrap();
        assert!(!text.contains("search"), "{text}");
        // No network DNS and no --dns: no resolv.conf of warren's.
        assert!(sandbox_resolv_conf(None, true, &RunOptions::default()).is_none());
        // --dns: kept behind warren's DNS on a user-defined network, listed
        // on the default bridge (Docker's two behaviours).
        let dns = RunOptions {
            dns: vec!["192.0.2.53".into()],
            ..Default::default()
        };
        let gw = Some(Ipv4Addr::new(172, 17, 0, 1));
        assert!(sandbox_resolv_conf(gw, true, &dns)
            .unwrap()
            .contains("nameserver 172.17.0.1\n"));
        let bridge = sandbox_resolv_conf(gw, false, &dns).unwrap();
        assert!(bridge.contains("nameserver 192.0.2.53\n"), "{bridge}");
        assert!(!bridge.contains("172.17.0.1"), "{bridge}");
    }

    #[test]
    fn host_options_and_search_are_read_as_glibc_does() {
        let host = "nameserver 127.0.0.53\noptions edns0 trust-ad\noptions   rotate\n\
                    optionsx no\nsearch a.test\ndomain b.test\n";
        assert_eq!(host_options(host), ["edns0", "trust-ad", "rotate"]);
        assert_eq!(host_search_domains(host), ["b.test"]);
        assert_eq!(
            resolv_conf(&["127.0.0.11".into()], &[], &host_options(host)),
            "# generated by warren\nnameserver 127.0.0.11\noptions ndots:0 edns0 trust-ad rotate\n"
        );
    }

    #[test]
    fn labels_column_is_dockers() {
        let l: BTreeMap<String, String> = [("b", "2"), ("a", "1")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(labels_column(&l), "a=1,b=2");
    }
}
