//! From raw flags to a validated run plan. Every check that evalscope perf makes is here, with
//! a message that says what to change; nothing in this module does I/O except reading the
//! `@file` arguments it resolves.

use std::path::PathBuf;
use std::time::Duration;

use perf_plugin_api::sdk::{ApiConfig, DatasetConfig, SinkConfig};
use serde_json::{json, Map, Value};

use crate::cli::{MockArgs, RunArgs};
use crate::error::usage;

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
    /// The run's directory name.
    pub label: String,
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
    /// `--tokenizer-path`: a tokenizer.json, a directory holding one, or a model id on the hub.
    pub tokenizer_path: Option<String>,
    /// `--data-source`: the hub model ids and datasets come from.
    pub data_source: String,
    /// `--image-patch-size`: pixels per image token side when perf counts image prompts.
    pub image_patch_size: u32,
    /// Embeddings or rerank: requests that produce no text, summarised by their input.
    pub input_only: bool,
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
    let unsupported: [(bool, &str); 6] = [
        (a.scenario.is_some(), "--scenario (AgentX via AIPerf)"),
        (a.sla_auto_tune, "--sla-auto-tune"),
        (a.multi_turn || a.multi_turn_args.is_some(), "--multi-turn"),
        (a.enable_pd_metrics, "--enable-pd-metrics"),
        (a.enable_progress_tracker, "--enable-progress-tracker"),
        (
            a.attn_implementation.is_some() && a.api != "local",
            "--attn-implementation without --api local",
        ),
    ];
    match unsupported.iter().find(|(set, _)| *set) {
        Some((_, what)) => Err(not_supported(what)),
        None => Ok(()),
    }
}

fn runs(a: &RunArgs) -> anyhow::Result<Vec<RunSpec>> {
    if a.number.contains(&0) {
        return Err(usage("--number must be > 0 for every run"));
    }
    let warmup = |number: u64| -> u64 {
        if a.warmup_num >= 1.0 {
            a.warmup_num as u64
        } else if a.warmup_num > 0.0 {
            ((a.warmup_num * number as f64).round() as u64).max(1)
        } else {
            0
        }
    };
    if a.warmup_num.is_nan() || a.warmup_num < 0.0 {
        return Err(usage("--warmup-num must be >= 0"));
    }
    if a.open_loop {
        if a.rate.len() != a.number.len() {
            return Err(usage(format!(
                "--open-loop pairs --rate with --number, but --rate has {} value(s) and --number {}: give one --number per --rate",
                a.rate.len(),
                a.number.len()
            )));
        }
        if let Some(r) = a.rate.iter().find(|r| r.is_nan() || **r <= 0.0) {
            return Err(usage(format!(
                "--open-loop needs every --rate > 0 (requests per second), got {r}"
            )));
        }
        return Ok(a
            .rate
            .iter()
            .zip(&a.number)
            .map(|(&rate, &number)| RunSpec {
                parallel: None,
                number,
                rate: Some(rate),
                warmup: warmup(number),
                label: format!("rate_{}_number_{number}", fmt_rate(rate)),
            })
            .collect());
    }
    if a.parallel.len() != a.number.len() {
        return Err(usage(format!(
            "--parallel has {} value(s) but --number has {}: they pair up (run i sends number[i] requests at parallel[i]), so give as many of each",
            a.parallel.len(),
            a.number.len()
        )));
    }
    if let Some(p) = a.parallel.iter().find(|p| **p <= 0) {
        return Err(usage(format!("--parallel must be > 0, got {p}")));
    }
    let rate = a.rate.first().copied().unwrap_or(-1.0);
    if !(rate > 0.0 || rate == -1.0) {
        return Err(usage(format!(
            "--rate must be > 0 requests per second, or -1 for no pacing; got {rate}"
        )));
    }
    let mut seen = std::collections::HashSet::new();
    let mut specs = Vec::new();
    for (&parallel, &number) in a.parallel.iter().zip(&a.number) {
        if !seen.insert((parallel, number)) {
            return Err(usage(format!(
                "the pair --parallel {parallel} / --number {number} appears twice; each run needs its own directory, so change one of them"
            )));
        }
        specs.push(RunSpec {
            parallel: Some(parallel as usize),
            number,
            rate: (rate > 0.0).then_some(rate),
            warmup: warmup(number),
            label: format!("parallel_{parallel}_number_{number}"),
        });
    }
    Ok(specs)
}

