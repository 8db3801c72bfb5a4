//! The metric instruments, their attributes, and the per-request span.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::metrics::{Counter, Gauge, Histogram, Meter};
use opentelemetry::trace::{Span, SpanKind, Status, Tracer};
use opentelemetry::KeyValue;
use perf_plugin_api::{FailureKind, RequestRecord, RunInfo, RunSnapshot, SessionInfo};
use serde_json::Value;

/// Latencies (request duration, time to first chunk): milliseconds to minutes.
pub const LATENCY_BOUNDS: [f64; 27] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5,
    2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0,
];

/// Per-token gaps (inter-chunk time, time per output token, dispatch lag): 0.1 ms to seconds.
pub const FINE_BOUNDS: [f64; 21] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1,
    0.15, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0,
];

/// Token counts, as the GenAI conventions advise.
pub const TOKEN_BOUNDS: [f64; 14] = [
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];

/// The attributes every data point carries, and the variants some need.
#[derive(Default)]
pub struct Labels {
    session: Vec<KeyValue>,
    base: Vec<KeyValue>,
    input: Vec<KeyValue>,
    output: Vec<KeyValue>,
    outcomes: HashMap<&'static str, Vec<KeyValue>>,
    operation: String,
    model: String,
}

/// `gen_ai.operation.name` of an endpoint path.
fn operation(path: &str) -> &'static str {
    let path = path.trim_end_matches('/');
    if path.ends_with("chat/completions") {
        "chat"
    } else if path.ends_with("completions") {
        "text_completion"
    } else if path.ends_with("embeddings") {
        "embeddings"
    } else if path.ends_with("responses") {
        "chat"
    } else {
        "generate_content"
    }
}

/// `gen_ai.provider.name` of a perf API id.
fn provider(api: &str) -> String {
    match api {
        "openai" | "mock" | "local" | "local_vllm" => "openai".into(),
        other => other.into(),
    }
}

impl Labels {
    /// From the invocation's arguments (secrets are already masked there; none is used).
    pub fn from_session(session: &SessionInfo) -> Self {
        let args: Value = serde_json::from_str(session.args_json.as_str()).unwrap_or(Value::Null);
        let text = |k: &str| {
            args.get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let api = text("api");
        let model = text("model");
        let url = text("url");
        let (scheme, rest) = url.split_once("://").unwrap_or(("http", url.as_str()));
        let authority = rest.split('/').next().unwrap_or("");
        let path = &rest[authority.len()..];
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => {
                (h.to_string(), p.parse::<i64>().unwrap_or(0))
            }
            _ => (
                authority.to_string(),
                if scheme == "https" { 443 } else { 80 },
            ),
        };
        let operation = operation(path);
        let session = vec![
            KeyValue::new("gen_ai.operation.name", operation),
            KeyValue::new("gen_ai.provider.name", provider(&api)),
            KeyValue::new("gen_ai.request.model", model.clone()),
            KeyValue::new("server.address", host),
            KeyValue::new("server.port", port),
            KeyValue::new("perf.api", api),
            KeyValue::new("perf.run.name", session.name.to_string()),
        ];
        let mut labels = Labels {
            session,
            operation: operation.to_string(),
            model,
            ..Labels::default()
        };
        labels.rebuild(-1, -1.0);
        labels
    }

    /// A run of the sweep starts: its concurrency and rate join the attributes.
    pub fn set_run(&mut self, run: &RunInfo) {
        self.rebuild(run.parallel, run.rate);
    }

    fn rebuild(&mut self, parallel: i64, rate: f64) {
        self.base = self.session.clone();
        self.base.push(KeyValue::new("perf.concurrency", parallel));
        self.base.push(KeyValue::new("perf.rate", rate));
        let with = |extra: KeyValue| {
            let mut v = self.base.clone();
            v.push(extra);
            v
        };
        self.input = with(KeyValue::new("gen_ai.token.type", "input"));
        self.output = with(KeyValue::new("gen_ai.token.type", "output"));
        self.outcomes.clear();
    }

    pub fn base(&self) -> &[KeyValue] {
        &self.base
    }

    /// The attributes of a request's outcome: `perf.outcome`, and `error.type` on failure.
    fn outcome(&mut self, failure: FailureKind) -> &[KeyValue] {
        let kind = failure.as_str();
        let base = &self.base;
        self.outcomes.entry(kind).or_insert_with(|| {
            let mut v = base.clone();
            if failure == FailureKind::None {
                v.push(KeyValue::new("perf.outcome", "success"));
            } else {
                v.push(KeyValue::new("perf.outcome", "failure"));
                v.push(KeyValue::new("error.type", kind));
            }
            v
        })
    }
}

