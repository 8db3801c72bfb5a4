//! The collector: the single consumer of records, on its own thread. It derives each record,
//! updates the statistics, writes SQLite rows in batches, feeds the sinks, moves the progress
//! bar and logs the running summary; nothing here runs on the threads that time requests.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the collector drains the record channel.
const POLL: Duration = Duration::from_millis(2);

/// Records that may wait for the collector (about a second of the fastest runs); past it,
/// workers wait to hand theirs over.
pub const RECORD_QUEUE: usize = 16_384;

/// How often sinks get the running summary.
const SNAPSHOT_EVERY: Duration = Duration::from_secs(1);

use indicatif::ProgressBar;
use perf_plugin_api::sdk::TokenizerPlugin;
use perf_plugin_api::{NamedValue, ROption, RVec, RunSnapshot};

use tokio::sync::mpsc::{error::TryRecvError, Receiver};

use super::sinks::{SinkEvent, SinkSender};
use crate::aggregate::{derive, RunStats, Summary};
use crate::output::{db::ResultDb, log, progress::ProgressTracker};
use crate::tokenizer::HostTokenizer;
use crate::worker::RawRecord;
use perf_timing::EpochClock;

/// What the collector needs.
pub struct Collector {
    /// Index of the run.
    pub run_index: u32,
    /// Converts instants to epoch seconds.
    pub clock: EpochClock,
    /// The statistics.
    pub stats: RunStats,
    /// The database.
    pub db: ResultDb,
    /// The sinks (perhaps none).
    pub sinks: SinkSender,
    /// Requests sent and not finished (warmup included), for the sinks' snapshots.
    pub in_flight: Arc<AtomicI64>,
    /// The progress bar of measured requests.
    pub bar: ProgressBar,
    /// Log the running summary every N measured requests.
    pub log_every: u64,
    /// `--tokenizer-path`: counts the output of responses without usage, and the prompts of
    /// conversation turns after the first (which no dataset counted) when the server sent no
    /// prompt count.
    pub tokenizer: Option<HostTokenizer>,
    /// `--image-patch-size`, for counting a turn's images.
    pub image_patch_size: u32,
    /// `--enable-progress-tracker`'s progress.json.
    pub progress: Option<Arc<ProgressTracker>>,
    /// The run's label, for the progress bar.
    pub label: String,
    /// `--server-metrics`: the server's latest gauges, for the sinks' snapshots.
    pub server: Option<crate::server_metrics::Live>,
}

/// How often the progress bar's rate, in-flight count and failures are refreshed.
const BAR_EVERY: Duration = Duration::from_millis(500);

/// What the progress bar and progress.json show between two refreshes.
struct Live {
    at: Instant,
    measured: u64,
    /// Measured and failed requests not yet handed to progress.json.
    unreported: (u64, u64),
}

/// What the collector hands back.
pub struct Collected {
    /// The statistics.
    pub stats: RunStats,
    /// The database, to finish.
    pub db: ResultDb,
    /// Warmup requests seen.
    pub warmup: u64,
    /// Why the database stopped taking rows, if it did.
    pub db_error: Option<String>,
}

/// The chat messages of a sent request body (`{"messages": [...]}`, content a string or text
/// and image parts), as a prompt the tokenizer can count; `None` for any other body.
fn sent_messages(body: &[u8]) -> Option<perf_plugin_api::DatasetItem> {
    use perf_plugin_api::{ChatMessage, ContentPart, DatasetItem, PromptItem};
    use serde_json::Value;
    let body: Value = serde_json::from_slice(body).ok()?;
    let mut messages = Vec::new();
    for m in body.get("messages")?.as_array()? {
        let role = m.get("role")?.as_str()?;
        let message = match m.get("content")? {
            Value::String(text) => ChatMessage::text(role, text),
            Value::Array(parts) => {
                let parts: Option<Vec<ContentPart>> = parts
                    .iter()
                    .map(|p| match p.get("type")?.as_str()? {
                        "text" => Some(ContentPart::Text(p.get("text")?.as_str()?.into())),
                        "image_url" => Some(ContentPart::ImageUrl(
                            p.get("image_url")?.get("url")?.as_str()?.into(),
                        )),
                        _ => None,
                    })
                    .collect();
                ChatMessage::new(role, parts?)
            }
            _ => return None,
        };
        messages.push(message);
    }
    Some(DatasetItem::new(PromptItem::Messages(messages.into())))
}

