//! Cluster membership: a daemon joining other daemons through etcd.
//!
//! `warren daemon --cluster-store etcd://IP:PORT[,…] --cluster-advertise
//! IP[:PORT]` (the flags of seed 004's `dockerd`; or the same keys in
//! `STATE/daemon.json`, so a daemon the CLI starts by itself joins too)
//! makes the daemon a member: it holds a lease of [`ClusterConfig::ttl`]
//! in etcd, kept alive at a third of its TTL, and its node record at
//! `PREFIX/nodes/ADVERTISE` under that lease. A daemon that dies (SIGKILL,
//! power, a lost host) stops keeping the lease alive, so etcd removes its
//! record by itself within the TTL; a daemon that stops cleanly revokes
//! it at once.
//!
//! One task on the daemon's runtime does all of it ([`Cluster::start`]):
//! connect, grant, put, then keep alive and re-read the members every
//! third of the TTL. Any failure — etcd unreachable, the lease lost (etcd
//! down longer than the TTL) — marks the store unreachable in the status,
//! waits a little (0.5 s, doubling to 4 s) and starts again from the
//! connect, with a new lease and the record put again: when etcd answers
//! again the daemon is a member again without anyone's help. Nothing
//! local waits for etcd: `network ls`, local networks and their traffic
//! never touch this module, and `warren cluster ls` (`GET /v1/cluster`)
//! answers from the last status, saying when it was last confirmed.
//!
//! The advertise address is where the other members reach this daemon's
//! overlay data plane (VXLAN over UDP, [`DEFAULT_VXLAN_PORT`] unless it
//! names a port); it is also the node's key, so two daemons cannot
//! advertise the same address: a daemon that finds a live record of its
//! address under another lease refuses to take it over and reports why.
//!
//! etcd's addresses are IP addresses: the daemon resolves no host names
//! (its seccomp and Landlock rules leave name resolution out, and a
//! cluster's members are addressed by IP in seed 004 too).
//!
//! Everything read from etcd is untrusted input (any member, or anyone
//! with etcd's port, may write under the prefix): records that do not
//! parse are skipped and counted, and at most [`MAX_MEMBERS`] are kept.

pub mod networks;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use etcd_client::{Client, ConnectOptions, GetOptions, PutOptions};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

/// Where VXLAN is sent when the advertise address names no port (IANA's).
pub const DEFAULT_VXLAN_PORT: u16 = 4789;
/// The key prefix when none is given (several clusters may share an etcd
/// under prefixes of their own).
pub const DEFAULT_PREFIX: &str = "/warren";
/// The lease's time to live when none is given: how long a dead daemon's
/// records outlive it.
pub const DEFAULT_TTL: Duration = Duration::from_secs(5);
/// Most members kept from etcd (the rest are ignored and counted).
pub const MAX_MEMBERS: usize = 1024;
/// Largest node record read (bigger ones are ignored).
const MAX_RECORD: usize = 4096;
/// How long one etcd request may take before the store counts as
/// unreachable.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// How a daemon joins a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// etcd's client endpoints, as `http://IP:PORT`.
    pub endpoints: Vec<String>,
    /// What the user wrote (`etcd://…`), shown back as is.
    pub store: String,
    /// Where the other members reach this one.
    pub advertise: SocketAddr,
    /// The key prefix, without a trailing `/`.
    pub prefix: String,
    /// The lease's time to live.
    pub ttl: Duration,
    /// This host's name, for people (read here, before the daemon's
    /// seccomp filter, which leaves `uname` out).
    pub hostname: String,
}

/// `STATE/daemon.json`'s cluster keys (Docker's `daemon.json` names).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(rename = "cluster-store")]
    pub store: Option<String>,
    #[serde(rename = "cluster-advertise")]
    pub advertise: Option<String>,
    #[serde(rename = "cluster-prefix")]
    pub prefix: Option<String>,
    /// Seconds.
    #[serde(rename = "cluster-ttl")]
    pub ttl: Option<u64>,
}

