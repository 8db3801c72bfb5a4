//! The over-saturation verdict of a sweep: a run is over-saturated when the load rose from the
//! run before (concurrency or rate up by at least 10 %) but the throughput did not follow
//! (successful requests per second up by less than 5 %, or down) while the server queued
//! (the mean TTFT, or the mean latency, up by 50 % or more). Each run is compared with the
//! one before it, so a sweep whose steps are too small to show the knee never trips it.

use super::Summary;

/// The load must rise at least this much for a verdict.
pub const LOAD_STEP: f64 = 1.10;
/// Below this throughput gain the throughput "stopped rising".
pub const THROUGHPUT_GAIN: f64 = 1.05;
/// At or above this growth TTFT or latency "climbed".
pub const QUEUE_GROWTH: f64 = 1.50;

fn load(s: &Summary) -> Option<f64> {
    if s.concurrency > 0 {
        Some(s.concurrency as f64)
    } else if s.request_rate > 0.0 {
        Some(s.request_rate)
    } else {
        None
    }
}

fn percent(now: f64, before: f64) -> f64 {
    100.0 * (now / before - 1.0)
}

/// Why `now` is over-saturated compared with `before`, if it is.
pub fn verdict(before: &Summary, now: &Summary) -> Option<String> {
    let (l0, l1) = (load(before)?, load(now)?);
    if l0 <= 0.0 || l1 < l0 * LOAD_STEP || before.req_per_s <= 0.0 || now.succeeded == 0 {
        return None;
    }
    if now.req_per_s >= before.req_per_s * THROUGHPUT_GAIN {
        return None;
    }
    let grew = |a: f64, b: f64| a > 0.0 && b >= a * QUEUE_GROWTH;
    let queue = if grew(before.avg_ttft_ms, now.avg_ttft_ms) {
        format!(
            "Avg TTFT rose {:.0}% ({:.2} -> {:.2} ms)",
            percent(now.avg_ttft_ms, before.avg_ttft_ms),
            before.avg_ttft_ms,
            now.avg_ttft_ms
        )
    } else if grew(before.avg_latency_s, now.avg_latency_s) {
        format!(
            "Avg Latency rose {:.0}% ({:.4} -> {:.4} s)",
            percent(now.avg_latency_s, before.avg_latency_s),
            before.avg_latency_s,
            now.avg_latency_s
        )
    } else {
        return None;
    };
    Some(format!(
        "throughput stopped rising: Req Throughput {:+.1}% ({:.4} -> {:.4} req/s) for {:.2}x the load, while {queue}",
        percent(now.req_per_s, before.req_per_s),
        before.req_per_s,
        now.req_per_s,
        l1 / l0
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(parallel: i64, rps: f64, ttft_ms: f64, latency_s: f64) -> Summary {
        Summary {
            concurrency: parallel,
            request_rate: -1.0,
            succeeded: 10,
            req_per_s: rps,
            avg_ttft_ms: ttft_ms,
            avg_latency_s: latency_s,
            ..Summary::default()
        }
    }

    #[test]
    fn flat_throughput_with_a_growing_queue_is_over_saturated() {
        let why =
            verdict(&run(8, 20.0, 100.0, 0.5), &run(16, 20.5, 210.0, 0.9)).expect("saturated");
        assert!(
            why.contains("+2.5%") && why.contains("2.00x") && why.contains("Avg TTFT rose 110%"),
            "{why}"
        );
        // Latency climbing counts too (non-streamed runs have TTFT = latency).
        assert!(verdict(&run(8, 20.0, 100.0, 0.5), &run(16, 19.0, 120.0, 0.8)).is_some());
    }

    #[test]
    fn rising_throughput_or_a_steady_queue_or_a_small_step_is_not() {
        assert!(verdict(&run(8, 20.0, 100.0, 0.5), &run(16, 38.0, 200.0, 1.0)).is_none());
        assert!(verdict(&run(8, 20.0, 100.0, 0.5), &run(16, 20.0, 110.0, 0.55)).is_none());
        assert!(verdict(&run(10, 20.0, 100.0, 0.5), &run(10, 20.0, 300.0, 2.0)).is_none());
        let mut failed = run(16, 0.0, -1000.0, -1.0);
        failed.succeeded = 0;
        assert!(verdict(&run(8, 20.0, 100.0, 0.5), &failed).is_none());
    }
}
