//! One benchmark from several load generators: four `--shard I/4` processes against one
//! simulator, started together with `--start-at` or `--shard-sync`, merged with `perf merge`
//! and held to an unsharded run of the same benchmark and to the rows themselves.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use perf_tests::{perf_bin, text, Simulator};
use serde_json::Value;

fn json(path: &Path) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .expect("JSON")
}

/// The four shards of `args`, started at once with a common `--start-at`, each in
/// `dir/shard<I>`; their benchmark directories.
fn run_shards(dir: &Path, args: &[&str]) -> Vec<PathBuf> {
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
        + 3.0;
    spawn_shards(
        dir,
        args,
        &["--start-at", &format!("{start:.3}")],
        Duration::ZERO,
    )
}

/// The four shards of `args` with `timing` (how they start together), shard I launched
/// `stagger` x I after the first, each in `dir/shard<I>`; their benchmark directories.
fn spawn_shards(dir: &Path, args: &[&str], timing: &[&str], stagger: Duration) -> Vec<PathBuf> {
    let children: Vec<(usize, Child)> = (0..4)
        .map(|i| {
            if i > 0 {
                std::thread::sleep(stagger);
            }
            let out = dir.join(format!("shard{i}"));
            let child = Command::new(perf_bin())
                .args(args)
                .args(["--shard", &format!("{i}/4")])
                .args(timing)
                .args(["--name", "sharded", "--no-timestamp", "--outputs-dir"])
                .arg(&out)
                .env_remove("JOB_COMPLETION_INDEX")
                .env_remove("SLURM_STEP_ID")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("perf starts");
            (i, child)
        })
        .collect();
    children
        .into_iter()
        .map(|(i, child)| {
            let out = child.wait_with_output().expect("perf runs");
            let (stdout, stderr) = text(&out);
            assert!(out.status.success(), "shard {i}: {stdout}\n{stderr}");
            dir.join(format!("shard{i}")).join("sharded")
        })
        .collect()
}

fn merge(dirs: &[PathBuf], out: &Path) -> (Option<i32>, String) {
    let out = Command::new(perf_bin())
        .arg("merge")
        .args(dirs)
        .arg("--outputs-dir")
        .arg(out)
        .arg("--no-timestamp")
        .output()
        .expect("perf merge runs");
    let (stdout, stderr) = text(&out);
    (out.status.code(), format!("{stdout}\n{stderr}"))
}

/// Nearest-rank percentile `p` of `values`, as perf computes it.
fn nearest_rank(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let k = ((p / 100.0 * n as f64).ceil() as usize).clamp(1, n) - 1;
    values[k]
}

fn column(db: &Path, sql: &str) -> Vec<f64> {
    let conn = rusqlite::Connection::open(db).expect("db");
    let mut stmt = conn.prepare(sql).expect("sql");
    stmt.query_map([], |r| r.get::<_, f64>(0))
        .expect("rows")
        .map(|v| v.expect("value"))
        .collect()
}

