//! Built-in dataset sources with evalscope's names and semantics:
//!
//! - `line_by_line`: one prompt per line of `--dataset-path`; a line is plain text, a JSON
//!   array of chat messages, or a JSON object that is a complete request body; `custom`:
//!   every line plain text;
//! - `openqa`: JSON lines, the `question` field (HC3-Chinese `open_qa.jsonl` from the hub when no
//!   `--dataset-path` is given);
//! - `longalpaca`: a JSON list or JSON lines, the `instruction` field (LongAlpaca-12k from the
//!   hub when no `--dataset-path` is given);
//! - `flickr8k`: image + caption pairs from WebDataset shards (`webdataset.rs`), from the hub or
//!   `--dataset-path`;
//! - `kontext_bench`: image-editing instructions + their images from an image-folder
//!   `metadata.jsonl` (`imagefolder.rs`), from the hub or `--dataset-path`;
//! - `mmmu_multi_image`: MMMU's multi-image questions from its parquet files (`mmmu.rs`,
//!   parquet reading in `tables.rs`), from the hub or `--dataset-path`;
//! - `random` / `random_vl`: prompts of an exact token length (`random.rs`), after generated
//!   images for `random_vl` (`images.rs`);
//! - conversations for `--multi-turn` (`conversations.rs`, `random.rs`): `random_multi_turn`,
//!   `custom_multi_turn`, `share_gpt_zh_multi_turn`, `share_gpt_en_multi_turn`, `swe_smith`
//!   (evalscope's pre-built file, or built live from the trajectories: `swe.rs`), the trie agent
//!   traces `trie_agentic_coding`, `trie_code_qa`, `trie_office_work`; and the
//!   ShareGPT files as single requests with their history, `share_gpt_zh`, `share_gpt_en`;
//! - `workload_trace`: recorded requests replayed on their recorded schedule (`trace.rs`), and
//!   `mooncake_trace`: Mooncake-style traces whose hash ids become shared token blocks
//!   (`hashids.rs`);
//! - `speed_benchmark`, `speed_benchmark_long`: evalscope's speed-by-prompt-length table
//!   (`speed.rs`);
//! - `open_decisions`: OpenDecisions' questions as System One decision bodies (`decisions.rs`);
//! - for embedding and rerank servers: `random_embedding`, `random_embedding_batch`,
//!   `random_rerank` (`random.rs`), and `embedding`, `embedding_batch`, `rerank` from files
//!   (`inputs.rs`).
//!
//! Every source reads lazily. Plain-text prompts outside `--min-prompt-length` /
//! `--max-prompt-length` are skipped: lengths in tokens with the host's tokenizer
//! (`--tokenizer-path`), in characters without one, as evalscope measures them.

mod conversations;
mod decisions;
mod extras;
mod files;
mod fit;
mod hashids;
mod imagefolder;
mod images;
mod inputs;
mod mmmu;
mod random;
mod speed;
mod swe;
mod tables;
mod tok;
mod trace;
mod webdataset;

use perf_plugin_api::sdk::{DatasetConfig, DatasetSourcePlugin};
use perf_plugin_api::{DatasetItem, PluginError, TokenizerRef};

use files::{FieldLines, LengthFilter, PromptLines};

pub(crate) fn required_path(
    config: &DatasetConfig,
    id: &str,
    hint: &str,
) -> Result<String, PluginError> {
    config.dataset_path.clone().ok_or_else(|| {
        PluginError::config(format!("the {id} dataset needs --dataset-path ({hint})"))
    })
}

/// Where a dataset lives on each hub: (ModelScope repo, Hugging Face repo, file, and the
/// file's path on Hugging Face when it differs).
pub(crate) struct HubFile {
    modelscope: &'static str,
    huggingface: &'static str,
    file: &'static str,
    huggingface_file: Option<&'static str>,
}

/// `--dataset-path`, or the dataset's file fetched from `--data-source`'s hub.
pub(crate) fn path_or_hub(
    config: &DatasetConfig,
    id: &str,
    hub: &HubFile,
    hint: &str,
) -> Result<String, PluginError> {
    if let Some(path) = &config.dataset_path {
        return Ok(path.clone());
    }
    let source = perf_hub::Source::parse(&config.data_source).map_err(|e| {
        PluginError::config(format!(
            "{e}; the {id} dataset then needs --dataset-path ({hint})"
        ))
    })?;
    let (repo, file) = match source {
        perf_hub::Source::ModelScope => (hub.modelscope, hub.file),
        perf_hub::Source::HuggingFace => {
            (hub.huggingface, hub.huggingface_file.unwrap_or(hub.file))
        }
    };
    perf_hub::Hub::from_env(source)
        .fetch(perf_hub::Kind::Dataset, repo, file)
        .map(|p| p.to_string_lossy().into_owned())
        .map_err(|e| {
            PluginError::config(format!(
                "the {id} dataset could not be fetched: {e}; or pass --dataset-path ({hint})"
            ))
        })
}

/// `line_by_line`.
pub struct LineByLine(PromptLines);

impl DatasetSourcePlugin for LineByLine {
    const ID: &'static str = "line_by_line";
    const DESCRIPTION: &'static str =
        "one prompt per line of --dataset-path (text, a JSON messages array, or a JSON body)";
    const OPTION_KEYS: Option<&'static [&'static str]> = Some(fit::TEXT_KEYS);

    fn new(config: &DatasetConfig, tokenizer: Option<TokenizerRef>) -> Result<Self, PluginError> {
        let path = required_path(config, Self::ID, "a text file, one prompt per line")?;
        Ok(LineByLine(PromptLines::open(
            &path,
            LengthFilter::for_text(config, tokenizer)?,
        )?))
    }

    fn next_item(&mut self) -> Result<Option<DatasetItem>, PluginError> {
        self.0.next_item()
    }
}

