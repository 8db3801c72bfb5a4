//! The wandb and swanlab sinks against a capturing server that answers as those services do
//! (`tests/py/capture_server.py`), compared with what the official Python
//! clients (wandb 0.31.0, swanlab 0.10.3, installed by `scripts/fetch-test-assets`) send to the
//! same server for an equivalent run: the same endpoints in the same order, the same payload
//! shapes. Also: keys never leave the headers, and a bad key or host stops the run before
//! traffic.

use std::collections::BTreeSet;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use perf_tests::{perf_bin, py_clients_python, text};
use serde_json::{json, Value};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("py")
}

/// The capturing server on a free port; stopped when dropped.
pub(crate) struct Capture {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Capture {
    pub(crate) fn start() -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let log = dir.path().join("requests.jsonl");
        let child = Command::new("python3")
            .arg(fixtures().join("capture_server.py"))
            .arg(port.to_string())
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs the capturing server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the capturing server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Capture {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request so far, and forget them.
    pub(crate) fn take(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let _ = std::fs::remove_file(&self.log);
        text.lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const WANDB_KEY: &str = "perfsecretkey0123456789abcdefghijklmnopqrstu";
const SWANLAB_KEY: &str = "perfsecretswan-0123456789";

/// perf against the simulator for about 1.5 s (snapshots come once a second), with `args`.
fn perf_run(dir: &Path, args: &[&str], env: &[(&str, String)]) -> (Option<i32>, String) {
    let mut all = vec![
        "--api",
        "mock",
        "--port",
        "0",
        "-n",
        "60",
        "--parallel",
        "2",
        "--max-tokens",
        "4",
        "--mock-ttft-ms",
        "40",
        "--prompt",
        "hello",
        "--name",
        "perf-run",
        "--outputs-dir",
        "outputs",
    ];
    all.extend_from_slice(args);
    let out = Command::new(perf_bin())
        .args(&all)
        .env_remove("WANDB_API_KEY")
        .env_remove("SWANLAB_API_KEY")
        .env_remove("CLEARML_API_ACCESS_KEY")
        .env_remove("CLEARML_API_SECRET_KEY")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(dir)
        .output()
        .expect("perf runs");
    let (stdout, stderr) = text(&out);
    (out.status.code(), format!("{stdout}\n{stderr}"))
}

/// The official client's equivalent run.
fn official_run(dir: &Path, service: &str, env: &[(&str, String)]) {
    let out = Command::new(py_clients_python())
        .arg(fixtures().join("official_client.py"))
        .arg(service)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("WANDB_DIR", dir)
        .env("HOME", dir)
        .current_dir(dir)
        .output()
        .expect("the official client runs");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{service}: {stdout}\n{stderr}");
}

fn graphql_operation(r: &Value) -> String {
    let query = r["body"]["query"].as_str().unwrap_or("");
    query
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .nth(1)
        .unwrap_or("")
        .to_string()
}

/// What a wandb request is, with the run-specific parts of its path taken out; `None` for the
/// client's own telemetry and feature probes, which are not part of the protocol of a run.
fn wandb_kind(r: &Value) -> Option<String> {
    let path = r["path"].as_str().unwrap_or("");
    let method = r["method"].as_str().unwrap_or("");
    if path.starts_with("/sdk/") {
        return None;
    }
    if path == "/graphql" {
        let op = graphql_operation(r);
        return match op.as_str() {
            "OrganizationCoreWeaveOrganizationID" | "ServerFeaturesQuery" | "ArtifactType" => None,
            _ => Some(format!("graphql {op}")),
        };
    }
    if path.ends_with("/file_stream") {
        let done = r["body"]["complete"] == true;
        return Some(format!(
            "POST file_stream{}",
            if done { " (complete)" } else { "" }
        ));
    }
    if path.starts_with("/upload/") {
        return Some(format!("{method} upload"));
    }
    Some(format!("{method} {path}"))
}

/// What a swanlab request is; `None` for the console-log capture (`type: log`), which a
/// command-line benchmark has no use for.
fn swanlab_kind(r: &Value) -> Option<String> {
    let path = r["path"].as_str().unwrap_or("");
    let method = r["method"].as_str().unwrap_or("");
    if path == "/api/house/metrics" {
        return match r["body"]["type"].as_str() {
            Some("scalar") => Some("POST house/metrics scalar".into()),
            _ => None,
        };
    }
    let generic = path
        .replace("/perf_benchmark", "/{project}")
        .replace("/tester", "/{user}")
        .replace("/exp1", "/{experiment}");
    Some(format!("{method} {generic}"))
}

/// The kinds in order of first appearance.
fn order(requests: &[Value], kind: fn(&Value) -> Option<String>) -> Vec<String> {
    let mut seen = Vec::new();
    for k in requests.iter().filter_map(kind) {
        if !seen.contains(&k) {
            seen.push(k);
        }
    }
    seen
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

fn find<'a>(requests: &'a [Value], kind: fn(&Value) -> Option<String>, k: &str) -> Vec<&'a Value> {
    requests
        .iter()
        .filter(|r| kind(r).as_deref() == Some(k))
        .collect()
}

/// No file under `dir`, and not `console`, holds `secret`.
fn assert_secret_absent(dir: &Path, console: &str, secret: &str) {
    assert!(!console.contains(secret), "the key is on the console");
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)
            .expect("read_dir")
            .filter_map(Result::ok)
        {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let bytes = std::fs::read(&p).expect("read");
                assert!(
                    !String::from_utf8_lossy(&bytes).contains(secret),
                    "the key is in {}",
                    p.display()
                );
            }
        }
    }
}

