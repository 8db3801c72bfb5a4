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

/// Mooncake-style requests: hash ids in blocks of 32 tokens, 30 ms apart.
const MOONCAKE: [&[u64]; 7] = [
    &[1, 2, 3],
    &[1, 2, 4],
    &[1, 5],
    &[1, 2, 3, 6],
    &[7, 8],
    &[7, 8, 9],
    &[1, 2, 3, 6],
];

fn write_mooncake(dir: &std::path::Path) -> std::path::PathBuf {
    let lines: Vec<String> = MOONCAKE
        .iter()
        .enumerate()
        .map(|(i, ids)| {
            json!({"timestamp": 30 * i, "input_length": 32 * ids.len(), "output_length": 2 + i, "hash_ids": ids})
                .to_string()
        })
        .collect();
    let path = dir.join("mooncake.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").expect("write");
    path
}

/// Tokens of each request a prefix cache could reuse: its leading blocks whose hash-id prefix
/// an earlier request had.
fn implied_cached(block: usize) -> Vec<usize> {
    let mut seen = std::collections::HashSet::new();
    MOONCAKE
        .iter()
        .map(|ids| {
            let hits = (1..=ids.len())
                .take_while(|&k| seen.contains(&ids[..k]))
                .count();
            for k in 1..=ids.len() {
                seen.insert(ids[..k].to_vec());
            }
            hits * block
        })
        .collect()
}

fn mooncake_run(extra: &[&str]) -> (crate::engine::Run, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tmp");
    let trace = write_mooncake(dir.path());
    let tok = perf_tests::tokenizer_dir("qwen3");
    let mut args = vec![
        "--dataset".to_string(),
        "mooncake_trace".into(),
        "--dataset-path".into(),
        trace.to_string_lossy().into_owned(),
        "--open-loop".into(),
        "--tokenizer-path".into(),
        tok.to_string_lossy().into_owned(),
        "--dataset-args".into(),
        r#"{"block_size": 32, "speed": 1.5}"#.into(),
        "--mock-prefix-cache-tokens".into(),
        "100000".into(),
        "--mock-cache-block-tokens".into(),
        "16".into(),
        "--mock-ttft-ms".into(),
        "0".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    (perf_dataset_run(&refs), dir)
}

#[test]
fn a_hash_id_trace_shares_exactly_its_blocks_and_the_simulator_hits_what_it_implies() {
    // Token ids as they are (/v1/completions): the simulator's cache sees the blocks exactly.
    let (r, _dir) = mooncake_run(&[
        "--url",
        "http://127.0.0.1:0/v1/completions",
        "--tokenize-prompt",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let label = "rate_-1.0_number_1000";
    let db = r.db(label);
    let got: Vec<(i64, i64, i64, f64)> = db
        .prepare("SELECT prompt_tokens, cached_tokens, completion_tokens, intended_send_epoch FROM result ORDER BY intended_send_epoch, request_index")
        .expect("prepare")
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))
        .expect("query")
        .map(|v| v.expect("row"))
        .collect();
    let implied = implied_cached(32);
    assert_eq!(got.len(), MOONCAKE.len());
    for (i, (prompt, cached, completion, at)) in got.iter().enumerate() {
        assert_eq!(
            *prompt as usize,
            32 * MOONCAKE[i].len(),
            "request {i}: input_length"
        );
        assert_eq!(
            *cached as usize, implied[i],
            "request {i}: the blocks it shares"
        );
        assert_eq!(*completion as usize, 2 + i, "request {i}: output_length");
        // 30 ms apart in the trace, replayed at speed 1.5.
        assert!(((at - got[0].3) - 0.02 * i as f64).abs() < 1e-3);
    }
    let cached: usize = implied.iter().sum();
    let prompt: usize = MOONCAKE.iter().map(|ids| 32 * ids.len()).sum();
    let rate = (100.0 * cached as f64 / prompt as f64 * 1e4).round() / 1e4;
    let s = r.json(label, "benchmark_summary.json");
    assert_eq!(
        f(&s, "KV Cache Hit Rate (%)"),
        rate,
        "the rate the trace implies"
    );

    // As chat text: the blocks survive decoding, so the tokenizer reads back exactly the
    // shared token blocks.
    let (r, _dir) = mooncake_run(&[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let tok = perf_host::tokenizer::HostTokenizer::load(&perf_tests::tokenizer_dir("qwen3"))
        .expect("tokenizer");
    use perf_plugin_api::sdk::TokenizerPlugin;
    let db = r.db(label);
    let prompts: Vec<Vec<u32>> = db
        .prepare("SELECT request FROM result ORDER BY intended_send_epoch, request_index")
        .expect("prepare")
        .query_map([], |row| row.get::<_, String>(0))
        .expect("query")
        .map(|body| {
            let body: Value = serde_json::from_str(&body.expect("row")).expect("json");
            let text = body["messages"][0]["content"]
                .as_str()
                .expect("text")
                .to_string();
            tok.encode(&text, false).expect("encode")
        })
        .collect();
    for (i, ids) in prompts.iter().enumerate() {
        assert_eq!(
            ids.len(),
            32 * MOONCAKE[i].len(),
            "request {i} re-encodes to its length"
        );
    }
    for a in 0..MOONCAKE.len() {
        for b in 0..a {
            let shared = MOONCAKE[a]
                .iter()
                .zip(MOONCAKE[b])
                .take_while(|(x, y)| x == y)
                .count();
            let same = prompts[a]
                .iter()
                .zip(&prompts[b])
                .take_while(|(x, y)| x == y)
                .count();
            assert!(
                same >= 32 * shared
                    && (same < 32 * (shared + 1) || same == prompts[a].len().min(prompts[b].len())),
                "requests {b} and {a} share {shared} blocks but {same} tokens"
            );
        }
    }
}
