//! Ctrl-C and SIGTERM.

/// Resolves on the first Ctrl-C or SIGTERM.
pub async fn first_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// From now on Ctrl-C and SIGTERM do what they do by default: end the process at once (the
/// last resort after two interrupts, when writing the results takes too long).
pub fn default_from_now_on() {
    #[cfg(unix)]
    // SAFETY: resetting a signal's disposition to the default is async-signal-safe and
    // affects nothing else in the process.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_DFL);
        libc::signal(libc::SIGTERM, libc::SIG_DFL);
    }
}

/// Writing past a file-size limit fails with an error perf reports, instead of the default of
/// SIGXFSZ, which kills the process with nothing written.
pub fn report_file_size_limits() {
    #[cfg(unix)]
    // SAFETY: ignoring a signal is async-signal-safe and affects nothing else in the process.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}
