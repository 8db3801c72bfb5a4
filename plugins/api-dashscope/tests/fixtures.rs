//! The decoder on recorded DashScope transcripts (shaped as DashScope's documentation and the
//! official `dashscope` client show them): incremental and cumulative streams, multimodal
//! content lists, a whole response, and errors in and out of a stream.

use perf_api_dashscope::{DashScopeAdapter, DashScopeDecoder};
use perf_plugin_api::sdk::{ApiAdapterPlugin, ApiConfig, ResponseDecoderPlugin};
use perf_plugin_api::{OutputKind, ResponseEvent};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

/// The `data:` payloads of a server-sent-event transcript (comments, `id:` and `event:` lines
/// dropped, as the host's framer does).
fn events(sse: &str) -> Vec<String> {
    sse.split("\n\n")
        .filter_map(|block| {
            let data: Vec<&str> = block
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .collect();
            (!data.is_empty()).then(|| data.join("\n"))
        })
        .collect()
}

fn decoder(stream: bool, extra: serde_json::Value) -> DashScopeDecoder {
    let config = ApiConfig {
        model: "qwen-plus".into(),
        stream,
        url: "http://h/api/v1/services/aigc/text-generation/generation".into(),
        extra_args: extra.as_object().cloned().unwrap_or_default(),
        ..ApiConfig::default()
    };
    DashScopeAdapter::new(&config)
        .expect("adapter")
        .new_decoder()
}

/// Text outputs, last usage (prompt, completion), whether done, errors.
type Decoded = (Vec<String>, Option<(u64, u64)>, bool, Vec<String>);

fn decode(mut d: DashScopeDecoder, payloads: &[String]) -> Decoded {
    let mut out = Vec::new();
    for p in payloads {
        d.decode(p.as_bytes(), &mut out).expect("decodes");
    }
    let mut texts = Vec::new();
    let mut usage = None;
    let mut done = false;
    let mut errors = Vec::new();
    for e in out.iter() {
        match e {
            ResponseEvent::Output { text, kind, .. } => {
                assert_eq!(*kind, OutputKind::Content);
                texts.push(text.to_string());
            }
            ResponseEvent::Usage(u) => {
                usage = Some((
                    u.prompt_tokens.into_option().expect("input"),
                    u.completion_tokens.into_option().expect("output"),
                ))
            }
            ResponseEvent::Done => done = true,
            ResponseEvent::Error(m) => errors.push(m.to_string()),
            _ => {}
        }
    }
    (texts, usage, done, errors)
}

#[test]
fn an_incremental_stream_gives_each_piece_and_the_final_usage() {
    let (texts, usage, done, errors) = decode(
        decoder(true, serde_json::json!({})),
        &events(&fixture("text-stream-incremental.sse")),
    );
    assert_eq!(texts, ["你好", "！有什么", "可以帮您？"]);
    assert_eq!(usage, Some((11, 6)));
    assert!(done && errors.is_empty());
}

#[test]
fn a_cumulative_stream_gives_only_what_is_new() {
    let (texts, usage, done, _) = decode(
        decoder(true, serde_json::json!({"incremental_output": false})),
        &events(&fixture("text-stream-cumulative.sse")),
    );
    assert_eq!(texts, ["Hello", " there", "!"]);
    assert_eq!(usage, Some((8, 3)));
    assert!(done);
}

#[test]
fn multimodal_content_lists_and_whole_responses_decode() {
    let (texts, usage, done, _) = decode(
        decoder(true, serde_json::json!({})),
        &events(&fixture("multimodal-stream.sse")),
    );
    assert_eq!(texts, ["图中是", "一只狗。"]);
    assert_eq!(usage, Some((1266, 7)));
    assert!(done);
    let (texts, usage, done, _) = decode(
        decoder(false, serde_json::json!({})),
        &[fixture("text-whole.json")],
    );
    assert_eq!(texts, ["我是通义千问，由阿里云开发的大语言模型。"]);
    assert_eq!(usage, Some((19, 16)));
    assert!(done);
}

#[test]
fn errors_in_a_stream_or_a_body_fail_the_request_with_code_and_message() {
    let (texts, _, _, errors) = decode(
        decoder(true, serde_json::json!({})),
        &events(&fixture("stream-error.sse")),
    );
    assert!(texts.is_empty());
    assert_eq!(
        errors,
        ["InvalidParameter: Range of max_tokens should be [1, 8192]"]
    );
    let (_, _, _, errors) = decode(
        decoder(false, serde_json::json!({})),
        &[fixture("error-401.json")],
    );
    assert_eq!(errors, ["InvalidApiKey: Invalid API-key provided."]);
}

#[test]
fn requests_carry_input_parameters_and_the_sse_headers() {
    use perf_plugin_api::{ChatMessage, ContentPart, PromptItem, RequestContext};
    let config = |url: &str| ApiConfig {
        model: "qwen-vl-plus".into(),
        stream: true,
        url: url.into(),
        max_tokens: Some(64),
        temperature: Some(0.5),
        ..ApiConfig::default()
    };
    let text = DashScopeAdapter::new(&config(
        "http://h/api/v1/services/aigc/text-generation/generation",
    ))
    .expect("adapter");
    let ctx = RequestContext {
        index: 0,
        max_tokens: None.into(),
        ext: Default::default(),
    };
    let req = text
        .build_request(&PromptItem::Text("hi".into()), &ctx)
        .expect("request");
    let body: serde_json::Value = serde_json::from_slice(&req.body).expect("JSON");
    assert_eq!(
        body,
        serde_json::json!({
            "model": "qwen-vl-plus",
            "input": {"messages": [{"role": "user", "content": "hi"}]},
            "parameters": {"result_format": "message", "incremental_output": true, "temperature": 0.5, "max_tokens": 64},
        })
    );
    let headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|h| (h.name.to_string(), h.value.to_string()))
        .collect();
    assert!(headers.contains(&("x-dashscope-sse".into(), "enable".into())));
    assert!(headers.contains(&("accept".into(), "text/event-stream".into())));

    let message = ChatMessage::new(
        "user",
        [
            ContentPart::Text("what is it?".into()),
            ContentPart::ImageUrl("data:image/png;base64,iVBOR".into()),
        ],
    );
    let prompt = PromptItem::Messages(vec![message].into());
    let err = text
        .build_request(&prompt, &ctx)
        .expect_err("images need the multimodal URL");
    assert!(
        err.message.contains("multimodal-generation"),
        "{}",
        err.message
    );
    let mm = DashScopeAdapter::new(&config(
        "http://h/api/v1/services/aigc/multimodal-generation/generation",
    ))
    .expect("adapter");
    let req = mm.build_request(&prompt, &ctx).expect("request");
    let body: serde_json::Value = serde_json::from_slice(&req.body).expect("JSON");
    assert_eq!(
        body["input"]["messages"][0]["content"],
        serde_json::json!([{"text": "what is it?"}, {"image": "data:image/png;base64,iVBOR"}])
    );
}
