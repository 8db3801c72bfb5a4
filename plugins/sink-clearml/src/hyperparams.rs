//! The arguments as ClearML hyperparameters, written as the official client writes a dictionary
//! given to `task.connect`: Python's `str` of each value (`True`, `0.0`, `1e-05`), lists as
//! `json.dumps` writes them, and each entry's type name (`list/int`, `str`, none for `None`).

use perf_plugin_api::sdk::python_float as py_float;
use serde_json::{json, Map, Value};

/// JSON as Python's `json.dumps` writes it (`", "` and `": "` separators, floats by `repr`).
fn py_json(v: &Value) -> String {
    match v {
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(py_json).collect();
            format!("[{}]", parts.join(", "))
        }
        Value::Object(m) => {
            let parts: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}: {}", Value::String(k.clone()), py_json(v)))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
        Value::Number(n) if n.is_f64() => py_float(n.as_f64().unwrap_or(0.0)),
        other => other.to_string(),
    }
}

/// The type name the client gives a value (`None` for null, which it sends without one).
fn type_name(v: &Value) -> Option<String> {
    let scalar = |v: &Value| match v {
        Value::Bool(_) => Some("bool"),
        Value::Number(n) if n.is_f64() => Some("float"),
        Value::Number(_) => Some("int"),
        Value::String(_) => Some("str"),
        _ => None,
    };
    match v {
        Value::Null => None,
        Value::Array(items) => {
            let first = items.first().and_then(scalar);
            let same = first.is_some() && items.iter().all(|i| scalar(i) == first);
            Some(match (same, first) {
                (true, Some(t)) => format!("list/{t}"),
                _ => "list".into(),
            })
        }
        Value::Object(_) => Some("dict".into()),
        other => scalar(other).map(str::to_string),
    }
}

/// The text of a value, as the client writes it.
fn py_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_f64() => py_float(n.as_f64().unwrap_or(0.0)),
        other => py_json(other),
    }
}

/// `task.connect(dict)`'s hyperparameters: a `General` section, nested objects flattened with
/// `/`, each entry `{section, name, value, type, description}`.
pub fn hyperparams(args: Map<String, Value>) -> Value {
    fn add(out: &mut Map<String, Value>, prefix: &str, value: &Value) {
        match value {
            Value::Object(m) if !m.is_empty() => {
                for (k, v) in m {
                    add(out, &format!("{prefix}/{k}"), v);
                }
            }
            _ => {
                let mut entry = Map::new();
                entry.insert("section".into(), json!("General"));
                entry.insert("name".into(), json!(prefix));
                entry.insert("value".into(), json!(py_text(value)));
                if let Some(t) = type_name(value) {
                    entry.insert("type".into(), json!(t));
                }
                entry.insert("description".into(), json!(""));
                out.insert(prefix.to_string(), Value::Object(entry));
            }
        }
    }
    let mut general = Map::new();
    for (k, v) in &args {
        add(&mut general, k, v);
    }
    json!({ "General": general })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_written_as_the_official_client_writes_a_connected_dictionary() {
        let args = json!({
            "parallel": [1, 2], "model": "m", "rate": -1, "stream": true, "api_key": null,
            "temperature": 0.0, "headers": {"a": "b"}, "stop": ["x", "y"], "top_p": 0.9,
            "empty": [], "mixed": [1, "a"], "tiny": 0.00001,
        });
        let Value::Object(args) = args else {
            unreachable!()
        };
        let h = hyperparams(args);
        let g = &h["General"];
        let entry = |k: &str| (g[k]["value"].clone(), g[k]["type"].clone());
        assert_eq!(entry("parallel"), (json!("[1, 2]"), json!("list/int")));
        assert_eq!(entry("model"), (json!("m"), json!("str")));
        assert_eq!(entry("rate"), (json!("-1"), json!("int")));
        assert_eq!(entry("stream"), (json!("True"), json!("bool")));
        assert_eq!(entry("api_key"), (json!(""), Value::Null));
        assert_eq!(entry("temperature"), (json!("0.0"), json!("float")));
        assert_eq!(entry("headers/a"), (json!("b"), json!("str")));
        assert_eq!(entry("stop"), (json!(r#"["x", "y"]"#), json!("list/str")));
        assert_eq!(entry("top_p"), (json!("0.9"), json!("float")));
        assert_eq!(entry("empty"), (json!("[]"), json!("list")));
        assert_eq!(entry("mixed"), (json!(r#"[1, "a"]"#), json!("list")));
        assert_eq!(entry("tiny"), (json!("1e-05"), json!("float")));
        assert_eq!(g["model"]["section"], "General");
        assert_eq!(g["model"]["name"], "model");
        assert_eq!(g["model"]["description"], "");
        assert!(g["api_key"].get("type").is_none());
    }
}
