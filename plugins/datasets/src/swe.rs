//! `swe_smith` built live from the SWE-smith agent trajectories, as evalscope builds it when no
//! `--dataset-path` is given (`SWE-bench/SWE-smith-trajectories`, split `tool`, on either hub).
//!
//! Each trajectory row has a `messages` column, a JSON string of chat messages. A message's
//! content is its text, or its text parts joined by newlines; `tool` messages count as `user`
//! ones (chat templates know no tool role without tool calls); other roles are dropped. Only the
//! user messages make the conversation (the system prompt and the recorded assistant replies are
//! left out; the run sends the live replies). Turn 1 collects user messages until they reach
//! `first_turn_length` tokens (default 65000), each later turn until it adds
//! `subsequent_turn_length` more (default 500); the message that crosses a budget is cut to fit
//! (its first tokens, decoded), and a message that no longer fits is left for the next turn.
//! Tokens are the tokenizer's bare count of the text (no special tokens, no template), as
//! evalscope counts them. A trajectory that runs out before its turn count is skipped.
//!
//! Before building, every row is read and the trajectories shorter than the longest turn plan
//! allows are dropped by characters (`chars_per_token`, default 3.0, times the upper bounds of
//! the lengths over `--max-turns` turns). The rest are shuffled (`--seed`), rotated by
//! `--dataset-offset`, and built one by one as the run asks for conversations, each with its
//! own turn count drawn from `--min-turns`..`--max-turns` and its own lengths drawn from the
//! ranges. The candidates are read once per process: the host opens a dataset again for each
//! run of a sweep (and once to check it before traffic), and a later open of the same files
//! with the same character floor takes them from memory. `--dataset-path` may also name a local copy of the trajectories (a parquet file or a
//! directory of them) instead of the pre-built `agentic_dataset.json`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use perf_plugin_api::sdk::DatasetConfig;
use perf_plugin_api::{DatasetItem, PluginError};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use crate::extras::Extras;
use crate::random::MultiTurnKnobs;
use crate::tables::{self, Table};
use crate::tok::Tok;

const HUB_REPO: &str = "SWE-bench/SWE-smith-trajectories";
const SPLIT: &str = "tool";
const HINT: &str = "evalscope's pre-built agentic_dataset.json, or a parquet copy of SWE-smith-trajectories' tool split";
const FIRST_TURN_LENGTH: (u64, u64) = (65_000, 65_000);
const SUBSEQUENT_TURN_LENGTH: (u64, u64) = (500, 500);
const CHARS_PER_TOKEN: f64 = 3.0;

/// Whether `--dataset-path` is a copy of the trajectories rather than the pre-built file.
pub(crate) fn is_trajectories(path: &str) -> bool {
    let p = Path::new(path);
    p.is_dir() || p.extension().is_some_and(|x| x == "parquet")
}

/// The normalised messages of one trajectory: (role, text), roles `system`, `user` or
/// `assistant`.
pub(crate) fn extract_messages(raw: &str) -> Result<Vec<(String, String)>, String> {
    let parsed: Value = serde_json::from_str(raw).map_err(|e| e.to_string())?;
    let Value::Array(list) = parsed else {
        return Err("not a JSON array of messages".into());
    };
    let mut messages = Vec::new();
    for message in list {
        let role = message.get("role").and_then(Value::as_str).unwrap_or("");
        let content = match message.get("content") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(parts)) => parts
                .iter()
                .filter_map(|p| match p {
                    Value::String(s) => Some(s.as_str()),
                    Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("text") => {
                        Some(o.get("text").and_then(Value::as_str).unwrap_or(""))
                    }
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join("\n"),
            _ => String::new(),
        };
        if role.is_empty() || content.is_empty() {
            continue;
        }
        let role = if role == "tool" { "user" } else { role };
        if matches!(role, "system" | "user" | "assistant") {
            messages.push((role.to_string(), content));
        }
    }
    Ok(messages)
}

/// Collects user messages from `start` until they add about `target` bare tokens: the
/// messages that fit whole, then the one that crosses the budget cut to what is left. Returns
/// the turn's messages and the index of the next unused message.
fn collect_until(
    users: &[String],
    start: usize,
    target: u64,
    tok: &Tok,
) -> Result<(Vec<String>, usize), PluginError> {
    let mut delta = Vec::new();
    let mut used = 0u64;
    let mut i = start;
    while i < users.len() {
        let ids = tok.encode(&users[i], false)?;
        let n = ids.len() as u64;
        if used + n <= target {
            delta.push(users[i].clone());
            used += n;
            i += 1;
            continue;
        }
        let remaining = target.saturating_sub(used);
        if remaining == 0 {
            break;
        }
        delta.push(tok.decode(&ids[..remaining as usize])?);
        i += 1;
        break;
    }
    Ok((delta, i))
}

