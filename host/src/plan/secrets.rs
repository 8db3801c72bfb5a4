//! What perf writes about a run's arguments without giving away a credential: the masked
//! arguments of `benchmark_args.json` and the sinks, and URLs fit for logs.

use serde_json::Value;

use crate::cli::RunArgs;

/// A URL fit for logs and reports: no user name, password or query string (which may carry
/// keys).
pub fn redacted_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            if u.query().is_some() {
                u.set_query(Some("..."));
            }
            u.to_string()
        }
        Err(_) => "(invalid URL)".to_string(),
    }
}

/// Whether a header or flag name holds a credential.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "key",
        "token",
        "secret",
        "authorization",
        "password",
        "cookie",
    ]
    .iter()
    .any(|s| k.contains(s))
}

pub(crate) const MASK: &str = "**********";

/// Masks every value under a secret-looking key, at any depth.
fn mask_secrets(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if is_secret_key(k) && !val.is_null() {
                    *val = Value::String(MASK.into());
                } else {
                    mask_secrets(val);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask_secrets),
        _ => {}
    }
}

pub(crate) fn masked_args(a: &RunArgs) -> Value {
    let mut v = serde_json::to_value(a).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut v {
        for (k, val) in map.iter_mut() {
            if is_secret_key(k) && !val.is_null() {
                *val = Value::String(MASK.into());
            }
        }
        // `--sink ID={...}` options may hold a key or an auth header.
        if let Some(Value::Array(sinks)) = map.get_mut("sinks") {
            for s in sinks.iter_mut() {
                let Some((id, json)) = s.as_str().and_then(|s| s.split_once('=')) else {
                    continue;
                };
                if let Ok(mut options) = serde_json::from_str::<Value>(json) {
                    mask_secrets(&mut options);
                    *s = Value::String(format!("{id}={options}"));
                } else {
                    *s = Value::String(format!("{id}={MASK}"));
                }
            }
        }
        if let Some(Value::Array(hs)) = map.get_mut("headers") {
            for h in hs.iter_mut() {
                if let Some((k, _)) = h.as_str().and_then(|s| s.split_once('=')) {
                    if is_secret_key(k) {
                        *h = Value::String(format!("{k}={MASK}"));
                    }
                }
            }
        }
    }
    v
}
