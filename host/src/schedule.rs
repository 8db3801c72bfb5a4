//! When requests go: the arrival process of `--rate`, the ramp-up, and the per-request draws,
//! on an absolute clock so sleeping late never shifts later arrivals (no drift).
//!
//! Arrivals are drawn lazily as gaps of a unit-rate process (one arrival expected per unit),
//! then mapped onto seconds through the run's intensity:
//!
//! - `--arrival poisson` (the default, evalscope's): exponential gaps, a pure Poisson process.
//!   evalscope rescales its gaps so the last arrival lands exactly at `n/rate`, which makes
//!   the realised rate exact but the process no longer Poisson; perf does not, and reports the
//!   rate it achieved.
//! - `--arrival constant`: every gap `1/rate`.
//! - `--arrival gamma --burstiness K`: gamma gaps of shape K and mean `1/rate` (coefficient of
//!   variation `1/sqrt(K)`): below 1 burstier than Poisson, above 1 more even, 1 is Poisson.
//!
//! A ramp-up raises the rate linearly from 0: over `--ramp-up-duration` seconds the intensity
//! is `rate * t / T` (arrival times invert its integral), over `--ramp-up-requests N` the k-th
//! gap runs at `rate * (k + 1) / N`. A closed loop ramps its concurrency the same way: worker
//! `i` of `P` joins at `T * i / P` seconds, or once `N * i / P` requests have started.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp1, Gamma};

use crate::plan::MaxTokens;

/// The gaps between arrivals (`--arrival`, `--burstiness`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Process {
    /// Exponential gaps.
    Poisson,
    /// Even gaps.
    Constant,
    /// Gamma gaps of this shape.
    Gamma(f64),
}

/// How the load starts (`--ramp-up-duration`, `--ramp-up-requests`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Ramp {
    /// Linearly over this many seconds.
    Seconds(f64),
    /// Linearly over this many requests.
    Requests(u64),
}

/// The load shape of every run of a sweep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    /// The arrival process of a paced run.
    pub process: Process,
    /// The ramp-up, if any.
    pub ramp: Option<Ramp>,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            process: Process::Poisson,
            ramp: None,
        }
    }
}

impl Shape {
    /// When worker `i` of `workers` may take its first request: seconds after the start, or
    /// the number of requests that must have started first.
    pub fn worker_start(&self, i: usize, workers: usize) -> Option<Ramp> {
        let share = i as f64 / workers.max(1) as f64;
        match self.ramp? {
            _ if i == 0 => None,
            Ramp::Seconds(t) => Some(Ramp::Seconds(t * share)),
            Ramp::Requests(n) => Some(Ramp::Requests((n as f64 * share).floor() as u64)),
        }
    }

    /// In words, for the log.
    pub fn describe(&self) -> String {
        let process = match self.process {
            Process::Poisson => "Poisson arrivals".to_string(),
            Process::Constant => "constant gaps".to_string(),
            Process::Gamma(k) => format!("gamma gaps (burstiness {k})"),
        };
        match self.ramp {
            None => process,
            Some(Ramp::Seconds(t)) => format!("{process}, ramped up over {t} s"),
            Some(Ramp::Requests(n)) => format!("{process}, ramped up over {n} requests"),
        }
    }
}

/// The intended send times of a run.
pub struct Arrivals {
    start: Instant,
    rate: Option<f64>,
    shape: Shape,
    /// Arrivals expected so far (the unit-rate clock).
    units: f64,
    /// Arrivals drawn so far.
    drawn: u64,
    /// Seconds from the start, for request ramps (their gaps are scaled one by one).
    offset_s: f64,
    gamma: Option<Gamma<f64>>,
}

impl Arrivals {
    /// Arrivals at `rate` per second from `start` with `shape`, or all at `start` without a
    /// rate.
    pub fn new(start: Instant, rate: Option<f64>, shape: Shape) -> Self {
        let gamma = match shape.process {
            Process::Gamma(k) => Gamma::new(k, 1.0 / k).ok(),
            _ => None,
        };
        Arrivals {
            start,
            rate: rate.filter(|r| r.is_finite() && *r > 0.0),
            shape,
            units: 0.0,
            drawn: 0,
            offset_s: 0.0,
            gamma,
        }
    }

    /// A gap of the unit-rate process.
    fn unit_gap(&self, rng: &mut StdRng) -> f64 {
        match (self.shape.process, &self.gamma) {
            (Process::Constant, _) => 1.0,
            (Process::Gamma(_), Some(g)) => g.sample(rng),
            _ => Exp1.sample(rng),
        }
    }

    /// Seconds from the start at which `units` arrivals are expected.
    fn seconds_at(&self, rate: f64, units: f64) -> f64 {
        match self.shape.ramp {
            Some(Ramp::Seconds(t)) if t > 0.0 => {
                // The intensity rises as rate * s / t up to t: its integral is rate s^2 / 2t.
                let ramp_units = rate * t / 2.0;
                if units <= ramp_units {
                    (2.0 * t * units / rate).sqrt()
                } else {
                    t + (units - ramp_units) / rate
                }
            }
            _ => units / rate,
        }
    }

