//! The OpenAI Responses API, as the server speaks it (`POST /v1/responses`), so the
//! `openai_responses` adapter and the official `openai` client's `responses.create` can be run
//! against any backend.
//!
//! Requests: `{"model", "input": text | [messages with text or `input_text` parts],
//! "instructions", "max_output_tokens", "stream"}`. Streamed answers are typed server-sent
//! events (`event: <type>` + `data: {..., "type", "sequence_number"}`): `response.created`,
//! `response.in_progress`, `response.output_item.added`, `response.content_part.added`, one
//! `response.output_text.delta` per piece, `response.output_text.done`,
//! `response.content_part.done`, `response.output_item.done`, then `response.completed` (or
//! `response.incomplete` when `max_output_tokens` cut it) carrying the whole response with its
//! `usage` (`input_tokens`, `output_tokens`, `total_tokens`). Errors are OpenAI error objects.

use std::io::Write;

use hyper::{HeaderMap, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::protocol::{
    error_response, text_of, CompletionRequest, Parsed, Protocol, Wire, WireContext,
};
use super::Body;

/// `/v1/responses`.
pub(crate) struct Responses;

#[derive(Deserialize)]
struct RawBody {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    input: Value,
    #[serde(default)]
    instructions: Option<String>,
    #[serde(default)]
    max_output_tokens: Option<u32>,
    #[serde(default)]
    stream: Option<bool>,
}

impl Protocol for Responses {
    fn parse(&self, _headers: &HeaderMap, body: &[u8], sequence: u64) -> Result<Parsed, String> {
        let raw: RawBody = serde_json::from_slice(body)
            .map_err(|e| format!("the request body is not valid JSON: {e}"))?;
        let mut messages = Vec::new();
        if let Some(i) = raw.instructions {
            messages.push(("system".to_string(), i));
        }
        match &raw.input {
            Value::String(s) => messages.push(("user".into(), s.clone())),
            Value::Array(items) => {
                for item in items {
                    let role = item
                        .get("role")
                        .and_then(Value::as_str)
                        .unwrap_or("user")
                        .to_string();
                    messages.push((role, text_of(item.get("content").unwrap_or(&Value::Null))));
                }
            }
            _ => return Err("`input` must be a string or a list of messages".into()),
        }
        let request = CompletionRequest {
            sequence,
            chat: true,
            model: raw.model.unwrap_or_default(),
            stream: raw.stream.unwrap_or(false),
            include_usage: true,
            max_tokens: raw.max_output_tokens,
            messages,
            ..CompletionRequest::default()
        };
        let max_output_tokens = raw.max_output_tokens;
        Ok(Parsed {
            request,
            writer: Box::new(move |c: WireContext| {
                Box::new(ResponsesWriter {
                    id: format!("resp_perf{}", c.sequence),
                    item_id: format!("msg_perf{}", c.sequence),
                    model: c.model,
                    created: c.created,
                    prompt_tokens: c.prompt_tokens,
                    cached_tokens: c.cached_tokens.unwrap_or(0),
                    output_tokens: 0,
                    max_output_tokens,
                    text: String::new(),
                    sequence_number: 0,
                    started: false,
                })
            }),
        })
    }

    fn error(&self, status: StatusCode, message: &str) -> Response<Body> {
        error_response(status, message)
    }
}

struct ResponsesWriter {
    id: String,
    item_id: String,
    model: String,
    created: u64,
    prompt_tokens: u64,
    cached_tokens: u64,
    output_tokens: u64,
    max_output_tokens: Option<u32>,
    text: String,
    sequence_number: u64,
    started: bool,
}

impl ResponsesWriter {
    fn message(&self, status: &str, text: Option<&str>) -> Value {
        let content = match text {
            Some(t) => {
                json!([{"type": "output_text", "text": t, "annotations": [], "logprobs": []}])
            }
            None => json!([]),
        };
        json!({"type": "message", "id": self.item_id, "status": status, "role": "assistant", "content": content})
    }

    /// The response object holding `text`; `finish` is `None` while it is in progress.
    fn response(&self, text: &str, finish: Option<&str>) -> Value {
        let (status, incomplete) = match finish {
            None => ("in_progress", Value::Null),
            Some("length") => ("incomplete", json!({"reason": "max_output_tokens"})),
            Some(_) => ("completed", Value::Null),
        };
        let output = match finish {
            None => json!([]),
            Some(_) => json!([self.message(status, Some(text))]),
        };
        let usage = match finish {
            None => Value::Null,
            Some(_) => json!({
                "input_tokens": self.prompt_tokens,
                "input_tokens_details": {"cached_tokens": self.cached_tokens},
                "output_tokens": self.output_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": self.prompt_tokens + self.output_tokens,
            }),
        };
        json!({
            "id": self.id, "object": "response", "created_at": self.created, "status": status,
            "error": null, "incomplete_details": incomplete, "instructions": null,
            "max_output_tokens": self.max_output_tokens, "model": self.model,
            "output": output, "parallel_tool_calls": true, "temperature": 1.0,
            "tool_choice": "auto", "tools": [], "top_p": 1.0, "usage": usage, "metadata": {},
        })
    }

    fn event(&mut self, out: &mut Vec<u8>, kind: &str, mut data: Value) {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(self.sequence_number);
        self.sequence_number += 1;
        let _ = write!(out, "event: {kind}\ndata: {data}\n\n");
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let response = self.response("", None);
        self.event(
            out,
            "response.created",
            json!({ "response": response.clone() }),
        );
        self.event(out, "response.in_progress", json!({ "response": response }));
        let item = self.message("in_progress", None);
        self.event(
            out,
            "response.output_item.added",
            json!({"output_index": 0, "item": item}),
        );
        let part = json!({"type": "output_text", "text": "", "annotations": []});
        let item_id = self.item_id.clone();
        self.event(
            out,
            "response.content_part.added",
            json!({"item_id": item_id, "output_index": 0, "content_index": 0, "part": part}),
        );
    }
}

impl Wire for ResponsesWriter {
    fn text_chunk(&mut self, out: &mut Vec<u8>, text: &str, tokens: u32) {
        self.start(out);
        self.output_tokens += u64::from(tokens);
        self.text.push_str(text);
        let item_id = self.item_id.clone();
        self.event(
            out,
            "response.output_text.delta",
            json!({"item_id": item_id, "output_index": 0, "content_index": 0, "delta": text, "logprobs": []}),
        );
    }

    fn malformed(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(
            b"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"trunc\n\n",
        );
    }

    fn tail(&mut self, out: &mut Vec<u8>, finish_reason: &str) {
        self.start(out);
        let item_id = self.item_id.clone();
        let text = self.text.clone();
        self.event(
            out,
            "response.output_text.done",
            json!({"item_id": item_id, "output_index": 0, "content_index": 0, "text": text, "logprobs": []}),
        );
        let part = json!({"type": "output_text", "text": text, "annotations": []});
        self.event(
            out,
            "response.content_part.done",
            json!({"item_id": item_id, "output_index": 0, "content_index": 0, "part": part}),
        );
        let status = if finish_reason == "length" {
            "incomplete"
        } else {
            "completed"
        };
        let item = self.message(status, Some(&text));
        self.event(
            out,
            "response.output_item.done",
            json!({"output_index": 0, "item": item}),
        );
        let kind = if finish_reason == "length" {
            "response.incomplete"
        } else {
            "response.completed"
        };
        let response = self.response(&text, Some(finish_reason));
        self.event(out, kind, json!({ "response": response }));
    }

    fn count(&mut self, tokens: u32) {
        self.output_tokens += u64::from(tokens);
    }

    fn whole(&self, text: &str, finish_reason: &str) -> String {
        self.response(text, Some(finish_reason)).to_string()
    }
}
