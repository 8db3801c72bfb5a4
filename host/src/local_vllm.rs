//! `--api local_vllm`: start vLLM's OpenAI server for `--model`, wait until it is healthy,
//! benchmark it, and stop it on every way out.
//!
//! The command is evalscope's: `python -m vllm.entrypoints.openai.api_server --model M
//! --served-model-name M --tensor-parallel-size <visible GPUs> --max-model-len 32768
//! --gpu-memory-utilization 0.9 --host 127.0.0.1 --port P --trust-remote-code
//! --disable-log-requests --disable-log-stats`, with `VLLM_ALLOW_LONG_MAX_MODEL_LEN=1`,
//! `VLLM_WORKER_MULTIPROC_METHOD=spawn` and, with `--data-source modelscope` (the default),
//! `VLLM_USE_MODELSCOPE=True`. It binds 127.0.0.1 (evalscope binds every interface). The Python
//! is `PERF_VLLM_PYTHON`, else `python3`; `PERF_VLLM_READY_TIMEOUT_S` (default 900) bounds the
//! wait for `GET /health`. vLLM's output goes to `vllm.log` in the output directory and, until
//! it is ready, to the console.
//!
//! The server runs in a process group of its own, so stopping it stops its workers too: on
//! success, on error, on Ctrl-C (first: after the results are written; second: before perf
//! quits), it gets SIGTERM, 10 s, then SIGKILL.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::usage;
use crate::output::log;

/// How long a stopping server gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Process groups of running servers, for the second Ctrl-C, which exits at once.
static RUNNING: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// A running vLLM server; stopped when dropped.
pub struct VllmServer {
    child: Child,
}

/// GPUs vLLM will see: `CUDA_VISIBLE_DEVICES`, else `nvidia-smi -L`, at least 1.
fn visible_gpus() -> usize {
    if let Ok(v) = std::env::var("CUDA_VISIBLE_DEVICES") {
        let n = v.split(',').filter(|d| !d.trim().is_empty()).count();
        return n.max(1);
    }
    Command::new("nvidia-smi")
        .arg("-L")
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.starts_with("GPU "))
                .count()
        })
        .unwrap_or(0)
        .max(1)
}

