//! `workload_throughput.json` and `workload_timeline.json`, as evalscope 1.14.1 writes them:
//! a cumulative token timeline over the successful requests in the order they finished, and
//! the prompt (total, new, cached) and completion tokens per second over three windows:
//! the whole run, its last 30 s, and its steady state (the first 20 % of the wall time
//! dropped). A run shorter than the window, or one whose steady window holds no point, uses
//! the whole run, as evalscope does.
//!
//! evalscope keeps every point in memory; perf reads them back from `benchmark_data.db` in
//! two passes (the window anchors need the last point first), so memory stays flat.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use serde_json::json;

/// The tail window, seconds.
pub const LAST_WINDOW_S: f64 = 30.0;
/// The share of the wall time the steady state drops.
pub const WARMUP_FRAC: f64 = 0.2;

/// One successful request, in the order requests finished.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Start, seconds on the database's clock.
    pub start: f64,
    /// Completion, seconds on the same clock.
    pub completed: f64,
    /// Prompt tokens.
    pub prompt: u64,
    /// Output tokens.
    pub completion: u64,
    /// Cached prompt tokens the server reported (0 when it did not).
    pub cached: u64,
}

/// A point of the cumulative timeline.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Point {
    /// Seconds since the first finished request started.
    pub t: f64,
    /// Output tokens so far.
    pub cum_completion: u64,
    /// Prompt tokens the server computed so far (prompt minus cached).
    pub cum_new_prompt: u64,
    /// Cached prompt tokens so far.
    pub cum_cached_prompt: u64,
}

/// Folds samples into points.
struct Fold {
    wall_start: Option<f64>,
    point: Point,
}

impl Fold {
    fn new() -> Self {
        Fold {
            wall_start: None,
            point: Point::default(),
        }
    }

    /// The next point, or `None` for a sample evalscope leaves out (no valid times).
    fn next(&mut self, s: &Sample) -> Option<Point> {
        if s.completed <= 0.0 || s.completed < s.start {
            return None;
        }
        let start = *self.wall_start.get_or_insert(s.start);
        let p = &mut self.point;
        p.t = s.completed - start;
        p.cum_completion += s.completion;
        p.cum_new_prompt += s.prompt.saturating_sub(s.cached);
        p.cum_cached_prompt += s.cached;
        Some(*p)
    }
}

/// The latest point with `t <= target` scanning forward until the first point past it (the
/// first point when none is at or before it), as evalscope finds its window anchors.
struct Anchor {
    target: f64,
    chosen: Option<Point>,
    done: bool,
}

impl Anchor {
    fn new(target: f64) -> Self {
        Anchor {
            target,
            chosen: None,
            done: false,
        }
    }

    fn see(&mut self, p: &Point) {
        if self.done {
            return;
        }
        match self.chosen {
            None => {
                self.chosen = Some(*p);
                self.done = self.target <= p.t;
            }
            Some(_) if p.t <= self.target => self.chosen = Some(*p),
            Some(_) => self.done = true,
        }
    }
}

/// The four rates (total prompt, new prompt, cached prompt, completion) from `anchor` to
/// `last`; zeros for a window of no width.
fn rates(anchor: &Point, last: &Point) -> [f64; 4] {
    let dt = last.t - anchor.t;
    if dt <= 0.0 {
        return [0.0; 4];
    }
    let new = (last.cum_new_prompt - anchor.cum_new_prompt) as f64;
    let cached = (last.cum_cached_prompt - anchor.cum_cached_prompt) as f64;
    let completion = (last.cum_completion - anchor.cum_completion) as f64;
    [(new + cached) / dt, new / dt, cached / dt, completion / dt]
}

/// The throughput table and the timeline, ready to write.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// Points.
    pub n_samples: u64,
    /// The last point's time.
    pub wall_time_s: f64,
    /// Overall, last-window and steady-state rates, per metric.
    pub rows: [(&'static str, [f64; 3]); 4],
}

/// The metrics of the table, in order.
pub const METRICS: [&str; 4] = [
    "Total Prompt tok/s",
    "New Prompt tok/s",
    "Cached Prompt tok/s",
    "Completion tok/s",
];

/// Hands each sample, in order, to the visitor it is given; called twice, it must hand over
/// the same samples both times.
pub trait Samples: FnMut(&mut dyn FnMut(&Sample)) -> anyhow::Result<()> {}
impl<F: FnMut(&mut dyn FnMut(&Sample)) -> anyhow::Result<()>> Samples for F {}

/// Computes the table from `samples`, writing the timeline's points to `points` on the
/// second pass. `None` when no sample has valid times (evalscope then writes neither file).
pub fn workload(
    mut samples: impl Samples,
    mut points: impl FnMut(&Point, f64),
) -> anyhow::Result<Option<Workload>> {
    let mut fold = Fold::new();
    let mut last = None;
    let mut n = 0u64;
    samples(&mut |s| {
        if let Some(p) = fold.next(s) {
            last = Some(p);
            n += 1;
        }
    })?;
    let (Some(last), Some(wall_start)) = (last, fold.wall_start) else {
        return Ok(None);
    };
    let wall = last.t.max(0.0);
    let mut tail = Anchor::new(wall - LAST_WINDOW_S);
    let mut steady = Anchor::new(wall * WARMUP_FRAC);
    let mut fold = Fold::new();
    samples(&mut |s| {
        if let Some(p) = fold.next(s) {
            tail.see(&p);
            steady.see(&p);
            points(&p, wall_start);
        }
    })?;
    let origin = Point::default();
    let overall = rates(&origin, &last);
    let last_window = if wall <= LAST_WINDOW_S {
        overall
    } else {
        rates(&tail.chosen.unwrap_or(origin), &last)
    };
    let steady_state = match steady.chosen {
        _ if wall <= 0.0 => overall,
        // An anchor at the last point leaves no window: the whole run instead.
        Some(a) if a == last => overall,
        Some(a) => rates(&a, &last),
        None => overall,
    };
    let mut rows = [("", [0.0; 3]); 4];
    for (i, metric) in METRICS.iter().enumerate() {
        rows[i] = (*metric, [overall[i], last_window[i], steady_state[i]]);
    }
    Ok(Some(Workload {
        n_samples: n,
        wall_time_s: (wall * 1e4).round() / 1e4,
        rows,
    }))
}

impl Workload {
    /// `workload_throughput.json`.
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "n_samples": self.n_samples,
            "wall_time_s": self.wall_time_s,
            "last_window_s": LAST_WINDOW_S,
            "warmup_frac": WARMUP_FRAC,
            "rows": self.rows.iter().map(|(metric, [o, l, s])| json!({
                "metric": metric,
                "overall": o,
                "last_window": l,
                "steady_state": s,
            })).collect::<Vec<_>>(),
        })
    }
}

