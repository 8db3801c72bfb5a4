//! Built-in dataset sources with evalscope's names and semantics:
//!
//! - `line_by_line`: one prompt per line of `--dataset-path`; a line is plain text, a JSON
//!   array of chat messages, or a JSON object that is a complete request body;
//! - `openqa`: JSON lines, the `question` field;
//! - `longalpaca`: a JSON list or JSON lines, the `instruction` field.
//!
//! Every source reads lazily. Plain-text prompts outside `--min-prompt-length` /
//! `--max-prompt-length` are skipped; lengths are in characters here (token lengths need the
//! host's tokenizer, which `--tokenizer-path` provides).

mod files;
mod images;
mod random;
mod tok;

use perf_plugin_api::sdk::{DatasetConfig, DatasetSourcePlugin};
use perf_plugin_api::{DatasetItem, PluginError, TokenizerRef};

use files::{FieldLines, LengthFilter, PromptLines};

fn required_path(config: &DatasetConfig, id: &str, hint: &str) -> Result<String, PluginError> {
    config.dataset_path.clone().ok_or_else(|| {
        PluginError::config(format!(
            "the {id} dataset needs --dataset-path ({hint}); downloading it from the hub is not supported yet"
        ))
    })
}

/// `line_by_line`.
pub struct LineByLine(PromptLines);

impl DatasetSourcePlugin for LineByLine {
    const ID: &'static str = "line_by_line";
    const DESCRIPTION: &'static str =
        "one prompt per line of --dataset-path (text, a JSON messages array, or a JSON body)";

    fn new(config: &DatasetConfig, tokenizer: Option<TokenizerRef>) -> Result<Self, PluginError> {
        let path = required_path(config, Self::ID, "a text file, one prompt per line")?;
        Ok(LineByLine(PromptLines::open(
            &path,
            LengthFilter::new(config, tokenizer),
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

    fn new(config: &DatasetConfig, tokenizer: Option<TokenizerRef>) -> Result<Self, PluginError> {
        let path = required_path(
            config,
            Self::ID,
            "a .jsonl file with a `question` field, e.g. HC3-Chinese open_qa.jsonl",
        )?;
        Ok(OpenQa(FieldLines::open(
            &path,
            "question",
            LengthFilter::new(config, tokenizer),
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

    fn new(config: &DatasetConfig, tokenizer: Option<TokenizerRef>) -> Result<Self, PluginError> {
        let path = required_path(
            config,
            Self::ID,
            "a .json list or .jsonl file with an `instruction` field",
        )?;
        Ok(LongAlpaca(FieldLines::open(
            &path,
            "instruction",
            LengthFilter::new(config, tokenizer),
        )?))
    }

    fn next_item(&mut self) -> Result<Option<DatasetItem>, PluginError> {
        self.0.next_item()
    }
}

perf_plugin_api::builtin_plugins! {
    DatasetSource: LineByLine,
    DatasetSource: OpenQa,
    DatasetSource: LongAlpaca,
    DatasetSource: random::Random,
    DatasetSource: random::RandomVl,
}
