//! Statistics of a run, with evalscope perf 1.14.1's definitions and keys (the README's
//! "Metrics" section states each one), plus perf's own clearly named extras.
//!
//! Memory stays flat however many requests a run has: the summary needs only running sums and
//! counts, and the per-request percentiles are exact nearest-rank values read back from the
//! run's `benchmark_data.db` (SQLite sorts on disk when it must), as evalscope computes them
//! from its own database. Inter-token latencies are pooled across all requests, so they go into
//! an HDR histogram with three significant digits (within 0.1% of the exact value), and so does
//! the dispatch lag behind "P99 Dispatch Lag (ms)"; their averages are exact running sums.

pub mod derive;
pub mod goodput;
pub mod load;
pub mod saturation;
pub mod summary;
pub mod traces;

pub use load::{ClientLoad, LoopDelay};
pub use summary::{metric, PercentileRow, Percentiles, Summary};

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use perf_plugin_api::ROption;

use derive::Derived;

/// The percentile rows of `benchmark_percentile.json`.
pub const PERCENTILES: [(&str, f64); 11] = [
    ("min", 0.0),
    ("1%", 1.0),
    ("5%", 5.0),
    ("10%", 10.0),
    ("25%", 25.0),
    ("50%", 50.0),
    ("75%", 75.0),
    ("90%", 90.0),
    ("95%", 95.0),
    ("99%", 99.0),
    ("max", 100.0),
];

/// Nearest rank on sorted `values`: the element at `ceil(p/100 * n) - 1`, the first for
/// `min`, the last for `max`.
pub fn nearest_rank(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, n) - 1])
}

fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

fn mean(sum: f64, n: u64) -> f64 {
    if n == 0 {
        -1.0
    } else {
        sum / n as f64
    }
}

/// Running statistics of one run's measured requests.
pub struct RunStats {
    /// Embeddings or rerank: requests that produce no text.
    input_only: bool,
    /// Decision services (`systemone`, `autotrust`): input-only, with evalscope's decision
    /// keys.
    decisions: bool,
    parallel: i64,
    rate: f64,
    total: u64,
    ok: u64,
    streamed: u64,
    first_sent: f64,
    last_completed: f64,
    latency: Sum,
    ttft_stream: Sum,
    ttft_other: Sum,
    tpot: Sum,
    prompt: Sum,
    completion: Sum,
    itl: Histogram<u64>,
    itl_sum_s: f64,
    itl_count: u64,
    dispatch_lag: Sum,
    dispatch_lag_us: Histogram<u64>,
    dispatch_lag_max_s: f64,
    ttfb_sum_s: f64,
    ttfb_count: u64,
    cached_tokens: u64,
    cached_prompt_tokens: u64,
    /// `--multi-turn`: the turn numbers of the successful requests, summed.
    turn_sum: u64,
    /// `--multi-turn`: TTFTs of first turns and of the later ones, seconds.
    first_turn_ttft: Sum,
    later_turn_ttft: Sum,
    /// `--multi-turn`: per-conversation totals (`trace_summary.json`).
    traces: traces::Traces,
    /// `--multi-turn`: conversations whose first turn was measured.
    conversations: u64,
    /// The run replays a trace's schedule.
    replay: bool,
    cache_reported: bool,
    failures: BTreeMap<&'static str, u64>,
    malformed: u64,
    cancelled: u64,
    estimated: u64,
    client_counted: u64,
    retried: u64,
    retry_cost: Sum,
    fresh_connections: u64,
    /// Connect times of the requests that opened their connection, seconds.
    connect: Sum,
    /// TLS handshakes of those connections, seconds, and the longest.
    tls: Sum,
    tls_max_s: f64,
    /// Output tokens per decode step, over the requests with more than one.
    decoded_per_step: Sum,
    /// `--goodput`'s objectives and the good requests so far.
    slo: Option<goodput::Slo>,
    good: u64,
    /// `--enable-pd-metrics`: the gaps after the first (pooled), the first gaps and the
    /// handoff overheads, microseconds, with their exact sums.
    pd: Option<Box<PdStats>>,
}

/// The prefill/decode handoff figures of a run (`--enable-pd-metrics`), evalscope's
/// definitions: the handoff is a response's first gap, its overhead the amount by which it
/// exceeds the median of the later gaps (never below 0), the steady ITL the later gaps.
struct PdStats {
    steady: Histogram<u64>,
    steady_sum: Sum,
    handoff: Histogram<u64>,
    handoff_sum: Sum,
    overhead: Histogram<u64>,
    overhead_sum: Sum,
}

