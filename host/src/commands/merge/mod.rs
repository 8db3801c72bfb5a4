//! `perf merge DIR...`: the shards of one benchmark (`--shard I/N`, each its own
//! `<outputs-dir>/<time>/<name>/` with a `shard.json`) as one benchmark directory in
//! evalscope's layout. Each run's table is the union of the shards' rows (times relative to the
//! earliest shard's start), its summary is computed over that union exactly as a run's is (so
//! counts and throughputs add up over the common wall-clock window), and its percentiles are
//! nearest ranks over every row, never averages of the shards'. `merge.json` says what each
//! shard sent and when: the spread of their starts and first sends, and the achieved rate
//! against the asked one; a run whose shards started far apart is warned of. What the rows do not keep (the client's load, resends, fresh connections) comes
//! from each shard's own summary (`carry.rs`). Shards of different benchmarks (other
//! arguments, another shard count, a shard missing or given twice) are refused by name with
//! exit code 2.

mod carry;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::{json, Map, Value};

use crate::aggregate::{derive, RunStats};
use crate::cli::MergeArgs;
use crate::error::usage;
use crate::output::db::{ResultDb, Stored};
use crate::output::{console, write_json, write_json_nan};

/// Arguments that differ between the shards of one benchmark by design.
const PER_SHARD: [&str; 6] = [
    "shard",
    "start_at",
    "outputs_dir",
    "no_timestamp",
    "dataset_seed",
    "port",
];

/// One shard's directory and what it says of itself.
struct ShardDir {
    dir: PathBuf,
    index: u64,
    count: u64,
    host: String,
    /// This shard's clock minus the server's, and its uncertainty (from the `Date` header).
    clock: Option<(f64, f64)>,
    args: Map<String, Value>,
    runs: Vec<Value>,
}

/// The directories holding a `shard.json` at or below `dir` (three levels at most).
fn find(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    if dir.join("shard.json").is_file() {
        out.push(dir.to_path_buf());
        return;
    }
    if depth == 0 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut subs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    subs.sort();
    for sub in subs {
        find(&sub, depth - 1, out);
    }
}

