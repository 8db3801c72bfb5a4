//! `random`: prompts of an exact token length, built from the tokenizer's own vocabulary.
//!
//! The recipe follows evalscope perf 1.14.1 (see the README's "Datasets"): the allowed tokens
//! are the vocabulary minus special tokens and byte-fallback tokens (`<0xHH>`); each prompt is a
//! shared prefix (`--prefix-length` tokens, one of `--prefix-count` prefixes, request i using
//! prefix i mod count) followed by a run of consecutive allowed tokens from a random offset
//! (plus `--dataset-offset`) whose length is drawn uniformly in the requested range.
//!
//! Where it goes further: the length is *exact* as the server counts it. The count is the
//! tokenizer's count of what the server tokenizes: the chat template applied to the one user
//! message (generation prompt included) when the template is on, else the text with the
//! tokenizer's special tokens. The template's own tokens are taken off the drawn length first, so
//! the total lands in [`--min-prompt-length`, `--max-prompt-length`] plus the prefix, as in
//! evalscope. Token ids do not survive decoding and re-encoding unchanged (neighbouring pieces
//! merge), so each prompt is measured and its tail trimmed or extended with random allowed
//! tokens until the count is exact; the prefix text is never touched, so requests sharing it
//! share its tokens. With `--tokenize-prompt` the ids themselves are sent and are exact by
//! construction.
//!
//! Long prompts cost milliseconds each to tokenize, so several worker threads build them ahead
//! of the run, each into a small bounded queue; items come out in order and memory stays
//! bounded whatever `--number` is.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

use perf_plugin_api::sdk::{DatasetConfig, DatasetSourcePlugin};
use perf_plugin_api::{
    ChatMessage, ContentPart, DatasetItem, PluginError, PromptItem, RString, RVec, TokenizerRef,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::conversations::{needs_multi_turn, MULTI_TURN_KEYS};
use crate::images::{self, ImageSpec, Mode};
use crate::tok::Tok;

/// Measure-and-adjust rounds before a prompt is rebuilt from a fresh tail.
const ROUNDS: usize = 16;
/// Fresh tails tried before giving up on an exact length.
const RESTARTS: usize = 8;
/// Items each worker builds ahead.
const AHEAD: usize = 4;

/// What one item holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Shape {
    /// One prompt (`random`, `random_vl`, `random_embedding`).
    One,
    /// This many texts as one embeddings body (`random_embedding_batch`).
    Batch(usize),
    /// A query and `documents` documents `ratio` times its length (`random_rerank`).
    Rerank { documents: usize, ratio: f64 },
    /// A conversation of `turns` user turns (`random_multi_turn`).
    Conversation(Turns),
}

/// How `random_multi_turn` draws its conversations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Turns {
    /// Turns per conversation, drawn uniformly in this range.
    pub min: u32,
    pub max: u32,
    /// Tokens of the first turn's message (default: the prompt-length range).
    pub first: Option<(u64, u64)>,
    /// Tokens of each later turn's message (default: the prompt-length range).
    pub subsequent: Option<(u64, u64)>,
}

/// What every prompt is built from.
struct Recipe {
    shape: Shape,
    tok: Tok,
    allowed: Vec<u32>,
    prefixes: Vec<Vec<u32>>,
    /// The prefixes as text (what is sent).
    prefix_texts: Vec<String>,
    /// Tokens the template (or special tokens) add to an empty prompt.
    overhead: u64,
    /// Body length bounds, template overhead taken off.
    lo: u64,
    hi: u64,
    chat: bool,
    tokenize_prompt: bool,
    dataset_offset: u64,
    seed: u64,
    /// `random_vl`: this many images of this kind after the text.
    images: Option<(ImageSpec, u32)>,
    /// What those images count in the prompt, by `--image-patch-size` patches.
    image_tokens: u64,
}

