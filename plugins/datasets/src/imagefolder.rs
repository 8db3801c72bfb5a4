//! `kontext_bench`: image-editing instructions with their source images, from
//! `black-forest-labs/kontext-bench`. The hub keeps it in the Hugging Face "image folder" layout:
//! `test/metadata.jsonl`, one JSON object per line naming its image by `file_name` (relative to
//! the metadata file, e.g. `images/0000.jpg`) with the `instruction` text (and `key`,
//! `category`, which a benchmark does not need); several instructions share an image. Each
//! line becomes one user message, the instruction then the image's own bytes as a data URL, as
//! evalscope builds it ("Describe the image" where a line has no instruction).
//!
//! `--dataset-path` may name the metadata file or a directory holding it (in `test/` or at the
//! top). Without it the metadata comes from the hub and each image is fetched when the run
//! first reaches it, then served from the cache. A reader thread walks the lines and hands
//! samples over a small bounded queue, so memory holds a few images whatever the dataset's size.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use perf_plugin_api::sdk::{DatasetConfig, DatasetSourcePlugin};
use perf_plugin_api::{DatasetItem, PluginError, TokenizerRef};
use serde_json::Value;

use crate::images::{image_prompt, image_type};

const HUB_REPO: &str = "black-forest-labs/kontext-bench";
const SPLIT: &str = "test";
const METADATA: &str = "metadata.jsonl";
const DEFAULT_INSTRUCTION: &str = "Describe the image";
const HINT: &str = "a directory holding test/metadata.jsonl and its images";

type Item = Result<DatasetItem, PluginError>;

/// Where the images named by the metadata come from.
enum Images {
    /// Relative to the metadata file's directory.
    Local(PathBuf),
    /// From the hub, relative to the split's folder.
    Hub(perf_hub::Hub),
}

impl Images {
    fn get(&self, file_name: &str) -> Result<PathBuf, PluginError> {
        match self {
            Images::Local(dir) => Ok(dir.join(file_name)),
            Images::Hub(hub) => hub
                .fetch(
                    perf_hub::Kind::Dataset,
                    HUB_REPO,
                    &format!("{SPLIT}/{file_name}"),
                )
                .map_err(|e| PluginError::io(format!("kontext_bench image {file_name}: {e}"))),
        }
    }
}

/// The metadata file `--dataset-path` names, directly or as its directory.
fn local_metadata(path: &Path) -> Result<PathBuf, PluginError> {
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    for candidate in [path.join(SPLIT).join(METADATA), path.join(METADATA)] {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(PluginError::config(format!(
        "--dataset-path {}: no {SPLIT}/{METADATA} or {METADATA} there (kontext_bench reads {HINT})",
        path.display()
    )))
}

fn hub_metadata(config: &DatasetConfig) -> Result<(PathBuf, Images), PluginError> {
    let source = perf_hub::Source::parse(&config.data_source).map_err(|e| {
        PluginError::config(format!(
            "{e}; kontext_bench then needs --dataset-path ({HINT})"
        ))
    })?;
    // The dataset has the same id on both hubs.
    let hub = perf_hub::Hub::from_env(source);
    let metadata = hub
        .fetch(
            perf_hub::Kind::Dataset,
            HUB_REPO,
            &format!("{SPLIT}/{METADATA}"),
        )
        .map_err(|e| {
            PluginError::config(format!(
                "the kontext_bench dataset could not be fetched: {e}; or pass --dataset-path ({HINT})"
            ))
        })?;
    Ok((metadata, Images::Hub(hub)))
}

/// The image and instruction one metadata line names.
fn parse_line(line: &str, place: &str) -> Result<(String, String), PluginError> {
    let record: Value = serde_json::from_str(line)
        .map_err(|e| PluginError::invalid(format!("{place}: not a JSON object: {e}")))?;
    let Value::Object(fields) = record else {
        return Err(PluginError::invalid(format!(
            "{place}: not a JSON object (each line of {METADATA} describes one sample)"
        )));
    };
    let file_name = match fields.get("file_name") {
        Some(Value::String(name)) if !name.is_empty() => name.clone(),
        _ => {
            return Err(PluginError::invalid(format!(
                "{place}: no \"file_name\" string (each line names its image, e.g. \"images/0000.jpg\")"
            )))
        }
    };
    let instruction = match fields.get("instruction") {
        Some(Value::String(text)) if !text.trim().is_empty() => text.clone(),
        None | Some(Value::Null) | Some(Value::String(_)) => DEFAULT_INSTRUCTION.to_string(),
        Some(other) => {
            return Err(PluginError::invalid(format!(
                "{place}: \"instruction\" is {other}, not a string"
            )))
        }
    };
    Ok((file_name, instruction))
}

/// The sample a metadata line describes, its image read from `images`.
fn sample(line: &str, place: &str, images: &Images) -> Item {
    let (file_name, instruction) = parse_line(line, place)?;
    let ext = Path::new(&file_name)
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let mime = image_type(&ext).ok_or_else(|| {
        PluginError::invalid(format!(
            "{place}: {file_name} is not an image type a data URL can carry (jpg, png, webp, gif)"
        ))
    })?;
    let path = images.get(&file_name)?;
    let bytes = std::fs::read(&path).map_err(|e| {
        PluginError::invalid(format!(
            "{place}: cannot read its image {}: {e}",
            path.display()
        ))
    })?;
    Ok(image_prompt(&instruction, &bytes, mime))
}

/// Sends one sample per metadata line; stops at the first error or when the receiver is gone.
fn read_all(metadata: &Path, images: &Images, tx: &SyncSender<Item>) {
    let name = metadata.display().to_string();
    let file = match File::open(metadata) {
        Ok(f) => f,
        Err(e) => {
            let _ = tx.send(Err(PluginError::io(format!("{name}: {e}"))));
            return;
        }
    };
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let place = format!("{name}:{}", i + 1);
        let item = match line {
            Ok(line) if line.trim().is_empty() => continue,
            Ok(line) => sample(line.trim(), &place, images),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Err(PluginError::invalid(
                format!("{place}: not UTF-8 text (is this a JSON-lines file?)"),
            )),
            Err(e) => Err(PluginError::io(format!("{place}: {e}"))),
        };
        let stop = item.is_err();
        if tx.send(item).is_err() || stop {
            return;
        }
    }
}

