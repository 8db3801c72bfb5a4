//! `wandb`: the benchmark as a Weights & Biases run, sent the way the official `wandb` client
//! sends it (checked against wandb 0.31 pointed at a capturing server, `tests/e2e/visualizers.rs`):
//!
//! 1. `POST /graphql` `Viewer`: checks the API key before any traffic and finds the entity;
//! 2. `POST /graphql` `UpsertBucket`: creates the run (project `perf_benchmark` or
//!    `WANDB_PROJECT`, display name `--name`), its config the invocation's arguments (secrets
//!    already masked by the host);
//! 3. `POST /files/<entity>/<project>/<run>/file_stream`: `wandb-history.jsonl` lines, each the
//!    running summary (evalscope's keys) with `_step`, `_timestamp` and `_runtime`, at most one a
//!    second and sent in batches; the step continues across the runs of a sweep, and each run
//!    ends on a line with its final summary;
//! 4. at the end `CreateRunFiles` and a `PUT` per file: `wandb-summary.json`, `config.yaml` and
//!    each run's `benchmark_summary.json` / `benchmark_percentile.json` under `perf/<run>/`;
//! 5. a last `file_stream` with the summary, the uploaded files, `complete: true` and the exit
//!    code.
//!
//! `WANDB_BASE_URL` points it at a self-hosted server (default `https://api.wandb.ai`);
//! `WANDB_API_KEY` or `--wandb-api-key` is the key, sent only as HTTP basic auth; `WANDB_ENTITY`
//! and `WANDB_PROJECT` override the entity and project. Options (JSON): `api_key`, `project`,
//! `entity`, `base_url`.

use std::time::Duration;

use base64::Engine;
use perf_plugin_api::sdk::{ResultSinkPlugin, SinkConfig};
use perf_plugin_api::{PluginError, RequestRecord, RunInfo, RunSnapshot, RunSummary, SessionInfo};
use perf_sink_common::{
    args, env, epoch_now, final_metrics, host_name, metrics_object, number, snippet, Http, Throttle,
};
use rand::Rng;
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// How often buffered history lines go out.
const STREAM_EVERY: Duration = Duration::from_secs(5);

const VIEWER: &str = "\nquery Viewer {\n\tviewer {\n\t\tid\n\t\tentity\n\t\tusername\n\t\temail\n\t\tflags\n\t\tteams {\n\t\t\tedges {\n\t\t\t\tnode {\n\t\t\t\t\tname\n\t\t\t\t}\n\t\t\t}\n\t\t}\n\t}\n}\n";

const UPSERT_BUCKET: &str = "\nmutation UpsertBucket ($id: String, $name: String, $project: String, $entity: String, $groupName: String, $description: String, $displayName: String, $notes: String, $commit: String, $config: JSONString, $host: String, $debug: Boolean, $program: String, $repo: String, $jobType: String, $state: String, $sweep: String, $tags: [String!], $summaryMetrics: JSONString) {\n\tupsertBucket(input: {id:$id,name:$name,groupName:$groupName,modelName:$project,entityName:$entity,description:$description,displayName:$displayName,notes:$notes,config:$config,commit:$commit,host:$host,debug:$debug,jobProgram:$program,jobRepo:$repo,jobType:$jobType,state:$state,sweep:$sweep,tags:$tags,summaryMetrics:$summaryMetrics}) {\n\t\tbucket {\n\t\t\tid\n\t\t\tname\n\t\t\tdisplayName\n\t\t\tdescription\n\t\t\tconfig\n\t\t\tsweepName\n\t\t\tproject {\n\t\t\t\tid\n\t\t\t\tname\n\t\t\t\tentity {\n\t\t\t\t\tid\n\t\t\t\t\tname\n\t\t\t\t}\n\t\t\t}\n\t\t\thistoryLineCount\n\t\t}\n\t\tinserted\n\t}\n}\n";

const CREATE_RUN_FILES: &str = "\nmutation CreateRunFiles ($entity: String!, $project: String!, $run: String!, $files: [String!]!) {\n\tcreateRunFiles(input: {entityName:$entity,projectName:$project,runName:$run,files:$files}) {\n\t\trunID\n\t\tuploadHeaders\n\t\tfiles {\n\t\t\tname\n\t\t\tuploadUrl\n\t\t}\n\t}\n}\n";

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Options {
    api_key: Option<String>,
    project: Option<String>,
    entity: Option<String>,
    base_url: Option<String>,
}

