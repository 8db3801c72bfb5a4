//! Subcommands other than the benchmark itself.

pub mod plugins;
