//! The two results of a run as types: [`Summary`] (`benchmark_summary.json`) and
//! [`Percentiles`] (`benchmark_percentile.json`). Each key is written once, here; the exit
//! code, the console, `perf calibrate` and the sinks read fields, not strings.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// `benchmark_summary.json`: evalscope's keys in evalscope's order (their types and meaning
/// too), then perf's own. Optional keys are written only when the run has them.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Summary {
    /// First send to last completion, seconds.
    #[serde(rename = "Test Duration (s)")]
    pub duration_s: f64,
    /// `--parallel` (-1 in open loop).
    #[serde(rename = "Concurrency")]
    pub concurrency: i64,
    /// `--rate` (-1 unpaced).
    #[serde(rename = "Request Rate (req/s)")]
    pub request_rate: f64,
    /// Measured requests (interrupted ones excluded).
    #[serde(rename = "Total Requests")]
    pub total: u64,
    /// Successful requests.
    #[serde(rename = "Success Requests")]
    pub succeeded: u64,
    /// Failed requests.
    #[serde(rename = "Failed Requests")]
    pub failed: u64,
    /// Streamed requests (by the response; a failed request by whether it asked to be).
    #[serde(rename = "Stream Requests")]
    pub streamed: u64,
    /// Requests that were not streamed.
    #[serde(rename = "Non-Stream Requests")]
    pub non_streamed: u64,
    /// Successful requests per second of the run.
    #[serde(rename = "Req Throughput (req/s)")]
    pub req_per_s: f64,
    /// Mean latency of successful requests, seconds (-1 without any).
    #[serde(rename = "Avg Latency (s)")]
    pub avg_latency_s: f64,
    /// Mean prompt tokens (-1 without a successful request).
    #[serde(rename = "Avg Input Tokens")]
    pub avg_input_tokens: f64,
    /// Decision services: the summary keys that do not apply to them (TTFT, TPOT, ITL), as
    /// evalscope lists them.
    #[serde(
        rename = "Not Applicable Metrics",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub not_applicable: Option<Vec<String>>,
    /// Output tokens per second of the run (0 for input-only APIs).
    #[serde(rename = "Output Throughput (tok/s)")]
    pub output_tok_per_s: f64,
    /// Prompt and output tokens per second of the run (0 for input-only APIs).
    #[serde(rename = "Total Throughput (tok/s)")]
    pub total_tok_per_s: f64,
    /// Mean time to first token, ms (evalscope's -1000 without a successful request; 0 for
    /// input-only APIs).
    #[serde(rename = "Avg TTFT (ms)")]
    pub avg_ttft_ms: f64,
    /// Mean time per output token, ms (as TTFT).
    #[serde(rename = "Avg TPOT (ms)")]
    pub avg_tpot_ms: f64,
    /// Mean inter-token latency, ms (0 without any gap).
    #[serde(rename = "Avg ITL (ms)")]
    pub avg_itl_ms: f64,
    /// `--enable-pd-metrics`: mean of the gaps after each response's first, pooled, ms.
    #[serde(
        rename = "Avg Steady ITL (ms)",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub avg_steady_itl_ms: Option<f64>,
    /// `--enable-pd-metrics`: mean first gap (the prefill-to-decode handoff), ms.
    #[serde(
        rename = "Avg PD Handoff Latency (ms)",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub avg_pd_handoff_latency_ms: Option<f64>,
    /// `--enable-pd-metrics`: mean of max(0, first gap - median of the later gaps), ms.
    #[serde(
        rename = "Avg PD Handoff Overhead (ms)",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub avg_pd_handoff_overhead_ms: Option<f64>,
    /// Mean output tokens (-1 without a successful request; 0 for input-only APIs).
    #[serde(rename = "Avg Output Tokens")]
    pub avg_output_tokens: f64,
    /// Input-only APIs: evalscope's prompt tokens per summed latency (under concurrency a
    /// per-stream speed, not the run's; see `Run Input Throughput (tok/s)`); 0 otherwise.
    #[serde(rename = "Input Throughput (tok/s)")]
    pub input_tok_per_s: f64,
    /// `--multi-turn`: the mean turn number of the successful requests (evalscope's: turn k
    /// of a conversation counts k).
    #[serde(
        rename = "Avg Turns/Request",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub avg_turns_per_request: Option<f64>,
    /// Cached prompt tokens over prompt tokens, when the server reports cached tokens.
    #[serde(
        rename = "KV Cache Hit Rate (%)",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub kv_cache_hit_rate: Option<f64>,
    /// `--multi-turn`: mean TTFT of first turns (the cold prefill), ms.
    #[serde(
        rename = "Avg First-Turn TTFT (ms)",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub avg_first_turn_ttft_ms: Option<f64>,
    /// `--multi-turn`: mean TTFT of the later turns (where a prefix cache helps), ms.
    #[serde(
        rename = "Avg Subsequent-Turn TTFT (ms)",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub avg_subsequent_turn_ttft_ms: Option<f64>,
    /// Mean output tokens per decode step over the requests with more than one (speculative
    /// decoding), when there are any.
    #[serde(
        rename = "Avg Decoded Tok/Iter",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub avg_decoded_tok_per_iter: Option<f64>,
    /// 1 - 1 / that mean, clamped to [0, 1].
    #[serde(
        rename = "Spec. Accept Rate",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub spec_accept_rate: Option<f64>,
    /// Input-only APIs: prompt tokens per second of the run (perf's).
    #[serde(
        rename = "Run Input Throughput (tok/s)",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub run_input_tok_per_s: Option<f64>,
    /// `--goodput`: requests that succeeded within every objective, per second of the run.
    #[serde(
        rename = "Goodput (req/s)",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub goodput_req_per_s: Option<f64>,
    /// `--goodput`: those requests as a share of the measured ones (failures count as not
    /// good), percent.
    #[serde(
        rename = "Good Requests (%)",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub good_percent: Option<f64>,
    /// Mean time to the response head, ms (-1 without any).
    #[serde(rename = "Avg TTFB (ms)")]
    pub avg_ttfb_ms: f64,
    /// Mean lag of actual behind intended send, ms.
    #[serde(rename = "Avg Dispatch Lag (ms)")]
    pub avg_dispatch_lag_ms: f64,
    /// Paced runs (`--rate` in open loop, a replayed trace): the median of that lag, ms.
    #[serde(
        rename = "P50 Dispatch Lag (ms)",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub p50_dispatch_lag_ms: Option<f64>,
    /// Paced runs: its 90th percentile, ms.
    #[serde(
        rename = "P90 Dispatch Lag (ms)",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub p90_dispatch_lag_ms: Option<f64>,
    /// p99 of that lag, ms.
    #[serde(rename = "P99 Dispatch Lag (ms)")]
    pub p99_dispatch_lag_ms: f64,
    /// Its maximum, ms.
    #[serde(rename = "Max Dispatch Lag (ms)")]
    pub max_dispatch_lag_ms: f64,
    /// CPU seconds perf used during the run.
    #[serde(
        rename = "Client CPU (s)",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub client_cpu_s: Option<f64>,
    /// That CPU time over the run's wall time, percent of one core.
    #[serde(
        rename = "Client CPU Util (%)",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub client_cpu_util_percent: Option<f64>,
    /// How late a probe task on perf's event loop ran, p99, ms.
    #[serde(
        rename = "Event Loop Delay P99 (ms)",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub loop_delay_p99_ms: Option<f64>,
    /// Its maximum, ms.
    #[serde(
        rename = "Event Loop Delay Max (ms)",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub loop_delay_max_ms: Option<f64>,
    /// Whether the client may have distorted the run (see the README's thresholds).
    #[serde(
        rename = "Client Saturated",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub client_saturated: Option<bool>,
    /// Events the adapter could not decode (skipped).
    #[serde(rename = "Malformed Chunks")]
    pub malformed_chunks: u64,
    /// Requests cut short by an interruption (not measured).
    #[serde(rename = "Interrupted Requests")]
    pub interrupted: u64,
    /// Requests whose token counts were estimated.
    #[serde(rename = "Estimated Token Counts")]
    pub estimated_token_counts: u64,
    /// Requests whose token counts perf counted.
    #[serde(rename = "Client-Counted Token Counts")]
    pub client_counted_token_counts: u64,
    /// Requests sent again after a reused connection closed unanswered.
    #[serde(rename = "Reused-Connection Retries")]
    pub reused_connection_retries: u64,
    /// Mean time such a resend cost a retried request (first send to resend), ms; -1 without.
    #[serde(rename = "Avg Retry Cost (ms)")]
    pub avg_retry_cost_ms: f64,
    /// Requests sent on a connection of their own because the server closes its connections
    /// after its responses.
    #[serde(rename = "Fresh-Connection Requests")]
    pub fresh_connection_requests: u64,
    /// What carried the requests: `HTTP/1.1`, `HTTP/1.1 over TLS` (perf's timed client,
    /// perhaps through a proxy) or `reqwest`.
    #[serde(rename = "Transport", default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
    /// When a read was stamped: `kernel receive time` (the timed client on Linux), else the
    /// time perf read the bytes.
    #[serde(
        rename = "Timestamps",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub timestamps: Option<String>,
    /// Requests that opened the connection they were answered on (perf's timed client; absent
    /// through reqwest, which does not say).
    #[serde(
        rename = "New Connections",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub new_connections: Option<u64>,
    /// Mean TCP connect time of those connections (the proxy's CONNECT included), ms; -1
    /// without.
    #[serde(
        rename = "Avg Connect (ms)",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub avg_connect_ms: Option<f64>,
    /// Mean TLS handshake of those connections, ms; -1 without. Like the connect time, it is
    /// inside the TTFT and latency of the request that opened the connection (both count from
    /// the send, before any connect, as evalscope's do).
    #[serde(
        rename = "Avg TLS Handshake (ms)",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub avg_tls_handshake_ms: Option<f64>,
    /// The longest TLS handshake, ms; -1 without.
    #[serde(
        rename = "Max TLS Handshake (ms)",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub max_tls_handshake_ms: Option<f64>,
    /// Failed requests by kind, as `Failed: <kind>` keys.
    #[serde(flatten)]
    pub failures: BTreeMap<String, u64>,
}

