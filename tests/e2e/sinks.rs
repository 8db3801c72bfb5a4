//! Result sinks against real receivers: the OpenTelemetry sink against VictoriaMetrics (a real
//! OTLP receiver, queried with PromQL, including every query of the Grafana dashboard and the
//! accuracy of `histogram_quantile` over perf's histograms), over gRPC through rotel (a real
//! OTLP/gRPC collector), the standard `OTEL_*` environment against a capturing receiver, sinks
//! that cannot start, and a slow sink that must not hold the run.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use perf_tests::{perf_bin, rotel_bin, text, victoria_metrics_bin};
use serde_json::Value;

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// GET `target` from 127.0.0.1:`port`: (status, body).
fn get(port: u16, target: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(stream, "GET {target} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// VictoriaMetrics on a free port with its own storage, OTLP names translated as Prometheus
/// translates them; stopped when dropped.
pub(crate) struct Receiver {
    child: Child,
    pub(crate) port: u16,
    _dir: tempfile::TempDir,
}

impl Receiver {
    pub(crate) fn start() -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        let port = free_port();
        let child = Command::new(victoria_metrics_bin())
            .arg(format!("-storageDataPath={}", dir.path().display()))
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg("-search.latencyOffset=0s")
            .arg("-opentelemetry.usePrometheusNaming")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("victoria-metrics starts");
        let receiver = Receiver {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() && get(port, "/health").0 == 200 {
                return receiver;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("victoria-metrics did not come up on port {port}");
    }

    pub(crate) fn otlp(&self) -> String {
        format!("http://127.0.0.1:{}/opentelemetry", self.port)
    }

    /// The single value of an instant PromQL query.
    fn value(&self, promql: &str) -> f64 {
        let result = self.query(promql);
        assert_eq!(result.len(), 1, "{promql}: {result:?}");
        result[0]["value"][1]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(f64::NAN)
    }

    /// The result vector of an instant PromQL query.
    pub(crate) fn query(&self, promql: &str) -> Vec<Value> {
        let (status, body) = get(
            self.port,
            &format!("/api/v1/query?query={}", encode(promql)),
        );
        assert_eq!(status, 200, "{promql}: {body}");
        let v: Value = serde_json::from_str(&body).expect("JSON");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// The query's single value once it reaches `want`, waiting for fresh samples to be
    /// searchable.
    pub(crate) fn wait_for(&self, promql: &str, want: f64) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut last = f64::NAN;
        while Instant::now() < deadline {
            if let Some(v) = self.query(promql).first() {
                last = v["value"][1]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(f64::NAN);
                if last == want {
                    return last;
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        last
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn perf_env(dir: &Path, args: &[&str], env: &[(&str, String)]) -> (Option<i32>, String) {
    let out = Command::new(perf_bin())
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env_remove("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .current_dir(dir)
        .output()
        .expect("perf runs");
    let (stdout, stderr) = text(&out);
    (out.status.code(), format!("{stdout}\n{stderr}"))
}

#[test]
fn otel_metrics_reach_a_real_receiver_and_the_dashboard_queries_return_data() {
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().expect("tmp");
    let (code, out) = perf_env(
        dir.path(),
        &[
            "--api",
            "mock",
            "--port",
            "0",
            "-n",
            "40",
            "--parallel",
            "4",
            "--max-tokens",
            "8",
            "--mock-ttft-ms",
            "40",
            "--mock-tpot-ms",
            "15",
            "--mock-fail-every",
            "10",
            "--prompt",
            "hello",
            "--name",
            "otel-e2e",
            "--outputs-dir",
            "outputs",
            "--server-metrics",
            "--server-metrics-interval",
            "0.2",
            "--sink",
            r#"otel={"interval_ms": 200}"#,
        ],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.otlp())],
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("sink 'otel'"), "no sink error: {out}");

    let run = r#"perf_run_name="otel-e2e""#;
    assert_eq!(
        receiver.wait_for(&format!("sum(perf_requests_total{{{run}}})"), 40.0),
        40.0,
        "the request counter counts every request"
    );
    assert_eq!(
        receiver.wait_for(
            &format!(r#"sum(perf_requests_total{{{run},perf_outcome="failure",error_type="http_status"}})"#),
            4.0
        ),
        4.0,
        "every 10th request failed with an HTTP status"
    );
    let ttft = receiver.query(&format!(
        "gen_ai_client_operation_time_to_first_chunk_seconds_count{{{run}}}"
    ));
    assert_eq!(ttft.len(), 1, "one series: {ttft:?}");
    let labels = &ttft[0]["metric"];
    assert_eq!(ttft[0]["value"][1], "36", "a TTFT per successful request");
    for (key, want) in [
        ("gen_ai_operation_name", "chat"),
        ("gen_ai_provider_name", "openai"),
        ("gen_ai_request_model", "mock"),
        ("gen_ai_response_model", "mock"),
        ("perf_outcome", "success"),
        ("server_address", "127.0.0.1"),
        ("perf_api", "mock"),
        ("perf_concurrency", "4"),
        ("service_name", "perf"),
    ] {
        assert_eq!(labels[key], want, "{key}: {labels}");
    }
    let text = labels.to_string();
    assert!(
        !text.contains("perf-") && !text.contains("hello"),
        "no request ids or prompts in attributes: {text}"
    );
    // TTFT buckets are 4.4% wide: the simulator's 40 ms lands above 30.64 ms and below 76.11 ms.
    let below = |le: &str| -> f64 {
        receiver.query(&format!(
            r#"gen_ai_client_operation_time_to_first_chunk_seconds_bucket{{{run},le="{le}"}}"#
        ))[0]["value"][1]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("a bucket")
    };
    assert_eq!(below("0.03064"), 0.0);
    assert_eq!(below("0.07611"), 36.0);
    // Failures have series of their own, out of the latency panels.
    assert_eq!(
        receiver.value(&format!(
            r#"sum(gen_ai_client_operation_duration_seconds_count{{{run},perf_outcome="failure",error_type="http_status"}})"#
        )),
        4.0
    );
    assert_eq!(
        receiver.value(&format!(
            r#"sum(gen_ai_client_operation_duration_seconds_count{{{run},perf_outcome="success"}})"#
        )),
        36.0
    );
    // --server-metrics: the simulator's gauges as the run saw them (4 streams at most).
    let running = receiver.value(&format!(
        "max_over_time(perf_server_requests_running{{{run}}}[10m])"
    ));
    assert!((1.0..=4.0).contains(&running), "{running}");
    let kv = receiver.value(&format!(
        "max_over_time(perf_server_kv_cache_usage_ratio{{{run}}}[10m])"
    ));
    assert!((0.0..=1.0).contains(&kv), "{kv}");

    // Every query of the dashboard returns data from this receiver.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../plugins/sink-otel/grafana/perf-dashboard.json"),
        )
        .expect("the dashboard"),
    )
    .expect("dashboard JSON");
    let mut queries = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"]
                .as_str()
                .expect("expr")
                .replace("$run", "otel-e2e")
                .replace("$__rate_interval", "5m");
            let result = receiver.query(&expr);
            assert!(
                !result.is_empty(),
                "panel {:?}: {expr} returned nothing",
                panel["title"]
            );
            queries += 1;
        }
    }
    assert!(queries >= 9, "{queries}");
    let (_, runs) = get(receiver.port, "/api/v1/label/perf_run_name/values");
    assert!(
        runs.contains("otel-e2e"),
        "the run variable's values: {runs}"
    );
}

#[test]
fn a_collector_that_cannot_be_reached_stops_the_run_before_traffic() {
    let dir = tempfile::tempdir().expect("tmp");
    let port = free_port();
    let (code, out) = perf_env(
        dir.path(),
        &[
            "--api",
            "mock",
            "--port",
            "0",
            "-n",
            "3",
            "--prompt",
            "hi",
            "--otel",
            "--outputs-dir",
            "outputs",
        ],
        &[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{port}"),
        )],
    );
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("otel"), "{out}");
    assert!(out.contains("cannot be reached"), "{out}");
    assert!(
        !dir.path().join("outputs").exists() || {
            // Nothing measured: no run directory with a database.
            walk(&dir.path().join("outputs"))
                .iter()
                .all(|p| !p.ends_with("benchmark_data.db"))
        }
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.filter_map(Result::ok) {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// A collector that accepts the start-up check and then either never answers (`hang`) or
/// refuses every later connection.
fn bad_collector(hang: bool) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            if !hang {
                // The start-up check got through; from now on nobody listens.
                return;
            }
            // Read nothing, answer nothing, keep the connection open.
            held.push(stream);
        }
    });
    port
}

#[test]
fn a_collector_that_hangs_or_goes_away_mid_run_is_reported_once_and_the_run_ends_on_time() {
    for hang in [true, false] {
        let dir = tempfile::tempdir().expect("tmp");
        let port = bad_collector(hang);
        let started = Instant::now();
        let (code, out) = perf_env(
            dir.path(),
            &[
                "--api",
                "mock",
                "--port",
                "0",
                "-n",
                "30",
                "--parallel",
                "3",
                "--max-tokens",
                "4",
                "--mock-ttft-ms",
                "400",
                "--prompt",
                "hi",
                "--sink",
                r#"otel={"interval_ms": 200, "traces": true}"#,
                "--outputs-dir",
                "outputs",
            ],
            &[
                (
                    "OTEL_EXPORTER_OTLP_ENDPOINT",
                    format!("http://127.0.0.1:{port}"),
                ),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "300".into()),
            ],
        );
        let took = started.elapsed();
        assert_eq!(code, Some(0), "hang={hang}: {out}");
        assert!(
            out.contains("Success Requests") || out.contains("30"),
            "{out}"
        );
        // The first failure as it happens (exports retry for about 3 s, the run lasts 4 s),
        // then the total at the end; nothing per export.
        let reports = out.matches("sink 'otel' (built-in) failed:").count();
        assert_eq!(reports, 1, "hang={hang}: the first failure once: {out}");
        assert!(
            out.contains("failed after retries") || out.contains("did not finish in time"),
            "hang={hang}: the total at the end: {out}"
        );
        // The run takes 4 s; the end waits at most 3 s more for the collector.
        assert!(took < Duration::from_secs(12), "hang={hang}: {took:?}");
    }
}

