//! The Responses API decoder on transcripts shaped as OpenAI's API reference shows them: a
//! streamed answer, reasoning and refusal deltas ending incomplete, a failed response, an
//! `error` event, a whole response and an error body; and the requests the adapter builds.

use perf_api_openai::{ResponsesAdapter, ResponsesDecoder};
use perf_plugin_api::sdk::{ApiAdapterPlugin, ApiConfig, ResponseDecoderPlugin};
use perf_plugin_api::{OutputKind, PromptItem, RequestContext, ResponseEvent};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

/// The `data:` payloads of a server-sent-event transcript.
fn events(sse: &str) -> Vec<String> {
    sse.split("\n\n")
        .filter_map(|block| {
            let data: Vec<&str> = block
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .collect();
            (!data.is_empty()).then(|| data.join("\n"))
        })
        .collect()
}

#[derive(Debug, Default, PartialEq)]
struct Decoded {
    outputs: Vec<(OutputKind, String)>,
    usage: Option<(u64, u64, Option<u64>)>,
    done: bool,
    errors: Vec<String>,
}

fn decode(payloads: &[String]) -> Decoded {
    let mut decoder = ResponsesDecoder;
    let mut out = Vec::new();
    for p in payloads {
        decoder.decode(p.as_bytes(), &mut out).expect("decodes");
    }
    let mut d = Decoded::default();
    for e in out.iter() {
        match e {
            ResponseEvent::Output { text, kind, .. } => d.outputs.push((*kind, text.to_string())),
            ResponseEvent::Usage(u) => {
                d.usage = Some((
                    u.prompt_tokens.into_option().expect("input"),
                    u.completion_tokens.into_option().expect("output"),
                    u.cached_tokens.into_option(),
                ))
            }
            ResponseEvent::Done => d.done = true,
            ResponseEvent::Error(m) => d.errors.push(m.to_string()),
            ResponseEvent::EmptyChunk => {}
            _ => {}
        }
    }
    d
}

#[test]
fn a_streamed_answer_gives_its_deltas_and_the_completed_usage() {
    let d = decode(&events(&fixture("responses-stream.sse")));
    let texts: Vec<&str> = d.outputs.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(texts, ["Hi", " there", "!", " How can I help?"]);
    assert!(d.outputs.iter().all(|(k, _)| *k == OutputKind::Content));
    assert_eq!(d.usage, Some((37, 11, Some(0))));
    assert!(d.done && d.errors.is_empty());
}

#[test]
fn reasoning_and_refusals_are_output_and_incomplete_still_ends_with_usage() {
    let d = decode(&events(&fixture("responses-reasoning-incomplete.sse")));
    assert_eq!(
        d.outputs,
        [
            (OutputKind::Reasoning, "Thinking about it.".to_string()),
            (OutputKind::Content, "I can't help with that.".to_string()),
        ]
    );
    assert_eq!(d.usage, Some((20, 64, Some(16))));
    assert!(d.done);
}

#[test]
fn failures_and_error_events_fail_the_request() {
    let d = decode(&events(&fixture("responses-failed.sse")));
    assert_eq!(
        d.errors,
        ["server_error: The model failed to generate a response."]
    );
    let d = decode(&events(&fixture("responses-error-event.sse")));
    assert_eq!(
        d.errors,
        ["rate_limit_exceeded: Rate limit reached for requests"]
    );
    let d = decode(&[fixture("responses-error-400.json")]);
    assert_eq!(d.errors, ["invalid_value: Invalid 'input': empty."]);
}

#[test]
fn a_whole_response_gives_its_text_and_usage() {
    let d = decode(&[fixture("responses-whole.json")]);
    assert_eq!(
        d.outputs,
        [(OutputKind::Content, "Hi there! How can I help?".to_string())]
    );
    assert_eq!(d.usage, Some((37, 11, Some(0))));
    assert!(d.done);
}

#[test]
fn requests_carry_input_and_max_output_tokens() {
    let config = ApiConfig {
        model: "gpt-4.1".into(),
        stream: true,
        max_tokens: Some(32),
        ..ApiConfig::default()
    };
    let adapter = ResponsesAdapter::new(&config).expect("adapter");
    let ctx = RequestContext {
        index: 0,
        max_tokens: Some(16).into(),
        ext: Default::default(),
    };
    let req = adapter
        .build_request(&PromptItem::Text("hello".into()), &ctx)
        .expect("request");
    let body: serde_json::Value = serde_json::from_slice(&req.body).expect("JSON");
    assert_eq!(
        body,
        serde_json::json!({"model": "gpt-4.1", "stream": true, "max_output_tokens": 16, "input": "hello"})
    );
}
