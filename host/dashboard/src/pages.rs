//! The list of benchmarks, a benchmark's report and the comparison of several.

use std::path::Path;
use std::sync::Arc;

use axum::extract::{Query, RawQuery};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use perf_report::load;
use perf_report::page::Options;

use crate::{nav, render, App, State};

/// The `dir` parameter of a page.
#[derive(Deserialize)]
pub struct DirQuery {
    /// A directory relative to the outputs directory.
    pub dir: String,
}

/// One line of the list.
#[derive(Serialize)]
pub struct Entry {
    /// Relative path (the link).
    pub dir: String,
    /// `--alias`, `--name` or the directory's name.
    pub title: String,
    /// The model, when the arguments say.
    pub model: String,
    /// Runs with a summary.
    pub runs: usize,
    /// Requests over those runs.
    pub requests: u64,
    /// The best request rate, formatted.
    pub best_rps: String,
    /// `running`, `completed`, `error` or `finished` (no progress file).
    pub status: String,
    /// When it was last written.
    pub modified: String,
}

fn entry(app: &App, dir: &Path) -> Entry {
    let rel = app.relative(dir);
    let progress = load::read_json(&dir.join("progress.json")).ok();
    let status = progress
        .as_ref()
        .and_then(|p| p.get("status").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| "finished".into());
    let modified = std::fs::metadata(dir)
        .and_then(|m| m.modified())
        .map(|t| {
            chrono::DateTime::<chrono::Local>::from(t)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_default();
    match load::benchmark(dir) {
        Ok(b) => {
            let best = b
                .runs
                .iter()
                .filter_map(|r| r.num("Req Throughput (req/s)"))
                .fold(f64::NAN, f64::max);
            Entry {
                dir: rel,
                title: b.title(),
                model: b.arg("model").unwrap_or_default(),
                runs: b.runs.len(),
                requests: b
                    .runs
                    .iter()
                    .filter_map(|r| r.num("Total Requests"))
                    .sum::<f64>() as u64,
                best_rps: if best.is_finite() {
                    perf_report::observe::fmt(Some(best))
                } else {
                    String::new()
                },
                status,
                modified,
            }
        }
        Err(_) => Entry {
            title: load::dir_name(dir),
            dir: rel,
            model: String::new(),
            runs: 0,
            requests: 0,
            best_rps: String::new(),
            status,
            modified,
        },
    }
}

fn entries(app: &App) -> Vec<Entry> {
    load::benchmarks_under(&app.config.outputs)
        .iter()
        .map(|d| entry(app, d))
        .collect()
}

/// `/`: every benchmark under the outputs directory, newest first.
pub async fn index(axum::extract::State(app): State) -> Html<String> {
    let list = tokio::task::spawn_blocking({
        let app = Arc::clone(&app);
        move || entries(&app)
    })
    .await
    .unwrap_or_default();
    render(
        &app,
        "index.html",
        minijinja::context! {
            nav => nav(),
            outputs => app.config.outputs.display().to_string(),
            entries => list,
        },
    )
}

/// `/api/runs`: the same list as JSON.
pub async fn runs_json(axum::extract::State(app): State) -> Json<Vec<Entry>> {
    let app2 = Arc::clone(&app);
    Json(
        tokio::task::spawn_blocking(move || entries(&app2))
            .await
            .unwrap_or_default(),
    )
}

/// A page that says what went wrong.
pub fn message(app: &App, status: StatusCode, title: &str, text: &str) -> Response {
    (
        status,
        render(
            app,
            "message.html",
            minijinja::context! { nav => nav(), title => title, text => text },
        ),
    )
        .into_response()
}

fn options() -> Options {
    Options {
        generated: chrono::Local::now().format("%Y-%m-%d %H:%M:%S").to_string(),
        nav: Some(nav()),
    }
}

/// `/report?dir=`: the benchmark's report, made from its files now.
pub async fn report(axum::extract::State(app): State, Query(q): Query<DirQuery>) -> Response {
    let Some(dir) = app.benchmark_dir(&q.dir) else {
        return message(&app, StatusCode::NOT_FOUND, "No such benchmark", &q.dir);
    };
    let made = tokio::task::spawn_blocking(move || {
        let b = load::benchmark(&dir).map_err(|e| e.to_string())?;
        perf_report::page::render(&b, &options()).map_err(|e| e.to_string())
    })
    .await;
    match made {
        Ok(Ok(html)) => Html((app.config.redact)(&html)).into_response(),
        Ok(Err(e)) => message(&app, StatusCode::UNPROCESSABLE_ENTITY, "No report", &e),
        Err(e) => message(
            &app,
            StatusCode::INTERNAL_SERVER_ERROR,
            "No report",
            &e.to_string(),
        ),
    }
}

/// `/compare?dir=A&dir=B...`: the comparison of the chosen benchmarks, the earliest written
/// the baseline.
pub async fn compare(axum::extract::State(app): State, RawQuery(q): RawQuery) -> Response {
    let rels: Vec<String> = form_urlencoded::parse(q.unwrap_or_default().as_bytes())
        .filter(|(k, _)| k == "dir")
        .map(|(_, v)| v.into_owned())
        .collect();
    if rels.len() < 2 {
        return message(
            &app,
            StatusCode::BAD_REQUEST,
            "Choose two benchmarks or more",
            "Tick at least two benchmarks in the list, then Compare.",
        );
    }
    let mut dirs = Vec::new();
    for rel in &rels {
        match app.benchmark_dir(rel) {
            Some(d) => dirs.push(d),
            None => return message(&app, StatusCode::NOT_FOUND, "No such benchmark", rel),
        }
    }
    // The list shows the newest first; the baseline is the earliest benchmark ticked.
    dirs.sort_by_key(|d| std::fs::metadata(d).and_then(|m| m.modified()).ok());
    let made = tokio::task::spawn_blocking(move || {
        let c = perf_report::compare::compare(&dirs).map_err(|e| e.to_string())?;
        c.html(&options()).map_err(|e| e.to_string())
    })
    .await;
    match made {
        Ok(Ok(html)) => Html((app.config.redact)(&html)).into_response(),
        Ok(Err(e)) => message(&app, StatusCode::UNPROCESSABLE_ENTITY, "No comparison", &e),
        Err(e) => message(
            &app,
            StatusCode::INTERNAL_SERVER_ERROR,
            "No comparison",
            &e.to_string(),
        ),
    }
}

/// The lines of `benchmark.log` the log page shows, from its end.
const LOG_LINES: usize = 500;

/// `/log?dir=`: the end of the benchmark's `benchmark.log`, redacted.
pub async fn log(axum::extract::State(app): State, Query(q): Query<DirQuery>) -> Response {
    let Some(dir) = app.benchmark_dir(&q.dir) else {
        return message(&app, StatusCode::NOT_FOUND, "No such benchmark", &q.dir);
    };
    let text = std::fs::read_to_string(dir.join("benchmark.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(LOG_LINES)..].join("\n");
    render(
        &app,
        "log.html",
        minijinja::context! { nav => nav(), dir => q.dir, log => tail, lines => LOG_LINES },
    )
    .into_response()
}
