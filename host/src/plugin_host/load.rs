//! Loading one `--plugin PATH` library, with a precise error for each way it can fail.

use std::path::{Path, PathBuf};

use abi_stable::library::{lib_header_from_path, LibraryError, RootModule};
use abi_stable::sabi_types::{VersionNumber, VersionStrings};
use perf_plugin_api::abi::{INTERFACE_VERSION, ROOT_MODULE_NAME};
use perf_plugin_api::PluginLibraryRef;

/// Why a plugin library could not be loaded. Each message names the path and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The path does not exist.
    #[error("plugin {path}: no such file; check the path (relative paths start at the current directory)")]
    Missing {
        /// The path given.
        path: PathBuf,
    },
    /// The file exists but the dynamic loader refused it.
    #[error("plugin {path}: not a loadable dynamic library ({reason}); pass the .so/.dll/.dylib file of a crate built with crate-type = [\"cdylib\"]")]
    NotALibrary {
        /// The path given.
        path: PathBuf,
        /// The loader's message.
        reason: String,
    },
    /// A library without an abi_stable root module, or with another program's.
    #[error("plugin {path}: not a perf plugin ({reason}); a plugin exports its plugins with perf_plugin_api::export_plugins!")]
    NotAPlugin {
        /// The path given.
        path: PathBuf,
        /// What was found instead.
        reason: String,
    },
    /// Built against another interface version.
    #[error("plugin {path}: built against perf-plugin-api {found}, but this perf implements interface {expected}; rebuild the plugin against perf-plugin-api {expected_req}")]
    IncompatibleVersion {
        /// The path given.
        path: PathBuf,
        /// The plugin's interface version.
        found: String,
        /// The host's interface version.
        expected: String,
        /// The version requirement to build against.
        expected_req: String,
    },
    /// Built with an incompatible abi_stable.
    #[error("plugin {path}: built with an incompatible abi_stable version; rebuild it against perf-plugin-api {expected}")]
    IncompatibleAbi {
        /// The path given.
        path: PathBuf,
        /// The host's interface version.
        expected: String,
    },
    /// Same version, different type layouts.
    #[error("plugin {path}: its interface types do not match this perf's although both say version {version} (was perf-plugin-api modified?); rebuild the plugin against the released perf-plugin-api. First differences:\n{details}")]
    LayoutMismatch {
        /// The path given.
        path: PathBuf,
        /// The shared version.
        version: String,
        /// abi_stable's report, shortened.
        details: String,
    },
    /// The library's root module constructor failed.
    #[error("plugin {path}: the library failed to initialise: {reason}")]
    InitFailed {
        /// The path given.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

fn version_requirement(v: &VersionNumber) -> String {
    format!("{}.{}", v.major, v.minor)
}

/// The "Error:" blocks of abi_stable's layout report (expected/found types), which is several
/// hundred lines long in full; the first lines if it has no such block.
fn layout_differences(report: &str) -> String {
    let lines: Vec<&str> = report
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut kept = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with("Error:") {
            kept.extend(lines[i..].iter().take(5).copied());
        }
    }
    if kept.is_empty() {
        kept.extend(lines.iter().take(12).copied());
    }
    format!("  {}", kept.join("\n  "))
}

/// Loads the library at `path` and returns its root module after checking, in order: that the
/// file exists and is a library, that it is a perf plugin, its interface version and its type
/// layouts. The library is never unloaded.
pub fn load_library(path: &Path) -> Result<PluginLibraryRef, LoadError> {
    let owned = || path.to_path_buf();
    if !path.exists() {
        return Err(LoadError::Missing { path: owned() });
    }
    // `lib_header_from_path` opens one library per path; `RootModule::load_from_file` would
    // cache the first library per type and hand it back for every later path.
    let header = lib_header_from_path(path).map_err(|e| match e {
        LibraryError::OpenError { err, .. } => LoadError::NotALibrary {
            path: owned(),
            reason: err.to_string().trim().to_string(),
        },
        LibraryError::GetSymbolError { .. } => LoadError::NotAPlugin {
            path: owned(),
            reason: "it exports no abi_stable root module".into(),
        },
        LibraryError::InvalidAbiHeader(_) => LoadError::IncompatibleAbi {
            path: owned(),
            expected: INTERFACE_VERSION.into(),
        },
        other => LoadError::NotAPlugin {
            path: owned(),
            reason: other.to_string().trim().to_string(),
        },
    })?;

    let consts = header.root_mod_consts();
    if consts.base_name().as_str() != ROOT_MODULE_NAME {
        return Err(LoadError::NotAPlugin {
            path: owned(),
            reason: format!(
                "it is an abi_stable library of '{}', not of '{ROOT_MODULE_NAME}'",
                consts.base_name()
            ),
        });
    }
    check_version(path, header.version_strings())?;

    header
        .init_root_module::<PluginLibraryRef>()
        .map_err(|e| match e {
            LibraryError::AbiInstability(report) => LoadError::LayoutMismatch {
                path: owned(),
                version: INTERFACE_VERSION.into(),
                details: layout_differences(&report.to_string()),
            },
            other => LoadError::InitFailed {
                path: owned(),
                reason: other.to_string().trim().to_string(),
            },
        })
}

/// Same `major.minor` loads; patch numbers never matter (see perf-plugin-api's "Versioning").
fn check_version(path: &Path, found: VersionStrings) -> Result<(), LoadError> {
    let expected = VersionNumber::new(PluginLibraryRef::VERSION_STRINGS).map_err(|e| {
        LoadError::InitFailed {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }
    })?;
    let incompatible = || LoadError::IncompatibleVersion {
        path: path.to_path_buf(),
        found: found.version.to_string(),
        expected: INTERFACE_VERSION.to_string(),
        expected_req: version_requirement(&expected),
    };
    let actual = VersionNumber::new(found).map_err(|_| incompatible())?;
    if actual.major != expected.major || actual.minor != expected.minor {
        return Err(incompatible());
    }
    Ok(())
}
