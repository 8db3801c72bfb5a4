//! perf's end-to-end tests: one binary, one module per area.

mod apis;
mod compat;
mod conversations;
mod datasets;
mod deploy;
mod engine;
mod faults;
mod hub;
mod interface;
mod keepalive;
mod load;
mod local_vllm;
mod otel_tls;
mod plugins;
mod report;
mod server_metrics;
mod shards;
mod signals;
mod sinks;
mod tls;
mod traces;
mod visualizers;
