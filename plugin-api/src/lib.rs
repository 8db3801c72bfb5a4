//! The stable plugin interface of `perf`.
//!
//! `perf` is a load generator for LLM inference services. Everything that differs between
//! services, data and destinations is a plugin: an **API adapter** speaks one service's wire
//! format, a **dataset source** yields prompts, a **result sink** receives measurements, and a
//! **local model** serves `--api local`. The built-in plugins use this same interface; the host
//! cannot tell them apart from a library loaded with `perf --plugin ./libmyplugin.so`.
//!
//! # Writing a plugin
//!
//! 1. Make a `cdylib` crate that depends on `perf-plugin-api` (and `serde_json` if you parse
//!    JSON yourself).
//! 2. Implement one of the SDK traits: [`sdk::ApiAdapterPlugin`] (plus its
//!    [`sdk::ResponseDecoderPlugin`]), [`sdk::DatasetSourcePlugin`], [`sdk::ResultSinkPlugin`]
//!    or [`sdk::LocalModelPlugin`]. Each has an `ID` (the name users type) and a
//!    `DESCRIPTION`, and a constructor that receives the configuration and validates it.
//! 3. Export every plugin of the crate with one macro call at the crate root:
//!
//! ```ignore
//! perf_plugin_api::export_plugins! {
//!     ApiAdapter: MyVendorAdapter,
//!     DatasetSource: MyCsvPrompts,
//! }
//! ```
//!
//! 4. `cargo build --release` and run `perf --plugin target/release/libmy_plugin.so plugins`
//!    to see it listed, then use it by id (`--api my-vendor`).
//!
//! The folder `sdk-examples/` of the perf repository holds three complete examples; each builds
//! on its own when copied out of the repository (point its `perf-plugin-api` dependency at
//! this crate). [`sdk`] says what an adapter must emit.
//!
//! # The codec model of API adapters
//!
//! An adapter never does I/O and never reads a clock. For each request the host calls
//! [`ApiAdapter::build_request`](abi::ApiAdapter) with a [`types::PromptItem`] and gets back an
//! [`types::HttpRequest`]: method, URL (empty = the run's `--url`), headers, body bytes, and the
//! [`types::Framing`] of the response (server-sent events, newline-delimited JSON, or none). The
//! host sends it, timestamps every byte as it arrives, cuts the body into events by the framing,
//! and hands each event to a per-response decoder, which turns it into
//! [`types::ResponseEvent`]s: output (text, optional token count, content/reasoning/tool call),
//! an empty chunk, usage, an in-band error, done. A decoder that fails (an error other than
//! "this event is invalid", or a panic) fails its request as `plugin`, with its message in the
//! results. The host derives every metric (time to first
//! token, inter-token latency, ...) from its own timestamps of those events, so an adapter cannot
//! distort the numbers, and a slow adapter shows up as client overhead, not as server latency.
//!
//! # Threading guarantees
//!
//! - An API adapter is shared by all workers: `build_request` and `new_decoder` (or
//!   `new_decoder_for`) are called concurrently from many threads (`Send + Sync`). A decoder
//!   is used by one request at a time but may move between threads (`Send`).
//! - A dataset source is called from one blocking thread at a time, ahead of the send schedule.
//! - A result sink is called from one dedicated thread, never from the threads that time
//!   requests, so blocking network I/O in a sink cannot slow the benchmark.
//! - A local model's `generate` is called concurrently from several inference threads.
//! - No async runtime, future or host allocation crosses the boundary; every string and vector
//!   is an abi_stable type that frees itself through its own vtable.
//!
//! # Panic policy
//!
//! A panic must not unwind across `extern "C"` (abi_stable aborts the process when it does).
//! The SDK wraps every call in `catch_unwind` and returns an error of kind
//! [`types::ErrorKind::Panic`] instead: a panicking adapter fails its request, a panicking sink
//! reports an error once, and the run goes on. A stateful object that panicked refuses further
//! calls, since its state may be half-updated. Never build a plugin with `panic = "abort"`.
//!
//! # Configuration
//!
//! Configuration crosses the boundary as JSON text and is parsed by the SDK into
//! [`sdk::ApiConfig`], [`sdk::DatasetConfig`], [`sdk::SinkConfig`] or [`sdk::ModelConfig`].
//! Unknown fields are ignored and missing fields take defaults, so adding a field is not a
//! breaking change. Plugin-specific settings arrive in the `options` field. Constructors
//! validate before any traffic; a [`types::PluginError::config`] error stops `perf` with exit
//! code 2 and the plugin's message.
//!
//! # Versioning
//!
//! This crate's version is the interface version, independent of perf's own version. A
//! library records the version it was built against; a host loads it when both have the same
//! `major.minor` (`0.2` while the major is 0) and the host's version is at least the library's.
//! A library built against a newer patch than the host is refused with a message to upgrade
//! perf. On top of that, abi_stable compares the recorded layout of every type reachable from
//! the root module, with the library's layout as the expected one and the host's as the
//! provider, so that the host may be newer in exactly the ways listed below, and in no other.
//!
//! Additive (a patch release, `0.2.x`; older libraries keep loading and working):
//! - a new constant of an open enum ([`PluginKind`], [`ErrorKind`], [`Framing`],
//!   [`HttpMethod`], [`OutputKind`], [`FailureKind`], [`FinishReason`], [`PromptForm`],
//!   [`ResultKind`]): a `u8` whose unknown values every side must tolerate (each type says
//!   what its receiver does with one);
//! - a new variant of a non-exhaustive enum ([`PromptItem`], [`ContentPart`],
//!   [`ResponseEvent`]) that fits its storage: the `_NE` form's `as_enum()` fails for it on a
//!   side that does not know it, which then refuses it (an adapter given an unknown prompt) or
//!   skips it (a host given an unknown event);
//! - a new extension field of a struct that ends in [`Extensions`]: a new [`FieldId`] with a
//!   documented [`FieldValue`] type and typed accessors; an older side never reads it;
//! - a new field of the root module [`PluginLibrary`] after `load_local_model`: a host reads
//!   it as `None` from an older library;
//! - a new method of a trait in [`abi`] after its `#[sabi(last_prefix_field)]` method: a host
//!   calls it only on a library whose interface version has it (`host::Library::has`), and the
//!   SDK gives it a default so plugin sources keep compiling;
//! - new fields in the JSON configuration, new SDK helpers and constants, documentation.
//!
//! Breaking (a new minor version while the major is 0, listed in `CHANGELOG.md`): any other
//! change to a type in [`types`] (a field added to a struct outside its extensions, removed,
//! reordered or retyped; a variant removed or reordered; a storage size changed), to a method
//! of a trait in [`abi`] before its marker, to the first five fields of [`PluginLibrary`], and
//! any change to the meaning of a call (for example what an `Err` from `decode` makes the host
//! do). `tests/fixtures/interface-0.2.0` in the perf repository holds a library built against
//! a frozen copy of 0.2.0; perf's tests load it into the current host on every change.

