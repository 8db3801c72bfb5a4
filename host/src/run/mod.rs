//! A whole invocation: plugins created and validated, output directory and log, the simulator
//! when `--api mock`, the connection test, then each run of the sweep, the report, and the
//! exit code (0 done, 1 every request failed, 130 interrupted).

mod barrier;
mod clock;
mod collect;
mod conversation;
mod dispatch;
mod http;
mod one;
mod probe;
mod sinks;
mod sla;

pub use conversation::Talk;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use perf_plugin_api::sdk::DatasetConfig;
use perf_plugin_api::SessionInfo;
use tokio_util::sync::CancellationToken;

use crate::error::usage;
use crate::output::console::{self, RunOutcome};
use crate::output::log;
use crate::plan::{redacted_url, PromptPlan, RunPlan};
use crate::plugin_host::PluginRegistry;
use crate::tokenizer::HostTokenizer;
use crate::worker::Exchange;
use perf_server::MockBackend;
use perf_timing::EpochClock;
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
            "interrupted: sending nothing new; in-flight requests get {GRACE:?} to finish, then the results so far are written (interrupt again to cancel them now)"
        ));
        let a2 = a.clone();
        tokio::spawn(async move {
            tokio::time::sleep(GRACE).await;
            a2.cancel();
        });
        crate::signals::first_signal().await;
        log::warn(
            "interrupted again: cancelling the requests in flight; the results so far are written (a third interrupt quits at once)",
        );
        crate::local_vllm::kill_all();
        a.cancel();
        crate::signals::default_from_now_on();
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

/// The requests a replayed trace holds, read once from `source`.
fn trace_length(source: &mut crate::plugin_host::DatasetSource, id: &str) -> anyhow::Result<u64> {
    let mut n = 0u64;
    while source
        .next_item()
        .map_err(|e| usage(format!("the {id} dataset failed: {e}")))?
        .is_some()
    {
        n += 1;
    }
    Ok(n.max(1))
}

/// Everything one invocation shares between its runs.
struct Session<'a> {
    rt: tokio::runtime::Runtime,
    plan: &'a RunPlan,
    exchange: Arc<Exchange>,
    registry: Arc<PluginRegistry>,
    hub: SinkHub,
    interrupt: Interrupt,
    tokenizer: Option<HostTokenizer>,
    /// `--enable-progress-tracker`'s progress.json.
    progress: Option<Arc<crate::output::progress::ProgressTracker>>,
    /// `--shard-sync`: where this shard meets the others before each run.
    sync: Option<barrier::Barrier>,
}