/// A rate as it appears in a directory name (`2`, `0.5`).
pub fn fmt_rate(rate: f64) -> String {
    if rate.fract() == 0.0 {
        format!("{}", rate as i64)
    } else {
        format!("{rate}")
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

/// The sinks to enable: `--sink ID[=JSON]`, then `--otel`, then evalscope's visualizer flags
/// (`--visualizer`, implied by `--wandb-api-key` / `--swanlab-api-key`), whose keys and host
/// become the sink's options. An id given twice is enabled once, with the first options.
fn sinks(a: &RunArgs) -> anyhow::Result<Vec<(String, SinkConfig)>> {
    let mut out: Vec<(String, SinkConfig)> = Vec::new();
    let mut add = |id: &str, options: Value| {
        if !out.iter().any(|(have, _)| have == id) {
            out.push((id.to_string(), SinkConfig { options }));
        }
    };
    for s in &a.sinks {
        match s.split_once('=') {
            Some((id, json)) => add(
                id,
                Value::Object(json_object(json, &format!("--sink {id}"))?),
            ),
            None => add(s, Value::Null),
        }
    }
    if a.otel {
        add("otel", Value::Null);
    }
    let visualizer = match (&a.visualizer, &a.wandb_api_key, &a.swanlab_api_key) {
        (Some(v), _, _) => Some(v.as_str()),
        (None, Some(_), _) => Some("wandb"),
        (None, None, Some(_)) => Some("swanlab"),
        (None, None, None) => None,
    };
    match visualizer {
        None => {}
        Some("wandb") => {
            let mut options = Map::new();
            if let Some(key) = &a.wandb_api_key {
                options.insert("api_key".into(), json!(key));
            }
            add("wandb", Value::Object(options));
        }
        Some("swanlab") => {
            let mut options = Map::new();
            if let Some(key) = &a.swanlab_api_key {
                options.insert("api_key".into(), json!(key));
            }
            if let Some(host) = &a.swanlab_host {
                options.insert("host".into(), json!(host));
            }
            add("swanlab", Value::Object(options));
        }
        Some("clearml") => {
            return Err(not_supported(
                "--visualizer clearml (use wandb, swanlab or --otel)",
            ))
        }
        Some(other) => {
            return Err(usage(format!(
                "--visualizer {other}: not a visualizer; use wandb or swanlab (or --otel for OpenTelemetry)"
            )))
        }
    }
    Ok(out)
}

/// A URL fit for logs and reports: no user name, password or query string (which may carry
/// keys).
pub fn redacted_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            if u.query().is_some() {
                u.set_query(Some("..."));
            }
            u.to_string()
        }
        Err(_) => "(invalid URL)".to_string(),
    }
}

/// Whether a header or flag name holds a credential.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "key",
        "token",
        "secret",
        "authorization",
        "password",
        "cookie",
    ]
    .iter()
    .any(|s| k.contains(s))
}

const MASK: &str = "**********";

/// Masks every value under a secret-looking key, at any depth.
fn mask_secrets(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if is_secret_key(k) && !val.is_null() {
                    *val = Value::String(MASK.into());
                } else {
                    mask_secrets(val);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask_secrets),
        _ => {}
    }
}

fn masked_args(a: &RunArgs) -> Value {
    let mut v = serde_json::to_value(a).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut v {
        for (k, val) in map.iter_mut() {
            if is_secret_key(k) && !val.is_null() {
                *val = Value::String(MASK.into());
            }
        }
        // `--sink ID={...}` options may hold a key or an auth header.
        if let Some(Value::Array(sinks)) = map.get_mut("sinks") {
            for s in sinks.iter_mut() {
                let Some((id, json)) = s.as_str().and_then(|s| s.split_once('=')) else {
                    continue;
                };
                if let Ok(mut options) = serde_json::from_str::<Value>(json) {
                    mask_secrets(&mut options);
                    *s = Value::String(format!("{id}={options}"));
                } else {
                    *s = Value::String(format!("{id}={MASK}"));
                }
            }
        }
        if let Some(Value::Array(hs)) = map.get_mut("headers") {
            for h in hs.iter_mut() {
                if let Some((k, _)) = h.as_str().and_then(|s| s.split_once('=')) {
                    if is_secret_key(k) {
                        *h = Value::String(format!("{k}={MASK}"));
                    }
                }
            }
        }
    }
    v
}

fn apply_chat_template(a: &RunArgs, url: &str) -> bool {
    if a.apply_chat_template {
        true
    } else if a.no_apply_chat_template {
        false
    } else {
        // Endpoints that take chat messages: the server applies the template.
        let path = url_path(url).trim_end_matches('/');
        path.ends_with("chat/completions")
            || path.ends_with("/responses")
            || path.contains("/services/aigc/")
    }
}