impl ClusterConfig {
    /// Checks and assembles the flags' (or the file's) values. Every error
    /// names the value and what is expected.
    pub fn parse(
        store: &str,
        advertise: Option<&str>,
        prefix: Option<&str>,
        ttl: Option<Duration>,
    ) -> Result<ClusterConfig, String> {
        let mut endpoints = Vec::new();
        for part in store.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let addr = part
                .strip_prefix("etcd://")
                .or_else(|| part.strip_prefix("http://"))
                .unwrap_or(part);
            let sa: SocketAddr = addr.trim_end_matches('/').parse().map_err(|_| {
                format!(
                    "--cluster-store: {part:?} is not etcd://IP:PORT (give etcd's client address by IP, e.g. etcd://192.168.205.10:2379; host names are not resolved)"
                )
            })?;
            endpoints.push(format!("http://{sa}"));
        }
        if endpoints.is_empty() {
            return Err(
                "--cluster-store: no etcd address given (etcd://IP:PORT[,IP:PORT…])".into(),
            );
        }
        if endpoints.len() > 16 {
            return Err("--cluster-store: at most 16 etcd addresses".into());
        }
        let advertise = advertise.ok_or(
            "--cluster-store needs --cluster-advertise IP[:PORT]: the address the other members reach this one at",
        )?;
        let advertise = parse_advertise(advertise)?;
        let prefix = prefix.unwrap_or(DEFAULT_PREFIX).trim_end_matches('/');
        if !prefix.starts_with('/') || prefix.len() > 128 || prefix.contains("//") {
            return Err(format!(
                "--cluster-prefix: {prefix:?} is not a key prefix such as /warren"
            ));
        }
        let ttl = ttl.unwrap_or(DEFAULT_TTL);
        if ttl < Duration::from_secs(2) || ttl > Duration::from_secs(300) {
            return Err("--cluster-ttl: between 2 and 300 seconds".into());
        }
        Ok(ClusterConfig {
            endpoints,
            store: store.to_string(),
            advertise,
            prefix: prefix.to_string(),
            ttl,
            hostname: nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_default(),
        })
    }

    /// The node record's key.
    pub fn node_key(&self) -> String {
        format!("{}/nodes/{}", self.prefix, self.advertise)
    }

    fn nodes_prefix(&self) -> String {
        format!("{}/nodes/", self.prefix)
    }
}

/// `IP[:PORT]`, the port VXLAN's when absent; never an unspecified,
/// loopback-only-by-accident or multicast address.
fn parse_advertise(s: &str) -> Result<SocketAddr, String> {
    let sa = match s.parse::<SocketAddr>() {
        Ok(sa) => sa,
        Err(_) => match s.parse::<IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, DEFAULT_VXLAN_PORT),
            Err(_) => {
                return Err(format!(
                    "--cluster-advertise: {s:?} is not IP[:PORT] (the address of this host the other members reach, e.g. 192.168.205.10)"
                ))
            }
        },
    };
    if sa.ip().is_unspecified() || sa.ip().is_multicast() || sa.port() == 0 {
        return Err(format!(
            "--cluster-advertise: {sa} cannot be reached by the other members; give this host's own address"
        ));
    }
    Ok(sa)
}

/// The innermost cause of an etcd client error (tonic's outer ones repeat
/// themselves), e.g. "Connection refused (os error 111)".
fn short_error(e: &anyhow::Error) -> String {
    let mut inner: &dyn std::error::Error = e.as_ref();
    while let Some(s) = inner.source() {
        inner = s;
    }
    let text = inner.to_string();
    if text.is_empty() {
        e.to_string()
    } else {
        text
    }
}

/// `2026-12-04T19:37:44.965Z` as `2026-12-04T19:37:44Z`.
fn whole_seconds(t: &str) -> String {
    match t.split_once('.') {
        Some((head, _)) => format!("{head}Z"),
        None => t.to_string(),
    }
}

