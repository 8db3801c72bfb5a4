//! The result files `perf report`, `perf compare` and the dashboard read (perf's or
//! evalscope's JSON, with Python's NaN): from arbitrary bytes, never a panic. The first byte
//! picks what the rest is: Python-flavoured JSON text (which must parse as serde_json does
//! wherever it is standard JSON), a run's `benchmark_summary.json`, or its
//! `benchmark_percentile.json`; a benchmark made of the file is read and its report rendered.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

const SUMMARY: &str = r#"{"Concurrency": 2, "Request Rate (req/s)": -1.0, "Total Requests": 4,
"Success Requests": 3, "Failed Requests": 1, "Req Throughput (req/s)": 2.5, "Avg Latency (s)": 0.5,
"Avg TTFT (ms)": NaN, "Failed: timeout": 1, "Client Saturated": false}"#;
const PERCENTILES: &str = r#"[{"Percentiles": "50%", "Latency (s)": 0.5, "TTFT (ms)": NaN},
{"Percentiles": "99%", "Latency (s)": 0.9, "TTFT (ms)": 12.5}]"#;

fn dir() -> &'static std::path::Path {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("perf-fuzz-results-{}", std::process::id()));
        std::fs::create_dir_all(d.join("parallel_2_number_4")).expect("a scratch directory");
        d
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    match pick % 3 {
        0 => {
            let ours = perf_report::pyjson::parse(text);
            if let Ok(standard) = serde_json::from_str::<serde_json::Value>(text) {
                assert_eq!(ours.ok(), Some(standard), "standard JSON reads as serde_json reads it");
            }
        }
        which => {
            let run = dir().join("parallel_2_number_4");
            let (summary, percentiles) = if which == 1 { (text, PERCENTILES) } else { (SUMMARY, text) };
            std::fs::write(run.join("benchmark_summary.json"), summary).expect("write");
            std::fs::write(run.join("benchmark_percentile.json"), percentiles).expect("write");
            if let Ok(b) = perf_report::load::benchmark(dir()) {
                let _ = perf_report::page::render(&b, &perf_report::page::Options::default());
            }
        }
    }
});
