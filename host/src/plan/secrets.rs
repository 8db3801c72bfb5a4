//! The secrets of a run and what perf writes about its arguments without giving one away.
//!
//! Two mechanisms, one rule: every value the run knows to be a credential is a secret, and no
//! text perf writes contains one. [`secrets`] collects them (the API key, credential-looking
//! header values, URL user info and credential query parameters, sink keys and credential
//! headers, credential environment variables); `output::redact` replaces them in every text
//! before it is written (logs, console, database, files, sink payloads). [`masked_args`] also
//! masks by name in `benchmark_args.json`, so even a short secret never reaches that file.

use serde_json::Value;

use crate::cli::RunArgs;

/// What replaces a secret.
pub const MASK: &str = "**********";

/// Words that make a name a credential's when it ends in one (`api_key`, `x-api-key`,
/// `hf_token`, `proxy-authorization`, `set-cookie`). `max_tokens`, `stop_token_ids` and
/// `tokenizer_path` end in other words.
const CREDENTIAL_WORDS: [&str; 11] = [
    "key",
    "apikey",
    "token",
    "secret",
    "password",
    "passwd",
    "authorization",
    "cookie",
    "credential",
    "credentials",
    "signature",
];

/// Whether a header, flag, option, query parameter or environment variable name holds a
/// credential.
pub fn is_secret_key(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower
        .rsplit(['_', '-', '.'])
        .next()
        .is_some_and(|last| CREDENTIAL_WORDS.contains(&last))
        || lower == "auth"
        || lower == "sig"
}

/// `url` with its user info and credential query values masked, everything else kept.
pub fn masked_url(url: &str) -> String {
    let Ok(mut u) = reqwest::Url::parse(url) else {
        return url.to_string();
    };
    if !u.username().is_empty() || u.password().is_some() {
        let _ = u.set_password(None);
        let _ = u.set_username(MASK);
    }
    if u.query().is_some() {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let v = if is_secret_key(&k) {
                    MASK.to_string()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    u.to_string()
}

/// A URL fit for a one-line report: no user info, no query string.
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

/// The credentials among `value`'s members (at any depth).
fn secrets_in(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match v {
                    Value::String(s) if is_secret_key(k) => out.push(s.clone()),
                    other => secrets_in(other, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| secrets_in(v, out)),
        _ => {}
    }
}

/// A credential header's value and, for `Bearer <token>` style values, the token alone.
fn header_secret(value: &str, out: &mut Vec<String>) {
    out.push(value.to_string());
    if let Some((_, token)) = value.split_once(' ') {
        out.push(token.trim().to_string());
    }
}

/// Every secret `a` knows: the API key; the values of credential-looking `--headers`; the
/// user info and credential query values of `--url`; the visualizers' keys; credentials in
/// `--sink` options (an `authorization` header, an `api_key`); and the values of credential
/// environment variables (`OPENAI_API_KEY`, `HF_TOKEN`, ...), which plugins may read; and
/// the credentials of the proxies in the environment.
pub fn secrets(a: &RunArgs) -> Vec<String> {
    let mut out = Vec::new();
    for key in [&a.api_key, &a.wandb_api_key, &a.swanlab_api_key]
        .into_iter()
        .flatten()
    {
        out.push(key.clone());
    }
    for h in &a.headers {
        if let Some((name, value)) = h.split_once('=') {
            if is_secret_key(name.trim()) {
                header_secret(value, &mut out);
            }
        }
    }
    let urls = std::iter::once(a.url.as_str()).chain(a.server_metrics.as_deref());
    for u in urls.filter_map(|u| reqwest::Url::parse(u).ok()) {
        out.extend([
            u.username().to_string(),
            u.password().unwrap_or("").to_string(),
        ]);
        out.extend(
            u.query_pairs()
                .filter(|(k, _)| is_secret_key(k))
                .map(|(_, v)| v.into_owned()),
        );
    }
    for s in &a.sinks {
        if let Some(Ok(options)) = s
            .split_once('=')
            .map(|(_, json)| serde_json::from_str::<Value>(json))
        {
            secrets_in(&options, &mut out);
        }
    }
    for (name, value) in std::env::vars() {
        if is_secret_key(&name) {
            out.push(value);
        }
    }
    out.extend(crate::transport::proxy::environment_credentials());
    out.retain(|s| !s.trim().is_empty());
    out
}

/// Masks every value under a secret-looking key, at any depth.
pub(crate) fn mask_secrets(v: &mut Value) {
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

/// All arguments for `benchmark_args.json` and the sinks: credentials masked by name, the URL
/// without its user info and credential query values.
pub(crate) fn masked_args(a: &RunArgs) -> Value {
    let mut v = serde_json::to_value(a).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut v {
        for (k, val) in map.iter_mut() {
            if is_secret_key(k) && !val.is_null() {
                *val = Value::String(MASK.into());
            }
        }
        for key in ["url", "server_metrics"] {
            if let Some(Value::String(url)) = map.get_mut(key) {
                *url = masked_url(url);
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
                    if is_secret_key(k.trim()) {
                        *h = Value::String(format!("{k}={MASK}"));
                    }
                }
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_credential_names_are_secret() {
        for name in [
            "api_key",
            "wandb_api_key",
            "X-Api-Key",
            "Authorization",
            "Proxy-Authorization",
            "HF_TOKEN",
            "access_token",
            "Set-Cookie",
            "client_secret",
            "password",
        ] {
            assert!(is_secret_key(name), "{name}");
        }
        for name in [
            "max_tokens",
            "min_tokens",
            "stop_token_ids",
            "tokenizer_path",
            "tokenize_prompt",
            "token_counts",
            "keys",
            "monkey_business",
        ] {
            assert!(!is_secret_key(name), "{name}");
        }
    }

    #[test]
    fn urls_lose_their_user_info_and_credential_query_values_only() {
        assert_eq!(
            masked_url("https://bob:hunter22@h:8000/v1?api_key=sk-1&api-version=2024"),
            "https://**********@h:8000/v1?api_key=**********&api-version=2024"
        );
        assert_eq!(masked_url("http://h/v1"), "http://h/v1");
    }
}