/// Mixes the run seed and an item index into one RNG seed (splitmix64).
fn item_seed(seed: u64, index: u64) -> u64 {
    let mut z = seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn is_byte_fallback(token: &str) -> bool {
    let b = token.as_bytes();
    b.len() == 6
        && b.starts_with(b"<0x")
        && b[5] == b'>'
        && b[3..5].iter().all(u8::is_ascii_hexdigit)
}

impl Recipe {
    fn new(
        config: &DatasetConfig,
        tok: Tok,
        images: Option<(ImageSpec, u32)>,
    ) -> Result<Self, PluginError> {
        let allowed: Vec<u32> = (0..tok.vocab_size())
            .filter(|&id| !tok.is_special(id))
            .filter(|&id| tok.id_to_token(id).is_some_and(|t| !is_byte_fallback(&t)))
            .collect();
        if allowed.is_empty() {
            return Err(PluginError::config(
                "the tokenizer has no ordinary tokens to build random prompts from",
            ));
        }
        let seed = config.seed.unwrap_or(0);
        let mut rng = StdRng::seed_from_u64(item_seed(seed, u64::MAX));
        let count = config.prefix_count.max(1) as usize;
        let prefixes: Vec<Vec<u32>> = if config.prefix_length == 0 {
            Vec::new()
        } else {
            (0..count)
                .map(|_| {
                    (0..config.prefix_length)
                        .map(|_| allowed[rng.gen_range(0..allowed.len())])
                        .collect()
                })
                .collect()
        };
        let prefix_texts = prefixes
            .iter()
            .map(|ids| tok.decode(ids))
            .collect::<Result<_, _>>()?;
        let chat = config.apply_chat_template && !config.tokenize_prompt;
        let mut recipe = Recipe {
            shape: Shape::One,
            tok,
            allowed,
            prefixes,
            prefix_texts,
            overhead: 0,
            lo: 0,
            hi: 0,
            chat,
            tokenize_prompt: config.tokenize_prompt,
            dataset_offset: config.dataset_offset,
            seed,
            images,
            image_tokens: images.map_or(0, |(spec, count)| {
                let patch = config.image_patch_size.max(1);
                u64::from(count)
                    * u64::from(spec.width.div_ceil(patch))
                    * u64::from(spec.height.div_ceil(patch))
            }),
        };
        if !config.tokenize_prompt {
            recipe.overhead = recipe.measure("")? as u64;
        }
        recipe.lo = config.min_prompt_length.saturating_sub(recipe.overhead);
        recipe.hi = config.max_prompt_length.saturating_sub(recipe.overhead);
        if recipe.hi == 0 {
            return Err(PluginError::config(format!(
                "--max-prompt-length {} leaves no room for text: the chat template alone takes {} tokens",
                config.max_prompt_length, recipe.overhead
            )));
        }
        recipe.lo = recipe.lo.max(1).min(recipe.hi);
        Ok(recipe)
    }

    /// Tokens the server counts for `text`.
    fn measure(&self, text: &str) -> Result<usize, PluginError> {
        self.tok.prompt_tokens(text, self.chat)
    }

    fn random_tokens(&self, rng: &mut StdRng, n: usize) -> impl Iterator<Item = u32> + '_ {
        let picks: Vec<usize> = (0..n)
            .map(|_| rng.gen_range(0..self.allowed.len()))
            .collect();
        picks.into_iter().map(|k| self.allowed[k])
    }

    /// Text of exactly `len` tokens past the overhead, from consecutive allowed tokens at a
    /// random offset: (text, its count).
    fn text(
        &self,
        rng: &mut StdRng,
        index: u64,
        len: usize,
    ) -> Result<(String, usize), PluginError> {
        let v = self.allowed.len();
        let offset = (rng.gen_range(0..v) + self.dataset_offset as usize) % v;
        let body: Vec<u32> = (0..len.max(1))
            .map(|k| self.allowed[(offset + index as usize + k) % v])
            .collect();
        let target = self.overhead as usize + len.max(1);
        Ok((self.exact("", body, target, rng)?, target))
    }

    /// An embeddings batch or a rerank query with its documents, as one complete body.
    fn build_body(&self, index: u64, rng: &mut StdRng) -> Result<DatasetItem, PluginError> {
        let (body, tokens) = match self.shape {
            Shape::Batch(n) => {
                let mut texts = Vec::with_capacity(n);
                let mut tokens = 0;
                for k in 0..n {
                    let len = rng.gen_range(self.lo..=self.hi) as usize;
                    let (t, count) = self.text(rng, index * n as u64 + k as u64, len)?;
                    texts.push(t);
                    tokens += count;
                }
                (serde_json::json!({ "input": texts }), tokens)
            }
            Shape::Rerank { documents, ratio } => {
                let len = rng.gen_range(self.lo..=self.hi) as usize;
                let (query, mut tokens) = self.text(rng, index, len)?;
                let doc_len = ((len as f64 * ratio).round() as usize).max(1);
                let mut docs = Vec::with_capacity(documents);
                for k in 0..documents {
                    let (d, count) = self.text(rng, index + 1 + k as u64, doc_len)?;
                    docs.push(d);
                    tokens += count;
                }
                (
                    serde_json::json!({"query": query, "documents": docs}),
                    tokens,
                )
            }
            Shape::Conversation(turns) => return self.build_conversation(index, rng, turns),
            Shape::One => unreachable!("single prompts are built by `build`"),
        };
        Ok(item(PromptItem::Body(body.to_string().into()), tokens))
    }

    /// A conversation: each turn one user message of a drawn exact length (as the one
    /// message of a request would measure), from its own random offset.
    fn build_conversation(
        &self,
        index: u64,
        rng: &mut StdRng,
        turns: Turns,
    ) -> Result<DatasetItem, PluginError> {
        let n = rng.gen_range(turns.min..=turns.max);
        let mut conversation = Vec::with_capacity(n as usize);
        for k in 0..n {
            let range = if k == 0 {
                turns.first
            } else {
                turns.subsequent
            };
            let (lo, hi) = range.unwrap_or((self.lo, self.hi));
            let len = rng.gen_range(lo.max(1)..=hi.max(lo.max(1))) as usize;
            let (text, _) = self.text(rng, index.wrapping_mul(1 << 16) + u64::from(k), len)?;
            conversation.push(vec![ChatMessage::text("user", &text)]);
        }
        Ok(DatasetItem::conversation(conversation))
    }

    fn build(&self, index: u64) -> Result<DatasetItem, PluginError> {
        let mut rng = StdRng::seed_from_u64(item_seed(self.seed, index));
        if self.shape != Shape::One {
            return self.build_body(index, &mut rng);
        }
        let body_len = rng.gen_range(self.lo..=self.hi) as usize;
        let v = self.allowed.len();
        let offset = (rng.gen_range(0..v) + self.dataset_offset as usize) % v;
        let body: Vec<u32> = (0..body_len)
            .map(|k| self.allowed[(offset + index as usize + k) % v])
            .collect();
        let which = (!self.prefixes.is_empty()).then(|| index as usize % self.prefixes.len());
        let prefix_len = which.map_or(0, |w| self.prefixes[w].len());
        let target = self.overhead as usize + prefix_len + body_len;
        if self.tokenize_prompt {
            let mut ids = which.map_or_else(Vec::new, |w| self.prefixes[w].clone());
            ids.extend(body);
            return Ok(item(PromptItem::TokenIds(RVec::from(ids)), target));
        }
        let prefix = which.map_or("", |w| self.prefix_texts[w].as_str());
        let text = self.exact(prefix, body, target, &mut rng)?;
        let prompt = if let Some((spec, count)) = self.images {
            // evalscope's order: the text, then the images.
            let mut parts = vec![ContentPart::Text(text.into())];
            for _ in 0..count {
                parts.push(ContentPart::ImageUrl(
                    images::data_url(spec, &mut rng)?.into(),
                ));
            }
            PromptItem::Messages(vec![ChatMessage::new("user", parts)].into())
        } else if self.chat {
            PromptItem::Messages(vec![ChatMessage::text("user", &text)].into())
        } else {
            PromptItem::Text(RString::from(text))
        };
        Ok(item(prompt, target + self.image_tokens as usize))
    }

    /// `prefix` followed by text from `body`, adjusted until it measures `target` tokens.
    fn exact(
        &self,
        prefix: &str,
        mut body: Vec<u32>,
        target: usize,
        rng: &mut StdRng,
    ) -> Result<String, PluginError> {
        let original = body.clone();
        for restart in 0..=RESTARTS {
            for _ in 0..ROUNDS {
                let text = format!("{prefix}{}", self.tok.decode(&body)?);
                let n = self.measure(&text)?;
                if n == target {
                    return Ok(text);
                }
                // Re-encode the body so the next adjustment works on the tokens it really is.
                body = self.tok.encode(&text[prefix.len()..], false)?;
                if n > target {
                    let cut = (n - target).min(body.len());
                    body.truncate(body.len() - cut);
                } else {
                    body.extend(self.random_tokens(rng, target - n));
                }
            }
            // Stuck between two lengths: start again from the drawn tokens with a fresh tail.
            body = original.clone();
            let keep = body.len().saturating_sub(1 + restart);
            body.truncate(keep);
            body.extend(self.random_tokens(rng, original.len() - keep));
        }
        Err(PluginError::other(format!(
            "could not build a prompt of exactly {target} tokens with this tokenizer; try another --seed or length range"
        )))
    }
}

