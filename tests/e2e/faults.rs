//! The fault matrix: perf against a hostile server, one fault at a time. For each fault the
//! run finishes, every request the server read is a row (none lost, none doubled), the
//! failure kind and message say what happened, perf's memory stays bounded, and the API key
//! and credential header perf was given appear in no output, although the server echoes them.

use std::path::Path;

use perf_tests::hostile::{Fault, Hostile, ANSWERED_BEFORE_REFUSING};
use perf_tests::{all_text_under, perf_measured, text};
use rusqlite::Connection;

const API_KEY: &str = "sk-perf-fault-matrix-7QbXz";
const HEADER_KEY: &str = "hdr-secret-fault-matrix-91";

/// Peak memory allowed for any run of the matrix (a huge body or line must not be held).
const MAX_RSS_KB: u64 = 200 * 1024;

struct Outcome {
    code: Option<i32>,
    stderr: String,
    rows: Vec<(i64, Option<String>, Option<String>)>,
    retries: i64,
    seen: u64,
}

fn run(fault: Fault, extra: &[&str], n: usize) -> Outcome {
    let server = Hostile::start(fault);
    let dir = tempfile::tempdir().expect("tempdir");
    let url = server.url();
    let n_text = n.to_string();
    let header = format!("X-Api-Key={HEADER_KEY}");
    let mut args = vec![
        "--url",
        &url,
        "--model",
        "m",
        "--api-key",
        API_KEY,
        "--headers",
        &header,
        "--prompt",
        "hi",
        "-n",
        &n_text,
        "--parallel",
        "2",
        "--no-test-connection",
        "--read-timeout",
        "1",
        "--total-timeout",
        "20",
        "--max-response-bytes",
        "1048576",
        "--max-event-bytes",
        "65536",
        "--outputs-dir",
        "out",
        "--no-timestamp",
        "--name",
        "f",
    ];
    args.extend_from_slice(extra);
    let (out, rss_kb) = perf_measured(dir.path(), &args);
    let (stdout, stderr) = text(&out);
    assert!(
        rss_kb < MAX_RSS_KB,
        "{fault:?}: peak RSS {rss_kb} KiB\n{stderr}"
    );
    let run_dir = dir.path().join(format!("out/f/parallel_2_number_{n}"));
    let conn = Connection::open(run_dir.join("benchmark_data.db")).expect("db");
    let rows: Vec<(i64, Option<String>, Option<String>)> = conn
        .prepare("SELECT success, error_kind, error FROM result")
        .expect("query")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("rows")
        .map(|r| r.expect("row"))
        .collect();
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run_dir.join("benchmark_summary.json")).expect("summary"),
    )
    .expect("json");
    let retries = summary["Reused-Connection Retries"].as_i64().unwrap_or(-1);
    // No secret anywhere: console, log, database, files.
    let mut texts = all_text_under(dir.path());
    texts.push((Path::new("stdout").into(), stdout));
    texts.push((Path::new("stderr").into(), stderr.clone()));
    for (path, content) in &texts {
        for secret in [API_KEY, HEADER_KEY] {
            assert!(
                !content.contains(secret),
                "{fault:?}: {} contains a secret",
                path.display()
            );
        }
    }
    Outcome {
        code: out.status.code(),
        stderr,
        rows,
        retries,
        seen: server.seen(),
    }
}

/// Every row failed as `kind`, its message containing `message`; rows == requests seen.
fn all_failed(fault: Fault, kind: &str, message: &str) -> Outcome {
    let o = run(fault, &[], 4);
    assert_eq!(
        o.code,
        Some(1),
        "{fault:?}: every request failed\n{}",
        o.stderr
    );
    assert_eq!(o.rows.len(), 4, "{fault:?}");
    assert_eq!(
        o.rows.len() as i64,
        o.seen as i64 - o.retries.max(0),
        "{fault:?}: a row per request the server read"
    );
    for (success, k, error) in &o.rows {
        let error = error.as_deref().unwrap_or("");
        assert_eq!(*success, 0, "{fault:?}");
        assert_eq!(k.as_deref(), Some(kind), "{fault:?}: {error}");
        assert!(
            error.contains(message),
            "{fault:?}: {error:?} lacks {message:?}"
        );
    }
    o
}

#[test]
fn http_errors_are_failures_with_their_body_and_no_echoed_credential() {
    let o = all_failed(Fault::EchoCredentials, "http_status", "HTTP 401: ");
    assert!(o
        .rows
        .iter()
        .all(|r| r.2.as_deref().is_some_and(|e| e.contains("**********"))));
    all_failed(Fault::ServerError, "http_status", "HTTP 500: ");
}

#[test]
fn cut_connections_are_stream_failures() {
    all_failed(Fault::CloseBeforeHead, "stream", "no response");
    all_failed(Fault::ResetBeforeHead, "stream", "no response");
    all_failed(Fault::CloseMidStream, "stream", "");
    all_failed(Fault::ResetMidStream, "stream", "");
    all_failed(Fault::BadChunked, "stream", "");
}