#[test]
fn the_wandb_sink_sends_what_the_official_client_sends() {
    let capture = Capture::start();
    let dir = tempfile::tempdir().expect("tmp");
    let env = [
        ("WANDB_BASE_URL", capture.url()),
        ("WANDB_API_KEY", WANDB_KEY.to_string()),
    ];
    let (code, out) = perf_run(dir.path(), &["--visualizer", "wandb"], &env);
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("sink 'wandb'"), "no sink error: {out}");
    let ours = capture.take();
    official_run(dir.path(), "wandb", &env);
    let theirs = capture.take();

    let expected = [
        "graphql Viewer",
        "graphql UpsertBucket",
        "POST file_stream",
        "graphql CreateRunFiles",
        "PUT upload",
        "POST file_stream (complete)",
    ];
    assert_eq!(order(&theirs, wandb_kind), expected, "the official client");
    assert_eq!(order(&ours, wandb_kind), expected, "perf");
    let last = |rs: &[Value]| rs.iter().filter_map(wandb_kind).next_back();
    assert_eq!(last(&ours), last(&theirs));

    // The same payload shapes.
    let first = |rs: &[Value], k: &str| find(rs, wandb_kind, k)[0].clone();
    assert_eq!(
        first(&ours, "graphql Viewer")["body"]["query"],
        first(&theirs, "graphql Viewer")["body"]["query"]
    );
    for op in ["graphql UpsertBucket", "graphql CreateRunFiles"] {
        let (a, b) = (first(&ours, op), first(&theirs, op));
        assert_eq!(a["body"]["query"], b["body"]["query"], "{op}");
        assert_eq!(
            keys(&a["body"]["variables"]),
            keys(&b["body"]["variables"]),
            "{op}"
        );
    }
    let upsert = first(&ours, "graphql UpsertBucket");
    assert_eq!(upsert["body"]["variables"]["project"], "perf_benchmark");
    assert_eq!(upsert["body"]["variables"]["displayName"], "perf-run");
    let config: Value = serde_json::from_str(
        upsert["body"]["variables"]["config"]
            .as_str()
            .expect("config is a JSON string"),
    )
    .expect("config JSON");
    assert_eq!(config["model"], serde_json::json!({"value": "mock"}));
    for r in ours.iter().chain(&theirs) {
        if wandb_kind(r).is_some_and(|k| k.starts_with("POST file_stream")) {
            let allowed: BTreeSet<String> = ["files", "uploaded", "complete", "exitcode"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            assert!(keys(&r["body"]).is_subset(&allowed), "{}", r["body"]);
            for file in r["body"]["files"].as_object().expect("files").values() {
                assert!(file["offset"].is_u64(), "{file}");
                for line in file["content"].as_array().expect("content") {
                    let line: Value =
                        serde_json::from_str(line.as_str().expect("a line")).expect("JSON");
                    assert!(line.is_object());
                }
            }
        }
    }
    let done = |rs: &[Value]| find(rs, wandb_kind, "POST file_stream (complete)")[0].clone();
    for d in [done(&ours), done(&theirs)] {
        assert_eq!(d["body"]["exitcode"], 0);
        assert!(d["body"]["uploaded"].is_array());
    }
    // perf's history: one line a step from 0, each with the step axis and evalscope's keys.
    let history: Vec<Value> = find(&ours, wandb_kind, "POST file_stream")
        .iter()
        .chain(find(&ours, wandb_kind, "POST file_stream (complete)").iter())
        .filter_map(|r| r["body"]["files"]["wandb-history.jsonl"]["content"].as_array())
        .flatten()
        .map(|l| serde_json::from_str(l.as_str().expect("line")).expect("JSON"))
        .collect();
    assert!(history.len() >= 2, "running summaries and the final one");
    for (i, line) in history.iter().enumerate() {
        assert_eq!(line["_step"], i, "{line}");
        for k in ["_timestamp", "_runtime", "Total Requests", "Avg TTFT (ms)"] {
            assert!(line.get(k).is_some(), "{k} in {line}");
        }
    }
    let last_line = history.last().expect("a line");
    assert_eq!(last_line["Total Requests"], 60, "the final summary last");
    assert!(last_line.get("P99 TTFT (ms)").is_some(), "{last_line}");

    // The key only ever travelled in the authorization header.
    let everything = serde_json::to_string(&ours).expect("JSON");
    assert!(!everything.contains(WANDB_KEY));
    assert_secret_absent(&dir.path().join("outputs"), &out, WANDB_KEY);
}

