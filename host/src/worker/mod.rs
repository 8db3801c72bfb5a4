//! How one request is sent, timed and read. One function serves every schedule: the
//! scheduler decides when [`execute`] is called and hands it the intended send time.
//!
//! Timestamps are taken on the monotonic clock: `sent` right before the request is written,
//! `first_byte` when the response head arrived, and for every read of the body its arrival time,
//! *before* any framing or decoding. Every event completed by a read carries that read's time.
//! Plain http endpoints go through the timed transport (`timed.rs`: kernel arrival times),
//! others through reqwest (`via_reqwest.rs`: the time this task received the data); both
//! behind one trait, with what they share (resending, error bodies, the read loop) written
//! once in `exchange.rs`. A failed
//! request is data: it comes back as a record with a [`FailureKind`] and a message, never as
//! an `Err`.

mod exchange;
mod timed;
mod via_reqwest;

pub use exchange::Reuse;
pub use via_reqwest::Reqwest;

use std::time::{Duration, Instant};

use bytes::Bytes;
use perf_plugin_api::{
    DatasetItem, ErrorKind, FailureKind, Framing, HttpMethod, OutputKind, PluginError, RVec,
    RequestContext, ResponseEvent, ResponseEvent_NE, Usage,
};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tokio_util::sync::CancellationToken;

use crate::framing::{Event, Framer};
use crate::plugin_host::{ApiAdapter, ResponseDecoder};
use crate::transport::TimedHttp;

/// One request to send.
#[derive(Debug)]
pub struct Job {
    /// Index within the run, in dispatch order (warmup first).
    pub index: u64,
    /// A warmup request: sent, never measured.
    pub warmup: bool,
    /// The prompt.
    pub item: DatasetItem,
    /// When the schedule wanted it sent.
    pub intended: Instant,
    /// `max_tokens` drawn for this request.
    pub max_tokens: Option<u32>,
    /// The connection test: its `x-request-id` is `perf-<pid>-test`, unlike any measured one.
    pub connection_test: bool,
    /// A conversation turn's routing key, sent as the body's `rid` (`<key>_t<turn>`).
    pub rid: Option<String>,
}

/// What one request produced, with raw monotonic timestamps.
#[derive(Debug, Clone)]
pub struct RawRecord {
    /// Index within the run.
    pub index: u64,
    /// A warmup request.
    pub warmup: bool,
    /// Intended send time.
    pub intended: Instant,
    /// Handed to the HTTP client.
    pub sent: Instant,
    /// Response headers arrived.
    pub first_byte: Option<Instant>,
    /// First read that completed an output event.
    pub first_output: Option<Instant>,
    /// Last read that completed a decodable event (the usage chunk included).
    pub last_event: Option<Instant>,
    /// The request ended (success, failure or cancellation).
    pub completed: Instant,
    /// Gaps between successive output events, in seconds.
    pub itl_s: Vec<f64>,
    /// Events with output.
    pub output_events: u32,
    /// Events with or without output from the first output on (evalscope's decode chunks).
    pub decode_chunks: u32,
    /// Events that could not be decoded (skipped).
    pub malformed_chunks: u32,
    /// Sum of the token counts the API attached to output events, when it attached one to each.
    pub output_tokens_from_events: Option<u64>,
    /// Output tokens counted with `--tokenizer-path` (set by the collector when the server
    /// reported no usage).
    pub output_tokens_counted: Option<u64>,
    /// Usage reported by the server.
    pub usage: Usage,
    /// Content text.
    pub text: String,
    /// Reasoning and tool-call text.
    pub reasoning: String,
    /// HTTP status (0 without a response).
    pub status: u16,
    /// Why it failed.
    pub failure: FailureKind,
    /// The error message.
    pub error: String,
    /// The response was streamed.
    pub is_stream: bool,
    /// Times it was sent again after a connection closed without answering (see
    /// `exchange.rs`).
    pub retries: u32,
    /// When it was first handed to the HTTP client (`sent` is the last send, after a retry).
    pub first_sent: Instant,
    /// It went out on a fresh connection because the server does not keep connections.
    pub fresh_connection: bool,
    /// It opened the connection it was answered on (the timed transport knows; reqwest does
    /// not): how long the TCP connect and the TLS handshake took.
    pub opened: Option<crate::transport::Opened>,
    /// The exact body sent.
    pub request_body: Bytes,
    /// Prompt tokens the dataset knew.
    pub prompt_tokens_hint: Option<u64>,
    /// Prompt length in characters, for estimates.
    pub prompt_chars: usize,
    /// evalscope's `response_messages`: the events that carried generation (output or an
    /// empty step; not the usage-only chunk), or the whole body when not streamed. Kept only
    /// with `--response-messages evalscope`.
    pub messages: Messages,
    /// `--api local`: the backend's peak accelerator memory so far, in bytes, when the request
    /// ended (evalscope's `max_gpu_memory_cost`); 0 for a remote server.
    pub peak_memory_bytes: u64,
    /// The model the response named (the first the decoder reported).
    pub response_model: Option<String>,
    /// `--multi-turn`: which turn of which conversation this request was.
    pub turn: Option<TurnTag>,
    /// Its id: a replayed trace's `request_id`, else perf's (`perf-<pid>-<index>`).
    pub request_id: String,
}

