//! warren: Docker's container network model without root.
//!
//! One unprivileged daemon runs a userspace virtual switch per network over
//! TAP devices that live in the sandboxes' user + network namespaces. The
//! modules follow the split in `docs/architecture.md`:
//!
//! - [`cli`]: the command line, a thin client of the daemon's HTTP API.
//! - [`cni`]: the `warren-cni` plugin, another thin client of the API.
//! - [`cluster`]: membership of a multi-host cluster through etcd.
//! - [`api`]: HTTP routes and the JSON types shared by CLI and daemon.
//! - [`daemon`]: the control plane (state store, IPAM, sandbox registry).
//! - [`sandbox`]: namespaces: the sandbox init, the setns helper, netlink.
//! - [`switch`]: the data plane: ports, MAC table, forwarding loop.
//! - [`gateway`]: the smoltcp host that owns each network's gateway address.
//! - [`slirp`]: `warren slirp4netns`, slirp4netns's command line and API on
//!   a warren network.
//! - [`sys`]: the only home of `unsafe` (TAP ioctls, setns, SCM_RIGHTS, pidfd).
#![deny(unsafe_code)]

pub mod api;
pub mod cli;
pub mod cluster;
pub mod cni;
pub mod daemon;
pub mod gateway;
pub mod sandbox;
pub mod slirp;
pub mod switch;
#[allow(unsafe_code)]
pub mod sys;