/// The arguments after the Python executable.
pub fn arguments(model: &str, port: u16, gpus: usize) -> Vec<String> {
    [
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        model,
        "--served-model-name",
        model,
        "--tensor-parallel-size",
        &gpus.to_string(),
        "--max-model-len",
        "32768",
        "--gpu-memory-utilization",
        "0.9",
        "--host",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--trust-remote-code",
        "--disable-log-requests",
        "--disable-log-stats",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn ready_timeout() -> Duration {
    std::env::var("PERF_VLLM_READY_TIMEOUT_S")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .map_or(Duration::from_secs(900), Duration::from_secs_f64)
}

/// Whether `GET /health` answers 200.
fn healthy(port: u16) -> bool {
    use std::io::Read;
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}

impl VllmServer {
    /// Starts vLLM for `model` on `port` and waits until it is healthy, logging to
    /// `log_dir/vllm.log`. Every failure names what to do.
    pub fn start(model: &str, port: u16, modelscope: bool, log_dir: &Path) -> anyhow::Result<Self> {
        let python = std::env::var("PERF_VLLM_PYTHON").unwrap_or_else(|_| "python3".into());
        let args = arguments(model, port, visible_gpus());
        let mut command = Command::new(&python);
        command
            .args(&args)
            .env("VLLM_ALLOW_LONG_MAX_MODEL_LEN", "1")
            .env("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if modelscope {
            command.env("VLLM_USE_MODELSCOPE", "True");
        }
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            command.process_group(0);
        }
        log::info(format!("starting vLLM: {python} {}", args.join(" ")));
        let mut child = command.spawn().map_err(|e| {
            usage(format!(
                "--api local_vllm cannot run {python}: {e}; install vLLM (pip install vllm) or point PERF_VLLM_PYTHON at the Python that has it"
            ))
        })?;
        if let Ok(mut running) = RUNNING.lock() {
            running.push(child.id());
        }
        let tail = Arc::new(Mutex::new(Vec::<String>::new()));
        let echo = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let log_file = std::fs::File::create(log_dir.join("vllm.log"))
            .map(|f| Arc::new(Mutex::new(f)))
            .ok();
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let (tail, echo, log_file) = (tail.clone(), echo.clone(), log_file.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Some(f) = &log_file {
                        if let Ok(mut f) = f.lock() {
                            let _ = writeln!(f, "{line}");
                        }
                    }
                    if echo.load(std::sync::atomic::Ordering::Relaxed) {
                        log::info(format!("vllm: {line}"));
                    }
                    if let Ok(mut t) = tail.lock() {
                        t.push(line);
                        let excess = t.len().saturating_sub(20);
                        t.drain(..excess);
                    }
                }
            });
        }
        let mut server = VllmServer { child };
        let deadline = Instant::now() + ready_timeout();
        let last_lines = || tail.lock().map(|t| t.join("\n")).unwrap_or_default();
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                // Let the readers catch the last lines.
                std::thread::sleep(Duration::from_millis(200));
                let lines = last_lines();
                if lines.contains("No module named vllm")
                    || lines.contains("No module named 'vllm'")
                {
                    return Err(usage(format!(
                        "--api local_vllm: vLLM is not installed for {python}: pip install vllm, or point PERF_VLLM_PYTHON at the Python that has it"
                    )));
                }
                return Err(usage(format!(
                    "--api local_vllm: vLLM exited ({status}) before it was ready; its last lines:\n{lines}"
                )));
            }
            if healthy(port) {
                break;
            }
            if Instant::now() >= deadline {
                return Err(usage(format!(
                    "--api local_vllm: vLLM was not healthy on 127.0.0.1:{port} after {:?} (PERF_VLLM_READY_TIMEOUT_S); its last lines:\n{}",
                    ready_timeout(),
                    last_lines()
                )));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        echo.store(false, std::sync::atomic::Ordering::Relaxed);
        log::info(format!(
            "vLLM is ready on http://127.0.0.1:{port}; its log goes on in vllm.log"
        ));
        Ok(server)
    }

    /// SIGTERM to the server's process group, up to 10 s, then SIGKILL.
    fn stop(&mut self) {
        let pid = self.child.id();
        if let Ok(mut running) = RUNNING.lock() {
            running.retain(|p| *p != pid);
        }
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        signal_group(pid, Signal::Term);
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                signal_group(pid, Signal::Kill); // any worker left behind
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        log::warn("vLLM did not stop within 10 s of SIGTERM; killing it");
        signal_group(pid, Signal::Kill);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for VllmServer {
    fn drop(&mut self) {
        self.stop();
    }
}

enum Signal {
    Term,
    Kill,
}

fn signal_group(pid: u32, signal: Signal) {
    #[cfg(unix)]
    {
        let sig = match signal {
            Signal::Term => libc::SIGTERM,
            Signal::Kill => libc::SIGKILL,
        };
        // SAFETY: killpg only sends a signal; a stale group id is harmless (ESRCH).
        unsafe {
            libc::killpg(pid as libc::pid_t, sig);
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (pid, signal);
    }
}

/// Kills every server still running, at once: the second Ctrl-C, which exits without
/// unwinding.
pub fn kill_all() {
    if let Ok(running) = RUNNING.lock() {
        for pid in running.iter() {
            signal_group(*pid, Signal::Kill);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_evalscopes() {
        let args = arguments("Qwen/Qwen2.5-0.5B-Instruct", 8877, 2).join(" ");
        assert_eq!(
            args,
            "-m vllm.entrypoints.openai.api_server --model Qwen/Qwen2.5-0.5B-Instruct --served-model-name Qwen/Qwen2.5-0.5B-Instruct --tensor-parallel-size 2 --max-model-len 32768 --gpu-memory-utilization 0.9 --host 127.0.0.1 --port 8877 --trust-remote-code --disable-log-requests --disable-log-stats"
        );
    }
}
