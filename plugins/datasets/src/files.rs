//! Reading prompt files lazily.

use std::fs::File;
use std::io::{BufRead, BufReader, Lines};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use perf_plugin_api::sdk::DatasetConfig;
use perf_plugin_api::{
    ChatMessage, ContentPart, DatasetItem, PluginError, PromptItem, TokenizerRef,
};

use crate::tok::Tok;
use serde::Deserialize;
use serde_json::Value;

pub(crate) fn open(path: &str) -> Result<Lines<BufReader<File>>, PluginError> {
    let file = File::open(path)
        .map_err(|e| PluginError::config(format!("cannot open --dataset-path {path}: {e}")))?;
    Ok(BufReader::new(file).lines())
}

/// `--min-prompt-length` / `--max-prompt-length` as evalscope applies them: in tokens with a
/// tokenizer (the chat template applied to the one user message when the template is on, else
/// the text with the tokenizer's special tokens), in characters without one.
pub struct LengthFilter {
    min: u64,
    max: u64,
    tokenizer: Option<Tok>,
    chat: bool,
    /// `--dataset-args target_input_len` (and `prefix_file`): fit instead of filtering.
    fit: Option<crate::fit::Fit>,
}

impl LengthFilter {
    pub fn new(config: &DatasetConfig, tokenizer: Option<TokenizerRef>) -> Self {
        LengthFilter {
            min: config.min_prompt_length,
            max: config.max_prompt_length,
            tokenizer: tokenizer.map(Tok),
            chat: config.apply_chat_template,
            fit: None,
        }
    }

    /// The filter of a text dataset, with its `--dataset-args` length fitting.
    pub fn for_text(
        config: &DatasetConfig,
        tokenizer: Option<TokenizerRef>,
    ) -> Result<Self, PluginError> {
        Ok(match crate::fit::Fit::from_config(config, tokenizer)? {
            // Fitted prompts skip the length filter: the fit holds the tokenizer.
            Ok(fit) => LengthFilter {
                fit: Some(fit),
                ..Self::new(config, None)
            },
            Err(tokenizer) => Self::new(config, tokenizer),
        })
    }

    /// A conversation ending on a user message, fitted (with `target_input_len`) or kept when
    /// its last message passes the filter.
    pub(crate) fn conversation(
        &self,
        messages: Vec<ChatMessage>,
    ) -> Result<Option<Vec<ChatMessage>>, PluginError> {
        if let Some(fit) = &self.fit {
            return fit.conversation(messages);
        }
        let Some(last) = messages.last() else {
            return Ok(None);
        };
        let text: String = last.texts().collect();
        Ok(self.keeps(&text)?.then_some(messages))
    }

    /// Whether `text` passes the filter.
    pub(crate) fn keeps(&self, text: &str) -> Result<bool, PluginError> {
        Ok(self.item(text)?.is_some())
    }

    /// `None` when `text` is filtered out; else the item, with its token count when a
    /// tokenizer measured it.
    pub(crate) fn item(&self, text: &str) -> Result<Option<DatasetItem>, PluginError> {
        if text.trim().is_empty() {
            return Ok(None);
        }
        if let Some(fit) = &self.fit {
            return fit.item(text);
        }
        let tokens = match &self.tokenizer {
            Some(tok) => Some(tok.prompt_tokens(text, self.chat)? as u64),
            None => None,
        };
        let n = tokens.unwrap_or_else(|| text.chars().count() as u64);
        if n < self.min || n > self.max {
            return Ok(None);
        }
        let mut item = DatasetItem::new(PromptItem::Text(text.into()));
        item.prompt_tokens = tokens.into();
        Ok(Some(item))
    }
}

/// A line of `path`, or an error naming the file and line.
pub(crate) fn line_text(
    line: std::io::Result<String>,
    path: &str,
    line_no: u64,
) -> Result<String, PluginError> {
    line.map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidData => PluginError::invalid(format!(
            "{path}:{line_no}: not UTF-8 text (is it a binary file?)"
        )),
        _ => PluginError::io(format!("{path}:{line_no}: {e}")),
    })
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
    chat_message(&m.role, m.content)
}