/// What a member says of itself in etcd.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeRecord {
    /// Where its overlay data plane listens.
    pub advertise: SocketAddr,
    /// Its host name, for people.
    pub hostname: String,
    /// warren's version.
    pub version: String,
    /// When it joined (RFC 3339).
    pub joined: String,
    /// The subnets of its local networks, which overlay networks avoid.
    #[serde(default)]
    pub local_subnets: Vec<ipnet::Ipv4Net>,
}

/// Most local subnets believed of one member.
const MAX_LOCAL_SUBNETS: usize = 1024;

/// One member, as `cluster ls` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Member {
    #[serde(rename = "Advertise")]
    pub advertise: SocketAddr,
    #[serde(rename = "Hostname")]
    pub hostname: String,
    #[serde(rename = "Version")]
    pub version: String,
    #[serde(rename = "Joined")]
    pub joined: String,
    /// The subnets of its local networks.
    #[serde(rename = "LocalSubnets", default)]
    pub local_subnets: Vec<ipnet::Ipv4Net>,
    /// This daemon.
    #[serde(rename = "Self")]
    pub is_self: bool,
}

/// The answer of `GET /v1/cluster`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// `--cluster-store` as given; `None` when not in a cluster.
    #[serde(rename = "Store")]
    pub store: Option<String>,
    #[serde(rename = "Advertise")]
    pub advertise: Option<SocketAddr>,
    #[serde(rename = "Prefix")]
    pub prefix: Option<String>,
    /// The lease's TTL in seconds.
    #[serde(rename = "TTL")]
    pub ttl: u64,
    /// `ok` or `unreachable` (and `disabled` outside a cluster).
    #[serde(rename = "Etcd")]
    pub etcd: String,
    /// Why the store is unreachable, when it is.
    #[serde(rename = "Error")]
    pub error: String,
    /// Seconds since etcd last answered, if it ever did.
    #[serde(rename = "LastContact")]
    pub last_contact: Option<f64>,
    /// The members as last read (this one among them once registered).
    #[serde(rename = "Members")]
    pub members: Vec<Member>,
    /// Records under `PREFIX/nodes/` that did not parse (ignored).
    #[serde(rename = "BadRecords")]
    pub bad_records: u64,
}

struct Shared {
    status: ClusterStatus,
    contact: Option<Instant>,
}

/// Called with every overlay network record under `PREFIX/networks/`
/// whenever they may have changed (the whole set each time).
pub type NetworksHook = Arc<dyn Fn(Vec<Vec<u8>>) + Send + Sync>;

/// A running membership (cheap to clone).
#[derive(Clone)]
pub struct Cluster {
    cfg: Arc<ClusterConfig>,
    shared: Arc<Mutex<Shared>>,
    lease: Arc<Mutex<Option<i64>>>,
    /// The current session's client, for requests from the API.
    client: Arc<Mutex<Option<Client>>>,
    hook: Arc<Mutex<Option<NetworksHook>>>,
    /// This daemon's local subnets, for its node record.
    local: Arc<Mutex<Vec<ipnet::Ipv4Net>>>,
}

impl Cluster {
    /// Starts keeping this daemon a member, on the current tokio runtime;
    /// `hook` gets the overlay network records whenever they may have
    /// changed.
    pub fn start(cfg: ClusterConfig, hook: NetworksHook) -> Cluster {
        let status = ClusterStatus {
            store: Some(cfg.store.clone()),
            advertise: Some(cfg.advertise),
            prefix: Some(cfg.prefix.clone()),
            ttl: cfg.ttl.as_secs(),
            etcd: "connecting".into(),
            ..ClusterStatus::default()
        };
        let cluster = Cluster {
            cfg: Arc::new(cfg),
            shared: Arc::new(Mutex::new(Shared {
                status,
                contact: None,
            })),
            lease: Arc::new(Mutex::new(None)),
            client: Arc::new(Mutex::new(None)),
            hook: Arc::new(Mutex::new(Some(hook))),
            local: Arc::new(Mutex::new(Vec::new())),
        };
        let c = cluster.clone();
        tokio::spawn(async move { c.run().await });
        cluster
    }