#[test]
fn otel_spans_and_json_metrics_reach_an_otlp_http_json_receiver() {
    let capture = crate::visualizers::Capture::start();
    let dir = tempfile::tempdir().expect("tmp");
    let (code, out) = perf_env(
        dir.path(),
        &[
            "--api",
            "mock",
            "--port",
            "0",
            "-n",
            "12",
            "--parallel",
            "3",
            "--max-tokens",
            "4",
            "--prompt",
            "secret prompt text",
            "--name",
            "spans",
            "--outputs-dir",
            "outputs",
            "--sink",
            r#"otel={"traces": true, "trace_ratio": 1.0}"#,
        ],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", capture.url()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json".into()),
        ],
    );
    assert_eq!(code, Some(0), "{out}");
    let requests = capture.take();
    let bodies = |path: &str| -> Vec<Value> {
        requests
            .iter()
            .filter(|r| r["path"] == path)
            .map(|r| {
                assert_eq!(r["headers"]["content-type"], "application/json", "{r}");
                r["body"].clone()
            })
            .collect()
    };
    let spans: Vec<Value> = bodies("/v1/traces")
        .iter()
        .flat_map(|b| b["resourceSpans"].as_array().cloned().unwrap_or_default())
        .flat_map(|rs| rs["scopeSpans"].as_array().cloned().unwrap_or_default())
        .flat_map(|ss| ss["spans"].as_array().cloned().unwrap_or_default())
        .collect();
    assert_eq!(spans.len(), 12, "a span per request at ratio 1");
    for span in &spans {
        assert_eq!(span["name"], "chat mock", "{span}");
        assert_eq!(span["kind"], 3, "a client span: {span}");
        let events = span["events"].as_array().expect("events");
        assert_eq!(events.len(), 1, "{span}");
        assert_eq!(events[0]["name"], "gen_ai.first_token");
        let start: u64 = span["startTimeUnixNano"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .or_else(|| span["startTimeUnixNano"].as_u64())
            .expect("start");
        let first: u64 = events[0]["timeUnixNano"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .or_else(|| events[0]["timeUnixNano"].as_u64())
            .expect("event time");
        assert!(first > start, "{span}");
        let attributes = span["attributes"].to_string();
        assert!(
            attributes.contains("gen_ai.usage.output_tokens"),
            "{attributes}"
        );
    }
    let metrics = bodies("/v1/metrics");
    assert!(!metrics.is_empty(), "metrics over http/json too");
    let everything = serde_json::to_string(&requests).expect("JSON");
    assert!(
        !everything.contains("secret prompt text") && !everything.contains("perf-"),
        "no prompt or request id leaves in telemetry"
    );
}

/// The percentile `label` (`50%`, `99%`) of `metric` in a run's benchmark_percentile.json.
fn percentile(run_dir: &Path, label: &str, metric: &str) -> f64 {
    let rows: Value = serde_json::from_str(
        &std::fs::read_to_string(run_dir.join("benchmark_percentile.json")).expect("percentiles"),
    )
    .expect("JSON");
    rows.as_array()
        .expect("rows")
        .iter()
        .find(|r| r["Percentiles"] == label)
        .and_then(|r| r[metric].as_f64())
        .unwrap_or_else(|| panic!("{label} {metric} in {}", run_dir.display()))
}

/// The one directory under `dir` whose name is `name`.
fn find_dir(dir: &Path, name: &str) -> std::path::PathBuf {
    walk(dir)
        .into_iter()
        .filter_map(|p| p.parent().map(Path::to_path_buf))
        .find(|p| p.file_name().is_some_and(|n| n == name))
        .unwrap_or_else(|| panic!("no {name} under {}", dir.display()))
}

#[test]
fn histogram_quantile_over_the_exported_histograms_is_within_five_percent_of_perfs_percentiles() {
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().expect("tmp");
    // Two scenarios in one sweep: 4 streams on an idle server, and 16 streams on a server
    // that runs 8 at a time (queueing spreads TTFT and latency); every 25th request fails at
    // once, which must not pull the duration quantiles down.
    let (code, out) = perf_env(
        dir.path(),
        &[
            "--api",
            "mock",
            "--port",
            "0",
            "--parallel",
            "4",
            "16",
            "--number",
            "200",
            "400",
            "--max-tokens",
            "24",
            "--mock-ttft-ms",
            "40",
            "--mock-tpot-ms",
            "8",
            "--mock-capacity",
            "8",
            "--mock-fail-every",
            "25",
            "--prompt",
            "hello",
            "--name",
            "quantiles",
            "--outputs-dir",
            "outputs",
            "--sink",
            r#"otel={"interval_ms": 200}"#,
        ],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.otlp())],
    );
    assert_eq!(code, Some(0), "{out}");
    let outputs = dir.path().join("outputs");
    for (parallel, number) in [(4, 200), (16, 400)] {
        let run_dir = find_dir(&outputs, &format!("parallel_{parallel}_number_{number}"));
        let selector = format!(
            r#"perf_run_name="quantiles",perf_concurrency="{parallel}",perf_outcome="success""#
        );
        let successes = number as f64 * 24.0 / 25.0;
        assert_eq!(
            receiver.wait_for(
                &format!("sum(gen_ai_client_operation_duration_seconds_count{{{selector}}})"),
                successes
            ),
            successes,
            "every success is exported"
        );
        for (family, metric, scale) in [
            (
                "gen_ai_client_operation_time_to_first_chunk_seconds",
                "TTFT (ms)",
                1e3,
            ),
            ("perf_time_per_output_token_seconds", "TPOT (ms)", 1e3),
            (
                "gen_ai_client_operation_duration_seconds",
                "Latency (s)",
                1.0,
            ),
        ] {
            for (q, label) in [(0.5, "50%"), (0.99, "99%")] {
                let exact = percentile(&run_dir, label, metric);
                let estimate = receiver.value(&format!(
                    "histogram_quantile({q}, sum by (le) ({family}_bucket{{{selector}}}))"
                )) * scale;
                let error = (estimate - exact).abs() / exact;
                assert!(
                    error < 0.05,
                    "parallel {parallel}: {label} {metric}: histogram_quantile {estimate:.4} vs perf {exact:.4} ({:.1}% off)",
                    error * 100.0
                );
            }
        }
    }
}

