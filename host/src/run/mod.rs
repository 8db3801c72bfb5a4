//! A whole invocation: plugins created and validated, output directory and log, the simulator
//! when `--api mock`, the connection test, then each run of the sweep, the report, and the
//! exit code (0 done, 1 every request failed, 130 interrupted).

mod collect;
mod dispatch;
mod http;
mod sinks;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use perf_plugin_api::sdk::DatasetConfig;
use perf_plugin_api::{RunInfo, RunSummary, SessionInfo};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::aggregate::{ClientCpu, RunStats};
use crate::error::usage;
use crate::output::console::{self, RunOutcome};
use crate::output::{db::ResultDb, log, object, write_json};
use crate::plan::{redacted_url, PromptPlan, RunPlan, RunSpec};
use crate::plugin_host::PluginRegistry;
use crate::server::{self, mock::MockBackend, EpochClock};
use crate::worker::Exchange;
use collect::{named, Collector};
use dispatch::{Dispatch, PromptFeed};
use sinks::{SinkEvent, SinkHub};

/// How long in-flight requests may finish after the first Ctrl-C.
const GRACE: Duration = Duration::from_secs(3);

/// Exit code of an interrupted run (128 + SIGINT).
pub const INTERRUPTED: i32 = 130;

struct Interrupt {
    stop: CancellationToken,
    abort: CancellationToken,
}

fn watch_signals(rt: &tokio::runtime::Runtime) -> Interrupt {
    let stop = CancellationToken::new();
    let abort = CancellationToken::new();
    let (s, a) = (stop.clone(), abort.clone());
    rt.spawn(async move {
        crate::signals::first_signal().await;
        s.cancel();
        log::warn(format!(
            "interrupted: sending nothing new; in-flight requests get {GRACE:?} to finish, then the results so far are written (interrupt again to quit at once)"
        ));
        let a2 = a.clone();
        tokio::spawn(async move {
            tokio::time::sleep(GRACE).await;
            a2.cancel();
        });
        crate::signals::first_signal().await;
        log::flush();
        std::process::exit(INTERRUPTED);
    });
    Interrupt { stop, abort }
}

fn dataset_config(plan: &RunPlan, offset: u64) -> Option<(String, DatasetConfig)> {
    match &plan.prompts {
        PromptPlan::Fixed(_) => None,
        PromptPlan::Dataset { id, config } => {
            let mut c = (**config).clone();
            c.dataset_offset += offset;
            Some((id.clone(), c))
        }
    }
}

