//! Feeding prompts and dispatching requests: one worker loop for every schedule.
//!
//! - The feeder thread pulls prompts from the dataset (a blocking call) into a bounded queue,
//!   so a million-request run holds at most a few thousand prompts.
//! - The dispatcher takes prompts in order, numbers them (warmup first), draws `max_tokens`,
//!   and on a paced run sleeps until each request's intended time on the absolute schedule.
//! - Closed loop: `--parallel` workers take jobs from one queue and refill their slot the moment
//!   a request finishes; unpaced, a job's intended time is when a worker takes it. Open loop:
//!   every job runs as its own task at its intended time, with no cap.
//!
//! Every request goes through `worker::execute`; records go to the collector thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use perf_plugin_api::DatasetItem;
use tokio::sync::mpsc::{self, Sender};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::conversation::{Conversation, Talk};
use crate::plan::{MaxTokens, RunSpec};
use crate::plugin_host::DatasetSource;
use crate::schedule::{self, Arrivals, Ramp, Shape};
use crate::worker::{execute, Exchange, Job, RawRecord, TurnTag};

/// Where the feeder gets prompts.
pub enum PromptFeed {
    /// The same prompt every time.
    Fixed(DatasetItem),
    /// A dataset; `reopen` creates a fresh source when one is exhausted (cycling).
    Dataset {
        /// The open source.
        source: DatasetSource,
        /// Opens it again.
        reopen: Box<dyn FnMut() -> Result<DatasetSource, String> + Send>,
        /// Read it once, never cycle (a replayed trace).
        once: bool,
    },
}

/// Prompts travel in batches: a queue of single prompts would wake the feeder thread for every
/// request once the queue is full (a context switch per request).
const BATCH: usize = 32;

/// The dispatcher's end of the prompt queue.
pub struct Prompts {
    rx: mpsc::Receiver<Vec<DatasetItem>>,
    batch: std::vec::IntoIter<DatasetItem>,
}

impl Prompts {
    /// The next prompt, `None` when the feeder is done.
    pub async fn next(&mut self) -> Option<DatasetItem> {
        loop {
            if let Some(item) = self.batch.next() {
                return Some(item);
            }
            self.batch = self.rx.recv().await?.into_iter();
        }
    }

    fn close(&mut self) {
        self.rx.close();
    }
}

/// Readies a dataset's item on the feeder thread, with the host's tokenizer: counts the
/// prompt tokens of an item that came without a count, or (`--tokenize-prompt`) turns its
/// text into token ids.
pub type Prepare = Box<dyn Fn(&mut DatasetItem) + Send>;

/// Starts the feeder thread: `total` prompts into a bounded queue of about `capacity` prompts,
/// each readied by `prepare` on the way. A dataset that fails is reported through `on_error`
/// and the run goes on with what was queued.
pub fn feed(
    mut prompts: PromptFeed,
    total: u64,
    capacity: usize,
    prepare: Option<Prepare>,
    on_error: impl Fn(String) + Send + 'static,
) -> Prompts {
    let (tx, rx) = mpsc::channel::<Vec<DatasetItem>>((capacity / BATCH).max(2));
    std::thread::Builder::new()
        .name("perf-prompts".into())
        .spawn(move || {
            let mut produced_this_pass = 0u64;
            let mut sent = 0u64;
            let mut batch = Vec::with_capacity(BATCH);
            let flush = |batch: &mut Vec<DatasetItem>| -> bool {
                batch.is_empty() || tx.blocking_send(std::mem::replace(batch, Vec::with_capacity(BATCH))).is_ok()
            };
            while sent < total {
                let item = match &mut prompts {
                    PromptFeed::Fixed(item) => item.clone(),
                    PromptFeed::Dataset { source, reopen, once } => match source.next_item() {
                        Ok(Some(mut item)) => {
                            if let Some(prepare) = &prepare {
                                prepare(&mut item);
                            }
                            item
                        }
                        Ok(None) if produced_this_pass == 0 => {
                            on_error("the dataset yielded no prompts (check --dataset-path and the --min/--max-prompt-length filters)".into());
                            break;
                        }
                        Ok(None) if *once => break,
                        Ok(None) => match reopen() {
                            Ok(fresh) => {
                                *source = fresh;
                                produced_this_pass = 0;
                                continue;
                            }
                            Err(e) => {
                                on_error(format!("cannot reopen the dataset to cycle through it again: {e}"));
                                break;
                            }
                        },
                        Err(e) => {
                            on_error(format!("the dataset failed after {sent} prompt(s): {e}"));
                            break;
                        }
                    },
                };
                produced_this_pass += 1;
                batch.push(item);
                sent += 1;
                // The first prompts go out at once; later ones in batches.
                if (batch.len() >= BATCH || sent <= BATCH as u64) && !flush(&mut batch) {
                    return; // the run stopped early
                }
            }
            flush(&mut batch);
        })
        .ok();
    Prompts {
        rx,
        batch: Vec::new().into_iter(),
    }
}