/// Where a `--multi-turn` request stands in its conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TurnTag {
    /// The conversation's index in the run, in dispatch order (warmup first).
    pub conversation: u64,
    /// The turn, from 1.
    pub turn: u32,
    /// No further turn of this conversation follows (its last turn, or it failed).
    pub last: bool,
}

/// Event payloads, back to back.
#[derive(Debug, Clone, Default)]
pub struct Messages {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Messages {
    /// Adds one payload.
    pub fn push(&mut self, payload: &[u8]) {
        self.bytes.extend_from_slice(payload);
        self.ends.push(self.bytes.len());
    }

    /// The payloads, in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(&self.ends).map(|(a, &b)| &self.bytes[a..b])
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

impl RawRecord {
    fn new(job: &Job, now: Instant) -> Self {
        RawRecord {
            index: job.index,
            warmup: job.warmup,
            intended: job.intended,
            sent: now,
            first_byte: None,
            first_output: None,
            last_event: None,
            completed: now,
            itl_s: Vec::new(),
            output_events: 0,
            decode_chunks: 0,
            malformed_chunks: 0,
            output_tokens_from_events: Some(0),
            output_tokens_counted: None,
            usage: Usage::default(),
            text: String::new(),
            reasoning: String::new(),
            status: 0,
            failure: FailureKind::None,
            error: String::new(),
            is_stream: false,
            retries: 0,
            first_sent: now,
            fresh_connection: false,
            opened: None,
            request_body: Bytes::new(),
            prompt_tokens_hint: job.item.prompt_tokens.into_option(),
            prompt_chars: prompt_chars(&job.item),
            messages: Messages::default(),
            peak_memory_bytes: 0,
            response_model: None,
            turn: None,
            request_id: match job.item.request_id() {
                Some(id) => id.to_string(),
                None => request_id(job.index),
            },
        }
    }

    /// The record of `job` when it could not be sent at all: failed as `kind`.
    pub fn unsent(job: &Job, kind: FailureKind, message: String) -> Self {
        let mut record = Self::new(job, Instant::now());
        record.fail(kind, message);
        record
    }

    fn fail(&mut self, kind: FailureKind, message: impl Into<String>) {
        if self.failure == FailureKind::None {
            self.failure = kind;
            self.error = message.into();
        }
    }

