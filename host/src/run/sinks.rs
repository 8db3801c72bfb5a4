//! Result sinks run on threads of their own, one per sink, each fed through a bounded queue: the
//! collector hands events over and never waits, so a slow, hung or failing sink cannot slow the
//! benchmark or another sink.
//!
//! A queue holds at most [`MAX_QUEUED_RECORDS`] request records; past that, records are dropped
//! and counted (reported at the end) rather than held without bound. Snapshots coalesce: a new
//! one replaces one the sink has not taken yet. Run and session events are always kept (there are
//! a handful per run). Each sink's first error is logged; later ones are counted. At the end each
//! sink gets [`CLOSE_DEADLINE`] to finish; one that is still busy (a hung collector, say) is left
//! behind with a warning, so the run ends on time.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use perf_plugin_api::{RequestRecord, RunInfo, RunSnapshot, RunSummary, SessionInfo};

use crate::output::log;
use crate::plugin_host::ResultSink;

/// Request records a sink may have waiting before new ones are dropped.
pub const MAX_QUEUED_RECORDS: usize = 65_536;

/// How long the end of a run waits for each sink to deliver what it has.
pub const CLOSE_DEADLINE: Duration = Duration::from_secs(15);

/// An event for every sink.
#[derive(Clone)]
pub enum SinkEvent {
    /// Once, first.
    Begin(SessionInfo),
    /// A run starts.
    RunStart(RunInfo),
    /// A measured request.
    Record(RequestRecord),
    /// The running summary.
    Snapshot(RunSnapshot),
    /// A run's final numbers.
    RunEnd(RunSummary),
}

#[derive(Default)]
struct Queue {
    events: VecDeque<SinkEvent>,
    records: usize,
    closed: bool,
}

/// One sink's queue, shared by the senders and its thread.
struct Lane {
    id: String,
    queue: Mutex<Queue>,
    ready: Condvar,
    dropped: AtomicU64,
}

impl Lane {
    fn push(&self, event: SinkEvent) {
        let Ok(mut q) = self.queue.lock() else { return };
        if q.closed {
            return;
        }
        match &event {
            SinkEvent::Record(_) if q.records >= MAX_QUEUED_RECORDS => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            SinkEvent::Record(_) => q.records += 1,
            SinkEvent::Snapshot(_) => {
                if let Some(last @ SinkEvent::Snapshot(_)) = q.events.back_mut() {
                    *last = event;
                    return;
                }
            }
            _ => {}
        }
        q.events.push_back(event);
        drop(q);
        self.ready.notify_one();
    }

    /// The next event, `None` once closed and drained.
    fn pop(&self) -> Option<SinkEvent> {
        let mut q = self.queue.lock().ok()?;
        loop {
            if let Some(event) = q.events.pop_front() {
                if matches!(event, SinkEvent::Record(_)) {
                    q.records -= 1;
                }
                return Some(event);
            }
            if q.closed {
                return None;
            }
            q = self.ready.wait(q).ok()?;
        }
    }

    fn close(&self) {
        if let Ok(mut q) = self.queue.lock() {
            q.closed = true;
        }
        self.ready.notify_all();
    }
}

/// Hands events to every sink; cheap to clone.
#[derive(Clone, Default)]
pub struct SinkSender(Arc<Vec<Arc<Lane>>>);

impl SinkSender {
    /// Queues `event` for every sink.
    pub fn send(&self, event: SinkEvent) {
        if let Some((last, rest)) = self.0.split_last() {
            for lane in rest {
                lane.push(event.clone());
            }
            last.push(event);
        }
    }

    /// Whether any sink listens.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The sinks' threads.
pub struct SinkHub {
    sender: SinkSender,
    done: Vec<(Arc<Lane>, std::sync::mpsc::Receiver<()>)>,
}

fn deliver(sink: &mut ResultSink, event: &SinkEvent) -> Result<(), perf_plugin_api::PluginError> {
    match event {
        SinkEvent::Begin(s) => sink.begin(s),
        SinkEvent::RunStart(r) => sink.run_start(r),
        SinkEvent::Record(r) => sink.record(r),
        SinkEvent::Snapshot(s) => sink.snapshot(s),
        SinkEvent::RunEnd(s) => sink.run_end(s).and_then(|_| sink.flush()),
    }
}

fn serve(mut sink: ResultSink, lane: &Lane) {
    let mut errors = 0u64;
    while let Some(event) = lane.pop() {
        if let Err(e) = deliver(&mut sink, &event) {
            if errors == 0 {
                log::warn(format!(
                    "sink '{}' ({}) failed: {e}; perf goes on without waiting for it",
                    sink.info.id, sink.origin
                ));
            }
            errors += 1;
        }
    }
    if let Err(e) = sink.close() {
        log::warn(format!("sink '{}' failed to close: {e}", sink.info.id));
    }
    if errors > 1 {
        log::warn(format!(
            "sink '{}' failed {errors} times in all",
            sink.info.id
        ));
    }
}

impl SinkHub {
    /// Starts a thread for each of `sinks` (none: events are dropped at once).
    pub fn start(sinks: Vec<ResultSink>) -> Self {
        let mut lanes = Vec::new();
        let mut done = Vec::new();
        for sink in sinks {
            let lane = Arc::new(Lane {
                id: sink.info.id.to_string(),
                queue: Mutex::new(Queue::default()),
                ready: Condvar::new(),
                dropped: AtomicU64::new(0),
            });
            let (finished, finished_rx) = std::sync::mpsc::channel();
            let serving = lane.clone();
            let started = std::thread::Builder::new()
                .name(format!("perf-sink-{}", lane.id))
                .spawn(move || {
                    serve(sink, &serving);
                    let _ = finished.send(());
                });
            match started {
                Ok(_) => {
                    lanes.push(lane.clone());
                    done.push((lane, finished_rx));
                }
                Err(e) => log::warn(format!(
                    "sink '{}' is off: its thread could not start: {e}",
                    lane.id
                )),
            }
        }
        SinkHub {
            sender: SinkSender(Arc::new(lanes)),
            done,
        }
    }