#[test]
fn the_swanlab_sink_sends_what_the_official_client_sends() {
    let capture = Capture::start();
    let dir = tempfile::tempdir().expect("tmp");
    let (code, out) = perf_run(
        dir.path(),
        &["--visualizer", "swanlab", "--swanlab-host", &capture.url()],
        &[("SWANLAB_API_KEY", SWANLAB_KEY.to_string())],
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("sink 'swanlab'"), "no sink error: {out}");
    let ours = capture.take();
    official_run(
        dir.path(),
        "swanlab",
        &[
            ("SWANLAB_API_HOST", format!("{}/api", capture.url())),
            ("SWANLAB_WEB_HOST", capture.url()),
            ("SWANLAB_API_KEY", SWANLAB_KEY.to_string()),
        ],
    );
    let theirs = capture.take();

    let expected = [
        "POST /api/login/api_key",
        "GET /api/project/{user}/{project}",
        "POST /api/project/{user}/{project}/experiment",
        "POST /api/house/experiments/{experiment}/heartbeat",
        "PUT /api/project/{user}/{project}/runs/{experiment}/profile",
        "POST /api/experiment/{experiment}/columns",
        "POST house/metrics scalar",
        "PUT /api/project/{user}/{project}/runs/{experiment}/state",
    ];
    assert_eq!(
        order(&theirs, swanlab_kind),
        expected,
        "the official client"
    );
    assert_eq!(order(&ours, swanlab_kind), expected, "perf");

    let first = |rs: &[Value], k: &str| find(rs, swanlab_kind, k)[0].clone();
    let experiment = "POST /api/project/{user}/{project}/experiment";
    assert_eq!(
        keys(&first(&ours, experiment)["body"]),
        keys(&first(&theirs, experiment)["body"])
    );
    assert_eq!(first(&ours, experiment)["body"]["name"], "perf-run");
    let profile = "PUT /api/project/{user}/{project}/runs/{experiment}/profile";
    let config = |rs: &[Value]| -> Value {
        find(rs, swanlab_kind, profile)
            .iter()
            .find_map(|r| r["body"].get("config").cloned())
            .expect("a config profile")
    };
    for entry in config(&ours)
        .as_object()
        .expect("config")
        .values()
        .chain(config(&theirs).as_object().expect("config").values())
    {
        assert_eq!(
            keys(entry),
            ["desc", "sort", "value"]
                .iter()
                .map(|s| s.to_string())
                .collect()
        );
    }
    let columns = "POST /api/experiment/{experiment}/columns";
    for r in
        find(&ours, swanlab_kind, columns)
            .into_iter()
            .chain(find(&theirs, swanlab_kind, columns))
    {
        for c in r["body"].as_array().expect("a list") {
            assert_eq!(
                keys(c),
                ["key", "type"].iter().map(|s| s.to_string()).collect()
            );
            assert_eq!(c["type"], "FLOAT");
        }
    }
    let metrics = "POST house/metrics scalar";
    assert_eq!(
        keys(&first(&ours, metrics)["body"]),
        keys(&first(&theirs, metrics)["body"])
    );
    let point_keys = |rs: &[Value]| keys(&first(rs, metrics)["body"]["metrics"][0]);
    assert_eq!(point_keys(&ours), point_keys(&theirs));
    let state = "PUT /api/project/{user}/{project}/runs/{experiment}/state";
    assert_eq!(
        keys(&first(&ours, state)["body"]),
        keys(&first(&theirs, state)["body"])
    );
    assert_eq!(first(&ours, state)["body"]["state"], "FINISHED");
    // The step axis runs from 0 and the final summary is last.
    let points: Vec<Value> = find(&ours, swanlab_kind, metrics)
        .iter()
        .flat_map(|r| r["body"]["metrics"].as_array().cloned().unwrap_or_default())
        .collect();
    let total: Vec<(u64, f64)> = points
        .iter()
        .filter(|p| p["key"] == "Total Requests")
        .map(|p| {
            (
                p["index"].as_u64().expect("index"),
                p["data"].as_f64().expect("data"),
            )
        })
        .collect();
    assert!(total.len() >= 2, "{total:?}");
    assert!(total.windows(2).all(|w| w[1].0 == w[0].0 + 1), "{total:?}");
    assert_eq!(total.last().map(|t| t.1), Some(60.0));

    let everything = serde_json::to_string(&ours).expect("JSON");
    assert!(!everything.contains(SWANLAB_KEY));
    assert_secret_absent(&dir.path().join("outputs"), &out, SWANLAB_KEY);
}

