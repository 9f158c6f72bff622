//! The slirp4netns API as `warren slirp4netns` serves it: the JSON reader
//! and the request handler, on hostile bytes.
//!
//! - The reader never panics, and agrees with serde_json wherever the two
//!   grammars agree: a document serde_json reads whole (no duplicate keys,
//!   no `\u0000` in it, no number like `0e1` that parson refuses) must read
//!   the same here.
//! - A session of requests (the input split at 0xfe bytes) against one
//!   table gets only slirp4netns's reply shapes, valid JSON every time,
//!   and never holds more than `MAX_FORWARDS` forwards.
#![no_main]

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use warren::slirp::api::{Api, Backend, HostFwd, FIXED_REPLIES, MAX_FORWARDS};
use warren::slirp::json::{self, Value};

/// Any JSON value, refusing duplicate object keys (parson does).
struct NoDup(serde_json::Value);

impl<'de> Deserialize<'de> for NoDup {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<NoDup, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = NoDup;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_bool<E>(self, b: bool) -> Result<NoDup, E> {
                Ok(NoDup(b.into()))
            }
            fn visit_i64<E>(self, n: i64) -> Result<NoDup, E> {
                Ok(NoDup(n.into()))
            }
            fn visit_u64<E>(self, n: u64) -> Result<NoDup, E> {
                Ok(NoDup(n.into()))
            }
            fn visit_f64<E>(self, n: f64) -> Result<NoDup, E> {
                Ok(NoDup(
                    serde_json::Number::from_f64(n).map_or(serde_json::Value::Null, Into::into),
                ))
            }
            fn visit_str<E>(self, s: &str) -> Result<NoDup, E> {
                Ok(NoDup(s.into()))
            }
            fn visit_unit<E>(self) -> Result<NoDup, E> {
                Ok(NoDup(serde_json::Value::Null))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<NoDup, A::Error> {
                let mut v = Vec::new();
                while let Some(NoDup(x)) = a.next_element()? {
                    v.push(x);
                }
                Ok(NoDup(v.into()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<NoDup, A::Error> {
                let mut m = serde_json::Map::new();
                while let Some((k, NoDup(x))) = a.next_entry::<String, NoDup>()? {
                    if m.insert(k, x).is_some() {
                        return Err(serde::de::Error::custom("duplicate key"));
                    }
                }
                Ok(NoDup(m.into()))
            }
        }
        d.deserialize_any(V)
    }
}

fn same(ours: &Value, theirs: &serde_json::Value) -> bool {
    match (ours, theirs) {
        (Value::Null, serde_json::Value::Null) => true,
        (Value::Bool(a), serde_json::Value::Bool(b)) => a == b,
        (Value::Number(a), serde_json::Value::Number(b)) => b
            .as_f64()
            .is_some_and(|b| a == &b || (a - b).abs() <= a.abs() * 1e-15),
        (Value::String(a), serde_json::Value::String(b)) => a == b.as_bytes(),
        (Value::Array(a), serde_json::Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y))
        }
        (Value::Object(a), serde_json::Value::Object(b)) => {
            a.len() == b.len()
                && a.iter().all(|(k, v)| {
                    std::str::from_utf8(k)
                        .ok()
                        .and_then(|k| b.get(k))
                        .is_some_and(|w| same(v, w))
                })
        }
        _ => false,
    }
}

/// Numbers JSON allows and parson refuses: a leading zero before an
/// exponent (`0e1`, `-0E2`).
fn has_zero_exponent(data: &[u8]) -> bool {
    data.windows(2).enumerate().any(|(i, w)| {
        w[0] == b'0'
            && (w[1] | 0x20) == b'e'
            && (i == 0 || !(data[i - 1].is_ascii_digit() || data[i - 1] == b'.'))
    })
}

/// A backend refusing host-port clashes, as the daemon's binds would.
#[derive(Default)]
struct Fake {
    live: BTreeMap<(bool, u16), Ipv4Addr>,
}

impl Backend for Fake {
    fn add(&mut self, fwd: &HostFwd) -> Result<(), String> {
        if self.live.contains_key(&(fwd.udp, fwd.host_port)) {
            return Err("in use".into());
        }
        self.live.insert((fwd.udp, fwd.host_port), fwd.host_addr);
        Ok(())
    }

    fn remove(&mut self, fwd: &HostFwd) -> Result<(), String> {
        self.live
            .remove(&(fwd.udp, fwd.host_port))
            .map(|_| ())
            .ok_or_else(|| "not there".into())
    }
}

fn check_reply(reply: &[u8]) {
    let text = std::str::from_utf8(reply).expect("replies are UTF-8");
    if FIXED_REPLIES.contains(&text) {
        return;
    }
    let v: serde_json::Value = serde_json::from_str(text).expect("replies are JSON");
    if let Some(id) = v.pointer("/return/id") {
        assert!(id.as_i64().is_some_and(|i| i >= 1), "{text}");
        return;
    }
    let entries = v["entries"].as_array().expect("a list");
    assert!(entries.len() <= MAX_FORWARDS);
    for e in entries {
        for field in [
            "id",
            "proto",
            "host_addr",
            "host_port",
            "guest_addr",
            "guest_port",
        ] {
            assert!(!e[field].is_null(), "{text}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let ours = json::parse(data);
    if !data.contains(&0) && !has_zero_exponent(data) && !data.windows(6).any(|w| w == b"\\u0000") {
        if let Ok(NoDup(theirs)) = serde_json::from_slice::<NoDup>(data) {
            let v = ours.as_ref().expect("serde_json reads it, so must we");
            assert!(same(v, &theirs), "{v:?} vs {theirs}");
        }
    }

    let mut api = Api::new(Ipv4Addr::new(10, 0, 2, 100));
    let mut backend = Fake::default();
    for request in data.split(|b| *b == 0xfe).take(64) {
        let reply = api.handle(request, &mut backend);
        check_reply(&reply);
        assert!(api.forwards().len() <= MAX_FORWARDS);
        assert_eq!(api.forwards().len(), backend.live.len());
    }
});
