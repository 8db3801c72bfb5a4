//! A result sink that appends one JSON object per measured request to a file, for tools that
//! want raw per-request data with epoch timestamps.
//!
//! `perf --plugin libjsonl_sink.so --sink 'jsonl={"path": "records.jsonl"}' ...`
//!
//! Options: `path` (required). Lines are buffered and flushed at the end of each run.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};

use perf_plugin_api::sdk::{ResultSinkPlugin, SinkConfig};
use perf_plugin_api::{PluginError, RequestRecord, RunSummary};
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    path: Option<String>,
}

/// Appends records to a JSON-lines file.
pub struct JsonlSink {
    out: BufWriter<File>,
    path: String,
}

fn io(path: &str, e: std::io::Error) -> PluginError {
    PluginError::io(format!("{path}: {e}"))
}

impl ResultSinkPlugin for JsonlSink {
    const ID: &'static str = "jsonl";
    const DESCRIPTION: &'static str =
        "appends one JSON line per request record to a file (options: path)";
    const OPTION_KEYS: Option<&'static [&'static str]> = Some(&["path"]);
    const OPTIONS_EXAMPLE: &'static str = r#"{"path": "records.jsonl"}"#;

    fn new(config: &SinkConfig) -> Result<Self, PluginError> {
        let options: Options = config.options()?;
        let path = options.path.ok_or_else(|| {
            PluginError::config(r#"no output file: pass --sink 'jsonl={"path": "records.jsonl"}'"#)
        })?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| PluginError::config(format!("cannot open {path} for appending: {e}")))?;
        Ok(JsonlSink {
            out: BufWriter::new(file),
            path,
        })
    }

    fn record(&mut self, r: &RequestRecord) -> Result<(), PluginError> {
        let line = json!({
            "run": r.run_index,
            "request": r.request_index,
            "success": r.success,
            "stream": r.is_stream,
            "http_status": r.http_status,
            "failure": r.failure.as_str(),
            "error": r.error.as_str(),
            "intended_send": r.times.intended_send,
            "sent": r.times.sent,
            "first_byte": r.times.first_byte.into_option(),
            "first_output": r.times.first_output.into_option(),
            "completed": r.times.completed,
            "latency_s": r.latency_s.into_option(),
            "ttft_s": r.ttft_s.into_option(),
            "tpot_s": r.tpot_s.into_option(),
            "itl_s": r.itl_s.as_slice(),
            "prompt_tokens": r.prompt_tokens.into_option(),
            "completion_tokens": r.completion_tokens.into_option(),
            "cached_tokens": r.cached_tokens.into_option(),
            "tokens_estimated": r.tokens_estimated,
        });
        serde_json::to_writer(&mut self.out, &line).map_err(|e| PluginError::io(e.to_string()))?;
        self.out.write_all(b"\n").map_err(|e| io(&self.path, e))
    }

    fn run_end(&mut self, _summary: &RunSummary) -> Result<(), PluginError> {
        self.flush()
    }

    fn flush(&mut self) -> Result<(), PluginError> {
        self.out.flush().map_err(|e| io(&self.path, e))
    }
}

perf_plugin_api::export_plugins! {
    ResultSink: JsonlSink,
}
