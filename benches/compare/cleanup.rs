//! Leaving nothing behind, whatever happens.
//!
//! The harness starts daemons that detach (warren's), namespaces held by
//! processes, forwarders and servers; some of them fork away from the
//! process that started them. So that none survives the run:
//!
//! - the harness makes itself a *child subreaper* before it starts
//!   anything, so every orphan among its descendants is re-parented to it
//!   rather than to init, and stays findable as a descendant;
//! - set-up steps register teardown actions (remove warren's sandboxes and
//!   stop its daemon, delete the kernel bridge's namespaces and links),
//!   which run last-registered first;
//! - then every remaining descendant (found through `/proc/*/stat`'s
//!   parent pids) is killed and reaped, until none is left, and the check
//!   is printed;
//! - all of this runs exactly once, from whichever comes first: the end of
//!   the run, the global time limit (a watchdog thread), SIGINT, SIGTERM
//!   or SIGHUP (handlers, through tokio on a thread of their own: blocking
//!   the signals instead would pass the blocked mask on to every server
//!   and daemon started, which then ignore `timeout` and SIGTERM), or a
//!   panic (the panic hook).
//!
//! Only descendants of the harness are ever signalled: nothing is killed
//! by name.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

type Action = Box<dyn FnOnce() + Send>;

static ACTIONS: Mutex<Vec<(String, Action)>> = Mutex::new(Vec::new());
static FINISH: Mutex<()> = Mutex::new(());
/// When the harness started.
static START: Mutex<Option<Instant>> = Mutex::new(None);
/// Why the run stopped early, once it has.
static STOPPED: Mutex<Option<String>> = Mutex::new(None);

/// Why the run is stopping before its end, if it is: measurements then
/// fail because their systems are being torn down, and are not recorded.
pub fn stopped() -> Option<String> {
    STOPPED.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Seconds since [`init`].
pub fn elapsed() -> u64 {
    START
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .map_or(0, |t| t.elapsed().as_secs())
}

fn stop(why: String) {
    eprintln!("compare: {why}: stopping");
    *STOPPED.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
}

/// Makes the harness a subreaper, routes the stop signals to a thread
/// that finishes the run, arms the global time limit, and makes a panic
/// finish the run too. `report` is
/// printed after the cleanup, however the run ends.
pub fn init(limit: Duration, report: fn() -> String) {
    *START.lock().unwrap() = Some(Instant::now());
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use tokio::signal::unix::{signal, SignalKind};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("signal runtime");
        let name = rt.block_on(async {
            let mut int = signal(SignalKind::interrupt()).expect("SIGINT");
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM");
            let mut hup = signal(SignalKind::hangup()).expect("SIGHUP");
            let _ = tx.send(());
            tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
                _ = hup.recv() => "SIGHUP",
            }
        });
        stop(format!("stopped by {name}"));
        finish(130, report);
    });
    // The handlers are in place before anything is started.
    let _ = rx.recv();
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        stop("a panic".into());
        finish(101, report);
    }));
    let deadline = Instant::now() + limit;
    std::thread::spawn(move || {
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
        stop(format!(
            "the time limit ({} s) was reached",
            limit.as_secs()
        ));
        finish(124, report);
    });
}

/// Registers a teardown action for the end of the run.
pub fn on_exit(what: impl Into<String>, action: impl FnOnce() + Send + 'static) {
    ACTIONS
        .lock()
        .unwrap()
        .push((what.into(), Box::new(action)));
}

/// Runs the teardown actions now (those registered so far).
pub fn teardown() {
    loop {
        let next = ACTIONS.lock().unwrap().pop();
        let Some((what, action)) = next else { break };
        eprintln!("compare: cleanup: {what}");
        action();
    }
}

/// Cleans up, prints the report and exits with `code`. Only the first
/// caller gets through; any other blocks until the process exits.
pub fn finish(code: i32, report: fn() -> String) -> ! {
    let guard = FINISH.lock().unwrap_or_else(|e| e.into_inner());
    std::mem::forget(guard);
    teardown();
    let killed = kill_descendants();
    let left = descendants();
    eprintln!(
        "compare: cleanup: {killed} remaining descendant(s) killed, {} left",
        left.len()
    );
    println!("{}", report());
    std::process::exit(if left.is_empty() { code } else { code.max(1) });
}

/// The pids of every descendant of this process, parents first.
pub fn descendants() -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        if state == Some("Z") {
            // A zombie child: reaped below, not signalled.
            let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
            continue;
        }
        if let Some(ppid) = fields.next().and_then(|p| p.parse().ok()) {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut out = Vec::new();
    let mut queue = vec![me];
    while let Some(p) = queue.pop() {
        for &c in children.get(&p).into_iter().flatten() {
            out.push(c);
            queue.push(c);
        }
    }
    out
}

/// SIGKILLs every descendant and reaps them, for up to 10 s; returns how
/// many were found on the first pass.
fn kill_descendants() -> usize {
    let first = descendants().len();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pids = descendants();
        reap();
        if pids.is_empty() || Instant::now() > deadline {
            break;
        }
        for pid in pids {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    first
}

/// Reaps every child that has exited (orphans re-parented here included).
fn reap() {
    while let Ok(status) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
        if status == nix::sys::wait::WaitStatus::StillAlive {
            break;
        }
    }
}