#[test]
fn undecodable_answers_fail_as_decode() {
    all_failed(
        Fault::Malformed,
        "decode",
        "none of the response's 2 event(s) could be decoded",
    );
    all_failed(Fault::InvalidUtf8, "decode", "could be decoded");
    all_failed(Fault::Html, "empty_response", "without any output");
}

#[test]
fn stalls_and_slow_heads_are_cut_at_the_read_timeout() {
    all_failed(
        Fault::StallBeforeHead,
        "timeout",
        "no response head for 1s (--read-timeout)",
    );
    all_failed(
        Fault::StallMidStream,
        "timeout",
        "no data for 1s (--read-timeout)",
    );
    all_failed(Fault::SlowHeaders, "timeout", "(--read-timeout)");
}

#[test]
fn huge_bodies_and_lines_fail_with_bounded_memory() {
    all_failed(
        Fault::HugeBody,
        "stream",
        "--max-response-bytes (1048576 bytes)",
    );
    all_failed(Fault::HugeLine, "stream", "--max-event-bytes (65536 bytes)");
}

#[test]
fn a_server_that_goes_away_mid_run_is_counted_and_the_run_ends() {
    let o = run(Fault::RefuseAfterFew, &[], 10);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert_eq!(o.rows.len(), 10);
    let ok = o.rows.iter().filter(|r| r.0 == 1).count() as u64;
    assert_eq!(ok, ANSWERED_BEFORE_REFUSING);
    assert_eq!(o.seen, ANSWERED_BEFORE_REFUSING);
    for (success, kind, error) in &o.rows {
        if *success == 0 {
            assert!(
                matches!(kind.as_deref(), Some("connect" | "stream")),
                "{kind:?} {error:?}"
            );
        }
    }
}

#[test]
fn absurd_usage_and_data_after_done_do_not_distort_the_numbers() {
    for fault in [Fault::AbsurdUsage, Fault::DataAfterDone] {
        let o = run(fault, &[], 4);
        assert_eq!(o.code, Some(0), "{fault:?}: {}", o.stderr);
        assert!(o.rows.iter().all(|r| r.0 == 1), "{fault:?}");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    for fault in [Fault::AbsurdUsage, Fault::DataAfterDone] {
        let server = Hostile::start(fault);
        let url = server.url();
        let name = format!("{fault:?}");
        let out = perf_tests::perf_in(
            dir.path(),
            &[
                "--url",
                &url,
                "--model",
                "m",
                "--prompt",
                "hi",
                "-n",
                "3",
                "--no-test-connection",
                "--outputs-dir",
                "o",
                "--name",
                &name,
                "--no-timestamp",
            ],
        );
        assert_eq!(out.status.code(), Some(0), "{fault:?}");
        let db = dir
            .path()
            .join(format!("o/{name}/parallel_1_number_3/benchmark_data.db"));
        let conn = Connection::open(db).expect("db");
        let (min_prompt, output_chunks, malformed): (i64, i64, i64) = conn
            .query_row(
                "SELECT MIN(prompt_tokens), MAX(output_chunks), MAX(malformed_chunks) FROM result",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .expect("row");
        assert!(min_prompt >= 0, "{fault:?}: no negative token count");
        match fault {
            // 2^64 - 1 and -5 are not used (counted as malformed): no count wraps negative.
            Fault::AbsurdUsage => assert!(malformed >= 1, "the absurd usage is counted"),
            // The event after [DONE] is not output.
            _ => assert_eq!(output_chunks, 2, "{fault:?}"),
        }
    }
}

#[test]
fn a_full_disk_keeps_the_committed_rows_says_so_and_exits_non_zero() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = std::process::Command::new(perf_tests::perf_bin());
    cmd.args([
        "--api",
        "mock",
        "--port",
        "0",
        "--prompt",
        "hello there",
        "-n",
        "3000",
        "--parallel",
        "4",
        "--mock-ttft-ms",
        "1",
        "--mock-tpot-ms",
        "0",
        "--db-commit-interval",
        "20",
        "--outputs-dir",
        "out",
        "--no-timestamp",
        "--name",
        "full",
    ])
    .current_dir(dir.path());
    // SAFETY: setrlimit is async-signal-safe; the child only limits its own file sizes.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 1024 * 1024,
                rlim_max: 1024 * 1024,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().expect("perf runs");
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("writing benchmark_data.db failed")
            && stderr.contains("the rows committed so far are kept"),
        "{stderr}"
    );
    let run = dir.path().join("out/full/parallel_4_number_3000");
    let conn = Connection::open(run.join("benchmark_data.db")).expect("db");
    let rows: i64 = conn
        .query_row("SELECT COUNT(*) FROM result", [], |r| r.get(0))
        .expect("count");
    assert!((20..3000).contains(&rows), "committed rows kept: {rows}");
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run.join("benchmark_summary.json")).expect("summary"),
    )
    .expect("a whole summary, not an empty file");
    assert_eq!(summary["Total Requests"], 3000);
}