/// The endpoint an OpenAI-family API appends to a URL that names none.
fn default_endpoint(api: &str) -> Option<&'static str> {
    match api {
        "openai" => Some("chat/completions"),
        "openai_responses" | "openai_response" | "responses" => Some("responses"),
        "openai_embedding" | "embedding" => Some("embeddings"),
        "openai_rerank" | "rerank" => Some("reranks"),
        _ => None,
    }
}

/// As evalscope does for the OpenAI family: a URL whose path does not end in an endpoint
/// (`http://host:8000/v1`) gets the API's endpoint appended, and the Responses API given a
/// `.../chat/completions` URL goes to `.../responses`.
fn with_endpoint(url: &str, endpoint: &str) -> String {
    let path = url_path(url).trim_end_matches('/');
    let base = url.trim_end_matches('/');
    if endpoint == "responses" && path.ends_with("/chat/completions") {
        return format!(
            "{}/responses",
            &base[..base.len() - "/chat/completions".len()]
        );
    }
    let known = [
        "chat/completions",
        "/completions",
        "/responses",
        "/embeddings",
        "/reranks",
        "/rerank",
    ];
    if known.iter().any(|k| path.ends_with(k)) {
        url.to_string()
    } else {
        format!("{base}/{endpoint}")
    }
}

fn url_path(url: &str) -> &str {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    after_scheme.find('/').map_or("", |i| &after_scheme[i..])
}

fn model(a: &RunArgs) -> anyhow::Result<String> {
    match (&a.model, a.api == "mock") {
        (Some(m), _) => Ok(m.clone()),
        (None, true) => Ok("mock".to_string()),
        (None, false) => Err(usage(
            "--model is required: the model name the server serves",
        )),
    }
}

/// The endpoint and whether prompts are chat messages.
fn endpoint(a: &RunArgs) -> anyhow::Result<(String, bool)> {
    let url = if matches!(a.api.as_str(), "mock" | "local" | "local_vllm") {
        let path = if apply_chat_template(a, &a.url) && !a.tokenize_prompt {
            "/v1/chat/completions"
        } else {
            "/v1/completions"
        };
        format!("http://127.0.0.1:{}{path}", a.port)
    } else if let Some(endpoint) = default_endpoint(&a.api) {
        with_endpoint(&a.url, endpoint)
    } else {
        a.url.clone()
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(usage(format!(
            "--url must start with http:// or https://, got '{url}'"
        )));
    }
    if a.tokenize_prompt
        && url_path(&url)
            .trim_end_matches('/')
            .ends_with("chat/completions")
    {
        return Err(usage(
            "--tokenize-prompt sends token ids, which only a completions endpoint takes: use --url .../v1/completions, or drop --tokenize-prompt",
        ));
    }
    let chat = apply_chat_template(a, &url) && !a.tokenize_prompt;
    Ok((url, chat))
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
        options: optional_object(&a.api_args, "--api-args")?,
    })
}

fn prompt_plan(a: &RunArgs, chat: bool) -> anyhow::Result<PromptPlan> {
    if a.min_prompt_length > a.max_prompt_length {
        return Err(usage(
            "--min-prompt-length is larger than --max-prompt-length",
        ));
    }
    if a.image_patch_size == 0 {
        return Err(usage(
            "--image-patch-size must be at least 1 (pixels per side of one image token; 28 for Qwen2-VL)",
        ));
    }
    Ok(match &a.prompt {
        Some(p) => PromptPlan::Fixed(at_file(p, "--prompt")?),
        None => PromptPlan::Dataset {
            id: match a.dataset.as_str() {
                "embed" => "embedding".into(),
                other => other.into(),
            },
            config: Box::new(DatasetConfig {
                dataset_path: a.dataset_path.clone(),
                data_source: a.data_source.clone(),
                min_prompt_length: a.min_prompt_length,
                max_prompt_length: a.max_prompt_length,
                prefix_length: a.prefix_length,
                prefix_count: a.prefix_count,
                apply_chat_template: chat,
                tokenize_prompt: a.tokenize_prompt,
                dataset_offset: a.dataset_offset,
                seed: a.seed.map(|s| s as u64),
                image_width: a.image_width,
                image_height: a.image_height,
                image_format: a.image_format.clone(),
                image_num: a.image_num,
                image_patch_size: a.image_patch_size,
                options: optional_object(&a.dataset_args, "--dataset-args")?,
            }),
        },
    })
}

