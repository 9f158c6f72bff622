//! Small programs the harness runs inside sandboxes and namespaces: the
//! benchmark binary itself, copied where the unprivileged user can run
//! it, called with a first argument starting with `__`.
//!
//! - `__echo ADDR PORT`: for each connection, reads one byte, answers one
//!   byte, closes (one connection at a time; a client that stalls for 5 s
//!   is dropped).
//! - `__connrate ADDR PORT SECS`: short connections for SECS seconds or
//!   [`CONNRATE_MAX`] connections, whichever ends first, one after the
//!   other (connect, one byte each way, close); prints the rate.
//!   sockperf measures round trips on one connection but has no
//!   connection-rate mode, and a client in Python would measure Python.
//! - `__probe ADDR PORT`: one echo exchange, retried for up to 15 s.
//! - `__ready`: waits until a non-loopback interface has an IPv4 address
//!   and prints the wall clock in nanoseconds: the moment a command in a
//!   new sandbox runs with its network ready.
//! - `__hold ADDR PORT N STOPFILE`: opens N connections, prints `held N`,
//!   keeps them idle until STOPFILE exists (at most 120 s).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Runs the helper named by `args[1]`, if it is one; returns its exit
/// code.
pub fn run(args: &[String]) -> Option<i32> {
    let name = args.get(1)?.strip_prefix("__")?;
    let arg = |i: usize| args.get(i + 2).map(String::as_str).unwrap_or("");
    let num = |i: usize| arg(i).parse::<u64>().unwrap_or(0);
    let result = match name {
        "echo" => echo(arg(0), num(1) as u16),
        "connrate" => connrate(arg(0), num(1) as u16, num(2)),
        "probe" => probe(arg(0), num(1) as u16),
        "ready" => ready(),
        "hold" => hold(arg(0), num(1) as u16, num(2) as usize, arg(3)),
        _ => Err(format!("unknown helper {name}")),
    };
    Some(match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("helper {name}: {e}");
            1
        }
    })
}

fn echo(addr: &str, port: u16) -> Result<(), String> {
    let listener = TcpListener::bind((addr, port)).map_err(|e| e.to_string())?;
    for conn in listener.incoming() {
        let Ok(mut c) = conn else { continue };
        let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
        let mut b = [0u8; 1];
        if c.read_exact(&mut b).is_ok() {
            let _ = c.write_all(b"y");
        }
    }
    Ok(())
}

/// One connection: connect, one byte each way, close.
fn exchange(addr: &str, port: u16) -> Result<(), String> {
    let mut s = TcpStream::connect((addr, port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"x").map_err(|e| e.to_string())?;
    let mut b = [0u8; 1];
    s.read_exact(&mut b).map_err(|e| e.to_string())
}

/// Most connections in one `__connrate` run. Each leaves a client port
/// in TIME_WAIT (or worse, with a peer that closes late): at 7,000/s, a
/// 3 s run would ask for ~21,000 of the ~14,000 ports `connect()` draws
/// from, and slirp4netns's runs failed with EAGAIN part-way.
const CONNRATE_MAX: u64 = 10_000;

fn connrate(addr: &str, port: u16, secs: u64) -> Result<(), String> {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(secs) && n < CONNRATE_MAX {
        exchange(addr, port).map_err(|e| format!("connection {n}: {e}"))?;
        n += 1;
    }
    println!("{:.1}", n as f64 / start.elapsed().as_secs_f64());
    Ok(())
}

fn probe(addr: &str, port: u16) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match exchange(addr, port) {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn ready() -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let up = nix::ifaddrs::getifaddrs()
            .map_err(|e| e.to_string())?
            .any(|i| {
                i.interface_name != "lo"
                    && i.address
                        .as_ref()
                        .is_some_and(|a| a.as_sockaddr_in().is_some())
            });
        if up {
            break;
        }
        if Instant::now() > deadline {
            return Err("no IPv4 address within 5 s".into());
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?;
    println!("{}", now.as_nanos());
    Ok(())
}

fn hold(addr: &str, port: u16, n: usize, stop: &str) -> Result<(), String> {
    let mut held = Vec::with_capacity(n);
    for i in 0..n {
        held.push(TcpStream::connect((addr, port)).map_err(|e| format!("connection {i}: {e}"))?);
    }
    println!("held {}", held.len());
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !std::path::Path::new(stop).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}
