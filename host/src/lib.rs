//! `perf`: load-testing and benchmarking for LLM inference services.
//!
//! `main.rs` only parses the command line and maps errors to exit codes; everything else is
//! here so tests can call it in process. The flow of a run: `cli` (raw flags) -> `plan`
//! (validated run plan) -> `schedule` (when each request goes) -> `worker` (sending, timing,
//! framing, decoding) -> `aggregate` (statistics) -> `output` (files, console, sinks).
//! `plugin_host` owns the registry of plugins. The built-in server (the simulator, and the
//! server of `--api local`) is the crate `perf-server`; the clocks both sides stamp with are
//! `perf-timing`.

pub mod aggregate;
mod builtins;
pub mod cli;
pub mod commands;
pub mod cpu;
pub mod error;
pub mod framing;
pub mod local_model;
pub mod local_vllm;
pub mod modes;
pub mod output;
pub mod plan;
pub mod plugin_host;
pub mod run;
pub mod schedule;
pub mod server_metrics;
pub mod signals;
pub mod sla;
pub mod tokenizer;
pub mod transport;
pub mod worker;

use std::ffi::OsString;

use clap::{CommandFactory, FromArgMatches};

use cli::{Cli, Command};
use plugin_host::PluginRegistry;

/// Parses the command line. Global options (`--plugin`) go before or after a subcommand; a
/// benchmark flag given with a subcommand is an error rather than silently ignored.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Cli, clap::Error> {
    let mut command = Cli::command();
    let matches = command.try_get_matches_from_mut(args)?;
    if let Some((name, _)) = matches.subcommand() {
        let stray = matches.ids().find(|id| {
            id.as_str() != "plugins"
                && matches.value_source(id.as_str()) == Some(clap::parser::ValueSource::CommandLine)
        });
        if let Some(id) = stray {
            let flag = format!("--{}", id.as_str().replace('_', "-"));
            return Err(command.error(
                clap::error::ErrorKind::ArgumentConflict,
                format!("{flag} is a benchmark flag; `perf {name}` does not take it (give it to `perf` without a subcommand)"),
            ));
        }
    }
    let mut cli = Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut command))?;
    cli.run.number_given =
        matches.value_source("number") == Some(clap::parser::ValueSource::CommandLine);
    Ok(cli)
}

/// `OTEL_EXPORTER_OTLP_[SIGNAL_]COMPRESSION=none` is the standard way to say "no compression",
/// but the OTLP exporter library refuses the value when it reads the environment itself: the
/// variable is removed here, while the process has a single thread, so that "none" means none.
fn unset_compression_none() {
    for name in [
        "OTEL_EXPORTER_OTLP_COMPRESSION",
        "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION",
        "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
        "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION",
    ] {
        if std::env::var(name).is_ok_and(|v| v.trim().eq_ignore_ascii_case("none")) {
            std::env::remove_var(name);
        }
    }
}

/// Parses `args` and runs `perf`; returns the process exit code.
pub fn main_with_args(args: impl IntoIterator<Item = OsString>) -> i32 {
    unset_compression_none();
    let cli = match parse(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", output::redact::redact(&format!("{e:#}")));
            error::exit_code(&e)
        }
    }
}

/// Runs a parsed command line; returns the exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    let mut plugins = cli.plugins.clone();
    // `--api local` finds its backend beside the binary unless --plugin names one.
    if cli.command.is_none()
        && modes::ServerMode::from_api(&cli.run.api) == Some(modes::ServerMode::LocalModel)
    {
        if let Some(lib) = local_model::beside_binary() {
            if !plugins.contains(&lib) {
                plugins.push(lib);
            }
        }
    }
    let registry = PluginRegistry::load(&plugins)?;
    match cli.command {
        Some(Command::Plugins(args)) => {
            println!("{}", commands::plugins::render(&registry, args.verbose));
            Ok(0)
        }
        Some(Command::ServeMock(args)) => commands::serve_mock::run(&args),
        Some(Command::Calibrate(args)) => commands::calibrate::run(&args),
        Some(Command::Report(args)) => commands::report::report(&args),
        Some(Command::Compare(args)) => commands::report::compare(&args),
        Some(Command::Dashboard(args)) => commands::dashboard::run(&args, registry, &plugins),
        Some(Command::Merge(args)) => commands::merge::merge(&args),
        None => {
            output::redact::register(plan::secrets(&cli.run));
            let plan = plan::plan(&cli.run, &registry)?;
            run::run(plan, std::sync::Arc::new(registry))
        }
    }
}