#![deny(missing_docs)]

pub mod abi;
#[cfg(feature = "host")]
pub mod host;
pub mod sdk;
pub mod types;

pub use abi::{
    ApiAdapterBox, DatasetSourceBox, LocalModelBox, PluginLibrary, PluginLibraryRef,
    ResponseDecoderBox, ResultSinkBox, TokenizerRef, INTERFACE_VERSION,
};
pub use types::*;

/// abi_stable's string, vector and option types, re-exported so plugin crates need not depend
/// on abi_stable themselves.
pub use abi_stable::std_types::{RBox, ROption, RResult, RSlice, RStr, RString, RVec};

/// Items the export macros expand to. Not part of the interface.
#[doc(hidden)]
pub mod __private {
    pub use abi_stable::library::{
        __call_root_module_loader, CheckTypeLayout, LibHeader, RootModuleResult,
    };
    pub use abi_stable::prefix_type::PrefixTypeTrait;
    pub use inventory;

    use crate::abi::{
        ApiAdapterBox, DatasetSourceBox, LocalModelBox, PluginLibrary, PluginLibraryRef,
        ResultSinkBox, TokenizerRef,
    };
    use crate::types::{PluginError, PluginInfo};
    use abi_stable::std_types::{ROption, RResult, RStr, RVec};

