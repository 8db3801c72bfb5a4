//! The engine's view of plugins: one type per kind whatever the origin (built-in or
//! `--plugin`), with plain `Result`s instead of FFI results.

use perf_plugin_api::{
    ApiAdapterBox, DatasetItem, DatasetSourceBox, GenerateOutcome, GenerateRequest, HttpRequest,
    LocalModelBox, PluginError, PluginInfo, PromptItem_NE, RVec, RequestContext, RequestRecord,
    ResponseDecoderBox, ResponseEvent_NE, ResultSinkBox, RunInfo, RunSnapshot, RunSummary,
    SessionInfo, TokenizerRef,
};

use abi_stable::sabi_types::RMut;
use perf_plugin_api::abi::TokenSink_TO;

use std::sync::Arc;

use super::{Origin, PluginEntry};

/// An API adapter, shared by all workers.
pub struct ApiAdapter {
    inner: ApiAdapterBox,
    /// Its library has `new_decoder_for` (interface 0.2.3 or later).
    decoder_for: bool,
    /// Its metadata.
    pub info: Arc<PluginInfo>,
    /// Where it comes from.
    pub origin: Origin,
}

impl ApiAdapter {
    pub(super) fn new(inner: ApiAdapterBox, entry: PluginEntry) -> Self {
        ApiAdapter {
            inner,
            decoder_for: entry.library.has(0, 2, 3),
            info: Arc::new(entry.info),
            origin: entry.origin,
        }
    }

    /// The request for one prompt.
    pub fn build_request(
        &self,
        item: &PromptItem_NE,
        ctx: &RequestContext,
    ) -> Result<HttpRequest, PluginError> {
        self.inner.build_request(item, ctx).into_result()
    }

    /// A decoder for the response to the request whose body is `request_body` (a library of
    /// interface 0.2.3 or later sees the body; an older one makes its decoder without it).
    pub fn decoder(&self, request_body: &[u8]) -> Result<ResponseDecoder, PluginError> {
        let made = if self.decoder_for {
            self.inner.new_decoder_for(request_body.into())
        } else {
            self.inner.new_decoder()
        };
        made.into_result().map(|inner| ResponseDecoder { inner })
    }
}

/// The decoder of one response.
pub struct ResponseDecoder {
    inner: ResponseDecoderBox,
}

impl ResponseDecoder {
    /// Decodes one framed event, appending to `out`.
    pub fn decode(
        &mut self,
        event: &[u8],
        out: &mut RVec<ResponseEvent_NE>,
    ) -> Result<(), PluginError> {
        self.inner.decode(event.into(), out).into_result()
    }

    /// Ends the response.
    pub fn finish(&mut self, out: &mut RVec<ResponseEvent_NE>) -> Result<(), PluginError> {
        self.inner.finish(out).into_result()
    }
}

/// A dataset source.
pub struct DatasetSource {
    inner: DatasetSourceBox,
    /// Its metadata.
    pub info: Arc<PluginInfo>,
    /// Where it comes from.
    pub origin: Origin,
}

impl DatasetSource {
    pub(super) fn new(inner: DatasetSourceBox, entry: PluginEntry) -> Self {
        DatasetSource {
            inner,
            info: Arc::new(entry.info),
            origin: entry.origin,
        }
    }

    /// The next prompt, `None` at the end.
    pub fn next_item(&mut self) -> Result<Option<DatasetItem>, PluginError> {
        self.inner
            .next_item()
            .into_result()
            .map(|o| o.into_option())
    }
}

/// A result sink.
pub struct ResultSink {
    inner: ResultSinkBox,
    /// Its metadata.
    pub info: Arc<PluginInfo>,
    /// Where it comes from.
    pub origin: Origin,
}

impl ResultSink {
    pub(super) fn new(inner: ResultSinkBox, entry: PluginEntry) -> Self {
        ResultSink {
            inner,
            info: Arc::new(entry.info),
            origin: entry.origin,
        }
    }

    /// See `perf_plugin_api::abi::ResultSink`.
    pub fn begin(&mut self, session: &SessionInfo) -> Result<(), PluginError> {
        self.inner.begin(session).into_result()
    }
    /// See `perf_plugin_api::abi::ResultSink`.
    pub fn run_start(&mut self, run: &RunInfo) -> Result<(), PluginError> {
        self.inner.run_start(run).into_result()
    }
    /// See `perf_plugin_api::abi::ResultSink`.
    pub fn record(&mut self, record: &RequestRecord) -> Result<(), PluginError> {
        self.inner.record(record).into_result()
    }
    /// See `perf_plugin_api::abi::ResultSink`.
    pub fn snapshot(&mut self, snapshot: &RunSnapshot) -> Result<(), PluginError> {
        self.inner.snapshot(snapshot).into_result()
    }
    /// See `perf_plugin_api::abi::ResultSink`.
    pub fn run_end(&mut self, summary: &RunSummary) -> Result<(), PluginError> {
        self.inner.run_end(summary).into_result()
    }
    /// See `perf_plugin_api::abi::ResultSink`.
    pub fn flush(&mut self) -> Result<(), PluginError> {
        self.inner.flush().into_result()
    }
    /// See `perf_plugin_api::abi::ResultSink`.
    pub fn close(&mut self) -> Result<(), PluginError> {
        self.inner.close().into_result()
    }
}

/// A loaded local model.
pub struct LocalModel {
    inner: LocalModelBox,
    /// Its metadata.
    pub info: Arc<PluginInfo>,
    /// Where it comes from.
    pub origin: Origin,
}

struct FnSink<'a>(&'a mut dyn FnMut(u32) -> bool);

impl perf_plugin_api::abi::TokenSink for FnSink<'_> {
    fn token(&mut self, id: u32) -> bool {
        (self.0)(id)
    }
}

impl LocalModel {
    pub(super) fn new(inner: LocalModelBox, entry: PluginEntry) -> Self {
        LocalModel {
            inner,
            info: Arc::new(entry.info),
            origin: entry.origin,
        }
    }

    /// The served model name.
    pub fn name(&self) -> String {
        self.inner.name().into_string()
    }

    /// The model's tokenizer.
    pub fn tokenizer(&self) -> TokenizerRef {
        self.inner.tokenizer()
    }

    /// Generates, calling `on_token` per token; it returns `false` to stop.
    pub fn generate(
        &self,
        request: &GenerateRequest,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<GenerateOutcome, PluginError> {
        let mut sink = FnSink(on_token);
        let sink = TokenSink_TO::from_ptr(RMut::new(&mut sink), abi_stable::sabi_trait::TD_Opaque);
        self.inner.generate(request, sink).into_result()
    }
}
