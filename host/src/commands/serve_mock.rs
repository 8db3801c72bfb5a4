//! `perf serve-mock`: the simulator as a standalone server, until Ctrl-C or SIGTERM.

use std::sync::Arc;

use anyhow::Context;

use crate::cli::ServeMockArgs;
use crate::transport::tls;
use perf_server::MockBackend;

/// Serves until interrupted (over TLS with `--tls-cert` and `--tls-key`, requiring client
/// certificates signed by `--tls-client-ca`); prints the address it listens on.
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
        let tls =
            match (&args.tls_cert, &args.tls_key) {
                (Some(cert), Some(key)) => Some(tokio_rustls::TlsAcceptor::from(
                    tls::server_config(cert, key, args.tls_client_ca.as_deref())
                        .map_err(crate::error::usage)?,
                )),
                (None, None) if args.tls_client_ca.is_some() => return Err(crate::error::usage(
                    "--tls-client-ca needs --tls-cert and --tls-key (the server's own identity)",
                )),
                (None, None) => None,
                _ => return Err(crate::error::usage(
                    "--tls-cert and --tls-key go together: the server's certificate and its key",
                )),
            };
        let addr = listener.local_addr()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        println!("perf mock server listening on {scheme}://{addr}");
        let backend = Arc::new(MockBackend::new(crate::plan::simulator(&args.mock)));
        perf_server::serve(
            listener,
            backend,
            args.mock.mock_log.as_deref(),
            tls,
            crate::signals::first_signal(),
        )
        .await
        .context("the mock server failed")?;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(0)
}