/// `kontext_bench`.
pub struct KontextBench {
    /// The first sample, read before the run so a bad dataset fails before traffic.
    first: Option<DatasetItem>,
    rx: Receiver<Item>,
}

impl DatasetSourcePlugin for KontextBench {
    const ID: &'static str = "kontext_bench";
    const DESCRIPTION: &'static str =
        "image-editing instructions + source images from Kontext-Bench (hub, or --dataset-path)";
    const OPTION_KEYS: Option<&'static [&'static str]> = Some(&[]);

    fn new(config: &DatasetConfig, _tokenizer: Option<TokenizerRef>) -> Result<Self, PluginError> {
        let (metadata, images) = match &config.dataset_path {
            Some(p) => {
                let metadata = local_metadata(Path::new(p))?;
                let dir = metadata.parent().map(Path::to_path_buf).unwrap_or_default();
                (metadata, Images::Local(dir))
            }
            None => hub_metadata(config)?,
        };
        let (tx, rx) = sync_channel(8);
        std::thread::Builder::new()
            .name("perf-kontext".into())
            .spawn(move || read_all(&metadata, &images, &tx))
            .map_err(|e| {
                PluginError::other(format!("cannot start the kontext_bench reader: {e}"))
            })?;
        let first = match rx.recv() {
            Ok(item) => item?,
            Err(_) => {
                return Err(PluginError::invalid(format!(
                    "the kontext_bench metadata has no samples ({HINT})"
                )))
            }
        };
        Ok(KontextBench {
            first: Some(first),
            rx,
        })
    }

    fn next_item(&mut self) -> Result<Option<DatasetItem>, PluginError> {
        if let Some(item) = self.first.take() {
            return Ok(Some(item));
        }
        match self.rx.recv() {
            Ok(item) => item.map(Some),
            // The reader finished the metadata.
            Err(_) => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use perf_plugin_api::{ContentPart, PromptItem};

    fn config(path: &Path) -> DatasetConfig {
        DatasetConfig {
            dataset_path: Some(path.to_string_lossy().into_owned()),
            ..DatasetConfig::default()
        }
    }

    /// A dataset directory: `test/metadata.jsonl` holding `lines`, and `test/images/<name>` for
    /// each of `images`.
    fn dataset(lines: &str, images: &[(&str, &[u8])]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tmp");
        let test = dir.path().join("test");
        std::fs::create_dir_all(test.join("images")).expect("mkdir");
        std::fs::write(test.join(METADATA), lines).expect("write");
        for (name, bytes) in images {
            std::fs::write(test.join("images").join(name), bytes).expect("write");
        }
        dir
    }

    fn parts(item: &DatasetItem) -> (String, String) {
        let Ok(PromptItem::Messages(m)) = item.prompt() else {
            panic!("messages");
        };
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].role.as_str(), "user");
        match (m[0].content[0].as_enum(), m[0].content[1].as_enum()) {
            (Ok(ContentPart::Text(t)), Ok(ContentPart::ImageUrl(u))) => {
                (t.to_string(), u.to_string())
            }
            other => panic!("text then image: {other:?}"),
        }
    }

    fn drain(source: &mut KontextBench) -> Vec<(String, String)> {
        std::iter::from_fn(|| source.next_item().expect("item"))
            .map(|i| parts(&i))
            .collect()
    }

    #[test]
    fn each_line_is_its_instruction_then_its_image() {
        let dir = dataset(
            concat!(
                r#"{"file_name": "images/0000.jpg", "key": "0000_00", "instruction": "Give the cat a hat", "category": "Local Editing"}"#,
                "\n",
                r#"{"file_name": "images/0000.jpg", "key": "0000_01", "instruction": "Make it night"}"#,
                "\n\n",
                r#"{"file_name": "images/0001.PNG", "key": "0001_00", "instruction": null}"#,
                "\n",
            ),
            &[("0000.jpg", b"\xff\xd8\xffjpeg"), ("0001.PNG", b"\x89PNG")],
        );
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let jpeg = format!("data:image/jpeg;base64,{}", b64(b"\xff\xd8\xffjpeg"));
        let png = format!("data:image/png;base64,{}", b64(b"\x89PNG"));
        let expected = vec![
            ("Give the cat a hat".to_string(), jpeg.clone()),
            ("Make it night".to_string(), jpeg),
            (DEFAULT_INSTRUCTION.to_string(), png),
        ];
        // The directory, the split folder and the metadata file itself all name the dataset.
        for path in [
            dir.path().to_path_buf(),
            dir.path().join("test"),
            dir.path().join("test").join(METADATA),
        ] {
            let mut source = KontextBench::new(&config(&path), None).expect("opens");
            assert_eq!(drain(&mut source), expected, "{}", path.display());
        }
    }

    #[test]
    fn bad_metadata_names_the_file_and_line() {
        let good = r#"{"file_name": "images/a.jpg", "instruction": "x"}"#;
        let cases: [(String, &str); 6] = [
            (
                format!("{good}\n{{\"instruction\": \"x\"}}\n"),
                ":2: no \"file_name\"",
            ),
            (
                format!("{good}\n{{\"file_name\": \"images/a.jpg\"\n"),
                ":2: not a JSON object",
            ),
            (format!("{good}\n[1, 2]\n"), ":2: not a JSON object"),
            (
                format!("{good}\n{{\"file_name\": \"images/a.jpg\", \"instruction\": 7}}\n"),
                ":2: \"instruction\" is 7",
            ),
            (
                format!("{good}\n{{\"file_name\": \"images/missing.jpg\"}}\n"),
                ":2: cannot read its image",
            ),
            (
                format!("{good}\n{{\"file_name\": \"images/a.tiff\"}}\n"),
                ":2: images/a.tiff is not an image type",
            ),
        ];
        for (lines, wanted) in cases {
            let dir = dataset(&lines, &[("a.jpg", b"\xff\xd8")]);
            let mut source = KontextBench::new(&config(dir.path()), None).expect("first line");
            assert!(source.next_item().expect("line 1").is_some());
            let err = source.next_item().expect_err(wanted);
            assert!(
                err.message.contains(&format!("{METADATA}{wanted}")),
                "{wanted}: {}",
                err.message
            );
        }
    }

    #[test]
    fn an_empty_garbage_or_missing_dataset_fails_before_the_run() {
        let empty = dataset("\n\n", &[]);
        let err = KontextBench::new(&config(empty.path()), None)
            .err()
            .expect("empty");
        assert!(err.message.contains("has no samples"), "{}", err.message);

        let garbage = tempfile::tempdir().expect("tmp");
        let file = garbage.path().join(METADATA);
        std::fs::write(&file, [0u8, 159, 146, 150, 0xff, 0xfe, 10]).expect("write");
        let err = KontextBench::new(&config(&file), None)
            .err()
            .expect("garbage");
        assert!(
            err.message.contains(&format!("{METADATA}:1: not UTF-8")),
            "{}",
            err.message
        );

        let nothing = tempfile::tempdir().expect("tmp");
        let err = KontextBench::new(&config(nothing.path()), None)
            .err()
            .expect("no metadata");
        assert!(
            err.message.contains("no test/metadata.jsonl"),
            "{}",
            err.message
        );
    }
}