fn item(prompt: PromptItem, tokens: usize) -> DatasetItem {
    let mut item = DatasetItem::new(prompt);
    item.prompt_tokens = Some(tokens as u64).into();
    item
}

/// `random`.
pub struct Random {
    queues: Vec<Receiver<Result<DatasetItem, PluginError>>>,
    next: usize,
}

impl DatasetSourcePlugin for Random {
    const ID: &'static str = "random";
    const DESCRIPTION: &'static str =
        "prompts of an exact token length from the tokenizer's vocabulary (needs --tokenizer-path)";
    const OPTION_KEYS: Option<&'static [&'static str]> = Some(&[]);

    fn new(config: &DatasetConfig, tokenizer: Option<TokenizerRef>) -> Result<Self, PluginError> {
        Random::start(config, tokenizer, None)
    }

    fn next_item(&mut self) -> Result<Option<DatasetItem>, PluginError> {
        let queue = &self.queues[self.next % self.queues.len()];
        self.next += 1;
        match queue.recv() {
            Ok(item) => item.map(Some),
            Err(_) => Err(PluginError::other("a prompt worker stopped")),
        }
    }
}

impl Random {
    fn start(
        config: &DatasetConfig,
        tokenizer: Option<TokenizerRef>,
        images: Option<(ImageSpec, u32)>,
    ) -> Result<Self, PluginError> {
        Random::start_shaped(config, tokenizer, images, Shape::One)
    }