/// Runs the benchmark the plan describes.
pub fn run(plan: RunPlan, registry: Arc<PluginRegistry>) -> anyhow::Result<i32> {
    // Everything a user can get wrong is checked before any traffic.
    let adapter = registry.api_adapter(&plan.api_id, &plan.api)?;
    if let Some((id, config)) = dataset_config(&plan, 0) {
        registry.dataset_source(&id, &config, None)?;
    }
    let sinks = plan
        .sinks
        .iter()
        .map(|(id, config)| registry.result_sink(id, config))
        .collect::<Result<Vec<_>, _>>()?;
    let mut url = reqwest::Url::parse(&plan.http.url)
        .map_err(|e| usage(format!("--url is not a valid URL: {e}")))?;
    let headers = http::headers(&plan)?;
    let client = http::client(&plan)?;

    std::fs::create_dir_all(&plan.output_dir).with_context(|| {
        format!(
            "cannot create the output directory {}",
            plan.output_dir.display()
        )
    })?;
    log::open(&plan.output_dir.join("benchmark.log"), plan.debug)
        .context("cannot create benchmark.log")?;
    log::info(format!(
        "perf {} writing to {}",
        env!("CARGO_PKG_VERSION"),
        plan.output_dir.display()
    ));
    log::file_only(format!("arguments: {}", plan.args_json));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("perf-client")
        .build()
        .context("cannot start the async runtime")?;
    let _server = match &plan.mock {
        Some(mock) => {
            let port = url.port().unwrap_or(8877);
            let handle = server::spawn("127.0.0.1", port, Arc::new(MockBackend::new(mock.clone())), mock.mock_log.clone(), 1)
                .map_err(|e| usage(format!("cannot start the simulator on 127.0.0.1:{port}: {e}; pick a free port with --port")))?;
            log::info(format!("simulator listening on http://{}", handle.addr));
            // --port 0 lets the system pick a free port.
            let _ = url.set_port(Some(handle.addr.port()));
            Some(handle)
        }
        None => None,
    };
    let timed = crate::transport::TimedHttp::for_url(&url, plan.http.connect_timeout);
    let exchange = Arc::new(Exchange {
        timed,
        client,
        adapter,
        url,
        headers,
        read_timeout: plan.http.read_timeout,
        total_timeout: plan.http.total_timeout,
    });
    let interrupt = watch_signals(&rt);
    if plan.test_connection {
        rt.block_on(http::test_connection(&exchange, &plan))?;
        log::info("connection test passed");
    }

    let hub = SinkHub::start(sinks);
    hub.send(SinkEvent::Begin(SessionInfo {
        name: plan.name.as_str().into(),
        args_json: plan.args_json.to_string().into(),
        output_dir: plan.output_dir.to_string_lossy().as_ref().into(),
        started_unix_s: EpochClock::new().unix_s(Instant::now()),
    }));
    let mut outcomes = Vec::new();
    let mut offset = 0;
    for (i, spec) in plan.runs.iter().enumerate() {
        if interrupt.stop.is_cancelled() {
            break;
        }
        let outcome = run_one(
            &rt, &plan, spec, i, offset, &exchange, &registry, &hub, &interrupt,
        )?;
        outcomes.push(outcome);
        offset += spec.number;
        if i + 1 < plan.runs.len() && !plan.sleep_interval.is_zero() {
            log::info(format!(
                "sleeping {:?} before the next run",
                plan.sleep_interval
            ));
            let stop = interrupt.stop.clone();
            rt.block_on(async {
                tokio::select! {
                    _ = tokio::time::sleep(plan.sleep_interval) => {}
                    _ = stop.cancelled() => {}
                }
            });
        }
    }
    hub.close();
    report(&plan, &outcomes)?;
    log::flush();
    let total: f64 = outcomes
        .iter()
        .map(|o| summary_f64(&o.summary, "Total Requests"))
        .sum();
    let ok: f64 = outcomes
        .iter()
        .map(|o| summary_f64(&o.summary, "Success Requests"))
        .sum();
    Ok(if interrupt.stop.is_cancelled() {
        INTERRUPTED
    } else if total > 0.0 && ok == 0.0 {
        log::warn(
            "every request failed; see the error column of benchmark_data.db and benchmark.log",
        );
        1
    } else {
        0
    })
}

fn summary_f64(summary: &[(String, Value)], key: &str) -> f64 {
    summary
        .iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v.as_f64())
        .unwrap_or(0.0)
}

fn progress(label: &str, n: u64) -> ProgressBar {
    let bar = ProgressBar::new(n);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} {wide_bar} {pos}/{len} [{elapsed_precise}<{eta_precise}, {per_sec}]",
    ) {
        bar.set_style(style);
    }
    bar.set_message(format!("Processing[{label}]"));
    bar
}

fn prompt_feed(
    plan: &RunPlan,
    registry: &Arc<PluginRegistry>,
    offset: u64,
) -> anyhow::Result<PromptFeed> {
    Ok(match dataset_config(plan, offset) {
        None => match &plan.prompts {
            PromptPlan::Fixed(p) => PromptFeed::Fixed(p.clone()),
            PromptPlan::Dataset { .. } => {
                unreachable!("dataset_config is None only for a fixed prompt")
            }
        },
        Some((id, config)) => {
            let source = registry.dataset_source(&id, &config, None)?;
            let registry = registry.clone();
            PromptFeed::Dataset {
                source,
                reopen: Box::new(move || {
                    registry
                        .dataset_source(&id, &config, None)
                        .map_err(|e| e.to_string())
                }),
            }
        }
    })
}

