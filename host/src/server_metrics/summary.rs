//! The summary of a run's scrapes beside the client's own figures: the server's percentiles
//! of TTFT, TPOT, end-to-end latency and queue time over the run (from the histograms' bucket
//! deltas between the first and the last scrape, interpolated within a bucket as PromQL's
//! `histogram_quantile` does), its token counters' deltas beside the client's token totals,
//! and the peaks of running and waiting requests and KV-cache usage. Written as
//! `server_metrics_summary.json` and printed as a table.

use serde_json::{json, Map, Value};

use super::{Scraped, Snapshot};
use crate::aggregate::summary::{metric, Percentiles};
use crate::output::console::RunOutcome;

/// The client's figures the summary sets beside the server's.
#[derive(Default)]
pub struct Client<'a> {
    /// The run's percentiles.
    pub percentiles: Option<&'a Percentiles>,
    /// Prompt tokens of its successful requests.
    pub input_tokens: f64,
    /// Output tokens of its successful requests.
    pub output_tokens: f64,
}

impl Client<'_> {
    /// The figures of a finished run.
    pub fn of(outcome: &RunOutcome) -> Client<'_> {
        let s = &outcome.summary;
        Client {
            percentiles: Some(&outcome.percentiles),
            input_tokens: (s.avg_input_tokens * s.succeeded as f64).round(),
            output_tokens: (s.avg_output_tokens * s.succeeded as f64).round(),
        }
    }
}

/// What a family is for, and the names vLLM, SGLang, TGI and llama.cpp give it.
struct Role {
    key: &'static str,
    families: &'static [&'static str],
}

const TTFT: Role = Role {
    key: "TTFT (ms)",
    families: &[
        "vllm:time_to_first_token_seconds",
        "sglang:time_to_first_token_seconds",
    ],
};
const TPOT: Role = Role {
    key: "TPOT (ms)",
    families: &[
        "vllm:time_per_output_token_seconds",
        "vllm:request_time_per_output_token_seconds",
        "vllm:inter_token_latency_seconds",
        "sglang:time_per_output_token_seconds",
        "sglang:inter_token_latency_seconds",
        "tgi_request_mean_time_per_token_duration",
    ],
};
const E2E: Role = Role {
    key: "Latency (s)",
    families: &[
        "vllm:e2e_request_latency_seconds",
        "sglang:e2e_request_latency_seconds",
        "tgi_request_duration",
    ],
};
const QUEUE: Role = Role {
    key: "Queue Time (ms)",
    families: &[
        "vllm:request_queue_time_seconds",
        "sglang:queue_time_seconds",
        "tgi_request_queue_duration",
    ],
};
const RUNNING: Role = Role {
    key: "Running Requests",
    families: &[
        "vllm:num_requests_running",
        "sglang:num_running_reqs",
        "tgi_batch_current_size",
        "llamacpp:requests_processing",
    ],
};
const WAITING: Role = Role {
    key: "Waiting Requests",
    families: &[
        "vllm:num_requests_waiting",
        "sglang:num_queue_reqs",
        "tgi_queue_size",
        "llamacpp:requests_deferred",
    ],
};
const KV: Role = Role {
    key: "KV Cache Usage",
    families: &[
        "vllm:kv_cache_usage_perc",
        "vllm:gpu_cache_usage_perc",
        "sglang:token_usage",
        "llamacpp:kv_cache_usage_ratio",
    ],
};
/// Prompt tokens: counters, or TGI's histogram of input lengths (its sum).
const PROMPT: Role = Role {
    key: "Prompt Tokens",
    families: &[
        "vllm:prompt_tokens_total",
        "sglang:prompt_tokens_total",
        "llamacpp:prompt_tokens_total",
        "tgi_request_input_length",
    ],
};
const GENERATION: Role = Role {
    key: "Generation Tokens",
    families: &[
        "vllm:generation_tokens_total",
        "sglang:generation_tokens_total",
        "llamacpp:tokens_predicted_total",
        "tgi_request_generated_tokens",
    ],
};

