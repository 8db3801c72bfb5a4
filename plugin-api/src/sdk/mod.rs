//! The plugin author's side: ordinary Rust traits, the configuration each kind receives, and
//! the machinery behind [`export_plugins!`](crate::export_plugins).
//!
//! Implement one trait per plugin ([`ApiAdapterPlugin`], [`DatasetSourcePlugin`],
//! [`ResultSinkPlugin`], [`LocalModelPlugin`]), then list the types in one
//! `perf_plugin_api::export_plugins!` call at the root of a `cdylib` crate. The macro builds the
//! FFI objects of [`crate::abi`] around your types and runs every call inside `catch_unwind`, so
//! a panic becomes a [`PluginError`] of kind [`ErrorKind::Panic`] instead of aborting `perf`.
//! After a panic, a stateful object (a decoder, a dataset source, a sink) refuses further calls
//! with an error, since its state may be half-updated.
//!
//! Each trait has associated constants with defaults besides `ID` and `DESCRIPTION`: the
//! metadata the host plans a run with (aliases, endpoints, how prompts go out, which options
//! the plugin takes). The built-in plugins declare theirs the same way.
//!
//! # What an API adapter must do
//!
//! - `build_request` returns the request for one prompt; the host adds `--headers`, the API
//!   key, `x-request-id` and `user-agent`. `RequestContext::max_tokens` is always set: the
//!   request's draw of `--max-tokens`, whose default is 2048 as in evalscope.
//! - The decoder pushes a [`ResponseEvent::Output`] for every piece of generated text; at
//!   least one is needed, or the request fails as `empty_response`. Its token count is
//!   optional. `Usage` is optional (counts then come from the pieces' counts, a tokenizer, or
//!   an estimate, and the record says so). `Done` is optional: the end of the body ends the
//!   response. `Error` fails the request as `server_error`.
//! - An event the decoder cannot read: return [`PluginError::invalid`]. In a stream it is
//!   counted as a malformed chunk and skipped; a whole non-streamed body fails the request as
//!   `decode`. Any other error, and any panic, fails the request as `plugin`.

mod config;
mod python;
mod shim;

pub use config::{ApiConfig, DatasetConfig, ModelConfig, SinkConfig};
pub use python::python_float;
pub use shim::{guard, tokenizer_ref, Registry};

use crate::abi::TokenizerRef;
use crate::types::{
    ChatMessage, DatasetItem, GenerateOutcome, GenerateRequest, HttpRequest, PluginError,
    PromptForm, PromptItem, RequestContext, RequestRecord, ResponseEvent, ResultKind, RunInfo,
    RunSnapshot, RunSummary, SessionInfo,
};

#[allow(unused_imports)] // used by the docs
use crate::types::ErrorKind;

/// An API adapter: turns prompts into HTTP requests and responses into events.
///
/// One instance serves the whole run and is shared by all workers, so `build_request` takes
/// `&self` and must not block. Keep per-response state in [`Self::Decoder`].
pub trait ApiAdapterPlugin: Sized + Send + Sync + 'static {
    /// The id users pass to `--api`.
    const ID: &'static str;
    /// One line for `perf plugins`.
    const DESCRIPTION: &'static str;
    /// Other names that select this adapter.
    const ALIASES: &'static [&'static str] = &[];
    /// The endpoint paths this API serves; the first is appended to a `--url` that names no
    /// endpoint (see [`crate::PluginInfo::endpoints`]).
    const ENDPOINTS: &'static [&'static str] = &[];
    /// Other APIs' endpoints this API replaces with its first endpoint in a `--url`.
    const REPLACES_ENDPOINTS: &'static [&'static str] = &[];
    /// How prompts go out unless `--apply-chat-template` / `--no-apply-chat-template` say.
    const PROMPT_FORM: PromptForm = PromptForm::ChatAtFirstEndpoint;
    /// What the responses are: generated output, or input-only (embeddings, rerank).
    const RESULTS: ResultKind = ResultKind::Generation;
    /// The keys `--api-args` takes; `None`: not declared (anything is passed on).
    const OPTION_KEYS: Option<&'static [&'static str]> = None;
    /// An example of `--api-args`, for `perf plugins --verbose`.
    const OPTIONS_EXAMPLE: &'static str = "";
    /// The per-response decoder.
    type Decoder: ResponseDecoderPlugin;

    /// Validates the configuration and creates the adapter. Called once, before any traffic;
    /// return [`PluginError::config`] with a message that says what to change.
    fn new(config: &ApiConfig) -> Result<Self, PluginError>;

    /// Builds the request for one prompt.
    fn build_request(
        &self,
        item: &PromptItem,
        ctx: &RequestContext,
    ) -> Result<HttpRequest, PluginError>;

    /// A decoder for one response.
    fn new_decoder(&self) -> Self::Decoder;

    /// A decoder for the response to the request whose body is `request_body` (as sent), for
    /// an adapter whose decoder checks the answer against the question. The default is
    /// [`ApiAdapterPlugin::new_decoder`]. Since 0.2.3; a 0.2.2 or older perf calls
    /// `new_decoder` instead.
    fn new_decoder_for(&self, request_body: &[u8]) -> Self::Decoder {
        let _ = request_body;
        self.new_decoder()
    }
}

/// Decodes the events of one response, in arrival order.
pub trait ResponseDecoderPlugin: Send + 'static {
    /// Decodes one framed event (see [`crate::types::Framing`]) and pushes what it carried onto
    /// `out`. Return [`PluginError::invalid`] for an event that cannot be decoded (see the
    /// module docs for what the host does with it).
    fn decode(&mut self, event: &[u8], out: &mut Vec<ResponseEvent>) -> Result<(), PluginError>;

    /// Called once after the last event. The default does nothing.
    fn finish(&mut self, out: &mut Vec<ResponseEvent>) -> Result<(), PluginError> {
        let _ = out;
        Ok(())
    }
}

