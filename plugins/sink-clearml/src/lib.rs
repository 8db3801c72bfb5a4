//! `clearml`: the benchmark as a ClearML task, sent the way the official `clearml` client (2.1)
//! sends what evalscope's `--visualizer clearml` asks of it (checked against the client pointed
//! at a capturing server, `tests/e2e/visualizers.rs`):
//!
//! 1. `GET /auth.login` with the access and secret key as HTTP Basic credentials: checks them
//!    before any traffic; the answer's token goes with every later call as a Bearer token;
//! 2. `projects.get_all` by exact name (`projects.create` when there is none): project
//!    `perf_benchmark` or `CLEARML_PROJECT_NAME`;
//! 3. `tasks.create` (type `testing`, named `--name`), `tasks.started`;
//! 4. `tasks.edit` with the invocation's arguments (secrets masked by the host) as the
//!    `General` hyperparameters, formatted as the client formats a connected dictionary;
//! 5. `events.add_batch` (JSON lines of `training_stats_scalar` events): the running summary,
//!    every key a series of the "Performance Metrics" scalar plot, one iteration per snapshot,
//!    at most every two seconds; each run ends on an iteration with its final summary and
//!    P50/P90/P99 rows;
//! 6. `tasks.completed`.
//!
//! Calls go to `<host>/v2.23/<service>.<action>` with a JSON body, by `GET` as the client sends
//! them (`CLEARML_API_DEFAULT_REQ_METHOD=POST` switches, as it does for the client). The host
//! comes from `CLEARML_API_HOST` (default `https://api.clear.ml`), the keys from
//! `CLEARML_API_ACCESS_KEY` and `CLEARML_API_SECRET_KEY`; the results page is named with
//! `CLEARML_WEB_HOST`. Options (JSON) override each: `host`, `web_host`, `access_key`,
//! `secret_key`, `project`.

use std::time::Duration;

use base64::Engine as _;
use perf_plugin_api::sdk::{ResultSinkPlugin, SinkConfig};
use perf_plugin_api::{PluginError, RequestRecord, RunSnapshot, RunSummary, SessionInfo};
use perf_sink_common::{
    args, env, epoch_now, final_metrics, host_name, metrics_object, snippet, Http, Throttle,
};
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// The API version of the calls, the one the official client 2.1 uses.
const API_VERSION: &str = "2.23";
/// How often buffered scalars go out.
const SEND_EVERY: Duration = Duration::from_secs(2);
/// Events per `events.add_batch` call at most.
const BATCH: usize = 500;
/// The plot the running summary goes to, as evalscope names it.
const TITLE: &str = "Performance Metrics";

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Options {
    host: Option<String>,
    web_host: Option<String>,
    access_key: Option<String>,
    secret_key: Option<String>,
    project: Option<String>,
}

/// The clearml sink.
pub struct ClearmlSink {
    http: Http,
    api: String,
    web: String,
    method: &'static str,
    token: String,
    worker: String,
    project: String,
    task: Option<String>,
    events: Vec<String>,
    iteration: u64,
    send: Throttle,
}

/// `CLEARML_API_HOST`-style base, without a trailing slash.
fn base(url: &str) -> String {
    url.trim_end_matches('/').to_string()
}

/// The web app's address: the option, `CLEARML_WEB_HOST`, else the API host with `api.` made
/// `app.` (as the hosted service and the default deployment name them).
fn web_host(option: Option<String>, api: &str) -> String {
    option
        .or_else(|| env("CLEARML_WEB_HOST"))
        .map(|w| base(&w))
        .unwrap_or_else(|| {
            api.replacen("://api.", "://app.", 1)
                .replace(":8008", ":8080")
        })
}

/// A float as Python's `repr` writes it (`0.0`, `0.9`, `1e-05`).
fn py_float(v: f64) -> String {
    if !v.is_finite() {
        return if v.is_nan() {
            "nan".into()
        } else if v > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        };
    }
    let a = v.abs();
    if a != 0.0 && !(1e-4..1e16).contains(&a) {
        let s = format!("{v:e}");
        let (mantissa, exponent) = s.split_once('e').unwrap_or((&s, "0"));
        let (sign, digits) = match exponent.strip_prefix('-') {
            Some(d) => ("-", d),
            None => ("+", exponent),
        };
        return format!("{mantissa}e{sign}{digits:0>2}");
    }
    if v.fract() == 0.0 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

/// JSON as Python's `json.dumps` writes it (`", "` and `": "` separators, floats by `repr`).
fn py_json(v: &Value) -> String {
    match v {
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(py_json).collect();
            format!("[{}]", parts.join(", "))
        }
        Value::Object(m) => {
            let parts: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}: {}", Value::String(k.clone()), py_json(v)))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
        Value::Number(n) if n.is_f64() => py_float(n.as_f64().unwrap_or(0.0)),
        other => other.to_string(),
    }
}

