//! The runs of a sweep: `--parallel` / `--number` pairs (or `--rate` / `--number` in open
//! loop), their warmup and their directory names.

use super::RunSpec;
use crate::cli::RunArgs;
use crate::error::usage;

pub(crate) fn runs(a: &RunArgs) -> anyhow::Result<Vec<RunSpec>> {
    if a.number.contains(&0) {
        return Err(usage("--number must be > 0 for every run"));
    }
    let warmup = |number: u64| -> u64 {
        if a.warmup_num >= 1.0 {
            a.warmup_num as u64
        } else if a.warmup_num > 0.0 {
            ((a.warmup_num * number as f64).round() as u64).max(1)
        } else {
            0
        }
    };
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
        if let Some(r) = a.rate.iter().find(|r| r.is_nan() || **r <= 0.0) {
            return Err(usage(format!(
                "--open-loop needs every --rate > 0 (requests per second), got {r}"
            )));
        }
        return Ok(a
            .rate
            .iter()
            .zip(&a.number)
            .map(|(&rate, &number)| RunSpec {
                parallel: None,
                number,
                rate: Some(rate),
                warmup: warmup(number),
                label: format!("rate_{}_number_{number}", fmt_rate(rate)),
            })
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
        });
    }
    Ok(specs)
}

/// A rate as it appears in a directory name (`2`, `0.5`).
pub fn fmt_rate(rate: f64) -> String {
    if rate.fract() == 0.0 {
        format!("{}", rate as i64)
    } else {
        format!("{rate}")
    }
}