/// A dataset source: yields prompts one at a time.
///
/// Called on a blocking thread; reading files is fine. Yield lazily: a run of a million requests
/// must not hold a million prompts.
pub trait DatasetSourcePlugin: Sized + Send + 'static {
    /// The id users pass to `--dataset`.
    const ID: &'static str;
    /// One line for `perf plugins`.
    const DESCRIPTION: &'static str;
    /// Other names that select this dataset.
    const ALIASES: &'static [&'static str] = &[];
    /// Keys evalscope reads from `--extra-args` for this dataset; the host moves them out of
    /// the request body into this dataset's options.
    const EXTRA_ARGS_KEYS: &'static [&'static str] = &[];
    /// The keys `--dataset-args` takes; `None`: not declared; empty: none (the host refuses
    /// `--dataset-args`).
    const OPTION_KEYS: Option<&'static [&'static str]> = None;
    /// An example of `--dataset-args`, for `perf plugins --verbose`.
    const OPTIONS_EXAMPLE: &'static str = "";
    /// Its items carry their own send times (`DatasetItem::set_arrival_s`): the host replays
    /// them once, in order, in open loop ([`crate::FieldId::REPLAYS_SCHEDULE`]).
    const REPLAYS_SCHEDULE: bool = false;
    /// A speed benchmark: its text prompts go to `/v1/completions` (a chat URL is rewritten)
    /// and the run writes `speed_benchmark.json` ([`crate::FieldId::SPEED_BENCHMARK`]).
    const SPEED_BENCHMARK: bool = false;

    /// Validates the configuration and opens the source. `tokenizer` is the host's tokenizer
    /// when `--tokenizer-path` was given.
    fn new(config: &DatasetConfig, tokenizer: Option<TokenizerRef>) -> Result<Self, PluginError>;

    /// The next prompt, or `None` when the source is exhausted.
    fn next_item(&mut self) -> Result<Option<DatasetItem>, PluginError>;
}

/// A result sink. Only [`Self::record`] is required; every other event defaults to doing
/// nothing. Called on a thread of its own, so blocking I/O is fine.
pub trait ResultSinkPlugin: Sized + Send + 'static {
    /// The id users pass to `--sink`.
    const ID: &'static str;
    /// One line for `perf plugins`.
    const DESCRIPTION: &'static str;
    /// The keys of `--sink ID=JSON`; `None`: not declared.
    const OPTION_KEYS: Option<&'static [&'static str]> = None;
    /// An example of `--sink ID=JSON`'s options, for `perf plugins --verbose`.
    const OPTIONS_EXAMPLE: &'static str = "";

    /// Validates the configuration and creates the sink.
    fn new(config: &SinkConfig) -> Result<Self, PluginError>;

    /// Each measured request.
    fn record(&mut self, record: &RequestRecord) -> Result<(), PluginError>;

    /// Once per invocation, before the first run.
    fn begin(&mut self, session: &SessionInfo) -> Result<(), PluginError> {
        let _ = session;
        Ok(())
    }
    /// At the start of each run of a sweep.
    fn run_start(&mut self, run: &RunInfo) -> Result<(), PluginError> {
        let _ = run;
        Ok(())
    }
    /// The running summary, periodically.
    fn snapshot(&mut self, snapshot: &RunSnapshot) -> Result<(), PluginError> {
        let _ = snapshot;
        Ok(())
    }
    /// The final summary and percentiles of a run.
    fn run_end(&mut self, summary: &RunSummary) -> Result<(), PluginError> {
        let _ = summary;
        Ok(())
    }
    /// Write out anything buffered.
    fn flush(&mut self) -> Result<(), PluginError> {
        Ok(())
    }
    /// The last call.
    fn close(&mut self) -> Result<(), PluginError> {
        self.flush()
    }
}

/// A tokenizer implementation, wrapped into a [`TokenizerRef`] with [`tokenizer_ref`].
pub trait TokenizerPlugin: Send + Sync + 'static {
    /// Token ids of `text`.
    fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, PluginError>;
    /// Text of `ids`.
    fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, PluginError>;
    /// Number of ids, added tokens included.
    fn vocab_size(&self) -> u32;
    /// The string form of a token id.
    fn id_to_token(&self, id: u32) -> Option<String>;
    /// Whether `id` is a special token.
    fn is_special(&self, id: u32) -> bool;
    /// The chat template applied to `messages`, or `None` without a template.
    fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<Option<String>, PluginError>;
}

/// A local model for `--api local`. `generate` runs concurrently on several threads.
pub trait LocalModelPlugin: Sized + Send + Sync + 'static {
    /// The id users select the backend with.
    const ID: &'static str;
    /// One line for `perf plugins`.
    const DESCRIPTION: &'static str;
    /// The keys of the backend's options (`--api-args` with `--api local`); `None`: not
    /// declared.
    const OPTION_KEYS: Option<&'static [&'static str]> = None;
    /// An example of the backend's options, for `perf plugins --verbose`.
    const OPTIONS_EXAMPLE: &'static str = "";

    /// Loads the model at `model_path`.
    fn load(model_path: &str, config: &ModelConfig) -> Result<Self, PluginError>;
    /// The model name served on `/v1/models`.
    fn name(&self) -> String;
    /// The model's tokenizer.
    fn tokenizer(&self) -> TokenizerRef;
    /// Generates tokens, calling `on_token` for each; stop early when it returns `false`.
    fn generate(
        &self,
        request: &GenerateRequest,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<GenerateOutcome, PluginError>;
}
