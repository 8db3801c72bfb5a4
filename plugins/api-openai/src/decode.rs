//! Decoding OpenAI-compatible responses: streamed `chat.completion.chunk` /
//! `text_completion` events and whole non-streamed bodies.
//!
//! What counts as output (and so sets time to first token): non-empty `content`,
//! `reasoning_content`, `reasoning`, tool-call names or arguments, `reasoning_details` text or
//! summary, and completions' `text`. A chunk with choices but none of those is an empty chunk.
//! An object with `error`, or `object: "error"`, is an in-band error that fails the request.

use std::borrow::Cow;

use crate::frame::{Frame, Message};

/// Reads `event`: the fast scanner first, serde when the scanner declines.
fn read(event: &[u8]) -> Result<Frame<'_>, serde_json::Error> {
    match crate::scan::frame(event) {
        Some(frame) => Ok(frame),
        None => serde_json::from_slice(event),
    }
}
use perf_plugin_api::sdk::ResponseDecoderPlugin;
use perf_plugin_api::{OutputKind, PluginError, ROption, ResponseEvent, Usage};

/// Decodes one response. Stateless between events; one per response all the same, as the
/// interface asks.
#[derive(Default)]
pub struct OpenAiDecoder;

fn push_output(
    out: &mut Vec<ResponseEvent>,
    text: Option<&Cow<'_, str>>,
    kind: OutputKind,
) -> bool {
    match text {
        Some(t) if !t.is_empty() => {
            out.push(ResponseEvent::Output {
                text: t.as_ref().into(),
                tokens: ROption::RNone,
                kind,
            });
            true
        }
        _ => false,
    }
}

fn push_message(out: &mut Vec<ResponseEvent>, m: &Message<'_>) -> bool {
    let mut any = push_output(out, m.reasoning_content.as_ref(), OutputKind::Reasoning);
    any |= push_output(out, m.reasoning.as_ref(), OutputKind::Reasoning);
    for d in m.reasoning_details.iter().flatten() {
        any |= push_output(out, d.text.as_ref(), OutputKind::Reasoning);
        any |= push_output(out, d.summary.as_ref(), OutputKind::Reasoning);
    }
    any |= push_output(out, m.content.as_ref(), OutputKind::Content);
    for call in m.tool_calls.iter().flatten() {
        if let Some(f) = &call.function {
            any |= push_output(out, f.name.as_ref(), OutputKind::ToolCall);
            any |= push_output(out, f.arguments.as_ref(), OutputKind::ToolCall);
        }
    }
    any
}

impl ResponseDecoderPlugin for OpenAiDecoder {
    fn decode(&mut self, event: &[u8], out: &mut Vec<ResponseEvent>) -> Result<(), PluginError> {
        let frame = read(event)
            .map_err(|e| PluginError::invalid(format!("not an OpenAI JSON object: {e}")))?;
        if frame.error.is_some() || frame.object.as_deref() == Some("error") {
            let text = String::from_utf8_lossy(event);
            let message = match &frame.message {
                Some(m) if frame.error.is_none() => m.to_string(),
                _ => text.chars().take(500).collect(),
            };
            out.push(ResponseEvent::Error(message.into()));
            return Ok(());
        }
        if let Some(choices) = &frame.choices {
            let mut any = false;
            for choice in choices {
                any |= push_output(out, choice.text.as_ref(), OutputKind::Content);
                if let Some(delta) = &choice.delta {
                    any |= push_message(out, delta);
                }
                if let Some(message) = &choice.message {
                    any |= push_message(out, message);
                }
            }
            if !any && !choices.is_empty() {
                out.push(ResponseEvent::EmptyChunk);
            }
        }
        if let Some(u) = frame.usage {
            out.push(ResponseEvent::Usage(Usage {
                prompt_tokens: u.prompt_tokens.into(),
                completion_tokens: u.completion_tokens.into(),
                cached_tokens: u.prompt_tokens_details.and_then(|d| d.cached_tokens).into(),
                ..Usage::default()
            }));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(lines: &str) -> (Vec<ResponseEvent>, usize) {
        let mut d = OpenAiDecoder;
        let mut out = Vec::new();
        let mut errors = 0;
        for line in lines.lines().filter(|l| !l.trim().is_empty()) {
            if d.decode(line.as_bytes(), &mut out).is_err() {
                errors += 1;
            }
        }
        (out, errors)
    }

    fn text_of(events: &[ResponseEvent], want: OutputKind) -> String {
        events
            .iter()
            .filter_map(|e| match e {
                ResponseEvent::Output { text, kind, .. } if *kind == want => Some(text.to_string()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn llama_cpp_chat_stream_with_role_chunk_and_usage() {
        let (events, errors) = decode_all(include_str!("../tests/fixtures/llama_cpp_chat.jsonl"));
        assert_eq!(errors, 0);
        assert_eq!(
            events[0],
            ResponseEvent::EmptyChunk,
            "the role-only chunk carries no output"
        );
        assert_eq!(text_of(&events, OutputKind::Content), "Hello there!");
        let usage = events.iter().find_map(|e| match e {
            ResponseEvent::Usage(u) => Some(u.clone()),
            _ => None,
        });
        let usage = usage.expect("usage event");
        assert_eq!(usage.prompt_tokens, ROption::RSome(12));
        assert_eq!(usage.completion_tokens, ROption::RSome(3));
        assert_eq!(usage.cached_tokens, ROption::RSome(8));
    }

    #[test]
    fn reasoning_and_tool_calls_count_as_output() {
        let (events, _) = decode_all(include_str!("../tests/fixtures/reasoning_tools.jsonl"));
        assert_eq!(text_of(&events, OutputKind::Reasoning), "think more");
        assert_eq!(
            text_of(&events, OutputKind::ToolCall),
            "get_weather{\"city\":\"Paris\"}"
        );
        assert_eq!(text_of(&events, OutputKind::Content), "Sunny");
    }

    #[test]
    fn completions_text_and_non_streamed_bodies() {
        let (events, _) = decode_all(
            r#"{"object":"text_completion","choices":[{"index":0,"text":"abc"}]}
{"id":"x","object":"chat.completion","choices":[{"message":{"role":"assistant","content":"whole answer"}}],"usage":{"prompt_tokens":5,"completion_tokens":2}}"#,
        );
        assert_eq!(text_of(&events, OutputKind::Content), "abcwhole answer");
    }

    #[test]
    fn in_band_errors_fail_and_garbage_is_an_error_result() {
        let (events, errors) = decode_all(
            r#"{"error":{"message":"context length exceeded","code":400}}
{"object":"error","message":"overloaded"}
{"choices":[{"delta":{"content":"unterminated"#,
        );
        assert_eq!(errors, 1, "the truncated frame is reported, not fatal");
        assert!(matches!(&events[0], ResponseEvent::Error(m) if m.contains("context length")));
        assert!(matches!(&events[1], ResponseEvent::Error(m) if m.as_str() == "overloaded"));
    }
}
