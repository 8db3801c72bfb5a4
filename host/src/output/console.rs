//! The tables printed at the end of each run and of the sweep (also written to
//! `performance_summary.txt` and the log).

use comfy_table::{presets::ASCII_FULL_CONDENSED, Cell, CellAlignment, Table};
use serde_json::Value;

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

/// The "Benchmarking summary" of one run.
pub fn summary_table(summary: &[(String, Value)]) -> String {
    let mut t = table(vec!["Key", "Value"]);
    for (k, v) in summary {
        t.add_row(vec![
            Cell::new(k),
            Cell::new(number(v)).set_alignment(CellAlignment::Right),
        ]);
    }
    format!("Benchmarking summary:\n{t}")
}

/// The "Percentile results" of one run: a row per metric, a column per percentile.
pub fn percentile_table(rows: &[Vec<(String, Value)>]) -> String {
    let Some(first) = rows.first() else {
        return String::new();
    };
    let mut header = vec!["Metric"];
    let labels: Vec<String> = rows.iter().map(|r| number(&r[0].1)).collect();
    header.extend(labels.iter().map(String::as_str));
    let mut t = table(header);
    for (col, (metric, _)) in first.iter().enumerate().skip(1) {
        let mut cells = vec![Cell::new(metric)];
        cells.extend(
            rows.iter()
                .map(|r| Cell::new(number(&r[col].1)).set_alignment(CellAlignment::Right)),
        );
        t.add_row(cells);
    }
    format!("Percentile results:\n{t}")
}

/// One finished run, for the sweep report.
pub struct RunOutcome {
    /// The run.
    pub spec: RunSpec,
    /// Its summary.
    pub summary: Vec<(String, Value)>,
    /// Its percentile rows.
    pub percentiles: Vec<Vec<(String, Value)>>,
}

fn get<'a>(pairs: &'a [(String, Value)], key: &str) -> &'a Value {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map_or(&Value::Null, |(_, v)| v)
}

fn pct<'a>(rows: &'a [Vec<(String, Value)>], label: &str, key: &str) -> &'a Value {
    rows.iter()
        .find(|r| r.first().is_some_and(|(_, v)| v == label))
        .map_or(&Value::Null, |r| get(r, key))
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
        .map(|r| {
            get(&r.summary, "Avg Output Tokens")
                .as_f64()
                .unwrap_or(0.0)
                .max(0.0)
                * get(&r.summary, "Success Requests").as_f64().unwrap_or(0.0)
        })
        .sum();
    let duration: f64 = runs
        .iter()
        .map(|r| get(&r.summary, "Test Duration (s)").as_f64().unwrap_or(0.0))
        .sum();
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
    let input_only = runs
        .first()
        .is_some_and(|r| !get(&r.summary, "Input Throughput (tok/s)").is_null());
    let perf = if input_only {
        input_overview(runs)
    } else {
        generation_overview(runs)
    };
    format!("Performance Test Summary Report\n{info}\nPerformance Overview:\n{perf}")
}

fn success_rate(s: &[(String, Value)]) -> String {
    let total = get(s, "Total Requests").as_f64().unwrap_or(0.0);
    let ok = get(s, "Success Requests").as_f64().unwrap_or(0.0);
    if total > 0.0 {
        format!("{:.1}%", 100.0 * ok / total)
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
        let s = &r.summary;
        perf.add_row(vec![
            number(get(s, "Concurrency")),
            number(get(s, "Request Rate (req/s)")),
            r.spec.number.to_string(),
            number(get(s, "Req Throughput (req/s)")),
            success_rate(s),
            number(get(s, "Avg Latency (s)")),
            number(pct(&r.percentiles, "99%", "Latency (s)")),
            number(get(s, "Input Throughput (tok/s)")),
            number(pct(&r.percentiles, "99%", "Input (tok/s)")),
            number(get(s, "Avg Input Tokens")),
            number(get(s, "Client CPU Util (%)")),
            number(get(s, "P99 Dispatch Lag (ms)")),
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
        let s = &r.summary;
        let success = success_rate(s);
        perf.add_row(vec![
            number(get(s, "Concurrency")),
            number(get(s, "Request Rate (req/s)")),
            r.spec.number.to_string(),
            number(get(s, "Req Throughput (req/s)")),
            number(get(s, "Output Throughput (tok/s)")),
            success,
            number(get(s, "Avg Latency (s)")),
            number(pct(&r.percentiles, "99%", "Latency (s)")),
            number(get(s, "Avg TTFT (ms)")),
            number(pct(&r.percentiles, "99%", "TTFT (ms)")),
            number(get(s, "Avg TPOT (ms)")),
            number(pct(&r.percentiles, "99%", "TPOT (ms)")),
            number(get(s, "Client CPU Util (%)")),
            number(get(s, "P99 Dispatch Lag (ms)")),
        ]);
    }
    perf
}
