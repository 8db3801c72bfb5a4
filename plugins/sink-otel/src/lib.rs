//! `otel`: perf's measurements as OpenTelemetry metrics (and, optionally, one span per request),
//! exported over OTLP — HTTP (protobuf or JSON) or gRPC — to any collector: Grafana Alloy, the
//! OpenTelemetry Collector, VictoriaMetrics, Prometheus with its OTLP receiver.
//!
//! Enabled with `perf --otel` or `--sink otel` / `--sink 'otel={...}'`. The collector and the
//! export follow the standard `OTEL_*` environment of the OpenTelemetry SDKs (`settings.rs` lists
//! what is read); a value perf cannot honour stops the run with its name.
//!
//! Options (JSON, each overriding its variable): `endpoint` (base URL), `protocol`,
//! `compression`, `headers` (object), `interval_ms`, `temporality`, `histogram` (`explicit` or
//! `exponential`), `traces` (bool), `trace_ratio` (0..1), `required` (default true: a collector
//! that cannot be reached at the start, or an https one whose certificate perf does not trust or
//! that wants a client certificate it did not get, stops the run before traffic; false: warn
//! and go on).
//!
//! Metric names follow the OpenTelemetry GenAI semantic conventions where they define one
//! (`gen_ai.client.operation.duration`, `gen_ai.client.operation.time_to_first_chunk`,
//! `gen_ai.client.operation.time_per_output_chunk`, `gen_ai.client.token.usage`) and carry a
//! `perf.` prefix where they do not. Attributes are bounded: model (requested and answered),
//! api, operation, server address and port, run name, concurrency and rate, outcome and error
//! type; never prompts, texts or request ids. Latency histograms have explicit bounds 2^(1/16)
//! apart (under 4.5% wide, so `histogram_quantile` lands within 5% of perf's exact
//! percentiles), or base-2 exponential buckets where the backend takes them. Recording happens
//! on the sink's thread and export on the SDK's own threads, so a slow or absent collector
//! never touches the benchmark; failed exports are retried twice with backoff, counted, and
//! reported once.

