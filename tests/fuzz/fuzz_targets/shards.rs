//! Shards' `shard.json` files as `perf merge` reads them, from arbitrary bytes (split at NUL
//! into up to four files): parsed and checked as one benchmark's shards, never a panic; every
//! refusal an error with a message.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let texts: Vec<&str> = text.split('\0').take(4).collect();
    if let Err(e) = perf_host::commands::merge::check_texts(&texts) {
        assert!(!format!("{e:#}").is_empty());
    }
});