/// The knobs evalscope's embedding and rerank datasets read from `--extra-args` (where they
/// also end up in every request body): perf moves them to the dataset's options, out of the
/// body. `--dataset-args` wins when both set one.
fn move_dataset_knobs(api: &mut ApiConfig, prompts: &mut PromptPlan) {
    let PromptPlan::Dataset { id, config } = prompts else {
        return;
    };
    let knobs: &[&str] = match id.as_str() {
        "embedding_batch" | "random_embedding_batch" => &["batch_size"],
        "random_rerank" => &["num_documents", "document_length_ratio"],
        _ => return,
    };
    for knob in knobs {
        if let Some(v) = api.extra_args.remove(*knob) {
            if !config.options.is_object() {
                config.options = Value::Object(Map::new());
            }
            if let Some(o) = config.options.as_object_mut() {
                o.entry(knob.to_string()).or_insert(v);
            }
        }
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
    })
}

/// Validates the flags into a plan.
pub fn plan(a: &RunArgs) -> anyhow::Result<RunPlan> {
    check_unsupported(a)?;
    let runs = runs(a)?;
    let model = model(a)?;
    let (url, chat) = endpoint(a)?;
    let max_tokens = max_tokens(a)?;
    let mut api = api_config(a, &url, &model, chat, max_tokens)?;
    let mut prompts = prompt_plan(a, chat)?;
    move_dataset_knobs(&mut api, &mut prompts);
    let (name, output_dir) = output_location(a, &model);
    let duration = match a.duration {
        Some(d) if d > 0.0 => Some(seconds(d, "--duration")?),
        Some(d) => return Err(usage(format!("--duration must be > 0 seconds, got {d}"))),
        None => None,
    };
    let mock = a.api == "mock";
    Ok(RunPlan {
        api_id: match a.api.as_str() {
            "mock" | "local_vllm" | "local" => "openai".into(),
            "responses" | "openai_response" => "openai_responses".into(),
            "embedding" => "openai_embedding".into(),
            "rerank" => "openai_rerank".into(),
            other => other.into(),
        },
        api_flag: a.api.clone(),
        api,
        http: http_plan(a, url)?,
        test_connection: !a.no_test_connection,
        runs,
        sleep_interval: seconds(a.sleep_interval, "--sleep-interval")?,
        duration,
        max_tokens,
        seed: a.seed,
        prompts,
        sinks: sinks(a)?,
        mock: mock.then(|| a.mock.clone()),
        local_vllm: (a.api == "local_vllm").then_some(a.port),
        local: (a.api == "local")
            .then(|| local_options(a))
            .transpose()?
            .map(|o| (a.port, o)),
        name,
        output_dir,
        log_every_n: a.log_every_n_query.max(1),
        db_commit_interval: a.db_commit_interval.max(1),
        args_json: masked_args(a),
        debug: a.debug,
        tokenizer_path: a.tokenizer_path.clone(),
        image_patch_size: a.image_patch_size,
        input_only: matches!(
            a.api.as_str(),
            "openai_embedding" | "embedding" | "openai_rerank" | "rerank"
        ),
        data_source: a.data_source.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;

    fn args(line: &str) -> RunArgs {
        let mut v = vec!["perf"];
        v.extend(line.split_whitespace());
        Cli::try_parse_from(v).expect("parses").run
    }

    fn err(line: &str) -> String {
        format!("{:#}", plan(&args(line)).expect_err("must be rejected"))
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
                label: "parallel_1_number_1000".into()
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
        assert!(err("--model m --parallel 0").contains("--parallel must be > 0"));
        assert!(err("--model m --parallel 2 2 --number 5 5").contains("appears twice"));
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
        assert!(err("--model m --multi-turn").contains("not supported yet"));
        assert!(err("--model m --attn-implementation eager").contains("not supported yet"));
        assert!(err("--model m --visualizer clearml").contains("not supported yet"));
        assert!(err("--model m --visualizer tensorboard").contains("use wandb or swanlab"));
    }

    #[test]
    fn secrets_are_masked_in_the_args_dump() {
        let p = plan(&args(
            "--model m --api-key sk-123 --headers X-Api-Key=abc Other=1",
        ))
        .expect("plan");
        let dump = p.args_json.to_string();
        assert!(!dump.contains("sk-123") && !dump.contains("abc"), "{dump}");
        assert!(
            dump.contains("X-Api-Key=**********") && dump.contains("Other=1"),
            "{dump}"
        );
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
    fn mock_api_targets_the_local_simulator() {
        let p = plan(&args("--api mock --port 9999 --no-apply-chat-template")).expect("plan");
        assert_eq!(p.http.url, "http://127.0.0.1:9999/v1/completions");
        assert_eq!(p.api_id, "openai");
        assert_eq!(p.api.model, "mock");
    }
}
