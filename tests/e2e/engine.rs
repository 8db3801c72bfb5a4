//! The real binary against the built-in simulator (`--api mock --port 0`): files and keys,
//! SQLite rows, exact failure counts, timing within the simulator's configured delays,
//! schedules, sweeps, interruption.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use perf_tests::{cdylib, perf_bin, perf_in, text};
use rusqlite::Connection;
use serde_json::Value;

pub(crate) struct Run {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    pub(crate) fn root(&self) -> PathBuf {
        self.dir.path().join("outputs").join("t")
    }

    pub(crate) fn run_dir(&self, label: &str) -> PathBuf {
        self.root().join(label)
    }

    pub(crate) fn json(&self, label: &str, file: &str) -> Value {
        let path = self.run_dir(label).join(file);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}\n{}", path.display(), self.stderr));
        // evalscope's NaN (a percentile without samples) reads as null.
        serde_json::from_str(&text.replace(": NaN", ": null")).expect("valid JSON")
    }

    pub(crate) fn db(&self, label: &str) -> Connection {
        Connection::open(self.run_dir(label).join("benchmark_data.db")).expect("db opens")
    }

    pub(crate) fn count(&self, label: &str, filter: &str) -> i64 {
        self.db(label)
            .query_row(
                &format!("SELECT COUNT(*) FROM result WHERE {filter}"),
                [],
                |r| r.get(0),
            )
            .expect("query")
    }
}

const FAST: &[&str] = &[
    "--api",
    "mock",
    "--port",
    "0",
    "--prompt",
    "Say something",
    "--sleep-interval",
    "0",
];

pub(crate) fn perf_run(args: &[&str]) -> Run {
    perf_run_env(args, &[])
}

fn perf_run_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    perf_run_with(args, |cmd| {
        cmd.envs(env.iter().copied());
    })
}

/// Runs perf against the simulator in a fresh directory, `configure` adjusting the command.
pub(crate) fn perf_run_with(args: &[&str], configure: impl FnOnce(&mut Command)) -> Run {
    perf_run_from(FAST, args, configure)
}

/// perf with `base`, then the output flags (`outputs/t`, no timestamp), then `args`, in a fresh
/// directory, `configure` adjusting the command.
pub(crate) fn perf_run_from(
    base: &[&str],
    args: &[&str],
    configure: impl FnOnce(&mut Command),
) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut full: Vec<&str> = base.to_vec();
    full.extend_from_slice(&["--outputs-dir", "outputs", "--no-timestamp", "--name", "t"]);
    full.extend_from_slice(args);
    let mut cmd = Command::new(perf_bin());
    cmd.args(&full).current_dir(dir.path());
    configure(&mut cmd);
    let out = cmd.output().expect("perf runs");
    let (stdout, stderr) = text(&out);
    Run {
        dir,
        code: out.status.code(),
        stdout,
        stderr,
    }
}

pub(crate) fn f(v: &Value, key: &str) -> f64 {
    v.get(key)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("no number at '{key}' in {v}"))
}

const EVALSCOPE_KEYS: [&str; 17] = [
    "Test Duration (s)",
    "Concurrency",
    "Request Rate (req/s)",
    "Total Requests",
    "Success Requests",
    "Failed Requests",
    "Stream Requests",
    "Non-Stream Requests",
    "Req Throughput (req/s)",
    "Avg Latency (s)",
    "Avg Input Tokens",
    "Output Throughput (tok/s)",
    "Total Throughput (tok/s)",
    "Avg TTFT (ms)",
    "Avg TPOT (ms)",
    "Avg ITL (ms)",
    "Avg Output Tokens",
];

