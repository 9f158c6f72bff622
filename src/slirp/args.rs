//! slirp4netns's command line, as podman and rootlesskit write it.
//!
//! Parsed with clap in getopt_long's manner (`-e3`, `-e 3`, `--exit-fd=3`,
//! `--exit-fd 3`, options after the positionals, unambiguous prefixes of
//! long options, the last repeat wins), then checked with slirp4netns's own
//! rules and messages. `--help` prints slirp4netns 1.2.0's text, to the
//! tab, because clients detect features by searching it for flag names.
//! Anything wrong prints the message, then the usage, and exits 1, as
//! slirp4netns does.

use std::ffi::OsString;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use clap::Parser;

use crate::sandbox::Mac;

/// slirp4netns's default MTU.
pub const DEFAULT_MTU: u32 = 1500;
/// slirp4netns's default network.
pub const DEFAULT_CIDR: &str = "10.0.2.0/24";
/// The slirp4netns release whose interface this mode follows.
pub const SLIRP4NETNS_VERSION: &str = "1.2.0";

#[derive(Parser, Debug, Default)]
#[command(
    no_binary_name = true,
    disable_help_flag = true,
    disable_version_flag = true,
    infer_long_args = true,
    args_override_self = true
)]
struct Raw {
    #[arg(short = 'c', long = "configure")]
    configure: bool,
    #[arg(short = 'e', long = "exit-fd", allow_hyphen_values = true)]
    exit_fd: Option<String>,
    #[arg(short = 'r', long = "ready-fd", allow_hyphen_values = true)]
    ready_fd: Option<String>,
    #[arg(short = 'm', long = "mtu", allow_hyphen_values = true)]
    mtu: Option<String>,
    #[arg(short = '6', long = "enable-ipv6")]
    enable_ipv6: bool,
    #[arg(short = 'a', long = "api-socket")]
    api_socket: Option<PathBuf>,
    #[arg(long = "cidr")]
    cidr: Option<String>,
    #[arg(long = "disable-host-loopback")]
    disable_host_loopback: bool,
    #[arg(long = "no-host-loopback", hide = true)]
    no_host_loopback: bool,
    #[arg(long = "netns-type")]
    netns_type: Option<String>,
    #[arg(long = "userns-path")]
    userns_path: Option<PathBuf>,
    #[arg(long = "enable-sandbox")]
    enable_sandbox: bool,
    #[arg(long = "create-sandbox", hide = true)]
    create_sandbox: bool,
    #[arg(long = "enable-seccomp")]
    enable_seccomp: bool,
    #[arg(long = "outbound-addr")]
    outbound_addr: Option<String>,
    #[arg(long = "outbound-addr6")]
    outbound_addr6: Option<String>,
    #[arg(long = "disable-dns")]
    disable_dns: bool,
    #[arg(long = "macaddress")]
    macaddress: Option<String>,
    #[arg(long = "target-type")]
    target_type: Option<String>,
    #[arg(short = 'h', long = "help")]
    help: bool,
    #[arg(short = 'v', long = "version")]
    version: bool,
    positional: Vec<OsString>,
}

/// Whose network namespace to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `PID`: the namespaces of that process.
    Pid(i32),
    /// `--netns-type=path PATH`.
    Path(PathBuf),
}

/// A validated command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub target: Target,
    pub tapname: String,
    pub configure: bool,
    pub exit_fd: Option<i32>,
    pub ready_fd: Option<i32>,
    pub mtu: u32,
    pub enable_ipv6: bool,
    pub api_socket: Option<PathBuf>,
    pub network: ipnet::Ipv4Net,
    pub disable_host_loopback: bool,
    pub userns_path: Option<PathBuf>,
    pub enable_sandbox: bool,
    pub enable_seccomp: bool,
    pub outbound_addr: Option<Ipv4Addr>,
    pub outbound_addr6: Option<String>,
    pub disable_dns: bool,
    pub macaddress: Option<Mac>,
    /// Lines slirp4netns prints to stdout while parsing (`WARNING: …`).
    pub warnings: Vec<String>,
}

impl Options {
    /// The gateway, slirp's "vhost": network + 2.
    pub fn gateway(&self) -> Ipv4Addr {
        offset(self.network, 2)
    }

    /// The DNS address, slirp's "vnameserver": network + 3.
    pub fn dns(&self) -> Ipv4Addr {
        offset(self.network, 3)
    }

    /// The guest's address, slirp's "recommended_vguest": network + 100.
    pub fn guest(&self) -> Ipv4Addr {
        offset(self.network, 100)
    }
}

fn offset(net: ipnet::Ipv4Net, n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()).wrapping_add(n))
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Parsed {
    Run(Box<Options>),
    Help,
    Version,
    /// A usage error: the message for stderr (the usage follows on stdout).
    Error(String),
}

