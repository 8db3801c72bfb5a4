//! The command line through parsing and planning, on arbitrary arguments (NUL-separated):
//! never a panic; every refusal is an error with a message.

#![no_main]

use std::ffi::OsString;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use perf_host::plugin_host::PluginRegistry;

fn registry() -> &'static PluginRegistry {
    static REGISTRY: OnceLock<PluginRegistry> = OnceLock::new();
    REGISTRY.get_or_init(PluginRegistry::builtins)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut args: Vec<OsString> = vec!["perf".into()];
    args.extend(text.split('\0').map(OsString::from));
    // `@file` arguments would read files; the fuzzer does not name real ones.
    if args.iter().any(|a| a.to_string_lossy().contains('@')) {
        return;
    }
    if let Ok(cli) = perf_host::parse(args) {
        if cli.command.is_none() {
            if let Err(e) = perf_host::plan::plan(&cli.run, registry()) {
                assert!(!format!("{e:#}").is_empty());
            }
        }
    }
});
