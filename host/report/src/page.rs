//! The report page: what goes on it (sweep charts, the overview, one card per run, the
//! sections a run has), rendered by minijinja from `templates/report.html`.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::charts::{Chart, Figure, Series, Style};
use crate::load::{Benchmark, Run};
use crate::observe::{self, Best};
use crate::samples;

/// The report's style sheet (the dashboard's pages use it too).
pub const STYLE: &str = include_str!("../templates/style.css");

/// A table of text cells.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Table {
    /// Column headings.
    pub head: Vec<String>,
    /// Rows of cells.
    pub rows: Vec<Vec<String>>,
}

/// What the caller adds to the page.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// When the report was made, as the reader's clock says.
    pub generated: String,
    /// The dashboard's navigation bar (HTML), above the report.
    pub nav: Option<String>,
}

#[derive(Serialize)]
struct RunCard {
    id: String,
    label: String,
    load: String,
    summary: Vec<(String, String)>,
    verdict: Option<(bool, String)>,
    failures: Vec<(String, u64)>,
    percentiles: Table,
    charts: Vec<Figure>,
    traces: Option<Table>,
    server: Option<(String, Table)>,
    requests: usize,
    note: Option<String>,
}

#[derive(Serialize)]
struct Page {
    title: String,
    dir: String,
    generated: String,
    version: &'static str,
    info: Vec<(String, String)>,
    missing: Vec<String>,
    status: Option<String>,
    best: Vec<Best>,
    observations: Vec<String>,
    sweep: Vec<Figure>,
    overview: Table,
    runs: Vec<RunCard>,
    sla: Vec<(String, Table)>,
    nav: Option<String>,
}

/// The report of `b` as one self-contained HTML page.
pub fn render(b: &Benchmark, opts: &Options) -> Result<String, minijinja::Error> {
    let page = Page {
        title: b.title(),
        dir: b.dir.display().to_string(),
        generated: opts.generated.clone(),
        version: env!("CARGO_PKG_VERSION"),
        info: info(b),
        missing: b.missing.clone(),
        status: status(b),
        best: observe::best(b),
        observations: observe::observations(b),
        sweep: sweep_charts(b),
        overview: overview(b),
        runs: b.runs.iter().enumerate().map(|(i, r)| card(i, r)).collect(),
        sla: crate::sla::tables(b),
        nav: opts.nav.clone(),
    };
    let mut env = minijinja::Environment::new();
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    env.add_template("report.html", include_str!("../templates/report.html"))?;
    env.add_template("style.css", STYLE)?;
    env.get_template("report.html")?.render(&page)
}

fn status(b: &Benchmark) -> Option<String> {
    let p = b.progress.as_ref()?;
    match p.get("status").and_then(Value::as_str)? {
        "completed" => None,
        "running" => Some(format!(
            "This benchmark is still running ({}% of its requests done): the report shows what is written so far.",
            p.get("percent").map(Value::to_string).unwrap_or_default()
        )),
        _ => Some(format!(
            "This benchmark ended early ({}): the report shows what was measured.",
            p.get("reason").and_then(Value::as_str).unwrap_or("error")
        )),
    }
}

fn info(b: &Benchmark) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            out.push((k.to_string(), v));
        }
    };
    put("Model", b.arg("model"));
    put("Alias", b.arg("alias"));
    put("API", b.arg("api"));
    put("Endpoint", b.arg("url").map(|u| endpoint(&u)));
    put("Dataset", b.arg("dataset"));
    put(
        "Load",
        Some(if b.open_loop() {
            "open loop (--rate)".into()
        } else {
            "closed loop (--parallel)".into()
        }),
    );
    put("Runs", Some(b.runs.len().to_string()));
    let total: f64 = b.runs.iter().filter_map(|r| r.num("Total Requests")).sum();
    put("Requests", Some(crate::load::trim(total)));
    let time: f64 = b
        .runs
        .iter()
        .filter_map(|r| r.num("Test Duration (s)"))
        .sum();
    put("Test time", Some(format!("{} s", observe::fmt(Some(time)))));
    out
}

/// `scheme://user:key@host:port/path` as `host:port/path`: no credentials on the page.
pub fn endpoint(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let path = path.split(['?', '#']).next().unwrap_or("");
    format!("{host}/{path}")
}

