//! From raw flags to a validated run plan. Every check that evalscope perf makes is here, with
//! a message that says what to change; nothing in this module does I/O except reading the
//! `@file` arguments it resolves.

use std::path::PathBuf;
use std::time::Duration;

pub mod args;
mod endpoint;
mod load;
mod prompts;
mod runs;
mod secrets;
pub mod shard;
mod sinks;

pub use runs::{python_float, warmup};
pub use secrets::{is_secret_key, masked_url, redacted_url, secrets, MASK};

use perf_plugin_api::sdk::{ApiConfig, DatasetConfig, SinkConfig};
use perf_plugin_api::{PluginKind, ResultKind};
use serde_json::{json, Map, Value};

use crate::cli::{MockArgs, RunArgs};
use crate::error::usage;
use crate::modes::ServerMode;
use crate::plugin_host::PluginRegistry;
use crate::run::Talk;

/// One run of a sweep: a (parallel, number) pair, or (rate, number) in open loop.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSpec {
    /// Maximum in-flight requests; `None` in open loop.
    pub parallel: Option<usize>,
    /// Measured requests.
    pub number: u64,
    /// Requests per second on a Poisson schedule; `None` = unpaced.
    pub rate: Option<f64>,
    /// Warmup requests sent before the measured ones (no barrier).
    pub warmup: u64,
    /// The run's directory name (the whole run's, for a shard).
    pub label: String,
    /// `--shard`: this shard's part of the whole run.
    pub share: Option<shard::Share>,
}

/// `--max-tokens`: one value, or a range drawn per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxTokens {
    /// Every request asks for this many.
    Fixed(u32),
    /// Each request draws uniformly from this inclusive range.
    Range(u32, u32),
}

/// HTTP settings.
#[derive(Debug, Clone)]
pub struct HttpPlan {
    /// The endpoint.
    pub url: String,
    /// Extra headers (`--headers`), in order.
    pub headers: Vec<(String, String)>,
    /// `--api-key`.
    pub api_key: Option<String>,
    /// Connect timeout.
    pub connect_timeout: Option<Duration>,
    /// Longest gap between reads.
    pub read_timeout: Option<Duration>,
    /// Whole-request timeout.
    pub total_timeout: Duration,
    /// How large a response may be.
    pub limits: crate::worker::Limits,
    /// Trust and the client certificate for https.
    pub tls: crate::transport::tls::TlsPlan,
    /// Use the proxy environment variables (not `--no-proxy`).
    pub env_proxy: bool,
}

/// Where prompts come from.
#[derive(Debug, Clone)]
pub enum PromptPlan {
    /// `--prompt`: one prompt sent every time.
    Fixed(String),
    /// A dataset plugin.
    Dataset {
        /// Its id.
        id: String,
        /// Its configuration.
        config: Box<DatasetConfig>,
    },
}

/// A validated invocation.
#[derive(Debug, Clone)]
pub struct RunPlan {
    /// The API adapter's id (`mock`, `local`, `local_vllm` resolve to `openai`, `responses` to
    /// `openai_responses`).
    pub api_id: String,
    /// What the user passed to `--api`.
    pub api_flag: String,
    /// The adapter's configuration.
    pub api: ApiConfig,
    /// HTTP settings.
    pub http: HttpPlan,
    /// Test the connection first.
    pub test_connection: bool,
    /// The runs of the sweep, in order.
    pub runs: Vec<RunSpec>,
    /// Sleep between runs.
    pub sleep_interval: Duration,
    /// Per-run wall-clock budget.
    pub duration: Option<Duration>,
    /// `--max-tokens`.
    pub max_tokens: MaxTokens,
    /// `--seed` (also seeds the schedule and the max-tokens draws).
    pub seed: Option<i64>,
    /// The seed datasets draw prompts with: `--dataset-seed`, else `--seed`, else a fresh one.
    pub dataset_seed: u64,
    /// Prompts.
    pub prompts: PromptPlan,
    /// Result sinks to enable.
    pub sinks: Vec<(String, SinkConfig)>,
    /// The simulator, for `--api mock`.
    pub mock: Option<MockArgs>,
    /// `--api local_vllm`: the port vLLM's server is started on.
    pub local_vllm: Option<u16>,
    /// `--api local`: the model server's port and the backend's options (`--api-args`
    /// `device`, `dtype`, `max_batch`; `--attn-implementation`).
    pub local: Option<(u16, Value)>,
    /// Run name (visualisers) and output directory name.
    pub name: String,
    /// `<outputs-dir>/<time>/<name>`.
    pub output_dir: PathBuf,
    /// Log the running summary every N responses.
    pub log_every_n: u64,
    /// SQLite rows per commit.
    pub db_commit_interval: usize,
    /// All arguments, secrets masked, for `benchmark_args.json` and sinks.
    pub args_json: Value,
    /// Debug logging.
    pub debug: bool,
    /// What the flags do that the user may not expect (two flags setting one header), logged
    /// when the run starts.
    pub warnings: Vec<String>,
    /// `--tokenizer-path`: a tokenizer.json, a directory holding one, or a model id on the hub.
    pub tokenizer_path: Option<String>,
    /// `--data-source`: the hub model ids and datasets come from.
    pub data_source: String,
    /// `--image-patch-size`: pixels per image token side when perf counts image prompts.
    pub image_patch_size: u32,
    /// `--server-metrics`: the URL to scrape (None: `/metrics` on the server's host, known
    /// when the run starts) and the interval.
    pub server_metrics: Option<(Option<String>, std::time::Duration)>,
    /// Embeddings or rerank: requests that produce no text, summarised by their input.
    pub input_only: bool,
    /// Decision services (`systemone`, `autotrust`): input-only with evalscope's decision keys
    /// and TTFT and TPOT 0 in the rows, as evalscope writes them.
    pub decisions: bool,
    /// `--response-messages`.
    pub response_messages: crate::output::messages::ResponseMessages,
    /// The arrival process and ramp-up of every run.
    pub shape: crate::schedule::Shape,
    /// `--goodput`'s per-request objectives.
    pub goodput: Option<crate::aggregate::goodput::Slo>,
    /// `--enable-pd-metrics`.
    pub pd_metrics: bool,
    /// `--enable-progress-tracker`: progress.json in the output directory.
    pub progress_tracker: bool,
    /// `--stop-on-saturation`.
    pub stop_on_saturation: bool,
    /// `--sla-auto-tune`: the search instead of the sweep.
    pub sla: Option<crate::sla::SlaPlan>,
    /// `--multi-turn`: jobs are conversations, sent turn by turn.
    pub talk: Option<Talk>,
    /// The dataset replays its own schedule (a trace): once, each request at its time.
    pub replays_schedule: bool,
    /// Replay the whole trace: no `--number` was given (the run counts the trace first).
    pub whole_trace: bool,
    /// `--warmup-num`, for a run whose number is known only then.
    pub warmup_num: f64,
    /// A speed benchmark: the run writes `speed_benchmark.json`.
    pub speed_benchmark: bool,
    /// `--shard` (or the scheduler's environment): this process is one shard of the benchmark.
    pub shard: Option<shard::Shard>,
    /// `--start-at`, as Unix seconds: the first run waits for it.
    pub start_at: Option<f64>,
    /// `--shard-sync`: the directory the shards meet in before each run.
    pub shard_sync: Option<std::path::PathBuf>,
}

