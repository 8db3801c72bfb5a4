//! Per-request numbers from `benchmark_data.db`, for the scatter charts: perf's
//! `perf_metrics` table when the database has it (no request or response bodies to walk
//! past), else evalscope's `result` columns. Points are thinned so that a run of a million
//! requests draws a few thousand markers: the fastest and the slowest request of each time
//! slice are kept, so outliers stay visible.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

/// Time slices per scatter chart; each keeps at most its fastest and slowest request.
pub const SLICES: usize = 500;

/// (x, y) points of a chart.
pub type Points = Vec<(f64, f64)>;

/// The requests of one run, in the order they were stored.
#[derive(Debug, Default, Clone)]
pub struct Samples {
    /// Send time, seconds from the first send.
    pub sent_s: Vec<f64>,
    /// Completion time, seconds from the first send.
    pub completed_s: Vec<f64>,
    /// Whether it succeeded.
    pub ok: Vec<bool>,
    /// Latency, s (successes).
    pub latency_s: Vec<Option<f64>>,
    /// TTFT, ms.
    pub ttft_ms: Vec<Option<f64>>,
    /// TPOT, ms.
    pub tpot_ms: Vec<Option<f64>>,
    /// Input tokens.
    pub input_tokens: Vec<Option<f64>>,
    /// Output tokens.
    pub output_tokens: Vec<Option<f64>>,
    /// Dispatch lag, ms (perf's databases only).
    pub lag_ms: Vec<Option<f64>>,
    /// Whether the database had the dispatch lag.
    pub has_lag: bool,
}

impl Samples {
    /// How many requests.
    pub fn len(&self) -> usize {
        self.ok.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ok.is_empty()
    }

    /// `values` against send time, thinned to the extremes of [`SLICES`] slices.
    pub fn over_time(&self, values: &[Option<f64>]) -> Vec<(f64, f64)> {
        let points: Vec<(f64, f64)> = self
            .sent_s
            .iter()
            .zip(values)
            .filter_map(|(t, v)| v.filter(|v| v.is_finite()).map(|v| (*t, v)))
            .collect();
        thin(points, SLICES)
    }

    /// Completions per second over the run: (successes, failures), one point per slice.
    pub fn completions_per_s(&self) -> (Points, Points) {
        let end = self.completed_s.iter().copied().fold(0.0f64, f64::max);
        if self.is_empty() || end <= 0.0 {
            return (Vec::new(), Vec::new());
        }
        // Slices of whole seconds where the run is long enough, so a point reads as req/s.
        let width = (end / 120.0).max(1.0).ceil().min(end.max(1e-3));
        let n = (end / width).ceil().max(1.0) as usize;
        let (mut good, mut bad) = (vec![0u64; n], vec![0u64; n]);
        for (t, ok) in self.completed_s.iter().zip(&self.ok) {
            let i = ((t / width) as usize).min(n - 1);
            if *ok {
                good[i] += 1;
            } else {
                bad[i] += 1;
            }
        }
        let rate = |counts: &[u64]| -> Vec<(f64, f64)> {
            counts
                .iter()
                .enumerate()
                .map(|(i, c)| ((i as f64 + 0.5) * width, *c as f64 / width))
                .collect()
        };
        (rate(&good), rate(&bad))
    }
}

/// At most `slices` x-slices of `points`, each down to its lowest and highest point.
pub fn thin(points: Vec<(f64, f64)>, slices: usize) -> Vec<(f64, f64)> {
    if points.len() <= 2 * slices {
        return points;
    }
    let (lo, hi) = points
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.0), b.max(p.0))
        });
    let width = ((hi - lo) / slices as f64).max(f64::MIN_POSITIVE);
    let mut low: Vec<Option<(f64, f64)>> = vec![None; slices];
    let mut high: Vec<Option<(f64, f64)>> = vec![None; slices];
    for p in points {
        let i = (((p.0 - lo) / width) as usize).min(slices - 1);
        if low[i].is_none_or(|q| p.1 < q.1) {
            low[i] = Some(p);
        }
        if high[i].is_none_or(|q| p.1 > q.1) {
            high[i] = Some(p);
        }
    }
    let mut out = Vec::with_capacity(2 * slices);
    for (l, h) in low.into_iter().zip(high) {
        out.extend(l);
        if h != l {
            out.extend(h);
        }
    }
    out
}

