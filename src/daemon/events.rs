//! Lifecycle events: what `warren events` (and `GET /v1/events`) shows.
//!
//! # Theory of operation
//!
//! Where the daemon's state changes (a network is created or removed, a
//! sandbox starts, dies, is attached, detached or removed, an endpoint is
//! connected or disconnected, a port is published or unpublished),
//! [`Events::emit`] is called once. It stamps the event with the next
//! sequence number and the wall-clock time, keeps it in a ring of the
//! last [`RING`] events (the oldest dropped, and counted), and sends it to
//! the live subscribers, all under one small lock of its own (taken inside
//! the state lock, never the other way round), so sequence order, ring
//! order and live order are one order.
//!
//! A subscriber ([`Events::subscribe`]) gets, under the same lock, the
//! events of the ring since the time it asks for and a receiver of every
//! later event: nothing is missed between the two, and nothing is seen
//! twice. The live channel is a `tokio::sync::broadcast` of [`LIVE`]
//! events: a subscriber that falls behind (a client that does not read)
//! loses the oldest, never grows memory, and never slows the daemon;
//! what it lost is told to it as an `events-lost` record
//! ([`Event::lost`]), as is an asked-for look back that reaches past what
//! the ring still holds.
//!
//! Events have Docker's JSON shape (`Type`, `Action`, `Actor{ID,
//! Attributes}`, `scope`, `time`, `timeNano`) and, beside it, warren's
//! `seq` and `timestamp` (RFC 3339 with nanoseconds). Types are
//! `sandbox`, `network` and `port` (Docker's `container` is a sandbox
//! here); `warren` is the type of the stream's own records.
//!
//! [`Filter`] is Docker's `filters` query parameter (`{"type":["network"],
//! "event":["connect"]}`): values of one key are alternatives, keys must
//! all match; `warren` records always pass.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Events kept for look-backs (`--since`).
pub const RING: usize = 1024;
/// Events a live subscriber may be behind before it loses the oldest.
pub const LIVE: usize = 256;
/// Most filter values one subscription may give, and longest value.
pub const MAX_FILTER_VALUES: usize = 64;
const MAX_FILTER_LEN: usize = 256;

/// What an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Sandbox,
    Network,
    Port,
    /// The stream's own records (`events-lost`).
    Warren,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Sandbox => "sandbox",
            Kind::Network => "network",
            Kind::Port => "port",
            Kind::Warren => "warren",
        }
    }
}

/// What the event is about: Docker's `Actor`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Actor {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Attributes")]
    pub attributes: BTreeMap<String, String>,
}

/// One event, in Docker's shape plus `seq` and `timestamp`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    #[serde(rename = "Type")]
    pub kind: Kind,
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "Actor")]
    pub actor: Actor,
    pub scope: String,
    /// Seconds since the epoch.
    pub time: i64,
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
    /// RFC 3339, nanoseconds, UTC.
    pub timestamp: String,
    /// The daemon's sequence number (0 for the stream's own records).
    pub seq: u64,
}

impl Event {
    fn new(
        seq: u64,
        at: SystemTime,
        kind: Kind,
        action: &str,
        id: &str,
        attrs: &[(&str, &str)],
    ) -> Event {
        let nanos = nanos(at);
        Event {
            kind,
            action: action.to_string(),
            actor: Actor {
                id: id.to_string(),
                attributes: attrs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            },
            scope: "local".into(),
            time: nanos.div_euclid(1_000_000_000),
            time_nano: nanos,
            timestamp: humantime::format_rfc3339_nanos(at).to_string(),
            seq,
        }
    }

    /// The record that tells a subscriber it lost `count` events
    /// (`why`: `slow` for a reader behind the live stream, `ring` for a
    /// look back past the oldest event kept).
    pub fn lost(count: u64, why: &str) -> Event {
        let count = count.to_string();
        Event::new(
            0,
            SystemTime::now(),
            Kind::Warren,
            "events-lost",
            "",
            &[("count", &count), ("reason", why)],
        )
    }

    /// One line of the stream: compact JSON and a newline.
    pub fn line(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).unwrap_or_default();
        v.push(b'\n');
        v
    }
}