/// What a run's dispatch needs.
pub struct Dispatch {
    /// Shared by every worker.
    pub exchange: Arc<Exchange>,
    /// The run.
    pub spec: RunSpec,
    /// Index of the run in the sweep.
    pub run_index: usize,
    /// `--max-tokens`.
    pub max_tokens: MaxTokens,
    /// `--seed`.
    pub seed: Option<i64>,
    /// `--duration`.
    pub duration: Option<Duration>,
    /// The arrival process and ramp-up.
    pub shape: Shape,
    /// Fired on the first interrupt: send nothing new.
    pub stop: CancellationToken,
    /// Fired when in-flight requests must end now.
    pub abort: CancellationToken,
    /// `--multi-turn`: every job is a conversation, sent turn by turn.
    pub talk: Option<Talk>,
    /// Items carry their own send times (a replayed trace).
    pub replays_schedule: bool,
}

impl Dispatch {
    fn worker(
        &self,
        records: &Sender<RawRecord>,
        clock: &Arc<Clock>,
        paced: bool,
        requests: &Arc<AtomicU64>,
    ) -> Worker {
        Worker {
            exchange: self.exchange.clone(),
            records: records.clone(),
            clock: clock.clone(),
            stop: self.stop.clone(),
            abort: self.abort.clone(),
            paced,
            talk: self.talk,
            requests: requests.clone(),
        }
    }
}

/// Where the workers of a concurrency ramp-up stand: when the run started, how many requests
/// have started (for a ramp over requests), and whether the dispatcher is done (a worker still
/// waiting for its turn then joins at once, to drain what is queued).
struct RampState {
    start: Instant,
    started: tokio::sync::watch::Sender<u64>,
    counts: bool,
    dispatched: CancellationToken,
}

struct Clock {
    measured_start: OnceLock<Instant>,
    duration: Option<Duration>,
}

impl Clock {
    /// Past `--duration`, counted from the first measured send.
    fn expired(&self) -> bool {
        match (self.duration, self.measured_start.get()) {
            (Some(d), Some(start)) => start.elapsed() >= d,
            _ => false,
        }
    }
}

/// Runs the whole run: returns when every dispatched request has finished.
pub async fn run(d: Dispatch, mut prompts: Prompts, records: Sender<RawRecord>) {
    let clock = Arc::new(Clock {
        measured_start: OnceLock::new(),
        duration: d.duration,
    });
    let total = d.spec.warmup + d.spec.number;
    let start = Instant::now();
    let mut arrivals = Arrivals::new(start, d.spec.rate, d.shape);
    // A replayed trace brings its own send times.
    let paced = arrivals.paced() || d.replays_schedule;
    let mut rng = schedule::rng(d.seed, d.run_index);
    let tracker = TaskTracker::new();
    let mut trace_start: Option<Instant> = None;
    // Request numbers of conversation turns, in the order they are sent.
    let requests = Arc::new(AtomicU64::new(0));
    let (job_tx, job_rx) =
        async_channel::bounded::<Job>(d.spec.parallel.unwrap_or(1).clamp(1, 1024));
    let ramp = Arc::new(RampState {
        start,
        started: tokio::sync::watch::Sender::new(0),
        counts: matches!(d.shape.ramp, Some(Ramp::Requests(_))),
        dispatched: CancellationToken::new(),
    });
    if let Some(parallel) = d.spec.parallel {
        // No more workers than requests: memory follows what can be in flight, not the flag.
        let workers = (parallel as u64).min(total.max(1)) as usize;
        for i in 0..workers {
            let w = d.worker(&records, &clock, paced, &requests);
            let turn = d.shape.worker_start(i, workers);
            tracker.spawn(w.closed_loop(job_rx.clone(), turn, ramp.clone()));
        }
    }
    drop(job_rx);
    for index in 0..total {
        if d.stop.is_cancelled() || clock.expired() {
            break;
        }
        let Some(item) = prompts.next().await else {
            break;
        };
        let intended = match item.arrival_s().filter(|_| d.replays_schedule) {
            // The trace's clock starts when its first request is at hand.
            Some(s) => {
                *trace_start.get_or_insert_with(Instant::now) + Duration::from_secs_f64(s.max(0.0))
            }
            None => arrivals.next(&mut rng),
        };
        if paced {
            tokio::select! {
                _ = tokio::time::sleep_until(intended.into()) => {}
                _ = d.stop.cancelled() => break,
            }
            if clock.expired() {
                break;
            }
        }
        let item_max_tokens = item.max_tokens().map(|n| n.min(u64::from(u32::MAX)) as u32);
        let job = Job {
            index,
            warmup: index < d.spec.warmup,
            item,
            intended,
            max_tokens: Some(match item_max_tokens {
                Some(n) => n,
                None => schedule::max_tokens(d.max_tokens, &mut rng),
            }),
            connection_test: false,
            rid: None,
        };
        if d.spec.parallel.is_some() {
            if job_tx.send(job).await.is_err() {
                break;
            }
        } else {
            let w = d.worker(&records, &clock, paced, &requests);
            tracker.spawn(w.one(job));
        }
    }
    drop(job_tx);
    ramp.dispatched.cancel();
    prompts.close();
    tracker.close();
    tracker.wait().await;
}

