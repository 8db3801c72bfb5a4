//! Result sinks run on a thread of their own: the collector hands them events over a channel
//! and never waits for them, so a slow or failing sink cannot slow the benchmark. Each sink's
//! first error is logged; later ones are counted and reported at the end.

use std::sync::mpsc::{channel, Sender};
use std::thread::JoinHandle;

use perf_plugin_api::{RequestRecord, RunInfo, RunSnapshot, RunSummary, SessionInfo};

use crate::output::log;
use crate::plugin_host::ResultSink;

/// An event for every sink.
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

/// The sinks' thread.
pub struct SinkHub {
    tx: Option<Sender<SinkEvent>>,
    thread: Option<JoinHandle<()>>,
}

impl SinkHub {
    /// Starts the thread for `sinks` (none: events are dropped at once).
    pub fn start(sinks: Vec<ResultSink>) -> Self {
        if sinks.is_empty() {
            return SinkHub {
                tx: None,
                thread: None,
            };
        }
        let (tx, rx) = channel::<SinkEvent>();
        let thread = std::thread::Builder::new()
            .name("perf-sinks".into())
            .spawn(move || {
                let mut sinks: Vec<(ResultSink, u64)> = sinks.into_iter().map(|s| (s, 0)).collect();
                for event in rx {
                    for (sink, errors) in sinks.iter_mut() {
                        let result = match &event {
                            SinkEvent::Begin(s) => sink.begin(s),
                            SinkEvent::RunStart(r) => sink.run_start(r),
                            SinkEvent::Record(r) => sink.record(r),
                            SinkEvent::Snapshot(s) => sink.snapshot(s),
                            SinkEvent::RunEnd(s) => sink.run_end(s).and_then(|_| sink.flush()),
                        };
                        if let Err(e) = result {
                            if *errors == 0 {
                                log::warn(format!("sink '{}' ({}) failed: {e}; perf goes on without waiting for it", sink.info.id, sink.origin));
                            }
                            *errors += 1;
                        }
                    }
                }
                for (mut sink, errors) in sinks {
                    if let Err(e) = sink.close() {
                        log::warn(format!("sink '{}' failed to close: {e}", sink.info.id));
                    }
                    if errors > 1 {
                        log::warn(format!("sink '{}' failed {errors} times in all", sink.info.id));
                    }
                }
            })
            .ok();
        SinkHub {
            tx: Some(tx),
            thread,
        }
    }

    /// Hands an event to the sinks.
    pub fn send(&self, event: SinkEvent) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(event);
        }
    }

    /// A sender for another thread.
    pub fn sender(&self) -> Option<Sender<SinkEvent>> {
        self.tx.clone()
    }

    /// Closes every sink and waits for them.
    pub fn close(mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
