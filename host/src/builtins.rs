//! The built-in plugin crates. Each is referenced here so the linker keeps it, and with it its
//! `inventory` registration (STYLE.md rule 8).

extern crate perf_api_dashscope;
extern crate perf_api_openai;
extern crate perf_datasets;
extern crate perf_sink_clearml;
extern crate perf_sink_otel;
extern crate perf_sink_swanlab;
extern crate perf_sink_wandb;

/// Called by the registry so this module is never dropped as unused.
pub(crate) fn link() {}