    /// The next intended send time.
    pub fn next(&mut self, rng: &mut StdRng) -> Instant {
        let Some(rate) = self.rate else {
            return self.start;
        };
        let at_s = match self.shape.ramp {
            Some(Ramp::Requests(_)) => self.offset_s,
            _ => self.seconds_at(rate, self.units),
        };
        let gap = self.unit_gap(rng);
        self.units += gap;
        if let Some(Ramp::Requests(n)) = self.shape.ramp {
            let factor = ((self.drawn + 1) as f64 / n.max(1) as f64).min(1.0);
            self.offset_s += gap / (rate * factor);
        }
        self.drawn += 1;
        self.start + Duration::from_secs_f64(at_s)
    }

    /// Whether sends are paced.
    pub fn paced(&self) -> bool {
        self.rate.is_some()
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
        let mut a = Arrivals::new(start, Some(200.0), Shape::default());
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
        let mut a = Arrivals::new(start, None, Shape::default());
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

    /// Gaps between the intended times of `n` arrivals at `rate`, seconds.
    fn gaps(shape: Shape, rate: f64, n: usize) -> Vec<f64> {
        let start = Instant::now();
        let mut a = Arrivals::new(start, Some(rate), shape);
        let mut r = rng(Some(11), 0);
        let times: Vec<f64> = (0..n)
            .map(|_| (a.next(&mut r) - start).as_secs_f64())
            .collect();
        times.windows(2).map(|w| w[1] - w[0]).collect()
    }

    fn mean_and_cv(v: &[f64]) -> (f64, f64) {
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (mean, var.sqrt() / mean)
    }

    #[test]
    fn each_arrival_process_has_its_mean_and_dispersion() {
        let steady = |process| Shape {
            process,
            ramp: None,
        };
        // (process, expected coefficient of variation)
        for (process, cv_want) in [
            (Process::Poisson, 1.0),
            (Process::Constant, 0.0),
            (Process::Gamma(0.25), 2.0),
            (Process::Gamma(4.0), 0.5),
        ] {
            let g = gaps(steady(process), 100.0, 40_000);
            let (mean, cv) = mean_and_cv(&g);
            assert!(
                (mean - 0.01).abs() < 0.01 * 0.04,
                "{process:?}: mean gap {mean}"
            );
            assert!(
                (cv - cv_want).abs() < 0.06,
                "{process:?}: coefficient of variation {cv}"
            );
        }
    }

    #[test]
    fn a_time_ramp_rises_linearly_then_holds_the_rate() {
        let shape = Shape {
            process: Process::Constant,
            ramp: Some(Ramp::Seconds(10.0)),
        };
        let start = Instant::now();
        let mut a = Arrivals::new(start, Some(100.0), shape);
        let mut r = rng(Some(1), 0);
        let times: Vec<f64> = (0..3000)
            .map(|_| (a.next(&mut r) - start).as_secs_f64())
            .collect();
        // Over the ramp the expected count is rate t^2 / 2T: 500 by 10 s, 125 by 5 s.
        let by = |s: f64| times.iter().filter(|&&t| t < s).count();
        assert!((by(5.0) as i64 - 125).abs() <= 1, "{}", by(5.0));
        assert!((by(10.0) as i64 - 500).abs() <= 1, "{}", by(10.0));
        // Then the full rate: 100 a second.
        assert!((by(20.0) as i64 - 1500).abs() <= 1, "{}", by(20.0));
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn a_request_ramp_reaches_the_rate_at_its_last_request() {
        let shape = Shape {
            process: Process::Constant,
            ramp: Some(Ramp::Requests(100)),
        };
        let g = gaps(shape, 50.0, 300);
        // The k-th gap runs at rate (k + 1) / N.
        assert!((g[0] - 100.0 / 50.0).abs() < 1e-9, "{}", g[0]);
        assert!((g[49] - 2.0 / 50.0).abs() < 1e-9, "{}", g[49]);
        assert!(g[100..].iter().all(|x| (x - 0.02).abs() < 1e-9));
    }

    #[test]
    fn workers_join_a_concurrency_ramp_in_even_steps() {
        let shape = Shape {
            process: Process::Poisson,
            ramp: Some(Ramp::Seconds(8.0)),
        };
        assert_eq!(shape.worker_start(0, 4), None);
        assert_eq!(shape.worker_start(1, 4), Some(Ramp::Seconds(2.0)));
        assert_eq!(shape.worker_start(3, 4), Some(Ramp::Seconds(6.0)));
        let by_requests = Shape {
            process: Process::Poisson,
            ramp: Some(Ramp::Requests(100)),
        };
        assert_eq!(by_requests.worker_start(2, 4), Some(Ramp::Requests(50)));
        assert_eq!(Shape::default().worker_start(3, 4), None);
    }
}
