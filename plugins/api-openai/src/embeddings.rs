//! `openai_embedding` (`--api embedding`) and `openai_rerank` (`--api rerank`): requests that
//! produce no text, never streamed. Latency is the whole answer; the "output" is one empty event
//! when the answer arrives (so time to first token equals latency, as evalscope reports it) and
//! the input tokens come from `usage.prompt_tokens`, else `usage.total_tokens`.
//!
//! Embedding bodies: `{"model", "input", ...--extra-args}`: a text prompt is the input string,
//! chat messages their text joined, token ids a list of ids, and a complete JSON body (what
//! `embedding_batch` datasets yield: `{"input": [...]}`) gets only the model and extra
//! arguments it lacks. Rerank bodies: `{"model", "query", "documents"}`: from a complete body
//! (`rerank` datasets yield `{"query", "documents"}`), from messages (the first the query, the
//! rest documents), or a text prompt as the query with one empty document, as evalscope does.

use perf_plugin_api::sdk::{ApiAdapterPlugin, ApiConfig, ResponseDecoderPlugin};
use perf_plugin_api::{
    ChatMessage, ContentPart, Framing, HttpRequest, OutputKind, PluginError, PromptForm,
    PromptItem, RequestContext, ResponseEvent, ResultKind, Usage,
};
use serde_json::{json, Map, Value};

/// The text parts of a message (embeddings and rerank take text only; other parts are left out).
fn text_of(m: &ChatMessage) -> String {
    m.parts()
        .filter_map(|p| match p {
            Ok(ContentPart::Text(t)) => Some(t.as_str()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The run's constant members (`model`, `--extra-args`).
fn constants(config: &ApiConfig) -> Map<String, Value> {
    let mut p = Map::new();
    p.insert("model".into(), json!(config.model));
    p.extend(config.extra_args.clone());
    p
}

/// A complete body from a dataset, with the run's constants where it lacks them.
fn complete_body(json_body: &str, constants: &Map<String, Value>) -> Result<Value, PluginError> {
    let mut body: Value = serde_json::from_str(json_body)
        .map_err(|e| PluginError::invalid(format!("the prompt's JSON body is invalid: {e}")))?;
    let obj = body
        .as_object_mut()
        .ok_or_else(|| PluginError::invalid("the prompt's JSON body is not an object"))?;
    for (k, v) in constants {
        obj.entry(k.clone()).or_insert(v.clone());
    }
    Ok(body)
}

fn request(body: Value) -> HttpRequest {
    HttpRequest::json_post(body.to_string().into_bytes(), Framing::None)
}

/// Embeddings.
pub struct EmbeddingAdapter {
    constants: Map<String, Value>,
}

impl ApiAdapterPlugin for EmbeddingAdapter {
    const ID: &'static str = "openai_embedding";
    const DESCRIPTION: &'static str =
        "OpenAI-compatible embeddings (/v1/embeddings), one body per request";
    const ALIASES: &'static [&'static str] = &["embedding"];
    const ENDPOINTS: &'static [&'static str] = &["embeddings"];
    const PROMPT_FORM: PromptForm = PromptForm::Text;
    const RESULTS: ResultKind = ResultKind::InputOnly;
    const OPTION_KEYS: Option<&'static [&'static str]> = Some(&[]);
    type Decoder = InputOnlyDecoder;

    fn new(config: &ApiConfig) -> Result<Self, PluginError> {
        Ok(EmbeddingAdapter {
            constants: constants(config),
        })
    }

    fn build_request(
        &self,
        item: &PromptItem,
        _ctx: &RequestContext,
    ) -> Result<HttpRequest, PluginError> {
        let input = match item {
            PromptItem::Text(t) => json!(t.as_str()),
            PromptItem::Messages(ms) => {
                json!(ms.iter().map(text_of).collect::<Vec<_>>().join("\n"))
            }
            PromptItem::TokenIds(ids) => json!(ids.as_slice()),
            PromptItem::Body(b) => return Ok(request(complete_body(b, &self.constants)?)),
            _ => {
                return Err(PluginError::invalid(
                    "embeddings cannot take this kind of prompt",
                ))
            }
        };
        let mut body = self.constants.clone();
        body.insert("input".into(), input);
        Ok(request(Value::Object(body)))
    }

    fn new_decoder(&self) -> InputOnlyDecoder {
        InputOnlyDecoder
    }
}

/// Rerank.
pub struct RerankAdapter {
    constants: Map<String, Value>,
}

impl ApiAdapterPlugin for RerankAdapter {
    const ID: &'static str = "openai_rerank";
    const DESCRIPTION: &'static str =
        "rerank (/v1/rerank, vLLM / Jina / Cohere style), one body per request";
    const ALIASES: &'static [&'static str] = &["rerank"];
    const ENDPOINTS: &'static [&'static str] = &["reranks", "rerank"];
    const PROMPT_FORM: PromptForm = PromptForm::Text;
    const RESULTS: ResultKind = ResultKind::InputOnly;
    const OPTION_KEYS: Option<&'static [&'static str]> = Some(&[]);
    type Decoder = InputOnlyDecoder;

    fn new(config: &ApiConfig) -> Result<Self, PluginError> {
        Ok(RerankAdapter {
            constants: constants(config),
        })
    }

    fn build_request(
        &self,
        item: &PromptItem,
        _ctx: &RequestContext,
    ) -> Result<HttpRequest, PluginError> {
        let (query, documents) = match item {
            PromptItem::Body(b) => return Ok(request(complete_body(b, &self.constants)?)),
            PromptItem::Text(t) => (t.to_string(), vec![String::new()]),
            PromptItem::Messages(ms) => {
                let mut texts = ms.iter().map(text_of);
                let query = texts.next().unwrap_or_default();
                (query, texts.collect())
            }
            PromptItem::TokenIds(_) => {
                return Err(PluginError::config(
                    "rerank takes a query and documents as text: drop --tokenize-prompt",
                ))
            }
            _ => {
                return Err(PluginError::invalid(
                    "rerank cannot take this kind of prompt",
                ))
            }
        };
        let mut body = self.constants.clone();
        body.insert("query".into(), json!(query));
        body.insert("documents".into(), json!(documents));
        Ok(request(Value::Object(body)))
    }

    fn new_decoder(&self) -> InputOnlyDecoder {
        InputOnlyDecoder
    }
}

