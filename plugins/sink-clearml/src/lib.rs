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
//!    P50/P90/P99 rows; with them, the load generator's CPU, memory and network under
//!    `:monitor:machine` (`machine.rs`), as the client's resource monitor reports them;
//! 6. `log` events (`console.rs`): the lines perf prints, from `benchmark.log`, in batches of
//!    their own at each send, the last after the final report;
//! 7. `tasks.completed`.
//!
//! Calls go to `<host>/v2.23/<service>.<action>` with a JSON body, by `GET` as the client sends
//! them (`CLEARML_API_DEFAULT_REQ_METHOD=POST` switches, as it does for the client). The host
//! comes from `CLEARML_API_HOST` (default `https://api.clear.ml`), the keys from
//! `CLEARML_API_ACCESS_KEY` and `CLEARML_API_SECRET_KEY`, the results page's host from
//! `CLEARML_WEB_HOST`, each else from `clearml.conf` (`conf.rs`). Options (JSON) override
//! each: `host`, `web_host`, `access_key`, `secret_key`, `project`.

use std::time::Duration;

use base64::Engine as _;
use perf_plugin_api::sdk::{ResultSinkPlugin, SinkConfig};
use perf_plugin_api::{PluginError, RequestRecord, RunSnapshot, RunSummary, SessionInfo};
use perf_sink_common::{
    args, env, epoch_now, final_metrics, host_name, metrics_object, snippet, Answer, Http, Throttle,
};
use serde::Deserialize;
use serde_json::{json, Map, Value};

