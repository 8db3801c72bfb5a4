//! An API adapter for the Acme Inference API, an imaginary vendor API that does not look like
//! OpenAI's: it takes `POST /v2/generate` with its own field names and streams its answer as
//! newline-delimited JSON, one object per line:
//!
//! ```text
//! {"type":"token","token":{"text":"Hel","count":1}}
//! {"type":"token","token":{"text":"lo","count":1}}
//! {"type":"stats","input_tokens":12,"output_tokens":2,"cache_hit_tokens":0}
//! {"type":"end"}
//! ```
//!
//! or `{"type":"failure","reason":"..."}` when generation fails. Without streaming the whole
//! answer comes back as one `{"text": ..., "stats": {...}}` object.
//!
//! Options (`--api-args`): `{"priority": "low" | "normal" | "high"}` (default `normal`).

use perf_plugin_api::sdk::{ApiAdapterPlugin, ApiConfig, ResponseDecoderPlugin};
use perf_plugin_api::{
    ContentPart, Framing, HttpRequest, OutputKind, PluginError, PromptForm, PromptItem,
    RequestContext, ResponseEvent, Usage,
};
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    #[serde(default = "normal")]
    priority: String,
}

fn normal() -> String {
    "normal".into()
}

/// The adapter, created once per run.
pub struct AcmeAdapter {
    model: String,
    stream: bool,
    max_tokens: Option<u32>,
    temperature: Option<f64>,
    priority: String,
}

impl ApiAdapterPlugin for AcmeAdapter {
    const ID: &'static str = "acme";
    const DESCRIPTION: &'static str = "Acme Inference API (/v2/generate, NDJSON streaming)";
    // `--url https://acme.example` becomes `https://acme.example/v2/generate`.
    const ENDPOINTS: &'static [&'static str] = &["v2/generate"];
    // The API takes one text; chat messages are joined.
    const PROMPT_FORM: PromptForm = PromptForm::Text;
    const OPTION_KEYS: Option<&'static [&'static str]> = Some(&["priority"]);
    const OPTIONS_EXAMPLE: &'static str = r#"{"priority": "high"}"#;
    type Decoder = AcmeDecoder;

    fn new(config: &ApiConfig) -> Result<Self, PluginError> {
        let options: Options = config.options()?;
        if !["low", "normal", "high"].contains(&options.priority.as_str()) {
            return Err(PluginError::config(format!(
                "priority must be low, normal or high, not '{}'",
                options.priority
            )));
        }
        if config.model.is_empty() {
            return Err(PluginError::config(
                "the Acme API needs an engine name: pass --model",
            ));
        }
        Ok(AcmeAdapter {
            model: config.model.clone(),
            stream: config.stream,
            max_tokens: config.max_tokens,
            temperature: config.temperature,
            priority: options.priority,
        })
    }

    fn build_request(
        &self,
        item: &PromptItem,
        ctx: &RequestContext,
    ) -> Result<HttpRequest, PluginError> {
        let text = match item {
            PromptItem::Text(t) => t.to_string(),
            PromptItem::Messages(messages) => {
                let mut texts = Vec::new();
                for part in messages.iter().flat_map(|m| m.parts()) {
                    match part? {
                        ContentPart::Text(t) => texts.push(t.as_str()),
                        _ => {
                            return Err(PluginError::invalid(
                                "the Acme API takes text only; drop the images",
                            ))
                        }
                    }
                }
                texts.join("\n")
            }
            other => {
                return Err(PluginError::invalid(format!(
                    "the Acme API takes text prompts only, not {other:?}"
                )))
            }
        };
        let body = json!({
            "engine": self.model,
            "input": {"text": text},
            "generation": {
                "max_new_tokens": ctx.max_tokens.into_option().or(self.max_tokens),
                "temperature": self.temperature,
            },
            "priority": self.priority,
            "stream": self.stream,
        });
        let body = serde_json::to_vec(&body).map_err(|e| PluginError::invalid(e.to_string()))?;
        // Streamed answers are one JSON object per line.
        let framing = if self.stream {
            Framing::NdJson
        } else {
            Framing::None
        };
        Ok(HttpRequest::json_post(body, framing))
    }

    fn new_decoder(&self) -> AcmeDecoder {
        AcmeDecoder
    }
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Line {
    Token { token: Token },
    Stats(Stats),
    End,
    Failure { reason: String },
}

#[derive(Deserialize)]
struct Token {
    text: String,
    #[serde(default)]
    count: Option<u32>,
}

#[derive(Deserialize)]
struct Stats {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_hit_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct Whole {
    text: String,
    stats: Option<Stats>,
}

impl From<Stats> for ResponseEvent {
    fn from(s: Stats) -> Self {
        ResponseEvent::Usage(Usage {
            prompt_tokens: s.input_tokens.into(),
            completion_tokens: s.output_tokens.into(),
            cached_tokens: s.cache_hit_tokens.into(),
            ext: Default::default(),
        })
    }
}

/// Decodes one Acme response.
pub struct AcmeDecoder;

impl ResponseDecoderPlugin for AcmeDecoder {
    fn decode(&mut self, event: &[u8], out: &mut Vec<ResponseEvent>) -> Result<(), PluginError> {
        if let Ok(line) = serde_json::from_slice::<Line>(event) {
            out.push(match line {
                Line::Token { token } => ResponseEvent::Output {
                    text: token.text.into(),
                    tokens: token.count.into(),
                    kind: OutputKind::Content,
                },
                Line::Stats(stats) => stats.into(),
                Line::End => ResponseEvent::Done,
                Line::Failure { reason } => ResponseEvent::Error(reason.into()),
            });
            return Ok(());
        }
        let whole: Whole = serde_json::from_slice(event)
            .map_err(|e| PluginError::invalid(format!("not an Acme response line: {e}")))?;
        out.push(ResponseEvent::Output {
            text: whole.text.into(),
            tokens: perf_plugin_api::ROption::RNone,
            kind: OutputKind::Content,
        });
        if let Some(stats) = whole.stats {
            out.push(stats.into());
        }
        Ok(())
    }
}

perf_plugin_api::export_plugins! {
    ApiAdapter: AcmeAdapter,
}
