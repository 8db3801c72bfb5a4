//! HTTP requests and the events decoded from responses.

// The non-exhaustive enums' `StableAbi` derive (abi_stable 0.11) puts impls inside a `const`
// block, which rustc now flags; the generated code is fine.
#![allow(non_local_definitions)]

use abi_stable::{
    std_types::{ROption, RString, RVec},
    StableAbi,
};

use super::Extensions;

open_enum! {
    /// HTTP method of a request. A host fails a request whose method it does not know.
    pub struct HttpMethod;
    /// GET
    Get = 0 => "GET",
    /// POST
    Post = 1 => "POST",
    /// PUT
    Put = 2 => "PUT",
}

open_enum! {
    /// How the host cuts a response body into events before it calls
    /// `ResponseDecoder::decode`. A host fails a request whose framing it does not know.
    pub struct Framing;
    /// Not streamed: the whole body is one event.
    None = 0 => "none",
    /// Server-sent events: each event's joined `data:` lines are one event; comments and
    /// `event:`/`id:`/`retry:` fields are dropped; `[DONE]` ends the stream.
    Sse = 1 => "sse",
    /// Newline-delimited JSON: each non-empty line is one event.
    NdJson = 2 => "ndjson",
}

/// One HTTP header.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header name.
    pub name: RString,
    /// Header value.
    pub value: RString,
}

/// What an API adapter wants sent. The host adds the headers of `--headers` and `--api-key`
/// (those win over the adapter's), an `x-request-id` and a `user-agent`, sends it and times it.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct HttpRequest {
    /// Method.
    pub method: HttpMethod,
    /// An absolute URL, or an empty string for the run's `--url`.
    pub url: RString,
    /// Headers the API needs (e.g. `content-type`).
    pub headers: RVec<Header>,
    /// The body bytes.
    pub body: RVec<u8>,
    /// How a successful response body is cut into events.
    pub framing: Framing,
    /// Fields added by later interface versions.
    pub ext: Extensions,
}

impl HttpRequest {
    /// A POST of a JSON `body` to the run's `--url` with `content-type: application/json`,
    /// its answer cut into events by `framing` (`Framing::Sse` for an OpenAI-style stream,
    /// `Framing::NdJson` for a line-per-event stream, `Framing::None` when not streamed).
    /// Push more headers onto `headers` where the API needs them.
    pub fn json_post(body: Vec<u8>, framing: Framing) -> Self {
        HttpRequest {
            method: HttpMethod::Post,
            url: "".into(),
            headers: vec![Header {
                name: "content-type".into(),
                value: "application/json".into(),
            }]
            .into(),
            body: body.into(),
            framing,
            ext: Extensions::new(),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push(Header {
            name: name.into(),
            value: value.into(),
        });
        self
    }
}

/// Per-request values the host chooses (it owns the random number generator, so runs are
/// reproducible from `--seed`).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct RequestContext {
    /// Index of the request within its run, in dispatch order (warmup requests included).
    pub index: u64,
    /// `max_tokens` for this request: the value of `--max-tokens` (2048 when it is not
    /// given), or the value drawn for this request when it gives a range.
    pub max_tokens: ROption<u32>,
    /// Fields added by later interface versions.
    pub ext: Extensions,
}

impl RequestContext {
    /// The context of request `index`.
    pub fn new(index: u64, max_tokens: Option<u32>) -> Self {
        RequestContext {
            index,
            max_tokens: max_tokens.into(),
            ext: Extensions::new(),
        }
    }
}

open_enum! {
    /// Which output stream a piece of output belongs to. A host counts output of a kind it
    /// does not know as output, apart from the content text.
    pub struct OutputKind;
    /// Ordinary answer text.
    Content = 0 => "content",
    /// Reasoning ("thinking") text.
    Reasoning = 1 => "reasoning",
    /// Tool-call names or arguments.
    ToolCall = 2 => "tool_call",
}

/// Token counts reported by the server.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Default)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: ROption<u64>,
    /// Generated tokens.
    pub completion_tokens: ROption<u64>,
    /// Prompt tokens served from the server's prefix cache.
    pub cached_tokens: ROption<u64>,
    /// Fields added by later interface versions.
    pub ext: Extensions,
}

/// What one decoded event carried. A decoder may push several per event, or none.
///
/// Crosses the boundary as [`ResponseEvent_NE`] (`ResponseEvent_NE::new(event)`; the SDK's
/// `Events::push` wraps for you). A host ignores a variant it does not know.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
#[sabi(kind(WithNonExhaustive(size = [usize; 16], traits(Debug, Clone, PartialEq))))]
#[non_exhaustive]
pub enum ResponseEvent {
    /// Generated output. The first one sets the time to first token; the gaps between them
    /// are the inter-token latencies. A response without any fails as `empty_response`.
    Output {
        /// The text (may be empty when only a token count is known).
        text: RString,
        /// How many tokens this piece holds, when the API says. Optional: the output token
        /// count comes from `Usage`, else from these counts when every piece has one, else
        /// from `--tokenizer-path`, else from an estimate.
        tokens: ROption<u32>,
        /// Content, reasoning or tool call.
        kind: OutputKind,
    },
    /// A generation step without new output (e.g. a chunk with an empty delta). Counts as a
    /// decode chunk once output has started, as evalscope counts it.
    EmptyChunk,
    /// Token usage. Later usage events override earlier values field by field.
    Usage(Usage),
    /// An error the server reported inside a successful response; fails the request as
    /// `server_error` with this message.
    Error(RString),
    /// The server said the response is complete (e.g. `[DONE]`, a final status event).
    /// Optional: the end of the body ends the response too.
    Done,
    /// The model the server says answered (OpenAI's `model` field), which may differ from the
    /// one asked for (an alias, a router, a LoRA adapter). The first one counts. Since 0.2.4.
    Model(RString),
    /// Test only (`next-interface-check`): an event that no released interface has.
    #[cfg(feature = "next-interface-check")]
    NextInterfaceCheck(u64),
}
