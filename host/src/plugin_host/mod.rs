//! The plugin host: one registry of every available plugin, built-in or loaded with
//! `--plugin PATH`, and the handles the engine uses whatever a plugin's origin.
//!
//! Built-ins register through `inventory` (see `builtins.rs`); libraries load through
//! `perf_plugin_api::host` with its version and layout checks. Every problem is collected and
//! reported together, each with its path, before any traffic. A plugin is found by its id or
//! any of its aliases.

mod handle;

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use perf_plugin_api::abi::BuiltinLibrary;
use perf_plugin_api::host::Library;
use perf_plugin_api::sdk::{ApiConfig, DatasetConfig, ModelConfig, SinkConfig};
use perf_plugin_api::{PluginError, PluginInfo, PluginKind, TokenizerRef};

pub use handle::{ApiAdapter, DatasetSource, LocalModel, ResponseDecoder, ResultSink};
pub use perf_plugin_api::host::{load_library, LoadError};

/// Where a plugin comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Compiled into `perf`, from the named crate.
    Builtin(&'static str),
    /// Loaded with `--plugin PATH`.
    Library(PathBuf),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Builtin(_) => f.write_str("built-in"),
            Origin::Library(path) => write!(f, "{}", path.display()),
        }
    }
}

/// One available plugin.
#[derive(Clone)]
pub struct PluginEntry {
    /// Its metadata.
    pub info: PluginInfo,
    /// Where it comes from.
    pub origin: Origin,
    /// Its library, with the interface version it was built against.
    pub library: Library,
}

impl PluginEntry {
    /// Whether `name` is this plugin's id or one of its aliases.
    pub fn answers_to(&self, name: &str) -> bool {
        self.info.id.as_str() == name || self.info.aliases.iter().any(|a| a.as_str() == name)
    }
}

/// Every plugin-library problem found while building the registry, reported together.
#[derive(Debug)]
pub struct LoadErrors(pub Vec<LoadProblem>);

/// One problem with one library.
#[derive(Debug, thiserror::Error)]
pub enum LoadProblem {
    /// The library could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Two plugins of the same kind share an id or an alias.
    #[error("plugin {path}: {kind} plugin '{id}' is already provided by {other}; load only one of them (or give one another id)")]
    DuplicateId {
        /// The library that brought the second one.
        path: PathBuf,
        /// The kind.
        kind: PluginKind,
        /// The id.
        id: String,
        /// Where the first one came from.
        other: Origin,
    },
    /// A library that exports nothing.
    #[error("plugin {path}: the library exports no plugins; list them in perf_plugin_api::export_plugins!")]
    Empty {
        /// The library.
        path: PathBuf,
    },
}

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(f, "{n} plugin problem{}:", if n == 1 { "" } else { "s" })?;
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadErrors {}

/// A plugin could not be created with its configuration.
#[derive(Debug, thiserror::Error)]
pub enum InstantiateError {
    /// No plugin of that kind and id.
    #[error("unknown {kind} plugin '{id}'; available: {available} (add more with --plugin PATH; see `perf plugins`)")]
    Unknown {
        /// The kind asked for.
        kind: PluginKind,
        /// The id asked for.
        id: String,
        /// The ids of that kind that exist.
        available: String,
    },
    /// The plugin refused its configuration or failed to start.
    #[error("{kind} plugin '{id}' ({origin}) rejected its configuration: {error}")]
    Rejected {
        /// The kind.
        kind: PluginKind,
        /// The id.
        id: String,
        /// Where it comes from.
        origin: Origin,
        /// The plugin's error.
        error: PluginError,
    },
}

/// All plugins available to this invocation.
pub struct PluginRegistry {
    entries: Vec<PluginEntry>,
}

fn libraries_of(library: Library, origin: &Origin) -> Vec<PluginEntry> {
    (library.root.plugins())()
        .into_iter()
        .map(|info| PluginEntry {
            info,
            origin: origin.clone(),
            library,
        })
        .collect()
}

impl PluginRegistry {
    /// The built-in plugins only.
    pub fn builtins() -> Self {
        crate::builtins::link();
        let mut libs: Vec<&BuiltinLibrary> = inventory::iter::<BuiltinLibrary>().collect();
        libs.sort_by_key(|l| l.crate_name);
        let entries = libs
            .into_iter()
            .flat_map(|l| {
                libraries_of(
                    Library::builtin((l.library)()),
                    &Origin::Builtin(l.crate_name),
                )
            })
            .collect();
        PluginRegistry { entries }
    }

    /// The built-ins plus every library in `paths`. Returns every problem at once.
    pub fn load(paths: &[PathBuf]) -> Result<Self, LoadErrors> {
        let mut registry = Self::builtins();
        let mut problems = Vec::new();
        let mut seen = HashSet::new();
        for path in paths {
            // The same file named twice is one library, not a conflict.
            let key = path.canonicalize().unwrap_or_else(|_| path.clone());
            if !seen.insert(key) {
                continue;
            }
            match load_library(path) {
                Ok(library) => registry.add_library(path, library, &mut problems),
                Err(e) => problems.push(e.into()),
            }
        }
        if problems.is_empty() {
            Ok(registry)
        } else {
            Err(LoadErrors(problems))
        }
    }

