//! The `openai` API adapter: OpenAI-compatible `/v1/chat/completions` and `/v1/completions`,
//! streamed (server-sent events) or not; `openai_responses`, the Responses API
//! (`responses.rs`); `openai_embedding` and `openai_rerank` (`embeddings.rs`); the decision
//! services `systemone` and `autotrust` (`decisions.rs`). `--api local`, `--api local_vllm` and the simulator
//! (`--api mock`) speak the same protocol and use this adapter too.
//!
//! Request bodies follow evalscope perf 1.14.1 (see `body.rs`); decoding recognises content,
//! reasoning (`reasoning_content`, `reasoning`, `reasoning_details`) and tool-call deltas as
//! output, so a reasoning model's time to first token is the time to its first thought.

mod body;
mod decisions;
mod decode;
mod embeddings;
mod frame;
mod responses;
mod scan;

use perf_plugin_api::sdk::{ApiAdapterPlugin, ApiConfig};
use perf_plugin_api::{Framing, HttpRequest, PluginError, PromptItem, RequestContext};

pub use decisions::{AutoTrustAdapter, DecisionDecoder, SystemOneAdapter};
pub use decode::OpenAiDecoder;
pub use embeddings::{EmbeddingAdapter, InputOnlyDecoder, RerankAdapter};
pub use responses::{ResponsesAdapter, ResponsesDecoder};

/// The adapter; one per run, shared by every worker.
pub struct OpenAiAdapter {
    body: body::BodyBuilder,
    stream: bool,
}

impl ApiAdapterPlugin for OpenAiAdapter {
    const ID: &'static str = "openai";
    const DESCRIPTION: &'static str =
        "OpenAI-compatible chat completions and completions, streamed (SSE) or not";
    // Chat messages at .../chat/completions, a plain prompt at .../completions.
    const ENDPOINTS: &'static [&'static str] = &["chat/completions", "completions"];
    const OPTION_KEYS: Option<&'static [&'static str]> = Some(&[]);
    type Decoder = OpenAiDecoder;

    fn new(config: &ApiConfig) -> Result<Self, PluginError> {
        Ok(OpenAiAdapter {
            body: body::BodyBuilder::new(config)?,
            stream: config.stream,
        })
    }

    fn build_request(
        &self,
        item: &PromptItem,
        ctx: &RequestContext,
    ) -> Result<HttpRequest, PluginError> {
        let body = self.body.build(item, ctx)?;
        let framing = if self.stream {
            Framing::Sse
        } else {
            Framing::None
        };
        Ok(HttpRequest::json_post(body, framing))
    }

    fn new_decoder(&self) -> OpenAiDecoder {
        OpenAiDecoder::default()
    }
}

perf_plugin_api::builtin_plugins! {
    ApiAdapter: OpenAiAdapter,
    ApiAdapter: ResponsesAdapter,
    ApiAdapter: EmbeddingAdapter,
    ApiAdapter: RerankAdapter,
    ApiAdapter: SystemOneAdapter,
    ApiAdapter: AutoTrustAdapter,
}
