//! The command line, flag for flag and default for default with `evalscope perf` 1.14.1, plus
//! perf's own additions (marked "perf:" in the help). Raw flags only; `plan.rs` validates them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::output::messages::ResponseMessages;

pub mod values;

/// Load-test and benchmark LLM inference services (a drop-in for `evalscope perf`).
#[derive(Debug, Parser)]
#[command(
    name = "perf",
    version,
    subcommand_negates_reqs = true,
    allow_negative_numbers = true,
    infer_long_args = true,
    after_help = "Metric definitions: see the README, section \"Metrics\"."
)]
pub struct Cli {
    /// A subcommand; without one, `perf` runs a benchmark.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// perf: load a plugin library (.so/.dll/.dylib); repeatable.
    #[arg(long = "plugin", value_name = "PATH", global = true)]
    pub plugins: Vec<PathBuf>,

    /// The benchmark's flags.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List every available plugin: kind, id, version, origin and description.
    Plugins(PluginsArgs),
    /// Serve the built-in OpenAI-compatible simulator until interrupted (for benchmarks of
    /// perf itself and of other clients).
    ServeMock(Box<ServeMockArgs>),
    /// Measure this machine's client ceiling against the simulator: requests/s, chunks/s, CPU
    /// per request, and the concurrency up to which reported TTFT stays within 1 ms of the
    /// server's own.
    Calibrate(CalibrateArgs),
    /// Write perf_report.html for a benchmark directory (`<outputs-dir>/<time>/<name>/`, perf's
    /// or evalscope 1.14.1's) from its files.
    Report(ReportArgs),
    /// Put benchmarks side by side: the same metrics at the same load, with the change
    /// against the first in percent (a console table and an HTML page).
    Compare(CompareArgs),
    /// Serve a local web app over an outputs directory: the runs, their reports, comparisons,
    /// a live view of running benchmarks, and a form that starts one.
    Dashboard(DashboardArgs),
    /// Combine the directories of a benchmark's shards (`--shard I/N`) into one benchmark
    /// directory: every run's rows together, its summary and percentiles over all of them.
    Merge(MergeArgs),
}

/// Flags of `perf merge`.
#[derive(Debug, Clone, Args)]
pub struct MergeArgs {
    /// The shards' directories (each `<outputs-dir>/<time>/<name>/`, or a directory above).
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// Where the merged benchmark goes (`<outputs-dir>/<time>/<name>/`).
    #[arg(long, default_value = "./outputs", value_name = "DIR")]
    pub outputs_dir: PathBuf,
    /// Its name (default: the shards' --name).
    #[arg(long)]
    pub name: Option<String>,
    /// No `<time>` level in the path.
    #[arg(long)]
    pub no_timestamp: bool,
}

/// Flags of `perf report`.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// The benchmark directory (or one run's directory).
    pub dir: PathBuf,
    /// Write the page here instead of DIR/perf_report.html.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Flags of `perf compare`.
#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    /// Benchmark directories; the first is the baseline.
    #[arg(required = true, num_args = 2.., value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// Where to write the HTML page of the comparison.
    #[arg(long, value_name = "FILE", default_value = "perf_compare.html")]
    pub html: PathBuf,
}

/// Flags of `perf dashboard`.
#[derive(Debug, Clone, Args)]
pub struct DashboardArgs {
    /// The outputs directory to show, and where runs started from the page write.
    #[arg(long, default_value = "./outputs", value_name = "DIR")]
    pub outputs_dir: PathBuf,
    /// Address to listen on (127.0.0.1: this machine only).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0 = any free port; the address is printed).
    #[arg(long, value_parser = values::port, default_value_t = 9000)]
    pub port: u16,
}

/// Flags of `perf plugins`.
#[derive(Debug, Clone, Args)]
pub struct PluginsArgs {
    /// Also show what each plugin declares: aliases, endpoints, prompt form, the options it
    /// takes with an example, and its library's interface version.
    #[arg(long, short)]
    pub verbose: bool,
}

/// Flags of `perf calibrate`.
#[derive(Debug, Clone, Args)]
pub struct CalibrateArgs {
    /// Smaller runs (seconds, not minutes): a smoke test.
    #[arg(long)]
    pub quick: bool,
}

