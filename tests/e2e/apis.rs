//! The other APIs end to end: DashScope (text and multimodal) and the Responses API, each
//! against perf's simulator (`perf serve-mock`) with perf's adapter, and with the official
//! `dashscope` and `openai` Python clients to show the simulator speaks the real protocols.

use std::path::Path;
use std::process::Command;

use perf_tests::{perf_bin, py_clients_python, text, Simulator};
use rusqlite::Connection;
use serde_json::Value;

const DASHSCOPE_TEXT: &str = "/api/v1/services/aigc/text-generation/generation";
const DASHSCOPE_MULTIMODAL: &str = "/api/v1/services/aigc/multimodal-generation/generation";

/// Runs perf in `dir` and returns (exit code, console, the run's summary, its database).
fn run(dir: &Path, args: &[&str]) -> (Option<i32>, String, Value, Connection) {
    let mut all = vec![
        "--outputs-dir",
        "outputs",
        "--no-timestamp",
        "--name",
        "t",
        "--api-key",
        "sk-secret-dashscope",
    ];
    all.extend_from_slice(args);
    let out = Command::new(perf_bin())
        .args(&all)
        .current_dir(dir)
        .output()
        .expect("perf runs");
    let (stdout, stderr) = text(&out);
    let console = format!("{stdout}\n{stderr}");
    let run_dir = std::fs::read_dir(dir.join("outputs/t"))
        .expect("outputs")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .unwrap_or_else(|| panic!("no run directory: {console}"));
    let summary: Value = serde_json::from_str(
        &std::fs::read_to_string(run_dir.join("benchmark_summary.json")).expect("summary"),
    )
    .expect("JSON");
    let db = Connection::open(run_dir.join("benchmark_data.db")).expect("db");
    (out.status.code(), console, summary, db)
}

/// The JSON body of the first request row matching `condition`.
fn request_body(db: &Connection, condition: &str) -> Value {
    let body: String = db
        .query_row(
            &format!("SELECT request FROM result WHERE {condition} LIMIT 1"),
            [],
            |r| r.get(0),
        )
        .expect("a request");
    serde_json::from_str(&body).expect("JSON")
}

fn f(summary: &Value, key: &str) -> f64 {
    summary[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} in {summary}"))
}

/// N requests, N successes, the server's token counts, and TTFT / TPOT near the simulator's
/// 40 ms and 10 ms (loose upper bounds absorb a busy machine).
fn assert_faithful(summary: &Value, db: &Connection, n: f64, output_tokens: f64, streamed: bool) {
    assert_eq!(f(summary, "Total Requests"), n, "{summary}");
    assert_eq!(f(summary, "Success Requests"), n, "{summary}");
    assert_eq!(f(summary, "Avg Output Tokens"), output_tokens, "{summary}");
    assert_eq!(f(summary, "Estimated Token Counts"), 0.0, "{summary}");
    let sources: Vec<String> = db
        .prepare("SELECT DISTINCT token_counts FROM result")
        .expect("query")
        .query_map([], |r| r.get(0))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(sources, ["server"], "usage came from the server");
    let ttft = f(summary, "Avg TTFT (ms)");
    if streamed {
        assert!((40.0..80.0).contains(&ttft), "TTFT {ttft}");
        let tpot = f(summary, "Avg TPOT (ms)");
        assert!((9.5..20.0).contains(&tpot), "TPOT {tpot}");
    } else {
        // Not streamed: TTFT is the whole latency, 40 ms + 7 x 10 ms.
        assert!((110.0..170.0).contains(&ttft), "latency {ttft}");
    }
}

#[test]
fn dashscope_streamed_and_not_matches_the_simulator() {
    let sim = Simulator::start(&[]);
    let dir = tempfile::tempdir().expect("tmp");
    for streamed in [true, false] {
        let _ = std::fs::remove_dir_all(dir.path().join("outputs"));
        let url = sim.url(DASHSCOPE_TEXT);
        let mut args = vec![
            "--api",
            "dashscope",
            "--url",
            &url,
            "--model",
            "qwen-plus",
            "-n",
            "20",
            "--parallel",
            "4",
            "--max-tokens",
            "8",
            "--prompt",
            "hello",
        ];
        if !streamed {
            args.push("--no-stream");
        }
        let (code, console, summary, db) = run(dir.path(), &args);
        assert_eq!(code, Some(0), "{console}");
        assert_faithful(&summary, &db, 20.0, 8.0, streamed);
        let body = request_body(&db, "1 = 1");
        assert_eq!(body["input"]["messages"][0]["content"], "hello");
        assert_eq!(body["parameters"]["result_format"], "message");
        assert!(!console.contains("sk-secret-dashscope"));
    }
}