/// FNV-1a of `bytes`: a hash every build of perf computes alike (std's may change between
/// releases), for seeds that shards on different machines derive from the same text.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn not_supported(what: &str) -> anyhow::Error {
    usage(format!("{what} is not supported yet"))
}

/// Reads `@file` arguments; other values are returned as they are.
fn at_file(value: &str, flag: &str) -> anyhow::Result<String> {
    match value.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| usage(format!("{flag}: cannot read {path}: {e}"))),
        None => Ok(value.to_string()),
    }
}

fn json_object(text: &str, flag: &str) -> anyhow::Result<Map<String, Value>> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(usage(format!(
            "{flag} must be a JSON object, like '{{\"key\": 1}}'"
        ))),
        Err(e) => Err(usage(format!("{flag} is not valid JSON: {e}"))),
    }
}

fn seconds(value: f64, flag: &str) -> anyhow::Result<Duration> {
    if value.is_finite() && value >= 0.0 {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(usage(format!(
            "{flag} must be a number of seconds >= 0, not {value}"
        )))
    }
}

fn check_unsupported(a: &RunArgs) -> anyhow::Result<()> {
    let unsupported: [(bool, &str); 1] = [(a.scenario.is_some(), "--scenario (AgentX via AIPerf)")];
    match unsupported.iter().find(|(set, _)| *set) {
        Some((_, what)) => Err(not_supported(what)),
        None => Ok(()),
    }
}

fn headers(raw: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    raw.iter()
        .map(|h| match h.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
            _ => Err(usage(format!(
                "--headers takes key=value pairs; '{h}' has no key before '='"
            ))),
        })
        .collect()
}

/// Two flags that set the same header: `--headers` twice, or `--headers Authorization=...`
/// with `--api-key` (whose `Bearer` header wins).
fn header_warnings(a: &RunArgs, headers: &[(String, String)]) -> Vec<String> {
    let mut warnings = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for (name, _) in headers {
        let lower = name.to_ascii_lowercase();
        if seen.contains(&lower) {
            warnings.push(format!(
                "--headers sets {name} more than once; the last value is sent"
            ));
        }
        seen.push(lower);
    }
    if a.api_key.is_some() && seen.iter().any(|h| h == "authorization") {
        warnings.push(
            "--api-key and --headers both set Authorization; --api-key's `Bearer` header is sent"
                .into(),
        );
    }
    warnings
}

fn model(a: &RunArgs, mode: Option<ServerMode>) -> anyhow::Result<String> {
    match (&a.model, mode == Some(ServerMode::Simulator)) {
        (Some(m), _) => Ok(m.clone()),
        (None, true) => Ok("mock".to_string()),
        (None, false) => Err(usage(
            "--model is required: the model name the server serves",
        )),
    }
}