/// Parses `args` (without the program name).
pub fn parse(args: &[OsString]) -> Parsed {
    let raw = match Raw::try_parse_from(args) {
        Ok(r) => r,
        Err(e) => {
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            return Parsed::Error(first.trim_start_matches("error: ").to_string());
        }
    };
    if raw.help {
        return Parsed::Help;
    }
    if raw.version {
        return Parsed::Version;
    }
    match validate(raw) {
        Ok(o) => Parsed::Run(Box::new(o)),
        Err(e) => Parsed::Error(e),
    }
}

fn fd(value: &Option<String>, what: &str) -> Result<Option<i32>, String> {
    match value {
        None => Ok(None),
        Some(v) => match v.parse::<i32>() {
            Ok(n) if n >= 0 => Ok(Some(n)),
            _ => Err(format!("{what} must be a non-negative integer")),
        },
    }
}

fn validate(raw: Raw) -> Result<Options, String> {
    let mut warnings = Vec::new();
    if raw.no_host_loopback {
        warnings.push("WARNING: --no-host-loopback is deprecated and will be removed in future releases, please use --disable-host-loopback instead.".to_string());
    }
    if raw.create_sandbox {
        warnings.push("WARNING: --create-sandbox is deprecated and will be removed in future releases, please use --enable-sandbox instead.".to_string());
    }
    if raw.enable_seccomp {
        warnings.push("WARNING: Support for seccomp is experimental".to_string());
    }
    if raw.enable_ipv6 {
        warnings.push("WARNING: Support for IPv6 is experimental".to_string());
    }
    let exit_fd = fd(&raw.exit_fd, "exit-fd")?;
    let ready_fd = fd(&raw.ready_fd, "ready-fd")?;
    let mtu = match &raw.mtu {
        None => DEFAULT_MTU,
        Some(m) => match m.parse::<i64>() {
            Ok(n) if (1..=65521).contains(&n) => n as u32,
            _ => return Err("MTU must be a positive integer (< 65522)".into()),
        },
    };
    if let Some(p) = &raw.userns_path {
        if !p.exists() {
            return Err(format!("userns path doesn't exist: {}", p.display()));
        }
    }
    let macaddress = match &raw.macaddress {
        None => None,
        Some(_) if !raw.configure => {
            return Err(
                "--macaddr cannot be specified when --configure or -c is not specified".into(),
            )
        }
        Some(m) => {
            let mac: Mac = m
                .parse()
                .map_err(|_| format!("\"{m}\" is an invalid MAC address."))?;
            if !mac.is_valid_unicast() {
                return Err(format!(
                    "\"{m}\" is not a unicast MAC address (the first octet must be even)"
                ));
            }
            Some(mac)
        }
    };
    match raw.target_type.as_deref() {
        None | Some("netns") => {}
        Some("bess") => {
            return Err("--target-type=bess is not supported by warren's slirp4netns mode".into())
        }
        Some(_) => return Err("--target-type must be either \"netns\" or \"bess\"".into()),
    }
    if raw.positional.is_empty() {
        return Err("PID|PATH is missing".into());
    }
    if raw.positional.len() > 2 {
        // Not an error in slirp4netns either, "for preventing potential
        // compatibility issue".
        warnings.push("WARNING: too many arguments".to_string());
    }
    let first = raw.positional[0].clone();
    let target = match raw.netns_type.as_deref() {
        None | Some("pid") => match first.to_str().and_then(|s| s.parse::<i32>().ok()) {
            Some(pid) if pid > 0 => Target::Pid(pid),
            _ => return Err("PID must be a positive integer".into()),
        },
        // slirp4netns takes any other type as a path.
        Some(_) => {
            let path = PathBuf::from(first);
            if !path.exists() {
                return Err(format!(
                    "existing path expected when --netns-type=path: {}",
                    path.display()
                ));
            }
            Target::Path(path)
        }
    };
    let tapname = match raw.positional.get(1) {
        None => "tap0".to_string(),
        Some(t) => t
            .to_str()
            .filter(|t| {
                !t.is_empty()
                    && t.len() < crate::sys::tap::IFNAMSIZ
                    && t.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
            })
            .ok_or_else(|| {
                format!("invalid TAPNAME {t:?}: use up to 15 letters, digits, '_', '.' or '-'")
            })?
            .to_string(),
    };
    let network = parse_cidr(raw.cidr.as_deref().unwrap_or(DEFAULT_CIDR))?;
    let outbound_addr = match &raw.outbound_addr {
        None => None,
        Some(a) => {
            warnings.push("WARNING: Support for --outbound-addr is experimental".to_string());
            Some(match a.parse::<Ipv4Addr>() {
                Ok(ip) => ip,
                Err(_) => interface_ipv4(a).ok_or_else(|| {
                    "outbound-addr has to be valid ipv4 address or interface name.".to_string()
                })?,
            })
        }
    };
    if raw.outbound_addr6.is_some() {
        warnings.push("WARNING: Support for --outbound-addr6 is experimental".to_string());
    }
    Ok(Options {
        target,
        tapname,
        configure: raw.configure,
        exit_fd,
        ready_fd,
        mtu,
        enable_ipv6: raw.enable_ipv6,
        api_socket: raw.api_socket,
        network,
        disable_host_loopback: raw.disable_host_loopback || raw.no_host_loopback,
        userns_path: raw.userns_path,
        enable_sandbox: raw.enable_sandbox || raw.create_sandbox,
        enable_seccomp: raw.enable_seccomp,
        outbound_addr,
        outbound_addr6: raw.outbound_addr6,
        disable_dns: raw.disable_dns,
        macaddress,
        warnings,
    })
}