/// Flags of `perf serve-mock`.
#[derive(Debug, Clone, Args)]
pub struct ServeMockArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0 = any free port; the chosen port is printed).
    #[arg(long, value_parser = values::port, default_value_t = 8877)]
    pub port: u16,
    /// Serve https with this certificate chain (PEM); needs --tls-key.
    #[arg(long, value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "PEM")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM) (mutual TLS).
    #[arg(long, value_name = "PEM")]
    pub tls_client_ca: Option<PathBuf>,
    /// The simulated server's behaviour.
    #[command(flatten)]
    pub mock: MockArgs,
}

/// The simulator's behaviour (`--api mock` and `perf serve-mock`).
#[derive(Debug, Clone, Args, Default, serde::Serialize)]
pub struct MockArgs {
    /// perf: simulator time to first token, in milliseconds.
    #[arg(long, value_parser = values::milliseconds, default_value_t = 50.0, value_name = "MS")]
    pub mock_ttft_ms: f64,
    /// perf: simulator time per output token after the first, in milliseconds.
    #[arg(long, value_parser = values::milliseconds, default_value_t = 5.0, value_name = "MS")]
    pub mock_tpot_ms: f64,
    /// perf: simulator output length in tokens (capped by the request's max_tokens).
    #[arg(long, value_parser = values::tokens_or_zero, default_value_t = 64, value_name = "N")]
    pub mock_output_tokens: u32,
    /// perf: simulator tokens per streamed chunk.
    #[arg(long, value_parser = values::count_u32, default_value_t = 1, value_name = "N")]
    pub mock_tokens_per_chunk: u32,
    /// perf: simulator concurrent slots; requests beyond it queue (0 = unlimited).
    #[arg(long, value_parser = values::small_usize, default_value_t = 0, value_name = "N")]
    pub mock_capacity: usize,
    /// perf: every Nth request gets an HTTP error (0 = never).
    #[arg(long, value_parser = values::any_u64, default_value_t = 0, value_name = "N")]
    pub mock_fail_every: u64,
    /// perf: the status of injected HTTP errors.
    #[arg(long, value_parser = values::status, default_value_t = 500, value_name = "CODE")]
    pub mock_fail_status: u16,
    /// perf: every Nth streamed request has its connection dropped mid-stream (0 = never).
    #[arg(long, value_parser = values::any_u64, default_value_t = 0, value_name = "N")]
    pub mock_drop_every: u64,
    /// perf: every Nth streamed request gets one malformed (non-JSON) chunk (0 = never).
    #[arg(long, value_parser = values::any_u64, default_value_t = 0, value_name = "N")]
    pub mock_malformed_every: u64,
    /// perf: simulator prefix cache size in prompt tokens (0 = none): prompts that share
    /// leading blocks with earlier ones report them in usage.prompt_tokens_details.cached_tokens.
    #[arg(long, value_parser = values::any_u64, default_value_t = 0, value_name = "TOKENS")]
    pub mock_prefix_cache_tokens: u64,
    /// perf: tokens per simulator prefix-cache block.
    #[arg(long, value_parser = values::count_usize, default_value_t = 16, value_name = "N")]
    pub mock_cache_block_tokens: usize,
    /// perf: simulator prefill time per uncached prompt token, milliseconds, added to the time
    /// to first token.
    #[arg(long, value_parser = values::milliseconds, default_value_t = 0.0, value_name = "MS")]
    pub mock_prefill_ms_per_token: f64,
    /// perf: write the simulator's own timestamps (request received, each chunk sent) as
    /// JSON lines to this file, to check a client's numbers against the server's.
    #[arg(long, value_name = "PATH")]
    pub mock_log: Option<PathBuf>,
}

/// `--arrival`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ArrivalArg {
    /// Exponential gaps.
    Poisson,
    /// Even gaps.
    Constant,
    /// Gamma gaps of shape --burstiness.
    Gamma,
}

