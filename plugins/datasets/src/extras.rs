//! What perf adds to every conversation dataset, to imitate agents (a long system prompt,
//! short tool-call turns, a long final answer), through `--dataset-args`:
//!
//! - `turn_max_tokens`: output budgets by turn, `[64, 16, 512]` meaning 64 for the first turn,
//!   16 for the second, 512 for the third and every later one; a budget a dataset line sets
//!   for its own turn (`custom_multi_turn`'s `max_tokens`) wins;
//! - `system_prompt_tokens`: a system message of exactly that many tokens (the tokenizer's
//!   count, `--tokenizer-path`) before every conversation, the same one for all of them, as a
//!   deployed agent's instructions are (a prefix cache can keep it).

use perf_plugin_api::sdk::DatasetConfig;
use perf_plugin_api::{ChatMessage, DatasetItem, PluginError, PromptItem};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;

use crate::tok::Tok;

/// The option keys, for the conversation datasets' lists.
pub(crate) const EXTRA_KEYS: [&str; 2] = ["turn_max_tokens", "system_prompt_tokens"];

#[derive(Deserialize, Default)]
struct Knobs {
    #[serde(default)]
    turn_max_tokens: Option<Vec<u64>>,
    #[serde(default)]
    system_prompt_tokens: Option<usize>,
}

/// The additions, ready to apply to each conversation.
#[derive(Default)]
pub(crate) struct Extras {
    budgets: Vec<u64>,
    system: Option<String>,
}

impl Extras {
    /// Reads the options (other keys are the dataset's own); `tokenizer` measures the system
    /// prompt.
    pub(crate) fn from_config(
        config: &DatasetConfig,
        tokenizer: Option<&Tok>,
    ) -> Result<Extras, PluginError> {
        let knobs: Knobs = match config.options.as_object() {
            Some(o) => {
                let mine: serde_json::Map<String, serde_json::Value> = o
                    .iter()
                    .filter(|(k, _)| EXTRA_KEYS.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                serde_json::from_value(serde_json::Value::Object(mine))
                    .map_err(|e| PluginError::config(format!("--dataset-args: {e}")))?
            }
            None => Knobs::default(),
        };
        let budgets = knobs.turn_max_tokens.unwrap_or_default();
        if budgets.contains(&0) {
            return Err(PluginError::config(
                "--dataset-args turn_max_tokens: every budget must be at least 1 token",
            ));
        }
        let system = match knobs.system_prompt_tokens {
            None | Some(0) => None,
            Some(n) => {
                let tok = tokenizer.ok_or_else(|| {
                    PluginError::config(
                        "--dataset-args system_prompt_tokens needs --tokenizer-path (the prompt is that many of its tokens)",
                    )
                })?;
                Some(system_prompt(tok, n, config.seed.unwrap_or(0))?)
            }
        };
        Ok(Extras { budgets, system })
    }

    /// `item` with the system prompt first and the turn budgets.
    pub(crate) fn apply(&self, mut item: DatasetItem) -> DatasetItem {
        if self.budgets.is_empty() && self.system.is_none() {
            return item;
        }
        let mut ends: Vec<u64> = item.turn_ends().map(<[u64]>::to_vec).unwrap_or_default();
        if let Some(system) = &self.system {
            if let Ok(PromptItem::Messages(messages)) = item.prompt() {
                let mut with: Vec<ChatMessage> = vec![ChatMessage::text("system", system)];
                with.extend(messages.iter().cloned());
                let mut next = DatasetItem::new(PromptItem::Messages(with.into()));
                next.ext = item.ext.clone();
                item = next;
                // The system message goes with the first turn.
                for e in &mut ends {
                    *e += 1;
                }
                if !ends.is_empty() {
                    item.ext.set(
                        perf_plugin_api::FieldId::TURN_ENDS,
                        perf_plugin_api::FieldValue::U64List(ends.clone().into()),
                    );
                }
            }
        }
        if !self.budgets.is_empty() && !ends.is_empty() {
            let own = item
                .turn_max_tokens()
                .map(<[u64]>::to_vec)
                .unwrap_or_default();
            let last = *self.budgets.last().unwrap_or(&0);
            let budgets: Vec<u64> = (0..ends.len())
                .map(|i| match own.get(i) {
                    Some(&b) if b > 0 => b,
                    _ => self.budgets.get(i).copied().unwrap_or(last),
                })
                .collect();
            item.set_turn_max_tokens(budgets);
        }
        item
    }
}

/// A system prompt of exactly `n` tokens: whole-word tokens drawn from the run's seed, which
/// re-encode to themselves (so it starts with a space).
fn system_prompt(tok: &Tok, n: usize, seed: u64) -> Result<String, PluginError> {
    let words = crate::hashids::word_tokens(tok);
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5157_e417);
    let mut ids: Vec<u32> = (0..n)
        .map(|_| words[rng.gen_range(0..words.len())])
        .collect();
    for _ in 0..10 {
        let text = tok.decode(&ids)?;
        let len = tok.encode(&text, false)?.len();
        if len == n {
            return Ok(text);
        }
        if len > n {
            ids.truncate(ids.len().saturating_sub(len - n).max(1));
        } else {
            ids.extend((0..n - len).map(|_| words[rng.gen_range(0..words.len())]));
        }
    }
    tok.decode(&ids)
}
