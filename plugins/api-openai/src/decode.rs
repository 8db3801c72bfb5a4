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

/// Decodes one response; one per response, as the interface asks. Its only state: whether the
/// response's model has been looked for (in the first event: every chunk repeats it).
#[derive(Default)]
pub struct OpenAiDecoder {
    model_read: bool,
}

/// The string value of the first `"model"` key of `event`, found without parsing the rest.
fn model_of(event: &[u8]) -> Option<String> {
    let key = memchr::memmem::find(event, b"\"model\"")?;
    let rest = &event[key + 7..];
    let colon = rest.iter().position(|b| !b.is_ascii_whitespace())?;
    if rest[colon] != b':' {
        return None;
    }
    let rest = &rest[colon + 1..];
    let open = rest.iter().position(|b| !b.is_ascii_whitespace())?;
    if rest[open] != b'"' {
        return None;
    }
    let value = &rest[open..];
    let mut escaped = false;
    let close = value.iter().skip(1).position(|&b| {
        let end = b == b'"' && !escaped;
        escaped = b == b'\\' && !escaped;
        end
    })? + 1;
    let name: String = serde_json::from_slice(&value[..=close]).ok()?;
    (!name.is_empty()).then_some(name)
}

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
        if !self.model_read {
            self.model_read = true;
            if let Some(name) = model_of(event) {
                out.push(ResponseEvent::Model(name.into()));
            }
        }
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
        let mut d = OpenAiDecoder::default();
        let mut out = Vec::new();
        let mut errors = 0;
        for line in lines.lines().filter(|l| !l.trim().is_empty()) {
            if d.decode(line.as_bytes(), &mut out).is_err() {
                errors += 1;
            }
        }
        // The model has a test of its own.
        out.retain(|e| !matches!(e, ResponseEvent::Model(_)));
        (out, errors)
    }

    #[test]
    fn the_first_event_names_the_model_the_server_answered_with() {
        let mut d = OpenAiDecoder::default();
        let mut out = Vec::new();
        let first = br#"{"id":"c1","object":"chat.completion.chunk","model" : "Qwen/Qwen3-8B \"fp8\"","choices":[{"index":0,"delta":{"content":"Hi"}}]}"#;
        d.decode(first, &mut out).expect("decodes");
        assert_eq!(out[0], ResponseEvent::Model("Qwen/Qwen3-8B \"fp8\"".into()));
        out.clear();
        d.decode(first, &mut out).expect("decodes");
        assert!(
            !out.iter().any(|e| matches!(e, ResponseEvent::Model(_))),
            "only the first event is searched: {out:?}"
        );
        for event in [
            &br#"{"choices":[{"delta":{"content":"x"}}]}"#[..],
            br#"{"model":17,"choices":[]}"#,
            br#"{"model":"","choices":[]}"#,
            br#"{"choices":[{"delta":{"content":"\"model\""}}]}"#,
        ] {
            let mut d = OpenAiDecoder::default();
            let mut out = Vec::new();
            let _ = d.decode(event, &mut out);
            assert!(
                !out.iter().any(|e| matches!(e, ResponseEvent::Model(_))),
                "{}: {out:?}",
                String::from_utf8_lossy(event)
            );
        }
        assert_eq!(model_of(br#"{"model":"a\\"}"#).as_deref(), Some("a\\"));
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
