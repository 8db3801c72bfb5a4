//! What a result sink reads from outside, from arbitrary bytes: a ClearML answer (its `meta` and
//! `data`) under every status, a `clearml.conf`, and any JSON object formatted as ClearML
//! hyperparameters: never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = perf_sink_clearml::parse_conf(text);
    for status in [200, 401, 500] {
        let _ = perf_sink_clearml::data("tasks.create", status, text);
    }
    if let Ok(serde_json::Value::Object(m)) = serde_json::from_str(text) {
        let _ = perf_sink_clearml::hyperparams(m).to_string();
    }
});
