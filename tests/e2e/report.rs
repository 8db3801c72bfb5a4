//! The HTML report, `perf report`, `perf compare` and `perf dashboard`, opened in a real
//! headless Chromium: every chart rendered, with the values of the JSON files, with the
//! network unreachable; the dashboard clicked through list -> report -> compare, its form's
//! validation errors shown, and its live view followed while a run goes. The screenshots of
//! the README come from these tests (`target/screenshots/`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use perf_tests::browser::{block_on, Browser};
use perf_tests::{perf_bin, perf_in, text};
use serde_json::Value;

fn json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // evalscope's files may hold NaN; none of the values compared here does.
    serde_json::from_str(&text.replace("NaN", "null")).expect("json")
}

/// A sweep of `parallel` levels against the built-in simulator, in `dir/out/<name>/`.
fn sweep(dir: &Path, name: &str, parallel: &[&str], number: &[&str], extra: &[&str]) -> PathBuf {
    let mut args = vec![
        "--api",
        "mock",
        "--port",
        "0",
        "--prompt",
        "Tell me about Rust",
        "--parallel",
    ];
    args.extend(parallel);
    args.push("--number");
    args.extend(number);
    args.extend(["--outputs-dir", "out", "--no-timestamp", "--name", name]);
    args.extend(extra);
    let out = perf_in(dir, &args);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    dir.join("out").join(name)
}

/// The runs of a benchmark directory by load, as the report orders them: (summary,
/// percentile rows).
fn runs(bench: &Path) -> Vec<(Value, Value)> {
    let mut runs: Vec<(Value, Value)> = std::fs::read_dir(bench)
        .expect("dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("benchmark_summary.json").is_file())
        .map(|p| {
            (
                json(&p.join("benchmark_summary.json")),
                json(&p.join("benchmark_percentile.json")),
            )
        })
        .collect();
    runs.sort_by(|a, b| {
        let load = |s: &Value| s["Concurrency"].as_f64().unwrap_or(0.0);
        load(&a.0).total_cmp(&load(&b.0))
    });
    runs
}

fn p99(percentiles: &Value, metric: &str) -> f64 {
    percentiles
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["Percentiles"] == "99%"))
        .and_then(|r| r[metric].as_f64())
        .expect("a 99% row")
}

/// The numbers table of chart `id`: its rows of cells (the heading row first).
async fn chart_table(b: &Browser, id: &str) -> Vec<Vec<String>> {
    let v = b
        .js(&format!(
            "return Array.from(document.querySelectorAll('#{id} table.chart-data tr'))\
             .map(tr => Array.from(tr.cells).map(c => c.textContent));"
        ))
        .await;
    serde_json::from_value(v).expect("rows of cells")
}

/// The column `name` of a chart's table, as numbers.
fn column(table: &[Vec<String>], name: &str) -> Vec<f64> {
    let i = table[0]
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name} in {:?}", table[0]));
    table[1..]
        .iter()
        .map(|r| r[i].parse::<f64>().unwrap_or_else(|_| panic!("{:?}", r)))
        .collect()
}

fn assert_same(got: &[f64], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: {got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g - w).abs() <= 1e-9 * w.abs().max(1.0),
            "{what}: {got:?} vs {want:?}"
        );
    }
}

/// Every chart of the page open in `b` is drawn: an SVG of a real size with a marker per
/// point. Returns the chart ids.
async fn every_chart_drawn(b: &Browser) -> Vec<String> {
    let figs = b
        .js(
            "return Array.from(document.querySelectorAll('figure.chart')).map(f => {\
               const s = f.querySelector('svg'); const r = s ? s.getBoundingClientRect() : null;\
               return {id: f.id, w: r ? r.width : 0, h: r ? r.height : 0,\
                       circles: s ? s.querySelectorAll('circle').length : 0,\
                       texts: s ? s.querySelectorAll('text').length : 0,\
                       points: Number(f.dataset.points)}; });",
        )
        .await;
    let figs = figs.as_array().expect("a list").clone();
    assert!(!figs.is_empty(), "the page has charts");
    for f in &figs {
        let (w, h) = (
            f["w"].as_f64().unwrap_or(0.0),
            f["h"].as_f64().unwrap_or(0.0),
        );
        assert!(
            w > 200.0 && h > 100.0,
            "chart drawn at a readable size: {f}"
        );
        let (circles, points) = (f["circles"].as_u64(), f["points"].as_u64());
        let (circles, points) = (circles.unwrap_or(0), points.unwrap_or(0));
        assert!(points > 0, "a chart with points: {f}");
        // Scatter legends add one marker per series.
        assert!(
            circles >= points && circles <= points + 2,
            "one marker per point: {f}"
        );
        assert!(
            f["texts"].as_u64().unwrap_or(0) >= 4,
            "axes are labelled: {f}"
        );
    }
    figs.iter()
        .map(|f| f["id"].as_str().unwrap_or("").to_string())
        .collect()
}

