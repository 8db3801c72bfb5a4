//! The text datasets' `--dataset-args` (evalscope's `TextLengthArgs`): fit real prompts to a
//! token length instead of filtering them, and fill the rest with a long real-text prefix.
//!
//! - `target_input_len` (tokens, needs `--tokenizer-path`): a longer prompt is cut to it (token
//!   ids decoded back); a shorter one is kept (`input_len_mode: cap`, the default) or skipped
//!   (`drop`). The `--min/--max-prompt-length` filter does not apply then.
//! - `prefix_file` (needs `target_input_len`, not with `drop`): the file's tokens, repeated as
//!   needed, fill `target_input_len` minus the prompt's content tokens, as a leading system
//!   message (`prefix_role: system`, with the chat template) or in front of the first message
//!   (`user`, or without the template). The prefix is exact to the token: it is measured,
//!   then cut or continued through the file until it is.

use perf_plugin_api::sdk::DatasetConfig;
use perf_plugin_api::{ChatMessage, DatasetItem, PluginError, PromptItem, TokenizerRef};
use serde::Deserialize;

use crate::tok::Tok;

/// Rounds of measuring and adjusting a prefix.
const ROUNDS: usize = 10;

/// The option keys of the text datasets.
pub(crate) const TEXT_KEYS: &[&str] = &[
    "target_input_len",
    "input_len_mode",
    "prefix_file",
    "prefix_role",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
enum Mode {
    #[default]
    Cap,
    Drop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
enum Role {
    #[default]
    System,
    User,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Knobs {
    #[serde(default)]
    target_input_len: Option<u64>,
    #[serde(default)]
    input_len_mode: Mode,
    #[serde(default)]
    prefix_file: Option<String>,
    #[serde(default)]
    prefix_role: Role,
}

/// Fitting prompts to `target_input_len`, with the prefix.
pub(crate) struct Fit {
    tok: Tok,
    target: usize,
    mode: Mode,
    prefix: Option<Vec<u32>>,
    role: Role,
    chat: bool,
}

impl Fit {
    /// The fit the options ask for, which takes the tokenizer; without `target_input_len`,
    /// none, and the tokenizer back.
    pub(crate) fn from_config(
        config: &DatasetConfig,
        tokenizer: Option<TokenizerRef>,
    ) -> Result<Result<Fit, Option<TokenizerRef>>, PluginError> {
        let knobs: Knobs = config.options()?;
        let Some(target) = knobs.target_input_len else {
            if knobs.prefix_file.is_some() {
                return Err(PluginError::config(
                    "--dataset-args prefix_file needs target_input_len (the length the prefix fills the prompt up to)",
                ));
            }
            return Ok(Err(tokenizer));
        };
        if target == 0 {
            return Err(PluginError::config(
                "--dataset-args target_input_len must be > 0",
            ));
        }
        if knobs.prefix_file.is_some() && knobs.input_len_mode == Mode::Drop {
            return Err(PluginError::config(
                "--dataset-args prefix_file cannot go with input_len_mode 'drop': drop keeps only prompts that already fill target_input_len, leaving the prefix nothing; use 'cap'",
            ));
        }
        let tok = Tok(tokenizer.ok_or_else(|| {
            PluginError::config("--dataset-args target_input_len needs --tokenizer-path")
        })?);
        let prefix = match &knobs.prefix_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    PluginError::config(format!("--dataset-args prefix_file {path}: {e}"))
                })?;
                let ids = tok.encode(&text, false)?;
                if ids.is_empty() {
                    return Err(PluginError::config(format!(
                        "--dataset-args prefix_file {path} is empty"
                    )));
                }
                Some(ids)
            }
            None => None,
        };
        Ok(Ok(Fit {
            tok,
            target: target as usize,
            mode: knobs.input_len_mode,
            prefix,
            role: knobs.prefix_role,
            chat: config.apply_chat_template,
        }))
    }

    /// Content tokens of `text` (no special tokens).
    fn len(&self, text: &str) -> Result<usize, PluginError> {
        Ok(self.tok.encode(text, false)?.len())
    }

    /// `text` cut to the target, or kept or skipped when shorter.
    pub(crate) fn fit_text(&self, text: &str) -> Result<Option<String>, PluginError> {
        let ids = self.tok.encode(text, false)?;
        if ids.len() > self.target {
            return self.tok.decode(&ids[..self.target]).map(Some);
        }
        if self.mode == Mode::Cap || ids.len() == self.target {
            return Ok(Some(text.to_string()));
        }
        Ok(None)
    }

    /// One prompt, fitted and prefixed; `None` when it is skipped.
    pub(crate) fn item(&self, text: &str) -> Result<Option<DatasetItem>, PluginError> {
        let Some(text) = self.fit_text(text)? else {
            return Ok(None);
        };
        if self.prefix.is_none() {
            return Ok(Some(DatasetItem::new(PromptItem::Text(text.into()))));
        }
        let messages = self.prefixed(vec![ChatMessage::text("user", &text)])?;
        if !self.chat {
            let joined: String = messages[0].texts().collect();
            return Ok(Some(DatasetItem::new(PromptItem::Text(joined.into()))));
        }
        Ok(Some(DatasetItem::new(PromptItem::Messages(
            messages.into(),
        ))))
    }

    /// A conversation ending on a user message: with a prefix, kept only when all of it fits
    /// the target, then filled up by the prefix; without, its last message is fitted.
    pub(crate) fn conversation(
        &self,
        mut messages: Vec<ChatMessage>,
    ) -> Result<Option<Vec<ChatMessage>>, PluginError> {
        if self.prefix.is_none() {
            let Some(last) = messages.last_mut() else {
                return Ok(None);
            };
            let text: String = last.texts().collect();
            let Some(fitted) = self.fit_text(&text)? else {
                return Ok(None);
            };
            *last = ChatMessage::text(&last.role.to_string(), &fitted);
            return Ok(Some(messages));
        }
        let mut total = 0;
        for m in &messages {
            total += self.len(&m.texts().collect::<String>())?;
        }
        if total > self.target {
            return Ok(None);
        }
        self.prefixed(messages).map(Some)
    }

    /// `messages` with the prefix filling the target: a leading system message (chat
    /// template, role system) or in front of the first message.
    fn prefixed(&self, mut messages: Vec<ChatMessage>) -> Result<Vec<ChatMessage>, PluginError> {
        let Some(pool) = &self.prefix else {
            return Ok(messages);
        };
        let mut used = 0;
        for m in &messages {
            used += self.len(&m.texts().collect::<String>())?;
        }
        let budget = self.target.saturating_sub(used);
        if budget == 0 {
            return Ok(messages);
        }
        let prefix = self.prefix_text(pool, budget)?;
        if self.role == Role::System && self.chat {
            messages.insert(0, ChatMessage::text("system", &prefix));
        } else if let Some(first) = messages.first_mut() {
            let text: String = first.texts().collect();
            *first = ChatMessage::text(&first.role.to_string(), &format!("{prefix}{text}"));
        }
        Ok(messages)
    }

    /// Text of exactly `budget` tokens from the prefix's tokens, repeated as needed.
    fn prefix_text(&self, pool: &[u32], budget: usize) -> Result<String, PluginError> {
        let tiled = |n: usize| -> Vec<u32> { pool.iter().copied().cycle().take(n).collect() };
        let mut take = budget;
        let mut text = self.tok.decode(&tiled(take))?;
        for _ in 0..ROUNDS {
            let n = self.len(&text)?;
            if n == budget {
                break;
            }
            // Neighbouring pieces merge or split when decoded: take fewer or more of the file.
            take = if n > budget {
                take.saturating_sub(n - budget).max(1)
            } else {
                take + (budget - n)
            };
            text = self.tok.decode(&tiled(take))?;
        }
        Ok(text)
    }
}
