//! The comparison benchmark's arithmetic (`benches/compare/stats.rs`:
//! medians, percentiles, rounds and the order of the systems), whose unit
//! tests live in that file. `cargo test` does not build benches, so this
//! includes the module to run them.

#[path = "../benches/compare/stats.rs"]
#[allow(dead_code)]
mod stats;