/// The first family of `role` that `snap` has, with its name.
fn find<'a>(snap: &'a Snapshot, role: &Role) -> Option<(&'static str, &'a super::Family)> {
    role.families
        .iter()
        .find_map(|n| snap.family(n).map(|f| (*n, f)))
}

/// A counter's value (or a histogram's sum) over every series.
fn total(snap: &Snapshot, role: &Role) -> Option<(&'static str, f64)> {
    let (name, f) = find(snap, role)?;
    let v = f
        .series
        .iter()
        .map(|s| {
            s.value
                .or(s.histogram.as_ref().map(|h| h.sum))
                .unwrap_or(0.0)
        })
        .sum();
    Some((name, v))
}

/// A histogram summed over its series: cumulative counts by bound, count and sum.
type Merged = (Vec<(f64, f64)>, f64, f64);

/// Cumulative bucket counts by bound, summed over every series of a histogram family.
fn buckets(snap: &Snapshot, name: &str) -> Option<Merged> {
    let f = snap.family(name)?;
    let mut merged: Vec<(f64, f64)> = Vec::new();
    let (mut count, mut sum) = (0.0, 0.0);
    for h in f.series.iter().filter_map(|s| s.histogram.as_ref()) {
        count += h.count;
        sum += h.sum;
        for (bound, c) in &h.buckets {
            match merged.iter_mut().find(|(b, _)| b == bound) {
                Some(m) => m.1 += c,
                None => merged.push((*bound, *c)),
            }
        }
    }
    merged.sort_by(|a, b| a.0.total_cmp(&b.0));
    (!merged.is_empty()).then_some((merged, count, sum))
}

/// The `q` quantile of cumulative `buckets`, as `histogram_quantile` computes it.
pub fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(bound, count) in buckets {
        if count >= rank {
            if bound.is_infinite() {
                return Some(lower.0);
            }
            let width = count - lower.1;
            let into = if width > 0.0 {
                (rank - lower.1) / width
            } else {
                1.0
            };
            return Some(lower.0 + (bound - lower.0) * into);
        }
        lower = (bound, count);
    }
    Some(lower.0)
}

/// The server's figures of a histogram role over the run, in `scale` units per second.
fn histogram_over(first: &Snapshot, last: &Snapshot, role: &Role, scale: f64) -> Option<Value> {
    let (name, _) = find(last, role)?;
    let (end, end_count, end_sum) = buckets(last, name)?;
    let (start, start_count, start_sum) = buckets(first, name).unwrap_or((Vec::new(), 0.0, 0.0));
    let delta: Vec<(f64, f64)> = end
        .iter()
        .map(|(b, c)| {
            let before = start.iter().find(|(x, _)| x == b).map_or(0.0, |x| x.1);
            (*b, (c - before).max(0.0))
        })
        .collect();
    let count = end_count - start_count;
    let q = |p: f64| quantile(p, &delta).map(|v| v * scale);
    Some(json!({
        "family": name,
        "count": count,
        "mean": (count > 0.0).then(|| (end_sum - start_sum) / count * scale),
        "p50": q(0.5),
        "p90": q(0.9),
        "p99": q(0.99),
    }))
}

fn peak(s: &Scraped, role: &Role) -> Option<Value> {
    let mut name = None;
    let mut max = f64::NEG_INFINITY;
    for snap in s.snapshots.iter().filter(|s| s.ok) {
        if let Some((n, f)) = find(snap, role) {
            name = Some(n);
            let v: f64 = f.series.iter().filter_map(|s| s.value).sum();
            max = max.max(v);
        }
    }
    name.map(|n| json!({"family": n, "peak": max}))
}

/// The names under which the sinks' snapshots carry the server's gauges.
pub const LIVE_RUNNING: &str = "Server Running Requests";
/// See [`LIVE_RUNNING`].
pub const LIVE_WAITING: &str = "Server Waiting Requests";
/// See [`LIVE_RUNNING`]: a fraction of the KV cache, 0 to 1.
pub const LIVE_KV_CACHE: &str = "Server KV Cache Usage";

