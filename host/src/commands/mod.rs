//! Subcommands other than the benchmark itself.

pub mod plugins;
pub mod serve_mock;