/// Now, in nanoseconds since the epoch.
pub fn now_nanos() -> i64 {
    nanos(SystemTime::now())
}

/// Nanoseconds since the epoch (negative before it, saturating).
fn nanos(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_nanos()).map_or(i64::MIN, |n| -n),
    }
}

/// The ring, the sequence and the live channel.
pub struct Events {
    inner: Mutex<Ring>,
    live: tokio::sync::broadcast::Sender<Arc<Event>>,
}

struct Ring {
    events: VecDeque<Arc<Event>>,
    next_seq: u64,
    /// Events dropped off the ring's end since the start.
    dropped: u64,
}

/// What a subscription starts with.
pub struct Subscription {
    /// The ring's events since the asked-for time, oldest first.
    pub backlog: Vec<Arc<Event>>,
    /// Events older than the ring that the look back would have shown
    /// some of (0 unless the ring dropped events after the asked time).
    pub dropped: u64,
    /// Every event after the backlog.
    pub live: tokio::sync::broadcast::Receiver<Arc<Event>>,
}

impl Default for Events {
    fn default() -> Self {
        Events::new()
    }
}

impl Events {
    pub fn new() -> Events {
        Events {
            inner: Mutex::new(Ring {
                events: VecDeque::with_capacity(RING),
                next_seq: 1,
                dropped: 0,
            }),
            live: tokio::sync::broadcast::channel(LIVE).0,
        }
    }

    /// Records an event now; see [`Events::emit_at`].
    pub fn emit(&self, kind: Kind, action: &str, id: &str, attrs: &[(&str, &str)]) {
        self.emit_at(SystemTime::now(), kind, action, id, attrs);
    }

    /// Records an event at `at`: into the ring, and to every subscriber.
    /// Never blocks on a subscriber.
    pub fn emit_at(
        &self,
        at: SystemTime,
        kind: Kind,
        action: &str,
        id: &str,
        attrs: &[(&str, &str)],
    ) {
        let mut ring = self.lock();
        let seq = ring.next_seq;
        ring.next_seq += 1;
        let event = Arc::new(Event::new(seq, at, kind, action, id, attrs));
        if ring.events.len() >= RING {
            ring.events.pop_front();
            ring.dropped += 1;
        }
        ring.events.push_back(event.clone());
        // No receiver is not an error: nobody is listening.
        let _ = self.live.send(event);
    }

