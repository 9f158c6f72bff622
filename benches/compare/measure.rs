//! What is measured, and one run of it.
//!
//! Each row of the table is a [`Spec`]: a route (sandbox to sandbox,
//! egress, ingress), a kind of client (iperf3 throughput, sockperf round
//! trips, the harness's connection rate) and the systems that have that
//! route. A run starts the client where [`Lab::place`] says, bounded by
//! `timeout`, and parses its output; a run that fails records nothing
//! (the table shows how many of the rounds succeeded).

use std::process::Stdio;
use std::time::Duration;

use crate::common::parse_iperf;
use crate::lab::{Lab, Route, Sys};

/// The client of a measurement.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// iperf3 TCP, Gbit/s received; `reverse` is `-R` (server sends).
    Iperf { streams: u32, reverse: bool },
    /// `sockperf ping-pong --tcp`, 64-byte messages: round trips per second.
    Rr,
    /// Short connections per second (connect, one byte each way, close).
    Conn,
}

impl Kind {
    pub fn unit(self) -> &'static str {
        match self {
            Kind::Iperf { .. } => "Gbit/s",
            Kind::Rr => "round trips/s",
            Kind::Conn => "connections/s",
        }
    }
}

/// A goal as a ratio: warren ≥ `factor` × `peer`.
pub type Goal = &'static [(Sys, f64)];

/// Peers measured and shown on a row but not judged: a ratio to a
/// figure that is not the peer's real capacity says nothing. Each is the
/// peer, the Debian package and version (a substring of it) that behave
/// so, and why.
pub type Unjudged = &'static [Broken];

/// A peer version known to be broken on a row (see [`Unjudged`]).
pub struct Broken {
    pub sys: Sys,
    pub package: &'static str,
    pub version: &'static str,
    pub why: &'static str,
}

/// One row of the comparison.
pub struct Spec {
    pub section: &'static str,
    pub label: &'static str,
    pub route: Route,
    pub kind: Kind,
    pub systems: &'static [Sys],
    /// What the verdict is judged on (pairs of `unjudged` peers are left
    /// out of it).
    pub goal: Goal,
    pub unjudged: Unjudged,
}

const LOCAL: &[Sys] = &[Sys::Warren, Sys::Bridge];
/// The host's own loopback is the reference: no egress path can beat it.
const EGRESS: &[Sys] = &[Sys::Warren, Sys::Pasta, Sys::Slirp, Sys::Loopback];
const INGRESS: &[Sys] = &[Sys::Warren, Sys::Rootlesskit, Sys::Pasta, Sys::Slirp];
const BRIDGE_GOAL: Goal = &[(Sys::Bridge, 0.8)];
const EGRESS_GOAL: Goal = &[(Sys::Pasta, 2.0), (Sys::Slirp, 3.0)];
/// pasta's sandbox → host figure on Debian 12 is not pasta's capacity.
const PASTA_STALLS: Unjudged = &[Broken {
    sys: Sys::Pasta,
    package: "passt",
    version: "0.0~git20230309",
    why: "this pasta (Debian 12's passt 0.0~git20230309) stalls on sandbox → host \
          (0.58–2.08 Gbit/s over one run's rounds, 0.1–7 over a day, against \
          13.7–14.8 host → sandbox; docs/performance.md), so a ratio to it says \
          nothing about warren: the row is judged against slirp4netns, with the \
          host's own loopback as its ceiling",
}];
/// Issue 5 (host into the sandbox): rootlesskit's builtin driver and 3×
/// slirp4netns.
const INGRESS_GOAL: Goal = &[(Sys::Rootlesskit, 1.0), (Sys::Slirp, 3.0)];
/// Out of the sandbox through a published port only issue 7's ingress
/// goal applies (issue 5's benchmark is the way in).
const INGRESS_R_GOAL: Goal = &[(Sys::Rootlesskit, 1.0)];