/// A number as a table shows it.
pub fn number(v: f64) -> String {
    if !v.is_finite() {
        return String::new();
    }
    let s = format!("{v}");
    if s.len() <= 12 {
        return s;
    }
    let s = format!("{v:.6}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn value_text(v: &Value) -> String {
    match v {
        Value::Null => "n/a".into(),
        Value::Number(n) => n.as_f64().map(number).unwrap_or_else(|| n.to_string()),
        Value::String(s) => s.clone(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.into(),
        other => other.to_string(),
    }
}

/// A figure of a run, absent or an evalscope sentinel (-1) as None.
fn present(r: &Run, key: &str) -> Option<f64> {
    r.num(key).filter(|v| *v >= 0.0)
}

fn sweep_series(b: &Benchmark, name: &str, get: impl Fn(&Run) -> Option<f64>) -> Series {
    Series {
        name: name.to_string(),
        points: b
            .runs
            .iter()
            .enumerate()
            .filter_map(|(i, r)| get(r).filter(|v| v.is_finite()).map(|v| (i as f64, v)))
            .collect(),
    }
}

fn sweep_charts(b: &Benchmark) -> Vec<Figure> {
    let ticks: Vec<String> = b.runs.iter().map(|r| crate::load::trim(r.load())).collect();
    let x_label = if b.open_loop() {
        "request rate (req/s)"
    } else {
        "concurrency"
    };
    let pct = |label: &'static str, metric: &'static str| {
        move |r: &Run| r.percentile(label, metric).filter(|v| *v >= 0.0)
    };
    let s = |name: &str, get: &dyn Fn(&Run) -> Option<f64>| sweep_series(b, name, get);
    let charts = vec![
        (
            "sweep-latency",
            "Latency",
            "seconds",
            vec![
                s("Avg", &|r| present(r, "Avg Latency (s)")),
                s("P50", &pct("50%", "Latency (s)")),
                s("P99", &pct("99%", "Latency (s)")),
            ],
        ),
        (
            "sweep-ttft",
            "Time to first token",
            "ms",
            vec![
                s("Avg", &|r| present(r, "Avg TTFT (ms)")),
                s("P50", &pct("50%", "TTFT (ms)")),
                s("P99", &pct("99%", "TTFT (ms)")),
            ],
        ),
        (
            "sweep-tpot",
            "Time per output token and inter-token latency",
            "ms",
            vec![
                s("Avg TPOT", &|r| present(r, "Avg TPOT (ms)")),
                s("P99 TPOT", &pct("99%", "TPOT (ms)")),
                s("Avg ITL", &|r| present(r, "Avg ITL (ms)")),
                s("P99 ITL", &pct("99%", "ITL (ms)")),
            ],
        ),
        (
            "sweep-rps",
            "Requests per second",
            "req/s",
            vec![
                s("Throughput", &|r| present(r, "Req Throughput (req/s)")),
                s("Goodput", &|r| present(r, "Goodput (req/s)")),
            ],
        ),
        (
            "sweep-tokens",
            "Token throughput",
            "tok/s",
            vec![
                s("Output", &|r| present(r, "Output Throughput (tok/s)")),
                s("Total", &|r| present(r, "Total Throughput (tok/s)")),
                s("Input", &|r| present(r, "Run Input Throughput (tok/s)")),
            ],
        ),
        (
            "sweep-success",
            "Success rate",
            "%",
            vec![s("Succeeded", &|r| r.success_percent())],
        ),
        (
            "sweep-lag",
            "Dispatch lag behind the intended send time (perf)",
            "ms",
            vec![
                s("Avg", &|r| present(r, "Avg Dispatch Lag (ms)")),
                s("P99", &|r| present(r, "P99 Dispatch Lag (ms)")),
                s("Max", &|r| present(r, "Max Dispatch Lag (ms)")),
            ],
        ),
    ];
    charts
        .into_iter()
        .map(|(id, title, unit, series)| Chart {
            id: id.into(),
            title: title.into(),
            x_label: x_label.into(),
            y_label: unit.into(),
            style: Style::Line,
            x_ticks: Some(ticks.clone()),
            series,
            note: None,
        })
        .filter(|c| !c.is_empty())
        .map(|c| c.figure())
        .collect()
}

fn overview(b: &Benchmark) -> Table {
    let head = [
        "Load",
        "Requests",
        "Success %",
        "Req/s",
        "Output tok/s",
        "Avg latency (s)",
        "P99 latency (s)",
        "Avg TTFT (ms)",
        "P99 TTFT (ms)",
        "Avg TPOT (ms)",
        "Client CPU %",
    ];
    let cell = |v: Option<f64>| {
        v.map(|v| observe::fmt(Some(v)))
            .unwrap_or_else(|| "n/a".into())
    };
    let rows = b
        .runs
        .iter()
        .map(|r| {
            vec![
                r.load_label(),
                cell(r.num("Total Requests")),
                cell(r.success_percent()),
                cell(present(r, "Req Throughput (req/s)")),
                cell(present(r, "Output Throughput (tok/s)")),
                cell(present(r, "Avg Latency (s)")),
                cell(r.percentile("99%", "Latency (s)")),
                cell(present(r, "Avg TTFT (ms)")),
                cell(r.percentile("99%", "TTFT (ms)")),
                cell(present(r, "Avg TPOT (ms)")),
                cell(r.num("Client CPU Util (%)")),
            ]
        })
        .collect();
    Table {
        head: head.iter().map(|s| s.to_string()).collect(),
        rows,
    }
}

fn card(i: usize, r: &Run) -> RunCard {
    let (charts, requests, note) = match &r.db {
        Some(db) => match samples::read(db) {
            Ok(s) => (run_charts(i, &s), s.len(), None),
            Err(e) => (
                Vec::new(),
                0,
                Some(format!("benchmark_data.db could not be read: {e}")),
            ),
        },
        None => (
            Vec::new(),
            0,
            Some("no benchmark_data.db: no per-request charts".into()),
        ),
    };
    RunCard {
        id: format!("run-{i}"),
        label: r.label.clone(),
        load: r.load_label(),
        summary: r
            .summary
            .iter()
            .filter(|(k, _)| !k.starts_with("Failed: "))
            .map(|(k, v)| (k.clone(), value_text(v)))
            .collect(),
        verdict: verdict(r),
        failures: r.failures(),
        percentiles: table_of_rows(&r.percentiles),
        charts,
        traces: r.traces.as_ref().and_then(trace_table),
        server: r
            .server
            .as_ref()
            .map(|v| server_table(v, &|x| observe::fmt(Some(x)))),
        requests,
        note,
    }
}

fn verdict(r: &Run) -> Option<(bool, String)> {
    let saturated = r.summary.get("Client Saturated")?.as_bool()?;
    let cpu = observe::fmt(r.num("Client CPU Util (%)"));
    let lag = observe::fmt(r.num("P99 Dispatch Lag (ms)"));
    Some(if saturated {
        (
            true,
            format!("The client was saturated (CPU {cpu}% of a core, p99 dispatch lag {lag} ms): these numbers may include perf's own delay."),
        )
    } else {
        (
            false,
            format!("The client kept up (CPU {cpu}% of a core, p99 dispatch lag {lag} ms): the numbers are the server's."),
        )
    })
}

/// Rows of JSON objects as a table, columns in the first row's order.
pub fn table_of_rows(rows: &[Map<String, Value>]) -> Table {
    let Some(first) = rows.first() else {
        return Table::default();
    };
    let head: Vec<String> = first.keys().cloned().collect();
    Table {
        rows: rows
            .iter()
            .map(|r| {
                head.iter()
                    .map(|k| r.get(k).map(value_text).unwrap_or_default())
                    .collect()
            })
            .collect(),
        head,
    }
}

/// `server_metrics_summary.json` as a table, numbers written by `number`: the server's
/// figures beside the client's, and a caption naming the scraped URL and the scrapes. The
/// report and the console both show it.
pub fn server_table(v: &Value, number: &dyn Fn(f64) -> String) -> (String, Table) {
    let f = |x: &Value| x.as_f64().map(number).unwrap_or_default();
    let mut rows = Vec::new();
    if let Some(Value::Object(p)) = v.get("percentiles") {
        for (k, m) in p {
            let c = &m["client"];
            rows.push(vec![
                k.clone(),
                f(&m["p50"]),
                f(&m["p90"]),
                f(&m["p99"]),
                f(&m["mean"]),
                f(&c["p50"]),
                f(&c["p90"]),
                f(&c["p99"]),
            ]);
        }
    }
    if let Some(Value::Object(t)) = v.get("tokens") {
        for (k, m) in t {
            let mut row = vec![k.clone(), String::new(), String::new(), String::new()];
            row.push(format!("{} (delta)", f(&m["server_delta"])));
            row.push(format!("{} (total)", f(&m["client_total"])));
            row.extend([String::new(), String::new()]);
            rows.push(row);
        }
    }
    if let Some(Value::Object(p)) = v.get("peaks") {
        for (k, m) in p {
            let mut row = vec![
                format!("Peak {k}"),
                String::new(),
                String::new(),
                String::new(),
            ];
            row.push(f(&m["peak"]));
            row.extend([String::new(), String::new(), String::new()]);
            rows.push(row);
        }
    }
    let head = [
        "metric",
        "server p50",
        "p90",
        "p99",
        "server mean / value",
        "client p50",
        "p90",
        "p99",
    ];
    let caption = format!(
        "{} · {} scrapes, {} failed",
        v["url"].as_str().unwrap_or(""),
        v["scrapes"],
        v["scrape_failures"]
    );
    (
        caption,
        Table {
            head: head.iter().map(|s| s.to_string()).collect(),
            rows,
        },
    )
}

fn trace_table(v: &Value) -> Option<Table> {
    let rows: Vec<Map<String, Value>> = v
        .get("rows")?
        .as_array()?
        .iter()
        .filter_map(|r| r.as_object().cloned())
        .collect();
    (!rows.is_empty()).then(|| table_of_rows(&rows))
}

fn run_charts(i: usize, s: &samples::Samples) -> Vec<Figure> {
    if s.is_empty() {
        return Vec::new();
    }
    let thinned = (s.len() > 2 * samples::SLICES).then(|| {
        format!(
            "{} requests; drawn: the fastest and the slowest of each of {} time slices.",
            s.len(),
            samples::SLICES
        )
    });
    let scatter = |id: &str, title: &str, unit: &str, series: Vec<(&str, &[Option<f64>])>| Chart {
        id: format!("run-{i}-{id}"),
        title: title.into(),
        x_label: "send time (s from the first request)".into(),
        y_label: unit.into(),
        style: Style::Scatter,
        x_ticks: None,
        series: series
            .into_iter()
            .map(|(name, v)| Series {
                name: name.into(),
                points: s.over_time(v),
            })
            .collect(),
        note: thinned.clone(),
    };
    let mut charts = vec![
        scatter(
            "latency",
            "Latency per request",
            "seconds",
            vec![("latency", &s.latency_s)],
        ),
        scatter("ttft", "TTFT per request", "ms", vec![("TTFT", &s.ttft_ms)]),
        scatter("tpot", "TPOT per request", "ms", vec![("TPOT", &s.tpot_ms)]),
        scatter(
            "tokens",
            "Tokens per request",
            "tokens",
            vec![("output", &s.output_tokens), ("input", &s.input_tokens)],
        ),
    ];
    if s.has_lag {
        charts.push(scatter(
            "lag",
            "Dispatch lag per request (perf)",
            "ms",
            vec![("lag", &s.lag_ms)],
        ));
    }
    let (good, bad) = s.completions_per_s();
    charts.push(Chart {
        id: format!("run-{i}-completions"),
        title: "Completions per second".into(),
        x_label: "completion time (s)".into(),
        y_label: "req/s".into(),
        style: Style::Line,
        x_ticks: None,
        series: vec![
            Series {
                name: "succeeded".into(),
                points: good,
            },
            Series {
                name: "failed".into(),
                points: bad.into_iter().filter(|p| p.1 > 0.0).collect(),
            },
        ],
        note: None,
    });
    charts
        .into_iter()
        .filter(|c| !c.is_empty())
        .map(|c| c.figure())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_shown_has_no_credentials_or_query() {
        assert_eq!(
            endpoint("https://user:sk-secret@api.example:8443/v1/chat?key=x"),
            "api.example:8443/v1/chat"
        );
        assert_eq!(endpoint("http://127.0.0.1:8000"), "127.0.0.1:8000/");
    }

    #[test]
    fn numbers_are_short_and_exact_where_the_file_is() {
        assert_eq!(number(9.35), "9.35");
        assert_eq!(number(62.4711), "62.4711");
        assert_eq!(number(4.0), "4");
        assert_eq!(number(1.0 / 3.0), "0.333333");
        assert_eq!(number(f64::NAN), "");
    }
}

#[cfg(test)]
mod fixture_tests {
    use super::*;

    /// evalscope 1.14.1's own outputs of nine command lines (tests/fixtures/evalscope-1.14.1).
    fn fixtures() -> Vec<std::path::PathBuf> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/evalscope-1.14.1");
        let mut dirs: Vec<_> = std::fs::read_dir(&root)
            .expect("the evalscope fixtures")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        dirs
    }

    #[test]
    fn every_evalscope_fixture_renders_a_page_with_its_runs() {
        let mut rendered = 0;
        for dir in fixtures() {
            let Ok(b) = crate::load::benchmark(&dir) else {
                continue;
            };
            let html = render(&b, &Options::default()).expect("renders");
            assert_eq!(
                html.matches("<section class=\"run\"").count(),
                b.runs.len(),
                "{}",
                dir.display()
            );
            assert!(!html.contains("<script"), "no script");
            rendered += 1;
        }
        assert!(rendered >= 8, "rendered {rendered} fixtures");
    }

    #[test]
    fn an_open_loop_sweep_is_drawn_against_its_rates() {
        let dir = fixtures()
            .into_iter()
            .find(|d| d.ends_with("open-loop"))
            .expect("the open-loop fixture");
        let b = crate::load::benchmark(&dir).expect("reads");
        assert!(b.open_loop());
        let html = render(&b, &Options::default()).expect("renders");
        assert!(html.contains("request rate (req/s)"));
    }

    #[test]
    fn failures_are_observed_with_their_share() {
        let dir = fixtures()
            .into_iter()
            .find(|d| d.ends_with("all-failed"))
            .expect("the all-failed fixture");
        let b = crate::load::benchmark(&dir).expect("reads");
        let obs = crate::observe::observations(&b);
        assert!(
            obs.iter()
                .any(|o| o.contains("only 0.0% of requests succeeded")),
            "{obs:?}"
        );
    }
}