/// The y positions of a one-line chart's markers, left to right.
async fn marker_heights(b: &Browser, id: &str) -> Vec<f64> {
    let v = b
        .js(&format!(
            "return Array.from(document.querySelectorAll('#{id} svg circle'))\
             .map(c => Number(c.getAttribute('cy')));"
        ))
        .await;
    serde_json::from_value(v).expect("numbers")
}

/// The report of `bench` open in `b` shows the sweep's JSON figures, drawn in their order.
async fn report_matches_files(b: &Browser, bench: &Path) {
    let runs = runs(bench);
    let ids = every_chart_drawn(b).await;
    for id in [
        "sweep-latency",
        "sweep-rps",
        "sweep-tokens",
        "sweep-success",
    ] {
        assert!(ids.contains(&id.to_string()), "{id} in {ids:?}");
    }
    let rps: Vec<f64> = runs
        .iter()
        .map(|r| r.0["Req Throughput (req/s)"].as_f64().expect("rps"))
        .collect();
    let table = chart_table(b, "sweep-rps").await;
    assert_same(&column(&table, "Throughput"), &rps, "requests per second");
    let latency = chart_table(b, "sweep-latency").await;
    let avg: Vec<f64> = runs
        .iter()
        .map(|r| r.0["Avg Latency (s)"].as_f64().expect("latency"))
        .collect();
    let p99s: Vec<f64> = runs.iter().map(|r| p99(&r.1, "Latency (s)")).collect();
    assert_same(&column(&latency, "Avg"), &avg, "average latency");
    assert_same(&column(&latency, "P99"), &p99s, "p99 latency");
    let loads: Vec<String> = latency[1..].iter().map(|r| r[0].clone()).collect();
    let want: Vec<String> = runs
        .iter()
        .map(|r| r.0["Concurrency"].to_string())
        .collect();
    assert_eq!(loads, want, "one point per load, in order");
    // The drawing encodes the numbers: a higher rate is a higher marker (smaller y).
    let heights = marker_heights(b, "sweep-rps").await;
    assert_eq!(heights.len(), rps.len());
    for i in 0..rps.len() {
        for j in 0..rps.len() {
            if rps[i] > rps[j] * 1.01 {
                assert!(heights[i] < heights[j], "rps {rps:?} drawn at {heights:?}");
            }
        }
    }
    let overview = b
        .js("return document.querySelectorAll('#overview tr').length;")
        .await;
    assert_eq!(
        overview.as_u64(),
        Some(runs.len() as u64 + 1),
        "a row per run"
    );
}

fn file_url(path: &Path) -> String {
    format!("file://{}", path.canonicalize().expect("exists").display())
}

#[test]
fn the_report_of_a_sweep_draws_every_chart_from_its_files_with_the_network_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bench = sweep(
        dir.path(),
        "sweep",
        &["1", "2", "4"],
        &["6", "12", "24"],
        &[],
    );
    let report = bench.join("perf_report.html");
    let html = std::fs::read_to_string(&report).expect("the sweep wrote perf_report.html");
    for tag in ["<script", "<link", "<img", "@import", "url("] {
        assert!(!html.contains(tag), "self-contained: no {tag}");
    }
    block_on(async {
        let b = Browser::start(1280, 2200).await;
        b.open(&file_url(&report), "figure.chart svg").await;
        report_matches_files(&b, &bench).await;
        assert_eq!(b.resources_requested().await, 0, "nothing fetched");
        let runs = b
            .js("return document.querySelectorAll('section.run').length;")
            .await;
        assert_eq!(runs.as_u64(), Some(3));
        for id in [
            "run-0-latency",
            "run-0-ttft",
            "run-0-lag",
            "run-0-completions",
        ] {
            let n = b
                .js(&format!(
                    "return document.querySelectorAll('#{id} svg').length;"
                ))
                .await;
            assert_eq!(n.as_u64(), Some(1), "{id}");
        }
        let verdict = b
            .js("return document.querySelector('#run-0 .verdict').textContent;")
            .await;
        assert!(
            verdict.as_str().unwrap_or("").contains("client"),
            "the saturation verdict: {verdict}"
        );
        b.screenshot("report").await;
        b.close().await;
    });
}

