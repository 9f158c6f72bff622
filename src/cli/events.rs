//! `warren events`: the daemon's lifecycle events, as `docker events`.
//!
//! # Theory of operation
//!
//! A thin client of `GET /v1/events` ([`crate::api::events`]). `--since`
//! and `--until` take what Docker's take (a duration back from now such
//! as `10m` or `1h30m`, an RFC 3339 time, or Unix seconds) and are sent
//! as Unix times; `--filter key=value` become Docker's `filters` JSON.
//! Each line the daemon streams is printed as it arrives: by default in
//! Docker's line format (`TIME TYPE ACTION ID (k=v, …)`), with
//! `--format json` as it came, or through a Go template
//! ([`super::format`]) whose fields are the event's JSON keys plus
//! Docker's template names (`.ID`, `.Status`, `.Scope`, `.Time`,
//! `.TimeNano`). With `--until` the command ends when the daemon ends the
//! stream; without it, it streams until interrupted.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde_json::Value as Json;

use super::client::Client;
use super::format::{Filters, Format};
use crate::daemon::events::FILTER_KEYS;
use crate::daemon::paths::Paths;

#[derive(clap::Args, Debug)]
pub struct EventsArgs {
    /// Show events since this time: a duration back (10m, 1h30m), RFC 3339, or Unix seconds
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Stop at this time (same forms as --since); without it, stream until interrupted
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// type=sandbox|network|port, event=ACTION, sandbox=NAME|ID, network=NAME|ID
    #[arg(short = 'f', long = "filter", value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
    /// json, or a Go template such as '{{.Type}} {{.Action}}'
    #[arg(long)]
    pub format: Option<String>,
}

pub fn main(paths: &Paths, a: EventsArgs) -> Result<i32> {
    let now = SystemTime::now();
    let mut query = Vec::new();
    for (key, value) in [("since", &a.since), ("until", &a.until)] {
        if let Some(v) = value {
            let t = parse_time(v, now).with_context(|| format!("--{key} {v:?}"))?;
            query.push(format!("{key}={t}"));
        }
    }
    let filters = Filters::parse(&a.filter, &FILTER_KEYS)?;
    let map: BTreeMap<&str, &[String]> = FILTER_KEYS
        .iter()
        .filter(|k| filters.has(k))
        .map(|k| (*k, filters.values(k)))
        .collect();
    if !map.is_empty() {
        query.push(format!(
            "filters={}",
            percent_encode(&serde_json::to_string(&map)?)
        ));
    }
    let format = match a.format.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(f) => Some(Format::parse(Some(f), "")?),
    };
    let mut path = "/v1/events".to_string();
    if !query.is_empty() {
        path = format!("{path}?{}", query.join("&"));
    }
    let client = Client::connect(paths)?;
    let stdout = std::io::stdout();
    let result = client.stream(&path, |line| {
        let event: Json =
            serde_json::from_slice(line).context("the daemon sent an event that is not JSON")?;
        let text = match &format {
            None => default_line(&event),
            Some(f) if f.is_json() => format!("{}\n", String::from_utf8_lossy(line)),
            Some(f) => f.render(&[template_fields(event)], &BTreeMap::new(), false)?,
        };
        let mut out = stdout.lock();
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .map_err(anyhow::Error::from)
    });
    match result {
        // `warren events | head -3`: the reader has what it wanted.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(0)
        }
        r => r.map(|()| 0),
    }
}

/// Docker's `events` line: `TIME TYPE ACTION ID (k=v, …)`.
fn default_line(e: &Json) -> String {
    let s = |v: &Json| v.as_str().unwrap_or_default().to_string();
    let mut line = format!(
        "{} {} {}",
        s(&e["timestamp"]),
        s(&e["Type"]),
        s(&e["Action"])
    );
    let id = s(&e["Actor"]["ID"]);
    if !id.is_empty() {
        line.push(' ');
        line.push_str(&id);
    }
    if let Some(attrs) = e["Actor"]["Attributes"].as_object() {
        let kv: Vec<String> = attrs
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect();
        if !kv.is_empty() {
            line.push_str(&format!(" ({})", kv.join(", ")));
        }
    }
    line.push('\n');
    line
}

/// The event with Docker's template field names beside its JSON keys.
fn template_fields(mut e: Json) -> Json {
    if let Some(o) = e.as_object_mut() {
        let get = |k: &str| o.get(k).cloned().unwrap_or(Json::Null);
        let extra = [
            (
                "ID",
                o.get("Actor")
                    .and_then(|a| a.get("ID"))
                    .cloned()
                    .unwrap_or(Json::Null),
            ),
            ("Status", get("Action")),
            ("Scope", get("scope")),
            ("Time", get("time")),
            ("TimeNano", get("timeNano")),
        ];
        for (k, v) in extra {
            o.insert(k.to_string(), v);
        }
    }
    e
}

/// `--since`/`--until` as Unix seconds with nanoseconds: a duration back
/// from `now`, an RFC 3339 time, or Unix seconds as they are.
fn parse_time(s: &str, now: SystemTime) -> Result<String> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        crate::daemon::events::parse_unix_time(s).map_err(anyhow::Error::msg)?;
        return Ok(s.to_string());
    }
    let t = if let Ok(d) = humantime::parse_duration(s) {
        now.checked_sub(d)
            .filter(|t| *t >= UNIX_EPOCH)
            .unwrap_or(UNIX_EPOCH)
    } else if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        t
    } else {
        bail!("give a duration back (10m, 1h30m), an RFC 3339 time (2026-12-04T20:10:00Z) or Unix seconds");
    };
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    Ok(format!("{}.{:09}", d.as_secs(), d.subsec_nanos()))
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        let now = UNIX_EPOCH + Duration::from_secs(10_000);
        assert_eq!(parse_time("10m", now).unwrap(), "9400.000000000");
        assert_eq!(parse_time("1h30m", now).unwrap(), "4600.000000000");
        assert_eq!(parse_time("1733340000.5", now).unwrap(), "1733340000.5");
        assert_eq!(
            parse_time("2024-12-04T19:20:00.25Z", now).unwrap(),
            "1733340000.250000000"
        );
        assert_eq!(parse_time("1000h", now).unwrap(), "0.000000000");
        for bad in ["", "yesterday", "1.2.3", "-5m"] {
            assert!(parse_time(bad, now).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn docker_line() {
        let e: Json = serde_json::from_str(
            r#"{"Type":"sandbox","Action":"die","Actor":{"ID":"abc","Attributes":{"name":"web","exitCode":"3"}},"timestamp":"2026-12-04T20:10:00.123456789Z"}"#,
        )
        .unwrap();
        assert_eq!(
            default_line(&e),
            "2026-12-04T20:10:00.123456789Z sandbox die abc (exitCode=3, name=web)\n"
        );
    }

    #[test]
    fn encoding() {
        assert_eq!(
            percent_encode(r#"{"a":["b c"]}"#),
            "%7B%22a%22%3A%5B%22b%20c%22%5D%7D"
        );
    }
}