/// The benchmark's flags (evalscope perf 1.14.1 names and defaults).
#[derive(Debug, Clone, Args, serde::Serialize)]
pub struct RunArgs {
    // ----- Model / API / connection
    /// Model name, sent in the body's `model`; its basename names the output directory.
    #[arg(long)]
    pub model: Option<String>,
    /// Attention implementation for --api local (flash_attention_2, sdpa, eager).
    #[arg(long)]
    pub attn_implementation: Option<String>,
    /// Service API: openai, mock (perf's built-in simulator), local, local_vllm, or the id of
    /// any API adapter plugin.
    #[arg(long, default_value = "openai")]
    pub api: String,
    /// Tokenizer (tokenizer.json, a directory, or a model id), for token counts and random prompts.
    #[arg(long)]
    pub tokenizer_path: Option<String>,
    /// The endpoint.
    #[arg(long, default_value = "http://127.0.0.1:8877/v1/chat/completions")]
    pub url: String,
    /// Port of the local server (--api local, local_vllm, mock).
    #[arg(long, value_parser = values::port, default_value_t = 8877)]
    pub port: u16,
    /// Extra HTTP headers, `key=value` (split at the first `=`).
    #[arg(long, num_args = 1.., value_name = "KEY=VALUE")]
    pub headers: Vec<String>,
    /// API key, sent as `Authorization: Bearer <key>`. Never logged or written.
    #[arg(long)]
    pub api_key: Option<String>,
    /// Connect timeout in seconds.
    #[arg(long, value_parser = values::seconds, value_name = "SECONDS")]
    pub connect_timeout: Option<f64>,
    /// Read timeout in seconds: the longest gap between two reads of a response.
    #[arg(long, value_parser = values::seconds, value_name = "SECONDS")]
    pub read_timeout: Option<f64>,
    /// Total timeout of one request in seconds; also caps the connection test.
    #[arg(long, value_parser = values::seconds, default_value_t = 21600.0, value_name = "SECONDS")]
    pub total_timeout: f64,
    /// perf: the longest response body read, in bytes; a longer one fails its request
    /// (default 256 MiB).
    #[arg(long, value_parser = values::bytes, default_value_t = 256 << 20, value_name = "BYTES")]
    pub max_response_bytes: u64,
    /// perf: the longest server-sent event or NDJSON line, in bytes; a longer one fails its
    /// request (default 16 MiB).
    #[arg(long, value_parser = values::bytes, default_value_t = 16 << 20, value_name = "BYTES")]
    pub max_event_bytes: u64,
    /// Skip the connection test before the run.
    #[arg(long)]
    pub no_test_connection: bool,
    /// perf: CA certificates (PEM files) to trust for https besides the system's trust store
    /// and SSL_CERT_FILE / SSL_CERT_DIR.
    #[arg(long, num_args = 1.., value_name = "PEM")]
    pub tls_ca_cert: Vec<PathBuf>,
    /// perf: client certificate (PEM, with its chain) for servers that require mutual TLS;
    /// needs --tls-client-key.
    #[arg(long, value_name = "PEM")]
    pub tls_client_cert: Option<PathBuf>,
    /// perf: the client certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "PEM")]
    pub tls_client_key: Option<PathBuf>,
    /// perf: do not verify the server's certificate (test rigs only: anyone in between can
    /// read and change the traffic).
    #[arg(long)]
    pub tls_insecure: bool,
    /// perf: ignore the proxy environment variables (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY,
    /// NO_PROXY) and connect directly.
    #[arg(long)]
    pub no_proxy: bool,
    /// AgentX scenario (evalscope hands it to AIPerf).
    #[arg(long)]
    pub scenario: Option<String>,

    // ----- Load shape
    /// Requests per run; several values make a sweep, paired with --parallel (or --rate).
    #[arg(short = 'n', long, value_parser = values::requests, num_args = 1.., default_values_t = [1000u64])]
    pub number: Vec<u64>,
    /// Whether `--number` was on the command line (a replayed trace otherwise sends all of
    /// itself). Set by `perf_host::parse`.
    #[arg(skip)]
    #[serde(skip)]
    pub number_given: bool,
    /// Maximum in-flight requests per run; several values make a sweep.
    #[arg(long, value_parser = values::parallel, num_args = 1.., default_values_t = [1i64])]
    pub parallel: Vec<i64>,
    /// Requests per second (Poisson arrivals); -1 sends as fast as --parallel allows.
    #[arg(long, value_parser = values::rate, num_args = 1.., default_values_t = [-1.0f64])]
    pub rate: Vec<f64>,
    /// Warmup requests before each run (>= 1: a count; between 0 and 1: a fraction of --number).
    #[arg(long, value_parser = values::warmup, default_value_t = 0.0)]
    pub warmup_num: f64,
    /// Prefill/decode disaggregation metrics.
    #[arg(long)]
    pub enable_pd_metrics: bool,
    /// Send on the --rate schedule with no concurrency cap.
    #[arg(long)]
    pub open_loop: bool,
    /// Seconds to sleep between the runs of a sweep.
    #[arg(long, value_parser = values::seconds_or_zero, default_value_t = 5.0)]
    pub sleep_interval: f64,
    /// Wall-clock budget of each run in seconds; no new requests after it, in-flight ones finish.
    #[arg(long, value_parser = values::seconds, value_name = "SECONDS")]
    pub duration: Option<f64>,
    /// perf: the arrival process of --rate: poisson (evalscope's, the default), constant
    /// (even gaps) or gamma (gaps of shape --burstiness).
    #[arg(long, value_enum, value_name = "PROCESS")]
    pub arrival: Option<ArrivalArg>,
    /// perf: the shape of gamma arrivals: below 1 burstier than Poisson, above 1 more even,
    /// 1 is Poisson (implies --arrival gamma).
    #[arg(long, value_parser = values::burstiness, value_name = "K")]
    pub burstiness: Option<f64>,
    /// perf: raise the load linearly over the first SECONDS of each run: the rate from 0 to
    /// --rate, the concurrency from 1 to --parallel.
    #[arg(long, value_parser = values::seconds, value_name = "SECONDS", conflicts_with = "ramp_up_requests")]
    pub ramp_up_duration: Option<f64>,
    /// perf: raise the load linearly over the first N requests of each run instead.
    #[arg(long, value_parser = values::requests, value_name = "N")]
    pub ramp_up_requests: Option<u64>,
    /// perf: per-request service-level objectives, vLLM's form (`ttft:MS tpot:MS e2el:MS`,
    /// any of them): a request is good when it succeeded and meets every one. Adds
    /// `Goodput (req/s)` and `Good Requests (%)` to the summary; `goodput` is then an SLA metric.
    #[arg(long, num_args = 1.., value_name = "METRIC:MS")]
    pub goodput: Vec<String>,
    /// perf: stop a sweep at the first run where the server is over-saturated (throughput
    /// stopped rising while TTFT or queueing climbed); the verdict is logged either way.
    #[arg(long)]
    pub stop_on_saturation: bool,

