//! `trace_summary.json`: per-conversation metrics of a `--multi-turn` run, with evalscope's
//! names, definitions and statistics (mean, min, max and numpy's linearly interpolated
//! percentiles, a different method from `benchmark_percentile.json`'s nearest rank).
//!
//! Per conversation, over its successful turns in order:
//! - `Latency (s)`: the last turn's end minus the first turn's send;
//! - `First-Turn TTFT (s)`: the first turn's TTFT (the cold prefill);
//! - `TTFAT (s)`: time to the final answer's first token, from the first send;
//! - `Decode TPS`: the mean over turns of (output tokens - 1) / (latency - TTFT);
//! - `Cache Hit Rate (%)`: cached over prompt tokens;
//! - `Eligible Cache Hit Rate (%)`: cached tokens over what the turn before left cacheable
//!   (its prompt plus its reply), over the turns after the first.
//!
//! Cached tokens are the server's (`usage.prompt_tokens_details.cached_tokens`); evalscope
//! puts its own estimate in their place when the server reports none, perf counts none.

use std::collections::HashMap;

use serde_json::{json, Value};

/// One conversation's running totals.
#[derive(Debug, Clone, Default)]
struct Trace {
    first_sent: f64,
    first_ttft: f64,
    last_sent: f64,
    last_ttft: f64,
    last_completed: f64,
    decode_tps_sum: f64,
    decode_tps_n: u64,
    prompt: u64,
    cached: u64,
    eligible: u64,
    cached_of_eligible: u64,
    /// The previous turn's prompt plus output tokens.
    cacheable: u64,
    turns: u64,
}

/// One per-conversation metric.
type Metric = fn(&Trace) -> f64;

/// One successful turn, as the trace statistics read it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TurnSample {
    /// Its conversation.
    pub conversation: u64,
    /// Sent, epoch seconds.
    pub sent: f64,
    /// Finished, epoch seconds.
    pub completed: f64,
    /// TTFT, seconds (the latency when not streamed).
    pub ttft: f64,
    /// Latency, seconds.
    pub latency: f64,
    /// Prompt tokens.
    pub prompt: u64,
    /// Output tokens.
    pub completion: u64,
    /// Cached prompt tokens the server reported (0 when it reported none).
    pub cached: u64,
}

/// The conversations of a run.
#[derive(Debug, Default)]
pub struct Traces {
    by_id: HashMap<u64, Trace>,
}

/// The statistics of one metric over the conversations.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceRow {
    /// The metric, as evalscope names it.
    pub metric: &'static str,
    /// mean, min, p50, p90, p95, p99, max.
    pub stats: [f64; 7],
}

/// The columns of a [`TraceRow`], in order.
pub const STAT_NAMES: [&str; 7] = ["mean", "min", "p50", "p90", "p95", "p99", "max"];

/// `trace_summary.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSummary {
    /// Conversations with at least one successful turn.
    pub n_traces: usize,
    /// One row per metric.
    pub rows: Vec<TraceRow>,
}

impl Traces {
    /// Adds a successful turn; turns of one conversation arrive in order.
    pub fn add(&mut self, t: TurnSample) {
        let trace = self.by_id.entry(t.conversation).or_default();
        if trace.turns == 0 {
            trace.first_sent = t.sent;
            trace.first_ttft = t.ttft;
        } else {
            trace.eligible += trace.cacheable;
            trace.cached_of_eligible += t.cached;
        }
        trace.turns += 1;
        trace.last_sent = t.sent;
        trace.last_ttft = t.ttft;
        trace.last_completed = t.completed;
        if t.completion > 1 && t.latency > t.ttft {
            trace.decode_tps_sum += (t.completion - 1) as f64 / (t.latency - t.ttft);
            trace.decode_tps_n += 1;
        }
        trace.prompt += t.prompt;
        trace.cached += t.cached;
        trace.cacheable = t.prompt + t.completion;
    }

