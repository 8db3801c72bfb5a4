//! `progress.json` (`--enable-progress-tracker`), as evalscope 1.14.1 writes it: `status`
//! (`running`, then `completed` or `error`), `pipeline` (`perf`), `total_count` (the measured
//! requests of the whole sweep), `processed_count`, `percent` (2 decimals) and `updated_at`
//! (local time, ISO 8601), replaced atomically at most once a second while requests finish
//! and at once when the status changes. perf adds, after evalscope's keys, what a live view
//! needs: the run in progress, failures so far, requests in flight and the recent rate.
//!
//! An interrupted run ends `error` as evalscope's does, with `"reason": "interrupted"`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::json;

/// The least time between two writes of a running status.
const WRITE_EVERY: Duration = Duration::from_secs(1);

struct State {
    status: &'static str,
    reason: Option<&'static str>,
    processed: u64,
    failed: u64,
    in_flight: i64,
    rate: f64,
    run: String,
    last_write: Option<Instant>,
}

/// The tracker of one invocation.
pub struct ProgressTracker {
    path: PathBuf,
    total: u64,
    state: Mutex<State>,
}

impl ProgressTracker {
    /// Starts tracking `total` measured requests; writes the first state at once.
    pub fn start(dir: &Path, total: u64) -> anyhow::Result<ProgressTracker> {
        let t = ProgressTracker {
            path: dir.join("progress.json"),
            total: total.max(1),
            state: Mutex::new(State {
                status: "running",
                reason: None,
                processed: 0,
                failed: 0,
                in_flight: 0,
                rate: 0.0,
                run: String::new(),
                last_write: None,
            }),
        };
        t.write(true)?;
        Ok(t)
    }

    /// A new run of the sweep starts.
    pub fn run_started(&self, label: &str) {
        if let Ok(mut s) = self.state.lock() {
            s.run = label.to_string();
        }
        let _ = self.write(true);
    }

    /// `done` more measured requests finished, `failed` of them failed; `in_flight` and the
    /// recent `rate` describe the run now. Writes when the last write is a second old.
    pub fn update(&self, done: u64, failed: u64, in_flight: i64, rate: f64) {
        if let Ok(mut s) = self.state.lock() {
            s.processed += done;
            s.failed += failed;
            s.in_flight = in_flight;
            s.rate = rate;
        }
        let _ = self.write(false);
    }

    /// The sweep ended: `completed`, or `error` with a reason.
    pub fn finish(&self, error: Option<&'static str>) {
        if let Ok(mut s) = self.state.lock() {
            s.status = if error.is_some() {
                "error"
            } else {
                "completed"
            };
            s.reason = error;
            s.in_flight = 0;
        }
        if let Err(e) = self.write(true) {
            crate::output::log::warn(format!("cannot write progress.json: {e:#}"));
        }
    }

    fn write(&self, force: bool) -> anyhow::Result<()> {
        let Ok(mut s) = self.state.lock() else {
            return Ok(());
        };
        if !force && s.last_write.is_some_and(|t| t.elapsed() < WRITE_EVERY) {
            return Ok(());
        }
        s.last_write = Some(Instant::now());
        let percent = (s.processed as f64 / self.total as f64 * 10_000.0).round() / 100.0;
        let mut state = json!({
            "status": s.status,
            "pipeline": "perf",
            "total_count": self.total,
            "processed_count": s.processed,
            "percent": percent,
            "updated_at": chrono::Local::now().format("%Y-%m-%dT%H:%M:%S%.6f").to_string(),
            "current_run": s.run,
            "failed_count": s.failed,
            "in_flight": s.in_flight,
            "requests_per_s": (s.rate * 100.0).round() / 100.0,
        });
        if let (Some(reason), Some(map)) = (s.reason, state.as_object_mut()) {
            map.insert("reason".into(), json!(reason));
        }
        let mut text = serde_json::to_vec_pretty(&state)?;
        text.push(b'\n');
        crate::output::write_atomically(&self.path, &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(dir: &Path) -> serde_json::Value {
        let text = std::fs::read_to_string(dir.join("progress.json")).expect("written");
        serde_json::from_str(&text).expect("json")
    }

    #[test]
    fn progress_is_written_at_start_throttled_while_running_and_final_at_the_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = ProgressTracker::start(dir.path(), 8).expect("starts");
        let v = read(dir.path());
        let keys: Vec<&str> = v
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys[..6],
            [
                "status",
                "pipeline",
                "total_count",
                "processed_count",
                "percent",
                "updated_at"
            ]
        );
        assert_eq!(v["status"], "running");
        assert_eq!(v["processed_count"], 0);
        t.run_started("parallel_1_number_8");
        t.update(3, 1, 2, 10.0);
        // Within a second of the last write: not written yet.
        assert_eq!(read(dir.path())["processed_count"], 0);
        t.finish(None);
        let v = read(dir.path());
        assert_eq!(v["status"], "completed");
        assert_eq!(v["processed_count"], 3);
        assert_eq!(v["percent"], 37.5);
        assert_eq!(v["failed_count"], 1);
        assert_eq!(v["current_run"], "parallel_1_number_8");
        t.finish(Some("interrupted"));
        let v = read(dir.path());
        assert_eq!(
            (v["status"].as_str(), v["reason"].as_str()),
            (Some("error"), Some("interrupted"))
        );
    }
}