    // ----- SLA auto-tune
    /// Search for the largest --parallel or --rate that meets --sla-params.
    #[arg(long)]
    pub sla_auto_tune: bool,
    /// The variable the SLA search tunes: parallel or rate.
    #[arg(long, default_value = "parallel")]
    pub sla_variable: String,
    /// SLA criteria as JSON.
    #[arg(long)]
    pub sla_params: Option<String>,
    /// Repeats per probed value.
    #[arg(long, value_parser = values::count_u32, default_value_t = 3)]
    pub sla_num_runs: u32,
    /// Upper bound of the SLA search.
    #[arg(long, value_parser = values::count, default_value_t = 65536)]
    pub sla_upper_bound: u64,
    /// Lower bound of the SLA search.
    #[arg(long, value_parser = values::count, default_value_t = 1)]
    pub sla_lower_bound: u64,
    /// Concurrency while tuning the rate.
    #[arg(long, value_parser = values::count)]
    pub sla_fixed_parallel: Option<u64>,
    /// Requests per probe = value x multiplier.
    #[arg(long, value_parser = values::multiplier)]
    pub sla_number_multiplier: Option<f64>,

    // ----- Tuning knobs
    /// SQLite rows per commit.
    #[arg(long, value_parser = values::count_usize, default_value_t = 1000)]
    pub db_commit_interval: usize,
    /// Accepted for compatibility; perf's result queue does not block senders.
    #[arg(long, value_parser = values::small_usize, default_value_t = 5)]
    pub queue_size_multiplier: usize,
    /// Accepted for compatibility; perf keeps exactly --parallel requests in flight.
    #[arg(long, value_parser = values::small_usize, default_value_t = 2)]
    pub in_flight_task_multiplier: usize,
    /// Threads for prompt generation (0 = automatic).
    #[arg(long, value_parser = values::small_usize, default_value_t = 0)]
    pub num_workers: usize,

    // ----- Logging / visualisation
    /// Log the running summary every N measured responses.
    #[arg(long, value_parser = values::every, default_value_t = 100)]
    pub log_every_n_query: u64,
    /// Debug logging.
    #[arg(long)]
    pub debug: bool,
    /// Stream running metrics to wandb or swanlab.
    #[arg(long)]
    pub visualizer: Option<String>,
    /// wandb API key (prefer WANDB_API_KEY); implies --visualizer wandb.
    #[arg(long)]
    pub wandb_api_key: Option<String>,
    /// swanlab API key (`local` selects local mode).
    #[arg(long)]
    pub swanlab_api_key: Option<String>,
    /// Self-hosted swanlab address.
    #[arg(long)]
    pub swanlab_host: Option<String>,
    /// Run name: output subdirectory and visualiser run name (default `<model>_<time>`).
    #[arg(long)]
    pub name: Option<String>,
    /// Display label for the summary.
    #[arg(long)]
    pub alias: Option<String>,
    /// Write progress.json during the run.
    #[arg(long)]
    pub enable_progress_tracker: bool,

