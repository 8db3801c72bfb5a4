//! The simulator's own view, as vLLM exposes it on `/metrics` (Prometheus text format, the
//! `vllm:` families and bucket bounds of vLLM's v1 engine, label `model_name`): requests
//! running and waiting for a slot, KV-cache usage (slots in use over capacity), prefix-cache
//! queries and hits, prompt and generation token counters, finished requests by reason, and
//! histograms of queue time, time to first token, time per output token and end-to-end
//! latency, all measured from the moment the backend took the request. Lock-free: every
//! figure is an atomic, updated by the generation tasks themselves.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

const TTFT_BOUNDS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
];
const TPOT_BOUNDS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0,
];
const LATENCY_BOUNDS: &[f64] = &[
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
];

/// A Prometheus histogram with fixed bounds (seconds).
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_ns: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
        }
    }

    /// Counts one observation of `d`.
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = self
            .bounds
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_ns
            .fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }

    fn write(&self, out: &mut String, name: &str, help: &str, labels: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, c) in self.counts.iter().enumerate() {
            cumulative += c.load(Relaxed);
            let le = self
                .bounds
                .get(i)
                .map_or_else(|| "+Inf".to_string(), |b| format!("{b:?}"));
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\",{labels}}} {cumulative}.0");
        }
        let sum = self.sum_ns.load(Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}.0");
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum:?}");
    }
}

/// The figures of one simulator.
pub struct Metrics {
    capacity: usize,
    /// Requests holding a slot.
    pub running: AtomicI64,
    /// Requests waiting for a slot.
    pub waiting: AtomicI64,
    /// Prompt tokens of the requests taken.
    pub prompt_tokens: AtomicU64,
    /// Tokens generated and sent.
    pub generation_tokens: AtomicU64,
    /// Prompt tokens looked up in the prefix cache.
    pub prefix_queries: AtomicU64,
    /// Of them found.
    pub prefix_hits: AtomicU64,
    /// Requests finished with `stop`.
    pub finished_stop: AtomicU64,
    /// Requests finished with `length`.
    pub finished_length: AtomicU64,
    /// Requests that ended otherwise (dropped, client gone).
    pub aborted: AtomicU64,
    /// Time waiting for a slot.
    pub queue: Histogram,
    /// From taking the request to its first token.
    pub ttft: Histogram,
    /// Between output tokens, per request (its decode time over its tokens after the first).
    pub tpot: Histogram,
    /// From taking the request to its last token.
    pub e2e: Histogram,
}

impl Metrics {
    /// Figures of a simulator with `capacity` slots (0: unlimited).
    pub fn new(capacity: usize) -> Metrics {
        Metrics {
            capacity,
            running: AtomicI64::new(0),
            waiting: AtomicI64::new(0),
            prompt_tokens: AtomicU64::new(0),
            generation_tokens: AtomicU64::new(0),
            prefix_queries: AtomicU64::new(0),
            prefix_hits: AtomicU64::new(0),
            finished_stop: AtomicU64::new(0),
            finished_length: AtomicU64::new(0),
            aborted: AtomicU64::new(0),
            queue: Histogram::new(LATENCY_BOUNDS),
            ttft: Histogram::new(TTFT_BOUNDS),
            tpot: Histogram::new(TPOT_BOUNDS),
            e2e: Histogram::new(LATENCY_BOUNDS),
        }
    }

    /// A request finished with `reason` (`stop`, `length`).
    pub fn finished(&self, reason: &str) {
        match reason {
            "length" => self.finished_length.fetch_add(1, Relaxed),
            _ => self.finished_stop.fetch_add(1, Relaxed),
        };
    }

    /// The Prometheus text exposition, as vLLM writes it for `model`.
    pub fn render(&self, model: &str) -> String {
        let labels = format!("model_name=\"{model}\"");
        let mut out = String::with_capacity(8192);
        let running = self.running.load(Relaxed).max(0);
        let usage = if self.capacity > 0 {
            running as f64 / self.capacity as f64
        } else {
            0.0
        };
        let gauges = [
            (
                "vllm:num_requests_running",
                "Number of requests in model execution batches.",
                running as f64,
            ),
            (
                "vllm:num_requests_waiting",
                "Number of requests waiting to be processed.",
                self.waiting.load(Relaxed).max(0) as f64,
            ),
            (
                "vllm:kv_cache_usage_perc",
                "KV-cache usage. 1 means 100 percent usage.",
                usage,
            ),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{{labels}}} {v:?}"
            );
        }
        let counters = [
            (
                "vllm:prompt_tokens_total",
                "Number of prefill tokens processed.",
                &self.prompt_tokens,
            ),
            (
                "vllm:generation_tokens_total",
                "Number of generation tokens processed.",
                &self.generation_tokens,
            ),
            (
                "vllm:prefix_cache_queries_total",
                "Prefix cache queries, in terms of number of queried tokens.",
                &self.prefix_queries,
            ),
            (
                "vllm:prefix_cache_hits_total",
                "Prefix cache hits, in terms of number of cached tokens.",
                &self.prefix_hits,
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name}{{{labels}}} {}.0",
                v.load(Relaxed)
            );
        }
        let name = "vllm:request_success_total";
        let _ = writeln!(
            out,
            "# HELP {name} Count of successfully processed requests.\n# TYPE {name} counter"
        );
        for (reason, v) in [
            ("stop", &self.finished_stop),
            ("length", &self.finished_length),
            ("abort", &self.aborted),
        ] {
            let _ = writeln!(
                out,
                "{name}{{finished_reason=\"{reason}\",{labels}}} {}.0",
                v.load(Relaxed)
            );
        }
        self.queue.write(
            &mut out,
            "vllm:request_queue_time_seconds",
            "Histogram of time spent in WAITING phase for request.",
            &labels,
        );
        self.ttft.write(
            &mut out,
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            &labels,
        );
        self.tpot.write(
            &mut out,
            "vllm:time_per_output_token_seconds",
            "Histogram of time per output token in seconds.",
            &labels,
        );
        self.e2e.write(
            &mut out,
            "vllm:e2e_request_latency_seconds",
            "Histogram of e2e request latency in seconds.",
            &labels,
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_with_count_and_sum() {
        let m = Metrics::new(4);
        m.ttft.observe(Duration::from_millis(30));
        m.ttft.observe(Duration::from_millis(50));
        m.ttft.observe(Duration::from_secs(5000));
        m.running.store(2, Relaxed);
        let text = m.render("mock");
        assert!(text.contains(
            "vllm:time_to_first_token_seconds_bucket{le=\"0.02\",model_name=\"mock\"} 0.0"
        ));
        assert!(text.contains(
            "vllm:time_to_first_token_seconds_bucket{le=\"0.04\",model_name=\"mock\"} 1.0"
        ));
        assert!(text.contains(
            "vllm:time_to_first_token_seconds_bucket{le=\"0.06\",model_name=\"mock\"} 2.0"
        ));
        assert!(text.contains(
            "vllm:time_to_first_token_seconds_bucket{le=\"+Inf\",model_name=\"mock\"} 3.0"
        ));
        assert!(text.contains("vllm:time_to_first_token_seconds_count{model_name=\"mock\"} 3.0"));
        assert!(text.contains("vllm:time_to_first_token_seconds_sum{model_name=\"mock\"} 5000.08"));
        assert!(text.contains("vllm:kv_cache_usage_perc{model_name=\"mock\"} 0.5"));
        assert!(text.contains("vllm:num_requests_running{model_name=\"mock\"} 2.0"));
    }
}
