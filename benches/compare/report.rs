//! The results of a run and the one markdown table they make.
//!
//! Results live in one global, so the table can be printed however the
//! run ends (at its end, at the time limit, on a signal) with whatever
//! was measured by then. Each throughput or latency cell is the median of
//! the rounds that succeeded (with `k/n` when some failed); the ratio
//! column is warren's median over each peer's; the goal column is issue
//! 7's (and issue 5's for published ports), with met or unmet. A peer
//! whose installed version is known to be broken on a row (`Spec::unjudged`)
//! is shown marked "(unreliable)" and left out of the verdict, with a note
//! saying why; warren above the host's own loopback, the ceiling of every
//! egress path, makes the verdict "suspect".

use std::collections::HashMap;
use std::process::Command;
use std::sync::Mutex;

use crate::cleanup;
use crate::lab::Sys;
use crate::measure::{Broken, Kind, Spec, SPECS};
use crate::stats::median;

/// A row with one figure (start-up, memory, micro-benchmarks).
pub struct Single {
    pub label: String,
    pub value: String,
    pub goal: String,
    pub verdict: String,
}

#[derive(Default)]
pub struct Results {
    pub secs: u32,
    pub rounds: u32,
    /// Indexes into `SPECS` of the rows this run measures.
    pub specs: Vec<usize>,
    /// (spec, system) → figures of the successful runs.
    pub samples: HashMap<(usize, Sys), Vec<f64>>,
    /// (spec, system) → runs tried.
    pub tries: HashMap<(usize, Sys), u32>,
    /// Systems not measured, and why.
    pub skipped: Vec<(Sys, String)>,
    pub singles: Vec<Single>,
    pub notes: Vec<String>,
}

static RESULTS: Mutex<Option<Results>> = Mutex::new(None);

/// Runs `f` on the results (created on first use).
pub fn with<T>(f: impl FnOnce(&mut Results) -> T) -> T {
    let mut r = RESULTS.lock().unwrap_or_else(|e| e.into_inner());
    f(r.get_or_insert_with(Results::default))
}

/// Records one run's outcome.
pub fn record(spec: usize, sys: Sys, figure: Result<f64, String>) {
    if cleanup::stopped().is_some() {
        return;
    }
    with(|r| {
        *r.tries.entry((spec, sys)).or_default() += 1;
        match figure {
            Ok(v) => r.samples.entry((spec, sys)).or_default().push(v),
            Err(e) => r.notes.push(format!(
                "{} / {}: a run failed: {e}",
                SPECS[spec].label,
                sys.name()
            )),
        }
    })
}

pub fn single(label: &str, value: String, goal: &str, verdict: &str) {
    with(|r| {
        r.singles.push(Single {
            label: label.into(),
            value,
            goal: goal.into(),
            verdict: verdict.into(),
        })
    })
}

/// "met" or "**unmet**".
pub fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "**unmet**"
    }
}

pub fn note(text: String) {
    with(|r| r.notes.push(text))
}

/// Peers' columns, after warren's.
const COLUMNS: [Sys; 6] = Sys::ALL;

fn short(sys: Sys) -> &'static str {
    match sys {
        Sys::Bridge => "bridge",
        Sys::Slirp => "slirp4netns",
        Sys::Rootlesskit => "rootlesskit",
        Sys::Loopback => "loopback",
        other => other.name(),
    }
}

/// A figure in its unit: Gbit/s with two decimals, rates whole.
fn figure(kind: Kind, v: f64) -> String {
    match kind {
        Kind::Iperf { .. } => format!("{v:.2}"),
        _ => thousands(v.round() as u64),
    }
}

pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The table and what goes with it, as markdown.
pub fn render() -> String {
    with(|r| {
        let mut out = String::new();
        out.push_str(&format!(
            "\n## warren and its peers, {}\n\n{}; median of {} round(s) (each system \
             first in as many), {} s per run; the whole run took {} s after the build\n\n",
            shell("date -u +%Y-%m-%d"),
            machine(),
            r.rounds,
            r.secs,
            cleanup::elapsed()
        ));
        out.push_str("| measurement | ");
        for s in COLUMNS {
            out.push_str(s.name());
            out.push_str(" | ");
        }
        out.push_str("warren ÷ peer | goal | |\n|---|");
        out.push_str(&"---|".repeat(COLUMNS.len() + 3));
        out.push('\n');
        for &i in &r.specs {
            out.push_str(&spec_row(r, i, &SPECS[i]));
        }
        for s in &r.singles {
            out.push_str(&format!("| {} | {} |", s.label, s.value));
            out.push_str(&" |".repeat(COLUMNS.len()));
            out.push_str(&format!(" {} | {} |\n", s.goal, s.verdict));
        }
        let mut raw = Vec::new();
        for &i in &r.specs {
            for &sys in SPECS[i].systems {
                if let Some(v) = r.samples.get(&(i, sys)) {
                    let v: Vec<String> = v.iter().map(|x| figure(SPECS[i].kind, *x)).collect();
                    raw.push(format!(
                        "{} / {}: {}",
                        SPECS[i].label,
                        sys.name(),
                        v.join(", ")
                    ));
                }
            }
        }
        if !raw.is_empty() {
            out.push_str("\nEach round's figure, row by row:\n\n");
            for l in raw {
                out.push_str(&format!("- {l}\n"));
            }
        }
        if let Some(why) = cleanup::stopped() {
            out.push_str(&format!(
                "\n**Incomplete:** {why} before the run's end; the table holds what was measured by then.\n"
            ));
        }
        let broken: Vec<String> = r
            .specs
            .iter()
            .flat_map(|&i| {
                unjudged(&SPECS[i]).into_iter().map(move |b| {
                    format!(
                        "{} / {} (unreliable): {}",
                        SPECS[i].label,
                        b.sys.name(),
                        b.why
                    )
                })
            })
            .collect();
        if !r.skipped.is_empty() || !r.notes.is_empty() || !broken.is_empty() {
            out.push_str("\nNotes:\n\n");
            for b in &broken {
                out.push_str(&format!("- {b}\n"));
            }
            for (sys, why) in &r.skipped {
                out.push_str(&format!("- {} not measured: {why}\n", sys.name()));
            }
            for n in &r.notes {
                out.push_str(&format!("- {n}\n"));
            }
        }
        out
    })
}