const CLEARML_SECRET: &str = "perfsecretclearml-0123456789";

/// What a ClearML call is: its `service.action`, with `tasks.edit` named by what it edits and
/// `events.add_batch` by its events' type; `None` for the client's reads of what it just wrote
/// (`*.get_by_id`, `tasks.get_all`), its edits of the script and runtime it found (a command
/// line has none), and its console-log events.
fn clearml_kind(r: &Value) -> Option<String> {
    let path = r["path"].as_str().unwrap_or("");
    let call = path.rsplit('/').next().unwrap_or("");
    match call {
        "tasks.get_by_id" | "projects.get_by_id" | "tasks.get_all" => None,
        "tasks.edit" => r["body"]
            .get("hyperparams")
            .map(|_| "tasks.edit hyperparams".to_string()),
        "events.add_batch" => {
            let events = r["body"].as_array()?;
            events
                .iter()
                .all(|e| e["type"] == "training_stats_scalar")
                .then(|| "events.add_batch scalars".to_string())
        }
        _ => Some(call.to_string()),
    }
}

/// A ClearML call's body without the `method` key the official client's request objects add
/// to every body (a serialisation artefact the server ignores).
fn clearml_body(r: &Value) -> BTreeSet<String> {
    let mut k = keys(&r["body"]);
    k.remove("method");
    k
}

