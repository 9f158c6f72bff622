//! Frames per second through the switch's forwarding decision, with
//! criterion: `cargo bench --bench switch`. The benchmark itself lives in
//! `common/micro.rs` (the comparison harness shows the same figures); this
//! target runs it alone, so regressions in the core show in about ten
//! seconds without namespaces, and fails if a frame allocates.

use criterion::{criterion_group, criterion_main, Criterion};

mod common;

use common::micro;

fn switch(c: &mut Criterion) {
    for r in micro::bench(c) {
        println!(
            "{:>6} B: {:>6.1} M frames/s, {} allocations per frame",
            r.size,
            r.frames_per_sec / 1e6,
            r.allocs_per_frame
        );
        assert!(
            r.allocs_per_frame == 0.0 || r.frames_per_sec == 0.0,
            "the switch core allocated while forwarding {} B frames",
            r.size
        );
    }
}

criterion_group! {
    name = benches;
    config = micro::criterion();
    targets = switch
}
criterion_main!(benches);