impl Summary {
    /// The key of the failures of `kind`.
    pub fn failure_key(kind: &str) -> String {
        format!("Failed: {kind}")
    }

    /// The summary as the JSON object of `benchmark_summary.json`, keys in order.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The numeric entries, in order (for sinks and running summaries).
    pub fn numbers(&self) -> Vec<(String, f64)> {
        match self.to_json() {
            Value::Object(map) => map
                .into_iter()
                .filter_map(|(k, v)| v.as_f64().map(|v| (k, v)))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Whether the run was of an input-only API (embeddings, rerank).
    pub fn input_only(&self) -> bool {
        self.run_input_tok_per_s.is_some()
    }
}

/// Metric names of `benchmark_percentile.json`, as evalscope writes them.
pub mod metric {
    /// Latency, seconds.
    pub const LATENCY: &str = "Latency (s)";
    /// Time to first token, ms.
    pub const TTFT: &str = "TTFT (ms)";
    /// Inter-token latency, ms.
    pub const ITL: &str = "ITL (ms)";
    /// Time per output token, ms.
    pub const TPOT: &str = "TPOT (ms)";
    /// Prompt tokens.
    pub const INPUT_TOKENS: &str = "Input tokens";
    /// Output tokens.
    pub const OUTPUT_TOKENS: &str = "Output tokens";
    /// Output tokens per second of each request.
    pub const OUTPUT_TOK_S: &str = "Output (tok/s)";
    /// Prompt and output tokens per second of each request.
    pub const TOTAL_TOK_S: &str = "Total (tok/s)";
    /// 1 / TPOT.
    pub const DECODE_TOK_S: &str = "Decode (tok/s)";
    /// Prompt tokens per second of each request (input-only APIs).
    pub const INPUT_TOK_S: &str = "Input (tok/s)";
    /// `--enable-pd-metrics`: the gaps after each response's first, ms.
    pub const STEADY_ITL: &str = "Steady ITL (ms)";
    /// `--enable-pd-metrics`: each response's first gap, ms.
    pub const PD_HANDOFF_LATENCY: &str = "PD Handoff Latency (ms)";
    /// `--enable-pd-metrics`: max(0, first gap - median of the later gaps), ms.
    pub const PD_HANDOFF_OVERHEAD: &str = "PD Handoff Overhead (ms)";
}

/// One row of `benchmark_percentile.json`: a percentile and each metric's value at it.
#[derive(Debug, Clone, PartialEq)]
pub struct PercentileRow {
    /// `min`, `1%`, ..., `99%`, `max`.
    pub label: &'static str,
    /// One value per metric (`None`: no request had the metric), in the metrics' order.
    pub values: Vec<Option<f64>>,
}

/// `benchmark_percentile.json`: a row per percentile, a column per metric.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Percentiles {
    /// The metrics, in column order.
    pub metrics: Vec<&'static str>,
    /// The rows, `min` first.
    pub rows: Vec<PercentileRow>,
}

impl Percentiles {
    /// The value of `metric` at the row `label`.
    pub fn get(&self, label: &str, metric: &str) -> Option<f64> {
        let column = self.metrics.iter().position(|m| *m == metric)?;
        let row = self.rows.iter().find(|r| r.label == label)?;
        row.values.get(column).copied().flatten()
    }

