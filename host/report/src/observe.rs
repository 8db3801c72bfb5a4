//! The best configuration and plain-language observations over a sweep.

use serde::Serialize;

use crate::load::{trim, Benchmark, Run};

/// One line of the "best configuration" box.
#[derive(Debug, Clone, Serialize)]
pub struct Best {
    /// What it is best at.
    pub what: String,
    /// The run.
    pub run: String,
    /// The figure.
    pub value: String,
}

/// The best runs by request rate and by latency.
pub fn best(b: &Benchmark) -> Vec<Best> {
    let mut out = Vec::new();
    let by = |key: &str, higher: bool| -> Option<&Run> {
        let candidates = b
            .runs
            .iter()
            .filter(|r| r.num(key).is_some_and(|v| v >= 0.0));
        if higher {
            candidates.max_by(|x, y| cmp(x, y, key))
        } else {
            candidates.min_by(|x, y| cmp(x, y, key))
        }
    };
    if let Some(r) = by("Req Throughput (req/s)", true) {
        out.push(Best {
            what: "Highest request rate".into(),
            run: r.load_label(),
            value: format!("{} req/s", fmt(r.num("Req Throughput (req/s)"))),
        });
    }
    if let Some(r) = by("Output Throughput (tok/s)", true)
        .filter(|r| r.num("Output Throughput (tok/s)").is_some_and(|v| v > 0.0))
    {
        out.push(Best {
            what: "Highest output throughput".into(),
            run: r.load_label(),
            value: format!("{} tok/s", fmt(r.num("Output Throughput (tok/s)"))),
        });
    }
    if let Some(r) = by("Avg Latency (s)", false) {
        out.push(Best {
            what: "Lowest average latency".into(),
            run: r.load_label(),
            value: format!("{} s", fmt(r.num("Avg Latency (s)"))),
        });
    }
    if let Some(r) = by("Goodput (req/s)", true) {
        out.push(Best {
            what: "Highest goodput".into(),
            run: r.load_label(),
            value: format!("{} req/s", fmt(r.num("Goodput (req/s)"))),
        });
    }
    out
}

fn cmp(x: &Run, y: &Run, key: &str) -> std::cmp::Ordering {
    x.num(key)
        .unwrap_or(f64::NAN)
        .total_cmp(&y.num(key).unwrap_or(f64::NAN))
}

/// Observations in words, most important first.
pub fn observations(b: &Benchmark) -> Vec<String> {
    let mut out = Vec::new();
    let runs = &b.runs;
    for r in runs {
        if r.num("Client Saturated") == Some(1.0)
            || r.summary.get("Client Saturated").and_then(|v| v.as_bool()) == Some(true)
        {
            out.push(format!(
                "At {} the client itself was saturated (CPU {}% of a core, p99 dispatch lag {} \
                 ms): its latencies may include perf's own delay. Run perf on a larger machine \
                 or split the load over shards.",
                r.load_label(),
                fmt(r.num("Client CPU Util (%)")),
                fmt(r.num("P99 Dispatch Lag (ms)"))
            ));
        }
    }
    for r in runs {
        if let Some(p) = r.success_percent().filter(|p| *p < 95.0) {
            let why = r
                .failures()
                .first()
                .map(|(k, n)| format!(", mostly {k} ({n})"))
                .unwrap_or_default();
            out.push(format!(
                "At {} only {:.1}% of requests succeeded{why}.",
                r.load_label(),
                p
            ));
        }
    }
    if runs.len() >= 2 {
        sweep_observations(runs, &mut out);
    }
    for r in runs {
        let lag = r.num("P99 Dispatch Lag (ms)").unwrap_or(0.0);
        if r.rate().is_some() && lag > 10.0 {
            out.push(format!(
                "At {} requests left {} ms (p99) after their intended send time: the arrival \
                 schedule was not kept.",
                r.load_label(),
                fmt(Some(lag))
            ));
        }
    }
    if out.is_empty() && runs.len() == 1 {
        out.push(
            "One load level: sweep --parallel (or --rate) to see where throughput stops rising."
                .into(),
        );
    }
    out
}

fn sweep_observations(runs: &[Run], out: &mut Vec<String>) {
    let rps: Vec<f64> = runs
        .iter()
        .map(|r| r.num("Req Throughput (req/s)").unwrap_or(0.0))
        .collect();
    let (first, last) = (&runs[0], &runs[runs.len() - 1]);
    let peak = rps
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i);
    let n = rps.len();
    let gain = |i: usize| {
        if rps[i - 1] > 0.0 {
            rps[i] / rps[i - 1] - 1.0
        } else {
            0.0
        }
    };
    if peak + 1 < n {
        out.push(format!(
            "Throughput peaked at {} ({} req/s) and fell to {} req/s at {}: the server is \
             overloaded beyond it.",
            runs[peak].load_label(),
            fmt(Some(rps[peak])),
            fmt(Some(rps[n - 1])),
            last.load_label()
        ));
    } else if gain(n - 1) < 0.05 {
        out.push(format!(
            "Throughput stopped rising: {} to {} added {:.1}% requests per second. More load \
             only adds latency.",
            runs[n - 2].load_label(),
            last.load_label(),
            100.0 * gain(n - 1)
        ));
    } else {
        out.push(format!(
            "Throughput was still rising at the highest load tried ({}% more from {} to {}): \
             the server is not saturated yet; try more.",
            fmt(Some(100.0 * gain(n - 1))),
            runs[n - 2].load_label(),
            last.load_label()
        ));
    }
    let (l0, l1) = (
        first.num("Avg Latency (s)").unwrap_or(0.0),
        last.num("Avg Latency (s)").unwrap_or(0.0),
    );
    if l0 > 0.0 && l1 / l0 > 3.0 {
        out.push(format!(
            "Average latency grew {:.1}x, from {} s at {} to {} s at {}.",
            l1 / l0,
            fmt(Some(l0)),
            first.load_label(),
            fmt(Some(l1)),
            last.load_label()
        ));
    }
    let (t0, t1) = (
        first.num("Avg TTFT (ms)").unwrap_or(-1.0),
        last.num("Avg TTFT (ms)").unwrap_or(-1.0),
    );
    if t0 > 0.0 && t1 / t0 > 3.0 {
        out.push(format!(
            "Time to first token grew {:.1}x ({} ms to {} ms): requests queue before prefill.",
            t1 / t0,
            fmt(Some(t0)),
            fmt(Some(t1))
        ));
    }
}

/// A figure for prose: 4 significant digits at most.
pub fn fmt(v: Option<f64>) -> String {
    match v {
        None => "?".into(),
        Some(v) if v.abs() >= 1000.0 => trim(v.round()),
        Some(v) => {
            let digits = (3 - v.abs().max(1e-9).log10().floor() as i32).clamp(0, 6) as usize;
            let s = format!("{v:.digits$}");
            if s.contains('.') {
                s.trim_end_matches('0').trim_end_matches('.').to_string()
            } else {
                s
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_in_prose_have_few_digits() {
        assert_eq!(fmt(Some(62.4711)), "62.47");
        assert_eq!(fmt(Some(0.0158)), "0.0158");
        assert_eq!(fmt(Some(10692.45)), "10692");
        assert_eq!(fmt(Some(2.0)), "2");
        assert_eq!(fmt(None), "?");
    }
}
