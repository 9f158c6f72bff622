//! The slirp4netns API: one JSON request in, one JSON reply out, with the
//! replies slirp4netns 1.2.0 writes, byte for byte.
//!
//! [`Api::handle`] is the pure core: it parses a request ([`super::json`]),
//! keeps the table of host forwards with slirp4netns's integer ids (from 1,
//! one per successful `add_hostfwd`, never reused), and asks a [`Backend`]
//! to publish or unpublish each port. The instance's backend maps them onto
//! warren's published ports (`POST /v1/sandboxes/{id}/ports`); the tests and
//! the fuzz target use fakes. No I/O, no clock here.
//!
//! Requests, as slirp4netns reads them:
//!
//! - `{"execute": "add_hostfwd", "arguments": {"proto": "tcp"|"udp",
//!   "host_addr": "0.0.0.0", "host_port": 8080, "guest_addr": "10.0.2.100",
//!   "guest_port": 80}}` → `{"return":{"id":N}}`. A missing or empty
//!   `host_addr` is 0.0.0.0, a missing `guest_addr` the guest's address.
//! - `{"execute": "list_hostfwd"}` → `{"entries":[{"id":N,"proto":…,
//!   "host_addr":…,"host_port":…,"guest_addr":…,"guest_port":…},…]}`
//!   (1.2.0 has no `return` wrapper here).
//! - `{"execute": "remove_hostfwd", "arguments": {"id": N}}` →
//!   `{"return":{}}`.
//! - Errors: `{"error":{"desc":"bad request: …"}}`, the same texts.
//!
//! Where slirp4netns 1.2.0 misbehaves we answer sensibly instead: a request
//! without `arguments.proto` (or whose `arguments` is not an object) crashes
//! it (a NULL `strcmp`); we answer `bad arguments.proto`. Ports outside
//! 1-65535 (it truncates them, binding e.g. -5 as 65531, or 1e30 as any
//! port) are `bad arguments.host_port` / `guest_port`. A forward to another
//! address than the sandbox's (slirp can point one anywhere) is refused as
//! `slirp_add_hostfwd failed`: warren forwards to the sandbox only. The
//! table is bounded ([`MAX_FORWARDS`]).

use std::net::Ipv4Addr;

use super::json::{self, Value};

/// Largest request: slirp4netns reads into a 4096-byte buffer and refuses a
/// request that fills it.
pub const MAX_REQUEST: usize = 4096;

/// Most host forwards one instance keeps.
pub const MAX_FORWARDS: usize = 1024;

/// One host forward, as slirp4netns lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFwd {
    pub id: i32,
    pub udp: bool,
    pub host_addr: Ipv4Addr,
    pub host_port: u16,
    pub guest_addr: Ipv4Addr,
    pub guest_port: u16,
}

/// Where forwards are really made.
pub trait Backend {
    /// Publishes `fwd`; the error is logged, the client sees slirp's text.
    fn add(&mut self, fwd: &HostFwd) -> Result<(), String>;
    /// Stops publishing `fwd` (it was added before).
    fn remove(&mut self, fwd: &HostFwd) -> Result<(), String>;
}

/// The API's state: the forwards and the next id.
#[derive(Debug)]
pub struct Api {
    guest: Ipv4Addr,
    forwards: Vec<HostFwd>,
    next_id: i32,
}

const ERR_TOO_LARGE: &str = r#"{"error":{"desc":"bad request: too large message"}}"#;
const ERR_PARSE: &str = r#"{"error":{"desc":"bad request: cannot parse JSON"}}"#;
const ERR_OBJECT: &str = r#"{"error":{"desc":"bad request: json_object() failed"}}"#;
const ERR_NO_EXECUTE: &str = r#"{"error":{"desc":"bad request: no execute found"}}"#;
const ERR_UNKNOWN: &str = r#"{"error":{"desc":"bad request: unknown execute"}}"#;
const ERR_PROTO: &str = r#"{"error":{"desc":"bad request: add_hostfwd: bad arguments.proto"}}"#;
const ERR_HOST_ADDR: &str =
    r#"{"error":{"desc":"bad request: add_hostfwd: bad arguments.host_addr"}}"#;
const ERR_HOST_PORT: &str =
    r#"{"error":{"desc":"bad request: add_hostfwd: bad arguments.host_port"}}"#;