/// The type name the client gives a value (`None` for null, which it sends without one).
fn type_name(v: &Value) -> Option<String> {
    let scalar = |v: &Value| match v {
        Value::Bool(_) => Some("bool"),
        Value::Number(n) if n.is_f64() => Some("float"),
        Value::Number(_) => Some("int"),
        Value::String(_) => Some("str"),
        _ => None,
    };
    match v {
        Value::Null => None,
        Value::Array(items) => {
            let first = items.first().and_then(scalar);
            let same = first.is_some() && items.iter().all(|i| scalar(i) == first);
            Some(match (same, first) {
                (true, Some(t)) => format!("list/{t}"),
                _ => "list".into(),
            })
        }
        Value::Object(_) => Some("dict".into()),
        other => scalar(other).map(str::to_string),
    }
}

/// The text of a value, as the client writes it.
fn py_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_f64() => py_float(n.as_f64().unwrap_or(0.0)),
        other => py_json(other),
    }
}

/// `task.connect(dict)`'s hyperparameters: a `General` section, nested objects flattened with
/// `/`, each entry `{section, name, value, type, description}`.
pub fn hyperparams(args: Map<String, Value>) -> Value {
    fn add(out: &mut Map<String, Value>, prefix: &str, value: &Value) {
        match value {
            Value::Object(m) if !m.is_empty() => {
                for (k, v) in m {
                    add(out, &format!("{prefix}/{k}"), v);
                }
            }
            _ => {
                let mut entry = Map::new();
                entry.insert("section".into(), json!("General"));
                entry.insert("name".into(), json!(prefix));
                entry.insert("value".into(), json!(py_text(value)));
                if let Some(t) = type_name(value) {
                    entry.insert("type".into(), json!(t));
                }
                entry.insert("description".into(), json!(""));
                out.insert(prefix.to_string(), Value::Object(entry));
            }
        }
    }
    let mut general = Map::new();
    for (k, v) in &args {
        add(&mut general, k, v);
    }
    json!({ "General": general })
}

/// The `data` of an answer, or an error naming the call, the status and ClearML's message.
pub fn data(call: &str, status: u16, body: &str) -> Result<Value, PluginError> {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let code = v["meta"]["result_code"]
        .as_u64()
        .unwrap_or(u64::from(status));
    if (200..300).contains(&status) && (200..300).contains(&code) {
        return Ok(v["data"].clone());
    }
    let message = v["meta"]["result_msg"]
        .as_str()
        .map_or_else(|| snippet(body), str::to_string);
    Err(PluginError::io(format!(
        "clearml: {call} answered HTTP {status}: {message}"
    )))
}

impl ClearmlSink {
    /// Calls `<service>.<action>` with `body`; returns the answer's `data`.
    fn call(&self, action: &str, body: &Value) -> Result<Value, PluginError> {
        let url = format!("{}/v{API_VERSION}/{action}", self.api);
        let bearer = format!("Bearer {}", self.token);
        let bytes = body.to_string();
        let headers = [
            ("authorization", bearer.as_str()),
            ("content-type", "application/json"),
            ("x-clearml-worker", self.worker.as_str()),
            (
                "x-clearml-client",
                concat!("perf-", env!("CARGO_PKG_VERSION")),
            ),
        ];
        match self
            .http
            .send(self.method, &url, &headers, Some(bytes.as_bytes()))
        {
            Ok(a) => data(action, a.status, &a.body),
            Err(e) => Err(PluginError::io(format!(
                "clearml: {action} at {url} got no answer: {}",
                e.0
            ))),
        }
    }