/// `--cidr`, with slirp4netns's rules: `A.B.C.D/N`, N from 1 to 25 (the
/// guest is network + 100), and no host bits set.
pub fn parse_cidr(cidr: &str) -> Result<ipnet::Ipv4Net, String> {
    let invalid = || format!("invalid CIDR: {cidr}");
    let (addr, prefix) = cidr.split_once('/').ok_or_else(invalid)?;
    let octets: Vec<&str> = addr.split('.').collect();
    let shape_ok = octets.len() == 4
        && octets
            .iter()
            .all(|o| (1..=3).contains(&o.len()) && o.bytes().all(|b| b.is_ascii_digit()))
        && (1..=2).contains(&prefix.len())
        && prefix.bytes().all(|b| b.is_ascii_digit());
    if !shape_ok {
        return Err(invalid());
    }
    let ip: Ipv4Addr = addr
        .parse()
        .map_err(|_| format!("invalid network address: {addr}"))?;
    let prefix: u8 = prefix.parse().map_err(|_| invalid())?;
    if !(1..=25).contains(&prefix) {
        return Err("prefix length needs to be 1-25".into());
    }
    let net = ipnet::Ipv4Net::new(ip, prefix).map_err(|_| invalid())?;
    if net.network() != ip {
        return Err(
            "CIDR needs to be a network address like 10.0.2.0/24, not like 10.0.2.100/24".into(),
        );
    }
    Ok(net)
}

/// The first IPv4 address of interface `name` (`--outbound-addr=eth0`).
fn interface_ipv4(name: &str) -> Option<Ipv4Addr> {
    nix::ifaddrs::getifaddrs().ok()?.find_map(|ifa| {
        if ifa.interface_name != name {
            return None;
        }
        let sin = ifa.address?.as_sockaddr_in().copied()?;
        Some(sin.ip())
    })
}

/// slirp4netns 1.2.0's `--help`, with `argv0` where it prints its own
/// name. Kept byte for byte (the tabs included): podman and rootlesskit
/// look for flag names in it.
pub fn usage(argv0: &str) -> String {
    format!(
        "Usage: {argv0} [OPTION]... PID|PATH [TAPNAME]\n\
User-mode networking for unprivileged network namespaces.\n\
\n\
-c, --configure          bring up the interface\n\
-e, --exit-fd=FD         specify the FD for terminating slirp4netns\n\
-r, --ready-fd=FD        specify the FD to write to when the network is configured\n\
-m, --mtu=MTU            specify MTU (default={DEFAULT_MTU}, max=65521)\n\
-6, --enable-ipv6        enable IPv6 (experimental)\n\
-a, --api-socket=PATH    specify API socket path\n\
--cidr=CIDR              specify network address CIDR (default={DEFAULT_CIDR})\n\
--disable-host-loopback  prohibit connecting to 127.0.0.1:* on the host namespace\n\
--netns-type=TYPE \t specify network namespace type ([path|pid], default=pid)\n\
--userns-path=PATH\t specify user namespace path\n\
--enable-sandbox         create a new mount namespace (and drop all caps except CAP_NET_BIND_SERVICE if running as the root)\n\
--enable-seccomp         enable seccomp to limit syscalls (experimental)\n\
--outbound-addr=IPv4     sets outbound ipv4 address to bound to (experimental)\n\
--outbound-addr6=IPv6    sets outbound ipv6 address to bound to (experimental)\n\
--disable-dns            disables 10.0.2.3 (or configured internal ip) to host dns redirect (experimental)\n\
--macaddress=MAC         specify the MAC address of the TAP (only valid with -c)\n\
--target-type=TYPE       specify the target type ([netns|bess], default=netns)\n\
-h, --help               show this help and exit\n\
-v, --version            show version and exit\n"
    )
}

