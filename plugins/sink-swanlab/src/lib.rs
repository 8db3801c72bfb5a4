//! `swanlab`: the benchmark as a SwanLab experiment, sent the way the official `swanlab` client
//! (0.10) sends it (checked against it pointed at a capturing server, `tests/e2e/visualizers.rs`):
//!
//! 1. `POST /api/login/api_key` with the key: checks it before any traffic; the answer's session
//!    id goes with every later request as the `sid` cookie;
//! 2. `GET /api/project/<workspace>/<project>` (404: `POST /api/projects/<workspace>`, then the
//!    `GET` again); project `perf_benchmark` or `SWANLAB_PROJ_NAME`, workspace the user's or
//!    `SWANLAB_WORKSPACE`;
//! 3. `POST /api/project/<workspace>/<project>/experiment`: the experiment, named `--name`;
//! 4. `POST /api/house/experiments/<id>/heartbeat`, then `PUT .../runs/<id>/profile` with the
//!    config (the invocation's arguments, secrets masked by the host) and with the metadata;
//! 5. `POST /api/experiment/<id>/columns` declaring each new series, and `POST /api/house/metrics`
//!    (`type: scalar`, `key`/`index`/`data`/`create_time`) with the running summary at most once a
//!    second, in batches; each run ends on a step with its final summary and P50/P90/P99 rows;
//! 6. `PUT .../runs/<id>/state` `FINISHED`.
//!
//! The host comes from `SWANLAB_API_HOST`, `--swanlab-host` or `SWANLAB_HOST` (default
//! `https://api.swanlab.cn`); the key from `--swanlab-api-key` or `SWANLAB_API_KEY`, sent only in
//! the login request. evalscope's `--swanlab-api-key local` (SwanLab's offline mode, which
//! writes SwanLab's own on-disk log format) is refused with an explanation.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use perf_plugin_api::sdk::{ResultSinkPlugin, SinkConfig};
use perf_plugin_api::{PluginError, RequestRecord, RunSnapshot, RunSummary, SessionInfo};
use perf_sink_common::{
    args, env, final_metrics, host_name, metrics_object, snippet, Http, Throttle,
};
use rand::Rng;
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// How often buffered points go out.
const SEND_EVERY: Duration = Duration::from_secs(5);
/// How often the experiment says it is alive.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(60);

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Options {
    api_key: Option<String>,
    host: Option<String>,
    project: Option<String>,
    workspace: Option<String>,
}

/// The experiment on the server.
struct Experiment {
    id: String,
    project_id: String,
    path: String,
}

/// The swanlab sink.
pub struct SwanlabSink {
    http: Http,
    api: String,
    cookie: String,
    workspace: String,
    project: String,
    experiment: Option<Experiment>,
    columns: HashSet<String>,
    new_columns: Vec<String>,
    points: Vec<Value>,
    step: u64,
    send: Throttle,
    heartbeat: Instant,
}

/// `SWANLAB_API_HOST`, else `--swanlab-host` / `SWANLAB_HOST`, as the API base (`<host>/api`).
fn api_base(option: Option<String>) -> String {
    let host = env("SWANLAB_API_HOST")
        .or(option)
        .or_else(|| env("SWANLAB_HOST"))
        .unwrap_or_else(|| "https://api.swanlab.cn".into());
    let host = host.trim_end_matches('/');
    let host = host.strip_suffix("/api").unwrap_or(host);
    format!("{host}/api")
}

/// `--swanlab-api-key` (through the options), else `SWANLAB_API_KEY`; `local` is refused.
fn api_key(option: Option<String>, from_env: Option<String>) -> Result<String, PluginError> {
    let key = option.or(from_env).ok_or_else(|| {
        PluginError::config("swanlab: no API key: set SWANLAB_API_KEY (or pass --swanlab-api-key)")
    })?;
    if key == "local" {
        return Err(PluginError::config(
            "swanlab: --swanlab-api-key local asks for SwanLab's offline mode, which writes SwanLab's own on-disk log format; perf does not write that format. Use a self-hosted SwanLab (--swanlab-host) or read the run's benchmark_data.db and summary files",
        ));
    }
    Ok(key)
}