/// Reads the requests of the database at `path` (opened read-only: a running benchmark may
/// be writing it).
pub fn read(path: &Path) -> rusqlite::Result<Samples> {
    read_from(path, None).map(|(s, _)| s)
}

/// What a live view shows of a database being written: the last `n` requests, and the
/// counts of all so far.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    /// Requests stored.
    pub stored: u64,
    /// Of them failed.
    pub failed: u64,
}

/// The last `n` requests of the database at `path`, and the counts of all of them.
pub fn read_tail(path: &Path, n: usize) -> rusqlite::Result<(Samples, Counts)> {
    read_from(path, Some(n))
}

fn read_from(path: &Path, tail: Option<usize>) -> rusqlite::Result<(Samples, Counts)> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let has = |table: &str, column: &str| -> bool {
        conn.prepare(&format!("SELECT {column} FROM {table} LIMIT 0"))
            .is_ok()
    };
    let table = if has("perf_metrics", "success") {
        "perf_metrics"
    } else {
        "result"
    };
    let has_lag = has(table, "dispatch_lag");
    let lag = if has_lag { "dispatch_lag" } else { "NULL" };
    let mut counts = Counts::default();
    let filter = match tail {
        Some(n) => {
            (counts.stored, counts.failed) = conn.query_row(
                &format!("SELECT COUNT(*), IFNULL(SUM(success = 0), 0) FROM {table}"),
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )?;
            format!("WHERE rowid > (SELECT IFNULL(MAX(rowid), 0) FROM {table}) - {n}")
        }
        None => String::new(),
    };
    let sql = format!(
        "SELECT success, start_time, completed_time, latency, first_chunk_latency, \
         time_per_output_token, prompt_tokens, completion_tokens, {lag} FROM {table} {filter} \
         ORDER BY rowid"
    );
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query([])?;
    let mut s = Samples {
        has_lag,
        ..Samples::default()
    };
    let mut first = f64::INFINITY;
    while let Some(row) = rows.next()? {
        let num = |i: usize| -> Option<f64> { row.get::<_, Option<f64>>(i).ok().flatten() };
        let ok = row.get::<_, Option<i64>>(0).ok().flatten().unwrap_or(0) != 0;
        let sent = num(1).unwrap_or(0.0);
        first = first.min(sent);
        s.ok.push(ok);
        s.sent_s.push(sent);
        s.completed_s.push(num(2).unwrap_or(sent));
        s.latency_s.push(num(3).filter(|_| ok));
        s.ttft_ms.push(num(4).filter(|_| ok).map(|v| v * 1e3));
        s.tpot_ms.push(num(5).filter(|_| ok).map(|v| v * 1e3));
        s.input_tokens.push(num(6).filter(|_| ok));
        s.output_tokens.push(num(7).filter(|_| ok));
        s.lag_ms.push(num(8).map(|v| v * 1e3));
    }
    // A live tail keeps the run's own clock (perf's times count from the run's start).
    if first.is_finite() && tail.is_none() {
        for t in s.sent_s.iter_mut().chain(s.completed_s.iter_mut()) {
            *t -= first;
        }
    }
    if tail.is_none() {
        counts.stored = s.len() as u64;
        counts.failed = s.ok.iter().filter(|ok| !**ok).count() as u64;
    }
    Ok((s, counts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinning_keeps_each_slice_extremes_and_small_sets_whole() {
        let few: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, i as f64)).collect();
        assert_eq!(thin(few.clone(), 10), few);
        let mut many: Vec<(f64, f64)> = (0..100_000).map(|i| (i as f64, 1.0)).collect();
        many[54_321].1 = 900.0;
        many[7].1 = 0.001;
        let t = thin(many, 100);
        assert!(t.len() <= 200, "{}", t.len());
        assert!(t.contains(&(54_321.0, 900.0)), "the outlier stays");
        assert!(t.contains(&(7.0, 0.001)), "the fastest stays");
    }

    #[test]
    fn completions_per_second_count_successes_and_failures_apart() {
        let s = Samples {
            completed_s: vec![0.5, 0.7, 1.5, 2.5],
            ok: vec![true, false, true, true],
            sent_s: vec![0.0; 4],
            ..Samples::default()
        };
        let (good, bad) = s.completions_per_s();
        let total_good: f64 = good.iter().map(|p| p.1).sum();
        let total_bad: f64 = bad.iter().map(|p| p.1).sum();
        assert!(total_good > total_bad && total_bad > 0.0);
    }
}