impl PdStats {
    fn new() -> Self {
        PdStats {
            steady: microseconds(),
            steady_sum: Sum::default(),
            handoff: microseconds(),
            handoff_sum: Sum::default(),
            overhead: microseconds(),
            overhead_sum: Sum::default(),
        }
    }

    fn add(&mut self, gaps: &[f64]) {
        let us = |s: f64| (s * 1e6).round().max(0.0) as u64;
        let Some((&first, rest)) = gaps.split_first() else {
            return;
        };
        self.handoff.saturating_record(us(first));
        self.handoff_sum.add(first);
        if rest.is_empty() {
            return;
        }
        for &g in rest {
            self.steady.saturating_record(us(g));
            self.steady_sum.add(g);
        }
        let overhead = (first - median(rest)).max(0.0);
        self.overhead.saturating_record(us(overhead));
        self.overhead_sum.add(overhead);
    }
}

/// The median of a non-empty slice (the mean of the middle two for an even length).
fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The percentiles of a microsecond histogram, ms (`None` for an empty one).
fn histogram_ms(h: &Histogram<u64>, ps: &[f64]) -> Vec<Option<f64>> {
    ps.iter()
        .map(|&p| {
            (!h.is_empty()).then(|| {
                let us = match p {
                    0.0 => h.min(),
                    100.0 => h.max(),
                    _ => h.value_at_quantile(p / 100.0),
                };
                us as f64 / 1000.0
            })
        })
        .collect()
}

impl RunStats {
    /// Empty statistics for a run at `parallel` (-1 open loop) and `rate` (-1 unpaced).
    pub fn new(parallel: i64, rate: f64) -> Self {
        RunStats {
            input_only: false,
            decisions: false,
            parallel,
            rate,
            total: 0,
            ok: 0,
            streamed: 0,
            first_sent: f64::INFINITY,
            last_completed: f64::NEG_INFINITY,
            latency: Sum::default(),
            ttft_stream: Sum::default(),
            ttft_other: Sum::default(),
            tpot: Sum::default(),
            prompt: Sum::default(),
            completion: Sum::default(),
            itl: microseconds(),
            itl_sum_s: 0.0,
            itl_count: 0,
            dispatch_lag: Sum::default(),
            dispatch_lag_us: microseconds(),
            dispatch_lag_max_s: 0.0,
            ttfb_sum_s: 0.0,
            ttfb_count: 0,
            cached_tokens: 0,
            cached_prompt_tokens: 0,
            turn_sum: 0,
            first_turn_ttft: Sum::default(),
            later_turn_ttft: Sum::default(),
            traces: traces::Traces::default(),
            conversations: 0,
            replay: false,
            cache_reported: false,
            failures: BTreeMap::new(),
            malformed: 0,
            cancelled: 0,
            estimated: 0,
            client_counted: 0,
            retried: 0,
            retry_cost: Sum::default(),
            fresh_connections: 0,
            connect: Sum::default(),
            tls: Sum::default(),
            tls_max_s: 0.0,
            decoded_per_step: Sum::default(),
            slo: None,
            good: 0,
            pd: None,
        }
    }

    /// Measured requests so far (interrupted ones excluded).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Successful requests so far.
    pub fn succeeded(&self) -> u64 {
        self.ok
    }

    /// Failed requests so far.
    pub fn failed(&self) -> u64 {
        self.total - self.ok
    }