/// rotel, a real OTLP collector, taking OTLP/gRPC on a free port and forwarding everything to
/// `forward` over OTLP/HTTP; stopped when dropped.
pub(crate) struct Rotel {
    child: Child,
    pub(crate) port: u16,
}

impl Rotel {
    pub(crate) fn start(forward: &str) -> Self {
        let port = free_port();
        let child = Command::new(rotel_bin())
            .arg("start")
            .arg("--otlp-grpc-endpoint")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--otlp-http-endpoint")
            .arg(format!("127.0.0.1:{}", free_port()))
            .arg("--exporter")
            .arg("otlp")
            .arg("--otlp-exporter-endpoint")
            .arg(forward)
            .arg("--otlp-exporter-protocol")
            .arg("http")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rotel starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "rotel did not come up on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Rotel { child, port }
    }
}

impl Drop for Rotel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn otel_over_grpc_with_gzip_reaches_victoria_metrics_through_a_real_grpc_collector() {
    let receiver = Receiver::start();
    let rotel = Rotel::start(&receiver.otlp());
    let dir = tempfile::tempdir().expect("tmp");
    let (code, out) = perf_env(
        dir.path(),
        &[
            "--api",
            "mock",
            "--port",
            "0",
            "-n",
            "30",
            "--parallel",
            "3",
            "--max-tokens",
            "6",
            "--mock-fail-every",
            "10",
            "--prompt",
            "hello",
            "--name",
            "grpc-e2e",
            "--outputs-dir",
            "outputs",
            "--sink",
            r#"otel={"interval_ms": 200}"#,
        ],
        &[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".into()),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip".into()),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{}", rotel.port),
            ),
        ],
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("sink 'otel'"), "no sink error: {out}");
    let run = r#"perf_run_name="grpc-e2e""#;
    assert_eq!(
        receiver.wait_for(&format!("sum(perf_requests_total{{{run}}})"), 30.0),
        30.0,
        "every request, through the gRPC collector"
    );
    assert_eq!(
        receiver.value(&format!(
            r#"sum(perf_requests_total{{{run},perf_outcome="failure"}})"#
        )),
        3.0
    );
    let ttft = receiver.query(&format!(
        "gen_ai_client_operation_time_to_first_chunk_seconds_count{{{run}}}"
    ));
    assert_eq!(ttft.len(), 1, "{ttft:?}");
    assert_eq!(ttft[0]["metric"]["gen_ai_response_model"], "mock");
    assert_eq!(ttft[0]["value"][1], "27");
}