/// A chat message from its role and its OpenAI content (a string or a list of parts).
pub(crate) fn chat_message(role: &str, content: Value) -> Result<ChatMessage, String> {
    let content = match content {
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
    Ok(ChatMessage::new(role, content))
}

impl PromptLines {
    /// Opens `path`.
    pub fn open(path: &str, filter: LengthFilter) -> Result<Self, PluginError> {
        Ok(PromptLines {
            lines: open(path)?,
            filter,
            path: path.to_string(),
            line_no: 0,
        })
    }

    fn parse(&self, line: &str) -> Result<Option<DatasetItem>, PluginError> {
        let trimmed = line.trim();
        if trimmed.starts_with('{') {
            if let Ok(Value::Object(_)) = serde_json::from_str::<Value>(trimmed) {
                return Ok(Some(DatasetItem::new(PromptItem::Body(trimmed.into()))));
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
                return Ok(Some(DatasetItem::new(PromptItem::Messages(
                    messages.into(),
                ))));
            }
        }
        self.filter.item(line)
    }

    /// The next prompt.
    pub fn next_item(&mut self) -> Result<Option<DatasetItem>, PluginError> {
        while let Some(line) = self.lines.next() {
            self.line_no += 1;
            let line = line_text(line, &self.path, self.line_no)?;
            if line.trim().is_empty() {
                continue;
            }
            if let Some(item) = self.parse(&line)? {
                return Ok(Some(item));
            }
        }
        Ok(None)
    }
}

/// One string field of JSON records: JSON lines read lazily, or a JSON list.
pub struct FieldLines {
    records: Records,
    /// The record's text is the first of these fields it has.
    fields: &'static [&'static str],
    filter: LengthFilter,
    path: String,
    /// Records read so far (the line number for JSON lines).
    record_no: u64,
}

enum Records {
    Lines(Lines<BufReader<File>>, u64),
    /// The elements of a JSON list, parsed one at a time by a reader thread.
    List(Receiver<Result<Value, PluginError>>),
}

/// A JSON list `[record, ...]`, streamed: the reader thread parses one element at a time and
/// hands it over a small bounded queue, so a list of any size costs a few records of memory.
fn stream_list(path: &str) -> Result<Receiver<Result<Value, PluginError>>, PluginError> {
    struct Elements<'a>(&'a SyncSender<Result<Value, PluginError>>);

    impl<'de> serde::de::Visitor<'de> for Elements<'_> {
        type Value = ();

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON list of records")
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while let Some(record) = seq.next_element::<Value>()? {
                if self.0.send(Ok(record)).is_err() {
                    return Ok(()); // the source was dropped
                }
            }
            Ok(())
        }
    }

    let file = File::open(path)
        .map_err(|e| PluginError::config(format!("cannot open --dataset-path {path}: {e}")))?;
    let (tx, rx) = sync_channel(64);
    let name = path.to_string();
    std::thread::Builder::new()
        .name("perf-json-list".into())
        .spawn(move || {
            let mut de = serde_json::Deserializer::from_reader(BufReader::new(file));
            let parsed = serde::Deserializer::deserialize_seq(&mut de, Elements(&tx));
            if let Err(e) = parsed {
                let _ = tx.send(Err(PluginError::invalid(format!(
                    "{name} is not a JSON list of records: {e}"
                ))));
            }
        })
        .map_err(|e| PluginError::other(format!("cannot start the JSON reader: {e}")))?;
    Ok(rx)
}

