//! Reading prompt files lazily.

use std::fs::File;
use std::io::{BufRead, BufReader, Lines};

use perf_plugin_api::sdk::DatasetConfig;
use perf_plugin_api::{ChatMessage, ContentPart, DatasetItem, PluginError, PromptItem};
use serde::Deserialize;
use serde_json::Value;

fn open(path: &str) -> Result<Lines<BufReader<File>>, PluginError> {
    let file = File::open(path)
        .map_err(|e| PluginError::config(format!("cannot open --dataset-path {path}: {e}")))?;
    Ok(BufReader::new(file).lines())
}

struct LengthFilter {
    min: u64,
    max: u64,
}

impl LengthFilter {
    fn new(config: &DatasetConfig) -> Self {
        LengthFilter {
            min: config.min_prompt_length,
            max: config.max_prompt_length,
        }
    }

    fn keeps(&self, text: &str) -> bool {
        let n = text.chars().count() as u64;
        !text.trim().is_empty() && n >= self.min && n <= self.max
    }
}

/// `line_by_line` lines.
pub struct PromptLines {
    lines: Lines<BufReader<File>>,
    filter: LengthFilter,
    path: String,
    line_no: u64,
}

#[derive(Deserialize)]
struct Message {
    role: String,
    content: Value,
}

fn message(m: Message) -> Result<ChatMessage, String> {
    let content = match m.content {
        Value::String(s) => vec![ContentPart::Text(s.into())],
        Value::Array(parts) => parts
            .into_iter()
            .map(|p| match (p.get("type").and_then(Value::as_str), &p) {
                (Some("text"), _) => Ok(ContentPart::Text(
                    p.get("text").and_then(Value::as_str).unwrap_or("").into(),
                )),
                (Some("image_url"), _) => Ok(ContentPart::ImageUrl(
                    p.pointer("/image_url/url")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .into(),
                )),
                _ => Err(format!("unsupported content part {p}")),
            })
            .collect::<Result<_, _>>()?,
        other => {
            return Err(format!(
                "message content must be a string or a list of parts, not {other}"
            ))
        }
    };
    Ok(ChatMessage {
        role: m.role.into(),
        content: content.into(),
    })
}

impl PromptLines {
    /// Opens `path`.
    pub fn open(path: &str, config: &DatasetConfig) -> Result<Self, PluginError> {
        Ok(PromptLines {
            lines: open(path)?,
            filter: LengthFilter::new(config),
            path: path.to_string(),
            line_no: 0,
        })
    }

    fn parse(&self, line: &str) -> Result<Option<PromptItem>, PluginError> {
        let trimmed = line.trim();
        if trimmed.starts_with('{') {
            if let Ok(Value::Object(_)) = serde_json::from_str::<Value>(trimmed) {
                return Ok(Some(PromptItem::Body(trimmed.into())));
            }
        } else if trimmed.starts_with('[') {
            if let Ok(messages) = serde_json::from_str::<Vec<Message>>(trimmed) {
                let messages = messages
                    .into_iter()
                    .map(message)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| {
                        PluginError::invalid(format!("{}:{}: {e}", self.path, self.line_no))
                    })?;
                return Ok(Some(PromptItem::Messages(messages.into())));
            }
        }
        Ok(self
            .filter
            .keeps(line)
            .then(|| PromptItem::Text(line.into())))
    }

    /// The next prompt.
    pub fn next_item(&mut self) -> Result<Option<DatasetItem>, PluginError> {
        while let Some(line) = self.lines.next() {
            self.line_no += 1;
            let line = line.map_err(|e| PluginError::io(format!("{}: {e}", self.path)))?;
            if line.trim().is_empty() {
                continue;
            }
            if let Some(item) = self.parse(&line)? {
                return Ok(Some(DatasetItem::new(item)));
            }
        }
        Ok(None)
    }
}

/// One string field of JSON records: JSON lines read lazily, or a JSON list.
pub struct FieldLines {
    records: Records,
    field: &'static str,
    filter: LengthFilter,
    path: String,
}

enum Records {
    Lines(Lines<BufReader<File>>, u64),
    List(std::vec::IntoIter<Value>),
}

