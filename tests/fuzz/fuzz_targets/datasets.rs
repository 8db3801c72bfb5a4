//! The dataset files perf reads (a trace, conversations, swe_smith's JSON, ShareGPT lines,
//! prompt lines, MMMU's parquet), from arbitrary bytes through the built-in plugins as a run opens them: never
//! a panic, every refusal an error with a message. The first byte picks the dataset, the rest
//! is the file.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use perf_host::plugin_host::PluginRegistry;
use perf_plugin_api::sdk::DatasetConfig;

const DATASETS: [&str; 8] = [
    "workload_trace",
    "custom_multi_turn",
    "swe_smith",
    "share_gpt_en",
    "share_gpt_en_multi_turn",
    "custom",
    "line_by_line",
    "mmmu_multi_image",
];

fn registry() -> &'static PluginRegistry {
    static REGISTRY: OnceLock<PluginRegistry> = OnceLock::new();
    REGISTRY.get_or_init(PluginRegistry::builtins)
}

fn file() -> &'static std::path::Path {
    static FILE: OnceLock<std::path::PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        std::env::temp_dir().join(format!("perf-fuzz-datasets-{}.jsonl", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, content)) = data.split_first() else {
        return;
    };
    let id = DATASETS[pick as usize % DATASETS.len()];
    if std::fs::write(file(), content).is_err() {
        return;
    }
    let config = DatasetConfig {
        dataset_path: Some(file().to_string_lossy().into_owned()),
        data_source: "local".into(),
        multi_turn: true,
        max_turns: Some(4),
        ..DatasetConfig::default()
    };
    match registry().dataset_source(id, &config, None) {
        Ok(mut source) => {
            for _ in 0..64 {
                match source.next_item() {
                    Ok(Some(item)) => {
                        let _ = item.prompt();
                        if let Some(ends) = item.turn_ends() {
                            assert!(ends.windows(2).all(|w| w[0] < w[1]), "{id}: turn ends grow");
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        assert!(!e.message.is_empty(), "{id}: an error says why");
                        break;
                    }
                }
            }
        }
        Err(e) => assert!(!e.to_string().is_empty(), "{id}: a refusal says why"),
    }
});
