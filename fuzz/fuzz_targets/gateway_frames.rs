//! Frames into a network's gateway (smoltcp: ARP, ICMP, and the DNS server
//! on UDP/TCP 53). An input is a sequence of frames, each after a
//! big-endian u16 length (the last one takes what is left if its length
//! runs past the end), so sequences (handshakes, pipelined queries) get
//! explored too, and a frame may hold any byte: broadcast ARP, whose
//! destination is ff:ff:ff:ff:ff:ff, reaches the gateway like any other.
#![no_main]

use std::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;
use smoltcp::time::Instant;
use warren::gateway::{Gateway, GatewayConfig};

/// Frames per input.
const MAX_FRAMES: usize = 64;

/// The frames of `data`: each a big-endian u16 length, then that many
/// bytes (fewer for the last, if the input ends first).
fn frames(mut data: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let (len, rest) = data.split_first_chunk::<2>()?;
        let len = usize::from(u16::from_be_bytes(*len)).min(rest.len());
        let (frame, rest) = rest.split_at(len);
        data = rest;
        Some(frame)
    })
    .take(MAX_FRAMES)
}

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
    for frame in frames(data) {
        gw.receive(frame);
        t += 10;
        gw.poll(Instant::from_millis(t), &mut |_out: &[u8]| {});
    }
});