/// Every instrument the sink records.
pub struct Instruments {
    duration: Histogram<f64>,
    ttft: Histogram<f64>,
    itl: Histogram<f64>,
    tpot: Histogram<f64>,
    tokens: Histogram<u64>,
    requests: Counter<u64>,
    pub in_flight: Gauge<i64>,
    dispatch_lag: Histogram<f64>,
}

impl Instruments {
    pub fn new(meter: &Meter) -> Self {
        let seconds = |name: &'static str, description: &'static str, bounds: &[f64]| {
            meter
                .f64_histogram(name)
                .with_unit("s")
                .with_description(description)
                .with_boundaries(bounds.to_vec())
                .build()
        };
        Instruments {
            duration: seconds(
                "gen_ai.client.operation.duration",
                "Request duration: sent to the last response event (failures: to the failure)",
                &LATENCY_BOUNDS,
            ),
            ttft: seconds(
                "gen_ai.client.operation.time_to_first_chunk",
                "Time to the first output chunk of a streamed response",
                &LATENCY_BOUNDS,
            ),
            itl: seconds(
                "gen_ai.client.operation.time_per_output_chunk",
                "Gap between successive output chunks (inter-token latency)",
                &FINE_BOUNDS,
            ),
            tpot: seconds(
                "perf.time_per_output_token",
                "(duration - time to first chunk) / (output tokens - 1)",
                &FINE_BOUNDS,
            ),
            tokens: meter
                .u64_histogram("gen_ai.client.token.usage")
                .with_unit("{token}")
                .with_description("Input and output tokens per request")
                .with_boundaries(TOKEN_BOUNDS.to_vec())
                .build(),
            requests: meter
                .u64_counter("perf.requests")
                .with_unit("{request}")
                .with_description("Finished requests by outcome and error type")
                .build(),
            in_flight: meter
                .i64_gauge("perf.requests.in_flight")
                .with_unit("{request}")
                .with_description("Requests sent and not yet finished")
                .build(),
            dispatch_lag: seconds(
                "perf.dispatch_lag",
                "How much later than scheduled a request left",
                &FINE_BOUNDS,
            ),
        }
    }

    pub fn record(&self, labels: &mut Labels, r: &RequestRecord) {
        let base = labels.base().to_vec();
        if r.success {
            if let Some(l) = r.latency_s.into_option() {
                self.duration.record(l, &base);
            }
            if r.is_stream {
                if let Some(t) = r.ttft_s.into_option() {
                    self.ttft.record(t, &base);
                }
                for gap in r.itl_s.iter() {
                    self.itl.record(*gap, &base);
                }
            }
            if let Some(t) = r.tpot_s.into_option() {
                self.tpot.record(t, &base);
            }
            if let Some(n) = r.prompt_tokens.into_option() {
                self.tokens.record(n, &labels.input);
            }
            if let Some(n) = r.completion_tokens.into_option() {
                self.tokens.record(n, &labels.output);
            }
        } else {
            let failed = labels.outcome(r.failure).to_vec();
            self.duration
                .record((r.times.completed - r.times.sent).max(0.0), &failed);
        }
        self.dispatch_lag
            .record((r.times.sent - r.times.intended_send).max(0.0), &base);
        self.requests.add(1, labels.outcome(r.failure));
    }

    pub fn snapshot(&self, labels: &Labels, s: &RunSnapshot) {
        if let Some(n) = s
            .metrics
            .iter()
            .find(|m| m.name.as_str() == "In-Flight Requests")
        {
            self.in_flight.record(n.value as i64, labels.base());
        }
    }
}

fn at(epoch_s: f64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs_f64(epoch_s.max(0.0))
}

/// One client span per request (when sampled): sent to completed, an event at the first token,
/// token counts, and the error type on failure.
pub fn span(tracer: &impl Tracer, labels: &Labels, r: &RequestRecord) {
    let mut attributes = labels.base().to_vec();
    if let Some(n) = r.prompt_tokens.into_option() {
        attributes.push(KeyValue::new("gen_ai.usage.input_tokens", n as i64));
    }
    if let Some(n) = r.completion_tokens.into_option() {
        attributes.push(KeyValue::new("gen_ai.usage.output_tokens", n as i64));
    }
    if !r.success {
        attributes.push(KeyValue::new("error.type", r.failure.as_str()));
    }
    let mut span = tracer
        .span_builder(format!("{} {}", labels.operation, labels.model))
        .with_kind(SpanKind::Client)
        .with_start_time(at(r.times.sent))
        .with_attributes(attributes)
        .start(tracer);
    if let Some(first) = r.times.first_output.into_option() {
        span.add_event_with_timestamp("gen_ai.first_token", at(first), Vec::new());
    }
    if !r.success {
        span.set_status(Status::error(r.failure.as_str()));
    }
    span.end_with_timestamp(at(r.times.completed));
}
