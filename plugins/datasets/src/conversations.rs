//! Conversation datasets, with evalscope's names and reading rules:
//!
//! - `custom_multi_turn`: JSON lines, each a conversation as an array of chat messages; the
//!   assistant messages separate the turns and are dropped (the run sends the live replies).
//!   perf also reads a `max_tokens` on a user message as that turn's output budget, and a
//!   `rid` on any message as the conversation's routing key (each turn's body gets
//!   `"rid": "<rid>_t<turn>"`, as SGLang routes conversations).
//! - `share_gpt_zh_multi_turn` / `share_gpt_en_multi_turn`: swift/sharegpt conversations, one
//!   turn per `human` message (the reference replies are dropped), at most `--max-turns`; the
//!   length filter reads the first message.
//! - `share_gpt_zh` / `share_gpt_en`: the same files as one request each, the history with
//!   its reference replies ending on the last `human` message; the length filter reads that
//!   message.
//! - `swe_smith`: SWE-smith agent conversations, turn by turn: evalscope's pre-built
//!   `agentic_dataset.json`, or built live from the trajectories (`swe.rs`).
//!
//! Turn boundaries travel as the item's turn ends (`DatasetItem::conversation`).

use std::fs::File;
use std::io::{BufReader, Lines};

use perf_plugin_api::sdk::{DatasetConfig, DatasetSourcePlugin};
use perf_plugin_api::{ChatMessage, DatasetItem, PluginError, PromptItem, TokenizerRef};
use serde::Deserialize;
use serde_json::Value;

use crate::extras::Extras;
use crate::files::{line_text, open, LengthFilter};
use crate::fit::TEXT_KEYS;
use crate::tok::Tok;
use crate::{path_or_hub, required_path, HubFile};

/// Option keys of the multi-turn datasets (evalscope's `MultiTurnDatasetArgs`).
pub(crate) const MULTI_TURN_KEYS: &[&str] = &[
    "first_turn_length",
    "subsequent_turn_length",
    "chars_per_token",
    "num_workers",
    // perf's (`extras.rs`).
    "turn_max_tokens",
    "system_prompt_tokens",
];

/// Refuses a conversation dataset in a run without `--multi-turn`.
pub(crate) fn needs_multi_turn(config: &DatasetConfig, id: &str) -> Result<(), PluginError> {
    if config.multi_turn {
        Ok(())
    } else {
        Err(PluginError::config(format!(
            "the {id} dataset yields conversations: add --multi-turn (and --max-turns to cap them)"
        )))
    }
}

/// `custom_multi_turn`.
pub struct CustomMultiTurn {
    lines: Lines<BufReader<File>>,
    path: String,
    line_no: u64,
    extras: Extras,
}

/// One message of a `custom_multi_turn` line.
#[derive(Deserialize)]
struct Message {
    role: String,
    content: Value,
    /// perf: this user turn's output budget.
    #[serde(default)]
    max_tokens: Option<u64>,
    /// perf: the conversation's routing key (on any message; SGLang's `rid`).
    #[serde(default)]
    rid: Option<String>,
}

impl DatasetSourcePlugin for CustomMultiTurn {
    const ID: &'static str = "custom_multi_turn";
    const DESCRIPTION: &'static str =
        "conversations from --dataset-path: JSON lines, each an array of chat messages split into turns at the assistant messages (needs --multi-turn)";
    const OPTION_KEYS: Option<&'static [&'static str]> = Some(MULTI_TURN_KEYS);

    fn new(config: &DatasetConfig, tokenizer: Option<TokenizerRef>) -> Result<Self, PluginError> {
        needs_multi_turn(config, Self::ID)?;
        let extras = Extras::from_config(config, tokenizer.map(Tok).as_ref())?;
        let path = required_path(
            config,
            Self::ID,
            "a .jsonl file, each line a JSON array of chat messages",
        )?;
        Ok(CustomMultiTurn {
            lines: open(&path)?,
            path,
            line_no: 0,
            extras,
        })
    }

    fn next_item(&mut self) -> Result<Option<DatasetItem>, PluginError> {
        for line in self.lines.by_ref() {
            self.line_no += 1;
            let line = line_text(line, &self.path, self.line_no)?;
            if line.trim().is_empty() {
                continue;
            }
            let at = format!("{}:{}", self.path, self.line_no);
            let messages: Vec<Message> = serde_json::from_str(line.trim()).map_err(|e| {
                PluginError::invalid(format!(
                    "{at}: not a JSON array of chat messages ({{\"role\": ..., \"content\": ...}}): {e}"
                ))
            })?;
            return conversation(messages, &at).map(|item| Some(self.extras.apply(item)));
        }
        Ok(None)
    }
}

