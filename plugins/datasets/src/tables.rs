//! Parquet tables, the form the hubs keep most datasets in (`mmmu_multi_image`'s MMMU subjects,
//! `swe_smith`'s SWE-smith trajectories), and the hub listing that finds a split's shards.
//!
//! Rows are read one at a time through the `parquet` crate's record reader, so a table of any
//! size costs one row group in memory. Cells are read by name: text ([`text`]), and binary
//! ([`bytes`]) as it is (images are `{"bytes": ..., "path": ...}` structs, as the `datasets`
//! library writes them).

use std::fs::File;
use std::path::{Path, PathBuf};

use parquet::file::reader::SerializedFileReader;
use parquet::record::reader::RowIter;
use parquet::record::{Field, Row};
use perf_plugin_api::sdk::DatasetConfig;
use perf_plugin_api::PluginError;
use serde_json::{Map, Number, Value};

/// One parquet file, row by row.
pub(crate) struct Table {
    path: String,
    rows: RowIter<'static>,
    row_no: u64,
}

impl Table {
    pub(crate) fn open(path: &Path) -> Result<Self, PluginError> {
        let shown = path.display().to_string();
        let file = File::open(path)
            .map_err(|e| PluginError::config(format!("cannot open {shown}: {e}")))?;
        let reader = SerializedFileReader::new(file).map_err(|e| {
            PluginError::invalid(format!("{shown}: not a readable parquet file: {e}"))
        })?;
        Ok(Table {
            path: shown,
            rows: reader.into_iter(),
            row_no: 0,
        })
    }

    /// `file row n` of the last row read, for messages.
    pub(crate) fn place(&self) -> String {
        format!("{} row {}", self.path, self.row_no)
    }

    /// The next row, or `None` at the end of the file.
    pub(crate) fn next_row(&mut self) -> Result<Option<Row>, PluginError> {
        match self.rows.next() {
            None => Ok(None),
            Some(Ok(row)) => {
                self.row_no += 1;
                Ok(Some(row))
            }
            Some(Err(e)) => Err(PluginError::invalid(format!(
                "{}: row {}: {e}",
                self.path,
                self.row_no + 1
            ))),
        }
    }
}

/// The cell `name` of `row`.
pub(crate) fn column<'a>(row: &'a Row, name: &str) -> Option<&'a Field> {
    row.get_column_iter()
        .find(|(n, _)| n.as_str() == name)
        .map(|(_, f)| f)
}

/// A text cell (a string, or binary that is UTF-8), else `None`.
pub(crate) fn text(row: &Row, name: &str) -> Option<String> {
    match column(row, name)? {
        Field::Str(s) => Some(s.clone()),
        Field::Bytes(b) => std::str::from_utf8(b.data()).ok().map(str::to_string),
        _ => None,
    }
}

/// A binary cell's bytes: a binary column, or the `bytes` field of a struct (an image as the
/// `datasets` library stores it).
pub(crate) fn bytes(field: &Field) -> Option<&[u8]> {
    match field {
        Field::Bytes(b) => Some(b.data()),
        Field::Group(group) => match column(group, "bytes")? {
            Field::Bytes(b) if !b.data().is_empty() => Some(b.data()),
            _ => None,
        },
        _ => None,
    }
}