fn max_tokens(a: &RunArgs) -> anyhow::Result<MaxTokens> {
    match a.max_tokens.as_slice() {
        [n] => Ok(MaxTokens::Fixed(*n)),
        [lo, hi] if lo <= hi => Ok(MaxTokens::Range(*lo, *hi)),
        [lo, hi] => Err(usage(format!(
            "--max-tokens {lo} {hi}: the minimum comes first"
        ))),
        _ => Err(usage("--max-tokens takes one value or two (min max)")),
    }
}

fn optional_object(text: &Option<String>, flag: &str) -> anyhow::Result<Value> {
    match text {
        Some(t) => Ok(Value::Object(json_object(t, flag)?)),
        None => Ok(Value::Null),
    }
}

fn api_config(
    a: &RunArgs,
    url: &str,
    model: &str,
    chat: bool,
    max: MaxTokens,
    mode: Option<ServerMode>,
) -> anyhow::Result<ApiConfig> {
    let query_template = match &a.query_template {
        Some(t) => Some(Value::Object(json_object(
            &at_file(t, "--query-template")?,
            "--query-template",
        )?)),
        None => None,
    };
    Ok(ApiConfig {
        url: url.to_string(),
        model: model.to_string(),
        stream: !a.no_stream,
        max_tokens: Some(match max {
            MaxTokens::Fixed(n) | MaxTokens::Range(_, n) => n,
        }),
        min_tokens: a.min_tokens,
        temperature: Some(a.temperature),
        top_p: a.top_p,
        top_k: a.top_k,
        stop: a.stop.clone(),
        stop_token_ids: a.stop_token_ids.clone(),
        seed: a.seed,
        n_choices: a.n_choices,
        logprobs: a.logprobs.then_some(true),
        frequency_penalty: a.frequency_penalty,
        repetition_penalty: a.repetition_penalty,
        extra_args: match &a.extra_args {
            Some(text) => json_object(text, "--extra-args")?,
            None => Map::new(),
        },
        query_template,
        apply_chat_template: chat,
        tokenize_prompt: a.tokenize_prompt,
        // With a server perf starts, `--api-args` are the server's (the local model's).
        options: match mode {
            Some(_) => Value::Null,
            None => optional_object(&a.api_args, "--api-args")?,
        },
    })
}

/// The simulator's configuration from its flags (`--api mock`, `perf serve-mock`).
pub fn simulator(m: &MockArgs) -> perf_server::SimulatorConfig {
    perf_server::SimulatorConfig {
        ttft_ms: m.mock_ttft_ms,
        tpot_ms: m.mock_tpot_ms,
        output_tokens: m.mock_output_tokens,
        tokens_per_chunk: m.mock_tokens_per_chunk,
        capacity: m.mock_capacity,
        fail_every: m.mock_fail_every,
        fail_status: m.mock_fail_status,
        drop_every: m.mock_drop_every,
        malformed_every: m.mock_malformed_every,
        prefix_cache_tokens: usize::try_from(m.mock_prefix_cache_tokens).unwrap_or(usize::MAX),
        cache_block_tokens: m.mock_cache_block_tokens,
        prefill_ms_per_token: m.mock_prefill_ms_per_token,
    }
}

/// The local model backend's options: `--api-args` and `--attn-implementation`.
fn local_options(a: &RunArgs) -> anyhow::Result<Value> {
    let mut options = match optional_object(&a.api_args, "--api-args")? {
        Value::Object(o) => o,
        _ => Map::new(),
    };
    if let Some(attn) = &a.attn_implementation {
        options.insert("attn_implementation".into(), json!(attn));
    }
    Ok(Value::Object(options))
}

/// The run name and `<outputs-dir>/<time>/<name or model basename>`.
fn output_location(a: &RunArgs, model: &str) -> (String, PathBuf) {
    let model_id = model
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(model)
        .to_string();
    let stamp = chrono::Local::now().format("%Y%m%d_%H%M%S").to_string();
    let name = a
        .name
        .clone()
        .unwrap_or_else(|| format!("{model_id}_{stamp}"));
    let dir_name = a.name.clone().unwrap_or(model_id);
    let dir = if a.no_timestamp {
        a.outputs_dir.join(&dir_name)
    } else {
        a.outputs_dir.join(&stamp).join(&dir_name)
    };
    (name, dir)
}

fn http_plan(a: &RunArgs, url: String) -> anyhow::Result<HttpPlan> {
    let optional = |v: Option<f64>, flag: &str| v.map(|s| seconds(s, flag)).transpose();
    Ok(HttpPlan {
        url,
        headers: headers(&a.headers)?,
        api_key: a.api_key.clone(),
        connect_timeout: optional(a.connect_timeout, "--connect-timeout")?,
        read_timeout: optional(a.read_timeout, "--read-timeout")?,
        total_timeout: seconds(a.total_timeout, "--total-timeout")?,
        limits: crate::worker::Limits {
            response_bytes: a.max_response_bytes,
            event_bytes: a.max_event_bytes.min(a.max_response_bytes),
        },
        tls: crate::transport::tls::TlsPlan {
            ca_files: a.tls_ca_cert.clone(),
            client_cert: a.tls_client_cert.clone(),
            client_key: a.tls_client_key.clone(),
            insecure: a.tls_insecure,
        },
        env_proxy: !a.no_proxy,
    })
}

