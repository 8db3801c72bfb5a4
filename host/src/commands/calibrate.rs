//! `perf calibrate`: this machine's client ceiling, measured before a user trusts a run.
//!
//! It starts the simulator as a separate process (`perf serve-mock`) and runs perf against it
//! as a user would, each a fresh process; with two or more cores the server is pinned to the
//! first and the client to the others, so neither steals the other's CPU. Two measurements:
//! - throughput: zero-delay server, 32-token streams, concurrency 64 — requests/s, chunks/s
//!   and client CPU per request;
//! - fidelity: time to first token 100 ms, 20 ms per token, 16 tokens, at rising concurrency —
//!   the client's p99 TTFT against the server's own timestamps (`--mock-log`: when it received
//!   each request and sent each chunk), for the same requests (matched by the `x-request-id`
//!   perf sends). The ceiling is the highest concurrency whose p99 error
//!   stays within 1 ms; the concurrency from which the client called itself saturated is
//!   reported beside it.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context};
use serde_json::Value;

use crate::aggregate::{metric, nearest_rank, Summary};
use crate::cli::CalibrateArgs;

/// A `perf serve-mock` child process.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(perf: &Path, core: Option<usize>, args: &[String]) -> anyhow::Result<Self> {
        let mut cmd = Command::new(perf);
        cmd.args(["serve-mock", "--port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        pin(&mut cmd, core.map(|c| c..c + 1));
        let mut child = cmd.spawn().context("cannot start perf serve-mock")?;
        let stdout = child
            .stdout
            .take()
            .context("no stdout from perf serve-mock")?;
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line)?;
        let address = line
            .trim()
            .rsplit(' ')
            .next()
            .filter(|a| a.starts_with("http://"))
            .with_context(|| format!("perf serve-mock said {line:?}"))?;
        Ok(Server {
            child,
            url: format!("{address}/v1/chat/completions"),
        })
    }

    /// Stops it with SIGINT (so it flushes its log) and waits.
    fn stop(mut self) {
        #[cfg(unix)]
        {
            // SAFETY: kill with a pid we own and a valid signal number.
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        }
        #[cfg(not(unix))]
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Confines `cmd`'s process to `cores` when given.
fn pin(cmd: &mut Command, cores: Option<std::ops::Range<usize>>) {
    if let Some(cores) = cores {
        crate::cpu::confine(cmd, cores);
    }
}

/// What one client run reported (read from its files, as any reader of results does).
struct Report {
    summary: Summary,
    percentiles: Vec<Value>,
    /// The run's directory (its benchmark_data.db).
    dir: PathBuf,
}

impl Report {
    fn percentile(&self, label: &str, key: &str) -> f64 {
        self.percentiles
            .iter()
            .find(|r| r["Percentiles"] == label)
            .and_then(|r| r[key].as_f64())
            .unwrap_or(f64::NAN)
    }
}

struct Calibration {
    perf: PathBuf,
    work: tempfile::TempDir,
    server_core: Option<usize>,
    client_cores: Option<std::ops::Range<usize>>,
    runs: u32,
}

impl Calibration {
    fn client(
        &mut self,
        url: &str,
        n: u64,
        parallel: u64,
        warmup: u64,
        tokens: u32,
    ) -> anyhow::Result<Report> {
        self.runs += 1;
        let out = self.work.path().join(format!("run{}", self.runs));
        let mut cmd = Command::new(&self.perf);
        cmd.args(["--url", url, "--model", "mock", "--prompt", "hello"])
            .args(["-n", &n.to_string(), "--parallel", &parallel.to_string()])
            .args([
                "--max-tokens",
                &tokens.to_string(),
                "--warmup-num",
                &warmup.to_string(),
            ])
            .args(["--sleep-interval", "0", "--log-every-n-query", "1000000000"])
            .arg("--outputs-dir")
            .arg(&out)
            .args(["--no-timestamp", "--name", "c"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        pin(&mut cmd, self.client_cores.clone());
        let result = cmd.output().context("cannot run the perf client")?;
        let dir = out
            .join("c")
            .join(format!("parallel_{parallel}_number_{n}"));
        let read = |f: &str| -> anyhow::Result<Value> {
            let text = std::fs::read_to_string(dir.join(f)).with_context(|| {
                format!(
                    "the client run left no {f}: {}",
                    String::from_utf8_lossy(&result.stderr)
                )
            })?;
            Ok(crate::output::parse_json_nan(&text)?)
        };
        let summary: Summary = serde_json::from_value(read("benchmark_summary.json")?)
            .context("the client run's benchmark_summary.json is not perf's")?;
        let percentiles = read("benchmark_percentile.json")?
            .as_array()
            .cloned()
            .unwrap_or_default();
        Ok(Report {
            summary,
            percentiles,
            dir,
        })
    }

    fn throughput(&mut self, quick: bool) -> anyhow::Result<Report> {
        let server = Server::start(
            &self.perf,
            self.server_core,
            &strings(&[
                "--mock-ttft-ms",
                "0",
                "--mock-tpot-ms",
                "0",
                "--mock-output-tokens",
                "32",
            ]),
        )?;
        let n = if quick { 3000 } else { 30000 };
        let report = self.client(&server.url.clone(), n, 64, 64, 32);
        server.stop();
        report
    }

    /// Client p99 TTFT, the server's own p99 TTFT and whether the client called itself
    /// saturated, at `streams` concurrent streams.
    fn fidelity(&mut self, streams: u64) -> anyhow::Result<(f64, f64, bool)> {
        let log = self.work.path().join(format!("server{streams}.jsonl"));
        let server = Server::start(
            &self.perf,
            self.server_core,
            &[
                strings(&["--mock-ttft-ms", "100", "--mock-tpot-ms", "20"]),
                strings(&["--mock-output-tokens", "16", "--mock-log"]),
                vec![log.to_string_lossy().into_owned()],
            ]
            .concat(),
        )?;
        let report = self.client(&server.url.clone(), 2 * streams, streams, streams, 16);
        server.stop();
        let report = report?;
        let saturated = report.summary.client_saturated == Some(true);
        // The same requests on both sides, matched by the x-request-id perf sends.
        if let Some((client, server)) = matched_ttft_ms(&log, &report.dir)? {
            let p99 = |v: &[f64]| nearest_rank(v, 99.0).unwrap_or(f64::NAN);
            return Ok((p99(&client), p99(&server), saturated));
        }
        let truth = server_ttft_ms(&log, 1 + streams)?;
        let server_p99 = nearest_rank(&truth, 99.0).unwrap_or(f64::NAN);
        Ok((
            report.percentile("99%", metric::TTFT),
            server_p99,
            saturated,
        ))
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The server's own TTFTs in ms (first chunk sent - request received), sorted, leaving out the
/// first `skip` requests (the connection test and the warmup).
fn server_ttft_ms(log: &Path, skip: u64) -> anyhow::Result<Vec<f64>> {
    let text =
        std::fs::read_to_string(log).with_context(|| format!("{} is missing", log.display()))?;
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let entry: Value = serde_json::from_str(line)?;
        let request = entry["request"].as_u64().unwrap_or(0);
        let first = entry["chunks"].get(0).and_then(Value::as_f64);
        if let (true, Some(first), Some(received)) =
            (request > skip, first, entry["received"].as_f64())
        {
            out.push((first - received) * 1000.0);
        }
    }
    out.sort_by(f64::total_cmp);
    Ok(out)
}

/// perf's TTFTs and the server's for the same requests (by `x-request-id`), each sorted, in
/// ms; `None` when no request matched.
fn matched_ttft_ms(log: &Path, run_dir: &Path) -> anyhow::Result<Option<(Vec<f64>, Vec<f64>)>> {
    let text =
        std::fs::read_to_string(log).with_context(|| format!("{} is missing", log.display()))?;
    let mut server = std::collections::HashMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let entry: Value = serde_json::from_str(line)?;
        let first = entry["chunks"].get(0).and_then(Value::as_f64);
        if let (Some(id), Some(first), Some(received)) =
            (entry["id"].as_str(), first, entry["received"].as_f64())
        {
            server.insert(id.to_string(), (first - received) * 1000.0);
        }
    }
    let db = rusqlite::Connection::open(run_dir.join("benchmark_data.db"))?;
    let mut stmt = db.prepare(
        "SELECT request_id, first_chunk_latency FROM result WHERE success = 1 AND request_id IS NOT NULL",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, Option<f64>>(1)?))
    })?;
    let (mut client, mut truth) = (Vec::new(), Vec::new());
    for row in rows {
        let (id, ttft) = row?;
        if let (Some(ttft), Some(s)) = (ttft, server.get(&id)) {
            client.push(ttft * 1000.0);
            truth.push(*s);
        }
    }
    if client.is_empty() {
        return Ok(None);
    }
    client.sort_by(f64::total_cmp);
    truth.sort_by(f64::total_cmp);
    Ok(Some((client, truth)))
}