    // ----- Prompt construction
    /// Maximum prompt length (tokens with a tokenizer, else characters).
    #[arg(long, value_parser = values::length, default_value_t = 131072)]
    pub max_prompt_length: u64,
    /// Minimum prompt length.
    #[arg(long, value_parser = values::length, default_value_t = 0)]
    pub min_prompt_length: u64,
    /// Random shared prefix length in tokens (random dataset).
    #[arg(long, value_parser = values::length, default_value_t = 0)]
    pub prefix_length: u64,
    /// Number of distinct random prefixes (random dataset).
    #[arg(long, value_parser = values::count, default_value_t = 1)]
    pub prefix_count: u64,
    /// A fixed prompt, or `@file`; wins over --dataset.
    #[arg(long)]
    pub prompt: Option<String>,
    /// Request body skeleton as JSON, or `@file.json`.
    #[arg(long)]
    pub query_template: Option<String>,
    /// Wrap prompts as chat messages (default: when the URL ends in chat/completions).
    #[arg(long, overrides_with = "no_apply_chat_template")]
    pub apply_chat_template: bool,
    /// Send prompts as plain text (completions).
    #[arg(long)]
    pub no_apply_chat_template: bool,
    /// random_vl image width.
    #[arg(long, value_parser = values::pixels, default_value_t = 224)]
    pub image_width: u32,
    /// random_vl image height.
    #[arg(long, value_parser = values::pixels, default_value_t = 224)]
    pub image_height: u32,
    /// random_vl image colour mode.
    #[arg(long, default_value = "RGB")]
    pub image_format: String,
    /// random_vl images per request.
    #[arg(long, value_parser = values::images, default_value_t = 1)]
    pub image_num: u32,
    /// Patch size for the client-side image token estimate.
    #[arg(long, value_parser = values::count_u32, default_value_t = 28)]
    pub image_patch_size: u32,

    // ----- Output
    /// Root output directory.
    #[arg(long, default_value = "outputs")]
    pub outputs_dir: PathBuf,
    /// Write to `<outputs-dir>/<name>` instead of `<outputs-dir>/<time>/<name>`.
    #[arg(long)]
    pub no_timestamp: bool,

    // ----- Dataset
    /// Dataset plugin id (openqa, longalpaca, line_by_line, random, ... or a plugin's).
    #[arg(long, default_value = "openqa")]
    pub dataset: String,
    /// Local dataset file or directory.
    #[arg(long)]
    pub dataset_path: Option<String>,
    /// Hub for built-in datasets, tokenizers and models: modelscope (the default),
    /// huggingface or local.
    #[arg(long)]
    pub data_source: Option<String>,
    /// Offset into the vocabulary for random datasets.
    #[arg(long, value_parser = values::any_u64, default_value_t = 0)]
    pub dataset_offset: u64,
    /// Dataset options as JSON (also the options of a --plugin dataset).
    #[arg(long)]
    pub dataset_args: Option<String>,

    // ----- Generation parameters
    /// frequency_penalty.
    #[arg(long, value_parser = values::frequency_penalty)]
    pub frequency_penalty: Option<f64>,
    /// repetition_penalty.
    #[arg(long, value_parser = values::repetition_penalty)]
    pub repetition_penalty: Option<f64>,
    /// Request log probabilities.
    #[arg(long)]
    pub logprobs: bool,
    /// max_tokens: one value, or `MIN MAX` to draw each request's value uniformly.
    #[arg(long, value_parser = values::tokens, num_args = 1.., default_values_t = [2048u32])]
    pub max_tokens: Vec<u32>,
    /// min_tokens.
    #[arg(long, value_parser = values::tokens_or_zero)]
    pub min_tokens: Option<u32>,
    /// n (completion choices).
    #[arg(long, value_parser = values::count_u32)]
    pub n_choices: Option<u32>,
    /// Random seed; also sent as `seed`. Without it every invocation draws new random prompts
    /// (the seed drawn is written to benchmark_args.json as `dataset_seed`).
    #[arg(long)]
    pub seed: Option<i64>,
    /// perf: the seed random datasets draw prompts with, without sending `seed` (to repeat a
    /// run's prompts: its `dataset_seed` from benchmark_args.json); --seed sets it too.
    #[arg(long, value_parser = values::any_u64)]
    pub dataset_seed: Option<u64>,
    /// Stop sequences.
    #[arg(long, num_args = 0..)]
    pub stop: Option<Vec<String>>,
    /// Stop token ids (sent as integers).
    #[arg(long, num_args = 0..)]
    pub stop_token_ids: Option<Vec<u32>>,
    /// Stream the response (server-sent events); needed for time to first token.
    #[arg(long, overrides_with = "no_stream")]
    pub stream: bool,
    /// Do not stream.
    #[arg(long)]
    pub no_stream: bool,
    /// Sampling temperature.
    #[arg(long, value_parser = values::temperature, default_value_t = 0.0)]
    pub temperature: f64,
    /// top_p.
    #[arg(long, value_parser = values::top_p)]
    pub top_p: Option<f64>,
    /// top_k.
    #[arg(long, value_parser = values::top_k)]
    pub top_k: Option<i64>,
    /// JSON object merged into every body last.
    #[arg(long)]
    pub extra_args: Option<String>,
    /// Send token ids to /v1/completions instead of text.
    #[arg(long)]
    pub tokenize_prompt: bool,

