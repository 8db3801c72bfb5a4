//! The simulator backend: a server with a configurable time to first token, time per output
//! token, output length, tokens per chunk, capacity (concurrent slots; requests beyond it
//! queue, and their queueing time shows up in the time to first token, as on a real server),
//! and deterministic fault injection (every Nth request fails, drops its connection mid-stream,
//! or gets a malformed chunk), so tests can count failures exactly.
//!
//! Token times are scheduled on an absolute clock from the moment a slot is granted: chunk j
//! leaves at `start + ttft + (last token of j) * tpot`, so delays never accumulate drift.
//! Prompt tokens are estimated as one per four characters (token ids are counted exactly).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::StatusCode;
use tokio::sync::{mpsc, Semaphore};

use super::cache::{text_tokens, PrefixCache};
use super::metrics::Metrics;
use super::{Backend, CompletionRequest, Generation, Piece, Rejection};

/// How the simulator behaves.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SimulatorConfig {
    /// Time to first token, in milliseconds.
    pub ttft_ms: f64,
    /// Time per output token after the first, in milliseconds.
    pub tpot_ms: f64,
    /// Output length in tokens (capped by the request's `max_tokens`).
    pub output_tokens: u32,
    /// Tokens per streamed chunk.
    pub tokens_per_chunk: u32,
    /// Concurrent slots; requests beyond it queue (0 = unlimited).
    pub capacity: usize,
    /// Every Nth request gets an HTTP error (0 = never).
    pub fail_every: u64,
    /// The status of injected HTTP errors.
    pub fail_status: u16,
    /// Every Nth streamed request has its connection dropped mid-stream (0 = never).
    pub drop_every: u64,
    /// Every Nth streamed request gets one malformed chunk (0 = never).
    pub malformed_every: u64,
    /// Prefix cache size in prompt tokens (0 = no cache, no `cached_tokens` reported).
    pub prefix_cache_tokens: usize,
    /// Tokens per cache block.
    pub cache_block_tokens: usize,
    /// Prefill time per uncached prompt token, milliseconds, added to the time to first token.
    pub prefill_ms_per_token: f64,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        SimulatorConfig {
            ttft_ms: 50.0,
            tpot_ms: 5.0,
            output_tokens: 64,
            tokens_per_chunk: 1,
            capacity: 0,
            fail_every: 0,
            fail_status: 500,
            drop_every: 0,
            malformed_every: 0,
            prefix_cache_tokens: 0,
            cache_block_tokens: 16,
            prefill_ms_per_token: 0.0,
        }
    }
}

const WORDS: [&str; 16] = [
    " the", " quick", " brown", " fox", " jumps", " over", " a", " lazy", " dog", " while",
    " seven", " bright", " stars", " watch", " from", " above",
];

/// The simulator.
pub struct MockBackend {
    config: SimulatorConfig,
    slots: Option<Arc<Semaphore>>,
    cache: Option<PrefixCache>,
    metrics: Arc<Metrics>,
}

impl MockBackend {
    /// A simulator with `config`.
    pub fn new(config: SimulatorConfig) -> Self {
        let slots = (config.capacity > 0).then(|| Arc::new(Semaphore::new(config.capacity)));
        let cache = PrefixCache::new(config.prefix_cache_tokens, config.cache_block_tokens);
        MockBackend {
            metrics: Arc::new(Metrics::new(config.capacity)),
            config,
            slots,
            cache,
        }
    }

    fn output_tokens(&self, req: &CompletionRequest) -> (u32, &'static str) {
        let natural = self.config.output_tokens;
        let mut n = if req.ignore_eos {
            req.max_tokens.unwrap_or(natural)
        } else {
            natural
        };
        if let Some(min) = req.min_tokens {
            n = n.max(min);
        }
        match req.max_tokens {
            Some(max) if n >= max => (max, "length"),
            _ => (n, "stop"),
        }
    }
}

fn every(n: u64, sequence: u64) -> bool {
    n > 0 && sequence % n == 0
}