#[test]
fn the_clearml_sink_sends_what_the_official_client_sends() {
    let capture = Capture::start();
    let dir = tempfile::tempdir().expect("tmp");
    let env = [
        ("CLEARML_API_HOST", capture.url()),
        ("CLEARML_WEB_HOST", capture.url()),
        ("CLEARML_FILES_HOST", capture.url()),
        ("CLEARML_API_ACCESS_KEY", "perfaccess".to_string()),
        ("CLEARML_API_SECRET_KEY", CLEARML_SECRET.to_string()),
    ];
    let (code, out) = perf_run(dir.path(), &["--visualizer", "clearml"], &env);
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("sink 'clearml'"), "no sink error: {out}");
    assert!(
        out.contains("ClearML results page: http://127.0.0.1:"),
        "{out}"
    );
    let ours = capture.take();
    official_run(dir.path(), "clearml", &env);
    let theirs = capture.take();

    let expected = [
        "auth.login",
        "projects.get_all",
        "projects.create",
        "tasks.create",
        "tasks.started",
        "tasks.edit hyperparams",
        "events.add_batch scalars",
        "tasks.completed",
    ];
    assert_eq!(
        order(&theirs, clearml_kind),
        expected,
        "the official client"
    );
    assert_eq!(order(&ours, clearml_kind), expected, "perf");

    let first = |rs: &[Value], k: &str| find(rs, clearml_kind, k)[0].clone();
    for call in [
        "projects.get_all",
        "projects.create",
        "tasks.create",
        "tasks.started",
        "tasks.completed",
    ] {
        assert_eq!(
            clearml_body(&first(&ours, call)),
            clearml_body(&first(&theirs, call)),
            "{call}"
        );
        assert_eq!(
            first(&ours, call)["method"],
            first(&theirs, call)["method"],
            "{call}: the same HTTP method"
        );
    }
    for call in ["projects.get_all", "projects.create", "tasks.create"] {
        for key in ["name", "type", "project", "system_tags", "only_fields"] {
            if key == "name" && call == "tasks.create" {
                continue;
            }
            assert_eq!(
                first(&ours, call)["body"].get(key),
                first(&theirs, call)["body"].get(key),
                "{call}.{key}"
            );
        }
    }
    assert_eq!(first(&ours, "tasks.create")["body"]["name"], "perf-run");
    // The arguments as the General hyperparameters, each entry shaped as the client shapes it.
    let general = |rs: &[Value]| {
        first(rs, "tasks.edit hyperparams")["body"]["hyperparams"]["General"].clone()
    };
    let (g_ours, g_theirs) = (general(&ours), general(&theirs));
    for entry in g_ours
        .as_object()
        .expect("ours")
        .values()
        .chain(g_theirs.as_object().expect("theirs").values())
    {
        let mut k = keys(entry);
        k.remove("type"); // absent for a null value, in both
        assert_eq!(
            k,
            ["description", "name", "section", "value"]
                .iter()
                .map(|s| s.to_string())
                .collect()
        );
        assert_eq!(entry["section"], "General");
    }
    for key in ["model", "api"] {
        assert_eq!(g_ours[key]["type"], g_theirs[key]["type"], "{key}");
        assert_eq!(g_ours[key]["value"], g_theirs[key]["value"], "{key}");
    }
    // perf's arguments hold one concurrency as a number (as evalscope's args dump does).
    assert_eq!(
        (&g_ours["parallel"]["value"], &g_ours["parallel"]["type"]),
        (&json!("2"), &json!("int"))
    );
    assert_eq!(g_theirs["parallel"]["type"], "list/int");
    // Scalars: the same event shape, sent as JSON lines, iterations counting up from 0.
    let scalars = |rs: &[Value], metric: &str| -> Vec<Value> {
        find(rs, clearml_kind, "events.add_batch scalars")
            .iter()
            .flat_map(|r| {
                assert_eq!(r["headers"]["content-type"], "application/json-lines");
                r["body"].as_array().cloned().unwrap_or_default()
            })
            .filter(|e| e["metric"] == metric)
            .collect()
    };
    let events = |rs: &[Value]| scalars(rs, "Performance Metrics");
    let (e_ours, e_theirs) = (events(&ours), events(&theirs));
    let mut shape_theirs = keys(&e_theirs[0]);
    shape_theirs.remove("method");
    assert_eq!(keys(&e_ours[0]), shape_theirs);
    for e in e_ours.iter().chain(&e_theirs) {
        assert_eq!(e["metric"], "Performance Metrics", "{e}");
        assert_eq!(e["task"], "task1");
        assert!(e["value"].is_number() && e["timestamp"].is_u64(), "{e}");
    }
    let total: Vec<(u64, f64)> = e_ours
        .iter()
        .filter(|e| e["variant"] == "Total Requests")
        .map(|e| {
            (
                e["iter"].as_u64().expect("iter"),
                e["value"].as_f64().expect("value"),
            )
        })
        .collect();
    assert!(total.len() >= 2, "{total:?}");
    assert_eq!(total[0].0, 0);
    assert!(total.windows(2).all(|w| w[1].0 == w[0].0 + 1), "{total:?}");
    assert_eq!(total.last().map(|t| t.1), Some(60.0));
    // The machine, as the client's resource monitor reports it: the same event shape under
    // `:monitor:machine`, perf's figures (CPU, memory, network) among the client's.
    let (m_ours, m_theirs) = (
        scalars(&ours, ":monitor:machine"),
        scalars(&theirs, ":monitor:machine"),
    );
    assert!(
        !m_theirs.is_empty(),
        "the client's resource monitor reported"
    );
    let variants = |es: &[Value]| -> BTreeSet<String> {
        es.iter()
            .filter_map(|e| e["variant"].as_str().map(str::to_string))
            .collect()
    };
    let ours_machine = variants(&m_ours);
    assert_eq!(
        ours_machine,
        [
            "cpu_usage",
            "memory_free_gb",
            "memory_used_gb",
            "network_rx_mbs",
            "network_tx_mbs"
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    );
    assert!(
        ours_machine.is_subset(&variants(&m_theirs)),
        "{ours_machine:?} among {:?}",
        variants(&m_theirs)
    );
    let mut machine_shape = keys(&m_theirs[0]);
    machine_shape.remove("method");
    for e in &m_ours {
        assert_eq!(keys(e), machine_shape, "{e}");
        assert!(e["value"].as_f64().is_some_and(|v| v >= 0.0), "{e}");
    }
    // The console: what perf printed, as `log` events of the client's shape in batches of their
    // own, the final report among them.
    let logs = |rs: &[Value]| -> Vec<Value> {
        rs.iter()
            .filter(|r| {
                r["path"]
                    .as_str()
                    .unwrap_or("")
                    .ends_with("events.add_batch")
            })
            .filter_map(|r| r["body"].as_array().cloned())
            .filter(|batch| batch.iter().all(|e| e["type"] == "log"))
            .flatten()
            .collect()
    };
    let (l_ours, l_theirs) = (logs(&ours), logs(&theirs));
    assert!(
        l_theirs.iter().any(|e| e["msg"]
            .as_str()
            .unwrap_or("")
            .contains("a line of the benchmark's console")),
        "the official client sends its console: {l_theirs:?}"
    );
    let mut shape = keys(&l_theirs[0]);
    shape.remove("method");
    for e in &l_ours {
        assert_eq!(keys(e), shape, "{e}");
        assert_eq!(e["task"], "task1");
        assert!(
            ["info", "warning", "error"].contains(&e["level"].as_str().unwrap_or("")),
            "{e}"
        );
    }
    let console: Vec<&str> = l_ours.iter().filter_map(|e| e["msg"].as_str()).collect();
    let console = console.join("\n");
    assert!(
        console.contains("run 1/1: parallel_2_number_60"),
        "{console}"
    );
    assert!(
        console.contains("Total Test Time"),
        "the final report: {console}"
    );
    // Every later call carries the session token, never the keys.
    for r in ours.iter().filter(|r| r["path"] != "/auth.login") {
        assert_eq!(
            r["headers"]["authorization"], "***",
            "masked by the capture"
        );
    }
    let everything = serde_json::to_string(&ours).expect("JSON");
    assert!(!everything.contains(CLEARML_SECRET));
    assert_secret_absent(&dir.path().join("outputs"), &out, CLEARML_SECRET);
}

