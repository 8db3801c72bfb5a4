//! The runs of a sweep: `--parallel` / `--number` pairs (or `--rate` / `--number` in open
//! loop), their warmup and their directory names.

use super::RunSpec;
use crate::cli::RunArgs;
use crate::error::usage;

/// `--warmup-num` for a run of `number` requests: a count (>= 1), a fraction of `number`
/// (at least 1), or none.
pub fn warmup(warmup_num: f64, number: u64) -> u64 {
    if warmup_num >= 1.0 {
        warmup_num as u64
    } else if warmup_num > 0.0 {
        ((warmup_num * number as f64).round() as u64).max(1)
    } else {
        0
    }
}

/// One open-loop run of `number` requests at `rate` (-1: a trace's own schedule).
fn open_loop_run(a: &RunArgs, rate: f64, number: u64) -> RunSpec {
    RunSpec {
        parallel: None,
        number,
        rate: Some(rate),
        warmup: warmup(a.warmup_num, number),
        label: format!("rate_{}_number_{number}", python_float(rate)),
        share: None,
    }
}

/// The runs of the sweep; `schedule`: the dataset sends on its own schedule, so open-loop
/// runs need no `--rate`.
pub(crate) fn runs(a: &RunArgs, schedule: bool) -> anyhow::Result<Vec<RunSpec>> {
    if a.number.contains(&0) {
        return Err(usage("--number must be > 0 for every run"));
    }
    let warmup = |number: u64| warmup(a.warmup_num, number);
    if a.warmup_num.is_nan() || a.warmup_num < 0.0 {
        return Err(usage("--warmup-num must be >= 0"));
    }
    if a.open_loop {
        if a.rate.len() != a.number.len() {
            return Err(usage(format!(
                "--open-loop pairs --rate with --number, but --rate has {} value(s) and --number {}: give one --number per --rate",
                a.rate.len(),
                a.number.len()
            )));
        }
        if let Some(r) = a
            .rate
            .iter()
            .find(|r| !schedule && (r.is_nan() || **r <= 0.0))
        {
            return Err(usage(format!(
                "--open-loop needs every --rate > 0 (requests per second), got {r}"
            )));
        }
        return Ok(a
            .rate
            .iter()
            .zip(&a.number)
            .map(|(&rate, &number)| open_loop_run(a, rate, number))
            .collect());
    }
    if a.parallel.len() != a.number.len() {
        return Err(usage(format!(
            "--parallel has {} value(s) but --number has {}: they pair up (run i sends number[i] requests at parallel[i]), so give as many of each",
            a.parallel.len(),
            a.number.len()
        )));
    }
    if let Some(p) = a.parallel.iter().find(|p| **p <= 0) {
        return Err(usage(format!("--parallel must be > 0, got {p}")));
    }
    let rate = a.rate.first().copied().unwrap_or(-1.0);
    if !(rate > 0.0 || rate == -1.0) {
        return Err(usage(format!(
            "--rate must be > 0 requests per second, or -1 for no pacing; got {rate}"
        )));
    }
    let mut seen = std::collections::HashSet::new();
    let mut specs = Vec::new();
    for (&parallel, &number) in a.parallel.iter().zip(&a.number) {
        if !seen.insert((parallel, number)) {
            return Err(usage(format!(
                "the pair --parallel {parallel} / --number {number} appears twice; each run needs its own directory, so change one of them"
            )));
        }
        specs.push(RunSpec {
            parallel: Some(parallel as usize),
            number,
            rate: (rate > 0.0).then_some(rate),
            warmup: warmup(number),
            label: format!("parallel_{parallel}_number_{number}"),
            share: None,
        });
    }
    Ok(specs)
}

/// `x` as Python's `str(float)` writes it: evalscope names open-loop run directories
/// `rate_<str(rate)>_number_<n>`.
pub use perf_plugin_api::sdk::python_float;
