//! A sandbox's stdin, stdout and stderr, its terminal, its environment.
//!
//! No sandbox shares the caller's terminal: a process that holds a
//! terminal as its controlling terminal (or just an fd on it) can push
//! input into it with `TIOCSTI`, which the user's shell then runs, outside
//! every namespace, once the sandbox's command ends (the class of runc's
//! and bubblewrap's TIOCSTI CVEs). So every sandbox process runs in a
//! session of its own (see `sandbox::init`), and [`plan`] never hands it an
//! fd on a terminal of the caller's:
//!
//! - without `-t`, a stream that is a terminal becomes a pipe the CLI
//!   relays; one that is not (a file, a pipe) is passed as it is. stdin is
//!   `/dev/null` unless `-i`, as in Docker.
//! - with `-t`, the sandbox gets a pty of its own, allocated inside it
//!   (`sandbox::pty`): the slave is its stdout and stderr (and stdin with
//!   `-i`) and its controlling terminal; the CLI relays the master, puts the caller's terminal in raw
//!   mode while it does (so `^C` reaches the sandbox's shell as a
//!   character) and copies the window size on SIGWINCH.
//!
//! [`Relay::run`] is the CLI's loop until the command ends: it copies
//! output (poll on the readers), copies stdin on a thread of its own (a
//! blocked write never stalls the output), forwards SIGINT, SIGTERM,
//! SIGHUP and SIGQUIT to the sandbox's process (the sandbox is in another
//! session, so the terminal no longer signals it) and returns the exit
//! status. After the command exits, output still in flight is drained for
//! a short while; a background process that keeps the pipe open does not
//! hold the CLI.
//!
//! [`sandbox_env`] is what a container runtime passes: `PATH`, `HOME`,
//! `TERM` (`xterm` under `-t` when the caller has none) and the `-e` and
//! `--env-file` variables (later ones win), never the caller's whole environment (its tokens and agent
//! sockets are not the sandbox's).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios::{self, SetArg, Termios};

use crate::sys::{pidfd, process};

/// The PATH a sandbox gets when the caller has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How long output is still relayed after the command exited.
const DRAIN: Duration = Duration::from_millis(200);

/// `-i`, `-t` and `-e`, shared by `run` and `exec`.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct IoArgs {
    /// Keep stdin open (relayed to the sandbox)
    #[arg(long, short = 'i')]
    pub interactive: bool,
    /// Give the sandbox a pseudo-terminal of its own
    #[arg(long, short = 't')]
    pub tty: bool,
    /// Set an environment variable: KEY=VALUE, or KEY to pass the caller's value (repeatable)
    #[arg(long = "env", short = 'e', value_name = "KEY[=VALUE]")]
    pub env: Vec<String>,
    /// Read environment variables from a file: one KEY[=VALUE] per line, # comments
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<std::path::PathBuf>,
    /// The command's working directory [default: the caller's]
    #[arg(long, short = 'w', value_name = "DIR")]
    pub workdir: Option<std::path::PathBuf>,
}

/// The environment of a sandbox's command (module doc).
pub fn sandbox_env(io: &IoArgs) -> Result<Vec<(String, String)>> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let mut env = vec![(
        "PATH".to_string(),
        var("PATH").unwrap_or_else(|| DEFAULT_PATH.into()),
    )];
    if let Some(home) = var("HOME") {
        env.push(("HOME".into(), home));
    }
    match var("TERM") {
        Some(t) => env.push(("TERM".into(), t)),
        None if io.tty => env.push(("TERM".into(), "xterm".into())),
        None => {}
    }
    let mut given = Vec::new();
    for file in &io.env_file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("--env-file {}", file.display()))?;
        given.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from),
        );
    }
    given.extend(io.env.iter().cloned());
    for e in &given {
        let (k, v) = match e.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (e.clone(), std::env::var(e).ok()),
        };
        if k.is_empty() || k.contains('\0') || v.as_deref().is_some_and(|v| v.contains('\0')) {
            bail!("invalid --env {e:?}: expected KEY=VALUE or KEY");
        }
        env.retain(|(have, _)| *have != k);
        if let Some(v) = v {
            env.push((k, v));
        }
    }
    Ok(env)
}

/// What the CLI relays for one sandbox process.
pub struct Relay {
    /// Where our stdin goes (a pipe's write end or the pty master).
    stdin: Option<File>,
    /// Readers and the fd (1 or 2) each is copied to.
    outputs: Vec<(File, i32)>,
    /// The pty master, for window sizes.
    master: Option<OwnedFd>,
    /// Our terminal's settings before raw mode, restored on drop.
    restore: Option<Termios>,
    /// `-i` with `-t`: relay stdin to the pty once it is there.
    interactive: bool,
}

fn is_tty(fd: i32) -> bool {
    // SAFETY-free: `isatty` on our own standard fds through nix.
    nix::unistd::isatty(fd).unwrap_or(false)
}

fn pipe() -> Result<(File, File)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("pipe")?;
    Ok((File::from(r), File::from(w)))
}