/// The server's gauges in `snap` (each summed over its series), for the sinks.
pub fn live(snap: &Snapshot) -> Vec<(&'static str, f64)> {
    [
        (LIVE_RUNNING, &RUNNING),
        (LIVE_WAITING, &WAITING),
        (LIVE_KV_CACHE, &KV),
    ]
    .into_iter()
    .filter_map(|(key, role)| {
        let (_, f) = find(snap, role)?;
        let values: Vec<f64> = f.series.iter().filter_map(|s| s.value).collect();
        (!values.is_empty()).then(|| (key, values.iter().sum()))
    })
    .collect()
}

/// The summary of `s` beside the `client`'s figures.
pub fn summarise(s: &Scraped, client_figures: &Client) -> Value {
    let ok: Vec<&Snapshot> = s.snapshots.iter().filter(|s| s.ok).collect();
    let mut out = Map::new();
    out.insert(
        "url".into(),
        json!(crate::output::redact::redact(&s.url).into_owned()),
    );
    out.insert("interval_s".into(), json!(s.interval.as_secs_f64()));
    out.insert("scrapes".into(), json!(s.snapshots.len()));
    out.insert("scrape_failures".into(), json!(s.failures()));
    let client = |m: &str, p: &str| client_figures.percentiles.and_then(|t| t.get(p, m));
    if let (Some(first), Some(last)) = (ok.first(), ok.last()) {
        let mut server = Map::new();
        for (role, scale, client_metric, client_scale) in [
            (&TTFT, 1e3, metric::TTFT, 1.0),
            (&TPOT, 1e3, metric::TPOT, 1.0),
            (&E2E, 1.0, metric::LATENCY, 1.0),
            (&QUEUE, 1e3, "", 1.0),
        ] {
            if let Some(mut v) = histogram_over(first, last, role, scale) {
                if !client_metric.is_empty() {
                    v["client"] = json!({
                        "p50": client(client_metric, "50%").map(|x| x * client_scale),
                        "p90": client(client_metric, "90%").map(|x| x * client_scale),
                        "p99": client(client_metric, "99%").map(|x| x * client_scale),
                    });
                }
                server.insert(role.key.into(), v);
            }
        }
        out.insert("percentiles".into(), Value::Object(server));
        let mut tokens = Map::new();
        for (role, client_total) in [
            (&PROMPT, client_figures.input_tokens),
            (&GENERATION, client_figures.output_tokens),
        ] {
            if let (Some((name, a)), Some((_, b))) = (total(first, role), total(last, role)) {
                tokens.insert(
                    role.key.into(),
                    json!({"family": name, "server_delta": b - a, "client_total": client_total}),
                );
            }
        }
        out.insert("tokens".into(), Value::Object(tokens));
    }
    let mut peaks = Map::new();
    for role in [&RUNNING, &WAITING, &KV] {
        if let Some(v) = peak(s, role) {
            peaks.insert(role.key.into(), v);
        }
    }
    out.insert("peaks".into(), Value::Object(peaks));
    Value::Object(out)
}

/// The console table of a summary: the report's rows (`perf_report::page::server_table`).
pub fn table(v: &Value) -> String {
    use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
    let (caption, rows) = perf_report::page::server_table(v, &|x| format!("{x:.2}"));
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(rows.head);
    for row in rows.rows {
        t.add_row(row);
    }
    format!("Server metrics ({caption})\n{t}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_the_bucket_as_promql_does() {
        let b = [
            (0.1, 0.0),
            (0.2, 50.0),
            (0.4, 100.0),
            (f64::INFINITY, 100.0),
        ];
        assert_eq!(quantile(0.5, &b), Some(0.2));
        assert!((quantile(0.75, &b).unwrap_or(0.0) - 0.3).abs() < 1e-12);
        assert!((quantile(0.25, &b).unwrap_or(0.0) - 0.15).abs() < 1e-12);
        assert_eq!(quantile(0.5, &[(f64::INFINITY, 0.0)]), None);
        let tail = [(1.0, 1.0), (f64::INFINITY, 10.0)];
        assert_eq!(
            quantile(0.99, &tail),
            Some(1.0),
            "beyond the last bound: the last bound"
        );
    }
}
