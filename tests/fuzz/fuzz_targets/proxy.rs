//! What perf reads about and from a proxy: a proxy variable's value, a `NO_PROXY` list against
//! a host, and the proxy's answer to `CONNECT` (NUL-separated parts): never a panic, and an
//! answer is accepted only with a 200 status line.

#![no_main]

use libfuzzer_sys::fuzz_target;
use perf_host::transport::{connect_answer, proxy};

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(4, |b| *b == 0);
    let value = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let no_proxy = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let host = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let answer = parts.next().unwrap_or_default();
    if let Ok(p) = proxy::parse("HTTPS_PROXY", &value) {
        assert!(p.authority.contains(':'));
    }
    let _ = proxy::bypasses(&no_proxy, &host, 443);
    if connect_answer(answer).is_ok() {
        let line = answer.split(|b| *b == b'\n').next().unwrap_or_default();
        let text = String::from_utf8_lossy(line);
        assert_eq!(text.split_whitespace().nth(1), Some("200"));
    }
});
