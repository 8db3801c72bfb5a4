//! The FFI-safe data that crosses the plugin boundary.
//!
//! Every type here derives [`StableAbi`], so its layout is recorded in the library header and
//! checked when a plugin is loaded. Strings, vectors and options are abi_stable's `RString`,
//! `RVec` and `ROption`; they dereference to `str`, slices and behave like `Option`, so plugin
//! code reads them like the std types.
//!
//! Adding a field to a struct or a variant to an enum here changes the layout: that is a
//! breaking change of the interface (see the crate documentation, "Versioning").

use abi_stable::{
    std_types::{ROption, RString, RVec},
    StableAbi,
};

/// What a plugin does. One library may export plugins of several kinds.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PluginKind {
    /// Builds HTTP requests and decodes responses for one service API (`--api`).
    ApiAdapter,
    /// Yields prompts (`--dataset`).
    DatasetSource,
    /// Receives records and summaries (OpenTelemetry, wandb, a file, ...).
    ResultSink,
    /// Serves a model for `--api local`.
    LocalModel,
}

impl PluginKind {
    /// The name used on the command line and in `perf plugins`.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::ApiAdapter => "api",
            PluginKind::DatasetSource => "dataset",
            PluginKind::ResultSink => "sink",
            PluginKind::LocalModel => "model",
        }
    }
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Metadata of one plugin, as listed by `perf plugins`.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    /// The name users type (`--api ID`, `--dataset ID`, `--sink ID`). Unique per kind.
    pub id: RString,
    /// What the plugin does.
    pub kind: PluginKind,
    /// The plugin's own version (usually its crate version), for display only.
    pub version: RString,
    /// One line describing the plugin.
    pub description: RString,
}

/// Why a plugin call failed.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The configuration (JSON options, request parameters) was rejected. Reported before any
    /// traffic, with exit code 2.
    Config,
    /// The input of a call could not be handled (an unsupported prompt item, a response frame
    /// that is not valid for this API). A frame that fails to decode is counted and skipped.
    Invalid,
    /// Reading or writing a file or a network resource failed.
    Io,
    /// The plugin panicked; the SDK caught the panic and turned it into this error.
    Panic,
    /// No plugin with the requested id exists in this library.
    UnknownPlugin,
    /// Anything else.
    Other,
}

/// The error every fallible plugin call returns.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct PluginError {
    /// The category, which decides how the host reacts.
    pub kind: ErrorKind,
    /// A message for the user: say what is wrong and what to do about it.
    pub message: RString,
}

impl PluginError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        PluginError {
            kind,
            message: RString::from(message.into()),
        }
    }
    /// A rejected configuration.
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }
    /// Input this plugin cannot handle.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }
    /// A failed file or network operation.
    pub fn io(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Io, message)
    }
    /// Any other failure.
    pub fn other(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Other, message)
    }
}

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PluginError {}

// ---------------------------------------------------------------------------------------------
// Prompts

/// One part of a chat message's content.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub enum ContentPart {
    /// Text.
    Text(RString),
    /// An image, as a URL or a `data:image/...;base64,` URL.
    ImageUrl(RString),
}

/// One chat message.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`, `tool`, ...
    pub role: RString,
    /// The content parts, in order. A plain text message has one `Text` part.
    pub content: RVec<ContentPart>,
}

impl ChatMessage {
    /// A message with one text part.
    pub fn text(role: &str, text: &str) -> Self {
        ChatMessage {
            role: role.into(),
            content: vec![ContentPart::Text(text.into())].into(),
        }
    }
}

/// What a dataset yields and an API adapter turns into a request.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub enum PromptItem {
    /// A plain prompt (completions style, or wrapped into one user message by chat adapters).
    Text(RString),
    /// A chat conversation, sent as is.
    Messages(RVec<ChatMessage>),
    /// A complete JSON request body; adapters fill in only the parameters it lacks.
    Body(RString),
    /// Token ids, for servers that accept them (`/v1/completions` with a token-id prompt).
    TokenIds(RVec<u32>),
}

/// A prompt plus what the dataset knows about it.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct DatasetItem {
    /// The prompt.
    pub prompt: PromptItem,
    /// The exact prompt length in tokens when the dataset knows it (e.g. `random`), so the host
    /// need not count it again.
    pub prompt_tokens: ROption<u64>,
}

impl DatasetItem {
    /// An item of unknown token length.
    pub fn new(prompt: PromptItem) -> Self {
        DatasetItem {
            prompt,
            prompt_tokens: ROption::RNone,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP requests and responses

/// HTTP method of a request.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    /// GET
    Get,
    /// POST
    Post,
    /// PUT
    Put,
}

/// How the host cuts a streamed response body into events before it calls
/// `ResponseDecoder::decode`.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Not streamed: the whole body is one event.
    None,
    /// Server-sent events: each event's joined `data:` lines are one event; comments and
    /// `event:`/`id:`/`retry:` fields are dropped; `[DONE]` ends the stream.
    Sse,
    /// Newline-delimited JSON: each non-empty line is one event.
    NdJson,
}

/// One HTTP header.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header name.
    pub name: RString,
    /// Header value.
    pub value: RString,
}