/// Every throughput and latency row, in table order.
pub const SPECS: &[Spec] = &[
    Spec {
        section: "local",
        label: "sandbox → sandbox, 1 stream",
        route: Route::Local,
        kind: Kind::Iperf {
            streams: 1,
            reverse: false,
        },
        systems: LOCAL,
        goal: BRIDGE_GOAL,
        unjudged: &[],
    },
    Spec {
        section: "local",
        label: "sandbox → sandbox, 4 streams",
        route: Route::Local,
        kind: Kind::Iperf {
            streams: 4,
            reverse: false,
        },
        systems: LOCAL,
        goal: BRIDGE_GOAL,
        unjudged: &[],
    },
    Spec {
        section: "egress",
        label: "egress sandbox → host",
        route: Route::Egress,
        kind: Kind::Iperf {
            streams: 1,
            reverse: false,
        },
        systems: EGRESS,
        goal: EGRESS_GOAL,
        unjudged: PASTA_STALLS,
    },
    Spec {
        section: "egress",
        label: "egress host → sandbox (-R)",
        route: Route::Egress,
        kind: Kind::Iperf {
            streams: 1,
            reverse: true,
        },
        systems: EGRESS,
        goal: EGRESS_GOAL,
        unjudged: &[],
    },
    Spec {
        section: "ingress",
        label: "published port, host → sandbox",
        route: Route::Ingress,
        kind: Kind::Iperf {
            streams: 1,
            reverse: false,
        },
        systems: INGRESS,
        goal: INGRESS_GOAL,
        unjudged: &[],
    },
    Spec {
        section: "ingress",
        label: "published port, sandbox → host (-R)",
        route: Route::Ingress,
        kind: Kind::Iperf {
            streams: 1,
            reverse: true,
        },
        systems: INGRESS,
        goal: INGRESS_R_GOAL,
        unjudged: &[],
    },
    Spec {
        section: "ingress",
        label: "published port, short connections",
        route: Route::Ingress,
        kind: Kind::Conn,
        systems: INGRESS,
        goal: &[],
        unjudged: &[],
    },
    Spec {
        section: "latency",
        label: "sandbox ↔ sandbox, TCP request/response",
        route: Route::Local,
        kind: Kind::Rr,
        systems: LOCAL,
        goal: &[],
        unjudged: &[],
    },
    Spec {
        section: "latency",
        label: "sandbox → sandbox, short connections",
        route: Route::Local,
        kind: Kind::Conn,
        systems: LOCAL,
        goal: &[],
        unjudged: &[],
    },
    Spec {
        section: "latency",
        label: "NAT (sandbox ↔ host), TCP request/response",
        route: Route::Egress,
        kind: Kind::Rr,
        systems: EGRESS,
        goal: &[],
        unjudged: &[],
    },
    Spec {
        section: "latency",
        label: "NAT (sandbox → host), short connections",
        route: Route::Egress,
        kind: Kind::Conn,
        systems: EGRESS,
        goal: &[],
        unjudged: &[],
    },
    Spec {
        section: "latency",
        label: "published port, TCP request/response",
        route: Route::Ingress,
        kind: Kind::Rr,
        systems: INGRESS,
        goal: &[],
        unjudged: &[],
    },
];

/// One run of `spec` on `sys` for `secs` seconds; the figure in the
/// spec's unit, or why there is none.
pub fn run(lab: &Lab, spec: &Spec, sys: Sys, secs: u32) -> Result<f64, String> {
    let place = lab
        .place(sys, spec.route)
        .ok_or_else(|| format!("{} is not set up", sys.name()))?;
    let (addr, p) = (place.addr.clone(), place.ports);
    let s = secs.to_string();
    let argv: Vec<String> = match spec.kind {
        Kind::Iperf { streams, reverse } => {
            let mut a = vec![
                "iperf3".to_string(),
                "-c".into(),
                addr,
                "-p".into(),
                p.iperf.to_string(),
                "-t".into(),
                s,
                "-P".into(),
                streams.to_string(),
                "-J".into(),
            ];
            if reverse {
                a.push("-R".into());
            }
            a
        }
        Kind::Rr => [
            "sockperf",
            "ping-pong",
            "--tcp",
            "-i",
            &addr,
            "-p",
            &p.rr.to_string(),
            "-t",
            &s,
            "--msg-size",
            "64",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect(),
        Kind::Conn => vec![
            lab.bench.helper.display().to_string(),
            "__connrate".into(),
            addr,
            p.echo.to_string(),
            s,
        ],
    };
    let limit = Duration::from_secs(u64::from(secs) + 20);
    let out = place
        .command(&lab.bench.dir, limit, &argv)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("{}: {e}", argv[0]))?;
    let parsed = match spec.kind {
        Kind::Iperf { .. } => parse_iperf(&out.stdout).map(|bps| bps / 1e9),
        Kind::Rr => parse_sockperf(&format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )),
        Kind::Conn => String::from_utf8_lossy(&out.stdout).trim().parse().ok(),
    };
    parsed.filter(|v| *v > 0.0).ok_or_else(|| {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or("no output");
        format!("{} failed ({}): {last}", argv[0], out.status)
    })
}

/// Round trips per second from sockperf's `[Valid Duration]` line (the
/// run after its warm-up): `RunTime=1.551 sec; ... ReceivedMessages=83554`.
fn parse_sockperf(out: &str) -> Option<f64> {
    let line = out.lines().find(|l| l.contains("[Valid Duration]"))?;
    let field = |name: &str| -> Option<f64> {
        let rest = &line[line.find(name)? + name.len()..];
        rest.split(|c: char| c == ';' || c.is_whitespace())
            .next()?
            .parse()
            .ok()
    };
    Some(field("ReceivedMessages=")? / field("RunTime=")?)
}