/// A `custom_multi_turn` line as a conversation: turns between the assistant messages.
fn conversation(messages: Vec<Message>, at: &str) -> Result<DatasetItem, PluginError> {
    let mut turns: Vec<Vec<ChatMessage>> = Vec::new();
    let mut budgets: Vec<u64> = Vec::new();
    let mut current: Vec<ChatMessage> = Vec::new();
    let mut budget = 0;
    let key = messages.iter().find_map(|m| m.rid.clone());
    for m in messages {
        if m.role == "assistant" {
            if !current.is_empty() {
                turns.push(std::mem::take(&mut current));
                budgets.push(std::mem::take(&mut budget));
            }
            continue;
        }
        if let Some(b) = m.max_tokens {
            budget = b;
        }
        current.push(
            crate::files::chat_message(&m.role, m.content)
                .map_err(|e| PluginError::invalid(format!("{at}: {e}")))?,
        );
    }
    if !current.is_empty() {
        turns.push(current);
        budgets.push(budget);
    }
    if turns.is_empty() {
        return Err(PluginError::invalid(format!(
            "{at}: the conversation has no user message"
        )));
    }
    let mut item = DatasetItem::conversation(turns);
    if budgets.iter().any(|&b| b > 0) {
        item.set_turn_max_tokens(budgets);
    }
    if let Some(key) = key {
        item.set_conversation_key(&key);
    }
    Ok(item)
}

/// One exchange of a swift/sharegpt line.
#[derive(Deserialize)]
struct Exchange {
    #[serde(default)]
    human: String,
    #[serde(default)]
    assistant: String,
}

#[derive(Deserialize)]
struct ShareGptLine {
    #[serde(default)]
    conversation: Vec<Exchange>,
}

/// Where the ShareGPT files live: swift/sharegpt on ModelScope, its Hugging Face mirror.
fn share_gpt_file(
    config: &DatasetConfig,
    id: &str,
    file: &'static str,
    hf_file: &'static str,
) -> Result<String, PluginError> {
    path_or_hub(
        config,
        id,
        &HubFile {
            modelscope: "swift/sharegpt",
            huggingface: "shareAI/ShareGPT-Chinese-English-90k",
            file,
            huggingface_file: Some(hf_file),
        },
        "a .jsonl file of swift/sharegpt lines: {\"conversation\": [{\"human\": ..., \"assistant\": ...}]}",
    )
}

/// The ShareGPT datasets: one reader, four readings.
pub struct ShareGpt {
    lines: Lines<BufReader<File>>,
    path: String,
    line_no: u64,
    filter: LengthFilter,
    /// Conversations (user turns only) instead of one request with the history.
    multi_turn: bool,
    max_turns: Option<u32>,
    extras: Extras,
}

impl ShareGpt {
    fn open(
        config: &DatasetConfig,
        tokenizer: Option<TokenizerRef>,
        id: &str,
        zh: bool,
        multi_turn: bool,
    ) -> Result<Self, PluginError> {
        if multi_turn {
            needs_multi_turn(config, id)?;
        }
        let (file, hf_file) = if zh {
            ("common_zh_70k.jsonl", "sharegpt_jsonl/common_zh_70k.jsonl")
        } else {
            ("common_en_70k.jsonl", "sharegpt_jsonl/common_en_70k.jsonl")
        };
        let tok = tokenizer.map(Tok);
        let extras = if multi_turn {
            Extras::from_config(config, tok.as_ref())?
        } else {
            Extras::default()
        };
        let tokenizer = tok.map(|t| t.0);
        let filter = if multi_turn {
            LengthFilter::new(config, tokenizer)
        } else {
            LengthFilter::for_text(config, tokenizer)?
        };
        let path = share_gpt_file(config, id, file, hf_file)?;
        Ok(ShareGpt {
            lines: open(&path)?,
            path,
            line_no: 0,
            filter,
            multi_turn,
            max_turns: config.max_turns,
            extras,
        })
    }

