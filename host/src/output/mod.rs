//! What a run leaves behind, laid out as evalscope perf lays it out:
//! `<outputs-dir>/<time>/<name>/` with `benchmark.log` and `performance_summary.txt`, and per
//! run `parallel_<P>_number_<N>/` (open loop: `rate_<R>_number_<N>/`) with
//! `benchmark_summary.json`, `benchmark_percentile.json`, `benchmark_args.json` and
//! `benchmark_data.db`.

pub mod console;
pub mod db;
pub mod log;
pub mod redact;

use std::path::Path;

use anyhow::Context;
use serde_json::{Map, Value};

/// A list of key/value pairs as a JSON object, in order.
pub fn object(pairs: &[(String, Value)]) -> Value {
    Value::Object(pairs.iter().cloned().collect::<Map<String, Value>>())
}

/// Writes `value` as indented JSON.
pub fn write_json(path: &Path, value: &Value) -> anyhow::Result<()> {
    let mut text = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut text, formatter);
    serde::Serialize::serialize(value, &mut ser).context("serialising JSON")?;
    text.push(b'\n');
    let text = String::from_utf8_lossy(&text);
    write_atomically(path, redact::redact(&text).as_bytes())
}

/// Writes `bytes` to a temporary file beside `path`, then renames it over `path`: a reader
/// (or a crash, or a full disk) never meets a half-written file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let written = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.with_context(|| format!("cannot write {}", path.display()))
}
