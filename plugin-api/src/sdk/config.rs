//! The configuration each plugin kind receives, as the host serialises it.
//!
//! The host sends JSON; the SDK parses it into these structs before it calls your constructor.
//! Every field has a default and unknown fields are ignored, so a plugin built against this
//! version keeps loading when a later host sends more fields. Plugin-specific settings live in
//! `options`, which comes verbatim from the user (`--api-args`, `--dataset-args`,
//! `--sink ID=JSON`); read it with the typed `options()` helpers.

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::types::PluginError;

fn typed_options<T: DeserializeOwned>(options: &Value) -> Result<T, PluginError> {
    let value = if options.is_null() {
        Value::Object(Map::new())
    } else {
        options.clone()
    };
    serde_json::from_value(value).map_err(|e| PluginError::config(format!("invalid options: {e}")))
}

/// Parses a configuration document, naming the plugin in the error.
pub(crate) fn parse<T: DeserializeOwned>(plugin_id: &str, json: &str) -> Result<T, PluginError> {
    let json = if json.trim().is_empty() { "{}" } else { json };
    serde_json::from_str(json).map_err(|e| {
        PluginError::config(format!(
            "configuration of plugin '{plugin_id}' is invalid: {e}"
        ))
    })
}

/// The request settings of a run, given to API adapters. Mirrors the generation flags of the
/// command line; `None` means the flag was not given and the field must not be sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ApiConfig {
    /// `--url`: the endpoint.
    pub url: String,
    /// `--model`: the model name sent in the body.
    pub model: String,
    /// `--stream` / `--no-stream`.
    pub stream: bool,
    /// `--max-tokens` (the per-request value in `RequestContext` wins when set).
    pub max_tokens: Option<u32>,
    /// `--min-tokens`.
    pub min_tokens: Option<u32>,
    /// `--temperature`.
    pub temperature: Option<f64>,
    /// `--top-p`.
    pub top_p: Option<f64>,
    /// `--top-k`.
    pub top_k: Option<i64>,
    /// `--stop`.
    pub stop: Option<Vec<String>>,
    /// `--stop-token-ids`.
    pub stop_token_ids: Option<Vec<u32>>,
    /// `--seed`.
    pub seed: Option<i64>,
    /// `--n-choices`.
    pub n_choices: Option<u32>,
    /// `--logprobs`.
    pub logprobs: Option<bool>,
    /// `--frequency-penalty`.
    pub frequency_penalty: Option<f64>,
    /// `--repetition-penalty`.
    pub repetition_penalty: Option<f64>,
    /// `--extra-args`: merged into the body last.
    pub extra_args: Map<String, Value>,
    /// `--query-template`: a body skeleton (already loaded from `@file`).
    pub query_template: Option<Value>,
    /// `--apply-chat-template`, resolved (auto = the URL ends in `chat/completions`).
    pub apply_chat_template: bool,
    /// `--tokenize-prompt`.
    pub tokenize_prompt: bool,
    /// Plugin-specific options (`--api-args`).
    pub options: Value,
}

impl ApiConfig {
    /// `options` parsed into `T`.
    pub fn options<T: DeserializeOwned>(&self) -> Result<T, PluginError> {
        typed_options(&self.options)
    }
}

/// The prompt settings of a run, given to dataset sources.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DatasetConfig {
    /// `--dataset-path`.
    pub dataset_path: Option<String>,
    /// `--data-source`: `modelscope`, `huggingface` or `local`.
    pub data_source: String,
    /// `--min-prompt-length` (tokens with a tokenizer, else characters).
    pub min_prompt_length: u64,
    /// `--max-prompt-length`.
    pub max_prompt_length: u64,
    /// `--prefix-length` (random datasets).
    pub prefix_length: u64,
    /// `--prefix-count` (random datasets).
    pub prefix_count: u64,
    /// Whether prompts become chat messages.
    pub apply_chat_template: bool,
    /// `--tokenize-prompt`.
    pub tokenize_prompt: bool,
    /// `--dataset-offset`.
    pub dataset_offset: u64,
    /// `--seed`.
    pub seed: Option<u64>,
    /// `--image-width`, `--image-height`, `--image-format`, `--image-num` (random_vl).
    pub image_width: u32,
    /// See `image_width`.
    pub image_height: u32,
    /// See `image_width`.
    pub image_format: String,
    /// See `image_width`.
    pub image_num: u32,
    /// `--image-patch-size`: an image of w x h pixels counts `ceil(w / p) * ceil(h / p)` prompt
    /// tokens where a count includes images.
    pub image_patch_size: u32,
    /// Plugin-specific options (`--dataset-args`).
    pub options: Value,
    /// `--multi-turn`: the run sends conversations (since 0.2.2).
    pub multi_turn: bool,
    /// `--min-turns` (since 0.2.2).
    pub min_turns: u32,
    /// `--max-turns` (since 0.2.2).
    pub max_turns: Option<u32>,
}

impl Default for DatasetConfig {
    fn default() -> Self {
        DatasetConfig {
            dataset_path: None,
            data_source: "modelscope".into(),
            min_prompt_length: 0,
            max_prompt_length: 131_072,
            prefix_length: 0,
            prefix_count: 1,
            apply_chat_template: true,
            tokenize_prompt: false,
            dataset_offset: 0,
            seed: None,
            image_width: 224,
            image_height: 224,
            image_format: "RGB".into(),
            image_num: 1,
            image_patch_size: 28,
            options: Value::Null,
            multi_turn: false,
            min_turns: 1,
            max_turns: None,
        }
    }
}

impl DatasetConfig {
    /// `options` parsed into `T`.
    pub fn options<T: DeserializeOwned>(&self) -> Result<T, PluginError> {
        typed_options(&self.options)
    }
}

/// The configuration of a result sink.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SinkConfig {
    /// Plugin-specific options (`--sink ID=JSON`).
    pub options: Value,
}

impl SinkConfig {
    /// `options` parsed into `T`.
    pub fn options<T: DeserializeOwned>(&self) -> Result<T, PluginError> {
        typed_options(&self.options)
    }
}

/// The configuration of a local model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelConfig {
    /// Plugin-specific options.
    pub options: Value,
}

impl ModelConfig {
    /// `options` parsed into `T`.
    pub fn options<T: DeserializeOwned>(&self) -> Result<T, PluginError> {
        typed_options(&self.options)
    }
}
