//! Frames into a network's gateway (smoltcp: ARP, ICMP, and the DNS server
//! on UDP/TCP 53), the input split into several frames at 0xff 0x00 pairs
//! so sequences (handshakes, pipelined queries) get explored too.
#![no_main]

use std::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;
use smoltcp::time::Instant;
use warren::gateway::{Gateway, GatewayConfig};

fuzz_target!(|data: &[u8]| {
    let cfg = GatewayConfig {
        ip: Ipv4Addr::new(172, 18, 0, 1),
        prefix_len: 16,
        mac: [0x02, 0x42, 0xac, 0x12, 0x00, 0x01],
        mtu: 65520,
    };
    let Ok(mut gw) = Gateway::new(&cfg, Instant::from_millis(0)) else {
        return;
    };
    let mut t = 0;
    for frame in data.split(|&b| b == 0xff).take(64) {
        gw.receive(frame);
        t += 10;
        gw.poll(Instant::from_millis(t), &mut |_out: &[u8]| {});
    }
});
