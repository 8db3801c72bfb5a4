//! Result files as Python writes them: evalscope's JSON files carry `NaN` (a percentile
//! without samples) and may carry `Infinity`, which strict JSON parsers refuse. These are read
//! as `null`, the way perf itself writes an absent number; everything else is plain JSON.

use serde_json::Value;

/// Parses `text` as JSON, with Python's bare `NaN`, `Infinity` and `-Infinity` read as `null`.
pub fn parse(text: &str) -> serde_json::Result<Value> {
    serde_json::from_str(&strict(text))
}

/// `text` with the non-standard number tokens outside strings replaced by `null`.
fn strict(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut copied = 0;
    let mut in_string = false;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match b {
                b'\\' => i += 2,
                b'"' => {
                    in_string = false;
                    i += 1;
                }
                _ => i += 1,
            }
            continue;
        }
        if b == b'"' {
            in_string = true;
            i += 1;
            continue;
        }
        let token = ["-Infinity", "Infinity", "NaN"]
            .into_iter()
            .find(|t| bytes[i..].starts_with(t.as_bytes()));
        match token {
            Some(t) => {
                out.push_str(&text[copied..i]);
                out.push_str("null");
                i += t.len();
                copied = i;
            }
            None => i += 1,
        }
    }
    out.push_str(text.get(copied..).unwrap_or(""));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn python_specials_outside_strings_become_null() {
        let v = parse(r#"{"a": NaN, "b": [Infinity, -Infinity, 1.5], "NaN": "x NaN \" Infinity"}"#)
            .expect("parses");
        assert_eq!(
            v,
            json!({"a": null, "b": [null, null, 1.5], "NaN": "x NaN \" Infinity"})
        );
    }

    #[test]
    fn plain_json_is_unchanged_and_garbage_is_an_error() {
        assert_eq!(parse("[1, \"é\"]").expect("parses"), json!([1, "é"]));
        assert!(parse("{\"a\": NaNx}").is_err());
        assert!(parse("\"unterminated \\").is_err());
    }
}
