//! The host's tokenizer (`--tokenizer-path`): Hugging Face `tokenizer.json` through the
//! `tokenizers` crate, plus the chat template of `tokenizer_config.json`, so that token counts
//! include the template exactly as a server applies it.
//!
//! Dataset sources get it as a [`TokenizerRef`] (the plugin interface's tokenizer); it never runs
//! on the threads that time responses.

mod template;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use perf_plugin_api::sdk::{tokenizer_ref, TokenizerPlugin};
use perf_plugin_api::{
    ChatMessage, ContentPart, DatasetItem, PluginError, PromptItem, TokenizerRef,
};
use serde_json::{Map, Value};

pub use template::ChatTemplate;

/// A loaded tokenizer with its special tokens and chat template. Clones share it.
#[derive(Clone)]
pub struct HostTokenizer(Arc<Loaded>);

struct Loaded {
    inner: tokenizers::Tokenizer,
    /// Indexed by id: whether the id is a special added token.
    special: Vec<bool>,
    vocab_size: u32,
    template: Option<ChatTemplate>,
}

/// Where a tokenizer's files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizerFiles {
    /// `tokenizer.json`.
    pub tokenizer: PathBuf,
    /// `tokenizer_config.json`, when present.
    pub config: Option<PathBuf>,
    /// `chat_template.jinja`, when present (newer layouts keep the template there).
    pub template: Option<PathBuf>,
}

impl TokenizerFiles {
    /// The files for `path`: a `tokenizer.json` file (its directory is searched for the rest)
    /// or a directory holding one.
    pub fn locate(path: &Path) -> Result<Self, String> {
        let (dir, tokenizer) = if path.is_dir() {
            let file = path.join("tokenizer.json");
            if !file.is_file() {
                return Err(format!(
                    "--tokenizer-path {}: the directory has no tokenizer.json; point at a directory holding tokenizer.json (and tokenizer_config.json for the chat template) or at the file itself",
                    path.display()
                ));
            }
            (path.to_path_buf(), file)
        } else if path.is_file() {
            let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
            (dir, path.to_path_buf())
        } else {
            return Err(format!(
                "--tokenizer-path {}: no such file or directory",
                path.display()
            ));
        };
        let existing = |name: &str| Some(dir.join(name)).filter(|p| p.is_file());
        Ok(TokenizerFiles {
            tokenizer,
            config: existing("tokenizer_config.json"),
            template: existing("chat_template.jinja"),
        })
    }
}