    fn start_shaped(
        config: &DatasetConfig,
        tokenizer: Option<TokenizerRef>,
        images: Option<(ImageSpec, u32)>,
        shape: Shape,
    ) -> Result<Self, PluginError> {
        let id = match (images.is_some(), shape) {
            (true, _) => "random_vl",
            (false, Shape::One) => "random",
            (false, Shape::Batch(_)) => "random_embedding_batch",
            (false, Shape::Rerank { .. }) => "random_rerank",
            (false, Shape::Conversation(_)) => "random_multi_turn",
        };
        let tokenizer = tokenizer.ok_or_else(|| {
            PluginError::config(format!(
                "the {id} dataset needs --tokenizer-path (a tokenizer.json or a directory holding one)"
            ))
        })?;
        let mut recipe = Recipe::new(config, Tok(tokenizer), images)?;
        recipe.shape = shape;
        let recipe = Arc::new(recipe);
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 8);
        let mut queues = Vec::with_capacity(workers);
        for w in 0..workers {
            let (tx, rx) = sync_channel(AHEAD);
            let recipe = recipe.clone();
            std::thread::Builder::new()
                .name(format!("perf-random-{w}"))
                .spawn(move || {
                    let mut index = w as u64;
                    // Ends when the source is dropped (the send fails).
                    while tx.send(recipe.build(index)).is_ok() {
                        index += workers as u64;
                    }
                })
                .map_err(|e| PluginError::other(format!("cannot start a prompt worker: {e}")))?;
            queues.push(rx);
        }
        Ok(Random { queues, next: 0 })
    }
}

