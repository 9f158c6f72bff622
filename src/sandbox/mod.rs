//! Namespaces: making sandboxes and reaching into them.
//!
//! A sandbox is a set of namespaces holding one or more processes. Two short
//! programs, both hidden subcommands of the `warren` binary, do the work that
//! must happen in a fresh single-threaded process:
//!
//! - [`init`] (`warren __init`) is the first process of a sandbox made by
//!   `warren run`. It unshares user, network, mount and uts namespaces, maps
//!   the caller to root inside, tells the CLI it is ready, waits until the
//!   daemon has attached its interfaces, bind-mounts the generated
//!   `/etc/hosts` and `/etc/hostname`, and execs the user's command. Its pid
//!   is the sandbox's pid.
//! - [`helper`] (`warren __netns-helper`) is spawned by the daemon for each
//!   attach. It joins the sandbox's user namespace (where the daemon's uid is
//!   the owner, so it holds every capability there without any privilege on
//!   the host), then its network namespace, creates the TAP devices,
//!   configures them over netlink ([`netlink`]) and passes their fds back over
//!   SCM_RIGHTS. The TAP fds keep working in the daemon after it exits.
//!
//! `setns(CLONE_NEWUSER)` is refused to multi-threaded processes, which is
//! why neither of these can run inside the (multi-threaded) daemon. The
//! confined daemon does not start helpers itself either: its [`spawner`],
//! started before the confinement, does.

pub mod helper;
pub mod init;
pub mod mounts;
pub mod netlink;
pub mod pid1;
pub mod pty;
pub mod spawner;

use std::fmt;

/// A MAC address, printed and parsed as `02:42:ac:11:00:02`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// Docker's derivation: `02:42:` followed by the four bytes of the IPv4
    /// address, so a MAC is stable for a given address.
    pub fn from_ipv4(ip: std::net::Ipv4Addr) -> Mac {
        let o = ip.octets();
        Mac([0x02, 0x42, o[0], o[1], o[2], o[3]])
    }

    /// A unicast address (the group bit of the first octet is clear) that is
    /// not all zeros.
    pub fn is_valid_unicast(&self) -> bool {
        self.0[0] & 1 == 0 && self.0 != [0; 6]
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::str::FromStr for Mac {
    type Err = String;

    fn from_str(s: &str) -> Result<Mac, String> {
        let bad =
            || format!("invalid MAC address {s:?} (expected six hex pairs like 02:42:ac:11:00:02)");
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in out.iter_mut() {
            let p = parts.next().ok_or_else(bad)?;
            if p.len() != 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Mac(out))
    }
}

impl serde::Serialize for Mac {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Mac {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Mac, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trip_and_derivation() {
        let m = Mac::from_ipv4("172.17.0.2".parse().unwrap());
        assert_eq!(m.to_string(), "02:42:ac:11:00:02");
        assert_eq!("02:42:ac:11:00:02".parse::<Mac>().unwrap(), m);
        assert!(m.is_valid_unicast());
        assert!(!"01:00:5e:00:00:01"
            .parse::<Mac>()
            .unwrap()
            .is_valid_unicast());
        for bad in [
            "",
            "02:42",
            "02:42:ac:11:00:02:03",
            "zz:42:ac:11:00:02",
            "2:42:ac:11:0:2",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad}");
        }
    }
}
