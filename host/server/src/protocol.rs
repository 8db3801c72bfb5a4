//! The OpenAI wire format of the local server: parsing requests, streaming chunks as
//! server-sent events, whole responses, errors, and the server's own timestamp log.

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{HeaderMap, Request, Response, StatusCode};
use serde::Deserialize;
use tokio::sync::mpsc;

use super::{full, Body, Generation, Piece, Shared};

/// A parsed completion request: what a backend needs to know.
#[derive(Debug, Clone, Default)]
pub struct CompletionRequest {
    /// The server's request counter (1-based), for deterministic fault injection.
    pub sequence: u64,
    /// `/v1/chat/completions` (true) or `/v1/completions`.
    pub chat: bool,
    /// The body's `model`.
    pub model: String,
    /// Stream the answer.
    pub stream: bool,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
    /// `max_tokens` (or `max_completion_tokens`).
    pub max_tokens: Option<u32>,
    /// `min_tokens`.
    pub min_tokens: Option<u32>,
    /// `ignore_eos`.
    pub ignore_eos: bool,
    /// `temperature` (0 or absent: greedy for a model backend).
    pub temperature: Option<f32>,
    /// `top_p`.
    pub top_p: Option<f32>,
    /// `top_k`.
    pub top_k: Option<i64>,
    /// `seed`.
    pub seed: Option<u64>,
    /// `stop_token_ids` (vLLM's extension).
    pub stop_token_ids: Vec<u32>,
    /// Chat messages as (role, text) pairs; image parts are not kept.
    pub messages: Vec<(String, String)>,
    /// The completions prompt, as text.
    pub prompt: Option<String>,
    /// The completions prompt, as token ids.
    pub prompt_ids: Option<Vec<u32>>,
}

#[derive(Deserialize)]
struct RawBody<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    max_completion_tokens: Option<u32>,
    #[serde(default)]
    min_tokens: Option<u32>,
    #[serde(default)]
    ignore_eos: Option<bool>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    top_p: Option<f32>,
    #[serde(default)]
    top_k: Option<i64>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    stop_token_ids: Option<Vec<u32>>,
    #[serde(borrow, default)]
    messages: Option<Vec<RawMessage<'a>>>,
    #[serde(borrow, default)]
    prompt: Option<RawPrompt<'a>>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Deserialize)]