/// The run on the server.
struct Run {
    id: String,
    entity: String,
    project: String,
    started: f64,
}

/// The wandb sink.
pub struct WandbSink {
    http: Http,
    base: String,
    auth: String,
    entity: String,
    project: String,
    run: Option<Run>,
    config: Value,
    step: u64,
    history_sent: usize,
    pending: Vec<String>,
    summary: Map<String, Value>,
    stream: Throttle,
    run_label: String,
    files: Vec<(String, Vec<u8>)>,
}

/// Eight characters of `[a-z0-9]`, as wandb's run ids.
fn run_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..8)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// `--wandb-api-key` (through the sink's options), else `WANDB_API_KEY`.
fn api_key(option: Option<String>, from_env: Option<String>) -> Result<String, PluginError> {
    option.or(from_env).ok_or_else(|| {
        PluginError::config(
            "wandb: no API key: set WANDB_API_KEY (or pass --wandb-api-key; the environment keeps it out of shell history)",
        )
    })
}

/// wandb's config shape: every key wrapped as `{"value": ...}`.
fn wandb_config(args: Map<String, Value>) -> Value {
    let mut config: Map<String, Value> = args
        .into_iter()
        .map(|(k, v)| (k, json!({ "value": v })))
        .collect();
    config.insert(
        "_wandb".into(),
        json!({"value": {"cli_version": format!("perf-{}", env!("CARGO_PKG_VERSION"))}}),
    );
    Value::Object(config)
}

impl WandbSink {
    fn graphql(&self, query: &str, variables: Value) -> Result<Value, PluginError> {
        let url = format!("{}/graphql", self.base);
        let answer = self.http.post_json(
            &url,
            &[("authorization", self.auth.as_str())],
            &json!({"query": query, "variables": variables}),
        )?;
        let body = answer.json();
        if let Some(errors) = body.get("errors").filter(|e| !e.is_null()) {
            return Err(PluginError::io(format!(
                "wandb: {url} answered with errors: {}",
                snippet(&errors.to_string())
            )));
        }
        Ok(body.get("data").cloned().unwrap_or(Value::Null))
    }

    fn stream_url(run: &Run) -> String {
        format!(
            "/files/{}/{}/{}/file_stream",
            run.entity, run.project, run.id
        )
    }

    /// Sends buffered history lines (and the summary) to the run's file stream.
    fn send_history(&mut self, finish: Option<Vec<String>>) -> Result<(), PluginError> {
        let Some(run) = &self.run else { return Ok(()) };
        let url = format!("{}{}", self.base, Self::stream_url(run));
        let mut files = Map::new();
        if !self.pending.is_empty() {
            files.insert(
                "wandb-history.jsonl".into(),
                json!({"offset": self.history_sent, "content": self.pending}),
            );
        }
        files.insert(
            "wandb-summary.json".into(),
            json!({"offset": 0, "content": [Value::Object(self.summary_file(run)).to_string()]}),
        );
        let mut body = json!({ "files": files });
        if let Some(uploaded) = finish {
            body["uploaded"] = json!(uploaded);
            body["complete"] = json!(true);
            body["exitcode"] = json!(0);
        }
        self.http
            .post_json(&url, &[("authorization", self.auth.as_str())], &body)?;
        self.history_sent += self.pending.len();
        self.pending.clear();
        Ok(())
    }

    fn summary_file(&self, run: &Run) -> Map<String, Value> {
        let mut s = self.summary.clone();
        let runtime = (epoch_now() - run.started).max(0.0);
        s.insert("_runtime".into(), number(runtime.floor()));
        s.insert("_timestamp".into(), number(epoch_now()));
        s.insert("_wandb".into(), json!({"runtime": runtime.floor() as i64}));
        if self.step > 0 {
            s.insert("_step".into(), json!(self.step - 1));
        }
        s
    }