/// The child's three streams, what to relay, and whether the child's
/// stdout is a pty it must take as its controlling terminal.
pub fn plan(io: &IoArgs) -> Result<([Stdio; 3], Relay, bool)> {
    let mut relay = Relay {
        stdin: None,
        outputs: Vec::new(),
        master: None,
        restore: None,
        interactive: false,
    };
    if io.tty {
        // The sandbox allocates the pty itself and its master comes back
        // later ([`Relay::attach_pty`]); until then it has nothing of ours
        // but a pipe for the errors of its set-up.
        relay.interactive = io.interactive;
        let (r, w) = pipe()?;
        relay.outputs.push((r, 2));
        return Ok(([Stdio::null(), Stdio::null(), Stdio::from(w)], relay, true));
    }
    let stdin = if !io.interactive {
        Stdio::null()
    } else if is_tty(0) {
        let (r, w) = pipe()?;
        relay.stdin = Some(w);
        Stdio::from(r)
    } else {
        Stdio::inherit()
    };
    let mut out = |fd: i32| -> Result<Stdio> {
        if !is_tty(fd) {
            return Ok(Stdio::inherit());
        }
        let (r, w) = pipe()?;
        relay.outputs.push((r, fd));
        Ok(Stdio::from(w))
    };
    let stdout = out(1)?;
    let stderr = out(2)?;
    Ok(([stdin, stdout, stderr], relay, false))
}

/// Signals the CLI forwards to the sandbox's process.
const FORWARDED: [Signal; 4] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

impl Relay {
    /// Relays the sandbox's pty (`-t`): its output to our stdout, our
    /// stdin to it with `-i` (our terminal in raw mode meanwhile), and our
    /// window size onto it.
    pub fn attach_pty(&mut self, master: OwnedFd) -> Result<()> {
        let master = File::from(master);
        if let Some(ws) = our_window_size() {
            let _ = process::set_window_size(master.as_fd(), &ws);
        }
        if self.interactive {
            self.stdin = Some(master.try_clone()?);
            if is_tty(0) {
                let stdin = std::io::stdin();
                let saved = termios::tcgetattr(stdin.as_fd()).context("reading the terminal")?;
                let mut raw = saved.clone();
                termios::cfmakeraw(&mut raw);
                termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw)
                    .context("raw mode on the terminal")?;
                self.restore = Some(saved);
            }
        }
        self.outputs.push((master.try_clone()?, 1));
        self.master = Some(OwnedFd::from(master));
        Ok(())
    }

    /// Relays until `child` exits; signals go to `target` (the sandbox's
    /// process, whose pid the CLI opened as a pidfd). Call it from the
    /// CLI's only thread: it blocks the forwarded signals.
    pub fn run(mut self, child: &mut Child, target: &OwnedFd) -> Result<ExitStatus> {
        let mut mask = SigSet::empty();
        for s in FORWARDED {
            mask.add(s);
        }
        mask.add(Signal::SIGWINCH);
        mask.thread_block().context("blocking signals")?;
        let sigfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC).context("signalfd")?;
        let child_fd = pidfd::open(child.id() as i32).context("pidfd of the sandbox's init")?;
        if let Some(mut w) = self.stdin.take() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 16 * 1024];
                let mut input = std::io::stdin().lock();
                while let Ok(n) = input.read(&mut buf) {
                    if n == 0 || w.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
        let mut buf = vec![0u8; 64 * 1024];
        let mut status = None;
        let mut deadline: Option<Instant> = None;
        loop {
            if status.is_some() && self.outputs.is_empty() {
                break;
            }
            let timeout = match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    PollTimeout::try_from(left.as_millis().max(1) as i32)
                        .unwrap_or(PollTimeout::NONE)
                }
                None => PollTimeout::NONE,
            };
            let (sig_ready, child_ready, ready) = {
                let mut fds = vec![
                    PollFd::new(sigfd.as_fd(), PollFlags::POLLIN),
                    PollFd::new(child_fd.as_fd(), PollFlags::POLLIN),
                ];
                fds.extend(
                    self.outputs
                        .iter()
                        .map(|(r, _)| PollFd::new(r.as_fd(), PollFlags::POLLIN)),
                );
                match poll(&mut fds, timeout) {
                    Ok(_) => {}
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => bail!("poll: {e}"),
                }
                let any = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
                let ready: Vec<bool> = fds[2..].iter().map(any).collect();
                (any(&fds[0]), any(&fds[1]), ready)
            };
            if sig_ready {
                if let Ok(Some(info)) = sigfd.read_signal() {
                    self.signal(info.ssi_signo as i32, target);
                }
            }
            if child_ready && status.is_none() {
                status = Some(child.wait().context("waiting for the sandbox")?);
                deadline = Some(Instant::now() + DRAIN);
            }
            let mut done = Vec::new();
            for (i, (r, fd)) in self.outputs.iter_mut().enumerate() {
                if !ready[i] {
                    continue;
                }
                match r.read(&mut buf) {
                    Ok(0) | Err(_) => done.push(i),
                    Ok(n) => {
                        let written = if *fd == 2 {
                            let mut e = std::io::stderr().lock();
                            e.write_all(&buf[..n]).and_then(|()| e.flush())
                        } else {
                            let mut o = std::io::stdout().lock();
                            o.write_all(&buf[..n]).and_then(|()| o.flush())
                        };
                        if written.is_err() {
                            done.push(i);
                        }
                    }
                }
            }
            for i in done.into_iter().rev() {
                self.outputs.remove(i);
            }
        }
        match status {
            Some(s) => Ok(s),
            None => child.wait().context("waiting for the sandbox"),
        }
    }

    fn signal(&self, signo: i32, target: &OwnedFd) {
        if signo == Signal::SIGWINCH as i32 {
            if let (Some(master), Some(ws)) = (&self.master, our_window_size()) {
                let _ = process::set_window_size(master.as_fd(), &ws);
            }
            return;
        }
        let _ = pidfd::send_signal(target, signo);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(saved) = &self.restore {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, saved);
        }
    }
}

/// The window size of the caller's terminal, if it has one.
fn our_window_size() -> Option<process::Winsize> {
    process::window_size(std::io::stdout().as_fd())
        .or_else(|| process::window_size(std::io::stdin().as_fd()))
}

/// The exit status `warren` reports for a finished command: its code, or
/// 128+N for a signal.
pub fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}