    /// Adds one measured request.
    pub fn add(&mut self, d: &Derived) {
        let (rec, raw) = (&d.record, &d.raw);
        self.malformed += u64::from(raw.malformed_chunks);
        self.retried += u64::from(raw.retries);
        if let Some(cost) = derive::retry_cost_s(raw) {
            self.retry_cost.add(cost);
        }
        if raw.fresh_connection {
            self.fresh_connections += 1;
        }
        if let Some(opened) = raw.opened {
            self.connect.add(opened.connect.as_secs_f64());
            if let Some(tls) = opened.tls {
                self.tls.add(tls.as_secs_f64());
                self.tls_max_s = self.tls_max_s.max(tls.as_secs_f64());
            }
        }
        if raw.turn.is_some_and(|t| t.turn == 1) {
            self.conversations += 1;
        }
        if derive::cancelled(raw) {
            self.cancelled += 1;
            return;
        }
        self.total += 1;
        self.first_sent = self.first_sent.min(rec.times.sent);
        self.last_completed = self.last_completed.max(rec.times.completed);
        let lag = derive::dispatch_lag_s(raw).max(0.0);
        self.dispatch_lag.add(lag);
        self.dispatch_lag_max_s = self.dispatch_lag_max_s.max(lag);
        self.dispatch_lag_us
            .saturating_record((lag * 1e6).round().max(1.0) as u64);
        if let Some(t) = derive::ttfb_s(raw) {
            self.ttfb_sum_s += t;
            self.ttfb_count += 1;
        }
        if rec.tokens_estimated {
            self.estimated += 1;
        } else if d.tokens.client {
            self.client_counted += 1;
        }
        if rec.is_stream {
            self.streamed += 1;
        }
        if !rec.success {
            *self.failures.entry(rec.failure.as_str()).or_default() += 1;
            return;
        }
        self.ok += 1;
        let get = |o: ROption<f64>| o.into_option();
        let latency = get(rec.latency_s).unwrap_or(0.0);
        let prompt = rec.prompt_tokens.into_option().unwrap_or(0) as f64;
        let completion = rec.completion_tokens.into_option().unwrap_or(0) as f64;
        self.latency.add(latency);
        self.prompt.add(prompt);
        self.completion.add(completion);
        if let Some(ttft) = get(rec.ttft_s) {
            if rec.is_stream {
                self.ttft_stream.add(ttft);
            } else {
                self.ttft_other.add(ttft);
            }
        }
        // Streamed requests with more than one output token have a TPOT.
        if let Some(tpot) = get(rec.tpot_s) {
            self.tpot.add(tpot);
        }
        // evalscope's tokens per decode step L = (tokens - 1) / (decode chunks - 1); above 1
        // only when chunks carry several tokens (speculative decoding).
        let steps = u64::from(raw.decode_chunks);
        let tokens = d.tokens.completion;
        if tokens > 1 && steps > 1 {
            let per_step = (tokens - 1) as f64 / (steps - 1) as f64;
            if per_step > 1.0 {
                self.decoded_per_step.add(per_step);
            }
        }
        if let Some(slo) = &self.slo {
            if slo.met(get(rec.ttft_s), get(rec.tpot_s), latency) {
                self.good += 1;
            }
        }
        if let Some(pd) = &mut self.pd {
            pd.add(rec.itl_s.as_slice());
        }
        for &gap in rec.itl_s.iter() {
            self.itl_sum_s += gap;
            self.itl_count += 1;
            self.itl
                .saturating_record((gap * 1e6).round().max(1.0) as u64);
        }
        if let Some(cached) = rec.cached_tokens.into_option() {
            self.cache_reported = true;
            self.cached_tokens += cached;
            self.cached_prompt_tokens += prompt as u64;
        }
        if let Some(turn) = raw.turn {
            // evalscope's first-chunk latency: the TTFT, the whole latency unstreamed.
            let ttft = get(rec.ttft_s).unwrap_or(latency);
            self.turn_sum += u64::from(turn.turn);
            if turn.turn == 1 {
                self.first_turn_ttft.add(ttft);
            } else {
                self.later_turn_ttft.add(ttft);
            }
            self.traces.add(traces::TurnSample {
                conversation: turn.conversation,
                sent: rec.times.sent,
                completed: rec.times.completed,
                ttft,
                latency,
                prompt: prompt as u64,
                completion: completion as u64,
                cached: rec.cached_tokens.into_option().unwrap_or(0),
            });
        }
    }

    /// `--multi-turn`: the conversations started (their first turn measured).
    pub fn conversations(&self) -> u64 {
        self.conversations
    }

    /// `trace_summary.json`, for a `--multi-turn` run with a successful turn.
    pub fn trace_summary(&self) -> Option<traces::TraceSummary> {
        (!self.traces.is_empty()).then(|| self.traces.summary())
    }