    /// One history line: the metrics at the next step.
    fn log(&mut self, metrics: Map<String, Value>) {
        let Some(run) = &self.run else { return };
        let now = epoch_now();
        let mut line = Map::new();
        line.insert("_step".into(), json!(self.step));
        line.insert("_timestamp".into(), number(now));
        line.insert("_runtime".into(), number((now - run.started).max(0.0)));
        for (k, v) in &metrics {
            self.summary.insert(k.clone(), v.clone());
        }
        line.extend(metrics);
        self.pending.push(Value::Object(line).to_string());
        self.step += 1;
    }

    /// Uploads the run files: the run's record once more (as the official client does before
    /// its files), `CreateRunFiles`, then a `PUT` to each upload URL.
    fn upload_files(&mut self, run: &Run) -> Result<Vec<String>, PluginError> {
        self.graphql(
            UPSERT_BUCKET,
            json!({
                "id": null, "name": run.id, "project": run.project, "entity": run.entity,
                "groupName": null, "description": null, "displayName": null, "notes": null,
                "commit": null, "config": self.config.to_string(), "host": null, "debug": null,
                "program": null, "repo": null, "jobType": null, "state": null, "sweep": null,
                "tags": null, "summaryMetrics": null,
            }),
        )?;
        let mut files = vec![
            (
                "wandb-summary.json".to_string(),
                Value::Object(self.summary_file(run))
                    .to_string()
                    .into_bytes(),
            ),
            // JSON is YAML: the config as the official client's config.yaml holds it.
            (
                "config.yaml".to_string(),
                serde_json::to_vec_pretty(&self.config).unwrap_or_default(),
            ),
        ];
        files.append(&mut self.files);
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        let data = self.graphql(
            CREATE_RUN_FILES,
            json!({"entity": run.entity, "project": run.project, "run": run.id, "files": names}),
        )?;
        let targets = data["createRunFiles"]["files"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut uploaded = Vec::new();
        for (name, bytes) in &files {
            let Some(url) = targets
                .iter()
                .find(|t| t["name"] == name.as_str())
                .and_then(|t| t["uploadUrl"].as_str())
            else {
                continue;
            };
            // Upload URLs are pre-signed: no credentials go with them.
            self.http.expect_ok("PUT", url, &[], Some(bytes))?;
            uploaded.push(name.clone());
        }
        Ok(uploaded)
    }
}

impl ResultSinkPlugin for WandbSink {
    const ID: &'static str = "wandb";
    const DESCRIPTION: &'static str =
        "a Weights & Biases run: running summary, final summary and percentiles (WANDB_API_KEY, WANDB_BASE_URL)";
    const OPTION_KEYS: Option<&'static [&'static str]> =
        Some(&["api_key", "project", "entity", "base_url"]);
    const OPTIONS_EXAMPLE: &'static str =
        r#"{"project": "perf_benchmark", "entity": "my-team", "base_url": "https://api.wandb.ai"}"#;