/// `random_multi_turn`.
pub struct RandomMultiTurn(Random, crate::extras::Extras);

/// `random_multi_turn`'s `--dataset-args` (evalscope's multi-turn options).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MultiTurnKnobs {
    #[serde(default)]
    pub(crate) first_turn_length: Option<Length>,
    #[serde(default)]
    pub(crate) subsequent_turn_length: Option<Length>,
    /// evalscope's length estimate without a tokenizer: `random_multi_turn` always has one;
    /// `swe_smith` built live drops short trajectories by it.
    #[serde(default)]
    pub(crate) chars_per_token: Option<f64>,
    /// Deprecated in evalscope; the prompt workers are perf's own.
    #[serde(default)]
    #[allow(dead_code)]
    num_workers: Option<u64>,
    /// Read by `extras.rs`.
    #[serde(default)]
    #[allow(dead_code)]
    turn_max_tokens: Option<serde_json::Value>,
    /// Read by `extras.rs`.
    #[serde(default)]
    #[allow(dead_code)]
    system_prompt_tokens: Option<serde_json::Value>,
}

/// A token count, or a `[min, max]` range drawn uniformly.
#[derive(serde::Deserialize)]
#[serde(untagged)]
pub(crate) enum Length {
    One(u64),
    Range([u64; 2]),
}

impl Length {
    pub(crate) fn range(&self, key: &str) -> Result<(u64, u64), PluginError> {
        let (lo, hi) = match *self {
            Length::One(n) => (n, n),
            Length::Range([lo, hi]) => (lo, hi),
        };
        if lo == 0 || lo > hi {
            return Err(PluginError::config(format!(
                "--dataset-args {key} must be a token count >= 1 or a [min, max] range with 1 <= min <= max"
            )));
        }
        Ok((lo, hi))
    }
}

impl DatasetSourcePlugin for RandomMultiTurn {
    const ID: &'static str = "random_multi_turn";
    const DESCRIPTION: &'static str =
        "conversations of --min-turns..--max-turns random user turns of exact token lengths (needs --multi-turn, --tokenizer-path)";
    const OPTION_KEYS: Option<&'static [&'static str]> = Some(MULTI_TURN_KEYS);

    fn new(config: &DatasetConfig, tokenizer: Option<TokenizerRef>) -> Result<Self, PluginError> {
        needs_multi_turn(config, Self::ID)?;
        let Some(max) = config.max_turns else {
            return Err(PluginError::config(
                "random_multi_turn needs --max-turns (turns per conversation are drawn from --min-turns to --max-turns)",
            ));
        };
        let min = config.min_turns.max(1);
        if max < min {
            return Err(PluginError::config(format!(
                "--max-turns ({max}) must be at least --min-turns ({min})"
            )));
        }
        let knobs: MultiTurnKnobs = config.options()?;
        let turns = Turns {
            min,
            max,
            first: knobs
                .first_turn_length
                .as_ref()
                .map(|l| l.range("first_turn_length"))
                .transpose()?,
            subsequent: knobs
                .subsequent_turn_length
                .as_ref()
                .map(|l| l.range("subsequent_turn_length"))
                .transpose()?,
        };
        let mut config = config.clone();
        // Conversations go out as chat messages, never as token ids.
        config.tokenize_prompt = false;
        config.apply_chat_template = true;
        let tok = tokenizer.map(Tok);
        let extras = crate::extras::Extras::from_config(&config, tok.as_ref())?;
        let random =
            Random::start_shaped(&config, tok.map(|t| t.0), None, Shape::Conversation(turns))?;
        Ok(RandomMultiTurn(random, extras))
    }

    fn next_item(&mut self) -> Result<Option<DatasetItem>, PluginError> {
        Ok(self.0.next_item()?.map(|item| self.1.apply(item)))
    }
}

/// `random_vl`: `random` text after `--image-num` generated images.
pub struct RandomVl(Random);

