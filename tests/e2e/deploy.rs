//! The deployment files: the Kubernetes manifests against the Kubernetes schemas (offline,
//! `kubernetes-validate --strict`, which also refuses a field the schema does not have), and
//! the shard count they give in three places kept equal.

use std::path::{Path, PathBuf};
use std::process::Command;

use perf_tests::{kubernetes_validate_bin, repo_root, text};

fn manifests() -> Vec<PathBuf> {
    let dir = repo_root().join("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("deploy/kubernetes")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn validate(files: &[PathBuf]) -> (bool, String) {
    let out = Command::new(kubernetes_validate_bin())
        .args(["--strict", "--kubernetes-version", "1.37.0"])
        .args(files)
        .output()
        .expect("kubernetes-validate runs");
    let (stdout, stderr) = text(&out);
    (out.status.success(), format!("{stdout}\n{stderr}"))
}

#[test]
fn the_kubernetes_manifests_validate_against_the_schemas() {
    let files = manifests();
    assert!(files.len() >= 2, "{files:?}");
    let (ok, out) = validate(&files);
    assert!(ok, "{out}");
    for kind in [
        "persistentvolumeclaim/perf-results",
        "job/perf-shards",
        "job/perf-merge",
    ] {
        assert!(
            out.contains(&format!("passed for resource {kind}")),
            "{kind}: {out}"
        );
    }
    // The check can fail: a misspelt field is refused.
    let dir = tempfile::tempdir().expect("tmp");
    let broken = dir.path().join("broken.yaml");
    let shards = std::fs::read_to_string(repo_root().join("deploy/kubernetes/perf-shards.yaml"))
        .expect("perf-shards.yaml");
    std::fs::write(
        &broken,
        shards.replace("completionMode:", "completionModes:"),
    )
    .expect("write");
    let (ok, out) = validate(&[broken]);
    assert!(!ok, "a misspelt field must fail: {out}");
}

/// The value after `key:` on the first line holding it.
fn value<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(key))
        .map(|v| v.trim().trim_matches('"'))
        .unwrap_or_else(|| panic!("no {key}"))
}

#[test]
fn the_shard_count_is_the_same_everywhere_it_is_written() {
    let root = repo_root();
    let read = |f: &str| std::fs::read_to_string(Path::new(&root).join(f)).expect(f);
    let shards = read("deploy/kubernetes/perf-shards.yaml");
    let n: usize = value(&shards, "completions:").parse().expect("completions");
    assert_eq!(
        value(&shards, "parallelism:")
            .parse::<usize>()
            .expect("parallelism"),
        n
    );
    let perf_shards = shards
        .split("- name: PERF_SHARDS")
        .nth(1)
        .map(|rest| value(rest, "value:"))
        .expect("PERF_SHARDS");
    assert_eq!(perf_shards.parse::<usize>().expect("PERF_SHARDS"), n);
    let merge = read("deploy/kubernetes/perf-merge.yaml");
    for i in 0..n {
        assert!(
            merge.contains(&format!("/results/shard-{i}\n")),
            "shard {i} merged"
        );
    }
    assert!(!merge.contains(&format!("/results/shard-{n}\n")));
    assert!(shards.contains("/results/shard-$(JOB_COMPLETION_INDEX)"));
}
