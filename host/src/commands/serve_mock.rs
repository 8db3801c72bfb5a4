//! `perf serve-mock`: the simulator as a standalone server, until Ctrl-C or SIGTERM.

use std::sync::Arc;

use anyhow::Context;

use crate::cli::ServeMockArgs;
use perf_server::MockBackend;

/// Serves until interrupted; prints the address it listens on.
pub fn run(args: &ServeMockArgs) -> anyhow::Result<i32> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
            .await
            .map_err(|e| {
                crate::error::usage(format!("cannot listen on {}:{}: {e}", args.host, args.port))
            })?;
        let addr = listener.local_addr()?;
        println!("perf mock server listening on http://{addr}");
        let backend = Arc::new(MockBackend::new(crate::plan::simulator(&args.mock)));
        perf_server::serve(
            listener,
            backend,
            args.mock.mock_log.as_deref(),
            crate::signals::first_signal(),
        )
        .await
        .context("the mock server failed")?;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(0)
}