impl DatasetSourcePlugin for RandomVl {
    const ID: &'static str = "random_vl";
    const DESCRIPTION: &'static str =
        "random prompts of an exact text length after --image-num generated PNG images";
    const OPTION_KEYS: Option<&'static [&'static str]> = Some(&[]);

    fn new(config: &DatasetConfig, tokenizer: Option<TokenizerRef>) -> Result<Self, PluginError> {
        if config.tokenize_prompt {
            return Err(PluginError::config(
                "random_vl sends images in chat messages; --tokenize-prompt cannot carry them",
            ));
        }
        if !config.apply_chat_template {
            return Err(PluginError::config(
                "random_vl sends images in chat messages: use a chat/completions URL (or --apply-chat-template)",
            ));
        }
        if config.image_width == 0 || config.image_height == 0 {
            return Err(PluginError::config(
                "--image-width and --image-height must be at least 1",
            ));
        }
        let spec = ImageSpec {
            width: config.image_width,
            height: config.image_height,
            mode: Mode::parse(&config.image_format)?,
        };
        Random::start(config, tokenizer, Some((spec, config.image_num))).map(RandomVl)
    }

    fn next_item(&mut self) -> Result<Option<DatasetItem>, PluginError> {
        self.0.next_item()
    }
}

/// Plain text for embedding and rerank servers: no chat template, no token ids.
fn plain(config: &DatasetConfig) -> DatasetConfig {
    DatasetConfig {
        apply_chat_template: false,
        tokenize_prompt: false,
        ..config.clone()
    }
}

/// `--dataset-args` knobs of the embedding and rerank datasets.
#[derive(serde::Deserialize)]
#[serde(default)]
pub(crate) struct InputKnobs {
    pub batch_size: usize,
    pub num_documents: usize,
    pub document_length_ratio: f64,
}

impl Default for InputKnobs {
    fn default() -> Self {
        InputKnobs {
            batch_size: 8,
            num_documents: 10,
            document_length_ratio: 5.0,
        }
    }
}

/// `batch_size`, `num_documents`, `document_length_ratio` from `--dataset-args`.
pub(crate) fn knobs(config: &DatasetConfig) -> Result<InputKnobs, PluginError> {
    let knobs: InputKnobs = match &config.options {
        serde_json::Value::Object(o) => {
            // Other datasets' options may be there too; take only these.
            let mine: serde_json::Map<String, serde_json::Value> = o
                .iter()
                .filter(|(k, _)| {
                    ["batch_size", "num_documents", "document_length_ratio"].contains(&k.as_str())
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            serde_json::from_value(serde_json::Value::Object(mine))
                .map_err(|e| PluginError::config(format!("--dataset-args: {e}")))?
        }
        _ => InputKnobs::default(),
    };
    if knobs.batch_size == 0 || knobs.num_documents == 0 || knobs.document_length_ratio <= 0.0 {
        return Err(PluginError::config(
            "batch_size and num_documents must be at least 1 and document_length_ratio above 0",
        ));
    }
    Ok(knobs)
}

/// `random_embedding`: `random` text for an embedding server (no template).
pub struct RandomEmbedding(Random);

impl DatasetSourcePlugin for RandomEmbedding {
    const ID: &'static str = "random_embedding";
    const DESCRIPTION: &'static str =
        "random texts of an exact token length in [--min-prompt-length, --max-prompt-length] for embeddings";
    const OPTION_KEYS: Option<&'static [&'static str]> = Some(&[]);

    fn new(config: &DatasetConfig, tokenizer: Option<TokenizerRef>) -> Result<Self, PluginError> {
        Random::start(&plain(config), tokenizer, None).map(RandomEmbedding)
    }

    fn next_item(&mut self) -> Result<Option<DatasetItem>, PluginError> {
        self.0.next_item()
    }
}

/// `random_embedding_batch`: `batch_size` random texts per request.
pub struct RandomEmbeddingBatch(Random);

impl DatasetSourcePlugin for RandomEmbeddingBatch {
    const ID: &'static str = "random_embedding_batch";
    const DESCRIPTION: &'static str =
        "batches of random texts (batch_size, default 8) as one embeddings request each";
    const EXTRA_ARGS_KEYS: &'static [&'static str] = &["batch_size"];
    const OPTION_KEYS: Option<&'static [&'static str]> = Some(&["batch_size"]);
    const OPTIONS_EXAMPLE: &'static str = r#"{"batch_size": 8}"#;

    fn new(config: &DatasetConfig, tokenizer: Option<TokenizerRef>) -> Result<Self, PluginError> {
        let shape = Shape::Batch(knobs(config)?.batch_size);
        Random::start_shaped(&plain(config), tokenizer, None, shape).map(RandomEmbeddingBatch)
    }

    fn next_item(&mut self) -> Result<Option<DatasetItem>, PluginError> {
        self.0.next_item()
    }
}