    /// The symbol abi_stable looks up in a library; the export macro spells it as a literal,
    /// and a unit test keeps the two in step.
    pub const ROOT_MODULE_SYMBOL: &str = "_1as_0lib_1header_0root_bmodule_bloader";

    /// What the pretend next interface version's additions return (`next-interface-check`).
    pub const NEXT_INTERFACE_CHECK: u64 = 0x2_0001;

    #[cfg(feature = "next-interface-check")]
    extern "C" fn next_interface_check() -> u64 {
        NEXT_INTERFACE_CHECK
    }

    /// The root module of the factories the export macros define. Built here rather than in
    /// the macro, so the fields follow this crate's features, not the plugin crate's.
    #[allow(clippy::type_complexity)]
    pub fn root_module(
        plugins: extern "C" fn() -> RVec<PluginInfo>,
        new_api_adapter: extern "C" fn(RStr<'_>, RStr<'_>) -> RResult<ApiAdapterBox, PluginError>,
        new_dataset_source: extern "C" fn(
            RStr<'_>,
            RStr<'_>,
            ROption<TokenizerRef>,
        ) -> RResult<DatasetSourceBox, PluginError>,
        new_result_sink: extern "C" fn(RStr<'_>, RStr<'_>) -> RResult<ResultSinkBox, PluginError>,
        load_local_model: extern "C" fn(
            RStr<'_>,
            RStr<'_>,
            RStr<'_>,
        ) -> RResult<LocalModelBox, PluginError>,
    ) -> PluginLibraryRef {
        PrefixTypeTrait::leak_into_prefix(PluginLibrary {
            plugins,
            new_api_adapter,
            new_dataset_source,
            new_result_sink,
            load_local_model,
            #[cfg(feature = "next-interface-check")]
            next_interface_check,
        })
    }
}

/// Exports the listed plugins as this `cdylib`'s root module.
///
/// List each plugin type with its kind, in any order; a library may export several plugins of
/// each kind:
///
/// ```ignore
/// perf_plugin_api::export_plugins! {
///     ApiAdapter: VendorAdapter,
///     DatasetSource: CsvPrompts,
///     ResultSink: JsonlRecords,
///     LocalModel: MyBackend,
/// }
/// ```
///
/// It also defines `pub fn perf_plugin_library() -> PluginLibraryRef`, which the crate's own
/// tests can call to exercise the plugins through the FFI objects without loading the library.
#[macro_export]
macro_rules! export_plugins {
    ($($kind:ident : $ty:ty),* $(,)?) => {
        $crate::__plugin_library!($($kind: $ty),*);

        #[doc(hidden)]
        #[export_name = "_1as_0lib_1header_0root_bmodule_bloader"]
        pub static PERF_PLUGIN_LIBRARY_HEADER: $crate::__private::LibHeader = {
            extern "C" fn erased_root_module() -> $crate::__private::RootModuleResult {
                $crate::__private::__call_root_module_loader(perf_plugin_library)
            }
            // SAFETY: the constructor returns the root module type this header names, exactly
            // as abi_stable's `#[export_root_module]` would generate it.
            unsafe {
                $crate::__private::LibHeader::from_constructor::<$crate::abi::PluginLibraryRef>(
                    erased_root_module,
                    $crate::__private::CheckTypeLayout::Yes,
                )
            }
        };
    };
}