/// `openqa`.
pub struct OpenQa(FieldLines);

impl DatasetSourcePlugin for OpenQa {
    const ID: &'static str = "openqa";
    const DESCRIPTION: &'static str =
        "short questions: the `question` field of a JSON-lines file (--dataset-path)";
    const OPTION_KEYS: Option<&'static [&'static str]> = Some(fit::TEXT_KEYS);

    fn new(config: &DatasetConfig, tokenizer: Option<TokenizerRef>) -> Result<Self, PluginError> {
        let hub = HubFile {
            modelscope: "AI-ModelScope/HC3-Chinese",
            huggingface: "Hello-SimpleAI/HC3-Chinese",
            file: "open_qa.jsonl",
            huggingface_file: None,
        };
        let path = path_or_hub(
            config,
            Self::ID,
            &hub,
            "a .jsonl file with a `question` field, e.g. HC3-Chinese open_qa.jsonl",
        )?;
        Ok(OpenQa(FieldLines::open(
            &path,
            &["question"],
            LengthFilter::for_text(config, tokenizer)?,
        )?))
    }

    fn next_item(&mut self) -> Result<Option<DatasetItem>, PluginError> {
        self.0.next_item()
    }
}

/// `longalpaca`.
pub struct LongAlpaca(FieldLines);

impl DatasetSourcePlugin for LongAlpaca {
    const ID: &'static str = "longalpaca";
    const DESCRIPTION: &'static str =
        "long prompts: the `instruction` field of a JSON list or JSON-lines file (--dataset-path)";
    const OPTION_KEYS: Option<&'static [&'static str]> = Some(fit::TEXT_KEYS);

    fn new(config: &DatasetConfig, tokenizer: Option<TokenizerRef>) -> Result<Self, PluginError> {
        let hub = HubFile {
            modelscope: "AI-ModelScope/LongAlpaca-12k",
            huggingface: "Yukang/LongAlpaca-12k",
            file: "LongAlpaca-12k.json",
            huggingface_file: None,
        };
        let path = path_or_hub(
            config,
            Self::ID,
            &hub,
            "a .json list or .jsonl file with an `instruction` field",
        )?;
        Ok(LongAlpaca(FieldLines::open(
            &path,
            &["instruction"],
            LengthFilter::for_text(config, tokenizer)?,
        )?))
    }

    fn next_item(&mut self) -> Result<Option<DatasetItem>, PluginError> {
        self.0.next_item()
    }
}

/// `custom`: evalscope's plain-text dataset, one prompt per line of `--dataset-path`, every
/// line text (no JSON reading), filtered by length.
pub struct Custom {
    lines: std::io::Lines<std::io::BufReader<std::fs::File>>,
    filter: LengthFilter,
    path: String,
    line_no: u64,
}

impl DatasetSourcePlugin for Custom {
    const ID: &'static str = "custom";
    const DESCRIPTION: &'static str =
        "one plain-text prompt per line of --dataset-path, filtered by length (evalscope's custom)";
    const OPTION_KEYS: Option<&'static [&'static str]> = Some(&[]);

    fn new(config: &DatasetConfig, tokenizer: Option<TokenizerRef>) -> Result<Self, PluginError> {
        let path = required_path(
            config,
            Self::ID,
            "a text file, one prompt per line; for a format of your own, write a DatasetSource plugin (sdk-examples/csv-dataset is a complete one) and load it with --plugin",
        )?;
        Ok(Custom {
            lines: files::open(&path)?,
            filter: LengthFilter::new(config, tokenizer),
            path,
            line_no: 0,
        })
    }

    fn next_item(&mut self) -> Result<Option<DatasetItem>, PluginError> {
        for line in self.lines.by_ref() {
            self.line_no += 1;
            let line = files::line_text(line, &self.path, self.line_no)?;
            if let Some(item) = self.filter.item(line.trim())? {
                return Ok(Some(item));
            }
        }
        Ok(None)
    }
}

perf_plugin_api::builtin_plugins! {
    DatasetSource: LineByLine,
    DatasetSource: OpenQa,
    DatasetSource: LongAlpaca,
    DatasetSource: Custom,
    DatasetSource: random::Random,
    DatasetSource: random::RandomVl,
    DatasetSource: random::RandomMultiTurn,
    DatasetSource: random::TrieAgenticCoding,
    DatasetSource: random::TrieCodeQa,
    DatasetSource: random::TrieOfficeWork,
    DatasetSource: conversations::CustomMultiTurn,
    DatasetSource: conversations::SweSmith,
    DatasetSource: conversations::ShareGptZh,
    DatasetSource: conversations::ShareGptEn,
    DatasetSource: conversations::ShareGptZhMultiTurn,
    DatasetSource: conversations::ShareGptEnMultiTurn,
    DatasetSource: trace::WorkloadTrace,
    DatasetSource: hashids::MooncakeTrace,
    DatasetSource: speed::SpeedBenchmark,
    DatasetSource: speed::SpeedBenchmarkLong,
    DatasetSource: webdataset::Flickr8k,
    DatasetSource: imagefolder::KontextBench,
    DatasetSource: mmmu::MmmuMultiImage,
    DatasetSource: decisions::OpenDecisions,
    DatasetSource: random::RandomEmbedding,
    DatasetSource: random::RandomEmbeddingBatch,
    DatasetSource: random::RandomRerank,
    DatasetSource: inputs::Embedding,
    DatasetSource: inputs::EmbeddingBatch,
    DatasetSource: inputs::Rerank,
}
