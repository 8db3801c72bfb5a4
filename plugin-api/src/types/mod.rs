//! The FFI-safe data that crosses the plugin boundary.
//!
//! Every type here derives [`StableAbi`], so its layout is recorded in the library header and
//! checked when a plugin is loaded. Strings, vectors and options are abi_stable's `RString`,
//! `RVec` and `ROption`; they dereference to `str` and slices and behave like `Option`, so
//! plugin code reads them like the std types.
//!
//! Each type is built to grow without breaking libraries built against an older 0.2 (the crate
//! documentation, "Versioning", has the rules):
//! - field-less enums are *open enums*: a `u8` with named constants, so a new constant is a new value, never a new layout;
//! - enums with data ([`PromptItem`], [`ContentPart`], [`ResponseEvent`]) are abi_stable
//!   non-exhaustive enums, crossing as their `_NE` wrappers: a receiver that does not know a
//!   variant gets an error from `as_enum()` and skips or refuses it;
//! - structs that may gain fields end in an [`Extensions`] list of typed, numbered fields.

/// Declares an open enum: a transparent `u8` with one associated constant per known value.
///
/// abi_stable's way to let a field-less enum gain values: the layout is a `u8` forever, so a
/// library built against an older interface version and a newer host exchange values freely.
/// Code that matches on one needs a `_` arm for values a later version adds; `name()` is `None`
/// for them.
macro_rules! open_enum {
    (
        $(#[$meta:meta])*
        pub struct $name:ident;
        $( $(#[$vmeta:meta])* $variant:ident = $value:literal => $text:literal, )*
    ) => {
        $(#[$meta])*
        #[repr(transparent)]
        #[derive(abi_stable::StableAbi, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub u8);

        #[allow(non_upper_case_globals)]
        impl $name {
            $( $(#[$vmeta])* pub const $variant: $name = $name($value); )*

            /// Every value this interface version knows, in order.
            pub const KNOWN: &'static [$name] = &[$($name::$variant),*];

            /// The stable lower-case name, or `None` for a value that a later interface version
            /// added.
            pub fn name(self) -> Option<&'static str> {
                match self {
                    $( $name::$variant => Some($text), )*
                    _ => None,
                }
            }

            /// Whether this interface version knows the value.
            pub fn is_known(self) -> bool {
                self.name().is_some()
            }

            /// The value called `text`.
            pub fn from_name(text: &str) -> Option<$name> {
                Self::KNOWN.iter().copied().find(|v| v.name() == Some(text))
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                match self.name() {
                    Some(n) => write!(f, "{}::{}", stringify!($name), n),
                    None => write!(f, "{}({})", stringify!($name), self.0),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                match self.name() {
                    Some(n) => f.write_str(n),
                    None => write!(f, "unknown-{}", self.0),
                }
            }
        }
    };
}

mod ext;
mod model;
mod prompt;
mod record;
mod request;

pub use ext::{Extension, Extensions, FieldId, FieldValue};
pub use model::{FinishReason, GenerateOutcome, GenerateRequest, SamplingParams};
pub use prompt::{
    ChatMessage, ContentPart, ContentPart_NE, DatasetItem, PromptItem, PromptItem_NE,
};
pub use record::{
    FailureKind, NamedValue, PercentileRow, RequestRecord, RequestTimes, RunInfo, RunSnapshot,
    RunSummary, SessionInfo,
};
pub use request::{
    Framing, Header, HttpMethod, HttpRequest, OutputKind, RequestContext, ResponseEvent,
    ResponseEvent_NE, Usage,
};

use abi_stable::{
    std_types::{ROption, RString, RVec},
    StableAbi,
};

open_enum! {
    /// What a plugin does. One library may export plugins of several kinds; a host skips a
    /// plugin whose kind it does not know.
    pub struct PluginKind;
    /// Builds HTTP requests and decodes responses for one service API (`--api`).
    ApiAdapter = 0 => "api",
    /// Yields prompts (`--dataset`).
    DatasetSource = 1 => "dataset",
    /// Receives records and summaries (OpenTelemetry, wandb, a file, ...).
    ResultSink = 2 => "sink",
    /// Serves a model for `--api local`.
    LocalModel = 3 => "model",
}

impl PluginKind {
    /// The name used on the command line and in `perf plugins` (`unknown` for a kind a later
    /// interface version added).
    pub fn as_str(self) -> &'static str {
        self.name().unwrap_or("unknown")
    }
}

open_enum! {
    /// How an API adapter's prompts go out by default, when neither `--apply-chat-template`
    /// nor `--no-apply-chat-template` is given.
    pub struct PromptForm;
    /// As chat messages when the `--url` path ends in the adapter's first endpoint (OpenAI:
    /// `chat/completions`), else as plain text. The default.
    ChatAtFirstEndpoint = 0 => "chat-at-first-endpoint",
    /// Always as chat messages (the server applies the chat template).
    Chat = 1 => "chat",
    /// Always as plain text.
    Text = 2 => "text",
}

open_enum! {
    /// What an API's responses are, which decides the summary and percentile columns.
    pub struct ResultKind;
    /// Generated output: TTFT, TPOT, ITL and output throughput. The default.
    Generation = 0 => "generation",
    /// No generated text (embeddings, rerank): latency, input tokens and input throughput.
    InputOnly = 1 => "input-only",
    /// Decisions (`systemone`, `autotrust`): input-only, each answer one decision; the
    /// summary lists TTFT, TPOT and ITL as not applicable and the rows hold 0 for them, as
    /// evalscope reports decision services. Since 0.2.3; a 0.2.2 or older perf reads an
    /// unknown kind as `Generation`.
    Decision = 2 => "decision",
}

/// Metadata of one plugin: what `perf plugins` lists and what the host needs to know to plan a
/// run with it. The built-in plugins declare theirs exactly as outside plugins do (the SDK
/// traits' associated constants).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct PluginInfo {
    /// The name users type (`--api ID`, `--dataset ID`, `--sink ID`). Unique per kind.
    pub id: RString,
    /// What the plugin does.
    pub kind: PluginKind,
    /// The plugin's own version (usually its crate version), for display only.
    pub version: RString,
    /// One line describing the plugin.
    pub description: RString,
    /// Other names that select this plugin (`--api embedding` for `openai_embedding`).
    pub aliases: RVec<RString>,
    /// API adapters: the endpoint paths this API serves (`chat/completions`, `completions`).
    /// A `--url` whose path ends in none of any adapter's endpoints (`http://host/v1`) gets the
    /// first one appended. Empty: the `--url` is used as given.
    pub endpoints: RVec<RString>,
    /// API adapters: other APIs' endpoints that this API replaces with its first endpoint when
    /// the `--url` ends in one (the Responses API given `.../chat/completions`).
    pub replaces_endpoints: RVec<RString>,
    /// API adapters: how prompts go out by default.
    pub prompt_form: PromptForm,
    /// API adapters: what the responses are.
    pub results: ResultKind,
    /// Dataset sources: keys that evalscope reads from `--extra-args` for this dataset; the host
    /// moves them from the request body into the dataset's options (`--dataset-args` wins).
    pub extra_args_keys: RVec<RString>,
    /// The keys the plugin's options accept (`--api-args`, `--dataset-args`, `--sink ID=JSON`),
    /// or `RNone` when the plugin does not declare them. An empty list: it takes no options,
    /// and the host refuses any.
    pub option_keys: ROption<RVec<RString>>,
    /// An example of the options as JSON text, shown by `perf plugins --verbose` (empty: none).
    pub options_example: RString,
    /// Fields added by later interface versions.
    pub ext: Extensions,
}

impl PluginInfo {
    /// Dataset sources: whether the items carry their own send times
    /// ([`FieldId::REPLAYS_SCHEDULE`]).
    pub fn replays_schedule(&self) -> bool {
        self.ext.bool(FieldId::REPLAYS_SCHEDULE).unwrap_or(false)
    }

    /// Dataset sources: a speed benchmark ([`FieldId::SPEED_BENCHMARK`]).
    pub fn speed_benchmark(&self) -> bool {
        self.ext.bool(FieldId::SPEED_BENCHMARK).unwrap_or(false)
    }
}

open_enum! {
    /// Why a plugin call failed, which decides how the host reacts. A host treats a kind it
    /// does not know as [`ErrorKind::Other`].
    pub struct ErrorKind;
    /// The configuration (JSON options, request parameters) was rejected. Reported before any
    /// traffic, with exit code 2.
    Config = 0 => "config",
    /// The input of a call could not be handled: an unsupported prompt, or a response event
    /// that is not valid for this API. A streamed event that fails to decode is counted as a
    /// malformed chunk and skipped; a whole (non-streamed) body that fails fails the request
    /// as `decode`.
    Invalid = 1 => "invalid",
    /// Reading or writing a file or a network resource failed.
    Io = 2 => "io",
    /// The plugin panicked; the SDK caught the panic and turned it into this error. The
    /// request fails as `plugin`, and a stateful object that panicked is not called again.
    Panic = 3 => "panic",
    /// No plugin with the requested id exists in this library.
    UnknownPlugin = 4 => "unknown-plugin",
    /// Anything else. In `decode` it fails the request as `plugin`.
    Other = 5 => "other",
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
    /// A value of an open enum or a non-exhaustive enum that this interface version does not
    /// know: the other side was built against a newer one.
    pub fn unknown_value(what: &str) -> Self {
        Self::invalid(format!(
            "{what} of a newer interface than this plugin's perf-plugin-api {}: rebuild the plugin against a newer perf-plugin-api",
            crate::abi::INTERFACE_VERSION
        ))
    }
}

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PluginError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_enums_name_known_values_and_keep_unknown_ones() {
        assert_eq!(PluginKind::DatasetSource.name(), Some("dataset"));
        assert_eq!(PluginKind::from_name("sink"), Some(PluginKind::ResultSink));
        let later = PluginKind(200);
        assert_eq!(later.name(), None);
        assert_eq!(later.as_str(), "unknown");
        assert_eq!(format!("{later:?}"), "PluginKind(200)");
        assert_eq!(later.to_string(), "unknown-200");
        assert!(ErrorKind::KNOWN.iter().all(|k| k.is_known()));
    }
}