/// A cell as JSON: structs as objects, lists as arrays, maps as objects keyed by the key's
/// text; binary as a string when it is UTF-8, else null; times and decimals as their text.
pub(crate) fn json(field: &Field) -> Value {
    match field {
        Field::Null => Value::Null,
        Field::Bool(b) => Value::Bool(*b),
        Field::Byte(v) => Value::from(*v),
        Field::Short(v) => Value::from(*v),
        Field::Int(v) => Value::from(*v),
        Field::Long(v) => Value::from(*v),
        Field::UByte(v) => Value::from(*v),
        Field::UShort(v) => Value::from(*v),
        Field::UInt(v) => Value::from(*v),
        Field::ULong(v) => Value::from(*v),
        Field::Float(v) => Number::from_f64(f64::from(*v)).map_or(Value::Null, Value::Number),
        Field::Double(v) => Number::from_f64(*v).map_or(Value::Null, Value::Number),
        Field::Str(s) => Value::String(s.clone()),
        Field::Bytes(b) => {
            std::str::from_utf8(b.data()).map_or(Value::Null, |s| Value::String(s.to_string()))
        }
        Field::Group(row) => row_json(row),
        Field::ListInternal(list) => Value::Array(list.elements().iter().map(json).collect()),
        Field::MapInternal(map) => Value::Object(
            map.entries()
                .iter()
                .map(|(k, v)| {
                    let key = match json(k) {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (key, json(v))
                })
                .collect(),
        ),
        other => Value::String(other.to_string()),
    }
}

/// A row (or struct) as a JSON object.
pub(crate) fn row_json(row: &Row) -> Value {
    let mut object = Map::new();
    for (name, field) in row.get_column_iter() {
        object.insert(name.clone(), json(field));
    }
    Value::Object(object)
}

/// The files of one split among a dataset's files, in order: those under `dir` (when given)
/// whose file name starts with the split's name (`validation-00000-of-00001.parquet`,
/// `test.jsonl`) or that sit in a folder named after it (`data/test/0.parquet`), with one of
/// `extensions`. This is how the `datasets` library matches its default data files.
pub(crate) fn split_files(
    files: &[String],
    dir: &str,
    split: &str,
    extensions: &[&str],
) -> Vec<String> {
    let dir = dir.trim_matches('/');
    let mut chosen: Vec<String> = files
        .iter()
        .filter(|f| dir.is_empty() || f.starts_with(&format!("{dir}/")))
        .filter(|f| extensions.iter().any(|x| f.ends_with(x)))
        .filter(|f| {
            let rest = if dir.is_empty() {
                f.as_str()
            } else {
                &f[dir.len() + 1..]
            };
            let mut parts: Vec<&str> = rest.split('/').collect();
            let name = parts.pop().unwrap_or("");
            let named = name
                .strip_prefix(split)
                .is_some_and(|tail| tail.starts_with(['-', '.', '_']));
            named || parts.contains(&split)
        })
        .cloned()
        .collect();
    chosen.sort();
    chosen
}

/// The hub `--data-source` names, or a message that says what to pass instead.
pub(crate) fn hub_for(
    config: &DatasetConfig,
    id: &str,
    hint: &str,
) -> Result<(perf_hub::Hub, perf_hub::Source), PluginError> {
    let source = perf_hub::Source::parse(&config.data_source).map_err(|e| {
        PluginError::config(format!(
            "{e}; the {id} dataset then needs --dataset-path ({hint})"
        ))
    })?;
    Ok((perf_hub::Hub::from_env(source), source))
}

/// The split's files of a hub dataset, downloaded (or from the cache): the listing of `dir`
/// narrowed by [`split_files`]. An empty answer is an error that names what was looked for.
pub(crate) fn hub_split(
    hub: &perf_hub::Hub,
    repo: &str,
    dir: &str,
    split: &str,
    extensions: &[&str],
    id: &str,
    hint: &str,
) -> Result<Vec<PathBuf>, PluginError> {
    let fail = |e: String| {
        PluginError::config(format!(
            "the {id} dataset could not be fetched: {e}; or pass --dataset-path ({hint})"
        ))
    };
    let listing = hub
        .list_dataset(repo, dir)
        .map_err(|e| fail(e.to_string()))?;
    let files = split_files(&listing, dir, split, extensions);
    if files.is_empty() {
        return Err(fail(format!(
            "{repo} has no {split} files ({}) under '{}' ({} files listed)",
            extensions.join(", "),
            if dir.is_empty() { "/" } else { dir },
            listing.len()
        )));
    }
    files
        .iter()
        .map(|f| {
            hub.fetch(perf_hub::Kind::Dataset, repo, f)
                .map_err(|e| fail(e.to_string()))
        })
        .collect()
}

/// The parquet files of a local `--dataset-path`: the file itself, or the `.parquet` files of
/// a directory (under `subdir` when that exists there), sorted.
pub(crate) fn local_parquet(path: &Path, subdir: &str) -> Result<Vec<PathBuf>, PluginError> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let dir = if !subdir.is_empty() && path.join(subdir).is_dir() {
        path.join(subdir)
    } else {
        path.to_path_buf()
    };
    let entries = std::fs::read_dir(&dir).map_err(|e| {
        PluginError::config(format!("cannot read --dataset-path {}: {e}", dir.display()))
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .collect();
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_split_is_found_by_file_name_or_folder() {
        let files: Vec<String> = [
            "Accounting/dev-00000-of-00001.parquet",
            "Accounting/test-00000-of-00001.parquet",
            "Accounting/validation-00000-of-00001.parquet",
            "Art/validation-00000-of-00001.parquet",
            "data/tool-00000-of-00002.parquet",
            "data/tool-00001-of-00002.parquet",
            "data/toolbox-00000-of-00001.parquet",
            "data/xml-00000-of-00001.parquet",
            "test/part.parquet",
            "README.md",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            split_files(&files, "Accounting", "validation", &[".parquet"]),
            ["Accounting/validation-00000-of-00001.parquet"]
        );
        assert_eq!(
            split_files(&files, "", "tool", &[".parquet"]),
            [
                "data/tool-00000-of-00002.parquet",
                "data/tool-00001-of-00002.parquet"
            ]
        );
        assert_eq!(
            split_files(&files, "", "test", &[".parquet"]),
            [
                "Accounting/test-00000-of-00001.parquet",
                "test/part.parquet"
            ]
        );
        assert!(split_files(&files, "Art", "test", &[".parquet"]).is_empty());
    }
}