/// The peers of `spec` whose installed version is known to be broken on
/// it: shown, marked, and left out of the verdict.
fn unjudged(spec: &Spec) -> Vec<&'static Broken> {
    spec.unjudged
        .iter()
        .filter(|b| package_version(b.package).contains(b.version))
        .collect()
}

fn package_version(package: &str) -> String {
    shell(&format!(
        "dpkg-query -W -f '${{Version}}' {package} 2>/dev/null"
    ))
}

fn spec_row(r: &Results, i: usize, spec: &Spec) -> String {
    let med = |sys: Sys| r.samples.get(&(i, sys)).and_then(|v| median(v));
    let broken = unjudged(spec);
    let is_broken = |sys: Sys| broken.iter().any(|b| b.sys == sys);
    let mut row = format!("| {} ({}) |", spec.label, spec.kind.unit());
    for sys in COLUMNS {
        if !spec.systems.contains(&sys) {
            row.push_str(" |");
            continue;
        }
        let tries = r.tries.get(&(i, sys)).copied().unwrap_or(0);
        let ok = r.samples.get(&(i, sys)).map_or(0, Vec::len) as u32;
        let mark = if is_broken(sys) { " (unreliable)" } else { "" };
        match med(sys) {
            Some(v) if ok == tries => row.push_str(&format!(" {}{mark} |", figure(spec.kind, v))),
            Some(v) => row.push_str(&format!(" {} ({ok}/{tries}){mark} |", figure(spec.kind, v))),
            None if tries > 0 => row.push_str(" failed |"),
            None => row.push_str(" – |"),
        }
    }
    let warren = med(Sys::Warren);
    let ratios: Vec<String> = spec
        .systems
        .iter()
        .filter(|s| **s != Sys::Warren)
        .filter_map(|&s| {
            let mark = if is_broken(s) { " (unreliable)" } else { "" };
            Some(format!("{:.2}× {}{mark}", warren? / med(s)?, short(s)))
        })
        .collect();
    row.push_str(&format!(" {} |", ratios.join(", ")));
    let judged: Vec<&(Sys, f64)> = spec.goal.iter().filter(|(s, _)| !is_broken(*s)).collect();
    let mut goal: Vec<String> = judged
        .iter()
        .map(|(s, f)| format!("≥ {f}× {}", short(*s)))
        .collect();
    for (s, f) in spec.goal.iter().filter(|(s, _)| is_broken(*s)) {
        goal.push(format!("({f}× {} not judged)", short(*s)));
    }
    // The host's own loopback is a ceiling: warren above it means the
    // measurement, not warren, is wrong.
    let ceiling = spec.systems.contains(&Sys::Loopback)
        && matches!((warren, med(Sys::Loopback)), (Some(w), Some(l)) if w > l);
    let verdict = if spec.goal.is_empty() {
        String::new()
    } else if ceiling {
        "**suspect** (above the host's loopback)".into()
    } else {
        let checks: Vec<Option<bool>> = judged
            .iter()
            .map(|(s, f)| Some(warren? >= f * med(*s)?))
            .collect();
        if checks.iter().any(|c| c == &Some(false)) {
            "**unmet**".into()
        } else if !checks.is_empty() && checks.iter().all(|c| c == &Some(true)) {
            "met".into()
        } else {
            "not measured".into()
        }
    };
    row.push_str(&format!(" {} | {verdict} |\n", goal.join(", ")));
    row
}

/// Cores, kernel, the TCP congestion control (new network namespaces
/// inherit the host's, and under BBR every sender paces with a timer, which
/// moves every throughput figure) and the peers' package versions.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let versions: Vec<String> = ["iperf3", "sockperf", "passt", "slirp4netns", "rootlesskit"]
        .iter()
        .map(|p| {
            let v = shell(&format!("dpkg-query -W -f '${{Version}}' {p} 2>/dev/null"));
            format!("{p} {}", if v.is_empty() { "?" } else { &v })
        })
        .collect();
    let cc =
        std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control").unwrap_or_default();
    format!(
        "{cores} cores, Linux {}, TCP congestion control {}, {}",
        kernel.trim(),
        cc.trim(),
        versions.join(", ")
    )
}

fn shell(line: &str) -> String {
    Command::new("sh")
        .args(["-c", line])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
