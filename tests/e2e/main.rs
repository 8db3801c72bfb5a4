//! perf's end-to-end tests: one binary, one module per area.

mod engine;
mod plugins;
