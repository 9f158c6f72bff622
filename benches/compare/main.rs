//! warren against its peers, side by side in one run (issue 7; issue 5's
//! published-port benchmark is its `ingress` section).
//!
//! ```sh
//! cargo bench --bench compare                 # everything, about 10 minutes
//! cargo bench --bench compare -- ingress      # some sections only
//! ```
//!
//! Sections, in the order they run: `micro` (the switch core on
//! criterion, allocations per frame counted), `memory` (run to ready,
//! daemon memory idle, per sandbox and per NAT flow), then the rows of
//! `local` (sandbox to sandbox against a kernel bridge, root only),
//! `egress` (against pasta and slirp4netns, with the host's own loopback
//! as the ceiling), `ingress` (published ports
//! against rootlesskit's builtin driver, pasta and slirp4netns) and
//! `latency` (request/response and connection rates) — measured in
//! rounds: every round runs every row on every system, rotating which
//! system goes first, each row for a multiple of its number of systems
//! so each goes first equally often, and the table shows the median of
//! the rounds (`compare/stats.rs`).
//!
//! Settings from the environment: `WARREN_BENCH_SECS` (seconds per run,
//! 3), `WARREN_BENCH_ROUNDS` (3, rounded up per row to a multiple of its
//! systems: 4 for every row here), `WARREN_BENCH_TIMEOUT` (the run stops
//! itself, cleaning up and printing what it has, after this many seconds:
//! 900: 160 runs of 3 s with 4 rounds), `WARREN_BENCH_PROFILE=DIR` (a `perf` profile of warren on each
//! row with a goal, from one extra run: see `compare/profile.rs`).
//!
//! Why Rust and not a shell script: the harness has to find and kill what
//! daemons and forwarders leave behind, hold a time limit and signals while
//! measuring, reuse the switch core's criterion benchmark, and serve as its
//! own small client and server inside the sandboxes; in bash each of those
//! would be a trap or a Python snippet. cargo also builds warren in
//! release mode first. As root it installs missing peers with
//! `scripts/install-deps --bench` and runs every peer and warren as uid
//! 65534; traffic stays on loopback and in namespaces it makes (see
//! `compare/lab.rs`), and `compare/cleanup.rs` leaves nothing behind.

mod cleanup;
#[path = "../common/mod.rs"]
mod common;
mod footprint;
mod helpers;
mod lab;
mod measure;
mod profile;
mod report;
mod stats;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{env_or, have, is_root, micro, BenchDir};
use lab::{Lab, Sys};
use measure::SPECS;
use report::{single, verdict};

const SECTIONS: [&str; 6] = ["micro", "memory", "local", "egress", "ingress", "latency"];

