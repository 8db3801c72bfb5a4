//! The tables printed at the end of each run and of the sweep (also written to
//! `performance_summary.txt` and the log).

use comfy_table::{presets::ASCII_FULL_CONDENSED, Cell, CellAlignment, Table};
use serde_json::Value;

use crate::aggregate::{metric, Percentiles, Summary};
use crate::plan::RunSpec;

fn number(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.to_string()
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                format!("{f:.4}")
                    .trim_end_matches('0')
                    .trim_end_matches('.')
                    .to_string()
            }
        }
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn table(header: Vec<&str>) -> Table {
    let mut t = Table::new();
    t.load_preset(ASCII_FULL_CONDENSED);
    t.set_header(header);
    t
}

/// The "Benchmarking summary" of one run: every key of `benchmark_summary.json`.
pub fn summary_table(summary: &Summary) -> String {
    let mut t = table(vec!["Key", "Value"]);
    if let Value::Object(map) = summary.to_json() {
        for (k, v) in &map {
            t.add_row(vec![
                Cell::new(k),
                Cell::new(number(v)).set_alignment(CellAlignment::Right),
            ]);
        }
    }
    format!("Benchmarking summary:\n{t}")
}

/// The "Percentile results" of one run: a row per metric, a column per percentile.
pub fn percentile_table(p: &Percentiles) -> String {
    if p.rows.is_empty() {
        return String::new();
    }
    let mut header = vec!["Metric"];
    header.extend(p.rows.iter().map(|r| r.label));
    let mut t = table(header);
    for (col, metric) in p.metrics.iter().enumerate() {
        let mut cells = vec![Cell::new(metric)];
        cells.extend(p.rows.iter().map(|r| {
            Cell::new(opt(r.values.get(col).copied().flatten())).set_alignment(CellAlignment::Right)
        }));
        t.add_row(cells);
    }
    format!("Percentile results:\n{t}")
}

/// One finished run, for the sweep report.
pub struct RunOutcome {
    /// The run.
    pub spec: RunSpec,
    /// Its summary.
    pub summary: Summary,
    /// Its percentiles.
    pub percentiles: Percentiles,
    /// Why its database misses rows, if it does.
    pub write_error: Option<String>,
}

fn opt(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| number(&serde_json::json!(v)))
}

fn num(v: f64) -> String {
    number(&serde_json::json!(v))
}

/// The report printed after the whole sweep.
pub fn sweep_report(
    model: &str,
    endpoint: &str,
    api: &str,
    dataset: &str,
    output: &str,
    runs: &[RunOutcome],
) -> String {
    let mut info = table(vec!["Basic Information", ""]);
    let generated: f64 = runs
        .iter()
        .map(|r| r.summary.avg_output_tokens.max(0.0) * r.summary.succeeded as f64)
        .sum();
    let duration: f64 = runs.iter().map(|r| r.summary.duration_s).sum();
    for (k, v) in [
        ("Model", model.to_string()),
        ("Endpoint", endpoint.to_string()),
        ("API", api.to_string()),
        ("Dataset", dataset.to_string()),
        ("Total Generated", format!("{generated:.0} tokens")),
        ("Total Test Time", format!("{duration:.2} seconds")),
        ("Output Path", output.to_string()),
    ] {
        info.add_row(vec![k.to_string(), v]);
    }
    let input_only = runs.first().is_some_and(|r| r.summary.input_only());
    let perf = if input_only {
        input_overview(runs)
    } else {
        generation_overview(runs)
    };
    format!("Performance Test Summary Report\n{info}\nPerformance Overview:\n{perf}")
}

fn success_rate(s: &Summary) -> String {
    if s.total > 0 {
        format!("{:.1}%", 100.0 * s.succeeded as f64 / s.total as f64)
    } else {
        "-".into()
    }
}

/// Embeddings and rerank: latency and input throughput (the run's, over wall time; the p99 of
/// each request's own).
fn input_overview(runs: &[RunOutcome]) -> comfy_table::Table {
    let mut perf = table(vec![
        "Conc.",
        "Rate",
        "Num",
        "RPS",
        "Success",
        "Avg Lat(s)",
        "P99 Lat(s)",
        "Input tok/s",
        "P99 Req Input tok/s",
        "Avg Input Tokens",
        "Client CPU%",
        "P99 Lag(ms)",
    ]);
    for r in runs {
        let (s, p) = (&r.summary, &r.percentiles);
        perf.add_row(vec![
            s.concurrency.to_string(),
            num(s.request_rate),
            r.spec.number.to_string(),
            num(s.req_per_s),
            success_rate(s),
            num(s.avg_latency_s),
            opt(p.get("99%", metric::LATENCY)),
            opt(s.input_tok_per_s),
            opt(p.get("99%", metric::INPUT_TOK_S)),
            num(s.avg_input_tokens),
            opt(s.client_cpu_util_percent),
            num(s.p99_dispatch_lag_ms),
        ]);
    }
    perf
}

fn generation_overview(runs: &[RunOutcome]) -> comfy_table::Table {
    let mut perf = table(vec![
        "Conc.",
        "Rate",
        "Num",
        "RPS",
        "Gen/s",
        "Success",
        "Avg Lat(s)",
        "P99 Lat(s)",
        "Avg TTFT(ms)",
        "P99 TTFT(ms)",
        "Avg TPOT(ms)",
        "P99 TPOT(ms)",
        "Client CPU%",
        "P99 Lag(ms)",
    ]);
    for r in runs {
        let (s, p) = (&r.summary, &r.percentiles);
        perf.add_row(vec![
            s.concurrency.to_string(),
            num(s.request_rate),
            r.spec.number.to_string(),
            num(s.req_per_s),
            num(s.output_tok_per_s),
            success_rate(s),
            num(s.avg_latency_s),
            opt(p.get("99%", metric::LATENCY)),
            num(s.avg_ttft_ms),
            opt(p.get("99%", metric::TTFT)),
            num(s.avg_tpot_ms),
            opt(p.get("99%", metric::TPOT)),
            opt(s.client_cpu_util_percent),
            num(s.p99_dispatch_lag_ms),
        ]);
    }
    perf
}