/// `random_rerank`: a random query and `num_documents` documents `document_length_ratio`
/// times its length.
pub struct RandomRerank(Random);

impl DatasetSourcePlugin for RandomRerank {
    const ID: &'static str = "random_rerank";
    const DESCRIPTION: &'static str =
        "a random query and num_documents (10) documents document_length_ratio (5) times as long, per rerank request";
    const EXTRA_ARGS_KEYS: &'static [&'static str] = &["num_documents", "document_length_ratio"];
    const OPTION_KEYS: Option<&'static [&'static str]> =
        Some(&["num_documents", "document_length_ratio"]);
    const OPTIONS_EXAMPLE: &'static str = r#"{"num_documents": 4, "document_length_ratio": 2.0}"#;

    fn new(config: &DatasetConfig, tokenizer: Option<TokenizerRef>) -> Result<Self, PluginError> {
        let k = knobs(config)?;
        let shape = Shape::Rerank {
            documents: k.num_documents,
            ratio: k.document_length_ratio,
        };
        Random::start_shaped(&plain(config), tokenizer, None, shape).map(RandomRerank)
    }

    fn next_item(&mut self) -> Result<Option<DatasetItem>, PluginError> {
        self.0.next_item()
    }
}

/// The trie agentic workloads (applied-compute/trie, re-hosted as `evalscope/trie-workloads`):
/// each line is a recorded agent trace of token lengths and tool-call latencies, replayed as a
/// conversation of synthetic turns of those exact lengths: the first turn the user's prompt,
/// every later one a tool's output sent after the tool's recorded latency, each with the
/// recorded reply length as its `max_tokens` (pass `--extra-args '{"ignore_eos": true}'` for
/// the server to generate all of it).
pub struct Trie {
    recipe: Recipe,
    lines: std::io::Lines<std::io::BufReader<std::fs::File>>,
    path: String,
    line_no: u64,
    extras: crate::extras::Extras,
}

/// One trace line.
#[derive(serde::Deserialize)]
struct TrieTrace {
    input_prompt_length: u64,
    num_turns: usize,
    assistant_response_length: Vec<u64>,
    tool_call_output_length: Vec<u64>,
    tool_call_latency: Vec<f64>,
    final_assistant_response_length: u64,
}

impl Trie {
    fn open(
        config: &DatasetConfig,
        tokenizer: Option<TokenizerRef>,
        id: &str,
        file: &'static str,
    ) -> Result<Self, PluginError> {
        needs_multi_turn(config, id)?;
        let tok = Tok(tokenizer.ok_or_else(|| {
            PluginError::config(format!(
                "the {id} dataset needs --tokenizer-path: its turns are synthesized to the recorded token lengths"
            ))
        })?);
        let extras = crate::extras::Extras::from_config(config, Some(&tok))?;
        let path = crate::path_or_hub(
            config,
            id,
            &crate::HubFile {
                modelscope: "evalscope/trie-workloads",
                huggingface: "evalscope/trie-workloads",
                file,
                huggingface_file: None,
            },
            "a .jsonl of trie traces (input_prompt_length, num_turns, assistant_response_length, tool_call_output_length, tool_call_latency, final_assistant_response_length)",
        )?;
        let mut config = config.clone();
        config.tokenize_prompt = false;
        config.apply_chat_template = true;
        config.prefix_length = 0;
        Ok(Trie {
            recipe: Recipe::new(&config, tok, None)?,
            lines: crate::files::open(&path)?,
            path,
            line_no: 0,
            extras,
        })
    }