/// What an API adapter wants sent. The host adds the headers of `--headers` and `--api-key`
/// (those win over the adapter's), sends it and times it.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct HttpRequest {
    /// Method.
    pub method: HttpMethod,
    /// An absolute URL, or an empty string for the run's `--url`.
    pub url: RString,
    /// Headers the API needs (e.g. `content-type`).
    pub headers: RVec<Header>,
    /// The body bytes.
    pub body: RVec<u8>,
    /// How a successful response body is cut into events.
    pub framing: Framing,
}

impl HttpRequest {
    /// A POST of a JSON `body` to the run's `--url` with `content-type: application/json`,
    /// its answer framed as server-sent events when `stream`, else whole. Push more headers
    /// onto `headers` where the API needs them.
    pub fn json_post(body: Vec<u8>, stream: bool) -> Self {
        HttpRequest {
            method: HttpMethod::Post,
            url: "".into(),
            headers: vec![Header {
                name: "content-type".into(),
                value: "application/json".into(),
            }]
            .into(),
            body: body.into(),
            framing: if stream { Framing::Sse } else { Framing::None },
        }
    }
}

/// Per-request values the host chooses (it owns the random number generator, so runs are
/// reproducible from `--seed`).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq)]
pub struct RequestContext {
    /// Index of the request within its run, in dispatch order (warmup requests included).
    pub index: u64,
    /// `max_tokens` for this request, when `--max-tokens` gives a range (sampled per request)
    /// or a value; `RNone` to leave the adapter's configured value.
    pub max_tokens: ROption<u32>,
}

/// Which output stream a piece of output belongs to.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// Ordinary answer text.
    Content,
    /// Reasoning ("thinking") text.
    Reasoning,
    /// Tool-call names or arguments.
    ToolCall,
}

/// Token counts reported by the server.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: ROption<u64>,
    /// Generated tokens.
    pub completion_tokens: ROption<u64>,
    /// Prompt tokens served from the server's prefix cache.
    pub cached_tokens: ROption<u64>,
}

/// What one decoded event carried. A decoder may push several per event.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub enum ResponseEvent {
    /// Generated output. The first one sets the time to first token; the gaps between them
    /// are the inter-token latencies.
    Output {
        /// The text (may be empty when only a token count is known).
        text: RString,
        /// How many tokens this piece holds, when the API says.
        tokens: ROption<u32>,
        /// Content, reasoning or tool call.
        kind: OutputKind,
    },
    /// A generation step without new output (e.g. a chunk with an empty delta). Counts as a
    /// decode chunk once output has started, as evalscope counts it.
    EmptyChunk,
    /// Token usage. Later usage events override earlier values field by field.
    Usage(Usage),
    /// An error the server reported inside a successful response; fails the request.
    Error(RString),
    /// The server said the response is complete (e.g. `[DONE]`, a final status event).
    Done,
}

// ---------------------------------------------------------------------------------------------
// Records and summaries, for result sinks

/// Why a request failed.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// The request succeeded.
    None,
    /// The connection could not be made.
    Connect,
    /// A connect, read or total timeout expired.
    Timeout,
    /// The server answered with a status other than 2xx.
    HttpStatus,
    /// The connection broke while the response was being read.
    Stream,
    /// The response could not be decoded at all.
    Decode,
    /// The server reported an error inside the response.
    ServerError,
    /// The response finished without any output.
    EmptyResponse,
    /// A plugin failed while building the request or decoding the response.
    Plugin,
    /// The run was interrupted before the request finished.
    Cancelled,
}

impl FailureKind {
    /// A stable, lower-case name used in files and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::None => "none",
            FailureKind::Connect => "connect",
            FailureKind::Timeout => "timeout",
            FailureKind::HttpStatus => "http_status",
            FailureKind::Stream => "stream",
            FailureKind::Decode => "decode",
            FailureKind::ServerError => "server_error",
            FailureKind::EmptyResponse => "empty_response",
            FailureKind::Plugin => "plugin",
            FailureKind::Cancelled => "cancelled",
        }
    }
}

/// Wall-clock timestamps of one request, in seconds since the Unix epoch. They are taken by the
/// host on a monotonic clock and converted with one anchor per run, so differences between
/// them are exact.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq)]
pub struct RequestTimes {
    /// When the schedule wanted the request sent.
    pub intended_send: f64,
    /// When the request was handed to the HTTP client.
    pub sent: f64,
    /// When the first response byte arrived.
    pub first_byte: ROption<f64>,
    /// When the first output event arrived.
    pub first_output: ROption<f64>,
    /// When the request finished (last event, error or cancellation).
    pub completed: f64,
}

