//! perf's end-to-end tests: one binary, one module per area.

mod apis;
mod datasets;
mod engine;
mod hub;
mod interface;
mod keepalive;
mod local_vllm;
mod plugins;
mod sinks;
mod visualizers;