#[test]
fn an_error_body_that_never_comes_waits_only_the_read_timeout() {
    let started = std::time::Instant::now();
    all_failed(
        Fault::ErrorHeadThenStall,
        "http_status",
        "HTTP 500: {\"error\"",
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(6),
        "two rounds of 1 s reads, not 10 s each: {:?}",
        started.elapsed()
    );
}

#[test]
fn careless_command_lines_are_refused_with_the_flag_value_and_range() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").expect("write");
    let binary = dir.path().join("binary.txt");
    std::fs::write(&binary, [0xffu8, 0xfe, 0x00, 0x81, b'\n', 0xc3]).expect("write");
    let under_file = format!("{}/outputs", file.display());
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--total-timeout", "1e20"], "invalid value '1e20' for '--total-timeout <SECONDS>': must be a number of seconds above 0 up to 100000000"),
        (vec!["--read-timeout", "-1"], "invalid value '-1' for '--read-timeout <SECONDS>'"),
        (vec!["--connect-timeout", "nan"], "'--connect-timeout <SECONDS>'"),
        (vec!["--duration", "1e300"], "'--duration <SECONDS>'"),
        (vec!["--sleep-interval", "1e20"], "'--sleep-interval <SLEEP_INTERVAL>'"),
        (vec!["--rate", "1e-300"], "must be requests per second from 0.000001 to 10000000, or -1 for no pacing"),
        (vec!["--parallel", "99999999999999"], "must be a whole number of concurrent requests from 1 to 1000000"),
        (vec!["--number", "-5"], "invalid value '-5' for '--number <NUMBER>...'"),
        (vec!["--warmup-num", "1e300"], "'--warmup-num <WARMUP_NUM>'"),
        (vec!["--max-tokens", "5", "6", "7"], "--max-tokens takes one value or two"),
        (vec!["--outputs-dir", &under_file, "--api", "mock", "--port", "0", "--prompt", "hi", "-n", "1"], "cannot create the output directory"),
        (vec!["--api", "mock", "--port", "0", "--dataset", "line_by_line", "--dataset-path", binary.to_str().expect("utf-8")], "not UTF-8 text"),
    ];
    for (args, message) in cases {
        let mut all = vec!["--model", "m"];
        all.extend(args.iter().copied());
        let out = perf_tests::perf_in(dir.path(), &all);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}

#[test]
fn memory_follows_the_requests_in_flight_not_the_parallel_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, rss_kb) = perf_measured(
        dir.path(),
        &[
            "--api",
            "mock",
            "--port",
            "0",
            "--prompt",
            "hi",
            "--parallel",
            "1000000",
            "-n",
            "2",
            "--outputs-dir",
            "out",
            "--no-timestamp",
            "--name",
            "m",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    assert!(
        rss_kb < 100 * 1024,
        "peak RSS {rss_kb} KiB for two requests"
    );
}

#[test]
fn credentials_in_the_url_and_a_replaced_header_are_handled_and_said() {
    let sim = perf_tests::Simulator::start(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!(
        "http://bob:url-password-secret-1@127.0.0.1:{}/v1?api_key=query-secret-key-2&api-version=2024",
        sim.port
    );
    let out = perf_tests::perf_in(
        dir.path(),
        &[
            "--url",
            &url,
            "--model",
            "m",
            "--prompt",
            "hi",
            "-n",
            "2",
            "--api-key",
            API_KEY,
            "--headers",
            "Authorization=Bearer other-secret-token-3",
            "--max-tokens",
            "8",
            "--outputs-dir",
            "out",
            "--no-timestamp",
            "--name",
            "u",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(
        stderr.contains("--api-key and --headers both set Authorization"),
        "{stderr}"
    );
    let mut texts = all_text_under(dir.path());
    texts.push(("stdout".into(), stdout));
    texts.push(("stderr".into(), stderr));
    for (path, content) in &texts {
        for secret in [
            "url-password-secret-1",
            "query-secret-key-2",
            "other-secret-token-3",
            API_KEY,
        ] {
            assert!(
                !content.contains(secret),
                "{} contains {secret}",
                path.display()
            );
        }
    }
    let args: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            dir.path()
                .join("out/u/parallel_1_number_2/benchmark_args.json"),
        )
        .expect("args"),
    )
    .expect("json");
    // Only secrets are masked.
    assert_eq!(args["max_tokens"], serde_json::json!(8));
    assert_eq!(args["tokenize_prompt"], false);
    let url = args["url"].as_str().expect("url");
    assert!(
        url.contains("api_key=**********") && url.contains("api-version=2024"),
        "{url}"
    );
}