/// Numbers of a summary, for sinks.
pub fn named(summary: &Summary) -> RVec<NamedValue> {
    summary
        .numbers()
        .into_iter()
        .map(|(name, value)| NamedValue {
            name: name.into(),
            value,
        })
        .collect()
}

impl Collector {
    /// Consumes records until every sender is gone.
    ///
    /// It polls instead of blocking in `recv`: a blocked receiver makes every send wake this
    /// thread (a futex call and a context switch per request, on the cores that time
    /// requests); draining every few milliseconds costs nothing per request.
    pub fn run(mut self, mut records: Receiver<RawRecord>) -> Collected {
        let mut db_error = None;
        let mut warmup = 0;
        let mut measured = 0u64;
        let started = Instant::now();
        let mut last_snapshot = started;
        let mut live = Live {
            at: started,
            measured: 0,
            unreported: (0, 0),
        };
        loop {
            if !self.sinks.is_empty() && last_snapshot.elapsed() >= SNAPSHOT_EVERY {
                last_snapshot = Instant::now();
                self.snapshot(measured, started);
            }
            if live.at.elapsed() >= BAR_EVERY {
                self.refresh(&mut live, measured);
            }
            let mut raw = match records.try_recv() {
                Ok(raw) => raw,
                Err(TryRecvError::Empty) => {
                    if db_error.is_none() {
                        if let Err(e) = self.db.tick() {
                            self.db_failed(&e.to_string(), &mut db_error);
                        }
                    }
                    std::thread::sleep(POLL);
                    continue;
                }
                Err(TryRecvError::Disconnected) => break,
            };
            if raw.warmup {
                warmup += 1;
                continue;
            }
            measured += 1;
            self.count_output(&mut raw);
            self.count_turn_prompt(&mut raw);
            let before = self.stats.failed();
            // The bar and progress.json count what --number counts: requests, or with
            // --multi-turn whole conversations.
            let unit_done = raw.turn.is_none_or(|t| t.last);
            self.collect(raw, measured, &mut db_error);
            if unit_done {
                self.bar.inc(1);
                live.unreported.0 += 1;
            }
            live.unreported.1 += self.stats.failed() - before;
        }
        if !self.sinks.is_empty() {
            self.snapshot(measured, started);
        }
        self.refresh(&mut live, measured);
        self.bar.finish_and_clear();
        Collected {
            stats: self.stats,
            db: self.db,
            warmup,
            db_error,
        }
    }

    /// The progress bar's message and progress.json: the rate since the last refresh, the
    /// requests in flight, the failures so far.
    fn refresh(&self, live: &mut Live, measured: u64) {
        let dt = live.at.elapsed().as_secs_f64();
        let rate = if dt > 0.0 {
            (measured - live.measured) as f64 / dt
        } else {
            0.0
        };
        let in_flight = self.in_flight.load(Ordering::Relaxed).max(0);
        let failed = self.stats.failed();
        self.bar.set_message(format!(
            "Processing[{}] {rate:.1} req/s, {in_flight} in flight, {failed} failed",
            self.label
        ));
        if let Some(p) = &self.progress {
            p.update(live.unreported.0, live.unreported.1, in_flight, rate);
        }
        *live = Live {
            at: Instant::now(),
            measured,
            unreported: (0, 0),
        };
    }

    /// Writing the database failed: keep what is committed, say so once, stop writing.
    fn db_failed(&mut self, error: &str, db_error: &mut Option<String>) {
        self.db.salvage();
        log::warn(format!(
            "writing benchmark_data.db failed: {error}; the rows committed so far are kept, the later ones are not written, and perf will exit with code 1"
        ));
        *db_error = Some(error.to_string());
    }