/// perf against the simulator with `env`, its telemetry to a capturing receiver.
fn captured(env: &[(&str, &str)], sink: &str) -> (Option<i32>, String, Vec<Value>) {
    let capture = crate::visualizers::Capture::start();
    let dir = tempfile::tempdir().expect("tmp");
    let mut vars = vec![("OTEL_EXPORTER_OTLP_ENDPOINT", capture.url())];
    vars.extend(env.iter().map(|(k, v)| (*k, v.to_string())));
    let (code, out) = perf_env(
        dir.path(),
        &[
            "--api",
            "mock",
            "--port",
            "0",
            "-n",
            "12",
            "--parallel",
            "3",
            "--max-tokens",
            "4",
            "--mock-fail-every",
            "6",
            "--prompt",
            "hello",
            "--name",
            "env",
            "--outputs-dir",
            "outputs",
            "--sink",
            sink,
        ],
        &vars,
    );
    (code, out, capture.take())
}

/// Every metric of every captured OTLP/JSON metrics body, by name.
fn metrics_by_name(requests: &[Value]) -> std::collections::BTreeMap<String, Vec<Value>> {
    let mut out: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
    for r in requests.iter().filter(|r| r["path"] == "/v1/metrics") {
        for rm in r["body"]["resourceMetrics"]
            .as_array()
            .into_iter()
            .flatten()
        {
            for sm in rm["scopeMetrics"].as_array().into_iter().flatten() {
                for m in sm["metrics"].as_array().into_iter().flatten() {
                    out.entry(m["name"].as_str().unwrap_or("").to_string())
                        .or_default()
                        .push(m.clone());
                }
            }
        }
    }
    out
}

