//! Frames per second through the switch's forwarding decision.
//!
//! Measures `Core::ingress` alone (anti-spoofing checks, MAC learning and
//! lookup, counters) for IPv4 frames of 64, 1500 and 65000 bytes: the cost
//! the switch adds per frame before the write syscall. The decision only
//! reads headers, so it should not depend on the frame size; a size
//! dependence here would mean something touches the payload.
//!
//! Plain `std::time`, no harness: `cargo bench --bench switch`. Runs about
//! one second per row.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpProtocol, Ipv4Packet,
    Ipv4Repr,
};
use warren::switch::core::{Core, CoreConfig, Decision};

const GW_MAC: [u8; 6] = [0x02, 0x42, 0xac, 0x11, 0x00, 0x01];
const A_MAC: [u8; 6] = [0x02, 0x42, 0xac, 0x11, 0x00, 0x02];
const A_IP: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 2);
const B_MAC: [u8; 6] = [0x02, 0x42, 0xac, 0x11, 0x00, 0x03];
const B_IP: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 3);

/// Time spent measuring each row.
const ROW_TIME: Duration = Duration::from_millis(1000);

/// Other ports on the switch, so the MAC table is not trivially small.
const EXTRA_PORTS: u8 = 200;

fn main() {
    let mut core = Core::new(&CoreConfig::new(GW_MAC));
    let Ok(a) = core.add_port(A_MAC, A_IP) else {
        panic!("port a")
    };
    let Ok(b) = core.add_port(B_MAC, B_IP) else {
        panic!("port b")
    };
    for i in 0..EXTRA_PORTS {
        let mac = [0x02, 0x42, 0xac, 0x11, 0x01, i];
        let ip = Ipv4Addr::new(172, 17, 1, i);
        if core.add_port(mac, ip).is_err() {
            panic!("extra port {i}");
        }
    }

    println!(
        "switch core: ingress decision, {} ports",
        EXTRA_PORTS as usize + 2
    );
    println!(
        "{:>10} {:>14} {:>10} {:>14}",
        "frame", "frames/s", "ns/frame", "Gbit/s equiv"
    );
    for size in [64usize, 1500, 65000] {
        let frame = ipv4_frame(size);
        assert_eq!(
            core.ingress(Instant::now(), a, &frame),
            Decision::Unicast(b)
        );

        let mut frames = 0u64;
        let start = Instant::now();
        let mut now = start;
        while now.duration_since(start) < ROW_TIME {
            // Read the clock once per 4096 frames, as the loop does once
            // per wakeup.
            for _ in 0..4096 {
                black_box(core.ingress(now, a, black_box(&frame)));
            }
            frames += 4096;
            now = Instant::now();
        }
        let secs = now.duration_since(start).as_secs_f64();
        let fps = frames as f64 / secs;
        println!(
            "{:>8} B {:>14.0} {:>10.1} {:>14.1}",
            size,
            fps,
            1e9 / fps,
            fps * size as f64 * 8.0 / 1e9
        );
    }
}

/// An IPv4 frame from A to B of exactly `size` bytes.
fn ipv4_frame(size: usize) -> Vec<u8> {
    let eth = EthernetRepr {
        src_addr: EthernetAddress(A_MAC),
        dst_addr: EthernetAddress(B_MAC),
        ethertype: EthernetProtocol::Ipv4,
    };
    let ip = Ipv4Repr {
        src_addr: A_IP,
        dst_addr: B_IP,
        next_header: IpProtocol::Udp,
        payload_len: size - eth.buffer_len() - 20,
        hop_limit: 64,
    };
    let mut buf = vec![0u8; size];
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.emit(&mut frame);
    ip.emit(
        &mut Ipv4Packet::new_unchecked(frame.payload_mut()),
        &ChecksumCapabilities::default(),
    );
    buf
}