    /// Whether no conversation had a successful turn.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The summary over the conversations, in conversation order.
    pub fn summary(&self) -> TraceSummary {
        let mut ids: Vec<&u64> = self.by_id.keys().collect();
        ids.sort();
        let traces: Vec<&Trace> = ids.iter().map(|id| &self.by_id[id]).collect();
        let metrics: [(&'static str, Metric); 6] = [
            ("Latency (s)", |t| {
                (t.last_completed - t.first_sent).max(0.0)
            }),
            ("First-Turn TTFT (s)", |t| t.first_ttft),
            ("TTFAT (s)", |t| {
                (t.last_sent + t.last_ttft - t.first_sent).max(0.0)
            }),
            ("Decode TPS", |t| {
                if t.decode_tps_n > 0 {
                    t.decode_tps_sum / t.decode_tps_n as f64
                } else {
                    0.0
                }
            }),
            ("Cache Hit Rate (%)", |t| {
                if t.prompt > 0 {
                    t.cached as f64 / t.prompt as f64 * 100.0
                } else {
                    0.0
                }
            }),
            ("Eligible Cache Hit Rate (%)", |t| {
                if t.eligible > 0 {
                    t.cached_of_eligible as f64 / t.eligible as f64 * 100.0
                } else {
                    0.0
                }
            }),
        ];
        let rows = metrics
            .iter()
            .map(|(metric, f)| {
                let values: Vec<f64> = traces.iter().map(|t| f(t)).collect();
                TraceRow {
                    metric,
                    stats: stats(&values),
                }
            })
            .collect();
        TraceSummary {
            n_traces: traces.len(),
            rows,
        }
    }
}

/// mean, min, p50, p90, p95, p99, max of `values` (zeros when there are none).
fn stats(values: &[f64]) -> [f64; 7] {
    if values.is_empty() {
        return [0.0; 7];
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let p = |q: f64| linear_percentile(&v, q);
    [
        mean,
        v[0],
        p(50.0),
        p(90.0),
        p(95.0),
        p(99.0),
        v[v.len() - 1],
    ]
}

/// numpy's default percentile of sorted `v`: linear between the two nearest ranks of
/// (n - 1) * q / 100.
fn linear_percentile(v: &[f64], q: f64) -> f64 {
    let pos = (v.len() - 1) as f64 * q / 100.0;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    v[lo] + (v[hi] - v[lo]) * frac
}

impl TraceSummary {
    /// `trace_summary.json`'s content.
    pub fn to_json(&self) -> Value {
        json!({
            "n_traces": self.n_traces,
            "rows": self.rows.iter().map(|r| {
                let mut row = serde_json::Map::new();
                row.insert("metric".into(), json!(r.metric));
                for (name, v) in STAT_NAMES.iter().zip(r.stats) {
                    row.insert((*name).into(), json!(v));
                }
                Value::Object(row)
            }).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(
        conversation: u64,
        sent: f64,
        ttft: f64,
        latency: f64,
        tokens: (u64, u64, u64),
    ) -> TurnSample {
        TurnSample {
            conversation,
            sent,
            completed: sent + latency,
            ttft,
            latency,
            prompt: tokens.0,
            completion: tokens.1,
            cached: tokens.2,
        }
    }

    #[test]
    fn per_conversation_metrics_follow_evalscopes_definitions() {
        let mut t = Traces::default();
        // Conversation 0: two turns; the second finds 80 of its 120 prompt tokens cached,
        // of the 100 the first turn left (60 prompt + 40 output).
        t.add(turn(0, 10.0, 0.5, 2.0, (60, 40, 0)));
        t.add(turn(0, 13.0, 0.2, 1.2, (120, 11, 80)));
        // Conversation 1: one turn.
        t.add(turn(1, 20.0, 0.4, 1.4, (50, 1, 0)));
        let s = t.summary();
        assert_eq!(s.n_traces, 2);
        let row = |m: &str| s.rows.iter().find(|r| r.metric == m).expect(m).stats;
        // Latency: 14.2 - 10 = 4.2 and 1.4.
        let lat = row("Latency (s)");
        assert!((lat[0] - 2.8).abs() < 1e-9 && (lat[1] - 1.4).abs() < 1e-9);
        assert!((lat[6] - 4.2).abs() < 1e-9);
        // p50 of two values is their mean; p90 is 1.4 + 0.9 * 2.8.
        assert!((lat[2] - 2.8).abs() < 1e-9);
        assert!((lat[3] - (1.4 + 0.9 * 2.8)).abs() < 1e-9);
        assert_eq!(row("First-Turn TTFT (s)")[6], 0.5);
        // TTFAT: 13 + 0.2 - 10 = 3.2 and 0.4.
        assert!((row("TTFAT (s)")[6] - 3.2).abs() < 1e-9);
        // Decode TPS: (39 / 1.5 + 10 / 1.0) / 2 = 18 for the first; none for the second.
        let tps = row("Decode TPS");
        assert!((tps[6] - 18.0).abs() < 1e-9 && tps[1] == 0.0);
        // Cache: 80 / 180 and 0; eligible: 80 / 100.
        assert!((row("Cache Hit Rate (%)")[6] - 80.0 / 180.0 * 100.0).abs() < 1e-9);
        assert!((row("Eligible Cache Hit Rate (%)")[6] - 80.0).abs() < 1e-9);
        let json = s.to_json();
        assert_eq!(json["n_traces"], 2);
        let keys: Vec<&String> = json["rows"][0].as_object().expect("row").keys().collect();
        assert_eq!(
            keys,
            ["metric", "mean", "min", "p50", "p90", "p95", "p99", "max"]
        );
    }

    #[test]
    fn percentiles_interpolate_as_numpy_does() {
        let v = [1.0, 2.0, 3.0, 4.0, 10.0];
        assert_eq!(linear_percentile(&v, 50.0), 3.0);
        assert!((linear_percentile(&v, 90.0) - 7.6).abs() < 1e-9);
        assert!((linear_percentile(&v, 99.0) - 9.76).abs() < 1e-9);
        assert_eq!(stats(&[]), [0.0; 7]);
    }
}
