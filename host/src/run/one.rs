//! One run of a sweep: its directory, the collector, the prompt feed, the dispatch, and the
//! files and tables at its end.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use perf_plugin_api::{DatasetItem, PromptItem, RunInfo, RunSummary};

use super::collect::{named, Collected, Collector};
use super::dispatch::{self, Dispatch, PromptFeed};
use super::sinks::SinkEvent;
use super::{dataset_config, Session};
use crate::aggregate::{ClientLoad, Percentiles, RunStats};
use crate::error::usage;
use crate::output::console::{self, RunOutcome};
use crate::output::{db::ResultDb, log, write_json, write_json_nan};
use crate::plan::{PromptPlan, RunPlan, RunSpec};
use crate::tokenizer::HostTokenizer;
use perf_timing::EpochClock;

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

/// The run's directory with `benchmark_args.json`; refuses to overwrite a database.
fn run_dir(plan: &RunPlan, spec: &RunSpec, offset: u64) -> anyhow::Result<PathBuf> {
    let dir = plan.output_dir.join(&spec.label);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let db_path = dir.join("benchmark_data.db");
    if db_path.exists() {
        return Err(usage(format!(
            "{} already exists: use another --outputs-dir or --name",
            db_path.display()
        )));
    }
    let args = crate::plan::args::for_run(&plan.args_json, spec, &dir, plan_offset(plan) + offset);
    write_json(&dir.join("benchmark_args.json"), &args)?;
    Ok(dir)
}

/// `--dataset-offset`: where the first run's prompts start.
fn plan_offset(plan: &RunPlan) -> u64 {
    match &plan.prompts {
        PromptPlan::Dataset { config, .. } => config.dataset_offset,
        PromptPlan::Fixed(_) => 0,
    }
}

fn announce(plan: &RunPlan, spec: &RunSpec, index: usize) {
    let warmup = if spec.warmup > 0 {
        format!(" after {} warmup", spec.warmup)
    } else {
        String::new()
    };
    log::info(format!(
        "run {}/{}: {} ({} measured request(s){warmup})",
        index + 1,
        plan.runs.len(),
        spec.label,
        spec.number
    ));
    if let Some(p) = spec.parallel {
        if spec.warmup > 0 && spec.warmup < p as u64 {
            log::warn(format!("--warmup-num {} is below --parallel {p}: the first measured requests start into a cold server", spec.warmup));
        }
    }
}

