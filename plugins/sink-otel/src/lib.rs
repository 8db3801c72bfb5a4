//! `otel`: perf's measurements as OpenTelemetry metrics (and, optionally, one span per request),
//! exported over OTLP/HTTP to any collector — Grafana Alloy, the OpenTelemetry Collector,
//! VictoriaMetrics, Prometheus with its OTLP receiver.
//!
//! Enabled with `perf --otel` or `--sink otel` / `--sink 'otel={...}'`. The collector comes from
//! the standard environment: `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` (used as is) or
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (+ `/v1/metrics`, `/v1/traces`), default
//! `http://localhost:4318`; `OTEL_EXPORTER_OTLP_PROTOCOL` (`http/protobuf`, the default, or
//! `http/json`; gRPC is not built in), `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`,
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_SERVICE_NAME` (default `perf`),
//! `OTEL_METRIC_EXPORT_INTERVAL` (ms, default 5000).
//!
//! Options (JSON): `endpoint` (base URL, overrides the environment), `headers` (object),
//! `interval_ms`, `traces` (bool), `trace_ratio` (0..1, default 1), `required` (default true:
//! a collector that cannot be reached at the start stops the run before traffic; false: warn
//! and go on).
//!
//! Metric names follow the OpenTelemetry GenAI semantic conventions where they define one
//! (`gen_ai.client.operation.duration`, `gen_ai.client.operation.time_to_first_chunk`,
//! `gen_ai.client.operation.time_per_output_chunk`, `gen_ai.client.token.usage`) and carry a
//! `perf.` prefix where they do not. Attributes are bounded: model, api, operation, server
//! address and port, run name, concurrency and rate, outcome and error type; never prompts,
//! texts or request ids. Recording happens on the sink's thread and export on the SDK's own
//! threads, so a slow or absent collector never touches the benchmark; failed exports are
//! retried twice with backoff, counted, and reported once.

mod export;
mod instruments;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};
use opentelemetry_sdk::trace::{BatchSpanProcessor, Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use perf_plugin_api::sdk::{ResultSinkPlugin, SinkConfig};
use perf_plugin_api::{PluginError, RequestRecord, RunInfo, RunSnapshot, RunSummary, SessionInfo};
use serde::Deserialize;

use export::{Counted, ExportState};
use instruments::{Instruments, Labels};

/// How long the end of a run waits for the last export.
const FLUSH_DEADLINE: Duration = Duration::from_secs(3);
/// The HTTP timeout of one export unless `OTEL_EXPORTER_OTLP_TIMEOUT` says otherwise.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Options {
    endpoint: Option<String>,
    headers: HashMap<String, String>,
    interval_ms: Option<u64>,
    traces: bool,
    trace_ratio: Option<f64>,
    required: Option<bool>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Where one signal goes: the signal's own variable as is, else the base + `path`.
fn signal_endpoint(options: &Options, signal_var: &str, path: &str) -> String {
    if let Some(base) = &options.endpoint {
        return format!("{}{path}", base.trim_end_matches('/'));
    }
    if let Some(url) = env(signal_var) {
        return url;
    }
    let base = env("OTEL_EXPORTER_OTLP_ENDPOINT").unwrap_or_else(|| "http://localhost:4318".into());
    format!("{}{path}", base.trim_end_matches('/'))
}

fn protocol(var: &str) -> Result<Protocol, PluginError> {
    let value = env(var)
        .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_else(|| "http/protobuf".into());
    match value.as_str() {
        "http/protobuf" => Ok(Protocol::HttpBinary),
        "http/json" => Ok(Protocol::HttpJson),
        "grpc" => Err(PluginError::config(
            "otel: OTEL_EXPORTER_OTLP_PROTOCOL=grpc is not built into perf; use http/protobuf (collectors listen on port 4318 for it)",
        )),
        other => Err(PluginError::config(format!(
            "otel: OTEL_EXPORTER_OTLP_PROTOCOL={other} is not a protocol: use http/protobuf or http/json"
        ))),
    }
}

/// `host:port` of an http(s) URL, for the reachability check.
fn host_port(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split('/').next()?;
    let authority = authority.rsplit('@').next()?;
    if authority.contains(':') && !authority.ends_with(']') {
        return Some(authority.to_string());
    }
    let port = if scheme == "https" { 443 } else { 80 };
    Some(format!("{authority}:{port}"))
}

/// Whether something accepts connections at `url`.
fn reachable(url: &str) -> Result<(), String> {
    use std::net::ToSocketAddrs;
    let target = host_port(url).ok_or_else(|| format!("{url} is not an http(s) URL"))?;
    let addrs: Vec<_> = target
        .to_socket_addrs()
        .map_err(|e| format!("{target}: {e}"))?
        .collect();
    let mut last = String::from("no address");
    for addr in addrs {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(_) => return Ok(()),
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(last)
}

fn resource() -> Resource {
    let named = env("OTEL_SERVICE_NAME").is_some()
        || env("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|a| a.contains("service.name="));
    let builder = Resource::builder();
    if named {
        builder.build()
    } else {
        builder.with_service_name("perf").build()
    }
}

fn build_error(what: &str, e: impl std::fmt::Display) -> PluginError {
    PluginError::config(format!("otel: cannot set up the {what} exporter: {e}"))
}

/// The OpenTelemetry sink.
pub struct OtelSink {
    meters: SdkMeterProvider,
    tracer: Option<(SdkTracerProvider, opentelemetry_sdk::trace::SdkTracer)>,
    instruments: Instruments,
    labels: Labels,
    state: Arc<ExportState>,
}

impl ResultSinkPlugin for OtelSink {
    const ID: &'static str = "otel";
    const DESCRIPTION: &'static str =
        "OpenTelemetry metrics (GenAI conventions) and optional spans over OTLP/HTTP (OTEL_EXPORTER_OTLP_* environment)";
    const OPTION_KEYS: Option<&'static [&'static str]> = Some(&[
        "endpoint",
        "headers",
        "interval_ms",
        "traces",
        "trace_ratio",
        "required",
    ]);
    const OPTIONS_EXAMPLE: &'static str = r#"{"endpoint": "http://127.0.0.1:4318", "headers": {"authorization": "Bearer ..."}, "interval_ms": 1000, "traces": true, "trace_ratio": 0.1, "required": true}"#;

    fn new(config: &SinkConfig) -> Result<Self, PluginError> {
        let options: Options = config.options()?;
        if let Some(r) = options.trace_ratio {
            if !(0.0..=1.0).contains(&r) {
                return Err(PluginError::config(format!(
                    "otel: trace_ratio {r} is not a fraction between 0 and 1"
                )));
            }
        }
        let metrics_url = signal_endpoint(
            &options,
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
            "/v1/metrics",
        );
        if let Err(why) = reachable(&metrics_url) {
            let message = format!(
                "otel: the collector at {metrics_url} cannot be reached ({why}); start it, set OTEL_EXPORTER_OTLP_ENDPOINT, or pass --sink 'otel={{\"required\": false}}' to run anyway"
            );
            if options.required.unwrap_or(true) {
                return Err(PluginError::config(message));
            }
            eprintln!("WARNING: {message}");
        }
        let state = Arc::new(ExportState::new(metrics_url.clone()));
        let timeout = env("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT")
            .or_else(|| env("OTEL_EXPORTER_OTLP_TIMEOUT"))
            .and_then(|ms| ms.parse().ok())
            .map_or(EXPORT_TIMEOUT, Duration::from_millis);
        let exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .with_protocol(protocol("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL")?)
            .with_endpoint(metrics_url)
            .with_timeout(timeout)
            .with_headers(options.headers.clone())
            .with_temporality(Temporality::Cumulative)
            .build()
            .map_err(|e| build_error("metrics", e))?;
        let interval = options
            .interval_ms
            .or_else(|| env("OTEL_METRIC_EXPORT_INTERVAL").and_then(|v| v.parse().ok()))
            .unwrap_or(5000)
            .max(100);
        let reader = PeriodicReader::builder(Counted::new(exporter, state.clone()))
            .with_interval(Duration::from_millis(interval))
            .build();
        let meters = SdkMeterProvider::builder()
            .with_reader(reader)
            .with_resource(resource())
            .build();
        let instruments = Instruments::new(&opentelemetry::metrics::MeterProvider::meter(
            &meters, "perf",
        ));
        let tracer = if options.traces {
            let url = signal_endpoint(&options, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "/v1/traces");
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(protocol("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")?)
                .with_endpoint(url)
                .with_timeout(timeout)
                .with_headers(options.headers.clone())
                .build()
                .map_err(|e| build_error("traces", e))?;
            let processor =
                BatchSpanProcessor::builder(Counted::new(exporter, state.clone())).build();
            let provider = SdkTracerProvider::builder()
                .with_span_processor(processor)
                .with_sampler(Sampler::TraceIdRatioBased(
                    options.trace_ratio.unwrap_or(1.0),
                ))
                .with_resource(resource())
                .build();
            let tracer = provider.tracer("perf");
            Some((provider, tracer))
        } else {
            None
        };
        Ok(OtelSink {
            meters,
            tracer,
            instruments,
            labels: Labels::default(),
            state,
        })
    }

    fn begin(&mut self, session: &SessionInfo) -> Result<(), PluginError> {
        self.labels = Labels::from_session(session);
        Ok(())
    }

    fn run_start(&mut self, run: &RunInfo) -> Result<(), PluginError> {
        self.labels.set_run(run);
        Ok(())
    }

    fn record(&mut self, record: &RequestRecord) -> Result<(), PluginError> {
        self.instruments.record(&mut self.labels, record);
        if let Some((_, tracer)) = &self.tracer {
            instruments::span(tracer, &self.labels, record);
        }
        self.state.new_failure()
    }

    fn snapshot(&mut self, snapshot: &RunSnapshot) -> Result<(), PluginError> {
        self.instruments.snapshot(&self.labels, snapshot);
        self.state.new_failure()
    }

    fn run_end(&mut self, _summary: &RunSummary) -> Result<(), PluginError> {
        // Nothing is in flight between runs.
        self.instruments.in_flight.record(0, self.labels.base());
        self.state.new_failure()
    }

    fn close(&mut self) -> Result<(), PluginError> {
        self.state.closing();
        let meters = self.meters.clone();
        let tracer = self.tracer.take().map(|(p, _)| p);
        // The SDK's shutdown waits on its export threads; a hung collector must not hold the
        // end of the run, so wait for it at most FLUSH_DEADLINE.
        let (done, finished) = std::sync::mpsc::channel();
        let _ = std::thread::Builder::new()
            .name("perf-otel-flush".into())
            .spawn(move || {
                let _ = meters.shutdown();
                if let Some(t) = tracer {
                    let _ = t.shutdown();
                }
                let _ = done.send(());
            });
        let flushed = finished.recv_timeout(FLUSH_DEADLINE).is_ok();
        self.state.summary(flushed)
    }
}

perf_plugin_api::builtin_plugins! {
    ResultSink: OtelSink,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_follow_the_otlp_environment_rules() {
        // Only the option here: the environment is the process's own and shared by tests.
        let with = Options {
            endpoint: Some("http://c:4318/".into()),
            ..Options::default()
        };
        assert_eq!(
            signal_endpoint(&with, "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "/v1/metrics"),
            "http://c:4318/v1/metrics"
        );
        assert_eq!(
            host_port("http://c:4318/v1/metrics").as_deref(),
            Some("c:4318")
        );
        assert_eq!(
            host_port("https://otel.example/v1").as_deref(),
            Some("otel.example:443")
        );
        assert_eq!(host_port("http://[::1]/x").as_deref(), Some("[::1]:80"));
        assert_eq!(host_port("localhost:4318"), None);
    }

    #[test]
    fn an_unreachable_collector_stops_the_run_unless_told_otherwise() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let config = |extra: serde_json::Value| {
            let mut options = serde_json::json!({"endpoint": format!("http://127.0.0.1:{port}")});
            options
                .as_object_mut()
                .expect("object")
                .extend(extra.as_object().expect("object").clone());
            SinkConfig { options }
        };
        let err = OtelSink::new(&config(serde_json::json!({})))
            .err()
            .expect("refused");
        assert!(err.message.contains("cannot be reached"), "{}", err.message);
        assert!(err.message.contains("required"), "{}", err.message);
        let mut sink =
            OtelSink::new(&config(serde_json::json!({"required": false}))).expect("runs anyway");
        let _ = sink.close();
        let err = OtelSink::new(&config(serde_json::json!({"trace_ratio": 2.0})))
            .err()
            .expect("bad ratio");
        assert!(err.message.contains("trace_ratio"), "{}", err.message);
    }
}
