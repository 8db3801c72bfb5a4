//! Request bodies, as evalscope perf 1.14.1 builds them:
//!
//! - a text prompt becomes `messages: [{role: user, content}]` when the chat template applies,
//!   else `prompt` (completions);
//! - chat messages go in `messages` (a lone text part as a plain string, otherwise OpenAI
//!   content parts with `image_url`);
//! - token ids go in `prompt` as a list;
//! - a complete body gets the run's parameters only where it lacks the key;
//! - `--query-template` is the skeleton: the prompt replaces its `messages`/`prompt`, then the
//!   parameters overwrite it, then `--extra-args` overwrite everything.
//!
//! Everything but the prompt and `max_tokens` is the same for every request, so it is
//! serialised once and spliced in; a request costs one serialisation of its prompt.

use perf_plugin_api::sdk::ApiConfig;
use perf_plugin_api::{ChatMessage, ContentPart, PluginError, PromptItem, RequestContext};
use serde_json::{json, Map, Value};

pub(crate) struct BodyBuilder {
    chat: bool,
    /// The constant members, serialised without the enclosing braces.
    fixed: String,
    /// The same members as a map, for complete bodies that only take missing keys.
    params: Map<String, Value>,
    /// Whether `max_tokens` is written per request (false when `--extra-args` sets it).
    per_request_max_tokens: bool,
    default_max_tokens: Option<u32>,
}

fn put<T: Into<Value>>(map: &mut Map<String, Value>, key: &str, value: Option<T>) {
    if let Some(v) = value {
        map.insert(key.to_string(), v.into());
    }
}

fn parameters(config: &ApiConfig) -> Map<String, Value> {
    let mut p = Map::new();
    p.insert("model".into(), Value::String(config.model.clone()));
    put(&mut p, "min_tokens", config.min_tokens);
    put(&mut p, "frequency_penalty", config.frequency_penalty);
    put(&mut p, "repetition_penalty", config.repetition_penalty);
    put(&mut p, "logprobs", config.logprobs);
    put(&mut p, "n", config.n_choices);
    put(&mut p, "seed", config.seed);
    put(&mut p, "stop", config.stop.clone());
    p.insert("stream".into(), Value::Bool(config.stream));
    if config.stream {
        p.insert("stream_options".into(), json!({"include_usage": true}));
    }
    put(&mut p, "stop_token_ids", config.stop_token_ids.clone());
    put(&mut p, "temperature", config.temperature);
    put(&mut p, "top_p", config.top_p);
    put(&mut p, "top_k", config.top_k);
    p
}

fn fragment(map: &Map<String, Value>) -> Result<String, PluginError> {
    let whole = serde_json::to_string(map)
        .map_err(|e| PluginError::config(format!("cannot serialise the request body: {e}")))?;
    // "{...}" -> "..."
    Ok(whole[1..whole.len() - 1].to_string())
}

impl BodyBuilder {
    pub(crate) fn new(config: &ApiConfig) -> Result<Self, PluginError> {
        if config.model.trim().is_empty() {
            return Err(PluginError::config(
                "no model name: pass --model with the name the server serves",
            ));
        }
        let mut fixed = match &config.query_template {
            None => Map::new(),
            Some(Value::Object(template)) => template.clone(),
            Some(other) => {
                return Err(PluginError::config(format!(
                    "--query-template must be a JSON object, got {}",
                    kind_of(other)
                )))
            }
        };
        fixed.remove("messages");
        fixed.remove("prompt");
        fixed.remove("max_tokens");
        let params = parameters(config);
        for (k, v) in &params {
            fixed.insert(k.clone(), v.clone());
        }
        let per_request_max_tokens = !config.extra_args.contains_key("max_tokens");
        for (k, v) in &config.extra_args {
            fixed.insert(k.clone(), v.clone());
        }
        if !config.stream {
            fixed.remove("stream_options");
        }
        let mut all_params = params;
        for (k, v) in &config.extra_args {
            all_params.insert(k.clone(), v.clone());
        }
        Ok(BodyBuilder {
            chat: config.apply_chat_template,
            fixed: fragment(&fixed)?,
            params: all_params,
            per_request_max_tokens,
            default_max_tokens: config.max_tokens,
        })
    }