    /// The project's id, the project created when there is none.
    fn project_id(&self) -> Result<String, PluginError> {
        let pattern = format!("^{}$", regex_escape(&self.project));
        let found = self.call(
            "projects.get_all",
            &json!({"name": pattern, "only_fields": ["id"], "shallow_search": false, "search_hidden": true}),
        )?;
        if let Some(id) = found["projects"][0]["id"].as_str() {
            return Ok(id.to_string());
        }
        let created = self.call(
            "projects.create",
            &json!({"name": self.project, "description": ""}),
        )?;
        created["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| PluginError::io("clearml: projects.create answered without an id"))
    }

    /// One iteration of scalars.
    fn log(&mut self, metrics: Map<String, Value>) {
        let Some(task) = &self.task else { return };
        let timestamp = (epoch_now() * 1000.0) as u64;
        for (variant, value) in metrics {
            let Some(v) = value.as_f64().filter(|v| v.is_finite()) else {
                continue;
            };
            self.events.push(
                json!({
                    "timestamp": timestamp, "type": "training_stats_scalar", "task": task,
                    "iter": self.iteration, "metric": TITLE, "variant": variant, "value": v,
                    "allow_locked": false, "model_event": false,
                })
                .to_string(),
            );
        }
        self.iteration += 1;
    }

    /// Sends the buffered events, as JSON lines.
    fn send_events(&mut self) -> Result<(), PluginError> {
        while !self.events.is_empty() {
            let n = self.events.len().min(BATCH);
            let body = self.events[..n].join("\n");
            let url = format!("{}/v{API_VERSION}/events.add_batch", self.api);
            let bearer = format!("Bearer {}", self.token);
            let headers = [
                ("authorization", bearer.as_str()),
                ("content-type", "application/json-lines"),
                ("x-clearml-worker", self.worker.as_str()),
                (
                    "x-clearml-client",
                    concat!("perf-", env!("CARGO_PKG_VERSION")),
                ),
            ];
            let answer = self
                .http
                .send(self.method, &url, &headers, Some(body.as_bytes()))
                .map_err(|e| {
                    PluginError::io(format!("clearml: events.add_batch got no answer: {}", e.0))
                })?;
            // The events are dropped either way: a server that refuses them refuses them again.
            self.events.drain(..n);
            data("events.add_batch", answer.status, &answer.body)?;
        }
        Ok(())
    }
}

/// `text` with the characters a regular expression gives a meaning escaped.
fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if r"\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl ResultSinkPlugin for ClearmlSink {
    const ID: &'static str = "clearml";
    const DESCRIPTION: &'static str =
        "a ClearML task: running summary as scalars, the arguments as hyperparameters (CLEARML_API_HOST, CLEARML_API_ACCESS_KEY, CLEARML_API_SECRET_KEY)";
    const OPTION_KEYS: Option<&'static [&'static str]> =
        Some(&["host", "web_host", "access_key", "secret_key", "project"]);
    const OPTIONS_EXAMPLE: &'static str =
        r#"{"host": "https://api.clear.ml", "project": "perf_benchmark"}"#;

    fn new(config: &SinkConfig) -> Result<Self, PluginError> {
        let options: Options = config.options()?;
        let api = base(
            &options
                .host
                .or_else(|| env("CLEARML_API_HOST"))
                .unwrap_or_else(|| "https://api.clear.ml".into()),
        );
        let key = options.access_key.or_else(|| env("CLEARML_API_ACCESS_KEY"));
        let secret = options.secret_key.or_else(|| env("CLEARML_API_SECRET_KEY"));
        let (Some(key), Some(secret)) = (key, secret) else {
            return Err(PluginError::config(
                "clearml: no credentials: set CLEARML_API_ACCESS_KEY and CLEARML_API_SECRET_KEY (a key pair from the ClearML web app's Settings > Workspace; perf does not read clearml.conf)",
            ));
        };
        let method = match env("CLEARML_API_DEFAULT_REQ_METHOD")
            .map(|m| m.to_ascii_uppercase())
            .as_deref()
        {
            None | Some("GET") => "GET",
            Some("POST") => "POST",
            Some(other) => {
                return Err(PluginError::config(format!(
                    "clearml: CLEARML_API_DEFAULT_REQ_METHOD={other} is not GET or POST"
                )))
            }
        };
        let http = Http::new("clearml");
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{key}:{secret}"))
        );
        let worker = host_name();
        let url = format!("{api}/auth.login");
        // Fail before any traffic when the keys or the host are wrong.
        let answer = http
            .send(
                "GET",
                &url,
                &[
                    ("authorization", basic.as_str()),
                    ("x-clearml-worker", worker.as_str()),
                    (
                        "x-clearml-client",
                        concat!("perf-", env!("CARGO_PKG_VERSION")),
                    ),
                ],
                None,
            )
            .map_err(|e| {
                PluginError::config(format!(
                    "clearml: {url} cannot be reached ({}); check CLEARML_API_HOST",
                    e.0
                ))
            })?;
        if answer.status == 401 || answer.status == 403 {
            return Err(PluginError::config(format!(
                "clearml: {url} rejected the credentials (HTTP {}); check CLEARML_API_ACCESS_KEY and CLEARML_API_SECRET_KEY",
                answer.status
            )));
        }
        let login = data("auth.login", answer.status, &answer.body)
            .map_err(|e| PluginError::config(e.message.to_string()))?;
        let token = login["token"].as_str().ok_or_else(|| {
            PluginError::config(format!("clearml: {url} answered without a token"))
        })?;
        Ok(ClearmlSink {
            http,
            web: web_host(options.web_host, &api),
            api,
            method,
            token: token.to_string(),
            worker,
            project: options
                .project
                .or_else(|| env("CLEARML_PROJECT_NAME"))
                .unwrap_or_else(|| "perf_benchmark".into()),
            task: None,
            events: Vec::new(),
            iteration: 0,
            send: Throttle::new(SEND_EVERY),
        })
    }

    fn begin(&mut self, session: &SessionInfo) -> Result<(), PluginError> {
        let project = self.project_id()?;
        let created = self.call(
            "tasks.create",
            &json!({
                "name": session.name.as_str(),
                "system_tags": ["development"],
                "type": "testing",
                "comment": format!("Created by perf {} on {}", env!("CARGO_PKG_VERSION"), self.worker),
                "project": project,
            }),
        )?;
        let task = created["id"]
            .as_str()
            .ok_or_else(|| PluginError::io("clearml: tasks.create answered without an id"))?
            .to_string();
        self.call("tasks.started", &json!({"force": false, "task": task}))?;
        self.call(
            "tasks.edit",
            &json!({
                "task": task, "force": true,
                "hyperparams": hyperparams(args(session.args_json.as_str())),
            }),
        )?;
        eprintln!(
            "ClearML results page: {}/projects/{project}/experiments/{task}/output/log",
            self.web
        );
        self.task = Some(task);
        Ok(())
    }

    fn record(&mut self, _record: &RequestRecord) -> Result<(), PluginError> {
        Ok(())
    }

    fn snapshot(&mut self, snapshot: &RunSnapshot) -> Result<(), PluginError> {
        self.log(metrics_object(&snapshot.metrics));
        if self.send.ready() {
            self.send_events()?;
        }
        Ok(())
    }

    fn run_end(&mut self, summary: &RunSummary) -> Result<(), PluginError> {
        self.log(final_metrics(summary));
        self.send_events()
    }

    fn close(&mut self) -> Result<(), PluginError> {
        self.send_events()?;
        let Some(task) = self.task.take() else {
            return Ok(());
        };
        self.call(
            "tasks.completed",
            &json!({"force": false, "task": task, "status_reason": "completed", "publish": false}),
        )
        .map(|_| ())
    }
}

