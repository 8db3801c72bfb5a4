//! Records and summaries, for result sinks.

use abi_stable::{
    std_types::{ROption, RString, RVec},
    StableAbi,
};

use super::{Extensions, FieldId};

open_enum! {
    /// Why a request failed. A sink that meets a kind it does not know reads its name as
    /// `None`; `as_str` gives `other`.
    pub struct FailureKind;
    /// The request succeeded.
    None = 0 => "none",
    /// The connection could not be made.
    Connect = 1 => "connect",
    /// A connect, read or total timeout expired.
    Timeout = 2 => "timeout",
    /// The server answered with a status other than 2xx.
    HttpStatus = 3 => "http_status",
    /// The connection broke while the response was being read.
    Stream = 4 => "stream",
    /// The response could not be decoded at all (a whole body the adapter refused, or a
    /// stream none of whose events decoded).
    Decode = 5 => "decode",
    /// The server reported an error inside the response.
    ServerError = 6 => "server_error",
    /// The response finished without any output.
    EmptyResponse = 7 => "empty_response",
    /// A plugin failed while building the request or decoding the response (an error, or a
    /// panic the SDK caught).
    Plugin = 8 => "plugin",
    /// The run was interrupted before the request finished.
    Cancelled = 9 => "cancelled",
}

impl FailureKind {
    /// A stable, lower-case name used in files and metrics (`other` for a kind a later
    /// interface version added).
    pub fn as_str(self) -> &'static str {
        self.name().unwrap_or("other")
    }
}

/// Wall-clock timestamps of one request, in seconds since the Unix epoch. They are taken by the
/// host on a monotonic clock and converted with one anchor per run, so differences between
/// them are exact.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq)]
pub struct RequestTimes {
    /// When the schedule wanted the request sent.
    pub intended_send: f64,
    /// When the request was handed to the HTTP client.
    pub sent: f64,
    /// When the first response byte arrived.
    pub first_byte: ROption<f64>,
    /// When the first output event arrived.
    pub first_output: ROption<f64>,
    /// When the request finished (last event, error or cancellation).
    pub completed: f64,
}

/// One measured request (warmup requests are never recorded).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct RequestRecord {
    /// Index of the run in the sweep (0 for the first `--parallel`/`--number` pair).
    pub run_index: u32,
    /// Index of the request within its run, in dispatch order.
    pub request_index: u64,
    /// Whether the request succeeded.
    pub success: bool,
    /// Whether the response was streamed.
    pub is_stream: bool,
    /// HTTP status, 0 when no response arrived.
    pub http_status: u16,
    /// Why it failed (`None` on success).
    pub failure: FailureKind,
    /// The error message (empty on success). Never contains credentials.
    pub error: RString,
    /// Timestamps.
    pub times: RequestTimes,
    /// Latency in seconds (sent to last event), on success.
    pub latency_s: ROption<f64>,
    /// Time to first token in seconds, on success.
    pub ttft_s: ROption<f64>,
    /// Time per output token in seconds, on success with more than one output token.
    pub tpot_s: ROption<f64>,
    /// Gaps between output events in seconds.
    pub itl_s: RVec<f64>,
    /// Prompt tokens.
    pub prompt_tokens: ROption<u64>,
    /// Generated tokens.
    pub completion_tokens: ROption<u64>,
    /// Prompt tokens served from the server's cache.
    pub cached_tokens: ROption<u64>,
    /// True when token counts were estimated by the client rather than reported by the server.
    pub tokens_estimated: bool,
    /// Fields added by later interface versions.
    pub ext: Extensions,
}

impl RequestRecord {
    /// Seconds the TCP connect took, when this request opened its connection
    /// ([`FieldId::CONNECT_S`]).
    pub fn connect_s(&self) -> Option<f64> {
        self.ext.f64(FieldId::CONNECT_S)
    }

    /// Seconds the TLS handshake took, when this request opened an https connection
    /// ([`FieldId::TLS_HANDSHAKE_S`]).
    pub fn tls_handshake_s(&self) -> Option<f64> {
        self.ext.f64(FieldId::TLS_HANDSHAKE_S)
    }

    /// The conversation this request was a turn of, in a `--multi-turn` run
    /// ([`FieldId::CONVERSATION`]).
    pub fn conversation(&self) -> Option<u64> {
        self.ext.u64(FieldId::CONVERSATION)
    }

    /// Its turn within that conversation, from 1 ([`FieldId::TURN`]).
    pub fn turn(&self) -> Option<u64> {
        self.ext.u64(FieldId::TURN)
    }

    /// The model the server's response named, when it named one
    /// ([`FieldId::RESPONSE_MODEL`]).
    pub fn response_model(&self) -> Option<&str> {
        self.ext.str(FieldId::RESPONSE_MODEL)
    }
}

#[cfg(feature = "next-interface-check")]
impl RequestRecord {
    /// Test only: the extension field of the pretend next interface version.
    pub fn next_interface_check(&self) -> Option<u64> {
        self.ext.u64(FieldId::NEXT_INTERFACE_CHECK)
    }
}

/// A named number, e.g. `("Avg TTFT (ms)", 12.5)`.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct NamedValue {
    /// The key, as in `benchmark_summary.json`.
    pub name: RString,
    /// The value.
    pub value: f64,
}

/// One row of `benchmark_percentile.json`.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct PercentileRow {
    /// `min`, `1%`, ..., `99%`, `max`.
    pub label: RString,
    /// The metrics at this percentile.
    pub values: RVec<NamedValue>,
}

/// Sent once per invocation, before the first run.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct SessionInfo {
    /// The run name (`--name`, or `<model>_<timestamp>`).
    pub name: RString,
    /// All arguments as a JSON object, secrets replaced by `**********`.
    pub args_json: RString,
    /// The output directory of this invocation.
    pub output_dir: RString,
    /// Start time, seconds since the Unix epoch.
    pub started_unix_s: f64,
    /// Fields added by later interface versions.
    pub ext: Extensions,
}

/// Sent at the start of each run of a sweep.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct RunInfo {
    /// Index of the run in the sweep.
    pub run_index: u32,
    /// The run's directory name, e.g. `parallel_8_number_100`.
    pub label: RString,
    /// Maximum in-flight requests (-1: unbounded, open loop).
    pub parallel: i64,
    /// Measured requests.
    pub number: u64,
    /// Request rate in req/s (-1: unpaced).
    pub rate: f64,
    /// Fields added by later interface versions.
    pub ext: Extensions,
}

/// The running summary, sent periodically during a run.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct RunSnapshot {
    /// Index of the run in the sweep.
    pub run_index: u32,
    /// Seconds since the run started.
    pub elapsed_s: f64,
    /// Measured requests finished so far.
    pub completed: u64,
    /// The numeric keys of `benchmark_summary.json`, over the requests finished so far.
    pub metrics: RVec<NamedValue>,
    /// Fields added by later interface versions.
    pub ext: Extensions,
}

/// The final result of one run.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct RunSummary {
    /// Index of the run in the sweep.
    pub run_index: u32,
    /// The numeric contents of `benchmark_summary.json`, in order.
    pub summary: RVec<NamedValue>,
    /// The rows of `benchmark_percentile.json`.
    pub percentiles: RVec<PercentileRow>,
    /// Fields added by later interface versions.
    pub ext: Extensions,
}

impl RunSummary {
    /// The summary value called `name`.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.summary
            .iter()
            .find(|v| v.name.as_str() == name)
            .map(|v| v.value)
    }
}
