//! `workload_trace`: recorded production requests, replayed on their recorded schedule.
//!
//! JSON lines, as evalscope 1.14.1 reads them: `body` (an object, or a string holding one),
//! `timestamp` (seconds as a number or a numeric string, or ISO-8601 text; without an offset it
//! is UTC), and optionally `headers` (an object of strings), `request_id` and
//! `completion_tokens` (> 0). Other keys are an error, and every bad line is reported at once.
//! Requests go out in timestamp order (a trace out of order is sorted), each `(t - t0) /
//! speed` seconds after the first; each body is sent as recorded (`--model` does not rewrite
//! it: `model_override` or `model_mapping` do), with `match_output_length` setting
//! `max_tokens` to the recorded `completion_tokens` and `ignore_eos` (except where constrained
//! decoding would make `ignore_eos` unsafe: a JSON `response_format` or a forced
//! `tool_choice`).
//!
//! The file is read twice and never held: the first pass checks every line and keeps each
//! request's timestamp and place in the file; the replay reads lines back one at a time.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};

use perf_plugin_api::sdk::{DatasetConfig, DatasetSourcePlugin};
use perf_plugin_api::{DatasetItem, PluginError, PromptItem, TokenizerRef};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::required_path;

/// Errors listed before the rest are counted.
const MAX_LISTED_ERRORS: usize = 20;

/// `--dataset-args` of `workload_trace`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Knobs {
    #[serde(default = "one")]
    speed: f64,
    #[serde(default)]
    model_override: Option<String>,
    #[serde(default)]
    model_mapping: Option<HashMap<String, String>>,
    #[serde(default)]
    match_output_length: bool,
}

fn one() -> f64 {
    1.0
}

/// One line of the trace.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    body: Value,
    timestamp: Value,
    #[serde(default)]
    headers: Option<HashMap<String, String>>,
    #[serde(default)]
    request_id: Option<String>,
    #[serde(default)]
    completion_tokens: Option<i64>,
}

/// A checked line.
struct Record {
    body: Map<String, Value>,
    timestamp: f64,
    headers: Option<HashMap<String, String>>,
    request_id: Option<String>,
    completion_tokens: Option<u64>,
}

/// Where a request's line is, and when it was sent.
#[derive(Debug, Clone, Copy)]
struct Entry {
    timestamp: f64,
    offset: u64,
    len: usize,
    line: u64,
}

/// `workload_trace`.
pub struct WorkloadTrace {
    file: File,
    path: String,
    entries: Vec<Entry>,
    next: usize,
    t0: f64,
    knobs: Knobs,
}

impl DatasetSourcePlugin for WorkloadTrace {
    const ID: &'static str = "workload_trace";
    const DESCRIPTION: &'static str = "recorded requests replayed on their recorded schedule: JSON lines of body, timestamp, headers, request_id, completion_tokens (--dataset-path, --open-loop)";
    const OPTION_KEYS: Option<&'static [&'static str]> = Some(&[
        "speed",
        "model_override",
        "model_mapping",
        "match_output_length",
    ]);
    const OPTIONS_EXAMPLE: &'static str =
        r#"{"speed": 2.0, "model_mapping": {"gpt-4o": "qwen"}, "match_output_length": true}"#;
    const REPLAYS_SCHEDULE: bool = true;

    fn new(config: &DatasetConfig, _tokenizer: Option<TokenizerRef>) -> Result<Self, PluginError> {
        let knobs: Knobs = config.options()?;
        if !(knobs.speed.is_finite() && knobs.speed > 0.0) {
            return Err(PluginError::config(format!(
                "--dataset-args speed must be > 0 (2.0 replays twice as fast), got {}",
                knobs.speed
            )));
        }
        let path = required_path(
            config,
            Self::ID,
            "a .jsonl trace: {\"body\": {...}, \"timestamp\": ...} per line",
        )?;
        let mut entries = scan(&path)?;
        entries.sort_by(|a, b| a.timestamp.total_cmp(&b.timestamp));
        let t0 = entries[0].timestamp;
        let file = File::open(&path)
            .map_err(|e| PluginError::config(format!("cannot open --dataset-path {path}: {e}")))?;
        Ok(WorkloadTrace {
            file,
            path,
            entries,
            next: 0,
            t0,
            knobs,
        })
    }

    fn next_item(&mut self) -> Result<Option<DatasetItem>, PluginError> {
        let Some(entry) = self.entries.get(self.next).copied() else {
            return Ok(None);
        };
        self.next += 1;
        let mut bytes = vec![0; entry.len];
        self.file
            .seek(SeekFrom::Start(entry.offset))
            .and_then(|_| self.file.read_exact(&mut bytes))
            .map_err(|e| PluginError::io(format!("{}: {e}", self.path)))?;
        let text = String::from_utf8_lossy(&bytes);
        let record = parse(text.trim()).map_err(|e| {
            PluginError::invalid(format!(
                "{}:{}: changed while replaying: {e}",
                self.path, entry.line
            ))
        })?;
        Ok(Some(self.item(record)))
    }
}