    /// The current session's client, or why there is none.
    pub fn client(&self) -> Result<Client, String> {
        let c = self
            .client
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        c.ok_or_else(|| {
            let st = self.status();
            format!(
                "etcd is {} ({}): the cluster store cannot be changed now",
                st.etcd,
                if st.error.is_empty() {
                    "not joined yet"
                } else {
                    st.error.as_str()
                }
            )
        })
    }

    /// Sets the subnets of this daemon's local networks, published in its
    /// node record at the next beat (and so avoided by overlay networks
    /// any member creates).
    pub fn set_local_subnets(&self, mut subnets: Vec<ipnet::Ipv4Net>) {
        subnets.sort();
        subnets.dedup();
        *self.local.lock().unwrap_or_else(|p| p.into_inner()) = subnets;
    }

    fn local_subnets(&self) -> Vec<ipnet::Ipv4Net> {
        self.local.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Reads the members now (an overlay's subnet is chosen from fresh
    /// records).
    pub async fn refresh_members(&self) -> anyhow::Result<Vec<Member>> {
        let mut client = self.client().map_err(anyhow::Error::msg)?;
        let (members, bad) = self.read_members(&mut client).await?;
        self.set(|sh| {
            sh.status.members = members.clone();
            sh.status.bad_records = bad;
        });
        Ok(members)
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.cfg.prefix
    }

    /// Reads the overlay records now and hands them to the hook.
    pub async fn refresh_networks(&self) -> anyhow::Result<()> {
        let mut client = self.client().map_err(anyhow::Error::msg)?;
        self.read_networks(&mut client).await
    }

    async fn read_networks(&self, client: &mut Client) -> anyhow::Result<()> {
        let resp = client
            .get(
                networks::networks_prefix(&self.cfg.prefix),
                Some(
                    GetOptions::new()
                        .with_prefix()
                        .with_limit(networks::MAX_OVERLAYS as i64),
                ),
            )
            .await?;
        let records: Vec<Vec<u8>> = resp.kvs().iter().map(|kv| kv.value().to_vec()).collect();
        let hook = self.hook.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(hook) = hook {
            // The hook takes the daemon's lock: off the runtime's threads.
            let _ = tokio::task::spawn_blocking(move || hook(records)).await;
        }
        Ok(())
    }

    /// The status as last seen.
    pub fn status(&self) -> ClusterStatus {
        let sh = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        let mut st = sh.status.clone();
        st.last_contact = sh.contact.map(|t| t.elapsed().as_secs_f64());
        st
    }

    /// Leaves the cluster at once (the record goes with the lease), for a
    /// clean shutdown; bounded by the request timeout.
    pub async fn leave(&self) {
        let lease = *self.lease.lock().unwrap_or_else(|p| p.into_inner());
        let Some(id) = lease else { return };
        let opts = ConnectOptions::new()
            .with_connect_timeout(REQUEST_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT);
        let done = tokio::time::timeout(REQUEST_TIMEOUT * 2, async {
            let mut client = Client::connect(&self.cfg.endpoints, Some(opts)).await?;
            client.lease_revoke(id).await.map(|_| ())
        })
        .await;
        match done {
            Ok(Ok(())) => info!("cluster: left (lease revoked)"),
            Ok(Err(e)) => {
                warn!(error = %e, "cluster: could not revoke the lease; it expires by itself")
            }
            Err(_) => warn!("cluster: etcd did not answer; the lease expires by itself"),
        }
    }

    fn set(&self, f: impl FnOnce(&mut Shared)) {
        let mut sh = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut sh);
    }

    /// Sessions, one etcd member at a time: a member that fails hands
    /// over to the next at once (the lease carries over, so the record
    /// never blinks); only a whole round of failures makes the store
    /// "unreachable" and waits before the next round.
    async fn run(self) {
        let n = self.cfg.endpoints.len();
        let mut next = 0;
        let mut failed = 0;
        let mut backoff = Duration::from_millis(500);
        loop {
            let endpoint = self.cfg.endpoints[next % n].clone();
            next += 1;
            let mut joined = false;
            let Err(e) = self.session(&endpoint, &mut joined).await;
            if joined {
                failed = 0;
                backoff = Duration::from_millis(500);
            }
            failed += 1;
            let text = format!("{endpoint}: {}", short_error(&e));
            if failed < n {
                warn!(error = %text, "cluster: an etcd member failed; trying the next");
                continue;
            }
            warn!(error = %text, "cluster: etcd unreachable; trying again");
            // The lease stays known: if etcd kept it, the next session
            // takes it up again and recognises its own record by it.
            self.set(|sh| {
                sh.status.etcd = "unreachable".into();
                sh.status.error = text;
            });
            failed = 0;
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(4));
        }
    }

