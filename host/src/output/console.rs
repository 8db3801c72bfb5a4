//! The tables printed at the end of each run and of the sweep, laid out as evalscope 1.14.1
//! lays them out: per run a grouped "Benchmarking summary", the "Percentile results" and the
//! "Workload throughput"; after the sweep the "Performance Test Summary Report" with its
//! Basic Information, Performance Overview, Per-Request Metrics and Workload Throughput
//! (also written to `performance_summary.txt`). perf's own figures (client load, dispatch
//! lag, failures by kind) are a group of their own after evalscope's.

use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table};
use serde_json::Value;

use crate::aggregate::{metric, Percentiles, Summary};
use crate::output::workload::Workload;
use crate::plan::RunSpec;

fn number(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.to_string()
            } else {
                num(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Up to four decimals, trailing zeros dropped.
pub(crate) fn num(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let text = format!("{v:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".into()
    } else {
        text.to_string()
    }
}

fn opt(v: Option<f64>) -> String {
    v.map_or("-".into(), num)
}

fn table(header: Vec<&str>) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(header);
    t
}

fn right(text: impl Into<String>) -> Cell {
    Cell::new(text.into()).set_alignment(CellAlignment::Right)
}

/// The keys of [`Summary`] that are evalscope's, by group, as its summary table shows them:
/// a key with the value 0 (an average the run has none of) is left out of Latency and Tokens.
const LATENCY: [&str; 4] = [
    "Avg Latency (s)",
    "Avg TTFT (ms)",
    "Avg TPOT (ms)",
    "Avg ITL (ms)",
];
const TOKENS: [&str; 5] = [
    "Avg Input Tokens",
    "Avg Output Tokens",
    "Output Throughput (tok/s)",
    "Total Throughput (tok/s)",
    "Input Throughput (tok/s)",
];
const GENERAL: [&str; 9] = [
    "Test Duration (s)",
    "Concurrency",
    "Request Rate (req/s)",
    "Total Requests",
    "Success Requests",
    "Failed Requests",
    "Stream Requests",
    "Non-Stream Requests",
    "Req Throughput (req/s)",
];
/// `--enable-pd-metrics`' keys, shown under Latency when the run has them.
const PD: [&str; 3] = [
    "Avg Steady ITL (ms)",
    "Avg PD Handoff Latency (ms)",
    "Avg PD Handoff Overhead (ms)",
];
const CACHE: [&str; 1] = ["KV Cache Hit Rate (%)"];
const SPECULATIVE: [&str; 2] = ["Avg Decoded Tok/Iter", "Spec. Accept Rate"];

/// The "Benchmarking summary" of one run: evalscope's keys grouped as evalscope groups them,
/// then perf's own.
pub fn summary_table(summary: &Summary) -> String {
    let mut t = table(vec!["Metric", "Value"]);
    let Value::Object(map) = summary.to_json() else {
        return String::new();
    };
    let get = |k: &str| map.get(k).cloned().unwrap_or(Value::Null);
    let group = |t: &mut Table, name: &str| {
        t.add_row(vec![Cell::new(format!("── {name} ──")), Cell::new("")]);
    };
    group(&mut t, "General");
    for key in &GENERAL[..3] {
        t.add_row(vec![Cell::new(key), right(number(&get(key)))]);
    }
    t.add_row(vec![
        Cell::new("Total / Success / Failed"),
        right(format!(
            "{} / {} / {}",
            summary.total, summary.succeeded, summary.failed
        )),
    ]);
    if summary.streamed > 0 && summary.non_streamed > 0 {
        t.add_row(vec![
            Cell::new("Stream / Non-Stream"),
            right(format!("{} / {}", summary.streamed, summary.non_streamed)),
        ]);
    }
    t.add_row(vec![Cell::new(GENERAL[8]), right(number(&get(GENERAL[8])))]);
    let nonzero = |v: &Value| v.as_f64().is_some_and(|x| x != 0.0);
    group(&mut t, "Latency");
    for (i, key) in LATENCY.iter().enumerate() {
        let v = get(key);
        if i == 0 || nonzero(&v) {
            t.add_row(vec![Cell::new(key), right(number(&v))]);
        }
    }
    for key in PD.iter().filter(|k| map.contains_key(**k)) {
        t.add_row(vec![Cell::new(key), right(number(&get(key)))]);
    }
    group(&mut t, "Tokens");
    for (i, key) in TOKENS.iter().enumerate() {
        let v = get(key);
        if i == 0 || nonzero(&v) {
            t.add_row(vec![Cell::new(key), right(number(&v))]);
        }
    }
    for (name, keys) in [
        ("Multi-turn", &CACHE[..]),
        ("Speculative Decoding", &SPECULATIVE[..]),
    ] {
        if keys.iter().any(|k| map.contains_key(*k)) {
            group(&mut t, name);
            for key in keys.iter().filter(|k| map.contains_key(**k)) {
                t.add_row(vec![Cell::new(key), right(number(&get(key)))]);
            }
        }
    }
    group(&mut t, "Client and failures (perf)");
    let evalscope: Vec<&str> = GENERAL
        .iter()
        .chain(&LATENCY)
        .chain(&PD)
        .chain(&TOKENS)
        .chain(&CACHE)
        .chain(&SPECULATIVE)
        .copied()
        .collect();
    for (k, v) in map.iter().filter(|(k, _)| !evalscope.contains(&k.as_str())) {
        t.add_row(vec![Cell::new(k), right(number(v))]);
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
        cells.extend(
            p.rows
                .iter()
                .map(|r| right(opt(r.values.get(col).copied().flatten()))),
        );
        t.add_row(cells);
    }
    format!("Percentile results:\n{t}")
}

/// What is printed after a run (or a merged one): its summary and percentiles, then its
/// per-conversation and workload tables where it has them.
pub fn run_tables(
    summary: &Summary,
    percentiles: &Percentiles,
    traces: Option<&crate::aggregate::traces::TraceSummary>,
    workload: Option<&Workload>,
) -> String {
    let mut text = format!(
        "{}\n{}",
        summary_table(summary),
        percentile_table(percentiles)
    );
    if let Some(t) = traces {
        text = format!("{text}\n{}", trace_table(t));
    }
    if let Some(w) = workload {
        text = format!("{text}\n{}", workload_table(w));
    }
    text
}

/// The "Workload throughput" of one run.
pub fn workload_table(w: &Workload) -> String {
    let mut t = table(vec![
        "Metric (tok/s)",
        "Overall",
        "Last 30s",
        "Steady (drop 20%)",
    ]);
    for (metric, values) in &w.rows {
        let mut cells = vec![Cell::new(metric)];
        cells.extend(values.iter().map(|v| right(rate(*v))));
        t.add_row(cells);
    }
    format!("Workload throughput ({} samples):\n{t}", w.n_samples)
}

/// The per-conversation table of a `--multi-turn` run (`trace_summary.json`).
pub fn trace_table(t: &crate::aggregate::traces::TraceSummary) -> String {
    let mut header = vec!["Metric"];
    header.extend(crate::aggregate::traces::STAT_NAMES);
    let mut table = table(header);
    for row in &t.rows {
        let mut cells = vec![Cell::new(row.metric)];
        cells.extend(row.stats.iter().map(|v| right(format!("{v:.4}"))));
        table.add_row(cells);
    }
    format!(
        "Per-conversation metrics ({} conversations):\n{table}",
        t.n_traces
    )
}

/// The speed-benchmark table (`speed_benchmark.json`).
pub fn speed_table(rows: &[(i64, f64, f64)]) -> String {
    let mut t = table(vec!["Prompt Tokens", "Speed(tokens/s)", "GPU Memory(GB)"]);
    for (tokens, speed, memory) in rows {
        t.add_row(vec![
            right(tokens.to_string()),
            right(format!("{speed:?}")),
            right(format!("{memory:?}")),
        ]);
    }
    format!("Speed Benchmark Results:\n{t}")
}

/// Two decimals, trailing zeros dropped.
fn rate(v: f64) -> String {
    let text = format!("{v:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// One finished run, for the sweep report.
pub struct RunOutcome {
    /// The run.
    pub spec: RunSpec,
    /// Its summary.
    pub summary: Summary,
    /// Its percentiles.
    pub percentiles: Percentiles,
    /// Its workload throughput, when a request succeeded.
    pub workload: Option<Workload>,
    /// Why its database misses rows, if it does.
    pub write_error: Option<String>,
}

/// What the sweep report says about the invocation.
pub struct ReportInfo<'a> {
    /// `--model`.
    pub model: &'a str,
    /// The dataset (or `--prompt`).
    pub dataset: &'a str,
    /// `--api`.
    pub api: &'a str,
    /// The endpoint, credentials masked.
    pub endpoint: &'a str,
    /// The output directory.
    pub output: &'a str,
}

/// The report printed after the whole sweep (and written to `performance_summary.txt`).
pub fn sweep_report(info: &ReportInfo<'_>, runs: &[RunOutcome]) -> String {
    let generated: f64 = runs
        .iter()
        .map(|r| r.summary.avg_output_tokens.max(0.0) * r.summary.succeeded as f64)
        .sum();
    let duration: f64 = runs.iter().map(|r| r.summary.duration_s).sum();
    let mut basic = Table::new();
    basic.load_preset(UTF8_FULL_CONDENSED);
    for (k, v) in [
        ("Model", info.model.to_string()),
        ("Test Dataset", info.dataset.to_string()),
        ("API Type", info.api.to_string()),
        ("Endpoint", info.endpoint.to_string()),
        ("Total Generated", format!("{generated:.1} tokens")),
        (
            "Avg Output Rate",
            format!(
                "{:.2} tok/s",
                if duration > 0.0 {
                    generated / duration
                } else {
                    0.0
                }
            ),
        ),
        ("Total Test Time", format!("{duration:.2} s")),
        ("Output Path", info.output.to_string()),
    ] {
        basic.add_row(vec![k.to_string(), v]);
    }
    let input_only = runs.first().is_some_and(|r| r.summary.input_only());
    let mut text = format!("Performance Test Summary Report\n\nBasic Information:\n{basic}\n\n");
    if input_only {
        text += &format!("Performance Overview:\n{}\n", input_overview(runs));
    } else {
        text += &format!(
            "Performance Overview:\n{}\n\nPer-Request Metrics:\n{}\n",
            generation_overview(runs),
            per_request(runs)
        );
    }
    if runs.iter().any(|r| r.workload.is_some()) {
        text += &format!("\nWorkload Throughput:\n{}\n", workload_overview(runs));
    }
    text.trim_end().to_string()
}

fn success_rate(s: &Summary) -> String {
    if s.total > 0 {
        let rate = 100.0 * s.succeeded as f64 / s.total as f64;
        format!("{}%", num((rate * 10.0).round() / 10.0))
    } else {
        "-".into()
    }
}

fn conc(s: &Summary) -> String {
    if s.concurrency < 0 {
        "-".into()
    } else {
        s.concurrency.to_string()
    }
}

fn rate_label(s: &Summary) -> String {
    if s.request_rate < 0.0 {
        "-".into()
    } else {
        num(s.request_rate)
    }
}

/// Embeddings and rerank: latency and input throughput (evalscope's per-stream figure and
/// perf's over the run's wall time; the p99 of each request's own).
fn input_overview(runs: &[RunOutcome]) -> Table {
    let mut t = table(vec![
        "Conc.",
        "Rate",
        "Num",
        "RPS",
        "Avg Lat(s)",
        "P99 Lat(s)",
        "Avg Input tok/s",
        "P99 Input tok/s",
        "Run Input tok/s",
        "Avg Input Tokens",
        "Success",
        "Client CPU%",
        "P99 Lag(ms)",
    ]);
    for r in runs {
        let (s, p) = (&r.summary, &r.percentiles);
        t.add_row(vec![
            conc(s),
            rate_label(s),
            r.spec.number.to_string(),
            num(s.req_per_s),
            num(s.avg_latency_s),
            opt(p.get("99%", metric::LATENCY)),
            num(s.input_tok_per_s),
            opt(p.get("99%", metric::INPUT_TOK_S)),
            opt(s.run_input_tok_per_s),
            num(s.avg_input_tokens),
            success_rate(s),
            opt(s.client_cpu_util_percent),
            num(s.p99_dispatch_lag_ms),
        ]);
    }
    t
}

fn generation_overview(runs: &[RunOutcome]) -> Table {
    let goodput = runs.iter().any(|r| r.summary.goodput_req_per_s.is_some());
    let mut header = vec!["Conc.", "Rate", "Num", "RPS", "Gen/s", "Success"];
    if goodput {
        header.extend(["Goodput", "Good"]);
    }
    header.extend(["Client CPU%", "P99 Lag(ms)"]);
    let mut t = table(header);
    for r in runs {
        let s = &r.summary;
        let mut row = vec![
            conc(s),
            rate_label(s),
            r.spec.number.to_string(),
            num(s.req_per_s),
            num(s.output_tok_per_s),
            success_rate(s),
        ];
        if goodput {
            row.push(opt(s.goodput_req_per_s));
            row.push(
                s.good_percent
                    .map_or("-".into(), |g| format!("{}%", num(g))),
            );
        }
        row.push(opt(s.client_cpu_util_percent));
        row.push(num(s.p99_dispatch_lag_ms));
        t.add_row(row);
    }
    t
}

/// avg, p50, p99 and max of each per-request metric, per run.
fn per_request(runs: &[RunOutcome]) -> Table {
    let mut t = table(vec!["Conc.", "Rate", "Metric", "avg", "p50", "p99", "max"]);
    for r in runs {
        let (s, p) = (&r.summary, &r.percentiles);
        let at = |label: &str, m: &str| opt(p.get(label, m));
        let mut rows: Vec<[String; 5]> = [
            ("Latency (s)", s.avg_latency_s, metric::LATENCY),
            ("TTFT (ms)", s.avg_ttft_ms, metric::TTFT),
            ("TPOT (ms)", s.avg_tpot_ms, metric::TPOT),
            ("Input Tokens", s.avg_input_tokens, metric::INPUT_TOKENS),
            ("Output Tokens", s.avg_output_tokens, metric::OUTPUT_TOKENS),
        ]
        .into_iter()
        .map(|(name, avg, m)| {
            [
                name.to_string(),
                num(avg),
                at("50%", m),
                at("99%", m),
                at("max", m),
            ]
        })
        .collect();
        if s.avg_tpot_ms > 0.0 {
            rows.push(dash_row("Decode toks/s", 1000.0 / s.avg_tpot_ms));
        }
        for (name, avg, m) in [
            ("Steady ITL (ms)", s.avg_steady_itl_ms, metric::STEADY_ITL),
            (
                "PD Handoff (ms)",
                s.avg_pd_handoff_latency_ms,
                metric::PD_HANDOFF_LATENCY,
            ),
            (
                "PD Overhead (ms)",
                s.avg_pd_handoff_overhead_ms,
                metric::PD_HANDOFF_OVERHEAD,
            ),
        ] {
            if let Some(avg) = avg {
                rows.push([
                    name.to_string(),
                    num(avg),
                    at("50%", m),
                    at("99%", m),
                    at("max", m),
                ]);
            }
        }
        if let Some(l) = s.avg_decoded_tok_per_iter {
            rows.push(dash_row("Decoded Tok/Iter", l));
        }
        if let Some(a) = s.spec_accept_rate {
            rows.push(dash_row("Accept Rate", a));
        }
        for (i, row) in rows.into_iter().enumerate() {
            let (c, rt) = if i == 0 {
                (conc(s), rate_label(s))
            } else {
                (String::new(), String::new())
            };
            let mut cells = vec![Cell::new(c), Cell::new(rt), Cell::new(&row[0])];
            cells.extend(row[1..].iter().map(|v| right(v.clone())));
            t.add_row(cells);
        }
    }
    t
}

fn dash_row(name: &str, avg: f64) -> [String; 5] {
    [
        name.to_string(),
        num((avg * 100.0).round() / 100.0),
        "-".into(),
        "-".into(),
        "-".into(),
    ]
}

fn workload_overview(runs: &[RunOutcome]) -> Table {
    let mut t = table(vec![
        "Conc.",
        "Rate",
        "Metric (tok/s)",
        "Overall",
        "Last 30s",
        "Steady (drop 20%)",
    ]);
    for r in runs {
        let Some(w) = &r.workload else { continue };
        for (i, (metric, values)) in w.rows.iter().enumerate() {
            let (c, rt) = if i == 0 {
                (conc(&r.summary), rate_label(&r.summary))
            } else {
                (String::new(), String::new())
            };
            let mut cells = vec![Cell::new(c), Cell::new(rt), Cell::new(metric)];
            cells.extend(values.iter().map(|v| right(rate(*v))));
            t.add_row(cells);
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_is_grouped_as_evalscope_groups_it() {
        let s = Summary {
            total: 10,
            succeeded: 9,
            failed: 1,
            streamed: 10,
            avg_latency_s: 0.5,
            avg_ttft_ms: 12.5,
            avg_input_tokens: 5.0,
            avg_output_tokens: 16.0,
            ..Summary::default()
        };
        let text = summary_table(&s);
        let general = text.find("── General ──").expect("General");
        let latency = text.find("── Latency ──").expect("Latency");
        let tokens = text.find("── Tokens ──").expect("Tokens");
        let perf = text.find("(perf) ──").expect("perf's group");
        assert!(
            general < latency && latency < tokens && tokens < perf,
            "{text}"
        );
        assert!(text.contains("10 / 9 / 1"), "{text}");
        assert!(
            text.contains("Avg TTFT (ms)") && !text.contains("Avg TPOT (ms)"),
            "{text}"
        );
        assert!(
            !text.contains("Stream / Non-Stream"),
            "all streamed: {text}"
        );
    }
}