#[test]
fn gzip_delta_temporality_and_exponential_histograms_follow_the_otel_environment() {
    let (code, out, requests) = captured(
        &[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta"),
            (
                "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION",
                "base2_exponential_bucket_histogram",
            ),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=perf-tests"),
        ],
        r#"otel={"interval_ms": 200}"#,
    );
    assert_eq!(code, Some(0), "{out}");
    let posts: Vec<&Value> = requests
        .iter()
        .filter(|r| r["path"] == "/v1/metrics")
        .collect();
    assert!(!posts.is_empty(), "{requests:?}");
    for r in &posts {
        assert_eq!(r["headers"]["content-encoding"], "gzip", "{}", r["headers"]);
        assert_eq!(
            r["headers"]["x-tenant"], "perf-tests",
            "the SDK's header variable"
        );
    }
    let metrics = metrics_by_name(&requests);
    // Delta: each export holds only what happened since the last, so the request counts of
    // all exports add up to the requests, and every point says DELTA (1).
    let counted: u64 = metrics["perf.requests"]
        .iter()
        .flat_map(|m| {
            assert_eq!(m["sum"]["aggregationTemporality"], 1, "{m}");
            m["sum"]["dataPoints"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|p| {
            p["asInt"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .or_else(|| p["asInt"].as_u64())
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(counted, 12, "delta counts add up to the requests");
    let ttft = &metrics["gen_ai.client.operation.time_to_first_chunk"];
    let mut observations = 0;
    for m in ttft {
        let h = &m["exponentialHistogram"];
        assert!(h.is_object(), "an exponential histogram: {m}");
        assert_eq!(h["aggregationTemporality"], 1, "{m}");
        for p in h["dataPoints"].as_array().into_iter().flatten() {
            observations += p["count"]
                .as_str()
                .and_then(|s| s.parse::<u64>().ok())
                .or_else(|| p["count"].as_u64())
                .unwrap_or(0);
            let attributes = p["attributes"].to_string();
            assert!(attributes.contains("gen_ai.response.model"), "{attributes}");
        }
    }
    assert_eq!(
        observations, 10,
        "a TTFT per success (every 6th request fails)"
    );
}

#[test]
fn otel_sdk_disabled_and_exporter_none_are_honoured_and_unknown_values_refused() {
    // OTEL_SDK_DISABLED: nothing is exported, not even the start-up check, and the run goes on.
    let (code, out, requests) = captured(&[("OTEL_SDK_DISABLED", "true")], "otel");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("OTEL_SDK_DISABLED"), "said once: {out}");
    assert!(requests.is_empty(), "{requests:?}");

    // OTEL_METRICS_EXPORTER=none with spans on: spans only.
    let (code, out, requests) = captured(
        &[
            ("OTEL_METRICS_EXPORTER", "none"),
            ("OTEL_TRACES_EXPORTER", "otlp"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ],
        "otel",
    );
    assert_eq!(code, Some(0), "{out}");
    let paths: std::collections::BTreeSet<&str> =
        requests.iter().filter_map(|r| r["path"].as_str()).collect();
    assert_eq!(
        paths,
        ["/v1/traces"].into_iter().collect(),
        "OTEL_TRACES_EXPORTER=otlp turns spans on, metrics are off"
    );

    // A value perf cannot honour stops the run before traffic, naming the variable.
    for (var, value) in [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "thrift"),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd"),
        ("OTEL_METRICS_EXPORTER", "prometheus"),
        ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "often"),
    ] {
        let (code, out, requests) = captured(&[(var, value)], "otel");
        assert_eq!(code, Some(2), "{var}: {out}");
        assert!(out.contains(var) && out.contains(value), "{var}: {out}");
        assert!(requests.is_empty(), "{var}: {requests:?}");
    }

    // OTEL_EXPORTER_OTLP_COMPRESSION=none means none (the exporter library refuses the word).
    let (code, out, requests) = captured(&[("OTEL_EXPORTER_OTLP_COMPRESSION", "none")], "otel");
    assert_eq!(code, Some(0), "{out}");
    let posts: Vec<&Value> = requests
        .iter()
        .filter(|r| r["path"] == "/v1/metrics")
        .collect();
    assert!(!posts.is_empty(), "{out}");
    assert!(posts
        .iter()
        .all(|r| r["headers"]["content-encoding"].is_null()));
}