    /// Counts the output with the tokenizer when the server sent no usage.
    fn count_output(&self, raw: &mut RawRecord) {
        let Some(tok) = &self.tokenizer else { return };
        if raw.usage.completion_tokens.is_some() || !raw.success() {
            return;
        }
        let mut text = raw.reasoning.clone();
        text.push_str(&raw.text);
        if let Ok(ids) = tok.encode(&text, false) {
            raw.output_tokens_counted = Some(ids.len() as u64);
        }
    }

    /// Counts a conversation turn's prompt (its whole history, the live replies included)
    /// with the tokenizer when the server sent no prompt count: the turn's messages as sent,
    /// through the chat template, as the dataset's prompts are counted. Here, after the
    /// response, rather than before the send: the history grows every turn, and counting it
    /// is no work for the tasks that time requests.
    fn count_turn_prompt(&self, raw: &mut RawRecord) {
        let Some(tok) = &self.tokenizer else { return };
        if raw.turn.is_none()
            || raw.usage.prompt_tokens.is_some()
            || raw.prompt_tokens_hint.is_some()
            || !raw.success()
        {
            return;
        }
        let Some(item) = sent_messages(&raw.request_body) else {
            return;
        };
        if let Ok(Some(n)) = tok.item_tokens(&item, true, self.image_patch_size) {
            raw.prompt_tokens_hint = Some(n as u64);
        }
    }

    fn collect(&mut self, raw: RawRecord, measured: u64, db_error: &mut Option<String>) {
        let mut derived = derive::derive(raw, self.run_index, &self.clock);
        if self.stats.is_decisions() && derived.record.success {
            // A decision has no first token: evalscope writes 0 for its TTFT and TPOT.
            derived.record.ttft_s = ROption::RSome(0.0);
            derived.record.tpot_s = ROption::RSome(0.0);
        }
        if log::debugging() {
            log::debug(debug_line(&derived.record, &derived.raw));
        }
        self.stats.add(&derived);
        if db_error.is_none() {
            if let Err(e) = self.db.insert(&derived) {
                self.db_failed(&e.to_string(), db_error);
            }
        }
        self.sinks.send(SinkEvent::Record(derived.record));
        if measured % self.log_every == 0 {
            let summary = self.stats.summary(None);
            log::info(format!(
                "running summary after {measured} requests: {}",
                summary.to_json()
            ));
        }
    }

    /// The running summary for the sinks, with the requests in flight now.
    fn snapshot(&self, measured: u64, started: Instant) {
        let mut metrics = named(&self.stats.summary(None));
        metrics.push(NamedValue {
            name: "In-Flight Requests".into(),
            value: self.in_flight.load(Ordering::Relaxed).max(0) as f64,
        });
        if let Some(live) = self.server.as_ref().and_then(|l| l.lock().ok()) {
            metrics.extend(live.iter().map(|(name, value)| NamedValue {
                name: (*name).into(),
                value: *value,
            }));
        }
        self.sinks.send(SinkEvent::Snapshot(RunSnapshot {
            run_index: self.run_index,
            elapsed_s: started.elapsed().as_secs_f64(),
            completed: measured,
            metrics,
            ext: Default::default(),
        }));
    }
}

/// One request for `--debug`: outcome, timings, sizes and the start of the answer. The body
/// sent is not logged (it may hold credentials a template put there).
fn debug_line(rec: &perf_plugin_api::RequestRecord, raw: &RawRecord) -> String {
    let ms = |v: perf_plugin_api::ROption<f64>| {
        v.into_option()
            .map_or("-".to_string(), |s| format!("{:.1}", s * 1000.0))
    };
    let text: String = raw.text.chars().take(80).collect();
    format!(
        "request {} status {} {} ttft {} ms latency {} ms chunks {} malformed {} body {} bytes; {}{}",
        rec.request_index,
        rec.http_status,
        if rec.success { "ok".to_string() } else { format!("failed ({}: {})", rec.failure.as_str(), rec.error) },
        ms(rec.ttft_s),
        ms(rec.latency_s),
        raw.output_events,
        raw.malformed_chunks,
        raw.request_body.len(),
        text.escape_debug(),
        if raw.text.chars().count() > 80 { "..." } else { "" }
    )
}