    pub(crate) fn build(
        &self,
        item: &PromptItem,
        ctx: &RequestContext,
    ) -> Result<Vec<u8>, PluginError> {
        let max_tokens = ctx.max_tokens.into_option().or(self.default_max_tokens);
        let prompt_member = match item {
            PromptItem::Body(text) => return self.fill_body(text, max_tokens),
            PromptItem::Text(text) if self.chat => {
                let messages = json!([{"role": "user", "content": text.as_str()}]);
                ("messages", messages)
            }
            PromptItem::Text(text) => ("prompt", Value::String(text.to_string())),
            PromptItem::Messages(messages) => ("messages", messages_json(messages)?),
            PromptItem::TokenIds(ids) => ("prompt", json!(ids.as_slice())),
            _ => {
                return Err(PluginError::invalid(
                    "this kind of prompt has no OpenAI form",
                ))
            }
        };
        let mut out = Vec::with_capacity(self.fixed.len() + 256);
        out.push(b'{');
        write_member(&mut out, prompt_member.0, &prompt_member.1)?;
        if let (true, Some(n)) = (self.per_request_max_tokens, max_tokens) {
            out.extend_from_slice(b",\"max_tokens\":");
            out.extend_from_slice(n.to_string().as_bytes());
        }
        if !self.fixed.is_empty() {
            out.push(b',');
            out.extend_from_slice(self.fixed.as_bytes());
        }
        out.push(b'}');
        Ok(out)
    }

    fn fill_body(&self, text: &str, max_tokens: Option<u32>) -> Result<Vec<u8>, PluginError> {
        let mut body: Map<String, Value> = serde_json::from_str(text).map_err(|e| {
            PluginError::invalid(format!("a dataset body is not a JSON object: {e}"))
        })?;
        for (k, v) in &self.params {
            body.entry(k.clone()).or_insert_with(|| v.clone());
        }
        if let Some(n) = max_tokens {
            body.entry("max_tokens").or_insert(Value::from(n));
        }
        if body.get("stream") != Some(&Value::Bool(true)) {
            body.remove("stream_options");
        }
        serde_json::to_vec(&body)
            .map_err(|e| PluginError::invalid(format!("cannot serialise a dataset body: {e}")))
    }
}

