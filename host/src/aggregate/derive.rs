//! From a raw record (monotonic instants, events) to the record every output sees, with
//! evalscope's per-request definitions:
//!
//! - latency = last decoded event - sent (the usage-only chunk counts as an event);
//! - TTFT = first output event - sent (streamed), = latency (not streamed);
//! - TPOT = (latency - TTFT) / (output tokens - 1), only with more than one output token;
//! - ITL = gaps between output events.
//!
//! Token counts come from the server's usage, or from token counts the API attached to its
//! output events; else from perf (the prompt as the dataset or `--tokenizer-path` counted it,
//! images by patch count; the output text counted with `--tokenizer-path`), marked `client`;
//! else they are estimated (one token per streamed output event, or four characters per token)
//! and marked `estimated`.

use std::time::Instant;

use perf_plugin_api::{FailureKind, RString, RequestRecord, RequestTimes};

use crate::worker::RawRecord;
use perf_timing::EpochClock;

fn secs(later: Instant, earlier: Instant) -> f64 {
    later.saturating_duration_since(earlier).as_secs_f64()
}

/// Token counts of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tokens {
    /// Prompt tokens.
    pub prompt: u64,
    /// Output tokens.
    pub completion: u64,
    /// At least one of them is an estimate.
    pub estimated: bool,
    /// At least one of them was counted by perf (the dataset or `--tokenizer-path`), not sent
    /// by the server.
    pub client: bool,
}

impl Tokens {
    /// Where the counts came from: `server`, `client` (perf counted at least one, nothing
    /// estimated) or `estimated`.
    pub fn source(&self) -> &'static str {
        match (self.estimated, self.client) {
            (true, _) => "estimated",
            (false, true) => "client",
            (false, false) => "server",
        }
    }
}

/// The token counts of `raw`.
pub fn tokens(raw: &RawRecord) -> Tokens {
    let mut estimated = false;
    let mut client = false;
    let prompt = match (
        raw.usage.prompt_tokens.into_option(),
        raw.prompt_tokens_hint,
    ) {
        (Some(n), _) => n,
        (None, Some(n)) => {
            client = true;
            n
        }
        (None, None) => {
            estimated = true;
            (raw.prompt_chars as u64).div_ceil(4)
        }
    };
    let from_events = raw.output_tokens_from_events.filter(|n| *n > 0);
    let completion = match (
        raw.usage.completion_tokens.into_option(),
        from_events,
        raw.output_tokens_counted,
    ) {
        (Some(n), _, _) | (None, Some(n), _) => n,
        (None, None, Some(n)) => {
            client = true;
            n
        }
        (None, None, None) => {
            estimated = true;
            if raw.is_stream {
                u64::from(raw.output_events)
            } else {
                ((raw.text.chars().count() + raw.reasoning.chars().count()) as u64).div_ceil(4)
            }
        }
    };
    Tokens {
        prompt,
        completion,
        estimated,
        client,
    }
}

/// One measured request as every output sees it, derived once: the record of the plugin
/// interface (what sinks receive), the raw record it came from (what the database also
/// keeps), and where its token counts came from.
pub struct Derived {
    /// The record sinks receive.
    pub record: RequestRecord,
    /// What the worker saw.
    pub raw: RawRecord,
    /// Its token counts.
    pub tokens: Tokens,
}

/// `raw` in run `run_index`, timestamps converted with `clock`.
pub fn derive(raw: RawRecord, run_index: u32, clock: &EpochClock) -> Derived {
    let tokens = tokens(&raw);
    Derived {
        record: record(&raw, tokens, run_index, clock),
        raw,
        tokens,
    }
}

fn record(raw: &RawRecord, t: Tokens, run_index: u32, clock: &EpochClock) -> RequestRecord {
    let success = raw.success();
    let latency = raw
        .last_event
        .filter(|_| success)
        .map(|e| secs(e, raw.sent));
    let ttft = if !success {
        None
    } else if raw.is_stream {
        raw.first_output.map(|f| secs(f, raw.sent))
    } else {
        latency
    };
    let tpot = match (latency, ttft) {
        (Some(l), Some(f)) if raw.is_stream && t.completion > 1 => {
            Some((l - f) / (t.completion - 1) as f64)
        }
        _ => None,
    };
    RequestRecord {
        run_index,
        request_index: raw.index,
        success,
        is_stream: raw.is_stream,
        http_status: raw.status,
        failure: raw.failure,
        // A server's error text may echo what it was sent, credentials included.
        error: RString::from(crate::output::redact::redact(&raw.error).as_ref()),
        times: RequestTimes {
            intended_send: clock.unix_s(raw.intended),
            sent: clock.unix_s(raw.sent),
            first_byte: raw.first_byte.map(|t| clock.unix_s(t)).into(),
            first_output: raw.first_output.map(|t| clock.unix_s(t)).into(),
            completed: clock.unix_s(raw.completed),
        },
        latency_s: latency.into(),
        ttft_s: ttft.into(),
        tpot_s: tpot.into(),
        itl_s: raw.itl_s.clone().into(),
        prompt_tokens: (success || raw.usage.prompt_tokens.is_some())
            .then_some(t.prompt)
            .into(),
        completion_tokens: success.then_some(t.completion).into(),
        cached_tokens: raw.usage.cached_tokens,
        tokens_estimated: t.estimated,
        ext: extension_fields(raw),
    }
}