/// Runs the benchmark the plan describes.
pub fn run(mut plan: RunPlan, registry: Arc<PluginRegistry>) -> anyhow::Result<i32> {
    crate::signals::report_file_size_limits();
    // Everything a user can get wrong is checked before any traffic.
    let adapter = registry.api_adapter(&plan.api_id, &plan.api)?;
    let tokenizer = match &plan.tokenizer_path {
        Some(path) => Some(HostTokenizer::locate(path, &plan.data_source).map_err(usage)?),
        None => None,
    };
    if let Some((id, config)) = dataset_config(&plan, 0) {
        let mut source =
            registry.dataset_source(&id, &config, tokenizer.as_ref().map(HostTokenizer::handle))?;
        if plan.whole_trace {
            // evalscope replays the whole trace unless --number says how much of it; the
            // directory keeps the --number it was given (rate_-1.0_number_1000 by default),
            // as evalscope names it, and the warmup requests are the trace's first ones.
            let n = trace_length(&mut source, &id)?;
            let warmup = crate::plan::warmup(plan.warmup_num, n).min(n - 1);
            for run in &mut plan.runs {
                run.number = n - warmup;
                run.warmup = warmup;
            }
            source = registry.dataset_source(
                &id,
                &config,
                tokenizer.as_ref().map(HostTokenizer::handle),
            )?;
        }
        // A dataset that cannot give a single prompt would make a run that measures nothing.
        match source.next_item() {
            Ok(Some(_)) => {}
            Ok(None) => {
                return Err(usage(format!(
                    "--dataset {id} yielded no prompt: check --dataset-path and the length filters (--min-prompt-length, --max-prompt-length)"
                )))
            }
            Err(e) => return Err(usage(format!("--dataset {id}: {e}"))),
        }
    }
    let sinks = plan
        .sinks
        .iter()
        .map(|(id, config)| registry.result_sink(id, config))
        .collect::<Result<Vec<_>, _>>()?;
    let url = reqwest::Url::parse(&plan.http.url)
        .map_err(|e| usage(format!("--url is not a valid URL: {e}")))?;
    let headers = http::headers(&plan)?;
    open_output(&plan)?;
    if let Some(s) = &plan.shard {
        crate::worker::set_shard(s.index);
        log::info(format!(
            "shard {} of {} (0-based, from {}): its share of every run",
            s.index, s.count, s.source
        ));
    }
    let tls = http::tls_config(&plan, &url)?;
    let client = http::client(&plan, tls.as_ref())?;
    // Stopped when dropped: on success, on any error below, after a Ctrl-C.
    let _vllm = match &plan.local_vllm {
        Some(port) => Some(crate::local_vllm::VllmServer::start(
            &plan.api.model,
            *port,
            plan.data_source == "modelscope",
            &plan.output_dir,
        )?),
        None => None,
    };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("perf-client")
        .build()
        .context("cannot start the async runtime")?;
    let (url, _simulator) = start_simulator(&plan, url)?;
    let (url, _local) = start_local(&plan, &registry, url)?;
    let proxy = http::proxy(&plan, &url)?;
    let timed =
        crate::transport::TimedHttp::for_url(&url, plan.http.connect_timeout, tls.clone(), proxy)
            .map_err(usage)?;
    let exchange = Arc::new(Exchange {
        timed,
        reqwest: crate::worker::Reqwest {
            pooled: client,
            fresh: http::fresh_client(&plan, tls.as_ref())?,
            reuse: Default::default(),
            server: crate::plan::redacted_url(url.as_str()),
        },
        adapter,
        url,
        headers,
        read_timeout: plan.http.read_timeout,
        total_timeout: plan.http.total_timeout,
        limits: plan.http.limits,
        keep_messages: plan.response_messages.keeps_chunks(),
        in_flight: Default::default(),
    });
    let interrupt = watch_signals(&rt);
    if plan.test_connection {
        // The test prompt takes the form every prompt takes (token ids with
        // --tokenize-prompt).
        let mut item =
            perf_plugin_api::DatasetItem::new(perf_plugin_api::PromptItem::Text("hello".into()));
        if let (true, Some(tok)) = (plan.api.tokenize_prompt, &tokenizer) {
            tok.tokenize_item(&mut item, plan.api.apply_chat_template)
                .map_err(usage)?;
        }
        rt.block_on(http::test_connection(&exchange, &plan, item))?;
        log::info("connection test passed");
    }
    let mut sync = None;
    if let Some(s) = &plan.shard {
        let offset = rt.block_on(clock::offset(&exchange.reqwest.pooled, &exchange.url));
        match &offset {
            Some(o) => log::info(format!(
                "this clock is {:+.4} s (±{:.4}) from the server's (its Date header)",
                o.offset_s, o.uncertainty_s
            )),
            None => log::warn(
                "the server sent no Date header: perf merge cannot estimate this shard's clock skew",
            ),
        }
        crate::output::write_json(
            &plan.output_dir.join("shard.json"),
            &shard_json(&plan, s, offset),
        )?;
        if let Some(dir) = &plan.shard_sync {
            sync = Some(barrier::Barrier::join(dir, s, offset)?);
        }
    }
    let progress = match (plan.progress_tracker, &plan.sla) {
        (true, None) => {
            let total = plan.runs.iter().map(|r| r.number).sum();
            Some(Arc::new(
                crate::output::progress::ProgressTracker::start(&plan.output_dir, total)
                    .context("cannot write progress.json")?,
            ))
        }
        (true, Some(_)) => {
            log::warn("--enable-progress-tracker: an SLA search has no fixed number of requests, so no progress.json is written (as in evalscope)");
            None
        }
        _ => None,
    };
    let session = Session {
        rt,
        plan: &plan,
        exchange,
        registry,
        hub: SinkHub::start(sinks),
        interrupt,
        tokenizer,
        progress,
        sync,
    };
    let result = match &plan.sla {
        Some(sla) => session.sla_search(sla).map(|(o, sla)| (o, Some(sla), None)),
        None => session.sweep().map(|(o, verdict)| (o, None, verdict)),
    };
    let interrupted = session.interrupt.stop.is_cancelled();
    if let Some(p) = &session.progress {
        p.finish(match (&result, interrupted) {
            (Err(_), _) => Some("failed"),
            (Ok(_), true) => Some("interrupted"),
            _ => None,
        });
    }
    let (outcomes, sla, verdict) = result?;
    // The report before the sinks finish: its tables reach the console and benchmark.log (which
    // a sink may send on, as ClearML's does) first, and a sink slow to finish cannot hold them.
    let reported = report(&plan, &outcomes, sla.as_ref(), verdict.as_deref());
    log::flush();
    session.hub.close();
    log::flush();
    reported?;
    Ok(exit_code(&outcomes, interrupted))
}

