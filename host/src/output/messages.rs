//! The `response_messages` column of `benchmark_data.db`, in either of two forms
//! (`--response-messages`):
//!
//! - `evalscope` (the default): what evalscope stores, base64 of a pickled Python list with one
//!   element per response message: each streamed chunk that carried generation (the
//!   usage-only chunk is not one), or the whole body when not streamed, as the parsed JSON
//!   (dicts, lists, str, int, float, bool, None), or as a str when it is not JSON. Scripts
//!   written for evalscope read it with `pickle.loads(base64.b64decode(value))`.
//! - `text`: perf's compact JSON, `{"content", "reasoning", "usage"}`; perf then keeps no
//!   chunks while a request runs, so memory does not grow with the output length.
//!
//! The encoding runs on the collector thread, never on a thread that times requests; each
//! payload goes from JSON to pickle in one pass (serde-transcode), without a tree in between.

use base64::Engine;
use serde::Serializer;

use crate::worker::{Messages, RawRecord};

/// How `response_messages` is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ResponseMessages {
    /// evalscope's base64(pickle(list of parsed chunks)).
    #[default]
    Evalscope,
    /// perf's compact JSON of the text, reasoning and usage.
    Text,
}

impl ResponseMessages {
    /// Whether requests must keep their chunks for this form.
    pub fn keeps_chunks(self) -> bool {
        self == ResponseMessages::Evalscope
    }

    /// The flag's value.
    pub fn as_str(self) -> &'static str {
        match self {
            ResponseMessages::Evalscope => "evalscope",
            ResponseMessages::Text => "text",
        }
    }
}

/// The column's value for `raw` in `form`; `scratch` is reused between calls.
pub fn encode(form: ResponseMessages, raw: &RawRecord, scratch: &mut Vec<u8>) -> String {
    match form {
        ResponseMessages::Evalscope => pickled(&raw.messages, scratch),
        ResponseMessages::Text => serde_json::json!({
            "content": raw.text,
            "reasoning": raw.reasoning,
            "usage": {
                "prompt_tokens": raw.usage.prompt_tokens.into_option(),
                "completion_tokens": raw.usage.completion_tokens.into_option(),
                "cached_tokens": raw.usage.cached_tokens.into_option(),
            },
        })
        .to_string(),
    }
}

/// base64 of the pickled list of `messages`.
///
/// The list's framing (protocol 3, an empty list, marks and appends) is written here, and each
/// element by serde-pickle straight from the JSON (serde-pickle keeps no memo, so elements are
/// independent): one pass per element, and an element that turns out not to be JSON the
/// transcoder reads (a number out of range, a lone surrogate) is cut off and written as its
/// text instead.
pub fn pickled(messages: &Messages, scratch: &mut Vec<u8>) -> String {
    const PROTO_3: &[u8] = b"\x80\x03";
    const EMPTY_LIST: u8 = b']';
    const MARK: u8 = b'(';
    const APPENDS: u8 = b'e';
    const STOP: u8 = b'.';
    let out = scratch;
    out.clear();
    out.extend_from_slice(PROTO_3);
    out.push(EMPTY_LIST);
    for (i, payload) in messages.iter().enumerate() {
        // Appends in batches of 1,000, as pickle writes long lists.
        if i % 1000 == 0 {
            if i > 0 {
                out.push(APPENDS);
            }
            out.push(MARK);
        }
        let start = out.len();
        let json = trim(payload);
        let mut de = serde_json::Deserializer::from_slice(json);
        let mut ser = serde_pickle::Serializer::new(&mut *out, serde_pickle::SerOptions::new());
        let whole = serde_transcode::transcode(&mut de, &mut ser).is_ok() && de.end().is_ok();
        if !whole {
            out.truncate(start);
            let mut ser = serde_pickle::Serializer::new(&mut *out, serde_pickle::SerOptions::new());
            // Writing to a Vec does not fail.
            let _ = ser.serialize_str(&String::from_utf8_lossy(payload));
        }
    }
    if !messages.is_empty() {
        out.push(APPENDS);
    }
    out.push(STOP);
    base64::engine::general_purpose::STANDARD.encode(&*out)
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &bytes[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_pickle::{DeOptions, HashableValue, Value};

    fn decode(text: &str) -> Value {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .expect("base64");
        serde_pickle::value_from_slice(&bytes, DeOptions::new()).expect("a pickle")
    }

    fn key(k: &str) -> HashableValue {
        HashableValue::String(k.into())
    }

    #[test]
    fn chunks_become_a_python_list_of_dicts_and_other_text_a_str() {
        let mut m = Messages::default();
        m.push(br#"{"id":"c1","choices":[{"delta":{"content":"Hi"},"index":0}],"n":3,"x":1.5,"z":null,"ok":true}"#);
        m.push(b" not json ");
        let Value::List(items) = decode(&pickled(&m, &mut Vec::new())) else {
            panic!("a list");
        };
        assert_eq!(items.len(), 2);
        let Value::Dict(chunk) = &items[0] else {
            panic!("a dict");
        };
        assert_eq!(chunk[&key("id")], Value::String("c1".into()));
        assert_eq!(chunk[&key("n")], Value::I64(3));
        assert_eq!(chunk[&key("x")], Value::F64(1.5));
        assert_eq!(chunk[&key("z")], Value::None);
        assert_eq!(chunk[&key("ok")], Value::Bool(true));
        let Value::List(choices) = &chunk[&key("choices")] else {
            panic!("a list of choices");
        };
        let Value::Dict(choice) = &choices[0] else {
            panic!("a dict");
        };
        let Value::Dict(delta) = &choice[&key("delta")] else {
            panic!("a delta");
        };
        assert_eq!(delta[&key("content")], Value::String("Hi".into()));
        assert_eq!(items[1], Value::String(" not json ".into()));
    }

    #[test]
    fn numbers_beyond_i64_and_json_python_cannot_read_stay_loadable() {
        let mut m = Messages::default();
        m.push(b"18446744073709551615");
        m.push(b"1e999");
        m.push(br#""\ud800""#);
        let Value::List(items) = decode(&pickled(&m, &mut Vec::new())) else {
            panic!("a list");
        };
        assert_eq!(items.len(), 3);
        assert!(
            matches!(items[0], Value::Int(_) | Value::I64(_)),
            "{:?}",
            items[0]
        );
        assert_eq!(
            items[1],
            Value::String("1e999".into()),
            "kept as the text it was"
        );
        assert_eq!(items[2], Value::String(r#""\ud800""#.into()));
    }

    #[test]
    fn long_lists_and_trailing_garbage() {
        let mut m = Messages::default();
        for i in 0..2500 {
            m.push(format!("{{\"i\":{i}}}").as_bytes());
        }
        m.push(b"{} trailing");
        let Value::List(items) = decode(&pickled(&m, &mut Vec::new())) else {
            panic!("a list");
        };
        assert_eq!(items.len(), 2501);
        let Value::Dict(last) = &items[2499] else {
            panic!("a dict");
        };
        assert_eq!(last[&key("i")], Value::I64(2499));
        assert_eq!(items[2500], Value::String("{} trailing".into()));
    }

    #[test]
    fn no_messages_is_an_empty_list() {
        assert_eq!(
            decode(&pickled(&Messages::default(), &mut Vec::new())),
            Value::List(vec![])
        );
    }
}
