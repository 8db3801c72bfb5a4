//! Datasets for embedding and rerank servers, from `--dataset-path`, as evalscope reads them:
//!
//! - `embedding`: a `.txt` file, one text per line; or JSON lines / a JSON list whose records
//!   hold the text in `text`, `input`, `sentence` or `content`;
//! - `embedding_batch`: the same texts, `batch_size` (`--dataset-args`, default 8) to a request,
//!   sent as `{"input": [...]}`;
//! - `rerank`: JSON lines, a JSON list, or a `.txt` of JSON lines, each record
//!   `{"query", "documents" | "passages" | "texts"}`; documents are strings or `{"text"}`.
//!
//! Texts are plain (no chat template); `--min-prompt-length` / `--max-prompt-length` filter
//! embedding texts as for other file datasets.

use std::io::{BufReader, Lines};

use perf_plugin_api::sdk::{DatasetConfig, DatasetSourcePlugin};
use perf_plugin_api::{DatasetItem, PluginError, PromptItem, TokenizerRef};
use serde_json::{json, Value};

use crate::files::{line_text, open, FieldLines, LengthFilter};
use crate::random::knobs;

const TEXT_FIELDS: &[&str] = &["text", "input", "sentence", "content"];
const DOCUMENT_FIELDS: &[&str] = &["documents", "passages", "texts"];

fn plain(config: &DatasetConfig) -> DatasetConfig {
    DatasetConfig {
        apply_chat_template: false,
        ..config.clone()
    }
}

fn path(config: &DatasetConfig, id: &str, hint: &str) -> Result<String, PluginError> {
    config.dataset_path.clone().ok_or_else(|| {
        PluginError::config(format!("the {id} dataset needs --dataset-path ({hint})"))
    })
}

/// Texts of a `.txt` file, line by line.
struct TextLines {
    lines: Lines<BufReader<std::fs::File>>,
    path: String,
    line_no: u64,
    filter: LengthFilter,
}

impl TextLines {
    fn next_item(&mut self) -> Result<Option<DatasetItem>, PluginError> {
        for line in self.lines.by_ref() {
            self.line_no += 1;
            let text = line_text(line, &self.path, self.line_no)?;
            if let Some(item) = self.filter.item(text.trim())? {
                return Ok(Some(item));
            }
        }
        Ok(None)
    }
}

enum Texts {
    Plain(TextLines),
    Records(FieldLines),
}

impl Texts {
    fn open(
        config: &DatasetConfig,
        tokenizer: Option<TokenizerRef>,
        id: &str,
    ) -> Result<Self, PluginError> {
        let path = path(
            config,
            id,
            "a .txt file (one text per line) or JSON lines with a text field",
        )?;
        let filter = LengthFilter::new(&plain(config), tokenizer);
        if path.ends_with(".txt") {
            return Ok(Texts::Plain(TextLines {
                lines: open(&path)?,
                path,
                line_no: 0,
                filter,
            }));
        }
        Ok(Texts::Records(FieldLines::open(
            &path,
            TEXT_FIELDS,
            filter,
        )?))
    }

    fn next_item(&mut self) -> Result<Option<DatasetItem>, PluginError> {
        match self {
            Texts::Plain(t) => t.next_item(),
            Texts::Records(r) => r.next_item(),
        }
    }
}

/// `embedding`.
pub struct Embedding(Texts);

impl DatasetSourcePlugin for Embedding {
    const ID: &'static str = "embedding";
    const DESCRIPTION: &'static str =
        "texts to embed from --dataset-path (.txt lines, or JSON with text/input/sentence/content)";
    const ALIASES: &'static [&'static str] = &["embed"];
    const OPTION_KEYS: Option<&'static [&'static str]> = Some(&[]);

    fn new(config: &DatasetConfig, tokenizer: Option<TokenizerRef>) -> Result<Self, PluginError> {
        Texts::open(config, tokenizer, Self::ID).map(Embedding)
    }

    fn next_item(&mut self) -> Result<Option<DatasetItem>, PluginError> {
        self.0.next_item()
    }
}