/// `shard.json`: what `perf merge` needs to combine this shard with the others.
fn shard_json(
    plan: &RunPlan,
    s: &crate::plan::shard::Shard,
    offset: Option<clock::Offset>,
) -> serde_json::Value {
    let runs: Vec<serde_json::Value> = plan
        .runs
        .iter()
        .map(|r| {
            let share = r.share.as_ref();
            serde_json::json!({
                "label": r.label,
                "parallel": r.parallel, "number": r.number, "rate": r.rate, "warmup": r.warmup,
                "skip": share.map(|x| x.skip),
                "whole_parallel": share.and_then(|x| x.whole_parallel),
                "whole_number": share.map(|x| x.whole_number),
                "whole_rate": share.and_then(|x| x.whole_rate),
                "whole_warmup": share.map(|x| x.whole_warmup),
            })
        })
        .collect();
    serde_json::json!({
        "perf_version": env!("CARGO_PKG_VERSION"),
        "index": s.index,
        "count": s.count,
        "source": s.source,
        "host": crate::output::host_name(),
        "pid": std::process::id(),
        "start_at": plan.start_at,
        "written_unix": crate::plan::shard::now_unix(),
        // This machine's Unix clock against the server's: the records' times are this clock's.
        "server_clock": offset,
        "args": plan.args_json,
        "runs": runs,
    })
}

fn open_output(plan: &RunPlan) -> anyhow::Result<()> {
    let dir = plan.output_dir.display();
    std::fs::create_dir_all(&plan.output_dir).map_err(|e| {
        usage(format!(
            "cannot create the output directory {dir}: {e}; pick another --outputs-dir"
        ))
    })?;
    log::open(&plan.output_dir.join("benchmark.log"), plan.debug).map_err(|e| {
        usage(format!(
            "cannot write {dir}/benchmark.log: {e}; pick another --outputs-dir"
        ))
    })?;
    log::info(format!(
        "perf {} writing to {}",
        env!("CARGO_PKG_VERSION"),
        plan.output_dir.display()
    ));
    log::file_only(format!("arguments: {}", plan.args_json));
    for warning in &plan.warnings {
        log::warn(warning);
    }
    Ok(())
}

/// Starts the simulator for `--api mock`; returns the URL to use (`--port 0` picks a port).
fn start_simulator(
    plan: &RunPlan,
    mut url: reqwest::Url,
) -> anyhow::Result<(reqwest::Url, Option<perf_server::ServerHandle>)> {
    let Some(mock) = &plan.mock else {
        return Ok((url, None));
    };
    let port = url.port().unwrap_or(8877);
    let handle = perf_server::spawn(
        "127.0.0.1",
        port,
        Arc::new(MockBackend::new(crate::plan::simulator(mock))),
        mock.mock_log.clone(),
        1,
    )
    .map_err(|e| {
        usage(format!(
            "cannot start the simulator on 127.0.0.1:{port}: {e}; pick a free port with --port"
        ))
    })?;
    log::info(format!("simulator listening on http://{}", handle.addr));
    let _ = url.set_port(Some(handle.addr.port()));
    Ok((url, Some(handle)))
}

/// `--api local`: the model from its backend plugin, served on `--port`.
fn start_local(
    plan: &RunPlan,
    registry: &PluginRegistry,
    mut url: reqwest::Url,
) -> anyhow::Result<(reqwest::Url, Option<perf_server::ServerHandle>)> {
    let Some((port, options)) = &plan.local else {
        return Ok((url, None));
    };
    // The first LocalModel plugin: a built-in one, else the first `--plugin` library's (or
    // the backend found beside the binary).
    let Some(entry) = registry
        .of_kind(perf_plugin_api::PluginKind::LocalModel)
        .next()
    else {
        return Err(usage(crate::local_model::missing_backend_message()));
    };
    let id = entry.info.id.to_string();
    let dir = crate::local_model::model_dir(&plan.api.model, &plan.data_source).map_err(usage)?;
    let tokenizer = HostTokenizer::load(&dir).map_err(usage)?;
    log::info(format!("loading {} with the '{id}' backend", dir.display()));
    let config = perf_plugin_api::sdk::ModelConfig {
        options: options.clone(),
    };
    let model = registry
        .local_model(&id, &dir.to_string_lossy(), &config)
        .map_err(|e| usage(e.to_string()))?;
    let backend = crate::local_model::LocalBackend::new(model, tokenizer, plan.api.model.clone());
    let handle = perf_server::spawn("127.0.0.1", *port, Arc::new(backend), None, 2).map_err(|e| {
        usage(format!(
            "cannot start the local model server on 127.0.0.1:{port}: {e}; pick a free port with --port"
        ))
    })?;
    log::info(format!(
        "local model server listening on http://{}",
        handle.addr
    ));
    let _ = url.set_port(Some(handle.addr.port()));
    Ok((url, Some(handle)))
}