    fn wall_s(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            (self.last_completed - self.first_sent).max(0.0)
        }
    }

    /// Counts the requests that meet `--goodput`'s objectives.
    pub fn goodput(mut self, slo: Option<goodput::Slo>) -> Self {
        self.slo = slo;
        self
    }

    /// Keeps `--enable-pd-metrics`' figures.
    pub fn pd_metrics(mut self, yes: bool) -> Self {
        self.pd = yes.then(|| Box::new(PdStats::new()));
        self
    }

    /// For embeddings and rerank, whose requests produce no text: the summary adds the input
    /// throughput and the percentiles are latency, input tokens and input tokens per second.
    pub fn input_only(mut self, yes: bool) -> Self {
        self.input_only = yes;
        self
    }

    /// For decision services (`systemone`, `autotrust`), input-only as evalscope reports them:
    /// the summary lists TTFT, TPOT and ITL under `Not Applicable Metrics` and its input
    /// throughput is the mean input tokens times the request throughput.
    pub fn decisions(mut self, yes: bool) -> Self {
        self.decisions = yes;
        if yes {
            self.input_only = true;
        }
        self
    }

    /// Whether the run is of a decision service.
    pub fn is_decisions(&self) -> bool {
        self.decisions
    }

    /// `benchmark_summary.json` (see [`Summary`] for the keys), with the client's load when
    /// the run is over. evalscope's formulas and sentinels: averages over no request are -1
    /// (TTFT and TPOT, in ms, -1000); the ITL average over no gap is 0; input-only APIs (no
    /// output) write 0 for every output figure.
    pub fn summary(&self, load: Option<ClientLoad>) -> Summary {
        let w = self.wall_s();
        let per_s = |x: f64| if w > 0.0 { x / w } else { 0.0 };
        let sum_prompt = self.prompt.sum;
        let sum_completion = self.completion.sum;
        let ms = |seconds: f64| round(seconds * 1000.0, 2);
        let mut s = Summary {
            duration_s: round(w, 4),
            concurrency: self.parallel,
            request_rate: self.rate,
            total: self.total,
            succeeded: self.ok,
            failed: self.total - self.ok,
            streamed: self.streamed,
            non_streamed: self.total - self.streamed,
            req_per_s: round(per_s(self.ok as f64), 4),
            avg_latency_s: round(mean(self.latency.sum, self.ok), 4),
            avg_input_tokens: round(mean(sum_prompt, self.ok), 4),
            ..Summary::default()
        };
        if self.input_only {
            // evalscope divides by the summed latencies, which under concurrency is a
            // per-stream speed; perf's own figure divides by the run's wall time.
            s.input_tok_per_s = if self.latency.sum > 0.0 {
                round(sum_prompt / self.latency.sum, 4)
            } else {
                -1.0
            };
            s.run_input_tok_per_s = Some(round(per_s(sum_prompt), 4));
            if self.decisions {
                // evalscope's mean input tokens times the request throughput: the input
                // tokens over the run's wall time.
                s.input_tok_per_s = round(per_s(sum_prompt), 4);
                s.not_applicable = Some(
                    ["Avg TTFT (ms)", "Avg TPOT (ms)", "Avg ITL (ms)"]
                        .map(str::to_string)
                        .to_vec(),
                );
            }
        } else {
            let (ttft, tpot) = if self.ttft_stream.n > 0 {
                // Over the streamed requests; TPOT over those with more than one token.
                let tpot = if self.tpot.n == 0 {
                    0.0
                } else {
                    self.tpot.sum / self.tpot.n as f64
                };
                (mean(self.ttft_stream.sum, self.ttft_stream.n), tpot)
            } else {
                // Nothing streamed: TTFT is the latency and TPOT 0 (-1 without a success).
                let tpot = if self.ok == 0 { -1.0 } else { 0.0 };
                (mean(self.ttft_other.sum, self.ok), tpot)
            };
            s.output_tok_per_s = round(per_s(sum_completion), 4);
            s.total_tok_per_s = round(per_s(sum_prompt + sum_completion), 4);
            s.avg_ttft_ms = ms(ttft);
            s.avg_tpot_ms = ms(tpot);
            s.avg_itl_ms = if self.itl_count == 0 {
                0.0
            } else {
                ms(self.itl_sum_s / self.itl_count as f64)
            };
            s.avg_output_tokens = round(mean(sum_completion, self.ok), 4);
            if let Some(pd) = &self.pd {
                let avg = |sum: &Sum| (sum.n > 0).then(|| ms(sum.sum / sum.n as f64));
                s.avg_steady_itl_ms = avg(&pd.steady_sum);
                s.avg_pd_handoff_latency_ms = avg(&pd.handoff_sum);
                s.avg_pd_handoff_overhead_ms = avg(&pd.overhead_sum);
            }
        }
        if self.slo.is_some() {
            s.goodput_req_per_s = Some(round(per_s(self.good as f64), 4));
            s.good_percent = Some(if self.total == 0 {
                0.0
            } else {
                round(100.0 * self.good as f64 / self.total as f64, 4)
            });
        }
        if self.cache_reported && self.cached_prompt_tokens > 0 {
            let rate = 100.0 * self.cached_tokens as f64 / self.cached_prompt_tokens as f64;
            s.kv_cache_hit_rate = Some(round(rate, 4));
        }
        if self.turn_sum > 0 && self.ok > 0 {
            s.avg_turns_per_request = Some(round(self.turn_sum as f64 / self.ok as f64, 4));
        }
        let ms_mean = |sum: &Sum| (sum.n > 0).then(|| round(sum.sum / sum.n as f64 * 1000.0, 2));
        s.avg_first_turn_ttft_ms = ms_mean(&self.first_turn_ttft);
        s.avg_subsequent_turn_ttft_ms = ms_mean(&self.later_turn_ttft);
        if self.decoded_per_step.n > 0 {
            let l = self.decoded_per_step.sum / self.decoded_per_step.n as f64;
            s.avg_decoded_tok_per_iter = Some(round(l, 4));
            s.spec_accept_rate = Some(round((1.0 - 1.0 / l).clamp(0.0, 1.0), 4));
        }
        self.extras(&mut s, load);
        s
    }

    /// The p99 dispatch lag in milliseconds, when the run was paced by `--rate` without a
    /// concurrency cap (the runs where the lag means a missed schedule).
    fn paced_lag_p99_ms(&self) -> Option<f64> {
        self.paced_lag_ms(0.99)
    }

    /// The lag's quantile `q` in milliseconds, on a run paced without a concurrency cap.
    fn paced_lag_ms(&self, q: f64) -> Option<f64> {
        ((self.rate > 0.0 || self.replay) && self.parallel < 0 && self.dispatch_lag.n > 0).then(
            || {
                (self.dispatch_lag_us.value_at_quantile(q) as f64 / 1e6)
                    .min(self.dispatch_lag_max_s)
                    * 1000.0
            },
        )
    }

    /// The run replays a trace's own schedule: its dispatch lag is the replay lag.
    pub fn replay(mut self, yes: bool) -> Self {
        self.replay = yes;
        self
    }

    /// Why the client may have distorted this run (empty when it did not).
    pub fn saturation(&self, load: &ClientLoad) -> Vec<String> {
        load.saturation(self.paced_lag_p99_ms())
    }

    fn extras(&self, s: &mut Summary, load: Option<ClientLoad>) {
        let lag = &self.dispatch_lag;
        let ms = |v: Option<f64>| v.map_or(-1.0, |x| round(x * 1000.0, 2));
        let some_lag = |v: f64| (lag.n > 0).then_some(v);
        s.avg_ttfb_ms = ms((self.ttfb_count > 0).then(|| self.ttfb_sum_s / self.ttfb_count as f64));
        s.avg_dispatch_lag_ms = ms(some_lag(lag.sum / lag.n.max(1) as f64));
        // The histogram rounds to three significant digits; its p99 never exceeds the exact
        // maximum.
        s.p99_dispatch_lag_ms = ms(some_lag(
            (self.dispatch_lag_us.value_at_quantile(0.99) as f64 / 1e6)
                .min(self.dispatch_lag_max_s),
        ));
        s.max_dispatch_lag_ms = ms(some_lag(self.dispatch_lag_max_s));
        s.p50_dispatch_lag_ms = self.paced_lag_ms(0.5).map(|v| round(v, 2));
        s.p90_dispatch_lag_ms = self.paced_lag_ms(0.9).map(|v| round(v, 2));
        if let Some(load) = load {
            load.fill(s);
            s.client_saturated = Some(!self.saturation(&load).is_empty());
        }
        s.malformed_chunks = self.malformed;
        s.interrupted = self.cancelled;
        s.estimated_token_counts = self.estimated;
        s.client_counted_token_counts = self.client_counted;
        s.reused_connection_retries = self.retried;
        s.avg_retry_cost_ms =
            ms((self.retry_cost.n > 0).then(|| self.retry_cost.sum / self.retry_cost.n as f64));
        s.fresh_connection_requests = self.fresh_connections;
        let mean = |sum: &Sum| (sum.n > 0).then(|| sum.sum / sum.n as f64);
        s.new_connections = Some(self.connect.n);
        s.avg_connect_ms = Some(ms(mean(&self.connect)));
        s.avg_tls_handshake_ms = Some(ms(mean(&self.tls)));
        s.max_tls_handshake_ms = Some(ms((self.tls.n > 0).then_some(self.tls_max_s)));
        for (kind, n) in &self.failures {
            s.failures.insert(Summary::failure_key(kind), *n);
        }
    }

    /// `benchmark_percentile.json`: one row per percentile, nearest rank, 4 decimals, over
    /// every measured request in `rows` (the run's complete table, read back sorted).
    pub fn percentiles(&self, rows: &impl Rows) -> Result<Percentiles, String> {
        let ps: Vec<f64> = PERCENTILES.iter().map(|&(_, p)| p).collect();
        let ok = "success = 1";
        // evalscope's TTFT: over streamed requests when there are any.
        let ttft_rows = if self.ttft_stream.n > 0 {
            "success = 1 AND is_stream = 1"
        } else {
            "success = 1 AND is_stream = 0"
        };
        // TPOT over the streamed requests that have one (a pure non-streamed run: every
        // request, at 0); its inverse over those with one.
        let (tpot_rows, decode_rows) = if self.ttft_stream.n > 0 {
            let streamed = "success = 1 AND is_stream = 1 AND time_per_output_token > 0";
            (streamed, streamed)
        } else {
            ("success = 1", "success = 1 AND time_per_output_token > 0")
        };
        let rate_rows = "success = 1 AND latency > 0";
        let input_columns = [
            (metric::LATENCY, "COALESCE(latency, 0)", ok),
            (metric::INPUT_TOKENS, "COALESCE(prompt_tokens, 0) * 1.0", ok),
            (
                metric::INPUT_TOK_S,
                "COALESCE(prompt_tokens, 0) / latency",
                rate_rows,
            ),
        ];
        let generation_columns = [
            (metric::LATENCY, "COALESCE(latency, 0)", ok),
            (metric::TTFT, "first_chunk_latency * 1000.0", ttft_rows),
            (metric::TPOT, "time_per_output_token * 1000.0", tpot_rows),
            (metric::INPUT_TOKENS, "COALESCE(prompt_tokens, 0) * 1.0", ok),
            (
                metric::OUTPUT_TOKENS,
                "COALESCE(completion_tokens, 0) * 1.0",
                ok,
            ),
            (
                metric::OUTPUT_TOK_S,
                "COALESCE(completion_tokens, 0) / latency",
                rate_rows,
            ),
            (
                metric::TOTAL_TOK_S,
                "(COALESCE(prompt_tokens, 0) + COALESCE(completion_tokens, 0)) / latency",
                rate_rows,
            ),
            (
                metric::DECODE_TOK_S,
                "1.0 / time_per_output_token",
                decode_rows,
            ),
        ];
        let columns: &[(&'static str, &str, &str)] = if self.input_only {
            &input_columns
        } else {
            &generation_columns
        };
        let mut metrics = Vec::new();
        let mut values: Vec<Vec<Option<f64>>> = Vec::new();
        for &(name, expr, filter) in columns {
            metrics.push(name);
            values.push(rows.nearest_ranks(expr, filter, &ps)?);
            // ITL is pooled over every gap, from the histogram, next to TTFT.
            if name == metric::TTFT {
                metrics.push(metric::ITL);
                values.push(histogram_ms(&self.itl, &ps));
                // evalscope's PD columns follow ITL, where the run has their samples.
                if let Some(pd) = &self.pd {
                    for (name, h) in [
                        (metric::STEADY_ITL, &pd.steady),
                        (metric::PD_HANDOFF_LATENCY, &pd.handoff),
                        (metric::PD_HANDOFF_OVERHEAD, &pd.overhead),
                    ] {
                        if !h.is_empty() {
                            metrics.push(name);
                            values.push(histogram_ms(h, &ps));
                        }
                    }
                }
            }
        }
        let rows = PERCENTILES
            .iter()
            .enumerate()
            .map(|(i, &(label, _))| PercentileRow {
                label,
                values: values.iter().map(|v| v[i].map(|x| round(x, 4))).collect(),
            })
            .collect();
        Ok(Percentiles { metrics, rows })
    }
}

