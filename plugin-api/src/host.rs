//! The loading side of the interface (feature `host`): opening a plugin library and checking
//! that this build of the interface may use it. perf's plugin host calls [`load_library`]; so
//! does any other program that loads perf plugins, with the same rules.
//!
//! The checks, in order: the file exists and is a dynamic library; it exports a perf plugin
//! root module; its interface version has this build's `major.minor` and is not newer than
//! this build; the layout of every type reachable from the root module is compatible. The
//! layout check runs with the library's layouts as the expected ones and this build's as the
//! provider: abi_stable lets the provider have more prefix fields (root-module entries, trait
//! methods) and more non-exhaustive variants than the expected side, which is exactly how a
//! newer host may differ from an older library (see the crate docs, "Versioning").

use std::fmt;
use std::path::{Path, PathBuf};

use abi_stable::abi_stability::abi_checking::{
    check_layout_compatibility, AbiInstability, AbiInstabilityErrors,
};
use abi_stable::library::{lib_header_from_path, IsLayoutChecked, LibHeader, LibraryError};
use abi_stable::reflection::ModReflMode;
use abi_stable::sabi_types::{VersionNumber, VersionStrings};
use abi_stable::type_layout::{TLFieldOrFunction, TypeLayout};
use abi_stable::StableAbi;

use crate::abi::{PluginLibraryRef, INTERFACE_VERSION, ROOT_MODULE_NAME};

/// A loaded, checked plugin library. Libraries are never unloaded.
#[derive(Clone, Copy)]
pub struct Library {
    /// Its root module.
    pub root: PluginLibraryRef,
    /// The interface version it was built against.
    pub interface: VersionNumber,
}

impl Library {
    /// Whether the library's interface version is at least `major.minor.patch`: the test before
    /// calling a trait method or reading anything that a later 0.2 version added.
    pub fn has(&self, major: u32, minor: u32, patch: u32) -> bool {
        let v = self.interface;
        (v.major, v.minor, v.patch) >= (major, minor, patch)
    }

    /// This build's own root module for built-ins (same interface version as the host).
    pub fn builtin(root: PluginLibraryRef) -> Self {
        Library {
            root,
            interface: host_version(),
        }
    }
}

/// The version of the interface this host was built against.
pub fn host_version() -> VersionNumber {
    VersionNumber::new(VersionStrings::new(INTERFACE_VERSION)).unwrap_or(VersionNumber {
        major: 0,
        minor: 0,
        patch: 0,
    })
}