/// `--data-source`, modelscope by default.
fn data_source(a: &RunArgs) -> String {
    a.data_source.clone().unwrap_or_else(|| "modelscope".into())
}

/// Validates the flags into a plan. What is specific to an API, a dataset or a sink comes from
/// the plugins' metadata in `registry`; nothing here names a plugin.
fn server_metrics(a: &RunArgs) -> anyhow::Result<Option<(Option<String>, std::time::Duration)>> {
    let Some(url) = &a.server_metrics else {
        return Ok(None);
    };
    let i = a.server_metrics_interval;
    if !(i.is_finite() && i >= 0.05) {
        return Err(usage(format!(
            "--server-metrics-interval {i}: give the seconds between two scrapes, 0.05 or more"
        )));
    }
    let url = url.trim();
    if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
        return Err(usage(format!(
            "--server-metrics {url}: give an http:// or https:// URL (or no value, for /metrics on the --url's host)"
        )));
    }
    Ok(Some((
        (!url.is_empty()).then(|| url.to_string()),
        std::time::Duration::from_secs_f64(i),
    )))
}

pub fn plan(a: &RunArgs, registry: &PluginRegistry) -> anyhow::Result<RunPlan> {
    check_unsupported(a)?;
    let speed_benchmark = is_speed_benchmark(a, registry);
    // evalscope sends the speed benchmarks' prompts to /v1/completions, whatever the URL says.
    let rewritten;
    let mut speed_note = None;
    let trimmed = a.url.trim_end_matches('/');
    let a = if speed_benchmark && trimmed.ends_with("chat/completions") {
        let mut b = a.clone();
        b.url = format!(
            "{}completions",
            &trimmed[..trimmed.len() - "chat/completions".len()]
        );
        speed_note = Some(format!(
            "the {} dataset measures /v1/completions: sending to {} instead of the chat endpoint",
            a.dataset, b.url
        ));
        rewritten = b;
        &rewritten
    } else {
        a
    };
    let schedule = replays_schedule(a, registry)?;
    let mut runs = runs::runs(a, schedule)?;
    // The arguments record the whole benchmark's first run, a shard's included.
    let whole_first = runs.first().cloned();
    let shard = shard::shard(a.shard.as_deref(), &|k| {
        std::env::var(k).ok().filter(|v| !v.trim().is_empty())
    })?;
    if let Some(s) = &shard {
        if a.sla_auto_tune {
            return Err(usage(
                "--shard with --sla-auto-tune: each probe's verdict needs the whole load's results, which no shard has; search on one machine, or shard fixed runs and merge them",
            ));
        }
        if schedule {
            return Err(usage(
                "--shard with a trace that replays its own schedule: split the trace into one file per shard instead",
            ));
        }
        shard::apply(&mut runs, s)?;
    }
    if a.shard_sync.is_some() && shard.is_none() {
        return Err(usage(
            "--shard-sync without --shard: only the shards of one benchmark meet there; give --shard I/N (or run inside a Kubernetes Indexed Job or a Slurm step)",
        ));
    }
    let start_at = match &a.start_at {
        Some(t) => Some(shard::start_at(t, shard::now_unix())?),
        None => None,
    };
    let endpoint::Endpoint {
        adapter,
        mode,
        url,
        chat,
        note,
    } = endpoint::endpoint(a, registry)?;
    let model = model(a, mode)?;
    let max_tokens = max_tokens(a)?;
    let mut api = api_config(a, &url, &model, chat, max_tokens, mode)?;
    prompts::check_options(&adapter, &api.options, "--api-args")?;
    let dataset_seed = a
        .dataset_seed
        .or(a.seed.map(|s| s as u64))
        // Shards draw from one stream (each its slice of it): without a seed, the instant they
        // all start at is one they share, else the --shard-sync directory they all name.
        .or_else(|| {
            let shared = match (start_at, &a.shard_sync) {
                (Some(t), _) => (t * 1000.0) as u64,
                (None, Some(dir)) => fnv1a(dir.as_os_str().as_encoded_bytes()),
                (None, None) => return None,
            };
            shard.as_ref().map(|_| shared & ((1 << 53) - 1))
        })
        // 53 bits: the seed reads back exactly from JSON in any language.
        .unwrap_or_else(|| rand::random::<u64>() >> 11);
    let mut prompts = prompts::prompt_plan(a, chat, dataset_seed, registry)?;
    prompts::move_dataset_knobs(&mut api, &mut prompts, registry);
    let (name, output_dir) = output_location(a, &model);
    let duration = match a.duration {
        Some(d) if d > 0.0 => Some(seconds(d, "--duration")?),
        Some(d) => return Err(usage(format!("--duration must be > 0 seconds, got {d}"))),
        None => None,
    };
    let sinks = sinks::sinks(a)?;
    let http = http_plan(a, url)?;
    let mut warnings = header_warnings(a, &http.headers);
    warnings.extend(note);
    let talk = talk(a, chat, input_only(adapter.results), &mut warnings)?;
    warnings.extend(speed_note);
    if a.attn_implementation.is_some() && mode != Some(ServerMode::LocalModel) {
        // evalscope takes it and uses it only for its local model.
        warnings.push(
            "--attn-implementation applies to --api local only (the model perf serves); ignored"
                .into(),
        );
    }
    for (id, config) in &sinks {
        if let Some(entry) = registry.find(PluginKind::ResultSink, id) {
            prompts::check_options(&entry.info, &config.options, &format!("--sink {id}"))?;
        }
    }
    let args_json = args::args_json(
        a,
        &args::Resolved {
            model: &model,
            url: &http.url,
            stream: api.stream,
            apply_chat_template: chat,
            dataset_seed,
        },
        whole_first
            .as_ref()
            .ok_or_else(|| usage("--number needs at least one value"))?,
    );
    Ok(RunPlan {
        api_id: adapter.id.to_string(),
        api_flag: a.api.clone(),
        api,
        http,
        // A decision service takes complete decision bodies only, which a test prompt is
        // not; evalscope sends these APIs no test request either.
        test_connection: !a.no_test_connection && adapter.results != ResultKind::Decision,
        runs,
        sleep_interval: seconds(a.sleep_interval, "--sleep-interval")?,
        duration,
        max_tokens,
        // Each shard's schedule its own: the same seed would send every shard's bursts together.
        seed: a
            .seed
            .map(|s| s.wrapping_add(shard.as_ref().map_or(0, |x| x.index as i64))),
        dataset_seed,
        prompts,
        sinks,
        mock: (mode == Some(ServerMode::Simulator)).then(|| a.mock.clone()),
        local_vllm: (mode == Some(ServerMode::Vllm)).then_some(a.port),
        local: (mode == Some(ServerMode::LocalModel))
            .then(|| local_options(a))
            .transpose()?
            .map(|o| (a.port, o)),
        name,
        output_dir,
        log_every_n: a.log_every_n_query.max(1),
        db_commit_interval: a.db_commit_interval.max(1),
        args_json,
        debug: a.debug,
        warnings,
        tokenizer_path: a.tokenizer_path.clone(),
        image_patch_size: a.image_patch_size,
        server_metrics: server_metrics(a)?,
        input_only: input_only(adapter.results),
        decisions: adapter.results == ResultKind::Decision,
        data_source: data_source(a),
        response_messages: a.response_messages,
        shape: load::shape(a)?,
        goodput: crate::aggregate::goodput::Slo::parse(&a.goodput)?,
        pd_metrics: a.enable_pd_metrics,
        progress_tracker: a.enable_progress_tracker,
        stop_on_saturation: a.stop_on_saturation,
        sla: crate::sla::SlaPlan::from_args(a, input_only(adapter.results))?,
        talk,
        replays_schedule: schedule,
        whole_trace: schedule && !a.number_given,
        speed_benchmark,
        shard,
        start_at,
        shard_sync: a.shard_sync.clone(),
        warmup_num: a.warmup_num,
    })
}