/// The cached prompt tokens of `req`, its blocks then cached: token ids as they came, text
/// as four-character pseudo-tokens (role and content of each message, in order).
fn cached_tokens(cache: &PrefixCache, req: &CompletionRequest) -> u64 {
    if let Some(ids) = &req.prompt_ids {
        return cache.serve(ids);
    }
    let text = match &req.prompt {
        Some(p) => p.clone(),
        None => req.messages.iter().map(|(_, t)| t.as_str()).collect(),
    };
    cache.serve(&text_tokens(&text))
}

fn prompt_tokens(req: &CompletionRequest) -> u64 {
    if let Some(ids) = &req.prompt_ids {
        return ids.len() as u64;
    }
    let chars: usize = match &req.prompt {
        Some(p) => p.chars().count(),
        None => req.messages.iter().map(|(_, t)| t.chars().count()).sum(),
    };
    (chars as u64).div_ceil(4).max(1)
}

impl Backend for MockBackend {
    fn model(&self) -> &str {
        "mock"
    }

    fn metrics(&self) -> Option<String> {
        Some(self.metrics.render(self.model()))
    }

    fn start(&self, req: &CompletionRequest) -> Result<Generation, Rejection> {
        let c = &self.config;
        if every(c.fail_every, req.sequence) {
            return Err(Rejection {
                status: StatusCode::from_u16(c.fail_status)
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                message: format!(
                    "injected failure (request {}, --mock-fail-every {})",
                    req.sequence, c.fail_every
                ),
            });
        }
        let (n_tokens, finish_reason) = self.output_tokens(req);
        let prompt = prompt_tokens(req);
        let cached = self
            .cache
            .as_ref()
            .map(|cache| cached_tokens(cache, req).min(prompt));
        let prefill_ms = (prompt - cached.unwrap_or(0)) as f64 * c.prefill_ms_per_token.max(0.0);
        let m = &self.metrics;
        m.prompt_tokens.fetch_add(prompt, Relaxed);
        if let Some(hit) = cached {
            m.prefix_queries.fetch_add(prompt, Relaxed);
            m.prefix_hits.fetch_add(hit, Relaxed);
        }
        let script = Script {
            n_tokens,
            per_chunk: c.tokens_per_chunk.max(1),
            ttft: Duration::from_secs_f64((c.ttft_ms.max(0.0) + prefill_ms) / 1000.0),
            tpot: Duration::from_secs_f64(c.tpot_ms.max(0.0) / 1000.0),
            drop: req.stream && every(c.drop_every, req.sequence),
            malformed: req.stream && every(c.malformed_every, req.sequence),
            finish_reason,
        };
        let rx = script.start(self.slots.clone(), Arc::clone(&self.metrics));
        Ok(Generation {
            prompt_tokens: prompt,
            cached_tokens: cached,
            pieces: rx,
        })
    }
}

/// What one simulated response sends, and when.
struct Script {
    n_tokens: u32,
    per_chunk: u32,
    ttft: Duration,
    tpot: Duration,
    drop: bool,
    malformed: bool,
    finish_reason: &'static str,
}

/// Responses this short with no delays are written straight into their channel, without a
/// task, so the simulator is never what limits a zero-delay throughput benchmark.
const INSTANT_CHUNKS: u32 = 256;

impl Script {
    fn chunks(&self) -> u32 {
        self.n_tokens.div_ceil(self.per_chunk)
    }

    /// The pieces of chunk `j`, in order; `false` from `send` stops the response.
    fn chunk(&self, j: u32, send: &mut dyn FnMut(Piece) -> bool) -> bool {
        if self.drop && j == self.chunks() / 2 {
            send(Piece::Drop);
            return false;
        }
        let first = j * self.per_chunk;
        let tokens = self.per_chunk.min(self.n_tokens - first);
        let text: String = (first..first + tokens)
            .map(|k| WORDS[k as usize % WORDS.len()])
            .collect();
        if !send(Piece::Text { text, tokens }) {
            return false;
        }
        !(self.malformed && j == 0) || send(Piece::Malformed)
    }

