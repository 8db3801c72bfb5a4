//! `mooncake_trace`: traces in the Mooncake form (as AIPerf, vLLM and SGLang replay them), where
//! prefix sharing is recorded as block hashes instead of text.
//!
//! Each JSON line has `timestamp` (milliseconds), `input_length` and `output_length` (tokens)
//! and `hash_ids`: one id per block of `block_size` tokens (`--dataset-args`, default 512),
//! equal ids meaning equal blocks. The prompt is synthesized from the tokenizer: the block of
//! id h is `block_size` tokens drawn from a generator seeded by h (and the run's seed), so two
//! requests that share ids share exactly those token blocks; the prompt is the blocks in order,
//! cut to `input_length` (or extended with tokens of its own when the ids cover less). Tokens
//! are drawn from whole-word pieces (a space and letters), whose text re-encodes to the same
//! tokens, so the blocks survive being sent as text; `--tokenize-prompt` sends the ids
//! themselves. `max_tokens` is the recorded `output_length` (`--extra-args '{"ignore_eos":
//! true}'` makes a vLLM or SGLang server generate all of it), and requests go out
//! `timestamp / 1000 / speed` seconds after the first.

use std::fs::File;
use std::io::{BufRead, BufReader};

use perf_plugin_api::sdk::{DatasetConfig, DatasetSourcePlugin};
use perf_plugin_api::{ChatMessage, DatasetItem, PluginError, PromptItem, RVec, TokenizerRef};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;

use crate::required_path;
use crate::tok::Tok;

/// Fewest whole-word tokens worth drawing from; below it, any ordinary token.
const MIN_WORDS: usize = 256;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Knobs {
    #[serde(default = "block")]
    block_size: usize,
    #[serde(default = "one")]
    speed: f64,
}

fn block() -> usize {
    512
}

fn one() -> f64 {
    1.0
}

/// One line of the trace.
#[derive(Debug, Deserialize)]
struct Line {
    timestamp: f64,
    input_length: usize,
    output_length: u64,
    #[serde(default)]
    hash_ids: Vec<u64>,
}

/// `mooncake_trace`.
pub struct MooncakeTrace {
    lines: Vec<Line>,
    next: usize,
    tok: Tok,
    words: Vec<u32>,
    block_size: usize,
    speed: f64,
    t0: f64,
    seed: u64,
    chat: bool,
    token_ids: bool,
}

impl DatasetSourcePlugin for MooncakeTrace {
    const ID: &'static str = "mooncake_trace";
    const DESCRIPTION: &'static str = "Mooncake-style traces (timestamp ms, input_length, output_length, hash_ids): prompts synthesized so equal hash ids are equal token blocks, replayed on schedule (--dataset-path, --open-loop, --tokenizer-path)";
    const OPTION_KEYS: Option<&'static [&'static str]> = Some(&["block_size", "speed"]);
    const OPTIONS_EXAMPLE: &'static str = r#"{"block_size": 512, "speed": 1.0}"#;
    const REPLAYS_SCHEDULE: bool = true;

    fn new(config: &DatasetConfig, tokenizer: Option<TokenizerRef>) -> Result<Self, PluginError> {
        let knobs: Knobs = config.options()?;
        if knobs.block_size == 0 {
            return Err(PluginError::config(
                "--dataset-args block_size must be at least 1 (tokens per hash id; Mooncake's traces use 512)",
            ));
        }
        if !(knobs.speed.is_finite() && knobs.speed > 0.0) {
            return Err(PluginError::config(format!(
                "--dataset-args speed must be > 0, got {}",
                knobs.speed
            )));
        }
        let tok = Tok(tokenizer.ok_or_else(|| {
            PluginError::config(
                "the mooncake_trace dataset needs --tokenizer-path: its prompts are built from the tokenizer's own tokens",
            )
        })?);
        let path = required_path(
            config,
            Self::ID,
            "a .jsonl trace of {\"timestamp\", \"input_length\", \"output_length\", \"hash_ids\"}",
        )?;
        let mut lines = read(&path)?;
        lines.sort_by(|a, b| a.timestamp.total_cmp(&b.timestamp));
        let words = word_tokens(&tok);
        let t0 = lines[0].timestamp;
        Ok(MooncakeTrace {
            lines,
            next: 0,
            tok,
            words,
            block_size: knobs.block_size,
            speed: knobs.speed,
            t0,
            seed: config.seed.unwrap_or(0),
            chat: config.apply_chat_template && !config.tokenize_prompt,
            token_ids: config.tokenize_prompt,
        })
    }

    fn next_item(&mut self) -> Result<Option<DatasetItem>, PluginError> {
        let Some(line) = self.lines.get(self.next) else {
            return Ok(None);
        };
        let index = self.next as u64;
        self.next += 1;
        let ids = self.prompt_ids(line, index);
        let arrival = (line.timestamp - self.t0) / 1000.0 / self.speed;
        let prompt = if self.token_ids {
            // The completions body carries the ids as they are.
            PromptItem::TokenIds(RVec::from(ids.clone()))
        } else {
            let text = self.tok.decode(&ids)?;
            if self.chat {
                PromptItem::Messages(vec![ChatMessage::text("user", &text)].into())
            } else {
                PromptItem::Text(text.into())
            }
        };
        let mut item = DatasetItem::with_tokens(prompt, ids.len() as u64);
        item.set_arrival_s(arrival);
        // The recorded output length (generated in full where the server honours
        // --extra-args '{"ignore_eos": true}').
        item.set_max_tokens(line.output_length);
        Ok(Some(item))
    }
}

