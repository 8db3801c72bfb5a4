//! Finding the limit, against the simulator: the SLA search, goodput, arrival processes and
//! ramp-ups, the over-saturation verdict, progress.json and the PD handoff metrics.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::engine::{f, perf_run, Run};

fn read_json(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text.replace(": NaN", ": null")).expect("valid JSON")
}

/// An object's keys, in order.
fn keys(v: &Value) -> Vec<&str> {
    v.as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect()
}

/// Every column of `column` of the run's rows, in request order.
fn column(r: &Run, label: &str, column: &str) -> Vec<f64> {
    let db = r.db(label);
    let mut stmt = db
        .prepare(&format!(
            "SELECT {column} FROM result ORDER BY request_index"
        ))
        .expect("prepare");
    let rows = stmt
        .query_map([], |row| row.get::<_, f64>(0))
        .expect("query")
        .map(|v| v.expect("value"))
        .collect();
    rows
}

fn mean_and_cv(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt() / mean)
}

/// A simulator of 4 slots, 0.37 s a request: at --parallel 4 nothing waits, at 5 one request
/// in five waits a whole request, so the p99 latency doubles. The search must answer 4.
#[test]
fn the_sla_search_finds_the_concurrency_the_capacity_implies() {
    let r = perf_run(&[
        "--mock-capacity",
        "4",
        "--sla-auto-tune",
        "--sla-params",
        r#"[{"p99_latency": "<=0.5s"}]"#,
        "--sla-num-runs",
        "1",
        "--sla-upper-bound",
        "16",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let summary = read_json(&r.root().join("sla_summary.json"));
    let keys = keys(&summary);
    // Doubling from 1 to the first failure at 8, then bisecting between 4 and 8.
    assert_eq!(
        keys,
        [
            "parallel_1",
            "parallel_2",
            "parallel_4",
            "parallel_8",
            "parallel_6",
            "parallel_5"
        ]
    );
    for (key, probe) in summary.as_object().expect("object") {
        let value: f64 = key["parallel_".len()..].parse().expect("value");
        assert_eq!(f(&probe["metrics"], "Concurrency"), value);
        assert_eq!(f(&probe["metrics"], "Total Requests"), 2.0 * value);
        assert_eq!(probe["percentiles"]["Percentiles"][9], "99%");
        let p99 = probe["percentiles"]["Latency (s)"][9]
            .as_f64()
            .expect("p99");
        assert_eq!(p99 <= 0.5, value <= 4.0, "{key}: p99 {p99}");
        assert!(r
            .root()
            .join(format!(
                "sla_tuning/sla_parallel_{value}_run_0/benchmark_summary.json"
            ))
            .exists());
    }
    let search = read_json(&r.root().join("sla_search.json"));
    assert_eq!(search["selections"][0]["selected_value"], 4);
    assert_eq!(search["selections"][0]["at_search_bound"], Value::Null);
    assert!(r.stdout.contains("SLA auto-tune: probes"), "{}", r.stdout);
    assert!(
        r.stdout.contains("p99_latency <= 0.5 s ┆ 4"),
        "{}",
        r.stdout
    );
    let text = std::fs::read_to_string(r.root().join("performance_summary.txt")).expect("report");
    assert!(text.contains("Selections"));
}

/// evalscope's rate search line, unchanged: the rate at a fixed concurrency, with repeats whose
/// spread is shown; the answer at the upper bound says so.
#[test]
fn the_rate_search_runs_evalscopes_command_line_and_flags_a_bound() {
    let r = perf_run(&[
        "--sla-auto-tune",
        "--sla-variable",
        "rate",
        "--sla-params",
        r#"[{"avg_latency": "<=2", "avg_ttft": "<=1000ms"}]"#,
        "--sla-num-runs",
        "2",
        "--sla-upper-bound",
        "8",
        "--sla-fixed-parallel",
        "16",
        "--sla-number-multiplier",
        "0.5",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let summary = read_json(&r.root().join("sla_summary.json"));
    let keys = keys(&summary);
    assert_eq!(keys, ["rate_1", "rate_2", "rate_4", "rate_8"]);
    // Two runs a probe: counts summed, the rate averaged.
    assert_eq!(f(&summary["rate_8"]["metrics"], "Total Requests"), 8.0);
    assert_eq!(
        f(&summary["rate_8"]["metrics"], "Request Rate (req/s)"),
        8.0
    );
    let args = read_json(
        &r.root()
            .join("sla_tuning/sla_rate_8_run_1/benchmark_args.json"),
    );
    assert_eq!(args["parallel"], 16);
    let search = read_json(&r.root().join("sla_search.json"));
    assert_eq!(search["selections"][0]["selected_value"], 8);
    assert_eq!(search["selections"][0]["at_search_bound"], "upper");
    assert!(search["probes"][0]["spread"]["avg_latency"]["cv_percent"].is_number());
    assert!(r.stdout.contains("raise --sla-upper-bound"), "{}", r.stdout);
}

#[test]
fn sla_flags_that_cannot_work_are_refused_with_exit_2() {
    for (args, why) in [
        (vec!["--sla-auto-tune"], "needs --sla-params"),
        (
            vec!["--sla-auto-tune", "--sla-params", r#"[{"p99_itl": "<=1"}]"#],
            "unknown SLA metric",
        ),
        (
            vec!["--sla-auto-tune", "--sla-params", r#"{"rps": "<=2s"}"#],
            "does not match the unit",
        ),
        (
            vec![
                "--sla-auto-tune",
                "--sla-variable",
                "batch",
                "--sla-params",
                r#"{"rps": ">=1"}"#,
            ],
            "parallel or rate",
        ),
    ] {
        let r = perf_run(&args);
        assert_eq!(r.code, Some(2), "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(why), "{args:?}: {}", r.stderr);
    }
}

/// Every fifth request fails; the others take 50 ms to the first token and 5 ms a token.
#[test]
fn goodput_counts_exactly_the_requests_within_every_objective() {
    let base = [
        "-n",
        "20",
        "--parallel",
        "4",
        "--no-test-connection",
        "--mock-output-tokens",
        "8",
        "--mock-fail-every",
        "5",
    ];
    let run = |slo: &[&str]| {
        let mut args = base.to_vec();
        args.push("--goodput");
        args.extend_from_slice(slo);
        let r = perf_run(&args);
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        r.json("parallel_4_number_20", "benchmark_summary.json")
    };
    let loose = run(&["ttft:1000", "tpot:50", "e2el:5000"]);
    assert_eq!(
        f(&loose, "Good Requests (%)"),
        80.0,
        "the 4 failures are not good"
    );
    let rate = 16.0 / f(&loose, "Test Duration (s)");
    assert!(
        (f(&loose, "Goodput (req/s)") - rate).abs() < 0.01 * rate,
        "{loose}"
    );
    let tight_ttft = run(&["ttft:20"]);
    assert_eq!(f(&tight_ttft, "Good Requests (%)"), 0.0);
    assert_eq!(f(&tight_ttft, "Goodput (req/s)"), 0.0);
    let tight_tpot = run(&["ttft:1000", "tpot:1"]);
    assert_eq!(f(&tight_tpot, "Good Requests (%)"), 0.0);
    // Goodput is perf's: after evalscope's keys.
    let keys: Vec<&String> = loose.as_object().expect("object").keys().collect();
    let at = |k: &str| keys.iter().position(|x| *x == k).expect(k);
    assert!(at("Goodput (req/s)") > at("Avg Output Tokens"));
    let r = perf_run(&["-n", "2", "--goodput", "ttft:abc"]);
    assert_eq!(r.code, Some(2));
    assert!(r.stderr.contains("METRIC:MILLISECONDS"), "{}", r.stderr);
}

/// Open loop at 400 requests/s: the intended send times of each process have the mean gap
/// of the rate and the process's dispersion.
#[test]
fn each_arrival_process_shapes_the_intended_send_times() {
    for (process, cv_want, tolerance) in [
        (vec!["--arrival", "constant"], 0.0, 0.01),
        (vec![], 1.0, 0.15),
        (vec!["--burstiness", "4"], 0.5, 0.1),
        (
            vec!["--arrival", "gamma", "--burstiness", "0.25"],
            2.0,
            0.45,
        ),
    ] {
        let mut args = vec![
            "--open-loop",
            "--rate",
            "400",
            "-n",
            "1200",
            "--seed",
            "5",
            "--no-test-connection",
            "--mock-ttft-ms",
            "1",
            "--mock-output-tokens",
            "2",
        ];
        args.extend_from_slice(&process);
        let r = perf_run(&args);
        assert_eq!(r.code, Some(0), "{process:?}: {}", r.stderr);
        let mut sends = column(&r, "rate_400.0_number_1200", "intended_send_epoch");
        sends.sort_by(f64::total_cmp);
        let gaps: Vec<f64> = sends.windows(2).map(|w| w[1] - w[0]).collect();
        let (mean, cv) = mean_and_cv(&gaps);
        assert!(
            (mean - 0.0025).abs() < 0.0025 * 0.12,
            "{process:?}: mean gap {mean}"
        );
        assert!(
            (cv - cv_want).abs() < tolerance,
            "{process:?}: coefficient of variation {cv}"
        );
    }
    let r = perf_run(&["-n", "2", "--arrival", "constant"]);
    assert_eq!(r.code, Some(2), "a shape without a rate");
    assert!(r.stderr.contains("give a --rate"), "{}", r.stderr);
    let r = perf_run(&[
        "-n",
        "2",
        "--rate",
        "5",
        "--arrival",
        "constant",
        "--burstiness",
        "2",
    ]);
    assert_eq!(r.code, Some(2));
}

/// The largest number of requests in flight at once among `[start, end)` intervals that begin
/// within `window` seconds of the first.
fn peak_in_flight(spans: &[(f64, f64)], t0: f64, window: (f64, f64)) -> usize {
    spans
        .iter()
        .filter(|(s, _)| *s - t0 >= window.0 && *s - t0 < window.1)
        .map(|(s, _)| spans.iter().filter(|(a, b)| a <= s && s < b).count())
        .max()
        .unwrap_or(0)
}

/// Four workers joining over 1.2 s: one alone for the first 0.3 s, all four after 0.9 s.
#[test]
fn a_concurrency_ramp_adds_workers_in_even_steps() {
    let r = perf_run(&[
        "--parallel",
        "4",
        "-n",
        "60",
        "--ramp-up-duration",
        "1.2",
        "--no-test-connection",
        "--mock-ttft-ms",
        "20",
        "--mock-tpot-ms",
        "5",
        "--mock-output-tokens",
        "8",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let label = "parallel_4_number_60";
    let starts = column(&r, label, "sent_epoch");
    let ends = column(&r, label, "completed_epoch");
    let spans: Vec<(f64, f64)> = starts.iter().copied().zip(ends.iter().copied()).collect();
    let t0 = starts.iter().copied().fold(f64::INFINITY, f64::min);
    assert_eq!(peak_in_flight(&spans, t0, (0.0, 0.27)), 1, "{spans:?}");
    assert_eq!(peak_in_flight(&spans, t0, (0.33, 0.57)), 2, "{spans:?}");
    assert_eq!(peak_in_flight(&spans, t0, (0.95, 10.0)), 4, "{spans:?}");
}

/// A rate ramp over 200 requests at 400/s: the first half of the ramp goes out at a quarter of
/// the rate on average, the requests after it at the full rate.
#[test]
fn a_rate_ramp_over_requests_starts_slow() {
    let r = perf_run(&[
        "--open-loop",
        "--rate",
        "400",
        "-n",
        "400",
        "--arrival",
        "constant",
        "--ramp-up-requests",
        "200",
        "--no-test-connection",
        "--mock-ttft-ms",
        "1",
        "--mock-output-tokens",
        "2",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let mut sends = column(&r, "rate_400.0_number_400", "intended_send_epoch");
    sends.sort_by(f64::total_cmp);
    let gap = |i: usize| sends[i + 1] - sends[i];
    // The k-th gap runs at rate (k + 1) / 200.
    assert!((gap(0) - 0.5).abs() < 1e-3, "{}", gap(0));
    assert!((gap(99) - 1.0 / 200.0).abs() < 1e-4, "{}", gap(99));
    assert!((gap(300) - 1.0 / 400.0).abs() < 1e-4, "{}", gap(300));
}

/// A sweep into a 2-slot server: throughput stays flat from --parallel 2 to 8 while TTFT
/// (the queue) climbs; --stop-on-saturation ends the sweep there.
#[test]
fn an_over_saturated_sweep_says_where_and_can_stop_there() {
    let r = perf_run(&[
        "--parallel",
        "2",
        "8",
        "16",
        "-n",
        "16",
        "32",
        "32",
        "--mock-capacity",
        "2",
        "--mock-output-tokens",
        "8",
        "--stop-on-saturation",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("over-saturated at run 2 (parallel_8_number_32)"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("1 run(s) not run"), "{}", r.stderr);
    assert!(!r.run_dir("parallel_16_number_32").exists());
    let text = std::fs::read_to_string(r.root().join("performance_summary.txt")).expect("report");
    assert!(
        text.contains("Over-saturation: over-saturated at run 2"),
        "{text}"
    );
}

/// progress.json while a run goes (read from outside, as a dashboard would) and at its end.
#[test]
fn progress_json_is_updated_during_the_run_and_final_at_the_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(perf_tests::perf_bin())
        .args([
            "--api",
            "mock",
            "--port",
            "0",
            "--prompt",
            "hi",
            "--outputs-dir",
            "outputs",
            "--no-timestamp",
            "--name",
            "t",
            "-n",
            "40",
            "--parallel",
            "2",
            "--mock-output-tokens",
            "20",
            "--mock-tpot-ms",
            "10",
            "--enable-progress-tracker",
        ])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("perf starts");
    let path = dir.path().join("outputs/t/progress.json");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen_partial = false;
    while Instant::now() < deadline {
        if let Ok(text) = std::fs::read_to_string(&path) {
            let v: Value = serde_json::from_str(&text).expect("always whole JSON");
            let n = v["processed_count"].as_u64().expect("count");
            if v["status"] == "running" && n > 0 && n < 40 {
                assert_eq!(v["pipeline"], "perf");
                assert_eq!(v["total_count"], 40);
                assert_eq!(v["current_run"], "parallel_2_number_40");
                seen_partial = true;
            }
        }
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = child.wait().expect("exits");
    assert!(status.success());
    assert!(seen_partial, "progress.json showed the run under way");
    let v = read_json(&path);
    assert_eq!(v["status"], "completed");
    assert_eq!(v["processed_count"], 40);
    assert_eq!(v["percent"], 100.0);
    assert!(v["updated_at"].as_str().is_some_and(|t| t.contains('T')));
}

/// The simulator streams one token a chunk, 20 ms apart: the handoff is one such gap, the
/// overhead about nothing, the steady ITL the same 20 ms.
#[test]
fn pd_metrics_come_from_the_streamed_gaps_in_evalscopes_places() {
    let r = perf_run(&[
        "-n",
        "8",
        "--parallel",
        "2",
        "--mock-output-tokens",
        "8",
        "--mock-tpot-ms",
        "20",
        "--enable-pd-metrics",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let label = "parallel_2_number_8";
    let s = r.json(label, "benchmark_summary.json");
    let keys: Vec<&String> = s.as_object().expect("object").keys().collect();
    let at = |k: &str| keys.iter().position(|x| *x == k).expect(k);
    assert_eq!(at("Avg Steady ITL (ms)"), at("Avg ITL (ms)") + 1);
    assert_eq!(at("Avg PD Handoff Latency (ms)"), at("Avg ITL (ms)") + 2);
    assert_eq!(at("Avg PD Handoff Overhead (ms)"), at("Avg ITL (ms)") + 3);
    assert_eq!(at("Avg Output Tokens"), at("Avg ITL (ms)") + 4);
    // The gaps are the simulator's 20 ms sleeps: never shorter on average, and a loaded machine
    // adds a few milliseconds at most.
    for key in ["Avg Steady ITL (ms)", "Avg PD Handoff Latency (ms)"] {
        let v = f(&s, key);
        assert!((19.0..32.0).contains(&v), "{key}: {s}");
    }
    assert!(f(&s, "Avg PD Handoff Overhead (ms)") < 10.0, "{s}");
    let p = r.json(label, "benchmark_percentile.json");
    let columns: Vec<&String> = p[0].as_object().expect("row").keys().collect();
    let pos = |k: &str| columns.iter().position(|x| *x == k).expect(k);
    assert_eq!(pos("Steady ITL (ms)"), pos("ITL (ms)") + 1);
    assert_eq!(pos("PD Handoff Overhead (ms)"), pos("ITL (ms)") + 3);
    // Without the flag, none of it.
    let plain = perf_run(&["-n", "2"]);
    let s = plain.json("parallel_1_number_2", "benchmark_summary.json");
    assert!(s.get("Avg Steady ITL (ms)").is_none());
}

/// The simulator's prefix cache: "Say something" is four pseudo-tokens, one full block of
/// three; every request after the first finds that block cached, and its TTFT drops by the
/// prefill of the three cached tokens.
#[test]
fn the_simulator_prefix_cache_reports_cached_tokens_and_shortens_prefill() {
    let r = perf_run(&[
        "-n",
        "10",
        "--no-test-connection",
        "--mock-prefix-cache-tokens",
        "4096",
        "--mock-cache-block-tokens",
        "3",
        "--mock-prefill-ms-per-token",
        "20",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let label = "parallel_1_number_10";
    let cached = column(&r, label, "cached_tokens");
    assert_eq!(cached, [0.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0]);
    let s = r.json(label, "benchmark_summary.json");
    assert_eq!(
        f(&s, "KV Cache Hit Rate (%)"),
        67.5,
        "27 of 40 prompt tokens"
    );
    let ttft = column(&r, label, "first_chunk_latency");
    // 50 ms plus 20 ms per uncached token: 4 on the first request, 1 after it. The simulator's
    // sleeps never end early, so the lower bounds are exact; a loaded machine only adds time,
    // so the split is checked as a gap between the first request and the typical later one.
    assert!(ttft[0] >= 0.128, "{ttft:?}");
    assert!(ttft[1..].iter().all(|t| *t >= 0.068), "{ttft:?}");
    let mut later = ttft[1..].to_vec();
    later.sort_by(f64::total_cmp);
    let median = later[later.len() / 2];
    assert!(
        median < ttft[0] - 0.03,
        "three cached tokens save 60 ms: {ttft:?}"
    );
}
