//! `warren logs`, `stop`, `kill` and `wait`: Docker's lifecycle commands.
//!
//! `stop` and `kill` are requests to the daemon, which holds each
//! sandbox's pidfd (so a reused pid is never signalled) and signals the
//! sandbox's init, which passes the signal on to the command
//! (`sandbox::pid1`). `stop` sends SIGTERM and, after `-t` seconds,
//! SIGKILL, and returns once the sandbox has ended. `wait` polls the
//! sandbox until it has exited and prints its exit code. `logs` reads the
//! output `run -d` keeps under the runtime directory (a sandbox run in the
//! foreground wrote to its terminal, so it has none), following it with
//! `-f` until the sandbox exits.

use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::client::Client;
use crate::api::types::SandboxInspect;
use crate::daemon::paths::Paths;

#[derive(clap::Args, Debug)]
pub struct LogsArgs {
    /// Keep printing new output until the sandbox exits
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Only the last N lines ("all" for everything)
    #[arg(long, short = 'n', value_name = "N", default_value = "all")]
    pub tail: String,
    pub sandbox: String,
}

#[derive(clap::Args, Debug)]
pub struct StopArgs {
    /// Seconds to wait after SIGTERM before SIGKILL
    #[arg(long = "time", short = 't', default_value_t = 10, value_name = "SECS")]
    pub time: u64,
    #[arg(required = true)]
    pub sandboxes: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct KillArgs {
    /// The signal to send (name or number)
    #[arg(long, short = 's', default_value = "KILL")]
    pub signal: String,
    #[arg(required = true)]
    pub sandboxes: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct WaitArgs {
    #[arg(required = true)]
    pub sandboxes: Vec<String>,
}

/// How often `wait` and `logs -f` look again.
const POLL: Duration = Duration::from_millis(50);

pub fn stop(paths: &Paths, a: StopArgs) -> Result<i32> {
    let client = Client::connect(paths)?;
    each(&a.sandboxes, |s| {
        client.post::<_, serde_json::Value>(&format!("/v1/sandboxes/{s}/stop?t={}", a.time), &())
    })
}

pub fn kill(paths: &Paths, a: KillArgs) -> Result<i32> {
    let client = Client::connect(paths)?;
    each(&a.sandboxes, |s| {
        client.post::<_, serde_json::Value>(
            &format!("/v1/sandboxes/{s}/kill?signal={}", a.signal),
            &(),
        )
    })
}

/// Runs `f` for each sandbox, printing its name on success (as Docker)
/// and reporting failures; non-zero if any failed.
fn each(names: &[String], f: impl Fn(&str) -> Result<serde_json::Value>) -> Result<i32> {
    let mut status = 0;
    for s in names {
        match f(s) {
            Ok(_) => println!("{s}"),
            Err(e) => status = super::report(&e),
        }
    }
    Ok(status)
}

pub fn wait(paths: &Paths, a: WaitArgs) -> Result<i32> {
    let client = Client::connect(paths)?;
    let mut status = 0;
    for s in &a.sandboxes {
        match wait_one(&client, s) {
            Ok(code) => println!("{code}"),
            Err(e) => status = super::report(&e),
        }
    }
    Ok(status)
}

/// Waits until sandbox `s` has exited and its exit code is known.
fn wait_one(client: &Client, s: &str) -> Result<i32> {
    let path = format!("/v1/sandboxes/{s}");
    // The supervisor writes the code a moment after the daemon saw the end.
    let mut exited_for = 0;
    loop {
        let info: SandboxInspect = client.get(&path)?;
        if !info.state.running {
            if info.state.exit_code >= 0 {
                return Ok(info.state.exit_code);
            }
            exited_for += 1;
            if exited_for > 100 {
                bail!("sandbox {s} exited, but its exit code was not recorded");
            }
        }
        std::thread::sleep(POLL);
    }
}

pub fn logs(paths: &Paths, a: LogsArgs) -> Result<i32> {
    let client = Client::connect(paths)?;
    let path = format!("/v1/sandboxes/{}", a.sandbox);
    let info: SandboxInspect = client.get(&path)?;
    if info.log_path.is_empty() {
        bail!(
            "sandbox {} has no logs: only `warren run -d` keeps its output (a sandbox in the \
             foreground printed to its terminal)",
            a.sandbox
        );
    }
    let mut file = std::fs::File::open(&info.log_path)
        .with_context(|| format!("opening {}", info.log_path))?;
    let mut text = Vec::new();
    file.read_to_end(&mut text)?;
    let start = tail_start(&text, &a.tail)?;
    let mut out = std::io::stdout().lock();
    out.write_all(&text[start..])?;
    out.flush()?;
    if !a.follow {
        return Ok(0);
    }
    let mut pos = text.len() as u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let running = client
            .get::<SandboxInspect>(&path)
            .map(|i| i.state.running)
            .unwrap_or(false);
        file.seek(SeekFrom::Start(pos))?;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n])?;
            pos += n as u64;
        }
        out.flush()?;
        if !running {
            return Ok(0);
        }
        std::thread::sleep(POLL * 4);
    }
}

/// Where the last `tail` lines of `text` start (`all`: 0).
fn tail_start(text: &[u8], tail: &str) -> Result<usize> {
    if tail == "all" {
        return Ok(0);
    }
    let n: usize = tail
        .parse()
        .with_context(|| format!("--tail {tail:?}: give a number of lines or \"all\""))?;
    if n == 0 {
        return Ok(text.len());
    }
    // Skip a final newline: it ends the last line, it does not start one.
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    let mut seen = 0;
    for (i, b) in body.iter().enumerate().rev() {
        if *b == b'\n' {
            seen += 1;
            if seen == n {
                return Ok(i + 1);
            }
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::tail_start;

    #[test]
    fn tail_counts_lines_from_the_end() {
        let t = b"a\nb\nc\n";
        assert_eq!(&t[tail_start(t, "all").unwrap()..], b"a\nb\nc\n");
        assert_eq!(&t[tail_start(t, "1").unwrap()..], b"c\n");
        assert_eq!(&t[tail_start(t, "2").unwrap()..], b"b\nc\n");
        assert_eq!(&t[tail_start(t, "9").unwrap()..], b"a\nb\nc\n");
        assert_eq!(&t[tail_start(t, "0").unwrap()..], b"");
        assert_eq!(&b"x\ny"[tail_start(b"x\ny", "1").unwrap()..], b"y");
        assert!(tail_start(t, "many").is_err());
    }
}