fn read_shard(dir: &Path) -> anyhow::Result<ShardDir> {
    let path = dir.join("shard.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| usage(format!("cannot read {}: {e}", path.display())))?;
    shard_from(dir, &text)
}

/// `shard.json`'s `text`, of the shard in `dir`.
fn shard_from(dir: &Path, text: &str) -> anyhow::Result<ShardDir> {
    let path = dir.join("shard.json");
    let v: Value = serde_json::from_str(text)
        .map_err(|e| usage(format!("{} is not JSON: {e}", path.display())))?;
    let number = |k: &str| {
        v[k].as_u64()
            .ok_or_else(|| usage(format!("{} has no {k}", path.display())))
    };
    Ok(ShardDir {
        dir: dir.to_path_buf(),
        index: number("index")?,
        count: number("count")?,
        host: v["host"].as_str().unwrap_or_default().to_string(),
        clock: v["server_clock"]["offset_s"]
            .as_f64()
            .zip(v["server_clock"]["uncertainty_s"].as_f64()),
        args: v["args"].as_object().cloned().unwrap_or_default(),
        runs: v["runs"].as_array().cloned().unwrap_or_default(),
    })
}

/// Every shard once, in order, all of the same benchmark; else what differs.
fn check(mut shards: Vec<ShardDir>) -> anyhow::Result<Vec<ShardDir>> {
    let Some(first) = shards.first() else {
        return Err(usage(
            "no shard.json under the directories given: give each shard's <outputs-dir>/<time>/<name>/ directory (written by perf --shard I/N)",
        ));
    };
    let count = first.count;
    if let Some(other) = shards.iter().find(|s| s.count != count) {
        return Err(usage(format!(
            "the shards are of different benchmarks: {} is one of {count} shards, {} one of {}",
            first.dir.display(),
            other.dir.display(),
            other.count
        )));
    }
    shards.sort_by_key(|s| s.index);
    for pair in shards.windows(2) {
        if pair[0].index == pair[1].index {
            return Err(usage(format!(
                "shard {} is given twice: {} and {}",
                pair[0].index,
                pair[0].dir.display(),
                pair[1].dir.display()
            )));
        }
    }
    let missing: Vec<String> = (0..count)
        .filter(|i| !shards.iter().any(|s| s.index == *i))
        .map(|i| i.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(usage(format!(
            "shard(s) {} of {count} missing: merge needs every shard's directory",
            missing.join(", ")
        )));
    }
    let first = &shards[0];
    for s in &shards[1..] {
        let mut keys: Vec<&String> = first.args.keys().chain(s.args.keys()).collect();
        keys.sort();
        keys.dedup();
        let differ: Vec<String> = keys
            .into_iter()
            .filter(|k| !PER_SHARD.contains(&k.as_str()) && first.args.get(*k) != s.args.get(*k))
            .map(|k| {
                let show = |v: Option<&Value>| v.map_or("(absent)".to_string(), Value::to_string);
                format!(
                    "{k} ({} vs {})",
                    show(first.args.get(k)),
                    show(s.args.get(k))
                )
            })
            .collect();
        if !differ.is_empty() {
            return Err(usage(format!(
                "the shards are of different benchmarks: shard 0 ({}) and shard {} ({}) differ in {}",
                first.dir.display(),
                s.index,
                s.dir.display(),
                differ.join(", ")
            )));
        }
        let labels =
            |d: &ShardDir| -> Vec<Value> { d.runs.iter().map(|r| r["label"].clone()).collect() };
        if labels(first) != labels(s) {
            return Err(usage(format!(
                "shard {} ran other runs than shard 0: {:?} vs {:?}",
                s.index,
                labels(s),
                labels(first)
            )));
        }
    }
    Ok(shards)
}

/// `shard.json` files' texts, checked as the shards of one benchmark (the `shards` fuzz
/// target): how many there are, or why they are not.
#[doc(hidden)]
pub fn check_texts(texts: &[&str]) -> anyhow::Result<usize> {
    let shards = texts
        .iter()
        .enumerate()
        .map(|(i, t)| shard_from(Path::new(&format!("shard{i}")), t))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let shards = check(shards)?;
    let _ = whole_args(&shards, &[]);
    let _ = clock_skew(&shards);
    Ok(shards.len())
}

/// A run of one shard: its table's path, its run's start (Unix seconds), its earliest time of
/// any kind, its first send and last completion.
struct Part {
    db: PathBuf,
    start: f64,
    earliest: f64,
    first_sent: f64,
    last_completed: f64,
    rows: u64,
}

fn part(dir: &Path) -> anyhow::Result<Part> {
    let db = dir.join("benchmark_data.db");
    let conn =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| usage(format!("cannot open {}: {e}", db.display())))?;
    type Times = (Option<f64>, Option<f64>, Option<f64>, Option<f64>, i64);
    let (start, earliest, first_sent, last_completed, rows): Times = conn
        .query_row(
            "SELECT MIN(sent_epoch - start_time), MIN(MIN(intended_send_epoch, sent_epoch)), \
             MIN(sent_epoch), MAX(completed_epoch), COUNT(*) FROM result",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .map_err(|e| usage(format!("{} is not a perf run table: {e}", db.display())))?;
    let start = start.unwrap_or(0.0);
    Ok(Part {
        db,
        start,
        earliest: earliest.unwrap_or(start).min(start),
        first_sent: first_sent.unwrap_or(0.0),
        last_completed: last_completed.unwrap_or(0.0),
        rows: rows.max(0) as u64,
    })
}

/// The arguments of the whole benchmark: shard 0's, with the whole runs' loads.
fn whole_args(shards: &[ShardDir], dirs: &[PathBuf]) -> Value {
    let mut args = shards[0].args.clone();
    for k in ["shard", "start_at"] {
        args.insert(k.into(), Value::Null);
    }
    let whole = |key: &str, fallback: &str| -> Vec<Value> {
        shards[0]
            .runs
            .iter()
            .map(|r| {
                let v = &r[key];
                if v.is_null() {
                    r[fallback].clone()
                } else {
                    v.clone()
                }
            })
            .collect()
    };
    args.insert(
        "parallel".into(),
        Value::Array(whole("whole_parallel", "parallel")),
    );
    args.insert(
        "number".into(),
        Value::Array(whole("whole_number", "number")),
    );
    let rates: Vec<Value> = whole("whole_rate", "rate")
        .into_iter()
        .map(|r| if r.is_null() { json!(-1.0) } else { r })
        .collect();
    args.insert("rate".into(), Value::Array(rates));
    args.insert(
        "merged_from".into(),
        json!(dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()),
    );
    Value::Object(args)
}

/// Merges one run (`label`) of every shard into `out`; returns its entry of merge.json.
fn merge_run(
    shards: &[ShardDir],
    label: &str,
    run_index: usize,
    out: &Path,
) -> anyhow::Result<Value> {
    let dir = out.join(label);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let parts: Vec<Part> = shards
        .iter()
        .map(|s| part(&s.dir.join(label)))
        .collect::<anyhow::Result<_>>()?;
    let start = parts.iter().map(|p| p.start).fold(f64::INFINITY, f64::min);
    let run = &shards[0].runs[run_index];
    let field = |k: &str, fallback: &str| {
        let v = &run[k];
        if v.is_null() {
            run[fallback].clone()
        } else {
            v.clone()
        }
    };
    let parallel = field("whole_parallel", "parallel").as_i64().unwrap_or(-1);
    let rate = field("whole_rate", "rate").as_f64().unwrap_or(-1.0);
    let db_path = dir.join("benchmark_data.db");
    let _ = std::fs::remove_file(&db_path);
    let mut db = ResultDb::create(
        &db_path,
        1000,
        start,
        crate::output::messages::ResponseMessages::Evalscope,
    )
    .with_context(|| format!("cannot create {}", db_path.display()))?;
    for p in &parts {
        db.append_from(&p.db, p.start - start)
            .with_context(|| format!("cannot copy the rows of {}", p.db.display()))?;
    }
    let pd = shards[0].args.get("enable_pd_metrics") == Some(&Value::Bool(true));
    let goodput: Vec<String> = shards[0]
        .args
        .get("goodput")
        .and_then(Value::as_array)
        .map(|g| {
            g.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let mut stats = RunStats::new(parallel, rate)
        .pd_metrics(pd)
        .goodput(crate::aggregate::goodput::Slo::parse(&goodput)?);
    // Anchored before every stored time, so that each turns back into an instant exactly.
    let clock = perf_timing::EpochClock::anchored(
        std::time::Instant::now(),
        parts
            .iter()
            .map(|p| p.earliest)
            .fold(f64::INFINITY, f64::min)
            - 1.0,
    );
    db.stored(&mut |row: Stored| {
        stats.add(&derive::from_stored(&row, run_index as u32, &clock));
    })
    .context("cannot read the merged rows back")?;
    let mut summary = stats.summary(None);
    let run_dirs: Vec<PathBuf> = shards.iter().map(|s| s.dir.join(label)).collect();
    let own = carry::read(&run_dirs);
    carry::carry(&mut summary, &own);
    let indices: Vec<u64> = shards.iter().map(|s| s.index).collect();
    let saturated = carry::saturated(&indices, &own);
    if !saturated.is_empty() {
        eprintln!(
            "WARNING: {label}: the client of shard(s) {saturated:?} was saturated (see its benchmark.log): the merged numbers may be that load generator's, not the server's; give it fewer streams or more cores, or run more shards"
        );
    }
    let percentiles = db
        .complete_rows()
        .and_then(|rows| stats.percentiles(&rows))
        .map_err(|e| anyhow::anyhow!("the percentiles of {label}: {e}"))?;
    let workload = crate::output::workload::write(&dir, |visit| {
        db.successes(visit).map_err(anyhow::Error::from)
    })?;
    db.finish().context("cannot finish the merged table")?;
    write_json(&dir.join("benchmark_summary.json"), &summary.to_json())?;
    write_json_nan(
        &dir.join("benchmark_percentile.json"),
        &percentiles.to_json(),
    )?;
    let mut run_args = whole_args(shards, &[]);
    if let Some(m) = run_args.as_object_mut() {
        m.insert("parallel".into(), json!(parallel));
        m.insert("number".into(), field("whole_number", "number"));
        m.insert("rate".into(), json!(rate));
        m.insert("outputs_dir".into(), json!(dir.display().to_string()));
        m.remove("merged_from");
    }
    write_json(&dir.join("benchmark_args.json"), &run_args)?;
    let text = format!(
        "{label}\n{}",
        console::run_tables(&summary, &percentiles, None, workload.as_ref())
    );
    println!("{}", crate::output::redact::redact(&text));
    let firsts: Vec<f64> = parts.iter().map(|p| p.first_sent).collect();
    let spread = firsts.iter().cloned().fold(f64::NEG_INFINITY, f64::max)
        - firsts.iter().cloned().fold(f64::INFINITY, f64::min);
    let window = parts
        .iter()
        .map(|p| p.last_completed)
        .fold(f64::NEG_INFINITY, f64::max)
        - firsts.iter().cloned().fold(f64::INFINITY, f64::min);
    let total: u64 = parts.iter().map(|p| p.rows).sum();
    // On the server's clock (each shard's first send less its offset), when every shard has one.
    let on_server: Option<Vec<f64>> = shards
        .iter()
        .zip(&parts)
        .map(|(s, p)| s.clock.map(|(o, _)| p.first_sent - o))
        .collect();
    let spread_of = |v: &[f64]| {
        v.iter().cloned().fold(f64::NEG_INFINITY, f64::max)
            - v.iter().cloned().fold(f64::INFINITY, f64::min)
    };
    let server_spread = on_server.as_deref().map(spread_of);
    // When each shard's run began (the first sends of a paced run come a random gap later), on
    // the server's clock when every shard has one.
    let starts: Vec<f64> = shards
        .iter()
        .zip(&parts)
        .map(|(s, p)| p.start - s.clock.map_or(0.0, |(o, _)| o))
        .collect();
    let run_start_spread = if shards.iter().all(|s| s.clock.is_some()) {
        spread_of(&starts)
    } else {
        spread_of(&parts.iter().map(|p| p.start).collect::<Vec<_>>())
    };
    Ok(json!({
        "label": label,
        "requests": total,
        "start_spread_s": spread,
        "start_spread_server_clock_s": server_spread,
        "run_start_spread_s": run_start_spread,
        "window_s": window,
        "rate": {"asked": (rate > 0.0).then_some(rate), "achieved": (window > 0.0).then(|| total as f64 / window)},
        "shards": shards.iter().zip(&parts).zip(&own).map(|((s, p), o)| json!({
            "index": s.index, "host": s.host, "dir": s.dir.display().to_string(),
            "requests": p.rows, "first_sent_unix": p.first_sent, "last_completed_unix": p.last_completed,
            "start_offset_s": p.first_sent - firsts.iter().cloned().fold(f64::INFINITY, f64::min),
            "client_saturated": o.as_ref().and_then(|o| o.client_saturated),
            "client_cpu_util_percent": o.as_ref().and_then(|o| o.client_cpu_util_percent),
        })).collect::<Vec<_>>(),
    }))
}

/// Shards whose starts of a run lie further apart than a tenth of a second and a twentieth of
/// the run: for that long the server had only part of the load, so the merged throughput reads
/// low.
fn misaligned(run: &Value) -> Option<String> {
    let spread = run["run_start_spread_s"].as_f64()?;
    let window = run["window_s"].as_f64().filter(|w| *w > 0.0)?;
    (spread > 0.1 && spread / window > 0.05).then(|| {
        format!(
            "{}: the shards started the run {spread:.3} s apart, {:.0}% of its {window:.2} s: the merged throughput reads low and the whole load was not on the server throughout; start the shards together (--start-at, and --shard-sync for every run of a sweep)",
            run["label"].as_str().unwrap_or(""),
            100.0 * spread / window
        )
    })
}

/// Each shard's clock against the median of theirs, from their offsets to the server's clock;
/// `None` when a shard has none.
fn clock_skew(shards: &[ShardDir]) -> Option<Value> {
    let clocks: Vec<(f64, f64)> = shards.iter().map(|s| s.clock).collect::<Option<_>>()?;
    let mut offsets: Vec<f64> = clocks.iter().map(|c| c.0).collect();
    offsets.sort_by(f64::total_cmp);
    let median = offsets[offsets.len() / 2];
    let skews: Vec<Value> = shards
        .iter()
        .zip(&clocks)
        .map(|(s, (o, u))| json!({"index": s.index, "skew_s": o - median, "uncertainty_s": u}))
        .collect();
    let max = clocks
        .iter()
        .map(|(o, _)| (o - median).abs())
        .fold(0.0, f64::max);
    let uncertainty = clocks.iter().map(|c| c.1).fold(0.0, f64::max) * 2.0;
    Some(json!({"max_abs_skew_s": max, "uncertainty_s": uncertainty, "shards": skews}))
}

/// `perf merge`.
pub fn merge(args: &MergeArgs) -> anyhow::Result<i32> {
    let mut found = Vec::new();
    for d in &args.dirs {
        if !d.is_dir() {
            return Err(usage(format!("{} is not a directory", d.display())));
        }
        let before = found.len();
        find(d, 3, &mut found);
        if found.len() == before {
            return Err(usage(format!(
                "no shard.json at or under {}: give each shard's <outputs-dir>/<time>/<name>/ directory (written by perf --shard I/N)",
                d.display()
            )));
        }
    }
    let shards = check(
        found
            .iter()
            .map(|d| read_shard(d))
            .collect::<anyhow::Result<Vec<_>>>()?,
    )?;
    let name = args.name.clone().unwrap_or_else(|| {
        shards[0]
            .args
            .get("name")
            .and_then(Value::as_str)
            .map_or_else(
                || {
                    shards[0]
                        .dir
                        .file_name()
                        .map_or("merged".into(), |n| n.to_string_lossy().to_string())
                },
                str::to_string,
            )
    });
    let out = if args.no_timestamp {
        args.outputs_dir.join(&name)
    } else {
        args.outputs_dir
            .join(chrono::Local::now().format("%Y%m%d_%H%M%S").to_string())
            .join(&name)
    };
    if out.join("merge.json").exists() {
        return Err(usage(format!(
            "{} already holds a merge: pick another --outputs-dir or --name",
            out.display()
        )));
    }
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    write_json(
        &out.join("benchmark_args.json"),
        &whole_args(&shards, &found),
    )?;
    let labels: Vec<String> = shards[0]
        .runs
        .iter()
        .filter_map(|r| r["label"].as_str().map(str::to_string))
        .collect();
    let mut runs = Vec::new();
    for (i, label) in labels.iter().enumerate() {
        runs.push(merge_run(&shards, label, i, &out)?);
    }
    let mut hosts: BTreeMap<String, u64> = BTreeMap::new();
    for s in &shards {
        *hosts.entry(s.host.clone()).or_default() += 1;
    }
    let skew = clock_skew(&shards);
    if let Some(s) = &skew {
        println!(
            "clock skew between the shards (from the server's Date header): at most {:.4} s (±{:.4} s)",
            s["max_abs_skew_s"].as_f64().unwrap_or(0.0),
            s["uncertainty_s"].as_f64().unwrap_or(0.0)
        );
    }
    write_json(
        &out.join("merge.json"),
        &json!({
            "shards": shards.len(),
            "hosts": hosts,
            "clock_skew": skew,
            "runs": runs,
            "clock": "each shard's times are its own machine's Unix clock: start_spread_s includes the clocks' skew, start_spread_server_clock_s takes it out (within clock_skew's uncertainty)",
        }),
    )?;
    for r in &runs {
        println!(
            "{}: {} requests from {} shards, first sends {:.3} s apart, achieved {} req/s",
            r["label"].as_str().unwrap_or(""),
            r["requests"],
            shards.len(),
            r["start_spread_s"].as_f64().unwrap_or(0.0),
            r["rate"]["achieved"]
                .as_f64()
                .map_or("-".to_string(), |x| format!("{x:.2}"))
        );
        if let Some(warning) = misaligned(r) {
            eprintln!("WARNING: {warning}");
        }
    }
    match crate::commands::report::write(&out) {
        Ok(path) => println!("report: {}", path.display()),
        Err(e) => eprintln!("WARNING: the merged report could not be written: {e:#}"),
    }
    println!("merged: {}", out.display());
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_that_started_apart_are_named_by_run() {
        let run = |spread: f64, window: f64| json!({"label": "parallel_8_number_16", "run_start_spread_s": spread, "window_s": window});
        let warning = misaligned(&run(0.34, 1.2)).expect("28% of the run");
        assert!(
            warning.contains("0.340 s apart, 28%") && warning.contains("--shard-sync"),
            "{warning}"
        );
        assert_eq!(
            misaligned(&run(0.05, 0.5)),
            None,
            "under a tenth of a second"
        );
        assert_eq!(
            misaligned(&run(0.4, 60.0)),
            None,
            "under a twentieth of the run"
        );
    }
}