mod conf;
mod console;
mod hyperparams;
mod machine;
pub use conf::parse as parse_conf;
pub use hyperparams::hyperparams;

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
    console: Option<console::Console>,
    machine: machine::Machine,
    /// When the task began: the machine figures' iterations are seconds since, as the
    /// client's are when it sees no iterations of the script's own.
    began: std::time::Instant,
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
        let a = self.post(action, "application/json", body.to_string().as_bytes())?;
        data(action, a.status, &a.body)
    }

    /// Sends `body` to `<service>.<action>` with the session's token, as the client does; an
    /// error when it got no answer.
    fn post(&self, action: &str, content_type: &str, body: &[u8]) -> Result<Answer, PluginError> {
        let url = format!("{}/v{API_VERSION}/{action}", self.api);
        let bearer = format!("Bearer {}", self.token);
        let headers = [
            ("authorization", bearer.as_str()),
            ("content-type", content_type),
            ("x-clearml-worker", self.worker.as_str()),
            (
                "x-clearml-client",
                concat!("perf-", env!("CARGO_PKG_VERSION")),
            ),
        ];
        self.http
            .send(self.method, &url, &headers, Some(body))
            .map_err(|e| {
                PluginError::io(format!("clearml: {action} at {url} got no answer: {}", e.0))
            })
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
        if self.task.is_none() {
            return;
        }
        let iteration = self.iteration;
        for (variant, value) in metrics {
            if let Some(v) = value.as_f64() {
                self.scalar(TITLE, &variant, v, iteration);
            }
        }
        self.iteration += 1;
    }

    /// The machine's figures since the last send.
    fn log_machine(&mut self) {
        let seconds = self.began.elapsed().as_secs();
        for (variant, value) in self.machine.report() {
            self.scalar(":monitor:machine", variant, value, seconds);
        }
    }

    /// One scalar event, buffered (a value that is not finite is left out).
    fn scalar(&mut self, metric: &str, variant: &str, value: f64, iteration: u64) {
        let Some(task) = &self.task else { return };
        if !value.is_finite() {
            return;
        }
        self.events.push(
            json!({
                "timestamp": (epoch_now() * 1000.0) as u64, "type": "training_stats_scalar",
                "task": task, "iter": iteration, "metric": metric, "variant": variant,
                "value": value, "allow_locked": false, "model_event": false,
            })
            .to_string(),
        );
    }

    /// Sends the buffered scalars, as JSON lines.
    fn send_events(&mut self) -> Result<(), PluginError> {
        while !self.events.is_empty() {
            let n = self.events.len().min(BATCH);
            // Unanswered, they wait for the next send; answered, they go either way: a server
            // that refuses them refuses them again.
            let answer = self.post_events(&self.events[..n])?;
            self.events.drain(..n);
            data("events.add_batch", answer.status, &answer.body)?;
        }
        Ok(())
    }

    /// Sends what perf printed since the last send, in batches of their own (as the client
    /// sends its console apart from its scalars).
    fn send_console(&mut self) -> Result<(), PluginError> {
        let (Some(console), Some(task)) = (&mut self.console, &self.task) else {
            return Ok(());
        };
        let timestamp = (epoch_now() * 1000.0) as u64;
        let logs: Vec<String> = console
            .take()
            .into_iter()
            .map(|(level, msg)| {
                json!({
                    "timestamp": timestamp, "type": "log", "task": task, "level": level,
                    "worker": self.worker, "msg": msg, "allow_locked": false, "model_event": false,
                })
                .to_string()
            })
            .collect();
        for batch in logs.chunks(BATCH) {
            let answer = self.post_events(batch)?;
            data("events.add_batch", answer.status, &answer.body)?;
        }
        Ok(())
    }

    /// One `events.add_batch` call with `events` (JSON texts) as JSON lines; an error when it
    /// got no answer.
    fn post_events(&self, events: &[String]) -> Result<Answer, PluginError> {
        let body = events.join("\n");
        self.post(
            "events.add_batch",
            "application/json-lines",
            body.as_bytes(),
        )
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
        // What the environment does not say comes from clearml.conf, as for the client.
        let file = match conf::path() {
            Some(path) => conf::parse(&std::fs::read_to_string(&path).map_err(|e| {
                PluginError::config(format!("clearml: cannot read {}: {e}", path.display()))
            })?),
            None => conf::Conf::default(),
        };
        let api = base(
            &options
                .host
                .or_else(|| env("CLEARML_API_HOST"))
                .or(file.api_server)
                .unwrap_or_else(|| "https://api.clear.ml".into()),
        );
        let key = options
            .access_key
            .or_else(|| env("CLEARML_API_ACCESS_KEY"))
            .or(file.access_key);
        let secret = options
            .secret_key
            .or_else(|| env("CLEARML_API_SECRET_KEY"))
            .or(file.secret_key);
        let (Some(key), Some(secret)) = (key, secret) else {
            return Err(PluginError::config(
                "clearml: no credentials: set CLEARML_API_ACCESS_KEY and CLEARML_API_SECRET_KEY, or run clearml-init (perf reads ~/clearml.conf or CLEARML_CONFIG_FILE); the key pair comes from the ClearML web app's Settings > Workspace",
            ));
        };
        let web = options
            .web_host
            .or_else(|| env("CLEARML_WEB_HOST"))
            .or(file.web_server);
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
            web: web_host(web, &api),
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
            console: None,
            machine: machine::Machine::new(),
            began: std::time::Instant::now(),
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
        self.console = Some(console::Console::new(
            std::path::Path::new(session.output_dir.as_str()).join("benchmark.log"),
        ));
        Ok(())
    }

    fn record(&mut self, _record: &RequestRecord) -> Result<(), PluginError> {
        Ok(())
    }

    fn snapshot(&mut self, snapshot: &RunSnapshot) -> Result<(), PluginError> {
        self.log(metrics_object(&snapshot.metrics));
        if self.send.ready() {
            self.log_machine();
            self.send_events()?;
            self.send_console()?;
        }
        Ok(())
    }

    fn run_end(&mut self, summary: &RunSummary) -> Result<(), PluginError> {
        self.log(final_metrics(summary));
        self.log_machine();
        self.send_events()?;
        self.send_console()
    }

    fn close(&mut self) -> Result<(), PluginError> {
        self.send_events()?;
        self.send_console()?;
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
