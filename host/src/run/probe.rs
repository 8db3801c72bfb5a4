//! How late the client's event loop gets to work that is ready: a probe thread hands the
//! runtime a tiny task every few milliseconds and measures how long it waits before a worker
//! runs it. Arriving bytes wake their request's task the same way, so this is the delay a
//! response waits before perf reads it. On the timed transport the kernel's receive
//! timestamps keep latencies exact regardless, but sends leave late and throughput stops
//! growing; on the reqwest path (https) the delay adds to every latency. Reported per run as
//! "Event Loop Delay P99/Max (ms)".

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

pub use crate::aggregate::LoopDelay;

/// Time between probes.
const PERIOD: Duration = Duration::from_millis(5);

/// A running probe.
pub struct LoopProbe {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Histogram<u64>>>,
}

impl LoopProbe {
    /// Starts probing the runtime behind `handle`.
    pub fn start(handle: tokio::runtime::Handle) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("perf-probe".into())
            .spawn(move || {
                let mut delays = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)
                    .expect("1 us .. 1 h with 3 significant digits are valid constant bounds");
                while !stopping.load(Ordering::Relaxed) {
                    std::thread::sleep(PERIOD);
                    let (tx, rx) = std::sync::mpsc::sync_channel(1);
                    let posted = Instant::now();
                    handle.spawn(async move {
                        let _ = tx.send(Instant::now());
                    });
                    // Wait for it, however late: that lateness is what is measured.
                    match rx.recv() {
                        Ok(ran) => {
                            let us = ran.saturating_duration_since(posted).as_micros() as u64;
                            delays.saturating_record(us.max(1));
                        }
                        Err(_) => break, // the runtime is shutting down
                    }
                }
                delays
            })
            .ok();
        LoopProbe { stop, thread }
    }

    /// Stops probing; `None` when no probe completed.
    pub fn finish(mut self) -> Option<LoopDelay> {
        self.stop.store(true, Ordering::Relaxed);
        let delays = self.thread.take()?.join().ok()?;
        (!delays.is_empty()).then(|| LoopDelay {
            p99_ms: delays.value_at_quantile(0.99) as f64 / 1000.0,
            max_ms: delays.max() as f64 / 1000.0,
            samples: delays.len(),
        })
    }
}

impl Drop for LoopProbe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blocked_runtime_shows_its_delay_and_an_idle_one_does_not() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .expect("runtime");
        let probe = LoopProbe::start(rt.handle().clone());
        std::thread::sleep(Duration::from_millis(60));
        let idle = probe.finish().expect("probes ran");
        assert!(idle.samples >= 3, "{idle:?}");
        assert!(
            idle.p99_ms < 20.0,
            "an idle runtime runs probes at once: {idle:?}"
        );

        let probe = LoopProbe::start(rt.handle().clone());
        // Occupy the only worker for 80 ms, as a flood of ready work would.
        rt.spawn(async { std::thread::sleep(Duration::from_millis(80)) });
        std::thread::sleep(Duration::from_millis(120));
        let busy = probe.finish().expect("probes ran");
        assert!(
            busy.max_ms >= 40.0,
            "the blocked worker delayed a probe: {busy:?}"
        );
    }
}
