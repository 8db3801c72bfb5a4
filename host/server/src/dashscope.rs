//! DashScope's native generation API, as the server speaks it (`/api/v1/services/aigc/
//! text-generation/generation` and `.../multimodal-generation/generation`), so the `dashscope`
//! adapter and the official `dashscope` client can be run against any backend.
//!
//! Requests: `{"model", "input": {"messages" | "prompt"}, "parameters": {"max_tokens",
//! "incremental_output", "result_format", ...}}`; streaming when `X-DashScope-SSE: enable`
//! (or `Accept: text/event-stream`). Streamed events are `id:N`, `event:result`,
//! `:HTTP_STATUS/200`, `data:{...}`: `output.choices[0].message.content` the new piece (or the
//! whole text so far without `incremental_output`), `finish_reason` `"null"` until the last
//! event, cumulative `usage` (`input_tokens`, `output_tokens`, `total_tokens`), `request_id`.
//! Errors are `{"code", "message", "request_id"}` with the HTTP status.

use std::borrow::Cow;
use std::io::Write;

use hyper::{HeaderMap, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::protocol::{text_of, CompletionRequest, Parsed, Protocol, Wire, WireContext};
use super::{full, Body};

/// DashScope text (`multimodal: false`) or multimodal generation.
pub(crate) struct DashScope {
    pub multimodal: bool,
}

#[derive(Deserialize)]
struct RawBody<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    input: Option<RawInput>,
    #[serde(default)]
    parameters: Option<RawParameters>,
}

#[derive(Deserialize)]
struct RawInput {
    #[serde(default)]
    messages: Option<Vec<RawMessage>>,
    #[serde(default)]
    prompt: Option<String>,
}

#[derive(Deserialize)]
struct RawMessage {
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    content: Value,
}

#[derive(Deserialize, Default)]
struct RawParameters {
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    incremental_output: Option<bool>,
    #[serde(default)]
    result_format: Option<String>,
}

fn streaming(headers: &HeaderMap) -> bool {
    let has = |name: &str, value: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains(value))
    };
    has("x-dashscope-sse", "enable") || has("accept", "text/event-stream")
}

impl Protocol for DashScope {
    fn parse(&self, headers: &HeaderMap, body: &[u8], sequence: u64) -> Result<Parsed, String> {
        let raw: RawBody<'_> = serde_json::from_slice(body)
            .map_err(|e| format!("the request body is not valid JSON: {e}"))?;
        let input = raw
            .input
            .ok_or("the body needs `input` with `messages` (or `prompt`)")?;
        let messages: Vec<(String, String)> = match (input.messages, input.prompt) {
            (Some(ms), _) if !ms.is_empty() => ms
                .into_iter()
                .map(|m| (m.role.unwrap_or_else(|| "user".into()), text_of(&m.content)))
                .collect(),
            (_, Some(p)) => vec![("user".into(), p)],
            _ => return Err("`input.messages` is empty".into()),
        };
        let parameters = raw.parameters.unwrap_or_default();
        let stream = streaming(headers);
        let request = CompletionRequest {
            sequence,
            chat: true,
            model: raw.model.map(Cow::into_owned).unwrap_or_default(),
            stream,
            include_usage: true,
            max_tokens: parameters.max_tokens,
            messages,
            ..CompletionRequest::default()
        };
        let multimodal = self.multimodal;
        let incremental = parameters.incremental_output.unwrap_or(false);
        let text_format = parameters.result_format.as_deref() == Some("text") && !multimodal;
        Ok(Parsed {
            request,
            writer: Box::new(move |c: WireContext| {
                Box::new(DashScopeWriter {
                    request_id: format!("perf-dashscope-{}", c.sequence),
                    prompt_tokens: c.prompt_tokens,
                    output_tokens: 0,
                    incremental,
                    multimodal,
                    text_format,
                    so_far: String::new(),
                    events: 0,
                })
            }),
        })
    }

    fn error(&self, status: StatusCode, message: &str) -> Response<Body> {
        error_response(status, message)
    }
}

/// DashScope's error object with `status`.
pub(crate) fn error_response(status: StatusCode, message: &str) -> Response<Body> {
    let code = match status.as_u16() {
        400 => "InvalidParameter",
        401 => "InvalidApiKey",
        429 => "Throttling",
        _ => "InternalError",
    };
    let body = json!({"code": code, "message": message, "request_id": "perf-dashscope-error"});
    full(status, "application/json", body.to_string())
}

struct DashScopeWriter {
    request_id: String,
    prompt_tokens: u64,
    output_tokens: u64,
    incremental: bool,
    multimodal: bool,
    text_format: bool,
    /// The whole text so far, for responses without `incremental_output`.
    so_far: String,
    events: u64,
}

impl DashScopeWriter {
    fn output(&self, text: &str, finish: &str) -> Value {
        if self.text_format {
            return json!({"text": text, "finish_reason": finish});
        }
        let content = if self.multimodal {
            json!([{"text": text}])
        } else {
            json!(text)
        };
        json!({"choices": [{"message": {"role": "assistant", "content": content}, "finish_reason": finish}]})
    }

    fn usage(&self) -> Value {
        json!({
            "input_tokens": self.prompt_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.prompt_tokens + self.output_tokens,
        })
    }

    fn event(&mut self, out: &mut Vec<u8>, text: &str, finish: &str) {
        self.events += 1;
        let data = json!({"output": self.output(text, finish), "usage": self.usage(), "request_id": self.request_id});
        let _ = write!(
            out,
            "id:{}\nevent:result\n:HTTP_STATUS/200\ndata:{data}\n\n",
            self.events
        );
    }
}

impl Wire for DashScopeWriter {
    fn text_chunk(&mut self, out: &mut Vec<u8>, text: &str, tokens: u32) {
        self.output_tokens += u64::from(tokens);
        self.so_far.push_str(text);
        let shown = if self.incremental {
            text.to_string()
        } else {
            self.so_far.clone()
        };
        self.event(out, &shown, "null");
    }

    fn malformed(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"id:0\nevent:result\ndata:{\"output\":{\"choices\":[{\"message\":{\"content\":\"trunc\n\n");
    }

    fn tail(&mut self, out: &mut Vec<u8>, finish_reason: &str) {
        let shown = if self.incremental {
            String::new()
        } else {
            self.so_far.clone()
        };
        self.event(out, &shown, finish_reason);
    }

    fn count(&mut self, tokens: u32) {
        self.output_tokens += u64::from(tokens);
    }

    fn whole(&self, text: &str, finish_reason: &str) -> String {
        json!({"output": self.output(text, finish_reason), "usage": self.usage(), "request_id": self.request_id})
            .to_string()
    }
}