    /// Whether the request succeeded.
    pub fn success(&self) -> bool {
        self.failure == FailureKind::None
    }
}

fn prompt_chars(item: &DatasetItem) -> usize {
    use perf_plugin_api::PromptItem;
    match item.prompt() {
        Ok(PromptItem::Text(t) | PromptItem::Body(t)) => t.chars().count(),
        Ok(PromptItem::Messages(ms)) => ms
            .iter()
            .flat_map(|m| m.texts())
            .map(|t| t.chars().count())
            .sum(),
        Ok(PromptItem::TokenIds(ids)) => ids.len() * 4,
        _ => 0,
    }
}

/// Everything a worker needs, shared by all workers of a run.
pub struct Exchange {
    /// reqwest, for what the timed transport does not serve (`PERF_HTTP_CLIENT=reqwest`, URLs
    /// with user info).
    pub reqwest: Reqwest,
    /// The API adapter.
    pub adapter: ApiAdapter,
    /// `--url`.
    pub url: reqwest::Url,
    /// `--headers` and the API key, applied over the adapter's headers.
    pub headers: HeaderMap,
    /// Longest gap between two reads.
    pub read_timeout: Option<Duration>,
    /// Whole-request timeout.
    pub total_timeout: Duration,
    /// The timed transport, for http and https endpoints.
    pub timed: Option<TimedHttp>,
    /// Requests sent and not yet finished.
    pub in_flight: std::sync::Arc<std::sync::atomic::AtomicI64>,
    /// How large a response may be.
    pub limits: Limits,
    /// Keep the events evalscope keeps as `response_messages` (see [`RawRecord::messages`]).
    pub keep_messages: bool,
}

/// Folds decoded events into a record.
struct Reader<'a> {
    record: &'a mut RawRecord,
    decoder: ResponseDecoder,
    events: RVec<ResponseEvent_NE>,
    last_output: Option<Instant>,
    /// The framing is `None`: the one event is the whole body.
    whole_body: bool,
    /// The first decode error of kind `Invalid`, for the message when nothing decoded.
    first_invalid: Option<String>,
    /// Events the decoder read without an error.
    decoded: u32,
    /// The decoder failed (an error other than `Invalid`, or a panic): it is not called again.
    failed: bool,
    adapter: &'a str,
    limits: Limits,
    /// An event was longer than the limit.
    too_large: bool,
    /// Keep the events evalscope keeps (see [`RawRecord::messages`]).
    keep_messages: bool,
}

/// How large a response may be.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The whole body (`--max-response-bytes`).
    pub response_bytes: u64,
    /// One SSE event or NDJSON line (`--max-event-bytes`).
    pub event_bytes: u64,
}

impl Reader<'_> {
    fn on_event(&mut self, event: Event<'_>, at: Instant) {
        match event {
            Event::Done => {}
            Event::TooLarge => {
                self.too_large = true;
                let (flag, limit) = if self.whole_body {
                    ("--max-response-bytes", self.limits.response_bytes)
                } else {
                    ("--max-event-bytes", self.limits.event_bytes)
                };
                self.record.fail(
                    FailureKind::Stream,
                    format!("the response has an event longer than {flag} ({limit} bytes)"),
                );
            }
            Event::Data(data) => {
                if self.failed {
                    return;
                }
                self.events.clear();
                match self.decoder.decode(data, &mut self.events) {
                    Ok(()) => {
                        self.decoded += 1;
                        let generation = self.apply(at);
                        if self.keep_messages && (generation || self.whole_body) {
                            self.record.messages.push(data);
                        }
                    }
                    Err(e) if e.kind == ErrorKind::Invalid && !self.whole_body => {
                        self.record.malformed_chunks += 1;
                        self.first_invalid.get_or_insert(e.message.into_string());
                    }
                    Err(e) if e.kind == ErrorKind::Invalid => {
                        self.record.malformed_chunks += 1;
                        self.record.fail(
                            FailureKind::Decode,
                            format!("the response could not be decoded: {}", e.message),
                        );
                    }
                    Err(e) => self.plugin_failed("decode", e),
                }
            }
        }
    }

    /// The adapter's decoder failed: the request fails as `plugin` with the message, which is
    /// also reported once on stderr; the decoder is not called again.
    fn plugin_failed(&mut self, call: &str, e: PluginError) {
        self.failed = true;
        let message = format!("the '{}' adapter failed in {call}: {e}", self.adapter);
        crate::output::log::warn_once(&message);
        self.record.fail(FailureKind::Plugin, message);
    }

    /// Folds the decoded events in; returns whether they carried generation (output or an
    /// empty generation step).
    fn apply(&mut self, at: Instant) -> bool {
        let r = &mut *self.record;
        r.last_event = Some(at);
        let mut output = false;
        let mut chunk = false;
        for event in self.events.iter() {
            // A variant of a newer interface than this perf's is ignored.
            let Ok(event) = event.as_enum() else { continue };
            match event {
                ResponseEvent::Output { text, tokens, kind } => {
                    output = true;
                    match *kind {
                        OutputKind::Content => r.text.push_str(text),
                        _ => r.reasoning.push_str(text),
                    }
                    r.output_tokens_from_events =
                        match (r.output_tokens_from_events, tokens.into_option()) {
                            (Some(sum), Some(n)) => Some(sum + u64::from(n)),
                            _ => None,
                        };
                }
                ResponseEvent::EmptyChunk => chunk = true,
                // An implausible count is not used (the count then comes from perf) and the
                // event counts as malformed.
                ResponseEvent::Usage(u) => {
                    r.malformed_chunks += u32::from(!merge_usage(&mut r.usage, u));
                }
                ResponseEvent::Error(message) => r.fail(FailureKind::ServerError, message.as_str()),
                ResponseEvent::Model(name) if r.response_model.is_none() => {
                    r.response_model = Some(name.as_str().chars().take(200).collect());
                }
                _ => {}
            }
        }
        if output {
            match self.last_output {
                None => r.first_output = Some(at),
                Some(prev) => r.itl_s.push((at - prev).as_secs_f64()),
            }
            self.last_output = Some(at);
            r.output_events += 1;
        }
        if r.first_output.is_some() && (output || chunk) {
            r.decode_chunks += 1;
        }
        output || chunk
    }
}

