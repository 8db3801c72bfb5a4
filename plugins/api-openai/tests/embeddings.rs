//! The embeddings and rerank decoder on answers shaped as the OpenAI API reference, vLLM's
//! rerank endpoint and Cohere's rerank API show them, and the bodies the adapters build.

use perf_api_openai::{EmbeddingAdapter, InputOnlyDecoder, RerankAdapter};
use perf_plugin_api::sdk::{ApiAdapterPlugin, ApiConfig, ResponseDecoderPlugin};
use perf_plugin_api::{ChatMessage, PromptItem, RequestContext, ResponseEvent};
use serde_json::{json, Value};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

/// (outputs, input tokens, completion tokens, done, errors).
fn decode(answer: &str) -> (usize, Option<u64>, Option<u64>, bool, Vec<String>) {
    let mut out = Vec::new();
    InputOnlyDecoder
        .decode(answer.as_bytes(), &mut out)
        .expect("decodes");
    let mut r = (0, None, None, false, Vec::new());
    for e in out.iter() {
        match e {
            ResponseEvent::Output { .. } => r.0 += 1,
            ResponseEvent::Usage(u) => {
                r.1 = u.prompt_tokens.into_option();
                r.2 = u.completion_tokens.into_option();
            }
            ResponseEvent::Done => r.3 = true,
            ResponseEvent::Error(m) => r.4.push(m.to_string()),
            ResponseEvent::EmptyChunk => {}
            _ => {}
        }
    }
    r
}

#[test]
fn answers_give_one_output_the_input_tokens_and_no_output_tokens() {
    assert_eq!(
        decode(&fixture("embeddings-openai.json")),
        (1, Some(8), Some(0), true, vec![])
    );
    assert_eq!(
        decode(&fixture("rerank-vllm.json")),
        (1, Some(56), Some(0), true, vec![])
    );
    // Cohere bills search units, not tokens: the count is left to the client.
    assert_eq!(
        decode(&fixture("rerank-cohere.json")),
        (1, None, Some(0), true, vec![])
    );
    let (outputs, _, _, _, errors) = decode(&fixture("embeddings-error.json"));
    assert_eq!(outputs, 0);
    assert_eq!(
        errors,
        ["This model's maximum context length is 8192 tokens, however you requested 9000 tokens."]
    );
    let mut out = Vec::new();
    assert!(InputOnlyDecoder
        .decode(br#"{"object": "list"}"#, &mut out)
        .is_err());
}

fn body(adapter: &impl ApiAdapterPlugin, item: PromptItem) -> Value {
    let ctx = RequestContext {
        index: 0,
        max_tokens: Some(99).into(),
        ext: Default::default(),
    };
    let req = adapter.build_request(&item, &ctx).expect("request");
    serde_json::from_slice(&req.body).expect("JSON")
}

#[test]
fn bodies_follow_evalscope() {
    let config = ApiConfig {
        model: "bge".into(),
        extra_args: json!({"encoding_format": "float"})
            .as_object()
            .cloned()
            .expect("object"),
        ..ApiConfig::default()
    };
    let embed = EmbeddingAdapter::new(&config).expect("adapter");
    assert_eq!(
        body(&embed, PromptItem::Text("hello".into())),
        json!({"model": "bge", "encoding_format": "float", "input": "hello"})
    );
    assert_eq!(
        body(&embed, PromptItem::Body(r#"{"input": ["a", "b"]}"#.into())),
        json!({"model": "bge", "encoding_format": "float", "input": ["a", "b"]})
    );
    let rerank = RerankAdapter::new(&config).expect("adapter");
    assert_eq!(
        body(&rerank, PromptItem::Text("q".into())),
        json!({"model": "bge", "encoding_format": "float", "query": "q", "documents": [""]})
    );
    let messages = vec![
        ChatMessage::text("user", "the query"),
        ChatMessage::text("user", "doc one"),
        ChatMessage::text("user", "doc two"),
    ];
    assert_eq!(
        body(&rerank, PromptItem::Messages(messages.into()))["documents"],
        json!(["doc one", "doc two"])
    );
}
