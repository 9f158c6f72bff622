//! The arithmetic of the comparison, apart from everything that measures:
//! medians, percentiles, how many rounds a row gets and which system runs
//! first in each. No I/O, so it is unit-tested, and `cargo test` runs
//! those tests (`tests/bench_stats.rs` includes this file).
//!
//! Why the order matters: on a shared machine the first run of a round
//! meets other work than the last (caches, frequency, a build that just
//! started), so a system that always went first would carry that bias
//! into its median. Each system therefore leads the same number of
//! rounds, which needs a number of rounds that is a multiple of the
//! number of systems: [`rounds_for`] rounds the asked number up.

/// The median: the middle value, or the mean of the two middle values
/// when there is an even number of them. `None` for no values.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => None,
        n if n % 2 == 1 => Some(v[n / 2]),
        n => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// The `p`th percentile by nearest rank (the smallest value with at
/// least `p` % of the values at or below it): with 50 values, p99 is the
/// largest. `None` for no values.
pub fn nearest_rank(values: &[f64], p: usize) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = (v.len() * p).div_ceil(100).max(1);
    v.get(rank - 1).copied()
}

/// The rounds a row of `systems` systems gets when `asked` were asked
/// for: `asked` rounded up to a multiple of `systems`, so that each
/// system leads equally often.
pub fn rounds_for(asked: usize, systems: usize) -> usize {
    if systems == 0 {
        return asked;
    }
    asked.div_ceil(systems) * systems
}

/// The order of `systems` systems (indexes into the row's list) in round
/// `round`: a rotation, so round `r` starts with system `r mod n` and
/// every system runs once per round.
pub fn order(systems: usize, round: usize) -> impl Iterator<Item = usize> {
    (0..systems).map(move |k| (k + round) % systems)
}

#[cfg(test)]
mod tests {
    // The bench binary (harness = false) compiles this module under
    // `cargo clippy --all-targets` without running its tests.
    #[allow(unused_imports)]
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[7.0]), Some(7.0));
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        // Even: the mean of the two middle values, not the lower one.
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        let fifty: Vec<f64> = (1..=50).map(f64::from).collect();
        assert_eq!(median(&fifty), Some(25.5));
        // Unsorted input with repeats.
        assert_eq!(median(&[5.0, 5.0, 1.0, 9.0]), Some(5.0));
    }

    #[test]
    fn nearest_rank_percentiles() {
        let fifty: Vec<f64> = (1..=50).rev().map(f64::from).collect();
        assert_eq!(nearest_rank(&fifty, 99), Some(50.0));
        assert_eq!(nearest_rank(&fifty, 50), Some(25.0));
        assert_eq!(nearest_rank(&fifty, 0), Some(1.0));
        assert_eq!(nearest_rank(&[], 99), None);
    }

    #[test]
    fn every_system_leads_equally_and_runs_once_per_round() {
        for asked in 1..=7 {
            for n in 1..=6 {
                let rounds = rounds_for(asked, n);
                assert!(rounds >= asked && rounds < asked + n, "{asked} {n}");
                let mut leads = vec![0; n];
                for round in 0..rounds {
                    let o: Vec<usize> = order(n, round).collect();
                    let mut sorted = o.clone();
                    sorted.sort_unstable();
                    assert_eq!(sorted, (0..n).collect::<Vec<_>>(), "round {round}");
                    leads[o[0]] += 1;
                }
                assert!(
                    leads.iter().all(|&l| l == rounds / n),
                    "{asked} rounds asked, {n} systems: leads {leads:?}"
                );
            }
        }
        // The case that was wrong: 3 rounds, 2 systems gave warren the
        // lead twice; now it is 4 rounds, two leads each.
        assert_eq!(rounds_for(3, 2), 4);
        assert_eq!(order(2, 0).next(), Some(0));
        assert_eq!(order(2, 1).next(), Some(1));
        assert_eq!(rounds_for(3, 4), 4);
        assert_eq!(rounds_for(3, 3), 3);
    }
}
