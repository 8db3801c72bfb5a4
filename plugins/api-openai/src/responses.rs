//! `openai_responses` (`--api responses`): the OpenAI Responses API, `POST /v1/responses`.
//!
//! Bodies: `{"model", "input", "max_output_tokens", "stream", "temperature", "top_p"}` plus
//! `--extra-args`; a text prompt is the `input` string, chat messages become input messages
//! (`input_text` / `input_image` parts when they hold images), a complete JSON body is sent as
//! it is with the run's parameters where it lacks them.
//!
//! Decoding follows the typed events: `response.output_text.delta` (content),
//! `response.reasoning_text.delta` / `response.reasoning_summary_text.delta` (reasoning) and
//! `response.refusal.delta` (a refusal is the answer) are output;
//! `response.function_call_arguments.delta` is tool-call output; `response.completed` and
//! `response.incomplete` carry the usage and end the response; `response.failed` and `error`
//! fail it. A non-streamed body is one response object.

use perf_plugin_api::sdk::{ApiAdapterPlugin, ApiConfig, ResponseDecoderPlugin};
use perf_plugin_api::{
    ChatMessage, ContentPart, Framing, HttpRequest, OutputKind, PluginError, PromptForm,
    PromptItem, RequestContext, ResponseEvent, Usage,
};
use serde_json::{json, Map, Value};

/// The adapter.
pub struct ResponsesAdapter {
    stream: bool,
    parameters: Map<String, Value>,
    default_max_tokens: Option<u32>,
}

fn input_message(m: &ChatMessage) -> Result<Value, PluginError> {
    let parts = m.parts().collect::<Result<Vec<_>, _>>()?;
    if parts.iter().all(|p| matches!(p, ContentPart::Text(_))) {
        let text: String = parts
            .iter()
            .filter_map(|p| match p {
                ContentPart::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        return Ok(json!({"role": m.role.as_str(), "content": text}));
    }
    let parts = parts
        .iter()
        .map(|p| match p {
            ContentPart::Text(t) => Ok(json!({"type": "input_text", "text": t.as_str()})),
            ContentPart::ImageUrl(u) => Ok(json!({"type": "input_image", "image_url": u.as_str()})),
            _ => Err(PluginError::invalid(
                "the Responses API takes text and image parts only",
            )),
        })
        .collect::<Result<Vec<Value>, _>>()?;
    Ok(json!({"role": m.role.as_str(), "content": parts}))
}

impl ResponsesAdapter {
    fn body(&self, item: &PromptItem, ctx: &RequestContext) -> Result<Value, PluginError> {
        let mut parameters = self.parameters.clone();
        if let Some(n) = ctx.max_tokens.into_option().or(self.default_max_tokens) {
            parameters
                .entry("max_output_tokens".to_string())
                .or_insert(json!(n));
        }
        let input = match item {
            PromptItem::Text(t) => json!(t.as_str()),
            PromptItem::Messages(ms) => {
                Value::Array(ms.iter().map(input_message).collect::<Result<_, _>>()?)
            }
            PromptItem::Body(b) => {
                let mut body: Value = serde_json::from_str(b.as_str()).map_err(|e| {
                    PluginError::invalid(format!("the prompt's JSON body is invalid: {e}"))
                })?;
                let obj = body.as_object_mut().ok_or_else(|| {
                    PluginError::invalid("the prompt's JSON body is not an object")
                })?;
                for (k, v) in parameters {
                    obj.entry(k).or_insert(v);
                }
                return Ok(body);
            }
            PromptItem::TokenIds(_) => {
                return Err(PluginError::config(
                    "the Responses API takes text, not token ids: drop --tokenize-prompt",
                ))
            }
            _ => {
                return Err(PluginError::invalid(
                    "the Responses API cannot take this kind of prompt",
                ))
            }
        };
        parameters.insert("input".into(), input);
        Ok(Value::Object(parameters))
    }
}

impl ApiAdapterPlugin for ResponsesAdapter {
    const ID: &'static str = "openai_responses";
    const DESCRIPTION: &'static str =
        "the OpenAI Responses API (/v1/responses), streamed as typed events or not";
    const ALIASES: &'static [&'static str] = &["responses", "openai_response"];
    const ENDPOINTS: &'static [&'static str] = &["responses"];
    // evalscope sends `--api openai_responses --url .../v1/chat/completions` to .../v1/responses.
    const REPLACES_ENDPOINTS: &'static [&'static str] = &["chat/completions"];
    const PROMPT_FORM: PromptForm = PromptForm::Chat;
    const OPTION_KEYS: Option<&'static [&'static str]> = Some(&[]);
    type Decoder = ResponsesDecoder;

    fn new(config: &ApiConfig) -> Result<Self, PluginError> {
        let mut p = Map::new();
        p.insert("model".into(), json!(config.model));
        p.insert("stream".into(), json!(config.stream));
        if let Some(t) = config.temperature {
            p.insert("temperature".into(), json!(t));
        }
        if let Some(t) = config.top_p {
            p.insert("top_p".into(), json!(t));
        }
        p.extend(config.extra_args.clone());
        Ok(ResponsesAdapter {
            stream: config.stream,
            parameters: p,
            default_max_tokens: config.max_tokens,
        })
    }

    fn build_request(
        &self,
        item: &PromptItem,
        ctx: &RequestContext,
    ) -> Result<HttpRequest, PluginError> {
        let body = self.body(item, ctx)?;
        let framing = if self.stream {
            Framing::Sse
        } else {
            Framing::None
        };
        Ok(HttpRequest::json_post(
            body.to_string().into_bytes(),
            framing,
        ))
    }

    fn new_decoder(&self) -> ResponsesDecoder {
        ResponsesDecoder
    }
}