/// Where a run's per-request rows are (its `benchmark_data.db`), holding every measured
/// request: the exact nearest-rank values of an SQL expression over the rows matching a
/// condition, one per percentile of `ps` (0 = min, 100 = max), as [`nearest_rank`] defines
/// them.
pub trait Rows {
    /// The values, `None` where no row has the expression.
    fn nearest_ranks(
        &self,
        expr: &str,
        filter: &str,
        ps: &[f64],
    ) -> Result<Vec<Option<f64>>, String>;
}

/// A running sum and count.
#[derive(Debug, Clone, Copy, Default)]
struct Sum {
    sum: f64,
    n: u64,
}

impl Sum {
    fn add(&mut self, v: f64) {
        self.sum += v;
        self.n += 1;
    }
}

/// A histogram of microseconds from 1 us to 1 h, three significant digits.
fn microseconds() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3)
        .expect("1 us .. 1 h with 3 significant digits are valid constant bounds")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::db::ResultDb;
    use crate::worker::RawRecord;
    use perf_plugin_api::{FailureKind, Usage};
    use perf_timing::EpochClock;
    use std::time::{Duration, Instant};

    /// A streamed request sent at `start_ms` with output events at `outputs_ms` (after
    /// sending) and usage reporting `completion` tokens.
    fn raw(t0: Instant, start_ms: u64, outputs_ms: &[u64], completion: u64) -> RawRecord {
        let ms = |m: u64| t0 + Duration::from_millis(m);
        let sent = ms(start_ms);
        let at = |m: u64| sent + Duration::from_millis(m);
        RawRecord {
            index: 0,
            warmup: false,
            intended: sent,
            sent,
            first_byte: Some(at(1)),
            first_output: outputs_ms.first().map(|m| at(*m)),
            last_event: outputs_ms.last().map(|m| at(*m + 1)),
            completed: at(outputs_ms.last().copied().unwrap_or(0) + 1),
            itl_s: outputs_ms
                .windows(2)
                .map(|w| (w[1] - w[0]) as f64 / 1000.0)
                .collect(),
            output_events: outputs_ms.len() as u32,
            decode_chunks: outputs_ms.len() as u32,
            malformed_chunks: 0,
            output_tokens_from_events: None,
            output_tokens_counted: None,
            usage: Usage {
                prompt_tokens: ROption::RSome(10),
                completion_tokens: ROption::RSome(completion),
                cached_tokens: ROption::RNone,
                ext: Default::default(),
            },
            text: "x".repeat(outputs_ms.len()),
            reasoning: String::new(),
            status: 200,
            failure: FailureKind::None,
            error: String::new(),
            is_stream: true,
            retries: 0,
            first_sent: sent,
            fresh_connection: false,
            opened: None,
            request_body: bytes::Bytes::new(),
            prompt_tokens_hint: None,
            prompt_chars: 0,
            messages: Default::default(),
            peak_memory_bytes: 0,
            response_model: None,
            turn: None,
            request_id: String::new(),
        }
    }

    #[test]
    fn summary_follows_evalscopes_formulas() {
        let t0 = Instant::now();
        let clock = EpochClock::new();
        let mut stats = RunStats::new(2, -1.0);
        // Request A: TTFT 100 ms, output at 100/120/140 ms, last event 141 ms, 3 tokens.
        // Request B: starts 50 ms later, TTFT 200 ms, output at 200/230 ms, 2 tokens.
        // Request C: fails with HTTP 500 at 60 ms.
        let a = raw(t0, 0, &[100, 120, 140], 3);
        let b = raw(t0, 50, &[200, 230], 2);
        let mut c = raw(t0, 10, &[], 0);
        c.failure = FailureKind::HttpStatus;
        c.status = 500;
        c.completed = t0 + Duration::from_millis(60);
        let derived: Vec<Derived> = [&a, &b, &c]
            .into_iter()
            .map(|r| derive::derive(r.clone(), 0, &clock))
            .collect();
        for d in &derived {
            stats.add(d);
        }
        let s = stats.summary(None);
        assert_eq!(s.total, 3);
        assert_eq!(s.succeeded, 2);
        assert_eq!(s.failures.get("Failed: http_status"), Some(&1));
        // W = last completion (B: 50 + 231 ms) - first send (A: 0 ms).
        assert!((s.duration_s - 0.281).abs() < 1e-9);
        assert!((s.req_per_s - round(2.0 / 0.281, 4)).abs() < 1e-9);
        // Latency: A 141 ms, B 231 ms.
        assert!((s.avg_latency_s - 0.186).abs() < 1e-9);
        assert_eq!(s.avg_ttft_ms, 150.0);
        // TPOT: A (141 - 100) / 2 = 20.5 ms, B (231 - 200) / 1 = 31 ms.
        assert_eq!(s.avg_tpot_ms, 25.75);
        // ITL pooled: 20, 20, 30 ms.
        assert_eq!(s.avg_itl_ms, round(70.0 / 3.0, 2));
        assert_eq!(s.avg_output_tokens, 2.5);
        assert!((s.output_tok_per_s - round(5.0 / 0.281, 4)).abs() < 1e-9);
        let dir = tempfile::tempdir().expect("temp dir");
        let mut db =
            ResultDb::create(&dir.path().join("b.db"), 10, 0.0, Default::default()).expect("db");
        for d in &derived {
            db.insert(d).expect("row");
        }
        let rows = db.complete_rows().expect("every row written");
        let p = stats.percentiles(&rows).expect("percentiles");
        assert_eq!(
            p.get("50%", metric::TTFT),
            Some(100.0),
            "nearest rank of [100, 200] at 50% is the first"
        );
        assert_eq!(p.get("max", metric::LATENCY), Some(0.231));
        assert_eq!(
            p.get("min", metric::OUTPUT_TOK_S),
            Some(round(2.0 / 0.231, 4))
        );
    }

    /// The percentiles read back from SQLite are exactly the nearest ranks of the records'
    /// own values, failures and interruptions left out.
    #[test]
    fn percentiles_from_the_database_equal_in_memory_nearest_ranks() {
        let t0 = Instant::now();
        let clock = EpochClock::new();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut db =
            ResultDb::create(&dir.path().join("b.db"), 64, 0.0, Default::default()).expect("db");
        let mut stats = RunStats::new(8, -1.0);
        let (mut latency, mut ttft, mut tpot, mut out_tps) = (vec![], vec![], vec![], vec![]);
        let mut seed = 7u64;
        for i in 0..997u64 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let first = 5 + (seed >> 33) % 400;
            let gap = 1 + (seed >> 45) % 30;
            let n = 1 + (seed >> 52) % 6;
            let outputs: Vec<u64> = (0..n).map(|k| first + k * gap).collect();
            let mut r = raw(t0, i, &outputs, n);
            if i % 50 == 3 {
                r.failure = FailureKind::HttpStatus;
            } else if i % 70 == 5 {
                r.failure = FailureKind::Cancelled;
            }
            let d = derive::derive(r, 0, &clock);
            stats.add(&d);
            db.insert(&d).expect("row");
            let rec = &d.record;
            if rec.success {
                let l = rec.latency_s.into_option().expect("latency");
                latency.push(l);
                ttft.push(rec.ttft_s.into_option().expect("ttft") * 1000.0);
                if let Some(t) = rec.tpot_s.into_option().filter(|t| *t > 0.0) {
                    tpot.push(t * 1000.0);
                }
                out_tps.push(n as f64 / l);
            }
        }
        let rows = db.complete_rows().expect("every row written");
        let pct = stats.percentiles(&rows).expect("percentiles");
        for v in [&mut latency, &mut ttft, &mut tpot, &mut out_tps] {
            v.sort_by(f64::total_cmp);
        }
        for &(label, p) in PERCENTILES.iter() {
            let want = |v: &[f64]| Some(round(nearest_rank(v, p).expect("values"), 4));
            assert_eq!(pct.get(label, metric::LATENCY), want(&latency), "p{p}");
            assert_eq!(pct.get(label, metric::TTFT), want(&ttft), "p{p}");
            assert_eq!(pct.get(label, metric::TPOT), want(&tpot), "p{p}");
            assert_eq!(pct.get(label, metric::OUTPUT_TOK_S), want(&out_tps), "p{p}");
        }
    }

    #[test]
    fn the_p99_dispatch_lag_is_never_above_the_maximum() {
        // One lag of 12.3449 ms: the histogram's three significant digits put its p99 at the
        // top of the 12.34-12.35 ms bucket, above the exact maximum.
        let t0 = Instant::now();
        let mut r = raw(t0, 100, &[10], 1);
        r.intended = r.first_sent - Duration::from_micros(12_344) - Duration::from_nanos(900);
        let mut stats = RunStats::new(1, -1.0);
        stats.add(&derive::derive(r, 0, &EpochClock::new()));
        let s = stats.summary(None);
        assert_eq!(s.max_dispatch_lag_ms, 12.34);
        assert!(s.p99_dispatch_lag_ms <= s.max_dispatch_lag_ms, "{s:?}");
    }

    #[test]
    fn nearest_rank_matches_evalscope_1_14_1() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(nearest_rank(&v, 0.0), Some(1.0));
        assert_eq!(
            nearest_rank(&v, 50.0),
            Some(5.0),
            "ceil(0.5*10)-1 = index 4"
        );
        assert_eq!(nearest_rank(&v, 99.0), Some(10.0));
        assert_eq!(nearest_rank(&v, 25.0), Some(3.0), "ceil(2.5)-1 = index 2");
        assert_eq!(nearest_rank(&v, 100.0), Some(10.0));
        assert_eq!(nearest_rank(&[], 50.0), None);
        assert_eq!(nearest_rank(&[7.0], 1.0), Some(7.0));
    }
}