#[test]
fn four_shards_merge_into_the_unsharded_totals_with_percentiles_over_every_row() {
    let sim = Simulator::start(&[]);
    let url = sim.url("/v1/chat/completions");
    let dir = tempfile::tempdir().expect("tmp");
    let args = [
        "--url",
        &url,
        "--model",
        "mock",
        "--parallel",
        "4",
        "10",
        "--number",
        "30",
        "62",
        "--max-tokens",
        "6",
        "--prompt",
        "hello there",
    ];
    let shards = run_shards(dir.path(), &args);
    // Each shard took its integer share of both runs, and says so.
    let mut numbers = [0u64; 2];
    let mut parallels = [0u64; 2];
    for s in &shards {
        let shard = json(&s.join("shard.json"));
        for (r, run) in shard["runs"].as_array().expect("runs").iter().enumerate() {
            numbers[r] += run["number"].as_u64().expect("number");
            parallels[r] += run["parallel"].as_u64().expect("parallel");
        }
    }
    assert_eq!(numbers, [30, 62]);
    assert_eq!(parallels, [4, 10]);

    let merged_root = dir.path().join("merged");
    let (code, out) = merge(&shards, &merged_root);
    assert_eq!(code, Some(0), "{out}");
    let merged = merged_root.join("sharded");
    let whole = Command::new(perf_bin())
        .args(args)
        .args(["--name", "whole", "--no-timestamp", "--outputs-dir"])
        .arg(dir.path().join("whole"))
        .output()
        .expect("unsharded run");
    assert!(whole.status.success(), "{:?}", text(&whole));
    let whole = dir.path().join("whole").join("whole");

    for label in ["parallel_4_number_30", "parallel_10_number_62"] {
        let ours = json(&merged.join(label).join("benchmark_summary.json"));
        let theirs = json(&whole.join(label).join("benchmark_summary.json"));
        for key in [
            "Total Requests",
            "Success Requests",
            "Failed Requests",
            "Avg Input Tokens",
            "Avg Output Tokens",
            "Concurrency",
        ] {
            assert_eq!(ours[key], theirs[key], "{label}: {key}");
        }
        // The client's load, which the rows do not keep, from the shards' own summaries: their
        // CPU added up, the busiest one's utilisation, saturated if any was.
        let own: Vec<Value> = shards
            .iter()
            .map(|s| json(&s.join(label).join("benchmark_summary.json")))
            .collect();
        let cpu: f64 = own
            .iter()
            .map(|o| o["Client CPU (s)"].as_f64().expect("cpu"))
            .sum();
        let merged_cpu = ours["Client CPU (s)"].as_f64().expect("merged cpu");
        assert!(
            (merged_cpu - cpu).abs() < 1e-3,
            "{label}: {merged_cpu} vs {cpu}"
        );
        let busiest = own
            .iter()
            .map(|o| o["Client CPU Util (%)"].as_f64().expect("util"))
            .fold(0.0, f64::max);
        assert_eq!(ours["Client CPU Util (%)"], busiest, "{label}");
        assert_eq!(ours["Client Saturated"], false, "{label}");
        assert_eq!(ours["Transport"], theirs["Transport"], "{label}");
        // Percentiles over the union of the shards' rows, not averages of the shards'.
        let mut latencies: Vec<f64> = shards
            .iter()
            .flat_map(|s| {
                column(
                    &s.join(label).join("benchmark_data.db"),
                    "SELECT latency FROM result WHERE success = 1",
                )
            })
            .collect();
        assert_eq!(
            latencies.len() as u64,
            ours["Success Requests"].as_u64().expect("n")
        );
        let rows = json(&merged.join(label).join("benchmark_percentile.json"));
        for row in rows.as_array().expect("rows") {
            let p = match row["Percentiles"].as_str().expect("label") {
                "10%" => 10.0,
                "50%" => 50.0,
                "90%" => 90.0,
                "99%" => 99.0,
                _ => continue,
            };
            let exact = nearest_rank(&mut latencies, p);
            let got = row["Latency (s)"].as_f64().expect("latency");
            assert!((got - exact).abs() < 5e-5, "{label} {p}%: {got} vs {exact}");
        }
        // One table of every row, request ids unique across the shards.
        let conn = rusqlite::Connection::open(merged.join(label).join("benchmark_data.db"))
            .expect("merged db");
        let (rows, ids): (i64, i64) = conn
            .query_row(
                "SELECT COUNT(*), COUNT(DISTINCT request_id) FROM result",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("counts");
        assert_eq!(rows, ours["Total Requests"].as_i64().expect("total"));
        assert_eq!(rows, ids, "request ids are unique across shards");
    }
    // The merge says when the shards started: together, thanks to --start-at.
    let report = json(&merged.join("merge.json"));
    for run in report["runs"].as_array().expect("runs") {
        let spread = run["start_spread_s"].as_f64().expect("spread");
        assert!((0.0..0.5).contains(&spread), "{run}");
        assert_eq!(run["shards"].as_array().expect("shards").len(), 4);
        // Each shard's client load, so a saturated load generator can be named.
        for shard in run["shards"].as_array().expect("shards") {
            assert_eq!(shard["client_saturated"], false, "{shard}");
            assert!(shard["client_cpu_util_percent"].is_number(), "{shard}");
        }
    }
    // The shards share this machine's clock: the skew read through the server's Date header
    // is within its own uncertainty of none.
    let skew = &report["clock_skew"];
    let (max, uncertainty) = (
        skew["max_abs_skew_s"].as_f64().expect("skew"),
        skew["uncertainty_s"].as_f64().expect("uncertainty"),
    );
    assert!(uncertainty < 0.1 && max <= uncertainty + 0.005, "{skew}");
    assert!(
        report["runs"][0]["start_spread_server_clock_s"].is_number(),
        "{report}"
    );
    // The merged benchmark is an ordinary one: it compares with the unsharded run.
    let compared = Command::new(perf_bin())
        .arg("compare")
        .arg(&whole)
        .arg(&merged)
        .arg("--html")
        .arg(dir.path().join("compare.html"))
        .output()
        .expect("perf compare");
    assert!(compared.status.success(), "{:?}", text(&compared));
    let args = json(&merged.join("benchmark_args.json"));
    assert_eq!(args["parallel"], serde_json::json!([4, 10]));
    assert_eq!(args["number"], serde_json::json!([30, 62]));
    assert!(merged.join("perf_report.html").is_file(), "{out}");
}

#[test]
fn an_open_loop_rate_split_over_shards_adds_up_to_the_asked_rate() {
    let sim = Simulator::start(&[]);
    let url = sim.url("/v1/chat/completions");
    let dir = tempfile::tempdir().expect("tmp");
    let shards = run_shards(
        dir.path(),
        &[
            "--url",
            &url,
            "--model",
            "mock",
            "--open-loop",
            "--rate",
            "40",
            "--number",
            "200",
            "--max-tokens",
            "4",
            "--prompt",
            "hi",
            "--seed",
            "7",
        ],
    );
    for s in &shards {
        let shard = json(&s.join("shard.json"));
        assert_eq!(shard["runs"][0]["rate"], 10.0, "a quarter of the rate each");
    }
    let (code, out) = merge(&shards, &dir.path().join("merged"));
    assert_eq!(code, Some(0), "{out}");
    assert!(
        !out.contains("the shards started the run"),
        "a paced run's first arrivals are random, its starts aligned: {out}"
    );
    let report = json(&dir.path().join("merged/sharded/merge.json"));
    let run = &report["runs"][0];
    assert_eq!(run["requests"], 200);
    let achieved = run["rate"]["achieved"].as_f64().expect("rate");
    // Four Poisson streams of 50 requests at 10/s: 200 arrivals over about 5 s; the
    // request-count estimate of a Poisson rate is within 20% here (about 3 standard errors).
    assert!(
        (achieved - 40.0).abs() / 40.0 < 0.2,
        "{achieved} req/s: {run}"
    );
}

#[test]
fn shards_of_different_benchmarks_or_a_missing_shard_are_refused_by_name() {
    let sim = Simulator::start(&[]);
    let url = sim.url("/v1/chat/completions");
    let dir = tempfile::tempdir().expect("tmp");
    let base = [
        "--url",
        &url,
        "--model",
        "mock",
        "--parallel",
        "4",
        "--number",
        "8",
        "--prompt",
        "hi",
    ];
    let mut a_args = base.to_vec();
    a_args.extend(["--max-tokens", "4"]);
    let a = run_shards(&dir.path().join("a"), &a_args);
    let mut b_args = base.to_vec();
    b_args.extend(["--max-tokens", "5"]);
    let b = run_shards(&dir.path().join("b"), &b_args);

    let (code, out) = merge(
        &[a[0].clone(), b[1].clone(), a[2].clone(), a[3].clone()],
        &dir.path().join("m1"),
    );
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("different benchmarks") && out.contains("max_tokens (4 vs 5)"),
        "{out}"
    );
    let (code, out) = merge(&a[..3], &dir.path().join("m2"));
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("shard(s) 3 of 4 missing"), "{out}");
    let (code, out) = merge(
        &[a[0].clone(), a[0].clone(), a[1].clone(), a[2].clone()],
        &dir.path().join("m3"),
    );
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("shard 0 is given twice"), "{out}");
    let (code, out) = merge(&[dir.path().join("a")], &dir.path().join("m4"));
    assert_eq!(
        code,
        Some(0),
        "a directory above the shards is searched: {out}"
    );

    // A shard of too small a load is refused before any traffic, on every shard alike.
    let bad = Command::new(perf_bin())
        .args([
            "--url",
            &url,
            "--model",
            "mock",
            "--parallel",
            "2",
            "--number",
            "8",
        ])
        .args(["--prompt", "hi", "--shard", "0/4", "--outputs-dir"])
        .arg(dir.path().join("bad"))
        .output()
        .expect("perf");
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad)
        .1
        .contains("--parallel 2 cannot be split over 4 shards"));
    let past = Command::new(perf_bin())
        .args([
            "--url", &url, "--model", "mock", "--number", "2", "--prompt", "hi",
        ])
        .args(["--start-at", "2020-01-01T00:00:00Z", "--outputs-dir"])
        .arg(dir.path().join("past"))
        .output()
        .expect("perf");
    assert_eq!(past.status.code(), Some(2));
    assert!(text(&past).1.contains("has passed"), "{:?}", text(&past));
    // --shard-sync is for shards; a directory an earlier benchmark used is refused.
    let lone = Command::new(perf_bin())
        .args([
            "--url", &url, "--model", "mock", "--number", "2", "--prompt", "hi",
        ])
        .args(["--shard-sync", "sync", "--outputs-dir"])
        .arg(dir.path().join("lone"))
        .current_dir(dir.path())
        .output()
        .expect("perf");
    assert_eq!(lone.status.code(), Some(2));
    assert!(
        text(&lone).1.contains("--shard-sync without --shard"),
        "{:?}",
        text(&lone)
    );
    let used = dir.path().join("used");
    std::fs::create_dir_all(&used).expect("mkdir");
    std::fs::write(used.join("joined-0"), "").expect("an earlier benchmark's mark");
    let again = Command::new(perf_bin())
        .args([
            "--url", &url, "--model", "mock", "--number", "4", "--prompt", "hi",
        ])
        .args(["--parallel", "2", "--shard", "0/2", "--shard-sync"])
        .arg(&used)
        .arg("--outputs-dir")
        .arg(dir.path().join("again"))
        .output()
        .expect("perf");
    assert_eq!(again.status.code(), Some(2));
    assert!(
        text(&again)
            .1
            .contains("give each benchmark a fresh directory"),
        "{:?}",
        text(&again)
    );
}

