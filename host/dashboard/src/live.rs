//! The live view of a running benchmark: what the engine publishes, read on a blocking
//! thread once a second: `progress.json` (progress, failures, in flight, rate) and the
//! current run's `benchmark_data.db` as committed (the latest requests' TTFT and latency).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use serde::Serialize;
use serde_json::Value;

use perf_report::charts::{Chart, Series, Style};
use perf_report::{load, samples};

use crate::pages::{message, DirQuery};
use crate::{nav, render, App, State};

/// Requests of the current run the live chart shows.
const TAIL: usize = 2000;

/// The live state of a benchmark.
#[derive(Serialize, Default)]
pub struct Live {
    /// `starting`, `running`, `completed`, `error`, `exited` (a run started here that
    /// ended before it wrote its progress) or `finished` (a run without a progress file whose
    /// database is no longer written).
    pub status: String,
    /// The run of the sweep in progress.
    pub current_run: String,
    /// Measured requests done, of `total`.
    pub processed: u64,
    /// Measured requests of the whole sweep.
    pub total: u64,
    /// Percent done.
    pub percent: f64,
    /// Failed so far.
    pub failed: u64,
    /// Requests in flight.
    pub in_flight: i64,
    /// Recent completions per second.
    pub rate: f64,
    /// When the engine last wrote its progress.
    pub updated_at: String,
    /// Rows committed to the current run's database.
    pub stored: u64,
    /// Mean TTFT of the latest successful requests, ms.
    pub recent_ttft_ms: Option<f64>,
    /// Mean latency of the latest successful requests, s.
    pub recent_latency_s: Option<f64>,
    /// The latest requests' TTFT against send time (an SVG figure).
    pub chart: String,
    /// A run started here: its exit code once it ended.
    pub exit: Option<i32>,
    /// A run started here: the end of what it printed on stderr.
    pub stderr: String,
    /// Whether the page may offer to stop it (started here, still running).
    pub can_stop: bool,
    /// The report's link, once there is something to report.
    pub report: Option<String>,
}

/// `/live?dir=`.
pub async fn page(axum::extract::State(app): State, Query(q): Query<DirQuery>) -> Response {
    if app.resolve(&q.dir).is_none() {
        return message(&app, StatusCode::NOT_FOUND, "No such benchmark", &q.dir);
    }
    render(
        &app,
        "live.html",
        minijinja::context! { nav => nav(), dir => q.dir },
    )
    .into_response()
}

/// `/api/live?dir=`: the state now, as JSON.
pub async fn api(axum::extract::State(app): State, Query(q): Query<DirQuery>) -> Response {
    let a = Arc::clone(&app);
    match tokio::task::spawn_blocking(move || state(&a, &q.dir)).await {
        Ok(Some(live)) => Json(live).into_response(),
        Ok(None) => (StatusCode::NOT_FOUND, "no such benchmark").into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// The key of a run started here: the first component of its directory.
fn started_key(rel: &str) -> &str {
    rel.split('/').next().unwrap_or(rel)
}

fn state(app: &App, rel: &str) -> Option<Live> {
    let top = app.resolve(started_key(rel))?;
    let dir = app.benchmark_dir(rel)?;
    let mut live = Live {
        status: "starting".into(),
        ..Live::default()
    };
    let progress = load::read_json(&dir.join("progress.json")).ok();
    if let Some(p) = &progress {
        let n = |k: &str| p.get(k).and_then(Value::as_f64).unwrap_or(0.0);
        let s = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        live.status = s("status");
        live.current_run = s("current_run");
        live.processed = n("processed_count") as u64;
        live.total = n("total_count") as u64;
        live.percent = n("percent");
        live.failed = n("failed_count") as u64;
        live.in_flight = n("in_flight") as i64;
        live.rate = n("requests_per_s");
        live.updated_at = s("updated_at");
    }
    if let Some(db) = current_db(&dir, &live.current_run) {
        read_db(&db, &mut live);
    }
    if let Some(exit) = app.exit_of(started_key(rel)) {
        live.exit = exit;
        live.can_stop = exit.is_none() && live.status != "completed";
        if exit.is_some() && progress.is_none() {
            live.status = "exited".into();
        }
        let text = std::fs::read_to_string(top.join("perf-stderr.txt")).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        live.stderr = (app.config.redact)(&tail.join("\n"));
    }
    if load::benchmark(&dir).is_ok() {
        live.report = Some(format!("/report?dir={}", encode(&app.relative(&dir))));
    }
    if progress.is_none() && live.exit.is_none() && !live.can_stop {
        // A run started without --enable-progress-tracker: running while its database is
        // being written.
        let recent = current_db(&dir, "")
            .and_then(|db| {
                std::fs::metadata(db.with_extension("db-wal"))
                    .or_else(|_| std::fs::metadata(&db))
                    .ok()
            })
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age.as_secs() < 5);
        live.status = if recent {
            "running".into()
        } else if live.report.is_some() {
            "finished".into()
        } else {
            "starting".into()
        };
    }
    Some(live)
}

fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The current run's database: the run `progress.json` names, else the newest one.
fn current_db(dir: &Path, run: &str) -> Option<PathBuf> {
    if !run.is_empty() {
        let db = dir.join(run).join("benchmark_data.db");
        if db.is_file() {
            return Some(db);
        }
    }
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path().join("benchmark_data.db"))
        .filter(|db| db.is_file())
        .max_by_key(|db| std::fs::metadata(db).and_then(|m| m.modified()).ok())
}

fn read_db(db: &Path, live: &mut Live) {
    let Ok((s, counts)) = samples::read_tail(db, TAIL) else {
        return;
    };
    live.stored = counts.stored;
    let mean = |v: &[Option<f64>]| {
        let xs: Vec<f64> = v.iter().rev().take(200).flatten().copied().collect();
        (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
    };
    live.recent_ttft_ms = mean(&s.ttft_ms);
    live.recent_latency_s = mean(&s.latency_s);
    let chart = Chart {
        id: "live-ttft".into(),
        title: format!("TTFT of the latest {} requests", s.len()),
        x_label: "send time (s from the run's start)".into(),
        y_label: "ms".into(),
        style: Style::Scatter,
        x_ticks: None,
        series: vec![Series {
            name: "TTFT".into(),
            points: s.over_time(&s.ttft_ms),
        }],
        note: None,
    };
    let f = chart.figure();
    live.chart = format!(
        "<figure class=\"chart\" id=\"live-ttft\" data-points=\"{}\"><figcaption>{}</figcaption>{}</figure>",
        f.points, f.title, f.svg
    );
}

/// `POST /stop?dir=`: interrupts a run started here (as Ctrl-C would: it writes what it
/// measured).
pub async fn stop(axum::extract::State(app): State, Query(q): Query<DirQuery>) -> Response {
    let key = started_key(&q.dir).to_string();
    let pid = app
        .started
        .lock()
        .ok()
        .and_then(|s| s.get(&key).and_then(|r| r.child.id()));
    match pid {
        Some(pid) => {
            // SAFETY: kill(2) with a pid this process started and has not reaped.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGINT);
            }
            Redirect::to(&format!("/live?dir={}", encode(&q.dir))).into_response()
        }
        None => message(
            &app,
            StatusCode::NOT_FOUND,
            "Not running",
            "Only a run started from this dashboard that is still running can be stopped here.",
        ),
    }
}