impl FieldLines {
    /// Opens `path` and reads the first of `fields` each record has.
    pub fn open(
        path: &str,
        fields: &'static [&'static str],
        filter: LengthFilter,
    ) -> Result<Self, PluginError> {
        let mut lines = open(path)?;
        // A JSON list is streamed element by element by a reader thread; JSON lines line by line.
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
            Some(l) if l.trim_start().starts_with('[') => Records::List(stream_list(path)?),
            _ => Records::Lines(open(path)?, 0),
        };
        Ok(FieldLines {
            records,
            fields,
            filter,
            path: path.to_string(),
            record_no: 0,
        })
    }

    pub(crate) fn next_record(&mut self) -> Result<Option<Value>, PluginError> {
        match &mut self.records {
            Records::List(rx) => {
                self.record_no += 1;
                // A closed queue: the reader reached the end of the list.
                rx.recv().map_or(Ok(None), |r| r.map(Some))
            }
            Records::Lines(lines, no) => loop {
                let Some(line) = lines.next() else {
                    return Ok(None);
                };
                *no += 1;
                self.record_no = *no;
                let line = line_text(line, &self.path, *no)?;
                if line.trim().is_empty() {
                    continue;
                }
                return serde_json::from_str(&line).map(Some).map_err(|e| {
                    PluginError::invalid(format!("{}:{no}: not a JSON record: {e}", self.path))
                });
            },
        }
    }

    /// Where the current record is, for errors.
    pub(crate) fn place(&self) -> String {
        match self.records {
            Records::Lines(..) => format!("{}:{}", self.path, self.record_no),
            Records::List(_) => format!("{}: record {}", self.path, self.record_no),
        }
    }

    /// The next prompt.
    pub fn next_item(&mut self) -> Result<Option<DatasetItem>, PluginError> {
        while let Some(record) = self.next_record()? {
            let text = self
                .fields
                .iter()
                .find_map(|f| record.get(*f).and_then(Value::as_str));
            let Some(text) = text else {
                return Err(PluginError::invalid(format!(
                    "{}: no `{}` text in this record",
                    self.place(),
                    self.fields.join("` / `")
                )));
            };
            if let Some(item) = self.filter.item(text)? {
                return Ok(Some(item));
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
            out.push(i.into_prompt().expect("a known prompt"));
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
        let mut src =
            PromptLines::open(p.to_str().expect("utf-8"), LengthFilter::new(&config, None))
                .expect("open");
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
            "{\"question\":\"q1\"}\n\n{\"question\":\"q2\"}\n{\"other\":1}\n",
        )
        .expect("write");
        let mut src = FieldLines::open(lines.to_str().expect("utf-8"), &["question"], no_filter())
            .expect("open");
        assert_eq!(
            src.next_item()
                .expect("q1")
                .map(|i| i.into_prompt().expect("a known prompt")),
            Some(PromptItem::Text("q1".into()))
        );
        assert_eq!(
            src.next_item()
                .expect("q2")
                .map(|i| i.into_prompt().expect("a known prompt")),
            Some(PromptItem::Text("q2".into()))
        );
        let err = src.next_item().expect_err("a record without the field");
        assert!(
            err.message
                .ends_with("q.jsonl:4: no `question` text in this record"),
            "{}",
            err.message
        );
        let list = dir.path().join("a.json");
        std::fs::write(
            &list,
            "[\n{\"instruction\":\"long one\"},{\"instruction\":\"two\"}]",
        )
        .expect("write");
        let mut src =
            FieldLines::open(list.to_str().expect("utf-8"), &["instruction"], no_filter())
                .expect("open");
        assert_eq!(drain(|| src.next_item()).len(), 2);
    }

    #[test]
    fn a_json_list_streams_its_records_and_reports_where_it_breaks() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("big.json");
        let records: Vec<String> = (0..5000)
            .map(|i| {
                serde_json::json!({ "instruction": format!("task {i}"), "output": "x" }).to_string()
            })
            .collect();
        std::fs::write(&path, format!("[\n{}\n]", records.join(",\n"))).expect("write");
        let mut src =
            FieldLines::open(path.to_str().expect("utf-8"), &["instruction"], no_filter())
                .expect("open");
        let items = drain(|| src.next_item());
        assert_eq!(items.len(), 5000);
        assert_eq!(items[4999], PromptItem::Text("task 4999".into()));

        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "[{\"instruction\": \"a\"},\n{\"instruction\": }]").expect("write");
        let mut src = FieldLines::open(bad.to_str().expect("utf-8"), &["instruction"], no_filter())
            .expect("open");
        assert!(src.next_item().expect("first").is_some());
        let err = src.next_item().expect_err("broken second record");
        assert!(
            err.message
                .contains("bad.json is not a JSON list of records"),
            "{}",
            err.message
        );
        assert!(err.message.contains("line 2"), "{}", err.message);
    }

    fn no_filter() -> LengthFilter {
        LengthFilter::new(&DatasetConfig::default(), None)
    }

    #[test]
    fn bad_lines_name_the_file_and_line() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("bad.jsonl");
        std::fs::write(&path, "{\"question\":\"ok\"}\n{\"question\": oops}\n").expect("write");
        let mut src = FieldLines::open(path.to_str().expect("utf-8"), &["question"], no_filter())
            .expect("open");
        assert!(src.next_item().expect("first").is_some());
        let err = src.next_item().expect_err("invalid JSON");
        assert!(
            err.message.contains("bad.jsonl:2: not a JSON record"),
            "{}",
            err.message
        );

        let path = dir.path().join("garbage.txt");
        std::fs::write(&path, b"fine\n\xff\xfe\x00\x81 binary\n").expect("write");
        let mut src = PromptLines::open(path.to_str().expect("utf-8"), no_filter()).expect("open");
        assert!(src.next_item().expect("first").is_some());
        let err = src.next_item().expect_err("binary");
        assert!(
            err.message.contains("garbage.txt:2: not UTF-8 text"),
            "{}",
            err.message
        );
    }

    #[test]
    fn a_missing_file_is_a_config_error() {
        let err = PromptLines::open(
            "/no/such/file.txt",
            LengthFilter::new(&DatasetConfig::default(), None),
        )
        .err()
        .expect("error");
        assert_eq!(err.kind, perf_plugin_api::ErrorKind::Config);
        assert!(err.message.contains("/no/such/file.txt"));
    }
}