#[test]
fn a_mock_run_writes_evalscopes_files_keys_and_rows() {
    let r = perf_run(&[
        "-n",
        "30",
        "--parallel",
        "5",
        "--mock-ttft-ms",
        "40",
        "--mock-tpot-ms",
        "4",
        "--mock-output-tokens",
        "10",
        "--api-key",
        "sk-secret-123",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let label = "parallel_5_number_30";
    for file in [
        "benchmark_summary.json",
        "benchmark_percentile.json",
        "benchmark_args.json",
        "benchmark_data.db",
    ] {
        assert!(r.run_dir(label).join(file).exists(), "{file} missing");
    }
    assert!(r.root().join("benchmark.log").exists());
    assert!(r.root().join("performance_summary.txt").exists());

    let s = r.json(label, "benchmark_summary.json");
    let keys: Vec<&String> = s.as_object().expect("object").keys().collect();
    assert_eq!(
        &keys[..17],
        &EVALSCOPE_KEYS,
        "evalscope's keys come first, in evalscope's order"
    );
    assert_eq!(f(&s, "Total Requests"), 30.0);
    assert_eq!(f(&s, "Success Requests"), 30.0);
    assert_eq!(f(&s, "Concurrency"), 5.0);
    assert_eq!(f(&s, "Request Rate (req/s)"), -1.0);
    assert_eq!(f(&s, "Avg Output Tokens"), 10.0);
    // The simulator's delays bound TTFT and latency from below; loose upper bounds absorb a
    // busy machine. TPOT's lower bound is looser: on a machine busy enough to read a first
    // token late together with the next, that request's TTFT grows by a token gap and its TPOT
    // shrinks (seen at 3.87 ms while fuzzing ran beside the tests).
    let ttft = f(&s, "Avg TTFT (ms)");
    assert!((40.0..80.0).contains(&ttft), "TTFT {ttft}");
    let tpot = f(&s, "Avg TPOT (ms)");
    assert!((3.0..12.0).contains(&tpot), "TPOT {tpot}");
    let latency = f(&s, "Avg Latency (s)");
    assert!((0.076..0.2).contains(&latency), "latency {latency}");

    let p = r.json(label, "benchmark_percentile.json");
    let rows = p.as_array().expect("list");
    let labels: Vec<&str> = rows
        .iter()
        .map(|r| r["Percentiles"].as_str().expect("label"))
        .collect();
    assert_eq!(
        labels,
        ["min", "1%", "5%", "10%", "25%", "50%", "75%", "90%", "95%", "99%", "max"]
    );
    assert!(
        f(&rows[0], "TTFT (ms)") <= f(&rows[5], "TTFT (ms)")
            && f(&rows[5], "TTFT (ms)") <= f(&rows[10], "TTFT (ms)")
    );
    assert_eq!(f(&rows[9], "Output tokens"), 10.0);

    let args = std::fs::read_to_string(r.run_dir(label).join("benchmark_args.json")).expect("args");
    assert!(
        !args.contains("sk-secret-123") && args.contains("**********"),
        "{args}"
    );
    for file in ["benchmark.log", "performance_summary.txt"] {
        let t = std::fs::read_to_string(r.root().join(file)).expect("read");
        assert!(!t.contains("sk-secret-123"), "{file} leaks the key");
    }
    assert!(!r.stdout.contains("sk-secret-123") && !r.stderr.contains("sk-secret-123"));

    assert_eq!(r.count(label, "success = 1 AND is_stream = 1"), 30);
    let db = r.db(label);
    let (ttft_ms, itl, request, completion): (f64, String, String, i64) = db
        .query_row(
            "SELECT first_chunk_latency * 1000, inter_token_latencies, request, completion_tokens FROM result LIMIT 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
        )
        .expect("row");
    assert!(ttft_ms >= 40.0);
    assert_eq!(
        serde_json::from_str::<Vec<f64>>(&itl)
            .expect("itl json")
            .len(),
        9
    );
    assert_eq!(
        serde_json::from_str::<Value>(&request).expect("body json")["messages"][0]["content"],
        "Say something"
    );
    assert_eq!(completion, 10);
    let ordered: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM result WHERE intended_send_epoch <= sent_epoch AND sent_epoch < first_byte_epoch
             AND first_byte_epoch <= first_token_epoch AND first_token_epoch <= completed_epoch",
            [],
            |row| row.get(0),
        )
        .expect("query");
    assert_eq!(ordered, 30, "every phase's epoch timestamp is in order");
}

#[test]
fn injected_failures_are_counted_exactly_and_described_in_the_db() {
    injected_failures_through(&[], "1");
}

#[test]
fn injected_failures_are_counted_exactly_without_delays() {
    // With no delays a dropped connection can die before the response head: still a failure,
    // never silently retried.
    injected_failures_through(&[], "0");
}

#[test]
fn injected_failures_are_counted_exactly_through_reqwest_too() {
    // https and proxied endpoints go through reqwest; this forces it for a local server.
    injected_failures_through(&[("PERF_HTTP_CLIENT", "reqwest")], "1");
}

fn injected_failures_through(env: &[(&str, &str)], delay_ms: &str) {
    // Server request numbers 1..=40 (no connection test): every 5th fails with HTTP 503,
    // every 11th drops its connection mid-stream, every 4th other one gets a malformed chunk
    // (the three never fall on the same request, so the counts do not depend on whether a
    // dropped response got out before the drop).
    let r = perf_run_env(
        &[
            "-n",
            "40",
            "--parallel",
            "4",
            "--no-test-connection",
            "--mock-ttft-ms",
            delay_ms,
            "--mock-tpot-ms",
            delay_ms,
            "--mock-output-tokens",
            "10",
            "--mock-fail-every",
            "5",
            "--mock-fail-status",
            "503",
            "--mock-drop-every",
            "11",
            "--mock-malformed-every",
            "4",
        ],
        env,
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let label = "parallel_4_number_40";
    let s = r.json(label, "benchmark_summary.json");
    assert_eq!(f(&s, "Total Requests"), 40.0);
    assert_eq!(f(&s, "Failed Requests"), 11.0);
    assert_eq!(f(&s, "Failed: http_status"), 8.0);
    assert_eq!(f(&s, "Failed: stream"), 3.0, "11, 22, 33");
    assert_eq!(
        f(&s, "Malformed Chunks"),
        8.0,
        "4, 8, 12, 16, 24, 28, 32, 36"
    );
    assert_eq!(f(&s, "Success Requests"), 29.0);
    assert_eq!(
        f(&s, "Reused-Connection Retries"),
        0.0,
        "a stream dropped after its head is a failure, never sent again"
    );
    assert_eq!(
        r.count(
            label,
            "error_kind = 'http_status' AND http_status = 503 AND error LIKE '%injected failure%'"
        ),
        8
    );
    assert_eq!(r.count(label, "error_kind = 'stream' AND success = 0"), 3);
    assert_eq!(r.count(label, "malformed_chunks = 1"), 8);
    assert_eq!(r.count(label, "success = 1 AND error IS NULL"), 29);
}

#[test]
fn a_run_where_every_request_fails_exits_1() {
    let r = perf_run(&[
        "-n",
        "5",
        "--parallel",
        "2",
        "--no-test-connection",
        "--mock-fail-every",
        "1",
    ]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    let s = r.json("parallel_2_number_5", "benchmark_summary.json");
    assert_eq!(f(&s, "Failed Requests"), 5.0);
    assert_eq!(
        f(&s, "Avg TTFT (ms)"),
        -1000.0,
        "evalscope's -1 s for an average over no success, in ms"
    );
    assert!(r.stderr.contains("every request failed"), "{}", r.stderr);
}

#[test]
fn non_streamed_requests_report_ttft_equal_to_latency() {
    let r = perf_run(&[
        "-n",
        "6",
        "--parallel",
        "2",
        "--no-stream",
        "--mock-ttft-ms",
        "5",
        "--mock-output-tokens",
        "4",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let label = "parallel_2_number_6";
    let s = r.json(label, "benchmark_summary.json");
    assert_eq!(f(&s, "Non-Stream Requests"), 6.0);
    assert_eq!(f(&s, "Stream Requests"), 0.0);
    assert_eq!(
        r.count(label, "is_stream = 0 AND first_chunk_latency = latency"),
        6
    );
}

#[test]
fn warmup_requests_are_sent_but_never_measured() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = dir.path().join("server.jsonl");
    let r = perf_run(&[
        "-n",
        "10",
        "--parallel",
        "3",
        "--warmup-num",
        "4",
        "--mock-log",
        log.to_str().expect("utf-8"),
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(r.count("parallel_3_number_10", "1 = 1"), 10);
    let served = std::fs::read_to_string(&log)
        .expect("server log")
        .lines()
        .count();
    assert_eq!(served, 1 + 4 + 10, "connection test, warmup, measured");
}

#[test]
fn a_sweep_runs_each_pair_in_its_own_directory() {
    let r = perf_run(&[
        "--parallel",
        "1",
        "3",
        "--number",
        "3",
        "6",
        "--mock-ttft-ms",
        "1",
        "--mock-tpot-ms",
        "0",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    for (label, n) in [("parallel_1_number_3", 3.0), ("parallel_3_number_6", 6.0)] {
        assert_eq!(
            f(&r.json(label, "benchmark_summary.json"), "Total Requests"),
            n
        );
    }
    let report = std::fs::read_to_string(r.root().join("performance_summary.txt")).expect("report");
    assert!(report.contains("Performance Overview"), "{report}");
    // One row per run in each of the overview, per-request and workload tables.
    for table in [
        "Performance Overview:",
        "Per-Request Metrics:",
        "Workload Throughput:",
    ] {
        let rows = report
            .split(table)
            .nth(1)
            .and_then(|t| t.split("\n\n").next())
            .unwrap_or_else(|| panic!("{table} in {report}"))
            .lines()
            .filter(|l| l.starts_with("│ 1 ") || l.starts_with("│ 3 "))
            .count();
        assert_eq!(rows, 2, "{table}\n{report}");
    }
}

fn epochs(r: &Run, label: &str, column: &str) -> Vec<f64> {
    let db = r.db(label);
    let mut stmt = db
        .prepare(&format!(
            "SELECT {column} FROM result ORDER BY request_index"
        ))
        .expect("prepare");
    let rows = stmt
        .query_map([], |row| row.get::<_, f64>(0))
        .expect("query");
    rows.map(|x| x.expect("value")).collect()
}

#[test]
fn rate_mode_sends_on_an_absolute_poisson_schedule_and_records_the_lag() {
    let r = perf_run(&[
        "-n",
        "40",
        "--parallel",
        "40",
        "--rate",
        "80",
        "--seed",
        "7",
        "--mock-ttft-ms",
        "1",
        "--mock-tpot-ms",
        "1",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let label = "parallel_40_number_40";
    let intended = epochs(&r, label, "intended_send_epoch");
    assert!(
        intended.windows(2).all(|w| w[0] <= w[1]),
        "intended times never go back"
    );
    let span = intended[39] - intended[0];
    assert!(
        (0.2..1.2).contains(&span),
        "39 gaps at 80/s take about 0.49 s, got {span}"
    );
    let lag = epochs(&r, label, "dispatch_lag");
    assert!(lag.iter().all(|l| *l >= 0.0 && *l < 0.25), "{lag:?}");
    let s = r.json(label, "benchmark_summary.json");
    assert_eq!(f(&s, "Request Rate (req/s)"), 80.0);
}

#[test]
fn open_loop_runs_are_named_by_rate() {
    let r = perf_run(&[
        "--open-loop",
        "--rate",
        "100",
        "-n",
        "15",
        "--mock-ttft-ms",
        "1",
        "--mock-tpot-ms",
        "1",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let s = r.json("rate_100.0_number_15", "benchmark_summary.json");
    assert_eq!(f(&s, "Concurrency"), -1.0);
    assert_eq!(f(&s, "Success Requests"), 15.0);
}

#[test]
fn duration_stops_sending_and_lets_in_flight_requests_finish() {
    let start = Instant::now();
    let r = perf_run(&[
        "-n",
        "100000",
        "--parallel",
        "4",
        "--duration",
        "1",
        "--mock-ttft-ms",
        "20",
        "--mock-tpot-ms",
        "2",
        "--mock-output-tokens",
        "5",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(start.elapsed() < Duration::from_secs(20));
    let s = r.json("parallel_4_number_100000", "benchmark_summary.json");
    let total = f(&s, "Total Requests");
    assert!(total > 10.0 && total < 1000.0, "{total}");
    assert_eq!(
        f(&s, "Failed Requests"),
        0.0,
        "in-flight requests finish, they are not cut off"
    );
}

#[test]
fn an_unreachable_server_fails_the_connection_test_with_exit_2() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let dir = tempfile::tempdir().expect("tmp");
    let url = format!("http://127.0.0.1:{port}/v1/chat/completions");
    let out = perf_in(
        dir.path(),
        &["--url", &url, "--model", "m", "--prompt", "hi", "-n", "1"],
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot reach") && stderr.contains("--no-test-connection"),
        "{stderr}"
    );
}

#[test]
fn a_rejected_plugin_config_stops_before_any_traffic() {
    let acme = cdylib("acme-ndjson-api");
    let dir = tempfile::tempdir().expect("tmp");
    let out = perf_in(
        dir.path(),
        &[
            "--plugin",
            acme.to_str().expect("utf-8"),
            "--api",
            "acme",
            "--api-args",
            r#"{"priority": "urgent"}"#,
            "--model",
            "m",
            "--url",
            "http://127.0.0.1:9/v2/generate",
            "--prompt",
            "hi",
        ],
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("api plugin 'acme'")
            && stderr.contains("priority must be low, normal or high"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("outputs").exists(),
        "nothing is written before the plugins are valid"
    );
}

#[test]
fn unsupported_flags_say_so_with_exit_2() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = perf_in(dir.path(), &["--model", "m", "--scenario", "agentx"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("--scenario"), "{stderr}");
    assert!(stderr.contains("not supported yet"), "{stderr}");
    let out = perf_in(
        dir.path(),
        &["--model", "m", "--parallel", "2", "3", "--number", "5"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("give as many of each"));
}

#[test]
fn plugin_dataset_and_plugin_sink_in_a_real_run() {
    let dir = tempfile::tempdir().expect("tmp");
    let csv = dir.path().join("prompts.csv");
    std::fs::write(
        &csv,
        "id,question\n1,What is Rust?\n2,Why benchmark?\n3,How fast?\n",
    )
    .expect("csv");
    let sink_file = dir.path().join("records.jsonl");
    let sink = format!("jsonl={{\"path\": \"{}\"}}", sink_file.display());
    let lib_csv = cdylib("csv-dataset");
    let lib_sink = cdylib("jsonl-sink");
    let out = perf_in(
        dir.path(),
        &[
            "--api",
            "mock",
            "--port",
            "0",
            "--plugin",
            lib_csv.to_str().expect("utf-8"),
            "--plugin",
            lib_sink.to_str().expect("utf-8"),
            "--dataset",
            "csv",
            "--dataset-path",
            csv.to_str().expect("utf-8"),
            "--dataset-args",
            r#"{"column": "question"}"#,
            "--sink",
            &sink,
            "-n",
            "7",
            "--parallel",
            "2",
            "--outputs-dir",
            "outputs",
            "--no-timestamp",
            "--name",
            "t",
            "--mock-ttft-ms",
            "1",
            "--mock-tpot-ms",
            "1",
        ],
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let lines = std::fs::read_to_string(&sink_file).expect("sink wrote");
    assert_eq!(lines.lines().count(), 7, "one line per measured request");
    let db = Connection::open(
        dir.path()
            .join("outputs/t/parallel_2_number_7/benchmark_data.db"),
    )
    .expect("db");
    let prompts: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM result WHERE request LIKE '%What is Rust?%'",
            [],
            |r| r.get(0),
        )
        .expect("query");
    assert_eq!(prompts, 3, "7 requests cycle through 3 prompts: 1, 4, 7");
}

fn wait_for(path: &Path, limit: Duration) {
    let start = Instant::now();
    while !path.exists() && start.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn ctrl_c_writes_every_completed_record_and_the_summary() {
    let dir = tempfile::tempdir().expect("tmp");
    let child = Command::new(perf_bin())
        .args(FAST)
        .args([
            "--outputs-dir",
            "outputs",
            "--no-timestamp",
            "--name",
            "t",
            "-n",
            "100000",
            "--parallel",
            "4",
        ])
        .args([
            "--mock-ttft-ms",
            "10",
            "--mock-tpot-ms",
            "10",
            "--mock-output-tokens",
            "10",
        ])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let run_dir = dir.path().join("outputs/t/parallel_4_number_100000");
    wait_for(&run_dir.join("benchmark_data.db"), Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(1200));
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    let summary: Value = serde_json::from_str(
        &std::fs::read_to_string(run_dir.join("benchmark_summary.json")).expect("summary"),
    )
    .expect("json");
    let total = f(&summary, "Total Requests");
    let interrupted = f(&summary, "Interrupted Requests");
    assert!(
        total >= 4.0,
        "requests finished before the interrupt are measured: {total}"
    );
    let db = Connection::open(run_dir.join("benchmark_data.db")).expect("db");
    let rows: f64 = db
        .query_row("SELECT COUNT(*) FROM result", [], |r| r.get::<_, i64>(0))
        .expect("count") as f64;
    assert_eq!(rows, total + interrupted, "every record is in the database");
    assert!(run_dir.join("benchmark_percentile.json").exists());
}

#[test]
fn without_usage_or_tokenizer_token_counts_are_estimated_and_marked() {
    // The simulator sends usage only when asked; turning it off leaves perf to estimate.
    let r = perf_run(&[
        "-n",
        "4",
        "--parallel",
        "2",
        "--mock-output-tokens",
        "6",
        "--mock-ttft-ms",
        "1",
        "--mock-tpot-ms",
        "1",
        "--extra-args",
        r#"{"stream_options": {"include_usage": false}}"#,
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let label = "parallel_2_number_4";
    let s = r.json(label, "benchmark_summary.json");
    assert_eq!(f(&s, "Success Requests"), 4.0);
    assert_eq!(f(&s, "Estimated Token Counts"), 4.0);
    assert_eq!(
        f(&s, "Avg Output Tokens"),
        6.0,
        "one token per streamed output event"
    );
    assert_eq!(r.count(label, "tokens_estimated = 1"), 4);
}

struct ServeMock(std::process::Child, u16);

impl ServeMock {
    fn start(args: &[&str]) -> Self {
        use std::io::BufRead;
        let mut child = Command::new(perf_bin())
            .args(["serve-mock", "--port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("serve-mock starts");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the address line");
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port in the first line");
        ServeMock(child, port)
    }
}

impl Drop for ServeMock {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn an_evalscope_command_line_runs_unchanged_against_a_separate_server() {
    let server = ServeMock::start(&[
        "--mock-ttft-ms",
        "1",
        "--mock-tpot-ms",
        "1",
        "--mock-output-tokens",
        "8",
    ]);
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(
        dir.path().join("prompts.txt"),
        "first prompt\nsecond prompt\n",
    )
    .expect("prompts");
    // The flags an evalscope perf 1.14.1 user passes, with the URL given without its endpoint.
    let url = format!("http://127.0.0.1:{}/v1", server.1);
    let out = perf_in(
        dir.path(),
        &[
            "--url",
            &url,
            "--api",
            "openai",
            "--model",
            "Qwen/Qwen2.5-7B-Instruct",
            "--parallel",
            "1",
            "2",
            "--number",
            "2",
            "4",
            "--dataset",
            "line_by_line",
            "--dataset-path",
            "prompts.txt",
            "--max-tokens",
            "8",
            "--min-tokens",
            "2",
            "--temperature",
            "0.7",
            "--top-p",
            "0.9",
            "--top-k",
            "20",
            "--seed",
            "42",
            "--stop",
            "###",
            "--stop-token-ids",
            "151645",
            "151643",
            "--frequency-penalty",
            "0.1",
            "--repetition-penalty",
            "1.05",
            "--n-choices",
            "1",
            "--logprobs",
            "--extra-args",
            r#"{"ignore_eos": true}"#,
            "--headers",
            "X-Team=bench",
            "--connect-timeout",
            "10",
            "--read-timeout",
            "30",
            "--total-timeout",
            "60",
            "--log-every-n-query",
            "2",
            "--sleep-interval",
            "0",
            "--warmup-num",
            "1",
            "--stream",
            "--max-prompt-length",
            "100",
            "--min-prompt-length",
            "1",
            "--outputs-dir",
            "outputs",
            "--name",
            "compat",
        ],
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let summary = std::fs::read_dir(dir.path().join("outputs"))
        .expect("outputs")
        .flatten()
        .map(|e| e.path().join("compat/parallel_2_number_4"))
        .find(|p| p.exists())
        .expect("<outputs>/<time>/compat/parallel_2_number_4");
    let db = Connection::open(summary.join("benchmark_data.db")).expect("db");
    let body: String = db
        .query_row("SELECT request FROM result LIMIT 1", [], |r| r.get(0))
        .expect("row");
    let body: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(body["model"], "Qwen/Qwen2.5-7B-Instruct");
    assert_eq!(body["max_tokens"], 8);
    assert_eq!(body["min_tokens"], 2);
    assert_eq!(body["temperature"], 0.7);
    assert_eq!(body["top_p"], 0.9);
    assert_eq!(body["top_k"], 20);
    assert_eq!(body["seed"], 42);
    assert_eq!(body["stop"], serde_json::json!(["###"]));
    assert_eq!(
        body["stop_token_ids"],
        serde_json::json!([151645, 151643]),
        "integers, not strings"
    );
    assert_eq!(body["frequency_penalty"], 0.1);
    assert_eq!(body["repetition_penalty"], 1.05);
    assert_eq!(body["n"], 1);
    assert_eq!(body["logprobs"], true);
    assert_eq!(body["ignore_eos"], true);
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"]["include_usage"], true);
    assert!(body["messages"][0]["content"]
        .as_str()
        .is_some_and(|c| c.ends_with("prompt")));
    let total: i64 = db
        .query_row("SELECT COUNT(*) FROM result WHERE success = 1", [], |r| {
            r.get(0)
        })
        .expect("count");
    assert_eq!(total, 4);
}

/// Runs perf confined to one core (as a starved client is), in a fresh directory.
fn perf_on_one_core(args: &[&str]) -> Run {
    perf_run_with(args, |cmd| perf_host::cpu::confine(cmd, 0..1))
}

#[test]
fn a_starved_client_says_it_was_saturated_and_a_light_run_does_not() {
    // One core for the client and its in-process simulator, zero delays, 100 streams: perf can
    // only be the bottleneck.
    let heavy = perf_on_one_core(&[
        "-n",
        "3000",
        "--parallel",
        "100",
        "--mock-ttft-ms",
        "0",
        "--mock-tpot-ms",
        "0",
    ]);
    assert_eq!(heavy.code, Some(0), "{}", heavy.stderr);
    let s = heavy.json("parallel_100_number_3000", "benchmark_summary.json");
    assert_eq!(s["Client Saturated"], true, "{s}");
    assert!(f(&s, "Event Loop Delay P99 (ms)") >= 0.0);
    assert!(
        heavy.stdout.contains("CLIENT SATURATED") || heavy.stderr.contains("CLIENT SATURATED"),
        "a loud warning: {}",
        heavy.stderr
    );

    let light = perf_run(&[
        "-n",
        "30",
        "--parallel",
        "3",
        "--mock-ttft-ms",
        "20",
        "--mock-tpot-ms",
        "5",
    ]);
    assert_eq!(light.code, Some(0), "{}", light.stderr);
    let s = light.json("parallel_3_number_30", "benchmark_summary.json");
    assert_eq!(s["Client Saturated"], false, "{s}");
    assert!(f(&s, "Event Loop Delay P99 (ms)") < 5.0, "{s}");
    assert!(
        !light.stderr.contains("CLIENT SATURATED"),
        "{}",
        light.stderr
    );
}

/// The calibration's smoke run: a separate simulator process, a throughput line and a
/// fidelity table against the server's own timestamps.
#[test]
fn calibrate_quick_prints_the_clients_ceiling() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = perf_in(dir.path(), &["calibrate", "--quick"]);
    let (stdout, stderr) = text(&out);
    assert!(
        stdout.contains("requests/s") && stdout.contains("us of client CPU per request"),
        "{stdout}\n{stderr}"
    );
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("100 ") || l.trim_start().starts_with("300 "))
        .collect();
    assert!(!rows.is_empty(), "a fidelity row: {stdout}");
    // On a machine too loaded to keep TTFT within 1 ms even at 100 streams, calibrate says so
    // and exits 1; otherwise it names the ceiling.
    match out.status.code() {
        Some(0) => assert!(
            stdout.contains("client ceiling on this machine"),
            "{stdout}"
        ),
        Some(1) => assert!(
            stderr.contains("do not trust TTFT from this machine"),
            "{stderr}"
        ),
        other => panic!("exit {other:?}: {stderr}"),
    }
}

/// Every request carries an x-request-id that benchmark_data.db keeps in `request_id` and the
/// server can log, so server-side records can be matched with perf's one by one.
#[test]
fn request_ids_match_the_servers_log_one_by_one() {
    let r = perf_run(&[
        "-n",
        "12",
        "--parallel",
        "3",
        "--mock-ttft-ms",
        "5",
        "--mock-tpot-ms",
        "1",
        "--mock-log",
        "server.jsonl",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let db = r.db("parallel_3_number_12");
    let ids: Vec<String> = db
        .prepare("SELECT request_id FROM result ORDER BY request_index")
        .expect("query")
        .query_map([], |row| row.get(0))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("ids");
    assert_eq!(ids.len(), 12);
    let unique: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), 12, "{ids:?}");
    assert!(ids.iter().all(|id| id.starts_with("perf-")), "{ids:?}");
    let log = std::fs::read_to_string(r.dir.path().join("server.jsonl")).expect("server log");
    let logged: std::collections::HashSet<String> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["id"].as_str().map(str::to_string))
        .collect();
    for id in &ids {
        assert!(logged.contains(id), "{id} not in the server's log");
    }
}