    /// The ring's events at or after `since_nanos` (none when `None`),
    /// and every later event as it comes.
    pub fn subscribe(&self, since_nanos: Option<i64>) -> Subscription {
        let ring = self.lock();
        let live = self.live.subscribe();
        let Some(since) = since_nanos else {
            return Subscription {
                backlog: Vec::new(),
                dropped: 0,
                live,
            };
        };
        let backlog: Vec<Arc<Event>> = ring
            .events
            .iter()
            .filter(|e| e.time_nano >= since)
            .cloned()
            .collect();
        // The look back starts before what the ring holds, and the ring
        // has dropped events: some of those may have been in range.
        let reaches_past = ring.events.front().map_or(true, |e| e.time_nano > since);
        let dropped = if reaches_past { ring.dropped } else { 0 };
        Subscription {
            backlog,
            dropped,
            live,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        // A panic elsewhere never leaves the ring half-updated.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Docker's `filters` for events.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Filter {
    by_key: BTreeMap<String, Vec<String>>,
}

/// The keys [`Filter`] knows.
pub const FILTER_KEYS: [&str; 4] = ["type", "event", "sandbox", "network"];

impl Filter {
    /// Parses Docker's `filters` JSON: `{"key": ["value", …]}` (or the
    /// older `{"key": {"value": true}}`), bounded.
    pub fn parse(json: &str) -> Result<Filter, String> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Values {
            List(Vec<String>),
            Set(BTreeMap<String, bool>),
        }
        let raw: BTreeMap<String, Values> =
            serde_json::from_str(json).map_err(|e| format!("filters is not valid JSON: {e}"))?;
        let mut by_key = BTreeMap::new();
        let mut total = 0;
        for (key, values) in raw {
            if !FILTER_KEYS.contains(&key.as_str()) {
                return Err(format!(
                    "invalid filter {key:?} (filters here: {})",
                    FILTER_KEYS.join(", ")
                ));
            }
            let values: Vec<String> = match values {
                Values::List(v) => v,
                Values::Set(m) => m
                    .into_iter()
                    .filter(|(_, on)| *on)
                    .map(|(k, _)| k)
                    .collect(),
            };
            total += values.len();
            if total > MAX_FILTER_VALUES || values.iter().any(|v| v.len() > MAX_FILTER_LEN) {
                return Err(format!(
                    "too many or too long filter values (at most {MAX_FILTER_VALUES} of {MAX_FILTER_LEN} bytes)"
                ));
            }
            if !values.is_empty() {
                by_key.insert(key, values);
            }
        }
        Ok(Filter { by_key })
    }

    /// Whether `e` passes: for each key given, one of its values matches.
    pub fn matches(&self, e: &Event) -> bool {
        if e.kind == Kind::Warren {
            return true;
        }
        let attr = |k: &str| e.actor.attributes.get(k).map(String::as_str);
        self.by_key.iter().all(|(key, values)| {
            let any = |candidates: &[Option<&str>]| {
                values.iter().any(|v| {
                    candidates
                        .iter()
                        .flatten()
                        .any(|c| !c.is_empty() && (*c == v || (key_is_id(c, v))))
                })
            };
            match key.as_str() {
                "type" => values.iter().any(|v| v == e.kind.as_str()),
                "event" => values.contains(&e.action),
                "sandbox" => match e.kind {
                    Kind::Sandbox | Kind::Port => any(&[Some(&e.actor.id), attr("name")]),
                    Kind::Network => any(&[attr("container"), attr("sandbox")]),
                    Kind::Warren => true,
                },
                "network" => match e.kind {
                    Kind::Network => any(&[Some(&e.actor.id), attr("name")]),
                    Kind::Port => any(&[attr("network")]),
                    _ => false,
                },
                _ => false,
            }
        })
    }
}

/// Whether `value` names the id `candidate` by a prefix of at least 12
/// hex digits, as Docker's short ids do.
fn key_is_id(candidate: &str, value: &str) -> bool {
    value.len() >= 12
        && candidate.len() == 64
        && candidate.starts_with(value)
        && value.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Parses Docker's `since`/`until` query value: Unix time in seconds,
/// optionally with a fraction of up to nine digits (`1733340000.5`).
/// Returns nanoseconds since the epoch.
pub fn parse_unix_time(s: &str) -> Result<i64, String> {
    let bad = || {
        format!("invalid time {:?}: give Unix seconds, optionally with a fraction (1733340000.123456789)", truncate(s))
    };
    let (secs, frac) = match s.split_once('.') {
        Some((_, "")) => return Err(bad()),
        Some(parts) => parts,
        None => (s, ""),
    };
    if secs.is_empty()
        || secs.len() > 10
        || frac.len() > 9
        || !secs.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let secs: i64 = secs.parse().map_err(|_| bad())?;
    let frac: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().map_err(|_| bad())?
    };
    secs.checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(frac))
        .ok_or_else(bad)
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn ring_keeps_the_newest_in_order_and_counts_the_rest() {
        let ev = Events::new();
        for i in 0..(RING as u64 + 10) {
            ev.emit_at(at(1000 + i), Kind::Network, "create", "id", &[]);
        }
        let s = ev.subscribe(Some(0));
        assert_eq!(s.backlog.len(), RING);
        assert_eq!(s.backlog[0].seq, 11);
        assert!(s.backlog.windows(2).all(|w| w[0].seq + 1 == w[1].seq));
        assert_eq!(s.dropped, 10, "a look back past the ring says so");
        let recent = ev.subscribe(Some(nanos(at(1000 + RING as u64))));
        assert_eq!(recent.backlog.len(), 10);
        assert_eq!(recent.dropped, 0);
        assert!(ev.subscribe(None).backlog.is_empty());
    }