    /// Hands an event to the sinks.
    pub fn send(&self, event: SinkEvent) {
        self.sender.send(event);
    }

    /// A sender for another thread.
    pub fn sender(&self) -> SinkSender {
        self.sender.clone()
    }

    /// Closes every sink and waits for them, each up to [`CLOSE_DEADLINE`].
    pub fn close(self) {
        for (lane, _) in &self.done {
            lane.close();
        }
        let deadline = std::time::Instant::now() + CLOSE_DEADLINE;
        for (lane, finished) in self.done {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if finished.recv_timeout(left).is_err() {
                log::warn(format!(
                    "sink '{}' did not finish within {}s of the end; what it had not delivered is lost",
                    lane.id,
                    CLOSE_DEADLINE.as_secs()
                ));
            }
            let dropped = lane.dropped.load(Ordering::Relaxed);
            if dropped > 0 {
                log::warn(format!(
                    "sink '{}' could not keep up: {dropped} request record(s) were dropped (more than {MAX_QUEUED_RECORDS} waiting)",
                    lane.id
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lane() -> Lane {
        Lane {
            id: "t".into(),
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
            dropped: AtomicU64::new(0),
        }
    }

    fn record(i: u64) -> SinkEvent {
        SinkEvent::Record(RequestRecord {
            run_index: 0,
            request_index: i,
            success: true,
            is_stream: true,
            http_status: 200,
            failure: perf_plugin_api::FailureKind::None,
            error: "".into(),
            times: perf_plugin_api::RequestTimes {
                intended_send: 0.0,
                sent: 0.0,
                first_byte: None.into(),
                first_output: None.into(),
                completed: 0.0,
            },
            latency_s: None.into(),
            ttft_s: None.into(),
            tpot_s: None.into(),
            itl_s: Vec::new().into(),
            prompt_tokens: None.into(),
            completion_tokens: None.into(),
            cached_tokens: None.into(),
            tokens_estimated: false,
            ext: Default::default(),
        })
    }

    fn snapshot(completed: u64) -> SinkEvent {
        SinkEvent::Snapshot(RunSnapshot {
            run_index: 0,
            elapsed_s: 0.0,
            completed,
            metrics: Vec::new().into(),
            ext: Default::default(),
        })
    }

    #[test]
    fn records_past_the_bound_are_dropped_and_counted_but_run_events_are_kept() {
        let lane = lane();
        for i in 0..(MAX_QUEUED_RECORDS as u64 + 10) {
            lane.push(record(i));
        }
        lane.push(SinkEvent::RunEnd(RunSummary {
            run_index: 0,
            summary: Vec::new().into(),
            percentiles: Vec::new().into(),
            ext: Default::default(),
        }));
        assert_eq!(lane.dropped.load(Ordering::Relaxed), 10);
        lane.close();
        let mut records = 0;
        let mut last = None;
        while let Some(e) = lane.pop() {
            if matches!(e, SinkEvent::Record(_)) {
                records += 1;
            }
            last = Some(e);
        }
        assert_eq!(records, MAX_QUEUED_RECORDS);
        assert!(matches!(last, Some(SinkEvent::RunEnd(_))));
    }

    #[test]
    fn a_waiting_snapshot_is_replaced_by_a_newer_one() {
        let lane = lane();
        lane.push(snapshot(1));
        lane.push(snapshot(2));
        lane.push(record(0));
        lane.push(snapshot(3));
        lane.close();
        let got: Vec<String> = std::iter::from_fn(|| lane.pop())
            .map(|e| match e {
                SinkEvent::Snapshot(s) => format!("s{}", s.completed),
                SinkEvent::Record(r) => format!("r{}", r.request_index),
                _ => "?".into(),
            })
            .collect();
        assert_eq!(got, ["s2", "r0", "s3"]);
    }
}