/// More tokens than any request could have: a server reporting it is broken (or hostile),
/// and the value would wrap where it is stored.
const MAX_PLAUSIBLE_TOKENS: u64 = 1_000_000_000_000;

/// Merges `from` into `into`, field by field; returns `false` (and keeps the field as it was)
/// when a count is beyond any plausible value.
fn merge_usage(into: &mut Usage, from: &Usage) -> bool {
    let mut plausible = true;
    for (to, value) in [
        (&mut into.prompt_tokens, from.prompt_tokens),
        (&mut into.completion_tokens, from.completion_tokens),
        (&mut into.cached_tokens, from.cached_tokens),
    ] {
        match value.into_option() {
            Some(n) if n > MAX_PLAUSIBLE_TOKENS => plausible = false,
            Some(_) => *to = value,
            None => {}
        }
    }
    plausible
}

fn method(m: HttpMethod) -> Option<reqwest::Method> {
    match m {
        HttpMethod::Get => Some(reqwest::Method::GET),
        HttpMethod::Post => Some(reqwest::Method::POST),
        HttpMethod::Put => Some(reqwest::Method::PUT),
        _ => None,
    }
}

struct Prepared {
    method: reqwest::Method,
    url: reqwest::Url,
    headers: HeaderMap,
    framing: Framing,
}

fn build(ex: &Exchange, job: &Job, record: &mut RawRecord) -> Option<Prepared> {
    let ctx = RequestContext::new(job.index, job.max_tokens);
    let request = match ex.adapter.build_request(&job.item.prompt, &ctx) {
        Ok(r) => r,
        Err(e) => {
            record.fail(
                FailureKind::Plugin,
                format!("building the request failed: {e}"),
            );
            return None;
        }
    };
    let url = if request.url.is_empty() {
        ex.url.clone()
    } else {
        match reqwest::Url::parse(&request.url) {
            Ok(u) => u,
            Err(e) => {
                record.fail(
                    FailureKind::Plugin,
                    format!("the adapter built an invalid URL: {e}"),
                );
                return None;
            }
        }
    };
    let mut headers = HeaderMap::with_capacity(request.headers.len() + ex.headers.len() + 2);
    for h in request.headers.iter() {
        if let (Ok(n), Ok(v)) = (
            HeaderName::try_from(h.name.as_str()),
            HeaderValue::try_from(h.value.as_str()),
        ) {
            headers.insert(n, v);
        }
    }
    for (n, v) in &ex.headers {
        headers.insert(n.clone(), v.clone());
    }
    // A replayed trace's own headers, for this request alone.
    if let Some(json) = job.item.headers_json() {
        if let Ok(serde_json::Value::Object(own)) = serde_json::from_str(json) {
            for (n, v) in own {
                if let (Ok(n), Some(Ok(v))) = (
                    HeaderName::try_from(n.as_str()),
                    v.as_str().map(HeaderValue::try_from),
                ) {
                    headers.insert(n, v);
                }
            }
        }
    }
    // A request id servers can log (vLLM does), to match their logs with benchmark_data.db's
    // request_id column: the trace's own, else perf's; --headers can set its own.
    if !headers.contains_key(REQUEST_ID) {
        let test_id;
        let id = if job.connection_test {
            test_id = format!("perf-{}-test", std::process::id());
            &test_id
        } else {
            &record.request_id
        };
        if let Ok(v) = HeaderValue::from_str(id) {
            headers.insert(REQUEST_ID, v);
        }
    }
    let Some(method) = method(request.method) else {
        record.fail(
            FailureKind::Plugin,
            format!(
                "the adapter asked for {:?}, which this perf does not know",
                request.method
            ),
        );
        return None;
    };
    if !request.framing.is_known() {
        record.fail(
            FailureKind::Plugin,
            format!(
                "the adapter asked for {:?}, which this perf does not know",
                request.framing
            ),
        );
        return None;
    }
    record.request_body = Bytes::from(with_rid(request.body.into_vec(), job.rid.as_deref()));
    Some(Prepared {
        method,
        url,
        headers,
        framing: request.framing,
    })
}

