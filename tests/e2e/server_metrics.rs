//! Server metrics: the simulator's `/metrics` in vLLM's format holds exactly what a run sent
//! and received, and `--server-metrics` scrapes it during a run into `server_metrics.jsonl`
//! and a summary beside the client's figures; a server without metrics is counted, not fatal.

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

fn json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .expect("json")
}

#[test]
fn server_metrics_are_scraped_during_the_run_and_summarised_beside_the_clients() {
    let sim = Simulator::start(&["--mock-output-tokens", "12", "--mock-capacity", "2"]);
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
            "16",
            "--parallel",
            "4",
            "--outputs-dir",
            "out",
            "--no-timestamp",
            "--name",
            "m",
            "--no-test-connection",
            "--server-metrics",
            "--server-metrics-interval",
            "0.2",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("Server metrics (http://127.0.0.1:"),
        "{stdout}"
    );
    let run = dir.path().join("out/m/parallel_4_number_16");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(run.join("server_metrics.jsonl"))
        .expect("the series")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    // 16 requests of about 150 ms on 2 slots: over a second, scraped every 0.2 s.
    assert!(lines.len() >= 5, "{} scrapes", lines.len());
    assert!(lines.iter().all(|l| l["ok"] == true));
    assert!(lines
        .windows(2)
        .all(|w| w[0]["t"].as_f64() <= w[1]["t"].as_f64()));
    let running_peak = lines
        .iter()
        .filter_map(|l| l["families"]["vllm:num_requests_running"]["series"][0]["value"].as_f64())
        .fold(0.0, f64::max);
    assert_eq!(running_peak, 2.0, "two slots were busy during the run");
    let s = json(&run.join("server_metrics_summary.json"));
    assert_eq!(s["scrape_failures"], 0);
    let ttft = &s["percentiles"]["TTFT (ms)"];
    assert_eq!(
        ttft["count"], 16.0,
        "every request of the run, none before it"
    );
    // The server's TTFT includes its queue; the client's too: both well above the 40 ms of
    // the simulator's setting, the server's p50 from its buckets (40-60 ms or above).
    assert!(ttft["p50"].as_f64().unwrap_or(0.0) >= 40.0, "{ttft}");
    assert!(
        ttft["client"]["p50"].as_f64().unwrap_or(0.0) >= 40.0,
        "{ttft}"
    );
    let tokens = &s["tokens"]["Generation Tokens"];
    assert_eq!(tokens["server_delta"], 192.0);
    assert_eq!(tokens["client_total"], 192.0);
    let prompt = &s["tokens"]["Prompt Tokens"];
    assert_eq!(prompt["server_delta"], prompt["client_total"], "{prompt}");
    assert_eq!(s["peaks"]["Running Requests"]["peak"], 2.0);
    assert!(
        s["peaks"]["Waiting Requests"]["peak"]
            .as_f64()
            .unwrap_or(0.0)
            >= 1.0,
        "{s}"
    );
    assert_eq!(s["peaks"]["KV Cache Usage"]["peak"], 1.0);
    let report =
        std::fs::read_to_string(dir.path().join("out/m/perf_report.html")).expect("report");
    assert!(
        report.contains("The server's own metrics") && report.contains("class=\"server-metrics\"")
    );
}

#[test]
fn a_server_without_metrics_is_counted_not_fatal() {
    let sim = Simulator::start(&["--mock-output-tokens", "4"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let out = perf_in(
        dir.path(),
        &[
            "--url",
            &sim.url("/v1/chat/completions"),
            "--model",
            "mock",
            "--prompt",
            "hi",
            "-n",
            "4",
            "--outputs-dir",
            "out",
            "--no-timestamp",
            "--name",
            "m",
            "--no-test-connection",
            "--server-metrics",
            "http://127.0.0.1:1/metrics",
        ],
    );
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("scraping --server-metrics http://127.0.0.1:1/metrics failed"),
        "{stderr}"
    );
    let s = json(
        &dir.path()
            .join("out/m/parallel_1_number_4/server_metrics_summary.json"),
    );
    assert!(s["scrape_failures"].as_u64().unwrap_or(0) >= 2, "{s}");
    assert_eq!(s["scrapes"], s["scrape_failures"]);
    let out = perf_in(
        dir.path(),
        &[
            "--url",
            &sim.url("/v1/chat/completions"),
            "--model",
            "mock",
            "--prompt",
            "hi",
            "--server-metrics",
            "ftp://x",
            "-n",
            "1",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).1.contains("give an http:// or https:// URL"),
        "{}",
        text(&out).1
    );
}
