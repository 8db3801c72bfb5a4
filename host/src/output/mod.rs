//! What a run leaves behind, laid out as evalscope perf lays it out:
//! `<outputs-dir>/<time>/<name>/` with `benchmark.log` and `performance_summary.txt`, and per
//! run `parallel_<P>_number_<N>/` (open loop: `rate_<R>_number_<N>/`) with
//! `benchmark_summary.json`, `benchmark_percentile.json`, `benchmark_args.json` and
//! `benchmark_data.db`.

pub mod console;
pub mod db;
pub mod log;
pub mod messages;
pub mod progress;
pub mod redact;
pub mod speed;
pub mod workload;

use std::path::Path;

use anyhow::Context;
use serde_json::{Map, Value};

/// A list of key/value pairs as a JSON object, in order.
pub fn object(pairs: &[(String, Value)]) -> Value {
    Value::Object(pairs.iter().cloned().collect::<Map<String, Value>>())
}

/// This machine's name (`HOSTNAME`, else /etc/hostname), for the records of a shard: the name
/// the sinks give it too.
pub use perf_sink_common::host_name;

/// Writes `value` as indented JSON.
pub fn write_json(path: &Path, value: &Value) -> anyhow::Result<()> {
    write_json_as(path, value, false)
}

/// Writes `value` as indented JSON with Python's `NaN` where `value` has `null` (or a
/// non-finite number): what evalscope writes for a percentile without samples.
pub fn write_json_nan(path: &Path, value: &Value) -> anyhow::Result<()> {
    write_json_as(path, value, true)
}

fn write_json_as(path: &Path, value: &Value, nan: bool) -> anyhow::Result<()> {
    let mut text = Vec::new();
    let formatter = PythonJson {
        pretty: serde_json::ser::PrettyFormatter::with_indent(b"    "),
        nan,
    };
    let mut ser = serde_json::Serializer::with_formatter(&mut text, formatter);
    serde::Serialize::serialize(value, &mut ser).context("serialising JSON")?;
    text.push(b'\n');
    let text = String::from_utf8_lossy(&text);
    write_atomically(path, redact::redact(&text).as_bytes())
}

/// Parses JSON that [`write_json_nan`] wrote: its `NaN` values read as `null`.
pub fn parse_json_nan(text: &str) -> serde_json::Result<Value> {
    serde_json::from_str(&text.replace(": NaN", ": null"))
}

/// Python's `json.dump(indent=4)`: serde_json's pretty layout, and `NaN` for `null` when
/// asked (serde_json writes a non-finite number as `null`).
struct PythonJson<'a> {
    pretty: serde_json::ser::PrettyFormatter<'a>,
    nan: bool,
}

impl serde_json::ser::Formatter for PythonJson<'_> {
    fn write_null<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(if self.nan { b"NaN" } else { b"null" })
    }
    fn begin_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.pretty.begin_array(w)
    }
    fn end_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.pretty.end_array(w)
    }
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.pretty.begin_array_value(w, first)
    }
    fn end_array_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.pretty.end_array_value(w)
    }
    fn begin_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.pretty.begin_object(w)
    }
    fn end_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.pretty.end_object(w)
    }
    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.pretty.begin_object_key(w, first)
    }
    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.pretty.begin_object_value(w)
    }
    fn end_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.pretty.end_object_value(w)
    }
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