struct RawMessage<'a> {
    #[serde(borrow, default)]
    role: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    content: Option<RawContent<'a>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawContent<'a> {
    Text(#[serde(borrow)] Cow<'a, str>),
    Parts(#[serde(borrow)] Vec<RawPart<'a>>),
}

#[derive(Deserialize)]
struct RawPart<'a> {
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawPrompt<'a> {
    Text(#[serde(borrow)] Cow<'a, str>),
    Ids(Vec<u32>),
    Texts(#[serde(borrow)] Vec<Cow<'a, str>>),
}

impl CompletionRequest {
    fn parse(body: &[u8], chat: bool, sequence: u64) -> Result<Self, String> {
        let raw: RawBody<'_> = serde_json::from_slice(body)
            .map_err(|e| format!("the request body is not valid JSON: {e}"))?;
        let messages: Vec<(String, String)> = raw
            .messages
            .unwrap_or_default()
            .into_iter()
            .map(|m| {
                let text = match m.content {
                    Some(RawContent::Text(t)) => t.into_owned(),
                    Some(RawContent::Parts(parts)) => parts
                        .into_iter()
                        .filter_map(|p| p.text.map(Cow::into_owned))
                        .collect::<Vec<_>>()
                        .join("\n"),
                    None => String::new(),
                };
                (
                    m.role.map(Cow::into_owned).unwrap_or_else(|| "user".into()),
                    text,
                )
            })
            .collect();
        let (prompt, prompt_ids) = match raw.prompt {
            Some(RawPrompt::Text(t)) => (Some(t.into_owned()), None),
            Some(RawPrompt::Texts(ts)) => (Some(ts.join("")), None),
            Some(RawPrompt::Ids(ids)) => (None, Some(ids)),
            None => (None, None),
        };
        if chat && messages.is_empty() {
            return Err("chat completions need a non-empty `messages` array".into());
        }
        if !chat && prompt.is_none() && prompt_ids.is_none() {
            return Err("completions need a `prompt`".into());
        }
        Ok(CompletionRequest {
            sequence,
            chat,
            model: raw.model.map(Cow::into_owned).unwrap_or_default(),
            stream: raw.stream.unwrap_or(false),
            include_usage: raw.stream_options.is_some_and(|o| o.include_usage),
            max_tokens: raw.max_tokens.or(raw.max_completion_tokens),
            min_tokens: raw.min_tokens,
            ignore_eos: raw.ignore_eos.unwrap_or(false),
            temperature: raw.temperature,
            top_p: raw.top_p,
            top_k: raw.top_k,
            seed: raw.seed,
            stop_token_ids: raw.stop_token_ids.unwrap_or_default(),
            messages,
            prompt,
            prompt_ids,
        })
    }
}

/// An OpenAI error object with `status`.
pub(crate) fn error_response(status: StatusCode, message: &str) -> Response<Body> {
    let body = serde_json::json!({"error": {"message": message, "type": "invalid_request_error", "code": status.as_u16()}});
    full(status, "application/json", body.to_string())
}

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// The server's next request number (1-based), for deterministic fault injection.
pub(crate) fn next_sequence() -> u64 {
    SEQUENCE.fetch_add(1, Ordering::Relaxed) + 1
}

/// A message's text: a string, or the `text` of each part of a list, joined by newlines
/// (DashScope's and the Responses API's content shapes).
pub(crate) fn text_of(content: &serde_json::Value) -> String {
    use serde_json::Value;
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// What a writer needs to know about a started generation.
pub(crate) struct WireContext {
    /// The server's request counter.
    pub sequence: u64,
    /// The model to report.
    pub model: String,
    /// When the request arrived, in Unix seconds.
    pub created: u64,
    /// Prompt tokens, as the backend counted them.
    pub prompt_tokens: u64,
    /// Cached prompt tokens, when the backend has a prefix cache.
    pub cached_tokens: Option<u64>,
}

/// A parsed request: what the backend needs, and how to write its answer.
pub(crate) struct Parsed {
    pub request: CompletionRequest,
    pub writer: Box<dyn FnOnce(WireContext) -> Box<dyn Wire> + Send>,
}

/// One wire format the server speaks: how it reads a request and writes errors.
pub(crate) trait Protocol: Sync {
    /// Parses a request (`sequence` is the server's counter).
    fn parse(&self, headers: &HeaderMap, body: &[u8], sequence: u64) -> Result<Parsed, String>;
    /// The format's error response.
    fn error(&self, status: StatusCode, message: &str) -> Response<Body>;
}

/// OpenAI chat completions (`chat`) or completions.
pub(crate) struct OpenAi {
    pub chat: bool,
}

impl Protocol for OpenAi {
    fn parse(&self, _headers: &HeaderMap, body: &[u8], sequence: u64) -> Result<Parsed, String> {
        let request = CompletionRequest::parse(body, self.chat, sequence)?;
        let (chat, include_usage) = (self.chat, request.include_usage);
        Ok(Parsed {
            request,
            writer: Box::new(move |c: WireContext| {
                let id = format!(
                    "{}-perf-{}",
                    if chat { "chatcmpl" } else { "cmpl" },
                    c.sequence
                );
                Box::new(ChunkWriter {
                    chat,
                    include_usage,
                    head: ChunkWriter::make_head(chat, &id, c.created, &c.model),
                    id,
                    model: c.model,
                    created: c.created,
                    prompt_tokens: c.prompt_tokens,
                    cached_tokens: c.cached_tokens,
                    completion_tokens: 0,
                    first: true,
                })
            }),
        })
    }

    fn error(&self, status: StatusCode, message: &str) -> Response<Body> {
        error_response(status, message)
    }
}

/// Serves one generation request in `protocol`'s wire format.
pub(crate) async fn generate(
    req: Request<Incoming>,
    shared: &std::sync::Arc<Shared>,
    protocol: &dyn Protocol,
    received: Instant,
) -> Response<Body> {
    let client_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let headers = req.headers().clone();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return protocol.error(
                StatusCode::BAD_REQUEST,
                &format!("cannot read the body: {e}"),
            )
        }
    };
    let sequence = next_sequence();
    let parsed = match protocol.parse(&headers, &body, sequence) {
        Ok(r) => r,
        Err(message) => return protocol.error(StatusCode::BAD_REQUEST, &message),
    };
    let request = parsed.request;
    let generation = match shared.backend.start(&request) {
        Ok(g) => g,
        Err(rejection) => return protocol.error(rejection.status, &rejection.message),
    };
    let model = if request.model.is_empty() {
        shared.backend.model().to_string()
    } else {
        request.model.clone()
    };
    let writer = (parsed.writer)(WireContext {
        sequence,
        model,
        created: shared.clock.unix_s(received) as u64,
        prompt_tokens: generation.prompt_tokens,
        cached_tokens: generation.cached_tokens,
    });
    let log = LogEntry {
        sequence,
        id: client_id,
        received: shared.clock.unix_s(received),
        chunks: Vec::new(),
    };
    if request.stream {
        stream(writer, generation, shared.clone(), log)
    } else {
        let error = |status, message: &str| protocol.error(status, message);
        whole(writer, generation, shared, log, &error).await
    }
}

pub(crate) struct ChunkWriter {
    chat: bool,
    include_usage: bool,
    id: String,
    model: String,
    created: u64,
    prompt_tokens: u64,
    cached_tokens: Option<u64>,
    completion_tokens: u64,
    first: bool,
    /// Every chunk's members before `choices`, built once per response.
    head: String,
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// Appends `s` as a JSON string.
fn push_json_str(out: &mut Vec<u8>, s: &str) {
    if serde_json::to_writer(&mut *out, s).is_err() {
        out.extend_from_slice(b"\"\"");
    }
}

/// How one wire format writes a generation: streamed chunks and their end, or one whole body.
/// The OpenAI formats are [`ChunkWriter`]; DashScope and the Responses API have their own.
pub(crate) trait Wire: Send + 'static {
    /// Appends one streamed piece of `tokens` tokens.
    fn text_chunk(&mut self, out: &mut Vec<u8>, text: &str, tokens: u32);
    /// Appends an event that is not valid JSON (fault injection).
    fn malformed(&self, out: &mut Vec<u8>);
    /// Appends the end of the stream.
    fn tail(&mut self, out: &mut Vec<u8>, finish_reason: &str);
    /// Counts the tokens of a piece of a non-streamed generation.
    fn count(&mut self, tokens: u32);
    /// The body of a non-streamed generation.
    fn whole(&self, text: &str, finish_reason: &str) -> String;
}

impl Wire for ChunkWriter {
    fn text_chunk(&mut self, out: &mut Vec<u8>, text: &str, tokens: u32) {
        ChunkWriter::text_chunk(self, out, text, tokens);
    }

    fn malformed(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"data: {\"choices\":[{\"delta\":{\"content\":\"trunc\n\n");
    }

    fn tail(&mut self, out: &mut Vec<u8>, finish_reason: &str) {
        ChunkWriter::tail(self, out, finish_reason);
    }

    fn count(&mut self, tokens: u32) {
        self.completion_tokens += u64::from(tokens);
    }

    fn whole(&self, text: &str, finish: &str) -> String {
        let (object, choice) = if self.chat {
            (
                "chat.completion",
                format!(
                    r#"{{"index":0,"message":{{"role":"assistant","content":{}}},"finish_reason":"{finish}"}}"#,
                    json_str(text)
                ),
            )
        } else {
            (
                "text_completion",
                format!(
                    r#"{{"index":0,"text":{},"finish_reason":"{finish}"}}"#,
                    json_str(text)
                ),
            )
        };
        format!(
            r#"{{"id":"{}","object":"{object}","created":{},"model":{},"choices":[{choice}],"usage":{}}}"#,
            self.id,
            self.created,
            json_str(&self.model),
            self.usage()
        )
    }
}

impl ChunkWriter {
    fn make_head(chat: bool, id: &str, created: u64, model: &str) -> String {
        let object = if chat {
            "chat.completion.chunk"
        } else {
            "text_completion"
        };
        format!(
            r#"{{"id":"{id}","object":"{object}","created":{created},"model":{}"#,
            json_str(model)
        )
    }

    /// Appends one text chunk's event to `out`.
    fn text_chunk(&mut self, out: &mut Vec<u8>, text: &str, tokens: u32) {
        self.completion_tokens += u64::from(tokens);
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(self.head.as_bytes());
        if self.chat {
            out.extend_from_slice(br#","choices":[{"index":0,"delta":{"#);
            if self.first {
                out.extend_from_slice(br#""role":"assistant","#);
            }
            out.extend_from_slice(br#""content":"#);
            push_json_str(out, text);
            out.extend_from_slice(br#"},"finish_reason":null}]}"#);
        } else {
            out.extend_from_slice(br#","choices":[{"index":0,"text":"#);
            push_json_str(out, text);
            out.extend_from_slice(br#","finish_reason":null}]}"#);
        }
        out.extend_from_slice(b"\n\n");
        self.first = false;
    }

    fn usage(&self) -> String {
        let cached = match self.cached_tokens {
            Some(c) => format!(r#","prompt_tokens_details":{{"cached_tokens":{c}}}"#),
            None => String::new(),
        };
        format!(
            r#"{{"prompt_tokens":{},"completion_tokens":{},"total_tokens":{}{cached}}}"#,
            self.prompt_tokens,
            self.completion_tokens,
            self.prompt_tokens + self.completion_tokens
        )
    }

    /// Appends the finishing chunk, the usage chunk when asked for, and `[DONE]`.
    fn tail(&self, out: &mut Vec<u8>, finish_reason: &str) {
        let include_usage = self.include_usage;
        let choice = if self.chat {
            format!(r#"{{"index":0,"delta":{{}},"finish_reason":"{finish_reason}"}}"#)
        } else {
            format!(r#"{{"index":0,"text":"","finish_reason":"{finish_reason}"}}"#)
        };
        let head = &self.head;
        let _ = write!(out, "data: {head},\"choices\":[{choice}]}}\n\n");
        if include_usage {
            let usage = self.usage();
            let _ = write!(out, "data: {head},\"choices\":[],\"usage\":{usage}}}\n\n");
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
    }
}

struct StreamState {
    writer: Box<dyn Wire>,
    pieces: mpsc::Receiver<Piece>,
    /// A piece taken while coalescing that must start the next frame.
    pending: Option<Piece>,
    done: bool,
    shared: std::sync::Arc<Shared>,
    log: LogEntry,
}

impl StreamState {
    fn stamp(&mut self) {
        if self.shared.log.is_some() {
            self.log
                .chunks
                .push(self.shared.clock.unix_s(Instant::now()));
        }
    }

    fn finish_log(&mut self) {
        if let Some(log) = &self.shared.log {
            log.write(&self.log);
        }
    }

    /// The next frame: the next piece, plus every piece already waiting behind it (a fast
    /// backend produces many at once; one frame each would cost a chunked-encoding frame and a
    /// write each). `None` when the body is over.
    async fn next_frame(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        if self.done {
            return None;
        }
        let mut piece = match self.pending.take() {
            Some(Piece::Drop) => {
                // Let hyper flush what was sent before the drop, so the drop is mid-stream:
                // an error from the body makes hyper close without flushing its buffer.
                tokio::task::yield_now().await;
                Piece::Drop
            }
            Some(p) => p,
            None => self.pieces.recv().await?,
        };
        let mut out = Vec::with_capacity(512);
        loop {
            match piece {
                Piece::Text { text, tokens } => self.writer.text_chunk(&mut out, &text, tokens),
                Piece::Malformed => self.writer.malformed(&mut out),
                Piece::Drop if out.is_empty() => {
                    self.done = true;
                    self.finish_log();
                    return Some(Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionAborted,
                        "connection dropped",
                    )));
                }
                Piece::Drop => {
                    self.pending = Some(Piece::Drop);
                    break;
                }
                Piece::End { finish_reason } => {
                    self.writer.tail(&mut out, finish_reason);
                    self.done = true;
                }
            }
            self.stamp();
            if self.done {
                self.finish_log();
                break;
            }
            match self.pieces.try_recv() {
                Ok(p) => piece = p,
                Err(_) => break,
            }
        }
        Some(Ok(Bytes::from(out)))
    }
}

pub(crate) fn stream(
    writer: Box<dyn Wire>,
    pieces: Generation,
    shared: std::sync::Arc<Shared>,
    log: LogEntry,
) -> Response<Body> {
    let state = StreamState {
        writer,
        pieces: pieces.pieces,
        pending: None,
        done: false,
        shared,
        log,
    };
    // Frames are produced when hyper asks for them, so the logged time is when a chunk goes
    // to the connection, not when it was generated.
    let frames = futures_util::stream::unfold(state, |mut s| async move {
        let item = s.next_frame().await;
        if item.is_none() && !s.done {
            // The backend went away without an end: the body ends here.
            s.done = true;
            s.finish_log();
        }
        item.map(|i| (i.map(Frame::data), s))
    });
    let mut resp = Response::new(BodyExt::boxed_unsync(StreamBody::new(frames)));
    let headers = resp.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-cache"),
    );
    resp
}

/// Collects a non-streamed generation into one body; `error` writes the protocol's error.
pub(crate) async fn whole(
    mut writer: Box<dyn Wire>,
    mut generation: Generation,
    shared: &std::sync::Arc<Shared>,
    mut log: LogEntry,
    error: &(dyn Fn(StatusCode, &str) -> Response<Body> + Sync),
) -> Response<Body> {
    let mut text = String::new();
    let mut finish = "stop";
    while let Some(piece) = generation.pieces.recv().await {
        match piece {
            Piece::Text { text: t, tokens } => {
                text.push_str(&t);
                writer.count(tokens);
            }
            Piece::Malformed => {}
            Piece::Drop => return error(StatusCode::INTERNAL_SERVER_ERROR, "generation aborted"),
            Piece::End { finish_reason } => {
                finish = finish_reason;
                break;
            }
        }
    }
    let body = writer.whole(&text, finish);
    if let Some(l) = &shared.log {
        log.chunks.push(shared.clock.unix_s(Instant::now()));
        l.write(&log);
    }
    full(StatusCode::OK, "application/json", body)
}

/// One request in the timestamp log.
pub(crate) struct LogEntry {
    sequence: u64,
    /// The client's `x-request-id`, when it sent one.
    id: Option<String>,
    received: f64,
    chunks: Vec<f64>,
}

/// The server's own timestamps, one JSON line per request:
/// `{"request": n, "id": x-request-id or null, "received": t, "chunks": [t, ...]}` (Unix seconds; for a non-streamed
/// response, `chunks` holds the time the body was sent).
pub(crate) struct TimestampLog {
    out: Mutex<BufWriter<File>>,
}

impl TimestampLog {
    pub(crate) fn create(path: &Path) -> std::io::Result<Self> {
        Ok(TimestampLog {
            out: Mutex::new(BufWriter::new(File::create(path)?)),
        })
    }

    fn write(&self, e: &LogEntry) {
        let line = serde_json::json!({"request": e.sequence, "id": e.id, "received": e.received, "chunks": e.chunks});
        if let Ok(mut out) = self.out.lock() {
            let _ = writeln!(out, "{line}");
        }
    }

    pub(crate) fn flush(&self) {
        if let Ok(mut out) = self.out.lock() {
            let _ = out.flush();
        }
    }
}