/// A copy of an evalscope 1.14.1 outputs fixture in `dir`.
fn evalscope_fixture(dir: &Path, name: &str) -> PathBuf {
    let from = perf_tests::repo_root()
        .join("tests/fixtures/evalscope-1.14.1")
        .join(name);
    let to = dir.join(name);
    let mut stack = vec![(from, to.clone())];
    while let Some((f, t)) = stack.pop() {
        std::fs::create_dir_all(&t).expect("mkdir");
        for e in std::fs::read_dir(&f).expect("fixture").flatten() {
            let p = e.path();
            let q = t.join(e.file_name());
            if p.is_dir() {
                stack.push((p, q));
            } else {
                std::fs::copy(&p, &q).expect("copy");
            }
        }
    }
    to
}

#[test]
fn perf_report_reads_what_evalscope_wrote_and_names_what_it_lacks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bench = evalscope_fixture(dir.path(), "sweep");
    let out = perf_in(dir.path(), &["report", bench.to_str().expect("utf-8")]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("perf_report.html"), "{stdout}");
    assert!(
        stderr.contains("perf's client figures"),
        "says what evalscope's files lack: {stderr}"
    );
    block_on(async {
        let b = Browser::start(1280, 1600).await;
        b.open(
            &file_url(&bench.join("perf_report.html")),
            "figure.chart svg",
        )
        .await;
        report_matches_files(&b, &bench).await;
        let missing = b
            .js("return document.getElementById('missing').textContent;")
            .await;
        assert!(
            missing.as_str().unwrap_or("").contains("evalscope"),
            "{missing}"
        );
        b.close().await;
    });
}

#[test]
fn perf_report_on_a_directory_without_runs_exits_2_saying_what_to_give() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(
        dir.path()
            .join("outputs/20260101_000000/x/parallel_1_number_1"),
    )
    .expect("mkdir");
    std::fs::write(
        dir.path()
            .join("outputs/20260101_000000/x/parallel_1_number_1/benchmark_summary.json"),
        "{\"Concurrency\": 1}",
    )
    .expect("write");
    let out = perf_in(dir.path(), &["report", "outputs"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("outputs/20260101_000000/x"),
        "names the benchmark inside: {stderr}"
    );
    let out = perf_in(dir.path(), &["report", "nowhere"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).1.contains("nowhere: no such directory"),
        "{}",
        text(&out).1
    );
    std::fs::write(
        dir.path()
            .join("outputs/20260101_000000/x/parallel_1_number_1/benchmark_summary.json"),
        "{\"Concurrency\": ",
    )
    .expect("write");
    let out = perf_in(dir.path(), &["report", "outputs/20260101_000000/x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).1.contains("benchmark_summary.json"),
        "{}",
        text(&out).1
    );
}

#[test]
fn the_report_has_the_sections_of_conversations_and_of_an_sla_search() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mt = sweep(
        dir.path(),
        "mt",
        &["2"],
        &["4"],
        &[
            "--multi-turn",
            "--dataset",
            "random_multi_turn",
            "--min-turns",
            "2",
            "--max-turns",
            "3",
            "--max-tokens",
            "8",
            "--tokenizer-path",
            perf_tests::tokenizer_dir("qwen3").to_str().expect("utf-8"),
        ],
    );
    let html = std::fs::read_to_string(mt.join("perf_report.html")).expect("report");
    assert!(html.contains("Conversations (multi-turn)") && html.contains("class=\"traces\""));
    let out = perf_in(
        dir.path(),
        &[
            "--api",
            "mock",
            "--port",
            "0",
            "--prompt",
            "hi",
            "--max-tokens",
            "8",
            "--sla-auto-tune",
            "--sla-params",
            r#"[{"p99_latency": "<=5s"}]"#,
            "--sla-upper-bound",
            "4",
            "--sla-num-runs",
            "1",
            "--outputs-dir",
            "out",
            "--no-timestamp",
            "--name",
            "sla",
        ],
    );
    assert!(out.status.success(), "{}", text(&out).1);
    let html =
        std::fs::read_to_string(dir.path().join("out/sla/perf_report.html")).expect("report");
    assert!(
        html.contains("<h2>SLA search</h2>") && html.contains("<h3>Answers</h3>"),
        "SLA section"
    );
    assert!(
        html.contains("data-label=\"sla_parallel_4_run_0\""),
        "the probes' runs"
    );
}