impl HostTokenizer {
    /// Loads the tokenizer at `path` (see [`TokenizerFiles::locate`]).
    pub fn load(path: &Path) -> Result<Self, String> {
        let files = TokenizerFiles::locate(path)?;
        let inner = tokenizers::Tokenizer::from_file(&files.tokenizer).map_err(|e| {
            format!(
                "{} is not a tokenizer.json the tokenizers library can load: {e}",
                files.tokenizer.display()
            )
        })?;
        let config = match &files.config {
            Some(p) => read_json(p)?,
            None => Value::Object(Map::new()),
        };
        let vocab_size = inner.get_vocab_size(true) as u32;
        let mut special = vec![false; vocab_size as usize];
        for (id, token) in inner.get_added_tokens_decoder() {
            if token.special {
                if let Some(slot) = special.get_mut(id as usize) {
                    *slot = true;
                }
            }
        }
        let source = match &files.template {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .map_err(|e| format!("cannot read {}: {e}", p.display()))?,
            ),
            None => template_source(&config),
        };
        let template = source
            .map(|s| ChatTemplate::new(s, special_token_vars(&config)))
            .transpose()
            .map_err(|e| format!("{}: {e}", files.tokenizer.display()))?;
        Ok(HostTokenizer(Arc::new(Loaded {
            inner,
            special,
            vocab_size,
            template,
        })))
    }

    /// The tokenizer `spec` names: a local `tokenizer.json` or a directory holding one, else
    /// (when no such path exists and it reads as `owner/name`) a model id whose tokenizer
    /// files are fetched from `data_source`'s hub into perf's cache.
    pub fn locate(spec: &str, data_source: &str) -> Result<Self, String> {
        let path = Path::new(spec);
        if path.exists() || !looks_like_model_id(spec) {
            return Self::load(path);
        }
        let source = perf_hub::Source::parse(data_source)?;
        let hub = perf_hub::Hub::from_env(source);
        let kind = perf_hub::Kind::Model;
        let fail = |e: perf_hub::HubError| {
            format!(
                "--tokenizer-path {spec}: no such path, and fetching it as a model id failed: {e}; pass a local tokenizer.json or its directory instead"
            )
        };
        let tokenizer = hub.fetch(kind, spec, "tokenizer.json").map_err(fail)?;
        hub.fetch_optional(kind, spec, "tokenizer_config.json")
            .map_err(fail)?;
        hub.fetch_optional(kind, spec, "chat_template.jinja")
            .map_err(fail)?;
        Self::load(&tokenizer)
    }

    /// Tokens the server counts for a prompt: the chat template applied to it as the one user
    /// message when `chat` and there is a template, else the text with special tokens.
    pub fn prompt_tokens(&self, text: &str, chat: bool) -> Result<usize, String> {
        let rendered = match (&self.0.template, chat) {
            (Some(t), true) => Some(t.render(&[ChatMessage::text("user", text)], true)?),
            _ => None,
        };
        let encoding = match &rendered {
            Some(r) => self.0.inner.encode_fast(r.as_str(), false),
            None => self.0.inner.encode_fast(text, true),
        };
        encoding
            .map(|e| e.get_ids().len())
            .map_err(|e| format!("cannot tokenize the prompt: {e}"))
    }

    /// Tokens the server counts for `item`'s prompt, for prompts that came without a count:
    /// text as [`Self::prompt_tokens`]; chat messages through the template with each message's
    /// text parts joined by newlines (all the text joined when there is no template), plus `ceil(width / patch) * ceil(height / patch)` tokens for each
    /// image, its size read from the data URL's image header. `None` when a part cannot be
    /// counted here (an image behind an http URL, a whole JSON body).
    pub fn item_tokens(
        &self,
        item: &DatasetItem,
        chat: bool,
        patch: u32,
    ) -> Result<Option<usize>, String> {
        let messages = match item.prompt() {
            Ok(PromptItem::Text(t)) => return self.prompt_tokens(t, chat).map(Some),
            Ok(PromptItem::TokenIds(ids)) => return Ok(Some(ids.len())),
            Ok(PromptItem::Messages(m)) => m,
            // A whole JSON body, or a kind of prompt this perf cannot count.
            _ => return Ok(None),
        };
        let mut images = 0usize;
        for part in messages.iter().flat_map(|m| m.parts()) {
            match part {
                Ok(ContentPart::Text(_)) => {}
                Ok(ContentPart::ImageUrl(url)) => match image_tokens(url, patch) {
                    Some(n) => images += n,
                    None => return Ok(None),
                },
                _ => return Ok(None),
            }
        }
        let text_of = |m: &ChatMessage| -> String { m.texts().collect::<Vec<_>>().join("\n") };
        let text = match (&self.0.template, chat) {
            (Some(t), true) => {
                // Each message's text parts joined into one string, as servers hand text-only
                // templates a multimodal message; the images count by patches instead.
                let flat: Vec<ChatMessage> = messages
                    .iter()
                    .map(|m| ChatMessage::text(m.role.as_str(), &text_of(m)))
                    .collect();
                let rendered = t.render(&flat, true)?;
                self.0.inner.encode_fast(rendered.as_str(), false)
            }
            _ => {
                let joined: Vec<String> = messages.iter().map(text_of).collect();
                self.0.inner.encode_fast(joined.join("\n").as_str(), true)
            }
        }
        .map_err(|e| format!("cannot tokenize the prompt: {e}"))?;
        Ok(Some(text.get_ids().len() + images))
    }

    /// Token ids of `messages` through the chat template (generation prompt included); without
    /// a template, their text joined, with special tokens.
    pub fn chat_ids(&self, messages: &[ChatMessage]) -> Result<Vec<u32>, String> {
        let encoding = match &self.0.template {
            Some(t) => {
                let rendered = t.render(messages, true)?;
                self.0.inner.encode_fast(rendered.as_str(), false)
            }
            None => {
                let joined: Vec<&str> = messages.iter().flat_map(|m| m.texts()).collect();
                self.0.inner.encode_fast(joined.join("\n").as_str(), true)
            }
        };
        encoding
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| format!("cannot tokenize the prompt: {e}"))
    }

    /// `--tokenize-prompt`: `item`'s prompt as token ids, as evalscope tokenizes it: chat
    /// messages (and text when `chat`, as the one user message) through the chat template,
    /// other text without special tokens. Token ids and whole bodies stay as they are; a
    /// prompt with images stays chat messages (an error says so).
    pub fn tokenize_item(&self, item: &mut DatasetItem, chat: bool) -> Result<(), String> {
        let ids = match item.prompt() {
            Ok(PromptItem::Text(t)) if chat => self.chat_ids(&[ChatMessage::text("user", t)])?,
            Ok(PromptItem::Text(t)) => self
                .0
                .inner
                .encode_fast(t.as_str(), false)
                .map_err(|e| format!("cannot tokenize the prompt: {e}"))?
                .get_ids()
                .to_vec(),
            Ok(PromptItem::Messages(ms)) => {
                let text_only = ms
                    .iter()
                    .flat_map(|m| m.parts())
                    .all(|p| matches!(p, Ok(ContentPart::Text(_))));
                if !text_only {
                    return Err(
                        "a prompt with images cannot be sent as token ids; it goes out as chat messages".into(),
                    );
                }
                self.chat_ids(ms)?
            }
            Ok(PromptItem::TokenIds(ids)) => {
                let n = ids.len() as u64;
                item.prompt_tokens = Some(n).into();
                return Ok(());
            }
            _ => return Ok(()),
        };
        item.prompt_tokens = Some(ids.len() as u64).into();
        *item = DatasetItem {
            prompt: perf_plugin_api::PromptItem_NE::new(PromptItem::TokenIds(ids.into())),
            prompt_tokens: item.prompt_tokens,
            ext: std::mem::take(&mut item.ext),
        };
        Ok(())
    }

    /// A handle for a dataset source (the interface's tokenizer type).
    pub fn handle(&self) -> TokenizerRef {
        tokenizer_ref(self.clone())
    }
}

