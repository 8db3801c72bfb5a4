//! When requests go: the arrival process of `--rate` and the per-request draws, on an absolute
//! clock so sleeping late never shifts later arrivals (no drift).
//!
//! Arrivals are a pure Poisson process: exponential gaps with mean `1/rate`, drawn lazily.
//! evalscope rescales its gaps so the last arrival lands exactly at `n/rate`, which makes the
//! realised rate exact but the process no longer Poisson; perf does not, and reports the rate
//! it achieved.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp};

use crate::plan::MaxTokens;

/// The intended send times of a run.
pub struct Arrivals {
    start: Instant,
    offset_s: f64,
    gaps: Option<Exp<f64>>,
}

impl Arrivals {
    /// Poisson arrivals at `rate` per second from `start`, or all at `start` without a rate.
    pub fn new(start: Instant, rate: Option<f64>) -> Self {
        Arrivals {
            start,
            offset_s: 0.0,
            gaps: rate.and_then(|r| Exp::new(r).ok()),
        }
    }

    /// The next intended send time.
    pub fn next(&mut self, rng: &mut StdRng) -> Instant {
        let at = self.start + Duration::from_secs_f64(self.offset_s);
        if let Some(exp) = &self.gaps {
            self.offset_s += exp.sample(rng);
        }
        at
    }

    /// Whether sends are paced.
    pub fn paced(&self) -> bool {
        self.gaps.is_some()
    }
}

/// The random number generator of a run: seeded from `--seed` (plus the run index, so runs
/// of a sweep differ), else from entropy.
pub fn rng(seed: Option<i64>, run_index: usize) -> StdRng {
    match seed {
        Some(s) => StdRng::seed_from_u64((s as u64).wrapping_add(run_index as u64)),
        None => StdRng::from_entropy(),
    }
}

/// `max_tokens` for one request.
pub fn max_tokens(m: MaxTokens, rng: &mut StdRng) -> u32 {
    match m {
        MaxTokens::Fixed(n) => n,
        MaxTokens::Range(lo, hi) => rng.gen_range(lo..=hi),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poisson_arrivals_average_the_rate_and_never_go_back() {
        let start = Instant::now();
        let mut a = Arrivals::new(start, Some(200.0));
        let mut r = rng(Some(7), 0);
        let times: Vec<Instant> = (0..20_000).map(|_| a.next(&mut r)).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
        let span = (times[times.len() - 1] - start).as_secs_f64();
        let rate = (times.len() - 1) as f64 / span;
        assert!((rate - 200.0).abs() < 200.0 * 0.03, "realised rate {rate}");
    }

    #[test]
    fn unpaced_arrivals_are_all_at_the_start() {
        let start = Instant::now();
        let mut a = Arrivals::new(start, None);
        let mut r = rng(Some(1), 0);
        assert!(!a.paced());
        assert!((0..10).all(|_| a.next(&mut r) == start));
    }

    #[test]
    fn max_tokens_ranges_are_inclusive_and_seeded() {
        let mut r1 = rng(Some(3), 0);
        let mut r2 = rng(Some(3), 0);
        let a: Vec<u32> = (0..200)
            .map(|_| max_tokens(MaxTokens::Range(5, 7), &mut r1))
            .collect();
        let b: Vec<u32> = (0..200)
            .map(|_| max_tokens(MaxTokens::Range(5, 7), &mut r2))
            .collect();
        assert_eq!(a, b);
        assert!(a.iter().all(|n| (5..=7).contains(n)) && a.contains(&5) && a.contains(&7));
    }
}