    /// One connection's life: register, then keep alive until something
    /// fails (returned as the error).
    async fn session(
        &self,
        endpoint: &str,
        joined: &mut bool,
    ) -> Result<std::convert::Infallible, anyhow::Error> {
        // A request must fail well within a third of the TTL, so a
        // failover keeps the lease alive.
        let timeout = REQUEST_TIMEOUT.min(self.cfg.ttl / 3);
        let opts = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_timeout(timeout)
            .with_keep_alive(timeout, timeout);
        let mut client = Client::connect([endpoint], Some(opts)).await?;
        let ttl = i64::try_from(self.cfg.ttl.as_secs()).unwrap_or(5);
        // The lease of the last session, if etcd still has it.
        let before = *self.lease.lock().unwrap_or_else(|p| p.into_inner());
        let mut kept = None;
        if let Some(id) = before {
            if let Ok(resp) = client.lease_time_to_live(id, None).await {
                if resp.ttl() > 0 {
                    kept = Some(id);
                }
            }
        }
        let lease = match kept {
            Some(id) => id,
            None => client.lease_grant(ttl, None).await?.id(),
        };
        let key = self.cfg.node_key();
        // Another live daemon with this address keeps it; a record under
        // a lease this daemon held before (etcd restarted, which renews
        // leases) is its own, and that lease is let go.
        let existing = client.get(key.as_str(), None).await?;
        if let Some(kv) = existing.kvs().first() {
            if kv.lease() != 0 && kv.lease() != lease {
                let before = *self.lease.lock().unwrap_or_else(|p| p.into_inner());
                if before == Some(kv.lease()) {
                    let _ = client.lease_revoke(kv.lease()).await;
                } else {
                    let _ = client.lease_revoke(lease).await;
                    anyhow::bail!(
                        "another live daemon advertises {} (its record {key} is held by lease {:x}); give this one another --cluster-advertise, or wait for that one's lease to expire",
                        self.cfg.advertise,
                        kv.lease()
                    );
                }
            }
        }
        let record = NodeRecord {
            advertise: self.cfg.advertise,
            hostname: self.cfg.hostname.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            joined: whole_seconds(&crate::daemon::util::rfc3339(SystemTime::now())),
            local_subnets: self.local_subnets(),
        };
        let mut published = record.local_subnets.clone();
        client
            .put(
                key.as_str(),
                serde_json::to_vec(&record)?,
                Some(PutOptions::new().with_lease(lease)),
            )
            .await?;
        *self.lease.lock().unwrap_or_else(|p| p.into_inner()) = Some(lease);
        *joined = true;
        if kept.is_some() {
            info!(
                endpoint,
                lease = format!("{lease:x}"),
                "cluster: went on through another etcd member"
            );
        } else {
            info!(advertise = %self.cfg.advertise, endpoint, lease = format!("{lease:x}"), "cluster: joined");
        }
        let (mut keeper, mut stream) = client.lease_keep_alive(lease).await?;
        let mut watch = client
            .watch(
                networks::networks_prefix(&self.cfg.prefix),
                Some(etcd_client::WatchOptions::new().with_prefix()),
            )
            .await?;
        *self.client.lock().unwrap_or_else(|p| p.into_inner()) = Some(client.clone());
        let _forget = ForgetClient(self.client.clone());
        self.read_networks(&mut client).await?;
        let period = self.cfg.ttl / 3;
        let mut next_beat = tokio::time::Instant::now();
        loop {
            // Network changes are read as they happen; the lease and the
            // members at every beat.
            tokio::select! {
                msg = watch.message() => {
                    match msg? {
                        Some(_) => {
                            self.read_networks(&mut client).await?;
                            continue;
                        }
                        None => anyhow::bail!("etcd ended the watch"),
                    }
                }
                () = tokio::time::sleep_until(next_beat) => {}
            }
            next_beat = tokio::time::Instant::now() + period;
            // A watch event lost in a reconnect is made good at the next beat.
            self.read_networks(&mut client).await?;
            // The record follows the local networks.
            let now = self.local_subnets();
            if now != published {
                let rec = NodeRecord {
                    local_subnets: now.clone(),
                    ..record.clone()
                };
                client
                    .put(
                        key.as_str(),
                        serde_json::to_vec(&rec)?,
                        Some(PutOptions::new().with_lease(lease)),
                    )
                    .await?;
                published = now;
            }
            let members = self.read_members(&mut client).await?;
            self.set(|sh| {
                sh.status.etcd = "ok".into();
                sh.status.error.clear();
                sh.status.members = members.0;
                sh.status.bad_records = members.1;
                sh.contact = Some(Instant::now());
            });
            keeper.keep_alive().await?;
            match tokio::time::timeout(timeout, stream.message()).await {
                Ok(Ok(Some(resp))) if resp.ttl() > 0 => {}
                Ok(Ok(_)) => {
                    anyhow::bail!("the lease expired (etcd was out of reach longer than its TTL)")
                }
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => anyhow::bail!("etcd did not answer a keep-alive within {timeout:?}"),
            }
        }
    }

