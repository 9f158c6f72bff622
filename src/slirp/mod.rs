//! `warren slirp4netns`: a drop-in for slirp4netns, on warren's network.
//!
//! # Theory of operation
//!
//! Rootless runners (podman's `--network slirp4netns`, rootlesskit's
//! `--net=slirp4netns`) run `slirp4netns [OPTION]... PID|PATH [TAPNAME]` to
//! give a namespace they made its network, and keep it running for as long
//! as the namespace needs it. This module is that program, entered as
//! `warren slirp4netns …` or as a binary named `slirp4netns` (a symlink
//! to `warren`, see [`invoked_as_slirp4netns`]), with slirp4netns 1.2.0's
//! command line ([`args`]) and API socket ([`api`]).
//!
//! Each instance ([`instance`]) is one warren network with one sandbox,
//! held by the shared daemon (the CLI's client starts it when needed):
//!
//! - the network `slirp4netns-<pid>` has slirp4netns's addressing: the
//!   `--cidr` (10.0.2.0/24 by default), the gateway at .2, DNS at .3 (the
//!   `dns-address` option: a second gateway address), the guest at .100,
//!   the MTU of `--mtu`; `host-loopback=gateway` makes .2 the host's
//!   127.0.0.1 unless `--disable-host-loopback`; `--disable-dns` is
//!   `dns=false`, `--outbound-addr` is `outbound-address`. Every instance
//!   uses the same subnet, so the network says `allow-overlap=true`;
//! - the sandbox is the target namespace attached with the TAP named
//!   TAPNAME, the guest address and MAC: configured like `slirp4netns -c`
//!   does with `-c`, else only created (the runner configures it:
//!   rootlesskit does), see [`crate::api::types::Configure`];
//! - `add_hostfwd`/`remove_hostfwd` are warren's published ports of that
//!   sandbox; `list_hostfwd` lists them with their slirp4netns ids;
//! - it ends when the exit fd hangs up or on SIGTERM/SIGINT/SIGHUP: the
//!   sandbox is detached and the network removed. The network is owned by
//!   the instance's pid (`owner-pid`), so a SIGKILLed instance leaks
//!   nothing either: the daemon removes the network and detaches the
//!   sandbox when that pid exits. A target given by PID is attached by
//!   pid, as `warren attach --pid`; one given by path is opened by the
//!   instance and attached as `/proc/<instance>/fd/N` (the runner's mount
//!   namespace may hold the path: podman's does).
//!
//! Not supported: IPv6 (`-6` is accepted with a warning: warren is
//! IPv4-only for now), `--target-type=bess`, DHCP in the guest network.
//! `--enable-sandbox` and `--enable-seccomp` are accepted and do nothing
//! here: the instance only talks to the daemon, which confines itself.

pub mod api;
pub mod args;
pub mod instance;
pub mod json;

use std::ffi::OsString;
use std::path::PathBuf;

use crate::daemon::paths::Paths;

/// Runs `slirp4netns ARGS…` (without the program name); `argv0` is what
/// `--help` calls the program. Returns the exit status.
pub fn main(argv0: &str, args: &[OsString], paths: &Paths) -> i32 {
    match args::parse(args) {
        args::Parsed::Help => {
            print!("{}", args::usage(argv0));
            0
        }
        args::Parsed::Version => {
            print!("{}", args::version());
            0
        }
        args::Parsed::Error(e) => {
            eprintln!("{e}");
            print!("{}", args::usage(argv0));
            1
        }
        args::Parsed::Run(opts) => instance::run(&opts, paths),
    }
}

/// Whether this process was started under the name `slirp4netns` (a
/// symlink or copy of `warren` by that name, as runners look it up).
pub fn invoked_as_slirp4netns() -> bool {
    std::env::args_os()
        .next()
        .map(PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n == "slirp4netns"))
        .unwrap_or(false)
}

/// The entry point when invoked as `slirp4netns`: the directories come from
/// `WARREN_STATE_DIR` and `WARREN_RUNTIME_DIR` (or the XDG defaults).
pub fn main_as_slirp4netns() -> i32 {
    let mut argv = std::env::args_os();
    let argv0 = argv
        .next()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_else(|| "slirp4netns".into());
    let rest: Vec<OsString> = argv.collect();
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let paths = Paths::resolve(env("WARREN_STATE_DIR"), env("WARREN_RUNTIME_DIR"));
    main(&argv0, &rest, &paths)
}
