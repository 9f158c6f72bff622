//! Interface configuration inside a sandbox over rtnetlink.
//!
//! Runs in the setns helper after it joined the sandbox's namespaces, on a
//! current-thread tokio runtime (so the helper stays single-threaded). We
//! speak netlink through `rtnetlink` rather than running `ip`: no dependency
//! on the sandbox's filesystem, real errors instead of parsed text.

use std::net::{IpAddr, Ipv4Addr};

use anyhow::{anyhow, Context, Result};
use futures::TryStreamExt;

/// What one interface inside the sandbox should look like.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct IfaceConfig {
    pub ifname: String,
    pub mac: super::Mac,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    pub mtu: u32,
    /// Whether the default route goes through this interface's gateway.
    pub default_route: bool,
}

/// Where the default route should go: an existing interface and its gateway.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RouteConfig {
    pub ifname: String,
    pub gateway: Ipv4Addr,
}

/// Brings `lo` up (when `setup_lo`), configures every interface in `ifaces`
/// (which must already exist: the TAPs were just created), then points the
/// default route at `route` if given (replacing any default route).
pub fn configure(
    setup_lo: bool,
    ifaces: &[IfaceConfig],
    route: Option<&RouteConfig>,
) -> Result<Vec<u32>> {
    with_netlink(|handle| async move {
        if setup_lo {
            let lo = link_index(&handle, "lo").await?;
            handle
                .link()
                .set(lo)
                .up()
                .execute()
                .await
                .context("bringing lo up")?;
        }
        let mut indexes = Vec::with_capacity(ifaces.len());
        for cfg in ifaces {
            let idx = link_index(&handle, &cfg.ifname).await?;
            handle
                .link()
                .set(idx)
                .address(cfg.mac.0.to_vec())
                .mtu(cfg.mtu)
                .execute()
                .await
                .with_context(|| {
                    format!(
                        "setting MAC {} and MTU {} on {}",
                        cfg.mac, cfg.mtu, cfg.ifname
                    )
                })?;
            handle
                .address()
                .add(idx, IpAddr::V4(cfg.ip), cfg.prefix_len)
                .execute()
                .await
                .with_context(|| {
                    format!("adding {}/{} to {}", cfg.ip, cfg.prefix_len, cfg.ifname)
                })?;
            handle
                .link()
                .set(idx)
                .up()
                .execute()
                .await
                .with_context(|| format!("bringing {} up", cfg.ifname))?;
            if cfg.default_route {
                default_route(&handle, idx, &cfg.ifname, cfg.gateway).await?;
            }
            indexes.push(idx);
        }
        if let Some(r) = route {
            let idx = link_index(&handle, &r.ifname).await?;
            default_route(&handle, idx, &r.ifname, r.gateway).await?;
        }
        Ok(indexes)
    })
}

/// Sets only each interface's MAC (the switch accepts nothing else from
/// its port); address, MTU, state and routes are left to the runner.
pub fn set_macs(ifaces: &[IfaceConfig]) -> Result<Vec<u32>> {
    with_netlink(|handle| async move {
        let mut indexes = Vec::with_capacity(ifaces.len());
        for cfg in ifaces {
            let idx = link_index(&handle, &cfg.ifname).await?;
            handle
                .link()
                .set(idx)
                .address(cfg.mac.0.to_vec())
                .execute()
                .await
                .with_context(|| format!("setting MAC {} on {}", cfg.mac, cfg.ifname))?;
            indexes.push(idx);
        }
        Ok(indexes)
    })
}

/// Runs `f` with a netlink handle on a current-thread runtime (the helper
/// must stay single-threaded), for the namespace the process is in now.
fn with_netlink<T, F, Fut>(f: F) -> Result<T>
where
    F: FnOnce(rtnetlink::Handle) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .context("tokio runtime for netlink")?;
    rt.block_on(async {
        let (conn, handle, _) = rtnetlink::new_connection().context("netlink socket")?;
        tokio::spawn(conn);
        f(handle).await
    })
}

async fn default_route(
    handle: &rtnetlink::Handle,
    idx: u32,
    ifname: &str,
    gateway: Ipv4Addr,
) -> Result<()> {
    handle
        .route()
        .add()
        .v4()
        .gateway(gateway)
        .output_interface(idx)
        .replace()
        .execute()
        .await
        .with_context(|| format!("default route via {gateway} on {ifname}"))
}

/// Fails unless every interface in `names` exists (in the current netns).
pub fn require_links(names: &[String]) -> Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    with_netlink(|handle| async move {
        for name in names {
            link_index(&handle, name).await?;
        }
        Ok(())
    })
}

async fn link_index(handle: &rtnetlink::Handle, name: &str) -> Result<u32> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    let msg = links
        .try_next()
        .await
        .with_context(|| format!("looking up interface {name}"))?
        .ok_or_else(|| anyhow!("interface {name} not found"))?;
    Ok(msg.header.index)
}
