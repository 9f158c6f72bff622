//! Docker `run` options that warren refuses by name.
//!
//! A Docker user types `-v`, `--privileged` or `--memory` out of habit. An
//! option warren does not take must never be mistaken for the command
//! (`cannot run "--rm"`) or silently ignored: each is declared here, hidden
//! from `--help`, and [`Refused::check`] turns the first one given into an
//! error that names it and says why, which `run` reports with Docker's
//! status for its own errors, 125.

use anyhow::{bail, Result};

/// Why a family of options means nothing here.
const NO_IMAGES: &str = "warren has no images: the sandbox sees the host's filesystem \
                         (use --read-only and --writable to limit what it may change)";
const NO_PRIVILEGE: &str = "the sandbox's root is your own user, in a user namespace of its \
                            own; warren grants no other identity or privilege";
const NO_LIMITS: &str = "warren sets no resource limits; run it under \
                         `systemd-run --user --scope -p MemoryMax=… -p CPUQuota=…` for that";
const NOT_YET: &str = "not supported yet (issue 18)";

#[derive(clap::Args, Debug, Default)]
pub struct Refused {
    #[arg(short = 'v', long = "volume", hide = true)]
    volume: Vec<String>,
    #[arg(long, hide = true)]
    mount: Vec<String>,
    #[arg(long = "volumes-from", hide = true)]
    volumes_from: Vec<String>,
    #[arg(long, hide = true)]
    tmpfs: Vec<String>,
    #[arg(long, hide = true)]
    entrypoint: Option<String>,
    #[arg(long, hide = true)]
    pull: Option<String>,
    #[arg(long, hide = true)]
    platform: Option<String>,
    #[arg(long, hide = true)]
    privileged: bool,
    #[arg(long = "cap-add", hide = true)]
    cap_add: Vec<String>,
    #[arg(long = "cap-drop", hide = true)]
    cap_drop: Vec<String>,
    #[arg(long = "security-opt", hide = true)]
    security_opt: Vec<String>,
    #[arg(long, hide = true)]
    device: Vec<String>,
    #[arg(short = 'u', long, hide = true)]
    user: Option<String>,
    #[arg(long = "group-add", hide = true)]
    group_add: Vec<String>,
    #[arg(long, hide = true)]
    userns: Option<String>,
    #[arg(short = 'm', long, hide = true)]
    memory: Option<String>,
    #[arg(long = "memory-swap", hide = true)]
    memory_swap: Option<String>,
    #[arg(long, hide = true)]
    cpus: Option<String>,
    #[arg(short = 'c', long = "cpu-shares", hide = true)]
    cpu_shares: Option<String>,
    #[arg(long = "pids-limit", hide = true)]
    pids_limit: Option<String>,
    #[arg(long, hide = true)]
    ulimit: Vec<String>,
    #[arg(long = "shm-size", hide = true)]
    shm_size: Option<String>,
    #[arg(long, hide = true)]
    gpus: Option<String>,
    #[arg(long, hide = true)]
    restart: Option<String>,
    #[arg(long, hide = true)]
    pid: Option<String>,
    #[arg(long, hide = true)]
    ipc: Option<String>,
    #[arg(long, hide = true)]
    uts: Option<String>,
    #[arg(long, hide = true)]
    sysctl: Vec<String>,
    #[arg(long = "log-driver", hide = true)]
    log_driver: Option<String>,
    #[arg(long = "log-opt", hide = true)]
    log_opt: Vec<String>,
    #[arg(long, hide = true)]
    cidfile: Option<String>,
    #[arg(long = "ip6", hide = true)]
    ip6: Option<String>,
}

impl Refused {
    /// The first refused option given, as an error naming it.
    pub fn check(&self) -> Result<()> {
        let given: [(bool, &str, &str); 32] = [
            (!self.volume.is_empty(), "-v/--volume", NO_IMAGES),
            (!self.mount.is_empty(), "--mount", NO_IMAGES),
            (!self.volumes_from.is_empty(), "--volumes-from", NO_IMAGES),
            (!self.tmpfs.is_empty(), "--tmpfs", NO_IMAGES),
            (self.entrypoint.is_some(), "--entrypoint", NO_IMAGES),
            (self.pull.is_some(), "--pull", NO_IMAGES),
            (self.platform.is_some(), "--platform", NO_IMAGES),
            (self.privileged, "--privileged", NO_PRIVILEGE),
            (!self.cap_add.is_empty(), "--cap-add", NO_PRIVILEGE),
            (!self.cap_drop.is_empty(), "--cap-drop", NO_PRIVILEGE),
            (!self.security_opt.is_empty(), "--security-opt", NO_PRIVILEGE),
            (!self.device.is_empty(), "--device", NO_PRIVILEGE),
            (self.user.is_some(), "-u/--user", NO_PRIVILEGE),
            (!self.group_add.is_empty(), "--group-add", NO_PRIVILEGE),
            (self.userns.is_some(), "--userns", NO_PRIVILEGE),
            (self.memory.is_some(), "-m/--memory", NO_LIMITS),
            (self.memory_swap.is_some(), "--memory-swap", NO_LIMITS),
            (self.cpus.is_some(), "--cpus", NO_LIMITS),
            (self.cpu_shares.is_some(), "-c/--cpu-shares", NO_LIMITS),
            (self.pids_limit.is_some(), "--pids-limit", NO_LIMITS),
            (!self.ulimit.is_empty(), "--ulimit", NO_LIMITS),
            (self.shm_size.is_some(), "--shm-size", NO_LIMITS),
            (self.gpus.is_some(), "--gpus", NO_PRIVILEGE),
            (
                self.restart.is_some(),
                "--restart",
                "warren has no restart policies; a supervisor such as `systemd-run --user` can restart `warren run`",
            ),
            (
                self.pid.is_some(),
                "--pid",
                "every sandbox has a PID namespace of its own",
            ),
            (self.ipc.is_some(), "--ipc", NOT_YET),
            (self.uts.is_some(), "--uts", NOT_YET),
            (!self.sysctl.is_empty(), "--sysctl", NOT_YET),
            (
                self.log_driver.is_some(),
                "--log-driver",
                "`run -d` keeps the output in a file; read it with `warren logs`",
            ),
            (!self.log_opt.is_empty(), "--log-opt", "`run -d` keeps the output in a file"),
            (self.cidfile.is_some(), "--cidfile", "`run -d` prints the id"),
            (self.ip6.is_some(), "--ip6", "warren is IPv4-only for now (issue 21)"),
        ];
        if let Some((_, name, why)) = given.iter().find(|(set, _, _)| *set) {
            bail!("warren run does not take {name}: {why}");
        }
        Ok(())
    }
}