mod export;
mod exporters;
mod instruments;
mod preflight;
mod settings;

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{BatchSpanProcessor, Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use perf_plugin_api::sdk::{ResultSinkPlugin, SinkConfig};
use perf_plugin_api::{PluginError, RequestRecord, RunInfo, RunSnapshot, RunSummary, SessionInfo};

use export::{Counted, ExportState};
use exporters::{build_error, exponential, grpc_runtime, http_config, protocol, tonic_config};
use instruments::{Instruments, Labels};
use settings::{Options, Settings, Transport};

/// How long the end of a run waits for the last export.
const FLUSH_DEADLINE: Duration = Duration::from_secs(3);

fn resource() -> Resource {
    let named = settings::process_env("OTEL_SERVICE_NAME").is_some()
        || settings::process_env("OTEL_RESOURCE_ATTRIBUTES")
            .is_some_and(|a| a.contains("service.name="));
    let builder = Resource::builder();
    if named {
        builder.build()
    } else {
        builder.with_service_name("perf").build()
    }
}

/// The OpenTelemetry sink; exports nothing when `OTEL_SDK_DISABLED=true`.
pub struct OtelSink {
    active: Option<Active>,
}

struct Active {
    meters: SdkMeterProvider,
    tracer: Option<(SdkTracerProvider, opentelemetry_sdk::trace::SdkTracer)>,
    instruments: Instruments,
    labels: Labels,
    state: Arc<ExportState>,
    /// gRPC's runtime, kept until the exporters are shut down.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Active {
    fn new(options: &Options, settings: &Settings) -> Result<Active, PluginError> {
        let first = settings.metrics.as_ref().or(settings.traces.as_ref());
        let Some(first) = first else {
            // Both exporters are `none`: instruments without a reader record nothing.
            let meters = SdkMeterProvider::builder().build();
            let meter = opentelemetry::metrics::MeterProvider::meter(&meters, "perf");
            return Ok(Active {
                meters,
                tracer: None,
                instruments: Instruments::new(&meter),
                labels: Labels::default(),
                state: Arc::new(ExportState::new(String::new(), None)),
                runtime: None,
            });
        };
        // Each collector once: metrics and spans usually go to one, at two paths.
        let mut checked = Vec::new();
        for signal in [&settings.metrics, &settings.traces].into_iter().flatten() {
            let collector = (preflight::authority(&signal.url), signal.transport);
            if checked.contains(&collector) {
                continue;
            }
            checked.push(collector);
            // An unreadable file is the configuration's fault, not the collector's.
            let files = exporters::TlsFiles::read(signal)?;
            if let Err(problem) = preflight::check(signal, &files) {
                let message = format!(
                    "otel: the collector at {} {problem}, or pass --sink 'otel={{\"required\": false}}' to run anyway",
                    signal.url
                );
                if settings.required {
                    return Err(PluginError::config(message));
                }
                eprintln!("WARNING: {message}");
            }
        }
        let grpc = [&settings.metrics, &settings.traces]
            .iter()
            .any(|s| s.as_ref().is_some_and(|s| s.transport == Transport::Grpc));
        let runtime = if grpc { Some(grpc_runtime()?) } else { None };
        let handle = runtime.as_ref().map(|r| r.handle().clone());
        // gRPC channels are made inside the runtime.
        let _entered = runtime.as_ref().map(|r| r.enter());
        let state = Arc::new(ExportState::new(first.url.clone(), handle.clone()));
        let mut meters = SdkMeterProvider::builder().with_resource(resource());
        if let Some(m) = &settings.metrics {
            let builder = opentelemetry_otlp::MetricExporter::builder();
            let exporter = match m.transport {
                Transport::Grpc => tonic_config(builder.with_tonic(), m, &options.headers)?
                    .with_endpoint(m.url.clone())
                    .with_timeout(m.timeout)
                    .with_temporality(settings.temporality)
                    .build(),
                t => http_config(builder.with_http(), m, &options.headers)?
                    .with_protocol(protocol(t))
                    .with_endpoint(m.url.clone())
                    .with_timeout(m.timeout)
                    .with_temporality(settings.temporality)
                    .build(),
            }
            .map_err(|e| build_error("metrics", e))?;
            let reader = PeriodicReader::builder(Counted::new(exporter, state.clone()))
                .with_interval(settings.interval)
                .build();
            meters = meters.with_reader(reader);
            if settings.exponential {
                meters = meters.with_view(exponential);
            }
        }
        let meters = meters.build();
        let instruments = Instruments::new(&opentelemetry::metrics::MeterProvider::meter(
            &meters, "perf",
        ));
        let tracer = match &settings.traces {
            None => None,
            Some(t) => {
                let builder = opentelemetry_otlp::SpanExporter::builder();
                let exporter = match t.transport {
                    Transport::Grpc => tonic_config(builder.with_tonic(), t, &options.headers)?
                        .with_endpoint(t.url.clone())
                        .with_timeout(t.timeout)
                        .build(),
                    p => http_config(builder.with_http(), t, &options.headers)?
                        .with_protocol(protocol(p))
                        .with_endpoint(t.url.clone())
                        .with_timeout(t.timeout)
                        .build(),
                }
                .map_err(|e| build_error("traces", e))?;
                let processor =
                    BatchSpanProcessor::builder(Counted::new(exporter, state.clone())).build();
                let mut provider = SdkTracerProvider::builder()
                    .with_span_processor(processor)
                    .with_resource(resource());
                // Without the option, OTEL_TRACES_SAMPLER (the SDK reads it) decides.
                if let Some(ratio) = settings.trace_ratio {
                    provider = provider.with_sampler(Sampler::TraceIdRatioBased(ratio));
                }
                let provider = provider.build();
                let tracer = provider.tracer("perf");
                Some((provider, tracer))
            }
        };
        Ok(Active {
            meters,
            tracer,
            instruments,
            labels: Labels::default(),
            state,
            runtime,
        })
    }
}

impl ResultSinkPlugin for OtelSink {
    const ID: &'static str = "otel";
    const DESCRIPTION: &'static str =
        "OpenTelemetry metrics (GenAI conventions) and optional spans over OTLP/HTTP or gRPC (OTEL_* environment)";
    const OPTION_KEYS: Option<&'static [&'static str]> = Some(&[
        "endpoint",
        "protocol",
        "compression",
        "headers",
        "interval_ms",
        "temporality",
        "histogram",
        "traces",
        "trace_ratio",
        "required",
    ]);
    const OPTIONS_EXAMPLE: &'static str = r#"{"endpoint": "http://127.0.0.1:4318", "protocol": "grpc", "compression": "gzip", "headers": {"authorization": "Bearer ..."}, "interval_ms": 1000, "temporality": "delta", "histogram": "exponential", "traces": true, "trace_ratio": 0.1, "required": true}"#;

    fn new(config: &SinkConfig) -> Result<Self, PluginError> {
        let options: Options = config.options()?;
        let settings = Settings::read(&options, &settings::process_env)?;
        if settings.disabled {
            eprintln!("otel: OTEL_SDK_DISABLED=true: nothing is exported");
            return Ok(OtelSink { active: None });
        }
        Ok(OtelSink {
            active: Some(Active::new(&options, &settings)?),
        })
    }

    fn begin(&mut self, session: &SessionInfo) -> Result<(), PluginError> {
        if let Some(a) = &mut self.active {
            a.labels = Labels::from_session(session);
        }
        Ok(())
    }

    fn run_start(&mut self, run: &RunInfo) -> Result<(), PluginError> {
        if let Some(a) = &mut self.active {
            a.labels.set_run(run);
        }
        Ok(())
    }

    fn record(&mut self, record: &RequestRecord) -> Result<(), PluginError> {
        let Some(a) = &mut self.active else {
            return Ok(());
        };
        a.instruments.record(&mut a.labels, record);
        if let Some((_, tracer)) = &a.tracer {
            instruments::span(tracer, &mut a.labels, record);
        }
        a.state.new_failure()
    }

    fn snapshot(&mut self, snapshot: &RunSnapshot) -> Result<(), PluginError> {
        let Some(a) = &mut self.active else {
            return Ok(());
        };
        a.instruments.snapshot(&a.labels, snapshot);
        a.state.new_failure()
    }

    fn run_end(&mut self, _summary: &RunSummary) -> Result<(), PluginError> {
        let Some(a) = &mut self.active else {
            return Ok(());
        };
        // Nothing is in flight between runs.
        a.instruments.in_flight.record(0, a.labels.base());
        a.state.new_failure()
    }

    fn close(&mut self) -> Result<(), PluginError> {
        let Some(mut a) = self.active.take() else {
            return Ok(());
        };
        a.state.closing();
        let meters = a.meters.clone();
        let tracer = a.tracer.take().map(|(p, _)| p);
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
        if let Some(rt) = a.runtime.take() {
            rt.shutdown_background();
        }
        a.state.summary(flushed)
    }
}

perf_plugin_api::builtin_plugins! {
    ResultSink: OtelSink,
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
