//! `dashscope`: DashScope's native generation API, as the official `dashscope` Python client
//! speaks it (evalscope lists the API but its plugin never sends a request).
//!
//! - Text: `POST .../api/v1/services/aigc/text-generation/generation`; image + text:
//!   `POST .../api/v1/services/aigc/multimodal-generation/generation` (chosen by `--url`; the
//!   multimodal endpoint takes content as a list of `{"text"}` / `{"image"}` parts).
//! - Body: `{"model", "input": {"messages": [...]}, "parameters": {...}}` with `result_format:
//!   "message"`, `incremental_output: true` when streaming, and the run's `max_tokens`,
//!   `temperature`, `top_p`, `top_k`, `seed`, `stop`; `--extra-args` go into `parameters`.
//! - Streaming adds `X-DashScope-SSE: enable` and `Accept: text/event-stream`; events are
//!   `id:`, `event:result`, `:HTTP_STATUS/200`, `data:{...}`, the content of each the new piece
//!   (or, when a server ignores `incremental_output`, the whole text so far: the decoder keeps
//!   only what is new), `finish_reason` the string `"null"` until the last event, usage
//!   (`input_tokens`, `output_tokens`) cumulative.
//! - Errors: `{"code", "message", "request_id"}` with an HTTP error status, or as a stream's
//!   `event:error`.
//!
//! The API key goes in `Authorization: Bearer` (the host adds it from `--api-key`).

use perf_plugin_api::sdk::{ApiAdapterPlugin, ApiConfig, ResponseDecoderPlugin};
use perf_plugin_api::{
    ChatMessage, ContentPart, Framing, HttpRequest, OutputKind, PluginError, PromptForm,
    PromptItem, RequestContext, ResponseEvent, Usage,
};
use serde_json::{json, Map, Value};

/// The adapter.
pub struct DashScopeAdapter {
    multimodal: bool,
    stream: bool,
    model: String,
    parameters: Map<String, Value>,
    default_max_tokens: Option<u32>,
}

fn parameters(config: &ApiConfig) -> Map<String, Value> {
    let mut p = Map::new();
    p.insert("result_format".into(), json!("message"));
    if config.stream {
        p.insert("incremental_output".into(), json!(true));
    }
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            p.insert(k.into(), v);
        }
    };
    put("temperature", config.temperature.map(Value::from));
    put("top_p", config.top_p.map(Value::from));
    put("top_k", config.top_k.map(Value::from));
    put("seed", config.seed.map(Value::from));
    put("stop", config.stop.clone().map(Value::from));
    put(
        "repetition_penalty",
        config.repetition_penalty.map(Value::from),
    );
    p.extend(config.extra_args.clone());
    p
}

impl DashScopeAdapter {
    /// One message as DashScope takes it.
    fn message(&self, m: &ChatMessage) -> Result<Value, PluginError> {
        let parts = m.parts().collect::<Result<Vec<_>, _>>()?;
        if self.multimodal {
            let parts = parts
                .iter()
                .map(|p| match p {
                    ContentPart::Text(t) => Ok(json!({"text": t.as_str()})),
                    ContentPart::ImageUrl(u) => Ok(json!({"image": u.as_str()})),
                    _ => Err(PluginError::invalid(
                        "DashScope takes text and image parts only",
                    )),
                })
                .collect::<Result<Vec<Value>, _>>()?;
            return Ok(json!({"role": m.role.as_str(), "content": parts}));
        }
        let mut text = String::new();
        for part in parts {
            match part {
                ContentPart::Text(t) => text.push_str(t),
                _ => {
                    return Err(PluginError::invalid(
                        "this prompt has images: DashScope takes them at .../services/aigc/multimodal-generation/generation; pass that as --url",
                    ))
                }
            }
        }
        Ok(json!({"role": m.role.as_str(), "content": text}))
    }

    fn body(&self, item: &PromptItem, ctx: &RequestContext) -> Result<Value, PluginError> {
        let mut parameters = self.parameters.clone();
        if let Some(n) = ctx.max_tokens.into_option().or(self.default_max_tokens) {
            parameters
                .entry("max_tokens".to_string())
                .or_insert(json!(n));
        }
        let messages = match item {
            PromptItem::Text(t) => vec![self.message(&ChatMessage::text("user", t))?],
            PromptItem::Messages(ms) => ms
                .iter()
                .map(|m| self.message(m))
                .collect::<Result<_, _>>()?,
            PromptItem::Body(b) => {
                // A complete body: sent as it is, the run's parameters only where it lacks them.
                let mut body: Value = serde_json::from_str(b.as_str()).map_err(|e| {
                    PluginError::invalid(format!("the prompt's JSON body is invalid: {e}"))
                })?;
                let obj = body.as_object_mut().ok_or_else(|| {
                    PluginError::invalid("the prompt's JSON body is not an object")
                })?;
                obj.entry("model").or_insert(json!(self.model));
                let params = obj.entry("parameters").or_insert(json!({}));
                if let Some(p) = params.as_object_mut() {
                    for (k, v) in parameters {
                        p.entry(k).or_insert(v);
                    }
                }
                return Ok(body);
            }
            PromptItem::TokenIds(_) => {
                return Err(PluginError::config(
                    "DashScope takes text, not token ids: drop --tokenize-prompt",
                ))
            }
            _ => {
                return Err(PluginError::invalid(
                    "DashScope cannot send this kind of prompt",
                ))
            }
        };
        Ok(json!({
            "model": self.model,
            "input": {"messages": messages},
            "parameters": parameters,
        }))
    }
}