#[test]
fn dashscope_multimodal_prompts_and_server_errors() {
    let sim = Simulator::start(&["--mock-fail-every", "4"]);
    let dir = tempfile::tempdir().expect("tmp");
    let prompts = dir.path().join("prompts.jsonl");
    std::fs::write(
        &prompts,
        r#"[{"role": "user", "content": [{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]
"#,
    )
    .expect("write");
    let url = sim.url(DASHSCOPE_MULTIMODAL);
    let (code, console, summary, db) = run(
        dir.path(),
        &[
            "--api",
            "dashscope",
            "--url",
            &url,
            "--model",
            "qwen-vl-plus",
            "-n",
            "12",
            "--max-tokens",
            "4",
            "--dataset",
            "line_by_line",
            "--dataset-path",
            prompts.to_str().expect("utf-8"),
            "--no-test-connection",
        ],
    );
    assert_eq!(code, Some(0), "{console}");
    assert_eq!(f(&summary, "Success Requests"), 9.0, "{summary}");
    assert_eq!(
        f(&summary, "Failed Requests"),
        3.0,
        "every 4th fails: {summary}"
    );
    let body = request_body(&db, "success = 1");
    assert_eq!(
        body["input"]["messages"][0]["content"],
        serde_json::json!([{"text": "what is this?"}, {"image": "data:image/png;base64,iVBORw0KGgo="}])
    );
    let errors: Vec<(String, String)> = db
        .prepare("SELECT error_kind, error FROM result WHERE success = 0")
        .expect("query")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(errors.len(), 3);
    for (kind, message) in errors {
        assert_eq!(kind, "http_status");
        assert!(message.contains("InternalError"), "{message}");
    }
}

#[test]
fn the_responses_api_streamed_and_not_matches_the_simulator() {
    let sim = Simulator::start(&[]);
    let dir = tempfile::tempdir().expect("tmp");
    for streamed in [true, false] {
        let _ = std::fs::remove_dir_all(dir.path().join("outputs"));
        let url = sim.url("/v1/responses");
        let mut args = vec![
            "--api",
            "responses",
            "--url",
            &url,
            "--model",
            "m",
            "-n",
            "20",
            "--parallel",
            "4",
            "--max-tokens",
            "8",
            "--prompt",
            "hello",
        ];
        if !streamed {
            args.push("--no-stream");
        }
        let (code, console, summary, db) = run(dir.path(), &args);
        assert_eq!(code, Some(0), "{console}");
        assert_faithful(&summary, &db, 20.0, 8.0, streamed);
        let body = request_body(&db, "1 = 1");
        assert_eq!(body["input"], "hello");
        assert_eq!(body["max_output_tokens"], 8);
    }
}