    /// The members under the prefix, and how many records were skipped.
    async fn read_members(&self, client: &mut Client) -> anyhow::Result<(Vec<Member>, u64)> {
        let resp = client
            .get(
                self.cfg.nodes_prefix(),
                Some(
                    GetOptions::new()
                        .with_prefix()
                        .with_limit(MAX_MEMBERS as i64 + 1),
                ),
            )
            .await?;
        Ok(parse_members(
            resp.kvs().iter().map(|kv| (kv.key(), kv.value())),
            &self.cfg,
        ))
    }
}

/// Clears the shared client when a session ends, however it ends.
struct ForgetClient(Arc<Mutex<Option<Client>>>);

impl Drop for ForgetClient {
    fn drop(&mut self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// The members among `(key, value)` pairs read under the nodes prefix:
/// a record counts when it parses, is not oversized, and its key names
/// the address it advertises. Sorted by address.
pub fn parse_members<'a>(
    kvs: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    cfg: &ClusterConfig,
) -> (Vec<Member>, u64) {
    let prefix = cfg.nodes_prefix();
    let mut bad = 0;
    let mut out = Vec::new();
    for (key, value) in kvs {
        if out.len() >= MAX_MEMBERS {
            bad += 1;
            continue;
        }
        let rec = (value.len() <= MAX_RECORD)
            .then(|| serde_json::from_slice::<NodeRecord>(value).ok())
            .flatten();
        let named = std::str::from_utf8(key)
            .ok()
            .and_then(|k| k.strip_prefix(&prefix))
            .and_then(|a| a.parse::<SocketAddr>().ok());
        match (rec, named) {
            (Some(r), Some(a)) if r.advertise == a => out.push(Member {
                is_self: a == cfg.advertise,
                advertise: a,
                hostname: r.hostname.chars().take(64).collect(),
                version: r.version.chars().take(32).collect(),
                joined: r.joined.chars().take(40).collect(),
                local_subnets: r
                    .local_subnets
                    .into_iter()
                    .take(MAX_LOCAL_SUBNETS)
                    .collect(),
            }),
            _ => bad += 1,
        }
    }
    out.sort_by_key(|m| m.advertise);
    (out, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ClusterConfig {
        ClusterConfig::parse(
            "etcd://192.168.205.10:2379,192.168.205.11:2379",
            Some("192.168.205.10"),
            None,
            None,
        )
        .unwrap()
    }

    #[test]
    fn the_seeds_flags_parse() {
        let c = cfg();
        assert_eq!(
            c.endpoints,
            ["http://192.168.205.10:2379", "http://192.168.205.11:2379"]
        );
        assert_eq!(c.advertise, "192.168.205.10:4789".parse().unwrap());
        assert_eq!(c.prefix, "/warren");
        assert_eq!(c.ttl, DEFAULT_TTL);
        assert_eq!(c.node_key(), "/warren/nodes/192.168.205.10:4789");
        let c = ClusterConfig::parse(
            "http://10.0.0.1:2379/",
            Some("10.0.0.2:4790"),
            Some("/ci/"),
            Some(Duration::from_secs(3)),
        )
        .unwrap();
        assert_eq!(c.node_key(), "/ci/nodes/10.0.0.2:4790");
    }

    #[test]
    fn bad_flags_say_what_is_expected() {
        let e = |store: &str, adv: Option<&str>| ClusterConfig::parse(store, adv, None, None);
        assert!(e("etcd://node1:2379", Some("10.0.0.1"))
            .unwrap_err()
            .contains("by IP"));
        assert!(e("", Some("10.0.0.1"))
            .unwrap_err()
            .contains("no etcd address"));
        assert!(e("etcd://10.0.0.1:2379", None)
            .unwrap_err()
            .contains("--cluster-advertise"));
        assert!(e("etcd://10.0.0.1:2379", Some("0.0.0.0"))
            .unwrap_err()
            .contains("cannot be reached"));
        assert!(e("etcd://10.0.0.1:2379", Some("eth0:2376"))
            .unwrap_err()
            .contains("IP[:PORT]"));
        assert!(ClusterConfig::parse(
            "etcd://10.0.0.1:2379",
            Some("10.0.0.2"),
            Some("warren"),
            None
        )
        .unwrap_err()
        .contains("prefix"));
        assert!(ClusterConfig::parse(
            "etcd://10.0.0.1:2379",
            Some("10.0.0.2"),
            None,
            Some(Duration::from_secs(1))
        )
        .unwrap_err()
        .contains("between"));
    }

    #[test]
    fn hostile_records_are_skipped_and_counted() {
        let c = cfg();
        let good = serde_json::to_vec(&NodeRecord {
            advertise: "192.168.205.11:4789".parse().unwrap(),
            hostname: "node2".into(),
            version: "0.1.0".into(),
            joined: "2026-12-04T00:00:00Z".into(),
            local_subnets: vec![],
        })
        .unwrap();
        let me = serde_json::to_vec(&NodeRecord {
            advertise: c.advertise,
            hostname: "x".repeat(1000),
            version: "0.1.0".into(),
            joined: String::new(),
            local_subnets: vec![],
        })
        .unwrap();
        let big = vec![b' '; MAX_RECORD + 1];
        let kvs: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (b"/warren/nodes/192.168.205.11:4789".to_vec(), good.clone()),
            (b"/warren/nodes/192.168.205.10:4789".to_vec(), me),
            // A record under another address's key: not believed.
            (b"/warren/nodes/10.9.9.9:4789".to_vec(), good),
            (b"/warren/nodes/garbage".to_vec(), b"{}".to_vec()),
            (
                b"/warren/nodes/10.1.1.1:4789".to_vec(),
                b"not json".to_vec(),
            ),
            (b"/warren/nodes/10.1.1.2:4789".to_vec(), big),
            (vec![0xff, 0xfe], vec![0xff]),
        ];
        let (members, bad) =
            parse_members(kvs.iter().map(|(k, v)| (k.as_slice(), v.as_slice())), &c);
        assert_eq!(bad, 5);
        assert_eq!(members.len(), 2);
        assert_eq!(members[0].advertise, c.advertise);
        assert!(members[0].is_self);
        assert_eq!(members[0].hostname.len(), 64);
        assert_eq!(members[1].hostname, "node2");
        assert!(!members[1].is_self);
    }
}