impl WorkloadTrace {
    fn item(&self, record: Record) -> DatasetItem {
        let mut body = record.body;
        let original = body
            .get("model")
            .and_then(Value::as_str)
            .map(str::to_string);
        let mapped = original
            .as_ref()
            .and_then(|m| self.knobs.model_mapping.as_ref()?.get(m).cloned());
        if let Some(model) = mapped.or_else(|| self.knobs.model_override.clone()) {
            body.insert("model".into(), Value::String(model));
        }
        if let (true, Some(n)) = (self.knobs.match_output_length, record.completion_tokens) {
            body.insert("max_tokens".into(), Value::from(n));
            if !constrained(&body) {
                body.insert("ignore_eos".into(), Value::Bool(true));
            }
        }
        let mut item = DatasetItem::new(PromptItem::Body(Value::Object(body).to_string().into()));
        item.set_arrival_s((record.timestamp - self.t0) / self.knobs.speed);
        if let Some(id) = &record.request_id {
            item.set_request_id(id);
        }
        if let Some(h) = &record.headers {
            item.set_headers_json(&serde_json::to_string(h).unwrap_or_default());
        }
        item
    }
}

/// Whether a body asks for constrained decoding, where `ignore_eos` is unsafe: a JSON
/// `response_format`, or tools with a forced `tool_choice`.
fn constrained(body: &Map<String, Value>) -> bool {
    let json_format = body
        .get("response_format")
        .and_then(|f| f.get("type"))
        .and_then(Value::as_str)
        .is_some_and(|t| t == "json_object" || t == "json_schema");
    let tools = body
        .get("tools")
        .is_some_and(|t| !t.is_null() && t.as_array().is_none_or(|a| !a.is_empty()));
    let forced = match body.get("tool_choice") {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => s != "none" && s != "auto",
        Some(_) => true,
    };
    json_format || (tools && forced)
}

/// Checks every line; the requests' timestamps and places.
fn scan(path: &str) -> Result<Vec<Entry>, PluginError> {
    let file = File::open(path)
        .map_err(|e| PluginError::config(format!("cannot open --dataset-path {path}: {e}")))?;
    let mut reader = BufReader::new(file);
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    let mut error_count = 0;
    let mut offset = 0u64;
    let mut line_no = 0u64;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| PluginError::io(format!("{path}: {e}")))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let start = offset;
        offset += n as u64;
        let result = std::str::from_utf8(&buf)
            .map_err(|_| "not UTF-8 text".to_string())
            .and_then(|text| {
                let text = text.trim();
                if text.is_empty() {
                    Ok(None)
                } else {
                    parse(text).map(Some)
                }
            });
        match result {
            Ok(Some(record)) => entries.push(Entry {
                timestamp: record.timestamp,
                offset: start,
                len: n,
                line: line_no,
            }),
            Ok(None) => {}
            Err(e) => {
                error_count += 1;
                if errors.len() < MAX_LISTED_ERRORS {
                    errors.push(format!("line {line_no}: {e}"));
                }
            }
        }
    }
    if error_count > 0 {
        let more = error_count - errors.len();
        let tail = if more > 0 {
            format!("\n... and {more} more")
        } else {
            String::new()
        };
        return Err(PluginError::invalid(format!(
            "{path}: {error_count} bad trace line(s):\n{}{tail}",
            errors.join("\n")
        )));
    }
    if entries.is_empty() {
        return Err(PluginError::invalid(format!(
            "{path}: the trace has no requests"
        )));
    }
    Ok(entries)
}

/// One line of the trace, checked.
fn parse(text: &str) -> Result<Record, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    if !value.is_object() {
        return Err("expected a JSON object {\"body\": ..., \"timestamp\": ...}".into());
    }
    let line: Line = serde_json::from_value(value).map_err(|e| e.to_string())?;
    let body = match line.body {
        Value::Object(o) => o,
        Value::String(s) => match serde_json::from_str::<Value>(&s) {
            Ok(Value::Object(o)) => o,
            Ok(_) => return Err("body is a string but not a JSON object".into()),
            Err(e) => return Err(format!("body is a string but not valid JSON: {e}")),
        },
        other => {
            return Err(format!(
                "body must be an object or a JSON string, not {other}"
            ))
        }
    };
    let timestamp = timestamp(&line.timestamp)?;
    let completion_tokens = match line.completion_tokens {
        Some(n) if n <= 0 => return Err(format!("completion_tokens must be > 0, got {n}")),
        n => n.map(|n| n as u64),
    };
    Ok(Record {
        body,
        timestamp,
        headers: line.headers,
        request_id: line.request_id,
        completion_tokens,
    })
}

