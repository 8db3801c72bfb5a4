//! A server's `/metrics` answer (`--server-metrics`), from arbitrary bytes: parsed as the
//! Prometheus text format into families and summarised as a run's first and last scrape:
//! never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use perf_host::server_metrics::{parse, summary, Scraped, Snapshot};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(families) = parse(text) else {
        return;
    };
    let snap = Snapshot { t: 0.0, ok: true, error: None, families };
    let scraped = Scraped {
        url: "http://127.0.0.1/metrics".into(),
        interval: std::time::Duration::from_secs(1),
        snapshots: vec![snap.clone(), snap],
    };
    let _ = summary::table(&summary::summarise(&scraped, &summary::Client::default()));
});
