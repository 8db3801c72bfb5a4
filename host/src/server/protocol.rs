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
use hyper::{Request, Response, StatusCode};
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

pub(crate) async fn complete(
    req: Request<Incoming>,
    shared: &std::sync::Arc<Shared>,
    chat: bool,
    received: Instant,
) -> Response<Body> {
    let client_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                &format!("cannot read the body: {e}"),
            )
        }
    };
    let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed) + 1;
    let request = match CompletionRequest::parse(&body, chat, sequence) {
        Ok(r) => r,
        Err(message) => return error_response(StatusCode::BAD_REQUEST, &message),
    };
    let generation = match shared.backend.start(&request) {
        Ok(g) => g,
        Err(rejection) => return error_response(rejection.status, &rejection.message),
    };
    let id = format!("{}-perf-{sequence}", if chat { "chatcmpl" } else { "cmpl" });
    let model = if request.model.is_empty() {
        shared.backend.model().to_string()
    } else {
        request.model.clone()
    };
    let created = shared.clock.unix_s(received) as u64;
    let writer = ChunkWriter {
        chat,
        head: ChunkWriter::make_head(chat, &id, created, &model),
        id,
        model,
        created,
        prompt_tokens: generation.prompt_tokens,
        cached_tokens: generation.cached_tokens,
        completion_tokens: 0,
        first: true,
    };
    let log = LogEntry {
        sequence,
        id: client_id,
        received: shared.clock.unix_s(received),
        chunks: Vec::new(),
    };
    if request.stream {
        stream(
            writer,
            generation,
            request.include_usage,
            shared.clone(),
            log,
        )
    } else {
        whole(writer, generation, shared, log).await
    }
}

struct ChunkWriter {
    chat: bool,
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
    fn tail(&self, out: &mut Vec<u8>, finish_reason: &str, include_usage: bool) {
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
    writer: ChunkWriter,
    pieces: mpsc::Receiver<Piece>,
    /// A piece taken while coalescing that must start the next frame.
    pending: Option<Piece>,
    include_usage: bool,
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
                Piece::Malformed => out
                    .extend_from_slice(b"data: {\"choices\":[{\"delta\":{\"content\":\"trunc\n\n"),
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
                    self.writer
                        .tail(&mut out, finish_reason, self.include_usage);
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

fn stream(
    writer: ChunkWriter,
    pieces: Generation,
    include_usage: bool,
    shared: std::sync::Arc<Shared>,
    log: LogEntry,
) -> Response<Body> {
    let state = StreamState {
        writer,
        pieces: pieces.pieces,
        pending: None,
        include_usage,
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

async fn whole(
    mut writer: ChunkWriter,
    mut generation: Generation,
    shared: &std::sync::Arc<Shared>,
    mut log: LogEntry,
) -> Response<Body> {
    let mut text = String::new();
    let mut finish = "stop";
    while let Some(piece) = generation.pieces.recv().await {
        match piece {
            Piece::Text { text: t, tokens } => {
                text.push_str(&t);
                writer.completion_tokens += u64::from(tokens);
            }
            Piece::Malformed => {}
            Piece::Drop => {
                return error_response(StatusCode::INTERNAL_SERVER_ERROR, "generation aborted")
            }
            Piece::End { finish_reason } => {
                finish = finish_reason;
                break;
            }
        }
    }
    let (object, choice) = if writer.chat {
        (
            "chat.completion",
            format!(
                r#"{{"index":0,"message":{{"role":"assistant","content":{}}},"finish_reason":"{finish}"}}"#,
                json_str(&text)
            ),
        )
    } else {
        (
            "text_completion",
            format!(
                r#"{{"index":0,"text":{},"finish_reason":"{finish}"}}"#,
                json_str(&text)
            ),
        )
    };
    let body = format!(
        r#"{{"id":"{}","object":"{object}","created":{},"model":{},"choices":[{choice}],"usage":{}}}"#,
        writer.id,
        writer.created,
        json_str(&writer.model),
        writer.usage()
    );
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
