//! `GET /metrics`: the daemon's counters in the Prometheus text format.
//!
//! Each scrape builds a fresh [`Registry`] from what `network stats`
//! reports for every network (the same snapshot, so the two always agree)
//! and the daemon's own process figures, and encodes it with the
//! `prometheus-client` crate (OpenMetrics text, which Prometheus scrapes).
//! Nothing is kept between scrapes: the switches' own atomics are the
//! counters, read here, so a scrape costs nothing while nobody scrapes.
//!
//! Names follow Prometheus's conventions: `warren_` and the section
//! (`switch`, `gateway`, `dns`, `nat`, `port`), the field, base units
//! (`_bytes`), counters with `_total` (added by the encoder), and labels
//! for the network, the drop reason and the port (its endpoint label and
//! address). The fields that are levels rather than counts — flows open,
//! forwards, bytes held in NAT buffers, endpoints, the process's fds and
//! memory — are gauges.

use std::fmt::Write as _;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::Value;

use crate::daemon::state::Daemon;

type Labels = Vec<(String, String)>;

/// Fields of the stats that are levels, not counts.
const GAUGES: &[&str] = &[
    "tcp_flows",
    "udp_flows",
    "icmp_flows",
    "forward_flows",
    "forwards",
    "buffer_bytes",
];

/// The families of one scrape, by metric name.
#[derive(Default)]
struct Scrape {
    counters: std::collections::BTreeMap<String, (String, Family<Labels, Counter>)>,
    gauges: std::collections::BTreeMap<String, (String, Family<Labels, Gauge>)>,
}

impl Scrape {
    fn add(&mut self, name: String, help: &str, labels: Labels, value: u64, gauge: bool) {
        if gauge {
            let (_, f) = self
                .gauges
                .entry(name)
                .or_insert_with(|| (help.to_string(), Family::default()));
            f.get_or_create(&labels)
                .set(i64::try_from(value).unwrap_or(i64::MAX));
        } else {
            let (_, f) = self
                .counters
                .entry(name)
                .or_insert_with(|| (help.to_string(), Family::default()));
            f.get_or_create(&labels).inc_by(value);
        }
    }

    /// Every number in `section` of a network's stats, one metric each;
    /// a nested object (the drop reasons) as one metric with a label.
    fn section(&mut self, section: &str, network: &str, v: &Value) {
        let Some(map) = v.as_object() else { return };
        for (field, value) in map {
            let labels = vec![("network".to_string(), network.to_string())];
            match value {
                Value::Number(n) => {
                    let Some(n) = n.as_u64() else { continue };
                    let (name, gauge) = metric_name(section, field);
                    let help = format!("`network stats` {section}.{field}");
                    self.add(name, &help, labels, n, gauge);
                }
                Value::Object(inner) => {
                    for (reason, n) in inner {
                        let Some(n) = n.as_u64() else { continue };
                        let mut l = labels.clone();
                        l.push(("reason".into(), reason.clone()));
                        let help = format!("`network stats` {section}.{field}, by reason");
                        self.add(
                            format!("warren_{section}_{field}_frames"),
                            &help,
                            l,
                            n,
                            false,
                        );
                    }
                }
                _ => {}
            }
        }
    }

    fn encode(self) -> String {
        let mut registry = Registry::default();
        for (name, (help, f)) in self.counters {
            registry.register(name, help, f);
        }
        for (name, (help, f)) in self.gauges {
            registry.register(name, help, f);
        }
        let mut out = String::new();
        if encode(&mut out, &registry).is_err() {
            out.clear();
            let _ = writeln!(out, "# EOF");
        }
        out
    }
}

/// `warren_SECTION_FIELD` (a counter, `_total` added by the encoder) or a
/// gauge; fields named in frames, bytes or queries keep their unit words.
fn metric_name(section: &str, field: &str) -> (String, bool) {
    let gauge = GAUGES.contains(&field);
    (format!("warren_{section}_{field}"), gauge)
}

/// The whole text of one scrape.
pub fn render(d: &Daemon) -> String {
    let mut s = Scrape::default();
    for net in d.list_networks() {
        let Ok(stats) = d.network_stats(&net.name) else {
            // host and none have no switch.
            continue;
        };
        let labels = vec![("network".to_string(), net.name.clone())];
        s.add(
            "warren_network_endpoints".into(),
            "Endpoints (sandbox interfaces) on the network",
            labels,
            net.containers as u64,
            true,
        );
        for section in ["counters", "gateway", "dns", "nat"] {
            let name = if section == "counters" {
                "switch"
            } else {
                section
            };
            s.section(name, &net.name, &stats[section]);
        }
        for port in stats["ports"].as_array().into_iter().flatten() {
            let labels = vec![
                ("network".to_string(), net.name.clone()),
                (
                    "port".to_string(),
                    port["label"].as_str().unwrap_or("").to_string(),
                ),
                (
                    "ipv4".to_string(),
                    port["ipv4"].as_str().unwrap_or("").to_string(),
                ),
            ];
            for field in [
                "rx_frames",
                "rx_bytes",
                "tx_frames",
                "tx_bytes",
                "dropped",
                "write_errors",
            ] {
                if let Some(n) = port[field].as_u64() {
                    s.add(
                        format!("warren_port_{field}"),
                        &format!("`network stats` ports[].{field}"),
                        labels.clone(),
                        n,
                        false,
                    );
                }
            }
        }
    }
    let fds = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0);
    s.add(
        "warren_process_open_fds".into(),
        "The daemon's open file descriptors",
        Vec::new(),
        fds as u64,
        true,
    );
    let rss = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|t| t.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0)
        * 4096;
    s.add(
        "warren_process_resident_memory_bytes".into(),
        "The daemon's resident memory",
        Vec::new(),
        rss,
        true,
    );
    s.encode()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_become_counters_gauges_and_reasons() {
        let mut s = Scrape::default();
        let stats = serde_json::json!({
            "rx_frames": 7,
            "tcp_flows": 2,
            "dropped": {"spoofed_ip": 3, "runt": 0},
            "name": "ignored"
        });
        s.section("switch", "dev", &stats);
        let text = s.encode();
        assert!(
            text.contains("# TYPE warren_switch_rx_frames counter"),
            "{text}"
        );
        assert!(
            text.contains("warren_switch_rx_frames_total{network=\"dev\"} 7"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE warren_switch_tcp_flows gauge"),
            "{text}"
        );
        assert!(
            text.contains("warren_switch_tcp_flows{network=\"dev\"} 2"),
            "{text}"
        );
        assert!(
            text.contains(
                "warren_switch_dropped_frames_total{network=\"dev\",reason=\"spoofed_ip\"} 3"
            ),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