    fn new(config: &SinkConfig) -> Result<Self, PluginError> {
        let options: Options = config.options()?;
        let key = api_key(options.api_key, env("WANDB_API_KEY"))?;
        let base = options
            .base_url
            .or_else(|| env("WANDB_BASE_URL"))
            .unwrap_or_else(|| "https://api.wandb.ai".into())
            .trim_end_matches('/')
            .to_string();
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("api:{key}"))
        );
        let mut sink = WandbSink {
            http: Http::new("wandb"),
            base,
            auth,
            entity: String::new(),
            project: options
                .project
                .or_else(|| env("WANDB_PROJECT"))
                .unwrap_or_else(|| "perf_benchmark".into()),
            run: None,
            config: Value::Null,
            step: 0,
            history_sent: 0,
            pending: Vec::new(),
            summary: Map::new(),
            stream: Throttle::new(STREAM_EVERY),
            run_label: String::new(),
            files: Vec::new(),
        };
        // Fail before any traffic when the key or the server is wrong.
        let url = format!("{}/graphql", sink.base);
        let viewer = json!({"query": VIEWER, "variables": null}).to_string();
        let answer = sink.http.check_access(
            &url,
            &[
                ("authorization", sink.auth.as_str()),
                ("content-type", "application/json"),
            ],
            Some(viewer.as_bytes()),
            "WANDB_API_KEY",
            "WANDB_BASE_URL",
        )?;
        let viewer = &answer.json()["data"]["viewer"];
        if viewer.is_null() {
            return Err(PluginError::config(format!(
                "wandb: {} does not know this API key (no viewer); check WANDB_API_KEY",
                sink.base
            )));
        }
        sink.entity = options
            .entity
            .or_else(|| env("WANDB_ENTITY"))
            .or_else(|| viewer["entity"].as_str().map(str::to_string))
            .unwrap_or_default();
        Ok(sink)
    }

    fn begin(&mut self, session: &SessionInfo) -> Result<(), PluginError> {
        self.config = wandb_config(args(session.args_json.as_str()));
        let id = run_id();
        let data = self.graphql(
            UPSERT_BUCKET,
            json!({
                "id": null, "name": id, "project": self.project,
                "entity": (!self.entity.is_empty()).then_some(&self.entity),
                "groupName": null, "description": null,
                "displayName": session.name.as_str(), "notes": null, "commit": null,
                "config": self.config.to_string(), "host": host_name(), "debug": null,
                "program": "perf", "repo": null, "jobType": null, "state": null,
                "sweep": null, "tags": null, "summaryMetrics": null,
            }),
        )?;
        let bucket = &data["upsertBucket"]["bucket"];
        let text = |v: &Value, fallback: &str| v.as_str().unwrap_or(fallback).to_string();
        self.run = Some(Run {
            id: text(&bucket["name"], &id),
            entity: text(&bucket["project"]["entity"]["name"], &self.entity),
            project: text(&bucket["project"]["name"], &self.project),
            started: session.started_unix_s,
        });
        Ok(())
    }

    fn run_start(&mut self, run: &RunInfo) -> Result<(), PluginError> {
        self.run_label = run.label.to_string();
        Ok(())
    }

    fn record(&mut self, _record: &RequestRecord) -> Result<(), PluginError> {
        Ok(())
    }

    fn snapshot(&mut self, snapshot: &RunSnapshot) -> Result<(), PluginError> {
        self.log(metrics_object(&snapshot.metrics));
        if self.stream.ready() {
            self.send_history(None)?;
        }
        Ok(())
    }

    fn run_end(&mut self, summary: &RunSummary) -> Result<(), PluginError> {
        self.log(final_metrics(summary));
        let rows: Vec<Value> = summary
            .percentiles
            .iter()
            .map(|row| {
                let mut m = Map::new();
                m.insert("Percentiles".into(), json!(row.label.as_str()));
                m.extend(metrics_object(&row.values));
                Value::Object(m)
            })
            .collect();
        let dir = format!("perf/{}", self.run_label);
        self.files.push((
            format!("{dir}/benchmark_summary.json"),
            serde_json::to_vec_pretty(&Value::Object(metrics_object(&summary.summary)))
                .unwrap_or_default(),
        ));
        self.files.push((
            format!("{dir}/benchmark_percentile.json"),
            serde_json::to_vec_pretty(&rows).unwrap_or_default(),
        ));
        self.send_history(None)
    }

    fn close(&mut self) -> Result<(), PluginError> {
        let Some(run) = self.run.take() else {
            return Ok(());
        };
        let uploaded = self.upload_files(&run);
        self.run = Some(run);
        let uploaded = uploaded?;
        self.send_history(Some(uploaded))
    }
}

perf_plugin_api::builtin_plugins! {
    ResultSink: WandbSink,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_look_like_wandbs() {
        let id = run_id();
        assert_eq!(id.len(), 8);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    }

    #[test]
    fn the_config_wraps_every_argument() {
        let mut args = Map::new();
        args.insert("parallel".into(), json!([1, 4]));
        let config = wandb_config(args);
        assert_eq!(config["parallel"], json!({"value": [1, 4]}));
        assert!(config["_wandb"]["value"]["cli_version"]
            .as_str()
            .expect("a version")
            .starts_with("perf-"));
    }

    #[test]
    fn the_flag_wins_over_the_environment_and_no_key_is_a_clear_error() {
        assert_eq!(
            api_key(Some("flag".into()), Some("env".into())).expect("key"),
            "flag"
        );
        assert_eq!(api_key(None, Some("env".into())).expect("key"), "env");
        let err = api_key(None, None).expect_err("no key");
        assert!(err.message.contains("WANDB_API_KEY"), "{}", err.message);
    }
}
