//! Subcommands other than the benchmark itself.

pub mod calibrate;
pub mod dashboard;
pub mod merge;
pub mod plugins;
pub mod report;
pub mod serve_mock;