/// Decodes one Responses API answer.
pub struct ResponsesDecoder;

fn usage(response: &Value, out: &mut Vec<ResponseEvent>) {
    let Some(u) = response.get("usage").filter(|u| u.is_object()) else {
        return;
    };
    let n = |k: &str| u.get(k).and_then(Value::as_u64);
    out.push(ResponseEvent::Usage(Usage {
        prompt_tokens: n("input_tokens").into(),
        completion_tokens: n("output_tokens").into(),
        cached_tokens: u
            .get("input_tokens_details")
            .and_then(|d| d.get("cached_tokens"))
            .and_then(Value::as_u64)
            .into(),
        ..Usage::default()
    }));
}

fn output(out: &mut Vec<ResponseEvent>, text: &str, kind: OutputKind) {
    out.push(ResponseEvent::Output {
        text: text.into(),
        tokens: None.into(),
        kind,
    });
}

/// The error message of a failed response or an `error` event.
fn error_message(v: &Value) -> String {
    let e = v
        .get("response")
        .and_then(|r| r.get("error"))
        .filter(|e| !e.is_null())
        .or_else(|| v.get("error"))
        .unwrap_or(v);
    let code = e.get("code").and_then(Value::as_str).unwrap_or("error");
    let message = e
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("the response failed");
    format!("{code}: {message}")
}

impl ResponseDecoderPlugin for ResponsesDecoder {
    fn decode(&mut self, event: &[u8], out: &mut Vec<ResponseEvent>) -> Result<(), PluginError> {
        let v: Value = serde_json::from_slice(event)
            .map_err(|e| PluginError::invalid(format!("not a Responses API JSON event: {e}")))?;
        let delta = || v.get("delta").and_then(Value::as_str).unwrap_or("");
        match v.get("type").and_then(Value::as_str) {
            Some("response.output_text.delta") | Some("response.refusal.delta") => {
                output(out, delta(), OutputKind::Content)
            }
            Some("response.reasoning_text.delta")
            | Some("response.reasoning_summary_text.delta") => {
                output(out, delta(), OutputKind::Reasoning)
            }
            Some("response.function_call_arguments.delta") => {
                output(out, delta(), OutputKind::ToolCall)
            }
            Some("response.completed") | Some("response.incomplete") => {
                usage(&v["response"], out);
                out.push(ResponseEvent::Done);
            }
            Some("response.failed") | Some("error") => {
                out.push(ResponseEvent::Error(error_message(&v).into()))
            }
            Some(_) => {}
            // A whole (non-streamed) response object.
            None if v.get("object").and_then(Value::as_str) == Some("response") => {
                if v.get("status").and_then(Value::as_str) == Some("failed") {
                    out.push(ResponseEvent::Error(error_message(&v).into()));
                    return Ok(());
                }
                for item in v["output"].as_array().into_iter().flatten() {
                    for part in item["content"].as_array().into_iter().flatten() {
                        match part.get("type").and_then(Value::as_str) {
                            Some("output_text") => output(
                                out,
                                part["text"].as_str().unwrap_or(""),
                                OutputKind::Content,
                            ),
                            Some("refusal") => output(
                                out,
                                part["refusal"].as_str().unwrap_or(""),
                                OutputKind::Content,
                            ),
                            Some("reasoning_text") => output(
                                out,
                                part["text"].as_str().unwrap_or(""),
                                OutputKind::Reasoning,
                            ),
                            _ => {}
                        }
                    }
                }
                usage(&v, out);
                out.push(ResponseEvent::Done);
            }
            None if v.get("error").is_some() => {
                out.push(ResponseEvent::Error(error_message(&v).into()))
            }
            None => return Err(PluginError::invalid("a Responses API event without `type`")),
        }
        Ok(())
    }
}