#[allow(clippy::too_many_arguments)]
fn run_one(
    rt: &tokio::runtime::Runtime,
    plan: &RunPlan,
    spec: &RunSpec,
    index: usize,
    offset: u64,
    exchange: &Arc<Exchange>,
    registry: &Arc<PluginRegistry>,
    hub: &SinkHub,
    interrupt: &Interrupt,
) -> anyhow::Result<RunOutcome> {
    let dir = plan.output_dir.join(&spec.label);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let db_path = dir.join("benchmark_data.db");
    if db_path.exists() {
        return Err(usage(format!(
            "{} already exists: use another --outputs-dir or --name",
            db_path.display()
        )));
    }
    write_json(&dir.join("benchmark_args.json"), &plan.args_json)?;
    let parallel = spec.parallel.map_or(-1, |p| p as i64);
    let rate = spec.rate.unwrap_or(-1.0);
    log::info(format!(
        "run {}/{}: {} ({} measured request(s){})",
        index + 1,
        plan.runs.len(),
        spec.label,
        spec.number,
        if spec.warmup > 0 {
            format!(" after {} warmup", spec.warmup)
        } else {
            String::new()
        }
    ));
    if let Some(p) = spec.parallel {
        if spec.warmup > 0 && spec.warmup < p as u64 {
            log::warn(format!("--warmup-num {} is below --parallel {p}: the first measured requests start into a cold server", spec.warmup));
        }
    }
    hub.send(SinkEvent::RunStart(RunInfo {
        run_index: index as u32,
        label: spec.label.as_str().into(),
        parallel,
        number: spec.number,
        rate,
    }));

    let clock = EpochClock::new();
    let started = Instant::now();
    let cpu_start = crate::cpu::process_cpu_seconds();
    let db = ResultDb::create(&db_path, plan.db_commit_interval, clock.unix_s(started))
        .with_context(|| format!("cannot create {}", db_path.display()))?;
    let bar = progress(&spec.label, spec.number);
    log::set_bar(Some(bar.clone()));
    let (tx, rx) = std::sync::mpsc::channel();
    let collector = Collector {
        run_index: index as u32,
        clock,
        stats: RunStats::new(parallel, rate),
        db,
        sinks: hub.sender(),
        bar,
        log_every: plan.log_every_n,
    };
    let collecting = std::thread::Builder::new()
        .name("perf-collect".into())
        .spawn(move || collector.run(rx))
        .context("cannot start the collector thread")?;

    let dataset_error = Arc::new(Mutex::new(None::<String>));
    let errors = dataset_error.clone();
    let capacity = spec.parallel.unwrap_or(1024).clamp(64, 4096) * 2;
    let prompts = dispatch::feed(
        prompt_feed(plan, registry, offset)?,
        spec.warmup + spec.number,
        capacity,
        move |e| {
            log::warn(&e);
            if let Ok(mut slot) = errors.lock() {
                slot.get_or_insert(e);
            }
        },
    );
    // The dispatcher runs as a task on the runtime, beside its workers: driven by `block_on`
    // on this thread, every hand-off to a worker would be a cross-thread wake-up.
    let dispatch = rt.spawn(dispatch::run(
        Dispatch {
            exchange: exchange.clone(),
            spec: spec.clone(),
            run_index: index,
            max_tokens: plan.max_tokens,
            seed: plan.seed,
            duration: plan.duration,
            stop: interrupt.stop.clone(),
            abort: interrupt.abort.clone(),
        },
        prompts,
        tx,
    ));
    if let Err(e) = rt.block_on(dispatch) {
        log::warn(format!("the dispatcher stopped abnormally: {e}"));
    }
    let collected = collecting
        .join()
        .map_err(|_| anyhow::anyhow!("the collector thread panicked"))?;
    log::set_bar(None);
    if collected.warmup > 0 {
        log::info(format!(
            "{} warmup request(s) were sent and left out of every metric",
            collected.warmup
        ));
    }
    let cpu = match (cpu_start, crate::cpu::process_cpu_seconds()) {
        (Some(a), Some(b)) => Some(ClientCpu {
            seconds: b - a,
            wall_s: started.elapsed().as_secs_f64(),
        }),
        _ => None,
    };
    if let Err(e) = collected.db.finish() {
        log::warn(format!("finishing benchmark_data.db failed: {e}"));
    }
    let summary = collected.stats.summary(cpu);
    let percentiles = collected.stats.percentiles();
    finish_run(
        plan,
        spec,
        index,
        &dir,
        &summary,
        &percentiles,
        collected.stats.total(),
        hub,
    )?;
    if let Ok(Some(e)) = dataset_error.lock().map(|s| s.clone()) {
        log::warn(format!("this run ended early because {e}"));
    }
    Ok(RunOutcome {
        spec: spec.clone(),
        summary,
        percentiles,
    })
}