/// Why a plugin library could not be loaded. Each message names the path and says what to do.
#[derive(Debug)]
pub enum LoadError {
    /// The path does not exist.
    Missing {
        /// The path given.
        path: PathBuf,
    },
    /// The file exists but is not a dynamic library the loader accepts.
    NotALibrary {
        /// The path given.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A library without a perf root module.
    NotAPlugin {
        /// The path given.
        path: PathBuf,
        /// What was found instead.
        reason: String,
    },
    /// Built against an interface version this host cannot use.
    IncompatibleVersion {
        /// The path given.
        path: PathBuf,
        /// The library's interface version.
        library: String,
        /// This host's interface version.
        host: String,
    },
    /// Built with an incompatible abi_stable.
    IncompatibleAbi {
        /// The path given.
        path: PathBuf,
    },
    /// The versions fit but a type's layout does not.
    LayoutMismatch {
        /// The path given.
        path: PathBuf,
        /// The library's interface version.
        library: String,
        /// This host's interface version.
        host: String,
        /// One line per difference, each naming the type.
        differences: Vec<String>,
    },
    /// The library's root module constructor failed.
    InitFailed {
        /// The path given.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl LoadError {
    /// The library's path.
    pub fn path(&self) -> &Path {
        match self {
            LoadError::Missing { path }
            | LoadError::NotALibrary { path, .. }
            | LoadError::NotAPlugin { path, .. }
            | LoadError::IncompatibleVersion { path, .. }
            | LoadError::IncompatibleAbi { path }
            | LoadError::LayoutMismatch { path, .. }
            | LoadError::InitFailed { path, .. } => path,
        }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.path().display();
        match self {
            LoadError::Missing { .. } => write!(
                f,
                "plugin {p}: no such file; check the path (a relative path starts at the current directory)"
            ),
            LoadError::NotALibrary { reason, .. } => write!(
                f,
                "plugin {p}: not a loadable dynamic library ({reason}); pass the .so/.dll/.dylib file of a crate built with crate-type = [\"cdylib\"]"
            ),
            LoadError::NotAPlugin { reason, .. } => write!(
                f,
                "plugin {p}: not a perf plugin ({reason}); a plugin exports its plugins with perf_plugin_api::export_plugins!"
            ),
            LoadError::IncompatibleVersion { library, host, .. } => {
                let newer = minor_requirement(library) == minor_requirement(host);
                if newer {
                    write!(
                        f,
                        "plugin {p}: built against perf-plugin-api {library}, newer than this perf's interface {host}; upgrade perf, or build the plugin against perf-plugin-api {host}"
                    )
                } else {
                    write!(
                        f,
                        "plugin {p}: built against perf-plugin-api {library}, but this perf implements interface {host}; rebuild the plugin against perf-plugin-api {}",
                        minor_requirement(host)
                    )
                }
            }
            LoadError::IncompatibleAbi { .. } => write!(
                f,
                "plugin {p}: built with an incompatible abi_stable version; rebuild it against perf-plugin-api {INTERFACE_VERSION}"
            ),
            LoadError::LayoutMismatch {
                library,
                host,
                differences,
                ..
            } => {
                write!(
                    f,
                    "plugin {p}: the library says perf-plugin-api {library} and this perf implements {host}, but their types differ (was perf-plugin-api modified?); rebuild the plugin against a released perf-plugin-api. Differences:"
                )?;
                for d in differences {
                    write!(f, "\n    {d}")?;
                }
                Ok(())
            }
            LoadError::InitFailed { reason, .. } => {
                write!(f, "plugin {p}: the library failed to initialise: {reason}")
            }
        }
    }
}

impl std::error::Error for LoadError {}

fn minor_requirement(version: &str) -> String {
    version.split('.').take(2).collect::<Vec<_>>().join(".")
}

/// A bare file name (`libx.so`) would make the dynamic loader search the system's library
/// path; users mean the file in the current directory.
fn as_path(path: &Path) -> PathBuf {
    if path.is_relative() && path.parent().is_none_or(|p| p.as_os_str().is_empty()) {
        Path::new(".").join(path)
    } else {
        path.to_path_buf()
    }
}

/// What a file that the loader refused is, when its first bytes say.
fn not_a_library(path: &Path, loader: &str) -> String {
    let magic: &[(&[u8], &str)] = &[
        (b"\x7fELF", "ELF"),
        (b"MZ", "PE"),
        (b"\xcf\xfa\xed\xfe", "Mach-O"),
        (b"\xca\xfe\xba\xbe", "Mach-O"),
    ];
    let head = std::fs::read(path)
        .map(|b| b.into_iter().take(4).collect::<Vec<u8>>())
        .unwrap_or_default();
    match magic.iter().find(|(m, _)| head.starts_with(m)) {
        Some((_, format)) => format!("the loader refused this {format} file: {loader}"),
        None if head.is_empty() => "the file is empty".to_string(),
        None => format!("the file is not a compiled library at all (the loader says: {loader})"),
    }
}

/// Loads the library at `path` and checks it (see the module docs). Never unloads it.
pub fn load_library(path: &Path) -> Result<Library, LoadError> {
    let owned = || path.to_path_buf();
    if !path.exists() {
        return Err(LoadError::Missing { path: owned() });
    }
    // `lib_header_from_path` opens one library per path; `RootModule::load_from_file` would
    // cache the first library per type and hand it back for every later path.
    let header = lib_header_from_path(&as_path(path)).map_err(|e| match e {
        LibraryError::OpenError { err, .. } => LoadError::NotALibrary {
            path: owned(),
            reason: not_a_library(path, err.to_string().trim()),
        },
        LibraryError::GetSymbolError { .. } => LoadError::NotAPlugin {
            path: owned(),
            reason: "it exports no abi_stable root module".into(),
        },
        LibraryError::InvalidAbiHeader(_) => LoadError::IncompatibleAbi { path: owned() },
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
    let interface = check_version(path, header.version_strings())?;
    check_layouts(path, header, interface)?;
    // SAFETY: `check_layouts` established that the library's root module is compatible with
    // this build's `PluginLibraryRef` under the rules of the crate docs, "Versioning".
    let root = unsafe { header.unchecked_layout::<PluginLibraryRef>() }.map_err(|e| {
        LoadError::InitFailed {
            path: owned(),
            reason: e.to_string().trim().to_string(),
        }
    })?;
    Ok(Library { root, interface })
}

fn check_version(path: &Path, found: VersionStrings) -> Result<VersionNumber, LoadError> {
    let host = host_version();
    let incompatible = || LoadError::IncompatibleVersion {
        path: path.to_path_buf(),
        library: found.version.to_string(),
        host: INTERFACE_VERSION.to_string(),
    };
    let library = VersionNumber::new(found).map_err(|_| incompatible())?;
    let same_minor = (library.major, library.minor) == (host.major, host.minor);
    if !same_minor || library.patch > host.patch {
        return Err(incompatible());
    }
    Ok(library)
}

fn check_layouts(
    path: &Path,
    header: &LibHeader,
    interface: VersionNumber,
) -> Result<(), LoadError> {
    let IsLayoutChecked::Yes(library) = header.root_mod_consts().layout() else {
        return Err(LoadError::NotAPlugin {
            path: path.to_path_buf(),
            reason: "its root module carries no layout to check".into(),
        });
    };
    let ours = <PluginLibraryRef as StableAbi>::LAYOUT;
    check_layout_compatibility(library, ours).map_err(|e| LoadError::LayoutMismatch {
        path: path.to_path_buf(),
        library: interface.to_string(),
        host: INTERFACE_VERSION.to_string(),
        differences: differences(&e),
    })
}

/// One line per type that differs: the type, where it is reached from the root module, and
/// what differs. abi_stable's own report runs to hundreds of lines; an error in a type that
/// only contains a differing type (a result wrapping it) is left out.
fn differences(errors: &AbiInstabilityErrors) -> Vec<String> {
    struct Found {
        ty: String,
        trail: Vec<String>,
        depth: usize,
        what: Vec<String>,
    }
    let generic = |n: &str| {
        n.is_empty()
            || n.starts_with("__")
            || n.starts_with("field_")
            || ["0", "obj", "vtable", "ptr", "_marker"].contains(&n)
    };
    let found: Vec<Found> = errors
        .errors
        .iter()
        .filter(|e| !e.errs.is_empty())
        .map(|e| {
            let mut trail: Vec<String> = Vec::new();
            for step in e.stack_trace.iter() {
                let name = match &step.found {
                    TLFieldOrFunction::Field(f) => f.name().to_string(),
                    TLFieldOrFunction::Function(func) => format!("{}()", func.name),
                };
                // `new_api_adapter` then `new_api_adapter()`: the field holding a function.
                if generic(&name) || trail.last().is_some_and(|l| format!("{l}()") == name) {
                    if let Some(last) = trail.last_mut().filter(|l| format!("{l}()") == name) {
                        *last = name;
                    }
                    continue;
                }
                trail.push(name);
            }
            let ty = e
                .stack_trace
                .iter()
                .rev()
                .find_map(|step| match &step.expected {
                    TLFieldOrFunction::Field(f) => Some(type_name(f.layout())),
                    TLFieldOrFunction::Function(_) => None,
                })
                .unwrap_or_else(|| type_name(errors.interface));
            Found {
                ty,
                trail,
                depth: e.stack_trace.len(),
                what: e.errs.iter().map(describe).collect(),
            }
        })
        .collect();
    let mut lines: Vec<String> = Vec::new();
    for (i, f) in found.iter().enumerate() {
        let contains_another = found
            .iter()
            .enumerate()
            .any(|(j, g)| j != i && g.depth > f.depth && g.trail.starts_with(&f.trail));
        if contains_another {
            continue;
        }
        let at = if f.trail.is_empty() {
            String::new()
        } else {
            format!(" (reached through {})", f.trail.join(" > "))
        };
        let mut what = f.what.clone();
        what.dedup();
        if what.len() > 3 {
            let more = what.len() - 3;
            what.truncate(3);
            what.push(format!("{more} more"));
        }
        let line = format!("type `{}`{at}: {}", f.ty, what.join("; "));
        if !lines.contains(&line) {
            lines.push(line);
        }
    }
    lines.truncate(6);
    if lines.is_empty() {
        lines.push(
            errors
                .to_string()
                .lines()
                .take(6)
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
    lines
}

fn type_name(layout: &TypeLayout) -> String {
    // A prefix reference (`PrefixRef<PluginLibrary>`) reads better as what it points to.
    if let ModReflMode::DelegateDeref { .. } = layout.mod_refl_mode() {
        if let Some(inner) = layout.phantom_fields().iter().next() {
            return inner.layout().name().to_string();
        }
    }
    layout.name().to_string()
}

fn describe(what: &AbiInstability) -> String {
    use AbiInstability as AI;
    match what {
        AI::FieldCountMismatch(ef) => format!(
            "the library has {} field(s), this perf {}",
            ef.expected, ef.found
        ),
        AI::UnexpectedField(ef) => format!(
            "field `{}` in the library where this perf has `{}`",
            ef.expected.name(),
            ef.found.name()
        ),
        AI::Size(ef) => format!(
            "{} bytes in the library, {} in this perf",
            ef.expected, ef.found
        ),
        AI::Alignment(ef) => format!(
            "alignment {} in the library, {} in this perf",
            ef.expected, ef.found
        ),
        AI::TooManyVariants(ef) => format!(
            "the library has {} variant(s), this perf {}",
            ef.expected, ef.found
        ),
        AI::UnexpectedVariant(ef) => format!(
            "variant `{}` in the library where this perf has `{}`",
            ef.expected, ef.found
        ),
        AI::Name(ef) => format!(
            "type `{}` in the library where this perf has `{}`",
            ef.expected, ef.found
        ),
        AI::PackageVersion(ef) => format!(
            "from perf-plugin-api {} in the library, {} in this perf",
            ef.expected, ef.found
        ),
        other => format!("{other:?}").chars().take(200).collect::<String>(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_file_name_is_a_path_from_the_current_directory() {
        assert_eq!(as_path(Path::new("libx.so")), Path::new("./libx.so"));
        assert_eq!(as_path(Path::new("a/libx.so")), Path::new("a/libx.so"));
        assert_eq!(as_path(Path::new("/a/libx.so")), Path::new("/a/libx.so"));
    }

    #[test]
    fn versions_load_within_the_minor_up_to_the_hosts_patch() {
        let host = host_version();
        let at = |v: String| check_version(Path::new("x.so"), VersionStrings::new(leak(v)));
        assert!(at(format!("{}.{}.0", host.major, host.minor)).is_ok());
        assert!(at(host.to_string()).is_ok());
        let newer = at(format!("{}.{}.{}", host.major, host.minor, host.patch + 1))
            .expect_err("a newer patch is refused")
            .to_string();
        assert!(newer.contains("upgrade perf"), "{newer}");
        let older = at(format!("{}.{}.0", host.major, host.minor + 1))
            .expect_err("another minor is refused")
            .to_string();
        assert!(older.contains("rebuild the plugin"), "{older}");
    }

    fn leak(s: String) -> &'static str {
        Box::leak(s.into_boxed_str())
    }
}
