//! `--shard I/N` and `--start-at`: one benchmark from N load generators. Shard I (0-based) of N
//! sends its exact share of every run: `--parallel` and `--number` (and the warmup) split as
//! integers that add up to the whole, the first `total % N` shards taking one more; `--rate`
//! divided by N (N Poisson streams at r/N are one Poisson stream at r). Its prompts are its
//! slice of the whole run's (the dataset read from where the shards before it stop), its
//! schedule seed its own, its request ids carry the shard. `perf merge` combines the shards'
//! directories; `shard.json` holds what it needs.
//!
//! Without `--shard`, the environment of a batch scheduler says it: a Kubernetes Indexed Job
//! (`JOB_COMPLETION_INDEX`, with `PERF_SHARDS` set to the job's completions) or a Slurm step
//! (`SLURM_PROCID` of `SLURM_STEP_NUM_TASKS`, inside `srun`; a batch script's own shell is not
//! a step and stays whole).

use anyhow::Result;

use super::RunSpec;
use crate::error::usage;

/// Which shard this process is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    /// From 0.
    pub index: u64,
    /// How many shards the benchmark has.
    pub count: u64,
    /// Where it came from: `--shard`, or the variables that said it.
    pub source: String,
}

/// A shard's part of one run, beside the whole run's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Share {
    /// The shard.
    pub shard: Shard,
    /// The whole run's measured requests.
    pub whole_number: u64,
    /// The whole run's warmup requests.
    pub whole_warmup: u64,
    /// The whole run's concurrency.
    pub whole_parallel: Option<usize>,
    /// The whole run's rate.
    pub whole_rate: Option<f64>,
    /// The prompts of the whole run (warmup included) before this shard's.
    pub skip: u64,
}

/// `(before, share)`: how many of `total` the shards before `index` take, and how many it
/// takes.
pub fn split(total: u64, index: u64, count: u64) -> (u64, u64) {
    let (base, extra) = (total / count, total % count);
    (
        index * base + index.min(extra),
        base + u64::from(index < extra),
    )
}

fn parse(text: &str, source: &str) -> Result<Shard> {
    let bad = || {
        usage(format!(
            "{source} {text:?} is not a shard: give I/N with 0 <= I < N, e.g. 0/4 for the first of four"
        ))
    };
    let (i, n) = text.split_once('/').ok_or_else(bad)?;
    let index: u64 = i.trim().parse().map_err(|_| bad())?;
    let count: u64 = n.trim().parse().map_err(|_| bad())?;
    if count == 0 || index >= count {
        return Err(bad());
    }
    Ok(Shard {
        index,
        count,
        source: source.to_string(),
    })
}