#[test]
fn the_official_dashscope_and_openai_clients_work_against_the_simulator() {
    let sim = Simulator::start(&[]);
    let out = Command::new(py_clients_python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("py/api_clients.py"))
        .arg(sim.url(""))
        .output()
        .expect("the clients run");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let results: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let call = |name: &str| -> &Value {
        results
            .iter()
            .find(|r| r["call"] == name)
            .unwrap_or_else(|| panic!("{name} in {stdout}"))
    };
    for name in ["dashscope text", "dashscope stream", "dashscope multimodal"] {
        assert_eq!(call(name)["status"], 200, "{name}");
    }
    assert_eq!(call("dashscope text")["output_tokens"], 8);
    let stream = call("dashscope stream");
    let pieces = stream["pieces"].as_array().expect("pieces");
    assert_eq!(
        pieces.len(),
        7,
        "six pieces and the closing event: {stream}"
    );
    assert_eq!(stream["finish"], "length");
    assert_eq!(stream["output_tokens"], 6);
    assert!(!call("dashscope multimodal")["text"]
        .as_str()
        .expect("text")
        .is_empty());
    assert_eq!(call("responses")["status"], "incomplete", "cut at 6 tokens");
    assert_eq!(call("responses")["output_tokens"], 6);
    let stream = call("responses stream");
    assert_eq!(stream["status"], "completed");
    let events: Vec<&str> = stream["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(events.first(), Some(&"response.created"));
    assert_eq!(events.last(), Some(&"response.completed"));
    assert!(events.contains(&"response.output_text.delta"));
    // The client asks for base64 vectors and decodes them.
    let embeddings = call("embeddings");
    assert_eq!(embeddings["count"], 2);
    assert_eq!(embeddings["dimensions"], 64);
    assert!(embeddings["prompt_tokens"].as_u64().expect("tokens") > 0);
}

fn column_names(dir: &Path) -> Vec<String> {
    let run_dir = std::fs::read_dir(dir.join("outputs/t"))
        .expect("outputs")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .expect("a run directory");
    let text =
        std::fs::read_to_string(run_dir.join("benchmark_percentile.json")).expect("percentiles");
    let rows: Value = serde_json::from_str(&text.replace(": NaN", ": null")).expect("JSON");
    rows[0]
        .as_object()
        .expect("a row")
        .keys()
        .cloned()
        .collect()
}

#[test]
fn embeddings_report_evalscopes_input_throughput_and_perfs_over_wall_time_beside_it() {
    let sim = Simulator::start(&[]);
    let dir = tempfile::tempdir().expect("tmp");
    let tokenizer = perf_tests::tokenizer_dir("qwen3");
    let url = sim.url("/v1");
    let (code, console, summary, db) = run(
        dir.path(),
        &[
            "--api",
            "embedding",
            "--url",
            &url,
            "--model",
            "bge",
            "-n",
            "24",
            "--parallel",
            "4",
            "--dataset",
            "random_embedding",
            "--tokenizer-path",
            tokenizer.to_str().expect("utf-8"),
            "--min-prompt-length",
            "20",
            "--max-prompt-length",
            "40",
        ],
    );
    assert_eq!(code, Some(0), "{console}");
    assert_eq!(f(&summary, "Success Requests"), 24.0, "{summary}");
    assert_eq!(f(&summary, "Avg Output Tokens"), 0.0);
    let prompt: f64 = db
        .query_row("SELECT SUM(prompt_tokens) FROM result", [], |r| r.get(0))
        .expect("sum");
    let latency: f64 = db
        .query_row("SELECT SUM(latency) FROM result", [], |r| r.get(0))
        .expect("sum");
    let wall = f(&summary, "Test Duration (s)");
    let honest = f(&summary, "Run Input Throughput (tok/s)");
    let evalscope = f(&summary, "Input Throughput (tok/s)");
    assert!(
        (honest - prompt / wall).abs() / honest < 0.01,
        "{honest} vs {}",
        prompt / wall
    );
    assert!(
        (evalscope - prompt / latency).abs() / evalscope < 0.01,
        "{evalscope}"
    );
    // Four streams at once: the wall-time figure is about four times the per-stream one.
    assert!(
        (2.5..5.0).contains(&(honest / evalscope)),
        "{honest} / {evalscope}"
    );
    assert_eq!(
        column_names(dir.path()),
        [
            "Percentiles",
            "Latency (s)",
            "Input tokens",
            "Input (tok/s)"
        ]
    );
    let body = request_body(&db, "1 = 1");
    assert!(body["input"].is_string(), "{body}");
    assert!(
        console.contains("Input tok/s"),
        "the overview table: {console}"
    );
}

#[test]
fn embedding_batches_and_rerank_pairs_from_files_and_random() {
    let sim = Simulator::start(&[]);
    let dir = tempfile::tempdir().expect("tmp");
    let texts = dir.path().join("texts.txt");
    std::fs::write(&texts, "one\ntwo\nthree\nfour\nfive\nsix\n").expect("write");
    let url = sim.url("/v1");
    // evalscope's way to set the batch size: in --extra-args (perf keeps it out of the body).
    let (code, console, summary, db) = run(
        dir.path(),
        &[
            "--api",
            "embedding",
            "--url",
            &url,
            "--model",
            "bge",
            "-n",
            "4",
            "--dataset",
            "embedding_batch",
            "--dataset-path",
            texts.to_str().expect("utf-8"),
            "--extra-args",
            r#"{"batch_size": 3}"#,
        ],
    );
    assert_eq!(code, Some(0), "{console}");
    assert_eq!(f(&summary, "Success Requests"), 4.0);
    let body = request_body(&db, "1 = 1 ORDER BY request_index");
    assert_eq!(
        body,
        serde_json::json!({"input": ["one", "two", "three"], "model": "bge"})
    );

    let _ = std::fs::remove_dir_all(dir.path().join("outputs"));
    let pairs = dir.path().join("pairs.jsonl");
    std::fs::write(
        &pairs,
        "{\"query\": \"what is perf\", \"documents\": [\"a benchmark\", \"a fish\"]}\n",
    )
    .expect("write");
    let rerank = sim.url("/v1/rerank");
    let (code, console, summary, db) = run(
        dir.path(),
        &[
            "--api",
            "rerank",
            "--url",
            &rerank,
            "--model",
            "reranker",
            "-n",
            "3",
            "--dataset",
            "rerank",
            "--dataset-path",
            pairs.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(code, Some(0), "{console}");
    assert_eq!(f(&summary, "Success Requests"), 3.0);
    let body = request_body(&db, "1 = 1");
    assert_eq!(
        body["documents"],
        serde_json::json!(["a benchmark", "a fish"])
    );

    let _ = std::fs::remove_dir_all(dir.path().join("outputs"));
    let tokenizer = perf_tests::tokenizer_dir("qwen3");
    let (code, console, summary, db) = run(
        dir.path(),
        &[
            "--api",
            "rerank",
            "--url",
            &rerank,
            "--model",
            "reranker",
            "-n",
            "4",
            "--dataset",
            "random_rerank",
            "--tokenizer-path",
            tokenizer.to_str().expect("utf-8"),
            "--min-prompt-length",
            "8",
            "--max-prompt-length",
            "16",
            "--dataset-args",
            r#"{"num_documents": 3, "document_length_ratio": 2}"#,
        ],
    );
    assert_eq!(code, Some(0), "{console}");
    assert_eq!(f(&summary, "Success Requests"), 4.0);
    let body = request_body(&db, "1 = 1");
    assert_eq!(body["documents"].as_array().expect("documents").len(), 3);
    assert!(body["query"].as_str().is_some_and(|q| !q.is_empty()));
}