/// One measured request (warmup requests are never recorded).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct RequestRecord {
    /// Index of the run in the sweep (0 for the first `--parallel`/`--number` pair).
    pub run_index: u32,
    /// Index of the request within its run, in dispatch order.
    pub request_index: u64,
    /// Whether the request succeeded.
    pub success: bool,
    /// Whether the response was streamed.
    pub is_stream: bool,
    /// HTTP status, 0 when no response arrived.
    pub http_status: u16,
    /// Why it failed (`None` on success).
    pub failure: FailureKind,
    /// The error message (empty on success). Never contains credentials.
    pub error: RString,
    /// Timestamps.
    pub times: RequestTimes,
    /// Latency in seconds (sent to last event), on success.
    pub latency_s: ROption<f64>,
    /// Time to first token in seconds, on success.
    pub ttft_s: ROption<f64>,
    /// Time per output token in seconds, on success with more than one output token.
    pub tpot_s: ROption<f64>,
    /// Gaps between output events in seconds.
    pub itl_s: RVec<f64>,
    /// Prompt tokens.
    pub prompt_tokens: ROption<u64>,
    /// Generated tokens.
    pub completion_tokens: ROption<u64>,
    /// Prompt tokens served from the server's cache.
    pub cached_tokens: ROption<u64>,
    /// True when token counts were estimated by the client rather than reported by the server.
    pub tokens_estimated: bool,
}

/// A named number, e.g. `("Avg TTFT (ms)", 12.5)`.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct NamedValue {
    /// The key, as in `benchmark_summary.json`.
    pub name: RString,
    /// The value.
    pub value: f64,
}

/// One row of `benchmark_percentile.json`.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct PercentileRow {
    /// `min`, `1%`, ..., `99%`, `max`.
    pub label: RString,
    /// The metrics at this percentile.
    pub values: RVec<NamedValue>,
}

/// Sent once per invocation, before the first run.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct SessionInfo {
    /// The run name (`--name`, or `<model>_<timestamp>`).
    pub name: RString,
    /// All arguments as a JSON object, secrets replaced by `**********`.
    pub args_json: RString,
    /// The output directory of this invocation.
    pub output_dir: RString,
    /// Start time, seconds since the Unix epoch.
    pub started_unix_s: f64,
}

/// Sent at the start of each run of a sweep.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct RunInfo {
    /// Index of the run in the sweep.
    pub run_index: u32,
    /// The run's directory name, e.g. `parallel_8_number_100`.
    pub label: RString,
    /// Maximum in-flight requests (-1: unbounded, open loop).
    pub parallel: i64,
    /// Measured requests.
    pub number: u64,
    /// Request rate in req/s (-1: unpaced).
    pub rate: f64,
}

/// The running summary, sent periodically during a run.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct RunSnapshot {
    /// Index of the run in the sweep.
    pub run_index: u32,
    /// Seconds since the run started.
    pub elapsed_s: f64,
    /// Measured requests finished so far.
    pub completed: u64,
    /// The same keys as `benchmark_summary.json`, over the requests finished so far.
    pub metrics: RVec<NamedValue>,
}

/// The final result of one run.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct RunSummary {
    /// Index of the run in the sweep.
    pub run_index: u32,
    /// The contents of `benchmark_summary.json`, in order.
    pub summary: RVec<NamedValue>,
    /// The rows of `benchmark_percentile.json`.
    pub percentiles: RVec<PercentileRow>,
}

// ---------------------------------------------------------------------------------------------
// Local models

/// Sampling parameters of one generation.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f32,
    /// Nucleus sampling threshold.
    pub top_p: ROption<f32>,
    /// Top-k sampling.
    pub top_k: ROption<u32>,
    /// Repetition penalty (1.0 = none).
    pub repetition_penalty: ROption<f32>,
    /// Frequency penalty.
    pub frequency_penalty: ROption<f32>,
    /// Seed of this generation's sampler.
    pub seed: ROption<u64>,
}

/// One generation request for a local model.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct GenerateRequest {
    /// The prompt, already tokenized (chat template applied by the host).
    pub prompt_tokens: RVec<u32>,
    /// Stop after this many new tokens.
    pub max_new_tokens: u32,
    /// Do not stop on end-of-sequence or stop tokens before this many tokens.
    pub min_new_tokens: u32,
    /// Extra token ids that end the generation.
    pub stop_token_ids: RVec<u32>,
    /// Sampling.
    pub sampling: SamplingParams,
}

/// Why a generation ended.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// `max_new_tokens` reached.
    Length,
    /// End of sequence or a stop token.
    Stop,
    /// The token sink asked to stop (the client went away).
    Cancelled,
}

/// The result of one generation.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenerateOutcome {
    /// Prompt tokens processed.
    pub prompt_tokens: u64,
    /// Tokens generated.
    pub completion_tokens: u64,
    /// Why it ended.
    pub finish: FinishReason,
}