/// Tools the peers and clients need, and their Debian packages.
const TOOLS: [&str; 8] = [
    "iperf3",
    "sockperf",
    "pasta",
    "slirp4netns",
    "rootlesskit",
    "rootlessctl",
    "newuidmap",
    "nsenter",
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(code) = helpers::run(&args) {
        std::process::exit(code);
    }
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let mut chosen: Vec<&str> = args[1..]
        .iter()
        .filter(|a| !a.starts_with('-'))
        .map(String::as_str)
        .collect();
    if let Some(bad) = chosen.iter().find(|s| !SECTIONS.contains(s)) {
        eprintln!(
            "compare: unknown section {bad}; sections: {}",
            SECTIONS.join(" ")
        );
        std::process::exit(2);
    }
    if chosen.is_empty() {
        chosen = SECTIONS.to_vec();
    }
    let secs: u32 = env_or("WARREN_BENCH_SECS", 3);
    let rounds: u32 = env_or("WARREN_BENCH_ROUNDS", 3);
    let limit: u64 = env_or("WARREN_BENCH_TIMEOUT", 900);

    cleanup::init(Duration::from_secs(limit), report::render);
    install_peers();
    raise_fd_limit();
    let specs: Vec<usize> = (0..SPECS.len())
        .filter(|&i| chosen.contains(&SPECS[i].section))
        .collect();
    report::with(|r| {
        r.secs = secs;
        r.rounds = rounds;
        r.specs = specs.clone();
    });

    if chosen.contains(&"micro") {
        eprintln!("compare: switch core micro-benchmark (criterion)");
        let mut c = micro::criterion();
        for m in micro::bench(&mut c) {
            single(
                &format!(
                    "switch core, {} B frames (M frames/s; allocations per frame)",
                    m.size
                ),
                format!("{:.1}; {}", m.frames_per_sec / 1e6, m.allocs_per_frame),
                "0 allocations",
                verdict(m.allocs_per_frame == 0.0),
            );
        }
    }

    let bench = BenchDir::new("compare");
    let dir = bench.dir.clone();
    cleanup::on_exit("remove the work directory", move || {
        let _ = std::fs::remove_dir_all(&dir);
    });
    if chosen.contains(&"memory") {
        if let Err(e) = footprint::run(&bench) {
            report::note(format!("start-up and memory not measured: {e}"));
        }
    }

    if !specs.is_empty() {
        let systems: BTreeSet<usize> = specs
            .iter()
            .flat_map(|&i| SPECS[i].systems.iter())
            .map(|s| Sys::ALL.iter().position(|a| a == s).unwrap_or(0))
            .collect();
        let systems: Vec<Sys> = systems.into_iter().map(|i| Sys::ALL[i]).collect();
        let lab = Lab::new(bench, &systems);
        report::with(|r| r.skipped = lab.failed.clone());
        // Each row rotates over the systems placed here, for a multiple
        // of their number of rounds, so each leads equally (stats.rs).
        let placed: Vec<Vec<Sys>> = (0..SPECS.len())
            .map(|i| {
                let spec = &SPECS[i];
                spec.systems
                    .iter()
                    .copied()
                    .filter(|s| lab.place(*s, spec.route).is_some())
                    .collect()
            })
            .collect();
        let rounds_of = |i: usize| stats::rounds_for(rounds as usize, placed[i].len());
        let most = specs.iter().map(|&i| rounds_of(i)).max().unwrap_or(0);
        report::with(|r| r.rounds = most as u32);
        let runs: usize = specs.iter().map(|&i| placed[i].len() * rounds_of(i)).sum();
        eprintln!(
            "compare: {runs} runs of {secs} s, about {} s",
            runs as u64 * (u64::from(secs) + 1)
        );
        let profiles = profile::dir();
        let mut done = 0;
        for round in 0..most {
            for &i in &specs {
                let spec = &SPECS[i];
                if round >= rounds_of(i) {
                    continue;
                }
                let systems = &placed[i];
                for k in stats::order(systems.len(), round) {
                    let sys = systems[k];
                    done += 1;
                    let figure = measure::run(&lab, spec, sys, secs);
                    if cleanup::stopped().is_some() {
                        // finish() is tearing everything down and exits.
                        loop {
                            std::thread::park();
                        }
                    }
                    eprintln!(
                        "compare: [{done}/{runs}] round {} {} / {}: {}",
                        round + 1,
                        spec.label,
                        sys.name(),
                        match &figure {
                            Ok(v) => format!("{v:.2} {}", spec.kind.unit()),
                            Err(e) => e.clone(),
                        }
                    );
                    report::record(i, sys, figure);
                }
                if let Some(dir) = profiles.as_deref() {
                    if round == 0
                        && !spec.goal.is_empty()
                        && lab.place(Sys::Warren, spec.route).is_some()
                    {
                        profile::run(dir, &lab, spec, secs);
                    }
                }
            }
        }
    }
    cleanup::finish(0, report::render);
}

/// As root, installs the peers that are missing (Debian packages, through
/// `scripts/install-deps --bench`); otherwise says which are missing.
fn install_peers() {
    let missing: Vec<&str> = TOOLS.iter().copied().filter(|t| !have(t)).collect();
    if missing.is_empty() {
        return;
    }
    if is_root() {
        eprintln!("compare: installing {}", missing.join(", "));
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/install-deps");
        let ok = std::process::Command::new(script)
            .arg("--bench")
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("compare: {script} --bench failed; measuring what is there");
        }
    } else {
        eprintln!(
            "compare: not installed: {} (scripts/install-deps --bench); those peers are skipped",
            missing.join(", ")
        );
    }
}

/// The soft limit on open files up to the hard one (the NAT flow
/// measurement holds hundreds of sockets).
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}