/// Whether `--dataset` is a speed benchmark (its info says so).
fn is_speed_benchmark(a: &RunArgs, registry: &PluginRegistry) -> bool {
    a.prompt.is_none()
        && registry
            .find(PluginKind::DatasetSource, &a.dataset)
            .is_some_and(|e| e.info.speed_benchmark())
}

/// Whether the dataset replays its own schedule (a recorded trace); such a dataset needs
/// `--open-loop` and cannot be a conversation.
fn replays_schedule(a: &RunArgs, registry: &PluginRegistry) -> anyhow::Result<bool> {
    if a.prompt.is_some() {
        return Ok(false);
    }
    let Some(entry) = registry.find(PluginKind::DatasetSource, &a.dataset) else {
        return Ok(false);
    };
    if !entry.info.replays_schedule() {
        return Ok(false);
    }
    let id = &entry.info.id;
    if !a.open_loop {
        return Err(usage(format!(
            "the {id} dataset replays the requests on their recorded schedule: add --open-loop (every request then goes out at its time, with no concurrency cap)"
        )));
    }
    if a.multi_turn {
        return Err(usage(format!(
            "the {id} dataset replays single requests on their recorded schedule; leave out --multi-turn"
        )));
    }
    Ok(true)
}

/// `--multi-turn`'s settings, checked.
fn talk(
    a: &RunArgs,
    chat: bool,
    input_only: bool,
    warnings: &mut Vec<String>,
) -> anyhow::Result<Option<Talk>> {
    if !a.multi_turn {
        if a.think_time.is_some() {
            return Err(usage(
                "--think-time is the pause between the turns of a conversation: it needs --multi-turn",
            ));
        }
        return Ok(None);
    }
    if input_only {
        return Err(usage(
            "--multi-turn needs an API that generates replies; embedding and rerank APIs have none to carry into the next turn",
        ));
    }
    if !chat {
        return Err(usage(
            "--multi-turn sends each turn as chat messages with the replies so far: use a chat endpoint (--url .../v1/chat/completions) and leave --apply-chat-template on",
        ));
    }
    if let Some(max) = a.max_turns {
        if max < a.min_turns {
            return Err(usage(format!(
                "--max-turns ({max}) must be at least --min-turns ({})",
                a.min_turns
            )));
        }
    }
    if a.tokenize_prompt {
        warnings.push(
            "--tokenize-prompt is ignored with --multi-turn: conversations go out as chat messages"
                .into(),
        );
    }
    Ok(Some(Talk {
        max_turns: a.max_turns,
        think_time: seconds(a.think_time.unwrap_or(0.0), "--think-time")?,
    }))
}

