//! `open_decisions`: the OpenDecisions benchmark (`evalscope/OpenDecisions`, its `test` split)
//! as System One decision requests, as evalscope builds them: each record's `state`, and its
//! `question` (without the fields that are null) as the one question named `answer`:
//! `{"state": ..., "questions": {"answer": {...}}}`, a complete body for `--api systemone`
//! (which adds the model). The records come from the split's parquet files or JSON lines,
//! from the hub or from `--dataset-path` (a file, or a directory holding the split's files).

use std::path::{Path, PathBuf};

use perf_plugin_api::sdk::{DatasetConfig, DatasetSourcePlugin};
use perf_plugin_api::{DatasetItem, PluginError, PromptItem, TokenizerRef};
use serde_json::{json, Map, Value};

use crate::files::{FieldLines, LengthFilter};
use crate::tables::{self, Table};

const HUB_REPO: &str = "evalscope/OpenDecisions";
const SPLIT: &str = "test";
const EXTENSIONS: [&str; 3] = [".parquet", ".jsonl", ".json"];
const HINT: &str =
    "OpenDecisions' test split: parquet files or JSON lines with `state` and `question`";

/// One file of records.
enum Records {
    Parquet(Table),
    Json(Box<FieldLines>),
}

impl Records {
    fn open(path: &Path, config: &DatasetConfig) -> Result<Self, PluginError> {
        if path.extension().is_some_and(|x| x == "parquet") {
            return Table::open(path).map(Records::Parquet);
        }
        let shown = path.to_string_lossy();
        FieldLines::open(&shown, &[], LengthFilter::new(config, None))
            .map(|f| Records::Json(Box::new(f)))
    }

    /// The next record, and where it is.
    fn next(&mut self) -> Result<Option<(Value, String)>, PluginError> {
        match self {
            Records::Parquet(table) => Ok(table
                .next_row()?
                .map(|row| (tables::row_json(&row), table.place()))),
            Records::Json(lines) => Ok(lines.next_record()?.map(|r| (r, lines.place()))),
        }
    }
}

/// The request body of one record.
fn body(record: Value, place: &str) -> Result<String, PluginError> {
    let Value::Object(mut record) = record else {
        return Err(PluginError::invalid(format!(
            "{place}: not a record ({HINT})"
        )));
    };
    let state = record
        .remove("state")
        .ok_or_else(|| PluginError::invalid(format!("{place}: no `state` ({HINT})")))?;
    let question: Map<String, Value> = match record.remove("question") {
        Some(Value::Object(q)) => q.into_iter().filter(|(_, v)| !v.is_null()).collect(),
        _ => {
            return Err(PluginError::invalid(format!(
                "{place}: no `question` object ({HINT})"
            )))
        }
    };
    Ok(json!({"state": state, "questions": {"answer": question}}).to_string())
}

/// `open_decisions`.
pub struct OpenDecisions {
    files: std::vec::IntoIter<PathBuf>,
    current: Option<Records>,
    config: DatasetConfig,
}

fn local_files(path: &Path) -> Result<Vec<PathBuf>, PluginError> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    let mut dirs = vec![path.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| {
            PluginError::config(format!("cannot read --dataset-path {}: {e}", dir.display()))
        })?;
        for entry in entries.filter_map(Result::ok) {
            let p = entry.path();
            if p.is_dir() {
                dirs.push(p);
            } else if let Ok(rel) = p.strip_prefix(path) {
                files.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let chosen = tables::split_files(&files, "", SPLIT, &EXTENSIONS);
    if chosen.is_empty() {
        return Err(PluginError::config(format!(
            "--dataset-path {}: no {SPLIT} files ({}) there (open_decisions reads {HINT})",
            path.display(),
            EXTENSIONS.join(", ")
        )));
    }
    Ok(chosen.iter().map(|f| path.join(f)).collect())
}

impl DatasetSourcePlugin for OpenDecisions {
    const ID: &'static str = "open_decisions";
    const DESCRIPTION: &'static str =
        "OpenDecisions' test split as System One decision bodies, for --api systemone (hub, or --dataset-path)";
    const OPTION_KEYS: Option<&'static [&'static str]> = Some(&[]);

    fn new(config: &DatasetConfig, _tokenizer: Option<TokenizerRef>) -> Result<Self, PluginError> {
        let files = match &config.dataset_path {
            Some(p) => local_files(Path::new(p))?,
            None => {
                let (hub, _) = tables::hub_for(config, Self::ID, HINT)?;
                tables::hub_split(&hub, HUB_REPO, "", SPLIT, &EXTENSIONS, Self::ID, HINT)?
            }
        };
        Ok(OpenDecisions {
            files: files.into_iter(),
            current: None,
            config: config.clone(),
        })
    }

    fn next_item(&mut self) -> Result<Option<DatasetItem>, PluginError> {
        loop {
            if let Some(records) = &mut self.current {
                if let Some((record, place)) = records.next()? {
                    let body = body(record, &place)?;
                    return Ok(Some(DatasetItem::new(PromptItem::Body(body.into()))));
                }
            }
            match self.files.next() {
                Some(path) => self.current = Some(Records::open(&path, &self.config)?),
                None => return Ok(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_becomes_a_system_one_body_without_its_null_fields() {
        let record = json!({"id": "x", "state": {"text": "hi"}, "question": {"type": "noul", "instructions": "Is it?", "criteria": null}, "gold": 1});
        let b: Value = serde_json::from_str(&body(record, "f:1").expect("a body")).expect("JSON");
        assert_eq!(
            b,
            json!({"state": {"text": "hi"}, "questions": {"answer": {"type": "noul", "instructions": "Is it?"}}})
        );
        assert!(body(json!({"state": 1}), "f:2").is_err());
        assert!(body(json!([1]), "f:3").is_err());
    }
}
