//! Reading an outputs directory: the files are the contract (a finished perf run, an
//! interrupted one, a merged one and one that evalscope 1.14.1 wrote are read the same way).
//!
//! A *benchmark* directory is `<outputs-dir>/<time>/<name>/`: its runs are the subdirectories
//! that hold a `benchmark_summary.json` (`parallel_<P>_number_<N>/`, `rate_<R>_number_<N>/`,
//! or SLA probes under `sla_tuning/`). A run directory given on its own is a benchmark of one
//! run.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::pyjson;
use crate::ReportError;

/// One run of a sweep, as its files describe it.
#[derive(Debug, Clone)]
pub struct Run {
    /// Its directory.
    pub dir: PathBuf,
    /// Its directory's name (`parallel_4_number_100`).
    pub label: String,
    /// `benchmark_summary.json`.
    pub summary: Map<String, Value>,
    /// `benchmark_percentile.json`'s rows (empty when the file is absent).
    pub percentiles: Vec<Map<String, Value>>,
    /// `trace_summary.json` (multi-turn runs).
    pub traces: Option<Value>,
    /// `server_metrics_summary.json` (`--server-metrics`).
    pub server: Option<Value>,
    /// `benchmark_data.db`, when there is one.
    pub db: Option<PathBuf>,
}

impl Run {
    /// A number of the summary.
    pub fn num(&self, key: &str) -> Option<f64> {
        self.summary.get(key).and_then(Value::as_f64)
    }

    /// The concurrency of a closed-loop run (None in open loop).
    pub fn concurrency(&self) -> Option<f64> {
        match self.rate() {
            Some(_) => None,
            None => self.num("Concurrency"),
        }
    }

    /// The request rate of an open-loop run.
    pub fn rate(&self) -> Option<f64> {
        self.num("Request Rate (req/s)").filter(|r| *r > 0.0)
    }

    /// Where the run sits on the sweep's x axis: its rate in open loop, else its concurrency.
    pub fn load(&self) -> f64 {
        self.rate().or_else(|| self.concurrency()).unwrap_or(0.0)
    }

    /// The load as people say it: `concurrency 8`, `rate 2.5 req/s`.
    pub fn load_label(&self) -> String {
        match self.rate() {
            Some(r) => format!("rate {} req/s", trim(r)),
            None => format!("concurrency {}", trim(self.load())),
        }
    }

    /// The share of requests that succeeded, percent (None without requests).
    pub fn success_percent(&self) -> Option<f64> {
        let total = self.num("Total Requests")?;
        let ok = self.num("Success Requests")?;
        (total > 0.0).then(|| 100.0 * ok / total)
    }

    /// The value of `metric` in the percentile row `label` (`50%`, `99%`).
    pub fn percentile(&self, label: &str, metric: &str) -> Option<f64> {
        self.percentiles
            .iter()
            .find(|r| r.get("Percentiles").and_then(Value::as_str) == Some(label))
            .and_then(|r| r.get(metric))
            .and_then(Value::as_f64)
    }