/// Whether an API's results are summarised by their input (embeddings, rerank, decisions).
fn input_only(results: ResultKind) -> bool {
    results == ResultKind::InputOnly || results == ResultKind::Decision
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;

    fn registry() -> PluginRegistry {
        PluginRegistry::builtins()
    }

    fn plan(a: &RunArgs) -> anyhow::Result<RunPlan> {
        super::plan(a, &registry())
    }

    fn args(line: &str) -> RunArgs {
        let mut v = vec!["perf"];
        v.extend(line.split_whitespace());
        Cli::try_parse_from(v).expect("parses").run
    }

    fn err(line: &str) -> String {
        format!("{:#}", plan(&args(line)).expect_err("must be rejected"))
    }

    /// The error of a line the command line itself refuses (a value out of its range).
    fn parse_err(line: &str) -> String {
        let mut v = vec!["perf"];
        v.extend(line.split_whitespace());
        Cli::try_parse_from(v)
            .map(|_| ())
            .expect_err("must be refused")
            .to_string()
    }

    #[test]
    fn evalscope_defaults() {
        let p = plan(&args("--model qwen")).expect("plan");
        assert_eq!(
            p.runs,
            vec![RunSpec {
                parallel: Some(1),
                number: 1000,
                rate: None,
                warmup: 0,
                label: "parallel_1_number_1000".into(),
                share: None,
            }]
        );
        assert_eq!(p.max_tokens, MaxTokens::Fixed(2048));
        assert!(p.api.stream);
        assert!(
            p.api.apply_chat_template,
            "the default URL ends in chat/completions"
        );
        assert_eq!(p.api.temperature, Some(0.0));
        assert_eq!(p.http.url, "http://127.0.0.1:8877/v1/chat/completions");
        assert_eq!(p.http.total_timeout, Duration::from_secs(21600));
        assert_eq!(p.sleep_interval, Duration::from_secs(5));
        assert!(p.test_connection);
        assert!(matches!(p.prompts, PromptPlan::Dataset { ref id, .. } if id == "openqa"));
    }

    #[test]
    fn sweeps_pair_up_and_mismatches_say_what_to_change() {
        let p = plan(&args("--model m --parallel 1 4 --number 10 40 --rate 5")).expect("plan");
        assert_eq!(p.runs.len(), 2);
        assert_eq!(p.runs[1].label, "parallel_4_number_40");
        assert_eq!(p.runs[1].rate, Some(5.0));
        assert!(err("--model m --parallel 1 4 --number 10").contains("give as many of each"));
        assert!(parse_err("--model m --parallel 0").contains(
            "invalid value '0' for '--parallel <PARALLEL>...': must be a whole number of concurrent requests from 1 to 1000000"
        ));
        assert!(parse_err("--model m --number -5").contains("invalid value '-5' for '--number"));
        assert!(err("--model m --parallel 2 2 --number 5 5").contains("appears twice"));
    }

    #[test]
    fn unique_prefixes_of_long_flags_work_as_in_evalscopes_argparse() {
        let p = plan(&args("--model m --max-tok 5 --para 3 --numb 6")).expect("plan");
        assert_eq!(p.max_tokens, MaxTokens::Fixed(5));
        assert_eq!(p.runs[0].parallel, Some(3));
        assert_eq!(p.runs[0].number, 6);
        assert_eq!(
            plan(&args("--model m --dataset-s 5"))
                .expect("plan")
                .dataset_seed,
            5
        );
        // A prefix of several flags is refused.
        let e = parse_err("--model m --no-t");
        assert!(e.contains("unexpected argument '--no-t'"), "{e}");
    }

    #[test]
    fn shards_without_a_seed_share_one_derived_from_what_they_all_name() {
        let seed = |line: &str| plan(&args(line)).expect("plan").dataset_seed;
        let synced = "--model m --parallel 4 --number 8 --shard-sync /shared/sync-1";
        assert_eq!(
            seed(&format!("{synced} --shard 0/4")),
            seed(&format!("{synced} --shard 3/4")),
            "one stream for every shard"
        );
        assert_ne!(
            seed(&format!("{synced} --shard 0/4")),
            seed("--model m --parallel 4 --number 8 --shard-sync /shared/sync-2 --shard 0/4")
        );
        assert_eq!(
            seed(&format!("{synced} --shard 1/4 --seed 7")),
            7,
            "a seed given wins"
        );
        assert!(seed(&format!("{synced} --shard 1/4")) < 1 << 53);
    }

    #[test]
    fn open_loop_pairs_rates_with_numbers() {
        let p = plan(&args("--model m --open-loop --rate 2 0.5 --number 10 20")).expect("plan");
        assert_eq!(p.runs[1].label, "rate_0.5_number_20");
        assert_eq!(p.runs[1].parallel, None);
        assert!(err("--model m --open-loop --rate -1").contains("every --rate > 0"));
    }

    #[test]
    fn warmup_counts_and_ratios() {
        let p = plan(&args("--model m --number 50 --warmup-num 0.1")).expect("plan");
        assert_eq!(p.runs[0].warmup, 5);
        let p = plan(&args("--model m --number 50 --warmup-num 3")).expect("plan");
        assert_eq!(p.runs[0].warmup, 3);
    }

    #[test]
    fn bad_values_are_usage_errors() {
        assert!(err("").contains("--model is required"));
        assert!(err("--model m --max-tokens 10 5").contains("minimum comes first"));
        assert!(err("--model m --extra-args [1]").contains("JSON object"));
        assert!(err("--model m --headers novalue").contains("key=value"));
        assert!(err("--model m --url ftp://x").contains("http://"));
        assert!(err("--model m --scenario agentx").contains("not supported yet"));
        assert!(err("--model m --multi-turn --min-turns 3 --max-turns 2")
            .contains("--max-turns (2) must be at least --min-turns (3)"));
        assert!(err("--model m --think-time 2").contains("needs --multi-turn"));
        let p = plan(&args("--model m --attn-implementation eager")).expect("plan");
        assert!(
            p.warnings[0].contains("--api local only"),
            "{:?}",
            p.warnings
        );
        assert!(err("--model m --visualizer tensorboard").contains("use wandb, swanlab or clearml"));
    }

    #[test]
    fn secrets_are_masked_in_the_args_dump() {
        let p = plan(&args(
            "--model m --api-key sk-123 --headers X-Api-Key=abc Other=1",
        ))
        .expect("plan");
        let dump = p.args_json.to_string();
        assert!(!dump.contains("sk-123") && !dump.contains("abc"), "{dump}");
        assert_eq!(
            p.args_json["headers"],
            json!({"X-Api-Key": "**********", "Other": "1", "Authorization": "**********"})
        );
        assert_eq!(p.args_json["api_key"], json!("**********"));
        assert_eq!(p.http.api_key.as_deref(), Some("sk-123"));

        let p = plan(&args(
            r#"--model m --wandb-api-key wk-1 --sink otel={"headers":{"Authorization":"Bearer_ot-2"},"traces":true}"#,
        ))
        .expect("plan");
        let dump = p.args_json.to_string();
        assert!(!dump.contains("wk-1") && !dump.contains("ot-2"), "{dump}");
        assert!(dump.contains("traces"), "{dump}");
    }

    #[test]
    fn the_args_dump_is_evalscopes_with_perfs_after() {
        let p = plan(&args(
            "--model org/qwen --parallel 2 4 --number 5 10 --url http://h:1/v1 --max-tokens 7",
        ))
        .expect("plan");
        let Value::Object(map) = &p.args_json else {
            panic!("an object");
        };
        let keys: Vec<&str> = map.keys().map(String::as_str).collect();
        assert_eq!(keys[..args::EVALSCOPE_KEYS.len()], args::EVALSCOPE_KEYS);
        assert!(
            map["dataset_seed"].is_u64(),
            "the seed drawn: {}",
            map["dataset_seed"]
        );
        assert_eq!(map["model_id"], json!("qwen"));
        assert_eq!(map["url"], json!("http://h:1/v1/chat/completions"));
        assert_eq!(map["stream"], json!(true));
        assert_eq!(map["apply_chat_template"], json!(true));
        assert_eq!(map["max_tokens"], json!(7));
        assert_eq!(map["total_timeout"], json!(21600));
        assert_eq!(map["extra_args"], json!({}));
        assert_eq!(map["logprobs"], Value::Null);
        assert_eq!(map["data_source"], Value::Null);
        // Each run's dump has its own number, parallel and directory.
        let second = args::for_run(&p.args_json, &p.runs[1], std::path::Path::new("d"), 5);
        assert_eq!(
            (second["number"].clone(), second["parallel"].clone()),
            (json!(10), json!(4))
        );
        assert_eq!(second["outputs_dir"], json!("d"));
        assert_eq!(second["dataset_offset"], json!(5));
    }

    #[test]
    fn visualizer_flags_and_otel_enable_sinks() {
        let ids = |line: &str| -> Vec<(String, Value)> {
            plan(&args(line))
                .expect("plan")
                .sinks
                .into_iter()
                .map(|(id, c)| (id, c.options))
                .collect()
        };
        assert_eq!(
            ids("--model m --wandb-api-key k"),
            [("wandb".to_string(), json!({"api_key": "k"}))]
        );
        assert_eq!(
            ids("--model m --visualizer swanlab --swanlab-api-key local --swanlab-host http://h"),
            [(
                "swanlab".to_string(),
                json!({"api_key": "local", "host": "http://h"})
            )]
        );
        assert_eq!(
            ids("--model m --otel --sink otel --sink jsonl --visualizer wandb"),
            [
                ("otel".to_string(), Value::Null),
                ("jsonl".to_string(), Value::Null),
                ("wandb".to_string(), json!({})),
            ]
        );
    }

    #[test]
    fn an_openai_url_without_an_endpoint_gets_chat_completions() {
        let p = plan(&args("--model m --url http://h:8000/v1")).expect("plan");
        assert_eq!(p.http.url, "http://h:8000/v1/chat/completions");
        assert!(p.api.apply_chat_template);
        let p = plan(&args("--model m --url http://h:8000/v1/completions")).expect("plan");
        assert_eq!(p.http.url, "http://h:8000/v1/completions");
        assert!(!p.api.apply_chat_template);
    }

    #[test]
    fn evalscopes_dataset_knobs_in_extra_args_go_to_the_dataset_not_the_body() {
        let p = plan(&args(
            r#"--model m --api embedding --dataset random_embedding_batch --extra-args {"batch_size":4,"truncate":true}"#,
        ))
        .expect("plan");
        assert_eq!(p.api.extra_args.get("batch_size"), None);
        assert_eq!(p.api.extra_args.get("truncate"), Some(&json!(true)));
        let PromptPlan::Dataset { id, config } = &p.prompts else {
            panic!("a dataset");
        };
        assert_eq!(id, "random_embedding_batch");
        assert_eq!(config.options, json!({"batch_size": 4}));
        let p = plan(&args("--model m --api embedding --dataset embed")).expect("plan");
        let PromptPlan::Dataset { id, .. } = &p.prompts else {
            panic!("a dataset");
        };
        assert_eq!(id, "embedding", "embed is embedding's alias");
    }

    #[test]
    fn each_openai_family_api_appends_its_endpoint_and_aliases_resolve() {
        let url_and_id = |line: &str| {
            let p = plan(&args(line)).expect("plan");
            (p.http.url, p.api_id)
        };
        for (api, url, id) in [
            ("responses", "http://h/v1/responses", "openai_responses"),
            ("embedding", "http://h/v1/embeddings", "openai_embedding"),
            ("rerank", "http://h/v1/reranks", "openai_rerank"),
            ("openai_rerank", "http://h/v1/reranks", "openai_rerank"),
        ] {
            assert_eq!(
                url_and_id(&format!("--model m --api {api} --url http://h/v1")),
                (url.to_string(), id.to_string()),
                "{api}"
            );
        }
        assert_eq!(
            url_and_id("--model m --api responses --url http://h/v1/chat/completions").0,
            "http://h/v1/responses"
        );
        assert_eq!(
            url_and_id("--model m --api rerank --url http://h/v1/rerank").0,
            "http://h/v1/rerank"
        );
    }

    #[test]
    fn planning_names_no_built_in_plugin() {
        // Everything API- or dataset-specific comes from metadata; a quoted built-in id in the
        // planning code (tests aside) would be a special case outside plugins cannot get.
        let sources = [
            ("mod.rs", include_str!("mod.rs")),
            ("endpoint.rs", include_str!("endpoint.rs")),
            ("prompts.rs", include_str!("prompts.rs")),
            ("runs.rs", include_str!("runs.rs")),
            ("secrets.rs", include_str!("secrets.rs")),
            ("sinks.rs", include_str!("sinks.rs")),
        ];
        let registry = registry();
        for (file, source) in sources {
            let code = source.split("#[cfg(test)]").next().unwrap_or(source);
            for entry in registry.entries() {
                // evalscope's visualizer flags (`--visualizer wandb`, `--swanlab-api-key`) name
                // their services; sinks.rs maps them, and only that.
                if file == "sinks.rs" && entry.info.kind == PluginKind::ResultSink {
                    continue;
                }
                let names = std::iter::once(&entry.info.id).chain(entry.info.aliases.iter());
                for name in names {
                    let quoted = format!("\"{name}\"");
                    assert!(
                        !code.contains(&quoted),
                        "plan/{file} names the built-in plugin {quoted}"
                    );
                }
            }
        }
    }

    #[test]
    fn dataset_and_api_options_are_checked_against_what_the_plugins_take() {
        assert!(
            err("--model m --dataset line_by_line --dataset-path x --dataset-args {\"a\":1}")
                .contains("'line_by_line' takes target_input_len, input_len_mode, prefix_file, prefix_role; unknown: a")
        );
        assert!(
            err("--model m --dataset random_rerank --dataset-args {\"batch_size\":1}")
                .contains("takes num_documents, document_length_ratio; unknown: batch_size")
        );
        assert!(err("--model m --api-args {\"x\":1}").contains("'openai' takes no options"));
        assert!(err("--model m --sink otel={\"endpont\":\"x\"}").contains("unknown: endpont"));
        assert!(err("--model m --api nope").contains("unknown api plugin 'nope'"));
        assert!(err("--model m --dataset nope").contains("unknown dataset plugin 'nope'"));
    }

    #[test]
    fn a_query_string_stays_after_the_appended_endpoint() {
        let p = plan(&args("--model m --url http://h:8000/v1?api-version=2")).expect("plan");
        assert_eq!(
            p.http.url,
            "http://h:8000/v1/chat/completions?api-version=2"
        );
    }

    #[test]
    fn mock_api_targets_the_local_simulator() {
        let p = plan(&args("--api mock --port 9999 --no-apply-chat-template")).expect("plan");
        assert_eq!(p.http.url, "http://127.0.0.1:9999/v1/completions");
        assert_eq!(p.api_id, "openai");
        assert_eq!(p.api.model, "mock");
    }
}
