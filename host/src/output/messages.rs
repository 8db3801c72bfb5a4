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
use serde::ser::{Serialize, SerializeSeq, Serializer};

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
pub fn pickled(messages: &Messages, scratch: &mut Vec<u8>) -> String {
    scratch.clear();
    let options = serde_pickle::SerOptions::new;
    if serde_pickle::to_writer(scratch, &List(messages), options()).is_err() {
        // Only a writer error can fail it, and a Vec does not fail: an empty list then.
        scratch.clear();
        let _ = serde_pickle::to_writer(scratch, &Vec::<()>::new(), options());
    }
    base64::engine::general_purpose::STANDARD.encode(scratch)
}

struct List<'a>(&'a Messages);

impl Serialize for List<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for payload in self.0.iter() {
            seq.serialize_element(&Message(payload))?;
        }
        seq.end()
    }
}

struct Message<'a>(&'a [u8]);

impl Serialize for Message<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text = trim(self.0);
        // Checked first: a transcode that fails half-way has already written half a value.
        if serde_json::from_slice::<serde::de::IgnoredAny>(text).is_ok() {
            let mut de = serde_json::Deserializer::from_slice(text);
            serde_transcode::transcode(&mut de, s)
        } else {
            s.serialize_str(&String::from_utf8_lossy(self.0))
        }
    }
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
    fn no_messages_is_an_empty_list() {
        assert_eq!(
            decode(&pickled(&Messages::default(), &mut Vec::new())),
            Value::List(vec![])
        );
    }
}