impl Session<'_> {
    fn prompt_feed(&self, offset: u64) -> anyhow::Result<PromptFeed> {
        let Some((id, config)) = dataset_config(self.plan, offset) else {
            return match &self.plan.prompts {
                PromptPlan::Fixed(p) => {
                    let mut item = DatasetItem::new(PromptItem::Text(p.as_str().into()));
                    if let Some(prepare) = self.prepare() {
                        prepare(&mut item);
                    }
                    Ok(PromptFeed::Fixed(item))
                }
                PromptPlan::Dataset { .. } => {
                    unreachable!("dataset_config is None only for a fixed prompt")
                }
            };
        };
        let handle = |t: &Option<HostTokenizer>| t.as_ref().map(HostTokenizer::handle);
        let source = self
            .registry
            .dataset_source(&id, &config, handle(&self.tokenizer))?;
        let registry = self.registry.clone();
        let tokenizer = self.tokenizer.clone();
        Ok(PromptFeed::Dataset {
            source,
            reopen: Box::new(move || {
                registry
                    .dataset_source(&id, &config, handle(&tokenizer))
                    .map_err(|e| e.to_string())
            }),
            once: self.plan.replays_schedule,
        })
    }

    /// Readies prompts with the host's tokenizer, when there is one: `--tokenize-prompt` turns
    /// text and chat messages into token ids (messages through the chat template, text
    /// without special tokens, as evalscope does); otherwise prompts that datasets did not
    /// count are counted (chat template, images by patch count).
    fn prepare(&self) -> Option<dispatch::Prepare> {
        let tok = self.tokenizer.clone()?;
        let chat = self.plan.api.apply_chat_template;
        let patch = self.plan.image_patch_size;
        if self.plan.api.tokenize_prompt {
            return Some(Box::new(move |item: &mut DatasetItem| {
                if let Err(e) = tok.tokenize_item(item, chat) {
                    log::warn_once(&format!("--tokenize-prompt: {e}"));
                }
            }));
        }
        Some(Box::new(move |item: &mut DatasetItem| {
            if item.prompt_tokens.is_some() {
                return;
            }
            if let Ok(Some(n)) = tok.item_tokens(item, chat, patch) {
                item.prompt_tokens = Some(n as u64).into();
            }
        }))
    }

    /// One run: returns its summary and percentiles.
    pub(super) fn run_one(
        &self,
        spec: &RunSpec,
        index: usize,
        offset: u64,
    ) -> anyhow::Result<RunOutcome> {
        let plan = self.plan;
        let dir = run_dir(plan, spec, offset)?;
        announce(plan, spec, index);
        let parallel = spec.parallel.map_or(-1, |p| p as i64);
        let rate = spec.rate.unwrap_or(-1.0);
        self.hub.send(SinkEvent::RunStart(RunInfo {
            run_index: index as u32,
            label: spec.label.as_str().into(),
            parallel,
            number: spec.number,
            rate,
            ext: Default::default(),
        }));
        let clock = EpochClock::new();
        let started = Instant::now();
        let cpu_start = crate::cpu::process_cpu_seconds();
        let unavailable_start = crate::cpu::unavailable_core_seconds();
        let db_path = dir.join("benchmark_data.db");
        let db = ResultDb::create(
            &db_path,
            plan.db_commit_interval,
            clock.unix_s(started),
            plan.response_messages,
        )
        .with_context(|| format!("cannot create {}", db_path.display()))?;
        let bar = progress(&spec.label, spec.number);
        log::set_bar(Some(bar.clone()));
        let live = self
            .plan
            .server_metrics
            .as_ref()
            .map(|_| crate::server_metrics::Live::default());
        let collector = Collector {
            server: live.clone(),
            run_index: index as u32,
            clock,
            stats: RunStats::new(parallel, rate)
                .input_only(plan.input_only)
                .decisions(plan.decisions)
                .goodput(plan.goodput)
                .pd_metrics(plan.pd_metrics)
                .replay(plan.replays_schedule),
            db,
            sinks: self.hub.sender(),
            in_flight: self.exchange.in_flight.clone(),
            bar,
            log_every: plan.log_every_n,
            tokenizer: self.tokenizer.clone(),
            image_patch_size: self.plan.image_patch_size,
            progress: self.progress.clone(),
            label: spec.label.clone(),
        };
        if let Some(p) = &self.progress {
            p.run_started(&spec.label);
        }
        let scraper = self.plan.server_metrics.as_ref().map(|(url, every)| {
            let url = url
                .clone()
                .unwrap_or_else(|| crate::server_metrics::default_url(self.exchange.url.as_str()));
            crate::server_metrics::Scraper::start(
                &self.rt,
                url,
                *every,
                crate::server_metrics::file_in(&dir),
                live.clone().unwrap_or_default(),
            )
        });
        let probe = super::probe::LoopProbe::start(self.rt.handle().clone());
        let dispatched = self.dispatch(spec, index, offset, collector);
        let scraped = scraper.map(|s| s.finish(&self.rt));
        let (collected, dataset_error) = dispatched?;
        let loop_delay = probe.finish();
        log::set_bar(None);
        let load = ClientLoad {
            cpu_seconds: cpu_start
                .zip(crate::cpu::process_cpu_seconds())
                .map(|(a, b)| b - a),
            wall_s: started.elapsed().as_secs_f64(),
            cores: crate::cpu::cores(),
            unavailable_s: unavailable_start
                .zip(crate::cpu::unavailable_core_seconds())
                .map(|(a, b)| (b - a).max(0.0)),
            simulator_in_process: plan.mock.is_some(),
            loop_delay,
            kernel_timestamps: self
                .exchange
                .timed
                .as_ref()
                .is_some_and(|t| t.serves(&self.exchange.url)),
        };
        let outcome = self.finish(spec, index, &dir, collected, load)?;
        if let Some(scraped) = scraped {
            let summary = crate::server_metrics::summary::summarise(
                &scraped,
                &crate::server_metrics::summary::Client::of(&outcome),
            );
            write_json(&dir.join("server_metrics_summary.json"), &summary)?;
            let table = crate::server_metrics::summary::table(&summary);
            println!("{table}");
            log::file_only(&table);
        }
        if let Some(e) = dataset_error {
            log::warn(format!("this run ended early because {e}"));
        }
        Ok(outcome)
    }

    /// Feeds prompts, dispatches every request and collects the records; returns what the
    /// collector gathered and the dataset's error, if it failed.
    fn dispatch(
        &self,
        spec: &RunSpec,
        index: usize,
        offset: u64,
        collector: Collector,
    ) -> anyhow::Result<(Collected, Option<String>)> {
        // Bounded: if the collector falls behind (a stalled disk), workers wait to hand over
        // their records instead of memory growing without limit.
        let (tx, rx) = tokio::sync::mpsc::channel(super::collect::RECORD_QUEUE);
        let collecting = std::thread::Builder::new()
            .name("perf-collect".into())
            .spawn(move || collector.run(rx))
            .context("cannot start the collector thread")?;
        let dataset_error = Arc::new(Mutex::new(None::<String>));
        let errors = dataset_error.clone();
        let capacity = spec.parallel.unwrap_or(1024).clamp(64, 4096) * 2;
        let prompts = dispatch::feed(
            self.prompt_feed(offset)?,
            spec.warmup + spec.number,
            capacity,
            // A conversation's turns are counted as they are sent, not as a whole.
            self.prepare().filter(|_| self.plan.talk.is_none()),
            move |e| {
                log::warn(&e);
                if let Ok(mut slot) = errors.lock() {
                    slot.get_or_insert(e);
                }
            },
        );
        // The dispatcher runs as a task on the runtime, beside its workers: driven by
        // `block_on` on this thread, every hand-off to a worker would be a cross-thread wake-up.
        let dispatch = self.rt.spawn(dispatch::run(
            Dispatch {
                exchange: self.exchange.clone(),
                spec: spec.clone(),
                run_index: index,
                max_tokens: self.plan.max_tokens,
                seed: self.plan.seed,
                duration: self.plan.duration,
                shape: self.plan.shape,
                stop: self.interrupt.stop.clone(),
                abort: self.interrupt.abort.clone(),
                talk: self.plan.talk,
                replays_schedule: self.plan.replays_schedule,
            },
            prompts,
            tx,
        ));
        if let Err(e) = self.rt.block_on(dispatch) {
            log::warn(format!("the dispatcher stopped abnormally: {e}"));
        }
        let collected = collecting
            .join()
            .map_err(|_| anyhow::anyhow!("the collector thread panicked"))?;
        if collected.warmup > 0 {
            log::info(format!(
                "{} warmup request(s) were sent and left out of every metric",
                collected.warmup
            ));
        }
        let error = dataset_error.lock().ok().and_then(|s| s.clone());
        Ok((collected, error))
    }

    /// The summary's `Transport` and `Timestamps`; the connection keys only where the
    /// transport knows them.
    fn transport_keys(&self, s: &mut crate::aggregate::Summary) {
        let ex = &self.exchange;
        match ex.timed.as_ref().filter(|t| t.serves(&ex.url)) {
            Some(t) => {
                s.transport = Some(t.describe());
                s.timestamps = Some(
                    if cfg!(target_os = "linux") {
                        "kernel receive time"
                    } else {
                        "read time"
                    }
                    .into(),
                );
            }
            None => {
                s.transport = Some("reqwest".into());
                s.timestamps = Some("read time in the request task".into());
                s.new_connections = None;
                s.avg_connect_ms = None;
                s.avg_tls_handshake_ms = None;
                s.max_tls_handshake_ms = None;
            }
        }
    }

    /// Writes the run's files and tables and hands its numbers to the sinks.
    fn finish(
        &self,
        spec: &RunSpec,
        index: usize,
        dir: &Path,
        collected: Collected,
        load: ClientLoad,
    ) -> anyhow::Result<RunOutcome> {
        let mut summary = collected.stats.summary(Some(load));
        self.transport_keys(&mut summary);
        let percentiles = collected
            .db
            .complete_rows()
            .and_then(|rows| collected.stats.percentiles(&rows));
        let percentiles = match percentiles {
            Ok(p) => p,
            Err(e) => {
                log::warn(format!(
                    "reading the percentiles back from benchmark_data.db failed: {e}; benchmark_percentile.json is left empty"
                ));
                Percentiles::default()
            }
        };
        // The workload timeline is read back from the table, when it holds every request.
        let workload = match collected.db.complete_rows() {
            Ok(_) => crate::output::workload::write(dir, |visit| {
                collected.db.successes(visit).map_err(anyhow::Error::from)
            })
            .unwrap_or_else(|e| {
                log::warn(format!("writing the workload throughput failed: {e:#}"));
                None
            }),
            Err(_) => None,
        };
        let traces = collected.stats.trace_summary();
        if let Some(t) = &traces {
            write_json(&dir.join("trace_summary.json"), &t.to_json())?;
        }
        let mut write_error = collected.db_error.clone();
        if let Err(e) = collected.db.finish() {
            log::warn(format!("finishing benchmark_data.db failed: {e}"));
            write_error.get_or_insert(e.to_string());
        }
        if self.plan.speed_benchmark {
            match crate::output::speed::rows(&dir.join("benchmark_data.db")) {
                Ok(rows) => {
                    write_json(
                        &dir.join("speed_benchmark.json"),
                        &crate::output::speed::to_json(&rows),
                    )?;
                    let table = console::speed_table(&rows);
                    println!("{table}");
                    log::file_only(&table);
                }
                Err(e) => log::warn(format!("writing speed_benchmark.json failed: {e:#}")),
            }
        }
        write_json(&dir.join("benchmark_summary.json"), &summary.to_json())?;
        write_json_nan(
            &dir.join("benchmark_percentile.json"),
            &percentiles.to_json(),
        )?;
        let text = console::run_tables(&summary, &percentiles, traces.as_ref(), workload.as_ref());
        println!("{}", crate::output::redact::redact(&text));
        log::file_only(&text);
        for reason in collected.stats.saturation(&load) {
            log::warn(format!("CLIENT SATURATED: {reason}"));
        }
        let (measured, unit) = match self.plan.talk {
            Some(_) => (collected.stats.conversations(), "conversations"),
            None => (collected.stats.total(), "requests"),
        };
        if measured < spec.number {
            log::warn(format!(
                "{measured} of {} {unit} were measured (duration, interruption or dataset end)",
                spec.number
            ));
        }
        self.hub.send(SinkEvent::RunEnd(RunSummary {
            run_index: index as u32,
            summary: named(&summary),
            percentiles: percentiles
                .rows
                .iter()
                .map(|r| perf_plugin_api::PercentileRow {
                    label: r.label.into(),
                    values: percentiles
                        .metrics
                        .iter()
                        .zip(&r.values)
                        .filter_map(|(m, v)| {
                            v.map(|value| perf_plugin_api::NamedValue {
                                name: (*m).into(),
                                value,
                            })
                        })
                        .collect(),
                })
                .collect(),
            ext: Default::default(),
        }));
        Ok(RunOutcome {
            spec: spec.clone(),
            summary,
            percentiles,
            workload,
            write_error,
        })
    }
}