impl MooncakeTrace {
    /// The prompt of `line`: its blocks in order, cut or extended to `input_length`.
    fn prompt_ids(&self, line: &Line, index: u64) -> Vec<u32> {
        let mut ids = Vec::with_capacity(line.input_length);
        for &h in &line.hash_ids {
            if ids.len() >= line.input_length {
                break;
            }
            ids.extend(self.block(h));
        }
        if ids.len() < line.input_length {
            // Tokens of this request alone: nothing else shares them.
            let mut rng = StdRng::seed_from_u64(mix(self.seed ^ 0x5eed, u64::MAX - index));
            while ids.len() < line.input_length {
                ids.push(self.words[rng.gen_range(0..self.words.len())]);
            }
        }
        ids.truncate(line.input_length);
        ids
    }

    /// The tokens of the block hash id `h` names.
    fn block(&self, h: u64) -> Vec<u32> {
        let mut rng = StdRng::seed_from_u64(mix(self.seed, h));
        (0..self.block_size)
            .map(|_| self.words[rng.gen_range(0..self.words.len())])
            .collect()
    }
}

/// Mixes two numbers into one seed (splitmix64).
fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Tokens that are a space and a lowercase word (`Ġword` in byte-level BPE, `▁word` in
/// SentencePiece): text made of them splits back into the same tokens. Any ordinary token
/// when a vocabulary has too few.
pub(crate) fn word_tokens(tok: &Tok) -> Vec<u32> {
    let words: Vec<u32> = (0..tok.vocab_size())
        .filter(|&id| !tok.is_special(id))
        .filter(|&id| {
            tok.id_to_token(id).is_some_and(|t| {
                let rest = t.strip_prefix('Ġ').or_else(|| t.strip_prefix('▁'));
                rest.is_some_and(|w| w.len() >= 2 && w.bytes().all(|b| b.is_ascii_lowercase()))
            })
        })
        // Keep those that really encode to themselves after a word.
        .filter(|&id| {
            tok.decode(&[id])
                .and_then(|text| tok.encode(&format!("a{text}"), false))
                .is_ok_and(|ids| ids.last() == Some(&id) && ids.len() == 2)
        })
        .collect();
    if words.len() >= MIN_WORDS {
        return words;
    }
    (0..tok.vocab_size())
        .filter(|&id| !tok.is_special(id))
        .collect()
}

fn read(path: &str) -> Result<Vec<Line>, PluginError> {
    let file = File::open(path)
        .map_err(|e| PluginError::config(format!("cannot open --dataset-path {path}: {e}")))?;
    let mut lines = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = crate::files::line_text(line, path, i as u64 + 1)?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Line = serde_json::from_str(line.trim()).map_err(|e| {
            PluginError::invalid(format!(
                "{path}:{}: not a Mooncake trace line ({{\"timestamp\": ms, \"input_length\": n, \"output_length\": n, \"hash_ids\": [...]}}): {e}",
                i + 1
            ))
        })?;
        if !parsed.timestamp.is_finite() {
            return Err(PluginError::invalid(format!(
                "{path}:{}: timestamp must be a number of milliseconds",
                i + 1
            )));
        }
        lines.push(parsed);
    }
    if lines.is_empty() {
        return Err(PluginError::invalid(format!(
            "{path}: the trace has no requests"
        )));
    }
    Ok(lines)
}
