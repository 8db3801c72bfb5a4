//! `--api local` without its backend library, and `--api local_vllm` with a stand-in for vLLM's server (`tests/py/fake_vllm.py`: slow start,
//! `/health`, the OpenAI API): it is started with evalscope's command line, waited for,
//! benchmarked, and stopped on every way out: success, a failed start, a server that never
//! becomes healthy, and Ctrl-C.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use perf_tests::{perf_bin, text};
use serde_json::Value;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// The stand-in as an executable perf can run as its "python".
fn python_wrapper(dir: &Path) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("py/fake_vllm.py");
    let wrapper = dir.join("python");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\nexec python3 {} \"$@\"\n", script.display()),
    )
    .expect("write");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    wrapper
}

fn command(dir: &Path, mode: &str, port: u16, extra: &[&str]) -> Command {
    let mut cmd = Command::new(perf_bin());
    cmd.args([
        "--api",
        "local_vllm",
        "--model",
        "Qwen/Qwen2.5-0.5B-Instruct",
        "--port",
        &port.to_string(),
        "--outputs-dir",
        "outputs",
        "--max-tokens",
        "4",
        "--prompt",
        "hello",
    ])
    .args(extra)
    .env("PERF_VLLM_PYTHON", python_wrapper(dir))
    .env("FAKE_VLLM_RECORD", dir.join("record.json"))
    .env("FAKE_VLLM_PERF", perf_bin())
    .env("FAKE_VLLM_MODE", mode)
    .current_dir(dir);
    cmd
}

fn record(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("record.json")).expect("record"))
        .expect("JSON")
}

fn alive(pid: u64) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
}

/// The stand-in and the server it started are gone.
fn assert_stopped(dir: &Path) {
    let pid = record(dir)["pid"].as_u64().expect("pid");
    let child: Option<u64> = std::fs::read_to_string(dir.join("record.json.child"))
        .ok()
        .and_then(|s| s.trim().parse().ok());
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) || child.is_some_and(alive) {
        assert!(
            Instant::now() < deadline,
            "vLLM ({pid}) or its server ({child:?}) still runs"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn output(out: &Output) -> String {
    let (stdout, stderr) = text(out);
    format!("{stdout}\n{stderr}")
}

#[test]
fn vllm_is_started_with_evalscopes_arguments_benchmarked_and_stopped() {
    let dir = tempfile::tempdir().expect("tmp");
    let port = free_port();
    let out = command(dir.path(), "serve", port, &["-n", "12", "--parallel", "3"])
        .output()
        .expect("perf runs");
    let console = output(&out);
    assert_eq!(out.status.code(), Some(0), "{console}");
    assert!(
        console.contains("vllm: INFO fake vLLM starting"),
        "its log until ready: {console}"
    );
    assert!(
        console.contains("Total / Success / Failed") && console.contains("12 / 12 / 0"),
        "{console}"
    );
    let rec = record(dir.path());
    let args: Vec<&str> = rec["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let port_s = port.to_string();
    for pair in [
        ["-m", "vllm.entrypoints.openai.api_server"],
        ["--model", "Qwen/Qwen2.5-0.5B-Instruct"],
        ["--served-model-name", "Qwen/Qwen2.5-0.5B-Instruct"],
        ["--max-model-len", "32768"],
        ["--gpu-memory-utilization", "0.9"],
        ["--port", port_s.as_str()],
    ] {
        assert!(args.windows(2).any(|w| w == pair), "{pair:?} in {args:?}");
    }
    assert!(args.contains(&"--tensor-parallel-size"));
    assert_eq!(rec["env"]["VLLM_USE_MODELSCOPE"], "True");
    assert_eq!(rec["env"]["VLLM_WORKER_MULTIPROC_METHOD"], "spawn");
    assert_stopped(dir.path());
    let log = walk_find(&dir.path().join("outputs"), "vllm.log").expect("vllm.log");
    assert!(std::fs::read_to_string(log)
        .expect("log")
        .contains("serving on port"));
}

fn walk_find(dir: &Path, name: &str) -> Option<PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.filter_map(Result::ok) {
        let p = e.path();
        if p.file_name().is_some_and(|n| n == name) {
            return Some(p);
        }
        if p.is_dir() {
            if let Some(found) = walk_find(&p, name) {
                return Some(found);
            }
        }
    }
    None
}

#[test]
fn a_missing_vllm_or_one_that_never_becomes_healthy_is_a_clear_error_and_is_stopped() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = command(dir.path(), "missing", free_port(), &["-n", "2"])
        .output()
        .expect("perf runs");
    let console = output(&out);
    assert_eq!(out.status.code(), Some(2), "{console}");
    assert!(console.contains("vLLM is not installed"), "{console}");
    assert!(console.contains("pip install vllm"), "{console}");
    assert_stopped(dir.path());

    let out = command(dir.path(), "hang", free_port(), &["-n", "2"])
        .env("PERF_VLLM_READY_TIMEOUT_S", "3")
        .env("FAKE_VLLM_DELAY_S", "0")
        .output()
        .expect("perf runs");
    let console = output(&out);
    assert_eq!(out.status.code(), Some(2), "{console}");
    assert!(console.contains("was not healthy"), "{console}");
    assert_stopped(dir.path());
}

#[test]
fn ctrl_c_writes_the_results_so_far_and_stops_vllm() {
    let dir = tempfile::tempdir().expect("tmp");
    let child = command(
        dir.path(),
        "serve",
        free_port(),
        &["-n", "100000", "--parallel", "2"],
    )
    .env("FAKE_VLLM_TTFT_MS", "50")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("perf starts");
    // Wait for the benchmark to be under way (vLLM ready, requests flowing).
    let deadline = Instant::now() + Duration::from_secs(30);
    while walk_find(&dir.path().join("outputs"), "benchmark_data.db").is_none() {
        assert!(Instant::now() < deadline, "the run did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(800));
    // SAFETY: SIGINT to the perf process we started.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let out = child.wait_with_output().expect("perf ends");
    let console = output(&out);
    assert_eq!(out.status.code(), Some(130), "{console}");
    assert!(
        walk_find(&dir.path().join("outputs"), "benchmark_summary.json").is_some(),
        "results written: {console}"
    );
    assert_stopped(dir.path());
}

#[test]
fn api_local_without_its_backend_says_how_to_build_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = Command::new(perf_bin())
        .args([
            "--api",
            "local",
            "--model",
            "/nonexistent/model",
            "--prompt",
            "hi",
            "-n",
            "1",
        ])
        .current_dir(dir.path())
        .output()
        .expect("perf runs");
    let console = output(&out);
    assert_eq!(out.status.code(), Some(2), "{console}");
    assert!(
        console.contains("plugins/model-tch/scripts/check"),
        "{console}"
    );
    assert!(console.contains("libperf_model_tch"), "{console}");
}
