//! perf's console in the task's CONSOLE tab, as the official client sends a script's: each
//! send takes the lines `benchmark.log` gained since the last (every line perf prints goes
//! there, secrets already masked) and makes one `log` event of each run of lines of one level.
//! The client sends stdout as `info` and stderr as `error`; perf's lines say their own level
//! (`INFO`, `WARNING`, `ERROR`, `DEBUG`), so each keeps it.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

/// Bytes read from the log at one send at most; the rest waits for the next.
const READ_AT_MOST: u64 = 4 << 20;
/// Lines in one event at most.
const LINES_PER_EVENT: usize = 1000;

/// Where the log is and how much of it was sent.
pub struct Console {
    path: PathBuf,
    offset: u64,
}

impl Console {
    pub fn new(path: PathBuf) -> Console {
        Console { path, offset: 0 }
    }

    /// The whole lines written since the last call, as (level, text) runs; none when the file
    /// is not there (yet).
    pub fn take(&mut self) -> Vec<(&'static str, String)> {
        let Ok(mut file) = std::fs::File::open(&self.path) else {
            return Vec::new();
        };
        if file.seek(SeekFrom::Start(self.offset)).is_err() {
            return Vec::new();
        }
        let mut bytes = Vec::new();
        if file.take(READ_AT_MOST).read_to_end(&mut bytes).is_err() {
            return Vec::new();
        }
        // A line still being written waits for its end.
        let Some(end) = bytes.iter().rposition(|b| *b == b'\n') else {
            return Vec::new();
        };
        self.offset += end as u64 + 1;
        runs(&String::from_utf8_lossy(&bytes[..end]))
    }
}

/// The level a log line states (`<time> - perf - LEVEL: text`), as ClearML names it.
fn level(line: &str) -> Option<&'static str> {
    let (_, rest) = line.split_once(" - perf - ")?;
    let (word, _) = rest.split_once(':')?;
    Some(match word {
        "INFO" => "info",
        "WARNING" => "warning",
        "ERROR" => "error",
        "DEBUG" => "debug",
        _ => return None,
    })
}

/// Consecutive lines of one level joined by newlines; a line without a level takes the one
/// before it (`info` at the start).
pub fn runs(text: &str) -> Vec<(&'static str, String)> {
    let mut out: Vec<(&'static str, String, usize)> = Vec::new();
    for line in text.lines() {
        let lvl = level(line).unwrap_or_else(|| out.last().map_or("info", |r| r.0));
        match out.last_mut() {
            Some((l, msg, n)) if *l == lvl && *n < LINES_PER_EVENT => {
                msg.push('\n');
                msg.push_str(line);
                *n += 1;
            }
            _ => out.push((lvl, line.to_string(), 1)),
        }
    }
    out.into_iter().map(|(l, msg, _)| (l, msg)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_one_level_go_together_and_each_keeps_its_own() {
        let text = "t - perf - INFO: one\nt - perf - INFO: two\n  a table row\nt - perf - WARNING: careful\nt - perf - ERROR: broke\nt - perf - INFO: three";
        assert_eq!(
            runs(text),
            vec![
                (
                    "info",
                    "t - perf - INFO: one\nt - perf - INFO: two\n  a table row".to_string()
                ),
                ("warning", "t - perf - WARNING: careful".to_string()),
                ("error", "t - perf - ERROR: broke".to_string()),
                ("info", "t - perf - INFO: three".to_string()),
            ]
        );
        assert_eq!(
            runs("no level here"),
            vec![("info", "no level here".to_string())]
        );
    }

    #[test]
    fn each_take_has_the_whole_lines_written_since_the_last() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("benchmark.log");
        let mut console = Console::new(path.clone());
        assert!(console.take().is_empty(), "no file yet");
        std::fs::write(&path, "t - perf - INFO: a\nt - perf - INFO: b (half").expect("write");
        assert_eq!(
            console.take(),
            vec![("info", "t - perf - INFO: a".to_string())]
        );
        std::fs::write(
            &path,
            "t - perf - INFO: a\nt - perf - INFO: b (half done)\nt - perf - ERROR: c\n",
        )
        .expect("write");
        assert_eq!(
            console.take(),
            vec![
                ("info", "t - perf - INFO: b (half done)".to_string()),
                ("error", "t - perf - ERROR: c".to_string()),
            ]
        );
        assert!(console.take().is_empty(), "nothing new");
    }
}
