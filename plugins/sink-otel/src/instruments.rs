//! The metric instruments, their attributes, and the per-request span.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::metrics::{Counter, Gauge, Histogram, Meter};
use opentelemetry::trace::{Span, SpanKind, Status, Tracer};
use opentelemetry::KeyValue;
use perf_plugin_api::{RequestRecord, RunInfo, RunSnapshot, SessionInfo};
use serde_json::Value;

/// Bounds from `lo` up to at least `hi`, each 2^(1/16) above the last (4.4%), to four
/// significant digits: a bucket is narrow enough that `histogram_quantile`, which interpolates
/// inside the bucket holding the quantile, lands within 5% of the exact value.
pub fn geometric(lo: f64, hi: f64) -> Vec<f64> {
    let ratio = 2f64.powf(1.0 / 16.0);
    let mut bounds = Vec::new();
    let mut b = lo;
    while bounds.last().is_none_or(|&last: &f64| last < hi) {
        let rounded: f64 = format!("{b:.3e}").parse().unwrap_or(b);
        bounds.push(rounded);
        b *= ratio;
    }
    bounds
}

/// Latencies (request duration, time to first chunk): 0.5 ms to 10 minutes.
pub fn latency_bounds() -> Vec<f64> {
    geometric(0.0005, 600.0)
}

/// Per-token gaps (inter-chunk time, time per output token, dispatch lag): 50 µs to 10 s.
pub fn fine_bounds() -> Vec<f64> {
    geometric(0.00005, 10.0)
}

/// Token counts, as the GenAI conventions advise.
pub const TOKEN_BOUNDS: [f64; 14] = [
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];

/// At most this many answering models get a `gen_ai.response.model` of their own; later ones
/// are recorded as `other` (a router answering with a new name each time must not grow the
/// series without bound).
const MAX_RESPONSE_MODELS: usize = 32;