impl Session<'_> {
    /// Tells the sinks the invocation began.
    fn begin(&self) {
        let plan = self.plan;
        // Sinks see the model and the URL actually benchmarked (the simulator's port, the
        // model `--api mock` defaults to), secrets still masked.
        let mut args = plan.args_json.clone();
        if let Some(map) = args.as_object_mut() {
            map.insert("model".into(), plan.api.model.clone().into());
            map.insert(
                "url".into(),
                crate::plan::redacted_url(self.exchange.url.as_str()).into(),
            );
        }
        self.hub.send(SinkEvent::Begin(SessionInfo {
            name: plan.name.as_str().into(),
            args_json: args.to_string().into(),
            output_dir: plan.output_dir.to_string_lossy().as_ref().into(),
            started_unix_s: EpochClock::new().unix_s(Instant::now()),
            ext: Default::default(),
        }));
    }

    /// Each run of the sweep, `--sleep-interval` apart, until done, interrupted or (with
    /// `--stop-on-saturation`) over-saturated; returns the runs and the over-saturation
    /// verdict, if a run had one.
    fn sweep(&self) -> anyhow::Result<(Vec<RunOutcome>, Option<String>)> {
        let plan = self.plan;
        self.begin();
        let mut outcomes: Vec<RunOutcome> = Vec::new();
        let mut offset = 0;
        let mut verdict = None;
        let mut stopped_by_another = false;
        for (i, spec) in plan.runs.iter().enumerate() {
            if self.interrupt.stop.is_cancelled() {
                break;
            }
            if i == 0 {
                self.wait_for_start();
            }
            // With --start-at, the first run's instant is already common to every shard.
            if (i > 0 || plan.start_at.is_none()) && !self.meet(i, &spec.label) {
                stopped_by_another = true;
                break;
            }
            if self.interrupt.stop.is_cancelled() {
                break;
            }
            // A shard reads its slice of the whole run's prompts.
            let skip = spec.share.as_ref().map_or(0, |s| s.skip);
            let outcome = self.run_one(spec, i, offset + skip)?;
            if let Some(before) = outcomes.last() {
                if let Some(why) =
                    crate::aggregate::saturation::verdict(&before.summary, &outcome.summary)
                {
                    let text = format!("over-saturated at run {} ({}): {why}", i + 1, spec.label);
                    log::warn(&text);
                    verdict.get_or_insert(text);
                }
            }
            outcomes.push(outcome);
            offset += spec.share.as_ref().map_or(spec.number, |s| s.whole_number);
            if verdict.is_some() && plan.stop_on_saturation && i + 1 < plan.runs.len() {
                log::warn(format!(
                    "--stop-on-saturation: the sweep stops here; {} run(s) not run",
                    plan.runs.len() - i - 1
                ));
                break;
            }
            if i + 1 < plan.runs.len() {
                self.sleep_between_runs();
            }
        }
        // The other shards would wait for a run this one will not start: they stop too.
        if let (Some(sync), false) = (&self.sync, stopped_by_another) {
            if outcomes.len() < plan.runs.len() {
                let why = if self.interrupt.stop.is_cancelled() {
                    "interrupted"
                } else {
                    "over-saturated (--stop-on-saturation)"
                };
                if let Err(e) = sync.stop(outcomes.len(), why) {
                    log::warn(format!(
                        "{e:#}: the other shards wait for this one until their patience runs out"
                    ));
                }
            }
        }
        Ok((outcomes, verdict))
    }

    /// `--start-at`: waits for the instant (an interrupt cuts it short).
    fn wait_for_start(&self) {
        let Some(at) = self.plan.start_at else {
            return;
        };
        let wait = at - crate::plan::shard::now_unix();
        if wait <= 0.0 {
            log::warn(format!(
                "--start-at passed {:.3} s before the first run was ready; starting now",
                -wait
            ));
            return;
        }
        log::info(format!("waiting {wait:.3} s for --start-at {at:.3}"));
        let stop = self.interrupt.stop.clone();
        self.rt.block_on(async {
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_secs_f64(wait)) => {}
                _ = stop.cancelled() => {}
            }
        });
    }

    /// `--shard-sync`: waits until every shard starts run `i`; false when another shard ended
    /// the sweep before it. A mark that cannot be written costs the alignment, not the runs
    /// measured so far: the run starts at once.
    fn meet(&self, i: usize, label: &str) -> bool {
        let Some(sync) = &self.sync else {
            return true;
        };
        log::info(format!(
            "waiting for the other shards to be ready for {label}"
        ));
        let met = match self.rt.block_on(sync.wait(i, &self.interrupt.stop)) {
            Ok(met) => met,
            Err(e) => {
                log::warn(format!(
                    "{e:#}: {label} starts without waiting for the other shards"
                ));
                return true;
            }
        };
        match met {
            barrier::Met::All { late_s } if late_s > 0.0 => log::warn(format!(
                "{label} started {late_s:.3} s after the shards' common start: the last shard's mark reached this one late (a slow shared file system?)"
            )),
            barrier::Met::All { .. } => log::info(format!("every shard starts {label} now")),
            barrier::Met::Without(missing) => log::warn(format!(
                "shard(s) {missing:?} were not ready for {label} within {} s; starting without them",
                barrier::PATIENCE.as_secs()
            )),
            barrier::Met::Stopped { shard, why } => {
                log::warn(format!(
                    "shard {shard} ended the sweep before {label} ({why}): so does this one"
                ));
                return false;
            }
            barrier::Met::Interrupted => {}
        }
        true
    }

    /// `--sleep-interval` before the next run; an interrupt cuts it short.
    fn sleep_between_runs(&self) {
        let pause = self.plan.sleep_interval;
        if pause.is_zero() {
            return;
        }
        log::info(format!("sleeping {pause:?} before the next run"));
        let stop = self.interrupt.stop.clone();
        self.rt.block_on(async {
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stop.cancelled() => {}
            }
        });
    }
}

