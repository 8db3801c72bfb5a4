//! Subcommands other than the benchmark itself.

pub mod calibrate;
pub mod plugins;
pub mod serve_mock;
