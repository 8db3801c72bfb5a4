//! `perf report DIR` and `perf compare A B ...`: pages made from result files only (see
//! `perf-report`), through the same redaction rule as everything else perf writes.

use std::path::{Path, PathBuf};

use perf_report::{page::Options, ReportError};

use crate::cli::{CompareArgs, ReportArgs};
use crate::error::usage;
use crate::output::redact::redact;

/// When a page is made, on the reader's clock.
pub fn now() -> String {
    chrono::Local::now().format("%Y-%m-%d %H:%M:%S").to_string()
}

/// A directory that is not a benchmark's is the user's to fix (exit 2); a file that cannot
/// be written is not.
fn classify(e: ReportError) -> anyhow::Error {
    match e {
        ReportError::NotFound(_) | ReportError::Invalid { .. } | ReportError::Read { .. } => usage(
            format!("{e}; give the <outputs-dir>/<time>/<name>/ directory a benchmark wrote"),
        ),
        other => anyhow::Error::new(other),
    }
}

/// Writes `perf_report.html` into the benchmark directory `dir`; returns its path.
pub fn write(dir: &Path) -> anyhow::Result<PathBuf> {
    write_to(dir, &dir.join(perf_report::REPORT_FILE))
}

fn write_to(dir: &Path, out: &Path) -> anyhow::Result<PathBuf> {
    let bench = perf_report::load::benchmark(dir).map_err(classify)?;
    let html = perf_report::page::render(
        &bench,
        &Options {
            generated: now(),
            nav: None,
        },
    )
    .map_err(ReportError::from)?;
    perf_report::write_file(out, redact(&html).as_bytes())?;
    Ok(out.to_path_buf())
}

/// `perf report`.
pub fn report(args: &ReportArgs) -> anyhow::Result<i32> {
    let out = args
        .output
        .clone()
        .unwrap_or_else(|| args.dir.join(perf_report::REPORT_FILE));
    let bench = perf_report::load::benchmark(&args.dir).map_err(classify)?;
    for m in &bench.missing {
        eprintln!("note: not in {}: {m}", args.dir.display());
    }
    let path = write_to(&args.dir, &out)?;
    println!("report: {}", path.display());
    Ok(0)
}

/// `perf compare`.
pub fn compare(args: &CompareArgs) -> anyhow::Result<i32> {
    let c = perf_report::compare::compare(&args.dirs).map_err(classify)?;
    println!("{}", redact(&c.console()));
    let html = c.html(&Options {
        generated: now(),
        nav: None,
    })?;
    perf_report::write_file(&args.html, redact(&html).as_bytes())?;
    println!("comparison: {}", args.html.display());
    Ok(0)
}
