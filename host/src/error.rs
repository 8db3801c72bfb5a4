//! How failures map to exit codes: 2 for anything the user must fix before a run can start
//! (flags, configuration, plugins), 1 for a run that finished but failed.

use crate::plugin_host::{InstantiateError, LoadErrors};

/// A problem with the command line or configuration. Say what is wrong and what to change.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Shorthand for a [`UsageError`] as an `anyhow::Error`.
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(message.into()))
}

/// The exit code for an error that ended `perf`.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    let is_usage = err
        .chain()
        .any(|c| c.is::<UsageError>() || c.is::<LoadErrors>() || c.is::<InstantiateError>());
    if is_usage {
        2
    } else {
        1
    }
}