/// The shard `--shard` gives, else the one the scheduler's environment `env` gives, else none.
pub fn shard(flag: Option<&str>, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Shard>> {
    if let Some(text) = flag {
        return parse(text, "--shard").map(Some);
    }
    if let Some(index) = env("JOB_COMPLETION_INDEX") {
        let Some(count) = env("PERF_SHARDS") else {
            // An Indexed Job that did not say how many shards there are: perf runs whole.
            return Ok(None);
        };
        return parse(
            &format!("{index}/{count}"),
            "JOB_COMPLETION_INDEX/PERF_SHARDS",
        )
        .map(Some);
    }
    if env("SLURM_STEP_ID").is_some() {
        if let (Some(index), Some(count)) = (env("SLURM_PROCID"), env("SLURM_STEP_NUM_TASKS")) {
            if count.trim() != "1" {
                return parse(
                    &format!("{index}/{count}"),
                    "SLURM_PROCID/SLURM_STEP_NUM_TASKS",
                )
                .map(Some);
            }
        }
    }
    Ok(None)
}

/// Turns each whole run into `shard`'s part of it.
pub fn apply(runs: &mut [RunSpec], shard: &Shard) -> Result<()> {
    let (i, n) = (shard.index, shard.count);
    for run in runs.iter_mut() {
        let (skip_warmup, warmup) = split(run.warmup, i, n);
        let (skip_number, number) = split(run.number, i, n);
        // Every shard refuses alike, not only those left without a share.
        if run.number < n {
            return Err(usage(format!(
                "--number {} cannot be split over {n} shards: each needs at least one request; send more or run fewer shards",
                run.number
            )));
        }
        let parallel = match run.parallel {
            Some(p) => {
                let (_, share) = split(p as u64, i, n);
                if (p as u64) < n {
                    return Err(usage(format!(
                        "--parallel {p} cannot be split over {n} shards: each needs at least one stream; raise it or run fewer shards"
                    )));
                }
                Some(share as usize)
            }
            None => None,
        };
        let share = Share {
            shard: shard.clone(),
            whole_number: run.number,
            whole_warmup: run.warmup,
            whole_parallel: run.parallel,
            whole_rate: run.rate,
            // The whole run's warmup prompts come first, then its measured ones.
            skip: skip_warmup + skip_number,
        };
        run.rate = run.rate.map(|r| r / n as f64);
        run.parallel = parallel;
        run.number = number;
        run.warmup = warmup;
        run.share = Some(share);
    }
    Ok(())
}

/// Seconds since the Unix epoch, now.
pub fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `--start-at`: Unix seconds or RFC 3339, as Unix seconds; `now` refuses an instant past.
pub fn start_at(text: &str, now: f64) -> Result<f64> {
    let at = match text.trim().parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 => s,
        _ => chrono::DateTime::parse_from_rfc3339(text.trim())
            .map(|t| t.timestamp_micros() as f64 / 1e6)
            .map_err(|_| {
                usage(format!(
                    "--start-at {text:?} is not a time: give Unix seconds (1796595000) or RFC 3339 (2026-12-06T22:30:00Z)"
                ))
            })?,
    };
    if at <= now {
        return Err(usage(format!(
            "--start-at {text} has passed ({:.1} s ago): give every shard an instant a little ahead, e.g. $(( $(date +%s) + 60 ))",
            now - at
        )));
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(parallel: Option<usize>, number: u64, rate: Option<f64>, warmup: u64) -> RunSpec {
        RunSpec {
            parallel,
            number,
            rate,
            warmup,
            label: "l".into(),
            share: None,
        }
    }

    #[test]
    fn integer_splits_add_up_and_tile_the_whole() {
        for total in [0, 1, 7, 10, 401] {
            for count in 1..=6 {
                let mut next = 0;
                let mut sum = 0;
                for i in 0..count {
                    let (before, share) = split(total, i, count);
                    assert_eq!(before, next, "{total}/{count} shard {i}");
                    next += share;
                    sum += share;
                }
                assert_eq!(sum, total);
            }
        }
        assert_eq!(split(10, 0, 4), (0, 3));
        assert_eq!(split(10, 3, 4), (8, 2));
    }

    #[test]
    fn every_run_is_split_and_remembers_the_whole() {
        let shard = parse("1/4", "--shard").expect("shard");
        let mut runs = vec![spec(Some(10), 101, None, 2), spec(None, 40, Some(20.0), 0)];
        apply(&mut runs, &shard).expect("split");
        assert_eq!(
            (runs[0].parallel, runs[0].number, runs[0].warmup),
            (Some(3), 25, 1)
        );
        let share = runs[0].share.as_ref().expect("share");
        // Warmup: shard 0 takes 1, this one 1; measured: shard 0 takes 26.
        assert_eq!(share.skip, 1 + 26);
        assert_eq!((share.whole_number, share.whole_parallel), (101, Some(10)));
        assert_eq!(runs[1].rate, Some(5.0));
        assert_eq!(runs[0].label, "l", "the whole run's directory name");
        let err = apply(&mut [spec(Some(2), 100, None, 0)], &shard).expect_err("too few streams");
        assert!(err.to_string().contains("--parallel 2"), "{err}");
        let err = apply(
            &mut [spec(Some(8), 3, None, 0)],
            &parse("3/4", "x").expect("s"),
        )
        .expect_err("too few requests");
        assert!(err.to_string().contains("--number 3"), "{err}");
    }

    #[test]
    fn the_scheduler_environment_says_the_shard_when_the_flag_does_not() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(name, _)| *name == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let none = env(&[]);
        assert_eq!(shard(None, &none).expect("none"), None);
        let s = shard(Some("2/3"), &none).expect("flag").expect("shard");
        assert_eq!((s.index, s.count, s.source.as_str()), (2, 3, "--shard"));
        let k8s = env(&[("JOB_COMPLETION_INDEX", "3"), ("PERF_SHARDS", "4")]);
        let s = shard(None, &k8s).expect("k8s").expect("shard");
        assert_eq!((s.index, s.count), (3, 4));
        assert_eq!(
            shard(None, &env(&[("JOB_COMPLETION_INDEX", "3")])).expect("no count"),
            None
        );
        let step = env(&[
            ("SLURM_STEP_ID", "0"),
            ("SLURM_PROCID", "1"),
            ("SLURM_STEP_NUM_TASKS", "4"),
        ]);
        assert_eq!(shard(None, &step).expect("slurm").map(|s| s.index), Some(1));
        let batch_shell = env(&[("SLURM_PROCID", "0"), ("SLURM_STEP_NUM_TASKS", "4")]);
        assert_eq!(shard(None, &batch_shell).expect("batch"), None);
        for bad in ["4/4", "1", "a/b", "0/0", "-1/2"] {
            let err = shard(Some(bad), &none).expect_err(bad);
            assert!(err.to_string().contains("I/N"), "{bad}: {err}");
        }
        // The flag wins over the environment.
        assert_eq!(
            shard(Some("0/2"), &k8s).expect("flag").map(|s| s.count),
            Some(2)
        );
    }

    #[test]
    fn start_at_takes_unix_seconds_or_rfc_3339_and_refuses_the_past() {
        let now = 1_796_595_000.0;
        assert_eq!(start_at("1796595060", now).expect("unix"), 1_796_595_060.0);
        assert_eq!(
            start_at("2026-12-06T22:11:00Z", 0.0).expect("rfc"),
            chrono::DateTime::parse_from_rfc3339("2026-12-06T22:11:00+00:00")
                .expect("t")
                .timestamp() as f64
        );
        let err = start_at("1796594990", now).expect_err("past");
        assert!(err.to_string().contains("has passed (10.0 s ago)"), "{err}");
        let err = start_at("soon", now).expect_err("not a time");
        assert!(err.to_string().contains("RFC 3339"), "{err}");
    }
}