/// What one data point's attributes depend on besides the run.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    /// A request's outcome.
    Outcome(&'static str),
    /// A successful request's token count of this type.
    Tokens(&'static str),
}

/// The attributes every data point carries, and the variants some need.
#[derive(Default)]
pub struct Labels {
    session: Vec<KeyValue>,
    base: Vec<KeyValue>,
    variants: HashMap<(Kind, Option<String>), Vec<KeyValue>>,
    response_models: std::collections::HashSet<String>,
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
        self.variants.clear();
    }

    pub fn base(&self) -> &[KeyValue] {
        &self.base
    }

    /// The name a record's answering model is recorded under.
    fn response_model(&mut self, r: &RequestRecord) -> Option<String> {
        let name = r.response_model()?;
        if self.response_models.contains(name) {
            return Some(name.to_string());
        }
        if self.response_models.len() < MAX_RESPONSE_MODELS {
            self.response_models.insert(name.to_string());
            return Some(name.to_string());
        }
        Some("other".into())
    }

    fn variant(&mut self, kind: Kind, model: Option<String>) -> &[KeyValue] {
        let base = &self.base;
        self.variants
            .entry((kind, model.clone()))
            .or_insert_with(|| {
                let mut v = base.clone();
                match kind {
                    Kind::Outcome("none") => v.push(KeyValue::new("perf.outcome", "success")),
                    Kind::Outcome(error) => {
                        v.push(KeyValue::new("perf.outcome", "failure"));
                        v.push(KeyValue::new("error.type", error));
                    }
                    Kind::Tokens(t) => {
                        v.push(KeyValue::new("perf.outcome", "success"));
                        v.push(KeyValue::new("gen_ai.token.type", t));
                    }
                }
                if let Some(m) = model {
                    v.push(KeyValue::new("gen_ai.response.model", m));
                }
                v
            })
    }

    /// The attributes of a request's outcome: `perf.outcome` (`success` or `failure`),
    /// `error.type` on failure, and `gen_ai.response.model` when the server named one.
    fn outcome(&mut self, r: &RequestRecord) -> Vec<KeyValue> {
        let model = self.response_model(r);
        self.variant(Kind::Outcome(r.failure.as_str()), model)
            .to_vec()
    }

    /// The attributes of a successful request's token count of `token_type`.
    fn tokens(&mut self, r: &RequestRecord, token_type: &'static str) -> Vec<KeyValue> {
        let model = self.response_model(r);
        self.variant(Kind::Tokens(token_type), model).to_vec()
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
    server_running: Gauge<f64>,
    server_waiting: Gauge<f64>,
    server_kv_cache: Gauge<f64>,
}

/// The server's gauges as the host names them in snapshots (`--server-metrics`).
const SERVER_RUNNING: &str = "Server Running Requests";
const SERVER_WAITING: &str = "Server Waiting Requests";
const SERVER_KV_CACHE: &str = "Server KV Cache Usage";

impl Instruments {
    pub fn new(meter: &Meter) -> Self {
        let seconds = |name: &'static str, description: &'static str, bounds: Vec<f64>| {
            meter
                .f64_histogram(name)
                .with_unit("s")
                .with_description(description)
                .with_boundaries(bounds)
                .build()
        };
        let gauge = |name: &'static str, unit: &'static str, description: &'static str| {
            meter
                .f64_gauge(name)
                .with_unit(unit)
                .with_description(description)
                .build()
        };
        Instruments {
            duration: seconds(
                "gen_ai.client.operation.duration",
                "Request duration: sent to the last response event (failures, with perf.outcome=failure: to the failure)",
                latency_bounds(),
            ),
            ttft: seconds(
                "gen_ai.client.operation.time_to_first_chunk",
                "Time to the first output chunk of a streamed response",
                latency_bounds(),
            ),
            itl: seconds(
                "gen_ai.client.operation.time_per_output_chunk",
                "Gap between successive output chunks (inter-token latency)",
                fine_bounds(),
            ),
            tpot: seconds(
                "perf.time_per_output_token",
                "(duration - time to first chunk) / (output tokens - 1)",
                fine_bounds(),
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
                fine_bounds(),
            ),
            server_running: gauge(
                "perf.server.requests.running",
                "{request}",
                "Requests the server says it is running (--server-metrics)",
            ),
            server_waiting: gauge(
                "perf.server.requests.waiting",
                "{request}",
                "Requests the server says are waiting (--server-metrics)",
            ),
            server_kv_cache: gauge(
                "perf.server.kv_cache.usage",
                "1",
                "Fraction of the server's KV cache in use (--server-metrics)",
            ),
        }
    }

    pub fn record(&self, labels: &mut Labels, r: &RequestRecord) {
        let outcome = labels.outcome(r);
        if r.success {
            if let Some(l) = r.latency_s.into_option() {
                self.duration.record(l, &outcome);
            }
            if r.is_stream {
                if let Some(t) = r.ttft_s.into_option() {
                    self.ttft.record(t, &outcome);
                }
                for gap in r.itl_s.iter() {
                    self.itl.record(*gap, &outcome);
                }
            }
            if let Some(t) = r.tpot_s.into_option() {
                self.tpot.record(t, &outcome);
            }
            if let Some(n) = r.prompt_tokens.into_option() {
                self.tokens.record(n, &labels.tokens(r, "input"));
            }
            if let Some(n) = r.completion_tokens.into_option() {
                self.tokens.record(n, &labels.tokens(r, "output"));
            }
        } else {
            // Failures keep their own series (perf.outcome=failure): latency panels select
            // successes.
            self.duration
                .record((r.times.completed - r.times.sent).max(0.0), &outcome);
        }
        self.dispatch_lag.record(
            (r.times.sent - r.times.intended_send).max(0.0),
            labels.base(),
        );
        self.requests.add(1, &outcome);
    }

    pub fn snapshot(&self, labels: &Labels, s: &RunSnapshot) {
        for m in s.metrics.iter() {
            match m.name.as_str() {
                "In-Flight Requests" => self.in_flight.record(m.value as i64, labels.base()),
                SERVER_RUNNING => self.server_running.record(m.value, labels.base()),
                SERVER_WAITING => self.server_waiting.record(m.value, labels.base()),
                SERVER_KV_CACHE => self.server_kv_cache.record(m.value, labels.base()),
                _ => {}
            }
        }
    }
}

fn at(epoch_s: f64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs_f64(epoch_s.max(0.0))
}

/// One client span per request (when sampled): sent to completed, an event at the first token,
/// token counts, and the error type on failure.
pub fn span(tracer: &impl Tracer, labels: &mut Labels, r: &RequestRecord) {
    let mut attributes = labels.base().to_vec();
    if let Some(m) = labels.response_model(r) {
        attributes.push(KeyValue::new("gen_ai.response.model", m));
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_under_five_percent_wide_and_cover_their_range() {
        for (bounds, lo, hi) in [
            (latency_bounds(), 0.0005, 600.0),
            (fine_bounds(), 0.00005, 10.0),
        ] {
            assert_eq!(bounds[0], lo);
            assert!(*bounds.last().expect("bounds") >= hi);
            for pair in bounds.windows(2) {
                let ratio = pair[1] / pair[0];
                assert!(ratio > 1.03 && ratio < 1.05, "{pair:?}: {ratio}");
            }
        }
        assert!(latency_bounds().len() < 400, "{}", latency_bounds().len());
    }
}