/// Sends one request and reads its response. Returns when it finished, failed, or `cancel`
/// fired (then the record says `Cancelled`).
pub async fn execute(ex: &Exchange, job: Job, cancel: &CancellationToken) -> RawRecord {
    let mut record = RawRecord::new(&job, Instant::now());
    let Some(prepared) = build(ex, &job, &mut record) else {
        record.completed = Instant::now();
        return record;
    };
    record.sent = Instant::now();
    record.first_sent = record.sent;
    ex.in_flight
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let timed = ex.timed.as_ref().filter(|t| t.serves(&prepared.url));
    let limit = ex.total_timeout;
    tokio::select! {
        biased;
        _ = cancel.cancelled() => record.fail(FailureKind::Cancelled, "the run was interrupted"),
        _ = async {
            let within = match timed {
                Some(t) => tokio::time::timeout(limit, exchange::exchange(ex, t, prepared, &mut record)).await,
                None => tokio::time::timeout(limit, exchange::exchange(ex, &ex.reqwest, prepared, &mut record)).await,
            };
            if within.is_err() {
                record.fail(FailureKind::Timeout, format!("the request took longer than {limit:?} (--total-timeout)"));
            }
        } => {}
    }
    record.completed = Instant::now();
    ex.in_flight
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    record.peak_memory_bytes = crate::local_model::peak_memory_bytes();
    // No streamed response to tell: a failed request counts as streamed when it asked to be,
    // as evalscope counts it.
    if !record.success() && !record.is_stream {
        record.is_stream = asks_to_stream(&record.request_body);
    }
    record
}

/// A conversation turn's JSON body with SGLang's routing key `rid` added, unless the body
/// has one or is not a JSON object.
fn with_rid(body: Vec<u8>, rid: Option<&str>) -> Vec<u8> {
    let Some(rid) = rid else { return body };
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(serde_json::Value::Object(mut o)) if !o.contains_key("rid") => {
            o.insert("rid".into(), serde_json::Value::String(rid.into()));
            serde_json::to_vec(&o).unwrap_or(body)
        }
        _ => body,
    }
}

/// Whether a JSON request body has `"stream": true` at its top level.
fn asks_to_stream(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Stream {
        #[serde(default)]
        stream: Option<serde_json::Value>,
    }
    serde_json::from_slice::<Stream>(body)
        .is_ok_and(|b| b.stream == Some(serde_json::Value::Bool(true)))
}

/// Reads a response body: framing, decoding, and the checks at its end.
struct BodyReader<'a> {
    framer: Framer,
    reader: Reader<'a>,
    last_read: Instant,
    /// Bytes of the body read so far.
    read: u64,
}