    fn next(&mut self) -> Result<Option<DatasetItem>, PluginError> {
        for line in self.lines.by_ref() {
            self.line_no += 1;
            let line = crate::files::line_text(line, &self.path, self.line_no)?;
            if line.trim().is_empty() {
                continue;
            }
            let at = format!("{}:{}", self.path, self.line_no);
            let t: TrieTrace = serde_json::from_str(line.trim())
                .map_err(|e| PluginError::invalid(format!("{at}: not a trie trace: {e}")))?;
            let n = t.num_turns;
            if t.assistant_response_length.len() != n
                || t.tool_call_output_length.len() != n
                || t.tool_call_latency.len() != n
            {
                return Err(PluginError::invalid(format!(
                    "{at}: num_turns is {n} but the per-turn lists have {}, {} and {} entries",
                    t.assistant_response_length.len(),
                    t.tool_call_output_length.len(),
                    t.tool_call_latency.len()
                )));
            }
            let mut rng = StdRng::seed_from_u64(item_seed(self.recipe.seed, self.line_no));
            let mut turns = Vec::with_capacity(n + 1);
            let mut budgets = Vec::with_capacity(n + 1);
            let mut waits = Vec::with_capacity(n + 1);
            let (first, _) = self.recipe.text(
                &mut rng,
                self.line_no << 16,
                t.input_prompt_length.max(1) as usize,
            )?;
            turns.push(vec![ChatMessage::text("user", &first)]);
            budgets.push(match n {
                0 => t.final_assistant_response_length,
                _ => t.assistant_response_length[0],
            });
            waits.push(0.0);
            for i in 0..n {
                let (tool, _) = self.recipe.text(
                    &mut rng,
                    (self.line_no << 16) + 1 + i as u64,
                    t.tool_call_output_length[i].max(1) as usize,
                )?;
                turns.push(vec![ChatMessage::text("user", &tool)]);
                budgets.push(if i + 1 == n {
                    t.final_assistant_response_length
                } else {
                    t.assistant_response_length[i + 1]
                });
                waits.push(t.tool_call_latency[i].max(0.0));
            }
            let mut item = DatasetItem::conversation(turns);
            item.set_turn_max_tokens(budgets.into_iter().map(|b| b.max(1)).collect());
            item.set_turn_wait_s(waits);
            return Ok(Some(self.extras.apply(item)));
        }
        Ok(None)
    }
}

macro_rules! trie {
    ($name:ident, $id:literal, $file:literal, $what:literal) => {
        #[doc = concat!("`", $id, "`.")]
        pub struct $name(Trie);

        impl DatasetSourcePlugin for $name {
            const ID: &'static str = $id;
            const DESCRIPTION: &'static str = $what;
            const OPTION_KEYS: Option<&'static [&'static str]> = Some(MULTI_TURN_KEYS);

            fn new(
                config: &DatasetConfig,
                tokenizer: Option<TokenizerRef>,
            ) -> Result<Self, PluginError> {
                Trie::open(config, tokenizer, Self::ID, $file).map($name)
            }

            fn next_item(&mut self) -> Result<Option<DatasetItem>, PluginError> {
                self.0.next()
            }
        }
    };
}

trie!(
    TrieAgenticCoding,
    "trie_agentic_coding",
    "agentic_coding_8k.jsonl",
    "coding-agent traces (trie, ~8k context) replayed turn by turn at their recorded lengths and tool latencies (needs --multi-turn, --tokenizer-path)"
);
trie!(
    TrieCodeQa,
    "trie_code_qa",
    "code_qa_8k.jsonl",
    "code Q&A traces (trie, ~8k context) replayed turn by turn at their recorded lengths and tool latencies (needs --multi-turn, --tokenizer-path)"
);
trie!(
    TrieOfficeWork,
    "trie_office_work",
    "office_work_8k.jsonl",
    "office-work agent traces (trie, ~8k context) replayed turn by turn at their recorded lengths and tool latencies (needs --multi-turn, --tokenizer-path)"
);