const ERR_GUEST_ADDR: &str =
    r#"{"error":{"desc":"bad request: add_hostfwd: bad arguments.guest_addr"}}"#;
const ERR_GUEST_PORT: &str =
    r#"{"error":{"desc":"bad request: add_hostfwd: bad arguments.guest_port"}}"#;
const ERR_ADD_FAILED: &str =
    r#"{"error":{"desc":"bad request: add_hostfwd: slirp_add_hostfwd failed"}}"#;
const ERR_ID: &str = r#"{"error":{"desc":"bad request: remove_hostfwd: bad arguments.id"}}"#;
const ERR_REMOVE_FAILED: &str =
    r#"{"error":{"desc":"bad request: remove_hostfwd: slirp_remove_hostfwd failed"}}"#;
const OK_EMPTY: &str = r#"{"return":{}}"#;

/// Every reply shape [`Api::handle`] can give but the two with numbers
/// (`{"return":{"id":N}}` and the list), for tests and the fuzz target.
pub const FIXED_REPLIES: &[&str] = &[
    ERR_TOO_LARGE,
    ERR_PARSE,
    ERR_OBJECT,
    ERR_NO_EXECUTE,
    ERR_UNKNOWN,
    ERR_PROTO,
    ERR_HOST_ADDR,
    ERR_HOST_PORT,
    ERR_GUEST_ADDR,
    ERR_GUEST_PORT,
    ERR_ADD_FAILED,
    ERR_ID,
    ERR_REMOVE_FAILED,
    OK_EMPTY,
];

impl Api {
    /// An empty table; `guest` is the default `guest_addr` (slirp's
    /// "recommended" address, .100 of the network).
    pub fn new(guest: Ipv4Addr) -> Api {
        Api {
            guest,
            forwards: Vec::new(),
            next_id: 1,
        }
    }

    /// The forwards, oldest first.
    pub fn forwards(&self) -> &[HostFwd] {
        &self.forwards
    }

    /// Answers one request (the bytes a client sent, at most
    /// [`MAX_REQUEST`] of them are looked at).
    pub fn handle(&mut self, request: &[u8], backend: &mut dyn Backend) -> Vec<u8> {
        if request.len() >= MAX_REQUEST {
            return ERR_TOO_LARGE.into();
        }
        let Ok(value) = json::parse(request) else {
            return ERR_PARSE.into();
        };
        if !matches!(value, Value::Object(_)) {
            return ERR_OBJECT.into();
        }
        let Some(execute) = value.get("execute").and_then(Value::c_str) else {
            return ERR_NO_EXECUTE.into();
        };
        match execute {
            b"add_hostfwd" => self.add(&value, backend),
            b"list_hostfwd" => self.list(),
            b"remove_hostfwd" => self.remove(&value, backend),
            _ => ERR_UNKNOWN.into(),
        }
    }

