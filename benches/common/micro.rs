//! The switch core's micro-benchmark, shared by `cargo bench --bench
//! switch` (criterion alone) and the comparison harness (which shows the
//! same figures in its table).
//!
//! What is timed is the per-frame work of the forwarding thread minus the
//! system calls: `Core::ingress` (source MAC and IPv4 checks against the
//! port's endpoint, MAC learning and lookup, counters) and `Core::note_tx`
//! (the destination port's counters), for IPv4 frames of 64 B, 1500 B and
//! 65534 B (the largest frame at MTU 65520) between two of 202 ports. The
//! decision only reads headers, so it should not depend on the frame size.
//!
//! Zero allocation per frame is checked, not assumed: the binary's global
//! allocator is `stats_alloc`'s counting wrapper around the system
//! allocator, and every timed batch runs inside a counting region. The
//! allocations seen per frame are returned with the rate, and the switch
//! bench fails if there is any. [`allocations`] runs the same loop on a
//! few frames without criterion, for `cargo test`.

use std::alloc::System;
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpProtocol, Ipv4Packet,
    Ipv4Repr,
};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use warren::switch::core::{Core, CoreConfig, Decision};

/// Counts every allocation of the benchmark binary.
#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const GW_MAC: [u8; 6] = [0x02, 0x42, 0xac, 0x11, 0x00, 0x01];
const A_MAC: [u8; 6] = [0x02, 0x42, 0xac, 0x11, 0x00, 0x02];
const A_IP: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 2);
const B_MAC: [u8; 6] = [0x02, 0x42, 0xac, 0x11, 0x00, 0x03];
const B_IP: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 3);

/// Other ports on the switch, so the MAC table is not trivially small.
const EXTRA_PORTS: u8 = 200;

/// Frame sizes: minimum Ethernet, standard MTU, and warren's MTU 65520.
pub const SIZES: [usize; 3] = [64, 1500, 65534];

/// One frame size's result.
pub struct MicroResult {
    pub size: usize,
    /// Median over criterion's samples.
    pub frames_per_sec: f64,
    /// Allocations (and reallocations) counted inside the timed loops,
    /// per frame.
    pub allocs_per_frame: f64,
}

/// Criterion settings that keep the whole group near 10 s.
pub fn criterion() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

/// Runs the group `switch` on `c` and returns one result per frame size.
pub fn bench(c: &mut Criterion) -> Vec<MicroResult> {
    let mut group = c.benchmark_group("switch");
    group.throughput(Throughput::Elements(1));
    let mut results = Vec::new();
    for size in SIZES {
        let (mut core, a, b) = core();
        let frame = ipv4_frame(size);
        assert_eq!(
            core.ingress(Instant::now(), a, &frame),
            Decision::Unicast(b)
        );
        // (iterations, elapsed) of each call, and allocations seen.
        let mut samples: Vec<(u64, Duration)> = Vec::with_capacity(1024);
        let (mut allocs, mut frames) = (0u64, 0u64);
        group.bench_with_input(BenchmarkId::new("ingress", size), &frame, |bench, frame| {
            bench.iter_custom(|iters| {
                let region = Region::new(GLOBAL);
                let now = Instant::now();
                forward(&mut core, a, frame, iters, now);
                let elapsed = now.elapsed();
                let change = region.change();
                allocs += (change.allocations + change.reallocations) as u64;
                frames += iters;
                if samples.len() < samples.capacity() {
                    samples.push((iters, elapsed));
                }
                elapsed
            })
        });
        results.push(MicroResult {
            size,
            frames_per_sec: median_rate(&samples),
            allocs_per_frame: allocs as f64 / frames.max(1) as f64,
        });
    }
    group.finish();
    results
}

/// The timed work: `iters` times the forwarding decision for `frame` from
/// port `a`, and the destination's counters.
fn forward(core: &mut Core, a: warren::switch::PortId, frame: &[u8], iters: u64, now: Instant) {
    for _ in 0..iters {
        let d = core.ingress(now, a, black_box(frame));
        if let Decision::Unicast(to) = d {
            core.note_tx(to, frame.len());
        }
        black_box(d);
    }
}

/// The zero-allocation check alone, without criterion or timing: for each
/// of [`SIZES`], `frames` frames through [`forward`] inside a counting
/// region; returns (size, allocations and reallocations seen). `cargo
/// test` runs it (`tests/switch_alloc.rs`), since it builds no benches.
pub fn allocations(frames: u64) -> Vec<(usize, u64)> {
    SIZES
        .iter()
        .map(|&size| {
            let (mut core, a, b) = core();
            let frame = ipv4_frame(size);
            let now = Instant::now();
            assert_eq!(core.ingress(now, a, &frame), Decision::Unicast(b));
            let region = Region::new(GLOBAL);
            forward(&mut core, a, &frame, frames, now);
            let change = region.change();
            (size, (change.allocations + change.reallocations) as u64)
        })
        .collect()
}

/// The positive control of [`allocations`]: what a region counts around
/// one boxed value (more than 0, or the counting is broken).
pub fn allocations_seen_by_a_region() -> u64 {
    let region = Region::new(GLOBAL);
    black_box(Box::new(black_box(7u64)));
    let change = region.change();
    (change.allocations + change.reallocations) as u64
}

/// Frames per second of the median sample. Criterion's warm-up calls come
/// first with few iterations each; the measured samples are the last 30.
fn median_rate(samples: &[(u64, Duration)]) -> f64 {
    let tail = &samples[samples.len().saturating_sub(30)..];
    let mut rates: Vec<f64> = tail
        .iter()
        .filter(|(_, t)| !t.is_zero())
        .map(|(n, t)| *n as f64 / t.as_secs_f64())
        .collect();
    rates.sort_by(f64::total_cmp);
    rates.get(rates.len() / 2).copied().unwrap_or(0.0)
}

/// A core with ports A and B and 200 more; returns (core, a, b).
fn core() -> (Core, warren::switch::PortId, warren::switch::PortId) {
    let mut core = Core::new(&CoreConfig::new(GW_MAC));
    let a = core.add_port(A_MAC, A_IP).expect("port a");
    let b = core.add_port(B_MAC, B_IP).expect("port b");
    for i in 0..EXTRA_PORTS {
        let mac = [0x02, 0x42, 0xac, 0x11, 0x01, i];
        core.add_port(mac, Ipv4Addr::new(172, 17, 1, i))
            .expect("extra port");
    }
    (core, a, b)
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
