//! `tch`: perf's local model backend (`--api local`), a LocalModel plugin library of its own so
//! the `perf` binary does not link libtorch. It runs Qwen2 / Qwen2.5, Qwen3 and Llama decoders
//! from `config.json` and safetensors weights on the CPU or a CUDA device.
//!
//! Requests that arrive together are decoded together: one scheduler thread owns the model; a
//! new request is prefilled on its own, then joins the batch, and every decode step advances
//! every running request by one token, so throughput grows with concurrency instead of
//! serialising. Requests leave the batch between steps (end of sequence, a stop id, their token
//! budget, or a client that went away).
//!
//! Options (`ModelConfig.options`): `device` (`cpu`, `cuda`, `cuda:N`; default cuda when
//! available), `dtype` (`auto` = the config's `torch_dtype`, or float32 / bfloat16 / float16;
//! default float32 on the CPU), `attn_implementation` (`eager`, `sdpa`; others are refused),
//! `max_batch` (default 64).

mod config;
mod model;
mod sample;
mod tokenizer;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};

use perf_plugin_api::sdk::{LocalModelPlugin, ModelConfig};
use perf_plugin_api::{FinishReason, GenerateOutcome, GenerateRequest, PluginError, TokenizerRef};
use serde::Deserialize;
use tch::Device;

pub use config::{Arch, Config};
pub use model::{Attention, Cache, Model};

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct Options {
    device: Option<String>,
    dtype: Option<String>,
    attn_implementation: Option<String>,
    max_batch: Option<usize>,
}

/// What a generation tells its caller.
enum Event {
    Token(u32),
    Done(GenerateOutcome),
    Failed(String),
}

struct Job {
    request: GenerateRequest,
    events: Sender<Event>,
    cancelled: Arc<AtomicBool>,
}

/// A running sequence in the batch.
struct Running {
    job: Job,
    cache: Cache,
    last: u32,
    generated: u32,
    seen: Vec<u32>,
    sampler: sample::Sampler,
}

fn device(name: Option<&str>) -> Result<Device, String> {
    match name {
        None => Ok(Device::cuda_if_available()),
        Some("cpu") => Ok(Device::Cpu),
        Some("cuda") => Ok(Device::Cuda(0)),
        Some(d) => match d.strip_prefix("cuda:").and_then(|n| n.parse().ok()) {
            Some(n) => Ok(Device::Cuda(n)),
            None => Err(format!("device '{d}' is not cpu, cuda or cuda:N")),
        },
    }
}

/// Why `job` ends after producing `token` as its `generated`-th token, if it does.
fn finished(job: &Job, token: u32, generated: u32, eos: &[u32]) -> Option<FinishReason> {
    let r = &job.request;
    if job.cancelled.load(Ordering::Relaxed) {
        return Some(FinishReason::Cancelled);
    }
    let stop = eos.contains(&token) || r.stop_token_ids.contains(&token);
    if stop && generated >= r.min_new_tokens {
        return Some(FinishReason::Stop);
    }
    (generated >= r.max_new_tokens).then_some(FinishReason::Length)
}

/// The scheduler: admits new requests, then advances the whole batch a token at a time.
fn schedule(model: Model, jobs: Receiver<Job>, max_batch: usize) {
    let _guard = tch::no_grad_guard();
    let eos = model.config.eos_token_ids.clone();
    let mut running: Vec<Running> = Vec::new();
    loop {
        // Wait for work when idle; otherwise take whatever has arrived.
        let mut fresh = Vec::new();
        if running.is_empty() {
            match jobs.recv() {
                Ok(j) => fresh.push(j),
                Err(_) => return,
            }
        }
        while running.len() + fresh.len() < max_batch {
            match jobs.try_recv() {
                Ok(j) => fresh.push(j),
                Err(_) => break,
            }
        }
        for job in fresh {
            if job.request.prompt_tokens.is_empty() {
                let _ = job.events.send(Event::Failed("the prompt is empty".into()));
                continue;
            }
            let mut cache = model.new_cache();
            let logits = model.prefill(&job.request.prompt_tokens, &mut cache);
            let mut sampler = sample::Sampler::new(&job.request.sampling);
            let seen: Vec<u32> = job.request.prompt_tokens.to_vec();
            let token = sampler.pick(&logits, &seen);
            let _ = job.events.send(Event::Token(token));
            let mut r = Running {
                job,
                cache,
                last: token,
                generated: 1,
                seen,
                sampler,
            };
            r.seen.push(token);
            match finished(&r.job, token, 1, &eos) {
                Some(reason) => done(r, reason),
                None => running.push(r),
            }
        }
        if running.is_empty() {
            continue;
        }
        let tokens: Vec<u32> = running.iter().map(|r| r.last).collect();
        let logits = {
            let mut caches: Vec<&mut Cache> = running.iter_mut().map(|r| &mut r.cache).collect();
            model.decode(&tokens, &mut caches)
        };
        let mut still = Vec::with_capacity(running.len());
        for (i, mut r) in running.into_iter().enumerate() {
            let row = logits.get(i as i64);
            let token = r.sampler.pick(&row, &r.seen);
            r.generated += 1;
            r.seen.push(token);
            r.last = token;
            let _ = r.job.events.send(Event::Token(token));
            match finished(&r.job, token, r.generated, &eos) {
                Some(reason) => done(r, reason),
                None => still.push(r),
            }
        }
        running = still;
    }
}