/// One conversation of `turns` turns from a trajectory's user messages, or `None` when it runs
/// out first.
fn build(
    users: &[String],
    first: u64,
    subsequent: u64,
    turns: u32,
    tok: &Tok,
) -> Result<Option<Vec<Vec<String>>>, PluginError> {
    if users.is_empty() {
        return Ok(None);
    }
    let (delta, mut at) = collect_until(users, 0, first, tok)?;
    if delta.is_empty() {
        return Ok(None);
    }
    let mut built = vec![delta];
    for _ in 1..turns {
        if at >= users.len() {
            return Ok(None);
        }
        let (delta, next) = collect_until(users, at, subsequent, tok)?;
        if delta.is_empty() {
            return Ok(None);
        }
        built.push(delta);
        at = next;
    }
    Ok(Some(built))
}

/// Each candidate trajectory's user messages.
type Candidates = Arc<Vec<Vec<String>>>;

/// What candidates were read from: the files, and the character floor.
type ReadKey = (Vec<PathBuf>, usize);

/// The candidates last read, by what they were read from.
static READ: Mutex<Option<(ReadKey, Candidates)>> = Mutex::new(None);

/// The candidates of `files` at `min_chars`: from memory when the last open read the same.
fn candidates(files: &[PathBuf], min_chars: usize) -> Result<Candidates, PluginError> {
    let key = (files.to_vec(), min_chars);
    let mut last = READ.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((k, read)) = last.as_ref() {
        if *k == key {
            return Ok(read.clone());
        }
    }
    let read = Arc::new(scan(files, min_chars)?);
    *last = Some((key, read.clone()));
    Ok(read)
}

/// Reads every row of `files`: the trajectories with at least `min_chars` characters of user
/// messages.
fn scan(files: &[PathBuf], min_chars: usize) -> Result<Vec<Vec<String>>, PluginError> {
    let mut candidates = Vec::new();
    let (mut short, mut unreadable, mut rows) = (0u64, 0u64, 0u64);
    for file in files {
        let mut table = Table::open(file)?;
        while let Some(row) = table.next_row()? {
            rows += 1;
            let Some(raw) = tables::text(&row, "messages") else {
                unreadable += 1;
                continue;
            };
            if raw.chars().count() < min_chars {
                short += 1;
                continue;
            }
            let Ok(messages) = extract_messages(&raw) else {
                unreadable += 1;
                continue;
            };
            let users: Vec<String> = messages
                .into_iter()
                .filter(|(role, _)| role == "user")
                .map(|(_, text)| text)
                .collect();
            if users.iter().map(|u| u.chars().count()).sum::<usize>() < min_chars {
                short += 1;
                continue;
            }
            candidates.push(users);
        }
    }
    eprintln!(
        "perf: swe_smith: {} of {rows} trajectories are candidates ({short} shorter than {min_chars} characters, {unreadable} unreadable)",
        candidates.len()
    );
    Ok(candidates)
}

/// `swe_smith` built live: the candidates, and how each becomes a conversation.
pub(crate) struct Live {
    candidates: Candidates,
    /// The candidates' order for this run (shuffled, rotated), and the next one to use.
    order: std::vec::IntoIter<usize>,
    tok: Tok,
    rng: StdRng,
    first: (u64, u64),
    subsequent: (u64, u64),
    turns: (u32, u32),
    extras: Extras,
    built: u64,
    skipped: u64,
}

fn hub_files(config: &DatasetConfig) -> Result<Vec<PathBuf>, PluginError> {
    let (hub, _) = tables::hub_for(config, "swe_smith", HINT)?;
    tables::hub_split(&hub, HUB_REPO, "", SPLIT, &[".parquet"], "swe_smith", HINT)
}

fn local_files(path: &Path) -> Result<Vec<PathBuf>, PluginError> {
    let files = tables::local_parquet(path, "data")?;
    let names = |p: &PathBuf| p.file_name().and_then(|n| n.to_str()).map(str::to_string);
    let split: Vec<PathBuf> = files
        .iter()
        .filter(|p| names(p).is_some_and(|n| n.starts_with(&format!("{SPLIT}-"))))
        .cloned()
        .collect();
    let chosen = if split.is_empty() { files } else { split };
    if chosen.is_empty() {
        return Err(PluginError::config(format!(
            "--dataset-path {}: no parquet files there (swe_smith reads {HINT})",
            path.display()
        )));
    }
    Ok(chosen)
}