fn now_iso() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// Eight characters of `[a-z0-9]`, as swanlab's experiment ids.
fn experiment_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..8)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// swanlab's config shape: `{key: {"desc", "sort", "value"}}`.
fn swanlab_config(args: Map<String, Value>) -> Value {
    let mut config: Map<String, Value> = args
        .into_iter()
        .enumerate()
        .map(|(i, (k, v))| (k, json!({"desc": "", "sort": i, "value": v})))
        .collect();
    let sort = config.len();
    config.insert(
        "framework".into(),
        json!({"desc": "", "sort": sort, "value": "perf"}),
    );
    Value::Object(config)
}

impl SwanlabSink {
    fn headers(&self) -> [(&str, &str); 1] {
        [("cookie", self.cookie.as_str())]
    }

    fn post(&self, path: &str, body: &Value) -> Result<Value, PluginError> {
        let url = format!("{}{path}", self.api);
        self.http
            .post_json(&url, &self.headers(), body)
            .map(|a| a.json())
    }

    fn put(&self, path: &str, body: &Value) -> Result<(), PluginError> {
        let url = format!("{}{path}", self.api);
        let bytes = body.to_string();
        let mut headers = vec![("content-type", "application/json")];
        headers.extend_from_slice(&self.headers());
        self.http
            .expect_ok("PUT", &url, &headers, Some(bytes.as_bytes()))
            .map(|_| ())
    }

    /// The project, created when it does not exist.
    fn project(&self) -> Result<Value, PluginError> {
        let path = format!("/project/{}/{}", self.workspace, self.project);
        let url = format!("{}{path}", self.api);
        let answer = self
            .http
            .send("GET", &url, &self.headers(), None)
            .map_err(|e| PluginError::io(format!("swanlab: GET {url} got no answer: {}", e.0)))?;
        if answer.ok() {
            return Ok(answer.json());
        }
        if answer.status != 404 {
            return Err(PluginError::io(format!(
                "swanlab: GET {url} answered HTTP {}: {}",
                answer.status,
                snippet(&answer.body)
            )));
        }
        self.post(
            &format!("/projects/{}", self.workspace),
            &json!({"name": self.project, "visibility": "PRIVATE"}),
        )?;
        self.http
            .expect_ok("GET", &url, &self.headers(), None)
            .map(|a| a.json())
    }

    fn heartbeat(&mut self) -> Result<(), PluginError> {
        let Some(e) = &self.experiment else {
            return Ok(());
        };
        self.heartbeat = Instant::now();
        self.post(
            &format!("/house/experiments/{}/heartbeat", e.id),
            &json!({"flagId": e.id}),
        )
        .map(|_| ())
    }

    /// One step of points.
    fn log(&mut self, metrics: Map<String, Value>) {
        let at = now_iso();
        for (key, value) in metrics {
            if !value.is_number() {
                continue;
            }
            if self.columns.insert(key.clone()) {
                self.new_columns.push(key.clone());
            }
            self.points
                .push(json!({"key": key, "index": self.step, "data": value, "create_time": at}));
        }
        self.step += 1;
    }

    /// Declares new series, then sends the buffered points.
    fn send_points(&mut self) -> Result<(), PluginError> {
        let Some(e) = &self.experiment else {
            return Ok(());
        };
        if !self.new_columns.is_empty() {
            let columns: Vec<Value> = self
                .new_columns
                .iter()
                .map(|k| json!({"key": k, "type": "FLOAT"}))
                .collect();
            self.post(&format!("/experiment/{}/columns", e.id), &json!(columns))?;
            self.new_columns.clear();
        }
        if !self.points.is_empty() {
            let body = json!({
                "type": "scalar", "projectId": e.project_id, "experimentId": e.id,
                "metrics": self.points,
            });
            self.post("/house/metrics", &body)?;
            self.points.clear();
        }
        if self.heartbeat.elapsed() >= HEARTBEAT_EVERY {
            self.heartbeat()?;
        }
        Ok(())
    }
}