    /// The file's rows as JSON objects: `Percentiles` (the label) first, then each metric
    /// (`null` where no request had it, which the file writes as evalscope's `NaN`).
    pub fn to_json(&self) -> Value {
        Value::Array(
            self.rows
                .iter()
                .map(|row| {
                    let mut object = Map::new();
                    object.insert("Percentiles".into(), json!(row.label));
                    for (metric, value) in self.metrics.iter().zip(&row.values) {
                        object.insert(metric.to_string(), value.map_or(Value::Null, |v| json!(v)));
                    }
                    Value::Object(object)
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_writes_evalscopes_keys_in_order_and_reads_back() {
        let mut s = Summary {
            total: 3,
            concurrency: 8,
            request_rate: -1.0,
            ..Summary::default()
        };
        s.failures.insert(Summary::failure_key("timeout"), 1);
        let json = s.to_json();
        let keys: Vec<&str> = json
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        assert_eq!(
            keys[..4],
            [
                "Test Duration (s)",
                "Concurrency",
                "Request Rate (req/s)",
                "Total Requests"
            ]
        );
        assert_eq!(keys.last(), Some(&"Failed: timeout"));
        assert!(
            !keys.contains(&"KV Cache Hit Rate (%)"),
            "optional keys only when present"
        );
        assert_eq!(json["Concurrency"], json!(8));
        assert_eq!(json["Request Rate (req/s)"], json!(-1.0));
        let back: Summary = serde_json::from_value(json).expect("reads back");
        assert_eq!(back, s);
    }

    #[test]
    fn percentiles_are_read_by_label_and_metric() {
        let p = Percentiles {
            metrics: vec![metric::LATENCY, metric::TTFT],
            rows: vec![PercentileRow {
                label: "99%",
                values: vec![Some(1.5), None],
            }],
        };
        assert_eq!(p.get("99%", metric::LATENCY), Some(1.5));
        assert_eq!(p.get("99%", metric::TTFT), None);
        assert_eq!(
            p.to_json(),
            json!([{"Percentiles": "99%", "Latency (s)": 1.5, "TTFT (ms)": null}])
        );
    }
}