/// `embedding_batch`.
pub struct EmbeddingBatch {
    texts: Texts,
    batch: usize,
}

impl DatasetSourcePlugin for EmbeddingBatch {
    const ID: &'static str = "embedding_batch";
    const DESCRIPTION: &'static str =
        "the embedding dataset's texts, batch_size (8) to a request as one input list";
    const EXTRA_ARGS_KEYS: &'static [&'static str] = &["batch_size"];
    const OPTION_KEYS: Option<&'static [&'static str]> = Some(&["batch_size"]);
    const OPTIONS_EXAMPLE: &'static str = r#"{"batch_size": 8}"#;

    fn new(config: &DatasetConfig, tokenizer: Option<TokenizerRef>) -> Result<Self, PluginError> {
        Ok(EmbeddingBatch {
            texts: Texts::open(config, tokenizer, Self::ID)?,
            batch: knobs(config)?.batch_size,
        })
    }

    fn next_item(&mut self) -> Result<Option<DatasetItem>, PluginError> {
        let mut texts = Vec::with_capacity(self.batch);
        let mut tokens = Some(0u64);
        while texts.len() < self.batch {
            let Some(item) = self.texts.next_item()? else {
                break;
            };
            tokens = tokens
                .zip(item.prompt_tokens.into_option())
                .map(|(a, b)| a + b);
            if let Ok(PromptItem::Text(t)) = item.prompt() {
                texts.push(t.to_string());
            }
        }
        if texts.is_empty() {
            return Ok(None);
        }
        let mut item = DatasetItem::new(PromptItem::Body(
            json!({ "input": texts }).to_string().into(),
        ));
        item.prompt_tokens = tokens.into();
        Ok(Some(item))
    }
}

/// `rerank`.
pub struct Rerank(FieldLines);