    // ----- Multi-turn
    /// Conversation mode.
    #[arg(long)]
    pub multi_turn: bool,
    /// Minimum user turns.
    #[arg(long, value_parser = values::count_u32, default_value_t = 1)]
    pub min_turns: u32,
    /// Maximum user turns.
    #[arg(long, value_parser = values::count_u32)]
    pub max_turns: Option<u32>,
    /// Deprecated multi-turn options.
    #[arg(long)]
    pub multi_turn_args: Option<String>,
    /// perf: seconds between a reply and the next turn of its conversation (a user reading
    /// and typing), with --multi-turn.
    #[arg(long, value_parser = values::seconds_or_zero)]
    pub think_time: Option<f64>,

    // ----- perf's own
    /// perf: options of the API adapter plugin, as JSON.
    #[arg(long)]
    pub api_args: Option<String>,
    /// perf: scrape the server's Prometheus metrics during each run (default URL: /metrics
    /// on the --url's host) into server_metrics.jsonl, summarised beside the client's figures.
    #[arg(long, value_name = "URL", num_args = 0..=1, default_missing_value = "")]
    pub server_metrics: Option<String>,
    /// perf: run as shard I of N (0-based, `0/4` .. `3/4`) of one benchmark spread over N
    /// load generators: this process sends its share of --parallel, --rate and --number, and
    /// `perf merge` combines the shards' directories. Without it, a Kubernetes Indexed Job's
    /// JOB_COMPLETION_INDEX with PERF_SHARDS, or a Slurm step's SLURM_PROCID and
    /// SLURM_STEP_NUM_TASKS, say it.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// perf: start the first run at this wall-clock instant, Unix seconds or RFC 3339
    /// (`2026-12-06T22:30:00Z`): shards given the same instant start together.
    #[arg(long, value_name = "TIME")]
    pub start_at: Option<String>,
    /// perf: a directory every shard of this benchmark can read and write (the shared volume
    /// the results go to), fresh for each benchmark: every run of a sweep then starts on all
    /// shards at once, 2 s after the last shard is ready for it (the first run too, unless
    /// --start-at says when).
    #[arg(long, value_name = "DIR")]
    pub shard_sync: Option<std::path::PathBuf>,
    /// perf: seconds between two scrapes of --server-metrics.
    #[arg(long, default_value_t = 1.0, value_name = "SECONDS")]
    pub server_metrics_interval: f64,
    /// perf: how benchmark_data.db's response_messages holds each response: `evalscope`
    /// (base64 of a pickled list of the parsed chunks, as evalscope writes it) or `text`
    /// (perf's compact JSON of the text and usage; requests then keep no chunks in memory).
    #[arg(long, value_enum, default_value_t = ResponseMessages::Evalscope, value_name = "FORM")]
    pub response_messages: ResponseMessages,
    /// perf: enable a result sink by id, with JSON options: `ID` or `ID={"key": "value"}`;
    /// repeatable.
    #[arg(long = "sink", value_name = "ID[=JSON]")]
    pub sinks: Vec<String>,
    /// perf: export metrics (and, with `--sink otel={"traces": true}`, spans) over OTLP to the
    /// collector the standard OTEL_EXPORTER_OTLP_* environment names (default
    /// http://localhost:4318); the same as `--sink otel`.
    #[arg(long)]
    pub otel: bool,

    /// The simulator's behaviour, for --api mock.
    #[command(flatten)]
    pub mock: MockArgs,
}