/// A stored row (`benchmark_data.db`) as the record it was written from, on `clock` (anchored
/// at or before every time of the run): what `perf merge` summarises a union of shards with.
/// The figures the table does not keep (retries, fresh connections, bodies) read as none.
pub fn from_stored(s: &crate::output::db::Stored, run_index: u32, clock: &EpochClock) -> Derived {
    use perf_plugin_api::{ROption, Usage};
    let at = |t: f64| clock.instant(t);
    let failure = match &s.error_kind {
        None if s.success => FailureKind::None,
        None => FailureKind::Plugin,
        Some(kind) => FailureKind::from_name(kind).unwrap_or(FailureKind::Plugin),
    };
    let sent = at(s.sent);
    let opened = s.connect.map(|c| crate::transport::Opened {
        connect: std::time::Duration::from_secs_f64(c.max(0.0)),
        tls: s
            .tls
            .map(|t| std::time::Duration::from_secs_f64(t.max(0.0))),
    });
    let raw = RawRecord {
        index: s.index,
        warmup: false,
        intended: at(s.intended),
        sent,
        first_byte: s.first_byte.map(at),
        first_output: s.first_token.map(at),
        last_event: s.latency.map(|l| at(s.sent + l)),
        completed: at(s.completed),
        itl_s: s.itl.clone(),
        output_events: s.output_chunks,
        decode_chunks: s.decode_chunks,
        malformed_chunks: s.malformed_chunks,
        output_tokens_from_events: None,
        output_tokens_counted: None,
        usage: Usage {
            prompt_tokens: s.prompt_tokens.into(),
            completion_tokens: s.completion_tokens.into(),
            cached_tokens: s.cached_tokens.into(),
            ext: Default::default(),
        },
        text: String::new(),
        reasoning: String::new(),
        status: s.http_status,
        failure,
        error: s.error.clone(),
        is_stream: s.is_stream,
        retries: 0,
        first_sent: sent,
        fresh_connection: false,
        opened,
        request_body: bytes::Bytes::new(),
        prompt_tokens_hint: None,
        prompt_chars: 0,
        messages: Default::default(),
        peak_memory_bytes: 0,
        response_model: None,
        turn: s
            .conversation
            .zip(s.turn)
            .map(|(conversation, turn)| crate::worker::TurnTag {
                conversation,
                turn,
                last: false,
            }),
        request_id: s.request_id.clone(),
    };
    let mut d = derive(raw, run_index, clock);
    // The stored figures are the measured ones: kept as they are, not derived again.
    d.tokens.estimated = s.token_counts == "estimated";
    d.tokens.client = s.token_counts == "client";
    d.record.tokens_estimated = d.tokens.estimated;
    if s.success {
        d.record.latency_s = s.latency.into();
        d.record.ttft_s = s.ttft.into();
        d.record.tpot_s = s
            .tpot
            .filter(|t| *t > 0.0)
            .map_or(ROption::RNone, ROption::RSome);
    }
    d
}

/// The connect and TLS handshake times of a request that opened its connection; the
/// conversation and turn of a `--multi-turn` request.
fn extension_fields(raw: &RawRecord) -> perf_plugin_api::Extensions {
    use perf_plugin_api::{FieldId, FieldValue};
    let mut ext = perf_plugin_api::Extensions::new();
    if let Some(turn) = raw.turn {
        ext.set(FieldId::CONVERSATION, FieldValue::U64(turn.conversation));
        ext.set(FieldId::TURN, FieldValue::U64(u64::from(turn.turn)));
    }
    if let Some(model) = &raw.response_model {
        ext.set(
            FieldId::RESPONSE_MODEL,
            FieldValue::Str(model.as_str().into()),
        );
    }
    if let Some(opened) = raw.opened {
        ext.set(
            FieldId::CONNECT_S,
            FieldValue::F64(opened.connect.as_secs_f64()),
        );
        if let Some(tls) = opened.tls {
            ext.set(FieldId::TLS_HANDSHAKE_S, FieldValue::F64(tls.as_secs_f64()));
        }
    }
    ext
}

/// Seconds from intended to (first) actual send.
pub fn dispatch_lag_s(raw: &RawRecord) -> f64 {
    secs(raw.first_sent, raw.intended)
}

/// Seconds lost to sending again after a reused connection closed unanswered.
pub fn retry_cost_s(raw: &RawRecord) -> Option<f64> {
    (raw.retries > 0).then(|| secs(raw.sent, raw.first_sent))
}

/// Seconds from sending to the response headers.
pub fn ttfb_s(raw: &RawRecord) -> Option<f64> {
    raw.first_byte.map(|f| secs(f, raw.sent))
}

/// Whether the request was cut short by an interruption rather than by the server.
pub fn cancelled(raw: &RawRecord) -> bool {
    raw.failure == FailureKind::Cancelled
}
