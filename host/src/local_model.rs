//! `--api local`: serve a model from a LocalModel plugin (the `tch` backend,
//! `plugins/model-tch`, built as its own library so `perf` does not link libtorch) on the
//! OpenAI-compatible server, then benchmark it over HTTP like any server.
//!
//! The plugin is found through `--plugin`, or as `libperf_model_tch.so` beside the `perf`
//! binary. `--model` is a model directory, or a model id whose files (`config.json`, tokenizer
//! files, safetensors and their index) are fetched from ModelScope or, with `--data-source
//! huggingface`, Hugging Face into perf's cache. Prompts are tokenized here, with the chat
//! template of the model's `tokenizer_config.json`; the plugin deals in token ids, decoding
//! requests that arrive together in one batch.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper::StatusCode;
use perf_plugin_api::sdk::TokenizerPlugin;
use perf_plugin_api::{FinishReason, GenerateRequest, SamplingParams};
use tokio::sync::mpsc;

use std::sync::atomic::{AtomicU64, Ordering};

use crate::plugin_host::LocalModel;
use crate::tokenizer::HostTokenizer;
use perf_server::{Backend, CompletionRequest, Generation, Piece, Rejection};

/// The backend library's file name on this platform.
pub fn library_name() -> String {
    format!(
        "{}perf_model_tch{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

/// The backend library beside the running binary, if it is there.
pub fn beside_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let path = exe.parent()?.join(library_name());
    path.is_file().then_some(path)
}

/// What `--api local` says when no LocalModel plugin is available.
pub fn missing_backend_message() -> String {
    format!(
        "--api local needs a local model backend: build plugins/model-tch (plugins/model-tch/scripts/check installs libtorch and builds it) and put {} beside perf, or pass it with --plugin",
        library_name()
    )
}

/// `--model` as a directory: itself, or the model's files fetched from the hub.
pub fn model_dir(spec: &str, data_source: &str) -> Result<PathBuf, String> {
    let path = Path::new(spec);
    if path.is_dir() {
        return Ok(path.to_path_buf());
    }
    let source = perf_hub::Source::parse(data_source).map_err(|e| {
        format!("--model {spec}: no such directory, and {e}; pass a local model directory")
    })?;
    fetch_model(spec, &perf_hub::Hub::from_env(source))
}

/// The model's files fetched from `hub` (cached): its directory in the cache.
fn fetch_model(spec: &str, hub: &perf_hub::Hub) -> Result<PathBuf, String> {
    let kind = perf_hub::Kind::Model;
    let fail = |e: perf_hub::HubError| {
        format!("--model {spec}: no such directory, and fetching it as a model id failed: {e}; pass a local model directory")
    };
    let config = hub.fetch(kind, spec, "config.json").map_err(fail)?;
    hub.fetch(kind, spec, "tokenizer.json").map_err(fail)?;
    hub.fetch_optional(kind, spec, "tokenizer_config.json")
        .map_err(fail)?;
    match hub
        .fetch_optional(kind, spec, "model.safetensors.index.json")
        .map_err(fail)?
    {
        Some(index) => {
            let text =
                std::fs::read_to_string(&index).map_err(|e| format!("{}: {e}", index.display()))?;
            let v: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| format!("{}: {e}", index.display()))?;
            let mut shards: Vec<String> = v["weight_map"]
                .as_object()
                .map(|m| {
                    m.values()
                        .filter_map(|f| f.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            shards.sort();
            shards.dedup();
            for shard in shards {
                hub.fetch(kind, spec, &shard).map_err(fail)?;
            }
        }
        None => {
            hub.fetch(kind, spec, "model.safetensors").map_err(fail)?;
        }
    }
    Ok(config.parent().map(Path::to_path_buf).unwrap_or_default())
}

/// A LocalModel plugin as the server's backend.
pub struct LocalBackend {
    model: Arc<LocalModel>,
    tokenizer: HostTokenizer,
    name: String,
}

impl LocalBackend {
    pub fn new(model: LocalModel, tokenizer: HostTokenizer, name: String) -> Self {
        LocalBackend {
            model: Arc::new(model),
            tokenizer,
            name,
        }
    }

    /// The prompt's token ids as the server sees them: the chat template over the messages,
    /// the text with special tokens, or the ids themselves.
    fn prompt_ids(&self, r: &CompletionRequest) -> Result<Vec<u32>, String> {
        if let Some(ids) = &r.prompt_ids {
            return Ok(ids.clone());
        }
        if r.chat {
            let messages: Vec<perf_plugin_api::ChatMessage> = r
                .messages
                .iter()
                .map(|(role, text)| perf_plugin_api::ChatMessage::text(role, text))
                .collect();
            return self.tokenizer.chat_ids(&messages);
        }
        self.tokenizer
            .encode(r.prompt.as_deref().unwrap_or(""), true)
            .map_err(|e| e.to_string())
    }
}

fn bad_request(message: String) -> Rejection {
    Rejection {
        status: StatusCode::BAD_REQUEST,
        message,
    }
}

impl Backend for LocalBackend {
    fn model(&self) -> &str {
        &self.name
    }

    fn start(&self, r: &CompletionRequest) -> Result<Generation, Rejection> {
        let prompt = self.prompt_ids(r).map_err(bad_request)?;
        if prompt.is_empty() {
            return Err(bad_request("the prompt is empty".into()));
        }
        let max_new = r.max_tokens.unwrap_or(512).max(1);
        let request = GenerateRequest {
            prompt_tokens: prompt.clone().into(),
            max_new_tokens: max_new,
            min_new_tokens: if r.ignore_eos {
                max_new
            } else {
                r.min_tokens.unwrap_or(0)
            },
            stop_token_ids: r.stop_token_ids.clone().into(),
            sampling: SamplingParams {
                temperature: r.temperature.unwrap_or(0.0),
                top_p: r.top_p.into(),
                top_k: r.top_k.filter(|k| *k > 0).map(|k| k as u32).into(),
                repetition_penalty: None.into(),
                frequency_penalty: None.into(),
                seed: r.seed.into(),
            },
            ext: Default::default(),
        };
        let (tx, rx) = mpsc::channel(64);
        let model = self.model.clone();
        let tokenizer = self.tokenizer.clone();
        std::thread::Builder::new()
            .name("perf-local-generate".into())
            .spawn(move || {
                let mut ids: Vec<u32> = Vec::new();
                let mut shown = 0usize;
                let mut on_token = |id: u32| {
                    ids.push(id);
                    // Text as it settles: a piece that ends inside a UTF-8 character waits.
                    let text = tokenizer.decode(&ids, true).unwrap_or_default();
                    let piece = if text.ends_with('\u{FFFD}') || text.len() < shown {
                        String::new()
                    } else {
                        let p = text[shown..].to_string();
                        shown = text.len();
                        p
                    };
                    tx.blocking_send(Piece::Text {
                        text: piece,
                        tokens: 1,
                    })
                    .is_ok()
                };
                let finish = match model.generate(&request, &mut on_token) {
                    Ok(outcome) => match record_peak(&outcome).finish {
                        FinishReason::Length => "length",
                        // Stop, Cancelled, and reasons of a newer interface.
                        _ => "stop",
                    },
                    Err(_) => {
                        let _ = tx.blocking_send(Piece::Drop);
                        return;
                    }
                };
                let _ = tx.blocking_send(Piece::End {
                    finish_reason: finish,
                });
            })
            .map_err(|e| Rejection {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: format!("cannot start a generation: {e}"),
            })?;
        Ok(Generation {
            prompt_tokens: prompt.len() as u64,
            cached_tokens: None,
            pieces: rx,
        })
    }
}

/// The highest peak accelerator memory a generation of this process reported, in bytes.
static PEAK_MEMORY_BYTES: AtomicU64 = AtomicU64::new(0);

/// The backend's peak accelerator memory so far, in bytes (0 without a local model, or with a
/// backend that does not measure it): what evalscope reads from torch as
/// `max_gpu_memory_cost`.
pub fn peak_memory_bytes() -> u64 {
    PEAK_MEMORY_BYTES.load(Ordering::Relaxed)
}

fn record_peak(outcome: &perf_plugin_api::GenerateOutcome) -> &perf_plugin_api::GenerateOutcome {
    if let Some(bytes) = outcome.peak_memory_bytes.into_option() {
        PEAK_MEMORY_BYTES.fetch_max(bytes, Ordering::Relaxed);
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::io::{BufRead, BufReader, Write};

    /// A hub on 127.0.0.1 answering like ModelScope: `files` by request target, 404 otherwise.
    fn hub(files: HashMap<String, Vec<u8>>) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                let mut header = String::new();
                while reader.read_line(&mut header).is_ok() && header.trim() != "" {
                    header.clear();
                }
                let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
                let (status, body) = match files.get(&target) {
                    Some(b) => ("200 OK", b.clone()),
                    None => ("404 Not Found", b"{}".to_vec()),
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(&body);
            }
        });
        format!("http://127.0.0.1:{port}")
    }

    #[test]
    fn a_model_id_is_fetched_with_its_shards_into_the_cache() {
        let base = "/api/v1/models/org/tiny/repo?Revision=master&FilePath=";
        let index = br#"{"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}"#;
        let files: HashMap<String, Vec<u8>> = [
            ("config.json", b"{}".to_vec()),
            ("tokenizer.json", b"{}".to_vec()),
            ("model.safetensors.index.json", index.to_vec()),
            ("model-00001-of-00002.safetensors", b"one".to_vec()),
            ("model-00002-of-00002.safetensors", b"two".to_vec()),
        ]
        .into_iter()
        .map(|(f, b)| (format!("{base}{f}"), b))
        .collect();
        let cache = tempfile::tempdir().expect("tmp");
        let hub = perf_hub::Hub::new(
            perf_hub::Source::ModelScope,
            &hub(files),
            cache.path().to_path_buf(),
            None,
        );
        let dir = fetch_model("org/tiny", &hub).expect("fetched");
        for f in [
            "config.json",
            "tokenizer.json",
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
        ] {
            assert!(dir.join(f).is_file(), "{f} in {}", dir.display());
        }
        let err = fetch_model("org/absent", &hub).expect_err("absent");
        assert!(
            err.contains("org/absent") && err.contains("local model directory"),
            "{err}"
        );
    }
}
