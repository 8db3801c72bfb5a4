//! The shims between the SDK traits and the FFI traits, and the per-library registry that the
//! export macros build.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

use abi_stable::{
    sabi_trait::TD_Opaque,
    sabi_types::RMut,
    std_types::{RArc, ROption, RResult, RSlice, RStr, RString, RVec},
};

use super::config::parse;
use super::{
    ApiAdapterPlugin, DatasetSourcePlugin, LocalModelPlugin, ResponseDecoderPlugin,
    ResultSinkPlugin, TokenizerPlugin,
};
use crate::abi::{
    ApiAdapter, ApiAdapterBox, ApiAdapter_TO, DatasetSource, DatasetSourceBox, DatasetSource_TO,
    LocalModel, LocalModelBox, LocalModel_TO, ResponseDecoder, ResponseDecoderBox,
    ResponseDecoder_TO, ResultSink, ResultSinkBox, ResultSink_TO, TokenSink_TO, Tokenizer,
    TokenizerRef, Tokenizer_TO,
};
use crate::types::{
    ChatMessage, DatasetItem, ErrorKind, Extensions, GenerateOutcome, GenerateRequest, HttpRequest,
    PluginError, PluginInfo, PluginKind, PromptForm, PromptItem_NE, RequestContext, RequestRecord,
    ResponseEvent, ResponseEvent_NE, ResultKind, RunInfo, RunSnapshot, RunSummary, SessionInfo,
};

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_string()
    }
}