    /// Failed requests by kind (`Failed: <kind>` keys, perf's own), largest first.
    pub fn failures(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = self
            .summary
            .iter()
            .filter_map(|(k, v)| {
                let kind = k.strip_prefix("Failed: ")?;
                Some((kind.to_string(), v.as_u64()?))
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        out.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        out
    }
}

/// A benchmark: its runs in sweep order, and what the directory says about it.
#[derive(Debug, Clone)]
pub struct Benchmark {
    /// The benchmark directory.
    pub dir: PathBuf,
    /// The runs, by load, then by directory name.
    pub runs: Vec<Run>,
    /// The first run's `benchmark_args.json`, when present.
    pub args: Option<Map<String, Value>>,
    /// `sla_summary.json` (SLA auto-tune).
    pub sla: Option<Value>,
    /// `progress.json`, while or after a tracked run.
    pub progress: Option<Value>,
    /// What the directory lacks that a full report shows, in words (evalscope's layout lacks
    /// perf's extra columns and keys).
    pub missing: Vec<String>,
}

impl Benchmark {
    /// An argument of the run (`model`, `api`, `url`, ...) as text.
    pub fn arg(&self, key: &str) -> Option<String> {
        match self.args.as_ref()?.get(key)? {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }

    /// The name to show: `--alias`, else `--name`, else the directory's name.
    pub fn title(&self) -> String {
        self.arg("alias")
            .or_else(|| self.arg("name"))
            .unwrap_or_else(|| dir_name(&self.dir))
    }

    /// Whether the sweep was paced by a rate (open loop).
    pub fn open_loop(&self) -> bool {
        self.runs.iter().any(|r| r.rate().is_some())
    }
}

/// Reads the benchmark in `dir` (or the single run `dir` is).
pub fn benchmark(dir: &Path) -> Result<Benchmark, ReportError> {
    if !dir.is_dir() {
        return Err(ReportError::NotFound(dir.to_path_buf()));
    }
    let mut run_dirs = Vec::new();
    if dir.join("benchmark_summary.json").is_file() {
        run_dirs.push(dir.to_path_buf());
    } else {
        for parent in [dir.to_path_buf(), dir.join("sla_tuning")] {
            for sub in subdirs(&parent) {
                if sub.join("benchmark_summary.json").is_file() {
                    run_dirs.push(sub);
                }
            }
        }
    }
    if run_dirs.is_empty() {
        return Err(no_runs(dir));
    }
    let mut runs = run_dirs
        .iter()
        .map(|d| run(d))
        .collect::<Result<Vec<_>, _>>()?;
    runs.sort_by(|a, b| {
        a.load()
            .total_cmp(&b.load())
            .then_with(|| a.label.cmp(&b.label))
    });
    let args = run_dirs
        .iter()
        .find_map(|d| read_json(&d.join("benchmark_args.json")).ok())
        .and_then(|v| v.as_object().cloned());
    let mut missing = Vec::new();
    if args.is_none() {
        missing.push("benchmark_args.json (model, API and endpoint are not shown)".into());
    }
    if runs.iter().any(|r| r.db.is_none()) {
        missing.push("benchmark_data.db in some runs (no per-request charts for them)".into());
    }
    if !runs
        .iter()
        .any(|r| r.summary.contains_key("Avg Dispatch Lag (ms)"))
    {
        missing.push(
            "perf's client figures (dispatch lag, client CPU, failure kinds): \
             the summaries are evalscope's"
                .into(),
        );
    }
    Ok(Benchmark {
        dir: dir.to_path_buf(),
        runs,
        args,
        sla: read_json(&dir.join("sla_summary.json")).ok(),
        progress: read_json(&dir.join("progress.json")).ok(),
        missing,
    })
}

fn run(dir: &Path) -> Result<Run, ReportError> {
    let summary = match read_json(&dir.join("benchmark_summary.json"))? {
        Value::Object(m) => m,
        _ => {
            return Err(ReportError::Invalid {
                path: dir.join("benchmark_summary.json"),
                detail: "expected a JSON object of summary keys".into(),
            })
        }
    };
    let percentiles = match read_json(&dir.join("benchmark_percentile.json")) {
        Ok(Value::Array(rows)) => rows
            .into_iter()
            .filter_map(|r| r.as_object().cloned())
            .collect(),
        Ok(_) => {
            return Err(ReportError::Invalid {
                path: dir.join("benchmark_percentile.json"),
                detail: "expected a JSON list of percentile rows".into(),
            })
        }
        Err(ReportError::Read { .. }) => Vec::new(),
        Err(e) => return Err(e),
    };
    let db = dir.join("benchmark_data.db");
    Ok(Run {
        dir: dir.to_path_buf(),
        label: dir_name(dir),
        summary,
        percentiles,
        traces: read_json(&dir.join("trace_summary.json")).ok(),
        server: read_json(&dir.join("server_metrics_summary.json")).ok(),
        db: db.is_file().then_some(db),
    })
}

/// Reads a JSON file as Python or perf wrote it.
pub fn read_json(path: &Path) -> Result<Value, ReportError> {
    let text = std::fs::read_to_string(path).map_err(|source| ReportError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    pyjson::parse(&text).map_err(|e| ReportError::Invalid {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })
}

/// The benchmark directories under `root` (depth 3: `<time>/<name>/`, or `<name>/` with
/// `--no-timestamp`), newest first.
pub fn benchmarks_under(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    collect(root, 3, &mut found);
    found.sort_by_key(|d| std::cmp::Reverse(modified(d)));
    found
}

fn collect(dir: &Path, depth: u32, found: &mut Vec<PathBuf>) {
    let subs = subdirs(dir);
    let is_benchmark = dir.join("progress.json").is_file()
        || dir.join("sla_summary.json").is_file()
        || subs
            .iter()
            .any(|s| s.join("benchmark_summary.json").is_file());
    if is_benchmark {
        found.push(dir.to_path_buf());
        return;
    }
    if depth == 0 {
        return;
    }
    for sub in subs {
        collect(&sub, depth - 1, found);
    }
}

fn modified(dir: &Path) -> std::time::SystemTime {
    std::fs::metadata(dir)
        .and_then(|m| m.modified())
        .unwrap_or(std::time::UNIX_EPOCH)
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    out.sort();
    out
}

fn no_runs(dir: &Path) -> ReportError {
    let inside = benchmarks_under(dir);
    let detail = if inside.is_empty() {
        "it holds no run: expected parallel_<P>_number_<N>/ or rate_<R>_number_<N>/ \
         directories with a benchmark_summary.json (the <outputs-dir>/<time>/<name>/ \
         directory of a run)"
            .to_string()
    } else {
        let names: Vec<String> = inside
            .iter()
            .take(5)
            .map(|p| p.display().to_string())
            .collect();
        format!(
            "it holds no run of its own; give one of the benchmark directories inside it: {}",
            names.join(", ")
        )
    };
    ReportError::Invalid {
        path: dir.to_path_buf(),
        detail,
    }
}

/// The last component of `dir`.
pub fn dir_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string())
}

/// A number without a needless `.0`.
pub fn trim(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}
