//! Reading what a benchmark left behind, and showing it: the HTML report
//! (`perf_report.html`), the comparison of runs (`perf compare`) and the pages of
//! `perf dashboard`.
//!
//! Everything here reads the output files only, never a running engine's memory: the files
//! are the contract, so an evalscope 1.14.1 directory, a merged one, an interrupted one and
//! a finished one read the same way, and a report can be made again at any time
//! (`perf report DIR`). What a directory lacks is said on the page, not guessed.
//!
//! The page is one self-contained file: the charts are inline SVG drawn by `plotters`, the
//! style sheet is inline, and there is no script, so it opens from `file://` with the network
//! off and prints as it shows. Per-request charts are thinned (the fastest and the slowest
//! request of each time slice) so that a run of a million requests stays a small page.

pub mod charts;
pub mod compare;
pub mod load;
pub mod observe;
pub mod page;
pub mod pyjson;
pub mod samples;
pub mod sla;

use std::path::{Path, PathBuf};

/// The report's file name, as evalscope names it.
pub const REPORT_FILE: &str = "perf_report.html";

/// Why a directory could not be read or its report written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// No such directory.
    #[error("{0}: no such directory")]
    NotFound(PathBuf),
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file or directory is not what a benchmark leaves behind.
    #[error("{path}: {detail}")]
    Invalid {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong, and what to give instead.
        detail: String,
    },
    /// The page could not be rendered (a template error: a bug).
    #[error("cannot render the report: {0}")]
    Render(#[from] minijinja::Error),
    /// The report could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Reads the benchmark in `dir` and writes its `perf_report.html` there; returns its path.
pub fn write_report(dir: &Path, opts: &page::Options) -> Result<PathBuf, ReportError> {
    let bench = load::benchmark(dir)?;
    let html = page::render(&bench, opts)?;
    let path = dir.join(REPORT_FILE);
    write_file(&path, html.as_bytes())?;
    Ok(path)
}

/// Writes `bytes` to `path` through a temporary file beside it, so a reader never sees half.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    let tmp = path.with_extension("html.tmp");
    let err = |source| ReportError::Write {
        path: path.to_path_buf(),
        source,
    };
    std::fs::write(&tmp, bytes).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}
