//! The switch core forwards without allocating: the zero-allocation check
//! of `benches/common/micro.rs` (its counting global allocator, the same
//! forwarding loop) on a few thousand frames of each size, so that `cargo
//! test`, which builds no benches, runs it. The timed benchmark is `cargo
//! bench --bench switch`.
//!
//! The count is process-wide, so this file holds this one test: nothing
//! else of the test binary allocates while it runs (the harness's main
//! thread waits).

#[path = "../benches/common/micro.rs"]
#[allow(dead_code)]
mod micro;

#[test]
fn forwarding_a_frame_allocates_nothing() {
    // The check counts at all: an allocation inside a region is seen.
    assert!(micro::allocations_seen_by_a_region() > 0);
    for (size, allocs) in micro::allocations(10_000) {
        assert_eq!(
            allocs, 0,
            "{size} B frames: {allocs} allocations in 10,000 frames"
        );
    }
}
