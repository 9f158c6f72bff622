//! `WARREN_BENCH_PROFILE=DIR`: where warren's time goes on each row with
//! a goal.
//!
//! After the first round's run of such a row, warren runs it once more,
//! unrecorded, under `perf record -a -g` (system-wide: the work of a
//! userspace switch is split between the daemon's threads and the kernels
//! of the sandboxes it writes into, which run inside its system calls).
//! The figures in the table are never taken under the profiler.
//! `DIR/<row>.txt` gets the flat profile by command, then by command and
//! symbol (`perf report --no-children`, entries over 1% of all CPUs'
//! time), `DIR/<row>.data` the raw samples for `perf report -i` with call
//! graphs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::have;
use crate::lab::{Lab, Sys};
use crate::measure::{self, Spec};
use crate::report;

/// The directory profiles go to, when asked for and `perf` is there.
pub fn dir() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("WARREN_BENCH_PROFILE")?);
    if !have("perf") {
        report::note("WARREN_BENCH_PROFILE is set but perf is not installed (Debian: linux-perf): no profiles".into());
        return None;
    }
    if let Err(e) = std::fs::create_dir_all(&dir) {
        report::note(format!("no profiles: {}: {e}", dir.display()));
        return None;
    }
    Some(dir)
}

/// One more run of `spec` on warren under `perf record`; writes the
/// report next to the samples. Failures become notes.
pub fn run(dir: &Path, lab: &Lab, spec: &Spec, secs: u32) {
    let slug: String = spec
        .label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect::<String>()
        .split('-')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    let data = dir.join(format!("{slug}.data"));
    let text = dir.join(format!("{slug}.txt"));
    let record = Command::new("perf")
        .args(["record", "-a", "-g", "-q", "-o"])
        .arg(&data)
        .args(["--", "sleep", &secs.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    let record = match record {
        Ok(c) => c,
        Err(e) => return report::note(format!("{}: perf record: {e}", spec.label)),
    };
    // perf needs a moment to open its events on every CPU.
    std::thread::sleep(Duration::from_millis(300));
    let figure = measure::run(lab, spec, Sys::Warren, secs);
    // Its stderr is read to the end here, so a chatty perf cannot fill the
    // pipe and stall; what it said is the note if it failed.
    match record.wait_with_output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr);
            let last = err.lines().last().unwrap_or("no output");
            return report::note(format!(
                "{}: perf record failed ({}): {last}",
                spec.label, o.status
            ));
        }
        Err(e) => return report::note(format!("{}: perf record: {e}", spec.label)),
    }
    let header = format!(
        "# {}, warren, {secs} s under perf record -a -g: {}\n\
         # Shares are of all CPUs' time (with 2 CPUs, 50% is one whole core);\n\
         # `swapper` is idle time. In a VM without a PMU, perf samples on a\n\
         # timer, so time with interrupts off (waking another CPU) shows on\n\
         # `_raw_spin_unlock_irqrestore`.\n",
        spec.label,
        match figure {
            Ok(v) => format!("{v:.2} {}", spec.kind.unit()),
            Err(e) => e,
        }
    );
    let mut body = header.into_bytes();
    for (title, sort, limit) in [
        ("By command", "comm", "1"),
        ("By command and symbol", "comm,symbol", "1"),
    ] {
        let out = Command::new("perf")
            .args(["report", "--stdio", "--no-children", "-g", "none", "-q"])
            .args(["--sort", sort, "--percent-limit", limit, "-i"])
            .arg(&data)
            .stderr(Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => {
                body.extend_from_slice(format!("\n## {title}\n\n").as_bytes());
                body.extend_from_slice(&o.stdout);
            }
            Ok(o) => {
                return report::note(format!("{}: perf report failed ({})", spec.label, o.status))
            }
            Err(e) => return report::note(format!("{}: perf report: {e}", spec.label)),
        }
    }
    match std::fs::write(&text, body) {
        Ok(()) => eprintln!("compare: profile of {} in {}", spec.label, text.display()),
        Err(e) => report::note(format!("{}: {}: {e}", spec.label, text.display())),
    }
}