    fn next(&mut self) -> Result<Option<DatasetItem>, PluginError> {
        while let Some(line) = self.lines.next() {
            self.line_no += 1;
            let line = line_text(line, &self.path, self.line_no)?;
            if line.trim().is_empty() {
                continue;
            }
            let parsed: ShareGptLine = serde_json::from_str(line.trim()).map_err(|e| {
                PluginError::invalid(format!(
                    "{}:{}: not a swift/sharegpt line ({{\"conversation\": [{{\"human\": ..., \"assistant\": ...}}]}}): {e}",
                    self.path, self.line_no
                ))
            })?;
            let item = if self.multi_turn {
                self.conversation(parsed)?.map(|i| self.extras.apply(i))
            } else {
                self.history(parsed)?
            };
            if item.is_some() {
                return Ok(item);
            }
        }
        Ok(None)
    }

    /// User turns only, at most `--max-turns`; kept when the first passes the length filter.
    fn conversation(&self, line: ShareGptLine) -> Result<Option<DatasetItem>, PluginError> {
        let humans: Vec<&str> = line
            .conversation
            .iter()
            .map(|x| x.human.trim())
            .filter(|h| !h.is_empty())
            .take(self.max_turns.map_or(usize::MAX, |m| m as usize))
            .collect();
        let Some(first) = humans.first() else {
            return Ok(None);
        };
        if !self.filter.keeps(first)? {
            return Ok(None);
        }
        Ok(Some(DatasetItem::conversation(
            humans.iter().map(|h| vec![ChatMessage::text("user", h)]),
        )))
    }

    /// The history with its reference replies, ending on a user message that passes the
    /// length filter.
    fn history(&self, line: ShareGptLine) -> Result<Option<DatasetItem>, PluginError> {
        let mut messages = Vec::new();
        for x in &line.conversation {
            let human = x.human.trim();
            if human.is_empty() {
                continue;
            }
            messages.push(ChatMessage::text("user", human));
            let assistant = x.assistant.trim();
            if !assistant.is_empty() {
                messages.push(ChatMessage::text("assistant", assistant));
            }
        }
        if messages.last().is_some_and(|m| m.role == "assistant") {
            messages.pop();
        }
        Ok(self
            .filter
            .conversation(messages)?
            .map(|m| DatasetItem::new(PromptItem::Messages(m.into()))))
    }
}

macro_rules! share_gpt {
    ($name:ident, $id:literal, $zh:expr, $multi:expr, $what:literal) => {
        #[doc = concat!("`", $id, "`.")]
        pub struct $name(ShareGpt);

        impl DatasetSourcePlugin for $name {
            const ID: &'static str = $id;
            const DESCRIPTION: &'static str = $what;
            const OPTION_KEYS: Option<&'static [&'static str]> =
                Some(if $multi { MULTI_TURN_KEYS } else { TEXT_KEYS });

            fn new(
                config: &DatasetConfig,
                tokenizer: Option<TokenizerRef>,
            ) -> Result<Self, PluginError> {
                ShareGpt::open(config, tokenizer, Self::ID, $zh, $multi).map($name)
            }

            fn next_item(&mut self) -> Result<Option<DatasetItem>, PluginError> {
                self.0.next()
            }
        }
    };
}