#[test]
fn perf_compare_puts_benchmarks_side_by_side_with_the_change_in_percent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let before = sweep(dir.path(), "before", &["1", "4"], &["4", "16"], &[]);
    let after = sweep(
        dir.path(),
        "after",
        &["1", "4"],
        &["4", "16"],
        &["--mock-tpot-ms", "2"],
    );
    let html = dir.path().join("cmp.html");
    let out = perf_in(
        dir.path(),
        &[
            "compare",
            before.to_str().expect("utf-8"),
            after.to_str().expect("utf-8"),
            "--html",
            html.to_str().expect("utf-8"),
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("[1] before (baseline)") && stdout.contains("[2] after"),
        "{stdout}"
    );
    assert!(
        stdout.contains("concurrency 1") && stdout.contains("concurrency 4"),
        "{stdout}"
    );
    // A faster decode: lower latency, shown as a negative change.
    let latency = stdout
        .lines()
        .find(|l| l.contains("Avg Latency (s)"))
        .expect("a latency row");
    assert!(latency.contains("-"), "{latency}");
    block_on(async {
        let b = Browser::start(1280, 1400).await;
        b.open(&file_url(&html), "table.compare").await;
        every_chart_drawn(&b).await;
        assert_eq!(b.resources_requested().await, 0, "nothing fetched");
        let rps = chart_table(&b, "compare-req-throughput-req-s").await;
        let want = |bench: &Path| -> Vec<f64> {
            runs(bench)
                .iter()
                .map(|r| r.0["Req Throughput (req/s)"].as_f64().expect("rps"))
                .collect()
        };
        // The page rounds for reading; the chart's numbers are the files'.
        assert_same(&column(&rps, "before"), &want(&before), "before");
        assert_same(&column(&rps, "after"), &want(&after), "after");
        let changes = b
            .js("return Array.from(document.querySelectorAll('table.compare td.up, table.compare td.down')).length;")
            .await;
        assert!(
            changes.as_u64().unwrap_or(0) > 0,
            "changes are marked better or worse"
        );
        b.close().await;
    });
    let out = perf_in(
        dir.path(),
        &["compare", before.to_str().expect("utf-8"), "nowhere"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out).1);
}

/// `perf dashboard` on a free port over `outputs`; killed when dropped.
struct Dashboard {
    child: Child,
    url: String,
}