#[test]
fn the_clearml_sink_reads_clearml_conf_when_the_environment_does_not_say() {
    let capture = Capture::start();
    let dir = tempfile::tempdir().expect("tmp");
    // As clearml-init writes it: the servers and the key pair under `api`.
    std::fs::write(
        dir.path().join("clearml.conf"),
        format!(
            "# ClearML SDK configuration file\napi {{\n    web_server: {url}\n    api_server: {url}\n    files_server: {url}\n    credentials {{\n        \"access_key\" = \"fromconf\"\n        \"secret_key\" = \"{CLEARML_SECRET}\"\n    }}\n}}\n",
            url = capture.url()
        ),
    )
    .expect("clearml.conf");
    let home = dir.path().display().to_string();
    let (code, out) = perf_run(dir.path(), &["--visualizer", "clearml"], &[("HOME", home)]);
    assert_eq!(code, Some(0), "{out}");
    let calls: Vec<String> = capture.take().iter().filter_map(clearml_kind).collect();
    assert!(
        calls.contains(&"tasks.create".to_string())
            && calls.contains(&"tasks.completed".to_string()),
        "{calls:?}"
    );
    assert_secret_absent(&dir.path().join("outputs"), &out, CLEARML_SECRET);
}

#[test]
fn a_rejected_key_an_unreachable_host_or_swanlab_local_mode_stop_before_traffic() {
    let capture = Capture::start();
    let dir = tempfile::tempdir().expect("tmp");
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://127.0.0.1:{}", l.local_addr().expect("addr").port())
    };
    let host = capture.url();
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, String)>, &'a str);
    let cases: [Case; 7] = [
        (
            vec!["--visualizer", "clearml"],
            vec![
                ("CLEARML_API_HOST", capture.url()),
                ("CLEARML_API_ACCESS_KEY", "access".into()),
                ("CLEARML_API_SECRET_KEY", "key-rejected".into()),
            ],
            "rejected the credentials",
        ),
        (
            vec!["--visualizer", "clearml"],
            // HOME without a clearml.conf: the machine's own must not supply keys.
            vec![
                ("CLEARML_API_HOST", capture.url()),
                ("HOME", dir.path().display().to_string()),
            ],
            "set CLEARML_API_ACCESS_KEY and CLEARML_API_SECRET_KEY",
        ),
        (
            vec!["--visualizer", "wandb"],
            vec![
                ("WANDB_BASE_URL", capture.url()),
                ("WANDB_API_KEY", "key-rejected".into()),
            ],
            "rejected the API key",
        ),
        (
            vec!["--wandb-api-key", "x"],
            vec![("WANDB_BASE_URL", closed.clone())],
            "cannot be reached",
        ),
        (
            vec!["--visualizer", "wandb"],
            vec![("WANDB_BASE_URL", capture.url())],
            "no API key: set WANDB_API_KEY",
        ),
        (
            vec!["--swanlab-api-key", "key-rejected", "--swanlab-host", &host],
            vec![],
            "rejected the API key",
        ),
        (vec!["--swanlab-api-key", "local"], vec![], "offline mode"),
    ];
    for (args, env, wanted) in cases {
        let (code, out) = perf_run(dir.path(), &args, &env);
        assert_eq!(code, Some(2), "{args:?}: {out}");
        assert!(out.contains(wanted), "{args:?}: wanted {wanted:?} in {out}");
        assert!(
            !out.contains("key-rejected"),
            "{args:?}: the key leaked: {out}"
        );
        assert!(
            !out.contains("Benchmarking summary"),
            "{args:?}: nothing ran: {out}"
        );
    }
}

#[test]
fn several_sinks_run_at_once() {
    let capture = Capture::start();
    let dir = tempfile::tempdir().expect("tmp");
    let swanlab = format!(
        r#"swanlab={{"api_key": "{SWANLAB_KEY}", "host": "{}"}}"#,
        capture.url()
    );
    let (code, out) = perf_run(
        dir.path(),
        &["--visualizer", "wandb", "--sink", &swanlab],
        &[
            ("WANDB_BASE_URL", capture.url()),
            ("WANDB_API_KEY", WANDB_KEY.to_string()),
        ],
    );
    assert_eq!(code, Some(0), "{out}");
    let requests = capture.take();
    let wandb_done = requests
        .iter()
        .filter_map(wandb_kind)
        .any(|k| k == "POST file_stream (complete)");
    let swanlab_done = requests
        .iter()
        .filter(|r| r["path"].as_str().is_some_and(|p| p.ends_with("/state")))
        .any(|r| r["body"]["state"] == "FINISHED");
    assert!(wandb_done && swanlab_done, "both finished: {requests:?}");
    assert_secret_absent(&dir.path().join("outputs"), &out, SWANLAB_KEY);
}
