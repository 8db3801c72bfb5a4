//! The one redaction rule: every secret the run knows (see `plan::secrets`) is replaced by
//! `**********` in every text perf writes or prints: log lines, the console, error messages,
//! the database's text columns, the files, and what sinks receive. Registered once, when the
//! run is planned; with nothing registered, `redact` costs a check.
//!
//! Secrets shorter than [`MIN_LEN`] characters are not searched for in free text (masking
//! every "a" or "12" would garble the output); they are still masked by name in
//! `benchmark_args.json`. A secret's percent-encoded form is masked too, as servers echo URLs
//! encoded.

use std::borrow::Cow;
use std::sync::RwLock;

use crate::plan::MASK;

/// Shortest secret searched for in free text.
pub const MIN_LEN: usize = 6;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

fn percent_encoded(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Adds `secrets` to the rule (the longest first, so a secret containing another is masked
/// whole).
pub fn register(secrets: impl IntoIterator<Item = String>) {
    let Ok(mut all) = SECRETS.write() else { return };
    for s in secrets {
        if s.chars().count() < MIN_LEN {
            continue;
        }
        let encoded = percent_encoded(&s);
        for form in [s, encoded] {
            if !all.contains(&form) {
                all.push(form);
            }
        }
    }
    all.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// `text` with every registered secret masked.
pub fn redact(text: &str) -> Cow<'_, str> {
    let Ok(all) = SECRETS.read() else {
        return Cow::Borrowed(text);
    };
    let mut out = Cow::Borrowed(text);
    for secret in all.iter() {
        if out.contains(secret.as_str()) {
            out = Cow::Owned(out.replace(secret.as_str(), MASK));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_secrets_are_masked_with_their_encoded_form_and_short_ones_are_not() {
        register(["sk-redact-test/1".to_string(), "abc".to_string()]);
        assert_eq!(
            redact("key sk-redact-test/1 or sk-redact-test%2F1, abc stays"),
            "key ********** or **********, abc stays"
        );
        assert!(matches!(redact("nothing here"), Cow::Borrowed(_)));
    }
}