impl FieldLines {
    /// Opens `path` and reads `field` from each record.
    pub fn open(
        path: &str,
        field: &'static str,
        config: &DatasetConfig,
    ) -> Result<Self, PluginError> {
        let mut lines = open(path)?;
        // A JSON list is read whole (it cannot be streamed line by line); JSON lines stream.
        let first = loop {
            match lines.next() {
                Some(Ok(l)) if l.trim().is_empty() => continue,
                Some(Ok(l)) => break Some(l),
                Some(Err(e)) => {
                    return Err(PluginError::config(format!("cannot read {path}: {e}")))
                }
                None => break None,
            }
        };
        let records = match first {
            Some(l) if l.trim_start().starts_with('[') => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| PluginError::config(format!("cannot read {path}: {e}")))?;
                let list: Vec<Value> = serde_json::from_str(&text).map_err(|e| {
                    PluginError::config(format!("{path} is not a JSON list of records: {e}"))
                })?;
                Records::List(list.into_iter())
            }
            _ => Records::Lines(open(path)?, 0),
        };
        Ok(FieldLines {
            records,
            field,
            filter: LengthFilter::new(config),
            path: path.to_string(),
        })
    }

    fn next_record(&mut self) -> Result<Option<Value>, PluginError> {
        match &mut self.records {
            Records::List(it) => Ok(it.next()),
            Records::Lines(lines, no) => loop {
                let Some(line) = lines.next() else {
                    return Ok(None);
                };
                *no += 1;
                let line = line.map_err(|e| PluginError::io(format!("{}: {e}", self.path)))?;
                if line.trim().is_empty() {
                    continue;
                }
                return serde_json::from_str(&line).map(Some).map_err(|e| {
                    PluginError::invalid(format!("{}:{no}: not a JSON record: {e}", self.path))
                });
            },
        }
    }

    /// The next prompt.
    pub fn next_item(&mut self) -> Result<Option<DatasetItem>, PluginError> {
        while let Some(record) = self.next_record()? {
            let Some(text) = record.get(self.field).and_then(Value::as_str) else {
                continue;
            };
            if self.filter.keeps(text) {
                return Ok(Some(DatasetItem::new(PromptItem::Text(text.into()))));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(mut f: impl FnMut() -> Result<Option<DatasetItem>, PluginError>) -> Vec<PromptItem> {
        let mut out = Vec::new();
        while let Some(i) = f().expect("item") {
            out.push(i.prompt);
        }
        out
    }

    #[test]
    fn line_by_line_reads_text_messages_and_bodies() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("prompts.txt");
        std::fs::write(
            &p,
            "hello world\n\nx\n[{\"role\":\"user\",\"content\":\"hi\"}]\n{\"messages\":[],\"max_tokens\":3}\n",
        )
        .expect("write");
        let config = DatasetConfig {
            min_prompt_length: 2,
            ..DatasetConfig::default()
        };
        let mut src = PromptLines::open(p.to_str().expect("utf-8"), &config).expect("open");
        let items = drain(|| src.next_item());
        assert_eq!(
            items.len(),
            3,
            "the blank line and the 1-character line are skipped: {items:?}"
        );
        assert_eq!(items[0], PromptItem::Text("hello world".into()));
        assert!(matches!(&items[1], PromptItem::Messages(m) if m[0].role.as_str() == "user"));
        assert!(matches!(&items[2], PromptItem::Body(b) if b.contains("max_tokens")));
    }

    #[test]
    fn field_records_from_json_lines_and_json_lists() {
        let dir = tempfile::tempdir().expect("tmp");
        let lines = dir.path().join("q.jsonl");
        std::fs::write(
            &lines,
            "{\"question\":\"q1\"}\n{\"other\":1}\n{\"question\":\"q2\"}\n",
        )
        .expect("write");
        let mut src = FieldLines::open(
            lines.to_str().expect("utf-8"),
            "question",
            &DatasetConfig::default(),
        )
        .expect("open");
        assert_eq!(
            drain(|| src.next_item()),
            vec![PromptItem::Text("q1".into()), PromptItem::Text("q2".into())]
        );
        let list = dir.path().join("a.json");
        std::fs::write(
            &list,
            "[\n{\"instruction\":\"long one\"},{\"instruction\":\"two\"}]",
        )
        .expect("write");
        let mut src = FieldLines::open(
            list.to_str().expect("utf-8"),
            "instruction",
            &DatasetConfig::default(),
        )
        .expect("open");
        assert_eq!(drain(|| src.next_item()).len(), 2);
    }

    #[test]
    fn a_missing_file_is_a_config_error() {
        let err = PromptLines::open("/no/such/file.txt", &DatasetConfig::default())
            .err()
            .expect("error");
        assert_eq!(err.kind, perf_plugin_api::ErrorKind::Config);
        assert!(err.message.contains("/no/such/file.txt"));
    }
}
