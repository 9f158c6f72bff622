//! The allocator's policy for large blocks.
//!
//! glibc serves blocks at or above its mmap threshold (128 KiB by default)
//! with a private mapping of their own, returned to the kernel on `free`,
//! and `calloc` skips the memset for them because fresh anonymous pages
//! are already zero. But the threshold is *dynamic*: freeing such a block
//! raises it to that block's size, and from then on same-sized blocks come
//! from the heap arenas instead, where `calloc` touches every page and a
//! freed block stays resident until the arena can trim past it.
//!
//! The daemon's largest allocations are the NAT's per-flow smoltcp buffers
//! (256 KiB, 2 MiB for bulk flows): under the dynamic threshold a burst of
//! concurrent flows left tens of MiB resident for good (the soak test saw
//! RSS double). Setting the threshold explicitly turns the adjustment off,
//! so every flow buffer is its own mapping, its pages touched only as data
//! passes and given back when the flow ends.

/// Fixes glibc's mmap threshold at `bytes` (disabling its dynamic
/// adjustment). Returns false where the C library refused.
pub fn fix_mmap_threshold(bytes: usize) -> bool {
    let Ok(value) = libc::c_int::try_from(bytes) else {
        return false;
    };
    // SAFETY: mallopt only changes the allocator's tuning parameters; it
    // takes plain integers, touches no caller memory, and glibc serialises
    // it against concurrent allocation with the arena locks.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, value) == 1 }
}