/// Image tokens by patch count for a `data:image/...;base64,` URL; `None` for other URLs and
/// images whose size cannot be read.
fn image_tokens(url: &str, patch: u32) -> Option<usize> {
    use base64::Engine;
    let (head, data) = url.strip_prefix("data:")?.split_once(',')?;
    if !head.ends_with(";base64") {
        return None;
    }
    let decode = |b64: &str| base64::engine::general_purpose::STANDARD.decode(b64).ok();
    // The size sits near the start (after EXIF, at most 64 KiB, in a JPEG): decode that much
    // first, everything only when it was not there.
    let prefix = &data[..data.len().min(128 * 1024) / 4 * 4];
    let size = match imagesize::blob_size(&decode(prefix)?) {
        Ok(size) => size,
        Err(_) if prefix.len() < data.len() => imagesize::blob_size(&decode(data)?).ok()?,
        Err(_) => return None,
    };
    let patch = patch.max(1) as usize;
    Some(size.width.div_ceil(patch) * size.height.div_ceil(patch))
}

/// `owner/name`, as hub model ids are written.
fn looks_like_model_id(spec: &str) -> bool {
    let mut parts = spec.split('/');
    let (Some(owner), Some(name), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    !owner.is_empty() && !name.is_empty() && !owner.starts_with('.')
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{} is not valid JSON: {e}", path.display()))
}

/// `chat_template` of a tokenizer config: a string, or a list of named templates (the one named
/// `default` is used).
fn template_source(config: &Value) -> Option<String> {
    match config.get("chat_template")? {
        Value::String(s) => Some(s.clone()),
        Value::Array(named) => named
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
            .or_else(|| named.first())
            .and_then(|t| t.get("template"))
            .and_then(Value::as_str)
            .map(str::to_string),
        _ => None,
    }
}

/// The special-token variables templates use, as strings (a config may write a token as
/// `{"content": "<s>", ...}`).
fn special_token_vars(config: &Value) -> Map<String, Value> {
    let mut vars = Map::new();
    for name in ["bos_token", "eos_token", "pad_token", "unk_token"] {
        let value = match config.get(name) {
            Some(Value::String(s)) => Value::String(s.clone()),
            Some(Value::Object(o)) => o.get("content").cloned().unwrap_or(Value::Null),
            _ => Value::Null,
        };
        vars.insert(name.to_string(), value);
    }
    vars
}

fn err(e: impl std::fmt::Display) -> PluginError {
    PluginError::invalid(e.to_string())
}

impl TokenizerPlugin for HostTokenizer {
    fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, PluginError> {
        let encoding = self
            .0
            .inner
            .encode_fast(text, add_special_tokens)
            .map_err(err)?;
        Ok(encoding.get_ids().to_vec())
    }

    fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, PluginError> {
        self.0.inner.decode(ids, skip_special_tokens).map_err(err)
    }

    fn vocab_size(&self) -> u32 {
        self.0.vocab_size
    }

    fn id_to_token(&self, id: u32) -> Option<String> {
        self.0.inner.id_to_token(id)
    }

    fn is_special(&self, id: u32) -> bool {
        self.0.special.get(id as usize).copied().unwrap_or(false)
    }

    fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<Option<String>, PluginError> {
        match &self.0.template {
            None => Ok(None),
            Some(t) => t
                .render(messages, add_generation_prompt)
                .map(Some)
                .map_err(PluginError::invalid),
        }
    }
}