/// The open-file limit: each stream needs a descriptor in each process.
fn file_limit() -> u64 {
    #[cfg(unix)]
    {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we own.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) } == 0 {
            #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every unix
            return l.rlim_cur as u64;
        }
    }
    1024
}

/// Runs the calibration and prints its table.
pub fn run(args: &CalibrateArgs) -> anyhow::Result<i32> {
    let perf = std::env::current_exe().context("cannot find the perf executable")?;
    let cores = crate::cpu::cores();
    let (server_core, client_cores) = if cores >= 2 {
        (Some(0), Some(1..cores))
    } else {
        (None, None)
    };
    let mut cal = Calibration {
        perf,
        work: tempfile::tempdir().context("cannot create a scratch directory")?,
        server_core,
        client_cores,
        runs: 0,
    };
    println!(
        "perf calibrate: {cores} core(s); {}",
        if cores >= 2 {
            format!(
                "simulator pinned to core 0, client to cores 1-{}",
                cores - 1
            )
        } else {
            "client and simulator share the only core".to_string()
        }
    );
    let t = cal.throughput(args.quick)?;
    let req_s = t.summary.req_per_s;
    let chunks_s = t.summary.output_tok_per_s;
    let cpu_us = 1e6 * t.summary.client_cpu_s.unwrap_or(f64::NAN) / t.summary.total as f64;
    println!(
        "throughput (zero-delay simulator, 32-token streams, 64 streams): {req_s:.0} requests/s, {chunks_s:.0} chunks/s, {cpu_us:.0} us of client CPU per request"
    );
    let steps: &[u64] = if args.quick {
        &[100, 300]
    } else {
        &[100, 300, 1000, 3000, 10000]
    };
    let limit = file_limit();
    let mut ceiling = None;
    let mut saturated_from = None;
    println!("\nfidelity (TTFT 100 ms, 20 ms/token, 16 tokens): client p99 TTFT against the server's own");
    println!(
        "{:>8} {:>14} {:>14} {:>10} {:>10}",
        "streams", "client p99 ms", "server p99 ms", "error ms", "saturated"
    );
    for &streams in steps {
        if streams + 64 > limit {
            println!("{streams:>8}  skipped: the open-file limit ({limit}) is below the streams it needs (raise ulimit -n)");
            break;
        }
        let (client, server, saturated) = cal.fidelity(streams)?;
        let error = client - server;
        println!("{streams:>8} {client:>14.2} {server:>14.2} {error:>+10.2} {saturated:>10}");
        if saturated && saturated_from.is_none() {
            saturated_from = Some(streams);
        }
        if error.abs() > 1.0 {
            break;
        }
        ceiling = Some(streams);
    }
    let Some(c) = ceiling else {
        bail!("even at {} streams the client's p99 TTFT was more than 1 ms off the server's: do not trust TTFT from this machine", steps[0]);
    };
    println!("\nclient ceiling on this machine: p99 TTFT within 1 ms of the server's up to {c} concurrent streams (the highest step tried that held)");
    if let Some(s) = saturated_from {
        println!("from {s} streams the client was saturated (see \"Client Saturated\" in the README): its TTFT stays exact on plain http, but sends leave late and the load it offers stops growing");
    }
    Ok(0)
}
