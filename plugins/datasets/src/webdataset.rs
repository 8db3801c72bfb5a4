//! `flickr8k`: image + caption prompts from the WebDataset shards of `clip-benchmark/wds_flickr8k`
//! (the hub layout is `test/nshards.txt` holding the shard count and `test/0.tar`, `test/1.tar`,
//! ...). A sample is the run of tar entries sharing a key: `<key>.jpg` (or `.jpeg`, `.png`,
//! `.webp`) and `<key>.txt`; the image is sent as a data URL with its own bytes and type, the
//! caption as the text part, as evalscope builds them.
//!
//! `--dataset-path` may name one `.tar` shard or a directory of them (searched in `test/` first),
//! read in numeric order. Without it the shards are fetched from the hub one at a time, as the
//! run reaches them. A reader thread walks the shards and hands samples over a small bounded
//! queue, so memory holds a few images whatever the dataset's size.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use perf_plugin_api::sdk::{DatasetConfig, DatasetSourcePlugin};
use perf_plugin_api::{DatasetItem, PluginError, TokenizerRef};

use crate::images::{image_prompt, image_type};

const HUB_MODELSCOPE: &str = "clip-benchmark/wds_flickr8k";
const HUB_HUGGINGFACE: &str = "clip-benchmark/wds_flickr8k";
const SPLIT: &str = "test";

type Item = Result<DatasetItem, PluginError>;

/// Where the shards come from.
enum Shards {
    Local(Vec<PathBuf>),
    Hub(perf_hub::Hub, &'static str, usize),
}

impl Shards {
    fn count(&self) -> usize {
        match self {
            Shards::Local(paths) => paths.len(),
            Shards::Hub(_, _, n) => *n,
        }
    }

    fn get(&self, i: usize) -> Result<PathBuf, PluginError> {
        match self {
            Shards::Local(paths) => Ok(paths[i].clone()),
            Shards::Hub(hub, repo, _) => hub
                .fetch(perf_hub::Kind::Dataset, repo, &format!("{SPLIT}/{i}.tar"))
                .map_err(|e| PluginError::io(format!("flickr8k shard {i}: {e}"))),
        }
    }
}

/// The `.tar` shards of `path`, in numeric order.
fn local_shards(path: &Path) -> Result<Vec<PathBuf>, PluginError> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let dir = if path.join(SPLIT).is_dir() {
        path.join(SPLIT)
    } else {
        path.to_path_buf()
    };
    let entries = std::fs::read_dir(&dir).map_err(|e| {
        PluginError::config(format!("cannot read --dataset-path {}: {e}", dir.display()))
    })?;
    let mut shards: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "tar"))
        .collect();
    let number = |p: &PathBuf| {
        p.file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<u64>().ok())
    };
    shards.sort_by(|a, b| number(a).cmp(&number(b)).then_with(|| a.cmp(b)));
    if shards.is_empty() {
        return Err(PluginError::config(format!(
            "--dataset-path {}: no .tar shards (flickr8k reads WebDataset shards: <key>.jpg + <key>.txt)",
            dir.display()
        )));
    }
    Ok(shards)
}

fn hub_shards(config: &DatasetConfig) -> Result<Shards, PluginError> {
    let source = perf_hub::Source::parse(&config.data_source).map_err(|e| {
        PluginError::config(format!(
            "{e}; flickr8k then needs --dataset-path (a directory of .tar shards)"
        ))
    })?;
    let repo = match source {
        perf_hub::Source::ModelScope => HUB_MODELSCOPE,
        perf_hub::Source::HuggingFace => HUB_HUGGINGFACE,
    };
    let hub = perf_hub::Hub::from_env(source);
    let fail = |e: String| {
        PluginError::config(format!(
            "the flickr8k dataset could not be fetched: {e}; or pass --dataset-path (a directory of .tar shards)"
        ))
    };
    let count_file = hub
        .fetch(
            perf_hub::Kind::Dataset,
            repo,
            &format!("{SPLIT}/nshards.txt"),
        )
        .map_err(|e| fail(e.to_string()))?;
    let text = std::fs::read_to_string(&count_file).map_err(|e| fail(e.to_string()))?;
    let n: usize = text.trim().parse().map_err(|_| {
        fail(format!(
            "{}: not a shard count: {text:?}",
            count_file.display()
        ))
    })?;
    Ok(Shards::Hub(hub, repo, n))
}