impl ResultSinkPlugin for SwanlabSink {
    const ID: &'static str = "swanlab";
    const DESCRIPTION: &'static str =
        "a SwanLab experiment: running summary, final summary and percentiles (SWANLAB_API_KEY, --swanlab-host)";
    const OPTION_KEYS: Option<&'static [&'static str]> =
        Some(&["api_key", "host", "project", "workspace"]);
    const OPTIONS_EXAMPLE: &'static str =
        r#"{"project": "perf_benchmark", "workspace": "my-team", "host": "https://swanlab.cn"}"#;

    fn new(config: &SinkConfig) -> Result<Self, PluginError> {
        let options: Options = config.options()?;
        let key = api_key(options.api_key, env("SWANLAB_API_KEY"))?;
        let api = api_base(options.host);
        let http = Http::new("swanlab");
        let url = format!("{api}/login/api_key");
        // Fail before any traffic when the key or the host is wrong.
        let answer = http.check_access(
            &url,
            &[("authorization", key.as_str())],
            None,
            "SWANLAB_API_KEY",
            "--swanlab-host / SWANLAB_HOST",
        )?;
        let login = answer.json();
        let sid = login["sid"].as_str().ok_or_else(|| {
            PluginError::config(format!("swanlab: {url} answered without a session id"))
        })?;
        let user = login["userInfo"]["username"].as_str().unwrap_or_default();
        Ok(SwanlabSink {
            http,
            api,
            cookie: format!("sid={sid}"),
            workspace: options
                .workspace
                .or_else(|| env("SWANLAB_WORKSPACE"))
                .unwrap_or_else(|| user.to_string()),
            project: options
                .project
                .or_else(|| env("SWANLAB_PROJ_NAME"))
                .unwrap_or_else(|| "perf_benchmark".into()),
            experiment: None,
            columns: HashSet::new(),
            new_columns: Vec::new(),
            points: Vec::new(),
            step: 0,
            send: Throttle::new(SEND_EVERY),
            heartbeat: Instant::now(),
        })
    }

    fn begin(&mut self, session: &SessionInfo) -> Result<(), PluginError> {
        let project = self.project()?;
        let workspace = project["group"]["username"]
            .as_str()
            .unwrap_or(&self.workspace)
            .to_string();
        let name = project["name"]
            .as_str()
            .unwrap_or(&self.project)
            .to_string();
        let colour = "#528d59";
        let created = self.post(
            &format!("/project/{workspace}/{name}/experiment"),
            &json!({
                "name": session.name.as_str(), "createdAt": now_iso(),
                "colors": [colour, colour], "cuid": experiment_id(),
            }),
        )?;
        let id = created["cuid"]
            .as_str()
            .ok_or_else(|| PluginError::io("swanlab: the new experiment has no id"))?
            .to_string();
        self.experiment = Some(Experiment {
            id: id.clone(),
            project_id: project["cuid"].as_str().unwrap_or_default().to_string(),
            path: format!("/project/{workspace}/{name}/runs/{id}"),
        });
        self.heartbeat()?;
        let path = format!("/project/{workspace}/{name}/runs/{id}/profile");
        self.put(
            &path,
            &json!({"config": swanlab_config(args(session.args_json.as_str()))}),
        )?;
        self.put(
            &path,
            &json!({"metadata": {
                "_version": 2,
                "runtime": {"hostname": host_name(), "pid": std::process::id()},
                "perf": {"version": env!("CARGO_PKG_VERSION"), "output_dir": session.output_dir.as_str()},
            }}),
        )
    }

    fn record(&mut self, _record: &RequestRecord) -> Result<(), PluginError> {
        Ok(())
    }

    fn snapshot(&mut self, snapshot: &RunSnapshot) -> Result<(), PluginError> {
        self.log(metrics_object(&snapshot.metrics));
        if self.send.ready() {
            self.send_points()?;
        }
        Ok(())
    }

    fn run_end(&mut self, summary: &RunSummary) -> Result<(), PluginError> {
        self.log(final_metrics(summary));
        self.send_points()
    }

    fn close(&mut self) -> Result<(), PluginError> {
        self.send_points()?;
        let Some(e) = &self.experiment else {
            return Ok(());
        };
        self.put(
            &format!("{}/state", e.path),
            &json!({"state": "FINISHED", "finishedAt": now_iso(), "from": "sdk"}),
        )
    }
}

perf_plugin_api::builtin_plugins! {
    ResultSink: SwanlabSink,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_mode_and_a_missing_key_are_refused_with_what_to_do() {
        let err = api_key(Some("local".into()), None).expect_err("local");
        assert!(err.message.contains("offline mode"), "{}", err.message);
        let err = api_key(None, None).expect_err("none");
        assert!(err.message.contains("SWANLAB_API_KEY"), "{}", err.message);
        assert_eq!(api_key(None, Some("k".into())).expect("env"), "k");
    }

    #[test]
    fn the_config_carries_desc_sort_and_value() {
        let mut args = Map::new();
        args.insert("model".into(), json!("m"));
        let config = swanlab_config(args);
        assert_eq!(
            config["model"],
            json!({"desc": "", "sort": 0, "value": "m"})
        );
        assert_eq!(config["framework"]["value"], "perf");
    }
}