    #[test]
    fn live_subscribers_see_later_events_and_lag_is_bounded() {
        let ev = Events::new();
        ev.emit(Kind::Network, "create", "a", &[]);
        let mut s = ev.subscribe(None);
        ev.emit(Kind::Network, "destroy", "a", &[]);
        assert_eq!(s.live.try_recv().unwrap().action, "destroy");
        for _ in 0..(LIVE + 5) {
            ev.emit(Kind::Port, "publish", "b", &[]);
        }
        match s.live.try_recv() {
            Err(tokio::sync::broadcast::error::TryRecvError::Lagged(n)) => assert_eq!(n, 5),
            other => panic!("expected a lag, got {other:?}"),
        }
    }

    #[test]
    fn docker_shape() {
        let ev = Events::new();
        let t = UNIX_EPOCH + Duration::new(1_733_340_000, 123_456_789);
        ev.emit_at(
            t,
            Kind::Sandbox,
            "die",
            "abc",
            &[("name", "web"), ("exitCode", "3")],
        );
        let e = &ev.subscribe(Some(0)).backlog[0];
        let v: serde_json::Value = serde_json::from_slice(&e.line()).unwrap();
        assert_eq!(v["Type"], "sandbox");
        assert_eq!(v["Action"], "die");
        assert_eq!(v["Actor"]["ID"], "abc");
        assert_eq!(v["Actor"]["Attributes"]["exitCode"], "3");
        assert_eq!(v["time"], 1_733_340_000);
        assert_eq!(v["timeNano"], 1_733_340_000_123_456_789i64);
        assert_eq!(v["timestamp"], "2024-12-04T19:20:00.123456789Z");
        assert_eq!(v["seq"], 1);
    }

    #[test]
    fn filters() {
        let ev = Events::new();
        ev.emit(Kind::Sandbox, "start", &"a".repeat(64), &[("name", "web")]);
        ev.emit(
            Kind::Network,
            "connect",
            "n1",
            &[("name", "dev"), ("sandbox", "web")],
        );
        ev.emit(
            Kind::Port,
            "publish",
            "b",
            &[("name", "db"), ("network", "dev")],
        );
        let all = ev.subscribe(Some(0)).backlog;
        let pick = |json: &str| -> Vec<String> {
            let f = Filter::parse(json).unwrap();
            all.iter()
                .filter(|e| f.matches(e))
                .map(|e| e.action.clone())
                .collect()
        };
        assert_eq!(pick("{}").len(), 3);
        assert_eq!(pick(r#"{"type":["network"]}"#), ["connect"]);
        assert_eq!(pick(r#"{"type":{"port":true}}"#), ["publish"]);
        assert_eq!(
            pick(r#"{"event":["start","publish"]}"#),
            ["start", "publish"]
        );
        assert_eq!(pick(r#"{"sandbox":["web"]}"#), ["start", "connect"]);
        assert_eq!(pick(r#"{"sandbox":["aaaaaaaaaaaa"]}"#), ["start"]);
        assert_eq!(pick(r#"{"network":["dev"]}"#), ["connect", "publish"]);
        assert_eq!(pick(r#"{"network":["dev"],"type":["port"]}"#), ["publish"]);
        assert!(Filter::parse(r#"{"image":["x"]}"#).is_err());
        assert!(Filter::parse("[").is_err());
        let many = format!(r#"{{"event":[{}]}}"#, vec!["\"x\""; 65].join(","));
        assert!(Filter::parse(&many).is_err());
        assert!(Filter::default().matches(&Event::lost(1, "slow")));
    }

    #[test]
    fn unix_times() {
        assert_eq!(parse_unix_time("12").unwrap(), 12_000_000_000);
        assert_eq!(parse_unix_time("12.5").unwrap(), 12_500_000_000);
        assert_eq!(parse_unix_time("1.000000001").unwrap(), 1_000_000_001);
        for bad in [
            "",
            ".",
            "-1",
            "1e9",
            "abc",
            "1.2.3",
            "1.",
            "99999999999",
            "1.0000000001",
            "+5",
            " 1",
            "NaN",
        ] {
            assert!(parse_unix_time(bad).is_err(), "{bad:?}");
        }
    }
}