fn exit_code(outcomes: &[RunOutcome], interrupted: bool) -> i32 {
    let total: u64 = outcomes.iter().map(|o| o.summary.total).sum();
    let ok: u64 = outcomes.iter().map(|o| o.summary.succeeded).sum();
    if let Some(e) = outcomes.iter().find_map(|o| o.write_error.as_ref()) {
        log::warn(format!(
            "benchmark_data.db misses rows ({e}); the results are incomplete"
        ));
        1
    } else if interrupted {
        INTERRUPTED
    } else if total == 0 {
        log::warn("no request was measured; see benchmark.log for why");
        1
    } else if ok == 0 {
        log::warn(
            "every request failed; see the error column of benchmark_data.db and benchmark.log",
        );
        1
    } else {
        0
    }
}

fn report(
    plan: &RunPlan,
    outcomes: &[RunOutcome],
    sla: Option<&crate::sla::Outcome>,
    verdict: Option<&str>,
) -> anyhow::Result<()> {
    if outcomes.is_empty() {
        return Ok(());
    }
    let dataset = match &plan.prompts {
        PromptPlan::Fixed(_) => "--prompt".to_string(),
        PromptPlan::Dataset { id, .. } => id.clone(),
    };
    let text = console::sweep_report(
        &console::ReportInfo {
            model: &plan.api.model,
            dataset: &dataset,
            api: &plan.api_flag,
            endpoint: &redacted_url(&plan.http.url),
            output: &plan.output_dir.to_string_lossy(),
        },
        outcomes,
    );
    let mut text = text;
    if let Some(v) = verdict {
        text.push_str(&format!("\nOver-saturation: {v}"));
    }
    if let Some(sla) = sla {
        text.push_str(&format!("\n{}", sla.tables()));
    }
    let text = crate::output::redact::redact(&text);
    println!("{text}");
    log::file_only(&text);
    crate::output::write_atomically(
        &plan.output_dir.join("performance_summary.txt"),
        format!("{text}\n").as_bytes(),
    )?;
    // As evalscope: a report that cannot be made is a warning, not a failed run.
    match crate::commands::report::write(&plan.output_dir) {
        Ok(path) => log::info(format!("report: {}", path.display())),
        Err(e) => log::warn(format!("cannot write {}: {e:#}", perf_report::REPORT_FILE)),
    }
    Ok(())
}