impl<'a> BodyReader<'a> {
    /// A reader for the body of `record`'s response; `None` (the record failed as `plugin`)
    /// when the adapter cannot make a decoder.
    fn new(
        ex: &'a Exchange,
        framing: Framing,
        content_type: &str,
        record: &'a mut RawRecord,
    ) -> Option<Self> {
        // A server that ignores `stream` answers with one JSON body: read it whole.
        let framing = if framing == Framing::Sse && content_type.starts_with("application/json") {
            Framing::None
        } else {
            framing
        };
        record.is_stream = framing != Framing::None;
        let adapter = ex.adapter.info.id.as_str();
        let decoder = match ex.adapter.decoder(&record.request_body) {
            Ok(d) => d,
            Err(e) => {
                let message = format!("the '{adapter}' adapter failed in new_decoder: {e}");
                crate::output::log::warn_once(&message);
                record.fail(FailureKind::Plugin, message);
                return None;
            }
        };
        let max_event = if framing == Framing::None {
            ex.limits.response_bytes
        } else {
            ex.limits.event_bytes
        };
        Some(BodyReader {
            framer: Framer::new(framing, usize::try_from(max_event).unwrap_or(usize::MAX)),
            read: 0,
            reader: Reader {
                decoder,
                record,
                events: RVec::new(),
                last_output: None,
                whole_body: framing == Framing::None,
                first_invalid: None,
                decoded: 0,
                failed: false,
                adapter,
                limits: ex.limits,
                too_large: false,
                keep_messages: ex.keep_messages,
            },
            last_read: Instant::now(),
        })
    }

    /// Feeds one read; `false` when the rest of the body is not worth reading (too large).
    fn push(&mut self, bytes: &[u8], at: Instant) -> bool {
        self.last_read = at;
        self.read += bytes.len() as u64;
        let limit = self.reader.limits.response_bytes;
        if self.read > limit {
            self.reader.record.fail(
                FailureKind::Stream,
                format!("the response is longer than --max-response-bytes ({limit} bytes)"),
            );
            return false;
        }
        let reader = &mut self.reader;
        self.framer.push(bytes, &mut |e| reader.on_event(e, at));
        !self.reader.too_large
    }

    fn fail(&mut self, kind: FailureKind, message: String) {
        self.reader.record.fail(kind, message);
    }

    fn finish(mut self) {
        let at = self.last_read;
        let reader = &mut self.reader;
        self.framer.finish(&mut |e| reader.on_event(e, at));
        if !reader.failed {
            reader.events.clear();
            match reader.decoder.finish(&mut reader.events) {
                Ok(()) if !reader.events.is_empty() => {
                    reader.apply(at);
                }
                Ok(()) => {}
                Err(e) => reader.plugin_failed("finish", e),
            }
        }
        let r = &mut *reader.record;
        if r.success() && r.output_events == 0 {
            match reader.first_invalid.take() {
                // Nothing decoded at all: the response was not in the adapter's format.
                Some(first) if reader.decoded == 0 => r.fail(
                    FailureKind::Decode,
                    format!(
                        "none of the response's {} event(s) could be decoded; the first: {first}",
                        r.malformed_chunks
                    ),
                ),
                Some(_) => r.fail(
                    FailureKind::EmptyResponse,
                    format!(
                        "the response finished without any output; {} chunk(s) could not be decoded",
                        r.malformed_chunks
                    ),
                ),
                None => r.fail(
                    FailureKind::EmptyResponse,
                    "the response finished without any output",
                ),
            }
        }
    }
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

fn error_text(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text: String = text.chars().take(1000).collect();
    if text.trim().is_empty() {
        "(empty body)".into()
    } else {
        text.trim().to_string()
    }
}

/// The header that carries each request's id.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What every request id of this process starts with: `perf-<pid>`, or `perf-s<shard>-<pid>`
/// for a shard (pids repeat across machines).
static ID_PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Makes request ids say which shard sent them; called once, before any request.
pub fn set_shard(index: u64) {
    let _ = ID_PREFIX.set(format!("perf-s{index}-{}", std::process::id()));
}

/// The id of request `index` of this process's run (`perf-<pid>-<index>`).
pub fn request_id(index: u64) -> String {
    let prefix = ID_PREFIX.get_or_init(|| format!("perf-{}", std::process::id()));
    format!("{prefix}-{index}")
}

/// The user agent of every request.
pub const USER_AGENT: &str = concat!("perf/", env!("CARGO_PKG_VERSION"));