/// One sample being assembled from consecutive entries.
#[derive(Default)]
struct Sample {
    key: String,
    image: Option<(Vec<u8>, &'static str)>,
    caption: Option<String>,
}

impl Sample {
    fn item(self) -> Option<DatasetItem> {
        let (bytes, mime) = self.image?;
        Some(image_prompt(&self.caption?, &bytes, mime))
    }
}

/// Sends every complete sample of `shard`; `false` when the receiver is gone.
fn read_shard(shard: &Path, tx: &SyncSender<Item>) -> Result<bool, PluginError> {
    let name = shard.display();
    let file = File::open(shard).map_err(|e| PluginError::io(format!("{name}: {e}")))?;
    let mut archive = tar::Archive::new(file);
    let entries = archive
        .entries()
        .map_err(|e| PluginError::invalid(format!("{name}: not a tar archive: {e}")))?;
    let mut sample = Sample::default();
    for entry in entries {
        let mut entry =
            entry.map_err(|e| PluginError::invalid(format!("{name}: a damaged tar entry: {e}")))?;
        let path = entry
            .path()
            .map_err(|e| PluginError::invalid(format!("{name}: an entry without a name: {e}")))?
            .to_string_lossy()
            .into_owned();
        // WebDataset keys end at the first dot of the file name.
        let base = path.rsplit('/').next().unwrap_or(&path);
        let Some((key, ext)) = base.split_once('.') else {
            continue;
        };
        let key = format!("{}{key}", &path[..path.len() - base.len()]);
        if key != sample.key {
            let done = std::mem::replace(
                &mut sample,
                Sample {
                    key,
                    ..Sample::default()
                },
            );
            if let Some(item) = done.item() {
                if tx.send(Ok(item)).is_err() {
                    return Ok(false);
                }
            }
        }
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes)
            .map_err(|e| PluginError::invalid(format!("{name}: {path}: {e}")))?;
        let ext = ext.to_ascii_lowercase();
        if let Some(mime) = image_type(&ext) {
            sample.image = Some((bytes, mime));
        } else if ext == "txt" {
            let text = String::from_utf8(bytes).map_err(|_| {
                PluginError::invalid(format!("{name}: {path}: the caption is not UTF-8"))
            })?;
            sample.caption = Some(text.trim().to_string());
        }
    }
    if let Some(item) = sample.item() {
        return Ok(tx.send(Ok(item)).is_ok());
    }
    Ok(true)
}

/// `flickr8k`.
pub struct Flickr8k {
    rx: Receiver<Item>,
}

