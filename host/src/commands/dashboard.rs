//! `perf dashboard`: serves `perf-dashboard` over an outputs directory, with this binary's
//! own parser and planner checking the runs its form starts.

use std::ffi::OsString;
use std::sync::Arc;

use anyhow::Context;

use crate::cli::DashboardArgs;
use crate::error::usage;
use crate::plugin_host::PluginRegistry;

/// Checks a run's flags as `perf` would, without starting anything.
fn validate(registry: &PluginRegistry, args: &[String]) -> Result<(), String> {
    let argv = std::iter::once(OsString::from("perf")).chain(args.iter().map(OsString::from));
    let cli = crate::parse(argv).map_err(|e| e.to_string().trim_end().to_string())?;
    if cli.command.is_some() {
        return Err("the flags name a subcommand; give the flags of a benchmark".into());
    }
    crate::plan::plan(&cli.run, registry)
        .map(|_| ())
        .map_err(|e| format!("{e:#}"))
}

/// `perf dashboard`.
pub fn run(
    args: &DashboardArgs,
    registry: PluginRegistry,
    plugins: &[std::path::PathBuf],
) -> anyhow::Result<i32> {
    std::fs::create_dir_all(&args.outputs_dir).map_err(|e| {
        usage(format!(
            "cannot create the outputs directory {}: {e}; pick another --outputs-dir",
            args.outputs_dir.display()
        ))
    })?;
    let outputs = args
        .outputs_dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", args.outputs_dir.display()))?;
    let perf = std::env::current_exe().context("cannot find the perf binary to start runs with")?;
    let registry = Arc::new(registry);
    let base_args = plugins
        .iter()
        .flat_map(|p| ["--plugin".to_string(), p.display().to_string()])
        .collect();
    let config = perf_dashboard::Config {
        outputs: outputs.clone(),
        perf,
        base_args,
        validate: Arc::new(move |a: &[String]| validate(&registry, a)),
        redact: Arc::new(|s: &str| crate::output::redact::redact(s).into_owned()),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the dashboard's runtime")?;
    rt.block_on(async move {
        let addr = format!("{}:{}", args.host, args.port);
        let listener = tokio::net::TcpListener::bind(&addr).await.map_err(|e| {
            usage(format!("cannot listen on {addr}: {e}; pick another --host or --port"))
        })?;
        let local = listener.local_addr()?;
        println!("dashboard: http://{local}/ (outputs: {})", outputs.display());
        tokio::select! {
            served = perf_dashboard::serve(listener, config) => served.context("the dashboard stopped")?,
            _ = tokio::signal::ctrl_c() => {}
        }
        Ok(0)
    })
}