/// Writes `workload_timeline.json` and `workload_throughput.json` into `dir` from
/// `samples`; writes neither when there is no sample.
pub fn write(dir: &Path, samples: impl Samples) -> anyhow::Result<Option<Workload>> {
    let timeline = dir.join("workload_timeline.json");
    let tmp = dir.join(".workload_timeline.json.tmp");
    let file = std::fs::File::create(&tmp)
        .with_context(|| format!("cannot write {}", timeline.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let mut first = true;
    let mut error = None;
    let mut point = |p: &Point, wall_start: f64| {
        let line = if first {
            first = false;
            format!(
                "{{\n    \"wall_start\": {},\n    \"points\": [\n",
                json!(wall_start)
            )
        } else {
            ",\n".to_string()
        };
        let item = format!(
            "        {{\n            \"t\": {},\n            \"cum_completion\": {},\n            \"cum_new_prompt\": {},\n            \"cum_cached_prompt\": {}\n        }}",
            json!((p.t * 1e6).round() / 1e6),
            p.cum_completion,
            p.cum_new_prompt,
            p.cum_cached_prompt
        );
        if let Err(e) = out
            .write_all(line.as_bytes())
            .and_then(|()| out.write_all(item.as_bytes()))
        {
            error.get_or_insert(e);
        }
    };
    let workload = workload(samples, &mut point);
    let finished = match (&workload, error) {
        (Ok(Some(_)), None) => out
            .write_all(b"\n    ]\n}\n")
            .and_then(|()| out.flush())
            .and_then(|()| std::fs::rename(&tmp, &timeline))
            .with_context(|| format!("cannot write {}", timeline.display())),
        (_, Some(e)) => Err(e).with_context(|| format!("cannot write {}", timeline.display())),
        _ => Ok(()),
    };
    let _ = std::fs::remove_file(&tmp);
    finished?;
    let workload = workload?;
    if let Some(w) = &workload {
        super::write_json(&dir.join("workload_throughput.json"), &w.to_json())?;
    }
    Ok(workload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(start: f64, completed: f64, prompt: u64, completion: u64) -> Sample {
        Sample {
            start,
            completed,
            prompt,
            completion,
            cached: 0,
        }
    }

    fn run(samples: &[Sample]) -> (Option<Workload>, Vec<Point>) {
        let mut points = Vec::new();
        let all = |visit: &mut dyn FnMut(&Sample)| {
            samples.iter().for_each(&mut *visit);
            Ok(())
        };
        let w = workload(all, |p, _| points.push(*p)).expect("computes");
        (w, points)
    }

    #[test]
    fn a_short_run_uses_the_whole_run_for_every_window() {
        let (w, points) = run(&[sample(1.0, 2.0, 10, 20), sample(1.5, 3.0, 10, 20)]);
        let w = w.expect("a table");
        assert_eq!(points.len(), 2);
        assert_eq!(points[1].t, 2.0, "from the first finished request's start");
        assert_eq!(w.rows[3], ("Completion tok/s", [20.0, 20.0, 20.0]));
        assert_eq!(w.rows[0].1[0], 10.0);
    }

    #[test]
    fn the_steady_state_drops_the_first_fifth_and_the_tail_keeps_30_s() {
        // One request finishing every second for 100 s, 10 output tokens each.
        let samples: Vec<Sample> = (1..=100)
            .map(|i| sample(0.0, f64::from(i), 0, 10))
            .collect();
        let (w, _) = run(&samples);
        let w = w.expect("a table");
        let [overall, tail, steady] = w.rows[3].1;
        assert!((overall - 10.0).abs() < 1e-9);
        // Tail anchor: the latest point at or before 70 s; steady: at or before 20 s.
        assert!((tail - 300.0 / 30.0).abs() < 1e-9);
        assert!((steady - 800.0 / 80.0).abs() < 1e-9);
        assert_eq!(w.n_samples, 100);
        assert_eq!(w.wall_time_s, 100.0);
    }

    #[test]
    fn no_valid_sample_means_no_files() {
        assert_eq!(run(&[sample(2.0, 1.0, 1, 1)]).0, None);
        assert_eq!(run(&[]).0, None);
    }
}