/// Seconds since the epoch from a number, a numeric string or ISO-8601 text (UTC when it
/// names no offset), as Python's `datetime.fromisoformat` reads it.
fn timestamp(v: &Value) -> Result<f64, String> {
    let bad = || format!("cannot parse timestamp: {v}");
    match v {
        Value::Number(n) => n.as_f64().ok_or_else(bad),
        Value::String(s) => {
            let s = s.trim();
            if let Ok(n) = s.parse::<f64>() {
                return if n.is_finite() { Ok(n) } else { Err(bad()) };
            }
            iso8601(s).ok_or_else(bad)
        }
        _ => Err(format!(
            "timestamp must be a number or an ISO-8601 string, not {v}"
        )),
    }
}

fn iso8601(s: &str) -> Option<f64> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime};
    let s = match s.strip_suffix(['Z', 'z']) {
        Some(rest) => format!("{rest}+00:00"),
        None => s.to_string(),
    };
    let seconds = |dt: DateTime<chrono::FixedOffset>| {
        dt.timestamp() as f64 + f64::from(dt.timestamp_subsec_nanos()) / 1e9
    };
    for sep in ['T', ' '] {
        for fmt in ["%Y-%m-%d{}%H:%M:%S%.f%:z", "%Y-%m-%d{}%H:%M%:z"] {
            let fmt = fmt.replace("{}", &sep.to_string());
            if let Ok(dt) = DateTime::parse_from_str(&s, &fmt) {
                return Some(seconds(dt));
            }
        }
        for fmt in ["%Y-%m-%d{}%H:%M:%S%.f", "%Y-%m-%d{}%H:%M"] {
            let fmt = fmt.replace("{}", &sep.to_string());
            if let Ok(dt) = NaiveDateTime::parse_from_str(&s, &fmt) {
                return Some(seconds(dt.and_utc().fixed_offset()));
            }
        }
    }
    let date = NaiveDate::parse_from_str(&s, "%Y-%m-%d").ok()?;
    Some(seconds(date.and_hms_opt(0, 0, 0)?.and_utc().fixed_offset()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_read_as_python_reads_them() {
        assert_eq!(timestamp(&serde_json::json!(12.5)), Ok(12.5));
        assert_eq!(timestamp(&serde_json::json!("7")), Ok(7.0));
        assert_eq!(
            timestamp(&serde_json::json!("1970-01-01T00:01:00Z")),
            Ok(60.0)
        );
        assert_eq!(
            timestamp(&serde_json::json!("1970-01-01 00:01:00.5")),
            Ok(60.5)
        );
        assert_eq!(
            timestamp(&serde_json::json!("1970-01-01T01:00:00+01:00")),
            Ok(0.0)
        );
        assert_eq!(timestamp(&serde_json::json!("1970-01-02")), Ok(86_400.0));
        assert!(timestamp(&serde_json::json!("yesterday")).is_err());
        assert!(timestamp(&serde_json::json!([1])).is_err());
    }

    #[test]
    fn lines_are_checked_as_evalscope_checks_them() {
        assert!(parse(r#"{"body": {"model": "m"}, "timestamp": 1}"#).is_ok());
        let string_body = parse(r#"{"body": "{\"model\": \"m\"}", "timestamp": 1}"#).expect("ok");
        assert_eq!(string_body.body["model"], "m");
        for (line, says) in [
            (r#"{"body": [1], "timestamp": 1}"#, "body must be"),
            (r#"{"body": "[1]", "timestamp": 1}"#, "not a JSON object"),
            (
                r#"{"body": {}, "timestamp": 1, "extra": 2}"#,
                "unknown field",
            ),
            (r#"{"body": {}}"#, "missing field `timestamp`"),
            (
                r#"{"body": {}, "timestamp": 1, "completion_tokens": 0}"#,
                "must be > 0",
            ),
            ("[1]", "expected a JSON object"),
            ("{", "invalid JSON"),
        ] {
            let e = parse(line).err().unwrap_or_default();
            assert!(e.contains(says), "{line}: {e}");
        }
    }

    #[test]
    fn ignore_eos_is_left_out_where_decoding_is_constrained() {
        let body = |v: Value| v.as_object().expect("object").clone();
        assert!(!constrained(&body(serde_json::json!({}))));
        assert!(constrained(&body(
            serde_json::json!({"response_format": {"type": "json_schema"}})
        )));
        assert!(!constrained(&body(
            serde_json::json!({"response_format": {"type": "text"}})
        )));
        assert!(!constrained(&body(
            serde_json::json!({"tools": [{}], "tool_choice": "auto"})
        )));
        assert!(constrained(&body(
            serde_json::json!({"tools": [{}], "tool_choice": "required"})
        )));
        assert!(constrained(&body(
            serde_json::json!({"tools": [{}], "tool_choice": {"type": "function"}})
        )));
    }
}