    fn add_library(&mut self, path: &Path, library: Library, problems: &mut Vec<LoadProblem>) {
        let origin = Origin::Library(path.to_path_buf());
        let new = libraries_of(library, &origin);
        if new.is_empty() {
            problems.push(LoadProblem::Empty {
                path: path.to_path_buf(),
            });
        }
        for entry in new {
            let names = std::iter::once(&entry.info.id).chain(entry.info.aliases.iter());
            let taken = names
                .filter_map(|n| self.find(entry.info.kind, n).map(|e| (n, e)))
                .next();
            match taken {
                Some((name, existing)) => problems.push(LoadProblem::DuplicateId {
                    path: path.to_path_buf(),
                    kind: entry.info.kind,
                    id: name.to_string(),
                    other: existing.origin.clone(),
                }),
                None => self.entries.push(entry),
            }
        }
    }

    /// Every plugin, built-ins first.
    pub fn entries(&self) -> &[PluginEntry] {
        &self.entries
    }

    /// The plugin of `kind` called `name` (its id or an alias).
    pub fn find(&self, kind: PluginKind, name: &str) -> Option<&PluginEntry> {
        self.entries
            .iter()
            .find(|e| e.info.kind == kind && e.answers_to(name))
    }

    /// Every plugin of `kind`.
    pub fn of_kind(&self, kind: PluginKind) -> impl Iterator<Item = &PluginEntry> {
        self.entries.iter().filter(move |e| e.info.kind == kind)
    }

    fn entry(&self, kind: PluginKind, id: &str) -> Result<&PluginEntry, InstantiateError> {
        self.find(kind, id)
            .ok_or_else(|| InstantiateError::Unknown {
                kind,
                id: id.to_string(),
                available: self.ids(kind).join(", "),
            })
    }

    /// The ids of every plugin of `kind`.
    pub fn ids(&self, kind: PluginKind) -> Vec<String> {
        self.entries
            .iter()
            .filter(|e| e.info.kind == kind)
            .map(|e| e.info.id.to_string())
            .collect()
    }

    fn rejected(entry: &PluginEntry, error: PluginError) -> InstantiateError {
        InstantiateError::Rejected {
            kind: entry.info.kind,
            id: entry.info.id.to_string(),
            origin: entry.origin.clone(),
            error,
        }
    }

    /// Creates the API adapter `id`.
    pub fn api_adapter(
        &self,
        id: &str,
        config: &ApiConfig,
    ) -> Result<ApiAdapter, InstantiateError> {
        let entry = self.entry(PluginKind::ApiAdapter, id)?;
        let json = to_json(config);
        (entry.library.root.new_api_adapter())(entry.info.id.as_rstr(), json.as_str().into())
            .into_result()
            .map(|inner| ApiAdapter::new(inner, entry.clone()))
            .map_err(|e| Self::rejected(entry, e))
    }

    /// Creates the dataset source `id`.
    pub fn dataset_source(
        &self,
        id: &str,
        config: &DatasetConfig,
        tokenizer: Option<TokenizerRef>,
    ) -> Result<DatasetSource, InstantiateError> {
        let entry = self.entry(PluginKind::DatasetSource, id)?;
        let json = to_json(config);
        (entry.library.root.new_dataset_source())(
            entry.info.id.as_rstr(),
            json.as_str().into(),
            tokenizer.into(),
        )
        .into_result()
        .map(|inner| DatasetSource::new(inner, entry.clone()))
        .map_err(|e| Self::rejected(entry, e))
    }

    /// Creates the result sink `id`.
    pub fn result_sink(
        &self,
        id: &str,
        config: &SinkConfig,
    ) -> Result<ResultSink, InstantiateError> {
        let entry = self.entry(PluginKind::ResultSink, id)?;
        let json = to_json(config);
        (entry.library.root.new_result_sink())(entry.info.id.as_rstr(), json.as_str().into())
            .into_result()
            .map(|inner| ResultSink::new(inner, entry.clone()))
            .map_err(|e| Self::rejected(entry, e))
    }

    /// Loads the local model `id` from `model_path`.
    pub fn local_model(
        &self,
        id: &str,
        model_path: &str,
        config: &ModelConfig,
    ) -> Result<LocalModel, InstantiateError> {
        let entry = self.entry(PluginKind::LocalModel, id)?;
        let json = to_json(config);
        (entry.library.root.load_local_model())(
            entry.info.id.as_rstr(),
            model_path.into(),
            json.as_str().into(),
        )
        .into_result()
        .map(|inner| LocalModel::new(inner, entry.clone()))
        .map_err(|e| Self::rejected(entry, e))
    }
}

fn to_json<T: serde::Serialize>(config: &T) -> String {
    // These configuration types hold only strings, numbers and JSON values: serialising them
    // cannot fail.
    serde_json::to_string(config).unwrap_or_else(|_| "{}".to_string())
}