/// Registers the listed plugins as built-ins of the `perf` binary (through `inventory`). For the
/// crates under `plugins/` only: a `cdylib` uses [`export_plugins!`].
#[macro_export]
macro_rules! builtin_plugins {
    ($($kind:ident : $ty:ty),* $(,)?) => {
        $crate::__plugin_library!($($kind: $ty),*);

        $crate::__private::inventory::submit! {
            $crate::abi::BuiltinLibrary {
                crate_name: env!("CARGO_PKG_NAME"),
                library: perf_plugin_library,
            }
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __register_plugin {
    ($registry:ident, ApiAdapter, $ty:ty) => {
        $registry.api_adapter::<$ty>()
    };
    ($registry:ident, DatasetSource, $ty:ty) => {
        $registry.dataset_source::<$ty>()
    };
    ($registry:ident, ResultSink, $ty:ty) => {
        $registry.result_sink::<$ty>()
    };
    ($registry:ident, LocalModel, $ty:ty) => {
        $registry.local_model::<$ty>()
    };
    ($registry:ident, $other:ident, $ty:ty) => {
        compile_error!(concat!(
            "unknown plugin kind `",
            stringify!($other),
            "`: use ApiAdapter, DatasetSource, ResultSink or LocalModel"
        ))
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __plugin_library {
    ($($kind:ident : $ty:ty),* $(,)?) => {
        fn perf_plugin_registry() -> &'static $crate::sdk::Registry {
            static REGISTRY: ::std::sync::OnceLock<$crate::sdk::Registry> =
                ::std::sync::OnceLock::new();
            REGISTRY.get_or_init(|| {
                #[allow(unused_mut)]
                let mut registry = $crate::sdk::Registry::new(env!("CARGO_PKG_VERSION"));
                $( $crate::__register_plugin!(registry, $kind, $ty); )*
                registry
            })
        }

        extern "C" fn perf_plugin_infos() -> $crate::RVec<$crate::PluginInfo> {
            match $crate::sdk::guard("plugins", || Ok(perf_plugin_registry().infos())) {
                $crate::RResult::ROk(infos) => infos,
                $crate::RResult::RErr(_) => $crate::RVec::new(),
            }
        }

        extern "C" fn perf_plugin_new_api_adapter(
            id: $crate::RStr<'_>,
            config: $crate::RStr<'_>,
        ) -> $crate::RResult<$crate::ApiAdapterBox, $crate::PluginError> {
            perf_plugin_registry().new_api_adapter(id, config)
        }

        extern "C" fn perf_plugin_new_dataset_source(
            id: $crate::RStr<'_>,
            config: $crate::RStr<'_>,
            tokenizer: $crate::ROption<$crate::TokenizerRef>,
        ) -> $crate::RResult<$crate::DatasetSourceBox, $crate::PluginError> {
            perf_plugin_registry().new_dataset_source(id, config, tokenizer)
        }

        extern "C" fn perf_plugin_new_result_sink(
            id: $crate::RStr<'_>,
            config: $crate::RStr<'_>,
        ) -> $crate::RResult<$crate::ResultSinkBox, $crate::PluginError> {
            perf_plugin_registry().new_result_sink(id, config)
        }

        extern "C" fn perf_plugin_load_local_model(
            id: $crate::RStr<'_>,
            model_path: $crate::RStr<'_>,
            config: $crate::RStr<'_>,
        ) -> $crate::RResult<$crate::LocalModelBox, $crate::PluginError> {
            perf_plugin_registry().load_local_model(id, model_path, config)
        }

        /// The root module of this crate's plugins.
        pub fn perf_plugin_library() -> $crate::PluginLibraryRef {
            static LIBRARY: ::std::sync::OnceLock<$crate::PluginLibraryRef> =
                ::std::sync::OnceLock::new();
            *LIBRARY.get_or_init(|| {
                $crate::__private::root_module(
                    perf_plugin_infos,
                    perf_plugin_new_api_adapter,
                    perf_plugin_new_dataset_source,
                    perf_plugin_new_result_sink,
                    perf_plugin_load_local_model,
                )
            })
        }
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn export_macro_uses_abi_stables_symbol_name() {
        assert_eq!(
            abi_stable::library::ROOT_MODULE_LOADER_NAME,
            super::__private::ROOT_MODULE_SYMBOL
        );
    }
}
