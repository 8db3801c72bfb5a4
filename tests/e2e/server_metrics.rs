//! The simulator's `/metrics` in vLLM's format, read after a run: its counters and histograms
//! hold exactly what the run sent and received.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;

use perf_tests::{perf_in, text, Simulator};
use rusqlite::Connection;

/// `GET /metrics` of the simulator on `port`, as `series -> value`.
fn scrape(port: u16) -> HashMap<String, f64> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connects");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("writes");
    let mut body = String::new();
    s.read_to_string(&mut body).expect("reads");
    let (head, body) = body.split_once("\r\n\r\n").expect("a response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

#[test]
fn the_simulator_counts_in_vllm_metrics_what_the_run_measured() {
    let sim = Simulator::start(&["--mock-output-tokens", "10", "--mock-capacity", "2"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let out = perf_in(
        dir.path(),
        &[
            "--url",
            &sim.url("/v1/chat/completions"),
            "--model",
            "mock",
            "--prompt",
            "Tell me about Rust",
            "-n",
            "8",
            "--parallel",
            "4",
            "--outputs-dir",
            "out",
            "--no-timestamp",
            "--name",
            "m",
            "--no-test-connection",
        ],
    );
    assert!(out.status.success(), "{}", text(&out).1);
    let db = Connection::open(
        dir.path()
            .join("out/m/parallel_4_number_8/benchmark_data.db"),
    )
    .expect("db");
    let (prompt, completion): (i64, i64) = db
        .query_row(
            "SELECT SUM(prompt_tokens), SUM(completion_tokens) FROM result WHERE success = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("sums");
    let m = scrape(sim.port);
    let get = |k: &str| {
        *m.get(&format!("{k}{{model_name=\"mock\"}}"))
            .unwrap_or_else(|| panic!("no {k}"))
    };
    assert_eq!(get("vllm:prompt_tokens_total"), prompt as f64);
    assert_eq!(get("vllm:generation_tokens_total"), completion as f64);
    assert_eq!(completion, 80);
    assert_eq!(get("vllm:time_to_first_token_seconds_count"), 8.0);
    assert_eq!(get("vllm:e2e_request_latency_seconds_count"), 8.0);
    assert_eq!(get("vllm:request_queue_time_seconds_count"), 8.0);
    // 40 ms to the first token, 10 ms a token after it (the simulator's settings); four in
    // flight for two slots: half the requests wait about a whole request.
    let ttft = get("vllm:time_to_first_token_seconds_sum") / 8.0;
    assert!(ttft >= 0.040, "mean ttft {ttft}");
    let tpot = get("vllm:time_per_output_token_seconds_sum") / 8.0;
    assert!((0.0095..0.02).contains(&tpot), "mean tpot {tpot}");
    assert!(
        get("vllm:request_queue_time_seconds_sum") > 0.1,
        "requests queued for slots"
    );
    assert_eq!(get("vllm:num_requests_running"), 0.0);
    assert_eq!(get("vllm:num_requests_waiting"), 0.0);
    let finished: f64 = ["stop", "length"]
        .iter()
        .map(|r| {
            m[&format!("vllm:request_success_total{{finished_reason=\"{r}\",model_name=\"mock\"}}")]
        })
        .sum();
    assert_eq!(finished, 8.0);
    let inf = "vllm:time_to_first_token_seconds_bucket{le=\"+Inf\",model_name=\"mock\"}";
    assert_eq!(m[inf], 8.0, "buckets are cumulative");
}
