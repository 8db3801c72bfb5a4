//! A dataset source that reads prompts from one column of a CSV file, lazily, one row at a
//! time (a file of any size costs one row of memory).
//!
//! `perf --plugin libcsv_dataset.so --dataset csv --dataset-path prompts.csv
//!  --dataset-args '{"column": "question"}'`
//!
//! Options (`--dataset-args`): `column` (required: the header name of the prompt column),
//! `delimiter` (one character, default `,`). Empty cells are skipped; rows outside
//! `--min-prompt-length`/`--max-prompt-length` (in characters) are skipped.

use std::fs::File;

use perf_plugin_api::sdk::{DatasetConfig, DatasetSourcePlugin};
use perf_plugin_api::{DatasetItem, PluginError, PromptItem, TokenizerRef};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    column: Option<String>,
    #[serde(default = "comma")]
    delimiter: char,
}

fn comma() -> char {
    ','
}

/// Prompts from a CSV column.
pub struct CsvDataset {
    rows: csv::StringRecordsIntoIter<File>,
    column: usize,
    min_len: u64,
    max_len: u64,
    path: String,
}

impl DatasetSourcePlugin for CsvDataset {
    const ID: &'static str = "csv";
    const DESCRIPTION: &'static str =
        "prompts from one column of a CSV file (--dataset-path, --dataset-args column)";
    const OPTION_KEYS: Option<&'static [&'static str]> = Some(&["column", "delimiter"]);
    const OPTIONS_EXAMPLE: &'static str = r#"{"column": "question", "delimiter": ";"}"#;

    fn new(config: &DatasetConfig, _tokenizer: Option<TokenizerRef>) -> Result<Self, PluginError> {
        let options: Options = config.options()?;
        let column_name = options.column.ok_or_else(|| {
            PluginError::config(
                r#"no column given: pass --dataset-args '{"column": "<header name>"}'"#,
            )
        })?;
        let path = config.dataset_path.clone().ok_or_else(|| {
            PluginError::config("no CSV file given: pass --dataset-path FILE.csv")
        })?;
        if !options.delimiter.is_ascii() {
            return Err(PluginError::config(
                "the delimiter must be one ASCII character",
            ));
        }
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(options.delimiter as u8)
            .flexible(true)
            .from_path(&path)
            .map_err(|e| PluginError::config(format!("cannot open {path}: {e}")))?;
        let headers = reader
            .headers()
            .map_err(|e| PluginError::config(format!("cannot read the header of {path}: {e}")))?;
        let column = headers
            .iter()
            .position(|h| h == column_name)
            .ok_or_else(|| {
                PluginError::config(format!(
                    "{path} has no column '{column_name}'; its columns are: {}",
                    headers.iter().collect::<Vec<_>>().join(", ")
                ))
            })?;
        Ok(CsvDataset {
            rows: reader.into_records(),
            column,
            min_len: config.min_prompt_length,
            max_len: config.max_prompt_length,
            path,
        })
    }

    fn next_item(&mut self) -> Result<Option<DatasetItem>, PluginError> {
        for row in self.rows.by_ref() {
            let row = row.map_err(|e| PluginError::io(format!("{}: {e}", self.path)))?;
            let Some(text) = row.get(self.column) else {
                continue;
            };
            let len = text.chars().count() as u64;
            if text.is_empty() || len < self.min_len || len > self.max_len {
                continue;
            }
            return Ok(Some(DatasetItem::new(PromptItem::Text(text.into()))));
        }
        Ok(None)
    }
}

perf_plugin_api::export_plugins! {
    DatasetSource: CsvDataset,
}