    /// When chunk `j` is due, counted from the moment a slot was granted.
    fn due(&self, j: u32) -> Duration {
        let last_token = (j * self.per_chunk + self.per_chunk)
            .min(self.n_tokens)
            .saturating_sub(1);
        self.ttft + self.tpot * last_token
    }

    fn start(self, slots: Option<Arc<Semaphore>>, metrics: Arc<Metrics>) -> mpsc::Receiver<Piece> {
        let taken = Instant::now();
        let chunks = self.chunks();
        let instant = slots.is_none()
            && self.ttft.is_zero()
            && self.tpot.is_zero()
            && chunks < INSTANT_CHUNKS;
        if instant {
            let (tx, rx) = mpsc::channel(chunks as usize + 3);
            let mut served = Served::new(metrics, taken);
            served.granted();
            let mut send = |p: Piece| {
                served.sending(&p);
                tx.try_send(p).is_ok()
            };
            if (0..chunks).all(|j| self.chunk(j, &mut send)) {
                send(Piece::End {
                    finish_reason: self.finish_reason,
                });
            }
            return rx;
        }
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            let mut served = Served::new(metrics, taken);
            let _permit = match slots {
                Some(s) => {
                    served.metrics.waiting.fetch_add(1, Relaxed);
                    let permit = s.acquire_owned().await.ok();
                    served.metrics.waiting.fetch_sub(1, Relaxed);
                    permit
                }
                None => None,
            };
            served.granted();
            let start = Instant::now();
            for j in 0..chunks {
                let due = start + self.due(j);
                if due > Instant::now() {
                    tokio::time::sleep_until(due.into()).await;
                }
                let mut pieces = Vec::with_capacity(2);
                let go_on = self.chunk(j, &mut |p| {
                    pieces.push(p);
                    true
                });
                for p in pieces {
                    served.sending(&p);
                    if tx.send(p).await.is_err() {
                        return; // the client went away
                    }
                }
                if !go_on {
                    return;
                }
            }
            let end = Piece::End {
                finish_reason: self.finish_reason,
            };
            served.sending(&end);
            let _ = tx.send(end).await;
        });
        rx
    }
}

/// One request's part in the simulator's [`Metrics`]: running from the slot's grant to its
/// end; an end that is not `End` (a dropped connection, a client gone) counts as aborted.
struct Served {
    metrics: Arc<Metrics>,
    taken: Instant,
    running: bool,
    first: Option<Instant>,
    tokens: u64,
    ended: bool,
}

impl Served {
    fn new(metrics: Arc<Metrics>, taken: Instant) -> Served {
        Served {
            metrics,
            taken,
            running: false,
            first: None,
            tokens: 0,
            ended: false,
        }
    }

    /// The request got its slot.
    fn granted(&mut self) {
        self.metrics.queue.observe(self.taken.elapsed());
        self.metrics.running.fetch_add(1, Relaxed);
        self.running = true;
    }

    /// `p` is about to be handed to the connection.
    fn sending(&mut self, p: &Piece) {
        let m = &self.metrics;
        match p {
            Piece::Text { tokens, .. } => {
                if self.first.is_none() {
                    self.first = Some(Instant::now());
                    m.ttft.observe(self.taken.elapsed());
                }
                self.tokens += u64::from(*tokens);
                m.generation_tokens.fetch_add(u64::from(*tokens), Relaxed);
            }
            Piece::End { finish_reason } => {
                m.e2e.observe(self.taken.elapsed());
                if let (Some(first), true) = (self.first, self.tokens > 1) {
                    m.tpot.observe(first.elapsed() / (self.tokens - 1) as u32);
                }
                m.finished(finish_reason);
                self.ended = true;
            }
            Piece::Malformed | Piece::Drop => {}
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if self.running {
            self.metrics.running.fetch_sub(1, Relaxed);
        }
        if !self.ended {
            self.metrics.aborted.fetch_add(1, Relaxed);
        }
    }
}