impl Dashboard {
    fn start(outputs: &Path) -> Dashboard {
        let mut child = Command::new(perf_bin())
            .args(["dashboard", "--port", "0", "--outputs-dir"])
            .arg(outputs)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("perf dashboard starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("a line");
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .trim_end_matches('/')
            .to_string();
        Dashboard { child, url }
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_dashboard_lists_reports_compares_and_starts_a_run_it_follows_live() {
    let dir = tempfile::tempdir().expect("tempdir");
    sweep(dir.path(), "before", &["1", "4"], &["4", "16"], &[]);
    sweep(
        dir.path(),
        "after",
        &["1", "4"],
        &["4", "16"],
        &["--mock-tpot-ms", "2"],
    );
    let outputs = dir.path().join("out");
    let dash = Dashboard::start(&outputs);
    block_on(async {
        let b = Browser::start(1280, 900).await;
        // The list, then a report.
        b.open(&format!("{}/", dash.url), "#runs").await;
        let rows = b
            .js("return document.querySelectorAll('#runs tr[data-dir]').length;")
            .await;
        assert_eq!(rows.as_u64(), Some(2));
        b.screenshot("dashboard-list").await;
        b.click("#runs tr[data-dir='before'] a.report-link").await;
        b.wait_for("figure.chart svg").await;
        let ids = every_chart_drawn(&b).await;
        assert!(ids.contains(&"sweep-rps".to_string()), "{ids:?}");
        assert_eq!(b.resources_requested().await, 0, "the pages need no CDN");
        // Back to the list; compare the two.
        b.click("#nav-runs").await;
        b.wait_for("#runs").await;
        b.click("#runs tr[data-dir='before'] input[name=dir]").await;
        b.click("#runs tr[data-dir='after'] input[name=dir]").await;
        b.click("#compare").await;
        b.wait_for("table.compare").await;
        let heads = b
            .js("return document.querySelector('table.compare tr').textContent;")
            .await;
        let heads = heads.as_str().unwrap_or("").to_string();
        assert!(
            heads.find("before") < heads.find("after"),
            "the earlier is [1]: {heads}"
        );
        assert!(
            heads.contains("before") && heads.contains("after"),
            "{heads}"
        );
        every_chart_drawn(&b).await;
        b.screenshot("dashboard-compare").await;
        // A run from the form: a mistake first, shown as perf says it.
        b.click("#nav-new").await;
        b.wait_for("#new-run").await;
        b.fill("#f-api", "mock").await;
        // The built-in simulator on a port of its own (other tests run beside this one).
        b.fill("#f-extra", "--port 0").await;
        b.fill("#f-prompt", "Tell me about Rust").await;
        b.fill("#f-parallel", "1 2").await;
        b.fill("#f-number", "5").await;
        b.click("#start").await;
        b.wait_for("#errors").await;
        let errors = b
            .js("return document.getElementById('errors').textContent;")
            .await;
        assert!(
            errors
                .as_str()
                .unwrap_or("")
                .contains("--parallel has 2 value(s)"),
            "{errors}"
        );
        b.screenshot("dashboard-form-errors").await;
        b.fill("#f-parallel", "4").await;
        b.fill("#f-number", "60").await;
        b.fill("#f-name", "live").await;
        b.click("#start").await;
        b.wait_for("#processed").await;
        // The live view changes while the run goes, then says it completed.
        let mut seen = Vec::new();
        let mut shot = false;
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let s = b
                .js("return [document.getElementById('status').textContent,\
                            Number(document.getElementById('processed').textContent),\
                            document.querySelectorAll('#live-ttft svg circle').length];")
                .await;
            let status = s[0].as_str().unwrap_or("").to_string();
            let processed = s[1].as_u64().unwrap_or(0);
            if seen.last() != Some(&processed) {
                seen.push(processed);
            }
            if !shot && processed > 10 && processed < 60 && s[2].as_u64().unwrap_or(0) > 0 {
                b.screenshot("dashboard-live").await;
                shot = true;
            }
            if status == "completed" {
                break;
            }
            assert!(
                status != "error" && status != "exited",
                "the run failed: {s}"
            );
            assert!(Instant::now() < deadline, "no completion: {seen:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(seen.len() >= 3, "the view changed during the run: {seen:?}");
        assert_eq!(seen.last(), Some(&60));
        assert!(shot, "saw the run half-way: {seen:?}");
        let report = b
            .js("return document.getElementById('report').hidden;")
            .await;
        assert_eq!(report, Value::Bool(false), "a link to the report");
        b.click("#nav-runs").await;
        b.wait_for("#runs").await;
        let rows = b
            .js("return document.querySelectorAll('#runs tr[data-dir]').length;")
            .await;
        assert_eq!(rows.as_u64(), Some(3), "the new run is listed");
        b.close().await;
    });
    // What the page started is a benchmark like any other.
    let started: Vec<PathBuf> = std::fs::read_dir(&outputs)
        .expect("outputs")
        .flatten()
        .map(|e| e.path().join("live"))
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(started.len(), 1);
    assert!(started[0].join("perf_report.html").is_file());
}