/// `--version`: slirp4netns's machine-readable lines (the version whose
/// interface this follows), and warren's own.
pub fn version() -> String {
    format!(
        "slirp4netns version {SLIRP4NETNS_VERSION}\n\
commit: none (warren {warren} slirp4netns-compatible mode)\n\
libslirp: none (warren {warren})\n\
SLIRP_CONFIG_VERSION_MAX: 4\n",
        warren = env!("CARGO_PKG_VERSION")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Options {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        match parse(&args) {
            Parsed::Run(o) => *o,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    fn error(args: &[&str]) -> String {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        match parse(&args) {
            Parsed::Error(e) => e,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn rootlesskit_and_podman_command_lines() {
        // rootlesskit 1.1.0's parent driver.
        let o = run(&[
            "--mtu",
            "65520",
            "-r",
            "3",
            "--disable-host-loopback",
            "--cidr",
            "10.0.3.0/24",
            "--api-socket",
            "/tmp/x.sock",
            "--enable-sandbox",
            "--enable-seccomp",
            "--enable-ipv6",
            "1234",
            "tap0",
        ]);
        assert_eq!(o.target, Target::Pid(1234));
        assert_eq!((o.mtu, o.ready_fd, o.exit_fd), (65520, Some(3), None));
        assert!(o.disable_host_loopback && o.enable_ipv6 && !o.configure);
        assert_eq!(o.gateway(), Ipv4Addr::new(10, 0, 3, 2));
        assert_eq!(o.dns(), Ipv4Addr::new(10, 0, 3, 3));
        assert_eq!(o.guest(), Ipv4Addr::new(10, 0, 3, 100));
        // podman's, with an existing path.
        let o = run(&[
            "--disable-host-loopback",
            "--mtu=65520",
            "--enable-sandbox",
            "--enable-seccomp",
            "-c",
            "-e",
            "3",
            "-r",
            "4",
            "--netns-type=path",
            "/proc/self/ns/net",
            "tap0",
        ]);
        assert_eq!(o.target, Target::Path("/proc/self/ns/net".into()));
        assert_eq!((o.exit_fd, o.ready_fd), (Some(3), Some(4)));
        assert!(o.configure);
        // getopt's other spellings: glued values, prefixes, options last,
        // the default TAP name and network.
        let o = run(&["-e3", "-cr4", "77", "--conf", "--mt", "1400"]);
        assert_eq!((o.exit_fd, o.ready_fd, o.mtu), (Some(3), Some(4), 1400));
        assert_eq!(
            (o.tapname.as_str(), o.target.clone()),
            ("tap0", Target::Pid(77))
        );
        assert_eq!(o.guest(), Ipv4Addr::new(10, 0, 2, 100));
        assert_eq!(o.mtu, 1400);
        // Ambiguous prefixes are refused, as getopt_long does.
        assert!(!error(&["--m", "1400", "1"]).is_empty());
    }

    #[test]
    fn errors_say_what_slirp4netns_says() {
        assert_eq!(
            error(&["-e", "x", "1", "tap0"]),
            "exit-fd must be a non-negative integer"
        );
        assert!(error(&["-r", "-1", "1"]).contains("ready-fd"));
        assert_eq!(
            error(&["-m", "70000", "1"]),
            "MTU must be a positive integer (< 65522)"
        );
        assert_eq!(error(&["0", "tap0"]), "PID must be a positive integer");
        assert!(
            error(&["--netns-type=path", "/nonexistent/x"]).starts_with("existing path expected")
        );
        assert_eq!(
            error(&["--macaddress", "02:00:00:00:00:01", "1"]),
            "--macaddr cannot be specified when --configure or -c is not specified"
        );
        assert_eq!(
            error(&["--cidr", "10.0.2.0/26", "1"]),
            "prefix length needs to be 1-25"
        );
        assert!(error(&["--cidr", "10.0.2.100/24", "1"]).starts_with("CIDR needs to be"));
        assert_eq!(
            error(&["--cidr", "10.0.2/24", "1"]),
            "invalid CIDR: 10.0.2/24"
        );
        assert!(error(&["--target-type=bess", "/x"]).contains("not supported"));
        assert!(!error(&["--bogus", "1"]).is_empty());
        assert!(!error(&[]).is_empty());
    }

    #[test]
    fn help_and_version_win() {
        let args: Vec<OsString> = ["1", "--help"].iter().map(OsString::from).collect();
        assert!(matches!(parse(&args), Parsed::Help));
        let args: Vec<OsString> = ["-v"].iter().map(OsString::from).collect();
        assert!(matches!(parse(&args), Parsed::Version));
        assert!(usage("slirp4netns").contains("--netns-type=TYPE \t specify"));
        assert!(version().starts_with("slirp4netns version 1.2.0\n"));
    }
}