share_gpt!(
    ShareGptZh,
    "share_gpt_zh",
    true,
    false,
    "Chinese ShareGPT conversations (swift/sharegpt common_zh_70k) as one request each: the history ending on the last user message"
);
share_gpt!(
    ShareGptEn,
    "share_gpt_en",
    false,
    false,
    "English ShareGPT conversations (swift/sharegpt common_en_70k) as one request each: the history ending on the last user message"
);
share_gpt!(
    ShareGptZhMultiTurn,
    "share_gpt_zh_multi_turn",
    true,
    true,
    "Chinese ShareGPT conversations turn by turn with the live replies (needs --multi-turn)"
);
share_gpt!(
    ShareGptEnMultiTurn,
    "share_gpt_en_multi_turn",
    false,
    true,
    "English ShareGPT conversations turn by turn with the live replies (needs --multi-turn)"
);

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<DatasetItem, PluginError> {
        conversation(serde_json::from_str(line).expect("json"), "f:1")
    }

    #[test]
    fn custom_lines_split_at_the_replies_and_carry_turn_budgets() {
        let item = parse(
            r#"[{"role":"system","content":"s"},{"role":"user","content":"a","max_tokens":5},{"role":"assistant","content":"x"},{"role":"user","content":"b"}]"#,
        )
        .expect("item");
        assert_eq!(item.turn_ends(), Some(&[2u64, 3][..]));
        assert_eq!(item.turn_max_tokens(), Some(&[5u64, 0][..]));
        let plain = parse(r#"[{"role":"user","content":"a"}]"#).expect("item");
        assert_eq!(plain.turn_max_tokens(), None);
        assert!(parse(r#"[{"role":"assistant","content":"x"}]"#)
            .expect_err("no user message")
            .message
            .contains("no user message"));
    }
}

/// `swe_smith`: evalscope's pre-built `agentic_dataset.json` (`--dataset-path`):
/// `{"conversations": [[{"messages": [...], "prompt_tokens": n, "rid": "..."}, ...], ...]}`, each
/// turn's `messages` the delta it adds; `--dataset-offset` rotates the list. The file is a
/// JSON document, read whole, as evalscope reads it. Without `--dataset-path` (or with a
/// parquet copy of the trajectories there) the conversations are built live (`swe.rs`).
pub enum SweSmith {
    /// From the pre-built file.
    Prebuilt(std::vec::IntoIter<DatasetItem>),
    /// Built from the trajectories as the run asks.
    Live(Box<crate::swe::Live>),
}

#[derive(Deserialize)]
struct SweSmithFile {
    #[serde(default)]
    conversations: Vec<Vec<SweSmithTurn>>,
}

#[derive(Deserialize)]
struct SweSmithTurn {
    #[serde(default)]
    messages: Vec<Message>,
    #[serde(default)]
    rid: Option<String>,
}

impl DatasetSourcePlugin for SweSmith {
    const ID: &'static str = "swe_smith";
    const DESCRIPTION: &'static str =
        "SWE-smith agent conversations, built from SWE-smith-trajectories (hub; needs --tokenizer-path) or evalscope's pre-built agentic_dataset.json (--dataset-path); needs --multi-turn";
    const OPTION_KEYS: Option<&'static [&'static str]> = Some(MULTI_TURN_KEYS);

    fn new(config: &DatasetConfig, tokenizer: Option<TokenizerRef>) -> Result<Self, PluginError> {
        needs_multi_turn(config, Self::ID)?;
        let tok = tokenizer.map(Tok);
        let extras = Extras::from_config(config, tok.as_ref())?;
        let path = match &config.dataset_path {
            Some(path) if !crate::swe::is_trajectories(path) => path,
            _ => {
                return crate::swe::Live::open(config, tok, extras)
                    .map(|live| SweSmith::Live(Box::new(live)))
            }
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| PluginError::config(format!("cannot open --dataset-path {path}: {e}")))?;
        let file: SweSmithFile = serde_json::from_str(&text).map_err(|e| {
            PluginError::invalid(format!(
                "{path}: not an agentic_dataset.json ({{\"conversations\": [[{{\"messages\": [...]}}, ...]]}}): {e}"
            ))
        })?;
        let mut items = Vec::with_capacity(file.conversations.len());
        for (i, conversation) in file.conversations.into_iter().enumerate() {
            let key = conversation.first().and_then(|t| t.rid.clone());
            let mut turns = Vec::with_capacity(conversation.len());
            for turn in conversation {
                let messages = turn
                    .messages
                    .into_iter()
                    .filter(|m| m.role != "assistant")
                    .map(|m| crate::files::chat_message(&m.role, m.content))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| PluginError::invalid(format!("{path}: conversation {i}: {e}")))?;
                if !messages.is_empty() {
                    turns.push(messages);
                }
            }
            if turns.is_empty() {
                continue;
            }
            let mut item = DatasetItem::conversation(turns);
            if let Some(key) = key {
                item.set_conversation_key(&key);
            }
            items.push(extras.apply(item));
        }
        if items.is_empty() {
            return Err(PluginError::invalid(format!(
                "{path}: no conversations found"
            )));
        }
        let offset = (config.dataset_offset as usize) % items.len();
        items.rotate_left(offset);
        Ok(SweSmith::Prebuilt(items.into_iter()))
    }

    fn next_item(&mut self) -> Result<Option<DatasetItem>, PluginError> {
        match self {
            SweSmith::Prebuilt(items) => Ok(items.next()),
            SweSmith::Live(live) => live.next_item(),
        }
    }
}