/// Each run's start spread in `merge.json`.
fn start_spreads(merged: &Path) -> Vec<f64> {
    json(&merged.join("merge.json"))["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| r["start_spread_s"].as_f64().expect("spread"))
        .collect()
}

#[test]
fn with_shard_sync_every_run_of_a_sweep_starts_on_all_shards_at_once() {
    // Shard 0 takes 3 of the first run's 9 requests, the others 2, one at a time at about
    // 640 ms each (40 ms to the first token, 10 ms for each of 60): it finishes that run about
    // 640 ms after them, a lag that the shards' own work between runs cannot hide on a busy
    // machine.
    let sim = Simulator::start(&[]);
    let url = sim.url("/v1/chat/completions");
    let args = [
        "--url",
        &url,
        "--model",
        "mock",
        "--parallel",
        "4",
        "8",
        "--number",
        "9",
        "16",
        "--max-tokens",
        "60",
        "--extra-args",
        r#"{"ignore_eos": true}"#,
        "--prompt",
        "hello",
        "--sleep-interval",
        "0",
    ];
    // --start-at alone aligns the first run only: the second starts when each shard is done.
    let dir = tempfile::tempdir().expect("tmp");
    let shards = run_shards(dir.path(), &args);
    let (code, out) = merge(&shards, &dir.path().join("merged"));
    assert_eq!(code, Some(0), "{out}");
    let spreads = start_spreads(&dir.path().join("merged").join("sharded"));
    assert!(
        spreads[0] < 0.1,
        "--start-at aligns the first run: {spreads:?}"
    );
    assert!(
        spreads[1] > 0.3,
        "without --shard-sync the second run starts when each shard is done: {spreads:?}"
    );
    assert!(
        out.contains("parallel_8_number_16: the shards started the run")
            && !out.contains("parallel_4_number_9: the shards"),
        "the merge warns of the run whose shards started apart: {out}"
    );

    // --shard-sync, the shards launched 300 ms apart: both runs start together.
    let dir = tempfile::tempdir().expect("tmp");
    let sync = dir.path().join("sync");
    let sync = sync.to_str().expect("utf-8");
    let shards = spawn_shards(
        dir.path(),
        &args,
        &["--shard-sync", sync],
        Duration::from_millis(300),
    );
    let (code, out) = merge(&shards, &dir.path().join("merged"));
    assert_eq!(code, Some(0), "{out}");
    let spreads = start_spreads(&dir.path().join("merged").join("sharded"));
    assert!(
        spreads.iter().all(|s| *s < 0.1),
        "every run starts on every shard at once: {spreads:?}"
    );
    assert!(
        !out.contains("the shards started the run"),
        "no warning: {out}"
    );
    let log = std::fs::read_to_string(shards[3].join("benchmark.log")).expect("log");
    assert!(
        log.contains("every shard starts parallel_8_number_16"),
        "{log}"
    );
}

#[test]
fn a_shard_interrupted_mid_sweep_ends_the_sweep_of_the_others_at_the_next_run() {
    // About 340 ms a request, 20 in a row on each shard: the first run lasts about 7 s.
    let sim = Simulator::start(&[]);
    let url = sim.url("/v1/chat/completions");
    let dir = tempfile::tempdir().expect("tmp");
    let sync = dir.path().join("sync");
    let start = |i: usize| {
        Command::new(perf_bin())
            .args(["--url", &url, "--model", "mock", "--parallel", "2", "4"])
            .args([
                "--number",
                "40",
                "40",
                "--max-tokens",
                "30",
                "--prompt",
                "hi",
            ])
            .args([
                "--extra-args",
                r#"{"ignore_eos": true}"#,
                "--sleep-interval",
                "0",
            ])
            .args(["--shard", &format!("{i}/2"), "--shard-sync"])
            .arg(&sync)
            .args(["--name", "sharded", "--no-timestamp", "--outputs-dir"])
            .arg(dir.path().join(format!("shard{i}")))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("perf starts")
    };
    let (first, second) = (start(0), start(1));
    let began = std::time::Instant::now();
    // Inside the first run: once shard 1's table of it exists.
    let table = dir
        .path()
        .join("shard1/sharded/parallel_2_number_40/benchmark_data.db");
    while !table.exists() {
        assert!(
            began.elapsed() < Duration::from_secs(30),
            "shard 1 never ran"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: signalling a child this test started and has not waited for.
    unsafe { libc::kill(second.id() as i32, libc::SIGINT) };
    let second = second.wait_with_output().expect("shard 1");
    let first = first.wait_with_output().expect("shard 0");
    let took = began.elapsed();
    let (_, log) = text(&first);
    assert!(first.status.success(), "{log}");
    assert!(
        log.contains("shard 1 ended the sweep before parallel_4_number_40 (interrupted)"),
        "{log}"
    );
    assert!(
        took < Duration::from_secs(60),
        "no wait for the lost shard: {took:?}"
    );
    assert_eq!(second.status.code(), Some(130), "{:?}", text(&second));
    // Shard 0 measured its whole first run and no second.
    let runs = dir.path().join("shard0/sharded");
    assert!(runs
        .join("parallel_2_number_40/benchmark_summary.json")
        .is_file());
    assert!(!runs.join("parallel_4_number_40").exists());
}
