//! The switch core forwards without allocating: the zero-allocation check
//! of `benches/common/micro.rs` (its counting global allocator, the same
//! forwarding loop) on a few thousand frames of each size, so that `cargo
//! test`, which builds no benches, runs it. The timed benchmark is `cargo
//! bench --bench switch`.
//!
//! The count is process-wide, so this file holds this one test: nothing
//! else of the test binary should allocate while it runs (the harness's
//! main thread waits); the test still takes the best of three runs (see
//! there).

#[path = "../benches/common/micro.rs"]
#[allow(dead_code)]
mod micro;

#[test]
fn forwarding_a_frame_allocates_nothing() {
    // The check counts at all: an allocation inside a region is seen.
    assert!(micro::allocations_seen_by_a_region() > 0);
    // The count is the process's: once in CI the harness's other thread
    // allocated twice during a run of 10,000 frames. A frame path that
    // allocates does so on every frame (10,000 a run, every run), so a
    // size passes when one of three runs counts nothing; each run's count
    // is printed.
    let runs: Vec<Vec<(usize, u64)>> = (0..3).map(|_| micro::allocations(10_000)).collect();
    for (i, (size, _)) in runs[0].iter().enumerate() {
        let counts: Vec<u64> = runs.iter().map(|r| r[i].1).collect();
        eprintln!("{size} B frames: allocations per run of 10,000: {counts:?}");
        assert!(
            counts.contains(&0),
            "{size} B frames: {counts:?} allocations in three runs of 10,000 frames"
        );
    }
}