fn done(r: Running, finish: FinishReason) {
    let _ = r.job.events.send(Event::Done(GenerateOutcome::new(
        r.job.request.prompt_tokens.len() as u64,
        u64::from(r.generated),
        finish,
    )));
}

/// The plugin: a model and the scheduler thread that runs it.
pub struct TchModel {
    name: String,
    jobs: Mutex<Sender<Job>>,
    tokenizer: tokenizer::FileTokenizer,
}

impl LocalModelPlugin for TchModel {
    const ID: &'static str = "tch";
    const DESCRIPTION: &'static str =
        "Qwen2/Qwen2.5, Qwen3 and Llama on libtorch (CPU or CUDA), requests decoded together";
    const OPTION_KEYS: Option<&'static [&'static str]> =
        Some(&["device", "dtype", "attn_implementation", "max_batch"]);
    const OPTIONS_EXAMPLE: &'static str =
        r#"{"device": "cuda", "dtype": "bfloat16", "max_batch": 64}"#;

    fn load(model_path: &str, config: &ModelConfig) -> Result<Self, PluginError> {
        let options: Options = config.options()?;
        let attention = match options.attn_implementation.as_deref() {
            None | Some("sdpa") => Attention::Sdpa,
            Some("eager") => Attention::Eager,
            Some(other) => {
                return Err(PluginError::config(format!(
                    "--attn-implementation {other}: libtorch offers eager and sdpa (flash_attention_2 is a separate CUDA library)"
                )))
            }
        };
        let device = device(options.device.as_deref()).map_err(PluginError::config)?;
        let dir = Path::new(model_path);
        let cfg = Config::load(dir).map_err(PluginError::config)?;
        let dtype = match options.dtype.as_deref() {
            Some("auto") => cfg.dtype.clone(),
            Some(d) => d.to_string(),
            None if device == Device::Cpu => "float32".into(),
            None => cfg.dtype.clone(),
        };
        let kind = model::kind_of(&dtype).map_err(PluginError::config)?;
        let model = Model::load(dir, device, kind, attention).map_err(PluginError::config)?;
        let tokenizer = tokenizer::load(dir).map_err(PluginError::config)?;
        let (tx, rx) = channel();
        let max_batch = options.max_batch.unwrap_or(64).max(1);
        std::thread::Builder::new()
            .name("perf-tch-scheduler".into())
            .spawn(move || schedule(model, rx, max_batch))
            .map_err(|e| PluginError::other(format!("cannot start the scheduler: {e}")))?;
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| model_path.to_string());
        Ok(TchModel {
            name,
            jobs: Mutex::new(tx),
            tokenizer,
        })
    }

    fn name(&self) -> String {
        self.name.clone()
    }

    fn tokenizer(&self) -> TokenizerRef {
        self.tokenizer.handle()
    }

    fn generate(
        &self,
        request: &GenerateRequest,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<GenerateOutcome, PluginError> {
        let (tx, rx) = channel();
        let cancelled = Arc::new(AtomicBool::new(false));
        let job = Job {
            request: request.clone(),
            events: tx,
            cancelled: cancelled.clone(),
        };
        self.jobs
            .lock()
            .map_err(|_| PluginError::other("the scheduler is gone"))?
            .send(job)
            .map_err(|_| PluginError::other("the scheduler stopped"))?;
        for event in rx {
            match event {
                Event::Token(t) => {
                    if !on_token(t) {
                        cancelled.store(true, Ordering::Relaxed);
                    }
                }
                Event::Done(outcome) => return Ok(outcome),
                Event::Failed(why) => return Err(PluginError::invalid(why)),
            }
        }
        Err(PluginError::other("the scheduler stopped mid-generation"))
    }
}

perf_plugin_api::export_plugins! {
    LocalModel: TchModel,
}