impl DatasetSourcePlugin for Flickr8k {
    const ID: &'static str = "flickr8k";
    const DESCRIPTION: &'static str =
        "image + caption prompts from the Flickr8k WebDataset shards (hub, or --dataset-path)";
    const OPTION_KEYS: Option<&'static [&'static str]> = Some(&[]);

    fn new(config: &DatasetConfig, _tokenizer: Option<TokenizerRef>) -> Result<Self, PluginError> {
        let shards = match &config.dataset_path {
            Some(p) => Shards::Local(local_shards(Path::new(p))?),
            None => hub_shards(config)?,
        };
        // Fail now, not mid-run, when the first shard cannot be had.
        let first = shards.get(0)?;
        let (tx, rx) = sync_channel(8);
        std::thread::Builder::new()
            .name("perf-flickr8k".into())
            .spawn(move || {
                for i in 0..shards.count() {
                    let shard = if i == 0 {
                        Ok(first.clone())
                    } else {
                        shards.get(i)
                    };
                    let sent = shard.and_then(|s| read_shard(&s, &tx));
                    match sent {
                        Ok(true) => {}
                        Ok(false) => return,
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    }
                }
            })
            .map_err(|e| PluginError::other(format!("cannot start the flickr8k reader: {e}")))?;
        Ok(Flickr8k { rx })
    }

    fn next_item(&mut self) -> Result<Option<DatasetItem>, PluginError> {
        match self.rx.recv() {
            Ok(item) => item.map(Some),
            // The reader finished every shard.
            Err(_) => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use perf_plugin_api::{ContentPart, PromptItem};

    /// A shard holding `samples` as (key, image extension, image bytes, caption).
    pub(crate) fn shard(path: &Path, samples: &[(&str, &str, &[u8], &str)]) {
        let mut builder = tar::Builder::new(File::create(path).expect("create"));
        let mut add = |name: String, data: &[u8]| {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder
                .append_data(&mut header, name, data)
                .expect("append");
        };
        for (key, ext, image, caption) in samples {
            add(format!("{key}.{ext}"), image);
            add(format!("{key}.txt"), caption.as_bytes());
            add(format!("{key}.json"), b"{}");
        }
        builder.finish().expect("finish");
    }

    fn parts(item: &DatasetItem) -> (String, String) {
        let Ok(PromptItem::Messages(m)) = item.prompt() else {
            panic!("messages");
        };
        match (m[0].content[0].as_enum(), m[0].content[1].as_enum()) {
            (Ok(ContentPart::Text(t)), Ok(ContentPart::ImageUrl(u))) => {
                (t.to_string(), u.to_string())
            }
            other => panic!("text then image: {other:?}"),
        }
    }

    #[test]
    fn samples_come_from_shards_in_numeric_order_with_their_image_type() {
        let dir = tempfile::tempdir().expect("tmp");
        let test = dir.path().join("test");
        std::fs::create_dir(&test).expect("mkdir");
        shard(&test.join("10.tar"), &[("c", "png", b"\x89PNG-c", "third")]);
        shard(
            &test.join("2.tar"),
            &[
                ("a", "jpg", b"\xff\xd8a", "A dog runs.\n"),
                ("b", "webp", b"RIFFb", "second"),
            ],
        );
        std::fs::write(test.join("nshards.txt"), "2").expect("write");
        let config = DatasetConfig {
            dataset_path: Some(dir.path().to_string_lossy().into_owned()),
            ..DatasetConfig::default()
        };
        let mut source = Flickr8k::new(&config, None).expect("opens");
        let items: Vec<(String, String)> = std::iter::from_fn(|| source.next_item().expect("item"))
            .map(|i| parts(&i))
            .collect();
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        assert_eq!(
            items,
            vec![
                (
                    "A dog runs.".into(),
                    format!("data:image/jpeg;base64,{}", b64(b"\xff\xd8a"))
                ),
                (
                    "second".into(),
                    format!("data:image/webp;base64,{}", b64(b"RIFFb"))
                ),
                (
                    "third".into(),
                    format!("data:image/png;base64,{}", b64(b"\x89PNG-c"))
                ),
            ]
        );
    }

    #[test]
    fn a_directory_without_shards_or_a_broken_shard_is_an_error() {
        let dir = tempfile::tempdir().expect("tmp");
        let config = |p: &Path| DatasetConfig {
            dataset_path: Some(p.to_string_lossy().into_owned()),
            ..DatasetConfig::default()
        };
        let err = Flickr8k::new(&config(dir.path()), None)
            .err()
            .expect("no shards");
        assert!(err.message.contains("no .tar shards"), "{}", err.message);
        let bad = dir.path().join("0.tar");
        std::fs::write(&bad, vec![7u8; 1500]).expect("write");
        let mut source = Flickr8k::new(&config(&bad), None).expect("opens");
        let err = source.next_item().expect_err("garbage");
        assert!(err.message.contains("0.tar"), "{}", err.message);
    }
}