impl ApiAdapterPlugin for DashScopeAdapter {
    const ID: &'static str = "dashscope";
    const DESCRIPTION: &'static str =
        "DashScope native text and multimodal generation (input/parameters body, X-DashScope-SSE streaming)";
    // The generation endpoints take chat messages; the --url names the endpoint in full.
    const PROMPT_FORM: PromptForm = PromptForm::Chat;
    const OPTION_KEYS: Option<&'static [&'static str]> = Some(&[]);
    type Decoder = DashScopeDecoder;

    fn new(config: &ApiConfig) -> Result<Self, PluginError> {
        if config.model.is_empty() {
            return Err(PluginError::config(
                "dashscope needs --model (e.g. qwen-plus)",
            ));
        }
        Ok(DashScopeAdapter {
            multimodal: config.url.contains("multimodal-generation"),
            stream: config.stream,
            model: config.model.clone(),
            parameters: parameters(config),
            default_max_tokens: config.max_tokens,
        })
    }

    fn build_request(
        &self,
        item: &PromptItem,
        ctx: &RequestContext,
    ) -> Result<HttpRequest, PluginError> {
        let body = self.body(item, ctx)?;
        let body = body.to_string().into_bytes();
        Ok(if self.stream {
            HttpRequest::json_post(body, Framing::Sse)
                .with_header("x-dashscope-sse", "enable")
                .with_header("accept", "text/event-stream")
        } else {
            HttpRequest::json_post(body, Framing::None)
        })
    }

    fn new_decoder(&self) -> DashScopeDecoder {
        DashScopeDecoder {
            cumulative: self.stream
                && self.parameters.get("incremental_output") != Some(&json!(true)),
            seen: 0,
        }
    }
}

/// Decodes one DashScope response, streamed or whole.
#[derive(Default)]
pub struct DashScopeDecoder {
    /// Events carry the whole text so far (`incremental_output: false`).
    cumulative: bool,
    /// Characters of content seen so far.
    seen: usize,
}

/// The text of a `message.content`: a string, or (multimodal) a list of `{"text"}` parts.
fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

impl ResponseDecoderPlugin for DashScopeDecoder {
    fn decode(&mut self, event: &[u8], out: &mut Vec<ResponseEvent>) -> Result<(), PluginError> {
        let v: Value = serde_json::from_slice(event)
            .map_err(|e| PluginError::invalid(format!("not a DashScope JSON event: {e}")))?;
        if v.get("output").is_none() {
            if let Some(code) = v.get("code").and_then(Value::as_str) {
                let message = v.get("message").and_then(Value::as_str).unwrap_or("");
                out.push(ResponseEvent::Error(format!("{code}: {message}").into()));
                return Ok(());
            }
            return Err(PluginError::invalid("a DashScope event without `output`"));
        }
        let output = &v["output"];
        let (text, finish) = match output.get("choices").and_then(|c| c.get(0)) {
            Some(choice) => (
                content_text(&choice["message"]["content"]),
                choice.get("finish_reason").and_then(Value::as_str),
            ),
            // result_format "text"
            None => (
                output
                    .get("text")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                output.get("finish_reason").and_then(Value::as_str),
            ),
        };
        let reasoning = output
            .get("choices")
            .and_then(|c| c.get(0))
            .and_then(|c| c["message"].get("reasoning_content"))
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty());
        if let Some(r) = reasoning {
            out.push(ResponseEvent::Output {
                text: r.into(),
                tokens: None.into(),
                kind: OutputKind::Reasoning,
            });
        }
        // With `incremental_output` each event is the new piece; without it (a user's
        // `--extra-args`), the whole text so far, of which only the rest is new.
        let new: String = if self.cumulative {
            text.chars().skip(self.seen).collect()
        } else {
            text
        };
        if !new.is_empty() {
            self.seen += new.chars().count();
            out.push(ResponseEvent::Output {
                text: new.into(),
                tokens: None.into(),
                kind: OutputKind::Content,
            });
        } else if reasoning.is_none() {
            out.push(ResponseEvent::EmptyChunk);
        }
        if let Some(u) = v.get("usage") {
            let n = |k: &str| u.get(k).and_then(Value::as_u64);
            out.push(ResponseEvent::Usage(Usage {
                prompt_tokens: n("input_tokens").into(),
                completion_tokens: n("output_tokens").into(),
                cached_tokens: u
                    .get("prompt_tokens_details")
                    .and_then(|d| d.get("cached_tokens"))
                    .and_then(Value::as_u64)
                    .into(),
                ..Usage::default()
            }));
        }
        if finish.is_some_and(|f| f != "null") {
            out.push(ResponseEvent::Done);
        }
        Ok(())
    }
}

perf_plugin_api::builtin_plugins! {
    ApiAdapter: DashScopeAdapter,
}