#[allow(clippy::too_many_arguments)]
fn finish_run(
    plan: &RunPlan,
    spec: &RunSpec,
    index: usize,
    dir: &Path,
    summary: &[(String, Value)],
    percentiles: &[Vec<(String, Value)>],
    measured: u64,
    hub: &SinkHub,
) -> anyhow::Result<()> {
    write_json(&dir.join("benchmark_summary.json"), &object(summary))?;
    let rows: Vec<Value> = percentiles.iter().map(|r| object(r)).collect();
    write_json(&dir.join("benchmark_percentile.json"), &Value::Array(rows))?;
    let text = format!(
        "{}\n{}",
        console::summary_table(summary),
        console::percentile_table(percentiles)
    );
    println!("{text}");
    log::file_only(&text);
    for warning in trust_warnings(plan, spec, summary) {
        log::warn(warning);
    }
    if measured < spec.number {
        log::warn(format!(
            "{} of {} requests were measured (duration, interruption or dataset end)",
            measured, spec.number
        ));
    }
    hub.send(SinkEvent::RunEnd(RunSummary {
        run_index: index as u32,
        summary: named(summary),
        percentiles: percentiles
            .iter()
            .map(|r| perf_plugin_api::PercentileRow {
                label: r.first().and_then(|(_, v)| v.as_str()).unwrap_or("").into(),
                values: named(&r[1..]),
            })
            .collect(),
    }));
    Ok(())
}

/// When the client itself may have distorted the numbers, say so.
fn trust_warnings(plan: &RunPlan, spec: &RunSpec, summary: &[(String, Value)]) -> Vec<String> {
    let mut out = Vec::new();
    let util = summary_f64(summary, "Client CPU Util (%)");
    let cores = crate::cpu::cores() as f64;
    if util > 85.0 * cores {
        let note = if plan.mock.is_some() {
            " (this includes the in-process simulator)"
        } else {
            ""
        };
        out.push(format!(
            "perf used {util:.0}% CPU on {cores} core(s){note}: the client may be the bottleneck, and its latencies may include its own queueing; lower --parallel/--rate or run the client on its own cores"
        ));
    }
    let lag = summary_f64(summary, "P99 Dispatch Lag (ms)");
    if spec.rate.is_some() && spec.parallel.is_none() && lag > 10.0 {
        out.push(format!(
            "p99 dispatch lag is {lag:.1} ms: requests left later than the --rate schedule wanted, so the realised load is below the requested one"
        ));
    }
    out
}

fn report(plan: &RunPlan, outcomes: &[RunOutcome]) -> anyhow::Result<()> {
    if outcomes.is_empty() {
        return Ok(());
    }
    let dataset = match &plan.prompts {
        PromptPlan::Fixed(_) => "--prompt".to_string(),
        PromptPlan::Dataset { id, .. } => id.clone(),
    };
    let text = console::sweep_report(
        &plan.api.model,
        &redacted_url(&plan.http.url),
        &plan.api_flag,
        &dataset,
        &plan.output_dir.to_string_lossy(),
        outcomes,
    );
    println!("{text}");
    log::file_only(&text);
    std::fs::write(
        plan.output_dir.join("performance_summary.txt"),
        format!("{text}\n"),
    )
    .context("cannot write performance_summary.txt")
}
