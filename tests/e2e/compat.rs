//! Drop-in output files: `tests/py/evalscope_compat.py` runs perf on the command lines whose
//! evalscope 1.14.1 outputs are recorded under `tests/fixtures/evalscope-1.14.1/`, reads
//! perf's files (and evalscope's) the way scripts written for evalscope read them, and holds
//! perf's to evalscope's: the same files, keys, key order, JSON types, columns, column
//! order, SQLite types, sentinels, and unpicklable `response_messages`.

use perf_tests::{perf_bin, repo_root};
use std::process::Command;

#[test]
fn scripts_written_for_evalscope_read_perfs_files_as_evalscopes() {
    let out = Command::new("python3")
        .arg(repo_root().join("tests/py/evalscope_compat.py"))
        .arg("--perf")
        .arg(perf_bin())
        .output()
        .expect("python3 runs (the README lists it among the test prerequisites)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("0 failure(s)"), "{text}");
    // Every scenario ran (a scenario the script skipped would not be checked).
    for scenario in [
        "stream",
        "no-stream",
        "sweep",
        "open-loop",
        "failures",
        "all-failed",
        "multi-token-chunks",
        "secrets",
        "embedding",
    ] {
        assert!(
            text.contains(&format!("{scenario}: perf ")),
            "{scenario}: {text}"
        );
    }
}
