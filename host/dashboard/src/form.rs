//! The form that starts a run: the common flags as fields, any other flag as text, checked by
//! the host's own parser and planner before anything starts.

use std::collections::BTreeMap;
use std::process::Stdio;

use axum::extract::Form;
use axum::response::{IntoResponse, Redirect, Response};

use crate::{nav, render, App, Started, State};

/// The fields, in the form's order: (name, flag, label, default, hint).
pub const FIELDS: [(&str, &str, &str, &str, &str); 12] = [
    (
        "url",
        "--url",
        "URL",
        "",
        "the endpoint, e.g. http://127.0.0.1:8000/v1/chat/completions",
    ),
    (
        "api",
        "--api",
        "API",
        "openai",
        "openai, dashscope, mock, ...",
    ),
    (
        "model",
        "--model",
        "Model",
        "",
        "the model name the server expects",
    ),
    (
        "dataset",
        "--dataset",
        "Dataset",
        "openqa",
        "openqa, random, line_by_line, ...",
    ),
    (
        "prompt",
        "--prompt",
        "Prompt",
        "",
        "one prompt for every request (instead of a dataset)",
    ),
    (
        "parallel",
        "--parallel",
        "Concurrency",
        "1",
        "one value per run, e.g. 1 4 16",
    ),
    (
        "number",
        "--number",
        "Requests",
        "10",
        "one value per run, e.g. 10 40 160",
    ),
    (
        "rate",
        "--rate",
        "Rate (req/s)",
        "",
        "open loop: requests per second per run",
    ),
    (
        "max_tokens",
        "--max-tokens",
        "Max tokens",
        "",
        "output tokens per request",
    ),
    (
        "name",
        "--name",
        "Name",
        "",
        "the benchmark's directory name",
    ),
    (
        "api_key",
        "--api-key",
        "API key",
        "",
        "sent to the server, never shown or stored",
    ),
    (
        "extra",
        "",
        "Other flags",
        "",
        "any other perf flags, e.g. --stream --temperature 0.7",
    ),
];

/// Fields that take a list of values.
const LISTS: [&str; 3] = ["parallel", "number", "rate"];

/// The flags the dashboard sets itself.
const RESERVED: [&str; 3] = [
    "--outputs-dir",
    "--no-timestamp",
    "--enable-progress-tracker",
];

/// `GET /new`.
pub async fn page(axum::extract::State(app): State) -> Response {
    form(&app, &BTreeMap::new(), &[]).into_response()
}

fn form(app: &App, values: &BTreeMap<String, String>, errors: &[String]) -> Response {
    let fields: Vec<minijinja::Value> = FIELDS
        .iter()
        .map(|(name, flag, label, default, hint)| {
            let value = if *name == "api_key" {
                String::new()
            } else {
                values
                    .get(*name)
                    .cloned()
                    .unwrap_or_else(|| default.to_string())
            };
            minijinja::context! {
                name => name, flag => flag, label => label, value => value, hint => hint,
                secret => *name == "api_key",
            }
        })
        .collect();
    render(
        app,
        "new.html",
        minijinja::context! { nav => nav(), fields => fields, errors => errors },
    )
    .into_response()
}

/// The flags of a submitted form.
pub fn argv(values: &BTreeMap<String, String>) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for (name, flag, ..) in FIELDS {
        let Some(v) = values.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()) else {
            continue;
        };
        if name == "extra" {
            let words =
                shlex::split(v).ok_or_else(|| "Other flags: unbalanced quotes".to_string())?;
            if let Some(w) = words.iter().find(|w| {
                RESERVED
                    .iter()
                    .any(|r| w.as_str() == *r || w.starts_with(&format!("{r}=")))
            }) {
                return Err(format!(
                    "Other flags: {w} is set by the dashboard (runs write under its outputs directory)"
                ));
            }
            out.extend(words);
        } else if LISTS.contains(&name) {
            out.push(flag.to_string());
            out.extend(
                v.split([' ', ','])
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
            );
        } else {
            out.push(flag.to_string());
            out.push(v.to_string());
        }
    }
    Ok(out)
}

/// `POST /new`: checks the flags, starts the run, and shows its live view.
pub async fn submit(
    axum::extract::State(app): State,
    Form(values): Form<BTreeMap<String, String>>,
) -> Response {
    let args = match argv(&values) {
        Ok(a) => a,
        Err(e) => return form(&app, &values, &[e]),
    };
    let mut checked = app.config.base_args.clone();
    checked.extend(args.iter().cloned());
    if let Err(e) = (app.config.validate)(&checked) {
        // The key typed into the form is not one this process registered: masked here.
        let e = match values
            .get("api_key")
            .map(|k| k.trim())
            .filter(|k| !k.is_empty())
        {
            Some(key) => e.replace(key, "**********"),
            None => e,
        };
        let lines: Vec<String> = (app.config.redact)(&e)
            .lines()
            .map(str::to_string)
            .collect();
        return form(&app, &values, &lines);
    }
    match start(&app, &args) {
        Ok(key) => Redirect::to(&format!("/live?dir={key}")).into_response(),
        Err(e) => form(&app, &values, &[format!("the run did not start: {e}")]),
    }
}

/// Starts `perf` with `args` in a new `<outputs>/<time>/` directory; returns its name.
fn start(app: &App, args: &[String]) -> std::io::Result<String> {
    let stamp = chrono::Local::now().format("%Y%m%d_%H%M%S").to_string();
    let mut key = stamp.clone();
    let mut n = 1;
    while app.config.outputs.join(&key).exists() {
        n += 1;
        key = format!("{stamp}_{n}");
    }
    let dir = app.config.outputs.join(&key);
    std::fs::create_dir_all(&dir)?;
    let stderr = std::fs::File::create(dir.join("perf-stderr.txt"))?;
    let child = tokio::process::Command::new(&app.config.perf)
        .args(&app.config.base_args)
        .args(args)
        .arg("--outputs-dir")
        .arg(&dir)
        .arg("--no-timestamp")
        .arg("--enable-progress-tracker")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .kill_on_drop(false)
        .spawn()?;
    if let Ok(mut started) = app.started.lock() {
        started.insert(key.clone(), Started { child, exit: None });
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_form_becomes_flags_with_lists_split_and_extras_quoted() {
        let a = argv(&values(&[
            ("url", " http://h/v1 "),
            ("parallel", "1, 4 16"),
            ("model", ""),
            ("extra", "--stream --prompt 'a b'"),
        ]))
        .expect("valid");
        assert_eq!(
            a,
            [
                "--url",
                "http://h/v1",
                "--parallel",
                "1",
                "4",
                "16",
                "--stream",
                "--prompt",
                "a b"
            ]
        );
    }

    #[test]
    fn flags_the_dashboard_sets_are_refused_in_the_extras() {
        let e = argv(&values(&[("extra", "--outputs-dir=/tmp")])).expect_err("reserved");
        assert!(e.contains("--outputs-dir"), "{e}");
        assert!(argv(&values(&[("extra", "'unbalanced")])).is_err());
    }
}