fn write_member(out: &mut Vec<u8>, key: &str, value: &Value) -> Result<(), PluginError> {
    out.push(b'"');
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
    serde_json::to_writer(&mut *out, value)
        .map_err(|e| PluginError::invalid(format!("cannot serialise the prompt: {e}")))
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// OpenAI chat messages: a lone text part is sent as a plain string, anything else as parts.
pub(crate) fn messages_json(messages: &[ChatMessage]) -> Result<Value, PluginError> {
    let message = |m: &ChatMessage| -> Result<Value, PluginError> {
        let parts = m.parts().collect::<Result<Vec<_>, _>>()?;
        let content = match parts.as_slice() {
            [ContentPart::Text(t)] => Value::String(t.to_string()),
            parts => Value::Array(
                parts
                    .iter()
                    .map(|p| match p {
                        ContentPart::Text(t) => Ok(json!({"type": "text", "text": t.as_str()})),
                        ContentPart::ImageUrl(u) => {
                            Ok(json!({"type": "image_url", "image_url": {"url": u.as_str()}}))
                        }
                        _ => Err(PluginError::invalid(
                            "OpenAI chat messages take text and image parts only",
                        )),
                    })
                    .collect::<Result<_, _>>()?,
            ),
        };
        Ok(json!({"role": m.role.as_str(), "content": content}))
    };
    messages
        .iter()
        .map(message)
        .collect::<Result<_, _>>()
        .map(Value::Array)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(stream: bool) -> ApiConfig {
        ApiConfig {
            model: "m".into(),
            stream,
            max_tokens: Some(2048),
            temperature: Some(0.0),
            apply_chat_template: true,
            ..ApiConfig::default()
        }
    }

    fn ctx(max_tokens: Option<u32>) -> RequestContext {
        RequestContext {
            index: 0,
            max_tokens: max_tokens.into(),
            ext: Default::default(),
        }
    }

    fn build(b: &BodyBuilder, item: PromptItem, max: Option<u32>) -> Value {
        let bytes = b.build(&item, &ctx(max)).expect("body");
        serde_json::from_slice(&bytes).expect("valid json")
    }

    #[test]
    fn text_becomes_one_user_message_with_every_parameter() {
        let b = BodyBuilder::new(&config(true)).expect("builder");
        let body = build(&b, PromptItem::Text("hi".into()), None);
        assert_eq!(
            body,
            json!({"messages": [{"role": "user", "content": "hi"}], "model": "m",
                   "max_tokens": 2048, "stream": true, "stream_options": {"include_usage": true},
                   "temperature": 0.0})
        );
    }

    #[test]
    fn completions_style_text_and_token_ids_use_prompt() {
        let mut c = config(false);
        c.apply_chat_template = false;
        let b = BodyBuilder::new(&c).expect("builder");
        let body = build(&b, PromptItem::Text("hi".into()), Some(7));
        assert_eq!(body["prompt"], "hi");
        assert_eq!(body["max_tokens"], 7);
        assert!(body.get("stream_options").is_none());
        let body = build(&b, PromptItem::TokenIds(vec![1, 2, 3].into()), None);
        assert_eq!(body["prompt"], json!([1, 2, 3]));
    }

    #[test]
    fn extra_args_override_parameters_and_max_tokens() {
        let mut c = config(true);
        c.extra_args =
            serde_json::from_str(r#"{"ignore_eos": true, "max_tokens": 5, "temperature": 1.5}"#)
                .expect("map");
        let b = BodyBuilder::new(&c).expect("builder");
        let body = build(&b, PromptItem::Text("hi".into()), Some(99));
        assert_eq!(body["ignore_eos"], true);
        assert_eq!(body["max_tokens"], 5);
        assert_eq!(body["temperature"], 1.5);
    }

    #[test]
    fn query_template_is_the_skeleton_and_parameters_overwrite_it() {
        let mut c = config(true);
        c.query_template = Some(json!({"messages": [], "temperature": 0.7, "user": "bench"}));
        let b = BodyBuilder::new(&c).expect("builder");
        let body = build(&b, PromptItem::Text("hi".into()), None);
        assert_eq!(body["user"], "bench");
        assert_eq!(body["temperature"], 0.0);
        assert_eq!(body["messages"][0]["content"], "hi");
    }

    #[test]
    fn complete_bodies_only_take_missing_parameters() {
        let b = BodyBuilder::new(&config(false)).expect("builder");
        let item = PromptItem::Body(
            r#"{"messages": [], "temperature": 0.9, "stream_options": {}}"#.into(),
        );
        let body = build(&b, item, None);
        assert_eq!(body["temperature"], 0.9);
        assert_eq!(body["model"], "m");
        assert_eq!(body["max_tokens"], 2048);
        assert!(body.get("stream_options").is_none());
    }

    #[test]
    fn image_parts_become_openai_content_parts() {
        let b = BodyBuilder::new(&config(true)).expect("builder");
        let msg = ChatMessage::new(
            "user",
            [
                ContentPart::ImageUrl("data:image/png;base64,AAAA".into()),
                ContentPart::Text("what is this".into()),
            ],
        );
        let body = build(&b, PromptItem::Messages(vec![msg].into()), None);
        assert_eq!(
            body["messages"][0]["content"][0]["image_url"]["url"],
            "data:image/png;base64,AAAA"
        );
        assert_eq!(body["messages"][0]["content"][1]["type"], "text");
    }

    #[test]
    fn missing_model_and_bad_template_are_config_errors() {
        let mut c = config(true);
        c.model = String::new();
        assert!(BodyBuilder::new(&c).is_err());
        let mut c = config(true);
        c.query_template = Some(json!([1]));
        let err = BodyBuilder::new(&c).err().expect("error");
        assert!(err.message.contains("JSON object"), "{}", err.message);
    }
}