thread_local! {
    /// Nesting depth of `guard` on this thread, and where the last panic inside it happened.
    static GUARDED: Cell<u32> = const { Cell::new(0) };
    static LAST_PANIC_AT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// A panic inside `guard` becomes an error that the host reports (once per distinct message),
/// so the panic hook stays quiet for it and only notes where it happened; every other panic
/// goes to the hook that was there before.
fn install_quiet_hook() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if GUARDED.with(Cell::get) > 0 {
                let at = info
                    .location()
                    .map(|l| format!("{}:{}", l.file(), l.line()));
                LAST_PANIC_AT.with(|p| *p.borrow_mut() = at);
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs `f` for a call that cannot return an error; `None` when it panicked.
fn quietly<T>(f: impl FnOnce() -> T) -> Option<T> {
    match guard("", || Ok(f())) {
        RResult::ROk(v) => Some(v),
        RResult::RErr(_) => None,
    }
}

/// Runs `f`, turning a panic into a [`PluginError`] of kind [`ErrorKind::Panic`] whose message
/// says where it happened. Every call across the boundary goes through this: abi_stable aborts
/// the process when a panic unwinds through `extern "C"`.
pub fn guard<T>(what: &str, f: impl FnOnce() -> Result<T, PluginError>) -> RResult<T, PluginError> {
    install_quiet_hook();
    GUARDED.with(|g| g.set(g.get() + 1));
    let result = catch_unwind(AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(g.get() - 1));
    match result {
        Ok(result) => result.into(),
        Err(payload) => {
            let at = LAST_PANIC_AT
                .with(|p| p.borrow_mut().take())
                .map(|at| format!(" (at {at})"))
                .unwrap_or_default();
            RResult::RErr(PluginError::new(
                ErrorKind::Panic,
                format!(
                    "plugin panicked in {what}: {}{at}",
                    panic_message(payload.as_ref())
                ),
            ))
        }
    }
}

/// A stateful object that refuses calls once a call has panicked.
struct Poisonable<T> {
    inner: T,
    poisoned: bool,
}

impl<T> Poisonable<T> {
    fn new(inner: T) -> Self {
        Poisonable {
            inner,
            poisoned: false,
        }
    }

    fn call<R>(
        &mut self,
        what: &str,
        f: impl FnOnce(&mut T) -> Result<R, PluginError>,
    ) -> RResult<R, PluginError> {
        if self.poisoned {
            return RResult::RErr(PluginError::new(
                ErrorKind::Panic,
                format!("{what} refused: this plugin object panicked earlier"),
            ));
        }
        let inner = &mut self.inner;
        let result = guard(what, || f(inner));
        if matches!(&result, RResult::RErr(e) if e.kind == ErrorKind::Panic) {
            self.poisoned = true;
        }
        result
    }
}

struct AdapterShim<T>(T);

impl<T: ApiAdapterPlugin> ApiAdapter for AdapterShim<T> {
    fn build_request(
        &self,
        item: &PromptItem_NE,
        ctx: &RequestContext,
    ) -> RResult<HttpRequest, PluginError> {
        guard("build_request", || match item.as_enum() {
            Ok(item) => self.0.build_request(item, ctx),
            Err(_) => Err(PluginError::unknown_value("a prompt")),
        })
    }

    fn new_decoder(&self) -> RResult<ResponseDecoderBox, PluginError> {
        guard("new_decoder", || Ok(decoder_box(self.0.new_decoder())))
    }

    fn new_decoder_for(
        &self,
        request_body: RSlice<'_, u8>,
    ) -> RResult<ResponseDecoderBox, PluginError> {
        // Named as the host names the step, whichever of the two the plugin implements.
        guard("new_decoder", || {
            Ok(decoder_box(self.0.new_decoder_for(request_body.as_slice())))
        })
    }
}

fn decoder_box<D: ResponseDecoderPlugin>(decoder: D) -> ResponseDecoderBox {
    ResponseDecoder_TO::from_value(
        DecoderShim {
            decoder: Poisonable::new(decoder),
            scratch: Vec::new(),
        },
        TD_Opaque,
    )
}

/// A decoder behind the FFI: the plugin writes plain events into `scratch`, which the shim
/// hands over as the non-exhaustive form (the buffer is reused, so this allocates nothing
/// per event once warm).
struct DecoderShim<D> {
    decoder: Poisonable<D>,
    scratch: Vec<ResponseEvent>,
}

fn hand_over(scratch: &mut Vec<ResponseEvent>, out: &mut RVec<ResponseEvent_NE>) {
    out.extend(scratch.drain(..).map(ResponseEvent_NE::new));
}

impl<D: ResponseDecoderPlugin> ResponseDecoder for DecoderShim<D> {
    fn decode(
        &mut self,
        event: RSlice<'_, u8>,
        out: &mut RVec<ResponseEvent_NE>,
    ) -> RResult<(), PluginError> {
        let scratch = &mut self.scratch;
        scratch.clear();
        let result = self
            .decoder
            .call("decode", |d| d.decode(event.as_slice(), scratch));
        hand_over(scratch, out);
        result
    }

    fn finish(&mut self, out: &mut RVec<ResponseEvent_NE>) -> RResult<(), PluginError> {
        let scratch = &mut self.scratch;
        scratch.clear();
        let result = self.decoder.call("finish", |d| d.finish(scratch));
        hand_over(scratch, out);
        result
    }
}

struct DatasetShim<T>(Poisonable<T>);

impl<T: DatasetSourcePlugin> DatasetSource for DatasetShim<T> {
    fn next_item(&mut self) -> RResult<ROption<DatasetItem>, PluginError> {
        self.0
            .call("next_item", |d| d.next_item().map(ROption::from))
    }
}

struct SinkShim<T>(Poisonable<T>);

impl<T: ResultSinkPlugin> ResultSink for SinkShim<T> {
    fn begin(&mut self, session: &SessionInfo) -> RResult<(), PluginError> {
        self.0.call("begin", |s| s.begin(session))
    }
    fn run_start(&mut self, run: &RunInfo) -> RResult<(), PluginError> {
        self.0.call("run_start", |s| s.run_start(run))
    }
    fn record(&mut self, record: &RequestRecord) -> RResult<(), PluginError> {
        self.0.call("record", |s| s.record(record))
    }
    fn snapshot(&mut self, snapshot: &RunSnapshot) -> RResult<(), PluginError> {
        self.0.call("snapshot", |s| s.snapshot(snapshot))
    }
    fn run_end(&mut self, summary: &RunSummary) -> RResult<(), PluginError> {
        self.0.call("run_end", |s| s.run_end(summary))
    }
    fn flush(&mut self) -> RResult<(), PluginError> {
        self.0.call("flush", |s| s.flush())
    }
    fn close(&mut self) -> RResult<(), PluginError> {
        self.0.call("close", |s| s.close())
    }
    #[cfg(feature = "next-interface-check")]
    fn next_interface_check(&self) -> u64 {
        crate::__private::NEXT_INTERFACE_CHECK
    }
}

struct TokenizerShim<T>(T);

impl<T: TokenizerPlugin> Tokenizer for TokenizerShim<T> {
    fn encode(&self, text: RStr<'_>, add_special_tokens: bool) -> RResult<RVec<u32>, PluginError> {
        guard("encode", || {
            self.0
                .encode(text.as_str(), add_special_tokens)
                .map(RVec::from)
        })
    }
    fn decode(
        &self,
        ids: RSlice<'_, u32>,
        skip_special_tokens: bool,
    ) -> RResult<RString, PluginError> {
        guard("decode", || {
            self.0
                .decode(ids.as_slice(), skip_special_tokens)
                .map(RString::from)
        })
    }
    fn vocab_size(&self) -> u32 {
        quietly(|| self.0.vocab_size()).unwrap_or(0)
    }
    fn id_to_token(&self, id: u32) -> ROption<RString> {
        quietly(|| self.0.id_to_token(id))
            .flatten()
            .map(RString::from)
            .into()
    }
    fn is_special(&self, id: u32) -> bool {
        quietly(|| self.0.is_special(id)).unwrap_or(false)
    }
    fn apply_chat_template(
        &self,
        messages: RSlice<'_, ChatMessage>,
        add_generation_prompt: bool,
    ) -> RResult<ROption<RString>, PluginError> {
        guard("apply_chat_template", || {
            self.0
                .apply_chat_template(messages.as_slice(), add_generation_prompt)
                .map(|t| t.map(RString::from).into())
        })
    }
}

/// Wraps a tokenizer implementation into the shared FFI object that crosses the boundary.
pub fn tokenizer_ref<T: TokenizerPlugin>(tokenizer: T) -> TokenizerRef {
    Tokenizer_TO::from_ptr(RArc::new(TokenizerShim(tokenizer)), TD_Opaque)
}

struct ModelShim<T>(T);

impl<T: LocalModelPlugin> LocalModel for ModelShim<T> {
    fn name(&self) -> RString {
        quietly(|| self.0.name())
            .unwrap_or_else(|| "unnamed-model".to_string())
            .into()
    }
    fn tokenizer(&self) -> TokenizerRef {
        self.0.tokenizer()
    }
    fn generate(
        &self,
        request: &GenerateRequest,
        mut sink: TokenSink_TO<'_, RMut<'_, ()>>,
    ) -> RResult<GenerateOutcome, PluginError> {
        guard("generate", || {
            self.0.generate(request, &mut |id| sink.token(id))
        })
    }
}

type AdapterFactory = fn(&str) -> Result<ApiAdapterBox, PluginError>;
type DatasetFactory = fn(&str, Option<TokenizerRef>) -> Result<DatasetSourceBox, PluginError>;
type SinkFactory = fn(&str) -> Result<ResultSinkBox, PluginError>;
type ModelFactory = fn(&str, &str) -> Result<LocalModelBox, PluginError>;

/// The plugins of one library, built by the export macros. Not for direct use.
pub struct Registry {
    version: &'static str,
    infos: Vec<PluginInfo>,
    adapters: Vec<(&'static str, AdapterFactory)>,
    datasets: Vec<(&'static str, DatasetFactory)>,
    sinks: Vec<(&'static str, SinkFactory)>,
    models: Vec<(&'static str, ModelFactory)>,
}

fn unknown(kind: PluginKind, id: &str) -> PluginError {
    PluginError::new(
        ErrorKind::UnknownPlugin,
        format!("this library has no {kind} plugin '{id}'"),
    )
}

fn strings(list: &[&str]) -> RVec<RString> {
    list.iter().map(|s| RString::from(*s)).collect()
}

fn options(info: &mut PluginInfo, keys: Option<&[&str]>, example: &str) {
    info.option_keys = keys.map(strings).into();
    info.options_example = example.into();
}

fn find<F: Copy>(list: &[(&'static str, F)], id: &str) -> Option<F> {
    list.iter().find(|(i, _)| *i == id).map(|(_, f)| *f)
}

impl Registry {
    /// An empty registry for a library of crate version `version`.
    pub fn new(version: &'static str) -> Self {
        Registry {
            version,
            infos: Vec::new(),
            adapters: Vec::new(),
            datasets: Vec::new(),
            sinks: Vec::new(),
            models: Vec::new(),
        }
    }

    fn info(&mut self, id: &str, kind: PluginKind, description: &str) -> &mut PluginInfo {
        self.infos.push(PluginInfo {
            id: id.into(),
            kind,
            version: self.version.into(),
            description: description.into(),
            aliases: RVec::new(),
            endpoints: RVec::new(),
            replaces_endpoints: RVec::new(),
            prompt_form: PromptForm::ChatAtFirstEndpoint,
            results: ResultKind::Generation,
            extra_args_keys: RVec::new(),
            option_keys: ROption::RNone,
            options_example: RString::new(),
            ext: Extensions::new(),
        });
        let last = self.infos.len() - 1;
        &mut self.infos[last]
    }

    /// Registers an API adapter.
    pub fn api_adapter<T: ApiAdapterPlugin>(&mut self) {
        let info = self.info(T::ID, PluginKind::ApiAdapter, T::DESCRIPTION);
        info.aliases = strings(T::ALIASES);
        info.endpoints = strings(T::ENDPOINTS);
        info.replaces_endpoints = strings(T::REPLACES_ENDPOINTS);
        info.prompt_form = T::PROMPT_FORM;
        info.results = T::RESULTS;
        options(info, T::OPTION_KEYS, T::OPTIONS_EXAMPLE);
        self.adapters.push((T::ID, |config| {
            let config = parse(T::ID, config)?;
            let adapter = T::new(&config)?;
            Ok(ApiAdapter_TO::from_value(AdapterShim(adapter), TD_Opaque))
        }));
    }

    /// Registers a dataset source.
    pub fn dataset_source<T: DatasetSourcePlugin>(&mut self) {
        let info = self.info(T::ID, PluginKind::DatasetSource, T::DESCRIPTION);
        info.aliases = strings(T::ALIASES);
        info.extra_args_keys = strings(T::EXTRA_ARGS_KEYS);
        if T::REPLAYS_SCHEDULE {
            info.ext.set(
                crate::FieldId::REPLAYS_SCHEDULE,
                crate::FieldValue::Bool(true),
            );
        }
        if T::SPEED_BENCHMARK {
            info.ext.set(
                crate::FieldId::SPEED_BENCHMARK,
                crate::FieldValue::Bool(true),
            );
        }
        options(info, T::OPTION_KEYS, T::OPTIONS_EXAMPLE);
        self.datasets.push((T::ID, |config, tokenizer| {
            let config = parse(T::ID, config)?;
            let source = T::new(&config, tokenizer)?;
            Ok(DatasetSource_TO::from_value(
                DatasetShim(Poisonable::new(source)),
                TD_Opaque,
            ))
        }));
    }

    /// Registers a result sink.
    pub fn result_sink<T: ResultSinkPlugin>(&mut self) {
        let info = self.info(T::ID, PluginKind::ResultSink, T::DESCRIPTION);
        options(info, T::OPTION_KEYS, T::OPTIONS_EXAMPLE);
        self.sinks.push((T::ID, |config| {
            let config = parse(T::ID, config)?;
            let sink = T::new(&config)?;
            Ok(ResultSink_TO::from_value(
                SinkShim(Poisonable::new(sink)),
                TD_Opaque,
            ))
        }));
    }

    /// Registers a local model backend.
    pub fn local_model<T: LocalModelPlugin>(&mut self) {
        let info = self.info(T::ID, PluginKind::LocalModel, T::DESCRIPTION);
        options(info, T::OPTION_KEYS, T::OPTIONS_EXAMPLE);
        self.models.push((T::ID, |path, config| {
            let config = parse(T::ID, config)?;
            let model = T::load(path, &config)?;
            Ok(LocalModel_TO::from_value(ModelShim(model), TD_Opaque))
        }));
    }

    /// The metadata of every registered plugin.
    pub fn infos(&self) -> RVec<PluginInfo> {
        self.infos.clone().into()
    }

    /// Creates an API adapter (the body of the exported factory).
    pub fn new_api_adapter(
        &self,
        id: RStr<'_>,
        config: RStr<'_>,
    ) -> RResult<ApiAdapterBox, PluginError> {
        guard("new_api_adapter", || {
            let f = find(&self.adapters, id.as_str())
                .ok_or_else(|| unknown(PluginKind::ApiAdapter, id.as_str()))?;
            f(config.as_str())
        })
    }

    /// Creates a dataset source (the body of the exported factory).
    pub fn new_dataset_source(
        &self,
        id: RStr<'_>,
        config: RStr<'_>,
        tokenizer: ROption<TokenizerRef>,
    ) -> RResult<DatasetSourceBox, PluginError> {
        guard("new_dataset_source", || {
            let f = find(&self.datasets, id.as_str())
                .ok_or_else(|| unknown(PluginKind::DatasetSource, id.as_str()))?;
            f(config.as_str(), tokenizer.into_option())
        })
    }

    /// Creates a result sink (the body of the exported factory).
    pub fn new_result_sink(
        &self,
        id: RStr<'_>,
        config: RStr<'_>,
    ) -> RResult<ResultSinkBox, PluginError> {
        guard("new_result_sink", || {
            let f = find(&self.sinks, id.as_str())
                .ok_or_else(|| unknown(PluginKind::ResultSink, id.as_str()))?;
            f(config.as_str())
        })
    }

    /// Loads a local model (the body of the exported factory).
    pub fn load_local_model(
        &self,
        id: RStr<'_>,
        path: RStr<'_>,
        config: RStr<'_>,
    ) -> RResult<LocalModelBox, PluginError> {
        guard("load_local_model", || {
            let f = find(&self.models, id.as_str())
                .ok_or_else(|| unknown(PluginKind::LocalModel, id.as_str()))?;
            f(path.as_str(), config.as_str())
        })
    }
}
