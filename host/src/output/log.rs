//! The run log: every line goes to stderr (above the progress bar) and to
//! `benchmark.log`, with a timestamp, secrets masked (`redact`); each message is flushed as it
//! is written.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use indicatif::ProgressBar;

struct Log {
    file: Option<BufWriter<File>>,
    bar: Option<ProgressBar>,
}

static DEBUG: AtomicBool = AtomicBool::new(false);

static LOG: OnceLock<Mutex<Log>> = OnceLock::new();

fn log() -> &'static Mutex<Log> {
    LOG.get_or_init(|| {
        Mutex::new(Log {
            file: None,
            bar: None,
        })
    })
}

/// Starts writing to `path` as well as stderr.
pub fn open(path: &Path, debug: bool) -> std::io::Result<()> {
    let file = BufWriter::new(File::create(path)?);
    if let Ok(mut l) = log().lock() {
        l.file = Some(file);
    }
    DEBUG.store(debug, Ordering::Relaxed);
    Ok(())
}

/// Routes stderr lines through `bar` (or not, with `None`).
pub fn set_bar(bar: Option<ProgressBar>) {
    if let Ok(mut l) = log().lock() {
        l.bar = bar;
    }
}

fn write(level: &str, message: &str, to_stderr: bool) {
    let message = super::redact::redact(message);
    let stamp = chrono::Local::now().format("%Y-%m-%d %H:%M:%S%.3f");
    let Ok(mut l) = log().lock() else { return };
    for line in message.lines() {
        let text = format!("{stamp} - perf - {level}: {line}");
        if let Some(f) = l.file.as_mut() {
            let _ = writeln!(f, "{text}");
        }
        if to_stderr {
            match &l.bar {
                Some(bar) if !bar.is_hidden() => bar.println(&text),
                _ => eprintln!("{text}"),
            }
        }
    }
    // Whole messages on disk as they are written (a few a second at most): a sink tailing the
    // file sees them live, and a killed process leaves them behind.
    if let Some(f) = l.file.as_mut() {
        let _ = f.flush();
    }
}

/// An informational line.
pub fn info(message: impl AsRef<str>) {
    write("INFO", message.as_ref(), true);
}

/// A warning.
pub fn warn(message: impl AsRef<str>) {
    write("WARNING", message.as_ref(), true);
}

/// A warning shown once per distinct message, however often it happens (a plugin that fails
/// every request).
pub fn warn_once(message: &str) {
    static SEEN: OnceLock<Mutex<std::collections::HashSet<String>>> = OnceLock::new();
    let first = SEEN
        .get_or_init(Default::default)
        .lock()
        .map(|mut seen| seen.insert(message.to_string()))
        .unwrap_or(true);
    if first {
        warn(message);
    }
}

/// Written to the log file only (tables that are printed separately).
pub fn file_only(message: impl AsRef<str>) {
    write("INFO", message.as_ref(), false);
}

/// Whether `--debug` is on.
pub fn debugging() -> bool {
    DEBUG.load(Ordering::Relaxed)
}

/// A debug line (`--debug`).
pub fn debug(message: impl AsRef<str>) {
    if debugging() {
        write("DEBUG", message.as_ref(), true);
    }
}

/// Flushes the file.
pub fn flush() {
    if let Ok(mut l) = log().lock() {
        if let Some(f) = l.file.as_mut() {
            let _ = f.flush();
        }
    }
}
