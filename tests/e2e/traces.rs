//! Trace replay against the simulator: `workload_trace` sends each recorded request at its
//! recorded offset (sorted, scaled by `speed`), with its own request id, model rewrites and
//! recorded output length; the replay lag is in the database and the summary.

use serde_json::{json, Value};

use crate::conversations::perf_dataset_run;
use crate::engine::f;

/// A trace of `n` requests `gap_s` apart, written out of order; every third body is a JSON
/// string, every other timestamp ISO-8601, even requests carry a request id.
fn write_trace(dir: &std::path::Path, n: usize, gap_s: f64) -> std::path::PathBuf {
    let mut lines: Vec<String> = (0..n)
        .map(|i| {
            let body = json!({
                "model": format!("recorded-{}", i % 2),
                "messages": [{"role": "user", "content": format!("request {i}")}],
                "stream": true,
            });
            let t = 1_000.0 + gap_s * i as f64;
            let timestamp = if i % 2 == 0 {
                json!(t)
            } else {
                // 1970-01-01T00:16:40 is t = 1000.
                json!(format!(
                    "1970-01-01T00:16:{:09.6}Z",
                    40.0 + gap_s * i as f64
                ))
            };
            let mut rec = json!({
                "body": if i % 3 == 0 { json!(body.to_string()) } else { body },
                "timestamp": timestamp,
                "completion_tokens": 2 + i % 5,
            });
            if i % 2 == 0 {
                rec["request_id"] = json!(format!("trace-{i}"));
            }
            rec.to_string()
        })
        .collect();
    lines.reverse();
    let path = dir.join("trace.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").expect("write");
    path
}

struct Sent {
    request_id: String,
    intended: f64,
    sent: f64,
    lag: f64,
    completion: i64,
    body: Value,
}

fn rows(r: &crate::engine::Run, label: &str) -> Vec<Sent> {
    let db = r.db(label);
    let mut stmt = db
        .prepare(
            "SELECT request_id, intended_send_epoch, sent_epoch, dispatch_lag, completion_tokens, request \
             FROM result ORDER BY intended_send_epoch, request_index",
        )
        .expect("prepare");
    let out = stmt
        .query_map([], |row| {
            let body: String = row.get(5)?;
            Ok(Sent {
                request_id: row.get(0)?,
                intended: row.get(1)?,
                sent: row.get(2)?,
                lag: row.get(3)?,
                completion: row.get(4)?,
                body: serde_json::from_str(&body).expect("body"),
            })
        })
        .expect("query")
        .map(|r| r.expect("row"))
        .collect();
    out
}

#[test]
fn a_workload_trace_replays_on_its_recorded_schedule() {
    let dir = tempfile::tempdir().expect("tmp");
    let trace = write_trace(dir.path(), 20, 0.04);
    let log = dir.path().join("server.jsonl");
    let r = perf_dataset_run(&[
        "--dataset",
        "workload_trace",
        "--dataset-path",
        trace.to_str().expect("path"),
        "--open-loop",
        "--dataset-args",
        r#"{"speed": 2.0, "model_mapping": {"recorded-0": "zero"}, "model_override": "other", "match_output_length": true}"#,
        "--mock-ttft-ms",
        "5",
        "--mock-log",
        log.to_str().expect("path"),
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    // Without --number the whole trace is replayed, in the directory evalscope names.
    let label = "rate_-1.0_number_1000";
    let sent = rows(&r, label);
    assert_eq!(sent.len(), 20);
    let t0 = sent[0].intended;
    for (i, s) in sent.iter().enumerate() {
        // Request i of the sorted trace, at 0.04 s * i / speed 2.
        let offset = s.intended - t0;
        assert!(
            (offset - 0.02 * i as f64).abs() < 1e-3,
            "request {i} intended at {offset}"
        );
        assert!(s.sent >= s.intended - 1e-6, "never early");
        assert!((s.lag - (s.sent - s.intended)).abs() < 1e-3);
        assert!(s.lag < 0.5, "request {i} {} s late", s.lag);
        let content = s.body["messages"][0]["content"].as_str().expect("content");
        assert_eq!(content, format!("request {i}"), "sorted by timestamp");
        // The mapping wins over the override; the recorded output length is asked for.
        let model = if i % 2 == 0 { "zero" } else { "other" };
        assert_eq!(s.body["model"], model);
        assert_eq!(s.body["max_tokens"], json!(2 + i % 5));
        assert_eq!(s.body["ignore_eos"], true);
        assert_eq!(s.completion, (2 + i % 5) as i64);
        if i % 2 == 0 {
            assert_eq!(s.request_id, format!("trace-{i}"));
        } else {
            assert!(s.request_id.starts_with("perf-"));
        }
    }
    // The trace's request ids are what the server saw.
    let logged = std::fs::read_to_string(&log).expect("server log");
    assert!(logged.contains("\"trace-4\""), "{logged}");
    let s = r.json(label, "benchmark_summary.json");
    assert_eq!(f(&s, "Total Requests"), 20.0);
    assert_eq!(f(&s, "Concurrency"), -1.0);
    for key in [
        "P50 Dispatch Lag (ms)",
        "P90 Dispatch Lag (ms)",
        "P99 Dispatch Lag (ms)",
    ] {
        assert!(f(&s, key) >= 0.0, "{key}: {s}");
    }
    assert!(f(&s, "P50 Dispatch Lag (ms)") <= f(&s, "P99 Dispatch Lag (ms)"));
    let args = r.json(label, "benchmark_args.json");
    assert_eq!(args["number"], 20);

    // --number replays the start of the trace.
    let r = perf_dataset_run(&[
        "--dataset",
        "workload_trace",
        "--dataset-path",
        trace.to_str().expect("path"),
        "--open-loop",
        "-n",
        "5",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let sent = rows(&r, "rate_-1.0_number_5");
    assert_eq!(sent.len(), 5);
    assert_eq!(
        sent[4].body["model"], "recorded-0",
        "bodies are sent as recorded"
    );
    assert!((sent[4].intended - sent[0].intended - 0.16).abs() < 1e-3);
}

#[test]
fn trace_mistakes_exit_2_naming_the_lines() {
    let dir = tempfile::tempdir().expect("tmp");
    let trace = write_trace(dir.path(), 3, 0.01);
    let path = trace.to_str().expect("path");
    let r = perf_dataset_run(&["--dataset", "workload_trace", "--dataset-path", path]);
    assert_eq!(r.code, Some(2));
    assert!(r.stderr.contains("add --open-loop"), "{}", r.stderr);
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        concat!(
            r#"{"body": {}, "timestamp": 1}"#,
            "\n",
            r#"{"body": {}, "timestamp": "noon"}"#,
            "\n",
            r#"{"body": [], "timestamp": 2}"#,
            "\n",
        ),
    )
    .expect("write");
    let r = perf_dataset_run(&[
        "--dataset",
        "workload_trace",
        "--open-loop",
        "--dataset-path",
        bad.to_str().expect("path"),
    ]);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("2 bad trace line(s)"), "{}", r.stderr);
    assert!(
        r.stderr.contains("line 2: cannot parse timestamp"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("line 3: body must be"), "{}", r.stderr);
    let r = perf_dataset_run(&[
        "--dataset",
        "workload_trace",
        "--open-loop",
        "--dataset-path",
        path,
        "--dataset-args",
        r#"{"speed": 0}"#,
    ]);
    assert_eq!(r.code, Some(2));
    assert!(r.stderr.contains("speed must be > 0"), "{}", r.stderr);
}