    fn add(&mut self, req: &Value, backend: &mut dyn Backend) -> Vec<u8> {
        let udp = match req.dotget("arguments.proto").and_then(Value::c_str) {
            Some(b"udp") => true,
            Some(b"tcp") => false,
            _ => return ERR_PROTO.into(),
        };
        let host_addr = match req.dotget("arguments.host_addr").and_then(Value::c_str) {
            None | Some(b"") => Some(Ipv4Addr::UNSPECIFIED),
            Some(s) => inet_pton(s),
        };
        let Some(host_addr) = host_addr else {
            return ERR_HOST_ADDR.into();
        };
        let Some(host_port) = port(req.dotget("arguments.host_port")) else {
            return ERR_HOST_PORT.into();
        };
        let guest_addr = match req.dotget("arguments.guest_addr").and_then(Value::c_str) {
            None | Some(b"") => Some(self.guest),
            Some(s) => inet_pton(s),
        };
        let Some(guest_addr) = guest_addr else {
            return ERR_GUEST_ADDR.into();
        };
        let Some(guest_port) = port(req.dotget("arguments.guest_port")) else {
            return ERR_GUEST_PORT.into();
        };
        if self.forwards.len() >= MAX_FORWARDS || self.next_id == i32::MAX {
            return ERR_ADD_FAILED.into();
        }
        let fwd = HostFwd {
            id: self.next_id,
            udp,
            host_addr,
            host_port,
            guest_addr,
            guest_port,
        };
        if backend.add(&fwd).is_err() {
            return ERR_ADD_FAILED.into();
        }
        self.next_id += 1;
        let reply = format!(r#"{{"return":{{"id":{}}}}}"#, fwd.id);
        self.forwards.push(fwd);
        reply.into_bytes()
    }

    fn list(&self) -> Vec<u8> {
        let entries: Vec<String> = self
            .forwards
            .iter()
            .map(|f| {
                format!(
                    r#"{{"id":{},"proto":"{}","host_addr":"{}","host_port":{},"guest_addr":"{}","guest_port":{}}}"#,
                    f.id,
                    if f.udp { "udp" } else { "tcp" },
                    f.host_addr,
                    f.host_port,
                    f.guest_addr,
                    f.guest_port
                )
            })
            .collect();
        format!(r#"{{"entries":[{}]}}"#, entries.join(",")).into_bytes()
    }

    fn remove(&mut self, req: &Value, backend: &mut dyn Backend) -> Vec<u8> {
        let id = json::c_int(Value::number_or_zero(req.dotget("arguments.id")));
        let Some(pos) = self.forwards.iter().position(|f| f.id == id) else {
            return ERR_ID.into();
        };
        if backend.remove(&self.forwards[pos]).is_err() {
            return ERR_REMOVE_FAILED.into();
        }
        self.forwards.remove(pos);
        OK_EMPTY.into()
    }
}

/// A port from a JSON number as slirp reads it (`(int)` of the double; 0 or
/// anything missing is "bad"), limited to 1-65535 (see the module docs).
fn port(value: Option<&Value>) -> Option<u16> {
    let n = json::c_int(Value::number_or_zero(value));
    u16::try_from(n).ok().filter(|p| *p != 0)
}

/// `inet_pton(AF_INET, …)`: four decimal octets, no leading zeros.
fn inet_pton(s: &[u8]) -> Option<Ipv4Addr> {
    std::str::from_utf8(s).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backend that remembers, and refuses what it is told to.
    #[derive(Default)]
    struct Fake {
        live: Vec<HostFwd>,
        refuse: bool,
    }

    impl Backend for Fake {
        fn add(&mut self, fwd: &HostFwd) -> Result<(), String> {
            if self.refuse
                || self.live.iter().any(|f| {
                    f.udp == fwd.udp
                        && f.host_port == fwd.host_port
                        && (f.host_addr == fwd.host_addr
                            || f.host_addr.is_unspecified()
                            || fwd.host_addr.is_unspecified())
                })
            {
                return Err("in use".into());
            }
            self.live.push(fwd.clone());
            Ok(())
        }

        fn remove(&mut self, fwd: &HostFwd) -> Result<(), String> {
            self.live.retain(|f| f != fwd);
            Ok(())
        }
    }

    fn ask(api: &mut Api, be: &mut Fake, req: &str) -> String {
        String::from_utf8(api.handle(req.as_bytes(), be)).expect("utf-8")
    }

    /// The exchange recorded against /usr/bin/slirp4netns 1.2.0 (the
    /// integration test replays it against both, side by side).
    #[test]
    fn replies_as_slirp4netns_1_2_0() {
        let mut api = Api::new(Ipv4Addr::new(10, 0, 2, 100));
        let mut be = Fake::default();
        let mut t = |req: &str, want: &str| assert_eq!(ask(&mut api, &mut be, req), want, "{req}");
        t(r#"{"execute":"list_hostfwd"}"#, r#"{"entries":[]}"#);
        t(
            r#"{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"127.0.0.1","host_port":18080,"guest_addr":"10.0.2.100","guest_port":80}}"#,
            r#"{"return":{"id":1}}"#,
        );
        t(
            r#"{"execute":"add_hostfwd","arguments":{"proto":"udp","host_port":18081,"guest_port":53}}"#,
            r#"{"return":{"id":2}}"#,
        );
        t(
            r#"{"execute":"list_hostfwd"}"#,
            r#"{"entries":[{"id":1,"proto":"tcp","host_addr":"127.0.0.1","host_port":18080,"guest_addr":"10.0.2.100","guest_port":80},{"id":2,"proto":"udp","host_addr":"0.0.0.0","host_port":18081,"guest_addr":"10.0.2.100","guest_port":53}]}"#,
        );
        t(
            r#"{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":18080,"guest_port":81}}"#,
            ERR_ADD_FAILED,
        );
        t(
            r#"{"execute":"remove_hostfwd","arguments":{"id":1}}"#,
            OK_EMPTY,
        );
        t(
            r#"{"execute":"remove_hostfwd","arguments":{"id":1}}"#,
            ERR_ID,
        );
        t(r#"{"execute":"remove_hostfwd"}"#, ERR_ID);
        t(
            r#"{"execute":"remove_hostfwd","arguments":{"id":"2"}}"#,
            ERR_ID,
        );
        t("{bad", ERR_PARSE);
        t("", ERR_PARSE);
        t("[1]", ERR_OBJECT);
        t("null", ERR_OBJECT);
        t(r#"{"execute":5}"#, ERR_NO_EXECUTE);
        t(r#"{"execute":"foo"}"#, ERR_UNKNOWN);
        t(r#"{"execute":"LIST_HOSTFWD"}"#, ERR_UNKNOWN);
        t(
            r#"{"execute":"add_hostfwd","arguments":{"proto":"sctp"}}"#,
            ERR_PROTO,
        );
        t(
            r#"{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"x"}}"#,
            ERR_HOST_ADDR,
        );
        t(
            r#"{"execute":"add_hostfwd","arguments":{"proto":"tcp"}}"#,
            ERR_HOST_PORT,
        );
        t(
            r#"{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":"18091","guest_port":1}}"#,
            ERR_HOST_PORT,
        );
        t(
            r#"{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":18090}}"#,
            ERR_GUEST_PORT,
        );
        // Fractions are truncated, as C's (int) does; ids are not reused.
        t(
            r#"{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":18092.7,"guest_port":80.2,"host_addr":null}}"#,
            r#"{"return":{"id":3}}"#,
        );
        t(
            r#"{"execute":"remove_hostfwd","arguments":{"id":3.9}}"#,
            OK_EMPTY,
        );
        t(
            r#"{"execute":"list_hostfwd"}"#,
            r#"{"entries":[{"id":2,"proto":"udp","host_addr":"0.0.0.0","host_port":18081,"guest_addr":"10.0.2.100","guest_port":53}]}"#,
        );
    }

    #[test]
    fn where_slirp4netns_misbehaves_we_answer() {
        let mut api = Api::new(Ipv4Addr::new(10, 0, 2, 100));
        let mut be = Fake::default();
        let mut t = |req: &str, want: &str| assert_eq!(ask(&mut api, &mut be, req), want, "{req}");
        // It crashes on these two (NULL proto).
        t(r#"{"execute":"add_hostfwd","arguments":5}"#, ERR_PROTO);
        t(r#"{"execute":"add_hostfwd"}"#, ERR_PROTO);
        // It binds truncated ports for these.
        for p in ["-5", "70000", "1e30"] {
            t(
                &format!(
                    r#"{{"execute":"add_hostfwd","arguments":{{"proto":"tcp","host_port":{p},"guest_port":80}}}}"#
                ),
                ERR_HOST_PORT,
            );
            t(
                &format!(
                    r#"{{"execute":"add_hostfwd","arguments":{{"proto":"tcp","host_port":1,"guest_port":{p}}}}}"#
                ),
                ERR_GUEST_PORT,
            );
        }
        assert!(be.live.is_empty());
    }

    #[test]
    fn a_refused_add_takes_no_id_and_the_table_is_bounded() {
        let mut api = Api::new(Ipv4Addr::new(10, 0, 2, 100));
        let mut be = Fake {
            refuse: true,
            ..Fake::default()
        };
        let add = |port: u32| {
            format!(
                r#"{{"execute":"add_hostfwd","arguments":{{"proto":"tcp","host_port":{port},"guest_port":80}}}}"#
            )
        };
        assert_eq!(ask(&mut api, &mut be, &add(1)), ERR_ADD_FAILED);
        be.refuse = false;
        assert_eq!(ask(&mut api, &mut be, &add(1)), r#"{"return":{"id":1}}"#);
        for p in 2..=MAX_FORWARDS as u32 {
            assert!(ask(&mut api, &mut be, &add(p)).starts_with(r#"{"return""#));
        }
        assert_eq!(ask(&mut api, &mut be, &add(60000)), ERR_ADD_FAILED);
        assert_eq!(api.forwards().len(), MAX_FORWARDS);
        let big = format!(r#"{{"execute":"list_hostfwd","x":"{}"}}"#, "a".repeat(5000));
        assert_eq!(ask(&mut api, &mut be, &big), ERR_TOO_LARGE);
    }
}