struct Worker {
    exchange: Arc<Exchange>,
    records: Sender<RawRecord>,
    clock: Arc<Clock>,
    stop: CancellationToken,
    abort: CancellationToken,
    paced: bool,
    talk: Option<Talk>,
    requests: Arc<AtomicU64>,
}

impl Worker {
    /// Waits for this worker's turn in a concurrency ramp-up; `false` when the run stopped.
    async fn wait_turn(&self, turn: Option<Ramp>, ramp: &RampState) -> bool {
        let mut started = ramp.started.subscribe();
        let turn_came = async {
            match turn {
                None => {}
                Some(Ramp::Seconds(s)) => {
                    let at = ramp.start + Duration::from_secs_f64(s);
                    tokio::time::sleep_until(at.into()).await;
                }
                Some(Ramp::Requests(n)) => {
                    let _ = started.wait_for(|&count| count >= n).await;
                }
            }
        };
        tokio::select! {
            _ = turn_came => true,
            _ = ramp.dispatched.cancelled() => true,
            _ = self.stop.cancelled() => false,
        }
    }

    async fn closed_loop(
        self,
        jobs: async_channel::Receiver<Job>,
        turn: Option<Ramp>,
        ramp: Arc<RampState>,
    ) {
        if !self.wait_turn(turn, &ramp).await {
            return;
        }
        while let Ok(job) = jobs.recv().await {
            if ramp.counts {
                ramp.started.send_modify(|c| *c += 1);
            }
            if self.stop.is_cancelled() || (!job.warmup && self.clock.expired()) {
                break;
            }
            if !self.send(job).await {
                break;
            }
        }
    }

    async fn one(self, job: Job) {
        self.send(job).await;
    }

    async fn send(&self, mut job: Job) -> bool {
        if !job.warmup {
            self.clock.measured_start.get_or_init(Instant::now);
        }
        if !self.paced {
            job.intended = Instant::now();
        }
        if let Some(talk) = self.talk {
            return self.converse(job, talk).await;
        }
        let record = execute(&self.exchange, job, &self.abort).await;
        self.records.send(record).await.is_ok()
    }

    /// Sends a conversation's turns one after the other, each with the history and the live
    /// replies so far; a failed turn ends the conversation, as an interrupt does. Returns
    /// `false` when the collector is gone.
    async fn converse(&self, job: Job, talk: Talk) -> bool {
        let conversation = match Conversation::from_item(&job.item, talk.max_turns) {
            Ok(c) => c,
            Err(e) => {
                // Counted as a failed request, not dropped.
                let mut record = RawRecord::unsent(&job, perf_plugin_api::FailureKind::Plugin, e);
                record.index = self.requests.fetch_add(1, Ordering::Relaxed);
                record.turn = Some(TurnTag {
                    conversation: job.index,
                    turn: 1,
                    last: true,
                });
                return self.records.send(record).await.is_ok();
            }
        };
        let n = conversation.turns.len();
        // SGLang routes a conversation's turns to one worker by this key.
        let key = job.item.conversation_key().map(str::to_string);
        let mut context: Vec<perf_plugin_api::ChatMessage> = Vec::new();
        for (i, turn) in conversation.turns.into_iter().enumerate() {
            let pause = turn.wait
                + if i > 0 {
                    talk.think_time
                } else {
                    Duration::ZERO
                };
            if !pause.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = self.stop.cancelled() => return true,
                }
            }
            context.extend(turn.messages);
            let item = perf_plugin_api::DatasetItem::new(perf_plugin_api::PromptItem::Messages(
                context.clone().into(),
            ));
            let turn_job = Job {
                index: self.requests.fetch_add(1, Ordering::Relaxed),
                warmup: job.warmup,
                item,
                intended: if i == 0 { job.intended } else { Instant::now() },
                max_tokens: turn.max_tokens.or(job.max_tokens),
                connection_test: false,
                rid: key.as_ref().map(|k| format!("{k}_t{}", i + 1)),
            };
            let mut record = execute(&self.exchange, turn_job, &self.abort).await;
            let ok = record.success();
            record.turn = Some(TurnTag {
                conversation: job.index,
                turn: i as u32 + 1,
                last: !ok || i + 1 == n,
            });
            if ok {
                context.push(perf_plugin_api::ChatMessage::text(
                    "assistant",
                    &record.text,
                ));
            }
            if self.records.send(record).await.is_err() {
                return false;
            }
            if !ok || self.stop.is_cancelled() {
                break;
            }
        }
        true
    }
}
