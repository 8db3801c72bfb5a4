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

mod config;
mod shim;

pub use config::{ApiConfig, DatasetConfig, ModelConfig, SinkConfig};
pub use shim::{guard, tokenizer_ref, Registry};

use abi_stable::std_types::RVec;

use crate::abi::TokenizerRef;
use crate::types::{
    ChatMessage, DatasetItem, GenerateOutcome, GenerateRequest, HttpRequest, PluginError,
    PromptItem, RequestContext, RequestRecord, ResponseEvent, RunInfo, RunSnapshot, RunSummary,
    SessionInfo,
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
}

/// Decodes the events of one response, in arrival order.
pub trait ResponseDecoderPlugin: Send + 'static {
    /// Decodes one framed event (see [`crate::types::Framing`]) and pushes what it carried onto
    /// `out`. Return an error for an event that cannot be decoded; the host counts it as a
    /// malformed chunk and keeps reading the stream.
    fn decode(&mut self, event: &[u8], out: &mut RVec<ResponseEvent>) -> Result<(), PluginError>;

    /// Called once after the last event. The default does nothing.
    fn finish(&mut self, out: &mut RVec<ResponseEvent>) -> Result<(), PluginError> {
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