perf_plugin_api::builtin_plugins! {
    ResultSink: ClearmlSink,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_written_as_the_official_client_writes_a_connected_dictionary() {
        let args = json!({
            "parallel": [1, 2], "model": "m", "rate": -1, "stream": true, "api_key": null,
            "temperature": 0.0, "headers": {"a": "b"}, "stop": ["x", "y"], "top_p": 0.9,
            "empty": [], "mixed": [1, "a"], "tiny": 0.00001,
        });
        let Value::Object(args) = args else {
            unreachable!()
        };
        let h = hyperparams(args);
        let g = &h["General"];
        let entry = |k: &str| (g[k]["value"].clone(), g[k]["type"].clone());
        assert_eq!(entry("parallel"), (json!("[1, 2]"), json!("list/int")));
        assert_eq!(entry("model"), (json!("m"), json!("str")));
        assert_eq!(entry("rate"), (json!("-1"), json!("int")));
        assert_eq!(entry("stream"), (json!("True"), json!("bool")));
        assert_eq!(entry("api_key"), (json!(""), Value::Null));
        assert_eq!(entry("temperature"), (json!("0.0"), json!("float")));
        assert_eq!(entry("headers/a"), (json!("b"), json!("str")));
        assert_eq!(entry("stop"), (json!(r#"["x", "y"]"#), json!("list/str")));
        assert_eq!(entry("top_p"), (json!("0.9"), json!("float")));
        assert_eq!(entry("empty"), (json!("[]"), json!("list")));
        assert_eq!(entry("mixed"), (json!(r#"[1, "a"]"#), json!("list")));
        assert_eq!(entry("tiny"), (json!("1e-05"), json!("float")));
        assert_eq!(g["model"]["section"], "General");
        assert_eq!(g["model"]["name"], "model");
        assert_eq!(g["model"]["description"], "");
        assert!(g["api_key"].get("type").is_none());
    }

    #[test]
    fn errors_carry_clearmls_message_and_project_names_are_matched_exactly() {
        let body =
            r#"{"meta": {"result_code": 400, "result_msg": "Invalid project id"}, "data": {}}"#;
        let err = data("tasks.create", 400, body).expect_err("refused");
        assert!(
            err.message.contains("Invalid project id"),
            "{}",
            err.message
        );
        assert_eq!(
            data(
                "x",
                200,
                r#"{"meta": {"result_code": 200}, "data": {"id": "t"}}"#
            )
            .expect("ok")["id"],
            "t"
        );
        assert_eq!(regex_escape("perf.bench (1)"), r"perf\.bench \(1\)");
        assert_eq!(
            web_host(None, "https://api.clear.ml"),
            "https://app.clear.ml"
        );
        assert_eq!(web_host(None, "http://clearml:8008"), "http://clearml:8080");
    }
}