/// The message of an answer's `error` object (or the object itself as text), when it has one.
pub(crate) fn error_message(answer: &Value) -> Option<String> {
    let e = answer.get("error").filter(|e| !e.is_null())?;
    Some(
        e.get("message")
            .and_then(Value::as_str)
            .map_or_else(|| e.to_string(), str::to_string),
    )
}

/// Decodes an embeddings or rerank answer: one (empty) output event, the input tokens, done;
/// an error object fails the request.
pub struct InputOnlyDecoder;

impl ResponseDecoderPlugin for InputOnlyDecoder {
    fn decode(&mut self, event: &[u8], out: &mut Vec<ResponseEvent>) -> Result<(), PluginError> {
        let v: Value = serde_json::from_slice(event)
            .map_err(|e| PluginError::invalid(format!("not a JSON answer: {e}")))?;
        if let Some(message) = error_message(&v) {
            out.push(ResponseEvent::Error(message.into()));
            return Ok(());
        }
        let answered = v.get("data").is_some_and(Value::is_array)
            || v.get("results").is_some_and(Value::is_array)
            || v.get("embeddings").is_some();
        if !answered {
            return Err(PluginError::invalid(
                "an answer without `data` (embeddings) or `results` (rerank)",
            ));
        }
        out.push(ResponseEvent::Output {
            text: "".into(),
            tokens: Some(0).into(),
            kind: OutputKind::Content,
        });
        let usage = v.get("usage");
        let n = |k: &str| usage.and_then(|u| u.get(k)).and_then(Value::as_u64);
        let input = n("prompt_tokens")
            .or_else(|| n("total_tokens"))
            .or_else(|| {
                // Cohere: meta.billed_units.search_units is not tokens; input_tokens is.
                v.get("meta")
                    .and_then(|m| m.get("billed_units"))
                    .and_then(|b| b.get("input_tokens"))
                    .and_then(Value::as_u64)
            });
        out.push(ResponseEvent::Usage(Usage {
            prompt_tokens: input.into(),
            completion_tokens: Some(0).into(),
            cached_tokens: None.into(),
            ..Usage::default()
        }));
        out.push(ResponseEvent::Done);
        Ok(())
    }
}