impl Live {
    pub(crate) fn open(
        config: &DatasetConfig,
        tok: Option<Tok>,
        extras: Extras,
    ) -> Result<Self, PluginError> {
        let Some(tok) = tok else {
            return Err(PluginError::config(
                "the swe_smith dataset built live needs --tokenizer-path (its turns are filled to token counts); or pass evalscope's pre-built agentic_dataset.json as --dataset-path",
            ));
        };
        let knobs: MultiTurnKnobs = config.options()?;
        let first = knobs
            .first_turn_length
            .as_ref()
            .map(|l| l.range("first_turn_length"))
            .transpose()?
            .unwrap_or(FIRST_TURN_LENGTH);
        let subsequent = knobs
            .subsequent_turn_length
            .as_ref()
            .map(|l| l.range("subsequent_turn_length"))
            .transpose()?
            .unwrap_or(SUBSEQUENT_TURN_LENGTH);
        let chars_per_token = knobs.chars_per_token.unwrap_or(CHARS_PER_TOKEN);
        if !(chars_per_token.is_finite() && chars_per_token > 0.0) {
            return Err(PluginError::config(
                "--dataset-args chars_per_token must be a number above 0",
            ));
        }
        let min_turns = config.min_turns.max(1);
        let max_turns = config.max_turns.unwrap_or(min_turns);
        if max_turns < min_turns {
            return Err(PluginError::config(format!(
                "--max-turns ({max_turns}) must be at least --min-turns ({min_turns})"
            )));
        }
        let min_tokens = first.1 + subsequent.1 * u64::from(max_turns - 1);
        let min_chars = (min_tokens as f64 * chars_per_token) as usize;

        let files = match &config.dataset_path {
            Some(p) => local_files(Path::new(p))?,
            None => hub_files(config)?,
        };
        let candidates = candidates(&files, min_chars)?;
        if candidates.is_empty() {
            return Err(PluginError::invalid(format!(
                "no SWE-smith trajectory is long enough for these turns ({min_chars} characters of user messages for first_turn_length {} + {} x subsequent_turn_length {}); lower the lengths or --max-turns",
                first.1,
                max_turns - 1,
                subsequent.1
            )));
        }
        let mut rng = StdRng::seed_from_u64(config.seed.unwrap_or(0));
        let mut order: Vec<usize> = (0..candidates.len()).collect();
        order.shuffle(&mut rng);
        let offset = (config.dataset_offset as usize) % order.len();
        order.rotate_left(offset);
        Ok(Live {
            candidates,
            order: order.into_iter(),
            tok,
            rng,
            first,
            subsequent,
            turns: (min_turns, max_turns),
            extras,
            built: 0,
            skipped: 0,
        })
    }

    pub(crate) fn next_item(&mut self) -> Result<Option<DatasetItem>, PluginError> {
        for i in self.order.by_ref() {
            let users = &self.candidates[i];
            let first = self.rng.gen_range(self.first.0..=self.first.1);
            let subsequent = self.rng.gen_range(self.subsequent.0..=self.subsequent.1);
            let turns = self.rng.gen_range(self.turns.0..=self.turns.1);
            match build(users, first, subsequent, turns, &self.tok)? {
                Some(turns) => {
                    self.built += 1;
                    let turns = turns.into_iter().map(|texts| {
                        texts
                            .iter()
                            .map(|t| perf_plugin_api::ChatMessage::text("user", t))
                            .collect()
                    });
                    return Ok(Some(self.extras.apply(DatasetItem::conversation(turns))));
                }
                None => self.skipped += 1,
            }
        }
        if self.built == 0 {
            return Err(PluginError::invalid(format!(
                "none of the {} candidate SWE-smith trajectories has enough user messages for its turns; lower --min-turns / --max-turns or the turn lengths",
                self.skipped
            )));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_messages_become_user_ones_and_text_parts_are_joined() {
        let raw = r#"[
            {"role": "system", "content": "be good"},
            {"role": "user", "content": "fix it"},
            {"role": "assistant", "content": "ok"},
            {"role": "tool", "content": [{"type": "text", "text": "a"}, {"type": "image"}, "b"]},
            {"role": "function", "content": "dropped"},
            {"role": "user", "content": ""}
        ]"#;
        let got = extract_messages(raw).expect("parses");
        let roles: Vec<&str> = got.iter().map(|(r, _)| r.as_str()).collect();
        assert_eq!(roles, ["system", "user", "assistant", "user"]);
        assert_eq!(got[3].1, "a\nb");
        assert!(extract_messages("{}").is_err());
    }
}