impl DatasetSourcePlugin for Rerank {
    const ID: &'static str = "rerank";
    const DESCRIPTION: &'static str =
        "query + documents pairs from --dataset-path (JSON lines or a JSON list of {query, documents})";
    const OPTION_KEYS: Option<&'static [&'static str]> = Some(&[]);

    fn new(config: &DatasetConfig, tokenizer: Option<TokenizerRef>) -> Result<Self, PluginError> {
        let path = path(
            config,
            Self::ID,
            "JSON lines or a JSON list of {\"query\": ..., \"documents\": [...]}",
        )?;
        let filter = LengthFilter::new(&plain(config), tokenizer);
        Ok(Rerank(FieldLines::open(&path, &["query"], filter)?))
    }

    fn next_item(&mut self) -> Result<Option<DatasetItem>, PluginError> {
        let Some(record) = self.0.next_record()? else {
            return Ok(None);
        };
        let place = self.0.place();
        let query = record.get("query").and_then(Value::as_str).ok_or_else(|| {
            PluginError::invalid(format!("{place}: no `query` text in this record"))
        })?;
        let docs = DOCUMENT_FIELDS
            .iter()
            .find_map(|f| record.get(*f).and_then(Value::as_array))
            .ok_or_else(|| {
                PluginError::invalid(format!(
                    "{place}: no `documents` (or `passages`, `texts`) list in this record"
                ))
            })?;
        let documents: Vec<&str> = docs
            .iter()
            .map(|d| d.as_str().or_else(|| d.get("text").and_then(Value::as_str)))
            .collect::<Option<_>>()
            .ok_or_else(|| {
                PluginError::invalid(format!(
                    "{place}: documents must be strings or {{\"text\"}} objects"
                ))
            })?;
        Ok(Some(DatasetItem::new(PromptItem::Body(
            json!({"query": query, "documents": documents})
                .to_string()
                .into(),
        ))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(path: &std::path::Path) -> DatasetConfig {
        DatasetConfig {
            dataset_path: Some(path.to_string_lossy().into_owned()),
            ..DatasetConfig::default()
        }
    }

    fn bodies(mut next: impl FnMut() -> Result<Option<DatasetItem>, PluginError>) -> Vec<Value> {
        std::iter::from_fn(|| next().expect("item"))
            .map(|i| match i.into_prompt().expect("a known prompt") {
                PromptItem::Body(b) => serde_json::from_str(b.as_str()).expect("JSON"),
                PromptItem::Text(t) => json!(t.as_str()),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn embedding_texts_come_from_txt_lines_or_any_text_field() {
        let dir = tempfile::tempdir().expect("tmp");
        let txt = dir.path().join("texts.txt");
        std::fs::write(&txt, "first text\n\n  second text  \n").expect("write");
        let mut source = Embedding::new(&config(&txt), None).expect("opens");
        assert_eq!(
            bodies(|| source.next_item()),
            [json!("first text"), json!("second text")]
        );
        let jsonl = dir.path().join("texts.jsonl");
        std::fs::write(
            &jsonl,
            "{\"text\": \"a\"}\n{\"sentence\": \"b\"}\n{\"content\": \"c\"}\n{\"input\": \"d\"}\n",
        )
        .expect("write");
        let mut source = Embedding::new(&config(&jsonl), None).expect("opens");
        assert_eq!(
            bodies(|| source.next_item()),
            [json!("a"), json!("b"), json!("c"), json!("d")]
        );
        std::fs::write(&jsonl, "{\"text\": \"a\"}\n{\"title\": \"b\"}\n").expect("write");
        let mut source = Embedding::new(&config(&jsonl), None).expect("opens");
        source.next_item().expect("first");
        let err = source.next_item().expect_err("no text field");
        assert!(err.message.contains("texts.jsonl:2"), "{}", err.message);
    }

    #[test]
    fn embedding_batches_hold_batch_size_texts_and_the_last_holds_the_rest() {
        let dir = tempfile::tempdir().expect("tmp");
        let txt = dir.path().join("texts.txt");
        std::fs::write(&txt, "a\nb\nc\nd\ne\n").expect("write");
        let mut c = config(&txt);
        c.options = json!({"batch_size": 2});
        let mut source = EmbeddingBatch::new(&c, None).expect("opens");
        assert_eq!(
            bodies(|| source.next_item()),
            [
                json!({"input": ["a", "b"]}),
                json!({"input": ["c", "d"]}),
                json!({"input": ["e"]})
            ]
        );
        c.options = json!({"batch_size": 0});
        let err = EmbeddingBatch::new(&c, None).err().expect("zero");
        assert!(err.message.contains("batch_size"), "{}", err.message);
    }

    #[test]
    fn rerank_records_take_documents_passages_or_texts() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("pairs.jsonl");
        std::fs::write(
            &path,
            concat!(
                "{\"query\": \"q1\", \"documents\": [\"d1\", \"d2\"]}\n",
                "{\"query\": \"q2\", \"passages\": [{\"text\": \"p1\"}]}\n",
                "{\"query\": \"q3\", \"texts\": [\"t1\"]}\n",
                "{\"query\": \"q4\"}\n",
            ),
        )
        .expect("write");
        let mut source = Rerank::new(&config(&path), None).expect("opens");
        for want in [
            json!({"query": "q1", "documents": ["d1", "d2"]}),
            json!({"query": "q2", "documents": ["p1"]}),
            json!({"query": "q3", "documents": ["t1"]}),
        ] {
            let item = source.next_item().expect("item").expect("a record");
            let Ok(PromptItem::Body(b)) = item.into_prompt() else {
                panic!("a body");
            };
            assert_eq!(
                serde_json::from_str::<Value>(b.as_str()).expect("JSON"),
                want
            );
        }
        let err = source.next_item().expect_err("no documents");
        assert!(err.message.contains("pairs.jsonl:4"), "{}", err.message);
    }
}
